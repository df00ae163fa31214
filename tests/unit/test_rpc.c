/* SPDX-License-Identifier: MIT */
/*
 * JSON-RPC 2.0 dispatch (daemon/rpc.c): request validation, error codes,
 * notifications and batches (supported), and the param helpers.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sand/rpc.h"

static int calls;

/* echo: returns its params; fails when asked to */
static json_t *echo(json_t *params, void *arg, struct rpc_err *err)
{
	calls++;
	if (json_object_get(params, "fail"))
		return rpc_error_errno(err, -EBUSY, "disk '%s' is claimed", "d0");
	return json_incref(params);
}

static int changed;

/* add: validates every param first, changes state only then */
static json_t *add(json_t *params, void *arg, struct rpc_err *err)
{
	const char *name = NULL, *mode = "auto";
	uint64_t size = 0;
	uint32_t bs = 512;
	bool ro = false;

	if (rpc_params_only(params, err, "name", "size", "block_size", "readonly", "mode", NULL) ||
	    rpc_param_name(params, "name", RPC_REQUIRED, &name, err) ||
	    rpc_param_size(params, "size", RPC_REQUIRED, &size, err) ||
	    rpc_param_u32(params, "block_size", RPC_OPTIONAL, &bs, err) ||
	    rpc_param_bool(params, "readonly", RPC_OPTIONAL, &ro, err) ||
	    rpc_param_enum(params, "mode", RPC_OPTIONAL, &mode, err, "auto", "fast", NULL))
		return NULL;
	changed++;
	return json_pack("{s:s,s:I,s:i,s:b,s:s}", "name", name, "size", (json_int_t)size,
			 "block_size", (int)bs, "readonly", ro, "mode", mode);
}

static void setup(void)
{
	calls = changed = 0;
	ck_assert_int_eq(rpc_register("echo", echo, NULL), 0);
	ck_assert_int_eq(rpc_register("add", add, NULL), 0);
}

static void teardown(void)
{
	rpc_unregister_all();
}

/* Send a line, get the parsed response (NULL when none). */
static json_t *req(const char *line)
{
	size_t n = 0;
	char *out = rpc_handle_line(line, strlen(line), &n);
	json_t *r;

	if (!out)
		return NULL;
	ck_assert_uint_gt(n, 0);
	ck_assert_int_eq(out[n - 1], '\n');
	ck_assert_ptr_null(memchr(out, '\n', n - 1));	/* one line */
	r = json_loads(out, 0, NULL);
	ck_assert_ptr_nonnull(r);
	free(out);
	return r;
}

static int err_code(json_t *r)
{
	json_t *e = json_object_get(r, "error");

	ck_assert_msg(e != NULL, "expected an error response");
	ck_assert_ptr_null(json_object_get(r, "result"));
	ck_assert_str_eq(json_string_value(json_object_get(r, "jsonrpc")), "2.0");
	ck_assert(json_is_string(json_object_get(e, "message")));
	return (int)json_integer_value(json_object_get(e, "code"));
}

static const char *err_msg(json_t *r)
{
	return json_string_value(json_object_get(json_object_get(r, "error"), "message"));
}

START_TEST(test_success)
{
	json_t *r = req("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"a\":1},\"id\":7}");

	ck_assert_int_eq(json_integer_value(json_object_get(r, "id")), 7);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r, "result"), "a")), 1);
	ck_assert_ptr_null(json_object_get(r, "error"));
	json_decref(r);
	/* string id, no params: params is {} */
	r = req("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":\"x\"}");
	ck_assert_str_eq(json_string_value(json_object_get(r, "id")), "x");
	ck_assert(json_is_object(json_object_get(r, "result")));
	ck_assert_int_eq(json_object_size(json_object_get(r, "result")), 0);
	json_decref(r);
	/* null params too; null id is still answered */
	r = req("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":null,\"id\":null}");
	ck_assert(json_is_null(json_object_get(r, "id")));
	ck_assert(json_is_object(json_object_get(r, "result")));
	json_decref(r);
	ck_assert_int_eq(calls, 3);
}
END_TEST

START_TEST(test_parse_error)
{
	static const char *bad[] = { "not json", "{\"jsonrpc\":", "{}}", "{\"a\":1,\"a\":2}", "\xff\xfe" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *r = req(bad[i]);

		ck_assert_int_eq(err_code(r), RPC_PARSE_ERROR);
		ck_assert(json_is_null(json_object_get(r, "id")));
		json_decref(r);
	}
	ck_assert_int_eq(calls, 0);
}
END_TEST

