/* SPDX-License-Identifier: MIT */
/*
 * Persistent reservations (proto/scsi/pr.c) through scsi_exec against a
 * memory device, with several I_T nexuses: every service action, the
 * access each reservation type grants, unit attentions, coexistence with
 * RESERVE/RELEASE, and APTPL through a state file.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/scsi.h"

#define DEV_SIZE	(1u << 20)
#define BS		512u

static struct ev_loop *loop;
static struct blkdev *mem;
static struct blkchan *ch;
static struct scsi_lu lu;
static struct scsi_cmd cmd;
static bool done;
static uint8_t buf[65536];

static const uint8_t uuid[16] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
				  1, 2, 3, 4, 5, 6, 7, 8 };

/* I_T nexuses: A and B registrants, C a bystander, A2 = A through port 2,
 * O an observer that only reads the state */
enum { A, B, C, A2, O };
static const struct { const char *iport; uint16_t rtpi; uint64_t nexus; } nx[] = {
	[A] = { "iqn.2026-11.test:a,i,0x400000000001", 1, 11 },
	[B] = { "iqn.2026-11.test:b,i,0x400000000002", 1, 12 },
	[C] = { "iqn.2026-11.test:c,i,0x400000000003", 1, 13 },
	[A2] = { "iqn.2026-11.test:a,i,0x400000000001", 2, 14 },
	[O] = { "iqn.2026-11.test:o,i,0x400000000009", 1, 15 },
};

static void on_done(struct scsi_cmd *c)
{
	done = true;
}

static void setup(void)
{
	ck_assert_int_eq(ev_loop_new(EV_AUTO, 0, &loop), 0);
	ck_assert_int_eq(blk_mem_create("m", DEV_SIZE, BS, &mem), 0);
	ck_assert_int_eq(blk_chan_open(mem, loop, &ch), 0);
	scsi_lu_init(&lu, mem, uuid, false);
}

static void teardown(void)
{
	blk_chan_close(ch, NULL, NULL);
	for (int i = 0; i < 100 && ev_inflight(loop); i++)
		ev_run_once(loop, 10);
	ck_assert_int_eq(blkdev_close(mem), 0);
	ev_loop_free(loop);
}

static int run(int who, const uint8_t *cdb, unsigned cdb_len, uint32_t buf_len)
{
	memset(&cmd, 0, sizeof(cmd));
	memcpy(cmd.cdb, cdb, cdb_len);
	cmd.lu = &lu;
	cmd.ch = ch;
	cmd.buf = buf;
	cmd.buf_len = buf_len;
	cmd.nexus = nx[who].nexus;
	cmd.iport = nx[who].iport;
	cmd.tpg = nx[who].rtpi;
	cmd.done = on_done;
	done = false;
	if (scsi_exec(&cmd) == SCSI_PENDING) {
		for (int i = 0; i < 10000 && !done; i++)
			ev_run_once(loop, 10);
		ck_assert(done);
	}
	return cmd.status;
}

static void expect_sense(uint8_t key, uint16_t asc)
{
	ck_assert_int_eq(cmd.status, SCSI_STATUS_CHECK_CONDITION);
	ck_assert_int_eq(cmd.sense[2], key);
	ck_assert_int_eq(cmd.sense[12] << 8 | cmd.sense[13], asc);
}

/* PERSISTENT RESERVE OUT with the basic 24-byte parameter list */
static int prout_len(int who, uint8_t sa, uint8_t type, uint64_t key, uint64_t sakey,
		     uint8_t flags, uint32_t plen)
{
	uint8_t c[10] = { 0x5f, sa, type };

	put_be32(c + 5, plen);
	memset(buf, 0, 64);
	put_be64(buf, key);
	put_be64(buf + 8, sakey);
	buf[20] = flags;
	return run(who, c, sizeof(c), plen);
}

static int prout(int who, uint8_t sa, uint8_t type, uint64_t key, uint64_t sakey, uint8_t flags)
{
	return prout_len(who, sa, type, key, sakey, flags, 24);
}

static int reg(int who, uint64_t key)
{
	return prout(who, PRO_REGISTER_AND_IGNORE, 0, 0, key, 0);
}

static int prin(int who, uint8_t sa)
{
	uint8_t c[10] = { 0x5e, sa };

	put_be16(c + 7, 8192);
	memset(buf, 0xee, 8192);
	return run(who, c, sizeof(c), 8192);
}

static int rd(int who)
{
	uint8_t c[10] = { 0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0 };

	return run(who, c, sizeof(c), BS);
}

static int wr(int who)
{
	uint8_t c[10] = { 0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0 };

	memset(buf, 0x5a, BS);
	return run(who, c, sizeof(c), BS);
}

