/* SPDX-License-Identifier: MIT */
/*
 * thin-bench: the thin pool's figures (issue 3), run by hand through
 * bench/thin. Every figure is the median of --runs runs.
 *
 * Small pool: a file (io_uring, O_DIRECT) of --small-size bytes in --dir.
 *  - bare: 4 KiB random write and read IOPS on the file itself (the region
 *    the volume will use), before the pool is formatted on it;
 *  - a thin volume of --vol-size, fully written (every chunk allocated):
 *    4 KiB random write IOPS (ratio to bare), random read IOPS with no
 *    snapshot and with 100 (ratio to no snapshot: runs alternated, the 100
 *    snapshots taken before and deleted after each, the same blocks read);
 *    the process's CPU time per I/O (every thread: the owner's too);
 *  - the first 4 KiB write to each chunk after a snapshot (a copy of the
 *    chunk) against a plain overwrite;
 *  - snapshot creation time with 0 and 1000 snapshots in the pool;
 *  - metadata bytes per allocated chunk.
 * Big pool: --big-size bytes (1 TiB): metadata on a sparse file, data chunks
 * on a null device (writes dropped, reads zeros), so that a volume of that
 * size can be fully mapped without the disk space.
 *  - the rate of whole-chunk provisioning writes while mapping it;
 *  - the process's RSS with it fully mapped (the pool runs in this process
 *    as in the daemon);
 *  - snapshot creation time with 0 and 1000 snapshots.
 *
 * I/O is driven as an export does: one loop on this thread, one channel on
 * the device, QD bios in flight.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "sand/blkdev.h"
#include "sand/common.h"
#include "sand/ev.h"
#include "sand/log.h"
#include "sand/thin.h"

#define BS		4096u
#define MAXQD		128

static struct {
	const char	*dir;
	unsigned	runs, qd;
	double		runtime;
	uint64_t	small_size, vol_size, big_size;
	unsigned	snaps;
	bool		no_big, no_small;
} o = {
	.dir = "/var/tmp", .runs = 5, .qd = 32, .runtime = 3,
	.small_size = 3ull << 30, .vol_size = 1ull << 30, .big_size = 1ull << 40,
	.snaps = 1000,
};

static void die(const char *what, int rc)
{
	fprintf(stderr, "thin-bench: %s: %s\n", what, strerror(-rc));
	exit(1);
}

#define TRY(what, call) do { int _rc = (call); if (_rc) die(what, _rc); } while (0)

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double secs(void)
{
	return now_ns() / 1e9;
}

/* CPU time of the whole process (every thread), seconds */
static double cpu_secs(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static uint64_t rss_kib(const char *key)
{
	char line[256];
	uint64_t v = 0;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)))
			v = strtoull(line + strlen(key) + 1, NULL, 10);
	fclose(f);
	return v;
}

/* ---- the I/O engine ---- */

enum offs { RANDOM, SEQUENTIAL, PERMUTED_CHUNKS };

struct job {
	struct blkchan	*ch;
	struct ev_loop	*loop;
	enum bio_op	op;
	enum offs	offs;
	uint64_t	bs, base, region, chunk;	/* I/O in [base, base + region) */
	uint64_t	count;		/* 0: until runtime */
	double		runtime;
	uint64_t	seed, next, issued, done;
	uint64_t	*perm;		/* PERMUTED_CHUNKS */
	int		error;
	bool		stop;
	double		cpu_us;		/* the last run's process CPU per I/O */
	uint8_t		*bufs[MAXQD];
	struct iovec	iov[MAXQD];
};

static void job_submit(struct job *j, unsigned slot);

static void job_end(struct bio *bio, int status)
{
	struct job *j = bio->end_arg;

	j->done++;
	if (status && !j->error)
		j->error = status;
}

static uint64_t job_offset(struct job *j)
{
	uint64_t n = j->issued;

	switch (j->offs) {
	case SEQUENTIAL:
		return n * j->bs % j->region;
	case PERMUTED_CHUNKS:
		return j->perm[n % (j->region / j->chunk)] * j->chunk +
		       splitmix(&j->seed) % (j->chunk / j->bs) * j->bs;
	default:
		return splitmix(&j->seed) % (j->region / j->bs) * j->bs;
	}
}

