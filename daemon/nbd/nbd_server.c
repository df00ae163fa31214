/* SPDX-License-Identifier: MIT */
/*
 * The NBD server: listeners, exports, connections.
 *
 * Threads. The control plane (nbd_listen, nbd_export_add, ...) runs on its
 * own thread and talks to reactors with reactor_call(). A listener's socket
 * is watched on one reactor; each accepted socket goes to the next reactor
 * (round-robin) and stays there. Everything about a connection is touched
 * only by its reactor, so the data path takes no lock; the server lock
 * guards the export and listener lists and the reference counts.
 *
 * A connection reads with an explicit state machine (rx): client flags,
 * option headers and payloads, then request headers and write payloads.
 * Everything that arrives is first checked by the codec (proto/nbd) and only
 * then acted on. Reads go through a small per-connection buffer; large write
 * payloads are received straight into the request's own buffer. The socket
 * is edge-triggered, so rx reads until EAGAIN, or stops on purpose:
 *  - backpressure: too many requests (or bytes) in flight; rx resumes
 *    through ev_defer() when a reply has gone out;
 *  - drain (DISC, export removal, shutdown): rx stops for good.
 *
 * Requests are pipelined: each becomes a struct nbd_io from the
 * connection's free list (its buffer is kept for the next request, so after
 * warm-up nothing is allocated per I/O), is submitted to the export's block
 * channel on this reactor, and when its bio ends the reply is queued on tx.
 * Replies go out in completion order, as the protocol allows, several at
 * once with one sendmsg (header and payload as separate iovecs); when the
 * socket is full, tx waits for EV_WRITE.
 *
 * TLS (a listener's choice: off, allow, require). STARTTLS is answered in
 * clear; once that reply is out, rx becomes RX_TLS_HS and drives a
 * nonblocking gnutls_handshake() from the same edge-triggered ev_io
 * (gnutls_record_get_direction() says which readiness it waits for). Then
 * conn_recv() reads records and conn_tx_tls() sends 16 KiB records: large
 * payloads straight from the request's buffer, headers and small replies
 * gathered so that they share records. rx always reads until EAGAIN (or is
 * resumed by a task), so plaintext GnuTLS holds is never left waiting for a
 * readiness that will not come.
 *
 * Allow-lists: an export with CIDRs serves TCP peers inside them only;
 * others get ERR_POLICY and do not see it in LIST.
 *
 * Lifetime. A connection is closed (socket shut, nothing more sent or
 * read) at once on a protocol error or EOF, but freed only when no bio of
 * it is in flight: the bios name its buffers. Freeing is deferred once more
 * so that tasks already queued for it see it closed first.
 *
 * Multi-conn. We keep no cache: a write is acknowledged only after its bio
 * has ended in the device, and FLUSH is a device flush, which makes every
 * completed write durable whichever connection or channel sent it. So a
 * FLUSH on any connection covers every write acknowledged on any connection
 * to the export, which is what NBD_FLAG_CAN_MULTI_CONN promises.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/log.h"
#include "sand/nbd.h"
#include "sand/reactor.h"
#include "proto/nbd/nbd_proto.h"
#include "daemon/nbd/nbd_tls.h"

#define NBD_MAX_PAYLOAD		(32u << 20)	/* READ/WRITE length limit */
#define NBD_MAX_INFLIGHT	128u		/* requests per connection */
#define NBD_MAX_INFLIGHT_BYTES	(64u << 20)	/* READ/WRITE bytes per connection */
#define NBD_BUF_CACHE_BYTES	(32u << 20)	/* buffers kept per connection */
#define RBUF_SIZE		(16u * 1024)
#define HANDSHAKE_TIMEOUT_NS	(30ull * 1000000000)
#define DRAIN_TIMEOUT_NS	(5ull * 1000000000)
#define KEEPALIVE_IDLE_S	30
#define KEEPALIVE_INTVL_S	10
#define KEEPALIVE_CNT		3
#define USER_TIMEOUT_MS		60000u
#define IO_HDR_MAX		64
#define TX_IOV_MAX		64
#define TLS_REC			(16u * 1024)	/* TLS plaintext record */
#define NBD_EXT_MAX		128		/* extents per BLOCK_STATUS context */
#define NBD_READ_SEGS		16		/* data and hole chunks per READ */
#define NBD_CTX_MAX		2		/* base:allocation, sand:changed:SNAP */
#define NBD_MAP_MIN		(64u * 1024)	/* mapped READs from this size on end with a trailer */
#define TX_MAPS_MAX		TX_IOV_MAX	/* maps pinned around one sendmsg */

struct nbd_export;

/* An export's channel on one reactor: opened by the first client there,
 * closed when the export is removed and its last client there has gone. */
struct exp_chan {
	struct nbd_export *exp;
	struct blkchan	*ch;
	unsigned	users;		/* attached connections on this reactor */
	struct list_head retry;		/* ios refused with -EAGAIN/-ENOMEM */
	struct ev_task	retry_task;
};

struct nbd_export {
	struct list_head link;
	char		*name, *desc;
	char		claim[BLK_NAME_MAX];
	struct blkdev	*bd;
	bool		ro;
	bool		removing;
	bool		no_small_map;	/* atomic: a small mapped READ faulted */
	struct nbd_cidr	*allow;		/* nallow CIDRs; none: everyone */
	unsigned	nallow;
	unsigned	refs;		/* list + attached conns + open chans */
	unsigned	clients;
	struct exp_chan	*xc;		/* [srv.nr] */
};

struct nbd_reactor {
	unsigned	idx;
	struct ev_loop	*loop;
	struct list_head conns;
};

struct nbd_listener {
	struct list_head link;
	char		addr[256];
	char		bound[300];
	char		path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int		fd;
	unsigned	ridx;
	struct nbd_tls	*tls;		/* NULL: plain only */
	struct ev_io	io;
	struct ev_timer	retry;
};

enum rx_state {
	RX_CFLAGS,
	RX_TLS_HS,		/* STARTTLS acknowledged: handshaking */
	RX_OPT_HDR,
	RX_OPT_DATA,
	RX_OPT_SKIP,		/* an option too big to keep */
	RX_REQ_HDR,
	RX_REQ_DATA,		/* a WRITE payload into cur->buf */
	RX_REQ_SKIP,		/* a refused WRITE's payload */
	RX_STOP,
};

struct nbd_conn;

struct nbd_io {
	struct nbd_conn	*c;
	struct list_head link;		/* free list, txq or exp_chan.retry */
	struct nbd_req	req;
	uint32_t	err;		/* NBD error decided before any bio */
	uint32_t	acct;		/* bytes counted in c->inflight_bytes */
	enum bio_op	op;		/* for retries */
	uint32_t	bflags;
	bool		then_flush;	/* TRIM+FUA: a flush after the discard */
	uint8_t		*buf;
	uint32_t	cap;
	uint8_t		hdr[IO_HDR_MAX];
	uint32_t	hdrlen, datalen;
	size_t		txoff;

	/* the reply as sent: parts[nparts], txlen bytes (hdr and buf, or the
	 * chunks of a read with holes) */
	struct iovec	*parts;
	int		nparts;
	struct iovec	dparts[3];
	size_t		txlen;

	/* a mapped READ (io_read_mapped): parts[1], the data, is resolved
	 * with blk_map_read at each send, unless the data had to be read
	 * into buf after all (refilling: that bio is out) */
	bool		mapped;
	bool		refilling;
	bool		map_done;	/* under NBD_MAP_MIN: the data chunk is flagged
					 * DONE, no trailer */

	/* block status: BLOCK_STATUS, and a READ's holes */
	struct blk_status st;
	struct blk_extent *ext;		/* NBD_EXT_MAX, on first use */
	unsigned	pending;	/* parts of the request still out (READ + map) */
	uint32_t	perr;		/* the first error among them */
	bool		have_map;	/* a READ's extents are in ext[0, st.next) */
	unsigned	ctx_next;	/* BLOCK_STATUS: contexts answered */
	uint32_t	stlen;		/* BLOCK_STATUS: reply bytes built in buf */
	uint32_t	stlast;		/* ... where the last chunk starts */
	uint8_t		*xhdr;		/* a READ's chunk headers */
	struct iovec	*xparts;
};

struct nbd_conn {
	struct nbd_reactor *r;
	struct list_head link;		/* r->conns */
	int		fd;
	struct ev_io	io;
	struct ev_task	rx_task, tx_task, free_task;
	struct ev_timer	timer;
	char		peer[96];
	struct sockaddr_storage peer_sa;	/* AF_UNSPEC for unix peers */

	/* TLS */
	struct nbd_tls	*tls_cfg;	/* the listener's, or NULL */
	gnutls_session_t tls;		/* after STARTTLS */
	bool		tls_on;		/* handshake done: records from now on */
	bool		tls_again;	/* a record send returned EAGAIN: resend */
	uint8_t		*tls_buf;	/* small replies gathered into one record */
	const uint8_t	*tls_ptr;	/* what is being sent */
	size_t		tls_len;

	/* rx */
	enum rx_state	rx;
	uint8_t		*rbuf;
	size_t		rpos, rlen;
	uint8_t		hdr[NBD_REQ_LEN];
	uint64_t	need, got;
	uint8_t		*dst;		/* where the current unit goes; NULL: dropped */

	/* handshake */
	uint32_t	cflags;
	struct nbd_opt_hdr opt;
	uint8_t		*opt_data;
	struct nbd_buf	out;
	size_t		out_off;
	bool		structured;
	bool		meta;		/* base:allocation selected */
	char		*meta_changed;	/* sand:changed:SNAP selected: SNAP */
	char		*meta_name;	/* ... for this export name */

	/* transmission */
	bool		transmission;
	struct nbd_export *exp;
	struct exp_chan	*xc;
	struct nbd_limits lim;
	struct nbd_io	*cur;
	struct list_head free_ios, txq;
	unsigned	nios;
	unsigned	inflight;	/* ios between header and reply sent */
	unsigned	bios;		/* ios with a bio out (or waiting to retry) */
	uint64_t	inflight_bytes;
	uint64_t	buf_bytes;	/* capacity of every io buffer */

	bool		rx_blocked;
	bool		drained;	/* a plain recv came back short: the socket
					 * is read again at its next readiness */
	bool		finishing;	/* close once everything in flight is answered */
	bool		closed;
	bool		free_queued;
};

static struct {
	pthread_mutex_t	api_lock;	/* serialises the control-plane API */
	pthread_mutex_t	lock;		/* lists, refs, counts */
	pthread_cond_t	cond;
	struct list_head exports, listeners;
	struct nbd_reactor *r;
	unsigned	nr;
	unsigned	nconns;
	int		shutting_down;	/* atomic */
} srv = {
	.api_lock = PTHREAD_MUTEX_INITIALIZER,
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.exports = LIST_HEAD_INIT(srv.exports),
	.listeners = LIST_HEAD_INIT(srv.listeners),
};

static void conn_rx(struct nbd_conn *c);
static void conn_tx(struct nbd_conn *c);
static void conn_close(struct nbd_conn *c, const char *why);
static void conn_maybe_finish(struct nbd_conn *c);
static void io_reply(struct nbd_io *io, uint32_t err);
static void io_submit(struct nbd_io *io, enum bio_op op, uint32_t flags);
static bool io_part_end(struct nbd_io *io, uint32_t err);

/* ================================================================ exports */

/* Under srv.lock. */
static void export_put_locked(struct nbd_export *exp)
{
	if (--exp->refs == 0)
		pthread_cond_broadcast(&srv.cond);
}

static void export_free(struct nbd_export *exp)
{
	blkdev_release(exp->bd, exp->claim);
	free(exp->xc);
	free(exp->allow);
	free(exp->name);
	free(exp->desc);
	free(exp);
}

