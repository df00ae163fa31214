/* SPDX-License-Identifier: MIT */
/*
 * The NBD server's control plane: listeners and exports as JSON-RPC methods
 * (one per volctl verb), kept in the "nbd" section of the state file and
 * restored at start; a shutdown hook that stops accepting and drains.
 *
 *	nbd.listen	{ address, tls?, tls_cert?, tls_psk?, tls_verify_peer? }
 *							volctl nbd listen ADDR:PORT|unix:PATH
 *							[--tls off|allow|require]
 *							[--tls-cert DIR [--tls-verify-peer] | --tls-psk FILE]
 *	nbd.unlisten	{ address }			volctl nbd unlisten ADDR
 *	nbd.list	{}				volctl nbd list
 *	export.nbd	{ device, name?, readonly?, description?, allow? }
 *							volctl export nbd DISK_OR_VOL [--name N] [--readonly]
 *							[--allow CIDR]...
 *	export.list	{}				volctl export list
 *	unexport.nbd	{ name }			volctl unexport nbd NAME
 *
 * State section:
 *	"nbd": { "listeners": [ "ADDR" | { "address", "tls", "tls_cert"?,
 *					     "tls_psk"?, "tls_verify_peer"? }, ... ],
 *		 "exports": [ { "name", "device", "readonly", "description"?,
 *				"allow"? }, ... ] }
 * (a listener without TLS is kept as a plain string; TLS credentials are
 * kept as paths, never as keys).
 *
 * What the operator configured is kept here even when it cannot be served
 * at start (the device is gone, the port is taken): such entries are listed
 * with their error and can be removed, and their lines in the state file are
 * kept. Everything here runs on the control thread, before it starts (restore)
 * or in its shutdown hooks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/common.h"
#include "sand/daemon.h"
#include "sand/log.h"
#include "sand/nbd.h"
#include "sand/rpc.h"
#include "sand/state.h"

struct cfg_listener {
	struct list_head link;
	char		*addr;
	enum nbd_tls_mode tls;
	char		*cert, *psk;
	bool		verify;
	bool		active;
	char		error[RPC_MSG_MAX];
};

struct cfg_export {
	struct list_head link;
	char		*name, *device, *desc;
	char		**allow;
	unsigned	nallow;
	bool		readonly;
	bool		active;
	char		error[RPC_MSG_MAX];
};

static struct list_head listeners = LIST_HEAD_INIT(listeners);
static struct list_head exports = LIST_HEAD_INIT(exports);

static void cfg_listener_free(struct cfg_listener *l)
{
	free(l->addr);
	free(l->cert);
	free(l->psk);
	free(l);
}

static void cfg_export_free(struct cfg_export *e)
{
	free(e->name);
	free(e->device);
	free(e->desc);
	for (unsigned i = 0; i < e->nallow; i++)
		free(e->allow[i]);
	free(e->allow);
	free(e);
}

static struct cfg_listener *listener_find(const char *addr)
{
	struct list_head *pos;

	list_for_each(pos, &listeners) {
		struct cfg_listener *l = list_entry(pos, struct cfg_listener, link);

		if (!strcmp(l->addr, addr))
			return l;
	}
	return NULL;
}

static struct cfg_export *export_find(const char *name)
{
	struct list_head *pos;

	list_for_each(pos, &exports) {
		struct cfg_export *e = list_entry(pos, struct cfg_export, link);

		if (!strcmp(e->name, name))
			return e;
	}
	return NULL;
}

static json_t *export_config(const struct cfg_export *e)
{
	json_t *o = json_pack("{s:s,s:s,s:b}", "name", e->name, "device", e->device,
			      "readonly", e->readonly);

	if (e->desc && e->desc[0])
		json_object_set_new(o, "description", json_string(e->desc));
	if (e->nallow) {
		json_t *a = json_array();

		for (unsigned i = 0; i < e->nallow; i++)
			json_array_append_new(a, json_string(e->allow[i]));
		json_object_set_new(o, "allow", a);
	}
	return o;
}

static json_t *listener_config(const struct cfg_listener *l)
{
	json_t *o;

	if (l->tls == NBD_TLS_OFF)
		return json_string(l->addr);
	o = json_pack("{s:s,s:s}", "address", l->addr, "tls", nbd_tls_mode_name(l->tls));
	if (l->cert)
		json_object_set_new(o, "tls_cert", json_string(l->cert));
	if (l->psk)
		json_object_set_new(o, "tls_psk", json_string(l->psk));
	if (l->verify)
		json_object_set_new(o, "tls_verify_peer", json_true());
	return o;
}

/* Fill l's TLS settings from params (an RPC call or a state entry). */
static int listener_tls_params(json_t *params, struct cfg_listener *l, struct rpc_err *err)
{
	const char *mode = NULL, *cert = NULL, *psk = NULL;
	bool verify = false;

	if (rpc_param_enum(params, "tls", RPC_OPTIONAL, &mode, err, "off", "allow", "require",
			   NULL) ||
	    rpc_param_str(params, "tls_cert", RPC_OPTIONAL, &cert, err) ||
	    rpc_param_str(params, "tls_psk", RPC_OPTIONAL, &psk, err) ||
	    rpc_param_bool(params, "tls_verify_peer", RPC_OPTIONAL, &verify, err))
		return -1;
	nbd_tls_mode_parse(mode, &l->tls);
	if (l->tls == NBD_TLS_OFF && (cert || psk || verify)) {
		rpc_error(err, RPC_INVALID_PARAMS, "invalid params: TLS credentials need "
			  "'tls' allow or require");
		return -1;
	}
	if (l->tls != NBD_TLS_OFF && !cert == !psk) {
		rpc_error(err, RPC_INVALID_PARAMS, "invalid params: TLS needs one of 'tls_cert' "
			  "(a directory) or 'tls_psk' (a keys file)");
		return -1;
	}
	if (verify && !cert) {
		rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'tls_verify_peer' needs "
			  "'tls_cert'");
		return -1;
	}
	if ((cert && !(l->cert = strdup(cert))) || (psk && !(l->psk = strdup(psk)))) {
		rpc_error(err, RPC_INTERNAL_ERROR, "out of memory");
		return -1;
	}
	l->verify = verify;
	return 0;
}

