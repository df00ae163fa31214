/* SPDX-License-Identifier: MIT */
/* The NBD codec: every option and command parsed and built, bad input refused. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sand/common.h"
#include "proto/nbd/nbd_proto.h"

/* ---------------------------------------------------------------- helpers */

static size_t put_str32(uint8_t *p, const char *s)
{
	size_t n = strlen(s);

	put_be32(p, (uint32_t)n);
	memcpy(p + 4, s, n);
	return 4 + n;
}

/* Walk b's option replies; returns the count, fills types. */
static unsigned walk_reps(const struct nbd_buf *b, uint32_t opt, uint32_t *types, unsigned max)
{
	size_t pos = 0;
	unsigned n = 0;

	while (pos < b->len) {
		ck_assert_uint_ge(b->len - pos, NBD_OPT_REPLY_HDR_LEN);
		ck_assert(get_be64(b->p + pos) == NBD_REP_MAGIC);
		ck_assert_uint_eq(get_be32(b->p + pos + 8), opt);
		if (n < max)
			types[n] = get_be32(b->p + pos + 12);
		n++;
		pos += NBD_OPT_REPLY_HDR_LEN + get_be32(b->p + pos + 16);
	}
	ck_assert_uint_eq(pos, b->len);
	return n;
}

static const struct nbd_limits LIM = {
	.size = 1 << 20,
	.min_block = 512,
	.max_payload = 32 << 20,
	.tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
		  NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_DF |
		  NBD_FLAG_SEND_CACHE | NBD_FLAG_SEND_FAST_ZERO | NBD_FLAG_CAN_MULTI_CONN,
	.structured = true,
	.meta = true,
};

static uint32_t v(uint16_t type, uint16_t flags, uint64_t off, uint32_t len,
		  const struct nbd_limits *lim)
{
	struct nbd_req r = { .type = type, .flags = flags, .offset = off, .len = len };

	return nbd_req_validate(&r, lim);
}

/* ---------------------------------------------------------------- handshake */

