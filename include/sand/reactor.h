/* SPDX-License-Identifier: MIT */
/*
 * Reactors: N threads, each running one ev_loop for its sockets and its
 * disk I/O. A connection is placed on one reactor for its whole life.
 * Work for a reactor is sent to it with reactor_send(); reactor_call() runs
 * a function there and waits for it (control plane only, never from a
 * reactor thread).
 */
#ifndef SAND_REACTOR_H
#define SAND_REACTOR_H

#include "sand/ev.h"

/* Start n reactor threads (0: one per online CPU) on the given loop backend. */
int reactors_start(unsigned n, enum ev_backend backend);
/* Stop every reactor thread and free its loop. Callers have drained first. */
void reactors_stop(void);
unsigned reactor_count(void);
struct ev_loop *reactor_loop(unsigned i);
/* Index of the reactor the calling thread runs, or -1. */
int reactor_self(void);
/* Round-robin choice for a new connection. */
unsigned reactor_next(void);
int reactor_send(unsigned i, void (*fn)(void *arg), void *arg);
/* Run fn(arg) on reactor i and wait for it to return; returns its value. */
int reactor_call(unsigned i, int (*fn)(void *arg), void *arg);
/* Run fn(arg) on every reactor in turn, waiting for each; stops at the
 * first non-zero return and returns it. */
int reactor_call_all(int (*fn)(unsigned i, void *arg), void *arg);

#endif
