/* SPDX-License-Identifier: MIT */
/*
 * The fault filter over memory devices: pass-through, error rules, latency,
 * counters, and power cuts checked block by block against a model of what a
 * disk could hold after a crash.
 *
 * Blocks carry a pattern: every 8-byte word is (tag << 32 | block number),
 * tag 0 being all zeros, so a read tells which write a block came from and
 * that it is whole.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/fault.h"

#define BS		512u
#define DEV_SIZE	(1024u * 1024)
#define NBLK		(DEV_SIZE / BS)

struct env {
	struct blkdev	*mem;
	struct blkdev	*mid;		/* a second fault device between, or NULL */
	struct blkdev	*fd;
	struct ev_loop	*loop;
	struct blkchan	*ch;
};

struct io_res {
	bool		done;
	int		status;
	uint64_t	t_start, t_end;
};

static void env_open_bs(struct env *e, uint32_t bs)
{
	memset(e, 0, sizeof(*e));
	ck_assert_int_eq(blk_mem_create("mem0", DEV_SIZE, bs, &e->mem), 0);
	ck_assert_int_eq(blk_fault_create("fault0", e->mem, &e->fd), 0);
	ck_assert_int_eq(ev_loop_new(EV_AUTO, 64, &e->loop), 0);
	ck_assert_int_eq(blk_chan_open(e->fd, e->loop, &e->ch), 0);
}

static void env_open(struct env *e)
{
	env_open_bs(e, BS);
}

/* mem <- mid (fault) <- fd (fault): mid delays what the tests want slow */
static void env_open_stacked(struct env *e)
{
	memset(e, 0, sizeof(*e));
	ck_assert_int_eq(blk_mem_create("mem0", DEV_SIZE, BS, &e->mem), 0);
	ck_assert_int_eq(blk_fault_create("mid0", e->mem, &e->mid), 0);
	ck_assert_int_eq(blk_fault_create("fault0", e->mid, &e->fd), 0);
	ck_assert_int_eq(ev_loop_new(EV_AUTO, 64, &e->loop), 0);
	ck_assert_int_eq(blk_chan_open(e->fd, e->loop, &e->ch), 0);
}

static void closed_cb(void *arg)
{
	*(bool *)arg = true;
}

static void env_close(struct env *e)
{
	bool closed = false;
	uint8_t buf[4096];

	if (e->ch) {
		blk_chan_close(e->ch, closed_cb, &closed);
		for (int i = 0; i < 1000 && !closed; i++)
			ev_run_once(e->loop, 10);
		ck_assert(closed);
	}
	ck_assert_int_eq(blkdev_close(e->fd), 0);
	if (e->mid)
		ck_assert_int_eq(blkdev_close(e->mid), 0);
	/* the lower device is still open and usable */
	ck_assert_int_eq(blk_sync_io(e->mem, BIO_READ, 0, 0, buf, e->mem->block_size), 0);
	ck_assert_int_eq(blkdev_close(e->mem), 0);
	ev_loop_free(e->loop);
}

static void io_end(struct bio *bio, int status)
{
	struct io_res *r = bio->end_arg;

	ck_assert(!r->done);
	r->done = true;
	r->status = status;
	r->t_end = now_ns();
}

static int io_start_iov(struct env *e, enum bio_op op, uint32_t flags, uint64_t off,
			const struct iovec *iov, int iovcnt, uint64_t len, struct io_res *r)
{
	memset(r, 0, sizeof(*r));
	r->t_start = now_ns();
	return blk_rw(e->ch, op, flags, iov, iovcnt, off, len, io_end, r);
}

static int io_start(struct env *e, enum bio_op op, uint32_t flags, uint64_t off,
		    void *buf, uint64_t len, struct io_res *r)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };

	return io_start_iov(e, op, flags, off, &iov, buf ? 1 : 0, len, r);
}

static void io_wait(struct env *e, struct io_res *r)
{
	uint64_t deadline = now_ns() + 10ull * 1000 * 1000 * 1000;

	while (!r->done) {
		ck_assert_msg(now_ns() < deadline, "I/O did not end");
		ev_run_once(e->loop, 100);
	}
}

static int io_iov(struct env *e, enum bio_op op, uint32_t flags, uint64_t off,
		  const struct iovec *iov, int iovcnt, uint64_t len)
{
	struct io_res r;
	int rc = io_start_iov(e, op, flags, off, iov, iovcnt, len, &r);

	if (rc)
		return rc;
	io_wait(e, &r);
	return r.status;
}

static int io(struct env *e, enum bio_op op, uint32_t flags, uint64_t off, void *buf,
	      uint64_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };

	return io_iov(e, op, flags, off, &iov, buf ? 1 : 0, len);
}

/* ---- block patterns ---- */

static void fill(uint8_t *buf, unsigned tag, uint64_t blk, unsigned nblk, uint32_t bs)
{
	for (unsigned b = 0; b < nblk; b++) {
		uint64_t w = tag ? (uint64_t)tag << 32 | (blk + b) : 0;

		for (unsigned i = 0; i < bs / 8; i++)
			memcpy(buf + (size_t)b * bs + i * 8, &w, 8);
	}
}

/* The tag of a block, or -1 if it is not a whole pattern for block blk. */
static int tag_of(const uint8_t *p, uint64_t blk, uint32_t bs)
{
	uint64_t w;

	memcpy(&w, p, 8);
	for (unsigned i = 1; i < bs / 8; i++)
		if (memcmp(p + i * 8, &w, 8))
			return -1;
	if (!w)
		return 0;
	if ((w & 0xffffffffu) != blk)
		return -1;
	return (int)(w >> 32);
}

static int wr(struct env *e, unsigned tag, uint64_t blk, unsigned nblk, uint32_t flags)
{
	uint8_t *buf = malloc((size_t)nblk * BS);
	int rc;

	fill(buf, tag, blk, nblk, BS);
	rc = io(e, BIO_WRITE, flags, blk * BS, buf, (uint64_t)nblk * BS);
	free(buf);
	return rc;
}

/* Tags of blocks [0, n) of the lower device, read directly. */
static void lower_tags(struct env *e, int *tags, unsigned n)
{
	uint8_t *buf = malloc((size_t)n * BS);

	ck_assert_int_eq(blk_sync_io(e->mem, BIO_READ, 0, 0, buf, (uint64_t)n * BS), 0);
	for (unsigned b = 0; b < n; b++)
		tags[b] = tag_of(buf + (size_t)b * BS, b, BS);
	free(buf);
}

static void expect_tags(struct env *e, const int *want, unsigned n, const char *what)
{
	int got[NBLK];

	lower_tags(e, got, n);
	for (unsigned b = 0; b < n; b++)
		ck_assert_msg(got[b] == want[b], "%s: block %u holds tag %d, want %d",
			      what, b, got[b], want[b]);
}

/* Blocks [0, n) hold tag 1, flushed, with recording on. */
static void baseline(struct env *e, unsigned n)
{
	ck_assert_int_eq(fault_record(e->fd, true), 0);
	ck_assert_int_eq(wr(e, 1, 0, n, 0), 0);
	ck_assert_int_eq(io(e, BIO_FLUSH, 0, 0, NULL, 0), 0);
	ck_assert_int_eq(fault_unflushed_count(e->fd), 0);
}

/* ------------------------------------------------------------ pass-through */

