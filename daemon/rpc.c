/* SPDX-License-Identifier: MIT */
/*
 * JSON-RPC 2.0 dispatch: the method table, request validation, error
 * responses and the param helpers. No sockets here (daemon/control.c is the
 * transport), so all of it is testable from a unit test.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/common.h"
#include "sand/log.h"
#include "sand/rpc.h"

struct rpc_method {
	char	*name;
	rpc_fn	fn;
	void	*arg;
};

static pthread_mutex_t methods_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rpc_method *methods;
static size_t nmethods, methods_cap;

static struct rpc_method *find_locked(const char *name)
{
	for (size_t i = 0; i < nmethods; i++)
		if (!strcmp(methods[i].name, name))
			return &methods[i];
	return NULL;
}

int rpc_register(const char *method, rpc_fn fn, void *arg)
{
	int rc = 0;

	if (!method || !*method || !fn)
		return -EINVAL;
	pthread_mutex_lock(&methods_lock);
	if (find_locked(method)) {
		rc = -EEXIST;
		goto unlock;
	}
	if (nmethods == methods_cap) {
		size_t cap = methods_cap ? methods_cap * 2 : 32;
		struct rpc_method *m = realloc(methods, cap * sizeof(*m));

		if (!m) {
			rc = -ENOMEM;
			goto unlock;
		}
		methods = m;
		methods_cap = cap;
	}
	methods[nmethods].name = strdup(method);
	if (!methods[nmethods].name) {
		rc = -ENOMEM;
		goto unlock;
	}
	methods[nmethods].fn = fn;
	methods[nmethods].arg = arg;
	nmethods++;
unlock:
	pthread_mutex_unlock(&methods_lock);
	if (rc)
		LOG_ERR(LS_RPC, "registering method %s: %s", method, strerror(-rc));
	return rc;
}

void rpc_unregister_all(void)
{
	pthread_mutex_lock(&methods_lock);
	for (size_t i = 0; i < nmethods; i++)
		free(methods[i].name);
	free(methods);
	methods = NULL;
	nmethods = methods_cap = 0;
	pthread_mutex_unlock(&methods_lock);
}

void rpc_foreach_method(void (*fn)(const char *method, void *arg), void *arg)
{
	pthread_mutex_lock(&methods_lock);
	for (size_t i = 0; i < nmethods; i++)
		fn(methods[i].name, arg);
	pthread_mutex_unlock(&methods_lock);
}

/* ---------------------------------------------------------------- errors */

