/* SPDX-License-Identifier: MIT */
/*
 * iSCSI connections: one per TCP socket. A session may have several
 * (MaxConnections, RFC 7143 MC/S); they all live on the session's reactor
 * (a login adding a connection moves there first), which also keeps what
 * they share (struct iscsi_session, session.c: the command window, the
 * I_T nexus's unit attentions). A command's Data-Out, R2Ts, Data-In and
 * response stay on the connection that carried it (allegiance).
 *
 * rx: read the 48-byte BHS, ask the codec how much follows (AHS, header
 *     digest, padded data, data digest), read that into rx_buf, check the
 *     digests, handle the PDU; repeat until EAGAIN (edge-triggered).
 * tx: responses are queued as tx_pdu records (BHS, digest, a pointer to the
 *     data, padding + digest) and written with sendmsg, many PDUs per call,
 *     until EAGAIN; then EV_WRITE is switched on until the queue drains.
 *
 * A SCSI command becomes a task. Writes gather their data first: immediate
 * data, unsolicited Data-Out up to FirstBurstLength, then one R2T at a time
 * for up to MaxBurstLength each; the command runs (proto/scsi, I/O through
 * this connection's block channel for the LU) once the buffer is full.
 * Reads answer with Data-In PDUs of the initiator's MaxRecvDataSegmentLength,
 * the status in the last one when there is no sense data.
 *
 * Errors: a PDU we cannot use (unknown opcode, a field out of place) gets a
 * Reject; a PDU we cannot even frame (oversized data segment, digest error,
 * broken data sequence) closes this connection only.
 *
 * Closing: the socket is closed and queued responses dropped at once;
 * tasks still executing keep the connection's memory alive until their
 * I/O ends, then the connection is freed from a deferred task.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include "sand/log.h"
#include "sand/alua.h"
#include "sand/reactor.h"
#include "daemon/iscsi/iscsi_int.h"
#include "daemon/iscsi/bufcache.h"
#include "proto/scsi/sanitize.h"

#define TX_IOV_MAX	64
#define RX_STAGE	(64u * 1024)	/* socket reads of small PDUs go through this */

enum conn_state { CONN_LOGIN, CONN_FFP, CONN_LOGGED_OUT };
enum rx_state { RX_BHS, RX_REST };

struct iscsi_conn;

/* A task management request waiting for the tasks it aborts to end. */
struct tmf_wait {
	uint32_t	itt;
	unsigned	pending;
	uint64_t	conn;		/* id of the connection that asked */
};

struct iscsi_task {
	struct list_head link;
	struct iscsi_conn *conn;
	uint32_t	itt;
	uint32_t	edtl;
	uint64_t	lun;
	bool		read, write;
	bool		executing;
	bool		responded;	/* its response is queued */
	bool		aborted;	/* by tmf: no response when it ends */
	bool		held;		/* its CmdSN is ahead of the window: not started */
	bool		want_r2t;	/* (held) its unsolicited data has ended */
	struct tmf_wait	*tmf;
	struct scsi_pr_wait *pr_wait;	/* a PREEMPT AND ABORT waits for it */
	struct iscsi_reset *reset;	/* a LU or target reset waits for it (tmf.c) */
	bool		tas;		/* (aborted) by another nexus's reset: TASK ABORTED */
	uint8_t		*buf;
	uint32_t	bufcap;		/* of buf, from the connection's bufcache */
	uint32_t	received;	/* data-out bytes so far (in order) */
	uint32_t	unsol_end;	/* unsolicited data ends here */
	uint32_t	ttt;		/* of the R2T outstanding */
	uint32_t	burst_end;	/* end of the solicited burst */
	uint32_t	r2tsn;
	uint32_t	exp_datasn;	/* of the next Data-Out in this sequence */
	uint32_t	datasn;
	struct scsi_cmd	cmd;
};

struct tx_pdu {
	struct list_head link;
	struct iscsi_bhs bhs;
	uint8_t		hdig[ISCSI_DIGEST_LEN];
	uint32_t	hd_len;
	const uint8_t	*data;
	uint32_t	data_len;
	uint8_t		tail[3 + ISCSI_DIGEST_LEN];	/* padding + data digest */
	uint32_t	tail_len;
	void		*own;		/* freed with the PDU */
	struct iscsi_task *task_done;	/* freed once this PDU is sent */
	size_t		sent, total;
	/* Data-In of a mapped READ (tx_map_fail): its data is data_len
	 * bytes of map_bd at map_off, mapped around each sendmsg; once the
	 * read has failed, map_bd is NULL and data zeros in map_task's buf */
	struct blkdev	*map_bd;
	uint64_t	map_off;
	struct iscsi_task *map_task;
};

struct iscsi_conn {
	struct list_head link;		/* all connections */
	uint64_t	id;		/* unique, for messages from other reactors */
	struct ev_loop	*loop;
	int		fd;
	struct ev_io	io;
	bool		want_write;
	bool		closing;
	bool		close_after_tx;
	struct ev_task	free_task;
	char		local_addr[80];	/* for SendTargets */
	char		peer[80];
	uint16_t	tpg;		/* of the portal it came through */
	uint64_t	portal;		/* that portal's id */
	/* session reinstatement: the new login's last answer waits until the
	 * old session's connections (and their tasks) are gone */
	unsigned	reinst_wait;	/* old connections still to end */
	uint64_t	heir;		/* (old connection) the login waiting for it */
	struct iscsi_bhs held_h;
	uint8_t		held_flags;
	struct iscsi_kvbuf *held_kv;
	bool		logout_asked;	/* Async Message sent: closed at the next tick */
	bool		cold_reset;	/* a TARGET COLD RESET's response is queued */
	bool		lingering;	/* it is sent: shut down, read until EOF */
	struct iscsi_timeouts tmo;
	struct ev_timer	timer;		/* login deadline, then NOP-In pings */
	uint64_t	last_rx_ns;
	unsigned	pings;		/* NOP-Ins sent since the initiator last spoke */

	/* rx */
	enum rx_state	rx_state;
	struct iscsi_bhs rx_bhs;
	struct iscsi_pdu_len rx_len;
	uint32_t	rx_got;
	uint8_t		*rx_buf;
	uint32_t	rx_cap;
	uint8_t		*rx_stage;	/* RX_STAGE bytes read ahead */
	uint32_t	rx_spos, rx_slen;
	bool		rx_drained;	/* a recv came back short: the socket is
					 * read again at its next readiness */

	/* tx */
	struct list_head txq;
	struct ev_task	tx_task;	/* responses queued this turn go out together */
	struct iscsi_bufcache bufs;

	/* login and session */
	enum conn_state	state;
	struct iscsi_nego nego;
	struct iscsi_params p;
	bool		hdigest, ddigest;
	bool		login_started, tpgt_sent, declared;
	int		stage;
	uint8_t		isid[6];
	uint16_t	tsih, cid;
	uint16_t	login_tsih;	/* non-zero: the login adds a connection to it */
	bool		migrating;	/* on its way to its session's reactor */
	bool		conn_only;	/* closed alone (logout reason 1, connection
					 * reinstatement): its session lives on */
	struct iscsi_session *sess;	/* from full feature phase on */
	struct list_head sess_link;	/* sess->conns */
	struct iscsi_target *target;
	uint32_t	statsn, exp_cmdsn;
	uint32_t	ttt_next;

	/* tasks */
	struct list_head tasks;
	unsigned	nexec;		/* tasks inside scsi_exec's I/O */
	struct blkchan	*chans[ISCSI_MAX_LUNS];
};

/* A request ahead of the session's ExpCmdSN, held until the CmdSNs before
 * it have come (on any connection of the session). */
struct held_pdu {
	struct list_head link;		/* sess->held */
	uint32_t	sn;
	struct iscsi_conn *conn;	/* it came on */
	struct iscsi_task *task;	/* a SCSI command (on conn->tasks), or: */
	bool		skip;		/* an aborted one: only its CmdSN counts */
	struct iscsi_bhs bhs;		/* another request, with its data */
	uint32_t	dlen;
	uint8_t		data[];
};

static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;
static struct list_head conns = LIST_HEAD_INIT(conns);
static unsigned nconns;
static uint64_t conn_ids;

unsigned iscsi_conn_count(void)
{
	return __atomic_load_n(&nconns, __ATOMIC_ACQUIRE);
}

static void conn_close(struct iscsi_conn *c);
static void tx_flush(struct iscsi_conn *c);
static void conn_linger(struct iscsi_conn *c);
static void conn_timer(struct ev_timer *t);
static unsigned reinstate(struct iscsi_conn *c);
static void login_finish(struct iscsi_conn *c, const struct iscsi_bhs *h, int status,
			 uint8_t rflags, struct iscsi_kvbuf *kv);
static void conn_migrate(struct iscsi_conn *c, struct ev_loop *to);
static int join_check(struct iscsi_conn *c);
static int conn_attach(struct iscsi_conn *c);
static void task_start(struct iscsi_task *t);
static void handle_pdu(struct iscsi_conn *c);
static void conn_rx(struct iscsi_conn *c);
static void conn_io(struct ev_io *io, uint32_t revents);

/* the command window: the session's once in full feature phase */
static uint32_t *exp_sn(struct iscsi_conn *c) { return c->sess ? &c->sess->exp_cmdsn : &c->exp_cmdsn; }
static uint32_t max_cmdsn(struct iscsi_conn *c) { return *exp_sn(c) + ISCSI_CMD_WINDOW - 1; }

/* ------------------------------------------------------------------ tx */

static struct tx_pdu *pdu_new(uint8_t opcode, uint8_t flags)
{
	struct tx_pdu *pdu = calloc(1, sizeof(*pdu));

	if (pdu)
		iscsi_bhs_init(&pdu->bhs, opcode, flags);
	return pdu;
}

static void pdu_free(struct tx_pdu *pdu)
{
	free(pdu->own);
	free(pdu);
}

/* ExpCmdSN and MaxCmdSN, at the same place in every target PDU */
static void put_window(struct iscsi_conn *c, struct tx_pdu *pdu)
{
	bhs_put32(&pdu->bhs, BHS_EXPCMDSN, *exp_sn(c));
	bhs_put32(&pdu->bhs, BHS_MAXCMDSN, max_cmdsn(c));
}

/* A task ahead of the window leaves it: only its CmdSN counts, later. */
static void task_unhold(struct iscsi_task *t)
{
	struct list_head *l;

	if (!t->held)
		return;
	t->held = false;
	list_for_each(l, &t->conn->sess->held) {
		struct held_pdu *hp = list_entry(l, struct held_pdu, link);

		if (hp->task == t) {
			hp->task = NULL;
			hp->skip = true;
		}
	}
}

static void task_free(struct iscsi_task *t)
{
	task_unhold(t);		/* aborted before its turn: its CmdSN still counts */
	if (t->pr_wait)
		scsi_pr_wait_put(t->pr_wait);
	list_del(&t->link);
	iscsi_buf_put(&t->conn->bufs, t->buf, t->bufcap);
	free(t);
}

static void pdu_seal(struct iscsi_conn *c, struct tx_pdu *pdu);

/* Queue a PDU: lengths, digests; false if dropped (closing). */
static bool tx_prep(struct iscsi_conn *c, struct tx_pdu *pdu)
{
	if (c->closing) {
		if (pdu->task_done)
			task_free(pdu->task_done);
		pdu_free(pdu);
		return false;
	}
	pdu_seal(c, pdu);
	list_add_tail(&pdu->link, &c->txq);
	return true;
}

/* Lengths and digests, from the BHS and data as they are now. */
static void pdu_seal(struct iscsi_conn *c, struct tx_pdu *pdu)
{
	uint32_t pad = iscsi_pad4(pdu->data_len) - pdu->data_len;

	bhs_set_dsl(&pdu->bhs, pdu->data_len);
	if (c->hdigest) {
		put_le32(pdu->hdig, iscsi_crc32c(&pdu->bhs, ISCSI_BHS_LEN));
		pdu->hd_len = ISCSI_DIGEST_LEN;
	}
	memset(pdu->tail, 0, pad);
	pdu->tail_len = pad;
	if (c->ddigest && pdu->data_len) {
		uint32_t crc = iscsi_crc32c_update(iscsi_crc32c_begin(), pdu->data, pdu->data_len);

		crc = iscsi_crc32c_update(crc, pdu->tail, pad);
		put_le32(pdu->tail + pad, iscsi_crc32c_end(crc));
		pdu->tail_len += ISCSI_DIGEST_LEN;
	}
	pdu->total = ISCSI_BHS_LEN + pdu->hd_len + pdu->data_len + pdu->tail_len;
}

