/* SPDX-License-Identifier: MIT */
/*
 * Login and text keys (RFC 7143 section 6 and 13): key=value\0 pairs, and
 * the target's side of their negotiation.
 *
 * The target here only answers: it never opens a negotiation of its own,
 * except for the declarations iscsi_nego_declare() adds (our
 * MaxRecvDataSegmentLength, TargetPortalGroupTag). Each key has one rule:
 *
 *   list      HeaderDigest, DataDigest, AuthMethod: first of the
 *             initiator's choices we support
 *   min       MaxBurstLength, FirstBurstLength, MaxOutstandingR2T,
 *             MaxConnections, DefaultTime2Retain, ErrorRecoveryLevel
 *   max       DefaultTime2Wait
 *   or        InitialR2T, DataPDUInOrder, DataSequenceInOrder
 *   and       ImmediateData
 *   declare   MaxRecvDataSegmentLength, InitiatorName, InitiatorAlias,
 *             TargetName, SessionType (no answer, except SessionType
 *             and TargetName are checked)
 *
 * Unknown keys (X- extensions included) are answered NotUnderstood; keys
 * that mean nothing to a discovery session Irrelevant; a value out of range
 * or of the wrong shape Reject. A key sent twice in one login fails the
 * login (initiator error), as does a security key outside the security
 * stage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gnutls/crypto.h>
#include "sand/iscsi.h"

#define KEY_NAME_MAX	63
#define VALUE_MAX	255

void iscsi_params_default(struct iscsi_params *p)
{
	memset(p, 0, sizeof(*p));
	p->max_xmit_dsl = 8192;
	p->max_recv_dsl = 8192;
	p->max_burst = 262144;
	p->first_burst = 65536;
	p->initial_r2t = true;
	p->immediate_data = true;
	p->max_outstanding_r2t = 1;
	p->max_connections = 1;
	p->data_pdu_in_order = true;
	p->data_seq_in_order = true;
	p->default_time2wait = 2;
	p->default_time2retain = 20;
	p->error_recovery_level = 0;
}

void iscsi_target_limits_default(struct iscsi_target_limits *l)
{
	memset(l, 0, sizeof(*l));
	l->max_recv_dsl = 256 * 1024;
	l->max_burst = ISCSI_MAX_DSL;
	l->first_burst = ISCSI_MAX_DSL;
	l->initial_r2t = false;
	l->immediate_data = true;
	l->max_outstanding_r2t = 1;
	l->max_connections = 8;	/* MC/S (daemon/iscsi/session.c) */
	l->default_time2wait = 2;
	l->default_time2retain = 20;
	l->error_recovery_level = 0;
	l->allow_digests = true;
}

void iscsi_nego_init(struct iscsi_nego *n, const struct iscsi_target_limits *lim)
{
	memset(n, 0, sizeof(*n));
	iscsi_params_default(&n->p);
	n->lim = *lim;
	n->p.max_recv_dsl = lim->max_recv_dsl;
	n->leading = true;
}

bool iscsi_nego_auth_done(const struct iscsi_nego *n)
{
	return !n->cred.required || n->chap == ISCSI_CHAP_DONE;
}

void iscsi_nego_wipe(struct iscsi_nego *n)
{
	gnutls_memset(&n->cred, 0, sizeof(n->cred));
	gnutls_memset(n->chap_c, 0, sizeof(n->chap_c));
}

/* ---- key=value buffers ---- */

void iscsi_kv_add(struct iscsi_kvbuf *kv, const char *key, const char *value)
{
	size_t kl = strlen(key), vl = strlen(value);

	if (kv->len + kl + vl + 2 > sizeof(kv->buf)) {
		kv->overflow = true;
		return;
	}
	memcpy(kv->buf + kv->len, key, kl);
	kv->buf[kv->len + kl] = '=';
	memcpy(kv->buf + kv->len + kl + 1, value, vl);
	kv->buf[kv->len + kl + 1 + vl] = '\0';
	kv->len += (uint32_t)(kl + vl + 2);
}

