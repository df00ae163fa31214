/* SPDX-License-Identifier: MIT */
/*
 * The write-intent bitmap (doc/raid.md "Write-intent bitmap").
 *
 * Every member of a redundant set carries the same bitmap, between its
 * superblocks and its log: bit i (byte i / 8, bit i % 8) set means region i
 * (member data bytes [i * region, (i + 1) * region), i.e. whole rows) may
 * have been written since it was last known consistent. States of a region
 * in memory:
 *  - CLEAN: its bit is 0 on disk (or about to be, see the sweep);
 *  - SETTING: a write wants it, the bitmap thread is writing the bit;
 *  - DIRTY: the bit is on every live member, writes go straight on.
 * A write to a CLEAN region waits (queued on the set) until the thread has
 * written the bitmap with FUA to every writable member; then it goes on.
 * Writes in flight are counted per region.
 *
 * Clearing is lazy: every 5 s (or raid_bitmap_clear_idle()), the thread
 * takes the DIRTY regions with no write in flight and none since the last
 * sweep, marks them CLEAN in memory, flushes every member (so what was
 * written there is durable), then writes the bitmap. A write arriving in
 * between finds its region CLEAN and queues a set, which the single thread
 * writes after the clear: the bit on disk is never 0 under a write.
 *
 * A torn bitmap write leaves each 512-byte sector old or new; both hold
 * every bit that was already set, so no copy or checksum is needed.
 *
 * Two images (RAID_BM_HOT, 1.4). While the set is degraded the bits above
 * are never cleared: they also say where a member that left missed writes.
 * So a set created (or assembled) by this version keeps a second image
 * right after the first, the "hot" bits: set with the first (one write),
 * and cleared by every sweep of an idle region, degraded or not. After a
 * crash, only the hot regions can hold torn writes: they are the ones
 * resynchronized, and the rows below a rebuild's cursor in them are rebuilt
 * again on the member being rebuilt (raid_rebuild.c), so that the cursor
 * (and a partial rebuild) survives the crash. The first image keeps its
 * meaning, so older code reading a 1.4 set loses nothing; it writes the
 * superblock's bitmap_flags zero, and the next assembly by this version
 * takes the first image as the hot one again (raid_open: the upgrade).
 *
 * Away images (1.4): with two members away (RAID 6, or mirrors), the first
 * image holds what either missed. So when a slot leaves (its left_gen is
 * recorded, raid.c), it gets an image of its own after the hot one, if the
 * area has room (at most RAID_BM_AWAY_MAX): it starts as the hot bits (the
 * writes that may have been in flight when it left), is written to every
 * member before the superblocks name it (raid_sb.bitmap_away), and every
 * later write sets its region's bit there too (in the same bitmap write),
 * never cleared by a sweep. The slot's partial rebuild then walks only its
 * own image's regions. The image is given back once the slot is active
 * again or taken by a new disk. Without room, the first image serves.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "raid/raid_bitmap.h"
#include "sand/log.h"

#define BM_DEFAULT_REGION	(64ull << 20)
#define BM_SWEEP_S		5

enum { BM_CLEAN = 0, BM_SETTING, BM_DIRTY };

struct raid_bitmap {
	pthread_mutex_t	lock;
	pthread_cond_t	cond;		/* work for the thread */
	pthread_cond_t	swept;		/* a requested sweep is done */
	pthread_t	thread;
	bool		stop, set_wanted;
	uint64_t	sweep_req, sweep_done;
	uint64_t	off, used;	/* on each member: where, bytes written */
	uint64_t	region_rows, nregions;
	uint8_t		*img;		/* the bitmap as the members hold it */
	uint8_t		*wbuf;		/* what the thread writes */
	uint8_t		*state;		/* per region */
	uint8_t		*touched;	/* written since the last sweep */
	uint32_t	*inflight;
	uint8_t		*resync;	/* at assembly: the OR of the members' bitmaps */
	uint8_t		*partial;	/* a member re-added: the regions it missed */
	uint64_t	partial_below;	/* rows from this one on are not in it */
	/* RAID_BM_HOT: the second image, the write-intent bits proper */
	bool		hot;
	bool		hot_disk;	/* the superblocks said so at assembly */
	uint8_t		*himg;
	uint8_t		*hstate;	/* per region, as state */
	uint64_t	wlen;		/* bytes written: one image, or all */
	uint32_t	nosweep;	/* bitmap_sweep_hold */
	/* away images: after the hot one, naway of them */
	uint32_t	naway;
	struct bm_away {
		int	slot;		/* -1: free */
		uint8_t	*img, *st;
	} away[RAID_BM_AWAY_MAX];
	uint64_t	set_seq, set_done;	/* set rounds wanted, written */
	struct list_head waiting;	/* writes waiting for their bit */
	uint64_t	cleared;	/* regions cleared by the last sweep */
};