START_TEST(t_passthrough)
{
	struct env e;
	uint8_t a[8 * BS], b[8 * BS], c[8 * BS];
	struct iovec iov3[3], iov6[6], iov2[2];
	size_t sz6[6] = { 100, 200, 300, 400, 500, 2084 };
	size_t off;
	struct fault_stats st;

	env_open(&e);
	ck_assert_uint_eq(e.fd->size, e.mem->size);
	ck_assert_uint_eq(e.fd->block_size, e.mem->block_size);
	ck_assert(blk_is_fault(e.fd));
	ck_assert(!blk_is_fault(e.mem));
	ck_assert_ptr_eq(fault_lower(e.fd), e.mem);

	for (size_t i = 0; i < sizeof(a); i++)
		a[i] = (uint8_t)(i * 7 + 3);
	/* three blocks at an odd block, from three odd-sized pieces */
	iov3[0] = (struct iovec){ a, 1 };
	iov3[1] = (struct iovec){ a + 1, 511 };
	iov3[2] = (struct iovec){ a + 512, 1024 };
	ck_assert_int_eq(io_iov(&e, BIO_WRITE, 0, 7 * BS, iov3, 3, 3 * BS), 0);
	/* seven blocks from six pieces (more than a bio holds inline) */
	off = 0;
	for (int i = 0; i < 6; i++) {
		iov6[i] = (struct iovec){ a + off, sz6[i] };
		off += sz6[i];
	}
	ck_assert_uint_eq(off, 7 * BS);
	ck_assert_int_eq(io_iov(&e, BIO_WRITE, BIO_FUA, 13 * BS, iov6, 6, 7 * BS), 0);

	/* read back through the filter, in another shape */
	memset(b, 0xee, sizeof(b));
	iov2[0] = (struct iovec){ b, 1000 };
	iov2[1] = (struct iovec){ b + 1000, 536 };
	ck_assert_int_eq(io_iov(&e, BIO_READ, 0, 7 * BS, iov2, 2, 3 * BS), 0);
	ck_assert(!memcmp(a, b, 3 * BS));
	ck_assert_int_eq(io(&e, BIO_READ, 0, 13 * BS, b, 7 * BS), 0);
	ck_assert(!memcmp(a, b, 7 * BS));
	/* and on the lower device */
	ck_assert_int_eq(blk_sync_io(e.mem, BIO_READ, 0, 13 * BS, c, 7 * BS), 0);
	ck_assert(!memcmp(a, c, 7 * BS));
	ck_assert_int_eq(blk_sync_io(e.mem, BIO_READ, 0, 6 * BS, c, BS), 0);
	for (unsigned i = 0; i < BS; i++)
		ck_assert_int_eq(c[i], 0);

	/* write-zeroes and discard pass through; flush too */
	ck_assert_int_eq(io(&e, BIO_WRITE_ZEROES, 0, 8 * BS, NULL, BS), 0);
	ck_assert_int_eq(io(&e, BIO_DISCARD, 0, 14 * BS, NULL, 2 * BS), 0);
	ck_assert_int_eq(io(&e, BIO_FLUSH, 0, 0, NULL, 0), 0);
	ck_assert_int_eq(blk_sync_io(e.mem, BIO_READ, 0, 7 * BS, c, 3 * BS), 0);
	ck_assert(!memcmp(c, a, BS));
	for (unsigned i = BS; i < 2 * BS; i++)
		ck_assert_int_eq(c[i], 0);
	ck_assert(!memcmp(c + 2 * BS, a + 2 * BS, BS));
	ck_assert_int_eq(blk_sync_io(e.mem, BIO_READ, 0, 13 * BS, c, 4 * BS), 0);
	ck_assert(!memcmp(c, a, BS));
	for (unsigned i = BS; i < 3 * BS; i++)
		ck_assert_int_eq(c[i], 0);
	ck_assert(!memcmp(c + 3 * BS, a + 3 * BS, BS));

	/* the last block, and a bio beyond the end is refused by the core */
	ck_assert_int_eq(wr(&e, 9, NBLK - 1, 1, 0), 0);
	ck_assert_int_eq(io(&e, BIO_READ, 0, (NBLK - 1) * BS, b, BS), 0);
	ck_assert_int_eq(tag_of(b, NBLK - 1, BS), 9);
	ck_assert_int_eq(io(&e, BIO_READ, 0, NBLK * BS, b, BS), -ERANGE);

	/* blk_sync_io works on the filter too */
	ck_assert_int_eq(blk_sync_io(e.fd, BIO_READ, 0, 7 * BS, c, BS), 0);
	ck_assert(!memcmp(c, a, BS));

	ck_assert_int_eq(fault_get_stats(e.fd, &st), 0);
	ck_assert_uint_eq(st.ios[BIO_WRITE], 3);
	ck_assert_uint_eq(st.ios[BIO_READ], 4);	/* blk_sync_io's read is counted too */
	ck_assert_uint_eq(st.ios[BIO_WRITE_ZEROES], 1);
	ck_assert_uint_eq(st.ios[BIO_DISCARD], 1);
	ck_assert_uint_eq(st.ios[BIO_FLUSH], 1);
	ck_assert_uint_eq(st.injected, 0);
	ck_assert_int_eq(fault_reset_stats(e.fd), 0);
	ck_assert_int_eq(fault_get_stats(e.fd, &st), 0);
	for (int i = 0; i < BIO_OP_MAX; i++)
		ck_assert_uint_eq(st.ios[i], 0);
	env_close(&e);
}
END_TEST

START_TEST(t_passthrough_4k)
{
	struct env e;
	uint8_t a[3 * 4096], b[3 * 4096];

	env_open_bs(&e, 4096);
	ck_assert_uint_eq(e.fd->block_size, 4096);
	for (size_t i = 0; i < sizeof(a); i++)
		a[i] = (uint8_t)(i ^ (i >> 8));
	ck_assert_int_eq(io(&e, BIO_WRITE, 0, 5 * 4096, a, sizeof(a)), 0);
	ck_assert_int_eq(io(&e, BIO_READ, 0, 5 * 4096, b, sizeof(b)), 0);
	ck_assert(!memcmp(a, b, sizeof(a)));
	ck_assert_int_eq(io(&e, BIO_WRITE, 0, 512, a, 4096), -EINVAL);	/* misaligned */
	env_close(&e);
}
END_TEST

START_TEST(t_not_fault)
{
	struct blkdev *mem;
	struct fault_stats st;
	struct fault_rule r = { .len = BS, .op_mask = FAULT_OPS_ALL };

	ck_assert_int_eq(blk_mem_create("m", DEV_SIZE, BS, &mem), 0);
	ck_assert_int_eq(fault_fail_after(mem, 1, FAULT_OPS_ALL, 0), -EINVAL);
	ck_assert_int_eq(fault_add_rule(mem, &r), -EINVAL);
	ck_assert_int_eq(fault_set_random(mem, 0.5, 1, FAULT_OPS_ALL, 0), -EINVAL);
	ck_assert_int_eq(fault_set_latency(mem, 1, FAULT_OPS_ALL), -EINVAL);
	ck_assert_int_eq(fault_get_stats(mem, &st), -EINVAL);
	ck_assert_int_eq(fault_record(mem, true), -EINVAL);
	ck_assert_int_eq(fault_unflushed_count(mem), -EINVAL);
	ck_assert_int_eq(fault_power_cut(mem, NULL), -EINVAL);
	ck_assert_int_eq(fault_power_restore(mem), -EINVAL);
	ck_assert(!fault_powered(mem));
	ck_assert_ptr_null(fault_lower(mem));
	ck_assert_int_eq(blkdev_close(mem), 0);
}
END_TEST

/* ------------------------------------------------------------ errors */

