/* SPDX-License-Identifier: MIT */
/*
 * Small helpers every module uses: container_of, an intrusive doubly linked
 * list, byte-order accessors for wire and disk structures, and size parsing.
 * Everything here is header-only or lives in common/util.c.
 */
#ifndef SAND_COMMON_H
#define SAND_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>

#define SAND_VERSION "0.1.0"

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define likely(x)	__builtin_expect(!!(x), 1)
#define unlikely(x)	__builtin_expect(!!(x), 0)
#define MIN(a, b)	((a) < (b) ? (a) : (b))
#define MAX(a, b)	((a) > (b) ? (a) : (b))
#define DIV_ROUND_UP(n, d)	(((n) + (d) - 1) / (d))
#define IS_POW2(x)	((x) != 0 && ((x) & ((x) - 1)) == 0)
#define UNUSED		__attribute__((unused))

/* --- intrusive doubly linked list (circular, with a head node) --- */
struct list_head {
	struct list_head *next, *prev;
};

#define LIST_HEAD_INIT(name)	{ &(name), &(name) }

static inline void list_init(struct list_head *h) { h->next = h->prev = h; }
static inline bool list_empty(const struct list_head *h) { return h->next == h; }

static inline void list_add_tail(struct list_head *n, struct list_head *h)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static inline void list_add(struct list_head *n, struct list_head *h)
{
	n->next = h->next;
	n->prev = h;
	h->next->prev = n;
	h->next = n;
}

static inline void list_del(struct list_head *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}

#define list_entry(ptr, type, member)	container_of(ptr, type, member)
#define list_first_entry(h, type, member) list_entry((h)->next, type, member)
#define list_for_each(pos, h) \
	for ((pos) = (h)->next; (pos) != (h); (pos) = (pos)->next)
#define list_for_each_safe(pos, tmp, h) \
	for ((pos) = (h)->next, (tmp) = (pos)->next; (pos) != (h); \
	     (pos) = (tmp), (tmp) = (pos)->next)

/* --- byte order: wire (big endian) and disk (little endian) accessors --- */
static inline uint16_t get_be16(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)(b[0] << 8 | b[1]);
}
static inline uint32_t get_be32(const void *p)
{
	const uint8_t *b = p;
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}
static inline uint64_t get_be64(const void *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32((const uint8_t *)p + 4);
}
static inline void put_be16(void *p, uint16_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)(v >> 8);
	b[1] = (uint8_t)v;
}
static inline void put_be32(void *p, uint32_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)(v >> 24);
	b[1] = (uint8_t)(v >> 16);
	b[2] = (uint8_t)(v >> 8);
	b[3] = (uint8_t)v;
}
static inline void put_be64(void *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32((uint8_t *)p + 4, (uint32_t)v);
}
static inline uint16_t get_le16(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)(b[1] << 8 | b[0]);
}
static inline uint32_t get_le32(const void *p)
{
	const uint8_t *b = p;
	return (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
}
static inline uint64_t get_le64(const void *p)
{
	return (uint64_t)get_le32((const uint8_t *)p + 4) << 32 | get_le32(p);
}
static inline void put_le16(void *p, uint16_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
}
static inline void put_le32(void *p, uint32_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
	b[2] = (uint8_t)(v >> 16);
	b[3] = (uint8_t)(v >> 24);
}
static inline void put_le64(void *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32((uint8_t *)p + 4, (uint32_t)(v >> 32));
}

/* --- util.c --- */

/*
 * Parse a size such as "4096", "512K", "10G", "1T" (binary units, optional
 * trailing "iB"/"B"). Returns 0 and sets *out, or -EINVAL / -ERANGE.
 */
int parse_size(const char *s, uint64_t *out);

/* Format bytes as "1.5G" style into buf (at least 16 bytes). */
const char *format_size(uint64_t bytes, char *buf, size_t len);

/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);

struct sockaddr;
/*
 * bind(2) for listeners. While the daemon restores its state after a
 * crash, the address may still be held for a moment by the listener of
 * the process that died (io_uring releases a dead process's sockets
 * asynchronously): during that window EADDRINUSE is retried, up to the
 * time set with bind_retry_window() (0, the default: no retry). Returns
 * 0 or -errno.
 */
int bind_listener(int fd, const struct sockaddr *sa, unsigned len);
void bind_retry_window(unsigned ms);

/*
 * memcpy into (or out of) a shared file mapping that may fault: a page past
 * the file's end (cut under us) or one tmpfs cannot allocate (full) raises
 * SIGBUS, which here ends the copy with -EFAULT instead of the process; part
 * of dst may have been written. Any other SIGBUS still kills the process
 * (the handler puts the default action back and raises it). 0 or -EFAULT.
 */
int copy_guarded(void *dst, const void *src, size_t len);

#endif
