/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "sand/log.h"
#include "sand/reactor.h"

struct reactor {
	unsigned	id;
	struct ev_loop	*loop;
	pthread_t	thread;
	bool		running;
	enum ev_backend	backend;
	int		start_rc;
	pthread_mutex_t	*start_lock;
	pthread_cond_t	*start_cond;
	bool		started;
};

static struct reactor *reactors;
static unsigned nreactors;
static unsigned rr_next;
static __thread int self_id = -1;

unsigned reactor_count(void) { return nreactors; }
struct ev_loop *reactor_loop(unsigned i) { return i < nreactors ? reactors[i].loop : NULL; }
int reactor_self(void) { return self_id; }

unsigned reactor_next(void)
{
	unsigned n = nreactors;

	return n ? __atomic_fetch_add(&rr_next, 1, __ATOMIC_RELAXED) % n : 0;
}

static void *reactor_main(void *arg)
{
	struct reactor *r = arg;
	char name[16];
	int rc;

	self_id = (int)r->id;
	snprintf(name, sizeof(name), "sand-r%u", r->id);
	pthread_setname_np(pthread_self(), name);
	/* The loop is made on its own thread, so its ring belongs to it. */
	rc = ev_loop_new(r->backend, 1024, &r->loop);
	pthread_mutex_lock(r->start_lock);
	r->start_rc = rc;
	r->started = true;
	pthread_cond_broadcast(r->start_cond);
	pthread_mutex_unlock(r->start_lock);
	if (rc)
		return NULL;
	ev_run(r->loop);
	/* Let in-flight completions and cancelled polls finish. */
	for (int i = 0; i < 100 && ev_inflight(r->loop); i++)
		ev_run_once(r->loop, 10);
	return NULL;
}

int reactors_start(unsigned n, enum ev_backend backend)
{
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
	int rc = 0;

	if (!n) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);

		n = c > 0 ? (unsigned)c : 1;
	}
	reactors = calloc(n, sizeof(*reactors));
	if (!reactors)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		struct reactor *r = &reactors[i];

		r->id = i;
		r->backend = backend;
		r->start_lock = &lock;
		r->start_cond = &cond;
		rc = -pthread_create(&r->thread, NULL, reactor_main, r);
		if (rc)
			break;
		pthread_mutex_lock(&lock);
		while (!r->started)
			pthread_cond_wait(&cond, &lock);
		pthread_mutex_unlock(&lock);
		if (r->start_rc) {
			rc = r->start_rc;
			pthread_join(r->thread, NULL);
			break;
		}
		r->running = true;
		nreactors = i + 1;
	}
	if (rc) {
		LOG_ERR(LS_CORE, "starting reactor %u: %s", nreactors, strerror(-rc));
		reactors_stop();
		return rc;
	}
	LOG_INFO(LS_CORE, "%u reactors on %s", n, ev_backend_name(ev_loop_backend(reactors[0].loop)));
	return 0;
}

void reactors_stop(void)
{
	for (unsigned i = 0; i < nreactors; i++)
		if (reactors[i].running)
			ev_stop(reactors[i].loop);
	for (unsigned i = 0; i < nreactors; i++) {
		if (!reactors[i].running)
			continue;
		pthread_join(reactors[i].thread, NULL);
		ev_loop_free(reactors[i].loop);
		reactors[i].running = false;
	}
	free(reactors);
	reactors = NULL;
	nreactors = 0;
}

int reactor_send(unsigned i, void (*fn)(void *arg), void *arg)
{
	if (i >= nreactors)
		return -EINVAL;
	return ev_send_msg(reactors[i].loop, fn, arg);
}

struct call {
	int		(*fn)(void *arg);
	void		*arg;
	int		rc;
	bool		done;
	pthread_mutex_t	lock;
	pthread_cond_t	cond;
};

static void call_msg(void *p)
{
	struct call *c = p;
	int rc = c->fn(c->arg);

	pthread_mutex_lock(&c->lock);
	c->rc = rc;
	c->done = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

int reactor_call(unsigned i, int (*fn)(void *arg), void *arg)
{
	struct call c = { .fn = fn, .arg = arg };
	int rc;

	if (i >= nreactors)
		return -EINVAL;
	if (self_id >= 0) {
		LOG_ERR(LS_CORE, "reactor_call from reactor %d", self_id);
		return -EDEADLK;
	}
	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.cond, NULL);
	rc = ev_send_msg(reactors[i].loop, call_msg, &c);
	if (!rc) {
		pthread_mutex_lock(&c.lock);
		while (!c.done)
			pthread_cond_wait(&c.cond, &c.lock);
		pthread_mutex_unlock(&c.lock);
		rc = c.rc;
	}
	pthread_cond_destroy(&c.cond);
	pthread_mutex_destroy(&c.lock);
	return rc;
}

struct call_all {
	int		(*fn)(unsigned i, void *arg);
	void		*arg;
	unsigned	i;
};

static int call_all_one(void *p)
{
	struct call_all *ca = p;

	return ca->fn(ca->i, ca->arg);
}

int reactor_call_all(int (*fn)(unsigned i, void *arg), void *arg)
{
	struct call_all ca = { .fn = fn, .arg = arg };
	int rc = 0;

	for (ca.i = 0; ca.i < nreactors && !rc; ca.i++)
		rc = reactor_call(ca.i, call_all_one, &ca);
	return rc;
}
