/* SPDX-License-Identifier: MIT */
/*
 * The thin pool's metadata layer, after Linux dm-thin's persistent-data:
 *
 *   bm  block manager: 4 KiB metadata blocks over a struct blkdev, each with
 *       a self-describing header (CRC32C, its own number, magic, version)
 *       that a validator checks on every read and stamps on every write; a
 *       bounded LRU cache.
 *   sm  space maps: a 32-bit reference count per metadata block and per
 *       data chunk, in refcount blocks that live in pairs of fixed slots
 *       (ping-pong): the first change in a transaction goes to the slot the
 *       last commit did not use, so the committed counts stay intact.
 *   tm  transaction manager: shadowing (copy-on-write) of metadata blocks,
 *       the two alternating superblocks, commit (write everything, flush,
 *       superblock, flush) and open (the valid superblock with the highest
 *       generation).
 *   btree  copy-on-write B-trees, u64 key -> fixed-size value, with shared
 *       subtrees (reference-counted nodes).
 *
 * doc/thin.md describes the on-disk format. Everything here runs on the
 * pool's one owner thread and does synchronous I/O through a private loop:
 * none of it may be called from a reactor thread.
 */
#ifndef SAND_SNAPSHOT_META_H
#define SAND_SNAPSHOT_META_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include "sand/blkdev.h"

#define META_BLOCK_SIZE		4096u
#define META_HDR_SIZE		32u
#define META_VERSION		1u

/* ---- block header: the first 32 bytes of every metadata block ---- */
struct meta_hdr {
	uint32_t	csum;		/* le: CRC32C of bytes 4..4095 */
	uint32_t	magic;		/* le: the block's type */
	uint64_t	blocknr;	/* le: where it belongs */
	uint32_t	version;	/* le: format version it was written with */
	uint32_t	flags;		/* le: 0 */
	uint64_t	reserved;
};
static_assert(sizeof(struct meta_hdr) == META_HDR_SIZE, "meta_hdr size");

#define MAGIC_SUPER	0x53444e53u	/* "SNDS" */
#define MAGIC_SM	0x4d53444eu	/* "NDSM" */
#define MAGIC_NODE	0x4e42444eu	/* "NDBN" */
#define MAGIC_SEL	0x4c53444eu	/* "NDSL" */

struct bm_validator {
	const char	*name;
	uint32_t	magic;
};

uint32_t meta_csum(const void *block);

/* ---- block manager ---- */
struct bm;
struct bm_block {
	uint64_t		nr;
	const struct bm_validator *v;
	uint8_t			*data;		/* META_BLOCK_SIZE bytes */
	unsigned		pins;
	bool			dirty;
	struct list_head	lru;		/* on the LRU list while unpinned */
	struct bm_block		*hnext;
};

struct bm_stats {
	uint64_t	reads, writes, hits, misses, evictions;
	unsigned	cached, max_cached;
};

/* A block manager over blocks [0, nblocks) of META_BLOCK_SIZE bytes at the
 * start of dev. cache_blocks bounds the cache (pinned blocks aside). */
int bm_create(struct blkdev *dev, uint64_t nblocks, unsigned cache_blocks, struct bm **out);
/* Frees everything; dirty blocks are dropped, not written. */
void bm_destroy(struct bm *bm);
uint64_t bm_nblocks(struct bm *bm);
/* Read (through the cache) and pin. -EUCLEAN when the block fails its
 * validator (checksum, location, magic, newer version), -EIO etc. from the
 * device, -ERANGE beyond the end. */
int bm_read(struct bm *bm, uint64_t nr, const struct bm_validator *v, struct bm_block **out);
/* Pin a block whose old contents do not matter: zeroed, dirty, no read. */
int bm_new(struct bm *bm, uint64_t nr, const struct bm_validator *v, struct bm_block **out);
static inline void bm_dirty(struct bm_block *b) { b->dirty = true; }
void bm_unpin(struct bm *bm, struct bm_block *b);
/* Write one pinned block now (stamped), without a flush. */
int bm_write_now(struct bm *bm, struct bm_block *b);
/* Write every dirty block (stamped), then flush the device. */
int bm_flush(struct bm *bm);
/* Forget every unpinned block (dirty ones are dropped). */
void bm_drop_all(struct bm *bm);
void bm_get_stats(struct bm *bm, struct bm_stats *st);
/* The raw sync I/O the block manager uses (for tests and the superblock). */
int bm_io(struct bm *bm, enum bio_op op, uint64_t nr, void *buf);

