/* SPDX-License-Identifier: MIT */
/*
 * The NBD wire codec: fixed newstyle handshake and transmission phase, as
 * in the NBD project's doc/proto.md. Pure code: no sockets, no allocation
 * except in struct nbd_buf (handshake replies), so it can be unit tested and
 * fuzzed on its own.
 *
 * Everything a client sends is checked here once: magic numbers, option
 * payload layouts, command types, flags, offsets, lengths and alignment.
 * The server above only acts on what passed.
 *
 * Parsers return 0, or -EPROTO when the input breaks the protocol in a way
 * that leaves no choice but to drop the connection (bad magic, unknown
 * client flags), or -EINVAL when the input is malformed but the session can
 * go on (an option payload whose inner lengths do not add up: the server
 * answers NBD_REP_ERR_INVALID).
 */
#ifndef SAND_NBD_PROTO_H
#define SAND_NBD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- magic numbers ---- */
#define NBD_MAGIC			UINT64_C(0x4e42444d41474943)	/* "NBDMAGIC" */
#define NBD_IHAVEOPT			UINT64_C(0x49484156454F5054)	/* "IHAVEOPT" */
#define NBD_REP_MAGIC			UINT64_C(0x0003e889045565a9)
#define NBD_REQUEST_MAGIC		0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC		0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC	0x668e33efu

/* ---- handshake flags (server) and client flags ---- */
#define NBD_FLAG_FIXED_NEWSTYLE		(1u << 0)
#define NBD_FLAG_NO_ZEROES		(1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE	(1u << 0)
#define NBD_FLAG_C_NO_ZEROES		(1u << 1)

/* ---- transmission flags ---- */
#define NBD_FLAG_HAS_FLAGS		(1u << 0)
#define NBD_FLAG_READ_ONLY		(1u << 1)
#define NBD_FLAG_SEND_FLUSH		(1u << 2)
#define NBD_FLAG_SEND_FUA		(1u << 3)
#define NBD_FLAG_ROTATIONAL		(1u << 4)
#define NBD_FLAG_SEND_TRIM		(1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES	(1u << 6)
#define NBD_FLAG_SEND_DF		(1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN		(1u << 8)
#define NBD_FLAG_SEND_RESIZE		(1u << 9)
#define NBD_FLAG_SEND_CACHE		(1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO		(1u << 11)

/* ---- options ---- */
#define NBD_OPT_EXPORT_NAME		1
#define NBD_OPT_ABORT			2
#define NBD_OPT_LIST			3
#define NBD_OPT_PEEK_EXPORT		4
#define NBD_OPT_STARTTLS		5
#define NBD_OPT_INFO			6
#define NBD_OPT_GO			7
#define NBD_OPT_STRUCTURED_REPLY	8
#define NBD_OPT_LIST_META_CONTEXT	9
#define NBD_OPT_SET_META_CONTEXT	10
#define NBD_OPT_EXTENDED_HEADERS	11

/* ---- option replies ---- */
#define NBD_REP_ERR(v)			(0x80000000u | (v))
#define NBD_REP_ACK			1u
#define NBD_REP_SERVER			2u
#define NBD_REP_INFO			3u
#define NBD_REP_META_CONTEXT		4u
#define NBD_REP_ERR_UNSUP		NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY		NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID		NBD_REP_ERR(3)
#define NBD_REP_ERR_PLATFORM		NBD_REP_ERR(4)
#define NBD_REP_ERR_TLS_REQD		NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN		NBD_REP_ERR(6)
#define NBD_REP_ERR_SHUTDOWN		NBD_REP_ERR(7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD	NBD_REP_ERR(8)
#define NBD_REP_ERR_TOO_BIG		NBD_REP_ERR(9)

#define NBD_INFO_EXPORT			0
#define NBD_INFO_NAME			1
#define NBD_INFO_DESCRIPTION		2
#define NBD_INFO_BLOCK_SIZE		3

/* ---- commands ---- */
#define NBD_CMD_READ			0
#define NBD_CMD_WRITE			1
#define NBD_CMD_DISC			2
#define NBD_CMD_FLUSH			3
#define NBD_CMD_TRIM			4
#define NBD_CMD_CACHE			5
#define NBD_CMD_WRITE_ZEROES		6
#define NBD_CMD_BLOCK_STATUS		7
#define NBD_CMD_MAX			8

#define NBD_CMD_FLAG_FUA		(1u << 0)
#define NBD_CMD_FLAG_NO_HOLE		(1u << 1)
#define NBD_CMD_FLAG_DF			(1u << 2)
#define NBD_CMD_FLAG_REQ_ONE		(1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO		(1u << 4)