/* Under srv.lock. "" names the export called "", else the first one. */
static struct nbd_export *export_find_locked(const char *name, size_t len)
{
	struct nbd_export *first = NULL;
	struct list_head *pos;

	list_for_each(pos, &srv.exports) {
		struct nbd_export *exp = list_entry(pos, struct nbd_export, link);

		if (exp->removing)
			continue;
		if (!first)
			first = exp;
		if (strlen(exp->name) == len && !memcmp(exp->name, name, len))
			return exp;
	}
	return len == 0 ? first : NULL;
}

/* May this client use exp? Unix-socket clients always may. */
static bool export_allows(const struct nbd_export *exp, const struct sockaddr_storage *peer)
{
	if (!exp->nallow || (peer->ss_family != AF_INET && peer->ss_family != AF_INET6))
		return true;
	for (unsigned i = 0; i < exp->nallow; i++)
		if (nbd_cidr_match(&exp->allow[i], (const struct sockaddr *)peer))
			return true;
	return false;
}

static uint16_t export_tflags(const struct nbd_export *exp, bool structured)
{
	struct blkdev *bd = exp->bd;
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN;

	if (blkdev_supports(bd, BIO_FLUSH))
		f |= NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA;
	if (exp->ro || bd->readonly) {
		f |= NBD_FLAG_READ_ONLY;
	} else {
		if (blkdev_supports(bd, BIO_DISCARD))
			f |= NBD_FLAG_SEND_TRIM;
		/* Zeroing through the device is what makes it fast; we do not
		 * emulate it with writes, so FAST_ZERO never has to fail. */
		if (blkdev_supports(bd, BIO_WRITE_ZEROES))
			f |= NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
	}
	if (structured)
		f |= NBD_FLAG_SEND_DF;
	return f;
}

/* ================================================================ ios */

static struct nbd_io *io_get(struct nbd_conn *c)
{
	struct nbd_io *io;

	if (!list_empty(&c->free_ios)) {
		io = list_first_entry(&c->free_ios, struct nbd_io, link);
		list_del(&io->link);
	} else {
		io = calloc(1, sizeof(*io));
		if (!io)
			return NULL;
		io->c = c;
		list_init(&io->link);
		c->nios++;
	}
	io->err = 0;
	io->acct = 0;
	io->then_flush = false;
	io->mapped = false;
	io->refilling = false;
	io->map_done = false;
	io->hdrlen = io->datalen = 0;
	io->txoff = 0;
	io->pending = 0;
	io->perr = 0;
	io->have_map = false;
	io->parts = NULL;
	c->inflight++;
	return io;
}

static int io_buf_reserve(struct nbd_io *io, uint32_t len)
{
	struct nbd_conn *c = io->c;
	void *p;

	if (io->cap >= len)
		return 0;
	if (posix_memalign(&p, 4096, len))
		return -ENOMEM;
	c->buf_bytes -= io->cap;
	free(io->buf);
	io->buf = p;
	io->cap = len;
	c->buf_bytes += len;
	return 0;
}

static bool conn_over_limit(const struct nbd_conn *c)
{
	return c->inflight >= NBD_MAX_INFLIGHT || c->inflight_bytes >= NBD_MAX_INFLIGHT_BYTES;
}

static void rx_task_fn(struct ev_task *t)
{
	conn_rx(container_of(t, struct nbd_conn, rx_task));
}

/* The request is answered (or dropped): back to the free list. */
static void io_release(struct nbd_io *io)
{
	struct nbd_conn *c = io->c;

	c->inflight_bytes -= io->acct;
	io->acct = 0;
	c->inflight--;
	if (c->buf_bytes > NBD_BUF_CACHE_BYTES) {
		c->buf_bytes -= io->cap;
		free(io->buf);
		io->buf = NULL;
		io->cap = 0;
	}
	list_add(&io->link, &c->free_ios);
	if (c->rx_blocked && !c->closed && !conn_over_limit(c)) {
		c->rx_blocked = false;
		ev_defer(c->r->loop, &c->rx_task, rx_task_fn);
	}
}

static void retry_task_fn(struct ev_task *t)
{
	struct exp_chan *xc = container_of(t, struct exp_chan, retry_task);

	while (!list_empty(&xc->retry)) {
		struct nbd_io *io = list_first_entry(&xc->retry, struct nbd_io, link);
		struct nbd_conn *c = io->c;

		list_del(&io->link);
		c->bios--;
		if (c->closed) {
			if (io_part_end(io, 0))
				io_release(io);
			conn_close(c, NULL);	/* re-check whether it can be freed */
			continue;
		}
		io_submit(io, io->op, io->bflags);
		if (xc->retry.prev == &io->link)
			break;		/* refused again: wait for more completions */
	}
}

/*
 * A READ with its allocation map has two parts out at once; the reply goes
 * when both have ended. True when io is the caller's to finish (the last
 * part), with err folded into io->perr.
 */
static bool io_part_end(struct nbd_io *io, uint32_t err)
{
	if (err && !io->perr)
		io->perr = err;
	if (io->pending > 1) {
		io->pending--;
		return false;
	}
	io->pending = 0;
	return true;
}

static void io_bio_end(struct bio *bio, int status)
{
	struct nbd_io *io = bio->end_arg;
	struct nbd_conn *c = io->c;
	struct exp_chan *xc = c->xc;

	c->bios--;
	if (!list_empty(&xc->retry))
		ev_defer(c->r->loop, &xc->retry_task, retry_task_fn);
	if (c->closed) {
		if (io_part_end(io, 0))
			io_release(io);
		conn_close(c, NULL);
		return;
	}
	if (status == 0 && io->then_flush) {
		io->then_flush = false;
		io_submit(io, BIO_FLUSH, 0);
		return;
	}
	if (status)
		LOG_RATELIMIT(LOG_WARN, LS_NBD, "%s: %s at %llu+%u: %s", c->exp->name,
			      nbd_cmd_name(io->req.type), (unsigned long long)io->req.offset,
			      io->req.len, strerror(-status));
	io_reply(io, nbd_errno(status));
}

static void io_submit(struct nbd_io *io, enum bio_op op, uint32_t flags)
{
	struct nbd_conn *c = io->c;
	struct iovec iov = { .iov_base = io->buf, .iov_len = io->req.len };
	bool data = op == BIO_READ || op == BIO_WRITE;
	int rc;

	c->bios++;
	rc = blk_rw(c->xc->ch, op, flags, data ? &iov : NULL, data ? 1 : 0,
		    op == BIO_FLUSH ? 0 : io->req.offset, op == BIO_FLUSH ? 0 : io->req.len,
		    io_bio_end, io);
	if (rc == 0)
		return;
	if (rc == -EAGAIN || rc == -ENOMEM) {
		io->op = op;
		io->bflags = flags;
		list_add_tail(&io->link, &c->xc->retry);	/* still counted in bios */
		return;
	}
	c->bios--;
	io_reply(io, nbd_errno(rc));
}

/* ---- block status: BLOCK_STATUS replies and the holes of READs ---- */

/* Ask the device about the request's range (widened to whole blocks:
 * BLOCK_STATUS requests need not be aligned). */
static int io_map_query(struct nbd_io *io, enum blk_status_mode mode, const char *base,
			unsigned max, void (*end)(struct blk_status *st, int status))
{
	struct nbd_conn *c = io->c;
	struct blkdev *bd = c->exp->bd;
	uint64_t bs = bd->block_size, a = io->req.offset / bs * bs;
	uint64_t e = MIN((io->req.offset + io->req.len + bs - 1) / bs * bs, bd->size);
	int rc;

	if (!io->ext && !(io->ext = malloc(NBD_EXT_MAX * sizeof(*io->ext))))
		return -ENOMEM;
	io->st = (struct blk_status){ .mode = mode, .base = base, .offset = a, .len = e - a,
				      .ext = io->ext, .max_ext = MIN(max, NBD_EXT_MAX),
				      .end = end, .end_arg = io };
	c->bios++;
	rc = blk_block_status(c->xc->ch, &io->st);
	if (rc)
		c->bios--;
	return rc;
}

/* The answer clipped to the request's range, as NBD extents (at most max,
 * adjacent ones merged when their NBD flags match). */
static unsigned io_map_clip(struct nbd_io *io, struct nbd_extent *out, unsigned max)
{
	bool alloc = io->st.mode == BLK_STATUS_ALLOC;
	uint64_t pos = io->st.offset, lo = io->req.offset, hi = lo + io->req.len;
	unsigned n = 0;

	for (unsigned i = 0; i < io->st.next && pos < hi; i++) {
		const struct blk_extent *x = &io->ext[i];
		uint64_t s = MAX(pos, lo), e = MIN(pos + x->len, hi);
		uint32_t f;

		if (alloc)
			f = (x->flags & BLK_EXT_HOLE ? NBD_STATE_HOLE : 0) |
			    (x->flags & BLK_EXT_ZERO ? NBD_STATE_ZERO : 0);
		else
			f = x->flags & BLK_EXT_CHANGED ? NBD_STATE_CHANGED : 0;
		pos += x->len;
		if (e <= s)
			continue;
		if (n && out[n - 1].flags == f)
			out[n - 1].len += (uint32_t)(e - s);
		else if (n == max)
			break;
		else
			out[n++] = (struct nbd_extent){ .len = (uint32_t)(e - s), .flags = f };
	}
	return n;
}

static void io_bs_next(struct nbd_io *io);

static void io_bs_end(struct blk_status *st, int status)
{
	struct nbd_io *io = st->end_arg;
	struct nbd_conn *c = io->c;
	struct nbd_extent ext[NBD_EXT_MAX];
	bool alloc = st->mode == BLK_STATUS_ALLOC;
	unsigned n;

	c->bios--;
	if (c->closed) {
		io_release(io);
		conn_close(c, NULL);
		return;
	}
	if (status) {
		LOG_RATELIMIT(LOG_WARN, LS_NBD, "%s: block status at %llu+%u: %s", c->exp->name,
			      (unsigned long long)io->req.offset, io->req.len, strerror(-status));
		io_reply(io, nbd_errno(status));
		return;
	}
	n = io_map_clip(io, ext, io->req.flags & NBD_CMD_FLAG_REQ_ONE ? 1 : NBD_EXT_MAX);
	if (!n) {
		io_reply(io, NBD_EIO);
		return;
	}
	if (io->stlen)		/* the chunk before is not the last one: no DONE */
		put_be16(io->buf + io->stlast + 4, 0);
	io->stlast = io->stlen;
	io->stlen += (uint32_t)nbd_sreply_block_status(io->buf + io->stlen, io->cap - io->stlen,
						       io->req.cookie,
						       alloc ? NBD_META_ID_BASE_ALLOCATION :
							       NBD_META_ID_SAND_CHANGED, ext, n);
	io_bs_next(io);
}

/* Query the next selected context, or send the reply once all answered. */
static void io_bs_next(struct nbd_io *io)
{
	struct nbd_conn *c = io->c;
	int rc;

	while (io->ctx_next < NBD_CTX_MAX) {
		unsigned i = io->ctx_next++;

		if (i == 0 && c->meta)
			rc = io_map_query(io, BLK_STATUS_ALLOC, NULL, NBD_EXT_MAX, io_bs_end);
		else if (i == 1 && c->meta_changed)
			rc = io_map_query(io, BLK_STATUS_CHANGED, c->meta_changed, NBD_EXT_MAX,
					  io_bs_end);
		else
			continue;
		if (rc)
			io_reply(io, nbd_errno(rc));
		return;
	}
	io_reply(io, io->stlen ? NBD_SUCCESS : NBD_EINVAL);
}

