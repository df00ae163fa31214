/* SPDX-License-Identifier: MIT */
/*
 * Mapped reads (blk_map_read, include/sand/blkdev.h):
 *  - a buffered file maps, with the bytes a bio reads; an O_DIRECT file on
 *    a disk file system does not (-EAGAIN), one on tmpfs does; devices
 *    without map_read say -EOPNOTSUPP; ranges past the end -EINVAL;
 *  - a one-member RAID 0 set (a one-disk pool) maps through to its member;
 *    other layouts do not;
 *  - a thin volume maps chunk by chunk (a map stops at the chunk's end),
 *    holes and chunks its cache does not know are -EAGAIN;
 *  - a thin map pins its chunk: a discard of it waits until blk_map_put;
 *  - a discard + reuse by another volume racing maps never shows the other
 *    volume's bytes through a map that was granted (the pool is full, so
 *    the freed chunk is the one the other volume gets).
 * The test reads mapped bytes itself to check them (no file is truncated
 * under a map it reads); the daemon never does (blkdev.h).
 * Mapped writes (file_map_write, io_uring backend on tmpfs):
 *  - a small write is a copy into the file's shared mapping (the write made
 *    the mapping), with the bytes pread sees;
 *  - a write into a range cut off the file faults, and is done again with
 *    pwritev2 (the file grows back, as it always did), later writes too;
 *  - copy_guarded: -EFAULT for a page past the end, and a SIGBUS outside
 *    a guarded copy still kills the process.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "sand/blkdev.h"
#include "sand/raid.h"
#include "sand/thin.h"
#include "test_thin_util.h"
#include "backends/file.h"

#define CHUNK	(64u * 1024)
#define FILESZ	(4u << 20)

static char path[256];

static void mkfile(const char *dir, uint64_t size)
{
	int fd;

	snprintf(path, sizeof(path), "%s/sand-test-map.XXXXXX", dir);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static struct blkdev *open_file(bool direct)
{
	struct blk_file_opts o = { .backend = BLK_FILE_PSYNC, .block_size = 4096,
				   .no_direct = !direct };
	struct blkdev *bd;

	ck_assert_int_eq(blk_file_open("mapf", path, &o, &bd), 0);
	return bd;
}

static void pattern(uint8_t *b, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)(seed + i * 7 + (i >> 12));
}

START_TEST(t_file_buffered)
{
	struct blkdev *bd;
	struct blk_map m;
	uint8_t *buf = malloc(FILESZ);

	mkfile("/var/tmp", FILESZ);
	bd = open_file(false);
	ck_assert(!bd->direct);
	pattern(buf, FILESZ, 3);
	ck_assert_int_eq(blk_sync_io(bd, BIO_WRITE, 0, 0, buf, FILESZ), 0);
	ck_assert_int_eq(blk_map_read(bd, 4096, 256 * 1024, &m), 0);
	ck_assert_uint_eq(m.len, 256 * 1024);
	ck_assert(memcmp(m.addr, buf + 4096, m.len) == 0);
	blk_map_put(&m);
	ck_assert_ptr_null(m.addr);
	/* a later write shows through a new map (one page cache) */
	memset(buf, 0x5a, 8192);
	ck_assert_int_eq(blk_sync_io(bd, BIO_WRITE, 0, 8192, buf, 8192), 0);
	ck_assert_int_eq(blk_map_read(bd, 8192, 8192, &m), 0);
	ck_assert(memcmp(m.addr, buf, 8192) == 0);
	blk_map_put(&m);
	/* the whole device, and nothing past it */
	ck_assert_int_eq(blk_map_read(bd, 0, FILESZ, &m), 0);
	ck_assert_uint_eq(m.len, FILESZ);
	blk_map_put(&m);
	ck_assert_int_eq(blk_map_read(bd, FILESZ - 4096, 8192, &m), -EINVAL);
	ck_assert_int_eq(blk_map_read(bd, 0, 0, &m), -EINVAL);
	ck_assert_int_eq(blkdev_close(bd), 0);
	unlink(path);
	free(buf);
}
END_TEST