START_TEST(greeting)
{
	uint8_t b[NBD_GREETING_LEN];

	ck_assert_uint_eq(nbd_build_greeting(b), 18);
	ck_assert(!memcmp(b, "NBDMAGICIHAVEOPT", 16));
	ck_assert_uint_eq(get_be16(b + 16), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
}
END_TEST

START_TEST(client_flags)
{
	uint8_t b[4];
	uint32_t f;

	put_be32(b, 1);
	ck_assert_int_eq(nbd_parse_client_flags(b, &f), 0);
	ck_assert_uint_eq(f, 1);
	put_be32(b, 3);
	ck_assert_int_eq(nbd_parse_client_flags(b, &f), 0);
	ck_assert_uint_eq(f, 3);
	put_be32(b, 0);		/* oldstyle / non-fixed newstyle refused */
	ck_assert_int_eq(nbd_parse_client_flags(b, &f), -EPROTO);
	put_be32(b, 2);
	ck_assert_int_eq(nbd_parse_client_flags(b, &f), -EPROTO);
	put_be32(b, 1 | 4);	/* unknown flag */
	ck_assert_int_eq(nbd_parse_client_flags(b, &f), -EPROTO);
	put_be32(b, 0x80000001);
	ck_assert_int_eq(nbd_parse_client_flags(b, &f), -EPROTO);
}
END_TEST

START_TEST(opt_hdr)
{
	uint8_t b[16];
	struct nbd_opt_hdr h;

	put_be64(b, NBD_IHAVEOPT);
	put_be32(b + 8, NBD_OPT_GO);
	put_be32(b + 12, 1234);
	ck_assert_int_eq(nbd_parse_opt_hdr(b, &h), 0);
	ck_assert_uint_eq(h.opt, NBD_OPT_GO);
	ck_assert_uint_eq(h.len, 1234);
	b[3] ^= 1;
	ck_assert_int_eq(nbd_parse_opt_hdr(b, &h), -EPROTO);
	put_be64(b, NBD_MAGIC);
	ck_assert_int_eq(nbd_parse_opt_hdr(b, &h), -EPROTO);
}
END_TEST

START_TEST(info_req)
{
	uint8_t b[64];
	struct nbd_info_req r;
	size_t n = put_str32(b, "disk");

	put_be16(b + n, 3);
	put_be16(b + n + 2, NBD_INFO_NAME);
	put_be16(b + n + 4, NBD_INFO_DESCRIPTION);
	put_be16(b + n + 6, NBD_INFO_BLOCK_SIZE);
	ck_assert_int_eq(nbd_parse_info_req(b, (uint32_t)n + 8, &r), 0);
	ck_assert_uint_eq(r.name_len, 4);
	ck_assert(!memcmp(r.name, "disk", 4));
	ck_assert_uint_eq(r.nreqs, 3);
	ck_assert_uint_eq(nbd_info_req_type(&r, 0), NBD_INFO_NAME);
	ck_assert_uint_eq(nbd_info_req_type(&r, 2), NBD_INFO_BLOCK_SIZE);
	/* truncated, trailing garbage, name longer than the payload */
	ck_assert_int_eq(nbd_parse_info_req(b, (uint32_t)n + 7, &r), -EINVAL);
	ck_assert_int_eq(nbd_parse_info_req(b, (uint32_t)n + 9, &r), -EINVAL);
	ck_assert_int_eq(nbd_parse_info_req(b, 5, &r), -EINVAL);
	ck_assert_int_eq(nbd_parse_info_req(b, 0, &r), -EINVAL);
	put_be32(b, 0xffffffff);
	ck_assert_int_eq(nbd_parse_info_req(b, (uint32_t)n + 8, &r), -EINVAL);
	/* empty name, no requests */
	memset(b, 0, 6);
	ck_assert_int_eq(nbd_parse_info_req(b, 6, &r), 0);
	ck_assert_uint_eq(r.name_len, 0);
	ck_assert_uint_eq(r.nreqs, 0);
}
END_TEST

START_TEST(info_req_name_limit)
{
	size_t len = 4 + NBD_MAX_STRING + 1 + 2;
	uint8_t *b = calloc(1, len);
	struct nbd_info_req r;

	put_be32(b, NBD_MAX_STRING + 1);
	ck_assert_int_eq(nbd_parse_info_req(b, (uint32_t)len, &r), -EINVAL);
	put_be32(b, NBD_MAX_STRING);
	ck_assert_int_eq(nbd_parse_info_req(b, (uint32_t)len - 1, &r), 0);
	free(b);
}
END_TEST

START_TEST(meta_req)
{
	uint8_t b[128];
	struct nbd_meta_req r;
	const char *q;
	uint32_t ql, pos = 0;
	size_t n = put_str32(b, "disk");

	put_be32(b + n, 3);
	n += 4;
	n += put_str32(b + n, "base:allocation");
	n += put_str32(b + n, "base:");
	n += put_str32(b + n, "qemu:dirty-bitmap:x");
	ck_assert_int_eq(nbd_parse_meta_req(b, (uint32_t)n, &r), 0);
	ck_assert_uint_eq(r.nqueries, 3);
	ck_assert(nbd_meta_next(&r, &pos, &q, &ql));
	ck_assert(nbd_meta_query_matches(q, ql, false));
	ck_assert(nbd_meta_query_matches(q, ql, true));
	ck_assert(nbd_meta_next(&r, &pos, &q, &ql));
	ck_assert(!nbd_meta_query_matches(q, ql, false));	/* SET wants the name */
	ck_assert(nbd_meta_query_matches(q, ql, true));		/* LIST: the namespace */
	ck_assert(nbd_meta_next(&r, &pos, &q, &ql));
	ck_assert(!nbd_meta_query_matches(q, ql, true));
	ck_assert(!nbd_meta_next(&r, &pos, &q, &ql));
	/* a query count that does not match the payload */
	put_be32(b + 8, 4);
	ck_assert_int_eq(nbd_parse_meta_req(b, (uint32_t)n, &r), -EINVAL);
	put_be32(b + 8, 2);
	ck_assert_int_eq(nbd_parse_meta_req(b, (uint32_t)n, &r), -EINVAL);
	put_be32(b + 8, 3);
	ck_assert_int_eq(nbd_parse_meta_req(b, (uint32_t)n - 1, &r), -EINVAL);
	ck_assert_int_eq(nbd_parse_meta_req(b, 7, &r), -EINVAL);
	/* a query length past the end */
	put_be32(b + 12, 1000);
	ck_assert_int_eq(nbd_parse_meta_req(b, (uint32_t)n, &r), -EINVAL);
	/* no queries */
	memset(b, 0, 8);
	ck_assert_int_eq(nbd_parse_meta_req(b, 8, &r), 0);
	ck_assert_uint_eq(r.nqueries, 0);
	pos = 0;
	ck_assert(!nbd_meta_next(&r, &pos, &q, &ql));
}
END_TEST

START_TEST(option_replies)
{
	struct nbd_buf b = { 0 };
	uint32_t t[8];

	nbd_rep_info_export(&b, NBD_OPT_GO, 1 << 20, 0x1234);
	nbd_rep_info_string(&b, NBD_OPT_GO, NBD_INFO_NAME, "disk");
	nbd_rep_info_string(&b, NBD_OPT_GO, NBD_INFO_DESCRIPTION, "a disk");
	nbd_rep_info_block_size(&b, NBD_OPT_GO, 512, 4096, 32 << 20);
	nbd_rep_ack(&b, NBD_OPT_GO);
	ck_assert_uint_eq(walk_reps(&b, NBD_OPT_GO, t, 8), 5);
	ck_assert_uint_eq(t[0], NBD_REP_INFO);
	ck_assert_uint_eq(t[4], NBD_REP_ACK);
	/* INFO_EXPORT: type, size, flags */
	ck_assert_uint_eq(get_be32(b.p + 16), 12);
	ck_assert_uint_eq(get_be16(b.p + 20), NBD_INFO_EXPORT);
	ck_assert(get_be64(b.p + 22) == 1 << 20);
	ck_assert_uint_eq(get_be16(b.p + 30), 0x1234);
	/* INFO_NAME */
	ck_assert_uint_eq(get_be32(b.p + 32 + 16), 6);
	ck_assert_uint_eq(get_be16(b.p + 32 + 20), NBD_INFO_NAME);
	ck_assert(!memcmp(b.p + 32 + 22, "disk", 4));
	nbd_buf_free(&b);

	nbd_rep_server(&b, NBD_OPT_LIST, "disk", "desc");
	nbd_rep_ack(&b, NBD_OPT_LIST);
	ck_assert_uint_eq(walk_reps(&b, NBD_OPT_LIST, t, 8), 2);
	ck_assert_uint_eq(t[0], NBD_REP_SERVER);
	ck_assert_uint_eq(get_be32(b.p + 16), 4 + 4 + 4);
	ck_assert_uint_eq(get_be32(b.p + 20), 4);
	ck_assert(!memcmp(b.p + 24, "diskdesc", 8));
	nbd_buf_free(&b);

	nbd_rep_meta_context(&b, NBD_OPT_SET_META_CONTEXT, 7, "base:allocation");
	ck_assert_uint_eq(walk_reps(&b, NBD_OPT_SET_META_CONTEXT, t, 8), 1);
	ck_assert_uint_eq(t[0], NBD_REP_META_CONTEXT);
	ck_assert_uint_eq(get_be32(b.p + 20), 7);
	ck_assert(!memcmp(b.p + 24, "base:allocation", 15));
	nbd_buf_free(&b);

	nbd_rep_err(&b, 4242, NBD_REP_ERR_UNSUP, "nope");
	ck_assert_uint_eq(walk_reps(&b, 4242, t, 8), 1);
	ck_assert_uint_eq(t[0], NBD_REP_ERR_UNSUP);
	ck_assert(!memcmp(b.p + 20, "nope", 4));
	nbd_buf_free(&b);
}
END_TEST

START_TEST(export_name_reply)
{
	struct nbd_buf b = { 0 };

	nbd_export_name_reply(&b, 12345 * 512, 0x0101, false);
	ck_assert_uint_eq(b.len, 134);
	ck_assert(get_be64(b.p) == 12345 * 512);
	ck_assert_uint_eq(get_be16(b.p + 8), 0x0101);
	for (size_t i = 10; i < 134; i++)
		ck_assert_uint_eq(b.p[i], 0);
	nbd_buf_free(&b);
	nbd_export_name_reply(&b, 1, 1, true);
	ck_assert_uint_eq(b.len, 10);
	nbd_buf_free(&b);
}
END_TEST

/* ---------------------------------------------------------------- transmission */

START_TEST(request_roundtrip)
{
	uint8_t b[NBD_REQ_LEN];
	struct nbd_req in = { .flags = 0x11, .type = NBD_CMD_WRITE,
			      .cookie = 0x0102030405060708ull, .offset = 1ull << 40,
			      .len = 0xfffffffe }, out;

	nbd_req_build(b, &in);
	ck_assert_uint_eq(get_be32(b), NBD_REQUEST_MAGIC);
	ck_assert_int_eq(nbd_req_parse(b, &out), 0);
	ck_assert_uint_eq(out.flags, in.flags);
	ck_assert_uint_eq(out.type, in.type);
	ck_assert(out.cookie == in.cookie);
	ck_assert(out.offset == in.offset);
	ck_assert_uint_eq(out.len, in.len);
	for (int i = 0; i < 4; i++) {	/* any bad magic byte */
		uint8_t c[NBD_REQ_LEN];

		memcpy(c, b, sizeof(c));
		c[i] ^= 0x40;
		ck_assert_int_eq(nbd_req_parse(c, &out), -EPROTO);
	}
}
END_TEST

START_TEST(validate_commands)
{
	/* every command, well formed */
	ck_assert_uint_eq(v(NBD_CMD_READ, 0, 0, 4096, &LIM), 0);
	ck_assert_uint_eq(v(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 512, 512, &LIM), 0);
	ck_assert_uint_eq(v(NBD_CMD_DISC, 0, 0, 0, &LIM), 0);
	ck_assert_uint_eq(v(NBD_CMD_FLUSH, 0, 0, 0, &LIM), 0);
	ck_assert_uint_eq(v(NBD_CMD_TRIM, NBD_CMD_FLAG_FUA, 0, 1 << 20, &LIM), 0);
	ck_assert_uint_eq(v(NBD_CMD_CACHE, 0, 1, 3, &LIM), 0);	/* a hint: no alignment */
	ck_assert_uint_eq(v(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO,
			    0, 4096, &LIM), 0);
	ck_assert_uint_eq(v(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 1, 100, &LIM), 0);
	ck_assert_uint_eq(v(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, &LIM), 0);
	/* unknown command */
	ck_assert_uint_eq(v(NBD_CMD_MAX, 0, 0, 512, &LIM), NBD_EINVAL);
	ck_assert_uint_eq(v(0xffff, 0, 0, 512, &LIM), NBD_EINVAL);
	ck_assert_uint_eq(v(8 /* RESIZE */, 0, 0, 512, &LIM), NBD_EINVAL);
}
END_TEST

START_TEST(validate_flags)
{
	struct nbd_limits l = LIM;

	ck_assert_uint_eq(v(NBD_CMD_READ, 1u << 5, 0, 512, &LIM), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_READ, 0x8000, 0, 512, &LIM), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_READ, NBD_CMD_FLAG_NO_HOLE, 0, 512, &LIM), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_WRITE, NBD_CMD_FLAG_DF, 0, 512, &LIM), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_READ, NBD_CMD_FLAG_REQ_ONE, 0, 512, &LIM), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_WRITE, NBD_CMD_FLAG_FAST_ZERO, 0, 512, &LIM), NBD_EINVAL);
	/* FUA is valid on any command once advertised */
	ck_assert_uint_eq(v(NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 512, &LIM), 0);
	/* flags we did not advertise */
	l.tflags &= (uint16_t)~(NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_DF | NBD_FLAG_SEND_FAST_ZERO);
	ck_assert_uint_eq(v(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 0, 512, &l), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, &l), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 0, 512, &l), NBD_EINVAL);
	/* commands we did not advertise */
	l = LIM;
	l.tflags &= (uint16_t)~(NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_TRIM |
				NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_CACHE);
	ck_assert_uint_eq(v(NBD_CMD_FLUSH, 0, 0, 0, &l), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_TRIM, 0, 0, 512, &l), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_WRITE_ZEROES, 0, 0, 512, &l), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_CACHE, 0, 0, 512, &l), NBD_EINVAL);
	/* DF and block status need structured replies; block status a context */
	l = LIM;
	l.meta = false;
	ck_assert_uint_eq(v(NBD_CMD_BLOCK_STATUS, 0, 0, 512, &l), NBD_EINVAL);
	l.structured = false;
	ck_assert_uint_eq(v(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, &l), NBD_EINVAL);
	l.meta = true;
	ck_assert_uint_eq(v(NBD_CMD_BLOCK_STATUS, 0, 0, 512, &l), NBD_EINVAL);
}
END_TEST

