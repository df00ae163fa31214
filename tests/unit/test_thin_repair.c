/* SPDX-License-Identifier: MIT */
/*
 * thin_pool_check_ex and its repair, against metadata corrupted on purpose
 * (through the metadata layer, with valid checksums, or raw bytes on the
 * device): counts too high, leaked, too low; a wrong in-use record; a
 * damaged mapping tree. Each is found and named; repair fixes the counts,
 * the volumes keep their contents, and new allocations do not take chunks
 * still in use; a damaged tree is reported and nothing is changed, unless
 * its volume is dropped (drop_damaged), which the rest survives.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include "sand/fault.h"
#include "sand/thin.h"
#include "snapshot/pool.h"
#include "test_thin_io.h"

#define CHUNK		(64u * 1024)
#define VOLSZ		(2u << 20)	/* 32 chunks */

static struct thin_open_opts oo = { .cache_blocks = 64, .commit_ms = 600000 };

struct lines {
	unsigned	n;
	char		text[256][256];
};

static void collect(void *arg, const char *line)
{
	struct lines *l = arg;

	if (l->n < 256)
		snprintf(l->text[l->n++], sizeof(l->text[0]), "%s", line);
}

static struct lines l_salv;

static bool said(const struct lines *l, const char *what)
{
	for (unsigned i = 0; i < l->n; i++)
		if (strstr(l->text[i], what))
			return true;
	return false;
}

static void fill(uint8_t *buf, uint64_t len, uint64_t tag)
{
	for (uint64_t i = 0; i < len; i += 8)
		put_le64(buf + i, tag << 32 | i);
}

struct vm {
	const char	*name;
	uint8_t		m[VOLSZ];
};

static struct vm va = { .name = "a" }, vs = { .name = "a@s" }, vb = { .name = "b" };

/* a: chunks 0..5; a@s; a's chunk 0 again (a copy); b: chunk 2. */
static void setup(struct blkdev **mem, uint64_t *free0)
{
	struct thin_format_opts fo = { .chunk_size = CHUNK };
	struct thin_pool *p;
	struct thin_pool_info pi;
	struct blkdev *a, *b;
	static uint8_t buf[CHUNK];

	T_EQ(blk_mem_create("repair", 8u << 20, 512, mem), 0);
	T_EQ(thin_pool_format(*mem, &fo), 0);
	T_EQ(thin_pool_open(*mem, &oo, &p), 0);
	T_EQ(thin_vol_create(p, "a", VOLSZ), 0);
	T_EQ(thin_vol_create(p, "b", VOLSZ), 0);
	T_EQ(thin_vol_open(p, "a", &a), 0);
	T_EQ(thin_vol_open(p, "b", &b), 0);
	memset(va.m, 0, VOLSZ);
	memset(vb.m, 0, VOLSZ);
	for (uint64_t c = 0; c < 6; c++) {
		fill(buf, CHUNK, 0xa0 + c);
		T_EQ(tio(a, BIO_WRITE, 0, c * CHUNK, buf, CHUNK), 0);
		memcpy(va.m + c * CHUNK, buf, CHUNK);
	}
	T_EQ(thin_snap_create(p, "a", "a@s"), 0);
	memcpy(vs.m, va.m, VOLSZ);
	fill(buf, 4096, 0xa9);
	T_EQ(tio(a, BIO_WRITE, 0, 0, buf, 4096), 0);
	memcpy(va.m, buf, 4096);
	fill(buf, CHUNK, 0xb2);
	T_EQ(tio(b, BIO_WRITE, 0, 2 * CHUNK, buf, CHUNK), 0);
	memcpy(vb.m + 2 * CHUNK, buf, CHUNK);
	T_EQ(tio_close(a), 0);
	T_EQ(tio_close(b), 0);
	T_EQ(thin_pool_check(p, &(struct thin_check_report){ 0 }), 0);
	T_EQ(thin_pool_info(p, &pi), 0);
	*free0 = pi.free_chunks;
	T_EQ(thin_pool_close(p), 0);
}

