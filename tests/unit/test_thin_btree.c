/* SPDX-License-Identifier: MIT */
/*
 * Copy-on-write B-trees against a model: random insert/overwrite/remove/
 * lookup at scale across commits and reopens, range iteration, shared
 * roots (snapshots of snapshots, modified and deleted in any order) with
 * the reference counts of nodes and values checked to come back to zero.
 * Also prints rough op rates and metadata bytes per entry.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "sand/common.h"
#include "test_thin_util.h"

#define META_NBLOCKS	8192
#define KEYSPACE	300000u

static struct tm *fmt(struct tenv *e, unsigned cache)
{
	struct tm_geom g = { .meta_nblocks = META_NBLOCKS, .data_nentries = 1000,
			     .cache_blocks = cache };
	struct tm *tm;

	tenv_open(e, 64u << 20, 512, false);
	T_EQ(tm_format(tenv_dev(e), &g, &tm), 0);
	return tm;
}

static uint64_t key_of(uint64_t x)
{
	return x * 0x9e3779b97f4a7c15ull >> 3;	/* spread over the whole key space */
}

/* model: value + 1 per x (0: absent) */
struct model {
	uint64_t	*v;
	uint64_t	n;
};

struct walk {
	struct model	*m;
	uint64_t	seen;
	uint64_t	last;
	bool		first;
	uint64_t	stop_after;
};

static int walk_fn(void *arg, uint64_t key, const void *value)
{
	struct walk *w = arg;

	T_TRUE(w->first || key > w->last);
	w->first = false;
	w->last = key;
	w->seen++;
	if (w->m) {
		/* keys of the model are key_of(x) for x < KEYSPACE: find x by value */
		uint64_t v = get_le64(value);

		T_TRUE((v >> 32) < KEYSPACE);
		T_EQ(key_of(v >> 32), key);
		T_EQ(w->m->v[v >> 32], v + 1);
	}
	return w->stop_after && w->seen == w->stop_after ? 7 : 0;
}

/* value = x << 32 | version, so a walk can find the model entry */
static void verify(struct btree_info *bi, uint64_t root, struct model *m, bool lookups)
{
	struct walk w = { .m = m, .first = true };
	uint8_t v[8];

	T_EQ(btree_iterate(bi, root, 0, UINT64_MAX, walk_fn, &w), 0);
	T_EQ(w.seen, m->n);
	if (!lookups)
		return;
	for (uint64_t x = 0; x < KEYSPACE; x += 7) {
		int rc = btree_lookup(bi, root, key_of(x), v);

		if (m->v[x]) {
			T_EQ(rc, 0);
			T_EQ(get_le64(v) + 1, m->v[x]);
		} else {
			T_EQ(rc, -ENODATA);
		}
	}
}

static void random_ops(struct btree_info *bi, uint64_t *root, struct model *m,
		       uint64_t *seed, int nops)
{
	uint8_t v[8];

	for (int op = 0; op < nops; op++) {
		uint64_t r = rnd(seed), x = r % KEYSPACE;
		int rc;

		switch ((r >> 40) % 10) {
		case 0: case 1: case 2: case 3: case 4: case 5:
			put_le64(v, x << 32 | (r >> 50));
			T_EQ(btree_insert(bi, *root, key_of(x), v, root), 0);
			if (!m->v[x])
				m->n++;
			m->v[x] = (x << 32 | (r >> 50)) + 1;
			break;
		case 6: case 7: case 8:
			rc = btree_remove(bi, *root, key_of(x), root);
			if (m->v[x]) {
				T_EQ(rc, 0);
				m->v[x] = 0;
				m->n--;
			} else {
				T_EQ(rc, -ENODATA);
			}
			break;
		case 9:
			rc = btree_lookup(bi, *root, key_of(x), v);
			if (m->v[x]) {
				T_EQ(rc, 0);
				T_EQ(get_le64(v) + 1, m->v[x]);
			} else {
				T_EQ(rc, -ENODATA);
			}
			break;
		}
	}
}

/* 300k random operations over 300k possible keys; commit every 10k, reopen
 * every 30k, drop a transaction now and then; a cache of 192 blocks,
 * a third of the tree. */
