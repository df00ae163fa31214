/* SPDX-License-Identifier: MIT */
/*
 * blkbench: drive one block device through the real block layer, like fio.
 *
 * One reactor loop (ev_loop_new), one channel (blk_chan_open), and QD slots,
 * each with its own aligned buffer. Every slot takes a bio from the channel
 * (bio_alloc), submits it (blk_submit) and, when it ends, records the
 * latency, frees the bio and submits the next I/O at once, so exactly QD
 * I/Os are in flight until the runtime or the I/O count is used up. This is
 * the path an export takes, so what it costs is what the daemon pays per I/O
 * below the protocol.
 *
 * Random offsets are uniform over the region, aligned to the I/O size, from
 * a seeded generator (splitmix64), so two runs with one seed issue the same
 * offsets. Latencies go into a log-linear histogram (64 sub-buckets per
 * power of two, under 1.6% error) for the percentiles; the mean is exact.
 * CPU time is the process's (getrusage RUSAGE_SELF: user + system, every
 * thread, so psync's workers count too), divided by the I/Os done.
 *
 * With --ramp, I/O runs for that long first and every counter (I/Os,
 * histogram, clock, CPU) is reset when it ends, as fio's ramp_time does.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "sand/blkdev.h"
#include "sand/common.h"
#include "sand/ev.h"

#define HIST_SUB_BITS	6
#define HIST_SUB	(1u << HIST_SUB_BITS)
#define HIST_BUCKETS	((64 - HIST_SUB_BITS + 1) * HIST_SUB)

enum pattern { PAT_RANDREAD, PAT_RANDWRITE, PAT_READ, PAT_WRITE };

static const char *const pattern_names[] = {
	[PAT_RANDREAD] = "randread",
	[PAT_RANDWRITE] = "randwrite",
	[PAT_READ] = "read",
	[PAT_WRITE] = "write",
};

struct opts {
	const char	*backend;	/* uring, aio, psync, mem, null */
	const char	*path;
	uint64_t	size;		/* region (0: the whole device) */
	uint64_t	bs;		/* I/O size */
	uint32_t	lbs;		/* device block size (0: default) */
	enum pattern	pattern;
	unsigned	qd;
	double		runtime;	/* seconds (0: use count) */
	double		ramp;		/* seconds */
	uint64_t	count;		/* I/Os (0: use runtime) */
	bool		direct;
	uint64_t	seed;
	bool		json;
	enum ev_backend	loop_backend;
	unsigned	psync_threads;
};

struct slot {
	struct bench	*b;
	void		*buf;
	uint64_t	start;		/* ns */
	bool		parked;		/* refused with backpressure; retry later */
};

struct bench {
	const struct opts *o;
	struct ev_loop	*loop;
	struct blkdev	*bd;
	struct blkchan	*ch;
	struct slot	*slots;
	enum bio_op	op;
	bool		random;
	uint64_t	region;		/* bytes, a multiple of bs */
	uint64_t	nblocks;	/* region / bs */
	uint64_t	rng;
	uint64_t	seq_next;	/* bytes */

	uint64_t	deadline;	/* ns; 0: none */
	uint64_t	ramp_end;	/* ns; 0: not ramping */
	uint64_t	issued;		/* counted toward --count */
	unsigned	inflight;
	unsigned	parked;
	bool		stopping;
	int		first_error;

	/* measured (reset at the end of the ramp) */
	uint64_t	t_start, t_end;
	struct rusage	ru_start, ru_end;
	uint64_t	ios, errors, bytes;
	uint64_t	lat_sum, lat_min, lat_max;
	uint64_t	hist[HIST_BUCKETS];
};

/* ---------------------------------------------------------------- helpers */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, n) (Lemire's multiply-shift; the bias is < n / 2^64). */
static uint64_t rand_below(uint64_t *s, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)splitmix64(s) * n) >> 64);
}

