/* SPDX-License-Identifier: MIT */
/*
 * The thin metadata block manager: blocks written are read back; the
 * validators refuse a flipped byte, a block read at the wrong place, a
 * block of another type and a newer format version; the cache stays within
 * its bound and writes dirty blocks it evicts.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "test_thin_util.h"

static const struct bm_validator va = { .name = "test a", .magic = 0x41414141 };
static const struct bm_validator vb = { .name = "test b", .magic = 0x42424242 };

#define NBLK	256

static void fill(struct bm_block *b, uint64_t tag)
{
	for (unsigned i = META_HDR_SIZE; i < META_BLOCK_SIZE; i += 8)
		put_le64(b->data + i, tag * 1000003 + i);
}

static bool holds(struct bm_block *b, uint64_t tag)
{
	for (unsigned i = META_HDR_SIZE; i < META_BLOCK_SIZE; i += 8)
		if (get_le64(b->data + i) != tag * 1000003 + i)
			return false;
	return true;
}

static void write_blocks(struct bm *bm, uint64_t from, uint64_t to)
{
	struct bm_block *b;

	for (uint64_t nr = from; nr < to; nr++) {
		ck_assert_int_eq(bm_new(bm, nr, &va, &b), 0);
		fill(b, nr);
		bm_unpin(bm, b);
	}
	ck_assert_int_eq(bm_flush(bm), 0);
}

START_TEST(t_roundtrip)
{
	struct tenv e;
	struct bm *bm;
	struct bm_block *b;
	struct bm_stats st;

	tenv_open(&e, NBLK * META_BLOCK_SIZE, 512, false);
	ck_assert_int_eq(bm_create(e.mem, NBLK, 16, &bm), 0);
	write_blocks(bm, 0, NBLK);
	bm_get_stats(bm, &st);
	ck_assert_uint_le(st.cached, 16);
	ck_assert_uint_eq(st.writes, NBLK);	/* each once: evicted or flushed */
	bm_destroy(bm);

	ck_assert_int_eq(bm_create(e.mem, NBLK, 32, &bm), 0);
	for (int pass = 0; pass < 3; pass++)
		for (uint64_t nr = 0; nr < NBLK; nr++) {
			ck_assert_int_eq(bm_read(bm, nr, &va, &b), 0);
			ck_assert(holds(b, nr));
			bm_unpin(bm, b);
		}
	bm_get_stats(bm, &st);
	ck_assert_uint_le(st.cached, 32);
	ck_assert_uint_le(st.max_cached, 33);
	ck_assert_uint_eq(st.misses, 3 * NBLK);
	/* a hot block stays cached */
	for (int i = 0; i < 100; i++) {
		ck_assert_int_eq(bm_read(bm, 7, &va, &b), 0);
		bm_unpin(bm, b);
	}
	bm_get_stats(bm, &st);
	ck_assert_uint_ge(st.hits, 99);
	ck_assert_int_eq(bm_read(bm, NBLK, &va, &b), -ERANGE);
	bm_destroy(bm);
	tenv_close(&e);
}
END_TEST

/* Pinned blocks are never evicted, whatever the bound. */
START_TEST(t_pinned)
{
	struct tenv e;
	struct bm *bm;
	struct bm_block *b[40];

	tenv_open(&e, NBLK * META_BLOCK_SIZE, 4096, false);
	ck_assert_int_eq(bm_create(e.mem, NBLK, 16, &bm), 0);
	for (int i = 0; i < 40; i++) {
		ck_assert_int_eq(bm_new(bm, (uint64_t)i, &va, &b[i]), 0);
		fill(b[i], (uint64_t)i + 5);
	}
	for (int i = 0; i < 40; i++) {
		ck_assert(holds(b[i], (uint64_t)i + 5));
		bm_unpin(bm, b[i]);
	}
	ck_assert_int_eq(bm_flush(bm), 0);
	bm_destroy(bm);
	tenv_close(&e);
}
END_TEST

static void raw(struct tenv *e, enum bio_op op, uint64_t nr, void *buf)
{
	ck_assert_int_eq(blk_sync_io(e->mem, op, 0, nr * META_BLOCK_SIZE, buf,
				     META_BLOCK_SIZE), 0);
}

