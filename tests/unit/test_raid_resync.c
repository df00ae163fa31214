/* SPDX-License-Identifier: MIT */
/*
 * RAID: a member that comes back after it left (raid_fail, or a set
 * assembled without it) is rebuilt only where the set was written since
 * (the write-intent bitmap), and fully when that is not provable; a crash
 * during that partial rebuild; a scrub stopped by closing the set resumes
 * from its cursor, a cancelled one is forgotten; read errors met by a scrub
 * are repaired from redundancy, mismatches reported and with --repair
 * rewritten. Memory members under fault devices; the helpers are those of
 * test_raid_jobs.c.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/fault.h"
#include "sand/raid.h"

#define BS		512u
#define STRIP		8192u
#define QD		16
#define MAXLEN		(32u * 1024)
#define NDEV		8
#define REGION		(2 * STRIP)	/* two rows per bitmap region */
#define MDATA		(1024u * 1024)	/* 128 rows */
#define ROWS		(MDATA / STRIP)

static bool env_no_bitmap;

struct env;

struct slot {
	struct env	*e;
	bool		busy, write;
	uint64_t	off, len;
	uint8_t		*buf;
};

struct env {
	uint32_t	n, ndev;
	uint64_t	member_data;
	struct blkdev	*mem[NDEV], *f[NDEV];	/* [0, n): members as created; then spares */
	struct blkdev	*raid;
	struct ev_loop	*loop;
	struct blkchan	*ch;
	uint8_t		*model;
	uint64_t	size, rng;
	struct slot	slots[QD];
	unsigned	inflight;
	uint64_t	done, errors, mismatches;
};

static uint64_t rnd(struct env *e)
{
	e->rng ^= e->rng << 13;
	e->rng ^= e->rng >> 7;
	e->rng ^= e->rng << 17;
	return e->rng;
}

static void closed_cb(void *arg)
{
	*(bool *)arg = true;
}

static void env_attach(struct env *e)
{
	ck_assert_int_eq(blk_chan_open(e->raid, e->loop, &e->ch), 0);
	e->size = e->raid->size;
	if (!e->model)
		e->model = calloc(1, e->size);
}

/* n members and ndev - n more disks, member_data bytes of data each. */
static void env_create(struct env *e, enum raid_level l, uint32_t n, uint32_t ndev,
		       uint64_t member_data, uint64_t seed)
{
	struct raid_opts o = { .strip = STRIP, .bitmap_region = REGION, .no_bitmap = env_no_bitmap };
	char name[32];

	memset(e, 0, sizeof(*e));
	e->n = n;
	e->ndev = ndev;
	e->member_data = member_data;
	e->rng = seed * 2654435761u + 1;
	for (uint32_t i = 0; i < ndev; i++) {
		snprintf(name, sizeof(name), "m%u", i);
		ck_assert_int_eq(blk_mem_create(name, RAID_DATA_OFFSET + member_data, BS,
						&e->mem[i]), 0);
		snprintf(name, sizeof(name), "f%u", i);
		ck_assert_int_eq(blk_fault_create(name, e->mem[i], &e->f[i]), 0);
	}
	ck_assert_int_eq(ev_loop_new(EV_AUTO, 256, &e->loop), 0);
	ck_assert_int_eq(raid_create("r0", l, e->f, n, &o, &e->raid), 0);
	env_attach(e);
}

static void env_detach(struct env *e)
{
	bool closed = false;

	blk_chan_close(e->ch, closed_cb, &closed);
	for (int i = 0; i < 1000 && !closed; i++)
		ev_run_once(e->loop, 10);
	ck_assert(closed);
	raid_jobs_stop(e->raid);
	ck_assert_int_eq(blkdev_close(e->raid), 0);
	e->raid = NULL;
}

static void env_free(struct env *e)
{
	if (e->raid)
		env_detach(e);
	for (uint32_t i = 0; i < e->ndev; i++) {
		ck_assert_int_eq(blkdev_close(e->f[i]), 0);
		ck_assert_int_eq(blkdev_close(e->mem[i]), 0);
	}
	ev_loop_free(e->loop);
	free(e->model);
}

