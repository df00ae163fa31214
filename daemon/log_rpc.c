/* SPDX-License-Identifier: MIT */
/*
 * log.debug and log.level: switch debug messages per subsystem and the
 * log level at run time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/common.h"
#include "sand/daemon.h"
#include "sand/log.h"
#include "sand/rpc.h"

static const char *const level_names[] = { "error", "warn", "info", "debug" };
static enum log_level cur_level = LOG_INFO;

static json_t *log_debug(json_t *params, void *arg, struct rpc_err *err)
{
	const char *list = NULL;
	char buf[256];

	if (rpc_params_only(params, err, "subsystems", NULL))
		return NULL;
	/* an empty string switches everything off: accept it here */
	if (json_is_string(json_object_get(params, "subsystems")) &&
	    !json_string_length(json_object_get(params, "subsystems")))
		list = "";
	else if (rpc_param_str(params, "subsystems", RPC_OPTIONAL, &list, err))
		return NULL;
	if (list) {
		char *copy = strdup(list), *tok, *save = NULL;

		if (!copy)
			return rpc_error(err, RPC_INTERNAL_ERROR, "out of memory");
		/* name the bad one before changing anything */
		for (tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
			unsigned i;

			if (!strcmp(tok, "all") || !strcmp(tok, "none"))
				continue;
			for (i = 0; i < LS_MAX; i++)
				if (!strcmp(tok, log_subsys_name(i)))
					break;
			if (i == LS_MAX) {
				rpc_error(err, RPC_INVALID_PARAMS,
					  "invalid params: 'subsystems' has an unknown subsystem '%.32s'",
					  tok);
				free(copy);
				return NULL;
			}
		}
		free(copy);
		if (log_set_debug(strcmp(list, "none") ? list : ""))
			return rpc_error(err, RPC_INVALID_PARAMS,
					 "invalid params: 'subsystems' is not a list of subsystems");
		LOG_INFO(LS_CORE, "debug subsystems: '%s'", list);
	}
	log_get_debug(buf, sizeof(buf));
	{
		json_t *all = json_array();

		for (unsigned i = 0; i < LS_MAX; i++)
			json_array_append_new(all, json_string(log_subsys_name(i)));
		return json_pack("{s:s,s:o}", "subsystems", buf, "known", all);
	}
}

static json_t *log_level(json_t *params, void *arg, struct rpc_err *err)
{
	const char *lvl = NULL;

	if (rpc_params_only(params, err, "level", NULL) ||
	    rpc_param_enum(params, "level", RPC_OPTIONAL, &lvl, err,
			   "error", "warn", "info", "debug", NULL))
		return NULL;
	if (lvl) {
		for (unsigned i = 0; i < ARRAY_SIZE(level_names); i++)
			if (!strcmp(lvl, level_names[i]))
				cur_level = (enum log_level)i;
		log_set_level(cur_level);
		LOG_INFO(LS_CORE, "log level: %s", level_names[cur_level]);
	}
	return json_pack("{s:s}", "level", level_names[cur_level]);
}

void log_rpc_init(void)
{
	rpc_register("log.debug", log_debug, NULL);
	rpc_register("log.level", log_level, NULL);
}
