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
 * their times not after the pool's. Each space map's record of how many
 * entries are in use must match its counts.
 *
 * Each tree is walked on its own: a damaged one is reported (by volume) and
 * the walk goes on with the next. Each count that differs is reported with
 * what it should be: higher than its references (a leak: the block or chunk
 * is never reused) or lower (dangerous: it could be reused while in use).
 *
 * Repair: when every tree could be walked, the recount is complete, so the
 * space maps are rewritten from it (counts set to the references found,
 * leaked blocks and chunks returned, the in-use records recomputed) and
 * committed, then the pool is checked again. A damaged tree is not
 * repaired: its references are unknown, so no count is changed (lowering
 * one could hand a chunk it still maps to another volume). Unless asked to
 * drop the damaged volumes (drop_damaged): they leave the volume table, the
 * trees left are whole, and the counts are rebuilt from them; what only the
 * dropped volumes referenced returns to the pool. Not an open volume, and
 * not when the volume table itself is damaged.
 *
 * Provisionings in flight (chunks allocated that no tree maps yet) are
 * taken out of the counts for the walk and the repair (pool_prov_hold), so
 * an online check sees no leak there and a repair never frees them.
 *
 * It checks the pool's current state (what the next commit would write);
 * call it after a commit to check what is on disk. Memory: 4 bytes per
 * metadata block and per data chunk, for the duration of the check.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/log.h"
#include "snapshot/pool.h"

#define REPORT_MAX	100	/* lines passed to the caller; the rest only counted */
#define LOG_MAX		10	/* lines logged */

struct check {
	struct thin_pool	*p;
	const struct thin_check_opts *o;
	struct thin_check_report *rep;
	uint32_t		*meta, *data;
	uint8_t			*owned;		/* salvage: chunks a whole tree writes in place */
	uint8_t			*bad;		/* nodes where a walk failed */
	uint32_t		*seen;		/* shared_damage: per node, the tree, or SEEN_CLEAN */
	uint64_t		*path;		/* ... the nodes the current tree entered */
	uint64_t		npath, path_cap;
	uint32_t		cur;
	uint64_t		nmeta, ndata, alloc_begin;
	uint64_t		vchunks;	/* the volume being walked */
	uint32_t		snap_time;	/* its snap_time */
	uint64_t		last_node;	/* the node the walk went into last */
	unsigned		lines;
	bool			vtable_bad;
	char			why[160];	/* what stopped the current walk */
};

static void __attribute__((format(printf, 2, 3))) say(struct check *c, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (c->lines < LOG_MAX)
		LOG_ERR(LS_THIN, "%s: check: %s", c->p->dev->name, line);
	if (c->lines++ < REPORT_MAX && c->o && c->o->report)
		c->o->report(c->o->arg, line);
}

static int node_ref(void *arg, uint64_t nr)
{
	struct check *c = arg;

	if (nr >= c->nmeta || nr < c->alloc_begin) {
		snprintf(c->why, sizeof(c->why), "a pointer to block %llu, outside the node area",
			 (unsigned long long)nr);
		return -EUCLEAN;
	}
	c->rep->node_refs++;
	c->last_node = nr;
	return ++c->meta[nr] == 1;
}

static int map_value(void *arg, uint64_t key, const void *value)
{
	struct check *c = arg;
	uint64_t pc = get_le64(value) >> 24;
	uint32_t t = get_le64(value) & TIME_MASK;

	if (pc >= c->ndata)
		snprintf(c->why, sizeof(c->why), "chunk %llu maps to chunk %llu, past the data area",
			 (unsigned long long)key, (unsigned long long)pc);
	else if (key >= c->vchunks)
		snprintf(c->why, sizeof(c->why), "chunk %llu is mapped, past the volume's end",
			 (unsigned long long)key);
	else if (t > c->p->time)
		snprintf(c->why, sizeof(c->why), "chunk %llu has time %u, after the pool's %u",
			 (unsigned long long)key, t, c->p->time);
	else {
		c->data[pc]++;
		c->rep->mappings++;
		if (c->owned && t >= c->snap_time)
			c->owned[pc] = 1;
		return 0;
	}
	return -EUCLEAN;
}

