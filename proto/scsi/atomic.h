/* SPDX-License-Identifier: MIT */
/*
 * WRITE ATOMIC(16) (SBC-4), and what the block limits VPD page and READ
 * CAPACITY(16) say about atomicity and physical blocks. The helpers at the
 * end are exec.c's, shared with the other files of proto/scsi only.
 */
#ifndef SAND_PROTO_SCSI_ATOMIC_H
#define SAND_PROTO_SCSI_ATOMIC_H

#include "sand/scsi.h"

/* WRITE ATOMIC(16), opcode 9Ch. SCSI_DONE or SCSI_PENDING, as scsi_exec(). */
int scsi_write_atomic16(struct scsi_cmd *cmd);

/* Block limits VPD page (B0h) bytes 44-63: the atomic fields. */
void scsi_vpd_b0_atomic(const struct scsi_lu *lu, uint8_t *page);

/* LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (READ CAPACITY(16) byte 13),
 * from the physical block the device declares (bd->phys_block). */
uint8_t scsi_lbppbe(const struct blkdev *bd);

/* from exec.c: each sets the sense and returns -1 when the check fails */
int scsi_check_range(struct scsi_cmd *cmd, uint64_t lba, uint64_t n);
int scsi_check_write_protect(struct scsi_cmd *cmd);
/* take lu->caw_busy for the command (released when it finishes); BUSY
 * status and -1 when another holds it */
int scsi_caw_lock(struct scsi_cmd *cmd);
/* submit cmd->op over cmd->off/io_len again (from cmd->next): 0 or -errno */
int scsi_io_resubmit(struct scsi_cmd *cmd);
/* start the command's first I/O: what scsi_exec returns */
int scsi_io_start(struct scsi_cmd *cmd, enum bio_op op, uint32_t flags, uint8_t *buf,
		  uint64_t off, uint64_t len);

#endif
