/* SPDX-License-Identifier: MIT */
/*
 * Address maps for every level: known layouts (md's left-symmetric for 5
 * and 6), and pool -> member -> pool both ways over whole small sets.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sand/raid.h"

#define STRIP 4096u

static struct raid_geom geom(enum raid_level l, uint32_t n)
{
	struct raid_geom g = { .level = l, .nmembers = n, .strip = STRIP,
			       .member_size = 16ull * STRIP };
	ck_assert_int_eq(raid_geom_check(&g), 0);
	return g;
}

static uint32_t member_of(const struct raid_geom *g, uint64_t strip_no)
{
	struct raid_loc l;

	raid_map(g, strip_no * g->strip + 512, &l);
	ck_assert_uint_eq(l.moff % g->strip, 512);
	return l.member;
}

START_TEST(check_geom)
{
	struct raid_geom g = { .level = RAID_LEVEL_5, .nmembers = 2, .strip = STRIP,
			       .member_size = STRIP };

	ck_assert_int_eq(raid_geom_check(&g), -EINVAL);
	g.level = RAID_LEVEL_6; g.nmembers = 3;
	ck_assert_int_eq(raid_geom_check(&g), -EINVAL);
	g.level = RAID_LEVEL_10; g.nmembers = 5;
	ck_assert_int_eq(raid_geom_check(&g), -EINVAL);
	g.level = RAID_LEVEL_0; g.nmembers = 2; g.strip = 3000;
	ck_assert_int_eq(raid_geom_check(&g), -EINVAL);
	g.strip = STRIP; g.member_size = STRIP + 512;
	ck_assert_int_eq(raid_geom_check(&g), -EINVAL);
	g = geom(RAID_LEVEL_6, 6);
	ck_assert_uint_eq(raid_geom_size(&g), 4 * 16ull * STRIP);
	ck_assert_uint_eq(raid_redundancy(&g), 2);
	g = geom(RAID_LEVEL_10, 4);
	ck_assert_uint_eq(raid_geom_size(&g), 2 * 16ull * STRIP);
	g = geom(RAID_LEVEL_1, 3);
	ck_assert_uint_eq(raid_geom_size(&g), 16ull * STRIP);
	ck_assert_uint_eq(raid_redundancy(&g), 2);
}
END_TEST

START_TEST(layout_raid0_10)
{
	struct raid_geom g = geom(RAID_LEVEL_0, 3);
	struct raid_loc l;

	for (uint64_t s = 0; s < 9; s++)
		ck_assert_uint_eq(member_of(&g, s), s % 3);
	raid_map(&g, 7 * STRIP + 5 * 512, &l);
	ck_assert_uint_eq(l.member, 1);
	ck_assert_uint_eq(l.moff, 2 * STRIP + 5 * 512);

	g = geom(RAID_LEVEL_10, 6);
	for (uint64_t s = 0; s < 9; s++)
		ck_assert_uint_eq(member_of(&g, s), 2 * (s % 3));
}
END_TEST

/* md's raid5 left-symmetric with 4 disks:
 *   stripe 0: D0 D1 D2 P
 *   stripe 1: D4 D5 P  D3
 *   stripe 2: D8 P  D6 D7
 *   stripe 3: P  D9 D10 D11 */
START_TEST(layout_raid5)
{
	static const uint32_t want[12] = { 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3 };
	static const uint32_t parity[4] = { 3, 2, 1, 0 };
	struct raid_geom g = geom(RAID_LEVEL_5, 4);
	uint32_t cols[RAID_MAX_MEMBERS];

	for (uint64_t s = 0; s < 12; s++)
		ck_assert_uint_eq(member_of(&g, s), want[s]);
	for (uint64_t st = 0; st < 8; st++) {
		ck_assert_uint_eq(raid_stripe_cols(&g, st, cols), 4);
		ck_assert_uint_eq(cols[3], parity[st % 4]);
	}
	raid_stripe_cols(&g, 1, cols);
	ck_assert_uint_eq(cols[0], 3);	/* D3 */
	ck_assert_uint_eq(cols[1], 0);	/* D4 */
}
END_TEST

/* md's raid6 left-symmetric with 5 disks (Q follows P, data follows Q):
 *   stripe 0: Q   D0  D1  D2  P
 *   stripe 1: D3  D4  D5  P   Q
 *   stripe 2: D7  D8  P   Q   D6
 *   stripe 3: D11 P   Q   D9  D10
 *   stripe 4: P   Q   D12 D13 D14 */
