/* SPDX-License-Identifier: MIT */
/*
 * ALUA (proto/scsi/alua.c) against a memory device: TPGS in INQUIRY, the
 * port designators of VPD 0x83, REPORT and SET TARGET PORT GROUPS, the
 * unit attention after a change (once per I_T_L nexus, not for the nexus
 * that made it), and what standby and unavailable groups refuse or allow.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/alua.h"
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
static uint8_t buf[64 << 10];
static const uint64_t luns[] = { 0 };
static unsigned seen_a, seen_b;	/* two I_T_L nexuses: through group 1 and 2 */

static const uint8_t uuid[16] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
				  1, 2, 3, 4, 5, 6, 7, 8 };

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
	scsi_alua_reset();
	ck_assert_int_eq(scsi_alua_group_add(1, SCSI_ALUA_OPTIMIZED), 0);
	ck_assert_int_eq(scsi_alua_group_add(2, SCSI_ALUA_NONOPTIMIZED), 0);
	seen_a = seen_b = 0;
}

static void teardown(void)
{
	scsi_alua_reset();
	blk_chan_close(ch, NULL, NULL);
	for (int i = 0; i < 100 && ev_inflight(loop); i++)
		ev_run_once(loop, 10);
	ck_assert_int_eq(blkdev_close(mem), 0);
	ev_loop_free(loop);
}

/* Run one CDB through group tpg (0: no ALUA) with the nexus memory seen. */
static int run(uint16_t tpg, unsigned *seen, const uint8_t *cdb, unsigned cdb_len,
	       uint32_t buf_len)
{
	memset(&cmd, 0, sizeof(cmd));
	memcpy(cmd.cdb, cdb, cdb_len);
	cmd.lu = &lu;
	cmd.ch = ch;
	cmd.buf = buf;
	cmd.buf_len = buf_len;
	cmd.luns = luns;
	cmd.nluns = 1;
	cmd.nexus = tpg + 1;
	cmd.tpg = tpg;
	cmd.alua_seen = seen;
	cmd.done = on_done;
	done = false;
	if (scsi_exec(&cmd) == SCSI_PENDING) {
		for (int i = 0; i < 10000 && !done; i++)
			ev_run_once(loop, 10);
		ck_assert(done);
	}
	return cmd.status;
}

#define RUN(tpg, seen, len, ...) ({ const uint8_t c_[] = { __VA_ARGS__ }; \
				    run(tpg, seen, c_, sizeof(c_), len); })

static void expect_sense(uint8_t key, uint16_t asc)
{
	ck_assert_int_eq(cmd.status, SCSI_STATUS_CHECK_CONDITION);
	ck_assert_int_eq(cmd.sense[2] & 0x0f, key);
	ck_assert_int_eq(get_be16(cmd.sense + 12), asc);
}

/* REPORT TARGET PORT GROUPS through tpg: the state of group id (-1: not listed). */
static int rtpg_state(uint16_t tpg, unsigned *seen, uint16_t id, uint8_t *why)
{
	uint32_t len;

	ck_assert_int_eq(RUN(tpg, seen, 4096, 0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0), 0);
	len = get_be32(buf) + 4;
	ck_assert_uint_eq(cmd.xfer_len, len);
	for (uint32_t o = 4; o < len; o += 8 + 4u * buf[o + 7]) {
		if (get_be16(buf + o + 2) != id)
			continue;
		ck_assert_int_eq(buf[o + 1], 0x0f);	/* U S AN AO supported */
		ck_assert_int_eq(buf[o + 7], 1);
		ck_assert_int_eq(get_be16(buf + o + 10), id);	/* relative port */
		if (why)
			*why = buf[o + 5];
		return buf[o] & 0x0f;
	}
	return -1;
}

START_TEST(inquiry_tpgs_and_designators)
{
	uint32_t len;
	bool rel = false, grp = false, naa = false;

	ck_assert_int_eq(RUN(2, &seen_b, 96, 0x12, 0, 0, 0, 96, 0), 0);
	ck_assert_int_eq(buf[5] & 0x30, 0x30);		/* implicit and explicit */
	ck_assert_int_eq(RUN(0, NULL, 96, 0x12, 0, 0, 0, 96, 0), 0);
	ck_assert_int_eq(buf[5] & 0x30, 0);		/* no ALUA on this transport */

	ck_assert_int_eq(RUN(2, &seen_b, 255, 0x12, 1, 0x83, 0, 255, 0), 0);
	len = get_be16(buf + 2) + 4;
	for (uint32_t o = 4; o < len; o += 4 + buf[o + 3]) {
		uint8_t type = buf[o + 1] & 0x0f, assoc = (buf[o + 1] >> 4) & 3;

		if (type == 3 && assoc == 0)
			naa = !memcmp(buf + o + 4, lu.naa, 8);
		if (type == 4 && assoc == 1) {
			rel = true;
			ck_assert_int_eq(buf[o] >> 4, 5);	/* iSCSI */
			ck_assert_int_eq(buf[o + 1] & 0x80, 0x80);	/* PIV */
			ck_assert_int_eq(get_be16(buf + o + 6), 2);
		}
		if (type == 5 && assoc == 1) {
			grp = true;
			ck_assert_int_eq(get_be16(buf + o + 6), 2);
		}
	}
	ck_assert(naa && rel && grp);
	/* the LU's own designator is the same through the other group */
	ck_assert_int_eq(RUN(1, &seen_a, 255, 0x12, 1, 0x83, 0, 255, 0), 0);
	ck_assert_int_eq(buf[4 + 1] & 0x3f, 0x03);
	ck_assert(!memcmp(buf + 8, lu.naa, 8));
}
END_TEST

