/* SPDX-License-Identifier: MIT */
/*
 * RAID 5 and 6 I/O. io_boundary is a full stripe (strip * data columns), so
 * a bio lies inside one stripe, and a bio that covers it is a full-stripe
 * write.
 *
 * How does a write keep parity right?
 *
 * Every write and every degraded read holds the stripe's lock (raid.c: a
 * list of locked stripes under a mutex; a later I/O to a locked stripe
 * queues on the holder and is handed the lock when it is released), so two
 * writes never interleave their read and write phases on one stripe. Plain
 * reads with every needed member alive take no lock: they read data columns
 * only. Inside the lock, the write works on the row range R of the stripe
 * that its columns touch, with one buffer per column:
 *  - reconstruct-write (RCW): read the data columns the write does not cover
 *    over R, lay the new data over them, generate P (and Q);
 *  - read-modify-write (RMW): read the old data of the touched columns and
 *    the old parity, and add the parity of (old ^ new) to the old parity;
 *  - whichever reads fewer columns (a full-stripe write reads nothing);
 *  - degraded (a column's member failed): read every live column over R,
 *    rebuild the lost ones (raid_recover), lay the new data over them,
 *    generate parity, write the live columns.
 * A member being rebuilt counts as lost for reads, so a write to its stripe
 * is a degraded write, which rebuilds its column over R anyway: the write
 * then stores the whole of R on it, keeping it current. A rebuild request
 * rebuilds a whole row under the same lock.
 *
 * Between computing parity and writing, the write logs its partial parity
 * on the stripe's parity members (raid_ppl.c: no write hole), unless it is
 * a full-stripe write of a whole set with nothing of its stripe in the log.
 *
 * A member that fails during the read phase makes the write start again in
 * degraded mode, still holding the lock. A member that fails during the
 * write phase is only marked failed: the stripe stays consistent because
 * parity was computed with the new data, so the lost column reads back
 * rebuilt.
 *
 * Plain reads go straight into the caller's iovec; degraded reads and writes
 * use stripe buffers, allocated per bio for now.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "raid/raid_int.h"
#include "raid/raid_ppl.h"

static void read_degraded_done(struct raid_io *rio);
static void read_direct_done(struct raid_io *rio);
static void write_read_done(struct raid_io *rio);
static void write_write_done(struct raid_io *rio);
static void write_log(struct raid_io *rio);

static uint64_t row_off(struct raid_io *rio, uint32_t in_strip);

static int lost_cols(struct raid_io *rio, int *lost)
{
	struct raid *r = rio->r;
	int n = 0;

	for (uint32_t c = 0; c < r->k + r->np; c++)
		if (!rio_readable(rio, rio->cols[c])) {
			if (n < 2)
				lost[n] = (int)c;
			n++;
		}
	return n;
}

/*
 * Members change state under a running I/O (a member fails, a rebuilt one
 * goes live), so a degraded step decides once which columns it reads, and
 * later rebuilds exactly the others: not whatever is lost by then.
 */
static int snapshot_live(struct raid_io *rio)
{
	struct raid *r = rio->r;
	int n = 0;

	rio->readmask = 0;
	for (uint32_t c = 0; c < r->k + r->np; c++) {
		if (rio_readable(rio, rio->cols[c]))
			rio->readmask |= 1ull << c;
		else
			n++;
	}
	return n;
}

static void read_snapshot(struct raid_io *rio, uint32_t from, uint32_t len)
{
	struct raid *r = rio->r;

	for (uint32_t c = 0; c < r->k + r->np; c++)
		if (rio->readmask & (1ull << c))
			member_bio(rio, rio->cols[c], BIO_READ, row_off(rio, from), len,
				   rio->d[c] + from - rio->rs);
}

/* Rebuild the columns that were not read. */
static int recover_unread(struct raid_io *rio)
{
	struct raid *r = rio->r;
	int lost[2], n = 0;

	for (uint32_t c = 0; c < r->k + r->np; c++)
		if (!(rio->readmask & (1ull << c))) {
			if (n == (int)r->np)
				return -EIO;
			lost[n++] = (int)c;
		}
	if (raid_recover((int)r->np, (int)r->k, rio->re - rio->rs, rio->d, lost, n))
		return -EIO;
	return 0;
}

