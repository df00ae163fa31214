/* SPDX-License-Identifier: MIT */
/*
 * The block device: the one interface every layer of sand has.
 *
 * Backends (io_uring, libaio, psync, memory, null) are leaves; the fault
 * filter, RAID sets and thin volumes are block devices stacked on others;
 * exports only ever talk to block devices. A device is used through
 * channels: one per reactor loop that does I/O to it, so the fast path takes
 * no lock. A bio is allocated from the channel, filled in, submitted, and
 * ends exactly once through its end callback on the channel's loop.
 *
 * Contract of blk_submit() and of every driver's ops->submit():
 *  - 0: accepted. bio->end runs exactly once, later, from the channel's
 *    loop; never from inside the submit call (drivers that finish at once
 *    defer with ev_defer()).
 *  - -errno: refused; bio->end will never run and the caller still owns the
 *    bio. -EAGAIN and -ENOMEM are backpressure: keep the bio and submit it
 *    again after some in-flight I/O of this channel has ended.
 *  - status passed to bio->end is 0 or -errno (-EIO, -ENOSPC, -ECANCELED
 *    when the device was torn down under it, ...).
 *
 * blk_submit() checks everything once at the edge (alignment to block_size,
 * range, iovec total, op supported, read-only) and splits bios that cross
 * io_boundary or exceed max_io, so drivers only assert.
 *
 * Offsets and lengths are in bytes and multiples of block_size. FLUSH has
 * offset 0 and len 0. READ/WRITE carry an iovec whose total is len; the
 * iovec's memory may have any alignment (drivers that need aligned memory
 * for O_DIRECT bounce through their own buffers).
 */
#ifndef SAND_BLKDEV_H
#define SAND_BLKDEV_H

#include <errno.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/uio.h>
#include "sand/common.h"
#include "sand/ev.h"

struct ev_loop;
struct blkdev;
struct blkchan;
struct bio;
struct blk_status;
struct blk_map;

enum bio_op {
	BIO_READ = 0,
	BIO_WRITE,
	BIO_FLUSH,		/* make every completed write durable */
	BIO_DISCARD,		/* contents become undefined (zeros on our thin/file devices) */
	BIO_WRITE_ZEROES,	/* contents become zeros; may deallocate unless BIO_NOUNMAP */
	BIO_OP_MAX,
};

#define BIO_FUA		(1u << 0)	/* WRITE/WRITE_ZEROES: durable when it ends */
#define BIO_NOUNMAP	(1u << 1)	/* WRITE_ZEROES: keep the blocks allocated */

typedef void (*bio_end_fn)(struct bio *bio, int status);

#define BIO_INLINE_IOVS	4

struct bio {
	enum bio_op	op;
	uint32_t	flags;
	uint64_t	offset;		/* bytes */
	uint64_t	len;		/* bytes */
	struct iovec	*iov;
	int		iovcnt;
	bio_end_fn	end;
	void		*end_arg;

	/* set by the core */
	struct blkchan	*ch;
	struct bio	*parent;	/* when split */
	uint32_t	pending;	/* children not yet ended (parent only) */
	int		status;		/* first error among children */
	uint64_t	split_done;	/* bytes handed out as children (parent only) */
	struct list_head link;		/* free list; drivers may use it while they own the bio;
					 * the core, for a split parent waiting to go on */
	struct ev_task	task;		/* drivers may use it to complete later (ev_defer) */
	bool		autofree;	/* blk_rw: freed after end returns */
	struct iovec	iov_inline[BIO_INLINE_IOVS];
	struct iovec	*iov_alloc;	/* a split child's iovec when it did not fit inline */

	/* bd->ops->bio_ctx_size bytes for the driver */
	unsigned char	ctx[] __attribute__((aligned(16)));
};

