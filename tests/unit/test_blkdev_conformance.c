/* SPDX-License-Identifier: MIT */
/*
 * One conformance suite for every leaf backend: mem, uring, aio and psync,
 * each with 512- and 4096-byte blocks, on an io_uring loop and (all but
 * uring) on an epoll loop. File devices live in a temporary directory on a
 * real file system (not tmpfs), so O_DIRECT and hole punching are the real
 * thing. Every test drives the loop with ev_run_once until its counters say
 * done, under a time bound, and checks that every end callback ran exactly
 * once and never from inside a submit.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include "sand/blkdev.h"
#include "sand/ev.h"

enum kind { K_MEM, K_URING, K_AIO, K_PSYNC };

struct cfg {
	enum kind	kind;
	uint32_t	bs;
	enum ev_backend	loop;
	bool		blkdev;		/* a loop block device over a file */
};

static const struct cfg cfgs[] = {
	{ K_MEM, 512, EV_URING, false }, { K_MEM, 4096, EV_URING, false },
	{ K_MEM, 512, EV_EPOLL, false }, { K_MEM, 4096, EV_EPOLL, false },
	{ K_URING, 512, EV_URING, false }, { K_URING, 4096, EV_URING, false },
	{ K_AIO, 512, EV_URING, false }, { K_AIO, 4096, EV_URING, false },
	{ K_AIO, 512, EV_EPOLL, false }, { K_AIO, 4096, EV_EPOLL, false },
	{ K_PSYNC, 512, EV_URING, false }, { K_PSYNC, 4096, EV_URING, false },
	{ K_PSYNC, 512, EV_EPOLL, false }, { K_PSYNC, 4096, EV_EPOLL, false },
	/* block devices: only when we may set up loop devices (root) */
	{ K_URING, 512, EV_URING, true }, { K_URING, 4096, EV_URING, true },
	{ K_AIO, 512, EV_EPOLL, true }, { K_AIO, 4096, EV_URING, true },
	{ K_PSYNC, 512, EV_URING, true }, { K_PSYNC, 4096, EV_EPOLL, true },
	/* files on tmpfs (/dev/shm): uring does small reads and writes inline there */
	{ K_URING, 512, EV_URING, false }, { K_URING, 4096, EV_URING, false },
};
#define NCFG_FILE	14
#define NCFG		20
#define NCFG_SHM	((int)ARRAY_SIZE(cfgs))

static const enum blk_file_backend file_backend[] = {
	[K_URING] = BLK_FILE_URING, [K_AIO] = BLK_FILE_AIO, [K_PSYNC] = BLK_FILE_PSYNC,
};

#define DEV_SIZE	(64ull << 20)
#define TIME_BOUND_NS	(20ull * 1000000000ull)

static char tmpdir[256];

/* The device under test, per test (each test runs in its own process). */
static struct {
	const struct cfg *c;
	struct ev_loop	*loop;
	struct blkdev	*bd;
	struct blkchan	*ch;
	char		path[PATH_MAX];
	char		backing[PATH_MAX];	/* the loop device's file */
	unsigned	pending;	/* submitted, not ended */
	bool		in_submit;
	bool		shm;		/* the file is on tmpfs: configs from NCFG on */
} T;

struct op {
	int	ends;
	int	status;
};

static void op_end(struct bio *bio, int status)
{
	struct op *o = bio->end_arg;

	ck_assert_msg(!T.in_submit, "end ran inside submit");
	o->ends++;
	o->status = status;
	ck_assert_uint_gt(T.pending, 0);
	T.pending--;
}

static int dev_open(const struct cfg *c, const char *path, bool ro, struct blkdev **out)
{
	struct blk_file_opts o = {
		.backend = file_backend[c->kind],
		.block_size = c->bs,
		.readonly = ro,
		.create_size = ro ? 0 : DEV_SIZE,
	};

	if (c->kind == K_MEM)
		return blk_mem_create("mem0", DEV_SIZE, c->bs, out);
	return blk_file_open("file0", path, &o, out);
}

/*
 * Attach a loop device of block size bs over a new sparse file. With
 * LO_FLAGS_AUTOCLEAR it detaches itself when the last opener closes it,
 * even if the test crashes; *lfd is that opener until the device is open.
 */
