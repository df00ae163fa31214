/* SPDX-License-Identifier: MIT */
/*
 * RAID 0, 1 and 10: a bio never crosses a strip (io_boundary), so it maps
 * to one member (0) or one set of mirrors (1: every member; 10: a pair),
 * and member bios use the parent's iovec as it is.
 *
 * Mirror reads go to one live mirror, chosen by stripe so that sequential
 * reads spread over the mirrors; when it fails, the member is marked failed
 * and the next live mirror is tried. Writes go to every live mirror and to
 * a mirror being rebuilt, under the row's stripe lock, and succeed if a live
 * mirror took the data. A rebuild copies a row from a live mirror to the new
 * one under the same lock, so a write never lands between its read and its
 * write. Rebuild, resync and scrub bios of the walker (raid_rebuild.c) stand
 * for rio->rows rows from rio->stripe when the set is idle (one otherwise),
 * all under one lock: one member bio of rows x strip per member, in the
 * walker's buffer (walk_rows_setup: rio->zero). RAID 0 passes member errors up: it has nothing to fall back on, and
 * a member is never marked failed.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "raid/raid_int.h"

static uint32_t mirrors(struct raid *r, uint32_t col, uint32_t *out)
{
	if (r->g.level == RAID_LEVEL_10) {
		out[0] = 2 * col;
		out[1] = 2 * col + 1;
		return 2;
	}
	for (uint32_t i = 0; i < r->g.nmembers; i++)
		out[i] = i;
	return r->g.nmembers;
}

static void mirror_read(struct raid_io *rio);

static void mirror_fix(struct raid_io *rio);

/* A walker bio's rows: where they start on a member, their bytes there, and
 * the buffer of the i-th member (or group) among them. */
static uint64_t rows_moff(struct raid_io *rio)
{
	return rio->stripe * rio->r->g.strip;
}

static uint64_t rows_len(struct raid_io *rio)
{
	return (uint64_t)rio->rows * rio->r->g.strip;
}

static uint8_t *rows_buf(struct raid_io *rio, uint32_t i)
{
	return rio->zero + (size_t)i * rows_len(rio);
}

static void mirror_read_done(struct raid_io *rio)
{
	if (rio->child_err && !rio->status)
		mirror_read(rio);
	else if (!rio->status && rio->bad)
		mirror_fix(rio);
	else
		rio_finish(rio, rio->status);
}

/* ---- read errors: under the row lock, read the good mirror again (a write
 * may have landed since) and write it over the mirrors that failed the read */

static void mirror_fix_done(struct raid_io *rio)
{
	if (rio->nok)
		__atomic_add_fetch(&rio->r->read_fixed, (uint64_t)rio->nok, __ATOMIC_RELAXED);
	rio_finish(rio, 0);	/* a failed rewrite failed its member */
}

static void mirror_fix_write(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct raid_loc loc;

	if (rio->status || rio->child_err) {
		rio_finish(rio, rio->status ? rio->status : -EIO);
		return;
	}
	raid_map(&r->g, rio->bio->offset, &loc);
	batch_begin(rio, mirror_fix_done);
	for (uint32_t m = 0; m < r->g.nmembers; m++)
		if ((rio->bad & (1u << m)) && raid_alive(r, m))
			member_bio(rio, m, BIO_WRITE, loc.moff, rio->bio->len, NULL);
	batch_end(rio);
}

static void mirror_fix_read(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct raid_loc loc;

	raid_map(&r->g, rio->bio->offset, &loc);
	batch_begin(rio, mirror_fix_write);
	member_bio(rio, rio->cols[0], BIO_READ, loc.moff, rio->bio->len, NULL);
	batch_end(rio);
}

static void mirror_fix(struct raid_io *rio)
{
	struct raid_loc loc;

	raid_map(&rio->r->g, rio->bio->offset, &loc);
	rio->stripe = loc.stripe;
	stripe_lock(rio, mirror_fix_read);
}