static int tur(int who)
{
	uint8_t c[6] = { 0 };

	return run(who, c, sizeof(c), 0);
}

static unsigned nkeys(void)
{
	ck_assert_int_eq(prin(O, PRI_READ_KEYS), 0);
	return get_be32(buf + 4) / 8;
}

static uint32_t generation(void)
{
	ck_assert_int_eq(prin(O, PRI_READ_KEYS), 0);
	return get_be32(buf);
}

/* READ RESERVATION: the type, 0 when none; *key the key shown */
static uint8_t reservation(uint64_t *key)
{
	ck_assert_int_eq(prin(O, PRI_READ_RESERVATION), 0);
	if (!get_be32(buf + 4))
		return 0;
	ck_assert_uint_eq(get_be32(buf + 4), 16);
	if (key)
		*key = get_be64(buf + 8);
	return buf[21];
}

#define CONFLICT	SCSI_STATUS_RESERVATION_CONFLICT
#define GOOD		SCSI_STATUS_GOOD

START_TEST(register_and_keys)
{
	ck_assert_uint_eq(nkeys(), 0);
	ck_assert_uint_eq(generation(), 0);
	/* REGISTER from an unregistered nexus with a non-zero key: conflict */
	ck_assert_int_eq(prout(A, PRO_REGISTER, 0, 5, 0x1111, 0), CONFLICT);
	/* unregistered, service action key 0: nothing happens */
	ck_assert_int_eq(prout(A, PRO_REGISTER, 0, 0, 0, 0), GOOD);
	ck_assert_uint_eq(generation(), 0);
	ck_assert_int_eq(prout(A, PRO_REGISTER, 0, 0, 0x1111, 0), GOOD);
	ck_assert_int_eq(reg(B, 0x2222), GOOD);
	ck_assert_uint_eq(nkeys(), 2);
	ck_assert_uint_eq(get_be64(buf + 8), 0x1111);
	ck_assert_uint_eq(get_be64(buf + 16), 0x2222);
	ck_assert_uint_eq(generation(), 2);
	/* re-register with the wrong key: conflict; the right one: new key */
	ck_assert_int_eq(prout(A, PRO_REGISTER, 0, 0x9999, 0x3333, 0), CONFLICT);
	ck_assert_int_eq(prout(A, PRO_REGISTER, 0, 0x1111, 0x3333, 0), GOOD);
	ck_assert_int_eq(reg(A, 0x4444), GOOD);	/* ignore existing key */
	ck_assert_int_eq(prin(C, PRI_READ_KEYS), 0);
	ck_assert_uint_eq(get_be64(buf + 8), 0x4444);
	ck_assert_uint_eq(get_be32(buf), 4);
	/* the same initiator through another target port is another nexus */
	ck_assert_int_eq(prout(A2, PRO_REGISTER, 0, 0x4444, 0x5555, 0), CONFLICT);
	/* unregister */
	ck_assert_int_eq(prout(A, PRO_REGISTER, 0, 0x4444, 0, 0), GOOD);
	ck_assert_uint_eq(nkeys(), 1);
	/* READ KEYS cut at the allocation length, length says all */
	{
		uint8_t c[10] = { 0x5e, 0, 0, 0, 0, 0, 0, 0, 12, 0 };

		ck_assert_int_eq(run(C, c, sizeof(c), 8192), GOOD);
		ck_assert_uint_eq(cmd.xfer_len, 12);
		ck_assert_uint_eq(get_be32(buf + 4), 8);
	}
}
END_TEST

START_TEST(bad_requests)
{
	uint8_t c[10] = { 0x5e, 4 };

	put_be16(c + 7, 100);
	run(A, c, sizeof(c), 100);	/* PRIN service action 4 */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	prout(A, 8, 0, 0, 1, 0);	/* PROUT service action 8 */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	prout_len(A, PRO_REGISTER, 0, 0, 1, 0, 23);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
	prout_len(A, PRO_REGISTER, 0, 0, 1, 0, 28);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
	prout(A, PRO_REGISTER, 0, 0, 1, 0x08);	/* SPEC_I_PT without its list */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
	prout(A, PRO_REGISTER_AND_IGNORE, 0, 0, 1, 0x08);	/* not with this one */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	prout(A, PRO_REGISTER, 0, 0, 1, 0x01);	/* APTPL without a state file */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	ck_assert_uint_eq(nkeys(), 0);
	ck_assert_int_eq(reg(A, 1), GOOD);
	prout(A, PRO_RESERVE, 0x10 | PR_TYPE_WE, 1, 0, 0);	/* scope not LU */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	prout(A, PRO_RESERVE, 2, 1, 0, 0);			/* no type 2 */
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	/* everything but REGISTER needs a registration and its key */
	ck_assert_int_eq(prout(C, PRO_RESERVE, PR_TYPE_WE, 0, 0, 0), CONFLICT);
	ck_assert_int_eq(prout(A, PRO_RESERVE, PR_TYPE_WE, 2, 0, 0), CONFLICT);
	ck_assert_int_eq(prout(C, PRO_CLEAR, 0, 0, 0, 0), CONFLICT);
	ck_assert_int_eq(reservation(NULL), 0);
}
END_TEST

