/* SPDX-License-Identifier: MIT */
/*
 * The partial parity log (PPL) of RAID 5/6 sets, after md's raid5-ppl.
 * doc/raid.md ("No write hole") gives the argument; in short:
 *
 * Each member has a ring of log entries between its superblocks and its
 * data. Before a write to stripe S touches a member, the stripe's live
 * parity members get an entry, written with FUA: the stripe, the rows
 * [rs, re) the write covers, the set M of live data columns written in S
 * since S was last durable (a flush made every earlier write of S durable),
 * and the partial parity pp = new parity ^ parity(M columns, new data),
 * i.e. the parity of every other data column as it is now (a lost column
 * included, with the value the write gives it). Recovery (assembly of a
 * degraded set that was not shut down cleanly) replays the entries of the
 * crashed epoch in order: parity over [rs, re) := pp ^ parity(M columns as
 * they are on disk). Columns outside M did not change since S was durable,
 * so whatever subset of the writes landed (torn, block by block), parity
 * agrees with the data on disk again and a lost column reads back its
 * value as of the last logged write: never a mix.
 *
 * Which entries to replay. An entry stays valid on disk until the ring
 * wraps over it, and replaying an old entry is right as long as every
 * later write to its rows has a later entry. Partial-stripe writes and
 * every write of a degraded set are always logged; a full-stripe write of
 * a whole set is logged (a header, pp = 0) only while an older entry of the
 * stripe is still in a ring, and needs nothing otherwise (its parity is
 * the parity of what it writes). Entries carry the pool and member UUIDs and
 * the set's log epoch, raised at every assembly (after recovery), so
 * entries of earlier runs are never replayed.
 *
 * Recovery replays, per member, only the entries written after the oldest
 * one the ring overwrote (each lap of the ring is laid out from 0 without
 * holes; entries carry their lap), so a stripe's newest entry is never
 * missing while an older one is replayed; and only writes whose every entry
 * on a member present now is there (a RAID 6 write waits for both entries,
 * so one without the other never wrote anything, and replaying half of it
 * would set P to the new data and leave Q at the old).
 *
 * Ring space: an entry can be overwritten once the write it logged ended
 * and a later flush of the set completed; when the ring is full the write
 * flushes the members itself and tries again.
 *
 * Group commit: per channel and member one log write is in flight; entries
 * arriving meanwhile wait and then go out together, as one FUA write when
 * they follow each other in the ring.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "raid/raid_ppl.h"
#include "sand/log.h"

#define PPL_MAGIC	"SANDPPL1"
#define PPL_HASH	1024u

struct ppl_stripe {
	struct ppl_stripe *next;
	uint64_t	stripe;
	uint64_t	modset;		/* data columns written since durable */
	uint64_t	last_end;	/* stamp of the last write that ended */
	uint32_t	refs;		/* entries of this stripe in the rings */
	uint32_t	inflight;	/* writes between ppl_prepare and done */
};

struct ppl_ent {
	struct list_head link;		/* ring->ents, by position */
	struct list_head qlink;		/* ppl_mq.queue: waiting to be sent */
	struct raid_io	*rio;		/* while queued or being written */
	uint8_t		*buf;
	struct list_head victims;	/* entries it overwrites, released once written */
	struct ppl_stripe *st;
	uint64_t	pos, len;
	uint64_t	end;		/* 0: its write runs; else its end stamp */
	uint32_t	member;
	uint32_t	lap;		/* of its ring */
};

struct ppl_ring {
	struct list_head ents;
	uint64_t	head;
	uint32_t	lap;		/* times it wrapped, this epoch */
};

struct raid_ppl {
	pthread_mutex_t	lock;
	uint64_t	off, size;	/* the ring on each member */
	uint64_t	epoch, seq;
	uint64_t	stamp;		/* counts ended writes */
	uint64_t	durable;	/* writes stamped up to this are durable */
	struct ppl_ring	ring[RAID_MAX_MEMBERS];
	struct ppl_stripe *hash[PPL_HASH];
};

/* ---- the on-disk entry header (little endian) */
enum {
	H_MAGIC = 0, H_POOL = 8, H_MEMBER = 24, H_EPOCH = 40, H_SEQ = 48, H_STRIPE = 56,
	H_RS = 64, H_RE = 68, H_MODSET = 72, H_WHICH = 80, H_LEN = 84, H_DCRC = 88,
	H_LAP = 92, H_PMASK = 96, H_CRC = PPL_HDR - 4,
};