static size_t iov_skip(struct raid_io *rio, uint32_t j)
{
	struct raid *r = rio->r;
	uint64_t in = rio->bio->offset % ((uint64_t)r->g.strip * r->k);

	return (size_t)((uint64_t)j * r->g.strip + rio->lo[j] - in);
}

static bool touched(struct raid_io *rio, uint32_t j)
{
	return rio->hi[j] > rio->lo[j];
}

static uint64_t row_off(struct raid_io *rio, uint32_t in_strip)
{
	return rio->stripe * rio->r->g.strip + in_strip;
}

static void copy_out(struct raid_io *rio)
{
	for (uint32_t j = 0; j < rio->r->k; j++)
		if (touched(rio, j))
			buf_to_iov(rio->bio->iov, rio->bio->iovcnt, iov_skip(rio, j),
				   rio->d[j] + rio->lo[j] - rio->rs, rio->hi[j] - rio->lo[j]);
}

/* The new data (zeros for WRITE_ZEROES and DISCARD) over the touched ranges. */
static void overlay_new(struct raid_io *rio)
{
	for (uint32_t j = 0; j < rio->r->k; j++) {
		uint8_t *dst = rio->d[j] + rio->lo[j] - rio->rs;

		if (!touched(rio, j))
			continue;
		if (rio->bio->op != BIO_WRITE)	/* WRITE_ZEROES, DISCARD */
			memset(dst, 0, rio->hi[j] - rio->lo[j]);
		else
			iov_to_buf(rio->bio->iov, rio->bio->iovcnt, iov_skip(rio, j), dst,
				   rio->hi[j] - rio->lo[j]);
	}
}

static void xor_into(uint8_t *dst, const uint8_t *src, size_t len)
{
	uint64_t *d = (uint64_t *)(void *)dst;
	const uint64_t *s = (const uint64_t *)(const void *)src;

	for (size_t i = 0; i < len / 8; i++)
		d[i] ^= s[i];
}

static int alloc_bufs(struct raid_io *rio);

static int setup_stripe(struct raid_io *rio)
{
	struct raid *r = rio->r;
	uint64_t w = (uint64_t)r->g.strip * r->k;
	uint64_t in = rio->bio->offset % w, end = in + rio->bio->len;
	uint32_t c0 = (uint32_t)(in / r->g.strip), c1 = (uint32_t)((end - 1) / r->g.strip);

	rio->stripe = rio->bio->offset / w;
	raid_stripe_cols(&r->g, rio->stripe, rio->cols);
	rio->rs = r->g.strip;
	rio->re = 0;
	for (uint32_t j = 0; j < r->k; j++) {
		rio->lo[j] = rio->hi[j] = 0;
		if (j < c0 || j > c1)
			continue;
		rio->lo[j] = j == c0 ? (uint32_t)(in % r->g.strip) : 0;
		rio->hi[j] = j == c1 ? (uint32_t)(end - (uint64_t)c1 * r->g.strip) : r->g.strip;
		rio->rs = MIN(rio->rs, rio->lo[j]);
		rio->re = MAX(rio->re, rio->hi[j]);
	}
	return 0;
}

/* d[], o[] and zero in rio->mem (again: a full-stripe write points d[] at
 * the caller's data, see direct_cols). */
static void set_bufs(struct raid_io *rio)
{
	struct raid *r = rio->r;
	uint32_t ncol = r->k + r->np;
	size_t len = rio->re - rio->rs;

	for (uint32_t c = 0; c < ncol; c++) {
		rio->d[c] = rio->mem + c * len;
		rio->o[c] = rio->mem + (ncol + c) * len;
	}
	rio->zero = rio->mem + 2 * ncol * len;
}

static int alloc_bufs(struct raid_io *rio)
{
	struct raid *r = rio->r;
	size_t len = rio->re - rio->rs;

	if (rio_alloc_mem(rio, len * (2 * (r->k + r->np) + 1)))
		return -ENOMEM;
	set_bufs(rio);
	return 0;
}

/* The end of a batch writing back what read errors lost: the read itself
 * succeeded (a failed rewrite has failed its member); count the repairs. */