/* What A (holder), B (registered) and C (not) may do under each type. */
static const struct {
	uint8_t type;
	bool b_read, b_write, c_read, c_write;
} access_table[] = {
	{ PR_TYPE_WE, true, false, true, false },
	{ PR_TYPE_EA, false, false, false, false },
	{ PR_TYPE_WE_RO, true, true, true, false },
	{ PR_TYPE_EA_RO, true, true, false, false },
	{ PR_TYPE_WE_AR, true, true, true, false },
	{ PR_TYPE_EA_AR, true, true, false, false },
};

START_TEST(access_by_type)
{
	uint8_t type = access_table[_i].type;
	bool ar = type == PR_TYPE_WE_AR || type == PR_TYPE_EA_AR;
	uint64_t key = 0xdead;

	ck_assert_int_eq(reg(A, 0xa), GOOD);
	ck_assert_int_eq(reg(B, 0xb), GOOD);
	ck_assert_int_eq(prout(A, PRO_RESERVE, type, 0xa, 0, 0), GOOD);
	ck_assert_int_eq(reservation(&key), type);
	ck_assert_uint_eq(key, ar ? 0 : 0xa);	/* all registrants: key 0 */
	ck_assert_int_eq(rd(A), GOOD);
	ck_assert_int_eq(wr(A), GOOD);
	ck_assert_int_eq(rd(B), access_table[_i].b_read ? GOOD : CONFLICT);
	ck_assert_int_eq(wr(B), access_table[_i].b_write ? GOOD : CONFLICT);
	ck_assert_int_eq(rd(C), access_table[_i].c_read ? GOOD : CONFLICT);
	ck_assert_int_eq(wr(C), access_table[_i].c_write ? GOOD : CONFLICT);
	/* allowed whatever the type */
	ck_assert_int_eq(tur(C), GOOD);
	{
		uint8_t inq[6] = { 0x12, 0, 0, 0, 96, 0 };
		uint8_t rc10[10] = { 0x25 };

		ck_assert_int_eq(run(C, inq, 6, 96), GOOD);
		ck_assert_int_eq(run(C, rc10, 10, 8), GOOD);
	}
	/* reserving again: the holder with the same type is fine, with
	 * another type or by someone else a conflict (except a registrant
	 * of an all-registrants reservation, which holds it too) */
	ck_assert_int_eq(prout(A, PRO_RESERVE, type, 0xa, 0, 0), GOOD);
	ck_assert_int_eq(prout(A, PRO_RESERVE, type == PR_TYPE_EA ? PR_TYPE_WE : PR_TYPE_EA,
			       0xa, 0, 0), CONFLICT);
	ck_assert_int_eq(prout(B, PRO_RESERVE, type, 0xb, 0, 0), ar ? GOOD : CONFLICT);
	/* release with the wrong type: INVALID RELEASE */
	prout(A, PRO_RELEASE, type == PR_TYPE_EA ? PR_TYPE_WE : PR_TYPE_EA, 0xa, 0, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_RELEASE_OF_PR);
	ck_assert_int_eq(prout(A, PRO_RELEASE, type, 0xa, 0, 0), GOOD);
	ck_assert_int_eq(reservation(NULL), 0);
	/* registrants-only and all-registrants: RESERVATIONS RELEASED to the
	 * other registrants, once, not on INQUIRY */
	if (type != PR_TYPE_WE && type != PR_TYPE_EA) {
		uint8_t inq[6] = { 0x12, 0, 0, 0, 96, 0 };

		ck_assert_int_eq(run(B, inq, 6, 96), GOOD);
		tur(B);
		expect_sense(SK_UNIT_ATTENTION, ASC_RESERVATIONS_RELEASED);
	}
	ck_assert_int_eq(tur(B), GOOD);
	ck_assert_int_eq(tur(A), GOOD);
	ck_assert_int_eq(wr(C), GOOD);
}
END_TEST

/* The holder unregisters: the reservation goes, except all-registrants
 * ones, which stay while anyone is registered. */
