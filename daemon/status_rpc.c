/* SPDX-License-Identifier: MIT */
/*
 * status: what the daemon is and what this host can do.
 */
#include <libaio.h>
#include <liburing.h>
#include <unistd.h>
#include "sand/common.h"
#include "sand/daemon.h"
#include "sand/ev.h"
#include "sand/log.h"
#include "sand/reactor.h"
#include "sand/rpc.h"

static bool probe_uring(void)
{
	struct io_uring ring;

	if (io_uring_queue_init(2, &ring, 0) < 0)
		return false;
	io_uring_queue_exit(&ring);
	return true;
}

static bool probe_aio(void)
{
	io_context_t ctx = 0;

	if (io_setup(1, &ctx) < 0)
		return false;
	io_destroy(ctx);
	return true;
}

/* The disk backends this host supports, in order of preference. */
/* Probed once (setting up a ring takes tens of ms on some kernels). */
static json_t *status_backends(void)
{
	static int uring = -1, aio = -1;
	json_t *a = json_array();

	if (uring < 0)
		uring = probe_uring();
	if (aio < 0)
		aio = probe_aio();
	if (uring)
		json_array_append_new(a, json_string("uring"));
	if (aio)
		json_array_append_new(a, json_string("aio"));
	json_array_append_new(a, json_string("psync"));
	json_array_append_new(a, json_string("mem"));
	json_array_append_new(a, json_string("null"));
	return a;
}

static json_t *status(json_t *params, void *arg, struct rpc_err *err)
{
	struct ev_loop *l = reactor_loop(0);
	char debug[128];
	uint64_t up = daemon_uptime_ns();

	if (rpc_params_only(params, err, NULL))
		return NULL;
	log_get_debug(debug, sizeof(debug));
	return json_pack("{s:s,s:i,s:I,s:I,s:s,s:s,s:{s:i,s:s},s:o,s:s}",
			 "version", SAND_VERSION,
			 "pid", (int)getpid(),
			 "uptime", (json_int_t)(up / 1000000000),
			 "uptime_ms", (json_int_t)(up / 1000000),
			 "state_dir", daemon_state_dir(),
			 "socket", daemon_control_path(),
			 "reactors",
			 "count", (int)reactor_count(),
			 "loop", l ? ev_backend_name(ev_loop_backend(l)) : "none",
			 "backends", status_backends(),
			 "debug", debug);
}

void status_rpc_init(void)
{
	rpc_register("status", status, NULL);
}
