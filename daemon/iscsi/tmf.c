/* SPDX-License-Identifier: MIT */
/*
 * LOGICAL UNIT RESET and TARGET WARM/COLD RESET (RFC 7143 11.5.1, SAM-5
 * 6.3.3 and 7.7) across every I_T nexus of the target.
 *
 * The sessions of a target live on any reactor, so a reset goes in steps:
 *
 * 1. On the issuing connection's reactor, at once: each LU reset (its
 *    SPC-2 RESERVE is released, persistent reservations stay; reset_gen
 *    moves, so every nexus, the issuer's too, gets BUS DEVICE RESET
 *    FUNCTION OCCURRED on its next command, and nothing that arrives from
 *    now on runs before its nexus has been told).
 * 2. A message to every reactor: its connections' tasks for the LU (every
 *    LU: target reset) are aborted (conn.c iscsi_conn_reset_local): those
 *    gathering Data-Out or held in the command window at once, those doing
 *    I/O when their I/O ends (it cannot be recalled), a SANITIZE detached
 *    (the sanitize goes on). The issuer's own tasks end without a
 *    response; another nexus's end with TASK ABORTED status when the LU's
 *    control page has TAS 1 (the default), without a response when 0.
 * 3. Each reactor's walk and each task left doing I/O holds a reference;
 *    the last one dropped sends the function's response from the issuing
 *    connection's reactor. So the answer means every aborted task has
 *    ended: a write issued before the reset either reached the disk
 *    before the response or never will.
 */
#include <errno.h>
#include <stdlib.h>
#include "sand/log.h"
#include "sand/reactor.h"
#include "daemon/iscsi/iscsi_int.h"

void iscsi_reset_get(struct iscsi_reset *r)
{
	__atomic_add_fetch(&r->refs, 1, __ATOMIC_ACQ_REL);
}

/* On the issuing connection's reactor: answer (if it is still there). */
static void reset_done_msg(void *arg)
{
	struct iscsi_reset *r = arg;

	iscsi_conn_tmf_done(r->conn, r->itt);
	free(r);
}

void iscsi_reset_put(struct iscsi_reset *r)
{
	if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL))
		return;
	if (ev_send_msg(r->loop, reset_done_msg, r)) {
		/* no memory for the message: the initiator's TMF times out */
		LOG_ERR(LS_ISCSI, "a reset cannot be answered (out of memory)");
		free(r);
	}
}

static void reset_msg(void *arg)
{
	struct iscsi_reset *r = arg;

	iscsi_conn_reset_local(r);
	iscsi_reset_put(r);
}

int iscsi_reset_start(struct iscsi_target *t, int lun, uint64_t nexus, uint64_t conn,
		      uint32_t itt)
{
	struct iscsi_reset *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->target = t;
	r->lun = lun;
	r->nexus = nexus;
	r->conn = conn;
	r->loop = ev_current();
	r->itt = itt;
	r->refs = 1;
	for (unsigned i = 0; i < ISCSI_MAX_LUNS; i++) {
		struct iscsi_lun *l = __atomic_load_n(&t->luns[i], __ATOMIC_ACQUIRE);

		if (l && (lun < 0 || (unsigned)lun == i))
			scsi_lu_reset(&l->lu);
	}
	LOG_INFO(LS_ISCSI, "%s: %s reset", t->iqn, lun < 0 ? "target" : "logical unit");
	for (unsigned i = 0; i < reactor_count(); i++) {
		iscsi_reset_get(r);
		if (reactor_send(i, reset_msg, r)) {
			LOG_ERR(LS_ISCSI, "reset of %s: reactor %u not told (out of memory)", t->iqn, i);
			iscsi_reset_put(r);
		}
	}
	iscsi_reset_put(r);
	return 0;
}
