/* SPDX-License-Identifier: MIT */
/*
 * EXTENDED COPY (LID1, SPC-4 6.4) with block-to-block segment descriptors
 * (02h) between LUs named by identification descriptor CSCDs (E4h, the LU's
 * NAA designator), and RECEIVE COPY RESULTS (SPC-4 6.18: COPY STATUS,
 * FAILED SEGMENT DETAILS, OPERATING PARAMETERS).
 *
 * The whole parameter list is checked before any data moves: a bad
 * descriptor fails the command with the sense SPC-4 names and nothing is
 * copied. The copy then runs on the command's loop, one bounded read and
 * one write at a time (XCOPY_BUF), segment after segment, through a
 * channel on each LU (the command's own channel for the LU it came to).
 * An overlapping copy within one LU runs backwards when the destination
 * is above the source, so the result is as if the source were read first.
 *
 * LUs are found in a registry (scsi_xcopy_register) by NAA designator; a
 * copy holds a reference on each LU it names, and unregistering waits for
 * those references to go.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "sand/log.h"
#include "sand/thin.h"
#include "proto/scsi/xcopy.h"

#define RETRY_NS	(50 * 1000)
#define HELD_RESULTS	64
#define SEG_B2B_LEN	28

/* ------------------------------------------------------------ registry */

struct xc_reg {
	struct list_head link;
	struct scsi_lu	*lu;
	unsigned	refs;		/* copies using it (reg_lock) */
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct list_head regs = LIST_HEAD_INIT(regs);

/* Held copy results, by (LU, I_T nexus, list identifier); reg_lock. */
struct xc_result {
	struct scsi_lu	*lu;		/* NULL: free */
	uint64_t	nexus;
	uint8_t		list_id;
	bool		running;
	uint8_t		cm_status;	/* 0 in progress, 1 done, 2 done with errors */
	uint16_t	segs;		/* segments processed */
	uint64_t	bytes;		/* transferred */
	uint8_t		status;		/* the command's status and sense */
	uint8_t		sense[SCSI_SENSE_LEN];
	uint8_t		sense_len;
	uint64_t	age;
};
static struct xc_result results[HELD_RESULTS];
static uint64_t result_age;
static unsigned active_copies;

int scsi_xcopy_register(struct scsi_lu *lu)
{
	struct xc_reg *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->lu = lu;
	pthread_mutex_lock(&reg_lock);
	list_add_tail(&r->link, &regs);
	pthread_mutex_unlock(&reg_lock);
	return 0;
}

void scsi_xcopy_unregister(struct scsi_lu *lu)
{
	struct list_head *pos;
	struct xc_reg *r = NULL;

	pthread_mutex_lock(&reg_lock);
	list_for_each(pos, &regs) {
		if (list_entry(pos, struct xc_reg, link)->lu == lu) {
			r = list_entry(pos, struct xc_reg, link);
			list_del(&r->link);
			break;
		}
	}
	for (unsigned i = 0; i < HELD_RESULTS; i++)
		if (results[i].lu == lu && !results[i].running)
			results[i].lu = NULL;
	/* copies that hold it end on their own: wait for them */
	while (r && r->refs) {
		pthread_mutex_unlock(&reg_lock);
		usleep(1000);
		pthread_mutex_lock(&reg_lock);
	}
	for (unsigned i = 0; i < HELD_RESULTS; i++)
		if (results[i].lu == lu)
			results[i].lu = NULL;
	pthread_mutex_unlock(&reg_lock);
	free(r);
}

/* The registered LU with NAA designator naa, referenced; NULL if none. */
static struct xc_reg *reg_get(const uint8_t naa[8])
{
	struct list_head *pos;
	struct xc_reg *found = NULL;

