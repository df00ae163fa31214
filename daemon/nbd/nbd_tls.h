/* SPDX-License-Identifier: MIT */
/*
 * Inside the NBD server: TLS credentials shared by a listener and its
 * connections (reference counted, any thread), and allow-list CIDRs.
 */
#ifndef SAND_NBD_TLS_H
#define SAND_NBD_TLS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <gnutls/gnutls.h>
#include "sand/nbd.h"

struct nbd_tls {
	unsigned	refs;		/* atomic */
	enum nbd_tls_mode mode;
	bool		verify_peer;
	char		*cert_dir, *psk_file;
	gnutls_certificate_credentials_t x509;
	gnutls_psk_server_credentials_t psk;
	gnutls_priority_t prio;
};

/* Load credentials for o (mode != off). */
int nbd_tls_new(const struct nbd_tls_opts *o, struct nbd_tls **out);
struct nbd_tls *nbd_tls_get(struct nbd_tls *t);
void nbd_tls_put(struct nbd_tls *t);
/* A nonblocking server session on fd with t's credentials. */
int nbd_tls_session(struct nbd_tls *t, int fd, gnutls_session_t *out);
/* gnutls_global_deinit() if we initialised it (at server shutdown). */
void nbd_tls_global_fini(void);

struct nbd_cidr {
	int		family;		/* AF_INET or AF_INET6 */
	uint8_t		addr[16];
	unsigned	prefix;
};

int nbd_cidr_parse(const char *s, struct nbd_cidr *c);
/* Does the peer sa match c? IPv4-mapped IPv6 peers match IPv4 CIDRs. */
bool nbd_cidr_match(const struct nbd_cidr *c, const struct sockaddr *sa);

#endif
