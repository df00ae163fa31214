/* SPDX-License-Identifier: MIT */
/*
 * SCSI command execution: one opcode table, a handler per command.
 *
 * Every handler validates its CDB first (INVALID FIELD IN CDB pointing at
 * the byte, LBA OUT OF RANGE, DATA PROTECT on a read-only LU) and then
 * either answers at once (INQUIRY, MODE SENSE, REPORT LUNS ...: data is
 * built in a local buffer and copied up to the allocation length and the
 * transport's buffer) or starts I/O on cmd->ch. I/O commands are small
 * sequences: submit one bio, and when it ends, cmd->next decides whether
 * another follows (UNMAP descriptors, WRITE SAME chunks, VERIFY's compare).
 * -EAGAIN/-ENOMEM from the block layer is backpressure: the bio is
 * resubmitted from a short timer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/alua.h"
#include "sand/log.h"
#include "sand/scsi.h"
#include "proto/scsi/atomic.h"
#include "proto/scsi/lba_status.h"
#include "proto/scsi/mode_select.h"
#include "proto/scsi/sanitize.h"
#include "proto/scsi/xcopy.h"

#define RETRY_NS		(50 * 1000)
#define MAX_XFER_BYTES		(16u << 20)	/* reported in the block limits page */
#define MAX_UNMAP_DESC		256
#define MAX_UNMAP_BLOCKS	(1u << 20)
#define MAX_WS_BYTES		(64u << 20)	/* WRITE SAME: bounded work per command */
#define WS_CHUNK		(1u << 20)	/* WRITE SAME with a pattern: bytes per bio */
#define MAX_CAW_BLOCKS		64		/* COMPARE AND WRITE */

struct scsi_op {
	int	(*fn)(struct scsi_cmd *cmd);
	uint8_t	cdb_len;
	bool	no_lu_ok;	/* runs without a LU (INQUIRY, REPORT LUNS, REQUEST SENSE) */
};

static uint32_t bsize(struct scsi_cmd *cmd) { return cmd->lu->bd->block_size; }
static uint64_t nblocks(struct scsi_cmd *cmd) { return cmd->lu->bd->size / bsize(cmd); }
static uint32_t max_ws_blocks(struct scsi_cmd *cmd) { return MAX_WS_BYTES / bsize(cmd); }

/* Data-in: n of the natural length, cut at the allocation length. */
static void data_in(struct scsi_cmd *cmd, const void *p, uint32_t len, uint32_t alloc)
{
	uint32_t n = MIN(len, alloc);

	cmd->xfer_len = n;
	cmd->data_in = true;
	if (cmd->buf)
		memcpy(cmd->buf, p, MIN(n, cmd->buf_len));
}

static void pad_ascii(uint8_t *dst, const char *s, size_t len)
{
	size_t n = strlen(s);

	memset(dst, ' ', len);
	memcpy(dst, s, MIN(n, len));
}

/* ------------------------------------------------------------ I/O engine */

static void caw_unlock(struct scsi_cmd *cmd)
{
	if (cmd->caw_locked) {
		__atomic_store_n(&cmd->lu->caw_busy, 0, __ATOMIC_RELEASE);
		cmd->caw_locked = false;
	}
}

static void finish(struct scsi_cmd *cmd, int err)
{
	caw_unlock(cmd);
	free(cmd->tmp);
	cmd->tmp = NULL;
	if (err)
		scsi_errno_sense(cmd, err);
	cmd->done(cmd);
}

static void io_end(struct bio *bio, int status);

static int io_submit(struct scsi_cmd *cmd);

static void io_retry(struct ev_timer *t)
{
	struct scsi_cmd *cmd = container_of(t, struct scsi_cmd, retry);
	int rc = io_submit(cmd);

	if (rc)
		finish(cmd, rc);
}

/* Submit cmd->op over [off, off+io_len) from io_buf. 0 or -errno. */
static int io_submit(struct scsi_cmd *cmd)
{
	struct iovec iov = { .iov_base = cmd->io_buf, .iov_len = cmd->io_len };
	uint32_t flags = cmd->bio_flags;
	int rc;

	/* write cache off (MODE SELECT, WCE 0): every write is FUA */
	if ((cmd->op == BIO_WRITE || cmd->op == BIO_WRITE_ZEROES) && cmd->lu &&
	    !__atomic_load_n(&cmd->lu->wce, __ATOMIC_ACQUIRE))
		flags |= BIO_FUA;
	rc = blk_rw(cmd->ch, cmd->op, flags, &iov, cmd->io_buf ? 1 : 0,
		    cmd->off, cmd->io_len, io_end, cmd);
	if (rc == -EAGAIN || rc == -ENOMEM) {
		ev_timer_start(cmd->ch->loop, &cmd->retry, RETRY_NS, io_retry);
		return 0;
	}
	return rc;
}

static void io_end(struct bio *bio, int status)
{
	struct scsi_cmd *cmd = bio->end_arg;
	int rc;

	if (status) {
		LOG_RATELIMIT(LOG_WARN, LS_SCSI, "%s: i/o error %d at offset %llu",
			      cmd->ch->bd->name, status, (unsigned long long)cmd->off);
		finish(cmd, status);
		return;
	}
	if (!cmd->next) {
		finish(cmd, 0);
		return;
	}
	rc = cmd->next(cmd);
	if (rc <= 0)
		finish(cmd, rc);
	/* rc > 0: another I/O was started */
}

/* Start the first I/O of a command; returns what scsi_exec returns. */
static int io_start(struct scsi_cmd *cmd, enum bio_op op, uint32_t flags, uint8_t *buf,
		    uint64_t off, uint64_t len)
{
	int rc;

	cmd->op = op;
	cmd->bio_flags = flags;
	cmd->io_buf = buf;
	cmd->off = off;
	cmd->io_len = len;
	rc = io_submit(cmd);
	if (rc) {
		caw_unlock(cmd);
		free(cmd->tmp);
		cmd->tmp = NULL;
		scsi_errno_sense(cmd, rc);
		return SCSI_DONE;
	}
	return SCSI_PENDING;
}

/* ------------------------------------------------------------ SPC */

static int naca_check(struct scsi_cmd *cmd, unsigned len)
{
	if (cmd->cdb[len - 1] & 0x04) {	/* NACA: not supported */
		scsi_invalid_field(cmd, len - 1, 2);
		return -1;
	}
	return 0;
}