/* Queue a PDU, and off it goes (with any queued before it). */
static void tx_queue(struct iscsi_conn *c, struct tx_pdu *pdu)
{
	if (tx_prep(c, pdu))
		tx_flush(c);
}

/* Queued before the loop sleeps, never after conn_close (which defers
 * the connection's freeing behind it). */
static void tx_task_fn(struct ev_task *et)
{
	struct iscsi_conn *c = container_of(et, struct iscsi_conn, tx_task);

	if (!c->closing && !c->want_write)
		tx_flush(c);
}

/* Queue a data-path PDU (Data-In, SCSI Response, R2T): it goes out with
 * the others queued in this turn of the loop, in one sendmsg. */
static void tx_queue_lazy(struct iscsi_conn *c, struct tx_pdu *pdu)
{
	if (tx_prep(c, pdu))
		ev_defer(c->loop, &c->tx_task, tx_task_fn);
}

/*
 * The PDU's unsent bytes as iovecs (at most max); a mapped Data-In's data
 * as maps, pinned in maps[*nmaps...] until the caller's sendmsg returned.
 * *whole: all of the PDU is in (else nothing after it may be added).
 * -1: its data does not map (the caller fails the READ).
 */
static int pdu_iov(struct tx_pdu *pdu, struct iovec *iov, int max, struct blk_map *maps,
		   int *nmaps, bool *whole)
{
	struct iovec parts[4] = {
		{ &pdu->bhs, ISCSI_BHS_LEN },
		{ pdu->hdig, pdu->hd_len },
		{ (void *)pdu->data, pdu->data_len },
		{ pdu->tail, pdu->tail_len },
	};
	size_t skip = pdu->sent;
	int n = 0, i;

	for (i = 0; i < 4 && n < max; i++) {
		if (skip >= parts[i].iov_len) {
			skip -= parts[i].iov_len;
			continue;
		}
		if (i == 2 && pdu->map_bd) {
			while (skip < pdu->data_len && n < max) {
				struct blk_map *m = &maps[(*nmaps)];

				if (blk_map_read(pdu->map_bd, pdu->map_off + skip,
						 pdu->data_len - skip, m))
					return -1;
				(*nmaps)++;
				iov[n].iov_base = (void *)m->addr;
				iov[n++].iov_len = m->len;
				skip += m->len;
			}
			if (skip < pdu->data_len)
				break;
			skip = 0;
			continue;
		}
		iov[n].iov_base = (char *)parts[i].iov_base + skip;
		iov[n].iov_len = parts[i].iov_len - skip;
		skip = 0;
		n++;
	}
	*whole = i == 4;
	return n;
}

/*
 * A mapped READ cannot be sent as it is (the kernel could not read the
 * mapping: the file truncated, an I/O error; or it no longer maps): the
 * data not yet sent goes as zeros from the task's buffer, and its SCSI
 * Response, queued after all of its data and so not started yet, becomes
 * CHECK CONDITION, MEDIUM ERROR, UNRECOVERED READ ERROR.
 */
static void tx_map_fail(struct iscsi_conn *c, struct iscsi_task *t)
{
	struct scsi_cmd *cmd = &t->cmd;
	struct list_head *l;

	LOG_RATELIMIT(LOG_WARN, LS_ISCSI, "%s: READ of %u bytes at %llu: the mapped backing file cannot be read",
		      c->peer, cmd->map_len, (unsigned long long)cmd->map_off);
	memset(t->buf, 0, t->edtl);
	list_for_each(l, &c->txq) {
		struct tx_pdu *pdu = list_entry(l, struct tx_pdu, link);

		if (pdu->map_task == t && pdu->map_bd) {
			pdu->data = t->buf + (pdu->map_off - cmd->map_off);
			pdu->map_bd = NULL;
		}
		if (pdu->task_done == t && bhs_opcode(&pdu->bhs) == ISCSI_OP_SCSI_RSP &&
		    !pdu->sent && !pdu->own) {
			uint8_t *sn = malloc(2u + SCSI_SENSE_LEN);

			scsi_sense(cmd, SK_MEDIUM_ERROR, ASC_UNRECOVERED_READ_ERROR);
			pdu->bhs.b[1] &= (uint8_t)~(ISCSI_FLAG_OVERFLOW | ISCSI_FLAG_UNDERFLOW);
			bhs_put32(&pdu->bhs, BHS_RESIDUAL, 0);
			pdu->bhs.b[3] = cmd->status;
			if (sn) {	/* else the status alone */
				put_be16(sn, cmd->sense_len);
				memcpy(sn + 2, cmd->sense, cmd->sense_len);
				pdu->own = sn;
				pdu->data = sn;
				pdu->data_len = 2u + cmd->sense_len;
			}
			pdu_seal(c, pdu);
			return;
		}
	}
}

/* sendmsg said EFAULT: nothing of that call went, so the first mapped
 * Data-In not wholly sent is the one (or lies before it). */
static bool tx_fault(struct iscsi_conn *c)
{
	struct list_head *l;

	list_for_each(l, &c->txq) {
		struct tx_pdu *pdu = list_entry(l, struct tx_pdu, link);

		if (pdu->map_bd && pdu->sent < ISCSI_BHS_LEN + pdu->hd_len + pdu->data_len) {
			tx_map_fail(c, pdu->map_task);
			return true;
		}
	}
	return false;
}

static void set_want_write(struct iscsi_conn *c, bool on)
{
	if (c->want_write == on)
		return;
	c->want_write = on;
	ev_io_modify(c->loop, &c->io, EV_READ | (on ? EV_WRITE : 0));
}

static void tx_flush(struct iscsi_conn *c)
{
	while (!c->closing && !list_empty(&c->txq)) {
		struct iovec iov[TX_IOV_MAX];
		struct blk_map maps[TX_IOV_MAX];	/* pinned until sendmsg returned */
		struct msghdr msg = { .msg_iov = iov };
		struct list_head *l;
		int n = 0, nmaps = 0, k, err;
		bool whole = true, failed = false;
		ssize_t w;

		list_for_each(l, &c->txq) {
			struct tx_pdu *pdu = list_entry(l, struct tx_pdu, link);

			if (n > TX_IOV_MAX - 4 || !whole)
				break;
			k = pdu_iov(pdu, iov + n, TX_IOV_MAX - n, maps, &nmaps, &whole);
			if (k < 0) {
				if (!n) {	/* at the head: fail it, then go on */
					tx_map_fail(c, pdu->map_task);
					failed = true;
				}
				break;
			}
			n += k;
		}
		if (!n) {
			for (int i = 0; i < nmaps; i++)
				blk_map_put(&maps[i]);
			if (failed)
				continue;
			break;
		}
		msg.msg_iovlen = (size_t)n;
		w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		err = errno;
		for (int i = 0; i < nmaps; i++)
			blk_map_put(&maps[i]);
		if (w < 0) {
			if (err == EINTR)
				continue;
			if (err == EAGAIN) {
				set_want_write(c, true);
				return;
			}
			if (err == EFAULT && nmaps && tx_fault(c))
				continue;
			LOG_DBG(LS_ISCSI, "%s: send: %s", c->peer, strerror(err));
			conn_close(c);
			return;
		}
		while (w > 0) {
			struct tx_pdu *pdu = list_first_entry(&c->txq, struct tx_pdu, link);
			size_t rem = pdu->total - pdu->sent;

			if ((size_t)w < rem) {
				pdu->sent += (size_t)w;
				break;
			}
			w -= (ssize_t)rem;
			list_del(&pdu->link);
			if (pdu->task_done)
				task_free(pdu->task_done);
			pdu_free(pdu);
		}
	}
	if (c->closing)
		return;
	set_want_write(c, false);
	if (c->cold_reset && list_empty(&c->txq)) {
		conn_linger(c);
		return;
	}
	if (c->lingering)
		return;		/* closed by its peer or its timer */
	if (c->close_after_tx)
		conn_close(c);
}

static void send_reject(struct iscsi_conn *c, const struct iscsi_bhs *h, uint8_t reason)
{
	struct tx_pdu *pdu = pdu_new(ISCSI_OP_REJECT, ISCSI_FLAG_FINAL);

	LOG_RATELIMIT(LOG_WARN, LS_ISCSI, "%s: reject opcode 0x%02x reason 0x%02x", c->peer,
		      bhs_opcode(h), reason);
	if (!pdu) {
		conn_close(c);
		return;
	}
	pdu->own = malloc(ISCSI_BHS_LEN);
	if (!pdu->own) {
		pdu_free(pdu);
		conn_close(c);
		return;
	}
	memcpy(pdu->own, h, ISCSI_BHS_LEN);
	pdu->data = pdu->own;
	pdu->data_len = ISCSI_BHS_LEN;
	pdu->bhs.b[2] = reason;
	bhs_put32(&pdu->bhs, BHS_ITT, ISCSI_RSVD_TAG);
	bhs_put32(&pdu->bhs, BHS_STATSN, c->statsn++);
	put_window(c, pdu);
	tx_queue(c, pdu);
}

/* ---------------------------------------------------------------- login */

static void login_respond(struct iscsi_conn *c, const struct iscsi_bhs *h, int status,
			  uint8_t flags, struct iscsi_kvbuf *kv)
{
	struct tx_pdu *pdu = pdu_new(ISCSI_OP_LOGIN_RSP, status ? 0 : flags);

	if (!pdu) {
		free(kv);
		conn_close(c);
		return;
	}
	memcpy(pdu->bhs.b + 8, c->isid, 6);
	put_be16(pdu->bhs.b + 14, c->tsih);
	bhs_put32(&pdu->bhs, BHS_ITT, bhs_itt(h));
	bhs_put32(&pdu->bhs, BHS_STATSN, c->statsn++);
	put_window(c, pdu);
	pdu->bhs.b[36] = (uint8_t)(status >> 8);
	pdu->bhs.b[37] = (uint8_t)status;
	if (kv && !status && kv->len) {
		pdu->own = kv;
		pdu->data = (const uint8_t *)kv->buf;
		pdu->data_len = kv->len;
	} else {
		free(kv);
	}
	if (status) {
		LOG_INFO(LS_ISCSI, "%s: login failed, status 0x%04x", c->peer, status);
		c->close_after_tx = true;
	}
	tx_queue(c, pdu);
}

/* The login's first PDU: which target, and what authentication it needs. */
static int conn_lookup(struct iscsi_nego *n, void *arg)
{
	struct iscsi_conn *c = arg;
	struct iscsi_params *p = &n->p;

	if (!p->initiator_name[0])
		return ISCSI_LOGIN_MISSING_PARAM;
	if (p->session_type == ISCSI_SESSION_NONE)
		p->session_type = ISCSI_SESSION_NORMAL;
	if (p->session_type == ISCSI_SESSION_DISCOVERY)
		return iscsi_login_lookup(NULL, p->initiator_name, &c->target, &n->cred);
	if (!p->target_name[0])
		return ISCSI_LOGIN_MISSING_PARAM;
	return iscsi_login_lookup(p->target_name, p->initiator_name, &c->target, &n->cred);
}

