/* SPDX-License-Identifier: MIT */
/*
 * WRITE ATOMIC(16), WRITE SAME to the end of the LU (WSNZ 0) and with
 * NDOB, and the physical block / granularity fields (proto/scsi/atomic.c
 * and exec.c), on memory devices: a plain one, and one with 4 KiB physical
 * blocks that allocates in 64 KiB chunks (io_boundary) as a thin volume
 * does.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/scsi.h"

#define DEV_SIZE	(128u << 20)
#define BS		512u
#define NB		(DEV_SIZE / BS)
#define MAX_WS		((64u << 20) / BS)

#include "scsi_env.h"

static void setup(void) { setup_bs(BS, 0, 0); }
static void setup_chunked(void) { setup_bs(BS, 64 << 10, 4096); }

static void teardown(void) { env_teardown(); }

/* WRITE ATOMIC(16) */
static int wa16(uint8_t flags, uint64_t lba, uint16_t n, uint16_t boundary, uint32_t buf_len)
{
	uint8_t c[16] = { 0x9c, flags };

	put_be64(c + 2, lba);
	put_be16(c + 10, boundary);
	put_be16(c + 12, n);
	return run(c, 16, buf_len);
}

static int rd16(uint64_t lba, uint32_t n)
{
	uint8_t c[16] = { 0x88 };

	put_be64(c + 2, lba);
	put_be32(c + 10, n);
	return run(c, 16, n * BS);
}

/* WRITE SAME 10 or 16 */
static int ws(bool ten, uint8_t flags, uint64_t lba, uint32_t n, uint32_t buf_len)
{
	uint8_t c[16] = { ten ? 0x41 : 0x93, flags };

	if (ten) {
		put_be32(c + 2, (uint32_t)lba);
		put_be16(c + 7, (uint16_t)n);
		return run(c, 10, buf_len);
	}
	put_be64(c + 2, lba);
	put_be32(c + 10, n);
	return run(c, 16, buf_len);
}

static void expect_bytes(uint64_t lba, uint32_t n, uint8_t v)
{
	uint32_t i = 0;

	ck_assert_int_eq(rd16(lba, n), 0);
	while (i < n * BS && buf[i] == v)	/* one assertion, not one a byte */
		i++;
	ck_assert_uint_eq(i, n * BS);
}

