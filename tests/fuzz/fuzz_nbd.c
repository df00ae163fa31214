/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the NBD codec (proto/nbd): the input is what a
 * client sends. The first byte picks the phase; the rest goes through the
 * same parsers the server uses: client flags, option headers and payloads
 * (INFO/GO, LIST/SET_META_CONTEXT, with the replies built from what was
 * parsed), then request headers validated against a few export shapes.
 *
 *   make fuzz && build/fuzz/fuzz_nbd -max_total_time=60 [corpus-dir]
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "sand/common.h"
#include "proto/nbd/nbd_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void options(const uint8_t *p, size_t n)
{
	struct nbd_buf out = { 0 };
	uint32_t cflags;

	if (n < NBD_CFLAGS_LEN)
		return;
	(void)nbd_parse_client_flags(p, &cflags);
	p += NBD_CFLAGS_LEN;
	n -= NBD_CFLAGS_LEN;
	while (n >= NBD_OPT_HDR_LEN) {
		struct nbd_opt_hdr h;
		struct nbd_info_req ir;
		struct nbd_meta_req mr;
		uint32_t len;

		if (nbd_parse_opt_hdr(p, &h))
			break;
		p += NBD_OPT_HDR_LEN;
		n -= NBD_OPT_HDR_LEN;
		len = (uint32_t)MIN((uint64_t)h.len, (uint64_t)n);
		if (nbd_parse_info_req(p, len, &ir) == 0) {
			char name[NBD_MAX_STRING + 1];

			memcpy(name, ir.name, ir.name_len);
			name[ir.name_len] = 0;
			for (unsigned i = 0; i < ir.nreqs; i++)
				(void)nbd_info_req_type(&ir, i);
			nbd_rep_info_export(&out, h.opt, 1 << 20, 0x1ff);
			nbd_rep_info_string(&out, h.opt, NBD_INFO_NAME, name);
			nbd_rep_server(&out, h.opt, name, name);
		}
		if (nbd_parse_meta_req(p, len, &mr) == 0) {
			uint32_t pos = 0, ql;
			const char *q;
			unsigned count = 0;

			while (nbd_meta_next(&mr, &pos, &q, &ql)) {
				if (nbd_meta_query_matches(q, ql, count & 1))
					nbd_rep_meta_context(&out, h.opt, 1, NBD_META_BASE_ALLOCATION);
				count++;
			}
			if (count != mr.nqueries)
				abort();	/* the parser promised a consistent walk */
		}
		(void)nbd_opt_name(h.opt);
		nbd_rep_err(&out, h.opt, NBD_REP_ERR_UNSUP, "x");
		p += len;
		n -= len;
		if (out.len > (1u << 20))
			nbd_buf_free(&out);
	}
	nbd_buf_free(&out);
}

static void requests(const uint8_t *p, size_t n, uint8_t shape)
{
	struct nbd_limits lim = {
		.size = shape & 1 ? (1ull << 40) : 512 * 1000,
		.min_block = shape & 2 ? 4096 : 512,
		.max_payload = 32u << 20,
		.tflags = (uint16_t)(0xfff & ~(shape & 4 ? 0 : NBD_FLAG_READ_ONLY)),
		.structured = shape & 8,
		.meta = shape & 16,
	};

	while (n >= NBD_REQ_LEN) {
		struct nbd_req r;
		uint8_t back[NBD_REQ_LEN], reply[64];
		uint32_t err;

		if (nbd_req_parse(p, &r) == 0) {
			err = nbd_req_validate(&r, &lim);
			if (err == NBD_SUCCESS && r.type != NBD_CMD_DISC && r.type != NBD_CMD_FLUSH &&
			    (r.offset > lim.size || r.len > lim.size - r.offset))
				abort();	/* validation let a bad range through */
			nbd_req_build(back, &r);
			if (memcmp(back, p, NBD_REQ_LEN))
				abort();	/* parse and build must agree */
			(void)nbd_simple_reply(reply, r.cookie, err);
			(void)nbd_cmd_name(r.type);
		}
		p += NBD_REQ_LEN;
		n -= NBD_REQ_LEN;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 0x80)
		options(data + 1, size - 1);
	else
		requests(data + 1, size - 1, data[0]);
	return 0;
}