static void loop_attach(uint32_t bs, int *lfd)
{
	struct loop_config lc;
	int ctl, bfd, n;

	snprintf(T.backing, sizeof(T.backing), "%s/loop-%d", tmpdir, (int)getpid());
	bfd = open(T.backing, O_RDWR | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(bfd, 0);
	ck_assert_int_eq(ftruncate(bfd, (off_t)DEV_SIZE), 0);
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(ctl, 0);
	for (int tries = 0;; tries++) {
		ck_assert_int_lt(tries, 20);
		n = ioctl(ctl, LOOP_CTL_GET_FREE);
		ck_assert_int_ge(n, 0);
		snprintf(T.path, sizeof(T.path), "/dev/loop%d", n);
		if (access(T.path, F_OK))
			ck_assert_int_eq(mknod(T.path, S_IFBLK | 0600, makedev(7, (unsigned)n)), 0);
		*lfd = open(T.path, O_RDWR | O_CLOEXEC);
		ck_assert_int_ge(*lfd, 0);
		memset(&lc, 0, sizeof(lc));
		lc.fd = (uint32_t)bfd;
		lc.block_size = bs;
		lc.info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
		if (ioctl(*lfd, LOOP_CONFIGURE, &lc) == 0)
			break;
		ck_assert_int_eq(errno, EBUSY);	/* raced with someone: next one */
		close(*lfd);
	}
	close(ctl);
	close(bfd);
}

static bool loop_usable(void)
{
	return geteuid() == 0 && access("/dev/loop-control", R_OK | W_OK) == 0;
}

static void setup_i(int i)
{
	int lfd = -1;

	memset(&T, 0, sizeof(T));
	T.c = &cfgs[i];
	T.shm = i >= NCFG;
	snprintf(T.path, sizeof(T.path), "%s/dev-%d", T.shm ? "/dev/shm" : tmpdir,
		 (int)getpid());
	if (T.c->blkdev)
		loop_attach(T.c->bs, &lfd);
	ck_assert_int_eq(ev_loop_new(T.c->loop, 256, &T.loop), 0);
	ck_assert_int_eq(ev_loop_backend(T.loop), T.c->loop);
	ck_assert_int_eq(dev_open(T.c, T.path, false, &T.bd), 0);
	if (lfd >= 0)
		close(lfd);
	ck_assert_uint_eq(T.bd->size, DEV_SIZE);
	ck_assert_uint_eq(T.bd->block_size, T.c->bs);
	{
		static const char *names[] = { "mem", "uring", "aio", "psync" };

		ck_assert_str_eq(T.bd->ops->name, names[T.c->kind]);
	}
	if (T.c->kind != K_MEM) {
		ck_assert_str_eq(T.bd->path, T.path);
		/* ext4/xfs take O_DIRECT at 4 KiB everywhere */
		if (T.c->bs == 4096 && !T.shm)
			ck_assert(T.bd->direct);
	}
	ck_assert_int_eq(blk_chan_open(T.bd, T.loop, &T.ch), 0);
}

static void closed_cb(void *arg)
{
	(*(int *)arg)++;
}

static void run_for(int turns)
{
	for (int i = 0; i < turns; i++)
		ck_assert_int_ge(ev_run_once(T.loop, 0), 0);
}

static void teardown_i(void)
{
	if (T.ch) {
		int closed = 0;
		uint64_t end = now_ns() + TIME_BOUND_NS;

		blk_chan_close(T.ch, closed_cb, &closed);
		while (!closed && now_ns() < end)
			ck_assert_int_ge(ev_run_once(T.loop, 50), 0);
		ck_assert_int_eq(closed, 1);
		T.ch = NULL;
	}
	run_for(3);
	ck_assert_int_eq(blkdev_close(T.bd), 0);
	ev_loop_free(T.loop);
	if (T.c->blkdev)
		unlink(T.backing);	/* the loop device detaches itself */
	else if (T.c->kind != K_MEM)
		unlink(T.path);
}

/* Run the loop until nothing is pending. */
static void wait_all(void)
{
	uint64_t end = now_ns() + TIME_BOUND_NS;

	while (T.pending) {
		ck_assert_msg(now_ns() < end, "timed out with %u pending", T.pending);
		ck_assert_int_ge(ev_run_once(T.loop, 100), 0);
	}
}

/* Submit, retrying on backpressure; returns the final refusal or 0. */
static int submit(enum bio_op op, uint32_t flags, const struct iovec *iov, int iovcnt,
		  uint64_t off, uint64_t len, struct op *o)
{
	uint64_t end = now_ns() + TIME_BOUND_NS;
	int rc;

	for (;;) {
		T.in_submit = true;
		rc = blk_rw(T.ch, op, flags, iov, iovcnt, off, len, op_end, o);
		T.in_submit = false;
		if (rc != -EAGAIN && rc != -ENOMEM)
			break;
		ck_assert_msg(now_ns() < end, "backpressure never cleared");
		ck_assert_int_ge(ev_run_once(T.loop, 10), 0);
	}
	if (!rc)
		T.pending++;
	return rc;
}

/* Submit one I/O and wait for it; returns its status. */
static int do_io(enum bio_op op, uint32_t flags, const struct iovec *iov, int iovcnt,
		 uint64_t off, uint64_t len)
{
	struct op o = { 0 };

	ck_assert_int_eq(submit(op, flags, iov, iovcnt, off, len, &o), 0);
	wait_all();
	ck_assert_int_eq(o.ends, 1);
	return o.status;
}

static int do_buf(enum bio_op op, uint32_t flags, void *buf, uint64_t off, uint64_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };

	return do_io(op, flags, &iov, buf ? 1 : 0, off, len);
}

/* ---------------------------------------------------------------- data */

static uint8_t pat(uint64_t x, unsigned seed)
{
	uint64_t blk = x >> 9;

	return (uint8_t)(blk * 2654435761u + seed * 40503u + (x & 511) * 7 + (x >> 20));
}

static void fill(uint8_t *buf, uint64_t off, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = pat(off + i, seed);
}

static void verify(const uint8_t *buf, uint64_t off, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != pat(off + i, seed))
			ck_abort_msg("mismatch at device byte %llu: got %#x want %#x",
				     (unsigned long long)(off + i), buf[i], pat(off + i, seed));
}

static void verify_zero(const uint8_t *buf, uint64_t off, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i])
			ck_abort_msg("byte %llu not zero: %#x", (unsigned long long)(off + i), buf[i]);
}

/* Write len bytes of pattern at off from an aligned buffer, then read them
 * back into memory that is not aligned at all. */
static void rw_check(uint64_t off, uint64_t len, unsigned seed)
{
	uint8_t *w = aligned_alloc(4096, (len + 4095) / 4096 * 4096);
	uint8_t *r = malloc(len + 3);

	ck_assert_ptr_nonnull(w);
	ck_assert_ptr_nonnull(r);
	fill(w, off, len, seed);
	ck_assert_int_eq(do_buf(BIO_WRITE, 0, w, off, len), 0);
	memset(r, 0xee, len + 3);
	ck_assert_int_eq(do_buf(BIO_READ, 0, r + 3, off, len), 0);
	verify(r + 3, off, len, seed);
	free(w);
	free(r);
}

START_TEST(test_rw_odd)
{
	uint64_t bs, cases[][2] = {
		{ 1, 1 }, { 3, 1 }, { 7, 3 }, { 17, 8 }, { 9, 129 }, { 0, 2048 + 1 },
		{ 4095, 2048 + 9 }, { 12001, 7 },
	};
	uint8_t *r;

	setup_i(_i);
	bs = T.bd->block_size;
	/* never written: zeros */
	r = malloc(1 << 20);
	ck_assert_int_eq(do_buf(BIO_READ, 0, r, 5 * bs, 1 << 20), 0);
	verify_zero(r, 5 * bs, 1 << 20);
	free(r);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		/* offsets and lengths in 512-byte units, scaled to the block */
		uint64_t off = cases[i][0] * bs, len = cases[i][1] * bs;

		if (len > (2u << 20))
			len = (1u << 20) + 5 * bs;	/* 1 MiB+ */
		rw_check(off, len, (unsigned)i + 1);
	}
	/* the last block of the device */
	rw_check(DEV_SIZE - bs, bs, 99);
	/* neighbours of an earlier write survive a later one */
	rw_check(100 * bs, bs, 5);
	rw_check(101 * bs, bs, 6);
	{
		uint8_t *b = malloc(2 * bs);

		ck_assert_int_eq(do_buf(BIO_READ, 0, b, 100 * bs, 2 * bs), 0);
		verify(b, 100 * bs, bs, 5);
		verify(b + bs, 101 * bs, bs, 6);
		free(b);
	}
	teardown_i();
}
END_TEST

enum shape {
	SH_SMALL,	/* 512-byte pieces, each 1 byte past a 512 boundary */
	SH_ALIGNED,	/* 512..1536-byte pieces at 4 KiB-aligned addresses, with gaps */
	SH_ODD,		/* random odd byte lengths, 1..3 bytes apart */
	SH_HUGE,	/* 61-byte pieces: more than IOV_MAX of them */
	SH_UNALIGNED,	/* 4 KiB pieces, back to back, from an odd address */
};

/* Cut len bytes into pieces laid out in *mem (to free) as the shape says. */
static struct iovec *make_iov(enum shape sh, uint64_t len, unsigned seed, uint8_t **mem, int *cnt)
{
	size_t cap = 4 * len + 8192, pos = 1;
	struct iovec *iov = calloc(len + 1, sizeof(*iov));
	uint64_t left = len;
	int n = 0;

