/* SPDX-License-Identifier: MIT */
/*
 * File and block-device backends: opening, and what uring, aio and psync
 * share.
 *
 * blk_file_open() opens the file (creating a sparse one if asked), finds
 * its size and logical block size, and tries O_DIRECT. O_DIRECT needs the
 * memory of every iovec piece aligned to the device's DMA alignment and the
 * length of every piece a multiple of its logical block size; STATX_DIOALIGN
 * tells both where the kernel knows them. Whatever the caller's iovec looks
 * like (any alignment is allowed by blkdev.h), I/O that O_DIRECT would
 * refuse goes through a bounce buffer from the channel's pool, sized in
 * powers of two and kept for reuse, so that after warm-up no I/O allocates.
 * When the file system refuses O_DIRECT altogether (tmpfs on old kernels),
 * or the block size asked for is finer than the device's, I/O is buffered.
 *
 * Discard and write-zeroes are fallocate calls (punch hole, zero range);
 * block-device discard is BLKDISCARD. When the file system cannot punch
 * holes, zeroes are written instead, so both still read back as zeros.
 *
 * The worker pool runs blocking calls for a device; a finished file_io
 * goes back to its channel's done list and the loop ends the bio.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/uio.h>
#include <unistd.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/log.h"
#include "backends/file.h"

#define ZERO_BUF	(1u << 20)
#define WQ_MAX_THREADS	64

/* ---------------------------------------------------------------- names */

const char *blk_file_backend_name(enum blk_file_backend b)
{
	switch (b) {
	case BLK_FILE_URING: return "uring";
	case BLK_FILE_AIO: return "aio";
	case BLK_FILE_PSYNC: return "psync";
	default: return "auto";
	}
}

int blk_file_backend_parse(const char *s, enum blk_file_backend *out)
{
	static const struct { const char *name; enum blk_file_backend b; } names[] = {
		{ "auto", BLK_FILE_AUTO }, { "uring", BLK_FILE_URING },
		{ "io_uring", BLK_FILE_URING }, { "aio", BLK_FILE_AIO },
		{ "libaio", BLK_FILE_AIO }, { "psync", BLK_FILE_PSYNC },
	};

	for (size_t i = 0; s && i < ARRAY_SIZE(names); i++) {
		if (!strcmp(s, names[i].name)) {
			*out = names[i].b;
			return 0;
		}
	}
	return -EINVAL;
}

/* ---------------------------------------------------------------- bounce */

static unsigned bounce_shift(size_t len)
{
	unsigned s = BOUNCE_MIN_SHIFT;

	while (s < 63 && ((size_t)1 << s) < len)
		s++;
	return s;
}

static void *bounce_get(struct bounce_pool *bp, size_t len, size_t *cap)
{
	unsigned s = bounce_shift(len);
	size_t size;
	void *buf;

	if (s <= BOUNCE_MAX_SHIFT && bp->free[s]) {
		buf = bp->free[s];
		bp->free[s] = *(void **)buf;
		bp->cached -= (size_t)1 << s;
		*cap = (size_t)1 << s;
		return buf;
	}
	size = s <= BOUNCE_MAX_SHIFT ? (size_t)1 << s : (len + bp->align - 1) / bp->align * bp->align;
	if (posix_memalign(&buf, bp->align, size))
		return NULL;
	*cap = size;
	return buf;
}

static void bounce_put(struct bounce_pool *bp, void *buf, size_t cap)
{
	unsigned s = bounce_shift(cap);

	if (s <= BOUNCE_MAX_SHIFT && ((size_t)1 << s) == cap &&
	    bp->cached + cap <= BOUNCE_CACHE_MAX) {
		*(void **)buf = bp->free[s];
		bp->free[s] = buf;
		bp->cached += cap;
	} else {
		free(buf);
	}
}

static void bounce_drain(struct bounce_pool *bp)
{
	for (unsigned s = 0; s <= BOUNCE_MAX_SHIFT; s++) {
		while (bp->free[s]) {
			void *buf = bp->free[s];

			bp->free[s] = *(void **)buf;
			free(buf);
		}
	}
	bp->cached = 0;
}