uint64_t ppl_default_size(uint32_t strip)
{
	uint64_t sz = 8 * ((uint64_t)strip + PPL_HDR);

	sz = (sz + 65535) / 65536 * 65536;
	return MAX(sz, (uint64_t)RAID_DATA_OFFSET - 65536);
}

static struct ppl_stripe **st_slot(struct raid_ppl *p, uint64_t stripe)
{
	struct ppl_stripe **pp = &p->hash[(stripe * 0x9e3779b97f4a7c15ull) >> 54 & (PPL_HASH - 1)];

	while (*pp && (*pp)->stripe != stripe)
		pp = &(*pp)->next;
	return pp;
}

static bool st_idle(struct raid_ppl *p, const struct ppl_stripe *st)
{
	return !st->inflight && st->last_end <= p->durable;
}

int ppl_open(struct raid *r)
{
	struct raid_ppl *p;

	if (!r->sb.ppl_size || !r->np)
		return 0;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	p->off = r->sb.ppl_offset;
	p->size = r->sb.ppl_size;
	r->sb.ppl_epoch++;
	p->epoch = r->sb.ppl_epoch;
	for (uint32_t i = 0; i < RAID_MAX_MEMBERS; i++)
		list_init(&p->ring[i].ents);
	r->ppl = p;
	return 0;
}

static void ent_free(struct ppl_ent *e)
{
	while (!list_empty(&e->victims)) {
		struct ppl_ent *v = list_entry(e->victims.next, struct ppl_ent, link);

		list_del(&v->link);
		ent_free(v);
	}
	free(e);
}

void ppl_close(struct raid *r)
{
	struct raid_ppl *p = r->ppl;

	if (!p)
		return;
	for (uint32_t i = 0; i < RAID_MAX_MEMBERS; i++)
		while (!list_empty(&p->ring[i].ents)) {
			struct ppl_ent *e = list_entry(p->ring[i].ents.next, struct ppl_ent, link);

			list_del(&e->link);
			ent_free(e);
		}
	for (uint32_t i = 0; i < PPL_HASH; i++)
		while (p->hash[i]) {
			struct ppl_stripe *st = p->hash[i];

			p->hash[i] = st->next;
			free(st);
		}
	pthread_mutex_destroy(&p->lock);
	free(p);
	r->ppl = NULL;
}

uint64_t ppl_modset(struct raid *r, uint64_t stripe)
{
	struct raid_ppl *p = r->ppl;
	struct ppl_stripe *st;
	uint64_t m = 0;

	if (!p)
		return 0;
	pthread_mutex_lock(&p->lock);
	st = *st_slot(p, stripe);
	if (st && !st_idle(p, st))
		m = st->modset;
	pthread_mutex_unlock(&p->lock);
	return m;
}

static bool reusable(struct raid_ppl *p, const struct ppl_ent *e)
{
	return e->end && e->end <= p->durable;
}

/* Where an entry of len bytes goes in the ring, or -EAGAIN. */
static int64_t ring_place(struct raid_ppl *p, struct ppl_ring *rg, uint64_t len)
{
	uint64_t at = rg->head + len > p->size ? 0 : rg->head;
	struct list_head *pos;

	if (len > p->size)
		return -EINVAL;
	list_for_each(pos, &rg->ents) {
		struct ppl_ent *e = list_entry(pos, struct ppl_ent, link);

		if (e->pos < at + len && at < e->pos + e->len && !reusable(p, e))
			return -EAGAIN;
	}
	return (int64_t)at;
}

static struct ppl_ent *ring_take(struct raid_ppl *p, struct ppl_ring *rg, uint64_t at,
				 uint64_t len, struct ppl_stripe *st)
{
	struct ppl_ent *n = calloc(1, sizeof(*n));
	struct list_head *pos, *tmp, *before = &rg->ents;

	if (!n)
		return NULL;
	list_init(&n->victims);
	n->pos = at;
	n->len = len;
	n->st = st;
	list_for_each_safe(pos, tmp, &rg->ents) {
		struct ppl_ent *e = list_entry(pos, struct ppl_ent, link);

		if (e->pos < at + len && at < e->pos + e->len) {
			list_del(&e->link);
			list_add_tail(&e->link, &n->victims);
		} else if (e->pos > at && before == &rg->ents) {
			before = &e->link;
		}
	}
	list_add_tail(&n->link, before);
	if (at < rg->head)
		rg->lap++;	/* wrapped */
	n->lap = rg->lap;
	rg->head = at + len;
	st->refs++;
	return n;
}