static void verify(struct thin_pool *p, struct vm *v)
{
	static uint8_t buf[VOLSZ];
	struct blkdev *bd;

	T_EQ(thin_vol_open(p, v->name, &bd), 0);
	T_EQ(tio(bd, BIO_READ, 0, 0, buf, VOLSZ), 0);
	T_EQ(tio_close(bd), 0);
	for (uint64_t off = 0; off < VOLSZ; off += 512)
		if (memcmp(buf + off, v->m + off, 512))
			ck_abort_msg("%s differs at %llu", v->name, (unsigned long long)off);
}

/* The metadata layer on the closed pool's device. */
struct meta {
	struct tm		*tm;
	struct btree_info	vinfo, minfo;
	uint64_t		vroot;
};

static void meta_open(struct blkdev *dev, struct meta *m)
{
	T_EQ(tm_open(dev, 64, &m->tm), 0);
	m->vinfo = (struct btree_info){ .tm = m->tm, .value_size = VREC_SIZE };
	m->minfo = (struct btree_info){ .tm = m->tm, .value_size = 8 };
	m->vroot = get_le64(tm_user(m->tm) + U_VROOT);
}

static void meta_close(struct meta *m, bool commit)
{
	if (commit)
		T_EQ(tm_commit(m->tm), 0);
	tm_close(m->tm);
}

/* A volume's mapping root (volume ids: a 1, b 2, a@s 3). */
static uint64_t map_root(struct meta *m, uint64_t id)
{
	uint8_t rec[VREC_SIZE];

	T_EQ(btree_lookup(&m->vinfo, m->vroot, id, rec), 0);
	return get_le64(rec + R_ROOT);
}

/* The physical chunk behind a volume's chunk. */
static uint64_t phys(struct meta *m, uint64_t id, uint64_t vchunk)
{
	uint8_t v[8];

	T_EQ(btree_lookup(&m->minfo, map_root(m, id), vchunk, v), 0);
	return get_le64(v) >> 24;
}

static uint32_t count(struct sm *sm, uint64_t e)
{
	uint32_t c;

	T_EQ(sm_get_count(sm, e, &c), 0);
	return c;
}

/* Counts too high, leaked and too low, data and metadata: all found, all
 * repaired; contents intact; new writes do not take chunks in use. */
