/* SPDX-License-Identifier: MIT */
/*
 * iscsi.portal_add, iscsi.target_create, iscsi.export, iscsi.list: the
 * target's configuration from the control plane, kept in the "iscsi"
 * section of the state file and restored at start (after the disks).
 *
 * State section:
 *	{ "portals": [ { "address": "0.0.0.0:3260", "tpg": 1 } ],
 *	  "targets": [ { "iqn": "iqn...", "luns": [ { "lun": 0, "disk": "d0",
 *							"readonly": false } ],
 *			 "acl": [ "iqn.initiator" ],
 *			 "auth": { "user": "u", "secret": "s",
 *				   "mutual_user": "t", "mutual_secret": "ts" } } ],
 *	  "discovery_auth": { ... as "auth" } }
 * ("acl", "auth", "discovery_auth" only when set.) Secrets live in the
 * state file (mode 0600) and nowhere else: iscsi.list shows that CHAP is
 * set and the user names, no method answers a secret, nothing logs one.
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
#include <gnutls/crypto.h>
#include "sand/blkdev.h"
#include "sand/daemon.h"
#include "sand/iscsi.h"
#include "sand/log.h"
#include "sand/rpc.h"
#include "sand/state.h"
#include "daemon/iscsi/iscsi_int.h"

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
	char prf[512];
	int rc;

	if (!bd)
		return -ENOENT;
	rc = blkdev_claim_shared(bd, CLAIM);
	if (rc)
		return rc;
	rc = iscsi_lun_add_pr(iqn, lun, bd, ro, iscsi_pr_file(disk, prf, sizeof(prf)));
	if (rc)
		blkdev_release(bd, CLAIM);
	return rc;
}

/* auth JSON (state) -> credentials; false when malformed */
static bool cred_from_json(json_t *a, struct iscsi_chap_cred *c)
{
	const char *u = json_string_value(json_object_get(a, "user"));
	const char *sec = json_string_value(json_object_get(a, "secret"));
	const char *mu = json_string_value(json_object_get(a, "mutual_user"));
	const char *ms = json_string_value(json_object_get(a, "mutual_secret"));

	memset(c, 0, sizeof(*c));
	if (!u || !sec || strlen(u) >= sizeof(c->user) || strlen(sec) >= sizeof(c->secret))
		return false;
	c->required = true;
	snprintf(c->user, sizeof(c->user), "%s", u);
	snprintf(c->secret, sizeof(c->secret), "%s", sec);
	if (mu || ms) {
		if (!mu || !ms || strlen(mu) >= sizeof(c->muser) ||
		    strlen(ms) >= sizeof(c->msecret))
			return false;
		c->mutual = true;
		snprintf(c->muser, sizeof(c->muser), "%s", mu);
		snprintf(c->msecret, sizeof(c->msecret), "%s", ms);
	}
	return true;
}

static int apply_auth(const char *iqn, json_t *a)
{
	struct iscsi_chap_cred c;
	int rc;

	if (!a)
		return iscsi_auth_set(iqn, NULL);
	if (!cred_from_json(a, &c))
		return -EINVAL;
	rc = iscsi_auth_set(iqn, &c);
	memset(&c, 0, sizeof(c));
	return rc;
}

/* auth JSON without its secrets, for iscsi.list */
static json_t *auth_public(json_t *a)
{
	json_t *m = json_object_get(a, "mutual_user");
	json_t *r = json_pack("{s:b,s:O,s:b}", "chap", 1, "user", json_object_get(a, "user"),
			      "mutual", m != NULL);

	if (r && m)
		json_object_set(r, "mutual_user", m);
	return r;
}

static void failed(const char *key, int rc)
{
	LOG_ERR(LS_ISCSI, "%s: %s", key, strerror(-rc));
	json_object_set_new(errors, key, json_string(strerror(-rc)));
}

