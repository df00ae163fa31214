/* SPDX-License-Identifier: MIT */
/*
 * What the daemon (daemon/main.c, daemon/control.c) offers other modules.
 *
 * Start-up: main parses options, takes the state directory's lock, loads the
 * state file, starts the reactors, calls every module's RPC init function
 * (rpc_modules[] in main.c: add yours there), lets the modules restore what
 * the state file says, and starts the control thread.
 *
 * Shutdown (SIGTERM/SIGINT): the control socket stops accepting, the
 * registered shutdown hooks run in reverse order of registration, on the
 * control thread (exports stop accepting and drain in-flight I/O there),
 * every disk is flushed and closed, the reactors stop, the socket is
 * removed and the daemon exits 0.
 */
#ifndef SAND_DAEMON_H
#define SAND_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include "sand/blkdev.h"
#include "sand/ev.h"

/* Register a hook for shutdown; hooks run last-registered first. name is
 * copied and used in log messages. Returns 0 or -ENOMEM. */
int daemon_on_shutdown(const char *name, void (*fn)(void *arg), void *arg);
/* Run the hooks (the daemon does this; exposed for tests). Each runs once. */
void daemon_run_shutdown_hooks(void);

/* The state directory (absolute), the control socket path. */
const char *daemon_state_dir(void);
const char *daemon_control_path(void);
/* Nanoseconds since the daemon started (monotonic). */
uint64_t daemon_uptime_ns(void);
/* The control thread's loop, for modules that want a timer there. */
struct ev_loop *daemon_control_loop(void);

/* main only: set at start-up, freed at exit */
void daemon_set_state_dir(const char *dir);
void daemon_free(void);

/* ---- control.c: the control thread ---- */
struct control_opts {
	const char	*path;		/* unix socket */
	enum ev_backend	backend;	/* for the control loop */
	unsigned	idle_timeout_ms;	/* drop idle clients (0: 60 s) */
	unsigned	max_clients;	/* 0: 128 */
};
/* Check the socket path (refuse when a live daemon answers there, remove a
 * stale socket), bind it with mode 0600 and start the control thread. */
int control_start(const struct control_opts *o);
/* Wait until the control thread has stopped (after SIGTERM/SIGINT, with the
 * shutdown hooks run), then free it. */
void control_wait(void);
/* Remove the socket file. */
void control_unlink(void);

/* ---- module init functions called by main ---- */
void status_rpc_init(void);
void log_rpc_init(void);
void disk_rpc_init(void);
/* Reopen the disks of the state file; errors are logged and kept in the
 * disk list (state "failed") so that the operator can see and remove them. */
void disk_restore(void);
/* Flush and close every disk (at shutdown). */
void disk_close_all(void);
/* --scan DIR: directories where disk_relocate looks for moved disk files.
 * -ENOSPC beyond 8. */
int disk_scan_dir_add(const char *dir);
/*
 * Disk `name` (a file disk that did not open at start) moved: look in the
 * --scan directories (a file with the same name first, then every regular
 * file) for one that match(bd) accepts (bd is opened read-only, briefly),
 * and reopen the disk there, saving the new path. 0, or -ENOENT.
 */
int disk_relocate(const char *name, bool (*match)(struct blkdev *bd, void *arg), void *arg);
/* daemon/nbd/nbd_rpc.c: nbd.*, export.nbd, export.list, unexport.nbd and the
 * shutdown hook; nbd_restore brings back the listeners and exports of the
 * state file (after the disks, and later the volumes, are back). */
void nbd_rpc_init(void);
void nbd_restore(void);

/* ---- pool_rpc.c: pools and thin volumes ---- */
void pool_rpc_init(void);
/* Reassemble the pools of the state file from their disks and register
 * their volumes again: after disk_restore, before the exports' restore. */
void pool_restore(void);

#endif