struct blkdev_ops {
	const char	*name;		/* backend name: "uring", "aio", "psync", "mem", ... */
	size_t		bio_ctx_size;
	/* Release the device. Every channel has been closed. */
	void	(*close)(struct blkdev *bd);
	bool	(*supports)(struct blkdev *bd, enum bio_op op);
	/* Per-loop state in ch->priv. May fail, e.g. -ENOTSUP for the
	 * io_uring backend on an epoll loop. */
	int	(*chan_create)(struct blkdev *bd, struct blkchan *ch);
	/* Called once the channel has no I/O in flight. */
	void	(*chan_destroy)(struct blkdev *bd, struct blkchan *ch);
	/* See the contract above; finish with bio_complete(). */
	int	(*submit)(struct blkdev *bd, struct blkchan *ch, struct bio *bio);
	/* Optional (see blk_block_status): the same contract as submit,
	 * finish with blk_status_complete(). NULL: all allocated data. */
	int	(*block_status)(struct blkdev *bd, struct blkchan *ch, struct blk_status *st);
	/* Optional: 0 if base names something BLK_STATUS_CHANGED can compare
	 * with, else -ENOENT (-EOPNOTSUPP when NULL). Any thread; no I/O. */
	int	(*status_base)(struct blkdev *bd, const char *base);
	/* Optional: fn(arg, base) for each base status_base accepts now, in
	 * no particular order. Any thread; no I/O; fn must not call back. */
	void	(*status_bases)(struct blkdev *bd, void (*fn)(void *arg, const char *base),
				void *arg);
	/* Optional: see blk_map_read. Any thread; no I/O; never blocks. */
	int	(*map_read)(struct blkdev *bd, uint64_t offset, uint64_t len, struct blk_map *m);
};

#define BLK_NAME_MAX	64
#define BLK_MAX_CLAIMS	8

struct blkdev {
	const struct blkdev_ops	*ops;
	char		name[BLK_NAME_MAX];
	char		path[256];	/* backing file or device, if any */
	uint64_t	size;		/* bytes, a multiple of block_size */
	uint32_t	block_size;	/* 512 or 4096 (any power of two >= 512) */
	uint32_t	io_boundary;	/* bytes; bios never cross it (0: none) */
	uint32_t	max_io;		/* bytes; longer bios are split (0: none) */
	uint32_t	phys_block;	/* bytes, a power of two multiple of block_size,
					 * written without read-modify-write (0: block_size) */
	bool		readonly;
	bool		direct;		/* O_DIRECT in use (file backends) */

	/* core-private */
	struct list_head reg_link;	/* registry */
	bool		registered;
	unsigned	nchans;
	char		claim[256];	/* who uses it ("a,b"), "" if nobody */
	char		owners[BLK_MAX_CLAIMS][BLK_NAME_MAX];
	unsigned	nowners;
	bool		exclusive;	/* owners[0] has it alone */
};

/* Fill the core fields of a new device; drivers call it before anything else. */
void blkdev_init(struct blkdev *bd, const struct blkdev_ops *ops, const char *name);

/* Close a device: -EBUSY while channels are open or it is claimed. */
int blkdev_close(struct blkdev *bd);

static inline bool blkdev_supports(struct blkdev *bd, enum bio_op op)
{
	return bd->ops->supports ? bd->ops->supports(bd, op) : op <= BIO_FLUSH;
}

/* ---- registry: the devices the daemon has open, by name (thread-safe) ---- */
int blkdev_register(struct blkdev *bd);		/* -EEXIST if the name is taken */
void blkdev_unregister(struct blkdev *bd);
struct blkdev *blkdev_find(const char *name);
/* Calls fn for each registered device, under the registry lock. */
void blkdev_foreach(void (*fn)(struct blkdev *bd, void *arg), void *arg);
/*
 * Claims say who uses a device. An exclusive claim (a pool or RAID set
 * taking a member) excludes every other claim; shared claims (exports: the
 * same volume over NBD and iSCSI, through several targets) coexist with
 * each other, up to BLK_MAX_CLAIMS. Claiming again under the same owner
 * name is a no-op. -EBUSY when the claim conflicts. blkdev_release drops
 * the owner's claim of either kind.
 */
