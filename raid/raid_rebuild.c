/* SPDX-License-Identifier: MIT */
/*
 * Background jobs of a RAID set: rebuild, scrub and hot spares.
 *
 * Every set has one job thread (started when the set opens, joined when it
 * closes). It sleeps until there is work, in this order:
 *  1. a slot in state REBUILDING: rebuild it, from the cursor the
 *     superblocks hold when the set was assembled cleanly with that slot
 *     half rebuilt, else from row 0;
 *  2. a failed slot while the set can still serve every block, and a hot
 *     spare: the spare takes the slot (new member UUID, state REBUILDING,
 *     written to the superblocks) and is rebuilt;
 *  3. a scrub asked for by raid_scrub_start.
 *
 * A job walks the rows (one strip on every member) through a private loop
 * and channel on the set: each RAID_BIO_REBUILD / RAID_BIO_SCRUB bio stands
 * for one row (a RAID 5/6 rebuild: a batch of rows, raid_parity_rows.c) and
 * holds the stripe lock of its rows while it reads and writes members
 * (raid_mirror.c, raid_parity_io.c), so foreground writes never interleave.
 * Between rows the walker paces itself:
 *  - rate limit (raid_set_rate, bytes per second per member): it sleeps
 *    until the bytes done so far are due;
 *  - foreground I/O: when the set served foreground bios since the last
 *    row, it sleeps as long as the row took (200 us to 20 ms), so a busy
 *    set gives the rebuild about half of what it would take alone at most,
 *    and the rebuild always moves on.
 * A rebuild writes its cursor (rows done) into the superblocks about once a
 * second and when it stops (the set closes), after flushing the member
 * being rebuilt (rows counted done are durable before the cursor says so):
 * a set closed mid-rebuild resumes from there. After a crash, a write in
 * flight may have torn rows below the cursor on that member: when the
 * bitmap keeps its hot image (raid_bitmap.c), raid_rebuild_recover rebuilds
 * those rows again at assembly (the hot regions, below the cursor) and the
 * rebuild resumes from its cursor, partial if it was; without it the
 * rebuild starts over from row 0, in full.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>
#include "raid/raid_bitmap.h"
#include "raid/raid_int.h"
#include "sand/log.h"

#define PERSIST_NS	(1000ull * 1000 * 1000)	/* cursor to the superblocks */
#define YIELD_MIN_NS	(200ull * 1000)
#define YIELD_MAX_NS	(20ull * 1000 * 1000)

enum work { WORK_NONE, WORK_RESUME, WORK_SPARE, WORK_SCRUB };

static struct raid *to_raid(struct blkdev *bd) { return container_of(bd, struct raid, bd); }

static uint64_t rows_of(struct raid *r)
{
	return r->g.member_size / r->g.strip;
}

/* ------------------------------------------------------------ pacing */

static bool job_stopping(struct raid *r)
{
	return __atomic_load_n(&r->jcancel, __ATOMIC_ACQUIRE) ||
	       __atomic_load_n(&r->jstop, __ATOMIC_ACQUIRE);
}

/* Sleep ns, or until the job is told to stop. */
static void job_sleep(struct raid *r, uint64_t ns)
{
	struct timespec ts;
	uint64_t end = now_ns() + ns;

	pthread_mutex_lock(&r->jlock);
	while (!r->jstop && !r->jcancel) {
		uint64_t now = now_ns(), left;

		if (now >= end)
			break;
		left = end - now;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += (time_t)(left / 1000000000ull);
		ts.tv_nsec += (long)(left % 1000000000ull);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&r->jcond, &r->jlock, &ts);
	}
	pthread_mutex_unlock(&r->jlock);
}

/* The rate limit, before starting row `row`: how long until the bytes of
 * the rows started since the rate was set are due (0: now). */
static uint64_t throttle_left(struct raid *r, uint64_t row)
{
	uint64_t rate = __atomic_load_n(&r->rate, __ATOMIC_RELAXED), now, bytes, due;

	if (!rate)
		return 0;
	now = now_ns();
	pthread_mutex_lock(&r->jlock);
	bytes = row > r->jrate_base_row ? (row - r->jrate_base_row) * r->g.strip : 0;
	due = r->jrate_base_ns + (uint64_t)((double)bytes * 1e9 / (double)rate);
	pthread_mutex_unlock(&r->jlock);
	return due > now ? due - now : 0;
}

/* After rows ended: when the set served foreground bios since the last
 * look, sleep as long as the last row took (bounded). */
static void yield_fg(struct raid *r, uint64_t row_ns, uint64_t *fg_seen)
{
	uint64_t fg = __atomic_load_n(&r->fg_ios, __ATOMIC_RELAXED);

	if (fg == *fg_seen)
		return;
	*fg_seen = fg;
	job_sleep(r, MIN(MAX(row_ns, YIELD_MIN_NS), YIELD_MAX_NS));
}

/* ------------------------------------------------------------ the row walker */

/* Bios in flight at once when the set has no foreground I/O (one while it
 * has): each holds the stripe locks of its rows, so they never overlap. At
 * most 32, and about 64 MiB of row buffers. A RAID 5/6 rebuild sends
 * WALK_BATCH bytes of rows per member in each bio (1 MiB: 16 rows of 64
 * KiB), at most WALK_BATCH_DEPTH of them in flight; other walks one row per
 * bio (a row reads, then writes, one strip per member). */
#define WALK_DEPTH	32
#define WALK_MEM	(64u << 20)
#define WALK_BATCH	(1u << 20)
#define WALK_BATCH_DEPTH 8

static void row_end(struct bio *bio, int status)
{
	struct raid_walk_req *w = bio->end_arg;

	w->status = status;
	w->done = true;
}

/* Rows per bio under the rate limit: about 50 ms worth, so a batch is no
 * burst above the rate. */