static void bit_set(uint8_t *b, uint64_t i, bool v)
{
	if (v)
		b[i / 8] |= (uint8_t)(1u << (i % 8));
	else
		b[i / 8] &= (uint8_t)~(1u << (i % 8));
}

static bool bit_get(const uint8_t *b, uint64_t i)
{
	return b[i / 8] & (1u << (i % 8));
}

uint64_t bitmap_region_size(uint64_t want, uint32_t strip, uint64_t member_size,
			    uint64_t bitmap_bytes)
{
	/* by default 64 MiB, but at least 64 regions on small members, so
	 * that a member that comes back skips most of them */
	uint64_t reg = want ? want : MIN(BM_DEFAULT_REGION, member_size / 64);

	reg = MAX((reg + strip - 1) / strip * strip, (uint64_t)strip);
	while (member_size / reg >= bitmap_bytes * 8)
		reg *= 2;
	return reg;
}

int bitmap_format(struct blkdev **members, uint32_t n, uint64_t off, uint64_t size)
{
	void *zero = aligned_alloc(4096, size);
	int rc = 0;

	if (!zero)
		return -ENOMEM;
	memset(zero, 0, size);
	for (uint32_t i = 0; i < n && !rc; i++)
		rc = blk_sync_io(members[i], BIO_WRITE, 0, off, zero, size);
	free(zero);
	return rc;
}

static uint64_t region_of(struct raid *r, uint64_t off)
{
	uint64_t row = off / ((uint64_t)r->g.strip * r->k);

	return row / r->bm->region_rows;
}

/* Write the bitmap (bm->wbuf) to every writable member, durable. */
static int write_all(struct raid *r, bool flush_first)
{
	struct raid_bitmap *bm = r->bm;
	int ok = 0, tried = 0;

	for (uint32_t i = 0; i < r->g.nmembers; i++) {
		struct blkdev *m = __atomic_load_n(&r->members[i], __ATOMIC_ACQUIRE);
		int rc = 0;

		if (!m || !raid_writable(r, i))
			continue;
		tried++;
		if (flush_first)
			rc = blk_sync_io(m, BIO_FLUSH, 0, 0, NULL, 0);
		if (!rc)
			rc = blk_sync_io(m, BIO_WRITE, BIO_FUA, bm->off, bm->wbuf, bm->wlen);
		if (rc)
			LOG_RATELIMIT(LOG_WARN, LS_RAID, "%s: bitmap write to member %u failed: %s",
				      r->bd.name, i, strerror(-rc));
		else
			ok++;
	}
	return ok || !tried ? 0 : -EIO;
}

/* Under bm->lock: the region's bits are on disk (both, with two images). */
static bool region_ready(struct raid_bitmap *bm, uint64_t reg)
{
	if (bm->state[reg] != BM_DIRTY || (bm->hot && bm->hstate[reg] != BM_DIRTY))
		return false;
	for (uint32_t k = 0; k < bm->naway; k++)
		if (bm->away[k].slot >= 0 && bm->away[k].st[reg] != BM_DIRTY)
			return false;
	return true;
}

