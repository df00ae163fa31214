/* SPDX-License-Identifier: MIT */
/*
 * The SCSI unit tests' harness: one command at a time through scsi_exec
 * on the loop (run, RUN), and its sense (expect_sense). The LU is `lu` on
 * channel `ch`; a test sets them up itself, or uses setup_bs/env_teardown
 * for one memory device of DEV_SIZE bytes (defined before the include).
 * ENV_BUF_SIZE (default 1 MiB) sizes the data buffer; env_luns/env_nluns
 * are what REPORT LUNS sees.
 */
#ifndef SAND_TESTS_SCSI_ENV_H
#define SAND_TESTS_SCSI_ENV_H

#include <check.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/scsi.h"

#ifndef ENV_BUF_SIZE
#define ENV_BUF_SIZE	(1u << 20)
#endif

static struct ev_loop *loop;
static struct blkdev *mem __attribute__((unused));
static struct blkchan *ch;
static struct scsi_lu lu;
static struct scsi_cmd cmd;
static bool done;
static uint8_t buf[ENV_BUF_SIZE];
static const uint64_t *env_luns;
static unsigned env_nluns;
static unsigned *env_mode_seen;	/* cmd.mode_seen (MODE SELECT changes seen) */
static const uint8_t env_uuid[16] __attribute__((unused)) = { 1, 2, 3 };

static inline void on_done(struct scsi_cmd *c)
{
	ck_assert_ptr_eq(c, &cmd);
	done = true;
}

#ifdef DEV_SIZE
/* block size bs, io_boundary chunk, physical block phys (0: bs) */
static inline void setup_bs(uint32_t bs, uint32_t chunk, uint32_t phys)
{
	ck_assert_int_eq(ev_loop_new(EV_AUTO, 0, &loop), 0);
	ck_assert_int_eq(blk_mem_create("m", DEV_SIZE, bs, &mem), 0);
	mem->io_boundary = chunk;
	mem->phys_block = phys;
	ck_assert_int_eq(blk_chan_open(mem, loop, &ch), 0);
	scsi_lu_init(&lu, mem, env_uuid, false);
}

static inline void env_teardown(void)
{
	blk_chan_close(ch, NULL, NULL);
	for (int i = 0; i < 100 && ev_inflight(loop); i++)
		ev_run_once(loop, 10);
	ck_assert_int_eq(blkdev_close(mem), 0);
	ev_loop_free(loop);
}
#endif

/* Run one CDB on lu (nexus 1) with buf_len bytes of buf; returns the
 * status. */
static inline int run(const uint8_t *cdb, unsigned cdb_len, uint32_t buf_len)
{
	memset(&cmd, 0, sizeof(cmd));
	memcpy(cmd.cdb, cdb, cdb_len);
	cmd.lu = &lu;
	cmd.ch = ch;
	cmd.buf = buf;
	cmd.buf_len = buf_len;
	cmd.nexus = 1;
	cmd.luns = env_luns;
	cmd.nluns = env_nluns;
	cmd.mode_seen = env_mode_seen;
	cmd.done = on_done;
	done = false;
	if (scsi_exec(&cmd) == SCSI_PENDING) {
		ck_assert(!done);	/* never inside scsi_exec */
		for (int i = 0; i < 100000 && !done; i++)
			ev_run_once(loop, 10);
		ck_assert(done);
	} else {
		ck_assert(!done);
	}
	return cmd.status;
}

#define RUN(len, ...) ({ const uint8_t _c[] = { __VA_ARGS__ }; run(_c, sizeof(_c), len); })

/* fixed-format sense with this key and ASC/ASCQ */
static inline void expect_sense(uint8_t key, uint16_t asc)
{
	ck_assert_int_eq(cmd.status, SCSI_STATUS_CHECK_CONDITION);
	ck_assert_int_eq(cmd.sense_len, 18);
	ck_assert_int_eq(cmd.sense[0] & 0x7f, 0x70);
	ck_assert_int_eq(cmd.sense[2], key);
	ck_assert_int_eq(cmd.sense[12] << 8 | cmd.sense[13], asc);
}

#endif