static int listener_start(const struct cfg_listener *l)
{
	struct nbd_tls_opts o = {
		.mode = l->tls,
		.cert_dir = l->cert,
		.psk_file = l->psk,
		.verify_peer = l->verify,
	};

	return nbd_listen_tls(l->addr, &o);
}

/* The export's allow-list from params ("allow": [CIDR, ...]). */
static int export_allow_params(json_t *params, struct cfg_export *e, struct rpc_err *err)
{
	json_t *a = NULL, *v;
	size_t i;

	if (rpc_param_array(params, "allow", RPC_OPTIONAL, &a, err))
		return -1;
	if (!a || !json_array_size(a))
		return 0;
	if (!json_is_array(a) || json_array_size(a) > 256) {
		rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'allow' must be an array of "
			  "at most 256 CIDRs");
		return -1;
	}
	e->allow = calloc(json_array_size(a), sizeof(*e->allow));
	if (!e->allow) {
		rpc_error(err, RPC_INTERNAL_ERROR, "out of memory");
		return -1;
	}
	json_array_foreach(a, i, v) {
		const char *s = json_string_value(v);

		if (!s || nbd_cidr_check(s)) {
			rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'allow' entry %zu is not "
				  "an IPv4 or IPv6 CIDR (ADDR/BITS)", i);
			return -1;
		}
		if (!(e->allow[e->nallow] = strdup(s))) {
			rpc_error(err, RPC_INTERNAL_ERROR, "out of memory");
			return -1;
		}
		e->nallow++;
	}
	return 0;
}

