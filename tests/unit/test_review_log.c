/* SPDX-License-Identifier: MIT */
/*
 * The log from many threads at once, as reactors and the control thread use
 * it: LOG_RATELIMIT at one call site from several reactors while the
 * control plane changes the level. Run under TSan (make SANITIZE=thread) to
 * see the data races this guards against; here the rate limit is checked.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "sand/common.h"
#include "sand/log.h"

#define ROUNDS	20000

static int go;

static void *logger(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
		;
	for (int i = 0; i < ROUNDS; i++)
		LOG_RATELIMIT(LOG_ERROR, LS_BLK, "review: ratelimited %d", i);
	return NULL;
}

static void *leveller(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
		;
	for (int i = 0; i < ROUNDS; i++)
		log_set_level(i % 2 ? LOG_INFO : LOG_WARN);
	return NULL;
}

static unsigned count_lines(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	char line[2048];
	unsigned n = 0;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			n++;
	fclose(f);
	return n;
}

START_TEST(test_ratelimit_many_threads)
{
	char path[] = "/tmp/sand-review-log-XXXXXX";
	int fd = mkstemp(path);
	pthread_t th[4];
	uint64_t t0;
	unsigned secs, n;

	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(log_set_file(path), 0);
	t0 = now_ns();
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, logger, NULL), 0);
	ck_assert_int_eq(pthread_create(&th[3], NULL, leveller, NULL), 0);
	__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	secs = (unsigned)((now_ns() - t0) / 1000000000ull) + 1;
	ck_assert_int_eq(log_set_file(NULL), 0);
	log_set_level(LOG_INFO);
	/* 10 a second from the one call site, whatever the threads */
	n = count_lines(path, "review: ratelimited");
	ck_assert_uint_ge(n, 1);
	ck_assert_uint_le(n, 10 * (secs + 1));
	unlink(path);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("review_log");
	TCase *tc = tcase_create("log");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_ratelimit_many_threads);
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
