/* SPDX-License-Identifier: MIT */
/*
 * The RAID block device on memory members (each wrapped in a fault device):
 * random reads and writes of random sizes, alignments and iovec shapes,
 * many in flight on one loop, checked against a model buffer; parity
 * checked on the members afterwards; members failed under I/O; reassembly
 * from superblocks with members shuffled; refusals.
 *
 * In-flight I/Os never overlap each other (so the model is exact), but they
 * share stripes all the time, which is what the stripe lock is for.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/fault.h"
#include "sand/raid.h"

#define BS		512u
#define STRIP		8192u
#define MEMBER_DATA	(256u * 1024)
#define MEMBER_SIZE	(RAID_DATA_OFFSET + MEMBER_DATA)
#define QD		32
#define MAXLEN		(48u * 1024)

struct env;

struct slot {
	struct env	*e;
	bool		busy, write;
	uint64_t	off, len;
	uint8_t		*buf;
	struct iovec	iov[8];
	int		iovcnt;
};

struct env {
	uint32_t	n;
	struct blkdev	*mem[RAID_MAX_MEMBERS];
	struct blkdev	*f[RAID_MAX_MEMBERS];
	struct blkdev	*raid;
	struct ev_loop	*loop;
	struct blkchan	*ch;
	uint8_t		*model;
	uint64_t	size;
	uint32_t	bs;		/* the set's block size */
	bool		discard_zeroes;	/* members read zeros after DISCARD (memory) */
	bool		no_flush;
	uint8_t		*dirty;		/* if set: 1 per 512-byte block written */
	unsigned	flush_permille;	/* of I/Os that are FLUSH (0: 20) */
	uint64_t	rng;
	struct slot	slots[QD];
	unsigned	inflight;
	uint64_t	done, errors, mismatches;
};

static uint64_t rnd(struct env *e)
{
	e->rng ^= e->rng << 13;
	e->rng ^= e->rng >> 7;
	e->rng ^= e->rng << 17;
	return e->rng;
}

static void env_members(struct env *e, uint32_t n, uint64_t seed)
{
	char name[32];

	memset(e, 0, sizeof(*e));
	e->n = n;
	e->rng = seed * 2654435761u + 1;
	for (uint32_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "m%u", i);
		ck_assert_int_eq(blk_mem_create(name, MEMBER_SIZE, BS, &e->mem[i]), 0);
		snprintf(name, sizeof(name), "f%u", i);
		ck_assert_int_eq(blk_fault_create(name, e->mem[i], &e->f[i]), 0);
	}
	ck_assert_int_eq(ev_loop_new(EV_AUTO, 256, &e->loop), 0);
}

static void env_attach(struct env *e)
{
	ck_assert_int_eq(blk_chan_open(e->raid, e->loop, &e->ch), 0);
	e->size = e->raid->size;
	e->bs = e->raid->block_size;
	e->discard_zeroes = e->mem[0] != NULL;
	if (!e->model)
		e->model = calloc(1, e->size);
}

/* Bytes per write-intent bitmap bit of the sets env_create makes (0: the
 * default, one row on these small members, so no bio spans two rows). */
static uint64_t env_region;

static void env_create(struct env *e, enum raid_level l, uint32_t n, uint64_t seed)
{
	struct raid_opts o = { .strip = STRIP, .bitmap_region = env_region };

	env_members(e, n, seed);
	ck_assert_int_eq(raid_create("r0", l, e->f, n, &o, &e->raid), 0);
	env_attach(e);
}

static void closed_cb(void *arg)
{
	*(bool *)arg = true;
}

static void env_detach(struct env *e)
{
	bool closed = false;

	blk_chan_close(e->ch, closed_cb, &closed);
	for (int i = 0; i < 1000 && !closed; i++)
		ev_run_once(e->loop, 10);
	ck_assert(closed);
	ck_assert_int_eq(blkdev_close(e->raid), 0);
	e->raid = NULL;
}

static void env_free(struct env *e)
{
	if (e->raid)
		env_detach(e);
	for (uint32_t i = 0; i < e->n; i++) {
		ck_assert_int_eq(blkdev_close(e->f[i]), 0);
		if (e->mem[i])
			ck_assert_int_eq(blkdev_close(e->mem[i]), 0);
	}
	ev_loop_free(e->loop);
	free(e->model);
}

static void io_end(struct bio *bio, int status)
{
	struct slot *s = bio->end_arg;
	struct env *e = s->e;

	if (status) {
		e->errors++;
		fprintf(stderr, "%s %llu+%llu: %d\n", s->write ? "write" : "read",
			(unsigned long long)s->off, (unsigned long long)s->len, status);
	} else if (!s->write && s->buf && memcmp(s->buf, e->model + s->off, s->len)) {
		uint64_t i = 0;

		while (s->buf[i] == e->model[s->off + i])
			i++;
		e->mismatches++;
		fprintf(stderr, "read %llu+%llu: data differs at %llu (+%llu)\n",
			(unsigned long long)s->off, (unsigned long long)s->len,
			(unsigned long long)(s->off + i), (unsigned long long)i);
	}
	free(s->buf);
	s->buf = NULL;
	s->busy = false;
	e->inflight--;
	e->done++;
}

static bool overlaps(struct env *e, uint64_t off, uint64_t len)
{
	for (int i = 0; i < QD; i++) {
		struct slot *s = &e->slots[i];

		if (s->busy && s->len && off < s->off + s->len && s->off < off + len)
			return true;
	}
	return false;
}

/* Fill one free slot with a random I/O; false if none could be placed. */
static bool submit_one(struct env *e, struct slot *s)
{
	uint64_t off = 0, len = 0;
	unsigned r = (unsigned)(rnd(e) % 1000);
	unsigned fl = e->no_flush ? 0 : e->flush_permille ? e->flush_permille : 20;
	enum bio_op op = r < fl ? BIO_FLUSH : r < 500 ? BIO_WRITE : BIO_READ;
	int tries;

	if (op == BIO_WRITE && r < fl + 40 && blkdev_supports(e->raid, BIO_WRITE_ZEROES))
		op = BIO_WRITE_ZEROES;
	else if (op == BIO_WRITE && r < fl + 70 && e->discard_zeroes &&
		 blkdev_supports(e->raid, BIO_DISCARD))
		op = BIO_DISCARD;

	if (op != BIO_FLUSH) {
		for (tries = 0; tries < 20; tries++) {
			len = (1 + rnd(e) % (MAXLEN / e->bs)) * e->bs;
			if (rnd(e) % 8 == 0)	/* often exactly a strip or stripe */
				len = STRIP * (1 + rnd(e) % 4);
			len = MIN(len, e->size);
			off = rnd(e) % ((e->size - len) / e->bs + 1) * e->bs;
			if (rnd(e) % 4 == 0)
				off = off / STRIP * STRIP;
			if (off + len <= e->size && !overlaps(e, off, len))
				break;
		}
		if (tries == 20)
			return false;
	}
	memset(s, 0, sizeof(*s));
	s->e = e;
	s->off = off;
	s->len = len;
	s->write = op != BIO_READ;
	if (e->dirty && op != BIO_READ && op != BIO_FLUSH)
		memset(e->dirty + off / 512, 1, len / 512);
	if (op == BIO_WRITE_ZEROES || op == BIO_DISCARD) {
		memset(e->model + off, 0, len);
	} else if (op != BIO_FLUSH) {
		size_t a, b;

		s->buf = malloc(len);
		if (s->write) {
			for (uint64_t i = 0; i < len; i += 8) {
				uint64_t v = rnd(e);

				memcpy(s->buf + i, &v, 8);
			}
			memcpy(e->model + off, s->buf, len);
		}
		/* 1 to 8 iovecs, split anywhere (pieces may be empty) */
		s->iovcnt = 1 + (int)(rnd(e) % 8);
		a = 0;
		for (int i = 0; i < s->iovcnt; i++) {
			b = i == s->iovcnt - 1 ? len : a + (size_t)(rnd(e) % (len - a + 1));
			s->iov[i] = (struct iovec){ s->buf + a, b - a };
			a = b;
		}
	}
	s->busy = true;
	e->inflight++;
	ck_assert_int_eq(blk_rw(e->ch, op, 0, s->iov, s->iovcnt, off, len, io_end, s), 0);
	return true;
}

