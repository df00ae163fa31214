/* SPDX-License-Identifier: MIT */
/*
 * RAID sets: a block device over member block devices, RAID 0, 1, 10, 5
 * (left-symmetric, md's default) and 6 (P+Q, left-symmetric), parity with
 * ISA-L. doc/raid.md describes the on-disk format and what is not done yet.
 *
 * Three layers, each usable alone (and unit-tested alone):
 *  - member superblocks (raid_sb_*): encode/decode/validate one copy, read
 *    and write both copies of a member;
 *  - address maps (raid_map, raid_unmap, raid_stripe_cols): pure arithmetic;
 *  - parity (raid_parity_gen, raid_recover): ISA-L xor_gen / pq_gen and
 *    GF(2^8) matrix inversion for one or two lost columns;
 * and the block device itself (raid_create, raid_assemble).
 */
#ifndef SAND_RAID_H
#define SAND_RAID_H

#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>
#include "sand/blkdev.h"

#define RAID_MAX_MEMBERS	32

enum raid_level {
	RAID_LEVEL_0 = 0,
	RAID_LEVEL_1 = 1,
	RAID_LEVEL_10 = 10,
	RAID_LEVEL_5 = 5,
	RAID_LEVEL_6 = 6,
};

/* ------------------------------------------------------------ geometry */

struct raid_geom {
	enum raid_level	level;
	uint32_t	nmembers;
	uint32_t	strip;		/* bytes, a power of two, >= block size */
	uint64_t	member_size;	/* data bytes per member, a multiple of strip */
};

/* 0 if the level, member count and strip make sense, else -EINVAL. */
int raid_geom_check(const struct raid_geom *g);
/* Data columns per stripe: n (0), 1 (1), n/2 (10), n-1 (5), n-2 (6). */
uint32_t raid_data_cols(const struct raid_geom *g);
/* Redundancy: how many members may fail (0, n-1, 1 per pair, 1, 2). */
uint32_t raid_redundancy(const struct raid_geom *g);
/* The set's size in bytes. */
uint64_t raid_geom_size(const struct raid_geom *g);

struct raid_loc {
	uint32_t	member;		/* the member holding the data (first mirror) */
	uint64_t	moff;		/* offset inside the member's data area */
	uint64_t	stripe;		/* stripe (row) number */
	uint32_t	col;		/* data column inside the stripe */
};
/* Pool offset -> where the byte lives. off < raid_geom_size(). */
void raid_map(const struct raid_geom *g, uint64_t off, struct raid_loc *out);
/* Member offset -> pool offset. -ENOENT when it holds parity (5, 6). For
 * mirrors every copy maps back to the same pool offset. */
int raid_unmap(const struct raid_geom *g, uint32_t member, uint64_t moff, uint64_t *off);
/*
 * The members of stripe `stripe`, by column. 5 and 6: cols[0..k-1] hold
 * data columns 0..k-1, then P, then (6) Q. 0: cols[i] = i. 1: every
 * mirror. 10: data column j is mirrored on cols[2j] and cols[2j+1].
 * Returns the number of entries filled (nmembers).
 */
uint32_t raid_stripe_cols(const struct raid_geom *g, uint64_t stripe, uint32_t *cols);

/* ------------------------------------------------------------ parity */

/*
 * bufs[0..k-1] data, bufs[k] P, and for RAID 6 bufs[k+1] Q; len a multiple
 * of 32, buffers 32-byte aligned. Q = sum over j of g^j * D_j in GF(2^8)
 * with polynomial 0x11d and g = 2 (as Linux md and ISA-L pq_gen).
 */
int raid_parity_gen(int nparity, int k, size_t len, uint8_t **bufs);
/*
 * Rebuild the lost columns (indices into bufs as above, one or two, at most
 * nparity) from the others. Returns 0, or -EINVAL when it cannot.
 */
int raid_recover(int nparity, int k, size_t len, uint8_t **bufs,
		 const int *lost, int nlost);

/* ------------------------------------------------------------ superblocks */

#define RAID_SB_MAGIC		"SANDRAID"
#define RAID_SB_MAJOR		1
#define RAID_SB_MINOR		4	/* 1.1: flags; 1.2: PPL, bitmap; 1.3: left, scrub;
					 * 1.4: bitmap_flags */
#define RAID_SB_SIZE		4096u	/* one copy */
#define RAID_SB_COPY_OFF(i)	((uint64_t)(i) * RAID_SB_SIZE)	/* copies at 0 and 4 KiB */
#define RAID_DATA_OFFSET	(1024u * 1024)	/* data starts 1 MiB into a member (or later) */
#define RAID_BITMAP_OFFSET	(8u * 1024)	/* 1.2: write-intent bitmap, to 64 KiB */
#define RAID_PPL_OFFSET		(64u * 1024)	/* 1.2: partial parity log, to the data */

