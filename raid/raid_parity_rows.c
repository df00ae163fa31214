/* SPDX-License-Identifier: MIT */
/*
 * RAID 5 and 6 rebuild, resync and scrub, a batch of rows per bio.
 * raid_walk_rows sends several rows per walker bio when the set has no
 * foreground I/O (one row otherwise): the batch holds the stripe locks of
 * all its rows (one lock over the range), reads rows x strip from each
 * readable member in one member bio, and then, row by row:
 *  - rebuild: rebuilds the lost columns, and writes rows x strip to each
 *    member being rebuilt in one member bio;
 *  - resync and scrub: rebuilds the columns whose read failed (written back
 *    in one bio per member), generates the parity of the row again and
 *    compares it with what was read; a parity strip that differs is counted
 *    (scrub) and written (resync; scrub with repair), one strip per bio. A
 *    row with a data column on a member that is not live is left as it is
 *    (resync), as is every row of a set with a member away (scrub), like
 *    the one-row paths in raid_parity_io.c.
 *
 * A row's columns rotate from stripe to stripe (raid_stripe_cols), so the
 * buffers are per member: member m's strip of row i of the batch is at
 * base + (m * rows + i) * strip. The base is the walker's buffer when it is
 * large enough (raid_walk_req), else rio->mem; rio->zero holds it (unused
 * otherwise by a rebuild). rio->readmask holds members (not columns) here.
 * Resync and scrub generate parity into rio->o[]: np strips after them.
 */
#include <errno.h>
#include <string.h>
#include "raid/raid_int.h"

static void rows_read(struct raid_io *rio);

static size_t rows_len(struct raid_io *rio)
{
	return (size_t)rio->rows * rio->r->g.strip;
}

static uint8_t *mbuf(struct raid_io *rio, uint32_t m)
{
	return rio->zero + (size_t)m * rows_len(rio);
}

static uint64_t rows_moff(struct raid_io *rio)
{
	return rio->stripe * rio->r->g.strip;
}

static void rows_done(struct raid_io *rio)
{
	rio_finish(rio, rio->status ? rio->status : rio->child_err ? -EIO : 0);
}

/* Rebuild the columns of row i on members not read. */
static int rows_recover(struct raid_io *rio, uint32_t i)
{
	struct raid *r = rio->r;
	uint32_t cols[MAXCOLS];
	uint8_t *d[MAXCOLS + 2];
	int lost[2], n = 0;

	raid_stripe_cols(&r->g, rio->stripe + i, cols);
	for (uint32_t c = 0; c < r->k + r->np; c++) {
		d[c] = mbuf(rio, cols[c]) + (size_t)i * r->g.strip;
		if (rio->readmask & (1ull << cols[c]))
			continue;
		if (n == (int)r->np)
			return -EIO;
		lost[n++] = (int)c;
	}
	if (n && raid_recover((int)r->np, (int)r->k, r->g.strip, d, lost, n))
		return -EIO;
	return 0;
}

static void rows_write(struct raid_io *rio)
{
	struct raid *r = rio->r;

	if (rio->status) {
		rio_finish(rio, rio->status);
		return;
	}
	if (rio->child_err) {
		rows_read(rio);		/* again, without what just failed */
		return;
	}
	for (uint32_t i = 0; i < rio->rows; i++)
		if (rows_recover(rio, i)) {
			rio_finish(rio, -EIO);
			return;
		}
	batch_begin(rio, rows_done);
	for (uint32_t m = 0; m < r->g.nmembers; m++)
		if (!(rio->readmask & (1ull << m)) && raid_rebuilding(r, m))
			member_bio(rio, m, BIO_WRITE, rows_moff(rio), rows_len(rio), mbuf(rio, m));
	batch_end(rio);
}

static void rows_read(struct raid_io *rio)
{
	struct raid *r = rio->r;
	uint32_t lost = 0;

	rio->readmask = 0;
	for (uint32_t m = 0; m < r->g.nmembers; m++) {
		if (rio_readable(rio, m))
			rio->readmask |= 1ull << m;
		else
			lost++;
	}
	if (lost > r->np) {
		rio_finish(rio, -EIO);
		return;
	}
	batch_begin(rio, rows_write);
	for (uint32_t m = 0; m < r->g.nmembers; m++)
		if (rio->readmask & (1ull << m))
			member_bio(rio, m, BIO_READ, rows_moff(rio), rows_len(rio), mbuf(rio, m));
	batch_end(rio);
}

int walk_rows_setup(struct raid_io *rio, size_t row_bytes, size_t extra)
{
	struct raid *r = rio->r;
	struct raid_walk_req *req = rio->bio->end_arg;
	uint64_t nrows = r->g.member_size / r->g.strip;
	size_t need;

	rio->stripe = rio->bio->offset / ((uint64_t)r->g.strip * r->k);
	rio->rows = (uint32_t)MIN((uint64_t)MAX(req->rows, 1u), nrows - rio->stripe);
	need = row_bytes * rio->rows + extra;
	if (req->buf && req->buf_len >= need) {
		rio->zero = req->buf;
		return 0;
	}
	if (rio_alloc_mem(rio, need))
		return -ENOMEM;
	rio->zero = rio->mem;
	return 0;
}

void parity_rebuild_rows(struct raid_io *rio)
{
	struct raid *r = rio->r;

	if (walk_rows_setup(rio, (size_t)r->g.nmembers * r->g.strip, 0)) {
		rio_finish(rio, -ENOMEM);
		return;
	}
	stripe_lock(rio, rows_read);
}