static int op_test_unit_ready(struct scsi_cmd *cmd)
{
	return SCSI_DONE;
}

static uint32_t inquiry_std(struct scsi_cmd *cmd, uint8_t *d)
{
	struct scsi_lu *lu = cmd->lu;

	memset(d, 0, 66);
	d[0] = lu ? 0x00 : 0x7f;	/* direct access; or no LU here */
	d[2] = 0x06;			/* SPC-4 */
	d[3] = 0x12;			/* HiSup, response data format 2 */
	d[4] = 66 - 5;
	d[5] = scsi_alua_tpgs(cmd);	/* TPGS */
	d[5] |= 0x08;			/* 3PC: EXTENDED COPY */
	d[7] = 0x02;			/* CmdQue */
	pad_ascii(d + 8, lu ? lu->vendor : "SAND", 8);
	pad_ascii(d + 16, lu ? lu->product : "", 16);
	pad_ascii(d + 32, lu ? lu->revision : "", 4);
	/* version descriptors: SAM-5, iSCSI, SPC-4, SBC-3 */
	put_be16(d + 58, 0x00a0);
	put_be16(d + 60, 0x0960);
	put_be16(d + 62, 0x0460);
	put_be16(d + 64, 0x04c0);
	return 66;
}

/* Optimal unmap granularity, in blocks: a device that deallocates in units
 * (a thin volume: its chunk, which is its io_boundary) frees nothing for
 * less, as GET LBA STATUS then shows. */
static uint32_t unmap_granularity(struct scsi_cmd *cmd)
{
	struct blkdev *bd = cmd->lu->bd;

	if (bd->ops->block_status && bd->io_boundary > bd->block_size)
		return bd->io_boundary / bd->block_size;
	return 1;
}

static int op_inquiry(struct scsi_cmd *cmd)
{
	struct scsi_lu *lu = cmd->lu;
	uint8_t d[256];
	uint32_t alloc = get_be16(cmd->cdb + 3), len;
	uint8_t page = cmd->cdb[2];
	bool evpd = cmd->cdb[1] & 0x01;

	if (cmd->cdb[1] & 0xfe) {
		scsi_invalid_field(cmd, 1, cmd->cdb[1] & 0x02 ? 1 : -1);
		return SCSI_DONE;
	}
	if (!evpd) {
		if (page) {
			scsi_invalid_field(cmd, 2, -1);
			return SCSI_DONE;
		}
		data_in(cmd, d, inquiry_std(cmd, d), alloc);
		return SCSI_DONE;
	}
	if (!lu) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
		return SCSI_DONE;
	}
	memset(d, 0, sizeof(d));
	d[0] = 0x00;
	d[1] = page;
	switch (page) {
	case 0x00: {
		static const uint8_t pages[] = { 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2 };

		memcpy(d + 4, pages, sizeof(pages));
		len = 4 + sizeof(pages);
		break;
	}
	case 0x80:
		len = (uint32_t)strlen(lu->serial);
		memcpy(d + 4, lu->serial, len);
		len += 4;
		break;
	case 0x83: {
		uint8_t *p = d + 4;

		/* NAA, binary, associated with the LU */
		p[0] = 0x01;
		p[1] = 0x03;
		p[3] = 8;
		memcpy(p + 4, lu->naa, 8);
		p += 12;
		/* T10 vendor id, ASCII: vendor + serial */
		p[0] = 0x02;
		p[1] = 0x01;
		p[3] = (uint8_t)(8 + strlen(lu->serial));
		pad_ascii(p + 4, lu->vendor, 8);
		memcpy(p + 12, lu->serial, strlen(lu->serial));
		p += 4 + p[3];
		p += scsi_alua_vpd83(cmd, p);	/* relative port, port group */
		len = (uint32_t)(p - d);
		break;
	}
	case 0xb0: {
		uint32_t bs = bsize(cmd);

		len = 64;
		d[4] = 0x00;				/* WSNZ 0: 0 blocks = to the end */
		d[5] = MAX_CAW_BLOCKS;			/* maximum compare and write length */
		put_be16(d + 6, (uint16_t)unmap_granularity(cmd));	/* optimal granularity */
		put_be32(d + 8, MAX_XFER_BYTES / bs);	/* maximum transfer length */
		put_be32(d + 12, (1u << 20) / bs);	/* optimal transfer length */
		if (lu->lbpme) {
			put_be32(d + 20, MAX_UNMAP_BLOCKS);
			put_be32(d + 24, MAX_UNMAP_DESC);
			put_be32(d + 28, unmap_granularity(cmd));
		}
		put_be64(d + 36, max_ws_blocks(cmd));	/* maximum write same length */
		scsi_vpd_b0_atomic(lu, d);
		break;
	}
	case 0xb1:
		len = 64;
		put_be16(d + 4, 1);			/* non-rotating medium */
		if (lu->lbpme)
			d[7] = 0x40;			/* WABEREQ 01b: SANITIZE BLOCK ERASE */
		break;
	case 0xb2:
		len = 8;
		if (lu->lbpme) {
			d[5] = 0x80 | 0x40 | 0x20 | 0x04;	/* LBPU LBPWS LBPWS10 LBPRZ */
			d[6] = 0x02;			/* thin provisioned */
		}
		break;
	default:
		scsi_invalid_field(cmd, 2, -1);
		return SCSI_DONE;
	}
	put_be16(d + 2, (uint16_t)(len - 4));
	data_in(cmd, d, len, alloc);
	return SCSI_DONE;
}

static int op_report_luns(struct scsi_cmd *cmd)
{
	uint32_t alloc = get_be32(cmd->cdb + 6), len = 8 + 8 * cmd->nluns;
	uint8_t *d;

	if (cmd->cdb[2] > 2) {
		scsi_invalid_field(cmd, 2, -1);
		return SCSI_DONE;
	}
	if (alloc < 16) {
		scsi_invalid_field(cmd, 6, -1);
		return SCSI_DONE;
	}
	d = calloc(1, len);
	if (!d) {
		scsi_errno_sense(cmd, -ENOMEM);
		return SCSI_DONE;
	}
	put_be32(d, 8 * cmd->nluns);
	for (unsigned i = 0; i < cmd->nluns; i++)
		put_be64(d + 8 + 8 * i, cmd->luns[i]);
	data_in(cmd, d, len, alloc);
	free(d);
	return SCSI_DONE;
}