START_TEST(t_file_direct)
{
	struct blkdev *bd;
	struct blk_map m;

	/* a disk file system: with O_DIRECT the page cache is not the data */
	mkfile("/var/tmp", FILESZ);
	bd = open_file(true);
	if (bd->direct)
		ck_assert_int_eq(blk_map_read(bd, 0, 65536, &m), -EAGAIN);
	else	/* the file system refused O_DIRECT: buffered, so it maps */
		ck_assert_int_eq(blk_map_read(bd, 0, 65536, &m), 0);
	blk_map_put(&m);
	ck_assert_int_eq(blkdev_close(bd), 0);
	unlink(path);

	/* tmpfs: O_DIRECT goes through the page cache, which is the storage */
	mkfile("/dev/shm", FILESZ);
	bd = open_file(true);
	ck_assert_int_eq(blk_map_read(bd, 0, 65536, &m), 0);
	ck_assert_uint_eq(m.len, 65536);
	blk_map_put(&m);
	ck_assert_int_eq(blkdev_close(bd), 0);
	unlink(path);
}
END_TEST

static void expect_file(const char *p, uint64_t off, const uint8_t *want, size_t len)
{
	uint8_t *got = malloc(len);
	int fd = open(p, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, got, len, (off_t)off), (ssize_t)len);
	ck_assert(memcmp(got, want, len) == 0);
	close(fd);
	free(got);
}

START_TEST(t_file_map_write)
{
	struct blk_file_opts o = { .backend = BLK_FILE_URING, .block_size = 4096 };
	uint8_t *buf = malloc(65536);
	struct file_dev *f;
	struct blkdev *bd;
	struct stat st;

	mkfile("/dev/shm", FILESZ);
	ck_assert_int_eq(blk_file_open("mapw", path, &o, &bd), 0);
	f = to_file(bd);
	ck_assert(f->mem_fs && f->writable);
	ck_assert_ptr_null(f->map);
	pattern(buf, 65536, 11);
	ck_assert_int_eq(blk_sync_io(bd, BIO_WRITE, 0, 128 * 1024, buf, 65536), 0);
	/* nothing mapped the file for reading: the write made the mapping */
	ck_assert(f->map && f->map != MAP_FAILED);
	expect_file(path, 128 * 1024, buf, 65536);
	pattern(buf, 4096, 12);
	ck_assert_int_eq(blk_sync_io(bd, BIO_WRITE, BIO_FUA, 4096, buf, 4096), 0);
	expect_file(path, 4096, buf, 4096);
	ck_assert(!f->no_map_write);

	/* the file cut under the disk: the copy faults, pwritev2 does it */
	ck_assert_int_eq(truncate(path, 1 << 20), 0);
	pattern(buf, 8192, 13);
	ck_assert_int_eq(blk_sync_io(bd, BIO_WRITE, 0, 2 << 20, buf, 8192), 0);
	ck_assert(f->no_map_write);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, (2 << 20) + 8192);
	expect_file(path, 2 << 20, buf, 8192);
	pattern(buf, 4096, 14);	/* and the next one, inside the file */
	ck_assert_int_eq(blk_sync_io(bd, BIO_WRITE, 0, 0, buf, 4096), 0);
	expect_file(path, 0, buf, 4096);
	ck_assert_int_eq(blkdev_close(bd), 0);
	unlink(path);
	free(buf);
}
END_TEST

START_TEST(t_copy_guarded)
{
	uint8_t src[256], *map;
	pid_t pid;
	int fd, wst;

	mkfile("/dev/shm", 8192);
	fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ck_assert(map != MAP_FAILED);
	ck_assert_int_eq(ftruncate(fd, 4096), 0);
	pattern(src, sizeof(src), 21);
	ck_assert_int_eq(copy_guarded(map + 4096, src, sizeof(src)), -EFAULT);
	ck_assert_int_eq(copy_guarded(map + 4096 - 128, src, sizeof(src)), -EFAULT);
	ck_assert_int_eq(copy_guarded(map + 100, src, sizeof(src)), 0);
	ck_assert(memcmp(map + 100, src, sizeof(src)) == 0);
	ck_assert_int_eq(copy_guarded(map + 300, src, sizeof(src)), 0);	/* still armed */
	/* outside a guarded copy, the same fault is the default SIGBUS */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		map[4096] = 1;
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &wst, 0), pid);
	ck_assert(WIFSIGNALED(wst));
	ck_assert_int_eq(WTERMSIG(wst), SIGBUS);
	munmap(map, 8192);
	close(fd);
	unlink(path);
}
END_TEST