void iscsi_kv_addu(struct iscsi_kvbuf *kv, const char *key, uint32_t value)
{
	char v[16];

	snprintf(v, sizeof(v), "%u", value);
	iscsi_kv_add(kv, key, v);
}

int iscsi_kv_foreach(const char *data, uint32_t len,
		     int (*fn)(const char *key, const char *value, void *arg), void *arg)
{
	uint32_t pos = 0;

	while (pos < len) {
		const char *pair = data + pos;
		const char *nul = memchr(pair, '\0', len - pos);
		char key[KEY_NAME_MAX + 1];
		const char *eq;
		size_t kl;
		int rc;

		if (!nul)
			return -EINVAL;	/* the last pair is not terminated */
		if (nul == pair) {	/* padding or a stray NUL: skip */
			pos++;
			continue;
		}
		eq = memchr(pair, '=', (size_t)(nul - pair));
		if (!eq)
			return -EINVAL;
		kl = (size_t)(eq - pair);
		if (!kl || kl > KEY_NAME_MAX)
			return -EINVAL;
		memcpy(key, pair, kl);
		key[kl] = '\0';
		rc = fn(key, eq + 1, arg);
		if (rc < 0)
			return rc;
		pos += (uint32_t)(nul - pair) + 1;
	}
	return 0;
}

/* ---- values ---- */

static int parse_num(const char *v, uint32_t lo, uint32_t hi, uint32_t *out)
{
	unsigned long long n;
	char *end;

	if (!*v || *v == '-' || *v == '+' || *v == ' ')
		return -EINVAL;
	errno = 0;
	if (v[0] == '0' && (v[1] == 'x' || v[1] == 'X'))
		n = strtoull(v + 2, &end, 16);
	else
		n = strtoull(v, &end, 10);
	if (errno || *end || end == v || n < lo || n > hi)
		return -EINVAL;
	*out = (uint32_t)n;
	return 0;
}

