/* SPDX-License-Identifier: MIT */
/*
 * Inside a RAID set: what raid.c (the core: superblocks, channels, member
 * bios, stripe locks, member failure) shares with the level modules,
 * raid_mirror.c (0, 1, 10) and raid_parity_io.c (5, 6).
 *
 * A level module gets a struct raid_io per bio (the bio's ctx). It sends
 * member bios in batches: batch_begin(rio, next), member_bio() for each,
 * batch_end(rio); next(rio) runs once every member bio of the batch has
 * ended (from the member's completion, never inside raid_submit). It ends
 * the bio with rio_finish(rio, status) exactly once.
 */
#ifndef SAND_RAID_INT_H
#define SAND_RAID_INT_H

#include <pthread.h>
#include "sand/raid.h"

#define MAXCOLS		RAID_MAX_MEMBERS

struct raid;
struct raid_io;

/* A channel of the set: its member channels, and a few large stripe
 * buffers kept for reuse (freshly mapped memory costs a page fault per 4 KiB). */
struct raid_chan {
	struct blkchan	*mch[RAID_MAX_MEMBERS];
	struct ppl_chan	*ppl;		/* log writes being grouped (raid_ppl.c) */
	struct list_head free_bufs[2];	/* small (BUF_SMALL), large (buf_max) */
	unsigned	nfree[2];
};
typedef void (*raid_io_fn)(struct raid_io *rio);

/* A held stripe lock: owned by the raid_io that holds it. */
struct stripe_lock {
	uint64_t		stripe;
	uint64_t		rows;		/* stripes from stripe on */
	struct list_head	link;		/* r->locked */
	struct list_head	waiters;	/* raid_io.wait_link */
};

enum wr_mode { WR_RCW, WR_RMW, WR_DEGRADED };

struct raid_io {
	struct raid	*r;
	struct bio	*bio;
	struct blkchan	**mch;		/* member channels */
	struct raid_chan *rc;
	raid_io_fn	next;		/* when the batch ends, or the lock is granted */
	int		pending;
	int		status;		/* first error that is not a member failure */
	int		nok;		/* member bios of the batch that succeeded */
	int		final;
	bool		in_submit;
	bool		child_err;	/* a member failed in this batch */
	bool		persist;	/* this I/O failed a member: persist before ending */
	bool		locked;
	int8_t		mem_class;	/* mem's cache class, -1: malloc'ed */
	enum wr_mode	mode;
	uint32_t	tried;		/* mirror reads: members tried */
	uint32_t	bad;		/* members whose read failed in this I/O (not failed) */
	uint8_t		*mem;
	struct list_head retry;		/* member bios refused with -EAGAIN/-ENOMEM */
	struct ev_timer	retry_timer;
	struct list_head wait_link;
	struct list_head persist_link;
	struct stripe_lock lock;
	/* the partial parity log (raid_ppl.c): this write's entries */
	struct ppl_ent	*ppl_ent[2];
	struct ppl_stripe *ppl_st;	/* tracked: counted in flight on its stripe */
	uint8_t		*ppl_buf;
	uint64_t	ppl_mark;	/* FLUSH: the log's write stamp when sent */
	bool		ppl_retry;	/* the log was full even after a flush */
	bool		bm_held;	/* counted in flight in its bitmap region */
	uint32_t	rows;		/* stripes from stripe on that the lock covers (0: 1) */
	uint64_t	split_at;	/* raid_parity_multi.c: bytes of the bio handed out as pieces */
	bool		split_rows;	/* ... pieces of one stripe each */
	/* RAID 5/6, set up by the module */
	uint64_t	stripe;
	uint32_t	cols[MAXCOLS];
	uint32_t	lo[MAXCOLS], hi[MAXCOLS];	/* per data column, in the strip */
	uint32_t	rs, re;		/* row range R */
	uint64_t	readmask;	/* columns read (live when read); the rest are rebuilt */
	uint8_t		*d[MAXCOLS + 2], *o[MAXCOLS + 2], *zero;
};

/* SPDK's raid_bdev_module, smaller. */
struct raid_level_ops {
	enum raid_level	level;
	uint32_t	min_members;
	/* Called when the set opens: sets io_boundary. */
	void	(*start)(struct raid *r);
	/* READ, WRITE: never crosses io_boundary. */
	void	(*submit_rw)(struct raid_io *rio);
	/* FLUSH: to every live member. */
	void	(*submit_null)(struct raid_io *rio);
	/* Rebuild row rio->stripe onto the members being rebuilt (NULL: none);
	 * rows_batch: the rows of raid_walk_req (all under their locks). */
	void	(*rebuild)(struct raid_io *rio);
	bool	rebuild_batch;
	/* Make row rio->stripe consistent: parity from data, mirrors from the
	 * first live one (NULL: nothing to do). */
	void	(*resync)(struct raid_io *rio);
	/* Check row rio->stripe (r->scrub_*); NULL: nothing to check. */
	void	(*scrub)(struct raid_io *rio);
};