/* Under bm->lock: what the thread writes. */
static void fill_wbuf(struct raid_bitmap *bm)
{
	memcpy(bm->wbuf, bm->img, bm->used);
	if (bm->hot)
		memcpy(bm->wbuf + bm->used, bm->himg, bm->used);
	for (uint32_t k = 0; k < bm->naway; k++)
		memcpy(bm->wbuf + (2 + k) * bm->used, bm->away[k].img, bm->used);
}

static void resume_msg(void *arg)
{
	struct raid_io *rio = arg;

	rio->r->lops->submit_rw(rio);
}

/* Under bm->lock: the regions SETTING are written; wake their writes. */
static void do_set(struct raid *r)
{
	struct raid_bitmap *bm = r->bm;
	struct list_head *pos, *tmp;

	uint64_t seq = bm->set_seq;

	bm->set_wanted = false;
	fill_wbuf(bm);
	pthread_mutex_unlock(&bm->lock);
	write_all(r, false);
	pthread_mutex_lock(&bm->lock);
	bm->set_done = seq;
	pthread_cond_broadcast(&bm->swept);
	/* only what the copy held: a region set since waits for the next turn */
	for (uint64_t i = 0; i < bm->nregions; i++) {
		if (bm->state[i] == BM_SETTING && bit_get(bm->wbuf, i))
			bm->state[i] = BM_DIRTY;
		if (bm->hot && bm->hstate[i] == BM_SETTING && bit_get(bm->wbuf + bm->used, i))
			bm->hstate[i] = BM_DIRTY;
		for (uint32_t k = 0; k < bm->naway; k++)
			if (bm->away[k].slot >= 0 && bm->away[k].st[i] == BM_SETTING &&
			    bit_get(bm->wbuf + (2 + k) * bm->used, i))
				bm->away[k].st[i] = BM_DIRTY;
	}
	list_for_each_safe(pos, tmp, &bm->waiting) {
		struct raid_io *rio = list_entry(pos, struct raid_io, wait_link);
		uint64_t reg = region_of(r, rio->bio->offset);

		if (!region_ready(bm, reg))
			continue;
		list_del(&rio->wait_link);
		list_init(&rio->wait_link);
		bm->inflight[reg]++;
		bm->touched[reg] = 1;
		rio->bm_held = true;
		if (ev_send_msg(rio->bio->ch->loop, resume_msg, rio))
			LOG_ERR(LS_RAID, "%s: cannot resume a write", r->bd.name);
	}
}

/* Every slot active: nobody is away, or coming back, who needs the bits. */
static bool set_whole(struct raid *r)
{
	for (uint32_t i = 0; i < r->g.nmembers; i++)
		if (!raid_alive(r, i))
			return false;
	return true;
}

/* Under bm->lock: clear idle regions. Not while the set is degraded (as
 * md): the bits then say where a member that left has missed writes, so it
 * can come back by resyncing only those regions; the hot image, always.
 * bm->cleared counts the first image's regions. */
static void do_sweep(struct raid *r)
{
	struct raid_bitmap *bm = r->bm;
	bool whole = set_whole(r);
	uint64_t n = 0, nh = 0;

	bm->cleared = 0;
	if ((!whole && !bm->hot) || bm->nosweep)
		return;
	for (uint64_t i = 0; i < bm->nregions; i++) {
		bool idle = !bm->inflight[i] && !bm->touched[i];

		if (bm->state[i] != BM_DIRTY && (!bm->hot || bm->hstate[i] != BM_DIRTY))
			continue;
		if (idle && whole && bm->state[i] == BM_DIRTY) {
			bm->state[i] = BM_CLEAN;
			bit_set(bm->img, i, false);
			n++;
		}
		if (idle && bm->hot && bm->hstate[i] == BM_DIRTY) {
			bm->hstate[i] = BM_CLEAN;
			bit_set(bm->himg, i, false);
			nh++;
		}
		bm->touched[i] = 0;
	}
	bm->cleared = n;
	if (!n && !nh)
		return;
	fill_wbuf(bm);
	pthread_mutex_unlock(&bm->lock);
	write_all(r, true);	/* the flush first: what they hold is durable */
	pthread_mutex_lock(&bm->lock);
	LOG_DBG(LS_RAID, "%s: bitmap: %llu regions clean again, %llu idle", r->bd.name,
		(unsigned long long)n, (unsigned long long)nh);
}

