/* SPDX-License-Identifier: MIT */
/*
 * Changing a pool's low-space mark while it runs (the daemon's pool.set):
 * the same rule as at open, applied at once to the free chunks now.
 */
#include "sand/log.h"
#include "snapshot/pool.h"

static int set_owner(struct thin_pool *p, void *arg)
{
	uint64_t free_chunks = sm_nr_free(tm_dsm(p->tm));

	p->low_water = *(uint64_t *)arg;
	if (!p->low_space)
		return 0;
	if (free_chunks < p->low_water && !p->low) {
		p->low = true;
		LOG_WARN(LS_THIN, "%s: low on data space: %llu chunks free", p->dev->name,
			 (unsigned long long)free_chunks);
		p->low_space(p->low_space_arg, free_chunks);
	} else if (free_chunks >= p->low_water) {
		p->low = false;
	}
	return 0;
}

int thin_pool_set_low_water(struct thin_pool *p, uint64_t chunks)
{
	return pool_call(p, set_owner, &chunks);
}