void rio_rewrite_done(struct raid_io *rio)
{
	if (rio->nok)
		__atomic_add_fetch(&rio->r->read_fixed, (uint64_t)rio->nok, __ATOMIC_RELAXED);
	rio_finish(rio, 0);
}

/* Read errors: write the rebuilt columns back (still under the lock). */
static void rewrite_bad(struct raid_io *rio)
{
	struct raid *r = rio->r;

	batch_begin(rio, rio_rewrite_done);
	for (uint32_t c = 0; c < r->k + r->np; c++)
		if (!(rio->readmask & (1ull << c)) && (rio->bad & (1u << rio->cols[c])) &&
		    raid_alive(r, rio->cols[c]))
			member_bio(rio, rio->cols[c], BIO_WRITE, row_off(rio, rio->rs),
				   rio->re - rio->rs, rio->d[c]);
	batch_end(rio);
}

static void read_degraded(struct raid_io *rio)
{
	struct raid *r = rio->r;

	if (snapshot_live(rio) > (int)r->np) {
		rio_finish(rio, -EIO);
		return;
	}
	batch_begin(rio, read_degraded_done);
	read_snapshot(rio, rio->rs, rio->re - rio->rs);
	batch_end(rio);
}

static void read_degraded_done(struct raid_io *rio)
{
	if (rio->status) {
		rio_finish(rio, rio->status);
		return;
	}
	if (rio->child_err) {
		read_degraded(rio);	/* again, without the member that just failed */
		return;
	}
	if (recover_unread(rio)) {
		rio_finish(rio, -EIO);
		return;
	}
	copy_out(rio);
	if (rio->bad) {
		rewrite_bad(rio);
		return;
	}
	rio_finish(rio, 0);
}

/* Pieces of the parent's iovec that [skip, skip + len) spans. */
static int iov_pieces(const struct iovec *iov, int cnt, size_t skip, size_t len)
{
	int n = 0;

	for (int i = 0; i < cnt && len; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		len -= MIN(len, iov[i].iov_len - skip);
		skip = 0;
		n++;
	}
	return n;
}

static void degraded_read(struct raid_io *rio)
{
	int rc = rio->mem ? 0 : alloc_bufs(rio);

	if (rc)
		rio_finish(rio, rc);
	else
		stripe_lock(rio, read_degraded);
}

/*
 * Every touched column live: read each straight into its part of the
 * caller's iovec (when that part fits a member bio's inline iovec), else
 * through the stripe buffers.
 */
static void read_direct(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct bio *bio = rio->bio;
	bool bounce = false;

	for (uint32_t j = 0; j < r->k; j++) {
		if (!touched(rio, j))
			continue;
		if (!raid_alive(r, rio->cols[j])) {
			degraded_read(rio);
			return;
		}
		if (iov_pieces(bio->iov, bio->iovcnt, iov_skip(rio, j),
			       rio->hi[j] - rio->lo[j]) > BIO_INLINE_IOVS)
			bounce = true;
	}
	if (bounce && alloc_bufs(rio)) {
		rio_finish(rio, -ENOMEM);
		return;
	}
	batch_begin(rio, read_direct_done);
	for (uint32_t j = 0; j < r->k; j++) {
		if (!touched(rio, j))
			continue;
		if (bounce)
			member_bio(rio, rio->cols[j], BIO_READ, row_off(rio, rio->lo[j]),
				   rio->hi[j] - rio->lo[j], rio->d[j] + rio->lo[j] - rio->rs);
		else
			member_bio_slice(rio, rio->cols[j], BIO_READ, row_off(rio, rio->lo[j]),
					 rio->hi[j] - rio->lo[j], iov_skip(rio, j));
	}
	batch_end(rio);
}

static void read_direct_done(struct raid_io *rio)
{
	if (rio->status) {
		rio_finish(rio, rio->status);
	} else if (rio->child_err) {
		degraded_read(rio);
	} else {
		if (rio->mem)
			copy_out(rio);
		rio_finish(rio, 0);
	}
}

