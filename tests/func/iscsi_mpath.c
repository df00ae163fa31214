/* SPDX-License-Identifier: MIT */
/*
 * A multipath initiator on libiscsi, for tests/func/iscsi_alua.sh and
 * iscsi_failover.sh. One-shot commands print what they saw:
 *
 *   iscsi-mpath ids URL          standard INQUIRY TPGS, VPD 0x83 NAA, relative
 *                                port and port group
 *   iscsi-mpath rtpg URL         REPORT TARGET PORT GROUPS: "group ID STATE"
 *   iscsi-mpath stpg URL ID=STATE...   SET TARGET PORT GROUPS
 *   iscsi-mpath tur URL          TEST UNIT READY, then READ(16) of block 0:
 *                                "good" or "sense KEY/ASC" each
 *   iscsi-mpath hold URL SECS    stay logged in (answering pings) for SECS,
 *                                print "logged out by target" if it asks
 *
 * and the failover run, which behaves as dm-multipath does with two paths:
 *
 *   iscsi-mpath failover [-t FAILOVER_S] [-H HOLD_S] URL_A URL_B
 *               MODE:CUT_CMD:RESTORE_CMD...
 *
 * Writes are verified through A; then, per MODE, CUT_CMD cuts path A (run
 * with system()), writes sent through A wait FAILOVER_S for an answer; the
 * path is then given up (its socket left open and unread, as a hung path's
 * is), B is made active/optimized with SET TARGET PORT GROUPS, the
 * unanswered writes are retried through B and newer data is written over
 * the same blocks. After HOLD_S (counted from the cut) RESTORE_CMD brings A
 * back: what A's socket still held reaches the target (or is refused); A
 * logs in again, must be standby, is made active again, and every block,
 * read through both paths, must hold its newest data: no write lost, no
 * older write resurrected. Prints "ok - ..." / "not ok - ..." lines and
 * "# timing MODE stall_ms N failover_ms N back_ms N relogin_ms N stale S".
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#define INITIATOR	"iqn.2026-11.org.sand:mpath-host"
#define REGION		256u		/* blocks rewritten in every round */
#define WITNESS		1024u		/* written once, must never change */
#define CHUNK		16u		/* blocks per command */
#define MAGIC		0x53414e444d504154ull	/* "SANDMPAT" */

static int failures;

#define OK(cond, ...) do { if (cond) { printf("ok - "); } else { printf("not ok - "); \
	failures++; } printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct path {
	const char		*url;
	struct iscsi_context	*ctx;
	int			lun;
	int			isid_q;
	bool			dead;	/* given up: not serviced any more */
};

static uint32_t bs = 512;

static struct iscsi_context *login(const char *url, int isid_q, int *lun)
{
	struct iscsi_context *ctx = iscsi_create_context(INITIATOR);
	struct iscsi_url *u;

	if (!ctx)
		return NULL;
	u = iscsi_parse_full_url(ctx, url);
	if (!u) {
		fprintf(stderr, "bad url %s: %s\n", url, iscsi_get_error(ctx));
		iscsi_destroy_context(ctx);
		return NULL;
	}
	iscsi_set_isid_random(ctx, 0x5a5a5a, (uint32_t)isid_q);
	iscsi_set_targetname(ctx, u->target);
	iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(ctx, ISCSI_HEADER_DIGEST_NONE);
	iscsi_set_noautoreconnect(ctx, 1);
	iscsi_set_timeout(ctx, 10);
	/* connect and login only: iscsi_full_connect_sync's TEST UNIT READY
	 * fails through a standby group (NOT READY), and a path must log in
	 * to be made active */
	if (iscsi_connect_sync(ctx, u->portal) || iscsi_login_sync(ctx)) {
		fprintf(stderr, "login to %s: %s\n", url, iscsi_get_error(ctx));
		iscsi_destroy_url(u);
		iscsi_destroy_context(ctx);
		return NULL;
	}
	*lun = u->lun;
	iscsi_destroy_url(u);
	return ctx;
}

