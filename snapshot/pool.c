/* SPDX-License-Identifier: MIT */
/*
 * Thin pools and volumes over the metadata layer (snapshot/meta).
 *
 * The pool's device holds the metadata first (see tm.c) and the data
 * chunks after it, from data_off. The superblock's user area holds the
 * pool's own fields; a volume table (a B-tree from volume id to a 64-byte
 * record) gives each volume its mapping tree: virtual chunk -> (physical
 * chunk << 24 | time written).
 *
 * How do we know a chunk is shared? As dm-thin does, by time: the pool's
 * time goes up by one at each snapshot or clone, and both the origin and
 * the new volume remember it (snap_time). A mapping written before its
 * volume's snap_time may be shared, so a write to it goes to a new chunk
 * (copying the old contents first unless the write covers the whole chunk);
 * a mapping written since is the volume's own and is written in place,
 * unless its chunk's reference count says a range copy shares it
 * (snapshot/copy.c: a chunk mapped by two leaves counts two). The
 * data is written before the mapping is inserted, and the mapping is only
 * durable with the next commit, so after a crash the old mapping, and the
 * old chunk it points at, are still there.
 *
 * Threads. Control calls and every metadata change run on the pool's owner
 * thread, with synchronous metadata and data I/O through private loops.
 * The fast path (vol_submit on the submitting reactor) remaps reads of
 * mapped chunks and writes to chunks the volume owns alone through a
 * per-volume mapping cache and sends them to the pool device on that
 * reactor's loop; the owner invalidates the cache and waits for the I/O in
 * flight before it changes a mapping (map_forget, map_forget_all). The rest
 * goes to the owner. There a write that needs a new chunk is provisioned
 * with its data I/O in flight (prov_*), many at once, each holding its
 * chunk's cell so that later bios to the chunk wait for the mapping; reads,
 * writes in place and unmapping are done at once (do_bio). FLUSH and FUA
 * share commits (flush_run). doc/thin.md, "Threads and I/O", says why this
 * is safe.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/common.h"
#include "sand/ev.h"
#include "sand/log.h"
#include "sand/thin.h"
#include "snapshot/meta/meta.h"
#include "snapshot/pool.h"

/* One data I/O of a provisioning on the owner (prov_*). */
struct prov_io {
	struct list_head	link;		/* on p->retry after backpressure */
	struct bio		*bio;		/* the volume's bio it is for */
	struct thin_pool	*p;
	int			status;
	enum bio_op		op;
	uint64_t		off, len;
	const struct iovec	*iov;
	int			iovcnt;
	/* set: runs on the io thread when the I/O ends (owner_direct's);
	 * else the owner gets it back (prov_io_done) */
	void			(*end)(struct prov_io *io, int status);
};

struct vol_bio {
	int		status;
	struct map_slot	*slot;		/* fast path: the slot pinned */

	/* owner: a provisioning in flight (a write to a chunk the volume
	 * does not own: a new chunk q, filled, then mapped). The bio holds
	 * its chunk's cell (on tv->cells): later bios to the chunk wait on
	 * waiters and start again once the mapping is in place. */
	struct list_head cell;
	struct list_head waiters;
	uint64_t	vc, pc, q;
	uint32_t	in, n;
	bool		mapped;		/* pc: the old (shared) chunk */
	bool		copying;	/* reading pc into buf, then write buf */
	unsigned	pending;	/* data I/Os in flight, + 1 while issuing */
	int		err;
	uint8_t		*buf;		/* a whole chunk, for a copy or zero fill */
	struct iovec	biov;		/* buf's */
	struct prov_io	io[3];
};

/* ---- running on the owner thread ---- */

struct call {
	struct thin_pool	*p;
	int			(*fn)(struct thin_pool *p, void *arg);
	void			*arg;
	int			rc;
	bool			done;
	pthread_mutex_t		lock;
	pthread_cond_t		cond;
};

static void call_run(void *a)
{
	struct call *c = a;
	int rc = c->fn(c->p, c->arg);

	pthread_mutex_lock(&c->lock);
	c->rc = rc;
	c->done = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

int pool_call(struct thin_pool *p, int (*fn)(struct thin_pool *, void *), void *arg)
{
	struct call c = { .p = p, .fn = fn, .arg = arg };
	int rc;

	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.cond, NULL);
	rc = ev_send_msg(p->loop, call_run, &c);
	if (!rc) {
		pthread_mutex_lock(&c.lock);
		while (!c.done)
			pthread_cond_wait(&c.cond, &c.lock);
		pthread_mutex_unlock(&c.lock);
		rc = c.rc;
	}
	pthread_cond_destroy(&c.cond);
	pthread_mutex_destroy(&c.lock);
	return rc;
}

/* ---- data I/O (owner thread, synchronous) ---- */

struct sync_res {
	bool	done;
	int	status;
};

static void sync_end(struct bio *bio, int status)
{
	struct sync_res *r = bio->end_arg;

	r->done = true;
	r->status = status;
}

static int data_io(struct thin_pool *p, enum bio_op op, uint64_t off, void *buf, uint64_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct sync_res r = { 0 };
	int rc;

	if (op == BIO_FLUSH)
		off = len = 0;
	while ((rc = blk_rw(p->dch, op, 0, &iov, buf ? 1 : 0, off, len, sync_end, &r)) == -EAGAIN ||
	       rc == -ENOMEM)
		ev_run_once(p->dloop, 10);
	if (rc)
		return rc;
	while (!r.done)
		if ((rc = ev_run_once(p->dloop, -1)) < 0)
			return rc;
	return r.status;
}

/*
 * A write in place has ended: the next commit must flush the device. Read
 * first, so that writes on several reactors do not keep pulling the cache
 * line over when it is already set. Skipping the store is safe: the value
 * 1 read here is cleared by a commit after this (seq_cst), and that
 * commit's flush comes after the clear, so after this write's end.
 */
static inline void note_unflushed(struct thin_pool *p)
{
	if (!__atomic_load_n(&p->unflushed, __ATOMIC_SEQ_CST))
		__atomic_store_n(&p->unflushed, 1, __ATOMIC_SEQ_CST);
}

static uint64_t chunk_off(struct thin_pool *p, uint64_t pc)
{
	return p->data_off + pc * p->chunk;
}

/* ---- the fast path's mapping cache (see pool.h and doc/thin.md) ---- */

/* Owner: remember vc -> pc for the fast path. A slot pinned by I/O to
 * another chunk is left alone (it is being used). */
static void map_note(struct thin_vol *tv, uint64_t vc, uint64_t pc, bool owned)
{
	struct map_slot *s;

	if (!tv || !tv->map)
		return;
	pthread_mutex_lock(&tv->lock);
	s = &tv->map[vc & tv->map_mask];
	if (!s->inflight || (s->vc == vc && s->pc == pc)) {
		s->vc = vc;
		s->pc = pc;
		s->owned = owned;
		s->gen = tv->gen;
		s->wgen = tv->wgen;
	}
	pthread_mutex_unlock(&tv->lock);
}

/* Owner, before vc's mapping changes: no new fast-path I/O will use the
 * old mapping, and none is in flight with it when this returns. */
static void map_forget(struct thin_vol *tv, uint64_t vc)
{
	struct map_slot *s;

	if (!tv || !tv->map)
		return;
	pthread_mutex_lock(&tv->lock);
	s = &tv->map[vc & tv->map_mask];
	if (s->vc == vc) {
		s->gen = tv->gen - 1;
		tv->waiters++;
		while (s->inflight)
			pthread_cond_wait(&tv->drained, &tv->lock);
		tv->waiters--;
	}
	pthread_mutex_unlock(&tv->lock);
}

/* Owner, before the volume's mappings change wholesale (a shrink unmaps a
 * range: every slot invalid) or its chunks all become shared (a snapshot:
 * writes_only, no slot owned, reads keep them); then no fast-path I/O is
 * in flight. */
static void map_forget_all(struct thin_vol *tv, bool writes_only)
{
	if (!tv || !tv->map)
		return;
	pthread_mutex_lock(&tv->lock);
	if (writes_only ? ++tv->wgen == 0 : ++tv->gen == 0) {
		/* wrapped: no slot may look valid or owned */
		memset(tv->map, 0, (tv->map_mask + 1) * sizeof(*tv->map));
		tv->gen = tv->wgen = 1;
	}
	tv->waiters++;
	while (tv->inflight)
		pthread_cond_wait(&tv->drained, &tv->lock);
	tv->waiters--;
	pthread_mutex_unlock(&tv->lock);
}

void pool_vol_remapped(struct thin_vol *tv)
{
	map_forget_all(tv, false);
}

/* ---- value types ---- */

static int data_inc(void *ctx, const void *v)
{
	struct thin_pool *p = ctx;

	return sm_inc(tm_dsm(p->tm), get_le64(v) >> 24);
}

static int data_dec(void *ctx, const void *v)
{
	struct thin_pool *p = ctx;

	return sm_dec(tm_dsm(p->tm), get_le64(v) >> 24);
}