static void err_vset(struct rpc_err *err, int code, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
static void err_vset(struct rpc_err *err, int code, const char *fmt, va_list ap)
{
	err->code = code;
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
}

json_t *rpc_error(struct rpc_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	err_vset(err, code, fmt, ap);
	va_end(ap);
	return NULL;
}

int rpc_errno_code(int neg_errno)
{
	switch (-neg_errno) {
	case EEXIST: return RPC_ERR_EXISTS;
	case ENOENT: case ENODEV: case ENXIO: return RPC_ERR_NOT_FOUND;
	case EBUSY: return RPC_ERR_BUSY;
	case EIO: case ENOSPC: case EROFS: return RPC_ERR_IO;
	case ENOSYS: case ENOTSUP: return RPC_ERR_NOT_SUPPORTED;
	case EINVAL: return RPC_INVALID_PARAMS;
	default: return RPC_ERR_FAILED;
	}
}

json_t *rpc_error_errno(struct rpc_err *err, int neg_errno, const char *fmt, ...)
{
	const char *name = strerrorname_np(-neg_errno);
	size_t n;
	va_list ap;

	va_start(ap, fmt);
	err_vset(err, rpc_errno_code(neg_errno), fmt, ap);
	va_end(ap);
	n = strlen(err->message);
	snprintf(err->message + n, sizeof(err->message) - n, ": %s", strerror(-neg_errno));
	json_decref(err->data);
	err->data = json_pack("{s:s}", "errno", name ? name : "unknown");
	return NULL;
}

static int bad_param(struct rpc_err *err, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int bad_param(struct rpc_err *err, const char *key, const char *fmt, ...)
{
	char what[RPC_MSG_MAX - 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	rpc_error(err, RPC_INVALID_PARAMS, "invalid params: '%s' %s", key, what);
	json_decref(err->data);
	err->data = json_pack("{s:s}", "field", key);
	return -1;
}

/* ---------------------------------------------------------------- params */

int rpc_params_only(json_t *params, struct rpc_err *err, ...)
{
	const char *key;
	json_t *v;

	json_object_foreach(params, key, v) {
		const char *k;
		bool ok = false;
		va_list ap;

		va_start(ap, err);
		while ((k = va_arg(ap, const char *)))
			if (!strcmp(k, key)) {
				ok = true;
				break;
			}
		va_end(ap);
		if (!ok)
			return bad_param(err, key, "is not a known field");
	}
	return 0;
}

/* The value, NULL when absent (optional) or -1 via *rc on error. */
static json_t *get(json_t *params, const char *key, enum rpc_need need,
		   struct rpc_err *err, int *rc)
{
	json_t *v = json_object_get(params, key);

	*rc = 0;
	if (!v || json_is_null(v)) {
		if (need == RPC_REQUIRED)
			*rc = bad_param(err, key, "is required");
		return NULL;
	}
	return v;
}

int rpc_param_str(json_t *params, const char *key, enum rpc_need need,
		  const char **out, struct rpc_err *err)
{
	int rc;
	json_t *v = get(params, key, need, err, &rc);

	if (!v)
		return rc;
	if (!json_is_string(v))
		return bad_param(err, key, "must be a string");
	if (!json_string_length(v))
		return bad_param(err, key, "must not be empty");
	if (strlen(json_string_value(v)) != json_string_length(v))
		return bad_param(err, key, "must not contain NUL");
	*out = json_string_value(v);
	return 0;
}

int rpc_param_enum(json_t *params, const char *key, enum rpc_need need,
		   const char **out, struct rpc_err *err, ...)
{
	const char *s = NULL, *c;
	char choices[256] = "";
	size_t used = 0;
	va_list ap;

	if (rpc_param_str(params, key, need, &s, err))
		return -1;
	if (!s)
		return 0;
	va_start(ap, err);
	while ((c = va_arg(ap, const char *))) {
		if (!strcmp(c, s)) {
			va_end(ap);
			*out = c;
			return 0;
		}
		if (used < sizeof(choices)) {
			int n = snprintf(choices + used, sizeof(choices) - used, "%s%s",
					 used ? ", " : "", c);
			used += n > 0 ? (size_t)n : 0;
		}
	}
	va_end(ap);
	return bad_param(err, key, "must be one of: %s (not '%.64s')", choices, s);
}

int rpc_param_bool(json_t *params, const char *key, enum rpc_need need,
		   bool *out, struct rpc_err *err)
{
	int rc;
	json_t *v = get(params, key, need, err, &rc);

	if (!v)
		return rc;
	if (!json_is_boolean(v))
		return bad_param(err, key, "must be true or false");
	*out = json_is_true(v);
	return 0;
}

int rpc_param_u64(json_t *params, const char *key, enum rpc_need need,
		  uint64_t *out, struct rpc_err *err)
{
	int rc;
	json_t *v = get(params, key, need, err, &rc);

	if (!v)
		return rc;
	if (!json_is_integer(v))
		return bad_param(err, key, "must be an integer");
	if (json_integer_value(v) < 0)
		return bad_param(err, key, "must not be negative");
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

int rpc_param_u32(json_t *params, const char *key, enum rpc_need need,
		  uint32_t *out, struct rpc_err *err)
{
	uint64_t v = *out;

	if (rpc_param_u64(params, key, need, &v, err))
		return -1;
	if (v > UINT32_MAX)
		return bad_param(err, key, "must be below 2^32");
	*out = (uint32_t)v;
	return 0;
}

int rpc_param_size(json_t *params, const char *key, enum rpc_need need,
		   uint64_t *out, struct rpc_err *err)
{
	int rc;
	json_t *v = get(params, key, need, err, &rc);

	if (!v)
		return rc;
	if (json_is_string(v)) {
		uint64_t sz;

		if (parse_size(json_string_value(v), &sz))
			return bad_param(err, key, "is not a size: '%.64s'", json_string_value(v));
		*out = sz;
		return 0;
	}
	if (!json_is_integer(v))
		return bad_param(err, key, "must be an integer or a size string such as \"10G\"");
	if (json_integer_value(v) < 0)
		return bad_param(err, key, "must not be negative");
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

int rpc_param_array(json_t *params, const char *key, enum rpc_need need,
		    json_t **out, struct rpc_err *err)
{
	int rc;
	json_t *v = get(params, key, need, err, &rc);

	if (!v)
		return rc;
	if (!json_is_array(v))
		return bad_param(err, key, "must be an array");
	*out = v;
	return 0;
}

int rpc_param_object(json_t *params, const char *key, enum rpc_need need,
		     json_t **out, struct rpc_err *err)
{
	int rc;
	json_t *v = get(params, key, need, err, &rc);

	if (!v)
		return rc;
	if (!json_is_object(v))
		return bad_param(err, key, "must be an object");
	*out = v;
	return 0;
}

bool rpc_name_valid(const char *s)
{
	size_t n = strlen(s);
	unsigned at = 0;

	if (!n || n > 63 || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		/* one '@' inside: a snapshot, VOL@SNAP */
		if (c == '@' && i && i + 1 < n && !at++ && s[i + 1] != '.' && s[i + 1] != '-')
			continue;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == ':'))
			return false;
	}
	return true;
}

int rpc_param_name(json_t *params, const char *key, enum rpc_need need,
		   const char **out, struct rpc_err *err)
{
	const char *s = NULL;

	if (rpc_param_str(params, key, need, &s, err))
		return -1;
	if (!s)
		return 0;
	if (!rpc_name_valid(s))
		return bad_param(err, key, "must be 1-63 characters of A-Z a-z 0-9 . _ : - "
				 "not starting with '.' or '-' (VOL@SNAP for a snapshot)");
	*out = s;
	return 0;
}

/* -------------------------------------------------------------- dispatch */

static json_t *error_response(json_t *id, int code, const char *message, json_t *data)
{
	json_t *e = json_pack("{s:i,s:s}", "code", code, "message", message);

	if (e && data)
		json_object_set(e, "data", data);
	return json_pack("{s:s,s:o,s:O}", "jsonrpc", "2.0", "error", e,
			 "id", id ? id : json_null());
}

static bool id_valid(json_t *id)
{
	return json_is_string(id) || json_is_number(id) || json_is_null(id);
}

static json_t *handle_one(json_t *req)
{
	json_t *id, *jv, *jm, *params, *result, *resp;
	struct rpc_err err = { 0 };
	struct rpc_method m;
	const char *method;
	bool found = false;

	if (!json_is_object(req))
		return error_response(NULL, RPC_INVALID_REQUEST,
				      "invalid request: not a JSON object", NULL);
	id = json_object_get(req, "id");
	if (id && !id_valid(id))
		return error_response(NULL, RPC_INVALID_REQUEST,
				      "invalid request: 'id' must be a string, a number or null", NULL);
	jv = json_object_get(req, "jsonrpc");
	if (!json_is_string(jv) || strcmp(json_string_value(jv), "2.0"))
		return error_response(id, RPC_INVALID_REQUEST,
				      "invalid request: 'jsonrpc' must be \"2.0\"", NULL);
	jm = json_object_get(req, "method");
	if (!json_is_string(jm))
		return error_response(id, RPC_INVALID_REQUEST,
				      "invalid request: 'method' must be a string", NULL);
	method = json_string_value(jm);
	params = json_object_get(req, "params");
	if (params && !json_is_object(params) && !json_is_null(params))
		return error_response(id, RPC_INVALID_PARAMS,
				      "invalid params: 'params' must be an object (by-name)", NULL);
	{
		const char *key;
		json_t *v;

		json_object_foreach(req, key, v)
			if (strcmp(key, "jsonrpc") && strcmp(key, "method") &&
			    strcmp(key, "params") && strcmp(key, "id")) {
				char msg[RPC_MSG_MAX];

				snprintf(msg, sizeof(msg), "invalid request: unknown member '%.64s'", key);
				return error_response(id, RPC_INVALID_REQUEST, msg, NULL);
			}
	}

	pthread_mutex_lock(&methods_lock);
	{
		struct rpc_method *p = find_locked(method);

		if (p) {
			m = *p;
			found = true;
		}
	}
	pthread_mutex_unlock(&methods_lock);
	if (!found) {
		char msg[RPC_MSG_MAX];

		snprintf(msg, sizeof(msg), "method '%.128s' not found", method);
		return id ? error_response(id, RPC_METHOD_NOT_FOUND, msg, NULL) : NULL;
	}

	if (!params || json_is_null(params))
		params = json_object();
	else
		json_incref(params);
	LOG_DBG(LS_RPC, "call %s", method);
	result = m.fn(params, m.arg, &err);
	json_decref(params);
	if (!result) {
		if (!err.code)
			rpc_error(&err, RPC_INTERNAL_ERROR, "internal error in %s", method);
		LOG_DBG(LS_RPC, "%s failed: %d %s", method, err.code, err.message);
		resp = id ? error_response(id, err.code, err.message, err.data) : NULL;
		json_decref(err.data);
		return resp;
	}
	json_decref(err.data);
	if (!id) {
		json_decref(result);
		return NULL;
	}
	return json_pack("{s:s,s:o,s:O}", "jsonrpc", "2.0", "result", result, "id", id);
}

json_t *rpc_handle(json_t *req)
{
	json_t *out;
	size_t i;
	json_t *r;

	if (!json_is_array(req))
		return handle_one(req);
	if (!json_array_size(req))
		return error_response(NULL, RPC_INVALID_REQUEST, "invalid request: empty batch", NULL);
	out = json_array();
	json_array_foreach(req, i, r) {
		json_t *resp = handle_one(r);

		if (resp)
			json_array_append_new(out, resp);
	}
	if (!json_array_size(out)) {
		json_decref(out);
		return NULL;
	}
	return out;
}

static char *dump_line(json_t *resp, size_t *outlen)
{
	char *s = json_dumps(resp, JSON_COMPACT);
	size_t n;
	char *line;

	if (!s)
		return NULL;
	n = strlen(s);
	line = realloc(s, n + 2);
	if (!line) {
		free(s);
		return NULL;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	*outlen = n + 1;
	return line;
}

char *rpc_error_line(int code, const char *message, size_t *outlen)
{
	json_t *resp = error_response(NULL, code, message, NULL);
	char *line = resp ? dump_line(resp, outlen) : NULL;

	json_decref(resp);
	return line;
}

char *rpc_handle_line(const char *buf, size_t len, size_t *outlen)
{
	json_error_t jerr;
	json_t *req, *resp;
	char *line;

	req = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!req) {
		char msg[RPC_MSG_MAX];

		snprintf(msg, sizeof(msg), "parse error at line %d column %d: %s",
			 jerr.line, jerr.column, jerr.text);
		return rpc_error_line(RPC_PARSE_ERROR, msg, outlen);
	}
	resp = rpc_handle(req);
	json_decref(req);
	if (!resp)
		return NULL;
	line = dump_line(resp, outlen);
	json_decref(resp);
	return line;
}