static void write_start(struct raid_io *rio)
{
	struct raid *r = rio->r;
	uint32_t rcw = 0, rmw = r->np, len = rio->re - rio->rs;
	int lost[2], nlost = lost_cols(rio, lost);
	uint64_t logged = ppl_modset(r, rio->stripe);

	if (nlost > (int)r->np) {
		rio_finish(rio, -EIO);
		return;
	}
	set_bufs(rio);		/* reads land in rio->mem, never in the caller's data */
	batch_begin(rio, write_read_done);
	if (nlost) {
		rio->mode = WR_DEGRADED;
		if (snapshot_live(rio) > (int)r->np) {
			batch_end(rio);		/* ends at once; write_read_done fails it */
			return;
		}
		read_snapshot(rio, rio->rs, len);
		batch_end(rio);
		return;
	}
	for (uint32_t j = 0; j < r->k; j++) {
		if (!(rio->lo[j] == rio->rs && rio->hi[j] == rio->re))
			rcw++;
		if (touched(rio, j))
			rmw++;
		else if (logged & (1ull << j))
			rmw = UINT32_MAX / 2;	/* the log needs that column: read it */
	}
	if (rcw <= rmw) {
		rio->mode = WR_RCW;
		for (uint32_t j = 0; j < r->k; j++)
			if (!(rio->lo[j] == rio->rs && rio->hi[j] == rio->re))
				member_bio(rio, rio->cols[j], BIO_READ, row_off(rio, rio->rs), len, rio->d[j]);
	} else {
		rio->mode = WR_RMW;
		for (uint32_t j = 0; j < r->k; j++)
			if (touched(rio, j))
				member_bio(rio, rio->cols[j], BIO_READ, row_off(rio, rio->rs), len, rio->o[j]);
		for (uint32_t p = 0; p < r->np; p++)
			member_bio(rio, rio->cols[r->k + p], BIO_READ, row_off(rio, rio->rs), len,
			      rio->d[r->k + p]);
	}
	batch_end(rio);
}

static bool full_stripe(struct raid_io *rio);

/*
 * A full-stripe WRITE whose every column is one piece of the caller's
 * iovec, 32-byte aligned (ISA-L): d[] points at the caller's data, which
 * parity is computed from and the members are written from, without a copy.
 */
static bool direct_cols(struct raid_io *rio)
{
	struct raid *r = rio->r;
	const struct iovec *iov = rio->bio->iov;
	uint8_t *p[MAXCOLS];

	if (rio->bio->op != BIO_WRITE || !full_stripe(rio))
		return false;
	for (uint32_t j = 0; j < r->k; j++) {
		size_t skip = iov_skip(rio, j);
		int i = 0;

		while (i < rio->bio->iovcnt && skip >= iov[i].iov_len)
			skip -= iov[i++].iov_len;
		if (i == rio->bio->iovcnt || iov[i].iov_len - skip < r->g.strip)
			return false;
		p[j] = (uint8_t *)iov[i].iov_base + skip;
		if ((uintptr_t)p[j] % 32)
			return false;
	}
	for (uint32_t j = 0; j < r->k; j++)
		rio->d[j] = p[j];
	return true;
}

static int compute_parity(struct raid_io *rio)
{
	struct raid *r = rio->r;
	size_t len = rio->re - rio->rs;
	uint8_t *src[MAXCOLS + 2];

	switch (rio->mode) {
	case WR_DEGRADED:
		if (recover_unread(rio))
			return -EIO;
		/* fall through */
	case WR_RCW:
		if (rio->mode == WR_DEGRADED || !direct_cols(rio))
			overlay_new(rio);
		return raid_parity_gen((int)r->np, (int)r->k, len, rio->d);
	case WR_RMW:
		memset(rio->zero, 0, len);
		for (uint32_t j = 0; j < r->k; j++) {
			if (!touched(rio, j)) {
				src[j] = rio->zero;
				continue;
			}
			memcpy(rio->d[j], rio->o[j], len);
			src[j] = rio->o[j];
		}
		overlay_new(rio);
		for (uint32_t j = 0; j < r->k; j++)
			if (touched(rio, j))
				xor_into(rio->o[j], rio->d[j], len);	/* old ^ new */
		for (uint32_t p = 0; p < r->np; p++)
			src[r->k + p] = rio->o[r->k + p];
		if (raid_parity_gen((int)r->np, (int)r->k, len, src))
			return -EIO;
		for (uint32_t p = 0; p < r->np; p++)
			xor_into(rio->d[r->k + p], rio->o[r->k + p], len);
		return 0;
	}
	return -EINVAL;
}