START_TEST(t_fail_after)
{
	struct env e;
	uint8_t buf[BS];
	int tags[4];
	struct fault_stats st;

	env_open(&e);
	ck_assert_int_eq(fault_fail_after(e.fd, 3, FAULT_OPS_ALL, 0), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(io(&e, BIO_READ, 0, 0, buf, BS), 0);
	ck_assert_int_eq(io(&e, BIO_READ, 0, 0, buf, BS), -EIO);
	ck_assert_int_eq(wr(&e, 5, 1, 1, 0), -EIO);
	ck_assert_int_eq(io(&e, BIO_FLUSH, 0, 0, NULL, 0), -EIO);
	ck_assert_int_eq(fault_get_stats(e.fd, &st), 0);
	ck_assert_uint_eq(st.injected, 3);
	lower_tags(&e, tags, 2);
	ck_assert_int_eq(tags[1], 0);		/* the failed write never landed */
	ck_assert_int_eq(fault_clear(e.fd), 0);
	ck_assert_int_eq(wr(&e, 5, 1, 1, 0), 0);

	/* only writes, with another errno */
	ck_assert_int_eq(fault_fail_after(e.fd, 1, FAULT_OP(BIO_WRITE), -ENOSPC), 0);
	ck_assert_int_eq(wr(&e, 6, 2, 1, 0), 0);
	ck_assert_int_eq(io(&e, BIO_READ, 0, 0, buf, BS), 0);
	ck_assert_int_eq(wr(&e, 7, 3, 1, 0), -ENOSPC);
	ck_assert_int_eq(io(&e, BIO_READ, 0, 0, buf, BS), 0);
	ck_assert_int_eq(io(&e, BIO_WRITE_ZEROES, 0, 0, NULL, BS), 0);
	ck_assert_int_eq(wr(&e, 7, 3, 1, 0), -ENOSPC);
	lower_tags(&e, tags, 4);
	ck_assert_int_eq(tags[2], 6);
	ck_assert_int_eq(tags[3], 0);
	/* fail at once: n = 0 */
	ck_assert_int_eq(fault_fail_after(e.fd, 0, FAULT_OP(BIO_READ), EIO), 0);
	ck_assert_int_eq(io(&e, BIO_READ, 0, 0, buf, BS), -EIO);
	ck_assert_int_eq(fault_clear(e.fd), 0);
	ck_assert_int_eq(io(&e, BIO_READ, 0, 0, buf, BS), 0);
	ck_assert_int_eq(fault_get_stats(e.fd, &st), 0);
	ck_assert_uint_eq(st.injected, 6);
	env_close(&e);
}
END_TEST

START_TEST(t_rules)
{
	struct env e;
	uint8_t buf[4 * BS];
	struct fault_rule once = {
		.offset = 8 * BS, .len = 8 * BS, .op_mask = FAULT_OP(BIO_WRITE),
		.err = -EIO, .one_shot = true,
	};
	struct fault_rule sticky = {
		.offset = 100 * BS, .len = BS, .op_mask = FAULT_OP(BIO_READ), .err = -ENODATA,
	};
	struct fault_rule flush = { .op_mask = FAULT_OP(BIO_FLUSH), .one_shot = true };
	struct fault_rule tail = { .offset = 200 * BS, .op_mask = FAULT_OPS_WRITE, .err = -EROFS };
	int id_once, id_sticky, id_tail;
	struct fault_stats st;

	env_open(&e);
	id_once = fault_add_rule(e.fd, &once);
	ck_assert_int_ge(id_once, 0);
	/* just before and just after the range: not touched */
	ck_assert_int_eq(wr(&e, 2, 0, 8, 0), 0);
	ck_assert_int_eq(wr(&e, 2, 16, 4, 0), 0);
	/* reads of the range pass: wrong op */
	ck_assert_int_eq(io(&e, BIO_READ, 0, 8 * BS, buf, 4 * BS), 0);
	/* a write overlapping its last block fails once */
	ck_assert_int_eq(wr(&e, 3, 15, 2, 0), -EIO);
	ck_assert_int_eq(wr(&e, 3, 15, 2, 0), 0);
	ck_assert_int_eq(fault_del_rule(e.fd, id_once), -ENOENT);	/* gone */

	id_sticky = fault_add_rule(e.fd, &sticky);
	ck_assert_int_gt(id_sticky, id_once);
	ck_assert_int_eq(io(&e, BIO_READ, 0, 100 * BS, buf, BS), -ENODATA);
	ck_assert_int_eq(io(&e, BIO_READ, 0, 98 * BS, buf, 4 * BS), -ENODATA);
	ck_assert_int_eq(io(&e, BIO_READ, 0, 101 * BS, buf, BS), 0);
	ck_assert_int_eq(io(&e, BIO_READ, 0, 99 * BS, buf, BS), 0);
	ck_assert_int_eq(wr(&e, 4, 100, 1, 0), 0);
	ck_assert_int_eq(io(&e, BIO_READ, 0, 100 * BS, buf, BS), -ENODATA);

	/* a flush rule matches whatever the range */
	ck_assert_int_ge(fault_add_rule(e.fd, &flush), 0);
	ck_assert_int_eq(io(&e, BIO_FLUSH, 0, 0, NULL, 0), -EIO);
	ck_assert_int_eq(io(&e, BIO_FLUSH, 0, 0, NULL, 0), 0);

	/* len 0: to the end of the device, for every kind of write */
	id_tail = fault_add_rule(e.fd, &tail);
	ck_assert_int_ge(id_tail, 0);
	ck_assert_int_eq(wr(&e, 5, NBLK - 1, 1, 0), -EROFS);
	ck_assert_int_eq(io(&e, BIO_DISCARD, 0, 300 * BS, NULL, BS), -EROFS);
	ck_assert_int_eq(io(&e, BIO_WRITE_ZEROES, 0, 199 * BS, NULL, 2 * BS), -EROFS);
	ck_assert_int_eq(wr(&e, 5, 199, 1, 0), 0);
	ck_assert_int_eq(fault_del_rule(e.fd, id_tail), 0);
	ck_assert_int_eq(wr(&e, 5, NBLK - 1, 1, 0), 0);

	ck_assert_int_eq(fault_del_rule(e.fd, id_sticky), 0);
	ck_assert_int_eq(io(&e, BIO_READ, 0, 100 * BS, buf, BS), 0);
	ck_assert_int_eq(tag_of(buf, 100, BS), 4);
	ck_assert_int_eq(fault_get_stats(e.fd, &st), 0);
	ck_assert_uint_eq(st.injected, 8);

	/* clear removes rules */
	ck_assert_int_ge(fault_add_rule(e.fd, &sticky), 0);
	ck_assert_int_eq(fault_clear(e.fd), 0);
	ck_assert_int_eq(io(&e, BIO_READ, 0, 100 * BS, buf, BS), 0);
	env_close(&e);
}
END_TEST

#define NRAND 2000

static unsigned random_run(struct env *e, uint64_t seed, uint8_t *pattern)
{
	uint8_t buf[BS];
	unsigned fails = 0;

	ck_assert_int_eq(fault_set_random(e->fd, 0.25, seed, FAULT_OP(BIO_READ), -EILSEQ), 0);
	for (unsigned i = 0; i < NRAND; i++) {
		int rc = io(e, BIO_READ, 0, (i % 64) * BS, buf, BS);

		ck_assert(rc == 0 || rc == -EILSEQ);
		pattern[i] = rc != 0;
		fails += rc != 0;
		/* writes are not in the mask: never fail, draw nothing */
		if (i % 10 == 0)
			ck_assert_int_eq(wr(e, 1, i % 64, 1, 0), 0);
	}
	return fails;
}

START_TEST(t_random)
{
	struct env e;
	static uint8_t p1[NRAND], p2[NRAND], p3[NRAND];
	unsigned n1, n2, n3;
	struct fault_stats st;

	env_open(&e);
	n1 = random_run(&e, 42, p1);
	ck_assert_uint_gt(n1, NRAND / 4 - 100);
	ck_assert_uint_lt(n1, NRAND / 4 + 100);
	ck_assert_int_eq(fault_get_stats(e.fd, &st), 0);
	ck_assert_uint_eq(st.injected, n1);
	n2 = random_run(&e, 42, p2);
	ck_assert_uint_eq(n1, n2);
	ck_assert(!memcmp(p1, p2, NRAND));		/* reproducible */
	n3 = random_run(&e, 43, p3);
	ck_assert(memcmp(p1, p3, NRAND));		/* another seed, another sequence */
	(void)n3;
	/* prob 0 turns it off; out of range is refused */
	ck_assert_int_eq(fault_set_random(e.fd, 0, 1, FAULT_OPS_ALL, 0), 0);
	ck_assert_int_eq(io(&e, BIO_READ, 0, 0, p1, BS), 0);
	ck_assert_int_eq(fault_set_random(e.fd, 1.5, 1, FAULT_OPS_ALL, 0), -EINVAL);
	/* prob 1 fails everything in the mask */
	ck_assert_int_eq(fault_set_random(e.fd, 1, 7, FAULT_OP(BIO_FLUSH), 0), 0);
	ck_assert_int_eq(io(&e, BIO_FLUSH, 0, 0, NULL, 0), -EIO);
	ck_assert_int_eq(io(&e, BIO_READ, 0, 0, p1, BS), 0);
	env_close(&e);
}
END_TEST

/* ------------------------------------------------------------ latency */

#define LAT_NS	(40ull * 1000 * 1000)

START_TEST(t_latency)
{
	struct env e;
	uint8_t buf[BS];
	struct io_res r;
	struct fault_rule rule = { .offset = 0, .len = BS, .op_mask = FAULT_OP(BIO_WRITE) };

	env_open(&e);
	ck_assert_int_eq(fault_set_latency(e.fd, LAT_NS, FAULT_OPS_ALL), 0);
	fill(buf, 3, 2, 1, BS);
	ck_assert_int_eq(io_start(&e, BIO_WRITE, 0, 2 * BS, buf, BS, &r), 0);
	io_wait(&e, &r);
	ck_assert_int_eq(r.status, 0);
	ck_assert_uint_ge(r.t_end - r.t_start, LAT_NS);
	ck_assert_int_eq(io_start(&e, BIO_FLUSH, 0, 0, NULL, 0, &r), 0);
	io_wait(&e, &r);
	ck_assert_uint_ge(r.t_end - r.t_start, LAT_NS);

	/* an injected error is delayed too */
	ck_assert_int_ge(fault_add_rule(e.fd, &rule), 0);
	ck_assert_int_eq(io_start(&e, BIO_WRITE, 0, 0, buf, BS, &r), 0);
	io_wait(&e, &r);
	ck_assert_int_eq(r.status, -EIO);
	ck_assert_uint_ge(r.t_end - r.t_start, LAT_NS);
	ck_assert_int_eq(fault_clear(e.fd), 0);

	/* only writes: a read is not held back (it ends well before) */
	ck_assert_int_eq(fault_set_latency(e.fd, 5 * LAT_NS, FAULT_OP(BIO_WRITE)), 0);
	ck_assert_int_eq(io_start(&e, BIO_READ, 0, 2 * BS, buf, BS, &r), 0);
	io_wait(&e, &r);
	ck_assert_int_eq(r.status, 0);
	ck_assert_uint_lt(r.t_end - r.t_start, 5 * LAT_NS);
	ck_assert_int_eq(tag_of(buf, 2, BS), 3);
	ck_assert_int_eq(io_start(&e, BIO_WRITE, 0, 2 * BS, buf, BS, &r), 0);
	io_wait(&e, &r);
	ck_assert_uint_ge(r.t_end - r.t_start, 5 * LAT_NS);

	/* off again */
	ck_assert_int_eq(fault_set_latency(e.fd, 0, FAULT_OPS_ALL), 0);
	ck_assert_int_eq(io_start(&e, BIO_WRITE, 0, 2 * BS, buf, BS, &r), 0);
	io_wait(&e, &r);
	ck_assert_uint_lt(r.t_end - r.t_start, 5 * LAT_NS);
	env_close(&e);
}
END_TEST

/* ------------------------------------------------------------ power cut */

#define PB	64	/* blocks the power tests look at */

static void set_tags(int *t, unsigned from, unsigned n, int tag)
{
	for (unsigned i = 0; i < n; i++)
		t[from + i] = tag;
}

/* The writes the drop-all and keep-all tests make after the baseline. */
static void some_writes(struct env *e, int *after)
{
	set_tags(after, 0, PB, 1);
	ck_assert_int_eq(wr(e, 2, 0, 8, 0), 0);
	set_tags(after, 0, 8, 2);
	ck_assert_int_eq(wr(e, 3, 4, 8, 0), 0);
	set_tags(after, 4, 8, 3);
	ck_assert_int_eq(io(e, BIO_WRITE_ZEROES, 0, 20 * BS, NULL, 4 * BS), 0);
	set_tags(after, 20, 4, 0);
	ck_assert_int_eq(io(e, BIO_DISCARD, 0, 30 * BS, NULL, 2 * BS), 0);
	set_tags(after, 30, 2, 0);
	ck_assert_int_eq(wr(e, 4, 40, 1, 0), 0);
	set_tags(after, 40, 1, 4);
	ck_assert_int_eq(fault_unflushed_count(e->fd), 5);
}

START_TEST(t_power_drop_all)
{
	struct env e;
	int base[PB], after[PB];
	uint8_t buf[BS];
	struct fault_stats st;
	struct fault_write wl[8];

	env_open(&e);
	baseline(&e, PB);
	set_tags(base, 0, PB, 1);
	some_writes(&e, after);
	expect_tags(&e, after, PB, "before the cut");	/* writes go down at once */
	ck_assert_int_eq(fault_unflushed_list(e.fd, wl, 8), 5);
	ck_assert_int_eq(wl[1].op, BIO_WRITE);
	ck_assert_uint_eq(wl[1].offset, 4 * BS);
	ck_assert_uint_eq(wl[1].len, 8 * BS);
	ck_assert_int_eq(wl[3].op, BIO_DISCARD);
	ck_assert_int_eq(fault_get_stats(e.fd, &st), 0);
	ck_assert_uint_eq(st.held_bytes, (8 + 8 + 4 + 2 + 1) * BS);

	ck_assert(fault_powered(e.fd));
	ck_assert_int_eq(fault_power_cut(e.fd, NULL), 0);
	ck_assert(!fault_powered(e.fd));
	expect_tags(&e, base, PB, "drop all");
	ck_assert_int_eq(fault_get_stats(e.fd, &st), 0);
	ck_assert_uint_eq(st.last_dropped, 5);
	ck_assert_uint_eq(st.last_kept, 0);
	ck_assert_uint_eq(st.held_bytes, 0);
	ck_assert_uint_eq(st.cuts, 1);
	ck_assert_int_eq(fault_power_cut(e.fd, NULL), -EALREADY);

	/* the machine is off */
	ck_assert_int_eq(io(&e, BIO_READ, 0, 0, buf, BS), -EIO);
	ck_assert_int_eq(wr(&e, 9, 0, 1, 0), -EIO);
	ck_assert_int_eq(io(&e, BIO_FLUSH, 0, 0, NULL, 0), -EIO);
	ck_assert_int_eq(io(&e, BIO_DISCARD, 0, 0, NULL, BS), -EIO);
	expect_tags(&e, base, PB, "off");

	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	ck_assert(fault_powered(e.fd));
	ck_assert_int_eq(fault_unflushed_count(e.fd), 0);
	ck_assert_int_eq(io(&e, BIO_READ, 0, 5 * BS, buf, BS), 0);
	ck_assert_int_eq(tag_of(buf, 5, BS), 1);
	/* recording goes on after the restore */
	ck_assert_int_eq(wr(&e, 9, 0, 1, 0), 0);
	ck_assert_int_eq(fault_unflushed_count(e.fd), 1);
	ck_assert_int_eq(fault_power_cut(e.fd, NULL), 0);
	expect_tags(&e, base, PB, "second cut");
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	env_close(&e);
}
END_TEST

START_TEST(t_power_keep_all)
{
	struct env e;
	int after[PB];
	struct fault_cut_policy keep = { .mode = FAULT_CUT_KEEP_ALL };
	struct fault_stats st;

	env_open(&e);
	baseline(&e, PB);
	some_writes(&e, after);
	ck_assert_int_eq(fault_power_cut(e.fd, &keep), 0);
	expect_tags(&e, after, PB, "keep all");
	ck_assert_int_eq(fault_get_stats(e.fd, &st), 0);
	ck_assert_uint_eq(st.last_kept, 5);
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	env_close(&e);
}
END_TEST

START_TEST(t_power_torn)
{
	struct env e;
	int got[PB], want[PB];
	uint8_t map[2] = { 0xa5, 0x0f };
	struct fault_choice tear = { .action = FAULT_TEAR, .tear_map = map };
	struct fault_choice tear_rnd = { .action = FAULT_TEAR };
	struct fault_cut_policy p = { .mode = FAULT_CUT_LIST, .choices = &tear, .nchoices = 1 };
	struct fault_stats st;
	bool mixed = false;

	/* an explicit map: exactly those blocks are new */
	env_open(&e);
	baseline(&e, PB);
	ck_assert_int_eq(wr(&e, 2, 8, 16, 0), 0);
	ck_assert_int_eq(fault_power_cut(e.fd, &p), 0);
	set_tags(want, 0, PB, 1);
	for (unsigned i = 0; i < 16; i++)
		if (map[i / 8] & (1u << (i % 8)))
			want[8 + i] = 2;
	expect_tags(&e, want, PB, "tear map");
	ck_assert_int_eq(fault_get_stats(e.fd, &st), 0);
	ck_assert_uint_eq(st.last_torn, 1);
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	env_close(&e);

	/* seeded tears and the random policy: each block is old or new, and
	 * the same seed gives the same result */
	for (uint64_t seed = 1; seed <= 40; seed++) {
		int again[PB];

		for (int round = 0; round < 2; round++) {
			struct fault_cut_policy rp = { .mode = FAULT_CUT_LIST, .seed = seed,
						       .choices = &tear_rnd, .nchoices = 1 };

			if (seed > 20)
				rp = (struct fault_cut_policy){ .mode = FAULT_CUT_RANDOM, .seed = seed };
			env_open(&e);
			baseline(&e, PB);
			ck_assert_int_eq(wr(&e, 2, 8, 16, 0), 0);
			ck_assert_int_eq(fault_power_cut(e.fd, &rp), 0);
			lower_tags(&e, round ? again : got, PB);
			ck_assert_int_eq(fault_power_restore(e.fd), 0);
			env_close(&e);
		}
		ck_assert(!memcmp(got, again, sizeof(got)));
		for (unsigned b = 0; b < PB; b++) {
			if (b >= 8 && b < 24)
				ck_assert_msg(got[b] == 1 || got[b] == 2, "block %u: %d", b, got[b]);
			else
				ck_assert_int_eq(got[b], 1);
		}
		{
			int n2 = 0;

			for (unsigned b = 8; b < 24; b++)
				n2 += got[b] == 2;
			mixed |= n2 > 0 && n2 < 16;
		}
	}
	ck_assert(mixed);
}
END_TEST

static void cut_list(struct env *e, const enum fault_action *a, size_t n)
{
	struct fault_choice ch[8];
	struct fault_cut_policy p = { .mode = FAULT_CUT_LIST, .choices = ch, .nchoices = n };

	for (size_t i = 0; i < n; i++)
		ch[i] = (struct fault_choice){ .action = a[i] };
	ck_assert_int_eq(fault_power_cut(e->fd, &p), 0);
}

START_TEST(t_power_overlap)
{
	static const enum fault_action combos[4][2] = {
		{ FAULT_KEEP, FAULT_DROP }, { FAULT_DROP, FAULT_DROP },
		{ FAULT_DROP, FAULT_KEEP }, { FAULT_KEEP, FAULT_KEEP },
	};
	static const int same[4] = { 2, 1, 3, 3 };	/* A=2, B=3, pre-flush=1 */
	struct env e;
	int want[PB];

	/* A then B over the same blocks */
	for (int c = 0; c < 4; c++) {
		env_open(&e);
		baseline(&e, PB);
		ck_assert_int_eq(wr(&e, 2, 0, 8, 0), 0);
		ck_assert_int_eq(wr(&e, 3, 0, 8, 0), 0);
		cut_list(&e, combos[c], 2);
		set_tags(want, 0, PB, 1);
		set_tags(want, 0, 8, same[c]);
		expect_tags(&e, want, PB, "same blocks");
		ck_assert_int_eq(fault_power_restore(e.fd), 0);
		env_close(&e);
	}
	/* A over 0-7, then B over 4-11 */
	for (int c = 0; c < 4; c++) {
		bool ka = combos[c][0] == FAULT_KEEP, kb = combos[c][1] == FAULT_KEEP;

		env_open(&e);
		baseline(&e, PB);
		ck_assert_int_eq(wr(&e, 2, 0, 8, 0), 0);
		ck_assert_int_eq(wr(&e, 3, 4, 8, 0), 0);
		cut_list(&e, combos[c], 2);
		set_tags(want, 0, PB, 1);
		if (ka)
			set_tags(want, 0, 8, 2);
		if (kb)
			set_tags(want, 4, 8, 3);
		expect_tags(&e, want, PB, "partial overlap");
		ck_assert_int_eq(fault_power_restore(e.fd), 0);
		env_close(&e);
	}
}
END_TEST

START_TEST(t_power_overlap_inflight)
{
	/* A and B submitted together, B overlapping A: B must read its
	 * pre-image after A has landed, or dropping B would bring back the
	 * wrong data */
	static const enum fault_action kd[2] = { FAULT_KEEP, FAULT_DROP };
	static const enum fault_action dk[2] = { FAULT_DROP, FAULT_KEEP };
	struct env e;
	uint8_t a[8 * BS], b[8 * BS], c[2 * BS];
	struct io_res ra, rb, rc;
	int want[PB];

	for (int round = 0; round < 2; round++) {
		env_open(&e);
		baseline(&e, PB);
		fill(a, 2, 0, 8, BS);
		fill(b, 3, 4, 8, BS);
		fill(c, 4, 2, 2, BS);
		ck_assert_int_eq(io_start(&e, BIO_WRITE, 0, 0, a, 8 * BS, &ra), 0);
		ck_assert_int_eq(io_start(&e, BIO_WRITE, 0, 4 * BS, b, 8 * BS, &rb), 0);
		ck_assert_int_eq(io_start(&e, BIO_WRITE, 0, 2 * BS, c, 2 * BS, &rc), 0);
		io_wait(&e, &ra);
		io_wait(&e, &rb);
		io_wait(&e, &rc);
		ck_assert_int_eq(ra.status, 0);
		ck_assert_int_eq(rb.status, 0);
		ck_assert_int_eq(rc.status, 0);
		ck_assert_int_eq(fault_unflushed_count(e.fd), 3);
		set_tags(want, 0, PB, 1);
		if (round == 0) {
			/* keep A, drop B, drop C */
			cut_list(&e, kd, 2);
			set_tags(want, 0, 8, 2);
		} else {
			/* drop A, keep B, drop C */
			cut_list(&e, dk, 2);
			set_tags(want, 4, 8, 3);
		}
		expect_tags(&e, want, PB, "overlapping in flight");
		ck_assert_int_eq(fault_power_restore(e.fd), 0);
		env_close(&e);
	}
}
END_TEST

START_TEST(t_power_split)
{
	/* a lower device with an io_boundary: the filter copies it, the core
	 * splits, and each piece is a write of its own */
	static const enum fault_action dk[2] = { FAULT_DROP, FAULT_KEEP };
	struct env e;
	int want[PB];
	struct fault_write wl[4];

	memset(&e, 0, sizeof(e));
	ck_assert_int_eq(blk_mem_create("mem0", DEV_SIZE, BS, &e.mem), 0);
	e.mem->io_boundary = 8 * BS;
	ck_assert_int_eq(blk_fault_create("fault0", e.mem, &e.fd), 0);
	ck_assert_uint_eq(e.fd->io_boundary, 8 * BS);
	ck_assert_int_eq(ev_loop_new(EV_AUTO, 64, &e.loop), 0);
	ck_assert_int_eq(blk_chan_open(e.fd, e.loop, &e.ch), 0);
	baseline(&e, PB);
	ck_assert_int_eq(wr(&e, 2, 4, 8, 0), 0);	/* blocks 4-7 and 8-11 */
	ck_assert_int_eq(fault_unflushed_list(e.fd, wl, 4), 2);
	ck_assert_uint_eq(wl[0].offset, 4 * BS);
	ck_assert_uint_eq(wl[0].len, 4 * BS);
	ck_assert_uint_eq(wl[1].offset, 8 * BS);
	cut_list(&e, dk, 2);
	set_tags(want, 0, PB, 1);
	set_tags(want, 8, 4, 2);
	expect_tags(&e, want, PB, "split");
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	env_close(&e);
}
END_TEST

START_TEST(t_power_fua)
{
	struct env e;
	int want[PB];

	/* a FUA write survives a drop-all cut, and is not at risk */
	env_open(&e);
	baseline(&e, PB);
	ck_assert_int_eq(wr(&e, 2, 0, 8, 0), 0);
	ck_assert_int_eq(wr(&e, 3, 2, 2, BIO_FUA), 0);
	ck_assert_int_eq(wr(&e, 4, 20, 2, BIO_FUA), 0);
	ck_assert_int_eq(fault_unflushed_count(e.fd), 1);
	ck_assert_int_eq(fault_power_cut(e.fd, NULL), 0);
	set_tags(want, 0, PB, 1);
	set_tags(want, 2, 2, 3);
	set_tags(want, 20, 2, 4);
	expect_tags(&e, want, PB, "fua");
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	env_close(&e);

	/* a plain write after a FUA one over the same blocks is at risk:
	 * dropping it leaves the FUA data */
	env_open(&e);
	baseline(&e, PB);
	ck_assert_int_eq(wr(&e, 3, 2, 2, BIO_FUA), 0);
	ck_assert_int_eq(wr(&e, 5, 0, 4, 0), 0);
	ck_assert_int_eq(fault_unflushed_count(e.fd), 1);
	ck_assert_int_eq(fault_power_cut(e.fd, NULL), 0);
	set_tags(want, 0, PB, 1);
	set_tags(want, 2, 2, 3);
	expect_tags(&e, want, PB, "after fua");
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	env_close(&e);
}
END_TEST

START_TEST(t_power_flush_bounds)
{
	struct env e;
	int want[PB];
	struct fault_write wl[2];
	struct fault_stats st;

	env_open(&e);
	baseline(&e, PB);
	ck_assert_int_eq(wr(&e, 2, 0, 4, 0), 0);
	ck_assert_int_eq(wr(&e, 3, 10, 1, 0), 0);
	ck_assert_int_eq(fault_unflushed_count(e.fd), 2);
	ck_assert_int_eq(io(&e, BIO_FLUSH, 0, 0, NULL, 0), 0);
	ck_assert_int_eq(fault_unflushed_count(e.fd), 0);
	ck_assert_int_eq(fault_get_stats(e.fd, &st), 0);
	ck_assert_uint_eq(st.held_bytes, 0);
	ck_assert_int_eq(wr(&e, 4, 2, 4, 0), 0);
	ck_assert_int_eq(fault_unflushed_list(e.fd, wl, 2), 1);
	ck_assert_uint_eq(wl[0].offset, 2 * BS);
	ck_assert_int_eq(fault_power_cut(e.fd, NULL), 0);
	set_tags(want, 0, PB, 1);
	set_tags(want, 0, 4, 2);
	set_tags(want, 10, 1, 3);
	expect_tags(&e, want, PB, "after flush");
	ck_assert_int_eq(fault_power_restore(e.fd), 0);

	/* a failed flush makes nothing durable */
	ck_assert_int_eq(wr(&e, 5, 30, 1, 0), 0);
	ck_assert_int_eq(fault_fail_after(e.fd, 0, FAULT_OP(BIO_FLUSH), 0), 0);
	ck_assert_int_eq(io(&e, BIO_FLUSH, 0, 0, NULL, 0), -EIO);
	ck_assert_int_eq(fault_unflushed_count(e.fd), 1);
	ck_assert_int_eq(fault_clear(e.fd), 0);

	/* recording off forgets; on again starts from the present contents */
	ck_assert_int_eq(fault_record(e.fd, false), 0);
	ck_assert_int_eq(fault_unflushed_count(e.fd), 0);
	ck_assert_int_eq(wr(&e, 6, 31, 1, 0), 0);
	ck_assert_int_eq(fault_unflushed_count(e.fd), 0);
	ck_assert_int_eq(fault_record(e.fd, true), 0);
	ck_assert_int_eq(wr(&e, 7, 32, 1, 0), 0);
	ck_assert_int_eq(fault_power_cut(e.fd, NULL), 0);
	set_tags(want, 30, 1, 5);
	set_tags(want, 31, 1, 6);
	expect_tags(&e, want, PB, "record off and on");
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	env_close(&e);
}
END_TEST

START_TEST(t_power_flush_race)
{
	/* A write that ends after a flush was submitted is not made durable by
	 * it, even if it ends before the flush does. The flush is made slow by
	 * the fault device underneath. */
	struct env e;
	struct io_res rf, rw;
	uint8_t buf[BS];
	int want[PB];

	env_open_stacked(&e);
	baseline(&e, PB);
	ck_assert_int_eq(fault_set_latency(e.mid, LAT_NS, FAULT_OP(BIO_FLUSH)), 0);
	ck_assert_int_eq(wr(&e, 2, 1, 1, 0), 0);	/* before the flush: durable */
	ck_assert_int_eq(io_start(&e, BIO_FLUSH, 0, 0, NULL, 0, &rf), 0);
	fill(buf, 3, 2, 1, BS);
	ck_assert_int_eq(io_start(&e, BIO_WRITE, 0, 2 * BS, buf, BS, &rw), 0);
	io_wait(&e, &rw);
	ck_assert_int_eq(rw.status, 0);
	ck_assert(!rf.done);
	ck_assert_int_eq(fault_unflushed_count(e.fd), 2);
	io_wait(&e, &rf);
	ck_assert_int_eq(rf.status, 0);
	ck_assert_int_eq(fault_unflushed_count(e.fd), 1);
	ck_assert_int_eq(fault_power_cut(e.fd, NULL), 0);
	set_tags(want, 0, PB, 1);
	set_tags(want, 1, 1, 2);
	expect_tags(&e, want, PB, "flush race");
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	env_close(&e);
}
END_TEST

START_TEST(t_record_limit)
{
	struct env e;
	struct fault_stats st;

	env_open(&e);
	baseline(&e, PB);
	ck_assert_int_eq(fault_set_record_limit(e.fd, 8 * BS), 0);
	ck_assert_int_eq(wr(&e, 2, 0, 8, 0), 0);
	ck_assert_int_eq(wr(&e, 2, 8, 1, 0), -ENOMEM);
	ck_assert_int_eq(wr(&e, 2, 8, 1, BIO_FUA), 0);	/* holds nothing */
	ck_assert_int_eq(fault_get_stats(e.fd, &st), 0);
	ck_assert_uint_eq(st.held_bytes, 8 * BS);
	ck_assert_int_eq(io(&e, BIO_FLUSH, 0, 0, NULL, 0), 0);
	ck_assert_int_eq(wr(&e, 2, 8, 1, 0), 0);
	env_close(&e);
}
END_TEST

/* Six overlapping writes of every kind after a flush. */
struct ew {
	enum bio_op	op;
	unsigned	blk, n;
	int		tag;	/* 0: zeros */
};
static const struct ew six[6] = {
	{ BIO_WRITE, 0, 8, 2 },
	{ BIO_WRITE, 4, 8, 3 },
	{ BIO_WRITE_ZEROES, 6, 4, 0 },
	{ BIO_WRITE, 2, 4, 5 },
	{ BIO_DISCARD, 8, 8, 0 },
	{ BIO_WRITE, 10, 4, 7 },
};
#define EB	20	/* blocks looked at: the six cover 0..15 */

static void do_six(struct env *e)
{
	for (int i = 0; i < 6; i++) {
		const struct ew *w = &six[i];

		if (w->op == BIO_WRITE)
			ck_assert_int_eq(wr(e, (unsigned)w->tag, w->blk, w->n, 0), 0);
		else
			ck_assert_int_eq(io(e, w->op, 0, w->blk * BS, NULL, w->n * BS), 0);
	}
	ck_assert_int_eq(fault_unflushed_count(e->fd), 6);
}

/* What a block holds after a crash that kept block b of write i when
 * kept(i, b): the newest such write's value, else the flushed one. */
static void model(bool (*kept)(int i, unsigned b, void *arg), void *arg, int *want)
{
	for (unsigned b = 0; b < EB; b++) {
		want[b] = 1;
		for (int i = 5; i >= 0; i--) {
			if (b < six[i].blk || b >= six[i].blk + six[i].n)
				continue;
			if (kept(i, b, arg)) {
				want[b] = six[i].tag;
				break;
			}
		}
	}
}

static bool kept_mask(int i, unsigned b, void *arg)
{
	return *(unsigned *)arg & (1u << i);
}

START_TEST(t_power_enumerate)
{
	for (unsigned mask = 0; mask < 64; mask++) {
		struct env e;
		struct fault_choice ch[6];
		struct fault_cut_policy p = { .mode = FAULT_CUT_LIST, .choices = ch, .nchoices = 6 };
		int want[EB];
		char what[32];

		for (int i = 0; i < 6; i++)
			ch[i] = (struct fault_choice){
				.action = (mask & (1u << i)) ? FAULT_KEEP : FAULT_DROP };
		env_open(&e);
		baseline(&e, EB);
		do_six(&e);
		ck_assert_int_eq(fault_power_cut(e.fd, &p), 0);
		model(kept_mask, &mask, want);
		snprintf(what, sizeof(what), "subset %#x", mask);
		expect_tags(&e, want, EB, what);
		ck_assert_int_eq(fault_power_restore(e.fd), 0);
		env_close(&e);
	}
}
END_TEST

struct tear_arg {
	uint8_t		maps[6][2];
};

static bool kept_map(int i, unsigned b, void *arg)
{
	struct tear_arg *t = arg;
	unsigned k = b - six[i].blk;

	return t->maps[i][k / 8] & (1u << (k % 8));
}

START_TEST(t_power_enumerate_torn)
{
	uint64_t rng = 12345;

	/* every write torn with a chosen map: block by block exact */
	for (int round = 0; round < 32; round++) {
		struct env e;
		struct tear_arg t;
		struct fault_choice ch[6];
		struct fault_cut_policy p = { .mode = FAULT_CUT_LIST, .choices = ch, .nchoices = 6 };
		int want[EB];

		for (int i = 0; i < 6; i++) {
			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			t.maps[i][0] = (uint8_t)(rng >> 40);
			t.maps[i][1] = (uint8_t)(rng >> 48);
			ch[i] = (struct fault_choice){ .action = FAULT_TEAR, .tear_map = t.maps[i] };
		}
		env_open(&e);
		baseline(&e, EB);
		do_six(&e);
		ck_assert_int_eq(fault_power_cut(e.fd, &p), 0);
		model(kept_map, &t, want);
		expect_tags(&e, want, EB, "torn");
		ck_assert_int_eq(fault_power_restore(e.fd), 0);
		env_close(&e);
	}
	/* the random policy: every block holds a value it really held */
	for (uint64_t seed = 1; seed <= 32; seed++) {
		struct env e;
		struct fault_cut_policy p = { .mode = FAULT_CUT_RANDOM, .seed = seed };
		int got[EB];

		env_open(&e);
		baseline(&e, EB);
		do_six(&e);
		ck_assert_int_eq(fault_power_cut(e.fd, &p), 0);
		lower_tags(&e, got, EB);
		for (unsigned b = 0; b < EB; b++) {
			bool ok = got[b] == 1;

			for (int i = 0; i < 6; i++)
				if (b >= six[i].blk && b < six[i].blk + six[i].n)
					ok |= got[b] == six[i].tag;
			ck_assert_msg(ok, "seed %llu block %u holds %d", (unsigned long long)seed,
				      b, got[b]);
		}
		ck_assert_int_eq(fault_power_restore(e.fd), 0);
		env_close(&e);
	}
}
END_TEST

/* Thousands of overlapping writes, half of them after the last flush: the
 * cut is exact and quick. */
#define MANY		4000
#define MANY_BLK	128

struct mw {
	unsigned	blk, n;
	int		tag;
	bool		keep;
};

START_TEST(t_power_many)
{
	static struct mw mw[MANY];
	static struct fault_choice ch[MANY];
	int at_flush[MANY_BLK], want[MANY_BLK];
	uint64_t rng = 77;

	for (int mode = 0; mode < 2; mode++) {
		struct env e;
		struct fault_cut_policy p = { .mode = FAULT_CUT_LIST, .choices = ch,
					      .nchoices = MANY / 2 };
		size_t nrisk = 0;
		uint64_t t0;

		if (mode == 1)
			p = (struct fault_cut_policy){ .mode = FAULT_CUT_DROP_ALL };
		env_open(&e);
		baseline(&e, MANY_BLK);
		set_tags(want, 0, MANY_BLK, 1);
		for (int i = 0; i < MANY; i++) {
			struct mw *m = &mw[i];

			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			m->n = 1 + (unsigned)(rng >> 33) % 8;
			m->blk = (unsigned)(rng >> 40) % (MANY_BLK - m->n + 1);
			m->tag = i + 2;
			m->keep = (rng >> 20) & 1;
			ck_assert_int_eq(wr(&e, (unsigned)m->tag, m->blk, m->n, 0), 0);
			set_tags(want, m->blk, m->n, m->tag);
			if (i == MANY / 2 - 1) {
				ck_assert_int_eq(io(&e, BIO_FLUSH, 0, 0, NULL, 0), 0);
				memcpy(at_flush, want, sizeof(want));
			} else if (i >= MANY / 2) {
				ch[nrisk++] = (struct fault_choice){
					.action = m->keep ? FAULT_KEEP : FAULT_DROP };
			}
		}
		ck_assert_int_eq(fault_unflushed_count(e.fd), MANY / 2);
		t0 = now_ns();
		ck_assert_int_eq(fault_power_cut(e.fd, &p), 0);
		ck_assert_uint_lt(now_ns() - t0, 2000ull * 1000 * 1000);
		memcpy(want, at_flush, sizeof(want));
		if (mode == 0) {
			for (unsigned b = 0; b < MANY_BLK; b++) {
				for (int i = MANY - 1; i >= MANY / 2; i--) {
					if (b >= mw[i].blk && b < mw[i].blk + mw[i].n && mw[i].keep) {
						want[b] = mw[i].tag;
						break;
					}
				}
			}
		}
		expect_tags(&e, want, MANY_BLK, mode ? "many, drop all" : "many, chosen");
		ck_assert_int_eq(fault_power_restore(e.fd), 0);
		env_close(&e);
	}
}
END_TEST

START_TEST(t_epoll)
{
	/* nothing in the filter needs io_uring: the same on an epoll loop */
	struct env e;
	int want[PB];
	struct fault_cut_policy keep = { .mode = FAULT_CUT_KEEP_ALL };

	memset(&e, 0, sizeof(e));
	ck_assert_int_eq(blk_mem_create("mem0", DEV_SIZE, BS, &e.mem), 0);
	ck_assert_int_eq(blk_fault_create("fault0", e.mem, &e.fd), 0);
	ck_assert_int_eq(ev_loop_new(EV_EPOLL, 64, &e.loop), 0);
	ck_assert_int_eq(blk_chan_open(e.fd, e.loop, &e.ch), 0);
	ck_assert_int_eq(fault_set_latency(e.fd, 1000 * 1000, FAULT_OPS_ALL), 0);
	baseline(&e, PB);
	ck_assert_int_eq(wr(&e, 2, 0, 4, 0), 0);
	ck_assert_int_eq(wr(&e, 3, 2, 4, 0), 0);
	ck_assert_int_eq(fault_power_cut(e.fd, &keep), 0);
	set_tags(want, 0, PB, 1);
	set_tags(want, 0, 2, 2);
	set_tags(want, 2, 4, 3);
	expect_tags(&e, want, PB, "epoll");
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	env_close(&e);
}
END_TEST

/* ------------------------------------------------------------ over real files */

#define FW		300	/* writes */
#define FW_BLK		32	/* over these blocks */
#define FW_QD		8

struct fwrite {
	unsigned	blk, n;
	bool		keep;
	uint8_t		buf[4 * BS];
	struct io_res	r;
};

static int file_dev(enum blk_file_backend b, struct blkdev **out)
{
	const char *bases[] = { getenv("SAND_TEST_TMPDIR"), "/var/tmp", "build", "." };
	struct blk_file_opts o = { .backend = b, .block_size = BS, .create_size = 4 << 20 };
	char path[512];
	int rc = -ENOENT;

	for (size_t i = 0; i < ARRAY_SIZE(bases) && rc; i++) {
		int fdx;

		if (!bases[i])
			continue;
		snprintf(path, sizeof(path), "%s/sand-fault-XXXXXX", bases[i]);
		fdx = mkstemp(path);
		if (fdx < 0)
			continue;
		close(fdx);
		unlink(path);		/* blk_file_open creates it at create_size */
		rc = blk_file_open("file0", path, &o, out);
		unlink(path);		/* open: gone when closed */
	}
	return rc;
}

/* The filter over each file backend, where writes really are in flight for
 * a while: many overlapping writes at a queue depth of 8, then a cut with a
 * chosen keep/drop per write, checked block by block. */
START_TEST(t_power_file)
{
	static const enum blk_file_backend bk[] = { BLK_FILE_URING, BLK_FILE_AIO, BLK_FILE_PSYNC };
	static struct fwrite fw[FW];
	static struct fault_choice ch[FW];
	struct fault_cut_policy p = { .mode = FAULT_CUT_LIST, .choices = ch, .nchoices = FW };
	struct env e;
	int want[PB];
	uint64_t rng = 99 + (uint64_t)_i;
	unsigned next = 0, done = 0;
	uint8_t buf[BS];

	memset(&e, 0, sizeof(e));
	ck_assert_int_eq(file_dev(bk[_i], &e.mem), 0);
	ck_assert_int_eq(blk_fault_create("fault0", e.mem, &e.fd), 0);
	ck_assert_int_eq(ev_loop_new(EV_AUTO, 64, &e.loop), 0);
	ck_assert_int_eq(blk_chan_open(e.fd, e.loop, &e.ch), 0);
	baseline(&e, PB);
	set_tags(want, 0, PB, 1);
	for (unsigned i = 0; i < FW; i++) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		fw[i].n = 1 + (unsigned)(rng >> 33) % 4;
		fw[i].blk = (unsigned)(rng >> 40) % (FW_BLK - fw[i].n + 1);
		fw[i].keep = (rng >> 21) & 1;
		fill(fw[i].buf, i + 2, fw[i].blk, fw[i].n, BS);
		ch[i] = (struct fault_choice){ .action = fw[i].keep ? FAULT_KEEP : FAULT_DROP };
	}
	while (done < FW) {
		uint64_t deadline = now_ns() + 10ull * 1000 * 1000 * 1000;

		while (next < FW && next - done < FW_QD) {
			ck_assert_int_eq(io_start(&e, BIO_WRITE, 0, fw[next].blk * BS, fw[next].buf,
						  fw[next].n * BS, &fw[next].r), 0);
			next++;
		}
		ev_run_once(e.loop, 100);
		while (done < next && fw[done].r.done) {
			ck_assert_int_eq(fw[done].r.status, 0);
			done++;
		}
		ck_assert(now_ns() < deadline);
	}
	ck_assert_int_eq(fault_unflushed_count(e.fd), FW);
	ck_assert_int_eq(fault_power_cut(e.fd, &p), 0);
	for (unsigned b = 0; b < FW_BLK; b++)
		for (int i = FW - 1; i >= 0; i--)
			if (fw[i].keep && b >= fw[i].blk && b < fw[i].blk + fw[i].n) {
				want[b] = i + 2;
				break;
			}
	expect_tags(&e, want, PB, blk_file_backend_name(bk[_i]));
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	for (unsigned b = 0; b < FW_BLK; b++) {
		ck_assert_int_eq(io(&e, BIO_READ, 0, b * BS, buf, BS), 0);
		ck_assert_int_eq(tag_of(buf, b, BS), want[b]);
	}
	env_close(&e);
}
END_TEST