typedef void (*hook_fn)(struct env *e, uint64_t nsubmitted);

static void run_ops(struct env *e, uint64_t nops, hook_fn hook)
{
	uint64_t submitted = 0;

	while (submitted < nops || e->inflight) {
		for (int i = 0; i < QD && submitted < nops; i++) {
			if (e->slots[i].busy)
				continue;
			if (!submit_one(e, &e->slots[i]))
				break;
			submitted++;
			if (hook)
				hook(e, submitted);
		}
		ck_assert_int_ge(ev_run_once(e->loop, 1000), 0);
	}
}

static void sync_end(struct bio *bio, int status)
{
	int *st = bio->end_arg;

	*st = status;
}

static void chan_read(struct env *e, struct blkchan *ch, uint64_t off, void *buf, uint64_t len)
{
	struct iovec iov = { buf, len };
	int st = 1;

	ck_assert_int_eq(blk_rw(ch, BIO_READ, 0, &iov, 1, off, len, sync_end, &st), 0);
	for (int i = 0; i < 10000 && st == 1; i++)
		ev_run_once(e->loop, 100);
	ck_assert_int_eq(st, 0);
}

/* Channels on every member, on the env's loop (blk_sync_io would set up a
 * loop and a channel per call: slow with libaio). */
static void members_open(struct env *e, struct blkchan **ch)
{
	for (uint32_t i = 0; i < e->n; i++)
		ck_assert_int_eq(blk_chan_open(e->f[i], e->loop, &ch[i]), 0);
}

static void members_close(struct env *e, struct blkchan **ch)
{
	for (uint32_t i = 0; i < e->n; i++) {
		bool closed = false;

		blk_chan_close(ch[i], closed_cb, &closed);
		for (int j = 0; j < 1000 && !closed; j++)
			ev_run_once(e->loop, 10);
		ck_assert(closed);
	}
}

/* Read the whole set back through the env's channel, 64 KiB at a time. */
static void verify_all(struct env *e)
{
	uint8_t *buf = malloc(e->size);

	for (uint64_t off = 0; off < e->size; off += 64 * 1024)
		chan_read(e, e->ch, off, buf + off, MIN(64 * 1024, e->size - off));
	ck_assert_int_eq(memcmp(buf, e->model, e->size), 0);
	free(buf);
}

/* P (and Q) on the members agree with their data, stripe by stripe. */
static void verify_parity(struct env *e, enum raid_level l)
{
	int np = l == RAID_LEVEL_6 ? 2 : 1;
	uint32_t k = e->n - (uint32_t)np, cols[RAID_MAX_MEMBERS];
	struct raid_geom g = { .level = l, .nmembers = e->n, .strip = STRIP,
			       .member_size = MEMBER_DATA };
	uint8_t *col[RAID_MAX_MEMBERS + 2], *want[2];
	struct blkchan *ch[RAID_MAX_MEMBERS];

	members_open(e, ch);
	for (uint32_t c = 0; c < e->n; c++)
		col[c] = aligned_alloc(64, STRIP);
	want[0] = aligned_alloc(64, STRIP);
	want[1] = aligned_alloc(64, STRIP);
	for (uint64_t st = 0; st < MEMBER_DATA / STRIP; st++) {
		uint8_t *gen[RAID_MAX_MEMBERS + 2];

		raid_stripe_cols(&g, st, cols);
		for (uint32_t c = 0; c < e->n; c++)
			chan_read(e, ch[cols[c]], RAID_DATA_OFFSET + st * STRIP, col[c], STRIP);
		for (uint32_t c = 0; c < k; c++)
			gen[c] = col[c];
		gen[k] = want[0];
		gen[k + 1] = want[1];
		ck_assert_int_eq(raid_parity_gen(np, (int)k, STRIP, gen), 0);
		for (int p = 0; p < np; p++)
			ck_assert_msg(!memcmp(want[p], col[k + p], STRIP),
				      "stripe %llu: %s does not match", (unsigned long long)st,
				      p ? "Q" : "P");
	}
	members_close(e, ch);
	for (uint32_t c = 0; c < e->n; c++)
		free(col[c]);
	free(want[0]);
	free(want[1]);
}

/* Mirrors hold the same bytes. */
static void verify_mirrors(struct env *e, enum raid_level l)
{
	uint8_t *a = malloc(MEMBER_DATA), *b = malloc(MEMBER_DATA);
	struct blkchan *ch[RAID_MAX_MEMBERS];

	members_open(e, ch);
	for (uint32_t i = 1; i < e->n; i++) {
		uint32_t ref = l == RAID_LEVEL_10 ? (i % 2 ? i - 1 : i) : 0;

		if (ref == i)
			continue;
		chan_read(e, ch[ref], RAID_DATA_OFFSET, a, MEMBER_DATA);
		chan_read(e, ch[i], RAID_DATA_OFFSET, b, MEMBER_DATA);
		ck_assert_int_eq(memcmp(a, b, MEMBER_DATA), 0);
	}
	members_close(e, ch);
	free(a);
	free(b);
}

static void random_io(enum raid_level l, uint32_t n, uint64_t seed)
{
	struct env e;

	env_create(&e, l, n, seed);
	run_ops(&e, 3000, NULL);
	ck_assert_uint_eq(e.errors, 0);
	ck_assert_uint_eq(e.mismatches, 0);
	ck_assert_uint_eq(e.done, 3000);
	verify_all(&e);
	ck_assert_int_eq(raid_degraded(e.raid), 0);
	{
		uint64_t wz = 0, dc = 0;

		for (uint32_t i = 0; i < n; i++) {
			struct fault_stats st;

			ck_assert_int_eq(fault_get_stats(e.f[i], &st), 0);
			wz += st.ios[BIO_WRITE_ZEROES];
			dc += st.ios[BIO_DISCARD];
		}
		/* 0, 1, 10 pass them down; 5, 6 zero whole stripes on the
		 * members and write zeros into partial ones: never a DISCARD */
		if (l == RAID_LEVEL_5 || l == RAID_LEVEL_6)
			ck_assert_uint_eq(dc, 0);
		else
			ck_assert(wz > 0 && dc > 0);
	}
	env_detach(&e);
	if (l == RAID_LEVEL_5 || l == RAID_LEVEL_6)
		verify_parity(&e, l);
	if (l == RAID_LEVEL_1 || l == RAID_LEVEL_10)
		verify_mirrors(&e, l);
	env_free(&e);
}

START_TEST(io_raid0) { random_io(RAID_LEVEL_0, 3, 1); random_io(RAID_LEVEL_0, 1, 2); }
END_TEST
START_TEST(io_raid1) { random_io(RAID_LEVEL_1, 2, 3); random_io(RAID_LEVEL_1, 3, 4); }
END_TEST
START_TEST(io_raid10) { random_io(RAID_LEVEL_10, 4, 5); random_io(RAID_LEVEL_10, 6, 6); }
END_TEST
START_TEST(io_raid5) { random_io(RAID_LEVEL_5, 3, 7); random_io(RAID_LEVEL_5, 5, 8); }
END_TEST
START_TEST(io_raid6) { random_io(RAID_LEVEL_6, 4, 9); random_io(RAID_LEVEL_6, 6, 10); }
END_TEST


/* How many member reads a write costs: none for a full stripe, RMW
 * (data + parity) for a small write to a wide set, RCW when cheaper. */
static uint64_t member_reads(struct env *e)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < e->n; i++) {
		struct fault_stats st;

		ck_assert_int_eq(fault_get_stats(e->f[i], &st), 0);
		n += st.ios[BIO_READ];
		ck_assert_int_eq(fault_reset_stats(e->f[i]), 0);
	}
	return n;
}

