/* SPDX-License-Identifier: MIT */
/*
 * Regression tests from the review of common/ev.c: the promises of ev.h that
 * the first tests did not pin down, each on both backends where it applies.
 */
#include <check.h>
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
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

static void run_for_ms(struct ev_loop *loop, unsigned ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000;

	while (now_ns() < end)
		ck_assert_int_ge(ev_run_once(loop, 5), 0);
}

static void run_until(struct ev_loop *loop, volatile int *flag, int want)
{
	uint64_t end = now_ns() + 2000000000ull;

	while (*flag < want && now_ns() < end)
		ck_assert_int_ge(ev_run_once(loop, 20), 0);
	ck_assert_int_ge(*flag, want);
}

/* ---------------------------------------------------------------- edge-triggered */

struct partial {
	struct ev_io	io;
	int		calls;
	size_t		per_call;	/* bytes read per call, then stop early */
	size_t		bytes;
	uint32_t	last_rev;
	uint32_t	all_rev;
};

static void on_partial(struct ev_io *io, uint32_t rev)
{
	struct partial *p = container_of(io, struct partial, io);
	char buf[64];
	ssize_t n;

	p->calls++;
	p->last_rev = rev;
	p->all_rev |= rev;
	if (p->per_call) {
		n = read(io->fd, buf, MIN(p->per_call, sizeof(buf)));
		if (n > 0)
			p->bytes += (size_t)n;
	}
}

/*
 * ev.h: readiness is edge-triggered on both backends. A handler that reads
 * only part of what is there is not called again until new data arrives.
 */
START_TEST(test_edge_partial_read)
{
	struct ev_loop *loop = new_loop(_i);
	struct partial p = { .per_call = 10 };
	char data[100];
	int sv[2];

	memset(data, 'x', sizeof(data));
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	ck_assert_int_eq(ev_io_start(loop, &p.io, sv[0], EV_READ, on_partial), 0);
	ck_assert_int_eq(write(sv[1], data, sizeof(data)), (ssize_t)sizeof(data));
	run_until(loop, (volatile int *)&p.calls, 1);
	run_for_ms(loop, 60);
	ck_assert_int_eq(p.calls, 1);		/* 90 bytes left, but no new edge */
	ck_assert_uint_eq(p.bytes, 10);
	ck_assert_int_eq(write(sv[1], "y", 1), 1);	/* a new edge */
	run_until(loop, (volatile int *)&p.calls, 2);
	run_for_ms(loop, 30);
	ck_assert_int_eq(p.calls, 2);
	ev_io_stop(loop, &p.io);
	close(sv[0]);
	close(sv[1]);
	ev_loop_free(loop);
}
END_TEST

/*
 * The handler gets EV_* bits only, the same on both backends: the peer's
 * shutdown is EV_READ (then read() returns 0), never a raw POLLRDHUP or
 * POLLRDNORM that one backend sets and the other does not.
 */
START_TEST(test_revents_are_ev_bits)
{
	struct ev_loop *loop = new_loop(_i);
	struct partial p = { .per_call = 64 };
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	ck_assert_int_eq(ev_io_start(loop, &p.io, sv[0], EV_READ, on_partial), 0);
	ck_assert_int_eq(write(sv[1], "abc", 3), 3);
	run_until(loop, (volatile int *)&p.calls, 1);
	ck_assert_uint_eq(p.last_rev, EV_READ);
	ck_assert_int_eq(shutdown(sv[1], SHUT_WR), 0);
	run_until(loop, (volatile int *)&p.calls, 2);
	ck_assert(p.last_rev & EV_READ);
	ck_assert_uint_eq(p.all_rev & ~(EV_READ | EV_WRITE | EV_ERROR | EV_HUP), 0);
	ev_io_stop(loop, &p.io);
	close(sv[0]);
	close(sv[1]);
	ev_loop_free(loop);
}
END_TEST

/* ---------------------------------------------------------------- bounded turns */

struct chain {
	struct ev_cqe	c;
	struct ev_loop	*loop;
	int		*left;
	int		calls;
};

static void on_chain(struct ev_cqe *c, int res, uint32_t flags)
{
	struct chain *ch = container_of(c, struct chain, c);

	(void)flags;
	ck_assert_int_eq(res, 0);
	ch->calls++;
	if (*ch->left > 0) {
		struct io_uring_sqe *sqe = ev_get_sqe(ch->loop);

		(*ch->left)--;
		io_uring_prep_nop(sqe);
		ev_sqe_set_cqe(sqe, &ch->c);
	}
}

