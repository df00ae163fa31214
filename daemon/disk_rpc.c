/* SPDX-License-Identifier: MIT */
/*
 * disk.add, disk.remove, disk.list: the leaf block devices the operator
 * configured (files, block devices, memory and null devices), kept in the
 * "disks" section of the state file and reopened at start.
 *
 * The disk list is owned by the control thread (handlers, disk_restore and
 * disk_close_all all run there or before/after it).
 *
 * State section: an array, in the order the disks were added, of
 *	{ "name", "backend", "path"?, "size"?, "block_size"?, "readonly" }
 * with the values the operator gave (size and block_size 0 or absent: the
 * file's own). A disk that fails to reopen at start stays in the list in
 * state "failed" with the reason, so that it can be seen and removed; its
 * entry in the state file is kept.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "sand/blkdev.h"
#include "sand/common.h"
#include "sand/daemon.h"
#include "sand/log.h"
#include "sand/reactor.h"
#include "sand/rpc.h"
#include "sand/state.h"

struct disk {
	struct list_head link;
	char		name[BLK_NAME_MAX];
	char		*path;		/* NULL for mem/null */
	const char	*backend;	/* as configured: auto, uring, aio, psync, mem, null */
	uint64_t	size;		/* as configured, 0: the file's */
	uint32_t	block_size;	/* as configured, 0: the device's */
	bool		readonly;
	struct blkdev	*bd;		/* NULL: failed to open */
	char		error[RPC_MSG_MAX];
};

static struct list_head disks = LIST_HEAD_INIT(disks);

static const char *const backends[] = { "auto", "uring", "aio", "psync", "mem", "null" };

static bool is_file_backend(const char *b)
{
	return strcmp(b, "mem") && strcmp(b, "null");
}

static struct disk *disk_find(const char *name)
{
	struct list_head *pos;

	list_for_each(pos, &disks) {
		struct disk *d = list_entry(pos, struct disk, link);

		if (!strcmp(d->name, name))
			return d;
	}
	return NULL;
}

static struct disk *disk_find_path(const char *path)
{
	struct list_head *pos;

	list_for_each(pos, &disks) {
		struct disk *d = list_entry(pos, struct disk, link);

		if (d->path && !strcmp(d->path, path))
			return d;
	}
	return NULL;
}

static void disk_free(struct disk *d)
{
	free(d->path);
	free(d);
}

/* auto: what blk_file_open picks, except that reactors on epoll loops
 * cannot drive io_uring disks, so those get libaio. */
static enum blk_file_backend file_backend(const char *b)
{
	struct ev_loop *l = reactor_loop(0);

	if (!strcmp(b, "uring"))
		return BLK_FILE_URING;
	if (!strcmp(b, "aio"))
		return BLK_FILE_AIO;
	if (!strcmp(b, "psync"))
		return BLK_FILE_PSYNC;
	if (l && ev_loop_backend(l) == EV_EPOLL)
		return BLK_FILE_AIO;
	return BLK_FILE_AUTO;
}

/* Open and register d->bd; create: make a missing file of d->size. */
static int disk_open(struct disk *d, bool create)
{
	struct blkdev *bd;
	int rc;

	if (!strcmp(d->backend, "mem")) {
		rc = blk_mem_create(d->name, d->size, d->block_size, &bd);
	} else if (!strcmp(d->backend, "null")) {
		rc = blk_null_create(d->name, d->size, d->block_size, &bd);
	} else {
		struct blk_file_opts o = {
			.backend = file_backend(d->backend),
			.block_size = d->block_size,
			.readonly = d->readonly,
			.create_size = create ? d->size : 0,
		};

		rc = blk_file_open(d->name, d->path, &o, &bd);
	}
	if (rc)
		return rc;
	if (d->readonly)
		bd->readonly = true;
	rc = blkdev_register(bd);
	if (rc) {
		blkdev_close(bd);
		return rc;
	}
	d->bd = bd;
	return 0;
}

static json_t *disk_config(const struct disk *d)
{
	json_t *o = json_pack("{s:s,s:s,s:b}", "name", d->name, "backend", d->backend,
			      "readonly", d->readonly);

	if (d->path)
		json_object_set_new(o, "path", json_string(d->path));
	if (d->size)
		json_object_set_new(o, "size", json_integer((json_int_t)d->size));
	if (d->block_size)
		json_object_set_new(o, "block_size", json_integer(d->block_size));
	return o;
}