/*
 * Bring up target entry e of cfg: the target, who may log in and how (before
 * anyone can), then its LUNs. A target whose ACL or CHAP settings cannot be
 * applied stays down (closed rather than open). Failures go to errors.
 */
static void bring_up_target(json_t *e)
{
	const char *iqn = json_string_value(json_object_get(e, "iqn"));
	char key[320];
	json_t *l;
	size_t j;
	int rc;

	if (!iqn)
		return;
	rc = iscsi_target_add(iqn);
	if (rc) {
		snprintf(key, sizeof(key), "target %s", iqn);
		failed(key, rc);
		return;
	}
	json_array_foreach(json_object_get(e, "acl"), j, l) {
		const char *ini = json_string_value(l);

		rc = ini ? iscsi_acl_add(iqn, ini) : -EINVAL;
		if (rc && rc != -EEXIST)
			break;
		rc = 0;
	}
	if (!rc && json_object_get(e, "auth"))
		rc = apply_auth(iqn, json_object_get(e, "auth"));
	if (rc) {
		iscsi_target_remove(iqn);
		snprintf(key, sizeof(key), "target %s (its acl or chap settings)", iqn);
		LOG_ERR(LS_ISCSI, "%s: %s", key, strerror(-rc));
		snprintf(key, sizeof(key), "target %s", iqn);
		json_object_set_new(errors, key, json_string(strerror(-rc)));
		return;
	}
	json_array_foreach(json_object_get(e, "luns"), j, l) {
		const char *disk = json_string_value(json_object_get(l, "disk"));
		json_int_t lun = json_integer_value(json_object_get(l, "lun"));

		snprintf(key, sizeof(key), "lun %s %lld", iqn, (long long)lun);
		json_object_del(errors, key);
		rc = disk && lun >= 0 && lun < 256 ?
		     apply_lun(iqn, (unsigned)lun, disk,
			       json_is_true(json_object_get(l, "readonly"))) : -EINVAL;
		if (rc)
			failed(key, rc);
	}
}

static bool target_down(const char *iqn)
{
	char key[320];

	snprintf(key, sizeof(key), "target %s", iqn);
	return json_object_get(errors, key) != NULL;
}

/* After a change to a target that is down: try again. */
static void retry_target(const char *iqn)
{
	char key[320];

	snprintf(key, sizeof(key), "target %s", iqn);
	if (!json_object_get(errors, key))
		return;
	json_object_del(errors, key);
	bring_up_target(target_entry(cfg, iqn));
	if (!json_object_get(errors, key))
		LOG_INFO(LS_ISCSI, "target %s is up again", iqn);
}

/* ---- methods ---- */

