/* SPDX-License-Identifier: MIT */
/*
 * 10,000 volumes and snapshots in one pool: create them (half volumes,
 * half their snapshots, some with data), list, check, reopen, list and
 * check again, read some back, delete them all in a random order; every
 * chunk and metadata block comes back. Each phase is timed and printed,
 * with a generous bound. THIN_SCALE_VOLS=N changes the total.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "sand/thin.h"
#include "test_thin_io.h"

#define CHUNK		(64u * 1024)
#define VOLSZ		(1u << 20)
#define BOUND_S		240.0		/* per phase: a loaded, sanitized build */

static struct thin_open_opts oo_scale = { .cache_blocks = 256, .commit_ms = 600000 };

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double lap(double *t0, const char *what, unsigned n)
{
	double t = now(), d = t - *t0;

	printf("thin scale: %-28s %6u in %7.3f s (%.1f us each)\n", what, n, d, d * 1e6 / n);
	ck_assert_msg(d < BOUND_S, "%s took %.1f s", what, d);
	*t0 = t;
	return d;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void names_are(struct thin_pool *p, unsigned total)
{
	char (*names)[THIN_NAME_MAX];
	char want[THIN_NAME_MAX];
	unsigned n;

	T_EQ(thin_vol_list(p, &names, &n), 0);
	T_EQ(n, total);
	qsort(names, n, THIN_NAME_MAX, cmp_name);
	for (unsigned i = 0; i < n; i++) {
		snprintf(want, sizeof(want), i % 2 ? "v%05u@s" : "v%05u", i / 2);
		if (strcmp(names[i], want))
			ck_abort_msg("name %u: '%s', not '%s'", i, names[i], want);
	}
	free(names);
}

static void data_ok(struct thin_pool *p, unsigned v, bool snap)
{
	static uint8_t buf[4096];
	char name[THIN_NAME_MAX];
	struct blkdev *bd;

	snprintf(name, sizeof(name), snap ? "v%05u@s" : "v%05u", v);
	T_EQ(thin_vol_open(p, name, &bd), 0);
	T_EQ(tio(bd, BIO_READ, 0, 8192, buf, 4096), 0);
	for (unsigned i = 0; i < 4096; i += 8)
		T_EQ(get_le64(buf + i), v % 10 ? 0 : (uint64_t)v << 16 | i);
	T_EQ(tio_close(bd), 0);
}

START_TEST(t_scale)
{
	unsigned total = (unsigned)env_u64("THIN_SCALE_VOLS", 10000) / 2 * 2, half = total / 2;
	struct thin_format_opts fo = { .chunk_size = CHUNK, .meta_size = 6ull * total * 4096 };
	struct thin_pool_info pi0, pi;
	struct thin_check_report r;
	struct blkdev *mem, *bd;
	struct thin_pool *p;
	char name[THIN_NAME_MAX], sname[THIN_NAME_MAX];
	static uint8_t buf[4096];
	unsigned *order;
	uint64_t seed = 42;
	double t0;

	T_EQ(blk_mem_create("scale", fo.meta_size + (64u << 20), 512, &mem), 0);
	T_EQ(thin_pool_format(mem, &fo), 0);
	T_EQ(thin_pool_open(mem, &oo_scale, &p), 0);
	T_EQ(thin_pool_info(p, &pi0), 0);
	t0 = now();
	for (unsigned v = 0; v < half; v++) {
		snprintf(name, sizeof(name), "v%05u", v);
		T_EQ(thin_vol_create(p, name, VOLSZ), 0);
		if (v % 10 == 0) {
			T_EQ(thin_vol_open(p, name, &bd), 0);
			for (unsigned i = 0; i < 4096; i += 8)
				put_le64(buf + i, (uint64_t)v << 16 | i);
			T_EQ(tio(bd, BIO_WRITE, 0, 8192, buf, 4096), 0);
			T_EQ(tio_close(bd), 0);
		}
	}
	lap(&t0, "volumes created", half);
	for (unsigned v = 0; v < half; v++) {
		snprintf(name, sizeof(name), "v%05u", v);
		snprintf(sname, sizeof(sname), "v%05u@s", v);
		T_EQ(thin_snap_create(p, name, sname), 0);
	}
	lap(&t0, "snapshots created", half);
	names_are(p, total);
	lap(&t0, "listed", total);
	T_EQ(thin_pool_info(p, &pi), 0);
	T_EQ(pi.volumes, total);
	T_EQ(thin_pool_check(p, &r), 0);
	T_EQ(r.volumes, total);
	lap(&t0, "checked", total);
	printf("thin scale: %u volumes: %llu metadata blocks in use (%.0f bytes per volume)\n",
	       total, (unsigned long long)(pi.meta_blocks - pi.free_meta_blocks),
	       (double)(pi.meta_blocks - pi.free_meta_blocks) * 4096 / total);
	T_EQ(thin_pool_close(p), 0);
	T_EQ(thin_pool_open(mem, &oo_scale, &p), 0);
	lap(&t0, "closed and reopened", total);
	names_are(p, total);
	T_EQ(thin_pool_check(p, &r), 0);
	T_EQ(r.volumes, total);
	lap(&t0, "listed and checked again", total);
	for (unsigned v = 0; v < half; v += half / 50 ? half / 50 : 1) {
		data_ok(p, v, false);
		data_ok(p, v, true);
		data_ok(p, v / 10 * 10, true);
	}
	/* delete everything, origins and snapshots in a random order */
	order = malloc(total * sizeof(*order));
	T_TRUE(order);
	for (unsigned i = 0; i < total; i++)
		order[i] = i;
	for (unsigned i = total; i > 1; i--) {
		unsigned j = (unsigned)(rnd(&seed) % i), t = order[i - 1];

		order[i - 1] = order[j];
		order[j] = t;
	}
	t0 = now();
	for (unsigned i = 0; i < total; i++) {
		snprintf(name, sizeof(name), order[i] % 2 ? "v%05u@s" : "v%05u", order[i] / 2);
		T_EQ(thin_vol_delete(p, name), 0);
	}
	lap(&t0, "deleted", total);
	free(order);
	T_EQ(thin_pool_commit(p), 0);
	T_EQ(thin_pool_info(p, &pi), 0);
	T_EQ(pi.volumes, 0);
	T_EQ(pi.free_chunks, pi.data_chunks);
	T_EQ(pi.free_meta_blocks, pi0.free_meta_blocks);
	T_EQ(thin_pool_check(p, &r), 0);
	T_EQ(thin_pool_close(p), 0);
	T_EQ(blkdev_close(mem), 0);
	tio_done();
}
END_TEST

static Suite *scale_suite(void)
{
	Suite *s = suite_create("thin_scale");
	TCase *tc = tcase_create("scale");

	tcase_set_timeout(tc, 1200);
	tcase_add_test(tc, t_scale);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(scale_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