START_TEST(test_invalid_request)
{
	static const char *bad[] = {
		"1", "\"echo\"", "null", "true",
		"{\"method\":\"echo\",\"id\":1}",			/* no jsonrpc */
		"{\"jsonrpc\":\"1.0\",\"method\":\"echo\",\"id\":1}",
		"{\"jsonrpc\":2.0,\"method\":\"echo\",\"id\":1}",
		"{\"jsonrpc\":\"2.0\",\"id\":1}",			/* no method */
		"{\"jsonrpc\":\"2.0\",\"method\":5,\"id\":1}",
		"{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":{}}",	/* bad id */
		"{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":[1]}",
		"{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":true}",
		"{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1,\"extra\":1}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *r = req(bad[i]);

		ck_assert_msg(r != NULL, "no response to %s", bad[i]);
		ck_assert_msg(err_code(r) == RPC_INVALID_REQUEST, "%s: code %d", bad[i], err_code(r));
		json_decref(r);
	}
	ck_assert_int_eq(calls, 0);
}
END_TEST

START_TEST(test_method_not_found)
{
	json_t *r = req("{\"jsonrpc\":\"2.0\",\"method\":\"nope.nope\",\"id\":3}");

	ck_assert_int_eq(err_code(r), RPC_METHOD_NOT_FOUND);
	ck_assert_ptr_nonnull(strstr(err_msg(r), "nope.nope"));
	ck_assert_int_eq(json_integer_value(json_object_get(r, "id")), 3);
	json_decref(r);
}
END_TEST

START_TEST(test_params_not_object)
{
	json_t *r = req("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":[1,2],\"id\":1}");

	ck_assert_int_eq(err_code(r), RPC_INVALID_PARAMS);
	json_decref(r);
	r = req("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":\"x\",\"id\":1}");
	ck_assert_int_eq(err_code(r), RPC_INVALID_PARAMS);
	json_decref(r);
	ck_assert_int_eq(calls, 0);
}
END_TEST

START_TEST(test_notification)
{
	/* no id: run, but no response, even on error or unknown method */
	ck_assert_ptr_null(req("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{}}"));
	ck_assert_int_eq(calls, 1);
	ck_assert_ptr_null(req("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"fail\":1}}"));
	ck_assert_int_eq(calls, 2);
	ck_assert_ptr_null(req("{\"jsonrpc\":\"2.0\",\"method\":\"nope\"}"));
}
END_TEST

START_TEST(test_app_error)
{
	json_t *r = req("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"fail\":1},\"id\":1}");
	json_t *data;

	ck_assert_int_eq(err_code(r), RPC_ERR_BUSY);
	ck_assert_ptr_nonnull(strstr(err_msg(r), "disk 'd0' is claimed"));
	data = json_object_get(json_object_get(r, "error"), "data");
	ck_assert_str_eq(json_string_value(json_object_get(data, "errno")), "EBUSY");
	json_decref(r);
	ck_assert_int_eq(rpc_errno_code(-EEXIST), RPC_ERR_EXISTS);
	ck_assert_int_eq(rpc_errno_code(-ENOENT), RPC_ERR_NOT_FOUND);
	ck_assert_int_eq(rpc_errno_code(-EIO), RPC_ERR_IO);
	ck_assert_int_eq(rpc_errno_code(-ENOSYS), RPC_ERR_NOT_SUPPORTED);
	ck_assert_int_eq(rpc_errno_code(-EPERM), RPC_ERR_FAILED);
}
END_TEST

START_TEST(test_batch)
{
	json_t *r = req("[{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"n\":1},\"id\":1},"
			"{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"n\":2}},"
			"{\"jsonrpc\":\"2.0\",\"method\":\"nope\",\"id\":3},"
			"5]");

	ck_assert(json_is_array(r));
	ck_assert_int_eq(json_array_size(r), 3);	/* the notification is not answered */
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(r, 0), "id")), 1);
	ck_assert_int_eq(err_code(json_array_get(r, 1)), RPC_METHOD_NOT_FOUND);
	ck_assert_int_eq(err_code(json_array_get(r, 2)), RPC_INVALID_REQUEST);
	json_decref(r);
	ck_assert_int_eq(calls, 2);
	/* empty batch: one invalid request error */
	r = req("[]");
	ck_assert(json_is_object(r));
	ck_assert_int_eq(err_code(r), RPC_INVALID_REQUEST);
	json_decref(r);
	/* only notifications: nothing */
	ck_assert_ptr_null(req("[{\"jsonrpc\":\"2.0\",\"method\":\"echo\"}]"));
	ck_assert_int_eq(calls, 3);
}
END_TEST

