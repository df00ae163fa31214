/* SPDX-License-Identifier: MIT */
/*
 * The write-intent bitmap: bits set on every member before writes to a
 * clean region, cleared once idle; after a crash only the dirty regions
 * are resynchronized (a parity corrupted behind the set's back in a clean
 * region stays as it is, one in a written region is made right), while a
 * set without a bitmap resynchronizes everything.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/fault.h"
#include "sand/raid.h"
#include "raid/raid_bitmap.h"

#define BS		512u
#define STRIP		4096u
#define N		4
#define REGION		(4 * STRIP)		/* 4 rows per bit */
#define MEMBER_DATA	(256u * 1024)		/* 64 rows, 16 regions */

struct benv {
	struct blkdev	*mem[N], *f[N], *raid;
	struct ev_loop	*loop;
	struct blkchan	*ch;
};

static void sync_end(struct bio *bio, int status)
{
	*(int *)bio->end_arg = status;
}

static void closed_cb(void *arg)
{
	*(bool *)arg = true;
}

static void rw(struct benv *e, enum bio_op op, uint64_t off, void *buf, uint64_t len)
{
	struct iovec iov = { buf, len };
	int st = 1;

	ck_assert_int_eq(blk_rw(e->ch, op, 0, buf ? &iov : NULL, buf ? 1 : 0, off, len,
				sync_end, &st), 0);
	for (int i = 0; i < 100000 && st == 1; i++)
		ev_run_once(e->loop, 10);
	ck_assert_int_eq(st, 0);
}

static void open_set(struct benv *e, bool create, bool bitmap)
{
	if (create) {
		struct raid_opts o = { .strip = STRIP, .bitmap_region = REGION,
				       .no_bitmap = !bitmap };

		ck_assert_int_eq(raid_create("b0", RAID_LEVEL_5, e->f, N, &o, &e->raid), 0);
	} else {
		ck_assert_int_eq(raid_assemble(e->f, N, &e->raid), 0);
	}
	ck_assert_int_eq(blk_chan_open(e->raid, e->loop, &e->ch), 0);
}

static void close_chan(struct benv *e)
{
	bool closed = false;

	blk_chan_close(e->ch, closed_cb, &closed);
	for (int i = 0; i < 10000 && !closed; i++)
		ev_run_once(e->loop, 10);
	ck_assert(closed);
}

/* The parity column of row `row` (RAID 5, left-symmetric: member n-1-row%n). */
static void corrupt_parity(struct benv *e, uint64_t row)
{
	uint8_t buf[BS];

	memset(buf, 0xa5, BS);
	ck_assert_int_eq(blk_sync_io(e->mem[N - 1 - row % N], BIO_WRITE, 0,
				     RAID_DATA_OFFSET + row * STRIP, buf, BS), 0);
}