	pthread_mutex_lock(&reg_lock);
	list_for_each(pos, &regs) {
		struct xc_reg *r = list_entry(pos, struct xc_reg, link);

		if (!memcmp(r->lu->naa, naa, 8)) {
			r->refs++;
			found = r;
			break;
		}
	}
	pthread_mutex_unlock(&reg_lock);
	return found;
}

static void reg_put(struct xc_reg *r)
{
	pthread_mutex_lock(&reg_lock);
	r->refs--;
	pthread_mutex_unlock(&reg_lock);
}

/* reg_lock held */
static struct xc_result *result_find(struct scsi_lu *lu, uint64_t nexus, uint8_t list_id)
{
	for (unsigned i = 0; i < HELD_RESULTS; i++)
		if (results[i].lu == lu && results[i].nexus == nexus &&
		    results[i].list_id == list_id)
			return &results[i];
	return NULL;
}

/* ------------------------------------------------------------ the copy */

struct xc_tgt {
	struct scsi_lu	*lu;
	struct xc_reg	*reg;		/* NULL: the command's own LU */
	struct blkchan	*ch;
	bool		own_ch;		/* opened here, closed at the end */
};

/* A piece of a segment: copied with reads and writes, or shared */
struct xc_seg {
	uint16_t	src, dst;	/* target descriptor indexes */
	uint16_t	seg;		/* the segment descriptor it is part of */
	uint64_t	src_off, dst_off, len;	/* bytes */
	bool		backward;
	bool		share;		/* thin_vol_copy_range: whole chunks */
};

struct xc_job {
	struct scsi_cmd	*cmd;
	struct ev_loop	*loop;
	unsigned	ntgt, nseg;	/* nseg: pieces */
	unsigned	nsegdesc;	/* segment descriptors */
	struct xc_tgt	tgt[XCOPY_MAX_TGT_DESC];
	struct xc_seg	seg[3 * XCOPY_MAX_SEG_DESC];
	unsigned	cur;		/* piece being copied */
	uint64_t	done;		/* bytes of it copied */
	uint64_t	chunk;		/* bytes of the I/O in flight */
	bool		writing;
	uint64_t	total;
	uint8_t		*buf;
	uint32_t	buf_len;
	struct xc_result *held;		/* NULL: list id not held */
	unsigned	closing;
	bool		counted;	/* in active_copies */
	struct ev_timer	retry;
};

static void job_release(struct xc_job *job);

static void chan_closed(void *arg)
{
	struct xc_job *job = arg;

	if (--job->closing)
		return;
	for (unsigned i = 0; i < job->ntgt; i++)
		if (job->tgt[i].reg)
			reg_put(job->tgt[i].reg);
	if (job->counted)
		__atomic_sub_fetch(&active_copies, 1, __ATOMIC_RELAXED);
	free(job->buf);
	free(job);
}

/* Close the channels opened for the copy, then drop the LUs and free it. */
static void job_release(struct xc_job *job)
{
	job->closing = 1;
	for (unsigned i = 0; i < job->ntgt; i++) {
		if (job->tgt[i].own_ch) {
			job->tgt[i].own_ch = false;
			job->closing++;
			blk_chan_close(job->tgt[i].ch, chan_closed, job);
		}
	}
	chan_closed(job);
}

/* The held result, from the command's final status. */
static void job_record(struct xc_job *job)
{
	struct scsi_cmd *cmd = job->cmd;
	struct xc_result *r = job->held;

	if (!r)
		return;
	pthread_mutex_lock(&reg_lock);
	r->running = false;
	r->cm_status = cmd->status == SCSI_STATUS_GOOD ? 1 : 2;
	r->segs = job->cur < job->nseg ? job->seg[job->cur].seg : (uint16_t)job->nsegdesc;
	r->bytes = job->total;
	r->status = cmd->status;
	r->sense_len = cmd->sense_len;
	memcpy(r->sense, cmd->sense, cmd->sense_len);
	pthread_mutex_unlock(&reg_lock);
}

static void job_finish(struct xc_job *job, int err)
{
	struct scsi_cmd *cmd = job->cmd;

	if (err) {
		LOG_RATELIMIT(LOG_WARN, LS_SCSI, "%s: extended copy failed at segment %u: %d",
			      cmd->lu->bd->name,
			      job->cur < job->nseg ? job->seg[job->cur].seg : job->nsegdesc, err);
		scsi_errno_sense(cmd, err);
	}
	job_record(job);
	cmd->done(cmd);
	job_release(job);
}

static void job_io_end(struct bio *bio, int status);
static void job_share_end(void *arg, int rc);

/* Submit the next read or write. 0: submitted (or retrying), 1: the copy
 * is complete, -errno. */
static int job_submit(struct xc_job *job)
{
	struct xc_seg *s;
	struct iovec iov;
	uint64_t o;
	int rc;

	while (job->cur < job->nseg && job->done == job->seg[job->cur].len) {
		job->cur++;
		job->done = 0;
	}
	if (job->cur == job->nseg)
		return 1;
	s = &job->seg[job->cur];
	if (s->share) {
		rc = thin_vol_copy_range(job->tgt[s->src].lu->bd, s->src_off,
					 job->tgt[s->dst].lu->bd, s->dst_off, s->len, job->loop,
					 job_share_end, job);
		if (!rc)
			return 0;
		s->share = false;	/* copy it instead */
	}
	job->chunk = MIN(s->len - job->done, (uint64_t)job->buf_len);
	o = s->backward ? s->len - job->done - job->chunk : job->done;
	iov.iov_base = job->buf;
	iov.iov_len = job->chunk;
	if (job->writing)
		rc = blk_rw(job->tgt[s->dst].ch, BIO_WRITE, 0, &iov, 1, s->dst_off + o,
			    job->chunk, job_io_end, job);
	else
		rc = blk_rw(job->tgt[s->src].ch, BIO_READ, 0, &iov, 1, s->src_off + o,
			    job->chunk, job_io_end, job);
	if (rc == -EAGAIN || rc == -ENOMEM)
		return 2;	/* the caller retries from a timer */
	return rc;
}

static void job_retry(struct ev_timer *t);

/* Next step; errors and completion end the command. */
static void job_step(struct xc_job *job)
{
	int rc = job_submit(job);

	if (rc == 2)
		ev_timer_start(job->loop, &job->retry, RETRY_NS, job_retry);
	else if (rc)
		job_finish(job, rc == 1 ? 0 : rc);
}

static void job_retry(struct ev_timer *t)
{
	job_step(container_of(t, struct xc_job, retry));
}

/* The shared piece is done; or it could not be shared: copy it. */
static void job_share_end(void *arg, int rc)
{
	struct xc_job *job = arg;
	struct xc_seg *s = &job->seg[job->cur];

	if (rc) {
		s->share = false;
	} else {
		job->done = s->len;
		job->total += s->len;
	}
	job_step(job);
}

static void job_io_end(struct bio *bio, int status)
{
	struct xc_job *job = bio->end_arg;

	if (status) {
		job_finish(job, status);
		return;
	}
	if (job->writing) {
		job->done += job->chunk;
		job->total += job->chunk;
	}
	job->writing = !job->writing;
	job_step(job);
}

/* ------------------------------------------------------------ parsing */

static void param_len_error(struct scsi_cmd *cmd)
{
	scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
}

/* INVALID FIELD IN PARAMETER LIST, pointing at byte of the list */
static void invalid_param(struct scsi_cmd *cmd, unsigned byte)
{
	scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	cmd->sense[15] = 0x80;		/* SKSV, C/D = 0: the parameter list */
	put_be16(cmd->sense + 16, (uint16_t)byte);
}

/* Identification descriptor CSCD (E4h): the LU with that NAA designator. */
static int parse_tgt(struct xc_job *job, const uint8_t *d, unsigned byte)
{
	struct scsi_cmd *cmd = job->cmd;
	struct xc_tgt *t = &job->tgt[job->ntgt];
	uint8_t code_set = d[4] & 0x0f, type = d[5] & 0x0f, assoc = (d[5] >> 4) & 3;
	uint32_t bs = get_be32(d + 28) & 0xffffff;

	if (d[1] & 0x1f) {		/* peripheral device type: block only */
		invalid_param(cmd, byte + 1);
		return -1;
	}
	/* LU ID TYPE (byte 1 bits 7-6) is ignored in SPC-4; NUL is obsolete */
	if (code_set != 1 || type != 3 || assoc != 0 || d[7] != 8) {
		scsi_sense(cmd, SK_COPY_ABORTED, ASC_UNREACHABLE_COPY_TARGET);
		return -1;
	}
	if (!memcmp(d + 8, cmd->lu->naa, 8)) {
		t->lu = cmd->lu;
		t->ch = cmd->ch;
	} else {
		t->reg = reg_get(d + 8);
		if (!t->reg) {
			scsi_sense(cmd, SK_COPY_ABORTED, ASC_UNREACHABLE_COPY_TARGET);
			return -1;
		}
		t->lu = t->reg->lu;
	}
	job->ntgt++;
	if (bs != t->lu->bd->block_size) {
		invalid_param(cmd, byte + 29);
		return -1;
	}
	return 0;
}

/*
 * Between thin volumes of one pool, the whole chunks of a piece are shared
 * rather than copied (when source and destination are as far from a chunk
 * boundary, and do not overlap): the piece becomes head (copied), whole
 * chunks (shared), tail (copied).
 */
static void split_shared(struct xc_job *job, struct xc_seg *s, struct blkdev *sbd,
			 struct blkdev *dbd)
{
	uint32_t chunk = thin_vol_chunk(sbd);
	uint64_t head, mid;
	struct xc_seg *m, *t;

