/* SPDX-License-Identifier: MIT */
/*
 * Power-cut torture of RAID 1, 10, 5 and 6, whole and degraded: memory
 * members, each under a fault device that records unflushed writes. A
 * random workload (writes of random sizes and alignments, many in flight,
 * never overlapping each other; flushes) runs on one loop; at a random
 * moment the set is frozen (every member's completions held back by a
 * latency, so nothing more reaches the disks), the power goes on every
 * member at once (each unflushed write kept, dropped or torn block by
 * block), the set is closed, the power comes back, the set is assembled
 * again (resync, or the partial parity log when degraded) and every block
 * is read back through it:
 *  - a block whose last write completed before a completed flush was sent
 *    holds that write's data;
 *  - any other block holds its durable data or the data of a later write
 *    to it: never anything else.
 * Then the workload goes on against what was read, and the next cut comes.
 *
 * Every block written carries (write id, block number) and a pattern, so
 * a read tells which write it came from; one write in 8 is a DISCARD or a
 * WRITE_ZEROES (zeros: any of those, or the initial contents). SAND_TORTURE_CUTS sets the cuts per
 * configuration (default 200). The same degraded RAID 5 torture without the
 * log must find corrupt blocks: the test bites. TORTURE_DEBUG=1 prints the
 * corrupt blocks and aborts at the first bad cut (with --debug raid style
 * logs, LOG_DBG shows the log entries replayed).
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/fault.h"
#include "sand/raid.h"

#define BS		512u
#define STRIP		4096u
#define MEMBER_DATA	(64u * 1024)
#define PPL_SIZE	(128u * 1024)
#define MEMBER_SIZE	(RAID_DATA_OFFSET + MEMBER_DATA)
#define QD		16
#define MAXBLK		24		/* blocks per write */
#define WIDEBLK		(3 * 3 * STRIP / BS)	/* whole stripes: up to 3 of 3 strips */

struct tenv;

struct wslot {
	struct tenv	*e;
	bool		busy, flush;
	uint64_t	blk, nblk;
	uint32_t	id;
	uint8_t		*buf;
	int		status;
};

struct cands {
	uint32_t	*id;
	uint32_t	n, cap;
};

struct tenv {
	enum raid_level	level;
	uint32_t	n, miss;	/* members left out (degraded), a mask */
	bool		no_ppl;
	struct blkdev	*mem[RAID_MAX_MEMBERS], *f[RAID_MAX_MEMBERS];
	struct blkdev	*raid;
	struct ev_loop	*loop;
	struct blkchan	*ch;
	uint64_t	nb;		/* blocks in the set */
	uint64_t	rng;
	uint32_t	next_id;
	uint32_t	*dur;		/* per block: the durable write id */
	uint32_t	*done;		/* per block: the last completed write id */
	uint32_t	*snap;		/* done[] when the flush in flight was sent */
	uint8_t		*busy;		/* per block: a write in flight */
	struct cands	*c;		/* per block: later writes (may have landed) */
	uint8_t		*zero;		/* per write id: a DISCARD or WRITE_ZEROES */
	uint32_t	zero_cap;
	uint64_t	zero_writes;
	bool		flushing;
	struct wslot	s[QD];
	unsigned	inflight;
	uint64_t	bad, checked, new_blocks;
};

static uint64_t rnd(struct tenv *e)
{
	e->rng ^= e->rng << 13;
	e->rng ^= e->rng >> 7;
	e->rng ^= e->rng << 17;
	return e->rng;
}

/* What write id's blocks hold: 0 (zeros) for a DISCARD or WRITE_ZEROES. */
static uint32_t content(struct tenv *e, uint32_t id)
{
	return id < e->zero_cap && e->zero[id] ? 0 : id;
}

static void pattern(uint8_t *p, uint32_t id, uint64_t blk)
{
	uint64_t *w = (uint64_t *)(void *)p, x = (uint64_t)id * 0x9e3779b97f4a7c15ull ^ blk;

	if (!id) {
		memset(p, 0, BS);
		return;
	}
	w[0] = id;
	w[1] = blk;
	for (unsigned i = 2; i < BS / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x;
	}
}

