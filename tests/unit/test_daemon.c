/* SPDX-License-Identifier: MIT */
/*
 * The control thread (daemon/control.c) without the rest of the daemon:
 * shutdown hooks run in reverse order, a request over the socket, SIGTERM
 * through the signalfd, and the socket's removal.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "sand/daemon.h"
#include "sand/rpc.h"

static char order[16];
static size_t norder;

static void hook(void *arg)
{
	order[norder++] = *(const char *)arg;
}

START_TEST(test_hooks_reverse_order)
{
	static const char a = 'a', b = 'b', c = 'c';

	norder = 0;
	ck_assert_int_eq(daemon_on_shutdown("a", hook, (void *)&a), 0);
	ck_assert_int_eq(daemon_on_shutdown("b", hook, (void *)&b), 0);
	ck_assert_int_eq(daemon_on_shutdown("c", hook, (void *)&c), 0);
	daemon_run_shutdown_hooks();
	ck_assert_int_eq(norder, 3);
	ck_assert_int_eq(memcmp(order, "cba", 3), 0);
	daemon_run_shutdown_hooks();		/* each runs once */
	ck_assert_int_eq(norder, 3);
}
END_TEST

static json_t *ping(json_t *params, void *arg, struct rpc_err *err)
{
	return json_string("pong");
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -errno;
	}
	return fd;
}

START_TEST(test_control_socket_and_sigterm)
{
	static const char h = 'h';
	char dir[] = "/tmp/sand-test-ctl-XXXXXX", path[96], buf[4096];
	struct control_opts o = { .path = path, .backend = EV_AUTO };
	const char *req = "{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":1}\n";
	struct stat st;
	sigset_t set;
	ssize_t n;
	size_t len = 0;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/t.sock", dir);
	ck_assert_int_eq(rpc_register("ping", ping, NULL), 0);
	norder = 0;
	ck_assert_int_eq(daemon_on_shutdown("h", hook, (void *)&h), 0);

	ck_assert_int_eq(control_start(&o), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	fd = connect_to(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while (len < sizeof(buf) - 1 && !memchr(buf, '\n', len)) {
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		ck_assert_int_gt(n, 0);
		len += (size_t)n;
	}
	buf[len] = '\0';
	ck_assert_ptr_nonnull(strstr(buf, "\"result\":\"pong\""));

	kill(getpid(), SIGTERM);
	control_wait();				/* returns once the hooks ran */
	ck_assert_int_eq(norder, 1);
	ck_assert_int_eq(order[0], 'h');
	n = read(fd, buf, sizeof(buf));		/* our client was closed */
	ck_assert_int_le(n, 0);
	close(fd);
	ck_assert_int_lt(connect_to(path), 0);	/* nobody accepts any more */
	control_unlink();
	ck_assert_int_eq(stat(path, &st), -1);
	rmdir(dir);
	rpc_unregister_all();
}
END_TEST

/* A live daemon's stand-in: accepts one connection, reads, answers. */
static void *answer_once(void *arg)
{
	int lfd = *(int *)arg, fd = accept(lfd, NULL, NULL);
	char buf[256];

	if (fd >= 0) {
		if (read(fd, buf, sizeof(buf)) > 0 && write(fd, "{}\n", 3) != 3)
			perror("write");
		close(fd);
	}
	return NULL;
}

START_TEST(test_control_refuses_live_socket)
{
	char dir[] = "/tmp/sand-test-ctl-XXXXXX", path[96];
	struct control_opts o = { .path = path, .backend = EV_AUTO };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pthread_t th;
	int lfd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/t.sock", dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(lfd, 1), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, answer_once, &lfd), 0);
	ck_assert_int_eq(control_start(&o), -EADDRINUSE);	/* someone answers there */
	pthread_join(th, NULL);
	close(lfd);
	ck_assert_int_eq(access(path, F_OK), 0);		/* not removed */
	unlink(path);
	rmdir(dir);
}
END_TEST

static Suite *daemon_suite(void)
{
	Suite *s = suite_create("daemon");
	TCase *tc = tcase_create("control");

	tcase_add_test(tc, test_hooks_reverse_order);
	tcase_add_test(tc, test_control_socket_and_sigterm);
	tcase_add_test(tc, test_control_refuses_live_socket);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(daemon_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
