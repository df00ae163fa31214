/* SPDX-License-Identifier: MIT */
/*
 * RAID: power cuts during the partial rebuild of a member that came back.
 *
 * A member leaves, half the bitmap regions are written (P: every other
 * region), the same disk comes back and is rebuilt partially, slowly (rate
 * limit). Every member records its unflushed writes (the fault filter).
 * Then, again and again until the rebuild ends: verified writes inside
 * three regions of P (some completed and flushed, the others in flight or completed but not
 * flushed), and at a random moment the power goes on every member at once
 * (each unflushed write kept, dropped or torn block by block); the set is
 * assembled again (not shut down cleanly: resync, the log, the rows below
 * the rebuild's cursor that writes in flight may have torn) and read back:
 *  - a block written before the flush holds that write's data;
 *  - a block written after it holds the old data or the new, nothing else;
 *  - every other block holds what it held.
 * Each run of the rebuild is partial and starts at the cursor of the one
 * before it (never before it, never over rows outside P); the last one
 * rebuilds exactly the rows of P from its cursor on. At the end the member
 * alone (its partners failed) serves every block.
 */
#define REGION		(2 * 8192u)	/* two rows per bitmap region */
#define ENV_BITMAP_REGION	REGION
#include "raid_env.h"

/* Many rows, so that every run is cut several times at the rate below. */
#define MDATA		(4u * 1024 * 1024)	/* 512 rows */
#define ROWS		(MDATA / STRIP)
#define RATE		(384u * 1024)	/* bytes per second per member: ~11 s */
#define MAX_CUTS	8
#define SEC		(1000ull * 1000 * 1000)

struct cut {
	struct env	e;
	uint32_t	slot;
	uint8_t		*old;		/* per byte: before the unflushed write */
	uint8_t		*unc;		/* per block: written after the last flush */
	uint8_t		*cyc;		/* per block: written in this cycle */
	uint64_t	regs[3];	/* the regions of P this cycle writes */
};

/* Row `row` is in P: every other region. */
static bool in_p(uint64_t row)
{
	return (row / (REGION / STRIP)) % 2 == 0;
}

static uint64_t p_rows_from(uint64_t row)
{
	uint64_t n = 0;

	for (uint64_t i = row; i < ROWS; i++)
		n += in_p(i);
	return n;
}

static uint64_t row_bytes(struct env *e)
{
	return e->size / ROWS;
}

static void drain(struct env *e)
{
	for (int i = 0; i < 100000 && e->inflight; i++)
		ck_assert_int_ge(ev_run_once(e->loop, 100), 0);
	ck_assert_uint_eq(e->inflight, 0);
}

/* One write inside a row of the cycle's regions (in P), on blocks not written in this cycle (so a
 * block has at most an old and a new value); false: none found. */
static bool write_p(struct cut *c, struct slot *s, bool uncertain)
{
	struct env *e = &c->e;
	uint64_t rb = row_bytes(e);

	for (int tries = 0; tries < 20; tries++) {
		uint64_t row = c->regs[rnd(e) % 3] * (REGION / STRIP) + rnd(e) % (REGION / STRIP);
		uint64_t len, off, b;

		len = (1 + rnd(e) % 16) * BS;
		off = row * rb + rnd(e) % ((rb - len) / BS + 1) * BS;
		for (b = off / BS; b < (off + len) / BS && !c->cyc[b]; b++)
			;
		if (b < (off + len) / BS)
			continue;
		for (b = off / BS; b < (off + len) / BS; b++) {
			c->cyc[b] = 1;
			c->unc[b] = uncertain;
		}
		memcpy(c->old + off, e->model + off, len);
		submit(e, s, true, off, len);
		return true;
	}
	return false;
}

static void flush_set(struct env *e)
{
	int st = 1;

	ck_assert_int_eq(blk_rw(e->ch, BIO_FLUSH, 0, NULL, 0, 0, 0, sync_end, &st), 0);
	for (int i = 0; i < 100000 && st == 1; i++)
		ev_run_once(e->loop, 100);
	ck_assert_int_eq(st, 0);
}

