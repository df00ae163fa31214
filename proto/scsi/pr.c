/* SPDX-License-Identifier: MIT */
/*
 * SCSI-3 persistent reservations (SPC-4 5.13): PERSISTENT RESERVE IN and
 * OUT, the access check every command goes through, and the coexistence
 * with SPC-2 RESERVE/RELEASE. See include/sand/scsi_pr.h for the model
 * (I_T nexus identities, the lock, APTPL).
 *
 * Everything below that touches struct scsi_pr runs with pr->lock held;
 * the helpers named pr_* assume it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include "sand/log.h"
#include "sand/scsi.h"

#define PR_FILE_MAGIC	"sand-pr 1"

static scsi_pr_abort_fn abort_hook;

/* A PREEMPT AND ABORT waiting for the tasks it aborted: it completes on its
 * own loop when the last reference goes. */
struct scsi_pr_wait {
	int		refs;		/* atomic */
	struct scsi_cmd	*cmd;
	struct ev_loop	*loop;
};

void scsi_pr_wait_get(struct scsi_pr_wait *w)
{
	__atomic_add_fetch(&w->refs, 1, __ATOMIC_ACQ_REL);
}

static void pr_wait_done(void *arg)
{
	struct scsi_pr_wait *w = arg;
	struct scsi_cmd *cmd = w->cmd;

	free(w);
	cmd->done(cmd);
}

void scsi_pr_wait_put(struct scsi_pr_wait *w)
{
	if (__atomic_sub_fetch(&w->refs, 1, __ATOMIC_ACQ_REL))
		return;
	/* the last one: finish the command on its loop (never inline: this
	 * may be another reactor, or the transport's own code) */
	while (ev_send_msg(w->loop, pr_wait_done, w)) {
		struct timespec ts = { 0, 1000 * 1000 };

		LOG_RATELIMIT(LOG_WARN, LS_SCSI, "preempt and abort: cannot post its completion, again");
		nanosleep(&ts, NULL);
	}
}

void scsi_pr_set_abort_hook(scsi_pr_abort_fn fn)
{
	abort_hook = fn;
}

void scsi_pr_init(struct scsi_pr *pr)
{
	memset(pr, 0, sizeof(*pr));
	pthread_mutex_init(&pr->lock, NULL);
	pr->holder = -1;
}

const char *scsi_pr_type_name(uint8_t type)
{
	switch (type) {
	case PR_TYPE_WE: return "WE";
	case PR_TYPE_EA: return "EA";
	case PR_TYPE_WE_RO: return "WE-RO";
	case PR_TYPE_EA_RO: return "EA-RO";
	case PR_TYPE_WE_AR: return "WE-AR";
	case PR_TYPE_EA_AR: return "EA-AR";
	}
	return NULL;
}

static bool type_all_reg(uint8_t t) { return t == PR_TYPE_WE_AR || t == PR_TYPE_EA_AR; }
static bool type_reg_only(uint8_t t) { return t == PR_TYPE_WE_RO || t == PR_TYPE_EA_RO; }
static bool type_we(uint8_t t) { return t == PR_TYPE_WE || t == PR_TYPE_WE_RO || t == PR_TYPE_WE_AR; }

static void nexus_of(const struct scsi_cmd *cmd, struct pr_nexus *n)
{
	memset(n, 0, sizeof(*n));
	snprintf(n->iport, sizeof(n->iport), "%s", cmd->iport ? cmd->iport : "");
	n->rtpi = cmd->tpg;
}

/* Length of the initiator name in an initiator port name ("NAME,i,0xISID") */
static size_t name_len(const char *iport)
{
	const char *s = strstr(iport, ",i,0x");

	if (!s)
		s = strstr(iport, ",I,0X");
	return s ? (size_t)(s - iport) : strlen(iport);
}

/*
 * Does identity r (a registration or a unit attention) stand for the I_T
 * nexus n? The same initiator port (or r names the initiator without an
 * ISID: a TransportID of format 00) and the same target port (or r holds
 * for every target port).
 */
bool scsi_pr_nexus_match(const struct pr_nexus *r, const struct pr_nexus *n)
{
	size_t rl = strlen(r->iport);

	if (strcasecmp(r->iport, n->iport)) {
		if (rl != name_len(r->iport) || rl != name_len(n->iport) ||
		    strncasecmp(r->iport, n->iport, rl))
			return false;
	}
	return r->all_tg_pt || n->all_tg_pt || r->rtpi == n->rtpi;
}

static int pr_find(struct scsi_pr *pr, const struct pr_nexus *n)
{
	for (unsigned i = 0; i < pr->nregs; i++)
		if (scsi_pr_nexus_match(&pr->regs[i].n, n))
			return (int)i;
	return -1;
}

