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
 * a mapping written since is the volume's own and is written in place. The
 * data is written before the mapping is inserted, and the mapping is only
 * durable with the next commit, so after a crash the old mapping, and the
 * old chunk it points at, are still there.
 *
 * Threads. Everything here runs on the pool's owner thread, one bio at a
 * time, with synchronous metadata and data I/O through private loops: a
 * volume's submit sends the bio there as a message and the owner sends the
 * completion back to the channel's loop. Because the owner handles one bio
 * from start to end before the next, no two bios ever provision or copy the
 * same chunk at once; the fast path (lookups and I/O of owned chunks on the
 * submitting reactor, with cells holding later bios to a chunk being
 * provisioned) is the next step and needs the cells then.
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

struct vol_bio {
	int	status;
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

static uint64_t chunk_off(struct thin_pool *p, uint64_t pc)
{
	return p->data_off + pc * p->chunk;
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
		p->failed = rc;
	}
	return rc;
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
		if (!p->unflushed)
			return 0;
		rc = data_io(p, BIO_FLUSH, 0, NULL, 0);
		if (!rc)
			p->unflushed = false;
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
	rc = tm_commit(p->tm);
	if (rc)
		return fail(p, rc);
	p->dirty = p->unflushed = false;
	low_space_check(p);	/* space freed by the transaction may rearm it */
	return 0;
}

static void commit_tick(struct ev_timer *t)
{
	struct thin_pool *p = container_of(t, struct thin_pool, commit_timer);

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
	if (mapped && t >= r->snap_time) {	/* ours: in place */
		fill(p, bio, skip, 0, n);
		p->unflushed = true;
		return data_io(p, BIO_WRITE, chunk_off(p, pc) + in, p->cbuf, n);
	}
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
	return 0;
}

static int unmap_chunk(struct thin_pool *p, struct vol_rec *r, uint64_t vc)
{
	int rc;

	if (sm_nr_allocatable(tm_msm(p->tm)) < META_RESERVE)
		return -ENOSPC;
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
	if (!rc && (bio->flags & BIO_FUA))
		rc = commit(p);
	return rc;
}

static void vol_bio_done(void *arg)
{
	struct bio *bio = arg;
	struct vol_bio *vb = bio_ctx(bio);

	bio_complete(bio, vb->status);
}

static void vol_bio_run(void *arg)
{
	struct bio *bio = arg;
	struct thin_vol *tv = container_of(bio->ch->bd, struct thin_vol, bd);
	struct vol_bio *vb = bio_ctx(bio);

	vb->status = do_bio(tv->p, tv, bio);
	while (ev_send_msg(bio->ch->loop, vol_bio_done, bio))
		;	/* -ENOMEM: nothing else to do but try again */
}

static int vol_submit(struct blkdev *bd, struct blkchan *ch, struct bio *bio)
{
	struct thin_vol *tv = container_of(bd, struct thin_vol, bd);

	return ev_send_msg(tv->p->loop, vol_bio_run, bio);
}

static bool vol_supports(struct blkdev *bd, enum bio_op op)
{
	return op < BIO_OP_MAX;
}

static int vol_chan_create(struct blkdev *bd, struct blkchan *ch)
{
	return 0;
}

static void vol_chan_destroy(struct blkdev *bd, struct blkchan *ch)
{
}

static int vol_close_owner(struct thin_pool *p, void *arg)
{
	struct thin_vol *tv = arg;

	tv->r->open = NULL;
	p->nopen--;
	return 0;
}

static void vol_close(struct blkdev *bd)
{
	struct thin_vol *tv = container_of(bd, struct thin_vol, bd);

	pool_call(tv->p, vol_close_owner, tv);
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

static int start_timer(struct thin_pool *p, void *arg)
{
	ev_timer_start(p->loop, &p->commit_timer, p->commit_ms * 1000000ull, commit_tick);
	return 0;
}

static void pool_free(struct thin_pool *p)
{
	free_recs(p);
	tm_close(p->tm);
	if (p->claim[0])
		blkdev_release(p->dev, p->claim);
	if (p->dch)
		blk_chan_close(p->dch, NULL, NULL);
	if (p->dloop)
		ev_loop_free(p->dloop);
	if (p->loop)
		ev_loop_free(p->loop);
	free(p->cbuf);
	pthread_mutex_destroy(&p->names_lock);
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
	snprintf(p->claim, sizeof(p->claim), "thin:%p", (void *)p);
	rc = blkdev_claim(dev, p->claim);
	if (rc) {
		p->claim[0] = '\0';
		goto free_pool;
	}
	p->commit_ms = o && o->commit_ms ? o->commit_ms : 1000;
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
	rc = ev_loop_new(EV_EPOLL, 64, &p->loop);
	if (rc)
		goto free_pool;
	rc = -pthread_create(&p->thread, NULL, owner_main, p);
	if (rc)
		goto free_pool;
	pool_call(p, start_timer, NULL);
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

	if (!r)
		return -ENOENT;
	if (r->open)
		return -EBUSY;
	tv = calloc(1, sizeof(*tv));
	if (!tv)
		return -ENOMEM;
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
