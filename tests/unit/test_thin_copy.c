/* SPDX-License-Identifier: MIT */
/*
 * Range copy by sharing chunks (thin_vol_copy_range, snapshot/copy.c) on a
 * memory device: contents equal to a model (memmove) after random copies
 * mixed with writes, discards and snapshots; reference counts right
 * (thin_pool_check clean after every few steps and after a reopen); a
 * shared copy allocates no data chunk, and a write to a shared chunk
 * through either volume copies it; refusals; power cuts around a copy.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include "sand/fault.h"
#include "sand/log.h"
#include "sand/thin.h"
#include "test_thin_io.h"

#define CHUNK		(64u * 1024)
#define VOLSZ		(4u << 20)
#define NCH		(VOLSZ / CHUNK)
#define DEVSZ		(32u << 20)

static const struct thin_open_opts oo = { .commit_ms = 60000 };

struct cres {
	bool	done;
	int	rc;
};

static void copy_end(void *arg, int rc)
{
	struct cres *r = arg;

	r->done = true;
	r->rc = rc;
}

/* thin_vol_copy_range, waited for on tio's loop */
static int copy(struct blkdev *src, uint64_t so, struct blkdev *dst, uint64_t d, uint64_t len)
{
	struct cres r = { 0 };
	int rc;

	tio_chan(src);		/* tio's loop exists */
	rc = thin_vol_copy_range(src, so, dst, d, len, tio_loop, copy_end, &r);
	if (rc)
		return rc;
	while (!r.done)
		T_TRUE(ev_run_once(tio_loop, -1) >= 0);
	return r.rc;
}

static void check_clean(struct thin_pool *p)
{
	struct thin_check_report rep;

	ck_assert_int_eq(thin_pool_check(p, &rep), 0);
	ck_assert_uint_eq(rep.errors, 0);
	ck_assert_uint_eq(rep.leaked_chunks, 0);
}

static uint64_t free_chunks(struct thin_pool *p)
{
	struct thin_pool_info pi;

	ck_assert_int_eq(thin_pool_info(p, &pi), 0);
	return pi.free_chunks;
}

static void expect(struct blkdev *bd, const uint8_t *model)
{
	static uint8_t b[VOLSZ];

	T_EQ(tio(bd, BIO_READ, 0, 0, b, VOLSZ), 0);
	T_TRUE(!memcmp(b, model, VOLSZ));
}

static struct blkdev *mem;
static struct thin_pool *p;

static void setup(void)
{
	struct thin_format_opts fo = { .chunk_size = CHUNK };

	ck_assert_int_eq(blk_mem_create("copymem", DEVSZ, 512, &mem), 0);
	ck_assert_int_eq(thin_pool_format(mem, &fo), 0);
	ck_assert_int_eq(thin_pool_open(mem, &oo, &p), 0);
}

static void teardown(void)
{
	ck_assert_int_eq(thin_pool_close(p), 0);
	ck_assert_int_eq(blkdev_close(mem), 0);
	tio_done();
}