START_TEST(t_counts)
{
	struct blkdev *mem, *b;
	struct meta m;
	struct thin_pool *p;
	struct thin_pool_info pi;
	struct thin_check_report rep;
	static struct lines l;
	struct thin_check_opts o = { .report = collect, .arg = &l };
	uint64_t free0, shared, low, leak = UINT64_MAX, mleak = UINT64_MAX, broot;
	char what[96];
	static uint8_t buf[CHUNK];
	uint32_t refs;
	int rc;

	setup(&mem, &free0);
	meta_open(mem, &m);
	shared = phys(&m, 1, 3);		/* a's and a@s's */
	low = phys(&m, 2, 2);			/* b's only chunk */
	broot = map_root(&m, 2);
	refs = count(tm_dsm(m.tm), shared);	/* 2: a's leaf was copied off the shared one */
	for (uint64_t e = 0; e < sm_nentries(tm_dsm(m.tm)) && leak == UINT64_MAX; e++)
		if (!count(tm_dsm(m.tm), e))
			leak = e;
	for (uint64_t e = sm_nentries(tm_msm(m.tm)); e-- > 0 && mleak == UINT64_MAX; )
		if (!count(tm_msm(m.tm), e))
			mleak = e;
	T_TRUE(leak != UINT64_MAX && mleak != UINT64_MAX);
	T_EQ(sm_set_count(tm_dsm(m.tm), shared, refs + 1), 0);	/* too high */
	T_EQ(sm_set_count(tm_dsm(m.tm), leak, 1), 0);	/* leaked */
	T_EQ(sm_set_count(tm_dsm(m.tm), low, 0), 0);	/* too low */
	T_EQ(sm_set_count(tm_msm(m.tm), mleak, 3), 0);	/* a leaked node block */
	T_EQ(sm_set_count(tm_msm(m.tm), broot, 0), 0);	/* a node counted too low */
	meta_close(&m, true);

	T_EQ(thin_pool_open(mem, &oo, &p), 0);
	/* found and named; nothing changes without --repair */
	for (int pass = 0; pass < 2; pass++) {
		l.n = 0;
		rc = thin_pool_check_ex(p, &o, &rep);
		T_EQ(rc, -EUCLEAN);
		T_EQ(rep.errors, 5);
		T_EQ(rep.bad_trees, 0);
		T_EQ(rep.leaked_chunks, 1);
		T_EQ(rep.leaked_blocks, 1);
		T_EQ(rep.fixed, 0);
		T_EQ(rep.volumes, 3);
		snprintf(what, sizeof(what), "data chunk %llu: count %u, %u references found (too high",
			 (unsigned long long)shared, refs + 1, refs);
		T_TRUE(said(&l, what));
		snprintf(what, sizeof(what), "data chunk %llu: count 1, 0 references found (leaked",
			 (unsigned long long)leak);
		T_TRUE(said(&l, what));
		snprintf(what, sizeof(what), "data chunk %llu: count 0, 1 references found (too low",
			 (unsigned long long)low);
		T_TRUE(said(&l, what));
		snprintf(what, sizeof(what), "metadata block %llu: count 3, 0 references",
			 (unsigned long long)mleak);
		T_TRUE(said(&l, what));
		snprintf(what, sizeof(what), "metadata block %llu: count 0, 1 references",
			 (unsigned long long)broot);
		T_TRUE(said(&l, what));
	}
	/* repair */
	l.n = 0;
	o.repair = true;
	T_EQ(thin_pool_check_ex(p, &o, &rep), 0);
	T_EQ(rep.errors, 5);
	T_EQ(rep.fixed, 5);
	T_EQ(rep.errors_left, 0);
	T_TRUE(said(&l, "repaired: 5 counts rewritten from the trees; 1 leaked metadata blocks "
		    "and 1 leaked data chunks returned"));
	T_EQ(thin_pool_check(p, &rep), 0);
	T_EQ(thin_pool_info(p, &pi), 0);
	T_EQ(pi.free_chunks, free0);
	verify(p, &va);
	verify(p, &vs);
	verify(p, &vb);
	/* fill every free chunk through b: none of a's, a@s's or b's own is taken */
	T_EQ(thin_vol_open(p, "b", &b), 0);
	for (uint64_t c = 0, n = 0; c < VOLSZ / CHUNK && n < free0; c++) {
		if (c == 2)
			continue;
		fill(buf, CHUNK, 0xbb00 + c);
		T_EQ(tio(b, BIO_WRITE, 0, c * CHUNK, buf, CHUNK), 0);
		memcpy(vb.m + c * CHUNK, buf, CHUNK);
		n++;
	}
	T_EQ(tio_close(b), 0);
	verify(p, &va);
	verify(p, &vs);
	verify(p, &vb);
	T_EQ(thin_pool_check(p, &rep), 0);
	T_EQ(thin_pool_close(p), 0);
	/* and on disk */
	T_EQ(thin_pool_open(mem, &oo, &p), 0);
	T_EQ(thin_pool_check(p, &rep), 0);
	verify(p, &vb);
	T_EQ(thin_pool_close(p), 0);
	T_EQ(blkdev_close(mem), 0);
	tio_done();
}
END_TEST

/* A space map's in-use record that disagrees with its counts. */
/* A power cut at every point of a repair's commit: after the reopen, the
 * pool has either the old counts (the same errors) or the repaired ones
 * (clean), never something else; a second repair then ends clean. */
