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
 */
#include <poll.h>
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
	unsigned char	data[WLEN];
};

static struct wr w[MAXW];
static int tmf_done, tmf_response = -1, nop_done;

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct iscsi_context *login(const char *urls, const char *initiator, int *lun)
{
	struct iscsi_context *iscsi = iscsi_create_context(initiator);
	struct iscsi_url *url;

	if (!iscsi)
		return NULL;
	url = iscsi_parse_full_url(iscsi, urls);
	if (!url) {
		fprintf(stderr, "bad url: %s\n", iscsi_get_error(iscsi));
		return NULL;
	}
	iscsi_set_targetname(iscsi, url->target);
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE);
	if (iscsi_full_connect_sync(iscsi, url->portal, url->lun)) {
		fprintf(stderr, "login failed: %s\n", iscsi_get_error(iscsi));
		iscsi_destroy_url(url);
		return NULL;
	}
	*lun = url->lun;
	iscsi_destroy_url(url);
	return iscsi;
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

static void write_cb(struct iscsi_context *iscsi, int status, void *data, void *priv)
{
	struct wr *x = priv;
	struct scsi_task *t = data;

	x->done = 1;
	x->status = t ? t->status : status;
	if (t)
		scsi_free_scsi_task(t);
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

int main(int argc, char **argv)
{
	struct iscsi_context *ctx[2];
	int lun, good = 0, aborted = 0, other = 0, whole = 0, zero = 0, torn = 0, lost = 0;
	unsigned latency;
	uint64_t t0, took;

	if (argc != 4 || (nwrites = atoi(argv[2])) < 1 || nwrites > MAXW) {
		fprintf(stderr, "usage: %s URL NWRITES(1-%d) LATENCY_MS\n", argv[0], MAXW);
		return 2;
	}
	latency = (unsigned)atoi(argv[3]);
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
	for (int i = 0; i < nwrites; i++) {
		if (w[i].status == SCSI_STATUS_GOOD)
			good++;
		else if (w[i].status == SCSI_STATUS_TASK_ABORTED)
			aborted++;
		else
			other++;
	}
	printf("writes %d good %d aborted %d other %d\n", nwrites, good, aborted, other);
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
