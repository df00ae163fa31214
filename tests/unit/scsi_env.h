/* SPDX-License-Identifier: MIT */
/*
 * The SCSI unit tests' memory LU (test_scsi_atomic.c, test_scsi_sanitize.c):
 * one memory device of DEV_SIZE bytes (defined before the include) on a
 * loop, a LU over it, one command at a time through scsi_exec (run), and
 * its sense (expect_sense).
 */
#ifndef SAND_TESTS_SCSI_ENV_H
#define SAND_TESTS_SCSI_ENV_H

#include <check.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/scsi.h"

static struct ev_loop *loop;
static struct blkdev *mem;
static struct blkchan *ch;
static struct scsi_lu lu;
static struct scsi_cmd cmd;
static bool done;
static uint8_t buf[1 << 20];
static const uint8_t uuid[16] = { 1, 2, 3 };

static inline void on_done(struct scsi_cmd *c)
{
	ck_assert_ptr_eq(c, &cmd);
	done = true;
}

/* block size bs, io_boundary chunk, physical block phys (0: bs) */
static inline void setup_bs(uint32_t bs, uint32_t chunk, uint32_t phys)
{
	ck_assert_int_eq(ev_loop_new(EV_AUTO, 0, &loop), 0);
	ck_assert_int_eq(blk_mem_create("m", DEV_SIZE, bs, &mem), 0);
	mem->io_boundary = chunk;
	mem->phys_block = phys;
	ck_assert_int_eq(blk_chan_open(mem, loop, &ch), 0);
	scsi_lu_init(&lu, mem, uuid, false);
}

static inline void env_teardown(void)
{
	blk_chan_close(ch, NULL, NULL);
	for (int i = 0; i < 100 && ev_inflight(loop); i++)
		ev_run_once(loop, 10);
	ck_assert_int_eq(blkdev_close(mem), 0);
	ev_loop_free(loop);
}

static inline int run(const uint8_t *cdb, unsigned cdb_len, uint32_t buf_len)
{
	memset(&cmd, 0, sizeof(cmd));
	memcpy(cmd.cdb, cdb, cdb_len);
	cmd.lu = &lu;
	cmd.ch = ch;
	cmd.buf = buf;
	cmd.buf_len = buf_len;
	cmd.nexus = 1;
	cmd.done = on_done;
	done = false;
	if (scsi_exec(&cmd) == SCSI_PENDING) {
		ck_assert(!done);
		for (int i = 0; i < 100000 && !done; i++)
			ev_run_once(loop, 10);
		ck_assert(done);
	} else {
		ck_assert(!done);
	}
	return cmd.status;
}

static inline void expect_sense(uint8_t key, uint16_t asc)
{
	ck_assert_int_eq(cmd.status, SCSI_STATUS_CHECK_CONDITION);
	ck_assert_int_eq(cmd.sense[2], key);
	ck_assert_int_eq(cmd.sense[12] << 8 | cmd.sense[13], asc);
}

#endif
