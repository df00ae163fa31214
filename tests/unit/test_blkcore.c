/* SPDX-License-Identifier: MIT */
/*
 * The block-device core (common/blkdev.c): splitting at io_boundary and
 * max_io, refusals and errors in the middle of a split, bio-pool
 * exhaustion, the iovec helpers, the registry and claims, and closing.
 *
 * A recording device ("rec") remembers every bio the core hands it, checks
 * that none crosses the boundary or exceeds max_io, keeps its data in a
 * flat buffer, can refuse or fail the bio at a given offset, and completes
 * on the next loop turn as the contract says.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/ev.h"

#define REC_SIZE	(4u << 20)
#define REC_MAX		4096

struct rec_bio {
	int	status;
};

struct rec_entry {
	enum bio_op	op;
	uint64_t	offset, len;
	int		iovcnt;
};

struct rec_dev {
	struct blkdev	bd;
	uint8_t		*data;
	struct rec_entry log[REC_MAX];
	unsigned	nlog;
	unsigned	violations;	/* bios that crossed a boundary or max_io */
	bool		in_submit;
	uint64_t	refuse_at;	/* refuse the bio starting here ... */
	int		refuse_rc;	/* ... with this (0: never) */
	int		refuse_times;	/* ... this many times (0: always) */
	uint64_t	fail_at;	/* end the bio starting here ... */
	int		fail_status;	/* ... with this (0: never) */
	bool		no_discard;
};

static struct rec_dev *to_rec(struct blkdev *bd) { return container_of(bd, struct rec_dev, bd); }

static void rec_close(struct blkdev *bd)
{
	struct rec_dev *r = to_rec(bd);

	free(r->data);
	free(r);
}

static bool rec_supports(struct blkdev *bd, enum bio_op op)
{
	return op < BIO_OP_MAX && !(op == BIO_DISCARD && to_rec(bd)->no_discard);
}

static void rec_done(struct ev_task *t)
{
	struct bio *bio = container_of(t, struct bio, task);
	struct rec_bio *rb = bio_ctx(bio);

	bio_complete(bio, rb->status);
}

static int rec_submit(struct blkdev *bd, struct blkchan *ch, struct bio *bio)
{
	struct rec_dev *r = to_rec(bd);
	struct rec_bio *rb = bio_ctx(bio);

	if (r->refuse_rc && bio->offset == r->refuse_at && bio->op != BIO_FLUSH) {
		int rc = r->refuse_rc;

		if (r->refuse_times && --r->refuse_times == 0)
			r->refuse_rc = 0;
		return rc;
	}
	if (bio->op != BIO_FLUSH) {
		if (bd->io_boundary &&
		    bio->offset / bd->io_boundary != (bio->offset + bio->len - 1) / bd->io_boundary)
			r->violations++;
		if (bd->max_io && bio->len > bd->max_io)
			r->violations++;
		if (bio->op == BIO_READ || bio->op == BIO_WRITE)
			ck_assert_uint_eq(iov_total(bio->iov, bio->iovcnt), bio->len);
	}
	if (r->nlog < REC_MAX)
		r->log[r->nlog++] = (struct rec_entry){ bio->op, bio->offset, bio->len, bio->iovcnt };
	switch (bio->op) {
	case BIO_READ:
		buf_to_iov(bio->iov, bio->iovcnt, 0, r->data + bio->offset, bio->len);
		break;
	case BIO_WRITE:
		iov_to_buf(bio->iov, bio->iovcnt, 0, r->data + bio->offset, bio->len);
		break;
	case BIO_DISCARD:
	case BIO_WRITE_ZEROES:
		memset(r->data + bio->offset, 0, bio->len);
		break;
	default:
		break;
	}
	rb->status = r->fail_status && bio->offset == r->fail_at ? r->fail_status : 0;
	ev_defer(ch->loop, &bio->task, rec_done);
	return 0;
}

static const struct blkdev_ops rec_ops = {
	.name = "rec",
	.bio_ctx_size = sizeof(struct rec_bio),
	.close = rec_close,
	.supports = rec_supports,
	.submit = rec_submit,
};

