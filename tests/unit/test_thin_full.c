/* SPDX-License-Identifier: MIT */
/*
 * A full pool: a volume with a snapshot fills the pool; writes that need a
 * new chunk (unmapped chunks, and chunks shared with the snapshot) fail
 * with -ENOSPC, each on its own; reads, overwrites of chunks the volume
 * owns, flushes and the snapshot's reads all work; the pool stays healthy
 * (check clean, reopen). Deleting the snapshot gives its own chunks back:
 * writes resume. Contents follow a model throughout.
 */
#include <check.h>
#include <string.h>
#include "sand/thin.h"
#include "test_thin_io.h"

#define CHUNK		(64u * 1024)
#define VOLSZ		(8u << 20)	/* 128 chunks: more than the pool has */

static struct thin_open_opts oo = { .cache_blocks = 64, .commit_ms = 600000 };
static uint8_t ma[VOLSZ], ms[VOLSZ], buf[VOLSZ];

static void fill(uint8_t *b, uint64_t len, uint64_t tag)
{
	for (uint64_t i = 0; i < len; i += 8)
		put_le64(b + i, tag << 40 | i);
}

static void same(struct blkdev *bd, const uint8_t *m)
{
	T_EQ(tio(bd, BIO_READ, 0, 0, buf, VOLSZ), 0);
	for (uint64_t off = 0; off < VOLSZ; off += 512)
		if (memcmp(buf + off, m + off, 512))
			ck_abort_msg("%s differs at %llu", bd->name, (unsigned long long)off);
}

static void clean(struct thin_pool *p)
{
	struct thin_check_report r;

	T_EQ(thin_pool_check(p, &r), 0);
}

START_TEST(t_full_snapshot)
{
	struct thin_format_opts fo = { .chunk_size = CHUNK };
	struct blkdev *mem, *a, *s;
	struct thin_pool *p;
	struct thin_pool_info pi;
	uint64_t nchunks, c, owned_first, owned, enospc = 0;
	int rc;

	T_EQ(blk_mem_create("full", 4u << 20, 512, &mem), 0);
	T_EQ(thin_pool_format(mem, &fo), 0);
	T_EQ(thin_pool_open(mem, &oo, &p), 0);
	T_EQ(thin_pool_info(p, &pi), 0);
	nchunks = pi.data_chunks;
	T_TRUE(nchunks > 32 && nchunks < VOLSZ / CHUNK);
	T_EQ(thin_vol_create(p, "a", VOLSZ), 0);
	T_EQ(thin_vol_open(p, "a", &a), 0);
	/* 16 chunks, snapshot, 8 of them overwritten (the snapshot keeps the
	 * old 8 to itself) */
	fill(buf, 16 * CHUNK, 1);
	T_EQ(tio(a, BIO_WRITE, 0, 0, buf, 16 * CHUNK), 0);
	memcpy(ma, buf, 16 * CHUNK);
	T_EQ(thin_snap_create(p, "a", "a@s"), 0);
	memcpy(ms, ma, VOLSZ);
	fill(buf, 8 * CHUNK, 2);
	T_EQ(tio(a, BIO_WRITE, 0, 0, buf, 8 * CHUNK), 0);
	memcpy(ma, buf, 8 * CHUNK);
	/* fill the rest, chunk by chunk, partial writes included */
	owned_first = 16;
	for (c = owned_first; c < VOLSZ / CHUNK; c++) {
		uint64_t len = c % 2 ? CHUNK : 4096;

		fill(buf, len, 100 + c);
		rc = tio(a, BIO_WRITE, 0, c * CHUNK, buf, len);
		if (rc == -ENOSPC)
			break;
		T_EQ(rc, 0);
		memcpy(ma + c * CHUNK, buf, len);
	}
	owned = c - owned_first;
	T_EQ(thin_pool_info(p, &pi), 0);
	T_EQ(pi.free_chunks, 0);
	T_EQ(owned + 16 + 8, nchunks);
	/* full: each write that needs a chunk fails, and only it */
	for (c = 0; c < VOLSZ / CHUNK; c++) {
		bool needs = c < 16 ? c >= 8 : c >= owned_first + owned;

		fill(buf, 4096, 200 + c);
		rc = tio(a, BIO_WRITE, 0, c * CHUNK + 8192, buf, 4096);
		if (needs) {
			T_EQ(rc, -ENOSPC);
			enospc++;
		} else {
			T_EQ(rc, 0);		/* a chunk a owns: overwritten in place */
			memcpy(ma + c * CHUNK + 8192, buf, 4096);
		}
	}
	T_TRUE(enospc > 8);
	/* a multi-chunk write over owned chunks works too */
	fill(buf, 4 * CHUNK, 300);
	T_EQ(tio(a, BIO_WRITE, BIO_FUA, (owned_first + 2) * CHUNK, buf, 4 * CHUNK), 0);
	memcpy(ma + (owned_first + 2) * CHUNK, buf, 4 * CHUNK);
	T_EQ(tio(a, BIO_FLUSH, 0, 0, NULL, 0), 0);
	same(a, ma);
	T_EQ(thin_vol_open(p, "a@s", &s), 0);
	same(s, ms);
	T_EQ(tio_close(s), 0);
	clean(p);
	/* still full after a reopen, nothing lost */
	T_EQ(tio_close(a), 0);
	T_EQ(thin_pool_close(p), 0);
	T_EQ(thin_pool_open(mem, &oo, &p), 0);
	clean(p);
	T_EQ(thin_vol_open(p, "a", &a), 0);
	same(a, ma);
	fill(buf, 512, 400);
	T_EQ(tio(a, BIO_WRITE, 0, 9 * CHUNK, buf, 512), -ENOSPC);
	/* the snapshot goes: its 8 chunks come back, writes resume */
	T_EQ(thin_vol_delete(p, "a@s"), 0);
	T_EQ(thin_pool_info(p, &pi), 0);
	T_EQ(pi.free_chunks, 8);
	for (c = 0; c < 8; c++) {
		fill(buf, CHUNK, 500 + c);
		T_EQ(tio(a, BIO_WRITE, 0, (owned_first + owned + c) * CHUNK, buf, CHUNK), 0);
		memcpy(ma + (owned_first + owned + c) * CHUNK, buf, CHUNK);
	}
	T_EQ(tio(a, BIO_WRITE, 0, (owned_first + owned + 8) * CHUNK, buf, CHUNK), -ENOSPC);
	same(a, ma);
	clean(p);
	T_EQ(tio_close(a), 0);
	T_EQ(thin_pool_close(p), 0);
	T_EQ(blkdev_close(mem), 0);
	tio_done();
}
END_TEST

static Suite *full_suite(void)
{
	Suite *s = suite_create("thin_full");
	TCase *tc = tcase_create("full");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, t_full_snapshot);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(full_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
