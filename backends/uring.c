/* SPDX-License-Identifier: MIT */
/*
 * The io_uring backend: I/O goes straight onto the ring of the loop that
 * owns the channel, so a reactor's sockets and disks share one
 * io_uring_enter per turn. A channel on an epoll loop is refused
 * (-ENOTSUP); the daemon then uses aio or psync for that disk.
 *
 * Reads and writes are readv/writev (read/write for one piece), FUA is
 * RWF_DSYNC, FLUSH is a datasync fsync, discard and write-zeroes are
 * fallocate. A short transfer or -EAGAIN is resubmitted for the rest from
 * the completion. What the ring cannot do well goes to the device's worker
 * thread: BLKDISCARD on block devices, write-zeroes with FUA, and the
 * zero-writing fallback when the file system cannot punch holes.
 *
 * Fixed files and registered buffers are not used: nothing has measured
 * them to help yet, and a loop's ring is shared by many devices.
 *
 * Files on tmpfs or ramfs are the exception to "everything on the ring":
 * those file systems cannot do a read or write without blocking
 * (no FMODE_NOWAIT: RWF_NOWAIT is refused), so io_uring hands every one of
 * them to an io-wq worker thread, a thread hand-off, a wake-up and two
 * context switches per I/O for what is a copy from or to the page cache.
 * There, reads and writes up to URING_INLINE_MAX are done at once with
 * preadv2 and a copy into the file's mapping (file_map_write; pwritev2
 * where it cannot) on the loop's thread, flushes with fdatasync (which has
 * nothing to write back there), and the bios end from a deferred task of
 * the channel (never inside submit). Larger ones still go to the
 * ring, where io-wq copies them beside the loop. Such a read or write can
 * only block on memory: swapping tmpfs pages in, or reclaim for a write.
 */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/log.h"
#include "backends/file.h"

#define URING_WORKERS	1
#define URING_MAX_PIECE	(1u << 30)
#define URING_INLINE_MAX	(64u * 1024)	/* tmpfs: larger I/O goes to io-wq */

struct uring_io {
	struct file_io	io;
	struct ev_cqe	cqe;
	uint64_t	done;		/* bytes transferred so far */
	int		idx;		/* cursor into io.iov */
	size_t		skip;
	int		falloc_mode;
};

struct uring_chan {
	struct file_chan fc;
	struct list_head inl_done;	/* bios done inline, through bio->link */
	struct ev_task	inl_task;
};

static void uring_close(struct blkdev *bd)
{
	file_dev_close(to_file(bd));
}

static void uring_chan_free(struct file_chan *fc)
{
	free(container_of(fc, struct uring_chan, fc));
}

static int uring_chan_create(struct blkdev *bd, struct blkchan *ch)
{
	struct uring_chan *uc;
	int rc;

	if (!ev_uring(ch->loop))
		return -ENOTSUP;
	uc = calloc(1, sizeof(*uc));
	if (!uc)
		return -ENOMEM;
	list_init(&uc->inl_done);
	rc = file_chan_init(&uc->fc, to_file(bd), ch, uring_chan_free);
	if (rc) {
		free(uc);
		return rc;
	}
	ch->priv = &uc->fc;
	return 0;
}

static void uring_chan_destroy(struct blkdev *bd, struct blkchan *ch)
{
	file_chan_destroy(ch->priv);
	ch->priv = NULL;
}

static void uring_cqe(struct ev_cqe *c, int res, uint32_t cqe_flags);

static void uring_queue(struct uring_io *u)
{
	struct file_io *io = &u->io;
	struct bio *bio = io->bio;
	struct file_dev *f = io->fc->fd;
	struct io_uring_sqe *sqe = ev_get_sqe(io->fc->loop);
	uint64_t off = bio->offset + u->done;

	switch (bio->op) {
	case BIO_READ:
	case BIO_WRITE:
		if (u->skip || io->iovcnt - u->idx == 1) {
			const struct iovec *v = &io->iov[u->idx];
			void *base = (uint8_t *)v->iov_base + u->skip;
			unsigned len = (unsigned)MIN(v->iov_len - u->skip, (size_t)URING_MAX_PIECE);

			if (bio->op == BIO_READ)
				io_uring_prep_read(sqe, f->fd, base, len, off);
			else
				io_uring_prep_write(sqe, f->fd, base, len, off);
		} else if (bio->op == BIO_READ) {
			io_uring_prep_readv(sqe, f->fd, io->iov + u->idx,
					    (unsigned)(io->iovcnt - u->idx), off);
		} else {
			io_uring_prep_writev(sqe, f->fd, io->iov + u->idx,
					     (unsigned)(io->iovcnt - u->idx), off);
		}
		if (bio->op == BIO_WRITE && (bio->flags & BIO_FUA))
			sqe->rw_flags = RWF_DSYNC;
		break;
	case BIO_FLUSH:
		io_uring_prep_fsync(sqe, f->fd, IORING_FSYNC_DATASYNC);
		break;
	default:
		io_uring_prep_fallocate(sqe, f->fd, u->falloc_mode, bio->offset, bio->len);
		break;
	}
	ev_sqe_set_cqe(sqe, &u->cqe);
}

