/* SPDX-License-Identifier: MIT */
/*
 * iSCSI (RFC 7143): the pure PDU codec and login/text key negotiation
 * (proto/iscsi/, no sockets, fuzzable), and the target's C API
 * (daemon/iscsi/).
 *
 * A PDU on the wire is a 48-byte Basic Header Segment, AHS (TotalAHSLength
 * words of 4 bytes), an optional 4-byte header digest, the data segment
 * padded to 4 bytes, and an optional 4-byte data digest. Digests are CRC32C
 * (ISA-L crc32_iscsi) stored least significant byte first, as every
 * implementation does.
 */
#ifndef SAND_ISCSI_H
#define SAND_ISCSI_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "sand/common.h"

struct blkdev;

/* ---- PDU layout ---- */
#define ISCSI_BHS_LEN		48
#define ISCSI_DIGEST_LEN	4
#define ISCSI_MAX_AHS_LEN	(255 * 4)
#define ISCSI_MAX_DSL		((1u << 24) - 1)	/* DataSegmentLength is 24 bits */
#define ISCSI_RSVD_TAG		0xffffffffu

/* Opcodes: initiator -> target */
enum {
	ISCSI_OP_NOP_OUT	= 0x00,
	ISCSI_OP_SCSI_CMD	= 0x01,
	ISCSI_OP_TASK_MGMT_REQ	= 0x02,
	ISCSI_OP_LOGIN_REQ	= 0x03,
	ISCSI_OP_TEXT_REQ	= 0x04,
	ISCSI_OP_DATA_OUT	= 0x05,
	ISCSI_OP_LOGOUT_REQ	= 0x06,
	ISCSI_OP_SNACK_REQ	= 0x10,
};
/* Opcodes: target -> initiator */
enum {
	ISCSI_OP_NOP_IN		= 0x20,
	ISCSI_OP_SCSI_RSP	= 0x21,
	ISCSI_OP_TASK_MGMT_RSP	= 0x22,
	ISCSI_OP_LOGIN_RSP	= 0x23,
	ISCSI_OP_TEXT_RSP	= 0x24,
	ISCSI_OP_DATA_IN	= 0x25,
	ISCSI_OP_LOGOUT_RSP	= 0x26,
	ISCSI_OP_R2T		= 0x31,
	ISCSI_OP_ASYNC_MSG	= 0x32,
	ISCSI_OP_REJECT		= 0x3f,
};

/* Byte 0 */
#define ISCSI_BHS_IMMEDIATE	0x40
#define ISCSI_BHS_OPCODE_MASK	0x3f
/* Byte 1 flags */
#define ISCSI_FLAG_FINAL	0x80
#define ISCSI_FLAG_CONTINUE	0x40	/* login/text */
#define ISCSI_FLAG_READ		0x40	/* SCSI command */
#define ISCSI_FLAG_WRITE	0x20	/* SCSI command */
#define ISCSI_FLAG_ACK		0x40	/* Data-In */
#define ISCSI_FLAG_OVERFLOW	0x04	/* Data-In, SCSI Response: bidi 0x10/0x08 unused */
#define ISCSI_FLAG_UNDERFLOW	0x02
#define ISCSI_FLAG_STATUS	0x01	/* Data-In */
#define ISCSI_LOGIN_TRANSIT	0x80
#define ISCSI_LOGIN_CSG(f)	(((f) >> 2) & 3)
#define ISCSI_LOGIN_NSG(f)	((f) & 3)

enum { ISCSI_STAGE_SECURITY = 0, ISCSI_STAGE_OPERATIONAL = 1, ISCSI_STAGE_FFP = 3 };

/* Reject reasons */
enum {
	ISCSI_REJECT_DATA_DIGEST	= 0x02,
	ISCSI_REJECT_SNACK		= 0x03,
	ISCSI_REJECT_PROTOCOL		= 0x04,
	ISCSI_REJECT_CMD_NOT_SUPPORTED	= 0x05,
	ISCSI_REJECT_IMM_CMD		= 0x06,
	ISCSI_REJECT_TASK_IN_PROGRESS	= 0x07,
	ISCSI_REJECT_INVALID_DATA_ACK	= 0x08,
	ISCSI_REJECT_INVALID_FIELD	= 0x09,
	ISCSI_REJECT_OUT_OF_RESOURCES	= 0x0a,
	ISCSI_REJECT_WAITING_LOGOUT	= 0x0c,
};