static void *bm_thread(void *arg)
{
	struct raid *r = arg;
	struct raid_bitmap *bm = r->bm;

	pthread_mutex_lock(&bm->lock);
	while (!bm->stop) {
		struct timespec ts;
		bool timed_out = false;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += BM_SWEEP_S;
		while (!bm->stop && !bm->set_wanted && bm->sweep_req == bm->sweep_done &&
		       !timed_out)
			timed_out = pthread_cond_timedwait(&bm->cond, &bm->lock, &ts) != 0;
		if (bm->stop)
			break;
		if (bm->set_wanted) {
			do_set(r);
			continue;
		}
		if (bm->sweep_req != bm->sweep_done || timed_out) {
			uint64_t req = bm->sweep_req;

			do_sweep(r);
			bm->sweep_done = req;
			pthread_cond_broadcast(&bm->swept);
		}
	}
	pthread_mutex_unlock(&bm->lock);
	return NULL;
}

int bitmap_open(struct raid *r)
{
	struct raid_bitmap *bm;
	uint64_t rows = r->g.member_size / r->g.strip;
	int rc;

	if (!r->sb.bitmap_size || !raid_redundancy(&r->g))
		return 0;
	bm = calloc(1, sizeof(*bm));
	if (!bm)
		return -ENOMEM;
	bm->off = r->sb.bitmap_offset;
	bm->region_rows = r->sb.bitmap_region / r->g.strip;
	bm->nregions = (rows + bm->region_rows - 1) / bm->region_rows;
	bm->used = raid_bitmap_bytes(&r->sb);
	/* a set of this version, or one that has room for the second image */
	bm->hot = (r->sb.bitmap_flags & RAID_BM_HOT) || 2 * bm->used <= r->sb.bitmap_size;
	bm->hot_disk = r->sb.bitmap_flags & RAID_BM_HOT;
	bm->naway = bm->hot ? (uint32_t)MIN(r->sb.bitmap_size / bm->used - 2,
					    (uint64_t)RAID_BM_AWAY_MAX) : 0;
	bm->wlen = (bm->hot ? 2 + bm->naway : 1) * bm->used;
	for (uint32_t k = 0; k < RAID_BM_AWAY_MAX; k++)
		bm->away[k].slot = -1;
	for (uint32_t k = 0; k < bm->naway; k++) {
		bm->away[k].img = calloc(1, bm->used);
		bm->away[k].st = calloc(bm->nregions, 1);
		if (!bm->away[k].img || !bm->away[k].st)
			goto free_bm;
	}
	/* the images the superblocks name (loaded by bitmap_keep) */
	for (uint32_t i = 0; i < r->g.nmembers && bm->hot_disk; i++)
		if (r->sb.bitmap_away[i] && r->sb.bitmap_away[i] <= bm->naway)
			bm->away[r->sb.bitmap_away[i] - 1].slot = (int)i;
	bm->partial_below = UINT64_MAX;
	bm->img = aligned_alloc(4096, bm->used);
	bm->himg = aligned_alloc(4096, bm->used);
	bm->wbuf = aligned_alloc(4096, bm->wlen);
	bm->state = calloc(bm->nregions, 1);
	bm->hstate = calloc(bm->nregions, 1);
	bm->touched = calloc(bm->nregions, 1);
	bm->inflight = calloc(bm->nregions, sizeof(uint32_t));
	if (!bm->img || !bm->himg || !bm->wbuf || !bm->state || !bm->hstate || !bm->touched ||
	    !bm->inflight)
		goto free_bm;
	memset(bm->img, 0, bm->used);
	memset(bm->himg, 0, bm->used);
	pthread_mutex_init(&bm->lock, NULL);
	pthread_cond_init(&bm->cond, NULL);
	pthread_cond_init(&bm->swept, NULL);
	list_init(&bm->waiting);
	r->bm = bm;
	rc = pthread_create(&bm->thread, NULL, bm_thread, r);
	if (!rc)
		return 0;
	r->bm = NULL;
	pthread_cond_destroy(&bm->swept);
	pthread_cond_destroy(&bm->cond);
	pthread_mutex_destroy(&bm->lock);
	rc = -rc;
	goto free_arrays;
free_bm:
	rc = -ENOMEM;
free_arrays:
	for (uint32_t k = 0; k < bm->naway; k++) {
		free(bm->away[k].img);
		free(bm->away[k].st);
	}
	free(bm->img);
	free(bm->himg);
	free(bm->wbuf);
	free(bm->state);
	free(bm->hstate);
	free(bm->touched);
	free(bm->inflight);
	free(bm);
	return rc;
}

