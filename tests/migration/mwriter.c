// SPDX-License-Identifier: MIT
/*
 * mwriter: the migration test's guest writer and its host-side verifier, one
 * static binary (built by tests/migration/build-guest.sh with gcc -static).
 *
 *   mwriter write DEV BATCH THREADS [COUNT]
 *	In the guest: THREADS writers, each on its own slice of DEV (the
 *	disk's 4 KiB blocks cut in THREADS equal parts), so THREADS writes
 *	and flushes are in flight at once. Writer t writes its slice round and
 *	round with O_DIRECT, block t * R + seq % R for seq = 0, 1, 2 ... (R
 *	blocks a slice), BATCH blocks per batch, each batch one write per
 *	contiguous run; after a batch, fdatasync (a flush down to the target),
 *	and only when it returns "MW durable t N" on stdout (the serial
 *	console), one write(2) a line. Runs until the machine stops (or COUNT
 *	batches each; DEV may be a regular file, for the host-side self-test).
 *
 *   mwriter verify IMAGE BATCH THREADS [SLACK] < CONSOLE
 *	On the host, on a copy of the disk, with the guest's console output
 *	(every host's, in order) on stdin: each writer's reports must be
 *	batches 0, 1 ... N with none missing or repeated (a last line without
 *	its newline is ignored: the machine stopped while printing it); then
 *	for every block, the newest write among the reported batches (or a
 *	newer one, written but not yet reported, at most SLACK batches past
 *	the last report, default 64) must be there, whole.
 *	Prints a summary line; exits 1 on any torn, foreign, stale or lost
 *	block or a broken report sequence.
 *
 * A block: a 40-byte header (magic, seq, block number, writer, FNV-1a 64 of
 * the rest of the block) then pseudo-random bytes from (writer, seq); every
 * 512-byte sector also starts with seq and its index, so a block mixed from
 * two writes fails its checksum.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
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
#define MAGIC		0x32474d444e4153ull	/* "SANDMG2" */
#define MAX_THREADS	64