/* A CDB, synchronously; returns the task (caller frees) or NULL. */
static struct scsi_task *cmd_sync(struct path *p, const uint8_t *cdb, int len, int dir,
				  int xfer, uint8_t *out, size_t outlen)
{
	struct scsi_task *t = scsi_create_task(len, (unsigned char *)cdb, dir, xfer);
	struct iscsi_data d = { outlen, out };

	if (!t)
		return NULL;
	if (!iscsi_scsi_command_sync(p->ctx, p->lun, t, out ? &d : NULL)) {
		fprintf(stderr, "%s: command 0x%02x: %s\n", p->url, cdb[0],
			iscsi_get_error(p->ctx));
		scsi_free_scsi_task(t);
		return NULL;
	}
	return t;
}

static void describe(struct scsi_task *t, char *buf, size_t len)
{
	if (!t)
		snprintf(buf, len, "error");
	else if (t->status == SCSI_STATUS_GOOD)
		snprintf(buf, len, "good");
	else if (t->status == SCSI_STATUS_CHECK_CONDITION)
		snprintf(buf, len, "sense %x/%04x", t->sense.key, t->sense.ascq);
	else
		snprintf(buf, len, "status 0x%x", t->status);
}

static const char *state_name(int s)
{
	static const char *const n[] = { "active-optimized", "active-nonoptimized", "standby",
					 "unavailable" };

	return s >= 0 && s < 4 ? n[s] : s == 0xf ? "transitioning" : "?";
}

/* RTPG into states[id] (-1: not reported); 0 or -1. */
static int rtpg(struct path *p, int states[65536], bool print)
{
	uint8_t cdb[12] = { 0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0 };
	struct scsi_task *t;
	uint32_t len;

	for (int i = 0; i < 65536; i++)
		states[i] = -1;
	t = cmd_sync(p, cdb, 12, SCSI_XFER_READ, 4096, NULL, 0);
	if (!t || t->status != SCSI_STATUS_GOOD || t->datain.size < 4) {
		char d[64];

		describe(t, d, sizeof(d));
		fprintf(stderr, "%s: report target port groups: %s\n", p->url, d);
		if (t)
			scsi_free_scsi_task(t);
		return -1;
	}
	len = ((uint32_t)t->datain.data[0] << 24 | (uint32_t)t->datain.data[1] << 16 |
	       (uint32_t)t->datain.data[2] << 8 | t->datain.data[3]) + 4;
	if (len > (uint32_t)t->datain.size)
		len = (uint32_t)t->datain.size;
	for (uint32_t o = 4; o + 8 <= len; o += 8 + 4u * t->datain.data[o + 7]) {
		const uint8_t *g = t->datain.data + o;
		unsigned id = (unsigned)g[2] << 8 | g[3];

		states[id] = g[0] & 0x0f;
		if (print)
			printf("group %u %s ports %u\n", id, state_name(g[0] & 0x0f), g[7]);
	}
	scsi_free_scsi_task(t);
	return 0;
}

static int stpg(struct path *p, const unsigned *ids, const int *states, unsigned n)
{
	uint8_t cdb[12] = { 0xa4, 0x0a };
	uint8_t buf[4 + 4 * 16] = { 0 };
	uint32_t len = 4 + 4 * n;
	struct scsi_task *t;
	char d[64];
	int rc;

	cdb[9] = (uint8_t)len;
	for (unsigned i = 0; i < n; i++) {
		buf[4 + 4 * i] = (uint8_t)states[i];
		buf[4 + 4 * i + 2] = (uint8_t)(ids[i] >> 8);
		buf[4 + 4 * i + 3] = (uint8_t)ids[i];
	}
	t = cmd_sync(p, cdb, 12, SCSI_XFER_WRITE, (int)len, buf, len);
	describe(t, d, sizeof(d));
	rc = t && t->status == SCSI_STATUS_GOOD ? 0 : -1;
	if (rc)
		fprintf(stderr, "%s: set target port groups: %s\n", p->url, d);
	if (t)
		scsi_free_scsi_task(t);
	return rc;
}