static void io_end(struct bio *bio, int status)
{
	struct slot *s = bio->end_arg;
	struct env *e = s->e;

	if (status) {
		e->errors++;
		fprintf(stderr, "%s %llu+%llu: %d\n", s->write ? "write" : "read",
			(unsigned long long)s->off, (unsigned long long)s->len, status);
	} else if (!s->write && memcmp(s->buf, e->model + s->off, s->len)) {
		e->mismatches++;
		fprintf(stderr, "read %llu+%llu: data differs\n", (unsigned long long)s->off,
			(unsigned long long)s->len);
	}
	free(s->buf);
	s->buf = NULL;
	s->busy = false;
	e->inflight--;
	e->done++;
}

static bool overlaps(struct env *e, uint64_t off, uint64_t len)
{
	for (int i = 0; i < QD; i++) {
		struct slot *s = &e->slots[i];

		if (s->busy && off < s->off + s->len && s->off < off + len)
			return true;
	}
	return false;
}

static void submit(struct env *e, struct slot *s, bool write, uint64_t off, uint64_t len)
{
	struct iovec iov;

	memset(s, 0, sizeof(*s));
	s->e = e;
	s->off = off;
	s->len = len;
	s->write = write;
	s->buf = malloc(len);
	if (write) {
		for (uint64_t i = 0; i < len; i += 8) {
			uint64_t v = rnd(e);

			memcpy(s->buf + i, &v, 8);
		}
		memcpy(e->model + off, s->buf, len);
	}
	iov = (struct iovec){ s->buf, len };
	s->busy = true;
	e->inflight++;
	ck_assert_int_eq(blk_rw(e->ch, write ? BIO_WRITE : BIO_READ, 0, &iov, 1, off, len,
				io_end, s), 0);
}

/* nops random reads and writes, QD in flight, verified. */
static void run_ops(struct env *e, uint64_t nops)
{
	uint64_t submitted = 0;

	while (submitted < nops || e->inflight) {
		for (int i = 0; i < QD && submitted < nops; i++) {
			uint64_t off, len;
			int tries;

			if (e->slots[i].busy)
				continue;
			for (tries = 0; tries < 20; tries++) {
				len = (1 + rnd(e) % (MAXLEN / BS)) * BS;
				off = rnd(e) % ((e->size - len) / BS + 1) * BS;
				if (!overlaps(e, off, len))
					break;
			}
			if (tries == 20)
				break;
			submit(e, &e->slots[i], rnd(e) % 2, off, len);
			submitted++;
		}
		ck_assert_int_ge(ev_run_once(e->loop, 1000), 0);
	}
}

/* Write the whole set once (so that every verified read means something). */
static void fill(struct env *e)
{
	for (uint64_t off = 0; off < e->size;) {
		for (int i = 0; i < QD && off < e->size; i++) {
			if (e->slots[i].busy)
				continue;
			submit(e, &e->slots[i], true, off, MIN(64 * 1024, e->size - off));
			off += MIN(64 * 1024, e->size - off);
		}
		ck_assert_int_ge(ev_run_once(e->loop, 1000), 0);
	}
	while (e->inflight)
		ck_assert_int_ge(ev_run_once(e->loop, 1000), 0);
	ck_assert_uint_eq(e->errors, 0);
}

static void sync_end(struct bio *bio, int status)
{
	*(int *)bio->end_arg = status;
}

static void verify_all(struct env *e)
{
	uint8_t *buf = malloc(64 * 1024);

	for (uint64_t off = 0; off < e->size; off += 64 * 1024) {
		uint64_t len = MIN(64 * 1024, e->size - off);
		struct iovec iov = { buf, len };
		int st = 1;

		ck_assert_int_eq(blk_rw(e->ch, BIO_READ, 0, &iov, 1, off, len, sync_end, &st), 0);
		for (int i = 0; i < 100000 && st == 1; i++)
			ev_run_once(e->loop, 100);
		ck_assert_int_eq(st, 0);
		ck_assert_msg(!memcmp(buf, e->model + off, len), "data differs in %llu+%llu",
			      (unsigned long long)off, (unsigned long long)len);
	}
	free(buf);
}

