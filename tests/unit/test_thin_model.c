/* SPDX-License-Identifier: MIT */
/*
 * Snapshot semantics against a model: random sequences of write, snapshot,
 * clone, rollback, delete (snapshots and volumes, recursive deletes in any
 * order), discard, write-zeroes, resize (grow, forced shrink), flush and
 * reopen over several volumes of
 * one pool on a memory device. After every step and every reopen, the pool's
 * volume list equals the model's, every volume reads back exactly its model
 * bytes, and thin_pool_check is clean.
 *
 * Seeded; a failure names the seed and step. THIN_MODEL_SEED=N runs that one
 * seed, THIN_MODEL_SEEDS=N that many seeds (default 6), THIN_MODEL_STEPS=N
 * steps each (default 400).
 *
 * Rollback is what the daemon's vol.rollback does with this API: delete the
 * volume and clone the snapshot under its name.
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "sand/thin.h"
#include "test_thin_io.h"

#define CHUNK		(64u * 1024)
#define VOLSZ		(512u * 1024)	/* 8 chunks: the size at creation */
#define VMAX		(1024u * 1024)	/* the largest a resize makes it */
#define SLOTS		10

struct mvol {
	bool		live, ro;
	uint64_t	size;
	char		name[THIN_NAME_MAX];
	struct blkdev	*bd;
	uint8_t		*m;
};

static struct mvol mv[SLOTS];
static char ctx[128];		/* seed, step and operation, for failures */

#define M_EQ(a, b) do { \
		long long _a = (long long)(a), _b = (long long)(b); \
		if (_a != _b) \
			ck_abort_msg("%s: %s:%d: %s == %lld, %s == %lld", ctx, __FILE__, \
				     __LINE__, #a, _a, #b, _b); \
	} while (0)

/* Append to ctx. */
static void __attribute__((format(printf, 1, 2))) note(const char *fmt, ...)
{
	size_t l = strlen(ctx);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ctx + l, sizeof(ctx) - l, fmt, ap);
	va_end(ap);
}

static struct thin_open_opts oo = { .cache_blocks = 24, .commit_ms = 600000 };

static int find(const char *name)
{
	for (int i = 0; i < SLOTS; i++)
		if (mv[i].live && !strcmp(mv[i].name, name))
			return i;
	return -1;
}

static int free_slot(void)
{
	for (int i = 0; i < SLOTS; i++)
		if (!mv[i].live)
			return i;
	return -1;
}

/* A random live slot matching want (0 any, 1 writable, 2 snapshot). */
static int pick(uint64_t r, int want)
{
	int cand[SLOTS], n = 0;

	for (int i = 0; i < SLOTS; i++)
		if (mv[i].live && (want == 0 || (want == 1) == !mv[i].ro))
			cand[n++] = i;
	return n ? cand[r % (uint64_t)n] : -1;
}

static void add(struct thin_pool *p, int s, const char *name, bool ro, const struct mvol *from)
{
	mv[s].live = true;
	mv[s].ro = ro;
	mv[s].size = from ? from->size : VOLSZ;
	snprintf(mv[s].name, sizeof(mv[s].name), "%s", name);
	mv[s].m = calloc(1, VMAX);	/* zeros past the size, always */
	T_TRUE(mv[s].m);
	if (from)
		memcpy(mv[s].m, from->m, VMAX);
	M_EQ(thin_vol_open(p, name, &mv[s].bd), 0);
}

static void drop(struct thin_pool *p, int s)
{
	M_EQ(tio_close(mv[s].bd), 0);
	M_EQ(thin_vol_delete(p, mv[s].name), 0);
	free(mv[s].m);
	memset(&mv[s], 0, sizeof(mv[s]));
}

/* A random range inside size: sector aligned, sometimes whole chunks. */
static void range(uint64_t *seed, uint64_t size, uint64_t *off, uint64_t *len)
{
	uint64_t r = rnd(seed);

	if (r % 3 == 0 && size >= CHUNK) {
		*len = CHUNK * (1 + (r >> 8) % MIN(3, size / CHUNK));
		*off = CHUNK * ((r >> 16) % (size / CHUNK - *len / CHUNK + 1));
	} else {
		*len = 512 * (1 + (r >> 8) % MIN(2 * CHUNK / 512, size / 512));
		*off = 512 * ((r >> 32) % ((size - *len) / 512 + 1));
	}
}

