/* SPDX-License-Identifier: MIT */
/*
 * SCSI command execution (proto/scsi) against memory devices: each
 * command's data, and the sense for every bad CDB we can think of.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/fault.h"
#include "sand/scsi.h"

#define DEV_SIZE	(8u << 20)
#define BS		512u
#define NB		(DEV_SIZE / BS)

#define ENV_BUF_SIZE	(2u << 20)
#include "scsi_env.h"

static const uint64_t luns[] = { 0, 0x0001000000000000ull };

static const uint8_t uuid[16] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
				  1, 2, 3, 4, 5, 6, 7, 8 };

static void setup_dev(struct blkdev *bd)
{
	ck_assert_int_eq(blk_chan_open(bd, loop, &ch), 0);
	scsi_lu_init(&lu, bd, uuid, false);
	env_luns = luns;
	env_nluns = 2;
}

static void setup(void)
{
	ck_assert_int_eq(ev_loop_new(EV_AUTO, 0, &loop), 0);
	ck_assert_int_eq(blk_mem_create("m", DEV_SIZE, BS, &mem), 0);
	setup_dev(mem);
}

static void teardown(void) { env_teardown(); }

/* how many of the first len bytes of p are v (one assertion per buffer:
 * Check reports every assertion to its parent) */
static uint32_t count_bytes(const uint8_t *p, uint32_t len, uint8_t v)
{
	uint32_t n = 0;

	while (n < len && p[n] == v)
		n++;
	return n;
}

static void rw16(uint8_t op, uint64_t lba, uint32_t n, uint32_t buf_len)
{
	uint8_t c[16] = { op };

	put_be64(c + 2, lba);
	put_be32(c + 10, n);
	run(c, 16, buf_len);
}