static void handle_login(struct iscsi_conn *c, const uint8_t *data, uint32_t dlen)
{
	const struct iscsi_bhs *h = &c->rx_bhs;
	uint8_t f = bhs_flags(h);
	int csg = ISCSI_LOGIN_CSG(f), nsg = ISCSI_LOGIN_NSG(f), status = 0;
	bool transit = f & ISCSI_LOGIN_TRANSIT;
	struct iscsi_kvbuf *kv = calloc(1, sizeof(*kv));
	uint8_t rflags = 0;

	if (!kv || c->reinst_wait) {	/* nothing is to come before our answer */
		free(kv);
		conn_close(c);
		return;
	}
	if (!c->login_started) {
		uint16_t tsih = get_be16(h->b + 14);

		memcpy(c->isid, h->b + 8, 6);
		c->cid = get_be16(h->b + 20);
		c->exp_cmdsn = get_be32(h->b + 24);
		c->statsn = get_be32(h->b + 28);
		if (h->b[3] > 0) {			/* version-min */
			status = 0x0205;		/* unsupported version */
		} else if (tsih) {	/* a connection for an existing session */
			struct ev_loop *sl = iscsi_session_loop(tsih);
			struct iscsi_session *s;

			if (sl && sl != c->loop) {
				free(kv);
				conn_migrate(c, sl);	/* and this PDU again there */
				return;
			}
			s = sl ? iscsi_session_find_local(tsih) : NULL;
			if (!s) {
				status = 0x020a;	/* session does not exist */
			} else {
				c->login_tsih = c->tsih = tsih;
				c->exp_cmdsn = s->exp_cmdsn;
			}
		}
	}
	if (!status && ((f & ISCSI_FLAG_CONTINUE) || csg == 2 || csg == 3 || csg < c->stage ||
			(transit && (nsg <= csg || nsg == 2))))
		status = ISCSI_LOGIN_INIT_ERR;
	if (!status)
		status = iscsi_nego_login(&c->nego, csg, (const char *)data, dlen, kv);
	/* the security stage is left only once CHAP, if required, is done: an
	 * initiator asking to transit meanwhile stays (T=0 in our answer) */
	if (!status && (csg != ISCSI_STAGE_SECURITY || transit) &&
	    !iscsi_nego_auth_done(&c->nego)) {
		if (csg == ISCSI_STAGE_SECURITY && (c->nego.chap == ISCSI_CHAP_WAIT_A ||
						    c->nego.chap == ISCSI_CHAP_WAIT_R))
			transit = false;
		else
			status = ISCSI_LOGIN_AUTH_FAILED;
	}
	c->login_started = true;
	if (!status) {
		bool to_ffp = transit && nsg == ISCSI_STAGE_FFP;

		if (c->nego.p.session_type == ISCSI_SESSION_NORMAL && !c->tpgt_sent) {
			iscsi_kv_addu(kv, "TargetPortalGroupTag", c->tpg);
			c->tpgt_sent = true;
		}
		if ((csg == ISCSI_STAGE_OPERATIONAL || to_ffp) && !c->declared) {
			iscsi_nego_declare(&c->nego, kv);
			c->declared = true;
		}
		if (kv->overflow)
			status = ISCSI_LOGIN_TARGET_ERR;
		rflags = (uint8_t)(csg << 2);
		if (transit)
			rflags |= ISCSI_LOGIN_TRANSIT | (uint8_t)nsg;
		c->stage = transit ? nsg : csg;
		if (!status && to_ffp && c->login_tsih) {
			status = join_check(c);
			if (!status && c->reinst_wait) {	/* connection reinstatement */
				c->held_h = *h;
				c->held_flags = rflags;
				c->held_kv = kv;
				return;
			}
		} else if (!status && to_ffp) {
			c->tsih = iscsi_new_tsih();
			if (c->target && (c->reinst_wait = reinstate(c))) {
				/* answered when the old session's tasks have ended
				 * (or the login deadline closes us first) */
				c->held_h = *h;
				c->held_flags = rflags;
				c->held_kv = kv;
				return;
			}
		}
	}
	if (status == ISCSI_LOGIN_AUTH_FAILED || status == ISCSI_LOGIN_AUTHZ_FAILED)
		LOG_WARN(LS_ISCSI, "%s: %s refused for %s %s %s", c->peer,
			 status == ISCSI_LOGIN_AUTH_FAILED ? "authentication" : "authorization",
			 c->nego.p.initiator_name,
			 c->nego.p.session_type == ISCSI_SESSION_DISCOVERY ? "in" : "to",
			 c->nego.p.session_type == ISCSI_SESSION_DISCOVERY ? "discovery" :
			 c->nego.p.target_name);
	login_finish(c, h, status, rflags, kv);
}

static void login_finish(struct iscsi_conn *c, const struct iscsi_bhs *h, int status,
			 uint8_t rflags, struct iscsi_kvbuf *kv)
{
	if (!status && c->stage == ISCSI_STAGE_FFP && !c->sess) {
		int rc = conn_attach(c);

		if (rc)
			status = rc == -ENOENT ? 0x020a : rc == -EMLINK ? 0x0206 :
				 ISCSI_LOGIN_TARGET_ERR;
	}
	login_respond(c, h, status, rflags, kv);
	if (status || c->stage == ISCSI_STAGE_FFP)
		iscsi_nego_wipe(&c->nego);
	if (!status && c->stage == ISCSI_STAGE_FFP) {
		c->p = c->nego.p;
		c->state = CONN_FFP;
		ev_timer_stop(c->loop, &c->timer);
		if (c->tmo.nop_interval_ms)
			ev_timer_start(c->loop, &c->timer,
				       c->tmo.nop_interval_ms * 1000000ull, conn_timer);
		c->hdigest = c->p.header_digest;
		c->ddigest = c->p.data_digest;
		LOG_INFO(LS_ISCSI, "%s: %s session for %s%s%s (tsih %u cid %u of %u, mrdsl %u/%u, "
			 "burst %u/%u, immediate %s, initial r2t %s%s%s)", c->peer,
			 c->p.session_type == ISCSI_SESSION_DISCOVERY ? "discovery" : "normal",
			 c->p.initiator_name, c->target ? " to " : "",
			 c->target ? c->target->iqn : "", c->tsih, c->cid, c->sess->nconns,
			 c->p.max_xmit_dsl,
			 c->p.max_recv_dsl, c->p.first_burst, c->p.max_burst,
			 c->p.immediate_data ? "yes" : "no", c->p.initial_r2t ? "yes" : "no",
			 c->hdigest ? ", header digest" : "", c->ddigest ? ", data digest" : "");
	}
}

/* A message to the reactor of an older connection: close it if it still
 * exists (it may have gone meanwhile, so it is looked up by id). */
static void reinstate_msg(void *arg)
{
	uint64_t id = (uint64_t)(uintptr_t)arg;
	struct iscsi_conn *old = NULL;
	struct list_head *l;

	pthread_mutex_lock(&conns_lock);
	list_for_each(l, &conns) {
		struct iscsi_conn *c = list_entry(l, struct iscsi_conn, link);

		if (c->id == id && c->loop == ev_current()) {
			old = c;
			break;
		}
	}
	if (old && !old->closing) {
		LOG_INFO(LS_ISCSI, "%s: session reinstated by a new login, closing", old->peer);
		conn_close(old);
	}
	pthread_mutex_unlock(&conns_lock);
}

/* The connection id if it lives on the calling reactor. */
static struct iscsi_conn *conn_find_local(uint64_t id)
{
	struct iscsi_conn *c = NULL;
	struct list_head *l;

	pthread_mutex_lock(&conns_lock);
	list_for_each(l, &conns) {
		struct iscsi_conn *x = list_entry(l, struct iscsi_conn, link);

		if (x->id == id && x->loop == ev_current()) {
			c = x;
			break;
		}
	}
	pthread_mutex_unlock(&conns_lock);
	return c;
}

/* A message to the reactor of a login waiting for an old session: one of
 * its connections has ended (with all its tasks). */
static void reinstated_msg(void *arg)
{
	struct iscsi_conn *c = conn_find_local((uint64_t)(uintptr_t)arg);

	/* only this reactor frees c: it stays while we use it */
	if (!c || c->closing || !c->reinst_wait || --c->reinst_wait)
		return;
	LOG_INFO(LS_ISCSI, "%s: the old session has ended, login answered", c->peer);
	login_finish(c, &c->held_h, 0, c->held_flags, c->held_kv);
	c->held_kv = NULL;
}

/*
 * Session reinstatement (RFC 7143 6.3.5): a new normal session with the
 * InitiatorName and ISID of an existing one replaces it. The old
 * connections are closed on their own reactors (one already closing, e.g.
 * by the pings, is waited for too); nothing new of theirs is taken, their
 * tasks doing I/O finish, and only then is the new login answered, so that
 * nothing of the old session reaches the disk after the new one has begun.
 * Returns the number of old connections to wait for.
 */
static unsigned reinstate(struct iscsi_conn *c)
{
	struct list_head *l;
	unsigned n = 0;

	pthread_mutex_lock(&conns_lock);
	list_for_each(l, &conns) {
		struct iscsi_conn *o = list_entry(l, struct iscsi_conn, link);

		if (o == c || o->state != CONN_FFP || o->target != c->target ||
		    memcmp(o->isid, c->isid, sizeof(c->isid)) ||
		    strcasecmp(o->p.initiator_name, c->nego.p.initiator_name))
			continue;
		o->heir = c->id;	/* read when o is freed, under conns_lock */
		n++;
		if (o->closing)
			continue;
		if (o->loop == c->loop) {
			LOG_INFO(LS_ISCSI, "%s: session reinstated by a new login, closing",
				 o->peer);
			conn_close(o);
		} else {
			ev_send_msg(o->loop, reinstate_msg, (void *)(uintptr_t)o->id);
		}
	}
	pthread_mutex_unlock(&conns_lock);
	return n;
}

/* ------------------------------------------------------------ sessions */

/* On the session's reactor, at the login's last answer: a new session, or
 * one more connection of an existing one. -ENOENT (gone meanwhile),
 * -EMLINK (MaxConnections), -ENOMEM. */
static int conn_attach(struct iscsi_conn *c)
{
	struct iscsi_session *s;

	if (c->login_tsih) {
		s = iscsi_session_find_local(c->login_tsih);
		if (!s || s->failing)
			return -ENOENT;
		if (s->nconns >= s->max_conns)
			return -EMLINK;
		iscsi_session_get(s);
	} else {
		s = iscsi_session_new(c->loop, c->target, c->nego.p.initiator_name, c->isid,
				      c->tsih, c->nego.p.session_type == ISCSI_SESSION_NORMAL ?
				      c->nego.p.max_connections : 1);
		if (!s)
			return -ENOMEM;
		s->exp_cmdsn = c->exp_cmdsn;
	}
	c->sess = s;
	list_add_tail(&c->sess_link, &s->conns);
	s->nconns++;
	return 0;
}

/* A login adding a connection to session login_tsih (on its reactor), at
 * its last stage: the same initiator, ISID and target, room under
 * MaxConnections; a CID in use reinstates that connection: it is closed
 * (its tasks end first) and the login answered after (reinst_wait).
 * Returns a login status. */
static int join_check(struct iscsi_conn *c)
{
	struct iscsi_session *s = iscsi_session_find_local(c->login_tsih);
	struct list_head *l;

	if (!s || s->failing || !s->target || s->target != c->target ||
	    memcmp(s->isid, c->isid, sizeof(c->isid)) ||
	    strcasecmp(s->initiator, c->nego.p.initiator_name) ||
	    c->nego.p.session_type != ISCSI_SESSION_NORMAL)
		return 0x020a;		/* session does not exist */
	list_for_each(l, &s->conns) {
		struct iscsi_conn *o = list_entry(l, struct iscsi_conn, sess_link);

		if (o->cid != c->cid)
			continue;
		LOG_INFO(LS_ISCSI, "%s: connection %u reinstated by a new login, closing",
			 o->peer, o->cid);
		o->conn_only = true;
		o->heir = c->id;
		c->reinst_wait = 1;
		conn_close(o);
		return 0;
	}
	if (s->nconns >= s->max_conns) {
		LOG_WARN(LS_ISCSI, "%s: session tsih %u has %u connections already (MaxConnections)",
			 c->peer, s->tsih, s->nconns);
		return 0x0206;		/* too many connections */
	}
	return 0;
}

/* A connection leaves its session (it is closing). At ErrorRecoveryLevel 0
 * a connection lost, rather than logged out, ends the whole session (RFC
 * 7143 6.1.5: session recovery): the other connections close too. */
static void conn_detach(struct iscsi_conn *c)
{
	struct iscsi_session *s = c->sess;
	struct list_head *l, *tmp;

	list_for_each_safe(l, tmp, &s->held) {
		struct held_pdu *hp = list_entry(l, struct held_pdu, link);

		if (hp->conn == c) {
			list_del(&hp->link);
			free(hp);
		}
	}
	list_del(&c->sess_link);
	if (--s->nconns == 0) {
		iscsi_session_end(s);
		return;
	}
	if (c->conn_only || s->failing)
		return;
	s->failing = true;
	iscsi_session_end(s);
	LOG_WARN(LS_ISCSI, "%s: connection %u lost: its session (tsih %u, %u more connections) "
		 "ends (ErrorRecoveryLevel 0)", c->peer, c->cid, s->tsih, s->nconns);
	while (!list_empty(&s->conns))
		conn_close(list_first_entry(&s->conns, struct iscsi_conn, sess_link));
}

static void handle_nop_out(struct iscsi_conn *c, const uint8_t *data, uint32_t dlen);
static void handle_text(struct iscsi_conn *c, const uint8_t *data, uint32_t dlen);
static void handle_logout(struct iscsi_conn *c);
static void handle_task_mgmt(struct iscsi_conn *c);

/* The window has moved: the held requests now in order go on, each on
 * the connection it came on. */
