/* SPDX-License-Identifier: MIT */
/*
 * RAID walks in batches (raid_rebuild.c, raid_mirror.c, raid_parity_rows.c):
 * with no foreground I/O a rebuild, resync or scrub bio stands for up to
 * 512 KiB of rows per member (64 rows of 8 KiB here, 512 rows per member),
 * for RAID 1, 10, 5 and 6:
 *  - a scrub of an idle set reads each member in a few large bios, finds
 *    exactly the rows made inconsistent behind the set's back (at batch
 *    edges, two columns of one row counted once), repairs them, and the
 *    data reads back;
 *  - a rebuild writes the new member in a few large bios; a read error in
 *    the middle of a batch (on the mirror read from, on a RAID 6 column)
 *    makes the batch read again without it; the new member failing in the
 *    middle of a batch fails the rebuild, and another disk is rebuilt; the
 *    new member holds its data;
 *  - a scrub that meets a member failing in the middle of a batch stops
 *    comparing, and loses nothing;
 *  - the power goes while a resync (set assembled dirty) is writing its
 *    batches: the next assembly resyncs again, every row is consistent and
 *    the data is intact.
 * Memory members under fault devices; the helpers are in raid_env.h.
 */
#include <pthread.h>
#include "raid_env.h"

#define MDATA		(4u * 1024 * 1024)
#define ROWS		(MDATA / STRIP)		/* 512 */
#define BATCH_ROWS	(512u * 1024 / STRIP)	/* 64: the walker's batch */
#define BATCHES		(ROWS / BATCH_ROWS)	/* 8 */

static bool parity(enum raid_level l)
{
	return l == RAID_LEVEL_5 || l == RAID_LEVEL_6;
}

static uint64_t ios(struct blkdev *f, enum bio_op op)
{
	struct fault_stats st;

	ck_assert_int_eq(fault_get_stats(f, &st), 0);
	return st.ios[op];
}

static void corrupt(struct env *e, uint32_t m, uint64_t row, uint32_t at)
{
	uint8_t junk[512];

	memset(junk, 0xd3, sizeof(junk));
	ck_assert_int_eq(blk_sync_io(e->mem[m], BIO_WRITE, 0,
				     RAID_DATA_OFFSET + row * STRIP + at, junk, sizeof(junk)), 0);
}

/* A column of row `row` that holds redundancy: a second mirror, P or Q. */
static uint32_t redundant_col(enum raid_level l, uint32_t n, uint64_t row, uint32_t which)
{
	struct raid_geom g = { .level = l, .nmembers = n, .strip = STRIP, .member_size = MDATA };
	uint32_t cols[RAID_MAX_MEMBERS], k = raid_data_cols(&g);

	raid_stripe_cols(&g, row, cols);
	if (parity(l))
		return cols[k + which % (n - k)];
	return l == RAID_LEVEL_10 ? 1 + 2 * (which % (n / 2)) : 1 + which % (n - 1);
}

/* Every byte of the data areas of devices a and b is the same. */
static void same_data(struct env *e, uint32_t a, uint32_t b)
{
	uint8_t *x = malloc(MDATA), *y = malloc(MDATA);

	ck_assert_int_eq(blk_sync_io(e->mem[a], BIO_READ, 0, RAID_DATA_OFFSET, x, MDATA), 0);
	ck_assert_int_eq(blk_sync_io(e->mem[b], BIO_READ, 0, RAID_DATA_OFFSET, y, MDATA), 0);
	ck_assert_msg(!memcmp(x, y, MDATA), "devices %u and %u differ", a, b);
	free(x);
	free(y);
}

/* ---- a scrub in batches: reads few, counts rows, repairs ---- */

