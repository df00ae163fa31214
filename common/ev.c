/* SPDX-License-Identifier: MIT */
/*
 * The reactor event loop: io_uring or epoll underneath, one API above.
 *
 * On io_uring, fds are watched with multishot POLL_ADD; every SQE carries a
 * pointer to a struct ev_cqe whose fn gets the CQE. A watched fd has a small
 * record (struct ev_poll) owned by the loop, so that ev_io_stop() can return
 * at once although the kernel still owes us the cancelled poll's last CQE:
 * the record outlives the user's struct ev_io and is freed when that CQE
 * arrives. On epoll the same record is freed at the end of the iteration,
 * because epoll_wait may already have returned an event for it.
 *
 * Each iteration: run deferred tasks, wait (for CQEs/events, the next timer,
 * or not at all when tasks are queued), dispatch, run expired timers, run
 * deferred tasks again, and submit every SQE queued during the iteration in
 * one io_uring_enter.
 */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "sand/ev.h"
#include "sand/log.h"

struct ev_poll {
	struct ev_cqe	cqe;		/* io_uring: user_data of the poll SQE */
	struct ev_loop	*loop;
	struct ev_io	*io;		/* NULL once stopped */
	uint32_t	mask;
	bool		armed;		/* io_uring: a poll SQE is outstanding */
	struct list_head link;		/* loop->polls or loop->dead_polls */
};

struct ev_msg {
	struct ev_msg	*next;
	void		(*fn)(void *arg);
	void		*arg;
};

struct ev_loop {
	enum ev_backend	backend;
	struct io_uring	ring;
	int		epfd;
	unsigned	inflight;	/* user SQEs without their final CQE */
	unsigned	queued;		/* SQEs prepared, not yet submitted */

	struct ev_task	*defer_head, *defer_tail;

	struct ev_timer	**heap;		/* 1-based binary min-heap */
	unsigned	heap_len, heap_cap;

	struct list_head polls, dead_polls;

	int		msg_fd;		/* eventfd */
	struct ev_io	msg_io;
	pthread_mutex_t	msg_lock;
	struct ev_msg	*msg_head, *msg_tail;

	int		stop;		/* atomic */
};

static __thread struct ev_loop *cur_loop;

const char *ev_backend_name(enum ev_backend b)
{
	switch (b) {
	case EV_URING: return "io_uring";
	case EV_EPOLL: return "epoll";
	default: return "auto";
	}
}

enum ev_backend ev_loop_backend(const struct ev_loop *loop) { return loop->backend; }
struct io_uring *ev_uring(struct ev_loop *loop)
{
	return loop->backend == EV_URING ? &loop->ring : NULL;
}
struct ev_loop *ev_current(void) { return cur_loop; }
unsigned ev_inflight(const struct ev_loop *loop) { return loop->inflight; }

static void msg_ready(struct ev_io *io, uint32_t revents);

int ev_loop_new(enum ev_backend backend, unsigned entries, struct ev_loop **out)
{
	struct ev_loop *loop;
	int rc;

	loop = calloc(1, sizeof(*loop));
	if (!loop)
		return -ENOMEM;
	loop->epfd = -1;
	list_init(&loop->polls);
	list_init(&loop->dead_polls);
	pthread_mutex_init(&loop->msg_lock, NULL);
	if (!entries)
		entries = 256;

	if (backend == EV_AUTO || backend == EV_URING) {
		struct io_uring_params p = { .flags = IORING_SETUP_COOP_TASKRUN };

		rc = io_uring_queue_init_params(entries, &loop->ring, &p);
		if (rc == -EINVAL) {
			memset(&p, 0, sizeof(p));
			rc = io_uring_queue_init_params(entries, &loop->ring, &p);
		}
		if (rc == 0) {
			loop->backend = EV_URING;
		} else if (backend == EV_URING) {
			free(loop);
			return rc;
		}
	}
	if (loop->backend != EV_URING) {
		loop->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (loop->epfd < 0) {
			rc = -errno;
			free(loop);
			return rc;
		}
		loop->backend = EV_EPOLL;
	}

	loop->msg_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (loop->msg_fd < 0) {
		rc = -errno;
		goto free_backend;
	}
	rc = ev_io_start(loop, &loop->msg_io, loop->msg_fd, EV_READ, msg_ready);
	if (rc)
		goto close_msg_fd;
	*out = loop;
	return 0;

close_msg_fd:
	close(loop->msg_fd);
free_backend:
	if (loop->backend == EV_URING)
		io_uring_queue_exit(&loop->ring);
	else
		close(loop->epfd);
	free(loop);
	return rc;
}