static int op_request_sense(struct scsi_cmd *cmd)
{
	uint8_t d[SCSI_SENSE_LEN] = { 0x70, 0, SK_NO_SENSE, 0, 0, 0, 0, SCSI_SENSE_LEN - 8 };

	if (cmd->cdb[1] & 0x01) {	/* DESC: we only do fixed format */
		scsi_invalid_field(cmd, 1, 0);
		return SCSI_DONE;
	}
	if (!cmd->lu) {
		d[2] = SK_ILLEGAL_REQUEST;
		d[12] = ASC_LUN_NOT_SUPPORTED >> 8;
	} else {
		scsi_sanitize_request_sense(cmd->lu, d);	/* its progress */
	}
	data_in(cmd, d, sizeof(d), cmd->cdb[4]);
	return SCSI_DONE;
}

/* Read-only, or SWP set by MODE SELECT */
static bool write_protected(struct scsi_lu *lu)
{
	return lu->readonly || lu->bd->readonly || __atomic_load_n(&lu->swp, __ATOMIC_ACQUIRE);
}

/* Append a mode page; pc: 0 current, 1 changeable, 2 default. */
static uint32_t mode_page(struct scsi_cmd *cmd, uint8_t code, int pc, uint8_t *p)
{
	switch (code) {
	case 0x08:		/* caching */
		memset(p, 0, 20);
		p[0] = 0x08;
		p[1] = 18;
		/* WCE: changeable; without it every write is FUA */
		if (pc == 1 || (pc == 0 && __atomic_load_n(&cmd->lu->wce, __ATOMIC_ACQUIRE)) ||
		    pc == 2)
			p[2] = 0x04;
		return 20;
	case 0x0a:		/* control */
		memset(p, 0, 12);
		p[0] = 0x0a;
		p[1] = 10;
		if (pc != 1) {
			/* TST 001b: a task set per I_T nexus (CLEAR TASK SET
			 * clears only the issuer's); GLTSD */
			p[2] = 0x20 | 0x02;
			put_be16(p + 8, 0xffff);	/* busy timeout: unlimited */
		}
		/* SWP: changeable; current (the default is 0) */
		if (pc == 1 || (pc == 0 && __atomic_load_n(&cmd->lu->swp, __ATOMIC_ACQUIRE)))
			p[4] = 0x08;
		/* TAS: changeable; current (the default is 1) */
		if (pc == 1 || pc == 2 || (pc == 0 && __atomic_load_n(&cmd->lu->tas, __ATOMIC_ACQUIRE)))
			p[5] = 0x40;
		return 12;
	}
	return 0;
}

static int mode_sense(struct scsi_cmd *cmd, bool ten)
{
	uint8_t d[256];
	uint8_t *cdb = cmd->cdb;
	bool dbd = cdb[1] & 0x08;
	int pc = cdb[2] >> 6;
	uint8_t page = cdb[2] & 0x3f, sub = cdb[3];
	uint32_t hdr = ten ? 8 : 4, len, alloc = ten ? get_be16(cdb + 7) : cdb[4];
	uint64_t nb = nblocks(cmd);

	if (pc == 3) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_SAVING_PARAMS_UNSUP);
		return SCSI_DONE;
	}
	if (sub && !(sub == 0xff && page == 0x3f)) {
		scsi_invalid_field(cmd, 3, -1);
		return SCSI_DONE;
	}
	memset(d, 0, sizeof(d));
	len = hdr;
	if (!dbd) {
		put_be32(d + len, nb > 0xffffffffull ? 0xffffffff : (uint32_t)nb);
		put_be32(d + len + 4, bsize(cmd) & 0xffffff);
		len += 8;
	}
	if (page == 0x3f) {
		len += mode_page(cmd, 0x08, pc, d + len);
		len += mode_page(cmd, 0x0a, pc, d + len);
	} else {
		uint32_t n = mode_page(cmd, page, pc, d + len);

		if (!n) {
			scsi_invalid_field(cmd, 2, -1);
			return SCSI_DONE;
		}
		len += n;
	}
	if (ten) {
		put_be16(d, (uint16_t)(len - 2));
		d[3] = (write_protected(cmd->lu) ? 0x80 : 0) | 0x10;	/* WP, DPOFUA */
		put_be16(d + 6, dbd ? 0 : 8);
	} else {
		d[0] = (uint8_t)(len - 1);
		d[2] = (write_protected(cmd->lu) ? 0x80 : 0) | 0x10;
		d[3] = dbd ? 0 : 8;
	}
	data_in(cmd, d, len, alloc);
	return SCSI_DONE;
}

static int op_mode_sense6(struct scsi_cmd *cmd) { return mode_sense(cmd, false); }
static int op_mode_select6(struct scsi_cmd *cmd) { return scsi_mode_select(cmd, false); }
static int op_mode_select10(struct scsi_cmd *cmd) { return scsi_mode_select(cmd, true); }
static int op_mode_sense10(struct scsi_cmd *cmd) { return mode_sense(cmd, true); }

static int op_start_stop(struct scsi_cmd *cmd)
{
	/* a fixed medium: nothing to spin or eject */
	return SCSI_DONE;
}

/* ------------------------------------------------------------ SBC */

static int op_read_capacity10(struct scsi_cmd *cmd)
{
	uint8_t d[8];
	uint64_t last = nblocks(cmd) - 1;

	if ((cmd->cdb[8] & 0x01) == 0 && get_be32(cmd->cdb + 2)) {
		scsi_invalid_field(cmd, 2, -1);	/* LBA without PMI */
		return SCSI_DONE;
	}
	put_be32(d, last > 0xffffffffull ? 0xffffffff : (uint32_t)last);
	put_be32(d + 4, bsize(cmd));
	data_in(cmd, d, sizeof(d), sizeof(d));
	return SCSI_DONE;
}

static int op_read_capacity16(struct scsi_cmd *cmd)
{
	uint8_t d[32] = { 0 };

	put_be64(d, nblocks(cmd) - 1);
	put_be32(d + 8, bsize(cmd));
	d[13] = scsi_lbppbe(cmd->lu->bd);	/* physical block; lowest aligned LBA 0 */
	if (cmd->lu->lbpme)
		d[14] = 0x80 | 0x40;	/* LBPME, LBPRZ */
	data_in(cmd, d, sizeof(d), get_be32(cmd->cdb + 10));
	return SCSI_DONE;
}