START_TEST(inquiry_standard)
{
	ck_assert_int_eq(RUN(255, 0x12, 0, 0, 0, 255, 0), 0);
	ck_assert_uint_eq(cmd.xfer_len, 66);
	ck_assert(cmd.data_in);
	ck_assert_int_eq(buf[0], 0);
	ck_assert_int_eq(buf[2], 6);
	ck_assert_int_eq(buf[4], 61);
	ck_assert_mem_eq(buf + 8, "SAND    ", 8);
	/* allocation length cuts */
	ck_assert_int_eq(RUN(255, 0x12, 0, 0, 0, 5, 0), 0);
	ck_assert_uint_eq(cmd.xfer_len, 5);
	/* EVPD=0 with a page code, CmdDt, NACA */
	RUN(255, 0x12, 0, 0x80, 0, 255, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	ck_assert_int_eq(cmd.sense[15], 0xc0);
	ck_assert_int_eq(get_be16(cmd.sense + 16), 2);
	RUN(255, 0x12, 2, 0, 0, 255, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	RUN(255, 0x12, 0, 0, 0, 255, 0x04);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	/* no LU: peripheral qualifier 3 */
	ck_assert_int_eq(RUN(255, 0x12, 0, 0, 0, 255, 0), 0);
	cmd.lu = NULL;
	memset(&cmd, 0, sizeof(cmd));
}
END_TEST

START_TEST(inquiry_no_lu)
{
	const uint8_t inq[6] = { 0x12, 0, 0, 0, 255, 0 }, tur[6] = { 0 };

	memset(&cmd, 0, sizeof(cmd));
	memcpy(cmd.cdb, inq, 6);
	cmd.buf = buf;
	cmd.buf_len = 255;
	cmd.done = on_done;
	ck_assert_int_eq(scsi_exec(&cmd), SCSI_DONE);
	ck_assert_int_eq(cmd.status, 0);
	ck_assert_int_eq(buf[0], 0x7f);
	memcpy(cmd.cdb, tur, 6);
	ck_assert_int_eq(scsi_exec(&cmd), SCSI_DONE);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
}
END_TEST

START_TEST(inquiry_vpd)
{
	ck_assert_int_eq(RUN(255, 0x12, 1, 0x00, 0, 255, 0), 0);
	ck_assert_int_eq(buf[1], 0);
	ck_assert_int_eq(get_be16(buf + 2), 6);
	ck_assert_int_eq(buf[4], 0x00);
	ck_assert_int_eq(buf[9], 0xb2);
	ck_assert_int_eq(RUN(255, 0x12, 1, 0x80, 0, 255, 0), 0);
	ck_assert_mem_eq(buf + 4, "123456789abcdef00102030405060708", 32);
	ck_assert_int_eq(RUN(255, 0x12, 1, 0x83, 0, 255, 0), 0);
	ck_assert_int_eq(buf[4], 0x01);		/* binary */
	ck_assert_int_eq(buf[5], 0x03);		/* LU, NAA */
	ck_assert_int_eq(buf[7], 8);
	ck_assert_int_eq(buf[8] >> 4, 3);	/* NAA 3 */
	ck_assert_int_eq(buf[9], 0x34);
	ck_assert_int_eq(buf[16 + 1], 0x01);	/* T10 vendor id */
	ck_assert_int_eq(RUN(255, 0x12, 1, 0xb0, 0, 255, 0), 0);
	ck_assert_int_eq(get_be16(buf + 2), 0x3c);
	ck_assert_int_eq(buf[4] & 1, 0);	/* WSNZ 0: 0 blocks = to the end */
	ck_assert_uint_eq(get_be32(buf + 8), (16u << 20) / BS);
	ck_assert_uint_eq(get_be32(buf + 24), 256);
	ck_assert_int_eq(RUN(255, 0x12, 1, 0xb1, 0, 255, 0), 0);
	ck_assert_int_eq(get_be16(buf + 4), 1);
	ck_assert_int_eq(RUN(255, 0x12, 1, 0xb2, 0, 255, 0), 0);
	ck_assert_int_eq(buf[5] & 0xe4, 0xe4);
	RUN(255, 0x12, 1, 0x99, 0, 255, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
}
END_TEST

START_TEST(read_capacity)
{
	ck_assert_int_eq(RUN(8, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0);
	ck_assert_uint_eq(get_be32(buf), NB - 1);
	ck_assert_uint_eq(get_be32(buf + 4), BS);
	RUN(8, 0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0);	/* LBA without PMI */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	ck_assert_int_eq(RUN(32, 0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0), 0);
	ck_assert_uint_eq(get_be64(buf), NB - 1);
	ck_assert_uint_eq(get_be32(buf + 8), BS);
	ck_assert_int_eq(buf[14], 0xc0);
	ck_assert_uint_eq(cmd.xfer_len, 32);
	RUN(32, 0x9e, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
}
END_TEST

START_TEST(read_write)
{
	static const uint8_t wr[] = { 0x0a, 0x2a, 0xaa, 0x8a }, rd[] = { 0x08, 0x28, 0xa8, 0x88 };

	for (unsigned k = 0; k < 4; k++) {
		uint8_t c[16] = { wr[k] };
		unsigned len = k == 0 ? 6 : k == 1 ? 10 : k == 2 ? 12 : 16;
		uint64_t lba = 100 + k * 20;

		memset(buf, 0xa0 + k, 8 * BS);
		switch (k) {
		case 0: c[3] = (uint8_t)lba; c[4] = 8; break;
		case 1: put_be32(c + 2, (uint32_t)lba); put_be16(c + 7, 8); c[1] = 0x08; break;
		case 2: put_be32(c + 2, (uint32_t)lba); put_be32(c + 6, 8); break;
		case 3: put_be64(c + 2, lba); put_be32(c + 10, 8); c[1] = 0x08; break;
		}
		ck_assert_int_eq(run(c, len, 8 * BS), 0);
		ck_assert_uint_eq(cmd.xfer_len, 8 * BS);
		memset(buf, 0, 8 * BS);
		c[0] = rd[k];
		ck_assert_int_eq(run(c, len, 8 * BS), 0);
		ck_assert(cmd.data_in);
		for (unsigned i = 0; i < 8 * BS; i++)
			ck_assert_int_eq(buf[i], 0xa0 + k);
	}
	/* READ(6) with length 0 means 256 blocks */
	ck_assert_int_eq(RUN(256 * BS, 0x08, 0, 0, 0, 0, 0), 0);
	ck_assert_uint_eq(cmd.xfer_len, 256 * BS);
	/* READ(10) with length 0 transfers nothing */
	ck_assert_int_eq(RUN(0, 0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0);
	ck_assert_uint_eq(cmd.xfer_len, 0);
	/* a short buffer: the transfer length is still reported (overflow) */
	ck_assert_int_eq(RUN(BS, 0x28, 0, 0, 0, 0, 100, 0, 0, 4, 0), 0);
	ck_assert_uint_eq(cmd.xfer_len, 4 * BS);
	ck_assert_int_eq(buf[0], 0xa0);
}
END_TEST

START_TEST(rw_bad_cdbs)
{
	rw16(0x88, NB - 1, 2, 2 * BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	rw16(0x8a, NB, 1, BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	rw16(0x88, ~0ull, 1, BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	rw16(0x88, NB - 1, 1, BS);
	ck_assert_int_eq(cmd.status, 0);
	RUN(BS, 0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0);	/* RDPROTECT */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	RUN(BS, 0x2a, 0x20, 0, 0, 0, 0, 0, 0, 1, 0);	/* WRPROTECT */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	/* less data than blocks: the whole blocks given are written, and the
	 * transfer length says how much was wanted (overflow) */
	memset(buf, 0x77, 2 * BS);
	ck_assert_int_eq(RUN(BS, 0x2a, 0, 0, 0, 0, 0, 0, 0, 2, 0), 0);
	ck_assert_uint_eq(cmd.xfer_len, 2 * BS);
	memset(buf, 0x66, 2 * BS);
	ck_assert_int_eq(RUN(BS + 100, 0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0), 0);
	ck_assert_int_eq(RUN(3 * BS, 0x28, 0, 0, 0, 0, 0, 0, 0, 3, 0), 0);
	ck_assert_int_eq(buf[0], 0x77);
	ck_assert_int_eq(buf[BS], 0x66);
	ck_assert_int_eq(buf[2 * BS], 0);
	ck_assert_int_eq(RUN(0, 0x2a, 0, 0, 0, 0, 2, 0, 0, 1, 0), 0);	/* EDTL 0 */
	ck_assert_uint_eq(cmd.xfer_len, BS);
	ck_assert_int_eq(RUN(BS, 0x28, 0, 0, 0, 0, 2, 0, 0, 1, 0), 0);
	ck_assert_int_eq(buf[0], 0);
	RUN(BS, 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0x04);	/* NACA */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	RUN(0, 0xff, 0, 0, 0, 0, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
	RUN(0, 0x15, 0x01, 0, 0, 0, 0);			/* MODE SELECT SP: nothing saved */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	/* read-only LU */
	lu.readonly = true;
	RUN(BS, 0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0);
	expect_sense(SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
	RUN(BS, 0x41, 0, 0, 0, 0, 0, 0, 0, 1, 0);
	expect_sense(SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
	ck_assert_int_eq(RUN(BS, 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0), 0);
	ck_assert_int_eq(RUN(255, 0x1a, 0, 0x3f, 0, 255, 0), 0);
	ck_assert_int_eq(buf[2] & 0x80, 0x80);		/* WP */
}
END_TEST

START_TEST(small_commands)
{
	ck_assert_int_eq(RUN(0, 0, 0, 0, 0, 0, 0), 0);		/* TUR */
	ck_assert_int_eq(RUN(0, 0x1b, 0, 0, 0, 1, 0), 0);	/* START STOP */
	/* READ DEFECT DATA: an empty list */
	ck_assert_int_eq(RUN(64, 0x37, 0, 0x18 | 4, 0, 0, 0, 0, 0, 64, 0), 0);
	ck_assert_uint_eq(cmd.xfer_len, 4);
	ck_assert_int_eq(buf[1], 0x1c);
	ck_assert_int_eq(get_be16(buf + 2), 0);
	ck_assert_int_eq(RUN(64, 0xb7, 0x08 | 5, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0), 0);
	ck_assert_uint_eq(cmd.xfer_len, 8);
	ck_assert_int_eq(buf[1], 0x0d);
	ck_assert_uint_eq(get_be32(buf + 4), 0);
	/* REPORT LUNS */
	ck_assert_int_eq(RUN(64, 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0), 0);
	ck_assert_uint_eq(get_be32(buf), 16);
	ck_assert_uint_eq(get_be64(buf + 16), 0x0001000000000000ull);
	ck_assert_uint_eq(cmd.xfer_len, 24);
	RUN(64, 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	RUN(64, 0xa0, 0, 3, 0, 0, 0, 0, 0, 0, 64, 0, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	/* REQUEST SENSE */
	ck_assert_int_eq(RUN(18, 0x03, 0, 0, 0, 18, 0), 0);
	ck_assert_int_eq(buf[0], 0x70);
	ck_assert_int_eq(buf[2], 0);
	RUN(18, 0x03, 1, 0, 0, 18, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	/* SYNCHRONIZE CACHE */
	ck_assert_int_eq(RUN(0, 0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0);
	ck_assert_int_eq(RUN(0, 0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0), 0);
	RUN(0, 0x35, 0, 0, 0, 0x40, 0, 0, 0, 1, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
}
END_TEST

START_TEST(mode_sense)
{
	ck_assert_int_eq(RUN(255, 0x1a, 0, 0x08, 0, 255, 0), 0);
	ck_assert_uint_eq(cmd.xfer_len, 4 + 8 + 20);
	ck_assert_int_eq(buf[0], 4 + 8 + 20 - 1);
	ck_assert_int_eq(buf[3], 8);
	ck_assert_uint_eq(get_be32(buf + 4), NB);
	ck_assert_int_eq(buf[12], 0x08);
	ck_assert_int_eq(buf[14] & 0x04, 0x04);		/* WCE */
	ck_assert_int_eq(RUN(255, 0x1a, 0x08, 0x0a, 0, 255, 0), 0);	/* DBD */
	ck_assert_int_eq(buf[3], 0);
	ck_assert_int_eq(buf[4], 0x0a);
	ck_assert_int_eq(RUN(255, 0x5a, 0, 0x3f, 0, 0, 0, 0, 1, 0, 0), 0);
	ck_assert_uint_eq(get_be16(buf), 8 + 8 + 20 + 12 - 2);
	ck_assert_int_eq(RUN(255, 0x1a, 0, 0x48, 0, 255, 0), 0);	/* changeable */
	ck_assert_int_eq(buf[14], 0x04);				/* WCE */
	RUN(255, 0x1a, 0, 0xc8, 0, 255, 0);				/* saved */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_SAVING_PARAMS_UNSUP);
	RUN(255, 0x1a, 0, 0x19, 0, 255, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	RUN(255, 0x1a, 0, 0x08, 1, 255, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
}
END_TEST

/* MODE SELECT(6) of one page (len bytes at p, after the 4-byte header) */
static int select_page(const uint8_t *p, uint8_t len)
{
	memset(buf, 0, 4);
	memcpy(buf + 4, p, len);
	return RUN(4u + len, 0x15, 0x10, 0, 0, (uint8_t)(4 + len), 0);
}

/*
 * The shared mode parameters: the control page says TST 001b (a task set
 * per I_T nexus) and TAS 1, both SWP and TAS changeable, the caching
 * page's WCE changeable; a MODE SELECT that changes one moves lu.mode_gen
 * (MODE PARAMETERS CHANGED for the other nexuses) and marks it seen for
 * the nexus that sent it; one that changes nothing does not. WCE 0: every
 * write is FUA (none is left at risk in the fault device's record).
 */
START_TEST(mode_select_shared)
{
	uint8_t caching[20] = { 0x08, 18 }, control[12] = { 0x0a, 10, 0x22 };
	unsigned seen = lu.mode_gen + 1;
	struct blkdev *f;

	ck_assert_int_eq(RUN(255, 0x1a, 0x08, 0x8a, 0, 255, 0), 0);	/* default */
	ck_assert_int_eq(buf[4 + 2] >> 5, 1);				/* TST */
	ck_assert_int_eq(buf[4 + 5] & 0x40, 0x40);			/* TAS */
	ck_assert_int_eq(RUN(255, 0x1a, 0x08, 0x4a, 0, 255, 0), 0);	/* changeable */
	ck_assert_int_eq(buf[4 + 4], 0x08);				/* SWP */
	ck_assert_int_eq(buf[4 + 5], 0x40);				/* TAS */
	ck_assert(lu.tas && lu.wce);

	blk_chan_close(ch, NULL, NULL);
	ck_assert_int_eq(blk_fault_create("f", mem, &f), 0);
	setup_dev(f);
	ck_assert_int_eq(fault_record(f, true), 0);
	ck_assert_int_eq(RUN(BS, 0x2a, 0, 0, 0, 0, 3, 0, 0, 1, 0), 0);
	ck_assert_int_eq(fault_unflushed_count(f), 1);		/* write cache on */

	control[5] = 0;						/* TAS 0 */
	put_be16(control + 8, 0xffff);
	env_mode_seen = &seen;
	ck_assert_int_eq(select_page(control, sizeof(control)), 0);
	ck_assert(!lu.tas);
	ck_assert_uint_eq(lu.mode_gen, 1);
	ck_assert_uint_eq(seen, 2);		/* its own change: seen */
	ck_assert_int_eq(select_page(control, sizeof(control)), 0);	/* no change */
	ck_assert_uint_eq(lu.mode_gen, 1);
	ck_assert_uint_eq(seen, 2);
	ck_assert_int_eq(RUN(255, 0x1a, 0x08, 0x0a, 0, 255, 0), 0);	/* current */
	ck_assert_int_eq(buf[4 + 5] & 0x40, 0);

	seen = 1;			/* a nexus that missed the first change */
	ck_assert_int_eq(select_page(caching, sizeof(caching)), 0);	/* WCE 0 */
	ck_assert(!lu.wce);
	ck_assert_uint_eq(lu.mode_gen, 2);
	ck_assert_uint_eq(seen, 1);		/* still to be told of the first */
	env_mode_seen = NULL;
	ck_assert_int_eq(RUN(255, 0x1a, 0x08, 0x08, 0, 255, 0), 0);
	ck_assert_int_eq(buf[4 + 2] & 0x04, 0);
	ck_assert_int_eq(RUN(BS, 0x2a, 0, 0, 0, 0, 4, 0, 0, 1, 0), 0);
	ck_assert_int_eq(fault_unflushed_count(f), 1);		/* that one was FUA */
	caching[2] = 0x04;
	ck_assert_int_eq(select_page(caching, sizeof(caching)), 0);	/* WCE 1 again */
	ck_assert(lu.wce);
	ck_assert_int_eq(RUN(BS, 0x2a, 0, 0, 0, 0, 5, 0, 0, 1, 0), 0);
	ck_assert_int_eq(fault_unflushed_count(f), 2);

	ck_assert_int_eq(fault_record(f, false), 0);
	blk_chan_close(ch, NULL, NULL);
	for (int i = 0; i < 100 && ev_inflight(loop); i++)
		ev_run_once(loop, 10);
	ck_assert_int_eq(blkdev_close(f), 0);
	ck_assert_int_eq(blk_chan_open(mem, loop, &ch), 0);
}
END_TEST

START_TEST(write_same_unmap_verify)
{
	uint8_t c16[16] = { 0x93 };

	/* pattern */
	memset(buf, 0x5c, BS);
	put_be64(c16 + 2, 10);
	put_be32(c16 + 10, 3000);
	ck_assert_int_eq(run(c16, 16, BS), 0);
	rw16(0x88, 10, 3000, 3000 * BS);
	ck_assert_int_eq(cmd.status, 0);
	ck_assert_uint_eq(count_bytes(buf, 3000 * BS, 0x5c), 3000 * BS);
	/* VERIFY with BYTCHK: match, then miscompare */
	memset(buf, 0x5c, 4 * BS);
	ck_assert_int_eq(RUN(4 * BS, 0x2f, 0x02, 0, 0, 0, 10, 0, 0, 4, 0), 0);
	buf[BS + 3] = 0;
	RUN(4 * BS, 0x2f, 0x02, 0, 0, 0, 10, 0, 0, 4, 0);
	expect_sense(SK_MISCOMPARE, ASC_MISCOMPARE_VERIFY);
	ck_assert_int_eq(RUN(0, 0x2f, 0, 0, 0, 0, 10, 0, 0, 4, 0), 0);
	RUN(0, 0x2f, 0x04, 0, 0, 0, 10, 0, 0, 4, 0);		/* BYTCHK 2 */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	/* zeros with UNMAP */
	memset(buf, 0, BS);
	ck_assert_int_eq(RUN(BS, 0x41, 0x08, 0, 0, 0, 10, 0, 0, 100, 0), 0);
	rw16(0x88, 10, 101, 101 * BS);
	ck_assert_uint_eq(count_bytes(buf, 100 * BS, 0), 100 * BS);
	ck_assert_int_eq(buf[100 * BS], 0x5c);
	/* WRITE SAME: out of range, ANCHOR (0 blocks: test_scsi_atomic.c) */
	RUN(BS, 0x41, 0, 0, 0, 0x40, 0, 0, 0, 1, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	RUN(BS, 0x41, 0x10, 0, 0, 0, 0, 0, 0, 1, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	/* UNMAP two descriptors */
	memset(buf, 0, 40);
	put_be16(buf, 38);
	put_be16(buf + 2, 32);
	put_be64(buf + 8, 200);
	put_be32(buf + 16, 10);
	put_be64(buf + 24, 2000);
	put_be32(buf + 32, 10);
	ck_assert_int_eq(RUN(40, 0x42, 0, 0, 0, 0, 0, 0, 0, 40, 0), 0);
	rw16(0x88, 200, 1, BS);
	for (unsigned i = 0; i < BS; i++)
		ck_assert_int_eq(buf[i], 0);
	rw16(0x88, 2010, 1, BS);
	ck_assert_int_eq(buf[0], 0x5c);
	/* a descriptor out of range, a bad length */
	put_be16(buf, 22);
	put_be16(buf + 2, 16);
	put_be64(buf + 8, NB);
	put_be32(buf + 16, 1);
	RUN(24, 0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	put_be16(buf + 2, 15);
	RUN(24, 0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
	RUN(24, 0x42, 0, 0, 0, 0, 0, 0, 0, 4, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
	ck_assert_int_eq(RUN(0, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0);
}
END_TEST

START_TEST(write_verify_prefetch_verify12)
{
	static const uint8_t wv[] = { 0x2e, 0xae, 0x8e };

	for (unsigned k = 0; k < 3; k++) {
		uint8_t c[16] = { wv[k] };
		unsigned len = k == 0 ? 10 : k == 1 ? 12 : 16;

		switch (k) {
		case 0: put_be32(c + 2, 50); put_be16(c + 7, 2); break;
		case 1: put_be32(c + 2, 50); put_be32(c + 6, 2); break;
		case 2: put_be64(c + 2, 50); put_be32(c + 10, 2); break;
		}
		memset(buf, 0x90 + k, 2 * BS);
		ck_assert_int_eq(run(c, len, 2 * BS), 0);
		ck_assert_uint_eq(cmd.bio_flags & BIO_FUA, BIO_FUA);
		/* VERIFY(12) with BYTCHK compares what was written */
		ck_assert_int_eq(RUN(2 * BS, 0xaf, 0x02, 0, 0, 0, 50, 0, 0, 0, 2, 0, 0), 0);
		buf[7] ^= 1;
		RUN(2 * BS, 0xaf, 0x02, 0, 0, 0, 50, 0, 0, 0, 2, 0, 0);
		expect_sense(SK_MISCOMPARE, ASC_MISCOMPARE_VERIFY);
	}
	ck_assert_int_eq(RUN(0, 0x34, 0, 0, 0, 0, 10, 0, 0, 8, 0), 0);
	RUN(0, 0x34, 0, 0, 0, 0x40, 0, 0, 0, 1, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	ck_assert_int_eq(RUN(0, 0x90, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 8, 0, 0), 0);
	lu.readonly = true;
	RUN(BS, 0x2e, 0, 0, 0, 0, 50, 0, 0, 1, 0);
	expect_sense(SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
}
END_TEST

START_TEST(compare_and_write)
{
	uint8_t c[16] = { 0x89 };

	put_be64(c + 2, 300);
	c[13] = 2;
	memset(buf, 0, 2 * BS);			/* unwritten blocks read as zeros */
	memset(buf + 2 * BS, 0xc1, 2 * BS);
	ck_assert_int_eq(run(c, 16, 4 * BS), 0);
	ck_assert_uint_eq(cmd.xfer_len, 4 * BS);
	ck_assert_int_eq(lu.caw_busy, 0);
	/* now the compare data is stale: miscompare at byte 0, nothing written */
	memset(buf + 2 * BS, 0xc2, 2 * BS);
	run(c, 16, 4 * BS);
	expect_sense(SK_MISCOMPARE, ASC_MISCOMPARE_VERIFY);
	ck_assert_int_eq(cmd.sense[0], 0xf0);
	ck_assert_uint_eq(get_be32(cmd.sense + 3), 0);
	memset(buf, 0xc1, 2 * BS);
	buf[BS + 5] = 0;
	run(c, 16, 4 * BS);
	expect_sense(SK_MISCOMPARE, ASC_MISCOMPARE_VERIFY);
	ck_assert_uint_eq(get_be32(cmd.sense + 3), BS + 5);
	rw16(0x88, 300, 2, 2 * BS);
	for (unsigned i = 0; i < 2 * BS; i++)
		ck_assert_int_eq(buf[i], 0xc1);
	/* a match with FUA */
	memset(buf, 0xc1, 2 * BS);
	memset(buf + 2 * BS, 0xc3, 2 * BS);
	c[1] = 0x08;
	ck_assert_int_eq(run(c, 16, 4 * BS), 0);
	ck_assert_uint_eq(cmd.bio_flags, BIO_FUA);
	c[1] = 0;
	/* bad fields: too many blocks, short data, out of range, busy */
	c[13] = 65;
	run(c, 16, 130 * BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	c[13] = 2;
	run(c, 16, 3 * BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	run(c, 16, 5 * BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	c[13] = 0;
	run(c, 16, 4 * BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	ck_assert_int_eq(run(c, 16, 0), 0);
	c[13] = 2;
	put_be64(c + 2, NB - 1);
	run(c, 16, 4 * BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	put_be64(c + 2, 300);
	lu.caw_busy = 1;
	ck_assert_int_eq(run(c, 16, 4 * BS), SCSI_STATUS_BUSY);
	lu.caw_busy = 0;
	/* ORWRITE */
	memset(buf, 0x0c, 2 * BS);
	c[0] = 0x8b;
	put_be32(c + 10, 2);
	c[13] = 2;
	ck_assert_int_eq(run(c, 16, 2 * BS), 0);
	ck_assert_int_eq(lu.caw_busy, 0);
	rw16(0x88, 300, 2, 2 * BS);
	for (unsigned i = 0; i < 2 * BS; i++)
		ck_assert_int_eq(buf[i], 0xc3 | 0x0c);
	put_be64(c + 2, NB);
	run(c, 16, 2 * BS);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
}
END_TEST

START_TEST(reserve_release)
{
	static const uint8_t reserve6[6] = { 0x16 }, release6[6] = { 0x17 };
	static const uint8_t tur[6] = { 0 }, inq[6] = { 0x12, 0, 0, 0, 36, 0 };
	static const uint8_t reserve10[10] = { 0x56 }, release10[10] = { 0x57 };
	uint64_t other = 2;

	/* run() uses nexus 0 unless set: use explicit nexus ids */
#define AS(nx, c_) ({ memset(&cmd, 0, sizeof(cmd)); memcpy(cmd.cdb, c_, sizeof(c_)); \
		cmd.lu = &lu; cmd.ch = ch; cmd.buf = buf; cmd.buf_len = 255; cmd.nexus = (nx); \
		cmd.done = on_done; ck_assert_int_eq(scsi_exec(&cmd), SCSI_DONE); cmd.status; })
	ck_assert_int_eq(AS(1, reserve6), 0);
	ck_assert_uint_eq(lu.reserved_by, 1);
	ck_assert_int_eq(AS(1, reserve6), 0);			/* again: fine */
	ck_assert_int_eq(AS(other, reserve6), SCSI_STATUS_RESERVATION_CONFLICT);
	ck_assert_int_eq(AS(other, reserve10), SCSI_STATUS_RESERVATION_CONFLICT);
	ck_assert_int_eq(AS(other, tur), SCSI_STATUS_RESERVATION_CONFLICT);
	ck_assert_int_eq(AS(other, inq), 0);			/* allowed */
	ck_assert_int_eq(AS(other, release6), 0);		/* no effect */
	ck_assert_uint_eq(lu.reserved_by, 1);
	ck_assert_int_eq(AS(1, tur), 0);
	ck_assert_int_eq(AS(1, release10), 0);
	ck_assert_uint_eq(lu.reserved_by, 0);
	ck_assert_int_eq(AS(other, reserve10), 0);
	scsi_lu_release_nexus(&lu, 1);				/* not the holder */
	ck_assert_uint_eq(lu.reserved_by, other);
	scsi_lu_release_nexus(&lu, other);			/* nexus lost */
	ck_assert_uint_eq(lu.reserved_by, 0);
	ck_assert_int_eq(AS(1, reserve6), 0);
	scsi_lu_reset(&lu);
	ck_assert_uint_eq(lu.reserved_by, 0);
	ck_assert_uint_eq(lu.reset_gen, 1);
#undef AS
}
END_TEST

START_TEST(report_opcodes)
{
	ck_assert_int_eq(RUN(4096, 0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0), 0);
	ck_assert_uint_eq(get_be32(buf) % 8, 0);
	ck_assert_uint_gt(get_be32(buf), 8 * 20);
	ck_assert_int_eq(RUN(4096, 0xa3, 0x0c, 1, 0x28, 0, 0, 0, 0, 0x10, 0, 0, 0), 0);
	ck_assert_int_eq(buf[1] & 7, 3);
	ck_assert_int_eq(get_be16(buf + 2), 10);
	ck_assert_int_eq(buf[4], 0x28);
	ck_assert_int_eq(RUN(4096, 0xa3, 0x0c, 1, 0x29, 0, 0, 0, 0, 0x10, 0, 0, 0), 0);
	ck_assert_int_eq(buf[1] & 7, 1);
	ck_assert_int_eq(RUN(4096, 0xa3, 0x0c, 2, 0x9e, 0, 0x10, 0, 0, 0x10, 0, 0, 0), 0);
	ck_assert_int_eq(buf[1] & 7, 3);
	RUN(4096, 0xa3, 0x0c, 1, 0x9e, 0, 0, 0, 0, 0x10, 0, 0, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
}
END_TEST

START_TEST(errno_to_sense)
{
	static const struct { int err; uint8_t status, key; uint16_t asc; } m[] = {
		{ -ENOSPC, 2, SK_DATA_PROTECT, ASC_SPACE_ALLOC_FAILED_WP },
		{ -EROFS, 2, SK_DATA_PROTECT, ASC_WRITE_PROTECTED },
		{ -EIO, 2, SK_MEDIUM_ERROR, ASC_WRITE_ERROR },
		{ -ECANCELED, 2, SK_ABORTED_COMMAND, ASC_INTERNAL_TARGET_FAILURE },
		{ -ENOTCONN, 2, SK_HARDWARE_ERROR, ASC_INTERNAL_TARGET_FAILURE },
		{ -ENOMEM, SCSI_STATUS_BUSY, 0, 0 },
	};

	for (unsigned i = 0; i < ARRAY_SIZE(m); i++) {
		memset(&cmd, 0, sizeof(cmd));
		cmd.op = BIO_WRITE;
		scsi_errno_sense(&cmd, m[i].err);
		ck_assert_int_eq(cmd.status, m[i].status);
		if (m[i].status == 2)
			expect_sense(m[i].key, m[i].asc);
	}
	memset(&cmd, 0, sizeof(cmd));
	cmd.op = BIO_READ;
	scsi_errno_sense(&cmd, -EIO);
	expect_sense(SK_MEDIUM_ERROR, ASC_UNRECOVERED_READ_ERROR);
}
END_TEST

/* -ENOSPC from the device reaches the initiator as space allocation failed */
START_TEST(enospc_through_fault)
{
	struct blkdev *f;

	blk_chan_close(ch, NULL, NULL);
	ck_assert_int_eq(blk_fault_create("f", mem, &f), 0);
	setup_dev(f);
	ck_assert_int_eq(fault_fail_after(f, 0, FAULT_OPS_WRITE, -ENOSPC), 0);
	RUN(BS, 0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0);
	expect_sense(SK_DATA_PROTECT, ASC_SPACE_ALLOC_FAILED_WP);
	ck_assert_int_eq(RUN(BS, 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0), 0);
	ck_assert_int_eq(fault_fail_after(f, 0, FAULT_OP(BIO_READ), -EIO), 0);
	RUN(BS, 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0);
	expect_sense(SK_MEDIUM_ERROR, ASC_UNRECOVERED_READ_ERROR);
	blk_chan_close(ch, NULL, NULL);
	for (int i = 0; i < 100 && ev_inflight(loop); i++)
		ev_run_once(loop, 10);
	ck_assert_int_eq(blkdev_close(f), 0);
	ck_assert_int_eq(blk_chan_open(mem, loop, &ch), 0);
}
END_TEST

START_TEST(lun_codec)
{
	ck_assert_uint_eq(scsi_lun_encode(0), 0);
	ck_assert_uint_eq(scsi_lun_encode(5), 0x0005000000000000ull);
	ck_assert_uint_eq(scsi_lun_encode(300), 0x412c000000000000ull);
	ck_assert_int_eq(scsi_lun_decode(0x0005000000000000ull), 5);
	ck_assert_int_eq(scsi_lun_decode(0x412c000000000000ull), 300);
	ck_assert_int_eq(scsi_lun_decode(0x0105000000000000ull), -1);
	ck_assert_int_eq(scsi_lun_decode(0x0005000000000001ull), -1);
	ck_assert_int_eq(scsi_lun_decode(0xc000000000000000ull), -1);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("scsi_exec");
	TCase *tc = tcase_create("all");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, inquiry_standard);
	tcase_add_test(tc, inquiry_no_lu);
	tcase_add_test(tc, inquiry_vpd);
	tcase_add_test(tc, read_capacity);
	tcase_add_test(tc, read_write);
	tcase_add_test(tc, rw_bad_cdbs);
	tcase_add_test(tc, small_commands);
	tcase_add_test(tc, mode_sense);
	tcase_add_test(tc, mode_select_shared);
	tcase_add_test(tc, write_same_unmap_verify);
	tcase_add_test(tc, write_verify_prefetch_verify12);
	tcase_add_test(tc, compare_and_write);
	tcase_add_test(tc, reserve_release);
	tcase_add_test(tc, report_opcodes);
	tcase_add_test(tc, errno_to_sense);
	tcase_add_test(tc, enospc_through_fault);
	tcase_add_test(tc, lun_codec);
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