static bool pr_is_holder(struct scsi_pr *pr, int idx)
{
	if (!pr->reserved || idx < 0)
		return false;
	return type_all_reg(pr->type) || pr->holder == idx;
}

static void pr_update_active(struct scsi_pr *pr)
{
	__atomic_store_n(&pr->active, pr->nregs || pr->nuas, __ATOMIC_RELEASE);
}

static void pr_ua_add(struct scsi_pr *pr, const struct pr_nexus *n, uint16_t asc)
{
	if (pr->nuas == PR_MAX_UAS) {	/* the oldest goes */
		memmove(&pr->uas[0], &pr->uas[1], (PR_MAX_UAS - 1) * sizeof(pr->uas[0]));
		pr->nuas--;
	}
	pr->uas[pr->nuas].n = *n;
	pr->uas[pr->nuas].asc = asc;
	pr->nuas++;
}

/* A unit attention for every registered I_T nexus but reg `except`. */
static void pr_ua_regs(struct scsi_pr *pr, int except, uint16_t asc)
{
	for (unsigned i = 0; i < pr->nregs; i++)
		if ((int)i != except)
			pr_ua_add(pr, &pr->regs[i].n, asc);
}

/* Forget registration idx. The reservation goes with its holder (and an
 * all-registrants reservation with the last registration). */
static void pr_reg_remove(struct scsi_pr *pr, int idx)
{
	bool holder = pr->reserved && !type_all_reg(pr->type) && pr->holder == idx;

	memmove(&pr->regs[idx], &pr->regs[idx + 1],
		(pr->nregs - (unsigned)idx - 1) * sizeof(pr->regs[0]));
	pr->nregs--;
	if (pr->holder > idx)
		pr->holder--;
	if (holder || (pr->reserved && !pr->nregs)) {
		pr->reserved = false;
		pr->holder = -1;
		pr->type = 0;
	}
}

/* ------------------------------------------------------------ access */

enum { CLS_ALLOW, CLS_READ, CLS_WRITE };

/* How a command meets a reservation (SPC-4 table 66, SBC-3 table 13):
 * allowed always, conflicting under exclusive access (it reads the
 * medium), or conflicting under both (it writes, or changes the LU). */
static int op_class(const uint8_t *cdb)
{
	switch (cdb[0]) {
	case 0x00:	/* TEST UNIT READY */
	case 0x03:	/* REQUEST SENSE */
	case 0x12:	/* INQUIRY */
	case 0x16: case 0x17: case 0x56: case 0x57:	/* RESERVE/RELEASE: scsi_pr_legacy */
	case 0x25:	/* READ CAPACITY(10) */
	case 0x4d:	/* LOG SENSE */
	case 0x5e:	/* PERSISTENT RESERVE IN */
	case 0x5f:	/* PERSISTENT RESERVE OUT: each service action checks */
	case 0xa0:	/* REPORT LUNS */
	case 0xa3:	/* MAINTENANCE IN: REPORT SUPPORTED OPCODES, TARGET PORT GROUPS */
		return CLS_ALLOW;
	case 0x9e:
		return (cdb[1] & 0x1f) == 0x10 ? CLS_ALLOW : CLS_READ;	/* READ CAPACITY(16) */
	case 0x08: case 0x28: case 0xa8: case 0x88:	/* READ */
	case 0x2f: case 0xaf: case 0x8f:		/* VERIFY */
	case 0x34: case 0x90:				/* PRE-FETCH */
	case 0x1a: case 0x5a:				/* MODE SENSE */
	case 0x37: case 0xb7:				/* READ DEFECT DATA */
		return CLS_READ;
	}
	return CLS_WRITE;
}

static bool pr_conflicts(struct scsi_pr *pr, const struct scsi_cmd *cmd, const struct pr_nexus *n)
{
	int cls = op_class(cmd->cdb), idx;

	if (!pr->reserved || cls == CLS_ALLOW)
		return false;
	idx = pr_find(pr, n);
	if (pr_is_holder(pr, idx))
		return false;
	if (idx >= 0 && (type_reg_only(pr->type) || type_all_reg(pr->type)))
		return false;
	if (cls == CLS_READ && type_we(pr->type))
		return false;
	return true;
}

