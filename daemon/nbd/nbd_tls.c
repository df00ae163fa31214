/* SPDX-License-Identifier: MIT */
/*
 * TLS credentials for NBD listeners (GnuTLS) and allow-list CIDRs.
 *
 * x509: a directory like qemu's tls-creds-x509 dir: server-cert.pem and
 * server-key.pem, and ca-cert.pem to check client certificates with
 * verify_peer. PSK: a psktool keys file ("username:hexkey" lines), read by
 * GnuTLS itself at each handshake. Keys never leave these objects.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "sand/common.h"
#include "sand/log.h"
#include "daemon/nbd/nbd_tls.h"

/*
 * PSK key exchanges are not in NORMAL (qemu adds the same). Our cipher order
 * wins over the client's, with AES-GCM first: GnuTLS 3.7 here puts
 * CHACHA20-POLY1305 first (client and server alike), which runs at a
 * fourteenth of AES-GCM's speed on CPUs with AES instructions (gnutls-cli
 * --benchmark-tls-ciphers: 2.3 GB/s vs 0.16 GB/s), and TLS is what bounds
 * NBD throughput.
 */
#define PRIO_CIPHERS	"-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:" \
			"+AES-128-CCM:+AES-256-CCM:+AES-128-CBC:+AES-256-CBC:%SERVER_PRECEDENCE"
#define PRIO_X509	"NORMAL:" PRIO_CIPHERS
#define PRIO_PSK	"NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK:" PRIO_CIPHERS

static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
static bool global_inited;

static int global_init(void)
{
	int rc = 0;

	pthread_mutex_lock(&global_lock);
	if (!global_inited) {
		if (gnutls_global_init() < 0)
			rc = -ENOMEM;
		else
			global_inited = true;
	}
	pthread_mutex_unlock(&global_lock);
	return rc;
}

void nbd_tls_global_fini(void)
{
	pthread_mutex_lock(&global_lock);
	if (global_inited) {
		gnutls_global_deinit();
		global_inited = false;
	}
	pthread_mutex_unlock(&global_lock);
}

const char *nbd_tls_mode_name(enum nbd_tls_mode m)
{
	switch (m) {
	case NBD_TLS_ALLOW:
		return "allow";
	case NBD_TLS_REQUIRE:
		return "require";
	case NBD_TLS_OFF:
	default:
		return "off";
	}
}

int nbd_tls_mode_parse(const char *s, enum nbd_tls_mode *m)
{
	if (!s || !strcmp(s, "off"))
		*m = NBD_TLS_OFF;
	else if (!strcmp(s, "allow"))
		*m = NBD_TLS_ALLOW;
	else if (!strcmp(s, "require"))
		*m = NBD_TLS_REQUIRE;
	else
		return -EINVAL;
	return 0;
}

static void tls_free(struct nbd_tls *t)
{
	if (t->prio)
		gnutls_priority_deinit(t->prio);
	if (t->x509)
		gnutls_certificate_free_credentials(t->x509);
	if (t->psk)
		gnutls_psk_free_server_credentials(t->psk);
	free(t->cert_dir);
	free(t->psk_file);
	free(t);
}

static int gnutls_errno(int rc)
{
	switch (rc) {
	case GNUTLS_E_MEMORY_ERROR:
		return -ENOMEM;
	case GNUTLS_E_FILE_ERROR:
		return -ENOENT;
	default:
		return -EPROTO;
	}
}

static int load_x509(struct nbd_tls *t)
{
	char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
	int rc;

	snprintf(ca, sizeof(ca), "%s/ca-cert.pem", t->cert_dir);
	snprintf(cert, sizeof(cert), "%s/server-cert.pem", t->cert_dir);
	snprintf(key, sizeof(key), "%s/server-key.pem", t->cert_dir);
	if (access(cert, R_OK) || access(key, R_OK) || (t->verify_peer && access(ca, R_OK))) {
		rc = -errno;
		LOG_ERR(LS_NBD, "tls: %s: needs readable server-cert.pem, server-key.pem%s: %s",
			t->cert_dir, t->verify_peer ? " and ca-cert.pem" : "", strerror(-rc));
		return rc;
	}
	rc = gnutls_certificate_allocate_credentials(&t->x509);
	if (rc < 0)
		return -ENOMEM;
	if (access(ca, R_OK) == 0) {
		rc = gnutls_certificate_set_x509_trust_file(t->x509, ca, GNUTLS_X509_FMT_PEM);
		if (rc < 0) {
			LOG_ERR(LS_NBD, "tls: %s: %s", ca, gnutls_strerror(rc));
			return gnutls_errno(rc);
		}
	}
	rc = gnutls_certificate_set_x509_key_file(t->x509, cert, key, GNUTLS_X509_FMT_PEM);
	if (rc < 0) {
		LOG_ERR(LS_NBD, "tls: %s: %s", cert, gnutls_strerror(rc));
		return gnutls_errno(rc);
	}
	return 0;
}