static json_t *portal_add(json_t *params, void *arg, struct rpc_err *err)
{
	const char *addr, *group = NULL;
	uint32_t tpg = 1;
	json_t *c, *p;
	size_t i;
	int rc, port;

	if (rpc_params_only(params, err, "address", "tpg", "group", NULL) ||
	    rpc_param_str(params, "address", RPC_REQUIRED, &addr, err) ||
	    rpc_param_u32(params, "tpg", RPC_OPTIONAL, &tpg, err) ||
	    rpc_param_str(params, "group", RPC_OPTIONAL, &group, err))
		return NULL;
	if (!tpg || tpg > 65535)
		return rpc_error(err, RPC_INVALID_PARAMS, "tpg must be 1 to 65535");
	if (group && (rc = iscsi_paths_group(group, true, &tpg)))	/* paths_rpc.c */
		return rpc_error_errno(err, rc, "portal group %s", group);
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
	if (group)
		json_object_set_new(json_array_get(json_object_get(c, "portals"),
						   json_array_size(json_object_get(c, "portals")) - 1),
				    "group", json_string(group));
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

static json_t *target_param(json_t *params, const char **iqn, struct rpc_err *err)
{
	json_t *t;

	if (rpc_param_str(params, "target", RPC_REQUIRED, iqn, err))
		return NULL;
	t = target_entry(section(), *iqn);
	if (!t)
		rpc_error_errno(err, -ENOENT, "no target %s", *iqn);
	return t;
}

static json_t *acl_add(json_t *params, void *arg, struct rpc_err *err)
{
	const char *iqn, *ini;
	json_t *c, *acl;
	size_t i;
	json_t *e;
	int rc;

	if (rpc_params_only(params, err, "target", "initiator", NULL) ||
	    !target_param(params, &iqn, err) ||
	    rpc_param_str(params, "initiator", RPC_REQUIRED, &ini, err))
		return NULL;
	json_array_foreach(json_object_get(target_entry(cfg, iqn), "acl"), i, e)
		if (!strcasecmp(json_string_value(e), ini))
			return rpc_error_errno(err, -EEXIST, "target %s admits %s already",
					       iqn, ini);
	rc = iscsi_acl_add(iqn, ini);
	if (rc == -EINVAL)
		return rpc_error(err, RPC_INVALID_PARAMS, "'%s' is not an iSCSI name", ini);
	if (rc)
		return rpc_error_errno(err, rc, "target %s", iqn);
	c = json_deep_copy(cfg);
	acl = json_object_get(target_entry(c, iqn), "acl");
	if (!acl) {
		acl = json_array();
		json_object_set_new(target_entry(c, iqn), "acl", acl);
	}
	json_array_append_new(acl, json_string(ini));
	if ((rc = save(c))) {
		iscsi_acl_remove(iqn, ini);
		json_decref(c);
		return rpc_error_errno(err, rc, "saving the state");
	}
	json_decref(c);
	return json_pack("{s:s,s:s}", "target", iqn, "initiator", ini);
}

static json_t *acl_remove(json_t *params, void *arg, struct rpc_err *err)
{
	const char *iqn, *ini;
	json_t *c, *acl, *e;
	size_t i;
	int rc;

	if (rpc_params_only(params, err, "target", "initiator", NULL) ||
	    !target_param(params, &iqn, err) ||
	    rpc_param_str(params, "initiator", RPC_REQUIRED, &ini, err))
		return NULL;
	c = json_deep_copy(cfg);
	acl = json_object_get(target_entry(c, iqn), "acl");
	json_array_foreach(acl, i, e)
		if (!strcasecmp(json_string_value(e), ini))
			break;
	if (!acl || i == json_array_size(acl)) {
		json_decref(c);
		return rpc_error_errno(err, -ENOENT, "target %s has no %s in its list", iqn, ini);
	}
	json_array_remove(acl, i);
	if (!json_array_size(acl))
		json_object_del(target_entry(c, iqn), "acl");
	rc = save(c);
	json_decref(c);
	if (rc)
		return rpc_error_errno(err, rc, "saving the state");
	iscsi_acl_remove(iqn, ini);
	return json_pack("{s:s,s:s}", "target", iqn, "initiator", ini);
}

static bool cred_str_ok(const char *v)
{
	size_t n = strlen(v);

	if (!n || n >= ISCSI_CHAP_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < ' ' || v[i] == 0x7f)
			return false;
	return true;
}

static json_t *auth_set(json_t *params, void *arg, struct rpc_err *err)
{
	const char *iqn = NULL, *u, *sec, *mu = NULL, *ms = NULL;
	bool disc = false;
	json_t *c, *a, *pub;
	int rc;

	if (rpc_params_only(params, err, "target", "discovery", "user", "secret",
			    "mutual_user", "mutual_secret", NULL) ||
	    rpc_param_bool(params, "discovery", RPC_OPTIONAL, &disc, err) ||
	    rpc_param_str(params, "target", RPC_OPTIONAL, &iqn, err) ||
	    rpc_param_str(params, "user", RPC_REQUIRED, &u, err) ||
	    rpc_param_str(params, "secret", RPC_REQUIRED, &sec, err) ||
	    rpc_param_str(params, "mutual_user", RPC_OPTIONAL, &mu, err) ||
	    rpc_param_str(params, "mutual_secret", RPC_OPTIONAL, &ms, err))
		return NULL;
	if (disc == !!iqn)
		return rpc_error(err, RPC_INVALID_PARAMS, "give either 'target' or 'discovery'");
	if (iqn && !target_entry(section(), iqn))
		return rpc_error_errno(err, -ENOENT, "no target %s", iqn);
	if (!mu != !ms)
		return rpc_error(err, RPC_INVALID_PARAMS,
				 "'mutual_user' and 'mutual_secret' go together");
	/* the values are never echoed, not even in errors */
	if (!cred_str_ok(u) || !cred_str_ok(sec) || (mu && (!cred_str_ok(mu) ||
							      !cred_str_ok(ms))))
		return rpc_error(err, RPC_INVALID_PARAMS,
				 "CHAP names and secrets are 1 to 255 printable bytes");
	if (ms && !strcmp(sec, ms))
		return rpc_error(err, RPC_INVALID_PARAMS,
				 "the mutual secret must differ from the initiator's (RFC 7143 12.1.3)");
	section();
	a = json_pack("{s:s,s:s}", "user", u, "secret", sec);
	if (mu) {
		json_object_set_new(a, "mutual_user", json_string(mu));
		json_object_set_new(a, "mutual_secret", json_string(ms));
	}
	c = json_deep_copy(cfg);
	json_object_set(iqn ? target_entry(c, iqn) : c, iqn ? "auth" : "discovery_auth", a);
	rc = save(c);
	json_decref(c);
	if (!rc && iqn && target_down(iqn))
		retry_target(iqn);	/* down: try again with the new settings */
	else if (!rc)
		rc = apply_auth(iqn, a);
	pub = auth_public(a);
	json_decref(a);
	if (rc) {
		json_decref(pub);
		return rpc_error_errno(err, rc, "setting CHAP");
	}
	json_object_set_new(pub, iqn ? "target" : "discovery", iqn ? json_string(iqn) : json_true());
	return pub;
}

static json_t *auth_clear(json_t *params, void *arg, struct rpc_err *err)
{
	const char *iqn = NULL;
	bool disc = false;
	json_t *c;
	int rc;

	if (rpc_params_only(params, err, "target", "discovery", NULL) ||
	    rpc_param_bool(params, "discovery", RPC_OPTIONAL, &disc, err) ||
	    rpc_param_str(params, "target", RPC_OPTIONAL, &iqn, err))
		return NULL;
	if (disc == !!iqn)
		return rpc_error(err, RPC_INVALID_PARAMS, "give either 'target' or 'discovery'");
	if (iqn && !target_entry(section(), iqn))
		return rpc_error_errno(err, -ENOENT, "no target %s", iqn);
	section();
	c = json_deep_copy(cfg);
	json_object_del(iqn ? target_entry(c, iqn) : c, iqn ? "auth" : "discovery_auth");
	rc = save(c);
	json_decref(c);
	if (rc)
		return rpc_error_errno(err, rc, "saving the state");
	if (iqn && target_down(iqn))
		retry_target(iqn);
	else
		iscsi_auth_set(iqn, NULL);
	return iqn ? json_pack("{s:s,s:b}", "target", iqn, "chap", 0) :
		     json_pack("{s:b,s:b}", "discovery", 1, "chap", 0);
}

/* Forget LUN lun of target entry t in c (a copy of cfg); the live LUN is
 * removed first. */
static int unexport_one(const char *iqn, unsigned lun, bool live)
{
	struct blkdev *bd;
	int rc;

	if (!live)	/* it never came up: nothing claimed */
		return 0;
	rc = iscsi_lun_remove(iqn, lun, &bd);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	blkdev_release(bd, CLAIM);
	return 0;
}

static bool lun_failed(const char *iqn, json_int_t lun)
{
	char key[320];

	snprintf(key, sizeof(key), "lun %s %lld", iqn, (long long)lun);
	return json_object_get(errors, key) != NULL;
}

static void forget_lun_error(const char *iqn, json_int_t n)
{
	char key[320];

	snprintf(key, sizeof(key), "lun %s %lld", iqn, (long long)n);
	json_object_del(errors, key);
}

static json_t *unexport(json_t *params, void *arg, struct rpc_err *err)
{
	const char *iqn;
	uint32_t lun;
	bool force = false;
	json_t *t, *c, *l = NULL, *luns;
	size_t i;
	int rc;

	if (rpc_params_only(params, err, "target", "lun", "force", NULL) ||
	    !(t = target_param(params, &iqn, err)) ||
	    rpc_param_u32(params, "lun", RPC_REQUIRED, &lun, err) ||
	    rpc_param_bool(params, "force", RPC_OPTIONAL, &force, err))
		return NULL;
	(void)t;
	c = json_deep_copy(cfg);
	luns = json_object_get(target_entry(c, iqn), "luns");
	json_array_foreach(luns, i, l)
		if (json_integer_value(json_object_get(l, "lun")) == (json_int_t)lun)
			break;
	if (i == json_array_size(luns)) {
		json_decref(c);
		return rpc_error_errno(err, -ENOENT, "target %s has no lun %u", iqn, lun);
	}
	if (force && (rc = iscsi_target_close_sessions(iqn)) && rc != -ENOENT) {
		json_decref(c);
		return rpc_error_errno(err, rc, "closing the sessions of %s", iqn);
	}
	{
		char disk[256];

		snprintf(disk, sizeof(disk), "%s", json_string_value(json_object_get(l, "disk")));
		rc = unexport_one(iqn, lun, !lun_failed(iqn, lun));
		if (rc) {
			json_decref(c);
			if (rc == -EBUSY)
				return rpc_error_errno(err, rc, "target %s has sessions "
						       "(--force closes them)", iqn);
			return rpc_error_errno(err, rc, "unexporting lun %u", lun);
		}
		forget_lun_error(iqn, lun);
		json_array_remove(luns, i);
		rc = save(c);
		json_decref(c);
		if (rc)	/* the LUN is gone already: the state says otherwise until
			 * the next change, and the restart recreates it */
			return rpc_error_errno(err, rc, "saving the state");
		return json_pack("{s:s,s:i,s:s}", "target", iqn, "lun", (json_int_t)lun,
				 "disk", disk);
	}
}

static json_t *target_delete(json_t *params, void *arg, struct rpc_err *err)
{
	const char *iqn;
	bool force = false;
	json_t *t, *c, *l;
	size_t i;
	int rc;
	char key[320];

	if (rpc_params_only(params, err, "iqn", "force", NULL) ||
	    rpc_param_str(params, "iqn", RPC_REQUIRED, &iqn, err) ||
	    rpc_param_bool(params, "force", RPC_OPTIONAL, &force, err))
		return NULL;
	t = target_entry(section(), iqn);
	if (!t)
		return rpc_error_errno(err, -ENOENT, "no target %s", iqn);
	if (json_array_size(json_object_get(t, "luns")) && !force)
		return rpc_error_errno(err, -EBUSY, "target %s has LUNs (--force removes them)",
				       iqn);
	snprintf(key, sizeof(key), "target %s", iqn);
	c = json_deep_copy(cfg);
	t = target_entry(c, iqn);
	if (!json_object_get(errors, key)) {
		json_t *luns = json_object_get(t, "luns");

		if (force && (rc = iscsi_target_close_sessions(iqn))) {
			json_decref(c);
			return rpc_error_errno(err, rc, "closing the sessions of %s", iqn);
		}
		/* LUNs first, each released and forgotten as it goes */
		while ((l = json_array_get(luns, 0))) {
			json_int_t lun = json_integer_value(json_object_get(l, "lun"));

			rc = unexport_one(iqn, (unsigned)lun, !lun_failed(iqn, lun));
			if (rc) {
				if (!save(c))
					LOG_DBG(LS_ISCSI, "target %s: some luns removed", iqn);
				json_decref(c);
				return rpc_error_errno(err, rc, rc == -EBUSY ?
						       "target %s has sessions again" :
						       "target %s lun %lld", iqn, (long long)lun);
			}
			forget_lun_error(iqn, lun);
			json_array_remove(luns, 0);
		}
		rc = iscsi_target_remove(iqn);
		if (rc && rc != -ENOENT) {
			if (!save(c))
				LOG_DBG(LS_ISCSI, "target %s: luns removed", iqn);
			json_decref(c);
			return rpc_error_errno(err, rc, rc == -EBUSY ? "target %s has sessions "
					       "(--force closes them)" : "target %s", iqn);
		}
	}
	json_object_del(errors, key);
	json_array_foreach(json_object_get(c, "targets"), i, t)
		if (!strcasecmp(json_string_value(json_object_get(t, "iqn")), iqn))
			break;
	json_array_remove(json_object_get(c, "targets"), i);
	rc = save(c);
	json_decref(c);
	if (rc)
		return rpc_error_errno(err, rc, "saving the state");
	return json_pack("{s:s}", "iqn", iqn);
}

static json_t *portal_remove(json_t *params, void *arg, struct rpc_err *err)
{
	const char *addr;
	json_t *c, *p;
	size_t i;
	int rc;
	char key[320];

	if (rpc_params_only(params, err, "address", NULL) ||
	    rpc_param_str(params, "address", RPC_REQUIRED, &addr, err))
		return NULL;
	c = json_deep_copy(section());
	json_array_foreach(json_object_get(c, "portals"), i, p)
		if (!strcmp(json_string_value(json_object_get(p, "address")), addr))
			break;
	if (i == json_array_size(json_object_get(c, "portals"))) {
		json_decref(c);
		return rpc_error_errno(err, -ENOENT, "no portal %s", addr);
	}
	json_array_remove(json_object_get(c, "portals"), i);
	rc = save(c);
	json_decref(c);
	if (rc)
		return rpc_error_errno(err, rc, "saving the state");
	iscsi_portal_remove(addr);	/* -ENOENT when it failed at start */
	iscsi_paths_forget_portal(addr);
	snprintf(key, sizeof(key), "portal %s", addr);
	json_object_del(errors, key);
	return json_pack("{s:s}", "address", addr);
}

static json_t *sessions(json_t *params, void *arg, struct rpc_err *err)
{
	json_t *conns, *r, *e, *s = NULL;
	size_t i, j;

	if (rpc_params_only(params, err, NULL))
		return NULL;
	conns = iscsi_sessions_json();
	if (!conns)
		return rpc_error_errno(err, -ENOMEM, "sessions");
	/* connections grouped by session: initiator, ISID and TSIH */
	r = json_array();
	json_array_foreach(conns, i, e) {
		json_t *cn = json_pack("{s:O,s:O,s:O}", "cid", json_object_get(e, "cid"),
				       "portal", json_object_get(e, "portal"),
				       "peer", json_object_get(e, "peer"));

		json_array_foreach(r, j, s)
			if (json_equal(json_object_get(s, "initiator"), json_object_get(e, "initiator")) &&
			    json_equal(json_object_get(s, "isid"), json_object_get(e, "isid")) &&
			    json_equal(json_object_get(s, "tsih"), json_object_get(e, "tsih")))
				break;
		if (j == json_array_size(r)) {
			s = json_deep_copy(e);
			json_object_del(s, "cid");
			json_object_del(s, "peer");
			json_object_set_new(s, "connections", json_array());
			json_array_append_new(r, s);
		}
		json_array_append_new(json_object_get(s, "connections"), cn);
	}
	json_decref(conns);
	return r;
}

static json_t *list(json_t *params, void *arg, struct rpc_err *err)
{
	json_t *r, *e, *x;
	size_t i, j;
	char key[320];

	if (rpc_params_only(params, err, NULL))
		return NULL;
	r = json_deep_copy(section());
	/* never a secret out of the daemon */
	if ((x = json_object_get(r, "discovery_auth")))
		json_object_set_new(r, "discovery_auth", auth_public(x));
	json_array_foreach(json_object_get(r, "targets"), i, e)
		if ((x = json_object_get(e, "auth")))
			json_object_set_new(e, "auth", auth_public(x));
	json_array_foreach(json_object_get(r, "portals"), i, e) {
		snprintf(key, sizeof(key), "portal %s",
			 json_string_value(json_object_get(e, "address")));
		x = json_object_get(errors, key);
		json_object_set_new(e, "state", json_string(x ? "failed" :
			iscsi_paths_disabled(json_string_value(json_object_get(e, "address"))) ?
			"disabled" : "up"));
		if (x)
			json_object_set(e, "error", x);
	}
	json_array_foreach(json_object_get(r, "targets"), i, e) {
		json_t *l, *tx;

		/* a target that did not come back takes its LUNs with it */
		snprintf(key, sizeof(key), "target %s", json_string_value(json_object_get(e, "iqn")));
		tx = json_object_get(errors, key);
		json_object_set_new(e, "state", json_string(tx ? "failed" : "up"));
		if (tx)
			json_object_set(e, "error", tx);
		json_array_foreach(json_object_get(e, "luns"), j, l) {
			snprintf(key, sizeof(key), "lun %s %lld",
				 json_string_value(json_object_get(e, "iqn")),
				 (long long)json_integer_value(json_object_get(l, "lun")));
			x = tx ? tx : json_object_get(errors, key);
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
	rpc_register("iscsi.acl_add", acl_add, NULL);
	rpc_register("iscsi.acl_remove", acl_remove, NULL);
	rpc_register("iscsi.auth_set", auth_set, NULL);
	rpc_register("iscsi.auth_clear", auth_clear, NULL);
	rpc_register("iscsi.unexport", unexport, NULL);
	rpc_register("iscsi.target_delete", target_delete, NULL);
	rpc_register("iscsi.portal_remove", portal_remove, NULL);
	rpc_register("iscsi.sessions", sessions, NULL);
	iscsi_pr_rpc_init();
	iscsi_paths_rpc_init();
	iscsi_sanitize_rpc_init();
}

void iscsi_restore(void)
{
	json_t *s = state_get("iscsi"), *e;
	size_t i;
	char key[320];

	iscsi_paths_restore();	/* port group states before the portals */
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
	if (json_object_get(cfg, "discovery_auth") &&
	    apply_auth(NULL, json_object_get(cfg, "discovery_auth"))) {
		/* closed rather than open: no discovery session can log in */
		struct iscsi_chap_cred never = { .required = true };

		failed("discovery auth", -EINVAL);
		snprintf(never.user, sizeof(never.user), "-");
		gnutls_rnd(GNUTLS_RND_RANDOM, never.secret, 32);
		for (int k = 0; k < 32; k++)
			never.secret[k] = (char)('a' + (unsigned char)never.secret[k] % 26);
		iscsi_auth_set(NULL, &never);
	}
	/* targets and LUNs first, so that the first initiator finds them */
	json_array_foreach(json_object_get(cfg, "targets"), i, e)
		bring_up_target(e);
	json_array_foreach(json_object_get(cfg, "portals"), i, e) {
		const char *addr = json_string_value(json_object_get(e, "address"));
		json_int_t tpg = json_integer_value(json_object_get(e, "tpg"));
		int rc;

		if (!addr || iscsi_paths_disabled(addr))
			continue;
		snprintf(key, sizeof(key), "portal %s", addr);
		rc = apply_portal(addr, tpg > 0 && tpg < 65536 ? (unsigned)tpg : 1);
		if (rc)
			failed(key, rc);
	}
}
