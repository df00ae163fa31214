/* SPDX-License-Identifier: MIT */
/*
 * Block status (sand/blkdev.h) against models: memory devices report their
 * unwritten pages as holes; devices without the op report everything
 * allocated; thin volumes report unmapped chunks as holes after writes,
 * discards and snapshots, and the chunks changed since each of their
 * snapshots, with short extent arrays and unaligned ranges, in trees of
 * several levels and across the changed query's windows.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/thin.h"
#include "test_thin_util.h"

#define CHUNK		(64u * 1024)
#define BS		4096u
#define VOLSZ		(64ull * CHUNK)
#define NBLK		(VOLSZ / BS)

static struct thin_open_opts oo = { .cache_blocks = 64, .commit_ms = 600000 };

/* flags per 4 KiB block of [0, size) from repeated queries of at most
 * max_ext extents over [off, off+len) */
static int map_of(struct blkdev *bd, enum blk_status_mode mode, const char *base,
		  uint64_t off, uint64_t len, unsigned max_ext, uint32_t *flags)
{
	struct blk_extent ext[16];
	uint64_t pos = off;

	ck_assert_uint_le(max_ext, ARRAY_SIZE(ext));
	while (pos < off + len) {
		struct blk_status st = { .mode = mode, .base = base, .offset = pos,
					 .len = off + len - pos, .ext = ext, .max_ext = max_ext };
		int rc = blk_sync_block_status(bd, &st);

		if (rc)
			return rc;
		T_TRUE(st.next >= 1 && st.next <= max_ext);
		for (unsigned i = 0; i < st.next; i++) {
			T_TRUE(ext[i].len > 0);
			if (i)
				T_TRUE(ext[i].flags != ext[i - 1].flags);
			for (uint64_t b = pos / BS; b < (pos + ext[i].len) / BS; b++)
				flags[b] = ext[i].flags;
			pos += ext[i].len;
			T_TRUE(pos <= off + len);
		}
	}
	return 0;
}

START_TEST(t_mem)
{
	struct blkdev *m, *n;
	uint32_t f[256];
	uint8_t *buf = calloc(1, BS);

	ck_assert_int_eq(blk_mem_create("m", 256 * BS, 512, &m), 0);
	ck_assert_int_eq(map_of(m, BLK_STATUS_ALLOC, NULL, 0, 256 * BS, 4, f), 0);
	for (int i = 0; i < 256; i++)
		T_EQ(f[i], BLK_EXT_HOLE | BLK_EXT_ZERO);
	/* 64 KiB pages: block 20 allocates blocks 16..31 */
	ck_assert_int_eq(blk_sync_io(m, BIO_WRITE, 0, 20 * BS, buf, BS), 0);
	ck_assert_int_eq(map_of(m, BLK_STATUS_ALLOC, NULL, 0, 256 * BS, 2, f), 0);
	for (int i = 0; i < 256; i++)
		T_EQ(f[i], i >= 16 && i < 32 ? 0 : BLK_EXT_HOLE | BLK_EXT_ZERO);
	/* a range inside the page */
	ck_assert_int_eq(map_of(m, BLK_STATUS_ALLOC, NULL, 17 * BS, 3 * BS, 1, f), 0);
	for (int i = 17; i < 20; i++)
		T_EQ(f[i], 0);
	ck_assert_int_eq(blk_sync_io(m, BIO_DISCARD, 0, 16 * BS, NULL, 16 * BS), 0);
	ck_assert_int_eq(map_of(m, BLK_STATUS_ALLOC, NULL, 0, 256 * BS, 4, f), 0);
	for (int i = 0; i < 256; i++)
		T_EQ(f[i], BLK_EXT_HOLE | BLK_EXT_ZERO);
	/* no changed-since query on a memory device */
	ck_assert_int_eq(map_of(m, BLK_STATUS_CHANGED, "s", 0, BS, 4, f), -EOPNOTSUPP);
	ck_assert_int_eq(blkdev_status_base(m, "s"), -EOPNOTSUPP);
	ck_assert_int_eq(blkdev_status_bases(m, NULL, NULL), -EOPNOTSUPP);
	/* bad ranges */
	ck_assert_int_eq(map_of(m, BLK_STATUS_ALLOC, NULL, 100, BS, 4, f), -EINVAL);
	ck_assert_int_eq(map_of(m, BLK_STATUS_ALLOC, NULL, 255 * BS, 2 * BS, 4, f), -ERANGE);
	ck_assert_int_eq(blkdev_close(m), 0);

	/* the null device has no block_status: all allocated, one extent */
	ck_assert_int_eq(blk_null_create("n", 256 * BS, 512, &n), 0);
	ck_assert_int_eq(map_of(n, BLK_STATUS_ALLOC, NULL, BS, 100 * BS, 1, f), 0);
	for (int i = 1; i < 101; i++)
		T_EQ(f[i], 0);
	ck_assert_int_eq(blkdev_close(n), 0);
	free(buf);
}
END_TEST