/* Read every block back: what the rules allow; the model becomes it. */
static void verify_cut(struct cut *c)
{
	struct env *e = &c->e;
	uint8_t *buf = malloc(64 * 1024);
	uint64_t bad = 0, took_old = 0;

	for (uint64_t off = 0; off < e->size; off += 64 * 1024) {
		uint64_t len = MIN(64 * 1024, e->size - off);
		struct iovec iov = { buf, len };
		int st = 1;

		ck_assert_int_eq(blk_rw(e->ch, BIO_READ, 0, &iov, 1, off, len, sync_end, &st), 0);
		for (int i = 0; i < 100000 && st == 1; i++)
			ev_run_once(e->loop, 100);
		ck_assert_int_eq(st, 0);
		for (uint64_t o = 0; o < len; o += BS) {
			uint64_t b = (off + o) / BS;
			const uint8_t *got = buf + o;

			if (!memcmp(got, e->model + off + o, BS))
				continue;
			if (c->unc[b] && !memcmp(got, c->old + off + o, BS)) {
				took_old++;
				memcpy(e->model + off + o, got, BS);
				continue;
			}
			if (bad++ < 8)
				fprintf(stderr, "block %llu (row %llu)%s: neither value\n",
					(unsigned long long)b,
					(unsigned long long)((off + o) / row_bytes(e)),
					c->unc[b] ? " written unflushed" : "");
		}
	}
	free(buf);
	ck_assert_msg(bad == 0, "%llu blocks hold what they must not", (unsigned long long)bad);
	memset(c->unc, 0, e->size / BS);
	memset(c->cyc, 0, e->size / BS);
}

/* Freeze the set, cut the power on every member, close the set, restore
 * the power, assemble it again. */
static void power_cut(struct cut *c, uint64_t seed)
{
	struct env *e = &c->e;
	int quiet = 0;

	for (uint32_t i = 0; i < e->n; i++)
		ck_assert_int_eq(fault_set_latency(e->f[i], 3 * 1000 * 1000, FAULT_OPS_ALL), 0);
	for (int i = 0; i < 100000 && quiet < 3; i++)
		quiet = ev_run_once(e->loop, 0) == 0 ? quiet + 1 : 0;
	for (uint32_t i = 0; i < e->n; i++) {
		struct fault_cut_policy pol = { .mode = FAULT_CUT_RANDOM, .seed = seed * 131 + i };

		ck_assert_int_eq(fault_power_cut(e->f[i], &pol), 0);
	}
	drain(e);		/* with -EIO */
	e->errors = 0;
	for (uint32_t i = 0; i < e->n; i++)
		ck_assert_int_eq(fault_set_latency(e->f[i], 0, FAULT_OPS_ALL), 0);
	env_detach(e);
	for (uint32_t i = 0; i < e->n; i++)
		ck_assert_int_eq(fault_power_restore(e->f[i]), 0);
	/* the resumed rebuild at its rate from its first row, as the daemon
	 * assembles a pool */
	ck_assert_int_eq(raid_assemble_rate(e->f, e->n, RATE, &e->raid), 0);
	env_attach(e);
}

