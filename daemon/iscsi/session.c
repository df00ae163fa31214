/* SPDX-License-Identifier: MIT */
/*
 * iSCSI sessions (the I_T nexus): what the connections of one session
 * share. A session lives on one reactor with all its connections (a login
 * that adds a connection moves to the session's reactor first, conn.c), so
 * everything here but the registry is read and written by that reactor
 * alone. The registry (TSIH -> session) is read by logins on any reactor,
 * under its lock, and only for the session's reactor: the pointer is used
 * on that reactor only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/alua.h"
#include "sand/log.h"
#include "daemon/iscsi/iscsi_int.h"

static pthread_mutex_t sess_lock = PTHREAD_MUTEX_INITIALIZER;
static struct list_head sessions = LIST_HEAD_INIT(sessions);
static uint64_t sess_ids = 1ull << 32;	/* apart from anything else's nexus ids */

struct iscsi_session *iscsi_session_new(struct ev_loop *loop, struct iscsi_target *t,
					const char *initiator, const uint8_t isid[6],
					uint16_t tsih, unsigned max_conns)
{
	struct iscsi_session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->loop = loop;
	s->target = t;
	snprintf(s->initiator, sizeof(s->initiator), "%s", initiator);
	memcpy(s->isid, isid, sizeof(s->isid));
	s->tsih = tsih;
	s->max_conns = max_conns ? max_conns : 1;
	list_init(&s->conns);
	list_init(&s->held);
	snprintf(s->iport, sizeof(s->iport), "%s,i,0x%02x%02x%02x%02x%02x%02x", initiator,
		 isid[0], isid[1], isid[2], isid[3], isid[4], isid[5]);
	if (t) {
		s->luns_seen = __atomic_load_n(&t->luns_gen, __ATOMIC_ACQUIRE);
		iscsi_ua_init(s);	/* resets before it are not its news */
		iscsi_cold_claim(s);	/* but a cold reset that ended it is */
	}
	for (unsigned i = 0; i < ISCSI_MAX_LUNS; i++)	/* the I_T nexus exists now */
		s->alua_seen[i] = scsi_alua_seen_now();
	s->refs = 1;
	pthread_mutex_lock(&sess_lock);
	s->id = ++sess_ids;
	list_add_tail(&s->link, &sessions);
	pthread_mutex_unlock(&sess_lock);
	return s;
}

struct ev_loop *iscsi_session_loop(uint16_t tsih)
{
	struct ev_loop *loop = NULL;
	struct list_head *l;

	pthread_mutex_lock(&sess_lock);
	list_for_each(l, &sessions) {
		struct iscsi_session *s = list_entry(l, struct iscsi_session, link);

		if (s->tsih == tsih && !s->ended) {
			loop = s->loop;
			break;
		}
	}
	pthread_mutex_unlock(&sess_lock);
	return loop;
}

struct iscsi_session *iscsi_session_find_local(uint16_t tsih)
{
	struct iscsi_session *found = NULL;
	struct ev_loop *loop = ev_current();
	struct list_head *l;

	pthread_mutex_lock(&sess_lock);
	list_for_each(l, &sessions) {
		struct iscsi_session *s = list_entry(l, struct iscsi_session, link);

		if (s->tsih == tsih && !s->ended && s->loop == loop) {
			found = s;
			break;
		}
	}
	pthread_mutex_unlock(&sess_lock);
	return found;
}

void iscsi_session_get(struct iscsi_session *s)
{
	s->refs++;
}

/* The last connection has gone: the I_T nexus ends, and its reservations
 * (RESERVE(6)/(10)) with it. Persistent reservations stay (SPC-4). */
void iscsi_session_put(struct iscsi_session *s)
{
	if (--s->refs)
		return;
	if (s->target) {
		for (unsigned i = 0; i < ISCSI_MAX_LUNS; i++) {
			struct iscsi_lun *l = __atomic_load_n(&s->target->luns[i],
							      __ATOMIC_ACQUIRE);

			if (s->ua_seen[i] && l)
				scsi_lu_release_nexus(&l->lu, s->id);
		}
	}
	pthread_mutex_lock(&sess_lock);
	list_del(&s->link);
	pthread_mutex_unlock(&sess_lock);
	free(s);
}

void iscsi_session_end(struct iscsi_session *s)
{
	pthread_mutex_lock(&sess_lock);
	s->ended = true;	/* no connection joins it any more */
	pthread_mutex_unlock(&sess_lock);
}

void iscsi_session_each(struct iscsi_target *t, void (*fn)(struct iscsi_session *, void *),
			void *arg)
{
	struct list_head *l;

	pthread_mutex_lock(&sess_lock);
	list_for_each(l, &sessions) {
		struct iscsi_session *s = list_entry(l, struct iscsi_session, link);

		if (s->target == t && !s->ended)
			fn(s, arg);
	}
	pthread_mutex_unlock(&sess_lock);
}
