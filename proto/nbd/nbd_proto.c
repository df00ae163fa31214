/* SPDX-License-Identifier: MIT */
/*
 * The NBD wire codec. See nbd_proto.h for the contract; the layouts below
 * follow doc/proto.md of the NBD project field by field, with explicit
 * big-endian accessors (no packed structs).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sand/common.h"
#include "proto/nbd/nbd_proto.h"

/* ------------------------------------------------------------ handshake */

size_t nbd_build_greeting(uint8_t *buf)
{
	put_be64(buf, NBD_MAGIC);
	put_be64(buf + 8, NBD_IHAVEOPT);
	put_be16(buf + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	return NBD_GREETING_LEN;
}

int nbd_parse_client_flags(const uint8_t *buf, uint32_t *cflags)
{
	uint32_t f = get_be32(buf);

	/* We only speak fixed newstyle; unknown bits must drop the session. */
	if (!(f & NBD_FLAG_C_FIXED_NEWSTYLE))
		return -EPROTO;
	if (f & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES))
		return -EPROTO;
	*cflags = f;
	return 0;
}

int nbd_parse_opt_hdr(const uint8_t *buf, struct nbd_opt_hdr *h)
{
	if (get_be64(buf) != NBD_IHAVEOPT)
		return -EPROTO;
	h->opt = get_be32(buf + 8);
	h->len = get_be32(buf + 12);
	return 0;
}

int nbd_parse_info_req(const uint8_t *data, uint32_t len, struct nbd_info_req *r)
{
	uint32_t nl;

	if (len < 4 + 2)
		return -EINVAL;
	nl = get_be32(data);
	if (nl > NBD_MAX_STRING || nl > len - 6)
		return -EINVAL;
	r->name = (const char *)data + 4;
	r->name_len = nl;
	r->nreqs = get_be16(data + 4 + nl);
	r->reqs = data + 4 + nl + 2;
	if ((uint64_t)len != 4ull + nl + 2 + 2ull * r->nreqs)
		return -EINVAL;
	return 0;
}

int nbd_parse_meta_req(const uint8_t *data, uint32_t len, struct nbd_meta_req *r)
{
	uint32_t nl, pos, n;

	if (len < 8)
		return -EINVAL;
	nl = get_be32(data);
	if (nl > NBD_MAX_STRING || nl > len - 8)
		return -EINVAL;
	r->name = (const char *)data + 4;
	r->name_len = nl;
	r->nqueries = get_be32(data + 4 + nl);
	r->queries = data + 8 + nl;
	r->queries_len = len - 8 - nl;
	/* Walk once so that nbd_meta_next() never has to fail. */
	for (pos = 0, n = 0; n < r->nqueries; n++) {
		uint32_t ql;

		if (r->queries_len - pos < 4)
			return -EINVAL;
		ql = get_be32(r->queries + pos);
		if (ql > NBD_MAX_STRING || ql > r->queries_len - pos - 4)
			return -EINVAL;
		pos += 4 + ql;
	}
	if (pos != r->queries_len)
		return -EINVAL;
	return 0;
}

bool nbd_meta_next(const struct nbd_meta_req *r, uint32_t *pos,
		   const char **q, uint32_t *qlen)
{
	uint32_t ql;

	if (*pos >= r->queries_len)
		return false;
	ql = get_be32(r->queries + *pos);
	*q = (const char *)r->queries + *pos + 4;
	*qlen = ql;
	*pos += 4 + ql;
	return true;
}

bool nbd_meta_query_matches(const char *q, uint32_t qlen, bool list)
{
	static const char full[] = NBD_META_BASE_ALLOCATION;

	if (qlen == sizeof(full) - 1 && !memcmp(q, full, qlen))
		return true;
	return list && qlen == 5 && !memcmp(q, "base:", 5);
}

/* ------------------------------------------------------------ nbd_buf */

void nbd_buf_free(struct nbd_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
	b->oom = false;
}

static uint8_t *buf_room(struct nbd_buf *b, size_t n)
{
	uint8_t *p;

	if (b->oom)
		return NULL;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap < b->len + n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return NULL;
		}
		b->p = p;
		b->cap = cap;
	}
	p = b->p + b->len;
	b->len += n;
	return p;
}

void nbd_buf_append(struct nbd_buf *b, const void *data, size_t len)
{
	uint8_t *p = buf_room(b, len);

	if (p && len)
		memcpy(p, data, len);
}