static struct rec_dev *rec_new(const char *name, uint32_t bs, uint32_t boundary, uint32_t max_io)
{
	struct rec_dev *r = calloc(1, sizeof(*r));

	ck_assert_ptr_nonnull(r);
	blkdev_init(&r->bd, &rec_ops, name);
	r->bd.block_size = bs;
	r->bd.size = REC_SIZE;
	r->bd.io_boundary = boundary;
	r->bd.max_io = max_io;
	r->data = calloc(1, REC_SIZE);
	ck_assert_ptr_nonnull(r->data);
	return r;
}

/* ---------------------------------------------------------------- helpers */

struct op {
	int	ends;
	int	status;
};

static unsigned pending;
static bool in_submit;

static void op_end(struct bio *bio, int status)
{
	struct op *o = bio->end_arg;

	ck_assert_msg(!in_submit, "end ran inside submit");
	o->ends++;
	o->status = status;
	pending--;
}

static int rw(struct blkchan *ch, enum bio_op op, uint32_t flags, const struct iovec *iov,
	      int iovcnt, uint64_t off, uint64_t len, struct op *o)
{
	int rc;

	in_submit = true;
	rc = blk_rw(ch, op, flags, iov, iovcnt, off, len, op_end, o);
	in_submit = false;
	if (!rc)
		pending++;
	return rc;
}

static void wait_all(struct ev_loop *loop)
{
	uint64_t end = now_ns() + 10000000000ull;

	while (pending) {
		ck_assert_msg(now_ns() < end, "timed out");
		ck_assert_int_ge(ev_run_once(loop, 50), 0);
	}
}

static uint8_t pat(uint64_t x, unsigned seed)
{
	return (uint8_t)((x >> 9) * 2654435761u + seed * 131 + x * 7);
}

/* A scatter list over mem: pieces of odd lengths with gaps, not aligned. */
static struct iovec *odd_iov(uint8_t *mem, uint64_t len, int *cnt)
{
	struct iovec *iov = calloc(len + 1, sizeof(*iov));
	size_t pos = 1;
	int n = 0;

	for (uint64_t left = len; left; n++) {
		size_t piece = MIN((size_t)(1 + (n * 977) % 3001), (size_t)left);

		iov[n].iov_base = mem + pos;
		iov[n].iov_len = piece;
		pos += piece + 1 + n % 2;
		left -= piece;
	}
	*cnt = n;
	return iov;
}

static unsigned chan_free_bios(struct blkchan *ch)
{
	struct list_head *pos;
	unsigned n = 0;

	list_for_each(pos, &ch->free_bios)
		n++;
	return n;
}

struct env {
	struct ev_loop	*loop;
	struct rec_dev	*r;
	struct blkchan	*ch;
};

static void env_open(struct env *e, uint32_t bs, uint32_t boundary, uint32_t max_io)
{
	pending = 0;
	ck_assert_int_eq(ev_loop_new(EV_AUTO, 64, &e->loop), 0);
	e->r = rec_new("rec0", bs, boundary, max_io);
	ck_assert_int_eq(blk_chan_open(&e->r->bd, e->loop, &e->ch), 0);
}

static void closed_cb(void *arg)
{
	(*(int *)arg)++;
}

static void env_close(struct env *e)
{
	int closed = 0;

	ck_assert_uint_eq(e->ch->inflight, 0);
	/* every bio the core took from the pool went back to it */
	ck_assert_uint_eq(chan_free_bios(e->ch), e->ch->nbios);
	blk_chan_close(e->ch, closed_cb, &closed);
	ck_assert_int_eq(closed, 1);
	ck_assert_int_eq(blkdev_close(&e->r->bd), 0);
	ev_loop_free(e->loop);
}

/* Write [off, off+len) through an odd scatter list and read it back through
 * another; check the device's bytes and the read. */
