/* SPDX-License-Identifier: MIT */
/*
 * The state file (daemon/state.c): atomic write and reopen, sections,
 * refusal of corrupt or newer files, and a failed save changing nothing.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "sand/state.h"

static char dir[256];
static char file[512];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "%s/sand-test-state-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(file, sizeof(file), "%s/%s", dir, STATE_FILE);
}

static void teardown(void)
{
	char p[PATH_MAX + 32];

	state_close();
	unlink(file);
	snprintf(p, sizeof(p), "%s.tmp", file);
	unlink(p);
	rmdir(dir);
}

static void write_file(const char *text)
{
	FILE *f = fopen(file, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

static char *read_file(void)
{
	static char buf[65536];
	FILE *f = fopen(file, "r");
	size_t n;

	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

START_TEST(test_empty_then_set)
{
	json_t *v, *got;
	struct stat st;
	char tmp[PATH_MAX + 32];

	ck_assert_int_eq(state_open(dir, NULL, 0), 0);
	ck_assert_ptr_null(state_get("disks"));
	ck_assert_int_eq(stat(file, &st), -1);	/* nothing written until a change */
	v = json_pack("[{s:s,s:I}]", "name", "d0", "size", (json_int_t)1 << 30);
	ck_assert_int_eq(state_set("disks", v), 0);
	ck_assert_int_eq(stat(file, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	ck_assert_int_eq(access(tmp, F_OK), -1);	/* renamed away */
	got = state_get("disks");
	ck_assert(json_equal(got, v));
	/* a copy: changing it changes nothing inside */
	json_array_clear(got);
	json_decref(got);
	got = state_get("disks");
	ck_assert(json_equal(got, v));
	json_decref(got);
	ck_assert_ptr_nonnull(strstr(read_file(), "\"version\": 1"));
	json_decref(v);
}
END_TEST

START_TEST(test_reopen)
{
	json_t *d = json_pack("[{s:s}]", "name", "d0"), *n = json_pack("{s:i}", "port", 10809);
	json_t *got;

	ck_assert_int_eq(state_open(dir, NULL, 0), 0);
	ck_assert_int_eq(state_set("disks", d), 0);
	ck_assert_int_eq(state_set("nbd", n), 0);
	state_close();
	ck_assert_int_eq(state_open(dir, NULL, 0), 0);
	got = state_get("disks");
	ck_assert(json_equal(got, d));
	json_decref(got);
	got = state_get("nbd");
	ck_assert(json_equal(got, n));
	json_decref(got);
	/* delete a section */
	ck_assert_int_eq(state_set("nbd", NULL), 0);
	state_close();
	ck_assert_int_eq(state_open(dir, NULL, 0), 0);
	ck_assert_ptr_null(state_get("nbd"));
	got = state_get("disks");
	ck_assert(json_equal(got, d));
	json_decref(got);
	/* "version" is not a section */
	ck_assert_int_eq(state_set("version", n), -EINVAL);
	json_decref(d);
	json_decref(n);
}
END_TEST

START_TEST(test_corrupt_refused)
{
	static const char *bad[] = {
		"{\"version\": 1, \"disks\": [",		/* truncated */
		"garbage",
		"",
		"[1, 2]",					/* not an object */
		"{\"disks\": []}",				/* no version */
		"{\"version\": \"1\"}",
		"{\"version\": 1, \"a\": 1, \"a\": 2}",		/* duplicate key */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char msg[1024] = "";

		write_file(bad[i]);
		ck_assert_int_eq(state_open(dir, msg, sizeof(msg)), -EINVAL);
		ck_assert_msg(strstr(msg, "corrupt") && strstr(msg, file), "msg: %s", msg);
		/* never silently replaced */
		ck_assert_str_eq(read_file(), bad[i]);
		ck_assert_ptr_null(state_get("disks"));
		ck_assert_int_eq(state_set("disks", NULL), -EBADF);
	}
}
END_TEST

START_TEST(test_newer_refused)
{
	char msg[1024] = "";

	write_file("{\"version\": 99}");
	ck_assert_int_eq(state_open(dir, msg, sizeof(msg)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "newer"));
	ck_assert_str_eq(read_file(), "{\"version\": 99}");
}
END_TEST

START_TEST(test_failed_save_changes_nothing)
{
	json_t *a = json_pack("{s:i}", "a", 1), *b = json_pack("{s:i}", "b", 2), *got;

	ck_assert_int_eq(state_open(dir, NULL, 0), 0);
	ck_assert_int_eq(state_set("s", a), 0);
	/* the directory goes away: the next save cannot be written */
	ck_assert_int_eq(unlink(file), 0);
	ck_assert_int_eq(rmdir(dir), 0);
	ck_assert_int_lt(state_set("s", b), 0);
	got = state_get("s");
	ck_assert(json_equal(got, a));		/* the old value stays */
	json_decref(got);
	ck_assert_int_eq(mkdir(dir, 0700), 0);	/* for teardown */
	json_decref(a);
	json_decref(b);
}
END_TEST

START_TEST(test_stale_tmp_ignored)
{
	char tmp[PATH_MAX + 32];
	FILE *f;
	json_t *v = json_pack("{s:i}", "x", 1), *got;

	/* a crash between write and rename leaves a .tmp: the real file wins */
	write_file("{\"version\": 1, \"s\": {\"x\": 1}}");
	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	fputs("{\"version\": 1, \"s\": {\"x\"", f);
	fclose(f);
	ck_assert_int_eq(state_open(dir, NULL, 0), 0);
	got = state_get("s");
	ck_assert(json_equal(got, v));
	json_decref(got);
	json_decref(v);
}
END_TEST

static Suite *state_suite(void)
{
	Suite *s = suite_create("state");
	TCase *tc = tcase_create("file");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_empty_then_set);
	tcase_add_test(tc, test_reopen);
	tcase_add_test(tc, test_corrupt_refused);
	tcase_add_test(tc, test_newer_refused);
	tcase_add_test(tc, test_failed_save_changes_nothing);
	tcase_add_test(tc, test_stale_tmp_ignored);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(state_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
