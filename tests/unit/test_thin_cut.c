/* SPDX-License-Identifier: MIT */
/*
 * Power-cut torture: a thin pool on a fault device (doc/fault.md), rounds of
 * random mixed work on several volumes (writes, FUA writes, flushes,
 * discards, write-zeroes, creates, snapshots, clones, deletes), each round
 * ended by a power cut at a random point: the device stops taking writes
 * and flushes after a random number of them (fault_fail_after), in the
 * middle of whatever the pool was doing, commits included; then each write
 * the disk had not made durable is kept, dropped or torn (FAULT_CUT_RANDOM,
 * or all dropped / all kept). Then: reopen, thin_pool_check clean, and
 * every sector of every volume holds its contents at the last completed
 * flush or the contents of a write issued since; never anything else.
 *
 * Every written 8-byte word is (volume uid << 48 | write number << 24 |
 * sector), so a wrong sector tells whose and which write it came from.
 * An operation that failed because of the cut may or may not have happened:
 * a snapshot, clone or create whose commit landed exists (and then every
 * write before it is durable), one that did not does not exist; the same
 * for a delete.
 *
 * THIN_CUT_ROUNDS=N (default 2000), THIN_CUT_SEED=N (one seed, all rounds),
 * THIN_CUT_LOG=1 keeps the pool's log messages (errors at every cut).
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "sand/fault.h"
#include "sand/log.h"
#include "sand/thin.h"
#include "test_thin_io.h"

#define CHUNK		(64u * 1024)
#define TVOL		(512u * 1024)	/* 8 chunks */
#define TSECT		(TVOL / 512)
#define TV		4
#define MAXW		256

struct cvol {
	bool		live;
	uint64_t	uid;
	char		name[THIN_NAME_MAX];
	bool		ro;
	struct blkdev	*bd;
	uint8_t		*flushed;	/* durable contents */
	uint8_t		*cur;		/* acknowledged contents */
};

struct cwrite {
	int		v;
	uint64_t	off, len;
	uint64_t	tag;		/* uid << 48 | number << 24; 0: zeros */
};

/* An operation cut short: it may or may not have committed. */
struct maybe {
	enum { M_NONE, M_NEW, M_DELETE } kind;
	int		slot;
};

static struct cvol cv[TV];
static struct cwrite wr[MAXW];
static unsigned nw;
static char ctx[160];

#define C_EQ(a, b) do { \
		long long _a = (long long)(a), _b = (long long)(b); \
		if (_a != _b) \
			ck_abort_msg("%s: %s:%d: %s == %lld, %s == %lld", ctx, __FILE__, \
				     __LINE__, #a, _a, #b, _b); \
	} while (0)

static struct thin_open_opts oo = { .cache_blocks = 32, .commit_ms = 600000 };

static void __attribute__((format(printf, 1, 2))) note(const char *fmt, ...)
{
	size_t l = strlen(ctx);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ctx + l, sizeof(ctx) - l, fmt, ap);
	va_end(ap);
}

static void pattern(uint8_t *buf, uint64_t off, uint64_t len, uint64_t tag)
{
	for (uint64_t i = 0; i < len; i += 8)
		put_le64(buf + i, tag ? tag | (off + i) / 512 : 0);
}

static bool sector_is(const uint8_t *sec, uint64_t sector, uint64_t tag)
{
	for (unsigned i = 0; i < 512; i += 8)
		if (get_le64(sec + i) != (tag ? tag | sector : 0))
			return false;
	return true;
}

/* Everything acknowledged is durable now. */
static void all_durable(void)
{
	for (int i = 0; i < TV; i++)
		if (cv[i].live)
			memcpy(cv[i].flushed, cv[i].cur, TVOL);
	nw = 0;
}

static void slot_free(int s)
{
	free(cv[s].flushed);
	free(cv[s].cur);
	memset(&cv[s], 0, sizeof(cv[s]));
}

static void slot_new(int s, const char *name, bool ro, uint64_t uid, const uint8_t *from)
{
	cv[s].live = true;
	cv[s].ro = ro;
	cv[s].uid = uid;
	snprintf(cv[s].name, sizeof(cv[s].name), "%s", name);
	cv[s].flushed = calloc(1, TVOL);
	cv[s].cur = calloc(1, TVOL);
	T_TRUE(cv[s].flushed && cv[s].cur);
	if (from) {
		memcpy(cv[s].flushed, from, TVOL);
		memcpy(cv[s].cur, from, TVOL);
	}
}