/* ---- thin volumes against a model ---- */

/* Per chunk: 0 unmapped, else an identity (the same one while the data
 * stays in the same physical chunk); gen: the snapshot generation of the
 * volume when that chunk was allocated. */
struct tmodel {
	uint64_t	id[64];
	unsigned	gen[64];
	unsigned	cur_gen;
	uint64_t	next_id;
};

static void model_write(struct tmodel *m, uint64_t c)
{
	if (!m->id[c] || m->gen[c] != m->cur_gen) {
		m->id[c] = ++m->next_id;
		m->gen[c] = m->cur_gen;
	}
}

static void model_op(struct tmodel *m, enum bio_op op, uint64_t off, uint64_t len)
{
	for (uint64_t c = off / CHUNK; c <= (off + len - 1) / CHUNK; c++) {
		uint64_t cs = c * CHUNK, s = MAX(cs, off), e = MIN(cs + CHUNK, off + len);
		bool whole = s == cs && e == cs + CHUNK;

		if (op == BIO_WRITE)
			model_write(m, c);
		else if (whole)
			m->id[c] = 0;
		else if (m->id[c])
			model_write(m, c);	/* partial: zeros written into it */
	}
}

static void check_alloc(struct blkdev *v, const struct tmodel *m, uint64_t *seed)
{
	static uint32_t f[NBLK];
	uint64_t off, len;

	ck_assert_int_eq(map_of(v, BLK_STATUS_ALLOC, NULL, 0, VOLSZ, 16, f), 0);
	for (uint64_t b = 0; b < NBLK; b++)
		T_EQ(f[b], m->id[b * BS / CHUNK] ? 0 : BLK_EXT_HOLE | BLK_EXT_ZERO);
	/* an unaligned sub-range, few extents at a time */
	off = rnd(seed) % NBLK * BS;
	len = (1 + rnd(seed) % (NBLK - off / BS)) * BS;
	memset(f, 0xff, sizeof(f));
	ck_assert_int_eq(map_of(v, BLK_STATUS_ALLOC, NULL, off, len, 1 + rnd(seed) % 3, f), 0);
	for (uint64_t b = off / BS; b < (off + len) / BS; b++)
		T_EQ(f[b], m->id[b * BS / CHUNK] ? 0 : BLK_EXT_HOLE | BLK_EXT_ZERO);
}

static void check_changed(struct blkdev *v, const char *base, const struct tmodel *now,
			  const struct tmodel *snap, uint64_t *seed)
{
	static uint32_t f[NBLK];
	uint64_t off, len;

	ck_assert_int_eq(map_of(v, BLK_STATUS_CHANGED, base, 0, VOLSZ, 16, f), 0);
	for (uint64_t b = 0; b < NBLK; b++) {
		uint64_t c = b * BS / CHUNK;

		T_EQ(f[b], now->id[c] != snap->id[c] ? BLK_EXT_CHANGED : 0);
	}
	off = rnd(seed) % NBLK * BS;
	len = (1 + rnd(seed) % (NBLK - off / BS)) * BS;
	ck_assert_int_eq(map_of(v, BLK_STATUS_CHANGED, base, off, len, 1 + rnd(seed) % 3, f), 0);
	for (uint64_t b = off / BS; b < (off + len) / BS; b++) {
		uint64_t c = b * BS / CHUNK;

		T_EQ(f[b], now->id[c] != snap->id[c] ? BLK_EXT_CHANGED : 0);
	}
}

static void collect_base(void *arg, const char *base)
{
	char *s = arg;

	strcat(s, " ");
	strcat(s, base);
}

static void pool_up(struct tenv *e, uint64_t size, struct thin_pool **p)
{
	struct thin_format_opts fo = { .chunk_size = CHUNK };

	tenv_open(e, size, 512, false);
	ck_assert_int_eq(thin_pool_format(tenv_dev(e), &fo), 0);
	ck_assert_int_eq(thin_pool_open(tenv_dev(e), &oo, p), 0);
}

