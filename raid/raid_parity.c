/* SPDX-License-Identifier: MIT */
/*
 * Parity with ISA-L.
 *
 * P is the XOR of the data columns (xor_gen). Q is the Reed-Solomon
 * syndrome sum_j g^j * D_j over GF(2^8), polynomial 0x11d, g = 2: what
 * ISA-L's pq_gen computes and what Linux md writes, so the two agree on
 * disk.
 *
 * Recovery treats the stripe as an erasure code whose (k+2) x k generator
 * matrix has the identity on top (the data columns), a row of ones (P) and
 * the row g^0..g^(k-1) (Q). Taking k surviving rows, inverting that k x k
 * matrix (gf_invert_matrix) gives, for each lost data column, the
 * coefficients that rebuild it from the survivors (ec_init_tables +
 * ec_encode_data). Lost parity is then simply generated again. One lost data
 * column of RAID 5 (or of RAID 6 with P intact) is a plain XOR.
 */
#include <errno.h>
#include <string.h>
#include <isa-l/raid.h>
#include <isa-l/erasure_code.h>
#include "sand/raid.h"

int raid_parity_gen(int nparity, int k, size_t len, uint8_t **bufs)
{
	if (k < 1 || len % 32)
		return -EINVAL;
	if (nparity == 1)
		return xor_gen(k + 1, (int)len, (void **)bufs) ? -EINVAL : 0;
	if (nparity == 2)
		return pq_gen(k + 2, (int)len, (void **)bufs) ? -EINVAL : 0;
	return -EINVAL;
}

static uint8_t gf_pow2(int j)
{
	uint8_t v = 1;

	while (j-- > 0)
		v = gf_mul(v, 2);
	return v;
}

/* Row r of the generator matrix, column j. */
static uint8_t gen_coef(int k, int r, int j)
{
	if (r < k)
		return r == j;
	if (r == k)
		return 1;
	return gf_pow2(j);
}

int raid_recover(int nparity, int k, size_t len, uint8_t **bufs,
		 const int *lost, int nlost)
{
	bool is_lost[RAID_MAX_MEMBERS + 2] = { false };
	int ncols = k + nparity, nlost_data = 0, lost_data[2];

	if (k < 1 || k > RAID_MAX_MEMBERS || nparity < 1 || nparity > 2 ||
	    nlost < 0 || nlost > nparity || len % 32)
		return -EINVAL;
	for (int i = 0; i < nlost; i++) {
		if (lost[i] < 0 || lost[i] >= ncols || is_lost[lost[i]])
			return -EINVAL;
		is_lost[lost[i]] = true;
		if (lost[i] < k)
			lost_data[nlost_data++] = lost[i];
	}
	if (nlost_data == 0)
		goto parity;

	if (nlost_data == 1 && !is_lost[k]) {
		/* XOR of P and the other data columns */
		uint8_t *v[RAID_MAX_MEMBERS + 1];
		int nv = 0;

		for (int j = 0; j < k; j++)
			if (j != lost_data[0])
				v[nv++] = bufs[j];
		v[nv++] = bufs[k];
		v[nv++] = bufs[lost_data[0]];
		if (nv < 3) {
			/* k == 1: the column is a copy of P */
			memcpy(bufs[lost_data[0]], bufs[k], len);
		} else if (xor_gen(nv, (int)len, (void **)v)) {
			return -EINVAL;
		}
	} else {
		uint8_t b[RAID_MAX_MEMBERS * RAID_MAX_MEMBERS];
		uint8_t inv[RAID_MAX_MEMBERS * RAID_MAX_MEMBERS];
		uint8_t rows[2 * RAID_MAX_MEMBERS];
		uint8_t tbls[32 * RAID_MAX_MEMBERS * 2];
		uint8_t *src[RAID_MAX_MEMBERS], *dst[2];
		int ns = 0;

		for (int r = 0; r < ncols && ns < k; r++) {
			if (is_lost[r])
				continue;
			for (int j = 0; j < k; j++)
				b[ns * k + j] = gen_coef(k, r, j);
			src[ns++] = bufs[r];
		}
		if (ns < k || gf_invert_matrix(b, inv, k))
			return -EINVAL;
		for (int i = 0; i < nlost_data; i++) {
			memcpy(&rows[i * k], &inv[lost_data[i] * k], (size_t)k);
			dst[i] = bufs[lost_data[i]];
		}
		ec_init_tables(k, nlost_data, rows, tbls);
		ec_encode_data((int)len, k, nlost_data, tbls, src, dst);
	}
parity:
	for (int i = 0; i < nlost; i++)
		if (lost[i] >= k)
			return raid_parity_gen(nparity, k, len, bufs);
	return 0;
}
