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
	uint64_t		nmeta, ndata, alloc_begin;
	uint64_t		vchunks;	/* the volume being walked */
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
	say(c, "%s is damaged: %s", tree, c->why);
	return 1;
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

/* Walk every tree into fresh counts; damaged volumes get their flag set. */
static int walk_all(struct check *c, bool *damaged)
{
	struct thin_pool *p = c->p;
	struct btree_walker w = { .node = node_ref, .value = map_value, .arg = c };
	struct btree_walker vw = { .node = node_ref, .arg = c };
	char tree[THIN_NAME_MAX + 64];
	struct list_head *pos;
	unsigned i = 0;
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
		c->vchunks = DIV_ROUND_UP(r->size, p->chunk);
		snprintf(tree, sizeof(tree), "volume '%s' (id %llu): its mapping tree", r->name,
			 (unsigned long long)r->id);
		rc = walk_tree(c, &p->minfo, r->root, &w, tree);
		damaged[i++] = rc > 0;
		c->rep->volumes++;
	}
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

static int check_owner(struct thin_pool *p, void *arg)
{
	struct check *c = arg;
	struct sm_root mroot;
	bool fix = c->o && c->o->repair, *damaged;
	int rc;

	c->p = p;
	c->nmeta = sm_nentries(tm_msm(p->tm));
	c->ndata = sm_nentries(tm_dsm(p->tm));
	sm_get_root(tm_msm(p->tm), &mroot);
	c->alloc_begin = mroot.alloc_begin;
	c->meta = calloc(c->nmeta, sizeof(*c->meta));
	c->data = calloc(c->ndata, sizeof(*c->data));
	damaged = calloc(p->nvols + 1, sizeof(*damaged));
	rc = -ENOMEM;
	if (!c->meta || !c->data || !damaged)
		goto free_counts;
	rc = walk_all(c, damaged);
	if (!rc)
		rc = compare(c, tm_msm(p->tm), c->meta, c->nmeta, "metadata block", false,
			     &c->rep->leaked_blocks);
	if (!rc)
		rc = compare(c, tm_dsm(p->tm), c->data, c->ndata, "data chunk", false,
			     &c->rep->leaked_chunks);
	if (rc || !fix || !c->rep->errors)
		goto free_counts;
	if (c->rep->bad_trees && !c->o->drop_damaged) {
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
		rc = walk_all(c, damaged);
		if (!rc && c->rep->bad_trees != first.bad_trees) {
			say(c, "repair failed: a tree is damaged after the drop");
			rc = -EUCLEAN;
		}
		if (rc)
			goto free_counts;
		c->rep->leaked_blocks = c->rep->leaked_chunks = 0;
	}
	/* (the leaks were counted by the first pass, unless a drop reset them) */
	rc = compare(c, tm_msm(p->tm), c->meta, c->nmeta, "metadata block", true,
		     c->rep->dropped ? &c->rep->leaked_blocks : NULL);
	if (!rc)
		rc = compare(c, tm_dsm(p->tm), c->data, c->ndata, "data chunk", true,
			     c->rep->dropped ? &c->rep->leaked_chunks : NULL);
	if (rc) {
		say(c, "repair failed: %s", strerror(-rc));
		goto free_counts;
	}
	p->dirty = true;	/* the caller commits */
	say(c, "repaired: %llu counts rewritten from the trees; %llu leaked metadata blocks and "
	    "%llu leaked data chunks returned", (unsigned long long)c->rep->fixed,
	    (unsigned long long)c->rep->leaked_blocks, (unsigned long long)c->rep->leaked_chunks);
free_counts:
	free(damaged);
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
