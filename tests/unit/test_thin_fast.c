/* SPDX-License-Identifier: MIT */
/*
 * The thin volume's fast path, batched commits and resize:
 *  - I/O to chunks a volume owns goes to the pool device on the submitting
 *    loop (counted), the rest to the owner, with the same contents;
 *  - an I/O thread with many bios in flight (fast and owner path, writes,
 *    reads, discards) races snapshots, snapshot deletes and clones taken
 *    from another thread: a snapshot never changes after it is taken and
 *    holds no torn block, the volume ends equal to the I/O thread's model,
 *    and the space maps agree with the trees;
 *  - N concurrent FLUSHes (or FUA writes) make fewer than N commits, and
 *    what they acknowledged survives a power cut;
 *  - thin_vol_resize: online grow, shrink only when asked, chunks past the
 *    end freed, the tail of a cut chunk zeroed, snapshots refused.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "sand/thin.h"
#include "snapshot/pool.h"
#include "test_thin_util.h"

#define CHUNK		(64u * 1024)
#define BLK		4096u
#define VOLSZ		(4u << 20)	/* 64 chunks */
#define NBLK		(VOLSZ / BLK)
#define BPC		(CHUNK / BLK)	/* blocks per chunk */

static struct thin_open_opts oo = { .cache_blocks = 64, .commit_ms = 600000 };

static void pool_up(struct tenv *e, uint64_t size, bool fault, struct thin_pool **p)
{
	struct thin_format_opts fo = { .chunk_size = CHUNK };

	tenv_open(e, size, 512, fault);
	ck_assert_int_eq(thin_pool_format(tenv_dev(e), &fo), 0);
	ck_assert_int_eq(thin_pool_open(tenv_dev(e), &oo, p), 0);
}

static void pcheck(struct thin_pool *p)
{
	struct thin_check_report r;

	ck_assert_int_eq(thin_pool_check(p, &r), 0);
	ck_assert_uint_eq(r.errors, 0);
}

/* ---- synchronous I/O on one loop per thread ---- */

struct sio {
	struct ev_loop	*loop;
	struct blkchan	*ch;
	struct blkdev	*bd;
};

struct sres {
	bool	done;
	int	status;
};

static void sio_end(struct bio *bio, int status)
{
	struct sres *r = bio->end_arg;

	r->done = true;
	r->status = status;
}

static void sio_open(struct sio *s, struct thin_pool *p, const char *name)
{
	ck_assert_int_eq(ev_loop_new(EV_EPOLL, 64, &s->loop), 0);
	ck_assert_int_eq(thin_vol_open(p, name, &s->bd), 0);
	ck_assert_int_eq(blk_chan_open(s->bd, s->loop, &s->ch), 0);
}

static int sio(struct sio *s, enum bio_op op, uint32_t flags, uint64_t off, void *buf,
	       uint64_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct sres r = { 0 };
	int rc;

	while ((rc = blk_rw(s->ch, op, flags, &iov, buf ? 1 : 0, off, len, sio_end, &r)) ==
	       -EAGAIN || rc == -ENOMEM)
		ev_run_once(s->loop, 10);
	if (rc)
		return rc;
	while (!r.done)
		T_TRUE(ev_run_once(s->loop, -1) >= 0);
	return r.status;
}

static void sio_close(struct sio *s)
{
	blk_chan_close(s->ch, NULL, NULL);
	ck_assert_int_eq(blkdev_close(s->bd), 0);
	ev_loop_free(s->loop);
	memset(s, 0, sizeof(*s));
}

/* ---- self-checking blocks: every 8-byte word is tag + index ---- */

static void blk_fill(uint8_t *b, uint64_t tag)
{
	for (unsigned i = 0; i < BLK / 8; i++)
		put_le64(b + 8 * i, tag + i);
}

/* The block's tag, 0 for zeros, UINT64_MAX if torn or foreign. */
static uint64_t blk_tag(const uint8_t *b)
{
	uint64_t tag = get_le64(b);

	if (!tag) {
		for (unsigned i = 0; i < BLK; i++)
			if (b[i])
				return UINT64_MAX;
		return 0;
	}
	for (unsigned i = 1; i < BLK / 8; i++)
		if (get_le64(b + 8 * i) != tag + i)
			return UINT64_MAX;
	return tag;
}

/* tag: block number in the high bits, a version below */
#define TAG(blk, ver)	((uint64_t)(blk) << 40 | (ver))
#define TAG_BLK(tag)	((tag) >> 40)

static struct thin_pool_info pinfo(struct thin_pool *p)
{
	struct thin_pool_info pi;

	ck_assert_int_eq(thin_pool_info(p, &pi), 0);
	return pi;
}

