/* SPDX-License-Identifier: MIT */
/*
 * LOGICAL UNIT RESET across two sessions, on libiscsi, for
 * tests/func/iscsi_reset.sh:
 *
 *   iscsi_reset_client URL NWRITES LATENCY_MS
 *
 * Session B (initiator ...:reset-b) starts NWRITES 64 KiB writes, each of
 * its own pattern, and waits for a NOP-In (the target has taken them all);
 * session A (...:reset-a) then sends LOGICAL UNIT RESET. Both sessions are
 * served until the reset's response and every write's status have come.
 * Then each session's next TEST UNIT READY (the unit attention) and the one
 * after, and every write read back: whole, untouched (zeros) or torn. The
 * target's writes take LATENCY_MS (iscsi_testd -L): the reset's response
 * must not come before the writes it aborted have ended. One line each:
 *
 *   tmf RESPONSE after-writes|early
 *   writes N good G aborted A other O
 *   ua-a SK/ASC/ASCQ|GOOD, then GOOD|...; the same for ua-b
 *   data whole W zero Z torn T lost L	(lost: GOOD but not whole)
 *
 * Exit 0 unless a login or the arguments fail.
 *
 *   iscsi_reset_client URL NWRITES LATENCY_MS cold
 *
 * The same with TARGET COLD RESET from A, A having written a region
 * before: every line starts "cold", and A's and B's connections must be
 * dropped by the target (A's after the response); then both log in again
 * with their ISIDs, and a new initiator port logs in:
 *
 *   cold tmf RESPONSE after-writes|early
 *   cold writes N good G aborted A other O
 *   cold dropped a after-response|before-response|no b yes|no
 *   cold ua-a SK/ASC/ASCQ, then GOOD; ua-b the same; ua-new GOOD
 *   cold data new W old O torn T lost L	(old: what was there before)
 *   cold before intact|changed
 *
 *   iscsi_reset_client URL NWRITES LATENCY_MS notas
 *
 * A sets TAS 0 (MODE SELECT of the control page) and resets the LU under
 * B's writes: B gets no response for them (a NOP-In it asks for after the
 * reset's response comes, the writes still unanswered); then its unit
 * attention. TAS is set back to 1 at the end.
 *
 *   notas tmf RESPONSE after-writes|early
 *   notas writes N answered K
 *   notas ua-b SK/ASC/ASCQ, then GOOD
 *
 *   iscsi_reset_client URL reset-after MS
 *
 * For a third-party client's I/O (qemu-io): wait MS, LOGICAL UNIT RESET
 * from initiator ...:reset-c, print "tmf RESPONSE". cold-after: the same
 * with TARGET COLD RESET.
 *
 *   iscsi_reset_client URL set-tas 0|1
 *
 * MODE SELECT of the control page's TAS, from ...:reset-c.
 */
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#define WLEN	(64u << 10)
#define MAXW	64

struct wr {
	int		done;
	int		status;
	struct scsi_task *task;
	unsigned char	data[WLEN];
	unsigned char	old[WLEN];
};

static struct wr w[MAXW];
static int tmf_done, tmf_response = -1, nop_done;

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct iscsi_context *login_isid(const char *urls, const char *initiator, int *lun,
				       uint32_t isid)
{
	struct iscsi_context *iscsi = iscsi_create_context(initiator);
	struct iscsi_url *url;

	if (!iscsi)
		return NULL;
	if (isid) {	/* the same initiator port each time, no reconnection */
		iscsi_set_isid_random(iscsi, isid, 0);
		iscsi_set_noautoreconnect(iscsi, 1);
	}
	url = iscsi_parse_full_url(iscsi, urls);
	if (!url) {
		fprintf(stderr, "bad url: %s\n", iscsi_get_error(iscsi));
		return NULL;
	}
	iscsi_set_targetname(iscsi, url->target);
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE);
	/* with an ISID: a bare login, without full_connect's TEST UNIT READYs
	 * that would take the unit attentions this is about */
	if (isid ? iscsi_connect_sync(iscsi, url->portal) || iscsi_login_sync(iscsi) :
		   iscsi_full_connect_sync(iscsi, url->portal, url->lun)) {
		fprintf(stderr, "login failed: %s\n", iscsi_get_error(iscsi));
		iscsi_destroy_url(url);
		return NULL;
	}
	*lun = url->lun;
	iscsi_destroy_url(url);
	return iscsi;
}

