/* SPDX-License-Identifier: MIT */
/*
 * The iSCSI target's configuration and portals: targets and their LUNs
 * (set up through the C API, read by every reactor), listening sockets
 * accepted on reactor 0 and handed round-robin to the reactors, and
 * shutdown.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>
#include <gnutls/crypto.h>
#include "sand/alua.h"
#include "sand/log.h"
#include "sand/reactor.h"
#include "daemon/iscsi/iscsi_int.h"
#include "proto/scsi/sanitize.h"
#include "proto/scsi/xcopy.h"

static pthread_mutex_t cfg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct list_head targets = LIST_HEAD_INIT(targets);
static struct list_head portals = LIST_HEAD_INIT(portals);
static struct iscsi_chap_cred discovery_cred;	/* cfg lock */
static uint16_t tsih_next;
static uint64_t portal_ids;		/* cfg lock */

/* a dead connection is closed within 3 s x (3 + 1) = 12 s: well before a
 * host gives up on a path (doc/iscsi.md, "Dead paths") */
struct iscsi_timeouts iscsi_tmo = { .nop_interval_ms = 3000, .nop_misses = 3,
				    .login_ms = 15000 };

void iscsi_set_timeouts(unsigned nop_interval_ms, unsigned nop_misses, unsigned login_ms)
{
	pthread_mutex_lock(&cfg_lock);
	iscsi_tmo.nop_interval_ms = nop_interval_ms;
	iscsi_tmo.nop_misses = nop_misses ? nop_misses : 1;
	iscsi_tmo.login_ms = login_ms ? login_ms : 15000;
	pthread_mutex_unlock(&cfg_lock);
}

uint16_t iscsi_new_tsih(void)
{
	uint16_t t;

	do
		t = __atomic_add_fetch(&tsih_next, 1, __ATOMIC_RELAXED);
	while (!t);
	return t;
}

static struct iscsi_target *find_locked(const char *iqn)
{
	struct list_head *l;

	list_for_each(l, &targets) {
		struct iscsi_target *t = list_entry(l, struct iscsi_target, link);

		/* iSCSI names compare case-insensitively (they are normalised
		 * to lower case by stringprep) */
		if (!strcasecmp(t->iqn, iqn))
			return t;
	}
	return NULL;
}

struct iscsi_target *iscsi_target_get(const char *iqn)
{
	struct iscsi_target *t;

	pthread_mutex_lock(&cfg_lock);
	t = find_locked(iqn);
	if (t)
		t->sessions++;
	pthread_mutex_unlock(&cfg_lock);
	return t;
}

void iscsi_target_put(struct iscsi_target *t)
{
	pthread_mutex_lock(&cfg_lock);
	t->sessions--;
	pthread_mutex_unlock(&cfg_lock);
}

static bool acl_admits(const struct iscsi_target *t, const char *initiator)
{
	if (!t->nacl)
		return true;
	for (unsigned i = 0; i < t->nacl; i++)
		if (!strcasecmp(t->acl[i], initiator))
			return true;
	return false;
}

int iscsi_login_lookup(const char *iqn, const char *initiator, struct iscsi_target **tp,
		       struct iscsi_chap_cred *cred)
{
	struct iscsi_target *t;
	int status = 0;

	*tp = NULL;
	pthread_mutex_lock(&cfg_lock);
	if (!iqn) {
		*cred = discovery_cred;
	} else if (!(t = find_locked(iqn))) {
		status = ISCSI_LOGIN_NOT_FOUND;
	} else if (!acl_admits(t, initiator)) {
		status = ISCSI_LOGIN_AUTHZ_FAILED;
	} else {
		t->sessions++;
		*cred = t->cred;
		*tp = t;
	}
	pthread_mutex_unlock(&cfg_lock);
	return status;
}

void iscsi_send_targets(struct iscsi_kvbuf *out, const char *only, const char *initiator,
			const char *addr, unsigned tpg)
{
	struct list_head *l;
	char a[128];

	snprintf(a, sizeof(a), "%s,%u", addr, tpg);
	pthread_mutex_lock(&cfg_lock);
	list_for_each(l, &targets) {
		struct iscsi_target *t = list_entry(l, struct iscsi_target, link);

		if ((only && strcasecmp(only, t->iqn)) || !acl_admits(t, initiator))
			continue;
		iscsi_kv_add(out, "TargetName", t->iqn);
		iscsi_kv_add(out, "TargetAddress", a);
	}
	pthread_mutex_unlock(&cfg_lock);
}

