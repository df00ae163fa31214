/* SPDX-License-Identifier: MIT */
/*
 * Task buffers kept per connection, so that a steady stream of commands
 * allocates nothing: page-aligned (O_DIRECT disks read and write them in
 * place), in size classes (powers of two from 4 KiB, then multiples of
 * 1 MiB), at most BUFCACHE_MAX_BYTES and BUFCACHE_MAX_ENTS kept. Not
 * thread-safe: a connection's reactor only.
 *
 * Why: a fresh posix_memalign of 1 MiB per command was given back to the
 * kernel at free (glibc's madvise) and faulted in and zeroed again inside
 * the next read's copy: about a third of the target's CPU at 1 MiB.
 */
#ifndef SAND_ISCSI_BUFCACHE_H
#define SAND_ISCSI_BUFCACHE_H

#include <stddef.h>
#include <stdint.h>

#define BUFCACHE_MAX_BYTES	(32u << 20)
#define BUFCACHE_MAX_ENTS	64

struct iscsi_bufcache {
	struct {
		void		*p;
		uint32_t	cap;
	} ent[BUFCACHE_MAX_ENTS];
	unsigned	n;
	size_t		bytes;
};

/* A buffer of at least len bytes (len > 0); *cap says how much it holds
 * and goes back with it. NULL when out of memory. */
void *iscsi_buf_get(struct iscsi_bufcache *bc, uint32_t len, uint32_t *cap);
void iscsi_buf_put(struct iscsi_bufcache *bc, void *p, uint32_t cap);
void iscsi_buf_drain(struct iscsi_bufcache *bc);

#endif