static struct iscsi_context *login(const char *urls, const char *initiator, int *lun)
{
	return login_isid(urls, initiator, lun, 0);
}

/* Serve both contexts until *until, 30 s at most; -1 on error or timeout */
static int serve(struct iscsi_context **ctx, int n, int (*until)(void))
{
	uint64_t end = mono_ms() + 30000;

	while (!until()) {
		struct pollfd pfd[2];

		if (mono_ms() > end)
			return -1;
		for (int i = 0; i < n; i++) {
			pfd[i].fd = iscsi_get_fd(ctx[i]);
			pfd[i].events = (short)iscsi_which_events(ctx[i]);
			pfd[i].revents = 0;
		}
		if (poll(pfd, (nfds_t)n, 100) < 0)
			return -1;
		for (int i = 0; i < n; i++)
			if (iscsi_service(ctx[i], pfd[i].revents) < 0) {
				fprintf(stderr, "service: %s\n", iscsi_get_error(ctx[i]));
				return -1;
			}
	}
	return 0;
}

static int nwrites;

static int all_done(void)
{
	for (int i = 0; i < nwrites; i++)
		if (!w[i].done)
			return 0;
	return tmf_done;
}

static int nop_seen(void)
{
	return nop_done;
}

static int tmf_seen(void)
{
	return tmf_done;
}

static void write_cb(struct iscsi_context *iscsi, int status, void *data, void *priv)
{
	struct wr *x = priv;
	struct scsi_task *t = data;

	x->done = 1;
	x->status = t ? t->status : status;
	if (t)
		scsi_free_scsi_task(t);
	else if (x->task)	/* cancelled: libiscsi passes no task */
		scsi_free_scsi_task(x->task);
	x->task = NULL;
}

static void tmf_cb(struct iscsi_context *iscsi, int status, void *data, void *priv)
{
	tmf_done = 1;
	tmf_response = status == SCSI_STATUS_GOOD && data ? (int)*(uint32_t *)data : 256;
}

static void nop_cb(struct iscsi_context *iscsi, int status, void *data, void *priv)
{
	nop_done = 1;
}

/* TEST UNIT READY: "GOOD" or "SK/ASC/ASCQ" */
static void tur(struct iscsi_context *iscsi, int lun)
{
	struct scsi_task *t = iscsi_testunitready_sync(iscsi, lun);

	if (!t)
		printf("ERROR");
	else if (t->status == SCSI_STATUS_GOOD)
		printf("GOOD");
	else if (t->status == SCSI_STATUS_CHECK_CONDITION)
		printf("%x/%02x/%02x", t->sense.key, t->sense.ascq >> 8, t->sense.ascq & 0xff);
	else
		printf("STATUS %d", t->status);
	if (t)
		scsi_free_scsi_task(t);
}

/* TEST UNIT READY until GOOD (5 at most): the unit attentions of a login */
static void settle(struct iscsi_context *iscsi, int lun)
{
	for (int k = 0; k < 5; k++) {
		struct scsi_task *t = iscsi_testunitready_sync(iscsi, lun);
		int st = t ? t->status : -1;

		if (t)
			scsi_free_scsi_task(t);
		if (st == SCSI_STATUS_GOOD)
			break;
	}
}

/* "PREFIXwrites N good G aborted A other O": how the writes ended */
static void print_writes(const char *prefix)
{
	int good = 0, aborted = 0, other = 0;

	for (int i = 0; i < nwrites; i++) {
		if (w[i].status == SCSI_STATUS_GOOD)
			good++;
		else if (w[i].status == SCSI_STATUS_TASK_ABORTED)
			aborted++;
		else
			other++;
	}
	printf("%swrites %d good %d aborted %d other %d\n", prefix, nwrites, good, aborted, other);
}

/* Start B's writes (new patterns, after reading what was there) and wait
 * until the target has taken them all. 0 or -1. */
