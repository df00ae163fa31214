/* SPDX-License-Identifier: MIT */
/*
 * The libaio backend (tgt's bs_aio): an io_context per channel, reads and
 * writes as PREADV/PWRITEV iocbs (RWF_DSYNC for FUA), completions signalled
 * on an eventfd that the channel's loop watches. The same eventfd carries
 * the worker pool's completions: flush, discard and write-zeroes have no
 * useful aio form (IOCB_CMD_FDSYNC is refused by most file systems) and run
 * on the device's worker threads.
 *
 * iocbs prepared during one loop turn are collected and handed to the
 * kernel with one io_submit from a deferred task. At most AIO_DEPTH reads
 * and writes per channel are in the kernel or waiting for it; beyond that
 * submit() returns -EAGAIN (backpressure). A short transfer or -EAGAIN is
 * resubmitted for the rest from the completion.
 */
#include <errno.h>
#include <libaio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/log.h"
#include "backends/file.h"

#define AIO_DEPTH		256
#define AIO_EVENTS		64
#define AIO_DEFAULT_WORKERS	2

struct aio_io {
	struct file_io	io;
	struct iocb	iocb;
	uint64_t	done;		/* bytes transferred so far */
	int		idx;		/* cursor into io.iov */
	size_t		skip;
	struct iovec	part;
};

struct aio_chan {
	struct file_chan fc;
	io_context_t	ctx;
	unsigned	inkernel;	/* iocbs submitted, not yet reaped */
	unsigned	npending;	/* iocbs waiting for io_submit */
	struct ev_task	flush_task;	/* holds fc busy while queued */
	struct iocb	*pending[AIO_DEPTH];
	struct io_event	events[AIO_EVENTS];
};

static struct aio_chan *to_ac(struct file_chan *fc)
{
	return container_of(fc, struct aio_chan, fc);
}

static void aio_close(struct blkdev *bd)
{
	file_dev_close(to_file(bd));
}

static void aio_flush(struct aio_chan *ac);

static void aio_flush_task(struct ev_task *t)
{
	struct aio_chan *ac = container_of(t, struct aio_chan, flush_task);

	aio_flush(ac);
	file_chan_leave(&ac->fc);	/* may free ac */
}

static void aio_kick(struct aio_chan *ac)
{
	if (ac->flush_task.queued)
		return;
	file_chan_enter(&ac->fc);
	ev_defer(ac->fc.loop, &ac->flush_task, aio_flush_task);
}

/* Fill the iocb for what is left of the bio and queue it. */
static void aio_queue(struct aio_chan *ac, struct aio_io *a)
{
	struct file_io *io = &a->io;
	struct bio *bio = io->bio;
	int fd = ac->fc.fd->fd;
	long long off = (long long)(bio->offset + a->done);
	int flags = bio->op == BIO_WRITE && (bio->flags & BIO_FUA) ? RWF_DSYNC : 0;
	const struct iovec *iov = io->iov + a->idx;
	int cnt = io->iovcnt - a->idx;

	if (a->skip) {
		a->part.iov_base = (uint8_t *)iov->iov_base + a->skip;
		a->part.iov_len = iov->iov_len - a->skip;
		iov = &a->part;
		cnt = 1;
	}
	if (bio->op == BIO_READ)
		io_prep_preadv2(&a->iocb, fd, iov, cnt, off, flags);
	else
		io_prep_pwritev2(&a->iocb, fd, iov, cnt, off, flags);
	io_set_eventfd(&a->iocb, ac->fc.efd);
	a->iocb.data = a;
	ac->pending[ac->npending++] = &a->iocb;
	aio_kick(ac);
}

/* Hand the pending iocbs to the kernel. */
static void aio_flush(struct aio_chan *ac)
{
	while (ac->npending) {
		int n = io_submit(ac->ctx, (long)ac->npending, ac->pending);
		struct aio_io *a;

		if (n > 0) {
			ac->inkernel += (unsigned)n;
			ac->npending -= (unsigned)n;
			memmove(ac->pending, ac->pending + n, ac->npending * sizeof(ac->pending[0]));
			continue;
		}
		if (n == 0 || n == -EAGAIN || n == -EINTR) {
			if (!ac->inkernel)
				aio_kick(ac);	/* nothing will wake us: try next turn */
			return;			/* else: again when some complete */
		}
		/* the first iocb is refused: end it, go on with the rest */
		a = ac->pending[0]->data;
		ac->npending--;
		memmove(ac->pending, ac->pending + 1, ac->npending * sizeof(ac->pending[0]));
		LOG_RATELIMIT(LOG_ERROR, LS_BLK, "%s: io_submit: %s", ac->fc.fd->bd.name, strerror(-n));
		file_io_finish(&a->io, n);	/* never the last bio: we are busy */
	}
}

