/* SPDX-License-Identifier: MIT */
/*
 * A persistent-reservation client on libiscsi for tests/func/iscsi_pr.sh:
 * logs in to URL as INITIATOR (with a fixed ISID, so that another run is
 * the same I_T nexus), runs the operations given, one line of output each,
 * and logs out.
 *
 *   iscsi_pr_client URL INITIATOR OP [ARGS] [, OP [ARGS]]...
 *
 *   register KEY [aptpl|alltg]	REGISTER AND IGNORE EXISTING KEY (KEY 0: unregister)
 *   reserve KEY TYPE		TYPE: we ea we-ro ea-ro we-ar ea-ar
 *   release KEY TYPE
 *   preempt KEY SAKEY TYPE	PREEMPT
 *   abort KEY SAKEY TYPE	PREEMPT AND ABORT
 *   clear KEY
 *   keys			READ KEYS: "keys K1 K2 ..."
 *   resv			READ RESERVATION: "resv TYPE KEY" or "resv none"
 *   read LBA			READ(10) of one 512-byte block: "read BYTE" (its first)
 *   write LBA BYTE		WRITE(10) of one block filled with BYTE
 *   tur			TEST UNIT READY
 *   pause FILE		wait (up to 20 s) until FILE exists: the session stays
 *				logged in meanwhile (libiscsi takes the unit attentions
 *				pending at login itself, so a test sees one only in a
 *				session that was there before)
 *
 * Each line starts with the status: GOOD, CONFLICT (reservation conflict),
 * or SENSE KEY/ASC/ASCQ in hex ("SENSE 6/2a/03"). Exit 0 unless the login
 * or the arguments fail.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

static const struct { const char *name; int type; } types[] = {
	{ "we", 1 }, { "ea", 3 }, { "we-ro", 5 }, { "ea-ro", 6 }, { "we-ar", 7 }, { "ea-ar", 8 },
};

static int type_of(const char *s)
{
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (!strcmp(s, types[i].name))
			return types[i].type;
	fprintf(stderr, "unknown type %s\n", s);
	exit(2);
}

static const char *type_name(int t)
{
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (types[i].type == t)
			return types[i].name;
	return "?";
}

/* Print the status word; true when GOOD */
static int status(struct iscsi_context *iscsi, struct scsi_task *t)
{
	if (!t) {
		printf("ERROR %s", iscsi_get_error(iscsi));
		return 0;
	}
	if (t->status == SCSI_STATUS_GOOD) {
		printf("GOOD");
		return 1;
	}
	if (t->status == SCSI_STATUS_RESERVATION_CONFLICT)
		printf("CONFLICT");
	else if (t->status == SCSI_STATUS_CHECK_CONDITION)
		printf("SENSE %x/%02x/%02x", t->sense.key, t->sense.ascq >> 8, t->sense.ascq & 0xff);
	else
		printf("STATUS %d", t->status);
	return 0;
}

static struct scsi_task *prout(struct iscsi_context *iscsi, int lun, int sa, int type,
			       unsigned long long key, unsigned long long sakey, const char *flag)
{
	struct scsi_persistent_reserve_out_basic b;

	memset(&b, 0, sizeof(b));
	b.reservation_key = key;
	b.service_action_reservation_key = sakey;
	b.aptpl = flag && !strcmp(flag, "aptpl");
	b.all_tg_pt = flag && !strcmp(flag, "alltg");
	return iscsi_persistent_reserve_out_sync(iscsi, lun, sa, SCSI_PERSISTENT_RESERVE_SCOPE_LU,
						 type, &b);
}

static unsigned long long num(const char *s)
{
	return strtoull(s, NULL, 0);
}