/* An entry is written (or will never be): what it overwrote is gone. */
static void release_victims(struct ppl_ent *e)
{
	while (!list_empty(&e->victims)) {
		struct ppl_ent *v = list_entry(e->victims.next, struct ppl_ent, link);

		list_del(&v->link);
		v->st->refs--;
		ent_free(v);
	}
}

static void hdr_encode(uint8_t *h, const struct raid *r, uint32_t m, uint32_t lap,
		       uint32_t pmask, uint64_t seq,
		       uint64_t stripe, uint32_t rs, uint32_t re, uint64_t modset,
		       uint32_t which, uint32_t len, const uint8_t *data)
{
	memset(h, 0, PPL_HDR);
	memcpy(h + H_MAGIC, PPL_MAGIC, 8);
	memcpy(h + H_POOL, r->sb.pool_uuid, 16);
	memcpy(h + H_MEMBER, r->sb.members[m].uuid, 16);
	put_le64(h + H_EPOCH, r->ppl->epoch);
	put_le64(h + H_SEQ, seq);
	put_le64(h + H_STRIPE, stripe);
	put_le32(h + H_RS, rs);
	put_le32(h + H_RE, re);
	put_le64(h + H_MODSET, modset);
	put_le32(h + H_WHICH, which);
	put_le32(h + H_LEN, len);
	put_le32(h + H_DCRC, len ? raid_crc32c(data, len) : 0);
	put_le32(h + H_LAP, lap);
	put_le32(h + H_PMASK, pmask);
	put_le32(h + H_CRC, raid_crc32c(h, H_CRC));
}

static void untrack(struct raid_io *rio, bool ended)
{
	struct raid_ppl *p = rio->r->ppl;
	uint64_t stamp;

	pthread_mutex_lock(&p->lock);
	stamp = ++p->stamp;
	if (rio->ppl_st) {
		rio->ppl_st->inflight--;
		if (ended)
			rio->ppl_st->last_end = stamp;
	}
	for (int i = 0; i < 2; i++) {
		struct ppl_ent *e = rio->ppl_ent[i];

		if (!e)
			continue;
		e->end = stamp;
		release_victims(e);
		rio->ppl_ent[i] = NULL;
	}
	rio->ppl_st = NULL;
	pthread_mutex_unlock(&p->lock);
	free(rio->ppl_buf);
	rio->ppl_buf = NULL;
}