/* ------------------------------------------------------------ cuts and I/O in flight */

START_TEST(t_cut_inflight)
{
	struct env e;
	uint8_t buf[2 * BS];
	struct io_res r, r2;
	int want[PB];
	struct fault_stats st;
	struct fault_cut_policy keep = { .mode = FAULT_CUT_KEEP_ALL };

	/* a write still reading its pre-image never lands */
	env_open(&e);
	baseline(&e, PB);
	fill(buf, 2, 3, 1, BS);
	ck_assert_int_eq(io_start(&e, BIO_WRITE, 0, 3 * BS, buf, BS, &r), 0);
	fill(buf + BS, 3, 3, 1, BS);
	ck_assert_int_eq(io_start(&e, BIO_WRITE, 0, 3 * BS, buf + BS, BS, &r2), 0); /* waits */
	ck_assert_int_eq(fault_power_cut(e.fd, &keep), 0);
	io_wait(&e, &r);
	io_wait(&e, &r2);
	ck_assert_int_eq(r.status, -EIO);
	ck_assert_int_eq(r2.status, -EIO);
	set_tags(want, 0, PB, 1);
	expect_tags(&e, want, PB, "pre-image in flight");
	ck_assert_int_eq(fault_get_stats(e.fd, &st), 0);
	ck_assert_uint_eq(st.held_bytes, 0);
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	ck_assert_int_eq(wr(&e, 4, 3, 1, 0), 0);
	set_tags(want, 3, 1, 4);
	expect_tags(&e, want, PB, "after restore");
	env_close(&e);

	/* a write that landed but whose completion is delayed: the cut decides
	 * its fate, and the host sees -EIO */
	for (int round = 0; round < 2; round++) {
		env_open(&e);
		baseline(&e, PB);
		ck_assert_int_eq(fault_set_latency(e.fd, 200ull * 1000 * 1000, FAULT_OP(BIO_WRITE)), 0);
		fill(buf, 2, 3, 1, BS);
		ck_assert_int_eq(io_start(&e, BIO_WRITE, 0, 3 * BS, buf, BS, &r), 0);
		for (int i = 0; i < 100 && fault_unflushed_count(e.fd) < 1; i++)
			ev_run_once(e.loop, 0);
		ck_assert_int_eq(fault_unflushed_count(e.fd), 1);
		ck_assert(!r.done);
		ck_assert_int_eq(fault_power_cut(e.fd, round ? &keep : NULL), 0);
		io_wait(&e, &r);
		ck_assert_int_eq(r.status, -EIO);
		set_tags(want, 0, PB, 1);
		set_tags(want, 3, 1, round ? 2 : 1);
		expect_tags(&e, want, PB, "landed, not acknowledged");
		/* the power was restored before a slow completion: still -EIO */
		ck_assert_int_eq(fault_power_restore(e.fd), 0);
		ck_assert_int_eq(io_start(&e, BIO_WRITE, 0, 5 * BS, buf, BS, &r), 0);
		for (int i = 0; i < 100 && fault_unflushed_count(e.fd) < 1; i++)
			ev_run_once(e.loop, 0);
		ck_assert_int_eq(fault_power_cut(e.fd, &keep), 0);
		ck_assert_int_eq(fault_power_restore(e.fd), 0);
		io_wait(&e, &r);
		ck_assert_int_eq(r.status, -EIO);
		ck_assert_int_eq(fault_set_latency(e.fd, 0, 0), 0);
		ck_assert_int_eq(io(&e, BIO_READ, 0, 0, buf, BS), 0);
		env_close(&e);
	}
}
END_TEST