/* Walk one tree; a damaged one is reported and counted (1). */
static int walk_tree(struct check *c, struct btree_info *info, uint64_t root,
		     const struct btree_walker *w, const char *tree)
{
	int rc;

	c->why[0] = '\0';
	c->last_node = root;
	rc = btree_walk(info, root, w);
	if (rc != -EUCLEAN && rc != -EIO && rc != -ERANGE)
		return rc;
	if (!c->why[0])
		snprintf(c->why, sizeof(c->why), rc == -EUCLEAN ?
			 "node %llu (or a child) is not a valid node of this tree: checksum, "
			 "location, type or key order" : "node %llu (or a child) cannot be read: %s",
			 (unsigned long long)c->last_node, strerror(-rc));
	c->rep->bad_trees++;
	c->rep->errors++;
	if (c->bad && c->last_node < c->nmeta)
		c->bad[c->last_node] = 1;
	say(c, "%s is damaged: %s", tree, c->why);
	return 1;
}

/*
 * The walk goes into a shared node once, so a tree that shares a damaged
 * node (or an ancestor of one) with a tree walked before it looks whole.
 * Each tree not found damaged is walked again, stopping at the nodes known
 * to be whole (every node of a tree whose walk ended well) and failing at
 * the nodes known to be bad. Only when some tree was damaged.
 */
#define SEEN_CLEAN	UINT32_MAX

static int reach_node(void *arg, uint64_t nr)
{
	struct check *c = arg;

	if (nr >= c->nmeta || nr < c->alloc_begin || c->bad[nr]) {
		snprintf(c->why, sizeof(c->why), "it shares damaged node %llu",
			 (unsigned long long)nr);
		return -EUCLEAN;
	}
	if (c->seen[nr] == SEEN_CLEAN || c->seen[nr] == c->cur)
		return 0;
	if (c->npath == c->path_cap) {
		uint64_t cap = c->path_cap ? 2 * c->path_cap : 256;
		uint64_t *pth = realloc(c->path, cap * sizeof(*pth));

		if (!pth)
			return -ENOMEM;
		c->path = pth;
		c->path_cap = cap;
	}
	c->seen[nr] = c->cur;
	c->path[c->npath++] = nr;
	c->last_node = nr;
	return 1;
}

static int shared_damage(struct check *c, bool *damaged, const bool *skip)
{
	struct thin_pool *p = c->p;
	struct btree_walker w = { .node = reach_node, .arg = c };
	char tree[THIN_NAME_MAX + 64];
	struct list_head *pos;
	unsigned i = 0;
	int rc = 0;

	c->seen = calloc(c->nmeta, sizeof(*c->seen));
	if (!c->seen)
		return -ENOMEM;
	list_for_each(pos, &p->vols) {
		struct vol_rec *r = list_entry(pos, struct vol_rec, link);

		if (damaged[i] || (skip && skip[i])) {
			i++;
			continue;
		}
		c->cur = ++i;
		c->npath = 0;
		c->why[0] = '\0';
		rc = btree_walk(&p->minfo, r->root, &w);
		if (rc == -ENOMEM)
			break;
		if (!rc) {
			for (uint64_t j = 0; j < c->npath; j++)
				c->seen[c->path[j]] = SEEN_CLEAN;
			continue;
		}
		rc = 0;
		snprintf(tree, sizeof(tree), "volume '%s' (id %llu): its mapping tree", r->name,
			 (unsigned long long)r->id);
		if (!c->why[0])
			snprintf(c->why, sizeof(c->why), "node %llu (or a child) cannot be read",
				 (unsigned long long)c->last_node);
		damaged[i - 1] = true;
		c->rep->bad_trees++;
		c->rep->errors++;
		say(c, "%s is damaged: %s", tree, c->why);
	}
	free(c->seen);
	c->seen = NULL;
	free(c->path);
	c->path = NULL;
	c->npath = c->path_cap = 0;
	return rc;
}

