/* SPDX-License-Identifier: MIT */
/*
 * Reactors (daemon/reactor.c), which had no unit test: calls land on the
 * right thread and return its value, a reactor cannot reactor_call (it
 * would deadlock), call_all stops at the first error, messages keep their
 * order, several control threads may call at once, and start/stop/start
 * works on both loop backends.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include "sand/ev.h"
#include "sand/reactor.h"

static enum ev_backend backends[] = { EV_URING, EV_EPOLL };

static int where(void *arg)
{
	(void)arg;
	return reactor_self();
}

START_TEST(test_call_runs_there)
{
	ck_assert_int_eq(reactors_start(2, backends[_i]), 0);
	ck_assert_uint_eq(reactor_count(), 2);
	ck_assert_int_eq(reactor_self(), -1);
	for (unsigned i = 0; i < 2; i++) {
		ck_assert_ptr_nonnull(reactor_loop(i));
		ck_assert_int_eq(ev_loop_backend(reactor_loop(i)), backends[_i]);
		ck_assert_int_eq(reactor_call(i, where, NULL), (int)i);
	}
	ck_assert_ptr_null(reactor_loop(2));
	ck_assert_int_eq(reactor_call(2, where, NULL), -EINVAL);
	reactors_stop();
	ck_assert_uint_eq(reactor_count(), 0);
	/* and again */
	ck_assert_int_eq(reactors_start(1, backends[_i]), 0);
	ck_assert_int_eq(reactor_call(0, where, NULL), 0);
	reactors_stop();
}
END_TEST

struct nested {
	int		rc;
	int		done;
};

static int nested_call(void *arg)
{
	(void)arg;
	return 0;
}

static void try_call_from_reactor(void *arg)
{
	struct nested *n = arg;

	n->rc = reactor_call(1, nested_call, NULL);
	__atomic_store_n(&n->done, 1, __ATOMIC_RELEASE);
}

START_TEST(test_call_from_reactor_refused)
{
	struct nested n = { .rc = 1 };
	uint64_t end;

	ck_assert_int_eq(reactors_start(2, backends[_i]), 0);
	ck_assert_int_eq(reactor_send(0, try_call_from_reactor, &n), 0);
	end = now_ns() + 2000000000ull;
	while (!__atomic_load_n(&n.done, __ATOMIC_ACQUIRE) && now_ns() < end)
		;
	ck_assert_int_eq(__atomic_load_n(&n.done, __ATOMIC_ACQUIRE), 1);
	ck_assert_int_eq(n.rc, -EDEADLK);
	reactors_stop();
}
END_TEST

static int visits[4];

static int visit(unsigned i, void *arg)
{
	visits[i]++;
	ck_assert_int_eq(reactor_self(), (int)i);
	return i == *(unsigned *)arg ? -EIO : 0;
}

START_TEST(test_call_all_stops_at_error)
{
	unsigned fail_at = 1, none = 99;

	ck_assert_int_eq(reactors_start(3, backends[_i]), 0);
	for (int i = 0; i < 4; i++)
		visits[i] = 0;
	ck_assert_int_eq(reactor_call_all(visit, &none), 0);
	ck_assert_int_eq(reactor_call_all(visit, &fail_at), -EIO);
	ck_assert_int_eq(visits[0], 2);
	ck_assert_int_eq(visits[1], 2);
	ck_assert_int_eq(visits[2], 1);		/* not reached the second time */
	reactors_stop();
}
END_TEST

struct order {
	int	last;
	int	bad;
};

struct step { struct order *o; int seq; };

static void step_fn(void *arg)
{
	struct step *s = arg;

	if (s->seq != s->o->last + 1)
		s->o->bad++;
	s->o->last = s->seq;
}

static int read_last(void *arg)
{
	return ((struct order *)arg)->last;
}

static void *caller(void *arg)
{
	long sum = 0;

	(void)arg;
	for (int i = 0; i < 500; i++)
		sum += reactor_call((unsigned)i % 2, where, NULL);
	return (void *)sum;
}

START_TEST(test_send_order_and_parallel_callers)
{
	enum { N = 2000 };
	struct step *steps = calloc(N, sizeof(*steps));
	struct order o = { 0 };
	pthread_t th[3];

	ck_assert_int_eq(reactors_start(2, backends[_i]), 0);
	for (int i = 0; i < N; i++) {
		steps[i] = (struct step){ &o, i + 1 };
		ck_assert_int_eq(reactor_send(1, step_fn, &steps[i]), 0);
	}
	/* a call queued after them runs after them */
	ck_assert_int_eq(reactor_call(1, read_last, &o), N);
	ck_assert_int_eq(o.bad, 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, caller, NULL), 0);
	for (int i = 0; i < 3; i++) {
		void *sum;

		pthread_join(th[i], &sum);
		ck_assert_int_eq((long)sum, 250);	/* half went to reactor 1 */
	}
	reactors_stop();
	free(steps);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("review_reactor");
	TCase *tc = tcase_create("reactor");

	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, test_call_runs_there, 0, 2);
	tcase_add_loop_test(tc, test_call_from_reactor_refused, 0, 2);
	tcase_add_loop_test(tc, test_call_all_stops_at_error, 0, 2);
	tcase_add_loop_test(tc, test_send_order_and_parallel_callers, 0, 2);
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