START_TEST(report_target_port_groups)
{
	uint8_t why = 0xff;

	ck_assert_int_eq(rtpg_state(1, &seen_a, 1, &why), SCSI_ALUA_OPTIMIZED);
	ck_assert_int_eq(why, 0);
	ck_assert_int_eq(rtpg_state(1, &seen_a, 2, NULL), SCSI_ALUA_NONOPTIMIZED);
	ck_assert_int_eq(rtpg_state(1, &seen_a, 3, NULL), -1);
	ck_assert_uint_eq(get_be32(buf), 2 * 12);
	/* extended header: format type 1 */
	ck_assert_int_eq(RUN(1, &seen_a, 4096, 0xa3, 0x2a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0), 0);
	ck_assert_int_eq(buf[4], 0x10);
	ck_assert_uint_eq(get_be32(buf), 4 + 2 * 12);
	ck_assert_int_eq(get_be16(buf + 8 + 2), 1);
	/* allocation length cuts, length field stays whole */
	ck_assert_int_eq(RUN(1, &seen_a, 4096, 0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0), 0);
	ck_assert_uint_eq(cmd.xfer_len, 8);
	ck_assert_uint_eq(get_be32(buf), 2 * 12);
	/* bad format; no ALUA on this transport */
	RUN(1, &seen_a, 4096, 0xa3, 0x4a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	RUN(0, NULL, 4096, 0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	/* both listed in REPORT SUPPORTED OPERATION CODES */
	ck_assert_int_eq(RUN(1, &seen_a, 4096, 0xa3, 0x0c, 2, 0xa3, 0, 0x0a, 0, 0, 0x10, 0, 0, 0), 0);
	ck_assert_int_eq(buf[1] & 7, 3);
	ck_assert_int_eq(RUN(1, &seen_a, 4096, 0xa3, 0x0c, 2, 0xa4, 0, 0x0a, 0, 0, 0x10, 0, 0, 0), 0);
	ck_assert_int_eq(buf[1] & 7, 3);
}
END_TEST

START_TEST(unit_attention_once_per_nexus)
{
	/* both nexuses have talked, then the administrator changes group 2 */
	ck_assert_int_eq(RUN(1, &seen_a, 0, 0x00, 0, 0, 0, 0, 0), 0);
	ck_assert_int_eq(RUN(2, &seen_b, 0, 0x00, 0, 0, 0, 0, 0), 0);
	ck_assert_int_eq(scsi_alua_group_set(2, SCSI_ALUA_OPTIMIZED), 0);
	ck_assert_int_eq(scsi_alua_group_set(2, SCSI_ALUA_OPTIMIZED), 0);	/* no change */
	/* INQUIRY does not consume it */
	ck_assert_int_eq(RUN(1, &seen_a, 96, 0x12, 0, 0, 0, 96, 0), 0);
	RUN(1, &seen_a, 0, 0x00, 0, 0, 0, 0, 0);
	expect_sense(SK_UNIT_ATTENTION, ASC_ASYMMETRIC_ACCESS_CHANGED);
	ck_assert_int_eq(RUN(1, &seen_a, 0, 0x00, 0, 0, 0, 0, 0), 0);
	RUN(2, &seen_b, 0, 0x00, 0, 0, 0, 0, 0);
	expect_sense(SK_UNIT_ATTENTION, ASC_ASYMMETRIC_ACCESS_CHANGED);
	ck_assert_int_eq(RUN(2, &seen_b, 0, 0x00, 0, 0, 0, 0, 0), 0);
	/* a nexus that appears later has nothing to be told */
	unsigned seen_c = 0;

	ck_assert_int_eq(RUN(2, &seen_c, 0, 0x00, 0, 0, 0, 0, 0), 0);
	/* status code: implicit change */
	uint8_t why = 0;

	ck_assert_int_eq(rtpg_state(1, &seen_a, 2, &why), SCSI_ALUA_OPTIMIZED);
	ck_assert_int_eq(why, 2);
}
END_TEST

START_TEST(standby_and_unavailable)
{
	ck_assert_int_eq(RUN(1, &seen_a, 0, 0x00, 0, 0, 0, 0, 0), 0);
	ck_assert_int_eq(scsi_alua_group_set(1, SCSI_ALUA_STANDBY), 0);
	RUN(1, &seen_a, 0, 0x00, 0, 0, 0, 0, 0);
	expect_sense(SK_UNIT_ATTENTION, ASC_ASYMMETRIC_ACCESS_CHANGED);
	/* standby: no I/O, TEST UNIT READY neither */
	RUN(1, &seen_a, 0, 0x00, 0, 0, 0, 0, 0);
	expect_sense(SK_NOT_READY, ASC_LU_NOT_ACCESSIBLE_STANDBY);
	RUN(1, &seen_a, 512, 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0);
	expect_sense(SK_NOT_READY, ASC_LU_NOT_ACCESSIBLE_STANDBY);
	RUN(1, &seen_a, 512, 0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0);
	expect_sense(SK_NOT_READY, ASC_LU_NOT_ACCESSIBLE_STANDBY);
	RUN(1, &seen_a, 8, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	expect_sense(SK_NOT_READY, ASC_LU_NOT_ACCESSIBLE_STANDBY);
	/* ... but what SPC-4 lets through */
	ck_assert_int_eq(RUN(1, &seen_a, 96, 0x12, 0, 0, 0, 96, 0), 0);
	ck_assert_int_eq(RUN(1, &seen_a, 64, 0x1a, 0, 0x3f, 0, 64, 0), 0);
	ck_assert_int_eq(RUN(1, &seen_a, 64, 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0), 0);
	ck_assert_int_eq(RUN(1, &seen_a, 18, 0x03, 0, 0, 0, 18, 0), 0);
	ck_assert_int_eq(rtpg_state(1, &seen_a, 1, NULL), SCSI_ALUA_STANDBY);
	/* the other group still does I/O */
	ck_assert_int_eq(RUN(2, &seen_b, 512, 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0), 0);

	ck_assert_int_eq(scsi_alua_group_set(1, SCSI_ALUA_UNAVAILABLE), 0);
	RUN(1, &seen_a, 0, 0x00, 0, 0, 0, 0, 0);
	expect_sense(SK_UNIT_ATTENTION, ASC_ASYMMETRIC_ACCESS_CHANGED);
	RUN(1, &seen_a, 512, 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0);
	expect_sense(SK_NOT_READY, ASC_LU_NOT_ACCESSIBLE_UNAVAILABLE);
	RUN(1, &seen_a, 64, 0x1a, 0, 0x3f, 0, 64, 0);	/* allowed in standby, not here */
	expect_sense(SK_NOT_READY, ASC_LU_NOT_ACCESSIBLE_UNAVAILABLE);
	ck_assert_int_eq(RUN(1, &seen_a, 96, 0x12, 0, 0, 0, 96, 0), 0);
	ck_assert_int_eq(RUN(1, &seen_a, 64, 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0), 0);
	ck_assert_int_eq(rtpg_state(1, &seen_a, 1, NULL), SCSI_ALUA_UNAVAILABLE);

	ck_assert_int_eq(scsi_alua_group_set(1, SCSI_ALUA_NONOPTIMIZED), 0);
	RUN(1, &seen_a, 0, 0x00, 0, 0, 0, 0, 0);
	expect_sense(SK_UNIT_ATTENTION, ASC_ASYMMETRIC_ACCESS_CHANGED);
	ck_assert_int_eq(RUN(1, &seen_a, 512, 0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0), 0);
}
END_TEST

START_TEST(set_target_port_groups)
{
	uint8_t why = 0;

	ck_assert_int_eq(RUN(1, &seen_a, 0, 0x00, 0, 0, 0, 0, 0), 0);
	ck_assert_int_eq(RUN(2, &seen_b, 0, 0x00, 0, 0, 0, 0, 0), 0);
	/* through group 2: group 1 standby, group 2 active/optimized */
	memset(buf, 0, 12);
	buf[4] = SCSI_ALUA_STANDBY;
	put_be16(buf + 6, 1);
	buf[8] = SCSI_ALUA_OPTIMIZED;
	put_be16(buf + 10, 2);
	ck_assert_int_eq(RUN(2, &seen_b, 12, 0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0), 0);
	ck_assert_int_eq(scsi_alua_group_get(1), SCSI_ALUA_STANDBY);
	ck_assert_int_eq(scsi_alua_group_get(2), SCSI_ALUA_OPTIMIZED);
	/* no unit attention for the nexus that asked; one for the other */
	ck_assert_int_eq(RUN(2, &seen_b, 0, 0x00, 0, 0, 0, 0, 0), 0);
	RUN(1, &seen_a, 0, 0x00, 0, 0, 0, 0, 0);
	expect_sense(SK_UNIT_ATTENTION, ASC_ASYMMETRIC_ACCESS_CHANGED);
	ck_assert_int_eq(rtpg_state(2, &seen_b, 1, &why), SCSI_ALUA_STANDBY);
	ck_assert_int_eq(why, 1);		/* altered by SET TARGET PORT GROUPS */
	/* allowed through a standby group */
	memset(buf, 0, 8);
	buf[4] = SCSI_ALUA_NONOPTIMIZED;
	put_be16(buf + 6, 1);
	ck_assert_int_eq(RUN(1, &seen_a, 8, 0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0), 0);
	ck_assert_int_eq(scsi_alua_group_get(1), SCSI_ALUA_NONOPTIMIZED);
	RUN(2, &seen_b, 0, 0x00, 0, 0, 0, 0, 0);
	expect_sense(SK_UNIT_ATTENTION, ASC_ASYMMETRIC_ACCESS_CHANGED);

	/* all or nothing: an unknown group, a state one cannot set */
	memset(buf, 0, 12);
	buf[4] = SCSI_ALUA_STANDBY;
	put_be16(buf + 6, 2);
	buf[8] = SCSI_ALUA_STANDBY;
	put_be16(buf + 10, 9);
	RUN(2, &seen_b, 12, 0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST);
	ck_assert_int_eq(scsi_alua_group_get(2), SCSI_ALUA_OPTIMIZED);
	put_be16(buf + 10, 1);
	buf[8] = SCSI_ALUA_TRANSITIONING;
	RUN(2, &seen_b, 12, 0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST);
	ck_assert_int_eq(scsi_alua_group_get(2), SCSI_ALUA_OPTIMIZED);
	/* a list that is not whole descriptors */
	RUN(2, &seen_b, 12, 0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
	/* an empty one changes nothing */
	ck_assert_int_eq(RUN(2, &seen_b, 0, 0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0);
	/* other MAINTENANCE OUT service actions; no ALUA on this transport */
	RUN(2, &seen_b, 0, 0xa4, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	RUN(0, NULL, 12, 0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0);
	expect_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
}
END_TEST

START_TEST(groups_api)
{
	ck_assert_int_eq(scsi_alua_state_parse("standby"), SCSI_ALUA_STANDBY);
	ck_assert_int_eq(scsi_alua_state_parse("active-nonoptimized"), SCSI_ALUA_NONOPTIMIZED);
	ck_assert_int_eq(scsi_alua_state_parse("transitioning"), -EINVAL);
	ck_assert_int_eq(scsi_alua_state_parse("nonsense"), -EINVAL);
	ck_assert_str_eq(scsi_alua_state_name(SCSI_ALUA_UNAVAILABLE), "unavailable");
	ck_assert_int_eq(scsi_alua_group_add(0, SCSI_ALUA_OPTIMIZED), -EINVAL);
	ck_assert_int_eq(scsi_alua_group_add(1, SCSI_ALUA_STANDBY), 0);	/* exists: kept */
	ck_assert_int_eq(scsi_alua_group_get(1), SCSI_ALUA_OPTIMIZED);
	ck_assert_int_eq(scsi_alua_group_set(7, SCSI_ALUA_STANDBY), -ENOENT);
	ck_assert_int_eq(scsi_alua_group_set(1, SCSI_ALUA_TRANSITIONING), -EINVAL);
	ck_assert_int_eq(scsi_alua_group_get(7), -ENOENT);
	for (unsigned i = 3; i <= SCSI_ALUA_MAX_GROUPS; i++)
		ck_assert_int_eq(scsi_alua_group_add((uint16_t)(100 + i), SCSI_ALUA_STANDBY), 0);
	ck_assert_int_eq(scsi_alua_group_add(999, SCSI_ALUA_STANDBY), -ENOSPC);
	ck_assert_int_eq(scsi_alua_group_remove(103), 0);
	ck_assert_int_eq(scsi_alua_group_remove(103), -ENOENT);
	ck_assert_int_eq(scsi_alua_group_add(999, SCSI_ALUA_STANDBY), 0);
	/* a command through a group nobody declared is not restricted */
	ck_assert_int_eq(RUN(5000, &seen_a, 512, 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("scsi_alua");
	TCase *tc = tcase_create("all");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, inquiry_tpgs_and_designators);
	tcase_add_test(tc, report_target_port_groups);
	tcase_add_test(tc, unit_attention_once_per_nexus);
	tcase_add_test(tc, standby_and_unavailable);
	tcase_add_test(tc, set_target_port_groups);
	tcase_add_test(tc, groups_api);
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
	return nf ? 1 : 0;
}
