/* SPDX-License-Identifier: MIT */
/*
 * RAID background jobs (raid/raid_rebuild.c) on memory members, each under
 * a fault device: hot spares taken when members fail under verified I/O,
 * for every redundant level; a rebuild stopped by closing the set and
 * resumed at assembly from its cursor; the rate limit and progress; scrub
 * in the background, cancelled; a stale member rebuilt, not trusted; read
 * errors repaired from redundancy, and a member failed after too many.
 *
 * Verified I/O: random reads and writes (never overlapping each other)
 * against a model of the whole set, many in flight on one loop.
 */
#include "raid_env.h"

/* ---- hot spares: members fail under verified I/O; spares take over ---- */

static void spares(enum raid_level l, uint32_t n, uint32_t nfail, uint64_t seed)
{
	struct env e;
	struct blkdev *sp[2];
	uint32_t other;

	env_create(&e, l, n, n + nfail, 256 * 1024, seed);
	fill(&e);
	for (uint32_t i = 0; i < nfail; i++)
		ck_assert_int_eq(raid_spare_add(e.raid, e.f[n + i]), 0);
	ck_assert_uint_eq(raid_spares(e.raid, sp, 2), nfail);
	ck_assert_int_eq(raid_spare_add(e.raid, e.f[n]), -EBUSY);	/* claimed already */
	run_ops(&e, 300);
	/* members fail under I/O (slot 1, and for RAID 6 the last one too) */
	ck_assert_int_eq(fault_fail_after(e.f[1], 0, FAULT_OPS_ALL, -EIO), 0);
	if (nfail > 1)
		ck_assert_int_eq(fault_fail_after(e.f[n - 1], 0, FAULT_OPS_ALL, -EIO), 0);
	io_until_idle(&e);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	ck_assert_int_eq(raid_degraded(e.raid), 0);
	ck_assert_uint_eq(raid_spares(e.raid, sp, 2), 0);
	ck_assert(raid_member_dev(e.raid, 1) == e.f[n] || raid_member_dev(e.raid, 1) == e.f[n + 1]);
	ck_assert_int_eq(job(&e).last_kind, RAID_JOB_REBUILD);
	verify_all(&e);

	/* the rebuilt members carry their share: lose another one */
	other = l == RAID_LEVEL_10 ? 0 : l == RAID_LEVEL_1 ? 1 : 2;
	if (l == RAID_LEVEL_1)		/* the mirror left is the spare */
		other = slot_of(&e, e.f[0]);
	ck_assert_int_eq(fault_fail_after(raid_member_dev(e.raid, other), 0, FAULT_OPS_ALL,
					  -EIO), 0);
	run_ops(&e, 300);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	ck_assert_int_eq(raid_degraded(e.raid), 1);
	verify_all(&e);
	env_free(&e);
}

START_TEST(spare_raid1) { spares(RAID_LEVEL_1, 2, 1, 1); }
END_TEST
START_TEST(spare_raid10) { spares(RAID_LEVEL_10, 4, 1, 2); }
END_TEST
START_TEST(spare_raid5) { spares(RAID_LEVEL_5, 4, 1, 3); }
END_TEST
START_TEST(spare_raid6) { spares(RAID_LEVEL_6, 5, 2, 4); }
END_TEST

/* ---- a rebuild stopped by closing the set resumes at assembly ---- */

