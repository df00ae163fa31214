/* SPDX-License-Identifier: MIT */
/* Private to daemon/iscsi: targets, portals, connections. */
#ifndef SAND_ISCSI_INT_H
#define SAND_ISCSI_INT_H

#include <pthread.h>
#include <sys/socket.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/iscsi.h"
#include "sand/scsi.h"

#define ISCSI_MAX_LUNS		256
#define ISCSI_TPGT		1
#define ISCSI_CMD_WINDOW	128		/* MaxCmdSN = ExpCmdSN + window - 1 */
#define ISCSI_MAX_EDTL		(64u << 20)	/* larger commands are refused (the block
						 * limits page says 16 MiB, but iscsi-test-cu
						 * writes 32 MiB at once) */

struct iscsi_lun {
	unsigned	id;
	struct scsi_lu	lu;
};

struct iscsi_target {
	struct list_head link;
	char		iqn[ISCSI_NAME_MAX];
	/* Readers on the reactors load luns[] (acquire) and hold no lock.
	 * A LUN removed under live sessions (iscsi_lun_remove) is unpublished
	 * first, then freed only once every reactor has let go of it (see
	 * lun_hotplug.c). */
	struct iscsi_lun *luns[ISCSI_MAX_LUNS];	/* by LUN number */
	/* REPORT LUNS, in order added: two buffers, lunpub (acquire) says
	 * which one is published (bit 16) and how many entries (low bits). An
	 * add appends to the published one; a remove writes the other one,
	 * publishes it and waits for every reactor before the next remove. */
	uint64_t	lunlists[2][ISCSI_MAX_LUNS];
	uint32_t	lunpub;
	unsigned	nluns;		/* cfg lock */
	int		draining;	/* cfg lock: LUN being removed + 1; 0: none */
	unsigned	luns_gen;	/* LUNs added or removed (atomic): a
					 * nexus that saw an older one gets
					 * REPORTED LUNS DATA HAS CHANGED */
	unsigned	sessions;	/* connections logged in (cfg lock) */
	/* cfg lock: read at each login */
	struct iscsi_chap_cred cred;
	char		(*acl)[ISCSI_NAME_MAX];	/* initiators admitted; none: all */
	unsigned	nacl;
};

#define ASC_REPORTED_LUNS_CHANGED	0x3f0e
#define ASC_POWER_ON_RESET		0x2900	/* POWER ON, RESET, OR BUS DEVICE RESET
						 * OCCURRED: after a TARGET COLD RESET */

/* The published REPORT LUNS list of t and its length. */
static inline const uint64_t *iscsi_target_lunlist(struct iscsi_target *t, unsigned *n)
{
	uint32_t pub = __atomic_load_n(&t->lunpub, __ATOMIC_ACQUIRE);

	*n = pub & 0xffff;
	return t->lunlists[pub >> 16 & 1];
}

struct iscsi_portal {
	struct list_head link;
	int		fd;
	struct ev_io	io;
	unsigned	reactor;
	int		port;
	uint16_t	tpg;
	uint64_t	id;		/* unique: its connections carry it */
	char		addr[80];	/* as given */
};

/* What a portal hands to the reactor that will serve a new connection. */
struct iscsi_accepted {
	int		fd;
	uint16_t	tpg;
	uint64_t	portal;		/* struct iscsi_portal id */
};

struct iscsi_timeouts {
	unsigned	nop_interval_ms;
	unsigned	nop_misses;
	unsigned	login_ms;
};
extern struct iscsi_timeouts iscsi_tmo;		/* read when a connection starts */

/*
 * session.c: a session (the I_T nexus) and what its connections share: the
 * command window, commands held until the CmdSNs before them have come
 * (on any connection), what the nexus has seen of each LU (unit
 * attentions) and its initiator port name. On its reactor only, but for
 * the registry (TSIH lookups from logins on any reactor).
 */
#define ISCSI_MAX_CONNS		8	/* MaxConnections offered */