START_TEST(t_fast_used)
{
	struct tenv e;
	struct thin_pool *p;
	struct thin_pool_info a, b;
	struct sio s;
	static uint8_t buf[VOLSZ];
	uint64_t i;

	pool_up(&e, 32u << 20, false, &p);
	ck_assert_int_eq(thin_vol_create(p, "v", VOLSZ), 0);
	sio_open(&s, p, "v");
	/* provisioning: all on the owner */
	for (i = 0; i < NBLK; i++)
		blk_fill(buf + i * BLK, TAG(i, 1));
	a = pinfo(p);
	ck_assert_int_eq(sio(&s, BIO_WRITE, 0, 0, buf, VOLSZ), 0);
	b = pinfo(p);
	ck_assert_uint_eq(b.fast_ios, a.fast_ios);
	ck_assert_uint_eq(b.owner_ios - a.owner_ios, VOLSZ / CHUNK);
	/* owned now: 4 KiB writes and reads go straight to the device */
	for (i = 0; i < NBLK; i += 3) {
		blk_fill(buf + i * BLK, TAG(i, 2));
		ck_assert_int_eq(sio(&s, BIO_WRITE, 0, i * BLK, buf + i * BLK, BLK), 0);
	}
	a = pinfo(p);
	ck_assert_uint_eq(a.fast_ios - b.fast_ios, DIV_ROUND_UP(NBLK, 3));
	ck_assert_uint_eq(a.owner_ios, b.owner_ios);
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(sio(&s, BIO_READ, 0, 0, buf, VOLSZ), 0);
	for (i = 0; i < NBLK; i++)
		ck_assert_uint_eq(blk_tag(buf + i * BLK), TAG(i, i % 3 ? 1 : 2));
	b = pinfo(p);
	ck_assert_uint_eq(b.fast_ios - a.fast_ios, VOLSZ / CHUNK);
	/* a snapshot makes them shared again: reads stay fast, writes go to
	 * the owner (a copy), then are owned and fast once more */
	ck_assert_int_eq(thin_snap_create(p, "v", "v@s"), 0);
	ck_assert_int_eq(sio(&s, BIO_READ, 0, 5 * CHUNK, buf, BLK), 0);	/* still mapped */
	ck_assert_uint_eq(blk_tag(buf), TAG(5 * BPC, 1));
	a = pinfo(p);
	ck_assert_uint_eq(a.fast_ios, b.fast_ios + 1);
	ck_assert_uint_eq(a.owner_ios, b.owner_ios);
	b = a;
	blk_fill(buf, TAG(0, 3));
	ck_assert_int_eq(sio(&s, BIO_WRITE, 0, 0, buf, BLK), 0);
	a = pinfo(p);
	ck_assert_uint_eq(a.fast_ios, b.fast_ios);
	ck_assert_uint_eq(a.owner_ios, b.owner_ios + 1);
	ck_assert_int_eq(sio(&s, BIO_WRITE, 0, BLK, buf + BLK, BLK), 0);
	b = pinfo(p);
	ck_assert_uint_eq(b.fast_ios, a.fast_ios + 1);
	/* FUA and FLUSH still go to the owner and commit */
	ck_assert_int_eq(sio(&s, BIO_WRITE, BIO_FUA, 2 * BLK, buf + 2 * BLK, BLK), 0);
	a = pinfo(p);
	ck_assert_uint_eq(a.owner_ios, b.owner_ios + 1);
	ck_assert_uint_eq(a.commits, b.commits + 1);
	ck_assert_uint_eq(a.flushes, b.flushes + 1);
	/* discard: unmapped, zeros, and no stale fast mapping left */
	ck_assert_int_eq(sio(&s, BIO_DISCARD, 0, CHUNK, NULL, CHUNK), 0);
	memset(buf, 0xff, CHUNK);
	ck_assert_int_eq(sio(&s, BIO_READ, 0, CHUNK, buf, CHUNK), 0);
	for (i = 0; i < BPC; i++)
		ck_assert_uint_eq(blk_tag(buf + i * BLK), 0);
	pcheck(p);
	sio_close(&s);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
}
END_TEST

/* ---- the race: an I/O thread against snapshots from the test thread ---- */

/*
 * A device over another that holds writes submitted from one loop (the I/O
 * thread's) for SLOW_NS before passing them down: their data lands late, as
 * on a real disk, so a snapshot that did not wait for fast-path writes in
 * flight would see them land in chunks it shares.
 */
#define SLOW_NS		(8 * 1000000ull)

static struct ev_loop *slow_loop;
static uint64_t slow_ns = SLOW_NS;

struct slow_dev {
	struct blkdev	bd;
	struct blkdev	*lower;
};

struct slow_chan {
	struct blkchan	*lower;
};

struct slow_bio {
	struct ev_timer	t;
	struct bio	*bio;
};

static void slow_lower_end(struct bio *lb, int status)
{
	bio_complete(lb->end_arg, status);
}

static void slow_failed(struct ev_task *t)
{
	struct bio *bio = container_of(t, struct bio, task);

	bio_complete(bio, bio->status);
}

static void slow_pass(struct bio *bio)
{
	struct slow_chan *sc = bio->ch->priv;
	int rc = blk_rw(sc->lower, bio->op, bio->flags, bio->iov, bio->iovcnt, bio->offset,
			bio->len, slow_lower_end, bio);

	if (rc) {	/* completes later all the same, never inside submit */
		bio->status = rc;
		ev_defer(bio->ch->loop, &bio->task, slow_failed);
	}
}

static void slow_fire(struct ev_timer *t)
{
	struct slow_bio *sb = container_of(t, struct slow_bio, t);

	slow_pass(sb->bio);
}

static int slow_submit(struct blkdev *bd, struct blkchan *ch, struct bio *bio)
{
	struct slow_chan *sc = ch->priv;
	struct slow_bio *sb = bio_ctx(bio);
	int rc;

	if (ch->loop == slow_loop && bio->op == BIO_WRITE) {
		sb->bio = bio;
		memset(&sb->t, 0, sizeof(sb->t));
		ev_timer_start(ch->loop, &sb->t, slow_ns, slow_fire);
		return 0;
	}
	rc = blk_rw(sc->lower, bio->op, bio->flags, bio->iov, bio->iovcnt, bio->offset,
		    bio->len, slow_lower_end, bio);
	return rc;
}

static int slow_chan_create(struct blkdev *bd, struct blkchan *ch)
{
	struct slow_dev *sd = container_of(bd, struct slow_dev, bd);
	struct slow_chan *sc = calloc(1, sizeof(*sc));
	int rc;

	if (!sc)
		return -ENOMEM;
	rc = blk_chan_open(sd->lower, ch->loop, &sc->lower);
	if (rc) {
		free(sc);
		return rc;
	}
	ch->priv = sc;
	return 0;
}

static void slow_chan_destroy(struct blkdev *bd, struct blkchan *ch)
{
	struct slow_chan *sc = ch->priv;

	blk_chan_close(sc->lower, NULL, NULL);
	free(sc);
}

static bool slow_supports(struct blkdev *bd, enum bio_op op)
{
	struct slow_dev *sd = container_of(bd, struct slow_dev, bd);

	return blkdev_supports(sd->lower, op);
}

static void slow_close(struct blkdev *bd)
{
	free(container_of(bd, struct slow_dev, bd));
}

static const struct blkdev_ops slow_ops = {
	.name		= "slow",
	.bio_ctx_size	= sizeof(struct slow_bio),
	.close		= slow_close,
	.supports	= slow_supports,
	.chan_create	= slow_chan_create,
	.chan_destroy	= slow_chan_destroy,
	.submit		= slow_submit,
};

static struct blkdev *slow_create(struct blkdev *lower)
{
	struct slow_dev *sd = calloc(1, sizeof(*sd));

	ck_assert_ptr_nonnull(sd);
	blkdev_init(&sd->bd, &slow_ops, "slow");
	sd->lower = lower;
	sd->bd.size = lower->size;
	sd->bd.block_size = lower->block_size;
	return &sd->bd;
}

