/* SPDX-License-Identifier: MIT */
/*
 * Regression tests from the review of common/blkdev.c: the split path under
 * backpressure, with a small driver that keeps its data in memory, ends
 * bios on a later turn and refuses (-EAGAIN) beyond a set queue depth, the
 * way aio (AIO_DEPTH) and stacked devices with their own bio pools do.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/ev.h"

struct bp_dev {
	struct blkdev	bd;
	uint8_t		*data;
	unsigned	depth;		/* refuse with -EAGAIN beyond this many (0: none) */
	unsigned	inq;		/* bios taken, not ended */
	unsigned	max_inq;
	unsigned	refusals;
	unsigned	taken;
	unsigned	refuse_calls;	/* refuse calls number refuse_from.. of these */
	unsigned	refuse_from;
	unsigned	calls;
	int		fail_child;	/* end the child at this offset with -EIO (-1: none) */
	uint64_t	fail_off;
};

static struct bp_dev *to_bp(struct blkdev *bd) { return container_of(bd, struct bp_dev, bd); }

static void bp_close(struct blkdev *bd)
{
	struct bp_dev *d = to_bp(bd);

	free(d->data);
	free(d);
}

static void bp_done(struct ev_task *t)
{
	struct bio *bio = container_of(t, struct bio, task);
	struct bp_dev *d = to_bp(bio->ch->bd);

	if (bio->op == BIO_READ)
		buf_to_iov(bio->iov, bio->iovcnt, 0, d->data + bio->offset, bio->len);
	else if (bio->op == BIO_WRITE)
		iov_to_buf(bio->iov, bio->iovcnt, 0, d->data + bio->offset, bio->len);
	d->inq--;
	bio_complete(bio, d->fail_child >= 0 && bio->offset == d->fail_off ? -EIO : 0);
}

static int bp_submit(struct blkdev *bd, struct blkchan *ch, struct bio *bio)
{
	struct bp_dev *d = to_bp(bd);

	d->calls++;
	if ((d->depth && d->inq >= d->depth) ||
	    (d->calls >= d->refuse_from && d->calls < d->refuse_from + d->refuse_calls)) {
		d->refusals++;
		return -EAGAIN;
	}
	d->inq++;
	d->taken++;
	d->max_inq = MAX(d->max_inq, d->inq);
	ev_defer(ch->loop, &bio->task, bp_done);
	return 0;
}

static const struct blkdev_ops bp_ops = {
	.name = "bp",
	.close = bp_close,
	.submit = bp_submit,
};

static struct bp_dev *bp_new(uint64_t size, uint32_t boundary, unsigned depth)
{
	struct bp_dev *d = calloc(1, sizeof(*d));

	ck_assert_ptr_nonnull(d);
	blkdev_init(&d->bd, &bp_ops, "bp0");
	d->bd.size = size;
	d->bd.io_boundary = boundary;
	d->depth = depth;
	d->fail_child = -1;
	d->data = calloc(1, size);
	ck_assert_ptr_nonnull(d->data);
	return d;
}

struct op { int ends, status; };

static void op_end(struct bio *bio, int status)
{
	struct op *o = bio->end_arg;

	o->ends++;
	o->status = status;
}

static void wait_ends(struct ev_loop *loop, struct op *o, int want)
{
	uint64_t end = now_ns() + 5000000000ull;

	while (o->ends < want && now_ns() < end)
		ck_assert_int_ge(ev_run_once(loop, 10), 0);
	ck_assert_int_eq(o->ends, want);
}

static void fill(uint8_t *b, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)(i * 7 + seed + i / 512);
}

/*
 * A split bio whose later child meets backpressure (-EAGAIN, the driver's
 * queue is full) must not fail: -EAGAIN is "try again later", not an I/O
 * error. Either the whole bio is refused (nothing went out), or it is
 * accepted and every child goes out in time and it ends with 0.
 */
START_TEST(test_split_backpressure_is_not_an_error)
{
	enum { LEN = 256 * 1024 };
	struct bp_dev *d = bp_new(1 << 20, 16384, 4);	/* 16 children, depth 4 */
	struct ev_loop *loop;
	struct blkchan *ch;
	uint8_t *w = malloc(LEN), *r = malloc(LEN);
	struct iovec v = { w, LEN };
	struct op o = { 0 };
	int rc;

	ck_assert_int_eq(ev_loop_new(EV_AUTO, 64, &loop), 0);
	ck_assert_int_eq(blk_chan_open(&d->bd, loop, &ch), 0);
	fill(w, LEN, 3);
	rc = blk_rw(ch, BIO_WRITE, 0, &v, 1, 65536, LEN, op_end, &o);
	ck_assert_int_eq(rc, 0);	/* the first children went out */
	wait_ends(loop, &o, 1);
	ck_assert_int_eq(o.status, 0);
	ck_assert_uint_le(d->max_inq, 4);
	ck_assert_uint_eq(d->taken, 16);
	ck_assert_int_eq(memcmp(d->data + 65536, w, LEN), 0);
	/* and a read the same way */
	memset(&o, 0, sizeof(o));
	v.iov_base = r;
	ck_assert_int_eq(blk_rw(ch, BIO_READ, 0, &v, 1, 65536, LEN, op_end, &o), 0);
	wait_ends(loop, &o, 1);
	ck_assert_int_eq(o.status, 0);
	ck_assert_int_eq(memcmp(r, w, LEN), 0);
	/* nothing more runs afterwards */
	for (int i = 0; i < 5; i++)
		ev_run_once(loop, 0);
	ck_assert_int_eq(o.ends, 1);
	ck_assert_uint_eq(ch->inflight, 0);
	blk_chan_close(ch, NULL, NULL);
	ck_assert_int_eq(blkdev_close(&d->bd), 0);
	ev_loop_free(loop);
	free(w);
	free(r);
}
END_TEST

