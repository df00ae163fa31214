/* SPDX-License-Identifier: MIT */
/*
 * ev: the reactor's event loop.
 *
 * Every reactor thread owns one struct ev_loop and touches it only from that
 * thread, except ev_send_msg() and ev_stop(), which any thread may call.
 *
 * A loop is built on io_uring (EV_URING) when the kernel allows it, or on
 * epoll (EV_EPOLL) otherwise. Code above this API does not care which, with
 * one exception: disk backends that put their I/O straight onto the ring ask
 * for it with ev_uring(), which is NULL on an epoll loop, and must then refuse
 * to create a channel (the daemon then uses libaio or psync for that disk).
 *
 * Readiness is edge-triggered on both backends: a handler is called when the
 * fd becomes readable or writable, and it must read (or write) until EAGAIN,
 * or remember that it stopped early and come back by itself (ev_defer) when
 * it wants to go on. This is the rule that makes io_uring's multishot
 * POLL_ADD and epoll's EPOLLET behave the same.
 *
 * Nothing is ever called from inside the function that registered it:
 * callbacks run from ev_run_once() only.
 */
#ifndef SAND_EV_H
#define SAND_EV_H

#include <stdint.h>
#include <stdbool.h>
#include "sand/common.h"

struct ev_loop;
struct io_uring;
struct io_uring_sqe;

enum ev_backend {
	EV_AUTO = 0,	/* io_uring if it works, else epoll */
	EV_URING,
	EV_EPOLL,
};

#define EV_READ		0x1u	/* POLLIN */
#define EV_WRITE	0x4u	/* POLLOUT */
#define EV_ERROR	0x8u	/* POLLERR */
#define EV_HUP		0x10u	/* POLLHUP */

/* Create a loop. entries: ring size for io_uring (0 = default 256). */
int ev_loop_new(enum ev_backend backend, unsigned entries, struct ev_loop **out);
/* Free a loop. Every ev_io must have been stopped and every SQE completed. */
void ev_loop_free(struct ev_loop *loop);
enum ev_backend ev_loop_backend(const struct ev_loop *loop);
const char *ev_backend_name(enum ev_backend b);

/* ---- io_uring completions (EV_URING loops only) ----
 *
 * ev_uring() is the loop's ring or NULL. Anyone may put SQEs on it: set the
 * SQE's user_data to a struct ev_cqe whose fn runs with the CQE's res and
 * flags. ev_get_sqe() never returns NULL: when the SQ is full it submits what
 * is queued first. Queued SQEs are submitted at the end of each loop
 * iteration, so a burst of I/O from one iteration is one io_uring_enter.
 * Memory named by an SQE must live until its CQE has been delivered.
 * Fill each SQE completely before taking the next one: ev_get_sqe() may
 * submit what is queued to make room, and a half-filled SQE would go with
 * it (so linked chains must be prepared with the SQ known to have room).
 */
struct ev_cqe {
	void (*fn)(struct ev_cqe *c, int res, uint32_t cqe_flags);
};
struct io_uring *ev_uring(struct ev_loop *loop);
struct io_uring_sqe *ev_get_sqe(struct ev_loop *loop);
void ev_sqe_set_cqe(struct io_uring_sqe *sqe, struct ev_cqe *c);

/* ---- fd readiness ----
 *
 * The caller owns struct ev_io (embed it). After ev_io_stop() returns, fn is
 * never called again and the ev_io may be freed at once, even on io_uring
 * where the kernel still has to deliver the cancelled poll's CQE (the loop
 * keeps its own small record for that).
 */
struct ev_io;
typedef void (*ev_io_fn)(struct ev_io *io, uint32_t revents);
struct ev_io {
	int		fd;
	uint32_t	events;
	ev_io_fn	fn;
	void		*priv;		/* loop-private record */
};
int ev_io_start(struct ev_loop *loop, struct ev_io *io, int fd, uint32_t events,
		ev_io_fn fn);
/* Change the interest set (EV_READ, EV_WRITE or both). */
int ev_io_modify(struct ev_loop *loop, struct ev_io *io, uint32_t events);
/* Stop before closing the fd: on epoll a registration outlives close() while
 * another descriptor (dup, fork) still refers to the same file. */
void ev_io_stop(struct ev_loop *loop, struct ev_io *io);

/* ---- timers (one-shot; re-arm from the callback for periodic work) ---- */
struct ev_timer;
typedef void (*ev_timer_fn)(struct ev_timer *t);
struct ev_timer {
	uint64_t	when;		/* now_ns() deadline */
	ev_timer_fn	fn;
	unsigned	heap_idx;	/* 0 = not armed */
};
void ev_timer_start(struct ev_loop *loop, struct ev_timer *t, uint64_t delay_ns,
		    ev_timer_fn fn);
void ev_timer_stop(struct ev_loop *loop, struct ev_timer *t);
static inline bool ev_timer_armed(const struct ev_timer *t) { return t->heap_idx != 0; }

/* ---- deferred work on the same loop (no allocation) ----
 * Runs fn on a later turn of this loop, before it next sleeps. This is how
 * a driver completes an I/O "not inside submit". A task may be re-deferred
 * from its own fn; deferring a task that is already queued is a no-op. */
struct ev_task;
typedef void (*ev_task_fn)(struct ev_task *t);
struct ev_task {
	struct ev_task	*next;
	ev_task_fn	fn;
	bool		queued;
};
void ev_defer(struct ev_loop *loop, struct ev_task *t, ev_task_fn fn);

/* ---- messages between loops (thread-safe) ----
 * fn(arg) runs on dst's thread. Returns 0 or -ENOMEM. Messages from one
 * sender to one loop run in the order sent. */
int ev_send_msg(struct ev_loop *dst, void (*fn)(void *arg), void *arg);

/* ---- running ----
 * ev_run_once: wait up to timeout_ms (-1: until something happens, 0: poll)
 * and run what is ready. Returns the number of callbacks run, or -errno.
 * ev_run: loop until ev_stop() (thread-safe) is called. */
int ev_run_once(struct ev_loop *loop, int timeout_ms);
void ev_run(struct ev_loop *loop);
void ev_stop(struct ev_loop *loop);
bool ev_stopped(const struct ev_loop *loop);

/* The loop the calling thread runs, if it runs one (set by ev_run). */
struct ev_loop *ev_current(void);

/* Count of outstanding work that keeps a loop busy: SQEs in flight. */
unsigned ev_inflight(const struct ev_loop *loop);

#endif
