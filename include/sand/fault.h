/* SPDX-License-Identifier: MIT */
/*
 * The fault filter: a block device stacked on any other one, which passes
 * I/O through and, when told to, fails it, delays it, counts it, or
 * simulates a power cut. Crash tests and RAID tests put it under the layer
 * they test. doc/fault.md says what it models and how to use it.
 *
 * Every control below is thread-safe: a test thread (or the daemon's RPC
 * thread) may call it while reactor loops do I/O. Controls return 0 or
 * -errno, and -EINVAL when bd is not a fault device. An errno argument is
 * given negative (-EIO, -ENOSPC ...); 0 means -EIO.
 *
 * Power cuts. With recording on, every write (WRITE, WRITE_ZEROES, DISCARD)
 * is "at risk" from the moment it reaches the lower device until a FLUSH
 * submitted after it completed has completed. Before an at-risk write is
 * sent down, the filter reads what it is about to overwrite (the pre-image)
 * and keeps it in memory. fault_power_cut() then decides, for each write at
 * risk, to keep it, drop it or tear it (block by block), rewrites the lower
 * device so that every block holds the value it held after the newest write
 * kept at that block (or, if none, its value at the last flush), and turns
 * the device off: every I/O fails with -EIO, including I/O that was in
 * flight, until fault_power_restore(). A FUA write is durable when it ends,
 * so it is never at risk (it still orders the writes around it).
 *
 * Memory: each write at risk holds a copy of the blocks it overwrote (its
 * length in bytes, plus about 150 bytes), until a flush or a cut releases
 * it. The total is capped (fault_set_record_limit, default 256 MiB); a write
 * that would pass the cap ends with -ENOMEM. Overlapping recorded writes are
 * serialized (the newer waits until the older one has reached the lower
 * device), so each pre-image is exactly what the older write left.
 */
#ifndef SAND_FAULT_H
#define SAND_FAULT_H

#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>
#include "sand/blkdev.h"

/* Op masks. */
#define FAULT_OP(op)		(1u << (op))
#define FAULT_OPS_ALL		((1u << BIO_OP_MAX) - 1)
#define FAULT_OPS_WRITE		(FAULT_OP(BIO_WRITE) | FAULT_OP(BIO_WRITE_ZEROES) | \
				 FAULT_OP(BIO_DISCARD))

/*
 * Create a fault device over lower: same size, block size, io_boundary,
 * max_io and read-only flag. Its channels open a channel on lower for the
 * same loop. Closing it (blkdev_close) does not close lower; lower must
 * outlive it.
 */
int blk_fault_create(const char *name, struct blkdev *lower, struct blkdev **out);
bool blk_is_fault(const struct blkdev *bd);
struct blkdev *fault_lower(struct blkdev *bd);

/* ---- failing I/O ----
 * A bio that a rule fails never reaches the lower device; it ends with the
 * rule's errno (after the latency, if one is set). Rules are checked in this
 * order: fail-after, ranges (oldest first), random. */

/* The next n I/Os whose op is in op_mask pass; every later one fails with
 * err, until fault_clear(). */
int fault_fail_after(struct blkdev *bd, uint64_t n, uint32_t op_mask, int err);

struct fault_rule {
	uint64_t	offset;		/* bytes */
	uint64_t	len;		/* bytes; 0: to the end of the device */
	uint32_t	op_mask;	/* FLUSH matches whatever the range */
	int		err;		/* 0: -EIO */
	bool		one_shot;	/* removed after the first I/O it fails */
};
/* Fail I/O that overlaps [offset, offset+len). Returns a rule id (>= 0). */
int fault_add_rule(struct blkdev *bd, const struct fault_rule *r);
/* -ENOENT if the rule is gone (a one-shot rule that fired is gone). */
int fault_del_rule(struct blkdev *bd, int id);

/* Fail each I/O whose op is in op_mask with probability prob (0..1), drawn
 * from a generator seeded with seed: the same I/O sequence gives the same
 * failures. prob 0 turns it off. */
int fault_set_random(struct blkdev *bd, double prob, uint64_t seed,
		     uint32_t op_mask, int err);

