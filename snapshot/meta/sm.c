/* SPDX-License-Identifier: MIT */
/*
 * Space maps: a 32-bit reference count for each entry (a metadata block or
 * a data chunk), SM_PER_BLOCK (1016) counts per refcount block.
 *
 * How do the counts stay copy-on-write without a space map for the space
 * map? dm's persistent-data allocates its bitmap blocks from the metadata
 * space map itself and needs a recursion guard for that. We give up some
 * space instead: refcount block i has two fixed homes, slots base + 2i and
 * base + 2i + 1, and a select bit says which one holds it. The committed
 * select bits are in the superblock. The first change to block i in a
 * transaction copies it from its committed slot into the other slot and
 * flips the current select bit; later changes in the same transaction go to
 * that copy. The committed slot is never written while it is committed, so
 * a crash at any time leaves the counts of the last commit intact, and the
 * next superblock switches to the new slots atomically.
 *
 * Allocation hands out an entry whose count is 0 now and was 0 at the last
 * commit (the committed slot tells), so nothing the committed state still
 * references can be overwritten before the next superblock is durable.
 * It searches next-fit from a hint, block by block, skipping blocks it
 * found full (an in-memory bit per block, cleared when a count in the block
 * drops to 0 and becomes allocatable: at once if the entry was new in this
 * transaction, at the commit otherwise).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sand/common.h"
#include "snapshot/meta/meta.h"

static const struct bm_validator sm_validator = { .name = "sm", .magic = MAGIC_SM };

struct sm {
	struct bm	*bm;
	struct sm_root	r;
	uint64_t	nblocks;
	uint8_t		*sel_cur;	/* the slot holding each block now */
	uint8_t		*sel_com;	/* the slot holding it at the last commit */
	uint64_t	hint;
	uint8_t		*full;		/* block i has nothing allocatable now */
	uint8_t		*freed_in;	/* block i had a count go to 0 in this transaction */
	uint64_t	freed;		/* counts that went to 0 in this transaction
					 * and were not 0 at the last commit */
};

static bool bit(const uint8_t *m, uint64_t i)
{
	return m[i / 8] >> (i % 8) & 1;
}

static void bit_flip(uint8_t *m, uint64_t i)
{
	m[i / 8] ^= (uint8_t)(1u << (i % 8));
}

static uint64_t slot(struct sm *sm, uint64_t i, bool s)
{
	return sm->r.base + 2 * i + s;
}

static uint8_t *counts(struct bm_block *b)
{
	return b->data + META_HDR_SIZE;
}

size_t sm_sel_bytes(struct sm *sm)
{
	return DIV_ROUND_UP(sm->nblocks, 8);
}

static int sm_alloc_struct(struct bm *bm, const struct sm_root *root, struct sm **out)
{
	struct sm *sm;

	if (!root->nentries || root->alloc_begin > root->nentries ||
	    root->base + 2 * sm_nblocks_for(root->nentries) > bm_nblocks(bm))
		return -EINVAL;
	sm = calloc(1, sizeof(*sm));
	if (!sm)
		return -ENOMEM;
	sm->bm = bm;
	sm->r = *root;
	sm->nblocks = sm_nblocks_for(root->nentries);
	sm->sel_cur = calloc(4, sm_sel_bytes(sm));
	if (!sm->sel_cur) {
		free(sm);
		return -ENOMEM;
	}
	sm->sel_com = sm->sel_cur + sm_sel_bytes(sm);
	sm->full = sm->sel_com + sm_sel_bytes(sm);
	sm->freed_in = sm->full + sm_sel_bytes(sm);
	sm->hint = root->alloc_begin;
	*out = sm;
	return 0;
}

int sm_format(struct bm *bm, const struct sm_root *root, struct sm **out)
{
	struct bm_block *b;
	struct sm *sm;
	uint64_t i;
	int rc;

	rc = sm_alloc_struct(bm, root, &sm);
	if (rc)
		return rc;
	sm->r.nr_allocated = 0;
	for (i = 0; i < sm->nblocks; i++) {
		rc = bm_new(bm, slot(sm, i, 0), &sm_validator, &b);
		if (rc) {
			sm_free(sm);
			return rc;
		}
		bm_unpin(bm, b);
	}
	*out = sm;
	return 0;
}