/* A private bio flag: this READ is a rebuild request for a row (raid.c). */
#define RAID_BIO_REBUILD	(1u << 30)
#define RAID_BIO_RESYNC		(1u << 29)
#define RAID_BIO_SCRUB		(1u << 28)

/*
 * A walker bio (RAID_BIO_REBUILD, RESYNC, SCRUB) has end_arg pointing to
 * this: the rows it stands for, from the row at its offset (only above 1
 * for a level with rebuild_batch), and a buffer of buf_len bytes the level
 * may use for them (NULL: none).
 */
struct raid_walk_req {
	uint64_t	row;
	uint32_t	rows;
	void		*buf;
	size_t		buf_len;
	/* the walker's */
	bool		done;
	int		status;
};

/* raid_parity_rows.c: RAID 5/6 rebuild of a batch of rows. */
void parity_rebuild_rows(struct raid_io *rio);

/* raid_parity_multi.c: a RAID 5/6 bio over more than one stripe (io_boundary
 * is parity_rows_max stripes). true: taken (whole stripes of a whole set
 * written at once, or split into pieces); false: inside one stripe. */
bool parity_span(struct raid_io *rio);
uint32_t parity_rows_max(const struct raid *r);
/* The bio stripe by stripe, as pieces sent on the set's channel (the
 * stripe path): what a batched path falls back to. */
void parity_split_rows(struct raid_io *rio);
/* raid_parity_mread.c: a READ over more than one stripe. */
void parity_read_multi(struct raid_io *rio);

extern const struct raid_level_ops raid0_level, raid1_level, raid10_level,
	raid5_level, raid6_level;

struct raid {
	struct blkdev	bd;
	const struct raid_level_ops *lops;
	struct raid_geom g;
	uint32_t	k, np;		/* data and parity columns (5/6) */
	uint64_t	data_offset;
	uint32_t	caps;		/* 1 << op: every member supports DISCARD, WRITE_ZEROES */
	size_t		buf_max;	/* the largest stripe buffer a bio needs */
	struct blkdev	*members[RAID_MAX_MEMBERS];
	int		state[RAID_MAX_MEMBERS];	/* atomic */
	/* Held (never across I/O) to put a new device in a slot and to fail
	 * the slot a failed bio's device is in: a late error of the old
	 * device never fails the spare that took its slot meanwhile. */
	pthread_mutex_t	slot_lock;
	struct raid_sb	sb;		/* the template: uuids, geometry, generation */

	pthread_mutex_t	lock;		/* stripe locks */
	struct list_head locked;

	pthread_mutex_t	sb_lock;	/* persist, replace */
	int		rebuild_slot;	/* -1: none, -2: a scrub runs */
	bool		scrub_repair;	/* set by raid_scrub for its rows */
	uint64_t	scrub_bad;	/* rows found inconsistent (atomic) */
	pthread_mutex_t	wlock;		/* the persist worker's queue */
	pthread_cond_t	wcond;
	struct list_head wqueue;
	struct list_head dirty_wait;	/* writes waiting for the dirty flag on disk */
	bool		dirty;		/* RAID_SB_DIRTY is on disk (atomic) */
	bool		wstop;
	pthread_t	worker;
	struct raid_ppl	*ppl;		/* RAID 5/6 partial parity log, or NULL */
	struct raid_bitmap *bm;		/* write-intent bitmap, or NULL */

	/* background jobs: rebuild, scrub, spares (raid_rebuild.c) */
	pthread_mutex_t	jlock;		/* everything below but the atomics */
	pthread_cond_t	jcond;		/* work for the job thread; a job ended */
	pthread_t	jthread;
	bool		jstarted;
	bool		jstop;		/* the set closes */
	bool		jhold;		/* raid_jobs_stop: start nothing new */
	bool		jcancel;	/* stop the running job (atomic) */
	bool		jbusy;		/* a job runs */
	bool		scrub_req, scrub_req_repair;
	uint64_t	scrub_from;	/* the row the requested scrub starts at (resumed: > 0) */
	struct raid_job_info ji;	/* progress, last job */
	uint64_t	jstart_ns, jrate_base_ns, jrate_base_row;
	uint64_t	rate;		/* bytes per second per member, 0: none (atomic) */
	uint64_t	fg_ios;		/* foreground bios submitted (atomic) */
	bool		cursor_ok;	/* the rebuild cursor can be trusted (clean start) */
	struct blkdev	*spares[RAID_MAX_MEMBERS];
	int		spare_slot[RAID_MAX_MEMBERS];	/* the slot a spare was a member of, or -1 */
	uint32_t	nspares;
	uint32_t	read_errs[RAID_MAX_MEMBERS];	/* atomic */
	uint64_t	read_fixed;	/* atomic */
};

