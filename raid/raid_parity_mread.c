/* SPDX-License-Identifier: MIT */
/*
 * RAID 5 and 6 READs over more than one stripe (parity_span hands them
 * here), batched as the whole-stripe writes of raid_parity_multi.c are:
 *  - every member holding a column the read touches readable: no lock;
 *    each member reads its data strips straight into the caller's iovec,
 *    one member bio per run of rows where it holds touched data (a parity
 *    strip, or an untouched one, ends a run: left-symmetric puts parity on
 *    a member every n rows, so about rows / n + 1 bios per member instead
 *    of one per stripe and touched column);
 *  - otherwise (a member failed, missing or being rebuilt), under the lock
 *    of all its stripes: ONE member bio per readable member over all the
 *    rows (data and parity) into a buffer, then per row the lost columns
 *    rebuilt (raid_recover) and the touched data copied out.
 * A member failing or a read error in the first case: the second (a member
 * with a read error counts as lost for this read); the rows of a member
 * whose read failed are then rebuilt whole and written back to it (still
 * under the lock), as the stripe path does. Read errors on more members
 * than parity covers: stripe by stripe (each stripe may have few).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "raid/raid_int.h"

#define MREAD_MAX_IOVS	512	/* per member bio; more: stripe by stripe */

static uint64_t stripe_bytes(const struct raid *r)
{
	return (uint64_t)r->g.strip * r->k;
}

/* The part of data column j of row i (from rio->stripe) the read touches:
 * [*lo, *hi) inside the strip; false: none. */
static bool touched_part(struct raid_io *rio, uint32_t i, uint32_t j, uint32_t *lo, uint32_t *hi)
{
	struct raid *r = rio->r;
	uint64_t s = (rio->stripe + i) * stripe_bytes(r) + (uint64_t)j * r->g.strip;
	uint64_t b = MAX(s, rio->bio->offset), e = MIN(s + r->g.strip,
							 rio->bio->offset + rio->bio->len);

	if (b >= e)
		return false;
	*lo = (uint32_t)(b - s);
	*hi = (uint32_t)(e - s);
	return true;
}

static size_t caller_skip(struct raid_io *rio, uint32_t i, uint32_t j, uint32_t lo)
{
	struct raid *r = rio->r;

	return (size_t)((rio->stripe + i) * stripe_bytes(r) + (uint64_t)j * r->g.strip + lo -
			rio->bio->offset);
}

/* The data column member m holds in row i, or -1 (parity). */
static int data_col(struct raid_io *rio, uint32_t i, uint32_t m)
{
	uint32_t cols[MAXCOLS];

	raid_stripe_cols(&rio->r->g, rio->stripe + i, cols);
	for (uint32_t j = 0; j < rio->r->k; j++)
		if (cols[j] == m)
			return (int)j;
	return -1;
}

static void fallback(struct raid_io *rio)
{
	if (rio->locked)
		stripe_unlock(rio);
	rio->rows = 0;
	parity_split_rows(rio);
}

static void degraded_start(struct raid_io *rio);

/* ---- every touched column readable: straight into the caller's iovec */

struct run {
	struct iovec	*v;
	int		nv, cap;
	uint64_t	moff, len;
};

/* Append [skip, skip + len) of the caller's iovec to the run. */
static int run_add(struct run *run, const struct bio *bio, size_t skip, size_t len)
{
	for (int i = 0; i < bio->iovcnt && len; i++) {
		size_t take;

		if (skip >= bio->iov[i].iov_len) {
			skip -= bio->iov[i].iov_len;
			continue;
		}
		take = MIN(len, bio->iov[i].iov_len - skip);
		if (run->nv == run->cap) {
			struct iovec *v;

			if (run->cap >= MREAD_MAX_IOVS)
				return -E2BIG;
			run->cap = run->cap ? run->cap * 2 : 8;
			v = realloc(run->v, (size_t)run->cap * sizeof(*v));
			if (!v)
				return -ENOMEM;
			run->v = v;
		}
		run->v[run->nv].iov_base = (uint8_t *)bio->iov[i].iov_base + skip;
		run->v[run->nv].iov_len = take;
		run->nv++;
		len -= take;
		skip = 0;
	}
	return 0;
}

/* The run to member m (it owns the iovec from now on). */
static void run_send(struct raid_io *rio, uint32_t m, struct run *run)
{
	if (run->nv)
		member_bio_vec(rio, m, BIO_READ, run->moff, run->len, run->v, run->nv);
	else
		free(run->v);
	memset(run, 0, sizeof(*run));
}

static void direct_done(struct raid_io *rio)
{
	if (rio->status)
		rio_finish(rio, rio->status);
	else if (rio->split_rows)
		fallback(rio);		/* too many pieces: stripe by stripe */
	else if (rio->child_err)
		degraded_start(rio);	/* a member failed, or a read error */
	else
		rio_finish(rio, 0);
}

static bool touched_readable(struct raid_io *rio)
{
	struct raid *r = rio->r;
	uint32_t cols[MAXCOLS], lo, hi;

	for (uint32_t i = 0; i < rio->rows; i++) {
		raid_stripe_cols(&r->g, rio->stripe + i, cols);
		for (uint32_t j = 0; j < r->k; j++)
			if (touched_part(rio, i, j, &lo, &hi) && !rio_readable(rio, cols[j]))
				return false;
	}
	return true;
}