void nbd_rep(struct nbd_buf *b, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
	uint8_t *p = buf_room(b, NBD_OPT_REPLY_HDR_LEN + (size_t)len);

	if (!p)
		return;
	put_be64(p, NBD_REP_MAGIC);
	put_be32(p + 8, opt);
	put_be32(p + 12, type);
	put_be32(p + 16, len);
	if (len)
		memcpy(p + NBD_OPT_REPLY_HDR_LEN, data, len);
}

void nbd_rep_ack(struct nbd_buf *b, uint32_t opt)
{
	nbd_rep(b, opt, NBD_REP_ACK, NULL, 0);
}

void nbd_rep_err(struct nbd_buf *b, uint32_t opt, uint32_t err, const char *msg)
{
	nbd_rep(b, opt, err, msg, msg ? (uint32_t)strnlen(msg, NBD_MAX_STRING) : 0);
}

void nbd_rep_server(struct nbd_buf *b, uint32_t opt, const char *name, const char *desc)
{
	uint32_t nl = (uint32_t)strnlen(name, NBD_MAX_STRING);
	uint32_t dl = desc ? (uint32_t)strnlen(desc, NBD_MAX_STRING) : 0;
	uint8_t *p = buf_room(b, NBD_OPT_REPLY_HDR_LEN + 4 + nl + dl);

	if (!p)
		return;
	put_be64(p, NBD_REP_MAGIC);
	put_be32(p + 8, opt);
	put_be32(p + 12, NBD_REP_SERVER);
	put_be32(p + 16, 4 + nl + dl);
	put_be32(p + 20, nl);
	memcpy(p + 24, name, nl);
	if (dl)
		memcpy(p + 24 + nl, desc, dl);
}

void nbd_rep_info_export(struct nbd_buf *b, uint32_t opt, uint64_t size, uint16_t tflags)
{
	uint8_t d[12];

	put_be16(d, NBD_INFO_EXPORT);
	put_be64(d + 2, size);
	put_be16(d + 10, tflags);
	nbd_rep(b, opt, NBD_REP_INFO, d, sizeof(d));
}

void nbd_rep_info_string(struct nbd_buf *b, uint32_t opt, uint16_t info, const char *s)
{
	uint32_t sl = (uint32_t)strnlen(s, NBD_MAX_STRING);
	uint8_t *p = buf_room(b, NBD_OPT_REPLY_HDR_LEN + 2 + sl);

	if (!p)
		return;
	put_be64(p, NBD_REP_MAGIC);
	put_be32(p + 8, opt);
	put_be32(p + 12, NBD_REP_INFO);
	put_be32(p + 16, 2 + sl);
	put_be16(p + 20, info);
	memcpy(p + 22, s, sl);
}

void nbd_rep_info_block_size(struct nbd_buf *b, uint32_t opt, uint32_t min,
			     uint32_t pref, uint32_t max)
{
	uint8_t d[14];

	put_be16(d, NBD_INFO_BLOCK_SIZE);
	put_be32(d + 2, min);
	put_be32(d + 6, pref);
	put_be32(d + 10, max);
	nbd_rep(b, opt, NBD_REP_INFO, d, sizeof(d));
}

void nbd_rep_meta_context(struct nbd_buf *b, uint32_t opt, uint32_t id, const char *name)
{
	uint32_t nl = (uint32_t)strnlen(name, NBD_MAX_STRING);
	uint8_t *p = buf_room(b, NBD_OPT_REPLY_HDR_LEN + 4 + nl);

	if (!p)
		return;
	put_be64(p, NBD_REP_MAGIC);
	put_be32(p + 8, opt);
	put_be32(p + 12, NBD_REP_META_CONTEXT);
	put_be32(p + 16, 4 + nl);
	put_be32(p + 20, id);
	memcpy(p + 24, name, nl);
}

void nbd_export_name_reply(struct nbd_buf *b, uint64_t size, uint16_t tflags, bool no_zeroes)
{
	size_t n = no_zeroes ? 10 : NBD_EXPORT_NAME_REPLY_LEN;
	uint8_t *p = buf_room(b, n);

	if (!p)
		return;
	memset(p, 0, n);
	put_be64(p, size);
	put_be16(p + 8, tflags);
}

/* ------------------------------------------------------------ transmission */

