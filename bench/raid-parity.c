/* SPDX-License-Identifier: MIT */
/*
 * raid-parity: how fast one core generates RAID 5/6 parity and rebuilds lost
 * columns with ISA-L (through raid/raid_parity.c), next to memcpy of the
 * same data and a plain-C XOR. Figures are GB/s of data columns processed
 * (k columns of len bytes per call), best of a few runs.
 *
 *   build/bench/raid-parity [len_kib] [seconds_per_case]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/common.h"
#include "sand/raid.h"

static size_t len = 64 * 1024;
static double secs = 0.2;

typedef void (*case_fn)(int k, uint8_t **b);

static void do_memcpy(int k, uint8_t **b)
{
	for (int j = 0; j < k; j++)
		memcpy(b[k + 2 + (j & 1)], b[j], len);
}

static void do_xor_c(int k, uint8_t **b)
{
	uint64_t *p = (uint64_t *)(void *)b[k];

	memcpy(p, b[0], len);
	for (int j = 1; j < k; j++) {
		const uint64_t *d = (const uint64_t *)(const void *)b[j];

		for (size_t i = 0; i < len / 8; i++)
			p[i] ^= d[i];
	}
}

static void do_p(int k, uint8_t **b)
{
	raid_parity_gen(1, k, len, b);
}

static void do_pq(int k, uint8_t **b)
{
	raid_parity_gen(2, k, len, b);
}

static void do_rec1(int k, uint8_t **b)
{
	raid_recover(1, k, len, b, (int[]){ 1 }, 1);
}

static void do_rec2(int k, uint8_t **b)
{
	raid_recover(2, k, len, b, (int[]){ 0, k / 2 }, 2);
}

static double run(case_fn fn, int k, uint8_t **b)
{
	double best = 0;

	for (int rep = 0; rep < 3; rep++) {
		uint64_t t0 = now_ns(), t, n = 0;

		do {
			for (int i = 0; i < 16; i++)
				fn(k, b);
			n += 16;
			t = now_ns();
		} while (t - t0 < (uint64_t)(secs * 1e9 / 3));
		best = MAX(best, (double)n * (double)k * (double)len / (double)(t - t0));
	}
	return best;	/* bytes per ns = GB/s */
}

int main(int argc, char **argv)
{
	static const struct { const char *name; case_fn fn; } cases[] = {
		{ "memcpy", do_memcpy },
		{ "xor plain C", do_xor_c },
		{ "P (xor_gen)", do_p },
		{ "P+Q (pq_gen)", do_pq },
		{ "rebuild 1 (P)", do_rec1 },
		{ "rebuild 2 (P+Q)", do_rec2 },
	};
	static const int ks[] = { 2, 4, 8, 14 };
	uint8_t *b[16 + 4];

	if (argc > 1)
		len = (size_t)atoi(argv[1]) * 1024;
	if (argc > 2)
		secs = atof(argv[2]);
	if (!len || len % 32) {
		fprintf(stderr, "usage: raid-parity [len_kib] [seconds]\n");
		return 2;
	}
	for (size_t i = 0; i < ARRAY_SIZE(b); i++) {
		b[i] = aligned_alloc(64, len);
		for (size_t j = 0; j < len; j++)
			b[i][j] = (uint8_t)(i * 131 + j * 7);
	}
	printf("raid-parity: %zu KiB per column, GB/s of data per core\n", len / 1024);
	printf("%-18s", "k (data columns)");
	for (size_t i = 0; i < ARRAY_SIZE(ks); i++)
		printf("%10d", ks[i]);
	printf("\n");
	for (size_t c = 0; c < ARRAY_SIZE(cases); c++) {
		printf("%-18s", cases[c].name);
		for (size_t i = 0; i < ARRAY_SIZE(ks); i++)
			printf("%10.2f", run(cases[c].fn, ks[i], b));
		printf("\n");
	}
	for (size_t i = 0; i < ARRAY_SIZE(b); i++)
		free(b[i]);
	return 0;
}
