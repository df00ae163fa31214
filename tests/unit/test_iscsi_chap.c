/* SPDX-License-Identifier: MIT */
/*
 * CHAP in the login negotiation (proto/iscsi): responses against known
 * vectors (MD5 CHAP response = MD5(id || secret || challenge)), binary
 * values in hex and base64, and the target's side of the exchange driven
 * key by key: one-way and mutual, wrong secret, wrong user, short and
 * replayed responses, a reflected challenge, keys out of order.
 */
#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/iscsi.h"

static void hex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

START_TEST(chap_vectors)
{
	uint8_t c[48], d[32];
	char h[65];

	for (int i = 0; i < 48; i++)
		c[i] = (uint8_t)i;
	/* python3: hashlib.md5(bytes([0x2a]) + b'secretsecret' + bytes(range(16))) */
	ck_assert_int_eq(iscsi_chap_response(ISCSI_CHAP_MD5, 0x2a, "secretsecret", 12, c, 16, d),
			 16);
	hex(d, 16, h);
	ck_assert_str_eq(h, "54d49338a27b0c1dd5e935c21ab005a3");
	ck_assert_int_eq(iscsi_chap_response(ISCSI_CHAP_SHA256, 7, "abcdefghijkl", 12, c + 16,
					     32, d), 32);
	hex(d, 32, h);
	ck_assert_str_eq(h, "c640b3ffa861a74d066d6940e9004ae6d108367e7cc5786d43bcfd32b4435518");
	ck_assert_int_eq(iscsi_chap_response(ISCSI_CHAP_SHA3_256, 7, "abcdefghijkl", 12, c + 16,
					     32, d), 32);
	hex(d, 32, h);
	ck_assert_str_eq(h, "f48aed2b0e5562d518e3186f6489988cf0dbab091404d6137105ffab1c0f23b5");
	ck_assert_int_eq(iscsi_chap_response(6, 1, "x", 1, c, 16, d), -EINVAL);	/* SHA1: no */
	ck_assert_uint_eq(iscsi_chap_digest_len(ISCSI_CHAP_MD5), 16);
	ck_assert_uint_eq(iscsi_chap_digest_len(99), 0);
}
END_TEST

START_TEST(chap_values)
{
	uint8_t b[16];
	char e[64];

	ck_assert_int_eq(iscsi_chap_decode("0x00ff10", b, sizeof(b)), 3);
	ck_assert_uint_eq(b[1], 0xff);
	ck_assert_int_eq(iscsi_chap_decode("0XABC", b, sizeof(b)), 2);	/* odd: 0x0a 0xbc */
	ck_assert_uint_eq(b[0], 0x0a);
	ck_assert_uint_eq(b[1], 0xbc);
	ck_assert_int_eq(iscsi_chap_decode("0bAP8Q", b, sizeof(b)), 3);	/* 00 ff 10 */
	ck_assert_uint_eq(b[1], 0xff);
	ck_assert_uint_eq(b[2], 0x10);
	ck_assert_int_eq(iscsi_chap_decode("0bAP8=", b, sizeof(b)), 2);
	ck_assert_int_eq(iscsi_chap_decode("0bAA==", b, sizeof(b)), 1);
	ck_assert_int_eq(iscsi_chap_decode("0b=AAA", b, sizeof(b)), -EINVAL);
	ck_assert_int_eq(iscsi_chap_decode("0bAAA", b, sizeof(b)), -EINVAL);
	ck_assert_int_eq(iscsi_chap_decode("0x", b, sizeof(b)), -EINVAL);
	ck_assert_int_eq(iscsi_chap_decode("0xzz", b, sizeof(b)), -EINVAL);
	ck_assert_int_eq(iscsi_chap_decode("1234", b, sizeof(b)), -EINVAL);
	ck_assert_int_eq(iscsi_chap_decode("0x00112233", b, 3), -EINVAL);	/* too long */
	iscsi_chap_encode((const uint8_t *)"\x01\xab", 2, e);
	ck_assert_str_eq(e, "0x01ab");
}
END_TEST

