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
};
void nbd_listener_foreach(void (*fn)(const struct nbd_listener_info *l, void *arg), void *arg);

/* Connections in any phase (handshake included), for tests and stats. */
unsigned nbd_conn_count(void);

/* Stop accepting, let every client's in-flight I/O finish and its replies go
 * out (at most a few seconds for clients that do not read), close every
 * connection, remove every export. Call before reactors_stop(). */
void nbd_shutdown(void);

#endif
