/* SPDX-License-Identifier: MIT */
/*
 * The RAID block device.
 *
 * A set is a struct blkdev over member blkdevs. Its channel opens one
 * channel per member on the same loop, so a bio and all the member bios it
 * turns into live on one reactor. The core splits bios at io_boundary: a
 * strip for RAID 0, 1 and 10 (so a bio maps to one member, or one mirror
 * set), a full stripe (strip * data columns) for 5 and 6 (so a bio is
 * inside one stripe, and a bio covering the stripe is a full-stripe write).
 *
 * Each bio carries a struct raid_io (its ctx): a small state machine whose
 * steps run when the member bios of the previous step have all ended
 * (pending drops to 0). The first error is kept; a member bio that fails
 * marks its member failed (except RAID 0, where there is nothing to fall
 * back on and the error is simply returned).
 *
 * How does a write to a RAID 5/6 stripe keep parity right?
 *
 * Every write and every degraded read holds the stripe's lock (a list of
 * locked stripes under a mutex; a later I/O to a locked stripe queues on the
 * holder and is handed the lock when it is released), so two writes never
 * interleave their read and write phases on one stripe. Plain reads with
 * every needed member alive take no lock: they read data columns only.
 * Inside the lock, the write works on the row range R of the stripe its
 * columns touch, with one buffer per column:
 *  - reconstruct-write (RCW): read the data columns the write does not cover
 *    over R, lay the new data over them, generate P (and Q);
 *  - read-modify-write (RMW): read the old data of the touched columns and
 *    the old parity, and add the parity of (old ^ new) to the old parity;
 *  - whichever reads fewer columns (a full-stripe write reads nothing);
 *  - degraded (a column's member failed): read every live column over R,
 *    rebuild the lost ones (raid_recover), lay the new data over them,
 *    generate parity, write the live columns.
 * A member that fails during the read phase makes the write start again in
 * degraded mode, still holding the lock. A member that fails during the
 * write phase is marked failed: the stripe stays consistent because parity
 * was computed with the new data, so the lost column reads back rebuilt.
 *
 * When a member is marked failed, the bio that noticed it ends only after
 * the new state is in the superblocks of the remaining members (a higher
 * generation), written by a worker thread with synchronous I/O: a failed
 * member coming back later has an older generation and is not trusted.
 *
 * Not done yet (doc/raid.md): the write hole (no journal or bitmap: a crash
 * in the middle of a stripe write may leave parity stale), rebuild, scrub,
 * hot spares, DISCARD and WRITE_ZEROES, and buffer pools (the RAID 5/6 path
 * allocates its stripe buffers per bio).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>
#include "sand/raid.h"
#include "sand/log.h"

#define MAXCOLS		(RAID_MAX_MEMBERS)

struct raid;

/* A held stripe lock: owned by the raid_io that holds it. */
struct stripe_lock {
	uint64_t		stripe;
	struct list_head	link;		/* r->locked */
	struct list_head	waiters;	/* raid_io.wait_link */
};

enum rio_phase {
	PH_SIMPLE,		/* RAID 0, mirror write, flush: end when children end */
	PH_MIRROR_READ,
	PH_READ_DIRECT,
	PH_READ_DEGRADED,
	PH_WRITE_READ,
	PH_WRITE_WRITE,
};

enum wr_mode { WR_RCW, WR_RMW, WR_DEGRADED };

struct raid_io {
	struct raid	*r;
	struct bio	*bio;
	struct blkchan	**mch;		/* member channels */
	int		pending;
	int		status;		/* first error that is not a member failure */
	int		nok;		/* children that succeeded */
	bool		in_submit;
	bool		child_err;	/* a member failed in this phase */
	bool		persist;	/* this I/O failed a member: persist before ending */
	bool		locked;
	enum rio_phase	phase;
	enum wr_mode	mode;
	uint32_t	tried;		/* mirror reads: members tried */
	/* RAID 5/6 */
	uint64_t	stripe;
	uint32_t	cols[MAXCOLS];
	uint32_t	lo[MAXCOLS], hi[MAXCOLS];	/* per data column, in the strip */
	uint32_t	rs, re;		/* row range R */
	uint8_t		*mem;
	uint8_t		*d[MAXCOLS + 2], *o[MAXCOLS + 2], *zero;
	struct stripe_lock lock;
	struct list_head wait_link;
	struct list_head persist_link;
	int		final;
};

struct raid {
	struct blkdev	bd;
	struct raid_geom g;
	uint32_t	k, np;		/* data and parity columns (5/6) */
	uint64_t	data_offset;
	struct blkdev	*members[RAID_MAX_MEMBERS];
	int		state[RAID_MAX_MEMBERS];	/* atomic */
	struct raid_sb	sb;		/* the template: uuids, geometry, generation */

	pthread_mutex_t	lock;		/* stripe locks */
	struct list_head locked;

	pthread_mutex_t	sb_lock;	/* persist */
	pthread_mutex_t	wlock;		/* the persist worker's queue */
	pthread_cond_t	wcond;
	struct list_head wqueue;
	bool		wstop;
	pthread_t	worker;
};

static const struct blkdev_ops raid_ops;

static void step(struct raid_io *rio);

static struct raid *to_raid(struct blkdev *bd) { return container_of(bd, struct raid, bd); }