int blkdev_claim(struct blkdev *bd, const char *owner);
int blkdev_claim_shared(struct blkdev *bd, const char *owner);
void blkdev_release(struct blkdev *bd, const char *owner);
/* The owners as "a,b" into buf ("" if none), under the registry lock. */
void blkdev_claims(struct blkdev *bd, char *buf, size_t len);

/* ---- channels ---- */
struct blkchan {
	struct blkdev	*bd;
	struct ev_loop	*loop;
	void		*priv;		/* the driver's */

	/* core-private */
	unsigned	inflight;	/* bios submitted and not ended */
	bool		closing;
	struct list_head free_bios;
	struct list_head split_wait;	/* split parents held up by backpressure */
	struct ev_task	split_task;	/* retries them when nothing else would */
	unsigned	nbios;		/* allocated, free or not */
	unsigned	max_bios;
	size_t		bio_size;
	void		(*closed_fn)(void *arg);
	void		*closed_arg;
};

/* Open a channel for I/O from loop's thread. */
int blk_chan_open(struct blkdev *bd, struct ev_loop *loop, struct blkchan **out);
/*
 * Close a channel. New submissions are refused with -ESHUTDOWN; I/O in
 * flight ends normally. Once the last in-flight bio has ended, the driver's
 * chan_destroy runs, the channel is freed and closed_fn(arg) (if not NULL)
 * is called, all on the channel's loop, possibly before this returns.
 */
void blk_chan_close(struct blkchan *ch, void (*closed_fn)(void *arg), void *arg);

/* ---- bios ---- */
/* From the channel's pool; NULL when max_bios are in use (backpressure). */
struct bio *bio_alloc(struct blkchan *ch);
void bio_free(struct bio *bio);
static inline void *bio_ctx(struct bio *bio) { return bio->ctx; }

/* Check, split if needed, and hand to the driver. See the contract above. */
int blk_submit(struct blkchan *ch, struct bio *bio);

/* Drivers call this exactly once per accepted bio, from the channel's loop,
 * never from inside their submit. */
void bio_complete(struct bio *bio, int status);

/* Convenience: fill and submit a bio from the channel. Returns as
 * blk_submit (and -ENOMEM when the pool is exhausted); on error no callback
 * runs and nothing is leaked. The bio is freed after cb returns. Up to
 * BIO_INLINE_IOVS iovec entries are copied into the bio; a longer iovec
 * array is used in place and must stay alive until cb runs. */
int blk_rw(struct blkchan *ch, enum bio_op op, uint32_t flags,
	   const struct iovec *iov, int iovcnt, uint64_t offset, uint64_t len,
	   bio_end_fn cb, void *arg);

/*
 * Block status: what [offset, offset+len) of a device is made of, as a run
 * of extents in order, from offset on. Asynchronous like a bio: 0 and
 * st->end runs once, later, on the channel's loop; or -errno and it never
 * runs (-EAGAIN/-ENOMEM: backpressure, try again later).
 *  - BLK_STATUS_ALLOC: BLK_EXT_HOLE for ranges not allocated, BLK_EXT_ZERO
 *    for ranges known to read as zeros. A device without ops->block_status
 *    reports the whole range as allocated data (flags 0).
 *  - BLK_STATUS_CHANGED: BLK_EXT_CHANGED where the device may differ from
 *    st->base (for a thin volume VOL, or a snapshot VOL@x of it: the
 *    snapshot VOL@base), 0 where it is the same. -EOPNOTSUPP for devices that cannot tell, -ENOENT for an
 *    unknown base.
 * On success st->next >= 1 extents, adjacent ones with different flags,
 * together covering at most len bytes (a device may stop early, e.g. at
 * max_ext; the caller asks again for the rest). offset and len are
 * multiples of block_size; extents lengths too, unless they end at the end
 * of the range.
 */