static bool iov_needs_bounce(const struct file_dev *f, const struct iovec *iov, int iovcnt)
{
	if (iovcnt > IOV_MAX)
		return true;
	if (!f->bd.direct)
		return false;
	for (int i = 0; i < iovcnt; i++)
		if ((uintptr_t)iov[i].iov_base % f->mem_align || iov[i].iov_len % f->off_align)
			return true;
	return false;
}

int file_io_prep(struct file_chan *fc, struct bio *bio, struct file_io *io)
{
	io->bio = bio;
	io->fc = fc;
	io->bounce = NULL;
	io->iov = NULL;
	io->iovcnt = 0;
	if (bio->op != BIO_READ && bio->op != BIO_WRITE)
		return 0;
	if (!iov_needs_bounce(fc->fd, bio->iov, bio->iovcnt)) {
		io->iov = bio->iov;
		io->iovcnt = bio->iovcnt;
		return 0;
	}
	io->bounce = bounce_get(&fc->bounce, bio->len, &io->bounce_cap);
	if (!io->bounce)
		return -ENOMEM;
	if (bio->op == BIO_WRITE)
		iov_to_buf(bio->iov, bio->iovcnt, 0, io->bounce, bio->len);
	io->bounce_iov.iov_base = io->bounce;
	io->bounce_iov.iov_len = bio->len;
	io->iov = &io->bounce_iov;
	io->iovcnt = 1;
	return 0;
}

void file_io_finish(struct file_io *io, int status)
{
	struct bio *bio = io->bio;

	if (io->bounce) {
		if (!status && bio->op == BIO_READ)
			buf_to_iov(bio->iov, bio->iovcnt, 0, io->bounce, bio->len);
		bounce_put(&io->fc->bounce, io->bounce, io->bounce_cap);
		io->bounce = NULL;
	}
	if (status)
		LOG_RATELIMIT(LOG_ERROR, LS_BLK, "%s: %s of %llu bytes at %llu: %s",
			      io->fc->fd->bd.name,
			      bio->op == BIO_READ ? "read" : bio->op == BIO_WRITE ? "write" :
			      bio->op == BIO_FLUSH ? "flush" : bio->op == BIO_DISCARD ?
			      "discard" : "write-zeroes",
			      (unsigned long long)bio->len, (unsigned long long)bio->offset,
			      strerror(-status));
	bio_complete(bio, status);
}

/* ---------------------------------------------------------------- channels */

static void list_splice_init(struct list_head *from, struct list_head *to)
{
	if (list_empty(from))
		return;
	to->next = from->next;
	to->prev = from->prev;
	to->next->prev = to;
	to->prev->next = to;
	list_init(from);
}

void file_chan_enter(struct file_chan *fc)
{
	fc->busy++;
}

void file_chan_leave(struct file_chan *fc)
{
	if (--fc->busy == 0 && fc->dead)
		fc->free_fn(fc);
}

static void efd_ready(struct ev_io *eio, uint32_t revents)
{
	struct file_chan *fc = container_of(eio, struct file_chan, efd_io);
	struct list_head local;
	uint64_t v;

	if (read(fc->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: already drained */
	}
	file_chan_enter(fc);
	if (fc->poll_extra)
		fc->poll_extra(fc);
	list_init(&local);
	if (!fc->dead) {
		pthread_mutex_lock(&fc->lock);
		list_splice_init(&fc->done, &local);
		pthread_mutex_unlock(&fc->lock);
	}
	while (!list_empty(&local)) {
		struct bio *bio = list_entry(local.next, struct bio, link);
		struct file_io *io = bio_ctx(bio);

		list_del(&bio->link);
		io->done(io, io->res);
	}
	file_chan_leave(fc);
}

int file_chan_init(struct file_chan *fc, struct file_dev *f, struct blkchan *ch,
		   void (*free_fn)(struct file_chan *fc))
{
	int rc;

	fc->fd = f;
	fc->ch = ch;
	fc->loop = ch->loop;
	fc->free_fn = free_fn;
	fc->bounce.align = MAX(f->mem_align, 4096u);
	list_init(&fc->done);
	fc->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fc->efd < 0)
		return -errno;
	pthread_mutex_init(&fc->lock, NULL);
	rc = ev_io_start(ch->loop, &fc->efd_io, fc->efd, EV_READ, efd_ready);
	if (rc) {
		pthread_mutex_destroy(&fc->lock);
		close(fc->efd);
		return rc;
	}
	return 0;
}