static void write_sync(struct env *e, uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(len);

	for (uint64_t i = 0; i < len; i++)
		buf[i] = (uint8_t)rnd(e);
	memcpy(e->model + off, buf, len);
	ck_assert_int_eq(blk_sync_io(e->raid, BIO_WRITE, 0, off, buf, len), 0);
	free(buf);
}

START_TEST(write_costs)
{
	struct env e;

	env_create(&e, RAID_LEVEL_6, 6, 60);		/* 4 data columns */
	member_reads(&e);
	write_sync(&e, 4 * STRIP, 4 * STRIP);		/* stripe 1, whole */
	ck_assert_uint_eq(member_reads(&e), 0);
	write_sync(&e, 8 * STRIP + 1024, 512);		/* RMW: D + P + Q */
	ck_assert_uint_eq(member_reads(&e), 3);
	write_sync(&e, 12 * STRIP, 3 * STRIP);		/* RCW: the one column left */
	ck_assert_uint_eq(member_reads(&e), 1);
	write_sync(&e, 16 * STRIP + 512, 4 * STRIP - 1024);	/* RCW over R = the strip */
	ck_assert_uint_eq(member_reads(&e), 2);
	verify_all(&e);
	env_detach(&e);
	verify_parity(&e, RAID_LEVEL_6);
	env_free(&e);
}
END_TEST

/* ---- DISCARD and WRITE_ZEROES on RAID 5/6 ----
 * Over a set full of data: a range with a partial stripe at each end and
 * two whole stripes between. The whole stripes become one WRITE_ZEROES per
 * member (parity included), the partial ones are written as zeros through
 * the parity path; no DISCARD reaches a member; the range reads zeros, the
 * rest is intact, parity matches. Then the same degraded. */

static void member_zero_ios(struct env *e, uint64_t *wz, uint64_t *dc)
{
	*wz = *dc = 0;
	for (uint32_t i = 0; i < e->n; i++) {
		struct fault_stats st;

		ck_assert_int_eq(fault_get_stats(e->f[i], &st), 0);
		*wz += st.ios[BIO_WRITE_ZEROES];
		*dc += st.ios[BIO_DISCARD];
		ck_assert_int_eq(fault_reset_stats(e->f[i]), 0);
	}
}

static void zero_sync(struct env *e, enum bio_op op, uint64_t off, uint64_t len)
{
	memset(e->model + off, 0, len);
	ck_assert_int_eq(blk_sync_io(e->raid, op, 0, off, NULL, len), 0);
}

static void zeroes(enum raid_level l, uint32_t n, uint64_t seed)
{
	uint32_t k = n - (l == RAID_LEVEL_6 ? 2 : 1);
	uint64_t sw = (uint64_t)k * STRIP, wz, dc;
	struct env e;

	env_create(&e, l, n, seed);
	ck_assert(blkdev_supports(e.raid, BIO_DISCARD));
	ck_assert(blkdev_supports(e.raid, BIO_WRITE_ZEROES));
	write_sync(&e, 0, e.size);
	member_zero_ios(&e, &wz, &dc);
	zero_sync(&e, BIO_DISCARD, sw + 3 * BS, 3 * sw + 2 * BS);	/* 2, 3 whole */
	member_zero_ios(&e, &wz, &dc);
	ck_assert_uint_eq(wz, 2 * n);
	ck_assert_uint_eq(dc, 0);
	verify_all(&e);
	write_sync(&e, 0, e.size);
	zero_sync(&e, BIO_WRITE_ZEROES, 5 * sw - 7 * BS, 3 * sw + 9 * BS);	/* 5, 6, 7 whole */
	member_zero_ios(&e, &wz, &dc);
	ck_assert_uint_eq(wz, 3 * n);
	ck_assert_uint_eq(dc, 0);
	verify_all(&e);
	/* a small discard inside one strip, one across two strips */
	zero_sync(&e, BIO_DISCARD, 12 * sw + BS, 2 * BS);
	zero_sync(&e, BIO_DISCARD, 13 * sw + STRIP - BS, 2 * BS);
	verify_all(&e);
	env_detach(&e);
	verify_parity(&e, l);

	/* degraded: the lost column reads back zeros where discarded */
	ck_assert_int_eq(raid_assemble(e.f, n, &e.raid), 0);
	env_attach(&e);
	ck_assert_int_eq(fault_fail_after(e.f[1], 0, FAULT_OPS_ALL, -EIO), 0);
	zero_sync(&e, BIO_DISCARD, 15 * sw + 5 * BS, 2 * sw);
	zero_sync(&e, BIO_WRITE_ZEROES, 20 * sw, 2 * sw);
	ck_assert_int_eq(raid_degraded(e.raid), 1);
	verify_all(&e);
	env_free(&e);
}

START_TEST(zeroes_raid5) { zeroes(RAID_LEVEL_5, 4, 40); zeroes(RAID_LEVEL_5, 3, 41); }
END_TEST
START_TEST(zeroes_raid6) { zeroes(RAID_LEVEL_6, 6, 42); zeroes(RAID_LEVEL_6, 4, 43); }
END_TEST

/* ---- writes over several whole stripes (raid_parity_multi.c) ----
 * With a bitmap region of the whole member, a bio may span io_boundary
 * (several stripes). Whole stripes of a whole set: one member bio per
 * member and no reads, parity right, FUA honoured; unaligned ends through
 * the stripe path; a stripe with a log entry and a degraded set stripe by
 * stripe; everything checked against the model. */

static void member_ios(struct env *e, uint64_t *rd, uint64_t *wr, uint64_t *most)
{
	*rd = *wr = *most = 0;
	for (uint32_t i = 0; i < e->n; i++) {
		struct fault_stats st;

		ck_assert_int_eq(fault_get_stats(e->f[i], &st), 0);
		*rd += st.ios[BIO_READ];
		*wr += st.ios[BIO_WRITE];
		*most = MAX(*most, st.ios[BIO_WRITE]);
		ck_assert_int_eq(fault_reset_stats(e->f[i]), 0);
	}
}

static void write_flags(struct env *e, uint32_t flags, uint64_t off, uint64_t len, size_t mis)
{
	uint8_t *mem = malloc(len + mis), *buf = mem + mis;

	for (uint64_t i = 0; i < len; i++)
		buf[i] = (uint8_t)rnd(e);
	memcpy(e->model + off, buf, len);
	ck_assert_int_eq(blk_sync_io(e->raid, BIO_WRITE, flags, off, buf, len), 0);
	free(mem);
}

static uint64_t at_risk(struct env *e)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < e->n; i++) {
		struct fault_stats st;

		ck_assert_int_eq(fault_get_stats(e->f[i], &st), 0);
		n += st.at_risk;
	}
	return n;
}