#define QD		16
#define RACE_OPS	200000

struct racer;

struct rslot {
	struct racer	*rc;
	bool		busy;
	enum bio_op	op;
	uint64_t	blk, nblk;	/* blocks touched */
	uint64_t	ver;
	uint8_t		buf[CHUNK];
};

struct racer {
	struct sio	s;
	uint64_t	model[NBLK];	/* tag of each block */
	bool		busy[NBLK];
	struct rslot	slots[QD];
	unsigned	inflight;
	uint64_t	seed, ver, ops, done, errors;
	volatile bool	stop;
	char		err[160];
};

static void race_end(struct bio *bio, int status)
{
	struct rslot *sl = bio->end_arg;
	struct racer *r = sl->rc;
	uint64_t i;

	r->inflight--;
	r->done++;
	sl->busy = false;
	if (status && !r->errors++)
		snprintf(r->err, sizeof(r->err), "op %d at block %llu: %d", sl->op,
			 (unsigned long long)sl->blk, status);
	for (i = sl->blk; i < sl->blk + sl->nblk; i++) {
		r->busy[i] = false;
		if (status)
			continue;
		if (sl->op == BIO_WRITE)
			r->model[i] = TAG(i, sl->ver);
		else if (sl->op == BIO_DISCARD)
			r->model[i] = 0;
		else if (blk_tag(sl->buf + (i - sl->blk) * BLK) != r->model[i] && !r->errors++)
			snprintf(r->err, sizeof(r->err), "read block %llu: %llx, model %llx",
				 (unsigned long long)i,
				 (unsigned long long)blk_tag(sl->buf + (i - sl->blk) * BLK),
				 (unsigned long long)r->model[i]);
	}
}

/* Start one random op on blocks no other op in flight touches. */
static bool race_start(struct racer *r, struct rslot *sl)
{
	uint64_t x = rnd(&r->seed), i;
	struct iovec iov = { .iov_base = sl->buf };
	int rc;

	sl->nblk = 1;
	switch (x % 100) {
	case 0 ... 69:
		sl->op = BIO_WRITE;
		break;
	case 70 ... 74:		/* a whole chunk: remapped without a copy */
		sl->op = BIO_WRITE;
		sl->nblk = BPC;
		break;
	case 75 ... 93:
		sl->op = BIO_READ;
		break;
	case 94 ... 96:
		sl->op = BIO_DISCARD;
		sl->nblk = BPC;
		break;
	default:
		sl->op = BIO_DISCARD;	/* partial: zeros written */
		break;
	}
	sl->blk = (rnd(&r->seed) % NBLK) / sl->nblk * sl->nblk;
	for (i = sl->blk; i < sl->blk + sl->nblk; i++)
		if (r->busy[i])
			return false;
	sl->ver = ++r->ver;
	if (sl->op == BIO_WRITE)
		for (i = 0; i < sl->nblk; i++)
			blk_fill(sl->buf + i * BLK, TAG(sl->blk + i, sl->ver));
	iov.iov_len = sl->nblk * BLK;
	rc = blk_rw(r->s.ch, sl->op, 0, &iov, sl->op == BIO_DISCARD ? 0 : 1, sl->blk * BLK,
		    sl->nblk * BLK, race_end, sl);
	if (rc)
		return false;
	for (i = sl->blk; i < sl->blk + sl->nblk; i++)
		r->busy[i] = true;
	sl->busy = true;
	r->inflight++;
	r->ops++;
	return true;
}

static void *race_main(void *arg)
{
	struct racer *r = arg;

	while ((!r->stop && r->ops < RACE_OPS) || r->inflight) {
		for (unsigned k = 0; k < QD && !r->stop && r->ops < RACE_OPS; k++)
			if (!r->slots[k].busy)
				race_start(r, &r->slots[k]);
		if (ev_run_once(r->s.loop, 100) < 0)
			break;
	}
	return NULL;
}

/* Every block of a snapshot is zeros or a whole block written to that very
 * place, never torn, never another block's. */
static void snap_read(struct sio *s, uint8_t *buf)
{
	ck_assert_int_eq(sio(s, BIO_READ, 0, 0, buf, VOLSZ), 0);
	for (uint64_t i = 0; i < NBLK; i++) {
		uint64_t t = blk_tag(buf + i * BLK);

		if (t == UINT64_MAX || (t && TAG_BLK(t) != i))
			ck_abort_msg("%s: block %llu torn or foreign (%llx)", s->bd->name,
				     (unsigned long long)i, (unsigned long long)t);
	}
}