	srand(seed);
	*mem = aligned_alloc(4096, cap);
	ck_assert_ptr_nonnull(iov);
	ck_assert_ptr_nonnull(*mem);
	while (left) {
		size_t piece, gap = 0;

		switch (sh) {
		case SH_SMALL:
			piece = 512;
			pos = (pos + 511) / 512 * 512 + 1;
			break;
		case SH_ALIGNED:
			piece = 512 * (1 + (size_t)n % 3);
			pos = (pos + 4095) / 4096 * 4096;
			break;
		case SH_HUGE:
			piece = 61;
			gap = 1;
			break;
		case SH_UNALIGNED:
			piece = 4096;
			break;
		default:
			piece = 1 + 2 * ((size_t)rand() % 750);
			gap = 1 + (size_t)n % 3;
			break;
		}
		piece = MIN(piece, (size_t)left);
		iov[n].iov_base = *mem + pos;
		iov[n].iov_len = piece;
		pos += piece + gap;
		left -= piece;
		n++;
		ck_assert_uint_le(pos, cap);
	}
	*cnt = n;
	return iov;
}

START_TEST(test_iov_shapes)
{
	static const struct { enum shape w, r; uint64_t blocks512; } cases[] = {
		{ SH_SMALL, SH_ODD, 256 },		/* 128 KiB in 512-byte pieces */
		{ SH_ODD, SH_SMALL, 72 },
		{ SH_ODD, SH_ODD, 8 },
		{ SH_HUGE, SH_ODD, 200 },		/* > IOV_MAX pieces */
		{ SH_UNALIGNED, SH_HUGE, 64 },
		{ SH_ODD, SH_UNALIGNED, 2048 },	/* 1 MiB */
		{ SH_ALIGNED, SH_ALIGNED, 96 },	/* many pieces O_DIRECT takes as they are */
		{ SH_ALIGNED, SH_SMALL, 130 },
	};
	uint64_t bs;

	setup_i(_i);
	bs = T.bd->block_size;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint64_t len = (cases[i].blocks512 * 512 + bs - 1) / bs * bs;
		uint64_t off = (3 + 11 * i) * bs;
		struct iovec *wi, *ri;
		uint8_t *wm, *rm, *flat = malloc(len);
		int wn, rn;

		wi = make_iov(cases[i].w, len, 10 + (unsigned)i, &wm, &wn);
		ri = make_iov(cases[i].r, len, 20 + (unsigned)i, &rm, &rn);
		ck_assert_uint_eq(iov_total(wi, wn), len);
		ck_assert_uint_eq(iov_total(ri, rn), len);
		if (cases[i].w == SH_HUGE)
			ck_assert_int_gt(wn, IOV_MAX);
		fill(flat, off, len, 7 + (unsigned)i);
		buf_to_iov(wi, wn, 0, flat, len);
		ck_assert_int_eq(do_io(BIO_WRITE, 0, wi, wn, off, len), 0);
		memset(flat, 0, len);
		ck_assert_int_eq(do_io(BIO_READ, 0, ri, rn, off, len), 0);
		iov_to_buf(ri, rn, 0, flat, len);
		verify(flat, off, len, 7 + (unsigned)i);
		free(wi);
		free(ri);
		free(wm);
		free(rm);
		free(flat);
	}
	teardown_i();
}
END_TEST

START_TEST(test_fua_flush)
{
	uint64_t bs, len = 64 * 1024;
	uint8_t *w = malloc(len + 1), *r = malloc(len);

	setup_i(_i);
	bs = T.bd->block_size;
	fill(w + 1, 7 * bs, len, 3);
	ck_assert_int_eq(do_buf(BIO_WRITE, BIO_FUA, w + 1, 7 * bs, len), 0);
	ck_assert_int_eq(do_buf(BIO_READ, 0, r, 7 * bs, len), 0);
	verify(r, 7 * bs, len, 3);
	ck_assert_int_eq(do_buf(BIO_FLUSH, 0, NULL, 0, 0), 0);
	/* flush among writes in flight */
	{
		struct op ops[9] = { { 0 } };

		for (int i = 0; i < 8; i++) {
			struct iovec v = { w + 1, bs };

			ck_assert_int_eq(submit(BIO_WRITE, 0, &v, 1, (200 + (uint64_t)i) * bs, bs, &ops[i]), 0);
		}
		ck_assert_int_eq(submit(BIO_FLUSH, 0, NULL, 0, 0, 0, &ops[8]), 0);
		wait_all();
		for (int i = 0; i < 9; i++) {
			ck_assert_int_eq(ops[i].ends, 1);
			ck_assert_int_eq(ops[i].status, 0);
		}
	}
	free(w);
	free(r);
	teardown_i();
}
END_TEST

/* Write a pattern, zero a range with op/flags, check zeros inside and the
 * pattern around it. */
static void zero_check(enum bio_op op, uint32_t flags, uint64_t off, uint64_t len, unsigned seed)
{
	uint64_t bs = T.bd->block_size, lo = off - 2 * bs, all = len + 4 * bs;
	uint8_t *b = malloc(all);

	fill(b, lo, all, seed);
	ck_assert_int_eq(do_buf(BIO_WRITE, 0, b, lo, all), 0);
	ck_assert_int_eq(do_buf(op, flags, NULL, off, len), 0);
	memset(b, 0xa5, all);
	ck_assert_int_eq(do_buf(BIO_READ, 0, b, lo, all), 0);
	verify(b, lo, 2 * bs, seed);
	verify_zero(b + 2 * bs, off, len);
	verify(b + 2 * bs + len, off + len, 2 * bs, seed);
	free(b);
}

START_TEST(test_discard)
{
	uint64_t bs;

	setup_i(_i);
	bs = T.bd->block_size;
	ck_assert(blkdev_supports(T.bd, BIO_DISCARD));
	zero_check(BIO_DISCARD, 0, 64 * 1024, 256 * 1024, 1);	/* whole pages */
	zero_check(BIO_DISCARD, 0, 1001 * bs, 3 * bs, 2);	/* odd, small */
	teardown_i();
}
END_TEST

START_TEST(test_write_zeroes)
{
	uint64_t bs;

	setup_i(_i);
	bs = T.bd->block_size;
	ck_assert(blkdev_supports(T.bd, BIO_WRITE_ZEROES));
	zero_check(BIO_WRITE_ZEROES, 0, 3 * bs, 37 * bs, 1);
	zero_check(BIO_WRITE_ZEROES, BIO_NOUNMAP, 4001 * bs, 37 * bs, 2);
	zero_check(BIO_WRITE_ZEROES, 0, 1 << 20, 1 << 20, 3);
	zero_check(BIO_WRITE_ZEROES, BIO_NOUNMAP, 3 << 20, 1 << 20, 4);
	zero_check(BIO_WRITE_ZEROES, BIO_FUA, 6 << 20, 128 * bs, 5);
	teardown_i();
}
END_TEST