static void multi_stripe(enum raid_level l, uint32_t n, uint64_t seed)
{
	uint32_t k = n - (l == RAID_LEVEL_6 ? 2 : 1);
	uint64_t sw = (uint64_t)k * STRIP, rows, per, rd, wr, most;
	struct env e;

	env_region = MEMBER_DATA;
	env_create(&e, l, n, seed);
	env_region = 0;
	ck_assert_uint_eq(e.raid->io_boundary % sw, 0);
	per = e.raid->io_boundary / sw;		/* stripes per bio */
	ck_assert_uint_gt(per, 1);
	rows = e.size / sw;
	ck_assert_uint_ge(rows, 30);	/* the offsets below */
	write_sync(&e, 0, sw);		/* the superblocks and bitmap say dirty */
	member_ios(&e, &rd, &wr, &most);

	/* the whole set, in bios of io_boundary: one member write per bio */
	write_sync(&e, 0, e.size);
	member_ios(&e, &rd, &wr, &most);
	ck_assert_uint_eq(rd, 0);
	ck_assert_uint_eq(wr, n * ((rows + per - 1) / per));
	ck_assert_uint_eq(most, (rows + per - 1) / per);
	verify_all(&e);
	member_ios(&e, &rd, &wr, &most);

	/* 3 whole stripes, the caller's buffer not 32-byte aligned (copied) */
	write_flags(&e, 0, 2 * sw, 3 * sw, 1);
	member_ios(&e, &rd, &wr, &most);
	ck_assert_uint_eq(rd, 0);
	ck_assert_uint_eq(wr, n);

	/* FUA: durable when it ends, nothing at risk on any member */
	for (uint32_t i = 0; i < n; i++)
		ck_assert_int_eq(fault_record(e.f[i], true), 0);
	write_flags(&e, BIO_FUA, 6 * sw, 2 * sw, 0);
	ck_assert_uint_eq(at_risk(&e), 0);
	write_flags(&e, 0, 6 * sw, 2 * sw, 0);
	ck_assert_uint_gt(at_risk(&e), 0);
	for (uint32_t i = 0; i < n; i++)
		ck_assert_int_eq(fault_record(e.f[i], false), 0);
	member_ios(&e, &rd, &wr, &most);
	ck_assert_uint_eq(rd, 0);
	ck_assert_uint_eq(wr, 2 * n);
	verify_all(&e);
	member_ios(&e, &rd, &wr, &most);

	/* unaligned at both ends: the ends read (stripe path), the middle not */
	write_flags(&e, 0, 9 * sw + 3 * BS, 3 * sw + 5 * BS, 0);
	member_ios(&e, &rd, &wr, &most);
	ck_assert_uint_gt(rd, 0);
	verify_all(&e);
	write_flags(&e, BIO_FUA, 14 * sw - BS, 2 * sw + 2 * BS, 3);
	verify_all(&e);

	/* a stripe with a partial write logged: stripe by stripe, still right */
	write_flags(&e, 0, 17 * sw + 5 * BS, BS, 0);
	write_flags(&e, 0, 16 * sw, 4 * sw, 0);
	verify_all(&e);
	zero_sync(&e, BIO_WRITE_ZEROES, 20 * sw, 2 * sw);
	zero_sync(&e, BIO_DISCARD, 23 * sw + BS, 3 * sw);
	member_ios(&e, &rd, &wr, &most);
	verify_all(&e);
	env_detach(&e);
	verify_parity(&e, l);

	/* degraded: stripe by stripe, the lost column reads back right */
	ck_assert_int_eq(raid_assemble(e.f, n, &e.raid), 0);
	env_attach(&e);
	ck_assert_int_eq(fault_fail_after(e.f[n - 1], 0, FAULT_OPS_ALL, -EIO), 0);
	write_flags(&e, 0, sw, 4 * sw, 0);
	ck_assert_int_eq(raid_degraded(e.raid), 1);
	write_flags(&e, BIO_FUA, 8 * sw + BS, 5 * sw - 3 * BS, 1);
	write_flags(&e, 0, 24 * sw, 6 * sw, 0);
	zero_sync(&e, BIO_WRITE_ZEROES, 14 * sw, 3 * sw);
	verify_all(&e);
	env_free(&e);
}

START_TEST(multi_raid5) { multi_stripe(RAID_LEVEL_5, 3, 50); multi_stripe(RAID_LEVEL_5, 5, 51); }
END_TEST
START_TEST(multi_raid6) { multi_stripe(RAID_LEVEL_6, 4, 52); multi_stripe(RAID_LEVEL_6, 6, 53); }
END_TEST

/* Random I/O as io_raid5/6, bios spanning stripes (one bitmap region). */
static void random_io_wide(enum raid_level l, uint32_t n, uint64_t seed)
{
	env_region = MEMBER_DATA;
	random_io(l, n, seed);
	env_region = 0;
}

START_TEST(io_wide_raid5) { random_io_wide(RAID_LEVEL_5, 3, 54); random_io_wide(RAID_LEVEL_5, 5, 55); }
END_TEST
START_TEST(io_wide_raid6) { random_io_wide(RAID_LEVEL_6, 4, 56); random_io_wide(RAID_LEVEL_6, 6, 57); }
END_TEST


/* ---- failing members under I/O ---- */

static uint32_t fail_a, fail_b;
static uint64_t fail_at_a, fail_at_b;

static void fail_hook(struct env *e, uint64_t nsub)
{
	if (nsub == fail_at_a)
		ck_assert_int_eq(fault_fail_after(e->f[fail_a], 0, FAULT_OPS_ALL, -EIO), 0);
	if (nsub == fail_at_b)
		ck_assert_int_eq(fault_fail_after(e->f[fail_b], 0, FAULT_OPS_ALL, -EIO), 0);
}

static void shuffle(struct env *e, struct blkdev **out)
{
	for (uint32_t i = 0; i < e->n; i++)
		out[i] = e->f[i];
	for (uint32_t i = e->n - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(rnd(e) % (i + 1));
		struct blkdev *t = out[i];

		out[i] = out[j];
		out[j] = t;
	}
}

static void fail_members(enum raid_level l, uint32_t n, uint32_t a, uint32_t b, uint64_t seed)
{
	struct env e;
	struct blkdev *sh[RAID_MAX_MEMBERS];
	uint32_t nfail = b == a ? 1 : 2;
	uint64_t gen;

	env_create(&e, l, n, seed);
	gen = raid_generation(e.raid);
	fail_a = a;
	fail_b = b;
	fail_at_a = 300;
	fail_at_b = b == a ? 0 : 900;
	run_ops(&e, 2000, fail_hook);
	ck_assert_uint_eq(e.errors, 0);
	ck_assert_uint_eq(e.mismatches, 0);
	ck_assert_int_eq(raid_degraded(e.raid), (int)nfail);
	ck_assert_int_eq(raid_member_state(e.raid, a), RAID_MEMBER_FAILED);
	ck_assert_uint_gt(raid_generation(e.raid), gen);
	verify_all(&e);
	env_detach(&e);

	/* the failed disks come back (stale), members in any order */
	ck_assert_int_eq(fault_clear(e.f[a]), 0);
	ck_assert_int_eq(fault_clear(e.f[b]), 0);
	shuffle(&e, sh);
	ck_assert_int_eq(raid_assemble(sh, n, &e.raid), 0);
	ck_assert_int_eq(raid_degraded(e.raid), (int)nfail);
	ck_assert_int_eq(raid_member_state(e.raid, a), RAID_MEMBER_NONE);
	env_attach(&e);
	verify_all(&e);
	run_ops(&e, 500, NULL);		/* and it still works, degraded */
	ck_assert_uint_eq(e.errors, 0);
	ck_assert_uint_eq(e.mismatches, 0);
	verify_all(&e);
	env_free(&e);
}

START_TEST(fail_raid1) { fail_members(RAID_LEVEL_1, 2, 1, 1, 11); fail_members(RAID_LEVEL_1, 3, 0, 2, 12); }
END_TEST
START_TEST(fail_raid10) { fail_members(RAID_LEVEL_10, 4, 2, 2, 13); fail_members(RAID_LEVEL_10, 6, 1, 4, 14); }
END_TEST
START_TEST(fail_raid5) { fail_members(RAID_LEVEL_5, 3, 0, 0, 15); fail_members(RAID_LEVEL_5, 5, 3, 3, 16); }
END_TEST
START_TEST(fail_raid6) { fail_members(RAID_LEVEL_6, 4, 1, 3, 17); fail_members(RAID_LEVEL_6, 6, 0, 5, 18); }
END_TEST


/* ---- two loops on two threads, sharing stripes ---- */

#define CHUNK	4096u
#define WQD	16

struct worker;

struct wslot {
	struct worker	*w;
	bool		busy, write;
	uint64_t	off, len;
	uint8_t		*buf;
	struct iovec	iov;
};