/* Compare (and with fix, set) one space map's counts with the recount. */
static int compare(struct check *c, struct sm *sm, const uint32_t *want, uint64_t n,
		   const char *what, bool fix, uint64_t *leaked)
{
	struct sm_root root;
	uint64_t used = 0, want_used = 0, high = 0, low = 0;
	uint32_t have;
	int rc;

	for (uint64_t e = 0; e < n; e++) {
		rc = sm_get_count(sm, e, &have);
		if (rc)
			return rc;
		used += have != 0;
		want_used += want[e] != 0;
		if (have == want[e])
			continue;
		if (fix) {
			rc = sm_set_count(sm, e, want[e]);
			if (rc)
				return rc;
			c->rep->fixed++;
			if (leaked && !want[e])
				(*leaked)++;
			continue;
		}
		c->rep->errors++;
		if (have > want[e]) {
			high++;
			*leaked += !want[e];
		} else {
			low++;
		}
		say(c, "%s %llu: count %u, %u references found (%s)", what, (unsigned long long)e,
		    have, want[e], !want[e] ? "leaked: never reused" : have > want[e] ?
		    "too high: never freed" : "too low: could be reused while in use");
	}
	sm_get_root(sm, &root);
	if (fix) {
		sm_set_nr_allocated(sm, want_used);
		c->rep->fixed += root.nr_allocated != want_used;
		return 0;
	}
	if (root.nr_allocated != used) {
		c->rep->errors++;
		say(c, "%s space map: %llu entries in use on record, %llu counted", what,
		    (unsigned long long)root.nr_allocated, (unsigned long long)used);
	}
	if (high || low)
		say(c, "%s space map: %llu counts too high (%llu of them leaked), %llu too low", what,
		    (unsigned long long)high, (unsigned long long)*leaked, (unsigned long long)low);
	return 0;
}

/* Walk every tree into fresh counts; damaged volumes get their flag set.
 * Volumes with skip set are left out (counted as volumes all the same). */
static int walk_all(struct check *c, bool *damaged, const bool *skip)
{
	struct thin_pool *p = c->p;
	struct btree_walker w = { .node = node_ref, .value = map_value, .arg = c };
	struct btree_walker vw = { .node = node_ref, .arg = c };
	char tree[THIN_NAME_MAX + 64];
	struct list_head *pos;
	unsigned i = 0;
	bool any = false;
	int rc;

	memset(c->meta, 0, c->nmeta * sizeof(*c->meta));
	memset(c->data, 0, c->ndata * sizeof(*c->data));
	c->vtable_bad = false;
	rc = walk_tree(c, &p->vinfo, p->vroot, &vw, "the volume table");
	if (rc > 0)
		c->vtable_bad = true;
	list_for_each(pos, &p->vols) {
		struct vol_rec *r = list_entry(pos, struct vol_rec, link);

		if (rc < 0)
			break;
		c->rep->volumes++;
		if (skip && skip[i]) {
			i++;
			continue;
		}
		c->vchunks = DIV_ROUND_UP(r->size, p->chunk);
		c->snap_time = r->snap_time;
		snprintf(tree, sizeof(tree), "volume '%s' (id %llu): its mapping tree", r->name,
			 (unsigned long long)r->id);
		rc = walk_tree(c, &p->minfo, r->root, &w, tree);
		damaged[i++] = rc > 0;
		any |= rc > 0;
	}
	if (rc >= 0 && any)
		rc = shared_damage(c, damaged, skip);
	return rc < 0 ? rc : 0;
}

