/* SPDX-License-Identifier: MIT */
/* Per-connection task buffers (bufcache.h). */
#include <stdlib.h>
#include "daemon/iscsi/bufcache.h"

static uint32_t buf_class(uint32_t len)
{
	uint32_t c = 4096;

	if (len > (1u << 20))
		return (len + (1u << 20) - 1) & ~((1u << 20) - 1);
	while (c < len)
		c <<= 1;
	return c;
}

void *iscsi_buf_get(struct iscsi_bufcache *bc, uint32_t len, uint32_t *cap)
{
	uint32_t want = buf_class(len);
	void *p;

	for (unsigned i = bc->n; i--;) {
		if (bc->ent[i].cap != want)
			continue;
		p = bc->ent[i].p;
		bc->ent[i] = bc->ent[--bc->n];
		bc->bytes -= want;
		*cap = want;
		return p;
	}
	if (posix_memalign(&p, 4096, want))
		return NULL;
	*cap = want;
	return p;
}

void iscsi_buf_put(struct iscsi_bufcache *bc, void *p, uint32_t cap)
{
	if (!p)
		return;
	if (bc->n == BUFCACHE_MAX_ENTS || bc->bytes + cap > BUFCACHE_MAX_BYTES) {
		free(p);
		return;
	}
	bc->ent[bc->n].p = p;
	bc->ent[bc->n].cap = cap;
	bc->n++;
	bc->bytes += cap;
}

void iscsi_buf_drain(struct iscsi_bufcache *bc)
{
	while (bc->n)
		free(bc->ent[--bc->n].p);
	bc->bytes = 0;
}