struct worker {
	struct env	*e;
	pthread_t	thread;
	uint32_t	t;		/* owns chunks with chunk % 2 == t */
	uint64_t	rng, nops, fail_at;
	int		fail_member;
	struct wslot	slots[WQD];
	unsigned	inflight;
	uint64_t	errors, mismatches;
};

static uint64_t wrnd(struct worker *w)
{
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	return w->rng;
}

static void wio_end(struct bio *bio, int status)
{
	struct wslot *s = bio->end_arg;
	struct worker *w = s->w;

	if (status)
		w->errors++;
	else if (!s->write && memcmp(s->buf, w->e->model + s->off, s->len))
		w->mismatches++;
	free(s->buf);
	s->busy = false;
	w->inflight--;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct env *e = w->e;
	struct ev_loop *loop;
	struct blkchan *ch;
	uint64_t nchunks = e->size / CHUNK, submitted = 0;
	bool closed = false;

	if (ev_loop_new(EV_AUTO, 128, &loop) || blk_chan_open(e->raid, loop, &ch)) {
		w->errors++;
		return NULL;
	}
	while (submitted < w->nops || w->inflight) {
		for (int i = 0; i < WQD && submitted < w->nops; i++) {
			struct wslot *s = &w->slots[i];
			uint64_t c = wrnd(w) % nchunks, b = wrnd(w) % (CHUNK / BS), n;
			bool clash = false;

			if (s->busy)
				continue;
			c = c - c % 2 + w->t;
			if (c >= nchunks)
				continue;
			n = 1 + wrnd(w) % (CHUNK / BS - b);
			s->off = c * CHUNK + b * BS;
			s->len = n * BS;
			for (int j = 0; j < WQD; j++)
				if (w->slots[j].busy && w->slots[j].off / CHUNK == c)
					clash = true;
			if (clash)
				continue;
			s->w = w;
			s->write = wrnd(w) % 2;
			s->buf = malloc(s->len);
			if (s->write) {
				for (uint64_t k = 0; k < s->len; k++)
					s->buf[k] = (uint8_t)wrnd(w);
				memcpy(e->model + s->off, s->buf, s->len);
			}
			s->iov = (struct iovec){ s->buf, s->len };
			s->busy = true;
			w->inflight++;
			if (blk_rw(ch, s->write ? BIO_WRITE : BIO_READ, 0, &s->iov, 1, s->off,
				   s->len, wio_end, s)) {
				w->errors++;
				free(s->buf);
				s->busy = false;
				w->inflight--;
			}
			if (++submitted == w->fail_at)
				fault_fail_after(e->f[w->fail_member], 0, FAULT_OPS_ALL, -EIO);
		}
		ev_run_once(loop, 1000);
	}
	blk_chan_close(ch, closed_cb, &closed);
	for (int i = 0; i < 1000 && !closed; i++)
		ev_run_once(loop, 10);
	ev_loop_free(loop);
	return NULL;
}

static void two_threads(enum raid_level l, uint32_t n, int fail_member, uint64_t seed)
{
	struct env e;
	struct worker w[2];

	env_create(&e, l, n, seed);
	for (uint32_t t = 0; t < 2; t++) {
		memset(&w[t], 0, sizeof(w[t]));
		w[t].e = &e;
		w[t].t = t;
		w[t].rng = seed * 7919 + t + 1;
		w[t].nops = 3000;
		w[t].fail_member = fail_member;
		w[t].fail_at = t == 0 && fail_member >= 0 ? 1000 : 0;
		ck_assert_int_eq(pthread_create(&w[t].thread, NULL, worker_main, &w[t]), 0);
	}
	for (uint32_t t = 0; t < 2; t++) {
		pthread_join(w[t].thread, NULL);
		ck_assert_uint_eq(w[t].errors, 0);
		ck_assert_uint_eq(w[t].mismatches, 0);
	}
	ck_assert_int_eq(raid_degraded(e.raid), fail_member >= 0);
	verify_all(&e);
	env_detach(&e);
	if (fail_member < 0)
		verify_parity(&e, l);
	env_free(&e);
}

START_TEST(threads_raid5) { two_threads(RAID_LEVEL_5, 4, -1, 70); two_threads(RAID_LEVEL_5, 4, 1, 71); }
END_TEST
START_TEST(threads_raid6) { two_threads(RAID_LEVEL_6, 5, -1, 72); two_threads(RAID_LEVEL_6, 5, 3, 73); }
END_TEST
START_TEST(threads_raid1) { two_threads(RAID_LEVEL_1, 2, 0, 74); two_threads(RAID_LEVEL_10, 4, 3, 75); }
END_TEST


/* ---- members that push back (-EAGAIN), as the aio backend does when full ---- */

struct flaky {
	struct blkdev	bd;
	struct blkdev	*lower;
	unsigned	every, count;
	uint64_t	refused;
};

static void flaky_end(struct bio *lb, int status)
{
	bio_complete(lb->end_arg, status);
}

static int flaky_submit(struct blkdev *bd, struct blkchan *ch, struct bio *bio)
{
	struct flaky *f = container_of(bd, struct flaky, bd);

	if (bio->op != BIO_FLUSH && ++f->count % f->every == 0) {
		f->refused++;
		return -EAGAIN;
	}
	return blk_rw(ch->priv, bio->op, bio->flags, bio->iov, bio->iovcnt, bio->offset,
		      bio->len, flaky_end, bio);
}

static int flaky_chan_create(struct blkdev *bd, struct blkchan *ch)
{
	struct flaky *f = container_of(bd, struct flaky, bd);

	return blk_chan_open(f->lower, ch->loop, (struct blkchan **)&ch->priv);
}

static void flaky_chan_destroy(struct blkdev *bd, struct blkchan *ch)
{
	blk_chan_close(ch->priv, NULL, NULL);
}

static void flaky_close(struct blkdev *bd)
{
	free(container_of(bd, struct flaky, bd));
}

static const struct blkdev_ops flaky_ops = {
	.name = "flaky",
	.close = flaky_close,
	.chan_create = flaky_chan_create,
	.chan_destroy = flaky_chan_destroy,
	.submit = flaky_submit,
};

static void backpressure(enum raid_level l, uint32_t n, uint64_t seed)
{
	struct raid_opts o = { .strip = STRIP };
	struct env e;
	uint64_t refused = 0;

	env_members(&e, n, seed);
	for (uint32_t i = 0; i < n; i++) {
		struct flaky *f = calloc(1, sizeof(*f));

		ck_assert_int_eq(blkdev_close(e.f[i]), 0);
		blkdev_init(&f->bd, &flaky_ops, "flaky");
		f->bd.size = e.mem[i]->size;
		f->bd.block_size = e.mem[i]->block_size;
		f->lower = e.mem[i];
		f->every = 3 + i;
		e.f[i] = &f->bd;
	}
	ck_assert_int_eq(raid_create("r0", l, e.f, n, &o, &e.raid), 0);
	env_attach(&e);
	run_ops(&e, 2000, NULL);
	ck_assert_uint_eq(e.errors, 0);
	ck_assert_uint_eq(e.mismatches, 0);
	ck_assert_int_eq(raid_degraded(e.raid), 0);
	verify_all(&e);
	for (uint32_t i = 0; i < n; i++)
		refused += container_of(e.f[i], struct flaky, bd)->refused;
	ck_assert_uint_gt(refused, 100);
	env_free(&e);
}

START_TEST(member_backpressure)
{
	backpressure(RAID_LEVEL_5, 4, 80);
	backpressure(RAID_LEVEL_6, 5, 81);
	backpressure(RAID_LEVEL_1, 2, 82);
	backpressure(RAID_LEVEL_0, 3, 83);
}
END_TEST


/* ---- replace a failed member and rebuild it under verified I/O ---- */

struct replace_arg {
	struct blkdev	*set, *nd;
	uint32_t	slot;
	int		rc;
	bool		done;
};