static void io_bs_start(struct nbd_io *io)
{
	uint32_t need = NBD_CTX_MAX * (NBD_SREPLY_HDR_LEN + 4 + 8 * NBD_EXT_MAX);

	if (io_buf_reserve(io, need)) {
		io_reply(io, NBD_ENOMEM);
		return;
	}
	io->stlen = 0;
	io->ctx_next = 0;
	io_bs_next(io);
}

/* A READ's allocation map has come: keep it for the reply. */
static void io_read_map_end(struct blk_status *st, int status)
{
	struct nbd_io *io = st->end_arg;
	struct nbd_conn *c = io->c;

	c->bios--;
	io->have_map = status == 0;
	if (c->closed) {
		if (io_part_end(io, 0))
			io_release(io);
		conn_close(c, NULL);
		return;
	}
	io_reply(io, NBD_SUCCESS);	/* waits for the read */
}

/*
 * A READ's reply as chunks: OFFSET_HOLE for the ranges that read as zeros
 * (no payload on the wire), OFFSET_DATA for the rest, in order, the last
 * one DONE. False (send one data chunk) when there is no hole, when DF
 * forbids more than one chunk, or without memory.
 */
static bool io_read_chunks(struct nbd_io *io)
{
	struct nbd_extent seg[NBD_READ_SEGS + 1];
	unsigned n = io_map_clip(io, seg, NBD_READ_SEGS), holes = 0;
	uint64_t off = io->req.offset, covered = 0;
	uint8_t *h;
	int k = 0;

	for (unsigned i = 0; i < n; i++) {
		covered += seg[i].len;
		holes += !!(seg[i].flags & NBD_STATE_ZERO);
	}
	if (!holes)
		return false;
	if (covered < io->req.len) {	/* the map stopped early: the rest is data */
		if (!(seg[n - 1].flags & NBD_STATE_ZERO))
			seg[n - 1].len += (uint32_t)(io->req.len - covered);
		else
			seg[n++] = (struct nbd_extent){ .len = (uint32_t)(io->req.len - covered) };
	}
	if (n > 1 && (io->req.flags & NBD_CMD_FLAG_DF))
		return false;
	if (!io->xhdr && !(io->xhdr = malloc((NBD_READ_SEGS + 1) * 32)))
		return false;
	if (!io->xparts && !(io->xparts = malloc(2 * (NBD_READ_SEGS + 1) * sizeof(struct iovec))))
		return false;
	h = io->xhdr;
	io->txlen = 0;
	for (unsigned i = 0; i < n; i++) {
		bool last = i == n - 1;

		if (seg[i].flags & NBD_STATE_ZERO) {
			nbd_sreply_hdr(h, last ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_OFFSET_HOLE,
				       io->req.cookie, 12);
			put_be64(h + NBD_SREPLY_HDR_LEN, off);
			put_be32(h + NBD_SREPLY_HDR_LEN + 8, seg[i].len);
			io->xparts[k++] = (struct iovec){ h, NBD_SREPLY_HDR_LEN + 12 };
			h += NBD_SREPLY_HDR_LEN + 12;
		} else {
			size_t hl = nbd_sreply_offset_data(h, io->req.cookie, off, seg[i].len, last);

			io->xparts[k++] = (struct iovec){ h, hl };
			io->xparts[k++] = (struct iovec){ io->buf + (off - io->req.offset), seg[i].len };
			h += hl;
		}
		off += seg[i].len;
	}
	io->parts = io->xparts;
	io->nparts = k;
	for (int i = 0; i < k; i++)
		io->txlen += io->xparts[i].iov_len;
	return true;
}

static void tx_task_fn(struct ev_task *t)
{
	conn_tx(container_of(t, struct nbd_conn, tx_task));
}

/* ---- mapped READs ---- */

/*
 * The one-copy path (blkdev.h, blk_map_read). A READ of NBD_MAP_MIN bytes
 * or more, with structured replies and without TLS (GnuTLS would read the
 * bytes itself), whose whole range the device can map now (no hole, no
 * thin chunk its cache does not know), is answered at once without a bio:
 * an OFFSET_DATA chunk not flagged DONE, the data, then a NONE chunk
 * flagged DONE. conn_tx maps the data again when it sends it, and holds the
 * maps only around that one sendmsg, never across loop turns (a thin map
 * pins its chunk, and a slow client must not hold up the pool). What a
 * send did not take is mapped afresh the next time; if that fails (say the
 * chunk was remapped meanwhile), the whole range is read into buf by a bio
 * (refilling) and the reply goes on from buf, at the byte where it was: a
 * write racing the read may show in part of it, as with any buffered
 * backing file. The bytes are only ever read by the kernel: a page past a
 * truncated end or with an I/O error makes sendmsg fail with EFAULT (never
 * a signal), and the read then fails: the rest of its data goes as zeros
 * and the trailing chunk becomes an ERROR chunk (hence the trailer: the
 * data chunk went out before we knew).
 *
 * A READ under NBD_MAP_MIN (4 KiB at QD 32 is what hypervisors send most)
 * goes mapped too, but as one OFFSET_DATA chunk flagged DONE, as a bio's
 * data would: a trailer chunk costs the client a third read per reply
 * (libnbd: 20 % fewer IOPS for fio at 4 KiB), and saving the pread
 * into buf is the point (0.91x server CPU per 4 KiB READ on tmpfs). The
 * price: such a READ cannot fail once its chunk header went. If its pages
 * fault after that, the connection closes (the client sees the READ fail,
 * never wrong bytes), and the export's small READs go through bios from
 * then on (a backing file cut under a live export is an operator's error;
 * the next connection gets EIO replies, as before).
 */
#define MAP_TRAILER	32	/* the trailing chunk's place in io->hdr */

static bool io_read_mapped(struct nbd_io *io)
{
	struct nbd_conn *c = io->c;
	struct blkdev *bd = c->exp->bd;
	uint64_t pos = io->req.offset, end = pos + io->req.len;
	struct blk_map m;

	if (!c->structured || c->tls_on || !bd->ops->map_read)
		return false;
	if (io->req.len < NBD_MAP_MIN && __atomic_load_n(&c->exp->no_small_map, __ATOMIC_RELAXED))
		return false;
	while (pos < end) {
		if (blk_map_read(bd, pos, end - pos, &m))
			return false;
		pos += m.len;
		blk_map_put(&m);
	}
	io->mapped = true;
	io->map_done = io->req.len < NBD_MAP_MIN;
	io->hdrlen = (uint32_t)nbd_sreply_offset_data(io->hdr, io->req.cookie, io->req.offset,
						      io->req.len, io->map_done);
	nbd_sreply_hdr(io->hdr + MAP_TRAILER, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE,
		       io->req.cookie, 0);
	io->dparts[0] = (struct iovec){ io->hdr, io->hdrlen };
	io->dparts[1] = (struct iovec){ io->buf, io->req.len };	/* mapped while io->mapped */
	io->dparts[2] = (struct iovec){ io->hdr + MAP_TRAILER, io->map_done ? 0 : NBD_SREPLY_HDR_LEN };
	io->parts = io->dparts;
	io->nparts = io->map_done ? 2 : 3;
	io->txlen = io->hdrlen + io->req.len + io->dparts[2].iov_len;
	io->txoff = 0;
	list_add_tail(&io->link, &c->txq);
	ev_defer(c->r->loop, &c->tx_task, tx_task_fn);
	return true;
}

/*
 * A mapped READ fails after its data chunk may have started: the data not
 * yet sent goes as zeros from buf, and an ERROR chunk ends the reply. One
 * without a trailer (map_done) becomes an ERROR chunk alone if nothing of
 * it went yet; once its header went it cannot fail in the protocol: false,
 * and the caller closes the connection.
 */
static bool io_read_fail(struct nbd_io *io, uint32_t err)
{
	size_t d = io->txoff > io->hdrlen ? io->txoff - io->hdrlen : 0;

	io->mapped = false;
	if (io->map_done) {
		struct nbd_export *exp = io->c->exp;

		if (!__atomic_exchange_n(&exp->no_small_map, true, __ATOMIC_RELAXED))
			LOG_WARN(LS_NBD, "%s: a mapped READ at %llu+%u failed; READs under %u "
				 "bytes go through bios from now on", exp->name,
				 (unsigned long long)io->req.offset, io->req.len, NBD_MAP_MIN);
		if (io->txoff)
			return false;
		io->hdrlen = (uint32_t)nbd_sreply_error(io->hdr, io->req.cookie, err ? err : NBD_EIO);
		io->dparts[0].iov_len = io->hdrlen;
		io->nparts = 1;
		io->txlen = io->hdrlen;
		return true;
	}
	memset(io->buf + d, 0, io->req.len - d);
	io->dparts[2].iov_len = nbd_sreply_error(io->hdr + MAP_TRAILER, io->req.cookie,
						 err ? err : NBD_EIO);
	io->txlen = io->hdrlen + io->req.len + io->dparts[2].iov_len;
	return true;
}

/* The data could not be mapped again: read it into buf; conn_tx waits. */
static void io_refill(struct nbd_io *io)
{
	struct nbd_conn *c = io->c;
	struct iovec iov = { .iov_base = io->buf, .iov_len = io->req.len };
	int rc;

	io->mapped = false;
	io->refilling = true;
	c->bios++;
	rc = blk_rw(c->xc->ch, BIO_READ, 0, &iov, 1, io->req.offset, io->req.len,
		    io_bio_end, io);
	if (rc) {
		/* no retry list for it: its link is on txq (backpressure here
		 * needs every bio of the channel out: rare) */
		c->bios--;
		io->refilling = false;
		if (!io_read_fail(io, nbd_errno(rc))) {
			conn_close(c, "a small READ failed after its reply started");
			return;
		}
		ev_defer(c->r->loop, &c->tx_task, tx_task_fn);
	}
}

/* The refill's bio ended (through io_bio_end and io_reply). */
static void io_refill_end(struct nbd_io *io, uint32_t err)
{
	io->refilling = false;
	if (err && !io_read_fail(io, err)) {
		conn_close(io->c, "a small READ failed after its reply started");
		return;
	}
	ev_defer(io->c->r->loop, &io->c->tx_task, tx_task_fn);
}

/* Build the reply in io->hdr (and point at the data) and queue it. */
static void io_reply(struct nbd_io *io, uint32_t err)
{
	struct nbd_conn *c = io->c;
	bool read = io->req.type == NBD_CMD_READ;

	if (io->refilling) {		/* its reply is already on txq */
		io_refill_end(io, err);
		return;
	}
	if (io->pending) {
		if (!io_part_end(io, err))
			return;		/* the other part is still out */
		err = io->perr;
	}
	io->datalen = 0;
	io->parts = NULL;
	if (c->structured && read) {
		if (err) {
			io->hdrlen = (uint32_t)nbd_sreply_error(io->hdr, io->req.cookie, err);
		} else if (!io->have_map || !io_read_chunks(io)) {
			io->hdrlen = (uint32_t)nbd_sreply_offset_data(io->hdr, io->req.cookie,
								      io->req.offset, io->req.len, true);
			io->datalen = io->req.len;
		}
	} else if (c->structured && io->req.type == NBD_CMD_BLOCK_STATUS && !err) {
		io->hdrlen = 0;		/* the chunks are in buf */
		io->datalen = io->stlen;
	} else if (c->structured && err) {
		io->hdrlen = (uint32_t)nbd_sreply_error(io->hdr, io->req.cookie, err);
	} else {
		io->hdrlen = (uint32_t)nbd_simple_reply(io->hdr, io->req.cookie, err);
		if (read && !err)
			io->datalen = io->req.len;
	}
	if (!io->parts) {
		io->dparts[0] = (struct iovec){ io->hdr, io->hdrlen };
		io->dparts[1] = (struct iovec){ io->buf, io->datalen };
		io->parts = io->dparts;
		io->nparts = 2;
		io->txlen = io->hdrlen + io->datalen;
	}
	io->txoff = 0;
	list_add_tail(&io->link, &c->txq);
	ev_defer(c->r->loop, &c->tx_task, tx_task_fn);
}

