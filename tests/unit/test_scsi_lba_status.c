/* SPDX-License-Identifier: MIT */
/*
 * GET LBA STATUS (proto/scsi/lba_status.c) on a thin volume: deallocated
 * where nothing is mapped, mapped where a write went, deallocated again
 * after UNMAP of whole chunks; descriptors from the starting LBA, cut at
 * the allocation length; LBA OUT OF RANGE past the end; LBPME, LBPRZ, the
 * provisioning VPD page and the unmap granularity (a chunk) say the same; REPORT SUPPORTED OPERATION
 * CODES lists it. A device with no map reports everything mapped.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/scsi.h"
#include "sand/thin.h"

#define CHUNK		(64u * 1024)
#define VOLSZ		(4u << 20)
#define BS		512u
#define NB		(VOLSZ / BS)
#define CB		(CHUNK / BS)	/* blocks per chunk */

#define ENV_BUF_SIZE	(64u * 1024)
#include "scsi_env.h"

static struct blkdev *vol;
static struct thin_pool *pool;
static const uint8_t uuid[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

static void setup(void)
{
	struct thin_format_opts fo = { .chunk_size = CHUNK };
	struct thin_open_opts oo = { .commit_ms = 600000 };

	ck_assert_int_eq(ev_loop_new(EV_EPOLL, 0, &loop), 0);
	ck_assert_int_eq(blk_mem_create("m", 16u << 20, BS, &mem), 0);
	ck_assert_int_eq(thin_pool_format(mem, &fo), 0);
	ck_assert_int_eq(thin_pool_open(mem, &oo, &pool), 0);
	ck_assert_int_eq(thin_vol_create(pool, "v", VOLSZ), 0);
	ck_assert_int_eq(thin_vol_open(pool, "v", &vol), 0);
	ck_assert_int_eq(blk_chan_open(vol, loop, &ch), 0);
	scsi_lu_init(&lu, vol, uuid, false);
}

static void teardown(void)
{
	blk_chan_close(ch, NULL, NULL);
	for (int i = 0; i < 100 && ev_inflight(loop); i++)
		ev_run_once(loop, 10);
	ck_assert_int_eq(blkdev_close(vol), 0);
	ck_assert_int_eq(thin_pool_close(pool), 0);
	ck_assert_int_eq(blkdev_close(mem), 0);
	ev_loop_free(loop);
}

/* GET LBA STATUS from lba with allocation length alloc */
static int glbas(uint64_t lba, uint32_t alloc)
{
	uint8_t c[16] = { 0x9e, 0x12 };

	put_be64(c + 2, lba);
	put_be32(c + 10, alloc);
	memset(buf, 0xee, sizeof(buf));
	return run(c, 16, alloc);
}

/* descriptor i is (lba, n, status) */
static void desc_is(unsigned i, uint64_t lba, uint32_t n, uint8_t st)
{
	const uint8_t *d = buf + 8 + 16 * i;

	ck_assert_uint_eq(get_be64(d), lba);
	ck_assert_uint_eq(get_be32(d + 8), n);
	ck_assert_uint_eq(d[12] & 0x0f, st);
}

static unsigned ndesc(void)
{
	ck_assert_uint_ge(cmd.xfer_len, 8);
	ck_assert_uint_eq((get_be32(buf) - 4) % 16, 0);
	return (get_be32(buf) - 4) / 16;
}

static void write_blocks(uint64_t lba, uint32_t n)
{
	uint8_t c[10] = { 0x2a };
	static uint8_t data[CHUNK * 2];

	ck_assert_uint_le(n * BS, sizeof(data));
	memset(data, 0x5a, n * BS);
	put_be32(c + 2, (uint32_t)lba);
	put_be16(c + 7, (uint16_t)n);
	memset(&cmd, 0, sizeof(cmd));
	memcpy(buf, data, n * BS);
	ck_assert_int_eq(run(c, 10, n * BS), 0);
}

static void unmap_blocks(uint64_t lba, uint32_t n)
{
	uint8_t c[10] = { 0x42 };

	put_be16(c + 7, 24);
	memset(buf, 0, 24);
	put_be16(buf, 22);
	put_be16(buf + 2, 16);
	put_be64(buf + 8, lba);
	put_be32(buf + 16, n);
	ck_assert_int_eq(run(c, 10, 24), 0);
}

START_TEST(thin_map)
{
	/* a new volume: one deallocated run */
	ck_assert_int_eq(glbas(0, 4096), 0);
	ck_assert_uint_eq(ndesc(), 1);
	ck_assert_uint_eq(cmd.xfer_len, 24);
	desc_is(0, 0, NB, 1);

	/* one block written maps its whole chunk */
	write_blocks(CB + 72, 1);
	ck_assert_int_eq(glbas(0, 4096), 0);
	ck_assert_uint_eq(ndesc(), 3);
	desc_is(0, 0, CB, 1);
	desc_is(1, CB, CB, 0);
	desc_is(2, 2 * CB, NB - 2 * CB, 1);

	/* from inside the mapped chunk */
	ck_assert_int_eq(glbas(CB + 2, 4096), 0);
	ck_assert_uint_eq(ndesc(), 2);
	desc_is(0, CB + 2, CB - 2, 0);
	desc_is(1, 2 * CB, NB - 2 * CB, 1);

	/* the allocation length cuts the list (and the device's answer) */
	ck_assert_int_eq(glbas(0, 24), 0);
	ck_assert_uint_eq(cmd.xfer_len, 24);
	ck_assert_uint_eq(ndesc(), 1);
	desc_is(0, 0, CB, 1);
	ck_assert_int_eq(glbas(0, 40), 0);
	ck_assert_uint_eq(ndesc(), 2);
	ck_assert_uint_eq(cmd.xfer_len, 40);
	ck_assert_int_eq(glbas(0, 16), 0);	/* less than one descriptor */
	ck_assert_uint_eq(cmd.xfer_len, 16);
	ck_assert_int_eq(glbas(0, 0), 0);
	ck_assert_uint_eq(cmd.xfer_len, 0);

	/* the last block, and past it */
	ck_assert_int_eq(glbas(NB - 1, 4096), 0);
	ck_assert_uint_eq(ndesc(), 1);
	desc_is(0, NB - 1, 1, 1);
	glbas(NB, 4096);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	glbas(~0ull, 4096);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);

	/* UNMAP of part of a chunk keeps it mapped (zeroed); of all of it,
	 * deallocates */
	unmap_blocks(CB, 8);
	ck_assert_int_eq(glbas(CB, 4096), 0);
	desc_is(0, CB, CB, 0);
	unmap_blocks(CB, CB);
	ck_assert_int_eq(glbas(0, 4096), 0);
	ck_assert_uint_eq(ndesc(), 1);
	desc_is(0, 0, NB, 1);

	/* deallocated blocks read as zeros, as LBPRZ says */
	{
		uint8_t c[10] = { 0x28 };

		put_be32(c + 2, CB + 72);
		put_be16(c + 7, 1);
		memset(buf, 0xee, BS);
		ck_assert_int_eq(run(c, 10, BS), 0);
		for (unsigned i = 0; i < BS; i++)
			ck_assert_uint_eq(buf[i], 0);
	}
}
END_TEST