int nbd_req_parse(const uint8_t *buf, struct nbd_req *r)
{
	if (get_be32(buf) != NBD_REQUEST_MAGIC)
		return -EPROTO;
	r->flags = get_be16(buf + 4);
	r->type = get_be16(buf + 6);
	r->cookie = get_be64(buf + 8);
	r->offset = get_be64(buf + 16);
	r->len = get_be32(buf + 24);
	return 0;
}

void nbd_req_build(uint8_t *buf, const struct nbd_req *r)
{
	put_be32(buf, NBD_REQUEST_MAGIC);
	put_be16(buf + 4, r->flags);
	put_be16(buf + 6, r->type);
	put_be64(buf + 8, r->cookie);
	put_be64(buf + 16, r->offset);
	put_be32(buf + 24, r->len);
}

#define ALL_CMD_FLAGS	(NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_DF | \
			 NBD_CMD_FLAG_REQ_ONE | NBD_CMD_FLAG_FAST_ZERO)

uint32_t nbd_req_validate(const struct nbd_req *r, const struct nbd_limits *lim)
{
	uint16_t tf = lim->tflags;
	bool ro = tf & NBD_FLAG_READ_ONLY;
	bool aligned = true;

	/* the command, and whether we advertised it */
	switch (r->type) {
	case NBD_CMD_READ:
	case NBD_CMD_DISC:
		break;
	case NBD_CMD_WRITE:
		break;
	case NBD_CMD_FLUSH:
		if (!(tf & NBD_FLAG_SEND_FLUSH))
			return NBD_EINVAL;
		break;
	case NBD_CMD_TRIM:
		if (!(tf & NBD_FLAG_SEND_TRIM) && !ro)
			return NBD_EINVAL;
		break;
	case NBD_CMD_WRITE_ZEROES:
		if (!(tf & NBD_FLAG_SEND_WRITE_ZEROES) && !ro)
			return NBD_EINVAL;
		break;
	case NBD_CMD_CACHE:
		if (!(tf & NBD_FLAG_SEND_CACHE))
			return NBD_EINVAL;
		aligned = false;
		break;
	case NBD_CMD_BLOCK_STATUS:
		if (!lim->structured || !lim->meta)
			return NBD_EINVAL;
		aligned = false;
		break;
	default:
		return NBD_EINVAL;
	}

	/* flags: known, advertised, and meaningful for this command */
	if (r->flags & ~ALL_CMD_FLAGS)
		return NBD_EINVAL;
	if ((r->flags & NBD_CMD_FLAG_FUA) && !(tf & NBD_FLAG_SEND_FUA))
		return NBD_EINVAL;
	if ((r->flags & NBD_CMD_FLAG_NO_HOLE) && r->type != NBD_CMD_WRITE_ZEROES)
		return NBD_EINVAL;
	if ((r->flags & NBD_CMD_FLAG_DF) &&
	    (r->type != NBD_CMD_READ || !(tf & NBD_FLAG_SEND_DF) || !lim->structured))
		return NBD_EINVAL;
	if ((r->flags & NBD_CMD_FLAG_REQ_ONE) && r->type != NBD_CMD_BLOCK_STATUS)
		return NBD_EINVAL;
	if ((r->flags & NBD_CMD_FLAG_FAST_ZERO) &&
	    (r->type != NBD_CMD_WRITE_ZEROES || !(tf & NBD_FLAG_SEND_FAST_ZERO)))
		return NBD_EINVAL;

	if (r->type == NBD_CMD_DISC)
		return NBD_SUCCESS;
	if (r->type == NBD_CMD_FLUSH)
		return r->offset || r->len ? NBD_EINVAL : NBD_SUCCESS;

	if (ro && (r->type == NBD_CMD_WRITE || r->type == NBD_CMD_TRIM ||
		   r->type == NBD_CMD_WRITE_ZEROES))
		return NBD_EPERM;

	/* offset and length */
	if (r->len == 0)
		return NBD_EINVAL;
	if ((r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) && r->len > lim->max_payload)
		return NBD_EINVAL;
	if (r->offset > lim->size || r->len > lim->size - r->offset)
		return r->type == NBD_CMD_WRITE || r->type == NBD_CMD_WRITE_ZEROES ?
		       NBD_ENOSPC : NBD_EINVAL;
	if (aligned && lim->min_block > 1 &&
	    ((r->offset | r->len) & (lim->min_block - 1)))
		return NBD_EINVAL;
	return NBD_SUCCESS;
}