/* A request passed validation: do it. */
static void io_start(struct nbd_io *io)
{
	struct nbd_req *r = &io->req;
	uint32_t f = 0;

	if (r->flags & NBD_CMD_FLAG_FUA)
		f |= BIO_FUA;
	switch (r->type) {
	case NBD_CMD_READ:
		if (io_read_mapped(io))
			break;
		/* with structured replies, holes go as hole chunks: ask for
		 * the map alongside the read (devices that have one) */
		if (io->c->structured && io->c->exp->bd->ops->block_status) {
			io->pending = 2;
			if (io_map_query(io, BLK_STATUS_ALLOC, NULL, NBD_READ_SEGS, io_read_map_end))
				io->pending = 0;
		}
		io_submit(io, BIO_READ, 0);
		break;
	case NBD_CMD_WRITE:
		io_submit(io, BIO_WRITE, f);
		break;
	case NBD_CMD_FLUSH:
		io_submit(io, BIO_FLUSH, 0);
		break;
	case NBD_CMD_TRIM:
		io->then_flush = f & BIO_FUA;
		io_submit(io, BIO_DISCARD, 0);
		break;
	case NBD_CMD_WRITE_ZEROES:
		if (r->flags & NBD_CMD_FLAG_NO_HOLE)
			f |= BIO_NOUNMAP;
		io_submit(io, BIO_WRITE_ZEROES, f);
		break;
	case NBD_CMD_BLOCK_STATUS:
		io_bs_start(io);
		break;
	case NBD_CMD_CACHE:
		/* A hint to prefetch; we keep no cache, so there is nothing
		 * to do but say yes. */
	default:
		io_reply(io, NBD_SUCCESS);
		break;
	}
}

/* ================================================================ connections */

static void free_task_fn(struct ev_task *t)
{
	struct nbd_conn *c = container_of(t, struct nbd_conn, free_task);

	if (c->exp) {
		struct exp_chan *xc = c->xc;
		struct nbd_export *exp = c->exp;
		bool close_chan;

		pthread_mutex_lock(&srv.lock);
		exp->clients--;
		close_chan = --xc->users == 0 && exp->removing;
		export_put_locked(exp);
		pthread_mutex_unlock(&srv.lock);
		if (close_chan && xc->ch) {
			struct blkchan *ch = xc->ch;

			xc->ch = NULL;
			blk_chan_close(ch, NULL, NULL);	/* nothing of ours is in flight */
			pthread_mutex_lock(&srv.lock);
			export_put_locked(exp);
			pthread_mutex_unlock(&srv.lock);
		}
	}
	list_del(&c->link);
	while (!list_empty(&c->free_ios)) {
		struct nbd_io *io = list_first_entry(&c->free_ios, struct nbd_io, link);

		list_del(&io->link);
		free(io->buf);
		free(io->ext);
		free(io->xhdr);
		free(io->xparts);
		free(io);
		c->nios--;
	}
	if (c->nios)
		LOG_ERR(LS_NBD, "%s: freed with %u requests outstanding", c->peer, c->nios);
	free(c->rbuf);
	free(c->meta_name);
	free(c->meta_changed);
	if (c->tls)
		gnutls_deinit(c->tls);
	free(c->tls_buf);
	nbd_tls_put(c->tls_cfg);
	free(c);
	pthread_mutex_lock(&srv.lock);
	if (--srv.nconns == 0)
		pthread_cond_broadcast(&srv.cond);
	pthread_mutex_unlock(&srv.lock);
}

/*
 * Close the socket (once) and free the connection when no bio names it any
 * more. Safe to call again: with why == NULL it only re-checks.
 */
static void conn_close(struct nbd_conn *c, const char *why)
{
	if (!c->closed) {
		c->closed = true;
		if (why)
			LOG_DBG(LS_NBD, "%s: closing: %s", c->peer, why);
		ev_io_stop(c->r->loop, &c->io);
		if (c->tls_on && !c->tls_again)
			gnutls_bye(c->tls, GNUTLS_SHUT_WR);	/* nonblocking: best effort */
		close(c->fd);
		c->fd = -1;
		ev_timer_stop(c->r->loop, &c->timer);
		if (c->cur) {
			io_release(c->cur);
			c->cur = NULL;
		}
		while (!list_empty(&c->txq)) {
			struct nbd_io *io = list_first_entry(&c->txq, struct nbd_io, link);

			list_del(&io->link);
			if (!io->refilling)	/* else its bio's end releases it */
				io_release(io);
		}
		nbd_buf_free(&c->out);
		free(c->opt_data);
		c->opt_data = NULL;
		if (c->xc && !list_empty(&c->xc->retry))
			ev_defer(c->r->loop, &c->xc->retry_task, retry_task_fn);
	}
	if (c->bios == 0 && !c->free_queued) {
		c->free_queued = true;
		ev_defer(c->r->loop, &c->free_task, free_task_fn);
	}
}

static void timer_fn(struct ev_timer *t)
{
	struct nbd_conn *c = container_of(t, struct nbd_conn, timer);

	conn_close(c, c->transmission ? "drain timed out" : "handshake timed out");
}

/* Close when asked to finish and nothing is left to answer. */
static void conn_maybe_finish(struct nbd_conn *c)
{
	if (c->finishing && !c->closed && c->inflight == 0 &&
	    c->out_off >= c->out.len && list_empty(&c->txq))
		conn_close(c, "finished");
}

/* Stop reading; answer what is in flight, then close. */
static void conn_drain(struct nbd_conn *c)
{
	if (c->closed)
		return;
	if (!c->transmission) {
		conn_close(c, "server going away");
		return;
	}
	c->rx = RX_STOP;
	if (c->cur) {		/* a write payload half received: drop it */
		io_release(c->cur);
		c->cur = NULL;
	}
	c->finishing = true;
	ev_timer_start(c->r->loop, &c->timer, DRAIN_TIMEOUT_NS, timer_fn);
	conn_maybe_finish(c);
}

/* ---------------------------------------------------------------- tx */

/* w bytes of the reply stream (c->out, then the txq) have gone out. */
static void tx_advance(struct nbd_conn *c, size_t w)
{
	if (c->out_off < c->out.len) {
		size_t k = MIN(w, c->out.len - c->out_off);

		c->out_off += k;
		w -= k;
		if (c->out_off == c->out.len) {
			c->out.len = 0;
			c->out_off = 0;
			if (c->transmission)
				nbd_buf_free(&c->out);
		}
	}
	while (w && !list_empty(&c->txq)) {
		struct nbd_io *io = list_first_entry(&c->txq, struct nbd_io, link);
		size_t left = io->txlen - io->txoff;

		if (w < left) {
			io->txoff += w;
			break;
		}
		w -= left;
		list_del(&io->link);
		io_release(io);
	}
}

/*
 * Under TLS, the plaintext of the next record (TLS_REC bytes at most): a
 * large payload is sent from the reply's own buffer; headers, small
 * payloads and the ends of large ones are gathered into tls_buf, so that
 * many small replies make one record (and one send).
 */
static size_t tls_tx_gather(struct nbd_conn *c)
{
	struct list_head *pos;
	size_t len = 0, k;

	if (c->out_off < c->out.len) {
		len = MIN(c->out.len - c->out_off, (size_t)TLS_REC);
		memcpy(c->tls_buf, c->out.p + c->out_off, len);
	}
	list_for_each(pos, &c->txq) {
		struct nbd_io *io = list_entry(pos, struct nbd_io, link);
		size_t off = io->txoff;

		for (int i = 0; i < io->nparts && len < TLS_REC; i++) {
			const struct iovec *pt = &io->parts[i];

			if (off >= pt->iov_len) {
				off -= pt->iov_len;
				continue;
			}
			if (len == 0 && pt->iov_len - off >= TLS_REC) {
				c->tls_ptr = (const uint8_t *)pt->iov_base + off;
				return TLS_REC;
			}
			k = MIN(pt->iov_len - off, TLS_REC - len);
			memcpy(c->tls_buf + len, (const uint8_t *)pt->iov_base + off, k);
			len += k;
			off = 0;
		}
		if (len == TLS_REC)
			break;
	}
	c->tls_ptr = c->tls_buf;
	return len;
}

static void conn_tx_tls(struct nbd_conn *c)
{
	while (!c->closed && (c->tls_again || c->out_off < c->out.len || !list_empty(&c->txq))) {
		ssize_t n;

		if (!c->tls_again)
			c->tls_len = tls_tx_gather(c);
		/* After EAGAIN the record is already sealed inside GnuTLS: the
		 * same call again sends the rest of it. */
		n = gnutls_record_send(c->tls, c->tls_ptr, c->tls_len);
		if (n == GNUTLS_E_INTERRUPTED) {
			c->tls_again = true;
			continue;
		}
		if (n == GNUTLS_E_AGAIN) {
			c->tls_again = true;
			return;		/* EV_WRITE brings us back */
		}
		c->tls_again = false;
		if (n < 0) {
			conn_close(c, gnutls_strerror((int)n));
			return;
		}
		tx_advance(c, (size_t)n);
	}
	if (!c->closed)
		conn_maybe_finish(c);
}

/*
 * A mapped READ's data from off on, into iov as maps (each one entry, pinned
 * in maps[] until the caller's sendmsg returned). True when the iovec must
 * end here: the data could not all be mapped now (the rest next time), or
 * not at all, and then, when nothing goes before it, it is refilled.
 */
static bool tx_add_mapped(struct nbd_conn *c, struct nbd_io *io, size_t off,
			  struct iovec *iov, int *cnt, struct blk_map *maps, int *nmaps)
{
	struct blkdev *bd = c->exp->bd;
	size_t len = io->req.len;

	while (off < len && *cnt < TX_IOV_MAX) {
		struct blk_map *m = &maps[*nmaps];

		if (blk_map_read(bd, io->req.offset + off, len - off, m))
			break;
		(*nmaps)++;
		iov[*cnt].iov_base = (void *)m->addr;
		iov[(*cnt)++].iov_len = m->len;
		off += m->len;
	}
	if (off == len)
		return false;
	if (*cnt == 0)
		io_refill(io);
	return true;
}

/* sendmsg said EFAULT: the kernel could not read a mapped page (the file
 * truncated under us, an I/O error). Nothing of that call went, so the
 * first mapped READ with data still to send is the one (or lies before the
 * one): it fails, and the send goes on. False if there is none, or if it
 * cannot fail in the protocol any more (io_read_fail): the caller closes. */
static bool tx_fault(struct nbd_conn *c)
{
	struct list_head *pos;

	list_for_each(pos, &c->txq) {
		struct nbd_io *io = list_entry(pos, struct nbd_io, link);

		if (io->mapped && io->txoff < io->hdrlen + io->req.len) {
			LOG_RATELIMIT(LOG_WARN, LS_NBD, "%s: READ at %llu+%u: bad address in the mapped backing file",
				      c->exp->name, (unsigned long long)io->req.offset, io->req.len);
			return io_read_fail(io, NBD_EIO);
		}
	}
	return false;
}