static void mirror_read(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct raid_loc loc;
	uint32_t m[RAID_MAX_MEMBERS], nm;

	raid_map(&r->g, rio->bio->offset, &loc);
	nm = mirrors(r, loc.col, m);
	for (uint32_t i = 0; i < nm; i++) {
		uint32_t c = m[(i + loc.stripe) % nm];

		if (!raid_alive(r, c) || (rio->tried & (1u << c)))
			continue;
		rio->tried |= 1u << c;
		rio->cols[0] = c;	/* the one read last: good, if it works */
		batch_begin(rio, mirror_read_done);
		member_bio(rio, c, BIO_READ, loc.moff, rio->bio->len, NULL);
		batch_end(rio);
		return;
	}
	rio_finish(rio, rio->status ? rio->status : -EIO);
}

/* A write succeeded if a live mirror of its group took it: a mirror whose
 * write failed has been marked failed by now. */
static void mirror_write_done(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct raid_loc loc;
	uint32_t m[RAID_MAX_MEMBERS], nm;
	bool ok = false;

	raid_map(&r->g, rio->bio->offset, &loc);
	nm = mirrors(r, loc.col, m);
	for (uint32_t i = 0; i < nm; i++)
		ok |= raid_alive(r, m[i]);
	if (rio->status)
		rio_finish(rio, rio->status);
	else
		rio_finish(rio, ok && rio->nok ? 0 : -EIO);
}

/* Under the row's lock, so that a rebuild never copies a row while a write
 * to it is half done. */
static void mirror_write(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct bio *bio = rio->bio;
	struct raid_loc loc;
	uint32_t m[RAID_MAX_MEMBERS], nm;

	raid_map(&r->g, bio->offset, &loc);
	batch_begin(rio, mirror_write_done);
	nm = mirrors(r, loc.col, m);
	for (uint32_t i = 0; i < nm; i++)
		if (raid_writable(r, m[i]))
			member_bio(rio, m[i], bio->op, loc.moff, bio->len, NULL);
	batch_end(rio);
}

static void mirror_submit_rw(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct bio *bio = rio->bio;
	struct raid_loc loc;

	raid_map(&r->g, bio->offset, &loc);
	assert(loc.moff % r->g.strip + bio->len <= r->g.strip);
	if (bio->op == BIO_READ) {
		mirror_read(rio);
		return;
	}
	rio->stripe = loc.stripe;
	stripe_lock(rio, mirror_write);
}

/* ---- rebuild: copy a row from a live mirror to the one being rebuilt */

static void mirror_rebuild_done(struct raid_io *rio)
{
	rio_finish(rio, rio->status ? rio->status : rio->child_err ? -EIO : 0);
}

static void mirror_rebuild_read(struct raid_io *rio);

static void mirror_rebuild_write(struct raid_io *rio)
{
	struct raid *r = rio->r;
	uint32_t m[RAID_MAX_MEMBERS], nm, col = (uint32_t)r->rebuild_slot;

	if (rio->status) {
		rio_finish(rio, rio->status);
		return;
	}
	if (rio->child_err) {
		mirror_rebuild_read(rio);	/* from another mirror */
		return;
	}
	if (r->g.level == RAID_LEVEL_10)
		col /= 2;
	batch_begin(rio, mirror_rebuild_done);
	nm = mirrors(r, col, m);
	for (uint32_t i = 0; i < nm; i++)
		if (raid_rebuilding(r, m[i]))
			member_bio(rio, m[i], BIO_WRITE, rows_moff(rio), rows_len(rio),
				   rows_buf(rio, 0));
	batch_end(rio);
}
/* Under the row's lock. */
static void mirror_rebuild_read(struct raid_io *rio)
{
	struct raid *r = rio->r;
	uint32_t m[RAID_MAX_MEMBERS], nm, col = (uint32_t)r->rebuild_slot;

	if (r->g.level == RAID_LEVEL_10)
		col /= 2;
	nm = mirrors(r, col, m);
	for (uint32_t i = 0; i < nm; i++) {
		if (!rio_readable(rio, m[i]))
			continue;
		batch_begin(rio, mirror_rebuild_write);
		member_bio(rio, m[i], BIO_READ, rows_moff(rio), rows_len(rio), rows_buf(rio, 0));
		batch_end(rio);
		return;
	}
	rio_finish(rio, -EIO);
}