static int start_writes(struct iscsi_context *a, struct iscsi_context *b, int lun,
			unsigned char seed)
{
	for (int i = 0; i < nwrites; i++) {
		struct scsi_task *t = iscsi_read10_sync(a, lun, (uint32_t)(i * (WLEN / 512)), WLEN,
							512, 0, 0, 0, 0, 0);

		if (!t || t->status != SCSI_STATUS_GOOD || t->datain.size != (int)WLEN) {
			fprintf(stderr, "read %d failed\n", i);
			return -1;
		}
		memcpy(w[i].old, t->datain.data, WLEN);
		scsi_free_scsi_task(t);
		memset(w[i].data, seed + i, WLEN);
		w[i].done = 0;
		w[i].task = iscsi_write10_task(b, lun, (uint32_t)(i * (WLEN / 512)), w[i].data,
					       WLEN, 512, 0, 0, 0, 0, 0, write_cb, &w[i]);
		if (!w[i].task) {
			fprintf(stderr, "write: %s\n", iscsi_get_error(b));
			return -1;
		}
	}
	nop_done = 0;
	if (iscsi_nop_out_async(b, nop_cb, NULL, 0, NULL) || serve(&b, 1, nop_seen)) {
		fprintf(stderr, "nop: %s\n", iscsi_get_error(b));
		return -1;
	}
	return 0;
}

static int dropped[2], drop_after_tmf;

static int cold_all_done(void)
{
	return all_done() && dropped[0] && dropped[1];
}

/* Serve both until both connections are dropped and everything answered
 * (30 s at most); -1 on timeout */
static int serve_drop(struct iscsi_context **ctx, int (*until)(void))
{
	uint64_t end = mono_ms() + 30000;

	while (!until()) {
		struct pollfd pfd[2];

		if (mono_ms() > end)
			return -1;
		for (int i = 0; i < 2; i++) {
			pfd[i].fd = dropped[i] ? -1 : iscsi_get_fd(ctx[i]);
			pfd[i].events = dropped[i] ? 0 : (short)iscsi_which_events(ctx[i]);
			pfd[i].revents = 0;
		}
		if (poll(pfd, 2, 100) < 0)
			return -1;
		for (int i = 0; i < 2; i++) {
			if (dropped[i] || iscsi_service(ctx[i], pfd[i].revents) >= 0)
				continue;
			dropped[i] = 1;
			if (i == 0)
				drop_after_tmf = tmf_done;
		}
	}
	return 0;
}

static const char *ua_line(struct iscsi_context *iscsi, int lun)
{
	static char buf[64];
	struct scsi_task *t[2];

	for (int k = 0; k < 2; k++)
		t[k] = iscsi_testunitready_sync(iscsi, lun);
	if (!t[0] || !t[1])
		snprintf(buf, sizeof(buf), "ERROR");
	else if (t[0]->status == SCSI_STATUS_CHECK_CONDITION)
		snprintf(buf, sizeof(buf), "%x/%02x/%02x, then %s", t[0]->sense.key,
			 t[0]->sense.ascq >> 8, t[0]->sense.ascq & 0xff,
			 t[1]->status == SCSI_STATUS_GOOD ? "GOOD" : "NOT GOOD");
	else
		snprintf(buf, sizeof(buf), "%s", t[0]->status == SCSI_STATUS_GOOD ? "GOOD" : "STATUS");
	for (int k = 0; k < 2; k++)
		if (t[k])
			scsi_free_scsi_task(t[k]);
	return buf;
}

#define BEFORE_LBA(n)	((uint32_t)((n) * (WLEN / 512)))