/* Remove every error rule: fail-after, ranges, random. */
int fault_clear(struct blkdev *bd);

/* ---- latency ----
 * Delay the completion of every I/O whose op is in op_mask by ns
 * nanoseconds (counted from when the lower device ended it). 0: none. */
int fault_set_latency(struct blkdev *bd, uint64_t ns, uint32_t op_mask);

/* ---- counters ---- */
struct fault_stats {
	uint64_t	ios[BIO_OP_MAX];	/* I/Os submitted, per op */
	uint64_t	injected;		/* errors injected by rules */
	uint64_t	at_risk;		/* = fault_unflushed_count() */
	uint64_t	held_bytes;		/* pre-image bytes held */
	uint64_t	cuts;			/* power cuts so far */
	/* the last cut's decisions */
	uint32_t	last_kept, last_dropped, last_torn;
};
int fault_get_stats(struct blkdev *bd, struct fault_stats *st);
int fault_reset_stats(struct blkdev *bd);	/* ios and injected */

/* ---- power cut ---- */

/* Start or stop recording writes. Starting takes the present contents as
 * durable (as if a flush had just completed); call it with no write in
 * flight. Stopping forgets every write at risk. */
int fault_record(struct blkdev *bd, bool on);
int fault_set_record_limit(struct blkdev *bd, uint64_t bytes);

/* Writes at risk (landed on the lower device, not yet flushed, not FUA),
 * oldest first: the order the cut's choice list follows. */
long fault_unflushed_count(struct blkdev *bd);
struct fault_write {
	enum bio_op	op;
	uint64_t	offset, len;	/* bytes */
};
/* Fill up to max entries; returns how many writes are at risk. */
long fault_unflushed_list(struct blkdev *bd, struct fault_write *out, size_t max);

enum fault_action {
	FAULT_KEEP = 0,		/* every block of the write is new */
	FAULT_DROP,		/* every block is old */
	FAULT_TEAR,		/* some blocks new, the rest old */
};

struct fault_choice {
	enum fault_action action;
	/* FAULT_TEAR: bit i (byte i / 8, bit i % 8) set = block i of the
	 * write is new. NULL: each block new with probability 1/2, drawn
	 * from the policy's seed. */
	const uint8_t	*tear_map;
};

enum fault_cut_mode {
	FAULT_CUT_RANDOM = 0,	/* each write kept, dropped or torn, 1/3 each */
	FAULT_CUT_DROP_ALL,	/* back to the state at the last flush */
	FAULT_CUT_KEEP_ALL,	/* everything landed: only the power goes */
	FAULT_CUT_LIST,		/* choices[i] for the i-th write at risk */
};

struct fault_cut_policy {
	enum fault_cut_mode	mode;
	uint64_t		seed;		/* RANDOM, and NULL tear maps */
	const struct fault_choice *choices;	/* LIST: writes beyond nchoices are dropped */
	size_t			nchoices;
};

/*
 * Simulate losing power (policy NULL: drop all). Synchronous: it turns the
 * device off at once (new I/O fails with -EIO), waits for writes already
 * sent to the lower device to end, then rewrites the lower device through a
 * private loop and channel (as blk_sync_io does) and flushes it.
 *
 * When to call it: from any thread that is not running one of the device's
 * loops; or from the thread that runs them, when no write of this device is
 * in flight on the lower device (a write still reading its pre-image, or
 * whose completion is only delayed by latency, is fine: it ends later with
 * -EIO). Otherwise the wait never ends. Returns -EALREADY if the power is
 * already off, -EINVAL for a bad policy (the power stays on). If rewriting
 * the lower device fails, the error is returned, the device stays off and
 * what the lower device holds is undefined.
 */
int fault_power_cut(struct blkdev *bd, const struct fault_cut_policy *policy);
/* Power on again: I/O works; no write is at risk. -EBUSY while a cut is
 * still rewriting the lower device. */
int fault_power_restore(struct blkdev *bd);
bool fault_powered(struct blkdev *bd);

#endif
