/* SPDX-License-Identifier: MIT */
/*
 * Space maps: reference counts after random alloc/inc/dec checked against
 * a model, across commit and reopen; uncommitted changes are lost on
 * reopen; an entry freed in a transaction is not handed out again before
 * the commit; a full map says -ENOSPC.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "test_thin_util.h"

#define META_NBLOCKS	2048
#define NDATA		5000u	/* 5 refcount blocks, the last one partial */

static struct tm *fmt(struct tenv *e, unsigned cache)
{
	struct tm_geom g = { .meta_nblocks = META_NBLOCKS, .data_nentries = NDATA,
			     .cache_blocks = cache };
	struct tm *tm;

	tenv_open(e, 16u << 20, 512, false);
	T_EQ(tm_format(tenv_dev(e), &g, &tm), 0);
	return tm;
}

static void check_model(struct sm *sm, const uint32_t *model, uint64_t n)
{
	uint64_t used = 0;
	uint32_t c;

	for (uint64_t i = 0; i < n; i++) {
		T_EQ(sm_get_count(sm, i, &c), 0);
		ck_assert_msg(c == model[i], "entry %llu: count %u, model %u",
			      (unsigned long long)i, c, model[i]);
		used += model[i] != 0;
	}
	T_EQ(sm_nr_free(sm), n - used);
}

/* Random operations, commits and reopens; cache of 16 blocks so the
 * refcount blocks are evicted and read back all the time. */
START_TEST(t_random)
{
	static uint32_t model[NDATA], committed[NDATA];
	uint64_t seed = 0x1234567 + (uint64_t)_i, e64;
	struct tenv e;
	struct tm *tm = fmt(&e, 16);
	struct sm *sm = tm_dsm(tm);

	memset(model, 0, sizeof(model));
	memset(committed, 0, sizeof(committed));
	for (int round = 0; round < 20; round++) {
		for (int op = 0; op < 2000; op++) {
			uint64_t r = rnd(&seed), x = r % NDATA;
			int rc;

			switch ((r >> 32) % 4) {
			case 0:
			case 1:
				rc = sm_alloc(sm, &e64);
				if (rc == -ENOSPC) {
					T_EQ(sm_nr_allocatable(sm), 0);
					break;
				}
				T_EQ(rc, 0);
				T_EQ(model[e64], 0);
				T_EQ(committed[e64], 0);
				model[e64] = 1;
				break;
			case 2:
				if (model[x]) {
					T_EQ(sm_inc(sm, x), 0);
					model[x]++;
				}
				break;
			case 3:
				if (model[x]) {
					T_EQ(sm_dec(sm, x), 0);
					model[x]--;
				} else {
					T_EQ(sm_dec(sm, x), -EINVAL);
				}
				break;
			}
		}
		check_model(sm, model, NDATA);
		{
			uint64_t avail = 0;

			for (uint64_t i = 0; i < NDATA; i++)
				avail += !model[i] && !committed[i];
			T_EQ(sm_nr_allocatable(sm), avail);
		}
		switch (round % 3) {
		case 0:		/* commit and go on */
			T_EQ(tm_commit(tm), 0);
			memcpy(committed, model, sizeof(model));
			break;
		case 1:		/* commit and reopen */
			T_EQ(tm_commit(tm), 0);
			memcpy(committed, model, sizeof(model));
			tm_close(tm);
			T_EQ(tm_open(tenv_dev(&e), 16, &tm), 0);
			sm = tm_dsm(tm);
			break;
		case 2:		/* drop the transaction */
			tm_close(tm);
			T_EQ(tm_open(tenv_dev(&e), 16, &tm), 0);
			sm = tm_dsm(tm);
			memcpy(model, committed, sizeof(model));
			break;
		}
		check_model(sm, model, NDATA);
	}
	T_EQ(sm_get_count(sm, NDATA, &(uint32_t){ 0 }), -ERANGE);
	tm_close(tm);
	tenv_close(&e);
}
END_TEST

