/* SPDX-License-Identifier: MIT */
/*
 * iscsi.portal_add, iscsi.target_create, iscsi.export, iscsi.list: the
 * target's configuration from the control plane, kept in the "iscsi"
 * section of the state file and restored at start (after the disks).
 *
 * State section:
 *	{ "portals": [ { "address": "0.0.0.0:3260", "tpg": 1 } ],
 *	  "targets": [ { "iqn": "iqn...", "luns": [ { "lun": 0, "disk": "d0",
 *							"readonly": false } ] } ] }
 *
 * Owned by the control thread (handlers, restore and the shutdown hook all
 * run there). Exported disks are claimed as "iscsi"; a disk is exported at
 * most once (one LU, seen through every portal). Something that fails to
 * come back at start is logged, kept in the state file and listed with its
 * error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/daemon.h"
#include "sand/iscsi.h"
#include "sand/log.h"
#include "sand/rpc.h"
#include "sand/state.h"

#define CLAIM	"iscsi"

static json_t *cfg;		/* the section as configured */
static json_t *errors;		/* "portal ADDR" / "lun IQN N" -> why it is not up */
static bool hooked;

static json_t *section(void)
{
	if (!cfg) {
		cfg = json_pack("{s:[],s:[]}", "portals", "targets");
		errors = json_object();
	}
	return cfg;
}

static json_t *target_entry(json_t *c, const char *iqn)
{
	size_t i;
	json_t *t;

	json_array_foreach(json_object_get(c, "targets"), i, t)
		if (!strcasecmp(json_string_value(json_object_get(t, "iqn")), iqn))
			return t;
	return NULL;
}

/* The target and LUN a disk is exported as, if it is. */
static bool disk_exported(json_t *c, const char *disk)
{
	size_t i, j;
	json_t *t, *l;

	json_array_foreach(json_object_get(c, "targets"), i, t)
		json_array_foreach(json_object_get(t, "luns"), j, l)
			if (!strcmp(json_string_value(json_object_get(l, "disk")), disk))
				return true;
	return false;
}

static bool lun_used(json_t *t, unsigned lun)
{
	size_t j;
	json_t *l;

	json_array_foreach(json_object_get(t, "luns"), j, l)
		if (json_integer_value(json_object_get(l, "lun")) == (json_int_t)lun)
			return true;
	return false;
}

static void shutdown_hook(void *arg)
{
	size_t i, j;
	json_t *t, *l;

	iscsi_shutdown();
	json_array_foreach(json_object_get(cfg, "targets"), i, t) {
		json_array_foreach(json_object_get(t, "luns"), j, l) {
			struct blkdev *bd = blkdev_find(json_string_value(json_object_get(l, "disk")));

			if (bd)
				blkdev_release(bd, CLAIM);
		}
	}
	json_decref(cfg);
	json_decref(errors);
	cfg = errors = NULL;
}

static int hook(void)
{
	int rc = 0;

	if (!hooked) {
		rc = daemon_on_shutdown("iscsi", shutdown_hook, NULL);
		hooked = !rc;
	}
	return rc;
}

/* Save c as the section; on success it becomes cfg. */
static int save(json_t *c)
{
	int rc = state_set("iscsi", c);

	if (rc)
		return rc;
	json_decref(cfg);
	cfg = json_incref(c);
	return 0;
}

/* ---- applying one piece of configuration ---- */

static int apply_portal(const char *addr, unsigned tpg)
{
	int rc = iscsi_portal_add_tpg(addr, tpg);

	return rc < 0 ? rc : 0;
}

static int apply_lun(const char *iqn, unsigned lun, const char *disk, bool ro)
{
	struct blkdev *bd = blkdev_find(disk);
	int rc;

	if (!bd)
		return -ENOENT;
	rc = blkdev_claim_shared(bd, CLAIM);
	if (rc)
		return rc;
	rc = iscsi_lun_add(iqn, lun, bd, ro);
	if (rc)
		blkdev_release(bd, CLAIM);
	return rc;
}

/* ---- methods ---- */