/* Take the damaged volumes out of the volume table (their data is lost, and
 * so are their references, which the next recount no longer counts). 1:
 * refused, nothing changed (said why). */
static int drop_damaged(struct check *c, const bool *damaged)
{
	struct thin_pool *p = c->p;
	struct list_head *pos, *tmp;
	unsigned i = 0;
	int rc;

	if (c->vtable_bad) {
		say(c, "not repaired: the volume table is damaged; no volume can be dropped");
		return 1;
	}
	list_for_each_safe(pos, tmp, &p->vols) {
		struct vol_rec *r = list_entry(pos, struct vol_rec, link);

		if (!damaged[i++])
			continue;
		if (r->open) {
			say(c, "not repaired: volume '%s' is open; close (unexport) it, or check "
			    "offline", r->name);
			return 1;
		}
	}
	i = 0;
	list_for_each_safe(pos, tmp, &p->vols) {
		struct vol_rec *r = list_entry(pos, struct vol_rec, link);

		if (!damaged[i++])
			continue;
		rc = btree_remove(&p->vinfo, p->vroot, r->id, &p->vroot);
		if (rc && rc != -ENODATA) {
			say(c, "dropping volume '%s' failed: %s", r->name, strerror(-rc));
			return rc;
		}
		say(c, "dropped volume '%s' (id %llu): its mapping tree was damaged; its data is "
		    "lost", r->name, (unsigned long long)r->id);
		c->rep->dropped++;
		list_del(&r->link);
		free(r);
		p->nvols--;
		p->dirty = true;
	}
	return 0;
}

/* ---- salvage: rebuild damaged mapping trees from what can be read ---- */

struct salv {
	struct check	*c;
	struct vol_rec	*r;
	uint64_t	*keys, *vals;
	uint64_t	n, cap;
	uint64_t	vchunks;
};

static int salv_value(void *arg, uint64_t key, const void *value)
{
	struct salv *s = arg;
	struct check *c = s->c;
	uint64_t v = get_le64(value), pc = v >> 24;
	uint32_t t = v & TIME_MASK;

	if (pc >= c->ndata || key >= s->vchunks || t > c->p->time) {
		c->rep->lost_mappings++;
		say(c, "volume '%s': chunk %llu: a mapping that is not valid (chunk %llu, time %u); "
		    "lost", s->r->name, (unsigned long long)key, (unsigned long long)pc, t);
		return 0;
	}
	if (s->n == s->cap) {
		uint64_t cap = s->cap ? 2 * s->cap : 1024;
		uint64_t *k = realloc(s->keys, cap * sizeof(*k)), *vv;

		if (!k)
			return -ENOMEM;
		s->keys = k;
		vv = realloc(s->vals, cap * sizeof(*vv));
		if (!vv)
			return -ENOMEM;
		s->vals = vv;
		s->cap = cap;
	}
	s->keys[s->n] = key;
	s->vals[s->n++] = v;
	return 0;
}

static int salv_bad(void *arg, uint64_t key, uint64_t nr)
{
	struct salv *s = arg;

	s->c->rep->lost_mappings++;
	say(s->c, "volume '%s': chunk %llu: an entry of node %llu out of its place; lost",
	    s->r->name, (unsigned long long)key, (unsigned long long)nr);
	return 0;
}

static int salv_lost(void *arg, uint64_t lo, uint64_t hi, uint64_t nr, int err)
{
	struct salv *s = arg;

	if (lo >= s->vchunks)
		return 0;	/* past the end: nothing of the volume's */
	hi = MIN(hi, s->vchunks - 1);
	s->c->rep->lost_ranges++;
	say(s->c, "volume '%s': chunks %llu-%llu: node %llu cannot be read (%s); whatever they "
	    "mapped is lost (they read as zeros)", s->r->name, (unsigned long long)lo,
	    (unsigned long long)hi, (unsigned long long)nr,
	    err == -EUCLEAN ? "not a valid node: checksum, location or type" : strerror(-err));
	return 0;
}