static void conn_tx(struct nbd_conn *c)
{
	if (c->tls_on) {
		conn_tx_tls(c);
		return;
	}
	while (!c->closed && (c->out_off < c->out.len || !list_empty(&c->txq))) {
		struct iovec iov[TX_IOV_MAX];
		struct blk_map maps[TX_MAPS_MAX];	/* pinned until sendmsg returned */
		struct msghdr m = { .msg_iov = iov };
		struct list_head *pos;
		ssize_t n;
		int cnt = 0, nmaps = 0, err;
		bool stop = false;

		if (c->out_off < c->out.len) {
			iov[cnt].iov_base = c->out.p + c->out_off;
			iov[cnt++].iov_len = c->out.len - c->out_off;
		}
		list_for_each(pos, &c->txq) {
			struct nbd_io *io = list_entry(pos, struct nbd_io, link);
			size_t off = io->txoff;

			if (io->refilling)
				break;		/* nothing after it may go before it */
			for (int i = 0; i < io->nparts && cnt < TX_IOV_MAX && !stop; i++) {
				const struct iovec *pt = &io->parts[i];

				if (off >= pt->iov_len) {
					off -= pt->iov_len;
					continue;
				}
				if (i == 1 && io->mapped) {
					stop = tx_add_mapped(c, io, off, iov, &cnt, maps, &nmaps);
					off = 0;
					continue;
				}
				iov[cnt].iov_base = (uint8_t *)pt->iov_base + off;
				iov[cnt++].iov_len = pt->iov_len - off;
				off = 0;
			}
			if (cnt == TX_IOV_MAX || stop)
				break;
		}
		if (!cnt)
			return;		/* the head is refilling: its end brings us back */
		m.msg_iovlen = (size_t)cnt;
		n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
		err = errno;
		for (int i = 0; i < nmaps; i++)
			blk_map_put(&maps[i]);
		if (n < 0) {
			if (err == EINTR)
				continue;
			if (err == EAGAIN || err == EWOULDBLOCK)
				return;		/* EV_WRITE brings us back */
			if (err == EFAULT && nmaps && tx_fault(c))
				continue;
			conn_close(c, strerror(err));
			return;
		}
		tx_advance(c, (size_t)n);
	}
	if (c->closed)
		return;
	/* STARTTLS's ACK is out in clear: the handshake can start. */
	if (c->rx == RX_TLS_HS && c->out_off >= c->out.len)
		ev_defer(c->r->loop, &c->rx_task, rx_task_fn);
	conn_maybe_finish(c);
}

/* ---------------------------------------------------------------- handshake */

static void rx_expect(struct nbd_conn *c, enum rx_state st, uint64_t need, uint8_t *dst)
{
	c->rx = st;
	c->need = need;
	c->got = 0;
	c->dst = dst;
}

/* Attach to an export found under srv.lock (which the caller holds). */
static int conn_attach_locked(struct nbd_conn *c, struct nbd_export *exp)
{
	struct exp_chan *xc = &exp->xc[c->r->idx];

	if (!xc->ch) {
		int rc = blk_chan_open(exp->bd, c->r->loop, &xc->ch);

		if (rc) {
			LOG_RATELIMIT(LOG_ERROR, LS_NBD, "%s: cannot open a channel: %s",
				      exp->name, strerror(-rc));
			return rc;
		}
		exp->refs++;
	}
	xc->users++;
	exp->refs++;
	exp->clients++;
	c->exp = exp;
	c->xc = xc;
	return 0;
}

static void conn_enter_transmission(struct nbd_conn *c, const char *name, size_t len)
{
	struct nbd_export *exp = c->exp;

	/* Contexts chosen for another export name do not carry over. */
	if ((c->meta || c->meta_changed) &&
	    (strlen(c->meta_name) != len || memcmp(c->meta_name, name, len))) {
		c->meta = false;
		free(c->meta_changed);
		c->meta_changed = NULL;
	}
	c->lim.size = exp->bd->size;
	c->lim.min_block = exp->bd->block_size;
	c->lim.max_payload = NBD_MAX_PAYLOAD;
	c->lim.tflags = export_tflags(exp, c->structured);
	c->lim.structured = c->structured;
	c->lim.meta = c->meta || c->meta_changed;
	c->transmission = true;
	ev_timer_stop(c->r->loop, &c->timer);
	LOG_DBG(LS_NBD, "%s: serving %s", c->peer, exp->name);
	rx_expect(c, RX_REQ_HDR, NBD_REQ_LEN, c->hdr);
}

static void opt_info(struct nbd_conn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
	struct nbd_info_req ir;
	struct nbd_export *exp;
	bool want_name = false, want_desc = false;
	int rc;

	if (nbd_parse_info_req(data, len, &ir)) {
		nbd_rep_err(&c->out, opt, NBD_REP_ERR_INVALID, "malformed request");
		return;
	}
	for (unsigned i = 0; i < ir.nreqs; i++) {
		uint16_t t = nbd_info_req_type(&ir, i);

		want_name |= t == NBD_INFO_NAME;
		want_desc |= t == NBD_INFO_DESCRIPTION;
	}
	pthread_mutex_lock(&srv.lock);
	exp = export_find_locked(ir.name, ir.name_len);
	if (__atomic_load_n(&srv.shutting_down, __ATOMIC_ACQUIRE)) {
		pthread_mutex_unlock(&srv.lock);
		nbd_rep_err(&c->out, opt, NBD_REP_ERR_SHUTDOWN, "server shutting down");
		return;
	}
	if (!exp) {
		pthread_mutex_unlock(&srv.lock);
		nbd_rep_err(&c->out, opt, NBD_REP_ERR_UNKNOWN, "no such export");
		return;
	}
	if (!export_allows(exp, &c->peer_sa)) {
		pthread_mutex_unlock(&srv.lock);
		LOG_DBG(LS_NBD, "%s: not allowed to use %s", c->peer, exp->name);
		nbd_rep_err(&c->out, opt, NBD_REP_ERR_POLICY, "not allowed from this address");
		return;
	}
	if (opt == NBD_OPT_GO && (rc = conn_attach_locked(c, exp))) {
		pthread_mutex_unlock(&srv.lock);
		nbd_rep_err(&c->out, opt, NBD_REP_ERR_PLATFORM, strerror(-rc));
		return;
	}
	nbd_rep_info_export(&c->out, opt, exp->bd->size, export_tflags(exp, c->structured));
	if (want_name)
		nbd_rep_info_string(&c->out, opt, NBD_INFO_NAME, exp->name);
	if (want_desc && exp->desc && exp->desc[0])
		nbd_rep_info_string(&c->out, opt, NBD_INFO_DESCRIPTION, exp->desc);
	/* Always sent: clients that did not ask learn our alignment anyway,
	 * and unaligned requests are refused with EINVAL. */
	nbd_rep_info_block_size(&c->out, opt, exp->bd->block_size,
				MAX(exp->bd->block_size, 4096u), NBD_MAX_PAYLOAD);
	nbd_rep_ack(&c->out, opt);
	pthread_mutex_unlock(&srv.lock);
	if (opt == NBD_OPT_GO)
		conn_enter_transmission(c, ir.name, ir.name_len);
}

/* "sand:changed:SNAP" for a snapshot SNAP of the export's volume: SNAP
 * (malloc'd), else NULL. Called under srv.lock. */
static char *meta_changed_query(struct nbd_export *exp, const char *q, uint32_t ql)
{
	size_t pl = sizeof(NBD_META_SAND_CHANGED) - 1;
	char *snap;

	if (ql <= pl || memcmp(q, NBD_META_SAND_CHANGED, pl) || memchr(q + pl, 0, ql - pl))
		return NULL;
	snap = strndup(q + pl, ql - pl);
	if (snap && blkdev_status_base(exp->bd, snap)) {
		free(snap);
		snap = NULL;
	}
	return snap;
}

/* LIST: every sand:changed:SNAP the export can answer, into c->out. */
struct meta_list {
	struct nbd_buf	*out;
	uint32_t	opt;
};

static void meta_list_base(void *arg, const char *base)
{
	struct meta_list *ml = arg;
	char name[NBD_MAX_STRING + 1];

	if (snprintf(name, sizeof(name), "%s%s", NBD_META_SAND_CHANGED, base) < (int)sizeof(name))
		nbd_rep_meta_context(ml->out, ml->opt, 0, name);
}

/* A LIST query for the whole sand namespace, or all of sand:changed: */
static bool meta_query_all_changed(const char *q, uint32_t ql)
{
	return (ql == 5 && !memcmp(q, "sand:", 5)) ||
	       (ql == sizeof(NBD_META_SAND_CHANGED) - 1 &&
		!memcmp(q, NBD_META_SAND_CHANGED, ql));
}

/*
 * LIST and SET_META_CONTEXT. Two contexts: base:allocation, and
 * sand:changed:SNAP when SNAP is a snapshot of the export's volume (one
 * SNAP per session: the first that names one). A query for anything else,
 * an unknown snapshot included, selects nothing: the reply simply does not
 * name it, as the protocol says. LIST with no query, or with "sand:" or
 * "sand:changed:", names every snapshot the export can be compared with.
 */
static void opt_meta(struct nbd_conn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
	bool list = opt == NBD_OPT_LIST_META_CONTEXT;
	struct nbd_meta_req mr;
	struct nbd_export *exp;
	bool found, allowed, match = false, all_changed = false;
	struct meta_list ml = { .out = &c->out, .opt = opt };
	char *changed = NULL, *cname = NULL;
	uint32_t pos = 0, ql;
	const char *q;

	if (!c->structured) {
		nbd_rep_err(&c->out, opt, NBD_REP_ERR_INVALID, "structured replies first");
		return;
	}
	if (nbd_parse_meta_req(data, len, &mr)) {
		nbd_rep_err(&c->out, opt, NBD_REP_ERR_INVALID, "malformed request");
		return;
	}
	pthread_mutex_lock(&srv.lock);
	exp = export_find_locked(mr.name, mr.name_len);
	found = exp != NULL;
	allowed = exp && export_allows(exp, &c->peer_sa);
	if (found && allowed) {
		if (list && mr.nqueries == 0)
			match = all_changed = true;	/* list everything we can name */
		while (nbd_meta_next(&mr, &pos, &q, &ql)) {
			match |= nbd_meta_query_matches(q, ql, list);
			all_changed |= list && meta_query_all_changed(q, ql);
			if (!changed)
				changed = meta_changed_query(exp, q, ql);
		}
		if (all_changed) {
			free(changed);		/* listed with the rest */
			changed = NULL;
			blkdev_status_bases(exp->bd, meta_list_base, &ml);
		}
	}
	pthread_mutex_unlock(&srv.lock);
	if (!found) {
		nbd_rep_err(&c->out, opt, NBD_REP_ERR_UNKNOWN, "no such export");
		return;
	}
	if (!allowed) {
		nbd_rep_err(&c->out, opt, NBD_REP_ERR_POLICY, "not allowed from this address");
		return;
	}
	if (changed && asprintf(&cname, "%s%s", NBD_META_SAND_CHANGED, changed) < 0)
		cname = NULL;
	if (changed && !cname) {
		free(changed);
		nbd_rep_err(&c->out, opt, NBD_REP_ERR_PLATFORM, "out of memory");
		return;
	}
	if (!list) {
		char *name = strndup(mr.name, mr.name_len);

		if (!name) {
			free(changed);
			free(cname);
			nbd_rep_err(&c->out, opt, NBD_REP_ERR_PLATFORM, "out of memory");
			return;
		}
		free(c->meta_name);
		c->meta_name = name;
		c->meta = match;
		free(c->meta_changed);
		c->meta_changed = changed;
	} else {
		free(changed);
	}
	if (match)
		nbd_rep_meta_context(&c->out, opt, list ? 0 : NBD_META_ID_BASE_ALLOCATION,
				     NBD_META_BASE_ALLOCATION);
	if (cname)
		nbd_rep_meta_context(&c->out, opt, list ? 0 : NBD_META_ID_SAND_CHANGED, cname);
	free(cname);
	nbd_rep_ack(&c->out, opt);
}

