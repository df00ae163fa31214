/* SPDX-License-Identifier: MIT */
/*
 * Thin pools: thin volumes, O(1) snapshots and clones over one block device
 * (metadata at its start, data chunks after). doc/thin.md describes the
 * design and the on-disk format.
 *
 * A pool has one owner thread; every control call below runs there (the
 * caller waits) and must not be called from a reactor thread, nor from a
 * thread with I/O in flight on a volume of the pool. Volumes are block
 * devices (sand/blkdev.h): open channels on them from any loop; reads of
 * mapped chunks and writes to chunks a volume owns alone go to the pool
 * device from that loop, the rest through the owner thread; I/O ends on the
 * channel's loop.
 *
 * Volume I/O: unmapped chunks read as zeros; a write to an unmapped or
 * shared chunk allocates a new one (a whole-chunk write just remaps, a
 * partial one copies the old contents, or zeros, first); DISCARD and
 * WRITE_ZEROES unmap whole chunks and zero partial ones; FLUSH and FUA
 * commit the metadata (every acknowledged flush is durable). Changes are
 * also committed every commit_ms. When the pool has no free chunk left, a
 * write that needs one ends with -ENOSPC, and only that write; reads and
 * writes to chunks already owned still work.
 */
#ifndef SAND_THIN_H
#define SAND_THIN_H

#include <stdbool.h>
#include <stdint.h>
#include "sand/blkdev.h"

#define THIN_CHUNK_MIN		(64u * 1024)
#define THIN_CHUNK_MAX		(1024u * 1024)
#define THIN_CHUNK_DEFAULT	THIN_CHUNK_MIN
#define THIN_NAME_MAX		40	/* volume names, NUL included */

struct thin_pool;

struct thin_format_opts {
	uint32_t	chunk_size;	/* 0: 64 KiB; a power of two, 64 KiB..1 MiB */
	uint64_t	meta_size;	/* bytes; 0: about 48 bytes per chunk, 1 MiB at least */
};

/* Write an empty pool over dev (whatever dev held is lost). */
int thin_pool_format(struct blkdev *dev, const struct thin_format_opts *o);

struct thin_open_opts {
	unsigned	cache_blocks;	/* metadata cache, 4 KiB blocks; 0: 1024 */
	unsigned	commit_ms;	/* 0: 1000 */
	/* A partial write to a new chunk zeroes the rest of it with the
	 * device's WRITE_ZEROES when it has one; true: write zeros instead. */
	bool		no_write_zeroes;
	/* Low-space announcement: low_space(arg, free) runs on the owner
	 * thread when the free data chunks fall below low_water, once per
	 * crossing (again after they have risen to low_water or more). It
	 * must not call back into the pool. 0 / NULL: none. */
	uint64_t	low_water;
	void		(*low_space)(void *arg, uint64_t free_chunks);
	void		*low_space_arg;
	/* The fast path's mapping cache, entries per open volume (32 bytes
	 * each; rounded down to a power of two, and to the volume's chunks);
	 * 0: 65536. I/O to chunks it does not hold goes to the owner thread. */
	unsigned	map_cache;
};

/* Open a formatted pool: -EUCLEAN when its metadata is not valid, -EBUSY
 * when dev is claimed (by another pool, say). The pool claims dev until it
 * is closed; formatting claims it while it runs. */
int thin_pool_open(struct blkdev *dev, const struct thin_open_opts *o,
		   struct thin_pool **out);
/* Commit and close. -EBUSY while a volume device is open. */
int thin_pool_close(struct thin_pool *p);
int thin_pool_commit(struct thin_pool *p);

struct thin_pool_info {
	uint32_t	chunk_size;
	uint64_t	data_chunks, free_chunks;
	uint64_t	meta_blocks, free_meta_blocks;
	uint64_t	generation;
	uint32_t	time;
	unsigned	volumes;
	uint64_t	virtual_bytes;	/* sum of the volumes' sizes: overcommit if
					 * more than data_chunks * chunk_size */
	unsigned	cache_used, cache_peak;	/* metadata blocks cached, now and at most */
	uint64_t	commits;	/* metadata commits and device flushes done */
	uint64_t	flushes;	/* FLUSH and FUA bios they acknowledged */
	uint64_t	owner_ios;	/* data bios handled on the owner thread */
	uint64_t	fast_ios;	/* data bios remapped on the submitting loop */
};
int thin_pool_info(struct thin_pool *p, struct thin_pool_info *info);
/* Change the low-space mark (thin_open_opts.low_water) of an open pool; if
 * the free chunks are below the new mark, low_space() runs now. */
int thin_pool_set_low_water(struct thin_pool *p, uint64_t chunks);

/* Walk every tree and recount every reference to each metadata block and
 * data chunk; compare with the space maps. 0 if all agree, -EUCLEAN if not
 * (or if a block or node is invalid), with the first differences logged. */