struct cutter {
	struct blkdev	*fd;
	int		rc;
	bool		done;		/* atomic */
	uint64_t	t_done;
};

static void *cutter_main(void *arg)
{
	struct cutter *c = arg;

	c->rc = fault_power_cut(c->fd, NULL);
	c->t_done = now_ns();
	__atomic_store_n(&c->done, true, __ATOMIC_RELEASE);
	return NULL;
}

START_TEST(t_cut_waits)
{
	/* A write that is on the lower device when another thread cuts the
	 * power: the cut waits for it, then undoes it. */
	struct env e;
	struct cutter c = { 0 };
	pthread_t thr;
	struct io_res r;
	uint8_t buf[BS];
	int want[PB];

	env_open_stacked(&e);
	baseline(&e, PB);
	ck_assert_int_eq(fault_set_latency(e.mid, LAT_NS, FAULT_OPS_WRITE), 0);
	fill(buf, 2, 50, 1, BS);
	ck_assert_int_eq(io_start(&e, BIO_WRITE, 0, 50 * BS, buf, BS, &r), 0);
	for (int i = 0; i < 100 && fault_unflushed_count(e.fd) < 1; i++)
		ev_run_once(e.loop, 0);
	ck_assert_int_eq(fault_unflushed_count(e.fd), 1);	/* on the lower device */
	c.fd = e.fd;
	ck_assert_int_eq(pthread_create(&thr, NULL, cutter_main, &c), 0);
	for (int i = 0; i < 10000 && fault_powered(e.fd); i++)
		usleep(100);
	ck_assert(!fault_powered(e.fd));
	io_wait(&e, &r);
	ck_assert_int_eq(r.status, -EIO);
	while (!__atomic_load_n(&c.done, __ATOMIC_ACQUIRE))
		ev_run_once(e.loop, 1);
	ck_assert_int_eq(pthread_join(thr, NULL), 0);
	ck_assert_int_eq(c.rc, 0);
	ck_assert_uint_ge(c.t_done - r.t_start, LAT_NS);
	set_tags(want, 0, PB, 1);
	expect_tags(&e, want, PB, "cut waited");
	ck_assert_int_eq(fault_power_restore(e.fd), 0);

	/* the same with recording off: the cut still waits, and the write,
	 * which nobody recorded, stays */
	ck_assert_int_eq(fault_record(e.fd, false), 0);
	fill(buf, 3, 51, 1, BS);
	ck_assert_int_eq(io_start(&e, BIO_WRITE, 0, 51 * BS, buf, BS, &r), 0);
	ev_run_once(e.loop, 0);
	memset(&c, 0, sizeof(c));
	c.fd = e.fd;
	ck_assert_int_eq(pthread_create(&thr, NULL, cutter_main, &c), 0);
	for (int i = 0; i < 10000 && fault_powered(e.fd); i++)
		usleep(100);
	ck_assert(!fault_powered(e.fd));
	io_wait(&e, &r);
	ck_assert_int_eq(r.status, -EIO);
	while (!__atomic_load_n(&c.done, __ATOMIC_ACQUIRE))
		ev_run_once(e.loop, 1);
	ck_assert_int_eq(pthread_join(thr, NULL), 0);
	ck_assert_int_eq(c.rc, 0);
	ck_assert_uint_ge(c.t_done - r.t_start, LAT_NS);
	set_tags(want, 51, 1, 3);
	expect_tags(&e, want, PB, "unrecorded write");
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	env_close(&e);
}
END_TEST

