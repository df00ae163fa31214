/* SPDX-License-Identifier: MIT */
/*
 * Thin pools and volumes as block devices, against byte models: unmapped
 * reads are zeros; writes of every size; snapshots and clones keep their
 * own contents while both sides change; discard unmaps; deleting volumes in
 * any order gives the chunks back; a full pool fails only the writes that
 * need a new chunk; flushed data survives a power cut and a reopen.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "sand/thin.h"
#include "test_thin_util.h"

#define CHUNK		(64u * 1024)
#define VOLSZ		(4u << 20)	/* 64 chunks */

static struct thin_open_opts oo = { .cache_blocks = 64, .commit_ms = 600000 };

struct vmodel {
	struct blkdev	*bd;
	uint8_t		*m;
};

static void pool_up(struct tenv *e, uint64_t size, bool fault, struct thin_pool **p)
{
	struct thin_format_opts fo = { .chunk_size = CHUNK };

	tenv_open(e, size, 512, fault);
	ck_assert_int_eq(thin_pool_format(tenv_dev(e), &fo), 0);
	ck_assert_int_eq(thin_pool_open(tenv_dev(e), &oo, p), 0);
}

/* Synchronous I/O on one epoll loop and one channel per device, kept open
 * until vclose(): blk_sync_io's loop per call costs too much here. */
static struct ev_loop *tloop;
static struct { struct blkdev *bd; struct blkchan *ch; } tch[8];

struct vres {
	bool	done;
	int	status;
};

static void vio_end(struct bio *bio, int status)
{
	struct vres *r = bio->end_arg;

	r->done = true;
	r->status = status;
}

static struct blkchan *vchan(struct blkdev *bd)
{
	unsigned i, free_slot = ARRAY_SIZE(tch);

	if (!tloop)
		ck_assert_int_eq(ev_loop_new(EV_EPOLL, 64, &tloop), 0);
	for (i = 0; i < ARRAY_SIZE(tch); i++) {
		if (tch[i].bd == bd)
			return tch[i].ch;
		if (!tch[i].bd && free_slot == ARRAY_SIZE(tch))
			free_slot = i;
	}
	ck_assert_uint_lt(free_slot, ARRAY_SIZE(tch));
	ck_assert_int_eq(blk_chan_open(bd, tloop, &tch[free_slot].ch), 0);
	tch[free_slot].bd = bd;
	return tch[free_slot].ch;
}

static int vio(struct blkdev *bd, enum bio_op op, uint32_t flags, uint64_t off, void *buf,
	       uint64_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct blkchan *ch = vchan(bd);
	struct vres r = { 0 };
	int rc;

	while ((rc = blk_rw(ch, op, flags, &iov, buf ? 1 : 0, off, len, vio_end, &r)) == -EAGAIN ||
	       rc == -ENOMEM)
		ev_run_once(tloop, 10);
	if (rc)
		return rc;
	while (!r.done)
		ck_assert_int_ge(ev_run_once(tloop, -1), 0);
	return r.status;
}

/* Close the device (and its channel, if vio opened one). */
static int vclose(struct blkdev *bd)
{
	for (unsigned i = 0; i < ARRAY_SIZE(tch); i++)
		if (tch[i].bd == bd) {
			blk_chan_close(tch[i].ch, NULL, NULL);
			tch[i].bd = NULL;
		}
	return blkdev_close(bd);
}

/* The space maps agree with the trees. */
static void pcheck(struct thin_pool *p)
{
	struct thin_check_report r;

	ck_assert_int_eq(thin_pool_check(p, &r), 0);
	ck_assert_uint_eq(r.errors, 0);
}

static void vm_open(struct thin_pool *p, const char *name, struct vmodel *v)
{
	ck_assert_int_eq(thin_vol_open(p, name, &v->bd), 0);
	if (!v->m)
		v->m = calloc(1, VOLSZ);
}

static void vm_write(struct vmodel *v, uint64_t *seed, int n)
{
	static uint8_t buf[3 * CHUNK];

	for (int i = 0; i < n; i++) {
		uint64_t r = rnd(seed);
		uint64_t len = (r % 4 == 0 ? CHUNK : 512 * (1 + r % (2 * CHUNK / 512)));
		uint64_t off = (rnd(seed) % ((VOLSZ - len) / 512)) * 512;

		if (r % 4 == 0)
			off = off / CHUNK * CHUNK;
		for (uint64_t j = 0; j < len; j += 8)
			put_le64(buf + j, r + j);
		ck_assert_int_eq(vio(v->bd, BIO_WRITE, 0, off, buf, len), 0);
		memcpy(v->m + off, buf, len);
	}
}

static void vm_check(struct vmodel *v)
{
	static uint8_t buf[VOLSZ];

	ck_assert_int_eq(vio(v->bd, BIO_READ, 0, 0, buf, VOLSZ), 0);
	for (uint64_t off = 0; off < VOLSZ; off += 512)
		if (memcmp(buf + off, v->m + off, 512))
			ck_abort_msg("%s: differs at %llu", v->bd->name, (unsigned long long)off);
}

static void vm_close(struct vmodel *v, bool free_model)
{
	ck_assert_int_eq(vclose(v->bd), 0);
	v->bd = NULL;
	if (free_model) {
		free(v->m);
		v->m = NULL;
	}
}

