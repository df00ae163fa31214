/* SPDX-License-Identifier: MIT */
/*
 * SANITIZE (SBC-4 5.30): every block of the LU made unreadable as it was.
 *
 * - OVERWRITE (01h): the INITIALIZATION PATTERN (1 byte to a block, from
 *   the parameter list) repeated over every block, OVERWRITE COUNT passes
 *   (1-31), the pattern inverted between passes with INVERT. Written from
 *   one buffer of up to 1 MiB, a piece at a time.
 * - BLOCK ERASE (02h), on a thin LU (LBPME): everything deallocated, by
 *   write-zeroes that may unmap, 1 GiB a bio; the blocks read back as zeros
 *   (LBPRZ) and GET LBA STATUS shows them deallocated. Block Device
 *   Characteristics VPD: WABEREQ 01b (reads after it succeed).
 * - CRYPTOGRAPHIC ERASE (03h): not supported (no media encryption):
 *   INVALID FIELD IN CDB, not listed by REPORT SUPPORTED OPERATION CODES,
 *   WACEREQ 00b.
 * - EXIT FAILURE MODE (1Fh): a sanitize never fails half done here (an I/O
 *   error fails the command, and the LU is usable), so there is no failure
 *   mode to leave: GOOD.
 *
 * While it runs the LU answers only INQUIRY, REPORT LUNS and REQUEST
 * SENSE; anything else, from any session, gets NOT READY, LOGICAL UNIT
 * NOT READY, SANITIZE IN PROGRESS (04h/1Bh) with the progress indication
 * in the sense-key specific bytes, and REQUEST SENSE returns that sense.
 * The sanitize is the LU's, not the command's (struct sanitize_job): with
 * IMMED 1 the command is answered at once; with IMMED 0 when it ends, but
 * an abort, a reset or the session going away only detaches the command,
 * and the sanitize goes on. scsi_sanitize_set_rate() paces it (bytes a
 * second) so it does not take every disk's bandwidth. An I/O error ends it
 * (the waiting command gets the error's sense, else it is logged) and the
 * LU is usable again. AUSE (nothing to exit from) and the bit SBC-3
 * reserved (ZNR in SBC-4: no zones here) get INVALID FIELD IN CDB.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/log.h"
#include "sand/scsi.h"
#include "proto/scsi/atomic.h"
#include "proto/scsi/sanitize.h"

#define SA_OVERWRITE		0x01
#define SA_BLOCK_ERASE		0x02
#define SA_CRYPTO_ERASE		0x03
#define SA_EXIT_FAILURE_MODE	0x1f

#define ASC_SANITIZE_IN_PROGRESS	0x041b
#define OVERWRITE_PIECE		(1u << 20)
#define ERASE_PIECE		(1ull << 30)
#define RETRY_NS		(50 * 1000)

/*
 * A sanitize in progress belongs to the LU, not to the command that asked
 * for it: it runs on that command's loop through a channel of its own, so
 * it goes on when the command is aborted, the LU reset or the session gone.
 * The command (IMMED 0) waits for it unless detached; with IMMED 1 it was
 * answered at once.
 */
struct sanitize_job {
	struct scsi_lu	*lu;
	struct blkchan	*ch;
	struct scsi_cmd	*cmd;		/* waiting for the status, or NULL */
	enum bio_op	op;
	uint8_t		*buf;		/* OVERWRITE pattern, piece_len bytes */
	uint32_t	piece_len;
	uint64_t	off, io_len, size;
	unsigned	passes;		/* left, this one included */
	bool		invert;
	uint64_t	total, done;	/* bytes over every pass */
	uint64_t	rate, start_ns;
	struct ev_timer	timer;		/* pacing and backpressure */
	int		err;
};

static uint64_t sanitize_rate;		/* bytes a second, 0: unlimited */

void scsi_sanitize_set_rate(uint64_t bytes_per_s)
{
	__atomic_store_n(&sanitize_rate, bytes_per_s, __ATOMIC_RELEASE);
}

/* NOT READY, SANITIZE IN PROGRESS with the progress indication */
static void progress_sense(struct scsi_lu *lu, uint8_t *sense)
{
	uint16_t prog = __atomic_load_n(&lu->sanitize_progress, __ATOMIC_ACQUIRE);

	sense[15] = 0x80;			/* SKSV: progress indication */
	put_be16(sense + 16, prog);
}

bool scsi_sanitize_check(struct scsi_cmd *cmd)
{
	switch (cmd->cdb[0]) {
	case 0x03:	/* REQUEST SENSE */
	case 0x12:	/* INQUIRY */
	case 0xa0:	/* REPORT LUNS */
		return false;
	}
	if (!__atomic_load_n(&cmd->lu->sanitizing, __ATOMIC_ACQUIRE))
		return false;
	scsi_sense(cmd, SK_NOT_READY, ASC_SANITIZE_IN_PROGRESS);
	progress_sense(cmd->lu, cmd->sense);
	return true;
}

