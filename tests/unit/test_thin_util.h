/* SPDX-License-Identifier: MIT */
/* Helpers shared by the thin metadata tests (a header: other .c files in
 * tests/unit would be linked into every test binary). */
#ifndef TEST_THIN_UTIL_H
#define TEST_THIN_UTIL_H

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include "sand/blkdev.h"
#include "sand/fault.h"
#include "snapshot/meta/meta.h"

struct tenv {
	struct blkdev	*mem;
	struct blkdev	*fd;		/* fault device over mem, or NULL */
};

static inline void tenv_open(struct tenv *e, uint64_t size, uint32_t bs, bool fault)
{
	e->fd = NULL;
	ck_assert_int_eq(blk_mem_create("thinmem", size, bs, &e->mem), 0);
	if (fault)
		ck_assert_int_eq(blk_fault_create("thinfault", e->mem, &e->fd), 0);
}

static inline struct blkdev *tenv_dev(struct tenv *e)
{
	return e->fd ? e->fd : e->mem;
}

static inline void tenv_close(struct tenv *e)
{
	if (e->fd)
		ck_assert_int_eq(blkdev_close(e->fd), 0);
	ck_assert_int_eq(blkdev_close(e->mem), 0);
}

/* Cheap checks for hot loops: ck_assert_* writes to Check's pipe on every
 * call, which costs more than the code under test. */
#define T_EQ(a, b) do { \
		long long _a = (long long)(a), _b = (long long)(b); \
		if (_a != _b) \
			ck_abort_msg("%s:%d: %s == %lld, %s == %lld", __FILE__, __LINE__, \
				     #a, _a, #b, _b); \
	} while (0)
#define T_TRUE(c) do { \
		if (!(c)) \
			ck_abort_msg("%s:%d: %s", __FILE__, __LINE__, #c); \
	} while (0)

/* xorshift64*: deterministic, seeded per test */
static inline uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

#endif