struct iscsi_session {
	struct list_head link;		/* registry */
	uint64_t	id;		/* the I_T nexus (scsi_cmd.nexus) */
	struct ev_loop	*loop;		/* of every connection */
	struct iscsi_target *target;	/* NULL: discovery (each connection counts it) */
	char		initiator[ISCSI_NAME_MAX];
	uint8_t		isid[6];
	uint16_t	tsih;
	unsigned	max_conns;	/* MaxConnections negotiated */
	unsigned	refs;		/* connections pointing here (closing ones too) */
	bool		ended;		/* registry lock: nobody joins */
	bool		failing;	/* a connection died: every other one closes */
	bool		releasing;	/* held requests being released (conn.c) */
	struct list_head conns;		/* members in full feature phase, not closing */
	unsigned	nconns;
	uint32_t	exp_cmdsn;
	struct list_head held;		/* ahead of exp_cmdsn, by arrival (conn.c) */
	uint32_t	abort_sn[4];	/* CmdSNs aborted (ABORT TASK) before they came */
	unsigned	nabort_sn;
	unsigned	ua_seen[ISCSI_MAX_LUNS];	/* lu->reset_gen + 1 seen; 0: none */
	unsigned	alua_seen[ISCSI_MAX_LUNS];	/* ALUA changes seen (sand/alua.h) */
	uint64_t	size_seen[ISCSI_MAX_LUNS];	/* lu->bd->size last seen; 0: none */
	unsigned	mode_seen[ISCSI_MAX_LUNS];	/* lu->mode_gen + 1 seen; 0: none */
	unsigned	luns_seen;	/* target->luns_gen last seen */
	uint8_t		cold_ua[ISCSI_MAX_LUNS];	/* its reset UA is 29h/00h: a
							 * TARGET COLD RESET ended the
							 * nexus's last session (tmf.c) */
	char		iport[PR_IPORT_MAX];	/* initiator port name, for reservations */
};

/* A new session on loop, with one reference (its first connection). */
struct iscsi_session *iscsi_session_new(struct ev_loop *loop, struct iscsi_target *t,
					const char *initiator, const uint8_t isid[6],
					uint16_t tsih, unsigned max_conns);
/* The reactor loop of live session tsih, NULL if there is none. */
struct ev_loop *iscsi_session_loop(uint16_t tsih);
/* Live session tsih if it lives on the calling reactor. */
struct iscsi_session *iscsi_session_find_local(uint16_t tsih);
void iscsi_session_get(struct iscsi_session *s);
void iscsi_session_put(struct iscsi_session *s);
/* No connection may join s any more. */
void iscsi_session_end(struct iscsi_session *s);
/* fn on each live session of target t, whichever reactor it lives on,
 * under the registry lock: only what never changes (iport) may be read. */
void iscsi_session_each(struct iscsi_target *t, void (*fn)(struct iscsi_session *, void *),
			void *arg);

/* ua.c: the unit attention a command of session ss to LUN id (lu) gets
 * (ASC_*), once per change and nexus, or 0; luns_gen: the target's. */
uint16_t iscsi_ua_take(struct iscsi_session *ss, unsigned id, struct scsi_lu *lu, uint8_t op,
		       unsigned luns_gen);
/* ua.c: a new session (of a target) starts with every LU as it is now. */
void iscsi_ua_init(struct iscsi_session *ss);

/* tmf.c: a LOGICAL UNIT RESET or TARGET WARM/COLD RESET acting on every
 * I_T nexus of the target, whichever reactor it lives on. Counted: one
 * reference for each reactor still to walk its connections and for each
 * aborted task still doing I/O; the function's response goes when the
 * last one is dropped. */
struct iscsi_reset {
	unsigned	refs;		/* atomic */
	struct iscsi_target *target;	/* only compared after the start: the
					 * issuer's session holds it until then */
	int		lun;		/* LUN id; -1: every LU (target reset) */
	uint64_t	nexus;		/* the issuing session (its tasks: no response) */
	uint64_t	conn;		/* the connection that asked, on loop */
	struct ev_loop	*loop;
	uint32_t	itt;
	bool		cold;		/* TARGET COLD RESET: every connection of
					 * the target closes after the response */
	char		iqn[ISCSI_NAME_MAX];	/* (cold) of the target */
};
/* On the issuing connection's reactor: reset the LU(s) (SPC-2 reservation
 * released, unit attention for every nexus) and abort their tasks on every
 * reactor; iscsi_conn_tmf_done() answers. 0 or -ENOMEM. */
int iscsi_reset_start(struct iscsi_target *t, int lun, uint64_t nexus, uint64_t conn,
		      uint32_t itt, bool cold);
void iscsi_reset_get(struct iscsi_reset *r);
void iscsi_reset_put(struct iscsi_reset *r);
/* conn.c, on the calling reactor: abort the tasks r covers (TAS: those of
 * other nexuses get TASK ABORTED); each one still doing I/O holds r. */
void iscsi_conn_reset_local(struct iscsi_reset *r);
/* conn.c, on conn's reactor: the task management function itt is complete.
 * cold (a TARGET COLD RESET, iqn its target's): once the response is in
 * the socket, conn shuts down and every connection of the target closes
 * (iscsi_cold_kill); at once if conn has gone. */