static bool valid_name(const char *n)
{
	size_t len = strlen(n);

	if (!len || len >= ISCSI_NAME_MAX)
		return false;
	if (strncmp(n, "iqn.", 4) && strncmp(n, "eui.", 4) && strncmp(n, "naa.", 4))
		return false;
	for (size_t i = 0; i < len; i++)
		if (n[i] <= ' ' || n[i] == ',' || (unsigned char)n[i] >= 0x7f)
			return false;
	return true;
}

int iscsi_target_add(const char *iqn)
{
	struct iscsi_target *t;

	if (!iqn || !valid_name(iqn))
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	snprintf(t->iqn, sizeof(t->iqn), "%s", iqn);
	pthread_mutex_lock(&cfg_lock);
	if (find_locked(iqn)) {
		pthread_mutex_unlock(&cfg_lock);
		free(t);
		return -EEXIST;
	}
	list_add_tail(&t->link, &targets);
	pthread_mutex_unlock(&cfg_lock);
	LOG_INFO(LS_ISCSI, "target %s added", iqn);
	return 0;
}

int iscsi_target_remove(const char *iqn)
{
	struct iscsi_target *t;
	int rc = 0;

	pthread_mutex_lock(&cfg_lock);
	t = find_locked(iqn);
	if (!t)
		rc = -ENOENT;
	else if (t->nluns || t->sessions)
		rc = -EBUSY;
	else
		list_del(&t->link);
	pthread_mutex_unlock(&cfg_lock);
	if (!rc) {
		gnutls_memset(&t->cred, 0, sizeof(t->cred));
		free(t->acl);
		free(t);
		LOG_INFO(LS_ISCSI, "target %s removed", iqn);
	}
	return rc;
}

int iscsi_lun_add(const char *iqn, unsigned lun, struct blkdev *bd, bool readonly)
{
	return iscsi_lun_add_pr(iqn, lun, bd, readonly, NULL);
}

