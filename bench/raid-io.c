/* SPDX-License-Identifier: MIT */
/*
 * raid-io: the CPU cost of the RAID layer, one loop on one core, over null
 * members (reads return zeros, writes are dropped, so the members cost
 * almost nothing). Prints MB/s and IOPS per workload and level.
 *
 *   build/bench/raid-io [seconds_per_case]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/raid.h"

#define QD	32
#define MEMBER	(1ull << 30)

static unsigned inflight;
static uint64_t done_bytes, done_ios;

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

static void run(struct blkdev *set, enum bio_op op, uint64_t len, bool random, double secs,
		uint8_t *buf)
{
	struct ev_loop *loop;
	struct blkchan *ch;
	uint64_t off = 0, rng = 88172645463325252ull, t0, t;
	bool closed = false;

	if (ev_loop_new(EV_AUTO, 256, &loop) || blk_chan_open(set, loop, &ch))
		exit(1);
	done_bytes = done_ios = 0;
	t0 = now_ns();
	do {
		while (inflight < QD) {
			struct iovec iov = { buf, len };

			if (random) {
				rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
				off = rng % (set->size / len) * len;
			} else if (off + len > set->size) {
				off = 0;
			}
			if (blk_rw(ch, op, 0, &iov, 1, off, len, end, NULL))
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
	printf("  %8.0f MB/s %9.0f IOPS", (double)done_bytes / (double)(t - t0) * 1e3,
	       (double)done_ios / ((double)(t - t0) / 1e9));
	blk_chan_close(ch, NULL, NULL);
	(void)closed;
	ev_loop_free(loop);
}

int main(int argc, char **argv)
{
	static const struct { enum raid_level l; uint32_t n; } sets[] = {
		{ RAID_LEVEL_0, 4 }, { RAID_LEVEL_1, 2 }, { RAID_LEVEL_10, 4 },
		{ RAID_LEVEL_5, 5 }, { RAID_LEVEL_6, 6 },
	};
	double secs = argc > 1 ? atof(argv[1]) : 0.5;
	struct raid_opts o = { .strip = 64 * 1024 };
	uint8_t *buf = aligned_alloc(4096, 1 << 20);

	memset(buf, 0x5a, 1 << 20);
	printf("raid-io: one loop, null members, strip 64 KiB, %d in flight\n", QD);
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
		struct blkdev *m[8], *set;
		uint32_t k = sets[i].l == RAID_LEVEL_5 ? sets[i].n - 1 :
			     sets[i].l == RAID_LEVEL_6 ? sets[i].n - 2 :
			     sets[i].l == RAID_LEVEL_0 ? sets[i].n :
			     sets[i].l == RAID_LEVEL_10 ? sets[i].n / 2 : 1;
		char name[16];

		for (uint32_t j = 0; j < sets[i].n; j++) {
			snprintf(name, sizeof(name), "null%u", j);
			if (blk_null_create(name, MEMBER, 4096, &m[j]))
				return 1;
		}
		if (raid_create("bench", sets[i].l, m, sets[i].n, &o, &set))
			return 1;
		printf("RAID %-2d x%u\n", sets[i].l, sets[i].n);
		printf("  4K random write    "); run(set, BIO_WRITE, 4096, true, secs, buf); printf("\n");
		printf("  full-stripe write  "); run(set, BIO_WRITE, 64 * 1024 * k, false, secs, buf); printf("\n");
		printf("  64K seq read       "); run(set, BIO_READ, 64 * 1024, false, secs, buf); printf("\n");
		printf("  4K random read     "); run(set, BIO_READ, 4096, true, secs, buf); printf("\n");
		blkdev_close(set);
		for (uint32_t j = 0; j < sets[i].n; j++)
			blkdev_close(m[j]);
	}
	free(buf);
	return 0;
}
