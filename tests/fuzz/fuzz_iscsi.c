/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the iSCSI codec (proto/iscsi): the input is what an
 * initiator sends. The first byte picks what the rest goes through:
 *  - PDU framing (bit 0x40 clear): a stream of PDUs cut by the same length
 *    and digest checks the target uses (bits 0x01/0x02: header/data
 *    digests on). Every PDU accepted is rebuilt and parsed again: the two
 *    must agree byte for byte.
 *  - login negotiation (bit 0x40 set): text segments separated by "\0\0"
 *    fed to one negotiation as successive login PDUs, moving from the
 *    security to the operational stage as the target would (bit 0x01: the
 *    target asks for CHAP, 0x02: mutual CHAP).
 *    Every answer must be well-formed key=value pairs within the buffer.
 *
 *   make fuzz && build/fuzz/fuzz_iscsi -max_total_time=60 tests/fuzz/corpus/iscsi
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "sand/common.h"
#include "sand/iscsi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DSL	(256u * 1024)

static void framing(const uint8_t *p, size_t n, bool hd, bool dd)
{
	static uint8_t out[ISCSI_BHS_LEN + 4 + MAX_DSL + 8];

	while (n >= ISCSI_BHS_LEN) {
		struct iscsi_pdu_len pl, pl2;
		int rc, len;

		rc = iscsi_pdu_lengths((const struct iscsi_bhs *)p, hd, dd, MAX_DSL, &pl);
		if (rc)
			return;		/* the target closes the connection */
		rc = iscsi_pdu_parse(p, n, hd, dd, MAX_DSL, &pl);
		if (rc == -EAGAIN)
			return;		/* truncated: wait for more */
		if (rc == 0) {
			const uint8_t *ahs = p + ISCSI_BHS_LEN;
			const uint8_t *d = ahs + pl.ahs + pl.hdigest;

			if ((size_t)ISCSI_BHS_LEN + pl.total > n)
				abort();	/* parse accepted more than it had */
			len = iscsi_pdu_build((const struct iscsi_bhs *)p, ahs, pl.ahs, d, pl.data,
					      hd, dd, out, sizeof(out));
			if (len < 0)
				abort();	/* what parsed must build */
			if (iscsi_pdu_parse(out, (size_t)len, hd, dd, MAX_DSL, &pl2) ||
			    memcmp(&pl, &pl2, sizeof(pl)) || memcmp(out, p, (size_t)len))
				abort();	/* and come out the same */
		}
		p += ISCSI_BHS_LEN + pl.total;
		n -= ISCSI_BHS_LEN + pl.total;
	}
}

static bool want_chap, want_mutual;

static int lookup(struct iscsi_nego *n, void *arg)
{
	(void)arg;
	n->cred.required = want_chap;
	n->cred.mutual = want_mutual;
	strcpy(n->cred.user, "user");
	strcpy(n->cred.secret, "secret-of-12+");
	strcpy(n->cred.muser, "target");
	strcpy(n->cred.msecret, "other-secret-12");
	return 0;
}

static int count_pair(const char *key, const char *value, void *arg)
{
	(void)key;
	(void)value;
	(*(unsigned *)arg)++;
	return 0;
}

static void login(const uint8_t *p, size_t n, uint8_t mode)
{
	struct iscsi_target_limits lim;
	struct iscsi_nego nego;
	static struct iscsi_kvbuf out;
	int stage = ISCSI_STAGE_SECURITY;

	iscsi_target_limits_default(&lim);
	iscsi_nego_init(&nego, &lim);
	nego.leading = true;
	nego.lookup = lookup;
	want_chap = mode & 1;
	want_mutual = mode & 2;
	while (n > 0) {
		const uint8_t *end = memmem(p, n, "\0\0", 2);
		uint32_t len = end ? (uint32_t)(end - p) + 1 : (uint32_t)MIN(n, (size_t)ISCSI_KV_MAX);
		unsigned pairs = 0;
		int rc;

		out.len = 0;
		out.overflow = false;
		rc = iscsi_nego_login(&nego, stage, (const char *)p, len, &out);
		if (out.len > sizeof(out.buf))
			abort();
		if (!out.overflow && out.len && iscsi_kv_foreach(out.buf, out.len, count_pair, &pairs))
			abort();	/* our answer must be well-formed */
		if (rc)
			break;		/* the login fails here */
		if (stage == ISCSI_STAGE_SECURITY && iscsi_nego_auth_done(&nego))
			stage = ISCSI_STAGE_OPERATIONAL;
		else if (stage == ISCSI_STAGE_OPERATIONAL) {
			out.len = 0;
			iscsi_nego_declare(&nego, &out);
		}
		p += len + (end ? 1 : 0);
		n -= len + (end ? 1 : 0);
	}
	iscsi_nego_wipe(&nego);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 0x40)
		login(data + 1, size - 1, data[0]);
	else
		framing(data + 1, size - 1, data[0] & 1, data[0] & 2);
	return 0;
}
