/* SPDX-License-Identifier: MIT */
/*
 * Transactions: commit and reopen; power cuts (drop every unflushed write,
 * or keep/drop/tear each one at random) between commits and in the middle
 * of one reopen to the last committed state (or, for a cut after the new
 * superblock was written but before it was flushed, to either state); a
 * corrupt newest superblock falls back to the previous commit; a failed
 * commit leaves the last one in place.
 *
 * The state: a B-tree from key to a data entry, each data entry allocated
 * from the data space map when inserted and released when removed or
 * overwritten, so after a reopen the space maps must agree with the tree.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "test_thin_util.h"

#define META_NBLOCKS	4096
#define NDATA		30000u
#define NKEYS		20000u

/* set by the "sel" test case: slot-select bits in select blocks */
static bool sel_blocks;

static void sel_on(void)
{
	sel_blocks = true;
}

struct state {
	uint32_t	val[NKEYS];	/* data entry + 1 */
	uint64_t	n;
	uint64_t	root;
};

static int d_inc(void *ctx, const void *v)
{
	return sm_inc(tm_dsm(ctx), get_le64(v));
}

static int d_dec(void *ctx, const void *v)
{
	return sm_dec(tm_dsm(ctx), get_le64(v));
}

static void info_for(struct btree_info *bi, struct tm *tm)
{
	*bi = (struct btree_info){ .tm = tm, .value_size = 8, .ctx = tm,
				   .inc = d_inc, .dec = d_dec };
}

static struct tm *fmt(struct tenv *e, struct state *s)
{
	struct tm_geom g = { .meta_nblocks = META_NBLOCKS, .data_nentries = NDATA,
			     .cache_blocks = 16, .sel_blocks = sel_blocks };
	struct btree_info bi;
	struct tm *tm;

	tenv_open(e, 32u << 20, 512, true);
	T_EQ(tm_format(tenv_dev(e), &g, &tm), 0);
	info_for(&bi, tm);
	memset(s, 0, sizeof(*s));
	T_EQ(btree_empty(&bi, &s->root), 0);
	put_le64(tm_user(tm), s->root);
	T_EQ(tm_commit(tm), 0);
	T_EQ(fault_record(e->fd, true), 0);
	return tm;
}

static void ops(struct tm *tm, struct state *s, uint64_t *seed, int n)
{
	struct btree_info bi;
	uint8_t v[8];

	info_for(&bi, tm);
	for (int i = 0; i < n; i++) {
		uint64_t r = rnd(seed), k = r % NKEYS, d;

		if ((r >> 40) % 3) {
			T_EQ(sm_alloc(tm_dsm(tm), &d), 0);
			put_le64(v, d);
			T_EQ(btree_insert(&bi, s->root, k, v, &s->root), 0);
			s->n += !s->val[k];
			s->val[k] = (uint32_t)d + 1;
		} else {
			int rc = btree_remove(&bi, s->root, k, &s->root);

			T_EQ(rc, s->val[k] ? 0 : -ENODATA);
			s->n -= !!s->val[k];
			s->val[k] = 0;
		}
	}
	put_le64(tm_user(tm), s->root);
}

struct vwalk {
	struct state	*s;
	struct tm	*tm;
	uint64_t	seen;
};

static int vfn(void *arg, uint64_t key, const void *value)
{
	struct vwalk *w = arg;
	uint32_t c;

	T_TRUE(key < NKEYS);
	T_EQ(get_le64(value) + 1, w->s->val[key]);
	T_EQ(sm_get_count(tm_dsm(w->tm), get_le64(value), &c), 0);
	T_EQ(c, 1);
	w->seen++;
	return 0;
}

/* The reopened state is s, and the data space map agrees with it. */
static bool matches(struct tm *tm, struct state *s)
{
	struct btree_info bi;
	struct vwalk w = { .s = s, .tm = tm };
	struct sm_root r;

	if (get_le64(tm_user(tm)) != s->root)
		return false;
	info_for(&bi, tm);
	T_EQ(btree_iterate(&bi, s->root, 0, UINT64_MAX, vfn, &w), 0);
	T_EQ(w.seen, s->n);
	sm_get_root(tm_dsm(tm), &r);
	T_EQ(r.nr_allocated, s->n);
	return true;
}

static struct tm *reopen(struct tenv *e, struct tm *tm)
{
	tm_close(tm);
	T_EQ(tm_open(tenv_dev(e), 16, &tm), 0);
	return tm;
}