static void mirror_rebuild(struct raid_io *rio)
{
	struct raid *r = rio->r;

	if (r->rebuild_slot < 0 || walk_rows_setup(rio, r->g.strip, 0)) {
		rio_finish(rio, -ENOMEM);
		return;
	}
	stripe_lock(rio, mirror_rebuild_read);
}

/* ---- resync: every mirror of each group copies the group's first live one.
 * RAID 1 has one group (every member), RAID 10 one per pair. rio->cols[g]
 * is the member read for group g (UINT32_MAX: none live). */

static uint32_t ngroups(struct raid *r)
{
	return r->g.level == RAID_LEVEL_10 ? r->g.nmembers / 2 : 1;
}

static void mirror_resync_read(struct raid_io *rio);

static void mirror_resync_done(struct raid_io *rio)
{
	rio_finish(rio, rio->status);
}

static void mirror_resync_write(struct raid_io *rio)
{
	struct raid *r = rio->r;

	if (rio->status) {
		rio_finish(rio, rio->status);
		return;
	}
	if (rio->child_err) {
		mirror_resync_read(rio);
		return;
	}
	batch_begin(rio, mirror_resync_done);
	for (uint32_t g = 0; g < ngroups(r); g++) {
		uint32_t m[RAID_MAX_MEMBERS], nm = mirrors(r, g, m);

		if (rio->cols[g] == UINT32_MAX)
			continue;
		for (uint32_t i = 0; i < nm; i++)
			if (m[i] != rio->cols[g] && raid_alive(r, m[i]))
				member_bio(rio, m[i], BIO_WRITE, rows_moff(rio), rows_len(rio),
					   rows_buf(rio, g));
	}
	batch_end(rio);
}

static void mirror_resync_read(struct raid_io *rio)
{
	struct raid *r = rio->r;

	batch_begin(rio, mirror_resync_write);
	for (uint32_t g = 0; g < ngroups(r); g++) {
		uint32_t m[RAID_MAX_MEMBERS], nm = mirrors(r, g, m);

		rio->cols[g] = UINT32_MAX;
		for (uint32_t i = 0; i < nm; i++)
			if (rio_readable(rio, m[i])) {
				rio->cols[g] = m[i];
				member_bio(rio, m[i], BIO_READ, rows_moff(rio), rows_len(rio),
					   rows_buf(rio, g));
				break;
			}
	}
	batch_end(rio);
}

static void mirror_resync(struct raid_io *rio)
{
	struct raid *r = rio->r;

	if (walk_rows_setup(rio, (size_t)ngroups(r) * r->g.strip, 0)) {
		rio_finish(rio, -ENOMEM);
		return;
	}
	stripe_lock(rio, mirror_resync_read);
}

/* ---- scrub: every live mirror of a row read, compared with the first */

static void mirror_scrub_read(struct raid_io *rio);

/* The scrub's writes ended: rewrites of blocks that failed a read
 * (rio->tried of them) count as repaired read errors. */
static void mirror_scrub_done(struct raid_io *rio)
{
	uint32_t fixed = MIN(rio->tried, (uint32_t)rio->nok);

	if (fixed)
		__atomic_add_fetch(&rio->r->read_fixed, (uint64_t)fixed, __ATOMIC_RELAXED);
	rio_finish(rio, rio->status);
}

/*
 * Every readable mirror of the rows was read. A mirror whose read failed
 * (rio->bad) gets the first readable copy of its group written over it;
 * the readable copies are compared row by row, and with repair the first
 * one is copied over those that differ (one strip per bio). A row counts
 * once when inconsistent.
 */
