/* SPDX-License-Identifier: MIT */
/*
 * RAID 5 and 6 bios over more than one stripe. io_boundary is
 * parity_rows_max() stripes, so a bio may cross stripes; raid_parity_io.c
 * handles one stripe, this file the rest:
 *  - a WRITE, WRITE_ZEROES or DISCARD of whole stripes with every member
 *    live is written at once: one lock over all its stripes, parity per
 *    stripe (ISA-L, from the caller's buffer when every strip is one
 *    32-byte aligned piece of it, else from a copy), and ONE member bio per
 *    member covering all the stripes (an iovec gathering the member's
 *    strips: data from the caller, parity from the stripe buffer). The
 *    partial parity log is bypassed as for a full-stripe write (each stripe
 *    tracked, none logged); a stripe with an entry still in a ring sends
 *    the write stripe by stripe instead, logged as usual;
 *  - a READ: raid_parity_mread.c;
 *  - anything else (a partial head or tail, a degraded set) is
 *    split into pieces, sent as bios of the set's own channel: the head and
 *    tail alone (the stripe path), whole stripes between as one piece (the
 *    above again), or every stripe alone (degraded sets; reads that met
 *    an error). A piece
 *    never crosses a write-intent bitmap region.
 *
 * The pieces come from the channel's bio pool (as the core's own split
 * children do): when it is empty, the rest waits for a retry timer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "raid/raid_int.h"
#include "raid/raid_ppl.h"
#include "raid/raid_bitmap.h"

#define RETRY_NS	(50 * 1000)

static void multi_locked(struct raid_io *rio);
static void split_start(struct raid_io *rio, bool rows);

/* Stripes per bio: the parity of that many fits the large stripe buffer. */
uint32_t parity_rows_max(const struct raid *r)
{
	size_t rows = r->buf_max / ((size_t)r->np * r->g.strip);

	rows = MIN(rows, (size_t)UINT32_MAX / ((size_t)r->g.strip * r->k));
	return (uint32_t)MAX(rows, 1);
}

static uint64_t stripe_bytes(const struct raid *r)
{
	return (uint64_t)r->g.strip * r->k;
}

static bool all_alive(struct raid_io *rio)
{
	for (uint32_t m = 0; m < rio->r->g.nmembers; m++)
		if (!rio_readable(rio, m))
			return false;
	return true;
}

/* Bytes of a bitmap region (0: no bitmap). */
static uint64_t region_bytes(const struct raid *r)
{
	return r->bm ? (uint64_t)r->sb.bitmap_region / r->g.strip * stripe_bytes(r) : 0;
}

static bool one_region(const struct raid *r, uint64_t off, uint64_t len)
{
	uint64_t rb = region_bytes(r);

	return !rb || off / rb == (off + len - 1) / rb;
}

bool parity_span(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct bio *bio = rio->bio;
	uint64_t w = stripe_bytes(r);

	if (bio->offset / w == (bio->offset + bio->len - 1) / w)
		return false;
	if (bio->op == BIO_READ) {
		parity_read_multi(rio);		/* raid_parity_mread.c */
		return true;
	}
	if (bio->op != BIO_READ && bio->offset % w == 0 && bio->len % w == 0 &&
	    one_region(r, bio->offset, bio->len) && all_alive(rio)) {
		rio->stripe = bio->offset / w;
		rio->rows = (uint32_t)(bio->len / w);
		stripe_lock(rio, multi_locked);
	} else {
		split_start(rio, bio->op == BIO_READ || !all_alive(rio));
	}
	return true;
}

/* ---- pieces */

/* The next piece from at: one stripe at most (rows), else whole stripes
 * together; never across a bitmap region. */
static uint64_t piece_len(struct raid_io *rio, uint64_t at)
{
	struct raid *r = rio->r;
	uint64_t w = stripe_bytes(r), rb = region_bytes(r);
	uint64_t off = rio->bio->offset + at, left = rio->bio->len - at;
	uint64_t n = MIN(left, w - off % w);

	if (!rio->split_rows && off % w == 0 && left >= w)
		n = left / w * w;
	if (rb)
		n = MIN(n, rb - off % rb);
	return n;
}

static void split_done(struct raid_io *rio)
{
	rio_finish(rio, rio->status);
}

static void piece_end(struct bio *b, int status)
{
	struct raid_io *rio = b->end_arg;

	if (status && !rio->status)
		rio->status = status;
	if (--rio->pending == 0)
		rio->next(rio);
}