bool blk_is_raid(const struct blkdev *bd)
{
	return bd && bd->ops == &raid_ops;
}

static bool is_parity(const struct raid *r)
{
	return r->g.level == RAID_LEVEL_5 || r->g.level == RAID_LEVEL_6;
}

static bool alive(struct raid *r, uint32_t m)
{
	return __atomic_load_n(&r->state[m], __ATOMIC_ACQUIRE) == RAID_MEMBER_ACTIVE;
}

/* Can the set still serve every block? */
static bool set_alive(struct raid *r)
{
	uint32_t n = r->g.nmembers, failed = 0;

	for (uint32_t i = 0; i < n; i++)
		failed += !alive(r, i);
	switch (r->g.level) {
	case RAID_LEVEL_10:
		for (uint32_t i = 0; i < n; i += 2)
			if (!alive(r, i) && !alive(r, i + 1))
				return false;
		return true;
	default:
		return failed <= raid_redundancy(&r->g);
	}
}

/* ------------------------------------------------------------ persisting state */

static int persist_locked(struct raid *r)
{
	struct raid_sb sb;
	int rc = 0;

	r->sb.generation++;
	for (uint32_t i = 0; i < r->g.nmembers; i++)
		if (r->sb.members[i].state == RAID_MEMBER_ACTIVE && !alive(r, i))
			r->sb.members[i].state = RAID_MEMBER_FAILED;
	for (uint32_t i = 0; i < r->g.nmembers; i++) {
		int err;

		if (!alive(r, i) || !r->members[i])
			continue;
		sb = r->sb;
		sb.index = i;
		memcpy(sb.member_uuid, sb.members[i].uuid, 16);
		err = raid_sb_write(r->members[i], &sb);
		if (err) {
			LOG_ERR(LS_RAID, "%s: superblock write to member %u (%s) failed: %s",
				r->bd.name, i, r->members[i]->name, strerror(-err));
			if (!rc)
				rc = err;
		}
	}
	LOG_INFO(LS_RAID, "%s: member states written, generation %llu", r->bd.name,
		 (unsigned long long)r->sb.generation);
	return rc;
}

static int persist(struct raid *r)
{
	int rc;

	pthread_mutex_lock(&r->sb_lock);
	rc = persist_locked(r);
	pthread_mutex_unlock(&r->sb_lock);
	return rc;
}

static void rio_complete_msg(void *arg)
{
	struct raid_io *rio = arg;

	bio_complete(rio->bio, rio->final);
}

static void *persist_worker(void *arg)
{
	struct raid *r = arg;

	pthread_mutex_lock(&r->wlock);
	for (;;) {
		struct raid_io *rio;

		while (list_empty(&r->wqueue) && !r->wstop)
			pthread_cond_wait(&r->wcond, &r->wlock);
		if (list_empty(&r->wqueue))
			break;
		rio = list_entry(r->wqueue.next, struct raid_io, persist_link);
		list_del(&rio->persist_link);
		pthread_mutex_unlock(&r->wlock);
		persist(r);
		if (ev_send_msg(rio->bio->ch->loop, rio_complete_msg, rio))
			LOG_ERR(LS_RAID, "%s: cannot end an I/O after a member failed", r->bd.name);
		pthread_mutex_lock(&r->wlock);
	}
	pthread_mutex_unlock(&r->wlock);
	return NULL;
}

/* ------------------------------------------------------------ stripe locks */

static void read_degraded(struct raid_io *rio);
static void write_start(struct raid_io *rio);

/* A queued I/O was handed the stripe lock: start what it waited for. */
static void lock_granted(struct raid_io *rio)
{
	if (rio->phase == PH_READ_DEGRADED)
		read_degraded(rio);
	else
		write_start(rio);
}

static void lock_granted_task(struct ev_task *t)
{
	struct bio *bio = container_of(t, struct bio, task);

	lock_granted((struct raid_io *)bio_ctx(bio));
}

static void lock_granted_msg(void *arg)
{
	lock_granted(arg);
}

/* true: held now; false: queued, step() runs when it is handed over */
static bool stripe_lock(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct list_head *pos;

	pthread_mutex_lock(&r->lock);
	list_for_each(pos, &r->locked) {
		struct stripe_lock *l = list_entry(pos, struct stripe_lock, link);

		if (l->stripe == rio->stripe) {
			list_add_tail(&rio->wait_link, &l->waiters);
			pthread_mutex_unlock(&r->lock);
			return false;
		}
	}
	rio->lock.stripe = rio->stripe;
	list_init(&rio->lock.waiters);
	list_add_tail(&rio->lock.link, &r->locked);
	rio->locked = true;
	pthread_mutex_unlock(&r->lock);
	return true;
}