static void resume(enum raid_level l, uint32_t n, uint64_t seed)
{
	struct env e;
	struct raid_job_info ji;
	struct blkdev *m[NDEV];
	uint64_t stopped, end;

	env_create(&e, l, n, n + 1, 1024 * 1024, seed);
	fill(&e);
	ck_assert_int_eq(fault_fail_after(e.f[1], 0, FAULT_OPS_ALL, -EIO), 0);
	run_ops(&e, 200);
	ck_assert_int_eq(raid_member_state(e.raid, 1), RAID_MEMBER_FAILED);
	/* slowly: 256 KiB/s per member, 4 s for the whole member */
	ck_assert_int_eq(raid_set_rate(e.raid, 256 * 1024), 0);
	ck_assert_int_eq(raid_replace_start(e.raid, 1, e.f[n]), 0);
	ck_assert_int_eq(raid_member_state(e.raid, 1), RAID_MEMBER_REBUILDING);
	ck_assert_int_eq(raid_scrub_start(e.raid, false), -EBUSY);
	end = now_ns() + 30ull * 1000 * 1000 * 1000;
	do {
		run_ops(&e, 50);	/* writes land below and above the cursor */
		ji = job(&e);
		ck_assert(now_ns() < end);
	} while (ji.kind != RAID_JOB_REBUILD || ji.rows_done < ji.rows / 4);
	ck_assert_int_eq(ji.slot, 1);
	ck_assert_uint_eq(ji.rows, 1024 * 1024 / STRIP);
	ck_assert_uint_eq(ji.bytes, 1024 * 1024);
	ck_assert_uint_gt(ji.rate, 0);
	ck_assert_uint_le(ji.rate, 2 * 256 * 1024);
	ck_assert_uint_gt(ji.eta, 0);
	ck_assert_uint_eq(ji.rate_limit, 256 * 1024);
	env_detach(&e);		/* stops the rebuild: the cursor is saved */

	/* assemble again, members in another order, the old disk left out */
	for (uint32_t i = 0; i < n; i++)
		m[i] = e.f[(i == 1 ? n : i)];
	for (uint32_t i = 0; i < n; i++) {
		struct blkdev *t = m[i];
		uint32_t j = (uint32_t)(rnd(&e) % n);

		m[i] = m[j];
		m[j] = t;
	}
	ck_assert_int_eq(raid_assemble(m, n, &e.raid), 0);
	env_attach(&e);
	io_until_idle(&e);
	ji = job(&e);
	ck_assert_int_eq(ji.last_kind, RAID_JOB_REBUILD);
	ck_assert_int_eq(ji.last_rc, 0);
	stopped = ji.started_row;
	ck_assert_uint_ge(stopped, ji.rows / 4);	/* resumed past 0 */
	ck_assert_uint_lt(stopped, ji.rows);
	ck_assert_int_eq(raid_member_state(e.raid, 1), RAID_MEMBER_ACTIVE);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	verify_all(&e);
	/* the rebuilt member holds its data: lose another one */
	ck_assert_int_eq(fault_fail_after(e.f[l == RAID_LEVEL_1 ? 0 : 2], 0, FAULT_OPS_ALL,
					  -EIO), 0);
	verify_all(&e);
	ck_assert_int_eq(raid_degraded(e.raid), 1);
	env_free(&e);
}

START_TEST(resume_raid5) { resume(RAID_LEVEL_5, 4, 10); }
END_TEST
START_TEST(resume_raid1) { resume(RAID_LEVEL_1, 2, 11); }
END_TEST

/* ---- the rate limit holds; without one it is fast ---- */

START_TEST(rate_limit)
{
	struct env e;
	uint64_t t0, el;

	env_create(&e, RAID_LEVEL_1, 2, 4, 1024 * 1024, 20);
	fill(&e);
	ck_assert_int_eq(fault_fail_after(e.f[0], 0, FAULT_OPS_ALL, -EIO), 0);
	verify_all(&e);
	ck_assert_int_eq(raid_set_rate(e.raid, 2 * 1024 * 1024), 0);	/* 0.5 s */
	t0 = now_ns();
	ck_assert_int_eq(raid_replace(e.raid, 0, e.f[2]), 0);
	el = now_ns() - t0;
	ck_assert_uint_ge(el, 400ull * 1000 * 1000);
	ck_assert_uint_eq(job(&e).last_rc, 0);
	verify_all(&e);
	/* no limit, no foreground I/O: quick */
	ck_assert_int_eq(fault_fail_after(e.f[1], 0, FAULT_OPS_ALL, -EIO), 0);
	verify_all(&e);
	ck_assert_int_eq(raid_set_rate(e.raid, 0), 0);
	t0 = now_ns();
	ck_assert_int_eq(raid_replace(e.raid, 1, e.f[3]), 0);
	ck_assert_uint_lt(now_ns() - t0, 20ull * 1000 * 1000 * 1000);
	verify_all(&e);
	env_free(&e);
}
END_TEST