/* Login status (class << 8 | detail) */
#define ISCSI_LOGIN_OK			0x0000
#define ISCSI_LOGIN_INIT_ERR		0x0200
#define ISCSI_LOGIN_AUTH_FAILED		0x0201
#define ISCSI_LOGIN_AUTHZ_FAILED	0x0202	/* not allowed to see this target */
#define ISCSI_LOGIN_NOT_FOUND		0x0203
#define ISCSI_LOGIN_MISSING_PARAM	0x0207
#define ISCSI_LOGIN_SESSION_TYPE	0x0209
#define ISCSI_LOGIN_INVALID_REQ		0x020b
#define ISCSI_LOGIN_TARGET_ERR		0x0300
#define ISCSI_LOGIN_NO_RESOURCES	0x0302

/*
 * The 48-byte BHS as bytes: fields are read and written through the
 * accessors below (get_be32 & co), never through bitfields or a packed
 * struct, so the layout is the RFC's and nothing else.
 */
struct iscsi_bhs {
	uint8_t	b[ISCSI_BHS_LEN];
};
static_assert(sizeof(struct iscsi_bhs) == ISCSI_BHS_LEN, "BHS is 48 bytes");

/* Field offsets common to every PDU */
#define BHS_OPCODE		0
#define BHS_FLAGS		1
#define BHS_TOTAL_AHS_LEN	4
#define BHS_DSL			5	/* 3 bytes */
#define BHS_LUN			8	/* 8 bytes */
#define BHS_ITT			16
#define BHS_TTT			20	/* also EDTL in a SCSI command */
#define BHS_EDTL		20
#define BHS_CMDSN		24	/* StatSN in responses */
#define BHS_STATSN		24
#define BHS_EXPSTATSN		28	/* ExpCmdSN in responses */
#define BHS_EXPCMDSN		28
#define BHS_MAXCMDSN		32
#define BHS_CDB			32	/* 16 bytes, SCSI command */
#define BHS_DATASN		36	/* Data-In/Out, R2TSN */
#define BHS_BUFOFF		40	/* Data-In/Out, R2T */
#define BHS_DESIRED_LEN		44	/* R2T */
#define BHS_RESIDUAL		44	/* SCSI response, Data-In */

static inline uint8_t bhs_opcode(const struct iscsi_bhs *h) { return h->b[0] & ISCSI_BHS_OPCODE_MASK; }
static inline bool bhs_immediate(const struct iscsi_bhs *h) { return h->b[0] & ISCSI_BHS_IMMEDIATE; }
static inline uint8_t bhs_flags(const struct iscsi_bhs *h) { return h->b[BHS_FLAGS]; }
static inline uint32_t bhs_ahs_len(const struct iscsi_bhs *h) { return h->b[BHS_TOTAL_AHS_LEN] * 4u; }
static inline uint32_t bhs_dsl(const struct iscsi_bhs *h)
{
	return (uint32_t)h->b[5] << 16 | (uint32_t)h->b[6] << 8 | h->b[7];
}
static inline void bhs_set_dsl(struct iscsi_bhs *h, uint32_t len)
{
	h->b[5] = (uint8_t)(len >> 16);
	h->b[6] = (uint8_t)(len >> 8);
	h->b[7] = (uint8_t)len;
}
static inline uint32_t bhs_get32(const struct iscsi_bhs *h, unsigned off) { return get_be32(h->b + off); }
static inline void bhs_put32(struct iscsi_bhs *h, unsigned off, uint32_t v) { put_be32(h->b + off, v); }
static inline uint64_t bhs_lun(const struct iscsi_bhs *h) { return get_be64(h->b + BHS_LUN); }
static inline uint32_t bhs_itt(const struct iscsi_bhs *h) { return get_be32(h->b + BHS_ITT); }

static inline uint32_t iscsi_pad4(uint32_t n) { return (n + 3) & ~3u; }

/* Start a response BHS: zeroed, opcode and flags set. */
void iscsi_bhs_init(struct iscsi_bhs *h, uint8_t opcode, uint8_t flags);

/*
 * After the 48 BHS bytes have arrived: validate what can be validated from
 * the header alone and say how many bytes follow. max_dsl is the largest
 * data segment this side accepts (our MaxRecvDataSegmentLength, or the
 * login limit). Returns 0 or -EMSGSIZE (data segment larger than max_dsl).
 * Opcodes are not judged here: the connection answers unknown ones with a
 * Reject.
 */