static void random_ops(struct blkdev *v, struct tmodel *m, uint64_t *seed, int n, uint8_t *buf)
{
	for (int i = 0; i < n; i++) {
		uint64_t off = rnd(seed) % (VOLSZ / 512) * 512;
		uint64_t len = (1 + rnd(seed) % (3 * CHUNK / 512)) * 512;
		enum bio_op op;

		len = MIN(len, VOLSZ - off);
		switch (rnd(seed) % 4) {
		case 0:
			op = BIO_DISCARD;
			break;
		case 1:
			op = BIO_WRITE_ZEROES;
			break;
		default:
			op = BIO_WRITE;
		}
		if (op == BIO_DISCARD && rnd(seed) % 2) {	/* whole chunks */
			off = off / CHUNK * CHUNK;
			len = MIN(VOLSZ - off, (1 + rnd(seed) % 3) * (uint64_t)CHUNK);
		}
		memset(buf, (int)(i & 0xff), len);
		ck_assert_int_eq(blk_sync_io(v, op, 0, off, op == BIO_WRITE ? buf : NULL, len), 0);
		model_op(m, op, off, len);
	}
}

START_TEST(t_thin_model)
{
	struct tenv e;
	struct thin_pool *p;
	struct blkdev *v;
	struct tmodel m = { 0 }, s1, s2;
	uint64_t seed = 0x1234567ull + (uint64_t)_i * 7919;
	uint8_t *buf = malloc(3 * CHUNK);

	pool_up(&e, 64ull << 20, &p);
	ck_assert_int_eq(thin_vol_create(p, "v", VOLSZ), 0);
	ck_assert_int_eq(thin_vol_open(p, "v", &v), 0);
	check_alloc(v, &m, &seed);
	random_ops(v, &m, &seed, 40, buf);
	check_alloc(v, &m, &seed);

	ck_assert_int_eq(blkdev_status_base(v, "s1"), -ENOENT);
	ck_assert_int_eq(map_of(v, BLK_STATUS_CHANGED, "s1", 0, VOLSZ, 4, (uint32_t[NBLK]){ 0 }),
			 -ENOENT);
	ck_assert_int_eq(thin_snap_create(p, "v", "v@s1"), 0);
	ck_assert_int_eq(blkdev_status_base(v, "s1"), 0);
	s1 = m;
	m.cur_gen++;
	check_changed(v, "s1", &m, &s1, &seed);		/* nothing yet */
	random_ops(v, &m, &seed, 30, buf);
	check_alloc(v, &m, &seed);
	check_changed(v, "s1", &m, &s1, &seed);

	ck_assert_int_eq(thin_snap_create(p, "v", "v@s2"), 0);
	s2 = m;
	m.cur_gen++;
	/* another volume's snapshot moves the pool's time, not v's */
	ck_assert_int_eq(thin_vol_create(p, "w", VOLSZ), 0);
	ck_assert_int_eq(thin_snap_create(p, "w", "w@x"), 0);
	ck_assert_int_eq(blkdev_status_base(v, "x"), -ENOENT);
	random_ops(v, &m, &seed, 30, buf);
	check_alloc(v, &m, &seed);
	check_changed(v, "s1", &m, &s1, &seed);
	check_changed(v, "s2", &m, &s2, &seed);

	/* the bases each device can be compared with */
	{
		char got[64] = "";
		struct blkdev *w;

		ck_assert_int_eq(blkdev_status_bases(v, collect_base, got), 0);
		ck_assert_str_eq(got, " s1 s2");
		ck_assert_int_eq(thin_vol_open(p, "w", &w), 0);
		got[0] = '\0';
		ck_assert_int_eq(blkdev_status_bases(w, collect_base, got), 0);
		ck_assert_str_eq(got, " x");
		ck_assert_int_eq(blkdev_close(w), 0);
		ck_assert_int_eq(thin_vol_open(p, "v@s1", &w), 0);
		got[0] = '\0';
		ck_assert_int_eq(blkdev_status_bases(w, collect_base, got), 0);
		ck_assert_str_eq(got, " s2");	/* its sibling, not itself */
		ck_assert_int_eq(blkdev_close(w), 0);
	}

	/* the snapshot's own map; it has no snapshots of its own */
	{
		struct blkdev *sv;
		uint32_t f[NBLK];

		ck_assert_int_eq(thin_vol_open(p, "v@s1", &sv), 0);
		ck_assert_int_eq(map_of(sv, BLK_STATUS_ALLOC, NULL, 0, VOLSZ, 16, f), 0);
		for (uint64_t b = 0; b < NBLK; b++)
			T_EQ(f[b], s1.id[b * BS / CHUNK] ? 0 : BLK_EXT_HOLE | BLK_EXT_ZERO);
		ck_assert_int_eq(blkdev_status_base(sv, "s1"), -ENOENT);	/* itself */
		ck_assert_int_eq(blkdev_close(sv), 0);
		/* a snapshot against its sibling: what changed between them */
		ck_assert_int_eq(thin_vol_open(p, "v@s2", &sv), 0);
		ck_assert_int_eq(blkdev_status_base(sv, "s1"), 0);
		check_changed(sv, "s1", &s2, &s1, &seed);
		ck_assert_int_eq(blkdev_close(sv), 0);
	}
	ck_assert_int_eq(blkdev_close(v), 0);
	ck_assert_int_eq(thin_pool_check(p, &(struct thin_check_report){ 0 }), 0);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
	free(buf);
}
END_TEST