int sm_open(struct bm *bm, const struct sm_root *root, const uint8_t *sel, struct sm **out)
{
	struct sm *sm;
	int rc;

	rc = sm_alloc_struct(bm, root, &sm);
	if (rc)
		return rc;
	memcpy(sm->sel_cur, sel, sm_sel_bytes(sm));
	memcpy(sm->sel_com, sel, sm_sel_bytes(sm));
	*out = sm;
	return 0;
}

void sm_free(struct sm *sm)
{
	if (!sm)
		return;
	free(sm->sel_cur);
	free(sm);
}

void sm_get_root(struct sm *sm, struct sm_root *root)
{
	*root = sm->r;
}

void sm_get_sel(struct sm *sm, uint8_t *sel)
{
	memcpy(sel, sm->sel_cur, sm_sel_bytes(sm));
}

void sm_committed(struct sm *sm)
{
	memcpy(sm->sel_com, sm->sel_cur, sm_sel_bytes(sm));
	sm->freed = 0;
	for (size_t k = 0; k < sm_sel_bytes(sm); k++) {
		sm->full[k] &= (uint8_t)~sm->freed_in[k];
		sm->freed_in[k] = 0;
	}
}

uint64_t sm_nr_free(struct sm *sm)
{
	return sm->r.nentries - sm->r.alloc_begin - sm->r.nr_allocated;
}

uint64_t sm_nr_allocatable(struct sm *sm)
{
	return sm_nr_free(sm) - sm->freed;
}

uint64_t sm_nentries(struct sm *sm)
{
	return sm->r.nentries;
}

static bool touched(struct sm *sm, uint64_t i)
{
	return bit(sm->sel_cur, i) != bit(sm->sel_com, i);
}

static int read_cur(struct sm *sm, uint64_t i, struct bm_block **b)
{
	return bm_read(sm->bm, slot(sm, i, bit(sm->sel_cur, i)), &sm_validator, b);
}

/* The current copy of block i, made writable for this transaction. */
static int write_cur(struct sm *sm, uint64_t i, struct bm_block **out)
{
	struct bm_block *old, *b;
	int rc;

	if (touched(sm, i)) {
		rc = read_cur(sm, i, &b);
		if (rc)
			return rc;
		bm_dirty(b);
		*out = b;
		return 0;
	}
	rc = read_cur(sm, i, &old);
	if (rc)
		return rc;
	rc = bm_new(sm->bm, slot(sm, i, !bit(sm->sel_cur, i)), &sm_validator, &b);
	if (rc) {
		bm_unpin(sm->bm, old);
		return rc;
	}
	memcpy(counts(b), counts(old), META_BLOCK_SIZE - META_HDR_SIZE);
	bm_unpin(sm->bm, old);
	bit_flip(sm->sel_cur, i);
	*out = b;
	return 0;
}

int sm_get_count(struct sm *sm, uint64_t e, uint32_t *count)
{
	struct bm_block *b;
	int rc;

	if (e >= sm->r.nentries)
		return -ERANGE;
	rc = read_cur(sm, e / SM_PER_BLOCK, &b);
	if (rc)
		return rc;
	*count = get_le32(counts(b) + 4 * (e % SM_PER_BLOCK));
	bm_unpin(sm->bm, b);
	return 0;
}

/* Bookkeeping after entry e's count went from c to n. */
static int changed(struct sm *sm, uint64_t e, uint32_t c, uint32_t n)
{
	struct bm_block *b;
	int rc;

	if (c == 0 && n != 0) {
		sm->r.nr_allocated++;
	} else if (c != 0 && n == 0) {
		sm->r.nr_allocated--;
		/* not allocatable before the commit if the committed state uses it */
		rc = bm_read(sm->bm, slot(sm, e / SM_PER_BLOCK, bit(sm->sel_com, e / SM_PER_BLOCK)),
			     &sm_validator, &b);
		if (rc)
			return rc;
		if (get_le32(counts(b) + 4 * (e % SM_PER_BLOCK))) {
			sm->freed++;
			sm->freed_in[e / SM_PER_BLOCK / 8] |= (uint8_t)(1u << (e / SM_PER_BLOCK % 8));
		} else {
			sm->full[e / SM_PER_BLOCK / 8] &= (uint8_t)~(1u << (e / SM_PER_BLOCK % 8));
		}
		bm_unpin(sm->bm, b);
	}
	return 0;
}

