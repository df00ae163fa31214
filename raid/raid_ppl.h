/* SPDX-License-Identifier: MIT */
/*
 * The partial parity log of RAID 5/6 sets (raid_ppl.c, doc/raid.md "No
 * write hole"): what raid_parity_io.c and raid.c call.
 *
 * A write to a stripe, once its new parity is computed and before any data
 * or parity is written, writes a log entry (FUA) to the ring of each live
 * parity member of the stripe: the partial parity of the rows it writes,
 * i.e. the parity of every data column except the live columns written in
 * the stripe since the stripe was last durable. After a crash the set is
 * assembled degraded, the parity of those rows is set again from the
 * partial parity and what the modified columns hold, so the parity agrees
 * with the data on the disks whichever writes landed, and a lost column
 * reads back as a value it really held.
 */
#ifndef SAND_RAID_PPL_H
#define SAND_RAID_PPL_H

#include "raid/raid_int.h"

#define PPL_HDR		4096u	/* an entry's header block */

/* Default log size per member for a strip (64 KiB strips: 960 KiB). */
uint64_t ppl_default_size(uint32_t strip);

/* Set up r->ppl for a RAID 5/6 set whose superblock has a log (else
 * nothing); the epoch in r->sb is raised (persisted with the dirty flag or
 * right after recovery). */
int ppl_open(struct raid *r);
void ppl_close(struct raid *r);

/* Columns (data column mask) written in the stripe since it was last durable,
 * on members alive now: a write must read (RCW) those it does not cover. */
uint64_t ppl_modset(struct raid *r, uint64_t stripe);

/*
 * Decide and build the entries of a write whose buffers hold the new stripe
 * (rio->d over rio->rs..re, parity computed). full: every data column is
 * written over the whole strip. Returns 0 (no entry needed: write the
 * data), 1 (entries built: ppl_submit them first), -EAGAIN (the log is full
 * until a flush), or -errno. From 0 or 1 on, ppl_done or ppl_cancel must
 * follow.
 */
int ppl_prepare(struct raid_io *rio, bool full);
/* Send the entries (FUA), counted in the caller's batch. Entries of
 * several writes of one channel to one member go out as one write (group
 * commit): one is sent at once, those arriving meanwhile wait for it to end
 * and then go together. */
void ppl_submit(struct raid_io *rio);
/* The channel's grouping state, at channel destruction. */
void ppl_chan_free(struct raid_chan *rc);
/* The write did not happen (its entries may be on disk): forget it. */
void ppl_cancel(struct raid_io *rio);
/* The write's member bios have ended. */
void ppl_done(struct raid_io *rio);
/*
 * Whole stripes [rio->stripe, + rio->rows) of a whole set written at once
 * (raid_parity_multi.c), unlogged: each stripe tracked as ppl_prepare
 * tracks an unlogged full-stripe write. -EBUSY when a stripe of them still
 * has an entry in a ring (it must be logged: the caller goes stripe by
 * stripe); else 0, and ppl_rows_done(rio, ended) must follow.
 */
int ppl_rows_track(struct raid_io *rio);
void ppl_rows_done(struct raid_io *rio, bool ended);

/* FLUSH: the write stamp before it is sent, and, when it succeeded on every
 * live member, what it made durable (entries become reusable). */
uint64_t ppl_flush_mark(struct raid *r);
void ppl_durable(struct raid *r, uint64_t mark);

/*
 * At assembly of a set that was not shut down cleanly: replay the entries
 * of the crashed epoch found on the members present (slots[i], NULL when
 * missing), with synchronous I/O. Returns the number of entries replayed,
 * or -errno.
 */
int ppl_recover(const struct raid_sb *sb, struct blkdev **slots);

#endif