static void stripe_unlock(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct raid_io *w = NULL;

	if (!rio->locked)
		return;
	rio->locked = false;
	pthread_mutex_lock(&r->lock);
	list_del(&rio->lock.link);
	if (!list_empty(&rio->lock.waiters)) {
		w = list_entry(rio->lock.waiters.next, struct raid_io, wait_link);
		list_del(&w->wait_link);
		w->lock.stripe = w->stripe;
		list_init(&w->lock.waiters);
		/* the rest now wait on w */
		while (!list_empty(&rio->lock.waiters)) {
			struct list_head *l = rio->lock.waiters.next;

			list_del(l);
			list_add_tail(l, &w->lock.waiters);
		}
		list_add_tail(&w->lock.link, &r->locked);
		w->locked = true;
	}
	pthread_mutex_unlock(&r->lock);
	if (!w)
		return;
	if (w->bio->ch->loop == rio->bio->ch->loop)
		ev_defer(w->bio->ch->loop, &w->bio->task, lock_granted_task);
	else if (ev_send_msg(w->bio->ch->loop, lock_granted_msg, w))
		LOG_ERR(LS_RAID, "%s: cannot hand a stripe lock over", r->bd.name);
}

/* ------------------------------------------------------------ ending */

static void complete_task(struct ev_task *t)
{
	struct bio *bio = container_of(t, struct bio, task);
	struct raid_io *rio = bio_ctx(bio);

	bio_complete(bio, rio->final);
}

static void finish(struct raid_io *rio, int status)
{
	struct raid *r = rio->r;

	free(rio->mem);
	rio->mem = NULL;
	stripe_unlock(rio);
	rio->final = status;
	if (rio->persist) {
		pthread_mutex_lock(&r->wlock);
		list_add_tail(&rio->persist_link, &r->wqueue);
		pthread_cond_signal(&r->wcond);
		pthread_mutex_unlock(&r->wlock);
		return;
	}
	if (rio->in_submit)
		ev_defer(rio->bio->ch->loop, &rio->bio->task, complete_task);
	else
		bio_complete(rio->bio, status);
}

/* ------------------------------------------------------------ member bios */

static int member_of(struct raid *r, struct blkdev *bd)
{
	for (uint32_t i = 0; i < r->g.nmembers; i++)
		if (r->members[i] == bd)
			return (int)i;
	return -1;
}

