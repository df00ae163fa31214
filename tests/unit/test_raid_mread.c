/* SPDX-License-Identifier: MIT */
/*
 * RAID 5/6 reads over several stripes (raid_parity_mread.c): batched, and
 * right. Memory members under fault devices (raid_env.h).
 *  - whole: a read of io_boundary bytes sends each member one bio per run
 *    of rows where it holds data (counted), not one per stripe and column;
 *  - degraded (one member out, two for RAID 6, or one being rebuilt): one
 *    bio per readable member, the lost columns rebuilt;
 *  - random multi-stripe reads (unaligned ends, the caller's buffer in
 *    several pieces) against the model, whole, degraded and rebuilding;
 *  - a read error inside such a read: the data still right, and repaired.
 */
#include "raid_env.h"

#define MDATA		(1024u * 1024)

static uint64_t member_reads(struct env *e)
{
	struct fault_stats st;
	uint64_t n = 0;

	for (uint32_t i = 0; i < e->n; i++) {
		ck_assert_int_eq(fault_get_stats(e->f[i], &st), 0);
		n += st.ios[BIO_READ];
		ck_assert_int_eq(fault_reset_stats(e->f[i]), 0);
	}
	return n;
}

/* Read [off, off + len) through the set into three pieces split at odd
 * places, compare with the model. */
static void read_check(struct env *e, uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(len + 64);
	size_t a = MIN(len, (size_t)(rnd(e) % (len + 1))), b;
	struct iovec iov[3];
	int st = 1;

	b = a + MIN(len - a, (size_t)(rnd(e) % (len - a + 1)));
	/* the pieces: [0, a), [a, b), [b, len), at odd addresses */
	iov[0] = (struct iovec){ buf + 1, a };
	iov[1] = (struct iovec){ buf + 1 + a + 7, b - a };
	iov[2] = (struct iovec){ buf + 1 + b + 13, len - b };
	ck_assert_int_eq(blk_rw(e->ch, BIO_READ, 0, iov, 3, off, len, sync_end, &st), 0);
	for (int i = 0; i < 100000 && st == 1; i++)
		ev_run_once(e->loop, 100);
	ck_assert_int_eq(st, 0);
	for (int i = 0; i < 3; i++) {
		size_t at = i == 0 ? 0 : i == 1 ? a : b;

		ck_assert_msg(!memcmp(iov[i].iov_base, e->model + off + at, iov[i].iov_len),
			      "read %llu+%llu: piece %d differs", (unsigned long long)off,
			      (unsigned long long)len, i);
	}
	free(buf);
}

static void random_reads(struct env *e, int n)
{
	uint64_t sw = e->size / (MDATA / STRIP);

	for (int i = 0; i < n; i++) {
		uint64_t len = (1 + rnd(e) % (3 * sw / BS)) * BS;
		uint64_t off = rnd(e) % ((e->size - len) / BS + 1) * BS;

		read_check(e, off, len);
	}
}

/* A member bio of len bytes, as the member's I/Os (split at its max_io). */
static uint64_t ios_of(struct env *e, uint64_t len)
{
	uint64_t max = e->f[0]->max_io;

	return max ? (len + max - 1) / max : 1;
}

/* Member I/Os a whole read of `rows` stripes from stripe 0 takes: per
 * member, one bio per run of rows where it holds a data column. */
static uint64_t runs(struct env *e, enum raid_level l, uint64_t rows)
{
	struct raid_geom g = { .level = l, .nmembers = e->n, .strip = STRIP,
			       .member_size = MDATA };
	uint32_t k = raid_data_cols(&g), cols[RAID_MAX_MEMBERS];
	uint64_t n = 0;

	for (uint32_t m = 0; m < e->n; m++) {
		uint64_t run = 0;

		for (uint64_t i = 0; i <= rows; i++) {
			bool data = false;

			if (i < rows) {
				raid_stripe_cols(&g, i, cols);
				for (uint32_t j = 0; j < k; j++)
					data |= cols[j] == m;
			}
			if (data) {
				run++;
			} else if (run) {
				n += ios_of(e, run * STRIP);
				run = 0;
			}
		}
	}
	return n;
}

