/* SPDX-License-Identifier: MIT */
/*
 * The RAID block device: the core shared by every level.
 *
 * A set is a struct blkdev over member blkdevs. Its channel opens one
 * channel per member on the same loop, so a bio and all the member bios it
 * turns into live on one reactor. The core splits bios at io_boundary (set
 * by the level's start): a strip for RAID 0, 1 and 10, a full stripe for 5
 * and 6. The level modules (raid_mirror.c, raid_parity_io.c) turn each bio
 * into batches of member bios (raid_int.h).
 *
 * A member bio that fails marks its member failed (except on RAID 0, where
 * there is nothing to fall back on and the error is simply returned); the
 * set goes on degraded while redundancy remains. The bio that noticed the
 * failure ends only after the new member states are in the superblocks of
 * the remaining members, with a higher generation, written by a worker
 * thread with synchronous I/O. A failed member that comes back later has an
 * older generation, and raid_assemble() does not trust it.
 *
 * raid_replace() rebuilds a failed slot on a new device online: the new
 * member is written by every write from the start, and each row is rebuilt
 * under its stripe lock by RAID_BIO_REBUILD bios sent through a private
 * loop and channel (doc/raid.md).
 *
 * The first write after the set opens waits for RAID_SB_DIRTY in the
 * superblocks; closing the set clears it. A set assembled dirty is
 * resynchronized (RAID_BIO_RESYNC rows) before raid_assemble returns.
 *
 * RAID 5/6 writes log their partial parity first (raid_ppl.c), replayed
 * when a dirty set assembles degraded; writes of redundant sets set their
 * region's bit in the write-intent bitmap first (raid_bitmap.c), and a
 * dirty set resyncs only those regions.
 *
 * Not done yet: see doc/raid.md.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>
#include "raid/raid_int.h"
#include "raid/raid_bitmap.h"
#include "raid/raid_ppl.h"
#include "sand/log.h"

static const struct blkdev_ops raid_ops;

static const struct raid_level_ops *const levels[] = {
	&raid0_level, &raid1_level, &raid10_level, &raid5_level, &raid6_level,
};

static const struct raid_level_ops *level_ops(enum raid_level l)
{
	for (size_t i = 0; i < ARRAY_SIZE(levels); i++)
		if (levels[i]->level == l)
			return levels[i];
	return NULL;
}

static struct raid *to_raid(struct blkdev *bd) { return container_of(bd, struct raid, bd); }

bool blk_is_raid(const struct blkdev *bd)
{
	return bd && bd->ops == &raid_ops;
}

bool raid_set_alive(struct raid *r)
{
	uint32_t n = r->g.nmembers, failed = 0;

	for (uint32_t i = 0; i < n; i++)
		failed += !raid_alive(r, i);
	switch (r->g.level) {
	case RAID_LEVEL_10:
		for (uint32_t i = 0; i < n; i += 2)
			if (!raid_alive(r, i) && !raid_alive(r, i + 1))
				return false;
		return true;
	default:
		return failed <= raid_redundancy(&r->g);
	}
}

/* ------------------------------------------------------------ persisting state */

static int persist_sb(struct raid *r, bool quiet);

/*
 * Under sb_lock, for the superblocks about to be written (generation
 * r->sb.generation): a member that has just left (failed or missing) is
 * recorded with that generation, the first one written without it, when
 * the write-intent bitmap keeps every region written from then on (it is
 * not swept while the set is degraded: raid_bitmap.c). Only a member that
 * held all the data when it left (not one half rebuilt) may come back
 * partially (raid_readd_check). A member active again forgets it. With
 * room in the bitmap, the slot gets an image of its own (raid_bitmap.c).
 */
static void slot_track_left(struct raid *r, uint32_t i)
{
	struct raid_sb_member *m = &r->sb.members[i];

	switch (m->state) {
	case RAID_MEMBER_ACTIVE:
		m->left_gen = 0;
		m->flags = 0;
		if (r->sb.bitmap_away[i]) {
			bitmap_slot_back(r, i);
			r->sb.bitmap_away[i] = 0;
		}
		break;
	case RAID_MEMBER_FAILED:
		if (!m->left_gen && !(m->flags & (RAID_SLOT_INCOMPLETE | RAID_SLOT_PARTIAL)) &&
		    r->bm) {
			m->left_gen = r->sb.generation;
			/* its own bitmap image, on disk before these superblocks */
			r->sb.bitmap_away[i] = (uint8_t)bitmap_slot_left(r, i);
		}
		break;
	default:
		break;
	}
}

int raid_persist_locked(struct raid *r)
{
	return persist_sb(r, false);
}

int raid_persist_quiet_locked(struct raid *r)
{
	return persist_sb(r, true);
}

/*
 * Write the superblocks (a new generation) to every writable member. A
 * member whose superblock write fails has failed a write: its slot is failed
 * (a spare may take it) and the superblocks are written again, so that the
 * members left all say so. 0 once every writable member holds the new
 * generation; -EIO when the set did not survive its members' failures.
 */
