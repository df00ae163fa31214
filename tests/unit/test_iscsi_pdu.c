/* SPDX-License-Identifier: MIT */
/*
 * The iSCSI PDU codec and login key negotiation (proto/iscsi): BHS round
 * trips, padding and digests, truncated and oversized PDUs, and each key's
 * negotiation rule.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/iscsi.h"

START_TEST(crc32c_known)
{
	/* RFC 3720 B.4: 32 bytes of zeros -> aa 36 91 8a (as stored LE: 8a9136aa) */
	uint8_t z[32] = { 0 }, ff[32];

	memset(ff, 0xff, sizeof(ff));
	ck_assert_uint_eq(iscsi_crc32c(z, sizeof(z)), 0x8a9136aa);
	ck_assert_uint_eq(iscsi_crc32c(ff, sizeof(ff)), 0x62a8ab43);
	ck_assert_uint_eq(iscsi_crc32c("123456789", 9), 0xe3069283);
	/* in pieces */
	uint32_t c = iscsi_crc32c_begin();
	c = iscsi_crc32c_update(c, "1234", 4);
	c = iscsi_crc32c_update(c, "56789", 5);
	ck_assert_uint_eq(iscsi_crc32c_end(c), 0xe3069283);
}
END_TEST

START_TEST(bhs_accessors)
{
	struct iscsi_bhs h;

	iscsi_bhs_init(&h, ISCSI_OP_SCSI_CMD | 0x80, ISCSI_FLAG_FINAL | ISCSI_FLAG_READ);
	ck_assert_uint_eq(h.b[0], ISCSI_OP_SCSI_CMD);
	h.b[0] |= ISCSI_BHS_IMMEDIATE;
	ck_assert(bhs_immediate(&h));
	ck_assert_uint_eq(bhs_opcode(&h), ISCSI_OP_SCSI_CMD);
	bhs_set_dsl(&h, 0x123456);
	ck_assert_uint_eq(bhs_dsl(&h), 0x123456);
	ck_assert_uint_eq(h.b[5], 0x12);
	ck_assert_uint_eq(h.b[7], 0x56);
	bhs_put32(&h, BHS_ITT, 0xdeadbeef);
	ck_assert_uint_eq(bhs_itt(&h), 0xdeadbeef);
	ck_assert_uint_eq(h.b[16], 0xde);
	put_be64(h.b + BHS_LUN, 0x0001000000000000ull);
	ck_assert_uint_eq(bhs_lun(&h), 0x0001000000000000ull);
	h.b[BHS_TOTAL_AHS_LEN] = 3;
	ck_assert_uint_eq(bhs_ahs_len(&h), 12);
}
END_TEST