START_TEST(ownership)
{
	uint8_t type = access_table[_i].type;
	bool ar = type == PR_TYPE_WE_AR || type == PR_TYPE_EA_AR;

	ck_assert_int_eq(reg(A, 0xa), GOOD);
	ck_assert_int_eq(reg(B, 0xb), GOOD);
	ck_assert_int_eq(prout(A, PRO_RESERVE, type, 0xa, 0, 0), GOOD);
	ck_assert_int_eq(prout(A, PRO_REGISTER, 0, 0xa, 0, 0), GOOD);
	ck_assert_int_eq(reservation(NULL), ar ? type : 0);
	if (type == PR_TYPE_WE_RO || type == PR_TYPE_EA_RO) {
		tur(B);
		expect_sense(SK_UNIT_ATTENTION, ASC_RESERVATIONS_RELEASED);
	}
	ck_assert_int_eq(prout(B, PRO_REGISTER, 0, 0xb, 0, 0), GOOD);
	ck_assert_int_eq(reservation(NULL), 0);
	ck_assert_uint_eq(nkeys(), 0);
}
END_TEST

START_TEST(release_by_others)
{
	ck_assert_int_eq(reg(A, 0xa), GOOD);
	ck_assert_int_eq(reg(B, 0xb), GOOD);
	ck_assert_int_eq(prout(A, PRO_RESERVE, PR_TYPE_EA, 0xa, 0, 0), GOOD);
	/* a registrant that does not hold it: GOOD, nothing happens */
	ck_assert_int_eq(prout(B, PRO_RELEASE, PR_TYPE_EA, 0xb, 0, 0), GOOD);
	ck_assert_int_eq(reservation(NULL), PR_TYPE_EA);
	/* with the holder's key from another nexus: conflict */
	ck_assert_int_eq(prout(B, PRO_RELEASE, PR_TYPE_EA, 0xa, 0, 0), CONFLICT);
	ck_assert_int_eq(reservation(NULL), PR_TYPE_EA);
	/* no unit attention for an exclusive-access release */
	ck_assert_int_eq(prout(A, PRO_RELEASE, PR_TYPE_EA, 0xa, 0, 0), GOOD);
	ck_assert_int_eq(tur(B), GOOD);
	/* nothing reserved: RELEASE is GOOD */
	ck_assert_int_eq(prout(A, PRO_RELEASE, PR_TYPE_EA, 0xa, 0, 0), GOOD);
}
END_TEST

START_TEST(clear)
{
	uint32_t gen;

	ck_assert_int_eq(reg(A, 0xa), GOOD);
	ck_assert_int_eq(reg(B, 0xb), GOOD);
	ck_assert_int_eq(prout(A, PRO_RESERVE, PR_TYPE_WE, 0xa, 0, 0), GOOD);
	gen = generation();
	ck_assert_int_eq(prout(B, PRO_CLEAR, 0, 0xa, 0, 0), CONFLICT);	/* not B's key */
	ck_assert_int_eq(prout(B, PRO_CLEAR, 0, 0xb, 0, 0), GOOD);
	ck_assert_uint_eq(nkeys(), 0);
	ck_assert_int_eq(reservation(NULL), 0);
	ck_assert_uint_eq(generation(), gen + 1);
	tur(A);
	expect_sense(SK_UNIT_ATTENTION, ASC_RESERVATIONS_PREEMPTED);
	ck_assert_int_eq(tur(A), GOOD);
	ck_assert_int_eq(tur(B), GOOD);		/* not to the one that cleared */
	ck_assert_int_eq(wr(C), GOOD);
}
END_TEST

static struct pr_nexus aborted[8];
static struct scsi_pr_wait *held[8];
static unsigned naborted;
static bool hold;	/* the hook leaves a task running on each nexus */

static void on_abort(struct scsi_lu *l, const struct pr_nexus *n, struct scsi_pr_wait *w)
{
	ck_assert_ptr_eq(l, &lu);
	ck_assert_uint_lt(naborted, 8);
	if (hold) {
		scsi_pr_wait_get(w);
		held[naborted] = w;
	}
	aborted[naborted++] = *n;
}

