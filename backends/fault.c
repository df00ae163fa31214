/* SPDX-License-Identifier: MIT */
/*
 * The fault filter: a block device over another one that passes bios
 * through and can fail them, delay them, count them and simulate a power
 * cut. See include/sand/fault.h for the contract and doc/fault.md for use.
 *
 * The data path. Each bio borrows one bio from the lower channel (two for
 * a recorded write: one reads the pre-image, one writes) and ends when the
 * lower one has ended, after the latency if any. A word of flags read with
 * one atomic load tells the path whether anything special is on; with
 * nothing on, a bio costs two atomic adds and the lower device's submit.
 * Rules, records and the power state live under one mutex, taken only when
 * a rule or recording is on.
 *
 * How a power cut finds what a disk could hold. For one block, let W1..Wm be
 * the recorded writes that landed on it since the last flush, oldest first,
 * with pre-images P1..Pm, and C the block's present contents. The value
 * after Wi is P(i+1), or C after Wm; the value before W1 is P1, which is
 * durable. A crash keeps some of the writes at that block (a torn write keeps
 * some of its blocks): the block then holds the value after the newest kept
 * write, or P1 if none was kept. That is "undo the newest first, and stop at
 * the first kept write", done block by block without writing intermediate
 * states. It needs Pi+1 to be exactly what Wi left, so recorded writes that
 * overlap are serialized: a newer one waits (REC_WAITING) until every older
 * overlapping one has ended on the lower device, and only then reads its
 * pre-image and writes.
 *
 * A flush drops the records of writes whose lower write ended before the
 * flush was submitted (done_seq); overlapping writes end in submission
 * order, so a flush always drops the oldest part of each block's chain.
 *
 * Power off. The cut sets F_OFF and bumps epoch under the lock, then waits
 * until no write is in flight on the lower device (wr_inflight; the fast
 * path increments it before it looks at F_OFF, so either it sees F_OFF or
 * the cut sees its write). A bio submitted before the cut (an older epoch)
 * ends with -EIO whatever the lower device said, and a recorded write that
 * was still reading its pre-image never writes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/fault.h"
#include "sand/log.h"

#define F_OFF		(1u << 0)
#define F_INJECT	(1u << 1)
#define F_LATENCY	(1u << 2)
#define F_RECORD	(1u << 3)

#define RETRY_NS	(100 * 1000ull)		/* lower device backpressure */
#define RECORD_LIMIT	(256ull << 20)

enum rec_state {
	REC_WAITING,	/* an older overlapping record is busy */
	REC_READING,	/* reading the pre-image */
	REC_WRITING,	/* the write is on the lower device */
	REC_DONE,	/* the write has ended: at risk until a flush */
};

struct fault_bio;

struct fault_rec {
	struct list_head link;		/* fd->recs, in submission order */
	struct list_head busy_link;	/* fd->busy while not REC_DONE */
	enum rec_state	state;
	enum bio_op	op;
	bool		fua;		/* durable: always kept, no pre-image */
	uint64_t	offset, len;
	uint64_t	done_seq;
	uint64_t	gen;		/* fd->rec_gen when recorded */
	uint64_t	epoch;
	uint8_t		*pre;		/* len bytes, NULL for FUA */
	struct fault_bio *fb;		/* while not REC_DONE */
};

struct fault_rule_ent {
	struct list_head link;
	int		id;
	struct fault_rule r;
};

struct fault_dev {
	struct blkdev	bd;
	struct blkdev	*lower;

	uint32_t	flags;		/* F_*, atomic; changed under lock */
	uint64_t	epoch;		/* atomic; bumped by each cut */
	unsigned	wr_inflight;	/* atomic: writes on the lower device */

	pthread_mutex_t	lock;
	pthread_cond_t	drained;	/* wr_inflight reached 0 while off */

	/* error rules (lock) */
	bool		after_on;
	uint64_t	after_left;
	uint32_t	after_mask;
	int		after_err;
	struct list_head rules;
	int		next_rule_id;
	double		rnd_prob;
	uint64_t	rnd_state;
	uint32_t	rnd_mask;
	int		rnd_err;

	/* latency (atomics) */
	uint64_t	lat_ns;
	uint32_t	lat_mask;

	/* counters (atomics) */
	uint64_t	ios[BIO_OP_MAX];
	uint64_t	injected;

	/* recording (lock) */
	struct list_head recs;
	struct list_head busy;
	unsigned	nwaiting;
	uint64_t	rec_gen;
	uint64_t	done_seq;
	uint64_t	held_bytes;
	uint64_t	rec_limit;
	uint64_t	cuts;
	bool		cutting;	/* a cut is rewriting the lower device */
	uint32_t	last_kept, last_dropped, last_torn;
};

struct fault_bio {
	struct fault_dev *fd;
	struct bio	*bio;		/* the upper bio */
	struct blkchan	*lch;
	struct bio	*lb;		/* pass-through / the write */
	struct bio	*rb;		/* pre-image read */
	struct bio	*retry;		/* refused with backpressure */
	struct fault_rec *rec;
	uint64_t	epoch;
	uint64_t	flush_seq;
	int		status;
	int		start_err;
	bool		in_submit;
	bool		flush_track;
	struct ev_timer	timer;		/* latency or retry */
	struct list_head kick_link;
};

static const struct blkdev_ops fault_ops;

static struct fault_dev *to_fault(struct blkdev *bd)
{
	return container_of(bd, struct fault_dev, bd);
}

static struct fault_dev *get_fault(struct blkdev *bd)
{
	return bd && bd->ops == &fault_ops ? to_fault(bd) : NULL;
}

