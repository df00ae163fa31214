/* SPDX-License-Identifier: MIT */
/*
 * The iSCSI target's paths from the control plane: portal groups by name
 * (each one a SCSI target port group), their ALUA states, portals taken
 * away for maintenance, and the liveness timeouts. Kept in the
 * "iscsi_paths" section of the state file:
 *
 *	{ "groups": [ { "name": "A", "id": 2, "alua": "standby" } ],
 *	  "disabled": [ "127.0.0.2:3260" ],
 *	  "timeouts": { "nop_interval_ms": 5000, "nop_misses": 3,
 *			"login_ms": 15000 } }
 *
 * A group named by a number (the default group "1") is that portal group
 * tag; any other name gets the next free tag when its first portal is
 * added, and keeps it. The portals themselves (address, tag, name) are in
 * the "iscsi" section (iscsi_rpc.c). Control thread only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/alua.h"
#include "sand/iscsi.h"
#include "sand/log.h"
#include "sand/rpc.h"
#include "sand/state.h"
#include "daemon/iscsi/iscsi_int.h"

#define SECTION	"iscsi_paths"

static json_t *sect(void)
{
	json_t *s = state_get(SECTION);

	if (!json_is_object(s)) {
		json_decref(s);
		s = json_object();
	}
	if (!json_is_array(json_object_get(s, "groups")))
		json_object_set_new(s, "groups", json_array());
	if (!json_is_array(json_object_get(s, "disabled")))
		json_object_set_new(s, "disabled", json_array());
	return s;
}

static json_t *portals(void)
{
	json_t *s = state_get("iscsi");
	json_t *p = json_incref(json_object_get(s, "portals"));

	json_decref(s);
	return json_is_array(p) ? p : (json_decref(p), json_array());
}

static bool numeric(const char *name, unsigned *id)
{
	char *end;
	unsigned long v;

	if (!name[0] || name[0] < '0' || name[0] > '9')
		return false;
	errno = 0;
	v = strtoul(name, &end, 10);
	if (errno || *end || !v || v > 65535)
		return false;
	*id = (unsigned)v;
	return true;
}

static json_t *group_by_name(json_t *s, const char *name)
{
	json_t *g;
	size_t i;

	json_array_foreach(json_object_get(s, "groups"), i, g)
		if (!strcmp(json_string_value(json_object_get(g, "name")), name))
			return g;
	return NULL;
}

static bool id_used(json_t *s, json_t *ps, unsigned id)
{
	json_t *e;
	size_t i;

	json_array_foreach(json_object_get(s, "groups"), i, e)
		if (json_integer_value(json_object_get(e, "id")) == id)
			return true;
	json_array_foreach(ps, i, e)
		if (json_integer_value(json_object_get(e, "tpg")) == id)
			return true;
	return false;
}

int iscsi_paths_group(const char *name, bool create, unsigned *id)
{
	json_t *s, *g, *ps;
	unsigned n;
	int rc = 0;

	if (!name || !rpc_name_valid(name) || strchr(name, '@'))
		return -EINVAL;
	if (numeric(name, id))
		return 0;
	if (name[0] >= '0' && name[0] <= '9')
		return -EINVAL;		/* 0, 70000, 1x: neither a tag nor a name */
	s = sect();
	g = group_by_name(s, name);
	if (g) {
		*id = (unsigned)json_integer_value(json_object_get(g, "id"));
		json_decref(s);
		return 0;
	}
	if (!create) {
		json_decref(s);
		return -ENOENT;
	}
	ps = portals();
	for (n = 2; n <= 65535 && id_used(s, ps, n); n++)
		;
	json_decref(ps);
	if (n > 65535) {
		rc = -ENOSPC;
	} else {
		json_array_append_new(json_object_get(s, "groups"),
				      json_pack("{s:s,s:i,s:s}", "name", name, "id", (json_int_t)n,
						"alua", "active-optimized"));
		rc = state_set(SECTION, s);
		if (!rc) {
			*id = n;
			LOG_INFO(LS_ISCSI, "portal group %s is target port group %u", name, n);
		}
	}
	json_decref(s);
	return rc;
}

bool iscsi_paths_disabled(const char *addr)
{
	json_t *s = sect(), *e;
	size_t i;
	bool found = false;

	json_array_foreach(json_object_get(s, "disabled"), i, e)
		if (!strcmp(json_string_value(e), addr))
			found = true;
	json_decref(s);
	return found;
}

void iscsi_paths_forget_portal(const char *addr)
{
	json_t *s = sect(), *e, *d = json_object_get(s, "disabled");
	size_t i;

	json_array_foreach(d, i, e) {
		if (!strcmp(json_string_value(e), addr)) {
			json_array_remove(d, i);
			if (state_set(SECTION, s))
				LOG_WARN(LS_ISCSI, "portal %s: cannot save the state", addr);
			break;
		}
	}
	json_decref(s);
}