static void write_read_done(struct raid_io *rio)
{
	int rc;

	if (rio->status) {
		rio_finish(rio, rio->status);
		return;
	}
	if (rio->child_err) {
		write_start(rio);	/* again, degraded */
		return;
	}
	rc = compute_parity(rio);
	if (rc) {
		rio_finish(rio, rc);
		return;
	}
	write_log(rio);
}

static bool full_stripe(struct raid_io *rio)
{
	for (uint32_t j = 0; j < rio->r->k; j++)
		if (rio->lo[j] || rio->hi[j] != rio->r->g.strip)
			return false;
	return true;
}

static void write_data(struct raid_io *rio);
static void write_log_flushed(struct raid_io *rio);

static void write_log_retry(struct ev_timer *t)
{
	write_log(container_of(t, struct raid_io, retry_timer));
}

static void write_logged(struct raid_io *rio)
{
	if (rio->status) {
		ppl_cancel(rio);
		rio_finish(rio, rio->status);
	} else if (rio->child_err) {
		ppl_cancel(rio);
		write_start(rio);	/* a parity member failed: again, degraded */
	} else {
		write_data(rio);
	}
}

/*
 * The partial parity log entries (raid_ppl.c) go to the parity members,
 * durable, before any data or parity is written. A full log waits for a
 * flush of the members, which this write sends itself.
 */
static void write_log(struct raid_io *rio)
{
	struct raid *r = rio->r;
	int rc = ppl_prepare(rio, full_stripe(rio));

	if (rc == -EAGAIN && rio->ppl_retry) {
		rio->ppl_retry = false;		/* every entry is in flight: wait */
		ev_timer_start(rio->bio->ch->loop, &rio->retry_timer, 200 * 1000, write_log_retry);
		return;
	}
	if (rc == -EAGAIN) {
		rio->ppl_mark = ppl_flush_mark(r);
		batch_begin(rio, write_log_flushed);
		for (uint32_t i = 0; i < r->g.nmembers; i++)
			if (raid_alive(r, i))
				member_bio(rio, i, BIO_FLUSH, 0, 0, NULL);
		batch_end(rio);
		return;
	}
	if (rc < 0) {
		rio_finish(rio, rc);
		return;
	}
	if (rc == 0) {
		write_data(rio);
		return;
	}
	batch_begin(rio, write_logged);
	ppl_submit(rio);
	batch_end(rio);
}

static void write_log_flushed(struct raid_io *rio)
{
	if (rio->status) {
		rio_finish(rio, rio->status);
		return;
	}
	if (rio->child_err) {
		write_start(rio);	/* a member failed: again, degraded */
		return;
	}
	ppl_durable(rio->r, rio->ppl_mark);
	rio->ppl_retry = true;
	write_log(rio);
}

/*
 * WRITE_ZEROES and DISCARD of a whole stripe with every member live: zeros
 * on every member, parity included (P and Q of zeros are zeros), as member
 * WRITE_ZEROES when every member takes it (a DISCARD lets them deallocate).
 */
static bool zero_members(struct raid_io *rio)
{
	struct raid *r = rio->r;

	return rio->bio->op != BIO_WRITE && rio->mode == WR_RCW && full_stripe(rio) &&
	       (r->caps & (1u << BIO_WRITE_ZEROES));
}

static void write_data(struct raid_io *rio)
{
	struct raid *r = rio->r;

	batch_begin(rio, write_write_done);
	if (zero_members(rio)) {
		for (uint32_t c = 0; c < r->k + r->np; c++)
			if (raid_writable(r, rio->cols[c]))
				member_bio(rio, rio->cols[c], BIO_WRITE_ZEROES, row_off(rio, 0),
					   r->g.strip, NULL);
		batch_end(rio);
		return;
	}
	for (uint32_t j = 0; j < r->k; j++) {
		uint32_t m = rio->cols[j];

		if (!raid_writable(r, m))
			continue;
		if (rio->mode == WR_DEGRADED && !(rio->readmask & (1ull << j)))
			/* rebuilt over R (a member being rebuilt): keep all of it */
			member_bio(rio, m, BIO_WRITE, row_off(rio, rio->rs),
				   rio->re - rio->rs, rio->d[j]);
		else if (touched(rio, j))
			member_bio(rio, m, BIO_WRITE, row_off(rio, rio->lo[j]),
				   rio->hi[j] - rio->lo[j], rio->d[j] + rio->lo[j] - rio->rs);
	}
	for (uint32_t p = 0; p < r->np; p++)
		if (raid_writable(r, rio->cols[r->k + p]))
			member_bio(rio, rio->cols[r->k + p], BIO_WRITE, row_off(rio, rio->rs),
				   rio->re - rio->rs, rio->d[r->k + p]);
	batch_end(rio);
}