static void split_roundtrip(struct env *e, uint64_t off, uint64_t len, unsigned seed)
{
	uint8_t *wm = malloc(3 * len + 16), *rm = malloc(3 * len + 16), *flat = malloc(len);
	struct iovec *wi, *ri;
	struct op o = { 0 };
	int wn, rn;

	wi = odd_iov(wm, len, &wn);
	ri = odd_iov(rm, len, &rn);
	for (uint64_t i = 0; i < len; i++)
		flat[i] = pat(off + i, seed);
	buf_to_iov(wi, wn, 0, flat, len);
	ck_assert_int_eq(rw(e->ch, BIO_WRITE, 0, wi, wn, off, len, &o), 0);
	wait_all(e->loop);
	ck_assert_int_eq(o.ends, 1);
	ck_assert_int_eq(o.status, 0);
	ck_assert_int_eq(memcmp(e->r->data + off, flat, len), 0);
	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(rw(e->ch, BIO_READ, 0, ri, rn, off, len, &o), 0);
	wait_all(e->loop);
	ck_assert_int_eq(o.ends, 1);
	ck_assert_int_eq(o.status, 0);
	memset(flat, 0, len);
	iov_to_buf(ri, rn, 0, flat, len);
	for (uint64_t i = 0; i < len; i++)
		ck_assert_msg(flat[i] == pat(off + i, seed), "read byte %llu wrong",
			      (unsigned long long)(off + i));
	free(wi);
	free(ri);
	free(wm);
	free(rm);
	free(flat);
}

/* The recorded bios cover [off, off+len) exactly, in order, each within
 * the limits. */
static void check_log(struct rec_dev *r, unsigned from, uint64_t off, uint64_t len)
{
	uint64_t at = off;

	ck_assert_uint_eq(r->violations, 0);
	for (unsigned i = from; i < r->nlog; i++) {
		ck_assert_uint_eq(r->log[i].offset, at);
		if (r->bd.io_boundary)
			ck_assert_uint_le(r->log[i].offset % r->bd.io_boundary + r->log[i].len,
					  r->bd.io_boundary);
		if (r->bd.max_io)
			ck_assert_uint_le(r->log[i].len, r->bd.max_io);
		at += r->log[i].len;
	}
	ck_assert_uint_eq(at, off + len);
}

/* ---------------------------------------------------------------- splitting */

START_TEST(test_split_boundary)
{
	static const struct { uint32_t bs, boundary, max_io; uint64_t off, len; unsigned children; } c[] = {
		{ 512, 65536, 0, 60 * 1024, 300 * 1024, 6 },	/* 4K + 4*64K + 40K */
		{ 512, 0, 16384, 512, 100 * 1024, 7 },		/* 6*16K + 4K */
		{ 4096, 65536, 24576, 61440, 200 * 1024, 11 },
		{ 512, 4096, 0, 3584, 1024, 2 },		/* 512 + 512 */
		{ 4096, 65536, 0, 65536, 65536, 1 },		/* exactly one: no split */
	};

	for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
		struct env e;
		unsigned writes = 0;

		env_open(&e, c[i].bs, c[i].boundary, c[i].max_io);
		split_roundtrip(&e, c[i].off, c[i].len, (unsigned)i);
		for (unsigned k = 0; k < e.r->nlog; k++)
			writes += e.r->log[k].op == BIO_WRITE;
		ck_assert_uint_eq(writes, c[i].children);
		ck_assert_uint_eq(e.r->nlog, 2 * c[i].children);
		/* the reads' children again cover the range */
		check_log(e.r, c[i].children, c[i].off, c[i].len);
		e.r->nlog = c[i].children;
		check_log(e.r, 0, c[i].off, c[i].len);
		env_close(&e);
	}
}
END_TEST