struct iscsi_pdu_len {
	uint32_t ahs;		/* bytes of AHS */
	uint32_t hdigest;	/* 0 or 4 */
	uint32_t data;		/* DataSegmentLength */
	uint32_t data_padded;	/* rounded up to 4 */
	uint32_t ddigest;	/* 0 or 4 (only when data > 0) */
	uint32_t total;		/* everything after the BHS */
};
int iscsi_pdu_lengths(const struct iscsi_bhs *h, bool hdigest, bool ddigest,
		      uint32_t max_dsl, struct iscsi_pdu_len *out);

/*
 * A whole PDU in one buffer (the fuzzer's and the tests' entry point):
 * checks lengths, padding and digests. On success *pl is filled and
 * 0 returned; -EAGAIN when buf is shorter than the PDU (need more),
 * -EMSGSIZE, -EPROTO (non-zero padding), or -EBADMSG (a digest did not
 * match).
 */
int iscsi_pdu_parse(const void *buf, size_t len, bool hdigest, bool ddigest,
		    uint32_t max_dsl, struct iscsi_pdu_len *pl);

/*
 * Serialise BHS (+ ahs) + data into out (capacity cap), with padding and
 * digests. Returns the byte count, or -ENOSPC / -EMSGSIZE.
 */
int iscsi_pdu_build(const struct iscsi_bhs *h, const void *ahs, uint32_t ahs_len,
		    const void *data, uint32_t data_len, bool hdigest, bool ddigest,
		    void *out, size_t cap);

/* CRC32C as iSCSI uses it (initial ~0, final xor ~0). */
uint32_t iscsi_crc32c(const void *buf, size_t len);
uint32_t iscsi_crc32c_update(uint32_t crc, const void *buf, size_t len);	/* crc from _begin */
static inline uint32_t iscsi_crc32c_begin(void) { return 0xffffffffu; }
static inline uint32_t iscsi_crc32c_end(uint32_t crc) { return crc ^ 0xffffffffu; }

/* ---- login / text keys ---- */

#define ISCSI_NAME_MAX		224	/* RFC 7143: 223 bytes + NUL */
#define ISCSI_KV_MAX		8192	/* a login/text data segment we accept */

enum iscsi_session_type { ISCSI_SESSION_NONE = 0, ISCSI_SESSION_NORMAL, ISCSI_SESSION_DISCOVERY };

/* Operational parameters of a session/connection, as negotiated. */
struct iscsi_params {
	bool		header_digest;
	bool		data_digest;
	uint32_t	max_xmit_dsl;	/* the initiator's MaxRecvDataSegmentLength: what we send */
	uint32_t	max_recv_dsl;	/* ours: what we accept */
	uint32_t	max_burst;
	uint32_t	first_burst;
	bool		initial_r2t;
	bool		immediate_data;
	uint32_t	max_outstanding_r2t;
	uint32_t	max_connections;
	bool		data_pdu_in_order;
	bool		data_seq_in_order;
	uint32_t	default_time2wait;
	uint32_t	default_time2retain;
	uint32_t	error_recovery_level;
	enum iscsi_session_type session_type;
	char		initiator_name[ISCSI_NAME_MAX];
	char		initiator_alias[256];
	char		target_name[ISCSI_NAME_MAX];
};

/* What the target offers; initiators negotiate down from these. */
struct iscsi_target_limits {
	uint32_t	max_recv_dsl;	/* declared to the initiator */
	uint32_t	max_burst;
	uint32_t	first_burst;
	bool		initial_r2t;
	bool		immediate_data;
	uint32_t	max_outstanding_r2t;
	uint32_t	max_connections;
	uint32_t	default_time2wait;
	uint32_t	default_time2retain;
	uint32_t	error_recovery_level;
	bool		allow_digests;	/* CRC32C accepted */
};
void iscsi_target_limits_default(struct iscsi_target_limits *l);
/* RFC 7143 defaults, for keys nobody negotiates. */
void iscsi_params_default(struct iscsi_params *p);

/* Output buffer of key=value\0 pairs. */
struct iscsi_kvbuf {
	char	 buf[ISCSI_KV_MAX];
	uint32_t len;
	bool	 overflow;
};
void iscsi_kv_add(struct iscsi_kvbuf *kv, const char *key, const char *value);
void iscsi_kv_addu(struct iscsi_kvbuf *kv, const char *key, uint32_t value);

/*
 * Walk key=value\0 pairs: calls fn for each. Returns 0, or -EINVAL when a
 * pair has no '=', a key is empty or longer than 63 bytes, or fn's own
 * negative return.
 */
