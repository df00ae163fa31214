/* SPDX-License-Identifier: MIT */
/*
 * Pools and thin volumes in the daemon: pool.create / list / show / destroy
 * (a RAID set over disks from disk.add, a thin pool on it) and vol.create /
 * list / show / delete / snapshot / clone (thin volumes, read-only
 * snapshots VOL@SNAP, writable clones). doc/pools.md is the user's view.
 *
 * Every volume and snapshot is open while its pool is, and registered in
 * the blkdev registry under its name, so exports find it with blkdev_find()
 * (snapshots are read-only devices).
 *
 * Volumes live in the pool's own metadata (sand/thin.h). The state section
 * "pools" holds, per pool, what is needed to find it again and what the
 * metadata does not record:
 *	[ { "name", "level", "strip", "chunk", "members": [ disk names ],
 *	    "volumes": { VOL: { "origin": NAME|null, "created": "20261126T183000Z" } } } ]
 * The "volumes" object is annotation only: a volume the metadata has and
 * the file does not still comes back (origin and created unknown).
 *
 * At start (pool_restore, after disk_restore and before the exports), each
 * pool is assembled from its member disks (raid_assemble), its thin pool
 * opened, and every volume opened and registered again. A pool that fails
 * stays listed in state "failed" with the reason, and can be destroyed.
 *
 * Everything here runs on the control thread (handlers, restore, the
 * shutdown hook); the pools' own threads do the I/O.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "sand/blkdev.h"
#include "sand/common.h"
#include "sand/daemon.h"
#include "sand/log.h"
#include "sand/raid.h"
#include "sand/rpc.h"
#include "sand/state.h"
#include "sand/thin.h"

#define SECTION		"pools"
#define STRIP_DEFAULT	(64u * 1024)
#define LOW_SPACE_PCT	10	/* low-space announcement below this much free */

struct vol {
	struct list_head link;
	char		name[THIN_NAME_MAX];
	struct blkdev	*bd;		/* open and registered; NULL: failed */
	char		error[128];
};

struct pool {
	struct list_head link;
	char		name[BLK_NAME_MAX];
	int		level;
	uint32_t	strip, chunk;
	uint32_t	nmembers;
	char		members[RAID_MAX_MEMBERS][BLK_NAME_MAX];	/* disk names */
	int		slot[RAID_MAX_MEMBERS];	/* members[i]'s slot in the set, -1: unknown */
	json_t		*vmeta;		/* volume annotations, see above */
	struct blkdev	*raid;		/* NULL: failed */
	struct thin_pool *tp;
	uint64_t	low_water;	/* chunks */
	uint32_t	low_pct;	/* low_water as a percentage of the data area */
	struct list_head vols;
	char		error[RPC_MSG_MAX];
	char		spares[RAID_MAX_MEMBERS][BLK_NAME_MAX];	/* hot spare disks */
	uint32_t	nspares;
	uint64_t	rate;		/* rebuild/scrub rate limit, bytes/s per disk, 0: none */
};

static struct list_head pools = LIST_HEAD_INIT(pools);

static int pools_save(const struct pool *skip);

/* ------------------------------------------------------------ helpers */

static struct pool *pool_find(const char *name)
{
	struct list_head *pos;

	list_for_each(pos, &pools) {
		struct pool *p = list_entry(pos, struct pool, link);

		if (!strcmp(p->name, name))
			return p;
	}
	return NULL;
}

static struct vol *vol_find(const char *name, struct pool **pp)
{
	struct list_head *pos, *vpos;

	list_for_each(pos, &pools) {
		struct pool *p = list_entry(pos, struct pool, link);

		list_for_each(vpos, &p->vols) {
			struct vol *v = list_entry(vpos, struct vol, link);

			if (!strcmp(v->name, name)) {
				if (pp)
					*pp = p;
				return v;
			}
		}
	}
	return NULL;
}

static bool is_member(const char *disk, struct pool **owner)
{
	struct list_head *pos;

	list_for_each(pos, &pools) {
		struct pool *p = list_entry(pos, struct pool, link);

		for (uint32_t i = 0; i < p->nmembers; i++)
			if (!strcmp(p->members[i], disk)) {
				*owner = p;
				return true;
			}
		for (uint32_t i = 0; i < p->nspares; i++)
			if (!strcmp(p->spares[i], disk)) {
				*owner = p;
				return true;
			}
	}
	return false;
}

static int member_index(const struct pool *p, const char *disk)
{
	for (uint32_t i = 0; i < p->nmembers; i++)
		if (!strcmp(p->members[i], disk))
			return (int)i;
	return -1;
}

/*
 * The set changes its members on its own: a hot spare takes the slot of a
 * member that failed. Bring members[], slot[] and spares[] in line with it
 * (the disk replaced leaves the pool: the set has released it) and save.
 */
static void pool_sync(struct pool *p)
{
	struct blkdev *sp[RAID_MAX_MEMBERS];
	char names[RAID_MAX_MEMBERS][BLK_NAME_MAX];
	uint32_t nsp, n = 0, nslots;
	bool changed = false;
	int rc;

	if (!p->raid)
		return;
	nslots = 0;
	while (nslots < RAID_MAX_MEMBERS && raid_member_state(p->raid, nslots) >= 0)
		nslots++;
	for (uint32_t s = 0; s < nslots; s++) {
		struct blkdev *bd = raid_member_dev(p->raid, s);
		int i, gone = -1;

		if (!bd)
			continue;
		i = member_index(p, bd->name);
		if (i >= 0) {
			if (p->slot[i] != (int)s) {
				p->slot[i] = (int)s;
				changed = true;
			}
			continue;
		}
		/* a spare took slot s: it replaces the disk that had the slot */
		for (uint32_t k = 0; k < p->nmembers && gone < 0; k++)
			if (p->slot[k] == (int)s)
				gone = (int)k;
		for (uint32_t k = 0; k < p->nmembers && gone < 0; k++)
			if (p->slot[k] < 0)
				gone = (int)k;
		if (gone < 0) {		/* its disk left the pool already */
			if (p->nmembers == RAID_MAX_MEMBERS)
				continue;
			gone = (int)p->nmembers++;
			snprintf(p->members[gone], sizeof(p->members[gone]), "%s", "");
		}
		LOG_INFO(LS_RAID, "pool %s: slot %u: disk %s replaces %s", p->name, s, bd->name,
			 p->members[gone][0] ? p->members[gone] : "a disk gone");
		snprintf(p->members[gone], sizeof(p->members[gone]), "%s", bd->name);
		p->slot[gone] = (int)s;
		changed = true;
	}
	nsp = raid_spares(p->raid, sp, RAID_MAX_MEMBERS);
	for (uint32_t i = 0; i < nsp && i < RAID_MAX_MEMBERS; i++)
		if (member_index(p, sp[i]->name) < 0)	/* a stale member is not a spare */
			snprintf(names[n++], BLK_NAME_MAX, "%s", sp[i]->name);
	if (n != p->nspares)
		changed = true;
	for (uint32_t i = 0; i < n && !changed; i++)
		changed = strcmp(names[i], p->spares[i]) != 0;
	memcpy(p->spares, names, sizeof(names[0]) * n);
	p->nspares = n;
	if (!changed)
		return;
	rc = pools_save(NULL);
	if (rc)
		LOG_ERR(LS_THIN, "saving %s: %s", state_path(), strerror(-rc));
}

static unsigned pool_nvols(struct pool *p)
{
	struct list_head *pos;
	unsigned n = 0;

	list_for_each(pos, &p->vols)
		n++;
	return n;
}

static void utc_stamp(char *buf, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y%m%dT%H%M%SZ", &tm);
}

static json_t *pool_config(const struct pool *p)
{
	json_t *m = json_array(), *sp = json_array();

	for (uint32_t i = 0; i < p->nmembers; i++)
		json_array_append_new(m, json_string(p->members[i]));
	for (uint32_t i = 0; i < p->nspares; i++)
		json_array_append_new(sp, json_string(p->spares[i]));
	return json_pack("{s:s,s:i,s:I,s:I,s:i,s:o,s:o,s:I,s:O}", "name", p->name,
			 "level", p->level, "strip", (json_int_t)p->strip,
			 "chunk", (json_int_t)p->chunk, "low_space", (int)p->low_pct,
			 "members", m, "spares", sp, "rebuild_rate", (json_int_t)p->rate,
			 "volumes", p->vmeta);
}

/* Save the list, leaving out `skip`. */
/* pool_restore runs: the list is not whole yet, save at its end */
static bool restoring, save_pending;

static int pools_save(const struct pool *skip)
{
	json_t *a;
	struct list_head *pos;
	int rc;

	if (restoring) {
		save_pending = true;
		return 0;
	}
	a = json_array();

	if (!a)
		return -ENOMEM;
	list_for_each(pos, &pools) {
		struct pool *p = list_entry(pos, struct pool, link);

		if (p != skip)
			json_array_append_new(a, pool_config(p));
	}
	rc = state_set(SECTION, a);
	json_decref(a);
	return rc;
}

static json_t *save_error(struct rpc_err *err, int rc)
{
	rpc_error_errno(err, rc, "saving %s", state_path());
	err->code = RPC_ERR_IO;
	return NULL;
}

/* The volume's claims ("iscsi", ...) into buf; true when exported or open. */
static bool vol_in_use(const struct vol *v, char *buf, size_t len)
{
	buf[0] = '\0';
	if (!v->bd)
		return false;
	blkdev_claims(v->bd, buf, len);
	if (buf[0])
		return true;
	if (__atomic_load_n(&v->bd->nchans, __ATOMIC_ACQUIRE)) {
		snprintf(buf, len, "an open channel");
		return true;
	}
	return false;
}

/* Open volume `name` of p and register it; *out is new. */
static int vol_attach(struct pool *p, const char *name, struct vol **out)
{
	struct vol *v = calloc(1, sizeof(*v));
	int rc;

	if (!v)
		return -ENOMEM;
	snprintf(v->name, sizeof(v->name), "%s", name);
	rc = thin_vol_open(p->tp, name, &v->bd);
	if (rc)
		goto free_vol;
	rc = blkdev_register(v->bd);
	if (rc)
		goto close_bd;
	list_add_tail(&v->link, &p->vols);
	*out = v;
	return 0;

close_bd:
	blkdev_close(v->bd);
free_vol:
	free(v);
	return rc;
}