START_TEST(t_repair_cut)
{
	struct blkdev *mem, *fd;
	struct meta m;
	struct thin_pool *p;
	struct thin_check_report rep;
	struct thin_check_opts o = { .repair = true };
	struct sm_root r;
	static uint8_t image[8u << 20];
	uint64_t free0, leak = UINT64_MAX, landed = 0, lost = 0;
	int rc;

	setup(&mem, &free0);
	meta_open(mem, &m);
	for (uint64_t e = 0; e < sm_nentries(tm_dsm(m.tm)) && leak == UINT64_MAX; e++)
		if (!count(tm_dsm(m.tm), e))
			leak = e;
	T_EQ(sm_set_count(tm_dsm(m.tm), leak, 1), 0);
	T_EQ(sm_set_count(tm_dsm(m.tm), phys(&m, 1, 4), 5), 0);
	sm_get_root(tm_msm(m.tm), &r);
	sm_set_nr_allocated(tm_msm(m.tm), r.nr_allocated + 2);
	meta_close(&m, true);
	T_EQ(blk_sync_io(mem, BIO_READ, 0, 0, image, sizeof(image)), 0);
	T_EQ(blk_fault_create("repaircut", mem, &fd), 0);
	/* the repair's commit is a few writes and two flushes: cut after 0 to 7
	 * of them, five times each, torn differently */
	for (uint64_t i = 0; i < 40; i++) {
		struct fault_cut_policy pol = { .mode = FAULT_CUT_RANDOM, .seed = i };
		uint64_t n = i % 8;

		T_EQ(blk_sync_io(mem, BIO_WRITE, 0, 0, image, sizeof(image)), 0);
		T_EQ(fault_record(fd, true), 0);
		T_EQ(thin_pool_open(fd, &oo, &p), 0);
		T_EQ(fault_fail_after(fd, n, FAULT_OPS_WRITE | FAULT_OP(BIO_FLUSH), -EIO), 0);
		rc = thin_pool_check_ex(p, &o, &rep);
		T_TRUE(rc == 0 || rc == -EIO);
		T_EQ(rep.errors, 3);
		T_EQ(fault_power_cut(fd, &pol), 0);
		rc = thin_pool_close(p);
		T_TRUE(rc == 0 || rc == -EIO);
		T_EQ(fault_clear(fd), 0);
		T_EQ(fault_power_restore(fd), 0);
		T_EQ(fault_record(fd, false), 0);
		T_EQ(thin_pool_open(fd, &oo, &p), 0);
		o.repair = false;
		rc = thin_pool_check_ex(p, &o, &rep);
		o.repair = true;
		if (rc == 0) {
			landed++;
		} else {
			T_EQ(rc, -EUCLEAN);
			T_EQ(rep.errors, 3);	/* exactly the old problems */
			lost++;
			T_EQ(thin_pool_check_ex(p, &o, &rep), 0);
		}
		verify(p, &va);
		verify(p, &vs);
		verify(p, &vb);
		T_EQ(thin_pool_close(p), 0);
	}
	printf("thin repair cut: 40 cuts, the repair landed in %llu, not in %llu\n",
	       (unsigned long long)landed, (unsigned long long)lost);
	T_TRUE(landed > 0 && lost > 0);
	T_EQ(blkdev_close(fd), 0);
	T_EQ(blkdev_close(mem), 0);
	tio_done();
}
END_TEST

START_TEST(t_in_use_record)
{
	struct blkdev *mem;
	struct meta m;
	struct thin_pool *p;
	struct thin_pool_info pi;
	struct thin_check_report rep;
	static struct lines l;
	struct thin_check_opts o = { .report = collect, .arg = &l };
	struct sm_root r;
	uint64_t free0;

	setup(&mem, &free0);
	meta_open(mem, &m);
	sm_get_root(tm_dsm(m.tm), &r);
	sm_set_nr_allocated(tm_dsm(m.tm), r.nr_allocated + 3);	/* 3 chunks lost */
	meta_close(&m, true);
	T_EQ(thin_pool_open(mem, &oo, &p), 0);
	T_EQ(thin_pool_info(p, &pi), 0);
	T_EQ(pi.free_chunks, free0 - 3);
	T_EQ(thin_pool_check_ex(p, &o, &rep), -EUCLEAN);
	T_EQ(rep.errors, 1);
	T_TRUE(said(&l, "data chunk space map: "));
	o.repair = true;
	T_EQ(thin_pool_check_ex(p, &o, &rep), 0);
	T_EQ(rep.fixed, 1);
	T_EQ(thin_pool_info(p, &pi), 0);
	T_EQ(pi.free_chunks, free0);
	T_EQ(thin_pool_close(p), 0);
	T_EQ(thin_pool_open(mem, &oo, &p), 0);
	T_EQ(thin_pool_check(p, &rep), 0);
	verify(p, &va);
	T_EQ(thin_pool_close(p), 0);
	T_EQ(blkdev_close(mem), 0);
	tio_done();
}
END_TEST

/* A mapping tree whose node no longer passes its checksum: the volume is
 * named, the other trees are walked, and repair changes nothing. */