START_TEST(shares_no_space)
{
	static uint8_t m1[VOLSZ], m2[VOLSZ], b[CHUNK];
	struct blkdev *v1, *v2;
	uint64_t before;

	ck_assert_int_eq(thin_vol_create(p, "v1", VOLSZ), 0);
	ck_assert_int_eq(thin_vol_create(p, "v2", VOLSZ), 0);
	ck_assert_int_eq(thin_vol_open(p, "v1", &v1), 0);
	ck_assert_int_eq(thin_vol_open(p, "v2", &v2), 0);
	ck_assert_uint_eq(thin_vol_chunk(v1), CHUNK);
	ck_assert(thin_vol_same_pool(v1, v2));
	for (uint32_t i = 0; i < VOLSZ; i++)
		m1[i] = (uint8_t)(i * 7 + i / 4096);
	T_EQ(tio(v1, BIO_WRITE, 0, 0, m1, VOLSZ), 0);
	before = free_chunks(p);

	/* the whole volume: no chunk allocated */
	ck_assert_int_eq(copy(v1, 0, v2, 0, VOLSZ), 0);
	ck_assert_uint_eq(free_chunks(p), before);
	memcpy(m2, m1, VOLSZ);
	expect(v2, m2);
	check_clean(p);

	/* a partial write to a shared chunk through the destination copies
	 * it (one chunk), the source keeps its data */
	memset(b, 0xd2, 4096);
	T_EQ(tio(v2, BIO_WRITE, 0, 8192, b, 4096), 0);
	memset(m2 + 8192, 0xd2, 4096);
	ck_assert_uint_eq(free_chunks(p), before - 1);
	/* and through the source (in place before the copy: not now) */
	memset(b, 0xe1, 512);
	T_EQ(tio(v1, BIO_WRITE, 0, CHUNK + 512, b, 512), 0);
	memset(m1 + CHUNK + 512, 0xe1, 512);
	ck_assert_uint_eq(free_chunks(p), before - 2);
	/* a chunk no longer shared is written in place again */
	T_EQ(tio(v1, BIO_WRITE, 0, CHUNK + 1024, b, 512), 0);
	memset(m1 + CHUNK + 1024, 0xe1, 512);
	ck_assert_uint_eq(free_chunks(p), before - 2);
	expect(v1, m1);
	expect(v2, m2);
	check_clean(p);

	/* an unmapped source range unmaps the destination's */
	T_EQ(tio(v1, BIO_DISCARD, 0, 4 * CHUNK, NULL, 2 * CHUNK), 0);
	memset(m1 + 4 * CHUNK, 0, 2 * CHUNK);
	ck_assert_int_eq(copy(v1, 4 * CHUNK, v2, 10 * CHUNK, 2 * CHUNK), 0);
	memset(m2 + 10 * CHUNK, 0, 2 * CHUNK);
	expect(v2, m2);

	/* refusals */
	ck_assert_int_eq(copy(v1, 512, v2, 0, CHUNK), -EINVAL);
	ck_assert_int_eq(copy(v1, 0, v2, 0, VOLSZ + CHUNK), -EINVAL);
	ck_assert_int_eq(copy(v1, 0, mem, 0, CHUNK), -EXDEV);
	ck_assert_uint_eq(thin_vol_chunk(mem), 0);

	/* durable with the next commit: close, reopen, same data, clean */
	T_EQ(tio(v2, BIO_FLUSH, 0, 0, NULL, 0), 0);
	ck_assert_int_eq(tio_close(v1), 0);
	ck_assert_int_eq(tio_close(v2), 0);
	ck_assert_int_eq(thin_pool_close(p), 0);
	ck_assert_int_eq(thin_pool_open(mem, &oo, &p), 0);
	check_clean(p);
	ck_assert_int_eq(thin_vol_open(p, "v1", &v1), 0);
	ck_assert_int_eq(thin_vol_open(p, "v2", &v2), 0);
	expect(v1, m1);
	expect(v2, m2);
	ck_assert_int_eq(tio_close(v1), 0);
	ck_assert_int_eq(tio_close(v2), 0);
	/* deleting both gives every chunk back */
	ck_assert_int_eq(thin_vol_delete(p, "v1"), 0);
	check_clean(p);
	ck_assert_int_eq(thin_vol_delete(p, "v2"), 0);
	check_clean(p);
	{
		struct thin_pool_info pi;

		ck_assert_int_eq(thin_pool_info(p, &pi), 0);
		ck_assert_uint_eq(pi.free_chunks, pi.data_chunks);
	}
}
END_TEST

/* Random writes, discards, range copies (also within one volume,
 * overlapping) and snapshots against a model. */