/* Unregister and close a volume's device (it stays in the list). */
static int vol_detach(struct vol *v)
{
	int rc;

	if (!v->bd)
		return 0;
	blkdev_unregister(v->bd);
	rc = blkdev_close(v->bd);
	if (rc) {
		blkdev_register(v->bd);
		return rc;
	}
	v->bd = NULL;
	return 0;
}

static void vol_free(struct vol *v)
{
	list_del(&v->link);
	free(v);
}

/* Close every volume, the thin pool and the set, and free p (not in the
 * list): 0; or -EBUSY, with p left as it is, when something still uses it. */
static int pool_teardown(struct pool *p)
{
	struct list_head *pos, *tmp;
	int rc;

	if (p->raid)
		raid_jobs_stop(p->raid);	/* a rebuild keeps its cursor */
	list_for_each_safe(pos, tmp, &p->vols) {
		struct vol *v = list_entry(pos, struct vol, link);

		rc = vol_detach(v);
		if (rc)
			LOG_ERR(LS_THIN, "pool %s: closing volume %s: %s", p->name, v->name,
				strerror(-rc));
		else
			vol_free(v);
	}
	if (p->tp) {
		rc = thin_pool_close(p->tp);
		if (rc) {
			LOG_ERR(LS_THIN, "pool %s: closing: %s", p->name, strerror(-rc));
			return rc;	/* leave it all: something still uses it */
		}
		p->tp = NULL;
	}
	if (p->raid) {
		rc = blkdev_close(p->raid);
		if (rc) {
			LOG_ERR(LS_RAID, "pool %s: closing the raid set: %s", p->name, strerror(-rc));
			return rc;
		}
		p->raid = NULL;
	}
	json_decref(p->vmeta);
	free(p);
	return 0;
}

/* Zero the member superblocks of a destroyed or half-made set, so that it
 * is never assembled again by mistake. */
static void wipe_members(struct blkdev **m, uint32_t n)
{
	static uint8_t zero[2 * RAID_SB_SIZE];

	for (uint32_t i = 0; i < n; i++) {
		int rc;

		if (!m[i])
			continue;
		rc = blk_sync_io(m[i], BIO_WRITE, 0, 0, zero, sizeof(zero));
		if (!rc)
			rc = blk_sync_io(m[i], BIO_FLUSH, 0, 0, NULL, 0);
		if (rc)
			LOG_ERR(LS_RAID, "wiping the raid superblock of %s: %s", m[i]->name,
				strerror(-rc));
	}
}

static void low_space(void *arg, uint64_t free_chunks)
{
	struct pool *p = arg;

	LOG_WARN(LS_THIN, "pool %s is low on space: %llu free chunks of %u bytes", p->name,
		 (unsigned long long)free_chunks, p->chunk);
}

static int pool_open_thin(struct pool *p)
{
	struct thin_open_opts o = {
		.low_space = low_space,
		.low_space_arg = p,
	};

	p->low_water = p->raid->size / p->chunk * p->low_pct / 100;
	o.low_water = p->low_water;
	return thin_pool_open(p->raid, &o, &p->tp);
}

static const char *level_name(int level)
{
	switch (level) {
	case 0: return "raid0";
	case 1: return "raid1";
	case 10: return "raid10";
	case 5: return "raid5";
	case 6: return "raid6";
	}
	return "?";
}

static json_t *annotation(struct pool *p, const char *vol, const char *key)
{
	return json_object_get(json_object_get(p->vmeta, vol), key);
}

/* ------------------------------------------------------------ pools */


static bool is_raid_spare(struct pool *p, struct blkdev *bd)
{
	struct blkdev *sp[RAID_MAX_MEMBERS];
	uint32_t n = raid_spares(p->raid, sp, RAID_MAX_MEMBERS);

	for (uint32_t i = 0; i < n && i < RAID_MAX_MEMBERS; i++)
		if (sp[i] == bd)
			return true;
	return false;
}

static const char *job_kind(enum raid_job_kind k)
{
	return k == RAID_JOB_REBUILD ? "rebuild" : k == RAID_JOB_SCRUB ? "scrub" : "none";
}

/* The running job (rebuild, scrub) with progress, rate and ETA; the last one. */
static json_t *job_json(struct pool *p, const struct raid_job_info *ji)
{
	json_t *o = json_pack("{s:s}", "kind", job_kind(ji->kind));

	if (ji->kind != RAID_JOB_NONE) {
		struct blkdev *bd = ji->slot >= 0 ? raid_member_dev(p->raid, (uint32_t)ji->slot) : NULL;

		if (ji->kind == RAID_JOB_REBUILD) {
			json_object_set_new(o, "slot", json_integer(ji->slot));
			json_object_set_new(o, "disk", bd ? json_string(bd->name) : json_null());
			json_object_set_new(o, "resumed_at", json_integer((json_int_t)
					    (ji->started_row * p->strip)));
			json_object_set_new(o, "partial", json_boolean(ji->partial));
		} else {
			json_object_set_new(o, "resumed_at", json_integer((json_int_t)
					    (ji->started_row * p->strip)));
			json_object_set_new(o, "repair", json_boolean(ji->repair));
			json_object_set_new(o, "mismatches", json_integer((json_int_t)ji->mismatches));
		}
		json_object_set_new(o, "done", json_integer((json_int_t)ji->bytes_done));
		json_object_set_new(o, "total", json_integer((json_int_t)ji->bytes));
		json_object_set_new(o, "percent", json_real(ji->bytes ? (double)(uint64_t)
				    ((double)ji->bytes_done * 1000 / (double)ji->bytes) / 10 : 0));
		json_object_set_new(o, "rate", json_integer((json_int_t)ji->rate));
		json_object_set_new(o, "eta", json_integer((json_int_t)ji->eta));
	}
	if (ji->last_kind != RAID_JOB_NONE) {
		json_t *l = json_pack("{s:s,s:s}", "kind", job_kind(ji->last_kind), "result",
				      ji->last_rc == -ECANCELED ? "cancelled" :
				      ji->last_rc ? strerror(-ji->last_rc) : "done");

		if (ji->last_kind == RAID_JOB_SCRUB) {
			json_object_set_new(l, "repair", json_boolean(ji->last_repair));
			json_object_set_new(l, "mismatches", json_integer((json_int_t)
					    ji->last_mismatches));
		} else {
			json_object_set_new(l, "slot", json_integer(ji->last_slot));
			json_object_set_new(l, "partial", json_boolean(ji->last_partial));
		}
		json_object_set_new(l, "walked", json_integer((json_int_t)
				    (ji->last_rows_walked * p->strip)));
		json_object_set_new(o, "last", l);
	}
	return o;
}

static json_t *pool_info(struct pool *p, bool detail)
{
	struct thin_pool_info ti = { 0 };
	json_t *o, *m;
	int rc = -ENODEV;

	struct raid_job_info ji = { 0 };

	pool_sync(p);
	if (p->raid)
		raid_job_get(p->raid, &ji);
	o = json_pack("{s:s,s:s,s:s,s:I,s:I}", "name", p->name,
		      "state", !p->tp ? "failed" : ji.kind == RAID_JOB_REBUILD ? "rebuilding" :
			       raid_degraded(p->raid) > 0 ? "degraded" : "online",
		      "level", level_name(p->level), "strip", (json_int_t)p->strip,
		      "chunk", (json_int_t)p->chunk);
	if (p->tp)
		rc = thin_pool_info(p->tp, &ti);
	if (!rc) {
		uint64_t total = ti.data_chunks * ti.chunk_size;

		json_object_set_new(o, "data_total", json_integer((json_int_t)total));
		json_object_set_new(o, "data_used", json_integer((json_int_t)
				    ((ti.data_chunks - ti.free_chunks) * ti.chunk_size)));
		json_object_set_new(o, "volumes", json_integer(ti.volumes));
		if (detail) {
			json_object_set_new(o, "meta_total", json_integer((json_int_t)
					    (ti.meta_blocks * 4096)));
			json_object_set_new(o, "meta_used", json_integer((json_int_t)
					    ((ti.meta_blocks - ti.free_meta_blocks) * 4096)));
			json_object_set_new(o, "provisioned", json_integer((json_int_t)ti.virtual_bytes));
			json_object_set_new(o, "overcommit", json_real(total ? (double)(uint64_t)
					    ((double)ti.virtual_bytes / (double)total * 100) / 100 : 0));
			json_object_set_new(o, "low_space_threshold", json_integer((json_int_t)
					    (p->low_water * ti.chunk_size)));
			json_object_set_new(o, "low_space", json_boolean(ti.free_chunks < p->low_water));
			json_object_set_new(o, "low_space_pct", json_integer(p->low_pct));
		}
	} else if (p->tp) {
		json_object_set_new(o, "error", json_string(strerror(-rc)));
	}
	if (!p->tp)
		json_object_set_new(o, "error", json_string(p->error));
	if (detail) {
		json_object_set_new(o, "rebuild_rate", json_integer((json_int_t)p->rate));
		if (p->raid) {
			json_object_set_new(o, "job", job_json(p, &ji));
			uint64_t bdirty, btotal;

			json_object_set_new(o, "read_errors_fixed",
					    json_integer((json_int_t)ji.read_errors_fixed));
			if (!raid_bitmap_dirty_regions(p->raid, &bdirty, &btotal))
				json_object_set_new(o, "bitmap", json_pack("{s:I,s:I}", "dirty",
						    (json_int_t)bdirty, "regions", (json_int_t)btotal));
		}
		m = json_array();
		for (uint32_t i = 0; i < p->nmembers; i++) {
			const char *st = "missing";
			struct blkdev *bd = blkdev_find(p->members[i]);
			int s = p->raid && p->slot[i] >= 0 && bd &&
				raid_member_dev(p->raid, (uint32_t)p->slot[i]) == bd ?
				raid_member_state(p->raid, (uint32_t)p->slot[i]) : -1;

			if (s < 0 && p->raid && bd && is_raid_spare(p, bd))
				st = "stale";	/* to be rebuilt */
			else if (s == RAID_MEMBER_ACTIVE)
				st = "active";
			else if (s == RAID_MEMBER_FAILED)
				st = "failed";
			else if (s == RAID_MEMBER_REBUILDING)
				st = "rebuilding";
			json_array_append_new(m, json_pack("{s:s,s:i,s:s}", "disk", p->members[i],
							   "slot", p->slot[i], "state", st));
		}
		for (uint32_t i = 0; i < p->nspares; i++)
			json_array_append_new(m, json_pack("{s:s,s:i,s:s}", "disk", p->spares[i],
							   "slot", -1, "state", "spare"));
		json_object_set_new(o, "members", m);
	} else {
		json_object_set_new(o, "members", json_integer(p->nmembers));
	}
	return o;
}