void bitmap_close(struct raid *r)
{
	struct raid_bitmap *bm = r->bm;

	if (!bm)
		return;
	pthread_mutex_lock(&bm->lock);
	bm->stop = true;
	pthread_cond_signal(&bm->cond);
	pthread_mutex_unlock(&bm->lock);
	pthread_join(bm->thread, NULL);
	pthread_cond_destroy(&bm->swept);
	pthread_cond_destroy(&bm->cond);
	pthread_mutex_destroy(&bm->lock);
	for (uint32_t k = 0; k < bm->naway; k++) {
		free(bm->away[k].img);
		free(bm->away[k].st);
	}
	free(bm->img);
	free(bm->himg);
	free(bm->wbuf);
	free(bm->state);
	free(bm->hstate);
	free(bm->touched);
	free(bm->inflight);
	free(bm->resync);
	free(bm->partial);
	free(bm);
	r->bm = NULL;
}

int bitmap_write_start(struct raid_io *rio)
{
	struct raid *r = rio->r;
	struct raid_bitmap *bm = r->bm;
	uint64_t reg;

	if (!bm || rio->bm_held)
		return 0;
	reg = region_of(r, rio->bio->offset);
	pthread_mutex_lock(&bm->lock);
	if (region_ready(bm, reg)) {
		bm->inflight[reg]++;
		bm->touched[reg] = 1;
		rio->bm_held = true;
		pthread_mutex_unlock(&bm->lock);
		return 0;
	}
	if (bm->state[reg] == BM_CLEAN) {
		bm->state[reg] = BM_SETTING;
		bit_set(bm->img, reg, true);
		bm->set_wanted = true;
	}
	if (bm->hot && bm->hstate[reg] == BM_CLEAN) {
		bm->hstate[reg] = BM_SETTING;
		bit_set(bm->himg, reg, true);
		bm->set_wanted = true;
	}
	for (uint32_t k = 0; k < bm->naway; k++)
		if (bm->away[k].slot >= 0 && bm->away[k].st[reg] == BM_CLEAN) {
			bm->away[k].st[reg] = BM_SETTING;
			bit_set(bm->away[k].img, reg, true);
			bm->set_wanted = true;
		}
	if (bm->set_wanted)
		pthread_cond_signal(&bm->cond);
	list_add_tail(&rio->wait_link, &bm->waiting);
	pthread_mutex_unlock(&bm->lock);
	return 1;
}

void bitmap_write_end(struct raid_io *rio)
{
	struct raid_bitmap *bm = rio->r->bm;
	uint64_t reg;

	if (!bm || !rio->bm_held)
		return;
	reg = region_of(rio->r, rio->bio->offset);
	pthread_mutex_lock(&bm->lock);
	bm->inflight[reg]--;
	bm->touched[reg] = 1;
	pthread_mutex_unlock(&bm->lock);
	rio->bm_held = false;
}