/* A metadata error in the middle of a rebuild leaves a transaction that
 * must not be committed: the pool fails, as pool.c's fail() does. */
static int salv_fail(struct check *c, int rc)
{
	LOG_ERR(LS_THIN, "%s: repair: metadata error (%d): pool fails all I/O until reopened",
		c->p->dev->name, rc);
	__atomic_store_n(&c->p->failed, rc, __ATOMIC_RELEASE);
	say(c, "repair failed while rebuilding: %s", strerror(-rc));
	return rc;
}

/*
 * Rebuild every damaged mapping tree (not when the volume table is
 * damaged: 1, said why). First what can be read of each is salvaged into
 * memory (btree_salvage). Then the space maps are set from the whole trees
 * alone, so that every block they use is counted and the new nodes cannot
 * take one. A salvaged mapping is kept unless it could let two volumes
 * write one chunk in place: its chunk is written in place by a whole tree,
 * or it would be this volume's own (time >= its snap_time) while someone
 * else maps the chunk too. Each volume gets a new tree of what is kept
 * (its cache is invalidated first when it is open); its old tree is left
 * to the recount (its nodes and chunks return unless something else uses
 * them). The caller then recounts everything and sets the counts.
 */
static int salvage_all(struct check *c, bool *damaged)
{
	struct thin_pool *p = c->p;
	struct btree_salvager sv = { .value = salv_value, .bad = salv_bad, .lost = salv_lost };
	struct salv *ss = calloc(p->nvols + 1, sizeof(*ss));
	uint32_t *claims = calloc(c->ndata, sizeof(*claims));
	struct list_head *pos;
	unsigned i = 0;
	uint8_t v[8];
	int rc = -ENOMEM;

	c->owned = calloc(c->ndata, 1);
	if (!ss || !claims || !c->owned)
		goto free_salv;
	rc = 1;
	if (c->vtable_bad) {
		say(c, "not repaired: the volume table is damaged; no tree can be rebuilt");
		goto free_salv;
	}
	list_for_each(pos, &p->vols) {
		struct vol_rec *r = list_entry(pos, struct vol_rec, link);
		struct salv *s = &ss[i];

		if (!damaged[i++])
			continue;
		*s = (struct salv){ .c = c, .r = r, .vchunks = DIV_ROUND_UP(r->size, p->chunk) };
		sv.arg = s;
		rc = btree_salvage(&p->minfo, r->root, &sv);
		if (rc)
			goto free_salv;
		for (uint64_t j = 0; j < s->n; j++)
			claims[s->vals[j] >> 24]++;
	}
	/* the whole trees' counts, with which chunks they own */
	c->rep->volumes = 0;
	c->rep->node_refs = c->rep->mappings = 0;
	c->rep->bad_trees = 0;
	{
		bool *dummy = calloc(p->nvols + 1, sizeof(*dummy));

		rc = dummy ? walk_all(c, dummy, damaged) : -ENOMEM;
		if (!rc && c->rep->bad_trees)
			rc = -EUCLEAN;	/* whole a moment ago */
		free(dummy);
	}
	if (!rc)
		rc = compare(c, tm_msm(p->tm), c->meta, c->nmeta, "metadata block", true, NULL);
	if (!rc)
		rc = compare(c, tm_dsm(p->tm), c->data, c->ndata, "data chunk", true, NULL);
	if (rc) {
		rc = salv_fail(c, rc);
		goto free_salv;
	}
	for (i = 0; i <= p->nvols; i++) {
		struct salv *s = &ss[i];
		uint64_t root, kept = 0;

		if (!s->r)
			continue;
		rc = btree_empty(&p->minfo, &root);
		for (uint64_t j = 0; j < s->n && !rc; j++) {
			uint64_t pc = s->vals[j] >> 24;
			bool own = (s->vals[j] & TIME_MASK) >= s->r->snap_time;

			if (c->owned[pc] || (own && (c->data[pc] || claims[pc] > 1))) {
				c->rep->lost_mappings++;
				say(c, "volume '%s': chunk %llu: maps chunk %llu, which another volume "
				    "maps too; lost", s->r->name, (unsigned long long)s->keys[j],
				    (unsigned long long)pc);
				continue;
			}
			put_le64(v, s->vals[j]);
			rc = sm_inc(tm_dsm(p->tm), pc);
			if (!rc)
				rc = btree_insert(&p->minfo, root, s->keys[j], v, &root);
			kept++;
		}
		if (rc) {
			rc = salv_fail(c, rc);
			goto free_salv;
		}
		if (s->r->open)
			pool_vol_remapped(s->r->open);
		s->r->root = root;
		s->r->dirty = p->dirty = true;
		c->rep->rebuilt++;
		c->rep->salvaged += kept;
		say(c, "volume '%s' (id %llu): its mapping tree rebuilt: %llu mappings salvaged",
		    s->r->name, (unsigned long long)s->r->id, (unsigned long long)kept);
	}
	/* recount everything: every tree is whole now */
	c->rep->volumes = 0;
	c->rep->node_refs = c->rep->mappings = 0;
	free(c->owned);
	c->owned = NULL;
	rc = walk_all(c, damaged, NULL);
	if (!rc && c->rep->bad_trees) {
		say(c, "repair failed: a tree is damaged after the rebuild");
		rc = -EUCLEAN;
	}
free_salv:
	if (ss)
		for (i = 0; i <= p->nvols; i++) {
			free(ss[i].keys);
			free(ss[i].vals);
		}
	free(ss);
	free(claims);
	free(c->owned);
	c->owned = NULL;
	return rc;
}