int iscsi_kv_foreach(const char *data, uint32_t len,
		     int (*fn)(const char *key, const char *value, void *arg), void *arg);

/* ---- CHAP (RFC 1994, RFC 7143 12.1.3) ---- */

#define ISCSI_CHAP_NAME_MAX	256	/* user names and secrets: 1 to 255 bytes */
#define ISCSI_CHAP_CHALLENGE	32	/* bytes of random challenge we send */
#define ISCSI_CHAP_MIN_CHALLENGE 16	/* shortest initiator challenge we answer */
#define ISCSI_CHAP_MAX_BIN	1024	/* longest CHAP_C/CHAP_R we decode */
#define ISCSI_CHAP_DIGEST_MAX	32

/* CHAP_A values (IANA "iSCSI CHAP algorithms"; RFC 1994 for 5) */
enum { ISCSI_CHAP_MD5 = 5, ISCSI_CHAP_SHA256 = 7, ISCSI_CHAP_SHA3_256 = 8 };

/* Credentials a target (or discovery) requires; secrets are never logged. */
struct iscsi_chap_cred {
	bool	required;		/* CHAP with user/secret */
	bool	mutual;			/* the target can answer a challenge */
	char	user[ISCSI_CHAP_NAME_MAX];
	char	secret[ISCSI_CHAP_NAME_MAX];
	char	muser[ISCSI_CHAP_NAME_MAX];	/* the target's name to the initiator */
	char	msecret[ISCSI_CHAP_NAME_MAX];
};

/* Digest length of a CHAP_A algorithm, 0 if unsupported. */
unsigned iscsi_chap_digest_len(int alg);
/* RFC 1994 response H(id || secret || challenge) into out (digest_len
 * bytes). Returns the length or -EINVAL. */
int iscsi_chap_response(int alg, uint8_t id, const void *secret, size_t secret_len,
			const void *challenge, size_t clen, uint8_t *out);
/* Decode a CHAP binary value: "0x" hex or "0b" base64 (RFC 7143 6.1).
 * Returns its length or -EINVAL (bad shape, longer than cap). */
int iscsi_chap_decode(const char *v, uint8_t *out, size_t cap);
/* "0x" + lower-case hex into out (2 * len + 3 bytes). */
void iscsi_chap_encode(const uint8_t *bin, size_t len, char *out);

enum iscsi_chap_state {
	ISCSI_CHAP_OFF = 0,	/* AuthMethod not chosen yet, or None */
	ISCSI_CHAP_WAIT_A,	/* AuthMethod=CHAP chosen: CHAP_A next */
	ISCSI_CHAP_WAIT_R,	/* challenge sent: CHAP_N/CHAP_R next */
	ISCSI_CHAP_DONE,	/* the initiator is authenticated */
};

/* Negotiation state of one login (one connection). */
struct iscsi_nego {
	struct iscsi_params		p;
	struct iscsi_target_limits	lim;
	uint32_t	seen;		/* ISCSI_K_* keys answered already */
	bool		leading;	/* first connection of the session */
	/*
	 * Called once, on the first login PDU, after SessionType,
	 * InitiatorName and TargetName have been read and before any key is
	 * answered: fills n->cred (what authentication this login needs) and
	 * returns 0 or a login status (target not found, not authorised ...).
	 */
	int		(*lookup)(struct iscsi_nego *n, void *arg);
	void		*lookup_arg;
	bool		looked_up;
	struct iscsi_chap_cred cred;
	/* CHAP exchange */
	enum iscsi_chap_state chap;
	int		chap_alg;
	uint8_t		chap_id;
	uint8_t		chap_c[ISCSI_CHAP_CHALLENGE];
	/* keys of the current PDU, taken after the walk */
	const char	*k_a, *k_n, *k_r, *k_i, *k_c;
	bool		mutual_done;	/* we answered the initiator's challenge */
};
void iscsi_nego_init(struct iscsi_nego *n, const struct iscsi_target_limits *lim);
/* Whether the security stage may be left (no CHAP, or CHAP done). */
bool iscsi_nego_auth_done(const struct iscsi_nego *n);
/* Wipe the credentials and CHAP state (secrets do not linger in memory). */
void iscsi_nego_wipe(struct iscsi_nego *n);

