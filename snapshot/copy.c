/* SPDX-License-Identifier: MIT */
/*
 * Range copy by sharing chunks (thin_vol_copy_range, for SCSI EXTENDED
 * COPY): the destination's mappings for the range are replaced by the
 * source's, each shared chunk gaining a reference. It runs on the owner
 * thread as one message, like any mapping change:
 *
 *  - a provisioning in flight on a chunk of either range (its cell) makes
 *    the whole copy give up with -EAGAIN before anything changes: such a
 *    chunk is between two mappings, and the caller copies with reads and
 *    writes instead (those wait on the cell as any bio does);
 *  - the fast path lets go of every destination chunk before its mapping
 *    changes, and of every source chunk before it becomes shared (a write
 *    in place to it would otherwise land in both volumes); then a write to
 *    either goes to the owner, which sees a count above one (owned() in
 *    pool.c) and copies the chunk first;
 *  - nothing is allocated, so there is nothing to leak on a crash; the new
 *    mappings and counts are committed with everything else.
 *
 * Within one volume with the destination above the source, chunks are
 * remapped from the end, as memmove copies.
 */
#include <errno.h>
#include <stdlib.h>
#include "sand/log.h"
#include "sand/thin.h"
#include "snapshot/meta/meta.h"
#include "snapshot/pool.h"

struct copy_work {
	struct thin_pool	*p;
	struct thin_vol		*src, *dst;
	uint64_t		svc, dvc, n;	/* chunks */
	struct ev_loop		*loop;
	void			(*done)(void *arg, int rc);
	void			*arg;
	int			rc;
};

uint32_t thin_vol_chunk(struct blkdev *bd)
{
	struct thin_vol *tv = pool_vol_of(bd);

	return tv ? tv->p->chunk : 0;
}

bool thin_vol_same_pool(struct blkdev *a, struct blkdev *b)
{
	struct thin_vol *ta = pool_vol_of(a), *tb = pool_vol_of(b);

	return ta && tb && ta->p == tb->p;
}

/* Give dst's chunk dvc src's mapping of svc. */
static int share_chunk(struct thin_pool *p, struct thin_vol *src, uint64_t svc,
		       struct thin_vol *dst, uint64_t dvc)
{
	uint64_t pc;
	uint32_t t;
	uint8_t v[8];
	int rc;

	if (src == dst && svc == dvc)
		return 0;
	rc = pool_map_lookup(p, src->r, svc, &pc, &t);
	if (rc == -ENODATA)
		return pool_unmap_chunk(p, dst->r, dvc);
	if (rc)
		return pool_fail(p, rc);
	if (sm_nr_allocatable(tm_msm(p->tm)) < META_RESERVE)
		return -ENOSPC;
	pool_map_forget(src, svc);
	pool_map_forget(dst, dvc);
	rc = sm_inc(tm_dsm(p->tm), pc);
	if (rc)
		return pool_fail(p, rc);
	/* the tree takes the reference; time now: sharing is told by the count */
	put_le64(v, pc << 24 | (p->time & TIME_MASK));
	rc = btree_insert(&p->minfo, dst->r->root, dvc, v, &dst->r->root);
	if (rc)
		return pool_fail(p, rc);
	dst->r->dirty = p->dirty = true;
	return 0;
}

static void copy_done(void *arg)
{
	struct copy_work *w = arg;

	w->done(w->arg, w->rc);
	free(w);
}

static void copy_run(void *arg)
{
	struct copy_work *w = arg;
	struct thin_pool *p = w->p;
	bool backward = w->src == w->dst && w->dvc > w->svc;
	int rc = 0;

	if (p->failed) {
		rc = -EIO;
		goto out;
	}
	if (w->dst->r->flags & VOL_RDONLY) {
		rc = -EROFS;
		goto out;
	}
	if ((w->dvc + w->n) * p->chunk > w->dst->r->size ||
	    (w->svc + w->n) * p->chunk > w->src->r->size) {
		rc = -EINVAL;	/* shrunk meanwhile */
		goto out;
	}
	for (uint64_t i = 0; i < w->n; i++) {
		if (pool_cell_busy(w->src, w->svc + i) || pool_cell_busy(w->dst, w->dvc + i)) {
			rc = -EAGAIN;
			goto out;
		}
	}
	for (uint64_t i = 0; i < w->n && !rc; i++) {
		uint64_t k = backward ? w->n - 1 - i : i;

		rc = share_chunk(p, w->src, w->svc + k, w->dst, w->dvc + k);
	}
	if (rc)
		LOG_RATELIMIT(LOG_WARN, LS_THIN, "%s: range copy to %s failed: %d",
			      p->dev->name, w->dst->r->name, rc);
out:
	w->rc = rc;
	while (ev_send_msg(w->loop, copy_done, w))
		;	/* -ENOMEM: nothing else to do but try again */
}

int thin_vol_copy_range(struct blkdev *src, uint64_t src_off, struct blkdev *dst,
			uint64_t dst_off, uint64_t len, struct ev_loop *loop,
			void (*done)(void *arg, int rc), void *arg)
{
	struct thin_vol *ts = pool_vol_of(src), *td = pool_vol_of(dst);
	struct copy_work *w;
	uint32_t chunk;
	int rc;

	if (!ts || !td || ts->p != td->p)
		return -EXDEV;
	chunk = ts->p->chunk;
	if (src_off % chunk || dst_off % chunk || len % chunk ||
	    src_off + len > src->size || dst_off + len > dst->size || src_off + len < src_off ||
	    dst_off + len < dst_off)
		return -EINVAL;
	if (dst->readonly)
		return -EROFS;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->p = ts->p;
	w->src = ts;
	w->dst = td;
	w->svc = src_off / chunk;
	w->dvc = dst_off / chunk;
	w->n = len / chunk;
	w->loop = loop;
	w->done = done;
	w->arg = arg;
	rc = ev_send_msg(ts->p->loop, copy_run, w);
	if (rc)
		free(w);
	return rc;
}