static void cand_add(struct cands *c, uint32_t id)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 4;
		c->id = realloc(c->id, c->cap * sizeof(*c->id));
		ck_assert_ptr_nonnull(c->id);
	}
	c->id[c->n++] = id;
}

static void closed_cb(void *arg)
{
	*(bool *)arg = true;
}

static void sync_end(struct bio *bio, int status)
{
	*(int *)bio->end_arg = status;
}

static void attach(struct tenv *e)
{
	ck_assert_int_eq(blk_chan_open(e->raid, e->loop, &e->ch), 0);
}

static void detach(struct tenv *e)
{
	bool closed = false;

	blk_chan_close(e->ch, closed_cb, &closed);
	for (int i = 0; i < 10000 && !closed; i++)
		ev_run_once(e->loop, 10);
	ck_assert(closed);
	ck_assert_int_eq(blkdev_close(e->raid), 0);
	e->raid = NULL;
}

static void assemble(struct tenv *e)
{
	struct blkdev *m[RAID_MAX_MEMBERS];
	uint32_t k = 0;

	for (uint32_t i = 0; i < e->n; i++)
		if (!(e->miss & (1u << i)))
			m[k++] = e->f[i];
	/* any order */
	for (uint32_t i = k - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(rnd(e) % (i + 1));
		struct blkdev *t = m[i];

		m[i] = m[j];
		m[j] = t;
	}
	ck_assert_int_eq(raid_assemble(m, k, &e->raid), 0);
	ck_assert_int_eq(raid_degraded(e->raid), __builtin_popcount(e->miss));
	attach(e);
}

static void env_init(struct tenv *e, enum raid_level l, uint32_t n, uint32_t degraded,
		     bool no_ppl, uint64_t seed)
{
	struct raid_opts o = { .strip = STRIP, .ppl_size = PPL_SIZE, .no_ppl = no_ppl,
			       .bitmap_region = 4 * STRIP };
	char name[32];

	memset(e, 0, sizeof(*e));
	e->level = l;
	e->n = n;
	e->no_ppl = no_ppl;
	e->miss = 0;
	e->rng = seed * 2654435761u + 7;
	e->next_id = 1;
	for (uint32_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "m%u", i);
		ck_assert_int_eq(blk_mem_create(name, MEMBER_SIZE + PPL_SIZE, BS, &e->mem[i]), 0);
		snprintf(name, sizeof(name), "f%u", i);
		ck_assert_int_eq(blk_fault_create(name, e->mem[i], &e->f[i]), 0);
	}
	ck_assert_int_eq(ev_loop_new(EV_AUTO, 256, &e->loop), 0);
	ck_assert_int_eq(raid_create("t0", l, e->f, n, &o, &e->raid), 0);
	e->nb = e->raid->size / BS;
	ck_assert_int_eq(blkdev_close(e->raid), 0);
	for (uint32_t i = 0; i < degraded; i++)
		e->miss |= 1u << (uint32_t)((seed + 2 * i) % n);
	assemble(e);		/* degraded: the missing member is stale from now on */
	e->dur = calloc(e->nb, sizeof(uint32_t));
	e->done = calloc(e->nb, sizeof(uint32_t));
	e->snap = calloc(e->nb, sizeof(uint32_t));
	e->busy = calloc(e->nb, 1);
	e->c = calloc(e->nb, sizeof(*e->c));
	for (int i = 0; i < QD; i++) {
		e->s[i].e = e;
		e->s[i].buf = aligned_alloc(4096, WIDEBLK * BS);
	}
	for (uint32_t i = 0; i < n; i++)
		ck_assert_int_eq(fault_record(e->f[i], true), 0);
}

static void env_fini(struct tenv *e)
{
	detach(e);
	for (uint32_t i = 0; i < e->n; i++) {
		ck_assert_int_eq(blkdev_close(e->f[i]), 0);
		ck_assert_int_eq(blkdev_close(e->mem[i]), 0);
	}
	for (uint64_t b = 0; b < e->nb; b++)
		free(e->c[b].id);
	for (int i = 0; i < QD; i++)
		free(e->s[i].buf);
	free(e->dur);
	free(e->done);
	free(e->snap);
	free(e->busy);
	free(e->c);
	free(e->zero);
	ev_loop_free(e->loop);
}