static int op_service_action_in16(struct scsi_cmd *cmd)
{
	switch (cmd->cdb[1] & 0x1f) {
	case 0x10:
		return op_read_capacity16(cmd);
	case 0x12:
		return scsi_get_lba_status(cmd);
	default:
		scsi_invalid_field(cmd, 1, 4);
		return SCSI_DONE;
	}
}

/* Decode LBA, length, FUA and protection of the READ/WRITE family. */
static void rw_decode(const uint8_t *cdb, uint64_t *lba, uint32_t *n)
{
	switch (cdb[0] >> 5) {
	case 0:		/* 6 */
		*lba = get_be32(cdb) & 0x1fffff;
		*n = cdb[4] ? cdb[4] : 256;
		break;
	case 1:		/* 10 */
	case 2:
		*lba = get_be32(cdb + 2);
		*n = get_be16(cdb + 7);
		break;
	case 5:		/* 12 */
		*lba = get_be32(cdb + 2);
		*n = get_be32(cdb + 6);
		break;
	default:	/* 16 */
		*lba = get_be64(cdb + 2);
		*n = get_be32(cdb + 10);
		break;
	}
}

static int range_check(struct scsi_cmd *cmd, uint64_t lba, uint64_t n)
{
	uint64_t nb = nblocks(cmd);

	if (lba > nb || n > nb - lba) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		return -1;
	}
	return 0;
}