static void *replace_main(void *arg)
{
	struct replace_arg *a = arg;

	a->rc = raid_replace(a->set, a->slot, a->nd);
	__atomic_store_n(&a->done, true, __ATOMIC_RELEASE);
	return NULL;
}

static void rebuild(enum raid_level l, uint32_t n, uint32_t slot, uint64_t seed)
{
	struct env e;
	struct blkdev *old_mem, *old_f, *sh[RAID_MAX_MEMBERS];
	struct replace_arg a = { 0 };
	pthread_t th;
	uint64_t gen;

	env_create(&e, l, n, seed);
	run_ops(&e, 500, NULL);
	ck_assert_int_eq(fault_fail_after(e.f[slot], 0, FAULT_OPS_ALL, -EIO), 0);
	run_ops(&e, 500, NULL);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	ck_assert_int_eq(raid_member_state(e.raid, slot), RAID_MEMBER_FAILED);
	ck_assert_int_eq(raid_replace(e.raid, (slot + 1) % n, e.f[slot]), -EBUSY);

	/* a fresh disk in the failed one's slot, rebuilt while I/O goes on */
	old_mem = e.mem[slot];
	old_f = e.f[slot];
	ck_assert_int_eq(blk_mem_create("new", MEMBER_SIZE, BS, &e.mem[slot]), 0);
	ck_assert_int_eq(blk_fault_create("fnew", e.mem[slot], &e.f[slot]), 0);
	ck_assert_int_eq(fault_set_latency(e.f[slot], 20000, FAULT_OPS_ALL), 0);
	gen = raid_generation(e.raid);
	a.set = e.raid;
	a.nd = e.f[slot];
	a.slot = slot;
	ck_assert_int_eq(pthread_create(&th, NULL, replace_main, &a), 0);
	while (!__atomic_load_n(&a.done, __ATOMIC_ACQUIRE))
		run_ops(&e, 200, NULL);
	pthread_join(th, NULL);
	ck_assert_int_eq(a.rc, 0);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	ck_assert_int_eq(raid_degraded(e.raid), 0);
	ck_assert_int_eq(raid_member_state(e.raid, slot), RAID_MEMBER_ACTIVE);
	ck_assert_uint_ge(raid_generation(e.raid), gen + 2);
	verify_all(&e);
	env_detach(&e);
	if (l == RAID_LEVEL_5 || l == RAID_LEVEL_6)
		verify_parity(&e, l);
	else
		verify_mirrors(&e, l);

	/* the old disk is free again; the set assembles whole without it */
	ck_assert_int_eq(blkdev_close(old_f), 0);
	ck_assert_int_eq(blkdev_close(old_mem), 0);
	shuffle(&e, sh);
	ck_assert_int_eq(raid_assemble(sh, n, &e.raid), 0);
	ck_assert_int_eq(raid_degraded(e.raid), 0);
	env_attach(&e);
	verify_all(&e);
	/* and the rebuilt member carries its share: lose another one */
	ck_assert_int_eq(fault_fail_after(e.f[(slot + 1) % n], 0, FAULT_OPS_ALL, -EIO), 0);
	verify_all(&e);
	ck_assert_int_eq(raid_degraded(e.raid), 1);
	env_free(&e);
}

START_TEST(rebuild_raid1) { rebuild(RAID_LEVEL_1, 2, 0, 90); rebuild(RAID_LEVEL_10, 4, 3, 91); }
END_TEST
START_TEST(rebuild_raid5) { rebuild(RAID_LEVEL_5, 4, 2, 92); }
END_TEST
START_TEST(rebuild_raid6) { rebuild(RAID_LEVEL_6, 5, 0, 93); }
END_TEST

START_TEST(rebuild_refusals)
{
	struct env e;
	struct blkdev *small;

	env_create(&e, RAID_LEVEL_0, 2, 94);
	ck_assert_int_eq(raid_replace(e.raid, 0, e.f[1]), -EINVAL);	/* RAID 0 */
	env_free(&e);
	env_create(&e, RAID_LEVEL_5, 3, 95);
	ck_assert_int_eq(raid_replace(e.raid, 0, e.f[1]), -EBUSY);	/* not failed */
	ck_assert_int_eq(blk_mem_create("small", 4096 * 4, BS, &small), 0);
	ck_assert_int_eq(raid_replace(e.raid, 0, small), -EINVAL);
	ck_assert_int_eq(blkdev_close(small), 0);
	env_free(&e);
}
END_TEST


/* ---- on real files: io_uring, libaio and psync members, both loops ---- */

static const struct {
	enum blk_file_backend	backend;
	uint32_t		bs;
	enum ev_backend		loop;
	enum raid_level		level;
	uint32_t		n;
} fcfgs[] = {
	{ BLK_FILE_URING, 512, EV_URING, RAID_LEVEL_5, 4 },
	{ BLK_FILE_URING, 4096, EV_URING, RAID_LEVEL_6, 5 },
	{ BLK_FILE_AIO, 512, EV_EPOLL, RAID_LEVEL_6, 4 },
	{ BLK_FILE_AIO, 4096, EV_URING, RAID_LEVEL_5, 3 },
	{ BLK_FILE_PSYNC, 512, EV_URING, RAID_LEVEL_10, 4 },
	{ BLK_FILE_PSYNC, 4096, EV_EPOLL, RAID_LEVEL_5, 4 },
	{ BLK_FILE_AIO, 4096, EV_EPOLL, RAID_LEVEL_1, 2 },
	{ BLK_FILE_URING, 512, EV_URING, RAID_LEVEL_0, 3 },
};

/* A directory on a real file system (O_DIRECT): not tmpfs. */
static bool file_dir(char *dir, size_t len)
{
	const char *bases[] = { getenv("SAND_TEST_TMPDIR"), "/var/tmp", "build", "." };
	struct statfs sfs;

	for (size_t i = 0; i < ARRAY_SIZE(bases); i++) {
		if (!bases[i] || statfs(bases[i], &sfs) || sfs.f_type == TMPFS_MAGIC)
			continue;
		snprintf(dir, len, "%s/sand-raid-XXXXXX", bases[i]);
		if (mkdtemp(dir))
			return true;
	}
	return false;
}

START_TEST(on_files)
{
	struct blk_file_opts fo = { .backend = fcfgs[_i].backend, .block_size = fcfgs[_i].bs,
				    .create_size = MEMBER_SIZE };
	struct raid_opts o = { .strip = STRIP };
	struct blkdev *sh[RAID_MAX_MEMBERS];
	uint32_t n = fcfgs[_i].n;
	char dir[256], path[RAID_MAX_MEMBERS][300];
	struct env e;

	ck_assert(file_dir(dir, sizeof(dir)));
	memset(&e, 0, sizeof(e));
	e.n = n;
	e.rng = 1000 + (uint64_t)_i;
	e.flush_permille = 2;		/* a flush is an fdatasync per member */
	for (uint32_t i = 0; i < n; i++) {
		char name[16];

		snprintf(path[i], sizeof(path[i]), "%s/m%u", dir, i);
		snprintf(name, sizeof(name), "file%u", i);
		ck_assert_int_eq(blk_file_open(name, path[i], &fo, &e.f[i]), 0);
		ck_assert_uint_eq(e.f[i]->block_size, fcfgs[_i].bs);
	}
	ck_assert_int_eq(ev_loop_new(fcfgs[_i].loop, 256, &e.loop), 0);
	ck_assert_int_eq(raid_create("rf", fcfgs[_i].level, e.f, n, &o, &e.raid), 0);
	ck_assert_uint_eq(e.raid->block_size, fcfgs[_i].bs);
	env_attach(&e);
	run_ops(&e, 1000, NULL);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	verify_all(&e);
	env_detach(&e);
	if (fcfgs[_i].level == RAID_LEVEL_5 || fcfgs[_i].level == RAID_LEVEL_6)
		verify_parity(&e, fcfgs[_i].level);
	else if (fcfgs[_i].level != RAID_LEVEL_0)
		verify_mirrors(&e, fcfgs[_i].level);
	shuffle(&e, sh);
	ck_assert_int_eq(raid_assemble(sh, n, &e.raid), 0);
	env_attach(&e);
	verify_all(&e);
	env_free(&e);
	for (uint32_t i = 0; i < n; i++)
		unlink(path[i]);
	rmdir(dir);
}
END_TEST


