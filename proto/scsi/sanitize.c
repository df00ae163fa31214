/* SPDX-License-Identifier: MIT */
/*
 * SANITIZE (SBC-4 5.30): every block of the LU made unreadable as it was.
 *
 * - OVERWRITE (01h): the INITIALIZATION PATTERN (1 byte to a block, from
 *   the parameter list) repeated over every block, OVERWRITE COUNT passes
 *   (1-31), the pattern inverted between passes with INVERT. Written from
 *   one buffer of up to 1 MiB, a piece at a time.
 * - BLOCK ERASE (02h), on a thin LU (LBPME): everything deallocated, by
 *   write-zeroes that may unmap, 1 GiB a bio; the blocks read back as zeros
 *   (LBPRZ) and GET LBA STATUS shows them deallocated. Block Device
 *   Characteristics VPD: WABEREQ 01b (reads after it succeed).
 * - CRYPTOGRAPHIC ERASE (03h): not supported (no media encryption):
 *   INVALID FIELD IN CDB, not listed by REPORT SUPPORTED OPERATION CODES,
 *   WACEREQ 00b.
 * - EXIT FAILURE MODE (1Fh): a sanitize never fails half done here (an I/O
 *   error fails the command, and the LU is usable), so there is no failure
 *   mode to leave: GOOD.
 *
 * While it runs the LU answers only INQUIRY, REPORT LUNS and REQUEST
 * SENSE; anything else, from any session, gets NOT READY, LOGICAL UNIT
 * NOT READY, SANITIZE IN PROGRESS (04h/1Bh). It runs as the command (IMMED
 * 0): the status comes when it is done. IMMED 1 (status at once, the
 * sanitize going on alone, across resets and logouts) is not supported
 * and gets INVALID FIELD IN CDB; so is AUSE (nothing to exit from) and the
 * bit SBC-3 reserved (ZNR in SBC-4: no zones here).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/scsi.h"
#include "proto/scsi/atomic.h"
#include "proto/scsi/sanitize.h"

#define SA_OVERWRITE		0x01
#define SA_BLOCK_ERASE		0x02
#define SA_CRYPTO_ERASE		0x03
#define SA_EXIT_FAILURE_MODE	0x1f

#define ASC_SANITIZE_IN_PROGRESS	0x041b
#define OVERWRITE_PIECE		(1u << 20)
#define ERASE_PIECE		(1ull << 30)

bool scsi_sanitize_check(struct scsi_cmd *cmd)
{
	switch (cmd->cdb[0]) {
	case 0x03:	/* REQUEST SENSE */
	case 0x12:	/* INQUIRY */
	case 0xa0:	/* REPORT LUNS */
		return false;
	}
	if (!__atomic_load_n(&cmd->lu->sanitizing, __ATOMIC_ACQUIRE))
		return false;
	scsi_sense(cmd, SK_NOT_READY, ASC_SANITIZE_IN_PROGRESS);
	return true;
}

/* cmd->step: passes left (low byte), STEP_INVERT */
#define STEP_INVERT		0x100

/* After each piece: the next one, the next pass, or done (0). */
static int sanitize_next(struct scsi_cmd *cmd)
{
	cmd->off += cmd->io_len;
	if (cmd->off >= cmd->end) {
		if ((--cmd->step & 0xff) == 0)
			return 0;
		if (cmd->step & STEP_INVERT)
			for (uint32_t i = 0; i < cmd->tmp_len; i++)
				cmd->tmp[i] = (uint8_t)~cmd->tmp[i];
		cmd->off = 0;
	}
	cmd->io_len = MIN(cmd->end - cmd->off, (uint64_t)cmd->tmp_len);
	return scsi_io_resubmit(cmd) ?: 1;
}

