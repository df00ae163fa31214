/* SPDX-License-Identifier: MIT */
/*
 * The pool checker: walk every tree from the roots the pool holds, count
 * the references each metadata block and each data chunk should have, and
 * compare with the space maps, entry by entry.
 *
 * Expected counts: a node gets one per pointer to it (from a parent, from a
 * volume's mapping root, or the volume table's root); the walk goes into a
 * shared node only once, so a data chunk gets one per leaf entry of each
 * distinct leaf that maps it. Entries below the metadata space map's
 * alloc_begin (superblocks, refcount slots) must count 0. Every block the
 * walk reads passes its validator and the node checks; keys must be sorted,
 * mappings inside their volume, their chunks inside the data area, and
 * their times not after the pool's.
 *
 * It checks the pool's current state (what the next commit would write);
 * call it after a commit to check what is on disk. Memory: 4 bytes per
 * metadata block and per data chunk, for the duration of the check.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sand/log.h"
#include "snapshot/pool.h"

struct check {
	struct thin_pool	*p;
	uint32_t		*meta, *data;
	uint64_t		nmeta, ndata;
	uint64_t		vchunks;	/* the volume being walked */
	struct thin_check_report *rep;
};

static int node_ref(void *arg, uint64_t nr)
{
	struct check *c = arg;

	if (nr >= c->nmeta)
		return -EUCLEAN;
	c->rep->node_refs++;
	return ++c->meta[nr] == 1;
}

static int map_value(void *arg, uint64_t key, const void *value)
{
	struct check *c = arg;
	uint64_t pc = get_le64(value) >> 24;

	/* inside the data area, inside the volume, and not from the future */
	if (pc >= c->ndata || key >= c->vchunks || (get_le64(value) & 0xffffff) > c->p->time)
		return -EUCLEAN;
	c->data[pc]++;
	c->rep->mappings++;
	return 0;
}

static void mismatch(struct check *c, const char *what, uint64_t e, uint32_t have, uint32_t want)
{
	if (c->rep->errors++ < 10)
		LOG_ERR(LS_THIN, "%s: check: %s %llu has count %u, %u references found",
			c->p->dev->name, what, (unsigned long long)e, have, want);
}

static int compare(struct check *c, struct sm *sm, const uint32_t *want, uint64_t n,
		   const char *what)
{
	uint32_t have;
	int rc;

	for (uint64_t e = 0; e < n; e++) {
		rc = sm_get_count(sm, e, &have);
		if (rc)
			return rc;
		if (have != want[e])
			mismatch(c, what, e, have, want[e]);
	}
	return 0;
}

static int check_owner(struct thin_pool *p, void *arg)
{
	struct check c = { .p = p, .rep = arg };
	struct btree_walker w = { .node = node_ref, .value = map_value, .arg = &c };
	struct btree_walker vw = { .node = node_ref, .arg = &c };
	struct list_head *pos;
	int rc;

	memset(c.rep, 0, sizeof(*c.rep));
	c.nmeta = sm_nentries(tm_msm(p->tm));
	c.ndata = sm_nentries(tm_dsm(p->tm));
	c.meta = calloc(c.nmeta, sizeof(*c.meta));
	c.data = calloc(c.ndata, sizeof(*c.data));
	rc = -ENOMEM;
	if (!c.meta || !c.data)
		goto free_counts;
	rc = btree_walk(&p->vinfo, p->vroot, &vw);
	list_for_each(pos, &p->vols) {
		struct vol_rec *r = list_entry(pos, struct vol_rec, link);

		if (rc)
			break;
		c.vchunks = DIV_ROUND_UP(r->size, p->chunk);
		rc = btree_walk(&p->minfo, r->root, &w);
		c.rep->volumes++;
	}
	if (!rc)
		rc = compare(&c, tm_msm(p->tm), c.meta, c.nmeta, "metadata block");
	if (!rc)
		rc = compare(&c, tm_dsm(p->tm), c.data, c.ndata, "data chunk");
	if (rc == -EUCLEAN)
		c.rep->errors++;
	if (!rc && c.rep->errors)
		rc = -EUCLEAN;
free_counts:
	free(c.meta);
	free(c.data);
	return rc;
}

/* Provisionings in flight hold chunks no tree refers to yet: the walk
 * sees the space maps without them (pool_prov_hold). */
static int check_held(struct thin_pool *p, void *arg)
{
	int rc;

	pool_prov_hold(p, false);
	rc = check_owner(p, arg);
	pool_prov_hold(p, true);
	return rc;
}

int thin_pool_check(struct thin_pool *p, struct thin_check_report *rep)
{
	return pool_call(p, check_held, rep);
}