bool scsi_pr_check(struct scsi_cmd *cmd)
{
	struct scsi_pr *pr = &cmd->lu->pr;
	struct pr_nexus n;
	uint8_t op = cmd->cdb[0];
	bool done = false;

	if (!__atomic_load_n(&pr->active, __ATOMIC_ACQUIRE))
		return false;
	nexus_of(cmd, &n);
	pthread_mutex_lock(&pr->lock);
	if (pr->nuas && op != 0x12 && op != 0xa0 && op != 0x03) {
		for (unsigned i = 0; i < pr->nuas; i++) {
			if (!scsi_pr_nexus_match(&pr->uas[i].n, &n))
				continue;
			scsi_sense(cmd, SK_UNIT_ATTENTION, pr->uas[i].asc);
			memmove(&pr->uas[i], &pr->uas[i + 1],
				(pr->nuas - i - 1) * sizeof(pr->uas[0]));
			pr->nuas--;
			pr_update_active(pr);
			done = true;
			break;
		}
	}
	if (!done && pr_conflicts(pr, cmd, &n)) {
		cmd->status = SCSI_STATUS_RESERVATION_CONFLICT;
		done = true;
	}
	pthread_mutex_unlock(&pr->lock);
	return done;
}

bool scsi_pr_legacy(struct scsi_cmd *cmd)
{
	struct scsi_pr *pr = &cmd->lu->pr;
	struct pr_nexus n;
	bool done = true;
	int idx;

	if (!__atomic_load_n(&pr->active, __ATOMIC_ACQUIRE))
		return false;
	nexus_of(cmd, &n);
	pthread_mutex_lock(&pr->lock);
	idx = pr_find(pr, &n);
	if (idx >= 0 && pr->reserved &&
	    (pr_is_holder(pr, idx) || type_reg_only(pr->type) || type_all_reg(pr->type)))
		;	/* GOOD, and nothing changes */
	else if (pr->nregs)
		cmd->status = SCSI_STATUS_RESERVATION_CONFLICT;
	else
		done = false;
	pthread_mutex_unlock(&pr->lock);
	return done;
}

/* ------------------------------------------------------------ APTPL file */

static int fsync_dir_of(const char *path)
{
	char dir[PR_FILE_MAX];
	char *slash;
	int fd, rc = 0;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = 0;
	else if (slash)
		*slash = 0;
	else
		snprintf(dir, sizeof(dir), ".");
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		rc = -errno;
	close(fd);
	return rc;
}

/* Write the state (or remove the file when APTPL is off), atomically. */
static int pr_save(struct scsi_pr *pr)
{
	char tmp[PR_FILE_MAX + 8], *buf;
	size_t cap = 128 + PR_MAX_REGS * (PR_IPORT_MAX + 64), len = 0, off;
	int fd, rc = 0;

	if (!pr->aptpl) {
		if (unlink(pr->file) && errno != ENOENT)
			return -errno;
		return fsync_dir_of(pr->file);
	}
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	len += (size_t)snprintf(buf + len, cap - len, "%s\ngeneration %u\n", PR_FILE_MAGIC,
				pr->generation);
	if (pr->reserved)
		len += (size_t)snprintf(buf + len, cap - len, "reservation %u %d\n", pr->type,
					pr->holder);
	for (unsigned i = 0; i < pr->nregs; i++)
		len += (size_t)snprintf(buf + len, cap - len, "reg %016llx %u %d %s\n",
					(unsigned long long)pr->regs[i].key, pr->regs[i].n.rtpi,
					pr->regs[i].n.all_tg_pt, pr->regs[i].n.iport);
	snprintf(tmp, sizeof(tmp), "%s.tmp", pr->file);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out_buf;
	}
	for (off = 0; off < len;) {
		ssize_t n = write(fd, buf + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			goto out_fd;
		}
		off += (size_t)n;
	}
	if (fsync(fd)) {
		rc = -errno;
		goto out_fd;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, pr->file)) {
		rc = -errno;
		goto out_tmp;
	}
	rc = fsync_dir_of(pr->file);
	goto out_buf;
out_fd:
	close(fd);
out_tmp:
	unlink(tmp);
out_buf:
	free(buf);
	return rc;
}