static void infos_init(struct thin_pool *p)
{
	p->vinfo = (struct btree_info){ .tm = p->tm, .value_size = VREC_SIZE };
	p->minfo = (struct btree_info){ .tm = p->tm, .value_size = 8, .ctx = p,
					.inc = data_inc, .dec = data_dec };
}

/* ---- volume records ---- */

static void rec_pack(const struct vol_rec *r, uint8_t *v)
{
	memset(v, 0, VREC_SIZE);
	put_le64(v + R_ROOT, r->root);
	put_le64(v + R_SIZE, r->size);
	put_le32(v + R_SNAP_TIME, r->snap_time);
	put_le32(v + R_FLAGS, r->flags);
	memcpy(v + R_NAME, r->name, strnlen(r->name, THIN_NAME_MAX - 1));
}

static struct vol_rec *rec_find(struct thin_pool *p, const char *name)
{
	struct list_head *pos;

	list_for_each(pos, &p->vols) {
		struct vol_rec *r = list_entry(pos, struct vol_rec, link);

		if (!strcmp(r->name, name))
			return r;
	}
	return NULL;
}

static int load_rec(void *arg, uint64_t key, const void *value)
{
	struct thin_pool *p = arg;
	const uint8_t *v = value;
	struct vol_rec *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->id = key;
	r->root = get_le64(v + R_ROOT);
	r->size = get_le64(v + R_SIZE);
	r->snap_time = get_le32(v + R_SNAP_TIME);
	r->flags = get_le32(v + R_FLAGS);
	memcpy(r->name, v + R_NAME, THIN_NAME_MAX - 1);
	list_add_tail(&r->link, &p->vols);
	p->nvols++;
	return 0;
}

static void free_recs(struct thin_pool *p)
{
	while (!list_empty(&p->vols)) {
		struct vol_rec *r = list_first_entry(&p->vols, struct vol_rec, link);

		list_del(&r->link);
		free(r);
	}
}

/* ---- commit ---- */

static void user_pack(struct thin_pool *p)
{
	uint8_t *u = tm_user(p->tm);

	put_le32(u + U_MAGIC, POOL_MAGIC);
	put_le32(u + U_VERSION, POOL_VERSION);
	put_le32(u + U_CHUNK, p->chunk);
	put_le32(u + U_TIME, p->time);
	put_le64(u + U_VROOT, p->vroot);
	put_le64(u + U_NEXT_ID, p->next_id);
	put_le64(u + U_DATA_OFF, p->data_off);
	put_le64(u + U_NR_CHUNKS, p->nr_chunks);
}

static void low_space_check(struct thin_pool *p);

static int fail(struct thin_pool *p, int rc)
{
	if (!p->failed) {
		LOG_ERR(LS_THIN, "%s: metadata error (%d): pool fails all I/O until reopened",
			p->dev->name, rc);
		__atomic_store_n(&p->failed, rc, __ATOMIC_RELEASE);
	}
	return rc;
}

/* Drop (take == false) or take back the references of the chunks that
 * provisionings in flight have allocated (pool.h). */
void pool_prov_hold(struct thin_pool *p, bool take)
{
	struct list_head *pos, *c;

	if (take ? --p->prov_released : p->prov_released++)
		return;	/* nested */

	list_for_each(pos, &p->vols) {
		struct vol_rec *r = list_entry(pos, struct vol_rec, link);

		if (!r->open)
			continue;
		list_for_each(c, &r->open->cells) {
			struct vol_bio *vb = list_entry(c, struct vol_bio, cell);
			int rc = take ? sm_inc(tm_dsm(p->tm), vb->q) : sm_dec(tm_dsm(p->tm), vb->q);

			if (rc)
				fail(p, rc);
		}
	}
}

static int commit(struct thin_pool *p)
{
	struct list_head *pos;
	uint8_t v[VREC_SIZE];
	int rc;

	if (p->failed)
		return -EIO;
	if (!p->dirty) {
		/* in-place writes only: they need the device's flush all the same */
		if (!__atomic_exchange_n(&p->unflushed, 0, __ATOMIC_ACQ_REL))
			return 0;
		p->st_commits++;
		rc = data_io(p, BIO_FLUSH, 0, NULL, 0);
		if (rc)
			__atomic_store_n(&p->unflushed, 1, __ATOMIC_RELEASE);
		return rc;
	}
	list_for_each(pos, &p->vols) {
		struct vol_rec *r = list_entry(pos, struct vol_rec, link);

		if (!r->dirty)
			continue;
		rec_pack(r, v);
		rc = btree_insert(&p->vinfo, p->vroot, r->id, v, &p->vroot);
		if (rc)
			return fail(p, rc);
		r->dirty = false;
	}
	user_pack(p);
	/* tm_commit flushes the device: that covers every write ended so far */
	__atomic_store_n(&p->unflushed, 0, __ATOMIC_RELEASE);
	p->st_commits++;
	/* chunks allocated by provisionings in flight are not mapped yet: the
	 * commit records them free (a crash leaks nothing), and they are
	 * taken again at once (nobody allocates in between) */
	pool_prov_hold(p, false);
	rc = tm_commit(p->tm);
	pool_prov_hold(p, true);
	if (rc)
		return fail(p, rc);
	p->dirty = false;
	low_space_check(p);	/* space freed by the transaction may rearm it */
	return 0;
}

static void commit_tick(struct ev_timer *t)
{
	struct thin_pool *p = container_of(t, struct thin_pool, commit_timer);

	/* metadata only: data written in place is made durable by FLUSH and
	 * FUA, which flush the device; a periodic device flush would stall
	 * the fast path's writes every commit_ms for nothing */
	if (p->dirty)
		commit(p);
	ev_timer_start(p->loop, &p->commit_timer, p->commit_ms * 1000000ull, commit_tick);
}

/* ---- volume I/O (owner thread) ---- */

static int map_lookup(struct thin_pool *p, struct vol_rec *r, uint64_t vc,
		      uint64_t *pc, uint32_t *time)
{
	uint8_t v[8];
	int rc = btree_lookup(&p->minfo, r->root, vc, v);

	if (rc)
		return rc;
	*pc = get_le64(v) >> 24;
	*time = get_le64(v) & TIME_MASK;
	if (*pc >= p->nr_chunks)
		return -EUCLEAN;
	return 0;
}

/* Is the chunk pc, mapped at time t, r's alone (a write may go in place)?
 * Written since r's snap_time (no snapshot or clone shares its leaf), and
 * referenced once (no range copy shares it: thin_vol_copy_range). */
static bool owned(struct thin_pool *p, struct vol_rec *r, uint64_t pc, uint32_t t)
{
	uint32_t count;

	if (t < r->snap_time)
		return false;
	return !sm_get_count(tm_dsm(p->tm), pc, &count) && count == 1;
}

/* Announce crossing below the low-water mark, once per crossing. */
static void low_space_check(struct thin_pool *p)
{
	uint64_t free_chunks;

	if (!p->low_space)
		return;
	free_chunks = sm_nr_free(tm_dsm(p->tm));
	if (free_chunks < p->low_water && !p->low) {
		p->low = true;
		LOG_WARN(LS_THIN, "%s: low on data space: %llu chunks free", p->dev->name,
			 (unsigned long long)free_chunks);
		p->low_space(p->low_space_arg, free_chunks);
	} else if (free_chunks >= p->low_water) {
		p->low = false;
	}
}

/* Fill [in, in+n) of the chunk buffer from the bio (or zeros). */
static void fill(struct thin_pool *p, struct bio *bio, uint64_t skip, uint32_t in, uint64_t n)
{
	if (bio && bio->op == BIO_WRITE)
		iov_to_buf(bio->iov, bio->iovcnt, skip, p->cbuf + in, n);
	else
		memset(p->cbuf + in, 0, n);
}

