/* SPDX-License-Identifier: MIT */
/*
 * The iSCSI target (daemon/iscsi) driven over loopback by a hand-written
 * initiator: what real clients never send. Data digests (libiscsi has
 * none), R2T sequences with small bursts, malformed PDUs (Reject, or the
 * connection closed while other sessions carry on), login failures,
 * discovery, the command window, logout.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "sand/blkdev.h"
#include "sand/fault.h"
#include "sand/iscsi.h"
#include "sand/reactor.h"
#include "sand/scsi.h"
#include "daemon/iscsi/iscsi_int.h"

#define IQN	"iqn.2026-11.org.sand:conn"
#define BS	512u

static struct blkdev *mem;
static int port;

static void setup(void)
{
	ck_assert_int_eq(reactors_start(2, EV_AUTO), 0);
	ck_assert_int_eq(blk_mem_create("connlun", 16u << 20, BS, &mem), 0);
	ck_assert_int_eq(iscsi_target_add(IQN), 0);
	ck_assert_int_eq(iscsi_target_add(IQN), -EEXIST);
	ck_assert_int_eq(iscsi_target_add("not-an-iqn"), -EINVAL);
	ck_assert_int_eq(iscsi_lun_add(IQN, 0, mem, false), 0);
	ck_assert_int_eq(iscsi_lun_add(IQN, 0, mem, false), -EEXIST);
	ck_assert_int_eq(iscsi_lun_add("iqn.2026-11.org.sand:none", 0, mem, false), -ENOENT);
	port = iscsi_portal_add("127.0.0.1:0");
	ck_assert_int_gt(port, 0);
	ck_assert_int_lt(iscsi_portal_add("nonsense"), 0);
}

static void teardown(void)
{
	iscsi_shutdown();
	reactors_stop();
	ck_assert_int_eq(blkdev_close(mem), 0);
}

/* ---- a tiny initiator ---- */

struct cli {
	int		fd;
	bool		hd, dd;
	uint32_t	cmdsn, statsn, itt;
	struct iscsi_bhs h;		/* last received */
	uint8_t		data[300000];
	uint32_t	dlen;
	uint32_t	isid;		/* low bits of the ISID; 0: a new one */
	unsigned	lun;		/* of the commands sent */
	uint16_t	tsih, cid;	/* of the login: a connection for session tsih */
	uint16_t	got_tsih;	/* the last login answer's */
};

static uint32_t isid_next;

static void cli_connect(struct cli *c)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { 5, 0 };

	memset(c, 0, sizeof(*c));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(c->fd, 0);
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	c->cmdsn = 1;
	c->itt = 0x100;
}