enum raid_member_state {
	RAID_MEMBER_NONE = 0,
	RAID_MEMBER_ACTIVE = 1,
	RAID_MEMBER_FAILED = 2,
	RAID_MEMBER_REBUILDING = 3,	/* written, not read until rebuilt */
};

/* Set by the first write after the set opens, cleared when it closes: a
 * set assembled dirty may have stripes whose parity (or mirrors) a crash
 * left behind, and is resynchronized. */
#define RAID_SB_DIRTY		(1u << 0)

/* Per slot flags (1.3). PARTIAL: the slot's rebuild covers only the regions
 * of the write-intent bitmap (the member came back, raid.md "Re-adding a
 * member"); INCOMPLETE: the member holds part of the data only (a full
 * rebuild that has not ended), so it can never come back partially. */
#define RAID_SLOT_PARTIAL	(1u << 0)
#define RAID_SLOT_INCOMPLETE	(1u << 1)

/* Scrub state (1.3): a scrub runs (and resumes at assembly from
 * scrub_cursor), with --repair. */
#define RAID_SCRUB_RUNNING	(1u << 0)
#define RAID_SCRUB_REPAIR	(1u << 1)
/* Bitmap layout (1.4). HOT: the bitmap area holds a second image right
 * after the first: the write-intent bits proper (regions that may have
 * writes in flight, cleared when idle even while the set is degraded); the
 * first image keeps its 1.2 meaning (those, and every region written while
 * a member was away). Only code that keeps both sets the flag, and older
 * code writes it zero: so it is never trusted stale. */
#define RAID_BM_HOT		(1u << 0)
/* Away images (1.4): after the hot image, up to this many more, each the
 * regions written since one slot left (raid_sb.bitmap_away). */
#define RAID_BM_AWAY_MAX	4

/* The decoded (host-order) superblock. */
struct raid_sb {
	uint32_t	major, minor;
	uint8_t		pool_uuid[16];
	uint8_t		member_uuid[16];
	uint32_t	index;		/* this member's slot */
	struct raid_geom geom;
	uint32_t	block_size;
	uint64_t	data_offset;	/* bytes from the start of the member */
	uint64_t	generation;
	uint32_t	flags;		/* RAID_SB_DIRTY */
	char		name[32];	/* the set's name, NUL-terminated */
	/* 1.2: the partial parity log (RAID 5/6) and the write-intent bitmap,
	 * bytes from the start of each member; size 0: none (older sets) */
	uint64_t	ppl_offset, ppl_size;
	uint64_t	ppl_epoch;	/* log entries of another epoch are stale */
	uint64_t	bitmap_offset, bitmap_size;
	uint64_t	bitmap_region;	/* member data bytes per bit */
	/* 1.3: a scrub in progress (RAID_SCRUB_*) and its cursor (rows done) */
	uint64_t	scrub_cursor;
	uint32_t	scrub_flags;
	uint32_t	bitmap_flags;	/* 1.4: RAID_BM_* */
	struct raid_sb_member {
		uint8_t	uuid[16];
		uint32_t state;		/* enum raid_member_state */
		uint64_t rebuilt;	/* REBUILDING: rows rebuilt so far (the cursor) */
		uint32_t flags;		/* 1.3: RAID_SLOT_* */
		/* 1.3: FAILED: the first generation written without this member
		 * while the write-intent bitmap kept every region written since
		 * (0: unknown, the member can only come back by a full rebuild) */
		uint64_t left_gen;
	} members[RAID_MAX_MEMBERS];
	/* 1.4, per slot: 0, or k + 1: away image k of the bitmap holds the
	 * regions written since the slot left (its left_gen); 0 with left_gen:
	 * the first image does, with whatever else was written while any
	 * member was away */
	uint8_t		bitmap_away[RAID_MAX_MEMBERS];
};

/* buf: RAID_SB_SIZE bytes. */
void raid_sb_encode(const struct raid_sb *sb, void *buf);
/* 0; -EINVAL (not ours: bad magic), -EBADMSG (checksum or a field out of
 * range), -EPROTONOSUPPORT (newer major version). A newer minor is accepted
 * with a warning. */
int raid_sb_decode(const void *buf, struct raid_sb *sb);
/* Synchronous (blk_sync_io), not from a reactor thread. Read both copies
 * and return the valid one with the higher generation; the error of the
 * first copy when neither is valid. */