static void scrub_batches(enum raid_level l, uint32_t n, uint64_t seed)
{
	static const uint64_t rows[] = { 0, BATCH_ROWS - 1, BATCH_ROWS, 300, ROWS - 1 };
	uint64_t bad = 99;
	struct env e;

	env_create(&e, l, n, n, MDATA, seed);
	fill(&e);
	for (uint32_t i = 0; i < n; i++)
		ck_assert_int_eq(fault_reset_stats(e.f[i]), 0);
	ck_assert_int_eq(raid_scrub(e.raid, false, &bad), 0);
	ck_assert_uint_eq(bad, 0);
	for (uint32_t i = 0; i < n; i++) {
		/* 8 batches (a row per bio would be 512 reads) */
		ck_assert_uint_ge(ios(e.f[i], BIO_READ), BATCHES);
		ck_assert_uint_le(ios(e.f[i], BIO_READ), 2 * BATCHES);
	}

	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		corrupt(&e, redundant_col(l, n, rows[i], 0), rows[i], 512 * (uint32_t)i);
	/* row 300 again, on its other redundant column (RAID 6: Q; mirrors:
	 * the same or another copy): still one row */
	corrupt(&e, redundant_col(l, n, 300, 1), 300, 4096);
	ck_assert_int_eq(raid_scrub(e.raid, false, &bad), 0);
	ck_assert_uint_eq(bad, ARRAY_SIZE(rows));
	ck_assert_int_eq(raid_scrub(e.raid, false, &bad), 0);
	ck_assert_uint_eq(bad, ARRAY_SIZE(rows));		/* reported, not touched */
	ck_assert_int_eq(raid_scrub(e.raid, true, &bad), 0);
	ck_assert_uint_eq(bad, ARRAY_SIZE(rows));
	ck_assert_int_eq(raid_scrub(e.raid, false, &bad), 0);
	ck_assert_uint_eq(bad, 0);				/* repaired */
	verify_all(&e);
	/* the repaired copies serve reads: lose the first data column */
	ck_assert_int_eq(raid_fail(e.raid, 0), 0);
	verify_all(&e);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	env_free(&e);
}

START_TEST(scrub_raid1) { scrub_batches(RAID_LEVEL_1, 2, 200); scrub_batches(RAID_LEVEL_1, 3, 201); }
END_TEST
START_TEST(scrub_raid10) { scrub_batches(RAID_LEVEL_10, 4, 202); }
END_TEST
START_TEST(scrub_raid5) { scrub_batches(RAID_LEVEL_5, 4, 203); }
END_TEST
START_TEST(scrub_raid6) { scrub_batches(RAID_LEVEL_6, 5, 204); }
END_TEST

/* ---- a rebuild in batches; a read error, or the new member failing, in
 * the middle of one ---- */

enum mishap { NONE, READ_ERROR, NEW_FAILS };

/* A fault on device d over row 200 (in the second batch), for ops. */
static void fault_at_row(struct env *e, uint32_t d, uint32_t ops)
{
	struct fault_rule rule = { .offset = RAID_DATA_OFFSET + 200ull * STRIP, .len = STRIP,
				   .op_mask = ops, .one_shot = true };

	ck_assert_int_ge(fault_add_rule(e->f[d], &rule), 0);
}

/*
 * Slot 0 taken out, written degraded, and rebuilt on a fresh disk (device
 * n) with no foreground I/O. READ_ERROR: a read of member `victim` fails in
 * the second batch; NEW_FAILS: a write of the new disk does (the rebuild
 * fails; device n + 1 takes the slot then).
 */
static void rebuild_batches(enum raid_level l, uint32_t n, enum mishap what, uint32_t victim,
			    uint64_t seed)
{
	struct raid_job_info ji;
	struct fault_stats st;
	uint32_t nd = n;
	struct env e;

	env_create(&e, l, n, n + 2, MDATA, seed);
	fill(&e);
	ck_assert_int_eq(raid_fail(e.raid, 0), 0);
	run_ops(&e, 200);		/* degraded writes */
	if (what == READ_ERROR)
		fault_at_row(&e, victim, FAULT_OP(BIO_READ));
	if (what == NEW_FAILS) {
		fault_at_row(&e, n, FAULT_OP(BIO_WRITE));
		ck_assert_int_ne(raid_replace(e.raid, 0, e.f[n]), 0);
		ck_assert_int_eq(raid_member_state(e.raid, 0), RAID_MEMBER_FAILED);
		ck_assert_int_eq(job(&e).last_kind, RAID_JOB_REBUILD);
		ck_assert_int_ne(job(&e).last_rc, 0);
		ck_assert_int_eq(fault_get_stats(e.f[n], &st), 0);
		ck_assert_uint_eq(st.injected, 1);
		verify_all(&e);		/* still served, degraded */
		nd = n + 1;
	}
	ck_assert_int_eq(fault_reset_stats(e.f[nd]), 0);
	ck_assert_int_eq(raid_replace(e.raid, 0, e.f[nd]), 0);
	ji = job(&e);
	ck_assert_int_eq(ji.last_kind, RAID_JOB_REBUILD);
	ck_assert_int_eq(ji.last_rc, 0);
	ck_assert_int_eq(raid_member_state(e.raid, 0), RAID_MEMBER_ACTIVE);
	/* 8 batches of 512 KiB, a few superblock writes (a row per bio: 512) */
	ck_assert_uint_ge(ios(e.f[nd], BIO_WRITE), BATCHES);
	ck_assert_uint_le(ios(e.f[nd], BIO_WRITE), BATCHES + 16);
	if (what == READ_ERROR) {
		ck_assert_int_eq(fault_get_stats(e.f[victim], &st), 0);
		ck_assert_uint_eq(st.injected, 1);
	}
	verify_all(&e);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	if (!parity(l))
		same_data(&e, nd, 1);	/* the new disk is a copy of its mirror */
	/* it carries its share: lose another member, read everything */
	ck_assert_int_eq(raid_fail(e.raid, 1), 0);
	verify_all(&e);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	env_free(&e);
}