static void round_trip(bool hd, bool dd, uint32_t dlen, uint32_t ahs_len)
{
	struct iscsi_bhs h, *back;
	struct iscsi_pdu_len pl;
	uint8_t ahs[16], *data = malloc(dlen + 1), out[2048];
	int n;

	for (uint32_t i = 0; i < dlen; i++)
		data[i] = (uint8_t)(i * 7 + 1);
	memset(ahs, 0x5a, sizeof(ahs));
	iscsi_bhs_init(&h, ISCSI_OP_TEXT_RSP, ISCSI_FLAG_FINAL);
	bhs_put32(&h, BHS_ITT, 42);
	n = iscsi_pdu_build(&h, ahs, ahs_len, data, dlen, hd, dd, out, sizeof(out));
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(n, 48 + ahs_len + (hd ? 4 : 0) + iscsi_pad4(dlen) + (dd && dlen ? 4 : 0));
	ck_assert_int_eq(iscsi_pdu_parse(out, (size_t)n, hd, dd, 8192, &pl), 0);
	ck_assert_uint_eq(pl.data, dlen);
	ck_assert_uint_eq(pl.ahs, ahs_len);
	ck_assert_uint_eq(48 + pl.total, (uint32_t)n);
	back = (struct iscsi_bhs *)out;
	ck_assert_uint_eq(bhs_opcode(back), ISCSI_OP_TEXT_RSP);
	ck_assert_uint_eq(bhs_itt(back), 42);
	ck_assert_mem_eq(out + 48 + ahs_len + pl.hdigest, data, dlen ? dlen : 0);
	/* every truncation wants more */
	for (int cut = 0; cut < n; cut++)
		ck_assert_int_eq(iscsi_pdu_parse(out, (size_t)cut, hd, dd, 8192, &pl), -EAGAIN);
	/* a flipped bit in the header or data is caught by the digest */
	if (hd) {
		out[20] ^= 1;
		ck_assert_int_eq(iscsi_pdu_parse(out, (size_t)n, hd, dd, 8192, &pl), -EBADMSG);
		out[20] ^= 1;
	}
	if (dd && dlen) {
		out[48 + ahs_len + pl.hdigest] ^= 0x80;
		ck_assert_int_eq(iscsi_pdu_parse(out, (size_t)n, hd, dd, 8192, &pl), -EBADMSG);
		out[48 + ahs_len + pl.hdigest] ^= 0x80;
	}
	/* non-zero padding is refused */
	if (dlen % 4) {
		out[48 + ahs_len + pl.hdigest + dlen] = 1;
		ck_assert_int_eq(iscsi_pdu_parse(out, (size_t)n, hd, false, 8192, &pl), -EPROTO);
	}
	free(data);
}

START_TEST(pdu_round_trips)
{
	static const uint32_t lens[] = { 0, 1, 2, 3, 4, 5, 511, 512, 1000 };

	for (unsigned i = 0; i < ARRAY_SIZE(lens); i++)
		for (int d = 0; d < 4; d++) {
			round_trip(d & 1, d & 2, lens[i], 0);
			round_trip(d & 1, d & 2, lens[i], 16);
		}
}
END_TEST

START_TEST(pdu_oversized)
{
	struct iscsi_bhs h;
	struct iscsi_pdu_len pl;
	uint8_t out[256];
	static uint8_t big[9000];

	iscsi_bhs_init(&h, ISCSI_OP_SCSI_CMD, 0);
	bhs_set_dsl(&h, 8193);
	ck_assert_int_eq(iscsi_pdu_lengths(&h, false, false, 8192, &pl), -EMSGSIZE);
	bhs_set_dsl(&h, 8192);
	ck_assert_int_eq(iscsi_pdu_lengths(&h, true, true, 8192, &pl), 0);
	ck_assert_uint_eq(pl.total, 4 + 8192 + 4);
	bhs_set_dsl(&h, ISCSI_MAX_DSL);
	ck_assert_int_eq(iscsi_pdu_parse(&h, sizeof(h), false, false, 8192, &pl), -EMSGSIZE);
	/* the builder refuses what does not fit, or a bad AHS length */
	ck_assert_int_eq(iscsi_pdu_build(&h, NULL, 0, big, sizeof(big), false, false,
					 out, sizeof(out)), -ENOSPC);
	ck_assert_int_eq(iscsi_pdu_build(&h, big, 6, NULL, 0, false, false,
					 out, sizeof(out)), -EMSGSIZE);
	ck_assert_int_eq(iscsi_pdu_build(&h, NULL, 0, big, ISCSI_MAX_DSL + 1, false, false,
					 out, sizeof(out)), -EMSGSIZE);
}
END_TEST

/* ---- negotiation ---- */

static struct iscsi_kvbuf out;

/* key=value\0... from "k=v;k=v" */
static uint32_t kv(char *buf, const char *s)
{
	uint32_t n = (uint32_t)strlen(s);

	memcpy(buf, s, n);
	for (uint32_t i = 0; i < n; i++)
		if (buf[i] == ';')
			buf[i] = '\0';
	buf[n] = '\0';
	return n + 1;
}