void ev_loop_free(struct ev_loop *loop)
{
	struct list_head *pos, *tmp;
	struct ev_msg *m;

	if (!loop)
		return;
	ev_io_stop(loop, &loop->msg_io);
	close(loop->msg_fd);
	if (loop->backend == EV_URING)
		io_uring_queue_exit(&loop->ring);
	else
		close(loop->epfd);
	list_for_each_safe(pos, tmp, &loop->polls) {
		struct ev_poll *p = list_entry(pos, struct ev_poll, link);

		if (p->io)
			LOG_WARN(LS_EV, "loop freed with fd %d still watched", p->io->fd);
		free(p);
	}
	list_for_each_safe(pos, tmp, &loop->dead_polls)
		free(list_entry(pos, struct ev_poll, link));
	while ((m = loop->msg_head)) {
		loop->msg_head = m->next;
		free(m);
	}
	pthread_mutex_destroy(&loop->msg_lock);
	free(loop->heap);
	free(loop);
}

/* ---------------------------------------------------------------- SQEs */

static struct io_uring_sqe *get_sqe_raw(struct ev_loop *loop)
{
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(&loop->ring))) {
		int rc = io_uring_submit(&loop->ring);

		if (rc < 0 && rc != -EAGAIN && rc != -EBUSY && rc != -EINTR)
			LOG_RATELIMIT(LOG_ERROR, LS_EV, "io_uring_submit: %s", strerror(-rc));
		loop->queued = 0;
	}
	loop->queued++;
	return sqe;
}

struct io_uring_sqe *ev_get_sqe(struct ev_loop *loop)
{
	struct io_uring_sqe *sqe = get_sqe_raw(loop);

	loop->inflight++;
	return sqe;
}

void ev_sqe_set_cqe(struct io_uring_sqe *sqe, struct ev_cqe *c)
{
	io_uring_sqe_set_data(sqe, c);
}

static void flush_sqes(struct ev_loop *loop)
{
	if (loop->backend == EV_URING && loop->queued) {
		int rc = io_uring_submit(&loop->ring);

		if (rc < 0 && rc != -EINTR)
			LOG_RATELIMIT(LOG_ERROR, LS_EV, "io_uring_submit: %s", strerror(-rc));
		else
			loop->queued = 0;
	}
}

/* ---------------------------------------------------------------- fds */

static void poll_cqe(struct ev_cqe *c, int res, uint32_t flags);

static void uring_arm_poll(struct ev_loop *loop, struct ev_poll *p)
{
	struct io_uring_sqe *sqe = get_sqe_raw(loop);

	io_uring_prep_poll_multishot(sqe, p->io->fd, p->mask | POLLERR | POLLHUP);
	io_uring_sqe_set_data(sqe, &p->cqe);
	p->armed = true;
}

/* The kernel's poll mask to EV_* bits, as epoll_dispatch maps epoll's: the
 * peer's shutdown (POLLRDHUP) is EV_READ, other bits are not passed on. */
static uint32_t poll_to_ev(uint32_t m)
{
	uint32_t rev = m & (EV_READ | EV_WRITE | EV_ERROR | EV_HUP);

	if (m & POLLRDHUP)
		rev |= EV_READ;
	return rev;
}

static void poll_cqe(struct ev_cqe *c, int res, uint32_t flags)
{
	struct ev_poll *p = container_of(c, struct ev_poll, cqe);

	if (!(flags & IORING_CQE_F_MORE))
		p->armed = false;
	if (!p->io) {			/* stopped: free once the kernel is done */
		if (!p->armed) {
			list_del(&p->link);
			free(p);
		}
		return;
	}
	if (res == -ECANCELED) {	/* cancelled by the kernel, not by us */
		if (!p->armed)
			uring_arm_poll(p->loop, p);
		return;
	}
	if (res < 0) {
		/* The fd cannot be polled (-EBADF: not open, ...): re-arming
		 * would fail again at once, for ever. Tell the handler, as
		 * epoll's ev_io_start would have; it stops or modifies. */
		LOG_RATELIMIT(LOG_WARN, LS_EV, "poll on fd %d: %s", p->io->fd, strerror(-res));
		if (!p->armed)
			p->io->fn(p->io, EV_ERROR | EV_HUP);
		return;
	}
	if (!p->armed)			/* multishot ended (overflow): re-arm */
		uring_arm_poll(p->loop, p);
	p->io->fn(p->io, poll_to_ev((uint32_t)res));
}

