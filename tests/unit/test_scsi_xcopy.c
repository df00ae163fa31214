/* SPDX-License-Identifier: MIT */
/*
 * EXTENDED COPY and RECEIVE COPY RESULTS (proto/scsi/xcopy.c) against
 * memory devices: data equal to a model (memmove, within a LU and between
 * LUs found in the registry), held copy status, and the sense of each bad
 * parameter list.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/scsi.h"
#include "proto/scsi/xcopy.h"

#define DEV_SIZE	(8u << 20)
#define BS		512u
#define NB		(DEV_SIZE / BS)

#define ENV_BUF_SIZE	4096u
#include "scsi_env.h"

static struct blkdev *m1, *m2;
static struct scsi_lu lu2, lu3;	/* lu (the env's, commands go there): m1; lu3: m2, read-only */
static uint8_t *model1, *model2;

static const uint8_t uuid1[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
static const uint8_t uuid2[16] = { 2, 2, 2, 2, 2, 2, 2, 2, 2 };
static const uint8_t uuid3[16] = { 3, 3, 3, 3, 3, 3, 3, 3, 3 };

static void fill(struct blkdev *bd, uint8_t *model, unsigned seed)
{
	srand(seed);
	for (uint32_t i = 0; i < DEV_SIZE; i++)
		model[i] = (uint8_t)rand();
	ck_assert_int_eq(blk_sync_io(bd, BIO_WRITE, 0, 0, model, DEV_SIZE), 0);
}

static void compare(struct blkdev *bd, const uint8_t *model)
{
	uint8_t *d = malloc(DEV_SIZE);

	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(blk_sync_io(bd, BIO_READ, 0, 0, d, DEV_SIZE), 0);
	ck_assert(!memcmp(d, model, DEV_SIZE));
	free(d);
}

static void setup(void)
{
	ck_assert_int_eq(ev_loop_new(EV_AUTO, 0, &loop), 0);
	ck_assert_int_eq(blk_mem_create("x1", DEV_SIZE, BS, &m1), 0);
	ck_assert_int_eq(blk_mem_create("x2", DEV_SIZE, BS, &m2), 0);
	ck_assert_int_eq(blk_chan_open(m1, loop, &ch), 0);
	scsi_lu_init(&lu, m1, uuid1, false);
	scsi_lu_init(&lu2, m2, uuid2, false);
	scsi_lu_init(&lu3, m2, uuid3, true);
	ck_assert_int_eq(scsi_xcopy_register(&lu), 0);
	ck_assert_int_eq(scsi_xcopy_register(&lu2), 0);
	ck_assert_int_eq(scsi_xcopy_register(&lu3), 0);
	model1 = malloc(DEV_SIZE);
	model2 = malloc(DEV_SIZE);
	fill(m1, model1, 1);
	fill(m2, model2, 2);
}

static void teardown(void)
{
	scsi_xcopy_unregister(&lu);
	scsi_xcopy_unregister(&lu2);
	scsi_xcopy_unregister(&lu3);
	blk_chan_close(ch, NULL, NULL);
	for (int i = 0; i < 100 && ev_inflight(loop); i++)
		ev_run_once(loop, 10);
	ck_assert_int_eq(blkdev_close(m1), 0);
	ck_assert_int_eq(blkdev_close(m2), 0);
	ev_loop_free(loop);
	free(model1);
	free(model2);
}

/* A parameter list in buf: CSCDs for lus, then segments; its length. */
struct seg { uint16_t src, dst; uint32_t n; uint64_t src_lba, dst_lba; };

static uint32_t plist(struct scsi_lu **lus, unsigned nl, const struct seg *s, unsigned ns,
		      uint8_t list_id)
{
	uint8_t *p = buf;

	memset(buf, 0, sizeof(buf));
	p[0] = list_id;
	put_be16(p + 2, (uint16_t)(32 * nl));
	put_be32(p + 8, 28 * ns);
	p += 16;
	for (unsigned i = 0; i < nl; i++, p += 32) {
		p[0] = 0xe4;
		p[4] = 1;
		p[5] = 3;
		p[7] = 8;
		memcpy(p + 8, lus[i]->naa, 8);
		p[30] = BS >> 8;
	}
	for (unsigned i = 0; i < ns; i++, p += 28) {
		p[0] = 0x02;
		p[3] = 24;
		put_be16(p + 4, s[i].src);
		put_be16(p + 6, s[i].dst);
		put_be16(p + 10, (uint16_t)s[i].n);
		put_be64(p + 12, s[i].src_lba);
		put_be64(p + 20, s[i].dst_lba);
	}
	return (uint32_t)(p - buf);
}

static int xcopy(uint32_t len)
{
	uint8_t c[16] = { 0x83 };

	put_be32(c + 10, len);
	return run(c, 16, len);
}

START_TEST(copy_within_and_between)
{
	struct scsi_lu *lus[] = { &lu, &lu2 };
	/* within lu: overlapping up (backwards), then down; lu -> lu2 */
	const struct seg s[] = {
		{ 0, 0, 5000, 100, 1100 },
		{ 0, 0, 3000, 9000, 8000 },
		{ 0, 1, 8000, 0, 3 },
		{ 1, 0, 7, 16000, NB - 7 },
	};
	uint8_t c[16] = { 0x84, 0x00, 9 };

	ck_assert_int_eq(xcopy(plist(lus, 2, s, 4, 9)), SCSI_STATUS_GOOD);
	memmove(model1 + 1100 * BS, model1 + 100 * BS, 5000 * BS);
	memmove(model1 + 8000 * BS, model1 + 9000 * BS, 3000 * BS);
	memmove(model2 + 3 * BS, model1, 8000 * BS);
	memmove(model1 + (NB - 7) * BS, model2 + 16000 * BS, 7 * BS);
	compare(m1, model1);
	compare(m2, model2);
	/* the status held under list id 9 */
	put_be32(c + 10, 64);
	ck_assert_int_eq(run(c, 16, 64), SCSI_STATUS_GOOD);
	ck_assert_uint_eq(cmd.xfer_len, 12);
	ck_assert_int_eq(buf[4], 1);
	ck_assert_int_eq(get_be16(buf + 5), 4);
	ck_assert_uint_eq(get_be32(buf + 8), (5000 + 3000 + 8000 + 7) * BS);
	/* none under another list id */
	c[2] = 10;
	run(c, 16, 64);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	/* OPERATING PARAMETERS */
	c[1] = 0x03;
	ck_assert_int_eq(run(c, 16, 64), SCSI_STATUS_GOOD);
	ck_assert_int_eq(get_be16(buf + 8), XCOPY_MAX_TGT_DESC);
	ck_assert_int_eq(get_be16(buf + 10), XCOPY_MAX_SEG_DESC);
}
END_TEST

START_TEST(bad_lists)
{
	struct scsi_lu *lus[XCOPY_MAX_TGT_DESC + 1];
	struct seg s[XCOPY_MAX_SEG_DESC + 1] = { { 0, 0, 8, 0, 8 } };
	uint32_t len;

	for (unsigned i = 0; i <= XCOPY_MAX_TGT_DESC; i++)
		lus[i] = &lu;
	for (unsigned i = 1; i <= XCOPY_MAX_SEG_DESC; i++)
		s[i] = s[0];
	/* an empty list: nothing to do */
	ck_assert_int_eq(xcopy(0), SCSI_STATUS_GOOD);
	len = plist(lus, 1, s, 1, 0);
	xcopy(len - 1);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
	xcopy(plist(lus, XCOPY_MAX_TGT_DESC + 1, s, 1, 0));
	expect_sense(SK_ILLEGAL_REQUEST, ASC_TOO_MANY_TGT_DESC);
	xcopy(plist(lus, 1, s, XCOPY_MAX_SEG_DESC + 1, 0));
	expect_sense(SK_ILLEGAL_REQUEST, ASC_TOO_MANY_SEG_DESC);
	len = plist(lus, 1, s, 1, 0);
	buf[16] = 0xe0;
	xcopy(len);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_UNSUPP_TGT_DESC);
	len = plist(lus, 1, s, 1, 0);
	buf[48] = 0x03;
	xcopy(len);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_UNSUPP_SEG_DESC);
	s[0].dst = 1;
	xcopy(plist(lus, 1, s, 1, 0));
	expect_sense(SK_COPY_ABORTED, ASC_UNREACHABLE_COPY_TARGET);
	s[0].dst = 0;
	s[0].dst_lba = NB - 7;
	xcopy(plist(lus, 1, s, 1, 0));
	expect_sense(SK_COPY_ABORTED, ASC_NONE);
	lus[1] = &lu3;
	s[0].dst = 1;
	s[0].dst_lba = 0;
	xcopy(plist(lus, 2, s, 1, 0));
	expect_sense(SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
	/* a LU no longer registered is unreachable */
	lus[1] = &lu2;
	scsi_xcopy_unregister(&lu2);
	xcopy(plist(lus, 2, s, 1, 0));
	expect_sense(SK_COPY_ABORTED, ASC_UNREACHABLE_COPY_TARGET);
	ck_assert_int_eq(scsi_xcopy_register(&lu2), 0);
	/* reserved by another nexus */
	lu2.reserved_by = 2;
	xcopy(plist(lus, 2, s, 1, 0));
	ck_assert_int_eq(cmd.status, SCSI_STATUS_RESERVATION_CONFLICT);
	lu2.reserved_by = 0;
	compare(m1, model1);
	compare(m2, model2);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("scsi_xcopy");
	TCase *tc = tcase_create("xcopy");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, copy_within_and_between);
	tcase_add_test(tc, bad_lists);
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