static int write_protect_check(struct scsi_cmd *cmd)
{
	if (write_protected(cmd->lu)) {
		scsi_sense(cmd, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
		return -1;
	}
	return 0;
}

/* Byte of the transfer length field, for the field pointer */
static unsigned len_byte(const uint8_t *cdb)
{
	switch (cdb[0] >> 5) {
	case 0: return 4;
	case 5: return 6;
	case 4: return 10;
	default: return 7;
	}
}

/* READ, WRITE, WRITE AND VERIFY (always FUA: the data is on the medium
 * when it ends, which is all the verify could check). */
static int rw_common(struct scsi_cmd *cmd, bool write, bool fua)
{
	const uint8_t *cdb = cmd->cdb;
	bool six = (cdb[0] >> 5) == 0;
	uint64_t lba, xfer;
	uint32_t n, bs = bsize(cmd), len;

	rw_decode(cdb, &lba, &n);
	if (!six && (cdb[1] >> 5)) {		/* RDPROTECT/WRPROTECT: no PI */
		scsi_invalid_field(cmd, 1, 7);
		return SCSI_DONE;
	}
	if (write && write_protect_check(cmd))
		return SCSI_DONE;
	if (range_check(cmd, lba, n))
		return SCSI_DONE;
	xfer = (uint64_t)n * bs;
	if (xfer > 0xffffffffull) {
		scsi_invalid_field(cmd, len_byte(cdb), -1);
		return SCSI_DONE;
	}
	cmd->xfer_len = (uint32_t)xfer;
	if (!n)
		return SCSI_DONE;
	/* The transport's buffer may be shorter than the CDB's transfer
	 * (an iSCSI overflow): read, or write, the whole blocks it holds;
	 * the transport reports the residual. */
	len = (uint32_t)MIN(xfer, cmd->buf_len / bs * bs);
	if (write) {
		if (!len)
			return SCSI_DONE;
		return io_start(cmd, BIO_WRITE, fua || (!six && (cdb[1] & 0x08)) ? BIO_FUA : 0,
				cmd->buf, lba * bs, len);
	}
	cmd->data_in = true;
	if (!len)
		return SCSI_DONE;
	if (len == cmd->buf_len && scsi_read_mapped(cmd, lba * bs, len))
		return SCSI_DONE;
	if (len < cmd->buf_len)
		memset(cmd->buf + len, 0, cmd->buf_len - len);
	return io_start(cmd, BIO_READ, 0, cmd->buf, lba * bs, len);
}

static int op_rw(struct scsi_cmd *cmd)
{
	/* 0x0a 0x2a 0xaa 0x8a write; 0x08 0x28 0xa8 0x88 read */
	return rw_common(cmd, (cmd->cdb[0] & 0x1f) == 0x0a, false);
}

static int op_write_verify(struct scsi_cmd *cmd)
{
	return rw_common(cmd, true, true);
}

/* PRE-FETCH: no cache to fill; the range is checked. */
static int op_prefetch(struct scsi_cmd *cmd)
{
	uint64_t lba;
	uint32_t n;

	rw_decode(cmd->cdb, &lba, &n);
	range_check(cmd, lba, n);
	return SCSI_DONE;
}

static int op_sync_cache(struct scsi_cmd *cmd)
{
	bool ten = cmd->cdb[0] == 0x35;
	uint64_t lba = ten ? get_be32(cmd->cdb + 2) : get_be64(cmd->cdb + 2);
	uint32_t n = ten ? get_be16(cmd->cdb + 7) : get_be32(cmd->cdb + 10);

	if (range_check(cmd, lba, n))
		return SCSI_DONE;
	return io_start(cmd, BIO_FLUSH, 0, NULL, 0, 0);
}

/* VERIFY with BYTCHK=1: compare the medium with the data-out buffer. */
static int verify_cmp(struct scsi_cmd *cmd)
{
	if (memcmp(cmd->tmp, cmd->buf, cmd->tmp_len)) {
		free(cmd->tmp);
		cmd->tmp = NULL;
		scsi_sense(cmd, SK_MISCOMPARE, ASC_MISCOMPARE_VERIFY);
	}
	return 0;
}

static int op_verify(struct scsi_cmd *cmd)
{
	uint64_t lba;
	uint32_t n;
	unsigned bytchk = (cmd->cdb[1] >> 1) & 3;
	uint64_t xfer;

	rw_decode(cmd->cdb, &lba, &n);
	xfer = (uint64_t)n * bsize(cmd);
	if (cmd->cdb[1] >> 5) {
		scsi_invalid_field(cmd, 1, 7);
		return SCSI_DONE;
	}
	if (bytchk != 0 && bytchk != 1) {
		scsi_invalid_field(cmd, 1, 2);
		return SCSI_DONE;
	}
	if (range_check(cmd, lba, n))
		return SCSI_DONE;
	if (!n)
		return SCSI_DONE;
	if (xfer > MAX_XFER_BYTES) {
		scsi_invalid_field(cmd, len_byte(cmd->cdb), -1);
		return SCSI_DONE;
	}
	if (bytchk) {
		cmd->xfer_len = (uint32_t)xfer;
		if (cmd->buf_len < xfer) {
			scsi_invalid_field(cmd, len_byte(cmd->cdb), -1);
			return SCSI_DONE;
		}
	}
	cmd->tmp = malloc(xfer);
	if (!cmd->tmp) {
		scsi_errno_sense(cmd, -ENOMEM);
		return SCSI_DONE;
	}
	cmd->tmp_len = (uint32_t)xfer;
	cmd->next = bytchk ? verify_cmp : NULL;
	return io_start(cmd, BIO_READ, 0, cmd->tmp, lba * bsize(cmd), (uint32_t)xfer);
}

static int ws_next(struct scsi_cmd *cmd)
{
	cmd->off += cmd->io_len;
	if (cmd->off >= cmd->end)
		return 0;
	cmd->io_len = MIN(cmd->end - cmd->off, (uint64_t)cmd->tmp_len);
	return io_submit(cmd) ?: 1;
}

static int op_write_same(struct scsi_cmd *cmd)
{
	bool ten = cmd->cdb[0] == 0x41;
	uint8_t flags = cmd->cdb[1];
	uint64_t lba = ten ? get_be32(cmd->cdb + 2) : get_be64(cmd->cdb + 2);
	uint32_t n = ten ? get_be16(cmd->cdb + 7) : get_be32(cmd->cdb + 10);
	uint32_t bs = bsize(cmd);
	bool zero = true, unmap, ndob;

	if (flags >> 5) {
		scsi_invalid_field(cmd, 1, 7);
		return SCSI_DONE;
	}
	if ((flags & 0x10) || (ten && (flags & 0x01))) {
		/* ANCHOR: not supported; bit 0 is reserved in 10 */
		scsi_invalid_field(cmd, 1, flags & 0x10 ? 4 : 0);
		return SCSI_DONE;
	}
	if (write_protect_check(cmd))
		return SCSI_DONE;
	/* WSNZ 0: 0 blocks is to the end of the LU, if that is no more than
	 * the maximum write same length (a bounded command, SBC-4 5.50) */
	if (!n && lba <= nblocks(cmd))
		n = (uint32_t)MIN(nblocks(cmd) - lba, (uint64_t)max_ws_blocks(cmd) + 1);
	if (n > max_ws_blocks(cmd)) {
		scsi_invalid_field(cmd, ten ? 7 : 10, -1);
		return SCSI_DONE;
	}
	if (range_check(cmd, lba, n))
		return SCSI_DONE;
	/* one block of data-out, none with NDOB (WRITE SAME 16: zeros); with
	 * UNMAP on a thin LU the blocks are deallocated (they read as zeros,
	 * LBPRZ) whatever it holds */
	ndob = !ten && (flags & 0x01);
	unmap = (flags & 0x08) && cmd->lu->lbpme;
	cmd->xfer_len = ndob ? 0 : bs;
	if (cmd->buf_len != cmd->xfer_len) {
		scsi_invalid_field(cmd, ten ? 7 : 10, -1);
		return SCSI_DONE;
	}
	if (!n)					/* from the last LBA + 1 to the end */
		return SCSI_DONE;
	for (uint32_t i = 0; i < bs && zero && !unmap && !ndob; i++)
		zero = !cmd->buf[i];
	if (zero || unmap)
		return io_start(cmd, BIO_WRITE_ZEROES, unmap ? 0 : BIO_NOUNMAP, NULL,
				lba * bs, (uint64_t)n * bs);
	/* a pattern: fill up to WS_CHUNK with it and write chunk by chunk */
	cmd->tmp_len = (uint32_t)MIN((uint64_t)n * bs, (uint64_t)WS_CHUNK);
	cmd->tmp = malloc(cmd->tmp_len);
	if (!cmd->tmp) {
		scsi_errno_sense(cmd, -ENOMEM);
		return SCSI_DONE;
	}
	for (uint32_t o = 0; o < cmd->tmp_len; o += bs)
		memcpy(cmd->tmp + o, cmd->buf, bs);
	cmd->end = (lba + n) * bs;
	cmd->next = ws_next;
	return io_start(cmd, BIO_WRITE, 0, cmd->tmp, lba * bs,
			MIN(cmd->end - lba * bs, (uint64_t)cmd->tmp_len));
}

/*
 * COMPARE AND WRITE: read the blocks, compare them with the first half of
 * the data-out, and write the second half if they match. MISCOMPARE sense
 * carries the offset of the first differing byte in INFORMATION.
 */
static int caw_cmp(struct scsi_cmd *cmd)
{
	uint32_t len = cmd->tmp_len;

	for (uint32_t i = 0; i < len; i++) {
		if (cmd->tmp[i] != cmd->buf[i]) {
			scsi_sense(cmd, SK_MISCOMPARE, ASC_MISCOMPARE_VERIFY);
			cmd->sense[0] |= 0x80;		/* VALID: INFORMATION is set */
			put_be32(cmd->sense + 3, i);
			return 0;
		}
	}
	cmd->op = BIO_WRITE;
	cmd->bio_flags = cmd->cdb[1] & 0x08 ? BIO_FUA : 0;
	cmd->io_buf = cmd->buf + len;
	cmd->next = NULL;
	return io_submit(cmd) ?: 1;
}

static int op_compare_and_write(struct scsi_cmd *cmd)
{
	const uint8_t *cdb = cmd->cdb;
	uint64_t lba = get_be64(cdb + 2);
	uint32_t n = cdb[13], len = n * bsize(cmd);

	if (cdb[1] >> 5) {
		scsi_invalid_field(cmd, 1, 7);
		return SCSI_DONE;
	}
	if (write_protect_check(cmd))
		return SCSI_DONE;
	if (n > MAX_CAW_BLOCKS) {
		scsi_invalid_field(cmd, 13, -1);
		return SCSI_DONE;
	}
	if (range_check(cmd, lba, n))
		return SCSI_DONE;
	/* the data-out must be exactly the verify and the write data (a
	 * NUMBER OF LOGICAL BLOCKS wrapped to 0 with data is refused too) */
	if (cmd->buf_len != 2 * len) {
		scsi_invalid_field(cmd, 13, -1);
		return SCSI_DONE;
	}
	cmd->xfer_len = 2 * len;
	if (!n)
		return SCSI_DONE;
	if (__atomic_exchange_n(&cmd->lu->caw_busy, 1, __ATOMIC_ACQUIRE)) {
		scsi_errno_sense(cmd, -EBUSY);		/* the initiator retries */
		return SCSI_DONE;
	}
	cmd->caw_locked = true;
	cmd->tmp = malloc(len);
	if (!cmd->tmp) {
		caw_unlock(cmd);
		scsi_errno_sense(cmd, -ENOMEM);
		return SCSI_DONE;
	}
	cmd->tmp_len = len;
	cmd->next = caw_cmp;
	return io_start(cmd, BIO_READ, 0, cmd->tmp, lba * bsize(cmd), len);
}

/* ORWRITE: read, OR the data-out into it, write (serialised with
 * COMPARE AND WRITE). */
static int orwrite_or(struct scsi_cmd *cmd)
{
	for (uint32_t i = 0; i < cmd->tmp_len; i++)
		cmd->tmp[i] |= cmd->buf[i];
	cmd->op = BIO_WRITE;
	cmd->bio_flags = cmd->cdb[1] & 0x08 ? BIO_FUA : 0;
	cmd->next = NULL;
	return io_submit(cmd) ?: 1;
}

static int op_orwrite(struct scsi_cmd *cmd)
{
	uint64_t lba, xfer;
	uint32_t n;

	rw_decode(cmd->cdb, &lba, &n);
	if (cmd->cdb[1] >> 5) {
		scsi_invalid_field(cmd, 1, 7);
		return SCSI_DONE;
	}
	if (write_protect_check(cmd) || range_check(cmd, lba, n))
		return SCSI_DONE;
	xfer = (uint64_t)n * bsize(cmd);
	if (xfer > MAX_XFER_BYTES) {
		scsi_invalid_field(cmd, 10, -1);
		return SCSI_DONE;
	}
	cmd->xfer_len = (uint32_t)xfer;
	if (!n)
		return SCSI_DONE;
	if (cmd->buf_len < xfer) {
		scsi_invalid_field(cmd, 10, -1);
		return SCSI_DONE;
	}
	if (__atomic_exchange_n(&cmd->lu->caw_busy, 1, __ATOMIC_ACQUIRE)) {
		scsi_errno_sense(cmd, -EBUSY);
		return SCSI_DONE;
	}
	cmd->caw_locked = true;
	cmd->tmp = malloc(xfer);
	if (!cmd->tmp) {
		caw_unlock(cmd);
		scsi_errno_sense(cmd, -ENOMEM);
		return SCSI_DONE;
	}
	cmd->tmp_len = (uint32_t)xfer;
	cmd->next = orwrite_or;
	return io_start(cmd, BIO_READ, 0, cmd->tmp, lba * bsize(cmd), xfer);
}

/* UNMAP: one WRITE_ZEROES (may deallocate) per descriptor, in turn, so
 * unmapped blocks read back as zeros (LBPRZ). */
static int unmap_submit(struct scsi_cmd *cmd)
{
	uint32_t ndesc = cmd->tmp_len;

	while (cmd->step < ndesc) {
		const uint8_t *desc = cmd->buf + 8 + 16 * cmd->step;
		uint64_t lba = get_be64(desc);
		uint32_t n = get_be32(desc + 8);

		cmd->step++;
		if (!n)
			continue;
		cmd->off = lba * bsize(cmd);
		cmd->io_len = (uint64_t)n * bsize(cmd);
		return io_submit(cmd) ?: 1;
	}
	return 0;
}

static int op_unmap(struct scsi_cmd *cmd)
{
	uint32_t plen = get_be16(cmd->cdb + 7), dlen, ndesc, total = 0;
	int rc;

	if (cmd->cdb[1] & 0x01) {	/* ANCHOR */
		scsi_invalid_field(cmd, 1, 0);
		return SCSI_DONE;
	}
	if (!cmd->lu->lbpme) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
		return SCSI_DONE;
	}
	if (write_protect_check(cmd))
		return SCSI_DONE;
	cmd->xfer_len = plen;
	if (!plen)
		return SCSI_DONE;
	if (plen < 8 || cmd->buf_len < plen) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
		return SCSI_DONE;
	}
	dlen = get_be16(cmd->buf + 2);
	if (dlen % 16 || dlen > plen - 8) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
		return SCSI_DONE;
	}
	ndesc = dlen / 16;
	if (ndesc > MAX_UNMAP_DESC) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
		return SCSI_DONE;
	}
	for (uint32_t i = 0; i < ndesc; i++) {
		const uint8_t *desc = cmd->buf + 8 + 16 * i;
		uint32_t n = get_be32(desc + 8);

		if (range_check(cmd, get_be64(desc), n))
			return SCSI_DONE;
		total += n;
		if (n > MAX_UNMAP_BLOCKS || total > MAX_UNMAP_BLOCKS) {
			scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
			return SCSI_DONE;
		}
	}
	cmd->op = BIO_WRITE_ZEROES;
	cmd->bio_flags = 0;
	cmd->io_buf = NULL;
	cmd->tmp_len = ndesc;
	cmd->step = 0;
	cmd->next = unmap_submit;
	rc = unmap_submit(cmd);
	if (rc <= 0) {
		if (rc)
			scsi_errno_sense(cmd, rc);
		return SCSI_DONE;
	}
	return SCSI_PENDING;
}

