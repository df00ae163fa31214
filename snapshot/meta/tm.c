/* SPDX-License-Identifier: MIT */
/*
 * Transaction manager: copy-on-write of metadata blocks and the two-phase
 * commit.
 *
 * Metadata layout (blocks of 4 KiB from the start of the device):
 *   0, 1        superblocks, written alternately (generation odd -> 1)
 *   2 ..        metadata space map slots (2 per refcount block)
 *   ..          data space map slots (2 per refcount block)
 *   ..          select blocks (2 slots each), only when the space maps'
 *               slot-select bits do not fit in the superblock
 *   alloc_begin .. meta_nblocks-1   B-tree nodes, allocated by the
 *               metadata space map
 *
 * A transaction only ever writes blocks that the last committed state does
 * not reference: blocks allocated in this transaction (they had count 0 at
 * the last commit, see sm.c) and the space maps' uncommitted slots. Commit
 * writes all of them, flushes, writes the superblock of the next generation
 * into the slot the last commit did not use, and flushes again. Open reads
 * both superblocks and takes the valid one with the higher generation, so a
 * crash anywhere before the second flush ends lands on the previous commit,
 * and a torn superblock is refused by its checksum.
 *
 * The set of blocks allocated in this transaction tells tm_shadow() which
 * blocks may be changed in place.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sand/common.h"
#include "sand/log.h"
#include "snapshot/meta/meta.h"

static const struct bm_validator sb_validator = { .name = "superblock", .magic = MAGIC_SUPER };

/* superblock offsets (little endian) */
#define SB_GEN		32
#define SB_META_NBLOCKS	40
#define SB_BLOCK_SIZE	48
#define SB_NSEL		52	/* le32: select blocks (0: bits inline) */
#define SB_MSM		56
#define SB_DSM		88
#define SB_SEL_BASE	120	/* le64: first select-block slot */
#define SB_USER		128	/* .. 503 */
/* Every 512-byte sector of a superblock ends with the same 8-byte stamp,
 * new for each superblock write. A write torn across sectors can otherwise
 * rebuild an earlier, failed attempt at the same generation (its first
 * sector plus later sectors that happen to be equal, which pass the
 * checksum); with stamps, a block mixing two writes is refused. The select
 * bits fill the first 504 bytes of sectors 1 to 7. */
#define SB_SECTOR	512
#define SB_STAMP	(SB_SECTOR - 8)
#define SB_NSECT	(META_BLOCK_SIZE / SB_SECTOR)
#define SB_SEL_MAX	((SB_NSECT - 1) * SB_STAMP)
#define SEL_PER_BLOCK	(META_BLOCK_SIZE - META_HDR_SIZE)	/* select bytes per select block */

static const struct bm_validator sel_validator = { .name = "select", .magic = MAGIC_SEL };

struct blkset {
	uint64_t	*v;		/* 0 = empty slot; we store nr + 1 */
	size_t		cap, n;
};

struct tm {
	struct blkdev	*dev;
	struct bm	*bm;
	struct sm	*msm, *dsm;
	uint64_t	gen;
	uint64_t	meta_nblocks;
	struct blkset	fresh;		/* allocated in this transaction */
	uint8_t		user[TM_USER_SIZE];

	/* select blocks: when the space maps' slot-select bits do not fit in
	 * the superblock, they live in nsel blocks of 2 slots each, and the
	 * superblock holds one select bit per select block */
	uint32_t	nsel;
	uint64_t	sel_base;
	uint8_t		*sel_com;	/* the select bytes as last committed */
	uint8_t		*sel_new;	/* as pre-commit wrote them */
	uint8_t		sb_bits[SB_SEL_MAX];	/* committed slot of each select block */
	uint8_t		sb_bits_new[SB_SEL_MAX];
	bool		sel_force;	/* write every select block (format) */
	uint64_t	nstamps;	/* superblock writes by this tm */
};

static bool sbit(const uint8_t *m, uint64_t i)
{
	return m[i / 8] >> (i % 8) & 1;
}

/* The select bytes in and out of a superblock, around the stamps. */
static void sel_put(uint8_t *sb, const uint8_t *src, size_t n)
{
	for (unsigned k = 1; n; k++) {
		size_t m = MIN(n, (size_t)SB_STAMP);

		memcpy(sb + k * SB_SECTOR, src, m);
		src += m;
		n -= m;
	}
}