static void io_end(struct bio *bio, int status)
{
	struct wslot *s = bio->end_arg;
	struct tenv *e = s->e;

	s->busy = false;
	e->inflight--;
	if (s->flush) {
		e->flushing = false;
		if (status)
			return;
		/* every write done when it was sent is durable */
		for (uint64_t b = 0; b < e->nb; b++) {
			if (e->snap[b] <= e->dur[b])
				continue;
			e->dur[b] = e->snap[b];
			{
				struct cands *c = &e->c[b];
				uint32_t k = 0;

				for (uint32_t i = 0; i < c->n; i++)
					if (c->id[i] > e->dur[b])
						c->id[k++] = c->id[i];
				c->n = k;
			}
		}
		return;
	}
	for (uint64_t b = s->blk; b < s->blk + s->nblk; b++) {
		e->busy[b] = 0;
		if (!status)
			e->done[b] = s->id;
	}
}

/* Start one I/O in a free slot, if there is a free range. */
static void submit_one(struct tenv *e, struct wslot *s)
{
	struct iovec iov;
	enum bio_op op;

	if (!e->flushing && rnd(e) % 100 < 6) {
		s->flush = true;
		memcpy(e->snap, e->done, e->nb * sizeof(uint32_t));
		e->flushing = true;
		s->busy = true;
		e->inflight++;
		ck_assert_int_eq(blk_rw(e->ch, BIO_FLUSH, 0, NULL, 0, 0, 0, io_end, s), 0);
		return;
	}
	s->flush = false;
	s->nblk = 1 + rnd(e) % MAXBLK;
	/* now and then whole stripes, aligned (no reads, maybe no log): 5/6
	 * write up to 3 at once (raid_parity_multi.c) */
	if (rnd(e) % 4 == 0) {
		uint64_t row = e->raid->io_boundary / BS;

		if (e->level == RAID_LEVEL_5 || e->level == RAID_LEVEL_6) {
			uint32_t k = e->n - (e->level == RAID_LEVEL_6 ? 2 : 1);

			row = (uint64_t)STRIP * k / BS * (1 + rnd(e) % 3);
		}
		if (row <= WIDEBLK) {
			s->nblk = row;
			s->blk = rnd(e) % (e->nb / row) * row;
		} else {
			s->blk = rnd(e) % (e->nb - s->nblk + 1);
		}
	} else {
		s->blk = rnd(e) % (e->nb - s->nblk + 1);
	}
	for (uint64_t b = s->blk; b < s->blk + s->nblk; b++)
		if (e->busy[b])
			return;		/* overlaps a write in flight: not now */
	s->id = e->next_id++;
	/* one write in 8 is a DISCARD or a WRITE_ZEROES (the set reads zeros) */
	op = rnd(e) % 8 ? BIO_WRITE : rnd(e) % 2 ? BIO_DISCARD : BIO_WRITE_ZEROES;
	if (op != BIO_WRITE && blkdev_supports(e->raid, op)) {
		if (s->id >= e->zero_cap) {
			uint32_t cap = MAX(2 * e->zero_cap, 4096u);

			e->zero = realloc(e->zero, cap);
			ck_assert_ptr_nonnull(e->zero);
			memset(e->zero + e->zero_cap, 0, cap - e->zero_cap);
			e->zero_cap = cap;
		}
		e->zero[s->id] = 1;
		e->zero_writes++;
	} else {
		op = BIO_WRITE;
	}
	for (uint64_t b = 0; b < s->nblk; b++) {
		e->busy[s->blk + b] = 1;
		pattern(s->buf + b * BS, content(e, s->id), s->blk + b);
		cand_add(&e->c[s->blk + b], s->id);
	}
	s->busy = true;
	e->inflight++;
	iov.iov_base = s->buf;
	iov.iov_len = s->nblk * BS;
	ck_assert_int_eq(blk_rw(e->ch, op, 0, op == BIO_WRITE ? &iov : NULL,
				op == BIO_WRITE ? 1 : 0, s->blk * BS, s->nblk * BS, io_end, s), 0);
}

