/* SPDX-License-Identifier: MIT */
/*
 * GET LBA STATUS (SBC-3 5.6): the provisioning status of the blocks from
 * the starting LBA on, as descriptors of (LBA, number of blocks, status).
 *
 * It is the device's block status (sand/blkdev.h, BLK_STATUS_ALLOC): a
 * hole is "deallocated" (and reads as zeros, which is what LBPRZ in READ
 * CAPACITY(16) and the Logical Block Provisioning VPD page promise), the
 * rest "mapped". We never anchor blocks, so never report "anchored".
 * Devices that cannot tell report everything mapped. The query is
 * asynchronous (a thin volume's map is read on its pool's owner thread) and
 * ends on the command's loop, like any I/O.
 *
 * The descriptors start at the starting LBA and cover as many blocks as
 * fit in the allocation length (a block count is 32 bits, so one query
 * never covers more than 2^32 - 1 blocks); the initiator asks again from
 * where they stop.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/log.h"
#include "sand/scsi.h"
#include "proto/scsi/lba_status.h"

#define LBAS_HDR	8
#define LBAS_DESC	16
#define LBAS_MAX_DESC	128	/* per command */

#define PROV_MAPPED		0
#define PROV_DEALLOCATED	1

struct lbas_ctx {
	struct scsi_cmd		*cmd;
	struct blk_status	st;
	struct blk_extent	ext[LBAS_MAX_DESC];
	uint8_t			d[LBAS_HDR + LBAS_DESC * LBAS_MAX_DESC];
};

static void lbas_end(struct blk_status *st, int status)
{
	struct lbas_ctx *x = container_of(st, struct lbas_ctx, st);
	struct scsi_cmd *cmd = x->cmd;
	uint32_t bs = cmd->lu->bd->block_size, len = LBAS_HDR, alloc = get_be32(cmd->cdb + 10);
	uint64_t lba = st->offset / bs;

	if (status) {
		LOG_RATELIMIT(LOG_WARN, LS_SCSI, "%s: get lba status at %llu: %s",
			      cmd->lu->bd->name, (unsigned long long)lba, strerror(-status));
		scsi_errno_sense(cmd, status);
		goto done;
	}
	for (unsigned i = 0; i < st->next; i++) {
		uint8_t *p = x->d + len;
		uint64_t n = DIV_ROUND_UP(st->ext[i].len, bs);

		put_be64(p, lba);
		put_be32(p + 8, (uint32_t)n);
		p[12] = st->ext[i].flags & BLK_EXT_HOLE ? PROV_DEALLOCATED : PROV_MAPPED;
		lba += n;
		len += LBAS_DESC;
	}
	put_be32(x->d, len - 4);	/* parameter data length */
	cmd->xfer_len = MIN(len, alloc);
	cmd->data_in = true;
	if (cmd->buf)
		memcpy(cmd->buf, x->d, MIN(cmd->xfer_len, cmd->buf_len));
done:
	free(x);
	cmd->done(cmd);
}

int scsi_get_lba_status(struct scsi_cmd *cmd)
{
	struct blkdev *bd = cmd->lu->bd;
	uint32_t bs = bd->block_size, alloc = get_be32(cmd->cdb + 10);
	uint64_t lba = get_be64(cmd->cdb + 2), nb = bd->size / bs;
	struct lbas_ctx *x;
	int rc;

	if (lba >= nb) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		return SCSI_DONE;
	}
	if (!alloc)
		return SCSI_DONE;	/* nothing to transfer: not an error */
	x = calloc(1, sizeof(*x));
	if (!x) {
		scsi_errno_sense(cmd, -ENOMEM);
		return SCSI_DONE;
	}
	x->cmd = cmd;
	x->st.mode = BLK_STATUS_ALLOC;
	x->st.offset = lba * bs;
	x->st.len = MIN(nb - lba, (uint64_t)UINT32_MAX) * bs;
	x->st.ext = x->ext;
	x->st.max_ext = alloc >= LBAS_HDR + LBAS_DESC ?
			MIN((alloc - LBAS_HDR) / LBAS_DESC, LBAS_MAX_DESC) : 1;
	x->st.end = lbas_end;
	rc = blk_block_status(cmd->ch, &x->st);
	if (rc) {
		free(x);
		scsi_errno_sense(cmd, rc);
		return SCSI_DONE;
	}
	return SCSI_PENDING;
}