/* Save the list, leaving out `skip` and adding `extra` at the end. */
static int disks_save(const struct disk *skip, const struct disk *extra)
{
	json_t *a = json_array();
	struct list_head *pos;
	int rc;

	if (!a)
		return -ENOMEM;
	list_for_each(pos, &disks) {
		struct disk *d = list_entry(pos, struct disk, link);

		if (d != skip)
			json_array_append_new(a, disk_config(d));
	}
	if (extra)
		json_array_append_new(a, disk_config(extra));
	rc = state_set("disks", a);
	json_decref(a);
	return rc;
}

static json_t *disk_info(const struct disk *d)
{
	struct blkdev *bd = d->bd;
	char claims[sizeof(bd->claim)] = "";
	json_t *o = json_pack("{s:s,s:s,s:s}", "name", d->name,
			      "state", bd ? "open" : "failed",
			      "backend", bd ? bd->ops->name : d->backend);

	json_object_set_new(o, "path", d->path ? json_string(d->path) : json_null());
	json_object_set_new(o, "size", json_integer((json_int_t)(bd ? bd->size : d->size)));
	json_object_set_new(o, "block_size", json_integer(bd ? bd->block_size : d->block_size));
	json_object_set_new(o, "direct", json_boolean(bd && bd->direct));
	json_object_set_new(o, "readonly", json_boolean(bd ? bd->readonly : d->readonly));
	if (bd)
		blkdev_claims(bd, claims, sizeof(claims));
	json_object_set_new(o, "claimed_by", claims[0] ? json_string(claims) : json_null());
	if (!bd)
		json_object_set_new(o, "error", json_string(d->error));
	return o;
}

static json_t *disk_add(json_t *params, void *arg, struct rpc_err *err)
{
	const char *name = NULL, *path = NULL, *backend = "auto";
	uint64_t size = 0;
	uint32_t bs = 0;
	bool ro = false;
	struct disk *d, *other;
	int rc;

	if (rpc_params_only(params, err, "name", "path", "backend", "size", "block_size",
			    "readonly", NULL) ||
	    rpc_param_name(params, "name", RPC_REQUIRED, &name, err) ||
	    rpc_param_str(params, "path", RPC_OPTIONAL, &path, err) ||
	    rpc_param_enum(params, "backend", RPC_OPTIONAL, &backend, err,
			   "auto", "uring", "aio", "psync", "mem", "null", NULL) ||
	    rpc_param_size(params, "size", RPC_OPTIONAL, &size, err) ||
	    rpc_param_u32(params, "block_size", RPC_OPTIONAL, &bs, err) ||
	    rpc_param_bool(params, "readonly", RPC_OPTIONAL, &ro, err))
		return NULL;
	if (bs && (!IS_POW2(bs) || bs < 512 || bs > 65536))
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'block_size' must be "
				 "a power of two from 512 to 65536, not %u", bs);
	if (size && size % (bs ? bs : 512))
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'size' %llu is not a "
				 "multiple of the block size %u", (unsigned long long)size,
				 bs ? bs : 512);
	if (is_file_backend(backend)) {
		if (!path)
			return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'path' is "
					 "required for the %s backend", backend);
		if (path[0] != '/')
			return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'path' must be "
					 "absolute, not '%.200s'", path);
		other = disk_find_path(path);
		if (other)
			return rpc_error(err, RPC_ERR_BUSY, "%.200s is already disk '%s'", path,
					 other->name);
	} else {
		if (path)
			return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'path' is not "
					 "used by the %s backend", backend);
		if (!size)
			return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'size' is "
					 "required for the %s backend", backend);
	}
	if (disk_find(name) || blkdev_find(name))
		return rpc_error(err, RPC_ERR_EXISTS, "a disk or device named '%s' exists already",
				 name);

	d = calloc(1, sizeof(*d));
	if (!d)
		return rpc_error(err, RPC_INTERNAL_ERROR, "out of memory");
	snprintf(d->name, sizeof(d->name), "%s", name);
	for (size_t i = 0; i < ARRAY_SIZE(backends); i++)
		if (!strcmp(backends[i], backend))
			d->backend = backends[i];
	d->size = size;
	d->block_size = bs;
	d->readonly = ro;
	if (path && !(d->path = strdup(path))) {
		disk_free(d);
		return rpc_error(err, RPC_INTERNAL_ERROR, "out of memory");
	}
	rc = disk_open(d, true);
	if (rc) {
		rpc_error_errno(err, rc, "opening disk '%s'%s%.200s with the %s backend", name,
				path ? " on " : "", path ? path : "", backend);
		disk_free(d);
		return NULL;
	}
	rc = disks_save(NULL, d);
	if (rc) {
		blkdev_close(d->bd);
		rpc_error_errno(err, rc, "saving %s", state_path());
		err->code = RPC_ERR_IO;
		disk_free(d);
		return NULL;
	}
	list_add_tail(&d->link, &disks);
	LOG_INFO(LS_BLK, "disk %s added: %s %s", d->name, d->bd->ops->name,
		 d->path ? d->path : "(memory)");
	return disk_info(d);
}

