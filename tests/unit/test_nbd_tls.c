/* SPDX-License-Identifier: MIT */
/*
 * NBD allow-list CIDRs (daemon/nbd/nbd_tls.c): parsing, matching IPv4,
 * IPv6 and IPv4-mapped peers, prefix edges; TLS option checks.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include "sand/nbd.h"
#include "daemon/nbd/nbd_tls.h"

static struct sockaddr_storage sa(const char *ip)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	}
	return ss;
}

static bool match(const char *cidr, const char *ip)
{
	struct nbd_cidr c;
	struct sockaddr_storage ss = sa(ip);

	ck_assert_int_eq(nbd_cidr_parse(cidr, &c), 0);
	return nbd_cidr_match(&c, (struct sockaddr *)&ss);
}

START_TEST(test_cidr_parse)
{
	static const char *good[] = { "10.0.0.0/8", "0.0.0.0/0", "127.0.0.1", "1.2.3.4/32",
				      "::1", "::/0", "fd00::/8", "2001:db8::/128" };
	static const char *bad[] = { "", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1",
				     "10.0.0.0/8x", "10.0.0/8", "::1/129", "host/8", "1.2.3.4/ 8",
				     "fd00::/08x", "10.0.0.0/8/8" };
	struct nbd_cidr c;

	for (unsigned i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(nbd_cidr_check(good[i]) == 0, "%s refused", good[i]);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(nbd_cidr_check(bad[i]) == -EINVAL, "%s accepted", bad[i]);
	ck_assert_int_eq(nbd_cidr_check(NULL), -EINVAL);
	ck_assert_int_eq(nbd_cidr_parse("127.0.0.1", &c), 0);
	ck_assert_int_eq(c.prefix, 32);
	ck_assert_int_eq(nbd_cidr_parse("::1", &c), 0);
	ck_assert_int_eq(c.prefix, 128);
	ck_assert_int_eq(c.family, AF_INET6);
}
END_TEST

START_TEST(test_cidr_match)
{
	ck_assert(match("127.0.0.0/8", "127.0.0.1"));
	ck_assert(match("127.0.0.0/8", "127.255.255.255"));
	ck_assert(!match("127.0.0.0/8", "128.0.0.1"));
	ck_assert(!match("10.0.0.0/8", "127.0.0.1"));
	ck_assert(match("0.0.0.0/0", "8.8.8.8"));
	ck_assert(match("192.168.1.128/25", "192.168.1.200"));
	ck_assert(!match("192.168.1.128/25", "192.168.1.127"));
	ck_assert(match("192.168.1.7", "192.168.1.7"));
	ck_assert(!match("192.168.1.7", "192.168.1.6"));
	ck_assert(match("::1/128", "::1"));
	ck_assert(!match("::1/128", "::2"));
	ck_assert(match("fd00::/8", "fd12:3456::1"));
	ck_assert(!match("fd00::/8", "fe80::1"));
	ck_assert(match("2001:db8::/33", "2001:db8:7fff::1"));
	ck_assert(!match("2001:db8::/33", "2001:db8:8000::1"));
	ck_assert(match("::/0", "2001:db8::1"));
	/* families do not mix, except v4-mapped peers against v4 CIDRs */
	ck_assert(!match("::/0", "127.0.0.1"));
	ck_assert(!match("0.0.0.0/0", "::1"));
	ck_assert(match("127.0.0.0/8", "::ffff:127.0.0.1"));
	ck_assert(!match("10.0.0.0/8", "::ffff:127.0.0.1"));
}
END_TEST

START_TEST(test_tls_opts)
{
	struct nbd_tls_opts o = { .mode = NBD_TLS_REQUIRE };
	struct nbd_tls *t = NULL;
	enum nbd_tls_mode m;

	ck_assert_int_eq(nbd_tls_new(&o, &t), -EINVAL);		/* no credentials */
	o.cert_dir = "/nonexistent";
	o.psk_file = "/nonexistent";
	ck_assert_int_eq(nbd_tls_new(&o, &t), -EINVAL);		/* both */
	o.cert_dir = NULL;
	o.verify_peer = true;
	ck_assert_int_eq(nbd_tls_new(&o, &t), -EINVAL);		/* verify with PSK */
	o.verify_peer = false;
	ck_assert_int_eq(nbd_tls_new(&o, &t), -ENOENT);		/* missing file */
	ck_assert_ptr_null(t);
	ck_assert_int_eq(nbd_tls_mode_parse("allow", &m), 0);
	ck_assert_int_eq(m, NBD_TLS_ALLOW);
	ck_assert_int_eq(nbd_tls_mode_parse("require", &m), 0);
	ck_assert_int_eq(m, NBD_TLS_REQUIRE);
	ck_assert_int_eq(nbd_tls_mode_parse("off", &m), 0);
	ck_assert_int_eq(m, NBD_TLS_OFF);
	ck_assert_int_eq(nbd_tls_mode_parse("on", &m), -EINVAL);
	ck_assert_str_eq(nbd_tls_mode_name(NBD_TLS_REQUIRE), "require");
	nbd_tls_global_fini();
}
END_TEST

static Suite *nbd_tls_suite(void)
{
	Suite *s = suite_create("nbd_tls");
	TCase *tc = tcase_create("cidr");

	tcase_add_test(tc, test_cidr_parse);
	tcase_add_test(tc, test_cidr_match);
	tcase_add_test(tc, test_tls_opts);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(nbd_tls_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
