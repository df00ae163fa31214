/* SPDX-License-Identifier: MIT */
/*
 * The block-device core: the registry of open devices, channels with their
 * bio pools, and blk_submit(), which checks every bio once at the edge and
 * splits the ones that cross the device's io_boundary or exceed max_io.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/log.h"

#define BIO_POOL_PREALLOC	64
#define BIO_POOL_MAX		4096

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct list_head registry = LIST_HEAD_INIT(registry);

void blkdev_init(struct blkdev *bd, const struct blkdev_ops *ops, const char *name)
{
	memset(bd, 0, sizeof(*bd));
	bd->ops = ops;
	snprintf(bd->name, sizeof(bd->name), "%s", name ? name : "");
	bd->block_size = 512;
	list_init(&bd->reg_link);
}

int blkdev_close(struct blkdev *bd)
{
	if (__atomic_load_n(&bd->nchans, __ATOMIC_ACQUIRE))
		return -EBUSY;
	pthread_mutex_lock(&reg_lock);
	if (bd->nowners) {
		pthread_mutex_unlock(&reg_lock);
		return -EBUSY;
	}
	if (bd->registered) {
		list_del(&bd->reg_link);
		bd->registered = false;
	}
	pthread_mutex_unlock(&reg_lock);
	bd->ops->close(bd);
	return 0;
}

/* ------------------------------------------------------------- registry */

static struct blkdev *find_locked(const char *name)
{
	struct list_head *pos;

	list_for_each(pos, &registry) {
		struct blkdev *bd = list_entry(pos, struct blkdev, reg_link);

		if (!strcmp(bd->name, name))
			return bd;
	}
	return NULL;
}