/* ---- scrub in the background: busy, cancel, clean ---- */

START_TEST(scrub_background)
{
	struct env e;
	struct raid_job_info ji;
	uint64_t bad = 1, end;

	env_create(&e, RAID_LEVEL_6, 5, 5, 1024 * 1024, 30);
	fill(&e);
	ck_assert_int_eq(raid_scrub_cancel(e.raid), -ENOENT);
	ck_assert_int_eq(raid_set_rate(e.raid, 256 * 1024), 0);
	ck_assert_int_eq(raid_scrub_start(e.raid, false), 0);
	ck_assert_int_eq(raid_scrub_start(e.raid, true), -EBUSY);
	end = now_ns() + 30ull * 1000 * 1000 * 1000;
	do {
		run_ops(&e, 20);
		ji = job(&e);
		ck_assert(now_ns() < end);
	} while (ji.kind != RAID_JOB_SCRUB || ji.rows_done < 4);
	ck_assert_int_eq(raid_scrub_cancel(e.raid), 0);
	ck_assert_int_eq(raid_job_wait(e.raid), -ECANCELED);
	ji = job(&e);
	ck_assert_int_eq(ji.last_kind, RAID_JOB_SCRUB);
	ck_assert_int_eq(ji.kind, RAID_JOB_NONE);
	ck_assert_int_eq(raid_set_rate(e.raid, 0), 0);
	run_ops(&e, 300);
	ck_assert_int_eq(raid_scrub(e.raid, false, &bad), 0);
	ck_assert_uint_eq(bad, 0);
	ck_assert_uint_eq(job(&e).last_rc, 0);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	env_free(&e);
}
END_TEST

/* ---- a stale member is not trusted: it is rebuilt ---- */

START_TEST(stale_rebuilt)
{
	struct env e;
	struct blkdev *m[NDEV];

	env_create(&e, RAID_LEVEL_5, 4, 4, 256 * 1024, 40);
	fill(&e);
	ck_assert_int_eq(fault_fail_after(e.f[3], 0, FAULT_OPS_ALL, -EIO), 0);
	run_ops(&e, 300);	/* member 3 misses these writes */
	ck_assert_int_eq(raid_member_state(e.raid, 3), RAID_MEMBER_FAILED);
	env_detach(&e);
	ck_assert_int_eq(fault_clear(e.f[3]), 0);
	for (uint32_t i = 0; i < 4; i++)
		m[i] = e.f[3 - i];
	ck_assert_int_eq(raid_assemble(m, 4, &e.raid), 0);
	env_attach(&e);
	ck_assert_int_eq(raid_degraded(e.raid), 1);	/* stale: not used */
	ck_assert_int_ne(raid_member_state(e.raid, 3), RAID_MEMBER_ACTIVE);
	ck_assert(raid_member_dev(e.raid, 3) == NULL);
	verify_all(&e);
	ck_assert_int_eq(raid_spare_add(e.raid, e.f[3]), 0);
	io_until_idle(&e);
	ck_assert_int_eq(raid_member_state(e.raid, 3), RAID_MEMBER_ACTIVE);
	ck_assert(raid_member_dev(e.raid, 3) == e.f[3]);
	verify_all(&e);
	ck_assert_int_eq(fault_fail_after(e.f[0], 0, FAULT_OPS_ALL, -EIO), 0);
	verify_all(&e);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	env_free(&e);
}
END_TEST

/* ---- read errors: repaired from redundancy and written back; too many
 * fail the member ---- */