START_TEST(test_split_discard_and_flush)
{
	struct env e;
	struct op o = { 0 };

	env_open(&e, 512, 65536, 0);
	memset(e.r->data, 0xff, REC_SIZE);
	ck_assert_int_eq(rw(e.ch, BIO_WRITE_ZEROES, BIO_NOUNMAP, NULL, 0, 1024, 200 * 1024, &o), 0);
	wait_all(e.loop);
	ck_assert_int_eq(o.ends, 1);
	check_log(e.r, 0, 1024, 200 * 1024);
	for (unsigned i = 0; i < e.r->nlog; i++)
		ck_assert_uint_eq(e.r->log[i].iovcnt, 0);
	ck_assert_uint_eq(e.r->data[1023], 0xff);
	ck_assert_uint_eq(e.r->data[1024], 0);
	ck_assert_uint_eq(e.r->data[1024 + 200 * 1024 - 1], 0);
	ck_assert_uint_eq(e.r->data[1024 + 200 * 1024], 0xff);
	/* a flush is never split, and has offset and length 0 */
	e.r->nlog = 0;
	memset(&o, 0, sizeof(o));
	{
		struct bio *bio = bio_alloc(e.ch);

		bio->op = BIO_FLUSH;
		bio->offset = 12345;
		bio->len = 999;
		bio->end = op_end;
		bio->end_arg = &o;
		in_submit = true;
		ck_assert_int_eq(blk_submit(e.ch, bio), 0);
		in_submit = false;
		pending++;
		wait_all(e.loop);
		ck_assert_int_eq(o.ends, 1);
		ck_assert_uint_eq(e.r->nlog, 1);
		ck_assert_uint_eq(e.r->log[0].offset, 0);
		ck_assert_uint_eq(e.r->log[0].len, 0);
		bio_free(bio);
	}
	/* an op the device does not support */
	e.r->no_discard = true;
	ck_assert_int_eq(rw(e.ch, BIO_DISCARD, 0, NULL, 0, 0, 512, &o), -EOPNOTSUPP);
	env_close(&e);
}
END_TEST

START_TEST(test_split_on_mem)
{
	struct ev_loop *loop;
	struct blkdev *bd;
	struct blkchan *ch;
	uint64_t off = 127 * 512, len = 700 * 1024 + 512;
	uint8_t *w = malloc(len), *r = malloc(len);
	struct op o = { 0 };
	struct iovec v;
	int closed = 0;

	pending = 0;
	ck_assert_int_eq(ev_loop_new(EV_AUTO, 64, &loop), 0);
	ck_assert_int_eq(blk_mem_create("m", 8 << 20, 512, &bd), 0);
	bd->io_boundary = 128 * 1024;
	bd->max_io = 96 * 1024;
	ck_assert_int_eq(blk_chan_open(bd, loop, &ch), 0);
	for (uint64_t i = 0; i < len; i++)
		w[i] = pat(off + i, 3);
	v = (struct iovec){ w, len };
	ck_assert_int_eq(rw(ch, BIO_WRITE, 0, &v, 1, off, len, &o), 0);
	wait_all(loop);
	ck_assert_int_eq(o.ends, 1);
	ck_assert_int_eq(o.status, 0);
	v = (struct iovec){ r, len };
	ck_assert_int_eq(rw(ch, BIO_READ, 0, &v, 1, off, len, &o), 0);
	wait_all(loop);
	ck_assert_int_eq(o.ends, 2);
	ck_assert_int_eq(memcmp(w, r, len), 0);
	blk_chan_close(ch, closed_cb, &closed);
	ck_assert_int_eq(closed, 1);
	ck_assert_int_eq(blkdev_close(bd), 0);
	ev_loop_free(loop);
	free(w);
	free(r);
}
END_TEST