/* ---- power cut: what a flush acknowledged survives ---- */

static void flush_set(struct env *e)
{
	int st = 1;

	ck_assert_int_eq(blk_rw(e->ch, BIO_FLUSH, 0, NULL, 0, 0, 0, sync_end, &st), 0);
	for (int i = 0; i < 10000 && st == 1; i++)
		ev_run_once(e->loop, 100);
	ck_assert_int_eq(st, 0);
}

static void power_cut(enum raid_level l, uint32_t n, uint64_t seed)
{
	struct env e;
	struct blkdev *sh[RAID_MAX_MEMBERS];
	uint8_t *durable;
	uint64_t nblk, changed = 0;

	env_create(&e, l, n, seed);
	e.flush_permille = 5;
	for (uint32_t i = 0; i < n; i++)
		ck_assert_int_eq(fault_record(e.f[i], true), 0);
	run_ops(&e, 800, NULL);
	flush_set(&e);
	durable = malloc(e.size);
	memcpy(durable, e.model, e.size);
	/* more writes, never flushed */
	e.no_flush = true;
	e.dirty = calloc(1, e.size / 512);
	run_ops(&e, 400, NULL);
	/* the crash: power goes while the set is open (closing it then cannot
	 * mark it clean: every member is off) */
	{
		bool closed = false;

		blk_chan_close(e.ch, closed_cb, &closed);
		for (int i = 0; i < 1000 && !closed; i++)
			ev_run_once(e.loop, 10);
		ck_assert(closed);
	}
	for (uint32_t i = 0; i < n; i++) {
		struct fault_cut_policy pol = { .mode = FAULT_CUT_RANDOM, .seed = seed * 31 + i };

		ck_assert_int_eq(fault_power_cut(e.f[i], &pol), 0);
	}
	ck_assert_int_eq(blkdev_close(e.raid), 0);
	for (uint32_t i = 0; i < n; i++)
		ck_assert_int_eq(fault_power_restore(e.f[i]), 0);
	/* assembled dirty: resynchronized, so parity and mirrors agree again */
	shuffle(&e, sh);
	ck_assert_int_eq(raid_assemble(sh, n, &e.raid), 0);
	ck_assert_int_eq(raid_degraded(e.raid), 0);
	ck_assert_int_eq(blkdev_close(e.raid), 0);
	if (l == RAID_LEVEL_5 || l == RAID_LEVEL_6)
		verify_parity(&e, l);
	else if (l != RAID_LEVEL_0)
		verify_mirrors(&e, l);
	ck_assert_int_eq(raid_assemble(sh, n, &e.raid), 0);
	env_attach(&e);
	/* every block not written since the flush holds what the flush made
	 * durable (a block written since may hold any of its values) */
	nblk = e.size / 512;
	{
		uint8_t *buf = malloc(e.size);

		for (uint64_t off = 0; off < e.size; off += 64 * 1024)
			chan_read(&e, e.ch, off, buf + off, MIN(64 * 1024, e.size - off));
		for (uint64_t b = 0; b < nblk; b++) {
			const uint8_t *got = buf + b * 512;

			if (!e.dirty[b])
				ck_assert_msg(!memcmp(got, durable + b * 512, 512),
					      "RAID %d: block %llu lost what a flush made durable",
					      l, (unsigned long long)b);
			else
				changed += !!memcmp(got, durable + b * 512, 512);
		}
		free(buf);
	}
	ck_assert_uint_gt(changed, 0);
	for (uint32_t i = 0; i < n; i++) {
		struct fault_stats st;

		ck_assert_int_eq(fault_get_stats(e.f[i], &st), 0);
		ck_assert_uint_eq(st.cuts, 1);
	}
	free(durable);
	free(e.dirty);
	env_free(&e);
}

START_TEST(power_cut_all_levels)
{
	power_cut(RAID_LEVEL_0, 3, 100);
	power_cut(RAID_LEVEL_1, 2, 101);
	power_cut(RAID_LEVEL_10, 4, 102);
	power_cut(RAID_LEVEL_5, 4, 103);
	power_cut(RAID_LEVEL_6, 5, 104);
}
END_TEST


/* ---- scrub: finds and repairs what was corrupted behind the set's back ---- */

struct scrub_arg {
	struct blkdev	*set;
	uint64_t	bad;
	int		rc;
	bool		done;
};

static void *scrub_main(void *arg)
{
	struct scrub_arg *a = arg;

	a->rc = raid_scrub(a->set, false, &a->bad);
	__atomic_store_n(&a->done, true, __ATOMIC_RELEASE);
	return NULL;
}

static void corrupt_member(struct env *e, uint32_t m, uint64_t moff)
{
	uint8_t junk[512];

	memset(junk, 0xe7, sizeof(junk));
	ck_assert_int_eq(blk_sync_io(e->mem[m], BIO_WRITE, 0, RAID_DATA_OFFSET + moff, junk,
				     sizeof(junk)), 0);
}

static void scrub(enum raid_level l, uint32_t n, uint64_t seed)
{
	struct raid_geom g = { .level = l, .nmembers = n, .strip = STRIP, .member_size = MEMBER_DATA };
	struct blkdev *sh[RAID_MAX_MEMBERS];
	struct scrub_arg a = { 0 };
	uint32_t cols[RAID_MAX_MEMBERS], k = raid_data_cols(&g);
	uint64_t bad = 99;
	pthread_t th;
	struct env e;

	env_create(&e, l, n, seed);
	run_ops(&e, 600, NULL);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	ck_assert_int_eq(raid_scrub(e.raid, false, &bad), 0);
	ck_assert_uint_eq(bad, 0);
	env_detach(&e);

	/* behind the set's back: two rows made inconsistent */
	if (l == RAID_LEVEL_5 || l == RAID_LEVEL_6) {
		raid_stripe_cols(&g, 3, cols);
		corrupt_member(&e, cols[k], 3 * STRIP + 1024);			/* P */
		raid_stripe_cols(&g, 7, cols);
		corrupt_member(&e, cols[n - 1], 7 * STRIP);			/* P or Q */
	} else {
		corrupt_member(&e, 1, 3 * STRIP + 512);
		corrupt_member(&e, n - 1, 7 * STRIP);
	}
	shuffle(&e, sh);
	ck_assert_int_eq(raid_assemble(sh, n, &e.raid), 0);
	env_attach(&e);
	ck_assert_int_eq(raid_scrub(e.raid, false, &bad), 0);
	ck_assert_uint_eq(bad, 2);
	ck_assert_int_eq(raid_scrub(e.raid, true, &bad), 0);
	ck_assert_uint_eq(bad, 2);
	ck_assert_int_eq(raid_scrub(e.raid, false, &bad), 0);
	ck_assert_uint_eq(bad, 0);
	verify_all(&e);

	/* a scrub under verified I/O sees no false mismatch */
	a.set = e.raid;
	ck_assert_int_eq(pthread_create(&th, NULL, scrub_main, &a), 0);
	while (!__atomic_load_n(&a.done, __ATOMIC_ACQUIRE))
		run_ops(&e, 100, NULL);
	pthread_join(th, NULL);
	ck_assert_int_eq(a.rc, 0);
	ck_assert_uint_eq(a.bad, 0);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	verify_all(&e);
	env_free(&e);
}

START_TEST(scrub_all_levels)
{
	struct env e;

	scrub(RAID_LEVEL_1, 2, 110);
	scrub(RAID_LEVEL_10, 4, 111);
	scrub(RAID_LEVEL_5, 4, 112);
	scrub(RAID_LEVEL_6, 5, 113);
	env_create(&e, RAID_LEVEL_0, 2, 114);
	ck_assert_int_eq(raid_scrub(e.raid, false, NULL), -EINVAL);
	env_free(&e);
}
END_TEST