int main(int argc, char **argv)
{
	struct iscsi_context *iscsi;
	struct iscsi_url *url;
	unsigned char block[512];
	int lun, i;

	if (argc < 4) {
		fprintf(stderr, "usage: %s URL INITIATOR OP [ARGS] [, OP [ARGS]]...\n", argv[0]);
		return 2;
	}
	iscsi = iscsi_create_context(argv[2]);
	if (!iscsi)
		return 1;
	/* the same ISID on every run (per initiator name): one I_T nexus */
	iscsi_set_isid_random(iscsi, 0x5a5a5a, 0x77);
	url = iscsi_parse_full_url(iscsi, argv[1]);
	if (!url) {
		fprintf(stderr, "bad url: %s\n", iscsi_get_error(iscsi));
		return 2;
	}
	iscsi_set_targetname(iscsi, url->target);
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE);
	if (iscsi_full_connect_sync(iscsi, url->portal, url->lun)) {
		fprintf(stderr, "login failed: %s\n", iscsi_get_error(iscsi));
		return 1;
	}
	lun = url->lun;
	iscsi_destroy_url(url);

	for (i = 3; i < argc;) {
		const char *op = argv[i];
		int n = 0;
		struct scsi_task *t = NULL;

		while (i + 1 + n < argc && strcmp(argv[i + 1 + n], ","))
			n++;
		char **a = argv + i + 1;

		printf("%s: ", op);
		fflush(stdout);		/* a test may wait for it: the op is on its way */
		if (!strcmp(op, "register") && n >= 1) {
			t = prout(iscsi, lun, SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY,
				  0, 0, num(a[0]), n > 1 ? a[1] : NULL);
			status(iscsi, t);
		} else if (!strcmp(op, "reserve") && n == 2) {
			t = prout(iscsi, lun, SCSI_PERSISTENT_RESERVE_RESERVE, type_of(a[1]),
				  num(a[0]), 0, NULL);
			status(iscsi, t);
		} else if (!strcmp(op, "release") && n == 2) {
			t = prout(iscsi, lun, SCSI_PERSISTENT_RESERVE_RELEASE, type_of(a[1]),
				  num(a[0]), 0, NULL);
			status(iscsi, t);
		} else if ((!strcmp(op, "preempt") || !strcmp(op, "abort")) && n == 3) {
			t = prout(iscsi, lun, !strcmp(op, "abort") ?
				  SCSI_PERSISTENT_RESERVE_PREEMPT_AND_ABORT :
				  SCSI_PERSISTENT_RESERVE_PREEMPT, type_of(a[2]), num(a[0]),
				  num(a[1]), NULL);
			status(iscsi, t);
		} else if (!strcmp(op, "clear") && n == 1) {
			t = prout(iscsi, lun, SCSI_PERSISTENT_RESERVE_CLEAR, 0, num(a[0]), 0, NULL);
			status(iscsi, t);
		} else if (!strcmp(op, "keys") && n == 0) {
			t = iscsi_persistent_reserve_in_sync(iscsi, lun,
							     SCSI_PERSISTENT_RESERVE_READ_KEYS, 8192);
			if (status(iscsi, t)) {
				struct scsi_persistent_reserve_in_read_keys *rk = scsi_datain_unmarshall(t);

				printf(" keys");
				for (int k = 0; rk && k < rk->num_keys; k++)
					printf(" 0x%llx", (unsigned long long)rk->keys[k]);
			}
		} else if (!strcmp(op, "resv") && n == 0) {
			t = iscsi_persistent_reserve_in_sync(iscsi, lun,
							     SCSI_PERSISTENT_RESERVE_READ_RESERVATION,
							     8192);
			if (status(iscsi, t)) {
				struct scsi_persistent_reserve_in_read_reservation *rr =
					scsi_datain_unmarshall(t);

				if (rr && rr->reserved)
					printf(" resv %s 0x%llx", type_name(rr->pr_type),
					       (unsigned long long)rr->reservation_key);
				else
					printf(" resv none");
			}
		} else if (!strcmp(op, "read") && n == 1) {
			t = iscsi_read10_sync(iscsi, lun, (uint32_t)num(a[0]), 512, 512, 0, 0, 0, 0, 0);
			if (status(iscsi, t) && t->datain.size >= 1)
				printf(" read 0x%02x", t->datain.data[0]);
		} else if (!strcmp(op, "write") && n == 2) {
			memset(block, (int)num(a[1]), sizeof(block));
			t = iscsi_write10_sync(iscsi, lun, (uint32_t)num(a[0]), block, sizeof(block),
					       512, 0, 0, 0, 0, 0);
			status(iscsi, t);
		} else if (!strcmp(op, "pause") && n == 1) {
			struct timespec ts = { 0, 50 * 1000 * 1000 };
			int k;

			for (k = 0; k < 400 && access(a[0], F_OK); k++)
				nanosleep(&ts, NULL);
			printf(k < 400 ? "GOOD" : "TIMEOUT");
		} else if (!strcmp(op, "tur") && n == 0) {
			t = iscsi_testunitready_sync(iscsi, lun);
			status(iscsi, t);
		} else {
			fprintf(stderr, "bad operation %s (%d arguments)\n", op, n);
			return 2;
		}
		printf("\n");
		fflush(stdout);
		if (t)
			scsi_free_scsi_task(t);
		i += 1 + n + 1;		/* the op, its arguments, the comma */
	}
	fflush(stdout);
	iscsi_logout_sync(iscsi);
	iscsi_destroy_context(iscsi);
	return 0;
}
