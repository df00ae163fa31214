/* SPDX-License-Identifier: MIT */
/* MODE SELECT(6) and (10) (SPC-4 6.11, 6.12). */
#ifndef SAND_PROTO_SCSI_MODE_SELECT_H
#define SAND_PROTO_SCSI_MODE_SELECT_H

#include "sand/scsi.h"

/* MODE SELECT, 15h (ten false) or 55h (ten true). SCSI_DONE. */
int scsi_mode_select(struct scsi_cmd *cmd, bool ten);

#endif