int ppl_prepare(struct raid_io *rio, bool full)
{
	struct raid *r = rio->r;
	struct raid_ppl *p = r->ppl;
	struct ppl_stripe *st, **slot;
	uint32_t len = rio->re - rio->rs, plog[2], nlog = 0, pmask = 0;
	uint64_t alive = 0, written = 0, modset, seq;
	uint64_t entlen, datalen;
	int64_t at[2];
	bool lost = false;
	uint8_t *src[MAXCOLS + 2];

	if (!p)
		return 0;
	for (uint32_t j = 0; j < r->k; j++) {
		if (!raid_alive(r, rio->cols[j])) {
			lost = true;
			continue;
		}
		alive |= 1ull << j;
		if (full || rio->hi[j] > rio->lo[j])
			written |= 1ull << j;
	}
	for (uint32_t q = 0; q < r->np; q++)
		if (raid_alive(r, rio->cols[r->k + q]))
			plog[nlog++] = q;
	pthread_mutex_lock(&p->lock);
	slot = st_slot(p, rio->stripe);
	st = *slot;
	if (!st) {
		st = calloc(1, sizeof(*st));
		if (!st) {
			pthread_mutex_unlock(&p->lock);
			return -ENOMEM;
		}
		st->stripe = rio->stripe;
		*slot = st;
	}
	if (st_idle(p, st))
		st->modset = 0;
	st->modset |= written;
	modset = st->modset & alive;
	if (!nlog || (full && !lost && !st->refs)) {
		st->inflight++;
		rio->ppl_st = st;
		pthread_mutex_unlock(&p->lock);
		return 0;
	}
	/* pp is zero when every data column is live and in M */
	datalen = modset == alive && !lost ? 0 : len;
	entlen = PPL_HDR + (datalen + PPL_HDR - 1) / PPL_HDR * PPL_HDR;	/* 4 KiB aligned */
	for (uint32_t i = 0; i < nlog; i++) {
		at[i] = ring_place(p, &p->ring[rio->cols[r->k + plog[i]]], entlen);
		if (at[i] < 0) {
			pthread_mutex_unlock(&p->lock);
			return (int)at[i];
		}
	}
	rio->ppl_buf = aligned_alloc(4096, nlog * entlen);
	if (!rio->ppl_buf) {
		pthread_mutex_unlock(&p->lock);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < nlog; i++) {
		uint32_t m = rio->cols[r->k + plog[i]];

		rio->ppl_ent[i] = ring_take(p, &p->ring[m], (uint64_t)at[i], entlen, st);
		if (!rio->ppl_ent[i])
			break;
		rio->ppl_ent[i]->member = m;
	}
	st->inflight++;
	rio->ppl_st = st;
	seq = ++p->seq;
	pthread_mutex_unlock(&p->lock);
	if (!rio->ppl_ent[nlog - 1]) {
		ppl_cancel(rio);
		return -ENOMEM;
	}

	/* pp = new parity ^ parity of the M columns (zero for the others) */
	if (datalen) {
		memset(rio->zero, 0, len);
		for (uint32_t j = 0; j < r->k; j++)
			src[j] = modset & (1ull << j) ? rio->d[j] : rio->zero;
		for (uint32_t q = 0; q < r->np; q++)
			src[r->k + q] = rio->o[r->k + q];
		if (raid_parity_gen((int)r->np, (int)r->k, len, src)) {
			ppl_cancel(rio);
			return -EIO;
		}
	}
	for (uint32_t i = 0; i < nlog; i++)
		pmask |= 1u << plog[i];
	for (uint32_t i = 0; i < nlog; i++) {
		uint8_t *h = rio->ppl_buf + i * entlen, *data = h + PPL_HDR;
		uint32_t q = plog[i];

		if (datalen) {
			const uint64_t *a = (const uint64_t *)(const void *)rio->d[r->k + q];
			const uint64_t *b = (const uint64_t *)(const void *)rio->o[r->k + q];
			uint64_t *o = (uint64_t *)(void *)data;

			for (uint32_t w = 0; w < len / 8; w++)
				o[w] = a[w] ^ b[w];
		}
		hdr_encode(h, r, rio->ppl_ent[i]->member, rio->ppl_ent[i]->lap, pmask, seq,
			   rio->stripe,
			   rio->rs, rio->re,
			   modset, q, (uint32_t)datalen, data);
	}
	return 1;
}

/* ---- group commit: per channel and member, one log write at a time */

#define PPL_GROUP_MAX	(1024u * 1024)	/* bytes in one grouped write */
#define PPL_GROUP_RETRY	(50 * 1000)	/* ns, after -EAGAIN */

struct ppl_group {
	struct ppl_chan	*pc;
	struct raid_chan *rc;
	uint32_t	member;
	struct raid	*r;
	struct blkchan	*ch;
	struct bio	*bio;		/* waiting for a retry */
	struct ev_timer	timer;
	struct ppl_ent	**ents;
	unsigned	n;
	uint8_t		*buf;		/* NULL: the one entry's own buffer */
};

struct ppl_mq {
	bool		busy;		/* a group is being written */
	struct list_head queue;
};

struct ppl_chan {
	struct ppl_mq	mq[RAID_MAX_MEMBERS];
};

void ppl_chan_free(struct raid_chan *rc)
{
	free(rc->ppl);
	rc->ppl = NULL;
}

static void mq_kick(struct raid *r, struct ppl_chan *pc, struct raid_chan *rc, uint32_t m);