bool scsi_sanitize_request_sense(struct scsi_lu *lu, uint8_t *d)
{
	if (!__atomic_load_n(&lu->sanitizing, __ATOMIC_ACQUIRE))
		return false;
	d[2] = SK_NOT_READY;
	d[12] = ASC_SANITIZE_IN_PROGRESS >> 8;
	d[13] = ASC_SANITIZE_IN_PROGRESS & 0xff;
	progress_sense(lu, d);
	return true;
}

unsigned scsi_sanitize_stop(struct scsi_lu *lu)
{
	__atomic_store_n(&lu->sanitize_stop, 1, __ATOMIC_RELEASE);
	return __atomic_load_n(&lu->sanitizing, __ATOMIC_ACQUIRE) ? 1 : 0;
}

bool scsi_sanitize_detach(struct scsi_cmd *cmd)
{
	struct sanitize_job *job;

	if (!cmd->sanitizing)
		return false;
	job = cmd->lu->sanitize_job;	/* this loop's: set and cleared here */
	job->cmd = NULL;
	cmd->sanitizing = false;
	return true;
}

static void job_closed(void *arg)
{
	struct sanitize_job *job = arg;
	struct scsi_lu *lu = job->lu;

	free(job->buf);
	free(job);
	__atomic_store_n(&lu->sanitize_progress, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&lu->sanitizing, 0, __ATOMIC_RELEASE);
}

static void job_end(struct sanitize_job *job)
{
	struct scsi_cmd *cmd = job->cmd;

	job->lu->sanitize_job = NULL;
	if (job->err == -ECANCELED)
		LOG_INFO(LS_SCSI, "%s: sanitize stopped: the lu is going away", job->lu->bd->name);
	else if (job->err)
		LOG_WARN(LS_SCSI, "%s: sanitize failed: %d", job->lu->bd->name, job->err);
	if (cmd) {
		job->cmd = NULL;
		cmd->sanitizing = false;
		if (job->err)
			scsi_errno_sense(cmd, job->err);
		cmd->done(cmd);
	}
	blk_chan_close(job->ch, job_closed, job);
}

static void job_submit(struct sanitize_job *job);

static void job_timer(struct ev_timer *t)
{
	job_submit(container_of(t, struct sanitize_job, timer));
}

static void job_io_end(struct bio *bio, int status)
{
	struct sanitize_job *job = bio->end_arg;
	uint16_t prog;

	if (status) {
		job->err = status;
		job_end(job);
		return;
	}
	job->off += job->io_len;
	job->done += job->io_len;
	prog = (uint16_t)MIN(job->done / ((job->total >> 16) + 1), 65535ull);
	__atomic_store_n(&job->lu->sanitize_progress, prog, __ATOMIC_RELEASE);
	if (job->off >= job->size) {
		if (!--job->passes) {
			job_end(job);
			return;
		}
		if (job->invert)
			for (uint32_t i = 0; i < job->piece_len; i++)
				job->buf[i] = (uint8_t)~job->buf[i];
		job->off = 0;
	}
	if (job->rate) {	/* paced: not ahead of start + done / rate */
		uint64_t due = job->start_ns + job->done * 1000000000ull / job->rate;
		uint64_t now = now_ns();

		if (due > now) {
			ev_timer_start(job->ch->loop, &job->timer, due - now, job_timer);
			return;
		}
	}
	job_submit(job);
}

/* The next piece, on the job's channel */
static void job_submit(struct sanitize_job *job)
{
	struct iovec iov = { .iov_base = job->buf, .iov_len = 0 };
	int rc;

	if (__atomic_load_n(&job->lu->sanitize_stop, __ATOMIC_ACQUIRE)) {
		job->err = -ECANCELED;		/* the LU is going away */
		job_end(job);
		return;
	}
	job->io_len = MIN(job->size - job->off, (uint64_t)job->piece_len);
	iov.iov_len = job->io_len;
	rc = blk_rw(job->ch, job->op, 0, &iov, job->buf ? 1 : 0, job->off, job->io_len,
		    job_io_end, job);
	if (rc == -EAGAIN || rc == -ENOMEM) {
		ev_timer_start(job->ch->loop, &job->timer, RETRY_NS, job_timer);
		return;
	}
	if (rc) {
		job->err = rc;
		job_end(job);
	}
}

