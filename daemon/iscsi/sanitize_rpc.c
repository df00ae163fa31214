/* SPDX-License-Identifier: MIT */
/*
 * iscsi.sanitize: the pace of SANITIZE (proto/scsi/sanitize.c), the most
 * bytes a second a sanitize writes, so that erasing one LU does not take
 * every disk's bandwidth from the others; 0 (the default) for no limit.
 * Read when a sanitize starts. Kept in the "iscsi_sanitize" section of the
 * state file:
 *
 *	{ "rate": 104857600 }
 *
 * Control thread only.
 */
#include <stdio.h>
#include "sand/log.h"
#include "sand/rpc.h"
#include "sand/state.h"
#include "daemon/iscsi/iscsi_int.h"
#include "proto/scsi/sanitize.h"

#define SECTION	"iscsi_sanitize"

static uint64_t rate;		/* as set last */

static json_t *sanitize(json_t *params, void *arg, struct rpc_err *err)
{
	uint64_t r = rate;
	json_t *s;
	int rc;

	if (rpc_params_only(params, err, "rate", NULL) ||
	    rpc_param_size(params, "rate", RPC_OPTIONAL, &r, err))
		return NULL;
	if (r > INT64_MAX)
		return rpc_error(err, RPC_INVALID_PARAMS, "rate is too large");
	if (json_object_get(params, "rate")) {
		s = json_pack("{s:I}", "rate", (json_int_t)r);
		rc = state_set(SECTION, s);
		json_decref(s);
		if (rc)
			return rpc_error_errno(err, rc, "saving the state");
		rate = r;
		scsi_sanitize_set_rate(r);
		LOG_INFO(LS_ISCSI, "sanitize: at most %llu bytes a second (0: no limit)",
			 (unsigned long long)r);
	}
	return json_pack("{s:I}", "rate", (json_int_t)rate);
}

void iscsi_sanitize_rpc_init(void)
{
	json_t *s = state_get(SECTION);
	json_t *v = json_object_get(s, "rate");

	if (s && (!json_is_integer(v) || json_integer_value(v) < 0)) {
		LOG_ERR(LS_ISCSI, "state: the %s section is malformed; ignored", SECTION);
	} else if (s) {
		rate = (uint64_t)json_integer_value(v);
		scsi_sanitize_set_rate(rate);
	}
	json_decref(s);
	rpc_register("iscsi.sanitize", sanitize, NULL);
}