START_TEST(test_refused)
{
	uint64_t bs, sz;
	struct op o = { 0 };
	uint8_t *b;
	struct iovec v;

	setup_i(_i);
	bs = T.bd->block_size;
	sz = T.bd->size;
	b = malloc(4 * bs);
	v.iov_base = b;
	v.iov_len = bs;
	ck_assert_int_eq(submit(BIO_READ, 0, &v, 1, sz, bs, &o), -ERANGE);
	ck_assert_int_eq(submit(BIO_WRITE, 0, &v, 1, sz, bs, &o), -ERANGE);
	v.iov_len = 2 * bs;
	ck_assert_int_eq(submit(BIO_WRITE, 0, &v, 1, sz - bs, 2 * bs, &o), -ERANGE);
	ck_assert_int_eq(submit(BIO_DISCARD, 0, NULL, 0, sz - bs, 2 * bs, &o), -ERANGE);
	ck_assert_int_eq(submit(BIO_WRITE_ZEROES, 0, NULL, 0, UINT64_MAX - bs + 1, bs, &o), -ERANGE);
	v.iov_len = bs;
	ck_assert_int_eq(submit(BIO_READ, 0, &v, 1, 1, bs, &o), -EINVAL);
	ck_assert_int_eq(submit(BIO_WRITE, 0, &v, 1, bs / 2, bs, &o), -EINVAL);
	v.iov_len = bs + 1;
	ck_assert_int_eq(submit(BIO_WRITE, 0, &v, 1, 0, bs + 1, &o), -EINVAL);
	v.iov_len = bs - 1;	/* iovec shorter than len */
	ck_assert_int_eq(submit(BIO_WRITE, 0, &v, 1, 0, bs, &o), -EINVAL);
	ck_assert_int_eq(submit(BIO_DISCARD, 0, NULL, 0, bs, 0, &o), -EINVAL);
	ck_assert_int_eq(submit(BIO_OP_MAX, 0, NULL, 0, 0, bs, &o), -EINVAL);
	for (int i = 0; i < 5; i++)
		ck_assert_int_ge(ev_run_once(T.loop, 1), 0);
	ck_assert_int_eq(o.ends, 0);
	ck_assert_uint_eq(T.pending, 0);
	free(b);
	teardown_i();
}
END_TEST

#define NRAND	512

START_TEST(test_many_inflight)
{
	static struct op ops[NRAND];
	uint64_t *offs = calloc(NRAND, sizeof(*offs));
	uint8_t *w = malloc((size_t)NRAND * 4096), *r = malloc((size_t)NRAND * 4096);
	unsigned nslots = (unsigned)(DEV_SIZE / 8192);
	uint8_t *used = calloc(nslots, 1);

	setup_i(_i);
	srand(42 + (unsigned)_i);
	for (int i = 0; i < NRAND; i++) {
		unsigned s;

		do
			s = (unsigned)rand() % nslots;
		while (used[s]);
		used[s] = 1;
		/* distinct 8 KiB slots; 512-byte devices get offsets not 4K-aligned */
		offs[i] = (uint64_t)s * 8192 + (T.bd->block_size == 512 ? 512 * (s % 7) : 0);
		fill(w + (size_t)i * 4096, offs[i], 4096, 1000 + (unsigned)i);
	}
	memset(ops, 0, sizeof(ops));
	for (int i = 0; i < NRAND; i++) {
		struct iovec v = { w + (size_t)i * 4096, 4096 };

		ck_assert_int_eq(submit(BIO_WRITE, 0, &v, 1, offs[i], 4096, &ops[i]), 0);
	}
	ck_assert_uint_gt(T.pending, 0);	/* many really were in flight */
	wait_all();
	for (int i = 0; i < NRAND; i++) {
		ck_assert_int_eq(ops[i].ends, 1);
		ck_assert_int_eq(ops[i].status, 0);
	}
	memset(ops, 0, sizeof(ops));
	for (int i = NRAND - 1; i >= 0; i--) {
		struct iovec v = { r + (size_t)i * 4096, 4096 };

		ck_assert_int_eq(submit(BIO_READ, 0, &v, 1, offs[i], 4096, &ops[i]), 0);
	}
	wait_all();
	for (int i = 0; i < NRAND; i++) {
		ck_assert_int_eq(ops[i].ends, 1);
		ck_assert_int_eq(ops[i].status, 0);
		verify(r + (size_t)i * 4096, offs[i], 4096, 1000 + (unsigned)i);
	}
	free(offs);
	free(used);
	free(w);
	free(r);
	teardown_i();
}
END_TEST

#define NCLOSE	256

static struct op close_ops[NCLOSE];
static int closed_count;

static void close_done(void *arg)
{
	closed_count++;
	/* every I/O ended before the channel went away */
	ck_assert_uint_eq(T.pending, 0);
	for (int i = 0; i < NCLOSE; i++)
		ck_assert_int_eq(close_ops[i].ends, 1);
}

START_TEST(test_close_inflight)
{
	uint8_t *buf = malloc((size_t)NCLOSE * 4096 + 1);
	uint64_t end;

	memset(close_ops, 0, sizeof(close_ops));	/* also when CK_FORK=no */
	closed_count = 0;
	setup_i(_i);
	for (int i = 0; i < NCLOSE; i++) {
		struct iovec v = { buf + 1 + (size_t)i * 4096, 4096 };	/* misaligned: bounced */
		uint64_t off = (uint64_t)i * 12288;

		if (i % 64 == 63)
			ck_assert_int_eq(submit(BIO_FLUSH, 0, NULL, 0, 0, 0, &close_ops[i]), 0);
		else if (i % 32 == 5)
			ck_assert_int_eq(submit(BIO_WRITE_ZEROES, 0, NULL, 0, off, 8192, &close_ops[i]), 0);
		else
			ck_assert_int_eq(submit(i % 3 ? BIO_WRITE : BIO_READ, 0, &v, 1, off, 4096,
						&close_ops[i]), 0);
	}
	ck_assert_uint_gt(T.pending, 0);
	blk_chan_close(T.ch, close_done, NULL);
	T.ch = NULL;
	end = now_ns() + TIME_BOUND_NS;
	while (!closed_count && now_ns() < end)
		ck_assert_int_ge(ev_run_once(T.loop, 50), 0);
	ck_assert_int_eq(closed_count, 1);
	run_for(5);
	ck_assert_int_eq(closed_count, 1);
	for (int i = 0; i < NCLOSE; i++)
		ck_assert_int_eq(close_ops[i].ends, 1);
	free(buf);
	teardown_i();
}
END_TEST