static int load_psk(struct nbd_tls *t)
{
	FILE *f = fopen(t->psk_file, "r");
	char line[1024];
	bool ok = false;
	int rc;

	/* GnuTLS reads the file at each handshake; check it now so that a
	 * typo fails the listen and not every client. */
	if (!f) {
		rc = -errno;
		LOG_ERR(LS_NBD, "tls: %s: %s", t->psk_file, strerror(-rc));
		return rc;
	}
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (colon && colon != line && colon[1] && colon[1] != '\n')
			ok = true;
	}
	fclose(f);
	if (!ok) {
		LOG_ERR(LS_NBD, "tls: %s: no 'username:hexkey' line", t->psk_file);
		return -EPROTO;
	}
	if (gnutls_psk_allocate_server_credentials(&t->psk) < 0)
		return -ENOMEM;
	rc = gnutls_psk_set_server_credentials_file(t->psk, t->psk_file);
	if (rc < 0) {
		LOG_ERR(LS_NBD, "tls: %s: %s", t->psk_file, gnutls_strerror(rc));
		return gnutls_errno(rc);
	}
	return 0;
}

int nbd_tls_new(const struct nbd_tls_opts *o, struct nbd_tls **out)
{
	struct nbd_tls *t;
	int rc;

	if (!o || o->mode == NBD_TLS_OFF || !o->cert_dir == !o->psk_file ||
	    (o->verify_peer && !o->cert_dir))
		return -EINVAL;
	rc = global_init();
	if (rc)
		return rc;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->refs = 1;
	t->mode = o->mode;
	t->verify_peer = o->verify_peer;
	if (o->cert_dir) {
		t->cert_dir = strdup(o->cert_dir);
		rc = t->cert_dir ? load_x509(t) : -ENOMEM;
	} else {
		t->psk_file = strdup(o->psk_file);
		rc = t->psk_file ? load_psk(t) : -ENOMEM;
	}
	if (rc)
		goto free_t;
	if (gnutls_priority_init(&t->prio, t->psk ? PRIO_PSK : PRIO_X509, NULL) < 0) {
		rc = -ENOMEM;
		goto free_t;
	}
	*out = t;
	return 0;

free_t:
	tls_free(t);
	return rc;
}

struct nbd_tls *nbd_tls_get(struct nbd_tls *t)
{
	if (t)
		__atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
	return t;
}

void nbd_tls_put(struct nbd_tls *t)
{
	if (t && __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0)
		tls_free(t);
}

int nbd_tls_session(struct nbd_tls *t, int fd, gnutls_session_t *out)
{
	gnutls_session_t s;
	int rc;

	if (gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL) < 0)
		return -ENOMEM;
	rc = gnutls_priority_set(s, t->prio);
	if (rc >= 0 && t->x509) {
		rc = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, t->x509);
		if (rc >= 0 && t->verify_peer) {
			gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
			/* Checked against ca-cert.pem during the handshake. */
			gnutls_session_set_verify_cert(s, NULL, 0);
		}
	} else if (rc >= 0) {
		rc = gnutls_credentials_set(s, GNUTLS_CRD_PSK, t->psk);
	}
	if (rc < 0) {
		gnutls_deinit(s);
		return -ENOMEM;
	}
	gnutls_transport_set_int(s, fd);
	*out = s;
	return 0;
}

/* ---------------------------------------------------------------- CIDRs */

int nbd_cidr_parse(const char *s, struct nbd_cidr *c)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash, *end;
	unsigned max;
	long p;

	if (!s || strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (slash)
		*slash = 0;
	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, buf, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else {
		return -EINVAL;
	}
	c->prefix = max;
	if (slash) {
		errno = 0;
		p = strtol(slash + 1, &end, 10);
		if (slash[1] < '0' || slash[1] > '9' || *end || errno || p > (long)max)
			return -EINVAL;
		c->prefix = (unsigned)p;
	}
	return 0;
}

int nbd_cidr_check(const char *s)
{
	struct nbd_cidr c;

	return nbd_cidr_parse(s, &c);
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned bytes = bits / 8, rest = bits % 8;

	if (memcmp(a, b, bytes))
		return false;
	if (!rest)
		return true;
	return ((a[bytes] ^ b[bytes]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

bool nbd_cidr_match(const struct nbd_cidr *c, const struct sockaddr *sa)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const uint8_t *a;
	int fam = sa->sa_family;

	if (fam == AF_INET) {
		a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
	} else if (fam == AF_INET6) {
		a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		if (c->family == AF_INET && !memcmp(a, mapped, sizeof(mapped))) {
			a += 12;
			fam = AF_INET;
		}
	} else {
		return false;
	}
	return fam == c->family && prefix_eq(a, c->addr, c->prefix);
}