static uint32_t to_epoll(uint32_t ev)
{
	uint32_t e = EPOLLET | EPOLLERR | EPOLLHUP;

	if (ev & EV_READ)
		e |= EPOLLIN | EPOLLRDHUP;
	if (ev & EV_WRITE)
		e |= EPOLLOUT;
	return e;
}

int ev_io_start(struct ev_loop *loop, struct ev_io *io, int fd, uint32_t events,
		ev_io_fn fn)
{
	struct ev_poll *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	io->fd = fd;
	io->events = events;
	io->fn = fn;
	io->priv = p;
	p->cqe.fn = poll_cqe;
	p->loop = loop;
	p->io = io;
	p->mask = events & (EV_READ | EV_WRITE);
	if (loop->backend == EV_URING) {
		uring_arm_poll(loop, p);
	} else {
		struct epoll_event ee = { .events = to_epoll(events), .data.ptr = p };

		if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ee) < 0) {
			int rc = -errno;

			free(p);
			io->priv = NULL;
			return rc;
		}
	}
	list_add_tail(&p->link, &loop->polls);
	return 0;
}

void ev_io_stop(struct ev_loop *loop, struct ev_io *io)
{
	struct ev_poll *p = io->priv;

	if (!p)
		return;
	io->priv = NULL;
	p->io = NULL;
	list_del(&p->link);
	if (loop->backend == EV_URING) {
		if (p->armed) {
			struct io_uring_sqe *sqe = get_sqe_raw(loop);

			/* ASYNC_CANCEL, not POLL_REMOVE: POLL_REMOVE fails with
			 * -EALREADY while a wakeup of the multishot poll is being
			 * handled, and the poll then stays armed for good (it
			 * keeps the socket open after close()). */
			io_uring_prep_cancel64(sqe, (__u64)(uintptr_t)&p->cqe, 0);
			io_uring_sqe_set_data(sqe, NULL);
			list_add_tail(&p->link, &loop->polls);	/* freed by poll_cqe */
		} else {
			free(p);
		}
	} else {
		epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
		list_add_tail(&p->link, &loop->dead_polls);
	}
}

int ev_io_modify(struct ev_loop *loop, struct ev_io *io, uint32_t events)
{
	struct ev_poll *p = io->priv;

	if (!p)
		return -EINVAL;
	if ((events & (EV_READ | EV_WRITE)) == p->mask)
		return 0;
	if (loop->backend == EV_EPOLL) {
		struct epoll_event ee = { .events = to_epoll(events), .data.ptr = p };

		if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ee) < 0)
			return -errno;
		p->mask = events & (EV_READ | EV_WRITE);
		io->events = events;
		return 0;
	}
	ev_io_stop(loop, io);
	return ev_io_start(loop, io, io->fd, events, io->fn);
}

/* ---------------------------------------------------------------- timers */

static void heap_swap(struct ev_loop *loop, unsigned a, unsigned b)
{
	struct ev_timer *t = loop->heap[a];

	loop->heap[a] = loop->heap[b];
	loop->heap[b] = t;
	loop->heap[a]->heap_idx = a;
	loop->heap[b]->heap_idx = b;
}

static void heap_up(struct ev_loop *loop, unsigned i)
{
	while (i > 1 && loop->heap[i / 2]->when > loop->heap[i]->when) {
		heap_swap(loop, i, i / 2);
		i /= 2;
	}
}

static void heap_down(struct ev_loop *loop, unsigned i)
{
	for (;;) {
		unsigned l = 2 * i, r = l + 1, m = i;

		if (l <= loop->heap_len && loop->heap[l]->when < loop->heap[m]->when)
			m = l;
		if (r <= loop->heap_len && loop->heap[r]->when < loop->heap[m]->when)
			m = r;
		if (m == i)
			return;
		heap_swap(loop, i, m);
		i = m;
	}
}

void ev_timer_stop(struct ev_loop *loop, struct ev_timer *t)
{
	unsigned i = t->heap_idx;

	if (!i)
		return;
	t->heap_idx = 0;
	if (i != loop->heap_len) {
		loop->heap[i] = loop->heap[loop->heap_len];
		loop->heap[i]->heap_idx = i;
		loop->heap_len--;
		heap_up(loop, i);
		heap_down(loop, loop->heap[i]->heap_idx);
	} else {
		loop->heap_len--;
	}
}