/* Save the configuration, leaving out skip_* and adding extra_*. */
static int nbd_save(const void *skip, const struct cfg_listener *extra_l,
		    const struct cfg_export *extra_e)
{
	json_t *sec = json_object(), *la = json_array(), *ea = json_array();
	struct list_head *pos;
	int rc;

	if (!sec || !la || !ea) {
		json_decref(sec);
		json_decref(la);
		json_decref(ea);
		return -ENOMEM;
	}
	list_for_each(pos, &listeners) {
		struct cfg_listener *l = list_entry(pos, struct cfg_listener, link);

		if (l != skip)
			json_array_append_new(la, listener_config(l));
	}
	if (extra_l)
		json_array_append_new(la, listener_config(extra_l));
	list_for_each(pos, &exports) {
		struct cfg_export *e = list_entry(pos, struct cfg_export, link);

		if (e != skip)
			json_array_append_new(ea, export_config(e));
	}
	if (extra_e)
		json_array_append_new(ea, export_config(extra_e));
	json_object_set_new(sec, "listeners", la);
	json_object_set_new(sec, "exports", ea);
	rc = state_set("nbd", sec);
	json_decref(sec);
	return rc;
}

static json_t *save_error(struct rpc_err *err, int rc)
{
	rpc_error_errno(err, rc, "saving %s", state_path());
	err->code = RPC_ERR_IO;
	return NULL;
}

/* ---------------------------------------------------------------- listeners */

struct bound_ctx {
	const char	*addr;
	char		bound[300];
	unsigned	reactor;
};

static void find_bound(const struct nbd_listener_info *l, void *arg)
{
	struct bound_ctx *b = arg;

	if (!strcmp(l->addr, b->addr)) {
		snprintf(b->bound, sizeof(b->bound), "%s", l->bound);
		b->reactor = l->reactor;
	}
}

static json_t *listener_info(const struct cfg_listener *l)
{
	struct bound_ctx b = { .addr = l->addr };
	json_t *o;

	if (l->active)
		nbd_listener_foreach(find_bound, &b);
	o = json_pack("{s:s,s:s}", "address", l->addr, "state", l->active ? "listening" : "failed");
	json_object_set_new(o, "bound", b.bound[0] ? json_string(b.bound) : json_null());
	json_object_set_new(o, "tls", json_string(nbd_tls_mode_name(l->tls)));
	if (l->cert)
		json_object_set_new(o, "tls_cert", json_string(l->cert));
	if (l->psk)
		json_object_set_new(o, "tls_psk", json_string(l->psk));
	if (l->verify)
		json_object_set_new(o, "tls_verify_peer", json_true());
	if (!l->active)
		json_object_set_new(o, "error", json_string(l->error));
	return o;
}

static json_t *m_listen(json_t *params, void *arg, struct rpc_err *err)
{
	const char *addr = NULL;
	struct cfg_listener *l;
	int rc;

	if (rpc_params_only(params, err, "address", "tls", "tls_cert", "tls_psk",
			    "tls_verify_peer", NULL) ||
	    rpc_param_str(params, "address", RPC_REQUIRED, &addr, err))
		return NULL;
	if (listener_find(addr))
		return rpc_error(err, RPC_ERR_EXISTS, "already listening on %.200s", addr);
	l = calloc(1, sizeof(*l));
	if (!l || !(l->addr = strdup(addr))) {
		free(l);
		return rpc_error(err, RPC_INTERNAL_ERROR, "out of memory");
	}
	if (listener_tls_params(params, l, err)) {
		cfg_listener_free(l);
		return NULL;
	}
	rc = listener_start(l);
	if (rc) {
		bool tls = l->tls != NBD_TLS_OFF;

		cfg_listener_free(l);
		if (tls && (rc == -EPROTO || rc == -ENOENT || rc == -EACCES))
			return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: cannot load the "
					 "TLS credentials (%s): see the daemon log", strerror(-rc));
		if (rc == -EINVAL)
			return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'address' must be "
					 "ADDR:PORT, [IPV6]:PORT or unix:PATH, not '%.200s'", addr);
		return rpc_error_errno(err, rc, "listening on %.200s", addr);
	}
	l->active = true;
	rc = nbd_save(NULL, l, NULL);
	if (rc) {
		nbd_unlisten(addr);
		cfg_listener_free(l);
		return save_error(err, rc);
	}
	list_add_tail(&l->link, &listeners);
	return listener_info(l);
}