/*
 * A bio that splits into more children than a channel has bios (4096) is
 * valid (in range, aligned) and must go through on an idle channel, not be
 * refused with -ENOMEM for ever (the caller would retry for ever).
 */
START_TEST(test_split_more_children_than_pool)
{
	enum { LEN = 5000 * 512 };
	struct bp_dev *d = bp_new(4 << 20, 512, 0);
	struct ev_loop *loop;
	struct blkchan *ch;
	uint8_t *w = malloc(LEN);
	struct iovec v = { w, LEN };
	struct op o = { 0 };
	int rc, tries = 0;

	ck_assert_int_eq(ev_loop_new(EV_AUTO, 64, &loop), 0);
	ck_assert_int_eq(blk_chan_open(&d->bd, loop, &ch), 0);
	fill(w, LEN, 5);
	/* a caller that treats -ENOMEM as backpressure, bounded here */
	while ((rc = blk_rw(ch, BIO_WRITE, 0, &v, 1, 0, LEN, op_end, &o)) == -ENOMEM && ++tries < 20)
		ev_run_once(loop, 1);
	ck_assert_int_eq(rc, 0);
	wait_ends(loop, &o, 1);
	ck_assert_int_eq(o.status, 0);
	ck_assert_uint_eq(d->taken, 5000);
	ck_assert_int_eq(memcmp(d->data, w, LEN), 0);
	ck_assert_uint_eq(ch->inflight, 0);
	blk_chan_close(ch, NULL, NULL);
	ck_assert_int_eq(blkdev_close(&d->bd), 0);
	ev_loop_free(loop);
	free(w);
}
END_TEST

static void closed_cb(void *arg) { (*(int *)arg)++; }

/*
 * Backpressure with no child left in flight (the driver refuses although
 * nothing of ours is queued there): the rest is sent on a later turn; a
 * channel closed meanwhile is freed only after the parent has ended; a
 * child that fails makes the parent end once, with its error.
 */
START_TEST(test_split_retry_and_close)
{
	enum { LEN = 64 * 1024 };
	struct bp_dev *d = bp_new(1 << 20, 16384, 0);	/* 4 children */
	struct ev_loop *loop;
	struct blkchan *ch;
	uint8_t *w = malloc(LEN);
	struct iovec v = { w, LEN };
	struct op o = { 0 };
	int closed = 0;

	ck_assert_int_eq(ev_loop_new(EV_AUTO, 64, &loop), 0);
	ck_assert_int_eq(blk_chan_open(&d->bd, loop, &ch), 0);
	fill(w, LEN, 9);
	/* child 1 goes, calls 2..11 refused: the next children wait turns */
	d->refuse_from = 2;
	d->refuse_calls = 10;
	ck_assert_int_eq(blk_rw(ch, BIO_WRITE, 0, &v, 1, 0, LEN, op_end, &o), 0);
	blk_chan_close(ch, closed_cb, &closed);
	ck_assert_int_eq(closed, 0);
	wait_ends(loop, &o, 1);
	ck_assert_int_eq(o.status, 0);
	ck_assert_uint_eq(d->taken, 4);
	ck_assert_int_eq(memcmp(d->data, w, LEN), 0);
	for (int i = 0; i < 5 && !closed; i++)
		ev_run_once(loop, 0);
	ck_assert_int_eq(closed, 1);
	ck_assert_int_eq(o.ends, 1);

	/* a failing child: the parent ends once, with -EIO */
	ck_assert_int_eq(blk_chan_open(&d->bd, loop, &ch), 0);
	memset(&o, 0, sizeof(o));
	d->refuse_calls = 0;
	d->taken = 0;
	d->depth = 1;		/* one child at a time */
	d->fail_child = 1;
	d->fail_off = 16384;
	ck_assert_int_eq(blk_rw(ch, BIO_WRITE, 0, &v, 1, 0, LEN, op_end, &o), 0);
	wait_ends(loop, &o, 1);
	ck_assert_int_eq(o.status, -EIO);
	ck_assert_uint_ge(d->taken, 2);
	for (int i = 0; i < 5; i++)
		ev_run_once(loop, 0);
	ck_assert_int_eq(o.ends, 1);
	ck_assert_uint_eq(ch->inflight, 0);
	blk_chan_close(ch, NULL, NULL);
	ck_assert_int_eq(blkdev_close(&d->bd), 0);
	ev_loop_free(loop);
	free(w);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("review_blk");
	TCase *tc = tcase_create("split");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_split_backpressure_is_not_an_error);
	tcase_add_test(tc, test_split_more_children_than_pool);
	tcase_add_test(tc, test_split_retry_and_close);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