int blkdev_register(struct blkdev *bd)
{
	int rc = 0;

	if (!bd->name[0])
		return -EINVAL;
	pthread_mutex_lock(&reg_lock);
	if (bd->registered || find_locked(bd->name)) {
		rc = -EEXIST;
	} else {
		list_add_tail(&bd->reg_link, &registry);
		bd->registered = true;
	}
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

void blkdev_unregister(struct blkdev *bd)
{
	pthread_mutex_lock(&reg_lock);
	if (bd->registered) {
		list_del(&bd->reg_link);
		bd->registered = false;
	}
	pthread_mutex_unlock(&reg_lock);
}

struct blkdev *blkdev_find(const char *name)
{
	struct blkdev *bd;

	pthread_mutex_lock(&reg_lock);
	bd = find_locked(name);
	pthread_mutex_unlock(&reg_lock);
	return bd;
}

void blkdev_foreach(void (*fn)(struct blkdev *bd, void *arg), void *arg)
{
	struct list_head *pos;

	pthread_mutex_lock(&reg_lock);
	list_for_each(pos, &registry)
		fn(list_entry(pos, struct blkdev, reg_link), arg);
	pthread_mutex_unlock(&reg_lock);
}

static int owner_index(const struct blkdev *bd, const char *owner)
{
	for (unsigned i = 0; i < bd->nowners; i++)
		if (!strcmp(bd->owners[i], owner))
			return (int)i;
	return -1;
}

/* Rebuild the "a,b" summary; registry lock held. */
static void claims_summary(struct blkdev *bd)
{
	size_t used = 0;

	bd->claim[0] = '\0';
	for (unsigned i = 0; i < bd->nowners && used < sizeof(bd->claim); i++) {
		int n = snprintf(bd->claim + used, sizeof(bd->claim) - used, "%s%s",
				 i ? "," : "", bd->owners[i]);

		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static int claim(struct blkdev *bd, const char *owner, bool exclusive)
{
	int rc = 0;

	if (!owner || !owner[0] || strlen(owner) >= BLK_NAME_MAX)
		return -EINVAL;
	pthread_mutex_lock(&reg_lock);
	if (owner_index(bd, owner) >= 0) {
		/* the same owner again: fine if the kind matches */
		if (exclusive != bd->exclusive)
			rc = -EBUSY;
	} else if (bd->nowners && (exclusive || bd->exclusive)) {
		rc = -EBUSY;
	} else if (bd->nowners == BLK_MAX_CLAIMS) {
		rc = -EBUSY;
	} else {
		snprintf(bd->owners[bd->nowners++], BLK_NAME_MAX, "%s", owner);
		bd->exclusive = exclusive;
		claims_summary(bd);
	}
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

int blkdev_claim(struct blkdev *bd, const char *owner)
{
	return claim(bd, owner, true);
}

int blkdev_claim_shared(struct blkdev *bd, const char *owner)
{
	return claim(bd, owner, false);
}

void blkdev_release(struct blkdev *bd, const char *owner)
{
	int i;

	pthread_mutex_lock(&reg_lock);
	i = owner_index(bd, owner);
	if (i >= 0) {
		for (unsigned j = (unsigned)i; j + 1 < bd->nowners; j++)
			memcpy(bd->owners[j], bd->owners[j + 1], BLK_NAME_MAX);
		if (--bd->nowners == 0)
			bd->exclusive = false;
		claims_summary(bd);
	}
	pthread_mutex_unlock(&reg_lock);
}

void blkdev_claims(struct blkdev *bd, char *buf, size_t len)
{
	pthread_mutex_lock(&reg_lock);
	snprintf(buf, len, "%s", bd->claim);
	pthread_mutex_unlock(&reg_lock);
}

/* ------------------------------------------------------------- channels */

static struct bio *pool_grow(struct blkchan *ch)
{
	struct bio *bio;

	if (ch->nbios >= ch->max_bios)
		return NULL;
	bio = aligned_alloc(16, ch->bio_size);
	if (!bio)
		return NULL;
	ch->nbios++;
	return bio;
}

int blk_chan_open(struct blkdev *bd, struct ev_loop *loop, struct blkchan **out)
{
	struct blkchan *ch = calloc(1, sizeof(*ch));
	int rc;

	if (!ch)
		return -ENOMEM;
	ch->bd = bd;
	ch->loop = loop;
	list_init(&ch->free_bios);
	list_init(&ch->split_wait);
	ch->max_bios = BIO_POOL_MAX;
	ch->bio_size = (sizeof(struct bio) + bd->ops->bio_ctx_size + 15) & ~(size_t)15;
	for (int i = 0; i < BIO_POOL_PREALLOC; i++) {
		struct bio *bio = pool_grow(ch);

		if (!bio)
			break;
		list_add_tail(&bio->link, &ch->free_bios);
	}
	if (bd->ops->chan_create) {
		rc = bd->ops->chan_create(bd, ch);
		if (rc)
			goto free_pool;
	}
	__atomic_add_fetch(&bd->nchans, 1, __ATOMIC_ACQ_REL);
	*out = ch;
	return 0;

free_pool:
	while (!list_empty(&ch->free_bios)) {
		struct list_head *l = ch->free_bios.next;

		list_del(l);
		free(list_entry(l, struct bio, link));
	}
	free(ch);
	return rc;
}

static void chan_destroy(struct blkchan *ch)
{
	struct blkdev *bd = ch->bd;
	void (*fn)(void *) = ch->closed_fn;
	void *arg = ch->closed_arg;

	if (bd->ops->chan_destroy)
		bd->ops->chan_destroy(bd, ch);
	while (!list_empty(&ch->free_bios)) {
		struct list_head *l = ch->free_bios.next;

		list_del(l);
		free(list_entry(l, struct bio, link));
		ch->nbios--;
	}
	if (ch->nbios)
		LOG_WARN(LS_BLK, "%s: channel closed with %u bios not freed", bd->name, ch->nbios);
	__atomic_sub_fetch(&bd->nchans, 1, __ATOMIC_ACQ_REL);
	free(ch);
	if (fn)
		fn(arg);
}

void blk_chan_close(struct blkchan *ch, void (*closed_fn)(void *arg), void *arg)
{
	ch->closing = true;
	ch->closed_fn = closed_fn;
	ch->closed_arg = arg;
	if (!ch->inflight && !ch->split_task.queued)
		chan_destroy(ch);
}

/* ------------------------------------------------------------- bios */

struct bio *bio_alloc(struct blkchan *ch)
{
	struct bio *bio;

	if (!list_empty(&ch->free_bios)) {
		bio = list_entry(ch->free_bios.next, struct bio, link);
		list_del(&bio->link);
	} else {
		bio = pool_grow(ch);
		if (!bio)
			return NULL;
	}
	memset(bio, 0, sizeof(*bio));
	bio->ch = ch;
	list_init(&bio->link);
	return bio;
}

void bio_free(struct bio *bio)
{
	struct blkchan *ch = bio->ch;

	free(bio->iov_alloc);
	bio->iov_alloc = NULL;
	list_add(&bio->link, &ch->free_bios);
}

size_t iov_total(const struct iovec *iov, int iovcnt)
{
	size_t t = 0;

	for (int i = 0; i < iovcnt; i++)
		t += iov[i].iov_len;
	return t;
}

void iov_to_buf(const struct iovec *iov, int iovcnt, size_t skip, void *buf, size_t len)
{
	uint8_t *b = buf;

	for (int i = 0; i < iovcnt && len; i++) {
		size_t n;

		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		n = MIN(iov[i].iov_len - skip, len);
		memcpy(b, (uint8_t *)iov[i].iov_base + skip, n);
		b += n;
		len -= n;
		skip = 0;
	}
}

void buf_to_iov(const struct iovec *iov, int iovcnt, size_t skip, const void *buf, size_t len)
{
	const uint8_t *b = buf;

	for (int i = 0; i < iovcnt && len; i++) {
		size_t n;

		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		n = MIN(iov[i].iov_len - skip, len);
		memcpy((uint8_t *)iov[i].iov_base + skip, b, n);
		b += n;
		len -= n;
		skip = 0;
	}
}

void iov_memset(const struct iovec *iov, int iovcnt, size_t skip, int c, size_t len)
{
	for (int i = 0; i < iovcnt && len; i++) {
		size_t n;

		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		n = MIN(iov[i].iov_len - skip, len);
		memset((uint8_t *)iov[i].iov_base + skip, c, n);
		len -= n;
		skip = 0;
	}
}

/* Point child->iov at bytes [skip, skip+len) of the parent's iovec. */
static int iov_slice(struct bio *child, const struct iovec *iov, int iovcnt,
		     size_t skip, size_t len)
{
	int first = 0, n = 0;
	size_t first_skip;
	struct iovec *dst;

	while (first < iovcnt && skip >= iov[first].iov_len)
		skip -= iov[first++].iov_len;
	first_skip = skip;
	for (size_t left = len + skip; first + n < iovcnt && left; n++)
		left -= MIN(left, iov[first + n].iov_len);
	if (n <= BIO_INLINE_IOVS) {
		dst = child->iov_inline;
	} else {
		dst = malloc((size_t)n * sizeof(*dst));
		if (!dst)
			return -ENOMEM;
		child->iov_alloc = dst;
	}
	for (int i = 0; i < n; i++)
		dst[i] = iov[first + i];
	dst[0].iov_base = (uint8_t *)dst[0].iov_base + first_skip;
	dst[0].iov_len -= first_skip;
	{
		size_t tot = 0;

		for (int i = 0; i < n; i++)
			tot += dst[i].iov_len;
		dst[n - 1].iov_len -= tot - len;
	}
	child->iov = dst;
	child->iovcnt = n;
	return 0;
}

static void parent_done_task(struct ev_task *t)
{
	struct bio *parent = container_of(t, struct bio, task);

	bio_complete(parent, parent->status);
}

static void child_end(struct bio *child, int status)
{
	struct bio *parent = child->parent;

	if (status && !parent->status)
		parent->status = status;
	if (--parent->pending == 0)
		bio_complete(parent, parent->status);
}

/* Length of the first piece of [off, off+len) that respects boundary and max. */
static uint64_t piece_len(const struct blkdev *bd, uint64_t off, uint64_t len)
{
	uint64_t n = len;

	if (bd->io_boundary) {
		uint64_t to_edge = bd->io_boundary - off % bd->io_boundary;

		n = MIN(n, to_edge);
	}
	if (bd->max_io)
		n = MIN(n, bd->max_io);
	return n;
}

static void split_retry_task(struct ev_task *t);

/*
 * Submit parent's children from parent->split_done on. When the driver
 * pushes back (-EAGAIN/-ENOMEM) after some children went out, the parent
 * waits on ch->split_wait and goes on when a bio of this channel ends (or
 * on the next loop turn, if nothing else is in flight): backpressure in the
 * middle of a split must not become an I/O error. Returns the refusal when
 * not even the first child went out (the whole bio is refused), else 0.
 */
static int split_continue(struct blkchan *ch, struct bio *parent)
{
	struct blkdev *bd = ch->bd;
	uint64_t off = parent->offset;
	int rc;

	while (parent->split_done < parent->len) {
		uint64_t done = parent->split_done;
		uint64_t n = piece_len(bd, off + done, parent->len - done);
		struct bio *c = bio_alloc(ch);

		rc = c ? 0 : -ENOMEM;
		if (c) {
			c->op = parent->op;
			c->flags = parent->flags;
			c->offset = off + done;
			c->len = n;
			c->parent = parent;
			c->end = child_end;
			if (parent->op == BIO_READ || parent->op == BIO_WRITE)
				rc = iov_slice(c, parent->iov, parent->iovcnt, done, n);
		}
		if (!rc) {
			ch->inflight++;
			rc = bd->ops->submit(bd, ch, c);
			if (rc)
				ch->inflight--;
		}
		if (rc) {
			struct list_head *pos;
			unsigned waiting = 0;

			if (c)
				bio_free(c);
			if (done == 0)
				return rc;	/* nothing went out: refuse the whole bio */
			if (rc == -EAGAIN || rc == -ENOMEM) {
				list_add_tail(&parent->link, &ch->split_wait);
				list_for_each(pos, &ch->split_wait)
					waiting++;
				/* nothing else in flight would wake us: poll */
				if (ch->inflight <= waiting)
					ev_defer(ch->loop, &ch->split_task, split_retry_task);
				return 0;
			}
			if (!parent->status)
				parent->status = rc;
			/* account for every child we will not send */
			for (uint64_t d = done; d < parent->len; d += piece_len(bd, off + d, parent->len - d))
				parent->pending--;
			break;
		}
		parent->split_done += n;
	}
	/* drop the submit hold; if everything already ended, finish later */
	if (--parent->pending == 0)
		ev_defer(ch->loop, &parent->task, parent_done_task);
	return 0;
}

/* Give the split parents that met backpressure another go. */
static void split_resume(struct blkchan *ch)
{
	struct list_head todo;

	list_init(&todo);
	while (!list_empty(&ch->split_wait)) {
		struct list_head *l = ch->split_wait.next;

		list_del(l);
		list_add_tail(l, &todo);
	}
	while (!list_empty(&todo)) {
		struct bio *parent = list_entry(todo.next, struct bio, link);

		list_del(&parent->link);
		split_continue(ch, parent);	/* may wait again */
	}
}

static void split_retry_task(struct ev_task *t)
{
	struct blkchan *ch = container_of(t, struct blkchan, split_task);

	split_resume(ch);
	/* a close that came while we were queued left the destroying to us */
	if (ch->closing && !ch->inflight && !ch->split_task.queued)
		chan_destroy(ch);
}

static int submit_split(struct blkchan *ch, struct bio *parent)
{
	struct blkdev *bd = ch->bd;
	uint64_t off = parent->offset;
	unsigned nchild = 0;
	int rc;

	/* No check that the pool holds nchild bios: a child the pool cannot
	 * give yet is backpressure like any other (split_continue waits for
	 * bios of this channel to end), and a bio may split into more
	 * children than the pool has (it was refused with -ENOMEM for ever). */
	for (uint64_t o = off; o < off + parent->len; o += piece_len(bd, o, off + parent->len - o))
		nchild++;

	parent->pending = nchild + 1;	/* +1: held until every child is submitted */
	parent->status = 0;
	parent->split_done = 0;
	list_init(&parent->link);
	ch->inflight++;
	rc = split_continue(ch, parent);
	if (rc)
		ch->inflight--;
	return rc;
}

int blk_submit(struct blkchan *ch, struct bio *bio)
{
	struct blkdev *bd = ch->bd;
	uint64_t bs = bd->block_size;
	int rc;

	if (unlikely(ch->closing))
		return -ESHUTDOWN;
	if (unlikely(bio->op >= BIO_OP_MAX))
		return -EINVAL;
	if (unlikely(!blkdev_supports(bd, bio->op)))
		return -EOPNOTSUPP;
	if (bio->op == BIO_FLUSH) {
		bio->offset = 0;
		bio->len = 0;
	} else {
		if (unlikely(bio->offset % bs || bio->len % bs || !bio->len))
			return -EINVAL;
		if (unlikely(bio->offset > bd->size || bio->len > bd->size - bio->offset))
			return -ERANGE;
	}
	if (unlikely(bd->readonly && bio->op != BIO_READ && bio->op != BIO_FLUSH))
		return -EROFS;
	if ((bio->op == BIO_READ || bio->op == BIO_WRITE) &&
	    unlikely(iov_total(bio->iov, bio->iovcnt) != bio->len))
		return -EINVAL;
	bio->ch = ch;
	bio->parent = NULL;

	if (bio->op != BIO_FLUSH && piece_len(bd, bio->offset, bio->len) < bio->len)
		return submit_split(ch, bio);

	ch->inflight++;
	rc = bd->ops->submit(bd, ch, bio);
	if (rc)
		ch->inflight--;
	return rc;
}

void bio_complete(struct bio *bio, int status)
{
	struct blkchan *ch = bio->ch;

	if (bio->parent) {
		bio->end(bio, status);
		bio_free(bio);
	} else if (bio->autofree) {
		bio->end(bio, status);
		bio_free(bio);
	} else {
		bio->end(bio, status);
	}
	ch->inflight--;
	if (unlikely(!list_empty(&ch->split_wait)))
		split_resume(ch);
	if (ch->closing && !ch->inflight && !ch->split_task.queued)
		chan_destroy(ch);
}

int blk_rw(struct blkchan *ch, enum bio_op op, uint32_t flags,
	   const struct iovec *iov, int iovcnt, uint64_t offset, uint64_t len,
	   bio_end_fn cb, void *arg)
{
	struct bio *bio = bio_alloc(ch);
	int rc;

	if (!bio)
		return -ENOMEM;
	bio->op = op;
	bio->flags = flags;
	bio->offset = offset;
	bio->len = len;
	if (iovcnt <= BIO_INLINE_IOVS) {
		for (int i = 0; i < iovcnt; i++)
			bio->iov_inline[i] = iov[i];
		bio->iov = bio->iov_inline;
	} else {
		bio->iov = (struct iovec *)iov;	/* the caller keeps it alive */
	}
	bio->iovcnt = iovcnt;
	bio->end = cb;
	bio->end_arg = arg;
	bio->autofree = true;
	rc = blk_submit(ch, bio);
	if (rc)
		bio_free(bio);
	return rc;
}

/* ------------------------------------------------------------- block status */

bool blk_status_add(struct blk_status *st, uint64_t len, uint32_t flags)
{
	if (!len)
		return st->next < st->max_ext;
	if (st->next && st->ext[st->next - 1].flags == flags) {
		st->ext[st->next - 1].len += len;
		return true;
	}
	if (st->next == st->max_ext)
		return false;
	st->ext[st->next].len = len;
	st->ext[st->next].flags = flags;
	st->next++;
	return true;
}

static void status_default_task(struct ev_task *t)
{
	struct blk_status *st = container_of(t, struct blk_status, task);

	blk_status_complete(st, st->status);
}

int blk_block_status(struct blkchan *ch, struct blk_status *st)
{
	struct blkdev *bd = ch->bd;
	uint64_t bs = bd->block_size;
	int rc;

	if (unlikely(ch->closing))
		return -ESHUTDOWN;
	if (unlikely(!st->ext || !st->max_ext || !st->end))
		return -EINVAL;
	if (st->mode == BLK_STATUS_CHANGED) {
		if (!st->base || !st->base[0])
			return -EINVAL;
		if (!bd->ops->block_status || !bd->ops->status_base)
			return -EOPNOTSUPP;
	} else if (st->mode != BLK_STATUS_ALLOC) {
		return -EINVAL;
	}
	if (unlikely(st->offset % bs || st->len % bs || !st->len))
		return -EINVAL;
	if (unlikely(st->offset > bd->size || st->len > bd->size - st->offset))
		return -ERANGE;
	st->ch = ch;
	st->next = 0;
	st->status = 0;
	ch->inflight++;
	if (!bd->ops->block_status) {
		blk_status_add(st, st->len, 0);
		ev_defer(ch->loop, &st->task, status_default_task);
		return 0;
	}
	rc = bd->ops->block_status(bd, ch, st);
	if (rc)
		ch->inflight--;
	return rc;
}

void blk_status_complete(struct blk_status *st, int status)
{
	struct blkchan *ch = st->ch;
	uint64_t sum = 0;

	for (unsigned i = 0; !status && i < st->next; i++)
		sum += st->ext[i].len;
	if (!status && (!st->next || sum > st->len)) {
		LOG_ERR(LS_BLK, "%s: block status: %u extents of %llu bytes for %llu", ch->bd->name,
			st->next, (unsigned long long)sum, (unsigned long long)st->len);
		status = -EIO;
	}
	st->end(st, status);
	ch->inflight--;
	if (unlikely(!list_empty(&ch->split_wait)))
		split_resume(ch);
	if (ch->closing && !ch->inflight && !ch->split_task.queued)
		chan_destroy(ch);
}

int blkdev_status_base(struct blkdev *bd, const char *base)
{
	if (!base || !base[0])
		return -EINVAL;
	if (!bd->ops->status_base || !bd->ops->block_status)
		return -EOPNOTSUPP;
	return bd->ops->status_base(bd, base);
}

int blkdev_status_bases(struct blkdev *bd, void (*fn)(void *arg, const char *base), void *arg)
{
	if (!bd->ops->status_bases || !bd->ops->block_status)
		return -EOPNOTSUPP;
	bd->ops->status_bases(bd, fn, arg);
	return 0;
}

/* ------------------------------------------------------------- sync I/O */

struct sync_ctx {
	bool	done;
	int	status;
};

static void sync_end(struct bio *bio, int status)
{
	struct sync_ctx *s = bio->end_arg;

	s->status = status;
	s->done = true;
}

static void sync_status_end(struct blk_status *st, int status)
{
	struct sync_ctx *s = st->end_arg;

	s->status = status;
	s->done = true;
}

int blk_sync_block_status(struct blkdev *bd, struct blk_status *st)
{
	struct ev_loop *loop;
	struct blkchan *ch;
	struct sync_ctx s = { 0 };
	int rc;

	rc = ev_loop_new(EV_AUTO, 64, &loop);
	if (rc)
		return rc;
	rc = blk_chan_open(bd, loop, &ch);
	if (rc)
		goto free_loop;
	st->end = sync_status_end;
	st->end_arg = &s;
	while ((rc = blk_block_status(ch, st)) == -EAGAIN)
		ev_run_once(loop, 10);
	if (!rc) {
		while (!s.done)
			if ((rc = ev_run_once(loop, -1)) < 0)
				break;
		rc = s.done ? s.status : rc;
	}
	blk_chan_close(ch, NULL, NULL);
free_loop:
	ev_loop_free(loop);
	return rc;
}

int blk_sync_io(struct blkdev *bd, enum bio_op op, uint32_t flags,
		uint64_t offset, void *buf, uint64_t len)
{
	struct ev_loop *loop;
	struct blkchan *ch;
	struct sync_ctx s = { 0 };
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	int rc;

	rc = ev_loop_new(EV_AUTO, 64, &loop);
	if (rc)
		return rc;
	rc = blk_chan_open(bd, loop, &ch);
	if (rc)
		goto free_loop;
	while ((rc = blk_rw(ch, op, flags, &iov, buf ? 1 : 0, offset, len, sync_end, &s)) == -EAGAIN)
		ev_run_once(loop, 10);
	if (!rc) {
		while (!s.done)
			if ((rc = ev_run_once(loop, -1)) < 0)
				break;
		rc = s.done ? s.status : rc;
	}
	blk_chan_close(ch, NULL, NULL);	/* nothing in flight: freed at once */
free_loop:
	ev_loop_free(loop);
	return rc;
}