START_TEST(t_basic)
{
	struct tenv e;
	struct thin_pool *p;
	struct vmodel a = { 0 };
	struct thin_pool_info pi;
	struct thin_vol_info vi;
	uint64_t seed = 1;
	uint8_t buf[4096];

	pool_up(&e, 32u << 20, false, &p);
	{
		struct thin_pool *p2;

		/* one pool per device, and no format under it */
		ck_assert_int_eq(thin_pool_open(e.mem, &oo, &p2), -EBUSY);
		ck_assert_int_eq(thin_pool_format(e.mem, NULL), -EBUSY);
	}
	ck_assert_int_eq(thin_pool_info(p, &pi), 0);
	ck_assert_uint_eq(pi.chunk_size, CHUNK);
	ck_assert_uint_gt(pi.data_chunks, 400);
	ck_assert_uint_eq(pi.free_chunks, pi.data_chunks);
	ck_assert_int_eq(thin_vol_create(p, "a", VOLSZ), 0);
	ck_assert_int_eq(thin_vol_create(p, "a", VOLSZ), -EEXIST);
	ck_assert_int_eq(thin_vol_create(p, "", VOLSZ), -EINVAL);
	ck_assert_int_eq(thin_vol_create(p, "b", 1000), -EINVAL);
	ck_assert_int_eq(thin_vol_open(p, "nope", &a.bd), -ENOENT);
	vm_open(p, "a", &a);
	ck_assert_int_eq(thin_vol_open(p, "a", &a.bd), -EBUSY);
	ck_assert_uint_eq(a.bd->size, VOLSZ);
	/* unmapped: zeros, nothing allocated */
	memset(buf, 0xaa, sizeof(buf));
	ck_assert_int_eq(vio(a.bd, BIO_READ, 0, 1234 * 512, buf, sizeof(buf)), 0);
	for (unsigned i = 0; i < sizeof(buf); i++)
		if (buf[i])
			ck_abort_msg("byte %u not zero", i);
	vm_write(&a, &seed, 200);
	vm_check(&a);
	pcheck(p);
	ck_assert_int_eq(vio(a.bd, BIO_FLUSH, 0, 0, NULL, 0), 0);
	ck_assert_int_eq(thin_vol_info(p, "a", &vi), 0);
	ck_assert_uint_le(vi.mapped_chunks, VOLSZ / CHUNK);
	ck_assert_uint_gt(vi.mapped_chunks, 40);
	ck_assert_int_eq(thin_pool_info(p, &pi), 0);
	ck_assert_uint_eq(pi.data_chunks - pi.free_chunks, vi.mapped_chunks);
	/* the pool stays open while a volume is */
	ck_assert_int_eq(thin_pool_close(p), -EBUSY);
	ck_assert_int_eq(thin_vol_delete(p, "a"), -EBUSY);
	vm_close(&a, false);
	ck_assert_int_eq(thin_pool_close(p), 0);
	/* reopen: all there */
	ck_assert_int_eq(thin_pool_open(tenv_dev(&e), &oo, &p), 0);
	vm_open(p, "a", &a);
	vm_check(&a);
	vm_write(&a, &seed, 50);
	vm_check(&a);
	pcheck(p);
	vm_close(&a, true);
	ck_assert_int_eq(thin_vol_delete(p, "a"), 0);
	ck_assert_int_eq(thin_vol_delete(p, "a"), -ENOENT);
	ck_assert_int_eq(thin_pool_commit(p), 0);
	ck_assert_int_eq(thin_pool_info(p, &pi), 0);
	ck_assert_uint_eq(pi.free_chunks, pi.data_chunks);
	ck_assert_uint_eq(pi.volumes, 0);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
	if (tloop) {
		ev_loop_free(tloop);
		tloop = NULL;
	}
}
END_TEST

/* Snapshots and clones against models, deleted in every order. */
START_TEST(t_snapshots)
{
	struct tenv e;
	struct thin_pool *p;
	struct vmodel v[4] = { 0 };
	const char *names[4] = { "origin", "snap1", "clone1", "snap2" };
	struct thin_pool_info pi;
	uint64_t seed = 100 + (uint64_t)_i;
	uint8_t x[512] = { 1 };

	pool_up(&e, 48u << 20, false, &p);
	ck_assert_int_eq(thin_vol_create(p, "origin", VOLSZ), 0);
	vm_open(p, "origin", &v[0]);
	vm_write(&v[0], &seed, 150);
	/* snapshot: read-only, same contents */
	ck_assert_int_eq(thin_snap_create(p, "origin", "snap1"), 0);
	ck_assert_int_eq(thin_snap_create(p, "nope", "snapx"), -ENOENT);
	vm_open(p, "snap1", &v[1]);
	memcpy(v[1].m, v[0].m, VOLSZ);
	ck_assert(v[1].bd->readonly);
	ck_assert_int_eq(vio(v[1].bd, BIO_WRITE, 0, 0, x, 512), -EROFS);
	vm_write(&v[0], &seed, 150);
	vm_check(&v[0]);
	vm_check(&v[1]);
	/* a clone of the snapshot, written */
	ck_assert_int_eq(thin_clone_create(p, "snap1", "clone1"), 0);
	vm_open(p, "clone1", &v[2]);
	memcpy(v[2].m, v[1].m, VOLSZ);
	vm_write(&v[2], &seed, 150);
	/* a snapshot of the origin again */
	ck_assert_int_eq(thin_snap_create(p, "origin", "snap2"), 0);
	vm_open(p, "snap2", &v[3]);
	memcpy(v[3].m, v[0].m, VOLSZ);
	vm_write(&v[0], &seed, 100);
	vm_write(&v[2], &seed, 50);
	for (int i = 0; i < 4; i++)
		vm_check(&v[i]);
	pcheck(p);
	/* reopen the pool, all four still right */
	for (int i = 0; i < 4; i++)
		vm_close(&v[i], false);
	ck_assert_int_eq(thin_pool_close(p), 0);
	ck_assert_int_eq(thin_pool_open(tenv_dev(&e), &oo, &p), 0);
	for (int i = 0; i < 4; i++) {
		vm_open(p, names[i], &v[i]);
		vm_check(&v[i]);
	}
	/* delete in an order given by _i; the others stay intact */
	for (int k = 0; k < 4; k++) {
		int i = (k + _i) % 4;

		vm_close(&v[i], true);
		ck_assert_int_eq(thin_vol_delete(p, names[i]), 0);
		for (int j = 0; j < 4; j++)
			if (v[j].bd)
				vm_check(&v[j]);
		pcheck(p);
	}
	ck_assert_int_eq(thin_pool_commit(p), 0);
	ck_assert_int_eq(thin_pool_info(p, &pi), 0);
	ck_assert_uint_eq(pi.free_chunks, pi.data_chunks);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
	if (tloop) {
		ev_loop_free(tloop);
		tloop = NULL;
	}
}
END_TEST

