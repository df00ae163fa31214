/* SPDX-License-Identifier: MIT */
/*
 * The NBD server: listeners, exports and connections.
 *
 * Listeners accept on TCP ("ADDR:PORT", "[v6addr]:PORT", port 0 picks a free
 * one) or unix sockets ("unix:PATH") and hand each accepted socket to a
 * reactor, round-robin. A connection lives on that reactor for its whole
 * life and does its I/O through one block channel per (export, reactor).
 *
 * Every function here is for the control plane (or a test's main thread):
 * it must not be called from a reactor thread, and reactors_start() must
 * have run. They are serialised by a lock of their own.
 */
#ifndef SAND_NBD_H
#define SAND_NBD_H

#include <stdbool.h>
#include <stdint.h>

struct blkdev;

#define NBD_DEFAULT_PORT	10809

/* Listen on addr. -EEXIST if already listening there, -EINVAL for a bad
 * address, or the socket error (-EADDRINUSE ...). */
int nbd_listen(const char *addr);

/*
 * TLS on a listener (NBD_OPT_STARTTLS, GnuTLS). mode off: STARTTLS gets
 * ERR_POLICY; allow: clients choose; require: every option but STARTTLS and
 * ABORT gets ERR_TLS_REQD before TLS (EXPORT_NAME closes). Credentials:
 * either cert_dir, holding server-cert.pem and server-key.pem (and
 * ca-cert.pem, needed with verify_peer: client certificates are then
 * required and checked against it), or psk_file, in psktool's format
 * ("username:hexkey" lines). Files are read once, at nbd_listen_tls().
 */
enum nbd_tls_mode { NBD_TLS_OFF, NBD_TLS_ALLOW, NBD_TLS_REQUIRE };

struct nbd_tls_opts {
	enum nbd_tls_mode mode;
	const char	*cert_dir;	/* x509, or NULL */
	const char	*psk_file;	/* PSK, or NULL */
	bool		verify_peer;	/* x509 only */
};

/* nbd_listen() with TLS (o NULL or mode off: plain). -EINVAL for bad
 * options (both or neither credential with TLS on), -ENOENT/-EACCES... or
 * -EPROTO (unreadable credentials) when they cannot be loaded. */
int nbd_listen_tls(const char *addr, const struct nbd_tls_opts *o);
const char *nbd_tls_mode_name(enum nbd_tls_mode m);
int nbd_tls_mode_parse(const char *s, enum nbd_tls_mode *m);

/* Stop listening (clients already connected stay). -ENOENT if unknown. */
int nbd_unlisten(const char *addr);

/*
 * Export bd as name (NBD_MAX_STRING bytes at most; "" is the default
 * export a client gets when it names none, or the first export if no export
 * is named ""). The device is claimed as "nbd:NAME" for as long as it is
 * exported. description may be NULL. -EEXIST if the name is taken, -EBUSY
 * if the device is claimed by someone else.
 */
int nbd_export_add(const char *name, struct blkdev *bd, bool readonly,
		   const char *description);
/*
 * nbd_export_add() with an allow-list: nallow CIDRs ("10.0.0.0/8",
 * "fd00::/64", or a bare address), IPv4 or IPv6. A TCP client outside all
 * of them gets ERR_POLICY for this export (EXPORT_NAME closes) and does not
 * see it in LIST. nallow 0: everyone. Unix-socket clients are always
 * allowed (the socket's file permissions guard them). -EINVAL for a bad
 * CIDR.
 */
int nbd_export_add_allow(const char *name, struct blkdev *bd, bool readonly,
			 const char *description, const char *const *allow, unsigned nallow);
/* 0 if s is a valid CIDR for an allow-list, else -EINVAL. */
int nbd_cidr_check(const char *s);

/* Stop serving name: new clients are refused at once, the export's clients
 * finish their in-flight I/O, get their replies and are disconnected, and
 * the device is released. Returns when all that is done. -ENOENT if
 * unknown. */
int nbd_export_remove(const char *name);

struct nbd_export_info {
	const char	*name;
	const char	*description;	/* "" if none */
	const char	*device;	/* blkdev name */
	uint64_t	size;
	bool		readonly;
	unsigned	clients;	/* connections in transmission on it now */
};
/* Calls fn for each export, under the server lock (fn must not call back in). */
void nbd_export_foreach(void (*fn)(const struct nbd_export_info *e, void *arg), void *arg);

struct nbd_listener_info {
	const char	*addr;		/* as given to nbd_listen() */
	const char	*bound;		/* what it is bound to, with the real port */
	unsigned	reactor;
	enum nbd_tls_mode tls;
	const char	*tls_cert;	/* cert_dir or NULL */
	const char	*tls_psk;	/* psk_file or NULL */
	bool		tls_verify_peer;
};
void nbd_listener_foreach(void (*fn)(const struct nbd_listener_info *l, void *arg), void *arg);

/* Connections in any phase (handshake included), for tests and stats. */
unsigned nbd_conn_count(void);

/* Stop accepting, let every client's in-flight I/O finish and its replies go
 * out (at most a few seconds for clients that do not read), close every
 * connection, remove every export. Call before reactors_stop(). */
void nbd_shutdown(void);

#endif