/* d is among the first n names of the JSON array a (already checked to be
 * strings) */
static bool name_among(json_t *a, size_t n, const char *d)
{
	for (size_t k = 0; k < n; k++)
		if (!strcmp(json_string_value(json_array_get(a, k)), d))
			return true;
	return false;
}

/* Disk `d`, free to join a pool (as a member or a spare), or NULL with err set. */
static struct blkdev *free_disk(const char *d, struct rpc_err *err)
{
	struct pool *other;
	struct blkdev *bd;
	char claims[256];

	if (vol_find(d, NULL)) {
		rpc_error(err, RPC_INVALID_PARAMS, "invalid params: '%.64s' is a volume, not a disk", d);
		return NULL;
	}
	if (is_member(d, &other)) {
		rpc_error(err, RPC_ERR_BUSY, "disk '%.64s' is in use by pool '%s'", d, other->name);
		return NULL;
	}
	bd = blkdev_find(d);
	if (!bd) {
		rpc_error(err, RPC_ERR_NOT_FOUND, "no disk named '%.64s'", d);
		return NULL;
	}
	blkdev_claims(bd, claims, sizeof(claims));
	if (claims[0]) {
		rpc_error(err, RPC_ERR_BUSY, "disk '%.64s' is in use by '%s'", d, claims);
		return NULL;
	}
	if (bd->readonly) {
		rpc_error(err, RPC_INVALID_PARAMS, "invalid params: disk '%.64s' is read-only", d);
		return NULL;
	}
	return bd;
}

static int min_members(int level)
{
	return level == 5 ? 3 : level == 6 ? 4 : level == 1 || level == 10 ? 2 : 1;
}

static json_t *pool_create(json_t *params, void *arg, struct rpc_err *err)
{
	const char *name = NULL;
	uint64_t level = 0, strip = STRIP_DEFAULT, chunk = 0, full, low_pct = LOW_SPACE_PCT;
	json_t *members = NULL, *spares = NULL, *v, *res;
	struct blkdev *sbds[RAID_MAX_MEMBERS];
	uint64_t rate = 0;
	uint32_t nsp = 0;
	struct blkdev *bds[RAID_MAX_MEMBERS];
	struct raid_opts ro = { 0 };
	struct thin_format_opts fo = { 0 };
	struct raid_geom g = { 0 };
	struct pool *p;
	char note[160];
	uint32_t n, dcols;
	size_t i;
	int rc;

	if (rpc_params_only(params, err, "name", "level", "strip", "chunk", "members", "low_space",
			    "spares", "rebuild_rate", NULL) ||
	    rpc_param_u64(params, "low_space", RPC_OPTIONAL, &low_pct, err) ||
	    rpc_param_name(params, "name", RPC_REQUIRED, &name, err) ||
	    rpc_param_u64(params, "level", RPC_REQUIRED, &level, err) ||
	    rpc_param_size(params, "strip", RPC_OPTIONAL, &strip, err) ||
	    rpc_param_size(params, "chunk", RPC_OPTIONAL, &chunk, err) ||
	    rpc_param_array(params, "members", RPC_REQUIRED, &members, err) ||
	    rpc_param_array(params, "spares", RPC_OPTIONAL, &spares, err) ||
	    rpc_param_size(params, "rebuild_rate", RPC_OPTIONAL, &rate, err))
		return NULL;
	if (strchr(name, '@') || strlen(name) >= 32)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: a pool name has no '@' "
				 "and at most 31 characters: '%s'", name);
	if (low_pct > 99)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'low_space' is a "
				 "percentage of the data space, 0 (off) to 99, not %llu",
				 (unsigned long long)low_pct);
	if (level != 0 && level != 1 && level != 10 && level != 5 && level != 6)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'level' must be 0, 1, "
				 "10, 5 or 6, not %llu", (unsigned long long)level);
	n = (uint32_t)json_array_size(members);
	if (n < (uint32_t)min_members((int)level) || n > RAID_MAX_MEMBERS)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: raid %llu takes %d to %d "
				 "member disks, not %u", (unsigned long long)level,
				 min_members((int)level), RAID_MAX_MEMBERS, n);
	if (level == 10 && n % 2)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: raid 10 takes an even "
				 "number of member disks, not %u", n);
	if (!IS_POW2(strip) || strip < 4096 || strip > (16u << 20))
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'strip' must be a power "
				 "of two from 4K to 16M, not %llu", (unsigned long long)strip);
	if (chunk && (!IS_POW2(chunk) || chunk < THIN_CHUNK_MIN || chunk > THIN_CHUNK_MAX))
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'chunk' must be a power "
				 "of two from 64K to 1M, not %llu", (unsigned long long)chunk);
	if (pool_find(name))
		return rpc_error(err, RPC_ERR_EXISTS, "a pool named '%s' exists already", name);
	json_array_foreach(members, i, v) {
		const char *d = json_string_value(v);

		if (!d)
			return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'members' must "
					 "be disk names");
		if (name_among(members, i, d))
			return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: disk '%.64s' is "
					 "given twice", d);
		bds[i] = free_disk(d, err);
		if (!bds[i])
			return NULL;
		if (strip < bds[i]->block_size)
			return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'strip' %llu is "
					 "smaller than the block size of disk '%.64s'",
					 (unsigned long long)strip, d);
	}
	if (spares && json_array_size(spares) > RAID_MAX_MEMBERS)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: at most %d spares",
				 RAID_MAX_MEMBERS);
	if (spares && json_array_size(spares) && level == 0)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: raid 0 has no "
				 "redundancy to rebuild a spare from");
	json_array_foreach(spares, i, v) {
		const char *d = json_string_value(v);

		if (!d)
			return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'spares' must "
					 "be disk names");
		if (name_among(members, n, d))
			return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: disk '%.64s' is "
					 "a member and a spare", d);
		if (name_among(spares, i, d))
			return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: disk '%.64s' is "
					 "given twice", d);
		sbds[nsp] = free_disk(d, err);
		if (!sbds[nsp])
			return NULL;
		nsp++;
	}
	g.level = (enum raid_level)level;
	g.nmembers = n;
	g.strip = (uint32_t)strip;
	g.member_size = strip;
	if (raid_geom_check(&g))
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: raid %llu over %u disks "
				 "with a %llu-byte strip is not a valid layout",
				 (unsigned long long)level, n, (unsigned long long)strip);
	/* The chunk: a multiple of the full stripe when that can be, so that a
	 * chunk written whole is a full-stripe write (no read-modify-write). */
	dcols = raid_data_cols(&g);
	full = strip * dcols;
	if (!chunk) {
		if (IS_POW2(full) && full <= THIN_CHUNK_MAX) {
			chunk = MAX(full, (uint64_t)THIN_CHUNK_MIN);
			snprintf(note, sizeof(note), "chunk %lluK is a multiple of the full stripe "
				 "(%u x %lluK)", (unsigned long long)chunk >> 10, dcols,
				 (unsigned long long)strip >> 10);
		} else {
			chunk = THIN_CHUNK_DEFAULT;
			snprintf(note, sizeof(note), "the full stripe (%u x %lluK) is %s: chunk %lluK, "
				 "whole-chunk writes are not full-stripe writes", dcols,
				 (unsigned long long)strip >> 10,
				 IS_POW2(full) ? "larger than 1M" : "not a power of two",
				 (unsigned long long)chunk >> 10);
		}
	} else {
		snprintf(note, sizeof(note), "chunk %lluK is %sa multiple of the full stripe "
			 "(%u x %lluK)", (unsigned long long)chunk >> 10, chunk % full ? "not " : "",
			 dcols, (unsigned long long)strip >> 10);
	}

	p = calloc(1, sizeof(*p));
	if (!p)
		return rpc_error(err, RPC_INTERNAL_ERROR, "out of memory");
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->level = (int)level;
	p->strip = (uint32_t)strip;
	p->chunk = (uint32_t)chunk;
	p->low_pct = (uint32_t)low_pct;
	p->nmembers = n;
	for (i = 0; i < n; i++) {
		snprintf(p->members[i], sizeof(p->members[i]), "%s", bds[i]->name);
		p->slot[i] = (int)i;
	}
	list_init(&p->vols);
	p->vmeta = json_object();
	p->rate = rate;
	ro.strip = (uint32_t)strip;
	rc = raid_create(name, (enum raid_level)level, bds, n, &ro, &p->raid);
	if (rc) {
		rpc_error_errno(err, rc, "creating raid %llu set '%s' over %u disks",
				(unsigned long long)level, name, n);
		goto free_pool;
	}
	if (p->raid->size < 16 * chunk) {
		rc = -ENOSPC;
		rpc_error(err, RPC_INVALID_PARAMS, "invalid params: the disks are too small for "
			  "a pool (%llu bytes of data)", (unsigned long long)p->raid->size);
		goto close_raid;
	}
	raid_set_rate(p->raid, rate);
	for (i = 0; i < nsp; i++) {
		rc = raid_spare_add(p->raid, sbds[i]);
		if (rc) {
			rpc_error_errno(err, rc, "adding spare '%s'", sbds[i]->name);
			goto close_raid;
		}
		snprintf(p->spares[p->nspares++], BLK_NAME_MAX, "%s", sbds[i]->name);
	}
	fo.chunk_size = (uint32_t)chunk;
	rc = thin_pool_format(p->raid, &fo);
	if (rc) {
		rpc_error_errno(err, rc, "formatting thin pool '%s'", name);
		goto close_raid;
	}
	rc = pool_open_thin(p);
	if (rc) {
		rpc_error_errno(err, rc, "opening thin pool '%s'", name);
		goto close_raid;
	}
	list_add_tail(&p->link, &pools);
	rc = pools_save(NULL);
	if (rc) {
		list_del(&p->link);
		save_error(err, rc);
		goto close_thin;
	}
	LOG_INFO(LS_THIN, "pool %s created: %s over %u disks, strip %u, chunk %u", name,
		 level_name(p->level), n, p->strip, p->chunk);
	res = pool_info(p, true);
	json_object_set_new(res, "note", json_string(note));
	return res;

close_thin:
	thin_pool_close(p->tp);
close_raid:
	raid_jobs_stop(p->raid);
	blkdev_close(p->raid);
	wipe_members(bds, n);
