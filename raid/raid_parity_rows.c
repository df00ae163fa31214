/* SPDX-License-Identifier: MIT */
/*
 * RAID 5 and 6 rebuild, a batch of rows per bio. raid_walk_rows sends
 * several rows per RAID_BIO_REBUILD bio when the set has no foreground I/O
 * (one row otherwise): the batch holds the stripe locks of all its rows
 * (one lock over the range), reads rows x strip from each live member in
 * one member bio, rebuilds the lost columns row by row, and writes rows x
 * strip to each member being rebuilt in one member bio.
 *
 * A row's columns rotate from stripe to stripe (raid_stripe_cols), so the
 * buffers are per member: member m's strip of row i of the batch is at
 * base + (m * rows + i) * strip. The base is the walker's buffer when it is
 * large enough (raid_walk_req), else rio->mem; rio->zero holds it (unused
 * otherwise by a rebuild). rio->readmask holds members (not columns) here.
 */
#include <errno.h>
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

void parity_rebuild_rows(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct raid_walk_req *req = rio->bio->end_arg;
	uint64_t nrows = r->g.member_size / r->g.strip;
	size_t need;

	rio->stripe = rio->bio->offset / ((uint64_t)r->g.strip * r->k);
	rio->rows = (uint32_t)MIN((uint64_t)MAX(req->rows, 1u), nrows - rio->stripe);
	need = (size_t)r->g.nmembers * rows_len(rio);
	if (req->buf && req->buf_len >= need) {
		rio->zero = req->buf;
	} else if (rio_alloc_mem(rio, need)) {
		rio_finish(rio, -ENOMEM);
		return;
	} else {
		rio->zero = rio->mem;
	}
	stripe_lock(rio, rows_read);
}
