/* SPDX-License-Identifier: MIT */
/*
 * The RAID job tests' harness (test_raid_jobs.c, test_raid_resync.c): n
 * memory members, each under a fault device, and more disks for spares; a
 * model of the whole set; verified random I/O (never overlapping, QD in
 * flight on one loop); the job info, and I/O until no job runs.
 * ENV_BITMAP_REGION (0: the default) and env_no_bitmap set the write-intent
 * bitmap of the sets env_create makes.
 */
#ifndef SAND_TESTS_RAID_ENV_H
#define SAND_TESTS_RAID_ENV_H

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/fault.h"
#include "sand/raid.h"

#define BS		512u
#define STRIP		8192u
#define QD		16
#define MAXLEN		(32u * 1024)
#define NDEV		8

#ifndef ENV_BITMAP_REGION
#define ENV_BITMAP_REGION	0
#endif

static bool env_no_bitmap;

struct env;

struct slot {
	struct env	*e;
	bool		busy, write;
	uint64_t	off, len;
	uint8_t		*buf;
};

struct env {
	uint32_t	n, ndev;
	uint64_t	member_data;
	struct blkdev	*mem[NDEV], *f[NDEV];	/* [0, n): members as created; then spares */
	struct blkdev	*raid;
	struct ev_loop	*loop;
	struct blkchan	*ch;
	uint8_t		*model;
	uint64_t	size, rng;
	struct slot	slots[QD];
	unsigned	inflight;
	uint64_t	done, errors, mismatches;
};

static inline uint64_t rnd(struct env *e)
{
	e->rng ^= e->rng << 13;
	e->rng ^= e->rng >> 7;
	e->rng ^= e->rng << 17;
	return e->rng;
}

static inline void closed_cb(void *arg)
{
	*(bool *)arg = true;
}

static inline void env_attach(struct env *e)
{
	ck_assert_int_eq(blk_chan_open(e->raid, e->loop, &e->ch), 0);
	e->size = e->raid->size;
	if (!e->model)
		e->model = calloc(1, e->size);
}

/* n members and ndev - n more disks, member_data bytes of data each. */
static inline void env_create(struct env *e, enum raid_level l, uint32_t n, uint32_t ndev,
		       uint64_t member_data, uint64_t seed)
{
	struct raid_opts o = { .strip = STRIP, .bitmap_region = ENV_BITMAP_REGION,
				.no_bitmap = env_no_bitmap };
	char name[32];

	memset(e, 0, sizeof(*e));
	e->n = n;
	e->ndev = ndev;
	e->member_data = member_data;
	e->rng = seed * 2654435761u + 1;
	for (uint32_t i = 0; i < ndev; i++) {
		snprintf(name, sizeof(name), "m%u", i);
		ck_assert_int_eq(blk_mem_create(name, RAID_DATA_OFFSET + member_data, BS,
						&e->mem[i]), 0);
		snprintf(name, sizeof(name), "f%u", i);
		ck_assert_int_eq(blk_fault_create(name, e->mem[i], &e->f[i]), 0);
	}
	ck_assert_int_eq(ev_loop_new(EV_AUTO, 256, &e->loop), 0);
	ck_assert_int_eq(raid_create("r0", l, e->f, n, &o, &e->raid), 0);
	env_attach(e);
}

static inline void env_detach(struct env *e)
{
	bool closed = false;

	blk_chan_close(e->ch, closed_cb, &closed);
	for (int i = 0; i < 1000 && !closed; i++)
		ev_run_once(e->loop, 10);
	ck_assert(closed);
	raid_jobs_stop(e->raid);
	ck_assert_int_eq(blkdev_close(e->raid), 0);
	e->raid = NULL;
}

static inline void env_free(struct env *e)
{
	if (e->raid)
		env_detach(e);
	for (uint32_t i = 0; i < e->ndev; i++) {
		ck_assert_int_eq(blkdev_close(e->f[i]), 0);
		ck_assert_int_eq(blkdev_close(e->mem[i]), 0);
	}
	ev_loop_free(e->loop);
	free(e->model);
}

static inline void io_end(struct bio *bio, int status)
{
	struct slot *s = bio->end_arg;
	struct env *e = s->e;

	if (status) {
		e->errors++;
		fprintf(stderr, "%s %llu+%llu: %d\n", s->write ? "write" : "read",
			(unsigned long long)s->off, (unsigned long long)s->len, status);
	} else if (!s->write && memcmp(s->buf, e->model + s->off, s->len)) {
		e->mismatches++;
		fprintf(stderr, "read %llu+%llu: data differs\n", (unsigned long long)s->off,
			(unsigned long long)s->len);
	}
	free(s->buf);
	s->buf = NULL;
	s->busy = false;
	e->inflight--;
	e->done++;
}