static int pr_load(struct scsi_pr *pr, FILE *f)
{
	char line[PR_IPORT_MAX + 128];
	bool magic = false;
	unsigned type = 0;
	int holder = -1;
	bool reserved = false;

	while (fgets(line, sizeof(line), f)) {
		unsigned long long key;
		unsigned rtpi, gen;
		int all;
		char iport[PR_IPORT_MAX];

		line[strcspn(line, "\n")] = 0;
		if (!magic) {
			if (strcmp(line, PR_FILE_MAGIC))
				return -EINVAL;
			magic = true;
		} else if (sscanf(line, "generation %u", &gen) == 1) {
			pr->generation = gen;
		} else if (sscanf(line, "reservation %u %d", &type, &holder) == 2) {
			reserved = true;
		} else if (sscanf(line, "reg %llx %u %d %247s", &key, &rtpi, &all, iport) == 4) {
			struct pr_reg *r;

			if (pr->nregs == PR_MAX_REGS || !key || rtpi > 0xffff)
				return -EINVAL;
			r = &pr->regs[pr->nregs++];
			memset(r, 0, sizeof(*r));
			r->key = key;
			r->n.rtpi = (uint16_t)rtpi;
			r->n.all_tg_pt = all;
			snprintf(r->n.iport, sizeof(r->n.iport), "%s", iport);
		} else if (line[0]) {
			return -EINVAL;
		}
	}
	if (!magic)
		return -EINVAL;
	if (reserved) {
		if (!scsi_pr_type_name((uint8_t)type) || !pr->nregs ||
		    (type_all_reg((uint8_t)type) ? holder != -1 : holder < 0 ||
		     holder >= (int)pr->nregs))
			return -EINVAL;
		pr->reserved = true;
		pr->type = (uint8_t)type;
		pr->holder = holder;
	}
	pr->aptpl = true;
	return 0;
}

int scsi_pr_set_file(struct scsi_lu *lu, const char *path)
{
	struct scsi_pr *pr = &lu->pr;
	FILE *f;
	int rc = 0;

	if (strlen(path) >= sizeof(pr->file) - 8)
		return -ENAMETOOLONG;
	pthread_mutex_lock(&pr->lock);
	snprintf(pr->file, sizeof(pr->file), "%s", path);
	f = fopen(path, "re");
	if (!f) {
		if (errno != ENOENT)
			rc = -errno;
	} else {
		struct scsi_pr *tmp = calloc(1, sizeof(*tmp));

		if (!tmp) {
			rc = -ENOMEM;
		} else {
			tmp->holder = -1;
			rc = pr_load(tmp, f);
			if (!rc) {
				pr->generation = tmp->generation;
				pr->nregs = tmp->nregs;
				memcpy(pr->regs, tmp->regs, sizeof(pr->regs));
				pr->reserved = tmp->reserved;
				pr->type = tmp->type;
				pr->holder = tmp->holder;
				pr->aptpl = true;
			}
			free(tmp);
		}
		fclose(f);
	}
	if (rc)
		pr->file[0] = 0;
	pr_update_active(pr);
	pthread_mutex_unlock(&pr->lock);
	if (rc)
		LOG_ERR(LS_SCSI, "%s: persistent reservations not restored: %s", path, strerror(-rc));
	else if (f)
		LOG_INFO(LS_SCSI, "%s: %u registration(s)%s restored", path, pr->nregs,
			 pr->reserved ? " and a reservation" : "");
	return rc;
}

/* ------------------------------------------------------------ IN */

static void pr_data_in(struct scsi_cmd *cmd, const uint8_t *d, uint32_t len, uint32_t alloc)
{
	uint32_t n = MIN(len, alloc);

	cmd->xfer_len = n;
	cmd->data_in = true;
	if (cmd->buf)
		memcpy(cmd->buf, d, MIN(n, cmd->buf_len));
}

/* iSCSI TransportID (SPC-4 7.6.4.6) of an initiator port, padded to 4. */
static uint32_t transport_id(const struct pr_nexus *n, uint8_t *p)
{
	uint32_t nl = (uint32_t)strlen(n->iport) + 1;
	uint32_t pl = MAX((nl + 3) & ~3u, 20u);

	memset(p, 0, 4 + pl);
	p[0] = (name_len(n->iport) == strlen(n->iport) ? 0x00 : 0x40) | 0x05;
	put_be16(p + 2, (uint16_t)pl);
	memcpy(p + 4, n->iport, nl);
	return 4 + pl;
}

