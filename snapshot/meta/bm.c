/* SPDX-License-Identifier: MIT */
/*
 * Block manager: metadata blocks of 4 KiB at the start of a block device,
 * read and written synchronously through a private loop and channel, kept
 * in a bounded LRU cache.
 *
 * Every block describes itself (struct meta_hdr): a write stamps the header
 * (magic of the block's validator, its own number, the format version, then
 * the CRC32C of the rest), a read from the device checks all four, so a
 * flipped bit, a torn write or a block that landed at the wrong place is
 * refused with -EUCLEAN instead of being believed.
 *
 * A flush writes the dirty blocks FLUSH_DEPTH at a time, then flushes the
 * device. The cache holds at most max_cached blocks that nobody has pinned; evicting
 * a dirty block writes it first. That is safe because nothing dirty is ever
 * referenced by the committed state: the transaction manager only dirties
 * blocks it allocated in this transaction (or the space maps' uncommitted
 * slots), and writes superblocks itself with bm_write_now().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <isa-l/crc.h>
#include "sand/common.h"
#include "sand/ev.h"
#include "sand/log.h"
#include "snapshot/meta/meta.h"

struct bm {
	struct blkdev		*dev;
	uint64_t		nblocks;
	struct ev_loop		*loop;
	struct blkchan		*ch;
	struct bm_block		**hash;
	unsigned		hash_mask;
	struct list_head	lru;		/* unpinned blocks, oldest first */
	unsigned		ncached;
	unsigned		max_cached;
	struct bm_stats		st;
};

uint32_t meta_csum(const void *block)
{
	return crc32_iscsi((unsigned char *)block + 4, META_BLOCK_SIZE - 4, 0xffffffffu);
}

static void stamp(struct bm_block *b)
{
	struct meta_hdr *h = (struct meta_hdr *)b->data;

	put_le32(&h->magic, b->v->magic);
	put_le64(&h->blocknr, b->nr);
	put_le32(&h->version, META_VERSION);
	put_le32(&h->flags, 0);
	put_le32(&h->csum, meta_csum(b->data));
}

static int check(const struct bm_validator *v, uint64_t nr, const uint8_t *data)
{
	const struct meta_hdr *h = (const struct meta_hdr *)data;
	uint32_t version;

	if (get_le32(&h->csum) != meta_csum(data)) {
		LOG_RATELIMIT(LOG_ERROR, LS_THIN, "%s block %llu: bad checksum", v->name,
			      (unsigned long long)nr);
		return -EUCLEAN;
	}
	if (get_le64(&h->blocknr) != nr) {
		LOG_RATELIMIT(LOG_ERROR, LS_THIN, "%s block %llu: belongs at %llu", v->name,
			      (unsigned long long)nr,
			      (unsigned long long)get_le64(&h->blocknr));
		return -EUCLEAN;
	}
	if (get_le32(&h->magic) != v->magic) {
		LOG_RATELIMIT(LOG_ERROR, LS_THIN, "%s block %llu: wrong magic %#x", v->name,
			      (unsigned long long)nr, get_le32(&h->magic));
		return -EUCLEAN;
	}
	version = get_le32(&h->version);
	if (version == 0 || version > META_VERSION) {
		LOG_RATELIMIT(LOG_ERROR, LS_THIN, "%s block %llu: format version %u unknown",
			      v->name, (unsigned long long)nr, version);
		return -EUCLEAN;
	}
	return 0;
}

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

int bm_io(struct bm *bm, enum bio_op op, uint64_t nr, void *buf)
{
	struct iovec iov = { .iov_base = buf, .iov_len = META_BLOCK_SIZE };
	struct sync_res r = { 0 };
	uint64_t off = nr * META_BLOCK_SIZE;
	uint64_t len = META_BLOCK_SIZE;
	int rc;

	if (op == BIO_FLUSH)
		off = len = 0;
	else if (nr >= bm->nblocks)
		return -ERANGE;
	while ((rc = blk_rw(bm->ch, op, 0, &iov, buf ? 1 : 0, off, len, sync_end, &r)) == -EAGAIN ||
	       rc == -ENOMEM)
		ev_run_once(bm->loop, 10);
	if (rc)
		return rc;
	while (!r.done)
		if ((rc = ev_run_once(bm->loop, -1)) < 0)
			return rc;
	if (op == BIO_READ)
		bm->st.reads++;
	else if (op == BIO_WRITE)
		bm->st.writes++;
	return r.status;
}