START_TEST(validate_ranges)
{
	uint64_t sz = LIM.size;

	ck_assert_uint_eq(v(NBD_CMD_READ, 0, sz - 512, 512, &LIM), 0);
	ck_assert_uint_eq(v(NBD_CMD_READ, 0, sz, 512, &LIM), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_READ, 0, sz - 512, 1024, &LIM), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_READ, 0, UINT64_MAX - 511, 1024, &LIM), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_WRITE, 0, sz, 512, &LIM), NBD_ENOSPC);
	ck_assert_uint_eq(v(NBD_CMD_WRITE, 0, UINT64_MAX - 511, 512, &LIM), NBD_ENOSPC);
	ck_assert_uint_eq(v(NBD_CMD_WRITE_ZEROES, 0, sz - 512, 1024, &LIM), NBD_ENOSPC);
	ck_assert_uint_eq(v(NBD_CMD_TRIM, 0, sz - 512, 1024, &LIM), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_CACHE, 0, sz, 1, &LIM), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_BLOCK_STATUS, 0, sz - 1, 2, &LIM), NBD_EINVAL);
	/* zero length */
	ck_assert_uint_eq(v(NBD_CMD_READ, 0, 0, 0, &LIM), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_WRITE, 0, 0, 0, &LIM), NBD_EINVAL);
	/* alignment to min_block */
	ck_assert_uint_eq(v(NBD_CMD_READ, 0, 1, 512, &LIM), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_WRITE, 0, 0, 100, &LIM), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_TRIM, 0, 256, 512, &LIM), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_WRITE_ZEROES, 0, 0, 513, &LIM), NBD_EINVAL);
	/* payload limit for READ and WRITE only */
	{
		struct nbd_limits l = LIM;

		l.size = 1ull << 40;
		ck_assert_uint_eq(v(NBD_CMD_READ, 0, 0, 32 << 20, &l), 0);
		ck_assert_uint_eq(v(NBD_CMD_READ, 0, 0, (32 << 20) + 512, &l), NBD_EINVAL);
		ck_assert_uint_eq(v(NBD_CMD_WRITE, 0, 0, 64 << 20, &l), NBD_EINVAL);
		ck_assert_uint_eq(v(NBD_CMD_WRITE_ZEROES, 0, 0, 0xfffffe00, &l), 0);
		ck_assert_uint_eq(v(NBD_CMD_TRIM, 0, 0, 0xfffffe00, &l), 0);
	}
	/* flush carries no range */
	ck_assert_uint_eq(v(NBD_CMD_FLUSH, 0, 512, 0, &LIM), NBD_EINVAL);
	ck_assert_uint_eq(v(NBD_CMD_FLUSH, 0, 0, 512, &LIM), NBD_EINVAL);
}
END_TEST