free_pool:
	json_decref(p->vmeta);
	free(p);
	return NULL;
}

static json_t *pool_list(json_t *params, void *arg, struct rpc_err *err)
{
	struct list_head *pos;
	json_t *a;

	if (rpc_params_only(params, err, NULL))
		return NULL;
	a = json_array();
	list_for_each(pos, &pools)
		json_array_append_new(a, pool_info(list_entry(pos, struct pool, link), false));
	return a;
}

static json_t *pool_show(json_t *params, void *arg, struct rpc_err *err)
{
	const char *name;
	struct pool *p;

	if (rpc_params_only(params, err, "name", NULL) ||
	    rpc_param_str(params, "name", RPC_REQUIRED, &name, err))
		return NULL;
	p = pool_find(name);
	if (!p)
		return rpc_error(err, RPC_ERR_NOT_FOUND, "no pool named '%.64s'", name);
	return pool_info(p, true);
}

static json_t *pool_destroy(json_t *params, void *arg, struct rpc_err *err)
{
	const char *name;
	bool force = false;
	struct blkdev *bds[RAID_MAX_MEMBERS] = { 0 };
	struct list_head *pos;
	char claims[256];
	struct pool *p;
	unsigned nv;
	int rc;

	if (rpc_params_only(params, err, "name", "force", NULL) ||
	    rpc_param_str(params, "name", RPC_REQUIRED, &name, err) ||
	    rpc_param_bool(params, "force", RPC_OPTIONAL, &force, err))
		return NULL;
	p = pool_find(name);
	if (!p)
		return rpc_error(err, RPC_ERR_NOT_FOUND, "no pool named '%.64s'", name);
	nv = pool_nvols(p);
	if (nv && !force)
		return rpc_error(err, RPC_ERR_BUSY, "pool '%s' has %u volume%s: delete %s first, "
				 "or destroy with force", name, nv, nv > 1 ? "s" : "",
				 nv > 1 ? "them" : "it");
	list_for_each(pos, &p->vols) {
		struct vol *v = list_entry(pos, struct vol, link);

		if (vol_in_use(v, claims, sizeof(claims)))
			return rpc_error(err, RPC_ERR_BUSY, "volume '%s' of pool '%s' is in use by "
					 "'%s'", v->name, name, claims);
	}
	rc = pools_save(p);
	if (rc)
		return save_error(err, rc);
	list_del(&p->link);
	if (p->raid)
		for (uint32_t i = 0; i < p->nmembers; i++)
			bds[i] = blkdev_find(p->members[i]);
	if (pool_teardown(p)) {	/* frees p */
		LOG_ERR(LS_THIN, "pool %s is forgotten but still open (see above)", name);
		return json_pack("{s:s,s:i}", "destroyed", name, "volumes", nv);
	}
	wipe_members(bds, RAID_MAX_MEMBERS);
	LOG_INFO(LS_THIN, "pool %s destroyed (%u volumes)", name, nv);
	return json_pack("{s:s,s:i}", "destroyed", name, "volumes", nv);
}

/* Replace a failed or missing member disk with another, rebuilt in the
 * background while the pool serves I/O. */
static json_t *pool_replace(json_t *params, void *arg, struct rpc_err *err)
{
	const char *name, *old, *new;
	struct pool *p, *other;
	struct blkdev *nd;
	char claims[256];
	int idx = -1, slot = -1, st, rc;
	bool same;
	uint32_t n;

	if (rpc_params_only(params, err, "name", "old", "new", NULL) ||
	    rpc_param_str(params, "name", RPC_REQUIRED, &name, err) ||
	    rpc_param_str(params, "old", RPC_REQUIRED, &old, err) ||
	    rpc_param_str(params, "new", RPC_REQUIRED, &new, err))
		return NULL;
	p = pool_find(name);
	if (!p)
		return rpc_error(err, RPC_ERR_NOT_FOUND, "no pool named '%.64s'", name);
	if (!p->tp)
		return rpc_error(err, RPC_ERR_IO, "pool '%s' is not online: %s", name, p->error);
	pool_sync(p);
	n = p->nmembers;
	for (uint32_t i = 0; i < n; i++)
		if (!strcmp(p->members[i], old))
			idx = (int)i;
	if (idx < 0)
		return rpc_error(err, RPC_ERR_NOT_FOUND, "disk '%.64s' is not a member of pool '%s'",
				 old, name);
	slot = p->slot[idx];
	if (slot < 0) {		/* missing at start: the one slot nobody else holds */
		for (uint32_t s = 0; s < n; s++) {
			bool held = false;

			for (uint32_t i = 0; i < n; i++)
				held |= p->slot[i] == (int)s;
			if (held)
				continue;
			if (slot >= 0)
				return rpc_error(err, RPC_ERR_FAILED, "cannot tell which slot disk "
						 "'%s' had: several are missing", old);
			slot = (int)s;
		}
		if (slot < 0)
			return rpc_error(err, RPC_ERR_FAILED, "cannot tell which slot disk '%s' had",
					 old);
	}
	st = raid_member_state(p->raid, (uint32_t)slot);
	if (st == RAID_MEMBER_ACTIVE || st == RAID_MEMBER_REBUILDING)
		return rpc_error(err, RPC_ERR_BUSY, "disk '%s' (slot %d) is %s: only a failed or "
				 "missing member can be replaced", old, slot,
				 st == RAID_MEMBER_ACTIVE ? "active" : "rebuilding");
	if (p->level == 0)
		return rpc_error(err, RPC_ERR_FAILED, "raid 0 has no redundancy to rebuild from");
	if (vol_find(new, NULL))
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: '%.64s' is a volume, "
				 "not a disk", new);
	/* NEW = OLD: the member comes back (rebuilt only where it missed writes
	 * when its superblock proves it is the member that left) */
	same = !strcmp(old, new);
	if (!same && is_member(new, &other))
		return rpc_error(err, RPC_ERR_BUSY, "disk '%.64s' is in use by pool '%s'", new,
				 other->name);
	nd = blkdev_find(new);
	if (!nd)
		return rpc_error(err, RPC_ERR_NOT_FOUND, "no disk named '%.64s'", new);
	blkdev_claims(nd, claims, sizeof(claims));
	if (claims[0] && !(same && !strcmp(claims, p->raid->name)))
		return rpc_error(err, RPC_ERR_BUSY, "disk '%.64s' is in use by '%s'", new, claims);
	if (nd->readonly)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: disk '%.64s' is "
				 "read-only", new);

	/* the new member list first: a restart during the rebuild finds the
	 * new disk, and the rebuild resumes */
	snprintf(p->members[idx], sizeof(p->members[idx]), "%s", new);
	p->slot[idx] = slot;
	rc = pools_save(NULL);
	if (rc) {
		snprintf(p->members[idx], sizeof(p->members[idx]), "%s", old);
		return save_error(err, rc);
	}
	rc = raid_replace_start(p->raid, (uint32_t)slot, nd);
	if (rc) {
		snprintf(p->members[idx], sizeof(p->members[idx]), "%s", old);
		pools_save(NULL);
		if (rc == -EBUSY)
			return rpc_error(err, RPC_ERR_BUSY, "pool '%s' is rebuilding or scrubbing: "
					 "try again when it is done", name);
		return rpc_error_errno(err, rc, "replacing disk '%s' with '%s'", old, new);
	}
	LOG_INFO(LS_RAID, "pool %s: slot %d: disk %s replaces %s, rebuilding", name, slot, new,
		 old);
	return json_pack("{s:s,s:i,s:s,s:s}", "name", name, "slot", slot, "old", old,
			 "new", new);
}

/* An online pool by name, or NULL with err set. */
static struct pool *online_pool(json_t *params, struct rpc_err *err)
{
	const char *name;
	struct pool *p;

	if (rpc_param_str(params, "name", RPC_REQUIRED, &name, err))
		return NULL;
	p = pool_find(name);
	if (!p) {
		rpc_error(err, RPC_ERR_NOT_FOUND, "no pool named '%.64s'", name);
		return NULL;
	}
	if (!p->raid) {
		rpc_error(err, RPC_ERR_IO, "pool '%s' is not online: %s", name, p->error);
		return NULL;
	}
	pool_sync(p);
	return p;
}

/* A hot spare: taken at once when a member fails. */
static json_t *pool_add_spare(json_t *params, void *arg, struct rpc_err *err)
{
	const char *disk;
	struct blkdev *bd;
	struct pool *p;
	int rc;

	if (rpc_params_only(params, err, "name", "disk", NULL) ||
	    rpc_param_str(params, "disk", RPC_REQUIRED, &disk, err))
		return NULL;
	p = online_pool(params, err);
	if (!p)
		return NULL;
	if (p->level == 0)
		return rpc_error(err, RPC_ERR_FAILED, "raid 0 has no redundancy to rebuild a "
				 "spare from");
	if (p->nspares == RAID_MAX_MEMBERS)
		return rpc_error(err, RPC_ERR_FAILED, "pool '%s' has %d spares already", p->name,
				 RAID_MAX_MEMBERS);
	bd = free_disk(disk, err);
	if (!bd)
		return NULL;
	snprintf(p->spares[p->nspares++], BLK_NAME_MAX, "%s", disk);
	rc = pools_save(NULL);
	if (rc) {
		p->nspares--;
		return save_error(err, rc);
	}
	rc = raid_spare_add(p->raid, bd);
	if (rc) {
		p->nspares--;
		pools_save(NULL);
		if (rc == -EINVAL)
			return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: disk '%s' is too "
					 "small for pool '%s', or lacks what its disks support",
					 disk, p->name);
		return rpc_error_errno(err, rc, "adding spare '%s'", disk);
	}
	LOG_INFO(LS_RAID, "pool %s: disk %s is a hot spare", p->name, disk);
	pool_sync(p);		/* a failed member may have taken it already */
	return pool_info(p, true);
}