static void job_submit(struct job *j, unsigned slot)
{
	int rc;

	rc = blk_rw(j->ch, j->op, 0, &j->iov[slot], 1, j->base + job_offset(j), j->bs, job_end, j);
	if (rc) {
		j->error = rc;
		return;
	}
	j->issued++;
}

/* Keep qd I/Os in flight until count or runtime; IOPS. */
static double job_run(struct job *j, unsigned qd)
{
	double t0, t, c0;
	unsigned k;

	j->issued = j->done = 0;
	j->error = 0;
	for (k = 0; k < qd; k++) {
		if (!j->bufs[k]) {
			if (posix_memalign((void **)&j->bufs[k], 4096, j->bs))
				die("memory", -ENOMEM);
			for (uint64_t i = 0; i < j->bs; i += 8)
				*(uint64_t *)(j->bufs[k] + i) = splitmix(&j->seed);
		}
		j->iov[k] = (struct iovec){ .iov_base = j->bufs[k], .iov_len = j->bs };
	}
	t0 = secs();
	c0 = cpu_secs();
	for (k = 0; k < qd && (!j->count || j->issued < j->count); k++)
		job_submit(j, k);
	for (;;) {
		uint64_t before = j->done;

		if (ev_run_once(j->loop, 100) < 0)
			die("event loop", -EIO);
		if (j->error)
			die("I/O", j->error);
		t = secs() - t0;
		/* resubmit one per ended I/O (any slot: the buffers are only
		 * written from) */
		for (uint64_t n = before; n < j->done; n++) {
			if ((j->count && j->issued >= j->count) ||
			    (!j->count && t >= j->runtime))
				break;
			job_submit(j, (unsigned)(j->issued % qd));
		}
		if (j->done == j->issued)
			break;
	}
	j->cpu_us = j->done ? (cpu_secs() - c0) * 1e6 / (double)j->done : 0;
	return j->done / (secs() - t0);
}

static struct job *job_new(struct blkdev *bd, struct ev_loop *loop)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		die("memory", -ENOMEM);
	j->loop = loop;
	j->seed = 42;
	TRY("channel", blk_chan_open(bd, loop, &j->ch));
	return j;
}

static void job_free(struct job *j)
{
	blk_chan_close(j->ch, NULL, NULL);
	for (unsigned k = 0; k < MAXQD; k++)
		free(j->bufs[k]);
	free(j->perm);
	free(j);
}

/* One timed run of 4 KiB random I/O over the region. */
static double run_random(struct job *j, enum bio_op op, uint64_t region, unsigned qd)
{
	j->op = op;
	j->offs = RANDOM;
	j->bs = BS;
	j->region = region;
	j->count = 0;
	j->runtime = o.runtime;
	return job_run(j, qd);
}

/* Write the whole region once, in chunk-sized I/Os, QD 32: every chunk of
 * a volume gets allocated. Returns chunks/s. */
static double fill(struct job *j, uint64_t region, uint64_t chunk)
{
	j->op = BIO_WRITE;
	j->offs = SEQUENTIAL;
	j->bs = chunk;
	j->region = region;
	j->count = region / chunk;
	return job_run(j, 32);
}

/* ---- snapshots ---- */

/* Snapshot creation (a commit each: two device flushes), SNAP_SAMPLES
 * times: the median, and the slowest in *max. */
#define SNAP_SAMPLES	21

static double snap_time_ms(struct thin_pool *p, const char *vol, double *max)
{
	double v[SNAP_SAMPLES], t;
	unsigned r;
	char name[THIN_NAME_MAX];

	*max = 0;
	for (r = 0; r < SNAP_SAMPLES; r++) {
		snprintf(name, sizeof(name), "%s@timed%u", vol, r);
		t = secs();
		TRY("snapshot", thin_snap_create(p, vol, name));
		v[r] = (secs() - t) * 1e3;
		*max = MAX(*max, v[r]);
	}
	for (r = 0; r < SNAP_SAMPLES; r++) {
		snprintf(name, sizeof(name), "%s@timed%u", vol, r);
		TRY("delete snapshot", thin_vol_delete(p, name));
	}
	return median(v, r);
}