START_TEST(t_race)
{
	struct thin_pool *p;
	struct thin_pool_info a, b;
	struct racer *r = calloc(1, sizeof(*r));
	uint8_t *b1 = malloc(VOLSZ), *b2 = malloc(VOLSZ);
	char names[8][THIN_NAME_MAX];
	unsigned nsnap = 0, k;
	pthread_t th;

	struct thin_format_opts fo = { .chunk_size = CHUNK };
	struct blkdev *mem, *slow;

	ck_assert_int_eq(blk_mem_create("thinmem", 64u << 20, 512, &mem), 0);
	slow = slow_create(mem);
	ck_assert_int_eq(thin_pool_format(slow, &fo), 0);
	ck_assert_int_eq(thin_pool_open(slow, &oo, &p), 0);
	ck_assert_int_eq(thin_vol_create(p, "v", VOLSZ), 0);
	ck_assert_int_eq(ev_loop_new(EV_EPOLL, 64, &r->s.loop), 0);
	slow_loop = r->s.loop;	/* before any channel on it reaches the device */
	ck_assert_int_eq(thin_vol_open(p, "v", &r->s.bd), 0);
	ck_assert_int_eq(blk_chan_open(r->s.bd, r->s.loop, &r->s.ch), 0);
	for (k = 0; k < QD; k++)
		r->slots[k].rc = r;
	r->seed = 0x5eed0000u + (uint64_t)_i;
	a = pinfo(p);
	ck_assert_int_eq(pthread_create(&th, NULL, race_main, r), 0);
	for (k = 0; k < 40 && !__atomic_load_n(&r->errors, __ATOMIC_RELAXED); k++) {
		struct sio s;
		const char *nm = names[nsnap % ARRAY_SIZE(names)];
		struct timespec ts = { .tv_nsec = 2 * SLOW_NS };

		nanosleep(&ts, NULL);
		if (nsnap >= ARRAY_SIZE(names))	/* delete the oldest, under way */
			ck_assert_int_eq(thin_vol_delete(p, nm), 0);
		snprintf(names[nsnap % ARRAY_SIZE(names)], THIN_NAME_MAX, "v@%u", k);
		nm = names[nsnap++ % ARRAY_SIZE(names)];
		if (k % 5 == 4)
			ck_assert_int_eq(thin_clone_create(p, "v", nm), 0);
		else
			ck_assert_int_eq(thin_snap_create(p, "v", nm), 0);
		/* the snapshot is whole, and stays as it was taken while
		 * the volume keeps changing */
		sio_open(&s, p, nm);
		snap_read(&s, b1);
		nanosleep(&ts, NULL);
		snap_read(&s, b2);
		for (uint64_t i = 0; i < NBLK; i++)
			if (memcmp(b1 + i * BLK, b2 + i * BLK, BLK))
				ck_abort_msg("%s changed at block %llu", nm, (unsigned long long)i);
		sio_close(&s);
	}
	r->stop = true;
	pthread_join(th, NULL);
	ck_assert_msg(!r->errors, "%llu errors, first: %s", (unsigned long long)r->errors,
		      r->err);
	b = pinfo(p);
	/* both paths were used, a good deal */
	ck_assert_uint_gt(b.fast_ios - a.fast_ios, 300);
	ck_assert_uint_gt(b.owner_ios - a.owner_ios, 100);
	/* the volume is what the I/O thread's model says */
	ck_assert_int_eq(sio(&r->s, BIO_READ, 0, 0, b1, VOLSZ), 0);
	for (uint64_t i = 0; i < NBLK; i++)
		if (blk_tag(b1 + i * BLK) != r->model[i])
			ck_abort_msg("block %llu: %llx, model %llx", (unsigned long long)i,
				     (unsigned long long)blk_tag(b1 + i * BLK),
				     (unsigned long long)r->model[i]);
	sio_close(&r->s);
	pcheck(p);
	ck_assert_int_eq(thin_pool_close(p), 0);
	slow_loop = NULL;
	ck_assert_int_eq(blkdev_close(slow), 0);
	ck_assert_int_eq(blkdev_close(mem), 0);
	free(r);
	free(b1);
	free(b2);
}
END_TEST

/* A discard of a chunk with a fast-path write in flight waits for the
 * write to land before the chunk is unmapped (and so before it can be
 * freed and reused): the write ends first, then the discard, and the chunk
 * reads zeros. */
struct order {
	int	n, who[2], status[2];
};

static void order_end(struct bio *bio, int status)
{
	struct order *o = bio->end_arg;

	o->status[o->n] = status;
	o->who[o->n++] = bio->op;
}

START_TEST(t_discard_inflight)
{
	struct thin_format_opts fo = { .chunk_size = CHUNK };
	struct thin_pool *p;
	struct thin_pool_info a, b;
	struct blkdev *mem, *slow;
	struct sio s;
	struct order o = { 0 };
	static uint8_t buf[CHUNK];
	struct iovec iov = { .iov_base = buf, .iov_len = BLK };
	uint64_t t0;
	unsigned i;

	ck_assert_int_eq(blk_mem_create("thinmem", 8u << 20, 512, &mem), 0);
	slow = slow_create(mem);
	ck_assert_int_eq(thin_pool_format(slow, &fo), 0);
	ck_assert_int_eq(thin_pool_open(slow, &oo, &p), 0);
	ck_assert_int_eq(thin_vol_create(p, "v", VOLSZ), 0);
	ck_assert_int_eq(ev_loop_new(EV_EPOLL, 64, &s.loop), 0);
	slow_loop = s.loop;
	slow_ns = 300 * 1000000ull;
	ck_assert_int_eq(thin_vol_open(p, "v", &s.bd), 0);
	ck_assert_int_eq(blk_chan_open(s.bd, s.loop, &s.ch), 0);
	memset(buf, 0x77, CHUNK);
	ck_assert_int_eq(sio(&s, BIO_WRITE, 0, 0, buf, CHUNK), 0);	/* owner: a new chunk */
	a = pinfo(p);
	t0 = now_ns();
	ck_assert_int_eq(blk_rw(s.ch, BIO_WRITE, 0, &iov, 1, 0, BLK, order_end, &o), 0);
	b = pinfo(p);
	ck_assert_uint_eq(b.fast_ios, a.fast_ios + 1);
	ck_assert_int_eq(blk_rw(s.ch, BIO_DISCARD, 0, NULL, 0, 0, CHUNK, order_end, &o), 0);
	while (o.n < 2)
		ck_assert_int_ge(ev_run_once(s.loop, -1), 0);
	ck_assert_int_eq(o.who[0], BIO_WRITE);
	ck_assert_int_eq(o.who[1], BIO_DISCARD);
	ck_assert_int_eq(o.status[0], 0);
	ck_assert_int_eq(o.status[1], 0);
	ck_assert_uint_ge(now_ns() - t0, 250 * 1000000ull);
	ck_assert_int_eq(sio(&s, BIO_READ, 0, 0, buf, CHUNK), 0);
	for (i = 0; i < CHUNK; i++)
		ck_assert_uint_eq(buf[i], 0);
	slow_ns = SLOW_NS;
	sio_close(&s);
	pcheck(p);
	ck_assert_int_eq(thin_pool_close(p), 0);
	slow_loop = NULL;
	ck_assert_int_eq(blkdev_close(slow), 0);
	ck_assert_int_eq(blkdev_close(mem), 0);
}
END_TEST

/*
 * Provisionings on the owner run in flight together: 32 writes to new
 * chunks, each written 50 ms late, end in far less than 32 x 50 ms. Bios
 * to a chunk being provisioned wait for it (the cell): a second write and
 * a read of the same chunk, sent right behind the first write, see it. A
 * commit and an online check while provisionings are in flight (clean),
 * then a power cut: the pool reopens clean (no chunk allocated and left
 * unmapped).
 */
#define NPROV	32

struct many {
	int	ended, errors;
};

static void many_end(struct bio *bio, int status)
{
	struct many *m = bio->end_arg;

	m->ended++;
	if (status)
		m->errors++;
}