/* Take a member out (maintenance, tests). */
static json_t *pool_fail(json_t *params, void *arg, struct rpc_err *err)
{
	const char *disk;
	struct pool *p;
	int idx, rc;

	if (rpc_params_only(params, err, "name", "disk", NULL) ||
	    rpc_param_str(params, "disk", RPC_REQUIRED, &disk, err))
		return NULL;
	p = online_pool(params, err);
	if (!p)
		return NULL;
	idx = member_index(p, disk);
	if (idx < 0 || p->slot[idx] < 0 ||
	    raid_member_dev(p->raid, (uint32_t)p->slot[idx]) != blkdev_find(disk))
		return rpc_error(err, RPC_ERR_NOT_FOUND, "disk '%.64s' is not an active member "
				 "of pool '%s'", disk, p->name);
	if (p->level == 0)
		return rpc_error(err, RPC_ERR_FAILED, "raid 0 has no redundancy: a member cannot "
				 "be taken out");
	rc = raid_fail(p->raid, (uint32_t)p->slot[idx]);
	if (rc == -EALREADY)
		return rpc_error(err, RPC_ERR_FAILED, "disk '%s' is failed already", disk);
	if (rc == -EBUSY)
		return rpc_error(err, RPC_ERR_BUSY, "pool '%s' cannot lose disk '%s': it would "
				 "lose data (no redundancy left)", p->name, disk);
	if (rc)
		return rpc_error_errno(err, rc, "failing disk '%s'", disk);
	LOG_WARN(LS_RAID, "pool %s: disk %s taken out (slot %d)", p->name, disk, p->slot[idx]);
	return pool_info(p, true);
}

/* Scrub in the background, or cancel one. */
static json_t *pool_scrub(json_t *params, void *arg, struct rpc_err *err)
{
	bool repair = false, cancel = false;
	struct pool *p;
	int rc;

	if (rpc_params_only(params, err, "name", "repair", "cancel", NULL) ||
	    rpc_param_bool(params, "repair", RPC_OPTIONAL, &repair, err) ||
	    rpc_param_bool(params, "cancel", RPC_OPTIONAL, &cancel, err))
		return NULL;
	p = online_pool(params, err);
	if (!p)
		return NULL;
	if (p->level == 0)
		return rpc_error(err, RPC_ERR_FAILED, "raid 0 has no redundancy to check");
	if (cancel) {
		rc = raid_scrub_cancel(p->raid);
		if (rc == -ENOENT)
			return rpc_error(err, RPC_ERR_NOT_FOUND, "pool '%s' is not scrubbing",
					 p->name);
		if (rc)
			return rpc_error_errno(err, rc, "cancelling the scrub");
		return json_pack("{s:s,s:b}", "name", p->name, "cancelled", true);
	}
	rc = raid_scrub_start(p->raid, repair);
	if (rc == -EBUSY)
		return rpc_error(err, RPC_ERR_BUSY, "pool '%s' is rebuilding or scrubbing already",
				 p->name);
	if (rc)
		return rpc_error_errno(err, rc, "starting a scrub");
	return json_pack("{s:s,s:b,s:b}", "name", p->name, "started", true, "repair", repair);
}

/* Recount every reference in the pool's metadata (thin_pool_check_ex),
 * and with repair rewrite the space maps from the trees. */
static void check_line(void *arg, const char *line)
{
	json_array_append_new(arg, json_string(line));
}

static json_t *pool_check(json_t *params, void *arg, struct rpc_err *err)
{
	struct thin_check_report rep = { 0 };
	struct thin_check_opts o = { .report = check_line };
	const char *name;
	struct pool *p;
	json_t *lines;
	int rc;

	if (rpc_params_only(params, err, "name", "repair", NULL) ||
	    rpc_param_str(params, "name", RPC_REQUIRED, &name, err) ||
	    rpc_param_bool(params, "repair", RPC_OPTIONAL, &o.repair, err))
		return NULL;
	p = pool_find(name);
	if (!p)
		return rpc_error(err, RPC_ERR_NOT_FOUND, "no pool named '%.64s'", name);
	if (!p->tp)
		return rpc_error(err, RPC_ERR_IO, "pool '%s' is not online: %s", name, p->error);
	o.salvage = o.repair;	/* a damaged tree is rebuilt from what can be read */
	lines = json_array();
	o.arg = lines;
	rc = thin_pool_check_ex(p->tp, &o, &rep);
	if (rc && rc != -EUCLEAN) {
		json_decref(lines);
		return rpc_error_errno(err, rc, "checking pool '%s'", name);
	}
	LOG_INFO(LS_THIN, "pool %s checked%s: %s, %llu errors, %llu counts repaired", name,
		 o.repair ? " and repaired" : "", rc ? "damaged" : "clean",
		 (unsigned long long)rep.errors, (unsigned long long)rep.fixed);
	return json_pack("{s:s,s:b,s:i,s:I,s:I,s:I,s:i,s:I,s:I,s:I,s:i,s:I,s:I,s:o}", "name", name,
			 "clean", !rc, "volumes", rep.volumes, "node_refs", (json_int_t)rep.node_refs,
			 "mappings", (json_int_t)rep.mappings, "errors", (json_int_t)rep.errors,
			 "bad_trees", rep.bad_trees, "leaked_blocks", (json_int_t)rep.leaked_blocks,
			 "leaked_chunks", (json_int_t)rep.leaked_chunks,
			 "repaired", (json_int_t)rep.fixed, "rebuilt", rep.rebuilt,
			 "salvaged", (json_int_t)rep.salvaged, "lost_ranges", (json_int_t)rep.lost_ranges,
			 "problems", lines);
}

/*
 * pool.set: settings that can change while the pool runs, either or both:
 * low_space, the low-space mark in percent of the data space (0: off), and
 * rebuild_rate, the most a rebuild or scrub reads per second per disk
 * (0: no limit). Applied at once and remembered.
 */
static json_t *pool_set(json_t *params, void *arg, struct rpc_err *err)
{
	uint64_t pct = UINT64_MAX, rate = UINT64_MAX, old_rate;
	uint32_t old_pct;
	struct pool *p;
	int rc;

	if (rpc_params_only(params, err, "name", "low_space", "rebuild_rate", NULL) ||
	    rpc_param_u64(params, "low_space", RPC_OPTIONAL, &pct, err) ||
	    rpc_param_size(params, "rebuild_rate", RPC_OPTIONAL, &rate, err))
		return NULL;
	p = online_pool(params, err);
	if (!p)
		return NULL;
	if (pct == UINT64_MAX && rate == UINT64_MAX)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: nothing to set "
				 "(low_space, rebuild_rate)");
	if (pct != UINT64_MAX && pct > 99)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'low_space' is a "
				 "percentage of the data space, 0 (off) to 99, not %llu",
				 (unsigned long long)pct);
	if (rate != UINT64_MAX && rate && rate < 64 * 1024)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'rebuild_rate' is at "
				 "least 64K per second (0: no limit), not %llu",
				 (unsigned long long)rate);
	if (pct != UINT64_MAX && !p->tp)
		return rpc_error(err, RPC_ERR_IO, "pool '%s' is not online: %s", p->name, p->error);
	old_pct = p->low_pct;
	old_rate = p->rate;
	if (pct != UINT64_MAX)
		p->low_pct = (uint32_t)pct;
	if (rate != UINT64_MAX)
		p->rate = rate;
	rc = pools_save(NULL);
	if (rc) {
		p->low_pct = old_pct;
		p->rate = old_rate;
		return save_error(err, rc);
	}
	if (rate != UINT64_MAX) {
		raid_set_rate(p->raid, rate);
		LOG_INFO(LS_RAID, "pool %s: rebuild rate %llu bytes/s per disk%s", p->name,
			 (unsigned long long)rate, rate ? "" : " (no limit)");
	}
	if (pct != UINT64_MAX) {
		p->low_water = p->raid->size / p->chunk * p->low_pct / 100;
		rc = thin_pool_set_low_water(p->tp, p->low_water);
		if (rc)
			return rpc_error_errno(err, rc, "setting pool '%s'", p->name);
		LOG_INFO(LS_THIN, "pool %s: low-space mark %u%% (%llu chunks)", p->name,
			 p->low_pct, (unsigned long long)p->low_water);
	}
	return pool_info(p, true);
}

/* ------------------------------------------------------------ volumes */

static json_t *vol_info(struct pool *p, struct vol *v, bool detail)
{
	struct thin_vol_info vi = { 0 };
	char claims[256] = "";
	json_t *o, *origin = annotation(p, v->name, "origin"), *created;
	int rc = -ENODEV;

	created = annotation(p, v->name, "created");
	if (p->tp)
		rc = thin_vol_info(p->tp, v->name, &vi);
	o = json_pack("{s:s,s:s}", "name", v->name, "pool", p->name);
	json_object_set_new(o, "size", rc ? json_null() : json_integer((json_int_t)vi.size));
	json_object_set_new(o, "allocated", rc ? json_null() :
			    json_integer((json_int_t)(vi.mapped_chunks * p->chunk)));
	json_object_set_new(o, "origin", origin ? json_incref(origin) : json_null());
	json_object_set_new(o, "created", created ? json_incref(created) : json_null());
	json_object_set_new(o, "readonly", json_boolean(!rc && vi.readonly));
	if (v->bd)
		blkdev_claims(v->bd, claims, sizeof(claims));
	json_object_set_new(o, "exported_by", claims[0] ? json_string(claims) : json_null());
	if (detail) {
		json_object_set_new(o, "state", json_string(v->bd ? "open" : "failed"));
		if (!rc) {
			json_object_set_new(o, "id", json_integer((json_int_t)vi.id));
			json_object_set_new(o, "mapped_chunks", json_integer((json_int_t)vi.mapped_chunks));
			json_object_set_new(o, "chunk", json_integer(p->chunk));
		}
		if (v->bd)
			json_object_set_new(o, "block_size", json_integer(v->bd->block_size));
		if (!v->bd)
			json_object_set_new(o, "error", json_string(v->error));
	}
	return o;
}

/* A plain volume name: valid, no '@', short enough for the pool. */
static int check_vol_name(const char *name, struct rpc_err *err)
{
	if (strchr(name, '@')) {
		rpc_error(err, RPC_INVALID_PARAMS, "invalid params: '%s' names a snapshot "
			  "(VOL@SNAP); a volume name has no '@'", name);
		return -1;
	}
	if (strlen(name) >= THIN_NAME_MAX) {
		rpc_error(err, RPC_INVALID_PARAMS, "invalid params: volume names have at most %d "
			  "characters: '%s'", THIN_NAME_MAX - 1, name);
		return -1;
	}
	return 0;
}

static int check_free_name(const char *name, struct rpc_err *err)
{
	if (vol_find(name, NULL) || blkdev_find(name)) {
		rpc_error(err, RPC_ERR_EXISTS, "a volume or device named '%s' exists already", name);
		return -1;
	}
	return 0;
}