START_TEST(test_split_child_refused)
{
	struct env e;
	uint8_t *buf = malloc(256 * 1024);
	struct iovec v = { buf, 256 * 1024 };
	struct op o = { 0 };

	/* children at 0, 64K, 128K, 192K */
	env_open(&e, 512, 65536, 0);
	/* the first child refused: the whole bio is refused, no callback */
	e.r->refuse_at = 0;
	e.r->refuse_rc = -EAGAIN;
	ck_assert_int_eq(rw(e.ch, BIO_WRITE, 0, &v, 1, 0, 256 * 1024, &o), -EAGAIN);
	ck_assert_uint_eq(e.ch->inflight, 0);
	for (int i = 0; i < 3; i++)
		ev_run_once(e.loop, 0);
	ck_assert_int_eq(o.ends, 0);
	/* a later child refused: accepted, ends once with the refusal */
	e.r->refuse_at = 128 * 1024;
	e.r->refuse_rc = -EIO;
	e.r->nlog = 0;
	ck_assert_int_eq(rw(e.ch, BIO_WRITE, 0, &v, 1, 0, 256 * 1024, &o), 0);
	wait_all(e.loop);
	ck_assert_int_eq(o.ends, 1);
	ck_assert_int_eq(o.status, -EIO);
	ck_assert_uint_eq(e.r->nlog, 2);	/* 0 and 64K went out, not 192K */
	for (int i = 0; i < 3; i++)
		ev_run_once(e.loop, 0);
	ck_assert_int_eq(o.ends, 1);
	/* a child that fails: the parent carries its error */
	e.r->refuse_rc = 0;
	e.r->fail_at = 64 * 1024;
	e.r->fail_status = -ENOSPC;
	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(rw(e.ch, BIO_READ, 0, &v, 1, 0, 256 * 1024, &o), 0);
	wait_all(e.loop);
	ck_assert_int_eq(o.ends, 1);
	ck_assert_int_eq(o.status, -ENOSPC);
	free(buf);
	env_close(&e);
}
END_TEST

/*
 * Backpressure in the middle of a split is not an error: the parent waits
 * and goes on when a bio of the channel ends, or (nothing else in flight)
 * on a later loop turn; it ends once, with 0, and the data is all there.
 */
START_TEST(test_split_backpressure)
{
	static const struct { int rc, times; bool close; } c[] = {
		{ -EAGAIN, 1, false },	/* resumed by the end of child 0 */
		{ -ENOMEM, 3, false },	/* outlives the children: polled */
		{ -EAGAIN, 6, true },	/* polled, with the channel closing */
	};

	for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
		struct env e;
		uint8_t *buf = malloc(256 * 1024);
		struct iovec v = { buf, 256 * 1024 };
		struct op o = { 0 };
		unsigned writes = 0;
		int closed = 0;

		env_open(&e, 512, 65536, 0);
		for (size_t k = 0; k < 256 * 1024; k++)
			buf[k] = pat(k, (unsigned)i);
		e.r->refuse_at = 128 * 1024;
		e.r->refuse_rc = c[i].rc;
		e.r->refuse_times = c[i].times;
		ck_assert_int_eq(rw(e.ch, BIO_WRITE, 0, &v, 1, 0, 256 * 1024, &o), 0);
		if (c[i].close) {
			blk_chan_close(e.ch, closed_cb, &closed);
			ck_assert_int_eq(closed, 0);
		}
		wait_all(e.loop);
		ck_assert_int_eq(o.ends, 1);
		ck_assert_int_eq(o.status, 0);
		ck_assert_int_eq(e.r->refuse_rc, 0);	/* every refusal was used up */
		for (unsigned k = 0; k < e.r->nlog; k++)
			writes += e.r->log[k].op == BIO_WRITE;
		ck_assert_uint_eq(writes, 4);
		check_log(e.r, 0, 0, 256 * 1024);
		ck_assert_int_eq(memcmp(e.r->data, buf, 256 * 1024), 0);
		for (int k = 0; k < 5; k++)
			ck_assert_int_ge(ev_run_once(e.loop, 0), 0);
		ck_assert_int_eq(o.ends, 1);
		if (c[i].close) {
			ck_assert_int_eq(closed, 1);
			ck_assert_int_eq(blkdev_close(&e.r->bd), 0);
			ev_loop_free(e.loop);
		} else {
			env_close(&e);
		}
		free(buf);
	}
}
END_TEST

/* ---------------------------------------------------------------- pool */

