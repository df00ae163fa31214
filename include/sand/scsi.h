/* SPDX-License-Identifier: MIT */
/*
 * SCSI block commands (SPC-4, SBC-3) executed against a block device:
 * CDB decoding through one opcode table, sense building, and the one
 * function that turns -errno into sense. Transport-neutral: iSCSI (and
 * later anything else) fills a struct scsi_cmd with the CDB and the data-out
 * buffer, calls scsi_exec(), and sends back data_in/status/sense.
 *
 * I/O goes through the caller's block channel (cmd->ch), on the channel's
 * loop; a command that does I/O finishes by calling cmd->done from that
 * loop, never from inside scsi_exec().
 */
#ifndef SAND_SCSI_H
#define SAND_SCSI_H

#include <stdint.h>
#include <stdbool.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/scsi_pr.h"

/* Status */
#define SCSI_STATUS_GOOD		0x00
#define SCSI_STATUS_CHECK_CONDITION	0x02
#define SCSI_STATUS_BUSY		0x08
#define SCSI_STATUS_RESERVATION_CONFLICT 0x18
#define SCSI_STATUS_TASK_SET_FULL	0x28
#define SCSI_STATUS_TASK_ABORTED	0x40	/* TAS: aborted by another nexus */

/* Sense keys */
#define SK_NO_SENSE		0x0
#define SK_NOT_READY		0x2
#define SK_MEDIUM_ERROR		0x3
#define SK_HARDWARE_ERROR	0x4
#define SK_ILLEGAL_REQUEST	0x5
#define SK_UNIT_ATTENTION	0x6
#define SK_DATA_PROTECT		0x7
#define SK_ABORTED_COMMAND	0xb
#define SK_MISCOMPARE		0xe

/* Additional sense code and qualifier, as asc << 8 | ascq */
#define ASC_NONE			0x0000
#define ASC_WRITE_ERROR			0x0c00
#define ASC_UNRECOVERED_READ_ERROR	0x1100
#define ASC_MISCOMPARE_VERIFY		0x1d00
#define ASC_PARAM_LIST_LENGTH_ERROR	0x1a00
#define ASC_INVALID_OPCODE		0x2000
#define ASC_LBA_OUT_OF_RANGE		0x2100
#define ASC_INVALID_FIELD_IN_CDB	0x2400
#define ASC_LUN_NOT_SUPPORTED		0x2500
#define ASC_BUS_DEVICE_RESET		0x2903	/* unit attention after a LU reset */
#define ASC_CAPACITY_CHANGED		0x2a09	/* unit attention after a resize */
#define ASC_MODE_PARAMS_CHANGED		0x2a01	/* another nexus's MODE SELECT */
#define ASC_INVALID_FIELD_IN_PARAM	0x2600
#define ASC_WRITE_PROTECTED		0x2700
#define ASC_SPACE_ALLOC_FAILED_WP	0x2707
#define ASC_SAVING_PARAMS_UNSUP		0x3900
#define ASC_INTERNAL_TARGET_FAILURE	0x4400
#define ASC_DATA_PHASE_ERROR		0x4b00

#define SCSI_SENSE_LEN		18	/* fixed format */
#define SCSI_CDB_MAX		16

/* One logical unit: a block device plus what INQUIRY reports about it. */
struct scsi_lu {
	struct blkdev	*bd;
	bool		readonly;
	bool		wce;		/* MODE SENSE caching page WCE */
	bool		lbpme;		/* thin: UNMAP and WRITE SAME with UNMAP */
	uint8_t		naa[8];		/* NAA 3 (locally assigned) from the UUID */
	char		serial[33];	/* 32 hex digits of the UUID */
	char		vendor[9];
	char		product[17];
	char		revision[5];
	/* COMPARE AND WRITE in progress: one at a time per LU, so they are
	 * atomic with respect to each other (not yet to plain writes) */
	int		caw_busy;
	/* SANITIZE in progress (proto/scsi/sanitize.c): set while its job
	 * lives; progress 0-65535; stop: the LU is going away; the job (only
	 * on the loop it runs on) */
	int		sanitizing;
	uint16_t	sanitize_progress;
	int		sanitize_stop;
	void		*sanitize_job;
	/* control mode page SWP: software write protect (MODE SELECT) */
	bool		swp;
	/* control mode page TAS: tasks another nexus's reset aborts end with
	 * TASK ABORTED status (1, the default) or without a response (0) */
	bool		tas;
	/* MODE SELECTs that changed a parameter: each other I_T nexus gets
	 * MODE PARAMETERS CHANGED (the transport keeps what it saw) */
	unsigned	mode_gen;
	/* LOGICAL UNIT RESETs so far: each I_T nexus that has not seen the
	 * latest gets a unit attention (the transport keeps what it saw) */
	unsigned	reset_gen;
	/* SPC-2 RESERVE/RELEASE: the I_T nexus holding the LU (0: none) */
	uint64_t	reserved_by;
	/* SPC-4 persistent reservations (proto/scsi/pr.c, sand/scsi_pr.h) */
	struct scsi_pr	pr;
};