/* OR image `img` (0, or 1: the hot one) of the members present into dst
 * (bm->used bytes). */
static int read_or(struct raid *r, struct blkdev **slots, uint8_t *dst, int img)
{
	struct raid_bitmap *bm = r->bm;
	uint8_t *buf = aligned_alloc(4096, bm->used);
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (uint32_t i = 0; i < r->g.nmembers && !rc; i++) {
		if (!slots[i])
			continue;
		rc = blk_sync_io(slots[i], BIO_READ, 0, bm->off + (uint64_t)img * bm->used, buf,
				 bm->used);
		for (uint64_t b = 0; !rc && b < bm->used; b++)
			dst[b] |= buf[b];
	}
	free(buf);
	return rc;
}

/* Under bm->lock: the bits of src are DIRTY, in memory and (already) on disk. */
static void keep_bits(struct raid_bitmap *bm, const uint8_t *src)
{
	for (uint64_t i = 0; i < bm->nregions; i++)
		if (bit_get(src, i)) {
			bit_set(bm->img, i, true);
			bm->state[i] = BM_DIRTY;
		}
}

int bitmap_keep(struct raid *r, struct blkdev **slots)
{
	struct raid_bitmap *bm = r->bm;
	uint8_t *bits;
	uint64_t n = 0;
	int rc;

	if (!bm)
		return 0;
	bits = calloc(1, bm->used);
	if (!bits)
		return -ENOMEM;
	rc = read_or(r, slots, bits, 0);
	if (!rc) {
		pthread_mutex_lock(&bm->lock);
		keep_bits(bm, bits);
		for (uint64_t i = 0; i < bm->nregions; i++)
			n += bm->state[i] == BM_DIRTY;
		pthread_mutex_unlock(&bm->lock);
		LOG_INFO(LS_RAID, "%s: degraded: bitmap: %llu of %llu regions written while a "
			 "member was away, kept", r->bd.name, (unsigned long long)n,
			 (unsigned long long)bm->nregions);
	}
	/* each slot's own image (the superblocks name it: it is on disk) */
	for (uint32_t k = 0; k < bm->naway && !rc; k++) {
		struct bm_away *a = &bm->away[k];

		if (a->slot < 0)
			continue;
		memset(bits, 0, bm->used);
		rc = read_or(r, slots, bits, 2 + (int)k);
		if (rc)
			break;
		n = 0;
		pthread_mutex_lock(&bm->lock);
		for (uint64_t i = 0; i < bm->nregions; i++)
			if (bit_get(bits, i)) {
				bit_set(a->img, i, true);
				a->st[i] = BM_DIRTY;
				n++;
			}
		pthread_mutex_unlock(&bm->lock);
		LOG_INFO(LS_RAID, "%s: bitmap: %llu regions written since member %d left", r->bd.name,
			 (unsigned long long)n, a->slot);
	}
	free(bits);
	return rc;
}

int bitmap_load(struct raid *r, struct blkdev **slots)
{
	struct raid_bitmap *bm = r->bm;
	uint64_t n = 0;
	int rc = 0;

	if (!bm)
		return 0;
	bm->resync = calloc(1, bm->used);
	if (!bm->resync)
		return -ENOMEM;
	/* the hot image when the superblocks say it is kept, else the first */
	rc = read_or(r, slots, bm->resync, bm->hot_disk ? 1 : 0);
	for (uint64_t i = 0; i < bm->nregions; i++)
		n += bit_get(bm->resync, i);
	if (!rc)
		LOG_INFO(LS_RAID, "%s: bitmap: %llu of %llu regions to resynchronize%s", r->bd.name,
			 (unsigned long long)n, (unsigned long long)bm->nregions,
			 bm->hot_disk ? " (writes in flight)" : "");
	return rc;
}