START_TEST(t_random)
{
	struct model m = { .v = calloc(KEYSPACE, sizeof(uint64_t)) };
	struct model saved = { .v = calloc(KEYSPACE, sizeof(uint64_t)) };
	uint64_t seed = 0xabcdef12345ull, root, saved_root;
	struct tenv e;
	struct tm *tm = fmt(&e, 192);
	struct btree_info bi = { .tm = tm, .value_size = 8 };

	T_EQ(btree_empty(&bi, &root), 0);
	put_le64(tm_user(tm), root);
	T_EQ(tm_commit(tm), 0);
	saved_root = root;
	for (int round = 1; round <= 30; round++) {
		random_ops(&bi, &root, &m, &seed, 10000);
		verify(&bi, root, &m, round % 4 == 0);
		if (round % 5 == 4) {	/* drop this transaction */
			tm_close(tm);
			T_EQ(tm_open(tenv_dev(&e), 192, &tm), 0);
			bi.tm = tm;
			root = get_le64(tm_user(tm));
			T_EQ(root, saved_root);
			memcpy(m.v, saved.v, KEYSPACE * sizeof(uint64_t));
			m.n = saved.n;
			verify(&bi, root, &m, false);
			continue;
		}
		put_le64(tm_user(tm), root);
		T_EQ(tm_commit(tm), 0);
		saved_root = root;
		memcpy(saved.v, m.v, KEYSPACE * sizeof(uint64_t));
		saved.n = m.n;
		if (round % 3 == 0) {
			tm_close(tm);
			T_EQ(tm_open(tenv_dev(&e), 192, &tm), 0);
			bi.tm = tm;
			T_EQ(get_le64(tm_user(tm)), root);
			verify(&bi, root, &m, true);
		}
	}
	ck_assert_uint_gt(m.n, 100000);
	{
		/* ~700 nodes through a cache of 192 blocks: it stayed bounded */
		struct bm_stats st;

		bm_get_stats(tm_bm(tm), &st);
		ck_assert_uint_le(st.cached, 192);
		ck_assert_uint_le(st.max_cached, 192 + 16);
		ck_assert_uint_gt(st.evictions, 1000);
	}
	/* removing every key leaves a lone leaf */
	for (uint64_t x = 0; x < KEYSPACE; x++)
		if (m.v[x]) {
			T_EQ(btree_remove(&bi, root, key_of(x), &root), 0);
			m.v[x] = 0;
			m.n--;
		}
	verify(&bi, root, &m, false);
	T_EQ(tm_commit(tm), 0);
	{
		struct sm_root r;

		sm_get_root(tm_msm(tm), &r);
		T_EQ(r.nr_allocated, 1);
		T_EQ(btree_del(&bi, root), 0);
		sm_get_root(tm_msm(tm), &r);
		T_EQ(r.nr_allocated, 0);
	}
	tm_close(tm);
	tenv_close(&e);
	free(m.v);
	free(saved.v);
}
END_TEST

START_TEST(t_iterate)
{
	struct model m = { .v = calloc(KEYSPACE, sizeof(uint64_t)) };
	uint64_t seed = 99, root;
	struct tenv e;
	struct tm *tm = fmt(&e, 256);
	struct btree_info bi = { .tm = tm, .value_size = 8 };
	uint8_t v[8];

	T_EQ(btree_empty(&bi, &root), 0);
	/* dense keys 0..29999 step 3 */
	for (uint64_t k = 0; k < 30000; k += 3) {
		put_le64(v, k);
		T_EQ(btree_insert(&bi, root, k, v, &root), 0);
	}
	for (int t = 0; t < 200; t++) {
		uint64_t lo = rnd(&seed) % 31000, hi = lo + rnd(&seed) % 3000;
		struct walk w = { .first = true };
		uint64_t expect = 0;

		for (uint64_t k = lo; k <= hi; k++)
			expect += k % 3 == 0 && k < 30000;
		T_EQ(btree_iterate(&bi, root, lo, hi, walk_fn, &w), 0);
		T_EQ(w.seen, expect);
		if (expect) {
			ck_assert_uint_le(w.last, hi);
		}
	}
	{
		struct walk w = { .first = true, .stop_after = 10 };

		T_EQ(btree_iterate(&bi, root, 5, 100000, walk_fn, &w), 7);
		T_EQ(w.seen, 10);
		T_EQ(w.last, 33);
		w = (struct walk){ .first = true };
		T_EQ(btree_iterate(&bi, root, 10, 9, walk_fn, &w), 0);
		T_EQ(w.seen, 0);
	}
	tm_close(tm);
	tenv_close(&e);
	free(m.v);
}
END_TEST

/* ---- shared trees ---- */

#define NVAL	200000
struct vrefs {
	uint32_t	c[NVAL];
	uint32_t	next;
};

static int v_inc(void *ctx, const void *value)
{
	struct vrefs *r = ctx;

	r->c[get_le64(value) & 0xffffffff]++;
	return 0;
}