START_TEST(test_pool_exhaustion)
{
	struct env e;
	struct bio **bios = calloc(8192, sizeof(*bios));
	unsigned n = 0;
	uint8_t buf[4096];
	struct iovec v = { buf, 512 };
	struct op o = { 0 };

	env_open(&e, 512, 4096, 0);
	while ((bios[n] = bio_alloc(e.ch)))
		ck_assert_uint_lt(++n, 8192);
	ck_assert_uint_eq(n, e.ch->max_bios);
	ck_assert_int_eq(rw(e.ch, BIO_READ, 0, &v, 1, 0, 512, &o), -ENOMEM);
	/* one free bio is not enough for a bio that splits in two */
	bio_free(bios[--n]);
	v.iov_len = 4096;
	ck_assert_int_eq(rw(e.ch, BIO_READ, 0, &v, 1, 2048, 4096, &o), -ENOMEM);
	ck_assert_uint_eq(e.ch->inflight, 0);
	/* but it does for one that does not */
	v.iov_len = 512;
	ck_assert_int_eq(rw(e.ch, BIO_READ, 0, &v, 1, 0, 512, &o), 0);
	wait_all(e.loop);
	ck_assert_int_eq(o.ends, 1);
	/* two free: the split one goes, parent + one child at a time (the
	 * second child waits for the first one's bio) */
	bio_free(bios[--n]);
	v.iov_len = 4096;
	ck_assert_int_eq(rw(e.ch, BIO_READ, 0, &v, 1, 2048, 4096, &o), 0);
	wait_all(e.loop);
	ck_assert_int_eq(o.ends, 2);
	ck_assert_int_eq(o.status, 0);
	while (n)
		bio_free(bios[--n]);
	free(bios);
	env_close(&e);
}
END_TEST

START_TEST(test_many_iovs_and_close_inflight)
{
	struct env e;
	uint8_t *buf = malloc(64 * 1024);
	struct iovec iov[16];
	struct op ops[64];
	int closed = 0;
	uint64_t end;

	env_open(&e, 512, 8192, 0);
	for (int i = 0; i < 16; i++)
		iov[i] = (struct iovec){ buf + i * 4096, 4096 };
	memset(ops, 0, sizeof(ops));
	for (int i = 0; i < 64; i++)
		ck_assert_int_eq(rw(e.ch, i % 2 ? BIO_WRITE : BIO_READ, 0, iov, 16,
				    (uint64_t)i * 65536, 65536, &ops[i]), 0);
	blk_chan_close(e.ch, closed_cb, &closed);
	ck_assert_int_eq(closed, 0);
	ck_assert_int_eq(blkdev_close(&e.r->bd), -EBUSY);
	end = now_ns() + 10000000000ull;
	while (!closed && now_ns() < end)
		ck_assert_int_ge(ev_run_once(e.loop, 50), 0);
	ck_assert_int_eq(closed, 1);
	for (int i = 0; i < 64; i++) {
		ck_assert_int_eq(ops[i].ends, 1);
		ck_assert_int_eq(ops[i].status, 0);
	}
	ck_assert_uint_eq(pending, 0);
	ck_assert_uint_eq(e.r->violations, 0);
	ck_assert_int_eq(blkdev_close(&e.r->bd), 0);
	ev_loop_free(e.loop);
	free(buf);
}
END_TEST

/* ---------------------------------------------------------------- iov helpers */

START_TEST(test_iov_helpers)
{
	uint8_t a[5], b[0 + 1], c[7], out[16], src[16];
	struct iovec iov[4] = { { a, 5 }, { b, 0 }, { c, 7 }, { NULL, 0 } };

	for (int i = 0; i < 16; i++)
		src[i] = (uint8_t)(i + 1);
	ck_assert_uint_eq(iov_total(iov, 4), 12);
	memset(a, 0, 5);
	memset(c, 0, 7);
	buf_to_iov(iov, 4, 0, src, 12);
	ck_assert_uint_eq(a[0], 1);
	ck_assert_uint_eq(a[4], 5);
	ck_assert_uint_eq(c[0], 6);
	ck_assert_uint_eq(c[6], 12);
	/* skip into the second non-empty piece */
	memset(out, 0, sizeof(out));
	iov_to_buf(iov, 4, 6, out, 3);
	ck_assert_uint_eq(out[0], 7);
	ck_assert_uint_eq(out[2], 9);
	ck_assert_uint_eq(out[3], 0);
	/* skip across the first piece exactly, and a len beyond the end */
	memset(out, 0, sizeof(out));
	iov_to_buf(iov, 4, 5, out, 100);
	ck_assert_uint_eq(out[0], 6);
	ck_assert_uint_eq(out[6], 12);
	ck_assert_uint_eq(out[7], 0);
	/* a write straddling the pieces */
	buf_to_iov(iov, 4, 3, src + 10, 4);
	ck_assert_uint_eq(a[2], 3);
	ck_assert_uint_eq(a[3], 11);
	ck_assert_uint_eq(a[4], 12);
	ck_assert_uint_eq(c[0], 13);
	ck_assert_uint_eq(c[1], 14);
	ck_assert_uint_eq(c[2], 8);
	/* memset with skip */
	iov_memset(iov, 4, 4, 0xaa, 3);
	ck_assert_uint_eq(a[3], 11);
	ck_assert_uint_eq(a[4], 0xaa);
	ck_assert_uint_eq(c[0], 0xaa);
	ck_assert_uint_eq(c[1], 0xaa);
	ck_assert_uint_eq(c[2], 8);
	/* skip past everything: nothing happens */
	iov_memset(iov, 4, 12, 0, 5);
	iov_to_buf(iov, 4, 50, out, 5);
	ck_assert_uint_eq(c[6], 12);
	(void)b;
}
END_TEST

