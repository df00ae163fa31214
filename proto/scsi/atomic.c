/* SPDX-License-Identifier: MIT */
/*
 * WRITE ATOMIC(16) (SBC-4 5.48): the blocks end up all old or all new,
 * never a mix, whatever else is written to them.
 *
 * The data-out is whole in the transport's buffer before the command
 * runs, so the write is one bio, never cut by us. It holds the LU's
 * COMPARE AND WRITE lock while it runs, so COMPARE AND WRITE, ORWRITE and
 * other atomic writes (from any session, on any reactor) see it all or not
 * at all; one that finds the lock taken gets BUSY and is retried by the
 * initiator. Plain WRITEs do not take the lock (that would cost every
 * write a shared atomic): a plain WRITE racing an atomic one over the same
 * blocks is ordered per bio by the block device, as two plain writes are.
 *
 * Limits (block limits VPD page): the atomic unit is 4 KiB (a database or
 * file system page) or the physical block if larger, so ATOMIC ALIGNMENT
 * and ATOMIC TRANSFER LENGTH GRANULARITY are that in blocks (1 for 4 KiB
 * blocks) and a write that breaks them is refused (INVALID FIELD IN CDB). MAXIMUM ATOMIC TRANSFER
 * LENGTH is the maximum transfer length. No atomic boundaries: an ATOMIC
 * BOUNDARY field other than 0 is refused.
 */
#include <errno.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/scsi.h"
#include "proto/scsi/atomic.h"

#define MAX_XFER_BYTES		(16u << 20)	/* as exec.c's maximum transfer length */
#define ATOMIC_UNIT		4096u

/* a multiple of the atomic unit, within the 16-bit TRANSFER LENGTH */
static uint32_t max_atomic_blocks(const struct scsi_lu *lu)
{
	return MIN(MAX_XFER_BYTES / lu->bd->block_size, 0x8000u);
}

static uint32_t atomic_unit_blocks(const struct scsi_lu *lu)
{
	const struct blkdev *bd = lu->bd;

	return MAX(MAX(ATOMIC_UNIT, bd->phys_block) / bd->block_size, 1u);
}

void scsi_vpd_b0_atomic(const struct scsi_lu *lu, uint8_t *page)
{
	put_be32(page + 44, max_atomic_blocks(lu));	/* maximum atomic transfer length */
	put_be32(page + 48, atomic_unit_blocks(lu));	/* atomic alignment */
	put_be32(page + 52, atomic_unit_blocks(lu));	/* atomic transfer length granularity */
	put_be32(page + 56, 0);		/* ... with atomic boundary: no boundaries */
	put_be32(page + 60, 0);		/* maximum atomic boundary size */
}

uint8_t scsi_lbppbe(const struct blkdev *bd)
{
	uint8_t e = 0;

	while (e < 15 && ((uint64_t)bd->block_size << (e + 1)) <= bd->phys_block)
		e++;
	return e;
}

int scsi_write_atomic16(struct scsi_cmd *cmd)
{
	const uint8_t *cdb = cmd->cdb;
	uint64_t lba = get_be64(cdb + 2);
	uint32_t n = get_be16(cdb + 12), bs = cmd->lu->bd->block_size, len;

	if (cdb[1] >> 5) {			/* WRPROTECT: no protection information */
		scsi_invalid_field(cmd, 1, 7);
		return SCSI_DONE;
	}
	if (cdb[1] & 0x07) {			/* reserved */
		scsi_invalid_field(cmd, 1, -1);
		return SCSI_DONE;
	}
	if (get_be16(cdb + 10)) {		/* ATOMIC BOUNDARY: none supported */
		scsi_invalid_field(cmd, 10, -1);
		return SCSI_DONE;
	}
	if (scsi_check_write_protect(cmd))
		return SCSI_DONE;
	if (n > max_atomic_blocks(cmd->lu)) {
		scsi_invalid_field(cmd, 12, -1);
		return SCSI_DONE;
	}
	if (scsi_check_range(cmd, lba, n))
		return SCSI_DONE;
	if (lba % atomic_unit_blocks(cmd->lu)) {
		scsi_invalid_field(cmd, 2, -1);
		return SCSI_DONE;
	}
	if (n % atomic_unit_blocks(cmd->lu)) {
		scsi_invalid_field(cmd, 12, -1);
		return SCSI_DONE;
	}
	len = n * bs;
	cmd->xfer_len = len;
	if (!n)
		return SCSI_DONE;
	/* all of it or nothing: a short data-out is not written in part */
	if (cmd->buf_len < len) {
		scsi_invalid_field(cmd, 12, -1);
		return SCSI_DONE;
	}
	if (scsi_caw_lock(cmd))
		return SCSI_DONE;
	/* DPO: no cache to keep blocks out of; FUA: durable when it ends */
	return scsi_io_start(cmd, BIO_WRITE, cdb[1] & 0x08 ? BIO_FUA : 0, cmd->buf,
			     lba * bs, len);
}