/* Discard and write-zeroes: whole chunks are unmapped, partial ones zeroed. */
START_TEST(t_discard)
{
	struct tenv e;
	struct thin_pool *p;
	struct vmodel a = { 0 }, s = { 0 };
	struct thin_vol_info vi, vi2;
	uint64_t seed = 5;
	static uint8_t full[VOLSZ];

	pool_up(&e, 32u << 20, false, &p);
	ck_assert_int_eq(thin_vol_create(p, "a", VOLSZ), 0);
	vm_open(p, "a", &a);
	memset(full, 0x5a, sizeof(full));
	ck_assert_int_eq(vio(a.bd, BIO_WRITE, 0, 0, full, VOLSZ), 0);
	memset(a.m, 0x5a, VOLSZ);
	ck_assert_int_eq(thin_snap_create(p, "a", "s"), 0);
	vm_open(p, "s", &s);
	memcpy(s.m, a.m, VOLSZ);
	ck_assert_int_eq(thin_vol_info(p, "a", &vi), 0);
	ck_assert_uint_eq(vi.mapped_chunks, VOLSZ / CHUNK);
	/* chunks 2..4 whole, plus half of 1 and a sector of 5 */
	ck_assert_int_eq(vio(a.bd, BIO_DISCARD, 0, CHUNK + CHUNK / 2, NULL,
			     3 * CHUNK + CHUNK / 2 + 512), 0);
	memset(a.m + CHUNK + CHUNK / 2, 0, 3 * CHUNK + CHUNK / 2 + 512);
	ck_assert_int_eq(vio(a.bd, BIO_WRITE_ZEROES, 0, 10 * CHUNK, NULL, 2 * CHUNK), 0);
	memset(a.m + 10 * CHUNK, 0, 2 * CHUNK);
	ck_assert_int_eq(vio(a.bd, BIO_WRITE_ZEROES, BIO_NOUNMAP, 20 * CHUNK, NULL, CHUNK), 0);
	memset(a.m + 20 * CHUNK, 0, CHUNK);
	vm_check(&a);
	vm_check(&s);
	ck_assert_int_eq(thin_vol_info(p, "a", &vi2), 0);
	ck_assert_uint_eq(vi2.mapped_chunks, vi.mapped_chunks - 5);
	vm_write(&a, &seed, 40);
	vm_check(&a);
	vm_check(&s);
	pcheck(p);
	vm_close(&a, true);
	vm_close(&s, true);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
	if (tloop) {
		ev_loop_free(tloop);
		tloop = NULL;
	}
}
END_TEST

static void on_low(void *arg, uint64_t free_chunks)
{
	uint64_t *calls = arg;

	calls[0]++;
	calls[1] = free_chunks;
}

/* A full pool: writes needing a chunk get -ENOSPC, nothing else fails; the
 * low-space hook runs once on the way down and again after space came back
 * and went. */
START_TEST(t_full)
{
	static uint64_t calls[2];
	struct thin_open_opts lo = { .cache_blocks = 64, .commit_ms = 600000, .low_water = 8,
				     .low_space = on_low, .low_space_arg = calls };
	struct tenv e;
	struct thin_pool *p;
	struct vmodel a = { 0 };
	struct thin_pool_info pi;
	static uint8_t buf[CHUNK];
	uint64_t n = 0;
	int rc;

	pool_up(&e, 3u << 20, false, &p);	/* fewer chunks than the volume has */
	ck_assert_int_eq(thin_pool_close(p), 0);
	ck_assert_int_eq(thin_pool_open(tenv_dev(&e), &lo, &p), 0);
	ck_assert_int_eq(thin_pool_info(p, &pi), 0);
	ck_assert_uint_lt(pi.data_chunks, VOLSZ / CHUNK);
	ck_assert_int_eq(thin_vol_create(p, "a", VOLSZ), 0);
	vm_open(p, "a", &a);
	for (uint64_t c = 0; c < VOLSZ / CHUNK; c++) {
		memset(buf, (int)c + 1, sizeof(buf));
		rc = vio(a.bd, BIO_WRITE, 0, c * CHUNK, buf, CHUNK);
		if (rc == -ENOSPC)
			break;
		ck_assert_int_eq(rc, 0);
		memcpy(a.m + c * CHUNK, buf, CHUNK);
		n++;
	}
	ck_assert_uint_eq(n, pi.data_chunks);
	ck_assert_uint_eq(calls[0], 1);
	ck_assert_uint_eq(calls[1], 7);
	ck_assert_int_eq(thin_pool_info(p, &pi), 0);
	ck_assert_uint_eq(pi.virtual_bytes, VOLSZ);
	ck_assert_uint_gt(pi.virtual_bytes, pi.data_chunks * CHUNK);	/* overcommitted */
	/* a partial write to an unmapped chunk fails too */
	ck_assert_int_eq(vio(a.bd, BIO_WRITE, 0, (n + 1) * CHUNK + 512, buf, 512), -ENOSPC);
	/* reads work, writes to owned chunks work, flush works */
	vm_check(&a);
	memset(buf, 0xee, 4096);
	ck_assert_int_eq(vio(a.bd, BIO_WRITE, 0, 4096, buf, 4096), 0);
	memcpy(a.m + 4096, buf, 4096);
	ck_assert_int_eq(vio(a.bd, BIO_FLUSH, 0, 0, NULL, 0), 0);
	vm_check(&a);
	/* freeing a chunk makes room once committed */
	ck_assert_int_eq(vio(a.bd, BIO_DISCARD, 0, 0, NULL, CHUNK), 0);
	memset(a.m, 0, CHUNK);
	ck_assert_int_eq(vio(a.bd, BIO_FLUSH, 0, 0, NULL, 0), 0);
	memset(buf, 0x77, sizeof(buf));
	ck_assert_int_eq(vio(a.bd, BIO_WRITE, 0, n * CHUNK, buf, CHUNK), 0);
	memcpy(a.m + n * CHUNK, buf, CHUNK);
	vm_check(&a);
	pcheck(p);
	ck_assert_uint_eq(calls[0], 1);
	/* room again (after the commit), then below the mark again */
	ck_assert_int_eq(vio(a.bd, BIO_DISCARD, BIO_FUA, 2 * CHUNK, NULL, 20 * CHUNK), 0);
	memset(a.m + 2 * CHUNK, 0, 20 * CHUNK);
	memset(buf, 0x66, sizeof(buf));
	for (uint64_t c = 2; c < 22; c++) {
		ck_assert_int_eq(vio(a.bd, BIO_WRITE, 0, c * CHUNK, buf, CHUNK), 0);
		memcpy(a.m + c * CHUNK, buf, CHUNK);
	}
	ck_assert_uint_eq(calls[0], 2);
	vm_check(&a);
	vm_close(&a, true);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
	if (tloop) {
		ev_loop_free(tloop);
		tloop = NULL;
	}
}
END_TEST