/* ---- assembly ---- */

START_TEST(reassemble_all_levels)
{
	static const struct { enum raid_level l; uint32_t n; } sets[] = {
		{ RAID_LEVEL_0, 3 }, { RAID_LEVEL_1, 2 }, { RAID_LEVEL_10, 4 },
		{ RAID_LEVEL_5, 4 }, { RAID_LEVEL_6, 5 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(sets); i++) {
		struct env e;
		struct blkdev *sh[RAID_MAX_MEMBERS];

		env_create(&e, sets[i].l, sets[i].n, 20 + i);
		run_ops(&e, 500, NULL);
		ck_assert_uint_eq(e.errors + e.mismatches, 0);
		env_detach(&e);
		shuffle(&e, sh);
		ck_assert_int_eq(raid_assemble(sh, e.n, &e.raid), 0);
		ck_assert_int_eq(raid_degraded(e.raid), 0);
		env_attach(&e);
		verify_all(&e);
		env_free(&e);
	}
}
END_TEST

START_TEST(raid0_missing_member)
{
	struct env e;
	struct blkdev *out = NULL;

	env_create(&e, RAID_LEVEL_0, 3, 30);
	env_detach(&e);
	ck_assert_int_eq(raid_assemble((struct blkdev *[]){ e.f[2], e.f[0] }, 2, &out), -ENODEV);
	ck_assert_ptr_null(out);
	env_free(&e);
}
END_TEST

START_TEST(redundant_missing_members)
{
	struct env e;
	struct blkdev *out = NULL;

	/* RAID 5 starts degraded without one member, not without two */
	env_create(&e, RAID_LEVEL_5, 4, 31);
	run_ops(&e, 300, NULL);
	env_detach(&e);
	ck_assert_int_eq(raid_assemble((struct blkdev *[]){ e.f[3], e.f[0] }, 2, &out), -ENODEV);
	ck_assert_int_eq(raid_assemble((struct blkdev *[]){ e.f[3], e.f[0], e.f[1] }, 3, &e.raid), 0);
	ck_assert_int_eq(raid_degraded(e.raid), 1);
	env_attach(&e);
	verify_all(&e);
	env_detach(&e);
	/* member 2 missed that assembly: it is stale now */
	ck_assert_int_eq(raid_assemble((struct blkdev *[]){ e.f[2], e.f[1], e.f[0], e.f[3] }, 4,
				       &e.raid), 0);
	ck_assert_int_eq(raid_member_state(e.raid, 2), RAID_MEMBER_NONE);
	env_attach(&e);
	verify_all(&e);
	env_free(&e);

	/* RAID 10 without both halves of a pair */
	env_create(&e, RAID_LEVEL_10, 4, 32);
	env_detach(&e);
	ck_assert_int_eq(raid_assemble((struct blkdev *[]){ e.f[0], e.f[1] }, 2, &out), -ENODEV);
	ck_assert_int_eq(raid_assemble((struct blkdev *[]){ e.f[0], e.f[3] }, 2, &e.raid), 0);
	env_attach(&e);
	verify_all(&e);
	env_free(&e);
}
END_TEST

START_TEST(refuse_other_pool)
{
	struct env a, b;
	struct blkdev *out = NULL;
	struct raid_opts o = { .strip = STRIP };

	env_create(&a, RAID_LEVEL_1, 2, 40);
	env_detach(&a);
	env_members(&b, 2, 41);
	ck_assert_int_eq(raid_create("r1", RAID_LEVEL_1, b.f, 2, &o, &b.raid), 0);
	ck_assert_int_eq(blkdev_close(b.raid), 0);
	b.raid = NULL;
	ck_assert_int_eq(raid_assemble((struct blkdev *[]){ a.f[0], b.f[1] }, 2, &out), -EINVAL);
	ck_assert_int_eq(raid_assemble((struct blkdev *[]){ a.f[0], a.f[0] }, 2, &out), -EINVAL);
	ck_assert_ptr_null(out);
	/* a blank disk is not a member */
	ck_assert_int_eq(blkdev_close(b.f[1]), 0);
	ck_assert_int_eq(blkdev_close(b.mem[1]), 0);
	ck_assert_int_eq(blk_mem_create("blank", MEMBER_SIZE, BS, &b.mem[1]), 0);
	ck_assert_int_eq(blk_fault_create("fblank", b.mem[1], &b.f[1]), 0);
	ck_assert_int_eq(raid_assemble((struct blkdev *[]){ a.f[0], b.f[1] }, 2, &out), -EINVAL);
	env_free(&a);
	env_free(&b);
}
END_TEST

START_TEST(create_refusals)
{
	struct env e;
	struct blkdev *out = NULL;
	struct raid_opts o = { .strip = 3000 };

	env_members(&e, 3, 50);
	ck_assert_int_eq(raid_create("x", RAID_LEVEL_6, e.f, 3, NULL, &out), -EINVAL);
	ck_assert_int_eq(raid_create("x", RAID_LEVEL_10, e.f, 3, NULL, &out), -EINVAL);
	ck_assert_int_eq(raid_create("x", RAID_LEVEL_0, e.f, 3, &o, &out), -EINVAL);
	ck_assert_int_eq(raid_create("r", RAID_LEVEL_5, e.f, 3, NULL, &e.raid), 0);
	ck_assert_uint_eq(e.raid->size, 2ull * MEMBER_DATA);
	ck_assert(blk_is_raid(e.raid));
	ck_assert(blkdev_supports(e.raid, BIO_WRITE_ZEROES));	/* through the stripe path */
	ck_assert(blkdev_supports(e.raid, BIO_DISCARD));	/* the same: reads zeros */
	ck_assert(!blk_is_raid(e.f[0]));
	/* members are claimed while the set is open */
	ck_assert_int_eq(raid_create("y", RAID_LEVEL_1, e.f, 2, NULL, &out), -EBUSY);
	ck_assert_int_eq(blkdev_close(e.raid), 0);
	e.raid = NULL;
	env_free(&e);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("raid_io");
	TCase *tc = tcase_create("io");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, io_raid0);
	tcase_add_test(tc, io_raid1);
	tcase_add_test(tc, io_raid10);
	tcase_add_test(tc, io_raid5);
	tcase_add_test(tc, io_raid6);
	tcase_add_test(tc, write_costs);
	tcase_add_test(tc, zeroes_raid5);
	tcase_add_test(tc, zeroes_raid6);
	tcase_add_test(tc, multi_raid5);
	tcase_add_test(tc, multi_raid6);
	tcase_add_test(tc, io_wide_raid5);
	tcase_add_test(tc, io_wide_raid6);
	tcase_add_test(tc, fail_raid1);
	tcase_add_test(tc, fail_raid10);
	tcase_add_test(tc, fail_raid5);
	tcase_add_test(tc, fail_raid6);
	tcase_add_test(tc, threads_raid5);
	tcase_add_test(tc, threads_raid6);
	tcase_add_test(tc, threads_raid1);
	tcase_add_test(tc, member_backpressure);
	tcase_add_test(tc, rebuild_raid1);
	tcase_add_test(tc, rebuild_raid5);
	tcase_add_test(tc, rebuild_raid6);
	tcase_add_test(tc, rebuild_refusals);
	tcase_add_test(tc, power_cut_all_levels);
	tcase_add_test(tc, scrub_all_levels);
	tcase_add_test(tc, reassemble_all_levels);
	tcase_add_test(tc, raid0_missing_member);
	tcase_add_test(tc, redundant_missing_members);
	tcase_add_test(tc, refuse_other_pool);
	tcase_add_test(tc, create_refusals);
	suite_add_tcase(s, tc);
	tc = tcase_create("files");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, on_files, 0, (int)ARRAY_SIZE(fcfgs));
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