/* ---------------------------------------------------------------- registry */

static void count_fn(struct blkdev *bd, void *arg)
{
	if (!strncmp(bd->name, "reg", 3))
		(*(int *)arg)++;
}

START_TEST(test_registry_claim)
{
	struct rec_dev *a = rec_new("reg-a", 512, 0, 0), *b = rec_new("reg-b", 512, 0, 0);
	struct rec_dev *a2 = rec_new("reg-a", 512, 0, 0), *anon = rec_new("", 512, 0, 0);
	int n = 0;

	ck_assert_int_eq(blkdev_register(&a->bd), 0);
	ck_assert_int_eq(blkdev_register(&b->bd), 0);
	ck_assert_int_eq(blkdev_register(&a->bd), -EEXIST);
	ck_assert_int_eq(blkdev_register(&a2->bd), -EEXIST);
	ck_assert_int_eq(blkdev_register(&anon->bd), -EINVAL);
	ck_assert_ptr_eq(blkdev_find("reg-a"), &a->bd);
	ck_assert_ptr_eq(blkdev_find("reg-b"), &b->bd);
	ck_assert_ptr_null(blkdev_find("reg-c"));
	blkdev_foreach(count_fn, &n);
	ck_assert_int_eq(n, 2);

	ck_assert_int_eq(blkdev_claim(&a->bd, "pool1"), 0);
	ck_assert_int_eq(blkdev_claim(&a->bd, "pool1"), 0);	/* same owner again */
	ck_assert_int_eq(blkdev_claim(&a->bd, "pool2"), -EBUSY);
	ck_assert_int_eq(blkdev_close(&a->bd), -EBUSY);
	blkdev_release(&a->bd, "pool2");			/* not the owner: no effect */
	ck_assert_int_eq(blkdev_claim(&a->bd, "pool2"), -EBUSY);
	blkdev_release(&a->bd, "pool1");
	ck_assert_int_eq(blkdev_claim(&a->bd, "pool2"), 0);
	ck_assert_int_eq(blkdev_claim_shared(&a->bd, "nbd:vol1"), -EBUSY);
	blkdev_release(&a->bd, "pool2");

	/* shared claims (exports) coexist, and exclude an exclusive one */
	{
		char buf[256];

		ck_assert_int_eq(blkdev_claim_shared(&a->bd, "nbd:vol1"), 0);
		ck_assert_int_eq(blkdev_claim_shared(&a->bd, "iscsi"), 0);
		ck_assert_int_eq(blkdev_claim_shared(&a->bd, "iscsi"), 0);	/* again: no-op */
		ck_assert_int_eq(blkdev_claim(&a->bd, "iscsi"), -EBUSY);	/* kind differs */
		ck_assert_int_eq(blkdev_claim(&a->bd, "pool1"), -EBUSY);
		ck_assert_int_eq(blkdev_close(&a->bd), -EBUSY);
		blkdev_claims(&a->bd, buf, sizeof(buf));
		ck_assert_str_eq(buf, "nbd:vol1,iscsi");
		blkdev_release(&a->bd, "nbd:vol1");
		blkdev_claims(&a->bd, buf, sizeof(buf));
		ck_assert_str_eq(buf, "iscsi");
		ck_assert_int_eq(blkdev_claim(&a->bd, "pool1"), -EBUSY);
		for (int i = 0; i < BLK_MAX_CLAIMS - 1; i++) {
			char o[16];

			snprintf(o, sizeof(o), "exp%d", i);
			ck_assert_int_eq(blkdev_claim_shared(&a->bd, o), 0);
		}
		ck_assert_int_eq(blkdev_claim_shared(&a->bd, "one-too-many"), -EBUSY);
		for (int i = 0; i < BLK_MAX_CLAIMS - 1; i++) {
			char o[16];

			snprintf(o, sizeof(o), "exp%d", i);
			blkdev_release(&a->bd, o);
		}
		blkdev_release(&a->bd, "iscsi");
		blkdev_claims(&a->bd, buf, sizeof(buf));
		ck_assert_str_eq(buf, "");
		ck_assert_int_eq(blkdev_claim(&a->bd, "pool1"), 0);
		blkdev_release(&a->bd, "pool1");
		ck_assert_int_eq(blkdev_claim(&a->bd, ""), -EINVAL);
	}

	/* unregister frees the name */
	blkdev_unregister(&b->bd);
	ck_assert_ptr_null(blkdev_find("reg-b"));
	blkdev_unregister(&b->bd);	/* twice is harmless */
	/* close unregisters */
	ck_assert_int_eq(blkdev_close(&a->bd), 0);
	ck_assert_ptr_null(blkdev_find("reg-a"));
	ck_assert_int_eq(blkdev_register(&a2->bd), 0);
	ck_assert_ptr_eq(blkdev_find("reg-a"), &a2->bd);
	n = 0;
	blkdev_foreach(count_fn, &n);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(blkdev_close(&a2->bd), 0);
	ck_assert_int_eq(blkdev_close(&b->bd), 0);
	ck_assert_int_eq(blkdev_close(&anon->bd), 0);
}
END_TEST