/* Power cut after a flush: the flushed contents come back. _i = 0: drop
 * every unflushed write; else random keep/drop/tear, and only the ranges
 * not written since the flush are checked. */
START_TEST(t_power_cut)
{
	struct tenv e;
	struct thin_pool *p;
	struct vmodel a = { 0 }, s = { 0 };
	uint64_t seed = 900 + (uint64_t)_i;
	struct fault_cut_policy pol = { .mode = _i ? FAULT_CUT_RANDOM : FAULT_CUT_DROP_ALL,
					.seed = (uint64_t)_i };
	uint8_t *flushed = calloc(1, VOLSZ), *touched = calloc(1, VOLSZ / 512);
	int rc;
	static uint8_t buf[VOLSZ];
	struct thin_vol_info vi;

	pool_up(&e, 32u << 20, true, &p);
	ck_assert_int_eq(fault_record(e.fd, true), 0);
	ck_assert_int_eq(thin_vol_create(p, "a", VOLSZ), 0);
	vm_open(p, "a", &a);
	vm_write(&a, &seed, 100);
	ck_assert_int_eq(thin_snap_create(p, "a", "s"), 0);
	vm_write(&a, &seed, 60);
	ck_assert_int_eq(vio(a.bd, BIO_FLUSH, 0, 0, NULL, 0), 0);
	/* overwrite what is now the volume's own, in place: only data is
	 * written, and the flush must still make it durable */
	memset(buf, 0x3c, VOLSZ);
	ck_assert_int_eq(vio(a.bd, BIO_WRITE, 0, 0, buf, VOLSZ), 0);
	ck_assert_int_eq(vio(a.bd, BIO_FLUSH, 0, 0, NULL, 0), 0);
	memset(a.m, 0x3c, VOLSZ);
	memset(buf, 0x4d, 8192);
	ck_assert_int_eq(vio(a.bd, BIO_WRITE, 0, 3 * CHUNK, buf, 8192), 0);
	ck_assert_int_eq(vio(a.bd, BIO_FLUSH, 0, 0, NULL, 0), 0);
	memset(a.m + 3 * CHUNK, 0x4d, 8192);
	memset(buf, 0x5e, 4096);
	ck_assert_int_eq(vio(a.bd, BIO_WRITE, BIO_FUA, 7 * CHUNK, buf, 4096), 0);
	memset(a.m + 7 * CHUNK, 0x5e, 4096);
	/* unmapped again, so that later writes there change the metadata */
	ck_assert_int_eq(vio(a.bd, BIO_DISCARD, BIO_FUA, 40 * CHUNK, NULL, 8 * CHUNK), 0);
	memset(a.m + 40 * CHUNK, 0, 8 * CHUNK);
	memcpy(flushed, a.m, VOLSZ);
	/* unflushed writes, tracked by sector */
	for (int i = 0; i < 60; i++) {
		uint64_t r = rnd(&seed);
		uint64_t len = 512 * (1 + r % 256), off = (rnd(&seed) % ((VOLSZ - len) / 512)) * 512;

		memset(buf, (int)(r >> 56) | 1, len);
		ck_assert_int_eq(vio(a.bd, BIO_WRITE, 0, off, buf, len), 0);
		memset(touched + off / 512, 1, len / 512);
	}
	ck_assert_int_gt(fault_unflushed_count(e.fd), 0);
	ck_assert_int_eq(thin_vol_info(p, "a", &vi), 0);
	ck_assert_uint_gt(vi.mapped_chunks, VOLSZ / CHUNK - 8);	/* some remapped */
	ck_assert_int_eq(fault_power_cut(e.fd, &pol), 0);
	vm_close(&a, false);
	rc = thin_pool_close(p);	/* its last commit fails, if it had one to do */
	ck_assert(rc == 0 || rc == -EIO);
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	ck_assert_int_eq(thin_pool_open(tenv_dev(&e), &oo, &p), 0);
	ck_assert_int_eq(thin_vol_open(p, "a", &a.bd), 0);
	ck_assert_int_eq(vio(a.bd, BIO_READ, 0, 0, buf, VOLSZ), 0);
	for (uint64_t sct = 0; sct < VOLSZ / 512; sct++)
		if ((!_i || !touched[sct]) && memcmp(buf + sct * 512, flushed + sct * 512, 512))
			ck_abort_msg("sector %llu", (unsigned long long)sct);
	/* the snapshot is intact whatever happened */
	pcheck(p);
	vm_open(p, "s", &s);
	ck_assert_int_eq(vio(s.bd, BIO_READ, 0, 0, buf, VOLSZ), 0);
	vm_close(&s, true);
	/* and the pool works on */
	vm_write(&a, &seed, 20);
	ck_assert_int_eq(vclose(a.bd), 0);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
	if (tloop) {
		ev_loop_free(tloop);
		tloop = NULL;
	}
	free(a.m);
	free(flushed);
	free(touched);
}
END_TEST

/* In-place writes change no metadata; FLUSH (_i = 0) or FUA (_i = 1) must
 * still make them durable. */