static int sm_add(struct sm *sm, uint64_t e, int delta)
{
	struct bm_block *b;
	uint8_t *p;
	uint32_t c;
	int rc;

	if (e >= sm->r.nentries)
		return -ERANGE;
	rc = write_cur(sm, e / SM_PER_BLOCK, &b);
	if (rc)
		return rc;
	p = counts(b) + 4 * (e % SM_PER_BLOCK);
	c = get_le32(p);
	if ((delta < 0 && c == 0) || (delta > 0 && c == UINT32_MAX)) {
		bm_unpin(sm->bm, b);
		return delta < 0 ? -EINVAL : -EOVERFLOW;
	}
	put_le32(p, c + (uint32_t)delta);
	bm_unpin(sm->bm, b);
	return changed(sm, e, c, c + (uint32_t)delta);
}

int sm_set_count(struct sm *sm, uint64_t e, uint32_t count)
{
	struct bm_block *b;
	uint8_t *p;
	uint32_t c;
	int rc;

	if (e >= sm->r.nentries)
		return -ERANGE;
	rc = write_cur(sm, e / SM_PER_BLOCK, &b);
	if (rc)
		return rc;
	p = counts(b) + 4 * (e % SM_PER_BLOCK);
	c = get_le32(p);
	put_le32(p, count);
	bm_unpin(sm->bm, b);
	return changed(sm, e, c, count);
}

void sm_set_nr_allocated(struct sm *sm, uint64_t n)
{
	sm->r.nr_allocated = n;
}

int sm_inc(struct sm *sm, uint64_t e)
{
	return sm_add(sm, e, 1);
}

int sm_dec(struct sm *sm, uint64_t e)
{
	return sm_add(sm, e, -1);
}

/* First entry in block i, from index lo, free now and at the last commit. */
static int find_free(struct sm *sm, uint64_t i, uint64_t lo, uint64_t *found)
{
	struct bm_block *cur, *com = NULL;
	uint64_t n = MIN((uint64_t)SM_PER_BLOCK, sm->r.nentries - i * SM_PER_BLOCK);
	uint64_t j;
	int rc;

	rc = read_cur(sm, i, &cur);
	if (rc)
		return rc;
	rc = -ENOSPC;
	for (j = lo; j < n; j++) {
		if (get_le32(counts(cur) + 4 * j))
			continue;
		if (touched(sm, i)) {
			if (!com) {
				rc = bm_read(sm->bm, slot(sm, i, bit(sm->sel_com, i)),
					     &sm_validator, &com);
				if (rc) {
					com = NULL;
					break;
				}
				rc = -ENOSPC;
			}
			if (get_le32(counts(com) + 4 * j))
				continue;
		}
		*found = i * SM_PER_BLOCK + j;
		rc = 0;
		break;
	}
	if (com)
		bm_unpin(sm->bm, com);
	bm_unpin(sm->bm, cur);
	return rc;
}

int sm_alloc(struct sm *sm, uint64_t *e)
{
	uint64_t start = sm->hint, pos = start, end = sm->r.nentries;
	bool wrapped = false;
	int rc;

	if (start < sm->r.alloc_begin || start >= end)
		start = pos = sm->r.alloc_begin;
	if (!sm_nr_free(sm))
		return -ENOSPC;
	for (;;) {
		uint64_t i = pos / SM_PER_BLOCK;
		uint64_t found = 0;

		if (wrapped && pos >= start)
			return -ENOSPC;
		if (bit(sm->full, i))
			rc = -ENOSPC;
		else
			rc = find_free(sm, i, pos % SM_PER_BLOCK, &found);
		/* searched from the block's first allocatable entry: it is full */
		if (rc == -ENOSPC && pos == MAX(i * SM_PER_BLOCK, sm->r.alloc_begin))
			sm->full[i / 8] |= (uint8_t)(1u << (i % 8));
		if (rc == 0 && (!wrapped || found < start)) {
			rc = sm_inc(sm, found);
			if (rc)
				return rc;
			*e = found;
			sm->hint = found + 1;
			return 0;
		}
		if (rc && rc != -ENOSPC)
			return rc;
		if (rc == 0)
			return -ENOSPC;
		pos = (i + 1) * SM_PER_BLOCK;
		if (pos >= end) {
			if (wrapped)
				return -ENOSPC;
			wrapped = true;
			pos = sm->r.alloc_begin;
		}
	}
}