START_TEST(t_record_off_inflight)
{
	/* recording stopped while a recorded write is on the lower device:
	 * the record goes when the write ends */
	struct env e;
	struct io_res r;
	uint8_t buf[BS];
	struct fault_stats st;
	struct fault_choice bad = { .action = (enum fault_action)7 };
	struct fault_cut_policy p = { .mode = FAULT_CUT_LIST, .choices = &bad, .nchoices = 1 };

	env_open_stacked(&e);
	baseline(&e, PB);
	ck_assert_int_eq(fault_set_latency(e.mid, LAT_NS, FAULT_OPS_WRITE), 0);
	fill(buf, 2, 5, 1, BS);
	ck_assert_int_eq(io_start(&e, BIO_WRITE, 0, 5 * BS, buf, BS, &r), 0);
	for (int i = 0; i < 100 && fault_unflushed_count(e.fd) < 1; i++)
		ev_run_once(e.loop, 0);
	ck_assert_int_eq(fault_unflushed_count(e.fd), 1);
	ck_assert_int_eq(fault_record(e.fd, false), 0);
	ck_assert_int_eq(fault_unflushed_count(e.fd), 0);
	ck_assert_int_eq(fault_record(e.fd, true), 0);
	io_wait(&e, &r);
	ck_assert_int_eq(r.status, 0);
	ck_assert_int_eq(fault_unflushed_count(e.fd), 0);
	ck_assert_int_eq(fault_get_stats(e.fd, &st), 0);
	ck_assert_uint_eq(st.held_bytes, 0);
	/* a bad policy is refused before the power goes */
	ck_assert_int_eq(fault_power_cut(e.fd, &p), -EINVAL);
	ck_assert(fault_powered(e.fd));
	env_close(&e);
}
END_TEST