START_TEST(t_commit_reopen)
{
	static struct state s;
	uint64_t seed = 1, gen;
	struct tenv e;
	struct tm *tm = fmt(&e, &s);

	T_EQ(fault_record(e.fd, false), 0);
	{
		struct sm_root r;

		/* 5 + 30 refcount blocks, then 1 select block if asked for */
		sm_get_root(tm_msm(tm), &r);
		T_EQ(r.alloc_begin, 2 + 2 * 5 + 2 * 30 + (sel_blocks ? 2 : 0));
	}
	gen = tm_generation(tm);
	T_EQ(gen, 2);	/* format, then the empty tree */
	for (int i = 0; i < 6; i++) {
		ops(tm, &s, &seed, 3000);
		T_EQ(tm_commit(tm), 0);
		T_EQ(tm_generation(tm), ++gen);
		tm = reopen(&e, tm);
		T_EQ(tm_generation(tm), gen);
		T_TRUE(matches(tm, &s));
	}
	tm_close(tm);
	tenv_close(&e);
}
END_TEST

/* Cut the power after some uncommitted work (sometimes pre-committed:
 * everything but the superblock written and flushed). _i: policy mode
 * (0 drop all, 1..: random with seed _i). */
START_TEST(t_cut_between)
{
	static struct state s, com;
	uint64_t seed = 77 + (uint64_t)_i;
	struct fault_cut_policy pol = { .mode = _i ? FAULT_CUT_RANDOM : FAULT_CUT_DROP_ALL,
					.seed = (uint64_t)_i };
	struct tenv e;
	struct tm *tm = fmt(&e, &s);

	com = s;
	for (int round = 0; round < 6; round++) {
		ops(tm, &s, &seed, round ? 1500 : 6000);
		T_EQ(tm_commit(tm), 0);
		com = s;
		ops(tm, &s, &seed, 1000 + round * 300);
		if (round % 2)
			T_EQ(tm_pre_commit(tm), 0);
		ops(tm, &s, &seed, 500);
		ck_assert_int_gt(fault_unflushed_count(e.fd), 0);
		T_EQ(fault_power_cut(e.fd, &pol), 0);
		T_EQ(fault_power_restore(e.fd), 0);
		tm = reopen(&e, tm);
		T_TRUE(matches(tm, &com));
		s = com;
	}
	tm_close(tm);
	tenv_close(&e);
}
END_TEST

/* Cut after the new superblock was written, before the flush: either the
 * new or the old state, whole (a torn superblock fails its checksum). */
START_TEST(t_cut_in_commit)
{
	static struct state s, com;
	uint64_t seed = 500 + (uint64_t)_i, gen;
	struct fault_cut_policy pol = { .mode = FAULT_CUT_RANDOM, .seed = (uint64_t)_i * 31 };
	struct tenv e;
	struct tm *tm = fmt(&e, &s);
	int newer = 0, older = 0;

	for (int round = 0; round < 8; round++) {
		com = s;
		gen = tm_generation(tm);
		ops(tm, &s, &seed, 800);
		T_EQ(tm_pre_commit(tm), 0);
		T_EQ(tm_write_super(tm, false), 0);
		T_EQ(fault_unflushed_count(e.fd), 1);
		pol.seed++;
		T_EQ(fault_power_cut(e.fd, &pol), 0);
		T_EQ(fault_power_restore(e.fd), 0);
		tm = reopen(&e, tm);
		if (tm_generation(tm) == gen + 1) {
			T_TRUE(matches(tm, &s));
			newer++;
		} else {
			T_EQ(tm_generation(tm), gen);
			T_TRUE(matches(tm, &com));
			s = com;
			older++;
		}
	}
	T_EQ(newer + older, 8);
	tm_close(tm);
	tenv_close(&e);
}
END_TEST

/* Every choice for the superblock write: kept, dropped, torn in each way
 * a 4 KiB block of 512-byte sectors can tear at its ends. */
START_TEST(t_cut_super_torn)
{
	static struct state s, com;
	uint64_t seed = 9, gen;
	uint8_t map[1];
	struct fault_choice ch = { .action = FAULT_TEAR, .tear_map = map };
	struct fault_cut_policy pol = { .mode = FAULT_CUT_LIST, .choices = &ch, .nchoices = 1 };
	struct tenv e;
	struct tm *tm = fmt(&e, &s);
	int newer = 0, older = 0;

	for (unsigned m = 0; m < 256; m += 17) {
		com = s;
		gen = tm_generation(tm);
		ops(tm, &s, &seed, 100);
		T_EQ(tm_pre_commit(tm), 0);
		T_EQ(tm_write_super(tm, false), 0);
		map[0] = (uint8_t)m;
		T_EQ(fault_power_cut(e.fd, &pol), 0);
		T_EQ(fault_power_restore(e.fd), 0);
		tm = reopen(&e, tm);
		/* sectors that did not change make some tears harmless: the
		 * block is the new superblock or fails its checksum */
		if (tm_generation(tm) == gen + 1) {
			T_TRUE(m != 0);
			T_TRUE(matches(tm, &s));
			newer++;
		} else {
			ck_assert_msg(m != 255 && tm_generation(tm) == gen,
				      "tear map %#x: generation %llu", m,
				      (unsigned long long)tm_generation(tm));
			T_TRUE(matches(tm, &com));
			s = com;
			older++;
		}
	}
	ck_assert_int_gt(newer, 0);
	ck_assert_int_gt(older, 1);
	tm_close(tm);
	tenv_close(&e);
}
END_TEST