/* ---- the exchange ---- */

struct login {
	struct iscsi_nego	n;
	struct iscsi_kvbuf	o;
	struct iscsi_chap_cred	cred;
	uint8_t			id;
	uint8_t			c[ISCSI_CHAP_MAX_BIN];
	int			clen;
	int			alg;
};

static int lookup(struct iscsi_nego *n, void *arg)
{
	struct login *l = arg;

	n->cred = l->cred;
	return 0;
}

static struct login *login_new(bool mutual)
{
	struct iscsi_target_limits lim;
	struct login *l = calloc(1, sizeof(*l));

	ck_assert_ptr_nonnull(l);
	iscsi_target_limits_default(&lim);
	iscsi_nego_init(&l->n, &lim);
	l->n.lookup = lookup;
	l->n.lookup_arg = l;
	l->cred.required = true;
	strcpy(l->cred.user, "alice");
	strcpy(l->cred.secret, "secret-of-alice");
	if (mutual) {
		l->cred.mutual = true;
		strcpy(l->cred.muser, "target");
		strcpy(l->cred.msecret, "secret-of-target");
	}
	return l;
}

/* Keys as a login data segment: "a=b", "c=d", NULL */
static int step(struct login *l, ...)
{
	char data[4096];
	uint32_t len = 0;
	const char *k;
	va_list ap;

	va_start(ap, l);
	while ((k = va_arg(ap, const char *))) {
		strcpy(data + len, k);
		len += (uint32_t)strlen(k) + 1;
	}
	va_end(ap);
	memset(&l->o, 0, sizeof(l->o));
	return iscsi_nego_login(&l->n, ISCSI_STAGE_SECURITY, data, len, &l->o);
}

/* The value of key in the last answer, or NULL. */
static const char *answer(struct login *l, const char *key)
{
	size_t kl = strlen(key);

	for (uint32_t p = 0; p < l->o.len; p += (uint32_t)strlen(l->o.buf + p) + 1)
		if (!strncmp(l->o.buf + p, key, kl) && l->o.buf[p + kl] == '=')
			return l->o.buf + p + kl + 1;
	return NULL;
}

/* First two steps: AuthMethod, then CHAP_A; the challenge kept in l. */
static void challenge(struct login *l, const char *algs)
{
	char a[64];

	ck_assert_int_eq(step(l, "InitiatorName=iqn.2026-11.test:i", "TargetName=iqn.2026-11.test:t",
			      "SessionType=Normal", "AuthMethod=CHAP,None", NULL), 0);
	ck_assert_str_eq(answer(l, "AuthMethod"), "CHAP");
	ck_assert(!iscsi_nego_auth_done(&l->n));
	snprintf(a, sizeof(a), "CHAP_A=%s", algs);
	ck_assert_int_eq(step(l, a, NULL), 0);
	l->alg = atoi(answer(l, "CHAP_A"));
	l->id = (uint8_t)atoi(answer(l, "CHAP_I"));
	l->clen = iscsi_chap_decode(answer(l, "CHAP_C"), l->c, sizeof(l->c));
	ck_assert_int_ge(l->clen, 16);
}

/* "CHAP_R=0x..." for secret, over the challenge in l */
static void response(struct login *l, const char *secret, char *out)
{
	uint8_t d[ISCSI_CHAP_DIGEST_MAX];
	int n = iscsi_chap_response(l->alg, l->id, secret, strlen(secret), l->c,
				    (size_t)l->clen, d);

	ck_assert_int_gt(n, 0);
	strcpy(out, "CHAP_R=");
	iscsi_chap_encode(d, (size_t)n, out + 7);
}

START_TEST(chap_one_way)
{
	static const char *const algs[] = { "5", "7", "8", "6,7", "99,8,5" };
	static const int picked[] = { 5, 7, 8, 7, 8 };

	for (unsigned i = 0; i < 5; i++) {
		struct login *l = login_new(false);
		char r[128];

		challenge(l, algs[i]);
		ck_assert_int_eq(l->alg, picked[i]);
		response(l, "secret-of-alice", r);
		ck_assert_int_eq(step(l, "CHAP_N=alice", r, NULL), 0);
		ck_assert(iscsi_nego_auth_done(&l->n));
		ck_assert_ptr_null(answer(l, "CHAP_R"));	/* no mutual asked */
		iscsi_nego_wipe(&l->n);
		free(l);
	}
}
END_TEST

