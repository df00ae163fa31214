/* SPDX-License-Identifier: MIT */
/*
 * Memory and null devices. The memory device allocates 64 KiB pages on first
 * write, so a large sparse device costs only what was written; unwritten
 * pages read as zeros and discard/write-zeroes free whole pages. I/O is done
 * at once but completed on the next turn of the loop, as the contract says.
 * The page table is shared by every channel and guarded by a mutex: this is
 * a device for tests, not for speed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/ev.h"

#define MEM_PAGE	(64u * 1024)

struct mem_dev {
	struct blkdev	bd;
	bool		null;
	pthread_mutex_t	lock;
	uint8_t		**pages;
	uint64_t	npages;
};

struct mem_bio {
	int	status;
};

static struct mem_dev *to_mem(struct blkdev *bd) { return container_of(bd, struct mem_dev, bd); }

static void mem_close(struct blkdev *bd)
{
	struct mem_dev *m = to_mem(bd);

	for (uint64_t i = 0; m->pages && i < m->npages; i++)
		free(m->pages[i]);
	free(m->pages);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static bool mem_supports(struct blkdev *bd, enum bio_op op)
{
	return op < BIO_OP_MAX;
}

static void mem_done(struct ev_task *t)
{
	struct bio *bio = container_of(t, struct bio, task);
	struct mem_bio *mb = bio_ctx(bio);

	bio_complete(bio, mb->status);
}

/* Apply fn to every page-sized piece of [off, off+len). */
static int mem_do(struct mem_dev *m, struct bio *bio)
{
	uint64_t off = bio->offset, done = 0;

	while (done < bio->len) {
		uint64_t pg = (off + done) / MEM_PAGE;
		uint32_t in = (uint32_t)((off + done) % MEM_PAGE);
		uint64_t n = MIN(bio->len - done, (uint64_t)(MEM_PAGE - in));
		uint8_t *p = m->pages[pg];

		switch (bio->op) {
		case BIO_READ:
			if (p)
				buf_to_iov(bio->iov, bio->iovcnt, done, p + in, n);
			else
				iov_memset(bio->iov, bio->iovcnt, done, 0, n);
			break;
		case BIO_WRITE:
			if (!p) {
				p = calloc(1, MEM_PAGE);
				if (!p)
					return -ENOMEM;
				m->pages[pg] = p;
			}
			iov_to_buf(bio->iov, bio->iovcnt, done, p + in, n);
			break;
		case BIO_DISCARD:
		case BIO_WRITE_ZEROES:
			if (!p)
				break;
			if (n == MEM_PAGE && !(bio->flags & BIO_NOUNMAP)) {
				free(p);
				m->pages[pg] = NULL;
			} else {
				memset(p + in, 0, n);
			}
			break;
		default:
			break;
		}
		done += n;
	}
	return 0;
}

static int mem_submit(struct blkdev *bd, struct blkchan *ch, struct bio *bio)
{
	struct mem_dev *m = to_mem(bd);
	struct mem_bio *mb = bio_ctx(bio);

	if (m->null) {
		if (bio->op == BIO_READ)
			iov_memset(bio->iov, bio->iovcnt, 0, 0, bio->len);
		mb->status = 0;
	} else if (bio->op == BIO_FLUSH) {
		mb->status = 0;
	} else {
		pthread_mutex_lock(&m->lock);
		mb->status = mem_do(m, bio);
		pthread_mutex_unlock(&m->lock);
	}
	ev_defer(ch->loop, &bio->task, mem_done);
	return 0;
}

static void mem_status_done(struct ev_task *t)
{
	struct blk_status *st = container_of(t, struct blk_status, task);

	blk_status_complete(st, 0);
}

/* Pages never written (or freed whole) are holes that read as zeros. */
static int mem_block_status(struct blkdev *bd, struct blkchan *ch, struct blk_status *st)
{
	struct mem_dev *m = to_mem(bd);
	uint64_t done = 0;

	pthread_mutex_lock(&m->lock);
	while (done < st->len) {
		uint64_t off = st->offset + done;
		uint64_t n = MIN(st->len - done, MEM_PAGE - off % MEM_PAGE);

		if (!blk_status_add(st, n, m->pages[off / MEM_PAGE] ? 0 : BLK_EXT_HOLE | BLK_EXT_ZERO))
			break;
		done += n;
	}
	pthread_mutex_unlock(&m->lock);
	ev_defer(ch->loop, &st->task, mem_status_done);
	return 0;
}

static const struct blkdev_ops mem_ops = {
	.name = "mem",
	.bio_ctx_size = sizeof(struct mem_bio),
	.close = mem_close,
	.supports = mem_supports,
	.submit = mem_submit,
	.block_status = mem_block_status,
};

static const struct blkdev_ops null_ops = {
	.name = "null",
	.bio_ctx_size = sizeof(struct mem_bio),
	.close = mem_close,
	.supports = mem_supports,
	.submit = mem_submit,
};

static int create(const struct blkdev_ops *ops, const char *name, uint64_t size,
		  uint32_t block_size, bool null, struct blkdev **out)
{
	struct mem_dev *m;

	if (!block_size)
		block_size = 512;
	if (!IS_POW2(block_size) || block_size < 512 || block_size > MEM_PAGE ||
	    !size || size % block_size)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	blkdev_init(&m->bd, ops, name);
	m->bd.size = size;
	m->bd.block_size = block_size;
	m->null = null;
	pthread_mutex_init(&m->lock, NULL);
	if (!null) {
		m->npages = DIV_ROUND_UP(size, MEM_PAGE);
		m->pages = calloc(m->npages, sizeof(*m->pages));
		if (!m->pages) {
			free(m);
			return -ENOMEM;
		}
	}
	*out = &m->bd;
	return 0;
}

int blk_mem_create(const char *name, uint64_t size, uint32_t block_size, struct blkdev **out)
{
	return create(&mem_ops, name, size, block_size, false, out);
}

int blk_null_create(const char *name, uint64_t size, uint32_t block_size, struct blkdev **out)
{
	return create(&null_ops, name, size, block_size, true, out);
}
