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

/* REQUEST SENSE while the LU is sanitized: true and d (fixed format,
 * 18 bytes) NOT READY, SANITIZE IN PROGRESS with the progress. */
bool scsi_sanitize_request_sense(struct scsi_lu *lu, uint8_t *d);

/* The transport drops cmd (abort, reset, connection gone): true if it was
 * waiting for a sanitize, which goes on without it; cmd->done will not run.
 * On cmd's loop. */
bool scsi_sanitize_detach(struct scsi_cmd *cmd);

/* The LU is going away: a sanitize in progress stops after its bio in
 * flight, and none starts. 1 while one is still running, else 0. */
unsigned scsi_sanitize_stop(struct scsi_lu *lu);

/* Bytes a second a sanitize may write (0: as fast as it goes). */
void scsi_sanitize_set_rate(uint64_t bytes_per_s);

#endif