static json_t *portal_add(json_t *params, void *arg, struct rpc_err *err)
{
	const char *addr;
	uint32_t tpg = 1;
	json_t *c, *p;
	size_t i;
	int rc, port;

	if (rpc_params_only(params, err, "address", "tpg", NULL) ||
	    rpc_param_str(params, "address", RPC_REQUIRED, &addr, err) ||
	    rpc_param_u32(params, "tpg", RPC_OPTIONAL, &tpg, err))
		return NULL;
	if (!tpg || tpg > 65535)
		return rpc_error(err, RPC_INVALID_PARAMS, "tpg must be 1 to 65535");
	json_array_foreach(json_object_get(section(), "portals"), i, p)
		if (!strcmp(json_string_value(json_object_get(p, "address")), addr))
			return rpc_error_errno(err, -EEXIST, "portal %s exists", addr);
	if (hook())
		return rpc_error_errno(err, -ENOMEM, "shutdown hook");
	port = iscsi_portal_add_tpg(addr, tpg);
	if (port < 0)
		return rpc_error_errno(err, port, "portal %s", addr);
	c = json_deep_copy(cfg);
	json_array_append_new(json_object_get(c, "portals"),
			      json_pack("{s:s,s:i}", "address", addr, "tpg", (json_int_t)tpg));
	if ((rc = save(c))) {
		iscsi_portal_remove(addr);
		json_decref(c);
		return rpc_error_errno(err, rc, "saving the state");
	}
	json_decref(c);
	return json_pack("{s:s,s:i,s:i}", "address", addr, "tpg", (json_int_t)tpg,
			 "port", (json_int_t)port);
}

static json_t *target_create(json_t *params, void *arg, struct rpc_err *err)
{
	const char *iqn;
	json_t *c;
	int rc;

	if (rpc_params_only(params, err, "iqn", NULL) ||
	    rpc_param_str(params, "iqn", RPC_REQUIRED, &iqn, err))
		return NULL;
	if (target_entry(section(), iqn))
		return rpc_error_errno(err, -EEXIST, "target %s exists", iqn);
	if (hook())
		return rpc_error_errno(err, -ENOMEM, "shutdown hook");
	rc = iscsi_target_add(iqn);
	if (rc == -EINVAL)
		return rpc_error(err, RPC_INVALID_PARAMS,
				 "'%s' is not an iSCSI name (iqn.YYYY-MM.reverse.domain:name)", iqn);
	if (rc)
		return rpc_error_errno(err, rc, "target %s", iqn);
	c = json_deep_copy(cfg);
	json_array_append_new(json_object_get(c, "targets"),
			      json_pack("{s:s,s:[]}", "iqn", iqn, "luns"));
	if ((rc = save(c))) {
		iscsi_target_remove(iqn);
		json_decref(c);
		return rpc_error_errno(err, rc, "saving the state");
	}
	json_decref(c);
	return json_pack("{s:s}", "iqn", iqn);
}

static json_t *export_lun(json_t *params, void *arg, struct rpc_err *err)
{
	const char *disk, *iqn;
	uint32_t lun = UINT32_MAX;
	bool ro = false;
	json_t *c, *t, *old;
	int rc;

	if (rpc_params_only(params, err, "disk", "target", "lun", "readonly", NULL) ||
	    rpc_param_name(params, "disk", RPC_REQUIRED, &disk, err) ||
	    rpc_param_str(params, "target", RPC_REQUIRED, &iqn, err) ||
	    rpc_param_u32(params, "lun", RPC_OPTIONAL, &lun, err) ||
	    rpc_param_bool(params, "readonly", RPC_OPTIONAL, &ro, err))
		return NULL;
	t = target_entry(section(), iqn);
	if (!t)
		return rpc_error_errno(err, -ENOENT, "no target %s", iqn);
	if (lun == UINT32_MAX) {
		for (lun = 0; lun < 256 && lun_used(t, lun); lun++)
			;
	}
	if (lun >= 256)
		return rpc_error(err, RPC_INVALID_PARAMS, "lun must be 0 to 255");
	if (lun_used(t, lun))
		return rpc_error_errno(err, -EEXIST, "target %s has a lun %u", iqn, lun);
	if (!blkdev_find(disk))
		return rpc_error_errno(err, -ENOENT, "no disk %s", disk);
	if (disk_exported(cfg, disk))
		return rpc_error_errno(err, -EBUSY, "disk %s is exported already", disk);
	/* saved first: a LU cannot be taken back once initiators may see it */
	old = json_incref(cfg);
	c = json_deep_copy(cfg);
	json_array_append_new(json_object_get(target_entry(c, iqn), "luns"),
			      json_pack("{s:i,s:s,s:b}", "lun", (json_int_t)lun, "disk", disk,
					"readonly", ro));
	rc = save(c);
	json_decref(c);
	if (rc) {
		json_decref(old);
		return rpc_error_errno(err, rc, "saving the state");
	}
	rc = apply_lun(iqn, lun, disk, ro);
	if (rc) {
		if (!save(old))
			LOG_DBG(LS_ISCSI, "export of %s undone", disk);
		json_decref(old);
		return rpc_error_errno(err, rc, "exporting %s", disk);
	}
	json_decref(old);
	return json_pack("{s:s,s:s,s:i,s:b}", "disk", disk, "target", iqn, "lun",
			 (json_int_t)lun, "readonly", ro);
}