/* ---- structured replies ---- */
#define NBD_REPLY_FLAG_DONE		(1u << 0)
#define NBD_REPLY_TYPE_NONE		0
#define NBD_REPLY_TYPE_OFFSET_DATA	1
#define NBD_REPLY_TYPE_OFFSET_HOLE	2
#define NBD_REPLY_TYPE_BLOCK_STATUS	5
#define NBD_REPLY_TYPE_ERROR		((1u << 15) | 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET	((1u << 15) | 2)

/* base:allocation */
#define NBD_STATE_HOLE			(1u << 0)
#define NBD_STATE_ZERO			(1u << 1)

/* ---- errors on the wire ---- */
#define NBD_SUCCESS			0
#define NBD_EPERM			1
#define NBD_EIO				5
#define NBD_ENOMEM			12
#define NBD_EINVAL			22
#define NBD_ENOSPC			28
#define NBD_EOVERFLOW			75
#define NBD_ENOTSUP			95
#define NBD_ESHUTDOWN			108

/* ---- sizes ---- */
#define NBD_GREETING_LEN		18	/* NBDMAGIC, IHAVEOPT, 16-bit flags */
#define NBD_CFLAGS_LEN			4
#define NBD_OPT_HDR_LEN			16
#define NBD_OPT_REPLY_HDR_LEN		20
#define NBD_REQ_LEN			28
#define NBD_SIMPLE_REPLY_LEN		16
#define NBD_SREPLY_HDR_LEN		20
#define NBD_OFFSET_DATA_HDR_LEN		(NBD_SREPLY_HDR_LEN + 8)
#define NBD_ERROR_CHUNK_LEN		(NBD_SREPLY_HDR_LEN + 6)
#define NBD_EXPORT_NAME_REPLY_LEN	(8 + 2 + 124)
#define NBD_MAX_STRING			4096	/* names, descriptions, queries */
#define NBD_OPT_MAX_LEN			(64u * 1024)	/* longer options: ERR_TOO_BIG */

/* The one metadata context we serve, and its id on this server. */
#define NBD_META_BASE_ALLOCATION	"base:allocation"
#define NBD_META_ID_BASE_ALLOCATION	1u
/* sand:changed:SNAP: where the export differs from its snapshot SNAP
 * (flag NBD_STATE_CHANGED), so a backup copies only what changed. */
#define NBD_META_SAND_CHANGED		"sand:changed:"
#define NBD_META_ID_SAND_CHANGED	2u
#define NBD_STATE_CHANGED		(1u << 0)

/* ---- handshake ---- */

/* The server's greeting. Returns NBD_GREETING_LEN. */
size_t nbd_build_greeting(uint8_t *buf);

/* Client flags: -EPROTO unless fixed newstyle is set and nothing unknown. */
int nbd_parse_client_flags(const uint8_t *buf, uint32_t *cflags);

struct nbd_opt_hdr {
	uint32_t	opt;
	uint32_t	len;
};
/* -EPROTO on bad magic. */
int nbd_parse_opt_hdr(const uint8_t *buf, struct nbd_opt_hdr *h);

/* NBD_OPT_INFO / NBD_OPT_GO payload. */
struct nbd_info_req {
	const char	*name;		/* not NUL-terminated */
	uint32_t	name_len;
	uint16_t	nreqs;
	const uint8_t	*reqs;		/* nreqs big-endian 16-bit info types */
};
int nbd_parse_info_req(const uint8_t *data, uint32_t len, struct nbd_info_req *r);
static inline uint16_t nbd_info_req_type(const struct nbd_info_req *r, unsigned i)
{
	return (uint16_t)(r->reqs[2 * i] << 8 | r->reqs[2 * i + 1]);
}

/* NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT payload. */
struct nbd_meta_req {
	const char	*name;
	uint32_t	name_len;
	uint32_t	nqueries;
	const uint8_t	*queries;	/* validated: nqueries (len, string) pairs */
	uint32_t	queries_len;
};
int nbd_parse_meta_req(const uint8_t *data, uint32_t len, struct nbd_meta_req *r);
/* Iterate the queries: *pos starts at 0; returns false at the end. */
bool nbd_meta_next(const struct nbd_meta_req *r, uint32_t *pos,
		   const char **q, uint32_t *qlen);
/*
 * Does query q select base:allocation? For LIST, "base:" (the whole base
 * namespace) also matches; SET wants the exact name. Queries for other
 * namespaces select nothing (not an error).
 */