/* TEST UNIT READY until it stops reporting unit attentions; the last
 * result in buf. */
static void tur_settle(struct path *p, char *buf, size_t len)
{
	uint8_t cdb[6] = { 0 };

	for (int i = 0; i < 4; i++) {
		struct scsi_task *t = cmd_sync(p, cdb, 6, SCSI_XFER_NONE, 0, NULL, 0);

		describe(t, buf, len);
		if (!t || t->status != SCSI_STATUS_CHECK_CONDITION || t->sense.key != 6) {
			if (t)
				scsi_free_scsi_task(t);
			return;
		}
		scsi_free_scsi_task(t);
	}
}

/* ------------------------------------------------------------ async I/O */

struct io {
	struct path	*p;
	uint64_t	lba;
	uint32_t	n;
	bool		write, done, ok;
	uint8_t		*buf;
	uint64_t	t_done;
};

static struct path *paths[4];
static unsigned npaths;

static void io_cb(struct iscsi_context *ctx, int status, void *data, void *priv)
{
	struct io *io = priv;
	struct scsi_task *t = data;

	io->done = true;
	io->t_done = now_ms();
	io->ok = status == SCSI_STATUS_GOOD;
	if (io->ok && !io->write && t->datain.size >= (int)(io->n * bs))
		memcpy(io->buf, t->datain.data, io->n * bs);
	else if (!io->write && io->ok)
		io->ok = false;
	if (t)
		scsi_free_scsi_task(t);
}

static int io_start(struct io *io)
{
	struct scsi_task *t;

	io->done = io->ok = false;
	if (io->write)
		t = iscsi_write16_task(io->p->ctx, io->p->lun, io->lba, io->buf, io->n * bs, (int)bs,
				       0, 0, 0, 0, 0, io_cb, io);
	else
		t = iscsi_read16_task(io->p->ctx, io->p->lun, io->lba, io->n * bs, (int)bs, 0, 0, 0,
				      0, 0, io_cb, io);
	return t ? 0 : -1;
}

/* Service every live path for up to ms, or until *stop; a path whose
 * connection fails is marked dead. */
static void pump(uint64_t ms, bool (*stop)(void *), void *arg)
{
	uint64_t end = now_ms() + ms;

	while (now_ms() < end && !(stop && stop(arg))) {
		struct pollfd pfd[4];
		struct path *pp[4];
		int n = 0;

		for (unsigned i = 0; i < npaths; i++) {
			if (paths[i]->dead || !paths[i]->ctx)
				continue;
			pfd[n].fd = iscsi_get_fd(paths[i]->ctx);
			pfd[n].events = (short)iscsi_which_events(paths[i]->ctx);
			pp[n++] = paths[i];
		}
		if (poll(pfd, (nfds_t)n, 20) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			if (iscsi_service(pp[i]->ctx, pfd[i].revents) < 0) {
				fprintf(stderr, "%s: connection failed: %s\n", pp[i]->url,
					iscsi_get_error(pp[i]->ctx));
				pp[i]->dead = true;
			}
		}
	}
}

struct batch {
	struct io	*ios;
	unsigned	n;
	struct path	*p;
};

static bool batch_done(void *arg)
{
	struct batch *b = arg;

	if (b->p->dead)
		return true;
	for (unsigned i = 0; i < b->n; i++)
		if (!b->ios[i].done)
			return false;
	return true;
}

/* ------------------------------------------------------------ data */

static void fill(uint8_t *blk, uint64_t lba, uint32_t gen)
{
	uint64_t m = MAGIC;

	memset(blk, (int)((gen * 31 + lba) & 0xff), bs);
	memcpy(blk, &m, 8);
	memcpy(blk + 8, &lba, 8);
	memcpy(blk + 16, &gen, 4);
}