/* Write n bytes at in of virtual chunk vc, from the bio at skip (or zeros). */
static int write_seg(struct thin_pool *p, struct vol_rec *r, struct bio *bio,
		     uint64_t skip, uint64_t vc, uint32_t in, uint64_t n)
{
	uint64_t pc = 0, q;
	uint32_t t;
	uint8_t v[8];
	bool mapped;
	int rc;

	rc = map_lookup(p, r, vc, &pc, &t);
	if (rc && rc != -ENODATA)
		return fail(p, rc);
	mapped = !rc;
	if (mapped && owned(p, r, pc, t)) {	/* ours: in place */
		fill(p, bio, skip, 0, n);
		__atomic_store_n(&p->unflushed, 1, __ATOMIC_RELEASE);
		rc = data_io(p, BIO_WRITE, chunk_off(p, pc) + in, p->cbuf, n);
		if (!rc)
			map_note(r->open, vc, pc, true);
		return rc;
	}
	/* the mapping is going to change: the fast path lets go of it */
	map_forget(r->open, vc);
	if (sm_nr_allocatable(tm_msm(p->tm)) < META_RESERVE)
		return -ENOSPC;
	rc = sm_alloc(tm_dsm(p->tm), &q);
	if (rc == -ENOSPC)
		LOG_RATELIMIT(LOG_WARN, LS_THIN, "%s: out of data space", p->dev->name);
	if (rc)
		return rc == -ENOSPC ? rc : fail(p, rc);
	low_space_check(p);
	if (n < p->chunk && !mapped && p->zeroes) {
		/* a new chunk, partly written: zero the rest (the chunk may
		 * hold an old volume's data) without writing whole buffers */
		if (in)
			rc = data_io(p, BIO_WRITE_ZEROES, chunk_off(p, q), NULL, in);
		if (!rc && in + n < p->chunk)
			rc = data_io(p, BIO_WRITE_ZEROES, chunk_off(p, q) + in + n, NULL,
				     p->chunk - in - n);
		if (!rc) {
			fill(p, bio, skip, 0, n);
			rc = data_io(p, BIO_WRITE, chunk_off(p, q) + in, p->cbuf, n);
		}
	} else {
		if (n < p->chunk) {
			if (mapped)	/* shared: copy it first */
				rc = data_io(p, BIO_READ, chunk_off(p, pc), p->cbuf, p->chunk);
			else
				memset(p->cbuf, 0, p->chunk);
		}
		if (!rc) {
			fill(p, bio, skip, in, n);
			rc = data_io(p, BIO_WRITE, chunk_off(p, q), p->cbuf, p->chunk);
		}
	}
	if (rc) {
		if (sm_dec(tm_dsm(p->tm), q))
			fail(p, -EUCLEAN);
		return rc;
	}
	put_le64(v, q << 24 | (p->time & TIME_MASK));
	rc = btree_insert(&p->minfo, r->root, vc, v, &r->root);
	if (rc)
		return fail(p, rc);
	r->dirty = p->dirty = true;
	map_note(r->open, vc, q, true);
	return 0;
}

static int unmap_chunk(struct thin_pool *p, struct vol_rec *r, uint64_t vc)
{
	int rc;

	if (sm_nr_allocatable(tm_msm(p->tm)) < META_RESERVE)
		return -ENOSPC;
	map_forget(r->open, vc);
	rc = btree_remove(&p->minfo, r->root, vc, &r->root);
	if (rc == -ENODATA)
		return 0;
	if (rc)
		return fail(p, rc);
	r->dirty = p->dirty = true;
	return 0;
}

static int do_bio(struct thin_pool *p, struct thin_vol *tv, struct bio *bio)
{
	struct vol_rec *r = tv->r;
	uint64_t done = 0, pc;
	uint32_t t;
	int rc = 0;

	if (p->failed)
		return -EIO;
	if (bio->op == BIO_FLUSH)
		return commit(p);
	/* queued before a shrink, past the new end */
	if (bio->offset + bio->len > r->size)
		return -EINVAL;
	p->st_owner_ios++;
	while (done < bio->len && !rc) {
		uint64_t off = bio->offset + done;
		uint64_t vc = off / p->chunk;
		uint32_t in = (uint32_t)(off % p->chunk);
		uint64_t n = MIN(bio->len - done, (uint64_t)(p->chunk - in));

		switch (bio->op) {
		case BIO_READ:
			rc = map_lookup(p, r, vc, &pc, &t);
			if (rc == -ENODATA) {
				iov_memset(bio->iov, bio->iovcnt, done, 0, n);
				rc = 0;
			} else if (!rc) {
				rc = data_io(p, BIO_READ, chunk_off(p, pc) + in, p->cbuf, n);
				if (!rc)
					buf_to_iov(bio->iov, bio->iovcnt, done, p->cbuf, n);
				if (!rc)
					map_note(tv, vc, pc, owned(p, r, pc, t));
			} else {
				rc = fail(p, rc);
			}
			break;
		case BIO_WRITE:
			rc = write_seg(p, r, bio, done, vc, in, n);
			break;
		case BIO_DISCARD:
		case BIO_WRITE_ZEROES:
			if (n == p->chunk && !(bio->flags & BIO_NOUNMAP)) {
				rc = unmap_chunk(p, r, vc);
				break;
			}
			/* partial (or kept allocated): zeros where something is mapped */
			rc = map_lookup(p, r, vc, &pc, &t);
			if (rc == -ENODATA && !(bio->flags & BIO_NOUNMAP))
				rc = 0;
			else if (!rc || rc == -ENODATA)
				rc = write_seg(p, r, NULL, 0, vc, in, n);
			else
				rc = fail(p, rc);
			break;
		default:
			rc = -EOPNOTSUPP;
		}
		done += n;
	}
	return rc;	/* FUA: vol_bio_run queues the bio for a commit */
}

static void vol_bio_done(void *arg)
{
	struct bio *bio = arg;
	struct vol_bio *vb = bio_ctx(bio);

	bio_complete(bio, vb->status);
}

static void vol_bio_end(struct bio *bio, int status)
{
	struct vol_bio *vb = bio_ctx(bio);

	vb->status = status;
	while (ev_send_msg(bio->ch->loop, vol_bio_done, bio))
		;	/* -ENOMEM: nothing else to do but try again */
}

/*
 * Batched commits. FLUSH bios, and FUA writes once written, wait on p->fq;
 * one flush_run message on the owner takes every bio queued so far, commits
 * once and ends them all. Bios that arrive during that commit wait for the
 * next one. A commit covers every write that had ended when the bio was
 * queued: owner writes were handled before it, and fast-path writes set
 * p->unflushed before they end, so the commit flushes the device for them.
 */
static void flush_run(void *arg)
{
	struct thin_pool *p = arg;
	struct list_head q;
	int rc;

	list_init(&q);
	pthread_mutex_lock(&p->fq_lock);
	while (!list_empty(&p->fq)) {
		struct bio *bio = list_first_entry(&p->fq, struct bio, link);

		list_del(&bio->link);
		list_add_tail(&bio->link, &q);
	}
	p->fq_sched = false;
	pthread_mutex_unlock(&p->fq_lock);
	rc = p->failed ? -EIO : commit(p);
	while (!list_empty(&q)) {
		struct bio *bio = list_first_entry(&q, struct bio, link);

		list_del(&bio->link);
		p->st_flushes++;
		vol_bio_end(bio, rc);
	}
}

/* Any thread. */
static int flush_queue(struct thin_pool *p, struct bio *bio)
{
	int rc = 0;

	pthread_mutex_lock(&p->fq_lock);
	if (!p->fq_sched) {
		rc = ev_send_msg(p->loop, flush_run, p);
		p->fq_sched = !rc;
	}
	if (!rc)
		list_add_tail(&bio->link, &p->fq);
	pthread_mutex_unlock(&p->fq_lock);
	return rc;
}

/* ---- asynchronous provisioning on the owner ---- */

static void owner_start(struct bio *bio);

static void owner_end(struct bio *bio, int rc)
{
	if (!rc && (bio->flags & BIO_FUA)) {
		while (flush_queue(container_of(bio->ch->bd, struct thin_vol, bd)->p, bio))
			;	/* -ENOMEM: as in vol_bio_end */
		return;
	}
	vol_bio_end(bio, rc);
}

/*
 * Chunk buffers (copies, zero fills without WRITE_ZEROES) come out of a
 * pool-wide budget (thin_open_opts.copy_mem). A bio that needs one when
 * none is left waits on p->buf_wait, holding nothing (no cell, no chunk),
 * and starts again from the beginning in its turn when one is freed.
 */
static uint8_t *buf_get(struct thin_pool *p)
{
	uint8_t *b;

	if (posix_memalign((void **)&b, 4096, p->chunk))
		return NULL;
	if (++p->bufs_used > p->bufs_peak)
		p->bufs_peak = p->bufs_used;
	return b;
}

static void buf_kick(void *arg)
{
	struct thin_pool *p = arg;

	p->buf_kick = false;
	p->buf_kicking = true;	/* the waiters go first, in order */
	while (p->bufs_used < p->bufs_max && !list_empty(&p->buf_wait)) {
		struct bio *b = list_first_entry(&p->buf_wait, struct bio, link);

		list_del(&b->link);
		owner_start(b);
	}
	p->buf_kicking = false;
}

static void buf_put(struct thin_pool *p, uint8_t *b)
{
	free(b);
	p->bufs_used--;
	if (!list_empty(&p->buf_wait) && !p->buf_kick) {
		/* later, not inside the provisioning that ends */
		while (ev_send_msg(p->loop, buf_kick, p))
			;	/* -ENOMEM: as in vol_bio_end */
		p->buf_kick = true;
	}
}

/* The provisioning is over: let go of the cell, end the bio, and start
 * the bios that waited for the chunk, in order (the first takes the cell
 * again if it needs one, the others queue behind it). */
static void prov_finish(struct bio *bio, int rc)
{
	struct vol_bio *vb = bio_ctx(bio);
	struct list_head w;

	list_del(&vb->cell);
	if (vb->buf)
		buf_put(container_of(bio->ch->bd, struct thin_vol, bd)->p, vb->buf);
	vb->buf = NULL;
	list_init(&w);
	while (!list_empty(&vb->waiters)) {
		struct bio *b = list_first_entry(&vb->waiters, struct bio, link);

		list_del(&b->link);
		list_add_tail(&b->link, &w);
	}
	owner_end(bio, rc);
	while (!list_empty(&w)) {
		struct bio *b = list_first_entry(&w, struct bio, link);

		list_del(&b->link);
		owner_start(b);
	}
}