void ev_timer_start(struct ev_loop *loop, struct ev_timer *t, uint64_t delay_ns,
		    ev_timer_fn fn)
{
	ev_timer_stop(loop, t);
	if (loop->heap_len + 1 >= loop->heap_cap) {
		unsigned cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
		struct ev_timer **h = realloc(loop->heap, cap * sizeof(*h));

		if (!h)
			abort();	/* timers are control-path objects: no way back */
		loop->heap = h;
		loop->heap_cap = cap;
	}
	t->fn = fn;
	t->when = now_ns() + delay_ns;
	t->heap_idx = ++loop->heap_len;
	loop->heap[t->heap_idx] = t;
	heap_up(loop, t->heap_idx);
}

static int run_timers(struct ev_loop *loop)
{
	uint64_t now = now_ns();
	int n = 0;

	while (loop->heap_len && loop->heap[1]->when <= now) {
		struct ev_timer *t = loop->heap[1];

		ev_timer_stop(loop, t);
		t->fn(t);
		n++;
	}
	return n;
}

/* ---------------------------------------------------------------- tasks */

void ev_defer(struct ev_loop *loop, struct ev_task *t, ev_task_fn fn)
{
	if (t->queued)
		return;
	t->fn = fn;
	t->next = NULL;
	t->queued = true;
	if (loop->defer_tail)
		loop->defer_tail->next = t;
	else
		loop->defer_head = t;
	loop->defer_tail = t;
}

static int run_tasks(struct ev_loop *loop)
{
	struct ev_task *t = loop->defer_head, *last = loop->defer_tail;
	int n = 0;

	if (!t)
		return 0;
	/* Run only what was queued before we started: tasks queued meanwhile
	 * wait for the next turn, so a task that re-defers itself cannot
	 * starve I/O. */
	loop->defer_head = loop->defer_tail = NULL;
	for (;;) {
		struct ev_task *next = t->next;
		bool end = t == last;

		t->queued = false;
		t->next = NULL;
		t->fn(t);
		n++;
		if (end)
			break;
		t = next;
	}
	return n;
}

/* ---------------------------------------------------------------- messages */

