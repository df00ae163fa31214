/* SPDX-License-Identifier: MIT */
/*
 * Address maps: where a byte of the set lives on its members, and back.
 *
 * The set's address space is cut into strips of g->strip bytes. Strip s of
 * the set is data column s % k of stripe s / k, k being the data columns per
 * stripe. Stripe r occupies bytes [r * strip, (r + 1) * strip) of the data
 * area of every member (the same row on each member).
 *
 *   RAID 0   column c on member c
 *   RAID 1   one column, on every member
 *   RAID 10  column c on members 2c and 2c + 1 (near layout, 2 copies)
 *   RAID 5   left-symmetric (md's default): P on member n-1 - r % n, data
 *            column c on member (P + 1 + c) % n
 *   RAID 6   left-symmetric P+Q (md's default for RAID 6): P on member
 *            n-1 - r % n, Q on (P + 1) % n, data column c on (P + 2 + c) % n
 *
 * Rotating the data start with the parity (the "symmetric" part) means that
 * reading n consecutive strips touches every member once.
 */
#include <errno.h>
#include "sand/raid.h"

int raid_geom_check(const struct raid_geom *g)
{
	uint32_t n = g->nmembers;

	if (!IS_POW2(g->strip) || g->strip < 512 || n == 0 || n > RAID_MAX_MEMBERS)
		return -EINVAL;
	if (g->member_size % g->strip)
		return -EINVAL;
	switch (g->level) {
	case RAID_LEVEL_0:
		return n >= 1 ? 0 : -EINVAL;
	case RAID_LEVEL_1:
		return n >= 2 ? 0 : -EINVAL;
	case RAID_LEVEL_10:
		return n >= 4 && n % 2 == 0 ? 0 : -EINVAL;
	case RAID_LEVEL_5:
		return n >= 3 ? 0 : -EINVAL;
	case RAID_LEVEL_6:
		return n >= 4 ? 0 : -EINVAL;
	}
	return -EINVAL;
}

uint32_t raid_data_cols(const struct raid_geom *g)
{
	switch (g->level) {
	case RAID_LEVEL_0:	return g->nmembers;
	case RAID_LEVEL_1:	return 1;
	case RAID_LEVEL_10:	return g->nmembers / 2;
	case RAID_LEVEL_5:	return g->nmembers - 1;
	case RAID_LEVEL_6:	return g->nmembers - 2;
	}
	return 0;
}

uint32_t raid_redundancy(const struct raid_geom *g)
{
	switch (g->level) {
	case RAID_LEVEL_0:	return 0;
	case RAID_LEVEL_1:	return g->nmembers - 1;
	case RAID_LEVEL_10:	return 1;
	case RAID_LEVEL_5:	return 1;
	case RAID_LEVEL_6:	return 2;
	}
	return 0;
}

uint64_t raid_geom_size(const struct raid_geom *g)
{
	return g->member_size * raid_data_cols(g);
}

static uint32_t parity_member(const struct raid_geom *g, uint64_t stripe)
{
	return g->nmembers - 1 - (uint32_t)(stripe % g->nmembers);
}

uint32_t raid_stripe_cols(const struct raid_geom *g, uint64_t stripe, uint32_t *cols)
{
	uint32_t n = g->nmembers, k = raid_data_cols(g), p;

	switch (g->level) {
	case RAID_LEVEL_0:
	case RAID_LEVEL_1:
	case RAID_LEVEL_10:
		for (uint32_t i = 0; i < n; i++)
			cols[i] = i;
		break;
	case RAID_LEVEL_5:
		p = parity_member(g, stripe);
		for (uint32_t c = 0; c < k; c++)
			cols[c] = (p + 1 + c) % n;
		cols[k] = p;
		break;
	case RAID_LEVEL_6:
		p = parity_member(g, stripe);
		for (uint32_t c = 0; c < k; c++)
			cols[c] = (p + 2 + c) % n;
		cols[k] = p;
		cols[k + 1] = (p + 1) % n;
		break;
	}
	return n;
}

void raid_map(const struct raid_geom *g, uint64_t off, struct raid_loc *out)
{
	uint32_t k = raid_data_cols(g), n = g->nmembers;
	uint64_t strip = off / g->strip, in = off % g->strip;
	uint64_t stripe = strip / k;
	uint32_t col = (uint32_t)(strip % k);

	out->stripe = stripe;
	out->col = col;
	out->moff = stripe * g->strip + in;
	switch (g->level) {
	case RAID_LEVEL_0:
	case RAID_LEVEL_1:
		out->member = col;
		break;
	case RAID_LEVEL_10:
		out->member = 2 * col;
		break;
	case RAID_LEVEL_5:
		out->member = (parity_member(g, stripe) + 1 + col) % n;
		break;
	case RAID_LEVEL_6:
		out->member = (parity_member(g, stripe) + 2 + col) % n;
		break;
	}
}

int raid_unmap(const struct raid_geom *g, uint32_t member, uint64_t moff, uint64_t *off)
{
	uint32_t k = raid_data_cols(g), n = g->nmembers, col = 0, p;
	uint64_t stripe = moff / g->strip, in = moff % g->strip;

	if (member >= n || moff >= g->member_size)
		return -EINVAL;
	switch (g->level) {
	case RAID_LEVEL_0:
		col = member;
		break;
	case RAID_LEVEL_1:
		col = 0;
		break;
	case RAID_LEVEL_10:
		col = member / 2;
		break;
	case RAID_LEVEL_5:
		p = parity_member(g, stripe);
		if (member == p)
			return -ENOENT;
		col = (member + n - p - 1) % n;
		break;
	case RAID_LEVEL_6:
		p = parity_member(g, stripe);
		if (member == p || member == (p + 1) % n)
			return -ENOENT;
		col = (member + n - p - 2) % n;
		break;
	}
	*off = (stripe * k + col) * g->strip + in;
	return 0;
}