struct hdr {
	uint64_t magic;
	uint64_t seq;
	uint64_t blkno;
	uint64_t writer;
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

static void fill(uint8_t *b, uint64_t writer, uint64_t seq, uint64_t blkno)
{
	uint64_t x = seq * 0x9e3779b97f4a7c15ull + writer * 0xbf58476d1ce4e5b9ull + 1;
	struct hdr h = { MAGIC, seq, blkno, writer, 0 };
	unsigned i;

	for (i = sizeof(h); i < BLK; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(b + i, &x, 8);
	}
	for (i = SECTOR; i < BLK; i += SECTOR) {
		uint64_t s[2] = { seq, i / SECTOR };

		memcpy(b + i, s, sizeof(s));
	}
	h.sum = fnv1a(b + sizeof(h), BLK - sizeof(h));
	memcpy(b, &h, sizeof(h));
}

/* 0: a whole block written by mwriter (header in *h); 1: zeros; -1: else */
static int check(const uint8_t *b, uint64_t blkno, struct hdr *h)
{
	unsigned i;

	memcpy(h, b, sizeof(*h));
	if (h->magic != MAGIC) {
		for (i = 0; i < BLK; i++)
			if (b[i])
				return -1;
		return 1;
	}
	if (h->blkno != blkno || h->sum != fnv1a(b + sizeof(*h), BLK - sizeof(*h)))
		return -1;
	for (i = SECTOR; i < BLK; i += SECTOR) {
		uint64_t s[2];

		memcpy(s, b + i, sizeof(s));
		if (s[0] != h->seq || s[1] != i / SECTOR)
			return -1;
	}
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
	/* one write(2) a line: lines of different writers do not mix, and
	 * nothing is left in a buffer when the machine stops */
	if (write(1, line, n) < 0)
		exit(3);
}

struct writer {
	pthread_t	thread;
	int		fd;
	unsigned	id;
	unsigned	batch;
	uint64_t	first;		/* the slice: blocks first .. first + len - 1 */
	uint64_t	len;
	uint64_t	count;		/* batches to write, 0: for ever */
	int		err;
};

static void *writer_run(void *arg)
{
	struct writer *w = arg;
	uint64_t seq = 0, n;
	uint8_t *buf;

	if (posix_memalign((void **)&buf, BLK, (size_t)w->batch * BLK)) {
		w->err = 1;
		return NULL;
	}
	for (n = 0; !w->count || n < w->count; n++) {
		unsigned i = 0;

		while (i < w->batch) {
			/* one contiguous run: to the batch's end or the slice's */
			uint64_t off = (seq + i) % w->len;
			unsigned run = 0;
			ssize_t r;

			while (i + run < w->batch && off + run < w->len) {
				fill(buf + (size_t)(i + run) * BLK, w->id, seq + i + run,
				     w->first + off + run);
				run++;
			}
			r = pwrite(w->fd, buf + (size_t)i * BLK, (size_t)run * BLK,
				   (w->first + off) * BLK);
			if (r != (ssize_t)run * BLK) {
				say("MW error writer %u block %" PRIu64 ": %s\n", w->id,
				    w->first + off, r < 0 ? strerror(errno) : "short write");
				w->err = 1;
				goto out;
			}
			i += run;
		}
		if (fdatasync(w->fd) < 0) {
			say("MW error writer %u flush: %s\n", w->id, strerror(errno));
			w->err = 1;
			goto out;
		}
		seq += w->batch;
		say("MW durable %u %" PRIu64 "\n", w->id, n);
	}
out:
	free(buf);
	return NULL;
}

static int do_write(const char *dev, unsigned batch, unsigned threads, uint64_t count)
{
	struct writer w[MAX_THREADS];
	uint64_t size, nblocks;
	struct stat st;
	unsigned t;
	int fd, err = 0;

	fd = open(dev, O_RDWR | O_DIRECT);
	if (fd < 0 && errno == EINVAL)		/* a file on tmpfs: self-test only */
		fd = open(dev, O_RDWR);
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
	if (nblocks / threads < batch) {
		say("MW error %" PRIu64 " blocks are too few for %u writers\n", nblocks, threads);
		return 1;
	}
	say("MW start nblocks %" PRIu64 " batch %u writers %u\n", nblocks, batch, threads);
	for (t = 0; t < threads; t++) {
		w[t] = (struct writer){ .fd = fd, .id = t, .batch = batch, .count = count,
					.len = nblocks / threads };
		w[t].first = t * w[t].len;
		if (pthread_create(&w[t].thread, NULL, writer_run, &w[t])) {
			say("MW error pthread_create\n");
			return 1;
		}
	}
	for (t = 0; t < threads; t++) {
		pthread_join(w[t].thread, NULL);
		err |= w[t].err;
	}
	close(fd);
	return err;
}

/* the first few problems are named, the rest counted */
static uint64_t bad;
#define complain(...) do { if (bad++ < 20) printf(__VA_ARGS__); } while (0)

/* reads the console from stdin: last[t] = writer t's last reported batch,
 * -1 when none; every writer's reports must run 0, 1, 2 ... */
static uint64_t read_reports(unsigned threads, int64_t *last)
{
	char line[256];
	uint64_t lines = 0;
	unsigned t;

	for (t = 0; t < threads; t++)
		last[t] = -1;
	while (fgets(line, sizeof(line), stdin)) {
		unsigned w;
		int64_t n;
		char nl;

		if (sscanf(line, "MW durable %u %" SCNd64 "%c", &w, &n, &nl) != 3 || nl != '\n')
			continue;	/* not a report, or cut off at the end */
		if (w >= threads) {
			complain("report of writer %u: there are %u\n", w, threads);
			continue;
		}
		if (n != last[w] + 1)
			complain("writer %u reported batch %" PRId64 " after %" PRId64 "\n",
				 w, n, last[w]);
		if (n > last[w])
			last[w] = n;
		lines++;
	}
	return lines;
}

static int do_verify(const char *img, unsigned batch, unsigned threads, uint64_t slack)
{
	uint64_t nblocks, len, i, ok = 0, newer = 0, zero = 0, writes = 0, reports;
	int64_t last[MAX_THREADS];
	uint8_t *buf;
	struct stat st;
	FILE *f;

	reports = read_reports(threads, last);
	f = fopen(img, "r");
	if (!f || fstat(fileno(f), &st) < 0) {
		fprintf(stderr, "%s: %s\n", img, strerror(errno));
		return 2;
	}
	nblocks = st.st_size / BLK;
	len = nblocks / threads;
	buf = malloc(BLK);
	if (!buf || len < batch)
		return 2;
	for (i = 0; i < threads; i++)
		writes += (uint64_t)(last[i] + 1) * batch;
	for (i = 0; i < nblocks; i++) {
		/* writer t's newest reported write of this block: the last
		 * seq < end with seq % len == j (none when end <= j) */
		uint64_t t = i / len, j = i % len, end = 0, want = 0;
		int have = 0, r;
		struct hdr h;

		if (t < threads) {
			end = (uint64_t)(last[t] + 1) * batch;
			have = end > j;
			want = have ? j + (end - 1 - j) / len * len : 0;
		}
		if (fread(buf, BLK, 1, f) != 1) {
			fprintf(stderr, "%s: short read at block %" PRIu64 "\n", img, i);
			return 2;
		}
		r = check(buf, i, &h);
		if (r == 1) {
			if (have)
				complain("block %" PRIu64 ": zeros, wanted writer %" PRIu64 " seq %"
					 PRIu64 " (lost)\n", i, t, want);
			else
				zero++;
			continue;
		}
		if (r < 0 || t >= threads || h.writer != t || h.seq % len != j) {
			complain("block %" PRIu64 ": torn or foreign (wanted writer %" PRIu64
				 " seq %" PRIu64 ")\n", i, t, want);
			continue;
		}
		if (have && h.seq < want)
			complain("block %" PRIu64 ": stale seq %" PRIu64 ", wanted %" PRIu64
				 " (writer %" PRIu64 ")\n", i, h.seq, want, t);
		else if (h.seq >= end + slack * batch)
			complain("block %" PRIu64 ": seq %" PRIu64 " of writer %" PRIu64
				 " is far past its reports\n", i, h.seq, t);
		else if (h.seq >= end)
			newer++;
		else
			ok++;
	}
	fclose(f);
	free(buf);
	if (!reports)
		complain("no reports on stdin\n");
	printf("verified %" PRIu64 " blocks: %" PRIu64 " hold their newest durable write, %"
	       PRIu64 " a newer one (written after the last report), %" PRIu64
	       " were never written, %" PRIu64 " problems; %" PRIu64 " reports, %" PRIu64
	       " writes reported durable by %u writers (%.1f passes over the disk)\n",
	       nblocks, ok, newer, zero, bad, reports, writes, threads,
	       (double)writes / nblocks);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	unsigned batch = argc > 3 ? (unsigned)atoi(argv[3]) : 0;
	unsigned threads = argc > 4 ? (unsigned)atoi(argv[4]) : 0;

	if (!batch || batch > 256 || !threads || threads > MAX_THREADS)
		goto usage;
	if ((argc == 5 || argc == 6) && !strcmp(argv[1], "write"))
		return do_write(argv[2], batch, threads,
				argc == 6 ? strtoull(argv[5], NULL, 10) : 0);
	if ((argc == 5 || argc == 6) && !strcmp(argv[1], "verify"))
		return do_verify(argv[2], batch, threads,
				 argc == 6 ? strtoull(argv[5], NULL, 10) : 64);
usage:
	fprintf(stderr, "usage: mwriter write DEV BATCH THREADS [COUNT]\n"
		"       mwriter verify IMAGE BATCH THREADS [SLACK] < CONSOLE\n");
	return 2;
}