static void read_errors(enum raid_level l, uint32_t n, uint64_t seed)
{
	struct raid_geom g = { .level = l, .nmembers = n, .strip = STRIP,
			       .member_size = 256 * 1024 };
	struct fault_rule rule = { .len = 4096, .op_mask = FAULT_OP(BIO_READ), .one_shot = true };
	struct fault_stats st;
	struct raid_loc loc;
	uint8_t junk[4096];
	uint32_t m;
	struct env e;

	env_create(&e, l, n, n, 256 * 1024, seed);
	fill(&e);
	/* a bad block under pool offset 100K on the member read first */
	raid_map(&g, 100 * 1024, &loc);
	m = loc.member;
	if (l == RAID_LEVEL_1)
		m = (uint32_t)(loc.stripe % n);
	else if (l == RAID_LEVEL_10)
		m = 2 * loc.col + (uint32_t)(loc.stripe % 2);
	memset(junk, 0xee, sizeof(junk));
	ck_assert_int_eq(blk_sync_io(e.mem[m], BIO_WRITE, 0, RAID_DATA_OFFSET + loc.moff, junk,
				     sizeof(junk)), 0);
	rule.offset = RAID_DATA_OFFSET + loc.moff;
	ck_assert_int_ge(fault_add_rule(e.f[m], &rule), 0);
	ck_assert_int_eq(fault_reset_stats(e.f[m]), 0);
	verify_all(&e);		/* the read fails once: served from the others */
	ck_assert_int_eq(fault_get_stats(e.f[m], &st), 0);
	ck_assert_uint_eq(st.injected, 1);
	ck_assert_uint_ge(st.ios[BIO_WRITE], 1);	/* rewritten */
	ck_assert_uint_ge(job(&e).read_errors_fixed, 1);
	ck_assert_int_eq(raid_degraded(e.raid), 0);
	verify_all(&e);		/* read from m again: the junk is gone */
	ck_assert_int_eq(raid_degraded(e.raid), 0);
	run_ops(&e, 300);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);

	/* a member whose reads keep failing is failed: degraded, not down */
	rule.offset = RAID_DATA_OFFSET;
	rule.len = 0;
	rule.one_shot = false;
	ck_assert_int_ge(fault_add_rule(e.f[m], &rule), 0);
	verify_all(&e);
	run_ops(&e, 300);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	ck_assert_int_eq(raid_member_state(e.raid, m), RAID_MEMBER_FAILED);
	ck_assert_int_eq(raid_degraded(e.raid), 1);
	verify_all(&e);
	env_free(&e);
}

START_TEST(read_errors_all_levels)
{
	read_errors(RAID_LEVEL_1, 2, 60);
	read_errors(RAID_LEVEL_10, 4, 61);
	read_errors(RAID_LEVEL_5, 4, 62);
	read_errors(RAID_LEVEL_6, 5, 63);
}
END_TEST

/* ---- an old copy of a member (a whole session behind), though active in
 * the newest superblock, is stale: not used, rebuilt ---- */

START_TEST(old_copy_stale)
{
	uint64_t msz = RAID_DATA_OFFSET + 256 * 1024;
	uint8_t *copy = malloc(msz);
	struct blkdev *m[NDEV];
	struct env e;

	env_create(&e, RAID_LEVEL_5, 4, 4, 256 * 1024, 70);
	fill(&e);
	env_detach(&e);
	ck_assert_int_eq(blk_sync_io(e.mem[2], BIO_READ, 0, 0, copy, msz), 0);
	ck_assert_int_eq(raid_assemble(e.f, 4, &e.raid), 0);
	env_attach(&e);
	run_ops(&e, 300);	/* a session: dirty, then clean at close */
	env_detach(&e);
	ck_assert_int_eq(blk_sync_io(e.mem[2], BIO_WRITE, 0, 0, copy, msz), 0);
	for (uint32_t i = 0; i < 4; i++)
		m[i] = e.f[(i + 1) % 4];
	ck_assert_int_eq(raid_assemble(m, 4, &e.raid), 0);
	env_attach(&e);
	ck_assert_int_eq(raid_degraded(e.raid), 1);
	ck_assert(raid_member_dev(e.raid, 2) == NULL);
	verify_all(&e);
	ck_assert_int_eq(raid_spare_add(e.raid, e.f[2]), 0);
	io_until_idle(&e);
	ck_assert_int_eq(raid_member_state(e.raid, 2), RAID_MEMBER_ACTIVE);
	ck_assert_int_eq(fault_fail_after(e.f[0], 0, FAULT_OPS_ALL, -EIO), 0);
	verify_all(&e);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	free(copy);
	env_free(&e);
}
END_TEST