START_TEST(t_flush_inplace)
{
	struct tenv e;
	struct thin_pool *p;
	struct blkdev *bd;
	static uint8_t buf[VOLSZ];
	int rc;

	pool_up(&e, 16u << 20, true, &p);
	ck_assert_int_eq(thin_vol_create(p, "a", VOLSZ), 0);
	ck_assert_int_eq(thin_vol_open(p, "a", &bd), 0);
	memset(buf, 1, VOLSZ);
	ck_assert_int_eq(vio(bd, BIO_WRITE, 0, 0, buf, VOLSZ), 0);
	ck_assert_int_eq(vio(bd, BIO_FLUSH, 0, 0, NULL, 0), 0);
	ck_assert_int_eq(fault_record(e.fd, true), 0);
	memset(buf, 2, 3 * CHUNK);
	if (_i) {
		ck_assert_int_eq(vio(bd, BIO_WRITE, BIO_FUA, CHUNK, buf, 3 * CHUNK), 0);
	} else {
		ck_assert_int_eq(vio(bd, BIO_WRITE, 0, CHUNK, buf, 3 * CHUNK), 0);
		ck_assert_int_eq(vio(bd, BIO_FLUSH, 0, 0, NULL, 0), 0);
	}
	ck_assert_int_eq(fault_power_cut(e.fd, NULL), 0);
	ck_assert_int_eq(vclose(bd), 0);
	rc = thin_pool_close(p);
	ck_assert(rc == 0 || rc == -EIO);
	ck_assert_int_eq(fault_power_restore(e.fd), 0);
	ck_assert_int_eq(thin_pool_open(tenv_dev(&e), &oo, &p), 0);
	ck_assert_int_eq(thin_vol_open(p, "a", &bd), 0);
	ck_assert_int_eq(vio(bd, BIO_READ, 0, 0, buf, VOLSZ), 0);
	for (uint64_t i = 0; i < VOLSZ; i++)
		if (buf[i] != (i >= CHUNK && i < 4 * CHUNK ? 2 : 1))
			ck_abort_msg("byte %llu is %u", (unsigned long long)i, buf[i]);
	ck_assert_int_eq(vclose(bd), 0);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
	if (tloop) {
		ev_loop_free(tloop);
		tloop = NULL;
	}
}
END_TEST

/* Two threads, each with its own loop and channel on one volume, 16 writes
 * in flight each: single sectors interleaved between the threads in the
 * first half (so both provision and write the same chunks at once), whole
 * chunks interleaved in the second half. Every write lands. */
struct writer {
	struct blkdev	*bd;
	uint8_t		*image;
	int		t;
	unsigned	inflight;
	uint64_t	done, errors;
};

static void wr_end(struct bio *bio, int status)
{
	struct writer *w = bio->end_arg;

	w->inflight--;
	w->done++;
	w->errors += status != 0;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct ev_loop *loop;
	struct blkchan *ch;
	uint64_t nsect = VOLSZ / 2 / 512, nchunks = VOLSZ / 2 / CHUNK;
	uint64_t i = 0, n = nsect / 2 + nchunks / 2, seed = 77 + (uint64_t)w->t;
	uint64_t *order = malloc(n * sizeof(*order));

	/* a shuffled list of this thread's writes: sector k or chunk c */
	for (uint64_t k = 0; k < nsect / 2; k++)
		order[k] = (2 * k + (uint64_t)w->t) * 512;
	for (uint64_t c = 0; c < nchunks / 2; c++)
		order[nsect / 2 + c] = VOLSZ / 2 + (2 * c + (uint64_t)w->t) * CHUNK;
	for (uint64_t k = n - 1; k > 0; k--) {
		uint64_t j = rnd(&seed) % (k + 1), x = order[k];

		order[k] = order[j];
		order[j] = x;
	}
	ck_assert_int_eq(ev_loop_new(EV_AUTO, 64, &loop), 0);
	ck_assert_int_eq(blk_chan_open(w->bd, loop, &ch), 0);
	while (i < n || w->inflight) {
		while (i < n && w->inflight < 16) {
			uint64_t off = order[i], len = off < VOLSZ / 2 ? 512 : CHUNK;
			struct iovec iov = { .iov_base = w->image + off, .iov_len = len };
			int rc = blk_rw(ch, BIO_WRITE, 0, &iov, 1, off, len, wr_end, w);

			if (rc == -EAGAIN || rc == -ENOMEM)
				break;
			ck_assert_int_eq(rc, 0);
			w->inflight++;
			i++;
		}
		ev_run_once(loop, 100);
	}
	blk_chan_close(ch, NULL, NULL);
	ev_loop_free(loop);
	free(order);
	return NULL;
}

START_TEST(t_concurrent)
{
	struct tenv e;
	struct thin_pool *p;
	struct blkdev *bd;
	struct writer w[2];
	pthread_t th[2];
	uint8_t *image = malloc(VOLSZ);
	static uint8_t buf[VOLSZ];
	uint64_t t0;

	for (uint64_t off = 0; off < VOLSZ; off += 8)
		put_le64(image + off, off * 0x9e3779b97f4a7c15ull + 1);
	pool_up(&e, 16u << 20, false, &p);
	ck_assert_int_eq(thin_vol_create(p, "a", VOLSZ), 0);
	ck_assert_int_eq(thin_vol_open(p, "a", &bd), 0);
	t0 = now_ns();
	for (int t = 0; t < 2; t++) {
		w[t] = (struct writer){ .bd = bd, .image = image, .t = t };
		ck_assert_int_eq(pthread_create(&th[t], NULL, writer_main, &w[t]), 0);
	}
	for (int t = 0; t < 2; t++) {
		pthread_join(th[t], NULL);
		ck_assert_uint_eq(w[t].errors, 0);
		ck_assert_uint_eq(w[t].done, VOLSZ / 2 / 512 / 2 + VOLSZ / 2 / CHUNK / 2);
	}
	printf("thin: %llu writes from 2 threads in %.0f ms\n",
	       (unsigned long long)(w[0].done + w[1].done), (double)(now_ns() - t0) / 1e6);
	ck_assert_int_eq(vio(bd, BIO_READ, 0, 0, buf, VOLSZ), 0);
	ck_assert(!memcmp(buf, image, VOLSZ));
	pcheck(p);
	ck_assert_int_eq(vclose(bd), 0);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
	if (tloop) {
		ev_loop_free(tloop);
		tloop = NULL;
	}
	free(image);
}
END_TEST

/* Metadata full: creating volumes stops with -ENOSPC before the metadata
 * runs out, and the pool keeps working. */
