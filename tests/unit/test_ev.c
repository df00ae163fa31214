/* SPDX-License-Identifier: MIT */
/* The event loop, on both backends: fds, timers, deferred tasks, messages. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include "sand/ev.h"

static enum ev_backend backends[] = { EV_URING, EV_EPOLL };

static struct ev_loop *new_loop(int i)
{
	struct ev_loop *loop;

	ck_assert_int_eq(ev_loop_new(backends[i], 64, &loop), 0);
	ck_assert_int_eq(ev_loop_backend(loop), backends[i]);
	return loop;
}

/* run until *flag or 2 s */
static void run_until(struct ev_loop *loop, volatile int *flag, int want)
{
	uint64_t end = now_ns() + 2000000000ull;

	while (*flag < want && now_ns() < end)
		ck_assert_int_ge(ev_run_once(loop, 50), 0);
	ck_assert_int_ge(*flag, want);
}

struct rd {
	struct ev_io	io;
	int		calls;
	size_t		bytes;
	struct ev_loop	*loop;
	bool		stop_after_first;
};

static void on_read(struct ev_io *io, uint32_t rev)
{
	struct rd *r = container_of(io, struct rd, io);
	char buf[7];
	ssize_t n;

	r->calls++;
	/* edge-triggered: drain until EAGAIN */
	while ((n = read(io->fd, buf, sizeof(buf))) > 0)
		r->bytes += (size_t)n;
	if (r->stop_after_first)
		ev_io_stop(r->loop, io);
}

START_TEST(test_fd_readiness)
{
	struct ev_loop *loop = new_loop(_i);
	struct rd r = { .loop = loop };
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	ck_assert_int_eq(ev_io_start(loop, &r.io, sv[0], EV_READ, on_read), 0);
	ck_assert_int_eq(ev_run_once(loop, 0), 0);	/* nothing ready */
	ck_assert_int_eq(r.calls, 0);
	ck_assert_int_eq(write(sv[1], "hello world, 23 bytes!", 22), 22);
	run_until(loop, (volatile int *)&r.calls, 1);
	ck_assert_uint_eq(r.bytes, 22);
	/* a second edge */
	ck_assert_int_eq(write(sv[1], "again", 5), 5);
	run_until(loop, (volatile int *)&r.calls, 2);
	ck_assert_uint_eq(r.bytes, 27);
	/* stopped: no more calls, even with data pending */
	ev_io_stop(loop, &r.io);
	ck_assert_int_eq(write(sv[1], "x", 1), 1);
	for (int i = 0; i < 5; i++)
		ev_run_once(loop, 10);
	ck_assert_int_eq(r.calls, 2);
	close(sv[0]);
	close(sv[1]);
	ev_loop_free(loop);
}
END_TEST

START_TEST(test_stop_from_handler)
{
	struct ev_loop *loop = new_loop(_i);
	struct rd r = { .loop = loop, .stop_after_first = true };
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	ck_assert_int_eq(ev_io_start(loop, &r.io, sv[0], EV_READ, on_read), 0);
	ck_assert_int_eq(write(sv[1], "a", 1), 1);
	run_until(loop, (volatile int *)&r.calls, 1);
	ck_assert_int_eq(write(sv[1], "b", 1), 1);
	for (int i = 0; i < 5; i++)
		ev_run_once(loop, 10);
	ck_assert_int_eq(r.calls, 1);
	close(sv[0]);
	close(sv[1]);
	ev_loop_free(loop);
}
END_TEST

struct wr {
	struct ev_io	io;
	int		writable;
};

static void on_write(struct ev_io *io, uint32_t rev)
{
	struct wr *w = container_of(io, struct wr, io);

	if (rev & EV_WRITE)
		w->writable++;
}

START_TEST(test_write_interest)
{
	struct ev_loop *loop = new_loop(_i);
	struct wr w = { 0 };
	char buf[65536] = { 0 };
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	/* fill the socket until it would block */
	while (write(sv[0], buf, sizeof(buf)) > 0)
		;
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(ev_io_start(loop, &w.io, sv[0], EV_READ, on_write), 0);
	ck_assert_int_eq(ev_io_modify(loop, &w.io, EV_READ | EV_WRITE), 0);
	for (int i = 0; i < 3; i++)
		ev_run_once(loop, 10);
	ck_assert_int_eq(w.writable, 0);
	/* drain the peer: becomes writable */
	while (read(sv[1], buf, sizeof(buf)) > 0)
		;
	run_until(loop, (volatile int *)&w.writable, 1);
	ev_io_stop(loop, &w.io);
	close(sv[0]);
	close(sv[1]);
	ev_loop_free(loop);
}
END_TEST