static void verify(struct thin_pool *p)
{
	static uint8_t buf[VMAX];
	char (*names)[THIN_NAME_MAX];
	struct thin_check_report rep;
	struct thin_vol_info vi;
	unsigned n, live = 0;
	int rc;

	M_EQ(thin_vol_list(p, &names, &n), 0);
	for (unsigned i = 0; i < n; i++)
		if (find(names[i]) < 0)
			ck_abort_msg("%s: the pool has '%s', the model not", ctx, names[i]);
	free(names);
	for (int i = 0; i < SLOTS; i++) {
		if (!mv[i].live)
			continue;
		live++;
		M_EQ(thin_vol_info(p, mv[i].name, &vi), 0);
		M_EQ(vi.readonly, mv[i].ro);
		M_EQ(vi.size, mv[i].size);
		M_EQ(mv[i].bd->size, mv[i].size);
		M_EQ(tio(mv[i].bd, BIO_READ, 0, 0, buf, mv[i].size), 0);
		for (uint64_t off = 0; off < mv[i].size; off += 512)
			if (memcmp(buf + off, mv[i].m + off, 512))
				ck_abort_msg("%s: %s differs from the model at byte %llu", ctx,
					     mv[i].name, (unsigned long long)off);
	}
	M_EQ(n, live);
	rc = thin_pool_check(p, &rep);
	M_EQ(rc, 0);
	M_EQ(rep.errors, 0);
	M_EQ(rep.volumes, live);
}

static void reopen(struct thin_pool **p, struct blkdev *dev)
{
	for (int i = 0; i < SLOTS; i++)
		if (mv[i].live)
			M_EQ(tio_close(mv[i].bd), 0);
	M_EQ(thin_pool_close(*p), 0);
	M_EQ(thin_pool_open(dev, &oo, p), 0);
	for (int i = 0; i < SLOTS; i++)
		if (mv[i].live)
			M_EQ(thin_vol_open(*p, mv[i].name, &mv[i].bd), 0);
}

struct counts {
	unsigned	writes, snaps, clones, rollbacks, deletes, recursive, discards, zeroes,
			flushes, reopens, creates, rofs, resizes;
};

static void step(struct thin_pool **pp, struct blkdev *dev, uint64_t *seed, unsigned *nid,
		 struct counts *k)
{
	static uint8_t buf[3 * CHUNK];
	struct thin_pool *p = *pp;
	uint64_t r = rnd(seed), off, len;
	char name[THIN_NAME_MAX];
	int s, d;
	unsigned op = (unsigned)(r % 100);