static void prov_io_go(struct thin_pool *p, struct prov_io *io);

static void prov_insert(struct thin_pool *p, struct bio *bio);
static void prov_sub(struct thin_pool *p, struct bio *bio, enum bio_op op, uint64_t off,
		     uint64_t len, const struct iovec *iov, int iovcnt);

/* One I/O fewer in flight: go on to the next step when none is left. */
static void prov_put(struct thin_pool *p, struct bio *bio)
{
	struct vol_bio *vb = bio_ctx(bio);

	if (--vb->pending)
		return;
	if (vb->err) {
		if (sm_dec(tm_dsm(p->tm), vb->q))
			fail(p, -EUCLEAN);
		prov_finish(bio, vb->err);
		return;
	}
	if (vb->copying) {	/* the old chunk is in buf: merge, write it all */
		vb->copying = false;
		if (bio->op == BIO_WRITE)
			iov_to_buf(bio->iov, bio->iovcnt, 0, vb->buf + vb->in, vb->n);
		else
			memset(vb->buf + vb->in, 0, vb->n);
		vb->pending = 1;
		vb->biov = (struct iovec){ .iov_base = vb->buf, .iov_len = p->chunk };
		prov_sub(p, bio, BIO_WRITE, chunk_off(p, vb->q), p->chunk, &vb->biov, 1);
		prov_put(p, bio);
		return;
	}
	prov_insert(p, bio);
}

/*
 * The provisionings' data I/O runs on a thread of its own (p->ioloop, the
 * channel p->och), not on the owner's loop: the owner may block (waiting
 * for fast-path I/O to drain), and the device may make a reactor's I/O
 * wait for one of ours (a RAID stripe lock), which must then go on. The
 * owner sends each I/O there (io_submit) and gets it back when it has
 * ended (prov_io_done).
 */
static void prov_io_done(void *arg)
{
	struct prov_io *io = arg;
	struct vol_bio *vb = bio_ctx(io->bio);

	if (io->status && !vb->err)
		vb->err = io->status;
	prov_put(io->p, io->bio);
}

static void io_back(struct prov_io *io, int status)
{
	if (io->end) {
		io->end(io, status);
		return;
	}
	io->status = status;
	while (ev_send_msg(io->p->loop, prov_io_done, io))
		;	/* -ENOMEM: as in vol_bio_end */
}

static void io_submit(void *arg);

/* io thread */
static void retry_tick(struct ev_timer *t)
{
	struct thin_pool *p = container_of(t, struct thin_pool, retry_timer);
	struct list_head q;

	list_init(&q);
	while (!list_empty(&p->retry)) {
		struct prov_io *io = list_first_entry(&p->retry, struct prov_io, link);

		list_del(&io->link);
		list_add_tail(&io->link, &q);
	}
	while (!list_empty(&q)) {
		struct prov_io *io = list_first_entry(&q, struct prov_io, link);

		list_del(&io->link);
		io_submit(io);
	}
}

/* io thread */
static void io_end(struct bio *sub, int status)
{
	struct prov_io *io = sub->end_arg;
	struct thin_pool *p = io->p;

	if (!list_empty(&p->retry) && !ev_timer_armed(&p->retry_timer))
		ev_timer_start(p->ioloop, &p->retry_timer, 0, retry_tick);
	io_back(io, status);
}

/* io thread */
static void io_submit(void *arg)
{
	struct prov_io *io = arg;
	struct thin_pool *p = io->p;
	int rc = blk_rw(p->och, io->op, 0, io->iov, io->iovcnt, io->off, io->len, io_end, io);

	if (rc == -EAGAIN || rc == -ENOMEM) {	/* again when something ends */
		list_add_tail(&io->link, &p->retry);
		if (!ev_timer_armed(&p->retry_timer))
			ev_timer_start(p->ioloop, &p->retry_timer, 1000000, retry_tick);
	} else if (rc) {
		io_back(io, rc);
	}
}

/* owner */
static void prov_io_go(struct thin_pool *p, struct prov_io *io)
{
	io->p = p;
	while (ev_send_msg(p->ioloop, io_submit, io))
		;	/* -ENOMEM: as in vol_bio_end */
}

/* A bio that pinned its cache slot (fast path, or the owner's I/O in
 * flight) ended: a write is unflushed; the slot and the volume drain. */
static void slot_io_end(struct bio *bio, int status)
{
	struct thin_vol *tv = container_of(bio->ch->bd, struct thin_vol, bd);
	struct vol_bio *vb = bio_ctx(bio);

	if (bio->op == BIO_WRITE && !status)
		note_unflushed(tv->p);
	pthread_mutex_lock(&tv->lock);
	tv->inflight--;
	if (!--vb->slot->inflight && tv->waiters)
		pthread_cond_broadcast(&tv->drained);
	pthread_mutex_unlock(&tv->lock);
}

/* ---- the owner's reads and writes in place, in flight ---- */

/* io thread: as fast_end, then the bio ends as an owner bio does (a FUA
 * write goes to the batched commit); the owner is not involved. */
static void direct_end(struct prov_io *io, int status)
{
	slot_io_end(io->bio, status);
	owner_end(io->bio, status);
}

/*
 * Owner: a read of mapped chunk pc, or a write in place to it (owned), put
 * in flight like a fast-path bio: the mapping goes into vc's cache slot
 * and pins it (inflight), so everything that changes vc's mapping or takes
 * a snapshot (map_forget, map_forget_all) waits for it, and it ends on the
 * io thread without the owner. -EAGAIN: the slot is pinned by another
 * chunk's I/O (or there is no cache); do it synchronously instead.
 */
static int owner_direct(struct thin_pool *p, struct thin_vol *tv, struct bio *bio,
			uint64_t vc, uint32_t in, uint64_t pc, bool owned)
{
	struct vol_bio *vb = bio_ctx(bio);
	struct map_slot *s;

	if (!tv->map)
		return -EAGAIN;
	pthread_mutex_lock(&tv->lock);
	s = &tv->map[vc & tv->map_mask];
	if (s->inflight && (s->vc != vc || s->pc != pc)) {
		pthread_mutex_unlock(&tv->lock);
		return -EAGAIN;
	}
	s->vc = vc;
	s->pc = pc;
	s->owned = owned;
	s->gen = tv->gen;
	s->wgen = tv->wgen;
	s->inflight++;
	tv->inflight++;
	pthread_mutex_unlock(&tv->lock);
	vb->slot = s;
	p->st_owner_ios++;
	vb->io[0] = (struct prov_io){ .bio = bio, .op = bio->op, .off = chunk_off(p, pc) + in,
				      .len = bio->len, .iov = bio->iov, .iovcnt = bio->iovcnt,
				      .end = direct_end };
	prov_io_go(p, &vb->io[0]);
	return 0;
}

static void prov_sub(struct thin_pool *p, struct bio *bio, enum bio_op op, uint64_t off,
		     uint64_t len, const struct iovec *iov, int iovcnt)
{
	struct vol_bio *vb = bio_ctx(bio);
	struct prov_io *io = &vb->io[vb->pending - 1];

	*io = (struct prov_io){ .bio = bio, .op = op, .off = off, .len = len, .iov = iov,
				.iovcnt = iovcnt };
	vb->pending++;
	prov_io_go(p, io);
}

/* The data is in the new chunk: map it. */
static void prov_insert(struct thin_pool *p, struct bio *bio)
{
	struct thin_vol *tv = container_of(bio->ch->bd, struct thin_vol, bd);
	struct vol_bio *vb = bio_ctx(bio);
	struct vol_rec *r = tv->r;
	uint8_t v[8];
	int rc;

	if (p->failed || vb->vc * p->chunk >= r->size) {	/* failed, or shrunk meanwhile */
		if (sm_dec(tm_dsm(p->tm), vb->q))
			fail(p, -EUCLEAN);
		prov_finish(bio, p->failed ? -EIO : -EINVAL);
		return;
	}
	put_le64(v, vb->q << 24 | (p->time & TIME_MASK));
	rc = btree_insert(&p->minfo, r->root, vb->vc, v, &r->root);
	if (rc) {
		prov_finish(bio, fail(p, rc));
		return;
	}
	r->dirty = p->dirty = true;
	map_note(tv, vb->vc, vb->q, true);
	prov_finish(bio, 0);
}

/*
 * Start a provisioning: a new chunk q for bio's chunk, filled with what
 * the bio writes (zeros for DISCARD / WRITE_ZEROES) and, around it, the old
 * chunk's contents (a copy) or zeros; mapped when that is written. The
 * data I/Os run in flight on the owner's channel while the owner goes on
 * with other bios. 0: under way; else nothing was started.
 */