static void cut_test(enum raid_level l, uint32_t n, uint32_t slot, uint64_t seed)
{
	struct cut c = { .slot = slot };
	struct env *e = &c.e;
	struct raid_job_info ji, pre = { 0 };
	uint64_t dirty, prev_start = 0, deadline;
	uint32_t cuts = 0, resumed = 0;

	env_create(e, l, n, n, MDATA, seed);
	c.old = calloc(1, e->size);
	c.unc = calloc(1, e->size / BS);
	c.cyc = calloc(1, e->size / BS);
	fill(e);
	ck_assert_int_eq(raid_bitmap_clear_idle(e->raid, NULL), 0);
	ck_assert_int_eq(raid_bitmap_clear_idle(e->raid, NULL), 0);
	ck_assert_int_eq(raid_fail(e->raid, slot), 0);
	for (uint64_t row = 0; row < ROWS; row += REGION / STRIP * 2) {
		submit(e, &e->slots[0], true, row * row_bytes(e) + 512, 4096);
		drain(e);
	}
	ck_assert_int_eq(raid_bitmap_dirty_regions(e->raid, &dirty, NULL), 0);
	ck_assert_uint_eq(dirty, ROWS / (REGION / STRIP) / 2);
	flush_set(e);
	for (uint32_t i = 0; i < n; i++)
		ck_assert_int_eq(fault_record(e->f[i], true), 0);
	ck_assert_int_eq(raid_set_rate(e->raid, RATE), 0);
	ck_assert_int_eq(raid_replace_start(e->raid, slot, e->f[slot]), 0);

	deadline = now_ns() + 150 * SEC;
	while (cuts < MAX_CUTS && raid_member_state(e->raid, slot) == RAID_MEMBER_REBUILDING) {
		/* 1.5 to 3 s: the cursor is written about once a second */
		uint64_t until = now_ns() + SEC + (5 + rnd(e) % 16) * SEC / 10, half;

		ck_assert_msg(now_ns() < deadline, "the rebuild does not move on");
		half = now_ns() + (until - now_ns()) / 2;
		for (int i = 0; i < 3; i++)
			c.regs[i] = rnd(e) % (ROWS / (REGION / STRIP) / 2) * 2;
		/* written and flushed: must be there */
		while (now_ns() < half) {
			for (int i = 0; i < QD; i++)
				if (!e->slots[i].busy)
					write_p(&c, &e->slots[i], false);
			ck_assert_int_ge(ev_run_once(e->loop, 10), 0);
		}
		drain(e);
		flush_set(e);
		/* not flushed: old or new */
		while (now_ns() < until) {
			for (int i = 0; i < QD; i++)
				if (!e->slots[i].busy)
					write_p(&c, &e->slots[i], true);
			ck_assert_int_ge(ev_run_once(e->loop, 10), 0);
		}
		ck_assert_uint_eq(e->errors + e->mismatches, 0);
		pre = ji = job(e);
		if (ji.kind == RAID_JOB_REBUILD) {
			ck_assert(ji.partial);
			ck_assert_uint_ge(ji.started_row, prev_start);	/* never back */
			ck_assert_uint_le(ji.rows_walked, p_rows_from(ji.started_row));
			resumed += ji.started_row > 0;
			prev_start = ji.started_row;
		}
		power_cut(&c, seed * 1000 + cuts);
		cuts++;
		verify_cut(&c);
	}
	/* the rest without cuts */
	ck_assert_int_eq(raid_set_rate(e->raid, 0), 0);
	ck_assert_int_eq(raid_job_wait(e->raid), 0);
	ji = job(e);
	if (ji.last_kind == RAID_JOB_NONE)
		ji = pre;	/* it ended before the last cut */
	ck_assert_int_eq(ji.last_kind, RAID_JOB_REBUILD);
	ck_assert(ji.last_partial);
	ck_assert_uint_ge(ji.started_row, prev_start);
	ck_assert_uint_eq(ji.last_rows_walked, p_rows_from(ji.started_row));
	ck_assert_int_eq(raid_member_state(e->raid, slot), RAID_MEMBER_ACTIVE);
	ck_assert_uint_ge(cuts, 2);
	ck_assert_uint_ge(resumed, 1);	/* a run started at a cursor after a cut */
	fprintf(stderr, "RAID %d: %u cuts, %u runs resumed at a cursor, last from row %llu\n",
		l, cuts, resumed, (unsigned long long)ji.started_row);
	verify_all(e);
	/* the member holds its data: its partners out, read everything */
	if (l == RAID_LEVEL_10)
		ck_assert_int_eq(raid_fail(e->raid, slot ^ 1), 0);
	else
		for (uint32_t i = 0, out = 0; i < n && out < raid_redundancy(&(struct raid_geom){
				.level = l, .nmembers = n, .strip = STRIP, .member_size = MDATA }); i++)
			if (i != slot && !raid_fail(e->raid, i))
				out++;
	verify_all(e);
	ck_assert_uint_eq(e->errors + e->mismatches, 0);
	for (uint32_t i = 0; i < n; i++)
		ck_assert_int_eq(fault_record(e->f[i], false), 0);
	free(c.old);
	free(c.unc);
	free(c.cyc);
	env_free(e);
}

START_TEST(cut_raid1) { cut_test(RAID_LEVEL_1, 2, 1, 200); }
END_TEST
START_TEST(cut_raid10) { cut_test(RAID_LEVEL_10, 4, 2, 201); }
END_TEST
START_TEST(cut_raid5) { cut_test(RAID_LEVEL_5, 4, 3, 202); }
END_TEST
START_TEST(cut_raid6) { cut_test(RAID_LEVEL_6, 5, 1, 203); }
END_TEST