static uint32_t rate_batch(struct raid *r, uint32_t batch)
{
	uint64_t rate = __atomic_load_n(&r->rate, __ATOMIC_RELAXED);

	if (!rate || batch == 1)
		return batch;
	return (uint32_t)MAX(MIN(rate / 20 / r->g.strip, (uint64_t)batch), 1);
}

static void closed_flag(void *arg)
{
	*(bool *)arg = true;
}

/* Flush the member in slot `slot`: what was rebuilt on it is durable. */
static int flush_slot(struct raid *r, int slot)
{
	struct blkdev *m = __atomic_load_n(&r->members[slot], __ATOMIC_ACQUIRE);

	return m ? blk_sync_io(m, BIO_FLUSH, 0, 0, NULL, 0) : -ENODEV;
}

/* The rebuild cursor into the superblocks (quietly: once a second), once
 * the rows below it are durable on the member. */
static void save_cursor(struct raid *r, int slot, uint64_t row)
{
	if (flush_slot(r, slot))
		return;		/* the member fails: the cursor does not matter */
	pthread_mutex_lock(&r->sb_lock);
	if (raid_rebuilding(r, (uint32_t)slot)) {
		r->sb.members[slot].rebuilt = row;
		raid_persist_quiet_locked(r);
	}
	pthread_mutex_unlock(&r->sb_lock);
}

/* The scrub cursor into the superblocks: a restart resumes from it. */
static void save_scrub(struct raid *r, uint64_t row, bool running)
{
	pthread_mutex_lock(&r->sb_lock);
	r->sb.scrub_cursor = running ? row : 0;
	r->sb.scrub_flags = running ? RAID_SCRUB_RUNNING |
			    (r->scrub_repair ? RAID_SCRUB_REPAIR : 0) : 0;
	raid_persist_quiet_locked(r);
	pthread_mutex_unlock(&r->sb_lock);
}

/*
 * Which rows a walk visits: a resync, the regions of the write-intent
 * bitmap; the rebuild of a member that came back, the regions written
 * since it left (bitmap_partial_begin); everything else, every row.
 */
static bool row_wanted(struct raid *r, uint32_t flag, uint64_t row)
{
	if (flag == RAID_BIO_RESYNC)
		return bitmap_row_dirty(r, row);
	if (flag == RAID_BIO_REBUILD)
		return bitmap_partial_row(r, row);
	return true;
}

/* How many rows from `row` (wanted), at most max, a batch takes: only
 * wanted ones, so a partial rebuild rebuilds nothing else. */
static uint32_t wanted_run(struct raid *r, uint32_t flag, uint64_t row, uint32_t max)
{
	uint32_t n = 1;

	while (n < max && row_wanted(r, flag, row + n))
		n++;
	return n;
}

/* A failed slot that a spare could take: a scrub makes way. */
static bool spare_waiting(struct raid *r)
{
	if (!__atomic_load_n(&r->nspares, __ATOMIC_ACQUIRE))
		return false;
	for (uint32_t i = 0; i < r->g.nmembers; i++)
		if (__atomic_load_n(&r->state[i], __ATOMIC_ACQUIRE) == RAID_MEMBER_FAILED)
			return true;
	return false;
}

/*
 * Walk rows [from, rows) through a private loop and channel on the set: each
 * bio is a RAID_BIO_REBUILD (RESYNC, SCRUB) request for one row, or for a
 * batch of rows (a rebuild on a level with rebuild_batch while the set has
 * no foreground I/O), up to max_depth of them in flight, in a ring: a bio
 * that ended stays in it until the ones before it ended. With job: progress
 * in r->ji (rows done: every row below it is done), pacing, the rebuild
 * cursor saved, and a stop (raid_jobs_stop, close, a scrub cancelled) ends
 * it with -ECANCELED.
 */