static void disk_flush_close(struct disk *d)
{
	int rc;

	if (!d->bd)
		return;
	if (!d->bd->readonly) {
		rc = blk_sync_io(d->bd, BIO_FLUSH, 0, 0, NULL, 0);
		if (rc)
			LOG_ERR(LS_BLK, "flushing disk %s: %s", d->name, strerror(-rc));
	}
	rc = blkdev_close(d->bd);
	if (rc) {
		char claims[sizeof(d->bd->claim)];

		blkdev_claims(d->bd, claims, sizeof(claims));
		LOG_ERR(LS_BLK, "closing disk %s: %s (still in use by '%s')", d->name,
			strerror(-rc), claims[0] ? claims : "an open channel");
		return;
	}
	d->bd = NULL;
}

static json_t *disk_remove(json_t *params, void *arg, struct rpc_err *err)
{
	const char *name = NULL;
	char claims[256] = "";
	struct disk *d;
	int rc;

	if (rpc_params_only(params, err, "name", NULL) ||
	    rpc_param_str(params, "name", RPC_REQUIRED, &name, err))
		return NULL;
	d = disk_find(name);
	if (!d)
		return rpc_error(err, RPC_ERR_NOT_FOUND, "no disk named '%.64s'", name);
	if (d->bd)
		blkdev_claims(d->bd, claims, sizeof(claims));
	if (claims[0])
		return rpc_error(err, RPC_ERR_BUSY, "disk '%s' is in use by '%s'", name, claims);
	if (d->bd && __atomic_load_n(&d->bd->nchans, __ATOMIC_ACQUIRE))
		return rpc_error(err, RPC_ERR_BUSY, "disk '%s' has I/O channels open", name);
	rc = disks_save(d, NULL);
	if (rc) {
		rpc_error_errno(err, rc, "saving %s", state_path());
		err->code = RPC_ERR_IO;
		return NULL;
	}
	disk_flush_close(d);
	if (d->bd) {		/* lost a race with a claimant: put it back */
		disks_save(NULL, NULL);
		return rpc_error(err, RPC_ERR_BUSY, "disk '%s' is in use", name);
	}
	list_del(&d->link);
	LOG_INFO(LS_BLK, "disk %s removed", d->name);
	disk_free(d);
	return json_pack("{s:s}", "removed", name);
}

static json_t *disk_list(json_t *params, void *arg, struct rpc_err *err)
{
	json_t *a;
	struct list_head *pos;

	if (rpc_params_only(params, err, NULL))
		return NULL;
	a = json_array();
	list_for_each(pos, &disks)
		json_array_append_new(a, disk_info(list_entry(pos, struct disk, link)));
	return a;
}

void disk_rpc_init(void)
{
	rpc_register("disk.add", disk_add, NULL);
	rpc_register("disk.remove", disk_remove, NULL);
	rpc_register("disk.list", disk_list, NULL);
}

void disk_restore(void)
{
	json_t *a = state_get("disks"), *v;
	size_t i;

	if (!a)
		return;
	if (!json_is_array(a)) {
		LOG_ERR(LS_BLK, "%s: \"disks\" is not an array: ignoring it", state_path());
		json_decref(a);
		return;
	}
	json_array_foreach(a, i, v) {
		struct rpc_err err = { 0 };
		const char *name = NULL, *path = NULL, *backend = "auto";
		struct disk *d;
		int rc;

		if (rpc_param_name(v, "name", RPC_REQUIRED, &name, &err) ||
		    rpc_param_str(v, "path", RPC_OPTIONAL, &path, &err) ||
		    rpc_param_enum(v, "backend", RPC_OPTIONAL, &backend, &err,
				   "auto", "uring", "aio", "psync", "mem", "null", NULL)) {
			LOG_ERR(LS_BLK, "%s: disk %zu: %s: skipped", state_path(), i, err.message);
			json_decref(err.data);
			continue;
		}
		if (disk_find(name)) {
			LOG_ERR(LS_BLK, "%s: disk %s appears twice: skipped", state_path(), name);
			continue;
		}
		d = calloc(1, sizeof(*d));
		if (!d)
			break;
		snprintf(d->name, sizeof(d->name), "%s", name);
		for (size_t k = 0; k < ARRAY_SIZE(backends); k++)
			if (!strcmp(backends[k], backend))
				d->backend = backends[k];
		if (rpc_param_size(v, "size", RPC_OPTIONAL, &d->size, &err) ||
		    rpc_param_u32(v, "block_size", RPC_OPTIONAL, &d->block_size, &err) ||
		    rpc_param_bool(v, "readonly", RPC_OPTIONAL, &d->readonly, &err)) {
			snprintf(d->error, sizeof(d->error), "%s", err.message);
			json_decref(err.data);
			rc = -EINVAL;
		} else if (path && !(d->path = strdup(path))) {
			rc = -ENOMEM;
		} else {
			rc = disk_open(d, false);
			if (rc)
				snprintf(d->error, sizeof(d->error), "%s", strerror(-rc));
		}
		if (rc)
			LOG_ERR(LS_BLK, "reopening disk %s: %s", d->name, d->error);
		else
			LOG_INFO(LS_BLK, "disk %s reopened: %s %s", d->name, d->bd->ops->name,
				 d->path ? d->path : "(memory)");
		list_add_tail(&d->link, &disks);
	}
	json_decref(a);
}