int iscsi_lun_add_pr(const char *iqn, unsigned lun, struct blkdev *bd, bool readonly,
		     const char *pr_file)
{
	struct iscsi_target *t;
	struct iscsi_lun *l;
	uuid_t uuid;
	int rc = 0;

	if (!bd || lun >= ISCSI_MAX_LUNS)
		return -EINVAL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	/* TODO: a persistent per-volume UUID once volumes have one; until
	 * then the identifiers are derived from the device's name, so they
	 * are at least stable across restarts and equal on every path. */
	uuid_generate_sha1(uuid, (const unsigned char *)"\x6b\xa7\xb8\x10\x9d\xad\x11\xd1"
			   "\x80\xb4\x00\xc0\x4f\xd4\x30\xc8", bd->name, strlen(bd->name));
	l->id = lun;
	scsi_lu_init(&l->lu, bd, uuid, readonly);
	scsi_pr_set_abort_hook(iscsi_pr_abort);
	/* reservations kept with APTPL come back before anyone sees the LU */
	if (pr_file && (rc = scsi_pr_set_file(&l->lu, pr_file))) {
		free(l);
		return rc;
	}
	pthread_mutex_lock(&cfg_lock);
	t = find_locked(iqn);
	if (!t)
		rc = -ENOENT;
	else if (t->luns[lun])
		rc = -EEXIST;
	else if (t->draining == (int)lun + 1)	/* sessions still hold channels to the old one */
		rc = -EBUSY;
	if (rc) {
		pthread_mutex_unlock(&cfg_lock);
		free(l);
		return rc;
	}
	{
		uint32_t pub = t->lunpub;

		/* appended past what readers see, then published */
		t->lunlists[pub >> 16 & 1][t->nluns++] = scsi_lun_encode(lun);
		__atomic_store_n(&t->luns[lun], l, __ATOMIC_RELEASE);
		__atomic_store_n(&t->lunpub, (pub & 0x10000) | t->nluns, __ATOMIC_RELEASE);
		/* live sessions: REPORTED LUNS DATA HAS CHANGED */
		__atomic_add_fetch(&t->luns_gen, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&cfg_lock);
	if (scsi_xcopy_register(&l->lu))	/* EXTENDED COPY cannot name it */
		LOG_WARN(LS_ISCSI, "target %s lun %u: not a copy target", iqn, lun);
	LOG_INFO(LS_ISCSI, "target %s lun %u: %s%s", iqn, lun, bd->name,
		 l->lu.readonly ? " (read-only)" : "");
	return 0;
}

struct lun_gone {
	struct iscsi_target *t;
	unsigned	id;
	struct scsi_lu	*lu;
	unsigned	busy;
	unsigned	closing;	/* channels closed, not yet gone (atomic) */
};

static int lun_gone_local(unsigned i, void *arg)
{
	struct lun_gone *g = arg;

	g->busy += iscsi_conn_lun_gone_local(g->t, g->id, g->lu, &g->closing);
	g->busy += scsi_sanitize_stop(g->lu);	/* a sanitize going on alone */
	return 0;
}

#define LUN_DRAIN_WAIT_S	30

/*
 * A LUN leaves, sessions or not: it is unpublished (new commands to it get
 * LOGICAL UNIT NOT SUPPORTED, every nexus of the target REPORTED LUNS DATA
 * HAS CHANGED), then every reactor is visited until none has a task still
 * executing on it; each reactor is single-threaded, so once visited it
 * holds no pointer to the LU outside those tasks. Only then is it freed
 * and its device handed back. Removals are serialised (the REPORT LUNS
 * buffers rely on it).
 */
int iscsi_lun_remove(const char *iqn, unsigned lun, struct blkdev **bd)
{
	static pthread_mutex_t remove_lock = PTHREAD_MUTEX_INITIALIZER;
	struct iscsi_target *t;
	struct iscsi_lun *l = NULL;
	uint64_t enc = scsi_lun_encode(lun);
	struct lun_gone g;
	int rc = 0;

	if (lun >= ISCSI_MAX_LUNS)
		return -ENOENT;
	pthread_mutex_lock(&remove_lock);
	pthread_mutex_lock(&cfg_lock);
	t = find_locked(iqn);
	if (!t || !t->luns[lun]) {
		rc = -ENOENT;
	} else {
		uint32_t pub = t->lunpub;
		const uint64_t *from = t->lunlists[pub >> 16 & 1];
		uint64_t *to = t->lunlists[!(pub >> 16 & 1)];
		unsigned i, j;

		l = t->luns[lun];
		__atomic_store_n(&t->luns[lun], NULL, __ATOMIC_RELEASE);
		for (i = j = 0; i < t->nluns; i++)
			if (from[i] != enc)
				to[j++] = from[i];
		t->nluns = j;
		__atomic_store_n(&t->lunpub, (~pub & 0x10000) | j, __ATOMIC_RELEASE);
		__atomic_add_fetch(&t->luns_gen, 1, __ATOMIC_RELEASE);
		/* t stays while a session holds it, and this caller does */
		t->sessions++;
		t->draining = (int)lun + 1;
	}
	pthread_mutex_unlock(&cfg_lock);
	if (rc) {
		pthread_mutex_unlock(&remove_lock);
		return rc;
	}
	g = (struct lun_gone){ .t = t, .id = lun, .lu = &l->lu };
	for (unsigned n = 0; reactor_count(); n++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		g.busy = 0;
		reactor_call_all(lun_gone_local, &g);
		if (!g.busy && !__atomic_load_n(&g.closing, __ATOMIC_ACQUIRE))
			break;
		if (n == LUN_DRAIN_WAIT_S * 100) {
			/* I/O that never ends: the LU stays allocated (hidden)
			 * and its device claimed, rather than freed under it */
			LOG_ERR(LS_ISCSI, "target %s lun %u: %u commands still running after "
				  "%d s, device kept", iqn, lun, g.busy, LUN_DRAIN_WAIT_S);
			rc = -ETIMEDOUT;
			break;
		}
		nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&cfg_lock);
	t->draining = 0;
	pthread_mutex_unlock(&cfg_lock);
	iscsi_target_put(t);
	pthread_mutex_unlock(&remove_lock);
	if (rc)
		return rc;
	scsi_xcopy_unregister(&l->lu);	/* waits for copies using it */
	*bd = l->lu.bd;
	free(l);
	LOG_INFO(LS_ISCSI, "target %s lun %u removed", iqn, lun);
	return 0;
}

static int kill_target_conns(unsigned i, void *arg)
{
	iscsi_conn_kill_target_local(arg);
	return 0;
}

int iscsi_target_close_sessions(const char *iqn)
{
	struct iscsi_target *t;
	unsigned left = 0;

	pthread_mutex_lock(&cfg_lock);
	t = find_locked(iqn);
	pthread_mutex_unlock(&cfg_lock);
	if (!t)
		return -ENOENT;
	/* t stays: only the control thread (the caller) removes targets */
	for (int i = 0; i < 1000; i++) {
		pthread_mutex_lock(&cfg_lock);
		left = t->sessions;
		pthread_mutex_unlock(&cfg_lock);
		if (!left)
			break;
		if (i % 100 == 0)	/* again now and then: logins racing in */
			reactor_call_all(kill_target_conns, t);
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	if (left)
		return -ETIMEDOUT;
	LOG_INFO(LS_ISCSI, "target %s: sessions closed", iqn);
	return 0;
}

int iscsi_acl_add(const char *iqn, const char *initiator)
{
	struct iscsi_target *t;
	int rc = 0;

	if (!initiator || !valid_name(initiator))
		return -EINVAL;
	pthread_mutex_lock(&cfg_lock);
	t = find_locked(iqn);
	if (!t) {
		rc = -ENOENT;
	} else {
		for (unsigned i = 0; i < t->nacl; i++)
			if (!strcasecmp(t->acl[i], initiator))
				rc = -EEXIST;
		if (!rc && t->nacl >= ISCSI_MAX_ACL)
			rc = -ENOSPC;
		if (!rc) {
			void *n = realloc(t->acl, (t->nacl + 1) * sizeof(*t->acl));

			if (!n) {
				rc = -ENOMEM;
			} else {
				t->acl = n;
				snprintf(t->acl[t->nacl++], ISCSI_NAME_MAX, "%s", initiator);
			}
		}
	}
	pthread_mutex_unlock(&cfg_lock);
	if (!rc)
		LOG_INFO(LS_ISCSI, "target %s admits %s", iqn, initiator);
	return rc;
}

int iscsi_acl_remove(const char *iqn, const char *initiator)
{
	struct iscsi_target *t;
	int rc = -ENOENT;

	pthread_mutex_lock(&cfg_lock);
	t = find_locked(iqn);
	for (unsigned i = 0; t && i < t->nacl; i++) {
		if (!strcasecmp(t->acl[i], initiator)) {
			memmove(t->acl[i], t->acl[i + 1], (t->nacl - i - 1) * sizeof(*t->acl));
			t->nacl--;
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&cfg_lock);
	if (!rc)
		LOG_INFO(LS_ISCSI, "target %s no longer admits %s%s", iqn, initiator,
			 t->nacl ? "" : " (no list: every initiator admitted)");
	return rc;
}

static bool cred_name_ok(const char *s)
{
	size_t n = strnlen(s, ISCSI_CHAP_NAME_MAX);

	return n && n < ISCSI_CHAP_NAME_MAX;
}

int iscsi_auth_set(const char *iqn, const struct iscsi_chap_cred *cred)
{
	struct iscsi_chap_cred c = { 0 };
	struct iscsi_target *t = NULL;
	int rc = 0;

	if (cred && cred->required) {
		if (!cred_name_ok(cred->user) || !cred_name_ok(cred->secret))
			return -EINVAL;
		if (cred->mutual && (!cred_name_ok(cred->muser) || !cred_name_ok(cred->msecret) ||
				     !strcmp(cred->secret, cred->msecret)))
			return -EINVAL;
		c = *cred;
		if (!c.mutual) {
			memset(c.muser, 0, sizeof(c.muser));
			memset(c.msecret, 0, sizeof(c.msecret));
		}
	}
	pthread_mutex_lock(&cfg_lock);
	if (iqn && !(t = find_locked(iqn)))
		rc = -ENOENT;
	else
		*(t ? &t->cred : &discovery_cred) = c;
	pthread_mutex_unlock(&cfg_lock);
	if (!rc)	/* never the secrets */
		LOG_INFO(LS_ISCSI, "%s%s: %s%s%s%s", iqn ? "target " : "discovery",
			 iqn ? iqn : "", c.required ? "chap user " : "no chap",
			 c.required ? c.user : "", c.mutual ? ", mutual as " : "",
			 c.mutual ? c.muser : "");
	gnutls_memset(&c, 0, sizeof(c));
	return rc;
}

/* ---- portals ---- */

static void portal_accept(struct ev_io *io, uint32_t revents)
{
	struct iscsi_portal *p = container_of(io, struct iscsi_portal, io);

	for (;;) {
		int fd = accept4(p->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct iscsi_accepted *a;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				LOG_RATELIMIT(LOG_WARN, LS_ISCSI, "accept: %s", strerror(errno));
			return;
		}
		a = malloc(sizeof(*a));
		if (!a) {
			close(fd);
			continue;
		}
		a->fd = fd;
		a->tpg = p->tpg;
		a->portal = p->id;
		if (reactor_send(reactor_next(), iscsi_conn_start_msg, a)) {
			close(fd);
			free(a);
		}
	}
}

static int parse_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[128];
	const char *colon;
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV |
				  AI_PASSIVE, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai;
	size_t hl;

	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');

		if (!end || end[1] != ':')
			return -EINVAL;
		hl = (size_t)(end - addr - 1);
		if (hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, addr + 1, hl);
		colon = end + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - addr);
		if (hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, addr, hl);
	}
	host[hl] = '\0';
	if (getaddrinfo(hl ? host : NULL, colon + 1, &hints, &ai))
		return -EINVAL;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static int portal_start(void *arg)
{
	struct iscsi_portal *p = arg;

	return ev_io_start(reactor_loop(p->reactor), &p->io, p->fd, EV_READ, portal_accept);
}

static int portal_stop(void *arg)
{
	struct iscsi_portal *p = arg;

	ev_io_stop(reactor_loop(p->reactor), &p->io);
	return 0;
}

static struct iscsi_portal *portal_find_locked(const char *addr)
{
	struct list_head *l;

	list_for_each(l, &portals) {
		struct iscsi_portal *p = list_entry(l, struct iscsi_portal, link);

		if (!strcmp(p->addr, addr))
			return p;
	}
	return NULL;
}

int iscsi_portal_add(const char *addr)
{
	return iscsi_portal_add_tpg(addr, ISCSI_TPGT);
}

int iscsi_portal_add_tpg(const char *addr, unsigned tpg)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct iscsi_portal *p;
	int one = 1, rc;

	if (!reactor_count())
		return -ENXIO;
	if (!tpg || tpg > 65535 || strlen(addr) >= sizeof(p->addr))
		return -EINVAL;
	rc = parse_addr(addr, &ss, &len);
	if (rc)
		return rc;
	pthread_mutex_lock(&cfg_lock);
	rc = portal_find_locked(addr) ? -EEXIST : 0;
	pthread_mutex_unlock(&cfg_lock);
	if (rc)
		return rc;
	/* the portal group is a SCSI target port group (active/optimized
	 * until told otherwise; one that exists keeps its state) */
	rc = scsi_alua_group_add((uint16_t)tpg, SCSI_ALUA_OPTIMIZED);
	if (rc)
		return rc;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->tpg = (uint16_t)tpg;
	snprintf(p->addr, sizeof(p->addr), "%s", addr);
	p->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0) {
		rc = -errno;
		goto free_portal;
	}
	setsockopt(p->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	rc = bind_listener(p->fd, (struct sockaddr *)&ss, len);
	if (rc)
		goto close_fd;
	if (listen(p->fd, 128)) {
		rc = -errno;
		goto close_fd;
	}
	len = sizeof(ss);
	getsockname(p->fd, (struct sockaddr *)&ss, &len);
	p->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
			((struct sockaddr_in *)&ss)->sin_port);
	p->reactor = 0;
	rc = reactor_call(p->reactor, portal_start, p);
	if (rc)
		goto close_fd;
	pthread_mutex_lock(&cfg_lock);
	p->id = ++portal_ids;
	list_add_tail(&p->link, &portals);
	pthread_mutex_unlock(&cfg_lock);
	LOG_INFO(LS_ISCSI, "portal %s (tpg %u) listening on port %d", addr, tpg, p->port);
	return p->port;