/* ------------------------------------------------------------ resync, scrub */

static void check_read(struct raid_io *rio);

static bool is_scrub(struct raid_io *rio)
{
	return rio->bio->flags & RAID_BIO_SCRUB;
}

/* The writes ended: rio->tried of them rewrote blocks that failed a read.
 * A failed write failed its member: the row is left to it. */
static void check_done(struct raid_io *rio)
{
	uint32_t fixed = MIN(rio->tried, (uint32_t)rio->nok);

	if (fixed)
		__atomic_add_fetch(&rio->r->read_fixed, (uint64_t)fixed, __ATOMIC_RELAXED);
	rio_finish(rio, rio->status);
}

/* Row i: its columns' buffers in d[]; false: left as it is (a data column
 * on a member that is not live, more columns unread than parity, or, for a
 * scrub, any member not live). Columns not read are rebuilt. */
static bool check_row_prepare(struct raid_io *rio, uint32_t i, uint32_t *cols, uint8_t **d)
{
	struct raid *r = rio->r;
	int lost[2], n = 0;

	raid_stripe_cols(&r->g, rio->stripe + i, cols);
	for (uint32_t c = 0; c < r->k + r->np; c++) {
		d[c] = mbuf(rio, cols[c]) + (size_t)i * r->g.strip;
		if (!raid_alive(r, cols[c]) && (c < r->k || is_scrub(rio)))
			return false;
		if (rio->readmask & (1ull << cols[c]))
			continue;
		if (n == (int)r->np)
			return false;
		lost[n++] = (int)c;
	}
	return !n || !raid_recover((int)r->np, (int)r->k, r->g.strip, d, lost, n);
}

static void check_rows(struct raid_io *rio)
{
	struct raid *r = rio->r;
	uint32_t cols[MAXCOLS];
	uint8_t *d[MAXCOLS + 2], *v[MAXCOLS + 2];
	bool all = true;

	if (rio->status) {
		rio_finish(rio, rio->status);
		return;
	}
	if (rio->child_err) {
		check_read(rio);	/* again, without what just failed */
		return;
	}
	batch_begin(rio, check_done);
	for (uint32_t i = 0; i < rio->rows; i++) {
		bool bad = false;

		if (!check_row_prepare(rio, i, cols, d)) {
			all = false;
			continue;
		}
		for (uint32_t c = 0; c < r->k + r->np; c++)
			v[c] = c < r->k ? mbuf(rio, cols[c]) + (size_t)i * r->g.strip :
			       rio->o[c - r->k];
		if (raid_parity_gen((int)r->np, (int)r->k, r->g.strip, v)) {
			if (!rio->status)
				rio->status = -EIO;
			break;
		}
		for (uint32_t p = 0; p < r->np; p++) {
			uint32_t m = cols[r->k + p];

			if (!raid_alive(r, m) || !memcmp(v[r->k + p], d[r->k + p], r->g.strip))
				continue;
			bad = true;
			if (is_scrub(rio) && !r->scrub_repair)
				continue;
			/* written from the row's own buffer: o[] is the next row's */
			memcpy(d[r->k + p], v[r->k + p], r->g.strip);
			member_bio(rio, m, BIO_WRITE, rows_moff(rio) + (uint64_t)i * r->g.strip,
				   r->g.strip, d[r->k + p]);
		}
		if (bad && is_scrub(rio))
			__atomic_add_fetch(&r->scrub_bad, 1, __ATOMIC_RELAXED);
	}
	/* a member whose read failed gets its rows back, rebuilt (when every
	 * row could be: else it is left to fail again) */
	rio->tried = 0;
	for (uint32_t m = 0; m < r->g.nmembers && all; m++)
		if (rio->bad & (1u << m)) {
			member_bio(rio, m, BIO_WRITE, rows_moff(rio), rows_len(rio), mbuf(rio, m));
			rio->tried++;
		}
	batch_end(rio);
}

static void check_read(struct raid_io *rio)
{
	struct raid *r = rio->r;
	uint32_t lost = 0;

	rio->readmask = 0;
	for (uint32_t m = 0; m < r->g.nmembers; m++) {
		if (!raid_alive(r, m) && is_scrub(rio)) {
			rio_finish(rio, 0);	/* a member is away: nothing to compare with */
			return;
		}
		if (rio_readable(rio, m))
			rio->readmask |= 1ull << m;
		else
			lost++;
	}
	if (lost == r->g.nmembers) {
		rio_finish(rio, 0);
		return;
	}
	batch_begin(rio, check_rows);
	for (uint32_t m = 0; m < r->g.nmembers; m++)
		if (rio->readmask & (1ull << m))
			member_bio(rio, m, BIO_READ, rows_moff(rio), rows_len(rio), mbuf(rio, m));
	batch_end(rio);
}

/* A resync or scrub batch (rio->rows rows from rio->stripe). */
void parity_check_rows(struct raid_io *rio)
{
	struct raid *r = rio->r;

	/* the generated parity: np strips after the rows' buffers */
	if (walk_rows_setup(rio, (size_t)r->g.nmembers * r->g.strip,
			    (size_t)r->np * r->g.strip)) {
		rio_finish(rio, -ENOMEM);
		return;
	}
	for (uint32_t p = 0; p < r->np; p++)
		rio->o[p] = mbuf(rio, r->g.nmembers) + (size_t)p * r->g.strip;
	stripe_lock(rio, check_read);
}