static void group_end(struct bio *b, int status)
{
	struct ppl_group *g = b->end_arg;
	struct ppl_chan *pc = g->pc;
	struct raid *r = g->r;
	struct raid_chan *rc = g->rc;

	/* The next group goes first: a write's completion may run I/O to the
	 * set to its end inside it (a nested loop), and that I/O's entries
	 * must not wait for this function to return. */
	pc->mq[g->member].busy = false;
	if (!list_empty(&pc->mq[g->member].queue))
		mq_kick(r, pc, rc, g->member);
	for (unsigned i = 0; i < g->n; i++) {
		struct raid_io *rio = g->ents[i]->rio;

		g->ents[i]->rio = NULL;
		if (status)
			raid_member_io_error(rio, g->ch->bd, status);
		else
			rio->nok++;
		if (--rio->pending == 0)
			rio->next(rio);
	}
	free(g->buf);
	free(g->ents);
	free(g);
}

static void group_retry(struct ev_timer *t);

static void group_submit(struct ppl_group *g)
{
	int rc = blk_submit(g->ch, g->bio);

	if (rc == -EAGAIN || rc == -ENOMEM) {
		ev_timer_start(g->ch->loop, &g->timer, PPL_GROUP_RETRY, group_retry);
		return;
	}
	if (rc) {
		struct bio *b = g->bio;

		b->autofree = false;
		group_end(b, rc);
		bio_free(b);
	}
}

static void group_retry(struct ev_timer *t)
{
	group_submit(container_of(t, struct ppl_group, timer));
}

/* Send what waits for member m as one write: the queue's head, and the
 * entries after it that follow it in the ring. */
static void mq_kick(struct raid *r, struct ppl_chan *pc, struct raid_chan *rc, uint32_t m)
{
	struct ppl_mq *mq = &pc->mq[m];
	struct ppl_group *g = calloc(1, sizeof(*g));
	struct list_head *pos;
	struct ppl_ent *first = list_entry(mq->queue.next, struct ppl_ent, qlink);
	uint64_t len = 0, next = first->pos;
	unsigned n = 0;

	list_for_each(pos, &mq->queue) {
		struct ppl_ent *e = list_entry(pos, struct ppl_ent, qlink);

		if (n && (e->pos != next || len + e->len > PPL_GROUP_MAX))
			break;
		len += e->len;
		next += e->len;
		n++;
	}
	if (g)
		g->ents = calloc(n, sizeof(*g->ents));
	if (g && g->ents && n > 1)
		g->buf = aligned_alloc(4096, len);
	if (!g || !g->ents || (n > 1 && !g->buf) || !rc->mch[m] ||
	    rc->mch[m]->bd != __atomic_load_n(&r->members[m], __ATOMIC_ACQUIRE) ||
	    !(g->bio = bio_alloc(rc->mch[m]))) {
		/* no grouping: each entry as a member bio of its own write */
		if (g) {
			free(g->buf);
			free(g->ents);
			free(g);
		}
		while (!list_empty(&mq->queue)) {
			struct ppl_ent *e = list_entry(mq->queue.next, struct ppl_ent, qlink);
			struct raid_io *rio = e->rio;

			list_del(&e->qlink);
			e->rio = NULL;
			member_bio_at(rio, m, BIO_WRITE, BIO_FUA, r->ppl->off + e->pos, e->len,
				      e->buf);
			if (--rio->pending == 0)	/* the placeholder */
				rio->next(rio);
		}
		return;
	}
	g->pc = pc;
	g->rc = rc;
	g->member = m;
	g->r = r;
	g->ch = rc->mch[m];
	for (unsigned i = 0; i < n; i++) {
		struct ppl_ent *e = list_entry(mq->queue.next, struct ppl_ent, qlink);

		list_del(&e->qlink);
		g->ents[g->n++] = e;
		if (g->buf)
			memcpy(g->buf + (e->pos - first->pos), e->buf, e->len);
	}
	mq->busy = true;
	g->bio->op = BIO_WRITE;
	g->bio->flags = BIO_FUA;
	g->bio->offset = r->ppl->off + first->pos;
	g->bio->len = len;
	g->bio->iov_inline[0].iov_base = g->buf ? g->buf : first->buf;
	g->bio->iov_inline[0].iov_len = len;
	g->bio->iov = g->bio->iov_inline;
	g->bio->iovcnt = 1;
	g->bio->end = group_end;
	g->bio->end_arg = g;
	g->bio->autofree = true;
	group_submit(g);
}