START_TEST(validate_readonly)
{
	struct nbd_limits l = LIM;

	l.tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA;
	ck_assert_uint_eq(v(NBD_CMD_WRITE, 0, 0, 512, &l), NBD_EPERM);
	ck_assert_uint_eq(v(NBD_CMD_TRIM, 0, 0, 512, &l), NBD_EPERM);
	ck_assert_uint_eq(v(NBD_CMD_WRITE_ZEROES, 0, 0, 512, &l), NBD_EPERM);
	ck_assert_uint_eq(v(NBD_CMD_READ, 0, 0, 512, &l), 0);
	ck_assert_uint_eq(v(NBD_CMD_FLUSH, 0, 0, 0, &l), 0);
}
END_TEST

START_TEST(replies)
{
	uint8_t b[128];
	struct nbd_extent ext[2] = { { 4096, 0 }, { 8192, NBD_STATE_HOLE | NBD_STATE_ZERO } };
	size_t n;

	ck_assert_uint_eq(nbd_simple_reply(b, 0xabcdef, NBD_EIO), 16);
	ck_assert_uint_eq(get_be32(b), NBD_SIMPLE_REPLY_MAGIC);
	ck_assert_uint_eq(get_be32(b + 4), NBD_EIO);
	ck_assert(get_be64(b + 8) == 0xabcdef);

	ck_assert_uint_eq(nbd_sreply_offset_data(b, 7, 1 << 20, 4096, true), 28);
	ck_assert_uint_eq(get_be32(b), NBD_STRUCTURED_REPLY_MAGIC);
	ck_assert_uint_eq(get_be16(b + 4), NBD_REPLY_FLAG_DONE);
	ck_assert_uint_eq(get_be16(b + 6), NBD_REPLY_TYPE_OFFSET_DATA);
	ck_assert(get_be64(b + 8) == 7);
	ck_assert_uint_eq(get_be32(b + 16), 8 + 4096);
	ck_assert(get_be64(b + 20) == 1 << 20);

	ck_assert_uint_eq(nbd_sreply_error(b, 9, NBD_ENOSPC), 26);
	ck_assert_uint_eq(get_be16(b + 4), NBD_REPLY_FLAG_DONE);
	ck_assert_uint_eq(get_be16(b + 6), NBD_REPLY_TYPE_ERROR);
	ck_assert_uint_eq(get_be32(b + 16), 6);
	ck_assert_uint_eq(get_be32(b + 20), NBD_ENOSPC);
	ck_assert_uint_eq(get_be16(b + 24), 0);

	n = nbd_sreply_block_status(b, sizeof(b), 11, 1, ext, 2);
	ck_assert_uint_eq(n, 20 + 4 + 16);
	ck_assert_uint_eq(get_be16(b + 6), NBD_REPLY_TYPE_BLOCK_STATUS);
	ck_assert_uint_eq(get_be32(b + 16), 20);
	ck_assert_uint_eq(get_be32(b + 20), 1);
	ck_assert_uint_eq(get_be32(b + 24), 4096);
	ck_assert_uint_eq(get_be32(b + 28), 0);
	ck_assert_uint_eq(get_be32(b + 32), 8192);
	ck_assert_uint_eq(get_be32(b + 36), 3);
	/* too small a buffer: the size needed, nothing written */
	memset(b, 0x5a, sizeof(b));
	ck_assert_uint_eq(nbd_sreply_block_status(b, 30, 11, 1, ext, 2), 40);
	ck_assert_uint_eq(b[0], 0x5a);
}
END_TEST