START_TEST(test_register)
{
	ck_assert_int_eq(rpc_register("echo", echo, NULL), -EEXIST);
	ck_assert_int_eq(rpc_register("", echo, NULL), -EINVAL);
	ck_assert_int_eq(rpc_register("x", NULL, NULL), -EINVAL);
}
END_TEST

/* A call to add with params P (JSON text): the error code (0: success). */
static int add_with(const char *p, json_t **result, char *msg, size_t len)
{
	char line[1024];
	json_t *r;
	int code = 0;

	snprintf(line, sizeof(line), "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":%s,\"id\":1}", p);
	r = req(line);
	if (json_object_get(r, "error")) {
		code = err_code(r);
		if (msg)
			snprintf(msg, len, "%s", err_msg(r));
	} else if (result) {
		*result = json_incref(json_object_get(r, "result"));
	}
	json_decref(r);
	return code;
}

START_TEST(test_params_ok)
{
	json_t *res = NULL;

	ck_assert_int_eq(add_with("{\"name\":\"d0\",\"size\":\"10G\"}", &res, NULL, 0), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(res, "size")), 10ll << 30);
	ck_assert_int_eq(json_integer_value(json_object_get(res, "block_size")), 512);	/* default kept */
	ck_assert(json_is_false(json_object_get(res, "readonly")));
	ck_assert_str_eq(json_string_value(json_object_get(res, "mode")), "auto");
	json_decref(res);
	ck_assert_int_eq(add_with("{\"name\":\"a-b_c.d:1\",\"size\":4096,\"block_size\":4096,"
				  "\"readonly\":true,\"mode\":\"fast\",\"mode\":\"fast\"}",
				  &res, NULL, 0), RPC_PARSE_ERROR);	/* duplicate key */
	ck_assert_int_eq(add_with("{\"name\":\"a-b_c.d:1\",\"size\":4096,\"block_size\":4096,"
				  "\"readonly\":true,\"mode\":\"fast\"}", &res, NULL, 0), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(res, "block_size")), 4096);
	ck_assert(json_is_true(json_object_get(res, "readonly")));
	ck_assert_str_eq(json_string_value(json_object_get(res, "mode")), "fast");
	json_decref(res);
	/* null for an optional param means absent */
	ck_assert_int_eq(add_with("{\"name\":\"x\",\"size\":1,\"readonly\":null}", NULL, NULL, 0), 0);
	ck_assert_int_eq(changed, 3);
}
END_TEST