START_TEST(t_prov_async)
{
	struct thin_format_opts fo = { .chunk_size = CHUNK };
	struct fault_cut_policy pol = { .mode = FAULT_CUT_DROP_ALL };
	struct thin_pool *p;
	struct blkdev *slow;
	struct tenv e;
	struct sio s;
	struct many m = { 0 };
	static uint8_t buf[NPROV][BLK], rb[3][BLK], cbuf[CHUNK];
	struct iovec iov[NPROV], riov = { .iov_base = rb[0], .iov_len = BLK };
	uint64_t t0, el;
	int i, rc;

	tenv_open(&e, 32u << 20, 512, true);
	ck_assert_int_eq(fault_record(e.fd, true), 0);
	slow = slow_create(e.fd);
	ck_assert_int_eq(thin_pool_format(slow, &fo), 0);
	ck_assert_int_eq(thin_pool_open(slow, &oo, &p), 0);
	ck_assert_int_eq(thin_vol_create(p, "v", VOLSZ), 0);
	sio_open(&s, p, "v");
	slow_loop = p->ioloop;	/* the owner's data writes land 50 ms late */
	slow_ns = 50 * 1000000ull;
	/* 32 new chunks at once */
	t0 = now_ns();
	for (i = 0; i < NPROV; i++) {
		blk_fill(buf[i], TAG(i * BPC, 1));
		iov[i] = (struct iovec){ .iov_base = buf[i], .iov_len = BLK };
		ck_assert_int_eq(blk_rw(s.ch, BIO_WRITE, 0, &iov[i], 1, (uint64_t)i * CHUNK, BLK,
					many_end, &m), 0);
	}
	while (m.ended < NPROV)
		ck_assert_int_ge(ev_run_once(s.loop, -1), 0);
	el = now_ns() - t0;
	ck_assert_int_eq(m.errors, 0);
	ck_assert_msg(el < NPROV * slow_ns / 2, "%d provisionings took %llu ms", NPROV,
		      (unsigned long long)(el / 1000000));
	/* a write, a second write and a read of one new chunk, all at once */
	memset(&m, 0, sizeof(m));
	blk_fill(rb[1], TAG(40 * BPC, 2));
	blk_fill(rb[2], TAG(40 * BPC + 1, 2));
	{
		struct iovec a = { .iov_base = rb[1], .iov_len = BLK };
		struct iovec b = { .iov_base = rb[2], .iov_len = BLK };

		ck_assert_int_eq(blk_rw(s.ch, BIO_WRITE, 0, &a, 1, 40ull * CHUNK, BLK, many_end,
					&m), 0);
		ck_assert_int_eq(blk_rw(s.ch, BIO_WRITE, 0, &b, 1, 40ull * CHUNK + BLK, BLK,
					many_end, &m), 0);
		ck_assert_int_eq(blk_rw(s.ch, BIO_READ, 0, &riov, 1, 40ull * CHUNK, BLK,
					many_end, &m), 0);
		while (m.ended < 3)
			ck_assert_int_ge(ev_run_once(s.loop, -1), 0);
	}
	ck_assert_int_eq(m.errors, 0);
	ck_assert_uint_eq(blk_tag(rb[0]), TAG(40 * BPC, 2));	/* the read waited */
	ck_assert_int_eq(sio(&s, BIO_READ, 0, 40ull * CHUNK, cbuf, CHUNK), 0);
	ck_assert_uint_eq(blk_tag(cbuf), TAG(40 * BPC, 2));
	ck_assert_uint_eq(blk_tag(cbuf + BLK), TAG(40 * BPC + 1, 2));	/* both writes */
	for (i = 2; i < (int)BPC; i++)
		ck_assert_uint_eq(blk_tag(cbuf + i * BLK), 0);
	ck_assert_int_eq(sio(&s, BIO_FLUSH, 0, 0, NULL, 0), 0);
	/* copies in flight across a commit, then a power cut */
	ck_assert_int_eq(thin_snap_create(p, "v", "v@s"), 0);
	/* a mapping changed since the snapshot's commit, so that the next
	 * commit writes the space maps while the copies are in flight */
	ck_assert_int_eq(sio(&s, BIO_WRITE, 0, 50ull * CHUNK, cbuf, BLK), 0);
	memset(&m, 0, sizeof(m));
	for (i = 0; i < NPROV; i++) {
		blk_fill(buf[i], TAG(i * BPC + 1, 3));
		ck_assert_int_eq(blk_rw(s.ch, BIO_WRITE, 0, &iov[i], 1, (uint64_t)i * CHUNK + BLK,
					BLK, many_end, &m), 0);
	}
	ev_run_once(s.loop, 0);
	ck_assert_int_eq(thin_pool_commit(p), 0);
	pcheck(p);	/* online, copies in flight: their new chunks are no leak */
	while (m.ended < NPROV)
		ck_assert_int_ge(ev_run_once(s.loop, -1), 0);
	ck_assert_int_eq(m.errors, 0);
	ck_assert_int_eq(sio(&s, BIO_READ, 0, 5 * CHUNK, cbuf, CHUNK), 0);
	ck_assert_uint_eq(blk_tag(cbuf), TAG(5 * BPC, 1));	/* copied */
	ck_assert_uint_eq(blk_tag(cbuf + BLK), TAG(5 * BPC + 1, 3));
	ck_assert_int_eq(fault_power_cut(e.fd, &pol), 0);
	sio_close(&s);
	rc = thin_pool_close(p);
	ck_assert(rc == 0 || rc == -EIO);
	slow_loop = NULL;
	slow_ns = SLOW_NS;
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	ck_assert_int_eq(thin_pool_open(slow, &oo, &p), 0);
	pcheck(p);	/* nothing leaked */
	sio_open(&s, p, "v");
	for (i = 0; i < NPROV; i++) {	/* the flushed state: the first writes only */
		ck_assert_int_eq(sio(&s, BIO_READ, 0, (uint64_t)i * CHUNK, cbuf, 2 * BLK), 0);
		ck_assert_uint_eq(blk_tag(cbuf), TAG(i * BPC, 1));
		ck_assert_uint_eq(blk_tag(cbuf + BLK), 0);
	}
	sio_close(&s);
	ck_assert_int_eq(thin_pool_close(p), 0);
	ck_assert_int_eq(blkdev_close(slow), 0);
	tenv_close(&e);
}
END_TEST

