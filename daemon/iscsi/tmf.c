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
 * 4. TARGET COLD RESET only (RFC 7143 11.5.1 and 11.6.1: "the target MUST
 *    then close all of its TCP connections to all initiators"): once the
 *    response is in the issuing connection's socket, that connection
 *    shuts down its sending side (and reads until the initiator closes,
 *    so that no RST overtakes the response), and a message to every
 *    reactor closes every other connection of the target accepted before
 *    then (conn.c iscsi_conn_kill_cold_local). Other targets' sessions and
 *    discovery sessions are left alone. The initiator ports whose sessions
 *    it ended are noted: the session each logs in again with gets 29h/00h
 *    POWER ON, RESET, OR BUS DEVICE RESET OCCURRED on its first command to
 *    each LU (ua.c), as the LU reset and the I_T nexus loss are both 29h.
 *
 * A cold reset is not a power loss: the target keeps running, so
 * persistent reservations and registrations stay whatever APTPL says
 * (SPC-4 5.13: they survive hard reset, logical unit reset and I_T nexus
 * loss; only a loss of power with APTPL 0 drops them, 6.16.2), as LIO
 * keeps them through a LU reset. SPC-2 RESERVE is released, by the LU
 * reset of step 1 and again by the I_T nexus loss (SPC-2 5.5.1). LIO
 * rejects TARGET WARM and COLD RESET (target_core_tmr.c: FUNCTION
 * REJECTED); RFC 7143 makes both optional.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

	iscsi_conn_tmf_done(r->conn, r->itt, r->cold, r->iqn);
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

/* ------------------------------------------------- TARGET COLD RESET */

#define COLD_MAX	64	/* initiator ports remembered; the oldest go */

struct cold_nexus {
	char	iqn[ISCSI_NAME_MAX];
	char	iport[PR_IPORT_MAX];
};

static pthread_mutex_t cold_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cold_nexus cold_owed[COLD_MAX];
static unsigned ncold;

/* Under the session registry's lock: s's I_T nexus is to be told. */
static void cold_note(struct iscsi_session *s, void *arg)
{
	struct iscsi_target *t = arg;
	struct cold_nexus *e;

	pthread_mutex_lock(&cold_lock);
	for (unsigned i = 0; i < ncold; i++)
		if (!strcmp(cold_owed[i].iqn, t->iqn) && !strcmp(cold_owed[i].iport, s->iport))
			goto unlock;
	if (ncold == COLD_MAX)
		memmove(cold_owed, cold_owed + 1, --ncold * sizeof(cold_owed[0]));
	e = &cold_owed[ncold++];
	snprintf(e->iqn, sizeof(e->iqn), "%s", t->iqn);
	snprintf(e->iport, sizeof(e->iport), "%s", s->iport);
unlock:
	pthread_mutex_unlock(&cold_lock);
}

void iscsi_cold_claim(struct iscsi_session *s)
{
	bool owed = false;

	pthread_mutex_lock(&cold_lock);
	for (unsigned i = 0; i < ncold; i++) {
		if (strcmp(cold_owed[i].iqn, s->target->iqn) || strcmp(cold_owed[i].iport, s->iport))
			continue;
		cold_owed[i] = cold_owed[--ncold];
		owed = true;
		break;
	}
	pthread_mutex_unlock(&cold_lock);
	if (!owed)
		return;
	for (unsigned i = 0; i < ISCSI_MAX_LUNS; i++) {
		if (!s->ua_seen[i])
			continue;	/* no LU */
		s->ua_seen[i] = s->ua_seen[i] + 1 ? s->ua_seen[i] + 1 : 1;
		s->cold_ua[i] = 1;
	}
}

struct cold_kill {
	char		iqn[ISCSI_NAME_MAX];
	uint64_t	upto, except;
};

static void cold_kill_msg(void *arg)
{
	struct cold_kill *k = arg;
	unsigned n = iscsi_conn_kill_cold_local(k->iqn, k->upto, k->except);

	if (n)
		LOG_INFO(LS_ISCSI, "%s: %u connections closed by a cold reset", k->iqn, n);
	free(k);
}

void iscsi_cold_kill(const char *iqn, uint64_t except)
{
	uint64_t upto = iscsi_conn_last_id();

	for (unsigned i = 0; i < reactor_count(); i++) {
		struct cold_kill *k = malloc(sizeof(*k));

		if (k) {
			snprintf(k->iqn, sizeof(k->iqn), "%s", iqn);
			k->upto = upto;
			k->except = except;
		}
		if (!k || reactor_send(i, cold_kill_msg, k)) {
			LOG_ERR(LS_ISCSI, "cold reset of %s: reactor %u not told (out of memory)",
				iqn, i);
			free(k);
		}
	}
}

/* ------------------------------------------------------------- resets */

static void reset_msg(void *arg)
{
	struct iscsi_reset *r = arg;

	iscsi_conn_reset_local(r);
	iscsi_reset_put(r);
}

int iscsi_reset_start(struct iscsi_target *t, int lun, uint64_t nexus, uint64_t conn,
		      uint32_t itt, bool cold)
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
	r->cold = cold;
	snprintf(r->iqn, sizeof(r->iqn), "%s", t->iqn);
	r->refs = 1;
	if (cold)
		iscsi_session_each(t, cold_note, t);
	for (unsigned i = 0; i < ISCSI_MAX_LUNS; i++) {
		struct iscsi_lun *l = __atomic_load_n(&t->luns[i], __ATOMIC_ACQUIRE);

		if (l && (lun < 0 || (unsigned)lun == i))
			scsi_lu_reset(&l->lu);
	}
	LOG_INFO(LS_ISCSI, "%s: %s reset", t->iqn,
		 lun >= 0 ? "logical unit" : cold ? "target cold" : "target");
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
