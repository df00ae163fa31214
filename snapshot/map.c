/* SPDX-License-Identifier: MIT */
/*
 * Block status of thin volumes, from their mapping trees.
 *
 * Allocation: an unmapped chunk is a hole that reads as zeros; a mapped
 * one is allocated data (we do not look inside to see whether it holds
 * zeros). One btree_iterate() over the chunks of the range: holes cost
 * nothing but the gaps between keys.
 *
 * Changed since a snapshot: volume V (or another snapshot of it, V@T)
 * differs from its snapshot V@S in the chunks where one maps and the other
 * does not, or both map different physical chunks (a write after a
 * snapshot always goes to a new chunk, so the same physical chunk means the
 * same data). No data is compared:
 * the two trees are. Subtrees the two share (the same node block) hold the
 * same mappings and are never entered. First every node of S's tree goes
 * into a set; walking V's tree, a node in that set is a shared subtree, so
 * it is skipped (and remembered), and each leaf entry V has of its own is
 * looked up in S. Then S's tree is walked again, skipping the shared
 * subtrees, for the entries V lost. That is O(S's tree) for the set plus
 * O(changed) lookups, done window by window over the range (only the nodes
 * that may hold keys of the window are visited), so a query stops early
 * once its extents are full.
 *
 * Both run on the pool's owner thread like any bio; the query goes there as
 * a message and its end comes back to the channel's loop, so reactors
 * never wait for metadata I/O. A short allocation query whose chunks are
 * all in the fast path's mapping cache is answered on the spot instead.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/common.h"
#include "sand/ev.h"
#include "sand/log.h"
#include "sand/thin.h"
#include "snapshot/meta/meta.h"
#include "snapshot/pool.h"

#define STOP		1	/* an iterator callback's "enough" (not an error) */
#define STATUS_CACHE_CHUNKS	64	/* allocation from the fast path's cache: ranges up to */
#define DIFF_WINDOW_MIN	1024	/* chunks compared at a time: first window, */
#define DIFF_WINDOW_MAX	(1u << 20)	/* ... doubling up to this */

/* ---- a set of u64 (block numbers), open addressing ---- */

struct u64set {
	uint64_t	*v;		/* 0 is free: block 0 is a superblock, never a node */
	size_t		cap, n;
};

static size_t set_slot(const struct u64set *s, uint64_t k)
{
	return (size_t)((k * 0x9e3779b97f4a7c15ull) >> 17) & (s->cap - 1);
}

static bool set_has(const struct u64set *s, uint64_t k)
{
	if (!s->cap)
		return false;
	for (size_t i = set_slot(s, k);; i = (i + 1) & (s->cap - 1)) {
		if (s->v[i] == k)
			return true;
		if (!s->v[i])
			return false;
	}
}

static int set_add(struct u64set *s, uint64_t k)
{
	size_t i;

	if ((s->n + 1) * 2 > s->cap) {
		struct u64set t = { .cap = s->cap ? s->cap * 2 : 256 };

		t.v = calloc(t.cap, sizeof(*t.v));
		if (!t.v)
			return -ENOMEM;
		for (size_t j = 0; j < s->cap; j++)
			if (s->v[j])
				set_add(&t, s->v[j]);
		free(s->v);
		*s = t;
	}
	for (i = set_slot(s, k); s->v[i]; i = (i + 1) & (s->cap - 1))
		if (s->v[i] == k)
			return 0;
	s->v[i] = k;
	s->n++;
	return 0;
}

/* ---- extents over the chunks of a range ---- */

struct emit {
	struct thin_pool	*p;
	struct blk_status	*st;
	uint64_t		pos, end;	/* bytes */
	uint32_t		gap_flags;	/* between the chunks named */
	uint32_t		hit_flags;	/* the chunks named */
};

/* Chunk vc is a "hit": the gap before it and the chunk itself. */
static int emit_chunk(struct emit *e, uint64_t vc)
{
	uint64_t cs = vc * e->p->chunk, ce = MIN(cs + e->p->chunk, e->end);

	if (ce <= e->pos)
		return 0;
	if (cs > e->pos) {
		if (!blk_status_add(e->st, cs - e->pos, e->gap_flags))
			return STOP;
		e->pos = cs;
	}
	if (!blk_status_add(e->st, ce - e->pos, e->hit_flags))
		return STOP;
	e->pos = ce;
	return e->pos >= e->end ? STOP : 0;
}

static void emit_rest(struct emit *e)
{
	if (e->pos < e->end && blk_status_add(e->st, e->end - e->pos, e->gap_flags))
		e->pos = e->end;
}

/* ---- allocation ---- */

static int alloc_fn(void *arg, uint64_t key, const void *value)
{
	struct emit *e = arg;

	if ((get_le64(value) >> 24) >= e->p->nr_chunks)
		return -EUCLEAN;
	return emit_chunk(e, key);
}

