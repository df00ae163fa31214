/* SPDX-License-Identifier: MIT */
/*
 * Copy-on-write B-trees: u64 key -> fixed-size value, in 4 KiB nodes.
 *
 * Node: the block header, then flags (internal or leaf), entry count,
 * capacity and value size (le32 each), the sorted keys (le64) and the
 * values. An internal node's values are its children's block numbers and
 * its keys are lower bounds: key[i] <= every key under child i < key[i+1].
 *
 * Every change walks down from the root and shadows each node on the way
 * (tm_shadow), so the tree a transaction started from stays untouched and
 * the changed path ends in a new root. Trees share subtrees: a node's
 * reference count in the metadata space map is the number of parents (or
 * roots) pointing at it. Shadowing a shared node makes a private copy and
 * takes one reference on each of its children (for a leaf, on each value
 * through info->inc), because the copy and the original both point at
 * them now. That is how a snapshot costs one increment of a root: sharing
 * is broken lazily, one path at a time, as either side writes.
 *
 * Insert splits a full node in two on the way back up (the root gets a new
 * parent); remove drops empty nodes and merges a node that falls under a
 * quarter full into a neighbour when both fit in one, and collapses a root
 * with a single child. An error in the middle of a change leaves the
 * transaction unusable: the caller must drop it (close without commit).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sand/common.h"
#include "snapshot/meta/meta.h"

const struct bm_validator btree_node_validator = { .name = "btree node", .magic = MAGIC_NODE };
#define NV (&btree_node_validator)

#define NODE_INTERNAL	1u
#define NODE_LEAF	2u

#define N_FLAGS		32
#define N_COUNT		36
#define N_MAX		40
#define N_VSIZE		44
#define N_KEYS		48

static uint32_t n_flags(const uint8_t *d) { return get_le32(d + N_FLAGS); }
static uint32_t n_count(const uint8_t *d) { return get_le32(d + N_COUNT); }
static uint32_t n_max(const uint8_t *d) { return get_le32(d + N_MAX); }
static uint32_t n_vs(const uint8_t *d) { return get_le32(d + N_VSIZE); }
static bool n_leaf(const uint8_t *d) { return n_flags(d) == NODE_LEAF; }
static void set_count(uint8_t *d, uint32_t n) { put_le32(d + N_COUNT, n); }
static uint8_t *key_p(uint8_t *d, uint32_t i) { return d + N_KEYS + 8 * (size_t)i; }
static uint64_t key_at(uint8_t *d, uint32_t i) { return get_le64(key_p(d, i)); }
static uint8_t *val_p(uint8_t *d, uint32_t i)
{
	return d + N_KEYS + 8 * (size_t)n_max(d) + (size_t)n_vs(d) * i;
}
static uint64_t child_at(uint8_t *d, uint32_t i) { return get_le64(val_p(d, i)); }

static void node_init(uint8_t *d, uint32_t flags, uint32_t vs)
{
	put_le32(d + N_FLAGS, flags);
	put_le32(d + N_COUNT, 0);
	put_le32(d + N_MAX, (META_BLOCK_SIZE - N_KEYS) / (8 + vs));
	put_le32(d + N_VSIZE, vs);
}

/* A node read from disk passed its checksum; check it is sane too. */
static int node_check(struct btree_info *info, uint8_t *d)
{
	uint32_t vs = n_vs(d);

	if ((n_flags(d) != NODE_LEAF && n_flags(d) != NODE_INTERNAL) ||
	    vs != (n_leaf(d) ? info->value_size : 8) ||
	    n_max(d) != (META_BLOCK_SIZE - N_KEYS) / (8 + vs) || n_count(d) > n_max(d))
		return -EUCLEAN;
	return 0;
}

static int node_read(struct btree_info *info, uint64_t nr, struct bm_block **b)
{
	int rc = tm_read(info->tm, nr, NV, b);

	if (!rc && (rc = node_check(info, (*b)->data)))
		tm_unpin(info->tm, *b);
	return rc;
}