/*
 * Answer the initiator's keys of one login or text PDU in stage `stage`
 * (ISCSI_STAGE_SECURITY or _OPERATIONAL), writing responses to out.
 * Updates n->p. Unknown keys get NotUnderstood, keys irrelevant to the
 * session type Irrelevant, bad values Reject. Returns 0, or a login status
 * (ISCSI_LOGIN_*) > 0 when the login must fail (a key sent twice, a
 * security key in the wrong stage, AuthMethod without None ...).
 */
int iscsi_nego_login(struct iscsi_nego *n, int stage, const char *data, uint32_t len,
		     struct iscsi_kvbuf *out);
/* Declarations the target adds to its last operational response. */
void iscsi_nego_declare(struct iscsi_nego *n, struct iscsi_kvbuf *out);

/* ---- the target (daemon/iscsi) ----
 * Reactors must be running (reactors_start) before a portal is added.
 * Every call is thread-safe and returns 0 or -errno, except where noted.
 */
/* Listen on "IPv4:PORT" or "[IPv6]:PORT" in target portal group 1 (or
 * tpg, 1-65535). Returns the bound port (useful with port 0) or -errno
 * (-EEXIST: a portal with this address string exists). */
int iscsi_portal_add(const char *addr);
int iscsi_portal_add_tpg(const char *addr, unsigned tpg);
/* Stop listening (connections made through it stay). -ENOENT. */
int iscsi_portal_remove(const char *addr);
/* Stop listening and ask the sessions made through the portal to log out
 * (closed if they do not within 2 s). Returns the portal's group or
 * -ENOENT. */
int iscsi_portal_disable(const char *addr);
int iscsi_target_add(const char *iqn);
/* Forget a target: -ENOENT, or -EBUSY while it has LUNs or sessions. */
int iscsi_target_remove(const char *iqn);
/* Forget LUN lun of target iqn; *bd is the device it exported (to release).
 * -ENOENT, -EBUSY while the target has sessions (close them first with
 * iscsi_target_close_sessions). */
int iscsi_lun_remove(const char *iqn, unsigned lun, struct blkdev **bd);
/* Close every connection to target iqn and wait (up to 10 s) for them to
 * end. -ENOENT, -ETIMEDOUT. */
int iscsi_target_close_sessions(const char *iqn);
/* Initiators admitted to a target: with none every initiator may log in.
 * -ENOENT, -EEXIST / -ENOENT for the initiator, -EINVAL (not an iSCSI
 * name), -ENOSPC (ISCSI_MAX_ACL). */
#define ISCSI_MAX_ACL	256
int iscsi_acl_add(const char *iqn, const char *initiator);
int iscsi_acl_remove(const char *iqn, const char *initiator);
/* CHAP a target's logins (iqn NULL: discovery sessions) require; cred NULL
 * or !cred->required: none. -ENOENT, -EINVAL (empty or too long names,
 * mutual secret equal to the initiator's). */
int iscsi_auth_set(const char *iqn, const struct iscsi_chap_cred *cred);
/* Export bd as LUN lun of target iqn (the caller keeps ownership of bd and
 * must not close it before iscsi_shutdown). */
int iscsi_lun_add(const char *iqn, unsigned lun, struct blkdev *bd, bool readonly);
/* The same, keeping the LU's persistent reservations (APTPL) in pr_file
 * and restoring them from it first (-EINVAL: it does not parse). */
int iscsi_lun_add_pr(const char *iqn, unsigned lun, struct blkdev *bd, bool readonly,
		     const char *pr_file);
/* Close every portal and connection, wait for I/O in flight, forget every
 * target. */
void iscsi_shutdown(void);
/*
 * Liveness, for new connections: a login must end within login_ms; in full
 * feature phase a connection that has been silent for nop_interval_ms gets
 * a NOP-In ping, and after nop_misses pings without a word back it is
 * closed (so a dead path cannot deliver stale writes later): within
 * nop_interval_ms x (nop_misses + 1) of its last word. TCP's user timeout
 * is set to match, and TCP keepalive probes after the same silence.
 * nop_interval_ms 0: no pings. Defaults: 3000 ms, 3 misses (12 s), login
 * 15000 ms.
 */
void iscsi_set_timeouts(unsigned nop_interval_ms, unsigned nop_misses, unsigned login_ms);

/* ---- the daemon's control plane (daemon/iscsi/iscsi_rpc.c) ----
 * iscsi.portal_add, iscsi.target_create, iscsi.export, iscsi.list; the
 * "iscsi" section of the state file. iscsi_restore runs after the disks'
 * restore step and registers the shutdown hook. */
void iscsi_rpc_init(void);
void iscsi_restore(void);

#endif