static int persist_sb(struct raid *r, bool quiet)
{
	bool kick = false;
	int rc;

	for (;;) {
		bool again = false;
		struct raid_sb sb;

		r->sb.generation++;
		for (uint32_t i = 0; i < r->g.nmembers; i++) {
			r->sb.members[i].state = (uint32_t)__atomic_load_n(&r->state[i],
									    __ATOMIC_ACQUIRE);
			slot_track_left(r, i);
		}
		for (uint32_t i = 0; i < r->g.nmembers; i++) {
			struct blkdev *m = __atomic_load_n(&r->members[i], __ATOMIC_ACQUIRE);
			int err, st;

			if (!raid_writable(r, i) || !m)
				continue;
			sb = r->sb;
			sb.index = i;
			memcpy(sb.member_uuid, sb.members[i].uuid, 16);
			err = raid_sb_write(m, &sb);
			if (!err)
				continue;
			LOG_ERR(LS_RAID, "%s: superblock write to member %u (%s) failed: %s%s",
				r->bd.name, i, m->name, strerror(-err),
				r->g.level == RAID_LEVEL_0 ? "" : ": the member fails");
			if (r->g.level == RAID_LEVEL_0)
				return err;
			pthread_mutex_lock(&r->slot_lock);
			st = __atomic_exchange_n(&r->state[i], RAID_MEMBER_FAILED, __ATOMIC_ACQ_REL);
			pthread_mutex_unlock(&r->slot_lock);
			again |= st != RAID_MEMBER_FAILED;
		}
		if (!again)
			break;
		kick = true;
		if (!raid_set_alive(r))
			break;
	}
	rc = raid_set_alive(r) ? 0 : -EIO;
	if (rc)
		LOG_ERR(LS_RAID, "%s: too many members failed: the set is down", r->bd.name);
	else if (quiet)
		LOG_DBG(LS_RAID, "%s: superblocks written, generation %llu", r->bd.name,
			(unsigned long long)r->sb.generation);
	else
		LOG_INFO(LS_RAID, "%s: member states written, generation %llu", r->bd.name,
			 (unsigned long long)r->sb.generation);
	if (kick)
		raid_jobs_kick(r);	/* a spare may take a failed slot */
	return rc;
}

int raid_persist(struct raid *r)
{
	int rc;

	pthread_mutex_lock(&r->sb_lock);
	rc = raid_persist_locked(r);
	pthread_mutex_unlock(&r->sb_lock);
	return rc;
}

static void dirty_resume(void *arg);

void raid_mark_dirty(struct raid *r)
{
	pthread_mutex_lock(&r->sb_lock);
	if (!__atomic_load_n(&r->dirty, __ATOMIC_ACQUIRE)) {
		r->sb.flags |= RAID_SB_DIRTY;
		raid_persist_locked(r);
		__atomic_store_n(&r->dirty, true, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&r->sb_lock);
}

/* At close: every member flushed, then the superblocks say "clean". */
static void mark_clean(struct raid *r)
{
	pthread_mutex_lock(&r->sb_lock);
	if (r->dirty && raid_set_alive(r)) {
		int rc = 0;

		for (uint32_t i = 0; i < r->g.nmembers && !rc; i++)
			if (raid_writable(r, i))
				rc = blk_sync_io(r->members[i], BIO_FLUSH, 0, 0, NULL, 0);
		if (!rc) {
			r->sb.flags &= ~RAID_SB_DIRTY;
			if (!raid_persist_locked(r))
				r->dirty = false;
		}
	}
	pthread_mutex_unlock(&r->sb_lock);
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

		while (list_empty(&r->wqueue) && list_empty(&r->dirty_wait) && !r->wstop)
			pthread_cond_wait(&r->wcond, &r->wlock);
		if (!list_empty(&r->dirty_wait)) {
			pthread_mutex_unlock(&r->wlock);
			raid_mark_dirty(r);
			pthread_mutex_lock(&r->wlock);
			while (!list_empty(&r->dirty_wait)) {
				struct raid_io *w = list_entry(r->dirty_wait.next, struct raid_io,
							       wait_link);

				list_del(&w->wait_link);
				if (ev_send_msg(w->bio->ch->loop, dirty_resume, w))
					LOG_ERR(LS_RAID, "%s: cannot resume a write", r->bd.name);
			}
			continue;
		}
		if (list_empty(&r->wqueue))
			break;
		rio = list_entry(r->wqueue.next, struct raid_io, persist_link);
		list_del(&rio->persist_link);
		pthread_mutex_unlock(&r->wlock);
		raid_persist(r);
		raid_jobs_kick(r);	/* a spare may take the failed slot */
		if (ev_send_msg(rio->bio->ch->loop, rio_complete_msg, rio))
			LOG_ERR(LS_RAID, "%s: cannot end an I/O after a member failed", r->bd.name);
		pthread_mutex_lock(&r->wlock);
	}
	pthread_mutex_unlock(&r->wlock);
	return NULL;
}


/* ------------------------------------------------------------ stripe locks */

static void lock_granted_task(struct ev_task *t)
{
	struct raid_io *rio = bio_ctx(container_of(t, struct bio, task));

	rio->next(rio);
}

static void lock_granted_msg(void *arg)
{
	struct raid_io *rio = arg;

	rio->next(rio);
}

static uint64_t lock_rows(struct raid_io *rio)
{
	return rio->rows ? rio->rows : 1;
}

/* Under r->lock: a held lock over a stripe of rio's range, or NULL. */
static struct stripe_lock *lock_conflict(struct raid *r, struct raid_io *rio)
{
	uint64_t s = rio->stripe, e = s + lock_rows(rio);
	struct list_head *pos;

	list_for_each(pos, &r->locked) {
		struct stripe_lock *l = list_entry(pos, struct stripe_lock, link);

		if (s < l->stripe + l->rows && l->stripe < e)
			return l;
	}
	return NULL;
}