static int status_alloc(struct thin_pool *p, struct vol_rec *r, struct blk_status *st)
{
	struct emit e = { .p = p, .st = st, .pos = st->offset, .end = st->offset + st->len,
			  .gap_flags = BLK_EXT_HOLE | BLK_EXT_ZERO, .hit_flags = 0 };
	int rc;

	rc = btree_iterate(&p->minfo, r->root, st->offset / p->chunk, (e.end - 1) / p->chunk,
			   alloc_fn, &e);
	if (rc < 0)
		return rc;
	if (rc != STOP)
		emit_rest(&e);
	return 0;
}

/* ---- changed since a snapshot ---- */

struct diff {
	struct thin_pool	*p;
	struct u64set		snap_nodes;	/* every node of the snapshot's tree */
	struct u64set		shared;		/* where the walk of V stopped */
	uint64_t		other;		/* the other tree's root */
	uint64_t		lo, hi;		/* chunks of the range */
	uint64_t		*keys;		/* changed chunks */
	size_t			nkeys, cap;
	bool			vol_side;	/* walking V (else S) */
};

static int push_key(struct diff *d, uint64_t k)
{
	if (d->nkeys == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		uint64_t *n = realloc(d->keys, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		d->keys = n;
		d->cap = cap;
	}
	d->keys[d->nkeys++] = k;
	return 0;
}

static int snap_node_fn(void *arg, uint64_t nr)
{
	struct diff *d = arg;
	int rc = set_add(&d->snap_nodes, nr);

	return rc ? rc : 1;
}

static int diff_node_fn(void *arg, uint64_t nr)
{
	struct diff *d = arg;
	int rc;

	if (d->vol_side) {
		if (!set_has(&d->snap_nodes, nr))
			return 1;
		rc = set_add(&d->shared, nr);
		return rc ? rc : 0;
	}
	return set_has(&d->shared, nr) ? 0 : 1;
}

static int diff_value_fn(void *arg, uint64_t key, const void *value)
{
	struct diff *d = arg;
	uint8_t v[8];
	int rc;

	if (key < d->lo || key > d->hi)
		return 0;
	rc = btree_lookup(&d->p->minfo, d->other, key, v);
	if (rc == -ENODATA)
		return push_key(d, key);
	if (rc)
		return rc;
	/* both map it: the V walk tells whether they differ */
	if (d->vol_side && get_le64(v) >> 24 != get_le64(value) >> 24)
		return push_key(d, key);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The base of a changed-since query: snapshot VOL@base, for volume VOL or
 * for another of VOL's snapshots (VOL@x: then VOL@base is its sibling). */
static struct vol_rec *base_find(struct thin_pool *p, struct vol_rec *r, const char *base)
{
	char name[THIN_NAME_MAX * 2 + 2];
	const char *at = strchr(r->name, '@');
	int vlen = at ? (int)(at - r->name) : (int)strlen(r->name);
	struct list_head *pos;

	if (strchr(base, '@'))
		return NULL;
	snprintf(name, sizeof(name), "%.*s@%s", vlen, r->name, base);
	list_for_each(pos, &p->vols) {
		struct vol_rec *s = list_entry(pos, struct vol_rec, link);

		if (s != r && !strcmp(s->name, name))
			return s;
	}
	return NULL;
}

static void set_clear(struct u64set *s)
{
	if (s->v)
		memset(s->v, 0, s->cap * sizeof(*s->v));
	s->n = 0;
}

/* The changed chunks of [d->lo, d->hi] into d->keys, sorted, maybe twice. */
static int diff_window(struct thin_pool *p, struct vol_rec *r, struct vol_rec *s,
		       struct diff *d)
{
	struct btree_walker w = { .node = snap_node_fn, .arg = d };
	int rc;

	d->nkeys = 0;
	set_clear(&d->snap_nodes);
	set_clear(&d->shared);
	rc = btree_walk_range(&p->minfo, s->root, d->lo, d->hi, &w);
	if (rc)
		return rc;
	w.node = diff_node_fn;
	w.value = diff_value_fn;
	d->vol_side = true;
	d->other = s->root;
	rc = btree_walk_range(&p->minfo, r->root, d->lo, d->hi, &w);
	if (rc)
		return rc;
	d->vol_side = false;
	d->other = r->root;
	rc = btree_walk_range(&p->minfo, s->root, d->lo, d->hi, &w);
	if (rc)
		return rc;
	if (d->nkeys)
		qsort(d->keys, d->nkeys, sizeof(*d->keys), cmp_u64);
	return 0;
}

/*
 * Window by window (1024 chunks, then twice as many each time), so that a
 * query that fills its extents early, as NBD's do, walks little more than
 * the part of the trees it reports on, and a client that goes through a
 * large volume request by request walks the trees about once in all.
 */
static int status_changed(struct thin_pool *p, struct vol_rec *r, struct blk_status *st)
{
	struct vol_rec *s = base_find(p, r, st->base);
	struct emit e = { .p = p, .st = st, .pos = st->offset, .end = st->offset + st->len,
			  .gap_flags = 0, .hit_flags = BLK_EXT_CHANGED };
	uint64_t first = st->offset / p->chunk, last = (e.end - 1) / p->chunk;
	struct diff d = { .p = p };
	int rc = 0;

	if (!s)
		return -ENOENT;
	for (uint64_t lo = first, win = DIFF_WINDOW_MIN; lo <= last;
	     lo = d.hi + 1, win = MIN(win * 2, DIFF_WINDOW_MAX)) {
		d.lo = lo;
		d.hi = MIN(last, lo + win - 1);
		rc = diff_window(p, r, s, &d);
		if (rc)
			goto free_diff;
		for (size_t i = 0; i < d.nkeys; i++)
			if ((!i || d.keys[i] != d.keys[i - 1]) && emit_chunk(&e, d.keys[i]) == STOP)
				goto free_diff;
	}
	emit_rest(&e);
free_diff:
	free(d.keys);
	free(d.snap_nodes.v);
	free(d.shared.v);
	return rc;
}

/* ---- the blkdev ops ---- */

static void status_done(void *arg)
{
	struct blk_status *st = arg;

	blk_status_complete(st, st->status);
}

static void status_run(void *arg)
{
	struct blk_status *st = arg;
	struct thin_vol *tv = container_of(st->ch->bd, struct thin_vol, bd);
	struct thin_pool *p = tv->p;

	if (p->failed)
		st->status = -EIO;
	else if (st->mode == BLK_STATUS_CHANGED)
		st->status = status_changed(p, tv->r, st);
	else
		st->status = status_alloc(p, tv->r, st);
	if (st->status && st->status != -ENOENT && st->status != -ENOMEM)
		LOG_RATELIMIT(LOG_WARN, LS_THIN, "%s: block status: %s", tv->r->name,
			      strerror(-st->status));
	while (ev_send_msg(st->ch->loop, status_done, st))
		;	/* -ENOMEM: nothing else to do but try again */
}

static void status_fast_done(struct ev_task *t)
{
	struct blk_status *st = container_of(t, struct blk_status, task);

	blk_status_complete(st, 0);
}

/*
 * The fast path's mapping cache (pool.c) knows mapped chunks: when every
 * chunk of a short range is there, the range is allocated, and the answer
 * needs no trip to the owner (a READ over NBD asks this for each read).
 * Racing a change of the mapping is the same race as a fast-path read's.
 */
static bool status_from_cache(struct thin_vol *tv, struct blk_status *st)
{
	struct thin_pool *p = tv->p;
	uint64_t first = st->offset / p->chunk, last = (st->offset + st->len - 1) / p->chunk;
	bool all = true;

	if (!tv->map || st->mode != BLK_STATUS_ALLOC || last - first >= STATUS_CACHE_CHUNKS)
		return false;
	pthread_mutex_lock(&tv->lock);
	for (uint64_t vc = first; vc <= last && all; vc++) {
		const struct map_slot *s = &tv->map[vc & tv->map_mask];

		all = s->gen == tv->gen && s->vc == vc;
	}
	pthread_mutex_unlock(&tv->lock);
	if (all)
		blk_status_add(st, st->len, 0);
	return all;
}

int thin_vol_block_status(struct blkdev *bd, struct blkchan *ch, struct blk_status *st)
{
	struct thin_vol *tv = container_of(bd, struct thin_vol, bd);

	if (status_from_cache(tv, st)) {
		ev_defer(ch->loop, &st->task, status_fast_done);
		return 0;
	}
	return ev_send_msg(tv->p->loop, status_run, st);
}

int thin_vol_status_base(struct blkdev *bd, const char *base)
{
	struct thin_vol *tv = container_of(bd, struct thin_vol, bd);
	struct thin_pool *p = tv->p;
	struct vol_rec *s;

	pthread_mutex_lock(&p->names_lock);
	s = base_find(p, tv->r, base);
	pthread_mutex_unlock(&p->names_lock);
	return s ? 0 : -ENOENT;
}

void thin_vol_status_bases(struct blkdev *bd, void (*fn)(void *arg, const char *base), void *arg)
{
	struct thin_vol *tv = container_of(bd, struct thin_vol, bd);
	struct thin_pool *p = tv->p;
	const char *at = strchr(tv->r->name, '@');
	size_t vlen = at ? (size_t)(at - tv->r->name) : strlen(tv->r->name);
	struct list_head *pos;

	pthread_mutex_lock(&p->names_lock);
	list_for_each(pos, &p->vols) {
		struct vol_rec *s = list_entry(pos, struct vol_rec, link);

		if (s != tv->r && !strncmp(s->name, tv->r->name, vlen) && s->name[vlen] == '@' &&
		    s->name[vlen + 1] && !strchr(s->name + vlen + 1, '@'))
			fn(arg, s->name + vlen + 1);
	}
	pthread_mutex_unlock(&p->names_lock);
}