static void release_held(struct iscsi_session *s)
{
	if (s->releasing)
		return;
	s->releasing = true;
	for (;;) {
		struct held_pdu *hp = NULL;
		struct list_head *l;

		list_for_each(l, &s->held) {
			struct held_pdu *x = list_entry(l, struct held_pdu, link);

			if (x->sn == s->exp_cmdsn) {
				hp = x;
				break;
			}
		}
		if (!hp)
			break;
		list_del(&hp->link);
		if (hp->skip) {
			s->exp_cmdsn++;
		} else if (hp->task) {
			s->exp_cmdsn++;
			task_start(hp->task);
		} else {
			/* handled as if it came now (its CmdSN is the expected one) */
			struct iscsi_conn *o = hp->conn;
			struct iscsi_bhs save = o->rx_bhs;

			o->rx_bhs = hp->bhs;
			switch (bhs_opcode(&hp->bhs)) {
			case ISCSI_OP_NOP_OUT:
				handle_nop_out(o, hp->data, hp->dlen);
				break;
			case ISCSI_OP_TEXT_REQ:
				handle_text(o, hp->data, hp->dlen);
				break;
			case ISCSI_OP_LOGOUT_REQ:
				handle_logout(o);
				break;
			case ISCSI_OP_TASK_MGMT_REQ:
				handle_task_mgmt(o);
				break;
			default:
				s->exp_cmdsn++;
				break;
			}
			o->rx_bhs = save;
		}
		free(hp);
	}
	s->releasing = false;
}

/* The connection this reactor thread has just handed to another reactor
 * (conn_migrate): from then on the other one owns it and may already be
 * using or freeing it, so this thread must not touch it again, not even to
 * read a flag; the PDU handler's callers compare this pointer instead. */
static __thread const struct iscsi_conn *handed_over;

/* true (and forgotten) if handling c's last PDU handed c over */
static bool conn_gone(const struct iscsi_conn *c)
{
	if (handed_over != c)
		return false;
	handed_over = NULL;
	return true;
}

/* A message to the reactor of the session a login joins: the connection
 * comes to live here; its first login PDU is handled again. */
static void adopt_msg(void *arg)
{
	struct iscsi_conn *c = conn_find_local((uint64_t)(uintptr_t)arg);

	if (!c || c->closing || !c->migrating)
		return;
	c->migrating = false;
	c->rx_drained = false;	/* the old reactor's readiness is gone */
	if (ev_io_start(c->loop, &c->io, c->fd, EV_READ, conn_io)) {
		conn_close(c);
		return;
	}
	ev_timer_start(c->loop, &c->timer, c->tmo.login_ms * 1000000ull, conn_timer);
	handle_pdu(c);
	if (!conn_gone(c) && !c->closing)
		conn_rx(c);
}

/* Move a connection, at its first login PDU (nothing sent yet, nothing
 * but its socket and that PDU), to the reactor of the session it joins,
 * where all the session's connections live. */
static void conn_migrate(struct iscsi_conn *c, struct ev_loop *to)
{
	struct ev_loop *from = c->loop;

	LOG_DBG(LS_ISCSI, "%s: joins a session on another reactor", c->peer);
	ev_io_stop(from, &c->io);
	ev_timer_stop(from, &c->timer);
	pthread_mutex_lock(&conns_lock);
	c->loop = to;
	c->migrating = true;
	pthread_mutex_unlock(&conns_lock);
	if (ev_send_msg(to, adopt_msg, (void *)(uintptr_t)c->id)) {
		pthread_mutex_lock(&conns_lock);
		c->loop = from;
		c->migrating = false;
		pthread_mutex_unlock(&conns_lock);
		conn_close(c);
		return;
	}
	handed_over = c;	/* not ours any more: see conn_gone */
}

/* ------------------------------------------------------ reservations */

/* The initiator port name of the session (SPC-4 7.6.4.6), which names the
 * I_T nexus in persistent reservations, with the TPG tag. */
static const char *conn_iport(struct iscsi_conn *c)
{
	return c->sess->iport;
}

struct pr_abort {
	uint64_t	id;
	struct scsi_lu	*lu;
	struct scsi_pr_wait *wait;
};

static void task_free(struct iscsi_task *t);

/* On the connection's reactor: its tasks for lu end without a response
 * (those doing I/O when it finishes), as after ABORT TASK SET. */
static void pr_abort_msg(void *arg)
{
	struct pr_abort *m = arg;
	struct list_head *l, *tmp;
	struct iscsi_conn *c = NULL;

	pthread_mutex_lock(&conns_lock);
	list_for_each(l, &conns) {
		struct iscsi_conn *o = list_entry(l, struct iscsi_conn, link);

		if (o->id == m->id && o->loop == ev_current()) {
			c = o;
			break;
		}
	}
	pthread_mutex_unlock(&conns_lock);
	if (c && !c->closing && c->target) {
		list_for_each_safe(l, tmp, &c->tasks) {
			struct iscsi_task *t = list_entry(l, struct iscsi_task, link);
			int id = scsi_lun_decode(t->lun);

			if (id < 0 || id >= ISCSI_MAX_LUNS || !c->target->luns[id] ||
			    &c->target->luns[id]->lu != m->lu || t->responded || t->aborted)
				continue;
			if (t->executing && scsi_sanitize_detach(&t->cmd)) {
				t->executing = false;	/* the sanitize goes on */
				c->nexec--;
			}
			if (t->executing) {
				/* the PREEMPT AND ABORT ends after its I/O */
				t->aborted = true;
				if (!t->pr_wait) {
					t->pr_wait = m->wait;
					scsi_pr_wait_get(m->wait);
				}
			} else {
				task_free(t);
			}
		}
		LOG_INFO(LS_ISCSI, "%s: tasks aborted by PREEMPT AND ABORT", c->peer);
	}
	scsi_pr_wait_put(m->wait);
	free(m);
}

/* PREEMPT AND ABORT from any session (scsi_pr_abort_fn, PR lock held):
 * post the abort to every connection of the preempted I_T nexus, each
 * message holding a reference on w until it has run. */
void iscsi_pr_abort(struct scsi_lu *lu, const struct pr_nexus *n, struct scsi_pr_wait *w)
{
	struct list_head *l;

	pthread_mutex_lock(&conns_lock);
	list_for_each(l, &conns) {
		struct iscsi_conn *c = list_entry(l, struct iscsi_conn, link);
		struct pr_nexus cn = { .rtpi = c->tpg };
		struct pr_abort *m;

		if (c->closing || c->state != CONN_FFP || c->p.session_type != ISCSI_SESSION_NORMAL)
			continue;
		/* c->sess->iport belongs to c's reactor: built again here */
		snprintf(cn.iport, sizeof(cn.iport), "%s,i,0x%02x%02x%02x%02x%02x%02x",
			 c->p.initiator_name, c->isid[0], c->isid[1], c->isid[2], c->isid[3],
			 c->isid[4], c->isid[5]);
		if (!scsi_pr_nexus_match(n, &cn))
			continue;
		m = malloc(sizeof(*m));
		if (!m)
			continue;
		m->id = c->id;
		m->lu = lu;
		m->wait = w;
		scsi_pr_wait_get(w);
		if (ev_send_msg(c->loop, pr_abort_msg, m)) {
			scsi_pr_wait_put(w);
			free(m);
		}
	}
	pthread_mutex_unlock(&conns_lock);
}

/* ------------------------------------------------------------- resets */

static void tmf_respond(struct iscsi_conn *c, uint32_t itt, uint8_t response);
static void task_abort_respond(struct iscsi_task *t);

/* The LU of task t, NULL if its LUN has none. */
static struct scsi_lu *task_lu(struct iscsi_conn *c, struct iscsi_task *t)
{
	int id = scsi_lun_decode(t->lun);
	struct iscsi_lun *l = id >= 0 && id < ISCSI_MAX_LUNS ?
			      __atomic_load_n(&c->target->luns[id], __ATOMIC_ACQUIRE) : NULL;

	return l ? &l->lu : NULL;
}

void iscsi_conn_reset_local(struct iscsi_reset *r)
{
	struct ev_loop *loop = ev_current();
	struct list_head *l, *k, *tmp;

	pthread_mutex_lock(&conns_lock);
	list_for_each(l, &conns) {
		struct iscsi_conn *c = list_entry(l, struct iscsi_conn, link);
		unsigned n = 0;

		if (c->loop != loop || c->target != r->target || c->state != CONN_FFP ||
		    !c->sess || c->closing)
			continue;
		list_for_each_safe(k, tmp, &c->tasks) {
			struct iscsi_task *t = list_entry(k, struct iscsi_task, link);
			struct scsi_lu *lu = task_lu(c, t);
			bool tas = c->sess->id != r->nexus &&
				   (!lu || __atomic_load_n(&lu->tas, __ATOMIC_ACQUIRE));

			if (t->responded || (r->lun >= 0 && scsi_lun_decode(t->lun) != r->lun))
				continue;
			n++;
			if (t->executing && scsi_sanitize_detach(&t->cmd)) {
				t->executing = false;	/* the sanitize goes on without it */
				c->nexec--;
			}
			if (t->executing) {
				/* ends (and answers, TAS) when its I/O does */
				if (!t->aborted)
					t->tas = tas;
				t->aborted = true;
				if (!t->reset) {
					t->reset = r;
					iscsi_reset_get(r);
				}
			} else if (tas && !t->aborted) {
				task_abort_respond(t);
				if (c->closing)
					break;	/* the rest went with it */
			} else {
				task_free(t);
			}
		}
		if (n)
			LOG_INFO(LS_ISCSI, "%s: %u tasks aborted by a reset%s", c->peer, n,
				 c->sess->id == r->nexus ? "" : " from another session");
	}
	pthread_mutex_unlock(&conns_lock);
}

void iscsi_conn_tmf_done(uint64_t conn, uint32_t itt, bool cold, const char *iqn)
{
	struct iscsi_conn *c = conn_find_local(conn);

	/* only this reactor frees c: it stays while we use it */
	if (!c || c->closing) {
		if (cold)
			iscsi_cold_kill(iqn, 0);
		return;
	}
	if (cold) {
		c->cold_reset = true;		/* tx_flush: then conn_linger */
		c->close_after_tx = true;	/* nothing more is read */
	}
	tmf_respond(c, itt, 0);		/* function complete */
}

/* ------------------------------------------------------------ sequence */

enum { SN_NOW, SN_DROP, SN_HELD };

/* CmdSN of a non-immediate request: in order advances the window; old
 * or out-of-window ones are dropped (RFC 7143 3.2.2.1). One ahead of the
 * window waits (SN_HELD) if another connection of the session may still
 * bring the ones before it; alone, a connection cannot fill a gap later. */
static int cmdsn_check(struct iscsi_conn *c, const struct iscsi_bhs *h)
{
	uint32_t sn = bhs_get32(h, BHS_CMDSN), *exp = exp_sn(c);
	struct list_head *l;

	if (bhs_immediate(h))
		return SN_NOW;
	if (sn == *exp) {
		(*exp)++;
		return SN_NOW;
	}
	if ((int32_t)(sn - *exp) > 0 && (int32_t)(sn - max_cmdsn(c)) <= 0) {
		if (c->sess && c->sess->nconns > 1) {
			list_for_each(l, &c->sess->held)
				if (list_entry(l, struct held_pdu, link)->sn == sn)
					goto drop;	/* twice */
			return SN_HELD;
		}
		LOG_RATELIMIT(LOG_WARN, LS_ISCSI, "%s: cmdsn %u skips ahead of %u", c->peer, sn,
			      *exp);
		*exp = sn + 1;
		return SN_NOW;
	}
drop:
	LOG_RATELIMIT(LOG_WARN, LS_ISCSI, "%s: cmdsn %u outside [%u, %u], dropped", c->peer,
		      sn, *exp, max_cmdsn(c));
	return SN_DROP;
}

static struct held_pdu *hold(struct iscsi_conn *c, struct iscsi_task *t, const uint8_t *data,
			     uint32_t dlen)
{
	struct held_pdu *hp = calloc(1, sizeof(*hp) + (t ? 0 : dlen));

	if (!hp)
		return NULL;
	hp->sn = bhs_get32(&c->rx_bhs, BHS_CMDSN);
	hp->conn = c;
	hp->task = t;
	hp->bhs = c->rx_bhs;
	if (!t && dlen) {
		memcpy(hp->data, data, dlen);
		hp->dlen = dlen;
	}
	list_add_tail(&hp->link, &c->sess->held);
	return hp;
}

/* Any request but a SCSI command: true to handle it now. */
static bool cmdsn_accept(struct iscsi_conn *c, const struct iscsi_bhs *h)
{
	int r = cmdsn_check(c, h);

	if (r == SN_HELD && !hold(c, NULL, c->rx_buf + c->rx_len.ahs + c->rx_len.hdigest,
				  c->rx_len.data))
		conn_close(c);
	return r == SN_NOW;
}