/* Under r->lock: rio takes the lock of its range. */
static void lock_take(struct raid *r, struct raid_io *rio)
{
	rio->lock.stripe = rio->stripe;
	rio->lock.rows = lock_rows(rio);
	list_init(&rio->lock.waiters);
	list_add_tail(&rio->lock.link, &r->locked);
	rio->locked = true;
}

/*
 * A lock covers rio->rows stripes from rio->stripe (a rebuild batch holds
 * all of its rows). An I/O whose range meets a held lock waits on it; when
 * that lock is released, its waiters try again in order.
 */
void stripe_lock(struct raid_io *rio, raid_io_fn fn)
{
	struct raid *r = rio->r;
	struct stripe_lock *l;

	rio->next = fn;
	pthread_mutex_lock(&r->lock);
	l = lock_conflict(r, rio);
	if (l) {
		list_add_tail(&rio->wait_link, &l->waiters);
		pthread_mutex_unlock(&r->lock);
		return;
	}
	lock_take(r, rio);
	pthread_mutex_unlock(&r->lock);
	fn(rio);
}

void stripe_unlock(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct list_head granted;

	if (!rio->locked)
		return;
	rio->locked = false;
	list_init(&granted);
	pthread_mutex_lock(&r->lock);
	list_del(&rio->lock.link);
	while (!list_empty(&rio->lock.waiters)) {
		struct raid_io *w = list_entry(rio->lock.waiters.next, struct raid_io, wait_link);
		struct stripe_lock *l;

		list_del(&w->wait_link);
		l = lock_conflict(r, w);
		if (l) {
			list_add_tail(&w->wait_link, &l->waiters);
			continue;
		}
		lock_take(r, w);
		list_add_tail(&w->wait_link, &granted);
	}
	pthread_mutex_unlock(&r->lock);
	while (!list_empty(&granted)) {
		struct raid_io *w = list_entry(granted.next, struct raid_io, wait_link);

		list_del(&w->wait_link);
		if (w->bio->ch->loop == rio->bio->ch->loop)
			ev_defer(w->bio->ch->loop, &w->bio->task, lock_granted_task);
		else if (ev_send_msg(w->bio->ch->loop, lock_granted_msg, w))
			LOG_ERR(LS_RAID, "%s: cannot hand a stripe lock over", r->bd.name);
	}
}




/* ------------------------------------------------------------ ending */

static void complete_task(struct ev_task *t)
{
	struct bio *bio = container_of(t, struct bio, task);
	struct raid_io *rio = bio_ctx(bio);

	bio_complete(bio, rio->final);
}

/*
 * Stripe buffers come from a per-channel cache in two sizes: small (a
 * partial-stripe write of up to 64 KiB in all) and large (the most a bio
 * can need). malloc'ing them per bio costs page faults: glibc hands large
 * blocks back to the kernel on free.
 */
#define BUF_SMALL	(64u * 1024)
static const unsigned buf_keep[2] = { 64, 32 };	/* kept per channel */

int rio_alloc_mem(struct raid_io *rio, size_t len)
{
	struct raid_chan *rc = rio->rc;
	int cls = len <= BUF_SMALL ? 0 : 1;
	size_t size = cls ? rio->r->buf_max : BUF_SMALL;

	rio->mem_class = -1;
	if (len > size) {
		rio->mem = aligned_alloc(4096, (len + 4095) & ~(size_t)4095);
		return rio->mem ? 0 : -ENOMEM;
	}
	if (rc->nfree[cls]) {
		struct list_head *l = rc->free_bufs[cls].next;

		list_del(l);
		rc->nfree[cls]--;
		rio->mem = (uint8_t *)l;
	} else {
		rio->mem = aligned_alloc(4096, size);	/* O_DIRECT members: no bounce */
		if (!rio->mem)
			return -ENOMEM;
	}
	rio->mem_class = (int8_t)cls;
	return 0;
}

static void rio_free_mem(struct raid_io *rio)
{
	struct raid_chan *rc = rio->rc;
	int cls = rio->mem_class;

	if (rio->mem && cls >= 0 && rc->nfree[cls] < buf_keep[cls]) {
		list_add((struct list_head *)(void *)rio->mem, &rc->free_bufs[cls]);
		rc->nfree[cls]++;
	} else {
		free(rio->mem);
	}
	rio->mem = NULL;
	rio->mem_class = -1;
}

void rio_finish(struct raid_io *rio, int status)
{
	struct raid *r = rio->r;

	bitmap_write_end(rio);
	rio_free_mem(rio);
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
		if (__atomic_load_n(&r->members[i], __ATOMIC_ACQUIRE) == bd)
			return (int)i;
	return -1;
}

/* A bio of rio's to member device bd failed: fail the slot bd is in now. */
void raid_member_io_error(struct raid_io *rio, struct blkdev *bd, int status)
{
	struct raid *r = rio->r;
	int expect = RAID_MEMBER_ACTIVE, m;
	bool failed;

	rio->child_err = true;
	if (r->g.level == RAID_LEVEL_0)
		return;
	pthread_mutex_lock(&r->slot_lock);
	m = member_of(r, bd);
	/* m < 0: a member replaced meanwhile (a spare took its slot): the
	 * level tries again without it */
	failed = m >= 0 &&
		 (__atomic_compare_exchange_n(&r->state[m], &expect, RAID_MEMBER_FAILED, false,
					      __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) ||
		  (expect == RAID_MEMBER_REBUILDING &&
		   __atomic_compare_exchange_n(&r->state[m], &expect, RAID_MEMBER_FAILED, false,
					       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)));
	pthread_mutex_unlock(&r->slot_lock);
	if (failed) {
		LOG_RATELIMIT(LOG_WARN, LS_RAID, "%s: member %d (%s) failed (%s), set %s",
			      r->bd.name, m, bd->name, strerror(-status),
			      raid_set_alive(r) ? "degraded" : "down");
		rio->persist = true;
	}
}