static void write_write_done(struct raid_io *rio)
{
	int lost[2];

	ppl_done(rio);
	if (rio->status)
		rio_finish(rio, rio->status);
	else
		rio_finish(rio, lost_cols(rio, lost) > (int)rio->r->np ? -EIO : 0);
}

static void parity_submit_rw(struct raid_io *rio)
{
	int rc;

	if (parity_span(rio))
		return;
	rc = setup_stripe(rio);

	if (rc) {
		rio_finish(rio, rc);
		return;
	}
	if (rio->bio->op == BIO_READ) {
		read_direct(rio);
		return;
	}
	rc = alloc_bufs(rio);
	if (rc)
		rio_finish(rio, rc);
	else
		stripe_lock(rio, write_start);
}

/* ---- rebuild: raid_parity_rows.c (a batch of rows under their locks) */

/* ---- resync: parity from data, a whole row, under its stripe lock */

static void resync_read(struct raid_io *rio);

static void resync_done(struct raid_io *rio)
{
	rio_finish(rio, rio->status);
}

static void resync_write(struct raid_io *rio)
{
	struct raid *r = rio->r;

	if (rio->status) {
		rio_finish(rio, rio->status);
		return;
	}
	if (rio->child_err) {
		resync_read(rio);
		return;
	}
	if (raid_parity_gen((int)r->np, (int)r->k, r->g.strip, rio->d)) {
		rio_finish(rio, -EIO);
		return;
	}
	batch_begin(rio, resync_done);
	for (uint32_t p = 0; p < r->np; p++)
		if (raid_alive(r, rio->cols[r->k + p]))
			member_bio(rio, rio->cols[r->k + p], BIO_WRITE, row_off(rio, 0),
				   r->g.strip, rio->d[r->k + p]);
	batch_end(rio);
}

static void resync_read(struct raid_io *rio)
{
	struct raid *r = rio->r;

	for (uint32_t j = 0; j < r->k; j++)
		if (!raid_alive(r, rio->cols[j])) {
			rio_finish(rio, 0);	/* a data column is gone: nothing to redo */
			return;
		}
	batch_begin(rio, resync_write);
	for (uint32_t j = 0; j < r->k; j++)
		member_bio(rio, rio->cols[j], BIO_READ, row_off(rio, 0), r->g.strip, rio->d[j]);
	batch_end(rio);
}

static void parity_row(struct raid_io *rio, raid_io_fn fn)
{
	struct raid *r = rio->r;
	int rc;

	rio->stripe = rio->bio->offset / ((uint64_t)r->g.strip * r->k);
	raid_stripe_cols(&r->g, rio->stripe, rio->cols);
	for (uint32_t j = 0; j < r->k; j++)
		rio->lo[j] = rio->hi[j] = 0;
	rio->rs = 0;
	rio->re = r->g.strip;
	rc = alloc_bufs(rio);
	if (rc) {
		rio_finish(rio, rc);
		return;
	}
	stripe_lock(rio, fn);
}

static void parity_resync(struct raid_io *rio)
{
	if (walk_rows(rio) > 1) {
		parity_check_rows(rio);		/* a batch: raid_parity_rows.c */
		return;
	}
	parity_row(rio, resync_read);
}

/* ---- scrub: parity generated again into o[], compared with what is read */

static void scrub_read(struct raid_io *rio);