/* Writers on their own loops, hammering overlapping blocks with no flush,
 * while the main thread cuts the power. */
#define NWRITERS	2
#define QD		8
#define WB		32	/* blocks written */

struct writer {
	struct blkdev	*fd;
	struct ev_loop	*loop;
	struct blkchan	*ch;
	uint64_t	rng;
	unsigned	tag_base;
	unsigned	inflight;
	unsigned	ok, failed;
	bool		stop;
	uint8_t		bufs[QD][4 * BS];
	struct io_res	res[QD];
	pthread_t	thr;
};

static void writer_submit(struct writer *w, int slot);

static void writer_end(struct bio *bio, int status)
{
	struct writer *w = bio->end_arg;
	int slot = (int)(bio->iov[0].iov_base == NULL ? 0 :
			 ((uint8_t *)bio->iov[0].iov_base - &w->bufs[0][0]) / (4 * BS));

	w->inflight--;
	if (status) {
		ck_assert_int_eq(status, -EIO);
		w->failed++;
		w->stop = true;
		return;
	}
	__atomic_add_fetch(&w->ok, 1, __ATOMIC_RELEASE);
	if (!w->stop)
		writer_submit(w, slot);
}

static void writer_submit(struct writer *w, int slot)
{
	unsigned n, blk, tag;
	int rc;

	w->rng = w->rng * 6364136223846793005ull + 1442695040888963407ull;
	n = 1 + (unsigned)(w->rng >> 33) % 4;
	blk = (unsigned)(w->rng >> 40) % (WB - n + 1);
	tag = w->tag_base + w->ok + w->failed + w->inflight;
	fill(w->bufs[slot], tag, blk, n, BS);
	{
		struct iovec iov = { .iov_base = w->bufs[slot], .iov_len = (size_t)n * BS };

		rc = blk_rw(w->ch, BIO_WRITE, 0, &iov, 1, (uint64_t)blk * BS,
			    (uint64_t)n * BS, writer_end, w);
	}
	ck_assert_int_eq(rc, 0);
	w->inflight++;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	bool closed = false;

	ck_assert_int_eq(blk_chan_open(w->fd, w->loop, &w->ch), 0);
	for (int s = 0; s < QD; s++)
		writer_submit(w, s);
	while (w->inflight)
		ev_run_once(w->loop, 100);
	blk_chan_close(w->ch, closed_cb, &closed);
	while (!closed)
		ev_run_once(w->loop, 10);
	return NULL;
}