static int v_dec(void *ctx, const void *value)
{
	struct vrefs *r = ctx;
	uint64_t id = get_le64(value) & 0xffffffff;

	ck_assert_uint_gt(r->c[id], 0);
	r->c[id]--;
	return 0;
}

#define NTREES	6
#define SKEYS	8000u

struct stree {
	bool		live;
	uint64_t	root;
	uint32_t	val[SKEYS];	/* value id + 1 per key */
};

static void stree_ops(struct btree_info *bi, struct vrefs *vr, struct stree *t,
		      uint64_t *seed, int nops)
{
	uint8_t v[8];

	for (int op = 0; op < nops; op++) {
		uint64_t r = rnd(seed), k = r % SKEYS;

		if ((r >> 40) % 3) {
			uint32_t id = vr->next++;

			ck_assert_uint_lt(id, NVAL);
			vr->c[id] = 1;		/* the tree takes this reference */
			put_le64(v, k << 32 | id);
			T_EQ(btree_insert(bi, t->root, k, v, &t->root), 0);
			t->val[k] = id + 1;
		} else {
			int rc = btree_remove(bi, t->root, k, &t->root);

			T_EQ(rc, t->val[k] ? 0 : -ENODATA);
			t->val[k] = 0;
		}
	}
}

static int stree_fn(void *arg, uint64_t key, const void *value)
{
	struct stree *t = arg;

	T_TRUE(key < SKEYS);
	T_EQ(get_le64(value) >> 32, key);
	T_EQ((get_le64(value) & 0xffffffff) + 1, t->val[key]);
	return 0;
}

static void stree_verify(struct btree_info *bi, struct stree *t)
{
	T_EQ(btree_iterate(bi, t->root, 0, UINT64_MAX, stree_fn, t), 0);
	for (uint64_t k = 0; k < SKEYS; k += 97) {
		uint8_t v[8];

		T_EQ(btree_lookup(bi, t->root, k, v), t->val[k] ? 0 : -ENODATA);
	}
}

/* Snapshots of snapshots, each changed at random and deleted in a random
 * order: every tree keeps its own contents, and once all are gone, no node
 * and no value reference is left. */
START_TEST(t_shared)
{
	static struct stree trees[NTREES];
	static struct vrefs vr;
	uint64_t seed = 0x5eed + (uint64_t)_i;
	struct tenv e;
	struct tm *tm = fmt(&e, 128);
	struct btree_info bi = { .tm = tm, .value_size = 8, .ctx = &vr,
				 .inc = v_inc, .dec = v_dec };
	struct sm_root r;
	int n = 1;

	memset(trees, 0, sizeof(trees));
	memset(&vr, 0, sizeof(vr));
	trees[0].live = true;
	T_EQ(btree_empty(&bi, &trees[0].root), 0);
	stree_ops(&bi, &vr, &trees[0], &seed, 6000);
	T_EQ(tm_commit(tm), 0);
	for (; n < NTREES; n++) {
		int from = (int)(rnd(&seed) % (uint64_t)n);

		/* snapshot: share the root */
		trees[n] = trees[from];
		T_EQ(btree_share(&bi, trees[n].root), 0);
		/* both sides change */
		stree_ops(&bi, &vr, &trees[n], &seed, 1500);
		stree_ops(&bi, &vr, &trees[from], &seed, 500);
		for (int i = 0; i <= n; i++)
			stree_verify(&bi, &trees[i]);
		if (n % 2)
			T_EQ(tm_commit(tm), 0);
	}
	/* a value is referenced at most once per tree */
	for (uint32_t id = 0; id < vr.next; id++)
		T_TRUE(vr.c[id] <= NTREES);
	/* delete in random order; after each, the survivors are intact */
	for (int left = NTREES; left > 0; left--) {
		int i;

		do
			i = (int)(rnd(&seed) % NTREES);
		while (!trees[i].live);
		T_EQ(btree_del(&bi, trees[i].root), 0);
		trees[i].live = false;
		for (int j = 0; j < NTREES; j++)
			if (trees[j].live)
				stree_verify(&bi, &trees[j]);
	}
	sm_get_root(tm_msm(tm), &r);
	T_EQ(r.nr_allocated, 0);
	for (uint32_t id = 0; id < vr.next; id++)
		ck_assert_msg(vr.c[id] == 0, "value %u: %u references left", id, vr.c[id]);
	tm_close(tm);
	tenv_close(&e);
}
END_TEST