static void send_raw(struct cli *c, const void *buf, size_t len)
{
	ck_assert_int_eq(send(c->fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void send_pdu(struct cli *c, struct iscsi_bhs *h, const void *data, uint32_t len)
{
	static uint8_t out[300000];
	int n = iscsi_pdu_build(h, NULL, 0, data, len, c->hd, c->dd, out, sizeof(out));

	ck_assert_int_gt(n, 0);
	send_raw(c, out, (size_t)n);
}

static int recv_all(struct cli *c, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = recv(c->fd, (char *)buf + got, len - got, 0);

		if (n == 0)
			return -EPIPE;
		if (n < 0)
			return -errno;
		got += (size_t)n;
	}
	return 0;
}

/* 0, or -EPIPE when the target closed the connection */
static int recv_pdu(struct cli *c)
{
	static uint8_t in[300000];
	struct iscsi_pdu_len pl;
	int rc = recv_all(c, in, ISCSI_BHS_LEN);

	if (rc)
		return rc;
	ck_assert_int_eq(iscsi_pdu_lengths((struct iscsi_bhs *)in, c->hd, c->dd,
					   sizeof(c->data), &pl), 0);
	ck_assert_int_eq(pl.ahs, 0);
	ck_assert_int_eq(recv_all(c, in + ISCSI_BHS_LEN, pl.total), 0);
	ck_assert_int_eq(iscsi_pdu_parse(in, ISCSI_BHS_LEN + pl.total, c->hd, c->dd,
					 sizeof(c->data), &pl), 0);
	memcpy(&c->h, in, ISCSI_BHS_LEN);
	c->dlen = pl.data;
	memcpy(c->data, in + ISCSI_BHS_LEN + pl.hdigest, pl.data);
	if (bhs_opcode(&c->h) != ISCSI_OP_R2T && bhs_opcode(&c->h) != ISCSI_OP_DATA_IN)
		c->statsn = bhs_get32(&c->h, BHS_STATSN);
	return 0;
}

static void expect_closed(struct cli *c)
{
	int rc;

	do
		rc = recv_pdu(c);
	while (rc == 0);	/* a Reject may come first */
	ck_assert(rc == -EPIPE || rc == -ECONNRESET);
}

static bool has_kv(struct cli *c, const char *kv)
{
	for (uint32_t pos = 0; pos < c->dlen; pos += (uint32_t)strlen((char *)c->data + pos) + 1)
		if (!strcmp((char *)c->data + pos, kv))
			return true;
	return false;
}

static uint32_t kv_build(char *buf, const char *s)
{
	uint32_t n = (uint32_t)strlen(s);

	memcpy(buf, s, n + 1);
	for (uint32_t i = 0; i < n; i++)
		if (buf[i] == ';')
			buf[i] = '\0';
	return n + 1;
}

/* One login PDU, operational stage straight to full feature; returns the status. */
static int login_keys(struct cli *c, const char *keys)
{
	struct iscsi_bhs h;
	char kv[4096];
	uint32_t len = kv_build(kv, keys);
	bool hd = c->hd, dd = c->dd;

	iscsi_bhs_init(&h, ISCSI_OP_LOGIN_REQ, ISCSI_LOGIN_TRANSIT | 1 << 2 | 3);
	h.b[0] |= ISCSI_BHS_IMMEDIATE;
	h.b[8] = 0x80;		/* ISID: random, one per client unless set */
	put_be32(h.b + 10, c->isid ? c->isid : (c->isid = ++isid_next));
	put_be16(h.b + 14, c->tsih);
	put_be16(h.b + 20, c->cid);
	bhs_put32(&h, BHS_ITT, c->itt++);
	bhs_put32(&h, BHS_CMDSN, c->cmdsn);
	c->hd = c->dd = false;	/* digests start after login */
	send_pdu(c, &h, kv, len);
	ck_assert_int_eq(recv_pdu(c), 0);
	ck_assert_int_eq(bhs_opcode(&c->h), ISCSI_OP_LOGIN_RSP);
	c->got_tsih = get_be16(c->h.b + 14);
	c->hd = hd;
	c->dd = dd;
	return c->h.b[36] << 8 | c->h.b[37];
}

static void login(struct cli *c, const char *extra)
{
	char keys[1024];

	snprintf(keys, sizeof(keys), "InitiatorName=iqn.2026-11.org.sand:test;TargetName=%s;"
		 "SessionType=Normal;HeaderDigest=%s;DataDigest=%s;MaxRecvDataSegmentLength=8192%s",
		 IQN, c->hd ? "CRC32C" : "None", c->dd ? "CRC32C" : "None", extra);
	ck_assert_int_eq(login_keys(c, keys), 0);
	ck_assert_int_eq(c->h.b[1], ISCSI_LOGIN_TRANSIT | 1 << 2 | 3);
	ck_assert_int_ne(get_be16(c->h.b + 14), 0);	/* TSIH */
	ck_assert(has_kv(c, "TargetPortalGroupTag=1"));
	ck_assert(has_kv(c, "MaxRecvDataSegmentLength=262144"));
	ck_assert(has_kv(c, c->hd ? "HeaderDigest=CRC32C" : "HeaderDigest=None"));
	ck_assert_uint_eq(bhs_get32(&c->h, BHS_EXPCMDSN), c->cmdsn);
}

static void scsi_cmd(struct cli *c, const uint8_t *cdb, unsigned cdb_len, bool rd, bool wr,
		     uint32_t edtl, const void *imm, uint32_t imm_len, bool final)
{
	struct iscsi_bhs h;

	iscsi_bhs_init(&h, ISCSI_OP_SCSI_CMD, (final ? ISCSI_FLAG_FINAL : 0) |
		       (rd ? ISCSI_FLAG_READ : 0) | (wr ? ISCSI_FLAG_WRITE : 0) | 1);
	bhs_put32(&h, BHS_ITT, ++c->itt);
	bhs_put32(&h, BHS_EDTL, edtl);
	bhs_put32(&h, BHS_CMDSN, c->cmdsn++);
	bhs_put32(&h, BHS_EXPSTATSN, c->statsn + 1);
	put_be64(h.b + BHS_LUN, scsi_lun_encode(c->lun));
	memcpy(h.b + BHS_CDB, cdb, cdb_len);
	send_pdu(c, &h, imm, imm_len);
}

static void data_out(struct cli *c, uint32_t ttt, uint32_t datasn, uint32_t off,
		     const void *data, uint32_t len, bool final)
{
	struct iscsi_bhs h;

	iscsi_bhs_init(&h, ISCSI_OP_DATA_OUT, final ? ISCSI_FLAG_FINAL : 0);
	bhs_put32(&h, BHS_ITT, c->itt);
	bhs_put32(&h, BHS_TTT, ttt);
	bhs_put32(&h, BHS_DATASN, datasn);
	bhs_put32(&h, BHS_BUFOFF, off);
	send_pdu(c, &h, data, len);
}

static void expect_status(struct cli *c, uint8_t status)
{
	ck_assert_int_eq(recv_pdu(c), 0);
	ck_assert_int_eq(bhs_opcode(&c->h), ISCSI_OP_SCSI_RSP);
	ck_assert_uint_eq(bhs_itt(&c->h), c->itt);
	ck_assert_int_eq(c->h.b[3], status);
}

/* WRITE(10) with imm bytes of immediate data; unsol: unsolicited Data-Out follows */
static void write10(struct cli *c, uint32_t lba, uint32_t n, const uint8_t *buf, uint32_t imm,
		    bool unsol)
{
	uint8_t cdb[10] = { 0x2a };

	put_be32(cdb + 2, lba);
	put_be16(cdb + 7, (uint16_t)n);
	scsi_cmd(c, cdb, 10, false, true, n * BS, buf, imm, !unsol);
}

/* READ(10) and gather the Data-In; returns bytes received */
static uint32_t read10(struct cli *c, uint32_t lba, uint32_t n, uint8_t *buf)
{
	uint8_t cdb[10] = { 0x28 };
	uint32_t got = 0, datasn = 0;

	put_be32(cdb + 2, lba);
	put_be16(cdb + 7, (uint16_t)n);
	scsi_cmd(c, cdb, 10, true, false, n * BS, NULL, 0, true);
	for (;;) {
		ck_assert_int_eq(recv_pdu(c), 0);
		if (bhs_opcode(&c->h) == ISCSI_OP_SCSI_RSP)
			break;
		ck_assert_int_eq(bhs_opcode(&c->h), ISCSI_OP_DATA_IN);
		ck_assert_uint_eq(bhs_get32(&c->h, BHS_DATASN), datasn++);
		ck_assert_uint_eq(bhs_get32(&c->h, BHS_BUFOFF), got);
		ck_assert_uint_le(c->dlen, 8192);	/* our MaxRecvDataSegmentLength */
		memcpy(buf + got, c->data, c->dlen);
		got += c->dlen;
		if (c->h.b[1] & ISCSI_FLAG_STATUS) {
			ck_assert_int_eq(c->h.b[3], 0);
			break;
		}
	}
	return got;
}

static void nop_ping(struct cli *c)
{
	struct iscsi_bhs h;

	iscsi_bhs_init(&h, ISCSI_OP_NOP_OUT, ISCSI_FLAG_FINAL);
	h.b[0] |= ISCSI_BHS_IMMEDIATE;
	bhs_put32(&h, BHS_ITT, ++c->itt);
	bhs_put32(&h, BHS_TTT, ISCSI_RSVD_TAG);
	bhs_put32(&h, BHS_CMDSN, c->cmdsn);
	send_pdu(c, &h, "ping", 4);
	do	/* the target's own pings (ITT reserved) may come first */
		ck_assert_int_eq(recv_pdu(c), 0);
	while (bhs_opcode(&c->h) == ISCSI_OP_NOP_IN && bhs_itt(&c->h) == ISCSI_RSVD_TAG);
	ck_assert_int_eq(bhs_opcode(&c->h), ISCSI_OP_NOP_IN);
	ck_assert_uint_eq(bhs_itt(&c->h), c->itt);
	ck_assert_uint_eq(c->dlen, 4);
	ck_assert_mem_eq(c->data, "ping", 4);
	ck_assert_uint_eq(bhs_get32(&c->h, BHS_EXPCMDSN), c->cmdsn);
}

static void fill(uint8_t *buf, uint32_t len, uint8_t seed)
{
	for (uint32_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed + i * 13 + (i >> 9));
}

/* ---- tests ---- */

START_TEST(io_with_digests)
{
	static struct cli c;
	static uint8_t buf[64 * BS], back[64 * BS];

	cli_connect(&c);
	c.hd = c.dd = true;
	login(&c, ";ImmediateData=Yes;InitialR2T=No;FirstBurstLength=65536");
	ck_assert(has_kv(&c, "DataDigest=CRC32C"));
	fill(buf, sizeof(buf), 7);
	write10(&c, 10, 16, buf, 8192, false);		/* all immediate (first burst) */
	expect_status(&c, 0);
	/* 64 blocks: 8192 immediate, then unsolicited Data-Out to 64 KiB */
	write10(&c, 100, 64, buf, 8192, true);
	for (uint32_t off = 8192, sn = 0; off < sizeof(buf); off += 8192, sn++)
		data_out(&c, ISCSI_RSVD_TAG, sn, off, buf + off, 8192, off + 8192 == sizeof(buf));
	expect_status(&c, 0);
	ck_assert_uint_eq(read10(&c, 10, 16, back), 16 * BS);
	ck_assert_mem_eq(back, buf, 16 * BS);
	ck_assert_uint_eq(read10(&c, 100, 64, back), 64 * BS);
	ck_assert_mem_eq(back, buf, 64 * BS);
	nop_ping(&c);
	close(c.fd);
}
END_TEST

START_TEST(r2t_sequences)
{
	static struct cli c;
	static uint8_t buf[40 * BS], back[40 * BS];
	uint32_t off = 0, r2tsn = 0;

	cli_connect(&c);
	login(&c, ";ImmediateData=No;InitialR2T=Yes;MaxBurstLength=4096");
	ck_assert(has_kv(&c, "InitialR2T=Yes"));
	ck_assert(has_kv(&c, "MaxBurstLength=4096"));
	fill(buf, sizeof(buf), 99);
	write10(&c, 1000, 40, NULL, 0, false);
	while (off < sizeof(buf)) {
		uint32_t ttt, len;

		ck_assert_int_eq(recv_pdu(&c), 0);
		ck_assert_int_eq(bhs_opcode(&c.h), ISCSI_OP_R2T);
		ck_assert_uint_eq(bhs_get32(&c.h, BHS_DATASN), r2tsn++);
		ck_assert_uint_eq(bhs_get32(&c.h, BHS_BUFOFF), off);
		len = bhs_get32(&c.h, BHS_DESIRED_LEN);
		ck_assert_uint_eq(len, MIN(4096u, (uint32_t)sizeof(buf) - off));
		ttt = bhs_get32(&c.h, BHS_TTT);
		ck_assert_uint_ne(ttt, ISCSI_RSVD_TAG);
		/* each burst in two PDUs */
		data_out(&c, ttt, 0, off, buf + off, len / 2, false);
		data_out(&c, ttt, 1, off + len / 2, buf + off + len / 2, len - len / 2, true);
		off += len;
	}
	expect_status(&c, 0);
	ck_assert_uint_eq(read10(&c, 1000, 40, back), sizeof(back));
	ck_assert_mem_eq(back, buf, sizeof(buf));
	/* immediate data refused when not negotiated: Reject */
	write10(&c, 0, 1, buf, BS, false);
	ck_assert_int_eq(recv_pdu(&c), 0);
	ck_assert_int_eq(bhs_opcode(&c.h), ISCSI_OP_REJECT);
	nop_ping(&c);
	close(c.fd);
}
END_TEST

START_TEST(malformed_pdus)
{
	static struct cli a, b;
	struct iscsi_bhs h;
	uint8_t cdb[16] = { 0 };

	cli_connect(&a);
	login(&a, "");
	cli_connect(&b);
	login(&b, "");

	/* an opcode we do not know: Reject with the header echoed */
	iscsi_bhs_init(&h, 0x1d, ISCSI_FLAG_FINAL);
	bhs_put32(&h, BHS_ITT, 77);
	send_pdu(&a, &h, NULL, 0);
	ck_assert_int_eq(recv_pdu(&a), 0);
	ck_assert_int_eq(bhs_opcode(&a.h), ISCSI_OP_REJECT);
	ck_assert_int_eq(a.h.b[2], ISCSI_REJECT_CMD_NOT_SUPPORTED);
	ck_assert_uint_eq(a.dlen, ISCSI_BHS_LEN);
	ck_assert_int_eq(a.data[0], 0x1d);
	/* SNACK at ErrorRecoveryLevel=0 */
	iscsi_bhs_init(&h, ISCSI_OP_SNACK_REQ, ISCSI_FLAG_FINAL);
	send_pdu(&a, &h, NULL, 0);
	ck_assert_int_eq(recv_pdu(&a), 0);
	ck_assert_int_eq(bhs_opcode(&a.h), ISCSI_OP_REJECT);
	/* Data-Out for no task */
	data_out(&a, ISCSI_RSVD_TAG, 0, 0, "x", 1, true);
	ck_assert_int_eq(recv_pdu(&a), 0);
	ck_assert_int_eq(bhs_opcode(&a.h), ISCSI_OP_REJECT);
	/* a CmdSN far outside the window is dropped silently */
	a.cmdsn += 100000;
	scsi_cmd(&a, cdb, 6, false, false, 0, NULL, 0, true);
	a.cmdsn -= 100001;
	nop_ping(&a);
	/* a TEST UNIT READY goes through */
	scsi_cmd(&a, cdb, 6, false, false, 0, NULL, 0, true);
	expect_status(&a, 0);
	/* an unsupported LUN: CHECK CONDITION with sense */
	iscsi_bhs_init(&h, ISCSI_OP_SCSI_CMD, ISCSI_FLAG_FINAL | 1);
	put_be64(h.b + BHS_LUN, 0x0005000000000000ull);
	bhs_put32(&h, BHS_ITT, ++a.itt);
	bhs_put32(&h, BHS_CMDSN, a.cmdsn++);
	send_pdu(&a, &h, NULL, 0);
	expect_status(&a, 2);
	ck_assert_uint_eq(a.dlen, 2 + 18);
	ck_assert_int_eq(a.data[2 + 2], 0x05);		/* ILLEGAL REQUEST */
	ck_assert_int_eq(a.data[2 + 12], 0x25);		/* LOGICAL UNIT NOT SUPPORTED */
	/* a data segment beyond MaxRecvDataSegmentLength: connection closed */
	iscsi_bhs_init(&h, ISCSI_OP_NOP_OUT, ISCSI_FLAG_FINAL);
	bhs_set_dsl(&h, 1u << 20);
	send_raw(&a, &h, sizeof(h));
	expect_closed(&a);
	close(a.fd);
	/* the other session saw nothing */
	nop_ping(&b);
	scsi_cmd(&b, cdb, 6, false, false, 0, NULL, 0, true);
	expect_status(&b, 0);
	close(b.fd);
}
END_TEST

START_TEST(digest_errors)
{
	static struct cli a, b;
	static uint8_t out[4096];
	struct iscsi_bhs h;
	int n;

	cli_connect(&a);
	a.hd = a.dd = true;
	login(&a, "");
	cli_connect(&b);
	b.hd = true;
	login(&b, "");
	/* a data digest error: Reject (data digest), then the connection goes */
	iscsi_bhs_init(&h, ISCSI_OP_NOP_OUT, ISCSI_FLAG_FINAL);
	h.b[0] |= ISCSI_BHS_IMMEDIATE;
	bhs_put32(&h, BHS_ITT, 5);
	bhs_put32(&h, BHS_TTT, ISCSI_RSVD_TAG);
	n = iscsi_pdu_build(&h, NULL, 0, "abcd", 4, true, true, out, sizeof(out));
	out[n - 1] ^= 0xff;
	send_raw(&a, out, (size_t)n);
	ck_assert_int_eq(recv_pdu(&a), 0);
	ck_assert_int_eq(bhs_opcode(&a.h), ISCSI_OP_REJECT);
	ck_assert_int_eq(a.h.b[2], ISCSI_REJECT_DATA_DIGEST);
	expect_closed(&a);
	close(a.fd);
	/* a header digest error: closed */
	n = iscsi_pdu_build(&h, NULL, 0, NULL, 0, true, false, out, sizeof(out));
	out[ISCSI_BHS_LEN] ^= 1;
	send_raw(&b, out, (size_t)n);
	expect_closed(&b);
	close(b.fd);
	/* and the target still logs people in */
	cli_connect(&a);
	login(&a, "");
	nop_ping(&a);
	close(a.fd);
}
END_TEST

START_TEST(login_failures)
{
	static struct cli c;
	struct iscsi_bhs h;

	cli_connect(&c);
	ck_assert_int_eq(login_keys(&c, "InitiatorName=iqn.2026-11.x:y;TargetName=iqn.2026-11.x:nope"),
			 ISCSI_LOGIN_NOT_FOUND);
	expect_closed(&c);
	close(c.fd);
	cli_connect(&c);
	ck_assert_int_eq(login_keys(&c, "TargetName=" IQN), ISCSI_LOGIN_MISSING_PARAM);
	expect_closed(&c);
	close(c.fd);
	cli_connect(&c);
	ck_assert_int_eq(login_keys(&c, "InitiatorName=iqn.2026-11.x:y"),
			 ISCSI_LOGIN_MISSING_PARAM);		/* normal, no TargetName */
	close(c.fd);
	cli_connect(&c);
	ck_assert_int_eq(login_keys(&c, "InitiatorName=iqn.2026-11.x:y;TargetName=" IQN
				    ";MaxBurstLength=1;MaxBurstLength=2"), ISCSI_LOGIN_INIT_ERR);
	close(c.fd);
	/* a SCSI command before login: closed */
	cli_connect(&c);
	iscsi_bhs_init(&h, ISCSI_OP_SCSI_CMD, ISCSI_FLAG_FINAL);
	send_pdu(&c, &h, NULL, 0);
	expect_closed(&c);
	close(c.fd);
}
END_TEST

START_TEST(discovery_and_logout)
{
	static struct cli c;
	struct iscsi_bhs h;
	char kv[64], want[96];
	uint32_t len;
	uint8_t cdb[6] = { 0 };

	cli_connect(&c);
	ck_assert_int_eq(login_keys(&c, "InitiatorName=iqn.2026-11.x:y;SessionType=Discovery;"
				    "InitialR2T=No"), 0);
	ck_assert(has_kv(&c, "InitialR2T=Irrelevant"));
	ck_assert(!has_kv(&c, "TargetPortalGroupTag=1"));
	iscsi_bhs_init(&h, ISCSI_OP_TEXT_REQ, ISCSI_FLAG_FINAL);
	h.b[0] |= ISCSI_BHS_IMMEDIATE;
	bhs_put32(&h, BHS_ITT, ++c.itt);
	bhs_put32(&h, BHS_TTT, ISCSI_RSVD_TAG);
	bhs_put32(&h, BHS_CMDSN, c.cmdsn);
	len = kv_build(kv, "SendTargets=All;Bogus=1");
	send_pdu(&c, &h, kv, len);
	ck_assert_int_eq(recv_pdu(&c), 0);
	ck_assert_int_eq(bhs_opcode(&c.h), ISCSI_OP_TEXT_RSP);
	ck_assert(has_kv(&c, "TargetName=" IQN));
	snprintf(want, sizeof(want), "TargetAddress=127.0.0.1:%d,1", port);
	ck_assert(has_kv(&c, want));
	ck_assert(has_kv(&c, "Bogus=NotUnderstood"));
	/* no SCSI in a discovery session */
	scsi_cmd(&c, cdb, 6, false, false, 0, NULL, 0, true);
	ck_assert_int_eq(recv_pdu(&c), 0);
	ck_assert_int_eq(bhs_opcode(&c.h), ISCSI_OP_REJECT);
	/* logout: a response, then the target closes */
	iscsi_bhs_init(&h, ISCSI_OP_LOGOUT_REQ, ISCSI_FLAG_FINAL);
	h.b[0] |= ISCSI_BHS_IMMEDIATE;
	bhs_put32(&h, BHS_ITT, ++c.itt);
	bhs_put32(&h, BHS_CMDSN, c.cmdsn);
	send_pdu(&c, &h, NULL, 0);
	ck_assert_int_eq(recv_pdu(&c), 0);
	ck_assert_int_eq(bhs_opcode(&c.h), ISCSI_OP_LOGOUT_RSP);
	ck_assert_int_eq(c.h.b[2], 0);
	expect_closed(&c);
	close(c.fd);
}
END_TEST

/* Connections dropped with commands in flight, then shutdown: no leaks, no
 * use after free (ASan), nothing left open. */
START_TEST(drop_in_flight)
{
	static struct cli c[4];
	static uint8_t buf[128 * BS];

	for (int i = 0; i < 4; i++) {
		cli_connect(&c[i]);
		login(&c[i], ";ImmediateData=Yes;InitialR2T=No");
		for (int k = 0; k < 8; k++)
			write10(&c[i], (uint32_t)(k * 128), 128, buf, 8192, true);	/* half sent */
		close(c[i].fd);
	}
	cli_connect(&c[0]);
	login(&c[0], "");
	nop_ping(&c[0]);
}
END_TEST

START_TEST(config_changes)
{
	static struct cli c;
	char addr[64];
	int p2, rc = 0;

	ck_assert_int_eq(iscsi_target_remove(IQN), -EBUSY);		/* has a LUN */
	ck_assert_int_eq(iscsi_target_remove("iqn.2026-11.org.sand:none"), -ENOENT);
	ck_assert_int_eq(iscsi_target_add("iqn.2026-11.org.sand:empty"), 0);
	ck_assert_int_eq(iscsi_portal_add("127.0.0.1:0"), -EEXIST);	/* same string */
	ck_assert_int_eq(iscsi_portal_add_tpg("127.0.0.2:0", 0), -EINVAL);
	p2 = iscsi_portal_add_tpg("127.0.0.2:0", 7);
	ck_assert_int_gt(p2, 0);
	/* a session through the tpg 7 portal to the empty target */
	{
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)p2) };
		struct timeval tv = { 5, 0 };

		memset(&c, 0, sizeof(c));
		sa.sin_addr.s_addr = htonl(0x7f000002);
		c.fd = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		ck_assert_int_eq(connect(c.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		c.cmdsn = 1;
	}
	ck_assert_int_eq(login_keys(&c, "InitiatorName=iqn.2026-11.x:y;"
				    "TargetName=iqn.2026-11.org.sand:empty"), 0);
	ck_assert(has_kv(&c, "TargetPortalGroupTag=7"));
	ck_assert_int_eq(iscsi_target_remove("iqn.2026-11.org.sand:empty"), -EBUSY);
	close(c.fd);
	for (int i = 0; i < 500; i++) {
		rc = iscsi_target_remove("iqn.2026-11.org.sand:empty");
		if (rc != -EBUSY)
			break;
		usleep(10000);
	}
	ck_assert_int_eq(rc, 0);
	snprintf(addr, sizeof(addr), "127.0.0.2:0");
	ck_assert_int_eq(iscsi_portal_remove(addr), 0);
	ck_assert_int_eq(iscsi_portal_remove(addr), -ENOENT);
}
END_TEST

START_TEST(liveness)
{
	static struct cli a, b;
	struct iscsi_bhs h;
	uint64_t t0;
	int rc;

	iscsi_set_timeouts(200, 2, 400);
	/* a login that never comes: closed after the login timeout */
	cli_connect(&a);
	t0 = now_ns();
	expect_closed(&a);
	ck_assert_uint_ge(now_ns() - t0, 300 * 1000000ull);
	close(a.fd);
	/* a logged-in initiator that answers pings stays; one that does not goes */
	cli_connect(&a);
	login(&a, "");
	cli_connect(&b);
	login(&b, "");
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(recv_pdu(&a), 0);
		ck_assert_int_eq(bhs_opcode(&a.h), ISCSI_OP_NOP_IN);
		ck_assert_uint_eq(bhs_itt(&a.h), ISCSI_RSVD_TAG);
		ck_assert_uint_ne(bhs_get32(&a.h, BHS_TTT), ISCSI_RSVD_TAG);
		iscsi_bhs_init(&h, ISCSI_OP_NOP_OUT, ISCSI_FLAG_FINAL);
		h.b[0] |= ISCSI_BHS_IMMEDIATE;
		bhs_put32(&h, BHS_ITT, ISCSI_RSVD_TAG);
		bhs_put32(&h, BHS_TTT, bhs_get32(&a.h, BHS_TTT));
		bhs_put32(&h, BHS_CMDSN, a.cmdsn);
		send_pdu(&a, &h, NULL, 0);
	}
	/* b never answered: two pings, then closed */
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(recv_pdu(&b), 0);
		ck_assert_int_eq(bhs_opcode(&b.h), ISCSI_OP_NOP_IN);
	}
	rc = recv_pdu(&b);
	ck_assert(rc == -EPIPE || rc == -ECONNRESET);
	close(b.fd);
	nop_ping(&a);
	close(a.fd);
}
END_TEST