int bm_create(struct blkdev *dev, uint64_t nblocks, unsigned cache_blocks, struct bm **out)
{
	struct bm *bm;
	unsigned hsize = 64;
	int rc;

	if (nblocks * META_BLOCK_SIZE > dev->size || META_BLOCK_SIZE % dev->block_size)
		return -EINVAL;
	if (cache_blocks < 16)
		cache_blocks = 16;
	while (hsize < cache_blocks * 2)
		hsize <<= 1;
	bm = calloc(1, sizeof(*bm));
	if (!bm)
		return -ENOMEM;
	bm->hash = calloc(hsize, sizeof(*bm->hash));
	if (!bm->hash) {
		rc = -ENOMEM;
		goto free_bm;
	}
	bm->hash_mask = hsize - 1;
	bm->dev = dev;
	bm->nblocks = nblocks;
	bm->max_cached = cache_blocks;
	list_init(&bm->lru);
	rc = ev_loop_new(EV_AUTO, 64, &bm->loop);	/* io_uring devices need a ring */
	if (rc)
		goto free_hash;
	rc = blk_chan_open(dev, bm->loop, &bm->ch);
	if (rc)
		goto free_loop;
	*out = bm;
	return 0;

free_loop:
	ev_loop_free(bm->loop);
free_hash:
	free(bm->hash);
free_bm:
	free(bm);
	return rc;
}

static unsigned hslot(struct bm *bm, uint64_t nr)
{
	return (unsigned)((nr * 0x9e3779b97f4a7c15ull) >> 32) & bm->hash_mask;
}

static struct bm_block *lookup(struct bm *bm, uint64_t nr)
{
	struct bm_block *b;

	for (b = bm->hash[hslot(bm, nr)]; b; b = b->hnext)
		if (b->nr == nr)
			return b;
	return NULL;
}

static void unhash(struct bm *bm, struct bm_block *b)
{
	struct bm_block **pp = &bm->hash[hslot(bm, b->nr)];

	while (*pp != b)
		pp = &(*pp)->hnext;
	*pp = b->hnext;
}

static void block_free(struct bm *bm, struct bm_block *b)
{
	unhash(bm, b);
	list_del(&b->lru);
	bm->ncached--;
	free(b->data);
	free(b);
}

static int write_block(struct bm *bm, struct bm_block *b)
{
	int rc;

	stamp(b);
	rc = bm_io(bm, BIO_WRITE, b->nr, b->data);
	if (!rc)
		b->dirty = false;
	return rc;
}

/* Make room for one more block. A failed write leaves the block cached. */
static int shrink(struct bm *bm)
{
	struct bm_block *b;
	int rc;

	while (bm->ncached >= bm->max_cached && !list_empty(&bm->lru)) {
		b = list_first_entry(&bm->lru, struct bm_block, lru);
		if (b->dirty) {
			rc = write_block(bm, b);
			if (rc)
				return rc;
		}
		block_free(bm, b);
		bm->st.evictions++;
	}
	return 0;
}

static int get_block(struct bm *bm, uint64_t nr, const struct bm_validator *v,
		     bool read, struct bm_block **out)
{
	struct bm_block *b;
	int rc;

	if (nr >= bm->nblocks)
		return -ERANGE;
	b = lookup(bm, nr);
	if (b) {
		if (b->v != v) {
			LOG_RATELIMIT(LOG_ERROR, LS_THIN, "block %llu: wanted as %s, cached as %s",
				      (unsigned long long)nr, v->name, b->v->name);
			return -EUCLEAN;
		}
		bm->st.hits++;
		if (!b->pins++)
			list_del(&b->lru);
		if (!read) {
			memset(b->data, 0, META_BLOCK_SIZE);
			b->dirty = true;
		}
		*out = b;
		return 0;
	}
	rc = shrink(bm);
	if (rc)
		return rc;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	if (posix_memalign((void **)&b->data, 4096, META_BLOCK_SIZE)) {
		free(b);
		return -ENOMEM;
	}
	b->nr = nr;
	b->v = v;
	if (read) {
		bm->st.misses++;
		rc = bm_io(bm, BIO_READ, nr, b->data);
		if (!rc)
			rc = check(v, nr, b->data);
		if (rc) {
			free(b->data);
			free(b);
			return rc;
		}
	} else {
		memset(b->data, 0, META_BLOCK_SIZE);
		b->dirty = true;
	}
	b->pins = 1;
	list_init(&b->lru);
	b->hnext = bm->hash[hslot(bm, nr)];
	bm->hash[hslot(bm, nr)] = b;
	bm->ncached++;
	if (bm->ncached > bm->st.max_cached)
		bm->st.max_cached = bm->ncached;
	*out = b;
	return 0;
}