/* OVERWRITE parameter list: 0 and the job's pattern set, or -1 with sense */
static int overwrite_params(struct scsi_cmd *cmd, uint32_t plen, struct sanitize_job *job)
{
	const uint8_t *p = cmd->buf;
	uint32_t bs = cmd->lu->bd->block_size, ilen;

	/* a header and 1 to a block of pattern (libiscsi wants INVALID FIELD
	 * IN CDB for a bad count or pattern length too) */
	if (plen < 5 || plen > bs + 4) {
		scsi_invalid_field(cmd, 7, -1);
		return -1;
	}
	if (cmd->buf_len < plen) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
		return -1;
	}
	ilen = get_be16(p + 2);
	if (!(p[0] & 0x1f) || !ilen || ilen > bs || ilen + 4 > plen) {
		scsi_invalid_field(cmd, 7, -1);
		return -1;
	}
	if (p[0] & 0x60 || p[1]) {		/* TEST, reserved */
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
		return -1;
	}
	job->buf = malloc(job->piece_len);
	if (!job->buf) {
		scsi_errno_sense(cmd, -ENOMEM);
		return -1;
	}
	/* the pattern from the start of every block */
	for (uint32_t i = 0; i < job->piece_len; i++)
		job->buf[i] = p[4 + (i % bs) % ilen];
	job->passes = p[0] & 0x1f;
	job->invert = p[0] & 0x80;
	return 0;
}

/* bytes a bio: up to 1 MiB (1 GiB erasing), about 1/8 s of work when paced */
static uint32_t piece_len(struct scsi_lu *lu, uint64_t rate, uint64_t max)
{
	uint32_t bs = lu->bd->block_size;
	uint64_t n = MIN(lu->bd->size, max);

	if (rate)
		n = MIN(n, MAX(rate / 8 / bs * bs, (uint64_t)bs));
	return (uint32_t)n;
}

int scsi_sanitize(struct scsi_cmd *cmd)
{
	const uint8_t *cdb = cmd->cdb;
	struct scsi_lu *lu = cmd->lu;
	uint8_t sa = cdb[1] & 0x1f;
	uint32_t plen = get_be16(cdb + 7);
	bool immed = cdb[1] & 0x80;
	struct sanitize_job *job;

	if (cdb[1] & 0x60) {		/* AUSE, ZNR: see above */
		scsi_invalid_field(cmd, 1, cdb[1] & 0x40 ? 6 : 5);
		return SCSI_DONE;
	}
	for (unsigned i = 2; i < 7; i++) {
		if (cdb[i]) {
			scsi_invalid_field(cmd, i, -1);
			return SCSI_DONE;
		}
	}
	switch (sa) {
	case SA_OVERWRITE:
		break;
	case SA_BLOCK_ERASE:
		if (!lu->lbpme) {
			scsi_invalid_field(cmd, 1, 4);
			return SCSI_DONE;
		}
		/* fall through */
	case SA_EXIT_FAILURE_MODE:
		if (plen) {
			scsi_invalid_field(cmd, 7, -1);
			return SCSI_DONE;
		}
		break;
	default:			/* CRYPTOGRAPHIC ERASE among them */
		scsi_invalid_field(cmd, 1, 4);
		return SCSI_DONE;
	}
	cmd->xfer_len = plen;
	if (scsi_check_write_protect(cmd))
		return SCSI_DONE;
	if (sa == SA_EXIT_FAILURE_MODE)
		return SCSI_DONE;
	job = calloc(1, sizeof(*job));
	if (!job) {
		scsi_errno_sense(cmd, -ENOMEM);
		return SCSI_DONE;
	}
	job->lu = lu;
	job->size = lu->bd->size;
	job->rate = __atomic_load_n(&sanitize_rate, __ATOMIC_ACQUIRE);
	if (sa == SA_OVERWRITE) {
		job->op = BIO_WRITE;
		job->piece_len = piece_len(lu, job->rate, OVERWRITE_PIECE);
		if (overwrite_params(cmd, plen, job))
			goto free_job;
	} else {
		job->op = BIO_WRITE_ZEROES;
		job->piece_len = piece_len(lu, job->rate, ERASE_PIECE);
		job->passes = 1;
	}
	job->total = job->size * job->passes;
	if (__atomic_exchange_n(&lu->sanitizing, 1, __ATOMIC_ACQ_REL)) {
		scsi_sense(cmd, SK_NOT_READY, ASC_SANITIZE_IN_PROGRESS);
		progress_sense(lu, cmd->sense);
		goto free_job;
	}
	if (__atomic_load_n(&lu->sanitize_stop, __ATOMIC_ACQUIRE) ||
	    blk_chan_open(lu->bd, cmd->ch->loop, &job->ch)) {
		__atomic_store_n(&lu->sanitizing, 0, __ATOMIC_RELEASE);
		scsi_errno_sense(cmd, -ENOMEM);
		goto free_job;
	}
	__atomic_store_n(&lu->sanitize_progress, 0, __ATOMIC_RELEASE);
	lu->sanitize_job = job;
	job->start_ns = now_ns();
	if (!immed) {			/* answered when it ends, unless detached */
		job->cmd = cmd;
		cmd->sanitizing = true;
	}
	/* the first piece from the loop: the command is never answered
	 * from inside scsi_exec */
	ev_timer_start(cmd->ch->loop, &job->timer, 0, job_timer);
	return immed ? SCSI_DONE : SCSI_PENDING;

free_job:
	free(job->buf);
	free(job);
	return SCSI_DONE;
}