static uint64_t bitmap_bits_on_disk(struct benv *e, uint32_t m)
{
	uint8_t buf[4096];
	uint64_t n = 0;

	ck_assert_int_eq(blk_sync_io(e->mem[m], BIO_READ, 0, RAID_BITMAP_OFFSET, buf,
				     sizeof(buf)), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		n += (uint64_t)__builtin_popcount(buf[i]);
	return n;
}

static void crash_after_writes(bool bitmap, uint64_t *bad_rows)
{
	struct benv e;
	uint8_t *buf = aligned_alloc(4096, 3 * STRIP);
	uint64_t dirty, total, cleared;
	char name[16];

	memset(&e, 0, sizeof(e));
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		ck_assert_int_eq(blk_mem_create(name, RAID_DATA_OFFSET + MEMBER_DATA, BS,
						&e.mem[i]), 0);
		snprintf(name, sizeof(name), "f%d", i);
		ck_assert_int_eq(blk_fault_create(name, e.mem[i], &e.f[i]), 0);
	}
	ck_assert_int_eq(ev_loop_new(EV_AUTO, 64, &e.loop), 0);
	open_set(&e, true, bitmap);

	/* data everywhere, then everything idle and flushed: all clean */
	memset(buf, 0x3c, 3 * STRIP);
	for (uint64_t off = 0; off < e.raid->size; off += 3 * STRIP)
		rw(&e, BIO_WRITE, off, buf, 3 * STRIP);
	rw(&e, BIO_FLUSH, 0, NULL, 0);
	if (bitmap) {
		ck_assert_int_eq(raid_bitmap_dirty_regions(e.raid, &dirty, &total), 0);
		ck_assert_uint_eq(total, MEMBER_DATA / REGION);
		ck_assert_uint_eq(dirty, total);
		for (int i = 0; i < N; i++)
			ck_assert_uint_eq(bitmap_bits_on_disk(&e, (uint32_t)i), total);
		ck_assert_int_eq(raid_bitmap_clear_idle(e.raid, &cleared), 0);
		/* every region was written since the last sweep: not yet */
		ck_assert_uint_eq(cleared, 0);
		ck_assert_int_eq(raid_bitmap_clear_idle(e.raid, &cleared), 0);
		ck_assert_uint_eq(cleared, total);
		ck_assert_int_eq(raid_bitmap_dirty_regions(e.raid, &dirty, NULL), 0);
		ck_assert_uint_eq(dirty, 0);
		for (int i = 0; i < N; i++)
			ck_assert_uint_eq(bitmap_bits_on_disk(&e, (uint32_t)i), 0);
	} else {
		ck_assert_int_eq(raid_bitmap_dirty_regions(e.raid, &dirty, &total), -EINVAL);
	}
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(fault_record(e.f[i], true), 0);

	/* behind the set's back: parity of row 1 (region 0) and row 21
	 * (region 5) go wrong */
	corrupt_parity(&e, 1);
	corrupt_parity(&e, 21);
	/* one small write in region 5 (row 22), then the power goes */
	rw(&e, BIO_WRITE, 22 * 3 * STRIP + 1024, buf, 1024);
	if (bitmap) {
		ck_assert_int_eq(raid_bitmap_dirty_regions(e.raid, &dirty, NULL), 0);
		ck_assert_uint_eq(dirty, 1);
		for (int i = 0; i < N; i++)
			ck_assert_uint_eq(bitmap_bits_on_disk(&e, (uint32_t)i), 1);
	}
	close_chan(&e);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(fault_power_cut(e.f[i], NULL), 0);
	ck_assert_int_eq(blkdev_close(e.raid), 0);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(fault_power_restore(e.f[i]), 0);

	/* assembled dirty: resync; then count rows whose parity is wrong */
	open_set(&e, false, bitmap);
	ck_assert_int_eq(raid_scrub(e.raid, false, bad_rows), 0);
	if (bitmap)
		for (int i = 0; i < N; i++)
			ck_assert_uint_eq(bitmap_bits_on_disk(&e, (uint32_t)i), 0);
	close_chan(&e);
	ck_assert_int_eq(blkdev_close(e.raid), 0);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(blkdev_close(e.f[i]), 0);
		ck_assert_int_eq(blkdev_close(e.mem[i]), 0);
	}
	ev_loop_free(e.loop);
	free(buf);
}

START_TEST(only_dirty_regions_resynced)
{
	uint64_t bad = 99;

	crash_after_writes(true, &bad);
	ck_assert_uint_eq(bad, 1);	/* row 1: clean region, not resynced */
	crash_after_writes(false, &bad);
	ck_assert_uint_eq(bad, 0);	/* no bitmap: every row resynced */
}
END_TEST

/* Default 64 MiB; rounded up to the strip; doubled until the bitmap holds
 * a bit for every region. */
START_TEST(region_size)
{
	uint64_t r;

	ck_assert_uint_eq(bitmap_region_size(0, 65536, 1ull << 40, 57344), 64ull << 20);
	ck_assert_uint_eq(bitmap_region_size(100000, 65536, 1ull << 30, 57344), 131072);
	r = bitmap_region_size(65536, 65536, 1ull << 40, 57344);
	ck_assert_uint_lt((1ull << 40) / r, 57344 * 8);
	ck_assert_uint_ge((1ull << 40) / r, 57344 * 8 / 2);
	ck_assert_uint_eq(r % 65536, 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("raid_bitmap");
	TCase *tc = tcase_create("bitmap");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, only_dirty_regions_resynced);
	tcase_add_test(tc, region_size);
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