/* READ DEFECT DATA 10/12: no defects, in the format asked for. */
static int op_read_defect_data(struct scsi_cmd *cmd)
{
	bool ten = cmd->cdb[0] == 0x37;
	uint8_t d[8] = { 0 }, req = cmd->cdb[ten ? 2 : 1] & 0x1f;

	d[1] = req;		/* PLISTV, GLISTV as requested; list length 0 */
	data_in(cmd, d, ten ? 4 : 8, ten ? get_be16(cmd->cdb + 7) : get_be32(cmd->cdb + 6));
	return SCSI_DONE;
}

/* SPC-2 reservations: a LU is held by one I_T nexus at a time. */
static int op_reserve(struct scsi_cmd *cmd)
{
	uint64_t none = 0;

	if (cmd->cdb[1] & 0x1f) {	/* third party, long id, extents */
		scsi_invalid_field(cmd, 1, -1);
		return SCSI_DONE;
	}
	if (scsi_pr_legacy(cmd))	/* persistent reservations exist */
		return SCSI_DONE;
	if (!__atomic_compare_exchange_n(&cmd->lu->reserved_by, &none, cmd->nexus, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) &&
	    none != cmd->nexus)
		cmd->status = SCSI_STATUS_RESERVATION_CONFLICT;
	return SCSI_DONE;
}