close_fd:
	close(p->fd);
free_portal:
	free(p);
	return rc;
}

int iscsi_portal_remove(const char *addr)
{
	struct iscsi_portal *p;

	pthread_mutex_lock(&cfg_lock);
	p = portal_find_locked(addr);
	if (p)
		list_del(&p->link);
	pthread_mutex_unlock(&cfg_lock);
	if (!p)
		return -ENOENT;
	reactor_call(p->reactor, portal_stop, p);
	close(p->fd);
	LOG_INFO(LS_ISCSI, "portal %s removed", addr);
	free(p);
	return 0;
}

static int logout_portal(unsigned i, void *arg)
{
	iscsi_conn_logout_portal_local((uint64_t)(uintptr_t)arg);
	return 0;
}

int iscsi_portal_disable(const char *addr)
{
	struct iscsi_portal *p;
	int tpg;

	pthread_mutex_lock(&cfg_lock);
	p = portal_find_locked(addr);
	if (p)
		list_del(&p->link);
	pthread_mutex_unlock(&cfg_lock);
	if (!p)
		return -ENOENT;
	reactor_call(p->reactor, portal_stop, p);
	close(p->fd);
	reactor_call_all(logout_portal, (void *)(uintptr_t)p->id);
	LOG_INFO(LS_ISCSI, "portal %s disabled: its sessions are asked to log out", addr);
	tpg = p->tpg;
	free(p);
	return tpg;
}