START_TEST(model)
{
	static uint8_t m[2][VOLSZ], snapm[VOLSZ], b[4 * CHUNK];
	struct blkdev *v[2], *snap;
	uint64_t seed = env_u64("THIN_COPY_SEED", 0x5eed0000 + (uint64_t)_i);
	unsigned copies = 0, shared_self = 0, snaps = 0;
	bool have_snap = false;

	ck_assert_int_eq(thin_vol_create(p, "a", VOLSZ), 0);
	ck_assert_int_eq(thin_vol_create(p, "b", VOLSZ), 0);
	ck_assert_int_eq(thin_vol_open(p, "a", &v[0]), 0);
	ck_assert_int_eq(thin_vol_open(p, "b", &v[1]), 0);
	memset(m, 0, sizeof(m));
	for (unsigned step = 0; step < 400; step++) {
		uint64_t r = rnd(&seed);
		unsigned w = r & 1, op = (r >> 1) % 10;

		if (op < 4) {		/* a write, partial or whole chunks */
			uint64_t off = (rnd(&seed) % (VOLSZ / 512)) * 512;
			uint64_t len = (1 + rnd(&seed) % 256) * 512;

			len = MIN(len, VOLSZ - off);

			memset(b, (int)(r >> 8), len);
			if (tio(v[w], BIO_WRITE, 0, off, b, len))
				ck_abort_msg("step %u write %llu+%llu to %u failed", step,
					     (unsigned long long)off, (unsigned long long)len, w);
			memset(m[w] + off, (int)(r >> 8), len);
		} else if (op == 4) {	/* a discard of whole chunks */
			uint64_t c = rnd(&seed) % NCH, n = 1 + rnd(&seed) % 3;


			n = MIN(n, NCH - c);
			T_EQ(tio(v[w], BIO_DISCARD, 0, c * CHUNK, NULL, n * CHUNK), 0);
			memset(m[w] + c * CHUNK, 0, n * CHUNK);
		} else if (op < 9) {	/* a range copy */
			unsigned s = (r >> 8) & 1;
			uint64_t n = 1 + rnd(&seed) % 8, sc, dc;

			sc = rnd(&seed) % (NCH - n + 1);
			dc = rnd(&seed) % (NCH - n + 1);
			T_EQ(copy(v[s], sc * CHUNK, v[w], dc * CHUNK, n * CHUNK), 0);
			memmove(m[w] + dc * CHUNK, m[s] + sc * CHUNK, n * CHUNK);
			copies++;
			shared_self += s == w;
		} else if (!have_snap) {	/* a snapshot of a, kept */
			ck_assert_int_eq(thin_snap_create(p, "a", "a-snap"), 0);
			ck_assert_int_eq(thin_vol_open(p, "a-snap", &snap), 0);
			memcpy(snapm, m[0], VOLSZ);
			have_snap = true;
			snaps++;
		}
		if (step % 50 == 49) {
			expect(v[0], m[0]);
			expect(v[1], m[1]);
			if (have_snap)
				expect(snap, snapm);
			check_clean(p);
		}
	}
	expect(v[0], m[0]);
	expect(v[1], m[1]);
	if (have_snap) {
		expect(snap, snapm);
		ck_assert_int_eq(tio_close(snap), 0);
	}
	check_clean(p);
	ck_assert_int_eq(tio_close(v[0]), 0);
	ck_assert_int_eq(tio_close(v[1]), 0);
	ck_assert_uint_gt(copies, 50);
	ck_assert_uint_gt(shared_self, 10);
	ck_assert_uint_eq(snaps, 1);
}
END_TEST

/*
 * Power cuts around a range copy: v1 and v2 hold durable contents; then a
 * copy v1 -> v2, a partial write to a shared chunk of v2 and a FLUSH, with
 * the device failing after cut_at writes or flushes, then a power cut
 * (writes at risk kept, dropped or torn). After a reopen the pool checks
 * clean, v1 is as it was, and v2 is all old or all new (one commit), new
 * if the FLUSH succeeded.
 */
