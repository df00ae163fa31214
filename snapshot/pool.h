/* SPDX-License-Identifier: MIT */
/*
 * The thin pool's internals, shared by pool.c (volumes, I/O, control) and
 * check.c (the consistency checker). Everything here belongs to the pool's
 * owner thread.
 */
#ifndef SAND_SNAPSHOT_POOL_H
#define SAND_SNAPSHOT_POOL_H

#include <pthread.h>
#include "sand/common.h"
#include "sand/ev.h"
#include "sand/thin.h"
#include "snapshot/meta/meta.h"

#define POOL_MAGIC	0x4c4f4f50u	/* "POOL" */
#define POOL_VERSION	1u

/* the superblock's user area */
#define U_MAGIC		0
#define U_VERSION	4
#define U_CHUNK		8
#define U_TIME		12
#define U_VROOT		16
#define U_NEXT_ID	24
#define U_DATA_OFF	32
#define U_NR_CHUNKS	40

/* a volume record (value in the volume table) */
#define VREC_SIZE	64
#define R_ROOT		0
#define R_SIZE		8
#define R_SNAP_TIME	16
#define R_FLAGS		20
#define R_NAME		24
#define VOL_RDONLY	1u

#define TIME_MASK	0xffffffu
#define META_RESERVE	64	/* metadata blocks kept for a commit's changes */

struct thin_vol;

struct vol_rec {
	struct list_head	link;
	uint64_t		id;
	char			name[THIN_NAME_MAX];
	uint64_t		root, size;
	uint32_t		snap_time, flags;
	bool			dirty;
	struct thin_vol		*open;
};

struct thin_pool {
	struct blkdev		*dev;
	char			claim[BLK_NAME_MAX];	/* our claim on dev */
	struct tm		*tm;
	struct btree_info	vinfo, minfo;
	uint64_t		vroot, next_id, data_off, nr_chunks;
	uint32_t		chunk, time;
	struct list_head	vols;
	pthread_mutex_t		names_lock;	/* vols' membership, for other threads */
	unsigned		nvols, nopen;
	bool			dirty;		/* metadata changed since the commit */
	int			unflushed;	/* data written since the last flush (atomic:
						 * fast-path writes set it on reactors) */
	bool			zeroes;		/* dev has WRITE_ZEROES: use it for new chunks */
	int			failed;		/* a metadata error: every I/O fails (atomic
						 * reads on reactors) */
	unsigned		map_slots;	/* per open volume (a power of two) */

	/* FLUSH and FUA bios waiting for the next commit (any thread adds) */
	pthread_mutex_t		fq_lock;
	struct list_head	fq;
	bool			fq_sched;	/* a flush_run message is on its way */
	unsigned		prov_released;	/* pool_prov_hold nesting */

	/* counters for thin_pool_info (fast_ios: atomic; the rest: owner) */
	uint64_t		st_commits, st_flushes, st_owner_ios, st_fast_ios;

	pthread_t		thread;
	struct ev_loop		*loop;		/* the owner's */
	struct ev_timer		commit_timer;
	unsigned		commit_ms;
	uint64_t		low_water;
	bool			low;		/* below low_water, announced */
	void			(*low_space)(void *arg, uint64_t free_chunks);
	void			*low_space_arg;

	struct ev_loop		*dloop;		/* private, for synchronous data I/O */
	struct blkchan		*dch;
	/* the provisionings' data I/O, on a thread of its own (pool.c) */
	pthread_t		iothread;
	bool			io_running;
	struct ev_loop		*ioloop;
	struct blkchan		*och;
	struct list_head	retry;		/* I/Os pushed back (io thread) */
	struct ev_timer		retry_timer;
	uint8_t			*cbuf;		/* one chunk */
};

/*
 * The fast path's mapping cache (one per open volume, direct-mapped by
 * virtual chunk). Only the owner fills or invalidates a slot; reactors look
 * up and pin slots under the volume's lock. A slot is valid when its gen is
 * the volume's; owned (and its wgen the volume's): the chunk is this
 * volume's alone (written since its snap_time), so writes may go in place;
 * else only reads may use it. A snapshot bumps wgen (nothing is owned any
 * more, the mappings stay); a shrink bumps gen (nothing is valid).
 * inflight counts fast-path bios using the slot's chunk: the owner waits
 * for it to drop to 0 after invalidating, before it changes the mapping.
 */
struct map_slot {
	uint64_t		vc, pc;
	uint32_t		gen, wgen;
	uint32_t		inflight;
	bool			owned;
};

struct thin_vol {
	struct blkdev		bd;
	struct thin_pool	*p;
	struct vol_rec		*r;

	pthread_mutex_t		lock;		/* the map below */
	pthread_cond_t		drained;	/* a slot's or the volume's inflight hit 0 */
	struct map_slot		*map;
	uint64_t		map_mask;
	uint32_t		gen, wgen;
	uint32_t		inflight;	/* fast-path bios, all slots */
	unsigned		waiters;
	struct list_head	cells;		/* owner: provisionings in flight (vol_bio) */
};

/* Run fn(p, arg) on the owner thread and wait for its result. */
int pool_call(struct thin_pool *p, int (*fn)(struct thin_pool *, void *), void *arg);
/*
 * Owner thread. A provisioning in flight has allocated its new chunk
 * (count 1) before any tree refers to it. Anything that compares the space
 * maps with the trees (a commit, the checker, a repair) brackets itself
 * with pool_prov_hold(p, false) ... pool_prov_hold(p, true): the counts of
 * those chunks are dropped, then taken back. Nests; nothing may allocate a
 * data chunk in between.
 */
void pool_prov_hold(struct thin_pool *p, bool take);

/* snapshot/map.c: the volumes' blkdev block_status, status_base(s) */
int thin_vol_block_status(struct blkdev *bd, struct blkchan *ch, struct blk_status *st);
int thin_vol_status_base(struct blkdev *bd, const char *base);
void thin_vol_status_bases(struct blkdev *bd, void (*fn)(void *arg, const char *base),
			   void *arg);

/* pool.c, for snapshot/copy.c (owner thread but pool_vol_of): the volume
 * behind a block device (NULL: not a thin volume); a mapping; forget a
 * chunk's fast-path slot; unmap a chunk; fail the pool; a provisioning in
 * flight on a chunk (its cell). */
struct thin_vol *pool_vol_of(struct blkdev *bd);
int pool_map_lookup(struct thin_pool *p, struct vol_rec *r, uint64_t vc, uint64_t *pc,
		    uint32_t *time);
void pool_map_forget(struct thin_vol *tv, uint64_t vc);
int pool_unmap_chunk(struct thin_pool *p, struct vol_rec *r, uint64_t vc);
int pool_fail(struct thin_pool *p, int rc);
bool pool_cell_busy(struct thin_vol *tv, uint64_t vc);

#endif
