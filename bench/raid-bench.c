/* SPDX-License-Identifier: MIT */
/*
 * raid-bench: a RAID set over real files (io_uring, O_DIRECT; -e aio: libaio), through the
 * block layer as an export drives it (one loop, one channel, QD in flight).
 * One JSON line per measurement on stdout; bench/raid runs it next to fio
 * and prints medians.
 *
 *   build/bench/raid-bench -l 5 -n 4 -d /var/tmp/rb -s 512M -S 64k -q 16 -t 5 CASE...
 *
 * Cases, in the order given:
 *   create	format a new set over the files (created sparse if missing)
 *   seqwrite	write the whole set once, full stripes (strip x data columns
 *		x -w stripes per I/O, default 1): MB/s of set data
 *   randread	4 KiB random reads (-b) for -t seconds: IOPS
 *   rebuild	take member 0 out, put a fresh file in its slot and rebuild it
 *		with no foreground load: MB/s per member
 *   scrub	check every row (no repair) with no foreground load: MB/s per
 *		member
 * The set is assembled from the files' superblocks when "create" is not
 * given, so "-l 0 create seqwrite" then "-l 5 create ..." compare levels over
 * the same files.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/log.h"
#include "sand/raid.h"

static int level = 5;
static uint32_t nmem = 4, strip = 64 * 1024, qd = 16, bs = 4096, rows = 1;
static uint64_t msize = 512ull << 20;
static double secs = 5;
static const char *dir = "/var/tmp/raid-bench";
static enum blk_file_backend engine = BLK_FILE_URING;
static struct blkdev *files[RAID_MAX_MEMBERS + 1], *set;

static unsigned inflight;
static uint64_t done_bytes, done_ios;

static void die(const char *what, int rc)
{
	fprintf(stderr, "raid-bench: %s: %s\n", what, strerror(-rc));
	exit(1);
}

static double now_s(void)
{
	return (double)now_ns() / 1e9;
}

static void end(struct bio *bio, int status)
{
	if (status)
		die("I/O error", status);
	inflight--;
	done_ios++;
	done_bytes += bio->len;
}

static void closed_cb(void *arg)
{
	*(bool *)arg = true;
}

static struct blkdev *open_file(uint32_t i, const char *tag)
{
	struct blk_file_opts o = { .backend = engine, .create_size = msize + RAID_DATA_OFFSET };
	char path[512], name[32];
	struct blkdev *bd;
	int rc;

	snprintf(path, sizeof(path), "%s/%s%u.img", dir, tag, i);
	snprintf(name, sizeof(name), "%s%u", tag, i);
	rc = blk_file_open(name, path, &o, &bd);
	if (rc)
		die(path, rc);
	return bd;
}

/*
 * Keep qd I/Os of len bytes in flight: sequential over [0, limit) once
 * (random false), or random for secs seconds. Returns the elapsed time.
 */
static double run(enum bio_op op, uint64_t len, bool random, uint64_t limit, uint8_t *buf)
{
	struct ev_loop *loop;
	struct blkchan *ch;
	uint64_t off = 0, rng = 88172645463325252ull;
	double t0, t;
	bool closed = false;
	int rc;

	rc = ev_loop_new(EV_AUTO, 256, &loop);
	if (!rc)
		rc = blk_chan_open(set, loop, &ch);
	if (rc)
		die("loop/channel", rc);
	done_bytes = done_ios = 0;
	t0 = now_s();
	for (;;) {
		t = now_s() - t0;
		while (inflight < qd && (random ? t < secs : off < limit)) {
			struct iovec iov = { buf, len };
			uint64_t o = off;

			if (random) {
				rng ^= rng << 13;
				rng ^= rng >> 7;
				rng ^= rng << 17;
				o = rng % (limit / len) * len;
			} else {
				off += len;
			}
			rc = blk_rw(ch, op, 0, &iov, 1, o, len, end, NULL);
			if (rc)
				die("submit", rc);
			inflight++;
		}
		if (!inflight)
			break;
		ev_run_once(loop, 1000);
	}
	t = now_s() - t0;
	blk_chan_close(ch, closed_cb, &closed);
	while (!closed)
		ev_run_once(loop, 100);
	ev_loop_free(loop);
	return t;
}