static void uring_to_worker(struct uring_io *u)
{
	u->io.work = file_work_bio;
	u->io.done = file_io_finish;
	file_wq_queue(u->io.fc->fd, &u->io);
}

static void uring_cqe(struct ev_cqe *c, int res, uint32_t cqe_flags)
{
	struct uring_io *u = container_of(c, struct uring_io, cqe);
	struct bio *bio = u->io.bio;
	struct file_dev *f = u->io.fc->fd;

	if (res == -EAGAIN || res == -EINTR) {
		uring_queue(u);
		return;
	}
	switch (bio->op) {
	case BIO_READ:
	case BIO_WRITE:
		if (res <= 0)
			break;
		u->done += (unsigned)res;
		iov_advance(u->io.iov, u->io.iovcnt, &u->idx, &u->skip, (size_t)res);
		if (u->done < bio->len) {
			uring_queue(u);
			return;
		}
		res = 0;
		break;
	case BIO_DISCARD:
	case BIO_WRITE_ZEROES:
		if (res == -EOPNOTSUPP || res == -EINVAL) {
			file_falloc_refused(f, u->falloc_mode);
			uring_to_worker(u);
			return;
		}
		break;
	default:
		break;
	}
	if (res == 0 && (bio->op == BIO_READ || bio->op == BIO_WRITE) && u->done < bio->len)
		res = -EIO;
	file_io_finish(&u->io, res < 0 ? res : 0);
}

/* End the bios read or written inline, on the loop, after submit returned. */
static void uring_inl_task(struct ev_task *t)
{
	struct uring_chan *uc = container_of(t, struct uring_chan, inl_task);
	struct list_head local;

	/* A bio's end may submit again onto this channel, and the last end
	 * may close it: take the list first, keep the channel alive. */
	list_init(&local);
	if (!list_empty(&uc->inl_done)) {	/* move the whole list to local */
		local.next = uc->inl_done.next;
		local.prev = uc->inl_done.prev;
		local.next->prev = &local;
		local.prev->next = &local;
		list_init(&uc->inl_done);
	}
	file_chan_enter(&uc->fc);
	while (!list_empty(&local)) {
		struct bio *bio = list_entry(local.next, struct bio, link);
		struct uring_io *u = bio_ctx(bio);

		list_del(&bio->link);
		file_io_finish(&u->io, u->io.res);
	}
	file_chan_leave(&uc->fc);
}

static bool uring_inline(const struct file_dev *f, const struct bio *bio)
{
	if (!f->mem_fs)
		return false;
	return bio->op == BIO_FLUSH ||
	       ((bio->op == BIO_READ || bio->op == BIO_WRITE) && bio->len <= URING_INLINE_MAX);
}

static void uring_do_inline(struct uring_io *u)
{
	struct uring_chan *uc = container_of(u->io.fc, struct uring_chan, fc);

	if (u->io.bio->op == BIO_FLUSH)
		u->io.res = file_sync_flush(u->io.fc->fd);	/* nothing to write back */
	else if (u->io.bio->op != BIO_WRITE || file_map_write(u->io.fc->fd, &u->io))
		u->io.res = file_sync_rw(u->io.fc->fd, &u->io);
	else
		u->io.res = 0;
	list_add_tail(&u->io.bio->link, &uc->inl_done);
	ev_defer(uc->fc.loop, &uc->inl_task, uring_inl_task);
}

static int uring_submit(struct blkdev *bd, struct blkchan *ch, struct bio *bio)
{
	struct uring_io *u = bio_ctx(bio);
	struct file_dev *f = to_file(bd);
	int rc;

	rc = file_io_prep(ch->priv, bio, &u->io);
	if (rc)
		return rc;
	if (uring_inline(f, bio)) {
		uring_do_inline(u);
		return 0;
	}
	u->cqe.fn = uring_cqe;
	u->done = 0;
	u->idx = 0;
	u->skip = 0;
	if (bio->op == BIO_DISCARD || bio->op == BIO_WRITE_ZEROES) {
		u->falloc_mode = file_falloc_mode(f, bio->op, bio->flags);
		if (u->falloc_mode < 0 || (bio->flags & BIO_FUA)) {
			uring_to_worker(u);
			return 0;
		}
	}
	uring_queue(u);
	return 0;
}

static const struct blkdev_ops uring_ops = {
	.name = "uring",
	.bio_ctx_size = sizeof(struct uring_io),
	.close = uring_close,
	.supports = file_supports,
	.chan_create = uring_chan_create,
	.chan_destroy = uring_chan_destroy,
	.submit = uring_submit,
	.map_read = file_map_read,
};

int uring_dev_init(struct file_dev *f, const struct blk_file_opts *o)
{
	f->bd.ops = &uring_ops;
	return file_wq_start(f, URING_WORKERS);
}
