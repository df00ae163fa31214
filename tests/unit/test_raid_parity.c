/* SPDX-License-Identifier: MIT */
/*
 * Parity: ISA-L's P and Q against a plain-C reference, and recovery of
 * every choice of one or two lost columns, on random buffers.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sand/raid.h"

#define LEN	4096u

/* GF(2^8), polynomial 0x11d. */
static uint8_t ref_mul2(uint8_t a)
{
	return (uint8_t)(a << 1) ^ (a & 0x80 ? 0x1d : 0);
}

static uint8_t ref_mul(uint8_t a, uint8_t b)
{
	uint8_t r = 0;

	while (b) {
		if (b & 1)
			r ^= a;
		a = ref_mul2(a);
		b >>= 1;
	}
	return r;
}

/* P = xor D_j; Q = sum 2^j D_j (Horner from the last column). */
static void ref_pq(int k, size_t len, uint8_t **d, uint8_t *p, uint8_t *q)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t pv = 0, qv = 0;

		for (int j = k - 1; j >= 0; j--) {
			pv ^= d[j][i];
			qv = ref_mul2(qv) ^ d[j][i];
		}
		p[i] = pv;
		if (q)
			q[i] = qv;
	}
}

static uint8_t **alloc_cols(int n)
{
	uint8_t **b = calloc((size_t)n, sizeof(*b));

	for (int i = 0; i < n; i++) {
		b[i] = aligned_alloc(64, LEN);
		for (size_t j = 0; j < LEN; j++)
			b[i][j] = (uint8_t)random();
	}
	return b;
}

static void free_cols(uint8_t **b, int n)
{
	for (int i = 0; i < n; i++)
		free(b[i]);
	free(b);
}

START_TEST(gf_reference)
{
	/* the reference multiplies like a field: 2 * 0x8e = 1 for 0x11d */
	ck_assert_uint_eq(ref_mul(2, 0x8e), 1);
	ck_assert_uint_eq(ref_mul(0x53, 1), 0x53);
}
END_TEST

START_TEST(p_and_q_vs_reference)
{
	srandom(1);
	for (int k = 2; k <= 12; k++) {
		uint8_t **b = alloc_cols(k + 2);
		uint8_t *p = malloc(LEN), *q = malloc(LEN);

		ref_pq(k, LEN, b, p, q);
		ck_assert_int_eq(raid_parity_gen(2, k, LEN, b), 0);
		ck_assert_mem_eq(b[k], p, LEN);
		ck_assert_mem_eq(b[k + 1], q, LEN);
		ck_assert_int_eq(raid_parity_gen(1, k, LEN, b), 0);
		ck_assert_mem_eq(b[k], p, LEN);
		free(p);
		free(q);
		free_cols(b, k + 2);
	}
	ck_assert_int_eq(raid_parity_gen(1, 2, 100, (uint8_t *[3]){0}), -EINVAL);
}
END_TEST

static void lose_and_recover(int nparity, int k, const int *lost, int nlost)
{
	int n = k + nparity;
	uint8_t **b = alloc_cols(n);
	uint8_t **save = alloc_cols(n);

	ck_assert_int_eq(raid_parity_gen(nparity, k, LEN, b), 0);
	for (int i = 0; i < n; i++)
		memcpy(save[i], b[i], LEN);
	for (int i = 0; i < nlost; i++)
		memset(b[lost[i]], 0xa5, LEN);
	ck_assert_int_eq(raid_recover(nparity, k, LEN, b, lost, nlost), 0);
	for (int i = 0; i < n; i++)
		ck_assert_mem_eq(b[i], save[i], LEN);
	free_cols(b, n);
	free_cols(save, n);
}

START_TEST(recover_raid5)
{
	srandom(2);
	for (int k = 2; k <= 9; k++)
		for (int a = 0; a <= k; a++)
			lose_and_recover(1, k, (int[]){ a }, 1);
	ck_assert_int_eq(raid_recover(1, 3, LEN, NULL, (int[]){ 0, 1 }, 2), -EINVAL);
}
END_TEST

START_TEST(recover_raid6)
{
	srandom(3);
	for (int k = 2; k <= 8; k++)
		for (int a = 0; a < k + 2; a++) {
			lose_and_recover(2, k, (int[]){ a }, 1);
			for (int c = a + 1; c < k + 2; c++)
				lose_and_recover(2, k, (int[]){ c, a }, 2);
		}
}
END_TEST

/* Recovery by the textbook raid6 formulas (H. P. Anvin) for two lost data
 * columns x < y, as a second opinion on the matrix inversion. */
START_TEST(recover_two_data_formula)
{
	int k = 6, x = 1, y = 4;
	uint8_t **b = alloc_cols(k + 2);
	uint8_t *dx = malloc(LEN), *dy = malloc(LEN);
	uint8_t gx = 1, gy = 1, inv;

	srandom(4);
	ck_assert_int_eq(raid_parity_gen(2, k, LEN, b), 0);
	for (int i = 0; i < x; i++)
		gx = ref_mul2(gx);
	for (int i = 0; i < y; i++)
		gy = ref_mul2(gy);
	for (inv = 1; ref_mul(inv, gx ^ gy) != 1; inv++)
		;
	for (size_t i = 0; i < LEN; i++) {
		uint8_t pxy = b[k][i], qxy = b[k + 1][i], g = 1;

		for (int j = 0; j < k; j++, g = ref_mul2(g)) {
			if (j == x || j == y)
				continue;
			pxy ^= b[j][i];
			qxy ^= ref_mul(g, b[j][i]);
		}
		/* gx*Dx + gy*Dy = qxy, Dx + Dy = pxy */
		dx[i] = ref_mul(inv, qxy ^ ref_mul(gy, pxy));
		dy[i] = pxy ^ dx[i];
	}
	ck_assert_mem_eq(dx, b[x], LEN);
	ck_assert_mem_eq(dy, b[y], LEN);
	memset(b[x], 0, LEN);
	memset(b[y], 0, LEN);
	ck_assert_int_eq(raid_recover(2, k, LEN, b, (int[]){ x, y }, 2), 0);
	ck_assert_mem_eq(dx, b[x], LEN);
	ck_assert_mem_eq(dy, b[y], LEN);
	free(dx);
	free(dy);
	free_cols(b, k + 2);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("raid_parity");
	TCase *tc = tcase_create("parity");

	tcase_add_test(tc, gf_reference);
	tcase_add_test(tc, p_and_q_vs_reference);
	tcase_add_test(tc, recover_raid5);
	tcase_add_test(tc, recover_raid6);
	tcase_add_test(tc, recover_two_data_formula);
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
	return nf ? 1 : 0;
}