static void direct_read(struct raid_io *rio)
{
	struct raid *r = rio->r;

	rio->split_rows = false;	/* set: could not build a run */
	batch_begin(rio, direct_done);
	for (uint32_t m = 0; m < r->g.nmembers && !rio->split_rows; m++) {
		struct run run = { 0 };

		for (uint32_t i = 0; i < rio->rows; i++) {
			int j = data_col(rio, i, m);
			uint32_t lo, hi;
			uint64_t moff;

			if (j < 0 || !touched_part(rio, i, (uint32_t)j, &lo, &hi))
				continue;
			moff = (rio->stripe + i) * r->g.strip + lo;
			if (run.nv && run.moff + run.len != moff)
				run_send(rio, m, &run);
			if (!run.nv)
				run.moff = moff;
			if (run_add(&run, rio->bio, caller_skip(rio, i, (uint32_t)j, lo), hi - lo)) {
				rio->split_rows = true;
				break;
			}
			run.len += hi - lo;
		}
		if (rio->split_rows)
			free(run.v);
		else
			run_send(rio, m, &run);
	}
	batch_end(rio);
}

/* ---- degraded: every readable member over all the rows, under the lock */

static void degraded_read(struct raid_io *rio);

/* Member m's rows in rio->mem. */
static uint8_t *mbuf(struct raid_io *rio, uint32_t m, uint32_t i)
{
	return rio->mem + ((size_t)m * rio->rows + i) * rio->r->g.strip;
}

static void rewrite_done(struct raid_io *rio)
{
	if (rio->nok)
		__atomic_add_fetch(&rio->r->read_fixed, (uint64_t)rio->nok, __ATOMIC_RELAXED);
	rio_finish(rio, 0);	/* the data was read; a failed rewrite failed the member */
}

/* Read errors: the rows of those members, rebuilt, written back. */
static void rewrite_bad(struct raid_io *rio)
{
	struct raid *r = rio->r;

	batch_begin(rio, rewrite_done);
	for (uint32_t m = 0; m < r->g.nmembers; m++)
		if ((rio->bad & (1u << m)) && !(rio->readmask & (1ull << m)) && raid_alive(r, m))
			member_bio(rio, m, BIO_WRITE, rio->stripe * r->g.strip,
				   (uint64_t)rio->rows * r->g.strip, mbuf(rio, m, 0));
	batch_end(rio);
}

static void degraded_done(struct raid_io *rio)
{
	struct raid *r = rio->r;

	if (rio->status) {
		rio_finish(rio, rio->status);
		return;
	}
	if (rio->child_err) {
		degraded_read(rio);	/* again, without the member that just failed */
		return;
	}
	for (uint32_t i = 0; i < rio->rows; i++) {
		uint32_t cols[MAXCOLS], lo, hi;
		uint8_t *d[MAXCOLS + 2];
		int lost[2], nlost = 0;
		bool need = false;

		raid_stripe_cols(&r->g, rio->stripe + i, cols);
		for (uint32_t c = 0; c < r->k + r->np; c++) {
			d[c] = mbuf(rio, cols[c], i);
			if (rio->readmask & (1ull << cols[c]))
				continue;
			if (nlost == (int)r->np) {
				rio_finish(rio, -EIO);
				return;
			}
			lost[nlost++] = (int)c;
			/* a member to write back: all of its rows */
			need |= (c < r->k && touched_part(rio, i, c, &lo, &hi)) ||
				(rio->bad & (1u << cols[c]));
		}
		if (need && raid_recover((int)r->np, (int)r->k, r->g.strip, d, lost, nlost)) {
			rio_finish(rio, -EIO);
			return;
		}
		for (uint32_t j = 0; j < r->k; j++)
			if (touched_part(rio, i, j, &lo, &hi))
				buf_to_iov(rio->bio->iov, rio->bio->iovcnt, caller_skip(rio, i, j, lo),
					   d[j] + lo, hi - lo);
	}
	if (rio->bad)
		rewrite_bad(rio);
	else
		rio_finish(rio, 0);
}

static void degraded_read(struct raid_io *rio)
{
	struct raid *r = rio->r;
	uint32_t nlost = 0;

	rio->readmask = 0;	/* by member */
	for (uint32_t m = 0; m < r->g.nmembers; m++) {
		if (rio_readable(rio, m))
			rio->readmask |= 1ull << m;
		else
			nlost++;
	}
	if (nlost > r->np) {
		if (rio->bad)
			fallback(rio);	/* read errors on too many members: row by row */
		else
			rio_finish(rio, -EIO);
		return;
	}
	batch_begin(rio, degraded_done);
	for (uint32_t m = 0; m < r->g.nmembers; m++)
		if (rio->readmask & (1ull << m))
			member_bio(rio, m, BIO_READ, rio->stripe * r->g.strip,
				   (uint64_t)rio->rows * r->g.strip, mbuf(rio, m, 0));
	batch_end(rio);
}

void parity_read_multi(struct raid_io *rio)
{
	struct raid *r = rio->r;
	uint64_t w = stripe_bytes(r), off = rio->bio->offset;

	rio->stripe = off / w;
	rio->rows = (uint32_t)((off + rio->bio->len - 1) / w - rio->stripe + 1);
	if (touched_readable(rio))
		direct_read(rio);
	else
		degraded_start(rio);
}

static void degraded_start(struct raid_io *rio)
{
	struct raid *r = rio->r;

	if (!rio->mem && rio_alloc_mem(rio, (size_t)r->g.nmembers * rio->rows * r->g.strip)) {
		rio_finish(rio, -ENOMEM);
		return;
	}
	stripe_lock(rio, degraded_read);
}