static void make_snaps(struct thin_pool *p, const char *vol, unsigned from, unsigned to)
{
	char name[THIN_NAME_MAX];

	for (unsigned i = from; i < to; i++) {
		double t = secs();

		snprintf(name, sizeof(name), "%s@%u", vol, i);
		TRY("snapshot", thin_snap_create(p, vol, name));
		if (getenv("THIN_BENCH_TRACE") && i % 100 == 0)
			fprintf(stderr, "snapshot %u: %.2f ms\n", i, (secs() - t) * 1e3);
	}
}

static void delete_snaps(struct thin_pool *p, const char *vol, unsigned from, unsigned to)
{
	char name[THIN_NAME_MAX];

	for (unsigned i = from; i < to; i++) {
		snprintf(name, sizeof(name), "%s@%u", vol, i);
		TRY("delete snapshot", thin_vol_delete(p, name));
	}
}

static double meta_per_chunk(struct thin_pool *p, uint64_t chunks)
{
	struct thin_pool_info pi;

	TRY("commit", thin_pool_commit(p));
	TRY("pool info", thin_pool_info(p, &pi));
	return (double)(pi.meta_blocks - pi.free_meta_blocks) * 4096 / (double)chunks;
}

/* ---- the small pool: a file ---- */

static void small(struct ev_loop *loop)
{
	struct blk_file_opts fo = { .backend = BLK_FILE_URING, .create_size = o.small_size };
	struct thin_open_opts oo = { 0 };
	struct blkdev *dev, *vol, *bare;
	struct thin_pool *p;
	struct thin_pool_info pi;
	struct job *j, *jb;
	char path[512];
	double bw[64], vw[64], br[64], vr[64], c_bw[64], c_vw[64], c_br[64], c_vr[64];
	double v0[64], v100[64], c_v0[64], c_v100[64];
	double bare_w, bare_r, bare_r100, vol_w, vol_r, vol_r100, copy_w, fill_rate, s0, s1000;
	double s0max, s1000max;
	double meta0, meta1000;
	uint64_t chunks, chunk;
	unsigned r;

	snprintf(path, sizeof(path), "%s/thin-bench.img", o.dir);
	unlink(path);
	TRY("open the file", blk_file_open("bench", path, &fo, &dev));
	if (!dev->direct)
		fprintf(stderr, "thin-bench: warning: %s without O_DIRECT\n", path);
	TRY("format", thin_pool_format(dev, NULL));
	TRY("open the pool", thin_pool_open(dev, &oo, &p));
	TRY("pool info", thin_pool_info(p, &pi));
	chunk = pi.chunk_size;
	chunks = o.vol_size / chunk;
	TRY("create", thin_vol_create(p, "v", o.vol_size));
	TRY("open the volume", thin_vol_open(p, "v", &vol));
	j = job_new(vol, loop);
	j->chunk = chunk;
	fill_rate = fill(j, o.vol_size, chunk);
	meta0 = meta_per_chunk(p, chunks);
	/* bare: the same file opened a second time, I/O to the very blocks
	 * that hold the volume's chunks (the first chunks of the data area),
	 * in runs alternating with the volume's (the machine's noise hits
	 * both alike) */
	fo.create_size = 0;
	TRY("open the file again", blk_file_open("bench-bare", path, &fo, &bare));
	jb = job_new(bare, loop);
	jb->base = o.small_size - pi.data_chunks * chunk;	/* data_off */
	for (r = 0; r < o.runs && r < ARRAY_SIZE(bw); r++) {
		/* who goes first alternates too: the disk drifts */
		struct job *first = r % 2 ? j : jb, *second = r % 2 ? jb : j;
		double *fw = r % 2 ? vw : bw, *sw = r % 2 ? bw : vw;
		double *fr = r % 2 ? vr : br, *sr = r % 2 ? br : vr;
		double *cfw = r % 2 ? c_vw : c_bw, *csw = r % 2 ? c_bw : c_vw;
		double *cfr = r % 2 ? c_vr : c_br, *csr = r % 2 ? c_br : c_vr;

		fw[r] = run_random(first, BIO_WRITE, o.vol_size, o.qd);
		cfw[r] = first->cpu_us;
		sw[r] = run_random(second, BIO_WRITE, o.vol_size, o.qd);
		csw[r] = second->cpu_us;
		fr[r] = run_random(first, BIO_READ, o.vol_size, o.qd);
		cfr[r] = first->cpu_us;
		sr[r] = run_random(second, BIO_READ, o.vol_size, o.qd);
		csr[r] = second->cpu_us;
	}
	{
		unsigned n = r;

		for (r = 0; r < n; r++)	/* the ratios, run by run */
			v0[r] = vw[r] / bw[r], v100[r] = vr[r] / br[r];
		printf("  (run by run: randwrite thin/bare %.2fx median, randread %.2fx)\n",
		       median(v0, n), median(v100, n));
		r = n;
	}
	if (getenv("THIN_BENCH_TRACE")) {
		TRY("pool info", thin_pool_info(p, &pi));
		fprintf(stderr, "fast path %llu I/Os, owner %llu\n",
			(unsigned long long)pi.fast_ios, (unsigned long long)pi.owner_ios);
	}
	bare_w = median(bw, r);
	vol_w = median(vw, r);
	bare_r = median(br, r);
	vol_r = median(vr, r);
	printf("  CPU per I/O: randwrite bare %.1f us, thin %.1f us; randread bare %.1f us, "
	       "thin %.1f us\n", median(c_bw, r), median(c_vw, r), median(c_br, r),
	       median(c_vr, r));
	s0 = snap_time_ms(p, "v", &s0max);

	/* first write to each chunk after a snapshot: one write per chunk, in
	 * a random order; a new snapshot for every run */
	j->perm = malloc(chunks * sizeof(*j->perm));
	for (uint64_t i = 0; i < chunks; i++)
		j->perm[i] = i;
	for (uint64_t i = chunks - 1; i > 0; i--) {
		uint64_t k = splitmix(&j->seed) % (i + 1), t = j->perm[i];

		j->perm[i] = j->perm[k];
		j->perm[k] = t;
	}
	{
		double v[64];
		char name[THIN_NAME_MAX];

		for (r = 0; r < o.runs && r < ARRAY_SIZE(v); r++) {
			snprintf(name, sizeof(name), "v@copy%u", r);
			TRY("snapshot", thin_snap_create(p, "v", name));
			j->op = BIO_WRITE;
			j->offs = PERMUTED_CHUNKS;
			j->bs = BS;
			j->region = o.vol_size;
			j->count = chunks;
			v[r] = job_run(j, o.qd);
			TRY("delete snapshot", thin_vol_delete(p, name));
		}
		copy_w = median(v, r);
	}
	/* with 100 snapshots against none: runs alternated, the snapshots
	 * taken before one and deleted before the other, so both read the
	 * very same blocks at nearly the same time, each right after 100
	 * commits; the bare file alternated too */
	for (r = 0; r < o.runs && r < ARRAY_SIZE(bw); r++) {
		make_snaps(p, "v", 0, 100);
		v100[r] = run_random(j, BIO_READ, o.vol_size, o.qd);
		c_v100[r] = j->cpu_us;
		br[r] = run_random(jb, BIO_READ, o.vol_size, o.qd);
		delete_snaps(p, "v", 0, 100);
		v0[r] = run_random(j, BIO_READ, o.vol_size, o.qd);
		c_v0[r] = j->cpu_us;
		vr[r] = v100[r] / v0[r];
	}
	make_snaps(p, "v", 0, 100);
	bare_r100 = median(br, r);
	vol_r100 = median(v100, r);
	printf("  randread, 100 snapshots / none: %.0f / %.0f IOPS, %.2fx (median of the run "
	       "ratios: %.2fx), CPU %.1f / %.1f us per I/O\n", vol_r100, median(v0, r),
	       vol_r100 / median(v0, r), median(vr, r), median(c_v100, r), median(c_v0, r));
	make_snaps(p, "v", 100, o.snaps);
	s1000 = snap_time_ms(p, "v", &s1000max);
	meta1000 = meta_per_chunk(p, chunks);
	job_free(j);
	job_free(jb);
	ev_run_once(loop, 0);
	TRY("close the volume", blkdev_close(vol));
	TRY("close the second file", blkdev_close(bare));

	printf("small pool: %s, %llu MiB file (io_uring, O_DIRECT), %llu KiB chunks, "
	       "volume %llu MiB (%llu chunks), QD %u, median of %u runs of %.0f s\n",
	       path, (unsigned long long)(o.small_size >> 20), (unsigned long long)chunk / 1024,
	       (unsigned long long)(o.vol_size >> 20), (unsigned long long)chunks, o.qd, o.runs,
	       o.runtime);
	printf("  fill (whole-chunk provisioning writes)    %9.0f chunks/s\n", fill_rate);
	printf("  4K randwrite bare file                    %9.0f IOPS\n", bare_w);
	printf("  4K randwrite thin, allocated              %9.0f IOPS  %.2fx bare\n", vol_w,
	       vol_w / bare_w);
	printf("  4K first write per chunk after a snapshot %9.0f IOPS  %.2fx overwrite\n",
	       copy_w, copy_w / vol_w);
	printf("  4K randread bare file                     %9.0f IOPS\n", bare_r);
	printf("  4K randread thin, no snapshot             %9.0f IOPS  %.2fx bare\n", vol_r,
	       vol_r / bare_r);
	printf("  4K randread thin, 100 snapshots           %9.0f IOPS  %.2fx bare (%.0f), "
	       "%.2fx no snapshot\n", vol_r100, vol_r100 / bare_r100, bare_r100,
	       vol_r100 / median(v0, r));
	printf("  snapshot create, %llu MiB volume, 0 snaps    %6.2f ms (max %.2f of %u)\n",
	       (unsigned long long)(o.vol_size >> 20), s0, s0max, SNAP_SAMPLES);
	printf("  snapshot create, %llu MiB volume, %u snaps %6.2f ms (max %.2f of %u)\n",
	       (unsigned long long)(o.vol_size >> 20), o.snaps, s1000, s1000max, SNAP_SAMPLES);
	printf("  metadata per allocated chunk              %9.1f bytes (%.1f with %u snapshots)\n",
	       meta0, meta1000, o.snaps);
	fflush(stdout);
	TRY("close the pool", thin_pool_close(p));
	TRY("close the file", blkdev_close(dev));
	unlink(path);
}