START_TEST(t_mem_none)
{
	struct blkdev *bd;
	struct blk_map m;

	ck_assert_int_eq(blk_mem_create("mapm", FILESZ, 512, &bd), 0);
	ck_assert_int_eq(blk_map_read(bd, 0, 4096, &m), -EOPNOTSUPP);
	ck_assert_int_eq(blkdev_close(bd), 0);
}
END_TEST

START_TEST(t_raid)
{
	struct raid_opts o = { 0 };
	struct blkdev *f[2], *r;
	struct blk_map m;
	uint8_t *buf = malloc(FILESZ / 2);
	char p2[sizeof(path)];

	mkfile("/dev/shm", FILESZ);
	f[0] = open_file(false);
	ck_assert_int_eq(raid_create("r0", RAID_LEVEL_0, f, 1, &o, &r), 0);
	pattern(buf, FILESZ / 2, 5);
	ck_assert_int_eq(blk_sync_io(r, BIO_WRITE, 0, 65536, buf, FILESZ / 2), 0);
	ck_assert_int_eq(blk_map_read(r, 65536, FILESZ / 2, &m), 0);
	ck_assert_uint_eq(m.len, FILESZ / 2);
	ck_assert(memcmp(m.addr, buf, m.len) == 0);
	blk_map_put(&m);
	ck_assert_int_eq(blkdev_close(r), 0);
	/* two members (striped): not a plain map */
	strcpy(p2, path);
	mkfile("/dev/shm", FILESZ);
	ck_assert_int_eq(blk_file_open("mapf2", path, &(struct blk_file_opts){
		.backend = BLK_FILE_PSYNC, .block_size = 4096, .no_direct = true }, &f[1]), 0);
	ck_assert_int_eq(raid_create("r1", RAID_LEVEL_0, f, 2, &o, &r), 0);
	ck_assert_int_eq(blk_map_read(r, 0, 65536, &m), -EAGAIN);
	ck_assert_int_eq(blkdev_close(r), 0);
	ck_assert_int_eq(raid_create("r2", RAID_LEVEL_1, f, 2, &o, &r), 0);
	ck_assert_int_eq(blk_map_read(r, 0, 65536, &m), -EAGAIN);
	ck_assert_int_eq(blkdev_close(r), 0);
	ck_assert_int_eq(blkdev_close(f[0]), 0);
	ck_assert_int_eq(blkdev_close(f[1]), 0);
	unlink(path);
	unlink(p2);
	free(buf);
}
END_TEST

/* ---- thin ---- */

struct tp {
	struct blkdev		*dev;
	struct thin_pool	*p;
};

/* A pool on a buffered file on tmpfs with room for `chunks` data chunks. */
static void tp_up(struct tp *t, uint64_t chunks)
{
	struct thin_format_opts fo = { .chunk_size = CHUNK, .meta_size = 1u << 20 };
	struct thin_open_opts oo = { .commit_ms = 600000 };
	struct thin_pool_info info;
	uint64_t size = (2u << 20) + chunks * CHUNK;

	mkfile("/dev/shm", size);
	t->dev = open_file(false);
	ck_assert_int_eq(thin_pool_format(t->dev, &fo), 0);
	ck_assert_int_eq(thin_pool_open(t->dev, &oo, &t->p), 0);
	ck_assert_int_eq(thin_pool_info(t->p, &info), 0);
	ck_assert_uint_ge(info.data_chunks, chunks / 2);
}

static void tp_down(struct tp *t)
{
	ck_assert_int_eq(thin_pool_close(t->p), 0);
	ck_assert_int_eq(blkdev_close(t->dev), 0);
	unlink(path);
}