static const char *answer(const char *key)
{
	static char v[256];
	uint32_t pos = 0;
	size_t kl = strlen(key);

	while (pos < out.len) {
		const char *p = out.buf + pos;

		if (!strncmp(p, key, kl) && p[kl] == '=') {
			snprintf(v, sizeof(v), "%s", p + kl + 1);
			return v;
		}
		pos += (uint32_t)strlen(p) + 1;
	}
	return NULL;
}

static int nego(struct iscsi_nego *n, int stage, const char *s)
{
	char buf[4096];
	uint32_t len = kv(buf, s);

	memset(&out, 0, sizeof(out));
	return iscsi_nego_login(n, stage, buf, len, &out);
}

static void nego_new(struct iscsi_nego *n)
{
	struct iscsi_target_limits lim;

	iscsi_target_limits_default(&lim);
	lim.max_outstanding_r2t = 4;
	lim.max_burst = 1u << 20;
	lim.first_burst = 1u << 18;
	iscsi_nego_init(n, &lim);
}

START_TEST(nego_operational)
{
	struct iscsi_nego n;

	nego_new(&n);
	ck_assert_int_eq(nego(&n, 0, "InitiatorName=iqn.x:i;SessionType=Normal;"
				"TargetName=iqn.x:t;AuthMethod=CHAP,None"), 0);
	ck_assert_str_eq(answer("AuthMethod"), "None");
	ck_assert_str_eq(n.p.initiator_name, "iqn.x:i");
	ck_assert_str_eq(n.p.target_name, "iqn.x:t");
	ck_assert_int_eq(n.p.session_type, ISCSI_SESSION_NORMAL);
	ck_assert_ptr_null(answer("InitiatorName"));
	ck_assert_int_eq(nego(&n, 1,
		"HeaderDigest=None,CRC32C;DataDigest=CRC32C;MaxRecvDataSegmentLength=65536;"
		"MaxBurstLength=16776192;FirstBurstLength=4096;InitialR2T=No;ImmediateData=Yes;"
		"MaxOutstandingR2T=16;MaxConnections=4;DataPDUInOrder=No;DataSequenceInOrder=No;"
		"DefaultTime2Wait=0;DefaultTime2Retain=60;ErrorRecoveryLevel=2;X-com.foo=bar;"
		"Bogus=1"), 0);
	ck_assert_str_eq(answer("HeaderDigest"), "None");		/* initiator's order */
	ck_assert_str_eq(answer("DataDigest"), "CRC32C");
	ck_assert(!n.p.header_digest && n.p.data_digest);
	ck_assert_ptr_null(answer("MaxRecvDataSegmentLength"));	/* declarative */
	ck_assert_uint_eq(n.p.max_xmit_dsl, 65536);
	ck_assert_str_eq(answer("MaxBurstLength"), "1048576");		/* min */
	ck_assert_str_eq(answer("FirstBurstLength"), "4096");		/* min */
	ck_assert_str_eq(answer("InitialR2T"), "No");			/* or */
	ck_assert_str_eq(answer("ImmediateData"), "Yes");		/* and */
	ck_assert_str_eq(answer("MaxOutstandingR2T"), "4");
	ck_assert_str_eq(answer("MaxConnections"), "4");
	ck_assert_str_eq(answer("DataPDUInOrder"), "Yes");		/* or, ours Yes */
	ck_assert_str_eq(answer("DataSequenceInOrder"), "Yes");
	ck_assert_str_eq(answer("DefaultTime2Wait"), "2");		/* max */
	ck_assert_str_eq(answer("DefaultTime2Retain"), "20");		/* min */
	ck_assert_str_eq(answer("ErrorRecoveryLevel"), "0");		/* min */
	ck_assert_str_eq(answer("X-com.foo"), "NotUnderstood");
	ck_assert_str_eq(answer("Bogus"), "NotUnderstood");
	ck_assert_uint_eq(n.p.first_burst, 4096);
	ck_assert(!n.p.initial_r2t && n.p.immediate_data);
	memset(&out, 0, sizeof(out));
	iscsi_nego_declare(&n, &out);
	ck_assert_str_eq(answer("MaxRecvDataSegmentLength"), "262144");
}
END_TEST