START_TEST(t_meta_full)
{
	struct tenv e;
	struct thin_pool *p;
	struct thin_format_opts fo = { .chunk_size = CHUNK, .meta_size = 120 * 4096 };
	struct thin_pool_info pi;
	struct vmodel a = { 0 };
	uint64_t seed = 8;
	char name[16];
	int i, rc = 0;

	tenv_open(&e, 16u << 20, 512, false);
	ck_assert_int_eq(thin_pool_format(e.mem, &fo), 0);
	ck_assert_int_eq(thin_pool_open(e.mem, &oo, &p), 0);
	T_EQ(thin_vol_create(p, "a", VOLSZ), 0);
	/* map all of "a" first */
	vm_open(p, "a", &a);
	memset(a.m, 0x11, VOLSZ);
	T_EQ(vio(a.bd, BIO_WRITE, 0, 0, a.m, VOLSZ), 0);
	for (i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "v%d", i);
		rc = thin_vol_create(p, name, VOLSZ);
		if (rc)
			break;
	}
	ck_assert_int_eq(rc, -ENOSPC);
	ck_assert_int_gt(i, 5);
	ck_assert_int_eq(thin_pool_info(p, &pi), 0);
	ck_assert_uint_gt(pi.free_meta_blocks, 0);
	/* data I/O that needs no new metadata block still works */
	vm_write(&a, &seed, 20);
	vm_check(&a);
	ck_assert_int_eq(vio(a.bd, BIO_FLUSH, 0, 0, NULL, 0), 0);
	/* deleting makes room again */
	vm_close(&a, true);
	for (int j = 0; j < i; j++) {
		snprintf(name, sizeof(name), "v%d", j);
		ck_assert_int_eq(thin_vol_delete(p, name), 0);
	}
	ck_assert_int_eq(thin_vol_create(p, "b", VOLSZ), 0);
	pcheck(p);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
	if (tloop) {
		ev_loop_free(tloop);
		tloop = NULL;
	}
}
END_TEST

/* Rough figures: metadata per mapped chunk, provisioning and in-place rates
 * through the owner thread (memory device; printed, sanity-checked only). */
START_TEST(t_figures)
{
	struct tenv e;
	struct thin_pool *p;
	struct thin_pool_info pi, pi0;
	struct blkdev *bd;
	static uint8_t buf[4096];
	const uint64_t n = 1024;
	uint64_t t0, bad = 0;

	pool_up(&e, (n + 64) * CHUNK, false, &p);
	ck_assert_int_eq(thin_pool_info(p, &pi0), 0);
	ck_assert_int_eq(thin_vol_create(p, "a", n * CHUNK), 0);
	ck_assert_int_eq(thin_vol_open(p, "a", &bd), 0);
	t0 = now_ns();
	for (uint64_t c = 0; c < n; c++)
		bad += vio(bd, BIO_WRITE, 0, c * CHUNK, buf, sizeof(buf)) != 0;
	printf("thin: provisioning 4 KiB writes (rest of the chunk zeroed) %.0f/s\n",
	       n * 1e9 / (double)(now_ns() - t0));
	ck_assert_int_eq(vio(bd, BIO_FLUSH, 0, 0, NULL, 0), 0);
	t0 = now_ns();
	for (uint64_t c = 0; c < n; c++)
		bad += vio(bd, BIO_WRITE, 0, c * CHUNK + 8192, buf, sizeof(buf)) != 0;
	printf("thin: in-place 4 KiB writes %.0f/s\n", n * 1e9 / (double)(now_ns() - t0));
	T_EQ(bad, 0);
	ck_assert_int_eq(vio(bd, BIO_FLUSH, 0, 0, NULL, 0), 0);
	ck_assert_int_eq(thin_pool_info(p, &pi), 0);
	ck_assert_uint_eq(pi0.free_chunks - pi.free_chunks, n);
	printf("thin: %llu mapped chunks, %llu metadata blocks in use (%.1f bytes per chunk "
	       "incl. the volume table)\n", (unsigned long long)n,
	       (unsigned long long)(pi.meta_blocks - pi.free_meta_blocks),
	       (double)(pi.meta_blocks - pi.free_meta_blocks) * 4096 / (double)n);
	/* the metadata cache stays within its bound (64, plus a few pinned) */
	ck_assert_uint_le(pi.cache_used, 64);
	ck_assert_uint_le(pi.cache_peak, 64 + 16);
	ck_assert_int_eq(vclose(bd), 0);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
	if (tloop) {
		ev_loop_free(tloop);
		tloop = NULL;
	}
}
END_TEST

/* The checker finds a reference count that is one too high on disk. */
START_TEST(t_check_detects)
{
	struct tenv e;
	struct thin_pool *p;
	struct thin_check_report r;
	struct blkdev *bd;
	static uint8_t sb[2][4096], blk[4096], buf[4096];
	uint64_t dbase, slot;
	int w;

	pool_up(&e, 16u << 20, false, &p);
	ck_assert_int_eq(thin_vol_create(p, "a", VOLSZ), 0);
	ck_assert_int_eq(thin_vol_open(p, "a", &bd), 0);
	memset(buf, 9, sizeof(buf));
	ck_assert_int_eq(vio(bd, BIO_WRITE, 0, 0, buf, sizeof(buf)), 0);
	ck_assert_int_eq(vclose(bd), 0);
	ck_assert_int_eq(thin_pool_close(p), 0);
	/* the newest superblock says where data refcount block 0 is */
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(blk_sync_io(e.mem, BIO_READ, 0, (uint64_t)i * 4096, sb[i], 4096), 0);
	w = get_le64(sb[1] + 32) > get_le64(sb[0] + 32);
	dbase = get_le64(sb[w] + 88);
	/* one metadata refcount block (1 select byte), then the data map's bits */
	slot = dbase + (sb[w][512 + 1] & 1);
	ck_assert_int_eq(blk_sync_io(e.mem, BIO_READ, 0, slot * 4096, blk, 4096), 0);
	ck_assert_uint_eq(get_le32(blk + 32), 1);	/* chunk 0: mapped once */
	put_le32(blk + 32, 2);
	put_le32(blk, meta_csum(blk));
	ck_assert_int_eq(blk_sync_io(e.mem, BIO_WRITE, 0, slot * 4096, blk, 4096), 0);
	ck_assert_int_eq(thin_pool_open(e.mem, &oo, &p), 0);
	ck_assert_int_eq(thin_pool_check(p, &r), -EUCLEAN);
	ck_assert_uint_eq(r.errors, 1);
	ck_assert_uint_eq(r.volumes, 1);
	ck_assert_uint_eq(r.mappings, 1);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
	if (tloop) {
		ev_loop_free(tloop);
		tloop = NULL;
	}
}
END_TEST

/* ---- torture: random operations on several volumes, power cuts ----
 *
 * Each write fills every 8-byte word with (tag << 24 | sector) so a sector
 * tells which write it came from. After a cut (random keep/drop/tear of
 * every unflushed write) and a reopen: the checker passes, every volume is
 * there, and each sector holds what it held at the last flush or what one
 * of the writes since then put there (a discard writes zeros). Control
 * operations (create, snapshot, clone, delete) commit, so they count as a
 * flush. */