START_TEST(rebuild_raid1)
{
	rebuild_batches(RAID_LEVEL_1, 2, NONE, 0, 210);
	rebuild_batches(RAID_LEVEL_1, 3, READ_ERROR, 1, 211);	/* the mirror read from */
	rebuild_batches(RAID_LEVEL_1, 2, NEW_FAILS, 0, 212);
}
END_TEST
START_TEST(rebuild_raid10)
{
	rebuild_batches(RAID_LEVEL_10, 4, NONE, 0, 213);
	rebuild_batches(RAID_LEVEL_10, 6, NEW_FAILS, 0, 214);
}
END_TEST
START_TEST(rebuild_raid5)
{
	rebuild_batches(RAID_LEVEL_5, 4, NONE, 0, 215);
	rebuild_batches(RAID_LEVEL_5, 4, NEW_FAILS, 0, 216);
}
END_TEST
START_TEST(rebuild_raid6)
{
	rebuild_batches(RAID_LEVEL_6, 5, READ_ERROR, 2, 217);	/* two columns lost then */
	rebuild_batches(RAID_LEVEL_6, 5, NEW_FAILS, 0, 218);
}
END_TEST

/* ---- a scrub meets a member failing in the middle of a batch ---- */

static void scrub_member_fails(enum raid_level l, uint32_t n, uint64_t seed)
{
	uint64_t bad = 99;
	struct env e;

	env_create(&e, l, n, n, MDATA, seed);
	fill(&e);
	ck_assert_int_eq(fault_fail_after(e.f[1], 1, FAULT_OPS_ALL, -EIO), 0);
	ck_assert_int_eq(raid_scrub(e.raid, true, &bad), 0);
	ck_assert_uint_eq(bad, 0);
	ck_assert_int_eq(raid_member_state(e.raid, 1), RAID_MEMBER_FAILED);
	verify_all(&e);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	env_free(&e);
}

START_TEST(scrub_fails)
{
	scrub_member_fails(RAID_LEVEL_1, 3, 220);
	scrub_member_fails(RAID_LEVEL_10, 4, 221);
	scrub_member_fails(RAID_LEVEL_5, 4, 222);
	scrub_member_fails(RAID_LEVEL_6, 5, 223);
}
END_TEST

/* ---- the power goes while a resync writes its batches ---- */

struct cutter {
	struct env	*e;
	uint64_t	seed;
	bool		stop, cut;
};

/* A write of the data area landed and is not flushed yet (a resync's). */
static bool resync_write_at_risk(struct env *e)
{
	struct fault_write w[64];

	for (uint32_t i = 0; i < e->n; i++) {
		long nw = fault_unflushed_list(e->f[i], w, ARRAY_SIZE(w));

		for (long j = 0; j < MIN(nw, (long)ARRAY_SIZE(w)); j++)
			if (w[j].offset >= RAID_DATA_OFFSET &&
			    w[j].offset < RAID_DATA_OFFSET + MDATA)
				return true;
	}
	return false;
}

static void *cutter_main(void *arg)
{
	struct cutter *c = arg;
	uint64_t end = now_ns() + 30ull * 1000 * 1000 * 1000;

	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE) && now_ns() < end) {
		if (resync_write_at_risk(c->e)) {
			/* every member refuses I/O first (errors show only after the
			 * latency), so the set records nothing while the power goes
			 * member by member */
			for (uint32_t i = 0; i < c->e->n; i++)
				ck_assert_int_eq(fault_fail_after(c->e->f[i], 0, FAULT_OPS_ALL,
								  -EIO), 0);
			for (uint32_t i = 0; i < c->e->n; i++) {
				struct fault_cut_policy pol = { .mode = FAULT_CUT_RANDOM,
								.seed = c->seed + i };

				ck_assert_int_eq(fault_power_cut(c->e->f[i], &pol), 0);
			}
			__atomic_store_n(&c->cut, true, __ATOMIC_RELEASE);
			break;
		}
		usleep(200);
	}
	return NULL;
}