/* OVERWRITE parameter list: 0 and the buffer filled, or -1 with sense */
static int overwrite_params(struct scsi_cmd *cmd, uint32_t plen)
{
	const uint8_t *p = cmd->buf;
	uint32_t bs = cmd->lu->bd->block_size, ilen;
	uint64_t size = cmd->lu->bd->size;

	/* a header and 1 to a block of pattern (libiscsi wants INVALID FIELD
	 * IN CDB for a bad count or pattern length too) */
	if (plen < 5 || plen > bs + 4) {
		scsi_invalid_field(cmd, 7, -1);
		return -1;
	}
	if (cmd->buf_len < plen) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
		return -1;
	}
	ilen = get_be16(p + 2);
	if (!(p[0] & 0x1f) || !ilen || ilen > bs || ilen + 4 > plen) {
		scsi_invalid_field(cmd, 7, -1);
		return -1;
	}
	if (p[0] & 0x60 || p[1]) {		/* TEST, reserved */
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
		return -1;
	}
	cmd->tmp_len = (uint32_t)MIN(size, (uint64_t)OVERWRITE_PIECE);
	cmd->tmp = malloc(cmd->tmp_len);
	if (!cmd->tmp) {
		scsi_errno_sense(cmd, -ENOMEM);
		return -1;
	}
	/* the pattern from the start of every block */
	for (uint32_t i = 0; i < cmd->tmp_len; i++)
		cmd->tmp[i] = p[4 + (i % bs) % ilen];
	cmd->step = (p[0] & 0x1f) | (p[0] & 0x80 ? STEP_INVERT : 0);
	return 0;
}

int scsi_sanitize(struct scsi_cmd *cmd)
{
	const uint8_t *cdb = cmd->cdb;
	uint8_t sa = cdb[1] & 0x1f;
	uint32_t plen = get_be16(cdb + 7);
	uint64_t size = cmd->lu->bd->size;
	int rc;

	if (cdb[1] & 0xe0) {		/* IMMED, AUSE, ZNR: see above */
		scsi_invalid_field(cmd, 1, cdb[1] & 0x80 ? 7 : cdb[1] & 0x40 ? 6 : 5);
		return SCSI_DONE;
	}
	for (unsigned i = 2; i < 7; i++) {
		if (cdb[i]) {
			scsi_invalid_field(cmd, i, -1);
			return SCSI_DONE;
		}
	}
	switch (sa) {
	case SA_OVERWRITE:
		break;
	case SA_BLOCK_ERASE:
		if (!cmd->lu->lbpme) {
			scsi_invalid_field(cmd, 1, 4);
			return SCSI_DONE;
		}
		/* fall through */
	case SA_EXIT_FAILURE_MODE:
		if (plen) {
			scsi_invalid_field(cmd, 7, -1);
			return SCSI_DONE;
		}
		break;
	default:			/* CRYPTOGRAPHIC ERASE among them */
		scsi_invalid_field(cmd, 1, 4);
		return SCSI_DONE;
	}
	cmd->xfer_len = plen;
	if (scsi_check_write_protect(cmd))
		return SCSI_DONE;
	if (sa == SA_EXIT_FAILURE_MODE)
		return SCSI_DONE;
	if (sa == SA_OVERWRITE && overwrite_params(cmd, plen))
		return SCSI_DONE;
	if (__atomic_exchange_n(&cmd->lu->sanitizing, 1, __ATOMIC_ACQ_REL)) {
		free(cmd->tmp);
		cmd->tmp = NULL;
		scsi_sense(cmd, SK_NOT_READY, ASC_SANITIZE_IN_PROGRESS);
		return SCSI_DONE;
	}
	cmd->sanitizing = true;		/* released when the command ends */
	cmd->end = size;
	cmd->next = sanitize_next;
	if (sa == SA_BLOCK_ERASE) {
		cmd->step = 1;
		cmd->tmp_len = (uint32_t)MIN(size, ERASE_PIECE);
		rc = scsi_io_start(cmd, BIO_WRITE_ZEROES, 0, NULL, 0, cmd->tmp_len);
	} else {
		rc = scsi_io_start(cmd, BIO_WRITE, 0, cmd->tmp, 0, cmd->tmp_len);
	}
	return rc;
}