START_TEST(t_damaged_tree)
{
	struct blkdev *mem;
	struct meta m;
	struct thin_pool *p;
	struct thin_check_report rep;
	static struct lines l;
	struct thin_check_opts o = { .report = collect, .arg = &l, .repair = true };
	static uint8_t blk[4096];
	uint64_t free0, broot, gen;
	struct thin_pool_info pi;
	struct thin_vol_info vi;
	struct blkdev *bd;

	setup(&mem, &free0);
	meta_open(mem, &m);
	broot = map_root(&m, 2);
	meta_close(&m, false);
	T_EQ(blk_sync_io(mem, BIO_READ, 0, broot * 4096, blk, 4096), 0);
	blk[200] ^= 0x40;
	T_EQ(blk_sync_io(mem, BIO_WRITE, 0, broot * 4096, blk, 4096), 0);
	T_EQ(thin_pool_open(mem, &oo, &p), 0);
	T_EQ(thin_pool_info(p, &pi), 0);
	gen = pi.generation;
	T_EQ(thin_pool_check_ex(p, &o, &rep), -EUCLEAN);
	T_EQ(rep.bad_trees, 1);
	T_EQ(rep.volumes, 3);
	T_EQ(rep.fixed, 0);
	T_TRUE(said(&l, "volume 'b' (id 2): its mapping tree is damaged"));
	T_TRUE(said(&l, "not repaired: 1 damaged tree(s)"));
	/* b's chunk now looks leaked, but nothing was changed or committed */
	T_EQ(rep.leaked_chunks, 1);
	T_EQ(thin_pool_info(p, &pi), 0);
	T_EQ(pi.generation, gen);
	T_EQ(pi.free_chunks, free0);
	verify(p, &va);
	verify(p, &vs);
	/* deleting it fails (its tree cannot be walked) and fails the pool */
	T_EQ(thin_vol_delete(p, "b"), -EUCLEAN);
	T_EQ(thin_pool_close(p), -EIO);
	T_EQ(thin_pool_open(mem, &oo, &p), 0);
	/* dropping damaged volumes: not while open */
	o.drop_damaged = true;
	T_EQ(thin_vol_open(p, "b", &bd), 0);
	l.n = 0;
	T_EQ(thin_pool_check_ex(p, &o, &rep), -EUCLEAN);
	T_EQ(rep.dropped, 0);
	T_TRUE(said(&l, "not repaired: volume 'b' is open"));
	T_EQ(tio_close(bd), 0);
	T_EQ(thin_pool_info(p, &pi), 0);
	T_EQ(pi.generation, gen);
	/* then b goes, its chunk and nodes come back, the rest is intact */
	l.n = 0;
	T_EQ(thin_pool_check_ex(p, &o, &rep), 0);
	T_EQ(rep.dropped, 1);
	T_EQ(rep.errors_left, 0);
	T_TRUE(said(&l, "dropped volume 'b' (id 2): its mapping tree was damaged; its data is lost"));
	T_TRUE(said(&l, "repaired: "));
	T_EQ(thin_vol_info(p, "b", &vi), -ENOENT);
	T_EQ(thin_pool_info(p, &pi), 0);
	T_EQ(pi.volumes, 2);
	T_EQ(pi.free_chunks, free0 + 1);
	verify(p, &va);
	verify(p, &vs);
	T_EQ(thin_pool_check(p, &rep), 0);
	T_EQ(thin_pool_close(p), 0);
	T_EQ(thin_pool_open(mem, &oo, &p), 0);
	T_EQ(thin_pool_check(p, &rep), 0);
	T_EQ(rep.volumes, 2);
	verify(p, &va);
	T_EQ(thin_vol_create(p, "b", VOLSZ), 0);
	T_EQ(thin_pool_close(p), 0);
	T_EQ(blkdev_close(mem), 0);
	tio_done();
}
END_TEST

/*
 * Salvage (dm's thin_repair): a volume of 640 chunks (three mapping
 * leaves) with a snapshot, 10 chunks rewritten since; the middle leaf,
 * which both trees share, fails its checksum. The repair, with the volume
 * open and its mapping cache holding a chunk of that leaf, rebuilds both
 * trees from the other leaves: exactly that leaf's chunks are reported
 * lost (and read as zeros, through the open volume too), everything else
 * reads as before, the lost chunks come back to the pool, the pool is
 * clean (after a reopen too), and the rebuilt volume still copies a chunk
 * it shares with its snapshot before writing it.
 */
#define BIGCH		640u