/* The channel of member m for this loop: opened on first use after a
 * member was replaced, the old one closed (it ends its own I/O first). */
static struct blkchan *member_chan(struct raid_io *rio, uint32_t m)
{
	struct blkdev *bd = __atomic_load_n(&rio->r->members[m], __ATOMIC_ACQUIRE);
	struct blkchan **mch = rio->mch;

	if (mch[m] && mch[m]->bd == bd)
		return mch[m];
	if (mch[m])
		blk_chan_close(mch[m], NULL, NULL);
	mch[m] = NULL;
	if (bd && blk_chan_open(bd, rio->bio->ch->loop, &mch[m]))
		mch[m] = NULL;
	return mch[m];
}

static void child_end(struct bio *b, int status)
{
	struct raid_io *rio = b->end_arg;

	if (status) {
		struct raid *r = rio->r;
		int m = member_of(r, b->ch->bd);

		if (r->g.level == RAID_LEVEL_0 && !rio->status)
			rio->status = status;
		if (m >= 0 && b->op == BIO_READ && r->g.level != RAID_LEVEL_0 &&
		    raid_alive(r, (uint32_t)m) &&
		    __atomic_add_fetch(&r->read_errs[m], 1, __ATOMIC_RELAXED) <= RAID_READ_ERROR_MAX) {
			/* served from redundancy and written back by the level */
			LOG_RATELIMIT(LOG_WARN, LS_RAID, "%s: read error on member %u (%s) at %llu+%llu "
				      "(%s, %u so far): reconstructing and rewriting", r->bd.name,
				      m, b->ch->bd->name, (unsigned long long)b->offset,
				      (unsigned long long)b->len, strerror(-status),
				      __atomic_load_n(&r->read_errs[m], __ATOMIC_RELAXED));
			rio->child_err = true;
			rio->bad |= 1u << m;
		} else {
			raid_member_io_error(rio, b->ch->bd, status);
		}
	} else {
		rio->nok++;
	}
	if (--rio->pending == 0)
		rio->next(rio);
}

#define RETRY_NS	(50 * 1000)

static void retry_fn(struct ev_timer *t);

/* Send one member bio: from v (nv pieces), or from the parent's iovec.
 * off is absolute on the member; flags < 0: the parent's FUA/NOUNMAP.
 * More than BIO_INLINE_IOVS pieces: v is malloc'ed and the bio takes it. */
static void member_bio_iov(struct raid_io *rio, uint32_t m, enum bio_op op, uint64_t off,
			   uint64_t len, const struct iovec *v, int nv, int64_t flags)
{
	struct blkchan *ch = member_chan(rio, m);
	struct bio *b = ch ? bio_alloc(ch) : NULL;
	int rc;

	if (!b) {
		if (v && nv > BIO_INLINE_IOVS)
			free((void *)v);
		if (!rio->status)
			rio->status = -ENOMEM;
		return;
	}
	b->op = op;
	b->flags = op == BIO_WRITE || op == BIO_WRITE_ZEROES ?
		   (rio->bio->flags & (BIO_FUA | BIO_NOUNMAP)) : 0;
	if (flags >= 0)
		b->flags = (uint32_t)flags;
	if (op != BIO_FLUSH) {
		b->offset = off;
		b->len = len;
	}
	if (v && nv > BIO_INLINE_IOVS) {
		b->iov_alloc = (struct iovec *)v;
		b->iov = b->iov_alloc;
		b->iovcnt = nv;
	} else if (v) {
		for (int i = 0; i < nv; i++)
			b->iov_inline[i] = v[i];
		b->iov = b->iov_inline;
		b->iovcnt = nv;
	} else if (op != BIO_FLUSH) {
		b->iov = rio->bio->iov;
		b->iovcnt = rio->bio->iovcnt;
	}
	b->end = child_end;
	b->end_arg = rio;
	b->autofree = true;
	rio->pending++;
	rc = blk_submit(ch, b);
	if (rc == -EAGAIN || rc == -ENOMEM) {
		/* backpressure: the member takes it later */
		list_add_tail(&b->link, &rio->retry);
		if (!ev_timer_armed(&rio->retry_timer))
			ev_timer_start(ch->loop, &rio->retry_timer, RETRY_NS, retry_fn);
	} else if (rc) {
		rio->pending--;
		bio_free(b);
		if (!rio->status)
			rio->status = rc;
	}
}

/* Send one member bio: from buf (len bytes), or from the parent's iovec. */
void member_bio(struct raid_io *rio, uint32_t m, enum bio_op op, uint64_t moff,
		uint64_t len, void *buf)
{
	struct iovec v = { buf, len };

	member_bio_iov(rio, m, op, rio->r->data_offset + moff, len, buf ? &v : NULL, 1, -1);
}

void member_bio_at(struct raid_io *rio, uint32_t m, enum bio_op op, uint32_t flags,
		   uint64_t off, uint64_t len, void *buf)
{
	struct iovec v = { buf, len };

	member_bio_iov(rio, m, op, off, len, &v, 1, flags);
}

void member_bio_vec(struct raid_io *rio, uint32_t m, enum bio_op op, uint64_t moff,
		    uint64_t len, struct iovec *v, int nv)
{
	if (nv <= BIO_INLINE_IOVS) {
		member_bio_iov(rio, m, op, rio->r->data_offset + moff, len, v, nv, -1);
		free(v);
		return;
	}
	member_bio_iov(rio, m, op, rio->r->data_offset + moff, len, v, nv, -1);
}