static int op_release(struct scsi_cmd *cmd)
{
	if (cmd->cdb[1] & 0x1f) {
		scsi_invalid_field(cmd, 1, -1);
		return SCSI_DONE;
	}
	if (scsi_pr_legacy(cmd))
		return SCSI_DONE;
	scsi_lu_release_nexus(cmd->lu, cmd->nexus);	/* by another nexus: no effect */
	return SCSI_DONE;
}

void scsi_lu_release_nexus(struct scsi_lu *lu, uint64_t nexus)
{
	__atomic_compare_exchange_n(&lu->reserved_by, &nexus, 0, false, __ATOMIC_ACQ_REL,
				    __ATOMIC_ACQUIRE);
}

void scsi_lu_reset(struct scsi_lu *lu)
{
	__atomic_store_n(&lu->reserved_by, 0, __ATOMIC_RELEASE);
	__atomic_add_fetch(&lu->reset_gen, 1, __ATOMIC_RELEASE);
}

/* Commands another nexus may send while the LU is reserved (SPC-2) */
static bool reservation_allows(uint8_t op)
{
	switch (op) {
	case 0x03:	/* REQUEST SENSE */
	case 0x12:	/* INQUIRY */
	case 0x17:	/* RELEASE(6) */
	case 0x57:	/* RELEASE(10) */
	case 0xa0:	/* REPORT LUNS */
	case 0xa3:	/* REPORT SUPPORTED OPERATION CODES */
		return true;
	}
	return false;
}

/* ------------------------------------------------------------ table */

static int op_maintenance_in(struct scsi_cmd *cmd);

static const struct scsi_op ops[256] = {
	[0x00] = { op_test_unit_ready, 6, false },
	[0x03] = { op_request_sense, 6, true },
	[0x08] = { op_rw, 6, false },
	[0x0a] = { op_rw, 6, false },
	[0x12] = { op_inquiry, 6, true },
	[0x15] = { op_mode_select6, 6, false },
	[0x1a] = { op_mode_sense6, 6, false },
	[0x16] = { op_reserve, 6, false },
	[0x17] = { op_release, 6, false },
	[0x1b] = { op_start_stop, 6, false },
	[0x25] = { op_read_capacity10, 10, false },
	[0x28] = { op_rw, 10, false },
	[0x2a] = { op_rw, 10, false },
	[0x2e] = { op_write_verify, 10, false },
	[0x2f] = { op_verify, 10, false },
	[0x34] = { op_prefetch, 10, false },
	[0x35] = { op_sync_cache, 10, false },
	[0x37] = { op_read_defect_data, 10, false },
	[0x41] = { op_write_same, 10, false },
	[0x42] = { op_unmap, 10, false },
	[0x48] = { scsi_sanitize, 10, false },
	[0x56] = { op_reserve, 10, false },
	[0x57] = { op_release, 10, false },
	[0x55] = { op_mode_select10, 10, false },
	[0x5a] = { op_mode_sense10, 10, false },
	[0x5e] = { scsi_pr_in, 10, false },
	[0x5f] = { scsi_pr_out, 10, false },
	[0x88] = { op_rw, 16, false },
	[0x89] = { op_compare_and_write, 16, false },
	[0x8a] = { op_rw, 16, false },
	[0x8b] = { op_orwrite, 16, false },
	[0x8e] = { op_write_verify, 16, false },
	[0x83] = { scsi_xcopy, 16, false },
	[0x84] = { scsi_receive_copy_results, 16, false },
	[0x8f] = { op_verify, 16, false },
	[0x90] = { op_prefetch, 16, false },
	[0x91] = { op_sync_cache, 16, false },
	[0x93] = { op_write_same, 16, false },
	[0x9c] = { scsi_write_atomic16, 16, false },
	[0x9e] = { op_service_action_in16, 16, false },
	[0xa0] = { op_report_luns, 12, true },
	[0xa3] = { op_maintenance_in, 12, true },
	[0xa4] = { scsi_alua_maintenance_out, 12, false },
	[0xa8] = { op_rw, 12, false },
	[0xaa] = { op_rw, 12, false },
	[0xae] = { op_write_verify, 12, false },
	[0xaf] = { op_verify, 12, false },
	[0xb7] = { op_read_defect_data, 12, false },
};

/* Commands with service actions, for REPORT SUPPORTED OPERATION CODES. */
static const struct { uint8_t op; uint16_t sa; } sa_ops[] = {
	{ 0x9e, 0x10 }, { 0x9e, 0x12 }, { 0xa3, 0x0a }, { 0xa3, 0x0c }, { 0xa4, 0x0a },
	{ 0x5e, 0x00 }, { 0x5e, 0x01 }, { 0x5e, 0x02 }, { 0x5e, 0x03 },
	{ 0x5f, 0x00 }, { 0x5f, 0x01 }, { 0x5f, 0x02 }, { 0x5f, 0x03 },
	{ 0x5f, 0x04 }, { 0x5f, 0x05 }, { 0x5f, 0x06 }, { 0x5f, 0x07 },
	{ 0x83, 0x00 }, { 0x84, 0x00 }, { 0x84, 0x03 }, { 0x84, 0x04 },
	{ 0x48, 0x01 }, { 0x48, 0x02 }, { 0x48, 0x1f },
};

static bool has_sa(uint8_t op)
{
	for (unsigned i = 0; i < ARRAY_SIZE(sa_ops); i++)
		if (sa_ops[i].op == op)
			return true;
	return false;
}

static bool sa_supported(uint8_t op, uint16_t sa)
{
	for (unsigned i = 0; i < ARRAY_SIZE(sa_ops); i++)
		if (sa_ops[i].op == op && sa_ops[i].sa == sa)
			return true;
	return false;
}

static uint32_t rsoc_desc(uint8_t *p, uint8_t op, uint16_t sa, bool servactv, bool rctd)
{
	memset(p, 0, rctd ? 20 : 8);
	p[0] = op;
	put_be16(p + 2, sa);
	p[5] = (servactv ? 0x01 : 0) | (rctd ? 0x02 : 0);
	put_be16(p + 6, ops[op].cdb_len);
	if (rctd)
		put_be16(p + 8, 0x0a);	/* command timeouts descriptor length */
	return rctd ? 20 : 8;
}