static void member_failed(struct raid_io *rio, uint32_t m, int status)
{
	struct raid *r = rio->r;
	int expect = RAID_MEMBER_ACTIVE;

	rio->child_err = true;
	if (r->g.level == RAID_LEVEL_0)
		return;
	if (__atomic_compare_exchange_n(&r->state[m], &expect, RAID_MEMBER_FAILED, false,
					__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		LOG_RATELIMIT(LOG_WARN, LS_RAID, "%s: member %u (%s) failed (%s), set %s",
			      r->bd.name, m, r->members[m]->name, strerror(-status),
			      set_alive(r) ? "degraded" : "down");
		rio->persist = true;
	}
}

static void child_end(struct bio *b, int status)
{
	struct raid_io *rio = b->end_arg;

	if (status) {
		int m = member_of(rio->r, b->ch->bd);

		if (rio->r->g.level == RAID_LEVEL_0 && !rio->status)
			rio->status = status;
		if (m >= 0)
			member_failed(rio, (uint32_t)m, status);
	} else {
		rio->nok++;
	}
	if (--rio->pending == 0)
		step(rio);
}

/* Send one member bio: from buf (len bytes), or from the parent's iovec. */
static void child(struct raid_io *rio, uint32_t m, enum bio_op op, uint64_t moff,
		  uint64_t len, void *buf)
{
	struct blkchan *ch = rio->mch[m];
	struct bio *b = ch ? bio_alloc(ch) : NULL;
	int rc;

	if (!b) {
		if (!rio->status)
			rio->status = -ENOMEM;
		return;
	}
	b->op = op;
	b->flags = op == BIO_WRITE ? (rio->bio->flags & BIO_FUA) : 0;
	if (op != BIO_FLUSH) {
		b->offset = rio->r->data_offset + moff;
		b->len = len;
	}
	if (buf) {
		b->iov_inline[0].iov_base = buf;
		b->iov_inline[0].iov_len = len;
		b->iov = b->iov_inline;
		b->iovcnt = 1;
	} else if (op != BIO_FLUSH) {
		b->iov = rio->bio->iov;
		b->iovcnt = rio->bio->iovcnt;
	}
	b->end = child_end;
	b->end_arg = rio;
	b->autofree = true;
	rio->pending++;
	rc = blk_submit(ch, b);
	if (rc) {
		rio->pending--;
		bio_free(b);
		if (!rio->status)
			rio->status = rc;
	}
}

/* Start a batch of member bios; batch_end() runs step() when all ended. */
static void batch_begin(struct raid_io *rio, enum rio_phase ph)
{
	rio->phase = ph;
	rio->pending = 1;
	rio->child_err = false;
	rio->nok = 0;
}

static void batch_end(struct raid_io *rio)
{
	if (--rio->pending == 0)
		step(rio);
}

/* ------------------------------------------------------------ RAID 0, 1, 10 */

static uint32_t mirrors(struct raid *r, uint32_t col, uint32_t *out)
{
	if (r->g.level == RAID_LEVEL_10) {
		out[0] = 2 * col;
		out[1] = 2 * col + 1;
		return 2;
	}
	for (uint32_t i = 0; i < r->g.nmembers; i++)
		out[i] = i;
	return r->g.nmembers;
}

static void mirror_read(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct raid_loc loc;
	uint32_t m[RAID_MAX_MEMBERS], nm;

	raid_map(&r->g, rio->bio->offset, &loc);
	nm = mirrors(r, loc.col, m);
	for (uint32_t i = 0; i < nm; i++) {
		uint32_t c = m[(i + loc.stripe) % nm];

		if (!alive(r, c) || (rio->tried & (1u << c)))
			continue;
		rio->tried |= 1u << c;
		batch_begin(rio, PH_MIRROR_READ);
		child(rio, c, BIO_READ, loc.moff, rio->bio->len, NULL);
		batch_end(rio);
		return;
	}
	finish(rio, rio->status ? rio->status : -EIO);
}

static void submit_plain(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct bio *bio = rio->bio;
	struct raid_loc loc;
	uint32_t m[RAID_MAX_MEMBERS], nm;

	if (bio->op == BIO_FLUSH) {
		batch_begin(rio, PH_SIMPLE);
		for (uint32_t i = 0; i < r->g.nmembers; i++)
			if (alive(r, i))
				child(rio, i, BIO_FLUSH, 0, 0, NULL);
		batch_end(rio);
		return;
	}
	raid_map(&r->g, bio->offset, &loc);
	if (r->g.level == RAID_LEVEL_0) {
		batch_begin(rio, PH_SIMPLE);
		child(rio, loc.member, bio->op, loc.moff, bio->len, NULL);
		batch_end(rio);
		return;
	}
	if (bio->op == BIO_READ) {
		mirror_read(rio);
		return;
	}
	batch_begin(rio, PH_SIMPLE);
	nm = mirrors(r, loc.col, m);
	for (uint32_t i = 0; i < nm; i++)
		if (alive(r, m[i]))
			child(rio, m[i], bio->op, loc.moff, bio->len, NULL);
	batch_end(rio);
}

/* ------------------------------------------------------------ RAID 5, 6 */

static int lost_cols(struct raid_io *rio, int *lost)
{
	struct raid *r = rio->r;
	int n = 0;

	for (uint32_t c = 0; c < r->k + r->np; c++)
		if (!alive(r, rio->cols[c])) {
			if (n < 2)
				lost[n] = (int)c;
			n++;
		}
	return n;
}

static size_t iov_skip(struct raid_io *rio, uint32_t j)
{
	struct raid *r = rio->r;
	uint64_t in = rio->bio->offset % ((uint64_t)r->g.strip * r->k);

	return (size_t)((uint64_t)j * r->g.strip + rio->lo[j] - in);
}

static bool touched(struct raid_io *rio, uint32_t j)
{
	return rio->hi[j] > rio->lo[j];
}

static uint64_t row_off(struct raid_io *rio, uint32_t in_strip)
{
	return rio->stripe * rio->r->g.strip + in_strip;
}

static void copy_out(struct raid_io *rio)
{
	for (uint32_t j = 0; j < rio->r->k; j++)
		if (touched(rio, j))
			buf_to_iov(rio->bio->iov, rio->bio->iovcnt, iov_skip(rio, j),
				   rio->d[j] + rio->lo[j] - rio->rs, rio->hi[j] - rio->lo[j]);
}

static void overlay_new(struct raid_io *rio)
{
	for (uint32_t j = 0; j < rio->r->k; j++)
		if (touched(rio, j))
			iov_to_buf(rio->bio->iov, rio->bio->iovcnt, iov_skip(rio, j),
				   rio->d[j] + rio->lo[j] - rio->rs, rio->hi[j] - rio->lo[j]);
}

static void xor_into(uint8_t *dst, const uint8_t *src, size_t len)
{
	uint64_t *d = (uint64_t *)(void *)dst;
	const uint64_t *s = (const uint64_t *)(const void *)src;

	for (size_t i = 0; i < len / 8; i++)
		d[i] ^= s[i];
}

static int setup_stripe(struct raid_io *rio)
{
	struct raid *r = rio->r;
	uint64_t w = (uint64_t)r->g.strip * r->k;
	uint64_t in = rio->bio->offset % w, end = in + rio->bio->len;
	uint32_t c0 = (uint32_t)(in / r->g.strip), c1 = (uint32_t)((end - 1) / r->g.strip);
	uint32_t ncol = r->k + r->np;
	size_t len;

	rio->stripe = rio->bio->offset / w;
	raid_stripe_cols(&r->g, rio->stripe, rio->cols);
	rio->rs = r->g.strip;
	rio->re = 0;
	for (uint32_t j = 0; j < r->k; j++) {
		rio->lo[j] = rio->hi[j] = 0;
		if (j < c0 || j > c1)
			continue;
		rio->lo[j] = j == c0 ? (uint32_t)(in % r->g.strip) : 0;
		rio->hi[j] = j == c1 ? (uint32_t)(end - (uint64_t)c1 * r->g.strip) : r->g.strip;
		rio->rs = MIN(rio->rs, rio->lo[j]);
		rio->re = MAX(rio->re, rio->hi[j]);
	}
	len = rio->re - rio->rs;
	rio->mem = aligned_alloc(64, len * (2 * ncol + 1));
	if (!rio->mem)
		return -ENOMEM;
	for (uint32_t c = 0; c < ncol; c++) {
		rio->d[c] = rio->mem + c * len;
		rio->o[c] = rio->mem + (ncol + c) * len;
	}
	rio->zero = rio->mem + 2 * ncol * len;
	return 0;
}

static void read_degraded(struct raid_io *rio)
{
	struct raid *r = rio->r;
	int lost[2];

	if (lost_cols(rio, lost) > (int)r->np) {
		finish(rio, -EIO);
		return;
	}
	batch_begin(rio, PH_READ_DEGRADED);
	for (uint32_t c = 0; c < r->k + r->np; c++)
		if (alive(r, rio->cols[c]))
			child(rio, rio->cols[c], BIO_READ, row_off(rio, rio->rs),
			      rio->re - rio->rs, rio->d[c]);
	batch_end(rio);
}

static void read_degraded_done(struct raid_io *rio)
{
	struct raid *r = rio->r;
	int lost[2], nlost;

	if (rio->status) {
		finish(rio, rio->status);
		return;
	}
	if (rio->child_err) {
		read_degraded(rio);	/* again, without the member that just failed */
		return;
	}
	nlost = lost_cols(rio, lost);
	if (nlost > (int)r->np ||
	    raid_recover((int)r->np, (int)r->k, rio->re - rio->rs, rio->d, lost, nlost)) {
		finish(rio, -EIO);
		return;
	}
	copy_out(rio);
	finish(rio, 0);
}

static void read_direct(struct raid_io *rio)
{
	struct raid *r = rio->r;

	for (uint32_t j = 0; j < r->k; j++)
		if (touched(rio, j) && !alive(r, rio->cols[j]))
			goto degraded;
	batch_begin(rio, PH_READ_DIRECT);
	for (uint32_t j = 0; j < r->k; j++)
		if (touched(rio, j))
			child(rio, rio->cols[j], BIO_READ, row_off(rio, rio->lo[j]),
			      rio->hi[j] - rio->lo[j], rio->d[j] + rio->lo[j] - rio->rs);
	batch_end(rio);
	return;
degraded:
	rio->phase = PH_READ_DEGRADED;
	if (stripe_lock(rio))
		read_degraded(rio);
}

static void write_start(struct raid_io *rio)
{
	struct raid *r = rio->r;
	uint32_t rcw = 0, rmw = r->np, len = rio->re - rio->rs;
	int lost[2], nlost = lost_cols(rio, lost);

	if (nlost > (int)r->np) {
		finish(rio, -EIO);
		return;
	}
	batch_begin(rio, PH_WRITE_READ);
	if (nlost) {
		rio->mode = WR_DEGRADED;
		for (uint32_t c = 0; c < r->k + r->np; c++)
			if (alive(r, rio->cols[c]))
				child(rio, rio->cols[c], BIO_READ, row_off(rio, rio->rs), len, rio->d[c]);
		batch_end(rio);
		return;
	}
	for (uint32_t j = 0; j < r->k; j++) {
		if (!(rio->lo[j] == rio->rs && rio->hi[j] == rio->re))
			rcw++;
		if (touched(rio, j))
			rmw++;
	}
	if (rcw <= rmw) {
		rio->mode = WR_RCW;
		for (uint32_t j = 0; j < r->k; j++)
			if (!(rio->lo[j] == rio->rs && rio->hi[j] == rio->re))
				child(rio, rio->cols[j], BIO_READ, row_off(rio, rio->rs), len, rio->d[j]);
	} else {
		rio->mode = WR_RMW;
		for (uint32_t j = 0; j < r->k; j++)
			if (touched(rio, j))
				child(rio, rio->cols[j], BIO_READ, row_off(rio, rio->rs), len, rio->o[j]);
		for (uint32_t p = 0; p < r->np; p++)
			child(rio, rio->cols[r->k + p], BIO_READ, row_off(rio, rio->rs), len,
			      rio->d[r->k + p]);
	}
	batch_end(rio);
}

static int compute_parity(struct raid_io *rio)
{
	struct raid *r = rio->r;
	size_t len = rio->re - rio->rs;
	uint8_t *src[MAXCOLS + 2];
	int lost[2], nlost;

	switch (rio->mode) {
	case WR_DEGRADED:
		nlost = lost_cols(rio, lost);
		if (nlost > (int)r->np ||
		    raid_recover((int)r->np, (int)r->k, len, rio->d, lost, nlost))
			return -EIO;
		/* fall through */
	case WR_RCW:
		overlay_new(rio);
		return raid_parity_gen((int)r->np, (int)r->k, len, rio->d);
	case WR_RMW:
		memset(rio->zero, 0, len);
		for (uint32_t j = 0; j < r->k; j++) {
			if (!touched(rio, j)) {
				src[j] = rio->zero;
				continue;
			}
			memcpy(rio->d[j], rio->o[j], len);
			src[j] = rio->o[j];
		}
		overlay_new(rio);
		for (uint32_t j = 0; j < r->k; j++)
			if (touched(rio, j))
				xor_into(rio->o[j], rio->d[j], len);	/* old ^ new */
		for (uint32_t p = 0; p < r->np; p++)
			src[r->k + p] = rio->o[r->k + p];
		if (raid_parity_gen((int)r->np, (int)r->k, len, src))
			return -EIO;
		for (uint32_t p = 0; p < r->np; p++)
			xor_into(rio->d[r->k + p], rio->o[r->k + p], len);
		return 0;
	}
	return -EINVAL;
}

static void write_read_done(struct raid_io *rio)
{
	struct raid *r = rio->r;
	int rc;

	if (rio->status) {
		finish(rio, rio->status);
		return;
	}
	if (rio->child_err) {
		write_start(rio);	/* again, degraded */
		return;
	}
	rc = compute_parity(rio);
	if (rc) {
		finish(rio, rc);
		return;
	}
	batch_begin(rio, PH_WRITE_WRITE);
	for (uint32_t j = 0; j < r->k; j++)
		if (touched(rio, j) && alive(r, rio->cols[j]))
			child(rio, rio->cols[j], BIO_WRITE, row_off(rio, rio->lo[j]),
			      rio->hi[j] - rio->lo[j], rio->d[j] + rio->lo[j] - rio->rs);
	for (uint32_t p = 0; p < r->np; p++)
		if (alive(r, rio->cols[r->k + p]))
			child(rio, rio->cols[r->k + p], BIO_WRITE, row_off(rio, rio->rs),
			      rio->re - rio->rs, rio->d[r->k + p]);
	batch_end(rio);
}

static void write_write_done(struct raid_io *rio)
{
	int lost[2];

	if (rio->status)
		finish(rio, rio->status);
	else
		finish(rio, lost_cols(rio, lost) > (int)rio->r->np ? -EIO : 0);
}

static void submit_parity(struct raid_io *rio)
{
	int rc;

	if (rio->bio->op == BIO_FLUSH) {
		submit_plain(rio);
		return;
	}
	rc = setup_stripe(rio);
	if (rc) {
		finish(rio, rc);
		return;
	}
	if (rio->bio->op == BIO_READ) {
		read_direct(rio);
		return;
	}
	rio->phase = PH_WRITE_READ;
	if (stripe_lock(rio))
		write_start(rio);
}

/* ------------------------------------------------------------ the state machine */

/* Runs when every member bio of the current phase has ended, or when a
 * stripe lock has been handed over. */
static void step(struct raid_io *rio)
{
	struct raid *r = rio->r;

	switch (rio->phase) {
	case PH_SIMPLE:
		if (rio->status)
			finish(rio, rio->status);
		else if (rio->bio->op == BIO_READ || r->g.level == RAID_LEVEL_0)
			finish(rio, 0);
		else	/* mirror write, flush */
			finish(rio, set_alive(r) && (rio->nok || rio->bio->op == BIO_FLUSH) ? 0 : -EIO);
		break;
	case PH_MIRROR_READ:
		if (rio->child_err && !rio->status)
			mirror_read(rio);
		else
			finish(rio, rio->status);
		break;
	case PH_READ_DIRECT:
		if (rio->status) {
			finish(rio, rio->status);
		} else if (rio->child_err) {
			rio->phase = PH_READ_DEGRADED;
			if (stripe_lock(rio))
				read_degraded(rio);
		} else {
			copy_out(rio);
			finish(rio, 0);
		}
		break;
	case PH_READ_DEGRADED:
		read_degraded_done(rio);
		break;
	case PH_WRITE_READ:
		write_read_done(rio);
		break;
	case PH_WRITE_WRITE:
		write_write_done(rio);
		break;
	}
}

static int raid_submit(struct blkdev *bd, struct blkchan *ch, struct bio *bio)
{
	struct raid *r = to_raid(bd);
	struct raid_io *rio = bio_ctx(bio);

	memset(rio, 0, offsetof(struct raid_io, cols));
	rio->mem = NULL;
	rio->r = r;
	rio->bio = bio;
	rio->mch = ch->priv;
	rio->in_submit = true;
	list_init(&rio->wait_link);
	if (is_parity(r))
		submit_parity(rio);
	else
		submit_plain(rio);
	rio->in_submit = false;
	return 0;
}

/* ------------------------------------------------------------ blkdev ops */

static bool raid_supports(struct blkdev *bd, enum bio_op op)
{
	return op == BIO_READ || op == BIO_WRITE || op == BIO_FLUSH;
}

static int raid_chan_create(struct blkdev *bd, struct blkchan *ch)
{
	struct raid *r = to_raid(bd);
	struct blkchan **mch = calloc(RAID_MAX_MEMBERS, sizeof(*mch));
	int rc = 0;

	if (!mch)
		return -ENOMEM;
	for (uint32_t i = 0; i < r->g.nmembers && !rc; i++)
		if (r->members[i])
			rc = blk_chan_open(r->members[i], ch->loop, &mch[i]);
	if (rc) {
		for (uint32_t i = 0; i < r->g.nmembers; i++)
			if (mch[i])
				blk_chan_close(mch[i], NULL, NULL);
		free(mch);
		return rc;
	}
	ch->priv = mch;
	return 0;
}

static void raid_chan_destroy(struct blkdev *bd, struct blkchan *ch)
{
	struct raid *r = to_raid(bd);
	struct blkchan **mch = ch->priv;

	/* every raid bio has ended, so every member bio has */
	for (uint32_t i = 0; i < r->g.nmembers; i++)
		if (mch[i])
			blk_chan_close(mch[i], NULL, NULL);
	free(mch);
}

static void raid_free(struct raid *r)
{
	for (uint32_t i = 0; i < r->g.nmembers; i++)
		if (r->members[i])
			blkdev_release(r->members[i], r->bd.name);
	pthread_cond_destroy(&r->wcond);
	pthread_mutex_destroy(&r->wlock);
	pthread_mutex_destroy(&r->sb_lock);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static void raid_close(struct blkdev *bd)
{
	struct raid *r = to_raid(bd);

	pthread_mutex_lock(&r->wlock);
	r->wstop = true;
	pthread_cond_signal(&r->wcond);
	pthread_mutex_unlock(&r->wlock);
	pthread_join(r->worker, NULL);
	raid_free(r);
}

static const struct blkdev_ops raid_ops = {
	.name = "raid",
	.bio_ctx_size = sizeof(struct raid_io),
	.close = raid_close,
	.supports = raid_supports,
	.chan_create = raid_chan_create,
	.chan_destroy = raid_chan_destroy,
	.submit = raid_submit,
};

int raid_member_state(struct blkdev *bd, uint32_t i)
{
	struct raid *r;

	if (!blk_is_raid(bd))
		return -EINVAL;
	r = to_raid(bd);
	if (i >= r->g.nmembers)
		return -EINVAL;
	if (!r->members[i])
		return RAID_MEMBER_NONE;
	return __atomic_load_n(&r->state[i], __ATOMIC_ACQUIRE);
}

int raid_degraded(struct blkdev *bd)
{
	struct raid *r;
	int n = 0;

	if (!blk_is_raid(bd))
		return -EINVAL;
	r = to_raid(bd);
	for (uint32_t i = 0; i < r->g.nmembers; i++)
		n += !alive(r, i);
	return n;
}

uint64_t raid_generation(struct blkdev *bd)
{
	struct raid *r = to_raid(bd);
	uint64_t g;

	pthread_mutex_lock(&r->sb_lock);
	g = r->sb.generation;
	pthread_mutex_unlock(&r->sb_lock);
	return g;
}

/*
 * Build the device from a superblock (the newest) and the members in their
 * slots (NULL: missing or not trusted). Claims the members present.
 */
static int raid_open(const char *name, const struct raid_sb *sb,
		     struct blkdev **slots, struct blkdev **out)
{
	struct raid *r = calloc(1, sizeof(*r));
	uint32_t bs = sb->block_size;
	int rc;

	if (!r)
		return -ENOMEM;
	blkdev_init(&r->bd, &raid_ops, name);
	r->g = sb->geom;
	r->sb = *sb;
	r->k = raid_data_cols(&r->g);
	r->np = r->g.level == RAID_LEVEL_5 ? 1 : r->g.level == RAID_LEVEL_6 ? 2 : 0;
	r->data_offset = sb->data_offset;
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->sb_lock, NULL);
	pthread_mutex_init(&r->wlock, NULL);
	pthread_cond_init(&r->wcond, NULL);
	list_init(&r->locked);
	list_init(&r->wqueue);
	for (uint32_t i = 0; i < r->g.nmembers; i++) {
		r->members[i] = slots[i];
		r->state[i] = slots[i] ? RAID_MEMBER_ACTIVE : RAID_MEMBER_FAILED;
		if (!slots[i])
			continue;
		rc = blkdev_claim(slots[i], name);
		if (rc) {
			LOG_ERR(LS_RAID, "%s: member %s is in use by another owner", name,
				slots[i]->name);
			for (uint32_t j = 0; j < i; j++)
				if (r->members[j])
					blkdev_release(r->members[j], name);
			memset(r->members, 0, sizeof(r->members));
			raid_free(r);
			return rc;
		}
	}
	r->bd.block_size = bs;
	r->bd.size = raid_geom_size(&r->g);
	r->bd.io_boundary = is_parity(r) ? r->g.strip * r->k : r->g.strip;
	rc = pthread_create(&r->worker, NULL, persist_worker, r);
	if (rc) {
		raid_free(r);
		return -rc;
	}
	*out = &r->bd;
	return 0;
}

int raid_create(const char *name, enum raid_level level, struct blkdev **members,
		uint32_t n, const struct raid_opts *o, struct blkdev **out)
{
	struct raid_opts def = { 0 };
	struct raid_sb sb;
	uint64_t smallest = UINT64_MAX;
	uint32_t bs = 512;
	int rc;

	if (!o)
		o = &def;
	if (!name || !members || !out || n == 0 || n > RAID_MAX_MEMBERS ||
	    strlen(name) >= sizeof(sb.name))
		return -EINVAL;
	memset(&sb, 0, sizeof(sb));
	sb.major = RAID_SB_MAJOR;
	sb.minor = RAID_SB_MINOR;
	sb.geom.level = level;
	sb.geom.nmembers = n;
	sb.geom.strip = o->strip ? o->strip : 64 * 1024;
	for (uint32_t i = 0; i < n; i++) {
		if (!members[i])
			return -EINVAL;
		smallest = MIN(smallest, members[i]->size);
		bs = MAX(bs, members[i]->block_size);
	}
	if (bs > 4096 || bs > sb.geom.strip || smallest <= RAID_DATA_OFFSET) {
		LOG_ERR(LS_RAID, "%s: members too small or blocks too large for a %u-byte strip",
			name, sb.geom.strip);
		return -EINVAL;
	}
	sb.geom.member_size = o->member_size ? o->member_size :
		(smallest - RAID_DATA_OFFSET) / sb.geom.strip * sb.geom.strip;
	if (raid_geom_check(&sb.geom) || !sb.geom.member_size ||
	    sb.geom.member_size > smallest - RAID_DATA_OFFSET) {
		LOG_ERR(LS_RAID, "%s: RAID %d over %u members with a %u-byte strip is not a valid set",
			name, level, n, sb.geom.strip);
		return -EINVAL;
	}
	sb.block_size = bs;
	sb.data_offset = RAID_DATA_OFFSET;
	sb.generation = 1;
	uuid_generate(sb.pool_uuid);
	snprintf(sb.name, sizeof(sb.name), "%s", name);
	for (uint32_t i = 0; i < n; i++) {
		uuid_generate(sb.members[i].uuid);
		sb.members[i].state = RAID_MEMBER_ACTIVE;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct raid_sb m = sb;

		m.index = i;
		memcpy(m.member_uuid, sb.members[i].uuid, 16);
		rc = raid_sb_write(members[i], &m);
		if (rc) {
			LOG_ERR(LS_RAID, "%s: cannot write the superblock of %s: %s", name,
				members[i]->name, strerror(-rc));
			return rc;
		}
	}
	return raid_open(name, &sb, members, out);
}

int raid_assemble(struct blkdev **members, uint32_t n, struct blkdev **out)
{
	struct raid_sb *sbs, *best = NULL;
	struct blkdev *slots[RAID_MAX_MEMBERS] = { NULL };
	char uuid[37], missing[RAID_MAX_MEMBERS * 48];
	size_t mlen = 0;
	uint32_t nmiss = 0;
	bool changed = false;
	int rc = 0;

	if (!members || !out || n == 0 || n > RAID_MAX_MEMBERS)
		return -EINVAL;
	sbs = calloc(n, sizeof(*sbs));
	if (!sbs)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		rc = raid_sb_read(members[i], &sbs[i]);
		if (rc) {
			LOG_ERR(LS_RAID, "%s: no valid raid superblock (%s)", members[i]->name,
				strerror(-rc));
			goto free_sbs;
		}
		if (i && memcmp(sbs[i].pool_uuid, sbs[0].pool_uuid, 16)) {
			LOG_ERR(LS_RAID, "%s belongs to set %s, %s to set %s: refused",
				members[i]->name, sbs[i].name, members[0]->name, sbs[0].name);
			rc = -EINVAL;
			goto free_sbs;
		}
		if (!best || sbs[i].generation > best->generation)
			best = &sbs[i];
	}
	for (uint32_t i = 0; i < n; i++) {
		struct raid_sb *s = &sbs[i];
		uint32_t idx = s->index;

		if (idx >= best->geom.nmembers ||
		    memcmp(s->member_uuid, best->members[idx].uuid, 16)) {
			LOG_ERR(LS_RAID, "%s: not a member of %s as it is now", members[i]->name,
				best->name);
			rc = -EINVAL;
			goto free_sbs;
		}
		if (slots[idx]) {
			LOG_ERR(LS_RAID, "%s and %s both claim slot %u of %s", slots[idx]->name,
				members[i]->name, idx, best->name);
			rc = -EINVAL;
			goto free_sbs;
		}
		if (s->generation < best->generation) {
			LOG_WARN(LS_RAID, "%s: member %u (%s) is stale (generation %llu < %llu): not used",
				 best->name, idx, members[i]->name,
				 (unsigned long long)s->generation,
				 (unsigned long long)best->generation);
			continue;
		}
		if (best->members[idx].state != RAID_MEMBER_ACTIVE) {
			LOG_WARN(LS_RAID, "%s: member %u (%s) is marked failed: not used",
				 best->name, idx, members[i]->name);
			continue;
		}
		slots[idx] = members[i];
	}
	for (uint32_t i = 0; i < best->geom.nmembers; i++) {
		if (slots[i])
			continue;
		nmiss++;
		uuid_unparse_lower(best->members[i].uuid, uuid);
		mlen += (size_t)snprintf(missing + mlen, sizeof(missing) - mlen, "%s%u (%s)",
					 mlen ? ", " : "", i, uuid);
		if (best->members[i].state == RAID_MEMBER_ACTIVE) {
			best->members[i].state = RAID_MEMBER_FAILED;
			changed = true;
		}
	}
	if (nmiss) {
		bool ok = best->geom.level == RAID_LEVEL_10 ||
			  nmiss <= raid_redundancy(&best->geom);

		if (best->geom.level == RAID_LEVEL_10)
			for (uint32_t i = 0; i < best->geom.nmembers; i += 2)
				if (!slots[i] && !slots[i + 1])
					ok = false;
		if (!ok) {
			LOG_ERR(LS_RAID, "%s: RAID %d cannot start: %u of %u members missing: %s",
				best->name, best->geom.level, nmiss, best->geom.nmembers, missing);
			rc = -ENODEV;
			goto free_sbs;
		}
		LOG_WARN(LS_RAID, "%s: starting degraded, missing: %s", best->name, missing);
	}
	rc = raid_open(best->name, best, slots, out);
	if (!rc && changed) {
		struct raid *r = to_raid(*out);

		rc = persist(r);
		if (rc) {
			blkdev_close(*out);
			*out = NULL;
		}
	}
free_sbs:
	free(sbs);
	return rc;
}