bool nbd_meta_query_matches(const char *q, uint32_t qlen, bool list);

/* A growable byte buffer for handshake replies. */
struct nbd_buf {
	uint8_t	*p;
	size_t	len, cap;
	bool	oom;		/* an append failed: the content is incomplete */
};
void nbd_buf_free(struct nbd_buf *b);
void nbd_buf_append(struct nbd_buf *b, const void *data, size_t len);

/* Option replies, appended to b. */
void nbd_rep(struct nbd_buf *b, uint32_t opt, uint32_t type,
	     const void *data, uint32_t len);
void nbd_rep_ack(struct nbd_buf *b, uint32_t opt);
void nbd_rep_err(struct nbd_buf *b, uint32_t opt, uint32_t err, const char *msg);
void nbd_rep_server(struct nbd_buf *b, uint32_t opt, const char *name, const char *desc);
void nbd_rep_info_export(struct nbd_buf *b, uint32_t opt, uint64_t size, uint16_t tflags);
void nbd_rep_info_string(struct nbd_buf *b, uint32_t opt, uint16_t info, const char *s);
void nbd_rep_info_block_size(struct nbd_buf *b, uint32_t opt, uint32_t min,
			     uint32_t pref, uint32_t max);
void nbd_rep_meta_context(struct nbd_buf *b, uint32_t opt, uint32_t id, const char *name);
/* The reply to NBD_OPT_EXPORT_NAME: size, flags, and 124 zeros unless no_zeroes. */
void nbd_export_name_reply(struct nbd_buf *b, uint64_t size, uint16_t tflags, bool no_zeroes);

/* ---- transmission ---- */

struct nbd_req {
	uint16_t	flags;
	uint16_t	type;
	uint64_t	cookie;
	uint64_t	offset;
	uint32_t	len;
};
/* -EPROTO on bad magic. */
int nbd_req_parse(const uint8_t *buf, struct nbd_req *r);
void nbd_req_build(uint8_t *buf, const struct nbd_req *r);	/* for tests and clients */

/* What the request is checked against: the export and the session. */
struct nbd_limits {
	uint64_t	size;		/* export size in bytes */
	uint32_t	min_block;	/* offsets and lengths are multiples (a power of 2) */
	uint32_t	max_payload;	/* READ/WRITE length limit */
	uint16_t	tflags;		/* transmission flags we advertised */
	bool		structured;	/* structured replies negotiated */
	bool		meta;		/* a metadata context was selected */
};

/*
 * Validate a request once at the edge. Returns NBD_SUCCESS or the NBD error
 * to reply with: EINVAL for unknown commands or flags, flags not
 * advertised, misalignment, zero or oversized lengths and reads/trims/...
 * past the end; ENOSPC for writes and write-zeroes past the end; EPERM for
 * writes to a read-only export. A WRITE that fails still carries its
 * payload, which the caller must consume.
 */
uint32_t nbd_req_validate(const struct nbd_req *r, const struct nbd_limits *lim);

/* Simple reply header. Returns NBD_SIMPLE_REPLY_LEN. */
size_t nbd_simple_reply(uint8_t *buf, uint64_t cookie, uint32_t nbd_err);
/* Structured reply chunk header. Returns NBD_SREPLY_HDR_LEN. */
size_t nbd_sreply_hdr(uint8_t *buf, uint16_t flags, uint16_t type, uint64_t cookie,
		      uint32_t len);
/* OFFSET_DATA chunk header (the data follows). Returns NBD_OFFSET_DATA_HDR_LEN. */
size_t nbd_sreply_offset_data(uint8_t *buf, uint64_t cookie, uint64_t offset,
			      uint32_t data_len, bool done);
/* ERROR chunk without a message, flagged DONE. Returns NBD_ERROR_CHUNK_LEN. */
size_t nbd_sreply_error(uint8_t *buf, uint64_t cookie, uint32_t nbd_err);

struct nbd_extent {
	uint32_t	len;
	uint32_t	flags;		/* NBD_STATE_* */
};
/* BLOCK_STATUS chunk, flagged DONE: the length needed, and it is written
 * only when it fits in cap. */
size_t nbd_sreply_block_status(uint8_t *buf, size_t cap, uint64_t cookie, uint32_t ctx_id,
			       const struct nbd_extent *ext, unsigned n);

/* The one place -errno becomes an NBD error. */
uint32_t nbd_errno(int err);

const char *nbd_opt_name(uint32_t opt);
const char *nbd_cmd_name(uint16_t type);

#endif