static int op_report_opcodes(struct scsi_cmd *cmd)
{
	uint8_t opt = cmd->cdb[2] & 0x07, rop = cmd->cdb[3];
	uint16_t rsa = get_be16(cmd->cdb + 4);
	bool rctd = cmd->cdb[2] & 0x80;
	uint32_t alloc = get_be32(cmd->cdb + 6), len = 4;
	uint8_t *d = calloc(1, 4 + 256 * 20 + ARRAY_SIZE(sa_ops) * 20);

	if (!d) {
		scsi_errno_sense(cmd, -ENOMEM);
		return SCSI_DONE;
	}
	switch (opt) {
	case 0:
		for (unsigned op = 0; op < 256; op++) {
			if (!ops[op].fn || has_sa((uint8_t)op))
				continue;
			len += rsoc_desc(d + len, (uint8_t)op, 0, false, rctd);
		}
		for (unsigned i = 0; i < ARRAY_SIZE(sa_ops); i++)
			len += rsoc_desc(d + len, sa_ops[i].op, sa_ops[i].sa, true, rctd);
		put_be32(d, len - 4);
		break;
	case 1:
	case 2:
	case 3: {
		bool sup;
		unsigned clen = ops[rop].cdb_len;

		if ((opt == 1 && has_sa(rop)) || (opt == 2 && ops[rop].fn && !has_sa(rop))) {
			free(d);
			scsi_invalid_field(cmd, 2, 2);
			return SCSI_DONE;
		}
		if (opt == 1 || (opt == 3 && !has_sa(rop)))
			sup = ops[rop].fn && (opt == 1 || !rsa);
		else
			sup = sa_supported(rop, rsa);
		d[1] = (rctd ? 0x80 : 0) | (sup ? 0x03 : 0x01);
		if (sup) {
			put_be16(d + 2, (uint16_t)clen);
			memset(d + 4, 0xff, clen);
			d[4] = rop;
			if (has_sa(rop))
				d[5] = (uint8_t)(rsa & 0x1f);
			d[4 + clen - 1] = 0x00;	/* control byte: NACA unsupported */
			len = 4 + clen;
			if (rctd) {
				put_be16(d + len, 0x0a);
				len += 12;
			}
		}
		break;
	}
	default:
		free(d);
		scsi_invalid_field(cmd, 2, 2);
		return SCSI_DONE;
	}
	data_in(cmd, d, len, alloc);
	free(d);
	return SCSI_DONE;
}

static int op_maintenance_in(struct scsi_cmd *cmd)
{
	switch (cmd->cdb[1] & 0x1f) {
	case 0x0a:
		if (!cmd->lu) {
			scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
			return SCSI_DONE;
		}
		return scsi_alua_rtpg(cmd);
	case 0x0c:
		if (!cmd->lu) {
			scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
			return SCSI_DONE;
		}
		return op_report_opcodes(cmd);
	default:
		scsi_invalid_field(cmd, 1, 4);
		return SCSI_DONE;
	}
}

int scsi_exec(struct scsi_cmd *cmd)
{
	const struct scsi_op *op = &ops[cmd->cdb[0]];

	cmd->status = SCSI_STATUS_GOOD;
	cmd->sense_len = 0;
	cmd->xfer_len = 0;
	cmd->data_in = false;
	cmd->tmp = NULL;
	cmd->next = NULL;
	cmd->step = 0;
	cmd->caw_locked = false;
	cmd->sanitizing = false;
	cmd->retry.heap_idx = 0;
	if (!cmd->lu && !(op->fn && op->no_lu_ok)) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
		return SCSI_DONE;
	}
	if (!op->fn) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
		return SCSI_DONE;
	}
	if (naca_check(cmd, op->cdb_len))
		return SCSI_DONE;
	if (cmd->lu && scsi_sanitize_check(cmd))	/* SANITIZE IN PROGRESS */
		return SCSI_DONE;
	if (scsi_alua_check(cmd))	/* state change unit attention, standby ... */
		return SCSI_DONE;
	if (cmd->lu) {
		uint64_t holder = __atomic_load_n(&cmd->lu->reserved_by, __ATOMIC_ACQUIRE);

		if (holder && holder != cmd->nexus && !reservation_allows(cmd->cdb[0])) {
			cmd->status = SCSI_STATUS_RESERVATION_CONFLICT;
			return SCSI_DONE;
		}
		if (scsi_pr_check(cmd))		/* unit attention, PR conflict */
			return SCSI_DONE;
	}
	return op->fn(cmd);
}

void scsi_lu_init(struct scsi_lu *lu, struct blkdev *bd, const uint8_t uuid[16], bool readonly)
{
	uint64_t v = 0;

	memset(lu, 0, sizeof(*lu));
	scsi_pr_init(&lu->pr);
	lu->bd = bd;
	lu->readonly = readonly || bd->readonly;
	lu->wce = true;
	lu->tas = true;
	lu->lbpme = blkdev_supports(bd, BIO_WRITE_ZEROES);
	for (int i = 0; i < 16; i++)
		snprintf(lu->serial + 2 * i, 3, "%02x", uuid[i]);
	/* NAA 3 (locally assigned): 60 bits of the UUID */
	for (int i = 0; i < 8; i++)
		v = v << 8 | uuid[i];
	v = (v & 0x0fffffffffffffffull) | 0x3000000000000000ull;
	put_be64(lu->naa, v);
	snprintf(lu->vendor, sizeof(lu->vendor), "SAND");
	snprintf(lu->product, sizeof(lu->product), "VOLUME");
	snprintf(lu->revision, sizeof(lu->revision), "0001");
}

/* ------------------------------------------------------------ for proto/scsi */

int scsi_check_range(struct scsi_cmd *cmd, uint64_t lba, uint64_t n)
{
	return range_check(cmd, lba, n);
}

int scsi_check_write_protect(struct scsi_cmd *cmd)
{
	return write_protect_check(cmd);
}

int scsi_caw_lock(struct scsi_cmd *cmd)
{
	if (__atomic_exchange_n(&cmd->lu->caw_busy, 1, __ATOMIC_ACQUIRE)) {
		scsi_errno_sense(cmd, -EBUSY);		/* the initiator retries */
		return -1;
	}
	cmd->caw_locked = true;
	return 0;
}

int scsi_io_start(struct scsi_cmd *cmd, enum bio_op op, uint32_t flags, uint8_t *buf,
		  uint64_t off, uint64_t len)
{
	return io_start(cmd, op, flags, buf, off, len);
}

int scsi_io_resubmit(struct scsi_cmd *cmd)
{
	return io_submit(cmd);
}