	if (pick(0, 0) < 0)
		op = 99;			/* nothing live: create */
	if (op < 38) {				/* write, sometimes FUA */
		s = pick(r >> 8, 1);
		if (s < 0)
			goto create;
		range(seed, mv[s].size, &off, &len);
		note(" write %s", mv[s].name);
		for (uint64_t j = 0; j < len; j += 8)
			put_le64(buf + j, r ^ (off + j) << 1);
		M_EQ(tio(mv[s].bd, BIO_WRITE, (r >> 40) % 8 ? 0 : BIO_FUA, off, buf, len), 0);
		memcpy(mv[s].m + off, buf, len);
		k->writes++;
	} else if (op < 42) {			/* a write to a snapshot fails */
		s = pick(r >> 8, 2);
		if (s < 0)
			return;
		memset(buf, 0x5a, 512);
		M_EQ(tio(mv[s].bd, BIO_WRITE, 0, 0, buf, 512) < 0, 1);
		k->rofs++;
	} else if (op < 50) {			/* snapshot a volume */
		s = pick(r >> 8, 1);
		d = free_slot();
		if (s < 0 || d < 0)
			return;
		snprintf(name, sizeof(name), "%s@s%u", mv[s].name, (*nid)++);
		note(" snapshot %s", name);
		M_EQ(thin_snap_create(p, mv[s].name, name), 0);
		add(p, d, name, true, &mv[s]);
		k->snaps++;
	} else if (op < 56) {			/* clone a volume or a snapshot */
		s = pick(r >> 8, 0);
		d = free_slot();
		if (s < 0 || d < 0)
			return;
		snprintf(name, sizeof(name), "c%u", (*nid)++);
		note(" clone %s %s", mv[s].name, name);
		M_EQ(thin_clone_create(p, mv[s].name, name), 0);
		add(p, d, name, false, &mv[s]);
		k->clones++;
	} else if (op < 62) {			/* rollback VOL@SNAP */
		const char *at;

		s = pick(r >> 8, 2);
		if (s < 0)
			return;
		at = strchr(mv[s].name, '@');
		snprintf(name, sizeof(name), "%.*s", (int)(at - mv[s].name), mv[s].name);
		d = find(name);
		if (d < 0)
			return;			/* its volume was deleted */
		note(" rollback %s", mv[s].name);
		M_EQ(tio_close(mv[d].bd), 0);
		M_EQ(thin_vol_delete(p, name), 0);
		M_EQ(thin_clone_create(p, mv[s].name, name), 0);
		M_EQ(thin_vol_open(p, name, &mv[d].bd), 0);
		memcpy(mv[d].m, mv[s].m, VMAX);
		mv[d].size = mv[s].size;
		k->rollbacks++;
	} else if (op < 70) {			/* delete; a volume with snapshots: recursive */
		int set[SLOTS], n = 0;
		size_t l;

		s = pick(r >> 8, 0);
		note(" delete %s", mv[s].name);
		set[n++] = s;
		l = strlen(mv[s].name);
		if (!mv[s].ro)
			for (int i = 0; i < SLOTS; i++)
				if (mv[i].live && !strncmp(mv[i].name, mv[s].name, l) &&
				    mv[i].name[l] == '@')
					set[n++] = i;
		k->recursive += n > 1;
		/* in a random order: snapshots and origins are independent */
		for (int i = n; i > 1; i--) {
			int j = (int)(rnd(seed) % (uint64_t)i), t = set[i - 1];

			set[i - 1] = set[j];
			set[j] = t;
		}
		for (int i = 0; i < n; i++)
			drop(p, set[i]);
		k->deletes++;
	} else if (op < 86) {	/* discard or write-zeroes */
		bool wz = op >= 78;
		uint32_t fl = wz && (r >> 50) % 2 ? BIO_NOUNMAP : 0;

		s = pick(r >> 8, 1);
		if (s < 0)
			return;
		range(seed, mv[s].size, &off, &len);
		note(" %s %s", wz ? "zeroes" : "discard", mv[s].name);
		M_EQ(tio(mv[s].bd, wz ? BIO_WRITE_ZEROES : BIO_DISCARD, fl, off, NULL, len), 0);
		memset(mv[s].m + off, 0, len);
		if (wz)
			k->zeroes++;
		else
			k->discards++;
	} else if (op < 89) {			/* resize: grow, or shrink (forced) */
		uint64_t size = 512 * (1 + (r >> 8) % (VMAX / 512));

		s = pick(r >> 40, (r >> 50) % 4 ? 1 : 2);
		if (s < 0)
			return;
		if (mv[s].ro) {			/* a snapshot keeps its size */
			M_EQ(thin_vol_resize(p, mv[s].name, size, true), -EROFS);
			k->rofs++;
			return;
		}
		if ((r >> 60) % 2)
			size = size / CHUNK * CHUNK + CHUNK;	/* whole chunks, sometimes */
		size = MIN(size, VMAX);
		note(" resize %s %llu -> %llu", mv[s].name, (unsigned long long)mv[s].size,
		     (unsigned long long)size);
		if (size < mv[s].size)
			M_EQ(thin_vol_resize(p, mv[s].name, size, false), -EPERM);
		M_EQ(thin_vol_resize(p, mv[s].name, size, true), 0);
		/* past the end is gone: a later grow reads zeros there */
		if (size < mv[s].size)
			memset(mv[s].m + size, 0, mv[s].size - size);
		mv[s].size = size;
		k->resizes++;
	} else if (op < 92) {			/* flush */
		s = pick(r >> 8, 0);
		M_EQ(tio(mv[s].bd, BIO_FLUSH, 0, 0, NULL, 0), 0);
		k->flushes++;
	} else if (op < 95) {			/* close everything and reopen */
		note(" reopen");
		reopen(pp, dev);
		k->reopens++;
	} else {
create:
		d = free_slot();
		if (d < 0)
			return;
		snprintf(name, sizeof(name), "v%u", (*nid)++);
		note(" create %s", name);
		M_EQ(thin_vol_create(p, name, VOLSZ), 0);
		add(p, d, name, false, NULL);
		k->creates++;
	}
}