/* ---- space maps ---- */
#define SM_PER_BLOCK	((META_BLOCK_SIZE - META_HDR_SIZE) / 4)	/* 1016 */

/* What the superblock keeps of a space map (32 bytes on disk) plus its
 * slot-select bits (stored apart, in the superblock's tail). */
struct sm_root {
	uint64_t	base;		/* first slot block */
	uint64_t	nentries;
	uint64_t	nr_allocated;	/* entries with a count > 0 */
	uint64_t	alloc_begin;	/* entries below are never allocated */
};

struct sm;
static inline uint64_t sm_nblocks_for(uint64_t nentries)
{
	return DIV_ROUND_UP(nentries, SM_PER_BLOCK);
}
/* Format: write every refcount block (zero counts) into slot 0. */
int sm_format(struct bm *bm, const struct sm_root *root, struct sm **out);
int sm_open(struct bm *bm, const struct sm_root *root, const uint8_t *sel, struct sm **out);
void sm_free(struct sm *sm);
void sm_get_root(struct sm *sm, struct sm_root *root);
size_t sm_sel_bytes(struct sm *sm);
void sm_get_sel(struct sm *sm, uint8_t *sel);
int sm_get_count(struct sm *sm, uint64_t e, uint32_t *count);
int sm_inc(struct sm *sm, uint64_t e);
/* -EINVAL on a count already 0. */
int sm_dec(struct sm *sm, uint64_t e);
/* For repairs (check.c) and tests that corrupt on purpose: set a count
 * outright, and the number of entries with a count > 0 that the root
 * records. */
int sm_set_count(struct sm *sm, uint64_t e, uint32_t count);
void sm_set_nr_allocated(struct sm *sm, uint64_t n);
/* Count 0 now and in the last committed state; -ENOSPC if none. */
int sm_alloc(struct sm *sm, uint64_t *e);
/* Entries with count 0 (some of them freed in this transaction). */
uint64_t sm_nr_free(struct sm *sm);
/* Entries sm_alloc() can still hand out in this transaction. */
uint64_t sm_nr_allocatable(struct sm *sm);
uint64_t sm_nentries(struct sm *sm);
/* After the superblock that records the current selection is durable. */
void sm_committed(struct sm *sm);

/* ---- transaction manager ---- */
#define TM_USER_SIZE	376u	/* the pool's own fields in the superblock */

struct tm_geom {
	uint64_t	meta_nblocks;	/* metadata blocks, superblocks included */
	uint64_t	data_nentries;	/* data chunks */
	unsigned	cache_blocks;	/* 0: default (1024) */
	bool		sel_blocks;	/* keep the slot-select bits in select blocks
					 * even when they fit in the superblock */
};

struct tm;
int tm_format(struct blkdev *dev, const struct tm_geom *g, struct tm **out);
int tm_open(struct blkdev *dev, unsigned cache_blocks, struct tm **out);
/* Frees everything; what was not committed is lost. */
void tm_close(struct tm *tm);
/* Write all new blocks, flush, write the next superblock, flush. */
int tm_commit(struct tm *tm);
/* Its two phases, for tests: pre-commit (all but the superblock, flushed),
 * then the superblock (flushed when flush is true). */
int tm_pre_commit(struct tm *tm);
int tm_write_super(struct tm *tm, bool flush);

struct bm *tm_bm(struct tm *tm);
struct sm *tm_msm(struct tm *tm);
struct sm *tm_dsm(struct tm *tm);
uint64_t tm_generation(struct tm *tm);
/* The pool's TM_USER_SIZE bytes, saved by every commit. */
uint8_t *tm_user(struct tm *tm);

