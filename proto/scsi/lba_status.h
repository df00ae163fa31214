/* SPDX-License-Identifier: MIT */
/* GET LBA STATUS (SBC-3), from the block device's block status. */
#ifndef SAND_PROTO_SCSI_LBA_STATUS_H
#define SAND_PROTO_SCSI_LBA_STATUS_H

#include "sand/scsi.h"

/* SERVICE ACTION IN(16), service action 12h. SCSI_DONE or SCSI_PENDING,
 * as scsi_exec(). */
int scsi_get_lba_status(struct scsi_cmd *cmd);

#endif