static int fired[4];
static uint64_t fired_at[4];

static void on_timer(struct ev_timer *t);
static struct ev_timer timers[4];

static void on_timer(struct ev_timer *t)
{
	int i = (int)(t - timers);

	fired[i]++;
	fired_at[i] = now_ns();
}

START_TEST(test_timers)
{
	struct ev_loop *loop = new_loop(_i);
	uint64_t start = now_ns();
	volatile int total = 0;

	memset(fired, 0, sizeof(fired));
	memset(timers, 0, sizeof(timers));
	ev_timer_start(loop, &timers[0], 30000000, on_timer);	/* 30 ms */
	ev_timer_start(loop, &timers[1], 10000000, on_timer);	/* 10 ms */
	ev_timer_start(loop, &timers[2], 20000000, on_timer);	/* 20 ms, stopped */
	ev_timer_start(loop, &timers[3], 5000000, on_timer);	/* re-armed to 15 ms */
	ck_assert(ev_timer_armed(&timers[2]));
	ev_timer_stop(loop, &timers[2]);
	ck_assert(!ev_timer_armed(&timers[2]));
	ev_timer_start(loop, &timers[3], 15000000, on_timer);
	while (total < 3 && now_ns() - start < 2000000000ull) {
		ev_run_once(loop, -1);	/* must wake for the timer by itself */
		total = fired[0] + fired[1] + fired[3];
	}
	ck_assert_int_eq(fired[0], 1);
	ck_assert_int_eq(fired[1], 1);
	ck_assert_int_eq(fired[2], 0);
	ck_assert_int_eq(fired[3], 1);
	ck_assert(fired_at[1] - start >= 10000000);
	ck_assert(fired_at[3] - start >= 15000000);
	ck_assert(fired_at[0] - start >= 30000000);
	ck_assert(fired_at[1] <= fired_at[3] && fired_at[3] <= fired_at[0]);
	ev_loop_free(loop);
}
END_TEST

/* many timers in random order come out sorted */
START_TEST(test_timer_heap)
{
	struct ev_loop *loop = new_loop(_i);
	enum { N = 200 };
	static struct ev_timer ts[N];

	srand(7);
	for (int i = 0; i < N; i++) {
		ts[i].heap_idx = 0;
		ev_timer_start(loop, &ts[i], (uint64_t)(rand() % 50) * 100000, NULL);
	}
	/* stop every third */
	for (int i = 0; i < N; i += 3)
		ev_timer_stop(loop, &ts[i]);
	/* walk the heap by hand: every armed timer's deadline >= its parent's */
	for (int i = 0; i < N; i++) {
		if (!ts[i].heap_idx || ts[i].heap_idx == 1)
			continue;
		for (int j = 0; j < N; j++)
			if (ts[j].heap_idx == ts[i].heap_idx / 2)
				ck_assert(ts[j].when <= ts[i].when);
	}
	for (int i = 0; i < N; i++)
		ev_timer_stop(loop, &ts[i]);
	ev_loop_free(loop);
}
END_TEST

struct cnt_task {
	struct ev_task	t;
	int		n;
	int		redefer;
	struct ev_loop	*loop;
};

static void on_task(struct ev_task *t)
{
	struct cnt_task *c = container_of(t, struct cnt_task, t);

	c->n++;
	if (c->redefer-- > 0)
		ev_defer(c->loop, t, on_task);
}

START_TEST(test_defer)
{
	struct ev_loop *loop = new_loop(_i);
	struct cnt_task a = { .loop = loop, .redefer = 3 };

	ev_defer(loop, &a.t, on_task);
	ev_defer(loop, &a.t, on_task);	/* already queued: no-op */
	ck_assert_int_eq(a.n, 0);		/* never inside ev_defer */
	/* one turn runs it once; the re-deferral waits for the next turn */
	ev_run_once(loop, 0);
	ck_assert_int_ge(a.n, 1);
	for (int i = 0; i < 10; i++)
		ev_run_once(loop, 0);
	ck_assert_int_eq(a.n, 4);
	/* a queued task makes the loop not sleep */
	a.redefer = 0;
	ev_defer(loop, &a.t, on_task);
	uint64_t t0 = now_ns();
	ev_run_once(loop, 1000);
	ck_assert(now_ns() - t0 < 500000000ull);
	ck_assert_int_eq(a.n, 5);
	ev_loop_free(loop);
}
END_TEST