	if (!chunk || !thin_vol_same_pool(sbd, dbd) || s->src_off % chunk != s->dst_off % chunk)
		return;
	if (sbd == dbd && s->src_off < s->dst_off + s->len && s->dst_off < s->src_off + s->len)
		return;
	head = MIN((chunk - s->dst_off % chunk) % chunk, s->len);
	mid = (s->len - head) / chunk * chunk;
	if (!mid)
		return;
	m = s + 1;
	t = s + 2;
	*m = *s;
	*t = *s;
	s->len = head;
	m->src_off += head;
	m->dst_off += head;
	m->len = mid;
	m->share = true;
	t->src_off += head + mid;
	t->dst_off += head + mid;
	t->len -= head + mid;
	job->nseg += 2;
}

/* Block device to block device segment descriptor (02h). */
static int parse_seg(struct xc_job *job, const uint8_t *d)
{
	struct scsi_cmd *cmd = job->cmd;
	struct xc_seg *s = &job->seg[job->nseg];
	uint16_t src = get_be16(d + 4), dst = get_be16(d + 6);
	uint32_t n = get_be16(d + 10), sbs, dbs;
	uint64_t src_lba = get_be64(d + 12), dst_lba = get_be64(d + 20), len;
	struct blkdev *sbd, *dbd;

	if (src >= job->ntgt || dst >= job->ntgt) {
		scsi_sense(cmd, SK_COPY_ABORTED, ASC_UNREACHABLE_COPY_TARGET);
		return -1;
	}
	sbd = job->tgt[src].lu->bd;
	dbd = job->tgt[dst].lu->bd;
	sbs = sbd->block_size;
	dbs = dbd->block_size;
	len = (uint64_t)n * (d[1] & 0x02 ? dbs : sbs);	/* DC: destination blocks */
	if (len % sbs || len % dbs || len > XCOPY_MAX_SEG_BYTES) {
		scsi_sense(cmd, SK_COPY_ABORTED, ASC_NONE);
		return -1;
	}
	if (src_lba > sbd->size / sbs || len > sbd->size - src_lba * sbs ||
	    dst_lba > dbd->size / dbs || len > dbd->size - dst_lba * dbs) {
		scsi_sense(cmd, SK_COPY_ABORTED, ASC_NONE);
		return -1;
	}
	if (len && (job->tgt[dst].lu->readonly || dbd->readonly ||
		    __atomic_load_n(&job->tgt[dst].lu->swp, __ATOMIC_ACQUIRE))) {
		scsi_sense(cmd, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
		return -1;
	}
	s->src = src;
	s->dst = dst;
	s->seg = (uint16_t)job->nsegdesc++;
	s->src_off = src_lba * sbs;
	s->dst_off = dst_lba * dbs;
	s->len = len;
	s->backward = sbd == dbd && s->dst_off > s->src_off && s->dst_off < s->src_off + len;
	job->nseg++;
	split_shared(job, s, sbd, dbd);
	return 0;
}

/* A conflict with a reservation on a LU other than the command's. */
static bool tgt_conflict(struct scsi_cmd *cmd, struct scsi_lu *lu, bool write)
{
	uint64_t holder = __atomic_load_n(&lu->reserved_by, __ATOMIC_ACQUIRE);
	struct scsi_cmd probe;

	if (holder && holder != cmd->nexus)
		return true;
	memset(&probe, 0, sizeof(probe));
	probe.lu = lu;
	probe.nexus = cmd->nexus;
	probe.iport = cmd->iport;
	probe.tpg = cmd->tpg;
	probe.cdb[0] = write ? 0x2a : 0x28;
	return scsi_pr_check(&probe) && probe.status == SCSI_STATUS_RESERVATION_CONFLICT;
}

static int job_parse(struct xc_job *job, const uint8_t *p, uint32_t tlen, uint32_t slen)
{
	struct scsi_cmd *cmd = job->cmd;
	uint32_t off, end;

	for (off = 16, end = 16 + tlen; off < end;) {
		const uint8_t *d = p + off;
		unsigned dlen = d[0] == 0xea || d[0] == 0xeb ? 64 : 32;

		if (job->ntgt == XCOPY_MAX_TGT_DESC) {
			scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_TOO_MANY_TGT_DESC);
			return -1;
		}
		if (d[0] != 0xe4) {
			scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_UNSUPP_TGT_DESC);
			return -1;
		}
		if (end - off < dlen) {
			param_len_error(cmd);
			return -1;
		}
		if (parse_tgt(job, d, off))
			return -1;
		off += dlen;
	}
	for (end = off + slen; off < end;) {
		const uint8_t *d = p + off;
		uint32_t dlen;

		if (end - off < 4) {
			param_len_error(cmd);
			return -1;
		}
		dlen = get_be16(d + 2) + 4u;
		if (job->nsegdesc == XCOPY_MAX_SEG_DESC) {
			scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_TOO_MANY_SEG_DESC);
			return -1;
		}
		if (d[0] != 0x02) {
			scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_UNSUPP_SEG_DESC);
			return -1;
		}
		if (dlen != SEG_B2B_LEN || end - off < dlen) {
			param_len_error(cmd);
			return -1;
		}
		if (parse_seg(job, d))
			return -1;
		off += dlen;
	}
	for (unsigned i = 0; i < job->ntgt; i++) {
		struct xc_tgt *t = &job->tgt[i];
		bool src = false, dst = false;

		if (t->lu == cmd->lu)	/* scsi_exec checked the command's LU */
			continue;
		for (unsigned j = 0; j < job->nseg; j++) {
			src |= job->seg[j].src == i;
			dst |= job->seg[j].dst == i;
		}
		if ((src || dst) && tgt_conflict(cmd, t->lu, dst)) {
			cmd->status = SCSI_STATUS_RESERVATION_CONFLICT;
			return -1;
		}
	}
	return 0;
}