static int run_cold(const char *urls, unsigned latency)
{
	static unsigned char before[WLEN];
	struct iscsi_context *ctx[2], *n;
	int lun, nw = 0, old = 0, torn = 0, lost = 0, ok;
	struct scsi_task *t;
	uint64_t t0, took;

	ctx[0] = login_isid(urls, "iqn.2026-11.org.sand.test:reset-a", &lun, 0xa1);
	ctx[1] = login_isid(urls, "iqn.2026-11.org.sand.test:reset-b", &lun, 0xb1);
	if (!ctx[0] || !ctx[1])
		return 1;
	settle(ctx[0], lun);
	settle(ctx[1], lun);
	memset(before, 0xee, WLEN);
	t = iscsi_write10_sync(ctx[0], lun, BEFORE_LBA(nwrites), before, WLEN, 512, 0, 0, 0, 0, 0);
	if (!t || t->status != SCSI_STATUS_GOOD) {
		fprintf(stderr, "write before: %s\n", iscsi_get_error(ctx[0]));
		return 1;
	}
	scsi_free_scsi_task(t);
	t0 = mono_ms();
	if (start_writes(ctx[0], ctx[1], lun, 0x40))
		return 1;
	if (iscsi_task_mgmt_async(ctx[0], lun, ISCSI_TM_TARGET_COLD_RESET, 0xffffffff, 0,
				  tmf_cb, NULL) || serve_drop(ctx, cold_all_done)) {
		fprintf(stderr, "cold reset: tmf %d dropped %d %d: %s / %s\n", tmf_done, dropped[0],
			dropped[1], iscsi_get_error(ctx[0]), iscsi_get_error(ctx[1]));
		return 1;
	}
	took = mono_ms() - t0;
	printf("cold tmf %d %s\n", tmf_response, took + 50 >= latency ? "after-writes" : "early");
	print_writes("cold ");
	printf("cold dropped a %s b %s\n", !dropped[0] ? "no" : drop_after_tmf ?
	       "after-response" : "before-response", dropped[1] ? "yes" : "no");
	iscsi_destroy_context(ctx[0]);
	iscsi_destroy_context(ctx[1]);

	ctx[0] = login_isid(urls, "iqn.2026-11.org.sand.test:reset-a", &lun, 0xa1);
	ctx[1] = login_isid(urls, "iqn.2026-11.org.sand.test:reset-b", &lun, 0xb1);
	n = login_isid(urls, "iqn.2026-11.org.sand.test:reset-n", &lun, 0xc1);
	if (!ctx[0] || !ctx[1] || !n)
		return 1;
	printf("cold ua-a %s\n", ua_line(ctx[0], lun));
	printf("cold ua-b %s\n", ua_line(ctx[1], lun));
	printf("cold ua-new %s\n", ua_line(n, lun));
	for (int i = 0; i < nwrites; i++) {
		t = iscsi_read10_sync(ctx[1], lun, (uint32_t)(i * (WLEN / 512)), WLEN, 512,
				      0, 0, 0, 0, 0);
		if (!t || t->status != SCSI_STATUS_GOOD || t->datain.size != (int)WLEN) {
			fprintf(stderr, "read %d failed\n", i);
			return 1;
		}
		if (!memcmp(t->datain.data, w[i].data, WLEN))
			nw++;
		else if (!memcmp(t->datain.data, w[i].old, WLEN))
			old++;
		else
			torn++;
		if (w[i].status == SCSI_STATUS_GOOD && memcmp(t->datain.data, w[i].data, WLEN))
			lost++;
		scsi_free_scsi_task(t);
	}
	printf("cold data new %d old %d torn %d lost %d\n", nw, old, torn, lost);
	t = iscsi_read10_sync(ctx[0], lun, BEFORE_LBA(nwrites), WLEN, 512, 0, 0, 0, 0, 0);
	ok = t && t->status == SCSI_STATUS_GOOD && t->datain.size == (int)WLEN &&
	     !memcmp(t->datain.data, before, WLEN);
	printf("cold before %s\n", ok ? "intact" : "changed");
	if (t)
		scsi_free_scsi_task(t);
	fflush(stdout);
	iscsi_logout_sync(ctx[0]);
	iscsi_logout_sync(ctx[1]);
	iscsi_logout_sync(n);
	iscsi_destroy_context(ctx[0]);
	iscsi_destroy_context(ctx[1]);
	iscsi_destroy_context(n);
	return 0;
}

/* MODE SELECT(6) of the control page with TAS tas; 0 or -1 */
static int set_tas(struct iscsi_context *iscsi, int lun, int tas)
{
	struct scsi_task *t = iscsi_modesense6_sync(iscsi, lun, 1, SCSI_MODESENSE_PC_CURRENT,
						    SCSI_MODEPAGE_CONTROL, 0, 255);
	struct scsi_mode_sense *ms;
	struct scsi_mode_page *mp;
	int rc = -1;

	if (!t || t->status != SCSI_STATUS_GOOD)
		goto out;
	ms = scsi_datain_unmarshall(t);
	mp = ms ? scsi_modesense_get_page(ms, SCSI_MODEPAGE_CONTROL, 0) : NULL;
	if (mp) {
		struct scsi_task *s;

		mp->control.tas = tas;
		s = iscsi_modeselect6_sync(iscsi, lun, 1, 0, mp);
		rc = s && s->status == SCSI_STATUS_GOOD ? 0 : -1;
		if (s)
			scsi_free_scsi_task(s);
	}
out:
	if (t)
		scsi_free_scsi_task(t);
	return rc;
}