/* ---------------------------------------------------------------- tasks */

static struct iscsi_task *task_find(struct iscsi_conn *c, uint32_t itt)
{
	struct list_head *l;

	list_for_each(l, &c->tasks) {
		struct iscsi_task *t = list_entry(l, struct iscsi_task, link);

		if (t->itt == itt)
			return t;
	}
	return NULL;
}

static void send_r2t(struct iscsi_task *t)
{
	struct iscsi_conn *c = t->conn;
	struct tx_pdu *pdu = pdu_new(ISCSI_OP_R2T, ISCSI_FLAG_FINAL);
	uint32_t len = MIN(c->p.max_burst, t->edtl - t->received);

	if (!pdu) {
		conn_close(c);
		return;
	}
	if (++c->ttt_next == ISCSI_RSVD_TAG)
		c->ttt_next = 1;
	t->ttt = c->ttt_next;
	t->exp_datasn = 0;
	t->burst_end = t->received + len;
	put_be64(pdu->bhs.b + BHS_LUN, t->lun);
	bhs_put32(&pdu->bhs, BHS_ITT, t->itt);
	bhs_put32(&pdu->bhs, BHS_TTT, t->ttt);
	bhs_put32(&pdu->bhs, BHS_STATSN, c->statsn);
	put_window(c, pdu);
	bhs_put32(&pdu->bhs, BHS_DATASN, t->r2tsn++);
	bhs_put32(&pdu->bhs, BHS_BUFOFF, t->received);
	bhs_put32(&pdu->bhs, BHS_DESIRED_LEN, len);
	tx_queue_lazy(c, pdu);
}

static void set_residual(struct iscsi_task *t, struct tx_pdu *pdu, uint8_t status)
{
	uint32_t x = t->cmd.xfer_len;

	if (status != SCSI_STATUS_GOOD)
		return;
	if (x > t->edtl) {
		pdu->bhs.b[1] |= ISCSI_FLAG_OVERFLOW;
		bhs_put32(&pdu->bhs, BHS_RESIDUAL, x - t->edtl);
	} else if (x < t->edtl) {
		pdu->bhs.b[1] |= ISCSI_FLAG_UNDERFLOW;
		bhs_put32(&pdu->bhs, BHS_RESIDUAL, t->edtl - x);
	}
}

static void task_respond(struct iscsi_task *t)
{
	struct iscsi_conn *c = t->conn;
	struct scsi_cmd *cmd = &t->cmd;
	uint32_t n = cmd->data_in && t->read ? MIN(cmd->xfer_len, t->edtl) : 0;
	/* a mapped READ's status goes apart, after its data: if the kernel
	 * cannot read the mapping, it becomes CHECK CONDITION (tx_map_fail) */
	bool mapped = cmd->map_len && cmd->map_len >= n && cmd->status == SCSI_STATUS_GOOD;
	bool collapse = cmd->status == SCSI_STATUS_GOOD && !cmd->sense_len && !mapped;
	struct tx_pdu *pdu;

	t->responded = true;
	for (uint32_t off = 0; off < n;) {
		uint32_t seg = MIN(c->p.max_xmit_dsl, n - off);
		bool last = off + seg == n;

		pdu = pdu_new(ISCSI_OP_DATA_IN, last ? ISCSI_FLAG_FINAL : 0);
		if (!pdu)
			goto nomem;
		put_be64(pdu->bhs.b + BHS_LUN, t->lun);
		bhs_put32(&pdu->bhs, BHS_ITT, t->itt);
		bhs_put32(&pdu->bhs, BHS_TTT, ISCSI_RSVD_TAG);
		put_window(c, pdu);
		bhs_put32(&pdu->bhs, BHS_DATASN, t->datasn++);
		bhs_put32(&pdu->bhs, BHS_BUFOFF, off);
		pdu->data = t->buf + off;
		pdu->data_len = seg;
		if (mapped) {
			pdu->map_bd = cmd->lu->bd;
			pdu->map_off = cmd->map_off + off;
			pdu->map_task = t;
		}
		if (last && collapse) {
			pdu->bhs.b[1] |= ISCSI_FLAG_STATUS;
			pdu->bhs.b[3] = cmd->status;
			bhs_put32(&pdu->bhs, BHS_STATSN, c->statsn++);
			set_residual(t, pdu, cmd->status);
			pdu->task_done = t;
		}
		tx_queue_lazy(c, pdu);
		if (c->closing)
			return;
		off += seg;
	}
	if (n && collapse)
		return;
	pdu = pdu_new(ISCSI_OP_SCSI_RSP, ISCSI_FLAG_FINAL);
	if (!pdu)
		goto nomem;
	pdu->bhs.b[2] = 0x00;	/* command completed at target */
	pdu->bhs.b[3] = cmd->status;
	bhs_put32(&pdu->bhs, BHS_ITT, t->itt);
	bhs_put32(&pdu->bhs, BHS_STATSN, c->statsn++);
	put_window(c, pdu);
	bhs_put32(&pdu->bhs, BHS_DATASN, t->read ? t->datasn : t->r2tsn);	/* ExpDataSN */
	set_residual(t, pdu, cmd->status);
	if (cmd->sense_len) {
		uint8_t *s = malloc(2u + cmd->sense_len);

		if (!s) {
			pdu_free(pdu);
			goto nomem;
		}
		put_be16(s, cmd->sense_len);
		memcpy(s + 2, cmd->sense, cmd->sense_len);
		pdu->own = s;
		pdu->data = s;
		pdu->data_len = 2u + cmd->sense_len;
	}
	pdu->task_done = t;
	tx_queue_lazy(c, pdu);
	return;

nomem:
	LOG_RATELIMIT(LOG_ERROR, LS_ISCSI, "%s: out of memory", c->peer);
	task_free(t);
	conn_close(c);
}

static void conn_free_deferred(struct ev_task *et);

static void tmf_respond(struct iscsi_conn *c, uint32_t itt, uint8_t response)
{
	struct tx_pdu *pdu = pdu_new(ISCSI_OP_TASK_MGMT_RSP, ISCSI_FLAG_FINAL);

	if (!pdu) {
		conn_close(c);
		return;
	}
	pdu->bhs.b[2] = response;
	bhs_put32(&pdu->bhs, BHS_ITT, itt);
	bhs_put32(&pdu->bhs, BHS_STATSN, c->statsn++);
	put_window(c, pdu);
	tx_queue(c, pdu);
}

/* Aborted by another nexus's reset with TAS 1: TASK ABORTED status, no
 * data, no sense (SAM-5 5.6). */
static void task_abort_respond(struct iscsi_task *t)
{
	task_unhold(t);
	t->cmd.status = SCSI_STATUS_TASK_ABORTED;
	t->cmd.sense_len = 0;
	t->cmd.data_in = false;
	t->cmd.xfer_len = 0;
	task_respond(t);
}

static void task_scsi_done(struct scsi_cmd *cmd)
{
	struct iscsi_task *t = container_of(cmd, struct iscsi_task, cmd);
	struct iscsi_conn *c = t->conn;
	struct tmf_wait *w = t->tmf;
	struct iscsi_reset *r = t->reset;

	t->executing = false;
	c->nexec--;
	if (c->closing || t->aborted) {
		if (t->tas && !c->closing)
			task_abort_respond(t);
		else
			task_free(t);
		if (r)
			iscsi_reset_put(r);
		if (w && !--w->pending) {
			/* on the connection that asked, maybe not this one */
			struct iscsi_conn *tc = w->conn == c->id ? c : conn_find_local(w->conn);

			if (tc && !tc->closing)
				tmf_respond(tc, w->itt, 0);	/* function complete */
			free(w);
		}
		if (c->closing && !c->nexec)
			ev_defer(c->loop, &c->free_task, conn_free_deferred);
		return;
	}
	task_respond(t);
}

static void task_exec(struct iscsi_task *t)
{
	struct iscsi_conn *c = t->conn;
	struct iscsi_session *ss = c->sess;
	struct iscsi_target *tg = c->target;
	struct scsi_cmd *cmd = &t->cmd;
	int id = scsi_lun_decode(t->lun);
	unsigned nluns, luns_gen = __atomic_load_n(&tg->luns_gen, __ATOMIC_ACQUIRE);
	const uint64_t *luns = iscsi_target_lunlist(tg, &nluns);
	struct iscsi_lun *l = id >= 0 && id < ISCSI_MAX_LUNS ?
			      __atomic_load_n(&tg->luns[id], __ATOMIC_ACQUIRE) : NULL;

	cmd->lu = NULL;
	cmd->ch = NULL;
	if (l) {

		if (!c->chans[id] && blk_chan_open(l->lu.bd, c->loop, &c->chans[id])) {
			c->chans[id] = NULL;
		} else {
			cmd->lu = &l->lu;
			cmd->ch = c->chans[id];
		}
	}
	/* a reset, MODE SELECT, resize or LUN change since this nexus last
	 * looked: UNIT ATTENTION once each (ua.c) */
	if (cmd->lu) {
		uint16_t asc = iscsi_ua_take(ss, (unsigned)id, cmd->lu, cmd->cdb[0], luns_gen);

		if (asc) {
			scsi_sense(cmd, SK_UNIT_ATTENTION, asc);
			task_respond(t);
			return;
		}
	}
	cmd->buf = t->buf;
	cmd->buf_len = t->edtl;
	cmd->may_map = !c->ddigest;	/* a digest would read the mapping */
	cmd->nexus = ss->id;
	cmd->iport = conn_iport(c);
	cmd->tpg = c->tpg;
	cmd->alua_seen = cmd->lu ? &ss->alua_seen[id] : NULL;
	cmd->mode_seen = cmd->lu ? &ss->mode_seen[id] : NULL;
	cmd->luns = luns;
	cmd->nluns = nluns;
	cmd->done = task_scsi_done;
	t->executing = true;
	c->nexec++;
	if (scsi_exec(cmd) == SCSI_DONE)
		task_scsi_done(cmd);
}

/* A command refused: a Reject; if it was ahead of the window, its CmdSN
 * still counts when its turn comes. */
static void reject_cmd(struct iscsi_conn *c, int sn, uint8_t reason)
{
	if (sn == SN_HELD) {
		struct held_pdu *hp = hold(c, NULL, NULL, 0);

		if (hp)
			hp->skip = true;
	}
	send_reject(c, &c->rx_bhs, reason);
}

static void handle_scsi_cmd(struct iscsi_conn *c, const uint8_t *data, uint32_t dlen)
{
	const struct iscsi_bhs *h = &c->rx_bhs;
	uint8_t f = bhs_flags(h);
	uint32_t edtl = bhs_get32(h, BHS_EDTL);
	struct iscsi_session *ss = c->sess;
	struct iscsi_task *t;
	int sn;

	if (c->p.session_type != ISCSI_SESSION_NORMAL) {
		send_reject(c, h, ISCSI_REJECT_PROTOCOL);
		return;
	}
	if ((sn = cmdsn_check(c, h)) == SN_DROP)
		return;
	for (unsigned i = 0; !bhs_immediate(h) && i < MIN(ss->nabort_sn, ARRAY_SIZE(ss->abort_sn));
	     i++) {
		if (ss->abort_sn[i] == bhs_get32(h, BHS_CMDSN)) {
			LOG_INFO(LS_ISCSI, "%s: cmdsn %u was aborted before it came: dropped",
				 c->peer, ss->abort_sn[i]);
			ss->abort_sn[i] = ss->exp_cmdsn - 0x80000000u;	/* used up */
			if (sn == SN_HELD) {	/* it counts as received */
				struct held_pdu *hp = hold(c, NULL, NULL, 0);

				if (hp)
					hp->skip = true;
			}
			return;
		}
	}
	if (bhs_ahs_len(h) || ((f & ISCSI_FLAG_READ) && (f & ISCSI_FLAG_WRITE))) {
		/* extended CDBs, bidirectional commands */
		reject_cmd(c, sn, ISCSI_REJECT_CMD_NOT_SUPPORTED);
		return;
	}
	if (dlen && (!(f & ISCSI_FLAG_WRITE) || !c->p.immediate_data || dlen > edtl ||
		     dlen > c->p.first_burst)) {
		reject_cmd(c, sn, ISCSI_REJECT_PROTOCOL);
		return;
	}
	if (edtl > ISCSI_MAX_EDTL || task_find(c, bhs_itt(h))) {
		reject_cmd(c, sn, edtl > ISCSI_MAX_EDTL ? ISCSI_REJECT_OUT_OF_RESOURCES :
			    ISCSI_REJECT_TASK_IN_PROGRESS);
		return;
	}
	t = calloc(1, sizeof(*t));
	/* Page-aligned, so O_DIRECT disks read and write it in place instead
	 * of bouncing through their own buffers (bench/README.md). */
	if (!t || (edtl && !(t->buf = iscsi_buf_get(&c->bufs, edtl, &t->bufcap)))) {
		free(t);
		reject_cmd(c, sn, ISCSI_REJECT_OUT_OF_RESOURCES);
		return;
	}
	t->conn = c;
	t->itt = bhs_itt(h);
	t->edtl = edtl;
	t->lun = bhs_lun(h);
	t->read = f & ISCSI_FLAG_READ;
	t->write = f & ISCSI_FLAG_WRITE;
	memcpy(t->cmd.cdb, h->b + BHS_CDB, SCSI_CDB_MAX);
	list_add_tail(&t->link, &c->tasks);
	if (dlen)
		memcpy(t->buf, data, dlen);
	t->received = dlen;
	/* F: no unsolicited Data-Out follows */
	if (t->write && t->received < edtl)
		t->unsol_end = c->p.initial_r2t || (f & ISCSI_FLAG_FINAL) ? dlen :
			       MIN(c->p.first_burst, edtl);
	if (sn == SN_HELD) {	/* its unsolicited data may come meanwhile */
		t->held = true;
		if (!hold(c, t, NULL, 0)) {
			task_free(t);
			conn_close(c);
		}
		return;
	}
	task_start(t);
}