#define TV		4
#define TVOL		(2u << 20)
#define TSECT		(TVOL / 512)

struct tvol {
	bool		live;
	char		name[16];
	struct blkdev	*bd;
	uint8_t		*flushed;	/* contents at the last flush */
};

struct twrite {
	int		v;
	uint64_t	off, len;
	uint64_t	tag;		/* 0: zeros */
};

static void pattern(uint8_t *buf, uint64_t off, uint64_t len, uint64_t tag)
{
	for (uint64_t i = 0; i < len; i += 8)
		put_le64(buf + i, tag ? tag << 24 | ((off + i) / 512) : 0);
}

static bool sector_is(const uint8_t *sec, uint64_t sector, uint64_t tag)
{
	for (unsigned i = 0; i < 512; i += 8)
		if (get_le64(sec + i) != (tag ? tag << 24 | sector : 0))
			return false;
	return true;
}

START_TEST(t_torture)
{
	struct tenv e;
	struct thin_pool *p;
	struct tvol v[TV];
	static struct twrite wr[4096];
	static uint8_t buf[TVOL];
	struct fault_cut_policy pol = { .mode = FAULT_CUT_RANDOM };
	uint64_t seed = 0x70f + (uint64_t)_i * 7919, tag = 1, nw = 0, newer = 0, older = 0;
	int nvol = 0, rc;

	memset(v, 0, sizeof(v));
	oo.no_write_zeroes = _i & 1;	/* new chunks zeroed both ways (forked: local) */
	pool_up(&e, 24u << 20, true, &p);
	ck_assert_int_eq(fault_record(e.fd, true), 0);
	for (int round = 0; round < 12; round++) {
		for (int op = 0; op < 150; op++) {
			uint64_t r = rnd(&seed);
			int i = (int)(r % TV), k;

			if (!v[i].live) {		/* create, snapshot or clone */
				for (k = 0; k < TV && !v[k].live; k++)
					;
				snprintf(v[i].name, sizeof(v[i].name), "v%d", nvol++);
				if (k == TV || (r >> 8) % 3 == 0) {
					T_EQ(thin_vol_create(p, v[i].name, TVOL), 0);
					v[i].flushed = calloc(1, TVOL);
				} else {
					T_EQ(((r >> 8) % 3 == 1 ? thin_snap_create :
					      thin_clone_create)(p, v[k].name, v[i].name), 0);
					/* a commit: everything so far is durable */
					T_EQ(vio(v[k].bd, BIO_READ, 0, 0, buf, TVOL), 0);
					v[i].flushed = malloc(TVOL);
					memcpy(v[i].flushed, buf, TVOL);
				}
				T_EQ(thin_vol_open(p, v[i].name, &v[i].bd), 0);
				v[i].live = true;
				goto flushed;
			}
			switch ((r >> 8) % 16) {
			case 0:				/* delete */
				T_EQ(vclose(v[i].bd), 0);
				T_EQ(thin_vol_delete(p, v[i].name), 0);
				free(v[i].flushed);
				v[i].live = false;
				goto flushed;
			case 1:				/* flush */
				T_EQ(vio(v[i].bd, BIO_FLUSH, 0, 0, NULL, 0), 0);
				goto flushed;
			case 2: {			/* discard */
				uint64_t len = 512 * (1 + (r >> 16) % 300);
				uint64_t off = 512 * ((r >> 32) % ((TVOL - len) / 512));

				if (v[i].bd->readonly)
					break;
				T_EQ(vio(v[i].bd, BIO_DISCARD, 0, off, NULL, len), 0);
				wr[nw++] = (struct twrite){ .v = i, .off = off, .len = len };
				break;
			}
			default: {			/* write, sometimes FUA */
				uint64_t len = 512 * (1 + (r >> 16) % 300);
				uint64_t off = 512 * ((r >> 32) % ((TVOL - len) / 512));
				bool fua = (r >> 60) == 0;

				if (v[i].bd->readonly)
					break;
				pattern(buf, off, len, tag);
				T_EQ(vio(v[i].bd, BIO_WRITE, fua ? BIO_FUA : 0, off, buf, len), 0);
				wr[nw++] = (struct twrite){ .v = i, .off = off, .len = len, .tag = tag++ };
				if (fua)
					goto flushed;
				break;
			}
			}
			continue;
flushed:
			/* every live volume's present contents are now durable */
			for (k = 0; k < TV; k++)
				if (v[k].live)
					T_EQ(vio(v[k].bd, BIO_READ, 0, 0, v[k].flushed, TVOL), 0);
			nw = 0;
		}
		/* the cut */
		pol.seed = seed;
		T_EQ(fault_power_cut(e.fd, &pol), 0);
		for (int i = 0; i < TV; i++)
			if (v[i].live)
				T_EQ(vclose(v[i].bd), 0);
		rc = thin_pool_close(p);
		T_TRUE(rc == 0 || rc == -EIO);
		T_EQ(fault_power_restore(e.fd), 0);
		T_EQ(thin_pool_open(tenv_dev(&e), &oo, &p), 0);
		pcheck(p);
		for (int i = 0; i < TV; i++) {
			if (!v[i].live)
				continue;
			T_EQ(thin_vol_open(p, v[i].name, &v[i].bd), 0);
			T_EQ(vio(v[i].bd, BIO_READ, 0, 0, buf, TVOL), 0);
			for (uint64_t sct = 0; sct < TSECT; sct++) {
				bool ok = !memcmp(buf + sct * 512, v[i].flushed + sct * 512, 512);
				bool later = false;

				for (uint64_t j = nw; j-- > 0; )
					if (wr[j].v == i && wr[j].off <= sct * 512 &&
					    sct * 512 < wr[j].off + wr[j].len) {
						later = true;
						if (!ok && sector_is(buf + sct * 512, sct, wr[j].tag)) {
							ok = true;
							newer++;
						}
					}
				older += ok && later && !memcmp(buf + sct * 512,
								v[i].flushed + sct * 512, 512);
				if (!ok)
					ck_abort_msg("round %d: %s sector %llu holds neither its flushed "
						     "contents nor a later write", round, v[i].name,
						     (unsigned long long)sct);
			}
			memcpy(v[i].flushed, buf, TVOL);
		}
		nw = 0;
	}
	oo.no_write_zeroes = false;
	/* the cuts kept some unflushed sectors and lost others */
	ck_assert_uint_gt(newer, 0);
	ck_assert_uint_gt(older, 0);
	for (int i = 0; i < TV; i++)
		if (v[i].live) {
			T_EQ(vclose(v[i].bd), 0);
			free(v[i].flushed);
		}
	pcheck(p);
	T_EQ(thin_pool_close(p), 0);
	tenv_close(&e);
	if (tloop) {
		ev_loop_free(tloop);
		tloop = NULL;
	}
}
END_TEST