/* ---- the big pool: metadata on a file, data on a null device ---- */

struct split_dev {
	struct blkdev	bd;
	struct blkdev	*meta, *data;
	uint64_t	split;
};

struct split_chan {
	struct blkchan	*meta, *data;
};

static void split_lower_end(struct bio *lb, int status)
{
	bio_complete(lb->end_arg, status);
}

static int split_submit(struct blkdev *bd, struct blkchan *ch, struct bio *bio)
{
	struct split_dev *sd = container_of(bd, struct split_dev, bd);
	struct split_chan *sc = ch->priv;
	bool meta = bio->op == BIO_FLUSH || bio->offset < sd->split;

	/* io_boundary = split: a bio is on one side */
	return blk_rw(meta ? sc->meta : sc->data, bio->op, bio->flags, bio->iov, bio->iovcnt,
		      meta ? bio->offset : bio->offset - sd->split, bio->len, split_lower_end,
		      bio);
}

static int split_chan_create(struct blkdev *bd, struct blkchan *ch)
{
	struct split_dev *sd = container_of(bd, struct split_dev, bd);
	struct split_chan *sc = calloc(1, sizeof(*sc));
	int rc;

	if (!sc)
		return -ENOMEM;
	rc = blk_chan_open(sd->meta, ch->loop, &sc->meta);
	if (!rc) {
		rc = blk_chan_open(sd->data, ch->loop, &sc->data);
		if (rc)
			blk_chan_close(sc->meta, NULL, NULL);
	}
	if (rc) {
		free(sc);
		return rc;
	}
	ch->priv = sc;
	return 0;
}