/* A command whose turn has come: run it, or ask for its data. */
static void task_start(struct iscsi_task *t)
{
	t->held = false;
	if (!t->write || t->received == t->edtl)
		task_exec(t);
	else if (t->received >= t->unsol_end || t->want_r2t)
		send_r2t(t);
}

static void handle_data_out(struct iscsi_conn *c, const uint8_t *data, uint32_t dlen)
{
	const struct iscsi_bhs *h = &c->rx_bhs;
	struct iscsi_task *t = task_find(c, bhs_itt(h));
	uint32_t ttt = bhs_get32(h, BHS_TTT), off = bhs_get32(h, BHS_BUFOFF);
	bool final = bhs_flags(h) & ISCSI_FLAG_FINAL;
	uint32_t end;

	if (t && t->responded && !t->executing)
		return;		/* the rest of a sequence we failed already */
	if (!t || !t->write || t->executing || t->received == t->edtl) {
		send_reject(c, h, ISCSI_REJECT_INVALID_FIELD);
		return;
	}
	end = ttt == ISCSI_RSVD_TAG ? t->unsol_end : t->burst_end;
	if ((ttt != ISCSI_RSVD_TAG && ttt != t->ttt) || off != t->received ||
	    dlen > end - off || bhs_get32(h, BHS_DATASN) != t->exp_datasn) {
		/* out of order, beyond the burst, or a stale TTT: at ERL 0 the
		 * sequence cannot be repaired, so the command fails (ABORTED
		 * COMMAND, DATA PHASE ERROR) and the rest of its data is dropped */
		LOG_RATELIMIT(LOG_WARN, LS_ISCSI, "%s: bad data-out itt 0x%x ttt 0x%x datasn %u "
			      "offset %u len %u (expected datasn %u offset %u, end %u)", c->peer,
			      t->itt, ttt, bhs_get32(h, BHS_DATASN), off, dlen, t->exp_datasn,
			      t->received, end);
		scsi_sense(&t->cmd, SK_ABORTED_COMMAND, ASC_DATA_PHASE_ERROR);
		task_respond(t);
		return;
	}
	memcpy(t->buf + off, data, dlen);
	t->received += dlen;
	t->exp_datasn++;
	if (t->held)		/* started when its CmdSN's turn comes */
		t->want_r2t |= final || t->received == end;
	else if (t->received == t->edtl)
		task_exec(t);
	else if (final || t->received == end)
		send_r2t(t);
}

/* ------------------------------------------------------ other requests */

static void handle_nop_out(struct iscsi_conn *c, const uint8_t *data, uint32_t dlen)
{
	const struct iscsi_bhs *h = &c->rx_bhs;
	struct tx_pdu *pdu;

	if (!cmdsn_accept(c, h))
		return;
	if (bhs_itt(h) == ISCSI_RSVD_TAG)
		return;		/* an answer to our ping, or a ping wanting none */
	pdu = pdu_new(ISCSI_OP_NOP_IN, ISCSI_FLAG_FINAL);
	if (!pdu || (dlen && !(pdu->own = malloc(dlen)))) {
		free(pdu);
		conn_close(c);
		return;
	}
	memcpy(pdu->bhs.b + BHS_LUN, h->b + BHS_LUN, 8);
	bhs_put32(&pdu->bhs, BHS_ITT, bhs_itt(h));
	bhs_put32(&pdu->bhs, BHS_TTT, ISCSI_RSVD_TAG);
	bhs_put32(&pdu->bhs, BHS_STATSN, c->statsn++);
	put_window(c, pdu);
	if (dlen) {
		dlen = MIN(dlen, c->p.max_xmit_dsl);
		memcpy(pdu->own, data, dlen);
		pdu->data = pdu->own;
		pdu->data_len = dlen;
	}
	tx_queue(c, pdu);
}

struct text_walk {
	struct iscsi_conn	*c;
	struct iscsi_kvbuf	*out;
};

static int text_key(const char *key, const char *value, void *arg)
{
	struct text_walk *w = arg;
	struct iscsi_conn *c = w->c;

	if (!strcmp(key, "SendTargets")) {
		if (!strcmp(value, "All")) {
			if (c->p.session_type == ISCSI_SESSION_DISCOVERY)
				iscsi_send_targets(w->out, NULL, c->p.initiator_name,
						   c->local_addr, c->tpg);
			else
				iscsi_kv_add(w->out, key, "Reject");
		} else if (!*value) {
			if (c->target)
				iscsi_send_targets(w->out, c->target->iqn,
						   c->p.initiator_name, c->local_addr, c->tpg);
		} else {
			iscsi_send_targets(w->out, value, c->p.initiator_name,
					   c->local_addr, c->tpg);
		}
		return 0;
	}
	iscsi_kv_add(w->out, key, "NotUnderstood");
	return 0;
}

static void handle_text(struct iscsi_conn *c, const uint8_t *data, uint32_t dlen)
{
	const struct iscsi_bhs *h = &c->rx_bhs;
	struct iscsi_kvbuf *kv;
	struct tx_pdu *pdu;
	struct text_walk w;

	if (bhs_flags(h) & ISCSI_FLAG_CONTINUE) {
		send_reject(c, h, ISCSI_REJECT_CMD_NOT_SUPPORTED);
		return;
	}
	if (!cmdsn_accept(c, h))
		return;
	kv = calloc(1, sizeof(*kv));
	pdu = pdu_new(ISCSI_OP_TEXT_RSP, ISCSI_FLAG_FINAL);
	if (!kv || !pdu) {
		free(kv);
		free(pdu);
		conn_close(c);
		return;
	}
	w.c = c;
	w.out = kv;
	if (iscsi_kv_foreach((const char *)data, dlen, text_key, &w)) {
		free(kv);
		pdu_free(pdu);
		send_reject(c, h, ISCSI_REJECT_PROTOCOL);
		return;
	}
	pdu->own = kv;
	pdu->data = (const uint8_t *)kv->buf;
	pdu->data_len = MIN(kv->len, c->p.max_xmit_dsl);
	bhs_put32(&pdu->bhs, BHS_ITT, bhs_itt(h));
	bhs_put32(&pdu->bhs, BHS_TTT, ISCSI_RSVD_TAG);
	bhs_put32(&pdu->bhs, BHS_STATSN, c->statsn++);
	put_window(c, pdu);
	tx_queue(c, pdu);
}

static void handle_logout(struct iscsi_conn *c)
{
	const struct iscsi_bhs *h = &c->rx_bhs;
	uint8_t reason = bhs_flags(h) & 0x7f;
	struct tx_pdu *pdu;

	if (!cmdsn_accept(c, h))
		return;
	pdu = pdu_new(ISCSI_OP_LOGOUT_RSP, ISCSI_FLAG_FINAL);
	if (!pdu) {
		conn_close(c);
		return;
	}
	pdu->bhs.b[2] = reason == 2 ? 2 : 0;	/* recovery: not supported */
	if (reason == 1 && get_be16(h->b + 20) != c->cid) {
		/* close another connection of the session (by its CID) */
		struct iscsi_conn *o = NULL;
		struct list_head *l;

		list_for_each(l, &c->sess->conns) {
			struct iscsi_conn *x = list_entry(l, struct iscsi_conn, sess_link);

			if (x->cid == get_be16(h->b + 20))
				o = x;
		}
		if (o) {
			LOG_INFO(LS_ISCSI, "%s: connection %u logged out by connection %u", o->peer,
				 o->cid, c->cid);
			o->conn_only = true;
			conn_close(o);
		} else {
			pdu->bhs.b[2] = 1;	/* CID not found */
		}
		reason = 2;		/* this connection stays */
	}
	bhs_put32(&pdu->bhs, BHS_ITT, bhs_itt(h));
	bhs_put32(&pdu->bhs, BHS_STATSN, c->statsn++);
	put_window(c, pdu);
	if (reason != 2) {
		c->state = CONN_LOGGED_OUT;
		c->close_after_tx = true;
		c->conn_only = true;	/* logged out, not lost */
		if (reason == 0 && c->sess) {	/* the whole session */
			struct list_head *l, *tmp;

			iscsi_session_end(c->sess);
			list_for_each_safe(l, tmp, &c->sess->conns) {
				struct iscsi_conn *o = list_entry(l, struct iscsi_conn, sess_link);

				if (o == c)
					continue;
				o->conn_only = true;
				conn_close(o);
			}
		}
	}
	tx_queue(c, pdu);
}

static void handle_task_mgmt(struct iscsi_conn *c)
{
	const struct iscsi_bhs *h = &c->rx_bhs;
	uint8_t func = bhs_flags(h) & 0x7f;
	uint32_t rtt = bhs_get32(h, BHS_TTT);
	uint64_t lun = bhs_lun(h);
	struct list_head *l, *tmp, *cl;
	struct tmf_wait *w;

	if (!cmdsn_accept(c, h))
		return;
	switch (func) {
	case 1:		/* ABORT TASK */
	case 2:		/* ABORT TASK SET */
	case 4:		/* CLEAR TASK SET */
	case 5:		/* LOGICAL UNIT RESET */
	case 6:		/* TARGET WARM RESET */
	case 7:		/* TARGET COLD RESET */
		break;
	default:
		tmf_respond(c, bhs_itt(h), 5);	/* not supported */
		return;
	}
	if (func == 1) {
		struct iscsi_task *t = task_find(c, rtt);

		list_for_each(cl, &c->sess->conns)	/* on any connection of the session */
			if (!t)
				t = task_find(list_entry(cl, struct iscsi_conn, sess_link), rtt);
		uint32_t ref = bhs_get32(h, 32), sn = bhs_get32(h, BHS_CMDSN);

		if (!t && (int32_t)(ref - *exp_sn(c)) >= 0 && (int32_t)(ref - sn) < 0) {
			/* not received yet (RFC 7143 11.5.1): it is considered
			 * received, and will not run when it comes */
			c->sess->abort_sn[c->sess->nabort_sn++ % ARRAY_SIZE(c->sess->abort_sn)] = ref;
			tmf_respond(c, bhs_itt(h), 0);
			return;
		}
		if (!t || t->responded || t->aborted) {
			tmf_respond(c, bhs_itt(h), 1);	/* task does not exist (any more) */
			return;
		}
	}
	if (func >= 5) {	/* resets: every I_T nexus of the LU(s) (tmf.c) */
		int id = scsi_lun_decode(lun);

		if (func == 5 && (!c->target || id < 0 || id >= ISCSI_MAX_LUNS ||
				  !__atomic_load_n(&c->target->luns[id], __ATOMIC_ACQUIRE)))
			tmf_respond(c, bhs_itt(h), 2);		/* LUN does not exist */
		else if (!c->target || iscsi_reset_start(c->target, func == 5 ? id : -1,
							  c->sess->id, c->id, bhs_itt(h),
							  func == 7))
			tmf_respond(c, bhs_itt(h), 255);	/* function rejected */
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		conn_close(c);
		return;
	}
	w->itt = bhs_itt(h);
	w->conn = c->id;
	/*
	 * Tasks still gathering data are dropped at once. Tasks doing I/O
	 * cannot be stopped in the middle: they are marked, their I/O ends,
	 * no response is sent for them, and the function completes when the
	 * last of them has ended. Tasks already answered are left alone.
	 * Those of every connection of the session (the I_T nexus): the
	 * control page says TST 001b, a task set per I_T nexus, so CLEAR TASK
	 * SET is ABORT TASK SET.
	 */
	list_for_each(cl, &c->sess->conns)
	list_for_each_safe(l, tmp, &list_entry(cl, struct iscsi_conn, sess_link)->tasks) {
		struct iscsi_task *t = list_entry(l, struct iscsi_task, link);

		if ((func == 1 && t->itt != rtt) || ((func == 2 || func == 4) && t->lun != lun))
			continue;
		if (t->responded || t->aborted)
			continue;
		if (t->executing && scsi_sanitize_detach(&t->cmd)) {
			t->executing = false;	/* the sanitize goes on without it */
			t->conn->nexec--;
		}
		if (t->executing) {
			t->aborted = true;
			t->tmf = w;
			w->pending++;
		} else {
			task_free(t);
		}
	}
	if (!w->pending) {
		tmf_respond(c, w->itt, 0);
		free(w);
	}
}