START_TEST(nego_bools_and_ranges)
{
	struct iscsi_nego n;

	nego_new(&n);
	ck_assert_int_eq(nego(&n, 1, "SessionType=Normal;InitialR2T=Yes;ImmediateData=No;"
				"MaxBurstLength=100;FirstBurstLength=abc;MaxOutstandingR2T=0;"
				"DefaultTime2Wait=3601;HeaderDigest=MD5;DataDigest=None;"
				"ErrorRecoveryLevel=0x1;MaxRecvDataSegmentLength=511"), 0);
	ck_assert_str_eq(answer("InitialR2T"), "Yes");
	ck_assert_str_eq(answer("ImmediateData"), "No");
	ck_assert_str_eq(answer("MaxBurstLength"), "Reject");		/* < 512 */
	ck_assert_str_eq(answer("FirstBurstLength"), "Reject");
	ck_assert_str_eq(answer("MaxOutstandingR2T"), "Reject");
	ck_assert_str_eq(answer("DefaultTime2Wait"), "Reject");
	ck_assert_str_eq(answer("HeaderDigest"), "Reject");
	ck_assert_str_eq(answer("DataDigest"), "None");
	ck_assert_str_eq(answer("ErrorRecoveryLevel"), "0");		/* hex accepted */
	ck_assert_str_eq(answer("MaxRecvDataSegmentLength"), "Reject");
	ck_assert(n.p.initial_r2t && !n.p.immediate_data);
	ck_assert_uint_eq(n.p.max_burst, 262144);			/* default kept */
	ck_assert_uint_eq(n.p.max_xmit_dsl, 8192);
}
END_TEST

START_TEST(nego_first_burst_clamped)
{
	struct iscsi_nego n;

	nego_new(&n);
	ck_assert_int_eq(nego(&n, 1, "MaxBurstLength=8192;FirstBurstLength=65536"), 0);
	ck_assert_uint_eq(n.p.max_burst, 8192);
	ck_assert_uint_eq(n.p.first_burst, 8192);
}
END_TEST

START_TEST(nego_discovery_irrelevant)
{
	struct iscsi_nego n;

	nego_new(&n);
	ck_assert_int_eq(nego(&n, 1, "InitialR2T=No;ImmediateData=Yes;MaxBurstLength=4096;"
				"FirstBurstLength=512;MaxOutstandingR2T=1;MaxConnections=1;"
				"DataPDUInOrder=Yes;DataSequenceInOrder=Yes;InitiatorName=iqn.a:b;"
				"SessionType=Discovery;HeaderDigest=None;ErrorRecoveryLevel=0"), 0);
	ck_assert_int_eq(n.p.session_type, ISCSI_SESSION_DISCOVERY);
	ck_assert_str_eq(answer("InitialR2T"), "Irrelevant");
	ck_assert_str_eq(answer("ImmediateData"), "Irrelevant");
	ck_assert_str_eq(answer("MaxBurstLength"), "Irrelevant");
	ck_assert_str_eq(answer("FirstBurstLength"), "Irrelevant");
	ck_assert_str_eq(answer("MaxOutstandingR2T"), "Irrelevant");
	ck_assert_str_eq(answer("MaxConnections"), "Irrelevant");
	ck_assert_str_eq(answer("DataPDUInOrder"), "Irrelevant");
	ck_assert_str_eq(answer("DataSequenceInOrder"), "Irrelevant");
	ck_assert_str_eq(answer("HeaderDigest"), "None");
	ck_assert_str_eq(answer("ErrorRecoveryLevel"), "0");
	ck_assert_str_eq(answer("TargetPortalGroupTag") ? "x" : "none", "none");
}
END_TEST