static json_t *m_unlisten(json_t *params, void *arg, struct rpc_err *err)
{
	const char *addr = NULL;
	struct cfg_listener *l;
	int rc;

	if (rpc_params_only(params, err, "address", NULL) ||
	    rpc_param_str(params, "address", RPC_REQUIRED, &addr, err))
		return NULL;
	l = listener_find(addr);
	if (!l)
		return rpc_error(err, RPC_ERR_NOT_FOUND, "not listening on %.200s", addr);
	rc = nbd_save(l, NULL, NULL);
	if (rc)
		return save_error(err, rc);
	if (l->active)
		nbd_unlisten(addr);
	list_del(&l->link);
	cfg_listener_free(l);
	return json_pack("{s:s}", "address", addr);
}

static json_t *m_list(json_t *params, void *arg, struct rpc_err *err)
{
	struct list_head *pos;
	json_t *a;

	if (rpc_params_only(params, err, NULL))
		return NULL;
	a = json_array();
	list_for_each(pos, &listeners)
		json_array_append_new(a, listener_info(list_entry(pos, struct cfg_listener, link)));
	return a;
}

/* ---------------------------------------------------------------- exports */

struct clients_ctx {
	const char	*name;
	unsigned	clients;
	uint64_t	size;
	bool		readonly;	/* the device is (a snapshot, say) */
};

static void find_export(const struct nbd_export_info *e, void *arg)
{
	struct clients_ctx *c = arg;

	if (!strcmp(e->name, c->name)) {
		c->clients = e->clients;
		c->size = e->size;
		c->readonly = e->readonly;
	}
}

static json_t *export_info(const struct cfg_export *e)
{
	struct clients_ctx c = { .name = e->name };
	json_t *o;

	if (e->active)
		nbd_export_foreach(find_export, &c);
	o = json_pack("{s:s,s:s,s:s,s:s,s:b,s:I,s:i}", "protocol", "nbd", "name", e->name,
		      "device", e->device, "state", e->active ? "exported" : "failed",
		      "readonly", e->readonly || c.readonly, "size", (json_int_t)c.size,
		      "clients", (int)c.clients);
	json_object_set_new(o, "description", json_string(e->desc ? e->desc : ""));
	if (e->nallow) {
		json_t *a = json_array();

		for (unsigned i = 0; i < e->nallow; i++)
			json_array_append_new(a, json_string(e->allow[i]));
		json_object_set_new(o, "allow", a);
	}
	if (!e->active)
		json_object_set_new(o, "error", json_string(e->error));
	return o;
}

static int export_start(struct cfg_export *e)
{
	struct blkdev *bd = blkdev_find(e->device);

	if (!bd)
		return -ENODEV;
	return nbd_export_add_allow(e->name, bd, e->readonly, e->desc,
				    (const char *const *)e->allow, e->nallow);
}