/* LIST: the exports this client may use. */
static void opt_list(struct nbd_conn *c)
{
	struct list_head *pos;

	pthread_mutex_lock(&srv.lock);
	list_for_each(pos, &srv.exports) {
		struct nbd_export *e = list_entry(pos, struct nbd_export, link);

		if (!e->removing && export_allows(e, &c->peer_sa))
			nbd_rep_server(&c->out, NBD_OPT_LIST, e->name, e->desc);
	}
	pthread_mutex_unlock(&srv.lock);
	nbd_rep_ack(&c->out, NBD_OPT_LIST);
}

/* STARTTLS: acknowledge in clear; the handshake starts once that is out. */
static void opt_starttls(struct nbd_conn *c, uint32_t len)
{
	if (len) {
		nbd_rep_err(&c->out, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "takes no data");
	} else if (!c->tls_cfg) {
		nbd_rep_err(&c->out, NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY,
			    "TLS is not offered on this listener");
	} else if (c->tls) {
		nbd_rep_err(&c->out, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "TLS is on already");
	} else if (c->rpos < c->rlen) {
		conn_close(c, "data after STARTTLS before its reply");
	} else if ((!c->tls_buf && !(c->tls_buf = malloc(TLS_REC))) ||
		   nbd_tls_session(c->tls_cfg, c->fd, &c->tls)) {
		nbd_rep_err(&c->out, NBD_OPT_STARTTLS, NBD_REP_ERR_PLATFORM, "out of memory");
	} else {
		/* Nothing negotiated in clear carries over. */
		c->structured = false;
		c->meta = false;
		free(c->meta_changed);
		c->meta_changed = NULL;
		nbd_rep_ack(&c->out, NBD_OPT_STARTTLS);
		c->rx = RX_TLS_HS;
	}
}

/* The handshake, driven by readiness. 0 when done, 1 to wait (or closed). */
static int conn_tls_handshake(struct nbd_conn *c)
{
	int rc;

	if (c->out_off < c->out.len)
		return 1;	/* the ACK first: conn_tx resumes us */
	do {
		rc = gnutls_handshake(c->tls);
	} while (rc == GNUTLS_E_INTERRUPTED);
	if (rc == GNUTLS_E_AGAIN)
		return 1;	/* gnutls_record_get_direction() says for what */
	if (rc < 0) {
		LOG_RATELIMIT(LOG_WARN, LS_NBD, "%s: tls handshake: %s", c->peer,
			      gnutls_strerror(rc));
		conn_close(c, "tls handshake failed");
		return 1;
	}
	c->tls_on = true;
	if (log_debug_on(LS_NBD)) {
		char *desc = gnutls_session_get_desc(c->tls);

		LOG_DBG(LS_NBD, "%s: tls on: %s", c->peer, desc ? desc : "?");
		gnutls_free(desc);
	}
	rx_expect(c, RX_OPT_HDR, NBD_OPT_HDR_LEN, c->hdr);
	return 0;
}

/* An option's payload is in; answer it. Returns 1 if rx must stop. */
static int conn_option(struct nbd_conn *c)
{
	uint32_t opt = c->opt.opt, len = c->opt.len;
	const uint8_t *data = c->opt_data;
	struct nbd_export *exp;
	int stop = 0;

	LOG_DBG(LS_NBD, "%s: option %s (%u bytes)", c->peer, nbd_opt_name(opt), len);
	if (c->tls_cfg && c->tls_cfg->mode == NBD_TLS_REQUIRE && !c->tls_on &&
	    opt != NBD_OPT_STARTTLS && opt != NBD_OPT_ABORT) {
		if (opt == NBD_OPT_EXPORT_NAME) {
			conn_close(c, "export_name before TLS");
			return 1;
		}
		nbd_rep_err(&c->out, opt, NBD_REP_ERR_TLS_REQD, "TLS is required");
		opt = 0;	/* answered */
	}
	switch (opt) {
	case 0:
		break;
	case NBD_OPT_EXPORT_NAME:
		pthread_mutex_lock(&srv.lock);
		exp = export_find_locked((const char *)data, len);
		if (!exp || __atomic_load_n(&srv.shutting_down, __ATOMIC_ACQUIRE) ||
		    !export_allows(exp, &c->peer_sa) || conn_attach_locked(c, exp)) {
			pthread_mutex_unlock(&srv.lock);
			/* This option cannot fail politely: drop the session. */
			conn_close(c, "export_name: no such export");
			return 1;
		}
		nbd_export_name_reply(&c->out, exp->bd->size, export_tflags(exp, c->structured),
				      c->cflags & NBD_FLAG_C_NO_ZEROES);
		pthread_mutex_unlock(&srv.lock);
		conn_enter_transmission(c, (const char *)data, len);
		break;
	case NBD_OPT_ABORT:
		nbd_rep_ack(&c->out, opt);
		c->rx = RX_STOP;
		c->finishing = true;
		stop = 1;
		break;
	case NBD_OPT_LIST:
		if (len) {
			nbd_rep_err(&c->out, opt, NBD_REP_ERR_INVALID, "list takes no data");
			break;
		}
		opt_list(c);
		break;
	case NBD_OPT_STARTTLS:
		opt_starttls(c, len);
		if (c->closed)
			return 1;
		break;
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		opt_info(c, opt, data, len);
		break;
	case NBD_OPT_STRUCTURED_REPLY:
		if (len) {
			nbd_rep_err(&c->out, opt, NBD_REP_ERR_INVALID, "takes no data");
			break;
		}
		c->structured = true;
		nbd_rep_ack(&c->out, opt);
		break;
	case NBD_OPT_LIST_META_CONTEXT:
	case NBD_OPT_SET_META_CONTEXT:
		opt_meta(c, opt, data, len);
		break;
	default:
		nbd_rep_err(&c->out, opt, NBD_REP_ERR_UNSUP, "unsupported option");
		break;
	}
	free(c->opt_data);
	c->opt_data = NULL;
	if (c->out.oom) {
		conn_close(c, "out of memory");
		return 1;
	}
	if (!c->transmission && !stop && c->rx != RX_TLS_HS)
		rx_expect(c, RX_OPT_HDR, NBD_OPT_HDR_LEN, c->hdr);
	conn_tx(c);
	return stop || c->closed;
}

/* ---------------------------------------------------------------- rx */

static int conn_request(struct nbd_conn *c)
{
	struct nbd_req req;
	struct nbd_io *io;
	uint32_t err;

	if (nbd_req_parse(c->hdr, &req)) {
		LOG_RATELIMIT(LOG_WARN, LS_NBD, "%s: bad request magic, dropping the connection",
			      c->peer);
		conn_close(c, "bad request magic");
		return 1;
	}
	if (req.type == NBD_CMD_DISC) {		/* no reply, whatever its flags */
		LOG_DBG(LS_NBD, "%s: disconnect", c->peer);
		c->rx = RX_STOP;
		c->finishing = true;
		conn_maybe_finish(c);
		return 1;
	}
	err = nbd_req_validate(&req, &c->lim);
	io = io_get(c);
	if (!io) {
		conn_close(c, "out of memory");
		return 1;
	}
	io->req = req;
	if (!err && (req.type == NBD_CMD_READ || req.type == NBD_CMD_WRITE)) {
		if (io_buf_reserve(io, req.len)) {
			err = NBD_ENOMEM;
		} else {
			io->acct = req.len;
			c->inflight_bytes += req.len;
		}
	}
	if (err) {
		LOG_DBG(LS_NBD, "%s: %s at %llu+%u refused: error %u", c->peer,
			nbd_cmd_name(req.type), (unsigned long long)req.offset, req.len, err);
		if (req.type == NBD_CMD_WRITE) {
			/* The payload follows anyway: read and drop it. */
			io->err = err;
			c->cur = io;
			rx_expect(c, RX_REQ_SKIP, req.len, NULL);
			return 0;
		}
		io_reply(io, err);
	} else if (req.type == NBD_CMD_WRITE) {
		c->cur = io;
		rx_expect(c, RX_REQ_DATA, req.len, io->buf);
		return 0;
	} else {
		io_start(io);
	}
	rx_expect(c, RX_REQ_HDR, NBD_REQ_LEN, c->hdr);
	return 0;
}

/* A unit (header, payload ...) is complete. Returns 1 to stop reading. */
static int conn_unit_done(struct nbd_conn *c)
{
	struct nbd_io *io;

	switch (c->rx) {
	case RX_CFLAGS:
		if (nbd_parse_client_flags(c->hdr, &c->cflags)) {
			conn_close(c, "client is not fixed newstyle, or sent unknown flags");
			return 1;
		}
		rx_expect(c, RX_OPT_HDR, NBD_OPT_HDR_LEN, c->hdr);
		return 0;
	case RX_OPT_HDR:
		if (nbd_parse_opt_hdr(c->hdr, &c->opt)) {
			conn_close(c, "bad option magic");
			return 1;
		}
		if (c->opt.len > NBD_OPT_MAX_LEN) {
			if (c->opt.opt == NBD_OPT_EXPORT_NAME) {
				conn_close(c, "export name too long");
				return 1;
			}
			rx_expect(c, RX_OPT_SKIP, c->opt.len, NULL);
			return 0;
		}
		c->opt_data = malloc(c->opt.len + 1);
		if (!c->opt_data) {
			conn_close(c, "out of memory");
			return 1;
		}
		c->opt_data[c->opt.len] = 0;
		rx_expect(c, RX_OPT_DATA, c->opt.len, c->opt_data);
		return 0;
	case RX_OPT_SKIP:
		nbd_rep_err(&c->out, c->opt.opt, NBD_REP_ERR_TOO_BIG, "option too long");
		rx_expect(c, RX_OPT_HDR, NBD_OPT_HDR_LEN, c->hdr);
		conn_tx(c);
		return c->closed;
	case RX_OPT_DATA:
		return conn_option(c);
	case RX_REQ_HDR:
		return conn_request(c);
	case RX_REQ_DATA:
		io = c->cur;
		c->cur = NULL;
		rx_expect(c, RX_REQ_HDR, NBD_REQ_LEN, c->hdr);
		io_start(io);
		return 0;
	case RX_REQ_SKIP:
		io = c->cur;
		c->cur = NULL;
		rx_expect(c, RX_REQ_HDR, NBD_REQ_LEN, c->hdr);
		io_reply(io, io->err);
		return 0;
	case RX_STOP:
	default:
		return 1;
	}
}

/* recv(), or a TLS record's plaintext once TLS is on (errno as recv's).
 * GnuTLS may hold plaintext the socket no longer signals: rx always reads
 * until EAGAIN, or is resumed by a task, never by readiness alone. */
static ssize_t conn_recv(struct nbd_conn *c, void *buf, size_t len)
{
	ssize_t n;

	if (!c->tls_on)
		return recv(c->fd, buf, len, 0);
	n = gnutls_record_recv(c->tls, buf, len);
	if (n >= 0)
		return n;
	if (n == GNUTLS_E_AGAIN) {
		errno = EAGAIN;
	} else if (n == GNUTLS_E_INTERRUPTED) {
		errno = EINTR;
	} else if (n == GNUTLS_E_PREMATURE_TERMINATION) {
		return 0;	/* closed without close_notify: an EOF */
	} else {
		LOG_DBG(LS_NBD, "%s: tls: %s", c->peer, gnutls_strerror((int)n));
		errno = EPROTO;
	}
	return -1;
}