/* The newest superblock is corrupt: open falls back to the one before,
 * which is still whole right after a commit. */
START_TEST(t_super_corrupt)
{
	static struct state s, prev;
	static uint8_t buf[META_BLOCK_SIZE];
	uint64_t seed = 3, gen;
	struct tenv e;
	struct tm *tm = fmt(&e, &s);

	T_EQ(fault_record(e.fd, false), 0);
	ops(tm, &s, &seed, 2000);
	T_EQ(tm_commit(tm), 0);
	prev = s;
	ops(tm, &s, &seed, 2000);
	T_EQ(tm_commit(tm), 0);
	gen = tm_generation(tm);
	tm_close(tm);
	T_EQ(blk_sync_io(e.mem, BIO_READ, 0, (gen & 1) * META_BLOCK_SIZE, buf,
				     META_BLOCK_SIZE), 0);
	buf[700] ^= 1;
	T_EQ(blk_sync_io(e.mem, BIO_WRITE, 0, (gen & 1) * META_BLOCK_SIZE, buf,
				     META_BLOCK_SIZE), 0);
	T_EQ(tm_open(tenv_dev(&e), 128, &tm), 0);
	T_EQ(tm_generation(tm), gen - 1);
	T_TRUE(matches(tm, &prev));
	/* and it goes on from there */
	s = prev;
	ops(tm, &s, &seed, 500);
	T_EQ(tm_commit(tm), 0);
	T_EQ(tm_generation(tm), gen);
	tm = reopen(&e, tm);
	T_TRUE(matches(tm, &s));
	tm_close(tm);
	/* both gone: refused */
	memset(buf, 0, sizeof(buf));
	T_EQ(blk_sync_io(e.mem, BIO_WRITE, 0, 0, buf, META_BLOCK_SIZE), 0);
	T_EQ(blk_sync_io(e.mem, BIO_WRITE, 0, META_BLOCK_SIZE, buf,
				     META_BLOCK_SIZE), 0);
	T_EQ(tm_open(tenv_dev(&e), 128, &tm), -EUCLEAN);
	tenv_close(&e);
}
END_TEST

/* Writes fail in the middle of a commit: the commit fails, and a reopen
 * finds the previous commit. _i: how many writes pass first. */
START_TEST(t_commit_fails)
{
	static struct state s, com;
	uint64_t seed = 11;
	struct tenv e;
	struct tm *tm = fmt(&e, &s);

	T_EQ(fault_record(e.fd, false), 0);
	ops(tm, &s, &seed, 2000);
	T_EQ(tm_commit(tm), 0);
	com = s;
	ops(tm, &s, &seed, 2000);
	T_EQ(fault_fail_after(e.fd, (uint64_t)_i, FAULT_OP(BIO_WRITE) |
					  FAULT_OP(BIO_FLUSH), -EIO), 0);
	T_EQ(tm_commit(tm), -EIO);
	T_EQ(fault_clear(e.fd), 0);
	tm = reopen(&e, tm);
	T_TRUE(matches(tm, &com));
	tm_close(tm);
	tenv_close(&e);
}
END_TEST

static void add_tests(TCase *tc)
{
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, t_commit_reopen);
	tcase_add_loop_test(tc, t_cut_between, 0, 5);
	tcase_add_loop_test(tc, t_cut_in_commit, 0, 16);
	tcase_add_test(tc, t_cut_super_torn);
	tcase_add_test(tc, t_super_corrupt);
	tcase_add_loop_test(tc, t_commit_fails, 0, 4);
}

static Suite *tm_suite(void)
{
	Suite *s = suite_create("thin_tm");
	TCase *tc = tcase_create("tm");
	TCase *tcs = tcase_create("sel");

	add_tests(tc);
	suite_add_tcase(s, tc);
	/* the same with the select bits in select blocks */
	tcase_add_unchecked_fixture(tcs, sel_on, NULL);
	add_tests(tcs);
	suite_add_tcase(s, tcs);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(tm_suite());
	int nfail;

	srunner_run_all(sr, CK_NORMAL);
	nfail = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nfail ? EXIT_FAILURE : EXIT_SUCCESS;
}