/* The generation a block holds, -1 if it is not one of ours or torn. */
static long gen_of(const uint8_t *blk, uint64_t lba)
{
	uint64_t m, l;
	uint32_t g;

	memcpy(&m, blk, 8);
	memcpy(&l, blk + 8, 8);
	memcpy(&g, blk + 16, 4);
	if (m != MAGIC || l != lba)
		return -1;
	for (uint32_t i = 20; i < bs; i++)
		if (blk[i] != (uint8_t)((g * 31 + lba) & 0xff))
			return -1;
	return g;
}

/* Write (or read and check) blocks [lba, lba + n) with gen / exp[] through p,
 * CHUNK blocks per command, all in flight at once. Returns the number of
 * commands that did not complete with GOOD within ms; ios kept in *out. */
static unsigned run_batch(struct path *p, uint64_t lba, uint32_t n, bool write, uint32_t gen,
			  uint64_t ms, struct io **out, unsigned *nout)
{
	unsigned nio = (n + CHUNK - 1) / CHUNK, bad = 0;
	struct io *ios = calloc(nio, sizeof(*ios));
	struct batch b = { ios, nio, p };

	for (unsigned i = 0; i < nio; i++) {
		ios[i].p = p;
		ios[i].lba = lba + (uint64_t)i * CHUNK;
		ios[i].n = CHUNK;
		ios[i].write = write;
		ios[i].buf = malloc((size_t)CHUNK * bs);
		if (write)
			for (uint32_t k = 0; k < CHUNK; k++)
				fill(ios[i].buf + (size_t)k * bs, ios[i].lba + k, gen);
		if (io_start(&ios[i]))
			ios[i].done = true;	/* not sent: counted as failed */
	}
	pump(ms, batch_done, &b);
	for (unsigned i = 0; i < nio; i++)
		bad += !(ios[i].done && ios[i].ok);
	*out = ios;
	*nout = nio;
	return bad;
}

static void free_ios(struct io *ios, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		free(ios[i].buf);
	free(ios);
}

/* Read [lba, lba + n) through p and compare with exp[]; counts blocks that
 * are lost (older than expected), resurrected (an older generation after a
 * newer one was acknowledged) or foreign. */
static int verify_ex(struct path *p, uint64_t lba, uint32_t n, const uint32_t *exp,
		     const char *what, bool quiet, unsigned *older_out)
{
	struct io *ios;
	unsigned nio, bad, wrong = 0, older = 0;

	bad = run_batch(p, lba, n, false, 0, 20000, &ios, &nio);
	if (bad) {
		OK(false, "%s: read through %s (%u of %u commands failed)", what, p->url, bad, nio);
		free_ios(ios, nio);
		return -1;
	}
	for (unsigned i = 0; i < nio; i++)
		for (uint32_t k = 0; k < CHUNK; k++) {
			uint64_t b = ios[i].lba + k;
			long g = gen_of(ios[i].buf + (size_t)k * bs, b);

			if (g != (long)exp[b - lba]) {
				if (!wrong)
					fprintf(stderr, "%s: block %" PRIu64 " holds generation %ld, "
						"expected %u\n", what, b, g, exp[b - lba]);
				wrong++;
				older += g >= 0 && g < (long)exp[b - lba];
			}
		}
	if (!quiet)
		OK(!wrong, "%s: %u blocks through %s hold their newest data (%u wrong, %u older)",
		   what, n, p->url, wrong, older);
	if (older_out)
		*older_out = older;
	free_ios(ios, nio);
	return wrong ? -1 : 0;
}

static int verify(struct path *p, uint64_t lba, uint32_t n, const uint32_t *exp,
		  const char *what)
{
	return verify_ex(p, lba, n, exp, what, false, NULL);
}

/* What became of the data a given-up socket still held: refused (reset),
 * delivered, or still waiting. */
static const char *stale_fate(int fd, uint64_t ms)
{
	uint64_t end = now_ms() + ms;
	struct tcp_info ti;
	socklen_t sl;

	for (;;) {
		sl = sizeof(ti);
		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &sl))
			return "gone";
		if (ti.tcpi_state != TCP_ESTABLISHED)
			return "refused";
		if (!ti.tcpi_unacked)
			return "delivered";
		if (now_ms() >= end)
			return "pending";
		pump(50, NULL, NULL);	/* the live paths answer their pings meanwhile */
	}
}