START_TEST(chap_refusals)
{
	struct login *l;
	char r[128];

	/* wrong secret */
	l = login_new(false);
	challenge(l, "5");
	response(l, "secret-of-bob", r);
	ck_assert_int_eq(step(l, "CHAP_N=alice", r, NULL), ISCSI_LOGIN_AUTH_FAILED);
	ck_assert(!iscsi_nego_auth_done(&l->n));
	/* and no second try on the same challenge (keys sent twice in a login
	 * are an initiator error besides) */
	response(l, "secret-of-alice", r);
	ck_assert_int_ne(step(l, "CHAP_N=alice", r, NULL), 0);
	ck_assert(!iscsi_nego_auth_done(&l->n));
	free(l);

	/* wrong user, right secret */
	l = login_new(false);
	challenge(l, "5");
	response(l, "secret-of-alice", r);
	ck_assert_int_eq(step(l, "CHAP_N=bob", r, NULL), ISCSI_LOGIN_AUTH_FAILED);
	free(l);

	/* a short response: the right one cut */
	l = login_new(false);
	challenge(l, "5");
	response(l, "secret-of-alice", r);
	r[strlen(r) - 2] = '\0';
	ck_assert_int_eq(step(l, "CHAP_N=alice", r, NULL), ISCSI_LOGIN_AUTH_FAILED);
	free(l);

	/* a response without a name, a name without a response */
	l = login_new(false);
	challenge(l, "5");
	response(l, "secret-of-alice", r);
	ck_assert_int_eq(step(l, r, NULL), ISCSI_LOGIN_AUTH_FAILED);
	free(l);
	l = login_new(false);
	challenge(l, "5");
	ck_assert_int_eq(step(l, "CHAP_N=alice", NULL), ISCSI_LOGIN_AUTH_FAILED);
	free(l);

	/* an algorithm we do not have */
	l = login_new(false);
	ck_assert_int_eq(step(l, "InitiatorName=iqn.2026-11.test:i", "AuthMethod=CHAP", NULL), 0);
	ck_assert_int_eq(step(l, "CHAP_A=6", NULL), ISCSI_LOGIN_AUTH_FAILED);
	ck_assert_str_eq(answer(l, "CHAP_A"), "Reject");
	free(l);

	/* AuthMethod=None when CHAP is required */
	l = login_new(false);
	ck_assert_int_eq(step(l, "InitiatorName=iqn.2026-11.test:i", "AuthMethod=None", NULL),
			 ISCSI_LOGIN_AUTH_FAILED);
	free(l);

	/* the response before the challenge */
	l = login_new(false);
	ck_assert_int_eq(step(l, "InitiatorName=iqn.2026-11.test:i", "AuthMethod=CHAP", NULL), 0);
	ck_assert_int_eq(step(l, "CHAP_N=alice", "CHAP_R=0x00112233445566778899aabbccddeeff",
			      NULL), ISCSI_LOGIN_AUTH_FAILED);
	free(l);

	/* CHAP keys without CHAP chosen (not required here) */
	l = login_new(false);
	l->cred.required = false;
	ck_assert_int_eq(step(l, "InitiatorName=iqn.2026-11.test:i", "AuthMethod=CHAP,None", NULL),
			 0);
	ck_assert_str_eq(answer(l, "AuthMethod"), "None");
	ck_assert(iscsi_nego_auth_done(&l->n));
	ck_assert_int_eq(step(l, "CHAP_A=5", NULL), ISCSI_LOGIN_AUTH_FAILED);
	free(l);
}
END_TEST