int raid_sb_read(struct blkdev *bd, struct raid_sb *sb);
/* Write both copies, one after the other, each followed by a flush. */
int raid_sb_write(struct blkdev *bd, const struct raid_sb *sb);
/* CRC32C (Castagnoli), as iSCSI: ISA-L crc32_iscsi, seed ~0, final xor. */
uint32_t raid_crc32c(const void *buf, size_t len);
/* Bytes of one image of the write-intent bitmap (one bit per region, in
 * whole 4 KiB blocks); 0 without a bitmap. */
uint64_t raid_bitmap_bytes(const struct raid_sb *sb);

/* ------------------------------------------------------------ the set */

struct raid_opts {
	uint32_t	strip;		/* 0: 64 KiB */
	uint64_t	member_size;	/* 0: the largest the smallest member allows */
	/* RAID 5/6: bytes of partial parity log per member (0: the larger of
	 * 960 KiB and 8 entries of a full strip); no_ppl: none, the write hole
	 * stays open (for tests and experiments) */
	uint64_t	ppl_size;
	bool		no_ppl;
	/* 1, 10, 5, 6: member data bytes per write-intent bitmap bit (0: 64
	 * MiB; rounded up to a multiple of the strip, doubled until the
	 * bitmap holds every region); no_bitmap: none, a full resync after a
	 * crash */
	uint64_t	bitmap_region;
	bool		no_bitmap;
};

/*
 * Format members[0..n-1] as a new set (write their superblocks) and open it
 * as a block device named name. Members must outlive the set; they are
 * claimed by it and released when it is closed (blkdev_close). Synchronous.
 */
int raid_create(const char *name, enum raid_level level, struct blkdev **members,
		uint32_t n, const struct raid_opts *o, struct blkdev **out);
/*
 * Open a set from its members' superblocks, members given in any order.
 * Refuses (-EINVAL) members of different pools, (-ENODEV) a set missing
 * more members than its redundancy allows, naming what is missing in the
 * log. A member whose generation is older than the newest is stale and not
 * used. A redundant set with members missing or failed starts degraded. A
 * set that was not closed cleanly (RAID_SB_DIRTY) is recovered before this
 * returns: the partial parity log replayed (RAID 5/6, degraded), then the
 * regions marked in the write-intent bitmap resynchronized (every row for
 * a 1.1 set, which is not resynchronized when degraded).
 */
int raid_assemble(struct blkdev **members, uint32_t n, struct blkdev **out);
/* raid_assemble with the rebuild/scrub rate (bytes per second per member,
 * 0: unlimited) in force before any background job resumes */
int raid_assemble_rate(struct blkdev **members, uint32_t n, uint64_t rate,
		       struct blkdev **out);

/*
 * Replace the failed (or missing) member in slot `slot` with newdev and
 * rebuild it, while the set goes on serving I/O. Synchronous: returns when
 * the member is rebuilt (0) or the rebuild failed (-errno; the slot is then
 * failed again). Not from a reactor thread. newdev is claimed; the old
 * member is released (channels still open on it close when the set's
 * channels do). The new member is written by every write from the start,
 * and read only once rebuilt. raid_replace_start + raid_job_wait: a
 * rebuild interrupted by closing the set resumes when it is assembled.
 * -EBUSY: the slot is not failed, or another rebuild is running.
 */
int raid_replace(struct blkdev *bd, uint32_t slot, struct blkdev *newdev);

/*
 * Scrub: read every row while the set serves I/O, and check that parity
 * (RAID 5/6) matches the data and that mirrors (1/10) match each other.
 * *mismatches (may be NULL) counts rows that did not. With repair, parity
 * is written again from the data and mirrors copied from the first live
 * one (without checksums there is no telling which copy was right; md does
 * the same). Rows with a member down are skipped. Synchronous, not from a
 * reactor thread; -EINVAL on RAID 0.
 */
int raid_scrub(struct blkdev *bd, bool repair, uint64_t *mismatches);

/* ------------------------------------------------------------ background jobs
 * (raid_rebuild.c) Every set has one job thread: it rebuilds a slot being
 * rebuilt (raid_replace_start, a hot spare taken when a member fails, or a
 * rebuild resumed at assembly from the cursor in the superblocks), or runs a
 * scrub, one at a time, row by row under the stripe locks while the set
 * serves I/O. Rate-limited (raid_set_rate), and slowed down while the set
 * has foreground I/O. Rebuild progress is written to the superblocks about
 * once a second, so a set closed mid-rebuild resumes where it stopped.
 * Nothing here may be called from a reactor thread. */