static void power_off_all(struct env *e, enum fault_cut_mode mode)
{
	for (uint32_t i = 0; i < e->n; i++) {
		struct fault_cut_policy pol = { .mode = mode };

		ck_assert_int_eq(fault_power_cut(e->f[i], &pol), 0);
	}
}

static void power_on_all(struct env *e)
{
	for (uint32_t i = 0; i < e->n; i++)
		ck_assert_int_eq(fault_power_restore(e->f[i]), 0);
}

static void resync_cut(enum raid_level l, uint32_t n, uint64_t seed)
{
	struct cutter c = { 0 };
	struct blkdev *set = NULL;
	pthread_t th;
	uint64_t bad = 99;
	struct env e;
	bool closed = false;

	env_no_bitmap = true;		/* a dirty set resyncs every row */
	env_create(&e, l, n, n, MDATA, seed);
	env_no_bitmap = false;
	fill(&e);
	/* what is on the members now is durable; one more write makes the set
	 * dirty, and the power goes with everything kept */
	for (uint32_t i = 0; i < n; i++)
		ck_assert_int_eq(fault_record(e.f[i], true), 0);
	run_ops(&e, 20);
	blk_chan_close(e.ch, closed_cb, &closed);
	for (int i = 0; i < 1000 && !closed; i++)
		ev_run_once(e.loop, 10);
	ck_assert(closed);
	power_off_all(&e, FAULT_CUT_KEEP_ALL);
	ck_assert_int_eq(blkdev_close(e.raid), 0);
	e.raid = NULL;
	power_on_all(&e);
	/* rows the resync has to rewrite: redundancy changed behind the set's back */
	for (uint64_t row = 3; row < ROWS; row += 37)
		corrupt(&e, redundant_col(l, n, row, 0), row, 0);

	/* assembled dirty: every I/O ends slowly; the power goes as soon as
	 * one of the resync's writes is on a disk */
	for (uint32_t i = 0; i < n; i++) {
		ck_assert_int_eq(fault_record(e.f[i], true), 0);
		ck_assert_int_eq(fault_set_latency(e.f[i], 50ull * 1000 * 1000, FAULT_OPS_ALL),
				 0);
	}
	c.e = &e;
	c.seed = seed * 7;
	ck_assert_int_eq(pthread_create(&th, NULL, cutter_main, &c), 0);
	if (raid_assemble(e.f, n, &set) == 0)
		ck_assert_int_eq(blkdev_close(set), 0);	/* every member off: stays dirty */
	__atomic_store_n(&c.stop, true, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	ck_assert_msg(c.cut, "the power did not go during the resync");
	for (uint32_t i = 0; i < n; i++) {
		struct fault_stats st;

		ck_assert_int_eq(fault_get_stats(e.f[i], &st), 0);
		ck_assert_uint_eq(st.cuts, 2);
		ck_assert_int_eq(fault_set_latency(e.f[i], 0, FAULT_OPS_ALL), 0);
		ck_assert_int_eq(fault_clear(e.f[i]), 0);
	}
	power_on_all(&e);

	/* again: resynchronized whole; every row consistent, the data intact */
	ck_assert_int_eq(raid_assemble(e.f, n, &e.raid), 0);
	ck_assert_int_eq(raid_degraded(e.raid), 0);
	env_attach(&e);
	ck_assert_int_eq(raid_scrub(e.raid, false, &bad), 0);
	ck_assert_uint_eq(bad, 0);
	verify_all(&e);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	env_free(&e);
}

START_TEST(resync_power_cut)
{
	resync_cut(RAID_LEVEL_1, 2, 230);
	resync_cut(RAID_LEVEL_10, 4, 231);
	resync_cut(RAID_LEVEL_5, 4, 232);
	resync_cut(RAID_LEVEL_6, 5, 233);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("raid_batch");
	TCase *tc = tcase_create("batch");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, scrub_raid1);
	tcase_add_test(tc, scrub_raid10);
	tcase_add_test(tc, scrub_raid5);
	tcase_add_test(tc, scrub_raid6);
	tcase_add_test(tc, rebuild_raid1);
	tcase_add_test(tc, rebuild_raid10);
	tcase_add_test(tc, rebuild_raid5);
	tcase_add_test(tc, rebuild_raid6);
	tcase_add_test(tc, scrub_fails);
	tcase_add_test(tc, resync_power_cut);
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