static void sel_get(const uint8_t *sb, uint8_t *dst, size_t n)
{
	for (unsigned k = 1; n; k++) {
		size_t m = MIN(n, (size_t)SB_STAMP);

		memcpy(dst, sb + k * SB_SECTOR, m);
		dst += m;
		n -= m;
	}
}

static bool stamps_agree(const uint8_t *sb)
{
	for (unsigned k = 1; k < SB_NSECT; k++)
		if (get_le64(sb + k * SB_SECTOR + SB_STAMP) != get_le64(sb + SB_STAMP))
			return false;
	return true;
}

static size_t sel_total(struct tm *tm)
{
	return sm_sel_bytes(tm->msm) + sm_sel_bytes(tm->dsm);
}

/* The current select bytes of both space maps, one after the other. */
static void sel_build(struct tm *tm, uint8_t *buf)
{
	sm_get_sel(tm->msm, buf);
	sm_get_sel(tm->dsm, buf + sm_sel_bytes(tm->msm));
}

/* Pre-commit: each select block that changed goes to its other slot. */
static int sel_write(struct tm *tm)
{
	struct bm_block *b;
	uint32_t j;
	int rc;

	memset(tm->sel_new, 0, (size_t)tm->nsel * SEL_PER_BLOCK);
	sel_build(tm, tm->sel_new);
	memcpy(tm->sb_bits_new, tm->sb_bits, sizeof(tm->sb_bits));
	for (j = 0; j < tm->nsel; j++) {
		size_t off = (size_t)j * SEL_PER_BLOCK;

		if (!tm->sel_force && !memcmp(tm->sel_new + off, tm->sel_com + off, SEL_PER_BLOCK))
			continue;
		tm->sb_bits_new[j / 8] ^= (uint8_t)(1u << (j % 8));
		rc = bm_new(tm->bm, tm->sel_base + 2 * j + sbit(tm->sb_bits_new, j),
			    &sel_validator, &b);
		if (rc)
			return rc;
		memcpy(b->data + META_HDR_SIZE, tm->sel_new + off, SEL_PER_BLOCK);
		bm_unpin(tm->bm, b);
	}
	return 0;
}

/* Open: read the select blocks the superblock points at. */
static int sel_read(struct tm *tm, uint8_t *buf)
{
	struct bm_block *b;
	uint32_t j;
	int rc;

	for (j = 0; j < tm->nsel; j++) {
		rc = bm_read(tm->bm, tm->sel_base + 2 * j + sbit(tm->sb_bits, j), &sel_validator, &b);
		if (rc)
			return rc;
		memcpy(buf + (size_t)j * SEL_PER_BLOCK, b->data + META_HDR_SIZE, SEL_PER_BLOCK);
		bm_unpin(tm->bm, b);
	}
	return 0;
}

static int sel_alloc(struct tm *tm)
{
	size_t n = (size_t)tm->nsel * SEL_PER_BLOCK;

	tm->sel_com = calloc(2, n ? n : 1);
	if (!tm->sel_com)
		return -ENOMEM;
	tm->sel_new = tm->sel_com + n;
	return 0;
}

static size_t set_hash(uint64_t k, size_t cap)
{
	return (size_t)((k * 0x9e3779b97f4a7c15ull) >> 17) & (cap - 1);
}

static int set_add(struct blkset *s, uint64_t nr)
{
	uint64_t k = nr + 1;
	size_t i;

	if ((s->n + 1) * 2 > s->cap) {
		struct blkset ns = { .cap = s->cap ? s->cap * 2 : 256 };

		ns.v = calloc(ns.cap, sizeof(*ns.v));
		if (!ns.v)
			return -ENOMEM;
		for (i = 0; i < s->cap; i++)
			if (s->v[i])
				set_add(&ns, s->v[i] - 1);
		free(s->v);
		*s = ns;
	}
	for (i = set_hash(k, s->cap); s->v[i]; i = (i + 1) & (s->cap - 1))
		if (s->v[i] == k)
			return 0;
	s->v[i] = k;
	s->n++;
	return 0;
}

static bool set_has(const struct blkset *s, uint64_t nr)
{
	uint64_t k = nr + 1;
	size_t i;

	if (!s->cap)
		return false;
	for (i = set_hash(k, s->cap); s->v[i]; i = (i + 1) & (s->cap - 1))
		if (s->v[i] == k)
			return true;
	return false;
}