static void apply_timeouts(json_t *t)
{
	json_int_t iv = json_integer_value(json_object_get(t, "nop_interval_ms"));
	json_int_t miss = json_integer_value(json_object_get(t, "nop_misses"));
	json_int_t login = json_integer_value(json_object_get(t, "login_ms"));

	iscsi_set_timeouts(json_is_integer(json_object_get(t, "nop_interval_ms")) ?
			   (unsigned)iv : iscsi_tmo.nop_interval_ms,
			   miss > 0 ? (unsigned)miss : iscsi_tmo.nop_misses,
			   login > 0 ? (unsigned)login : iscsi_tmo.login_ms);
}

void iscsi_paths_restore(void)
{
	json_t *s = state_get(SECTION), *g;
	size_t i;

	if (!s)
		return;
	json_array_foreach(json_object_get(s, "groups"), i, g) {
		json_int_t id = json_integer_value(json_object_get(g, "id"));
		int st = scsi_alua_state_parse(json_string_value(json_object_get(g, "alua")));

		if (id < 1 || id > 65535 || st < 0) {
			LOG_ERR(LS_ISCSI, "state: portal group entry %zu is malformed; ignored", i);
			continue;
		}
		scsi_alua_group_add((uint16_t)id, (enum scsi_alua_state)st);
		scsi_alua_group_set((uint16_t)id, (enum scsi_alua_state)st);
	}
	if (json_is_object(json_object_get(s, "timeouts")))
		apply_timeouts(json_object_get(s, "timeouts"));
	json_decref(s);
}

/* ---- methods ---- */

static json_t *tpg_set(json_t *params, void *arg, struct rpc_err *err)
{
	const char *name, *alua;
	json_t *s, *g;
	unsigned id;
	int st, rc;

	if (rpc_params_only(params, err, "group", "alua", NULL) ||
	    rpc_param_str(params, "group", RPC_REQUIRED, &name, err) ||
	    rpc_param_enum(params, "alua", RPC_REQUIRED, &alua, err, "active-optimized",
			   "active-nonoptimized", "standby", "unavailable", NULL))
		return NULL;
	st = scsi_alua_state_parse(alua);
	rc = iscsi_paths_group(name, false, &id);
	if (rc)
		return rpc_error_errno(err, rc, "portal group %s", name);
	s = sect();
	g = group_by_name(s, name);
	if (!g) {
		g = json_pack("{s:s,s:i}", "name", name, "id", (json_int_t)id);
		json_array_append_new(json_object_get(s, "groups"), g);
	}
	json_object_set_new(g, "alua", json_string(alua));
	rc = state_set(SECTION, s);
	json_decref(s);
	if (rc)
		return rpc_error_errno(err, rc, "saving the state");
	scsi_alua_group_add((uint16_t)id, (enum scsi_alua_state)st);
	scsi_alua_group_set((uint16_t)id, (enum scsi_alua_state)st);
	return json_pack("{s:s,s:i,s:s}", "group", name, "id", (json_int_t)id, "alua", alua);
}

static json_t *list_entry_for(json_t *list, unsigned id, const char *name)
{
	json_t *e;
	size_t i;

	json_array_foreach(list, i, e)
		if (json_integer_value(json_object_get(e, "id")) == id)
			return e;
	e = json_pack("{s:s,s:i,s:[]}", "name", name, "id", (json_int_t)id, "portals");
	json_array_append_new(list, e);
	return e;
}

static json_t *tpg_list(json_t *params, void *arg, struct rpc_err *err)
{
	json_t *s, *ps, *r, *e, *g;
	size_t i;
	char num[16];

	if (rpc_params_only(params, err, NULL))
		return NULL;
	s = sect();
	ps = portals();
	r = json_array();
	json_array_foreach(json_object_get(s, "groups"), i, g)
		list_entry_for(r, (unsigned)json_integer_value(json_object_get(g, "id")),
			       json_string_value(json_object_get(g, "name")));
	json_array_foreach(ps, i, e) {
		const char *addr = json_string_value(json_object_get(e, "address"));
		unsigned id = (unsigned)json_integer_value(json_object_get(e, "tpg"));

		snprintf(num, sizeof(num), "%u", id);
		g = list_entry_for(r, id, num);
		json_array_append_new(json_object_get(g, "portals"),
				      json_pack("{s:s,s:s}", "address", addr, "state",
						iscsi_paths_disabled(addr) ? "disabled" : "enabled"));
	}
	json_array_foreach(r, i, e) {
		int st = scsi_alua_group_get((uint16_t)json_integer_value(json_object_get(e, "id")));

		json_object_set_new(e, "alua", json_string(st < 0 ? "active-optimized" :
							   scsi_alua_state_name(st)));
	}
	json_decref(ps);
	json_decref(s);
	return json_pack("{s:o}", "groups", r);
}