START_TEST(t_thin_chunks)
{
	struct tp t;
	struct blkdev *v;
	struct blk_map m;
	uint8_t *buf = malloc(4 * CHUNK), *rd = malloc(4 * CHUNK);

	tp_up(&t, 32);
	ck_assert_int_eq(thin_vol_create(t.p, "a", 16 * CHUNK), 0);
	ck_assert_int_eq(thin_vol_open(t.p, "a", &v), 0);
	/* a hole: not mapped, the bio path says it is a hole */
	ck_assert_int_eq(blk_map_read(v, 0, CHUNK, &m), -EAGAIN);
	ck_assert_uint_eq(m.npins, 0);
	pattern(buf, 4 * CHUNK, 9);
	ck_assert_int_eq(blk_sync_io(v, BIO_WRITE, 0, CHUNK, buf, 3 * CHUNK), 0);
	ck_assert_int_eq(blk_sync_io(v, BIO_READ, 0, CHUNK, rd, 3 * CHUNK), 0);
	ck_assert(memcmp(rd, buf, 3 * CHUNK) == 0);
	/* from the middle of chunk 1: stops at its end, then chunk by chunk */
	ck_assert_int_eq(blk_map_read(v, CHUNK + 4096, 3 * CHUNK - 4096, &m), 0);
	ck_assert_uint_eq(m.len, CHUNK - 4096);
	ck_assert_uint_eq(m.npins, 1);
	ck_assert(memcmp(m.addr, buf + 4096, m.len) == 0);
	blk_map_put(&m);
	ck_assert_uint_eq(m.npins, 0);
	for (unsigned c = 1; c < 4; c++) {
		ck_assert_int_eq(blk_map_read(v, c * CHUNK, CHUNK, &m), 0);
		ck_assert_uint_eq(m.len, CHUNK);
		ck_assert(memcmp(m.addr, buf + (c - 1) * CHUNK, CHUNK) == 0);
		blk_map_put(&m);
	}
	ck_assert_int_eq(blk_map_read(v, 4 * CHUNK, CHUNK, &m), -EAGAIN);
	ck_assert_int_eq(blkdev_close(v), 0);
	tp_down(&t);
	free(buf);
	free(rd);
}
END_TEST

struct discard_arg {
	struct blkdev	*v;
	uint64_t	off;
	int		rc;
	int		done;		/* atomic */
};