static int run_notas(const char *urls, unsigned latency)
{
	struct iscsi_context *ctx[2];
	int lun, answered = 0;
	uint64_t t0, took;

	ctx[0] = login(urls, "iqn.2026-11.org.sand.test:reset-a", &lun);
	ctx[1] = login(urls, "iqn.2026-11.org.sand.test:reset-b", &lun);
	if (!ctx[0] || !ctx[1])
		return 1;
	settle(ctx[0], lun);
	if (set_tas(ctx[0], lun, 0)) {
		fprintf(stderr, "MODE SELECT TAS 0 failed\n");
		return 1;
	}
	settle(ctx[1], lun);	/* and MODE PARAMETERS CHANGED */
	t0 = mono_ms();
	if (start_writes(ctx[0], ctx[1], lun, 0x60))
		return 1;
	tmf_done = 0;
	if (iscsi_task_mgmt_lun_reset_async(ctx[0], (uint32_t)lun, tmf_cb, NULL) ||
	    serve(ctx, 2, tmf_seen)) {
		fprintf(stderr, "reset: %s\n", iscsi_get_error(ctx[0]));
		return 1;
	}
	took = mono_ms() - t0;
	/* the writes ended before the response: any answer to them came before
	 * the NOP-In B asks for now */
	nop_done = 0;
	if (iscsi_nop_out_async(ctx[1], nop_cb, NULL, 0, NULL) || serve(ctx + 1, 1, nop_seen)) {
		fprintf(stderr, "nop: %s\n", iscsi_get_error(ctx[1]));
		return 1;
	}
	for (int i = 0; i < nwrites; i++)
		answered += w[i].done;
	printf("notas tmf %d %s\n", tmf_response, took + 50 >= latency ? "after-writes" : "early");
	printf("notas writes %d answered %d\n", nwrites, answered);
	iscsi_scsi_cancel_all_tasks(ctx[1]);	/* never answered: forget them */
	printf("notas ua-b %s\n", ua_line(ctx[1], lun));
	settle(ctx[0], lun);
	if (set_tas(ctx[0], lun, 1))
		fprintf(stderr, "MODE SELECT TAS 1 failed\n");
	fflush(stdout);
	for (int i = 0; i < 2; i++) {
		iscsi_logout_sync(ctx[i]);
		iscsi_destroy_context(ctx[i]);
	}
	return 0;
}

static int run_reset_after(const char *urls, unsigned ms, bool cold)
{
	struct iscsi_context *c;
	int lun;

	c = login(urls, "iqn.2026-11.org.sand.test:reset-c", &lun);
	if (!c)
		return 1;
	settle(c, lun);
	poll(NULL, 0, (int)ms);
	if ((cold ? iscsi_task_mgmt_async(c, lun, ISCSI_TM_TARGET_COLD_RESET, 0xffffffff, 0,
					  tmf_cb, NULL) :
		    iscsi_task_mgmt_lun_reset_async(c, (uint32_t)lun, tmf_cb, NULL)) ||
	    serve(&c, 1, tmf_seen)) {
		fprintf(stderr, "reset: %s\n", iscsi_get_error(c));
		return 1;
	}
	printf("tmf %d\n", tmf_response);
	fflush(stdout);
	if (!cold)	/* after a cold reset the target has closed the connection */
		iscsi_logout_sync(c);
	iscsi_destroy_context(c);
	return 0;
}