START_TEST(test_submit_after_close_started)
{
	uint8_t *buf = malloc(4096);
	struct op a = { 0 }, b = { 0 };
	struct iovec v = { buf, 4096 };
	int closed = 0;
	uint64_t end = now_ns() + TIME_BOUND_NS;

	setup_i(_i);
	ck_assert_int_eq(submit(BIO_READ, 0, &v, 1, 0, 4096, &a), 0);
	blk_chan_close(T.ch, closed_cb, &closed);
	ck_assert_int_eq(closed, 0);	/* one still in flight */
	T.in_submit = true;
	ck_assert_int_eq(blk_rw(T.ch, BIO_READ, 0, &v, 1, 0, 4096, op_end, &b), -ESHUTDOWN);
	T.in_submit = false;
	ck_assert_int_eq(blkdev_close(T.bd), -EBUSY);
	while (!closed && now_ns() < end)
		ck_assert_int_ge(ev_run_once(T.loop, 50), 0);
	T.ch = NULL;
	ck_assert_int_eq(closed, 1);
	ck_assert_int_eq(a.ends, 1);
	ck_assert_int_eq(b.ends, 0);
	free(buf);
	teardown_i();
}
END_TEST

START_TEST(test_readonly)
{
	const struct cfg *c = &cfgs[_i];
	uint64_t bs = c->bs;
	uint8_t *b = malloc(8 * bs);
	struct blkdev *ro;
	struct ev_loop *loop;
	struct blkchan *ch;

	setup_i(_i);
	fill(b, 16 * bs, 8 * bs, 77);
	ck_assert_int_eq(do_buf(BIO_WRITE, 0, b, 16 * bs, 8 * bs), 0);
	ck_assert_int_eq(do_buf(BIO_FLUSH, 0, NULL, 0, 0), 0);
	if (c->kind == K_MEM) {
		ro = T.bd;
		T.bd->readonly = true;
	} else {
		if (c->blkdev) {	/* a second writable opener is refused */
			struct blkdev *again;

			ck_assert_int_eq(dev_open(c, T.path, false, &again), -EBUSY);
		}
		ck_assert_int_eq(dev_open(c, T.path, true, &ro), 0);
		ck_assert(ro->readonly);
		ck_assert_uint_eq(ro->size, DEV_SIZE);
	}
	ck_assert_int_eq(ev_loop_new(c->loop, 64, &loop), 0);
	ck_assert_int_eq(blk_chan_open(ro, loop, &ch), 0);
	{
		struct iovec v = { b, 8 * bs };
		struct op o = { 0 };

		ck_assert_int_eq(blk_rw(ch, BIO_WRITE, 0, &v, 1, 16 * bs, 8 * bs, op_end, &o), -EROFS);
		ck_assert_int_eq(blk_rw(ch, BIO_WRITE_ZEROES, 0, NULL, 0, 0, bs, op_end, &o), -EROFS);
		ck_assert_int_eq(blk_rw(ch, BIO_DISCARD, 0, NULL, 0, 0, bs, op_end, &o), -EROFS);
		ck_assert_int_eq(o.ends, 0);
	}
	{
		int closed = 0;

		blk_chan_close(ch, closed_cb, &closed);
		ck_assert_int_eq(closed, 1);
		ev_loop_free(loop);
	}
	/* reads still work, and see the data */
	memset(b, 0, 8 * bs);
	ck_assert_int_eq(blk_sync_io(ro, BIO_READ, 0, 16 * bs, b, 8 * bs), 0);
	verify(b, 16 * bs, 8 * bs, 77);
	ck_assert_int_eq(blk_sync_io(ro, BIO_WRITE, 0, 16 * bs, b, 8 * bs), -EROFS);
	if (c->kind == K_MEM)
		T.bd->readonly = false;
	else
		ck_assert_int_eq(blkdev_close(ro), 0);
	free(b);
	teardown_i();
}
END_TEST

START_TEST(test_sync_io)
{
	uint64_t bs;
	uint8_t *w, *r;

	setup_i(_i);
	bs = T.bd->block_size;
	w = malloc(300 * bs + 1);
	r = malloc(300 * bs);
	fill(w + 1, 33 * bs, 300 * bs, 9);
	ck_assert_int_eq(blk_sync_io(T.bd, BIO_WRITE, BIO_FUA, 33 * bs, w + 1, 300 * bs), 0);
	ck_assert_int_eq(blk_sync_io(T.bd, BIO_FLUSH, 0, 0, NULL, 0), 0);
	ck_assert_int_eq(blk_sync_io(T.bd, BIO_READ, 0, 33 * bs, r, 300 * bs), 0);
	verify(r, 33 * bs, 300 * bs, 9);
	ck_assert_int_eq(blk_sync_io(T.bd, BIO_WRITE_ZEROES, 0, 34 * bs, NULL, 2 * bs), 0);
	ck_assert_int_eq(blk_sync_io(T.bd, BIO_READ, 0, 33 * bs, r, 4 * bs), 0);
	verify(r, 33 * bs, bs, 9);
	verify_zero(r + bs, 34 * bs, 2 * bs);
	verify(r + 3 * bs, 36 * bs, bs, 9);
	ck_assert_int_eq(blk_sync_io(T.bd, BIO_READ, 0, T.bd->size, r, bs), -ERANGE);
	/* the async channel sees what the sync calls wrote */
	ck_assert_int_eq(do_buf(BIO_READ, 0, r, 36 * bs, 10 * bs), 0);
	verify(r, 36 * bs, 10 * bs, 9);
	free(w);
	free(r);
	teardown_i();
}
END_TEST

/*
 * The file shrinks under the device: a read across the new end is short,
 * the backend asks for the rest, gets nothing, and ends the bio with -EIO
 * (once, not a hang, not garbage). Exercises the short-transfer cursor,
 * also inside a scatter list.
 */
START_TEST(test_short_read)
{
	uint64_t bs, end, len;
	struct iovec *iov;
	uint8_t *mem, *b;
	int n;

	setup_i(_i);
	bs = T.bd->block_size;
	end = T.bd->size;
	len = 16 * bs;
	b = malloc(len);
	fill(b, end - len, len, 4);
	ck_assert_int_eq(do_buf(BIO_WRITE, 0, b, end - len, len), 0);
	ck_assert_int_eq(do_buf(BIO_FLUSH, 0, NULL, 0, 0), 0);
	ck_assert_int_eq(truncate(T.path, (off_t)(end - 5 * bs)), 0);
	/* across the new end, one buffer */
	memset(b, 0, len);
	ck_assert_int_eq(do_buf(BIO_READ, 0, b, end - len, len), -EIO);
	/* across the new end, a scatter list O_DIRECT takes as it is */
	iov = make_iov(SH_ALIGNED, len, 1, &mem, &n);
	ck_assert_int_gt(n, 4);
	ck_assert_int_eq(do_io(BIO_READ, 0, iov, n, end - len, len), -EIO);
	/* entirely past it */
	ck_assert_int_eq(do_buf(BIO_READ, 0, b, end - 2 * bs, 2 * bs), -EIO);
	/* before it: fine */
	ck_assert_int_eq(do_buf(BIO_READ, 0, b, end - len, len - 5 * bs), 0);
	verify(b, end - len, len - 5 * bs, 4);
	free(iov);
	free(mem);
	free(b);
	teardown_i();
}
END_TEST

