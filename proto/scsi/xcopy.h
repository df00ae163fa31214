/* SPDX-License-Identifier: MIT */
/*
 * EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.4, 6.18): the
 * copy manager of every LU. A copy names its source and destination by
 * their VPD 83h NAA designator; they are found among the LUs registered
 * here (every LU of every target of the daemon), or are the LU the command
 * came to.
 */
#ifndef SAND_PROTO_SCSI_XCOPY_H
#define SAND_PROTO_SCSI_XCOPY_H

#include "sand/scsi.h"

#define SK_COPY_ABORTED			0xa
#define ASC_UNREACHABLE_COPY_TARGET	0x0804
#define ASC_TOO_MANY_TGT_DESC		0x2606
#define ASC_UNSUPP_TGT_DESC		0x2607
#define ASC_TOO_MANY_SEG_DESC		0x2608
#define ASC_UNSUPP_SEG_DESC		0x2609
#define ASC_OPERATION_IN_PROGRESS	0x0016

/* Limits reported in the OPERATING PARAMETERS */
#define XCOPY_MAX_TGT_DESC	8
#define XCOPY_MAX_SEG_DESC	64
#define XCOPY_MAX_DESC_LIST	4096		/* bytes of descriptors */
#define XCOPY_MAX_SEG_BYTES	(256u << 20)
#define XCOPY_MAX_CONCURRENT	32		/* copies in flight, all LUs */
#define XCOPY_BUF		(1u << 20)	/* bytes read and written at a time */

/* EXTENDED COPY (83h) and RECEIVE COPY RESULTS (84h): SCSI_DONE or
 * SCSI_PENDING, as scsi_exec(). */
int scsi_xcopy(struct scsi_cmd *cmd);
int scsi_receive_copy_results(struct scsi_cmd *cmd);

/* Make lu visible as a copy source or destination (by its NAA designator);
 * unregister waits for the copies using it to end, and forgets the copy
 * results it holds. Control thread only. */
int scsi_xcopy_register(struct scsi_lu *lu);
void scsi_xcopy_unregister(struct scsi_lu *lu);

#endif