void iscsi_conn_tmf_done(uint64_t conn, uint32_t itt, bool cold, const char *iqn);
/* tmf.c: close every connection of target iqn on every reactor but those
 * accepted after this call, and but except (its response is going out). */
void iscsi_cold_kill(const char *iqn, uint64_t except);
/* conn.c, on the calling reactor: close the connections of target iqn
 * with ids up to upto, but except. Returns how many. */
unsigned iscsi_conn_kill_cold_local(const char *iqn, uint64_t upto, uint64_t except);
/* conn.c: the id the latest connection got */
uint64_t iscsi_conn_last_id(void);
/* tmf.c: a new session of a target whose I_T nexus a TARGET COLD RESET
 * ended: its first command to each LU gets 29h/00h. */
void iscsi_cold_claim(struct iscsi_session *s);

/* target.c */
/* A target for a new session (counted: it cannot be removed meanwhile),
 * NULL if there is none; iscsi_target_put() when the session ends. */
struct iscsi_target *iscsi_target_get(const char *iqn);
void iscsi_target_put(struct iscsi_target *t);
/* SendTargets: every target `initiator` may log in to, as
 * TargetName/TargetAddress pairs, or just `only` when not NULL. */
void iscsi_send_targets(struct iscsi_kvbuf *out, const char *only, const char *initiator,
			const char *addr, unsigned tpg);
/* At a login's first PDU: the target (counted, as iscsi_target_get) and
 * the credentials it needs, or a login status (not found, not authorised);
 * iqn NULL for a discovery session. */
int iscsi_login_lookup(const char *iqn, const char *initiator, struct iscsi_target **t,
		       struct iscsi_chap_cred *cred);
uint16_t iscsi_new_tsih(void);

/* conn.c: start serving an accepted socket (a malloc'ed struct
 * iscsi_accepted, freed here) on the calling reactor; a reactor_send()
 * message. */
void iscsi_conn_start_msg(void *accepted);
/* Close every connection on the calling reactor's loop. */
void iscsi_conn_kill_local(void);
unsigned iscsi_conn_count(void);
/* PREEMPT AND ABORT: abort the tasks of I_T nexus n on lu (scsi_pr_abort_fn) */
void iscsi_pr_abort(struct scsi_lu *lu, const struct pr_nexus *n, struct scsi_pr_wait *w);
/* target.c: the target and LUN exporting the block device named disk, and
 * a copy of its reservations. -ENOENT. */
int iscsi_lun_pr_find(const char *disk, char *iqn, size_t iqn_len, unsigned *lun,
		      struct pr_snapshot *s);
/* pr_rpc.c: iscsi.reservations; the APTPL file of a disk's LU (NULL: no
 * state directory) */
void iscsi_pr_rpc_init(void);
const char *iscsi_pr_file(const char *disk, char *buf, size_t len);
/* conn.c, on the calling reactor: let go of lu (LUN id of target t, no
 * longer published): each connection with no task executing on it closes
 * its channel to it (*closing counts the channels not yet gone, atomic)
 * and forgets what its nexus saw of it. Returns the tasks still executing
 * on lu here. */
unsigned iscsi_conn_lun_gone_local(struct iscsi_target *t, unsigned id, struct scsi_lu *lu,
				   unsigned *closing);
/* Close the connections of target t on the calling reactor. */
void iscsi_conn_kill_target_local(struct iscsi_target *t);
/* Ask the sessions that came through portal id to log out (Async Message,
 * AsyncEvent 1), on the calling reactor; those that have not within
 * ISCSI_LOGOUT_WAIT_S are closed. Connections still logging in are closed. */
#define ISCSI_LOGOUT_WAIT_S	2
void iscsi_conn_logout_portal_local(uint64_t portal);
/* paths_rpc.c: port groups by name, ALUA states, disabled portals and the
 * liveness timeouts ("iscsi_paths" section of the state file). */
void iscsi_paths_rpc_init(void);
/* sanitize_rpc.c: iscsi.sanitize, the SANITIZE pace ("iscsi_sanitize"
 * section of the state file, applied here) */
void iscsi_sanitize_rpc_init(void);
void iscsi_paths_restore(void);		/* before the portals come up */
/* The id of group name (a number is its own id); create: give a new name
 * the next free id. 0 or -ENOENT, -EINVAL, -ENOSPC. */
int iscsi_paths_group(const char *name, bool create, unsigned *id);
bool iscsi_paths_disabled(const char *addr);
/* A portal removed: it is no longer disabled either. */
void iscsi_paths_forget_portal(const char *addr);
/* The live sessions, one JSON object each (initiator, target, portal,
 * connections, negotiated parameters); gathered on every reactor. */
struct json_t;
struct json_t *iscsi_sessions_json(void);

#endif