/* first i with key[i] >= key */
static uint32_t lower_bound(uint8_t *d, uint64_t key)
{
	uint32_t lo = 0, hi = n_count(d);

	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;

		if (key_at(d, mid) < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* the child of an internal node whose range holds key */
static uint32_t child_idx(uint8_t *d, uint64_t key)
{
	uint32_t lo = 0, hi = n_count(d);

	while (lo < hi) {	/* first i with key[i] > key */
		uint32_t mid = (lo + hi) / 2;

		if (key_at(d, mid) <= key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo ? lo - 1 : 0;
}

static int inc_children(struct btree_info *info, uint8_t *d)
{
	uint32_t i;
	int rc;

	for (i = 0; i < n_count(d); i++) {
		if (!n_leaf(d))
			rc = tm_inc(info->tm, child_at(d, i));
		else
			rc = info->inc ? info->inc(info->ctx, val_p(d, i)) : 0;
		if (rc)
			return rc;
	}
	return 0;
}

static int shadow(struct btree_info *info, uint64_t nr, struct bm_block **out)
{
	bool inc;
	int rc;

	rc = tm_shadow(info->tm, nr, NV, out, &inc);
	if (rc)
		return rc;
	rc = node_check(info, (*out)->data);
	if (!rc && inc)
		rc = inc_children(info, (*out)->data);
	if (rc)
		tm_unpin(info->tm, *out);
	return rc;
}

int btree_empty(struct btree_info *info, uint64_t *root)
{
	struct bm_block *b;
	int rc;

	rc = tm_new_block(info->tm, NV, &b);
	if (rc)
		return rc;
	node_init(b->data, NODE_LEAF, info->value_size);
	*root = b->nr;
	tm_unpin(info->tm, b);
	return 0;
}

int btree_lookup(struct btree_info *info, uint64_t root, uint64_t key, void *value)
{
	struct bm_block *b;
	uint64_t nr = root;
	uint32_t i;
	int rc, depth;

	for (depth = 0; depth < 64; depth++) {
		rc = node_read(info, nr, &b);
		if (rc)
			return rc;
		if (n_leaf(b->data)) {
			i = lower_bound(b->data, key);
			rc = -ENODATA;
			if (i < n_count(b->data) && key_at(b->data, i) == key) {
				memcpy(value, val_p(b->data, i), info->value_size);
				rc = 0;
			}
			tm_unpin(info->tm, b);
			return rc;
		}
		if (!n_count(b->data)) {
			tm_unpin(info->tm, b);
			return -EUCLEAN;
		}
		nr = child_at(b->data, child_idx(b->data, key));
		tm_unpin(info->tm, b);
	}
	return -EUCLEAN;
}

static void entry_put(uint8_t *d, uint32_t i, uint64_t key, const void *val)
{
	put_le64(key_p(d, i), key);
	memcpy(val_p(d, i), val, n_vs(d));
}

static void entries_move(uint8_t *dst, uint32_t di, uint8_t *src, uint32_t si, uint32_t n)
{
	memmove(key_p(dst, di), key_p(src, si), 8 * (size_t)n);
	memmove(val_p(dst, di), val_p(src, si), (size_t)n_vs(src) * n);
}

static void entry_insert(uint8_t *d, uint32_t i, uint64_t key, const void *val)
{
	uint32_t n = n_count(d);

	entries_move(d, i + 1, d, i, n - i);
	entry_put(d, i, key, val);
	set_count(d, n + 1);
}

static void entry_delete(uint8_t *d, uint32_t i)
{
	uint32_t n = n_count(d);

	entries_move(d, i, d, i + 1, n - i - 1);
	set_count(d, n - 1);
}

struct ins_res {
	uint64_t	nr;		/* the node's (new) block */
	bool		split;		/* a right sibling was made: */
	uint64_t	skey, snr;
};

/* Insert at i in the node b, splitting it first if it is full. */
static int insert_at(struct btree_info *info, struct bm_block *b, uint32_t i,
		     uint64_t key, const void *val, struct ins_res *res)
{
	uint8_t *d = b->data, *r;
	struct bm_block *rb;
	uint32_t n = n_count(d), half;
	int rc;

	res->split = false;
	if (n < n_max(d)) {
		entry_insert(d, i, key, val);
		return 0;
	}
	rc = tm_new_block(info->tm, NV, &rb);
	if (rc)
		return rc;
	r = rb->data;
	node_init(r, n_flags(d), n_vs(d));
	/* appending (sequential keys): keep the left node full */
	half = i == n ? n : n / 2;
	entries_move(r, 0, d, half, n - half);
	set_count(r, n - half);
	set_count(d, half);
	if (i < half)
		entry_insert(d, i, key, val);
	else
		entry_insert(r, i - half, key, val);
	res->split = true;
	res->skey = key_at(r, 0);
	res->snr = rb->nr;
	tm_unpin(info->tm, rb);
	return 0;
}

static int ins(struct btree_info *info, uint64_t nr, uint64_t key, const void *val,
	       struct ins_res *res, int depth)
{
	struct bm_block *b;
	struct ins_res cr;
	uint8_t *d, cval[8];
	uint32_t i;
	int rc;

	if (depth > 64)
		return -EUCLEAN;
	rc = shadow(info, nr, &b);
	if (rc)
		return rc;
	d = b->data;
	res->nr = b->nr;
	res->split = false;
	if (n_leaf(d)) {
		i = lower_bound(d, key);
		if (i < n_count(d) && key_at(d, i) == key) {
			rc = info->dec ? info->dec(info->ctx, val_p(d, i)) : 0;
			if (!rc)
				memcpy(val_p(d, i), val, info->value_size);
		} else {
			rc = insert_at(info, b, i, key, val, res);
		}
		goto unpin;
	}
	if (!n_count(d)) {
		rc = -EUCLEAN;
		goto unpin;
	}
	i = child_idx(d, key);
	rc = ins(info, child_at(d, i), key, val, &cr, depth + 1);
	if (rc)
		goto unpin;
	put_le64(val_p(d, i), cr.nr);
	if (key < key_at(d, i))
		put_le64(key_p(d, i), key);
	if (cr.split) {
		put_le64(cval, cr.snr);
		rc = insert_at(info, b, i + 1, cr.skey, cval, res);
	}
unpin:
	tm_unpin(info->tm, b);
	return rc;
}

int btree_insert(struct btree_info *info, uint64_t root, uint64_t key,
		 const void *value, uint64_t *new_root)
{
	struct bm_block *b, *lb;
	struct ins_res res;
	uint8_t cval[8];
	uint64_t lkey;
	int rc;

	rc = ins(info, root, key, value, &res, 0);
	if (rc)
		return rc;
	if (!res.split) {
		*new_root = res.nr;
		return 0;
	}
	rc = node_read(info, res.nr, &lb);
	if (rc)
		return rc;
	lkey = key_at(lb->data, 0);
	tm_unpin(info->tm, lb);
	rc = tm_new_block(info->tm, NV, &b);
	if (rc)
		return rc;
	node_init(b->data, NODE_INTERNAL, 8);
	put_le64(cval, res.nr);
	entry_insert(b->data, 0, lkey, cval);
	put_le64(cval, res.snr);
	entry_insert(b->data, 1, res.skey, cval);
	*new_root = b->nr;
	tm_unpin(info->tm, b);
	return 0;
}

/* Merge child i+1 of the internal node d into child i, if both fit in one. */
static int try_merge(struct btree_info *info, uint8_t *d, uint32_t i)
{
	struct bm_block *lb, *rb;
	uint32_t ln, rn;
	int rc;

	rc = node_read(info, child_at(d, i), &lb);
	if (rc)
		return rc;
	ln = n_count(lb->data);
	tm_unpin(info->tm, lb);
	rc = node_read(info, child_at(d, i + 1), &rb);
	if (rc)
		return rc;
	rn = n_count(rb->data);
	tm_unpin(info->tm, rb);
	if (ln + rn > n_max(lb->data))
		return 0;
	rc = shadow(info, child_at(d, i), &lb);
	if (rc)
		return rc;
	put_le64(val_p(d, i), lb->nr);
	rc = shadow(info, child_at(d, i + 1), &rb);
	if (rc)
		goto unpin_l;
	put_le64(val_p(d, i + 1), rb->nr);
	if (n_flags(lb->data) != n_flags(rb->data)) {
		rc = -EUCLEAN;
		goto unpin_r;
	}
	/* the right node's references move to the left one */
	entries_move(lb->data, ln, rb->data, 0, rn);
	set_count(lb->data, ln + rn);
	set_count(rb->data, 0);
	rc = tm_dec(info->tm, rb->nr);
	if (!rc)
		entry_delete(d, i + 1);
unpin_r:
	tm_unpin(info->tm, rb);
unpin_l:
	tm_unpin(info->tm, lb);
	return rc;
}

struct rm_res {
	uint64_t	nr;
	uint32_t	count;
};

static int rm(struct btree_info *info, uint64_t nr, uint64_t key, struct rm_res *res,
	      int depth)
{
	struct bm_block *b;
	struct rm_res cr;
	uint8_t *d;
	uint32_t i;
	int rc;

	if (depth > 64)
		return -EUCLEAN;
	rc = shadow(info, nr, &b);
	if (rc)
		return rc;
	d = b->data;
	res->nr = b->nr;
	if (n_leaf(d)) {
		i = lower_bound(d, key);
		if (i >= n_count(d) || key_at(d, i) != key) {
			rc = -EUCLEAN;	/* btree_remove looked it up first */
			goto unpin;
		}
		rc = info->dec ? info->dec(info->ctx, val_p(d, i)) : 0;
		if (!rc)
			entry_delete(d, i);
		goto unpin;
	}
	if (!n_count(d)) {
		rc = -EUCLEAN;
		goto unpin;
	}
	i = child_idx(d, key);
	rc = rm(info, child_at(d, i), key, &cr, depth + 1);
	if (rc)
		goto unpin;
	put_le64(val_p(d, i), cr.nr);
	if (cr.count == 0) {
		rc = tm_dec(info->tm, cr.nr);
		if (!rc)
			entry_delete(d, i);
	} else if (cr.count < n_max(d) / 4 && n_count(d) > 1) {
		rc = try_merge(info, d, i + 1 < n_count(d) ? i : i - 1);
	}
unpin:
	res->count = n_count(d);
	tm_unpin(info->tm, b);
	return rc;
}

int btree_remove(struct btree_info *info, uint64_t root, uint64_t key, uint64_t *new_root)
{
	struct bm_block *b;
	struct rm_res res;
	uint8_t *v;
	int rc;

	v = malloc(info->value_size);
	if (!v)
		return -ENOMEM;
	rc = btree_lookup(info, root, key, v);
	free(v);
	if (rc)
		return rc;
	rc = rm(info, root, key, &res, 0);
	if (rc)
		return rc;
	/* an internal root with one child gives way to it */
	for (;;) {
		uint64_t child;

		rc = node_read(info, res.nr, &b);
		if (rc)
			return rc;
		if (!n_leaf(b->data) && !n_count(b->data)) {
			tm_unpin(info->tm, b);
			rc = tm_dec(info->tm, res.nr);
			if (!rc)
				rc = btree_empty(info, &res.nr);
			if (rc)
				return rc;
			break;
		}
		if (n_leaf(b->data) || n_count(b->data) != 1) {
			tm_unpin(info->tm, b);
			break;
		}
		child = child_at(b->data, 0);
		tm_unpin(info->tm, b);
		rc = tm_dec(info->tm, res.nr);	/* fresh: freed; its child keeps our ref */
		if (rc)
			return rc;
		res.nr = child;
	}
	*new_root = res.nr;
	return 0;
}

static int iter(struct btree_info *info, uint64_t nr, uint64_t lo, uint64_t hi,
		btree_iter_fn fn, void *arg, int depth)
{
	struct bm_block *b;
	uint8_t *d;
	uint32_t i;
	int rc = 0;

	if (depth > 64)
		return -EUCLEAN;
	rc = node_read(info, nr, &b);
	if (rc)
		return rc;
	d = b->data;
	if (n_leaf(d)) {
		for (i = lower_bound(d, lo); i < n_count(d) && key_at(d, i) <= hi && !rc; i++)
			rc = fn(arg, key_at(d, i), val_p(d, i));
	} else {
		for (i = child_idx(d, lo); i < n_count(d) && key_at(d, i) <= hi && !rc; i++)
			rc = iter(info, child_at(d, i), lo, hi, fn, arg, depth + 1);
	}
	tm_unpin(info->tm, b);
	return rc;
}

int btree_iterate(struct btree_info *info, uint64_t root, uint64_t lo, uint64_t hi,
		  btree_iter_fn fn, void *arg)
{
	if (lo > hi)
		return 0;
	return iter(info, root, lo, hi, fn, arg, 0);
}

static int del(struct btree_info *info, uint64_t nr, int depth)
{
	struct bm_block *b;
	uint32_t c, i;
	uint8_t *d;
	int rc;

	if (depth > 64)
		return -EUCLEAN;
	rc = tm_count(info->tm, nr, &c);
	if (rc)
		return rc;
	if (c > 1)
		return tm_dec(info->tm, nr);
	rc = node_read(info, nr, &b);
	if (rc)
		return rc;
	d = b->data;
	for (i = 0; i < n_count(d) && !rc; i++) {
		if (n_leaf(d))
			rc = info->dec ? info->dec(info->ctx, val_p(d, i)) : 0;
		else
			rc = del(info, child_at(d, i), depth + 1);
	}
	tm_unpin(info->tm, b);
	return rc ? rc : tm_dec(info->tm, nr);
}

int btree_del(struct btree_info *info, uint64_t root)
{
	return del(info, root, 0);
}

/*
 * Visit the entries with keys in [lo, hi] (every entry: 0, UINT64_MAX),
 * entering only the nodes that may hold them. Each node read is checked:
 * keys strictly increasing, no empty internal node below the root.
 */
static int walk_range(struct btree_info *info, uint64_t nr, uint64_t lo, uint64_t hi,
		      const struct btree_walker *w, int depth)
{
	struct bm_block *b;
	uint8_t *d;
	uint32_t i;
	int rc;

	if (depth > 64)
		return -EUCLEAN;
	rc = w->node(w->arg, nr);
	if (rc <= 0)
		return rc;
	rc = node_read(info, nr, &b);
	if (rc)
		return rc;
	d = b->data;
	for (i = 1; i < n_count(d); i++)
		if (key_at(d, i - 1) >= key_at(d, i)) {
			rc = -EUCLEAN;
			goto unpin;
		}
	if (!n_leaf(d) && !n_count(d) && depth > 0)
		rc = -EUCLEAN;
	else if (n_leaf(d))
		for (i = lower_bound(d, lo); i < n_count(d) && key_at(d, i) <= hi && !rc; i++)
			rc = w->value ? w->value(w->arg, key_at(d, i), val_p(d, i)) : 0;
	else
		for (i = n_count(d) ? child_idx(d, lo) : 0; i < n_count(d) && key_at(d, i) <= hi && !rc;
		     i++)
			rc = walk_range(info, child_at(d, i), lo, hi, w, depth + 1);
unpin:
	tm_unpin(info->tm, b);
	return rc;
}

int btree_walk(struct btree_info *info, uint64_t root, const struct btree_walker *w)
{
	return walk_range(info, root, 0, UINT64_MAX, w, 0);
}

int btree_walk_range(struct btree_info *info, uint64_t root, uint64_t lo, uint64_t hi,
		     const struct btree_walker *w)
{
	if (lo > hi)
		return 0;
	return walk_range(info, root, lo, hi, w, 0);
}

/*
 * Salvage: every subtree is given the key range its parent says it holds
 * ([lo, hi]); a node that cannot be read or is not sane loses that range,
 * a leaf entry out of order or outside it is lost alone, and everything
 * else is passed on. So no key comes out twice, none outside where the
 * tree's own internal keys put it, and the entries out come in order.
 */
static int salvage(struct btree_info *info, uint64_t nr, uint64_t lo, uint64_t hi,
		   const struct btree_salvager *s, int depth)
{
	struct bm_block *b;
	uint64_t last = lo;
	bool any = false;
	uint8_t *d;
	uint32_t i;
	int rc;

	if (depth > 64)
		return s->lost(s->arg, lo, hi, nr, -ELOOP);
	rc = node_read(info, nr, &b);
	if (rc == -ENOMEM)
		return rc;
	if (rc)
		return s->lost(s->arg, lo, hi, nr, rc);
	d = b->data;
	for (i = 0; i < n_count(d) && !rc; i++) {
		uint64_t k = key_at(d, i), klo, khi;

		if (n_leaf(d)) {
			if (k < lo || k > hi || (any && k <= last))
				rc = s->bad(s->arg, k, nr);
			else
				rc = s->value(s->arg, k, val_p(d, i));
			if (k >= lo && k <= hi && (!any || k > last)) {
				last = k;
				any = true;
			}
			continue;
		}
		/* child i holds [max(key[i], lo), key[i+1] - 1]; child 0 from lo */
		klo = i ? MAX(k, lo) : lo;
		khi = i + 1 < n_count(d) ? key_at(d, i + 1) : UINT64_MAX;
		khi = khi ? MIN(khi - 1, hi) : 0;
		if (klo > khi || (any && klo <= last))
			continue;	/* out of order: nothing of its own to give */
		rc = salvage(info, child_at(d, i), klo, khi, s, depth + 1);
		last = khi;
		any = true;
	}
	tm_unpin(info->tm, b);
	return rc;
}

int btree_salvage(struct btree_info *info, uint64_t root, const struct btree_salvager *s)
{
	return salvage(info, root, 0, UINT64_MAX, s, 0);
}