START_TEST(errno_map)
{
	ck_assert_uint_eq(nbd_errno(0), NBD_SUCCESS);
	ck_assert_uint_eq(nbd_errno(-EIO), NBD_EIO);
	ck_assert_uint_eq(nbd_errno(-ENOSPC), NBD_ENOSPC);
	ck_assert_uint_eq(nbd_errno(-EDQUOT), NBD_ENOSPC);
	ck_assert_uint_eq(nbd_errno(-EROFS), NBD_EPERM);
	ck_assert_uint_eq(nbd_errno(-EPERM), NBD_EPERM);
	ck_assert_uint_eq(nbd_errno(-ENOMEM), NBD_ENOMEM);
	ck_assert_uint_eq(nbd_errno(-EINVAL), NBD_EINVAL);
	ck_assert_uint_eq(nbd_errno(-ERANGE), NBD_EINVAL);
	ck_assert_uint_eq(nbd_errno(-EOPNOTSUPP), NBD_ENOTSUP);
	ck_assert_uint_eq(nbd_errno(-ESHUTDOWN), NBD_ESHUTDOWN);
	ck_assert_uint_eq(nbd_errno(-ECANCELED), NBD_ESHUTDOWN);
	ck_assert_uint_eq(nbd_errno(-EOVERFLOW), NBD_EOVERFLOW);
	ck_assert_uint_eq(nbd_errno(-EBADMSG), NBD_EIO);	/* anything else */
	ck_assert_uint_eq(nbd_errno(EIO), NBD_EIO);		/* either sign */
}
END_TEST