struct msgs {
	int		got[2];
	int		last[2];
	bool		ordered;
	struct ev_loop	*loop;
	int		total;
};

struct msg_arg { struct msgs *m; int sender, seq; };

static void on_msg(void *p)
{
	struct msg_arg *a = p;
	struct msgs *m = a->m;

	if (a->seq != m->last[a->sender] + 1)
		m->ordered = false;
	m->last[a->sender] = a->seq;
	m->got[a->sender]++;
	m->total++;
	free(a);
}

struct sender { struct msgs *m; int id; int n; };

static void *send_thread(void *p)
{
	struct sender *s = p;

	for (int i = 1; i <= s->n; i++) {
		struct msg_arg *a = malloc(sizeof(*a));

		a->m = s->m;
		a->sender = s->id;
		a->seq = i;
		ck_assert_int_eq(ev_send_msg(s->m->loop, on_msg, a), 0);
	}
	return NULL;
}

START_TEST(test_messages)
{
	struct ev_loop *loop = new_loop(_i);
	struct msgs m = { .ordered = true, .loop = loop };
	struct sender s[2] = { { &m, 0, 5000 }, { &m, 1, 5000 } };
	pthread_t th[2];

	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, send_thread, &s[i]);
	uint64_t end = now_ns() + 5000000000ull;
	while (m.total < 10000 && now_ns() < end)
		ev_run_once(loop, 50);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	ck_assert_int_eq(m.total, 10000);
	ck_assert(m.ordered);
	ev_loop_free(loop);
}
END_TEST

static void *stopper(void *p)
{
	usleep(50000);
	ev_stop(p);
	return NULL;
}

START_TEST(test_stop_other_thread)
{
	struct ev_loop *loop = new_loop(_i);
	pthread_t th;
	uint64_t t0 = now_ns();

	pthread_create(&th, NULL, stopper, loop);
	ev_run(loop);		/* blocks until the other thread stops it */
	pthread_join(th, NULL);
	ck_assert(ev_stopped(loop));
	ck_assert(now_ns() - t0 < 2000000000ull);
	ev_loop_free(loop);
}
END_TEST

/* io_uring only: an SQE with our completion handler */
struct nop { struct ev_cqe c; int res; int calls; };

static void on_nop(struct ev_cqe *c, int res, uint32_t flags)
{
	struct nop *n = container_of(c, struct nop, c);

	n->res = res;
	n->calls++;
}

#include <liburing.h>
START_TEST(test_uring_sqe)
{
	struct ev_loop *loop = new_loop(0);
	struct nop n[300];

	ck_assert_ptr_nonnull(ev_uring(loop));
	/* more SQEs than the ring holds: ev_get_sqe submits to make room */
	for (int i = 0; i < 300; i++) {
		struct io_uring_sqe *sqe = ev_get_sqe(loop);

		ck_assert_ptr_nonnull(sqe);
		n[i] = (struct nop){ .c.fn = on_nop, .res = -1 };
		io_uring_prep_nop(sqe);
		ev_sqe_set_cqe(sqe, &n[i].c);
	}
	ck_assert_uint_eq(ev_inflight(loop), 300);
	uint64_t end = now_ns() + 2000000000ull;
	while (ev_inflight(loop) && now_ns() < end)
		ev_run_once(loop, 10);
	ck_assert_uint_eq(ev_inflight(loop), 0);
	for (int i = 0; i < 300; i++) {
		ck_assert_int_eq(n[i].calls, 1);
		ck_assert_int_eq(n[i].res, 0);
	}
	ev_loop_free(loop);

	/* an epoll loop has no ring */
	ck_assert_int_eq(ev_loop_new(EV_EPOLL, 0, &loop), 0);
	ck_assert_ptr_null(ev_uring(loop));
	ev_loop_free(loop);
}
END_TEST

static Suite *ev_suite(void)
{
	Suite *s = suite_create("ev");
	TCase *tc = tcase_create("both");

	tcase_add_loop_test(tc, test_fd_readiness, 0, 2);
	tcase_add_loop_test(tc, test_stop_from_handler, 0, 2);
	tcase_add_loop_test(tc, test_write_interest, 0, 2);
	tcase_add_loop_test(tc, test_timers, 0, 2);
	tcase_add_loop_test(tc, test_timer_heap, 0, 2);
	tcase_add_loop_test(tc, test_defer, 0, 2);
	tcase_add_loop_test(tc, test_messages, 0, 2);
	tcase_add_loop_test(tc, test_stop_other_thread, 0, 2);
	tcase_add_test(tc, test_uring_sqe);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(ev_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