static void conn_rx(struct nbd_conn *c)
{
	for (;;) {
		uint64_t want;
		ssize_t n;

		if (c->closed || c->rx == RX_STOP)
			return;
		if (c->rx == RX_TLS_HS) {
			if (conn_tls_handshake(c))
				return;
			continue;
		}
		if (c->got == c->need) {
			if (conn_unit_done(c))
				return;
			continue;
		}
		if (c->rx == RX_REQ_HDR && c->got == 0 && conn_over_limit(c)) {
			c->rx_blocked = true;	/* io_release() resumes us */
			return;
		}
		want = c->need - c->got;
		if (c->rpos < c->rlen) {		/* from what we already have */
			size_t k = (size_t)MIN(want, (uint64_t)(c->rlen - c->rpos));

			if (c->dst)
				memcpy(c->dst + c->got, c->rbuf + c->rpos, k);
			c->rpos += k;
			c->got += k;
			continue;
		}
		/*
		 * A recv that came back short emptied the socket; what comes
		 * after it raises a new readiness (the multishot poll and
		 * EPOLLET fire for every arrival), so the recv that would
		 * only say EAGAIN is not made (~0.3 us, 0.5-0.7 per 4 KiB
		 * request). Not with TLS: GnuTLS may hold a record read ahead.
		 */
		if (c->drained && !c->tls_on)
			return;
		if (c->dst && want >= RBUF_SIZE / 2) {	/* big payload: straight in */
			n = conn_recv(c, c->dst + c->got, (size_t)want);
			if (n > 0)
				c->got += (uint64_t)n;
			c->drained = n > 0 && (uint64_t)n < want && !c->tls_on;
		} else {
			c->rpos = c->rlen = 0;
			n = conn_recv(c, c->rbuf, RBUF_SIZE);
			if (n > 0)
				c->rlen = (size_t)n;
			c->drained = n > 0 && n < RBUF_SIZE && !c->tls_on;
		}
		if (n == 0) {
			conn_close(c, c->rx == RX_REQ_HDR && c->got == 0 ? "client closed" :
				   "client closed mid-message");
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_close(c, strerror(errno));
			return;
		}
	}
}

static void conn_io_fn(struct ev_io *w, uint32_t revents)
{
	struct nbd_conn *c = container_of(w, struct nbd_conn, io);

	if (c->rx == RX_TLS_HS) {
		/* Only the readiness the handshake waits for moves it on. */
		uint32_t want = c->tls && gnutls_record_get_direction(c->tls) ? EV_WRITE : EV_READ;

		if ((revents & EV_WRITE) && c->out_off < c->out.len)
			conn_tx(c);
		if (!c->closed && (revents & (want | EV_HUP | EV_ERROR)))
			conn_rx(c);
		return;
	}
	if ((revents & EV_WRITE) && (c->out_off < c->out.len || !list_empty(&c->txq)))
		conn_tx(c);
	if (revents & (EV_READ | EV_HUP | EV_ERROR))
		c->drained = false;
	if (!c->closed && (revents & (EV_READ | EV_HUP | EV_ERROR)))
		conn_rx(c);
	if (!c->closed && (revents & (EV_HUP | EV_ERROR)) && c->rx == RX_STOP)
		conn_close(c, "hangup");
}

/* Takes over fd and a reference to tls (may be NULL). */
static void conn_new(struct nbd_reactor *r, int fd, struct nbd_tls *tls)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct nbd_conn *c;
	int one = 1;

	c = calloc(1, sizeof(*c));
	if (!c || !(c->rbuf = malloc(RBUF_SIZE))) {
		free(c);
		close(fd);
		nbd_tls_put(tls);
		LOG_RATELIMIT(LOG_ERROR, LS_NBD, "out of memory for a connection");
		return;
	}
	c->r = r;
	c->fd = fd;
	c->tls_cfg = tls;
	list_init(&c->free_ios);
	list_init(&c->txq);
	/* TCP only (these fail harmlessly on unix sockets): no Nagle delay on
	 * replies, and a client that vanishes without a FIN is noticed: by
	 * keepalive when idle, by the user timeout when our data goes unacked. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &(int){ KEEPALIVE_IDLE_S }, sizeof(int));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &(int){ KEEPALIVE_INTVL_S }, sizeof(int));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &(int){ KEEPALIVE_CNT }, sizeof(int));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &(unsigned){ USER_TIMEOUT_MS },
		   sizeof(unsigned));
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family != AF_UNIX) {
		char host[INET6_ADDRSTRLEN], port[8];

		c->peer_sa = ss;
		if (getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port),
				NI_NUMERICHOST | NI_NUMERICSERV) == 0)
			snprintf(c->peer, sizeof(c->peer), "%s:%s", host, port);
	}
	if (!c->peer[0])
		snprintf(c->peer, sizeof(c->peer), "unix:fd%d", fd);
	/* Watched for both directions for life: writability only wakes us
	 * after a send hit EAGAIN, and changing the interest set on the fly
	 * would cost a poll re-arm each time the socket fills. */
	if (ev_io_start(r->loop, &c->io, fd, EV_READ | EV_WRITE, conn_io_fn)) {
		close(fd);
		free(c->rbuf);
		nbd_tls_put(tls);
		free(c);
		return;
	}
	pthread_mutex_lock(&srv.lock);
	srv.nconns++;
	pthread_mutex_unlock(&srv.lock);
	list_add_tail(&c->link, &r->conns);
	LOG_DBG(LS_NBD, "%s: connected on reactor %u", c->peer, r->idx);
	ev_timer_start(r->loop, &c->timer, HANDSHAKE_TIMEOUT_NS, timer_fn);
	{
		uint8_t g[NBD_GREETING_LEN];

		nbd_buf_append(&c->out, g, nbd_build_greeting(g));
		if (c->out.oom) {
			conn_close(c, "out of memory");
			return;
		}
	}
	rx_expect(c, RX_CFLAGS, NBD_CFLAGS_LEN, c->hdr);
	conn_tx(c);
	if (!c->closed)
		conn_rx(c);
}

struct conn_msg {
	int		fd;
	struct nbd_tls	*tls;
};

static void conn_new_msg(void *arg)
{
	struct conn_msg *m = arg;
	int self = reactor_self();

	if (__atomic_load_n(&srv.shutting_down, __ATOMIC_ACQUIRE) || self < 0 || !srv.r) {
		close(m->fd);
		nbd_tls_put(m->tls);
	} else {
		conn_new(&srv.r[self], m->fd, m->tls);
	}
	free(m);
}

/* ================================================================ listeners */

static void accept_fn(struct ev_io *w, uint32_t revents);

static void accept_retry_fn(struct ev_timer *t)
{
	struct nbd_listener *l = container_of(t, struct nbd_listener, retry);

	accept_fn(&l->io, EV_READ);
}

static void accept_fn(struct ev_io *w, uint32_t revents)
{
	struct nbd_listener *l = container_of(w, struct nbd_listener, io);

	(void)revents;
	for (;;) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		unsigned i;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* EMFILE, ENFILE, ENOBUFS...: the socket stays readable
			 * but edge-triggered readiness will not tell us again. */
			LOG_RATELIMIT(LOG_WARN, LS_NBD, "accept on %s: %s", l->bound, strerror(errno));
			ev_timer_start(reactor_loop(l->ridx), &l->retry, 100000000ull, accept_retry_fn);
			return;
		}
		i = reactor_next();
		if ((int)i == reactor_self()) {
			conn_new(&srv.r[i], fd, nbd_tls_get(l->tls));
		} else {
			struct conn_msg *m = malloc(sizeof(*m));

			if (m) {
				m->fd = fd;
				m->tls = nbd_tls_get(l->tls);
			}
			if (!m || reactor_send(i, conn_new_msg, m)) {
				LOG_RATELIMIT(LOG_ERROR, LS_NBD, "cannot hand a connection to reactor %u", i);
				close(fd);
				if (m)
					nbd_tls_put(m->tls);
				free(m);
			}
		}
	}
}

static int listener_start_fn(void *arg)
{
	struct nbd_listener *l = arg;
	int rc = ev_io_start(reactor_loop(l->ridx), &l->io, l->fd, EV_READ, accept_fn);

	if (rc == 0)
		accept_fn(&l->io, EV_READ);	/* anything queued before we watched */
	return rc;
}

static int listener_stop_fn(void *arg)
{
	struct nbd_listener *l = arg;
	struct ev_loop *loop = reactor_loop(l->ridx);

	ev_io_stop(loop, &l->io);
	ev_timer_stop(loop, &l->retry);
	return 0;
}

/* "unix:PATH", "[v6]:PORT", "v4-or-host:PORT", ":PORT" or "PORT". */
static int listener_socket(const char *addr, struct nbd_listener *l)
{
	int fd, rc, one = 1;

	if (!strncmp(addr, "unix:", 5)) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		const char *path = addr + 5;
		struct stat st;

		if (!*path || strlen(path) >= sizeof(sun.sun_path))
			return -EINVAL;
		strcpy(sun.sun_path, path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		/* A stale socket from an earlier run: only ever unlink a socket. */
		if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(path);
		if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, 1024) < 0) {
			rc = -errno;
			close(fd);
			return rc;
		}
		snprintf(l->path, sizeof(l->path), "%s", path);
		snprintf(l->bound, sizeof(l->bound), "unix:%s", path);
		l->fd = fd;
		return 0;
	} else {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
		struct addrinfo *res = NULL;
		char host[256], port[16], hbuf[INET6_ADDRSTRLEN];
		const char *colon;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		if (addr[0] == '[') {
			const char *end = strchr(addr, ']');

			if (!end || end[1] != ':' || (size_t)(end - addr - 1) >= sizeof(host))
				return -EINVAL;
			memcpy(host, addr + 1, (size_t)(end - addr - 1));
			host[end - addr - 1] = 0;
			colon = end + 1;
		} else {
			colon = strrchr(addr, ':');
			if (colon) {
				if ((size_t)(colon - addr) >= sizeof(host) || memchr(addr, ':', (size_t)(colon - addr)))
					return -EINVAL;	/* a bare v6 address needs [] */
				memcpy(host, addr, (size_t)(colon - addr));
				host[colon - addr] = 0;
			} else {
				host[0] = 0;
				colon = addr - 1;	/* the whole string is the port */
			}
		}
		if (strlen(colon + 1) >= sizeof(port) || !colon[1])
			return -EINVAL;
		strcpy(port, colon + 1);
		for (const char *p = port; *p; p++)
			if (*p < '0' || *p > '9')
				return -EINVAL;
		rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
		if (rc || !res)
			return -EINVAL;
		fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			rc = -errno;
			freeaddrinfo(res);
			return rc;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (res->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		rc = bind_listener(fd, res->ai_addr, res->ai_addrlen);
		if (rc || listen(fd, 1024) < 0) {
			rc = rc ? rc : -errno;
			close(fd);
			freeaddrinfo(res);
			return rc;
		}
		freeaddrinfo(res);
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
		    getnameinfo((struct sockaddr *)&ss, sl, hbuf, sizeof(hbuf), port, sizeof(port),
				NI_NUMERICHOST | NI_NUMERICSERV) == 0)
			snprintf(l->bound, sizeof(l->bound), ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
				 hbuf, port);
		l->fd = fd;
		return 0;
	}
}

/* ================================================================ API */

static int srv_init(void)
{
	unsigned n = reactor_count();

	if (srv.r)
		return 0;
	if (!n)
		return -ENODEV;
	srv.r = calloc(n, sizeof(*srv.r));
	if (!srv.r)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		srv.r[i].idx = i;
		srv.r[i].loop = reactor_loop(i);
		list_init(&srv.r[i].conns);
	}
	srv.nr = n;
	__atomic_store_n(&srv.shutting_down, 0, __ATOMIC_RELEASE);
	return 0;
}

static struct nbd_listener *listener_find_locked(const char *addr)
{
	struct list_head *pos;