int scsi_pr_in(struct scsi_cmd *cmd)
{
	struct scsi_pr *pr = &cmd->lu->pr;
	uint8_t sa = cmd->cdb[1] & 0x1f;
	uint32_t alloc = get_be16(cmd->cdb + 7), len = 8;
	uint8_t *d;

	if (sa > PRI_READ_FULL_STATUS) {
		scsi_invalid_field(cmd, 1, 4);
		return SCSI_DONE;
	}
	d = calloc(1, 8 + PR_MAX_REGS * (24 + 4 + PR_IPORT_MAX + 4));
	if (!d) {
		scsi_errno_sense(cmd, -ENOMEM);
		return SCSI_DONE;
	}
	pthread_mutex_lock(&pr->lock);
	put_be32(d, pr->generation);
	switch (sa) {
	case PRI_READ_KEYS:
		for (unsigned i = 0; i < pr->nregs; i++, len += 8)
			put_be64(d + len, pr->regs[i].key);
		put_be32(d + 4, len - 8);
		break;
	case PRI_READ_RESERVATION:
		if (pr->reserved) {
			if (!type_all_reg(pr->type))
				put_be64(d + 8, pr->regs[pr->holder].key);
			d[21] = pr->type;	/* scope 0: LU */
			len += 16;
		}
		put_be32(d + 4, len - 8);
		break;
	case PRI_REPORT_CAPABILITIES:
		memset(d, 0, 8);
		put_be16(d, 8);
		/* CRH, SIP_C, ATP_C, PTPL_C (with a state file) */
		d[2] = 0x10 | 0x08 | 0x04 | (pr->file[0] ? 0x01 : 0);
		/* TMV, ALLOW COMMANDS 001b (TEST UNIT READY allowed), PTPL_A */
		d[3] = 0x80 | 0x10 | (pr->aptpl ? 0x01 : 0);
		d[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;	/* WR_EX_AR EX_AC_RO WR_EX_RO EX_AC WR_EX */
		d[5] = 0x01;					/* EX_AC_AR */
		break;
	case PRI_READ_FULL_STATUS:
		for (unsigned i = 0; i < pr->nregs; i++) {
			uint8_t *p = d + len;
			uint32_t tl;

			put_be64(p, pr->regs[i].key);
			p[12] = (pr->regs[i].n.all_tg_pt ? 0x02 : 0) |
				(pr_is_holder(pr, (int)i) ? 0x01 : 0);
			if (pr_is_holder(pr, (int)i))
				p[13] = pr->type;
			put_be16(p + 18, pr->regs[i].n.all_tg_pt ? 0 : pr->regs[i].n.rtpi);
			tl = transport_id(&pr->regs[i].n, p + 24);
			put_be32(p + 20, tl);
			len += 24 + tl;
		}
		put_be32(d + 4, len - 8);
		break;
	}
	pthread_mutex_unlock(&pr->lock);
	pr_data_in(cmd, d, len, alloc);
	free(d);
	return SCSI_DONE;
}

/* ------------------------------------------------------------ OUT */

struct prout {
	uint8_t		sa, type;
	uint64_t	key, sakey;
	bool		all_tg_pt, aptpl, unreg;
	struct pr_nexus	n;		/* the I_T nexus the command came through */
	struct pr_nexus	dest;		/* REGISTER AND MOVE */
	struct pr_nexus	*aborted;	/* PREEMPT AND ABORT: nexuses to abort */
	unsigned	naborted;
	struct pr_nexus	*spec;		/* REGISTER with SPEC_I_PT: ports named */
	unsigned	nspec;
};

static void invalid_param(struct scsi_cmd *cmd)
{
	scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
}

static void conflict(struct scsi_cmd *cmd)
{
	cmd->status = SCSI_STATUS_RESERVATION_CONFLICT;
}

/* REGISTER, REGISTER AND IGNORE EXISTING KEY. Returns true on a change. */
static bool pro_register(struct scsi_pr *pr, struct scsi_cmd *cmd, struct prout *o)
{
	int idx = pr_find(pr, &o->n);

	if (idx < 0) {
		if (o->sa == PRO_REGISTER && o->key) {
			conflict(cmd);
			return false;
		}
		if (!o->sakey) {
			if (o->spec)
				invalid_param(cmd);
			return false;
		}
		/* SPEC_I_PT: none of the ports named may be registered, or
		 * named twice, or be ours; all or nothing */
		for (unsigned i = 0; i < o->nspec; i++) {
			bool bad = pr_find(pr, &o->spec[i]) >= 0 ||
				   scsi_pr_nexus_match(&o->spec[i], &o->n);

			for (unsigned j = 0; j < i && !bad; j++)
				bad = scsi_pr_nexus_match(&o->spec[j], &o->spec[i]);
			if (bad) {
				invalid_param(cmd);
				return false;
			}
		}
		if (pr->nregs + 1 + o->nspec > PR_MAX_REGS) {
			scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INSUFFICIENT_REG_RESOURCES);
			return false;
		}
		pr->regs[pr->nregs].n = o->n;
		pr->regs[pr->nregs].n.all_tg_pt = o->all_tg_pt;
		pr->regs[pr->nregs].key = o->sakey;
		pr->nregs++;
		for (unsigned i = 0; i < o->nspec; i++) {
			pr->regs[pr->nregs].n = o->spec[i];
			pr->regs[pr->nregs].key = o->sakey;
			pr->nregs++;
		}
	} else {
		if (o->spec) {
			invalid_param(cmd);	/* SPEC_I_PT from a registered nexus */
			return false;
		}
		if (o->sa == PRO_REGISTER && o->key != pr->regs[idx].key) {
			conflict(cmd);
			return false;
		}
		if (o->sakey) {
			pr->regs[idx].key = o->sakey;
		} else {
			/* unregistering the holder of a registrants-only
			 * reservation releases it, and says so */
			if (pr->reserved && pr->holder == idx && type_reg_only(pr->type))
				pr_ua_regs(pr, idx, ASC_RESERVATIONS_RELEASED);
			pr_reg_remove(pr, idx);
		}
	}
	pr->generation++;
	pr->aptpl = o->aptpl;
	return true;
}