void member_bio_slice(struct raid_io *rio, uint32_t m, enum bio_op op, uint64_t moff,
		      uint64_t len, size_t skip)
{
	struct iovec v[BIO_INLINE_IOVS];
	const struct iovec *iov = rio->bio->iov;
	uint64_t left = len;
	int n = 0;

	for (int i = 0; i < rio->bio->iovcnt && left; i++) {
		size_t take;

		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		take = (size_t)MIN(left, iov[i].iov_len - skip);
		assert(n < BIO_INLINE_IOVS);
		v[n].iov_base = (uint8_t *)iov[i].iov_base + skip;
		v[n].iov_len = take;
		n++;
		left -= take;
		skip = 0;
	}
	member_bio_iov(rio, m, op, rio->r->data_offset + moff, len, v, n, -1);
}

static void retry_fn(struct ev_timer *t)
{
	struct raid_io *rio = container_of(t, struct raid_io, retry_timer);
	struct list_head todo;

	list_init(&todo);
	while (!list_empty(&rio->retry)) {
		struct list_head *l = rio->retry.next;

		list_del(l);
		list_add_tail(l, &todo);
	}
	rio->pending++;		/* hold: a refusal below must not end the batch early */
	while (!list_empty(&todo)) {
		struct bio *b = list_entry(todo.next, struct bio, link);
		int rc;

		list_del(&b->link);
		rc = blk_submit(b->ch, b);
		if (rc == -EAGAIN || rc == -ENOMEM) {
			list_add_tail(&b->link, &rio->retry);
		} else if (rc) {
			rio->pending--;
			bio_free(b);
			if (!rio->status)
				rio->status = rc;
		}
	}
	if (!list_empty(&rio->retry))
		ev_timer_start(rio->bio->ch->loop, &rio->retry_timer, RETRY_NS, retry_fn);
	batch_end(rio);
}

/* Start a batch of member bios; batch_end() runs next() once all have ended. */
void batch_begin(struct raid_io *rio, raid_io_fn next)
{
	rio->next = next;
	rio->pending = 1;
	rio->child_err = false;
	rio->nok = 0;
}

void batch_end(struct raid_io *rio)
{
	if (--rio->pending == 0)
		rio->next(rio);
}


/* ------------------------------------------------------------ flush, submit */

static void flush_done(struct raid_io *rio)
{
	if (rio->status)
		rio_finish(rio, rio->status);
	else
		rio_finish(rio, raid_set_alive(rio->r) ? 0 : -EIO);
}

void raid_submit_flush(struct raid_io *rio)
{
	struct raid *r = rio->r;

	batch_begin(rio, flush_done);
	for (uint32_t i = 0; i < r->g.nmembers; i++)
		if (raid_alive(r, i))
			member_bio(rio, i, BIO_FLUSH, 0, 0, NULL);
	batch_end(rio);
}

/* The first write after the set opens waits until the superblocks say
 * "dirty" (the worker writes them): a crash from then on is known at the
 * next assembly. */
static void wait_dirty(struct raid_io *rio)
{
	struct raid *r = rio->r;

	pthread_mutex_lock(&r->wlock);
	list_add_tail(&rio->wait_link, &r->dirty_wait);
	pthread_cond_signal(&r->wcond);
	pthread_mutex_unlock(&r->wlock);
}

static void dirty_resume(void *arg)
{
	struct raid_io *rio = arg;

	if (!bitmap_write_start(rio))
		rio->r->lops->submit_rw(rio);
}

static int raid_submit(struct blkdev *bd, struct blkchan *ch, struct bio *bio)
{
	struct raid *r = to_raid(bd);
	struct raid_io *rio = bio_ctx(bio);

	memset(rio, 0, offsetof(struct raid_io, stripe));
	rio->r = r;
	rio->bio = bio;
	rio->rc = ch->priv;
	rio->mch = rio->rc->mch;
	rio->in_submit = true;
	list_init(&rio->wait_link);
	list_init(&rio->retry);
	if (!(bio->flags & (RAID_BIO_REBUILD | RAID_BIO_RESYNC | RAID_BIO_SCRUB)))
		__atomic_fetch_add(&r->fg_ios, 1, __ATOMIC_RELAXED);
	if (bio->op == BIO_FLUSH)
		r->lops->submit_null(rio);
	else if (bio->flags & RAID_BIO_REBUILD)
		r->lops->rebuild(rio);
	else if (bio->flags & RAID_BIO_RESYNC)
		r->lops->resync(rio);
	else if (bio->flags & RAID_BIO_SCRUB)
		r->lops->scrub(rio);
	else if (bio->op != BIO_READ && !__atomic_load_n(&r->dirty, __ATOMIC_ACQUIRE))
		wait_dirty(rio);
	else if (bio->op == BIO_READ || !bitmap_write_start(rio))
		r->lops->submit_rw(rio);
	rio->in_submit = false;
	return 0;
}

/* ------------------------------------------------------------ blkdev ops */

/*
 * WRITE_ZEROES and DISCARD: RAID 5/6 take both, and both read back zeros:
 * a whole stripe becomes WRITE_ZEROES on every member, parity included,
 * when every member takes it, else (and for part of a stripe) zeros are
 * written through the stripe path, parity following (raid_parity_io.c).
 * 0, 1 and 10 pass them down when every member takes them.
 */