static json_t *list(json_t *params, void *arg, struct rpc_err *err)
{
	json_t *r, *e, *x;
	size_t i, j;
	char key[320];

	if (rpc_params_only(params, err, NULL))
		return NULL;
	r = json_deep_copy(section());
	json_array_foreach(json_object_get(r, "portals"), i, e) {
		snprintf(key, sizeof(key), "portal %s",
			 json_string_value(json_object_get(e, "address")));
		x = json_object_get(errors, key);
		json_object_set_new(e, "state", json_string(x ? "failed" : "up"));
		if (x)
			json_object_set(e, "error", x);
	}
	json_array_foreach(json_object_get(r, "targets"), i, e) {
		json_t *l;

		json_array_foreach(json_object_get(e, "luns"), j, l) {
			snprintf(key, sizeof(key), "lun %s %lld",
				 json_string_value(json_object_get(e, "iqn")),
				 (long long)json_integer_value(json_object_get(l, "lun")));
			x = json_object_get(errors, key);
			json_object_set_new(l, "state", json_string(x ? "failed" : "up"));
			if (x)
				json_object_set(l, "error", x);
		}
	}
	return r;
}

void iscsi_rpc_init(void)
{
	rpc_register("iscsi.portal_add", portal_add, NULL);
	rpc_register("iscsi.target_create", target_create, NULL);
	rpc_register("iscsi.export", export_lun, NULL);
	rpc_register("iscsi.list", list, NULL);
}

static void failed(const char *key, int rc)
{
	LOG_ERR(LS_ISCSI, "%s: %s", key, strerror(-rc));
	json_object_set_new(errors, key, json_string(strerror(-rc)));
}

void iscsi_restore(void)
{
	json_t *s = state_get("iscsi"), *e;
	size_t i, j;
	char key[320];

	if (!s)
		return;
	if (!json_is_array(json_object_get(s, "portals")) ||
	    !json_is_array(json_object_get(s, "targets"))) {
		LOG_ERR(LS_ISCSI, "state: the iscsi section is malformed; ignored");
		json_decref(s);
		return;
	}
	section();
	json_decref(cfg);
	cfg = s;
	if (hook())
		LOG_ERR(LS_ISCSI, "cannot register the shutdown hook");
	/* targets and LUNs first, so that the first initiator finds them */
	json_array_foreach(json_object_get(cfg, "targets"), i, e) {
		const char *iqn = json_string_value(json_object_get(e, "iqn"));
		json_t *l;
		int rc;

		if (!iqn)
			continue;
		rc = iscsi_target_add(iqn);
		if (rc) {
			snprintf(key, sizeof(key), "target %s", iqn);
			failed(key, rc);
			continue;
		}
		json_array_foreach(json_object_get(e, "luns"), j, l) {
			const char *disk = json_string_value(json_object_get(l, "disk"));
			json_int_t lun = json_integer_value(json_object_get(l, "lun"));

			snprintf(key, sizeof(key), "lun %s %lld", iqn, (long long)lun);
			rc = disk && lun >= 0 && lun < 256 ?
			     apply_lun(iqn, (unsigned)lun, disk,
				       json_is_true(json_object_get(l, "readonly"))) : -EINVAL;
			if (rc)
				failed(key, rc);
		}
	}
	json_array_foreach(json_object_get(cfg, "portals"), i, e) {
		const char *addr = json_string_value(json_object_get(e, "address"));
		json_int_t tpg = json_integer_value(json_object_get(e, "tpg"));
		int rc;

		if (!addr)
			continue;
		snprintf(key, sizeof(key), "portal %s", addr);
		rc = apply_portal(addr, tpg > 0 && tpg < 65536 ? (unsigned)tpg : 1);
		if (rc)
			failed(key, rc);
	}
}