static unsigned hist_idx(uint64_t v)
{
	unsigned msb, shift;

	if (v < HIST_SUB)
		return (unsigned)v;
	msb = 63 - (unsigned)__builtin_clzll(v);
	shift = msb - HIST_SUB_BITS;
	return (shift + 1) * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
}

/* The middle of bucket i. */
static uint64_t hist_value(unsigned i)
{
	unsigned shift;

	if (i < HIST_SUB)
		return i;
	shift = i / HIST_SUB - 1;
	return ((uint64_t)(i % HIST_SUB + HIST_SUB) << shift) + ((1ull << shift) >> 1);
}

static uint64_t hist_percentile(const struct bench *b, double p)
{
	uint64_t want = (uint64_t)ceil(p / 100.0 * (double)b->ios), seen = 0;

	if (!b->ios)
		return 0;
	if (!want)
		want = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += b->hist[i];
		if (seen >= want)
			return MIN(MAX(hist_value(i), b->lat_min), b->lat_max);
	}
	return b->lat_max;
}

static double tv_sec(const struct timeval *tv)
{
	return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static void reset_stats(struct bench *b, uint64_t now)
{
	b->ios = b->errors = b->bytes = 0;
	b->lat_sum = b->lat_max = 0;
	b->lat_min = UINT64_MAX;
	memset(b->hist, 0, sizeof(b->hist));
	b->t_start = now;
	getrusage(RUSAGE_SELF, &b->ru_start);
}

/* ---------------------------------------------------------------- I/O */

static void slot_end(struct bio *bio, int status);

static uint64_t next_offset(struct bench *b)
{
	uint64_t off;

	if (b->random)
		return rand_below(&b->rng, b->nblocks) * b->o->bs;
	off = b->seq_next;
	b->seq_next += b->o->bs;
	if (b->seq_next >= b->region)
		b->seq_next = 0;
	return off;
}

static bool want_more(struct bench *b, uint64_t now)
{
	if (b->stopping)
		return false;
	if (b->deadline && now >= b->deadline)
		b->stopping = true;
	if (b->o->count && b->issued >= b->o->count)
		b->stopping = true;
	return !b->stopping;
}

/* Submit the slot's next I/O. -EAGAIN/-ENOMEM park it until an I/O ends. */
static int slot_submit(struct slot *s, uint64_t now)
{
	struct bench *b = s->b;
	struct bio *bio = bio_alloc(b->ch);
	int rc;

	if (!bio) {
		rc = -ENOMEM;
		goto park;
	}
	bio->op = b->op;
	bio->offset = next_offset(b);
	bio->len = b->o->bs;
	bio->iov_inline[0].iov_base = s->buf;
	bio->iov_inline[0].iov_len = b->o->bs;
	bio->iov = bio->iov_inline;
	bio->iovcnt = 1;
	bio->end = slot_end;
	bio->end_arg = s;
	s->start = now;
	rc = blk_submit(b->ch, bio);
	if (rc) {
		bio_free(bio);
		if (rc == -EAGAIN || rc == -ENOMEM)
			goto park;
		if (!b->first_error)
			b->first_error = rc;
		b->stopping = true;
		return rc;
	}
	b->issued++;
	b->inflight++;
	return 0;

park:
	if (!s->parked) {
		s->parked = true;
		b->parked++;
	}
	return rc;
}

static void retry_parked(struct bench *b, uint64_t now)
{
	for (unsigned i = 0; b->parked && i < b->o->qd; i++) {
		struct slot *s = &b->slots[i];

		if (!s->parked)
			continue;
		if (!want_more(b, now)) {
			s->parked = false;
			b->parked--;
			continue;
		}
		s->parked = false;
		b->parked--;
		if (slot_submit(s, now) && s->parked)
			break;		/* still full: wait for the next end */
	}
}

static void slot_end(struct bio *bio, int status)
{
	struct slot *s = bio->end_arg;
	struct bench *b = s->b;
	uint64_t now = now_ns(), lat = now - s->start;

	bio_free(bio);
	b->inflight--;
	if (status) {
		b->errors++;
		if (!b->first_error)
			b->first_error = status;
		b->stopping = true;
	} else {
		b->ios++;
		b->bytes += b->o->bs;
		b->lat_sum += lat;
		b->lat_min = MIN(b->lat_min, lat);
		b->lat_max = MAX(b->lat_max, lat);
		b->hist[hist_idx(lat)]++;
	}
	b->t_end = now;
	if (b->ramp_end && now >= b->ramp_end) {
		b->ramp_end = 0;
		reset_stats(b, now);
		b->issued = b->inflight;
		if (b->o->runtime > 0)
			b->deadline = now + (uint64_t)(b->o->runtime * 1e9);
	}
	if (b->parked)
		retry_parked(b, now);
	if (want_more(b, now))
		slot_submit(s, now);
}

/* ---------------------------------------------------------------- setup */

static int open_device(const struct opts *o, struct blkdev **bd)
{
	enum blk_file_backend fb;
	struct blk_file_opts fo = { 0 };
	uint64_t size = o->size ? o->size : 1ull << 30;

	if (!strcmp(o->backend, "mem"))
		return blk_mem_create("bench", size, o->lbs, bd);
	if (!strcmp(o->backend, "null"))
		return blk_null_create("bench", size, o->lbs, bd);
	if (blk_file_backend_parse(o->backend, &fb))
		return -EINVAL;
	if (!o->path) {
		fprintf(stderr, "blkbench: backend %s needs --file\n", o->backend);
		return -EINVAL;
	}
	fo.backend = fb;
	fo.block_size = o->lbs;
	fo.no_direct = !o->direct;
	fo.create_size = o->size;
	fo.psync_threads = o->psync_threads;
	fo.readonly = o->pattern == PAT_RANDREAD || o->pattern == PAT_READ;
	return blk_file_open("bench", o->path, &fo, bd);
}

static int bench_setup(struct bench *b)
{
	const struct opts *o = b->o;
	unsigned entries = 256;
	int rc;

	while (entries < 2 * o->qd)
		entries *= 2;
	rc = ev_loop_new(o->loop_backend, entries, &b->loop);
	if (rc) {
		fprintf(stderr, "blkbench: event loop: %s\n", strerror(-rc));
		return rc;
	}
	rc = open_device(o, &b->bd);
	if (rc) {
		fprintf(stderr, "blkbench: open %s %s: %s\n", o->backend,
			o->path ? o->path : "", strerror(-rc));
		goto free_loop;
	}
	rc = -EINVAL;
	if (o->bs % b->bd->block_size) {
		fprintf(stderr, "blkbench: I/O size %" PRIu64 " is not a multiple of the block size %u\n",
			o->bs, b->bd->block_size);
		goto close_dev;
	}
	b->region = o->size && o->size < b->bd->size ? o->size : b->bd->size;
	b->region -= b->region % o->bs;
	if (!b->region) {
		fprintf(stderr, "blkbench: device smaller than one I/O\n");
		goto close_dev;
	}
	if (o->direct && !b->bd->direct && b->bd->path[0])
		fprintf(stderr, "blkbench: warning: %s is not open with O_DIRECT\n", b->bd->path);
	b->nblocks = b->region / o->bs;
	rc = blk_chan_open(b->bd, b->loop, &b->ch);
	if (rc) {
		fprintf(stderr, "blkbench: channel: %s\n", strerror(-rc));
		goto close_dev;
	}
	b->slots = calloc(o->qd, sizeof(*b->slots));
	if (!b->slots) {
		rc = -ENOMEM;
		goto close_chan;
	}
	for (unsigned i = 0; i < o->qd; i++) {
		struct slot *s = &b->slots[i];

		s->b = b;
		if (posix_memalign(&s->buf, 4096, o->bs)) {
			rc = -ENOMEM;
			goto free_slots;
		}
		/* not zeros, so nothing below can take a shortcut */
		for (uint64_t j = 0; j < o->bs; j += 8) {
			uint64_t v = splitmix64(&b->rng);

			memcpy((uint8_t *)s->buf + j, &v, MIN(8, o->bs - j));
		}
	}
	return 0;

free_slots:
	for (unsigned i = 0; i < o->qd; i++)
		free(b->slots[i].buf);
	free(b->slots);
close_chan:
	blk_chan_close(b->ch, NULL, NULL);
close_dev:
	blkdev_close(b->bd);
free_loop:
	ev_loop_free(b->loop);
	return rc;
}

static void chan_closed(void *arg)
{
	*(bool *)arg = true;
}

static void bench_teardown(struct bench *b)
{
	bool closed = false;

	blk_chan_close(b->ch, chan_closed, &closed);
	while (!closed && ev_run_once(b->loop, 100) >= 0)
		;
	blkdev_close(b->bd);
	/* let the loop reap whatever the device cancelled on close */
	for (int i = 0; i < 100 && ev_inflight(b->loop); i++)
		ev_run_once(b->loop, 10);
	ev_loop_free(b->loop);
	for (unsigned i = 0; i < b->o->qd; i++)
		free(b->slots[i].buf);
	free(b->slots);
}

static int bench_run(struct bench *b)
{
	const struct opts *o = b->o;
	uint64_t now = now_ns();

	b->rng = o->seed;
	reset_stats(b, now);
	if (o->ramp > 0)
		b->ramp_end = now + (uint64_t)(o->ramp * 1e9);
	else if (o->runtime > 0)
		b->deadline = now + (uint64_t)(o->runtime * 1e9);
	if (o->ramp > 0 && o->runtime > 0)
		b->deadline = b->ramp_end + (uint64_t)(o->runtime * 1e9);
	for (unsigned i = 0; i < o->qd && want_more(b, now); i++)
		if (slot_submit(&b->slots[i], now) && !b->slots[i].parked)
			break;
	while (b->inflight || (b->parked && !b->stopping)) {
		int rc = ev_run_once(b->loop, b->inflight ? -1 : 1);

		if (rc < 0) {
			fprintf(stderr, "blkbench: event loop: %s\n", strerror(-rc));
			return rc;
		}
		if (!b->inflight && b->parked)
			retry_parked(b, now_ns());
	}
	getrusage(RUSAGE_SELF, &b->ru_end);
	if (!b->t_end || b->t_end < b->t_start)
		b->t_end = now_ns();
	return b->first_error;
}

/* ---------------------------------------------------------------- report */

static void report(const struct bench *b)
{
	const struct opts *o = b->o;
	double secs = (double)(b->t_end - b->t_start) / 1e9;
	double usr = tv_sec(&b->ru_end.ru_utime) - tv_sec(&b->ru_start.ru_utime);
	double sys = tv_sec(&b->ru_end.ru_stime) - tv_sec(&b->ru_start.ru_stime);
	double iops = secs > 0 ? (double)b->ios / secs : 0;
	double mibs = secs > 0 ? (double)b->bytes / secs / (1024.0 * 1024.0) : 0;
	double mean = b->ios ? (double)b->lat_sum / (double)b->ios / 1e3 : 0;
	double p50 = (double)hist_percentile(b, 50) / 1e3;
	double p99 = (double)hist_percentile(b, 99) / 1e3;
	double p999 = (double)hist_percentile(b, 99.9) / 1e3;
	double lmax = (double)b->lat_max / 1e3;
	double cpu = b->ios ? (usr + sys) / (double)b->ios * 1e6 : 0;
	char bsbuf[16];

	format_size(o->bs, bsbuf, sizeof(bsbuf));
	if (o->json) {
		printf("{\"backend\": \"%s\", \"device\": \"%s\", \"loop\": \"%s\", "
		       "\"pattern\": \"%s\", \"bs\": %" PRIu64 ", \"qd\": %u, "
		       "\"direct\": %s, \"region\": %" PRIu64 ", \"seed\": %" PRIu64 ", "
		       "\"ios\": %" PRIu64 ", \"errors\": %" PRIu64 ", \"runtime_s\": %.6f, "
		       "\"iops\": %.1f, \"mib_s\": %.2f, "
		       "\"lat_mean_us\": %.2f, \"lat_p50_us\": %.2f, \"lat_p99_us\": %.2f, "
		       "\"lat_p999_us\": %.2f, \"lat_max_us\": %.2f, "
		       "\"usr_s\": %.6f, \"sys_s\": %.6f, \"cpu_us_per_io\": %.3f}\n",
		       o->backend, b->bd->ops->name, ev_backend_name(ev_loop_backend(b->loop)),
		       pattern_names[o->pattern], o->bs, o->qd,
		       b->bd->direct ? "true" : "false", b->region, o->seed,
		       b->ios, b->errors, secs, iops, mibs,
		       mean, p50, p99, p999, lmax, usr, sys, cpu);
	} else {
		printf("%s %s bs=%s qd=%u%s: %.0f IOPS, %.1f MiB/s, lat mean %.1f us, "
		       "p99 %.1f us, cpu %.2f us/io (%" PRIu64 " I/Os in %.2f s%s)\n",
		       o->backend, pattern_names[o->pattern], bsbuf, o->qd,
		       b->bd->direct ? " direct" : "", iops, mibs, mean, p99, cpu,
		       b->ios, secs, b->errors ? ", ERRORS" : "");
	}
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: blkbench [options]\n"
		"  -e, --backend B     uring, aio, psync, mem or null (default uring)\n"
		"  -f, --file PATH     file or block device (file backends)\n"
		"  -s, --size SIZE     region to use (default: the whole file; mem/null: 1G);\n"
		"                      a missing file is created sparse with this size\n"
		"  -b, --bs SIZE       I/O size (default 4k)\n"
		"  -B, --block-size N  device block size (default: the device's, or 512)\n"
		"  -p, --rw PATTERN    randread, randwrite, read or write (default randread)\n"
		"  -q, --qd N          I/Os kept in flight (default 1)\n"
		"  -t, --runtime SECS  run for this long (default 5 unless --count)\n"
		"  -n, --count N       stop after N I/Os\n"
		"  -r, --ramp SECS     run this long before measuring\n"
		"  -d, --direct 0|1    O_DIRECT (default 1)\n"
		"  -S, --seed N        random offsets' seed (default 1)\n"
		"  -l, --loop L        event loop: auto, uring or epoll (default auto)\n"
		"  -T, --threads N     psync worker threads (default: the backend's)\n"
		"  -j, --json          one JSON object instead of one line\n"
		"  -h, --help\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lopts[] = {
		{ "backend", required_argument, NULL, 'e' },
		{ "ioengine", required_argument, NULL, 'e' },
		{ "file", required_argument, NULL, 'f' },
		{ "filename", required_argument, NULL, 'f' },
		{ "size", required_argument, NULL, 's' },
		{ "bs", required_argument, NULL, 'b' },
		{ "block-size", required_argument, NULL, 'B' },
		{ "rw", required_argument, NULL, 'p' },
		{ "pattern", required_argument, NULL, 'p' },
		{ "qd", required_argument, NULL, 'q' },
		{ "iodepth", required_argument, NULL, 'q' },
		{ "runtime", required_argument, NULL, 't' },
		{ "count", required_argument, NULL, 'n' },
		{ "ramp", required_argument, NULL, 'r' },
		{ "direct", required_argument, NULL, 'd' },
		{ "seed", required_argument, NULL, 'S' },
		{ "loop", required_argument, NULL, 'l' },
		{ "threads", required_argument, NULL, 'T' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	char *end;
	int c;

	*o = (struct opts){
		.backend = "uring",
		.bs = 4096,
		.pattern = PAT_RANDREAD,
		.qd = 1,
		.direct = true,
		.seed = 1,
	};
	while ((c = getopt_long(argc, argv, "e:f:s:b:B:p:q:t:n:r:d:S:l:T:jh", lopts, NULL)) != -1) {
		switch (c) {
		case 'e':
			o->backend = optarg;
			break;
		case 'f':
			o->path = optarg;
			break;
		case 's':
			if (parse_size(optarg, &o->size))
				goto bad;
			break;
		case 'b':
			if (parse_size(optarg, &o->bs) || !o->bs || o->bs > (1u << 30))
				goto bad;
			break;
		case 'B':
			if (parse_size(optarg, &v) || v > UINT32_MAX)
				goto bad;
			o->lbs = (uint32_t)v;
			break;
		case 'p': {
			unsigned i;

			for (i = 0; i < ARRAY_SIZE(pattern_names); i++)
				if (!strcmp(optarg, pattern_names[i]))
					break;
			if (i == ARRAY_SIZE(pattern_names))
				goto bad;
			o->pattern = (enum pattern)i;
			break;
		}
		case 'q':
			v = strtoull(optarg, &end, 0);
			if (*end || !v || v > 65536)
				goto bad;
			o->qd = (unsigned)v;
			break;
		case 't':
			o->runtime = strtod(optarg, &end);
			if (*end || o->runtime < 0)
				goto bad;
			break;
		case 'n':
			o->count = strtoull(optarg, &end, 0);
			if (*end)
				goto bad;
			break;
		case 'r':
			o->ramp = strtod(optarg, &end);
			if (*end || o->ramp < 0)
				goto bad;
			break;
		case 'd':
			if (!strcmp(optarg, "1") || !strcmp(optarg, "on"))
				o->direct = true;
			else if (!strcmp(optarg, "0") || !strcmp(optarg, "off"))
				o->direct = false;
			else
				goto bad;
			break;
		case 'S':
			o->seed = strtoull(optarg, &end, 0);
			if (*end)
				goto bad;
			break;
		case 'l':
			if (!strcmp(optarg, "auto"))
				o->loop_backend = EV_AUTO;
			else if (!strcmp(optarg, "uring"))
				o->loop_backend = EV_URING;
			else if (!strcmp(optarg, "epoll"))
				o->loop_backend = EV_EPOLL;
			else
				goto bad;
			break;
		case 'T':
			v = strtoull(optarg, &end, 0);
			if (*end || v > 1024)
				goto bad;
			o->psync_threads = (unsigned)v;
			break;
		case 'j':
			o->json = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "blkbench: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (!o->runtime && !o->count)
		o->runtime = 5;
	return 0;

bad:
	fprintf(stderr, "blkbench: bad value '%s' for -%c\n", optarg, c);
	return -EINVAL;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct bench *b;
	int rc;

	if (parse_args(argc, argv, &o))
		return 2;
	b = calloc(1, sizeof(*b));
	if (!b)
		return 1;
	b->o = &o;
	b->op = o.pattern == PAT_RANDREAD || o.pattern == PAT_READ ? BIO_READ : BIO_WRITE;
	b->random = o.pattern == PAT_RANDREAD || o.pattern == PAT_RANDWRITE;
	b->rng = o.seed ^ 0x5eedull;	/* buffer contents; offsets reseed in bench_run */
	rc = bench_setup(b);
	if (rc) {
		free(b);
		return 1;
	}
	rc = bench_run(b);
	if (rc)
		fprintf(stderr, "blkbench: I/O error: %s\n", strerror(-rc));
	report(b);
	bench_teardown(b);
	free(b);
	return rc ? 1 : 0;
}
