/* SPDX-License-Identifier: MIT */
/*
 * RAID: a member that comes back after it left (raid_fail, or a set
 * assembled without it) is rebuilt only where the set was written since
 * (the write-intent bitmap), and fully when that is not provable; a crash
 * during that partial rebuild; a scrub stopped by closing the set resumes
 * from its cursor, a cancelled one is forgotten; read errors met by a scrub
 * are repaired from redundancy, mismatches reported and with --repair
 * rewritten. Memory members under fault devices; the helpers are in
 * raid_env.h.
 */
#define REGION		(2 * 8192u)	/* two rows per bitmap region */
#define ENV_BITMAP_REGION	REGION
#include "raid_env.h"

#define MDATA		(1024u * 1024)	/* 128 rows */
#define ROWS		(MDATA / STRIP)

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

/* ---- RAID 6, two members away: each rebuilds only what it missed ---- */

/* Slot 1 out, row 5 written (region 2), idle; slot 3 out, rows 20, 21 and
 * 40 (regions 10 and 20). */
static void two_away(struct env *e, uint64_t seed)
{
	env_create(e, RAID_LEVEL_6, 5, 5, MDATA, seed);
	fill(e);
	bitmap_clean(e);
	ck_assert_int_eq(raid_fail(e->raid, 1), 0);
	write_row(e, wrows[0]);
	/* idle: its hot bit swept (the first image keeps it) */
	ck_assert_int_eq(raid_bitmap_clear_idle(e->raid, NULL), 0);
	ck_assert_int_eq(raid_bitmap_clear_idle(e->raid, NULL), 0);
	ck_assert_int_eq(raid_fail(e->raid, 3), 0);
	for (size_t i = 1; i < ARRAY_SIZE(wrows); i++)
		write_row(e, wrows[i]);
	verify_all(e);
}

/* Both back, in this order: their own regions each; then the two others
 * out, and every block read with the two that came back. */
static void two_back(struct env *e, uint32_t first, uint64_t rows_first, uint32_t second,
		     uint64_t rows_second, bool spare)
{
	struct raid_job_info ji;

	if (spare) {
		ck_assert_int_eq(raid_spare_add(e->raid, e->f[first]), 0);
		ck_assert_int_eq(raid_job_wait(e->raid), 0);
	} else {
		ck_assert_int_eq(raid_replace(e->raid, first, e->f[first]), 0);
	}
	ji = job(e);
	ck_assert_int_eq(ji.last_slot, (int)first);
	ck_assert(ji.last_partial);
	ck_assert_uint_eq(ji.last_rows_walked, rows_first);
	if (spare) {
		ck_assert_int_eq(raid_spare_add(e->raid, e->f[second]), 0);
		ck_assert_int_eq(raid_job_wait(e->raid), 0);
	} else {
		ck_assert_int_eq(raid_replace(e->raid, second, e->f[second]), 0);
	}
	ji = job(e);
	ck_assert_int_eq(ji.last_slot, (int)second);
	ck_assert(ji.last_partial);
	ck_assert_uint_eq(ji.last_rows_walked, rows_second);
	bitmap_clean(e);	/* whole again: swept */
	verify_all(e);
	for (uint32_t i = 0; i < 5; i++)
		if (i != first && i != second)
			ck_assert_int_eq(raid_fail(e->raid, i) == 0, i == 0 || i == 2);
	verify_all(e);
	ck_assert_uint_eq(e->errors + e->mismatches, 0);
}

START_TEST(two_away_raid6)
{
	struct env e;

	/* the later one back first: regions 10 and 20 only (4 rows), then
	 * the other: 2, 10, 20 */
	two_away(&e, 150);
	two_back(&e, 3, 4, 1, WROWS_REBUILT, false);
	env_free(&e);
	/* the other order */
	two_away(&e, 151);
	two_back(&e, 1, WROWS_REBUILT, 3, 4, false);
	env_free(&e);
}
END_TEST

START_TEST(two_away_restart)
{
	struct env e;

	/* stopped and assembled again: each slot's image read back; the two
	 * disks, stale, come back as spares into their own slots */
	two_away(&e, 152);
	env_detach(&e);
	ck_assert_int_eq(raid_assemble(e.f, 5, &e.raid), 0);
	env_attach(&e);
	ck_assert_int_eq(raid_degraded(e.raid), 2);
	verify_all(&e);
	two_back(&e, 3, 4, 1, WROWS_REBUILT, true);
	env_free(&e);
}
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
	/* the job thread may be slow to take it up (a loaded machine): failing
	 * the slot before it has would leave no rebuild to cut */
	for (int i = 0; i < 3000 && !(job(&e).kind == RAID_JOB_REBUILD && job(&e).slot == 2); i++)
		usleep(10 * 1000);
	ji = job(&e);
	ck_assert_int_eq(ji.kind, RAID_JOB_REBUILD);
	ck_assert(ji.partial);
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

/* ---- a partial rebuild stopped by closing the set, or cut by a crash,
 * resumes partially from its cursor (test_raid_readd_cut.c: power cuts at
 * many points) ---- */

/* The rebuild cursor of slot `slot` in the superblocks on disk. */
static uint64_t disk_cursor(struct env *e, uint32_t slot)
{
	struct raid_sb sb;

	ck_assert_int_eq(raid_sb_read(e->f[0], &sb), 0);
	return sb.members[slot].rebuilt;
}

/* Slot 3 of a RAID 5 left, every region written, back and slowly rebuilt:
 * returns once an eighth of it is done and a cursor is on disk. */
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
	} while (ji.kind != RAID_JOB_REBUILD || ji.rows_done < ROWS / 8 || !disk_cursor(e, 3));
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
	ck_assert(ji.last_partial);		/* still provable after a crash */
	ck_assert_uint_gt(ji.started_row, 0);	/* from the cursor */
	ck_assert_uint_eq(ji.last_rows_walked, ROWS - ji.started_row);
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
	tcase_add_test(tc, two_away_raid6);
	tcase_add_test(tc, two_away_restart);
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