/* A volume whose tree has several levels: the changed map is still exact
 * (and shared leaves are not entered, which only shows in the time). */
START_TEST(t_thin_big_tree)
{
	struct tenv e;
	struct thin_pool *p;
	struct blkdev *v;
	const uint64_t nch = 1024, volsz = nch * CHUNK;
	const uint64_t changed[] = { 3, 250, 251, 700, 1022 };
	uint8_t buf[512] = { 1 };
	struct blk_extent ext[16];
	struct blk_status st = { .mode = BLK_STATUS_CHANGED, .base = "s", .offset = 0,
				 .len = volsz, .ext = ext, .max_ext = ARRAY_SIZE(ext) };
	uint64_t pos = 0;
	unsigned k = 0;

	pool_up(&e, 80ull << 20, &p);
	ck_assert_int_eq(thin_vol_create(p, "v", volsz), 0);
	ck_assert_int_eq(thin_vol_open(p, "v", &v), 0);
	for (uint64_t c = 0; c < nch; c += 2)	/* 512 mappings: 3 leaves at least */
		ck_assert_int_eq(blk_sync_io(v, BIO_WRITE, 0, c * CHUNK, buf, sizeof(buf)), 0);
	ck_assert_int_eq(thin_snap_create(p, "v", "v@s"), 0);
	ck_assert_int_eq(blk_sync_io(v, BIO_WRITE, 0, 3 * CHUNK + 512, buf, sizeof(buf)), 0);
	ck_assert_int_eq(blk_sync_io(v, BIO_WRITE, 0, 250 * CHUNK, buf, sizeof(buf)), 0);
	ck_assert_int_eq(blk_sync_io(v, BIO_WRITE, 0, 251 * CHUNK, buf, sizeof(buf)), 0);
	ck_assert_int_eq(blk_sync_io(v, BIO_DISCARD, 0, 700 * CHUNK, NULL, CHUNK), 0);
	ck_assert_int_eq(blk_sync_io(v, BIO_DISCARD, 0, 701 * CHUNK, NULL, CHUNK), 0); /* hole both */
	ck_assert_int_eq(blk_sync_io(v, BIO_WRITE_ZEROES, 0, 1022 * CHUNK, NULL, 4096), 0);
	ck_assert_int_eq(blk_sync_block_status(v, &st), 0);
	for (unsigned i = 0; i < st.next; i++) {
		if (ext[i].flags & BLK_EXT_CHANGED) {
			for (uint64_t c = pos / CHUNK; c < (pos + ext[i].len) / CHUNK; c++) {
				ck_assert_uint_lt(k, ARRAY_SIZE(changed));
				ck_assert_uint_eq(c, changed[k++]);
			}
		}
		pos += ext[i].len;
	}
	ck_assert_uint_eq(pos, volsz);
	ck_assert_uint_eq(k, ARRAY_SIZE(changed));
	ck_assert_int_eq(blkdev_close(v), 0);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
}
END_TEST

/* A volume of 40000 chunks, mapped sparsely across the changed query's
 * windows (1024 chunks, doubling): changes on both sides of window edges
 * (of a query from 0: 1023/1024, 3071/3072, 7167/7168, 15359/15360,
 * 31743/31744), found whether the extents run out early (and the query is
 * asked again from there) or not. */