static struct raid_job_info job(struct env *e)
{
	struct raid_job_info ji;

	ck_assert_int_eq(raid_job_get(e->raid, &ji), 0);
	return ji;
}

/* Verified I/O until no job runs and none is due (bounded: 60 s). */
static void io_until_idle(struct env *e)
{
	uint64_t end = now_ns() + 60ull * 1000 * 1000 * 1000;
	struct raid_job_info ji;

	do {
		run_ops(e, 100);
		ji = job(e);
		ck_assert_msg(now_ns() < end, "the job does not end");
	} while (ji.kind != RAID_JOB_NONE || raid_degraded(e->raid) > 0);
	ck_assert_int_eq(raid_job_wait(e->raid), 0);
}

/* A 4 KiB write at the start of row `row`, verified later (the model). */
static void write_row(struct env *e, uint64_t row)
{
	uint64_t row_bytes = e->size / ROWS;

	submit(e, &e->slots[0], true, row * row_bytes, 4096);
	while (e->inflight)
		ck_assert_int_ge(ev_run_once(e->loop, 1000), 0);
	ck_assert_uint_eq(e->errors, 0);
}

/* Every region clean on disk (the set whole, nothing written since). */
static void bitmap_clean(struct env *e)
{
	uint64_t dirty = 1, total;

	ck_assert_int_eq(raid_bitmap_clear_idle(e->raid, NULL), 0);
	ck_assert_int_eq(raid_bitmap_clear_idle(e->raid, NULL), 0);
	ck_assert_int_eq(raid_bitmap_dirty_regions(e->raid, &dirty, &total), 0);
	ck_assert_uint_eq(dirty, 0);
	ck_assert_uint_eq(total, ROWS / 2);
}

/* Rows 5, 20, 21 and 40 written: regions 2, 10 and 20, six rows. */
static const uint64_t wrows[] = { 5, 20, 21, 40 };
#define WROWS_REBUILT	6

static void write_away(struct env *e)
{
	uint64_t dirty, cleared = 1;

	for (size_t i = 0; i < ARRAY_SIZE(wrows); i++)
		write_row(e, wrows[i]);
	/* degraded: the sweep keeps the bits for the member that left */
	ck_assert_int_eq(raid_bitmap_clear_idle(e->raid, &cleared), 0);
	ck_assert_int_eq(raid_bitmap_clear_idle(e->raid, &cleared), 0);
	ck_assert_uint_eq(cleared, 0);
	ck_assert_int_eq(raid_bitmap_dirty_regions(e->raid, &dirty, NULL), 0);
	ck_assert_uint_eq(dirty, 3);
}

/* The member in slot `slot` holds its data: lose another one, read all. */
static void check_member(struct env *e, uint32_t slot)
{
	uint32_t other = e->n == 2 ? 1 - slot : slot == 0 ? 2 : 0;	/* 10: other pair */

	ck_assert_int_eq(raid_member_state(e->raid, slot), RAID_MEMBER_ACTIVE);
	verify_all(e);
	ck_assert_int_eq(raid_fail(e->raid, other), 0);
	verify_all(e);
	ck_assert_uint_eq(e->errors + e->mismatches, 0);
}

/* ---- pool fail, writes, the same disk back: only those regions ---- */

static void readd_online(enum raid_level l, uint32_t n, uint64_t seed)
{
	struct raid_job_info ji;
	struct env e;

	env_create(&e, l, n, n, MDATA, seed);
	fill(&e);
	bitmap_clean(&e);
	ck_assert_int_eq(raid_fail(e.raid, 1), 0);
	write_away(&e);
	verify_all(&e);
	ck_assert_int_eq(raid_replace(e.raid, 1, e.f[1]), 0);	/* the same disk */
	ji = job(&e);
	ck_assert_int_eq(ji.last_kind, RAID_JOB_REBUILD);
	ck_assert_int_eq(ji.last_rc, 0);
	ck_assert(ji.last_partial);
	ck_assert_uint_eq(ji.last_rows_walked, WROWS_REBUILT);
	ck_assert(raid_member_dev(e.raid, 1) == e.f[1]);
	/* whole again: the sweep clears the bits */
	bitmap_clean(&e);
	check_member(&e, 1);
	env_free(&e);
}