START_TEST(test_close_with_channels)
{
	struct ev_loop *loop;
	struct blkdev *bd;
	struct blkchan *ch1, *ch2;
	int closed = 0;

	ck_assert_int_eq(ev_loop_new(EV_AUTO, 64, &loop), 0);
	ck_assert_int_eq(blk_mem_create("m", 1 << 20, 4096, &bd), 0);
	ck_assert_int_eq(blk_chan_open(bd, loop, &ch1), 0);
	ck_assert_int_eq(blk_chan_open(bd, loop, &ch2), 0);
	ck_assert_uint_eq(bd->nchans, 2);
	ck_assert_int_eq(blkdev_close(bd), -EBUSY);
	blk_chan_close(ch1, closed_cb, &closed);
	ck_assert_int_eq(closed, 1);
	ck_assert_int_eq(blkdev_close(bd), -EBUSY);
	blk_chan_close(ch2, NULL, NULL);
	ck_assert_int_eq(blkdev_close(bd), 0);
	ev_loop_free(loop);
	/* bad sizes for the memory device */
	ck_assert_int_eq(blk_mem_create("m", 1000, 512, &bd), -EINVAL);
	ck_assert_int_eq(blk_mem_create("m", 4096, 1000, &bd), -EINVAL);
	ck_assert_int_eq(blk_mem_create("m", 0, 512, &bd), -EINVAL);
}
END_TEST

static Suite *blkcore_suite(void)
{
	Suite *s = suite_create("blkcore");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_split_boundary);
	tcase_add_test(tc, test_split_discard_and_flush);
	tcase_add_test(tc, test_split_on_mem);
	tcase_add_test(tc, test_split_child_refused);
	tcase_add_test(tc, test_split_backpressure);
	tcase_add_test(tc, test_pool_exhaustion);
	tcase_add_test(tc, test_many_iovs_and_close_inflight);
	tcase_add_test(tc, test_iov_helpers);
	tcase_add_test(tc, test_registry_claim);
	tcase_add_test(tc, test_close_with_channels);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(blkcore_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