/* raid.c, for raid_rebuild.c */
int raid_persist(struct raid *r);
int raid_persist_locked(struct raid *r);	/* under sb_lock */
int raid_persist_quiet_locked(struct raid *r);	/* the same, logged at debug level */
void raid_mark_dirty(struct raid *r);
/* raid_rebuild.c, for raid.c */
int raid_jobs_init(struct raid *r);		/* starts the job thread */
void raid_jobs_fini(struct raid *r);		/* joins it */
void raid_jobs_kick(struct raid *r);		/* a member failed: look for work */
int raid_walk_rows(struct raid *r, uint32_t flag, uint64_t from, bool job);
/* At assembly of a set not shut down cleanly, after the resync: the rows
 * of a slot being rebuilt below its cursor that writes in flight at the
 * crash may have torn, rebuilt again; then its cursor is trusted. */
int raid_rebuild_recover(struct raid *r);

static inline bool raid_alive(struct raid *r, uint32_t m)
{
	return __atomic_load_n(&r->state[m], __ATOMIC_ACQUIRE) == RAID_MEMBER_ACTIVE;
}

/* Written by writes: live, or being rebuilt. */
static inline bool raid_writable(struct raid *r, uint32_t m)
{
	int st = __atomic_load_n(&r->state[m], __ATOMIC_ACQUIRE);

	return st == RAID_MEMBER_ACTIVE || st == RAID_MEMBER_REBUILDING;
}

static inline bool raid_rebuilding(struct raid *r, uint32_t m)
{
	return __atomic_load_n(&r->state[m], __ATOMIC_ACQUIRE) == RAID_MEMBER_REBUILDING;
}

/* Readable for this I/O: live, and no read error in it (rio->bad): the
 * I/O reconstructs those blocks instead and writes them back. */
static inline bool rio_readable(struct raid_io *rio, uint32_t m)
{
	return raid_alive(rio->r, m) && !(rio->bad & (1u << m));
}

/* Can the set still serve every block? */
bool raid_set_alive(struct raid *r);

/* Member bios. */
void batch_begin(struct raid_io *rio, raid_io_fn next);
void batch_end(struct raid_io *rio);
/* One member bio of moff/len on member m, from buf or (NULL) the parent's
 * iovec. Backpressure (-EAGAIN, -ENOMEM from the member) is retried; any
 * other refusal sets rio->status; a failure marks the member failed. */
void member_bio(struct raid_io *rio, uint32_t m, enum bio_op op, uint64_t moff,
		uint64_t len, void *buf);

/* The same into bytes [skip, skip + len) of the parent's iovec: at most
 * BIO_INLINE_IOVS pieces. */
/* The same at an absolute member offset (outside the data area), with
 * these bio flags (not the parent's). */
void member_bio_at(struct raid_io *rio, uint32_t m, enum bio_op op, uint32_t flags,
		   uint64_t off, uint64_t len, void *buf);

/* The same from v (nv pieces, malloc'ed): the member bio owns v from
 * now on (freed with it, or at once when it cannot be sent). */
void member_bio_vec(struct raid_io *rio, uint32_t m, enum bio_op op, uint64_t moff,
		    uint64_t len, struct iovec *v, int nv);

void member_bio_slice(struct raid_io *rio, uint32_t m, enum bio_op op, uint64_t moff,
		      uint64_t len, size_t skip);

/* A write of rio's to member device bd, sent by other means (raid_ppl.c
 * groups several writes' log entries in one bio), failed: as member_bio's
 * would. The device, not the slot, names the member: a spare may have taken
 * the slot while the bio was in flight, and the spare did not fail. */
void raid_member_io_error(struct raid_io *rio, struct blkdev *bd, int status);

/* Take the lock of rio->stripe, then run fn (now, or when handed over). */
void stripe_lock(struct raid_io *rio, raid_io_fn fn);
/* Release it before the bio ends (rio_finish releases it anyway). */
void stripe_unlock(struct raid_io *rio);

/* rio->mem of len bytes, 4 KiB aligned, from the channel's cache (two
 * sizes). Freed by rio_finish. */
int rio_alloc_mem(struct raid_io *rio, size_t len);

/* End the bio (releases the stripe lock and rio->mem). */
void rio_finish(struct raid_io *rio, int status);

/* FLUSH to every live member; for every level. */
void raid_submit_flush(struct raid_io *rio);

#endif