static void aio_complete(struct aio_chan *ac, struct aio_io *a, long res)
{
	struct bio *bio = a->io.bio;

	if (res == -EAGAIN || res == -EINTR) {
		aio_queue(ac, a);
		return;
	}
	if (res < 0) {
		file_io_finish(&a->io, (int)res);
		return;
	}
	if (res == 0) {
		file_io_finish(&a->io, -EIO);	/* end of file inside the device */
		return;
	}
	a->done += (uint64_t)res;
	iov_advance(a->io.iov, a->io.iovcnt, &a->idx, &a->skip, (size_t)res);
	if (a->done < bio->len) {
		aio_queue(ac, a);
		return;
	}
	file_io_finish(&a->io, 0);
}

/* From the eventfd handler, with fc busy. */
static void aio_reap(struct file_chan *fc)
{
	struct aio_chan *ac = to_ac(fc);

	while (!fc->dead && ac->inkernel) {
		struct timespec ts = { 0, 0 };
		int n = io_getevents(ac->ctx, 0, AIO_EVENTS, ac->events, &ts);

		if (n < 0 && n != -EINTR)
			LOG_RATELIMIT(LOG_ERROR, LS_BLK, "%s: io_getevents: %s", fc->fd->bd.name,
				      strerror(-n));
		if (n <= 0)
			break;
		ac->inkernel -= (unsigned)n;
		for (int i = 0; i < n; i++) {
			struct aio_io *a = ac->events[i].data;

			aio_complete(ac, a, (long)ac->events[i].res);
		}
		if (n < AIO_EVENTS)
			break;
	}
	if (!fc->dead && ac->npending)
		aio_flush(ac);
}

static void aio_chan_free(struct file_chan *fc)
{
	free(to_ac(fc));
}

static int aio_chan_create(struct blkdev *bd, struct blkchan *ch)
{
	struct aio_chan *ac = calloc(1, sizeof(*ac));
	int rc;

	if (!ac)
		return -ENOMEM;
	rc = io_setup(AIO_DEPTH, &ac->ctx);
	if (rc) {
		LOG_ERR(LS_BLK, "%s: io_setup: %s", bd->name, strerror(-rc));
		free(ac);
		return rc;
	}
	rc = file_chan_init(&ac->fc, to_file(bd), ch, aio_chan_free);
	if (rc) {
		io_destroy(ac->ctx);
		free(ac);
		return rc;
	}
	ac->fc.poll_extra = aio_reap;
	ch->priv = &ac->fc;
	return 0;
}

static void aio_chan_destroy(struct blkdev *bd, struct blkchan *ch)
{
	struct aio_chan *ac = to_ac(ch->priv);

	io_destroy(ac->ctx);
	file_chan_destroy(&ac->fc);
	ch->priv = NULL;
}

static int aio_submit(struct blkdev *bd, struct blkchan *ch, struct bio *bio)
{
	struct aio_chan *ac = to_ac(ch->priv);
	struct aio_io *a = bio_ctx(bio);
	int rc;

	if ((bio->op == BIO_READ || bio->op == BIO_WRITE) &&
	    ac->inkernel + ac->npending >= AIO_DEPTH)
		return -EAGAIN;
	rc = file_io_prep(&ac->fc, bio, &a->io);
	if (rc)
		return rc;
	if (bio->op != BIO_READ && bio->op != BIO_WRITE) {
		a->io.work = file_work_bio;
		a->io.done = file_io_finish;
		file_wq_queue(to_file(bd), &a->io);
		return 0;
	}
	a->done = 0;
	a->idx = 0;
	a->skip = 0;
	aio_queue(ac, a);
	return 0;
}

static const struct blkdev_ops aio_ops = {
	.name = "aio",
	.bio_ctx_size = sizeof(struct aio_io),
	.close = aio_close,
	.supports = file_supports,
	.chan_create = aio_chan_create,
	.chan_destroy = aio_chan_destroy,
	.submit = aio_submit,
	.map_read = file_map_read,
};

int aio_dev_init(struct file_dev *f, const struct blk_file_opts *o)
{
	f->bd.ops = &aio_ops;
	return file_wq_start(f, o->psync_threads ? o->psync_threads : AIO_DEFAULT_WORKERS);
}