/* ---- a member whose superblock write fails has failed ----
 * Slot 1 is taken out; the superblock write that says so fails on member 3
 * (its data area still works). Member 3 fails too, the superblocks are
 * written again without it, raid_fail succeeds, and the two spares take the
 * two slots. */

START_TEST(sb_write_fails_member)
{
	struct fault_rule rule = { .offset = 0, .len = RAID_DATA_OFFSET,
				   .op_mask = FAULT_OP(BIO_WRITE) };
	struct blkdev *sp[2];
	struct env e;

	env_create(&e, RAID_LEVEL_6, 5, 7, 256 * 1024, 80);
	fill(&e);
	ck_assert_int_eq(raid_spare_add(e.raid, e.f[5]), 0);
	ck_assert_int_eq(raid_spare_add(e.raid, e.f[6]), 0);
	ck_assert_int_ge(fault_add_rule(e.f[3], &rule), 0);
	ck_assert_int_eq(raid_fail(e.raid, 1), 0);	/* persisted: without member 3 */
	/* member 3 failed (a spare may have taken its slot and been rebuilt already) */
	ck_assert(raid_member_state(e.raid, 3) != RAID_MEMBER_ACTIVE ||
		  raid_member_dev(e.raid, 3) != e.f[3]);
	io_until_idle(&e);
	ck_assert_uint_eq(raid_spares(e.raid, sp, 2), 0);
	ck_assert(raid_member_dev(e.raid, 1) == e.f[5] || raid_member_dev(e.raid, 1) == e.f[6]);
	ck_assert(raid_member_dev(e.raid, 3) == e.f[5] || raid_member_dev(e.raid, 3) == e.f[6]);
	ck_assert_int_eq(raid_degraded(e.raid), 0);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	verify_all(&e);
	/* assembled again from the members' superblocks: the same set */
	env_detach(&e);
	{
		struct blkdev *m[5] = { e.f[0], e.f[2], e.f[4], e.f[5], e.f[6] };

		ck_assert_int_eq(raid_assemble(m, 5, &e.raid), 0);
	}
	env_attach(&e);
	ck_assert_int_eq(raid_degraded(e.raid), 0);
	verify_all(&e);
	env_free(&e);
}
END_TEST

START_TEST(refusals)
{
	struct env e;
	struct blkdev *small;

	env_create(&e, RAID_LEVEL_0, 2, 3, 256 * 1024, 50);
	ck_assert_int_eq(raid_spare_add(e.raid, e.f[2]), -EINVAL);	/* no redundancy */
	ck_assert_int_eq(raid_scrub_start(e.raid, false), -EINVAL);
	env_free(&e);
	env_create(&e, RAID_LEVEL_5, 3, 4, 256 * 1024, 51);
	ck_assert_int_eq(blk_mem_create("small", RAID_DATA_OFFSET + 4096, BS, &small), 0);
	ck_assert_int_eq(raid_spare_add(e.raid, small), -EINVAL);
	ck_assert_int_eq(raid_spare_add(e.raid, e.f[0]), -EBUSY);	/* a member */
	ck_assert_int_eq(raid_spare_remove(e.raid, e.f[3]), -ENOENT);
	ck_assert_int_eq(raid_spare_add(e.raid, e.f[3]), 0);
	ck_assert_int_eq(raid_spare_remove(e.raid, e.f[3]), 0);
	ck_assert_int_eq(blkdev_close(small), 0);
	env_free(&e);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("raid_jobs");
	TCase *tc = tcase_create("jobs");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, spare_raid1);
	tcase_add_test(tc, spare_raid10);
	tcase_add_test(tc, spare_raid5);
	tcase_add_test(tc, spare_raid6);
	tcase_add_test(tc, resume_raid5);
	tcase_add_test(tc, resume_raid1);
	tcase_add_test(tc, rate_limit);
	tcase_add_test(tc, scrub_background);
	tcase_add_test(tc, stale_rebuilt);
	tcase_add_test(tc, old_copy_stale);
	tcase_add_test(tc, read_errors_all_levels);
	tcase_add_test(tc, sb_write_fails_member);
	tcase_add_test(tc, refusals);
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