struct thin_check_report {
	unsigned	volumes;
	uint64_t	node_refs;	/* pointers to nodes followed */
	uint64_t	mappings;	/* leaf entries of distinct mapping leaves */
	uint64_t	errors;
	/* thin_pool_check_ex's details */
	unsigned	bad_trees;	/* trees that could not be walked to the end */
	uint64_t	leaked_blocks;	/* metadata blocks counted but unreferenced */
	uint64_t	leaked_chunks;	/* data chunks counted but unreferenced */
	uint64_t	fixed;		/* repair: counts (and in-use records) rewritten */
	uint64_t	errors_left;	/* repair: problems the second pass still found */
	unsigned	dropped;	/* repair: damaged volumes dropped */
};
int thin_pool_check(struct thin_pool *p, struct thin_check_report *rep);

/* The same, reporting each problem (and fix) as a line of text through
 * report() (called on the owner thread; it must not call into the pool).
 * With repair, and only when every tree could be walked: every space-map
 * count is set to the references found (leaked blocks and chunks return
 * to the pool), committed, and checked again; 0 if the pool is clean
 * afterwards. A damaged tree is reported and nothing is changed, unless
 * drop_damaged: then each volume whose tree is damaged (and not open) is
 * deleted from the volume table, its data lost, and the counts are rebuilt
 * from the trees left. */
struct thin_check_opts {
	bool		repair;
	bool		drop_damaged;	/* with repair */
	void		(*report)(void *arg, const char *line);
	void		*arg;
};
int thin_pool_check_ex(struct thin_pool *p, const struct thin_check_opts *o,
		       struct thin_check_report *rep);

/* Volumes, by name. -EEXIST, -ENOENT, -EINVAL (bad name or size), -ENOSPC
 * (metadata full). size is in bytes, a multiple of the device block size. */
int thin_vol_create(struct thin_pool *p, const char *name, uint64_t size);
/* A read-only snapshot of origin: O(1), it shares origin's mapping.
 * -EOVERFLOW after 2^24 - 1 snapshots and clones in the pool's life. */
int thin_snap_create(struct thin_pool *p, const char *origin, const char *name);
/* A writable snapshot. */
int thin_clone_create(struct thin_pool *p, const char *origin, const char *name);
/* -EBUSY while its device is open. Chunks go back to the pool once nothing
 * maps them. */
int thin_vol_delete(struct thin_pool *p, const char *name);

struct thin_vol_info {
	uint64_t	id;
	uint64_t	size;
	uint64_t	mapped_chunks;	/* chunks this volume maps (shared or not) */
	bool		readonly;
};
int thin_vol_info(struct thin_pool *p, const char *name, struct thin_vol_info *info);

/* Resize a volume (bytes, a multiple of the block size). Growing works
 * online: an open volume's device takes the new size at once. Shrinking
 * needs shrink = true (else -EPERM) and unmaps every chunk past the new end
 * (and zeroes the rest of the last one). -EROFS for a read-only snapshot,
 * -EINVAL for a bad size, -ENOSPC when the metadata is full. */
int thin_vol_resize(struct thin_pool *p, const char *name, uint64_t size, bool shrink);

/* The names of every volume, snapshot and clone, in the pool's order: a
 * malloc'd array of *n names (free() it). */
int thin_vol_list(struct thin_pool *p, char (**names)[THIN_NAME_MAX], unsigned *n);

/* The volume as a block device (block size: the pool device's), named
 * after the volume; blkdev_close() it when done. -EBUSY if already open. */
int thin_vol_open(struct thin_pool *p, const char *name, struct blkdev **out);

/*
 * Range copy by sharing (SCSI EXTENDED COPY): map the chunks of
 * [src_off, src_off+len) of volume src into volume dst at dst_off, each
 * with one more reference (as a clone shares them, but for a range); an
 * unmapped source chunk unmaps the destination's. No data moves and no
 * chunk is allocated; a later write to a shared chunk, through either
 * volume, copies it first. src and dst are open volume devices of one pool
 * (src may be dst; overlapping ranges work as memmove); offsets and len
 * are multiples of the chunk size (thin_vol_chunk). Like every mapping
 * change it is durable with the next commit (FLUSH, FUA or commit_ms).
 *
 * Any thread, asynchronous: 0 and done(arg, rc) runs later on loop, or
 * -errno and it never runs. -EXDEV: not two volumes of one pool;
 * -EINVAL: not chunk-aligned, or past the end; -EROFS: dst is read-only;
 * -EAGAIN (through done): a write to one of those chunks was being
 * provisioned, nothing was changed (copy with reads and writes instead).
 */
int thin_vol_copy_range(struct blkdev *src, uint64_t src_off, struct blkdev *dst,
			uint64_t dst_off, uint64_t len, struct ev_loop *loop,
			void (*done)(void *arg, int rc), void *arg);
/* The chunk size of a thin volume device; 0 for any other device. */
uint32_t thin_vol_chunk(struct blkdev *bd);
/* Are a and b volumes of the same pool? */
bool thin_vol_same_pool(struct blkdev *a, struct blkdev *b);

#endif
