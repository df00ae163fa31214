/* SPDX-License-Identifier: MIT */
/* SANITIZE (SBC-4 5.30): OVERWRITE, BLOCK ERASE, EXIT FAILURE MODE. */
#ifndef SAND_PROTO_SCSI_SANITIZE_H
#define SAND_PROTO_SCSI_SANITIZE_H

#include "sand/scsi.h"

/* SANITIZE, opcode 48h. SCSI_DONE or SCSI_PENDING, as scsi_exec(). */
int scsi_sanitize(struct scsi_cmd *cmd);

/* While the LU is being sanitized every command but INQUIRY, REPORT LUNS
 * and REQUEST SENSE gets NOT READY, SANITIZE IN PROGRESS: true (sense
 * set) when cmd is one of those refused. */
bool scsi_sanitize_check(struct scsi_cmd *cmd);

#endif