static uint64_t node_child(struct blkdev *mem, uint64_t nr, uint32_t i)
{
	static uint8_t blk[4096];

	T_EQ(blk_sync_io(mem, BIO_READ, 0, nr * 4096, blk, 4096), 0);
	T_EQ(get_le32(blk + 32), 1);	/* internal */
	T_TRUE(i < get_le32(blk + 36));
	return get_le64(blk + 48 + 8 * (uint64_t)get_le32(blk + 40) + 8 * i);
}

static void big_check(struct blkdev *bd, uint64_t lo, uint64_t hi, bool snap)
{
	static uint8_t buf[CHUNK], want[CHUNK];

	for (uint64_t ch = 0; ch < BIGCH; ch++) {
		T_EQ(tio(bd, BIO_READ, 0, ch * CHUNK, buf, CHUNK), 0);
		if (ch >= lo && ch <= hi)
			memset(want, 0, CHUNK);
		else
			fill(want, CHUNK, (!snap && ch < 10 ? 0x2000 : 0x1000) + ch);
		if (memcmp(buf, want, CHUNK))
			ck_abort_msg("%s chunk %llu differs", snap ? "big@s" : "big",
				     (unsigned long long)ch);
	}
}

START_TEST(t_salvage)
{
	struct thin_format_opts fo = { .chunk_size = CHUNK };
	struct thin_check_opts o = { .report = collect, .arg = &l_salv, .repair = true,
				     .salvage = true };
	struct thin_check_report rep;
	struct thin_pool_info pi;
	struct thin_pool *p;
	struct blkdev *mem, *bd, *sd;
	static uint8_t buf[CHUNK], blk[4096];
	uint64_t free0, leaf, lo, hi;
	struct meta m;

	T_EQ(blk_mem_create("salvage", 64u << 20, 512, &mem), 0);
	T_EQ(thin_pool_format(mem, &fo), 0);
	T_EQ(thin_pool_open(mem, &oo, &p), 0);
	T_EQ(thin_vol_create(p, "big", (uint64_t)BIGCH * CHUNK), 0);
	T_EQ(thin_vol_open(p, "big", &bd), 0);
	for (uint64_t ch = 0; ch < BIGCH; ch++) {
		fill(buf, CHUNK, 0x1000 + ch);
		T_EQ(tio(bd, BIO_WRITE, 0, ch * CHUNK, buf, CHUNK), 0);
	}
	T_EQ(thin_snap_create(p, "big", "big@s"), 0);
	for (uint64_t ch = 0; ch < 10; ch++) {
		fill(buf, CHUNK, 0x2000 + ch);
		T_EQ(tio(bd, BIO_WRITE, 0, ch * CHUNK, buf, CHUNK), 0);
	}
	T_EQ(tio_close(bd), 0);
	T_EQ(thin_pool_close(p), 0);
	/* the snapshot's middle leaf, which big shares */
	meta_open(mem, &m);
	leaf = node_child(mem, map_root(&m, 2), 1);
	T_EQ(blk_sync_io(mem, BIO_READ, 0, leaf * 4096, blk, 4096), 0);
	lo = get_le64(blk + 48);
	hi = get_le64(blk + 48 + 8 * (get_le32(blk + 36) - 1));
	T_TRUE(lo > 10 && hi < BIGCH - 1);
	T_EQ(node_child(mem, map_root(&m, 1), 1), leaf);
	meta_close(&m, false);
	blk[300] ^= 0x10;
	T_EQ(blk_sync_io(mem, BIO_WRITE, 0, leaf * 4096, blk, 4096), 0);

	T_EQ(thin_pool_open(mem, &oo, &p), 0);
	T_EQ(thin_pool_info(p, &pi), 0);
	free0 = pi.free_chunks;
	/* without salvage: refused, as before */
	o.salvage = false;
	T_EQ(thin_pool_check_ex(p, &o, &rep), -EUCLEAN);
	T_EQ(rep.bad_trees, 2);
	T_EQ(rep.rebuilt, 0);
	o.salvage = true;
	T_EQ(thin_vol_open(p, "big", &bd), 0);
	T_EQ(tio(bd, BIO_READ, 0, (lo + 1) * CHUNK, buf, CHUNK), -EUCLEAN);	/* fails the pool */
	T_EQ(tio_close(bd), 0);
	T_EQ(thin_pool_close(p), -EIO);
	T_EQ(thin_pool_open(mem, &oo, &p), 0);
	T_EQ(thin_vol_open(p, "big", &bd), 0);
	T_EQ(tio(bd, BIO_READ, 0, (hi + 1) * CHUNK, buf, 4096), 0);	/* cached now */
	l_salv.n = 0;
	T_EQ(thin_pool_check_ex(p, &o, &rep), 0);
	T_EQ(rep.rebuilt, 2);
	T_EQ(rep.lost_ranges, 2);
	T_EQ(rep.lost_mappings, 0);
	T_EQ(rep.salvaged, 2 * (BIGCH - (hi - lo + 1)));
	T_EQ(rep.errors_left, 0);
	T_EQ(rep.leaked_chunks, hi - lo + 1);
	snprintf((char *)blk, sizeof(blk), "volume 'big': chunks %llu-%llu: node %llu cannot be "
		 "read", (unsigned long long)lo, (unsigned long long)hi, (unsigned long long)leaf);
	T_TRUE(said(&l_salv, (char *)blk));
	T_TRUE(said(&l_salv, "volume 'big@s': chunks "));
	T_TRUE(said(&l_salv, "volume 'big' (id 1): its mapping tree rebuilt: "));
	T_TRUE(said(&l_salv, "repaired: 2 damaged tree(s) rebuilt"));
	T_EQ(thin_pool_info(p, &pi), 0);
	T_EQ(pi.free_chunks, free0 + (hi - lo + 1));
	big_check(bd, lo, hi, false);	/* the open volume: its cache forgot */
	T_EQ(thin_vol_open(p, "big@s", &sd), 0);
	big_check(sd, lo, hi, true);
	/* shared with the snapshot: copied; big's own: in place */
	fill(buf, 4096, 0x3000);
	T_EQ(tio(bd, BIO_WRITE, 0, 20 * CHUNK, buf, 4096), 0);
	T_EQ(tio(bd, BIO_WRITE, 0, 5 * CHUNK, buf, 4096), 0);
	T_EQ(thin_pool_info(p, &pi), 0);
	T_EQ(pi.free_chunks, free0 + (hi - lo + 1) - 1);
	T_EQ(tio(sd, BIO_READ, 0, 20 * CHUNK, buf, CHUNK), 0);
	fill(blk, 4096, 0x1000 + 20);
	T_EQ(memcmp(buf, blk, 4096), 0);
	T_EQ(tio_close(sd), 0);
	T_EQ(tio_close(bd), 0);
	T_EQ(thin_pool_check(p, &rep), 0);
	T_EQ(thin_pool_close(p), 0);
	T_EQ(thin_pool_open(mem, &oo, &p), 0);
	T_EQ(thin_pool_check(p, &rep), 0);
	T_EQ(rep.volumes, 2);
	T_EQ(thin_vol_open(p, "big@s", &sd), 0);
	big_check(sd, lo, hi, true);
	T_EQ(tio_close(sd), 0);
	T_EQ(thin_pool_close(p), 0);
	T_EQ(blkdev_close(mem), 0);
	tio_done();
}
END_TEST

