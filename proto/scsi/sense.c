/* SPDX-License-Identifier: MIT */
/*
 * Sense data (fixed format, SPC-4 4.5.3), the -errno to sense mapping, and
 * LUN encoding.
 */
#include <errno.h>
#include <string.h>
#include "sand/scsi.h"

void scsi_sense(struct scsi_cmd *cmd, uint8_t key, uint16_t asc)
{
	uint8_t *s = cmd->sense;

	memset(s, 0, SCSI_SENSE_LEN);
	s[0] = 0x70;			/* current error, fixed format */
	s[2] = key & 0x0f;
	s[7] = SCSI_SENSE_LEN - 8;	/* additional sense length */
	s[12] = (uint8_t)(asc >> 8);
	s[13] = (uint8_t)asc;
	cmd->sense_len = SCSI_SENSE_LEN;
	cmd->status = SCSI_STATUS_CHECK_CONDITION;
	cmd->xfer_len = 0;
	cmd->data_in = false;
}

void scsi_invalid_field(struct scsi_cmd *cmd, unsigned byte, int bit)
{
	scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	/* sense-key specific: SKSV, C/D = CDB, BPV + bit pointer, field pointer */
	cmd->sense[15] = 0x80 | 0x40 | (bit >= 0 ? 0x08 | (bit & 7) : 0);
	put_be16(cmd->sense + 16, (uint16_t)byte);
}

void scsi_errno_sense(struct scsi_cmd *cmd, int err)
{
	switch (err) {
	case 0:
		cmd->status = SCSI_STATUS_GOOD;
		cmd->sense_len = 0;
		break;
	case -ENOSPC:
	case -EDQUOT:
		scsi_sense(cmd, SK_DATA_PROTECT, ASC_SPACE_ALLOC_FAILED_WP);
		break;
	case -EROFS:
	case -EPERM:
	case -EACCES:
		scsi_sense(cmd, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
		break;
	case -EINVAL:
	case -ERANGE:
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		break;
	case -ENOMEM:
	case -EAGAIN:
	case -EBUSY:
		cmd->status = SCSI_STATUS_BUSY;
		cmd->sense_len = 0;
		cmd->xfer_len = 0;
		cmd->data_in = false;
		break;
	case -ECANCELED:
	case -ESHUTDOWN:
		scsi_sense(cmd, SK_ABORTED_COMMAND, ASC_INTERNAL_TARGET_FAILURE);
		break;
	case -EIO:
	case -EBADMSG:
	case -ENODATA:
		if (cmd->op == BIO_READ)
			scsi_sense(cmd, SK_MEDIUM_ERROR, ASC_UNRECOVERED_READ_ERROR);
		else
			scsi_sense(cmd, SK_MEDIUM_ERROR, ASC_WRITE_ERROR);
		break;
	default:
		scsi_sense(cmd, SK_HARDWARE_ERROR, ASC_INTERNAL_TARGET_FAILURE);
		break;
	}
}

uint64_t scsi_lun_encode(unsigned lun)
{
	if (lun < 256)
		return (uint64_t)lun << 48;
	return (uint64_t)(0x4000 | (lun & 0x3fff)) << 48;
}

int scsi_lun_decode(uint64_t raw)
{
	unsigned hi = (unsigned)(raw >> 48);

	if (raw & 0x0000ffffffffffffull)
		return -1;
	switch (hi >> 14) {
	case 0:
		return hi >> 8 ? -1 : (int)(hi & 0xff);	/* bus 0 only */
	case 1:
		return (int)(hi & 0x3fff);
	default:
		return -1;
	}
}
