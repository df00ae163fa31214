/* SPDX-License-Identifier: MIT */
/*
 * The write-intent bitmap of redundant sets (raid_bitmap.c): one bit per
 * region of `bitmap_region` member bytes, set on every member (FUA) before
 * the first write to a clean region, cleared lazily once the region has
 * been idle and flushed. After an unclean shutdown only the rows of dirty
 * regions are resynchronized.
 */
#ifndef SAND_RAID_BITMAP_H
#define SAND_RAID_BITMAP_H

#include "raid/raid_int.h"

/* The region size for a set: the wanted size (0: 64 MiB, at most a 64th
 * of the member) rounded up to a
 * multiple of the strip, doubled until the bitmap area holds every bit. */
uint64_t bitmap_region_size(uint64_t want, uint32_t strip, uint64_t member_size,
			    uint64_t bitmap_bytes);

/* raid_create: a clean bitmap on every member. Synchronous. */
int bitmap_format(struct blkdev **members, uint32_t n, uint64_t off, uint64_t size);

/* Set up r->bm (nothing when the superblock has no bitmap) and its thread. */
int bitmap_open(struct raid *r);
void bitmap_close(struct raid *r);

/* A write is about to start: 0, go on (the region's bit is on disk);
 * 1, queued: the level's submit_rw runs once the bit is on disk. */
int bitmap_write_start(struct raid_io *rio);
/* From rio_finish: a write counted by bitmap_write_start ended. */
void bitmap_write_end(struct raid_io *rio);

/* At assembly of a set not shut down cleanly: read the bitmaps of the
 * members present (slots, NULL when missing), OR them: the rows to
 * resynchronize (the hot images when the superblocks say they were kept,
 * else the first ones). Synchronous. */
int bitmap_load(struct raid *r, struct blkdev **slots);
/* Is row `row` to be resynchronized? (true when there is no bitmap) */
bool bitmap_row_dirty(struct raid *r, uint64_t row);
/* After the resync: flush the members, then write a clean bitmap (on a
 * degraded set, the loaded bits stay: a member that left may come back). */
int bitmap_reset(struct raid *r);
/* At assembly of a degraded set: the members' bits (OR) become the
 * in-memory bitmap, so writes keep them and no sweep clears them. */
int bitmap_keep(struct raid *r, struct blkdev **slots);

/* A member comes back (raid_rebuild.c): snapshot the regions not clean now
 * (the member state already REBUILDING, so every later write reaches it):
 * the rows its rebuild walks: those of the slot's own image if it has one,
 * else of the first. *nregions: how many. */
int bitmap_partial_begin(struct raid *r, int slot, uint64_t *nregions);
/* Is row `row` in the snapshot? (true without one) */
bool bitmap_partial_row(struct raid *r, uint64_t row);
void bitmap_partial_end(struct raid *r);

/* The set keeps the hot image (RAID_BM_HOT): raid_open sets the flag. */
bool bitmap_hot(struct raid *r);
/* At assembly of a set not shut down cleanly, after bitmap_load, when the
 * superblocks say the hot image was kept: the snapshot (as
 * bitmap_partial_begin) is the hot regions (writes in flight at the crash),
 * rows below `below` only. -EINVAL: no such image. */
int bitmap_partial_hot(struct raid *r, uint64_t below, uint64_t *nregions);
/* Under sb_lock, when slot `slot` left (its left_gen is being recorded):
 * give it an image of its own, written to every member before this
 * returns. k + 1 (image k, for raid_sb.bitmap_away), or 0: none (no room,
 * no hot image), the first image serves. Again for the same slot: its
 * image. */
int bitmap_slot_left(struct raid *r, uint32_t slot);
/* The slot is active again, or a new disk took it: its image is free. */
void bitmap_slot_back(struct raid *r, uint32_t slot);
/* Hold (and release) the sweep: no bit is cleared meanwhile. */
void bitmap_sweep_hold(struct raid *r, bool hold);

#endif