/* The piece's iovec: [skip, skip + len) of the parent's. */
static int piece_iov(struct bio *c, const struct bio *p, size_t skip, size_t len)
{
	struct iovec *v = c->iov_inline;
	int n = 0, max = BIO_INLINE_IOVS;

	for (int pass = 0; pass < 2; pass++) {
		size_t s = skip, left = len;

		n = 0;
		for (int i = 0; i < p->iovcnt && left; i++) {
			size_t take;

			if (s >= p->iov[i].iov_len) {
				s -= p->iov[i].iov_len;
				continue;
			}
			take = MIN(left, p->iov[i].iov_len - s);
			if (n < max) {
				v[n].iov_base = (uint8_t *)p->iov[i].iov_base + s;
				v[n].iov_len = take;
			}
			n++;
			left -= take;
			s = 0;
		}
		if (n <= max)
			break;
		if (pass == 1)
			return -EINVAL;
		v = malloc((size_t)n * sizeof(*v));
		if (!v)
			return -ENOMEM;
		c->iov_alloc = v;
		max = n;
	}
	c->iov = v;
	c->iovcnt = n;
	return 0;
}

static void split_more(struct raid_io *rio);

static void split_retry(struct ev_timer *t)
{
	struct raid_io *rio = container_of(t, struct raid_io, retry_timer);

	split_more(rio);
	batch_end(rio);		/* the hold split_more's wait took */
}

/* Send pieces from rio->split_at on; called with a hold on rio->pending. */
static void split_more(struct raid_io *rio)
{
	struct bio *p = rio->bio;

	while (rio->split_at < p->len && !rio->status) {
		uint64_t n = piece_len(rio, rio->split_at);
		struct bio *c = bio_alloc(p->ch);
		int rc = 0;

		if (!c) {
			/* the pool is empty: bios of this channel end meanwhile */
			rio->pending++;
			ev_timer_start(p->ch->loop, &rio->retry_timer, RETRY_NS, split_retry);
			return;
		}
		c->op = p->op;
		c->flags = p->flags & (BIO_FUA | BIO_NOUNMAP);
		c->offset = p->offset + rio->split_at;
		c->len = n;
		c->end = piece_end;
		c->end_arg = rio;
		c->autofree = true;
		if (p->op == BIO_READ || p->op == BIO_WRITE)
			rc = piece_iov(c, p, rio->split_at, n);
		rio->pending++;
		if (!rc)
			rc = blk_submit(p->ch, c);
		if (rc) {
			rio->pending--;
			bio_free(c);
			if (rc == -EAGAIN || rc == -ENOMEM) {
				rio->pending++;
				ev_timer_start(p->ch->loop, &rio->retry_timer, RETRY_NS,
					       split_retry);
				return;
			}
			rio->status = rc;
			return;
		}
		rio->split_at += n;
	}
}

static void split_start(struct raid_io *rio, bool rows)
{
	rio->split_rows = rows;
	rio->split_at = 0;
	batch_begin(rio, split_done);
	split_more(rio);
	batch_end(rio);
}

void parity_split_rows(struct raid_io *rio)
{
	split_start(rio, true);
}

/* ---- whole stripes at once */

static void multi_done(struct raid_io *rio)
{
	struct raid *r = rio->r;
	uint32_t lost = 0;

	ppl_rows_done(rio, true);
	for (uint32_t m = 0; m < r->g.nmembers; m++)
		if (!raid_alive(r, m))
			lost++;
	if (rio->status)
		rio_finish(rio, rio->status);
	else
		rio_finish(rio, lost > r->np ? -EIO : 0);
}

/* Stripe by stripe after all (a member went, or the log holds a stripe). */
static void multi_fallback(struct raid_io *rio)
{
	stripe_unlock(rio);
	rio->rows = 0;
	split_start(rio, true);
}

/* Caller's data of row i, column j, when it is one 32-byte aligned piece. */
static uint8_t *direct_strip(struct raid_io *rio, uint32_t i, uint32_t j)
{
	const struct bio *bio = rio->bio;
	size_t skip = (size_t)i * stripe_bytes(rio->r) + (size_t)j * rio->r->g.strip;
	int n = 0;

	while (n < bio->iovcnt && skip >= bio->iov[n].iov_len)
		skip -= bio->iov[n++].iov_len;
	if (n == bio->iovcnt || bio->iov[n].iov_len - skip < rio->r->g.strip)
		return NULL;
	if ((uintptr_t)((uint8_t *)bio->iov[n].iov_base + skip) % 32)
		return NULL;
	return (uint8_t *)bio->iov[n].iov_base + skip;
}

/*
 * The data: rio->d[0] is NULL when the caller's strips are used in place,
 * else a copy of the whole bio (row i, column j at i * w + j * strip).
 * Parity of row i, parity column p: rio->mem + (p * rows + i) * strip.
 * WRITE_ZEROES and DISCARD: every strip is rio->zero (parity of zeros is
 * zeros), nothing computed.
 */
