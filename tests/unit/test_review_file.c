/* SPDX-License-Identifier: MIT */
/*
 * Regression tests from the review of the file backends: a file system that
 * can punch holes but not zero a range (tmpfs) must go on punching holes for
 * discard after one WRITE_ZEROES with BIO_NOUNMAP was refused, on each of
 * the three backends.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "sand/blkdev.h"

#define SHM_DIR	"/dev/shm"

static const enum blk_file_backend backends[] = { BLK_FILE_URING, BLK_FILE_AIO, BLK_FILE_PSYNC };

static uint64_t blocks_of(const char *path)
{
	struct stat st;

	ck_assert_int_eq(stat(path, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

START_TEST(test_discard_punches_after_zero_range_refused)
{
	enum { SIZE = 4 << 20, MB = 1 << 20 };
	struct blk_file_opts o = { .backend = backends[_i], .create_size = SIZE, .no_direct = true };
	char path[256];
	struct blkdev *bd;
	uint8_t *buf = malloc(MB), *chk = malloc(MB);
	uint64_t before, after;
	struct stat st;

	if (stat(SHM_DIR, &st) < 0) {
		/* no tmpfs here: nothing to test (the assertion documents why) */
		ck_assert_msg(0, SHM_DIR " missing");
	}
	snprintf(path, sizeof(path), SHM_DIR "/sand-review-%d-%d", (int)getpid(), _i);
	unlink(path);
	ck_assert_int_eq(blk_file_open("rf", path, &o, &bd), 0);
	memset(buf, 0xa5, MB);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(blk_sync_io(bd, BIO_WRITE, 0, (uint64_t)i * MB, buf, MB), 0);
	/* zeroes that must stay allocated: tmpfs has no ZERO_RANGE */
	ck_assert_int_eq(blk_sync_io(bd, BIO_WRITE_ZEROES, BIO_NOUNMAP, 0, NULL, 65536), 0);
	ck_assert_int_eq(blk_sync_io(bd, BIO_READ, 0, 0, chk, 65536), 0);
	for (int i = 0; i < 65536; i++)
		ck_assert_uint_eq(chk[i], 0);
	/* a discard of 2 MiB gives the memory back */
	before = blocks_of(path);
	ck_assert_int_eq(blk_sync_io(bd, BIO_DISCARD, 0, MB, NULL, 2 * MB), 0);
	after = blocks_of(path);
	ck_assert_msg(after + MB <= before, "discard freed %llu bytes of 2 MiB",
		      (unsigned long long)(before - after));
	ck_assert_int_eq(blk_sync_io(bd, BIO_READ, 0, MB, chk, MB), 0);
	for (int i = 0; i < MB; i++)
		ck_assert_uint_eq(chk[i], 0);
	ck_assert_int_eq(blkdev_close(bd), 0);
	unlink(path);
	free(buf);
	free(chk);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("review_file");
	TCase *tc = tcase_create("file");

	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, test_discard_punches_after_zero_range_refused, 0, 3);
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