static void set_clear(struct blkset *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static void put_root(uint8_t *p, const struct sm_root *r)
{
	put_le64(p, r->base);
	put_le64(p + 8, r->nentries);
	put_le64(p + 16, r->nr_allocated);
	put_le64(p + 24, r->alloc_begin);
}

static void get_root(const uint8_t *p, struct sm_root *r)
{
	r->base = get_le64(p);
	r->nentries = get_le64(p + 8);
	r->nr_allocated = get_le64(p + 16);
	r->alloc_begin = get_le64(p + 24);
}

static void tm_free(struct tm *tm)
{
	sm_free(tm->dsm);
	sm_free(tm->msm);
	bm_destroy(tm->bm);
	set_clear(&tm->fresh);
	free(tm->sel_com);
	free(tm);
}

void tm_close(struct tm *tm)
{
	if (tm)
		tm_free(tm);
}

int tm_format(struct blkdev *dev, const struct tm_geom *g, struct tm **out)
{
	uint64_t nbm = sm_nblocks_for(g->meta_nblocks);
	uint64_t nbd = sm_nblocks_for(g->data_nentries);
	uint64_t sel_bytes, nsel = 0;
	struct sm_root mr, dr;
	uint8_t *zero;
	struct tm *tm;
	int rc;

	mr = (struct sm_root){ .base = 2, .nentries = g->meta_nblocks };
	dr = (struct sm_root){ .base = 2 + 2 * nbm, .nentries = g->data_nentries };
	sel_bytes = DIV_ROUND_UP(nbm, 8) + DIV_ROUND_UP(nbd, 8);
	if (sel_bytes > SB_SEL_MAX || g->sel_blocks)
		nsel = DIV_ROUND_UP(sel_bytes, SEL_PER_BLOCK);
	if (DIV_ROUND_UP(nsel, 8) > SB_SEL_MAX)
		return -EFBIG;
	mr.alloc_begin = dr.base + 2 * nbd + 2 * nsel;
	if (!g->data_nentries || mr.alloc_begin + 16 > g->meta_nblocks)
		return -EINVAL;
	tm = calloc(1, sizeof(*tm));
	if (!tm)
		return -ENOMEM;
	tm->dev = dev;
	tm->meta_nblocks = g->meta_nblocks;
	tm->nsel = (uint32_t)nsel;
	tm->sel_base = dr.base + 2 * nbd;
	tm->sel_force = true;
	rc = sel_alloc(tm);
	if (rc)
		goto free_tm;
	rc = bm_create(dev, g->meta_nblocks, g->cache_blocks ? g->cache_blocks : 1024, &tm->bm);
	if (rc)
		goto free_tm;
	/* no old superblock may outlive the format */
	rc = posix_memalign((void **)&zero, 4096, META_BLOCK_SIZE) ? -ENOMEM : 0;
	if (rc)
		goto free_tm;
	memset(zero, 0, META_BLOCK_SIZE);
	rc = bm_io(tm->bm, BIO_WRITE, 0, zero);
	if (!rc)
		rc = bm_io(tm->bm, BIO_WRITE, 1, zero);
	free(zero);
	if (rc)
		goto free_tm;
	rc = sm_format(tm->bm, &mr, &tm->msm);
	if (rc)
		goto free_tm;
	rc = sm_format(tm->bm, &dr, &tm->dsm);
	if (rc)
		goto free_tm;
	rc = tm_commit(tm);
	if (rc)
		goto free_tm;
	*out = tm;
	return 0;

free_tm:
	tm_free(tm);
	return rc;
}

static int read_super(struct blkdev *dev, uint8_t sb[2][META_BLOCK_SIZE], int *which)
{
	struct bm *bm;
	struct bm_block *b;
	uint64_t gen[2] = { 0, 0 };
	bool ok[2] = { false, false };
	int i, rc, err = -EUCLEAN;

	rc = bm_create(dev, 2, 16, &bm);
	if (rc)
		return rc;
	for (i = 0; i < 2; i++) {
		rc = bm_read(bm, (uint64_t)i, &sb_validator, &b);
		if (rc) {
			if (rc != -EUCLEAN)
				err = rc;
			continue;
		}
		memcpy(sb[i], b->data, META_BLOCK_SIZE);
		bm_unpin(bm, b);
		gen[i] = get_le64(sb[i] + SB_GEN);
		ok[i] = (gen[i] & 1) == (uint64_t)i && stamps_agree(sb[i]);
	}
	bm_destroy(bm);
	if (!ok[0] && !ok[1])
		return err;
	*which = ok[0] && ok[1] ? gen[1] > gen[0] : ok[1];
	if (!ok[0] || !ok[1])
		LOG_WARN(LS_THIN, "%s: superblock %d not valid, using generation %llu from %d",
			 dev->name, !*which, (unsigned long long)gen[*which], *which);
	return 0;
}

int tm_open(struct blkdev *dev, unsigned cache_blocks, struct tm **out)
{
	uint8_t (*sb)[META_BLOCK_SIZE];
	struct sm_root mr, dr;
	struct tm *tm;
	const uint8_t *s, *sel;
	uint8_t *selbuf;
	uint64_t sel_bytes;
	int which = 0, rc;

	sb = malloc(3 * META_BLOCK_SIZE);	/* both superblocks, their select bits */
	if (!sb)
		return -ENOMEM;
	selbuf = sb[2];
	rc = read_super(dev, sb, &which);
	if (rc) {
		LOG_ERR(LS_THIN, "%s: no valid superblock", dev->name);
		goto free_sb;
	}
	s = sb[which];
	rc = -EUCLEAN;
	if (get_le32(s + SB_BLOCK_SIZE) != META_BLOCK_SIZE)
		goto free_sb;
	tm = calloc(1, sizeof(*tm));
	rc = -ENOMEM;
	if (!tm)
		goto free_sb;
	tm->dev = dev;
	tm->gen = get_le64(s + SB_GEN);
	tm->meta_nblocks = get_le64(s + SB_META_NBLOCKS);
	get_root(s + SB_MSM, &mr);
	get_root(s + SB_DSM, &dr);
	memcpy(tm->user, s + SB_USER, TM_USER_SIZE);
	tm->nsel = get_le32(s + SB_NSEL);
	tm->sel_base = get_le64(s + SB_SEL_BASE);
	sel_bytes = DIV_ROUND_UP(sm_nblocks_for(mr.nentries), 8) +
		    DIV_ROUND_UP(sm_nblocks_for(dr.nentries), 8);
	if (tm->nsel ? DIV_ROUND_UP(tm->nsel, 8) > SB_SEL_MAX ||
		       (uint64_t)tm->nsel * SEL_PER_BLOCK < sel_bytes ||
		       tm->sel_base + 2ull * tm->nsel > tm->meta_nblocks
		     : sel_bytes > SB_SEL_MAX) {
		rc = -EUCLEAN;
		goto free_tm;
	}
	rc = sel_alloc(tm);
	if (rc)
		goto free_tm;
	rc = bm_create(dev, tm->meta_nblocks, cache_blocks ? cache_blocks : 1024, &tm->bm);
	if (rc)
		goto free_tm;
	sel_get(s, selbuf, SB_SEL_MAX);
	sel = selbuf;
	if (tm->nsel) {
		memcpy(tm->sb_bits, selbuf, DIV_ROUND_UP(tm->nsel, 8));
		rc = sel_read(tm, tm->sel_com);
		if (rc)
			goto free_tm;
		sel = tm->sel_com;
	}
	rc = sm_open(tm->bm, &mr, sel, &tm->msm);
	if (rc)
		goto free_tm;
	rc = sm_open(tm->bm, &dr, sel + sm_sel_bytes(tm->msm), &tm->dsm);
	if (rc)
		goto free_tm;
	free(sb);
	*out = tm;
	return 0;

free_tm:
	if (rc == -EINVAL)
		rc = -EUCLEAN;
	tm_free(tm);
free_sb:
	free(sb);
	return rc;
}

int tm_pre_commit(struct tm *tm)
{
	int rc;

	if (tm->nsel && (rc = sel_write(tm)))
		return rc;
	return bm_flush(tm->bm);
}

int tm_write_super(struct tm *tm, bool flush)
{
	struct bm_block *b;
	struct sm_root r;
	uint64_t gen = tm->gen + 1, stamp;
	uint8_t *d;
	int rc;

	rc = bm_new(tm->bm, gen & 1, &sb_validator, &b);
	if (rc)
		return rc;
	d = b->data;
	put_le64(d + SB_GEN, gen);
	put_le64(d + SB_META_NBLOCKS, tm->meta_nblocks);
	put_le32(d + SB_BLOCK_SIZE, META_BLOCK_SIZE);
	sm_get_root(tm->msm, &r);
	put_root(d + SB_MSM, &r);
	sm_get_root(tm->dsm, &r);
	put_root(d + SB_DSM, &r);
	memcpy(d + SB_USER, tm->user, TM_USER_SIZE);
	put_le32(d + SB_NSEL, tm->nsel);
	put_le64(d + SB_SEL_BASE, tm->sel_base);
	if (tm->nsel) {
		sel_put(d, tm->sb_bits_new, DIV_ROUND_UP(tm->nsel, 8));
	} else {
		uint8_t *buf = calloc(1, SB_SEL_MAX);

		if (!buf) {
			bm_unpin(tm->bm, b);
			return -ENOMEM;
		}
		sel_build(tm, buf);
		sel_put(d, buf, sel_total(tm));
		free(buf);
	}
	stamp = now_ns() ^ (++tm->nstamps << 40) ^ gen;
	for (unsigned k = 0; k < SB_NSECT; k++)
		put_le64(d + k * SB_SECTOR + SB_STAMP, stamp);
	rc = bm_write_now(tm->bm, b);
	bm_unpin(tm->bm, b);
	if (!rc && flush)
		rc = bm_io(tm->bm, BIO_FLUSH, 0, NULL);
	if (rc)
		return rc;
	tm->gen = gen;
	if (tm->nsel) {
		memcpy(tm->sb_bits, tm->sb_bits_new, sizeof(tm->sb_bits));
		memcpy(tm->sel_com, tm->sel_new, (size_t)tm->nsel * SEL_PER_BLOCK);
		tm->sel_force = false;
	}
	sm_committed(tm->msm);
	sm_committed(tm->dsm);
	set_clear(&tm->fresh);
	return 0;
}

int tm_commit(struct tm *tm)
{
	int rc = tm_pre_commit(tm);

	return rc ? rc : tm_write_super(tm, true);
}

struct bm *tm_bm(struct tm *tm) { return tm->bm; }
struct sm *tm_msm(struct tm *tm) { return tm->msm; }
struct sm *tm_dsm(struct tm *tm) { return tm->dsm; }
uint64_t tm_generation(struct tm *tm) { return tm->gen; }
uint8_t *tm_user(struct tm *tm) { return tm->user; }

int tm_new_block(struct tm *tm, const struct bm_validator *v, struct bm_block **out)
{
	uint64_t nr;
	int rc;

	rc = sm_alloc(tm->msm, &nr);
	if (rc)
		return rc;
	rc = set_add(&tm->fresh, nr);
	if (!rc)
		rc = bm_new(tm->bm, nr, v, out);
	if (rc)
		sm_dec(tm->msm, nr);
	return rc;
}

int tm_shadow(struct tm *tm, uint64_t nr, const struct bm_validator *v,
	      struct bm_block **out, bool *inc_children)
{
	struct bm_block *old, *b;
	uint32_t c;
	int rc;

	rc = sm_get_count(tm->msm, nr, &c);
	if (rc)
		return rc;
	if (c == 0) {
		LOG_RATELIMIT(LOG_ERROR, LS_THIN, "shadow of free block %llu", (unsigned long long)nr);
		return -EUCLEAN;
	}
	*inc_children = false;
	if (c == 1 && set_has(&tm->fresh, nr)) {
		rc = bm_read(tm->bm, nr, v, &b);
		if (rc)
			return rc;
		bm_dirty(b);
		*out = b;
		return 0;
	}
	rc = bm_read(tm->bm, nr, v, &old);
	if (rc)
		return rc;
	rc = tm_new_block(tm, v, &b);
	if (rc) {
		bm_unpin(tm->bm, old);
		return rc;
	}
	memcpy(b->data, old->data, META_BLOCK_SIZE);
	bm_unpin(tm->bm, old);
	rc = sm_dec(tm->msm, nr);
	if (rc) {
		bm_unpin(tm->bm, b);
		return rc;
	}
	*inc_children = c > 1;
	*out = b;
	return 0;
}

int tm_read(struct tm *tm, uint64_t nr, const struct bm_validator *v, struct bm_block **out)
{
	return bm_read(tm->bm, nr, v, out);
}

void tm_unpin(struct tm *tm, struct bm_block *b)
{
	bm_unpin(tm->bm, b);
}

int tm_inc(struct tm *tm, uint64_t nr)
{
	return sm_inc(tm->msm, nr);
}

int tm_dec(struct tm *tm, uint64_t nr)
{
	return sm_dec(tm->msm, nr);
}

int tm_count(struct tm *tm, uint64_t nr, uint32_t *count)
{
	return sm_get_count(tm->msm, nr, count);
}