static void scrub_check(struct raid_io *rio)
{
	struct raid *r = rio->r;
	uint8_t *v[MAXCOLS + 2];
	bool bad = false;

	if (rio->status) {
		rio_finish(rio, rio->status);
		return;
	}
	if (rio->child_err) {
		scrub_read(rio);
		return;
	}
	for (uint32_t j = 0; j < r->k; j++)
		v[j] = rio->d[j];
	for (uint32_t p = 0; p < r->np; p++)
		v[r->k + p] = rio->o[r->k + p];
	if (raid_parity_gen((int)r->np, (int)r->k, r->g.strip, v)) {
		rio_finish(rio, -EIO);
		return;
	}
	batch_begin(rio, resync_done);
	for (uint32_t p = 0; p < r->np; p++) {
		if (!memcmp(v[r->k + p], rio->d[r->k + p], r->g.strip))
			continue;
		bad = true;
		if (r->scrub_repair)
			member_bio(rio, rio->cols[r->k + p], BIO_WRITE, row_off(rio, 0),
				   r->g.strip, v[r->k + p]);
	}
	if (bad)
		__atomic_add_fetch(&r->scrub_bad, 1, __ATOMIC_RELAXED);
	batch_end(rio);
}

/* Read errors met by the scrub: the row read again without the members
 * that failed it, their columns rebuilt and written back (rewrite_bad). */
static void scrub_fix(struct raid_io *rio)
{
	if (rio->status) {
		rio_finish(rio, rio->status);
		return;
	}
	if (rio->child_err) {
		scrub_read(rio);
		return;
	}
	if (recover_unread(rio)) {
		rio_finish(rio, -EIO);
		return;
	}
	rewrite_bad(rio);
}

static void scrub_read(struct raid_io *rio)
{
	struct raid *r = rio->r;
	int n = snapshot_live(rio);

	for (uint32_t c = 0; c < r->k + r->np; c++)
		if (!raid_alive(r, rio->cols[c])) {
			rio_finish(rio, 0);	/* a member is down: nothing to compare with */
			return;
		}
	if (n > (int)r->np) {
		rio_finish(rio, 0);	/* more read errors than parity: left as it is */
		return;
	}
	batch_begin(rio, n ? scrub_fix : scrub_check);
	read_snapshot(rio, 0, r->g.strip);
	batch_end(rio);
}

static void parity_scrub(struct raid_io *rio)
{
	if (walk_rows(rio) > 1) {
		parity_check_rows(rio);		/* a batch: raid_parity_rows.c */
		return;
	}
	parity_row(rio, scrub_read);
}

/* ---- FLUSH: to every live member; what it made durable frees log space */

static void flush_done(struct raid_io *rio)
{
	struct raid *r = rio->r;

	if (!rio->status && !rio->child_err && raid_set_alive(r))
		ppl_durable(r, rio->ppl_mark);
	if (rio->status)
		rio_finish(rio, rio->status);
	else
		rio_finish(rio, raid_set_alive(r) ? 0 : -EIO);
}

static void parity_flush(struct raid_io *rio)
{
	struct raid *r = rio->r;

	rio->ppl_mark = ppl_flush_mark(r);
	batch_begin(rio, flush_done);
	for (uint32_t i = 0; i < r->g.nmembers; i++)
		if (raid_alive(r, i))
			member_bio(rio, i, BIO_FLUSH, 0, 0, NULL);
	batch_end(rio);
}

static void stripe_start(struct raid *r)
{
	r->bd.io_boundary = r->g.strip * r->k * parity_rows_max(r);
}

const struct raid_level_ops raid5_level = {
	.level = RAID_LEVEL_5,
	.min_members = 3,
	.start = stripe_start,
	.submit_rw = parity_submit_rw,
	.submit_null = parity_flush,
	.rebuild = parity_rebuild_rows,
	.walk_batch = RAID_BIO_REBUILD | RAID_BIO_RESYNC | RAID_BIO_SCRUB,
	.resync = parity_resync,
	.scrub = parity_scrub,
};

const struct raid_level_ops raid6_level = {
	.level = RAID_LEVEL_6,
	.min_members = 4,
	.start = stripe_start,
	.submit_rw = parity_submit_rw,
	.submit_null = parity_flush,
	.rebuild = parity_rebuild_rows,
	.walk_batch = RAID_BIO_REBUILD | RAID_BIO_RESYNC | RAID_BIO_SCRUB,
	.resync = parity_resync,
	.scrub = parity_scrub,
};