static int pick_live(uint64_t r, bool writable)
{
	int c[TV], n = 0;

	for (int i = 0; i < TV; i++)
		if (cv[i].live && (!writable || !cv[i].ro))
			c[n++] = i;
	return n ? c[r % (uint64_t)n] : -1;
}

struct stats {
	uint64_t	rounds, cut_in_op, cut_in_ctl, cut_after, newer, older, maybe_done,
			maybe_undone, ops;
};

/* One operation; its status (a cut makes it fail). */
static int one_op(struct thin_pool *p, uint64_t *seed, uint64_t *uid, uint64_t *wno,
		  struct maybe *mb, bool *ctl)
{
	static uint8_t buf[3 * CHUNK];
	uint64_t r = rnd(seed), off, len;
	unsigned op = (unsigned)(r % 100);
	char name[THIN_NAME_MAX];
	int s, d = -1, rc;

	*ctl = false;
	for (int i = 0; i < TV; i++)
		if (!cv[i].live) {
			d = i;
			break;
		}
	s = pick_live(r >> 8, false);
	if (s < 0 || (d >= 0 && op >= 95))
		op = 99;			/* (with nothing live, a slot is free) */
	if (nw + 2 >= MAXW)
		op = 52;				/* a flush */
	if (op < 50 || (op >= 60 && op < 68)) {
		/* write (some FUA), discard, write-zeroes: sector ranges,
		 * sometimes whole chunks */
		enum bio_op bop = op < 50 ? BIO_WRITE : op < 64 ? BIO_DISCARD : BIO_WRITE_ZEROES;
		uint32_t fl = 0;
		uint64_t tag = 0;

		s = pick_live(r >> 8, true);
		if (s < 0)
			return 0;
		if ((r >> 20) % 4 == 0) {
			len = CHUNK * (1 + (r >> 24) % 2);
			off = CHUNK * ((r >> 32) % (TVOL / CHUNK - len / CHUNK + 1));
		} else {
			len = 512 * (1 + (r >> 24) % 300);
			off = 512 * ((r >> 36) % ((TVOL - len) / 512 + 1));
		}
		if (bop == BIO_WRITE) {
			tag = cv[s].uid << 48 | (++*wno & 0xffffff) << 24;
			pattern(buf, off, len, tag);
			if ((r >> 60) == 0)
				fl = BIO_FUA;
		} else if (bop == BIO_WRITE_ZEROES && (r >> 61) == 0) {
			fl = BIO_NOUNMAP;
		}
		note(" %s", bop == BIO_WRITE ? "write" : bop == BIO_DISCARD ? "discard" : "zeroes");
		wr[nw++] = (struct cwrite){ .v = s, .off = off, .len = len, .tag = tag };
		rc = tio(cv[s].bd, bop, fl, off, tag ? buf : NULL, len);
		if (rc)
			return rc;
		if (tag)
			memcpy(cv[s].cur + off, buf, len);
		else
			memset(cv[s].cur + off, 0, len);
		if (fl & BIO_FUA)
			all_durable();
		return 0;
	}
	if (op < 60) {					/* flush */
		note(" flush");
		rc = tio(cv[s].bd, BIO_FLUSH, 0, 0, NULL, 0);
		if (!rc)
			all_durable();
		return rc;
	}
	*ctl = true;
	if (op < 85 && d >= 0) {			/* snapshot or clone */
		bool snap = op < 77 && !cv[s].ro;

		snprintf(name, sizeof(name), "%s%llu", snap ? "s" : "c",
			 (unsigned long long)*uid);
		note(" %s %s %s", snap ? "snapshot" : "clone", cv[s].name, name);
		rc = (snap ? thin_snap_create : thin_clone_create)(p, cv[s].name, name);
		slot_new(d, name, snap, (*uid)++, cv[s].cur);
		if (rc) {
			*mb = (struct maybe){ M_NEW, d };
			return rc;
		}
		all_durable();
		C_EQ(thin_vol_open(p, name, &cv[d].bd), 0);
		return 0;
	}
	if (op < 95 || d < 0) {				/* delete */
		note(" delete %s", cv[s].name);
		C_EQ(tio_close(cv[s].bd), 0);
		cv[s].bd = NULL;
		rc = thin_vol_delete(p, cv[s].name);
		if (rc) {
			*mb = (struct maybe){ M_DELETE, s };
			return rc;
		}
		slot_free(s);
		all_durable();
		return 0;
	}
	snprintf(name, sizeof(name), "v%llu", (unsigned long long)*uid);	/* create */
	note(" create %s", name);
	rc = thin_vol_create(p, name, TVOL);
	slot_new(d, name, false, (*uid)++, NULL);
	if (rc) {
		*mb = (struct maybe){ M_NEW, d };
		return rc;
	}
	all_durable();
	C_EQ(thin_vol_open(p, name, &cv[d].bd), 0);
	return 0;
}