int ev_send_msg(struct ev_loop *dst, void (*fn)(void *arg), void *arg)
{
	struct ev_msg *m = malloc(sizeof(*m));
	uint64_t one = 1;
	bool was_empty;

	if (!m)
		return -ENOMEM;
	m->fn = fn;
	m->arg = arg;
	m->next = NULL;
	pthread_mutex_lock(&dst->msg_lock);
	was_empty = !dst->msg_head;
	if (dst->msg_tail)
		dst->msg_tail->next = m;
	else
		dst->msg_head = m;
	dst->msg_tail = m;
	pthread_mutex_unlock(&dst->msg_lock);
	if (was_empty && write(dst->msg_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is saturated, so a wakeup is pending anyway */
	}
	return 0;
}

static void msg_ready(struct ev_io *io, uint32_t revents)
{
	struct ev_loop *loop = container_of(io, struct ev_loop, msg_io);
	struct ev_msg *m;
	uint64_t v;

	if (read(loop->msg_fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: a sibling wakeup already drained it */
	}
	pthread_mutex_lock(&loop->msg_lock);
	m = loop->msg_head;
	loop->msg_head = loop->msg_tail = NULL;
	pthread_mutex_unlock(&loop->msg_lock);
	while (m) {
		struct ev_msg *next = m->next;

		m->fn(m->arg);
		free(m);
		m = next;
	}
}

/* ---------------------------------------------------------------- running */

static int wait_timeout_ms(struct ev_loop *loop, int timeout_ms)
{
	if (loop->defer_head || __atomic_load_n(&loop->stop, __ATOMIC_RELAXED))
		return 0;
	if (loop->heap_len) {
		uint64_t now = now_ns(), when = loop->heap[1]->when;
		int64_t ms = when <= now ? 0 : (int64_t)((when - now + 999999) / 1000000);

		if (timeout_ms < 0 || ms < timeout_ms)
			timeout_ms = (int)MIN(ms, (int64_t)INT32_MAX);
	}
	return timeout_ms;
}

/*
 * SQEs queued by CQE handlers are submitted as soon as this many wait, not
 * all at the end of the turn. One big batch reaches the device only after
 * the last completion of the turn was handled, as one plugged burst, so the
 * device idles meanwhile and the in-flight I/Os move in lockstep: 4 KiB
 * random reads at QD 32 ran at 0.87x fio's io_uring that way, 0.98x with
 * batches of 4 (bench/README.md). Batches of 1-2 were no faster and cost
 * more CPU per I/O.
 */
#define EV_SUBMIT_BATCH	4

static int uring_dispatch(struct ev_loop *loop, int timeout_ms)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	int rc, n = 0;

	if (timeout_ms != 0) {
		struct __kernel_timespec ts = {
			.tv_sec = timeout_ms / 1000,
			.tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
		};

		rc = io_uring_submit_and_wait_timeout(&loop->ring, &cqe, 1,
						      timeout_ms < 0 ? NULL : &ts, NULL);
		loop->queued = 0;
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			return rc;
	} else {
		flush_sqes(loop);
	}
	/*
	 * Drain the CQ until empty; handlers may queue new SQEs meanwhile. At
	 * most one CQ's worth per turn: when handlers' SQEs are submitted
	 * during the drain and complete at once (NOPs, page-cache reads), the
	 * CQ never empties, and timers, deferred tasks and every other turn's
	 * work would wait behind it. What is left is reaped on the next turn,
	 * which does not sleep while CQEs wait.
	 */
	for (unsigned reaped = 0; reaped < loop->ring.cq.ring_entries; reaped += seen) {
		seen = 0;
		io_uring_for_each_cqe(&loop->ring, head, cqe) {
			struct ev_cqe *c = io_uring_cqe_get_data(cqe);
			int res = cqe->res;
			uint32_t flags = cqe->flags;

			/* Release the slot before the handler runs: it may
			 * want to reap more (via a nested sync call), and a
			 * full CQ must not block the kernel. */
			io_uring_cq_advance(&loop->ring, 1);
			seen++;
			if (!c)
				continue;
			if (c->fn != poll_cqe && !(flags & IORING_CQE_F_MORE))
				loop->inflight--;
			c->fn(c, res, flags);
			n++;
			if (loop->queued >= EV_SUBMIT_BATCH)
				flush_sqes(loop);
			break;		/* the iterator's head is stale after advance */
		}
		if (!seen)
			break;
	}
	return n;
}

static int epoll_dispatch(struct ev_loop *loop, int timeout_ms)
{
	struct epoll_event evs[64];
	int nev, n = 0;

	nev = epoll_wait(loop->epfd, evs, ARRAY_SIZE(evs), timeout_ms);
	if (nev < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < nev; i++) {
		struct ev_poll *p = evs[i].data.ptr;
		uint32_t e = evs[i].events, rev = 0;

		if (!p->io)
			continue;	/* stopped by an earlier handler */
		if (e & (EPOLLIN | EPOLLRDHUP))
			rev |= EV_READ;
		if (e & EPOLLOUT)
			rev |= EV_WRITE;
		if (e & EPOLLERR)
			rev |= EV_ERROR;
		if (e & EPOLLHUP)
			rev |= EV_HUP;
		p->io->fn(p->io, rev);
		n++;
	}
	return n;
}

int ev_run_once(struct ev_loop *loop, int timeout_ms)
{
	struct ev_loop *saved = cur_loop;
	struct list_head *pos, *tmp;
	int n, rc;

	cur_loop = loop;
	n = run_tasks(loop);
	timeout_ms = wait_timeout_ms(loop, n ? 0 : timeout_ms);
	if (loop->backend == EV_URING)
		rc = uring_dispatch(loop, timeout_ms);
	else
		rc = epoll_dispatch(loop, timeout_ms);
	if (rc < 0) {
		cur_loop = saved;
		return rc;
	}
	n += rc;
	n += run_timers(loop);
	n += run_tasks(loop);
	flush_sqes(loop);
	list_for_each_safe(pos, tmp, &loop->dead_polls) {
		list_del(pos);
		free(list_entry(pos, struct ev_poll, link));
	}
	cur_loop = saved;
	return n;
}

void ev_run(struct ev_loop *loop)
{
	while (!__atomic_load_n(&loop->stop, __ATOMIC_ACQUIRE)) {
		int rc = ev_run_once(loop, -1);

		if (rc < 0) {
			LOG_ERR(LS_EV, "event loop: %s", strerror(-rc));
			break;
		}
	}
}

void ev_stop(struct ev_loop *loop)
{
	uint64_t one = 1;

	__atomic_store_n(&loop->stop, 1, __ATOMIC_RELEASE);
	/* Wake it through the message eventfd directly: no allocation that
	 * could fail and lose the wake-up. msg_ready finds no message. */
	if (ev_current() != loop && write(loop->msg_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is saturated, a wake-up is pending */
	}
}

bool ev_stopped(const struct ev_loop *loop)
{
	return __atomic_load_n(&loop->stop, __ATOMIC_ACQUIRE);
}