START_TEST(preempt)
{
	uint64_t key;
	bool and_abort = _i;
	uint8_t sa = and_abort ? PRO_PREEMPT_AND_ABORT : PRO_PREEMPT;

	naborted = 0;
	scsi_pr_set_abort_hook(on_abort);
	ck_assert_int_eq(reg(A, 0xa), GOOD);
	ck_assert_int_eq(reg(B, 0xb), GOOD);
	ck_assert_int_eq(reg(C, 0xc), GOOD);
	ck_assert_int_eq(prout(A, PRO_RESERVE, PR_TYPE_EA, 0xa, 0, 0), GOOD);
	/* a key nobody has: conflict; key 0 without all registrants: invalid */
	ck_assert_int_eq(prout(B, sa, PR_TYPE_WE, 0xb, 0x77, 0), CONFLICT);
	prout(B, sa, PR_TYPE_WE, 0xb, 0, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	/* preempting a non-holder's key removes only that registration */
	ck_assert_int_eq(prout(B, sa, PR_TYPE_WE, 0xb, 0xc, 0), GOOD);
	ck_assert_uint_eq(nkeys(), 2);
	ck_assert_int_eq(reservation(&key), PR_TYPE_EA);
	ck_assert_uint_eq(key, 0xa);
	tur(C);
	expect_sense(SK_UNIT_ATTENTION, ASC_REGISTRATIONS_PREEMPTED);
	/* preempting the holder: B holds it now, with B's type */
	ck_assert_int_eq(prout(B, sa, PR_TYPE_WE, 0xb, 0xa, 0), GOOD);
	ck_assert_int_eq(reservation(&key), PR_TYPE_WE);
	ck_assert_uint_eq(key, 0xb);
	ck_assert_uint_eq(nkeys(), 1);
	tur(A);
	expect_sense(SK_UNIT_ATTENTION, ASC_REGISTRATIONS_PREEMPTED);
	ck_assert_int_eq(wr(A), CONFLICT);
	ck_assert_int_eq(rd(A), GOOD);		/* write exclusive */
	ck_assert_int_eq(wr(B), GOOD);
	if (and_abort) {
		ck_assert_uint_eq(naborted, 2);
		ck_assert_str_eq(aborted[0].iport, nx[C].iport);
		ck_assert_str_eq(aborted[1].iport, nx[A].iport);
	} else {
		ck_assert_uint_eq(naborted, 0);
	}
	scsi_pr_set_abort_hook(NULL);
}
END_TEST

/* PREEMPT AND ABORT completes only after the tasks it aborted have ended */
START_TEST(preempt_and_abort_waits)
{
	uint8_t c[10] = { 0x5f, PRO_PREEMPT_AND_ABORT, PR_TYPE_EA };

	naborted = 0;
	hold = true;
	scsi_pr_set_abort_hook(on_abort);
	ck_assert_int_eq(reg(A, 0xa), GOOD);
	ck_assert_int_eq(reg(B, 0xb), GOOD);
	ck_assert_int_eq(prout(A, PRO_RESERVE, PR_TYPE_WE, 0xa, 0, 0), GOOD);
	put_be32(c + 5, 24);
	memset(buf, 0, 24);
	put_be64(buf, 0xb);
	put_be64(buf + 8, 0xa);
	memset(&cmd, 0, sizeof(cmd));
	memcpy(cmd.cdb, c, sizeof(c));
	cmd.lu = &lu;
	cmd.ch = ch;
	cmd.buf = buf;
	cmd.buf_len = 24;
	cmd.iport = nx[B].iport;
	cmd.tpg = nx[B].rtpi;
	cmd.done = on_done;
	done = false;
	ck_assert_int_eq(scsi_exec(&cmd), SCSI_PENDING);
	ck_assert_uint_eq(naborted, 1);
	for (int i = 0; i < 5; i++)
		ev_run_once(loop, 10);
	ck_assert(!done);		/* A's task is still running */
	scsi_pr_wait_put(held[0]);	/* now it ended */
	for (int i = 0; i < 1000 && !done; i++)
		ev_run_once(loop, 10);
	ck_assert(done);
	ck_assert_int_eq(cmd.status, GOOD);
	hold = false;
	scsi_pr_set_abort_hook(NULL);
	ck_assert_int_eq(reservation(NULL), PR_TYPE_EA);
	ck_assert_int_eq(wr(B), GOOD);
}
END_TEST

START_TEST(preempt_all_registrants)
{
	ck_assert_int_eq(reg(A, 0xa), GOOD);
	ck_assert_int_eq(reg(B, 0xb), GOOD);
	ck_assert_int_eq(reg(C, 0xc), GOOD);
	ck_assert_int_eq(prout(A, PRO_RESERVE, PR_TYPE_WE_AR, 0xa, 0, 0), GOOD);
	/* key 0 under all registrants: everyone else goes, B holds an EA */
	ck_assert_int_eq(prout(B, PRO_PREEMPT, PR_TYPE_EA, 0xb, 0, 0), GOOD);
	ck_assert_uint_eq(nkeys(), 1);
	ck_assert_int_eq(reservation(NULL), PR_TYPE_EA);
	tur(A);
	expect_sense(SK_UNIT_ATTENTION, ASC_REGISTRATIONS_PREEMPTED);
	tur(C);
	expect_sense(SK_UNIT_ATTENTION, ASC_REGISTRATIONS_PREEMPTED);
	ck_assert_int_eq(rd(A), CONFLICT);
	ck_assert_int_eq(rd(B), GOOD);
}
END_TEST

/* REGISTER AND MOVE parameters: to dest (format 01) on port 1, UNREG */
static void move_params(uint64_t key, const char *dest, uint32_t tl)
{
	memset(buf, 0, 24 + tl);
	put_be64(buf, key);
	put_be64(buf + 8, 0xb);
	buf[17] = 0x02;			/* UNREG */
	put_be16(buf + 18, 1);		/* relative target port */
	put_be32(buf + 20, tl);
	buf[24] = 0x45;			/* iSCSI, format 01: name,i,0xISID */
	put_be16(buf + 26, (uint16_t)(tl - 4));
	memcpy(buf + 28, dest, strlen(dest));
}

START_TEST(register_and_move)
{
	const char *dest = nx[B].iport;
	uint8_t c[10] = { 0x5f, PRO_REGISTER_AND_MOVE };
	uint32_t tl = 4 + ((uint32_t)strlen(dest) + 4) / 4 * 4, plen = 24 + tl;
	uint64_t key;

	put_be32(c + 5, plen);
	ck_assert_int_eq(reg(A, 0xa), GOOD);
	ck_assert_int_eq(prout(A, PRO_RESERVE, PR_TYPE_WE, 0xa, 0, 0), GOOD);
	move_params(0xa, dest, tl);
	ck_assert_int_eq(run(A, c, sizeof(c), plen), GOOD);
	ck_assert_int_eq(reservation(&key), PR_TYPE_WE);
	ck_assert_uint_eq(key, 0xb);
	ck_assert_uint_eq(nkeys(), 1);		/* A unregistered */
	ck_assert_int_eq(wr(B), GOOD);
	ck_assert_int_eq(wr(A), CONFLICT);
	/* only the holder moves it */
	move_params(0xb, nx[C].iport, tl);
	ck_assert_int_eq(run(A, c, sizeof(c), plen), CONFLICT);
	/* not to itself */
	move_params(0xb, dest, tl);
	run(B, c, sizeof(c), plen);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
}
END_TEST

/* REGISTER with SPEC_I_PT naming initiator ports: TransportIDs after the
 * 24 bytes, with their length at 24 */
static int register_spec(int who, uint64_t key, const char *const *names, unsigned n)
{
	uint8_t c[10] = { 0x5f, PRO_REGISTER };
	uint32_t off = 28;

	memset(buf, 0, 4096);
	put_be64(buf + 8, key);
	buf[20] = 0x08;
	for (unsigned i = 0; i < n; i++) {
		uint32_t nl = ((uint32_t)strlen(names[i]) + 4) / 4 * 4;

		nl = nl < 20 ? 20 : nl;
		buf[off] = (strstr(names[i], ",i,0x") ? 0x40 : 0) | 0x05;
		put_be16(buf + off + 2, (uint16_t)nl);
		memcpy(buf + off + 4, names[i], strlen(names[i]));
		off += 4 + nl;
	}
	put_be32(buf + 24, off - 28);
	put_be32(c + 5, off);
	return run(who, c, sizeof(c), off);
}

START_TEST(spec_i_pt)
{
	const char *both[] = { nx[B].iport, "iqn.2026-11.test:c" };	/* C: any ISID */
	const char *twice[] = { nx[B].iport, nx[B].iport };
	const char *self[] = { nx[A].iport };
	const char *empty[] = { "" };

	ck_assert_int_eq(register_spec(A, 0xa, twice, 2), SCSI_STATUS_CHECK_CONDITION);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	ck_assert_int_eq(register_spec(A, 0xa, self, 1), SCSI_STATUS_CHECK_CONDITION);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	ck_assert_uint_eq(nkeys(), 0);
	ck_assert_int_eq(register_spec(A, 0xa, both, 2), GOOD);
	ck_assert_uint_eq(nkeys(), 3);
	/* B and C hold the key now: B reserves with it, C (any ISID) writes
	 * under a registrants-only reservation */
	ck_assert_int_eq(prout(B, PRO_RESERVE, PR_TYPE_WE_RO, 0xa, 0, 0), GOOD);
	ck_assert_int_eq(wr(C), GOOD);
	ck_assert_int_eq(wr(A2), CONFLICT);	/* another target port */
	/* registered already: refused, all or nothing */
	ck_assert_int_eq(register_spec(A, 0xa, both, 2), SCSI_STATUS_CHECK_CONDITION);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	ck_assert_uint_eq(nkeys(), 3);
	/* a malformed TransportID (an empty name) */
	ck_assert_int_eq(register_spec(O, 0xf, empty, 1), SCSI_STATUS_CHECK_CONDITION);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	/* through port 2 the same ports are other I_T nexuses */
	ck_assert_int_eq(register_spec(A2, 0xa2, both, 2), GOOD);
	ck_assert_uint_eq(nkeys(), 6);
}
END_TEST

START_TEST(full_status_and_caps)
{
	ck_assert_int_eq(reg(A, 0xa), GOOD);
	ck_assert_int_eq(prout(B, PRO_REGISTER_AND_IGNORE, 0, 0, 0xb, 0x04), GOOD);	/* ALL_TG_PT */
	ck_assert_int_eq(prout(A, PRO_RESERVE, PR_TYPE_EA_RO, 0xa, 0, 0), GOOD);
	ck_assert_int_eq(prin(C, PRI_READ_FULL_STATUS), GOOD);
	{
		uint32_t len = get_be32(buf + 4), off = 8;
		const uint8_t *p = buf + off;
		uint32_t tl = get_be32(p + 20);

		ck_assert_uint_eq(get_be64(p), 0xa);
		ck_assert_int_eq(p[12], 0x01);		/* R_HOLDER */
		ck_assert_int_eq(p[13], PR_TYPE_EA_RO);
		ck_assert_uint_eq(get_be16(p + 18), 1);
		ck_assert_int_eq(p[24], 0x45);
		ck_assert_str_eq((const char *)p + 28, nx[A].iport);
		ck_assert_uint_eq(tl % 4, 0);
		p += 24 + tl;
		ck_assert_uint_eq(get_be64(p), 0xb);
		ck_assert_int_eq(p[12], 0x02);		/* ALL_TG_PT, not holder */
		ck_assert_str_eq((const char *)p + 28, nx[B].iport);
		ck_assert_uint_eq(len, (uint32_t)(p + 24 + get_be32(p + 20) - buf - 8));
	}
	ck_assert_int_eq(prin(C, PRI_REPORT_CAPABILITIES), GOOD);
	ck_assert_uint_eq(get_be16(buf), 8);
	ck_assert_int_eq(buf[2], 0x1c);		/* CRH, SIP_C, ATP_C; no PTPL_C */
	ck_assert_int_eq(buf[3] & 0x80, 0x80);	/* TMV */
	ck_assert_int_eq(buf[4], 0xea);
	ck_assert_int_eq(buf[5], 0x01);
}
END_TEST

START_TEST(all_target_ports)
{
	/* registered through port 1 for all ports: port 2 is registered too */
	ck_assert_int_eq(prout(A, PRO_REGISTER, 0, 0, 0xa, 0x04), GOOD);
	ck_assert_int_eq(prout(A2, PRO_RESERVE, PR_TYPE_EA, 0xa, 0, 0), GOOD);
	ck_assert_int_eq(wr(A), GOOD);
	ck_assert_int_eq(wr(A2), GOOD);
	ck_assert_int_eq(rd(B), CONFLICT);
	ck_assert_uint_eq(nkeys(), 1);
	/* without ALL_TG_PT, port 2 is someone else */
	ck_assert_int_eq(prout(A, PRO_REGISTER, 0, 0xa, 0, 0), GOOD);
	ck_assert_int_eq(reg(A, 0xa), GOOD);
	ck_assert_int_eq(prout(A, PRO_RESERVE, PR_TYPE_EA, 0xa, 0, 0), GOOD);
	ck_assert_int_eq(rd(A2), CONFLICT);
}
END_TEST

START_TEST(legacy_reserve)
{
	uint8_t rsv[6] = { 0x16 }, rel[6] = { 0x17 };

	/* no registrations: SPC-2 as before; PR commands of others conflict */
	ck_assert_int_eq(run(A, rsv, 6, 0), GOOD);
	ck_assert_int_eq(reg(B, 0xb), CONFLICT);
	ck_assert_int_eq(run(A, rel, 6, 0), GOOD);
	/* with a registration: RESERVE/RELEASE from others conflict */
	ck_assert_int_eq(reg(B, 0xb), GOOD);
	ck_assert_int_eq(run(A, rsv, 6, 0), CONFLICT);
	ck_assert_int_eq(run(A, rel, 6, 0), CONFLICT);
	ck_assert_int_eq(run(B, rsv, 6, 0), CONFLICT);	/* registered, no reservation */
	/* from the holder: GOOD and nothing happens */
	ck_assert_int_eq(prout(B, PRO_RESERVE, PR_TYPE_WE, 0xb, 0, 0), GOOD);
	ck_assert_int_eq(run(B, rsv, 6, 0), GOOD);
	ck_assert_uint_eq(lu.reserved_by, 0);
	ck_assert_int_eq(run(B, rel, 6, 0), GOOD);
	ck_assert_int_eq(reservation(NULL), PR_TYPE_WE);
	ck_assert_int_eq(rd(A), GOOD);
	/* LU reset and nexus loss do not touch persistent reservations */
	scsi_lu_reset(&lu);
	scsi_lu_release_nexus(&lu, nx[B].nexus);
	ck_assert_int_eq(reservation(NULL), PR_TYPE_WE);
	ck_assert_int_eq(wr(A), CONFLICT);
}
END_TEST

START_TEST(aptpl_file)
{
	char dir[] = "/tmp/test_scsi_pr.XXXXXX", path[128];
	struct scsi_lu *lu2;
	struct pr_snapshot s;
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/lu0.pr", dir);
	ck_assert_int_eq(scsi_pr_set_file(&lu, path), 0);	/* absent: empty */
	ck_assert_int_eq(prin(C, PRI_REPORT_CAPABILITIES), GOOD);
	ck_assert_int_eq(buf[2] & 0x01, 0x01);		/* PTPL_C */
	ck_assert_int_eq(buf[3] & 0x01, 0);		/* PTPL_A */
	/* without APTPL nothing is written */
	ck_assert_int_eq(reg(B, 0xb), GOOD);
	ck_assert_int_eq(access(path, F_OK), -1);
	ck_assert_int_eq(prout(A, PRO_REGISTER_AND_IGNORE, 0, 0, 0xa, 0x01), GOOD);
	ck_assert_int_eq(prout(A, PRO_RESERVE, PR_TYPE_WE_RO, 0xa, 0, 0), GOOD);
	ck_assert_int_eq(access(path, F_OK), 0);
	ck_assert_int_eq(prin(C, PRI_REPORT_CAPABILITIES), GOOD);
	ck_assert_int_eq(buf[3] & 0x01, 0x01);		/* PTPL_A */

	/* a new LU on the same file: the same state (a restart) */
	lu2 = calloc(1, sizeof(*lu2));
	scsi_lu_init(lu2, mem, uuid, false);
	ck_assert_int_eq(scsi_pr_set_file(lu2, path), 0);
	scsi_pr_snapshot(lu2, &s);
	ck_assert_uint_eq(s.nregs, 2);
	ck_assert(s.reserved);
	ck_assert_int_eq(s.type, PR_TYPE_WE_RO);
	ck_assert_int_eq(s.holder, 1);
	ck_assert_uint_eq(s.regs[1].key, 0xa);
	ck_assert_str_eq(s.regs[1].n.iport, nx[A].iport);
	ck_assert_uint_eq(s.regs[0].key, 0xb);
	ck_assert(s.aptpl);
	ck_assert_uint_eq(s.generation, 2);
	free(lu2);

	/* APTPL off: the file goes */
	ck_assert_int_eq(prout(A, PRO_REGISTER, 0, 0xa, 0xa1, 0), GOOD);
	ck_assert_int_eq(access(path, F_OK), -1);

	/* a damaged file is refused, not taken as empty */
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("sand-pr 1\nreg zz\n", f);
	fclose(f);
	lu2 = calloc(1, sizeof(*lu2));
	scsi_lu_init(lu2, mem, uuid, false);
	ck_assert_int_eq(scsi_pr_set_file(lu2, path), -EINVAL);
	free(lu2);
	unlink(path);
	rmdir(dir);
}
END_TEST

START_TEST(aptpl_save_failure)
{
	char dir[] = "/tmp/test_scsi_pr.XXXXXX", path[160];

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/missing/lu0.pr", dir);
	ck_assert_int_eq(scsi_pr_set_file(&lu, path), 0);
	/* the directory does not exist: the change is refused and undone */
	prout(A, PRO_REGISTER_AND_IGNORE, 0, 0, 0xa, 0x01);
	expect_sense(SK_HARDWARE_ERROR, ASC_INTERNAL_TARGET_FAILURE);
	ck_assert_uint_eq(nkeys(), 0);
	ck_assert_uint_eq(generation(), 0);
	rmdir(dir);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("scsi_pr");
	TCase *tc = tcase_create("all");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, register_and_keys);
	tcase_add_test(tc, bad_requests);
	tcase_add_loop_test(tc, access_by_type, 0, 6);
	tcase_add_loop_test(tc, ownership, 0, 6);
	tcase_add_test(tc, release_by_others);
	tcase_add_test(tc, clear);
	tcase_add_loop_test(tc, preempt, 0, 2);
	tcase_add_test(tc, preempt_and_abort_waits);
	tcase_add_test(tc, preempt_all_registrants);
	tcase_add_test(tc, register_and_move);
	tcase_add_test(tc, spec_i_pt);
	tcase_add_test(tc, full_status_and_caps);
	tcase_add_test(tc, all_target_ports);
	tcase_add_test(tc, legacy_reserve);
	tcase_add_test(tc, aptpl_file);
	tcase_add_test(tc, aptpl_save_failure);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