START_TEST(reinstatement)
{
	static struct cli a, b, other;

	cli_connect(&a);
	login(&a, "");
	cli_connect(&other);
	login(&other, "");			/* another ISID: left alone */
	cli_connect(&b);
	b.isid = a.isid;
	login(&b, "");				/* same name and ISID: replaces a */
	expect_closed(&a);
	close(a.fd);
	nop_ping(&b);
	/* and again, from whatever reactor the next connection lands on */
	cli_connect(&a);
	a.isid = b.isid;
	login(&a, "");
	expect_closed(&b);
	close(b.fd);
	nop_ping(&a);
	nop_ping(&other);
	close(a.fd);
	close(other.fd);
}
END_TEST

/* The target's sessions closed and its LUN lun (the device dev) removed;
 * the caller closes dev. */
static void lun_drop(const char *iqn, unsigned lun, struct blkdev *dev)
{
	struct blkdev *bd;

	ck_assert_int_eq(iscsi_target_close_sessions(iqn), 0);
	ck_assert_int_eq(iscsi_lun_remove(iqn, lun, &bd), 0);
	ck_assert_ptr_eq(bd, dev);
}

/* A target of a test's own gone: its sessions closed, its LUN 0 (lun0)
 * removed and closed, the target removed. */
static void target_free(const char *iqn, struct blkdev *lun0)
{
	lun_drop(iqn, 0, lun0);
	ck_assert_int_eq(iscsi_target_remove(iqn), 0);
	ck_assert_int_eq(blkdev_close(lun0), 0);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A new login with the ISID of a session whose write is still on the disk
 * is answered only once that write has ended: nothing of the old session
 * reaches the disk after the new one has begun. */
START_TEST(reinstatement_waits_for_old_tasks)
{
	static struct cli a, b;
	static uint8_t buf[8 * BS], rbuf[8 * BS];
	static const char keys[] = "InitiatorName=iqn.2026-11.org.sand:test;TargetName=" IQN
				   ":slow;SessionType=Normal;HeaderDigest=None;DataDigest=None;"
				   "MaxRecvDataSegmentLength=8192";
	struct blkdev *m2, *f;
	uint64_t t0, waited;

	ck_assert_int_eq(blk_mem_create("slowmem", 1u << 20, BS, &m2), 0);
	ck_assert_int_eq(blk_fault_create("slow", m2, &f), 0);
	ck_assert_int_eq(iscsi_target_add(IQN ":slow"), 0);
	ck_assert_int_eq(iscsi_lun_add(IQN ":slow", 0, f, false), 0);
	cli_connect(&a);
	ck_assert_int_eq(login_keys(&a, keys), 0);
	ck_assert_int_eq(fault_set_latency(f, 800ull * 1000 * 1000, FAULT_OP(BIO_WRITE)), 0);
	fill(buf, sizeof(buf), 7);
	write10(&a, 0, 8, buf, sizeof(buf), false);
	nop_ping(&a);		/* answered after the write was taken: it is on the disk */
	cli_connect(&b);
	b.isid = a.isid;
	t0 = mono_ms();
	ck_assert_int_eq(login_keys(&b, keys), 0);
	waited = mono_ms() - t0;
	ck_assert_msg(waited >= 500, "login answered after %llu ms, before the old write ended",
		      (unsigned long long)waited);
	expect_closed(&a);	/* no response for the old write */
	close(a.fd);
	ck_assert_int_eq(fault_set_latency(f, 0, 0), 0);
	ck_assert_uint_eq(read10(&b, 0, 8, rbuf), sizeof(rbuf));
	ck_assert_mem_eq(rbuf, buf, sizeof(buf));
	close(b.fd);
	target_free(IQN ":slow", f);
	ck_assert_int_eq(blkdev_close(m2), 0);
}
END_TEST

/* ABORT TASK for a command that has not arrived yet: function complete,
 * and the command does not touch the disk when it comes. */
START_TEST(abort_before_arrival)
{
	static struct cli a;
	static uint8_t buf[4 * BS], rbuf[4 * BS], zero[4 * BS];
	struct iscsi_bhs h;

	cli_connect(&a);
	login(&a, "");
	memset(buf, 0, sizeof(buf));
	write10(&a, 100, 4, buf, sizeof(buf), false);
	expect_status(&a, 0);
	iscsi_bhs_init(&h, ISCSI_OP_TASK_MGMT_REQ, ISCSI_FLAG_FINAL | 1);
	h.b[0] |= ISCSI_BHS_IMMEDIATE;
	bhs_put32(&h, BHS_ITT, 0x7000);
	bhs_put32(&h, BHS_TTT, a.itt + 1);		/* referenced task tag */
	bhs_put32(&h, BHS_CMDSN, a.cmdsn + 1);
	bhs_put32(&h, 32, a.cmdsn);			/* RefCmdSN: the next command */
	send_pdu(&a, &h, NULL, 0);
	do
		ck_assert_int_eq(recv_pdu(&a), 0);
	while (bhs_opcode(&a.h) == ISCSI_OP_NOP_IN);
	ck_assert_int_eq(bhs_opcode(&a.h), ISCSI_OP_TASK_MGMT_RSP);
	ck_assert_int_eq(a.h.b[2], 0);			/* function complete */
	/* the command arrives late: dropped, no response */
	fill(buf, sizeof(buf), 3);
	write10(&a, 100, 4, buf, sizeof(buf), false);
	nop_ping(&a);		/* the next answer is the ping's, not the write's */
	ck_assert_uint_eq(read10(&a, 100, 4, rbuf), sizeof(rbuf));
	ck_assert_mem_eq(rbuf, zero, sizeof(zero));
	/* a task that is not in the window: does not exist */
	bhs_put32(&h, BHS_ITT, 0x7001);
	bhs_put32(&h, BHS_TTT, 0x12345);
	bhs_put32(&h, BHS_CMDSN, a.cmdsn);
	bhs_put32(&h, 32, a.cmdsn - 3);
	send_pdu(&a, &h, NULL, 0);
	do
		ck_assert_int_eq(recv_pdu(&a), 0);
	while (bhs_opcode(&a.h) == ISCSI_OP_NOP_IN);
	ck_assert_int_eq(a.h.b[2], 1);
	close(a.fd);
}
END_TEST

static void lun_reset(struct cli *c)
{
	struct iscsi_bhs h;

	iscsi_bhs_init(&h, ISCSI_OP_TASK_MGMT_REQ, ISCSI_FLAG_FINAL | 5);
	h.b[0] |= ISCSI_BHS_IMMEDIATE;
	bhs_put32(&h, BHS_ITT, ++c->itt);
	bhs_put32(&h, BHS_TTT, ISCSI_RSVD_TAG);
	bhs_put32(&h, BHS_CMDSN, c->cmdsn);
	send_pdu(c, &h, NULL, 0);
	ck_assert_int_eq(recv_pdu(c), 0);
	ck_assert_int_eq(bhs_opcode(&c->h), ISCSI_OP_TASK_MGMT_RSP);
	ck_assert_int_eq(c->h.b[2], 0);
}

START_TEST(unit_attention_after_reset)
{
	static struct cli a, b;
	static const uint8_t tur[6] = { 0 }, inq[6] = { 0x12, 0, 0, 0, 36, 0 };

	cli_connect(&a);
	login(&a, "");
	cli_connect(&b);
	login(&b, "");
	scsi_cmd(&a, tur, 6, false, false, 0, NULL, 0, true);
	expect_status(&a, 0);
	scsi_cmd(&b, tur, 6, false, false, 0, NULL, 0, true);
	expect_status(&b, 0);
	lun_reset(&a);
	/* both nexuses get it once; INQUIRY does not take it */
	scsi_cmd(&b, inq, 6, true, false, 36, NULL, 0, true);
	do
		ck_assert_int_eq(recv_pdu(&b), 0);
	while (bhs_opcode(&b.h) == ISCSI_OP_DATA_IN && !(b.h.b[1] & ISCSI_FLAG_STATUS));
	ck_assert_int_eq(b.h.b[3], 0);
	for (int i = 0; i < 2; i++) {
		struct cli *c = i ? &b : &a;

		scsi_cmd(c, tur, 6, false, false, 0, NULL, 0, true);
		expect_status(c, 2);
		ck_assert_int_eq(c->data[2 + 2], SK_UNIT_ATTENTION);
		ck_assert_int_eq(c->data[2 + 12], 0x29);
		scsi_cmd(c, tur, 6, false, false, 0, NULL, 0, true);
		expect_status(c, 0);
	}
	close(a.fd);
	close(b.fd);
}
END_TEST

/* A LU whose device changed size (a thin volume resized): CAPACITY DATA
 * HAS CHANGED once per nexus; READ CAPACITY then gives the new size. */
START_TEST(unit_attention_after_resize)
{
	static struct cli a;
	static const uint8_t tur[6] = { 0 }, rc10[10] = { 0x25 };

	cli_connect(&a);
	login(&a, "");
	scsi_cmd(&a, tur, 6, false, false, 0, NULL, 0, true);
	expect_status(&a, 0);
	__atomic_store_n(&mem->size, 8u << 20, __ATOMIC_RELEASE);
	scsi_cmd(&a, tur, 6, false, false, 0, NULL, 0, true);
	expect_status(&a, 2);
	ck_assert_int_eq(a.data[2 + 2], SK_UNIT_ATTENTION);
	ck_assert_int_eq(a.data[2 + 12], 0x2a);
	ck_assert_int_eq(a.data[2 + 13], 0x09);
	scsi_cmd(&a, tur, 6, false, false, 0, NULL, 0, true);
	expect_status(&a, 0);
	scsi_cmd(&a, rc10, 10, true, false, 8, NULL, 0, true);
	ck_assert_int_eq(recv_pdu(&a), 0);
	ck_assert_int_eq(bhs_opcode(&a.h), ISCSI_OP_DATA_IN);
	ck_assert_uint_eq(a.dlen, 8);
	ck_assert_uint_eq(get_be32(a.data), (8u << 20) / BS - 1);
	if (!(a.h.b[1] & ISCSI_FLAG_STATUS))
		expect_status(&a, 0);
	__atomic_store_n(&mem->size, 16u << 20, __ATOMIC_RELEASE);
	close(a.fd);
}
END_TEST


/* One login PDU with stage flags f (CSG << 2 | NSG, ISCSI_LOGIN_TRANSIT);
 * returns the status. */
static int login_stage(struct cli *c, uint8_t f, const char *keys)
{
	struct iscsi_bhs h;
	char kv[4096];
	uint32_t len = kv_build(kv, keys);

	iscsi_bhs_init(&h, ISCSI_OP_LOGIN_REQ, f);
	h.b[0] |= ISCSI_BHS_IMMEDIATE;
	h.b[8] = 0x80;
	put_be32(h.b + 10, c->isid ? c->isid : (c->isid = ++isid_next));
	bhs_put32(&h, BHS_ITT, c->itt++);
	bhs_put32(&h, BHS_CMDSN, c->cmdsn);
	send_pdu(c, &h, kv, len);
	ck_assert_int_eq(recv_pdu(c), 0);
	ck_assert_int_eq(bhs_opcode(&c->h), ISCSI_OP_LOGIN_RSP);
	return c->h.b[36] << 8 | c->h.b[37];
}

static const char *kv_value(struct cli *c, const char *key)
{
	size_t kl = strlen(key);

	for (uint32_t pos = 0; pos < c->dlen; pos += (uint32_t)strlen((char *)c->data + pos) + 1)
		if (!strncmp((char *)c->data + pos, key, kl) && c->data[pos + kl] == '=')
			return (char *)c->data + pos + kl + 1;
	return NULL;
}

#define SEC_TO_OP	(ISCSI_LOGIN_TRANSIT | 0 << 2 | 1)

/* CHECK CONDITION with sense key sk and ASC/ASCQ asc (fixed format) */
static void expect_sense(struct cli *c, uint8_t sk, uint16_t asc)
{
	expect_status(c, 2);
	ck_assert_int_eq(c->data[2 + 2] & 0x0f, sk);
	ck_assert_int_eq(c->data[2 + 12], asc >> 8);
	ck_assert_int_eq(c->data[2 + 13], asc & 0xff);
}

/* REPORT LUNS: the number of LUNs listed */
static unsigned report_luns(struct cli *c)
{
	uint8_t cdb[12] = { 0xa0 };
	unsigned n;

	put_be32(cdb + 6, 4096);
	scsi_cmd(c, cdb, 12, true, false, 4096, NULL, 0, true);
	ck_assert_int_eq(recv_pdu(c), 0);
	ck_assert_int_eq(bhs_opcode(&c->h), ISCSI_OP_DATA_IN);
	n = get_be32(c->data) / 8;
	if (!(c->h.b[1] & ISCSI_FLAG_STATUS))
		expect_status(c, 0);
	else
		ck_assert_int_eq(c->h.b[3], 0);
	return n;
}

struct lun_remover {
	pthread_t	th;
	int		rc;
	struct blkdev	*bd;
	uint64_t	took_ms;
};

static void *lun_remover_main(void *arg)
{
	struct lun_remover *r = arg;
	uint64_t t0 = mono_ms();

	r->rc = iscsi_lun_remove(IQN, 1, &r->bd);
	r->took_ms = mono_ms() - t0;
	return NULL;
}

/*
 * LUNs added and removed under live sessions: a new LUN raises REPORTED
 * LUNS DATA HAS CHANGED once on every nexus (REPORT LUNS clears it); a LUN
 * removed lets its command doing I/O finish (the removal waits for it), a
 * write still gathering its data and every later command get LOGICAL UNIT
 * NOT SUPPORTED, the other LUN carries on, and the device comes back with
 * no channel left open on it.
 */
START_TEST(lun_hotplug)
{
	static struct cli a, b;
	static uint8_t buf[8 * BS], rbuf[8 * BS];
	static const uint8_t tur[6] = { 0 };
	struct lun_remover r = { 0 };
	struct blkdev *m1, *f, *bd;
	uint32_t got = 0, ttt;

	ck_assert_int_eq(blk_mem_create("hotmem", 1u << 20, BS, &m1), 0);
	ck_assert_int_eq(blk_fault_create("hot", m1, &f), 0);
	cli_connect(&a);
	login(&a, "");
	cli_connect(&b);
	login(&b, "");
	scsi_cmd(&a, tur, 6, false, false, 0, NULL, 0, true);
	expect_status(&a, 0);
	ck_assert_uint_eq(report_luns(&b), 1);

	/* added: once per nexus, REPORT LUNS clears it */
	ck_assert_int_eq(iscsi_lun_add(IQN, 1, f, false), 0);
	scsi_cmd(&a, tur, 6, false, false, 0, NULL, 0, true);
	expect_sense(&a, SK_UNIT_ATTENTION, 0x3f0e);
	scsi_cmd(&a, tur, 6, false, false, 0, NULL, 0, true);
	expect_status(&a, 0);
	ck_assert_uint_eq(report_luns(&b), 2);
	scsi_cmd(&b, tur, 6, false, false, 0, NULL, 0, true);
	expect_status(&b, 0);

	a.lun = b.lun = 1;
	fill(buf, sizeof(buf), 3);
	write10(&a, 0, 8, buf, sizeof(buf), false);
	expect_status(&a, 0);
	/* a write waiting for its data (no immediate data: an R2T) ... */
	write10(&a, 8, 8, NULL, 0, false);
	ck_assert_int_eq(recv_pdu(&a), 0);
	ck_assert_int_eq(bhs_opcode(&a.h), ISCSI_OP_R2T);
	ttt = bhs_get32(&a.h, BHS_TTT);
	/* ... and a read on the disk (taken before the NOP is answered) */
	ck_assert_int_eq(fault_set_latency(f, 600ull * 1000 * 1000, FAULT_OP(BIO_READ)), 0);
	{
		uint8_t cdb[10] = { 0x28 };

		put_be16(cdb + 7, 8);
		scsi_cmd(&b, cdb, 10, true, false, sizeof(rbuf), NULL, 0, true);
	}
	nop_ping(&b);
	ck_assert_int_eq(pthread_create(&r.th, NULL, lun_remover_main, &r), 0);
	/* the read finishes with its data */
	for (;;) {
		ck_assert_int_eq(recv_pdu(&b), 0);
		if (bhs_opcode(&b.h) == ISCSI_OP_SCSI_RSP) {
			ck_assert_int_eq(b.h.b[3], 0);
			break;
		}
		ck_assert_int_eq(bhs_opcode(&b.h), ISCSI_OP_DATA_IN);
		memcpy(rbuf + got, b.data, b.dlen);
		got += b.dlen;
		if (b.h.b[1] & ISCSI_FLAG_STATUS) {
			ck_assert_int_eq(b.h.b[3], 0);
			break;
		}
	}
	ck_assert_uint_eq(got, sizeof(rbuf));
	ck_assert_mem_eq(rbuf, buf, sizeof(rbuf));
	ck_assert_int_eq(pthread_join(r.th, NULL), 0);
	ck_assert_int_eq(r.rc, 0);
	ck_assert_ptr_eq(r.bd, f);
	ck_assert_msg(r.took_ms >= 200, "removed after %llu ms, with a read on the disk",
		      (unsigned long long)r.took_ms);
	ck_assert_int_eq(iscsi_lun_remove(IQN, 1, &bd), -ENOENT);
	/* nothing holds the device: it closes */
	ck_assert_int_eq(blkdev_close(f), 0);
	ck_assert_int_eq(blkdev_close(m1), 0);

	/* the gathered write runs into the missing LUN */
	data_out(&a, ttt, 0, 0, buf, sizeof(buf), true);
	expect_sense(&a, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
	scsi_cmd(&b, tur, 6, false, false, 0, NULL, 0, true);
	expect_sense(&b, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
	/* LUN 0: the change once, then on as before */
	a.lun = b.lun = 0;
	for (int i = 0; i < 2; i++) {
		struct cli *c = i ? &b : &a;

		scsi_cmd(c, tur, 6, false, false, 0, NULL, 0, true);
		expect_sense(c, SK_UNIT_ATTENTION, 0x3f0e);
		ck_assert_uint_eq(read10(c, 0, 8, rbuf), sizeof(rbuf));
		ck_assert_uint_eq(report_luns(c), 1);
	}
	close(a.fd);
	close(b.fd);
}
END_TEST

/* ---- several connections per session (MC/S) ---- */

/* A SCSI response with GOOD status (any of the commands outstanding);
 * returns its ITT. */
static uint32_t expect_good(struct cli *c)
{
	ck_assert_int_eq(recv_pdu(c), 0);
	ck_assert_int_eq(bhs_opcode(&c->h), ISCSI_OP_SCSI_RSP);
	ck_assert_int_eq(c->h.b[3], 0);
	return bhs_itt(&c->h);
}

/* Connection cid of a's session: same ISID, a's TSIH; the session's
 * CmdSN goes on from *sn. Returns the login status. */
static int join(struct cli *c, struct cli *a, uint16_t cid, uint32_t sn)
{
	char keys[512];

	cli_connect(c);
	c->isid = a->isid;
	c->tsih = a->got_tsih;
	c->cid = cid;
	c->cmdsn = sn;
	snprintf(keys, sizeof(keys), "InitiatorName=iqn.2026-11.org.sand:test;TargetName=%s;"
		 "SessionType=Normal;HeaderDigest=None;DataDigest=None;"
		 "MaxRecvDataSegmentLength=8192;MaxConnections=8", IQN);
	return login_keys(c, keys);
}

static void logout(struct cli *c, uint8_t reason, uint16_t cid, uint8_t response)
{
	struct iscsi_bhs h;

	iscsi_bhs_init(&h, ISCSI_OP_LOGOUT_REQ, ISCSI_FLAG_FINAL | reason);
	h.b[0] |= ISCSI_BHS_IMMEDIATE;
	bhs_put32(&h, BHS_ITT, ++c->itt);
	put_be16(h.b + 20, cid);
	bhs_put32(&h, BHS_CMDSN, c->cmdsn);
	bhs_put32(&h, BHS_EXPSTATSN, c->statsn + 1);
	send_pdu(c, &h, NULL, 0);
	do	/* the target's own pings may come first */
		ck_assert_int_eq(recv_pdu(c), 0);
	while (bhs_opcode(&c->h) == ISCSI_OP_NOP_IN);
	ck_assert_int_eq(bhs_opcode(&c->h), ISCSI_OP_LOGOUT_RSP);
	ck_assert_int_eq(c->h.b[2], response);
}

/*
 * Two connections in one session: the second joins with the first's TSIH
 * and ISID (wherever it landed, it moves to the session's reactor); one
 * command window: commands spread over both connections with their CmdSNs
 * out of order across them run in CmdSN order (an overwrite tells), each
 * answered on the connection that carried it, a write held for its turn
 * gets its R2T on its own connection; logging out one connection leaves
 * the other working.
 */
START_TEST(mcs_two_connections)
{
	static struct cli a, b;
	static uint8_t buf[16][4 * BS], back[4 * BS];
	static const uint8_t tur[6] = { 0 };
	uint32_t sn, itt_a[8], na = 0, nb = 0;

	cli_connect(&a);
	login(&a, ";MaxConnections=8");
	ck_assert(has_kv(&a, "MaxConnections=8"));
	ck_assert_int_eq(join(&b, &a, 1, a.cmdsn), 0);
	ck_assert_uint_eq(b.got_tsih, a.got_tsih);	/* same TSIH */
	ck_assert_uint_eq(bhs_get32(&b.h, BHS_EXPCMDSN), a.cmdsn);
	nop_ping(&b);
	{	/* iscsi.sessions: both connections, one TSIH (grouped by the RPC) */
		json_t *all = iscsi_sessions_json(), *e;
		unsigned n = 0, cids = 0;
		size_t i;

		ck_assert_ptr_nonnull(all);
		json_array_foreach(all, i, e) {
			if (json_integer_value(json_object_get(e, "tsih")) != a.got_tsih)
				continue;
			n++;
			cids |= 1u << json_integer_value(json_object_get(e, "cid"));
			ck_assert_int_eq(json_integer_value(json_object_get(
				json_object_get(e, "params"), "max_connections")), 8);
		}
		json_decref(all);
		ck_assert_uint_eq(n, 2);
		ck_assert_uint_eq(cids, 3);
	}

	/* the same blocks written twice: CmdSN sn + 1 on a first, then sn on
	 * b; in CmdSN order the last data is a's */
	sn = a.cmdsn;
	fill(buf[0], 4 * BS, 1);
	fill(buf[1], 4 * BS, 2);
	a.cmdsn = sn + 1;
	write10(&a, 0, 4, buf[1], 4 * BS, false);
	b.cmdsn = sn;
	write10(&b, 0, 4, buf[0], 4 * BS, false);
	expect_status(&b, 0);
	expect_status(&a, 0);
	ck_assert_uint_eq(bhs_get32(&a.h, BHS_EXPCMDSN), sn + 2);
	sn += 2;
	a.cmdsn = sn;
	ck_assert_uint_eq(read10(&a, 0, 4, back), 4 * BS);
	ck_assert_mem_eq(back, buf[1], 4 * BS);
	sn++;

	/* 16 writes, CmdSN sn .. sn + 15 alternating a, b; the odd ones
	 * (all ahead of the window) sent first, then the even ones */
	for (int pass = 1; pass >= 0; pass--) {
		for (uint32_t i = (uint32_t)pass; i < 16; i += 2) {
			struct cli *c = i % 2 ? &b : &a;

			fill(buf[i], 4 * BS, (uint8_t)(10 + i));
			c->cmdsn = sn + i;
			write10(c, 8 + 4 * i, 4, buf[i], 4 * BS, false);
			if (c == &a)
				itt_a[na++] = a.itt;
			else
				nb++;
		}
	}
	for (uint32_t i = 0; i < na; i++) {
		uint32_t itt = expect_good(&a);
		bool mine = false;

		for (uint32_t k = 0; k < na; k++)
			mine |= itt == itt_a[k];
		ck_assert(mine);	/* allegiance: only a's own commands on a */
	}
	for (uint32_t i = 0; i < nb; i++)
		expect_good(&b);
	sn += 16;
	ck_assert_uint_eq(bhs_get32(&b.h, BHS_EXPCMDSN), sn);
	a.cmdsn = b.cmdsn = sn;
	for (uint32_t i = 0; i < 16; i++) {
		struct cli *c = i % 2 ? &a : &b;

		ck_assert_uint_eq(read10(c, 8 + 4 * i, 4, back), 4 * BS);
		ck_assert_mem_eq(back, buf[i], 4 * BS);
		a.cmdsn = b.cmdsn = c->cmdsn;
	}
	sn = a.cmdsn;

	/* a write ahead of the window (no immediate data) gets its R2T on
	 * its own connection once b's command before it has come */
	a.cmdsn = sn + 1;
	write10(&a, 200, 4, NULL, 0, false);
	b.cmdsn = sn;
	scsi_cmd(&b, tur, 6, false, false, 0, NULL, 0, true);
	expect_status(&b, 0);
	ck_assert_int_eq(recv_pdu(&a), 0);
	ck_assert_int_eq(bhs_opcode(&a.h), ISCSI_OP_R2T);
	data_out(&a, bhs_get32(&a.h, BHS_TTT), 0, 0, buf[3], 4 * BS, true);
	expect_status(&a, 0);
	sn += 2;
	a.cmdsn = b.cmdsn = sn;

	/* ABORT TASK on a for b's write waiting for its data: the task set is
	 * the session's */
	{
		struct iscsi_bhs h;

		write10(&b, 300, 4, NULL, 0, false);
		ck_assert_int_eq(recv_pdu(&b), 0);
		ck_assert_int_eq(bhs_opcode(&b.h), ISCSI_OP_R2T);
		iscsi_bhs_init(&h, ISCSI_OP_TASK_MGMT_REQ, ISCSI_FLAG_FINAL | 1);
		h.b[0] |= ISCSI_BHS_IMMEDIATE;
		bhs_put32(&h, BHS_ITT, 0x7100);
		bhs_put32(&h, BHS_TTT, b.itt);		/* referenced task tag */
		bhs_put32(&h, BHS_CMDSN, b.cmdsn);
		bhs_put32(&h, 32, b.cmdsn - 1);		/* RefCmdSN */
		send_pdu(&a, &h, NULL, 0);
		do
			ck_assert_int_eq(recv_pdu(&a), 0);
		while (bhs_opcode(&a.h) == ISCSI_OP_NOP_IN);
		ck_assert_int_eq(bhs_opcode(&a.h), ISCSI_OP_TASK_MGMT_RSP);
		ck_assert_int_eq(a.h.b[2], 0);			/* function complete */
		/* its data now belongs to no task */
		data_out(&b, bhs_get32(&b.h, BHS_TTT), 0, 0, buf[4], 4 * BS, true);
		ck_assert_int_eq(recv_pdu(&b), 0);
		ck_assert_int_eq(bhs_opcode(&b.h), ISCSI_OP_REJECT);
		sn++;
		a.cmdsn = b.cmdsn = sn;
	}

	/* b logs out alone (reason 1: close the connection); a goes on */
	logout(&b, 1, 1, 0);
	expect_closed(&b);
	close(b.fd);
	ck_assert_uint_eq(read10(&a, 200, 4, back), 4 * BS);
	ck_assert_mem_eq(back, buf[3], 4 * BS);
	/* a connection logged out from another one: reason 1 with its CID */
	ck_assert_int_eq(join(&b, &a, 7, a.cmdsn), 0);
	logout(&a, 1, 7, 0);
	expect_closed(&b);
	close(b.fd);
	logout(&a, 1, 9, 1);		/* no such CID */
	nop_ping(&a);
	/* the session (reason 0): every connection goes */
	ck_assert_int_eq(join(&b, &a, 2, a.cmdsn), 0);
	logout(&a, 0, 0, 0);
	expect_closed(&a);
	expect_closed(&b);
	close(a.fd);
	close(b.fd);
}
END_TEST

/* ErrorRecoveryLevel 0: a connection lost (not logged out) ends its whole
 * session; a login adding a connection past MaxConnections is refused, one
 * naming a CID in use reinstates that connection, one naming a session
 * that does not exist is refused; RESERVE(6) holds for the session, not
 * for one connection. */
START_TEST(mcs_limits_and_loss)
{
	static struct cli a, b, c, d;

	cli_connect(&a);
	login(&a, ";MaxConnections=2");
	ck_assert(has_kv(&a, "MaxConnections=2"));
	ck_assert_int_eq(join(&b, &a, 1, a.cmdsn), 0);
	ck_assert_int_eq(join(&c, &a, 2, a.cmdsn), 0x0206);	/* too many connections */
	expect_closed(&c);
	close(c.fd);
	/* connection reinstatement: CID 1 again replaces b */
	ck_assert_int_eq(join(&d, &a, 1, a.cmdsn), 0);
	expect_closed(&b);
	close(b.fd);
	d.cmdsn = a.cmdsn;
	nop_ping(&d);
	nop_ping(&a);
	/* the I_T nexus is the session: RESERVE(6) through a holds for d
	 * too (same session), not for another session */
	{
		static const uint8_t reserve6[6] = { 0x16 }, release6[6] = { 0x17 };
		static const uint8_t tur[6] = { 0 };
		static struct cli o;

		scsi_cmd(&a, reserve6, 6, false, false, 0, NULL, 0, true);
		expect_status(&a, 0);
		d.cmdsn = a.cmdsn;
		scsi_cmd(&d, tur, 6, false, false, 0, NULL, 0, true);
		expect_status(&d, 0);
		a.cmdsn = d.cmdsn;
		cli_connect(&o);
		login(&o, "");
		scsi_cmd(&o, tur, 6, false, false, 0, NULL, 0, true);
		expect_status(&o, SCSI_STATUS_RESERVATION_CONFLICT);
		scsi_cmd(&d, release6, 6, false, false, 0, NULL, 0, true);
		expect_status(&d, 0);
		a.cmdsn = d.cmdsn;
		scsi_cmd(&o, tur, 6, false, false, 0, NULL, 0, true);
		expect_status(&o, 0);
		close(o.fd);
	}
	/* no session with this TSIH */
	cli_connect(&c);
	c.tsih = (uint16_t)(a.got_tsih + 1000);
	ck_assert_int_eq(login_keys(&c, "InitiatorName=iqn.2026-11.org.sand:test;TargetName=" IQN),
			 0x020a);
	close(c.fd);
	/* d dies: a goes with it */
	close(d.fd);
	expect_closed(&a);
	close(a.fd);
}
END_TEST

START_TEST(chap_and_acl)
{
	static struct cli c;
	struct iscsi_chap_cred cred = { .required = true };
	struct iscsi_bhs h;
	struct blkdev *bd;
	uint8_t ch[64], d[16];
	char r[64], keys[256];
	int clen;
	unsigned id;

	strcpy(cred.user, "alice");
	strcpy(cred.secret, "secret-of-alice");
	ck_assert_int_eq(iscsi_auth_set(IQN, &cred), 0);
	ck_assert_int_eq(iscsi_auth_set("iqn.2026-11.org.sand:none", &cred), -ENOENT);
	cred.mutual = true;
	strcpy(cred.muser, "t");
	strcpy(cred.msecret, "secret-of-alice");
	ck_assert_int_eq(iscsi_auth_set(IQN, &cred), -EINVAL);	/* same secrets */
	cred.mutual = false;

	/* straight to the operational stage without CHAP: 02/01, closed */
	cli_connect(&c);
	ck_assert_int_eq(login_keys(&c, "InitiatorName=iqn.2026-11.x:y;TargetName=" IQN),
			 ISCSI_LOGIN_AUTH_FAILED);
	expect_closed(&c);
	close(c.fd);

	/* AuthMethod=None only: 02/01 */
	cli_connect(&c);
	ck_assert_int_eq(login_stage(&c, SEC_TO_OP, "InitiatorName=iqn.2026-11.x:y;TargetName="
				     IQN ";AuthMethod=None"), ISCSI_LOGIN_AUTH_FAILED);
	expect_closed(&c);
	close(c.fd);

	/* CHAP: asking to transit early keeps us in the security stage */
	cli_connect(&c);
	ck_assert_int_eq(login_stage(&c, SEC_TO_OP, "InitiatorName=iqn.2026-11.x:y;TargetName="
				     IQN ";AuthMethod=CHAP,None"), 0);
	ck_assert(has_kv(&c, "AuthMethod=CHAP"));
	ck_assert_int_eq(c.h.b[1], 0);		/* T=0, CSG=0 */
	ck_assert_int_eq(login_stage(&c, SEC_TO_OP, "CHAP_A=5"), 0);
	ck_assert_int_eq(c.h.b[1], 0);
	ck_assert(has_kv(&c, "CHAP_A=5"));
	id = (unsigned)atoi(kv_value(&c, "CHAP_I"));
	clen = iscsi_chap_decode(kv_value(&c, "CHAP_C"), ch, sizeof(ch));
	ck_assert_int_ge(clen, 16);
	ck_assert_int_eq(iscsi_chap_response(ISCSI_CHAP_MD5, (uint8_t)id, "secret-of-alice", 15,
					     ch, (size_t)clen, d), 16);
	strcpy(r, "CHAP_R=");
	iscsi_chap_encode(d, 16, r + 7);
	snprintf(keys, sizeof(keys), "CHAP_N=alice;%s", r);
	ck_assert_int_eq(login_stage(&c, SEC_TO_OP, keys), 0);
	ck_assert_int_eq(c.h.b[1], SEC_TO_OP);	/* on to the operational stage */
	ck_assert_int_eq(login_stage(&c, ISCSI_LOGIN_TRANSIT | 1 << 2 | 3,
				     "MaxRecvDataSegmentLength=8192"), 0);
	ck_assert_int_ne(get_be16(c.h.b + 14), 0);
	nop_ping(&c);
	/* closing the target's sessions */
	ck_assert_int_eq(iscsi_target_close_sessions(IQN), 0);
	expect_closed(&c);
	close(c.fd);
	ck_assert_int_eq(iscsi_lun_remove(IQN, 0, &bd), 0);
	ck_assert_ptr_eq(bd, mem);
	ck_assert_int_eq(iscsi_lun_remove(IQN, 0, &bd), -ENOENT);
	ck_assert_int_eq(iscsi_lun_add(IQN, 0, mem, false), 0);

	/* the same response on a new connection: another challenge, refused */
	cli_connect(&c);
	ck_assert_int_eq(login_stage(&c, 0, "InitiatorName=iqn.2026-11.x:y;TargetName="
				     IQN ";AuthMethod=CHAP"), 0);
	ck_assert_int_eq(login_stage(&c, 0, "CHAP_A=5"), 0);
	ck_assert_int_eq(login_stage(&c, SEC_TO_OP, keys), ISCSI_LOGIN_AUTH_FAILED);
	expect_closed(&c);
	close(c.fd);
	ck_assert_int_eq(iscsi_auth_set(IQN, NULL), 0);

	/* ACL: another initiator listed, this one refused with 02/02 */
	ck_assert_int_eq(iscsi_acl_add(IQN, "iqn.2026-11.x:other"), 0);
	ck_assert_int_eq(iscsi_acl_add(IQN, "iqn.2026-11.X:OTHER"), -EEXIST);
	ck_assert_int_eq(iscsi_acl_add(IQN, "bad name"), -EINVAL);
	cli_connect(&c);
	ck_assert_int_eq(login_keys(&c, "InitiatorName=iqn.2026-11.x:y;TargetName=" IQN),
			 ISCSI_LOGIN_AUTHZ_FAILED);
	expect_closed(&c);
	close(c.fd);
	/* and discovery does not show it the target */
	cli_connect(&c);
	ck_assert_int_eq(login_keys(&c, "InitiatorName=iqn.2026-11.x:y;SessionType=Discovery"), 0);
	iscsi_bhs_init(&h, ISCSI_OP_TEXT_REQ, ISCSI_FLAG_FINAL);
	h.b[0] |= ISCSI_BHS_IMMEDIATE;
	bhs_put32(&h, BHS_ITT, ++c.itt);
	bhs_put32(&h, BHS_TTT, ISCSI_RSVD_TAG);
	bhs_put32(&h, BHS_CMDSN, c.cmdsn);
	send_pdu(&c, &h, "SendTargets=All", 16);
	ck_assert_int_eq(recv_pdu(&c), 0);
	ck_assert_int_eq(bhs_opcode(&c.h), ISCSI_OP_TEXT_RSP);
	ck_assert(!has_kv(&c, "TargetName=" IQN));
	close(c.fd);
	/* the listed one logs in */
	c.isid = 0;
	cli_connect(&c);
	ck_assert_int_eq(login_keys(&c, "InitiatorName=iqn.2026-11.x:other;TargetName=" IQN), 0);
	close(c.fd);
	ck_assert_int_eq(iscsi_acl_remove(IQN, "iqn.2026-11.x:other"), 0);
	ck_assert_int_eq(iscsi_acl_remove(IQN, "iqn.2026-11.x:other"), -ENOENT);
	cli_connect(&c);
	ck_assert_int_eq(login_keys(&c, "InitiatorName=iqn.2026-11.x:y;TargetName=" IQN), 0);
	close(c.fd);
}
END_TEST

/*
 * Write with whatever the login allowed: immediate data up to FirstBurstLength,
 * unsolicited Data-Out to FirstBurstLength when InitialR2T=No, then R2Ts
 * for the rest; every PDU we send within the target's MaxRecvDataSegmentLength.
 */
static void write_negotiated(struct cli *c, uint32_t lba, const uint8_t *buf, uint32_t len,
			     bool immediate, bool initial_r2t, uint32_t first_burst, uint32_t seg)
{
	uint8_t cdb[10] = { 0x2a };
	uint32_t imm = immediate ? MIN(MIN(len, first_burst), seg) : 0;
	uint32_t off = imm, unsol_end = initial_r2t ? imm : MIN(len, first_burst);
	uint32_t datasn = 0, r2tsn = 0;

	put_be32(cdb + 2, lba);
	put_be16(cdb + 7, (uint16_t)(len / BS));
	scsi_cmd(c, cdb, 10, false, true, len, buf, imm, unsol_end == imm);
	while (off < unsol_end) {
		uint32_t n = MIN(seg, unsol_end - off);

		data_out(c, ISCSI_RSVD_TAG, datasn++, off, buf + off, n, off + n == unsol_end);
		off += n;
	}
	while (off < len) {
		uint32_t ttt, at, want;

		ck_assert_int_eq(recv_pdu(c), 0);
		ck_assert_int_eq(bhs_opcode(&c->h), ISCSI_OP_R2T);
		ck_assert_uint_eq(bhs_get32(&c->h, BHS_DATASN), r2tsn++);
		ttt = bhs_get32(&c->h, BHS_TTT);
		at = bhs_get32(&c->h, BHS_BUFOFF);
		want = bhs_get32(&c->h, BHS_DESIRED_LEN);
		ck_assert_uint_eq(at, off);
		ck_assert_uint_le(at + want, len);
		for (uint32_t done = 0, sn = 0; done < want; sn++) {
			uint32_t n = MIN(seg, want - done);

			data_out(c, ttt, sn, at + done, buf + at + done, n, done + n == want);
			done += n;
		}
		off += want;
	}
	expect_status(c, 0);
}

/* Read back, checking every Data-In against our MaxRecvDataSegmentLength. */
static void read_checked(struct cli *c, uint32_t lba, uint8_t *buf, uint32_t len, uint32_t mrdsl)
{
	uint8_t cdb[10] = { 0x28 };
	uint32_t got = 0, datasn = 0;

	put_be32(cdb + 2, lba);
	put_be16(cdb + 7, (uint16_t)(len / BS));
	scsi_cmd(c, cdb, 10, true, false, len, NULL, 0, true);
	for (;;) {
		ck_assert_int_eq(recv_pdu(c), 0);
		if (bhs_opcode(&c->h) == ISCSI_OP_SCSI_RSP) {
			ck_assert_int_eq(c->h.b[3], 0);
			break;
		}
		ck_assert_int_eq(bhs_opcode(&c->h), ISCSI_OP_DATA_IN);
		ck_assert_uint_eq(bhs_get32(&c->h, BHS_DATASN), datasn++);
		ck_assert_uint_eq(bhs_get32(&c->h, BHS_BUFOFF), got);
		ck_assert_uint_le(c->dlen, mrdsl);
		memcpy(buf + got, c->data, c->dlen);
		got += c->dlen;
		if (c->h.b[1] & ISCSI_FLAG_STATUS) {
			ck_assert_int_eq(c->h.b[3], 0);
			break;
		}
	}
	ck_assert_uint_eq(got, len);
}

/* MaxRecvDataSegmentLength 512 and 16 MiB - 1, each with the four
 * ImmediateData / InitialR2T combinations, and odd bursts: 256 KiB written
 * and read back each time. */
START_TEST(negotiation_matrix)
{
	static const uint32_t mrdsls[] = { 512, 16777215 };
	static struct cli c;
	static uint8_t buf[256 * 1024], back[256 * 1024];
	int round = 0;

	for (unsigned m = 0; m < ARRAY_SIZE(mrdsls); m++) {
		for (int combo = 0; combo < 4; combo++, round++) {
			bool immediate = combo & 1, initial_r2t = combo & 2;
			uint32_t first_burst = m ? 65536 : 8192 + 512, max_burst = m ? 262144 : 24576;
			uint32_t lba = (uint32_t)round * (sizeof(buf) / BS);
			char keys[512];

			cli_connect(&c);
			snprintf(keys, sizeof(keys), "InitiatorName=iqn.2026-11.org.sand:matrix;"
				 "TargetName=%s;SessionType=Normal;MaxRecvDataSegmentLength=%u;"
				 "ImmediateData=%s;InitialR2T=%s;FirstBurstLength=%u;MaxBurstLength=%u",
				 IQN, mrdsls[m], immediate ? "Yes" : "No", initial_r2t ? "Yes" : "No",
				 first_burst, max_burst);
			ck_assert_int_eq(login_keys(&c, keys), 0);
			ck_assert(has_kv(&c, immediate ? "ImmediateData=Yes" : "ImmediateData=No"));
			ck_assert(has_kv(&c, initial_r2t ? "InitialR2T=Yes" : "InitialR2T=No"));
			ck_assert(has_kv(&c, "MaxRecvDataSegmentLength=262144"));
			fill(buf, sizeof(buf), (uint8_t)(round * 31 + 1));
			write_negotiated(&c, lba, buf, sizeof(buf), immediate, initial_r2t,
					 first_burst, 262144);
			memset(back, 0, sizeof(back));
			read_checked(&c, lba, back, sizeof(back), mrdsls[m]);
			ck_assert_mem_eq(back, buf, sizeof(buf));
			nop_ping(&c);
			close(c.fd);
		}
	}
}
END_TEST

/* ---- resets across I_T nexuses (daemon/iscsi/tmf.c, ua.c) ---- */

/* The next PDU but the target's own pings */
static void recv_next(struct cli *c)
{
	do
		ck_assert_int_eq(recv_pdu(c), 0);
	while (bhs_opcode(&c->h) == ISCSI_OP_NOP_IN && bhs_itt(&c->h) == ISCSI_RSVD_TAG);
}

/* Task management function func for LUN lun, immediate; returns its ITT */
static uint32_t tmf_send(struct cli *c, uint8_t func, unsigned lun)
{
	struct iscsi_bhs h;

	iscsi_bhs_init(&h, ISCSI_OP_TASK_MGMT_REQ, ISCSI_FLAG_FINAL | func);
	h.b[0] |= ISCSI_BHS_IMMEDIATE;
	bhs_put32(&h, BHS_ITT, ++c->itt);
	bhs_put32(&h, BHS_TTT, ISCSI_RSVD_TAG);
	bhs_put32(&h, BHS_CMDSN, c->cmdsn);
	put_be64(h.b + BHS_LUN, scsi_lun_encode(lun));
	send_pdu(c, &h, NULL, 0);
	return c->itt;
}

static void expect_tmf_rsp(struct cli *c, uint32_t itt, uint8_t response)
{
	recv_next(c);
	ck_assert_int_eq(bhs_opcode(&c->h), ISCSI_OP_TASK_MGMT_RSP);
	ck_assert_uint_eq(bhs_itt(&c->h), itt);
	ck_assert_int_eq(c->h.b[2], response);
}

static void tur_expect(struct cli *c, uint8_t status, uint16_t asc)
{
	static const uint8_t tur[6] = { 0 };

	scsi_cmd(c, tur, 6, false, false, 0, NULL, 0, true);
	if (status == 2)
		expect_sense(c, SK_UNIT_ATTENTION, asc);
	else
		expect_status(c, status);
}

/* LUN 1 of the target: a memory device under a fault device (latency) */
static struct blkdev *slow_lun(struct blkdev **m)
{
	struct blkdev *f;

	ck_assert_int_eq(blk_mem_create("tmfmem", 1u << 20, BS, m), 0);
	ck_assert_int_eq(blk_fault_create("tmfslow", *m, &f), 0);
	ck_assert_int_eq(iscsi_lun_add(IQN, 1, f, false), 0);
	return f;
}

static void slow_lun_free(struct blkdev *m, struct blkdev *f)
{
	lun_drop(IQN, 1, f);
	ck_assert_int_eq(blkdev_close(f), 0);
	ck_assert_int_eq(blkdev_close(m), 0);
}

/* MODE SENSE(6) of the control page (no block descriptors): c->data + 4 */
static const uint8_t *control_page(struct cli *c)
{
	static const uint8_t cdb[6] = { 0x1a, 0x08, 0x0a, 0, 255, 0 };

	scsi_cmd(c, cdb, 6, true, false, 255, NULL, 0, true);
	recv_next(c);
	ck_assert_int_eq(bhs_opcode(&c->h), ISCSI_OP_DATA_IN);
	ck_assert_uint_eq(c->dlen, 4 + 12);
	ck_assert_int_eq(c->data[4], 0x0a);
	if (!(c->h.b[1] & ISCSI_FLAG_STATUS))
		expect_status(c, 0);
	return c->data + 4;
}

/* MODE SELECT(6) of the control page with TAS tas */
static void select_tas(struct cli *c, bool tas)
{
	static const uint8_t cdb[6] = { 0x15, 0x10, 0, 0, 16, 0 };
	uint8_t p[16] = { 0, 0, 0, 0, 0x0a, 10, 0x22 };

	p[4 + 5] = tas ? 0x40 : 0;
	put_be16(p + 4 + 8, 0xffff);
	scsi_cmd(c, cdb, 6, false, true, sizeof(p), p, sizeof(p), true);
	expect_status(c, 0);
}

/*
 * LOGICAL UNIT RESET from session a, with TAS 1 (the default): b's write
 * doing I/O and its write waiting for Data-Out both end with TASK ABORTED;
 * a's own write doing I/O ends without a response; the function's
 * response comes only after both writes have ended (1.5 s of device
 * latency); the write that was on the disk is there whole, the one that
 * never got its data left nothing; both nexuses then get BUS DEVICE RESET
 * FUNCTION OCCURRED once, and their next command works.
 */
START_TEST(reset_aborts_every_nexus)
{
	static struct cli a, b;
	static uint8_t old[8 * BS], buf[8 * BS], rbuf[8 * BS], zero[8 * BS];
	struct blkdev *m, *f = slow_lun(&m);
	uint32_t itt1, itt2, itt;
	uint64_t t_last, took;
	int aborted = 0;

	cli_connect(&a);
	login(&a, "");
	a.lun = 1;
	cli_connect(&b);
	login(&b, "");
	b.lun = 1;
	fill(old, sizeof(old), 1);
	fill(buf, sizeof(buf), 2);
	write10(&a, 0, 8, old, sizeof(old), false);
	expect_status(&a, 0);
	tur_expect(&b, 0, 0);
	ck_assert_int_eq(fault_set_latency(f, 1500ull * 1000 * 1000, FAULT_OP(BIO_WRITE)), 0);
	write10(&b, 0, 8, buf, sizeof(buf), false);		/* all immediate: runs */
	itt1 = b.itt;
	write10(&b, 16, 8, buf, 0, false);			/* InitialR2T: an R2T */
	itt2 = b.itt;
	recv_next(&b);
	ck_assert_int_eq(bhs_opcode(&b.h), ISCSI_OP_R2T);
	ck_assert_uint_eq(bhs_itt(&b.h), itt2);
	nop_ping(&b);		/* the first write is doing I/O */
	t_last = mono_ms();	/* a's write starts after this */
	write10(&a, 32, 8, buf, sizeof(buf), false);
	nop_ping(&a);
	itt = tmf_send(&a, 5, 1);
	expect_tmf_rsp(&a, itt, 0);	/* and nothing for a's write */
	took = mono_ms() - t_last;
	ck_assert_msg(took >= 1450, "reset answered %llu ms after the last write started",
		      (unsigned long long)took);
	ck_assert_int_eq(fault_set_latency(f, 0, 0), 0);
	/* b: TASK ABORTED for both, in either order */
	for (int i = 0; i < 2; i++) {
		recv_next(&b);
		ck_assert_int_eq(bhs_opcode(&b.h), ISCSI_OP_SCSI_RSP);
		ck_assert_int_eq(b.h.b[3], SCSI_STATUS_TASK_ABORTED);
		ck_assert_uint_eq(b.dlen, 0);		/* no sense */
		aborted |= bhs_itt(&b.h) == itt1 ? 1 : bhs_itt(&b.h) == itt2 ? 2 : 4;
	}
	ck_assert_int_eq(aborted, 3);
	/* both nexuses: the unit attention once, then it works */
	tur_expect(&a, 2, ASC_BUS_DEVICE_RESET);
	tur_expect(&a, 0, 0);
	tur_expect(&b, 2, ASC_BUS_DEVICE_RESET);
	tur_expect(&b, 0, 0);
	/* the write that was doing I/O is whole, the other one left nothing */
	ck_assert_uint_eq(read10(&b, 0, 8, rbuf), sizeof(rbuf));
	ck_assert(!memcmp(rbuf, buf, sizeof(buf)) || !memcmp(rbuf, old, sizeof(old)));
	ck_assert_uint_eq(read10(&b, 16, 8, rbuf), sizeof(rbuf));
	ck_assert_mem_eq(rbuf, zero, sizeof(zero));
	close(a.fd);
	close(b.fd);
	slow_lun_free(m, f);
}
END_TEST

/*
 * The control page says TST 001b (a task set per I_T nexus) and TAS 1;
 * b's MODE SELECT clearing TAS gives a (not b) MODE PARAMETERS CHANGED;
 * then a's LUN reset ends b's write doing I/O without any response.
 */
START_TEST(reset_without_tas)
{
	static struct cli a, b;
	static uint8_t buf[8 * BS];
	struct blkdev *m, *f = slow_lun(&m);
	const uint8_t *p;
	uint64_t t_last, took;
	uint32_t itt;

	cli_connect(&a);
	login(&a, "");
	a.lun = 1;
	cli_connect(&b);
	login(&b, "");
	b.lun = 1;
	tur_expect(&a, 0, 0);
	p = control_page(&b);
	ck_assert_int_eq(p[2] >> 5, 1);			/* TST */
	ck_assert_int_eq(p[5] & 0x40, 0x40);		/* TAS */
	select_tas(&b, false);
	tur_expect(&b, 0, 0);				/* its own change */
	tur_expect(&a, 2, ASC_MODE_PARAMS_CHANGED);
	tur_expect(&a, 0, 0);
	p = control_page(&a);
	ck_assert_int_eq(p[5] & 0x40, 0);
	select_tas(&b, false);				/* no change: no attention */
	tur_expect(&a, 0, 0);

	fill(buf, sizeof(buf), 5);
	ck_assert_int_eq(fault_set_latency(f, 1000ull * 1000 * 1000, FAULT_OP(BIO_WRITE)), 0);
	t_last = mono_ms();
	write10(&b, 0, 8, buf, sizeof(buf), false);
	nop_ping(&b);
	itt = tmf_send(&a, 5, 1);
	expect_tmf_rsp(&a, itt, 0);
	took = mono_ms() - t_last;
	ck_assert_msg(took >= 950, "reset answered %llu ms after the write started",
		      (unsigned long long)took);
	ck_assert_int_eq(fault_set_latency(f, 0, 0), 0);
	nop_ping(&b);		/* no response for the write came before */
	tur_expect(&b, 2, ASC_BUS_DEVICE_RESET);
	tur_expect(&b, 0, 0);
	close(a.fd);
	close(b.fd);
	slow_lun_free(m, f);
}
END_TEST

/* An immediate NOP-Out and its NOP-In, whatever the window says */
static void ping_any(struct cli *c)
{
	struct iscsi_bhs h;

	iscsi_bhs_init(&h, ISCSI_OP_NOP_OUT, ISCSI_FLAG_FINAL);
	h.b[0] |= ISCSI_BHS_IMMEDIATE;
	bhs_put32(&h, BHS_ITT, 0x6000);
	bhs_put32(&h, BHS_TTT, ISCSI_RSVD_TAG);
	bhs_put32(&h, BHS_CMDSN, c->cmdsn);
	send_pdu(c, &h, NULL, 0);
	recv_next(c);
	ck_assert_int_eq(bhs_opcode(&c->h), ISCSI_OP_NOP_IN);
	ck_assert_uint_eq(bhs_itt(&c->h), 0x6000);
}

/*
 * A write held in the command window (its CmdSN ahead of its MC/S
 * session's, the one before it not come yet) when another session resets
 * the LU: TASK ABORTED at once, nothing written, and its CmdSN still
 * counts: the command before it, coming after, runs (with the unit
 * attention) and the window moves past both.
 */
START_TEST(reset_aborts_held_task)
{
	static struct cli a, b, r;
	static uint8_t buf[4 * BS], back[4 * BS], zero[4 * BS];
	uint32_t sn, itt;

	cli_connect(&a);
	login(&a, ";MaxConnections=8");
	ck_assert_int_eq(join(&b, &a, 1, a.cmdsn), 0);
	nop_ping(&b);
	cli_connect(&r);
	login(&r, "");
	tur_expect(&r, 0, 0);
	sn = a.cmdsn;
	fill(buf, sizeof(buf), 4);
	a.cmdsn = sn + 1;
	write10(&a, 40, 4, buf, sizeof(buf), false);	/* held: sn has not come */
	itt = a.itt;
	ping_any(&a);
	ck_assert_uint_eq(bhs_get32(&a.h, BHS_EXPCMDSN), sn);
	expect_tmf_rsp(&r, tmf_send(&r, 5, 0), 0);
	a.itt = itt;
	expect_status(&a, SCSI_STATUS_TASK_ABORTED);
	b.cmdsn = sn;
	tur_expect(&b, 2, ASC_BUS_DEVICE_RESET);		/* the session's, once */
	ping_any(&b);
	ck_assert_uint_eq(bhs_get32(&b.h, BHS_EXPCMDSN), sn + 2);	/* past both */
	a.cmdsn = sn + 2;
	tur_expect(&a, 0, 0);
	ck_assert_uint_eq(read10(&a, 40, 4, back), sizeof(back));
	ck_assert_mem_eq(back, zero, sizeof(zero));
	tur_expect(&r, 2, ASC_BUS_DEVICE_RESET);
	close(a.fd);
	close(b.fd);
	close(r.fd);
}
END_TEST

static void reserve6(struct cli *c, bool release, uint8_t status)
{
	uint8_t cdb[6] = { release ? 0x17 : 0x16 };

	scsi_cmd(c, cdb, 6, false, false, 0, NULL, 0, true);
	expect_status(c, status);
}

static void pr_out(struct cli *c, uint8_t sa, uint8_t type, uint64_t key, uint64_t sark)
{
	uint8_t cdb[10] = { 0x5f, sa, type }, p[24] = { 0 };

	put_be32(cdb + 5, sizeof(p));
	put_be64(p, key);
	put_be64(p + 8, sark);
	scsi_cmd(c, cdb, 10, false, true, sizeof(p), p, sizeof(p), true);
	expect_status(c, 0);
}

/*
 * CLEAR TASK SET clears only the issuer's task set (TST 001b): b's write
 * goes on. TARGET WARM RESET resets every LU: unit attentions on both LUNs
 * for both nexuses, b's RESERVE(6) released, b's persistent reservation
 * kept. A LUN reset of a LUN that does not exist: LUN does not exist.
 */
START_TEST(clear_task_set_and_target_reset)
{
	static struct cli a, b;
	static uint8_t buf[8 * BS];
	struct blkdev *m, *f = slow_lun(&m);
	uint32_t itt, wtt;

	cli_connect(&a);
	login(&a, "");
	cli_connect(&b);
	login(&b, "");
	reserve6(&b, false, 0);				/* LUN 0 */
	reserve6(&a, false, SCSI_STATUS_RESERVATION_CONFLICT);
	a.lun = b.lun = 1;
	pr_out(&b, 0, 0, 0, 0xb0b);			/* REGISTER */
	pr_out(&b, 1, 1, 0xb0b, 0);			/* RESERVE, write exclusive */
	fill(buf, sizeof(buf), 9);
	write10(&a, 0, 8, buf, sizeof(buf), false);
	expect_status(&a, SCSI_STATUS_RESERVATION_CONFLICT);

	ck_assert_int_eq(fault_set_latency(f, 500ull * 1000 * 1000, FAULT_OP(BIO_WRITE)), 0);
	write10(&b, 0, 8, buf, sizeof(buf), false);
	wtt = b.itt;
	nop_ping(&b);
	itt = tmf_send(&a, 4, 1);			/* CLEAR TASK SET */
	expect_tmf_rsp(&a, itt, 0);
	b.itt = wtt;
	expect_status(&b, 0);				/* b's write went on */
	ck_assert_int_eq(fault_set_latency(f, 0, 0), 0);

	itt = tmf_send(&a, 6, 0);			/* TARGET WARM RESET */
	expect_tmf_rsp(&a, itt, 0);
	for (unsigned lun = 0; lun < 2; lun++) {
		a.lun = b.lun = lun;
		tur_expect(&a, 2, ASC_BUS_DEVICE_RESET);
		tur_expect(&b, 2, ASC_BUS_DEVICE_RESET);
	}
	a.lun = b.lun = 0;
	reserve6(&a, false, 0);			/* b's was released */
	reserve6(&b, false, SCSI_STATUS_RESERVATION_CONFLICT);
	reserve6(&a, true, 0);
	a.lun = b.lun = 1;
	write10(&a, 0, 8, buf, sizeof(buf), false);	/* the PR stays */
	expect_status(&a, SCSI_STATUS_RESERVATION_CONFLICT);
	write10(&b, 0, 8, buf, sizeof(buf), false);
	expect_status(&b, 0);

	itt = tmf_send(&a, 5, 7);
	expect_tmf_rsp(&a, itt, 2);			/* LUN does not exist */
	close(a.fd);
	close(b.fd);
	slow_lun_free(m, f);
}
END_TEST

/* A session of target iqn (not IQN) */
static void login_other(struct cli *c, const char *iqn)
{
	char keys[512];

	snprintf(keys, sizeof(keys), "InitiatorName=iqn.2026-11.org.sand:test;TargetName=%s;"
		 "SessionType=Normal;HeaderDigest=None;DataDigest=None", iqn);
	ck_assert_int_eq(login_keys(c, keys), 0);
	ck_assert_int_eq(c->h.b[1], ISCSI_LOGIN_TRANSIT | 1 << 2 | 3);
}

/* c logs in again as the same initiator port (same ISID) */
static void relogin(struct cli *c)
{
	uint32_t isid = c->isid;

	close(c->fd);
	cli_connect(c);
	c->isid = isid;
	login(c, "");
}

/*
 * TARGET COLD RESET (RFC 7143 11.5.1, 11.6.1) from a, with b's write
 * doing I/O (1 s of latency) on LUN 1: b's write ends with TASK ABORTED,
 * a gets the response (only once the write has ended), then every
 * connection of the target is closed: a's after the response, b's after
 * its TASK ABORTED. A session of another target and a discovery session
 * stay and work. a and b log in again (same ISIDs): POWER ON, RESET, OR
 * BUS DEVICE RESET OCCURRED once on each LUN; a new initiator port gets
 * none. b's RESERVE(6) was released, its persistent reservation stays
 * (and it is still registered and holder), the write is whole or absent.
 */
START_TEST(cold_reset_closes_target)
{
	static struct cli a, b, o, d, n;
	static uint8_t old[8 * BS], buf[8 * BS], rbuf[8 * BS];
	struct blkdev *m, *f = slow_lun(&m), *m2;
	uint32_t itt, wtt;
	uint64_t t0, took;

	ck_assert_int_eq(blk_mem_create("coldother", 1u << 20, BS, &m2), 0);
	ck_assert_int_eq(iscsi_target_add(IQN "-other"), 0);
	ck_assert_int_eq(iscsi_lun_add(IQN "-other", 0, m2, false), 0);
	cli_connect(&a);
	login(&a, "");
	cli_connect(&b);
	login(&b, "");
	cli_connect(&o);
	login_other(&o, IQN "-other");
	cli_connect(&d);
	ck_assert_int_eq(login_keys(&d, "InitiatorName=iqn.2026-11.x:y;SessionType=Discovery"),
			 0);
	tur_expect(&o, 0, 0);
	reserve6(&b, false, 0);				/* LUN 0 */
	b.lun = a.lun = 1;
	pr_out(&b, 0, 0, 0, 0xc01d);			/* REGISTER */
	pr_out(&b, 1, 1, 0xc01d, 0);			/* RESERVE, write exclusive */
	fill(old, sizeof(old), 3);
	fill(buf, sizeof(buf), 4);
	write10(&b, 0, 8, old, sizeof(old), false);
	expect_status(&b, 0);

	ck_assert_int_eq(fault_set_latency(f, 1000ull * 1000 * 1000, FAULT_OP(BIO_WRITE)), 0);
	write10(&b, 0, 8, buf, sizeof(buf), false);
	wtt = b.itt;
	nop_ping(&b);			/* the write is doing I/O */
	t0 = mono_ms();
	itt = tmf_send(&a, 7, 0);	/* TARGET COLD RESET */
	expect_tmf_rsp(&a, itt, 0);
	took = mono_ms() - t0;
	expect_closed(&a);
	recv_next(&b);
	ck_assert_int_eq(bhs_opcode(&b.h), ISCSI_OP_SCSI_RSP);
	ck_assert_uint_eq(bhs_itt(&b.h), wtt);
	ck_assert_int_eq(b.h.b[3], SCSI_STATUS_TASK_ABORTED);
	expect_closed(&b);
	ck_assert_int_eq(fault_set_latency(f, 0, 0), 0);
	/* 1 s of latency, less what passed before the TMF left */
	ck_assert_msg(took >= 500, "cold reset answered %llu ms after it was sent",
		      (unsigned long long)took);

	/* another target's session and the discovery session are untouched */
	tur_expect(&o, 0, 0);
	nop_ping(&d);

	/* the same initiator ports again: 29h/00h once per LU, then it works */
	relogin(&a);
	relogin(&b);
	for (unsigned lun = 0; lun < 2; lun++) {
		a.lun = b.lun = lun;
		tur_expect(&a, 2, ASC_POWER_ON_RESET);
		tur_expect(&a, 0, 0);
		tur_expect(&b, 2, ASC_POWER_ON_RESET);
		tur_expect(&b, 0, 0);
	}
	/* a new initiator port: nothing to be told */
	cli_connect(&n);
	login(&n, "");
	tur_expect(&n, 0, 0);
	/* RESERVE(6) released, the persistent reservation kept */
	a.lun = b.lun = 0;
	reserve6(&a, false, 0);
	reserve6(&a, true, 0);
	a.lun = b.lun = 1;
	write10(&a, 0, 8, buf, sizeof(buf), false);
	expect_status(&a, SCSI_STATUS_RESERVATION_CONFLICT);
	/* the aborted write: whole or not at all */
	ck_assert_uint_eq(read10(&b, 0, 8, rbuf), sizeof(rbuf));
	ck_assert(!memcmp(rbuf, buf, sizeof(buf)) || !memcmp(rbuf, old, sizeof(old)));
	write10(&b, 0, 8, old, sizeof(old), false);	/* b still holds it */
	expect_status(&b, 0);

	close(a.fd);
	close(b.fd);
	close(o.fd);
	close(d.fd);
	close(n.fd);
	target_free(IQN "-other", m2);
	slow_lun_free(m, f);
}
END_TEST

/*
 * Two cold resets at once: b sends 16 MiB of NOP-Outs (8 KiB pings) without
 * reading its socket, so its own TARGET COLD RESET's response stays queued
 * behind the NOP-Ins;
 * a's cold reset then closes b's connection while b's response waits (the
 * connection that closes asks every reactor to close the target's
 * connections again, conns_lock held). a gets its response and both
 * connections close; the daemon goes on: a new session works.
 */
START_TEST(cold_reset_twice)
{
	static struct cli a, b, n;
	static const uint8_t tur[6] = { 0 };
	int rcv = 4096;	/* a small window: its NOP-Ins stay queued */
	uint32_t itt;

	cli_connect(&a);
	login(&a, "");
	cli_connect(&b);
	setsockopt(b.fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	login(&b, "");
	tur_expect(&b, 0, 0);
	for (unsigned i = 0; i < 2048; i++) {	/* answered at once, never read */
		static uint8_t ping[8192];
		struct iscsi_bhs h;

		iscsi_bhs_init(&h, ISCSI_OP_NOP_OUT, ISCSI_FLAG_FINAL);
		h.b[0] |= ISCSI_BHS_IMMEDIATE;
		bhs_put32(&h, BHS_ITT, ++b.itt);
		bhs_put32(&h, BHS_TTT, ISCSI_RSVD_TAG);
		bhs_put32(&h, BHS_CMDSN, b.cmdsn);
		send_pdu(&b, &h, ping, sizeof(ping));
	}
	tmf_send(&b, 7, 0);		/* its response waits behind the data */
	/* b's reset has started when a gets its unit attention; its response
	 * is queued before a's reset can close b (each reactor's messages
	 * run in order, tmf.c) */
	for (int i = 0;; i++) {
		scsi_cmd(&a, tur, 6, false, false, 0, NULL, 0, true);
		recv_next(&a);
		ck_assert_int_eq(bhs_opcode(&a.h), ISCSI_OP_SCSI_RSP);
		if (a.h.b[3] == SCSI_STATUS_CHECK_CONDITION)
			break;
		ck_assert_int_eq(a.h.b[3], 0);
		ck_assert_int_lt(i, 500);
		usleep(10 * 1000);
	}
	itt = tmf_send(&a, 7, 0);
	expect_tmf_rsp(&a, itt, 0);
	expect_closed(&a);
	close(a.fd);
	/* b's connection is gone on the target's side (its client would
	 * read megabytes through its small window before the end) */
	for (int i = 0; iscsi_conn_count(); i++) {
		ck_assert_msg(i < 1000, "%u connections left", iscsi_conn_count());
		usleep(10 * 1000);
	}
	close(b.fd);
	cli_connect(&n);
	login(&n, "");
	tur_expect(&n, 0, 0);
	close(n.fd);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("iscsi_conn");
	TCase *tc = tcase_create("all");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, io_with_digests);
	tcase_add_test(tc, r2t_sequences);
	tcase_add_test(tc, malformed_pdus);
	tcase_add_test(tc, digest_errors);
	tcase_add_test(tc, login_failures);
	tcase_add_test(tc, discovery_and_logout);
	tcase_add_test(tc, drop_in_flight);
	tcase_add_test(tc, config_changes);
	tcase_add_test(tc, liveness);
	tcase_add_test(tc, reinstatement);
	tcase_add_test(tc, reinstatement_waits_for_old_tasks);
	tcase_add_test(tc, abort_before_arrival);
	tcase_add_test(tc, unit_attention_after_reset);
	tcase_add_test(tc, unit_attention_after_resize);
	tcase_add_test(tc, reset_aborts_every_nexus);
	tcase_add_test(tc, reset_without_tas);
	tcase_add_test(tc, clear_task_set_and_target_reset);
	tcase_add_test(tc, reset_aborts_held_task);
	tcase_add_test(tc, cold_reset_closes_target);
	tcase_add_test(tc, cold_reset_twice);
	tcase_add_test(tc, chap_and_acl);
	tcase_add_test(tc, negotiation_matrix);
	tcase_add_test(tc, lun_hotplug);
	tcase_add_test(tc, mcs_two_connections);
	tcase_add_test(tc, mcs_limits_and_loss);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int nf;

	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? 1 : 0;
}