/* Annotate, then save; on failure the annotation is dropped again. */
static int annotate_save(struct pool *p, const char *vol, const char *origin)
{
	char stamp[32];
	int rc;

	utc_stamp(stamp, sizeof(stamp));
	json_object_set_new(p->vmeta, vol, json_pack("{s:s?,s:s}", "origin", origin,
						      "created", stamp));
	rc = pools_save(NULL);
	if (rc)
		json_object_del(p->vmeta, vol);
	return rc;
}

/* Make volume `name` (already in the pool's metadata) a device; on
 * failure delete it from the metadata again. */
static json_t *vol_finish(struct pool *p, const char *name, const char *origin,
			  const char *what, struct rpc_err *err)
{
	struct vol *v;
	int rc;

	rc = vol_attach(p, name, &v);
	if (rc) {
		rpc_error_errno(err, rc, "opening %s '%s'", what, name);
		goto delete_vol;
	}
	rc = annotate_save(p, name, origin);
	if (rc) {
		save_error(err, rc);
		vol_detach(v);
		vol_free(v);
		goto delete_vol;
	}
	LOG_INFO(LS_THIN, "pool %s: %s %s created%s%s", p->name, what, name,
		 origin ? " from " : "", origin ? origin : "");
	return vol_info(p, v, true);

delete_vol:
	rc = thin_vol_delete(p->tp, name);
	if (rc)
		LOG_ERR(LS_THIN, "pool %s: deleting %s again: %s", p->name, name, strerror(-rc));
	return NULL;
}

static json_t *vol_create(json_t *params, void *arg, struct rpc_err *err)
{
	const char *name, *pname;
	uint64_t size = 0;
	struct pool *p;
	int rc;

	if (rpc_params_only(params, err, "name", "pool", "size", NULL) ||
	    rpc_param_name(params, "name", RPC_REQUIRED, &name, err) ||
	    rpc_param_str(params, "pool", RPC_REQUIRED, &pname, err) ||
	    rpc_param_size(params, "size", RPC_REQUIRED, &size, err))
		return NULL;
	if (check_vol_name(name, err))
		return NULL;
	p = pool_find(pname);
	if (!p)
		return rpc_error(err, RPC_ERR_NOT_FOUND, "no pool named '%.64s'", pname);
	if (!p->tp)
		return rpc_error(err, RPC_ERR_IO, "pool '%s' is not online: %s", pname, p->error);
	if (!size || size % p->raid->block_size)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'size' %llu is not a "
				 "positive multiple of the block size %u", (unsigned long long)size,
				 p->raid->block_size);
	if (check_free_name(name, err))
		return NULL;
	rc = thin_vol_create(p->tp, name, size);
	if (rc)
		return rpc_error_errno(err, rc, "creating volume '%s' in pool '%s'", name, pname);
	return vol_finish(p, name, NULL, "volume", err);
}

static json_t *vol_snapshot(json_t *params, void *arg, struct rpc_err *err)
{
	const char *vname, *sname = NULL;
	char stamp[32], full[THIN_NAME_MAX + 64];
	struct pool *p;
	struct vol *v;
	int rc;

	if (rpc_params_only(params, err, "volume", "name", NULL) ||
	    rpc_param_name(params, "volume", RPC_REQUIRED, &vname, err) ||
	    rpc_param_name(params, "name", RPC_OPTIONAL, &sname, err))
		return NULL;
	if (strchr(vname, '@'))
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: '%s' is a snapshot; "
				 "snapshots are taken of writable volumes", vname);
	if (sname && strchr(sname, '@'))
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: a snapshot name has "
				 "no '@': '%s'", sname);
	v = vol_find(vname, &p);
	if (!v)
		return rpc_error(err, RPC_ERR_NOT_FOUND, "no volume named '%.64s'", vname);
	if (!p->tp)
		return rpc_error(err, RPC_ERR_IO, "pool '%s' is not online: %s", p->name, p->error);
	if (!sname) {
		utc_stamp(stamp, sizeof(stamp));
		sname = stamp;
	}
	snprintf(full, sizeof(full), "%s@%s", vname, sname);
	if (strlen(full) >= THIN_NAME_MAX)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: '%s' is longer than "
				 "%d characters", full, THIN_NAME_MAX - 1);
	if (check_free_name(full, err))
		return NULL;
	rc = thin_snap_create(p->tp, vname, full);
	if (rc)
		return rpc_error_errno(err, rc, "creating snapshot '%s'", full);
	return vol_finish(p, full, vname, "snapshot", err);
}

static json_t *vol_clone(json_t *params, void *arg, struct rpc_err *err)
{
	const char *src, *name;
	struct pool *p;
	int rc;

	if (rpc_params_only(params, err, "source", "name", NULL) ||
	    rpc_param_name(params, "source", RPC_REQUIRED, &src, err) ||
	    rpc_param_name(params, "name", RPC_REQUIRED, &name, err))
		return NULL;
	if (check_vol_name(name, err))
		return NULL;
	if (!vol_find(src, &p))
		return rpc_error(err, RPC_ERR_NOT_FOUND, "no volume or snapshot named '%.64s'", src);
	if (!p->tp)
		return rpc_error(err, RPC_ERR_IO, "pool '%s' is not online: %s", p->name, p->error);
	if (check_free_name(name, err))
		return NULL;
	rc = thin_clone_create(p->tp, src, name);
	if (rc)
		return rpc_error_errno(err, rc, "cloning '%s' as '%s'", src, name);
	return vol_finish(p, name, src, "clone", err);
}

/* Delete one volume: detach, delete from the metadata, forget it. */
static int vol_remove(struct pool *p, struct vol *v, struct rpc_err *err)
{
	int rc = vol_detach(v);

	if (rc) {
		rpc_error_errno(err, rc, "closing '%s'", v->name);
		return -1;
	}
	if (p->tp) {
		rc = thin_vol_delete(p->tp, v->name);
		if (rc) {
			struct vol *nv;

			rpc_error_errno(err, rc, "deleting '%s'", v->name);
			if (!vol_attach(p, v->name, &nv))
				vol_free(v);
			return -1;
		}
	}
	LOG_INFO(LS_THIN, "pool %s: %s deleted", p->name, v->name);
	json_object_del(p->vmeta, v->name);
	vol_free(v);
	return 0;
}

static json_t *vol_delete(json_t *params, void *arg, struct rpc_err *err)
{
	const char *name;
	bool recursive = false;
	struct list_head *pos, *tmp;
	char claims[256], prefix[THIN_NAME_MAX + 1];
	struct pool *p;
	struct vol *v;
	json_t *done;
	bool failed = true;
	unsigned nsnaps = 0;
	size_t plen;
	int rc;

	if (rpc_params_only(params, err, "name", "recursive", NULL) ||
	    rpc_param_str(params, "name", RPC_REQUIRED, &name, err) ||
	    rpc_param_bool(params, "recursive", RPC_OPTIONAL, &recursive, err))
		return NULL;
	v = vol_find(name, &p);
	if (!v)
		return rpc_error(err, RPC_ERR_NOT_FOUND, "no volume or snapshot named '%.64s'", name);
	if (vol_in_use(v, claims, sizeof(claims)))
		return rpc_error(err, RPC_ERR_BUSY, "'%s' is in use by '%s': unexport it first",
				 name, claims);
	plen = (size_t)snprintf(prefix, sizeof(prefix), "%s@", name);
	if (!strchr(name, '@')) {
		list_for_each(pos, &p->vols) {
			struct vol *s = list_entry(pos, struct vol, link);

			if (strncmp(s->name, prefix, plen))
				continue;
			nsnaps++;
			if (vol_in_use(s, claims, sizeof(claims)))
				return rpc_error(err, RPC_ERR_BUSY, "snapshot '%s' is in use by '%s': "
						 "unexport it first", s->name, claims);
		}
	}
	if (nsnaps && !recursive)
		return rpc_error(err, RPC_ERR_BUSY, "volume '%s' has %u snapshot%s: delete %s "
				 "first, or delete recursively", name, nsnaps, nsnaps > 1 ? "s" : "",
				 nsnaps > 1 ? "them" : "it");
	done = json_array();
	if (nsnaps) {
		list_for_each_safe(pos, tmp, &p->vols) {
			struct vol *s = list_entry(pos, struct vol, link);
			char sname[THIN_NAME_MAX];

			if (strncmp(s->name, prefix, plen))
				continue;
			snprintf(sname, sizeof(sname), "%s", s->name);
			if (vol_remove(p, s, err))
				goto save;
			json_array_append_new(done, json_string(sname));
		}
	}
	if (vol_remove(p, v, err))
		goto save;
	json_array_append_new(done, json_string(name));
	failed = false;
save:
	rc = pools_save(NULL);	/* annotations only: the metadata is what counts */
	if (rc)
		LOG_ERR(LS_THIN, "saving %s: %s", state_path(), strerror(-rc));
	if (failed) {
		json_decref(done);
		return NULL;
	}
	return json_pack("{s:o}", "deleted", done);
}

static json_t *vol_list(json_t *params, void *arg, struct rpc_err *err)
{
	const char *pname = NULL;
	struct list_head *pos, *vpos;
	json_t *a;

	if (rpc_params_only(params, err, "pool", NULL) ||
	    rpc_param_str(params, "pool", RPC_OPTIONAL, &pname, err))
		return NULL;
	if (pname && !pool_find(pname))
		return rpc_error(err, RPC_ERR_NOT_FOUND, "no pool named '%.64s'", pname);
	a = json_array();
	list_for_each(pos, &pools) {
		struct pool *p = list_entry(pos, struct pool, link);

		if (pname && strcmp(pname, p->name))
			continue;
		list_for_each(vpos, &p->vols)
			json_array_append_new(a, vol_info(p, list_entry(vpos, struct vol, link), false));
	}
	return a;
}

static json_t *vol_show(json_t *params, void *arg, struct rpc_err *err)
{
	const char *name;
	struct pool *p;
	struct vol *v;

	if (rpc_params_only(params, err, "name", NULL) ||
	    rpc_param_str(params, "name", RPC_REQUIRED, &name, err))
		return NULL;
	v = vol_find(name, &p);
	if (!v)
		return rpc_error(err, RPC_ERR_NOT_FOUND, "no volume or snapshot named '%.64s'", name);
	return vol_info(p, v, true);
}

/*
 * vol.resize: grow online (an open device takes the new size at once: NBD
 * clients see it when they reconnect, iSCSI initiators through READ
 * CAPACITY after a CAPACITY DATA HAS CHANGED unit attention); shrink only
 * with force, which unmaps every chunk past the new end.
 */