static uint8_t *data_strip(struct raid_io *rio, uint32_t i, uint32_t j)
{
	struct raid *r = rio->r;

	if (rio->bio->op != BIO_WRITE)
		return rio->zero;
	if (rio->d[0])
		return rio->d[0] + (size_t)i * stripe_bytes(r) + (size_t)j * r->g.strip;
	return direct_strip(rio, i, j);
}

static uint8_t *parity_strip(struct raid_io *rio, uint32_t i, uint32_t p)
{
	if (rio->bio->op != BIO_WRITE)
		return rio->zero;
	return rio->mem + ((size_t)p * rio->rows + i) * rio->r->g.strip;
}

static int multi_bufs(struct raid_io *rio)
{
	struct raid *r = rio->r;
	size_t strip = r->g.strip;
	bool direct = true;

	rio->d[0] = NULL;
	if (rio->bio->op != BIO_WRITE) {
		if (rio_alloc_mem(rio, strip))
			return -ENOMEM;
		rio->zero = rio->mem;
		memset(rio->zero, 0, strip);
		return 0;
	}
	for (uint32_t i = 0; i < rio->rows && direct; i++)
		for (uint32_t j = 0; j < r->k && direct; j++)
			direct = direct_strip(rio, i, j) != NULL;
	if (rio_alloc_mem(rio, (size_t)r->np * rio->rows * strip +
				(direct ? 0 : rio->bio->len)))
		return -ENOMEM;
	if (!direct) {
		rio->d[0] = rio->mem + (size_t)r->np * rio->rows * strip;
		iov_to_buf(rio->bio->iov, rio->bio->iovcnt, 0, rio->d[0], rio->bio->len);
	}
	return 0;
}

static int multi_parity(struct raid_io *rio)
{
	struct raid *r = rio->r;
	uint8_t *src[MAXCOLS + 2];

	if (rio->bio->op != BIO_WRITE)
		return 0;
	for (uint32_t i = 0; i < rio->rows; i++) {
		for (uint32_t j = 0; j < r->k; j++)
			src[j] = data_strip(rio, i, j);
		for (uint32_t p = 0; p < r->np; p++)
			src[r->k + p] = parity_strip(rio, i, p);
		if (raid_parity_gen((int)r->np, (int)r->k, r->g.strip, src))
			return -EIO;
	}
	return 0;
}

/* Member m's strips of every row, merged where they follow each other. */
static struct iovec *member_iov(struct raid_io *rio, uint32_t m, int *nv)
{
	struct raid *r = rio->r;
	struct iovec *v = malloc(rio->rows * sizeof(*v));
	uint32_t cols[MAXCOLS];
	int n = 0;

	if (!v)
		return NULL;
	for (uint32_t i = 0; i < rio->rows; i++) {
		uint8_t *b = NULL;

		raid_stripe_cols(&r->g, rio->stripe + i, cols);
		for (uint32_t c = 0; c < r->k + r->np; c++)
			if (cols[c] == m)
				b = c < r->k ? data_strip(rio, i, c) : parity_strip(rio, i, c - r->k);
		if (n && (uint8_t *)v[n - 1].iov_base + v[n - 1].iov_len == b &&
		    rio->bio->op == BIO_WRITE) {
			v[n - 1].iov_len += r->g.strip;
			continue;
		}
		v[n].iov_base = b;
		v[n].iov_len = r->g.strip;
		n++;
	}
	*nv = n;
	return v;
}

static void multi_locked(struct raid_io *rio)
{
	struct raid *r = rio->r;
	uint64_t moff = rio->stripe * r->g.strip, mlen = (uint64_t)rio->rows * r->g.strip;
	int rc;

	if (!all_alive(rio)) {
		multi_fallback(rio);
		return;
	}
	rc = ppl_rows_track(rio);
	if (rc == -EBUSY) {
		multi_fallback(rio);
		return;
	}
	if (rc) {
		rio_finish(rio, rc);
		return;
	}
	rc = multi_bufs(rio);
	if (!rc)
		rc = multi_parity(rio);
	if (rc) {
		ppl_rows_done(rio, false);
		rio_finish(rio, rc);
		return;
	}
	batch_begin(rio, multi_done);
	for (uint32_t m = 0; m < r->g.nmembers; m++) {
		struct iovec *v;
		int nv;

		if (!raid_writable(r, m))
			continue;	/* failed since: the stripes stay consistent */
		if (rio->bio->op != BIO_WRITE && (r->caps & (1u << BIO_WRITE_ZEROES))) {
			member_bio(rio, m, BIO_WRITE_ZEROES, moff, mlen, NULL);
			continue;
		}
		v = member_iov(rio, m, &nv);
		if (!v) {
			if (!rio->status)
				rio->status = -ENOMEM;
			continue;
		}
		member_bio_vec(rio, m, BIO_WRITE, moff, mlen, v, nv);
	}
	batch_end(rio);
}
