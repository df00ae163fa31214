/* SPDX-License-Identifier: MIT */
/*
 * CHAP for iSCSI logins (RFC 1994, RFC 7143 section 12.1.3): responses,
 * and binary values as the login keys carry them ("0x" hex or "0b"
 * base64). Digests from GnuTLS.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <gnutls/crypto.h>
#include "sand/iscsi.h"

static int gnutls_alg(int alg)
{
	switch (alg) {
	case ISCSI_CHAP_MD5:		return GNUTLS_DIG_MD5;
	case ISCSI_CHAP_SHA256:		return GNUTLS_DIG_SHA256;
	case ISCSI_CHAP_SHA3_256:	return GNUTLS_DIG_SHA3_256;
	default:			return GNUTLS_DIG_UNKNOWN;
	}
}

unsigned iscsi_chap_digest_len(int alg)
{
	int g = gnutls_alg(alg);

	return g == GNUTLS_DIG_UNKNOWN ? 0 : gnutls_hash_get_len(g);
}

int iscsi_chap_response(int alg, uint8_t id, const void *secret, size_t secret_len,
			const void *challenge, size_t clen, uint8_t *out)
{
	uint8_t buf[1 + ISCSI_CHAP_NAME_MAX + ISCSI_CHAP_MAX_BIN];
	unsigned dl = iscsi_chap_digest_len(alg);
	int rc;

	if (!dl || secret_len >= ISCSI_CHAP_NAME_MAX || clen > ISCSI_CHAP_MAX_BIN)
		return -EINVAL;
	buf[0] = id;
	memcpy(buf + 1, secret, secret_len);
	memcpy(buf + 1 + secret_len, challenge, clen);
	rc = gnutls_hash_fast(gnutls_alg(alg), buf, 1 + secret_len + clen, out);
	gnutls_memset(buf, 0, sizeof(buf));
	return rc ? -EINVAL : (int)dl;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int iscsi_chap_decode(const char *v, uint8_t *out, size_t cap)
{
	size_t n = 0, len;

	if (v[0] != '0' || (v[1] != 'x' && v[1] != 'X' && v[1] != 'b' && v[1] != 'B'))
		return -EINVAL;
	len = strlen(v + 2);
	if (!len)
		return -EINVAL;
	if (v[1] == 'x' || v[1] == 'X') {
		const char *p = v + 2;

		/* an odd count: the first digit stands alone (RFC 7143 6.1) */
		if (len & 1) {
			int d = hexval(*p++);

			if (d < 0 || !cap)
				return -EINVAL;
			out[n++] = (uint8_t)d;
		}
		for (; *p; p += 2) {
			int hi = hexval(p[0]), lo = hexval(p[1]);

			if (hi < 0 || lo < 0 || n >= cap)
				return -EINVAL;
			out[n++] = (uint8_t)(hi << 4 | lo);
		}
		return (int)n;
	}
	/* base64: groups of 4, '=' padding only at the end */
	if (len % 4)
		return -EINVAL;
	for (const char *p = v + 2; *p; p += 4) {
		int d[4], pad = 0;
		uint32_t w = 0;

		for (int i = 0; i < 4; i++) {
			if (p[i] == '=' && i >= 2 && !p[4]) {
				d[i] = 0;
				pad++;
			} else if (pad || (d[i] = b64val(p[i])) < 0) {
				return -EINVAL;
			}
			w = w << 6 | (uint32_t)d[i];
		}
		if (n + 3 - (size_t)pad > cap)
			return -EINVAL;
		out[n++] = (uint8_t)(w >> 16);
		if (pad < 2)
			out[n++] = (uint8_t)(w >> 8);
		if (pad < 1)
			out[n++] = (uint8_t)w;
	}
	return (int)n;
}

void iscsi_chap_encode(const uint8_t *bin, size_t len, char *out)
{
	static const char hex[] = "0123456789abcdef";

	*out++ = '0';
	*out++ = 'x';
	for (size_t i = 0; i < len; i++) {
		*out++ = hex[bin[i] >> 4];
		*out++ = hex[bin[i] & 15];
	}
	*out = '\0';
}