START_TEST(names)
{
	ck_assert_str_eq(nbd_opt_name(NBD_OPT_GO), "GO");
	ck_assert_str_eq(nbd_opt_name(NBD_OPT_SET_META_CONTEXT), "SET_META_CONTEXT");
	ck_assert_str_eq(nbd_opt_name(0), "unknown");
	ck_assert_str_eq(nbd_opt_name(0xffffffff), "unknown");
	ck_assert_str_eq(nbd_cmd_name(NBD_CMD_BLOCK_STATUS), "BLOCK_STATUS");
	ck_assert_str_eq(nbd_cmd_name(200), "unknown");
}
END_TEST

/* A deterministic mini-fuzz, so that make check (and ASan) runs the parsers
 * over garbage every time; tests/fuzz/fuzz_nbd.c does the real thing. */
START_TEST(random_inputs)
{
	uint8_t buf[512];
	uint64_t x = 0x9e3779b97f4a7c15ull;

	for (int iter = 0; iter < 200000; iter++) {
		uint32_t len = (uint32_t)(x % sizeof(buf));
		struct nbd_info_req ir;
		struct nbd_meta_req mr;
		struct nbd_opt_hdr h;
		struct nbd_req r;
		uint32_t f, pos = 0, ql, n = 0;
		const char *q;

		for (uint32_t i = 0; i < sizeof(buf); i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = (uint8_t)x;
		}
		/* small lengths inside the payload, so the walks go deep */
		if (iter & 1) {
			put_be32(buf, (uint32_t)(x % 8));
			put_be32(buf + 4 + (x % 8), (uint32_t)(x >> 8) % 4);
		}
		if (nbd_parse_info_req(buf, len, &ir) == 0) {
			ck_assert_uint_le(4 + ir.name_len + 2 + 2u * ir.nreqs, len);
			for (unsigned i = 0; i < ir.nreqs; i++)
				(void)nbd_info_req_type(&ir, i);
		}
		if (nbd_parse_meta_req(buf, len, &mr) == 0) {
			while (nbd_meta_next(&mr, &pos, &q, &ql)) {
				ck_assert(q >= (const char *)buf);
				ck_assert(q + ql <= (const char *)buf + len);
				n++;
			}
			ck_assert_uint_eq(n, mr.nqueries);
		}
		(void)nbd_parse_client_flags(buf, &f);
		(void)nbd_parse_opt_hdr(buf, &h);
		put_be32(buf, NBD_REQUEST_MAGIC);
		ck_assert_int_eq(nbd_req_parse(buf, &r), 0);
		if (nbd_req_validate(&r, &LIM) == 0 && r.type != NBD_CMD_DISC &&
		    r.type != NBD_CMD_FLUSH)
			ck_assert(r.offset <= LIM.size && r.len <= LIM.size - r.offset && r.len);
	}
}
END_TEST

static Suite *nbd_suite(void)
{
	Suite *s = suite_create("nbd_proto");
	TCase *h = tcase_create("handshake");
	TCase *t = tcase_create("transmission");

	tcase_add_test(h, greeting);
	tcase_add_test(h, client_flags);
	tcase_add_test(h, opt_hdr);
	tcase_add_test(h, info_req);
	tcase_add_test(h, info_req_name_limit);
	tcase_add_test(h, meta_req);
	tcase_add_test(h, option_replies);
	tcase_add_test(h, export_name_reply);
	suite_add_tcase(s, h);
	tcase_add_test(t, request_roundtrip);
	tcase_add_test(t, validate_commands);
	tcase_add_test(t, validate_flags);
	tcase_add_test(t, validate_ranges);
	tcase_add_test(t, validate_readonly);
	tcase_add_test(t, replies);
	tcase_add_test(t, errno_map);
	tcase_add_test(t, names);
	tcase_add_test(t, random_inputs);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(nbd_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