static json_t *m_export(json_t *params, void *arg, struct rpc_err *err)
{
	const char *device = NULL, *name = NULL, *desc = NULL;
	bool ro = false;
	struct cfg_export *e;
	int rc;

	if (rpc_params_only(params, err, "device", "name", "readonly", "description", "allow",
			    NULL) ||
	    rpc_param_str(params, "device", RPC_REQUIRED, &device, err) ||
	    rpc_param_name(params, "name", RPC_OPTIONAL, &name, err) ||
	    rpc_param_bool(params, "readonly", RPC_OPTIONAL, &ro, err) ||
	    rpc_param_str(params, "description", RPC_OPTIONAL, &desc, err))
		return NULL;
	if (!name)
		name = device;
	if (!rpc_name_valid(name))
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: '%.64s' is not a valid "
				 "export name; give one with 'name'", name);
	if (desc && strlen(desc) > 1024)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'description' is "
				 "longer than 1024 bytes");
	if (export_find(name))
		return rpc_error(err, RPC_ERR_EXISTS, "an nbd export named '%s' exists already", name);
	if (!blkdev_find(device))
		return rpc_error(err, RPC_ERR_NOT_FOUND, "no disk or volume named '%.64s'", device);
	e = calloc(1, sizeof(*e));
	if (!e || !(e->name = strdup(name)) || !(e->device = strdup(device)) ||
	    !(e->desc = strdup(desc ? desc : ""))) {
		if (e)
			cfg_export_free(e);
		return rpc_error(err, RPC_INTERNAL_ERROR, "out of memory");
	}
	e->readonly = ro;
	if (export_allow_params(params, e, err)) {
		cfg_export_free(e);
		return NULL;
	}
	rc = export_start(e);
	if (rc) {
		cfg_export_free(e);
		if (rc == -EBUSY) {
			struct blkdev *bd = blkdev_find(device);
			char claims[256] = "";

			if (bd)
				blkdev_claims(bd, claims, sizeof(claims));
			return rpc_error(err, RPC_ERR_BUSY, "'%s' is in use by '%s'", device,
					 claims[0] ? claims : "another owner");
		}
		return rpc_error_errno(err, rc, "exporting '%s' as '%s'", device, name);
	}
	e->active = true;
	rc = nbd_save(NULL, NULL, e);
	if (rc) {
		nbd_export_remove(name);
		cfg_export_free(e);
		return save_error(err, rc);
	}
	list_add_tail(&e->link, &exports);
	return export_info(e);
}

static json_t *m_unexport(json_t *params, void *arg, struct rpc_err *err)
{
	const char *name = NULL;
	struct cfg_export *e;
	int rc;

	if (rpc_params_only(params, err, "name", NULL) ||
	    rpc_param_str(params, "name", RPC_REQUIRED, &name, err))
		return NULL;
	e = export_find(name);
	if (!e)
		return rpc_error(err, RPC_ERR_NOT_FOUND, "no nbd export named '%.64s'", name);
	rc = nbd_save(e, NULL, NULL);
	if (rc)
		return save_error(err, rc);
	if (e->active)
		nbd_export_remove(name);	/* drains its clients first */
	list_del(&e->link);
	cfg_export_free(e);
	return json_pack("{s:s}", "removed", name);
}

static json_t *m_export_list(json_t *params, void *arg, struct rpc_err *err)
{
	struct list_head *pos;
	json_t *a;

	if (rpc_params_only(params, err, NULL))
		return NULL;
	a = json_array();
	list_for_each(pos, &exports)
		json_array_append_new(a, export_info(list_entry(pos, struct cfg_export, link)));
	return a;
}

/* ---------------------------------------------------------------- life */

static void nbd_stop(void *arg)
{
	(void)arg;
	nbd_shutdown();		/* stop accepting, drain, close */
	while (!list_empty(&listeners)) {
		struct cfg_listener *l = list_first_entry(&listeners, struct cfg_listener, link);

		list_del(&l->link);
		cfg_listener_free(l);
	}
	while (!list_empty(&exports)) {
		struct cfg_export *e = list_first_entry(&exports, struct cfg_export, link);

		list_del(&e->link);
		cfg_export_free(e);
	}
}

