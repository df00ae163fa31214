/* SPDX-License-Identifier: MIT */
/*
 * disk.add / disk.remove / disk.list (daemon/disk_rpc.c) through the RPC
 * dispatcher, with a real state file: claimed disks cannot be removed, a
 * failed save changes nothing, disk_restore() brings back what was saved
 * and keeps what fails to open in the list.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "sand/blkdev.h"
#include "sand/daemon.h"
#include "sand/rpc.h"
#include "sand/state.h"

static char dir[128];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/sand-test-disk-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(state_open(dir, NULL, 0), 0);
	disk_rpc_init();
}

static void teardown(void)
{
	char p[256];

	disk_close_all();
	rpc_unregister_all();
	state_close();
	snprintf(p, sizeof(p), "%s/%s", dir, STATE_FILE);
	unlink(p);
	snprintf(p, sizeof(p), "%s/f.img", dir);
	unlink(p);
	rmdir(dir);
}

/* Call method with params (JSON text); returns the result or NULL and
 * the error code in *code. */
static json_t *call(const char *method, const char *params, int *code)
{
	char line[1024];
	size_t n;
	char *out;
	json_t *r, *res;

	snprintf(line, sizeof(line), "{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"params\":%s,\"id\":1}",
		 method, params);
	out = rpc_handle_line(line, strlen(line), &n);
	ck_assert_ptr_nonnull(out);
	r = json_loads(out, 0, NULL);
	free(out);
	ck_assert_ptr_nonnull(r);
	*code = (int)json_integer_value(json_object_get(json_object_get(r, "error"), "code"));
	res = json_incref(json_object_get(r, "result"));
	json_decref(r);
	return res;
}

static size_t saved_disks(void)
{
	json_t *d = state_get("disks");
	size_t n = json_array_size(d);

	json_decref(d);
	return n;
}

START_TEST(test_add_list_remove)
{
	json_t *r;
	int code;

	r = call("disk.add", "{\"name\":\"m0\",\"backend\":\"mem\",\"size\":\"1M\",\"block_size\":4096}", &code);
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(json_string_value(json_object_get(r, "backend")), "mem");
	ck_assert_int_eq(json_integer_value(json_object_get(r, "block_size")), 4096);
	json_decref(r);
	ck_assert_ptr_nonnull(blkdev_find("m0"));
	ck_assert_int_eq(saved_disks(), 1);

	r = call("disk.list", "{}", &code);
	ck_assert_int_eq(json_array_size(r), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(r, 0), "name")), "m0");
	ck_assert(json_is_null(json_object_get(json_array_get(r, 0), "claimed_by")));
	json_decref(r);

	/* the same name again, bad params: refused, nothing changes */
	ck_assert_ptr_null(call("disk.add", "{\"name\":\"m0\",\"backend\":\"mem\",\"size\":4096}", &code));
	ck_assert_int_eq(code, RPC_ERR_EXISTS);
	ck_assert_ptr_null(call("disk.add", "{\"name\":\"m1\",\"backend\":\"mem\"}", &code));
	ck_assert_int_eq(code, RPC_INVALID_PARAMS);
	ck_assert_ptr_null(call("disk.add", "{\"name\":\"m1\",\"backend\":\"mem\",\"size\":4096,\"path\":\"/x\"}", &code));
	ck_assert_int_eq(code, RPC_INVALID_PARAMS);
	ck_assert_ptr_null(call("disk.add", "{\"name\":\"f1\",\"path\":\"rel.img\",\"size\":4096}", &code));
	ck_assert_int_eq(code, RPC_INVALID_PARAMS);
	ck_assert_ptr_null(call("disk.add", "{\"name\":\"m1\",\"backend\":\"mem\",\"size\":4096,\"block_size\":1000}", &code));
	ck_assert_int_eq(code, RPC_INVALID_PARAMS);
	ck_assert_ptr_null(blkdev_find("m1"));
	ck_assert_int_eq(saved_disks(), 1);

	r = call("disk.remove", "{\"name\":\"m0\"}", &code);
	ck_assert_ptr_nonnull(r);
	json_decref(r);
	ck_assert_ptr_null(blkdev_find("m0"));
	ck_assert_int_eq(saved_disks(), 0);
	ck_assert_ptr_null(call("disk.remove", "{\"name\":\"m0\"}", &code));
	ck_assert_int_eq(code, RPC_ERR_NOT_FOUND);
}
END_TEST