static int timer_fired;
static void on_timer(struct ev_timer *t) { (void)t; timer_fired++; }

static int task_ran;
static void on_task(struct ev_task *t) { (void)t; task_ran++; }

/*
 * One turn of the loop does a bounded amount of work even when completion
 * handlers queue SQEs that complete at once (NOPs, reads from the page
 * cache): timers and deferred tasks must not starve behind an ever-refilled
 * CQ. This is what submitting from inside the dispatch loop (batch submit)
 * must not break.
 */
START_TEST(test_turn_is_bounded)
{
	struct ev_loop *loop = new_loop(0);
	enum { CHAINS = 32, TOTAL = 200000 };
	static struct chain ch[CHAINS];
	struct ev_timer t = { 0 };
	struct ev_task task = { 0 };
	int left = TOTAL, n, turns = 0;
	uint64_t t0;

	timer_fired = task_ran = 0;
	for (int i = 0; i < CHAINS; i++) {
		struct io_uring_sqe *sqe = ev_get_sqe(loop);

		ch[i] = (struct chain){ .c.fn = on_chain, .loop = loop, .left = &left };
		io_uring_prep_nop(sqe);
		ev_sqe_set_cqe(sqe, &ch[i].c);
	}
	ev_timer_start(loop, &t, 1000000, on_timer);	/* 1 ms */
	t0 = now_ns();
	while (left > 0 && now_ns() - t0 < 10000000000ull) {
		n = ev_run_once(loop, 0);
		ck_assert_int_ge(n, 0);
		/* no single turn runs the whole workload */
		ck_assert_int_lt(n, TOTAL / 4);
		turns++;
		if (turns == 2)
			ev_defer(loop, &task, on_task);
		if (now_ns() - t0 > 50000000ull && left > 0) {
			/* 50 ms in: the 1 ms timer and the task must have run */
			ck_assert_int_eq(timer_fired, 1);
			ck_assert_int_eq(task_ran, 1);
		}
	}
	while (ev_inflight(loop) && now_ns() - t0 < 12000000000ull)
		ev_run_once(loop, 10);
	ck_assert_uint_eq(ev_inflight(loop), 0);
	ck_assert_int_eq(timer_fired, 1);
	ck_assert_int_eq(task_ran, 1);
	ev_loop_free(loop);
}
END_TEST

struct errcount {
	struct ev_io	io;
	int		calls;
	uint32_t	rev;
};

static void on_err(struct ev_io *io, uint32_t rev)
{
	struct errcount *e = container_of(io, struct errcount, io);

	e->calls++;
	e->rev |= rev;
}

/*
 * Watching an fd that is not open: epoll refuses at ev_io_start; io_uring
 * learns it from the poll's CQE. Either way the caller hears of it (the
 * start fails, or the handler gets EV_ERROR) and the loop does not spin
 * re-arming a poll that can never work.
 */
START_TEST(test_bad_fd_does_not_spin)
{
	struct ev_loop *loop = new_loop(_i);
	struct errcount e = { 0 };
	int pfd[2], rc, turns = 0;
	uint64_t end;

	ck_assert_int_eq(pipe(pfd), 0);
	close(pfd[0]);
	close(pfd[1]);		/* pfd[0] is now a closed fd number */
	rc = ev_io_start(loop, &e.io, pfd[0], EV_READ, on_err);
	if (rc) {
		ck_assert_int_eq(rc, -EBADF);
	} else {
		end = now_ns() + 200000000ull;
		while (now_ns() < end) {
			ck_assert_int_ge(ev_run_once(loop, 20), 0);
			turns++;
		}
		ck_assert_int_ge(e.calls, 1);
		ck_assert(e.rev & EV_ERROR);
		ck_assert_int_le(e.calls, 2);
		ck_assert_int_lt(turns, 100);	/* ~10 when it sleeps */
		ev_io_stop(loop, &e.io);
	}
	ev_loop_free(loop);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("review_ev");
	TCase *tc = tcase_create("ev");

	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, test_edge_partial_read, 0, 2);
	tcase_add_loop_test(tc, test_revents_are_ev_bits, 0, 2);
	tcase_add_test(tc, test_turn_is_bounded);
	tcase_add_loop_test(tc, test_bad_fd_does_not_spin, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