enum raid_job_kind {
	RAID_JOB_NONE = 0,
	RAID_JOB_REBUILD,
	RAID_JOB_SCRUB,
};

struct raid_job_info {
	enum raid_job_kind kind;	/* running now, NONE: idle */
	int		slot;		/* REBUILD: the slot */
	bool		repair;		/* SCRUB: --repair */
	uint64_t	rows, rows_done;	/* a row: one strip on every member */
	uint64_t	bytes, bytes_done;	/* per member: rows * strip */
	uint64_t	started_row;	/* where this run started (a resumed rebuild or scrub: > 0) */
	bool		partial;	/* REBUILD: a member came back: only the regions it missed */
	uint64_t	rows_walked;	/* rows rebuilt (scrubbed) by this run; the others skipped */
	uint64_t	rate;		/* bytes per second per member, this run so far */
	uint64_t	eta;		/* seconds left, 0: unknown */
	uint64_t	mismatches;	/* SCRUB: rows found inconsistent so far */
	uint64_t	rate_limit;	/* bytes per second per member, 0: none */
	/* the last job that ended */
	enum raid_job_kind last_kind;
	int		last_slot;
	int		last_rc;	/* 0, -ECANCELED, -errno */
	uint64_t	last_mismatches;
	bool		last_repair;
	bool		last_partial;
	uint64_t	last_rows_walked;
	/* read errors repaired from redundancy, since the set opened */
	uint64_t	read_errors_fixed;
};

int raid_job_get(struct blkdev *bd, struct raid_job_info *ji);
/* Rebuild and scrub rate limit, bytes per second per member (0: none). */
int raid_set_rate(struct blkdev *bd, uint64_t bytes_per_sec);
/* Put newdev in failed (or missing) slot `slot` and start rebuilding it in
 * the background; returns once the new member states are on disk. -EBUSY:
 * the slot is not failed, or a rebuild or scrub runs. */
int raid_replace_start(struct blkdev *bd, uint32_t slot, struct blkdev *newdev);
/* Start a scrub in the background; -EBUSY if a job runs, -EINVAL on RAID 0. */
int raid_scrub_start(struct blkdev *bd, bool repair);
/* Stop a running scrub (-ENOENT: none runs). Rebuilds are not cancelled. */
int raid_scrub_cancel(struct blkdev *bd);
/* Wait until no job runs and none is due; the last job's status. */
int raid_job_wait(struct blkdev *bd);
/* Stop the job thread's current job (a rebuild keeps its cursor) and keep
 * it idle: call before blkdev_close when a job may run. */
void raid_jobs_stop(struct blkdev *bd);

/* Hot spares: claimed by the set; when a member fails (and the set can
 * still serve every block), the first spare takes its slot at once and is
 * rebuilt. -EINVAL: too small, or lacks what the set advertises. */
int raid_spare_add(struct blkdev *bd, struct blkdev *spare);
int raid_spare_remove(struct blkdev *bd, struct blkdev *spare);
/* The spares, up to max; returns how many there are. */
uint32_t raid_spares(struct blkdev *bd, struct blkdev **out, uint32_t max);
/* Take member `slot` out (maintenance, tests): it is failed and its state
 * written, as if it had failed. -EBUSY: the set could not serve every block
 * without it; -EALREADY: not active; -EINVAL: RAID 0. A spare, if any, takes
 * its place. */
int raid_fail(struct blkdev *bd, uint32_t slot);
/* The device in slot i (NULL: missing). */
struct blkdev *raid_member_dev(struct blkdev *bd, uint32_t i);

/* Read errors: a member read that fails with an error is served from
 * redundancy and the block written again; after this many read errors on
 * one member (or any failed rewrite) the member is failed. */
#define RAID_READ_ERROR_MAX	8

/*
 * Write-intent bitmap: clear now the bits of regions with no write in
 * flight and none since the previous sweep (the set's bitmap thread does it
 * every 5 s), after flushing every member. *cleared: regions cleared.
 * Synchronous; -EINVAL without a bitmap.
 */
int raid_bitmap_clear_idle(struct blkdev *bd, uint64_t *cleared);
/* Regions whose bit is set (or being set), of how many. */
int raid_bitmap_dirty_regions(struct blkdev *bd, uint64_t *dirty, uint64_t *total);

bool blk_is_raid(const struct blkdev *bd);
/* State of member slot i (enum raid_member_state), -EINVAL if not a set. */
int raid_member_state(struct blkdev *bd, uint32_t i);
/* Number of members failed or missing. */
int raid_degraded(struct blkdev *bd);
/* The current superblock generation. */
uint64_t raid_generation(struct blkdev *bd);

#endif