START_TEST(readd_raid1) { readd_online(RAID_LEVEL_1, 2, 100); }
END_TEST
START_TEST(readd_raid10) { readd_online(RAID_LEVEL_10, 4, 101); }
END_TEST
START_TEST(readd_raid5) { readd_online(RAID_LEVEL_5, 4, 102); }
END_TEST
START_TEST(readd_raid6) { readd_online(RAID_LEVEL_6, 5, 103); }
END_TEST

/* ---- assembled without a member, written, stopped, assembled with it:
 * it is stale, comes back as a spare into its own slot, partially ---- */

START_TEST(readd_after_restart)
{
	struct raid_job_info ji;
	struct blkdev *m[NDEV];
	struct env e;

	env_create(&e, RAID_LEVEL_5, 4, 5, MDATA, 110);
	fill(&e);
	bitmap_clean(&e);
	env_detach(&e);
	m[0] = e.f[3];
	m[1] = e.f[0];
	m[2] = e.f[1];
	ck_assert_int_eq(raid_assemble(m, 3, &e.raid), 0);	/* member 2 missing */
	env_attach(&e);
	ck_assert_int_eq(raid_degraded(e.raid), 1);
	write_away(&e);
	env_detach(&e);
	/* a restart while degraded: the bits stay */
	ck_assert_int_eq(raid_assemble(m, 3, &e.raid), 0);
	env_attach(&e);
	ck_assert_int_eq(raid_bitmap_dirty_regions(e.raid, &ji.rows, NULL), 0);
	ck_assert_uint_eq(ji.rows, 3);
	write_row(&e, 100);	/* region 50 */
	env_detach(&e);
	for (uint32_t i = 0; i < 4; i++)
		m[i] = e.f[3 - i];
	ck_assert_int_eq(raid_assemble(m, 4, &e.raid), 0);
	env_attach(&e);
	ck_assert(raid_member_dev(e.raid, 2) == NULL);	/* stale: not trusted as it is */
	verify_all(&e);
	ck_assert_int_eq(raid_spare_add(e.raid, e.f[2]), 0);	/* it takes its own slot */
	ck_assert_int_eq(raid_spare_add(e.raid, e.f[4]), 0);	/* a fresh disk, kept */
	ck_assert_int_eq(raid_job_wait(e.raid), 0);	/* no writes meanwhile: 4 regions */
	ji = job(&e);
	ck_assert_int_eq(ji.last_rc, 0);
	ck_assert(ji.last_partial);
	ck_assert_uint_eq(ji.last_rows_walked, WROWS_REBUILT + 2);
	ck_assert(raid_member_dev(e.raid, 2) == e.f[2]);
	check_member(&e, 2);
	/* the fresh spare took slot 0 when it was failed: all of it */
	io_until_idle(&e);
	ji = job(&e);
	ck_assert(!ji.last_partial);
	ck_assert_uint_eq(ji.last_rows_walked, ROWS);
	ck_assert(raid_member_dev(e.raid, 0) == e.f[4]);
	verify_all(&e);
	env_free(&e);
}
END_TEST

/* ---- not provable: a full rebuild ---- */

