// SPDX-License-Identifier: MIT
/*
 * mwriter: the migration test's guest writer and its host-side verifier, one
 * static binary (built by tests/migration/build-guest.sh with gcc -static).
 *
 *   mwriter write DEV [BATCH [COUNT]]
 *	In the guest: writes 4 KiB blocks with O_DIRECT, block number
 *	seq % nblocks for seq = 0, 1, 2 ... (the disk is overwritten again and
 *	again), BATCH blocks (default 16) per batch, each batch one write per
 *	contiguous run. After a batch, fdatasync (a flush down to the target);
 *	only when it returns, "MW durable N" on stdout (the serial console).
 *	Runs until the machine is stopped (or COUNT batches; DEV may also be
 *	a regular file, for the host-side self-test).
 *
 *   mwriter verify IMAGE BATCH LAST
 *	On the host, on a copy of the disk: every write of batches 0..LAST
 *	was reported durable, so for every block the newest of those writes
 *	(or a newer one, written but not yet reported) must be there, whole.
 *	Prints a summary line; exits 1 on any torn, foreign, stale or lost
 *	block.
 *
 * A block: a 32-byte header (magic, seq, block number, FNV-1a 64 of the
 * rest of the block) then pseudo-random bytes from seq; every 512-byte
 * sector also starts with seq and its index, so a block mixed from two
 * writes fails its checksum.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLK		4096u
#define SECTOR		512u
#define MAGIC		0x31474d444e4153ull	/* "SANDMG1" */
#define HDR		32u

struct hdr {
	uint64_t magic;
	uint64_t seq;
	uint64_t blkno;
	uint64_t sum;
};

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (n--) {
		h ^= *p++;
		h *= 0x100000001b3ull;
	}
	return h;
}

static void fill(uint8_t *b, uint64_t seq, uint64_t blkno)
{
	uint64_t x = seq * 0x9e3779b97f4a7c15ull + 1;
	struct hdr h = { MAGIC, seq, blkno, 0 };
	unsigned i;

	for (i = HDR; i < BLK; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(b + i, &x, 8);
	}
	for (i = SECTOR; i < BLK; i += SECTOR) {
		uint64_t s[2] = { seq, i / SECTOR };

		memcpy(b + i, s, sizeof(s));
	}
	memcpy(b, &h, sizeof(h));
	h.sum = fnv1a(b + HDR, BLK - HDR);
	memcpy(b, &h, sizeof(h));
}

/* 0: valid block (seq in *seq); 1: all zeros; -1: anything else */
static int check(const uint8_t *b, uint64_t blkno, uint64_t *seq)
{
	struct hdr h;
	unsigned i;

	memcpy(&h, b, sizeof(h));
	if (h.magic != MAGIC) {
		for (i = 0; i < BLK; i++)
			if (b[i])
				return -1;
		return 1;
	}
	if (h.blkno != blkno || h.sum != fnv1a(b + HDR, BLK - HDR))
		return -1;
	for (i = SECTOR; i < BLK; i += SECTOR) {
		uint64_t s[2];

		memcpy(s, b + i, sizeof(s));
		if (s[0] != h.seq || s[1] != i / SECTOR)
			return -1;
	}
	*seq = h.seq;
	return 0;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char line[160];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 1)
		n = sizeof(line) - 1;
	/* one write(2) per line: nothing buffered when the machine stops */
	if (write(1, line, n) < 0)
		exit(3);
}