bool bitmap_row_dirty(struct raid *r, uint64_t row)
{
	struct raid_bitmap *bm = r->bm;

	if (!bm || !bm->resync)
		return true;
	return bit_get(bm->resync, row / bm->region_rows);
}

int bitmap_reset(struct raid *r)
{
	struct raid_bitmap *bm = r->bm;
	int rc;

	if (!bm)
		return 0;
	pthread_mutex_lock(&bm->lock);
	/* degraded: the regions stay marked for the member that left */
	if (bm->resync && !set_whole(r)) {
		keep_bits(bm, bm->resync);
		/* the writes in flight at the crash: missed by those away too */
		for (uint32_t k = 0; k < bm->naway; k++)
			for (uint64_t i = 0; i < bm->nregions && bm->away[k].slot >= 0; i++)
				if (bit_get(bm->resync, i)) {
					bit_set(bm->away[k].img, i, true);
					bm->away[k].st[i] = BM_DIRTY;
				}
	}
	fill_wbuf(bm);		/* nothing written yet: zeros or kept, hot zeros */
	rc = write_all(r, true);
	free(bm->resync);
	bm->resync = NULL;
	pthread_mutex_unlock(&bm->lock);
	return rc;
}

int bitmap_partial_begin(struct raid *r, int slot, uint64_t *nregions)
{
	struct raid_bitmap *bm = r->bm;
	const uint8_t *st;
	uint64_t n = 0;

	if (!bm)
		return -EINVAL;
	pthread_mutex_lock(&bm->lock);
	if (!bm->partial)
		bm->partial = calloc(1, bm->used);
	if (!bm->partial) {
		pthread_mutex_unlock(&bm->lock);
		return -ENOMEM;
	}
	memset(bm->partial, 0, bm->used);
	bm->partial_below = UINT64_MAX;
	st = bm->state;		/* the first image, or the slot's own */
	for (uint32_t k = 0; k < bm->naway; k++)
		if (bm->away[k].slot == slot)
			st = bm->away[k].st;
	for (uint64_t i = 0; i < bm->nregions; i++)
		if (st[i] != BM_CLEAN) {
			bit_set(bm->partial, i, true);
			n++;
		}
	pthread_mutex_unlock(&bm->lock);
	if (nregions)
		*nregions = n;
	return 0;
}

bool bitmap_partial_row(struct raid *r, uint64_t row)
{
	struct raid_bitmap *bm = r->bm;

	if (!bm || !bm->partial)
		return true;
	return row < bm->partial_below && bit_get(bm->partial, row / bm->region_rows);
}

int bitmap_slot_left(struct raid *r, uint32_t slot)
{
	struct raid_bitmap *bm = r->bm;
	struct bm_away *a = NULL;
	uint64_t want;

	if (!bm || !bm->hot)
		return 0;
	pthread_mutex_lock(&bm->lock);
	for (uint32_t k = 0; k < bm->naway; k++)
		if (bm->away[k].slot == (int)slot) {
			pthread_mutex_unlock(&bm->lock);
			return (int)k + 1;
		}
	for (uint32_t k = 0; k < bm->naway && !a; k++)
		if (bm->away[k].slot < 0)
			a = &bm->away[k];
	if (!a) {
		pthread_mutex_unlock(&bm->lock);
		LOG_INFO(LS_RAID, "%s: bitmap: no image left for member %u: the shared one keeps "
			 "what it misses", r->bd.name, slot);
		return 0;
	}
	/* the hot regions: writes that may have been in flight when it left */
	a->slot = (int)slot;
	memcpy(a->img, bm->himg, bm->used);
	memcpy(a->st, bm->hstate, bm->nregions);
	/* on every member before the superblocks name it */
	want = ++bm->set_seq;
	bm->set_wanted = true;
	pthread_cond_signal(&bm->cond);
	while (bm->set_done < want && !bm->stop)
		pthread_cond_wait(&bm->swept, &bm->lock);
	pthread_mutex_unlock(&bm->lock);
	return (int)(a - bm->away) + 1;
}