#define BLK_EXT_HOLE	(1u << 0)	/* not allocated */
#define BLK_EXT_ZERO	(1u << 1)	/* reads as zeros */
#define BLK_EXT_CHANGED	(1u << 2)	/* differs from the base */

enum blk_status_mode {
	BLK_STATUS_ALLOC = 0,
	BLK_STATUS_CHANGED,
};

struct blk_extent {
	uint64_t	len;
	uint32_t	flags;
};

struct blk_status {
	/* the caller's */
	enum blk_status_mode mode;
	const char	*base;		/* BLK_STATUS_CHANGED: the snapshot's name */
	uint64_t	offset, len;
	struct blk_extent *ext;		/* room for max_ext (>= 1) */
	unsigned	max_ext;
	void		(*end)(struct blk_status *st, int status);
	void		*end_arg;
	/* the driver's answer */
	unsigned	next;		/* extents filled in */
	/* the core's */
	struct blkchan	*ch;
	int		status;
	struct ev_task	task;		/* drivers may use it to complete later */
};

int blk_block_status(struct blkchan *ch, struct blk_status *st);
/* Drivers call this once per accepted query, on the channel's loop, never
 * from inside their block_status. */
void blk_status_complete(struct blk_status *st, int status);
/* Append an extent to st (merging with the last one if the flags match);
 * false once st->ext is full. For drivers. */
bool blk_status_add(struct blk_status *st, uint64_t len, uint32_t flags);
/* See ops->status_base and ops->status_bases (-EOPNOTSUPP without them). */
int blkdev_status_base(struct blkdev *bd, const char *base);
int blkdev_status_bases(struct blkdev *bd, void (*fn)(void *arg, const char *base), void *arg);
/* Synchronous blk_block_status, for the control plane and tests (not from a
 * reactor thread). */
int blk_sync_block_status(struct blkdev *bd, struct blk_status *st);

/*
 * Mapped reads: the one-copy read path of exports (optional ops->map_read).
 *
 * blk_map_read(bd, offset, len, &m) resolves the first m.len bytes
 * (0 < m.len <= len) of a read of [offset, offset+len) to m.addr, a
 * read-only shared mapping of a buffered backing file, i.e. its page cache.
 * The caller asks again for the rest (a thin volume stops at each chunk).
 * An export gives the range to sendmsg(): the kernel copies it into the
 * socket once, where a bio read then a send copy it twice. Rules:
 *  - Userspace never touches the bytes (no memcpy, checksum, digest, TLS):
 *    a page past EOF (the file truncated) or with an I/O error raises
 *    SIGBUS there. In the kernel (sendmsg) the same fault is an -EFAULT,
 *    which the caller makes a read error.
 *  - Only sendmsg() and friends that copy before they return. Never
 *    splice, sendfile, vmsplice or MSG_ZEROCOPY: they keep page references
 *    after the call returns and blk_map_put, when the chunk may already
 *    hold another volume's data.
 *  - m pins what it resolved (a thin volume's chunk mapping, as an I/O in
 *    flight does: the pool waits before it remaps, frees or reuses the
 *    chunk) until blk_map_put(&m). Hold it only until the send returned,
 *    never across loop turns (a slow client must not hold up the pool):
 *    bytes not taken are resolved again, or read with a bio.
 *  - The bytes are what a READ would return then; a write racing the read
 *    may show in it, as with a buffered backing file's own reads.
 * -EAGAIN (not here: an O_DIRECT or non-regular file, a RAID layout, a thin
 * chunk unmapped or not in the fast path's cache, a failed pool) and
 * -EOPNOTSUPP (no map_read): read with a bio instead. Any thread; no I/O;
 * never blocks for long.
 */
#define BLK_MAP_PINS	4