START_TEST(layout_raid6)
{
	static const uint32_t want[15] = { 1, 2, 3, 0, 1, 2, 4, 0, 1, 3, 4, 0, 2, 3, 4 };
	struct raid_geom g = geom(RAID_LEVEL_6, 5);
	uint32_t cols[RAID_MAX_MEMBERS];

	for (uint64_t s = 0; s < 15; s++)
		ck_assert_uint_eq(member_of(&g, s), want[s]);
	raid_stripe_cols(&g, 4, cols);
	ck_assert_uint_eq(cols[3], 0);	/* P */
	ck_assert_uint_eq(cols[4], 1);	/* Q */
	raid_stripe_cols(&g, 0, cols);
	ck_assert_uint_eq(cols[3], 4);
	ck_assert_uint_eq(cols[4], 0);
}
END_TEST

/* Every block of the set maps to a distinct data block of a member, and
 * back; every member block is data of exactly one pool block or parity. */
static void both_ways(enum raid_level l, uint32_t n)
{
	struct raid_geom g = geom(l, n);
	uint64_t size = raid_geom_size(&g), bs = 512;
	uint64_t mblocks = g.member_size / bs;
	uint8_t *seen = calloc(n * mblocks, 1);
	uint32_t cols[RAID_MAX_MEMBERS];
	uint64_t parity = 0;

	for (uint64_t off = 0; off < size; off += bs) {
		struct raid_loc loc;
		uint64_t back;

		raid_map(&g, off, &loc);
		ck_assert_uint_lt(loc.member, n);
		ck_assert_uint_lt(loc.moff, g.member_size);
		ck_assert_uint_eq(loc.moff / g.strip, loc.stripe);
		raid_stripe_cols(&g, loc.stripe, cols);
		if (l == RAID_LEVEL_10)
			ck_assert_uint_eq(cols[2 * loc.col], loc.member);
		else if (l != RAID_LEVEL_1)
			ck_assert_uint_eq(cols[loc.col], loc.member);
		ck_assert_int_eq(raid_unmap(&g, loc.member, loc.moff, &back), 0);
		ck_assert_uint_eq(back, off);
		if (l == RAID_LEVEL_10) {
			ck_assert_int_eq(raid_unmap(&g, loc.member + 1, loc.moff, &back), 0);
			ck_assert_uint_eq(back, off);
		}
		ck_assert_uint_eq(seen[loc.member * mblocks + loc.moff / bs]++, 0);
	}
	for (uint32_t m = 0; m < n; m++)
		for (uint64_t b = 0; b < mblocks; b++) {
			uint64_t back;
			int rc = raid_unmap(&g, m, b * bs, &back);

			if (rc == -ENOENT) {
				parity++;
				continue;
			}
			ck_assert_int_eq(rc, 0);
			ck_assert_uint_lt(back, size);
			if (l != RAID_LEVEL_1 && l != RAID_LEVEL_10)
				ck_assert_uint_eq(seen[m * mblocks + b], 1);
		}
	ck_assert_uint_eq(parity, (n - raid_data_cols(&g)) * mblocks *
			  (l == RAID_LEVEL_5 || l == RAID_LEVEL_6));
	ck_assert_int_eq(raid_unmap(&g, n, 0, &(uint64_t){0}), -EINVAL);
	free(seen);
}

START_TEST(both_ways_all)
{
	for (uint32_t n = 1; n <= 6; n++)
		both_ways(RAID_LEVEL_0, n);
	for (uint32_t n = 2; n <= 4; n++)
		both_ways(RAID_LEVEL_1, n);
	both_ways(RAID_LEVEL_10, 4);
	both_ways(RAID_LEVEL_10, 6);
	for (uint32_t n = 3; n <= 7; n++)
		both_ways(RAID_LEVEL_5, n);
	for (uint32_t n = 4; n <= 8; n++)
		both_ways(RAID_LEVEL_6, n);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("raid_map");
	TCase *tc = tcase_create("map");

	tcase_add_test(tc, check_geom);
	tcase_add_test(tc, layout_raid0_10);
	tcase_add_test(tc, layout_raid5);
	tcase_add_test(tc, layout_raid6);
	tcase_add_test(tc, both_ways_all);
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