int raid_walk_rows(struct raid *r, uint32_t flag, uint64_t from, bool job)
{
	uint64_t rows = rows_of(r);
	uint64_t row_bytes = (uint64_t)r->g.strip * r->k;
	uint64_t last_save = now_ns(), fg = __atomic_load_n(&r->fg_ios, __ATOMIC_RELAXED);
	uint64_t next = from, contig = from, t_row = now_ns(), walked = 0;
	struct raid_walk_req w[WALK_DEPTH] = { { 0 } };
	int slot = r->rebuild_slot;
	unsigned head = 0, used = 0, depth, max_depth;
	uint32_t batch = 1, max_batch = 1;
	size_t buf_len = 0;
	struct ev_loop *loop;
	struct blkchan *ch;
	void *dummy;
	bool closed = false;
	int rc;

	if (flag == RAID_BIO_REBUILD && r->lops->rebuild_batch) {
		max_batch = MAX(WALK_BATCH / r->g.strip, 1u);
		buf_len = (size_t)r->g.nmembers * max_batch * r->g.strip;
		max_depth = (unsigned)MIN((size_t)WALK_BATCH_DEPTH, WALK_MEM / buf_len);
	} else {
		max_depth = (unsigned)MIN((size_t)WALK_DEPTH, WALK_MEM / r->buf_max);
	}
	depth = max_depth = MAX(max_depth, 1u);
	batch = max_batch;
	rc = ev_loop_new(EV_AUTO, 64, &loop);
	if (rc)
		return rc;
	for (unsigned i = 0; i < depth && buf_len && !rc; i++) {
		w[i].buf = aligned_alloc(4096, buf_len);
		w[i].buf_len = buf_len;
		if (!w[i].buf)
			rc = -ENOMEM;
	}
	dummy = aligned_alloc(r->bd.block_size, r->bd.block_size);
	if (!rc)
		rc = dummy ? blk_chan_open(&r->bd, loop, &ch) : -ENOMEM;
	if (rc)
		goto free_loop;
	while (contig < rows) {
		/* start bios while the window allows */
		while (!rc && next < rows && used < depth) {
			struct iovec iov = { dummy, r->bd.block_size };
			struct raid_walk_req *x = &w[(head + used) % max_depth];

			if (job && job_stopping(r)) {
				rc = -ECANCELED;
				break;
			}
			if (job && flag == RAID_BIO_SCRUB && spare_waiting(r)) {
				LOG_WARN(LS_RAID, "%s: scrub stopped: a spare takes a failed member's "
					 "place", r->bd.name);
				rc = -ECANCELED;
				break;
			}
			if (flag == RAID_BIO_REBUILD && !raid_rebuilding(r, (uint32_t)slot)) {
				rc = -EIO;	/* the new member failed */
				break;
			}
			if (!row_wanted(r, flag, next)) {
				next++;		/* not to be walked: skipped */
				continue;
			}
			if (job) {
				uint64_t wait = throttle_left(r, next);

				/* not due yet: first take in the bios that ended, so
				 * the progress and the cursor move on meanwhile */
				if (wait && used)
					break;
				if (wait)
					job_sleep(r, wait);
				if (job_stopping(r))
					continue;	/* seen at the top */
			}
			x->row = next;
			x->rows = wanted_run(r, flag, next, (uint32_t)MIN((uint64_t)rate_batch(r, batch),
									  rows - next));
			x->done = false;
			x->status = 0;
			rc = blk_rw(ch, BIO_READ, flag, &iov, 1, next * row_bytes,
				    r->bd.block_size, row_end, x);
			if (rc)
				break;
			used++;
			walked += x->rows;
			next += x->rows;
		}
		if (!used && (rc || next >= rows))
			break;
		if (used)
			ev_run_once(loop, 100);
		/* bios that ended, in order; the cursor moves over them */
		while (used && w[head].done) {
			struct raid_walk_req *x = &w[head];

			if (x->status && !rc)
				rc = x->status;
			x->done = false;
			head = (head + 1) % max_depth;
			used--;
			if (rc)
				continue;	/* the cursor stays before a failed row */
			if ((contig + x->rows) / 1024 != contig / 1024 || contig + x->rows == rows)
				LOG_DBG(LS_RAID, "%s: %s %llu of %llu rows", r->bd.name,
					flag == RAID_BIO_REBUILD ? "rebuilt" :
					flag == RAID_BIO_RESYNC ? "resynced" : "scrubbed",
					(unsigned long long)(x->row + x->rows),
					(unsigned long long)rows);
			contig = x->row + x->rows;
		}
		if (rc)
			continue;	/* wait for the others, start nothing new */
		/* rows skipped (clean in the bitmap) after the last bio that ended */
		contig = used ? w[head].row : next;
		if (job) {
			uint64_t now = now_ns(), f = __atomic_load_n(&r->fg_ios, __ATOMIC_RELAXED);

			pthread_mutex_lock(&r->jlock);
			r->ji.rows_done = contig;
			r->ji.rows_walked = walked;
			pthread_mutex_unlock(&r->jlock);
			if (flag == RAID_BIO_REBUILD && now - last_save >= PERSIST_NS) {
				save_cursor(r, slot, contig);
				last_save = now;
			} else if (flag == RAID_BIO_SCRUB && now - last_save >= PERSIST_NS) {
				save_scrub(r, contig, true);
				last_save = now;
			}
			/* foreground I/O: one row at a time, paced; else the window */
			depth = f != fg ? 1 : max_depth;
			batch = f != fg ? 1 : max_batch;
			if (used < depth) {
				yield_fg(r, now - t_row, &fg);
				t_row = now_ns();
			}
		}
	}
	if (job) {
		pthread_mutex_lock(&r->jlock);
		if (!rc)
			r->ji.rows_done = contig;
		r->ji.rows_walked = walked;
		pthread_mutex_unlock(&r->jlock);
	}
	blk_chan_close(ch, closed_flag, &closed);
	while (!closed)
		ev_run_once(loop, 100);
free_loop:
	for (unsigned i = 0; i < WALK_DEPTH; i++)
		free(w[i].buf);
	free(dummy);
	ev_loop_free(loop);
	return rc;
}

/* ------------------------------------------------------------ jobs */

static void job_begin(struct raid *r, enum raid_job_kind kind, int slot, bool repair,
		      uint64_t from)
{
	pthread_mutex_lock(&r->jlock);
	r->ji.kind = kind;
	r->ji.slot = slot;
	r->ji.repair = repair;
	r->ji.rows = rows_of(r);
	r->ji.rows_done = from;
	r->ji.started_row = from;
	r->ji.partial = false;
	r->ji.rows_walked = 0;
	r->jstart_ns = r->jrate_base_ns = now_ns();
	r->jrate_base_row = from;
	pthread_mutex_unlock(&r->jlock);
}

static void job_end(struct raid *r, int rc, uint64_t mismatches)
{
	pthread_mutex_lock(&r->jlock);
	r->ji.last_kind = r->ji.kind;
	r->ji.last_slot = r->ji.slot;
	r->ji.last_repair = r->ji.repair;
	r->ji.last_rc = rc;
	r->ji.last_mismatches = mismatches;
	r->ji.last_partial = r->ji.partial;
	r->ji.last_rows_walked = r->ji.rows_walked;
	r->ji.kind = RAID_JOB_NONE;
	pthread_mutex_unlock(&r->jlock);
}

/*
 * Can nd, whose superblock is nsb, come back into failed slot `slot` and be
 * rebuilt only where the set was written since it left? Under sb_lock. Only
 * when its superblock proves it is the member that left: this set, this
 * slot, the member UUID the set still has for the slot, and the generation
 * it last saw just before the one the set recorded when it left (so it
 * missed nothing else); and the set kept its write-intent bitmap since
 * (left_gen is only set with a bitmap, and cleared when the slot changes
 * hands or is active again). A member half rebuilt when it left never
 * qualifies.
 */