void file_chan_destroy(struct file_chan *fc)
{
	ev_io_stop(fc->loop, &fc->efd_io);
	close(fc->efd);
	fc->efd = -1;
	pthread_mutex_destroy(&fc->lock);
	bounce_drain(&fc->bounce);
	if (fc->busy)
		fc->dead = true;
	else
		fc->free_fn(fc);
}

/* ---------------------------------------------------------------- workers */

static void *wq_thread(void *arg)
{
	struct file_wq *wq = arg;

	for (;;) {
		struct file_io *io;
		struct file_chan *fc;
		struct bio *bio;
		uint64_t one = 1;
		bool was_empty;

		pthread_mutex_lock(&wq->lock);
		while (!wq->stop && list_empty(&wq->queue))
			pthread_cond_wait(&wq->cond, &wq->lock);
		if (list_empty(&wq->queue)) {
			pthread_mutex_unlock(&wq->lock);
			break;
		}
		bio = list_entry(wq->queue.next, struct bio, link);
		list_del(&bio->link);
		pthread_mutex_unlock(&wq->lock);

		io = bio_ctx(bio);
		io->res = io->work(io);

		/* Kick under the lock: once it is dropped the loop may end
		 * the last bio and free the channel. */
		fc = io->fc;
		pthread_mutex_lock(&fc->lock);
		was_empty = list_empty(&fc->done);
		list_add_tail(&bio->link, &fc->done);
		if (was_empty && write(fc->efd, &one, sizeof(one)) < 0) {
			/* EAGAIN: counter saturated, a wakeup is pending */
		}
		pthread_mutex_unlock(&fc->lock);
	}
	return NULL;
}

int file_wq_start(struct file_dev *f, unsigned nthreads)
{
	struct file_wq *wq = &f->wq;
	int rc;

	nthreads = MIN(MAX(nthreads, 1u), (unsigned)WQ_MAX_THREADS);
	pthread_mutex_init(&wq->lock, NULL);
	pthread_cond_init(&wq->cond, NULL);
	list_init(&wq->queue);
	wq->threads = calloc(nthreads, sizeof(*wq->threads));
	if (!wq->threads)
		return -ENOMEM;
	for (unsigned i = 0; i < nthreads; i++) {
		rc = pthread_create(&wq->threads[i], NULL, wq_thread, wq);
		if (rc) {
			LOG_ERR(LS_BLK, "%s: cannot start worker thread: %s", f->bd.name, strerror(rc));
			return -rc;
		}
		wq->nthreads++;
	}
	return 0;
}

static void file_wq_stop(struct file_wq *wq)
{
	if (!wq->threads)
		return;
	pthread_mutex_lock(&wq->lock);
	wq->stop = true;
	pthread_cond_broadcast(&wq->cond);
	pthread_mutex_unlock(&wq->lock);
	for (unsigned i = 0; i < wq->nthreads; i++)
		pthread_join(wq->threads[i], NULL);
	free(wq->threads);
	wq->threads = NULL;
	pthread_cond_destroy(&wq->cond);
	pthread_mutex_destroy(&wq->lock);
}

void file_wq_queue(struct file_dev *f, struct file_io *io)
{
	struct file_wq *wq = &f->wq;

	pthread_mutex_lock(&wq->lock);
	list_add_tail(&io->bio->link, &wq->queue);
	pthread_cond_signal(&wq->cond);
	pthread_mutex_unlock(&wq->lock);
}

/* ---------------------------------------------------------------- blocking I/O */