/*
 * A salvaged mapping that would let two volumes write one chunk in place
 * is dropped: x (640 chunks, its own) gets a valid-looking mapping of its
 * chunk 600 to y's chunk (y owns it), then x's middle leaf is damaged. The
 * repair rebuilds x without that mapping (reported), and a write to x's
 * chunk 600 afterwards leaves y's data alone.
 */
START_TEST(t_salvage_conflict)
{
	struct thin_format_opts fo = { .chunk_size = CHUNK };
	struct thin_check_opts o = { .report = collect, .arg = &l_salv, .repair = true,
				     .salvage = true };
	struct thin_check_report rep;
	struct thin_pool *p;
	struct blkdev *mem, *xd, *yd;
	static uint8_t buf[CHUNK], want[CHUNK], blk[4096];
	uint8_t rec[VREC_SIZE], v[8];
	uint64_t leaf, lo, hi, ypc, root;
	struct meta m;

	T_EQ(blk_mem_create("salvage", 64u << 20, 512, &mem), 0);
	T_EQ(thin_pool_format(mem, &fo), 0);
	T_EQ(thin_pool_open(mem, &oo, &p), 0);
	T_EQ(thin_vol_create(p, "x", (uint64_t)BIGCH * CHUNK), 0);
	T_EQ(thin_vol_create(p, "y", VOLSZ), 0);
	T_EQ(thin_vol_open(p, "x", &xd), 0);
	for (uint64_t ch = 0; ch < BIGCH; ch++) {
		fill(buf, CHUNK, 0x1000 + ch);
		T_EQ(tio(xd, BIO_WRITE, 0, ch * CHUNK, buf, CHUNK), 0);
	}
	T_EQ(tio_close(xd), 0);
	T_EQ(thin_vol_open(p, "y", &yd), 0);
	fill(buf, CHUNK, 0x7777);
	T_EQ(tio(yd, BIO_WRITE, 0, 0, buf, CHUNK), 0);
	T_EQ(tio_close(yd), 0);
	T_EQ(thin_pool_close(p), 0);
	meta_open(mem, &m);
	ypc = phys(&m, 2, 0);
	root = map_root(&m, 1);
	put_le64(v, ypc << 24);
	T_EQ(btree_insert(&m.minfo, root, 600, v, &root), 0);
	T_EQ(btree_lookup(&m.vinfo, m.vroot, 1, rec), 0);
	put_le64(rec + R_ROOT, root);
	T_EQ(btree_insert(&m.vinfo, m.vroot, 1, rec, &m.vroot), 0);
	put_le64(tm_user(m.tm) + U_VROOT, m.vroot);
	meta_close(&m, true);
	leaf = node_child(mem, root, 1);	/* on the device now */
	T_EQ(blk_sync_io(mem, BIO_READ, 0, leaf * 4096, blk, 4096), 0);
	lo = get_le64(blk + 48);
	hi = get_le64(blk + 48 + 8 * (get_le32(blk + 36) - 1));
	T_TRUE(hi < 600);
	blk[300] ^= 0x10;
	T_EQ(blk_sync_io(mem, BIO_WRITE, 0, leaf * 4096, blk, 4096), 0);

	T_EQ(thin_pool_open(mem, &oo, &p), 0);
	l_salv.n = 0;
	T_EQ(thin_pool_check_ex(p, &o, &rep), 0);
	T_EQ(rep.rebuilt, 1);
	T_EQ(rep.lost_ranges, 1);
	T_EQ(rep.lost_mappings, 1);
	T_EQ(rep.salvaged, BIGCH - (hi - lo + 1) - 1);
	snprintf((char *)blk, sizeof(blk), "volume 'x': chunk 600: maps chunk %llu, which another "
		 "volume maps too; lost", (unsigned long long)ypc);
	T_TRUE(said(&l_salv, (char *)blk));
	T_EQ(thin_vol_open(p, "x", &xd), 0);
	T_EQ(tio(xd, BIO_READ, 0, 600ull * CHUNK, buf, CHUNK), 0);
	memset(want, 0, CHUNK);
	T_EQ(memcmp(buf, want, CHUNK), 0);
	T_EQ(tio(xd, BIO_READ, 0, 601ull * CHUNK, buf, CHUNK), 0);
	fill(want, CHUNK, 0x1000 + 601);
	T_EQ(memcmp(buf, want, CHUNK), 0);
	fill(buf, 4096, 0x5555);
	T_EQ(tio(xd, BIO_WRITE, 0, 600ull * CHUNK, buf, 4096), 0);
	T_EQ(tio_close(xd), 0);
	T_EQ(thin_vol_open(p, "y", &yd), 0);
	T_EQ(tio(yd, BIO_READ, 0, 0, buf, CHUNK), 0);
	fill(want, CHUNK, 0x7777);
	T_EQ(memcmp(buf, want, CHUNK), 0);
	T_EQ(tio_close(yd), 0);
	T_EQ(thin_pool_check(p, &rep), 0);
	T_EQ(thin_pool_close(p), 0);
	T_EQ(blkdev_close(mem), 0);
	tio_done();
}
END_TEST

static Suite *repair_suite(void)
{
	Suite *s = suite_create("thin_repair");
	TCase *tc = tcase_create("repair");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, t_counts);
	tcase_add_test(tc, t_in_use_record);
	tcase_add_test(tc, t_damaged_tree);
	tcase_add_test(tc, t_salvage);
	tcase_add_test(tc, t_salvage_conflict);
	tcase_add_test(tc, t_repair_cut);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(repair_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