static int parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "Yes"))
		*out = true;
	else if (!strcmp(v, "No"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

/* First item of the comma-separated list v that accept() takes. */
static const char *pick_list(const char *v, const char *const *ours, unsigned nours,
			     char *buf, size_t len)
{
	while (*v) {
		const char *c = strchr(v, ',');
		size_t n = c ? (size_t)(c - v) : strlen(v);

		for (unsigned i = 0; i < nours; i++) {
			if (strlen(ours[i]) == n && !strncmp(v, ours[i], n)) {
				snprintf(buf, len, "%s", ours[i]);
				return buf;
			}
		}
		if (!c)
			break;
		v = c + 1;
	}
	return NULL;
}

/* ---- the key table ---- */

enum key_rule { R_DIGEST, R_MIN, R_MAX, R_OR, R_AND, R_MRDSL, R_INAME, R_IALIAS,
		R_TNAME, R_STYPE, R_AUTH, R_TARGET_ONLY, R_CHAP };

#define K_SECURITY	0x1	/* security stage only */
#define K_NODISC	0x2	/* irrelevant in a discovery session */

struct key_def {
	const char	*name;
	enum key_rule	rule;
	unsigned	flags;
	uint32_t	lo, hi;
	size_t		param;		/* offset in struct iscsi_params */
	size_t		limit;		/* offset in struct iscsi_target_limits */
};

#define P(f)	offsetof(struct iscsi_params, f)
#define L(f)	offsetof(struct iscsi_target_limits, f)

static const struct key_def keys[] = {
	{ "HeaderDigest", R_DIGEST, 0, 0, 0, P(header_digest), 0 },
	{ "DataDigest", R_DIGEST, 0, 0, 0, P(data_digest), 0 },
	{ "MaxRecvDataSegmentLength", R_MRDSL, 0, 512, ISCSI_MAX_DSL, P(max_xmit_dsl), 0 },
	{ "MaxBurstLength", R_MIN, K_NODISC, 512, ISCSI_MAX_DSL, P(max_burst), L(max_burst) },
	{ "FirstBurstLength", R_MIN, K_NODISC, 512, ISCSI_MAX_DSL, P(first_burst), L(first_burst) },
	{ "InitialR2T", R_OR, K_NODISC, 0, 0, P(initial_r2t), L(initial_r2t) },
	{ "ImmediateData", R_AND, K_NODISC, 0, 0, P(immediate_data), L(immediate_data) },
	{ "MaxOutstandingR2T", R_MIN, K_NODISC, 1, 65535, P(max_outstanding_r2t),
	  L(max_outstanding_r2t) },
	{ "MaxConnections", R_MIN, K_NODISC, 1, 65535, P(max_connections), L(max_connections) },
	{ "DataPDUInOrder", R_OR, K_NODISC, 0, 0, P(data_pdu_in_order), 0 },
	{ "DataSequenceInOrder", R_OR, K_NODISC, 0, 0, P(data_seq_in_order), 0 },
	{ "DefaultTime2Wait", R_MAX, 0, 0, 3600, P(default_time2wait), L(default_time2wait) },
	{ "DefaultTime2Retain", R_MIN, 0, 0, 3600, P(default_time2retain),
	  L(default_time2retain) },
	{ "ErrorRecoveryLevel", R_MIN, 0, 0, 2, P(error_recovery_level),
	  L(error_recovery_level) },
	{ "InitiatorName", R_INAME, 0, 0, 0, 0, 0 },
	{ "InitiatorAlias", R_IALIAS, 0, 0, 0, 0, 0 },
	{ "TargetName", R_TNAME, 0, 0, 0, 0, 0 },
	{ "SessionType", R_STYPE, 0, 0, 0, 0, 0 },
	{ "AuthMethod", R_AUTH, K_SECURITY, 0, 0, 0, 0 },
	{ "TargetAlias", R_TARGET_ONLY, 0, 0, 0, 0, 0 },
	{ "TargetAddress", R_TARGET_ONLY, 0, 0, 0, 0, 0 },
	{ "TargetPortalGroupTag", R_TARGET_ONLY, 0, 0, 0, 0, 0 },
	{ "CHAP_A", R_CHAP, K_SECURITY, 0, 0, 0, 0 },
	{ "CHAP_I", R_CHAP, K_SECURITY, 0, 0, 0, 0 },
	{ "CHAP_C", R_CHAP, K_SECURITY, 0, 0, 0, 0 },
	{ "CHAP_N", R_CHAP, K_SECURITY, 0, 0, 0, 0 },
	{ "CHAP_R", R_CHAP, K_SECURITY, 0, 0, 0, 0 },
};
static_assert(ARRAY_SIZE(keys) <= 32, "seen is a 32-bit mask");

struct nego_walk {
	struct iscsi_nego	*n;
	struct iscsi_kvbuf	*out;
	int			stage;
	int			status;		/* login status to fail with */
	bool			types_only;	/* first pass: SessionType */
};

#define PU32(p, off)	((uint32_t *)(void *)((char *)(p) + (off)))
#define PBOOL(p, off)	((bool *)(void *)((char *)(p) + (off)))

static int nego_key(const char *key, const char *v, void *arg)
{
	struct nego_walk *w = arg;
	struct iscsi_nego *n = w->n;
	const struct key_def *k = NULL;
	char buf[32];
	uint32_t num;
	bool b;
	unsigned i;

	for (i = 0; i < ARRAY_SIZE(keys); i++) {
		if (!strcmp(keys[i].name, key)) {
			k = &keys[i];
			break;
		}
	}
	if (w->types_only) {
		/* what the lookup needs, before any key is answered */
		if (k && k->rule == R_STYPE) {
			if (!strcmp(v, "Normal"))
				n->p.session_type = ISCSI_SESSION_NORMAL;
			else if (!strcmp(v, "Discovery"))
				n->p.session_type = ISCSI_SESSION_DISCOVERY;
		} else if (k && k->rule == R_INAME && strlen(v) < ISCSI_NAME_MAX) {
			snprintf(n->p.initiator_name, sizeof(n->p.initiator_name), "%s", v);
		} else if (k && k->rule == R_TNAME && strlen(v) < ISCSI_NAME_MAX) {
			snprintf(n->p.target_name, sizeof(n->p.target_name), "%s", v);
		}
		return 0;
	}
	if (!k) {
		/* CHAP_* without AuthMethod=CHAP, X- extensions, typos */
		iscsi_kv_add(w->out, key, "NotUnderstood");
		return 0;
	}
	/* an answer to an offer we never made */
	if (!strcmp(v, "NotUnderstood") || !strcmp(v, "Irrelevant") || !strcmp(v, "Reject"))
		return 0;
	if (n->seen & (1u << i)) {
		w->status = ISCSI_LOGIN_INIT_ERR;
		return -EPROTO;
	}
	n->seen |= 1u << i;
	if ((k->flags & K_SECURITY) && w->stage != ISCSI_STAGE_SECURITY) {
		w->status = ISCSI_LOGIN_INIT_ERR;
		return -EPROTO;
	}
	if (k->rule == R_CHAP) {
		/* taken after the walk: CHAP_N, CHAP_R, CHAP_I and CHAP_C come
		 * together in any order */
		const char **slot = key[5] == 'A' ? &n->k_a : key[5] == 'I' ? &n->k_i :
				    key[5] == 'C' ? &n->k_c : key[5] == 'N' ? &n->k_n : &n->k_r;

		*slot = v;
		return 0;
	}
	if (strlen(v) > VALUE_MAX) {
		iscsi_kv_add(w->out, key, "Reject");
		return 0;
	}
	if ((k->flags & K_NODISC) && n->p.session_type == ISCSI_SESSION_DISCOVERY) {
		iscsi_kv_add(w->out, key, "Irrelevant");
		return 0;
	}

	switch (k->rule) {
	case R_DIGEST: {
		static const char *const with_crc[] = { "CRC32C", "None" };
		static const char *const none_only[] = { "None" };
		const char *pick = n->lim.allow_digests ?
			pick_list(v, with_crc, 2, buf, sizeof(buf)) :
			pick_list(v, none_only, 1, buf, sizeof(buf));

		if (!pick) {
			iscsi_kv_add(w->out, key, "Reject");
			break;
		}
		*PBOOL(&n->p, k->param) = !strcmp(pick, "CRC32C");
		iscsi_kv_add(w->out, key, pick);
		break;
	}
	case R_MIN:
	case R_MAX:
		if (parse_num(v, k->lo, k->hi, &num)) {
			iscsi_kv_add(w->out, key, "Reject");
			break;
		}
		if (k->rule == R_MIN)
			num = MIN(num, *PU32(&n->lim, k->limit));
		else
			num = MAX(num, *PU32(&n->lim, k->limit));
		*PU32(&n->p, k->param) = num;
		iscsi_kv_addu(w->out, key, num);
		break;
	case R_OR:
	case R_AND:
		if (parse_bool(v, &b)) {
			iscsi_kv_add(w->out, key, "Reject");
			break;
		}
		if (k->limit) {
			bool ours = *PBOOL(&n->lim, k->limit);

			b = k->rule == R_OR ? (b || ours) : (b && ours);
		} else {
			/* DataPDUInOrder, DataSequenceInOrder: we want Yes */
			b = k->rule == R_OR ? true : b;
		}
		*PBOOL(&n->p, k->param) = b;
		iscsi_kv_add(w->out, key, b ? "Yes" : "No");
		break;
	case R_MRDSL:
		if (parse_num(v, k->lo, k->hi, &num)) {
			iscsi_kv_add(w->out, key, "Reject");
			break;
		}
		n->p.max_xmit_dsl = num;	/* declarative: no answer */
		break;
	case R_INAME:
		if (!*v || strlen(v) >= ISCSI_NAME_MAX) {
			w->status = ISCSI_LOGIN_INIT_ERR;
			return -EPROTO;
		}
		snprintf(n->p.initiator_name, sizeof(n->p.initiator_name), "%s", v);
		break;
	case R_IALIAS:
		snprintf(n->p.initiator_alias, sizeof(n->p.initiator_alias), "%s", v);
		break;
	case R_TNAME:
		if (!*v || strlen(v) >= ISCSI_NAME_MAX) {
			w->status = ISCSI_LOGIN_NOT_FOUND;
			return -EPROTO;
		}
		snprintf(n->p.target_name, sizeof(n->p.target_name), "%s", v);
		break;
	case R_STYPE:
		if (strcmp(v, "Normal") && strcmp(v, "Discovery")) {
			w->status = ISCSI_LOGIN_SESSION_TYPE;
			return -EPROTO;
		}
		break;	/* taken in the first pass */
	case R_AUTH: {
		/* CHAP when the target requires it, None otherwise */
		static const char *const none[] = { "None" }, *const chap[] = { "CHAP" };
		const char *pick = pick_list(v, n->cred.required ? chap : none, 1, buf,
					     sizeof(buf));

		if (!pick) {
			iscsi_kv_add(w->out, key, "Reject");
			w->status = ISCSI_LOGIN_AUTH_FAILED;
			return -EPERM;
		}
		if (n->cred.required)
			n->chap = ISCSI_CHAP_WAIT_A;
		iscsi_kv_add(w->out, key, pick);
		break;
	}
	case R_TARGET_ONLY:
		iscsi_kv_add(w->out, key, "Irrelevant");
		break;
	case R_CHAP:
		break;	/* above */
	}
	return 0;
}

/* ---- CHAP, the target's side ---- */

static bool ct_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
	uint8_t d = 0;

	for (size_t i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return !d;
}

/* CHAP_A: the first of the initiator's algorithms we have. */
static int chap_pick(const char *v)
{
	while (*v) {
		char *end;
		unsigned long a = strtoul(v, &end, 10);

		if (end != v && (*end == ',' || !*end) && iscsi_chap_digest_len((int)a) &&
		    (a == ISCSI_CHAP_MD5 || a == ISCSI_CHAP_SHA256 || a == ISCSI_CHAP_SHA3_256))
			return (int)a;
		v = strchr(v, ',');
		if (!v)
			break;
		v++;
	}
	return 0;
}

static int chap_check(struct iscsi_nego *n, struct iscsi_kvbuf *out)
{
	uint8_t r[ISCSI_CHAP_MAX_BIN], want[ISCSI_CHAP_DIGEST_MAX];
	const struct iscsi_chap_cred *cr = &n->cred;
	int rlen, dl;

	if (n->k_a || !n->k_n || !n->k_r)
		return ISCSI_LOGIN_AUTH_FAILED;
	if (strcmp(n->k_n, cr->user))
		return ISCSI_LOGIN_AUTH_FAILED;
	rlen = iscsi_chap_decode(n->k_r, r, sizeof(r));
	dl = iscsi_chap_response(n->chap_alg, n->chap_id, cr->secret, strlen(cr->secret),
				 n->chap_c, sizeof(n->chap_c), want);
	if (dl <= 0 || rlen != dl || !ct_equal(r, want, (size_t)dl))
		return ISCSI_LOGIN_AUTH_FAILED;
	n->chap = ISCSI_CHAP_DONE;
	if (n->k_i || n->k_c) {
		/* mutual: the initiator authenticates us */
		uint8_t c[ISCSI_CHAP_MAX_BIN], resp[ISCSI_CHAP_DIGEST_MAX];
		char hex[2 * ISCSI_CHAP_DIGEST_MAX + 3];
		int clen;
		uint32_t id;

		if (!n->k_i || !n->k_c || !cr->mutual || parse_num(n->k_i, 0, 255, &id))
			return ISCSI_LOGIN_AUTH_FAILED;
		clen = iscsi_chap_decode(n->k_c, c, sizeof(c));
		if (clen < ISCSI_CHAP_MIN_CHALLENGE)
			return ISCSI_LOGIN_AUTH_FAILED;
		/* a reflection attack: our own challenge sent back to us */
		if (clen == (int)sizeof(n->chap_c) && !memcmp(c, n->chap_c, sizeof(n->chap_c)))
			return ISCSI_LOGIN_AUTH_FAILED;
		dl = iscsi_chap_response(n->chap_alg, (uint8_t)id, cr->msecret,
					 strlen(cr->msecret), c, (size_t)clen, resp);
		if (dl <= 0)
			return ISCSI_LOGIN_AUTH_FAILED;
		iscsi_chap_encode(resp, (size_t)dl, hex);
		iscsi_kv_add(out, "CHAP_N", cr->muser);
		iscsi_kv_add(out, "CHAP_R", hex);
		n->mutual_done = true;
	}
	return 0;
}

static int chap_step(struct iscsi_nego *n, struct iscsi_kvbuf *out)
{
	bool any = n->k_a || n->k_n || n->k_r || n->k_i || n->k_c;

	switch (n->chap) {
	case ISCSI_CHAP_OFF:
		if (any)	/* CHAP keys without AuthMethod=CHAP */
			return ISCSI_LOGIN_AUTH_FAILED;
		return 0;
	case ISCSI_CHAP_WAIT_A: {
		char hex[2 * ISCSI_CHAP_CHALLENGE + 3];

		if (n->k_n || n->k_r || n->k_i || n->k_c)
			return ISCSI_LOGIN_AUTH_FAILED;
		if (!n->k_a)
			return 0;	/* AuthMethod just chosen */
		n->chap_alg = chap_pick(n->k_a);
		if (!n->chap_alg) {
			iscsi_kv_add(out, "CHAP_A", "Reject");
			return ISCSI_LOGIN_AUTH_FAILED;
		}
		if (gnutls_rnd(GNUTLS_RND_NONCE, &n->chap_id, 1) ||
		    gnutls_rnd(GNUTLS_RND_RANDOM, n->chap_c, sizeof(n->chap_c)))
			return ISCSI_LOGIN_TARGET_ERR;
		iscsi_kv_addu(out, "CHAP_A", (uint32_t)n->chap_alg);
		iscsi_kv_addu(out, "CHAP_I", n->chap_id);
		iscsi_chap_encode(n->chap_c, sizeof(n->chap_c), hex);
		iscsi_kv_add(out, "CHAP_C", hex);
		n->chap = ISCSI_CHAP_WAIT_R;
		return 0;
	}
	case ISCSI_CHAP_WAIT_R: {
		int rc = chap_check(n, out);

		/* the challenge is good for one answer, right or wrong */
		gnutls_memset(n->chap_c, 0, sizeof(n->chap_c));
		if (rc)
			n->chap = ISCSI_CHAP_OFF;
		return rc;
	}
	case ISCSI_CHAP_DONE:
		return any ? ISCSI_LOGIN_AUTH_FAILED : 0;
	}
	return ISCSI_LOGIN_AUTH_FAILED;
}

int iscsi_nego_login(struct iscsi_nego *n, int stage, const char *data, uint32_t len,
		     struct iscsi_kvbuf *out)
{
	struct nego_walk w = { .n = n, .out = out, .stage = stage, .types_only = true };
	int rc;

	n->k_a = n->k_n = n->k_r = n->k_i = n->k_c = NULL;
	if (n->p.session_type == ISCSI_SESSION_NONE) {
		rc = iscsi_kv_foreach(data, len, nego_key, &w);
		if (rc)
			return ISCSI_LOGIN_INIT_ERR;
	}
	if (!n->looked_up) {
		n->looked_up = true;
		if (n->lookup && (rc = n->lookup(n, n->lookup_arg)))
			return rc;
	}
	w.types_only = false;
	rc = iscsi_kv_foreach(data, len, nego_key, &w);
	if (!rc && stage == ISCSI_STAGE_SECURITY)
		rc = w.status = chap_step(n, out);
	n->k_a = n->k_n = n->k_r = n->k_i = n->k_c = NULL;
	if (rc)
		return w.status ? w.status : ISCSI_LOGIN_INIT_ERR;
	if (out->overflow)
		return ISCSI_LOGIN_TARGET_ERR;
	if (n->p.first_burst > n->p.max_burst)
		n->p.first_burst = n->p.max_burst;
	return 0;
}

void iscsi_nego_declare(struct iscsi_nego *n, struct iscsi_kvbuf *out)
{
	iscsi_kv_addu(out, "MaxRecvDataSegmentLength", n->lim.max_recv_dsl);
}