static bool readd_ok(struct raid *r, uint32_t slot, const struct raid_sb *nsb)
{
	const struct raid_sb_member *m = &r->sb.members[slot];

	return r->bm && nsb && !memcmp(nsb->pool_uuid, r->sb.pool_uuid, 16) &&
	       nsb->index == slot && !memcmp(nsb->member_uuid, m->uuid, 16) &&
	       m->state == RAID_MEMBER_FAILED && m->left_gen &&
	       !(m->flags & (RAID_SLOT_INCOMPLETE | RAID_SLOT_PARTIAL)) &&
	       nsb->generation < m->left_gen && nsb->generation + 2 >= m->left_gen;
}

/* nd's superblock into *sb: NULL when it has none (a fresh disk). */
static const struct raid_sb *read_sb(struct blkdev *nd, struct raid_sb *sb)
{
	return raid_sb_read(nd, sb) ? NULL : sb;
}

/*
 * Put nd in failed slot `slot`, state REBUILDING, written to the
 * superblocks. claimed: nd is claimed by the set already (a spare). nsb:
 * nd's superblock (NULL: none): when it proves nd is the member that left
 * the slot (readd_ok), the rebuild is partial (RAID_SLOT_PARTIAL).
 * -EBUSY (nothing changed): the slot is not failed or a job owns the set.
 * -EIO: the set went down while the superblocks were written (other members
 * failed); nd stays in the slot, failed.
 */
static int replace_begin(struct raid *r, uint32_t slot, struct blkdev *nd, bool claimed,
			 const struct raid_sb *nsb)
{
	struct blkdev *old;
	bool partial;
	int rc;

	pthread_mutex_lock(&r->sb_lock);
	if (raid_writable(r, slot) || r->rebuild_slot != -1) {
		pthread_mutex_unlock(&r->sb_lock);
		return -EBUSY;
	}
	if (!claimed) {
		rc = blkdev_claim(nd, r->bd.name);
		if (rc) {
			pthread_mutex_unlock(&r->sb_lock);
			return rc;
		}
	}
	r->rebuild_slot = (int)slot;
	partial = readd_ok(r, slot, nsb);
	if (partial) {
		r->sb.members[slot].flags = RAID_SLOT_PARTIAL;	/* same UUID */
	} else {
		uuid_generate(r->sb.members[slot].uuid);
		r->sb.members[slot].flags = RAID_SLOT_INCOMPLETE;
		r->sb.members[slot].left_gen = 0;
		if (r->sb.bitmap_away[slot]) {
			bitmap_slot_back(r, slot);
			r->sb.bitmap_away[slot] = 0;
		}
	}
	r->sb.members[slot].rebuilt = 0;
	__atomic_store_n(&r->read_errs[slot], 0, __ATOMIC_RELAXED);
	old = r->members[slot];
	pthread_mutex_lock(&r->slot_lock);
	__atomic_store_n(&r->members[slot], nd, __ATOMIC_RELEASE);
	__atomic_store_n(&r->state[slot], RAID_MEMBER_REBUILDING, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&r->slot_lock);
	rc = raid_persist_locked(r);
	if (rc) {
		/* the set went down meanwhile: nd keeps the slot (the superblocks
		 * may name it), failed, and stays claimed by the set */
		__atomic_store_n(&r->state[slot], RAID_MEMBER_FAILED, __ATOMIC_RELEASE);
		r->rebuild_slot = -1;
	}
	pthread_mutex_unlock(&r->sb_lock);
	if (old && old != nd)
		blkdev_release(old, r->bd.name);
	if (rc)
		return rc;
	if (partial)
		LOG_INFO(LS_RAID, "%s: member %u (%s) is back: only the regions written since it "
			 "left are rebuilt", r->bd.name, slot, nd->name);
	else
		LOG_INFO(LS_RAID, "%s: member %u is now %s, to be rebuilt", r->bd.name, slot,
			 nd->name);
	return 0;
}