static int kill_conns(unsigned i, void *arg)
{
	iscsi_conn_kill_local();
	return 0;
}

void iscsi_shutdown(void)
{
	struct list_head *l, *tmp, gone = LIST_HEAD_INIT(gone);

	/* Take the portals off the list first: reactor_call must not run under
	 * cfg_lock, which the reactors take too (logins, connections ending). */
	pthread_mutex_lock(&cfg_lock);
	list_for_each_safe(l, tmp, &portals) {
		list_del(l);
		list_add_tail(l, &gone);
	}
	pthread_mutex_unlock(&cfg_lock);
	list_for_each_safe(l, tmp, &gone) {
		struct iscsi_portal *p = list_entry(l, struct iscsi_portal, link);

		list_del(&p->link);
		reactor_call(p->reactor, portal_stop, p);
		close(p->fd);
		free(p);
	}
	if (reactor_count()) {
		reactor_call_all(kill_conns, NULL);
		/* connections with I/O in flight go once it has ended */
		for (int i = 0; i < 1000 && iscsi_conn_count(); i++) {
			struct timespec ts = { 0, 10 * 1000 * 1000 };

			nanosleep(&ts, NULL);
		}
		if (iscsi_conn_count())
			LOG_WARN(LS_ISCSI, "%u connections still open at shutdown",
				 iscsi_conn_count());
	}
	/* sanitizes going on alone stop after their bio in flight */
	for (int i = 0; i < 3000; i++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		unsigned busy = 0;

		pthread_mutex_lock(&cfg_lock);
		list_for_each(l, &targets) {
			struct iscsi_target *t = list_entry(l, struct iscsi_target, link);

			for (unsigned j = 0; j < ISCSI_MAX_LUNS; j++)
				if (t->luns[j])
					busy += scsi_sanitize_stop(&t->luns[j]->lu);
		}
		pthread_mutex_unlock(&cfg_lock);
		if (!busy || !reactor_count())
			break;
		nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&cfg_lock);
	list_for_each_safe(l, tmp, &targets) {
		struct iscsi_target *t = list_entry(l, struct iscsi_target, link);

		list_del(&t->link);
		for (unsigned i = 0; i < ISCSI_MAX_LUNS; i++) {
			if (t->luns[i])
				scsi_xcopy_unregister(&t->luns[i]->lu);
			free(t->luns[i]);
		}
		gnutls_memset(&t->cred, 0, sizeof(t->cred));
		free(t->acl);
		free(t);
	}
	gnutls_memset(&discovery_cred, 0, sizeof(discovery_cred));
	pthread_mutex_unlock(&cfg_lock);
	scsi_alua_reset();
}

int iscsi_lun_pr_find(const char *disk, char *iqn, size_t iqn_len, unsigned *lun,
		      struct pr_snapshot *s)
{
	struct list_head *l;
	int rc = -ENOENT;

	pthread_mutex_lock(&cfg_lock);
	list_for_each(l, &targets) {
		struct iscsi_target *t = list_entry(l, struct iscsi_target, link);

		for (unsigned i = 0; i < ISCSI_MAX_LUNS && rc; i++) {
			if (!t->luns[i] || strcmp(t->luns[i]->lu.bd->name, disk))
				continue;
			snprintf(iqn, iqn_len, "%s", t->iqn);
			*lun = i;
			scsi_pr_snapshot(&t->luns[i]->lu, s);
			rc = 0;
		}
		if (!rc)
			break;
	}
	pthread_mutex_unlock(&cfg_lock);
	return rc;
}