START_TEST(power_cut)
{
	enum { SZ = 16 * CHUNK };
	struct thin_format_opts fo = { .chunk_size = CHUNK };
	static uint8_t a[SZ], b[SZ], n2[SZ], got[SZ], w[4096];
	struct blkdev *cmem, *fd, *v1, *v2;
	struct thin_pool *cp;
	struct thin_check_report rep;
	unsigned olds = 0, news = 0;

	for (unsigned i = 0; i < SZ; i++) {
		a[i] = (uint8_t)(i / 512 + 1);
		b[i] = (uint8_t)(0x80 | i / 4096);
	}
	memset(w, 0xd2, sizeof(w));
	memcpy(n2, a, SZ);
	memcpy(n2 + 3 * CHUNK + 4096, w, sizeof(w));
	ck_assert_int_eq(blk_mem_create("cutcopy", 8u << 20, 512, &cmem), 0);
	ck_assert_int_eq(blk_fault_create("cutcopyf", cmem, &fd), 0);
	ck_assert_int_eq(thin_pool_format(fd, &fo), 0);
	ck_assert_int_eq(fault_record(fd, true), 0);
	ck_assert_int_eq(thin_pool_open(fd, &oo, &cp), 0);
	ck_assert_int_eq(thin_vol_create(cp, "v1", SZ), 0);
	ck_assert_int_eq(thin_vol_create(cp, "v2", SZ), 0);
	if (!getenv("THIN_COPY_LOG"))	/* every cut logs metadata errors */
		ck_assert_int_eq(log_set_file("/dev/null"), 0);
	for (uint64_t cut_at = 0; cut_at < 40; cut_at++) {
		struct fault_cut_policy pol = { .mode = FAULT_CUT_RANDOM, .seed = cut_at };
		bool flushed = false;
		int rc;

		ck_assert_int_eq(thin_vol_open(cp, "v1", &v1), 0);
		ck_assert_int_eq(thin_vol_open(cp, "v2", &v2), 0);
		T_EQ(tio(v1, BIO_WRITE, 0, 0, a, SZ), 0);
		T_EQ(tio(v2, BIO_WRITE, 0, 0, b, SZ), 0);
		T_EQ(tio(v2, BIO_FLUSH, 0, 0, NULL, 0), 0);
		T_EQ(fault_fail_after(fd, cut_at, FAULT_OPS_WRITE | FAULT_OP(BIO_FLUSH), -EIO), 0);
		rc = copy(v1, 0, v2, 0, SZ);
		if (!rc)
			rc = tio(v2, BIO_WRITE, 0, 3 * CHUNK + 4096, w, sizeof(w));
		if (!rc)
			rc = tio(v2, BIO_FLUSH, 0, 0, NULL, 0);
		flushed = !rc;
		T_EQ(fault_power_cut(fd, &pol), 0);
		T_EQ(tio_close(v1), 0);
		T_EQ(tio_close(v2), 0);
		rc = thin_pool_close(cp);
		T_TRUE(rc == 0 || rc == -EIO);
		T_EQ(fault_clear(fd), 0);
		T_EQ(fault_power_restore(fd), 0);
		T_EQ(thin_pool_open(fd, &oo, &cp), 0);
		T_EQ(thin_pool_check(cp, &rep), 0);
		T_EQ(rep.errors, 0);
		ck_assert_int_eq(thin_vol_open(cp, "v1", &v1), 0);
		ck_assert_int_eq(thin_vol_open(cp, "v2", &v2), 0);
		T_EQ(tio(v1, BIO_READ, 0, 0, got, SZ), 0);
		T_TRUE(!memcmp(got, a, SZ));
		T_EQ(tio(v2, BIO_READ, 0, 0, got, SZ), 0);
		if (!memcmp(got, n2, SZ)) {
			news++;
		} else {
			if (memcmp(got, b, SZ))
				ck_abort_msg("cut after %llu: v2 neither old nor new",
					     (unsigned long long)cut_at);
			T_TRUE(!flushed);
			olds++;
		}
		T_EQ(tio_close(v1), 0);
		T_EQ(tio_close(v2), 0);
	}
	ck_assert_int_eq(log_set_file(NULL), 0);
	ck_assert_int_eq(thin_pool_close(cp), 0);
	ck_assert_int_eq(blkdev_close(fd), 0);
	ck_assert_int_eq(blkdev_close(cmem), 0);
	/* the cuts fell both before and after the commit */
	ck_assert_uint_gt(olds, 0);
	ck_assert_uint_gt(news, 0);
}
END_TEST