int main(int argc, char **argv)
{
	struct iscsi_context *ctx[2];
	int lun, whole = 0, zero = 0, torn = 0, lost = 0;
	unsigned latency;
	uint64_t t0, took;

	if (argc == 4 && !strcmp(argv[2], "reset-after"))
		return run_reset_after(argv[1], (unsigned)atoi(argv[3]), false);
	if (argc == 4 && !strcmp(argv[2], "cold-after"))
		return run_reset_after(argv[1], (unsigned)atoi(argv[3]), true);
	if (argc == 4 && !strcmp(argv[2], "set-tas")) {
		int l;
		struct iscsi_context *c = login(argv[1], "iqn.2026-11.org.sand.test:reset-c", &l);

		if (!c)
			return 1;
		settle(c, l);
		if (set_tas(c, l, atoi(argv[3]))) {
			fprintf(stderr, "MODE SELECT failed\n");
			return 1;
		}
		iscsi_logout_sync(c);
		iscsi_destroy_context(c);
		return 0;
	}
	if ((argc != 4 && argc != 5) || (nwrites = atoi(argv[2])) < 1 || nwrites > MAXW) {
		fprintf(stderr, "usage: %s URL NWRITES(1-%d) LATENCY_MS [lun|cold|notas]\n"
			"       %s URL reset-after MS\n", argv[0], MAXW, argv[0]);
		return 2;
	}
	latency = (unsigned)atoi(argv[3]);
	if (argc == 5 && !strcmp(argv[4], "cold"))
		return run_cold(argv[1], latency);
	if (argc == 5 && !strcmp(argv[4], "notas"))
		return run_notas(argv[1], latency);
	if (argc == 5 && strcmp(argv[4], "lun")) {
		fprintf(stderr, "unknown mode %s\n", argv[4]);
		return 2;
	}
	ctx[0] = login(argv[1], "iqn.2026-11.org.sand.test:reset-a", &lun);
	ctx[1] = login(argv[1], "iqn.2026-11.org.sand.test:reset-b", &lun);
	if (!ctx[0] || !ctx[1])
		return 1;
	for (int i = 0; i < 2; i++) {	/* the unit attentions of the login */
		struct scsi_task *t;

		for (int k = 0; k < 5; k++) {
			int st;

			t = iscsi_testunitready_sync(ctx[i], lun);
			st = t ? t->status : -1;
			if (t)
				scsi_free_scsi_task(t);
			if (st == SCSI_STATUS_GOOD)
				break;
		}
	}

	t0 = mono_ms();		/* no write can end before t0 + latency */
	for (int i = 0; i < nwrites; i++) {
		memset(w[i].data, i + 1, WLEN);
		if (!iscsi_write10_task(ctx[1], lun, (uint32_t)(i * (WLEN / 512)), w[i].data, WLEN,
					512, 0, 0, 0, 0, 0, write_cb, &w[i])) {
			fprintf(stderr, "write: %s\n", iscsi_get_error(ctx[1]));
			return 1;
		}
	}
	/* a NOP-In answered after the writes: the target has taken them all */
	if (iscsi_nop_out_async(ctx[1], nop_cb, NULL, 0, NULL) || serve(ctx + 1, 1, nop_seen)) {
		fprintf(stderr, "nop: %s\n", iscsi_get_error(ctx[1]));
		return 1;
	}
	if (iscsi_task_mgmt_lun_reset_async(ctx[0], (uint32_t)lun, tmf_cb, NULL) ||
	    serve(ctx, 2, all_done)) {
		fprintf(stderr, "reset: %s / %s\n", iscsi_get_error(ctx[0]), iscsi_get_error(ctx[1]));
		return 1;
	}
	took = mono_ms() - t0;
	printf("tmf %d %s\n", tmf_response, took + 50 >= latency ? "after-writes" : "early");
	print_writes("");
	for (int i = 0; i < 2; i++) {
		printf("ua-%c ", "ab"[i]);
		tur(ctx[i], lun);
		printf(", then ");
		tur(ctx[i], lun);
		printf("\n");
	}
	for (int i = 0; i < nwrites; i++) {
		struct scsi_task *t = iscsi_read10_sync(ctx[0], lun, (uint32_t)(i * (WLEN / 512)),
							WLEN, 512, 0, 0, 0, 0, 0);
		int n1 = 0, n0 = 0;

		if (!t || t->status != SCSI_STATUS_GOOD || t->datain.size != (int)WLEN) {
			fprintf(stderr, "read %d failed\n", i);
			return 1;
		}
		for (unsigned k = 0; k < WLEN; k++) {
			n1 += t->datain.data[k] == i + 1;
			n0 += !t->datain.data[k];
		}
		scsi_free_scsi_task(t);
		if (n1 == (int)WLEN)
			whole++;
		else if (n0 == (int)WLEN)
			zero++;
		else
			torn++;
		if (w[i].status == SCSI_STATUS_GOOD && n1 != (int)WLEN)
			lost++;
	}
	printf("data whole %d zero %d torn %d lost %d\n", whole, zero, torn, lost);
	fflush(stdout);
	for (int i = 0; i < 2; i++) {
		iscsi_logout_sync(ctx[i]);
		iscsi_destroy_context(ctx[i]);
	}
	return 0;
}