/*
 * The owner's reads of chunks the mapping cache misses, and its writes in
 * place (FUA ones, and any the cache misses), are in flight together too:
 * with 100 ms of latency on every data read (then write) of the device, 32
 * of them at once end in about one latency, not 32. Each read returns its
 * chunk's block, each write lands. Then the same with a mapping cache of 4
 * slots, so that most of them find their slot pinned by another chunk's
 * I/O (done synchronously instead): the same contents.
 */
#define NDIRECT		32
#define LAT_NS		(100 * 1000000ull)

static void direct_round(struct thin_pool *p, struct blkdev *fd, enum bio_op op,
			 uint32_t flags, uint64_t ver, bool timed)
{
	static uint8_t buf[NDIRECT][BLK];
	struct iovec iov[NDIRECT];
	struct thin_pool_info a, b;
	struct many m = { 0 };
	struct sio s;
	uint64_t t0, el;
	int i;

	sio_open(&s, p, "v");	/* a new open: an empty mapping cache */
	for (i = 0; i < NDIRECT; i++) {
		if (op == BIO_WRITE)
			blk_fill(buf[i], TAG(i * BPC + 2, ver));
		else
			memset(buf[i], 0xee, BLK);
		iov[i] = (struct iovec){ .iov_base = buf[i], .iov_len = BLK };
	}
	a = pinfo(p);
	ck_assert_int_eq(fault_set_latency(fd, LAT_NS, 1u << op), 0);
	t0 = now_ns();
	for (i = 0; i < NDIRECT; i++)
		ck_assert_int_eq(blk_rw(s.ch, op, flags, &iov[i], 1, (uint64_t)i * CHUNK + 2 * BLK,
					BLK, many_end, &m), 0);
	while (m.ended < NDIRECT)
		ck_assert_int_ge(ev_run_once(s.loop, -1), 0);
	el = now_ns() - t0;
	ck_assert_int_eq(fault_set_latency(fd, 0, 0), 0);
	b = pinfo(p);
	ck_assert_int_eq(m.errors, 0);
	ck_assert_uint_eq(b.owner_ios - a.owner_ios, NDIRECT);	/* none on the fast path */
	ck_assert_uint_eq(b.fast_ios, a.fast_ios);
	if (timed)	/* one after the other: 32 x 100 ms */
		ck_assert_msg(el < NDIRECT * LAT_NS / 4, "%d owner %ss took %llu ms", NDIRECT,
			      op == BIO_READ ? "read" : "write",
			      (unsigned long long)(el / 1000000));
	for (i = 0; i < NDIRECT; i++) {
		if (op == BIO_READ)
			ck_assert_uint_eq(blk_tag(buf[i]), TAG(i * BPC + 2, ver));
		ck_assert_int_eq(sio(&s, BIO_READ, 0, (uint64_t)i * CHUNK + 2 * BLK, buf[i], BLK),
				 0);
		ck_assert_uint_eq(blk_tag(buf[i]), TAG(i * BPC + 2, ver));
	}
	sio_close(&s);
}

START_TEST(t_owner_async)
{
	struct thin_open_opts small = oo;
	static uint8_t cbuf[CHUNK];
	struct thin_pool *p;
	struct tenv e;
	struct sio s;
	int i, j;

	pool_up(&e, 16u << 20, true, &p);
	ck_assert_int_eq(thin_vol_create(p, "v", VOLSZ), 0);
	sio_open(&s, p, "v");
	for (i = 0; i < NDIRECT; i++) {	/* chunks of the volume's own */
		for (j = 0; j < (int)BPC; j++)
			blk_fill(cbuf + j * BLK, TAG(i * BPC + j, 1));
		ck_assert_int_eq(sio(&s, BIO_WRITE, 0, (uint64_t)i * CHUNK, cbuf, CHUNK), 0);
	}
	sio_close(&s);
	direct_round(p, e.fd, BIO_READ, 0, 1, true);
	direct_round(p, e.fd, BIO_WRITE, BIO_FUA, 2, true);
	direct_round(p, e.fd, BIO_WRITE, 0, 3, true);
	direct_round(p, e.fd, BIO_READ, 0, 3, true);
	pcheck(p);
	ck_assert_int_eq(thin_pool_close(p), 0);
	small.map_cache = 4;	/* slots shared by 8 chunks each */
	ck_assert_int_eq(thin_pool_open(e.fd, &small, &p), 0);
	direct_round(p, e.fd, BIO_READ, 0, 3, false);
	direct_round(p, e.fd, BIO_WRITE, 0, 4, false);
	direct_round(p, e.fd, BIO_WRITE, BIO_FUA, 5, false);
	pcheck(p);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
}
END_TEST

/*
 * Copy buffers are bounded pool-wide: with a budget of 4 chunks and the
 * io thread's writes landing 20 ms late, 64 first writes after a snapshot
 * (a partial write to each shared chunk, plus a second one to chunk 0
 * right behind the first) all complete, never with more than 4 buffers in
 * use, some having waited; each chunk holds its old contents and the new
 * block, the snapshot only the old ones.
 */
#define NCOPY		(VOLSZ / CHUNK)