START_TEST(readd_not_provable)
{
	struct raid_job_info ji;
	struct env e;

	/* no bitmap */
	env_no_bitmap = true;
	env_create(&e, RAID_LEVEL_1, 2, 2, MDATA, 120);
	env_no_bitmap = false;
	fill(&e);
	ck_assert_int_eq(raid_fail(e.raid, 1), 0);
	write_row(&e, 3);
	ck_assert_int_eq(raid_replace(e.raid, 1, e.f[1]), 0);
	ji = job(&e);
	ck_assert(!ji.last_partial);
	ck_assert_uint_eq(ji.last_rows_walked, ROWS);
	check_member(&e, 1);
	env_free(&e);

	/* a disk that left, came back half rebuilt, and left again */
	env_create(&e, RAID_LEVEL_5, 3, 3, MDATA, 121);
	fill(&e);
	bitmap_clean(&e);
	ck_assert_int_eq(raid_fail(e.raid, 0), 0);
	write_away(&e);
	ck_assert_int_eq(raid_replace(e.raid, 0, e.f[0]), 0);
	ck_assert(job(&e).last_partial);
	ck_assert_int_eq(raid_fail(e.raid, 2), 0);
	write_row(&e, 7);
	ck_assert_int_eq(raid_set_rate(e.raid, 16 * 1024), 0);	/* row 6 due at 3 s */
	ck_assert_int_eq(raid_replace_start(e.raid, 2, e.f[2]), 0);
	ck_assert(job(&e).partial || job(&e).last_partial);
	usleep(100 * 1000);
	ck_assert_int_eq(raid_fail(e.raid, 2), 0);	/* half rebuilt: out again */
	ck_assert_int_eq(raid_job_wait(e.raid), -EIO);
	ck_assert_int_eq(raid_set_rate(e.raid, 0), 0);
	ck_assert_int_eq(raid_replace(e.raid, 2, e.f[2]), 0);
	ji = job(&e);
	ck_assert(!ji.last_partial);
	ck_assert_uint_eq(ji.last_rows_walked, ROWS);
	check_member(&e, 2);
	env_free(&e);
}
END_TEST

/* ---- a partial rebuild stopped by closing the set resumes partially from
 * its cursor; one cut by a crash is not provable any more: all of it ---- */

/* Slot 3 of a RAID 5 left, every region written, back and slowly rebuilt:
 * returns once an eighth of it is done. */
static void partial_under_way(struct env *e, uint64_t seed)
{
	struct raid_job_info ji;
	uint64_t end = now_ns() + 60ull * 1000 * 1000 * 1000;

	env_create(e, RAID_LEVEL_5, 4, 4, MDATA, seed);
	fill(e);
	bitmap_clean(e);
	ck_assert_int_eq(raid_fail(e->raid, 3), 0);
	for (uint64_t row = 0; row < ROWS; row += 2)
		write_row(e, row);		/* every region */
	ck_assert_int_eq(raid_set_rate(e->raid, 64 * 1024), 0);	/* 16 s */
	ck_assert_int_eq(raid_replace_start(e->raid, 3, e->f[3]), 0);
	do {
		usleep(20 * 1000);
		ji = job(e);
		ck_assert(now_ns() < end);
	} while (ji.kind != RAID_JOB_REBUILD || ji.rows_done < ROWS / 8);
	ck_assert(ji.partial);
}

START_TEST(readd_stop_resume)
{
	struct raid_job_info ji;
	struct env e;

	partial_under_way(&e, 130);
	env_detach(&e);		/* a clean stop: the cursor is kept */
	ck_assert_int_eq(raid_assemble(e.f, 4, &e.raid), 0);
	env_attach(&e);
	io_until_idle(&e);	/* with writes above and below the cursor */
	ji = job(&e);
	ck_assert_int_eq(ji.last_rc, 0);
	ck_assert(ji.last_partial);
	ck_assert_uint_ge(ji.started_row, ROWS / 8);
	ck_assert_uint_lt(ji.started_row, ROWS);
	ck_assert_uint_eq(ji.last_rows_walked, ROWS - ji.started_row);
	check_member(&e, 3);
	env_free(&e);
}
END_TEST