static bool exists(struct thin_pool *p, const char *name)
{
	struct thin_vol_info vi;
	int rc = thin_vol_info(p, name, &vi);

	T_TRUE(rc == 0 || rc == -ENOENT);
	return !rc;
}

/* Each sector: its durable contents, or a write to it since. */
static void verify_vol(struct thin_pool *p, int i, struct stats *st)
{
	static uint8_t buf[TVOL];

	C_EQ(thin_vol_open(p, cv[i].name, &cv[i].bd), 0);
	C_EQ(tio(cv[i].bd, BIO_READ, 0, 0, buf, TVOL), 0);
	for (uint64_t sct = 0; sct < TSECT; sct++) {
		const uint8_t *got = buf + sct * 512;
		bool ok = !memcmp(got, cv[i].flushed + sct * 512, 512), later = false;

		for (unsigned j = nw; j-- > 0; )
			if (wr[j].v == i && wr[j].off <= sct * 512 && sct * 512 < wr[j].off + wr[j].len) {
				later = true;
				if (!ok && sector_is(got, sct, wr[j].tag)) {
					ok = true;
					st->newer++;
				}
			}
		if (ok && later && !memcmp(got, cv[i].flushed + sct * 512, 512))
			st->older++;
		if (!ok) {
			uint64_t w = get_le64(got);

			ck_abort_msg("%s: %s (uid %llu) sector %llu holds neither its flushed contents "
				     "nor a later write: uid %llu write %llu sector %llu", ctx,
				     cv[i].name, (unsigned long long)cv[i].uid,
				     (unsigned long long)sct, (unsigned long long)(w >> 48),
				     (unsigned long long)(w >> 24 & 0xffffff),
				     (unsigned long long)(w & 0xffffff));
		}
	}
	memcpy(cv[i].flushed, buf, TVOL);
	memcpy(cv[i].cur, buf, TVOL);
}