/* With a single tree left, every value it holds has exactly one reference. */
START_TEST(t_shared_exact)
{
	static struct stree a, b;
	static struct vrefs vr;
	uint64_t seed = 4242;
	struct tenv e;
	struct tm *tm = fmt(&e, 128);
	struct btree_info bi = { .tm = tm, .value_size = 8, .ctx = &vr,
				 .inc = v_inc, .dec = v_dec };
	uint32_t c;

	memset(&a, 0, sizeof(a));
	memset(&vr, 0, sizeof(vr));
	T_EQ(btree_empty(&bi, &a.root), 0);
	stree_ops(&bi, &vr, &a, &seed, 5000);
	b = a;
	T_EQ(btree_share(&bi, a.root), 0);
	T_EQ(tm_count(tm, a.root, &c), 0);
	T_EQ(c, 2);
	stree_ops(&bi, &vr, &b, &seed, 800);
	ck_assert_uint_ne(a.root, b.root);
	T_EQ(tm_count(tm, a.root, &c), 0);
	T_EQ(c, 1);
	stree_verify(&bi, &a);
	stree_verify(&bi, &b);
	T_EQ(btree_del(&bi, a.root), 0);
	stree_verify(&bi, &b);
	for (uint32_t id = 0; id < vr.next; id++) {
		bool held = false;

		for (uint64_t k = 0; k < SKEYS; k++)
			held |= b.val[k] == id + 1;
		ck_assert_msg(vr.c[id] == held, "value %u: %u refs, held %d", id, vr.c[id], held);
	}
	T_EQ(btree_del(&bi, b.root), 0);
	tm_close(tm);
	tenv_close(&e);
}
END_TEST

/* Rough figures (printed, not asserted beyond sanity). */
START_TEST(t_figures)
{
	struct tenv e;
	struct tm *tm = fmt(&e, 4096);
	struct btree_info bi = { .tm = tm, .value_size = 8 };
	uint64_t root, t0, n = 100000, seed = 7, bad = 0;
	struct sm_root r;
	uint8_t v[8];

	T_EQ(btree_empty(&bi, &root), 0);
	t0 = now_ns();
	for (uint64_t k = 0; k < n; k++) {
		put_le64(v, k);
		bad += btree_insert(&bi, root, k, v, &root) != 0;
	}
	T_EQ(bad, 0);
	printf("btree: sequential insert %.0f ops/s\n", n * 1e9 / (double)(now_ns() - t0));
	sm_get_root(tm_msm(tm), &r);
	printf("btree: %llu sequential keys in %llu blocks, %.1f metadata bytes per entry\n",
	       (unsigned long long)n, (unsigned long long)r.nr_allocated,
	       r.nr_allocated * 4096.0 / (double)n);
	T_EQ(tm_commit(tm), 0);
	t0 = now_ns();
	for (uint64_t i = 0; i < n; i++)
		bad += btree_lookup(&bi, root, rnd(&seed) % n, v) != 0;
	T_EQ(bad, 0);
	printf("btree: random lookup %.0f ops/s\n", n * 1e9 / (double)(now_ns() - t0));
	T_EQ(btree_del(&bi, root), 0);
	T_EQ(btree_empty(&bi, &root), 0);
	t0 = now_ns();
	for (uint64_t i = 0; i < n; i++) {
		put_le64(v, i);
		bad += btree_insert(&bi, root, rnd(&seed) >> 20, v, &root) != 0;
	}
	T_EQ(bad, 0);
	printf("btree: random insert %.0f ops/s\n", n * 1e9 / (double)(now_ns() - t0));
	sm_get_root(tm_msm(tm), &r);
	printf("btree: %llu random keys in %llu blocks, %.1f metadata bytes per entry\n",
	       (unsigned long long)n, (unsigned long long)r.nr_allocated,
	       r.nr_allocated * 4096.0 / (double)n);
	t0 = now_ns();
	T_EQ(tm_commit(tm), 0);
	printf("btree: commit of %llu blocks %.1f ms\n", (unsigned long long)r.nr_allocated,
	       (double)(now_ns() - t0) / 1e6);
	tm_close(tm);
	tenv_close(&e);
}
END_TEST

static Suite *btree_suite(void)
{
	Suite *s = suite_create("thin_btree");
	TCase *tc = tcase_create("btree");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, t_random);
	tcase_add_test(tc, t_iterate);
	tcase_add_loop_test(tc, t_shared, 0, 2);
	tcase_add_test(tc, t_shared_exact);
	tcase_add_test(tc, t_figures);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(btree_suite());
	int nfail;

	srunner_run_all(sr, CK_NORMAL);
	nfail = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nfail ? EXIT_FAILURE : EXIT_SUCCESS;
}