static int prov_start(struct thin_pool *p, struct thin_vol *tv, struct bio *bio,
		      uint64_t vc, uint32_t in, uint32_t n, bool mapped, uint64_t pc)
{
	struct vol_bio *vb = bio_ctx(bio);
	bool wr = bio->op == BIO_WRITE;
	uint64_t q;
	int rc;

	if (sm_nr_allocatable(tm_msm(p->tm)) < META_RESERVE)
		return -ENOSPC;
	/* the mapping is going to change: the fast path lets go of it */
	map_forget(tv, vc);
	rc = sm_alloc(tm_dsm(p->tm), &q);
	if (rc == -ENOSPC)
		LOG_RATELIMIT(LOG_WARN, LS_THIN, "%s: out of data space", p->dev->name);
	if (rc)
		return rc == -ENOSPC ? rc : fail(p, rc);
	low_space_check(p);
	vb->vc = vc;
	vb->pc = pc;
	vb->q = q;
	vb->in = in;
	vb->n = n;
	vb->mapped = mapped;
	vb->copying = false;
	vb->err = 0;
	vb->buf = NULL;
	vb->pending = 1;	/* held while issuing */
	list_init(&vb->waiters);
	list_add_tail(&vb->cell, &tv->cells);
	if (n < p->chunk && (mapped || !p->zeroes)) {
		if (!(vb->buf = buf_get(p))) {
			vb->err = -ENOMEM;
		} else if (mapped) {	/* shared: copy it first */
			vb->copying = true;
			vb->biov = (struct iovec){ .iov_base = vb->buf, .iov_len = p->chunk };
			prov_sub(p, bio, BIO_READ, chunk_off(p, pc), p->chunk, &vb->biov, 1);
		} else {		/* new: zeros around the data */
			memset(vb->buf, 0, p->chunk);
			if (wr)
				iov_to_buf(bio->iov, bio->iovcnt, 0, vb->buf + in, n);
			vb->biov = (struct iovec){ .iov_base = vb->buf, .iov_len = p->chunk };
			prov_sub(p, bio, BIO_WRITE, chunk_off(p, q), p->chunk, &vb->biov, 1);
		}
	} else {
		/* the data, straight from the bio, and the device's
		 * WRITE_ZEROES around it (or for it, when zeroing) */
		if (in)
			prov_sub(p, bio, BIO_WRITE_ZEROES, chunk_off(p, q), in, NULL, 0);
		if (in + n < p->chunk)
			prov_sub(p, bio, BIO_WRITE_ZEROES, chunk_off(p, q) + in + n,
				 p->chunk - in - n, NULL, 0);
		if (wr)
			prov_sub(p, bio, BIO_WRITE, chunk_off(p, q) + in, n, bio->iov,
				 bio->iovcnt);
		else if (p->zeroes)
			prov_sub(p, bio, BIO_WRITE_ZEROES, chunk_off(p, q) + in, n, NULL, 0);
		else if ((vb->buf = buf_get(p))) {
			memset(vb->buf, 0, p->chunk);
			vb->biov = (struct iovec){ .iov_base = vb->buf, .iov_len = n };
			prov_sub(p, bio, BIO_WRITE, chunk_off(p, q) + in, n, &vb->biov, 1);
		} else {
			vb->err = -ENOMEM;
		}
	}
	__atomic_store_n(&p->unflushed, 1, __ATOMIC_RELEASE);
	prov_put(p, bio);
	return 0;
}

static struct vol_bio *cell_find(struct thin_vol *tv, uint64_t vc)
{
	struct list_head *pos;

	list_for_each(pos, &tv->cells) {
		struct vol_bio *vb = list_entry(pos, struct vol_bio, cell);

		if (vb->vc == vc)
			return vb;
	}
	return NULL;
}

/*
 * A bio on the owner. Bios to a chunk being provisioned wait for it (the
 * cell). A write (or a zeroing) that needs a new chunk starts a
 * provisioning, in flight; the rest (reads, in-place writes, unmapping)
 * is done here and now by do_bio, as before.
 */
static void owner_start(struct bio *bio)
{
	struct thin_vol *tv = container_of(bio->ch->bd, struct thin_vol, bd);
	struct thin_pool *p = tv->p;
	struct vol_rec *r = tv->r;
	uint64_t vc = bio->offset / p->chunk, pc = 0;
	uint32_t in = (uint32_t)(bio->offset % p->chunk), t;
	struct vol_bio *h;
	bool zeroing = bio->op == BIO_DISCARD || bio->op == BIO_WRITE_ZEROES, mine;
	int rc;

	if (p->failed || bio->offset + bio->len > r->size || in + bio->len > p->chunk) {
		owner_end(bio, do_bio(p, tv, bio));	/* the errors, or more than a chunk */
		return;
	}
	h = cell_find(tv, vc);
	if (h) {
		list_add_tail(&bio->link, &h->waiters);
		return;
	}
	if (bio->op == BIO_READ || bio->op == BIO_WRITE ||
	    (zeroing && (bio->len < p->chunk || (bio->flags & BIO_NOUNMAP)))) {
		rc = map_lookup(p, r, vc, &pc, &t);
		if (rc && rc != -ENODATA) {
			owner_end(bio, fail(p, rc));
			return;
		}
		mine = !rc && owned(p, r, pc, t);
		if (bio->op == BIO_READ) {
			if (rc == -ENODATA) {	/* a hole: zeros, no I/O */
				p->st_owner_ios++;
				iov_memset(bio->iov, bio->iovcnt, 0, 0, bio->len);
				owner_end(bio, 0);
				return;
			}
			if (!owner_direct(p, tv, bio, vc, in, pc, mine))
				return;
		} else if (bio->op == BIO_WRITE && mine) {	/* in place */
			if (!owner_direct(p, tv, bio, vc, in, pc, true))
				return;
		} else if (!mine && !(zeroing && rc == -ENODATA &&
				       !(bio->flags & BIO_NOUNMAP))) {
			/* not owned, and something to write: a new chunk; one
			 * that needs a chunk buffer may have to wait for it */
			if (((bio->len < p->chunk && (!rc || !p->zeroes)) ||
			     (zeroing && !p->zeroes)) &&
			    (p->bufs_used >= p->bufs_max ||
			     (!list_empty(&p->buf_wait) && !p->buf_kicking))) {
				p->st_buf_waits++;
				list_add_tail(&bio->link, &p->buf_wait);
				return;
			}
			p->st_owner_ios++;
			rc = prov_start(p, tv, bio, vc, in, (uint32_t)bio->len, !rc, pc);
			if (rc)
				owner_end(bio, rc);
			return;
		}
	}
	owner_end(bio, do_bio(p, tv, bio));
}

static void vol_bio_run(void *arg)
{
	owner_start(arg);
}

/* ---- the fast path (the submitting reactor) ---- */

static void fast_end(struct bio *sub, int status)
{
	struct bio *bio = sub->end_arg;

	slot_io_end(bio, status);
	bio_complete(bio, status);
}

/*
 * A read of a chunk the cache knows, or a write to a chunk it knows to be
 * the volume's alone, goes straight to the pool device through this loop's
 * channel on it. 0: accepted; -EAGAIN: not here, give it to the owner.
 */
static int fast_submit(struct thin_vol *tv, struct blkchan *sub, struct bio *bio)
{
	struct thin_pool *p = tv->p;
	struct vol_bio *vb = bio_ctx(bio);
	uint64_t vc = bio->offset / p->chunk, pc = 0;
	uint32_t in = (uint32_t)(bio->offset % p->chunk);
	struct map_slot *s;
	int rc;

	if (__atomic_load_n(&p->failed, __ATOMIC_ACQUIRE))
		return -EAGAIN;
	pthread_mutex_lock(&tv->lock);
	s = &tv->map[vc & tv->map_mask];
	if (s->gen == tv->gen && s->vc == vc &&
	    (bio->op == BIO_READ || (s->owned && s->wgen == tv->wgen))) {
		s->inflight++;
		tv->inflight++;
		tv->fast_ios++;
		pc = s->pc;
	} else {
		s = NULL;
	}
	pthread_mutex_unlock(&tv->lock);
	if (!s)
		return -EAGAIN;
	vb->slot = s;
	rc = blk_rw(sub, bio->op, 0, bio->iov, bio->iovcnt, chunk_off(p, pc) + in, bio->len,
		    fast_end, bio);
	if (rc) {
		pthread_mutex_lock(&tv->lock);
		tv->inflight--;
		tv->fast_ios--;
		if (!--s->inflight && tv->waiters)
			pthread_cond_broadcast(&tv->drained);
		pthread_mutex_unlock(&tv->lock);
		return -EAGAIN;
	}
	return 0;
}

/* A map's pin on its cache slot, undone (blk_map_put): as slot_io_end for
 * a read. */
static void map_unpin(void *a, void *b)
{
	struct thin_vol *tv = a;
	struct map_slot *s = b;

	pthread_mutex_lock(&tv->lock);
	tv->inflight--;
	if (!--s->inflight && tv->waiters)
		pthread_cond_broadcast(&tv->drained);
	pthread_mutex_unlock(&tv->lock);
}