START_TEST(readd_crash)
{
	struct fault_cut_policy keep = { .mode = FAULT_CUT_KEEP_ALL };
	struct raid_job_info ji;
	struct env e;

	partial_under_way(&e, 131);
	run_ops(&e, 50);
	/* the power goes on every member at once */
	for (uint32_t i = 0; i < 4; i++)
		ck_assert_int_eq(fault_power_cut(e.f[i], &keep), 0);
	env_detach(&e);
	for (uint32_t i = 0; i < 4; i++)
		ck_assert_int_eq(fault_power_restore(e.f[i]), 0);
	ck_assert_int_eq(raid_assemble(e.f, 4, &e.raid), 0);
	env_attach(&e);
	io_until_idle(&e);
	ji = job(&e);
	ck_assert_int_eq(ji.last_rc, 0);
	ck_assert(!ji.last_partial);		/* not provable after a crash: all of it */
	ck_assert_uint_eq(ji.started_row, 0);
	ck_assert_uint_eq(ji.last_rows_walked, ROWS);
	check_member(&e, 3);
	env_free(&e);
}
END_TEST

/* ---- a scrub stopped by closing the set resumes; a cancelled one does not ---- */

START_TEST(scrub_resume)
{
	struct raid_job_info ji;
	uint64_t end;
	struct env e;

	env_create(&e, RAID_LEVEL_6, 5, 5, MDATA, 140);
	fill(&e);
	ck_assert_int_eq(raid_set_rate(e.raid, 128 * 1024), 0);
	ck_assert_int_eq(raid_scrub_start(e.raid, true), 0);
	end = now_ns() + 30ull * 1000 * 1000 * 1000;
	do {
		run_ops(&e, 20);
		ji = job(&e);
		ck_assert(now_ns() < end);
	} while (ji.kind != RAID_JOB_SCRUB || ji.rows_done < ROWS / 4);
	env_detach(&e);
	ck_assert_int_eq(raid_assemble(e.f, 5, &e.raid), 0);	/* no rate limit now */
	env_attach(&e);
	io_until_idle(&e);
	ji = job(&e);
	ck_assert_int_eq(ji.last_kind, RAID_JOB_SCRUB);
	ck_assert(ji.last_repair);
	ck_assert_uint_ge(ji.started_row, ROWS / 4);	/* resumed from its cursor */
	ck_assert_uint_lt(ji.started_row, ROWS);
	ck_assert_int_eq(ji.last_rc, 0);
	ck_assert_uint_eq(ji.last_mismatches, 0);
	ck_assert_uint_eq(ji.last_rows_walked, ROWS - ji.started_row);
	/* done: not again at the next assembly */
	env_detach(&e);
	ck_assert_int_eq(raid_assemble(e.f, 5, &e.raid), 0);
	env_attach(&e);
	ck_assert_int_eq(raid_job_wait(e.raid), 0);
	ck_assert_int_eq(job(&e).last_kind, RAID_JOB_NONE);
	/* cancelled: forgotten */
	ck_assert_int_eq(raid_set_rate(e.raid, 128 * 1024), 0);
	ck_assert_int_eq(raid_scrub_start(e.raid, false), 0);
	do {
		ji = job(&e);
		ck_assert(now_ns() < end);
		usleep(10 * 1000);
	} while (ji.kind != RAID_JOB_SCRUB || ji.rows_done < 2);
	ck_assert_int_eq(raid_scrub_cancel(e.raid), 0);
	ck_assert_int_eq(raid_job_wait(e.raid), -ECANCELED);
	env_detach(&e);
	ck_assert_int_eq(raid_assemble(e.f, 5, &e.raid), 0);
	env_attach(&e);
	ck_assert_int_eq(raid_job_wait(e.raid), 0);
	ck_assert_int_eq(job(&e).last_kind, RAID_JOB_NONE);
	verify_all(&e);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	env_free(&e);
}
END_TEST

/* ---- a scrub meets a read error: repaired from redundancy; mismatches
 * reported, and rewritten with repair ---- */