static uint32_t data_cols(void)
{
	struct raid_geom g = { .level = (enum raid_level)level, .nmembers = nmem };

	return raid_data_cols(&g);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "level", required_argument, NULL, 'l' },
		{ "members", required_argument, NULL, 'n' },
		{ "dir", required_argument, NULL, 'd' },
		{ "size", required_argument, NULL, 's' },
		{ "strip", required_argument, NULL, 'S' },
		{ "qd", required_argument, NULL, 'q' },
		{ "bs", required_argument, NULL, 'b' },
		{ "runtime", required_argument, NULL, 't' },
		{ "rows", required_argument, NULL, 'w' },
		{ "engine", required_argument, NULL, 'e' },
		{ NULL, 0, NULL, 0 }
	};
	uint8_t *buf;
	uint64_t v;
	int o, rc;

	while ((o = getopt_long(argc, argv, "l:n:d:s:S:q:b:t:w:e:", opts, NULL)) != -1) {
		switch (o) {
		case 'l': level = atoi(optarg); break;
		case 'n': nmem = (uint32_t)atoi(optarg); break;
		case 'd': dir = optarg; break;
		case 's': if (parse_size(optarg, &msize)) return 2; break;
		case 'S': if (parse_size(optarg, &v)) return 2; strip = (uint32_t)v; break;
		case 'q': qd = (uint32_t)atoi(optarg); break;
		case 'b': if (parse_size(optarg, &v)) return 2; bs = (uint32_t)v; break;
		case 't': secs = atof(optarg); break;
		case 'w': rows = (uint32_t)atoi(optarg); break;
		case 'e':
			if (!strcmp(optarg, "aio"))
				engine = BLK_FILE_AIO;
			else if (strcmp(optarg, "uring"))
				return 2;
			break;
		default: return 2;
		}
	}
	if (nmem < 1 || nmem > RAID_MAX_MEMBERS || optind >= argc || rows < 1) {
		fprintf(stderr, "usage: raid-bench [-l L] [-n N] [-d DIR] [-s SIZE] [-S STRIP] "
			"[-q QD] [-b BS] [-t SECS] [-w ROWS] [-e uring|aio] "
			"create|seqwrite|randread|rebuild|scrub...\n");
		return 2;
	}
	log_set_level(LOG_WARN);
	for (uint32_t i = 0; i < nmem; i++)
		files[i] = open_file(i, "m");
	buf = aligned_alloc(4096, (size_t)strip * nmem * rows);
	if (!buf)
		die("buffer", -ENOMEM);
	for (size_t i = 0; i < (size_t)strip * nmem * rows; i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	if (!strcmp(argv[optind], "create")) {
		struct raid_opts ro = { .strip = strip, .member_size = msize };

		rc = raid_create("bench", (enum raid_level)level, files, nmem, &ro, &set);
		optind++;
	} else {
		rc = raid_assemble(files, nmem, &set);
	}
	if (rc)
		die("create/assemble", rc);
	for (; optind < argc; optind++) {
		const char *c = argv[optind];

		if (!strcmp(c, "seqwrite")) {
			uint64_t len = (uint64_t)strip * data_cols() * rows;
			double t = run(BIO_WRITE, len, false, set->size / len * len, buf);

			printf("{\"case\":\"seqwrite\",\"level\":%d,\"members\":%u,\"bs\":%llu,"
			       "\"qd\":%u,\"mb_s\":%.1f}\n", level, nmem, (unsigned long long)len,
			       qd, (double)done_bytes / t / 1e6);
		} else if (!strcmp(c, "randread")) {
			double t = run(BIO_READ, bs, true, set->size, buf);

			printf("{\"case\":\"randread\",\"level\":%d,\"members\":%u,\"bs\":%u,"
			       "\"qd\":%u,\"iops\":%.0f}\n", level, nmem, bs, qd,
			       (double)done_ios / t);
		} else if (!strcmp(c, "rebuild")) {
			struct blkdev *nd = open_file(0, "new");
			struct raid_job_info ji;
			double t0, t;

			rc = raid_fail(set, 0);
			if (rc)
				die("fail member 0", rc);
			t0 = now_s();
			rc = raid_replace(set, 0, nd);
			t = now_s() - t0;
			if (rc)
				die("rebuild", rc);
			raid_job_get(set, &ji);
			printf("{\"case\":\"rebuild\",\"level\":%d,\"members\":%u,\"strip\":%u,"
			       "\"mb_s\":%.1f}\n", level, nmem, strip, (double)msize / t / 1e6);
			files[RAID_MAX_MEMBERS] = nd;
		} else if (!strcmp(c, "scrub")) {
			uint64_t bad = 0;
			double t0 = now_s(), t;

			rc = raid_scrub(set, false, &bad);
			t = now_s() - t0;
			if (rc)
				die("scrub", rc);
			printf("{\"case\":\"scrub\",\"level\":%d,\"members\":%u,\"strip\":%u,"
			       "\"mismatches\":%llu,\"mb_s\":%.1f}\n", level, nmem, strip,
			       (unsigned long long)bad, (double)msize / t / 1e6);
		} else {
			fprintf(stderr, "raid-bench: unknown case '%s'\n", c);
			return 2;
		}
		fflush(stdout);
	}
	raid_jobs_stop(set);
	rc = blkdev_close(set);
	if (rc)
		die("close", rc);
	for (uint32_t i = 0; i <= RAID_MAX_MEMBERS; i++)
		if (files[i])
			blkdev_close(files[i]);
	free(buf);
	return 0;
}