/* Run the workload for about nops I/Os, then cut the power in mid-flight. */
static void run_and_cut(struct tenv *e, unsigned nops, uint64_t cutseed)
{
	unsigned started = 0;
	int quiet;

	while (started < nops) {
		for (int i = 0; i < QD && started < nops; i++)
			if (!e->s[i].busy) {
				submit_one(e, &e->s[i]);
				started += e->s[i].busy;
			}
		ev_run_once(e->loop, 0);
		/* now and then the bitmap clears what is idle */
		if (e->level != RAID_LEVEL_0 && rnd(e) % 64 == 0)
			ck_assert_int_eq(raid_bitmap_clear_idle(e->raid, NULL), 0);
	}
	for (uint64_t i = rnd(e) % 4; i > 0; i--)
		ev_run_once(e->loop, 0);
	/* freeze: whatever the members end from now on is held back, so the
	 * set sends nothing more; then wait until no member write is in flight
	 * on the memory below (memory ends I/O in deferred tasks) */
	for (uint32_t i = 0; i < e->n; i++)
		ck_assert_int_eq(fault_set_latency(e->f[i], 3 * 1000 * 1000, FAULT_OPS_ALL), 0);
	quiet = 0;
	for (int i = 0; i < 100000 && quiet < 3; i++)
		quiet = ev_run_once(e->loop, 0) == 0 ? quiet + 1 : 0;
	for (uint32_t i = 0; i < e->n; i++) {
		struct fault_cut_policy pol = { .mode = FAULT_CUT_RANDOM,
						.seed = cutseed * 131 + i };

		if (!(e->miss & (1u << i)))
			ck_assert_int_eq(fault_power_cut(e->f[i], &pol), 0);
	}
	/* everything in flight now ends (with -EIO) */
	for (int i = 0; i < 100000 && e->inflight; i++)
		ev_run_once(e->loop, 10);
	ck_assert_uint_eq(e->inflight, 0);
	for (uint32_t i = 0; i < e->n; i++)
		ck_assert_int_eq(fault_set_latency(e->f[i], 0, FAULT_OPS_ALL), 0);
	detach(e);
	for (uint32_t i = 0; i < e->n; i++)
		if (!(e->miss & (1u << i)))
			ck_assert_int_eq(fault_power_restore(e->f[i]), 0);
}

/* Read everything back: count blocks holding what they must not. */
static void verify(struct tenv *e)
{
	uint8_t *buf = aligned_alloc(4096, e->nb * BS), want[BS];
	int st = 1;
	struct iovec iov = { buf, e->nb * BS };

	ck_assert_int_eq(blk_rw(e->ch, BIO_READ, 0, &iov, 1, 0, e->nb * BS, sync_end, &st), 0);
	for (int i = 0; i < 100000 && st == 1; i++)
		ev_run_once(e->loop, 10);
	ck_assert_int_eq(st, 0);
	for (uint64_t b = 0; b < e->nb; b++) {
		const uint8_t *got = buf + b * BS;
		uint32_t cid = (uint32_t)((const uint64_t *)(const void *)got)[0], id = 0;
		bool ok = false;

		/* the write it came from: the durable one, or a later one with
		 * that content (zeros: id 0, or a DISCARD / WRITE_ZEROES) */
		if (content(e, e->dur[b]) == cid) {
			ok = true;
			id = e->dur[b];
		}
		for (uint32_t i = 0; i < e->c[b].n && !ok; i++)
			if (content(e, e->c[b].id[i]) == cid) {
				ok = true;
				id = e->c[b].id[i];
			}
		if (ok) {
			pattern(want, cid, b);
			ok = !memcmp(got, want, BS);
		} else {
			pattern(want, content(e, e->dur[b]), b);
			ok = !memcmp(got, want, BS);
			id = e->dur[b];
		}
		e->checked++;
		if (!ok) {
			if (getenv("TORTURE_DEBUG"))
				fprintf(stderr, "bad block %llu (stripe %llu col %llu): holds id %u, durable %u, %u later\n",
					(unsigned long long)b, (unsigned long long)(b * BS / (STRIP * (e->n - 2))),
					(unsigned long long)(b * BS % (STRIP * (e->n - 2)) / STRIP),
					(uint32_t)((const uint64_t *)(const void *)got)[0], e->dur[b], e->c[b].n);
			e->bad++;
			continue;
		}
		e->new_blocks += id != e->dur[b];
		/* what it holds now is durable */
		e->dur[b] = e->done[b] = id;
		e->c[b].n = 0;
	}
	free(buf);
}