void nbd_rpc_init(void)
{
	rpc_register("nbd.listen", m_listen, NULL);
	rpc_register("nbd.unlisten", m_unlisten, NULL);
	rpc_register("nbd.list", m_list, NULL);
	rpc_register("export.nbd", m_export, NULL);
	rpc_register("export.list", m_export_list, NULL);
	rpc_register("unexport.nbd", m_unexport, NULL);
	daemon_on_shutdown("nbd", nbd_stop, NULL);
}

/* Exports first, so that no client connects before its export exists. */
void nbd_restore(void)
{
	json_t *sec = state_get("nbd"), *a, *v;
	size_t i;

	if (!sec)
		return;
	if (!json_is_object(sec)) {
		LOG_ERR(LS_NBD, "%s: \"nbd\" is not an object: ignoring it", state_path());
		json_decref(sec);
		return;
	}
	a = json_object_get(sec, "exports");
	json_array_foreach(a, i, v) {
		struct rpc_err err = { 0 };
		const char *name = NULL, *device = NULL, *desc = NULL;
		bool ro = false;
		struct cfg_export *e;
		int rc;

		if (rpc_param_name(v, "name", RPC_REQUIRED, &name, &err) ||
		    rpc_param_str(v, "device", RPC_REQUIRED, &device, &err) ||
		    rpc_param_bool(v, "readonly", RPC_OPTIONAL, &ro, &err) ||
		    rpc_param_str(v, "description", RPC_OPTIONAL, &desc, &err) ||
		    export_find(name)) {
			LOG_ERR(LS_NBD, "%s: nbd export %zu: %s: skipped", state_path(), i,
				err.message[0] ? err.message : "duplicate name");
			json_decref(err.data);
			continue;
		}
		e = calloc(1, sizeof(*e));
		if (!e || !(e->name = strdup(name)) || !(e->device = strdup(device)) ||
		    !(e->desc = strdup(desc ? desc : ""))) {
			if (e)
				cfg_export_free(e);
			break;
		}
		e->readonly = ro;
		if (export_allow_params(v, e, &err)) {
			LOG_ERR(LS_NBD, "%s: nbd export %s: %s: skipped", state_path(), name,
				err.message);
			json_decref(err.data);
			cfg_export_free(e);
			continue;
		}
		rc = export_start(e);
		if (rc) {
			snprintf(e->error, sizeof(e->error), "%s", rc == -ENODEV ?
				 "no such disk or volume" : strerror(-rc));
			LOG_ERR(LS_NBD, "restoring nbd export %s of %s: %s", name, device, e->error);
		} else {
			e->active = true;
		}
		list_add_tail(&e->link, &exports);
	}
	a = json_object_get(sec, "listeners");
	json_array_foreach(a, i, v) {
		const char *addr = json_is_object(v) ? json_string_value(json_object_get(v, "address")) :
				   json_string_value(v);
		struct rpc_err err = { 0 };
		struct cfg_listener *l;
		int rc;

		if (!addr || listener_find(addr)) {
			LOG_ERR(LS_NBD, "%s: nbd listener %zu: no address or a duplicate: skipped",
				state_path(), i);
			continue;
		}
		l = calloc(1, sizeof(*l));
		if (!l || !(l->addr = strdup(addr))) {
			free(l);
			break;
		}
		if (json_is_object(v) && listener_tls_params(v, l, &err)) {
			LOG_ERR(LS_NBD, "%s: nbd listener %s: %s: skipped", state_path(), addr,
				err.message);
			json_decref(err.data);
			cfg_listener_free(l);
			continue;
		}
		rc = listener_start(l);
		if (rc) {
			snprintf(l->error, sizeof(l->error), "%s", strerror(-rc));
			LOG_ERR(LS_NBD, "restoring nbd listener %s: %s", addr, l->error);
		} else {
			l->active = true;
		}
		list_add_tail(&l->link, &listeners);
	}
	json_decref(sec);
}