/*
 * Two reactor threads, each with its own loop and channel on the one
 * device, writing and reading back disjoint ranges at the same time: the
 * worker pool and the completion queues must route every bio back to its
 * own channel. Threads only count; the main thread asserts.
 */
struct thr {
	pthread_t	tid;
	int		idx;
	enum ev_backend	loop_kind;
	struct blkdev	*bd;
	int		errors;		/* setup failures, bad statuses, bad data */
	unsigned	ended, wrong_thread;
};

struct thr_io {
	struct thr	*t;
	pthread_t	tid;
	int		status;
	bool		ended;
};

#define THR_IOS	128

static void thr_end(struct bio *bio, int status)
{
	struct thr_io *io = bio->end_arg;

	if (!pthread_equal(pthread_self(), io->tid))
		io->t->wrong_thread++;
	io->status = status;
	io->ended = true;
	io->t->ended++;
}

static bool thr_run(struct thr *t, struct ev_loop *loop, struct blkchan *ch, enum bio_op op,
		    uint8_t *buf, struct thr_io *ios)
{
	uint64_t end = now_ns() + TIME_BOUND_NS;
	int next = 0;

	t->ended = 0;
	while (t->ended < THR_IOS && now_ns() < end) {
		while (next < THR_IOS) {
			struct iovec v = { buf + (size_t)next * 4096 + 1, 4096 };
			uint64_t off = ((uint64_t)next * 2 + (uint64_t)t->idx) * 4096;
			int rc;

			ios[next] = (struct thr_io){ .t = t, .tid = pthread_self() };
			rc = blk_rw(ch, op, 0, &v, 1, off, 4096, thr_end, &ios[next]);
			if (rc == -EAGAIN || rc == -ENOMEM)
				break;
			if (rc)
				return false;
			next++;
		}
		if (ev_run_once(loop, 10) < 0)
			return false;
	}
	for (int i = 0; i < THR_IOS; i++)
		if (!ios[i].ended || ios[i].status)
			return false;
	return true;
}

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	struct ev_loop *loop;
	struct blkchan *ch;
	uint8_t *buf = malloc((size_t)THR_IOS * 4096 + 1);
	struct thr_io *ios = calloc(THR_IOS, sizeof(*ios));
	int closed = 0;

	if (ev_loop_new(t->loop_kind, 64, &loop)) {
		t->errors++;
		goto out;
	}
	if (blk_chan_open(t->bd, loop, &ch)) {
		t->errors++;
		goto free_loop;
	}
	for (int i = 0; i < THR_IOS; i++)
		fill(buf + (size_t)i * 4096 + 1, ((uint64_t)i * 2 + (uint64_t)t->idx) * 4096, 4096, 50);
	if (!thr_run(t, loop, ch, BIO_WRITE, buf, ios))
		t->errors++;
	memset(buf, 0, (size_t)THR_IOS * 4096 + 1);
	if (!thr_run(t, loop, ch, BIO_READ, buf, ios))
		t->errors++;
	for (int i = 0; i < THR_IOS; i++) {
		uint64_t off = ((uint64_t)i * 2 + (uint64_t)t->idx) * 4096;

		for (size_t k = 0; k < 4096; k++)
			if (buf[(size_t)i * 4096 + 1 + k] != pat(off + k, 50)) {
				t->errors++;
				break;
			}
	}
	blk_chan_close(ch, closed_cb, &closed);
	for (uint64_t end = now_ns() + TIME_BOUND_NS; !closed && now_ns() < end; )
		ev_run_once(loop, 10);
	if (!closed)
		t->errors++;
free_loop:
	ev_loop_free(loop);
out:
	free(ios);
	free(buf);
	return NULL;
}