START_TEST(thin_vpd_consistent)
{
	uint8_t rc16[16] = { 0x9e, 0x10 }, rsoc[12] = { 0xa3, 0x0c, 0x02, 0x9e, 0x00, 0x12 };

	put_be32(rc16 + 10, 32);
	ck_assert_int_eq(run(rc16, 16, 32), 0);
	ck_assert_uint_eq(buf[14] & 0xc0, 0xc0);	/* LBPME, LBPRZ */
	ck_assert_int_eq(run((const uint8_t[]){ 0x12, 1, 0xb2, 0, 64, 0 }, 6, 64), 0);
	ck_assert_uint_eq(buf[5] & 0x84, 0x84);	/* LBPU, LBPRZ */
	ck_assert_uint_eq(buf[6] & 0x07, 2);		/* thin provisioned */
	ck_assert_int_eq(run((const uint8_t[]){ 0x12, 1, 0xb0, 0, 64, 0 }, 6, 64), 0);
	ck_assert_uint_eq(get_be32(buf + 28), CB);	/* optimal unmap granularity: a chunk */
	put_be32(rsoc + 6, 64);
	ck_assert_int_eq(run(rsoc, 12, 64), 0);
	ck_assert_uint_eq(buf[1] & 0x07, 3);		/* supported */
}
END_TEST

/* A device without a map: everything mapped, in one descriptor */
START_TEST(no_map)
{
	struct blkdev *nul;
	struct blkchan *nch;
	struct scsi_lu nlu;
	uint8_t c[16] = { 0x9e, 0x12 };

	ck_assert_int_eq(blk_null_create("n", VOLSZ, BS, &nul), 0);
	ck_assert_int_eq(blk_chan_open(nul, loop, &nch), 0);
	scsi_lu_init(&nlu, nul, uuid, false);
	put_be64(c + 2, 5);
	put_be32(c + 10, 4096);
	memset(&cmd, 0, sizeof(cmd));
	memcpy(cmd.cdb, c, 16);
	cmd.lu = &nlu;
	cmd.ch = nch;
	cmd.buf = buf;
	cmd.buf_len = 4096;
	cmd.nexus = 1;
	cmd.done = on_done;
	done = false;
	ck_assert_int_eq(scsi_exec(&cmd), SCSI_PENDING);
	for (int i = 0; i < 1000 && !done; i++)
		ev_run_once(loop, 10);
	ck_assert(done);
	ck_assert_int_eq(cmd.status, 0);
	ck_assert_uint_eq(ndesc(), 1);
	desc_is(0, 5, NB - 5, 0);
	blk_chan_close(nch, NULL, NULL);
	ck_assert_int_eq(blkdev_close(nul), 0);
}
END_TEST

static Suite *lbas_suite(void)
{
	Suite *s = suite_create("scsi_lba_status");
	TCase *tc = tcase_create("lbas");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, thin_map);
	tcase_add_test(tc, thin_vpd_consistent);
	tcase_add_test(tc, no_map);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(lbas_suite());
	int nfail;

	srunner_run_all(sr, CK_NORMAL);
	nfail = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nfail ? EXIT_FAILURE : EXIT_SUCCESS;
}
