/* SPDX-License-Identifier: MIT */
/*
 * JSON-RPC 2.0 for the control plane.
 *
 * Every module adds its own methods from its own *_rpc.c file with
 * rpc_register(), from an init function that daemon/main.c calls at start-up
 * (see rpc_modules[] there). Handlers run on the control thread, one at a
 * time, and may block briefly (reactor_call, blk_sync_io).
 *
 * A handler gets the request's params (always an object: {} when the
 * request had none) and returns a new reference to its result, or NULL after
 * filling *err (use rpc_error() and friends, which return NULL). A handler
 * that fails must have changed nothing.
 *
 * Params are checked in one line each:
 *
 *	const char *name;
 *	uint64_t size = 0;
 *	bool ro = false;
 *
 *	if (rpc_params_only(params, err, "name", "size", "readonly", NULL) ||
 *	    rpc_param_str(params, "name", RPC_REQUIRED, &name, err) ||
 *	    rpc_param_size(params, "size", RPC_OPTIONAL, &size, err) ||
 *	    rpc_param_bool(params, "readonly", RPC_OPTIONAL, &ro, err))
 *		return NULL;
 *
 * An optional param that is absent (or null) leaves *out as it was, so set
 * the default first. Each helper returns 0, or -1 with *err filled with
 * -32602 and a message naming the field.
 *
 * Wire format (rpc_handle_line): one JSON text per line. Batches (arrays)
 * are supported as JSON-RPC 2.0 says: responses in one array, none for
 * notifications, an empty array is an invalid request.
 */
#ifndef SAND_RPC_H
#define SAND_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

/* Standard codes */
#define RPC_PARSE_ERROR		(-32700)
#define RPC_INVALID_REQUEST	(-32600)
#define RPC_METHOD_NOT_FOUND	(-32601)
#define RPC_INVALID_PARAMS	(-32602)
#define RPC_INTERNAL_ERROR	(-32603)
/* Application codes: -32000 .. -32099 */
#define RPC_ERR_FAILED		(-32000)	/* generic; data.errno says more */
#define RPC_ERR_EXISTS		(-32001)	/* the name is taken */
#define RPC_ERR_NOT_FOUND	(-32002)	/* no such object */
#define RPC_ERR_BUSY		(-32003)	/* in use (claimed, exported, open) */
#define RPC_ERR_IO		(-32004)	/* the disk or the state file failed */
#define RPC_ERR_NOT_SUPPORTED	(-32005)	/* not on this host/build */

#define RPC_MSG_MAX		512

struct rpc_err {
	int	code;
	char	message[RPC_MSG_MAX];
	json_t	*data;		/* optional, owned: freed by the dispatcher */
};

typedef json_t *(*rpc_fn)(json_t *params, void *arg, struct rpc_err *err);

/* Register a method. -EEXIST if taken, -EINVAL for a bad name. */
int rpc_register(const char *method, rpc_fn fn, void *arg);
/* Forget every method (at exit). */
void rpc_unregister_all(void);
/* For listings: calls fn for each method in registration order. */
void rpc_foreach_method(void (*fn)(const char *method, void *arg), void *arg);

/* Fill *err and return NULL, so handlers can `return rpc_error(...)`. */
json_t *rpc_error(struct rpc_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* From a -errno: picks the application code (-EEXIST: RPC_ERR_EXISTS ...),
 * appends ": strerror" to the message and sets data.errno to its name. */
json_t *rpc_error_errno(struct rpc_err *err, int neg_errno, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int rpc_errno_code(int neg_errno);

/* ---- params ---- */
enum rpc_need { RPC_OPTIONAL = 0, RPC_REQUIRED = 1 };

/* Refuse any field not in the NULL-terminated list. */
int rpc_params_only(json_t *params, struct rpc_err *err, ...) __attribute__((sentinel));
/* A non-empty string. */
int rpc_param_str(json_t *params, const char *key, enum rpc_need need,
		  const char **out, struct rpc_err *err);
/* A string that is one of the NULL-terminated choices. */
int rpc_param_enum(json_t *params, const char *key, enum rpc_need need,
		   const char **out, struct rpc_err *err, ...) __attribute__((sentinel));
int rpc_param_bool(json_t *params, const char *key, enum rpc_need need,
		   bool *out, struct rpc_err *err);
/* A non-negative integer. */
int rpc_param_u64(json_t *params, const char *key, enum rpc_need need,
		  uint64_t *out, struct rpc_err *err);
int rpc_param_u32(json_t *params, const char *key, enum rpc_need need,
		  uint32_t *out, struct rpc_err *err);
/* Bytes: a non-negative integer or a size string ("10G", see parse_size). */
int rpc_param_size(json_t *params, const char *key, enum rpc_need need,
		   uint64_t *out, struct rpc_err *err);
/* An array or an object (borrowed: valid while params is). */
int rpc_param_array(json_t *params, const char *key, enum rpc_need need,
		    json_t **out, struct rpc_err *err);
int rpc_param_object(json_t *params, const char *key, enum rpc_need need,
		     json_t **out, struct rpc_err *err);
/* A name for objects (disks, pools, volumes, exports): 1..63 characters of
 * [A-Za-z0-9._:-], not starting with '.' or '-'; one '@' inside names a
 * snapshot (VOL@SNAP), so that exports take snapshots too. */
int rpc_param_name(json_t *params, const char *key, enum rpc_need need,
		   const char **out, struct rpc_err *err);
bool rpc_name_valid(const char *s);

/* ---- dispatch ---- */

/* One parsed request (or batch): returns the response to send (a new
 * reference), or NULL when nothing is to be sent (notifications). */
json_t *rpc_handle(json_t *req);
/* One line of text (without its newline): returns a malloc'd response line
 * ending with '\n' and its length, or NULL when nothing is to be sent. */
char *rpc_handle_line(const char *buf, size_t len, size_t *outlen);
/* An error response with id null, as a malloc'd line (for transport-level
 * errors such as an over-long line). */
char *rpc_error_line(int code, const char *message, size_t *outlen);

#endif