static void split_chan_destroy(struct blkdev *bd, struct blkchan *ch)
{
	struct split_chan *sc = ch->priv;

	blk_chan_close(sc->meta, NULL, NULL);
	blk_chan_close(sc->data, NULL, NULL);
	free(sc);
}

static bool split_supports(struct blkdev *bd, enum bio_op op)
{
	return op == BIO_READ || op == BIO_WRITE || op == BIO_FLUSH;
}

static void split_close(struct blkdev *bd)
{
	free(container_of(bd, struct split_dev, bd));
}

static const struct blkdev_ops split_ops = {
	.name		= "split",
	.close		= split_close,
	.supports	= split_supports,
	.chan_create	= split_chan_create,
	.chan_destroy	= split_chan_destroy,
	.submit		= split_submit,
};

static void big(struct ev_loop *loop)
{
	struct blk_file_opts fo = { .backend = BLK_FILE_AIO };
	struct thin_format_opts tf = { 0 };
	struct thin_open_opts oo = { 0 };
	struct split_dev *sd = calloc(1, sizeof(*sd));
	struct blkdev *vol;
	struct thin_pool *p;
	struct thin_pool_info pi;
	struct job *j;
	char path[512];
	uint64_t chunks = o.big_size / THIN_CHUNK_DEFAULT, est = chunks + chunks / 64;
	uint64_t meta, rss0, rss1, hwm;
	double t, rate, s0, s1000, mpc, s0max, s1000max;

	/* what thin_pool_format would choose by default, rounded up to a
	 * chunk, so that the data area starts exactly there */
	meta = (DIV_ROUND_UP(est * 48, 4096) + 2 * DIV_ROUND_UP(est, 1016) + 64) * 4096;
	meta = DIV_ROUND_UP(MAX(meta, 256 * 4096ull), THIN_CHUNK_DEFAULT) * THIN_CHUNK_DEFAULT;
	snprintf(path, sizeof(path), "%s/thin-bench-meta.img", o.dir);
	unlink(path);
	fo.create_size = meta;
	if (!sd)
		die("memory", -ENOMEM);
	TRY("open the metadata file", blk_file_open("bench-meta", path, &fo, &sd->meta));
	TRY("null device", blk_null_create("bench-data", o.big_size, 512, &sd->data));
	blkdev_init(&sd->bd, &split_ops, "bench-big");
	sd->split = meta;
	sd->bd.size = meta + o.big_size;
	sd->bd.block_size = 512;
	sd->bd.io_boundary = THIN_CHUNK_DEFAULT;
	tf.meta_size = meta;
	TRY("format", thin_pool_format(&sd->bd, &tf));
	rss0 = rss_kib("VmRSS:");
	TRY("open the pool", thin_pool_open(&sd->bd, &oo, &p));
	TRY("create", thin_vol_create(p, "big", o.big_size));
	TRY("open the volume", thin_vol_open(p, "big", &vol));
	j = job_new(vol, loop);
	t = secs();
	rate = fill(j, o.big_size, THIN_CHUNK_DEFAULT);
	t = secs() - t;
	TRY("commit", thin_pool_commit(p));
	rss1 = rss_kib("VmRSS:");
	hwm = rss_kib("VmHWM:");
	mpc = meta_per_chunk(p, chunks);
	job_free(j);
	ev_run_once(loop, 0);
	TRY("close the volume", blkdev_close(vol));
	s0 = snap_time_ms(p, "big", &s0max);
	make_snaps(p, "big", 0, o.snaps);
	s1000 = snap_time_ms(p, "big", &s1000max);
	TRY("pool info", thin_pool_info(p, &pi));
	printf("big pool: %llu GiB volume fully mapped (%llu chunks of 64 KiB): metadata on %s "
	       "(%llu MiB, libaio, O_DIRECT), data on a null device\n",
	       (unsigned long long)(o.big_size >> 30), (unsigned long long)chunks, path,
	       (unsigned long long)(meta >> 20));
	printf("  mapping it (whole-chunk writes, QD 32)    %9.0f chunks/s (%.0f s)\n", rate, t);
	printf("  RSS before the pool opened                %9llu KiB\n", (unsigned long long)rss0);
	printf("  RSS with the volume fully mapped          %9llu KiB (peak %llu KiB, "
	       "cache peak %u blocks)\n", (unsigned long long)rss1, (unsigned long long)hwm,
	       pi.cache_peak);
	printf("  metadata per allocated chunk              %9.1f bytes\n", mpc);
	printf("  snapshot create, %llu GiB volume, 0 snaps    %6.2f ms (max %.2f of %u)\n",
	       (unsigned long long)(o.big_size >> 30), s0, s0max, SNAP_SAMPLES);
	printf("  snapshot create, %llu GiB volume, %u snaps %6.2f ms (max %.2f of %u)\n",
	       (unsigned long long)(o.big_size >> 30), o.snaps, s1000, s1000max, SNAP_SAMPLES);
	fflush(stdout);
	TRY("close the pool", thin_pool_close(p));
	TRY("close", blkdev_close(&sd->bd));
	TRY("close the metadata file", blkdev_close(sd->meta));
	TRY("close the null device", blkdev_close(sd->data));
	unlink(path);
}