/* A new metadata block (count 1), zeroed, pinned, dirty. */
int tm_new_block(struct tm *tm, const struct bm_validator *v, struct bm_block **out);
/* Pin a block for writing in this transaction: in place when it is new in
 * this transaction and not shared; else a copy (count 1) that replaces one
 * reference to the original, with *inc_children telling whether the
 * original was shared (the caller then takes a reference to each child). */
int tm_shadow(struct tm *tm, uint64_t nr, const struct bm_validator *v,
	      struct bm_block **out, bool *inc_children);
int tm_read(struct tm *tm, uint64_t nr, const struct bm_validator *v, struct bm_block **out);
void tm_unpin(struct tm *tm, struct bm_block *b);
int tm_inc(struct tm *tm, uint64_t nr);
int tm_dec(struct tm *tm, uint64_t nr);
int tm_count(struct tm *tm, uint64_t nr, uint32_t *count);

/* ---- copy-on-write B-tree: u64 key -> value_size bytes ---- */
struct btree_info {
	struct tm	*tm;
	uint32_t	value_size;		/* 1..64 */
	void		*ctx;
	/* a leaf was copied off a shared one: each value gains a reference;
	 * a value was overwritten, removed or its tree deleted: it loses one */
	int		(*inc)(void *ctx, const void *value);
	int		(*dec)(void *ctx, const void *value);
};

extern const struct bm_validator btree_node_validator;

int btree_empty(struct btree_info *info, uint64_t *root);
/* 0 and the value, or -ENODATA. */
int btree_lookup(struct btree_info *info, uint64_t root, uint64_t key, void *value);
/* The tree takes over one reference to value; an old value is released. */
int btree_insert(struct btree_info *info, uint64_t root, uint64_t key,
		 const void *value, uint64_t *new_root);
/* -ENODATA if absent (the tree is unchanged). The value is released. */
int btree_remove(struct btree_info *info, uint64_t root, uint64_t key, uint64_t *new_root);
/* fn for each key in [lo, hi] in order; a nonzero return stops and is returned. */
typedef int (*btree_iter_fn)(void *arg, uint64_t key, const void *value);
int btree_iterate(struct btree_info *info, uint64_t root, uint64_t lo, uint64_t hi,
		  btree_iter_fn fn, void *arg);
/* Drop one reference to a tree (values released when their leaf goes). */
int btree_del(struct btree_info *info, uint64_t root);
/* For checkers: node() is called for every reference to a node, depth
 * first; the walk goes into the node only when it returns > 0 (< 0 stops
 * the walk), and then calls value() for each entry of a leaf. Unsorted keys
 * give -EUCLEAN. */
struct btree_walker {
	int	(*node)(void *arg, uint64_t nr);
	int	(*value)(void *arg, uint64_t key, const void *value);
	void	*arg;
};
int btree_walk(struct btree_info *info, uint64_t root, const struct btree_walker *w);
/* The same over the nodes that may hold keys in [lo, hi] only (value() is
 * called for those keys only); no key-order checks. */
int btree_walk_range(struct btree_info *info, uint64_t root, uint64_t lo, uint64_t hi,
		     const struct btree_walker *w);
/* For repairs: every entry of a damaged tree that can still be trusted, in
 * key order. value() gets each leaf entry inside the key range its parents
 * give its leaf; bad() each entry outside it or out of order (dropped);
 * lost() each key range [lo, hi] whose node nr cannot be read (err: -EIO,
 * -EUCLEAN, ...) or is not a sane node. A nonzero return stops the walk
 * and is returned; so is -ENOMEM. */
struct btree_salvager {
	int	(*value)(void *arg, uint64_t key, const void *value);
	int	(*bad)(void *arg, uint64_t key, uint64_t nr);
	int	(*lost)(void *arg, uint64_t lo, uint64_t hi, uint64_t nr, int err);
	void	*arg;
};
int btree_salvage(struct btree_info *info, uint64_t root, const struct btree_salvager *s);
/* Share a tree: one more reference to its root. */
static inline int btree_share(struct btree_info *info, uint64_t root)
{
	return tm_inc(info->tm, root);
}

#endif