static void run_rebuild(struct raid *r, int slot)
{
	struct blkdev *nd = __atomic_load_n(&r->members[slot], __ATOMIC_ACQUIRE);
	uint64_t from = 0, rows = rows_of(r), nreg = 0;
	int expect = RAID_MEMBER_REBUILDING, rc;
	bool partial;

	pthread_mutex_lock(&r->sb_lock);
	if (r->cursor_ok)
		from = MIN(r->sb.members[slot].rebuilt, rows);
	partial = r->sb.members[slot].flags & RAID_SLOT_PARTIAL;
	if (partial && (!r->cursor_ok || bitmap_partial_begin(r, slot, &nreg))) {
		/* a crash during a partial rebuild (or no memory): all of it */
		LOG_WARN(LS_RAID, "%s: member %u: the partial rebuild cannot go on: rebuilding "
			 "all of it", r->bd.name, slot);
		r->sb.members[slot].flags = RAID_SLOT_INCOMPLETE;
		r->sb.members[slot].left_gen = 0;
		r->sb.members[slot].rebuilt = 0;
		if (r->sb.bitmap_away[slot]) {
			bitmap_slot_back(r, slot);
			r->sb.bitmap_away[slot] = 0;
		}
		from = 0;
		partial = false;
		raid_persist_quiet_locked(r);
	}
	r->cursor_ok = true;	/* the cursors this run writes are good */
	pthread_mutex_unlock(&r->sb_lock);
	job_begin(r, RAID_JOB_REBUILD, slot, false, from);
	pthread_mutex_lock(&r->jlock);
	r->ji.partial = partial;
	pthread_mutex_unlock(&r->jlock);
	if (partial)
		LOG_INFO(LS_RAID, "%s: %s member %u on %s from row %llu: %llu bitmap regions "
			 "written since it left", r->bd.name, from ? "resuming the resync of" :
			 "resyncing", slot, nd->name, (unsigned long long)from,
			 (unsigned long long)nreg);
	else if (from)
		LOG_INFO(LS_RAID, "%s: resuming the rebuild of member %u on %s at row %llu of %llu",
			 r->bd.name, slot, nd->name, (unsigned long long)from,
			 (unsigned long long)rows);
	else
		LOG_INFO(LS_RAID, "%s: rebuilding member %u on %s (%llu rows)", r->bd.name, slot,
			 nd->name, (unsigned long long)rows);

	rc = raid_walk_rows(r, RAID_BIO_REBUILD, from, true);
	if (rc == -ECANCELED) {
		uint64_t done;

		pthread_mutex_lock(&r->jlock);
		done = r->ji.rows_done;
		pthread_mutex_unlock(&r->jlock);
		save_cursor(r, slot, done);
		LOG_INFO(LS_RAID, "%s: rebuild of member %u stopped at row %llu of %llu",
			 r->bd.name, slot, (unsigned long long)done, (unsigned long long)rows);
		bitmap_partial_end(r);
		job_end(r, rc, 0);
		return;
	}
	/* every row durable on the member before the superblocks say it is
	 * active; and no bit cleared before they do (the set is whole once it
	 * is active): a crash in between finds the regions still marked */
	if (!rc)
		rc = flush_slot(r, slot);
	bitmap_sweep_hold(r, true);
	if (!rc && !__atomic_compare_exchange_n(&r->state[slot], &expect, RAID_MEMBER_ACTIVE,
						false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		rc = -EIO;	/* it failed while being rebuilt */
	if (rc) {
		__atomic_store_n(&r->state[slot], RAID_MEMBER_FAILED, __ATOMIC_RELEASE);
		LOG_ERR(LS_RAID, "%s: rebuild of member %u on %s failed: %s", r->bd.name, slot,
			nd->name, strerror(-rc));
	} else {
		LOG_INFO(LS_RAID, "%s: member %u rebuilt on %s", r->bd.name, slot, nd->name);
	}
	bitmap_partial_end(r);
	pthread_mutex_lock(&r->sb_lock);
	r->rebuild_slot = -1;
	r->sb.members[slot].rebuilt = 0;
	raid_persist_locked(r);
	pthread_mutex_unlock(&r->sb_lock);
	bitmap_sweep_hold(r, false);
	job_end(r, rc, 0);
}

int raid_rebuild_recover(struct raid *r)
{
	int slot = r->rebuild_slot, rc;
	uint64_t below, nreg = 0;

	if (slot < 0 || !r->lops->rebuild)
		return 0;
	below = MIN(r->sb.members[slot].rebuilt, rows_of(r));
	if (!below) {
		r->cursor_ok = true;	/* from row 0 anyway */
		return 0;
	}
	if (bitmap_partial_hot(r, below, &nreg)) {
		LOG_WARN(LS_RAID, "%s: member %u: no record of the writes in flight at the crash: "
			 "its rebuild starts over", r->bd.name, slot);
		return 0;	/* cursor_ok stays false */
	}
	LOG_INFO(LS_RAID, "%s: member %u: rebuilding again the rows below its cursor (%llu) in "
		 "%llu regions written at the crash", r->bd.name, slot, (unsigned long long)below,
		 (unsigned long long)nreg);
	rc = nreg ? raid_walk_rows(r, RAID_BIO_REBUILD, 0, false) : 0;
	bitmap_partial_end(r);
	if (rc) {
		LOG_ERR(LS_RAID, "%s: member %u: %s", r->bd.name, slot, strerror(-rc));
		return rc;
	}
	/* those rows are written; flushed, the cursor holds */
	rc = flush_slot(r, slot);
	if (!rc)
		r->cursor_ok = true;
	return rc;
}

static void run_scrub(struct raid *r, bool repair, uint64_t from)
{
	uint64_t bad;
	bool keep;
	int rc;

	pthread_mutex_lock(&r->sb_lock);
	if (r->rebuild_slot != -1) {
		pthread_mutex_unlock(&r->sb_lock);
		job_begin(r, RAID_JOB_SCRUB, -1, repair, 0);
		job_end(r, -EBUSY, 0);
		return;
	}
	r->rebuild_slot = -2;		/* keeps rebuilds out */
	r->scrub_repair = repair;
	__atomic_store_n(&r->scrub_bad, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&r->sb_lock);
	from = MIN(from, rows_of(r));
	job_begin(r, RAID_JOB_SCRUB, -1, repair, from);
	if (from)
		LOG_INFO(LS_RAID, "%s: scrub%s resumed at row %llu of %llu", r->bd.name,
			 repair ? " with repair" : "", (unsigned long long)from,
			 (unsigned long long)rows_of(r));
	else
		LOG_INFO(LS_RAID, "%s: scrub%s started", r->bd.name, repair ? " with repair" : "");
	if (repair)
		raid_mark_dirty(r);	/* repairs are writes: a crash must be seen */
	save_scrub(r, from, true);

	rc = raid_walk_rows(r, RAID_BIO_SCRUB, from, true);
	bad = __atomic_load_n(&r->scrub_bad, __ATOMIC_RELAXED);
	/* stopped because the set closes (or raid_jobs_stop): the cursor stays,
	 * and the scrub resumes at the next assembly; cancelled, ended: forgotten */
	pthread_mutex_lock(&r->jlock);
	keep = rc == -ECANCELED && (r->jstop || r->jhold);
	pthread_mutex_unlock(&r->jlock);
	if (keep) {
		uint64_t done;

		pthread_mutex_lock(&r->jlock);
		done = r->ji.rows_done;
		pthread_mutex_unlock(&r->jlock);
		save_scrub(r, done, true);
		LOG_INFO(LS_RAID, "%s: scrub stopped at row %llu: it resumes when the set is "
			 "assembled again", r->bd.name, (unsigned long long)done);
	} else {
		save_scrub(r, 0, false);
	}
	LOG_INFO(LS_RAID, "%s: scrub %s: %llu rows inconsistent%s", r->bd.name,
		 keep ? "stopped" : rc == -ECANCELED ? "cancelled" : rc ? "failed" : "done",
		 (unsigned long long)bad, repair ? ", repaired" : "");
	pthread_mutex_lock(&r->sb_lock);
	r->rebuild_slot = -1;
	pthread_mutex_unlock(&r->sb_lock);
	job_end(r, rc, bad);
}

/* Under jlock: the spare to put in failed slot `slot`: the disk that was
 * that member, if it is a spare (it may come back partially), else the first. */
static uint32_t spare_for(struct raid *r, int slot)
{
	for (uint32_t i = 0; i < r->nspares; i++)
		if (r->spare_slot[i] == slot)
			return i;
	return 0;
}

/* Under jlock: what to do next. */
static enum work find_work(struct raid *r, int *slot)
{
	if (r->jstop || r->jhold)
		return WORK_NONE;
	for (uint32_t i = 0; i < r->g.nmembers; i++)
		if (raid_rebuilding(r, i) && r->rebuild_slot == (int)i) {
			*slot = (int)i;
			return WORK_RESUME;
		}
	if (r->nspares && r->lops->rebuild && raid_set_alive(r) && r->rebuild_slot == -1) {
		/* first a slot whose old member is among the spares */
		for (uint32_t i = 0; i < r->g.nmembers; i++)
			if (__atomic_load_n(&r->state[i], __ATOMIC_ACQUIRE) == RAID_MEMBER_FAILED &&
			    r->spare_slot[spare_for(r, (int)i)] == (int)i) {
				*slot = (int)i;
				return WORK_SPARE;
			}
		for (uint32_t i = 0; i < r->g.nmembers; i++)
			if (__atomic_load_n(&r->state[i], __ATOMIC_ACQUIRE) == RAID_MEMBER_FAILED) {
				*slot = (int)i;
				return WORK_SPARE;
			}
	}
	if (r->scrub_req)
		return WORK_SCRUB;
	return WORK_NONE;
}

static void *job_main(void *arg)
{
	struct raid *r = arg;

	pthread_mutex_lock(&r->jlock);
	for (;;) {
		struct blkdev *spare = NULL;
		struct raid_sb nsb;
		uint64_t scrub_from = 0;
		enum work w;
		bool repair = false;
		int slot = -1, spare_slot = -1;

		while (!r->jstop && (w = find_work(r, &slot)) == WORK_NONE) {
			r->jbusy = false;
			pthread_cond_broadcast(&r->jcond);
			pthread_cond_wait(&r->jcond, &r->jlock);
		}
		if (r->jstop)
			break;
		r->jbusy = true;
		if (w == WORK_SPARE) {
			uint32_t i = spare_for(r, slot);

			spare = r->spares[i];
			spare_slot = r->spare_slot[i];
			r->nspares--;
			memmove(&r->spares[i], &r->spares[i + 1],
				(r->nspares - i) * sizeof(r->spares[0]));
			memmove(&r->spare_slot[i], &r->spare_slot[i + 1],
				(r->nspares - i) * sizeof(r->spare_slot[0]));
		} else if (w == WORK_SCRUB) {
			repair = r->scrub_req_repair;
			scrub_from = r->scrub_from;
			r->scrub_req = false;
		}
		pthread_mutex_unlock(&r->jlock);

		if (w == WORK_SPARE) {
			int rc;

			LOG_WARN(LS_RAID, "%s: hot spare %s takes the place of failed member %d",
				 r->bd.name, spare->name, slot);
			rc = replace_begin(r, (uint32_t)slot, spare, true,
					   spare_slot == slot ? read_sb(spare, &nsb) : NULL);
			if (rc == -EBUSY) {	/* someone else took the slot: keep the spare */
				pthread_mutex_lock(&r->jlock);
				r->spare_slot[r->nspares] = spare_slot;
				r->spares[r->nspares++] = spare;
				continue;
			}
			if (rc) {
				LOG_ERR(LS_RAID, "%s: taking spare %s: %s", r->bd.name, spare->name,
					strerror(-rc));
			} else {
				run_rebuild(r, slot);
			}
		} else if (w == WORK_RESUME) {
			run_rebuild(r, slot);
		} else {
			run_scrub(r, repair, scrub_from);
		}
		pthread_mutex_lock(&r->jlock);
		r->jcancel = false;
	}
	r->jbusy = false;
	pthread_cond_broadcast(&r->jcond);
	pthread_mutex_unlock(&r->jlock);
	return NULL;
}

int raid_jobs_init(struct raid *r)
{
	int rc;

	if ((r->sb.scrub_flags & RAID_SCRUB_RUNNING) && r->lops->scrub) {
		/* a scrub stopped by a restart: it goes on from its cursor */
		r->scrub_req = true;
		r->scrub_req_repair = r->sb.scrub_flags & RAID_SCRUB_REPAIR;
		r->scrub_from = r->sb.scrub_cursor;
		r->jbusy = true;	/* until the thread takes it (raid_job_wait) */
	}
	rc = pthread_create(&r->jthread, NULL, job_main, r);

	if (rc)
		return -rc;
	r->jstarted = true;
	return 0;
}

void raid_jobs_fini(struct raid *r)
{
	if (!r->jstarted)
		return;
	pthread_mutex_lock(&r->jlock);
	r->jstop = true;
	pthread_cond_broadcast(&r->jcond);
	pthread_mutex_unlock(&r->jlock);
	pthread_join(r->jthread, NULL);
	r->jstarted = false;
}

void raid_jobs_kick(struct raid *r)
{
	pthread_mutex_lock(&r->jlock);
	pthread_cond_broadcast(&r->jcond);
	pthread_mutex_unlock(&r->jlock);
}

/* ------------------------------------------------------------ the API */

static int check_newdev(struct raid *r, struct blkdev *nd, const char *what)
{
	for (int op = BIO_DISCARD; op <= BIO_WRITE_ZEROES; op++)
		if ((r->caps & (1u << op)) && !blkdev_supports(nd, (enum bio_op)op)) {
			LOG_ERR(LS_RAID, "%s: %s does not support %s like the other members",
				r->bd.name, nd->name, op == BIO_DISCARD ? "discard" : "write-zeroes");
			return -EINVAL;
		}
	if (nd->size < r->data_offset + r->g.member_size || nd->block_size > r->bd.block_size) {
		LOG_ERR(LS_RAID, "%s: %s is too small or its blocks too large for %s", r->bd.name,
			nd->name, what);
		return -EINVAL;
	}
	return 0;
}

int raid_replace_start(struct blkdev *bd, uint32_t slot, struct blkdev *nd)
{
	struct raid *r;
	int rc;

	if (!blk_is_raid(bd) || !nd)
		return -EINVAL;
	r = to_raid(bd);
	if (slot >= r->g.nmembers || !r->lops->rebuild)
		return -EINVAL;
	struct raid_sb nsb;

	rc = check_newdev(r, nd, "a member");
	if (rc)
		return rc;
	rc = replace_begin(r, slot, nd, false, read_sb(nd, &nsb));
	if (!rc)
		raid_jobs_kick(r);
	return rc;
}

int raid_job_wait(struct blkdev *bd)
{
	struct raid *r;
	int rc, slot;

	if (!blk_is_raid(bd))
		return -EINVAL;
	r = to_raid(bd);
	pthread_mutex_lock(&r->jlock);
	while (r->jbusy || find_work(r, &slot) != WORK_NONE)
		pthread_cond_wait(&r->jcond, &r->jlock);
	rc = r->ji.last_rc;
	pthread_mutex_unlock(&r->jlock);
	return rc;
}

int raid_replace(struct blkdev *bd, uint32_t slot, struct blkdev *nd)
{
	struct raid *r;
	int rc = raid_replace_start(bd, slot, nd);

	if (rc)
		return rc;
	r = to_raid(bd);
	rc = raid_job_wait(bd);
	if (raid_alive(r, slot) && __atomic_load_n(&r->members[slot], __ATOMIC_ACQUIRE) == nd)
		return 0;
	return rc ? rc : -EIO;
}

int raid_scrub_start(struct blkdev *bd, bool repair)
{
	struct raid *r;
	int rc = 0;

	if (!blk_is_raid(bd))
		return -EINVAL;
	r = to_raid(bd);
	if (!r->lops->scrub)
		return -EINVAL;
	pthread_mutex_lock(&r->jlock);
	if (r->jbusy || r->scrub_req || r->jhold ||
	    __atomic_load_n(&r->rebuild_slot, __ATOMIC_ACQUIRE) != -1) {
		rc = -EBUSY;
	} else {
		r->scrub_req = true;
		r->scrub_req_repair = repair;
		r->scrub_from = 0;
		r->jbusy = true;	/* until the thread takes it (raid_job_wait) */
		pthread_cond_broadcast(&r->jcond);
	}
	pthread_mutex_unlock(&r->jlock);
	return rc;
}

int raid_scrub_cancel(struct blkdev *bd)
{
	struct raid *r;
	bool forget = false;
	int rc = 0;

	if (!blk_is_raid(bd))
		return -EINVAL;
	r = to_raid(bd);
	pthread_mutex_lock(&r->jlock);
	if (r->scrub_req) {
		r->scrub_req = false;
		forget = r->scrub_from > 0;	/* a resumed one, not started yet */
		pthread_cond_broadcast(&r->jcond);
	} else if (r->ji.kind == RAID_JOB_SCRUB) {
		__atomic_store_n(&r->jcancel, true, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&r->jcond);
	} else {
		rc = -ENOENT;
	}
	pthread_mutex_unlock(&r->jlock);
	if (forget)
		save_scrub(r, 0, false);
	return rc;
}

int raid_scrub(struct blkdev *bd, bool repair, uint64_t *mismatches)
{
	struct raid *r;
	int rc = raid_scrub_start(bd, repair);

	if (rc)
		return rc;
	r = to_raid(bd);
	rc = raid_job_wait(bd);
	if (mismatches) {
		pthread_mutex_lock(&r->jlock);
		*mismatches = r->ji.last_mismatches;
		pthread_mutex_unlock(&r->jlock);
	}
	return rc;
}

void raid_jobs_stop(struct blkdev *bd)
{
	struct raid *r;

	if (!blk_is_raid(bd))
		return;
	r = to_raid(bd);
	pthread_mutex_lock(&r->jlock);
	r->jhold = true;
	r->scrub_req = false;
	__atomic_store_n(&r->jcancel, true, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&r->jcond);
	while (r->jbusy && r->jstarted)
		pthread_cond_wait(&r->jcond, &r->jlock);
	__atomic_store_n(&r->jcancel, false, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&r->jlock);
}

int raid_set_rate(struct blkdev *bd, uint64_t bytes_per_sec)
{
	struct raid *r;

	if (!blk_is_raid(bd))
		return -EINVAL;
	r = to_raid(bd);
	pthread_mutex_lock(&r->jlock);
	__atomic_store_n(&r->rate, bytes_per_sec, __ATOMIC_RELAXED);
	r->jrate_base_ns = now_ns();
	r->jrate_base_row = r->ji.rows_done;
	pthread_cond_broadcast(&r->jcond);
	pthread_mutex_unlock(&r->jlock);
	return 0;
}

int raid_job_get(struct blkdev *bd, struct raid_job_info *ji)
{
	struct raid *r;
	uint64_t el;

	if (!blk_is_raid(bd))
		return -EINVAL;
	r = to_raid(bd);
	pthread_mutex_lock(&r->jlock);
	*ji = r->ji;
	el = now_ns() - r->jstart_ns;
	pthread_mutex_unlock(&r->jlock);
	ji->bytes = ji->rows * r->g.strip;
	ji->bytes_done = ji->rows_done * r->g.strip;
	ji->rate = 0;
	ji->eta = 0;
	if (ji->kind != RAID_JOB_NONE && el > 0) {
		uint64_t done = (ji->rows_done - ji->started_row) * r->g.strip;

		ji->rate = (uint64_t)((double)done * 1e9 / (double)el);
		if (ji->rate)
			ji->eta = (ji->bytes - ji->bytes_done + ji->rate - 1) / ji->rate;
	}
	if (ji->kind == RAID_JOB_SCRUB)
		ji->mismatches = __atomic_load_n(&r->scrub_bad, __ATOMIC_RELAXED);
	ji->rate_limit = __atomic_load_n(&r->rate, __ATOMIC_RELAXED);
	ji->read_errors_fixed = __atomic_load_n(&r->read_fixed, __ATOMIC_RELAXED);
	return 0;
}

/* ------------------------------------------------------------ spares */

int raid_spare_add(struct blkdev *bd, struct blkdev *sp)
{
	struct raid_sb nsb;
	struct raid *r;
	int rc, sslot = -1;

	if (!blk_is_raid(bd) || !sp)
		return -EINVAL;
	r = to_raid(bd);
	if (!r->lops->rebuild)
		return -EINVAL;
	rc = check_newdev(r, sp, "a spare");
	if (rc)
		return rc;
	for (uint32_t i = 0; i < r->g.nmembers; i++)
		if (__atomic_load_n(&r->members[i], __ATOMIC_ACQUIRE) == sp)
			return -EBUSY;
	pthread_mutex_lock(&r->jlock);
	for (uint32_t i = 0; i < r->nspares; i++)
		if (r->spares[i] == sp) {
			pthread_mutex_unlock(&r->jlock);
			return -EBUSY;
		}
	pthread_mutex_unlock(&r->jlock);
	rc = blkdev_claim(sp, bd->name);
	if (rc)
		return rc;
	/* a member of this set that left: it takes its own slot back */
	if (!raid_sb_read(sp, &nsb) && !memcmp(nsb.pool_uuid, r->sb.pool_uuid, 16) &&
	    nsb.index < r->g.nmembers)
		sslot = (int)nsb.index;
	pthread_mutex_lock(&r->jlock);
	if (r->nspares == RAID_MAX_MEMBERS) {
		pthread_mutex_unlock(&r->jlock);
		blkdev_release(sp, bd->name);
		return -ENOSPC;
	}
	r->spare_slot[r->nspares] = sslot;
	r->spares[r->nspares++] = sp;
	pthread_cond_broadcast(&r->jcond);	/* a failed slot may be waiting */
	pthread_mutex_unlock(&r->jlock);
	LOG_INFO(LS_RAID, "%s: %s is a hot spare", bd->name, sp->name);
	return 0;
}

int raid_spare_remove(struct blkdev *bd, struct blkdev *sp)
{
	struct raid *r;
	int rc = -ENOENT;

	if (!blk_is_raid(bd))
		return -EINVAL;
	r = to_raid(bd);
	pthread_mutex_lock(&r->jlock);
	for (uint32_t i = 0; i < r->nspares; i++)
		if (r->spares[i] == sp) {
			memmove(&r->spares[i], &r->spares[i + 1],
				(r->nspares - i - 1) * sizeof(r->spares[0]));
			memmove(&r->spare_slot[i], &r->spare_slot[i + 1],
				(r->nspares - i - 1) * sizeof(r->spare_slot[0]));
			r->nspares--;
			rc = 0;
			break;
		}
	pthread_mutex_unlock(&r->jlock);
	if (!rc)
		blkdev_release(sp, bd->name);
	return rc;
}

uint32_t raid_spares(struct blkdev *bd, struct blkdev **out, uint32_t max)
{
	struct raid *r;
	uint32_t n;

	if (!blk_is_raid(bd))
		return 0;
	r = to_raid(bd);
	pthread_mutex_lock(&r->jlock);
	n = r->nspares;
	for (uint32_t i = 0; i < n && i < max; i++)
		out[i] = r->spares[i];
	pthread_mutex_unlock(&r->jlock);
	return n;
}

struct blkdev *raid_member_dev(struct blkdev *bd, uint32_t i)
{
	struct raid *r;

	if (!blk_is_raid(bd))
		return NULL;
	r = to_raid(bd);
	if (i >= r->g.nmembers)
		return NULL;
	return __atomic_load_n(&r->members[i], __ATOMIC_ACQUIRE);
}

int raid_fail(struct blkdev *bd, uint32_t slot)
{
	struct raid *r;
	int st, rc;

	if (!blk_is_raid(bd))
		return -EINVAL;
	r = to_raid(bd);
	if (slot >= r->g.nmembers || r->g.level == RAID_LEVEL_0)
		return -EINVAL;
	pthread_mutex_lock(&r->sb_lock);
	st = __atomic_load_n(&r->state[slot], __ATOMIC_ACQUIRE);
	if (st != RAID_MEMBER_ACTIVE && st != RAID_MEMBER_REBUILDING) {
		pthread_mutex_unlock(&r->sb_lock);
		return -EALREADY;
	}
	__atomic_store_n(&r->state[slot], RAID_MEMBER_FAILED, __ATOMIC_RELEASE);
	if (st == RAID_MEMBER_ACTIVE && !raid_set_alive(r)) {
		__atomic_store_n(&r->state[slot], st, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&r->sb_lock);
		return -EBUSY;
	}
	rc = raid_persist_locked(r);
	pthread_mutex_unlock(&r->sb_lock);
	LOG_WARN(LS_RAID, "%s: member %u (%s) taken out, set %s", bd->name, slot,
		 r->members[slot] ? r->members[slot]->name : "?",
		 raid_degraded(bd) ? "degraded" : "whole");
	raid_jobs_kick(r);
	return rc;
}