/* Until every writer has had n writes acknowledged (a loaded machine may
 * start a thread late: a fixed sleep is not enough; bounded: 60 s). */
static void writers_going(struct writer *w, unsigned n)
{
	for (int i = 0; i < NWRITERS; i++)
		for (int t = 0; __atomic_load_n(&w[i].ok, __ATOMIC_ACQUIRE) < n; t++) {
			ck_assert_msg(t < 60000, "writer %d does not get going", i);
			usleep(1000);
		}
}

START_TEST(t_cut_threads)
{
	struct env e;
	static struct writer w[NWRITERS];
	int want[PB], after[PB];
	uint8_t buf[BS];

	/* writes stay in flight on the lower device for a while: the cut must
	 * wait for them */
	env_open_stacked(&e);
	baseline(&e, PB);
	ck_assert_int_eq(fault_set_latency(e.mid, 2 * 1000 * 1000, FAULT_OPS_WRITE), 0);
	set_tags(want, 0, PB, 1);
	for (int i = 0; i < NWRITERS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].fd = e.fd;
		w[i].rng = 1000 + (uint64_t)i;
		w[i].tag_base = 100 + 100000u * (unsigned)i;
		ck_assert_int_eq(ev_loop_new(EV_AUTO, 64, &w[i].loop), 0);
		ck_assert_int_eq(pthread_create(&w[i].thr, NULL, writer_main, &w[i]), 0);
	}
	writers_going(w, 8);
	ck_assert_int_eq(fault_power_cut(e.fd, NULL), 0);
	/* nothing written before the cut survives it ... */
	expect_tags(&e, want, PB, "cut under load");
	for (int i = 0; i < NWRITERS; i++) {
		ck_assert_int_eq(pthread_join(w[i].thr, NULL), 0);
		ev_loop_free(w[i].loop);
		ck_assert_uint_gt(w[i].ok, 0);
		ck_assert_uint_gt(w[i].failed, 0);
	}
	/* ... and nothing in flight landed after it */
	expect_tags(&e, want, PB, "after the writers stopped");
	ck_assert_int_eq(io(&e, BIO_READ, 0, 0, buf, BS), -EIO);
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	ck_assert_int_eq(io(&e, BIO_READ, 0, 0, buf, BS), 0);
	ck_assert_int_eq(tag_of(buf, 0, BS), 1);

	/* the same with a random policy: every block is whole and holds the
	 * baseline or a value some writer wrote there */
	for (int i = 0; i < NWRITERS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].fd = e.fd;
		w[i].rng = 2000 + (uint64_t)i;
		w[i].tag_base = 100 + 100000u * (unsigned)i;
		ck_assert_int_eq(ev_loop_new(EV_AUTO, 64, &w[i].loop), 0);
		ck_assert_int_eq(pthread_create(&w[i].thr, NULL, writer_main, &w[i]), 0);
	}
	writers_going(w, 8);
	{
		struct fault_cut_policy p = { .mode = FAULT_CUT_RANDOM, .seed = 9 };

		ck_assert_int_eq(fault_power_cut(e.fd, &p), 0);
	}
	lower_tags(&e, after, PB);
	for (int i = 0; i < NWRITERS; i++) {
		ck_assert_int_eq(pthread_join(w[i].thr, NULL), 0);
		ev_loop_free(w[i].loop);
	}
	for (unsigned b = 0; b < PB; b++) {
		ck_assert_int_ge(after[b], 1);
		if (b >= WB)
			ck_assert_int_eq(after[b], 1);
	}
	expect_tags(&e, after, PB, "random cut, after the writers stopped");
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	env_close(&e);
}
END_TEST

static Suite *fault_suite(void)
{
	Suite *s = suite_create("fault");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, t_passthrough);
	tcase_add_test(tc, t_passthrough_4k);
	tcase_add_test(tc, t_not_fault);
	tcase_add_test(tc, t_fail_after);
	tcase_add_test(tc, t_rules);
	tcase_add_test(tc, t_random);
	tcase_add_test(tc, t_latency);
	tcase_add_test(tc, t_power_drop_all);
	tcase_add_test(tc, t_power_keep_all);
	tcase_add_test(tc, t_power_torn);
	tcase_add_test(tc, t_power_overlap);
	tcase_add_test(tc, t_power_overlap_inflight);
	tcase_add_test(tc, t_power_fua);
	tcase_add_test(tc, t_power_split);
	tcase_add_test(tc, t_power_flush_bounds);
	tcase_add_test(tc, t_power_flush_race);
	tcase_add_test(tc, t_record_limit);
	tcase_add_test(tc, t_power_enumerate);
	tcase_add_test(tc, t_power_enumerate_torn);
	tcase_add_test(tc, t_power_many);
	tcase_add_loop_test(tc, t_power_file, 0, 3);
	tcase_add_test(tc, t_epoll);
	tcase_add_test(tc, t_cut_inflight);
	tcase_add_test(tc, t_cut_waits);
	tcase_add_test(tc, t_record_off_inflight);
	tcase_add_test(tc, t_cut_threads);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(fault_suite());
	int nfail;

	srunner_run_all(sr, CK_NORMAL);
	nfail = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nfail ? EXIT_FAILURE : EXIT_SUCCESS;
}