static int check_owner(struct thin_pool *p, void *arg)
{
	struct check *c = arg;
	struct sm_root mroot;
	bool fix = c->o && c->o->repair, *damaged;
	uint64_t free_meta = 0, free_data = 0;
	int rc;

	c->p = p;
	c->nmeta = sm_nentries(tm_msm(p->tm));
	c->ndata = sm_nentries(tm_dsm(p->tm));
	sm_get_root(tm_msm(p->tm), &mroot);
	c->alloc_begin = mroot.alloc_begin;
	c->meta = calloc(c->nmeta, sizeof(*c->meta));
	c->data = calloc(c->ndata, sizeof(*c->data));
	c->bad = calloc(c->nmeta, 1);
	damaged = calloc(p->nvols + 1, sizeof(*damaged));
	rc = -ENOMEM;
	if (!c->meta || !c->data || !c->bad || !damaged)
		goto free_counts;
	rc = walk_all(c, damaged, NULL);
	if (!rc)
		rc = compare(c, tm_msm(p->tm), c->meta, c->nmeta, "metadata block", false,
			     &c->rep->leaked_blocks);
	if (!rc)
		rc = compare(c, tm_dsm(p->tm), c->data, c->ndata, "data chunk", false,
			     &c->rep->leaked_chunks);
	if (rc || !fix || !c->rep->errors)
		goto free_counts;
	if (c->rep->bad_trees && c->o->salvage && !c->o->drop_damaged) {
		c->lines = 0;	/* what the repair does, however long the list before */
		free_meta = sm_nr_free(tm_msm(p->tm));
		free_data = sm_nr_free(tm_dsm(p->tm));
		rc = salvage_all(c, damaged);
		if (rc) {
			rc = rc > 0 ? 0 : rc;
			goto free_counts;
		}
	} else if (c->rep->bad_trees && !c->o->drop_damaged) {
		say(c, "not repaired: %u damaged tree(s), whose references are unknown; no count "
		    "was changed", c->rep->bad_trees);
		goto free_counts;
	}
	if (c->rep->bad_trees) {
		struct thin_check_report first = *c->rep;

		rc = drop_damaged(c, damaged);
		if (rc) {
			rc = rc > 0 ? 0 : rc;
			goto free_counts;
		}
		/* recount what is left: every tree is whole now */
		c->rep->volumes = 0;
		c->rep->node_refs = c->rep->mappings = 0;
		rc = walk_all(c, damaged, NULL);
		if (!rc && c->rep->bad_trees != first.bad_trees) {
			say(c, "repair failed: a tree is damaged after the drop");
			rc = -EUCLEAN;
		}
		if (rc)
			goto free_counts;
		c->rep->leaked_blocks = c->rep->leaked_chunks = 0;
	}
	/* (the leaks were counted by the first pass, unless a drop reset them;
	 * after a salvage these are the counts of the rebuilt trees) */
	rc = compare(c, tm_msm(p->tm), c->meta, c->nmeta, "metadata block", true,
		     c->rep->dropped ? &c->rep->leaked_blocks : NULL);
	if (!rc)
		rc = compare(c, tm_dsm(p->tm), c->data, c->ndata, "data chunk", true,
			     c->rep->dropped ? &c->rep->leaked_chunks : NULL);
	if (rc) {
		say(c, "repair failed: %s", strerror(-rc));
		goto free_counts;
	}
	if (c->rep->rebuilt) {	/* what came back, new nodes taken off */
		uint64_t m = sm_nr_free(tm_msm(p->tm)), d = sm_nr_free(tm_dsm(p->tm));

		c->rep->leaked_blocks = m > free_meta ? m - free_meta : 0;
		c->rep->leaked_chunks = d > free_data ? d - free_data : 0;
	}
	p->dirty = true;	/* the caller commits */
	say(c, "repaired: %llu counts rewritten from the trees; %llu leaked metadata blocks and "
	    "%llu leaked data chunks returned", (unsigned long long)c->rep->fixed,
	    (unsigned long long)c->rep->leaked_blocks, (unsigned long long)c->rep->leaked_chunks);
	if (c->rep->rebuilt)
		say(c, "repaired: %u damaged tree(s) rebuilt: %llu mappings salvaged, %llu lost, "
		    "%llu chunk range(s) unreadable", c->rep->rebuilt,
		    (unsigned long long)c->rep->salvaged, (unsigned long long)c->rep->lost_mappings,
		    (unsigned long long)c->rep->lost_ranges);
free_counts:
	free(damaged);
	free(c->bad);
	free(c->meta);
	free(c->data);
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

int thin_pool_check_ex(struct thin_pool *p, const struct thin_check_opts *o,
		       struct thin_check_report *rep)
{
	struct check c = { .o = o, .rep = rep };
	struct thin_check_report again;
	struct thin_check_opts quiet = { 0 };
	int rc;

	memset(rep, 0, sizeof(*rep));
	rc = pool_call(p, check_held, &c);
	if (rc)
		return rc;
	if (!rep->errors)
		return 0;
	if (!rep->fixed && !rep->dropped)
		return -EUCLEAN;
	rc = thin_pool_commit(p);
	if (rc) {
		say(&c, "committing the repair failed: %s", strerror(-rc));
		return rc;
	}
	/* the proof: a second pass finds nothing */
	c = (struct check){ .p = p, .o = &quiet, .rep = &again };
	memset(&again, 0, sizeof(again));
	rc = pool_call(p, check_held, &c);
	if (rc)
		return rc;
	rep->errors_left = again.errors;
	if (again.errors) {
		c.o = o;
		c.rep = rep;
		c.lines = 0;
		say(&c, "after the repair, %llu problems remain", (unsigned long long)again.errors);
	}
	return again.errors ? -EUCLEAN : 0;
}

int thin_pool_check(struct thin_pool *p, struct thin_check_report *rep)
{
	return thin_pool_check_ex(p, NULL, rep);
}