START_TEST(test_params_bad)
{
	static const struct { const char *params, *field; } cases[] = {
		{ "{\"size\":1}", "'name' is required" },
		{ "{\"name\":null,\"size\":1}", "'name' is required" },
		{ "{\"name\":5,\"size\":1}", "'name' must be a string" },
		{ "{\"name\":\"\",\"size\":1}", "'name' must not be empty" },
		{ "{\"name\":\"a b\",\"size\":1}", "'name' must be" },
		{ "{\"name\":\"-x\",\"size\":1}", "'name' must be" },
		{ "{\"name\":\"x\"}", "'size' is required" },
		{ "{\"name\":\"x\",\"size\":-1}", "'size' must not be negative" },
		{ "{\"name\":\"x\",\"size\":1.5}", "'size' must be an integer" },
		{ "{\"name\":\"x\",\"size\":\"10Q\"}", "'size' is not a size" },
		{ "{\"name\":\"x\",\"size\":true}", "'size' must be" },
		{ "{\"name\":\"x\",\"size\":1,\"block_size\":\"4K\"}", "'block_size' must be an integer" },
		{ "{\"name\":\"x\",\"size\":1,\"block_size\":4294967296}", "'block_size' must be below" },
		{ "{\"name\":\"x\",\"size\":1,\"readonly\":1}", "'readonly' must be true or false" },
		{ "{\"name\":\"x\",\"size\":1,\"readonly\":\"yes\"}", "'readonly' must be true or false" },
		{ "{\"name\":\"x\",\"size\":1,\"mode\":\"slow\"}", "'mode' must be one of: auto, fast" },
		{ "{\"name\":\"x\",\"size\":1,\"colour\":\"red\"}", "'colour' is not a known field" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char msg[RPC_MSG_MAX] = "";
		int code = add_with(cases[i].params, NULL, msg, sizeof(msg));

		ck_assert_msg(code == RPC_INVALID_PARAMS, "%s: code %d", cases[i].params, code);
		ck_assert_msg(strstr(msg, cases[i].field), "%s: message '%s' lacks '%s'",
			      cases[i].params, msg, cases[i].field);
	}
	ck_assert_int_eq(changed, 0);	/* a bad request changes nothing */
}
END_TEST

START_TEST(test_param_array_object)
{
	json_t *p = json_pack("{s:[i,i],s:{s:i},s:s}", "list", 1, 2, "obj", "a", 1, "str", "x");
	struct rpc_err err = { 0 };
	json_t *a = NULL, *o = NULL;

	ck_assert_int_eq(rpc_param_array(p, "list", RPC_REQUIRED, &a, &err), 0);
	ck_assert_int_eq(json_array_size(a), 2);
	ck_assert_int_eq(rpc_param_object(p, "obj", RPC_REQUIRED, &o, &err), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(o, "a")), 1);
	ck_assert_int_eq(rpc_param_array(p, "obj", RPC_REQUIRED, &a, &err), -1);
	ck_assert_int_eq(err.code, RPC_INVALID_PARAMS);
	ck_assert_ptr_nonnull(strstr(err.message, "'obj' must be an array"));
	json_decref(err.data);
	err.data = NULL;
	ck_assert_int_eq(rpc_param_object(p, "str", RPC_REQUIRED, &o, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.message, "'str' must be an object"));
	json_decref(err.data);
	err.data = NULL;
	a = NULL;
	ck_assert_int_eq(rpc_param_array(p, "missing", RPC_OPTIONAL, &a, &err), 0);
	ck_assert_ptr_null(a);
	ck_assert_int_eq(rpc_param_array(p, "missing", RPC_REQUIRED, &a, &err), -1);
	json_decref(err.data);
	json_decref(p);
}
END_TEST

START_TEST(test_name_valid)
{
	ck_assert(rpc_name_valid("d0"));
	ck_assert(rpc_name_valid("iqn.2026-11.sand:vol1"));
	ck_assert(!rpc_name_valid(""));
	ck_assert(!rpc_name_valid(".hidden"));
	ck_assert(!rpc_name_valid("a/b"));
	/* one '@' inside: a snapshot */
	ck_assert(rpc_name_valid("vol1@monday"));
	ck_assert(!rpc_name_valid("@snap"));
	ck_assert(!rpc_name_valid("vol1@"));
	ck_assert(!rpc_name_valid("a@b@c"));
	ck_assert(!rpc_name_valid("vol1@.x"));
	ck_assert(!rpc_name_valid("0123456789012345678901234567890123456789012345678901234567890123"));
}
END_TEST

START_TEST(test_error_line)
{
	size_t n = 0;
	char *line = rpc_error_line(RPC_INVALID_REQUEST, "line too long", &n);
	json_t *r;

	ck_assert_ptr_nonnull(line);
	ck_assert_int_eq(line[n - 1], '\n');
	r = json_loads(line, 0, NULL);
	ck_assert_int_eq(err_code(r), RPC_INVALID_REQUEST);
	ck_assert(json_is_null(json_object_get(r, "id")));
	json_decref(r);
	free(line);
}
END_TEST

static Suite *rpc_suite(void)
{
	Suite *s = suite_create("rpc");
	TCase *tc = tcase_create("dispatch");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_success);
	tcase_add_test(tc, test_parse_error);
	tcase_add_test(tc, test_invalid_request);
	tcase_add_test(tc, test_method_not_found);
	tcase_add_test(tc, test_params_not_object);
	tcase_add_test(tc, test_notification);
	tcase_add_test(tc, test_app_error);
	tcase_add_test(tc, test_batch);
	tcase_add_test(tc, test_register);
	tcase_add_test(tc, test_params_ok);
	tcase_add_test(tc, test_params_bad);
	tcase_add_test(tc, test_param_array_object);
	tcase_add_test(tc, test_name_valid);
	tcase_add_test(tc, test_error_line);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(rpc_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