static void mread(enum raid_level l, uint32_t n, uint64_t seed)
{
	uint32_t np = l == RAID_LEVEL_6 ? 2 : 1, k = n - np;
	uint64_t sw = (uint64_t)k * STRIP, rows, reads;
	struct raid_job_info ji;
	struct env e;

	env_create(&e, l, n, n + 1, MDATA, seed);
	fill(&e);
	rows = e.raid->io_boundary / sw;
	ck_assert_uint_gt(rows, 2);

	/* whole: runs of data strips */
	member_reads(&e);
	read_check(&e, 0, rows * sw);
	reads = member_reads(&e);
	ck_assert_uint_eq(reads, runs(&e, l, rows));
	ck_assert_uint_lt(reads, rows * k);	/* one per stripe and column */
	ck_assert_uint_le(reads, n * (rows / n + 2));
	random_reads(&e, 200);

	/* degraded: one bio per readable member */
	ck_assert_int_eq(raid_fail(e.raid, 1), 0);
	member_reads(&e);
	read_check(&e, 0, rows * sw);
	ck_assert_uint_eq(member_reads(&e), (n - 1) * ios_of(&e, rows * STRIP));
	read_check(&e, 3 * BS, rows * sw - 8 * BS);	/* unaligned, the same rows */
	ck_assert_uint_eq(member_reads(&e), (n - 1) * ios_of(&e, rows * STRIP));
	random_reads(&e, 200);
	if (np == 2) {
		ck_assert_int_eq(raid_fail(e.raid, 3), 0);
		member_reads(&e);
		read_check(&e, 0, rows * sw);
		ck_assert_uint_eq(member_reads(&e), (n - 2) * ios_of(&e, rows * STRIP));
		random_reads(&e, 200);
		ck_assert_int_eq(raid_replace(e.raid, 3, e.f[3]), 0);
	}

	/* being rebuilt (a fresh disk, slowly): read around it */
	ck_assert_int_eq(raid_set_rate(e.raid, 64 * 1024), 0);
	ck_assert_int_eq(raid_replace_start(e.raid, 1, e.f[n]), 0);
	for (int i = 0; i < 1000 && job(&e).kind != RAID_JOB_REBUILD; i++)
		usleep(10 * 1000);
	random_reads(&e, 200);
	ji = job(&e);
	ck_assert_msg(ji.kind == RAID_JOB_REBUILD, "kind %d last %d rc %d slot %d", ji.kind,
		      ji.last_kind, ji.last_rc, ji.last_slot);	/* still: 16 s at that rate */
	ck_assert_int_eq(raid_set_rate(e.raid, 0), 0);
	ck_assert_int_eq(raid_job_wait(e.raid), 0);
	ck_assert_int_eq(raid_degraded(e.raid), 0);

	/* read errors inside a batched read (bad blocks on three members, in
	 * different rows): served, and the blocks rewritten */
	for (uint32_t i = 0; i < 3; i++) {
		struct fault_rule fr = { .offset = RAID_DATA_OFFSET + (2 + i) * STRIP + 512,
					 .len = 1024, .op_mask = FAULT_OP(BIO_READ) };

		ck_assert_int_ge(fault_add_rule(e.f[i], &fr), 0);
	}
	read_check(&e, 0, rows * sw);
	for (uint32_t i = 0; i < 3; i++)
		ck_assert_int_eq(fault_clear(e.f[i]), 0);
	random_reads(&e, 50);
	ji = job(&e);
	ck_assert_uint_gt(ji.read_errors_fixed, 0);
	ck_assert_int_eq(raid_degraded(e.raid), 0);
	verify_all(&e);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	env_free(&e);
}

START_TEST(mread_raid5) { mread(RAID_LEVEL_5, 4, 300); mread(RAID_LEVEL_5, 3, 301); }
END_TEST
START_TEST(mread_raid6) { mread(RAID_LEVEL_6, 5, 302); mread(RAID_LEVEL_6, 6, 303); }
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("raid_mread");
	TCase *tc = tcase_create("mread");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, mread_raid5);
	tcase_add_test(tc, mread_raid6);
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
	return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
