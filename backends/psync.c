/* SPDX-License-Identifier: MIT */
/*
 * The psync backend: a few threads per device doing preadv2/pwritev2
 * (RWF_DSYNC for FUA), fdatasync and fallocate. For file systems and
 * kernels where neither io_uring nor libaio is wanted, and as the plain
 * reference the other two are measured against.
 *
 * submit() only prepares the memory (bouncing for O_DIRECT on the loop's
 * thread, so the bounce pool needs no lock) and queues the bio; a worker
 * does the call and hands the bio back to its channel's done list, and the
 * channel's loop ends it (see file.h).
 */
#include <errno.h>
#include <stdlib.h>
#include "sand/blkdev.h"
#include "sand/log.h"
#include "backends/file.h"

#define PSYNC_DEFAULT_THREADS	4

struct psync_chan {
	struct file_chan fc;
};

static void psync_close(struct blkdev *bd)
{
	file_dev_close(to_file(bd));
}

static void psync_chan_free(struct file_chan *fc)
{
	free(container_of(fc, struct psync_chan, fc));
}

static int psync_chan_create(struct blkdev *bd, struct blkchan *ch)
{
	struct psync_chan *pc = calloc(1, sizeof(*pc));
	int rc;

	if (!pc)
		return -ENOMEM;
	rc = file_chan_init(&pc->fc, to_file(bd), ch, psync_chan_free);
	if (rc) {
		free(pc);
		return rc;
	}
	ch->priv = &pc->fc;
	return 0;
}

static void psync_chan_destroy(struct blkdev *bd, struct blkchan *ch)
{
	file_chan_destroy(ch->priv);
	ch->priv = NULL;
}

static int psync_submit(struct blkdev *bd, struct blkchan *ch, struct bio *bio)
{
	struct file_io *io = bio_ctx(bio);
	int rc;

	rc = file_io_prep(ch->priv, bio, io);
	if (rc)
		return rc;
	io->work = file_work_bio;
	io->done = file_io_finish;
	file_wq_queue(to_file(bd), io);
	return 0;
}

static const struct blkdev_ops psync_ops = {
	.name = "psync",
	.bio_ctx_size = sizeof(struct file_io),
	.close = psync_close,
	.supports = file_supports,
	.chan_create = psync_chan_create,
	.chan_destroy = psync_chan_destroy,
	.submit = psync_submit,
	.map_read = file_map_read,
};

int psync_dev_init(struct file_dev *f, const struct blk_file_opts *o)
{
	f->bd.ops = &psync_ops;
	return file_wq_start(f, o->psync_threads ? o->psync_threads : PSYNC_DEFAULT_THREADS);
}
