/* SPDX-License-Identifier: MIT */
/*
 * Synchronous I/O on thin volumes for the model and torture tests: one
 * epoll loop and one channel per open device, kept until tio_close() (a
 * loop per call, as blk_sync_io does, costs too much in these loops). A
 * header: other .c files in tests/unit would be linked into every test.
 */
#ifndef TEST_THIN_IO_H
#define TEST_THIN_IO_H

#include <errno.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "test_thin_util.h"

#define TIO_MAX		64

static struct ev_loop *tio_loop;
static struct { struct blkdev *bd; struct blkchan *ch; } tio_ch[TIO_MAX];

struct tio_res {
	bool	done;
	int	status;
};

static void tio_end(struct bio *bio, int status)
{
	struct tio_res *r = bio->end_arg;

	r->done = true;
	r->status = status;
}

static struct blkchan *tio_chan(struct blkdev *bd)
{
	unsigned i, free_slot = TIO_MAX;

	if (!tio_loop)
		T_EQ(ev_loop_new(EV_EPOLL, 64, &tio_loop), 0);
	for (i = 0; i < TIO_MAX; i++) {
		if (tio_ch[i].bd == bd)
			return tio_ch[i].ch;
		if (!tio_ch[i].bd && free_slot == TIO_MAX)
			free_slot = i;
	}
	T_TRUE(free_slot < TIO_MAX);
	T_EQ(blk_chan_open(bd, tio_loop, &tio_ch[free_slot].ch), 0);
	tio_ch[free_slot].bd = bd;
	return tio_ch[free_slot].ch;
}

/* One bio, waited for: its status (or blk_rw's error). */
static inline int tio(struct blkdev *bd, enum bio_op op, uint32_t flags, uint64_t off,
		      void *buf, uint64_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct blkchan *ch = tio_chan(bd);
	struct tio_res r = { 0 };
	int rc;

	while ((rc = blk_rw(ch, op, flags, &iov, buf ? 1 : 0, off, len, tio_end, &r)) == -EAGAIN ||
	       rc == -ENOMEM)
		ev_run_once(tio_loop, 10);
	if (rc)
		return rc;
	while (!r.done)
		T_TRUE(ev_run_once(tio_loop, -1) >= 0);
	return r.status;
}

/* Close the device and its channel, if tio opened one. */
static inline int tio_close(struct blkdev *bd)
{
	for (unsigned i = 0; i < TIO_MAX; i++)
		if (tio_ch[i].bd == bd) {
			blk_chan_close(tio_ch[i].ch, NULL, NULL);
			tio_ch[i].bd = NULL;
		}
	return blkdev_close(bd);
}

/* At the end of a test, once every device is closed. */
static inline void tio_done(void)
{
	if (tio_loop) {
		ev_loop_free(tio_loop);
		tio_loop = NULL;
	}
}

/* A seed from the environment (decimal or 0x...), or def. */
static inline uint64_t env_u64(const char *name, uint64_t def)
{
	const char *s = getenv(name);

	return s && *s ? strtoull(s, NULL, 0) : def;
}

#endif