START_TEST(write_atomic)
{
	/* 8 blocks (4 KiB) at 8: written, FUA passed down */
	memset(buf, 0xa5, 8 * BS);
	ck_assert_int_eq(wa16(0x18, 8, 8, 0, 8 * BS), 0);	/* DPO FUA */
	ck_assert_uint_eq(cmd.xfer_len, 8 * BS);
	ck_assert_uint_eq(cmd.bio_flags, BIO_FUA);
	ck_assert_int_eq(lu.caw_busy, 0);
	expect_bytes(8, 8, 0xa5);
	expect_bytes(16, 1, 0);
	/* zero blocks: nothing, GOOD; out of range even so */
	ck_assert_int_eq(wa16(0, 0, 0, 0, 0), 0);
	wa16(0, NB + 8, 0, 0, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	wa16(0, NB - 8, 16, 0, 16 * BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	wa16(0, 1ull << 63, 8, 0, 8 * BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	ck_assert_int_eq(wa16(0, NB - 8, 8, 0, 8 * BS), 0);
	/* alignment and granularity (4 KiB), WRPROTECT, reserved, boundary,
	 * too long, short data-out: INVALID FIELD IN CDB, nothing written */
	memset(buf, 0x11, 16 * BS);
	wa16(0, 9, 8, 0, 8 * BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	ck_assert_uint_eq(get_be16(cmd.sense + 16), 2);
	wa16(0, 8, 4, 0, 4 * BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	ck_assert_uint_eq(get_be16(cmd.sense + 16), 12);
	for (uint8_t p = 1; p < 8; p++) {
		wa16((uint8_t)(p << 5), 8, 8, 0, 8 * BS);
		expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	wa16(0x04, 8, 8, 0, 8 * BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	wa16(0, 8, 8, 8, 8 * BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	ck_assert_uint_eq(get_be16(cmd.sense + 16), 10);
	wa16(0, 0, 0x8008, 0, sizeof(buf));
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	wa16(0, 8, 16, 0, 8 * BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	expect_bytes(8, 8, 0xa5);
	/* another atomic write or COMPARE AND WRITE holds the LU: BUSY */
	lu.caw_busy = 1;
	ck_assert_int_eq(wa16(0, 8, 8, 0, 8 * BS), SCSI_STATUS_BUSY);
	lu.caw_busy = 0;
	/* write protected */
	lu.readonly = true;
	wa16(0, 8, 8, 0, 8 * BS);
	expect_sense(SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
}
END_TEST

START_TEST(report_atomic_limits)
{
	uint8_t c[16] = { 0xa3, 0x0c, 0x01, 0x9c };

	ck_assert_int_eq(run((const uint8_t[]){ 0x12, 1, 0xb0, 0, 255, 0 }, 6, 255), 0);
	ck_assert_int_eq(buf[4] & 1, 0);			/* WSNZ */
	ck_assert_uint_eq(get_be16(buf + 6), 1);		/* no chunks */
	ck_assert_uint_eq(get_be64(buf + 36), MAX_WS);
	ck_assert_uint_eq(get_be32(buf + 44), 0x8000);		/* max atomic <= max xfer */
	ck_assert_uint_le(get_be32(buf + 44), get_be32(buf + 8));
	ck_assert_uint_eq(get_be32(buf + 48), 8);		/* alignment */
	ck_assert_uint_eq(get_be32(buf + 52), 8);		/* granularity */
	ck_assert_uint_eq(get_be32(buf + 56), 0);
	ck_assert_uint_eq(get_be32(buf + 60), 0);
	/* READ CAPACITY(16): one logical block per physical block */
	ck_assert_int_eq(run((const uint8_t[]){ 0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32,
						0, 0 }, 16, 32), 0);
	ck_assert_int_eq(buf[13], 0);
	ck_assert_int_eq(get_be16(buf + 14) & 0x3fff, 0);
	/* REPORT SUPPORTED OPERATION CODES lists it, with DPO and FUA */
	put_be32(c + 6, 64);
	ck_assert_int_eq(run(c, 12, 64), 0);
	ck_assert_int_eq(buf[1] & 0x07, 0x03);
	ck_assert_uint_eq(get_be16(buf + 2), 16);
	ck_assert_int_eq(buf[5] & 0x18, 0x18);
}
END_TEST

START_TEST(chunked_physical_blocks)
{
	ck_assert_int_eq(run((const uint8_t[]){ 0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32,
						0, 0 }, 16, 32), 0);
	ck_assert_int_eq(buf[13], 3);			/* 8 x 512 = 4 KiB */
	ck_assert_int_eq(get_be16(buf + 14) & 0x3fff, 0);	/* lowest aligned LBA */
	ck_assert_int_eq(buf[14] & 0xc0, 0xc0);		/* LBPME LBPRZ */
	ck_assert_int_eq(run((const uint8_t[]){ 0x12, 1, 0xb0, 0, 255, 0 }, 6, 255), 0);
	ck_assert_uint_eq(get_be16(buf + 6), 128);	/* optimal granularity: the chunk */
	ck_assert_uint_eq(get_be32(buf + 28), 128);	/* optimal unmap granularity */
	ck_assert_uint_eq(get_be32(buf + 12) % 128, 0);	/* optimal transfer length */
}
END_TEST

START_TEST(chunked_4k_blocks)
{
	/* 4 KiB logical blocks: one per physical block, atomic unit 1 block;
	 * a 16 KiB physical block makes it 4 */
	teardown();
	setup_bs(4096, 64 << 10, 0);
	ck_assert_int_eq(run((const uint8_t[]){ 0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32,
						0, 0 }, 16, 32), 0);
	ck_assert_int_eq(buf[13], 0);
	ck_assert_int_eq(run((const uint8_t[]){ 0x12, 1, 0xb0, 0, 255, 0 }, 6, 255), 0);
	ck_assert_uint_eq(get_be16(buf + 6), 16);
	ck_assert_uint_eq(get_be32(buf + 48), 1);
	ck_assert_uint_eq(get_be32(buf + 52), 1);
	ck_assert_uint_eq(get_be32(buf + 44), (16u << 20) / 4096);
	memset(buf, 0x3c, 4096);
	ck_assert_int_eq(wa16(0, 3, 1, 0, 4096), 0);
	mem->phys_block = 16384;
	ck_assert_int_eq(run((const uint8_t[]){ 0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32,
						0, 0 }, 16, 32), 0);
	ck_assert_int_eq(buf[13], 2);
	ck_assert_int_eq(run((const uint8_t[]){ 0x12, 1, 0xb0, 0, 255, 0 }, 6, 255), 0);
	ck_assert_uint_eq(get_be32(buf + 48), 4);
	ck_assert_uint_eq(get_be32(buf + 52), 4);
	memset(buf, 0x3c, 4 * 4096);
	wa16(0, 3, 4, 0, 4 * 4096);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	ck_assert_int_eq(wa16(0, 4, 4, 0, 4 * 4096), 0);
}
END_TEST

START_TEST(write_same_to_the_end)
{
	/* pattern over the last 10 blocks, then 0 blocks from NB - 5 with
	 * UNMAP: the last 5 read as zeros (LBPRZ), whatever the data-out */
	memset(buf, 0x77, BS);
	ck_assert_int_eq(ws(false, 0, NB - 10, 10, BS), 0);
	expect_bytes(NB - 10, 10, 0x77);
	memset(buf, 0xff, BS);
	ck_assert_int_eq(ws(false, 0x08, NB - 5, 0, BS), 0);
	expect_bytes(NB - 5, 5, 0);
	expect_bytes(NB - 10, 5, 0x77);
	/* a pattern to the end, with WRITE SAME(16) */
	memset(buf, 0x42, BS);
	ck_assert_int_eq(ws(false, 0, NB - 3, 0, BS), 0);
	expect_bytes(NB - 3, 3, 0x42);
	/* from the last LBA + 1: nothing; beyond: out of range */
	ck_assert_int_eq(ws(true, 0, NB, 0, BS), 0);
	ws(true, 0, NB + 1, 0, BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	ws(false, 0, ~0ull, 0, BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	/* more than MAXIMUM WRITE SAME LENGTH to the end: refused (bounded);
	 * exactly that many: done */
	memset(buf, 0, BS);
	ws(true, 0, NB - MAX_WS - 1, 0, BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	ck_assert_uint_eq(get_be16(cmd.sense + 16), 7);
	ws(false, 0, 0, 0, BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	ck_assert_uint_eq(get_be16(cmd.sense + 16), 10);
	ws(false, 0, 0, MAX_WS + 1, BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	ck_assert_int_eq(ws(true, 0x08, NB - MAX_WS, 0, BS), 0);
	expect_bytes(NB - 3, 3, 0);
}
END_TEST

START_TEST(write_same_data_out)
{
	/* exactly one block of data-out, or none with NDOB (16 only) */
	memset(buf, 0x66, 2 * BS);
	ws(true, 0, 100, 1, BS / 2);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	ws(true, 0x08, 100, 1, 2 * BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	ws(false, 0x08, 100, 1, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	ck_assert_int_eq(ws(false, 0, 100, 4, BS), 0);
	expect_bytes(100, 4, 0x66);
	ck_assert_int_eq(ws(false, 0x01, 101, 2, 0), 0);		/* NDOB: zeros */
	ck_assert_uint_eq(cmd.xfer_len, 0);
	expect_bytes(101, 2, 0);
	expect_bytes(103, 1, 0x66);
	ck_assert_int_eq(ws(false, 0x09, 100, 1, 0), 0);		/* NDOB UNMAP */
	expect_bytes(100, 1, 0);
	ws(false, 0x01, 100, 1, BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	ws(true, 0x01, 100, 1, 0);				/* reserved in 10 */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("scsi_atomic");
	TCase *tc = tcase_create("plain");
	TCase *tcc = tcase_create("chunked");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, write_atomic);
	tcase_add_test(tc, report_atomic_limits);
	tcase_add_test(tc, write_same_to_the_end);
	tcase_add_test(tc, write_same_data_out);
	suite_add_tcase(s, tc);
	tcase_set_timeout(tcc, 60);
	tcase_add_checked_fixture(tcc, setup_chunked, teardown);
	tcase_add_test(tcc, chunked_physical_blocks);
	tcase_add_test(tcc, chunked_4k_blocks);
	tcase_add_test(tcc, write_same_to_the_end);
	suite_add_tcase(s, tcc);
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