/* Flip each of a sample of bytes in turn: every one is refused, never read. */
START_TEST(t_corrupt)
{
	static uint8_t good[META_BLOCK_SIZE], bad[META_BLOCK_SIZE];
	unsigned offs[] = { 0, 3, 4, 8, 15, 16, 20, 31, 32, 100, 2048, 4095 };
	struct tenv e;
	struct bm *bm;
	struct bm_block *b;

	tenv_open(&e, NBLK * META_BLOCK_SIZE, 512, false);
	ck_assert_int_eq(bm_create(e.mem, NBLK, 16, &bm), 0);
	write_blocks(bm, 0, 8);
	bm_destroy(bm);
	raw(&e, BIO_READ, 3, good);
	for (unsigned k = 0; k < ARRAY_SIZE(offs); k++) {
		memcpy(bad, good, sizeof(bad));
		bad[offs[k]] ^= 0x10;
		raw(&e, BIO_WRITE, 3, bad);
		ck_assert_int_eq(bm_create(e.mem, NBLK, 16, &bm), 0);
		ck_assert_int_eq(bm_read(bm, 3, &va, &b), -EUCLEAN);
		/* neighbours are fine */
		ck_assert_int_eq(bm_read(bm, 2, &va, &b), 0);
		ck_assert(holds(b, 2));
		bm_unpin(bm, b);
		bm_destroy(bm);
	}
	/* an all-zero block (never written) is refused too */
	memset(bad, 0, sizeof(bad));
	raw(&e, BIO_WRITE, 3, bad);
	ck_assert_int_eq(bm_create(e.mem, NBLK, 16, &bm), 0);
	ck_assert_int_eq(bm_read(bm, 3, &va, &b), -EUCLEAN);
	ck_assert_int_eq(bm_read(bm, 100, &va, &b), -EUCLEAN);
	bm_destroy(bm);
	tenv_close(&e);
}
END_TEST

/* A valid block copied to another place, or read as another type, or of a
 * newer format version, is refused. */
START_TEST(t_misplaced)
{
	static uint8_t buf[META_BLOCK_SIZE];
	struct tenv e;
	struct bm *bm;
	struct bm_block *b;

	tenv_open(&e, NBLK * META_BLOCK_SIZE, 512, false);
	ck_assert_int_eq(bm_create(e.mem, NBLK, 16, &bm), 0);
	write_blocks(bm, 0, 8);
	bm_destroy(bm);
	raw(&e, BIO_READ, 5, buf);
	raw(&e, BIO_WRITE, 6, buf);
	ck_assert_int_eq(bm_create(e.mem, NBLK, 16, &bm), 0);
	ck_assert_int_eq(bm_read(bm, 6, &va, &b), -EUCLEAN);
	ck_assert_int_eq(bm_read(bm, 5, &va, &b), 0);
	bm_unpin(bm, b);
	ck_assert_int_eq(bm_read(bm, 4, &vb, &b), -EUCLEAN);
	/* cached as one type, asked for as another */
	ck_assert_int_eq(bm_read(bm, 5, &vb, &b), -EUCLEAN);
	bm_destroy(bm);

	/* version 2 with a good checksum */
	raw(&e, BIO_READ, 4, buf);
	put_le32(buf + 16, META_VERSION + 1);
	put_le32(buf, meta_csum(buf));
	raw(&e, BIO_WRITE, 4, buf);
	ck_assert_int_eq(bm_create(e.mem, NBLK, 16, &bm), 0);
	ck_assert_int_eq(bm_read(bm, 4, &va, &b), -EUCLEAN);
	bm_destroy(bm);
	tenv_close(&e);
}
END_TEST

/* Device errors come through as they are. */
START_TEST(t_ioerr)
{
	struct tenv e;
	struct bm *bm;
	struct bm_block *b;
	struct fault_rule r = { .offset = 9 * META_BLOCK_SIZE, .len = META_BLOCK_SIZE,
				.op_mask = FAULT_OPS_ALL, .err = -EIO };

	tenv_open(&e, NBLK * META_BLOCK_SIZE, 512, true);
	ck_assert_int_eq(bm_create(e.fd, NBLK, 16, &bm), 0);
	write_blocks(bm, 0, 16);
	bm_destroy(bm);
	ck_assert_int_ge(fault_add_rule(e.fd, &r), 0);
	ck_assert_int_eq(bm_create(e.fd, NBLK, 16, &bm), 0);
	ck_assert_int_eq(bm_read(bm, 9, &va, &b), -EIO);
	ck_assert_int_eq(bm_read(bm, 10, &va, &b), 0);
	bm_unpin(bm, b);
	ck_assert_int_eq(bm_new(bm, 9, &va, &b), 0);
	bm_unpin(bm, b);
	ck_assert_int_eq(bm_flush(bm), -EIO);
	bm_destroy(bm);
	tenv_close(&e);
}
END_TEST

static Suite *bm_suite(void)
{
	Suite *s = suite_create("thin_bm");
	TCase *tc = tcase_create("bm");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, t_roundtrip);
	tcase_add_test(tc, t_pinned);
	tcase_add_test(tc, t_corrupt);
	tcase_add_test(tc, t_misplaced);
	tcase_add_test(tc, t_ioerr);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(bm_suite());
	int nfail;

	srunner_run_all(sr, CK_NORMAL);
	nfail = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nfail ? EXIT_FAILURE : EXIT_SUCCESS;
}