static bool pro_reserve(struct scsi_pr *pr, struct scsi_cmd *cmd, struct prout *o, int idx)
{
	if (pr->reserved) {
		if (!pr_is_holder(pr, idx) || pr->type != o->type)
			conflict(cmd);
		return false;
	}
	pr->reserved = true;
	pr->type = o->type;
	pr->holder = type_all_reg(o->type) ? -1 : idx;
	return true;
}

static bool pro_release(struct scsi_pr *pr, struct scsi_cmd *cmd, struct prout *o, int idx)
{
	uint8_t type = pr->type;

	if (!pr_is_holder(pr, idx))
		return false;		/* nothing of ours to release: GOOD */
	if (type != o->type) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_RELEASE_OF_PR);
		return false;
	}
	pr->reserved = false;
	pr->holder = -1;
	pr->type = 0;
	if (type_reg_only(type) || type_all_reg(type))
		pr_ua_regs(pr, idx, ASC_RESERVATIONS_RELEASED);
	return true;
}

static bool pro_clear(struct scsi_pr *pr, struct prout *o, int idx)
{
	pr_ua_regs(pr, idx, ASC_RESERVATIONS_PREEMPTED);
	pr->nregs = 0;
	pr->reserved = false;
	pr->holder = -1;
	pr->type = 0;
	pr->generation++;
	return true;
}

/* Remove every registration with key (all but ours when all_but_self
 * with key 0), with a REGISTRATIONS PREEMPTED unit attention; how many. */
static unsigned pr_preempt_regs(struct scsi_pr *pr, struct prout *o, bool everyone)
{
	unsigned removed = 0;

	for (unsigned i = 0; i < pr->nregs;) {
		struct pr_reg *r = &pr->regs[i];

		if (scsi_pr_nexus_match(&r->n, &o->n) || (!everyone && r->key != o->sakey)) {
			i++;
			continue;
		}
		pr_ua_add(pr, &r->n, ASC_REGISTRATIONS_PREEMPTED);
		if (o->aborted)
			o->aborted[o->naborted++] = r->n;
		pr_reg_remove(pr, (int)i);
		removed++;
	}
	return removed;
}

static bool pro_preempt(struct scsi_pr *pr, struct scsi_cmd *cmd, struct prout *o, int idx)
{
	bool all_reg = pr->reserved && type_all_reg(pr->type);
	uint8_t old = pr->type;

	if (!pr->reserved || (all_reg && o->sakey) ||
	    (!all_reg && pr->regs[pr->holder].key != o->sakey)) {
		/* registrations only; the reservation (if any) stays */
		if (!o->sakey) {
			invalid_param(cmd);
			return false;
		}
		if (!pr_preempt_regs(pr, o, false)) {
			conflict(cmd);
			return false;
		}
		pr->generation++;
		return true;
	}
	/* the reservation: its holder(s) lose their registrations, and ours
	 * takes the reservation, of the type asked for */
	pr_preempt_regs(pr, o, all_reg);
	idx = pr_find(pr, &o->n);
	pr->reserved = true;
	pr->type = o->type;
	pr->holder = type_all_reg(o->type) ? -1 : idx;
	if (old != o->type)
		pr_ua_regs(pr, idx, ASC_RESERVATIONS_RELEASED);
	pr->generation++;
	return true;
}

static bool pro_move(struct scsi_pr *pr, struct scsi_cmd *cmd, struct prout *o, int idx)
{
	int d;

	if (!pr_is_holder(pr, idx) || type_all_reg(pr->type)) {
		conflict(cmd);
		return false;
	}
	if (!o->sakey || scsi_pr_nexus_match(&o->dest, &o->n)) {
		invalid_param(cmd);
		return false;
	}
	d = pr_find(pr, &o->dest);
	if (d < 0) {
		if (pr->nregs == PR_MAX_REGS) {
			scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INSUFFICIENT_REG_RESOURCES);
			return false;
		}
		d = (int)pr->nregs++;
		pr->regs[d].n = o->dest;
		pr->regs[d].key = o->sakey;
	}
	pr->holder = d;
	if (o->unreg)
		pr_reg_remove(pr, idx);
	pr->aptpl = o->aptpl;
	pr->generation++;
	return true;
}