/*
 * Mapped read (blk_map_read): the part of the range in its first chunk,
 * when the cache knows the chunk, resolved by the pool device. The slot is
 * pinned exactly as by a fast-path read in flight, so until blk_map_put the
 * owner cannot change vc's mapping (map_forget waits), take a snapshot or
 * shrink (map_forget_all waits), and so cannot free chunk pc or give it to
 * another volume: every path that drops this volume's reference to pc goes
 * through those. Unmapped chunks (holes) and chunks the cache does not know
 * are -EAGAIN: the bio path reads them (and says holes are holes).
 */
static int vol_map_read(struct blkdev *bd, uint64_t offset, uint64_t len, struct blk_map *m)
{
	struct thin_vol *tv = container_of(bd, struct thin_vol, bd);
	struct thin_pool *p = tv->p;
	uint64_t vc = offset / p->chunk, pc = 0;
	uint32_t in = (uint32_t)(offset % p->chunk);
	struct map_slot *s;
	int rc;

	if (!tv->map || __atomic_load_n(&p->failed, __ATOMIC_ACQUIRE) ||
	    m->npins == BLK_MAP_PINS)
		return -EAGAIN;
	pthread_mutex_lock(&tv->lock);
	s = &tv->map[vc & tv->map_mask];
	if (s->gen == tv->gen && s->vc == vc) {
		s->inflight++;
		tv->inflight++;
		pc = s->pc;
	} else {
		s = NULL;
	}
	pthread_mutex_unlock(&tv->lock);
	if (!s)
		return -EAGAIN;
	blk_map_pin(m, map_unpin, tv, s);	/* room checked above */
	rc = blk_map_lower(p->dev, chunk_off(p, pc) + in, MIN(len, p->chunk - in), m);
	if (rc) {
		m->npins--;	/* ours, the last one */
		map_unpin(tv, s);
		return rc == -EOPNOTSUPP ? -EAGAIN : rc;
	}
	return 0;
}

static int vol_submit(struct blkdev *bd, struct blkchan *ch, struct bio *bio)
{
	struct thin_vol *tv = container_of(bd, struct thin_vol, bd);

	/* blk_submit split the bio at chunk boundaries (io_boundary) */
	if (ch->priv && tv->map && !(bio->flags & BIO_FUA) &&
	    (bio->op == BIO_READ || bio->op == BIO_WRITE) &&
	    fast_submit(tv, ch->priv, bio) == 0)
		return 0;
	if (bio->op == BIO_FLUSH)
		return flush_queue(tv->p, bio);
	return ev_send_msg(tv->p->loop, vol_bio_run, bio);
}

static bool vol_supports(struct blkdev *bd, enum bio_op op)
{
	return op < BIO_OP_MAX;
}

/* A channel on the pool device for this loop, for the fast path. Without
 * one (say an io_uring device and an epoll loop) everything goes to the
 * owner. */
static int vol_chan_create(struct blkdev *bd, struct blkchan *ch)
{
	struct thin_vol *tv = container_of(bd, struct thin_vol, bd);
	struct blkchan *sub;

	if (!blk_chan_open(tv->p->dev, ch->loop, &sub))
		ch->priv = sub;
	return 0;
}

static void vol_chan_destroy(struct blkdev *bd, struct blkchan *ch)
{
	if (ch->priv)
		blk_chan_close(ch->priv, NULL, NULL);
}

static int vol_close_owner(struct thin_pool *p, void *arg)
{
	struct thin_vol *tv = arg;

	tv->r->open = NULL;
	p->nopen--;
	p->st_fast_ios += tv->fast_ios;	/* no I/O left on it */
	return 0;
}

static void vol_close(struct blkdev *bd)
{
	struct thin_vol *tv = container_of(bd, struct thin_vol, bd);

	pool_call(tv->p, vol_close_owner, tv);
	pthread_cond_destroy(&tv->drained);
	pthread_mutex_destroy(&tv->lock);
	free(tv->map);
	free(tv);
}

static const struct blkdev_ops thin_vol_ops = {
	.name		= "thin",
	.bio_ctx_size	= sizeof(struct vol_bio),
	.close		= vol_close,
	.supports	= vol_supports,
	.chan_create	= vol_chan_create,
	.chan_destroy	= vol_chan_destroy,
	.submit		= vol_submit,
	.block_status	= thin_vol_block_status,
	.status_base	= thin_vol_status_base,
	.status_bases	= thin_vol_status_bases,
	.map_read	= vol_map_read,
};

/* ---- format, open, close ---- */

int thin_pool_format(struct blkdev *dev, const struct thin_format_opts *o)
{
	uint32_t chunk = o && o->chunk_size ? o->chunk_size : THIN_CHUNK_DEFAULT;
	uint64_t est, meta, data_off, nr;
	struct tm_geom g = { .cache_blocks = 256 };
	struct thin_pool p = { .dev = dev };
	int rc;

	if (!IS_POW2(chunk) || chunk < THIN_CHUNK_MIN || chunk > THIN_CHUNK_MAX ||
	    chunk % dev->block_size || META_BLOCK_SIZE % dev->block_size)
		return -EINVAL;
	est = dev->size / chunk;
	if (o && o->meta_size)
		meta = DIV_ROUND_UP(o->meta_size, META_BLOCK_SIZE);
	else
		meta = MAX(256, DIV_ROUND_UP(est * 48, META_BLOCK_SIZE) +
			   2 * sm_nblocks_for(est) + 64);
	data_off = DIV_ROUND_UP(meta * META_BLOCK_SIZE, chunk) * chunk;
	if (data_off >= dev->size)
		return -ENOSPC;
	nr = (dev->size - data_off) / chunk;
	if (!nr)
		return -ENOSPC;
	g.meta_nblocks = data_off / META_BLOCK_SIZE;
	g.data_nentries = nr;
	rc = blkdev_claim(dev, "thin-format");
	if (rc)
		return rc;
	rc = tm_format(dev, &g, &p.tm);
	if (rc) {
		blkdev_release(dev, "thin-format");
		return rc;
	}
	infos_init(&p);
	p.chunk = chunk;
	p.data_off = data_off;
	p.nr_chunks = nr;
	p.next_id = 1;
	rc = btree_empty(&p.vinfo, &p.vroot);
	if (!rc) {
		user_pack(&p);
		rc = tm_commit(p.tm);
	}
	tm_close(p.tm);
	blkdev_release(dev, "thin-format");
	if (!rc)
		LOG_INFO(LS_THIN, "%s: formatted, %llu chunks of %u KiB, %llu metadata blocks",
			 dev->name, (unsigned long long)nr, chunk / 1024,
			 (unsigned long long)g.meta_nblocks);
	return rc;
}

static void *owner_main(void *arg)
{
	struct thin_pool *p = arg;

	ev_run(p->loop);
	return NULL;
}

static void *io_main(void *arg)
{
	struct thin_pool *p = arg;

	ev_run(p->ioloop);
	return NULL;
}

static void io_stop(void *arg)
{
	struct thin_pool *p = arg;

	ev_timer_stop(p->ioloop, &p->retry_timer);
	ev_stop(p->ioloop);
}

static int owner_init(struct thin_pool *p, void *arg)
{
	ev_timer_start(p->loop, &p->commit_timer, p->commit_ms * 1000000ull, commit_tick);
	return 0;
}

static void pool_free(struct thin_pool *p)
{
	if (p->io_running) {	/* nothing in flight any more */
		while (ev_send_msg(p->ioloop, io_stop, p))
			;
		pthread_join(p->iothread, NULL);
	}
	free_recs(p);
	tm_close(p->tm);
	if (p->claim[0])
		blkdev_release(p->dev, p->claim);
	if (p->dch)
		blk_chan_close(p->dch, NULL, NULL);
	if (p->och)
		blk_chan_close(p->och, NULL, NULL);
	if (p->ioloop)
		ev_loop_free(p->ioloop);
	if (p->dloop)
		ev_loop_free(p->dloop);
	if (p->loop)
		ev_loop_free(p->loop);
	free(p->cbuf);
	pthread_mutex_destroy(&p->names_lock);
	pthread_mutex_destroy(&p->fq_lock);
	free(p);
}