/* Over a file with each backend (io_uring needs the pool's private loops
 * to be rings too): write, reopen, read back, check. */
START_TEST(t_file)
{
	static const enum blk_file_backend be[] = { BLK_FILE_URING, BLK_FILE_AIO, BLK_FILE_PSYNC };
	struct blk_file_opts fo = { .backend = be[_i], .create_size = 16u << 20 };
	char path[] = "/tmp/sand-thin-XXXXXX";
	struct blkdev *dev;
	struct thin_pool *p;
	struct vmodel a = { 0 };
	uint64_t seed = 31;
	int fd = mkstemp(path), rc;

	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(path);
	rc = blk_file_open("thinfile", path, &fo, &dev);
	if (rc == -ENOTSUP || rc == -ENOSYS || rc == -EPERM) {
		unlink(path);
		return;		/* no io_uring here: the other backends still run */
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(thin_pool_format(dev, NULL), 0);
	ck_assert_int_eq(thin_pool_open(dev, &oo, &p), 0);
	ck_assert_int_eq(thin_vol_create(p, "a", VOLSZ), 0);
	vm_open(p, "a", &a);
	vm_write(&a, &seed, 100);
	vm_check(&a);
	vm_close(&a, false);
	ck_assert_int_eq(thin_pool_close(p), 0);
	ck_assert_int_eq(thin_pool_open(dev, &oo, &p), 0);
	vm_open(p, "a", &a);
	vm_check(&a);
	pcheck(p);
	vm_close(&a, true);
	ck_assert_int_eq(thin_pool_close(p), 0);
	ck_assert_int_eq(blkdev_close(dev), 0);
	unlink(path);
	if (tloop) {
		ev_loop_free(tloop);
		tloop = NULL;
	}
}
END_TEST

/* Chunks freed by one volume and given to another never show the old
 * data: a partial write to a new chunk zeroes the rest (_i: with the
 * device's WRITE_ZEROES, or with written zeros). */
START_TEST(t_no_stale)
{
	struct tenv e;
	struct thin_pool *p;
	struct thin_open_opts o = oo;
	struct vmodel a = { 0 }, b = { 0 };
	static uint8_t buf[VOLSZ];

	o.no_write_zeroes = _i;
	tenv_open(&e, 8u << 20, 512, false);
	ck_assert_int_eq(thin_pool_format(e.mem, &(struct thin_format_opts){ .chunk_size = CHUNK }), 0);
	ck_assert_int_eq(thin_pool_open(e.mem, &o, &p), 0);
	ck_assert_int_eq(thin_vol_create(p, "a", VOLSZ), 0);
	vm_open(p, "a", &a);
	memset(buf, 0xab, VOLSZ);
	ck_assert_int_eq(vio(a.bd, BIO_WRITE, 0, 0, buf, VOLSZ), 0);
	vm_close(&a, true);
	ck_assert_int_eq(thin_vol_delete(p, "a"), 0);	/* commits: the chunks are free */
	ck_assert_int_eq(thin_vol_create(p, "b", VOLSZ), 0);
	vm_open(p, "b", &b);
	memset(buf, 0x5c, 1024);
	for (uint64_t c = 0; c < VOLSZ / CHUNK; c++) {
		uint64_t off = c * CHUNK + (c * 4096) % (CHUNK - 1024);

		ck_assert_int_eq(vio(b.bd, BIO_WRITE, 0, off, buf, 1024), 0);
		memset(b.m + off, 0x5c, 1024);
	}
	vm_check(&b);
	pcheck(p);
	vm_close(&b, true);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
	if (tloop) {
		ev_loop_free(tloop);
		tloop = NULL;
	}
}
END_TEST

START_TEST(t_format_args)
{
	struct tenv e;
	struct thin_pool *p;
	struct thin_format_opts fo = { .chunk_size = 48 * 1024 };

	tenv_open(&e, 8u << 20, 512, false);
	ck_assert_int_eq(thin_pool_format(e.mem, &fo), -EINVAL);
	fo.chunk_size = 2u << 20;
	ck_assert_int_eq(thin_pool_format(e.mem, &fo), -EINVAL);
	/* not a pool */
	ck_assert_int_eq(thin_pool_open(e.mem, &oo, &p), -EUCLEAN);
	fo.chunk_size = 1u << 20;
	ck_assert_int_eq(thin_pool_format(e.mem, &fo), 0);
	ck_assert_int_eq(thin_pool_open(e.mem, &oo, &p), 0);
	ck_assert_int_eq(thin_pool_close(p), 0);
	tenv_close(&e);
	if (tloop) {
		ev_loop_free(tloop);
		tloop = NULL;
	}
}
END_TEST

static Suite *pool_suite(void)
{
	Suite *s = suite_create("thin_pool");
	TCase *tc = tcase_create("pool");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, t_basic);
	tcase_add_loop_test(tc, t_snapshots, 0, 4);
	tcase_add_test(tc, t_discard);
	tcase_add_test(tc, t_full);
	tcase_add_loop_test(tc, t_power_cut, 0, 3);
	tcase_add_loop_test(tc, t_flush_inplace, 0, 2);
	tcase_add_test(tc, t_concurrent);
	tcase_add_test(tc, t_meta_full);
	tcase_add_test(tc, t_figures);
	tcase_add_test(tc, t_check_detects);
	tcase_add_loop_test(tc, t_torture, 0, 6);
	tcase_add_loop_test(tc, t_file, 0, 3);
	tcase_add_loop_test(tc, t_no_stale, 0, 2);
	tcase_add_test(tc, t_format_args);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(pool_suite());
	int nfail;

	srunner_run_all(sr, CK_NORMAL);
	nfail = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nfail ? EXIT_FAILURE : EXIT_SUCCESS;
}