	list_for_each(pos, &srv.listeners) {
		struct nbd_listener *l = list_entry(pos, struct nbd_listener, link);

		if (!strcmp(l->addr, addr) || !strcmp(l->bound, addr))
			return l;
	}
	return NULL;
}

int nbd_listen(const char *addr)
{
	return nbd_listen_tls(addr, NULL);
}

int nbd_listen_tls(const char *addr, const struct nbd_tls_opts *o)
{
	struct nbd_listener *l;
	struct nbd_tls *tls = NULL;
	int rc;

	if (!addr || strlen(addr) >= sizeof(l->addr))
		return -EINVAL;
	if (o && o->mode != NBD_TLS_OFF) {
		rc = nbd_tls_new(o, &tls);
		if (rc)
			return rc;
	} else if (o && (o->cert_dir || o->psk_file || o->verify_peer)) {
		return -EINVAL;
	}
	pthread_mutex_lock(&srv.api_lock);
	rc = srv_init();
	if (rc)
		goto unlock;
	pthread_mutex_lock(&srv.lock);
	l = listener_find_locked(addr);
	pthread_mutex_unlock(&srv.lock);
	if (l) {
		rc = -EEXIST;
		goto unlock;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		rc = -ENOMEM;
		goto unlock;
	}
	l->tls = tls;
	tls = NULL;
	snprintf(l->addr, sizeof(l->addr), "%s", addr);
	rc = listener_socket(addr, l);
	if (rc)
		goto free_l;
	l->ridx = reactor_next();
	rc = reactor_call(l->ridx, listener_start_fn, l);
	if (rc)
		goto close_fd;
	pthread_mutex_lock(&srv.lock);
	list_add_tail(&l->link, &srv.listeners);
	pthread_mutex_unlock(&srv.lock);
	LOG_INFO(LS_NBD, "listening on %s%s%s", l->bound, l->tls ? ", tls " : "",
		 l->tls ? nbd_tls_mode_name(l->tls->mode) : "");
	pthread_mutex_unlock(&srv.api_lock);
	return 0;

close_fd:
	close(l->fd);
	if (l->path[0])
		unlink(l->path);
free_l:
	nbd_tls_put(l->tls);
	free(l);
unlock:
	pthread_mutex_unlock(&srv.api_lock);
	nbd_tls_put(tls);
	return rc;
}

static void listener_destroy(struct nbd_listener *l)
{
	reactor_call(l->ridx, listener_stop_fn, l);
	close(l->fd);
	if (l->path[0])
		unlink(l->path);
	LOG_INFO(LS_NBD, "stopped listening on %s", l->bound);
	nbd_tls_put(l->tls);
	free(l);
}

int nbd_unlisten(const char *addr)
{
	struct nbd_listener *l;

	pthread_mutex_lock(&srv.api_lock);
	pthread_mutex_lock(&srv.lock);
	l = addr ? listener_find_locked(addr) : NULL;
	if (l)
		list_del(&l->link);
	pthread_mutex_unlock(&srv.lock);
	if (l)
		listener_destroy(l);
	pthread_mutex_unlock(&srv.api_lock);
	return l ? 0 : -ENOENT;
}

int nbd_export_add(const char *name, struct blkdev *bd, bool readonly, const char *description)
{
	return nbd_export_add_allow(name, bd, readonly, description, NULL, 0);
}

int nbd_export_add_allow(const char *name, struct blkdev *bd, bool readonly,
			 const char *description, const char *const *allow, unsigned nallow)
{
	struct nbd_export *exp;
	struct list_head *pos;
	int rc;

	if (!name || !bd || strlen(name) > NBD_MAX_STRING ||
	    (description && strlen(description) > NBD_MAX_STRING) || (nallow && !allow))
		return -EINVAL;
	for (unsigned i = 0; i < nallow; i++)
		if (nbd_cidr_check(allow[i]))
			return -EINVAL;
	pthread_mutex_lock(&srv.api_lock);
	rc = srv_init();
	if (rc)
		goto unlock;
	exp = calloc(1, sizeof(*exp));
	if (!exp) {
		rc = -ENOMEM;
		goto unlock;
	}
	exp->name = strdup(name);
	exp->desc = strdup(description ? description : "");
	exp->xc = calloc(srv.nr, sizeof(*exp->xc));
	exp->allow = nallow ? calloc(nallow, sizeof(*exp->allow)) : NULL;
	if (!exp->name || !exp->desc || !exp->xc || (nallow && !exp->allow)) {
		rc = -ENOMEM;
		goto free_exp;
	}
	for (unsigned i = 0; i < nallow; i++)
		nbd_cidr_parse(allow[i], &exp->allow[i]);
	exp->nallow = nallow;
	for (unsigned i = 0; i < srv.nr; i++) {
		exp->xc[i].exp = exp;
		list_init(&exp->xc[i].retry);
	}
	exp->bd = bd;
	exp->ro = readonly;
	exp->refs = 1;
	snprintf(exp->claim, sizeof(exp->claim), "nbd:%s", name);
	pthread_mutex_lock(&srv.lock);
	list_for_each(pos, &srv.exports) {
		struct nbd_export *e = list_entry(pos, struct nbd_export, link);

		if (!strcmp(e->name, name)) {
			pthread_mutex_unlock(&srv.lock);
			rc = -EEXIST;
			goto free_exp;
		}
	}
	rc = blkdev_claim_shared(bd, exp->claim);
	if (rc) {
		pthread_mutex_unlock(&srv.lock);
		goto free_exp;
	}
	list_add_tail(&exp->link, &srv.exports);
	pthread_mutex_unlock(&srv.lock);
	LOG_INFO(LS_NBD, "exporting %s as '%s'%s", bd->name, name, readonly ? " read-only" : "");
	pthread_mutex_unlock(&srv.api_lock);
	return 0;

free_exp:
	free(exp->xc);
	free(exp->allow);
	free(exp->name);
	free(exp->desc);
	free(exp);
unlock:
	pthread_mutex_unlock(&srv.api_lock);
	return rc;
}

/* On each reactor: drain the export's clients; close an idle channel. */
static int export_drain_fn(unsigned i, void *arg)
{
	struct nbd_export *exp = arg;
	struct exp_chan *xc = &exp->xc[i];
	struct list_head *pos, *tmp;
	bool close_chan;

	list_for_each_safe(pos, tmp, &srv.r[i].conns) {
		struct nbd_conn *c = list_entry(pos, struct nbd_conn, link);

		if (c->exp == exp)
			conn_drain(c);
	}
	pthread_mutex_lock(&srv.lock);
	close_chan = xc->ch && xc->users == 0;
	pthread_mutex_unlock(&srv.lock);
	if (close_chan) {
		struct blkchan *ch = xc->ch;

		xc->ch = NULL;
		blk_chan_close(ch, NULL, NULL);
		pthread_mutex_lock(&srv.lock);
		export_put_locked(exp);
		pthread_mutex_unlock(&srv.lock);
	}
	return 0;
}

static void export_remove(struct nbd_export *exp)
{
	pthread_mutex_lock(&srv.lock);
	exp->removing = true;
	pthread_mutex_unlock(&srv.lock);
	reactor_call_all(export_drain_fn, exp);
	pthread_mutex_lock(&srv.lock);
	export_put_locked(exp);		/* the list's reference */
	while (exp->refs)
		pthread_cond_wait(&srv.cond, &srv.lock);
	list_del(&exp->link);
	pthread_mutex_unlock(&srv.lock);
	LOG_INFO(LS_NBD, "export '%s' removed", exp->name);
	export_free(exp);
}

int nbd_export_remove(const char *name)
{
	struct nbd_export *exp = NULL;
	struct list_head *pos;

	if (!name)
		return -EINVAL;
	pthread_mutex_lock(&srv.api_lock);
	pthread_mutex_lock(&srv.lock);
	list_for_each(pos, &srv.exports) {
		struct nbd_export *e = list_entry(pos, struct nbd_export, link);

		if (!e->removing && !strcmp(e->name, name)) {
			exp = e;
			break;
		}
	}
	pthread_mutex_unlock(&srv.lock);
	if (exp)
		export_remove(exp);
	pthread_mutex_unlock(&srv.api_lock);
	return exp ? 0 : -ENOENT;
}

void nbd_export_foreach(void (*fn)(const struct nbd_export_info *e, void *arg), void *arg)
{
	struct list_head *pos;

	pthread_mutex_lock(&srv.lock);
	list_for_each(pos, &srv.exports) {
		struct nbd_export *e = list_entry(pos, struct nbd_export, link);
		struct nbd_export_info info = {
			.name = e->name,
			.description = e->desc,
			.device = e->bd->name,
			.size = e->bd->size,
			.readonly = e->ro || e->bd->readonly,
			.clients = e->clients,
		};

		if (!e->removing)
			fn(&info, arg);
	}
	pthread_mutex_unlock(&srv.lock);
}

void nbd_listener_foreach(void (*fn)(const struct nbd_listener_info *l, void *arg), void *arg)
{
	struct list_head *pos;

	pthread_mutex_lock(&srv.lock);
	list_for_each(pos, &srv.listeners) {
		struct nbd_listener *l = list_entry(pos, struct nbd_listener, link);
		struct nbd_listener_info info = {
			.addr = l->addr,
			.bound = l->bound,
			.reactor = l->ridx,
			.tls = l->tls ? l->tls->mode : NBD_TLS_OFF,
			.tls_cert = l->tls ? l->tls->cert_dir : NULL,
			.tls_psk = l->tls ? l->tls->psk_file : NULL,
			.tls_verify_peer = l->tls && l->tls->verify_peer,
		};

		fn(&info, arg);
	}
	pthread_mutex_unlock(&srv.lock);
}

unsigned nbd_conn_count(void)
{
	unsigned n;

	pthread_mutex_lock(&srv.lock);
	n = srv.nconns;
	pthread_mutex_unlock(&srv.lock);
	return n;
}

static int drain_all_fn(unsigned i, void *arg)
{
	struct list_head *pos, *tmp;

	(void)arg;
	list_for_each_safe(pos, tmp, &srv.r[i].conns)
		conn_drain(list_entry(pos, struct nbd_conn, link));
	return 0;
}

void nbd_shutdown(void)
{
	pthread_mutex_lock(&srv.api_lock);
	if (!srv.r) {
		pthread_mutex_unlock(&srv.api_lock);
		return;
	}
	__atomic_store_n(&srv.shutting_down, 1, __ATOMIC_RELEASE);
	for (;;) {
		struct nbd_listener *l = NULL;

		pthread_mutex_lock(&srv.lock);
		if (!list_empty(&srv.listeners)) {
			l = list_first_entry(&srv.listeners, struct nbd_listener, link);
			list_del(&l->link);
		}
		pthread_mutex_unlock(&srv.lock);
		if (!l)
			break;
		listener_destroy(l);
	}
	reactor_call_all(drain_all_fn, NULL);
	for (;;) {
		struct nbd_export *exp = NULL;

		pthread_mutex_lock(&srv.lock);
		if (!list_empty(&srv.exports))
			exp = list_first_entry(&srv.exports, struct nbd_export, link);
		pthread_mutex_unlock(&srv.lock);
		if (!exp)
			break;
		export_remove(exp);
	}
	pthread_mutex_lock(&srv.lock);
	while (srv.nconns)
		pthread_cond_wait(&srv.cond, &srv.lock);
	pthread_mutex_unlock(&srv.lock);
	/* Tasks queued on reactors for connections now freed have run: the
	 * free task is the last thing a connection queues. */
	free(srv.r);
	srv.r = NULL;
	srv.nr = 0;
	nbd_tls_global_fini();
	pthread_mutex_unlock(&srv.api_lock);
	LOG_INFO(LS_NBD, "nbd server stopped");
}