int thin_pool_open(struct blkdev *dev, const struct thin_open_opts *o, struct thin_pool **out)
{
	struct thin_pool *p;
	const uint8_t *u;
	int rc;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->dev = dev;
	list_init(&p->vols);
	pthread_mutex_init(&p->names_lock, NULL);
	list_init(&p->fq);
	list_init(&p->retry);
	list_init(&p->buf_wait);
	pthread_mutex_init(&p->fq_lock, NULL);
	snprintf(p->claim, sizeof(p->claim), "thin:%p", (void *)p);
	rc = blkdev_claim(dev, p->claim);
	if (rc) {
		p->claim[0] = '\0';
		goto free_pool;
	}
	p->commit_ms = o && o->commit_ms ? o->commit_ms : 1000;
	p->map_slots = o && o->map_cache ? o->map_cache : 65536;
	if (p->map_slots > 1u << 30)
		p->map_slots = 1u << 30;
	while (!IS_POW2(p->map_slots))
		p->map_slots &= p->map_slots - 1;	/* round down */
	p->bufs_max = 16u << 20;	/* bytes until the chunk size is known */
	if (o && o->copy_mem)
		p->bufs_max = (unsigned)MIN(o->copy_mem, (uint64_t)UINT32_MAX);
	if (o && o->low_space) {
		p->low_water = o->low_water;
		p->low_space = o->low_space;
		p->low_space_arg = o->low_space_arg;
	}
	rc = tm_open(dev, o ? o->cache_blocks : 0, &p->tm);
	if (rc) {
		p->tm = NULL;
		goto free_pool;
	}
	u = tm_user(p->tm);
	p->chunk = get_le32(u + U_CHUNK);
	p->time = get_le32(u + U_TIME);
	p->vroot = get_le64(u + U_VROOT);
	p->next_id = get_le64(u + U_NEXT_ID);
	p->data_off = get_le64(u + U_DATA_OFF);
	p->nr_chunks = get_le64(u + U_NR_CHUNKS);
	rc = -EUCLEAN;
	if (get_le32(u + U_MAGIC) != POOL_MAGIC || get_le32(u + U_VERSION) != POOL_VERSION ||
	    !IS_POW2(p->chunk) || p->chunk < THIN_CHUNK_MIN || p->chunk > THIN_CHUNK_MAX ||
	    p->nr_chunks != sm_nentries(tm_dsm(p->tm)) ||
	    p->data_off + p->nr_chunks * p->chunk > dev->size) {
		LOG_ERR(LS_THIN, "%s: not a thin pool of a known version", dev->name);
		goto free_pool;
	}
	infos_init(p);
	rc = btree_iterate(&p->vinfo, p->vroot, 0, UINT64_MAX, load_rec, p);
	if (rc)
		goto free_pool;
	p->bufs_max = MAX(p->bufs_max / p->chunk, 1u);
	rc = posix_memalign((void **)&p->cbuf, 4096, p->chunk) ? -ENOMEM : 0;
	if (rc)
		goto free_pool;
	p->zeroes = blkdev_supports(dev, BIO_WRITE_ZEROES) && !(o && o->no_write_zeroes);
	rc = ev_loop_new(EV_AUTO, 64, &p->dloop);
	if (rc)
		goto free_pool;
	rc = blk_chan_open(dev, p->dloop, &p->dch);
	if (rc)
		goto free_pool;
	rc = ev_loop_new(EV_AUTO, 256, &p->ioloop);
	if (rc)
		goto free_pool;
	rc = blk_chan_open(dev, p->ioloop, &p->och);
	if (rc) {
		p->och = NULL;
		goto free_pool;
	}
	rc = -pthread_create(&p->iothread, NULL, io_main, p);
	if (rc)
		goto free_pool;
	p->io_running = true;
	rc = ev_loop_new(EV_EPOLL, 64, &p->loop);
	if (rc)
		goto free_pool;
	rc = -pthread_create(&p->thread, NULL, owner_main, p);
	if (rc)
		goto free_pool;
	pool_call(p, owner_init, NULL);
	*out = p;
	return 0;

free_pool:
	pool_free(p);
	return rc;
}

static int close_owner(struct thin_pool *p, void *arg)
{
	int rc;

	if (p->nopen)
		return -EBUSY;
	rc = commit(p);
	ev_timer_stop(p->loop, &p->commit_timer);
	ev_stop(p->loop);
	return rc;
}

int thin_pool_close(struct thin_pool *p)
{
	int rc = pool_call(p, close_owner, NULL);

	if (rc == -EBUSY)
		return rc;
	pthread_join(p->thread, NULL);
	pool_free(p);
	return rc;
}

static int commit_owner(struct thin_pool *p, void *arg)
{
	return commit(p);
}

int thin_pool_commit(struct thin_pool *p)
{
	return pool_call(p, commit_owner, NULL);
}

static int info_owner(struct thin_pool *p, void *arg)
{
	struct thin_pool_info *i = arg;
	struct list_head *pos;
	struct bm_stats bs;

	i->chunk_size = p->chunk;
	i->data_chunks = p->nr_chunks;
	i->free_chunks = sm_nr_free(tm_dsm(p->tm));
	i->meta_blocks = sm_nentries(tm_msm(p->tm));
	i->free_meta_blocks = sm_nr_free(tm_msm(p->tm));
	i->generation = tm_generation(p->tm);
	i->time = p->time;
	i->volumes = p->nvols;
	bm_get_stats(tm_bm(p->tm), &bs);
	i->cache_used = bs.cached;
	i->cache_peak = bs.max_cached;
	i->commits = p->st_commits;
	i->flushes = p->st_flushes;
	i->owner_ios = p->st_owner_ios;
	i->fast_ios = p->st_fast_ios;
	list_for_each(pos, &p->vols) {	/* and the open volumes' */
		struct thin_vol *tv = list_entry(pos, struct vol_rec, link)->open;

		if (!tv)
			continue;
		pthread_mutex_lock(&tv->lock);
		i->fast_ios += tv->fast_ios;
		pthread_mutex_unlock(&tv->lock);
	}
	i->copy_mem = (uint64_t)p->bufs_used * p->chunk;
	i->copy_mem_peak = (uint64_t)p->bufs_peak * p->chunk;
	i->copy_waits = p->st_buf_waits;
	i->virtual_bytes = 0;
	list_for_each(pos, &p->vols)
		i->virtual_bytes += list_entry(pos, struct vol_rec, link)->size;
	return 0;
}

int thin_pool_info(struct thin_pool *p, struct thin_pool_info *info)
{
	return pool_call(p, info_owner, info);
}

/* ---- volumes ---- */

struct vol_args {
	const char	*name, *origin;
	uint64_t	size;
	bool		readonly;
	bool		shrink;
	struct thin_vol_info *info;
	struct blkdev	**bd;
};

static int check_name(struct thin_pool *p, const char *name)
{
	size_t n = name ? strnlen(name, THIN_NAME_MAX) : 0;

	if (!n || n >= THIN_NAME_MAX)
		return -EINVAL;
	return rec_find(p, name) ? -EEXIST : 0;
}

static struct vol_rec *rec_new(struct thin_pool *p, const char *name)
{
	struct vol_rec *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->id = p->next_id++;
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->dirty = true;
	pthread_mutex_lock(&p->names_lock);
	list_add_tail(&r->link, &p->vols);
	pthread_mutex_unlock(&p->names_lock);
	p->nvols++;
	p->dirty = true;
	return r;
}

static int create_owner(struct thin_pool *p, void *arg)
{
	struct vol_args *a = arg;
	struct vol_rec *r;
	uint64_t root;
	int rc;

	if (p->failed)
		return -EIO;
	rc = check_name(p, a->name);
	if (rc)
		return rc;
	if (!a->size || a->size % p->dev->block_size || a->size / p->chunk >= 1ull << 48)
		return -EINVAL;
	if (sm_nr_allocatable(tm_msm(p->tm)) < META_RESERVE)
		return -ENOSPC;
	rc = btree_empty(&p->minfo, &root);
	if (rc)
		return fail(p, rc);
	r = rec_new(p, a->name);
	if (!r)
		return fail(p, -ENOMEM);
	r->root = root;
	r->size = a->size;
	r->snap_time = p->time;
	return commit(p);
}

int thin_vol_create(struct thin_pool *p, const char *name, uint64_t size)
{
	struct vol_args a = { .name = name, .size = size };

	return pool_call(p, create_owner, &a);
}

static int snap_owner(struct thin_pool *p, void *arg)
{
	struct vol_args *a = arg;
	struct vol_rec *o, *r;
	int rc;

	if (p->failed)
		return -EIO;
	rc = check_name(p, a->name);
	if (rc)
		return rc;
	o = rec_find(p, a->origin);
	if (!o)
		return -ENOENT;
	/* mappings keep 24 bits of time: past that, sharing could not be told */
	if (p->time >= TIME_MASK)
		return -EOVERFLOW;
	if (sm_nr_allocatable(tm_msm(p->tm)) < META_RESERVE)
		return -ENOSPC;
	/* every chunk of o becomes shared: the fast path lets go of them, and
	 * no fast write may still be landing in one the snapshot will keep */
	map_forget_all(o->open, true);
	rc = btree_share(&p->minfo, o->root);
	if (rc)
		return fail(p, rc);
	r = rec_new(p, a->name);
	if (!r)
		return fail(p, -ENOMEM);
	p->time++;
	r->root = o->root;
	r->size = o->size;
	r->flags = a->readonly ? VOL_RDONLY : 0;
	r->snap_time = o->snap_time = p->time;
	o->dirty = true;
	return commit(p);
}

int thin_snap_create(struct thin_pool *p, const char *origin, const char *name)
{
	struct vol_args a = { .name = name, .origin = origin, .readonly = true };

	return pool_call(p, snap_owner, &a);
}

int thin_clone_create(struct thin_pool *p, const char *origin, const char *name)
{
	struct vol_args a = { .name = name, .origin = origin };

	return pool_call(p, snap_owner, &a);
}