size_t nbd_simple_reply(uint8_t *buf, uint64_t cookie, uint32_t nbd_err)
{
	put_be32(buf, NBD_SIMPLE_REPLY_MAGIC);
	put_be32(buf + 4, nbd_err);
	put_be64(buf + 8, cookie);
	return NBD_SIMPLE_REPLY_LEN;
}

size_t nbd_sreply_hdr(uint8_t *buf, uint16_t flags, uint16_t type, uint64_t cookie,
		      uint32_t len)
{
	put_be32(buf, NBD_STRUCTURED_REPLY_MAGIC);
	put_be16(buf + 4, flags);
	put_be16(buf + 6, type);
	put_be64(buf + 8, cookie);
	put_be32(buf + 16, len);
	return NBD_SREPLY_HDR_LEN;
}

size_t nbd_sreply_offset_data(uint8_t *buf, uint64_t cookie, uint64_t offset,
			      uint32_t data_len, bool done)
{
	nbd_sreply_hdr(buf, done ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_OFFSET_DATA,
		       cookie, 8 + data_len);
	put_be64(buf + NBD_SREPLY_HDR_LEN, offset);
	return NBD_OFFSET_DATA_HDR_LEN;
}

size_t nbd_sreply_error(uint8_t *buf, uint64_t cookie, uint32_t nbd_err)
{
	nbd_sreply_hdr(buf, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, cookie, 6);
	put_be32(buf + NBD_SREPLY_HDR_LEN, nbd_err);
	put_be16(buf + NBD_SREPLY_HDR_LEN + 4, 0);
	return NBD_ERROR_CHUNK_LEN;
}

size_t nbd_sreply_block_status(uint8_t *buf, size_t cap, uint64_t cookie, uint32_t ctx_id,
			       const struct nbd_extent *ext, unsigned n)
{
	size_t need = NBD_SREPLY_HDR_LEN + 4 + 8 * (size_t)n;

	if (need > cap)
		return need;
	nbd_sreply_hdr(buf, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, cookie,
		       (uint32_t)(need - NBD_SREPLY_HDR_LEN));
	put_be32(buf + NBD_SREPLY_HDR_LEN, ctx_id);
	for (unsigned i = 0; i < n; i++) {
		put_be32(buf + NBD_SREPLY_HDR_LEN + 4 + 8 * i, ext[i].len);
		put_be32(buf + NBD_SREPLY_HDR_LEN + 8 + 8 * i, ext[i].flags);
	}
	return need;
}

uint32_t nbd_errno(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		return NBD_SUCCESS;
	case EPERM:
	case EROFS:
	case EACCES:
		return NBD_EPERM;
	case ENOMEM:
		return NBD_ENOMEM;
	case EINVAL:
	case ERANGE:
		return NBD_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBD_ENOSPC;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
	case EOPNOTSUPP:
#endif
		return NBD_ENOTSUP;
	case ESHUTDOWN:
	case ECANCELED:
		return NBD_ESHUTDOWN;
	default:
		return NBD_EIO;
	}
}

const char *nbd_opt_name(uint32_t opt)
{
	static const char *const names[] = {
		[NBD_OPT_EXPORT_NAME] = "EXPORT_NAME", [NBD_OPT_ABORT] = "ABORT",
		[NBD_OPT_LIST] = "LIST", [NBD_OPT_PEEK_EXPORT] = "PEEK_EXPORT",
		[NBD_OPT_STARTTLS] = "STARTTLS", [NBD_OPT_INFO] = "INFO",
		[NBD_OPT_GO] = "GO", [NBD_OPT_STRUCTURED_REPLY] = "STRUCTURED_REPLY",
		[NBD_OPT_LIST_META_CONTEXT] = "LIST_META_CONTEXT",
		[NBD_OPT_SET_META_CONTEXT] = "SET_META_CONTEXT",
		[NBD_OPT_EXTENDED_HEADERS] = "EXTENDED_HEADERS",
	};

	return opt < ARRAY_SIZE(names) && names[opt] ? names[opt] : "unknown";
}

const char *nbd_cmd_name(uint16_t type)
{
	static const char *const names[] = {
		"READ", "WRITE", "DISC", "FLUSH", "TRIM", "CACHE", "WRITE_ZEROES",
		"BLOCK_STATUS",
	};

	return type < ARRAY_SIZE(names) ? names[type] : "unknown";
}