START_TEST(t_copy_budget)
{
	struct thin_format_opts fo = { .chunk_size = CHUNK };
	struct thin_open_opts co = oo;
	static uint8_t buf[NCOPY + 1][BLK], cbuf[CHUNK];
	struct iovec iov[NCOPY + 1];
	struct thin_pool_info pi;
	struct thin_pool *p;
	struct blkdev *mem, *slow;
	struct many m = { 0 };
	struct sio s, ss;
	unsigned i, j;

	ck_assert_int_eq(blk_mem_create("thinmem", 16u << 20, 512, &mem), 0);
	slow = slow_create(mem);
	ck_assert_int_eq(thin_pool_format(slow, &fo), 0);
	co.copy_mem = 4 * CHUNK + CHUNK / 2;	/* 4 buffers */
	ck_assert_int_eq(thin_pool_open(slow, &co, &p), 0);
	ck_assert_int_eq(thin_vol_create(p, "v", VOLSZ), 0);
	sio_open(&s, p, "v");
	for (i = 0; i < NCOPY; i++) {
		for (j = 0; j < BPC; j++)
			blk_fill(cbuf + j * BLK, TAG(i * BPC + j, 1));
		ck_assert_int_eq(sio(&s, BIO_WRITE, 0, (uint64_t)i * CHUNK, cbuf, CHUNK), 0);
	}
	ck_assert_int_eq(thin_snap_create(p, "v", "v@s"), 0);
	slow_loop = p->ioloop;
	slow_ns = 20 * 1000000ull;
	for (i = 0; i <= NCOPY; i++) {
		/* the last one: chunk 0's block 4, behind its block 3 */
		uint64_t blk = i < NCOPY ? i * BPC + 3 : 4;

		blk_fill(buf[i], TAG(blk, 2));
		iov[i] = (struct iovec){ .iov_base = buf[i], .iov_len = BLK };
		ck_assert_int_eq(blk_rw(s.ch, BIO_WRITE, 0, &iov[i], 1, blk * BLK, BLK, many_end,
					&m), 0);
	}
	while (m.ended < (int)NCOPY + 1)
		ck_assert_int_ge(ev_run_once(s.loop, -1), 0);
	slow_loop = NULL;
	slow_ns = SLOW_NS;
	ck_assert_int_eq(m.errors, 0);
	pi = pinfo(p);
	ck_assert_uint_eq(pi.copy_mem_peak, 4 * CHUNK);
	ck_assert_uint_eq(pi.copy_mem, 0);
	ck_assert_uint_gt(pi.copy_waits, 0);
	sio_open(&ss, p, "v@s");
	for (i = 0; i < NCOPY; i++) {
		ck_assert_int_eq(sio(&s, BIO_READ, 0, (uint64_t)i * CHUNK, cbuf, CHUNK), 0);
		for (j = 0; j < BPC; j++)
			ck_assert_uint_eq(blk_tag(cbuf + j * BLK),
					  TAG(i * BPC + j, j == 3 || (i == 0 && j == 4) ? 2 : 1));
		ck_assert_int_eq(sio(&ss, BIO_READ, 0, (uint64_t)i * CHUNK, cbuf, CHUNK), 0);
		for (j = 0; j < BPC; j++)
			ck_assert_uint_eq(blk_tag(cbuf + j * BLK), TAG(i * BPC + j, 1));
	}
	sio_close(&ss);
	sio_close(&s);
	pcheck(p);
	ck_assert_int_eq(thin_pool_close(p), 0);
	ck_assert_int_eq(blkdev_close(slow), 0);
	ck_assert_int_eq(blkdev_close(mem), 0);
}
END_TEST

/* ---- batched commits ---- */

/* Hold the owner thread until released, so that bios pile up. */
struct gate {
	pthread_mutex_t	lock;
	pthread_cond_t	cond;
	bool		in, open;
	struct thin_pool *p;
	pthread_t	th;
};

static int gate_fn(struct thin_pool *p, void *arg)
{
	struct gate *g = arg;

	pthread_mutex_lock(&g->lock);
	g->in = true;
	pthread_cond_broadcast(&g->cond);
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static void *gate_main(void *arg)
{
	struct gate *g = arg;

	pool_call(g->p, gate_fn, g);
	return NULL;
}

static void gate_close(struct gate *g, struct thin_pool *p)
{
	memset(g, 0, sizeof(*g));
	g->p = p;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	ck_assert_int_eq(pthread_create(&g->th, NULL, gate_main, g), 0);
	pthread_mutex_lock(&g->lock);
	while (!g->in)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->open = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->th, NULL);
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
}

#define NFL	16

struct fl {
	int	ended, status[2 * NFL];
};

static void fl_end(struct bio *bio, int status)
{
	struct fl *f = bio->end_arg;

	f->status[f->ended++] = status;
}

/* _i = 0: NFL writes to new chunks, then (once they have ended) NFL
 * FLUSHes at once; 1: NFL FUA writes to new chunks at once. A FLUSH only
 * covers writes that ended before it was submitted, hence the two steps. */
START_TEST(t_flush_batch)
{
	struct tenv e;
	struct thin_pool *p;
	struct thin_pool_info a, b;
	struct fault_cut_policy pol = { .mode = FAULT_CUT_DROP_ALL };
	struct gate g;
	struct sio s;
	struct fl f = { 0 };
	static uint8_t buf[NFL][BLK], rb[BLK];
	int n = 0, i;

	pool_up(&e, 32u << 20, true, &p);
	ck_assert_int_eq(fault_record(e.fd, true), 0);
	ck_assert_int_eq(thin_vol_create(p, "v", VOLSZ), 0);
	sio_open(&s, p, "v");
	a = pinfo(p);
	if (!_i)
		for (i = 0; i < NFL; i++) {
			blk_fill(buf[i], TAG(i, 7));
			ck_assert_int_eq(sio(&s, BIO_WRITE, 0, (uint64_t)i * CHUNK, buf[i], BLK), 0);
		}
	gate_close(&g, p);
	for (i = 0; i < NFL; i++) {
		struct iovec iov = { .iov_base = buf[i], .iov_len = BLK };

		blk_fill(buf[i], TAG(i, 7));
		if (_i)
			ck_assert_int_eq(blk_rw(s.ch, BIO_WRITE, BIO_FUA, &iov, 1,
						(uint64_t)i * CHUNK, BLK, fl_end, &f), 0);
		else
			ck_assert_int_eq(blk_rw(s.ch, BIO_FLUSH, 0, NULL, 0, 0, 0, fl_end, &f), 0);
		n++;
	}
	/* FUA writes reach the commit one by one, as their chunks are
	 * provisioned: a slow device flush (as real disks have) holds the
	 * first commit while the others queue behind it, even on a loaded
	 * machine where provisioning I/Os end far apart */
	if (_i)
		ck_assert_int_eq(fault_set_latency(e.fd, 100 * 1000 * 1000, FAULT_OP(BIO_FLUSH)), 0);
	gate_open(&g);
	while (f.ended < n)
		ck_assert_int_ge(ev_run_once(s.loop, -1), 0);
	ck_assert_int_eq(fault_set_latency(e.fd, 0, FAULT_OP(BIO_FLUSH)), 0);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(f.status[i], 0);
	b = pinfo(p);
	ck_assert_uint_eq(b.flushes - a.flushes, NFL);
	ck_assert_uint_ge(b.commits - a.commits, 1);
	ck_assert_uint_lt(b.commits - a.commits, NFL);
	ck_assert_uint_lt(b.generation - a.generation, NFL);
	/* acknowledged: durable */
	ck_assert_int_eq(fault_power_cut(e.fd, &pol), 0);
	sio_close(&s);
	i = thin_pool_close(p);
	ck_assert(i == 0 || i == -EIO);
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	ck_assert_int_eq(thin_pool_open(tenv_dev(&e), &oo, &p), 0);
	sio_open(&s, p, "v");
	for (i = 0; i < NFL; i++) {
		ck_assert_int_eq(sio(&s, BIO_READ, 0, (uint64_t)i * CHUNK, rb, BLK), 0);
		ck_assert_uint_eq(blk_tag(rb), TAG(i, 7));
	}
	sio_close(&s);
	pcheck(p);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
}
END_TEST