static int delete_owner(struct thin_pool *p, void *arg)
{
	struct vol_args *a = arg;
	struct vol_rec *r = rec_find(p, a->name);
	int rc;

	if (p->failed)
		return -EIO;
	if (!r)
		return -ENOENT;
	if (r->open)
		return -EBUSY;
	rc = btree_del(&p->minfo, r->root);
	if (!rc) {
		rc = btree_remove(&p->vinfo, p->vroot, r->id, &p->vroot);
		if (rc == -ENODATA)	/* created and deleted before a commit */
			rc = 0;
	}
	if (rc)
		return fail(p, rc);
	pthread_mutex_lock(&p->names_lock);
	list_del(&r->link);
	pthread_mutex_unlock(&p->names_lock);
	free(r);
	p->nvols--;
	p->dirty = true;
	return commit(p);
}

int thin_vol_delete(struct thin_pool *p, const char *name)
{
	struct vol_args a = { .name = name };

	return pool_call(p, delete_owner, &a);
}

struct key_batch {
	uint64_t	keys[256];
	unsigned	n;
};

static int collect_key(void *arg, uint64_t key, const void *value)
{
	struct key_batch *b = arg;

	b->keys[b->n++] = key;
	return b->n == ARRAY_SIZE(b->keys);
}

/* Unmap every chunk of r from first on. */
static int unmap_from(struct thin_pool *p, struct vol_rec *r, uint64_t first)
{
	struct key_batch b;
	unsigned i;
	int rc;

	do {
		b.n = 0;
		rc = btree_iterate(&p->minfo, r->root, first, UINT64_MAX, collect_key, &b);
		if (rc < 0)
			return fail(p, rc);
		for (i = 0; i < b.n; i++) {
			/* what the removals free is usable after a commit */
			if (sm_nr_allocatable(tm_msm(p->tm)) < 2 * META_RESERVE &&
			    (rc = commit(p)))
				return rc;
			rc = unmap_chunk(p, r, b.keys[i]);
			if (rc)
				return rc;
		}
	} while (b.n == ARRAY_SIZE(b.keys));
	return 0;
}

static void set_size(struct vol_rec *r, uint64_t size)
{
	r->size = size;
	if (r->open)	/* blk_submit reads it on the reactors */
		__atomic_store_n(&r->open->bd.size, size, __ATOMIC_RELEASE);
	r->dirty = true;
}

static int resize_owner(struct thin_pool *p, void *arg)
{
	struct vol_args *a = arg;
	struct vol_rec *r = rec_find(p, a->name);
	uint64_t old, pc;
	uint32_t in, t;
	int rc;

	if (p->failed)
		return -EIO;
	if (!r)
		return -ENOENT;
	if (r->flags & VOL_RDONLY)
		return -EROFS;
	if (!a->size || a->size % p->dev->block_size || a->size / p->chunk >= 1ull << 48)
		return -EINVAL;
	if (a->size == r->size)
		return 0;
	if (a->size < r->size && !a->shrink)
		return -EPERM;
	if (sm_nr_allocatable(tm_msm(p->tm)) < META_RESERVE)
		return -ENOSPC;
	/* the chunk to cut is being provisioned: its old contents would come
	 * back over the zeros (rare: the caller may try again) */
	if (a->size < r->size && a->size % p->chunk && r->open &&
	    cell_find(r->open, a->size / p->chunk))
		return -EBUSY;
	old = r->size;
	p->dirty = true;
	if (a->size > old) {
		/* nothing is mapped past the end (a shrink unmaps it) */
		set_size(r, a->size);
		return commit(p);
	}
	/* new I/O past the end is refused from here on; then no fast-path
	 * I/O is left in flight, and the owner refuses what it has queued */
	set_size(r, a->size);
	map_forget_all(r->open, false);
	in = (uint32_t)(a->size % p->chunk);
	if (in) {	/* a later grow must read zeros there */
		rc = map_lookup(p, r, a->size / p->chunk, &pc, &t);
		if (!rc)
			rc = write_seg(p, r, NULL, 0, a->size / p->chunk, in, p->chunk - in);
		else if (rc == -ENODATA)
			rc = 0;
		else
			rc = fail(p, rc);
		if (rc) {
			set_size(r, old);
			return rc;
		}
	}
	rc = unmap_from(p, r, DIV_ROUND_UP(a->size, p->chunk));
	if (rc) {
		/* a volume cut in part: still consistent, and the rest goes
		 * with the next shrink */
		LOG_ERR(LS_THIN, "%s: shrinking %s: %s", p->dev->name, r->name, strerror(-rc));
		commit(p);
		return rc;
	}
	return commit(p);
}

int thin_vol_resize(struct thin_pool *p, const char *name, uint64_t size, bool shrink)
{
	struct vol_args a = { .name = name, .size = size, .shrink = shrink };

	return pool_call(p, resize_owner, &a);
}

static int count_fn(void *arg, uint64_t key, const void *value)
{
	(*(uint64_t *)arg)++;
	return 0;
}

static int vinfo_owner(struct thin_pool *p, void *arg)
{
	struct vol_args *a = arg;
	struct vol_rec *r = rec_find(p, a->name);
	uint64_t n = 0;
	int rc;

	if (!r)
		return -ENOENT;
	rc = btree_iterate(&p->minfo, r->root, 0, UINT64_MAX, count_fn, &n);
	if (rc)
		return rc;
	a->info->id = r->id;
	a->info->size = r->size;
	a->info->readonly = r->flags & VOL_RDONLY;
	a->info->mapped_chunks = n;
	return 0;
}

int thin_vol_info(struct thin_pool *p, const char *name, struct thin_vol_info *info)
{
	struct vol_args a = { .name = name, .info = info };

	return pool_call(p, vinfo_owner, &a);
}

struct list_args {
	char		(*names)[THIN_NAME_MAX];
	unsigned	n;
};

static int list_owner(struct thin_pool *p, void *arg)
{
	struct list_args *a = arg;
	struct list_head *pos;

	a->names = calloc(p->nvols ? p->nvols : 1, THIN_NAME_MAX);
	if (!a->names)
		return -ENOMEM;
	list_for_each(pos, &p->vols) {
		struct vol_rec *r = list_entry(pos, struct vol_rec, link);

		if (a->n == p->nvols)
			break;
		memcpy(a->names[a->n++], r->name, THIN_NAME_MAX);
	}
	return 0;
}

int thin_vol_list(struct thin_pool *p, char (**names)[THIN_NAME_MAX], unsigned *n)
{
	struct list_args a = { 0 };
	int rc = pool_call(p, list_owner, &a);

	if (rc)
		return rc;
	*names = a.names;
	*n = a.n;
	return 0;
}

static int open_owner(struct thin_pool *p, void *arg)
{
	struct vol_args *a = arg;
	struct vol_rec *r = rec_find(p, a->name);
	struct thin_vol *tv;
	uint64_t n;

	if (!r)
		return -ENOENT;
	if (r->open)
		return -EBUSY;
	tv = calloc(1, sizeof(*tv));
	if (!tv)
		return -ENOMEM;
	/* a slot per chunk for small volumes, map_slots at most */
	n = p->map_slots;
	while (n > 64 && n / 2 >= DIV_ROUND_UP(r->size, p->chunk))
		n /= 2;
	tv->map = calloc(n, sizeof(*tv->map));
	if (!tv->map) {
		free(tv);
		return -ENOMEM;
	}
	tv->map_mask = n - 1;
	tv->gen = tv->wgen = 1;
	list_init(&tv->cells);
	pthread_mutex_init(&tv->lock, NULL);
	pthread_cond_init(&tv->drained, NULL);
	blkdev_init(&tv->bd, &thin_vol_ops, r->name);
	tv->bd.size = r->size;
	tv->bd.block_size = p->dev->block_size;
	tv->bd.io_boundary = p->chunk;
	tv->bd.readonly = r->flags & VOL_RDONLY;
	tv->p = p;
	tv->r = r;
	r->open = tv;
	p->nopen++;
	*a->bd = &tv->bd;
	return 0;
}

int thin_vol_open(struct thin_pool *p, const char *name, struct blkdev **out)
{
	struct vol_args a = { .name = name, .bd = out };

	return pool_call(p, open_owner, &a);
}

/* ---- for snapshot/copy.c (pool.h) ---- */

struct thin_vol *pool_vol_of(struct blkdev *bd)
{
	return bd->ops == &thin_vol_ops ? container_of(bd, struct thin_vol, bd) : NULL;
}

int pool_map_lookup(struct thin_pool *p, struct vol_rec *r, uint64_t vc, uint64_t *pc,
		    uint32_t *time)
{
	return map_lookup(p, r, vc, pc, time);
}

void pool_map_forget(struct thin_vol *tv, uint64_t vc)
{
	map_forget(tv, vc);
}

int pool_unmap_chunk(struct thin_pool *p, struct vol_rec *r, uint64_t vc)
{
	return unmap_chunk(p, r, vc);
}

int pool_fail(struct thin_pool *p, int rc)
{
	return fail(p, rc);
}

bool pool_cell_busy(struct thin_vol *tv, uint64_t vc)
{
	return tv && cell_find(tv, vc);
}