START_TEST(t_thin_windows)
{
	struct tenv e;
	struct thin_pool *p;
	struct blkdev *v;
	const uint64_t nch = 40000, volsz = nch * CHUNK;
	const uint64_t changed[] = { 0, 1023, 1024, 3071, 3072, 7167, 7168, 15359, 15360,
				     16384, 20000, 31743, 31744, 39999 };
	uint8_t buf[512] = { 7 };
	struct blk_extent ext[4];
	uint64_t pos, got[32];
	unsigned k;

	pool_up(&e, 96ull << 20, &p);
	ck_assert_int_eq(thin_vol_create(p, "v", volsz), 0);
	ck_assert_int_eq(thin_vol_open(p, "v", &v), 0);
	for (uint64_t c = 0; c < nch; c += 61)	/* 656 mappings */
		ck_assert_int_eq(blk_sync_io(v, BIO_WRITE, 0, c * CHUNK, buf, sizeof(buf)), 0);
	ck_assert_int_eq(thin_snap_create(p, "v", "v@s"), 0);
	for (unsigned i = 0; i < ARRAY_SIZE(changed); i++)
		ck_assert_int_eq(blk_sync_io(v, BIO_WRITE, 0, changed[i] * CHUNK + 512, buf,
					     sizeof(buf)), 0);
	for (unsigned max = 1; max <= ARRAY_SIZE(ext); max += 3) {
		pos = 0;
		k = 0;
		while (pos < volsz) {
			struct blk_status st = { .mode = BLK_STATUS_CHANGED, .base = "s",
						 .offset = pos, .len = volsz - pos, .ext = ext,
						 .max_ext = max };

			ck_assert_int_eq(blk_sync_block_status(v, &st), 0);
			for (unsigned i = 0; i < st.next; i++) {
				for (uint64_t c = pos / CHUNK;
				     (ext[i].flags & BLK_EXT_CHANGED) && c < (pos + ext[i].len) / CHUNK;
				     c++) {
					ck_assert_uint_lt(k, ARRAY_SIZE(got));
					got[k++] = c;
				}
				pos += ext[i].len;
			}
		}
		ck_assert_uint_eq(pos, volsz);
		ck_assert_uint_eq(k, ARRAY_SIZE(changed));
		for (unsigned i = 0; i < k; i++)
			ck_assert_uint_eq(got[i], changed[i]);
	}
	ck_assert_int_eq(blkdev_close(v), 0);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
}
END_TEST

/* A query in flight when the channel is closed still ends, then the
 * channel goes. */
static void async_end(struct blk_status *st, int status)
{
	*(int *)st->end_arg = status + 1000;
}

static void closed_fn(void *arg)
{
	*(bool *)arg = true;
}

START_TEST(t_async_close)
{
	struct tenv e;
	struct thin_pool *p;
	struct blkdev *v;
	struct ev_loop *loop;
	struct blkchan *ch;
	struct blk_extent ext[4];
	int res = 0;
	bool closed = false;
	struct blk_status st = { .offset = 0, .len = VOLSZ, .ext = ext, .max_ext = 4,
				 .end = async_end, .end_arg = &res };

	pool_up(&e, 16ull << 20, &p);
	ck_assert_int_eq(thin_vol_create(p, "v", VOLSZ), 0);
	ck_assert_int_eq(thin_vol_open(p, "v", &v), 0);
	ck_assert_int_eq(ev_loop_new(EV_EPOLL, 16, &loop), 0);
	ck_assert_int_eq(blk_chan_open(v, loop, &ch), 0);
	ck_assert_int_eq(blk_block_status(ch, &st), 0);
	ck_assert_int_eq(res, 0);	/* never from inside the call */
	blk_chan_close(ch, closed_fn, &closed);
	ck_assert(!closed);
	for (int i = 0; i < 500 && !closed; i++)
		ev_run_once(loop, 10);
	ck_assert(closed);
	ck_assert_int_eq(res, 1000);
	ck_assert_uint_eq(st.next, 1);
	ck_assert_uint_eq(ext[0].len, VOLSZ);
	ck_assert_uint_eq(ext[0].flags, BLK_EXT_HOLE | BLK_EXT_ZERO);
	ev_loop_free(loop);
	ck_assert_int_eq(blkdev_close(v), 0);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
}
END_TEST

static Suite *map_suite(void)
{
	Suite *s = suite_create("thin_map");
	TCase *tc = tcase_create("map");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, t_mem);
	tcase_add_loop_test(tc, t_thin_model, 0, 4);
	tcase_add_test(tc, t_thin_big_tree);
	tcase_add_test(tc, t_thin_windows);
	tcase_add_test(tc, t_async_close);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(map_suite());
	int nfail;

	srunner_run_all(sr, CK_NORMAL);
	nfail = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nfail ? EXIT_FAILURE : EXIT_SUCCESS;
}