/* A provisioning in flight on a chunk of the range (slow writes on a fault
 * device): the copy gives up with -EAGAIN and changes nothing. */
START_TEST(busy_cell)
{
	struct thin_format_opts fo = { .chunk_size = CHUNK };
	static uint8_t w[4096], got[4 * CHUNK], want[4 * CHUNK];
	struct blkdev *cmem, *fd, *v1, *v2;
	struct thin_pool *cp;
	struct tio_res wr = { 0 };
	struct cres cr = { 0 };
	struct iovec iov = { .iov_base = w, .iov_len = sizeof(w) };

	ck_assert_int_eq(blk_mem_create("cellmem", 8u << 20, 512, &cmem), 0);
	ck_assert_int_eq(blk_fault_create("cellf", cmem, &fd), 0);
	ck_assert_int_eq(thin_pool_format(fd, &fo), 0);
	ck_assert_int_eq(thin_pool_open(fd, &oo, &cp), 0);
	ck_assert_int_eq(thin_vol_create(cp, "v1", 4 * CHUNK), 0);
	ck_assert_int_eq(thin_vol_create(cp, "v2", 4 * CHUNK), 0);
	ck_assert_int_eq(thin_vol_open(cp, "v1", &v1), 0);
	ck_assert_int_eq(thin_vol_open(cp, "v2", &v2), 0);
	memset(want, 0x11, sizeof(want));
	T_EQ(tio(v1, BIO_WRITE, 0, 0, want, sizeof(want)), 0);
	memset(want, 0, sizeof(want));
	memset(w, 0x77, sizeof(w));
	memcpy(want + CHUNK, w, sizeof(w));
	/* v2's chunk 1 is being provisioned for 300 ms */
	ck_assert_int_eq(fault_set_latency(fd, 300000000ull, FAULT_OPS_WRITE), 0);
	ck_assert_int_eq(blk_rw(tio_chan(v2), BIO_WRITE, 0, &iov, 1, CHUNK, sizeof(w), tio_end,
				&wr), 0);
	ck_assert_int_eq(thin_vol_copy_range(v1, 0, v2, 0, 4 * CHUNK, tio_loop, copy_end, &cr), 0);
	while (!cr.done || !wr.done)
		T_TRUE(ev_run_once(tio_loop, -1) >= 0);
	ck_assert_int_eq(cr.rc, -EAGAIN);
	ck_assert_int_eq(wr.status, 0);
	ck_assert_int_eq(fault_set_latency(fd, 0, FAULT_OPS_WRITE), 0);
	T_EQ(tio(v2, BIO_READ, 0, 0, got, sizeof(got)), 0);
	T_TRUE(!memcmp(got, want, sizeof(got)));	/* nothing shared */
	/* once it is over, the copy goes through */
	ck_assert_int_eq(copy(v1, 0, v2, 0, 4 * CHUNK), 0);
	memset(want, 0x11, sizeof(want));
	T_EQ(tio(v2, BIO_READ, 0, 0, got, sizeof(got)), 0);
	T_TRUE(!memcmp(got, want, sizeof(got)));
	check_clean(cp);
	ck_assert_int_eq(tio_close(v1), 0);
	ck_assert_int_eq(tio_close(v2), 0);
	ck_assert_int_eq(thin_pool_close(cp), 0);
	ck_assert_int_eq(blkdev_close(fd), 0);
	ck_assert_int_eq(blkdev_close(cmem), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("thin_copy");
	TCase *tc = tcase_create("copy");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, shares_no_space);
	tcase_add_loop_test(tc, model, 0, 3);
	tcase_add_test(tc, power_cut);
	tcase_add_test(tc, busy_cell);
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