START_TEST(test_two_threads)
{
	struct thr t[2];

	setup_i(_i);
	for (int i = 0; i < 2; i++) {
		t[i] = (struct thr){ .idx = i, .loop_kind = T.c->loop, .bd = T.bd };
		ck_assert_int_eq(pthread_create(&t[i].tid, NULL, thr_main, &t[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(pthread_join(t[i].tid, NULL), 0);
		ck_assert_int_eq(t[i].errors, 0);
		ck_assert_uint_eq(t[i].wrong_thread, 0);
	}
	teardown_i();
}
END_TEST

/* ---------------------------------------------------------------- not looped */

START_TEST(test_uring_on_epoll)
{
	struct blk_file_opts o = { .backend = BLK_FILE_URING, .create_size = 1 << 20 };
	char path[PATH_MAX];
	struct ev_loop *loop;
	struct blkdev *bd;
	struct blkchan *ch = NULL;

	snprintf(path, sizeof(path), "%s/uring-epoll-%d", tmpdir, (int)getpid());
	ck_assert_int_eq(blk_file_open("u", path, &o, &bd), 0);
	ck_assert_str_eq(bd->ops->name, "uring");
	ck_assert_int_eq(ev_loop_new(EV_EPOLL, 0, &loop), 0);
	ck_assert_int_eq(blk_chan_open(bd, loop, &ch), -ENOTSUP);
	ck_assert_uint_eq(bd->nchans, 0);
	ev_loop_free(loop);
	ck_assert_int_eq(blkdev_close(bd), 0);
	unlink(path);
}
END_TEST

START_TEST(test_open_errors)
{
	struct blk_file_opts o = { .backend = BLK_FILE_PSYNC, .block_size = 4096 };
	char path[PATH_MAX];
	struct blkdev *bd = NULL;
	int fd;

	snprintf(path, sizeof(path), "%s/odd-%d", tmpdir, (int)getpid());
	/* a size that is not a multiple of the block size */
	fd = open(path, O_CREAT | O_RDWR, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 4096 * 3 + 512), 0);
	close(fd);
	ck_assert_int_eq(blk_file_open("odd", path, &o, &bd), -EINVAL);
	o.block_size = 512;
	ck_assert_int_eq(blk_file_open("odd", path, &o, &bd), 0);
	ck_assert_uint_eq(bd->size, 4096 * 3 + 512);
	ck_assert_int_eq(blkdev_close(bd), 0);
	unlink(path);
	/* create_size not a multiple: refused, nothing left behind */
	o.block_size = 4096;
	o.create_size = 10000;
	ck_assert_int_eq(blk_file_open("odd", path, &o, &bd), -EINVAL);
	ck_assert_int_eq(access(path, F_OK), -1);
	/* bad block sizes */
	o.create_size = 1 << 20;
	o.block_size = 1000;
	ck_assert_int_eq(blk_file_open("odd", path, &o, &bd), -EINVAL);
	o.block_size = 256;
	ck_assert_int_eq(blk_file_open("odd", path, &o, &bd), -EINVAL);
	/* missing file without create_size */
	o.block_size = 0;
	o.create_size = 0;
	ck_assert_int_eq(blk_file_open("odd", "/nonexistent/sand/x", &o, &bd), -ENOENT);
	/* not a file or block device */
	o.readonly = true;
	ck_assert_int_eq(blk_file_open("odd", tmpdir, &o, &bd), -EINVAL);
	o.readonly = false;
	/* names */
	{
		enum blk_file_backend b;

		ck_assert_int_eq(blk_file_backend_parse("uring", &b), 0);
		ck_assert_int_eq(b, BLK_FILE_URING);
		ck_assert_int_eq(blk_file_backend_parse("aio", &b), 0);
		ck_assert_int_eq(b, BLK_FILE_AIO);
		ck_assert_int_eq(blk_file_backend_parse("psync", &b), 0);
		ck_assert_int_eq(b, BLK_FILE_PSYNC);
		ck_assert_int_eq(blk_file_backend_parse("auto", &b), 0);
		ck_assert_int_eq(b, BLK_FILE_AUTO);
		ck_assert_int_eq(blk_file_backend_parse("floppy", &b), -EINVAL);
		for (b = BLK_FILE_AUTO; b <= BLK_FILE_PSYNC; b++) {
			enum blk_file_backend back;

			ck_assert_int_eq(blk_file_backend_parse(blk_file_backend_name(b), &back), 0);
			ck_assert_int_eq(back, b);
		}
	}
	/* auto picks uring here (io_uring works on this kernel) */
	o.backend = BLK_FILE_AUTO;
	o.create_size = 1 << 20;
	ck_assert_int_eq(blk_file_open("auto", path, &o, &bd), 0);
	ck_assert_str_eq(bd->ops->name, "uring");
	ck_assert_int_eq(blkdev_close(bd), 0);
	unlink(path);
}
END_TEST

/* Buffered files (no_direct) and tmpfs, where O_DIRECT and fallocate modes
 * may be refused: the same data must come back, and zeroes must read as
 * zeros. Looped over the three file backends. */
START_TEST(test_buffered_and_tmpfs)
{
	static const enum blk_file_backend bk[] = { BLK_FILE_URING, BLK_FILE_AIO, BLK_FILE_PSYNC };
	const char *dirs[2] = { tmpdir, "/dev/shm" };
	struct statfs sfs;

	for (int d = 0; d < 2; d++) {
		struct blk_file_opts o = {
			.backend = bk[_i], .create_size = 8 << 20, .no_direct = d == 0,
		};

		if (d == 1 && (statfs(dirs[d], &sfs) || sfs.f_type != TMPFS_MAGIC)) {
			fprintf(stderr, "no tmpfs at /dev/shm: tmpfs case not run\n");
			continue;
		}
		memset(&T, 0, sizeof(T));
		T.c = &cfgs[_i == 0 ? 4 : _i == 1 ? 6 : 10];
		snprintf(T.path, sizeof(T.path), "%s/sand-buf-%d", dirs[d], (int)getpid());
		ck_assert_int_eq(ev_loop_new(EV_URING, 64, &T.loop), 0);
		ck_assert_int_eq(blk_file_open("b", T.path, &o, &T.bd), 0);
		if (d == 0)
			ck_assert(!T.bd->direct);
		ck_assert_int_eq(blk_chan_open(T.bd, T.loop, &T.ch), 0);
		rw_check(512, 3 * 512, 1);
		rw_check(1 << 20, (1 << 20) + 512, 2);
		zero_check(BIO_WRITE_ZEROES, BIO_NOUNMAP, 5 << 20, 9 * 512, 3);
		zero_check(BIO_WRITE_ZEROES, 0, 6 << 20, 64 * 1024, 4);
		zero_check(BIO_DISCARD, 0, 7 << 20, 64 * 1024, 5);
		/* a second round after any fallback was remembered */
		zero_check(BIO_WRITE_ZEROES, BIO_NOUNMAP, 5 << 20, 9 * 512, 6);
		teardown_i();
		unlink(T.path);
	}
}
END_TEST

/*
 * On tmpfs, uring reads and writes of up to 64 KiB and flushes are done at
 * once on the loop's thread (io_uring would hand each to an io-wq worker):
 * no SQE is taken for them, larger ones still go to the ring, and every
 * bio still ends after its submit returned, with the right data.
 */
START_TEST(test_tmpfs_inline)
{
	uint8_t *w = aligned_alloc(4096, 1 << 20), *r = aligned_alloc(4096, 1 << 20);
	static struct op ops[64];
	struct op big = { 0 };
	struct iovec v;

	setup_i(_i);
	memset(ops, 0, sizeof(ops));
	for (int i = 0; i < 64; i++) {
		uint64_t off = (uint64_t)i * 16384 + (T.bd->block_size == 512 ? 512 : 0);

		fill(w + (size_t)i * 4096, off, 4096, 77 + (unsigned)i);
		v = (struct iovec){ w + (size_t)i * 4096, 4096 };
		ck_assert_int_eq(submit(BIO_WRITE, i % 4 ? 0 : BIO_FUA, &v, 1, off, 4096, &ops[i]), 0);
		ck_assert_uint_eq(ev_inflight(T.loop), 0);	/* not on the ring */
	}
	ck_assert_uint_eq(T.pending, 64);	/* and none ended inside submit */
	wait_all();
	ck_assert_int_eq(submit(BIO_FLUSH, 0, NULL, 0, 0, 0, &big), 0);
	ck_assert_uint_eq(ev_inflight(T.loop), 0);	/* flushes too */
	wait_all();
	ck_assert_int_eq(big.ends, 1);
	ck_assert_int_eq(big.status, 0);
	memset(ops, 0, sizeof(ops));
	for (int i = 0; i < 64; i++) {
		uint64_t off = (uint64_t)i * 16384 + (T.bd->block_size == 512 ? 512 : 0);

		v = (struct iovec){ r + (size_t)i * 4096, 4096 };
		ck_assert_int_eq(submit(BIO_READ, 0, &v, 1, off, 4096, &ops[i]), 0);
	}
	ck_assert_uint_eq(ev_inflight(T.loop), 0);
	wait_all();
	for (int i = 0; i < 64; i++) {
		uint64_t off = (uint64_t)i * 16384 + (T.bd->block_size == 512 ? 512 : 0);

		ck_assert_int_eq(ops[i].ends, 1);
		ck_assert_int_eq(ops[i].status, 0);
		verify(r + (size_t)i * 4096, off, 4096, 77 + (unsigned)i);
	}
	/* 64 KiB is the largest done inline; 1 MiB goes to the ring */
	fill(w, 2 << 20, 64 << 10, 5);
	v = (struct iovec){ w, 64 << 10 };
	ck_assert_int_eq(submit(BIO_WRITE, 0, &v, 1, 2 << 20, 64 << 10, &big), 0);
	ck_assert_uint_eq(ev_inflight(T.loop), 0);
	wait_all();
	ck_assert_int_eq(big.status, 0);
	fill(w, 4 << 20, 1 << 20, 6);
	v = (struct iovec){ w, 1 << 20 };
	big.ends = 0;
	ck_assert_int_eq(submit(BIO_WRITE, 0, &v, 1, 4 << 20, 1 << 20, &big), 0);
	ck_assert_uint_eq(ev_inflight(T.loop), 1);
	wait_all();
	ck_assert_int_eq(big.ends, 1);
	ck_assert_int_eq(big.status, 0);
	ck_assert_int_eq(do_buf(BIO_READ, 0, r, 4 << 20, 1 << 20), 0);
	verify(r, 4 << 20, 1 << 20, 6);
	ck_assert_int_eq(do_buf(BIO_READ, 0, r, 2 << 20, 64 << 10), 0);
	verify(r, 2 << 20, 64 << 10, 5);
	/* past the end of a truncated file: an error, not a hang */
	ck_assert_int_eq(truncate(T.path, (off_t)(T.bd->size - 8192)), 0);
	ck_assert_int_eq(do_buf(BIO_READ, 0, r, T.bd->size - 4096, 4096), -EIO);
	free(w);
	free(r);
	teardown_i();
}
END_TEST

static bool shm_usable(void)
{
	struct statfs sfs;

	return statfs("/dev/shm", &sfs) == 0 && sfs.f_type == TMPFS_MAGIC &&
	       access("/dev/shm", W_OK) == 0;
}

static Suite *conformance_suite(void)
{
	Suite *s = suite_create("blkdev_conformance");
	TCase *tc = tcase_create("all_backends");
	TCase *one = tcase_create("file_open");

	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_rw_odd, 0, NCFG_FILE);
	tcase_add_loop_test(tc, test_iov_shapes, 0, NCFG_FILE);
	tcase_add_loop_test(tc, test_fua_flush, 0, NCFG_FILE);
	tcase_add_loop_test(tc, test_discard, 0, NCFG_FILE);
	tcase_add_loop_test(tc, test_write_zeroes, 0, NCFG_FILE);
	tcase_add_loop_test(tc, test_refused, 0, NCFG_FILE);
	tcase_add_loop_test(tc, test_many_inflight, 0, NCFG_FILE);
	tcase_add_loop_test(tc, test_close_inflight, 0, NCFG_FILE);
	tcase_add_loop_test(tc, test_submit_after_close_started, 0, NCFG_FILE);
	tcase_add_loop_test(tc, test_readonly, 0, NCFG_FILE);
	tcase_add_loop_test(tc, test_sync_io, 0, NCFG_FILE);
	tcase_add_loop_test(tc, test_short_read, 4, NCFG_FILE);	/* files only */
	tcase_add_loop_test(tc, test_two_threads, 0, NCFG_FILE);
	suite_add_tcase(s, tc);

	if (loop_usable()) {
		TCase *bdev = tcase_create("block_devices");

		tcase_set_timeout(bdev, 60);
		tcase_add_loop_test(bdev, test_rw_odd, NCFG_FILE, NCFG);
		tcase_add_loop_test(bdev, test_iov_shapes, NCFG_FILE, NCFG);
		tcase_add_loop_test(bdev, test_fua_flush, NCFG_FILE, NCFG);
		tcase_add_loop_test(bdev, test_discard, NCFG_FILE, NCFG);
		tcase_add_loop_test(bdev, test_write_zeroes, NCFG_FILE, NCFG);
		tcase_add_loop_test(bdev, test_refused, NCFG_FILE, NCFG);
		tcase_add_loop_test(bdev, test_many_inflight, NCFG_FILE, NCFG);
		tcase_add_loop_test(bdev, test_close_inflight, NCFG_FILE, NCFG);
		tcase_add_loop_test(bdev, test_readonly, NCFG_FILE, NCFG);
		tcase_add_loop_test(bdev, test_sync_io, NCFG_FILE, NCFG);
		suite_add_tcase(s, bdev);
	} else {
		fprintf(stderr, "not root or no /dev/loop-control: block-device cases not run\n");
	}

	if (shm_usable()) {
		TCase *shm = tcase_create("tmpfs");

		tcase_set_timeout(shm, 60);
		tcase_add_loop_test(shm, test_rw_odd, NCFG, NCFG_SHM);
		tcase_add_loop_test(shm, test_iov_shapes, NCFG, NCFG_SHM);
		tcase_add_loop_test(shm, test_fua_flush, NCFG, NCFG_SHM);
		tcase_add_loop_test(shm, test_discard, NCFG, NCFG_SHM);
		tcase_add_loop_test(shm, test_write_zeroes, NCFG, NCFG_SHM);
		tcase_add_loop_test(shm, test_refused, NCFG, NCFG_SHM);
		tcase_add_loop_test(shm, test_many_inflight, NCFG, NCFG_SHM);
		tcase_add_loop_test(shm, test_close_inflight, NCFG, NCFG_SHM);
		tcase_add_loop_test(shm, test_submit_after_close_started, NCFG, NCFG_SHM);
		tcase_add_loop_test(shm, test_readonly, NCFG, NCFG_SHM);
		tcase_add_loop_test(shm, test_sync_io, NCFG, NCFG_SHM);
		tcase_add_loop_test(shm, test_short_read, NCFG, NCFG_SHM);
		tcase_add_loop_test(shm, test_two_threads, NCFG, NCFG_SHM);
		tcase_add_loop_test(shm, test_tmpfs_inline, NCFG, NCFG_SHM);
		suite_add_tcase(s, shm);
	} else {
		fprintf(stderr, "no writable tmpfs at /dev/shm: tmpfs cases not run\n");
	}

	tcase_set_timeout(one, 60);
	tcase_add_test(one, test_uring_on_epoll);
	tcase_add_test(one, test_open_errors);
	tcase_add_loop_test(one, test_buffered_and_tmpfs, 0, 3);
	suite_add_tcase(s, one);
	return s;
}

/* A directory on a real file system (O_DIRECT, hole punching): not tmpfs. */
static int make_tmpdir(void)
{
	const char *bases[] = { getenv("SAND_TEST_TMPDIR"), "/var/tmp", "build", "." };
	struct statfs sfs;

	for (size_t i = 0; i < ARRAY_SIZE(bases); i++) {
		if (!bases[i] || statfs(bases[i], &sfs) || sfs.f_type == TMPFS_MAGIC)
			continue;
		snprintf(tmpdir, sizeof(tmpdir), "%s/sand-blkconf-XXXXXX", bases[i]);
		if (mkdtemp(tmpdir))
			return 0;
	}
	fprintf(stderr, "no directory on a non-tmpfs file system for test files\n");
	return -1;
}

/* Failed tests skip their teardown: sweep whatever they left. */
static void remove_tmpdir(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *de;

	while (d && (de = readdir(d))) {
		char p[PATH_MAX];

		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", tmpdir, de->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(tmpdir);
}

int main(void)
{
	SRunner *sr;
	int failed;

	if (make_tmpdir())
		return 1;
	sr = srunner_create(conformance_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	remove_tmpdir();
	return failed ? 1 : 0;
}