static void run(uint64_t seed0, uint64_t rounds)
{
	struct thin_format_opts fo = { .chunk_size = CHUNK };
	struct blkdev *mem, *fd;
	struct thin_pool *p;
	struct stats st = { 0 };
	struct thin_check_report rep;
	uint64_t seed = seed0, uid = 1, wno = 0;
	int rc;

	memset(cv, 0, sizeof(cv));
	nw = 0;
	T_EQ(blk_mem_create("cutmem", 8u << 20, 512, &mem), 0);
	T_EQ(blk_fault_create("cutfault", mem, &fd), 0);
	T_EQ(thin_pool_format(fd, &fo), 0);
	T_EQ(fault_record(fd, true), 0);
	T_EQ(thin_pool_open(fd, &oo, &p), 0);
	/* every cut logs metadata errors and superblock fallbacks: expected */
	if (!getenv("THIN_CUT_LOG"))
		T_EQ(log_set_file("/dev/null"), 0);
	for (uint64_t round = 0; round < rounds; round++) {
		uint64_t r = rnd(&seed), nops = 1 + r % 24, cut_at = (r >> 8) % 48;
		struct fault_cut_policy pol = { .mode = FAULT_CUT_RANDOM, .seed = rnd(&seed) };
		struct maybe mb = { M_NONE, -1 };
		bool ctl = false;

		snprintf(ctx, sizeof(ctx), "seed %llu round %llu (cut after %llu writes):",
			 (unsigned long long)seed0, (unsigned long long)round,
			 (unsigned long long)cut_at);
		if ((r >> 40) % 8 == 0)
			pol.mode = (r >> 44) % 2 ? FAULT_CUT_DROP_ALL : FAULT_CUT_KEEP_ALL;
		T_EQ(fault_fail_after(fd, cut_at, FAULT_OPS_WRITE | FAULT_OP(BIO_FLUSH), -EIO), 0);
		rc = 0;
		for (uint64_t i = 0; i < nops && !rc; i++) {
			rc = one_op(p, &seed, &uid, &wno, &mb, &ctl);
			st.ops++;
		}
		if (rc) {
			C_EQ(rc, -EIO);
			if (ctl)
				st.cut_in_ctl++;
			else
				st.cut_in_op++;
		} else {
			st.cut_after++;
		}
		/* the power goes */
		T_EQ(fault_power_cut(fd, &pol), 0);
		for (int i = 0; i < TV; i++)
			if (cv[i].live && cv[i].bd) {
				C_EQ(tio_close(cv[i].bd), 0);
				cv[i].bd = NULL;
			}
		rc = thin_pool_close(p);
		T_TRUE(rc == 0 || rc == -EIO);
		T_EQ(fault_clear(fd), 0);
		T_EQ(fault_power_restore(fd), 0);
		note(" reopen");
		C_EQ(thin_pool_open(fd, &oo, &p), 0);
		rc = thin_pool_check(p, &rep);
		C_EQ(rc, 0);
		C_EQ(rep.errors, 0);
		/* the operation the cut interrupted: done or not done */
		if (mb.kind != M_NONE) {
			bool there = exists(p, cv[mb.slot].name);
			bool done = mb.kind == M_NEW ? there : !there;

			if (done) {
				st.maybe_done++;
				all_durable();	/* its commit landed */
			} else {
				st.maybe_undone++;
			}
			if (!there)
				slot_free(mb.slot);
		}
		for (int i = 0; i < TV; i++)
			if (cv[i].live)
				verify_vol(p, i, &st);
		nw = 0;
		{
			char (*names)[THIN_NAME_MAX];
			unsigned n, live = 0;

			C_EQ(thin_vol_list(p, &names, &n), 0);
			free(names);
			for (int i = 0; i < TV; i++)
				live += cv[i].live;
			C_EQ(n, live);		/* nothing else came back */
		}
		st.rounds++;
	}
	for (int i = 0; i < TV; i++)
		if (cv[i].live) {
			C_EQ(tio_close(cv[i].bd), 0);
			slot_free(i);
		}
	C_EQ(thin_pool_check(p, &rep), 0);
	T_EQ(log_set_file(NULL), 0);
	T_EQ(thin_pool_close(p), 0);
	T_EQ(blkdev_close(fd), 0);
	T_EQ(blkdev_close(mem), 0);
	tio_done();
	printf("thin cut: seed %llu: %llu cuts (%llu in a data op or flush, %llu in a control op, "
	       "%llu after the round), %llu ops; interrupted control ops: %llu landed, %llu not; "
	       "unflushed sectors after the cut: %llu new, %llu old\n",
	       (unsigned long long)seed0, (unsigned long long)st.rounds,
	       (unsigned long long)st.cut_in_op, (unsigned long long)st.cut_in_ctl,
	       (unsigned long long)st.cut_after, (unsigned long long)st.ops,
	       (unsigned long long)st.maybe_done, (unsigned long long)st.maybe_undone,
	       (unsigned long long)st.newer, (unsigned long long)st.older);
	/* the cuts fell everywhere, and kept some unflushed data and lost some */
	if (rounds >= 200) {
		ck_assert_uint_gt(st.cut_in_op, 0);
		ck_assert_uint_gt(st.cut_in_ctl, 0);
		ck_assert_uint_gt(st.cut_after, 0);
		ck_assert_uint_gt(st.maybe_done, 0);
		ck_assert_uint_gt(st.maybe_undone, 0);
		ck_assert_uint_gt(st.newer, 0);
		ck_assert_uint_gt(st.older, 0);
	}
}

START_TEST(t_cut)
{
	uint64_t rounds = env_u64("THIN_CUT_ROUNDS", 2000);
	uint64_t seed = env_u64("THIN_CUT_SEED", 0);

	if (seed)
		run(seed, rounds);
	else
		run(0xc07 + (uint64_t)_i, rounds / 2 + (_i ? 0 : rounds % 2));
}
END_TEST

static Suite *cut_suite(void)
{
	Suite *s = suite_create("thin_cut");
	TCase *tc = tcase_create("cut");

	tcase_set_timeout(tc, 600);
	/* two seeds, half the rounds each (one with THIN_CUT_SEED) */
	tcase_add_loop_test(tc, t_cut, 0, env_u64("THIN_CUT_SEED", 0) ? 1 : 2);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(cut_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