struct blk_map {
	const void	*addr;		/* m.len bytes, for the kernel only */
	uint64_t	len;
	/* drivers': undone by blk_map_put, last pushed first */
	unsigned	npins;
	struct {
		void	(*put)(void *a, void *b);
		void	*a, *b;
	} pin[BLK_MAP_PINS];
};

/* A stacked driver resolves through the device below with this: m keeps
 * the pins already taken; on failure the lower one has added none. */
static inline int blk_map_lower(struct blkdev *bd, uint64_t offset, uint64_t len,
				struct blk_map *m)
{
	if (!bd->ops->map_read)
		return -EOPNOTSUPP;
	if (!len || offset > bd->size || len > bd->size - offset)
		return -EINVAL;
	return bd->ops->map_read(bd, offset, len, m);
}

static inline int blk_map_read(struct blkdev *bd, uint64_t offset, uint64_t len,
			       struct blk_map *m)
{
	m->addr = NULL;
	m->len = 0;
	m->npins = 0;
	return blk_map_lower(bd, offset, len, m);
}

/* A driver's pin, undone by blk_map_put: false when there is no room. */
static inline bool blk_map_pin(struct blk_map *m, void (*put)(void *a, void *b),
			       void *a, void *b)
{
	if (m->npins == BLK_MAP_PINS)
		return false;
	m->pin[m->npins].put = put;
	m->pin[m->npins].a = a;
	m->pin[m->npins].b = b;
	m->npins++;
	return true;
}

static inline void blk_map_put(struct blk_map *m)
{
	while (m->npins) {
		m->npins--;
		m->pin[m->npins].put(m->pin[m->npins].a, m->pin[m->npins].b);
	}
	m->addr = NULL;
	m->len = 0;
}

/* Copy iovec contents. */
size_t iov_total(const struct iovec *iov, int iovcnt);
void iov_to_buf(const struct iovec *iov, int iovcnt, size_t skip, void *buf, size_t len);
void buf_to_iov(const struct iovec *iov, int iovcnt, size_t skip, const void *buf, size_t len);
void iov_memset(const struct iovec *iov, int iovcnt, size_t skip, int c, size_t len);

/*
 * Synchronous I/O for the control plane, start-up and tests: an async call
 * plus a private loop (libiscsi's sync.c pattern). Must not be called from a
 * reactor thread. buf may be NULL for FLUSH/DISCARD/WRITE_ZEROES.
 */
int blk_sync_io(struct blkdev *bd, enum bio_op op, uint32_t flags,
		uint64_t offset, void *buf, uint64_t len);

/* ---- leaf backends ---- */

/* Memory: a zero-filled buffer, allocated lazily in 64 KiB pages, so large
 * sparse devices are cheap. For tests. */
int blk_mem_create(const char *name, uint64_t size, uint32_t block_size,
		   struct blkdev **out);
/* Null: reads return zeros, writes are dropped. For benchmarks. */
int blk_null_create(const char *name, uint64_t size, uint32_t block_size,
		    struct blkdev **out);

enum blk_file_backend {
	BLK_FILE_AUTO = 0,	/* uring if the kernel has it, else aio */
	BLK_FILE_URING,
	BLK_FILE_AIO,
	BLK_FILE_PSYNC,
};

struct blk_file_opts {
	enum blk_file_backend	backend;
	uint32_t		block_size;	/* 0: the device's logical block size, or 512 */
	bool			readonly;
	bool			no_direct;	/* never O_DIRECT */
	uint64_t		create_size;	/* >0: create a sparse file of this size if missing */
	unsigned		psync_threads;	/* 0: default (4) */
};

/* Open a file or block device with the chosen backend. */
int blk_file_open(const char *name, const char *path, const struct blk_file_opts *o,
		  struct blkdev **out);
const char *blk_file_backend_name(enum blk_file_backend b);
int blk_file_backend_parse(const char *s, enum blk_file_backend *out);

#endif