static json_t *vol_resize(json_t *params, void *arg, struct rpc_err *err)
{
	const char *name;
	uint64_t size;
	bool force = false;
	struct thin_vol_info vi;
	struct pool *p;
	struct vol *v;
	int rc;

	if (rpc_params_only(params, err, "name", "size", "force", NULL) ||
	    rpc_param_str(params, "name", RPC_REQUIRED, &name, err) ||
	    rpc_param_size(params, "size", RPC_REQUIRED, &size, err) ||
	    rpc_param_bool(params, "force", RPC_OPTIONAL, &force, err))
		return NULL;
	v = vol_find(name, &p);
	if (!v)
		return rpc_error(err, RPC_ERR_NOT_FOUND, "no volume named '%.64s'", name);
	if (strchr(name, '@'))
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: '%s' is a snapshot; "
				 "snapshots keep their size (clone it to get a volume)", name);
	if (!p->tp)
		return rpc_error(err, RPC_ERR_IO, "pool '%s' is not online: %s", p->name, p->error);
	if (!size || size % p->raid->block_size)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: 'size' %llu is not a "
				 "positive multiple of the block size %u", (unsigned long long)size,
				 p->raid->block_size);
	rc = thin_vol_info(p->tp, name, &vi);
	if (rc)
		return rpc_error_errno(err, rc, "resizing volume '%s'", name);
	if (size < vi.size && !force)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: shrinking '%s' from "
				 "%llu to %llu bytes discards the data past the new end: pass "
				 "force (volctl: --force)", name, (unsigned long long)vi.size,
				 (unsigned long long)size);
	rc = thin_vol_resize(p->tp, name, size, force);
	if (rc == -EROFS)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: '%s' is read-only", name);
	if (rc)
		return rpc_error_errno(err, rc, "resizing volume '%s' to %llu bytes", name,
				       (unsigned long long)size);
	if (size != vi.size)
		LOG_INFO(LS_THIN, "pool %s: volume %s resized from %llu to %llu bytes", p->name,
			 name, (unsigned long long)vi.size, (unsigned long long)size);
	return vol_info(p, v, true);
}

/*
 * Rollback VOL@SNAP: VOL becomes a writable copy of the snapshot again.
 * The thin pool has no call for it, so: a trial clone of the snapshot
 * (proves that the metadata has room and time for one), dropped; then
 * VOL is deleted and the snapshot cloned as VOL. Its other snapshots,
 * older or newer, stay as they are (snapshots are independent volumes).
 */
#define ROLLBACK_TMP	".rollback-tmp"

static json_t *vol_rollback(json_t *params, void *arg, struct rpc_err *err)
{
	const char *name, *at;
	char vname[THIN_NAME_MAX], claims[256];
	struct pool *p, *vp;
	struct vol *s, *v;
	int rc;

	if (rpc_params_only(params, err, "snapshot", NULL) ||
	    rpc_param_str(params, "snapshot", RPC_REQUIRED, &name, err))
		return NULL;
	at = strchr(name, '@');
	if (!at)
		return rpc_error(err, RPC_INVALID_PARAMS, "invalid params: roll back to a "
				 "snapshot, VOL@SNAP, not '%.64s'", name);
	s = vol_find(name, &p);
	if (!s)
		return rpc_error(err, RPC_ERR_NOT_FOUND, "no snapshot named '%.64s'", name);
	snprintf(vname, sizeof(vname), "%.*s", (int)(at - name), name);
	v = vol_find(vname, &vp);
	if (!v || vp != p)
		return rpc_error(err, RPC_ERR_NOT_FOUND, "volume '%s' is gone: clone the snapshot "
				 "instead", vname);
	if (!p->tp)
		return rpc_error(err, RPC_ERR_IO, "pool '%s' is not online: %s", p->name, p->error);
	if (vol_in_use(v, claims, sizeof(claims)))
		return rpc_error(err, RPC_ERR_BUSY, "volume '%s' is in use by '%s': unexport it "
				 "first", vname, claims);
	thin_vol_delete(p->tp, ROLLBACK_TMP);	/* a leftover of a crash, if any */
	rc = thin_clone_create(p->tp, name, ROLLBACK_TMP);
	if (rc)
		return rpc_error_errno(err, rc, "rolling '%s' back to '%s'", vname, name);
	rc = thin_vol_delete(p->tp, ROLLBACK_TMP);
	if (rc)
		return rpc_error_errno(err, rc, "rolling '%s' back to '%s'", vname, name);
	rc = vol_detach(v);
	if (rc)
		return rpc_error_errno(err, rc, "closing '%s'", vname);
	rc = thin_vol_delete(p->tp, vname);
	if (rc) {
		struct vol *nv;

		rpc_error_errno(err, rc, "rolling '%s' back to '%s'", vname, name);
		if (!vol_attach(p, vname, &nv))
			vol_free(v);
		return NULL;
	}
	vol_free(v);
	rc = thin_clone_create(p->tp, name, vname);
	if (!rc)
		rc = vol_attach(p, vname, &v);
	if (rc) {
		/* after a trial clone worked: should not happen */
		LOG_ERR(LS_THIN, "pool %s: rolling %s back to %s: %s: the volume is lost",
			p->name, vname, name, strerror(-rc));
		json_object_del(p->vmeta, vname);
		pools_save(NULL);
		return rpc_error_errno(err, rc, "rolling '%s' back to '%s' (the volume is lost)",
				       vname, name);
	}
	LOG_INFO(LS_THIN, "pool %s: %s rolled back to %s", p->name, vname, name);
	return vol_info(p, v, true);
}

/* ------------------------------------------------------------ life cycle */

static void pools_shutdown(void *arg)
{
	struct list_head *pos, *tmp;

	list_for_each_safe(pos, tmp, &pools) {
		struct pool *p = list_entry(pos, struct pool, link);

		list_del(&p->link);
		pool_teardown(p);	/* on failure, logged and left */
	}
}

void pool_rpc_init(void)
{
	rpc_register("pool.create", pool_create, NULL);
	rpc_register("pool.list", pool_list, NULL);
	rpc_register("pool.show", pool_show, NULL);
	rpc_register("pool.destroy", pool_destroy, NULL);
	rpc_register("pool.check", pool_check, NULL);
	rpc_register("pool.set", pool_set, NULL);
	rpc_register("pool.replace", pool_replace, NULL);
	rpc_register("pool.add_spare", pool_add_spare, NULL);
	rpc_register("pool.fail", pool_fail, NULL);
	rpc_register("pool.scrub", pool_scrub, NULL);
	rpc_register("vol.create", vol_create, NULL);
	rpc_register("vol.list", vol_list, NULL);
	rpc_register("vol.show", vol_show, NULL);
	rpc_register("vol.delete", vol_delete, NULL);
	rpc_register("vol.snapshot", vol_snapshot, NULL);
	rpc_register("vol.clone", vol_clone, NULL);
	rpc_register("vol.resize", vol_resize, NULL);
	rpc_register("vol.rollback", vol_rollback, NULL);
	/* Registered before any export's hook (they register when their first
	 * export or listener appears), so it runs after they have drained. */
	if (daemon_on_shutdown("pools", pools_shutdown, NULL))
		LOG_ERR(LS_THIN, "cannot register the pools' shutdown hook");
}

/*
 * Bring pool p (members known) back: assemble, open, attach volumes.
 *
 * The disks of the pool (members and spares) are sorted by their RAID
 * superblocks: the newest generation of this pool's set says who is a
 * member now. A member with an older generation (stale: it missed writes)
 * or no longer in the set (replaced) is never trusted: it becomes a hot
 * spare, so the set rebuilds it (when a slot is failed). Disks without a
 * superblock listed as spares are spares.
 */
/* --scan: a moved member is a file with this pool's superblock (its name
 * and, when another member told it, its UUID) and a member UUID no other
 * disk has. */
struct scan_ctx {
	const char	*name;
	bool		have_uuid;
	uint8_t		pool_uuid[16];
	uint8_t		seen[2 * RAID_MAX_MEMBERS][16];
	uint32_t	nseen;
};

static bool scan_match(struct blkdev *bd, void *arg)
{
	struct scan_ctx *c = arg;
	struct raid_sb sb;

	if (raid_sb_read(bd, &sb) || strcmp(sb.name, c->name) ||
	    (c->have_uuid && memcmp(sb.pool_uuid, c->pool_uuid, 16)))
		return false;
	for (uint32_t i = 0; i < c->nseen; i++)
		if (!memcmp(c->seen[i], sb.member_uuid, 16))
			return false;
	if (c->nseen < 2 * RAID_MAX_MEMBERS)
		memcpy(c->seen[c->nseen++], sb.member_uuid, 16);
	return true;
}

/* Look for the pool's disks that did not open in the --scan directories. */
static void pool_find_moved(struct pool *p)
{
	struct scan_ctx c = { .name = p->name };
	uint64_t gen = 0;
	struct raid_sb sb;

	for (uint32_t i = 0; i < p->nmembers + p->nspares; i++) {
		const char *d = i < p->nmembers ? p->members[i] : p->spares[i - p->nmembers];
		struct blkdev *bd = blkdev_find(d);

		if (!bd || raid_sb_read(bd, &sb) || strcmp(sb.name, p->name))
			continue;
		if (!c.have_uuid || sb.generation > gen) {
			memcpy(c.pool_uuid, sb.pool_uuid, 16);
			gen = sb.generation;
			c.have_uuid = true;
		}
		if (c.nseen < 2 * RAID_MAX_MEMBERS)
			memcpy(c.seen[c.nseen++], sb.member_uuid, 16);
	}
	for (uint32_t i = 0; i < p->nmembers; i++)
		if (!blkdev_find(p->members[i]) && !disk_relocate(p->members[i], scan_match, &c))
			LOG_WARN(LS_RAID, "pool %s: member disk %s found by --scan", p->name,
				 p->members[i]);
}

