/* SPDX-License-Identifier: MIT */
/*
 * SCSI-3 persistent reservations (SPC-4 5.13, PERSISTENT RESERVE IN/OUT):
 * the state of one logical unit and the functions the opcode table and the
 * transports call. Implemented in proto/scsi/pr.c.
 *
 * An I_T nexus is named by the transport in every struct scsi_cmd: the
 * initiator port name (iSCSI: "IQN,i,0xISID", SPC-4 7.6.4.6) and the
 * relative target port identifier (iSCSI: the target portal group tag, one
 * SCSI target port per portal group). A registration is kept by that
 * identity, not by a connection: it survives logouts, reconnections and
 * session reinstatement, and it is seen through every path to the LU.
 *
 * Threads: every session of a LU, on any reactor, reads and changes the
 * same state, so struct scsi_pr has a mutex (held for the length of one
 * PERSISTENT RESERVE command or one access check, never across I/O). The
 * access check on every other command starts with a lock-free look at
 * `active` (no registration and no pending unit attention: nothing to
 * check), so a LU without reservations pays one atomic load per command.
 *
 * APTPL: with a state file set (scsi_pr_set_file), the registrations and
 * the reservation are written to it (write a temporary file, fsync, rename,
 * fsync the directory) before a PERSISTENT RESERVE OUT that changes them
 * completes, as long as the last REGISTER asked for APTPL; the write is
 * synchronous on the calling reactor (these commands are rare). Without a
 * file, APTPL is refused (REPORT CAPABILITIES says PTPL_C=0).
 */
#ifndef SAND_SCSI_PR_H
#define SAND_SCSI_PR_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define PR_IPORT_MAX	248	/* 223-byte iSCSI name + ",i,0x" + 12 hex digits */
#define PR_MAX_REGS	64	/* registrations per LU */
#define PR_MAX_UAS	32	/* unit attentions waiting per LU */
#define PR_FILE_MAX	512

/* Reservation types (the TYPE field) */
enum {
	PR_TYPE_WE	= 0x1,	/* write exclusive */
	PR_TYPE_EA	= 0x3,	/* exclusive access */
	PR_TYPE_WE_RO	= 0x5,	/* write exclusive, registrants only */
	PR_TYPE_EA_RO	= 0x6,	/* exclusive access, registrants only */
	PR_TYPE_WE_AR	= 0x7,	/* write exclusive, all registrants */
	PR_TYPE_EA_AR	= 0x8,	/* exclusive access, all registrants */
};

/* PERSISTENT RESERVE OUT service actions */
enum {
	PRO_REGISTER = 0, PRO_RESERVE, PRO_RELEASE, PRO_CLEAR, PRO_PREEMPT,
	PRO_PREEMPT_AND_ABORT, PRO_REGISTER_AND_IGNORE, PRO_REGISTER_AND_MOVE,
};
/* PERSISTENT RESERVE IN service actions */
enum { PRI_READ_KEYS = 0, PRI_READ_RESERVATION, PRI_REPORT_CAPABILITIES, PRI_READ_FULL_STATUS };

/* Additional sense codes of this layer (asc << 8 | ascq) */
#define ASC_INVALID_RELEASE_OF_PR	0x2604
#define ASC_RESERVATIONS_PREEMPTED	0x2a03
#define ASC_RESERVATIONS_RELEASED	0x2a04
#define ASC_REGISTRATIONS_PREEMPTED	0x2a05
#define ASC_INSUFFICIENT_REG_RESOURCES	0x5504

struct pr_nexus {
	char		iport[PR_IPORT_MAX];	/* initiator port name */
	uint16_t	rtpi;			/* relative target port identifier */
	bool		all_tg_pt;		/* a registration for every target port */
};

struct pr_reg {
	struct pr_nexus	n;
	uint64_t	key;
};

struct pr_ua {
	struct pr_nexus	n;
	uint16_t	asc;
};

struct scsi_pr {
	pthread_mutex_t	lock;
	int		active;		/* atomic: nregs || nuas */
	uint32_t	generation;	/* PRGENERATION */
	unsigned	nregs;
	struct pr_reg	regs[PR_MAX_REGS];
	int		holder;		/* index in regs; -1: none (or all registrants) */
	bool		reserved;
	uint8_t		type;
	bool		aptpl;		/* the last REGISTER's APTPL bit */
	unsigned	nuas;
	struct pr_ua	uas[PR_MAX_UAS];
	char		file[PR_FILE_MAX];	/* APTPL state file; "" none */
};

struct scsi_cmd;
struct scsi_lu;

void scsi_pr_init(struct scsi_pr *pr);
/* Does identity r (a registration) stand for I_T nexus n? Same initiator
 * port (or r names just the initiator) and same target port (or either
 * holds for all target ports). */
bool scsi_pr_nexus_match(const struct pr_nexus *r, const struct pr_nexus *n);

/* The opcode table's handlers for 5Eh and 5Fh. */
int scsi_pr_in(struct scsi_cmd *cmd);
int scsi_pr_out(struct scsi_cmd *cmd);

/*
 * Before any command on a LU: a unit attention waiting for this I_T nexus
 * (then CHECK CONDITION, once), or a conflict with the persistent
 * reservation (RESERVATION CONFLICT). Returns true when cmd is finished.
 */
bool scsi_pr_check(struct scsi_cmd *cmd);
/*
 * RESERVE/RELEASE(6/10) while persistent reservations exist (SPC-4 5.13.3,
 * CRH=1): true when cmd is finished (conflict, or GOOD with no effect);
 * false when the SPC-2 reservation goes ahead.
 */
bool scsi_pr_legacy(struct scsi_cmd *cmd);

/*
 * APTPL: keep the state of lu in path and load what is there now (an
 * absent file is no state). 0, or -errno (a file that does not parse is
 * left alone and refused: -EINVAL).
 */
int scsi_pr_set_file(struct scsi_lu *lu, const char *path);

/*
 * PREEMPT AND ABORT: the transport's function that aborts the tasks of an
 * I_T nexus on a LU (set once, before any session). Called with the PR
 * lock held: it must only post work, not wait for it. The command
 * completes only once the aborted tasks have ended (so no write of theirs
 * lands after it): the transport takes a reference on w
 * (scsi_pr_wait_get) for each piece of work it posts or task it leaves
 * running, and drops it (scsi_pr_wait_put, from any thread) when that is
 * over.
 */
struct scsi_pr_wait;
void scsi_pr_wait_get(struct scsi_pr_wait *w);
void scsi_pr_wait_put(struct scsi_pr_wait *w);
typedef void (*scsi_pr_abort_fn)(struct scsi_lu *lu, const struct pr_nexus *n,
				 struct scsi_pr_wait *w);
void scsi_pr_set_abort_hook(scsi_pr_abort_fn fn);

/* A copy of the state, for listings (volctl iscsi reservations). */
struct pr_snapshot {
	uint32_t	generation;
	unsigned	nregs;
	struct pr_reg	regs[PR_MAX_REGS];
	int		holder;		/* index in regs, -1 none or all registrants */
	bool		reserved;
	uint8_t		type;
	bool		aptpl;
};
void scsi_pr_snapshot(struct scsi_lu *lu, struct pr_snapshot *s);
/* "WE", "EA", "WE-RO", "EA-RO", "WE-AR", "EA-AR", or NULL */
const char *scsi_pr_type_name(uint8_t type);

#endif
