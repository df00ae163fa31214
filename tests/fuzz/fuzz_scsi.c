/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for SCSI command execution (proto/scsi) against a
 * memory LU, the way the iSCSI target calls it. Input: byte 0 flags
 * (0x01 read-only LU, 0x02 thin LU), bytes 1-4 the expected transfer
 * length (big-endian, at most BUF_MAX), then commands of 16 CDB bytes
 * followed by the data-out buffer for the last one. Each command must end
 * exactly once (at once, or through done on the loop, never both), with a
 * status that is GOOD, CHECK CONDITION with fixed-format sense,
 * RESERVATION CONFLICT or BUSY, and must not touch the buffer past the
 * length the initiator expected (it is allocated to that length, so ASan
 * catches a byte beyond).
 *
 *   make fuzz && build/fuzz/fuzz_scsi -max_total_time=60 tests/fuzz/corpus/scsi
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/log.h"
#include "sand/scsi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DEV_SIZE	(4u << 20)
#define BUF_MAX		(1u << 20)

static struct ev_loop *loop;
static struct blkdev *mem;
static struct blkchan *ch;
static bool done;
static const uint64_t luns[] = { 0, 0x0001000000000000ull };
static const uint8_t uuid[16] = { 0xfa, 0xce, 0xb0, 0x0c, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };

static void on_done(struct scsi_cmd *c)
{
	(void)c;
	if (done)
		abort();	/* ended twice */
	done = true;
}

static void init_once(void)
{
	if (loop)
		return;
	log_set_level(LOG_ERROR);
	if (ev_loop_new(EV_AUTO, 0, &loop) || blk_mem_create("fuzz", DEV_SIZE, 512, &mem) ||
	    blk_chan_open(mem, loop, &ch))
		abort();
}

static void check_result(const struct scsi_cmd *c)
{
	switch (c->status) {
	case SCSI_STATUS_GOOD:
	case SCSI_STATUS_RESERVATION_CONFLICT:
	case SCSI_STATUS_BUSY:
	case SCSI_STATUS_TASK_SET_FULL:
		break;
	case SCSI_STATUS_CHECK_CONDITION:
		if (c->sense_len < 8 || (c->sense[0] & 0x7f) != 0x70 || c->sense[2] == 0)
			abort();	/* CHECK CONDITION without usable sense */
		break;
	default:
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct scsi_lu lu;
	struct scsi_cmd cmd;
	uint32_t buf_len;
	uint8_t *buf;

	init_once();
	if (size < 5 + SCSI_CDB_MAX)
		return 0;
	scsi_lu_init(&lu, mem, uuid, data[0] & 1);
	lu.lbpme = data[0] & 2;
	buf_len = get_be32(data + 1) % (BUF_MAX + 1);
	data += 5;
	size -= 5;
	buf = malloc(buf_len ? buf_len : 1);
	if (!buf)
		abort();
	while (size >= SCSI_CDB_MAX) {
		size_t extra = size - SCSI_CDB_MAX;
		int rc;

		memset(&cmd, 0, sizeof(cmd));
		memcpy(cmd.cdb, data, SCSI_CDB_MAX);
		data += SCSI_CDB_MAX;
		size -= SCSI_CDB_MAX;
		/* the rest is the data-out of this command when no CDB follows */
		memset(buf, 0, buf_len);
		if (size < SCSI_CDB_MAX)
			memcpy(buf, data, MIN(extra, (size_t)buf_len));
		cmd.lu = &lu;
		cmd.ch = ch;
		cmd.buf = buf;
		cmd.buf_len = buf_len;
		cmd.luns = luns;
		cmd.nluns = 2;
		cmd.nexus = 1;
		cmd.done = on_done;
		done = false;
		rc = scsi_exec(&cmd);
		if (done)
			abort();	/* done must not run inside scsi_exec */
		if (rc == SCSI_PENDING) {
			for (int i = 0; i < 100000 && !done; i++)
				ev_run_once(loop, 10);
			if (!done)
				abort();	/* the command never ended */
		}
		check_result(&cmd);
	}
	/* nothing may stay in flight between inputs */
	for (int i = 0; i < 1000 && ev_inflight(loop); i++)
		ev_run_once(loop, 10);
	if (ev_inflight(loop))
		abort();
	free(buf);
	return 0;
}