static uint64_t size_arg(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 10);

	switch (*end) {
	case 'T': case 't': v <<= 10; /* fall through */
	case 'G': case 'g': v <<= 10; /* fall through */
	case 'M': case 'm': v <<= 20; break;
	case 'K': case 'k': v <<= 10; break;
	}
	return v;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "runs", required_argument, NULL, 'r' },
		{ "runtime", required_argument, NULL, 't' },
		{ "qd", required_argument, NULL, 'q' },
		{ "small-size", required_argument, NULL, 's' },
		{ "vol-size", required_argument, NULL, 'v' },
		{ "big-size", required_argument, NULL, 'b' },
		{ "snaps", required_argument, NULL, 'n' },
		{ "no-big", no_argument, NULL, 'B' },
		{ "no-small", no_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 }
	};
	struct ev_loop *loop;
	int c;

	while ((c = getopt_long(argc, argv, "d:r:t:q:s:v:b:n:BS", lo, NULL)) != -1) {
		switch (c) {
		case 'd': o.dir = optarg; break;
		case 'r': o.runs = (unsigned)atoi(optarg); break;
		case 't': o.runtime = atof(optarg); break;
		case 'q': o.qd = (unsigned)atoi(optarg); break;
		case 's': o.small_size = size_arg(optarg); break;
		case 'v': o.vol_size = size_arg(optarg); break;
		case 'b': o.big_size = size_arg(optarg); break;
		case 'n': o.snaps = (unsigned)atoi(optarg); break;
		case 'B': o.no_big = true; break;
		case 'S': o.no_small = true; break;
		default:
			fprintf(stderr, "usage: thin-bench [--dir DIR] [--runs N] [--runtime S] "
				"[--qd N] [--small-size B] [--vol-size B] [--big-size B] "
				"[--snaps N] [--no-big] [--no-small]\n");
			return 2;
		}
	}
	/* the volume, then a copy of each of its chunks after a snapshot */
	if (!o.runs || !o.qd || o.qd > MAXQD || o.snaps < 100 ||
	    o.vol_size / 2 * 5 > o.small_size) {
		fprintf(stderr, "thin-bench: bad arguments\n");
		return 2;
	}
	log_set_level(LOG_WARN);
	TRY("event loop", ev_loop_new(EV_AUTO, 256, &loop));
	if (!o.no_small)
		small(loop);
	if (!o.no_big)
		big(loop);
	ev_loop_free(loop);
	return 0;
}