static unsigned cuts_per_config(void)
{
	const char *s = getenv("SAND_TORTURE_CUTS");
	long v = s ? strtol(s, NULL, 10) : 0;

	return v > 0 ? (unsigned)v : 200;
}

/* Returns the number of corrupt blocks found over all cuts. */
static uint64_t torture(enum raid_level l, uint32_t n, uint32_t degraded, bool no_ppl,
			unsigned cuts, uint64_t seed)
{
	struct tenv e;
	uint64_t bad;

	env_init(&e, l, n, degraded, no_ppl, seed);
	for (unsigned c = 0; c < cuts; c++) {
		run_and_cut(&e, 8 + (unsigned)(rnd(&e) % 120), seed * 100003 + c);
		assemble(&e);
		if (!degraded) {
			uint64_t bad_rows = 1;

			/* parity and mirrors agree again (resync of the dirty regions) */
			ck_assert_int_eq(raid_scrub(e.raid, false, &bad_rows), 0);
			ck_assert_uint_eq(bad_rows, 0);
		}
		verify(&e);
		if (getenv("TORTURE_DEBUG") && e.bad) {
			fprintf(stderr, "first bad at cut %u\n", c);
			abort();
		}
		for (uint32_t i = 0; i < e.n; i++)
			if (!(e.miss & (1u << i))) {
				struct fault_stats st;

				ck_assert_int_eq(fault_get_stats(e.f[i], &st), 0);
				ck_assert_uint_eq(st.cuts, c + 1);
			}
	}
	fprintf(stderr, "RAID %d over %u%s%s: %u cuts, %llu blocks checked, %llu held "
		"newer data, %llu corrupt, %llu discards and write-zeroes\n", l, n,
		degraded > 1 ? " doubly degraded" : degraded ? " degraded" : "",
		no_ppl ? " without the log" : "", cuts, (unsigned long long)e.checked,
		(unsigned long long)e.new_blocks, (unsigned long long)e.bad,
		(unsigned long long)e.zero_writes);
	ck_assert_uint_gt(e.new_blocks, 0);	/* unflushed writes did land */
	ck_assert_uint_gt(e.zero_writes, 0);
	bad = e.bad;
	env_fini(&e);
	return bad;
}

static const struct {
	enum raid_level	level;
	uint32_t	n;
	uint32_t	degraded;	/* members missing */
} cfgs[] = {
	{ RAID_LEVEL_1, 2, 0 }, { RAID_LEVEL_1, 3, 1 },
	{ RAID_LEVEL_10, 4, 0 }, { RAID_LEVEL_10, 4, 1 },
	{ RAID_LEVEL_5, 4, 0 }, { RAID_LEVEL_5, 4, 1 },
	{ RAID_LEVEL_6, 5, 0 }, { RAID_LEVEL_6, 5, 1 }, { RAID_LEVEL_6, 5, 2 },
};

START_TEST(power_cuts)
{
	ck_assert_uint_eq(torture(cfgs[_i].level, cfgs[_i].n, cfgs[_i].degraded, false,
				  cuts_per_config(), 1000 + (uint64_t)_i), 0);
}
END_TEST

/* Without the partial parity log, the degraded RAID 5 case corrupts blocks
 * that no write touched: the torture above would catch a broken log. */
START_TEST(bites_without_ppl)
{
	ck_assert_uint_gt(torture(RAID_LEVEL_5, 4, 1, true, MIN(cuts_per_config(), 50u), 77), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("raid_torture");
	TCase *tc = tcase_create("cuts");

	tcase_set_timeout(tc, 120 * MAX(cuts_per_config(), 200u) / 200);
	tcase_add_loop_test(tc, power_cuts, 0, (int)ARRAY_SIZE(cfgs));
	tcase_add_test(tc, bites_without_ppl);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int nf;

	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? 1 : 0;
}
