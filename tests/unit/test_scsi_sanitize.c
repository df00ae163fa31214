/* SPDX-License-Identifier: MIT */
/*
 * SANITIZE (proto/scsi/sanitize.c) on a memory device: OVERWRITE with
 * patterns, passes and INVERT, BLOCK ERASE, EXIT FAILURE MODE, the
 * refusals, and SANITIZE IN PROGRESS for the other commands; a paced
 * sanitize going on alone (IMMED, a detached command, the LU going away)
 * with its progress; MODE SELECT of the control page's SWP.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/scsi.h"
#include "proto/scsi/sanitize.h"

#define DEV_SIZE	(3u << 20)
#define BS		512u
#define NB		(DEV_SIZE / BS)

#include "scsi_env.h"

static void setup(void)
{
	setup_bs(BS, 0, 0);
	scsi_sanitize_set_rate(0);
}

/* run the loop until the sanitize (and its channel) is gone: bounded */
static void settle(void)
{
	for (int i = 0; i < 100000 && lu.sanitizing; i++)
		ev_run_once(loop, 10);
	ck_assert_int_eq(lu.sanitizing, 0);
}

static void teardown(void)
{
	settle();
	env_teardown();
}

static int sanitize(uint8_t b1, uint16_t plen, uint32_t buf_len)
{
	uint8_t c[10] = { 0x48, b1 };

	put_be16(c + 7, plen);
	return run(c, 10, buf_len);
}

static int rd16(uint64_t lba, uint32_t n)
{
	uint8_t c[16] = { 0x88 };

	put_be64(c + 2, lba);
	put_be32(c + 10, n);
	return run(c, 16, n * BS);
}

/* every byte of blocks [lba, lba + n) is what f(offset in block) says */
static void expect_blocks(uint64_t lba, uint32_t n, const uint8_t *pat, uint32_t plen, uint8_t x)
{
	uint32_t i = 0;

	ck_assert_int_eq(rd16(lba, n), 0);
	while (i < n * BS && buf[i] == (pat ? (uint8_t)(pat[(i % BS) % plen] ^ x) : x))
		i++;
	ck_assert_uint_eq(i, n * BS);	/* one assertion, not one a byte */
}

static void fill(uint8_t v)
{
	uint8_t c[16] = { 0x8a };

	memset(buf, v, 64 * BS);
	for (uint64_t lba = 0; lba < NB; lba += 64) {
		put_be64(c + 2, lba);
		put_be32(c + 10, 64);
		ck_assert_int_eq(run(c, 16, 64 * BS), 0);
		memset(buf, v, 64 * BS);
	}
}

static void param(uint8_t b0, uint16_t ilen, const uint8_t *pat)
{
	buf[0] = b0;
	buf[1] = 0;
	put_be16(buf + 2, ilen);
	memcpy(buf + 4, pat, ilen);
}

START_TEST(overwrite)
{
	uint8_t pat[BS];

	for (unsigned i = 0; i < BS; i++)
		pat[i] = (uint8_t)(i * 7 + 1);
	fill('a');
	/* one full block of pattern, one pass: every block is the pattern */
	param(0x01, BS, pat);
	ck_assert_int_eq(sanitize(0x01, BS + 4, BS + 4), 0);
	ck_assert_uint_eq(cmd.xfer_len, BS + 4);
	ck_assert_int_eq(lu.sanitizing, 0);
	expect_blocks(0, 256, pat, BS, 0);
	expect_blocks(NB - 256, 256, pat, BS, 0);
	/* 3 bytes, repeated from the start of each block */
	param(0x01, 3, pat);
	ck_assert_int_eq(sanitize(0x01, 7, 7), 0);
	expect_blocks(NB - 3, 3, pat, 3, 0);
	/* two passes with INVERT: the second writes it inverted */
	param(0x82, 4, pat);
	ck_assert_int_eq(sanitize(0x01, 8, 8), 0);
	expect_blocks(100, 10, pat, 4, 0xff);
	/* three: inverted, then as it is */
	param(0x83, 4, pat);
	ck_assert_int_eq(sanitize(0x01, 8, 8), 0);
	expect_blocks(100, 10, pat, 4, 0);
}
END_TEST