START_TEST(test_claimed_not_removed)
{
	json_t *r;
	int code;

	r = call("disk.add", "{\"name\":\"m0\",\"backend\":\"null\",\"size\":\"1G\"}", &code);
	json_decref(r);
	ck_assert_int_eq(blkdev_claim(blkdev_find("m0"), "pool1"), 0);
	r = call("disk.list", "{}", &code);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(r, 0), "claimed_by")), "pool1");
	json_decref(r);
	ck_assert_ptr_null(call("disk.remove", "{\"name\":\"m0\"}", &code));
	ck_assert_int_eq(code, RPC_ERR_BUSY);
	ck_assert_ptr_nonnull(blkdev_find("m0"));
	ck_assert_int_eq(saved_disks(), 1);
	blkdev_release(blkdev_find("m0"), "pool1");
	r = call("disk.remove", "{\"name\":\"m0\"}", &code);
	ck_assert_ptr_nonnull(r);
	json_decref(r);
}
END_TEST

START_TEST(test_file_disk_and_restore)
{
	char params[512], path[256];
	json_t *r, *d;
	int code;
	size_t i;

	snprintf(path, sizeof(path), "%s/f.img", dir);
	snprintf(params, sizeof(params), "{\"name\":\"f0\",\"path\":\"%s\",\"size\":\"4M\",\"backend\":\"psync\"}", path);
	r = call("disk.add", params, &code);
	ck_assert_msg(r != NULL, "disk.add of a file: code %d", code);
	json_decref(r);
	/* a second name on the same file is refused */
	snprintf(params, sizeof(params), "{\"name\":\"f1\",\"path\":\"%s\"}", path);
	ck_assert_ptr_null(call("disk.add", params, &code));
	ck_assert_int_eq(code, RPC_ERR_BUSY);
	r = call("disk.add", "{\"name\":\"m0\",\"backend\":\"mem\",\"size\":\"1M\",\"readonly\":true}", &code);
	json_decref(r);

	/* as after a restart */
	disk_close_all();
	ck_assert_ptr_null(blkdev_find("f0"));
	disk_restore();
	r = call("disk.list", "{}", &code);
	ck_assert_int_eq(json_array_size(r), 2);
	json_array_foreach(r, i, d) {
		ck_assert_str_eq(json_string_value(json_object_get(d, "state")), "open");
		if (!strcmp(json_string_value(json_object_get(d, "name")), "m0"))
			ck_assert(json_is_true(json_object_get(d, "readonly")));
		else
			ck_assert_int_eq(json_integer_value(json_object_get(d, "size")), 4 << 20);
	}
	json_decref(r);

	/* the file goes away: it comes back failed, is not recreated, can be removed */
	disk_close_all();
	ck_assert_int_eq(unlink(path), 0);
	disk_restore();
	ck_assert_int_eq(access(path, F_OK), -1);
	r = call("disk.list", "{}", &code);
	d = json_array_get(r, 0);
	ck_assert_str_eq(json_string_value(json_object_get(d, "name")), "f0");
	ck_assert_str_eq(json_string_value(json_object_get(d, "state")), "failed");
	ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(d, "error")), "No such file"));
	json_decref(r);
	r = call("disk.remove", "{\"name\":\"f0\"}", &code);
	ck_assert_ptr_nonnull(r);
	json_decref(r);
	ck_assert_int_eq(saved_disks(), 1);
}
END_TEST

START_TEST(test_failed_save_changes_nothing)
{
	char p[256];
	json_t *r;
	int code;

	r = call("disk.add", "{\"name\":\"m0\",\"backend\":\"mem\",\"size\":\"1M\"}", &code);
	json_decref(r);
	/* the state directory goes away: saves fail */
	snprintf(p, sizeof(p), "%s/%s", dir, STATE_FILE);
	ck_assert_int_eq(unlink(p), 0);
	ck_assert_int_eq(rmdir(dir), 0);
	ck_assert_ptr_null(call("disk.add", "{\"name\":\"m1\",\"backend\":\"mem\",\"size\":\"1M\"}", &code));
	ck_assert_int_eq(code, RPC_ERR_IO);
	ck_assert_ptr_null(blkdev_find("m1"));
	ck_assert_ptr_null(call("disk.remove", "{\"name\":\"m0\"}", &code));
	ck_assert_int_eq(code, RPC_ERR_IO);
	ck_assert_ptr_nonnull(blkdev_find("m0"));
	ck_assert_int_eq(mkdir(dir, 0700), 0);
}
END_TEST

static Suite *disk_suite(void)
{
	Suite *s = suite_create("disk_rpc");
	TCase *tc = tcase_create("disks");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_add_list_remove);
	tcase_add_test(tc, test_claimed_not_removed);
	tcase_add_test(tc, test_file_disk_and_restore);
	tcase_add_test(tc, test_failed_save_changes_nothing);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(disk_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