void ppl_submit(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct raid_chan *rc = rio->rc;

	if (!rc->ppl)
		rc->ppl = calloc(1, sizeof(*rc->ppl));
	for (int i = 0; i < 2; i++) {
		struct ppl_ent *e = rio->ppl_ent[i];
		struct ppl_mq *mq;

		if (!e)
			continue;
		if (!rc->ppl) {
			member_bio_at(rio, e->member, BIO_WRITE, BIO_FUA, r->ppl->off + e->pos,
				      e->len, rio->ppl_buf + (size_t)i * e->len);
			continue;
		}
		mq = &rc->ppl->mq[e->member];
		if (!mq->queue.next)
			list_init(&mq->queue);
		e->rio = rio;
		e->buf = rio->ppl_buf + (size_t)i * e->len;
		rio->pending++;		/* until its group's write ends */
		list_add_tail(&e->qlink, &mq->queue);
		if (!mq->busy)
			mq_kick(r, rc->ppl, rc, e->member);
	}
}

void ppl_cancel(struct raid_io *rio)
{
	if (rio->r->ppl)
		untrack(rio, false);
}

void ppl_done(struct raid_io *rio)
{
	if (rio->r->ppl)
		untrack(rio, true);
}

int ppl_rows_track(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct raid_ppl *p = r->ppl;
	uint64_t all = (1ull << r->k) - 1;

	if (!p)
		return 0;
	pthread_mutex_lock(&p->lock);
	for (uint64_t s = rio->stripe; s < rio->stripe + rio->rows; s++) {
		struct ppl_stripe *st = *st_slot(p, s);

		if (st && st->refs) {
			pthread_mutex_unlock(&p->lock);
			return -EBUSY;
		}
	}
	for (uint64_t s = rio->stripe; s < rio->stripe + rio->rows; s++) {
		struct ppl_stripe **slot = st_slot(p, s);

		if (*slot)
			continue;
		*slot = calloc(1, sizeof(**slot));
		if (!*slot) {
			pthread_mutex_unlock(&p->lock);
			return -ENOMEM;		/* the ones made are idle: freed later */
		}
		(*slot)->stripe = s;
	}
	for (uint64_t s = rio->stripe; s < rio->stripe + rio->rows; s++) {
		struct ppl_stripe *st = *st_slot(p, s);

		if (st_idle(p, st))
			st->modset = 0;
		st->modset |= all;
		st->inflight++;
	}
	pthread_mutex_unlock(&p->lock);
	return 0;
}

void ppl_rows_done(struct raid_io *rio, bool ended)
{
	struct raid_ppl *p = rio->r->ppl;
	uint64_t stamp;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	stamp = ++p->stamp;
	for (uint64_t s = rio->stripe; s < rio->stripe + rio->rows; s++) {
		struct ppl_stripe *st = *st_slot(p, s);

		st->inflight--;
		if (ended)
			st->last_end = stamp;
	}
	pthread_mutex_unlock(&p->lock);
}

uint64_t ppl_flush_mark(struct raid *r)
{
	uint64_t m = 0;

	if (!r->ppl)
		return 0;
	pthread_mutex_lock(&r->ppl->lock);
	m = r->ppl->stamp;
	pthread_mutex_unlock(&r->ppl->lock);
	return m;
}

void ppl_durable(struct raid *r, uint64_t mark)
{
	struct raid_ppl *p = r->ppl;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	if (mark > p->durable)
		p->durable = mark;
	/* forget stripes that are durable, idle and out of the rings */
	for (uint32_t i = 0; i < PPL_HASH; i++) {
		struct ppl_stripe **pp = &p->hash[i];

		while (*pp) {
			struct ppl_stripe *st = *pp;

			if (!st->refs && st_idle(p, st)) {
				*pp = st->next;
				free(st);
			} else {
				pp = &st->next;
			}
		}
	}
	pthread_mutex_unlock(&p->lock);
}

/* ------------------------------------------------------------ recovery */

struct rec_ent {
	uint64_t	seq, stripe, modset, pos, end;
	uint32_t	member, rs, re, which, len, lap, pmask;
	const uint8_t	*data;
};