void bitmap_slot_back(struct raid *r, uint32_t slot)
{
	struct raid_bitmap *bm = r->bm;

	if (!bm)
		return;
	pthread_mutex_lock(&bm->lock);
	for (uint32_t k = 0; k < bm->naway; k++)
		if (bm->away[k].slot == (int)slot) {
			bm->away[k].slot = -1;
			memset(bm->away[k].img, 0, bm->used);
			memset(bm->away[k].st, 0, bm->nregions);
			/* writes waiting only for it go at the next set */
			if (!list_empty(&bm->waiting)) {
				bm->set_wanted = true;
				pthread_cond_signal(&bm->cond);
			}
		}
	pthread_mutex_unlock(&bm->lock);
}

bool bitmap_hot(struct raid *r)
{
	return r->bm && r->bm->hot;
}

int bitmap_partial_hot(struct raid *r, uint64_t below, uint64_t *nregions)
{
	struct raid_bitmap *bm = r->bm;
	uint64_t n = 0;

	if (!bm || !bm->resync || !bm->hot_disk)
		return -EINVAL;
	pthread_mutex_lock(&bm->lock);
	if (!bm->partial)
		bm->partial = calloc(1, bm->used);
	if (!bm->partial) {
		pthread_mutex_unlock(&bm->lock);
		return -ENOMEM;
	}
	memcpy(bm->partial, bm->resync, bm->used);
	bm->partial_below = below;
	for (uint64_t i = 0; i < bm->nregions && i * bm->region_rows < below; i++)
		n += bit_get(bm->partial, i);
	pthread_mutex_unlock(&bm->lock);
	if (nregions)
		*nregions = n;
	return 0;
}

void bitmap_sweep_hold(struct raid *r, bool hold)
{
	struct raid_bitmap *bm = r->bm;

	if (!bm)
		return;
	pthread_mutex_lock(&bm->lock);
	if (hold)
		bm->nosweep++;
	else
		bm->nosweep--;
	pthread_mutex_unlock(&bm->lock);
}

void bitmap_partial_end(struct raid *r)
{
	struct raid_bitmap *bm = r->bm;

	if (!bm)
		return;
	pthread_mutex_lock(&bm->lock);
	free(bm->partial);
	bm->partial = NULL;
	bm->partial_below = UINT64_MAX;
	pthread_mutex_unlock(&bm->lock);
}

int raid_bitmap_clear_idle(struct blkdev *bd, uint64_t *cleared)
{
	struct raid *r;
	struct raid_bitmap *bm;
	uint64_t want;

	if (!blk_is_raid(bd))
		return -EINVAL;
	r = container_of(bd, struct raid, bd);
	bm = r->bm;
	if (!bm)
		return -EINVAL;
	pthread_mutex_lock(&bm->lock);
	want = ++bm->sweep_req;
	pthread_cond_signal(&bm->cond);
	while (bm->sweep_done < want)
		pthread_cond_wait(&bm->swept, &bm->lock);
	if (cleared)
		*cleared = bm->cleared;
	pthread_mutex_unlock(&bm->lock);
	return 0;
}

int raid_bitmap_dirty_regions(struct blkdev *bd, uint64_t *dirty, uint64_t *total)
{
	struct raid *r;
	struct raid_bitmap *bm;
	uint64_t n = 0;

	if (!blk_is_raid(bd))
		return -EINVAL;
	r = container_of(bd, struct raid, bd);
	bm = r->bm;
	if (!bm)
		return -EINVAL;
	pthread_mutex_lock(&bm->lock);
	for (uint64_t i = 0; i < bm->nregions; i++)
		n += bm->state[i] != BM_CLEAN;
	if (total)
		*total = bm->nregions;
	pthread_mutex_unlock(&bm->lock);
	if (dirty)
		*dirty = n;
	return 0;
}