static void scrub_errors(enum raid_level l, uint32_t n, uint64_t seed)
{
	struct raid_geom g = { .level = l, .nmembers = n, .strip = STRIP, .member_size = MDATA };
	struct fault_rule rule = { .len = 4096, .op_mask = FAULT_OP(BIO_READ), .one_shot = true };
	uint32_t cols[RAID_MAX_MEMBERS], k = raid_data_cols(&g), m, victim;
	uint64_t bad = 0, row = 9, fixed;
	struct fault_stats st;
	uint8_t junk[4096];
	struct env e;

	env_create(&e, l, n, n, MDATA, seed);
	fill(&e);
	raid_stripe_cols(&g, row, cols);
	m = cols[0];		/* data column 0 of row 9 (its first mirror) */
	memset(junk, 0xee, sizeof(junk));
	ck_assert_int_eq(blk_sync_io(e.mem[m], BIO_WRITE, 0, RAID_DATA_OFFSET + row * STRIP,
				     junk, sizeof(junk)), 0);
	rule.offset = RAID_DATA_OFFSET + row * STRIP;
	ck_assert_int_ge(fault_add_rule(e.f[m], &rule), 0);
	ck_assert_int_eq(fault_reset_stats(e.f[m]), 0);
	fixed = job(&e).read_errors_fixed;
	ck_assert_int_eq(raid_scrub(e.raid, false, &bad), 0);
	ck_assert_uint_eq(bad, 0);
	ck_assert_int_eq(fault_get_stats(e.f[m], &st), 0);
	ck_assert_uint_eq(st.injected, 1);
	ck_assert_uint_ge(st.ios[BIO_WRITE], 1);	/* rewritten */
	ck_assert_uint_eq(job(&e).read_errors_fixed, fixed + 1);
	ck_assert_int_eq(raid_member_state(e.raid, m), RAID_MEMBER_ACTIVE);
	ck_assert_int_eq(raid_degraded(e.raid), 0);
	check_member(&e, m);	/* the junk is gone: m serves its blocks */
	env_free(&e);

	/* a copy (RAID 1, 10) or the parity (5, 6) changed behind the set's back */
	env_create(&e, l, n, n, MDATA, seed + 1);
	fill(&e);
	raid_stripe_cols(&g, row, cols);
	victim = l == RAID_LEVEL_1 || l == RAID_LEVEL_10 ? cols[1] : cols[k];
	ck_assert_int_eq(blk_sync_io(e.mem[victim], BIO_WRITE, 0,
				     RAID_DATA_OFFSET + row * STRIP + 512, junk, 512), 0);
	ck_assert_int_eq(raid_scrub(e.raid, false, &bad), 0);
	ck_assert_uint_eq(bad, 1);			/* reported */
	ck_assert_int_eq(raid_scrub(e.raid, false, &bad), 0);
	ck_assert_uint_eq(bad, 1);			/* not touched */
	ck_assert_int_eq(raid_scrub(e.raid, true, &bad), 0);
	ck_assert_uint_eq(bad, 1);
	ck_assert(job(&e).last_repair);
	ck_assert_int_eq(raid_scrub(e.raid, false, &bad), 0);
	ck_assert_uint_eq(bad, 0);			/* rewritten */
	check_member(&e, victim);
	env_free(&e);
}

START_TEST(scrub_errors_all_levels)
{
	scrub_errors(RAID_LEVEL_1, 2, 150);
	scrub_errors(RAID_LEVEL_10, 4, 152);
	scrub_errors(RAID_LEVEL_5, 4, 154);
	scrub_errors(RAID_LEVEL_6, 5, 156);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("raid_resync");
	TCase *tc = tcase_create("resync");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, readd_raid1);
	tcase_add_test(tc, readd_raid10);
	tcase_add_test(tc, readd_raid5);
	tcase_add_test(tc, readd_raid6);
	tcase_add_test(tc, readd_after_restart);
	tcase_add_test(tc, readd_not_provable);
	tcase_add_test(tc, readd_stop_resume);
	tcase_add_test(tc, readd_crash);
	tcase_add_test(tc, scrub_resume);
	tcase_add_test(tc, scrub_errors_all_levels);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int nf;

	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? 1 : 0;
}