/* Channels on the copy's LUs for this loop (one per LU). */
static int job_open(struct xc_job *job)
{
	for (unsigned i = 0; i < job->ntgt; i++) {
		struct xc_tgt *t = &job->tgt[i];
		int rc;

		if (t->ch)
			continue;
		for (unsigned j = 0; j < i; j++) {
			if (job->tgt[j].lu == t->lu) {
				t->ch = job->tgt[j].ch;
				break;
			}
		}
		if (t->ch)
			continue;
		rc = blk_chan_open(t->lu->bd, job->loop, &t->ch);
		if (rc)
			return rc;
		t->own_ch = true;
	}
	return 0;
}

/* Hold the result under the list identifier; false: one is running. */
static bool job_hold(struct xc_job *job, uint8_t list_id)
{
	struct scsi_cmd *cmd = job->cmd;
	struct xc_result *r, *victim = NULL;

	pthread_mutex_lock(&reg_lock);
	r = result_find(cmd->lu, cmd->nexus, list_id);
	if (r && r->running) {
		pthread_mutex_unlock(&reg_lock);
		return false;
	}
	if (!r) {
		for (unsigned i = 0; i < HELD_RESULTS; i++) {
			struct xc_result *c = &results[i];

			if (c->running)
				continue;
			if (!c->lu) {
				victim = c;
				break;
			}
			if (!victim || c->age < victim->age)
				victim = c;
		}
		r = victim;
	}
	if (r) {	/* every slot running: the result is not held */
		memset(r, 0, sizeof(*r));
		r->lu = cmd->lu;
		r->nexus = cmd->nexus;
		r->list_id = list_id;
		r->running = true;
		r->age = ++result_age;
	}
	job->held = r;
	pthread_mutex_unlock(&reg_lock);
	return true;
}