static int do_write(const char *dev, unsigned batch, uint64_t count)
{
	struct stat st;
	uint64_t size, nblocks, seq = 0, n;
	uint8_t *buf;
	int fd;

	fd = open(dev, O_RDWR | O_DIRECT);
	if (fd < 0) {
		say("MW error open %s: %s\n", dev, strerror(errno));
		return 1;
	}
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		size = st.st_size;
	} else if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
		say("MW error BLKGETSIZE64: %s\n", strerror(errno));
		return 1;
	}
	nblocks = size / BLK;
	if (!nblocks || posix_memalign((void **)&buf, BLK, (size_t)batch * BLK)) {
		say("MW error size %" PRIu64 "\n", size);
		return 1;
	}
	say("MW start nblocks %" PRIu64 " batch %u\n", nblocks, batch);
	for (n = 0; !count || n < count; n++) {
		unsigned i = 0;

		while (i < batch) {
			/* one contiguous run: up to the batch's end or the disk's */
			uint64_t first = (seq + i) % nblocks;
			unsigned run = 0;
			ssize_t r;

			while (i + run < batch && first + run < nblocks) {
				fill(buf + (size_t)(i + run) * BLK, seq + i + run, first + run);
				run++;
			}
			r = pwrite(fd, buf + (size_t)i * BLK, (size_t)run * BLK, first * BLK);
			if (r != (ssize_t)run * BLK) {
				say("MW error write block %" PRIu64 ": %s\n", first,
				    r < 0 ? strerror(errno) : "short");
				return 1;
			}
			i += run;
		}
		if (fdatasync(fd) < 0) {
			say("MW error flush: %s\n", strerror(errno));
			return 1;
		}
		seq += batch;
		say("MW durable %" PRIu64 "\n", n);
	}
	close(fd);
	free(buf);
	return 0;
}

/* the first few bad blocks are named, the rest counted */
#define complain(...) do { if (bad++ < 20) printf(__VA_ARGS__); } while (0)

static int do_verify(const char *img, unsigned batch, uint64_t last)
{
	uint64_t nblocks, end = (last + 1) * batch, limit = end + 64 * batch, i;
	uint64_t ok = 0, newer = 0, zero = 0, bad = 0, maxseq = 0;
	uint8_t *buf;
	struct stat st;
	FILE *f;

	f = fopen(img, "r");
	if (!f || fstat(fileno(f), &st) < 0) {
		fprintf(stderr, "%s: %s\n", img, strerror(errno));
		return 2;
	}
	nblocks = st.st_size / BLK;
	buf = malloc(BLK);
	if (!buf || !nblocks)
		return 2;
	for (i = 0; i < nblocks; i++) {
		/* the newest durable write of this block: the last seq < end
		 * with seq % nblocks == i (none when end <= i) */
		int have = end > i;
		uint64_t want = have ? i + (end - 1 - i) / nblocks * nblocks : 0, seq = 0;
		int r;

		if (fread(buf, BLK, 1, f) != 1) {
			fprintf(stderr, "%s: short read at block %" PRIu64 "\n", img, i);
			return 2;
		}
		r = check(buf, i, &seq);
		if (r == 1) {
			if (have) {
				complain("block %" PRIu64 ": zeros, wanted seq %" PRIu64 " (lost)\n",
					 i, want);
			} else {
				zero++;
			}
			continue;
		}
		if (r < 0) {
			complain("block %" PRIu64 ": torn or foreign (wanted seq %" PRIu64 ")\n",
				 i, want);
			continue;
		}
		if (seq > maxseq)
			maxseq = seq;
		if (have && seq < want) {
			complain("block %" PRIu64 ": stale seq %" PRIu64 ", wanted %" PRIu64 "\n",
				 i, seq, want);
		} else if (seq >= limit || seq % nblocks != i) {
			complain("block %" PRIu64 ": seq %" PRIu64 " was never written there\n",
				 i, seq);
		} else if (seq >= end) {
			newer++;
		} else {
			ok++;
		}
	}
	fclose(f);
	free(buf);
	printf("verified %" PRIu64 " blocks: %" PRIu64 " durable writes intact, %" PRIu64
	       " newer (written after the last report), %" PRIu64 " never written, %"
	       PRIu64 " bad; %" PRIu64 " writes reported durable (%.1f passes over the disk),"
	       " newest seq on disk %" PRIu64 "\n", nblocks, ok, newer, zero, bad, end,
	       (double)end / nblocks, maxseq);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	unsigned batch = argc > 3 ? (unsigned)atoi(argv[3]) : 16;

	if (batch && batch <= 256 && argc >= 3 && !strcmp(argv[1], "write"))
		return do_write(argv[2], batch, argc > 4 ? strtoull(argv[4], NULL, 10) : 0);
	if (batch && argc == 5 && !strcmp(argv[1], "verify"))
		return do_verify(argv[2], batch, strtoull(argv[4], NULL, 10));
	fprintf(stderr, "usage: mwriter write DEV [BATCH] | verify IMAGE BATCH LAST\n");
	return 2;
}