/* ---- resize ---- */

START_TEST(t_resize)
{
	struct tenv e;
	struct thin_pool *p;
	struct thin_pool_info a, b;
	struct thin_vol_info vi;
	struct sio s;
	static uint8_t buf[2 * VOLSZ];
	uint64_t i, cut = 2 * CHUNK + 3 * BLK;	/* inside chunk 2 */

	pool_up(&e, 32u << 20, false, &p);
	ck_assert_int_eq(thin_vol_create(p, "v", VOLSZ), 0);
	sio_open(&s, p, "v");
	for (i = 0; i < NBLK; i++)
		blk_fill(buf + i * BLK, TAG(i, 1));
	ck_assert_int_eq(sio(&s, BIO_WRITE, 0, 0, buf, VOLSZ), 0);
	/* refused */
	ck_assert_int_eq(thin_vol_resize(p, "nope", VOLSZ, false), -ENOENT);
	ck_assert_int_eq(thin_vol_resize(p, "v", 0, false), -EINVAL);
	ck_assert_int_eq(thin_vol_resize(p, "v", VOLSZ + 100, false), -EINVAL);
	ck_assert_int_eq(thin_vol_resize(p, "v", VOLSZ / 2, false), -EPERM);
	ck_assert_int_eq(thin_snap_create(p, "v", "v@s"), 0);
	ck_assert_int_eq(thin_vol_resize(p, "v@s", 2 * VOLSZ, false), -EROFS);
	ck_assert_int_eq(thin_vol_resize(p, "v@s", VOLSZ / 2, true), -EROFS);
	ck_assert_int_eq(thin_vol_delete(p, "v@s"), 0);
	ck_assert_int_eq(thin_vol_resize(p, "v", VOLSZ, false), 0);	/* no change */
	/* grow online: the open device sees it; the new part reads zeros */
	ck_assert_int_eq(thin_vol_resize(p, "v", 2 * VOLSZ, false), 0);
	ck_assert_uint_eq(s.bd->size, 2 * VOLSZ);
	ck_assert_int_eq(sio(&s, BIO_READ, 0, 0, buf, 2 * VOLSZ), 0);
	for (i = 0; i < 2 * NBLK; i++)
		ck_assert_uint_eq(blk_tag(buf + i * BLK), i < NBLK ? TAG(i, 1) : 0);
	blk_fill(buf, TAG(2 * NBLK - 1, 2));
	ck_assert_int_eq(sio(&s, BIO_WRITE, 0, 2 * VOLSZ - BLK, buf, BLK), 0);
	ck_assert_int_eq(thin_vol_info(p, "v", &vi), 0);
	ck_assert_uint_eq(vi.size, 2 * VOLSZ);
	ck_assert_uint_eq(vi.mapped_chunks, VOLSZ / CHUNK + 1);
	/* shrink, online, into the middle of a chunk */
	ck_assert_int_eq(thin_pool_commit(p), 0);
	a = pinfo(p);
	ck_assert_int_eq(thin_vol_resize(p, "v", cut, true), 0);
	ck_assert_uint_eq(s.bd->size, cut);
	ck_assert_int_eq(sio(&s, BIO_READ, 0, cut, buf, BLK), -ERANGE);	/* past the end */
	ck_assert_int_eq(thin_vol_info(p, "v", &vi), 0);
	ck_assert_uint_eq(vi.mapped_chunks, 3);
	ck_assert_int_eq(thin_pool_commit(p), 0);
	b = pinfo(p);
	ck_assert_uint_eq(b.free_chunks - a.free_chunks, VOLSZ / CHUNK + 1 - 3);
	/* grow again: what was cut reads zeros, the rest is intact */
	ck_assert_int_eq(thin_vol_resize(p, "v", VOLSZ, false), 0);
	ck_assert_int_eq(sio(&s, BIO_READ, 0, 0, buf, VOLSZ), 0);
	for (i = 0; i < NBLK; i++)
		ck_assert_uint_eq(blk_tag(buf + i * BLK), i * BLK < cut ? TAG(i, 1) : 0);
	sio_close(&s);
	pcheck(p);
	/* it persists */
	ck_assert_int_eq(thin_pool_close(p), 0);
	ck_assert_int_eq(thin_pool_open(tenv_dev(&e), &oo, &p), 0);
	ck_assert_int_eq(thin_vol_info(p, "v", &vi), 0);
	ck_assert_uint_eq(vi.size, VOLSZ);
	/* a big shrink: more than one batch of removals */
	ck_assert_int_eq(thin_vol_create(p, "w", 5 * VOLSZ), 0);
	sio_open(&s, p, "w");
	memset(buf, 0x11, VOLSZ);
	for (i = 0; i < 5; i++)
		ck_assert_int_eq(sio(&s, BIO_WRITE, 0, i * VOLSZ, buf, VOLSZ), 0);
	ck_assert_int_eq(thin_vol_resize(p, "w", CHUNK, true), 0);
	ck_assert_int_eq(thin_vol_info(p, "w", &vi), 0);
	ck_assert_uint_eq(vi.mapped_chunks, 1);
	sio_close(&s);
	pcheck(p);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("thin_fast");
	TCase *tc = tcase_create("fast");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, t_fast_used);
	tcase_add_loop_test(tc, t_race, 0, 3);
	tcase_add_test(tc, t_discard_inflight);
	tcase_add_test(tc, t_prov_async);
	tcase_add_test(tc, t_owner_async);
	tcase_add_test(tc, t_copy_budget);
	tcase_add_loop_test(tc, t_flush_batch, 0, 2);
	tcase_add_test(tc, t_resize);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int nf;

	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