int scsi_xcopy(struct scsi_cmd *cmd)
{
	const uint8_t *p = cmd->buf;
	uint32_t plen = get_be32(cmd->cdb + 10), tlen, slen, ilen;
	uint8_t list_id, usage;
	struct xc_job *job;
	uint64_t max = 0;
	int rc;

	if (cmd->cdb[1] & 0x1f) {	/* LID4 and the other service actions */
		scsi_invalid_field(cmd, 1, 4);
		return SCSI_DONE;
	}
	cmd->xfer_len = plen;
	if (!plen)
		return SCSI_DONE;
	if (plen < 16 || cmd->buf_len < plen) {
		param_len_error(cmd);
		return SCSI_DONE;
	}
	list_id = p[0];
	usage = (p[1] >> 3) & 3;
	tlen = get_be16(p + 2);
	slen = get_be32(p + 8);
	ilen = get_be32(p + 12);
	if ((uint64_t)tlen + slen > XCOPY_MAX_DESC_LIST ||
	    16 + (uint64_t)tlen + slen + ilen > plen) {
		param_len_error(cmd);
		return SCSI_DONE;
	}
	if (ilen) {			/* no inline data: MAXIMUM INLINE DATA LENGTH 0 */
		invalid_param(cmd, 12);
		return SCSI_DONE;
	}
	if (usage == 1 || (usage == 3 && list_id)) {
		invalid_param(cmd, 1);
		return SCSI_DONE;
	}
	job = calloc(1, sizeof(*job));
	if (!job) {
		scsi_errno_sense(cmd, -ENOMEM);
		return SCSI_DONE;
	}
	job->cmd = cmd;
	job->loop = cmd->ch->loop;
	if (job_parse(job, p, tlen, slen))
		goto release;
	if (__atomic_add_fetch(&active_copies, 1, __ATOMIC_RELAXED) > XCOPY_MAX_CONCURRENT) {
		__atomic_sub_fetch(&active_copies, 1, __ATOMIC_RELAXED);
		scsi_errno_sense(cmd, -EBUSY);
		goto release;
	}
	job->counted = true;
	for (unsigned i = 0; i < job->nseg; i++)
		max = MAX(max, job->seg[i].len);
	if (!max) {
		job->cur = job->nseg;
		goto done;
	}
	if (usage == 0 && !job_hold(job, list_id)) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_OPERATION_IN_PROGRESS);
		goto release;
	}
	job->buf_len = (uint32_t)MIN(max, (uint64_t)XCOPY_BUF);
	job->buf = malloc(job->buf_len);
	rc = job->buf ? job_open(job) : -ENOMEM;
	if (!rc)
		rc = job_submit(job);
	if (rc == 2) {
		ev_timer_start(job->loop, &job->retry, RETRY_NS, job_retry);
		rc = 0;
	}
	if (rc == 0)
		return SCSI_PENDING;
	if (rc < 0)
		scsi_errno_sense(cmd, rc);
