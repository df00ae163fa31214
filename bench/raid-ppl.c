/* SPDX-License-Identifier: MIT */
/*
 * raid-ppl: what the partial parity log and the write-intent bitmap cost.
 * RAID 5 over 4 files (uring, O_DIRECT) in DIR, 64 KiB strip; 4 KiB random
 * writes at QD 1 and 32, full-stripe sequential writes at QD 4; each with
 * neither, the log only, and log + bitmap. Prints IOPS and MB/s.
 *
 *   build/bench/raid-ppl [DIR (/var/tmp)] [seconds per case (3)] [MiB per member (256)]
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/raid.h"

#define N	4

static unsigned inflight;
static uint64_t done_ios, done_bytes;

static void end(struct bio *bio, int status)
{
	if (status) {
		fprintf(stderr, "I/O error %d\n", status);
		exit(1);
	}
	inflight--;
	done_ios++;
	done_bytes += bio->len;
}

static void run(struct blkdev *set, uint64_t len, bool random, unsigned qd, double secs,
		uint8_t *buf)
{
	struct ev_loop *loop;
	struct blkchan *ch;
	uint64_t off = 0, rng = 88172645463325252ull, t0, t;

	if (ev_loop_new(EV_AUTO, 256, &loop) || blk_chan_open(set, loop, &ch))
		exit(1);
	done_bytes = done_ios = 0;
	t0 = now_ns();
	do {
		while (inflight < qd) {
			struct iovec iov = { buf, len };

			if (random) {
				rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
				off = rng % (set->size / len) * len;
			} else if (off + len > set->size) {
				off = 0;
			}
			if (blk_rw(ch, BIO_WRITE, 0, &iov, 1, off, len, end, NULL))
				break;
			inflight++;
			off += len;
		}
		ev_run_once(loop, 100);
		t = now_ns();
	} while (t - t0 < (uint64_t)(secs * 1e9));
	while (inflight)
		ev_run_once(loop, 100);
	t = now_ns();
	printf(" %8.0f IOPS %7.1f MB/s", (double)done_ios / ((double)(t - t0) / 1e9),
	       (double)done_bytes / (double)(t - t0) * 1e3);
	blk_chan_close(ch, NULL, NULL);
	ev_loop_free(loop);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/var/tmp";
	double secs = argc > 2 ? atof(argv[2]) : 3;
	uint64_t mib = argc > 3 ? strtoull(argv[3], NULL, 10) : 256;
	static const struct { const char *what; bool no_ppl, no_bitmap; } modes[] = {
		{ "no log, no bitmap", true, true },
		{ "log", false, true },
		{ "log + bitmap", false, false },
	};
	uint8_t *buf = aligned_alloc(4096, 3 << 16);
	char path[N][256];

	memset(buf, 0x5a, 3 << 16);
	printf("raid-ppl: RAID 5 over %d files in %s (%llu MiB each), strip 64 KiB\n", N, dir,
	       (unsigned long long)mib);
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		struct blk_file_opts fo = { .backend = BLK_FILE_URING,
					    .create_size = (mib + 16) << 20 };
		struct raid_opts o = { .strip = 64 * 1024, .no_ppl = modes[i].no_ppl,
				       .no_bitmap = modes[i].no_bitmap };
		struct blkdev *m[N], *set;
		char name[16];

		for (int j = 0; j < N; j++) {
			int fd;

			snprintf(path[j], sizeof(path[j]), "%s/raid-ppl-%d-%d.img", dir, (int)getpid(), j);
			/* allocated up front: no block allocation in the figures */
			fd = open(path[j], O_CREAT | O_WRONLY, 0600);
			if (fd < 0 || posix_fallocate(fd, 0, (off_t)fo.create_size)) {
				fprintf(stderr, "cannot allocate %s\n", path[j]);
				return 1;
			}
			close(fd);
			snprintf(name, sizeof(name), "f%d", j);
			if (blk_file_open(name, path[j], &fo, &m[j])) {
				fprintf(stderr, "cannot open %s\n", path[j]);
				return 1;
			}
		}
		if (raid_create("bench", RAID_LEVEL_5, m, N, &o, &set))
			return 1;
		printf("%-18s\n", modes[i].what);
		printf("  full stripes QD4     "); run(set, 3 << 16, false, 4, secs, buf); printf("\n");
		printf("  4K random write QD1  "); run(set, 4096, true, 1, secs, buf); printf("\n");
		printf("  4K random write QD32 "); run(set, 4096, true, 32, secs, buf); printf("\n");
		printf("  full stripes QD4     "); run(set, 3 << 16, false, 4, secs, buf); printf("\n");
		blkdev_close(set);
		for (int j = 0; j < N; j++) {
			blkdev_close(m[j]);
			unlink(path[j]);
		}
	}
	free(buf);
	return 0;
}