/* The transport lost an I_T nexus (or reset the LU): drop its reservation. */
void scsi_lu_release_nexus(struct scsi_lu *lu, uint64_t nexus);
void scsi_lu_reset(struct scsi_lu *lu);

/* Fill lu for bd: identifiers from uuid (the same on every path). */
void scsi_lu_init(struct scsi_lu *lu, struct blkdev *bd, const uint8_t uuid[16], bool readonly);

struct scsi_cmd;
typedef void (*scsi_done_fn)(struct scsi_cmd *cmd);

struct scsi_cmd {
	/* set by the transport */
	struct scsi_lu	*lu;		/* NULL: no such LUN */
	struct blkchan	*ch;		/* channel on lu->bd for this loop */
	uint8_t		cdb[SCSI_CDB_MAX];
	uint8_t		*buf;		/* data-out contents, or room for data-in */
	uint32_t	buf_len;	/* expected data transfer length */
	const uint64_t	*luns;		/* REPORT LUNS: the target's LUNs */
	unsigned	nluns;
	uint64_t	nexus;		/* the I_T nexus, non-zero and unique */
	const char	*iport;		/* its initiator port name (iSCSI: "IQN,i,0xISID") */
	uint16_t	tpg;		/* target port group = relative target port
					 * (sand/alua.h; iSCSI: the TPG tag); 0: no ALUA.
					 * With iport, it names the I_T nexus for
					 * persistent reservations */
	unsigned	*alua_seen;	/* this I_T_L nexus's ALUA generation */
	unsigned	*mode_seen;	/* its lu->mode_gen + 1 seen (NULL: none) */
	scsi_done_fn	done;
	bool		may_map;	/* a READ may leave its data to the transport as a
					 * mapped read (map_len below; no digest over it) */

	/* set by scsi_exec */
	uint32_t	xfer_len;	/* bytes the command transfers (data-in or
					 * data-out), compared with buf_len for
					 * residuals; data-in sent is MIN of both */
	bool		data_in;	/* buf holds data-in */
	uint8_t		status;
	uint8_t		sense[SCSI_SENSE_LEN];
	uint8_t		sense_len;
	/* data_in from a mapped read (scsi_read_mapped): map_len bytes of
	 * lu->bd at map_off are the data, not buf; 0: buf */
	uint64_t	map_off;
	uint32_t	map_len;

	/* private to proto/scsi */
	enum bio_op	op;
	uint32_t	bio_flags;
	uint64_t	off;		/* bytes, next I/O */
	uint64_t	end;		/* bytes, end of the range */
	uint32_t	step;		/* UNMAP descriptor, WRITE SAME chunk ... */
	uint8_t		*io_buf;	/* the I/O being (re)submitted */
	uint64_t	io_len;
	uint8_t		*tmp;		/* VERIFY, WRITE SAME buffers */
	uint32_t	tmp_len;
	int		(*next)(struct scsi_cmd *cmd);	/* after an I/O: 1 more, 0 done */
	bool		caw_locked;	/* holds lu->caw_busy */
	bool		sanitizing;	/* waits for lu->sanitize_job */
	struct ev_timer	retry;		/* resubmit after -EAGAIN/-ENOMEM */
};

enum { SCSI_DONE = 0, SCSI_PENDING = 1 };

/*
 * Execute cmd. Returns SCSI_DONE when status/sense/data are final already
 * (cmd->done is not called), or SCSI_PENDING when I/O was started:
 * cmd->done runs later on cmd->ch's loop.
 */
int scsi_exec(struct scsi_cmd *cmd);

/*
 * proto/scsi/map_read.c: READ data as a mapped read (blk_map_read) when
 * cmd->may_map, the range is SCSI_MAP_MIN bytes or more, and every piece of
 * it maps now without a pin (so it maps again when the transport sends it):
 * sets map_off/map_len and returns true; the transport sends the data from
 * the mapping (and never touches it). False: read into buf as usual.
 */
#define SCSI_MAP_MIN	(64u * 1024)
bool scsi_read_mapped(struct scsi_cmd *cmd, uint64_t off, uint32_t len);

/* CHECK CONDITION with fixed-format sense. */
void scsi_sense(struct scsi_cmd *cmd, uint8_t key, uint16_t asc);
/* ILLEGAL REQUEST, INVALID FIELD IN CDB, pointing at byte (and bit, or -1). */
void scsi_invalid_field(struct scsi_cmd *cmd, unsigned byte, int bit);
/* The one place -errno becomes SCSI status and sense. */
void scsi_errno_sense(struct scsi_cmd *cmd, int err);

/* 8-byte LUN (SAM-5) from a LUN number and back: peripheral addressing
 * below 256, flat space up to 16383. scsi_lun_decode returns -1 for
 * formats we do not use. */
uint64_t scsi_lun_encode(unsigned lun);
int scsi_lun_decode(uint64_t raw);

#endif