done:
	if (usage == 0 && !job->held)
		job_hold(job, list_id);
	job_record(job);
release:
	job_release(job);
	return SCSI_DONE;
}

/* ------------------------------------------------------------ results */

static void data_in(struct scsi_cmd *cmd, const void *p, uint32_t len, uint32_t alloc)
{
	uint32_t n = MIN(len, alloc);

	cmd->xfer_len = n;
	cmd->data_in = true;
	if (cmd->buf)
		memcpy(cmd->buf, p, MIN(n, cmd->buf_len));
}

static int op_params(struct scsi_cmd *cmd, uint32_t alloc)
{
	uint8_t d[46] = { 0 };

	put_be32(d, sizeof(d) - 4);
	d[4] = 0x01;					/* SNLID: no list id is fine */
	put_be16(d + 8, XCOPY_MAX_TGT_DESC);
	put_be16(d + 10, XCOPY_MAX_SEG_DESC);
	put_be32(d + 12, XCOPY_MAX_DESC_LIST);
	put_be32(d + 16, XCOPY_MAX_SEG_BYTES);
	put_be32(d + 20, 0);				/* inline data */
	put_be32(d + 24, 0);				/* held data */
	put_be32(d + 28, 0);				/* stream devices */
	put_be16(d + 34, XCOPY_MAX_CONCURRENT);
	d[36] = XCOPY_MAX_CONCURRENT;
	d[37] = 9;					/* data segment granularity: 512 */
	d[43] = 2;					/* implemented descriptor codes */
	d[44] = 0x02;
	d[45] = 0xe4;
	data_in(cmd, d, sizeof(d), alloc);
	return SCSI_DONE;
}