static void *discard_thread(void *a)
{
	struct discard_arg *d = a;

	d->rc = blk_sync_io(d->v, BIO_DISCARD, 0, d->off, NULL, CHUNK);
	__atomic_store_n(&d->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

START_TEST(t_thin_pin)
{
	struct tp t;
	struct blkdev *v;
	struct blk_map m;
	struct discard_arg d = { 0 };
	pthread_t th;
	uint8_t *buf = malloc(CHUNK);

	tp_up(&t, 32);
	ck_assert_int_eq(thin_vol_create(t.p, "a", 16 * CHUNK), 0);
	ck_assert_int_eq(thin_vol_open(t.p, "a", &v), 0);
	memset(buf, 0xaa, CHUNK);
	ck_assert_int_eq(blk_sync_io(v, BIO_WRITE, 0, 0, buf, CHUNK), 0);
	ck_assert_int_eq(blk_sync_io(v, BIO_READ, 0, 0, buf, CHUNK), 0);
	ck_assert_int_eq(blk_map_read(v, 0, CHUNK, &m), 0);
	d.v = v;
	ck_assert_int_eq(pthread_create(&th, NULL, discard_thread, &d), 0);
	/* the discard must wait for the pin: give it every chance not to */
	usleep(300 * 1000);
	ck_assert_int_eq(__atomic_load_n(&d.done, __ATOMIC_ACQUIRE), 0);
	ck_assert_uint_eq(((const uint8_t *)m.addr)[CHUNK - 1], 0xaa);
	blk_map_put(&m);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(d.done, 1);
	ck_assert_int_eq(d.rc, 0);
	/* now a hole */
	ck_assert_int_eq(blk_map_read(v, 0, CHUNK, &m), -EAGAIN);
	ck_assert_int_eq(blk_sync_io(v, BIO_READ, 0, 0, buf, CHUNK), 0);
	ck_assert_uint_eq(buf[0], 0);
	ck_assert_int_eq(blkdev_close(v), 0);
	tp_down(&t);
	free(buf);
}
END_TEST

struct churn {
	struct thin_pool *p;
	struct blkdev	*a, *b;
	unsigned	cycles;
	int		stop;		/* atomic */
	int		rc;
};

/* Over and over: a's chunk discarded, the chunk (the only free one, once
 * committed) written by b, b's discarded, a written again. */
static void *churn_thread(void *arg)
{
	struct churn *c = arg;
	uint8_t *A = malloc(CHUNK), *B = malloc(CHUNK);
	int rc = 0;

	memset(A, 0xaa, CHUNK);
	memset(B, 0xbb, CHUNK);
	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE) && !rc) {
		if ((rc = blk_sync_io(c->a, BIO_DISCARD, 0, 0, NULL, CHUNK)) ||
		    (rc = thin_pool_commit(c->p)) ||
		    (rc = blk_sync_io(c->b, BIO_WRITE, 0, 0, B, CHUNK)) ||
		    (rc = blk_sync_io(c->b, BIO_DISCARD, 0, 0, NULL, CHUNK)) ||
		    (rc = thin_pool_commit(c->p)) ||
		    (rc = blk_sync_io(c->a, BIO_WRITE, 0, 0, A, CHUNK)) ||
		    (rc = blk_sync_io(c->a, BIO_READ, 0, 0, A, CHUNK)))	/* into the cache */
			break;
		c->cycles++;
	}
	c->rc = rc;
	free(A);
	free(B);
	return NULL;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

START_TEST(t_thin_reuse_race)
{
	struct tp t;
	struct thin_pool_info info;
	struct churn c = { 0 };
	struct blkdev *f;
	struct blk_map m;
	pthread_t th;
	uint8_t *buf = malloc(CHUNK), *seen = malloc(CHUNK);
	unsigned maps = 0, holes = 0;
	uint64_t t0;

	tp_up(&t, 24);
	ck_assert_int_eq(thin_vol_create(t.p, "a", CHUNK), 0);
	ck_assert_int_eq(thin_vol_create(t.p, "b", CHUNK), 0);
	ck_assert_int_eq(thin_vol_open(t.p, "a", &c.a), 0);
	ck_assert_int_eq(thin_vol_open(t.p, "b", &c.b), 0);
	memset(buf, 0xaa, CHUNK);
	ck_assert_int_eq(blk_sync_io(c.a, BIO_WRITE, 0, 0, buf, CHUNK), 0);
	/* fill every other chunk: a's is the only one that ever frees */
	ck_assert_int_eq(thin_pool_info(t.p, &info), 0);
	ck_assert_int_eq(thin_vol_create(t.p, "f", info.free_chunks * CHUNK), 0);
	ck_assert_int_eq(thin_vol_open(t.p, "f", &f), 0);
	memset(buf, 0xff, CHUNK);
	for (uint64_t i = 0; i < info.free_chunks; i++)
		ck_assert_int_eq(blk_sync_io(f, BIO_WRITE, 0, i * CHUNK, buf, CHUNK), 0);
	ck_assert_int_eq(thin_pool_commit(t.p), 0);
	ck_assert_int_eq(thin_pool_info(t.p, &info), 0);
	ck_assert_uint_eq(info.free_chunks, 0);
	ck_assert_int_eq(blk_sync_io(c.a, BIO_READ, 0, 0, buf, CHUNK), 0);

	c.p = t.p;
	ck_assert_int_eq(pthread_create(&th, NULL, churn_thread, &c), 0);
	t0 = now_ms();
	/* at least 50 cycles and 200 maps, within 60 s (a loaded machine) */
	while (now_ms() - t0 < 60000 && (c.cycles < 50 || maps < 200) && !c.rc) {
		int rc = blk_map_read(c.a, 0, CHUNK, &m);

		if (rc) {
			T_EQ(rc, -EAGAIN);
			holes++;
			sched_yield();
			continue;
		}
		/* pinned: whatever the other thread does, these are a's bytes */
		memcpy(seen, m.addr, CHUNK);
		usleep(1000 + maps % 3 * 1000);	/* the other thread goes on meanwhile */
		memcpy(buf, m.addr, CHUNK);
		blk_map_put(&m);
		maps++;
		for (unsigned i = 0; i < CHUNK; i++) {
			T_EQ(seen[i], 0xaa);
			T_EQ(buf[i], 0xaa);
		}
	}
	__atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(c.rc, 0);
	ck_assert_uint_ge(c.cycles, 50);
	ck_assert_uint_ge(maps, 200);
	ck_assert_int_eq(blkdev_close(c.a), 0);
	ck_assert_int_eq(blkdev_close(c.b), 0);
	ck_assert_int_eq(blkdev_close(f), 0);
	tp_down(&t);
	free(buf);
	free(seen);
	(void)holes;
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("map_read");
	TCase *tc = tcase_create("map_read");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, t_file_buffered);
	tcase_add_test(tc, t_file_direct);
	tcase_add_test(tc, t_file_map_write);
	tcase_add_test(tc, t_copy_guarded);
	tcase_add_test(tc, t_mem_none);
	tcase_add_test(tc, t_raid);
	tcase_add_test(tc, t_thin_chunks);
	tcase_add_test(tc, t_thin_pin);
	tcase_add_test(tc, t_thin_reuse_race);
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
	return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