static bool raid_supports(struct blkdev *bd, enum bio_op op)
{
	struct raid *r = to_raid(bd);

	switch (op) {
	case BIO_READ:
	case BIO_WRITE:
	case BIO_FLUSH:
		return true;
	case BIO_WRITE_ZEROES:
	case BIO_DISCARD:
		return r->np || r->caps & (1u << op);
	default:
		return false;
	}
}

static int raid_chan_create(struct blkdev *bd, struct blkchan *ch)
{
	struct raid *r = to_raid(bd);
	struct raid_chan *rc = calloc(1, sizeof(*rc));
	int err = 0;

	if (!rc)
		return -ENOMEM;
	list_init(&rc->free_bufs[0]);
	list_init(&rc->free_bufs[1]);
	for (uint32_t i = 0; i < r->g.nmembers && !err; i++)
		if (r->members[i])
			err = blk_chan_open(r->members[i], ch->loop, &rc->mch[i]);
	if (err) {
		for (uint32_t i = 0; i < r->g.nmembers; i++)
			if (rc->mch[i])
				blk_chan_close(rc->mch[i], NULL, NULL);
		free(rc);
		return err;
	}
	ch->priv = rc;
	return 0;
}

static void raid_chan_destroy(struct blkdev *bd, struct blkchan *ch)
{
	struct raid *r = to_raid(bd);
	struct raid_chan *rc = ch->priv;

	/* every raid bio has ended, so every member bio has */
	ppl_chan_free(rc);
	for (uint32_t i = 0; i < r->g.nmembers; i++)
		if (rc->mch[i])
			blk_chan_close(rc->mch[i], NULL, NULL);
	for (int c = 0; c < 2; c++)
		while (!list_empty(&rc->free_bufs[c])) {
			struct list_head *l = rc->free_bufs[c].next;

			list_del(l);
			free(l);
		}
	free(rc);
}