/* ---- a 1.3 set: upgraded at assembly; cut while it is still 1.3 on disk,
 * its hot image is not trusted: the rebuild starts over, in full ---- */

/* Every member's superblocks as 1.3 code would have written them. */
static void downgrade(struct env *e)
{
	struct raid_sb sb;

	for (uint32_t i = 0; i < e->n; i++) {
		ck_assert_int_eq(raid_sb_read(e->f[i], &sb), 0);
		sb.minor = 3;
		sb.bitmap_flags = 0;
		ck_assert_int_eq(raid_sb_write(e->f[i], &sb), 0);
	}
}

START_TEST(upgrade_1_3)
{
	struct fault_cut_policy keep = { .mode = FAULT_CUT_KEEP_ALL };
	struct raid_job_info ji;
	struct raid_sb sb;
	uint64_t end;
	struct env e;

	env_create(&e, RAID_LEVEL_5, 4, 4, MDATA, 210);
	fill(&e);
	ck_assert_int_eq(raid_sb_read(e.f[0], &sb), 0);
	ck_assert_uint_eq(sb.minor, 4);
	ck_assert_uint_eq(sb.bitmap_flags, RAID_BM_HOT);
	env_detach(&e);
	downgrade(&e);
	ck_assert_int_eq(raid_assemble(e.f, 4, &e.raid), 0);
	env_attach(&e);
	run_ops(&e, 50);		/* the dirty flag: superblocks written */
	ck_assert_int_eq(raid_sb_read(e.f[2], &sb), 0);
	ck_assert_uint_eq(sb.minor, 4);
	ck_assert_uint_eq(sb.bitmap_flags, RAID_BM_HOT);
	verify_all(&e);

	/* a partial rebuild under way, its cursor on disk */
	ck_assert_int_eq(raid_bitmap_clear_idle(e.raid, NULL), 0);
	ck_assert_int_eq(raid_bitmap_clear_idle(e.raid, NULL), 0);
	ck_assert_int_eq(raid_fail(e.raid, 3), 0);
	for (uint64_t row = 0; row < ROWS; row += 2) {
		submit(&e, &e.slots[0], true, row * row_bytes(&e), 4096);
		drain(&e);
	}
	ck_assert_int_eq(raid_set_rate(e.raid, 64 * 1024), 0);
	ck_assert_int_eq(raid_replace_start(e.raid, 3, e.f[3]), 0);
	end = now_ns() + 60 * SEC;
	do {
		usleep(20 * 1000);
		ck_assert(now_ns() < end);
		ck_assert_int_eq(raid_sb_read(e.f[0], &sb), 0);
	} while (!sb.members[3].rebuilt);
	ck_assert(job(&e).partial);
	run_ops(&e, 50);
	for (uint32_t i = 0; i < 4; i++)
		ck_assert_int_eq(fault_power_cut(e.f[i], &keep), 0);
	env_detach(&e);
	for (uint32_t i = 0; i < 4; i++)
		ck_assert_int_eq(fault_power_restore(e.f[i]), 0);
	downgrade(&e);		/* as if 1.3 code had run the set at the crash */
	ck_assert_int_eq(raid_assemble(e.f, 4, &e.raid), 0);
	env_attach(&e);
	io_until_idle(&e);
	ji = job(&e);
	ck_assert_int_eq(ji.last_rc, 0);
	ck_assert(!ji.last_partial);
	ck_assert_uint_eq(ji.started_row, 0);
	ck_assert_uint_eq(ji.last_rows_walked, ROWS);
	verify_all(&e);
	ck_assert_int_eq(raid_fail(e.raid, 0), 0);
	verify_all(&e);
	ck_assert_uint_eq(e.errors + e.mismatches, 0);
	env_free(&e);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("raid_readd_cut");
	TCase *tc = tcase_create("cut");

	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, cut_raid1);
	tcase_add_test(tc, cut_raid10);
	tcase_add_test(tc, cut_raid5);
	tcase_add_test(tc, cut_raid6);
	tcase_add_test(tc, upgrade_1_3);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int nf;

	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