int bm_read(struct bm *bm, uint64_t nr, const struct bm_validator *v, struct bm_block **out)
{
	return get_block(bm, nr, v, true, out);
}

int bm_new(struct bm *bm, uint64_t nr, const struct bm_validator *v, struct bm_block **out)
{
	struct bm_block *b = lookup(bm, nr);

	/* a block reused under another type: forget the old one */
	if (b && b->v != v && !b->pins)
		block_free(bm, b);
	return get_block(bm, nr, v, false, out);
}

void bm_unpin(struct bm *bm, struct bm_block *b)
{
	assert(b->pins > 0);
	if (!--b->pins)
		list_add_tail(&b->lru, &bm->lru);
}

int bm_write_now(struct bm *bm, struct bm_block *b)
{
	return write_block(bm, b);
}

struct batch {
	unsigned	inflight;
	int		status;
};

static void batch_end(struct bio *bio, int status)
{
	struct batch *bt = bio->end_arg;

	bt->inflight--;
	if (status && !bt->status)
		bt->status = status;
}

#define FLUSH_DEPTH	32	/* writes in flight during bm_flush */

/* Write every dirty block, FLUSH_DEPTH at a time, then flush the device. */
int bm_flush(struct bm *bm)
{
	struct batch bt = { 0 };
	struct bm_block *b;
	unsigned i;
	int rc = 0;

	for (i = 0; i <= bm->hash_mask && !rc; i++)
		for (b = bm->hash[i]; b && !rc; b = b->hnext) {
			struct iovec iov = { .iov_base = b->data, .iov_len = META_BLOCK_SIZE };

			if (!b->dirty)
				continue;
			stamp(b);
			while (bt.inflight >= FLUSH_DEPTH)
				ev_run_once(bm->loop, -1);
			while ((rc = blk_rw(bm->ch, BIO_WRITE, 0, &iov, 1, b->nr * META_BLOCK_SIZE,
					    META_BLOCK_SIZE, batch_end, &bt)) == -EAGAIN ||
			       rc == -ENOMEM)
				ev_run_once(bm->loop, 10);
			if (rc)
				break;
			bt.inflight++;
			bm->st.writes++;
		}
	while (bt.inflight)	/* bt lives on this stack: wait for every end */
		ev_run_once(bm->loop, 100);
	if (!rc)
		rc = bt.status;
	if (rc)
		return rc;
	for (i = 0; i <= bm->hash_mask; i++)
		for (b = bm->hash[i]; b; b = b->hnext)
			b->dirty = false;
	return bm_io(bm, BIO_FLUSH, 0, NULL);
}

void bm_drop_all(struct bm *bm)
{
	struct list_head *p, *t;

	list_for_each_safe(p, t, &bm->lru)
		block_free(bm, list_entry(p, struct bm_block, lru));
}

void bm_destroy(struct bm *bm)
{
	struct bm_block *b;
	unsigned i;

	if (!bm)
		return;
	for (i = 0; i <= bm->hash_mask; i++)
		while ((b = bm->hash[i])) {
			bm->hash[i] = b->hnext;
			free(b->data);
			free(b);
		}
	blk_chan_close(bm->ch, NULL, NULL);
	ev_loop_free(bm->loop);
	free(bm->hash);
	free(bm);
}

uint64_t bm_nblocks(struct bm *bm)
{
	return bm->nblocks;
}

void bm_get_stats(struct bm *bm, struct bm_stats *st)
{
	*st = bm->st;
	st->cached = bm->ncached;
}