START_TEST(chap_replay)
{
	/* a response recorded from one login does not open another: each
	 * login has its own random challenge */
	struct login *a = login_new(false), *b = login_new(false);
	char r[128];

	challenge(a, "5");
	challenge(b, "5");
	ck_assert(a->clen != b->clen || memcmp(a->c, b->c, (size_t)a->clen));
	response(a, "secret-of-alice", r);
	ck_assert_int_eq(step(b, "CHAP_N=alice", r, NULL), ISCSI_LOGIN_AUTH_FAILED);
	ck_assert_int_eq(step(a, "CHAP_N=alice", r, NULL), 0);
	/* and the same response again, once done, is refused */
	ck_assert_int_ne(step(a, "CHAP_N=alice", r, NULL), 0);
	free(a);
	free(b);
}
END_TEST

START_TEST(chap_mutual)
{
	struct login *l = login_new(true);
	uint8_t ic[20], want[16], got[64];
	char r[128], c[64], i[16];

	for (unsigned k = 0; k < sizeof(ic); k++)
		ic[k] = (uint8_t)(0x40 + k);
	challenge(l, "5");
	response(l, "secret-of-alice", r);
	strcpy(c, "CHAP_C=");
	iscsi_chap_encode(ic, sizeof(ic), c + 7);
	snprintf(i, sizeof(i), "CHAP_I=%u", 77u);
	ck_assert_int_eq(step(l, "CHAP_N=alice", r, i, c, NULL), 0);
	ck_assert(iscsi_nego_auth_done(&l->n));
	ck_assert_str_eq(answer(l, "CHAP_N"), "target");
	ck_assert_int_eq(iscsi_chap_decode(answer(l, "CHAP_R"), got, sizeof(got)), 16);
	iscsi_chap_response(ISCSI_CHAP_MD5, 77, "secret-of-target", 16, ic, sizeof(ic), want);
	ck_assert(!memcmp(got, want, 16));
	free(l);
}
END_TEST

START_TEST(chap_mutual_refusals)
{
	struct login *l;
	char r[128], c[2 * ISCSI_CHAP_MAX_BIN + 16];

	/* the target's own challenge reflected back */
	l = login_new(true);
	challenge(l, "5");
	response(l, "secret-of-alice", r);
	strcpy(c, "CHAP_C=");
	iscsi_chap_encode(l->c, (size_t)l->clen, c + 7);
	ck_assert_int_eq(step(l, "CHAP_N=alice", r, "CHAP_I=1", c, NULL),
			 ISCSI_LOGIN_AUTH_FAILED);
	ck_assert_ptr_null(answer(l, "CHAP_R"));
	free(l);

	/* a challenge too short */
	l = login_new(true);
	challenge(l, "5");
	response(l, "secret-of-alice", r);
	ck_assert_int_eq(step(l, "CHAP_N=alice", r, "CHAP_I=1", "CHAP_C=0x0011223344", NULL),
			 ISCSI_LOGIN_AUTH_FAILED);
	free(l);

	/* CHAP_C without CHAP_I */
	l = login_new(true);
	challenge(l, "5");
	response(l, "secret-of-alice", r);
	ck_assert_int_eq(step(l, "CHAP_N=alice", r,
			      "CHAP_C=0x00112233445566778899aabbccddeeff", NULL),
			 ISCSI_LOGIN_AUTH_FAILED);
	free(l);

	/* mutual asked of a target that has no mutual credentials */
	l = login_new(false);
	challenge(l, "5");
	response(l, "secret-of-alice", r);
	ck_assert_int_eq(step(l, "CHAP_N=alice", r, "CHAP_I=3",
			      "CHAP_C=0x00112233445566778899aabbccddeeff", NULL),
			 ISCSI_LOGIN_AUTH_FAILED);
	free(l);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("iscsi_chap");
	TCase *tc = tcase_create("all");

	tcase_add_test(tc, chap_vectors);
	tcase_add_test(tc, chap_values);
	tcase_add_test(tc, chap_one_way);
	tcase_add_test(tc, chap_refusals);
	tcase_add_test(tc, chap_replay);
	tcase_add_test(tc, chap_mutual);
	tcase_add_test(tc, chap_mutual_refusals);
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