/* ------------------------------------------------------------ moved disks */

#define SCAN_DIRS	8
#define SCAN_FILES	4096	/* looked at per directory, at most */

static char *scan_dirs[SCAN_DIRS];
static unsigned nscan;

int disk_scan_dir_add(const char *dir)
{
	if (nscan == SCAN_DIRS)
		return -ENOSPC;
	scan_dirs[nscan] = strdup(dir);
	if (!scan_dirs[nscan])
		return -ENOMEM;
	nscan++;
	return 0;
}

/* Does the file at path hold what match() wants? */
static bool scan_try(struct disk *d, const char *path,
		     bool (*match)(struct blkdev *bd, void *arg), void *arg)
{
	struct blk_file_opts o = { .backend = BLK_FILE_PSYNC, .readonly = true };
	struct blkdev *bd;
	struct stat st;
	bool ok;

	if (stat(path, &st) || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) ||
	    disk_find_path(path))
		return false;
	if (blk_file_open(d->name, path, &o, &bd))
		return false;
	ok = match(bd, arg);
	blkdev_close(bd);
	return ok;
}

int disk_relocate(const char *name, bool (*match)(struct blkdev *bd, void *arg), void *arg)
{
	struct disk *d = disk_find(name);
	const char *base;
	char path[PATH_MAX], *old;
	int rc;

	if (!d || d->bd || !d->path || !nscan)
		return -ENOENT;
	base = strrchr(d->path, '/') ? strrchr(d->path, '/') + 1 : d->path;
	path[0] = '\0';
	/* the same file name in a scanned directory first, then any file */
	for (unsigned i = 0; i < nscan && !path[0]; i++) {
		snprintf(path, sizeof(path), "%s/%s", scan_dirs[i], base);
		if (!scan_try(d, path, match, arg))
			path[0] = '\0';
	}
	for (unsigned i = 0; i < nscan && !path[0]; i++) {
		DIR *dir = opendir(scan_dirs[i]);
		struct dirent *de;
		unsigned n = 0;

		if (!dir)
			continue;
		while (!path[0] && n++ < SCAN_FILES && (de = readdir(dir))) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", scan_dirs[i], de->d_name);
			if (!scan_try(d, path, match, arg))
				path[0] = '\0';
		}
		closedir(dir);
	}
	if (!path[0])
		return -ENOENT;
	old = d->path;
	d->path = strdup(path);
	if (!d->path) {
		d->path = old;
		return -ENOMEM;
	}
	rc = disk_open(d, false);
	if (rc) {
		free(d->path);
		d->path = old;
		return rc;
	}
	LOG_WARN(LS_BLK, "disk %s moved: found at %s (was %s)", d->name, d->path, old);
	free(old);
	d->error[0] = '\0';
	rc = disks_save(NULL, NULL);
	if (rc)
		LOG_ERR(LS_BLK, "saving %s: %s", state_path(), strerror(-rc));
	return 0;
}

void disk_close_all(void)
{
	struct list_head *pos, *tmp;

	list_for_each_safe(pos, tmp, &disks) {
		struct disk *d = list_entry(pos, struct disk, link);

		disk_flush_close(d);
		if (d->bd)
			continue;	/* still in use: leave it */
		list_del(&d->link);
		disk_free(d);
	}
	while (nscan)
		free(scan_dirs[--nscan]);
}