static void mirror_scrub_check(struct raid_io *rio)
{
	struct raid *r = rio->r;
	size_t st = r->g.strip;

	if (rio->status) {
		rio_finish(rio, rio->status);
		return;
	}
	if (rio->child_err) {
		mirror_scrub_read(rio);
		return;
	}
	batch_begin(rio, mirror_scrub_done);
	rio->tried = 0;
	for (uint32_t row = 0; row < rio->rows; row++) {
		bool bad = false;

		for (uint32_t g = 0; g < ngroups(r); g++) {
			uint32_t m[RAID_MAX_MEMBERS], nm = mirrors(r, g, m), first = UINT32_MAX;
			uint8_t *good;

			for (uint32_t i = 0; i < nm && first == UINT32_MAX; i++)
				if (rio_readable(rio, m[i]))
					first = m[i];
			if (first == UINT32_MAX)
				continue;	/* no copy could be read: left as it is */
			good = rows_buf(rio, first) + (size_t)row * st;
			for (uint32_t i = 0; i < nm; i++) {
				if (m[i] == first)
					continue;
				if (!rio_readable(rio, m[i])) {
					if (!row) {	/* the whole range, once */
						member_bio(rio, m[i], BIO_WRITE, rows_moff(rio),
							   rows_len(rio), rows_buf(rio, first));
						rio->tried++;
					}
					continue;
				}
				if (!memcmp(good, rows_buf(rio, m[i]) + (size_t)row * st, st))
					continue;
				bad = true;
				if (r->scrub_repair)
					member_bio(rio, m[i], BIO_WRITE, rows_moff(rio) + (size_t)row * st,
						   st, good);
			}
		}
		if (bad)
			__atomic_add_fetch(&r->scrub_bad, 1, __ATOMIC_RELAXED);
	}
	batch_end(rio);
}

static void mirror_scrub_read(struct raid_io *rio)
{
	struct raid *r = rio->r;

	for (uint32_t i = 0; i < r->g.nmembers; i++)
		if (!raid_alive(r, i)) {
			rio_finish(rio, 0);	/* a mirror is down: skip the row */
			return;
		}
	batch_begin(rio, mirror_scrub_check);
	for (uint32_t i = 0; i < r->g.nmembers; i++)
		if (rio_readable(rio, i))	/* not those that failed a read just now */
			member_bio(rio, i, BIO_READ, rows_moff(rio), rows_len(rio),
				   rows_buf(rio, i));
	batch_end(rio);
}

static void mirror_scrub(struct raid_io *rio)
{
	struct raid *r = rio->r;

	if (walk_rows_setup(rio, (size_t)r->g.nmembers * r->g.strip, 0)) {
		rio_finish(rio, -ENOMEM);
		return;
	}
	stripe_lock(rio, mirror_scrub_read);
}

static void raid0_done(struct raid_io *rio)
{
	rio_finish(rio, rio->status);
}

static void raid0_submit_rw(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct raid_loc loc;

	raid_map(&r->g, rio->bio->offset, &loc);
	assert(loc.moff % r->g.strip + rio->bio->len <= r->g.strip);
	batch_begin(rio, raid0_done);
	member_bio(rio, loc.member, rio->bio->op, loc.moff, rio->bio->len, NULL);
	batch_end(rio);
}

static void strip_start(struct raid *r)
{
	r->bd.io_boundary = r->g.strip;
}

const struct raid_level_ops raid0_level = {
	.level = RAID_LEVEL_0,
	.min_members = 1,
	.start = strip_start,
	.submit_rw = raid0_submit_rw,
	.submit_null = raid_submit_flush,
};

const struct raid_level_ops raid1_level = {
	.level = RAID_LEVEL_1,
	.min_members = 2,
	.start = strip_start,
	.submit_rw = mirror_submit_rw,
	.submit_null = raid_submit_flush,
	.rebuild = mirror_rebuild,
	.walk_batch = RAID_BIO_REBUILD | RAID_BIO_RESYNC | RAID_BIO_SCRUB,
	.resync = mirror_resync,
	.scrub = mirror_scrub,
};

const struct raid_level_ops raid10_level = {
	.level = RAID_LEVEL_10,
	.min_members = 4,
	.start = strip_start,
	.submit_rw = mirror_submit_rw,
	.submit_null = raid_submit_flush,
	.rebuild = mirror_rebuild,
	.walk_batch = RAID_BIO_REBUILD | RAID_BIO_RESYNC | RAID_BIO_SCRUB,
	.resync = mirror_resync,
	.scrub = mirror_scrub,
};