/* ------------------------------------------------------------------ rx */

static void handle_pdu(struct iscsi_conn *c)
{
	const struct iscsi_bhs *h = &c->rx_bhs;
	const uint8_t *data = c->rx_buf + c->rx_len.ahs + c->rx_len.hdigest;
	uint32_t dlen = c->rx_len.data;
	uint8_t op = bhs_opcode(h);

	LOG_DBG(LS_ISCSI, "%s: rx opcode 0x%02x itt 0x%x dlen %u", c->peer, op, bhs_itt(h), dlen);
	if (c->state == CONN_LOGIN) {
		if (op != ISCSI_OP_LOGIN_REQ) {
			LOG_WARN(LS_ISCSI, "%s: opcode 0x%02x during login", c->peer, op);
			conn_close(c);
			return;
		}
		handle_login(c, data, dlen);
		return;
	}
	if (c->state == CONN_LOGGED_OUT)
		return;
	switch (op) {
	case ISCSI_OP_SCSI_CMD:
		handle_scsi_cmd(c, data, dlen);
		break;
	case ISCSI_OP_DATA_OUT:
		if (c->p.session_type != ISCSI_SESSION_NORMAL)
			send_reject(c, h, ISCSI_REJECT_PROTOCOL);
		else
			handle_data_out(c, data, dlen);
		break;
	case ISCSI_OP_NOP_OUT:
		handle_nop_out(c, data, dlen);
		break;
	case ISCSI_OP_TEXT_REQ:
		handle_text(c, data, dlen);
		break;
	case ISCSI_OP_LOGOUT_REQ:
		handle_logout(c);
		break;
	case ISCSI_OP_TASK_MGMT_REQ:
		if (c->p.session_type != ISCSI_SESSION_NORMAL)
			send_reject(c, h, ISCSI_REJECT_PROTOCOL);
		else
			handle_task_mgmt(c);
		break;
	case ISCSI_OP_LOGIN_REQ:
		send_reject(c, h, ISCSI_REJECT_PROTOCOL);
		break;
	case ISCSI_OP_SNACK_REQ:
		send_reject(c, h, ISCSI_REJECT_SNACK);	/* ErrorRecoveryLevel=0 */
		break;
	default:
		send_reject(c, h, ISCSI_REJECT_CMD_NOT_SUPPORTED);
		break;
	}
	if (c->sess && !list_empty(&c->sess->held))
		release_held(c->sess);
}

/* A whole PDU has arrived: check the digests, then handle it. */
static void rx_complete(struct iscsi_conn *c)
{
	struct iscsi_pdu_len *pl = &c->rx_len;

	if (pl->hdigest) {
		uint32_t crc = iscsi_crc32c_update(iscsi_crc32c_begin(), &c->rx_bhs, ISCSI_BHS_LEN);

		crc = iscsi_crc32c_end(iscsi_crc32c_update(crc, c->rx_buf, pl->ahs));
		if (get_le32(c->rx_buf + pl->ahs) != crc) {
			LOG_RATELIMIT(LOG_WARN, LS_ISCSI, "%s: header digest error", c->peer);
			conn_close(c);
			return;
		}
	}
	if (pl->ddigest) {
		const uint8_t *d = c->rx_buf + pl->ahs + pl->hdigest;

		if (get_le32(d + pl->data_padded) != iscsi_crc32c(d, pl->data_padded)) {
			/* ERL 0: the PDU is lost, and with it the command */
			LOG_RATELIMIT(LOG_WARN, LS_ISCSI, "%s: data digest error", c->peer);
			c->close_after_tx = true;
			send_reject(c, &c->rx_bhs, ISCSI_REJECT_DATA_DIGEST);
			return;
		}
	}
	handle_pdu(c);
}

/*
 * recv() for conn_rx: what was read ahead first; then a large segment
 * straight into dst, anything smaller through rx_stage, so that a burst of
 * commands (48-byte headers, small payloads) costs one recv, not two per
 * PDU. A recv that came back short emptied the socket: what arrives after
 * it raises a new readiness (the multishot poll and EPOLLET fire for every
 * arrival, and conn_io clears rx_drained), so the recv that could only say
 * EAGAIN is not made (1.5 of the 3.1 recvs per 4 KiB WRITE were those).
 */
static ssize_t rx_read(struct iscsi_conn *c, void *dst, size_t want)
{
	ssize_t n;
	size_t k;

	if (c->rx_spos == c->rx_slen) {
		if (c->rx_drained) {
			errno = EAGAIN;
			return -1;
		}
		if (want >= RX_STAGE / 2) {
			n = recv(c->fd, dst, want, 0);
			c->rx_drained = n > 0 && (size_t)n < want;
			return n;
		}
		n = recv(c->fd, c->rx_stage, RX_STAGE, 0);
		if (n <= 0)
			return n;
		c->rx_drained = n < (ssize_t)RX_STAGE;
		c->rx_spos = 0;
		c->rx_slen = (uint32_t)n;
	}
	k = MIN(want, (size_t)(c->rx_slen - c->rx_spos));
	memcpy(dst, c->rx_stage + c->rx_spos, k);
	c->rx_spos += (uint32_t)k;
	return (ssize_t)k;
}

static void conn_rx(struct iscsi_conn *c)
{
	while (!c->closing && !c->close_after_tx && !c->migrating) {
		uint8_t *dst;
		size_t want;
		ssize_t n;

		if (c->rx_state == RX_BHS) {
			dst = c->rx_bhs.b + c->rx_got;
			want = ISCSI_BHS_LEN - c->rx_got;
		} else {
			dst = c->rx_buf + c->rx_got;
			want = c->rx_len.total - c->rx_got;
		}
		n = rx_read(c, dst, want);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			LOG_DBG(LS_ISCSI, "%s: recv: %s", c->peer, strerror(errno));
			conn_close(c);
			return;
		}
		if (n == 0) {
			LOG_DBG(LS_ISCSI, "%s: connection closed by peer", c->peer);
			conn_close(c);
			return;
		}
		c->rx_got += (uint32_t)n;
		c->pings = 0;		/* the initiator is alive */
		c->last_rx_ns = now_ns();
		if ((size_t)n < want)
			continue;
		if (c->rx_state == RX_BHS) {
			uint32_t max = c->state == CONN_LOGIN ? ISCSI_KV_MAX : c->p.max_recv_dsl;

			if (iscsi_pdu_lengths(&c->rx_bhs, c->hdigest, c->ddigest, max, &c->rx_len)) {
				LOG_RATELIMIT(LOG_WARN, LS_ISCSI, "%s: data segment of %u bytes "
					      "exceeds %u", c->peer, bhs_dsl(&c->rx_bhs), max);
				conn_close(c);
				return;
			}
			c->rx_got = 0;
			if (c->rx_len.total) {
				c->rx_state = RX_REST;
				continue;
			}
		}
		c->rx_state = RX_BHS;
		c->rx_got = 0;
		rx_complete(c);
		if (conn_gone(c))
			return;
	}
}

/* TARGET COLD RESET (tmf.c): its response has gone into the socket. The
 * sending side shuts down (FIN after the response) and whatever the
 * initiator still sends is read and dropped until it closes, for
 * ISCSI_LINGER_MS at most: closing with unread data would send a RST that
 * may overtake the response. Every other connection of the target closes
 * now. */
#define ISCSI_LINGER_MS	5000

static void linger_rx(struct iscsi_conn *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->rx_stage, RX_STAGE, 0);

		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		conn_close(c);		/* the initiator has closed, or the socket failed */
		return;
	}
}

static void conn_linger(struct iscsi_conn *c)
{
	c->cold_reset = false;
	c->lingering = true;
	shutdown(c->fd, SHUT_WR);
	LOG_INFO(LS_ISCSI, "%s: cold reset answered, closing every connection of %s", c->peer,
		 c->target->iqn);
	iscsi_cold_kill(c->target->iqn, c->id);
	ev_timer_stop(c->loop, &c->timer);
	ev_timer_start(c->loop, &c->timer, ISCSI_LINGER_MS * 1000000ull, conn_timer);
	linger_rx(c);
}

static void conn_io(struct ev_io *io, uint32_t revents)
{
	struct iscsi_conn *c = container_of(io, struct iscsi_conn, io);

	if (c->lingering) {
		linger_rx(c);
		return;
	}
	if (revents & EV_WRITE)
		tx_flush(c);
	if (revents & (EV_READ | EV_HUP | EV_ERROR))
		c->rx_drained = false;
	if (!c->closing)
		conn_rx(c);
}

/* -------------------------------------------------------- life and death */

/* A NOP-In that wants an answer (ITT reserved, a TTT of ours). */
static void send_ping(struct iscsi_conn *c)
{
	struct tx_pdu *pdu = pdu_new(ISCSI_OP_NOP_IN, ISCSI_FLAG_FINAL);

	if (!pdu) {
		conn_close(c);
		return;
	}
	if (++c->ttt_next == ISCSI_RSVD_TAG)
		c->ttt_next = 1;
	bhs_put32(&pdu->bhs, BHS_ITT, ISCSI_RSVD_TAG);
	bhs_put32(&pdu->bhs, BHS_TTT, c->ttt_next);
	bhs_put32(&pdu->bhs, BHS_STATSN, c->statsn);	/* not advanced */
	put_window(c, pdu);
	tx_queue(c, pdu);
}

static void conn_timer(struct ev_timer *t)
{
	struct iscsi_conn *c = container_of(t, struct iscsi_conn, timer);

	if (c->closing)
		return;
	if (c->lingering) {
		LOG_DBG(LS_ISCSI, "%s: still open %u ms after a cold reset, closing", c->peer,
			ISCSI_LINGER_MS);
		conn_close(c);
		return;
	}
	if (c->logout_asked) {
		LOG_INFO(LS_ISCSI, "%s: no logout after the portal was disabled, closing", c->peer);
		conn_close(c);
		return;
	}
	if (c->state == CONN_LOGIN) {
		LOG_WARN(LS_ISCSI, "%s: login not finished within %u ms", c->peer,
			 c->tmo.login_ms);
		conn_close(c);
		return;
	}
	uint64_t iv = c->tmo.nop_interval_ms * 1000000ull, idle = now_ns() - c->last_rx_ns;

	if (idle < iv && !c->pings) {	/* it spoke lately: look again later */
		ev_timer_start(c->loop, t, iv - idle, conn_timer);
		return;
	}
	if (c->pings >= c->tmo.nop_misses) {
		LOG_WARN(LS_ISCSI, "%s: no answer to %u pings, closing", c->peer, c->pings);
		conn_close(c);
		return;
	}
	c->pings++;
	send_ping(c);
	if (!c->closing)
		ev_timer_start(c->loop, t, iv, conn_timer);
}

static void conn_free_deferred(struct ev_task *et)
{
	struct iscsi_conn *c = container_of(et, struct iscsi_conn, free_task);

	if (c->nexec)
		return;		/* the last task to end defers this again */
	for (unsigned i = 0; i < ISCSI_MAX_LUNS; i++)
		if (c->chans[i])
			blk_chan_close(c->chans[i], NULL, NULL);
	if (c->sess)	/* the last one ends the I_T nexus, and its reservations */
		iscsi_session_put(c->sess);
	if (c->target)
		iscsi_target_put(c->target);
	pthread_mutex_lock(&conns_lock);
	list_del(&c->link);
	if (c->heir) {		/* a login waits for this session to end */
		struct list_head *l;

		list_for_each(l, &conns) {
			struct iscsi_conn *h = list_entry(l, struct iscsi_conn, link);

			if (h->id == c->heir) {
				ev_send_msg(h->loop, reinstated_msg, (void *)(uintptr_t)h->id);
				break;
			}
		}
	}
	pthread_mutex_unlock(&conns_lock);
	free(c->held_kv);
	iscsi_nego_wipe(&c->nego);
	iscsi_buf_drain(&c->bufs);
	free(c->rx_stage);
	free(c->rx_buf);
	free(c);
	__atomic_sub_fetch(&nconns, 1, __ATOMIC_ACQ_REL);
}