int scsi_receive_copy_results(struct scsi_cmd *cmd)
{
	uint8_t sa = cmd->cdb[1] & 0x1f, list_id = cmd->cdb[2];
	uint32_t alloc = get_be32(cmd->cdb + 10);
	struct xc_result *r, copy;
	uint8_t d[60 + SCSI_SENSE_LEN] = { 0 };

	switch (sa) {
	case 0x03:
		return op_params(cmd, alloc);
	case 0x00:
	case 0x04:
		break;
	default:		/* RECEIVE DATA: no held data */
		scsi_invalid_field(cmd, 1, 4);
		return SCSI_DONE;
	}
	pthread_mutex_lock(&reg_lock);
	r = result_find(cmd->lu, cmd->nexus, list_id);
	if (r)
		copy = *r;
	pthread_mutex_unlock(&reg_lock);
	if (!r) {
		scsi_invalid_field(cmd, 2, -1);
		return SCSI_DONE;
	}
	if (sa == 0x00) {
		uint64_t count = copy.bytes;
		uint8_t units = 0;		/* bytes, or KiB past 4 GiB */

		if (count > 0xffffffffull) {
			count >>= 10;
			units = 1;
		}
		put_be32(d, 8);
		d[4] = copy.cm_status;
		put_be16(d + 5, copy.segs);
		d[7] = units;
		put_be32(d + 8, (uint32_t)count);
		data_in(cmd, d, 12, alloc);
		return SCSI_DONE;
	}
	/* FAILED SEGMENT DETAILS of a copy that ended */
	if (copy.running) {
		put_be32(d, 0);
		data_in(cmd, d, 60, alloc);
		return SCSI_DONE;
	}
	put_be32(d, 56 + copy.sense_len);
	d[56] = copy.status;
	put_be16(d + 58, copy.sense_len);
	memcpy(d + 60, copy.sense, copy.sense_len);
	data_in(cmd, d, 60 + copy.sense_len, alloc);
	return SCSI_DONE;
}