static inline bool overlaps(struct env *e, uint64_t off, uint64_t len)
{
	for (int i = 0; i < QD; i++) {
		struct slot *s = &e->slots[i];

		if (s->busy && off < s->off + s->len && s->off < off + len)
			return true;
	}
	return false;
}

static inline void submit(struct env *e, struct slot *s, bool write, uint64_t off, uint64_t len)
{
	struct iovec iov;

	memset(s, 0, sizeof(*s));
	s->e = e;
	s->off = off;
	s->len = len;
	s->write = write;
	s->buf = malloc(len);
	if (write) {
		for (uint64_t i = 0; i < len; i += 8) {
			uint64_t v = rnd(e);

			memcpy(s->buf + i, &v, 8);
		}
		memcpy(e->model + off, s->buf, len);
	}
	iov = (struct iovec){ s->buf, len };
	s->busy = true;
	e->inflight++;
	ck_assert_int_eq(blk_rw(e->ch, write ? BIO_WRITE : BIO_READ, 0, &iov, 1, off, len,
				io_end, s), 0);
}

/* nops random reads and writes, QD in flight, verified. */
static inline void run_ops(struct env *e, uint64_t nops)
{
	uint64_t submitted = 0;

	while (submitted < nops || e->inflight) {
		for (int i = 0; i < QD && submitted < nops; i++) {
			uint64_t off, len;
			int tries;

			if (e->slots[i].busy)
				continue;
			for (tries = 0; tries < 20; tries++) {
				len = (1 + rnd(e) % (MAXLEN / BS)) * BS;
				off = rnd(e) % ((e->size - len) / BS + 1) * BS;
				if (!overlaps(e, off, len))
					break;
			}
			if (tries == 20)
				break;
			submit(e, &e->slots[i], rnd(e) % 2, off, len);
			submitted++;
		}
		ck_assert_int_ge(ev_run_once(e->loop, 1000), 0);
	}
}

/* Write the whole set once (so that every verified read means something). */
static inline void fill(struct env *e)
{
	for (uint64_t off = 0; off < e->size;) {
		for (int i = 0; i < QD && off < e->size; i++) {
			if (e->slots[i].busy)
				continue;
			submit(e, &e->slots[i], true, off, MIN(64 * 1024, e->size - off));
			off += MIN(64 * 1024, e->size - off);
		}
		ck_assert_int_ge(ev_run_once(e->loop, 1000), 0);
	}
	while (e->inflight)
		ck_assert_int_ge(ev_run_once(e->loop, 1000), 0);
	ck_assert_uint_eq(e->errors, 0);
}

static inline void sync_end(struct bio *bio, int status)
{
	*(int *)bio->end_arg = status;
}

static inline void verify_all(struct env *e)
{
	uint8_t *buf = malloc(64 * 1024);

	for (uint64_t off = 0; off < e->size; off += 64 * 1024) {
		uint64_t len = MIN(64 * 1024, e->size - off);
		struct iovec iov = { buf, len };
		int st = 1;

		ck_assert_int_eq(blk_rw(e->ch, BIO_READ, 0, &iov, 1, off, len, sync_end, &st), 0);
		for (int i = 0; i < 100000 && st == 1; i++)
			ev_run_once(e->loop, 100);
		ck_assert_int_eq(st, 0);
		ck_assert_msg(!memcmp(buf, e->model + off, len), "data differs in %llu+%llu",
			      (unsigned long long)off, (unsigned long long)len);
	}
	free(buf);
}

static inline struct raid_job_info job(struct env *e)
{
	struct raid_job_info ji;

	ck_assert_int_eq(raid_job_get(e->raid, &ji), 0);
	return ji;
}

/* Verified I/O until no job runs and none is due (bounded: 60 s). */
static inline void io_until_idle(struct env *e)
{
	uint64_t end = now_ns() + 60ull * 1000 * 1000 * 1000;
	struct raid_job_info ji;

	do {
		run_ops(e, 100);
		ji = job(e);
		ck_assert_msg(now_ns() < end, "the job does not end");
	} while (ji.kind != RAID_JOB_NONE || raid_degraded(e->raid) > 0);
	ck_assert_int_eq(raid_job_wait(e->raid), 0);
}

static inline uint32_t slot_of(struct env *e, struct blkdev *bd)
{
	for (uint32_t i = 0; i < e->n; i++)
		if (raid_member_dev(e->raid, i) == bd)
			return i;
	ck_abort_msg("%s is not a member", bd->name);
	return 0;
}

#endif