START_TEST(overwrite_refused)
{
	uint8_t pat[BS + 8];

	memset(pat, 0x5a, sizeof(pat));
	fill('b');
	/* parameter list length: 0-4, over a block + 4 */
	for (uint16_t l = 0; l < 5; l++) {
		param(0x01, 1, pat);
		sanitize(0x01, l, l);
		expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	param(0x01, BS, pat);
	sanitize(0x01, BS + 5, BS + 5);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	/* count 0, pattern length 0, over a block, over the list */
	param(0x00, BS, pat);
	sanitize(0x01, BS + 4, BS + 4);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	param(0x01, 0, pat);
	sanitize(0x01, BS + 4, BS + 4);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	param(0x01, 8, pat);
	sanitize(0x01, 8, 8);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	/* TEST field, reserved byte: the parameter list */
	param(0x21, 4, pat);
	sanitize(0x01, 8, 8);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	/* short data-out */
	param(0x01, 4, pat);
	sanitize(0x01, 8, 6);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
	/* AUSE, the reserved bit 6, reserved bytes 2-6 */
	param(0x01, 4, pat);
	sanitize(0x41, 8, 8);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	sanitize(0x21, 8, 8);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	for (unsigned i = 2; i < 7; i++) {
		uint8_t c[10] = { 0x48, 0x01 };

		c[i] = 1;
		put_be16(c + 7, 8);
		run(c, 10, 8);
		expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
		ck_assert_uint_eq(get_be16(cmd.sense + 16), i);
	}
	/* nothing was written */
	expect_blocks(0, 64, NULL, 0, 'b');
	/* write protected */
	lu.readonly = true;
	sanitize(0x01, 8, 8);
	expect_sense(SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
	sanitize(0x02, 0, 0);
	expect_sense(SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
}
END_TEST

START_TEST(block_erase_and_others)
{
	uint8_t c[12] = { 0xa3, 0x0c, 0x02, 0x48 };

	fill('c');
	ck_assert_int_eq(sanitize(0x02, 0, 0), 0);
	settle();
	expect_blocks(0, 256, NULL, 0, 0);
	expect_blocks(NB - 256, 256, NULL, 0, 0);
	sanitize(0x02, 8, 8);				/* no parameter list */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	/* EXIT FAILURE MODE: nothing to leave */
	ck_assert_int_eq(sanitize(0x1f, 0, 0), 0);
	sanitize(0x1f, 8, 8);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	/* CRYPTOGRAPHIC ERASE and every other service action */
	for (uint8_t sa = 0; sa < 0x1f; sa++) {
		if (sa == 1 || sa == 2)
			continue;
		sanitize(sa, 0, 0);
		expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	/* REPORT SUPPORTED OPERATION CODES: 1, 2 and 1Fh, not 3 */
	put_be32(c + 6, 64);
	for (uint16_t sa = 1; sa < 4; sa++) {
		put_be16(c + 4, sa);
		ck_assert_int_eq(run(c, 12, 64), 0);
		ck_assert_int_eq(buf[1] & 0x07, sa == 3 ? 0x01 : 0x03);
	}
	put_be16(c + 4, 0x1f);
	ck_assert_int_eq(run(c, 12, 64), 0);
	ck_assert_int_eq(buf[1] & 0x07, 0x03);
	/* Block Device Characteristics: WABEREQ 01b, WACEREQ 00b */
	ck_assert_int_eq(run((const uint8_t[]){ 0x12, 1, 0xb1, 0, 255, 0 }, 6, 255), 0);
	ck_assert_int_eq(buf[7] & 0xf0, 0x40);
	/* a LU without thin provisioning cannot block erase */
	lu.lbpme = false;
	sanitize(0x02, 0, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
}
END_TEST

START_TEST(in_progress)
{
	uint8_t pat[4] = { 1, 2, 3, 4 };

	/* while another SANITIZE runs (another session's): only INQUIRY,
	 * REPORT LUNS and REQUEST SENSE */
	lu.sanitizing = 1;
	run((const uint8_t[]){ 0x00, 0, 0, 0, 0, 0 }, 6, 0);
	expect_sense(SK_NOT_READY, 0x041b);
	rd16(0, 1);
	expect_sense(SK_NOT_READY, 0x041b);
	param(0x01, 4, pat);
	sanitize(0x01, 8, 8);
	expect_sense(SK_NOT_READY, 0x041b);
	ck_assert_int_eq(run((const uint8_t[]){ 0x12, 0, 0, 0, 255, 0 }, 6, 255), 0);
	ck_assert_int_eq(run((const uint8_t[]){ 0x03, 0, 0, 0, 18, 0 }, 6, 18), 0);
	ck_assert_int_eq(run((const uint8_t[]){ 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0 }, 12, 64), 0);
	ck_assert_int_eq(lu.sanitizing, 1);		/* not ours to release */
	lu.sanitizing = 0;
	ck_assert_int_eq(run((const uint8_t[]){ 0x00, 0, 0, 0, 0, 0 }, 6, 0), 0);
	/* ours is released when it ends */
	param(0x01, 4, pat);
	ck_assert_int_eq(sanitize(0x01, 8, 8), 0);
	settle();
}
END_TEST

/* TEST UNIT READY: NOT READY, SANITIZE IN PROGRESS with SKSV; the
 * progress indication */
static uint16_t tur_progress(void)
{
	run((const uint8_t[]){ 0x00, 0, 0, 0, 0, 0 }, 6, 0);
	expect_sense(SK_NOT_READY, 0x041b);
	ck_assert_int_eq(cmd.sense[15], 0x80);
	return get_be16(cmd.sense + 16);
}

START_TEST(immed_paced)
{
	uint8_t pat[4] = { 9, 8, 7, 6 };
	uint16_t prog, last = 0;
	uint64_t t0 = now_ns();
	unsigned seen = 0;

	fill('d');
	/* 3 MiB at 4 MiB/s: 512 KiB pieces, about 0.75 s */
	scsi_sanitize_set_rate(4u << 20);
	param(0x01, 4, pat);
	ck_assert_int_eq(sanitize(0x81, 8, 8), 0);	/* IMMED: GOOD at once */
	ck_assert_int_eq(lu.sanitizing, 1);
	ck_assert_uint_eq(tur_progress(), 0);
	/* REQUEST SENSE: GOOD, the same sense as data */
	ck_assert_int_eq(run((const uint8_t[]){ 0x03, 0, 0, 0, 18, 0 }, 6, 18), 0);
	ck_assert_int_eq(buf[2], SK_NOT_READY);
	ck_assert_int_eq(buf[12] << 8 | buf[13], 0x041b);
	ck_assert_int_eq(buf[15], 0x80);
	/* another SANITIZE while it runs */
	param(0x01, 4, pat);
	sanitize(0x01, 8, 8);
	expect_sense(SK_NOT_READY, 0x041b);
	/* progress goes up, never back, until it is done */
	for (int i = 0; i < 100000 && lu.sanitizing; i++) {
		ev_run_once(loop, 10);
		if (!lu.sanitizing)
			break;
		prog = tur_progress();
		ck_assert_uint_ge(prog, last);
		if (prog > last)
			seen++;
		last = prog;
	}
	settle();
	/* the pacing: no faster than the rate (a loaded machine is only slower) */
	ck_assert_uint_ge(now_ns() - t0, 600ull * 1000 * 1000);
	ck_assert_uint_ge(seen, 3);			/* 6 pieces: 1/6, 2/6 ... */
	ck_assert_int_eq(run((const uint8_t[]){ 0x00, 0, 0, 0, 0, 0 }, 6, 0), 0);
	expect_blocks(0, 64, pat, 4, 0);
	expect_blocks(NB - 64, 64, pat, 4, 0);
}
END_TEST

START_TEST(detached)
{
	uint8_t pat[4] = { 0x11, 0x22, 0x33, 0x44 };
	uint8_t c[10] = { 0x48, 0x01 };

	fill('e');
	scsi_sanitize_set_rate(8u << 20);
	memset(&cmd, 0, sizeof(cmd));
	memcpy(cmd.cdb, c, 10);
	put_be16(cmd.cdb + 7, 8);
	cmd.lu = &lu;
	cmd.ch = ch;
	cmd.buf = buf;
	cmd.buf_len = 8;
	cmd.nexus = 1;
	cmd.done = on_done;
	done = false;
	param(0x01, 4, pat);
	ck_assert_int_eq(scsi_exec(&cmd), SCSI_PENDING);	/* IMMED 0: waits */
	ev_run_once(loop, 10);
	ck_assert(!done);
	ck_assert(scsi_sanitize_detach(&cmd));		/* aborted: it goes on */
	ck_assert(!scsi_sanitize_detach(&cmd));
	memset(&cmd, 0, sizeof(cmd));			/* the transport frees it */
	settle();
	ck_assert(!done);				/* never answered */
	expect_blocks(0, 64, pat, 4, 0);
	expect_blocks(NB - 64, 64, pat, 4, 0);
	/* a command that waits for nothing */
	ck_assert_int_eq(run((const uint8_t[]){ 0x00, 0, 0, 0, 0, 0 }, 6, 0), 0);
	ck_assert(!scsi_sanitize_detach(&cmd));
}
END_TEST

START_TEST(stopped)
{
	uint8_t pat[4] = { 0x55, 0x66, 0x77, 0x88 };

	fill('f');
	scsi_sanitize_set_rate(1u << 20);		/* 3 s for all of it */
	ck_assert_uint_eq(scsi_sanitize_stop(&lu), 0);	/* nothing running */
	lu.sanitize_stop = 0;
	param(0x01, 4, pat);
	ck_assert_int_eq(sanitize(0x81, 8, 8), 0);
	ev_run_once(loop, 10);
	/* the LU is going away: it stops after its bio in flight */
	ck_assert_uint_eq(scsi_sanitize_stop(&lu), 1);
	settle();
	expect_blocks(NB - 64, 64, NULL, 0, 'f');	/* the end never written */
	/* and none starts */
	param(0x01, 4, pat);
	sanitize(0x81, 8, 8);
	ck_assert_int_eq(cmd.status, SCSI_STATUS_BUSY);
	ck_assert_int_eq(lu.sanitizing, 0);
}
END_TEST

/* MODE SELECT(6) (ten false) or (10) of a parameter list of len bytes
 * already in buf; its status */
static int mode_select(bool ten, uint8_t b1, uint32_t len, uint32_t buf_len)
{
	uint8_t c[10] = { ten ? 0x55 : 0x15, b1 };

	if (ten)
		put_be16(c + 7, (uint16_t)len);
	else
		c[4] = (uint8_t)len;
	return run(c, ten ? 10 : 6, buf_len);
}

/* a control page with SWP at p */
static uint32_t control_page(uint8_t *p, bool swp)
{
	memset(p, 0, 12);
	p[0] = 0x0a;
	p[1] = 10;
	p[2] = 0x02;
	p[4] = swp ? 0x08 : 0;
	put_be16(p + 8, 0xffff);
	return 12;
}

/* MODE SENSE(6) of the control page: its byte 4 (SWP is 0x08); *wp the
 * header's WP */
static uint8_t sense_control(int pc, bool *wp)
{
	uint8_t c[6] = { 0x1a, 0x08, (uint8_t)(pc << 6 | 0x0a), 0, 255 };

	ck_assert_int_eq(run(c, 6, 255), 0);
	ck_assert_int_eq(buf[3], 0);			/* DBD: no descriptor */
	ck_assert_int_eq(buf[4], 0x0a);
	*wp = buf[2] & 0x80;
	return buf[4 + 4];
}

static void expect_protected(bool on)
{
	uint8_t ws[16] = { 0x93, 0x08 }, um[10] = { 0x42 }, w[10] = { 0x2a };
	uint8_t pat[4] = { 1 };

	put_be32(ws + 10, 8);				/* WRITE SAME(16) UNMAP */
	put_be16(um + 7, 24);				/* UNMAP one descriptor */
	put_be16(w + 7, 1);				/* WRITE(10) one block */
	memset(buf, 0, 24);
	put_be16(buf, 22);
	put_be16(buf + 2, 16);
	put_be32(buf + 8 + 8, 8);
	run(um, 10, 24);
	if (on)
		expect_sense(SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
	else
		ck_assert_int_eq(cmd.status, 0);
	memset(buf, 0, BS);
	run(w, 10, BS);
	if (on)
		expect_sense(SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
	else
		ck_assert_int_eq(cmd.status, 0);
	run(ws, 16, BS);
	if (on)
		expect_sense(SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
	else
		ck_assert_int_eq(cmd.status, 0);
	if (on) {
		param(0x01, 4, pat);
		sanitize(0x01, 8, 8);
		expect_sense(SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
		sanitize(0x02, 0, 0);
		expect_sense(SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
	}
	ck_assert_int_eq(rd16(0, 1), 0);		/* reads go on */
}

START_TEST(swp)
{
	bool wp;

	/* changeable: SWP only; current and default 0 */
	ck_assert_int_eq(sense_control(1, &wp), 0x08);
	ck_assert_int_eq(sense_control(0, &wp), 0);
	ck_assert(!wp);
	expect_protected(false);
	/* MODE SELECT(6), no block descriptor: SWP 1 */
	memset(buf, 0, 4);
	control_page(buf + 4, true);
	ck_assert_int_eq(mode_select(false, 0x10, 16, 16), 0);
	ck_assert_int_eq(sense_control(0, &wp), 0x08);
	ck_assert(wp);
	ck_assert_int_eq(sense_control(2, &wp), 0);	/* default */
	expect_protected(true);
	/* refused lists change nothing */
	memset(buf, 0, 4);
	control_page(buf + 4, false);
	mode_select(false, 0x11, 16, 16);		/* SP */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	mode_select(false, 0x00, 16, 16);		/* PF 0 */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	mode_select(false, 0x10, 15, 15);		/* the page cut */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
	mode_select(false, 0x10, 16, 12);		/* short data-out */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
	buf[5] = 8;					/* wrong page length */
	mode_select(false, 0x10, 14, 14);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	control_page(buf + 4, false);
	buf[4] = 0x1c;					/* a page we do not have */
	mode_select(false, 0x10, 16, 16);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	buf[4] = 0x4a;					/* a subpage */
	mode_select(false, 0x10, 16, 16);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	/* a block descriptor with another block length */
	memset(buf, 0, 12);
	buf[3] = 8;
	put_be32(buf + 8, 4096);
	control_page(buf + 12, false);
	mode_select(false, 0x10, 24, 24);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	ck_assert_int_eq(sense_control(0, &wp), 0x08);
	expect_protected(true);
	/* MODE SELECT(10) with a block descriptor: SWP 0 lifts it */
	memset(buf, 0, 16);
	put_be16(buf + 6, 8);
	put_be32(buf + 12, BS);
	control_page(buf + 16, false);
	ck_assert_int_eq(mode_select(true, 0x10, 28, 28), 0);
	ck_assert_int_eq(sense_control(0, &wp), 0);
	ck_assert(!wp);
	expect_protected(false);
	/* a parameter list length of 0: nothing */
	ck_assert_int_eq(mode_select(false, 0x10, 0, 0), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("scsi_sanitize");
	TCase *tc = tcase_create("mem");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, overwrite);
	tcase_add_test(tc, overwrite_refused);
	tcase_add_test(tc, block_erase_and_others);
	tcase_add_test(tc, in_progress);
	tcase_add_test(tc, immed_paced);
	tcase_add_test(tc, detached);
	tcase_add_test(tc, stopped);
	tcase_add_test(tc, swp);
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
	return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