static json_t *portal_tpg(const char *addr, unsigned *tpg)
{
	json_t *ps = portals(), *e;
	size_t i;

	json_array_foreach(ps, i, e) {
		if (!strcmp(json_string_value(json_object_get(e, "address")), addr)) {
			*tpg = (unsigned)json_integer_value(json_object_get(e, "tpg"));
			json_decref(ps);
			return e;
		}
	}
	json_decref(ps);
	return NULL;
}

static json_t *portal_enable(json_t *params, void *arg, struct rpc_err *err)
{
	bool enable = arg != NULL;
	const char *addr;
	json_t *s, *d, *e;
	unsigned tpg = 1;
	size_t i;
	int rc;

	if (rpc_params_only(params, err, "address", NULL) ||
	    rpc_param_str(params, "address", RPC_REQUIRED, &addr, err))
		return NULL;
	if (!portal_tpg(addr, &tpg))
		return rpc_error_errno(err, -ENOENT, "no portal %s", addr);
	if (iscsi_paths_disabled(addr) != enable)
		return rpc_error_errno(err, -EALREADY, "portal %s is %s", addr,
				       enable ? "enabled" : "disabled");
	s = sect();
	d = json_object_get(s, "disabled");
	if (enable) {
		json_array_foreach(d, i, e)
			if (!strcmp(json_string_value(e), addr))
				break;
		json_array_remove(d, i);
		rc = iscsi_portal_add_tpg(addr, tpg);
		if (rc < 0) {
			json_decref(s);
			return rpc_error_errno(err, rc, "portal %s", addr);
		}
	} else {
		json_array_append_new(d, json_string(addr));
		rc = iscsi_portal_disable(addr);
		if (rc < 0 && rc != -ENOENT) {	/* -ENOENT: it failed at start */
			json_decref(s);
			return rpc_error_errno(err, rc, "portal %s", addr);
		}
	}
	rc = state_set(SECTION, s);
	json_decref(s);
	if (rc) {
		/* undo, so that what runs is what the file says */
		if (enable)
			iscsi_portal_disable(addr);
		else
			iscsi_portal_add_tpg(addr, tpg);
		return rpc_error_errno(err, rc, "saving the state");
	}
	return json_pack("{s:s,s:s}", "address", addr, "state", enable ? "enabled" : "disabled");
}

static json_t *timeouts(json_t *params, void *arg, struct rpc_err *err)
{
	uint32_t iv = iscsi_tmo.nop_interval_ms, miss = iscsi_tmo.nop_misses;
	uint32_t login = iscsi_tmo.login_ms;
	json_t *s, *t;
	int rc;

	if (rpc_params_only(params, err, "nop_interval_ms", "nop_misses", "login_ms", NULL) ||
	    rpc_param_u32(params, "nop_interval_ms", RPC_OPTIONAL, &iv, err) ||
	    rpc_param_u32(params, "nop_misses", RPC_OPTIONAL, &miss, err) ||
	    rpc_param_u32(params, "login_ms", RPC_OPTIONAL, &login, err))
		return NULL;
	if ((iv && iv < 100) || iv > 3600000)
		return rpc_error(err, RPC_INVALID_PARAMS,
				 "nop_interval_ms must be 0 (no pings) or 100 to 3600000");
	if (!miss || miss > 100)
		return rpc_error(err, RPC_INVALID_PARAMS, "nop_misses must be 1 to 100");
	if (login < 1000 || login > 3600000)
		return rpc_error(err, RPC_INVALID_PARAMS, "login_ms must be 1000 to 3600000");
	t = json_pack("{s:i,s:i,s:i}", "nop_interval_ms", (json_int_t)iv, "nop_misses",
		      (json_int_t)miss, "login_ms", (json_int_t)login);
	if (json_object_size(params)) {
		s = sect();
		json_object_set(s, "timeouts", t);
		rc = state_set(SECTION, s);
		json_decref(s);
		if (rc) {
			json_decref(t);
			return rpc_error_errno(err, rc, "saving the state");
		}
		iscsi_set_timeouts(iv, miss, login);
		LOG_INFO(LS_ISCSI, "new connections: ping after %u ms of silence, closed after "
			 "%u unanswered, login within %u ms", iv, miss, login);
	}
	return t;
}

void iscsi_paths_rpc_init(void)
{
	rpc_register("iscsi.tpg_set", tpg_set, NULL);
	rpc_register("iscsi.tpg_list", tpg_list, NULL);
	rpc_register("iscsi.portal_disable", portal_enable, NULL);
	rpc_register("iscsi.portal_enable", portal_enable, (void *)1);
	rpc_register("iscsi.timeouts", timeouts, NULL);
}