/* One iSCSI TransportID (format 00: a name; 01: NAME,i,0xISID) of at most
 * avail bytes into n->iport: its length, or 0 when it is not one. */
static uint32_t parse_tid(const uint8_t *tid, uint32_t avail, struct pr_nexus *n)
{
	uint32_t nl;
	const char *name = (const char *)tid + 4;

	if (avail < 24)
		return 0;
	nl = get_be16(tid + 2);
	if ((tid[0] & 0x0f) != 0x05 || (tid[0] >> 6) > 1 || nl < 20 || nl % 4 ||
	    nl > avail - 4 || !memchr(name, 0, nl) || !name[0] || strlen(name) >= PR_IPORT_MAX ||
	    ((tid[0] >> 6) == 1) == (name_len(name) == strlen(name)))
		return 0;
	snprintf(n->iport, sizeof(n->iport), "%s", name);
	return 4 + nl;
}

/* Parameter list of REGISTER AND MOVE: the destination I_T nexus. */
static int parse_move(struct scsi_cmd *cmd, struct prout *o, uint32_t plen)
{
	const uint8_t *p = cmd->buf;
	uint32_t tlen = get_be32(p + 20);

	o->unreg = p[17] & 0x02;
	o->aptpl = p[17] & 0x01;
	o->dest.rtpi = get_be16(p + 18);
	if (tlen > plen - 24 || tlen < 24) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
		return -1;
	}
	if (!parse_tid(p + 24, tlen, &o->dest)) {
		invalid_param(cmd);
		return -1;
	}
	return 0;
}

/* REGISTER with SPEC_I_PT: the other initiator ports to register too, on
 * the same target port (or all of them, with ALL_TG_PT). */
static int parse_spec(struct scsi_cmd *cmd, struct prout *o, uint32_t plen)
{
	const uint8_t *p = cmd->buf;
	uint32_t tlen, off, n;

	if (plen < 28 || (tlen = get_be32(p + 24)) > plen - 28) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
		return -1;
	}
	o->spec = calloc(PR_MAX_REGS, sizeof(*o->spec));
	if (!o->spec) {
		scsi_errno_sense(cmd, -ENOMEM);
		return -1;
	}
	for (off = 0; off < tlen; off += n) {
		struct pr_nexus *d;

		if (o->nspec == PR_MAX_REGS) {
			scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INSUFFICIENT_REG_RESOURCES);
			return -1;
		}
		d = &o->spec[o->nspec];
		d->rtpi = o->n.rtpi;
		d->all_tg_pt = o->all_tg_pt;
		n = parse_tid(p + 28 + off, tlen - off, d);
		if (!n) {
			invalid_param(cmd);
			return -1;
		}
		o->nspec++;
	}
	return 0;
}