static int rec_cmp(const void *a, const void *b)
{
	const struct rec_ent *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * Of one member's entries ents[first..n): keep those written after the
 * oldest one overwritten, so that a stripe's newest entry is never missing
 * while an older one is replayed. Each lap of the ring is laid out from 0
 * without holes, so with L the last lap: every entry of lap L, and those of
 * lap L - 1 past the end of lap L (older laps are gone, or left in the
 * hole at the end of a lap). Returns the new count.
 */
static size_t ring_suffix(struct rec_ent *ents, size_t first, size_t n)
{
	uint32_t last = 0;
	uint64_t end = 0;
	size_t k = first;

	for (size_t i = first; i < n; i++)
		last = MAX(last, ents[i].lap);
	for (size_t i = first; i < n; i++)
		if (ents[i].lap == last)
			end = MAX(end, ents[i].end);
	for (size_t i = first; i < n; i++)
		if (ents[i].lap == last || (last && ents[i].lap == last - 1 && ents[i].pos >= end))
			ents[k++] = ents[i];
	return k;
}

static bool hdr_valid(const uint8_t *h, const struct raid_sb *sb, uint32_t m, uint64_t room,
		      struct rec_ent *e)
{
	if (memcmp(h + H_MAGIC, PPL_MAGIC, 8) || get_le32(h + H_CRC) != raid_crc32c(h, H_CRC) ||
	    memcmp(h + H_POOL, sb->pool_uuid, 16) || memcmp(h + H_MEMBER, sb->members[m].uuid, 16) ||
	    get_le64(h + H_EPOCH) != sb->ppl_epoch)
		return false;
	e->seq = get_le64(h + H_SEQ);
	e->stripe = get_le64(h + H_STRIPE);
	e->rs = get_le32(h + H_RS);
	e->re = get_le32(h + H_RE);
	e->modset = get_le64(h + H_MODSET);
	e->which = get_le32(h + H_WHICH);
	e->len = get_le32(h + H_LEN);
	e->member = m;
	e->lap = get_le32(h + H_LAP);
	e->pmask = get_le32(h + H_PMASK);
	e->data = h + PPL_HDR;
	if (e->rs >= e->re || e->re > sb->geom.strip || e->which > 1 ||
	    !(e->pmask & (1u << e->which)) || e->pmask > 3 ||
	    e->stripe >= sb->geom.member_size / sb->geom.strip ||
	    (e->len && e->len != e->re - e->rs) || PPL_HDR + (uint64_t)e->len > room)
		return false;
	return !e->len || get_le32(h + H_DCRC) == raid_crc32c(e->data, e->len);
}

/*
 * A write logged on both parity members (RAID 6) whose entry on a member
 * present now is missing never wrote anything (it waited for both): replaying
 * the other entry alone would set one parity to the new data and leave the
 * other at the old. ents is sorted by sequence: a write's entries are
 * neighbours.
 */
static bool complete(const struct raid_sb *sb, struct blkdev **slots,
		     const struct rec_ent *ents, size_t n, size_t i, uint32_t k)
{
	uint32_t cols[MAXCOLS];

	raid_stripe_cols(&sb->geom, ents[i].stripe, cols);
	for (uint32_t q = 0; q < 2; q++) {
		bool found = false;

		if (!(ents[i].pmask & (1u << q)) || !slots[cols[k + q]])
			continue;
		for (size_t j = i; j > 0 && ents[j - 1].seq == ents[i].seq && !found; j--)
			found = ents[j - 1].which == q && ents[j - 1].stripe == ents[i].stripe;
		for (size_t j = i; j < n && ents[j].seq == ents[i].seq && !found; j++)
			found = ents[j].which == q && ents[j].stripe == ents[i].stripe;
		if (!found)
			return false;
	}
	return true;
}

/* Replay one entry: parity `which` over [rs, re) := pp ^ parity(M on disk). */
static int replay(const struct raid_sb *sb, struct blkdev **slots, const struct rec_ent *e,
		  uint32_t k, uint32_t np)
{
	uint32_t cols[MAXCOLS], len = e->re - e->rs;
	uint64_t moff = sb->data_offset + e->stripe * sb->geom.strip + e->rs;
	uint8_t *mem, *src[MAXCOLS + 2];
	int rc = 0;

	raid_stripe_cols(&sb->geom, e->stripe, cols);
	if (cols[k + e->which] != e->member)
		return -EINVAL;
	for (uint32_t j = 0; j < k; j++)
		if ((e->modset & (1ull << j)) && !slots[cols[j]]) {
			LOG_WARN(LS_RAID, "%s: stripe %llu: a column written at the crash is "
				 "missing: its parity is left as it is", sb->name,
				 (unsigned long long)e->stripe);
			return 0;
		}
	mem = aligned_alloc(64, (size_t)len * (k + 3));
	if (!mem)
		return -ENOMEM;
	memset(mem, 0, (size_t)len * (k + 3));
	for (uint32_t j = 0; j < k + np; j++)
		src[j] = mem + (size_t)j * len;
	for (uint32_t j = 0; j < k && !rc; j++)
		if (e->modset & (1ull << j))
			rc = blk_sync_io(slots[cols[j]], BIO_READ, 0, moff, src[j], len);
	if (!rc)
		rc = raid_parity_gen((int)np, (int)k, len, src);
	if (!rc) {
		uint8_t *out = src[k + e->which];

		if (e->len)
			for (uint32_t b = 0; b < len; b++)
				out[b] ^= e->data[b];
		rc = blk_sync_io(slots[e->member], BIO_WRITE, 0, moff, out, len);
	}
	free(mem);
	return rc;
}

int ppl_recover(const struct raid_sb *sb, struct blkdev **slots)
{
	uint32_t n = sb->geom.nmembers, k, np;
	struct rec_ent *ents = NULL;
	uint8_t *rings[RAID_MAX_MEMBERS] = { NULL };
	size_t nents = 0, cap = 0, done = 0, first = 0, skipped = 0;
	int rc = 0;

	if (!sb->ppl_size || (sb->geom.level != RAID_LEVEL_5 && sb->geom.level != RAID_LEVEL_6))
		return 0;
	np = sb->geom.level == RAID_LEVEL_5 ? 1 : 2;
	k = n - np;
	for (uint32_t m = 0; m < n && !rc; m++) {
		if (!slots[m])
			continue;
		rings[m] = aligned_alloc(4096, sb->ppl_size);
		if (!rings[m]) {
			rc = -ENOMEM;
			break;
		}
		rc = blk_sync_io(slots[m], BIO_READ, 0, sb->ppl_offset, rings[m], sb->ppl_size);
		for (uint64_t pos = 0; !rc && pos + PPL_HDR <= sb->ppl_size;) {
			struct rec_ent e;

			if (!hdr_valid(rings[m] + pos, sb, m, sb->ppl_size - pos, &e)) {
				pos += PPL_HDR;
				continue;
			}
			if (nents == cap) {
				struct rec_ent *ne = realloc(ents, (cap ? cap * 2 : 64) * sizeof(*ne));

				if (!ne) {
					rc = -ENOMEM;
					break;
				}
				ents = ne;
				cap = cap ? cap * 2 : 64;
			}
			e.pos = pos;
			pos += PPL_HDR + ((uint64_t)e.len + PPL_HDR - 1) / PPL_HDR * PPL_HDR;
			e.end = pos;
			ents[nents++] = e;
		}
		if (!rc)
			nents = ring_suffix(ents, first, nents);
		first = nents;
	}
	if (!rc && nents)
		qsort(ents, nents, sizeof(*ents), rec_cmp);
	for (size_t i = 0; i < nents && !rc; i++) {
		if (!complete(sb, slots, ents, nents, i, k)) {
			skipped++;
			continue;
		}
		LOG_DBG(LS_RAID, "%s: replay seq %llu member %u lap %u pos %llu stripe %llu "
			"rows %u-%u parity %u M %llx len %u", sb->name,
			(unsigned long long)ents[i].seq, ents[i].member, ents[i].lap,
			(unsigned long long)ents[i].pos, (unsigned long long)ents[i].stripe,
			ents[i].rs, ents[i].re, ents[i].which,
			(unsigned long long)ents[i].modset, ents[i].len);
		rc = replay(sb, slots, &ents[i], k, np);
		if (rc == -EINVAL)
			rc = 0;		/* not this member's parity: stale */
		else if (!rc)
			done++;
	}
	for (uint32_t m = 0; m < n && !rc; m++)
		if (slots[m])
			rc = blk_sync_io(slots[m], BIO_FLUSH, 0, 0, NULL, 0);
	for (uint32_t m = 0; m < n; m++)
		free(rings[m]);
	free(ents);
	if (rc) {
		LOG_ERR(LS_RAID, "%s: partial parity log recovery failed: %s", sb->name,
			strerror(-rc));
		return rc;
	}
	LOG_INFO(LS_RAID, "%s: partial parity log: %zu entries replayed, %zu of writes that "
		 "never started", sb->name, done, skipped);
	return (int)done;
}