START_TEST(nego_errors)
{
	struct iscsi_nego n;

	nego_new(&n);	/* a key twice */
	ck_assert_int_eq(nego(&n, 1, "MaxBurstLength=4096;MaxBurstLength=8192"),
			 ISCSI_LOGIN_INIT_ERR);
	nego_new(&n);	/* twice across PDUs of one login */
	ck_assert_int_eq(nego(&n, 1, "ImmediateData=Yes"), 0);
	ck_assert_int_eq(nego(&n, 1, "ImmediateData=No"), ISCSI_LOGIN_INIT_ERR);
	nego_new(&n);	/* security key in the operational stage */
	ck_assert_int_eq(nego(&n, 1, "AuthMethod=None"), ISCSI_LOGIN_INIT_ERR);
	nego_new(&n);	/* no acceptable authentication */
	ck_assert_int_eq(nego(&n, 0, "AuthMethod=CHAP"), ISCSI_LOGIN_AUTH_FAILED);
	ck_assert_str_eq(answer("AuthMethod"), "Reject");
	nego_new(&n);
	ck_assert_int_eq(nego(&n, 0, "SessionType=Weird"), ISCSI_LOGIN_SESSION_TYPE);
	nego_new(&n);	/* malformed pairs */
	ck_assert_int_eq(nego(&n, 0, "NoEquals"), ISCSI_LOGIN_INIT_ERR);
	nego_new(&n);
	ck_assert_int_eq(nego(&n, 0, "=value"), ISCSI_LOGIN_INIT_ERR);
	nego_new(&n);
	ck_assert_int_eq(nego(&n, 0, "InitiatorName="), ISCSI_LOGIN_INIT_ERR);
	nego_new(&n);	/* target-only keys from the initiator */
	ck_assert_int_eq(nego(&n, 1, "TargetPortalGroupTag=1;TargetAlias=x"), 0);
	ck_assert_str_eq(answer("TargetPortalGroupTag"), "Irrelevant");
	ck_assert_str_eq(answer("TargetAlias"), "Irrelevant");
}
END_TEST

START_TEST(nego_no_digests)
{
	struct iscsi_nego n;
	struct iscsi_target_limits lim;

	iscsi_target_limits_default(&lim);
	lim.allow_digests = false;
	iscsi_nego_init(&n, &lim);
	ck_assert_int_eq(nego(&n, 1, "HeaderDigest=CRC32C,None;DataDigest=CRC32C"), 0);
	ck_assert_str_eq(answer("HeaderDigest"), "None");
	ck_assert_str_eq(answer("DataDigest"), "Reject");
}
END_TEST

START_TEST(kv_unterminated)
{
	struct iscsi_nego n;
	struct iscsi_kvbuf o = { 0 };
	const char data[] = { 'A', '=', 'b' };

	nego_new(&n);
	ck_assert_int_eq(iscsi_nego_login(&n, 0, data, sizeof(data), &o), ISCSI_LOGIN_INIT_ERR);
	/* the out buffer never overflows its array */
	for (int i = 0; i < 2000; i++)
		iscsi_kv_add(&o, "Key", "value");
	ck_assert(o.overflow);
	ck_assert_uint_le(o.len, sizeof(o.buf));
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("iscsi_pdu");
	TCase *tc = tcase_create("all");

	tcase_add_test(tc, crc32c_known);
	tcase_add_test(tc, bhs_accessors);
	tcase_add_test(tc, pdu_round_trips);
	tcase_add_test(tc, pdu_oversized);
	tcase_add_test(tc, nego_operational);
	tcase_add_test(tc, nego_bools_and_ranges);
	tcase_add_test(tc, nego_first_burst_clamped);
	tcase_add_test(tc, nego_discovery_irrelevant);
	tcase_add_test(tc, nego_errors);
	tcase_add_test(tc, nego_no_digests);
	tcase_add_test(tc, kv_unterminated);
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