int file_sync_rw(struct file_dev *f, struct file_io *io)
{
	struct bio *bio = io->bio;
	bool wr = bio->op == BIO_WRITE;
	int flags = wr && (bio->flags & BIO_FUA) ? RWF_DSYNC : 0;
	const struct iovec *iov = io->iov;
	int idx = 0, cnt = io->iovcnt;
	size_t skip = 0;
	uint64_t done = 0;

	while (done < bio->len) {
		off_t off = (off_t)(bio->offset + done);
		ssize_t n;

		if (skip) {	/* resume inside a piece after a short transfer */
			struct iovec part = {
				.iov_base = (uint8_t *)iov[idx].iov_base + skip,
				.iov_len = iov[idx].iov_len - skip,
			};

			n = wr ? pwritev2(f->fd, &part, 1, off, flags) :
				 preadv2(f->fd, &part, 1, off, 0);
		} else {
			n = wr ? pwritev2(f->fd, iov + idx, cnt - idx, off, flags) :
				 preadv2(f->fd, iov + idx, cnt - idx, off, 0);
		}
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;	/* end of file inside the device */
		done += (uint64_t)n;
		iov_advance(iov, cnt, &idx, &skip, (size_t)n);
	}
	return 0;
}

int file_sync_flush(struct file_dev *f)
{
	while (fdatasync(f->fd) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/* Punching holes and zeroing ranges are told apart: tmpfs does the first
 * and refuses the second, and discards must go on punching there. */
int file_falloc_mode(struct file_dev *f, enum bio_op op, uint32_t flags)
{
	if (op == BIO_DISCARD && f->is_blkdev)
		return -1;
	if (op == BIO_WRITE_ZEROES && (flags & BIO_NOUNMAP))
		return __atomic_load_n(&f->no_zero_range, __ATOMIC_RELAXED) ? -1 :
		       FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
	return __atomic_load_n(&f->no_punch, __ATOMIC_RELAXED) ? -1 :
	       FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
}

void file_falloc_refused(struct file_dev *f, int mode)
{
	if (f->is_blkdev)
		return;
	LOG_RATELIMIT(LOG_INFO, LS_BLK, "%s: fallocate mode %#x unsupported, writing zeroes",
		      f->bd.name, mode);
	if (mode & FALLOC_FL_ZERO_RANGE)
		__atomic_store_n(&f->no_zero_range, 1, __ATOMIC_RELAXED);
	else
		__atomic_store_n(&f->no_punch, 1, __ATOMIC_RELAXED);
}

static int write_zeroes(struct file_dev *f, uint64_t off, uint64_t len)
{
	while (len) {
		size_t n = (size_t)MIN(len, (uint64_t)ZERO_BUF);
		ssize_t w = pwrite(f->fd, f->zeroes, n, (off_t)off);

		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		if (w == 0)
			return -EIO;
		off += (uint64_t)w;
		len -= (uint64_t)w;
	}
	return 0;
}

static bool unsupported(int rc)
{
	return rc == -EOPNOTSUPP || rc == -ENOTTY || rc == -EINVAL;
}

int file_sync_zero(struct file_dev *f, enum bio_op op, uint32_t flags,
		   uint64_t off, uint64_t len)
{
	int mode = file_falloc_mode(f, op, flags);
	int rc = -EOPNOTSUPP;

	if (mode >= 0) {
		rc = fallocate(f->fd, mode, (off_t)off, (off_t)len) ? -errno : 0;
		if (unsupported(rc))
			file_falloc_refused(f, mode);
	} else if (f->is_blkdev && op == BIO_DISCARD) {
		uint64_t range[2] = { off, len };

		rc = ioctl(f->fd, BLKDISCARD, range) ? -errno : 0;
	}
	if (unsupported(rc) && f->is_blkdev) {
		uint64_t range[2] = { off, len };

		rc = ioctl(f->fd, BLKZEROOUT, range) ? -errno : 0;
	}
	if (unsupported(rc))
		rc = write_zeroes(f, off, len);
	if (!rc && (flags & BIO_FUA))
		rc = file_sync_flush(f);
	return rc;
}

int file_work_bio(struct file_io *io)
{
	struct file_dev *f = io->fc->fd;
	struct bio *bio = io->bio;

	switch (bio->op) {
	case BIO_READ:
	case BIO_WRITE:
		return file_sync_rw(f, io);
	case BIO_FLUSH:
		return file_sync_flush(f);
	case BIO_DISCARD:
	case BIO_WRITE_ZEROES:
		return file_sync_zero(f, bio->op, bio->flags, bio->offset, bio->len);
	default:
		return -EOPNOTSUPP;
	}
}

/* ---------------------------------------------------------------- device */

bool file_supports(struct blkdev *bd, enum bio_op op)
{
	return op < BIO_OP_MAX;
}

/*
 * The whole file mapped shared, once, on first use; the mapping lives until
 * the device closes, so a map needs no pin of its own. Writable when the
 * file is on tmpfs or ramfs and open for writing (file_map_write), else
 * read-only. MAP_FAILED when it cannot be made (logged once).
 */
static void *file_mapping(struct file_dev *f)
{
	void *map = __atomic_load_n(&f->map, __ATOMIC_ACQUIRE);

	if (!map) {
		int prot = PROT_READ | (f->mem_fs && f->writable ? PROT_WRITE : 0);
		void *want = NULL;

		map = mmap(NULL, (size_t)f->bd.size, prot, MAP_SHARED, f->fd, 0);
		if (!__atomic_compare_exchange_n(&f->map, &want, map, false, __ATOMIC_ACQ_REL,
						 __ATOMIC_ACQUIRE)) {
			if (map != MAP_FAILED)
				munmap(map, (size_t)f->bd.size);
			map = want;	/* another thread's */
		} else if (map == MAP_FAILED) {
			LOG_INFO(LS_BLK, "%s: cannot map %s: %s; reads and writes go through bios",
				 f->bd.name, f->bd.path, strerror(errno));
		}
	}
	return map;
}

/*
 * Mapped reads (blkdev.h, blk_map_read). Only for regular files opened
 * buffered, or on tmpfs: with O_DIRECT the page cache is not what the disk
 * holds (and a real disk keeps the bio path), except on tmpfs, where the
 * page cache is the storage and O_DIRECT I/O goes through it too. Not for
 * block devices (their size could change under the mapping). Pages past a truncated end or with an I/O error are
 * the caller's -EFAULT from sendmsg (it never touches them itself).
 */
int file_map_read(struct blkdev *bd, uint64_t offset, uint64_t len, struct blk_map *m)
{
	struct file_dev *f = container_of(bd, struct file_dev, bd);
	void *map;

	if ((bd->direct && !f->mem_fs) || !f->is_reg || bd->size > SIZE_MAX)
		return -EAGAIN;
	map = file_mapping(f);
	if (map == MAP_FAILED)
		return -EAGAIN;
	m->addr = (const uint8_t *)map + offset;
	m->len = len;
	return 0;
}

/*
 * A write on tmpfs or ramfs as a copy into the file's shared mapping: the
 * same pages pwritev2 would fill, without its page cache lookup per call
 * (4 KiB random writes to a 1 GiB tmpfs file: bench/README.md). FUA needs
 * nothing there (no write-back). A fault in the copy (the file cut under
 * the disk, tmpfs full) is caught (copy_guarded) and the write is done
 * again with pwritev2 by the caller, so its outcome and error are what
 * they always were, and every later write of the device goes that way.
 * -EAGAIN when the mapping cannot serve it.
 */
int file_map_write(struct file_dev *f, const struct file_io *io)
{
	const struct bio *bio = io->bio;
	uint8_t *map;
	uint64_t off = bio->offset;

	if (!f->mem_fs || !f->is_reg || !f->writable || f->bd.size > SIZE_MAX ||
	    bio->offset + bio->len > f->bd.size || __atomic_load_n(&f->no_map_write, __ATOMIC_RELAXED))
		return -EAGAIN;
	map = file_mapping(f);
	if (map == MAP_FAILED)
		return -EAGAIN;
	for (int i = 0; i < io->iovcnt; i++) {
		if (copy_guarded(map + off, io->iov[i].iov_base, io->iov[i].iov_len)) {
			if (!__atomic_exchange_n(&f->no_map_write, true, __ATOMIC_RELAXED))
				LOG_WARN(LS_BLK, "%s: a write into the mapping of %s faulted (file cut "
					 "short, or its file system full); writes go through pwritev2 "
					 "from now on", f->bd.name, f->bd.path);
			return -EAGAIN;
		}
		off += io->iov[i].iov_len;
	}
	return 0;
}

void file_dev_close(struct file_dev *f)
{
	if (f->map && f->map != MAP_FAILED)
		munmap(f->map, (size_t)f->bd.size);
	file_wq_stop(&f->wq);
	if (f->fd >= 0)
		close(f->fd);
	if (f->zeroes)
		munmap(f->zeroes, ZERO_BUF);
	free(f);
}

static pthread_once_t uring_once = PTHREAD_ONCE_INIT;
static bool uring_ok;

static void uring_probe(void)
{
	struct io_uring ring;

	if (io_uring_queue_init(2, &ring, 0) == 0) {
		uring_ok = true;
		io_uring_queue_exit(&ring);
	}
}

/* Find the O_DIRECT alignment; false when the file cannot do O_DIRECT. */
static bool dio_align(struct file_dev *f, uint32_t lbs)
{
	struct statx stx;

	f->mem_align = lbs;
	f->off_align = lbs;
#ifdef STATX_DIOALIGN
	if (statx(f->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN)) {
		if (!stx.stx_dio_mem_align || !stx.stx_dio_offset_align)
			return false;
		f->mem_align = stx.stx_dio_mem_align;
		f->off_align = stx.stx_dio_offset_align;
	}
#else
	(void)stx;
#endif
	return true;
}

/* open(2), without O_DIRECT when the file system refuses it. */
static int open_path(const char *path, int flags, bool *direct)
{
	int fd = open(path, flags | (*direct ? O_DIRECT : 0), 0644);

	if (fd < 0 && *direct && errno == EINVAL) {
		*direct = false;
		fd = open(path, flags, 0644);
	}
	return fd;
}

int blk_file_open(const char *name, const char *path, const struct blk_file_opts *o,
		  struct blkdev **out)
{
	static const struct blk_file_opts defaults = { 0 };
	enum blk_file_backend backend;
	uint32_t lbs = 512, bs;
	struct file_dev *f;
	struct stat st;
	bool direct, can_dio, created = false;
	int flags, rc;

	if (!o)
		o = &defaults;
	if (!path || !*path)
		return -EINVAL;
	if (strlen(path) >= sizeof(((struct blkdev *)0)->path)) {
		LOG_ERR(LS_BLK, "%s: path %s is too long", name, path);
		return -ENAMETOOLONG;
	}
	if (o->block_size && (!IS_POW2(o->block_size) || o->block_size < 512 ||
			      o->block_size > (1u << 20))) {
		LOG_ERR(LS_BLK, "%s: block size %u is not a power of two between 512 and 1M",
			name, o->block_size);
		return -EINVAL;
	}
	backend = o->backend;
	if (backend == BLK_FILE_AUTO) {
		pthread_once(&uring_once, uring_probe);
		backend = uring_ok ? BLK_FILE_URING : BLK_FILE_AIO;
	}
	if (backend != BLK_FILE_URING && backend != BLK_FILE_AIO && backend != BLK_FILE_PSYNC)
		return -EINVAL;

	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	blkdev_init(&f->bd, NULL, name);
	f->fd = -1;
	f->backend = backend;
	snprintf(f->bd.path, sizeof(f->bd.path), "%s", path);

	flags = (o->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	f->writable = !o->readonly;
	/* a writable block device is ours alone: refuse one that is mounted
	 * or held by another exclusive opener (O_EXCL on a block device) */
	if (!o->readonly && stat(path, &st) == 0 && S_ISBLK(st.st_mode))
		flags |= O_EXCL;
	direct = !o->no_direct;
	if (!o->readonly && o->create_size) {
		f->fd = open_path(path, flags | O_CREAT | O_EXCL, &direct);
		created = f->fd >= 0;
		if (f->fd < 0 && errno == EEXIST)
			f->fd = open_path(path, flags, &direct);
	} else {
		f->fd = open_path(path, flags, &direct);
	}
	if (f->fd < 0) {
		rc = -errno;
		if (rc == -EBUSY && (flags & O_EXCL))
			LOG_ERR(LS_BLK, "%s: %s is in use (mounted, or opened by another owner)",
				name, path);
		else
			LOG_ERR(LS_BLK, "%s: cannot open %s: %s", name, path, strerror(-rc));
		goto free_dev;
	}
	if (fstat(f->fd, &st) < 0) {
		rc = -errno;
		goto close_fd;
	}
	if (S_ISBLK(st.st_mode)) {
		int ssz = 0;

		f->is_blkdev = true;
		if (ioctl(f->fd, BLKGETSIZE64, &f->bd.size) < 0) {
			rc = -errno;
			LOG_ERR(LS_BLK, "%s: BLKGETSIZE64 on %s: %s", name, path, strerror(-rc));
			goto close_fd;
		}
		if (ioctl(f->fd, BLKSSZGET, &ssz) == 0 && ssz >= 512)
			lbs = (uint32_t)ssz;
		bs = o->block_size ? o->block_size : lbs;
	} else if (S_ISREG(st.st_mode)) {
		struct statfs sfs;

		f->is_reg = true;
		f->mem_fs = fstatfs(f->fd, &sfs) == 0 &&
			    (sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC);
		bs = o->block_size ? o->block_size : 512;
		if (st.st_size == 0 && o->create_size && !o->readonly) {
			if (o->create_size % bs) {
				LOG_ERR(LS_BLK, "%s: size %llu is not a multiple of the block size %u",
					name, (unsigned long long)o->create_size, bs);
				rc = -EINVAL;
				goto close_fd;
			}
			if (ftruncate(f->fd, (off_t)o->create_size) < 0) {
				rc = -errno;
				LOG_ERR(LS_BLK, "%s: cannot size %s: %s", name, path, strerror(-rc));
				goto close_fd;
			}
			st.st_size = (off_t)o->create_size;
		}
		f->bd.size = (uint64_t)st.st_size;
		lbs = bs;
	} else {
		LOG_ERR(LS_BLK, "%s: %s is not a regular file or a block device", name, path);
		rc = -EINVAL;
		goto close_fd;
	}
	if (!f->bd.size || f->bd.size % bs) {
		LOG_ERR(LS_BLK, "%s: size %llu of %s is not a non-zero multiple of the block size %u",
			name, (unsigned long long)f->bd.size, path, bs);
		rc = -EINVAL;
		goto close_fd;
	}
	f->bd.block_size = bs;

	can_dio = dio_align(f, lbs);	/* fills mem_align, off_align */
	if (!direct && !o->no_direct) {
		LOG_INFO(LS_BLK, "%s: %s refuses O_DIRECT, using buffered I/O", name, path);
	} else if (direct && !can_dio) {
		LOG_INFO(LS_BLK, "%s: %s cannot do direct I/O, using buffered I/O", name, path);
		direct = false;
	}
	if (direct && (bs % f->off_align || f->off_align > bs)) {
		LOG_INFO(LS_BLK, "%s: block size %u is finer than the direct I/O alignment %u of %s, using buffered I/O",
			 name, bs, f->off_align, path);
		direct = false;
	}
	if (!direct && (fcntl(f->fd, F_GETFL) & O_DIRECT) &&
	    fcntl(f->fd, F_SETFL, fcntl(f->fd, F_GETFL) & ~O_DIRECT) < 0) {
		rc = -errno;
		goto close_fd;
	}
	f->bd.direct = direct;
	f->bd.readonly = o->readonly;

	/* read-only anonymous memory: the kernel's zero page, costs no RAM */
	f->zeroes = mmap(NULL, ZERO_BUF, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (f->zeroes == MAP_FAILED) {
		f->zeroes = NULL;
		rc = -ENOMEM;
		goto close_fd;
	}

	switch (backend) {
	case BLK_FILE_URING:
		rc = uring_dev_init(f, o);
		break;
	case BLK_FILE_AIO:
		rc = aio_dev_init(f, o);
		break;
	default:
		rc = psync_dev_init(f, o);
		break;
	}
	if (rc)
		goto stop_wq;
	LOG_DBG(LS_BLK, "%s: %s on %s, %llu bytes, block %u, %s, align %u/%u", name,
		f->bd.ops->name, path, (unsigned long long)f->bd.size, bs,
		direct ? "direct" : "buffered", f->mem_align, f->off_align);
	*out = &f->bd;
	return 0;

stop_wq:
	file_wq_stop(&f->wq);
	munmap(f->zeroes, ZERO_BUF);
close_fd:
	close(f->fd);
	if (created)
		unlink(path);	/* do not leave behind a file we made */
free_dev:
	free(f);
	return rc;
}
