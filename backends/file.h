/* SPDX-License-Identifier: MIT */
/*
 * What the three file backends (uring, aio, psync) share, private to
 * backends/: the open file, the per-channel bounce-buffer pool for iovecs
 * that O_DIRECT cannot take as they are, and a small worker pool for the
 * operations that have no asynchronous form (psync: all of them; aio:
 * flush, discard, zeroes; uring: block-device discard and fallbacks).
 *
 * A worker never completes a bio: it puts the finished file_io on its
 * channel's done list and kicks the channel's eventfd; the channel's loop
 * drains the list and ends the bios there.
 */
#ifndef SAND_BACKENDS_FILE_H
#define SAND_BACKENDS_FILE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include "sand/blkdev.h"
#include "sand/ev.h"

struct file_dev;
struct file_chan;
struct file_io;

/* The device's worker threads. */
struct file_wq {
	pthread_mutex_t	lock;
	pthread_cond_t	cond;
	struct list_head queue;		/* file_io, through bio->link */
	pthread_t	*threads;
	unsigned	nthreads;
	bool		stop;
};

struct file_dev {
	struct blkdev	bd;
	int		fd;
	bool		is_blkdev;
	uint32_t	mem_align;	/* O_DIRECT memory alignment */
	uint32_t	off_align;	/* O_DIRECT offset/length alignment */
	enum blk_file_backend backend;
	struct file_wq	wq;
	void		*zeroes;	/* ZERO_BUF read-only zero bytes, for zero-writing fallbacks */
	int		no_punch;	/* atomic: FALLOC_FL_PUNCH_HOLE unsupported */
	int		no_zero_range;	/* atomic: FALLOC_FL_ZERO_RANGE unsupported */
	void		*map;		/* atomic: the shared mapping of a regular file for
					 * map_read and (tmpfs, ramfs) file_map_write, made on
					 * first use (MAP_FAILED: none) */
	bool		is_reg;
	/* a regular file on tmpfs or ramfs: the page cache is the storage, so
	 * mapped reads are exact even with O_DIRECT (file_map_read), and the
	 * uring backend does small I/O and flushes inline (uring.c) */
	bool		mem_fs;
	bool		writable;	/* opened O_RDWR */
	bool		no_map_write;	/* atomic: a copy into the mapping faulted; pwritev2 from then on */
};

#define BOUNCE_MIN_SHIFT	12	/* 4 KiB */
#define BOUNCE_MAX_SHIFT	24	/* 16 MiB; larger bounces are not cached */
#define BOUNCE_CACHE_MAX	(16u << 20)	/* cached bytes per channel */

struct bounce_pool {
	void		*free[BOUNCE_MAX_SHIFT + 1];	/* chained through the buffers' first word */
	size_t		cached;
	uint32_t	align;
};

/* Common head of every file backend's channel (ch->priv). */
struct file_chan {
	struct file_dev	*fd;
	struct blkchan	*ch;
	struct ev_loop	*loop;
	struct bounce_pool bounce;

	/* worker completions */
	pthread_mutex_t	lock;
	struct list_head done;		/* file_io, through bio->link */
	int		efd;
	struct ev_io	efd_io;
	/* called from the eventfd handler before the done list (aio's events) */
	void		(*poll_extra)(struct file_chan *fc);

	unsigned	busy;		/* inside a handler that may end bios */
	bool		dead;		/* destroyed while busy: the handler frees */
	void		(*free_fn)(struct file_chan *fc);
};

typedef int (*file_work_fn)(struct file_io *io);
typedef void (*file_done_fn)(struct file_io *io, int res);

/* Common head of every file backend's bio context. */
struct file_io {
	struct bio	*bio;
	struct file_chan *fc;
	file_work_fn	work;		/* on a worker */
	file_done_fn	done;		/* back on the loop */
	int		res;
	/* the memory the I/O uses: the bio's iovec or the bounce buffer */
	const struct iovec *iov;
	int		iovcnt;
	struct iovec	bounce_iov;
	void		*bounce;
	size_t		bounce_cap;
};

static inline struct file_dev *to_file(struct blkdev *bd)
{
	return container_of(bd, struct file_dev, bd);
}

/* Move the cursor (piece idx, bytes skip into it) n bytes on, past empty pieces. */
static inline void iov_advance(const struct iovec *iov, int cnt, int *idx, size_t *skip, size_t n)
{
	while (*idx < cnt) {
		size_t in = MIN(n, iov[*idx].iov_len - *skip);

		n -= in;
		*skip += in;
		if (*skip < iov[*idx].iov_len)
			break;
		(*idx)++;
		*skip = 0;
	}
}

/* ---- file.c ---- */
bool file_supports(struct blkdev *bd, enum bio_op op);
/* ops->map_read of the file backends: buffered regular files only. */
int file_map_read(struct blkdev *bd, uint64_t offset, uint64_t len, struct blk_map *m);
int file_map_write(struct file_dev *f, const struct file_io *io);
void file_dev_close(struct file_dev *f);

/* Channel head: the eventfd for worker completions on ch->loop. */
int file_chan_init(struct file_chan *fc, struct file_dev *f, struct blkchan *ch,
		   void (*free_fn)(struct file_chan *fc));
/* Stop the eventfd and release everything; frees (free_fn) now or, when
 * called from inside a handler of this channel, when the handler returns. */
void file_chan_destroy(struct file_chan *fc);
void file_chan_enter(struct file_chan *fc);
void file_chan_leave(struct file_chan *fc);	/* may free fc */

/* Point io->iov at memory O_DIRECT accepts (bouncing if needed; writes are
 * copied in). -ENOMEM when no bounce buffer could be had. */
int file_io_prep(struct file_chan *fc, struct bio *bio, struct file_io *io);
/* Copy bounced reads out, give the bounce back, end the bio. */
void file_io_finish(struct file_io *io, int status);

/* Run io->work on a worker; io->done(io, res) runs later on the loop. */
void file_wq_queue(struct file_dev *f, struct file_io *io);

/* Blocking operations, for workers. */
int file_sync_rw(struct file_dev *f, struct file_io *io);
int file_sync_flush(struct file_dev *f);
int file_sync_zero(struct file_dev *f, enum bio_op op, uint32_t flags,
		   uint64_t off, uint64_t len);
/* The worker function that does the whole bio with the calls above. */
int file_work_bio(struct file_io *io);

/* fallocate mode for DISCARD/WRITE_ZEROES on this device, or -1 when the
 * operation must go another way (block-device discard, no punch support). */
int file_falloc_mode(struct file_dev *f, enum bio_op op, uint32_t flags);
/* The file system refused that mode: do not ask for it again (files only). */
void file_falloc_refused(struct file_dev *f, int mode);

/* Backend constructors: fill in ops and per-backend state. */
int uring_dev_init(struct file_dev *f, const struct blk_file_opts *o);
int aio_dev_init(struct file_dev *f, const struct blk_file_opts *o);
int psync_dev_init(struct file_dev *f, const struct blk_file_opts *o);
int file_wq_start(struct file_dev *f, unsigned nthreads);

#endif