static int pool_bring_up(struct pool *p)
{
	struct blkdev *bds[RAID_MAX_MEMBERS], *cand[2 * RAID_MAX_MEMBERS];
	struct blkdev *spare[2 * RAID_MAX_MEMBERS];
	struct raid_sb *sbs;
	bool ok[2 * RAID_MAX_MEMBERS] = { false };
	int best = -1;
	struct thin_pool_info ti;
	char (*names)[THIN_NAME_MAX] = NULL;
	unsigned nn = 0;
	uint32_t n = 0, nc = 0, nspare = 0;
	char missing[RPC_MSG_MAX / 2] = "";
	bool dropped = false;
	size_t ml = 0;
	int rc;

	sbs = calloc(2 * RAID_MAX_MEMBERS, sizeof(*sbs));
	if (!sbs)
		return -ENOMEM;
	pool_find_moved(p);
	for (uint32_t i = 0; i < p->nmembers + p->nspares; i++) {
		const char *d = i < p->nmembers ? p->members[i] : p->spares[i - p->nmembers];
		struct blkdev *bd = blkdev_find(d);

		if (i < p->nmembers)
			p->slot[i] = -1;
		if (!bd) {
			LOG_ERR(LS_RAID, "pool %s: %s disk %s is not available", p->name,
				i < p->nmembers ? "member" : "spare", d);
			if (i < p->nmembers && ml < sizeof(missing))
				ml += (size_t)snprintf(missing + ml, sizeof(missing) - ml, "%s%s (not "
						       "available)", ml ? ", " : "", d);
			continue;
		}
		cand[nc] = bd;
		ok[nc] = !raid_sb_read(bd, &sbs[nc]) && !strcmp(sbs[nc].name, p->name);
		if (ok[nc] && (best < 0 || sbs[nc].generation > sbs[best].generation))
			best = (int)nc;
		nc++;
	}
	for (uint32_t c = 0; c < nc; c++) {
		struct raid_sb *sb = &sbs[c];
		int idx = member_index(p, cand[c]->name);

		/* current: the newest generation, or one older but active in the
		 * newest superblock (it missed the last update only: raid_assemble
		 * uses it) */
		if (best >= 0 && ok[c] && !memcmp(sb->pool_uuid, sbs[best].pool_uuid, 16) &&
		    sb->index < sbs[best].geom.nmembers &&
		    !memcmp(sb->member_uuid, sbs[best].members[sb->index].uuid, 16) &&
		    (sb->generation == sbs[best].generation ||
		     (sb->generation + 1 == sbs[best].generation &&
		      sbs[best].members[sb->index].state == RAID_MEMBER_ACTIVE))) {
			if (idx >= 0)
				p->slot[idx] = (int)sb->index;
			p->level = sb->geom.level;
			p->strip = sb->geom.strip;
			bds[n++] = cand[c];
			continue;
		}
		if (ok[c] && best >= 0 && !memcmp(sb->pool_uuid, sbs[best].pool_uuid, 16) &&
		    (sb->index >= sbs[best].geom.nmembers ||
		     memcmp(sb->member_uuid, sbs[best].members[sb->index].uuid, 16))) {
			/* replaced (a spare took its slot before the daemon saved
			 * it): it leaves the pool, it is not reused on its own */
			LOG_WARN(LS_RAID, "pool %s: disk %s was replaced in the set: it leaves "
				 "the pool", p->name, cand[c]->name);
			if (idx >= 0) {
				memmove(&p->members[idx], &p->members[idx + 1],
					(p->nmembers - (uint32_t)idx - 1) * sizeof(p->members[0]));
				memmove(&p->slot[idx], &p->slot[idx + 1],
					(p->nmembers - (uint32_t)idx - 1) * sizeof(p->slot[0]));
				p->nmembers--;
				dropped = true;
			}
			continue;
		}
		if (ok[c] && best >= 0 && !memcmp(sb->pool_uuid, sbs[best].pool_uuid, 16))
			LOG_WARN(LS_RAID, "pool %s: disk %s is stale (generation %llu, the set is "
				 "at %llu): not trusted, it will be rebuilt", p->name, cand[c]->name,
				 (unsigned long long)sb->generation,
				 (unsigned long long)sbs[best].generation);
		else if (idx >= 0)
			LOG_ERR(LS_RAID, "pool %s: member disk %s has no superblock of this pool: "
				"taken as a spare", p->name, cand[c]->name);
		if (idx >= 0 && ml < sizeof(missing))
			ml += (size_t)snprintf(missing + ml, sizeof(missing) - ml, "%s%s (%s)",
					       ml ? ", " : "", cand[c]->name,
					       ok[c] ? "stale" : "no superblock");
		spare[nspare++] = cand[c];
	}
	free(sbs);
	if (dropped) {
		rc = pools_save(NULL);
		if (rc)
			LOG_ERR(LS_THIN, "saving %s: %s", state_path(), strerror(-rc));
	}
	if (!n) {
		snprintf(p->error, sizeof(p->error), "assembling the raid set: none of its disks is a "
			 "current member: %s",
			 missing);
		return -ENODEV;
	}
	rc = raid_assemble_rate(bds, n, p->rate, &p->raid);
	if (rc) {
		p->raid = NULL;
		if (rc == -ENODEV)
			snprintf(p->error, sizeof(p->error), "raid %d cannot start: too many members "
				 "missing: %s", p->level, ml ? missing : "(see the log)");
		else
			snprintf(p->error, sizeof(p->error), "assembling the raid set: %s (see the "
				 "log)", strerror(-rc));
		return rc;
	}
	for (uint32_t i = 0; i < nspare && p->level != 0; i++) {
		int e = raid_spare_add(p->raid, spare[i]);

		if (e)
			LOG_ERR(LS_RAID, "pool %s: spare %s: %s", p->name, spare[i]->name,
				strerror(-e));
	}
	pool_sync(p);
	rc = pool_open_thin(p);
	if (rc) {
		p->tp = NULL;
		snprintf(p->error, sizeof(p->error), "opening the thin pool: %s", strerror(-rc));
		goto close_raid;
	}
	if (!thin_pool_info(p->tp, &ti))
		p->chunk = ti.chunk_size;
	rc = thin_vol_list(p->tp, &names, &nn);
	if (rc) {
		snprintf(p->error, sizeof(p->error), "listing volumes: %s", strerror(-rc));
		goto close_thin;
	}
	for (unsigned i = 0; i < nn; i++) {
		struct vol *v;

		if (!strcmp(names[i], ROLLBACK_TMP)) {
			thin_vol_delete(p->tp, names[i]);
			continue;
		}
		rc = vol_attach(p, names[i], &v);
		if (!rc)
			continue;
		LOG_ERR(LS_THIN, "pool %s: volume %s: %s", p->name, names[i], strerror(-rc));
		v = calloc(1, sizeof(*v));
		if (!v)
			continue;
		snprintf(v->name, sizeof(v->name), "%s", names[i]);
		snprintf(v->error, sizeof(v->error), "%s", strerror(-rc));
		list_add_tail(&v->link, &p->vols);
	}
	free(names);
	return 0;

close_thin:
	thin_pool_close(p->tp);
	p->tp = NULL;
close_raid:
	raid_jobs_stop(p->raid);
	blkdev_close(p->raid);
	p->raid = NULL;
	return rc;
}

void pool_restore(void)
{
	json_t *a = state_get(SECTION), *e, *m, *d;
	size_t i, k;

	if (!a)
		return;
	restoring = true;
	if (!json_is_array(a)) {
		restoring = false;
		LOG_ERR(LS_THIN, "%s: \"%s\" is not an array: ignoring it", state_path(), SECTION);
		json_decref(a);
		return;
	}
	json_array_foreach(a, i, e) {
		struct rpc_err err = { 0 };
		const char *name;
		uint64_t level = 0, strip = 0, chunk = 0, low_pct = LOW_SPACE_PCT, rate = 0;
		json_t *vm = NULL, *sp = NULL;
		struct pool *p;

		if (rpc_param_name(e, "name", RPC_REQUIRED, &name, &err) ||
		    rpc_param_u64(e, "level", RPC_OPTIONAL, &level, &err) ||
		    rpc_param_u64(e, "strip", RPC_OPTIONAL, &strip, &err) ||
		    rpc_param_u64(e, "chunk", RPC_OPTIONAL, &chunk, &err) ||
		    rpc_param_u64(e, "low_space", RPC_OPTIONAL, &low_pct, &err) ||
		    rpc_param_array(e, "members", RPC_REQUIRED, &m, &err) ||
		    rpc_param_object(e, "volumes", RPC_OPTIONAL, &vm, &err) ||
		    rpc_param_array(e, "spares", RPC_OPTIONAL, &sp, &err) ||
		    rpc_param_u64(e, "rebuild_rate", RPC_OPTIONAL, &rate, &err)) {
			LOG_ERR(LS_THIN, "%s: pool %zu: %s: skipped", state_path(), i, err.message);
			json_decref(err.data);
			continue;
		}
		if (pool_find(name)) {
			LOG_ERR(LS_THIN, "%s: pool %s appears twice: skipped", state_path(), name);
			continue;
		}
		p = calloc(1, sizeof(*p));
		if (!p)
			break;
		snprintf(p->name, sizeof(p->name), "%s", name);
		p->level = (int)level;
		p->strip = (uint32_t)strip;
		p->chunk = (uint32_t)chunk;
		p->low_pct = (uint32_t)MIN(low_pct, 99);
		list_init(&p->vols);
		p->vmeta = vm ? json_incref(vm) : json_object();
		json_array_foreach(m, k, d) {
			if (p->nmembers == RAID_MAX_MEMBERS || !json_is_string(d))
				break;
			snprintf(p->members[p->nmembers], BLK_NAME_MAX, "%s", json_string_value(d));
			p->slot[p->nmembers++] = -1;
		}
		p->rate = rate;
		json_array_foreach(sp, k, d) {
			if (p->nspares == RAID_MAX_MEMBERS || !json_is_string(d))
				break;
			snprintf(p->spares[p->nspares++], BLK_NAME_MAX, "%s", json_string_value(d));
		}
		list_add_tail(&p->link, &pools);
		if (!p->chunk) {
			snprintf(p->error, sizeof(p->error), "no chunk size in the state file");
			LOG_ERR(LS_THIN, "pool %s: %s", p->name, p->error);
			continue;
		}
		if (pool_bring_up(p))
			LOG_ERR(LS_THIN, "pool %s: %s", p->name, p->error);
		else
			LOG_INFO(LS_THIN, "pool %s back: %s, %u volumes", p->name,
				 level_name(p->level), pool_nvols(p));
	}
	json_decref(a);
	restoring = false;
	if (save_pending) {	/* members found moved, replaced, or taken by spares */
		int rc = pools_save(NULL);

		save_pending = false;
		if (rc)
			LOG_ERR(LS_THIN, "saving %s: %s", state_path(), strerror(-rc));
	}
}