int scsi_pr_out(struct scsi_cmd *cmd)
{
	struct scsi_pr *pr = &cmd->lu->pr;
	struct scsi_pr *saved = NULL;
	const uint8_t *cdb = cmd->cdb;
	uint32_t plen = get_be32(cdb + 5);
	struct prout o = { 0 };
	struct scsi_pr_wait *w = NULL;
	bool changed = false, was_aptpl, spec_i_pt = false;
	int idx;

	o.sa = cdb[1] & 0x1f;
	o.type = cdb[2] & 0x0f;
	if (o.sa > PRO_REGISTER_AND_MOVE) {
		scsi_invalid_field(cmd, 1, 4);
		return SCSI_DONE;
	}
	if (o.sa == PRO_RESERVE || o.sa == PRO_RELEASE || o.sa == PRO_PREEMPT ||
	    o.sa == PRO_PREEMPT_AND_ABORT) {
		if (cdb[2] >> 4) {		/* only LU_SCOPE */
			scsi_invalid_field(cmd, 2, 7);
			return SCSI_DONE;
		}
		if (!scsi_pr_type_name(o.type)) {
			scsi_invalid_field(cmd, 2, 3);
			return SCSI_DONE;
		}
	}
	cmd->xfer_len = plen;
	if (plen < 24 || !cmd->buf || cmd->buf_len < plen) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
		return SCSI_DONE;
	}
	o.key = get_be64(cmd->buf);
	o.sakey = get_be64(cmd->buf + 8);
	nexus_of(cmd, &o.n);
	if (o.sa == PRO_REGISTER_AND_MOVE) {
		if (parse_move(cmd, &o, plen))
			return SCSI_DONE;
	} else {
		spec_i_pt = cmd->buf[20] & 0x08;
		o.all_tg_pt = cmd->buf[20] & 0x04;
		o.aptpl = cmd->buf[20] & 0x01;
		if (spec_i_pt && o.sa == PRO_REGISTER_AND_IGNORE) {
			invalid_param(cmd);
			return SCSI_DONE;
		}
		if (spec_i_pt && o.sa == PRO_REGISTER) {
			if (parse_spec(cmd, &o, plen)) {
				free(o.spec);
				return SCSI_DONE;
			}
		} else if (plen != 24) {
			scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
			return SCSI_DONE;
		}
	}
	if (o.aptpl && !pr->file[0] && (o.sa == PRO_REGISTER || o.sa == PRO_REGISTER_AND_IGNORE ||
					o.sa == PRO_REGISTER_AND_MOVE)) {
		invalid_param(cmd);	/* PTPL_C is 0 */
		free(o.spec);
		return SCSI_DONE;
	}
	if (o.sa == PRO_PREEMPT_AND_ABORT) {
		o.aborted = calloc(PR_MAX_REGS, sizeof(*o.aborted));
		if (!o.aborted) {
			scsi_errno_sense(cmd, -ENOMEM);
			return SCSI_DONE;
		}
	}

	pthread_mutex_lock(&pr->lock);
	was_aptpl = pr->aptpl;
	if (pr->file[0]) {
		/* the old state comes back if the new one cannot be saved */
		saved = malloc(sizeof(*saved));
		if (!saved) {
			scsi_errno_sense(cmd, -ENOMEM);
			goto out;
		}
		memcpy(saved, pr, sizeof(*saved));
	}
	idx = pr_find(pr, &o.n);
	if (o.sa == PRO_REGISTER || o.sa == PRO_REGISTER_AND_IGNORE) {
		changed = pro_register(pr, cmd, &o);
	} else if (idx < 0 || o.key != pr->regs[idx].key) {
		conflict(cmd);	/* every other action needs our registration */
	} else {
		switch (o.sa) {
		case PRO_RESERVE:
			changed = pro_reserve(pr, cmd, &o, idx);
			break;
		case PRO_RELEASE:
			changed = pro_release(pr, cmd, &o, idx);
			break;
		case PRO_CLEAR:
			changed = pro_clear(pr, &o, idx);
			break;
		case PRO_PREEMPT:
		case PRO_PREEMPT_AND_ABORT:
			changed = pro_preempt(pr, cmd, &o, idx);
			break;
		case PRO_REGISTER_AND_MOVE:
			changed = pro_move(pr, cmd, &o, idx);
			break;
		}
	}
	if (changed && pr->file[0] && (pr->aptpl || was_aptpl)) {
		int rc = pr_save(pr);

		if (rc) {
			LOG_ERR(LS_SCSI, "%s: saving persistent reservations: %s", pr->file,
				strerror(-rc));
			memcpy((char *)pr + offsetof(struct scsi_pr, active),
			       (char *)saved + offsetof(struct scsi_pr, active),
			       offsetof(struct scsi_pr, file) - offsetof(struct scsi_pr, active));
			o.naborted = 0;
			scsi_sense(cmd, SK_HARDWARE_ERROR, ASC_INTERNAL_TARGET_FAILURE);
		}
	}
	if (o.naborted && abort_hook && cmd->ch) {
		/* the command ends after the aborted tasks (one reference ours) */
		w = malloc(sizeof(*w));
		if (w) {
			w->refs = 1;
			w->cmd = cmd;
			w->loop = cmd->ch->loop;
			for (unsigned i = 0; i < o.naborted; i++)
				abort_hook(cmd->lu, &o.aborted[i], w);
		} else {
			LOG_RATELIMIT(LOG_ERROR, LS_SCSI, "preempt and abort: out of memory, "
				      "the preempted tasks are not aborted");
		}
	}
	pr_update_active(pr);
out:
	pthread_mutex_unlock(&pr->lock);
	free(saved);
	free(o.aborted);
	free(o.spec);
	if (w) {
		/* our reference: the last one means nothing to wait for; else
		 * the last put posts the completion to this loop, which cannot
		 * run it before we return */
		if (__atomic_sub_fetch(&w->refs, 1, __ATOMIC_ACQ_REL) == 0) {
			free(w);
			return SCSI_DONE;
		}
		return SCSI_PENDING;
	}
	return SCSI_DONE;
}

void scsi_pr_snapshot(struct scsi_lu *lu, struct pr_snapshot *s)
{
	struct scsi_pr *pr = &lu->pr;

	pthread_mutex_lock(&pr->lock);
	s->generation = pr->generation;
	s->nregs = pr->nregs;
	memcpy(s->regs, pr->regs, pr->nregs * sizeof(pr->regs[0]));
	s->holder = pr->reserved ? pr->holder : -1;
	s->reserved = pr->reserved;
	s->type = pr->type;
	s->aptpl = pr->aptpl;
	pthread_mutex_unlock(&pr->lock);
}