static void run_seed(uint64_t seed0, unsigned steps)
{
	struct thin_format_opts fo = { .chunk_size = CHUNK };
	struct blkdev *mem;
	struct thin_pool *p;
	struct counts k = { 0 };
	uint64_t seed = seed0;
	unsigned nid = 0;

	memset(mv, 0, sizeof(mv));
	snprintf(ctx, sizeof(ctx), "seed %llu", (unsigned long long)seed0);
	T_EQ(blk_mem_create("model", 16u << 20, 512, &mem), 0);
	T_EQ(thin_pool_format(mem, &fo), 0);
	T_EQ(thin_pool_open(mem, &oo, &p), 0);
	for (unsigned i = 0; i < steps; i++) {
		snprintf(ctx, sizeof(ctx), "seed %llu step %u:", (unsigned long long)seed0, i);
		step(&p, mem, &seed, &nid, &k);
		verify(p);
	}
	snprintf(ctx, sizeof(ctx), "seed %llu end", (unsigned long long)seed0);
	reopen(&p, mem);
	verify(p);
	for (int i = 0; i < SLOTS; i++)
		if (mv[i].live)
			drop(p, i);
	verify(p);
	{
		struct thin_pool_info pi;

		M_EQ(thin_pool_info(p, &pi), 0);
		M_EQ(pi.volumes, 0);
		M_EQ(pi.free_chunks, pi.data_chunks);	/* every chunk came back */
	}
	M_EQ(thin_pool_close(p), 0);
	T_EQ(blkdev_close(mem), 0);
	tio_done();
	printf("thin model: seed %llu, %u steps: %u writes, %u snapshots, %u clones, "
	       "%u rollbacks, %u deletes (%u recursive), %u discards, %u write-zeroes, "
	       "%u resizes, %u flushes, %u reopens, %u creates, %u read-only refusals\n",
	       (unsigned long long)seed0, steps, k.writes, k.snaps, k.clones, k.rollbacks,
	       k.deletes, k.recursive, k.discards, k.zeroes, k.resizes, k.flushes, k.reopens,
	       k.creates, k.rofs);
	/* the sequence did what it claims to test */
	if (steps >= 200) {
		ck_assert_uint_gt(k.snaps, 0);
		ck_assert_uint_gt(k.clones, 0);
		ck_assert_uint_gt(k.rollbacks, 0);
		ck_assert_uint_gt(k.recursive, 0);
		ck_assert_uint_gt(k.reopens, 0);
		ck_assert_uint_gt(k.zeroes, 0);
		ck_assert_uint_gt(k.discards, 0);
		ck_assert_uint_gt(k.resizes, 0);
	}
}

START_TEST(t_model)
{
	uint64_t one = env_u64("THIN_MODEL_SEED", 0);
	unsigned steps = (unsigned)env_u64("THIN_MODEL_STEPS", 400);

	if (one) {
		if (_i == 0)
			run_seed(one, steps);
		return;
	}
	run_seed(1000 + (uint64_t)_i * 7919, steps);
}
END_TEST

static Suite *model_suite(void)
{
	Suite *s = suite_create("thin_model");
	TCase *tc = tcase_create("model");
	int seeds = (int)env_u64("THIN_MODEL_SEEDS", 6);

	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, t_model, 0, env_u64("THIN_MODEL_SEED", 0) ? 1 : seeds);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(model_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