/* Freed in this transaction: not allocatable until the commit. */
START_TEST(t_no_reuse)
{
	struct tenv e;
	struct tm *tm = fmt(&e, 64);
	struct sm *sm = tm_dsm(tm);
	uint64_t x, i;
	static bool got[NDATA];

	for (i = 0; i < NDATA; i++) {
		T_EQ(sm_alloc(sm, &x), 0);
		T_TRUE(!got[x]);
		got[x] = true;
	}
	T_EQ(sm_alloc(sm, &x), -ENOSPC);
	T_EQ(sm_nr_free(sm), 0);
	T_EQ(tm_commit(tm), 0);
	T_EQ(sm_dec(sm, 17), 0);
	T_EQ(sm_dec(sm, 4321), 0);
	T_EQ(sm_nr_free(sm), 2);
	T_EQ(sm_nr_allocatable(sm), 0);
	T_EQ(sm_alloc(sm, &x), -ENOSPC);
	T_EQ(tm_commit(tm), 0);
	T_EQ(sm_nr_allocatable(sm), 2);
	T_EQ(sm_alloc(sm, &x), 0);
	T_TRUE(x == 17 || x == 4321);
	/* allocated and freed in the same transaction: free to reuse */
	T_EQ(sm_dec(sm, x), 0);
	T_EQ(sm_nr_allocatable(sm), 2);
	T_EQ(sm_alloc(sm, &i), 0);
	T_TRUE(i == 17 || i == 4321);
	T_EQ(sm_alloc(sm, &x), 0);
	T_TRUE(x != i && (x == 17 || x == 4321));
	T_EQ(sm_alloc(sm, &x), -ENOSPC);
	tm_close(tm);
	tenv_close(&e);
}
END_TEST

/* The metadata space map covers the metadata blocks and never hands out
 * the superblocks or the space maps' own slots. */
START_TEST(t_meta_region)
{
	struct tenv e;
	struct tm *tm = fmt(&e, 64);
	struct sm *msm = tm_msm(tm);
	struct sm_root r;
	uint64_t x, n = 0;

	sm_get_root(msm, &r);
	T_EQ(r.nentries, META_NBLOCKS);
	T_EQ(r.alloc_begin, 2 + 2 * 3 + 2 * 5);	/* 2048 blocks: 3 refcount blocks */
	while (sm_alloc(msm, &x) == 0) {
		ck_assert_uint_ge(x, r.alloc_begin);
		ck_assert_uint_lt(x, META_NBLOCKS);
		n++;
	}
	T_EQ(n, META_NBLOCKS - r.alloc_begin);
	tm_close(tm);
	tenv_close(&e);
}
END_TEST

/* Geometry that does not fit is refused. */
START_TEST(t_geometry)
{
	struct tenv e;
	struct tm *tm;
	struct tm_geom g = { .meta_nblocks = 16, .data_nentries = 100000 };

	tenv_open(&e, 16u << 20, 512, false);
	T_EQ(tm_format(e.mem, &g, &tm), -EINVAL);
	g = (struct tm_geom){ .meta_nblocks = 4096, .data_nentries = 0 };
	T_EQ(tm_format(e.mem, &g, &tm), -EINVAL);
	g = (struct tm_geom){ .meta_nblocks = 4096, .data_nentries = 1ull << 40 };
	ck_assert_int_lt(tm_format(e.mem, &g, &tm), 0);
	g = (struct tm_geom){ .meta_nblocks = 1 << 20, .data_nentries = 100 };
	T_EQ(tm_format(e.mem, &g, &tm), -EINVAL);	/* bigger than the device */
	tenv_close(&e);
}
END_TEST

static Suite *sm_suite(void)
{
	Suite *s = suite_create("thin_sm");
	TCase *tc = tcase_create("sm");

	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, t_random, 0, 3);
	tcase_add_test(tc, t_no_reuse);
	tcase_add_test(tc, t_meta_region);
	tcase_add_test(tc, t_geometry);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(sm_suite());
	int nfail;

	srunner_run_all(sr, CK_NORMAL);
	nfail = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nfail ? EXIT_FAILURE : EXIT_SUCCESS;
}