static int failover(int argc, char **argv)
{
	uint64_t fo_ms = 6000, hold_ms = 9000;
	bool expect_ghost = false;
	struct path a = { .isid_q = 1 }, b = { .isid_q = 2 };
	static int st_a[65536], st_b[65536];
	uint32_t *exp = calloc(REGION, sizeof(uint32_t));
	uint32_t *wexp = calloc(WITNESS, sizeof(uint32_t));
	unsigned tpg_a, tpg_b, nio;
	uint32_t gen = 1;
	struct io *ios;
	char d[64];
	int o;

	while ((o = getopt(argc, argv, "t:H:G")) != -1) {
		if (o == 'G')
			expect_ghost = true;
		else if (o == 't')
			fo_ms = strtoull(optarg, NULL, 10) * 1000;
		else if (o == 'H')
			hold_ms = strtoull(optarg, NULL, 10) * 1000;
		else
			return 2;
	}
	if (argc - optind < 3)
		return 2;
	a.url = argv[optind];
	b.url = argv[optind + 1];
	a.ctx = login(a.url, a.isid_q, &a.lun);
	b.ctx = login(b.url, b.isid_q, &b.lun);
	OK(a.ctx && b.ctx, "two sessions, one through each path");
	if (!a.ctx || !b.ctx)
		return 1;
	paths[npaths++] = &a;
	paths[npaths++] = &b;

	/* the same LU through both paths, each path its own port and group */
	{
		uint8_t cdb[6] = { 0x12, 1, 0x83, 0, 255, 0 };
		struct scsi_task *ta = cmd_sync(&a, cdb, 6, SCSI_XFER_READ, 255, NULL, 0);
		struct scsi_task *tb = cmd_sync(&b, cdb, 6, SCSI_XFER_READ, 255, NULL, 0);
		bool same = ta && tb && ta->datain.size >= 16 && tb->datain.size >= 16 &&
			    !memcmp(ta->datain.data + 4, tb->datain.data + 4, 12);
		int ga = -1, gb = -1;

		for (int pass = 0; pass < 2 && ta && tb; pass++) {
			struct scsi_task *t = pass ? tb : ta;
			int *g = pass ? &gb : &ga;

			for (int off = 4; off + 4 <= t->datain.size; off += 4 + t->datain.data[off + 3])
				if ((t->datain.data[off + 1] & 0x3f) == 0x15)
					*g = t->datain.data[off + 6] << 8 | t->datain.data[off + 7];
		}
		OK(same, "the LU's NAA designator is the same through both paths");
		OK(ga > 0 && gb > 0 && ga != gb, "each path is its own target port group "
		   "(A %d, B %d)", ga, gb);
		tpg_a = (unsigned)ga;
		tpg_b = (unsigned)gb;
		if (ta)
			scsi_free_scsi_task(ta);
		if (tb)
			scsi_free_scsi_task(tb);
		if (ga <= 0 || gb <= 0)
			return 1;
	}
	{
		struct scsi_readcapacity16 *rc16;
		struct scsi_task *t = iscsi_readcapacity16_sync(a.ctx, a.lun);

		if (t && t->status == SCSI_STATUS_GOOD && (rc16 = scsi_datain_unmarshall(t)))
			bs = rc16->block_length;
		if (t)
			scsi_free_scsi_task(t);
	}
	OK(!rtpg(&a, st_a, false) && !rtpg(&b, st_b, false) &&
	   st_a[tpg_a] == 0 && st_a[tpg_b] == 1 && st_b[tpg_a] == 0 && st_b[tpg_b] == 1,
	   "report target port groups, both paths: A active/optimized, B active/non-optimized");

	/* verified writes through A */
	OK(!run_batch(&a, WITNESS, WITNESS, true, gen, 20000, &ios, &nio),
	   "witness blocks written through A");
	free_ios(ios, nio);
	for (unsigned i = 0; i < WITNESS; i++)
		wexp[i] = gen;
	OK(!run_batch(&a, 0, REGION, true, gen, 20000, &ios, &nio), "region written through A");
	free_ios(ios, nio);
	for (unsigned i = 0; i < REGION; i++)
		exp[i] = gen;
	verify(&a, 0, REGION, exp, "before the cuts, through A");
	verify(&b, 0, REGION, exp, "before the cuts, through B");

	for (int m = optind + 2; m < argc; m++) {
		char *mode = strdup(argv[m]), *cut = strchr(mode, ':'), *restore;
		uint64_t t_cut, t_fo, t_first_b = 0, t_back, t_login, t_stale;
		unsigned unanswered, ids[2];
		int states[2], old_fd;
		uint32_t g_old = ++gen, g_new = ++gen;
		const char *fate;
		bool explicit_alua;
		struct io *a_ios;
		unsigned a_nio;

		if (!cut || !(restore = strchr(cut + 1, ':'))) {
			fprintf(stderr, "bad mode %s\n", argv[m]);
			return 2;
		}
		*cut++ = '\0';
		*restore++ = '\0';
		/* "+stpg": explicit ALUA, B made active/optimized and A standby at
		 * the failover; otherwise B is used as it is (non-optimized), as
		 * dm-multipath's alua handler does, and A stays active */
		explicit_alua = strstr(mode, "+stpg") != NULL;
		printf("# %s: cutting path A\n", mode);
		fflush(stdout);
		t_cut = now_ms();
		if (system(cut))
			OK(false, "%s: cut command", mode);
		/* writes of g_old through A: they hang, or fail */
		unanswered = run_batch(&a, 0, REGION, true, g_old, fo_ms, &ios, &nio);
		t_fo = now_ms();
		OK(unanswered, "%s: %u of %u writes through A not answered within %" PRIu64
		   " ms (path %s)", mode, unanswered, nio, t_fo - t_cut,
		   t_fo - t_cut < fo_ms ? "failed" : "hung");
		a.dead = true;		/* given up: not read any more, as a hung path */
		old_fd = iscsi_get_fd(a.ctx);
		tur_settle(&b, d, sizeof(d));
		if (explicit_alua) {	/* B takes over */
			ids[0] = tpg_b;
			states[0] = 0;
			ids[1] = tpg_a;
			states[1] = 2;
			OK(!stpg(&b, ids, states, 2), "%s: set target port groups through B: B "
			   "active/optimized, A standby", mode);
			OK(!rtpg(&b, st_b, false) && st_b[tpg_b] == 0 && st_b[tpg_a] == 2,
			   "%s: report target port groups through B shows it", mode);
		} else {
			OK(!rtpg(&b, st_b, false) && st_b[tpg_a] == 0 && st_b[tpg_b] == 1,
			   "%s: report target port groups through B: A still active/optimized, "
			   "B used as it is (non-optimized)", mode);
		}
		/* retry what A did not answer, then newer data over the same blocks */
		for (unsigned i = 0; i < nio; i++) {
			struct io *r;
			unsigned rn;

			if (ios[i].done && ios[i].ok)
				continue;
			if (run_batch(&b, ios[i].lba, CHUNK, true, g_old, 20000, &r, &rn))
				OK(false, "%s: retry through B", mode);
			if (!t_first_b)
				t_first_b = r[0].t_done;
			free_ios(r, rn);
		}
		/* A's commands stay with its context until it is destroyed */
		a_ios = ios;
		a_nio = nio;
		OK(!run_batch(&b, 0, REGION, true, g_new, 20000, &ios, &nio),
		   "%s: newer data written through B", mode);
		if (!t_first_b)
			t_first_b = ios[0].t_done;
		free_ios(ios, nio);
		for (unsigned i = 0; i < REGION; i++)
			exp[i] = g_new;
		/* the path stays cut for hold_ms, I/O goes on through B */
		while (now_ms() < t_cut + hold_ms) {
			verify(&b, 0, REGION, exp, "during the cut");
			pump(500, NULL, NULL);
		}
		printf("# %s: restoring path A\n", mode);
		fflush(stdout);
		t_back = now_ms();
		if (system(restore))
			OK(false, "%s: restore command", mode);
		/* what A's socket still held goes now, or is refused */
		fate = stale_fate(old_fd, 40000);
		t_stale = now_ms();
		printf("# %s: stale data on the old connection: %s after %" PRIu64 " ms\n", mode,
		       fate, t_stale - t_back);
		pump(1000, NULL, NULL);		/* time to execute a stale command */
		iscsi_destroy_context(a.ctx);	/* its commands' callbacks run here */
		a.ctx = NULL;
		free_ios(a_ios, a_nio);
		if (expect_ghost) {
			unsigned older = 0;

			verify_ex(&b, 0, REGION, exp, mode, true, &older);
			OK(older > 0, "%s (control, the target's pings off): the stale write came "
			   "back over newer data in %u of %u blocks: the hazard the pings prevent",
			   mode, older, REGION);
			printf("# timing %s stall_ms %" PRIu64 " back_ms %" PRIu64 " stale %s after %"
			       PRIu64 " ms\n", mode, t_first_b ? t_first_b - t_cut : 0, t_back - t_cut,
			       fate, t_stale - t_back);
			free(mode);
			goto out;
		}
		/* A comes back: a new login (same ISID), standby until told */
		a.ctx = NULL;
		for (int i = 0; i < 100 && !a.ctx; i++) {
			a.ctx = login(a.url, a.isid_q, &a.lun);
			if (!a.ctx)
				pump(200, NULL, NULL);
		}
		t_login = now_ms();
		OK(a.ctx != NULL, "%s: path A logs in again (%" PRIu64 " ms after it came back, "
		   "login %" PRIu64 " ms)", mode, t_login - t_back, t_login - t_stale - 1000);
		if (!a.ctx)
			return 1;
		a.dead = false;
		tur_settle(&a, d, sizeof(d));
		if (explicit_alua)
			OK(!strcmp(d, "sense 2/040b"), "%s: I/O through A: NOT READY, target port "
			   "in standby state (%s)", mode, d);
		else
			OK(!strcmp(d, "good"), "%s: I/O through A works again (%s)", mode, d);
		verify(&b, 0, REGION, exp, mode);
		verify(&b, WITNESS, WITNESS, wexp, "witness blocks");
		if (explicit_alua) {	/* fail back: A optimized again, B non-optimized */
			ids[0] = tpg_a;
			states[0] = 0;
			ids[1] = tpg_b;
			states[1] = 1;
			OK(!stpg(&a, ids, states, 2), "%s: fail back with set target port groups "
			   "through A", mode);
			tur_settle(&a, d, sizeof(d));
			tur_settle(&b, d, sizeof(d));
		}
		OK(!rtpg(&a, st_a, false) && st_a[tpg_a] == 0 && st_a[tpg_b] == 1,
		   "%s: report target port groups through A: A active/optimized", mode);
		verify(&a, 0, REGION, exp, mode);
		printf("# timing %s stall_ms %" PRIu64 " failover_ms %" PRIu64 " back_ms %" PRIu64
		       " relogin_ms %" PRIu64 " stale %s after %" PRIu64 " ms\n", mode,
		       t_first_b ? t_first_b - t_cut : 0, t_fo - t_cut, t_back - t_cut,
		       t_login - t_back, fate, t_stale - t_back);
		fflush(stdout);
		free(mode);
	}
	verify(&a, WITNESS, WITNESS, wexp, "witness blocks at the end");
out:
	if (a.ctx) {
		iscsi_logout_sync(a.ctx);
		iscsi_destroy_context(a.ctx);
	}
	iscsi_logout_sync(b.ctx);
	iscsi_destroy_context(b.ctx);
	free(exp);
	free(wexp);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct path p = { .isid_q = 7 };
	static int st[65536];
	char d[64];

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "failover"))
		return failover(argc - 1, argv + 1);
	if (argc < 3)
		goto usage;
	p.url = argv[2];
	p.ctx = login(p.url, p.isid_q, &p.lun);
	if (!p.ctx)
		return 1;
	if (!strcmp(argv[1], "rtpg")) {
		tur_settle(&p, d, sizeof(d));
		if (rtpg(&p, st, true))
			return 1;
	} else if (!strcmp(argv[1], "ids")) {
		uint8_t std[6] = { 0x12, 0, 0, 0, 96, 0 }, vpd[6] = { 0x12, 1, 0x83, 0, 255, 0 };
		struct scsi_task *t = cmd_sync(&p, std, 6, SCSI_XFER_READ, 96, NULL, 0);

		if (!t || t->datain.size < 6)
			return 1;
		printf("tpgs %d\n", (t->datain.data[5] >> 4) & 3);
		scsi_free_scsi_task(t);
		t = cmd_sync(&p, vpd, 6, SCSI_XFER_READ, 255, NULL, 0);
		if (!t)
			return 1;
		for (int o = 4; o + 4 <= t->datain.size; o += 4 + t->datain.data[o + 3]) {
			const uint8_t *x = t->datain.data + o;

			if ((x[1] & 0x3f) == 0x03) {
				printf("naa ");
				for (int i = 0; i < x[3]; i++)
					printf("%02x", x[4 + i]);
				printf("\n");
			} else if ((x[1] & 0x3f) == 0x14) {
				printf("relport %d\n", x[6] << 8 | x[7]);
			} else if ((x[1] & 0x3f) == 0x15) {
				printf("tpg %d\n", x[6] << 8 | x[7]);
			}
		}
		scsi_free_scsi_task(t);
	} else if (!strcmp(argv[1], "stpg") && argc >= 4) {
		unsigned ids[16];
		int states[16], n = 0;

		tur_settle(&p, d, sizeof(d));
		for (int i = 3; i < argc && n < 16; i++, n++) {
			char *eq = strchr(argv[i], '=');

			if (!eq)
				goto usage;
			ids[n] = (unsigned)atoi(argv[i]);
			states[n] = atoi(eq + 1);
		}
		if (stpg(&p, ids, states, (unsigned)n))
			return 1;
	} else if (!strcmp(argv[1], "tur")) {
		uint8_t tur[6] = { 0 }, rd[16] = { 0x88 };
		struct scsi_task *t;

		for (int i = 0; i < 2; i++) {
			t = cmd_sync(&p, tur, 6, SCSI_XFER_NONE, 0, NULL, 0);
			describe(t, d, sizeof(d));
			printf("tur %s\n", d);
			if (t)
				scsi_free_scsi_task(t);
		}
		rd[13] = 1;
		t = cmd_sync(&p, rd, 16, SCSI_XFER_READ, (int)bs, NULL, 0);
		describe(t, d, sizeof(d));
		printf("read %s\n", d);
		if (t)
			scsi_free_scsi_task(t);
	} else if (!strcmp(argv[1], "hold") && argc >= 4) {
		uint64_t end = now_ms() + strtoull(argv[3], NULL, 10) * 1000;

		paths[npaths++] = &p;
		printf("logged in\n");
		while (now_ms() < end && !p.dead)
			pump(100, NULL, NULL);
		if (p.dead) {
			printf("connection ended\n");
			return 0;
		}
		{
			uint8_t tur[6] = { 0 };
			struct scsi_task *t = cmd_sync(&p, tur, 6, SCSI_XFER_NONE, 0, NULL, 0);

			describe(t, d, sizeof(d));
			printf("still logged in, tur %s\n", d);
			if (t)
				scsi_free_scsi_task(t);
		}
		return 0;
	} else {
		goto usage;
	}
	iscsi_logout_sync(p.ctx);
	iscsi_destroy_context(p.ctx);
	return 0;

usage:
	fprintf(stderr, "usage: iscsi-mpath ids|rtpg|tur URL | stpg URL ID=STATE... | "
		"hold URL SECS | failover [-t S] [-H S] URL_A URL_B MODE:CUT:RESTORE...\n");
	return 2;
}