static void raid_free(struct raid *r)
{
	bitmap_close(r);
	ppl_close(r);
	for (uint32_t i = 0; i < r->g.nmembers; i++)
		if (r->members[i])
			blkdev_release(r->members[i], r->bd.name);
	for (uint32_t i = 0; i < r->nspares; i++)
		blkdev_release(r->spares[i], r->bd.name);
	pthread_cond_destroy(&r->jcond);
	pthread_mutex_destroy(&r->jlock);
	pthread_cond_destroy(&r->wcond);
	pthread_mutex_destroy(&r->wlock);
	pthread_mutex_destroy(&r->slot_lock);
	pthread_mutex_destroy(&r->sb_lock);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static void raid_close(struct blkdev *bd)
{
	struct raid *r = to_raid(bd);

	raid_jobs_fini(r);		/* a rebuild keeps its cursor */
	pthread_mutex_lock(&r->wlock);
	r->wstop = true;
	pthread_cond_signal(&r->wcond);
	pthread_mutex_unlock(&r->wlock);
	pthread_join(r->worker, NULL);
	mark_clean(r);
	raid_free(r);
}

/*
 * Mapped reads (blk_map_read) of the one layout that is a plain map: RAID 0
 * with one member (a one-disk pool), block b at the member's data_offset +
 * b. A level 0 slot never takes another device while the set is open (no
 * spare, no replace), and the member closes only with the set, so nothing
 * needs pinning here. Every other layout reads through bios (-EAGAIN).
 */
static int raid_map_read(struct blkdev *bd, uint64_t offset, uint64_t len, struct blk_map *m)
{
	struct raid *r = to_raid(bd);

	if (r->g.level != RAID_LEVEL_0 || r->g.nmembers != 1 || !raid_alive(r, 0) ||
	    !r->members[0])
		return -EAGAIN;
	return blk_map_lower(r->members[0], r->data_offset + offset, len, m) ? -EAGAIN : 0;
}

static const struct blkdev_ops raid_ops = {
	.name = "raid",
	.bio_ctx_size = sizeof(struct raid_io),
	.close = raid_close,
	.supports = raid_supports,
	.chan_create = raid_chan_create,
	.chan_destroy = raid_chan_destroy,
	.submit = raid_submit,
	.map_read = raid_map_read,
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
		n += !raid_alive(r, i);
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
		     struct blkdev **slots, const int *states, struct blkdev **out)
{
	struct raid *r = calloc(1, sizeof(*r));
	uint32_t bs = sb->block_size;
	int rc;

	if (!r)
		return -ENOMEM;
	blkdev_init(&r->bd, &raid_ops, name);
	r->lops = level_ops(sb->geom.level);
	r->g = sb->geom;
	r->sb = *sb;
	/* 1.2, 1.3 -> 1.4 in place: each only adds fields in bytes the one
	 * before keeps zero */
	if (r->sb.major == 1 && (r->sb.minor == 2 || r->sb.minor == 3))
		r->sb.minor = RAID_SB_MINOR;
	r->k = raid_data_cols(&r->g);
	r->np = r->g.level == RAID_LEVEL_5 ? 1 : r->g.level == RAID_LEVEL_6 ? 2 : 0;
	r->data_offset = sb->data_offset;
	r->rebuild_slot = -1;
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->sb_lock, NULL);
	pthread_mutex_init(&r->slot_lock, NULL);
	pthread_mutex_init(&r->wlock, NULL);
	pthread_cond_init(&r->wcond, NULL);
	pthread_mutex_init(&r->jlock, NULL);
	pthread_cond_init(&r->jcond, NULL);
	r->ji.last_slot = -1;
	r->cursor_ok = !(sb->flags & RAID_SB_DIRTY);
	list_init(&r->locked);
	list_init(&r->wqueue);
	list_init(&r->dirty_wait);
	r->dirty = sb->flags & RAID_SB_DIRTY;
	for (uint32_t i = 0; i < r->g.nmembers; i++) {
		r->members[i] = slots[i];
		r->state[i] = !slots[i] ? RAID_MEMBER_FAILED :
			      states ? states[i] : RAID_MEMBER_ACTIVE;
		if (r->state[i] == RAID_MEMBER_REBUILDING)
			r->rebuild_slot = (int)i;
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
	r->caps = (1u << BIO_WRITE_ZEROES) | (1u << BIO_DISCARD);
	for (uint32_t i = 0; i < r->g.nmembers; i++)
		for (int op = BIO_DISCARD; op <= BIO_WRITE_ZEROES; op++)
			if (slots[i] && !blkdev_supports(slots[i], (enum bio_op)op))
				r->caps &= ~(1u << op);
	r->bd.block_size = bs;
	r->bd.size = raid_geom_size(&r->g);
	r->buf_max = MAX((size_t)r->g.strip * (2 * (r->k + r->np) + 1), 2 * 64 * 1024);
	r->lops->start(r);
	rc = ppl_open(r);
	if (!rc)
		rc = bitmap_open(r);
	if (rc) {
		raid_free(r);
		return rc;
	}
	/* 1.2, 1.3 -> 1.4: the hot image is kept from now on (the superblocks
	 * say so at the next persist; the image on disk is only trusted after
	 * a crash of a set whose superblocks said so, raid_bitmap.c) */
	if (bitmap_hot(r))
		r->sb.bitmap_flags |= RAID_BM_HOT;
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
	sb.data_offset = RAID_DATA_OFFSET;
	if ((level == RAID_LEVEL_5 || level == RAID_LEVEL_6) && !o->no_ppl) {
		/* the log: from 64 KiB to the data (doc/raid.md) */
		sb.ppl_offset = RAID_PPL_OFFSET;
		sb.ppl_size = o->ppl_size ? (o->ppl_size + 4095) / 4096 * 4096 :
			      ppl_default_size(sb.geom.strip);
		sb.data_offset = MAX(sb.data_offset, (sb.ppl_offset + sb.ppl_size + 65535) /
				     65536 * 65536);
	}
	if (bs > 4096 || bs > sb.geom.strip || smallest <= sb.data_offset) {
		LOG_ERR(LS_RAID, "%s: members too small or blocks too large for a %u-byte strip",
			name, sb.geom.strip);
		return -EINVAL;
	}
	sb.geom.member_size = o->member_size ? o->member_size :
		(smallest - sb.data_offset) / sb.geom.strip * sb.geom.strip;
	if (raid_geom_check(&sb.geom) || !sb.geom.member_size ||
	    sb.geom.member_size > smallest - sb.data_offset) {
		LOG_ERR(LS_RAID, "%s: RAID %d over %u members with a %u-byte strip is not a valid set",
			name, level, n, sb.geom.strip);
		return -EINVAL;
	}
	sb.block_size = bs;
	sb.generation = 1;
	if (raid_redundancy(&sb.geom) && !o->no_bitmap) {
		sb.bitmap_offset = RAID_BITMAP_OFFSET;
		sb.bitmap_size = RAID_PPL_OFFSET - RAID_BITMAP_OFFSET;
		/* room for two images (RAID_BM_HOT) */
		sb.bitmap_region = bitmap_region_size(o->bitmap_region, sb.geom.strip,
						      sb.geom.member_size, sb.bitmap_size / 2);
		sb.bitmap_flags = RAID_BM_HOT;
		rc = bitmap_format(members, n, sb.bitmap_offset, sb.bitmap_size);
		if (rc) {
			LOG_ERR(LS_RAID, "%s: cannot clear the bitmap: %s", name, strerror(-rc));
			return rc;
		}
	}
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
	rc = raid_open(name, &sb, members, NULL, out);
	if (rc)
		return rc;
	rc = raid_jobs_init(to_raid(*out));
	if (rc) {
		blkdev_close(*out);
		*out = NULL;
	}
	return rc;
}

int raid_assemble(struct blkdev **members, uint32_t n, struct blkdev **out)
{
	return raid_assemble_rate(members, n, 0, out);
}

int raid_assemble_rate(struct blkdev **members, uint32_t n, uint64_t rate,
		       struct blkdev **out)
{
	struct raid_sb *sbs, *best = NULL;
	struct blkdev *slots[RAID_MAX_MEMBERS] = { NULL };
	int states[RAID_MAX_MEMBERS];
	char uuid[37], missing[RAID_MAX_MEMBERS * 48];
	size_t mlen = 0;
	uint32_t nmiss = 0, nrebuild = 0;
	bool changed = false;
	int rc = 0;

	if (!members || !out || n == 0 || n > RAID_MAX_MEMBERS)
		return -EINVAL;
	sbs = calloc(n, sizeof(*sbs));
	if (!sbs)
		return -ENOMEM;
	for (uint32_t i = 0; i < RAID_MAX_MEMBERS; i++)
		states[i] = RAID_MEMBER_ACTIVE;
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
		/* One generation older, yet active in the newest superblock: it
		 * only missed the last update (a crash while the superblocks were
		 * being written, e.g. the dirty flag), so its data is current. Two
		 * or more behind, it missed a whole session (a set that ran
		 * without it, or an old copy of the disk): stale. */
		if (s->generation < best->generation &&
		    (best->members[idx].state != RAID_MEMBER_ACTIVE ||
		     s->generation + 1 < best->generation)) {
			LOG_WARN(LS_RAID, "%s: member %u (%s) is stale (generation %llu < %llu): not used",
				 best->name, idx, members[i]->name,
				 (unsigned long long)s->generation,
				 (unsigned long long)best->generation);
			continue;
		}
		if (best->members[idx].state == RAID_MEMBER_REBUILDING && !nrebuild) {
			/* the rebuild resumes from its cursor */
			LOG_INFO(LS_RAID, "%s: member %u (%s) was being rebuilt: %llu rows done",
				 best->name, idx, members[i]->name,
				 (unsigned long long)best->members[idx].rebuilt);
			slots[idx] = members[i];
			states[idx] = RAID_MEMBER_REBUILDING;
			nrebuild++;
			continue;
		}
		if (s->generation < best->generation)
			LOG_WARN(LS_RAID, "%s: member %u (%s) missed the last superblock update "
				 "(generation %llu < %llu) but is active in it: used", best->name,
				 idx, members[i]->name, (unsigned long long)s->generation,
				 (unsigned long long)best->generation);
		if (best->members[idx].state != RAID_MEMBER_ACTIVE) {
			LOG_WARN(LS_RAID, "%s: member %u (%s) is marked failed: not used",
				 best->name, idx, members[i]->name);
			continue;
		}
		slots[idx] = members[i];
	}
	for (uint32_t i = 0; i < best->geom.nmembers; i++) {
		if (slots[i] && states[i] == RAID_MEMBER_REBUILDING) {
			nmiss++;	/* not readable yet: no redundancy from it */
			continue;
		}
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
				if ((!slots[i] || states[i] != RAID_MEMBER_ACTIVE) &&
				    (!slots[i + 1] || states[i + 1] != RAID_MEMBER_ACTIVE))
					ok = false;
		if (!ok) {
			LOG_ERR(LS_RAID, "%s: RAID %d cannot start: %u of %u members missing: %s",
				best->name, best->geom.level, nmiss, best->geom.nmembers, missing);
			rc = -ENODEV;
			goto free_sbs;
		}
		if (mlen)
			LOG_WARN(LS_RAID, "%s: starting degraded, missing: %s", best->name,
				 missing);
	}
	rc = raid_open(best->name, best, slots, states, out);
	if (!rc && nmiss) {
		/* degraded: the regions written while members were away stay
		 * marked, for a member that comes back (raid_rebuild.c) */
		rc = bitmap_keep(to_raid(*out), slots);
		if (rc) {
			blkdev_close(*out);
			*out = NULL;
		}
	}
	if (!rc && changed) {
		struct raid *r = to_raid(*out);

		rc = raid_persist(r);
		if (rc) {
			blkdev_close(*out);
			*out = NULL;
		}
	}
	if (!rc && (best->flags & RAID_SB_DIRTY) && to_raid(*out)->lops->resync) {
		struct raid *r = to_raid(*out);

		if (r->bm) {
			/* the log first (degraded 5/6), then the dirty regions */
			if (nmiss && r->ppl) {
				LOG_WARN(LS_RAID, "%s: was not shut down cleanly and is degraded: "
					 "replaying the partial parity log", r->bd.name);
				rc = ppl_recover(best, slots);
			} else {
				LOG_WARN(LS_RAID, "%s: was not shut down cleanly: resynchronizing "
					 "the regions in the bitmap", r->bd.name);
			}
			if (rc >= 0)
				rc = bitmap_load(r, slots);
			if (!rc)
				rc = raid_walk_rows(r, RAID_BIO_RESYNC, 0, false);
			if (!rc)
				rc = raid_rebuild_recover(r);	/* a rebuild's cursor */
			if (!rc)
				rc = bitmap_reset(r);
			if (!rc)
				rc = raid_persist(r);	/* the new log epoch */
			if (rc) {
				LOG_ERR(LS_RAID, "%s: recovery failed: %s", r->bd.name,
					strerror(-rc));
				blkdev_close(*out);
				*out = NULL;
			}
		} else if (nmiss && r->ppl) {
			LOG_WARN(LS_RAID, "%s: was not shut down cleanly and is degraded: "
				 "replaying the partial parity log", r->bd.name);
			rc = ppl_recover(best, slots);
			if (rc >= 0)
				rc = raid_persist(r);	/* the new log epoch */
			if (rc) {
				blkdev_close(*out);
				*out = NULL;
			}
		} else if (nmiss) {
			LOG_WARN(LS_RAID, "%s: was not shut down cleanly and is degraded: "
				 "stripes written at the crash may read back wrong", r->bd.name);
		} else {
			LOG_WARN(LS_RAID, "%s: was not shut down cleanly: resynchronizing",
				 r->bd.name);
			rc = raid_walk_rows(r, RAID_BIO_RESYNC, 0, false);
			if (!rc && r->ppl)
				rc = raid_persist(r);	/* the new log epoch */
			if (rc) {
				LOG_ERR(LS_RAID, "%s: resync failed: %s", r->bd.name, strerror(-rc));
				blkdev_close(*out);
				*out = NULL;
			}
		}
	}
	if (!rc) {
		/* the rate before the job thread: a resumed rebuild or scrub
		 * never runs a moment unthrottled */
		to_raid(*out)->rate = rate;
		rc = raid_jobs_init(to_raid(*out));	/* resumes a rebuild */
		if (rc) {
			blkdev_close(*out);
			*out = NULL;
		}
	}
free_sbs:
	free(sbs);
	return rc;
}