bool blk_is_fault(const struct blkdev *bd)
{
	return bd && bd->ops == &fault_ops;
}

struct blkdev *fault_lower(struct blkdev *bd)
{
	struct fault_dev *fd = get_fault(bd);

	return fd ? fd->lower : NULL;
}

static bool is_write(enum bio_op op)
{
	return op == BIO_WRITE || op == BIO_WRITE_ZEROES || op == BIO_DISCARD;
}

static int norm_err(int err)
{
	if (!err)
		return -EIO;
	return err > 0 ? -err : err;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double rand_unit(uint64_t *s)
{
	return (double)(splitmix64(s) >> 11) * 0x1.0p-53;
}

static uint32_t load_flags(struct fault_dev *fd)
{
	return __atomic_load_n(&fd->flags, __ATOMIC_SEQ_CST);
}

static void set_flag(struct fault_dev *fd, uint32_t f, bool on)
{
	if (on)
		__atomic_or_fetch(&fd->flags, f, __ATOMIC_SEQ_CST);
	else
		__atomic_and_fetch(&fd->flags, ~f, __ATOMIC_SEQ_CST);
}

/* ------------------------------------------------------------ completion */

static void fb_complete(struct fault_bio *fb)
{
	int status = fb->status;

	if (__atomic_load_n(&fb->fd->epoch, __ATOMIC_ACQUIRE) != fb->epoch)
		status = -EIO;		/* in flight across a power cut */
	bio_complete(fb->bio, status);
}

static void fb_timer_done(struct ev_timer *t)
{
	fb_complete(container_of(t, struct fault_bio, timer));
}

static void fb_task_done(struct ev_task *t)
{
	struct bio *bio = container_of(t, struct bio, task);

	fb_complete(bio_ctx(bio));
}

/* End the upper bio with status, after the latency; never inside submit.
 * The caller must not touch fb afterwards. */
static void fb_finish(struct fault_bio *fb, int status)
{
	struct fault_dev *fd = fb->fd;
	struct bio *bio = fb->bio;

	fb->status = status;
	if (load_flags(fd) & F_LATENCY) {
		uint64_t ns = __atomic_load_n(&fd->lat_ns, __ATOMIC_RELAXED);
		uint32_t mask = __atomic_load_n(&fd->lat_mask, __ATOMIC_RELAXED);

		if (ns && (mask & FAULT_OP(bio->op))) {
			ev_timer_start(bio->ch->loop, &fb->timer, ns, fb_timer_done);
			return;
		}
	}
	if (fb->in_submit)
		ev_defer(bio->ch->loop, &bio->task, fb_task_done);
	else
		fb_complete(fb);
}

static void wr_dec(struct fault_dev *fd)
{
	if (__atomic_sub_fetch(&fd->wr_inflight, 1, __ATOMIC_SEQ_CST) == 0 &&
	    (load_flags(fd) & F_OFF)) {
		pthread_mutex_lock(&fd->lock);
		pthread_cond_broadcast(&fd->drained);
		pthread_mutex_unlock(&fd->lock);
	}
}

/* ------------------------------------------------------------ lower I/O */

static void lower_retry(struct ev_timer *t);

/* Submit a lower bio; a refusal ends it through its own end callback
 * (fb_finish defers when that happens inside our submit). */
static void lower_submit(struct fault_bio *fb, struct bio *lb)
{
	int rc = blk_submit(fb->lch, lb);

	if (!rc)
		return;
	if (rc == -EAGAIN || rc == -ENOMEM) {
		fb->retry = lb;
		ev_timer_start(fb->lch->loop, &fb->timer, RETRY_NS, lower_retry);
		return;
	}
	lb->end(lb, rc);
}

static void lower_retry(struct ev_timer *t)
{
	struct fault_bio *fb = container_of(t, struct fault_bio, timer);
	struct bio *lb = fb->retry;

	fb->retry = NULL;
	if (__atomic_load_n(&fb->fd->epoch, __ATOMIC_ACQUIRE) != fb->epoch)
		lb->end(lb, -EIO);
	else
		lower_submit(fb, lb);
}

static void pass_end(struct bio *lb, int status)
{
	struct fault_bio *fb = lb->end_arg;
	struct fault_dev *fd = fb->fd;
	enum bio_op op = lb->op;
	struct list_head *pos, *tmp;

	bio_free(lb);
	fb->lb = NULL;
	if (fb->flush_track && !status) {
		pthread_mutex_lock(&fd->lock);
		if (!(fd->flags & F_OFF) && fd->epoch == fb->epoch) {
			list_for_each_safe(pos, tmp, &fd->recs) {
				struct fault_rec *r = list_entry(pos, struct fault_rec, link);

				if (r->state != REC_DONE || r->done_seq > fb->flush_seq)
					continue;
				list_del(&r->link);
				if (!r->fua)
					fd->held_bytes -= r->len;
				free(r->pre);
				free(r);
			}
		}
		pthread_mutex_unlock(&fd->lock);
	}
	if (is_write(op))
		wr_dec(fd);
	fb_finish(fb, status);
}

/* Send the bio down without recording it. */
static void pass_submit(struct fault_bio *fb)
{
	struct fault_dev *fd = fb->fd;
	struct bio *lb = fb->lb;

	if (is_write(lb->op)) {
		__atomic_add_fetch(&fd->wr_inflight, 1, __ATOMIC_SEQ_CST);
		if (load_flags(fd) & F_OFF) {
			wr_dec(fd);
			bio_free(lb);
			fb->lb = NULL;
			fb_finish(fb, -EIO);
			return;
		}
	}
	lb->end = pass_end;
	lower_submit(fb, lb);
}

/* ------------------------------------------------------------ recording */

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* Is an older busy record in the way of r? */
static bool busy_before(struct fault_dev *fd, struct fault_rec *r)
{
	struct list_head *pos;

	list_for_each(pos, &fd->busy) {
		struct fault_rec *o = list_entry(pos, struct fault_rec, busy_link);

		if (o == r)
			return false;
		if (overlaps(o->offset, o->len, r->offset, r->len))
			return true;
	}
	return false;
}

static void rec_free_locked(struct fault_dev *fd, struct fault_rec *r)
{
	list_del(&r->link);
	list_del(&r->busy_link);
	if (!r->fua)
		fd->held_bytes -= r->len;
	free(r->pre);
	free(r);
}

/* r may go: read its pre-image, or write at once if it needs none. */
static void rec_begin_locked(struct fault_dev *fd, struct fault_rec *r)
{
	if (r->fua) {
		r->state = REC_WRITING;
		__atomic_add_fetch(&fd->wr_inflight, 1, __ATOMIC_SEQ_CST);
	} else {
		r->state = REC_READING;
	}
}

/* Move waiting records that may now go to *out (their bios, in order). */
static void kick_locked(struct fault_dev *fd, struct list_head *out)
{
	struct list_head *pos, *tmp;

	if (!fd->nwaiting)
		return;
	list_for_each_safe(pos, tmp, &fd->busy) {
		struct fault_rec *r = list_entry(pos, struct fault_rec, busy_link);
		struct fault_bio *fb = r->fb;

		if (r->state != REC_WAITING || busy_before(fd, r))
			continue;
		fd->nwaiting--;
		if ((fd->flags & F_OFF) || r->epoch != fd->epoch) {
			fb->start_err = -EIO;
			fb->rec = NULL;
			rec_free_locked(fd, r);
		} else {
			rec_begin_locked(fd, r);
		}
		list_add_tail(&fb->kick_link, out);
	}
}

static void rec_go(struct fault_bio *fb);

static void rec_start(struct fault_bio *fb)
{
	if (fb->start_err) {
		bio_free(fb->lb);
		fb->lb = NULL;
		if (fb->rb)
			bio_free(fb->rb);
		fb->rb = NULL;
		fb_finish(fb, fb->start_err);
		return;
	}
	rec_go(fb);
}

static void kick_msg(void *arg)
{
	rec_start(arg);
}

static void kick_task(struct ev_task *t)
{
	rec_start(bio_ctx(container_of(t, struct bio, task)));
}

/* Start the kicked bios, each on its own loop, on a later turn: never from
 * inside whatever ended the older write. A waiting bio's task is free. */
static void kick_run(struct list_head *kicked, struct ev_loop *cur)
{
	while (!list_empty(kicked)) {
		struct fault_bio *fb = list_first_entry(kicked, struct fault_bio, kick_link);
		struct ev_loop *loop = fb->bio->ch->loop;

		list_del(&fb->kick_link);
		if (loop == cur) {
			ev_defer(loop, &fb->bio->task, kick_task);
			continue;
		}
		while (ev_send_msg(loop, kick_msg, fb))
			usleep(1000);	/* -ENOMEM: a test device, wait for memory */
	}
}

static void rec_write_end(struct bio *lb, int status)
{
	struct fault_bio *fb = lb->end_arg;
	struct fault_dev *fd = fb->fd;
	struct fault_rec *r = fb->rec;
	struct ev_loop *loop = fb->bio->ch->loop;
	struct list_head kicked;

	list_init(&kicked);
	bio_free(lb);
	fb->lb = NULL;
	pthread_mutex_lock(&fd->lock);
	r->state = REC_DONE;
	list_del(&r->busy_link);
	r->done_seq = ++fd->done_seq;
	r->fb = NULL;
	fb->rec = NULL;
	if (r->gen != fd->rec_gen)
		rec_free_locked(fd, r);		/* recording was restarted */
	if (__atomic_sub_fetch(&fd->wr_inflight, 1, __ATOMIC_SEQ_CST) == 0)
		pthread_cond_broadcast(&fd->drained);
	kick_locked(fd, &kicked);
	pthread_mutex_unlock(&fd->lock);
	kick_run(&kicked, loop);
	fb_finish(fb, status);
}

static void rec_read_end(struct bio *rb, int status)
{
	struct fault_bio *fb = rb->end_arg;
	struct fault_dev *fd = fb->fd;
	struct fault_rec *r = fb->rec;
	struct ev_loop *loop = fb->bio->ch->loop;
	struct list_head kicked;

	list_init(&kicked);
	bio_free(rb);
	fb->rb = NULL;
	pthread_mutex_lock(&fd->lock);
	if (!status && !(fd->flags & F_OFF) && fd->epoch == fb->epoch) {
		r->state = REC_WRITING;
		__atomic_add_fetch(&fd->wr_inflight, 1, __ATOMIC_SEQ_CST);
		pthread_mutex_unlock(&fd->lock);
		fb->lb->end = rec_write_end;
		lower_submit(fb, fb->lb);
		return;
	}
	/* the read failed or the power went: the write never happens */
	fb->rec = NULL;
	rec_free_locked(fd, r);
	kick_locked(fd, &kicked);
	pthread_mutex_unlock(&fd->lock);
	kick_run(&kicked, loop);
	bio_free(fb->lb);
	fb->lb = NULL;
	fb_finish(fb, status ? status : -EIO);
}

static void rec_go(struct fault_bio *fb)
{
	struct fault_rec *r = fb->rec;
	struct bio *rb = fb->rb;

	if (r->state == REC_WRITING) {
		fb->lb->end = rec_write_end;
		lower_submit(fb, fb->lb);
		return;
	}
	rb->op = BIO_READ;
	rb->flags = 0;
	rb->offset = r->offset;
	rb->len = r->len;
	rb->iov_inline[0].iov_base = r->pre;
	rb->iov_inline[0].iov_len = r->len;
	rb->iov = rb->iov_inline;
	rb->iovcnt = 1;
	rb->end = rec_read_end;
	rb->end_arg = fb;
	lower_submit(fb, rb);
}

static void rec_submit(struct fault_dev *fd, struct fault_bio *fb)
{
	struct bio *bio = fb->bio;
	bool fua = bio->flags & BIO_FUA;
	struct fault_rec *r = NULL;
	int err;

	pthread_mutex_lock(&fd->lock);
	if (!(fd->flags & F_RECORD) || (!fua && !fb->rb)) {
		pthread_mutex_unlock(&fd->lock);
		goto pass;
	}
	err = -EIO;
	if ((fd->flags & F_OFF) || fd->epoch != fb->epoch)
		goto fail_locked;
	err = -ENOMEM;
	if (!fua && fd->held_bytes + bio->len > fd->rec_limit) {
		LOG_RATELIMIT(LOG_WARN, LS_FAULT, "%s: record limit of %llu bytes reached",
			      fd->bd.name, (unsigned long long)fd->rec_limit);
		goto fail_locked;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		goto fail_locked;
	if (!fua) {
		r->pre = malloc(bio->len);
		if (!r->pre)
			goto fail_locked;
		fd->held_bytes += bio->len;
	}
	r->op = bio->op;
	r->fua = fua;
	r->offset = bio->offset;
	r->len = bio->len;
	r->gen = fd->rec_gen;
	r->epoch = fb->epoch;
	r->fb = fb;
	fb->rec = r;
	list_add_tail(&r->link, &fd->recs);
	list_add_tail(&r->busy_link, &fd->busy);
	if (busy_before(fd, r)) {
		r->state = REC_WAITING;
		fd->nwaiting++;
		pthread_mutex_unlock(&fd->lock);
		return;
	}
	rec_begin_locked(fd, r);
	pthread_mutex_unlock(&fd->lock);
	rec_go(fb);
	return;

fail_locked:
	pthread_mutex_unlock(&fd->lock);
	if (r)
		free(r->pre);
	free(r);
	bio_free(fb->lb);
	fb->lb = NULL;
	if (fb->rb)
		bio_free(fb->rb);
	fb->rb = NULL;
	fb_finish(fb, err);
	return;
pass:
	if (fb->rb)
		bio_free(fb->rb);
	fb->rb = NULL;
	pass_submit(fb);
}

/* ------------------------------------------------------------ rules */

static void update_inject_locked(struct fault_dev *fd)
{
	set_flag(fd, F_INJECT, fd->after_on || !list_empty(&fd->rules) || fd->rnd_prob > 0);
}

/* The errno a rule wants for this bio, or 0. */
static int inject_check(struct fault_dev *fd, const struct bio *bio)
{
	uint32_t bit = FAULT_OP(bio->op);
	bool rnd_hit = false;
	struct list_head *pos;
	int err = 0;

	pthread_mutex_lock(&fd->lock);
	/* draw for every matching I/O, so the sequence does not depend on the
	 * other rules */
	if (fd->rnd_prob > 0 && (fd->rnd_mask & bit))
		rnd_hit = rand_unit(&fd->rnd_state) < fd->rnd_prob;
	if (fd->after_on && (fd->after_mask & bit)) {
		if (fd->after_left)
			fd->after_left--;
		else
			err = fd->after_err;
	}
	if (!err) {
		list_for_each(pos, &fd->rules) {
			struct fault_rule_ent *e = list_entry(pos, struct fault_rule_ent, link);
			uint64_t len = e->r.len ? e->r.len : UINT64_MAX - e->r.offset;

			if (!(e->r.op_mask & bit))
				continue;
			if (bio->op != BIO_FLUSH &&
			    !overlaps(bio->offset, bio->len, e->r.offset, len))
				continue;
			err = e->r.err;
			if (e->r.one_shot) {
				list_del(&e->link);
				free(e);
				update_inject_locked(fd);
			}
			break;
		}
	}
	if (!err && rnd_hit)
		err = fd->rnd_err;
	pthread_mutex_unlock(&fd->lock);
	return err;
}

/* ------------------------------------------------------------ blkdev ops */

static int fault_submit(struct blkdev *bd, struct blkchan *ch, struct bio *bio)
{
	struct fault_dev *fd = to_fault(bd);
	struct fault_bio *fb = bio_ctx(bio);
	struct blkchan *lch = ch->priv;
	uint32_t f = load_flags(fd);
	bool rec = is_write(bio->op) && (f & F_RECORD);
	struct bio *lb, *rb = NULL;
	int err;

	memset(fb, 0, sizeof(*fb));
	fb->fd = fd;
	fb->bio = bio;
	fb->lch = lch;
	fb->epoch = __atomic_load_n(&fd->epoch, __ATOMIC_ACQUIRE);
	list_init(&fb->kick_link);

	lb = bio_alloc(lch);
	if (!lb)
		return -ENOMEM;
	if (rec && !(bio->flags & BIO_FUA)) {
		rb = bio_alloc(lch);
		if (!rb) {
			bio_free(lb);
			return -ENOMEM;
		}
	}
	/* accepted from here on */
	__atomic_add_fetch(&fd->ios[bio->op], 1, __ATOMIC_RELAXED);
	fb->in_submit = true;
	fb->lb = lb;
	fb->rb = rb;
	err = (f & F_OFF) ? -EIO : 0;
	if (!err && (f & F_INJECT)) {
		err = inject_check(fd, bio);
		if (err)
			__atomic_add_fetch(&fd->injected, 1, __ATOMIC_RELAXED);
	}
	if (err) {
		bio_free(lb);
		if (rb)
			bio_free(rb);
		fb->lb = fb->rb = NULL;
		fb_finish(fb, err);
		fb->in_submit = false;
		return 0;
	}

	lb->op = bio->op;
	lb->flags = bio->flags;
	lb->offset = bio->offset;
	lb->len = bio->len;
	lb->iov = bio->iov;
	lb->iovcnt = bio->iovcnt;
	lb->end_arg = fb;

	if (bio->op == BIO_FLUSH && (f & F_RECORD)) {
		pthread_mutex_lock(&fd->lock);
		fb->flush_seq = fd->done_seq;
		fb->flush_track = true;
		pthread_mutex_unlock(&fd->lock);
	}
	if (rec)
		rec_submit(fd, fb);
	else
		pass_submit(fb);
	fb->in_submit = false;
	return 0;
}

static bool fault_supports(struct blkdev *bd, enum bio_op op)
{
	return blkdev_supports(to_fault(bd)->lower, op);
}

static int fault_chan_create(struct blkdev *bd, struct blkchan *ch)
{
	struct blkchan *lch;
	int rc;

	rc = blk_chan_open(to_fault(bd)->lower, ch->loop, &lch);
	if (rc)
		return rc;
	ch->priv = lch;
	return 0;
}

static void fault_chan_destroy(struct blkdev *bd, struct blkchan *ch)
{
	/* every upper bio has ended, so every lower one has */
	blk_chan_close(ch->priv, NULL, NULL);
}

static void fault_close(struct blkdev *bd)
{
	struct fault_dev *fd = to_fault(bd);
	struct list_head *pos, *tmp;

	list_for_each_safe(pos, tmp, &fd->recs)
		rec_free_locked(fd, list_entry(pos, struct fault_rec, link));
	list_for_each_safe(pos, tmp, &fd->rules) {
		list_del(pos);
		free(list_entry(pos, struct fault_rule_ent, link));
	}
	pthread_cond_destroy(&fd->drained);
	pthread_mutex_destroy(&fd->lock);
	free(fd);
}

static const struct blkdev_ops fault_ops = {
	.name = "fault",
	.bio_ctx_size = sizeof(struct fault_bio),
	.close = fault_close,
	.supports = fault_supports,
	.chan_create = fault_chan_create,
	.chan_destroy = fault_chan_destroy,
	.submit = fault_submit,
};

int blk_fault_create(const char *name, struct blkdev *lower, struct blkdev **out)
{
	struct fault_dev *fd;

	if (!lower || !out)
		return -EINVAL;
	fd = calloc(1, sizeof(*fd));
	if (!fd)
		return -ENOMEM;
	blkdev_init(&fd->bd, &fault_ops, name);
	fd->bd.size = lower->size;
	fd->bd.block_size = lower->block_size;
	fd->bd.io_boundary = lower->io_boundary;
	fd->bd.max_io = lower->max_io;
	fd->bd.readonly = lower->readonly;
	snprintf(fd->bd.path, sizeof(fd->bd.path), "%s", lower->name);
	fd->lower = lower;
	pthread_mutex_init(&fd->lock, NULL);
	pthread_cond_init(&fd->drained, NULL);
	list_init(&fd->rules);
	list_init(&fd->recs);
	list_init(&fd->busy);
	fd->rec_limit = RECORD_LIMIT;
	*out = &fd->bd;
	return 0;
}

/* ------------------------------------------------------------ controls */

int fault_fail_after(struct blkdev *bd, uint64_t n, uint32_t op_mask, int err)
{
	struct fault_dev *fd = get_fault(bd);

	if (!fd)
		return -EINVAL;
	pthread_mutex_lock(&fd->lock);
	fd->after_on = true;
	fd->after_left = n;
	fd->after_mask = op_mask;
	fd->after_err = norm_err(err);
	update_inject_locked(fd);
	pthread_mutex_unlock(&fd->lock);
	return 0;
}

int fault_add_rule(struct blkdev *bd, const struct fault_rule *r)
{
	struct fault_dev *fd = get_fault(bd);
	struct fault_rule_ent *e;
	int id;

	if (!fd || !r)
		return -EINVAL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->r = *r;
	e->r.err = norm_err(r->err);
	pthread_mutex_lock(&fd->lock);
	id = e->id = fd->next_rule_id++;
	list_add_tail(&e->link, &fd->rules);
	update_inject_locked(fd);
	pthread_mutex_unlock(&fd->lock);
	return id;
}

int fault_del_rule(struct blkdev *bd, int id)
{
	struct fault_dev *fd = get_fault(bd);
	struct list_head *pos;
	int rc = -ENOENT;

	if (!fd)
		return -EINVAL;
	pthread_mutex_lock(&fd->lock);
	list_for_each(pos, &fd->rules) {
		struct fault_rule_ent *e = list_entry(pos, struct fault_rule_ent, link);

		if (e->id == id) {
			list_del(&e->link);
			free(e);
			rc = 0;
			break;
		}
	}
	update_inject_locked(fd);
	pthread_mutex_unlock(&fd->lock);
	return rc;
}

int fault_set_random(struct blkdev *bd, double prob, uint64_t seed,
		     uint32_t op_mask, int err)
{
	struct fault_dev *fd = get_fault(bd);

	if (!fd || !(prob >= 0 && prob <= 1))
		return -EINVAL;
	pthread_mutex_lock(&fd->lock);
	fd->rnd_prob = prob;
	fd->rnd_state = seed;
	fd->rnd_mask = op_mask;
	fd->rnd_err = norm_err(err);
	update_inject_locked(fd);
	pthread_mutex_unlock(&fd->lock);
	return 0;
}

int fault_clear(struct blkdev *bd)
{
	struct fault_dev *fd = get_fault(bd);
	struct list_head *pos, *tmp;

	if (!fd)
		return -EINVAL;
	pthread_mutex_lock(&fd->lock);
	fd->after_on = false;
	fd->rnd_prob = 0;
	list_for_each_safe(pos, tmp, &fd->rules) {
		list_del(pos);
		free(list_entry(pos, struct fault_rule_ent, link));
	}
	update_inject_locked(fd);
	pthread_mutex_unlock(&fd->lock);
	return 0;
}

int fault_set_latency(struct blkdev *bd, uint64_t ns, uint32_t op_mask)
{
	struct fault_dev *fd = get_fault(bd);

	if (!fd)
		return -EINVAL;
	pthread_mutex_lock(&fd->lock);
	__atomic_store_n(&fd->lat_ns, ns, __ATOMIC_RELAXED);
	__atomic_store_n(&fd->lat_mask, op_mask, __ATOMIC_RELAXED);
	set_flag(fd, F_LATENCY, ns && op_mask);
	pthread_mutex_unlock(&fd->lock);
	return 0;
}

static uint64_t at_risk_locked(struct fault_dev *fd, struct fault_write *out, size_t max)
{
	struct list_head *pos;
	uint64_t n = 0;

	list_for_each(pos, &fd->recs) {
		struct fault_rec *r = list_entry(pos, struct fault_rec, link);

		if (r->fua || r->gen != fd->rec_gen ||
		    (r->state != REC_DONE && r->state != REC_WRITING))
			continue;
		if (out && n < max) {
			out[n].op = r->op;
			out[n].offset = r->offset;
			out[n].len = r->len;
		}
		n++;
	}
	return n;
}

int fault_get_stats(struct blkdev *bd, struct fault_stats *st)
{
	struct fault_dev *fd = get_fault(bd);

	if (!fd || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	for (int i = 0; i < BIO_OP_MAX; i++)
		st->ios[i] = __atomic_load_n(&fd->ios[i], __ATOMIC_RELAXED);
	st->injected = __atomic_load_n(&fd->injected, __ATOMIC_RELAXED);
	pthread_mutex_lock(&fd->lock);
	st->at_risk = at_risk_locked(fd, NULL, 0);
	st->held_bytes = fd->held_bytes;
	st->cuts = fd->cuts;
	st->last_kept = fd->last_kept;
	st->last_dropped = fd->last_dropped;
	st->last_torn = fd->last_torn;
	pthread_mutex_unlock(&fd->lock);
	return 0;
}

int fault_reset_stats(struct blkdev *bd)
{
	struct fault_dev *fd = get_fault(bd);

	if (!fd)
		return -EINVAL;
	for (int i = 0; i < BIO_OP_MAX; i++)
		__atomic_store_n(&fd->ios[i], 0, __ATOMIC_RELAXED);
	__atomic_store_n(&fd->injected, 0, __ATOMIC_RELAXED);
	return 0;
}

int fault_record(struct blkdev *bd, bool on)
{
	struct fault_dev *fd = get_fault(bd);
	struct list_head *pos, *tmp;

	if (!fd)
		return -EINVAL;
	pthread_mutex_lock(&fd->lock);
	if (on != !!(fd->flags & F_RECORD)) {
		fd->rec_gen++;
		/* records still busy belong to their bios: they go when they end */
		list_for_each_safe(pos, tmp, &fd->recs) {
			struct fault_rec *r = list_entry(pos, struct fault_rec, link);

			if (r->state == REC_DONE)
				rec_free_locked(fd, r);
		}
		set_flag(fd, F_RECORD, on);
	}
	pthread_mutex_unlock(&fd->lock);
	return 0;
}

int fault_set_record_limit(struct blkdev *bd, uint64_t bytes)
{
	struct fault_dev *fd = get_fault(bd);

	if (!fd)
		return -EINVAL;
	pthread_mutex_lock(&fd->lock);
	fd->rec_limit = bytes;
	pthread_mutex_unlock(&fd->lock);
	return 0;
}

long fault_unflushed_list(struct blkdev *bd, struct fault_write *out, size_t max)
{
	struct fault_dev *fd = get_fault(bd);
	long n;

	if (!fd)
		return -EINVAL;
	pthread_mutex_lock(&fd->lock);
	n = (long)at_risk_locked(fd, out, max);
	pthread_mutex_unlock(&fd->lock);
	return n;
}

long fault_unflushed_count(struct blkdev *bd)
{
	return fault_unflushed_list(bd, NULL, 0);
}

bool fault_powered(struct blkdev *bd)
{
	struct fault_dev *fd = get_fault(bd);

	return fd && !(load_flags(fd) & F_OFF);
}

int fault_power_restore(struct blkdev *bd)
{
	struct fault_dev *fd = get_fault(bd);

	if (!fd)
		return -EINVAL;
	pthread_mutex_lock(&fd->lock);
	if (fd->cutting) {
		pthread_mutex_unlock(&fd->lock);
		return -EBUSY;
	}
	set_flag(fd, F_OFF, false);
	pthread_mutex_unlock(&fd->lock);
	return 0;
}

/* ------------------------------------------------------------ power cut */

struct cut_w {
	struct fault_rec *r;
	uint64_t	b0, b1;		/* blocks */
	enum fault_action action;
	const uint8_t	*map;		/* FAULT_TEAR */
	uint8_t		*map_alloc;
};

static bool cut_kept(const struct cut_w *w, uint64_t b)
{
	uint64_t i;

	switch (w->action) {
	case FAULT_KEEP:
		return true;
	case FAULT_TEAR:
		i = b - w->b0;
		return w->map[i / 8] & (1u << (i % 8));
	default:
		return false;
	}
}

/* Writes through a private loop and lower channel. */
struct cut_io {
	struct ev_loop	*loop;
	struct blkchan	*ch;
	unsigned	pending;
	int		err;
};

static void cut_io_end(struct bio *bio, int status)
{
	struct cut_io *io = bio->end_arg;

	if (status && !io->err)
		io->err = status;
	io->pending--;
}

static int cut_io_submit(struct cut_io *io, enum bio_op op, uint8_t *buf,
			 uint64_t off, uint64_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	int rc;

	while ((rc = blk_rw(io->ch, op, 0, &iov, buf ? 1 : 0, off, len,
			    cut_io_end, io)) == -EAGAIN || rc == -ENOMEM)
		ev_run_once(io->loop, 10);
	if (!rc)
		io->pending++;
	return rc;
}

static int cut_io_wait(struct cut_io *io)
{
	while (io->pending) {
		int rc = ev_run_once(io->loop, -1);

		if (rc < 0)
			return rc;
	}
	return io->err;
}

struct cut_ev {
	uint64_t	blk;
	size_t		idx;
};

static int cmp_ev(const void *a, const void *b)
{
	const struct cut_ev *x = a, *y = b;

	if (x->blk != y->blk)
		return x->blk < y->blk ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Position of idx in the sorted array a[0..n), or where it would go. */
static size_t bsearch_idx(const size_t *a, size_t n, size_t idx)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (a[mid] < idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Restore blocks [b0, b1) from the pre-image of w. */
static int cut_restore(struct cut_io *io, const struct cut_w *w, uint64_t b0, uint64_t b1,
		       uint64_t bs)
{
	return cut_io_submit(io, BIO_WRITE, w->r->pre + (b0 - w->b0) * bs, b0 * bs,
			     (b1 - b0) * bs);
}

/*
 * Rewrite the lower device. A sweep over the records' edges, oldest-first
 * index order kept in `active`: between two edges the set of writes
 * covering a block does not change, and each block takes the value after
 * the newest write kept there (the pre-image of the next newer one), or the
 * oldest one's pre-image. The work is the sum of the writes' lengths in
 * blocks, i.e. bounded by the memory the records already hold.
 */
static int cut_rewrite(struct fault_dev *fd, struct cut_w *w, size_t n)
{
	uint64_t bs = fd->bd.block_size;
	struct cut_ev *starts, *ends;
	size_t *active, nact = 0, si = 0, ei = 0;
	struct cut_io io = { 0 };
	int rc;
	/* the pending run of blocks to restore from one pre-image */
	struct cut_w *run_w = NULL;
	uint64_t run_b0 = 0, run_b1 = 0;

	if (!n)
		return 0;
	starts = malloc(n * sizeof(*starts));
	ends = malloc(n * sizeof(*ends));
	active = malloc(n * sizeof(*active));
	rc = -ENOMEM;
	if (!starts || !ends || !active)
		goto free_arrays;
	for (size_t i = 0; i < n; i++) {
		starts[i] = (struct cut_ev){ w[i].b0, i };
		ends[i] = (struct cut_ev){ w[i].b1, i };
	}
	qsort(starts, n, sizeof(*starts), cmp_ev);
	qsort(ends, n, sizeof(*ends), cmp_ev);

	rc = ev_loop_new(EV_AUTO, 64, &io.loop);
	if (rc)
		goto free_arrays;
	rc = blk_chan_open(fd->lower, io.loop, &io.ch);
	if (rc)
		goto free_loop;

	while (!rc && (si < n || ei < n)) {
		uint64_t s, e;

		/* the next edge */
		s = ei < n ? ends[ei].blk : UINT64_MAX;
		if (si < n && starts[si].blk < s)
			s = starts[si].blk;
		for (; ei < n && ends[ei].blk == s; ei++) {
			size_t at = bsearch_idx(active, nact, ends[ei].idx);

			memmove(active + at, active + at + 1, (nact - at - 1) * sizeof(*active));
			nact--;
		}
		for (; si < n && starts[si].blk == s; si++) {
			size_t at = bsearch_idx(active, nact, starts[si].idx);

			memmove(active + at + 1, active + at, (nact - at) * sizeof(*active));
			active[at] = starts[si].idx;
			nact++;
		}
		if (!nact)
			continue;
		/* the segment [s, e) up to the edge after */
		e = ei < n ? ends[ei].blk : UINT64_MAX;
		if (si < n && starts[si].blk < e)
			e = starts[si].blk;
		for (uint64_t b = s; b < e && !rc; b++) {
			struct cut_w *src = NULL;
			size_t k = nact;	/* newest kept; nact: none */

			for (size_t t = nact; t-- > 0;) {
				if (cut_kept(&w[active[t]], b)) {
					k = t;
					break;
				}
			}
			if (k == nact)
				src = &w[active[0]];		/* the flushed state */
			else if (k + 1 < nact)
				src = &w[active[k + 1]];	/* what kept write k left */
			/* else: the newest write is kept, the block is right */
			if (src && src == run_w && b == run_b1) {
				run_b1++;
				continue;
			}
			if (run_w)
				rc = cut_restore(&io, run_w, run_b0, run_b1, bs);
			run_w = src;
			run_b0 = b;
			run_b1 = b + 1;
		}
	}
	if (run_w && !rc)
		rc = cut_restore(&io, run_w, run_b0, run_b1, bs);
	{
		int wrc = cut_io_wait(&io);

		if (!rc)
			rc = wrc;
	}
	if (!rc && blkdev_supports(fd->lower, BIO_FLUSH)) {
		rc = cut_io_submit(&io, BIO_FLUSH, NULL, 0, 0);
		if (!rc)
			rc = cut_io_wait(&io);
	}
	blk_chan_close(io.ch, NULL, NULL);
free_loop:
	ev_loop_free(io.loop);
free_arrays:
	free(active);
	free(ends);
	free(starts);
	return rc;
}

int fault_power_cut(struct blkdev *bd, const struct fault_cut_policy *policy)
{
	static const struct fault_cut_policy drop_all = { .mode = FAULT_CUT_DROP_ALL };
	struct fault_dev *fd = get_fault(bd);
	struct list_head *pos, *tmp;
	struct cut_w *w = NULL;
	size_t n = 0, idx = 0;
	uint32_t kept = 0, dropped = 0, torn = 0;
	uint64_t rng, bs;
	int rc = 0;

	if (!fd)
		return -EINVAL;
	if (!policy)
		policy = &drop_all;
	if (policy->mode > FAULT_CUT_LIST ||
	    (policy->mode == FAULT_CUT_LIST && policy->nchoices && !policy->choices))
		return -EINVAL;
	for (size_t i = 0; policy->mode == FAULT_CUT_LIST && i < policy->nchoices; i++)
		if (policy->choices[i].action > FAULT_TEAR)
			return -EINVAL;
	rng = policy->seed;
	bs = fd->bd.block_size;

	pthread_mutex_lock(&fd->lock);
	if (fd->flags & F_OFF) {
		pthread_mutex_unlock(&fd->lock);
		return -EALREADY;
	}
	set_flag(fd, F_OFF, true);
	fd->cutting = true;
	__atomic_add_fetch(&fd->epoch, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&fd->wr_inflight, __ATOMIC_SEQ_CST))
		pthread_cond_wait(&fd->drained, &fd->lock);
	fd->cuts++;
	/* take every landed write; the others never write (epoch) */
	list_for_each(pos, &fd->recs)
		if (list_entry(pos, struct fault_rec, link)->state == REC_DONE)
			n++;
	if (n) {
		w = calloc(n, sizeof(*w));
		if (!w)
			rc = -ENOMEM;
	}
	n = 0;
	list_for_each_safe(pos, tmp, &fd->recs) {
		struct fault_rec *r = list_entry(pos, struct fault_rec, link);

		if (r->state != REC_DONE || !w)
			continue;
		list_del(&r->link);
		if (!r->fua)
			fd->held_bytes -= r->len;
		w[n].r = r;
		w[n].b0 = r->offset / bs;
		w[n].b1 = (r->offset + r->len) / bs;
		n++;
	}
	if (rc)
		fd->cutting = false;
	pthread_mutex_unlock(&fd->lock);
	if (rc)
		return rc;

	for (size_t i = 0; i < n && !rc; i++) {
		struct cut_w *c = &w[i];
		uint64_t nblk = c->b1 - c->b0;
		const struct fault_choice *ch = NULL;

		if (c->r->fua) {
			c->action = FAULT_KEEP;
			continue;
		}
		switch (policy->mode) {
		case FAULT_CUT_RANDOM:
			c->action = (enum fault_action)(splitmix64(&rng) % 3);
			break;
		case FAULT_CUT_DROP_ALL:
			c->action = FAULT_DROP;
			break;
		case FAULT_CUT_KEEP_ALL:
			c->action = FAULT_KEEP;
			break;
		case FAULT_CUT_LIST:
			if (idx < policy->nchoices)
				ch = &policy->choices[idx];
			c->action = ch ? ch->action : FAULT_DROP;
			break;
		}
		idx++;
		if (c->action == FAULT_TEAR) {
			if (ch && ch->tear_map) {
				c->map = ch->tear_map;
			} else {
				c->map = c->map_alloc = calloc(DIV_ROUND_UP(nblk, 8), 1);
				if (!c->map_alloc) {
					rc = -ENOMEM;
					break;
				}
				for (uint64_t b = 0; b < nblk; b++)
					if (splitmix64(&rng) & 1)
						c->map_alloc[b / 8] |= (uint8_t)(1u << (b % 8));
			}
			torn++;
		} else if (c->action == FAULT_KEEP) {
			kept++;
		} else {
			dropped++;
		}
	}
	if (!rc)
		rc = cut_rewrite(fd, w, n);
	if (rc)
		LOG_ERR(LS_FAULT, "%s: power cut could not rewrite the lower device: %s",
			fd->bd.name, strerror(-rc));
	else
		LOG_DBG(LS_FAULT, "%s: power cut: %u kept, %u dropped, %u torn",
			fd->bd.name, kept, dropped, torn);

	for (size_t i = 0; i < n; i++) {
		free(w[i].map_alloc);
		free(w[i].r->pre);
		free(w[i].r);
	}
	free(w);
	pthread_mutex_lock(&fd->lock);
	fd->cutting = false;
	fd->last_kept = kept;
	fd->last_dropped = dropped;
	fd->last_torn = torn;
	pthread_mutex_unlock(&fd->lock);
	return rc;
}