static void conn_close(struct iscsi_conn *c)
{
	struct list_head *l, *tmp;

	if (c->closing)
		return;
	c->closing = true;
	LOG_DBG(LS_ISCSI, "%s: closing", c->peer);
	if (c->cold_reset)	/* its response did not go: the others close anyway */
		iscsi_cold_kill(c->target->iqn, c->id);
	if (c->sess)
		conn_detach(c);
	ev_io_stop(c->loop, &c->io);
	ev_timer_stop(c->loop, &c->timer);
	close(c->fd);
	c->fd = -1;
	while (!list_empty(&c->txq)) {
		struct tx_pdu *pdu = list_first_entry(&c->txq, struct tx_pdu, link);

		list_del(&pdu->link);
		pdu_free(pdu);	/* its task, if any, is on c->tasks */
	}
	list_for_each_safe(l, tmp, &c->tasks) {
		struct iscsi_task *t = list_entry(l, struct iscsi_task, link);

		if (t->executing && scsi_sanitize_detach(&t->cmd)) {
			t->executing = false;	/* the sanitize goes on without it */
			c->nexec--;
		}
		if (!t->executing)
			task_free(t);
	}
	ev_defer(c->loop, &c->free_task, conn_free_deferred);
}

static void format_addr(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const void *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(s4->sin_port));
	}
}

void iscsi_conn_start_msg(void *arg)
{
	struct iscsi_accepted *a = arg;
	int fd = a->fd, one = 1;
	uint16_t tpg = a->tpg;
	uint64_t portal = a->portal;
	struct iscsi_target_limits lim;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct iscsi_conn *c = calloc(1, sizeof(*c));

	free(a);
	if (!c)
		goto close_fd;
	c->tpg = tpg;
	c->portal = portal;
	iscsi_target_limits_default(&lim);
	c->rx_cap = ISCSI_MAX_AHS_LEN + 2 * ISCSI_DIGEST_LEN +
		    iscsi_pad4(MAX(lim.max_recv_dsl, ISCSI_KV_MAX));
	c->rx_buf = malloc(c->rx_cap);
	c->rx_stage = malloc(RX_STAGE);
	if (!c->rx_buf || !c->rx_stage)
		goto free_buf;
	c->fd = fd;
	c->loop = ev_current();
	c->tmo = iscsi_tmo;
	list_init(&c->txq);
	list_init(&c->tasks);
	iscsi_nego_init(&c->nego, &lim);
	c->nego.lookup = conn_lookup;
	c->nego.lookup_arg = c;
	c->p = c->nego.p;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (c->tmo.nop_interval_ms) {
		unsigned ut = c->tmo.nop_interval_ms * (c->tmo.nop_misses + 1);

		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof(ut));
	}
	{
		/* keepalive too, for a peer that vanished while the pings are
		 * off: probes after the same silence, as many as the pings */
		int idle = (int)MAX(1u, (c->tmo.nop_interval_ms ? c->tmo.nop_interval_ms :
					 5000) / 1000);
		int cnt = (int)MAX(1u, c->tmo.nop_misses);

		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof(idle));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	}
	if (!getsockname(fd, (struct sockaddr *)&ss, &sl))
		format_addr(&ss, c->local_addr, sizeof(c->local_addr));
	sl = sizeof(ss);
	if (!getpeername(fd, (struct sockaddr *)&ss, &sl))
		format_addr(&ss, c->peer, sizeof(c->peer));
	if (ev_io_start(c->loop, &c->io, fd, EV_READ, conn_io))
		goto free_buf;
	pthread_mutex_lock(&conns_lock);
	c->id = __atomic_add_fetch(&conn_ids, 1, __ATOMIC_ACQ_REL);	/* iscsi_conn_last_id */
	list_add_tail(&c->link, &conns);
	__atomic_add_fetch(&nconns, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_unlock(&conns_lock);
	ev_timer_start(c->loop, &c->timer, c->tmo.login_ms * 1000000ull, conn_timer);
	LOG_DBG(LS_ISCSI, "%s: connected", c->peer);
	return;

free_buf:
	free(c->rx_stage);
	free(c->rx_buf);
	free(c);
close_fd:
	close(fd);
}

void iscsi_conn_kill_local(void)
{
	struct ev_loop *loop = ev_current();
	struct list_head *l;

	pthread_mutex_lock(&conns_lock);
	list_for_each(l, &conns) {
		struct iscsi_conn *c = list_entry(l, struct iscsi_conn, link);

		if (c->loop == loop)
			conn_close(c);
	}
	pthread_mutex_unlock(&conns_lock);
}

static void lun_chan_closed(void *arg)
{
	__atomic_sub_fetch((unsigned *)arg, 1, __ATOMIC_ACQ_REL);
}

unsigned iscsi_conn_lun_gone_local(struct iscsi_target *t, unsigned id, struct scsi_lu *lu,
				   unsigned *closing)
{
	struct ev_loop *loop = ev_current();
	struct list_head *l, *k;
	unsigned busy = 0;

	pthread_mutex_lock(&conns_lock);
	list_for_each(l, &conns) {
		struct iscsi_conn *c = list_entry(l, struct iscsi_conn, link);
		unsigned n = 0;

		if (c->loop != loop || c->target != t)
			continue;
		list_for_each(k, &c->tasks) {
			struct iscsi_task *x = list_entry(k, struct iscsi_task, link);

			/* a mapped READ's queued Data-In maps the device */
			if ((x->executing || (x->responded && x->cmd.map_len)) && x->cmd.lu == lu)
				n++;
		}
		busy += n;
		if (n)
			continue;
		if (c->chans[id]) {
			__atomic_add_fetch(closing, 1, __ATOMIC_ACQ_REL);
			blk_chan_close(c->chans[id], lun_chan_closed, closing);
		}
		c->chans[id] = NULL;
		if (c->sess) {
			c->sess->ua_seen[id] = 0;
			c->sess->size_seen[id] = 0;
			c->sess->mode_seen[id] = 0;
		}
	}
	pthread_mutex_unlock(&conns_lock);
	return busy;
}

/* Without conns_lock: a connection closed under it may ask (conn_close) */
uint64_t iscsi_conn_last_id(void)
{
	return __atomic_load_n(&conn_ids, __ATOMIC_ACQUIRE);
}

unsigned iscsi_conn_kill_cold_local(const char *iqn, uint64_t upto, uint64_t except)
{
	struct ev_loop *loop = ev_current();
	struct list_head *l;
	unsigned n = 0;

	pthread_mutex_lock(&conns_lock);
	list_for_each(l, &conns) {
		struct iscsi_conn *c = list_entry(l, struct iscsi_conn, link);

		if (c->loop != loop || !c->target || c->id > upto || c->id == except ||
		    c->closing || c->lingering || strcmp(c->target->iqn, iqn))
			continue;
		LOG_INFO(LS_ISCSI, "%s: closing (cold reset of %s)", c->peer, iqn);
		conn_close(c);
		n++;
	}
	pthread_mutex_unlock(&conns_lock);
	return n;
}

void iscsi_conn_kill_target_local(struct iscsi_target *t)
{
	struct ev_loop *loop = ev_current();
	struct list_head *l;

	pthread_mutex_lock(&conns_lock);
	list_for_each(l, &conns) {
		struct iscsi_conn *c = list_entry(l, struct iscsi_conn, link);

		if (c->loop == loop && c->target == t && !c->closing) {
			LOG_INFO(LS_ISCSI, "%s: closing (target %s)", c->peer, t->iqn);
			conn_close(c);
		}
	}
	pthread_mutex_unlock(&conns_lock);
}

/* Async Message, AsyncEvent 1: the target asks for a logout within
 * ISCSI_LOGOUT_WAIT_S seconds (RFC 7143 11.9.1). */
static void request_logout(struct iscsi_conn *c)
{
	struct tx_pdu *pdu = pdu_new(ISCSI_OP_ASYNC_MSG, ISCSI_FLAG_FINAL);

	if (!pdu) {
		conn_close(c);
		return;
	}
	bhs_put32(&pdu->bhs, BHS_ITT, ISCSI_RSVD_TAG);
	bhs_put32(&pdu->bhs, BHS_STATSN, c->statsn++);
	put_window(c, pdu);
	pdu->bhs.b[36] = 1;				/* AsyncEvent: logout request */
	put_be16(pdu->bhs.b + 42, ISCSI_LOGOUT_WAIT_S);	/* Parameter3 */
	c->logout_asked = true;
	ev_timer_stop(c->loop, &c->timer);
	ev_timer_start(c->loop, &c->timer, (ISCSI_LOGOUT_WAIT_S + 1) * 1000000000ull,
		       conn_timer);
	tx_queue(c, pdu);
}

void iscsi_conn_logout_portal_local(uint64_t portal)
{
	struct ev_loop *loop = ev_current();
	struct list_head *l;

	pthread_mutex_lock(&conns_lock);
	list_for_each(l, &conns) {
		struct iscsi_conn *c = list_entry(l, struct iscsi_conn, link);

		if (c->loop != loop || c->portal != portal || c->closing || c->logout_asked)
			continue;
		if (c->state == CONN_FFP && c->p.session_type == ISCSI_SESSION_NORMAL) {
			LOG_INFO(LS_ISCSI, "%s: portal disabled, asking for a logout", c->peer);
			request_logout(c);
		} else {
			conn_close(c);
		}
	}
	pthread_mutex_unlock(&conns_lock);
}

/* Run on each reactor: its connections in full feature phase, read where
 * they change. */
static int sessions_local(unsigned i, void *arg)
{
	json_t *arr = arg;
	struct ev_loop *loop = ev_current();
	struct list_head *l;
	static pthread_mutex_t arr_lock = PTHREAD_MUTEX_INITIALIZER;

	pthread_mutex_lock(&conns_lock);
	list_for_each(l, &conns) {
		struct iscsi_conn *c = list_entry(l, struct iscsi_conn, link);
		const struct iscsi_params *p = &c->p;
		char isid[13];
		json_t *o;

		if (c->loop != loop || c->closing || c->state != CONN_FFP)
			continue;
		for (int k = 0; k < 6; k++)
			snprintf(isid + 2 * k, 3, "%02x", c->isid[k]);
		o = json_pack("{s:s,s:s?,s:s,s:i,s:s,s:s,s:s,s:i,s:i,s:{s:b,s:b,s:i,s:i,s:i,"
			      "s:i,s:b,s:b,s:i,s:i,s:i}}",
			      "initiator", p->initiator_name,
			      "target", c->target ? c->target->iqn : NULL,
			      "type", p->session_type == ISCSI_SESSION_DISCOVERY ?
				      "discovery" : "normal",
			      "tsih", (json_int_t)c->tsih, "isid", isid,
			      "portal", c->local_addr, "peer", c->peer,
			      "tpg", (json_int_t)c->tpg, "cid", (json_int_t)c->cid,
			      "params",
			      "header_digest", p->header_digest, "data_digest", p->data_digest,
			      "max_recv_dsl", (json_int_t)p->max_recv_dsl,
			      "max_xmit_dsl", (json_int_t)p->max_xmit_dsl,
			      "max_burst", (json_int_t)p->max_burst,
			      "first_burst", (json_int_t)p->first_burst,
			      "immediate_data", p->immediate_data,
			      "initial_r2t", p->initial_r2t,
			      "max_outstanding_r2t", (json_int_t)p->max_outstanding_r2t,
			      "error_recovery_level", (json_int_t)p->error_recovery_level,
			      "max_connections", (json_int_t)(c->sess ? c->sess->max_conns : 1));
		if (o) {
			pthread_mutex_lock(&arr_lock);
			json_array_append_new(arr, o);
			pthread_mutex_unlock(&arr_lock);
		}
	}
	pthread_mutex_unlock(&conns_lock);
	return 0;
}

json_t *iscsi_sessions_json(void)
{
	json_t *arr = json_array();

	if (arr && reactor_count())
		reactor_call_all(sessions_local, arr);
	return arr;
}
