/* SPDX-License-Identifier: MIT */
/*
 * ALUA (SPC-4 5.15): target port groups, their access states, REPORT and
 * SET TARGET PORT GROUPS, and what a command may do through a group.
 *
 * The groups are the daemon's, not a LU's: every LU is seen through every
 * group in the same state, so a group's state is one byte indexed by its
 * id, read by the reactors without a lock. Changes (from the control
 * thread or from SET TARGET PORT GROUPS on a reactor) take alua_lock and
 * advance alua_gen; each I_T_L nexus keeps the generation it has seen
 * (cmd->alua_seen) and gets ASYMMETRIC ACCESS STATE CHANGED once when it
 * is behind.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "sand/alua.h"
#include "sand/log.h"

/* group id -> state + 1 (0: no such group); why: RTPG status code */
static uint8_t grp_state[65536];
static uint8_t grp_why[65536];
static unsigned ngroups;
static unsigned alua_gen;
static pthread_mutex_t alua_lock = PTHREAD_MUTEX_INITIALIZER;

enum { WHY_NONE = 0, WHY_STPG = 1, WHY_IMPLICIT = 2 };

static const char *const names[] = {
	[SCSI_ALUA_OPTIMIZED] = "active-optimized",
	[SCSI_ALUA_NONOPTIMIZED] = "active-nonoptimized",
	[SCSI_ALUA_STANDBY] = "standby",
	[SCSI_ALUA_UNAVAILABLE] = "unavailable",
};

const char *scsi_alua_state_name(enum scsi_alua_state s)
{
	if (s == SCSI_ALUA_TRANSITIONING)
		return "transitioning";
	return (unsigned)s < ARRAY_SIZE(names) ? names[s] : "?";
}

int scsi_alua_state_parse(const char *name)
{
	for (unsigned i = 0; i < ARRAY_SIZE(names); i++)
		if (name && !strcmp(name, names[i]))
			return (int)i;
	return -EINVAL;
}

static bool settable(int s)
{
	return s >= SCSI_ALUA_OPTIMIZED && s <= SCSI_ALUA_UNAVAILABLE;
}

int scsi_alua_group_add(uint16_t id, enum scsi_alua_state s)
{
	int rc = 0;

	if (!id || !settable(s))
		return -EINVAL;
	pthread_mutex_lock(&alua_lock);
	if (!grp_state[id]) {
		if (ngroups >= SCSI_ALUA_MAX_GROUPS) {
			rc = -ENOSPC;
		} else {
			ngroups++;
			grp_why[id] = WHY_NONE;
			__atomic_store_n(&grp_state[id], (uint8_t)(s + 1), __ATOMIC_RELEASE);
		}
	}
	pthread_mutex_unlock(&alua_lock);
	return rc;
}

int scsi_alua_group_remove(uint16_t id)
{
	int rc = -ENOENT;

	pthread_mutex_lock(&alua_lock);
	if (id && grp_state[id]) {
		__atomic_store_n(&grp_state[id], 0, __ATOMIC_RELEASE);
		ngroups--;
		rc = 0;
	}
	pthread_mutex_unlock(&alua_lock);
	return rc;
}

/* alua_lock held */
static void set_locked(uint16_t id, enum scsi_alua_state s, uint8_t why)
{
	if (grp_state[id] == s + 1)
		return;
	grp_why[id] = why;
	__atomic_store_n(&grp_state[id], (uint8_t)(s + 1), __ATOMIC_RELEASE);
	__atomic_add_fetch(&alua_gen, 1, __ATOMIC_RELEASE);
	LOG_INFO(LS_SCSI, "target port group %u: %s%s", id, scsi_alua_state_name(s),
		 why == WHY_STPG ? " (set target port groups)" : "");
}

int scsi_alua_group_set(uint16_t id, enum scsi_alua_state s)
{
	int rc = 0;

	if (!settable(s))
		return -EINVAL;
	pthread_mutex_lock(&alua_lock);
	if (!id || !grp_state[id])
		rc = -ENOENT;
	else
		set_locked(id, s, WHY_IMPLICIT);
	pthread_mutex_unlock(&alua_lock);
	return rc;
}

int scsi_alua_group_get(uint16_t id)
{
	uint8_t v = __atomic_load_n(&grp_state[id], __ATOMIC_ACQUIRE);

	return v ? v - 1 : -ENOENT;
}

unsigned scsi_alua_seen_now(void)
{
	return __atomic_load_n(&alua_gen, __ATOMIC_ACQUIRE) + 1;
}

void scsi_alua_reset(void)
{
	pthread_mutex_lock(&alua_lock);
	memset(grp_state, 0, sizeof(grp_state));
	memset(grp_why, 0, sizeof(grp_why));
	ngroups = 0;
	__atomic_add_fetch(&alua_gen, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&alua_lock);
}

/* ------------------------------------------------------------ commands */

uint8_t scsi_alua_tpgs(const struct scsi_cmd *cmd)
{
	return cmd->tpg ? 0x30 : 0;	/* implicit and explicit */
}

uint32_t scsi_alua_vpd83(const struct scsi_cmd *cmd, uint8_t *p)
{
	if (!cmd->tpg)
		return 0;
	/* relative target port: iSCSI, binary, PIV, target port, type 4 */
	memset(p, 0, 16);
	p[0] = 0x51;
	p[1] = 0x94;
	p[3] = 4;
	put_be16(p + 6, cmd->tpg);
	/* target port group: binary, target port, type 5 */
	p[8] = 0x01;
	p[9] = 0x15;
	p[11] = 4;
	put_be16(p + 14, cmd->tpg);
	return 16;
}

/* Commands a standby group still runs (SPC-4 5.15.2.4.4). */
static bool standby_allows(const uint8_t *cdb)
{
	switch (cdb[0]) {
	case 0x03:	/* REQUEST SENSE */
	case 0x12:	/* INQUIRY */
	case 0x15:	/* MODE SELECT(6) */
	case 0x1a:	/* MODE SENSE(6) */
	case 0x1c:	/* RECEIVE DIAGNOSTIC RESULTS */
	case 0x1d:	/* SEND DIAGNOSTIC */
	case 0x4c:	/* LOG SELECT */
	case 0x4d:	/* LOG SENSE */
	case 0x55:	/* MODE SELECT(10) */
	case 0x5a:	/* MODE SENSE(10) */
	case 0x5e:	/* PERSISTENT RESERVE IN */
	case 0x5f:	/* PERSISTENT RESERVE OUT */
	case 0xa0:	/* REPORT LUNS */
	case 0xa3:	/* MAINTENANCE IN: REPORT TARGET PORT GROUPS ... */
		return true;
	case 0xa4:	/* MAINTENANCE OUT: SET TARGET PORT GROUPS */
		return (cdb[1] & 0x1f) == 0x0a;
	}
	return false;
}

/* ... and an unavailable one (5.15.2.4.5). */
static bool unavailable_allows(const uint8_t *cdb)
{
	switch (cdb[0]) {
	case 0x03:	/* REQUEST SENSE */
	case 0x12:	/* INQUIRY */
	case 0xa0:	/* REPORT LUNS */
		return true;
	case 0xa3:	/* REPORT TARGET PORT GROUPS, REPORT SUPPORTED OPERATION CODES */
		return (cdb[1] & 0x1f) == 0x0a || (cdb[1] & 0x1f) == 0x0c;
	case 0xa4:
		return (cdb[1] & 0x1f) == 0x0a;
	}
	return false;
}

bool scsi_alua_check(struct scsi_cmd *cmd)
{
	uint8_t op = cmd->cdb[0];
	int s;

	if (!cmd->tpg || !cmd->lu)
		return false;
	if (cmd->alua_seen) {
		unsigned gen = __atomic_load_n(&alua_gen, __ATOMIC_ACQUIRE) + 1;

		if (!*cmd->alua_seen) {
			*cmd->alua_seen = gen;	/* a new nexus: nothing changed for it */
		} else if (*cmd->alua_seen != gen && op != 0x12 && op != 0xa0 && op != 0x03) {
			*cmd->alua_seen = gen;
			scsi_sense(cmd, SK_UNIT_ATTENTION, ASC_ASYMMETRIC_ACCESS_CHANGED);
			return true;
		}
	}
	s = scsi_alua_group_get(cmd->tpg);
	switch (s) {
	case SCSI_ALUA_STANDBY:
		if (standby_allows(cmd->cdb))
			return false;
		scsi_sense(cmd, SK_NOT_READY, ASC_LU_NOT_ACCESSIBLE_STANDBY);
		return true;
	case SCSI_ALUA_UNAVAILABLE:
		if (unavailable_allows(cmd->cdb))
			return false;
		scsi_sense(cmd, SK_NOT_READY, ASC_LU_NOT_ACCESSIBLE_UNAVAILABLE);
		return true;
	default:	/* active, or a group nobody declared: no restriction */
		return false;
	}
}

static void copy_in(struct scsi_cmd *cmd, const uint8_t *d, uint32_t len, uint32_t alloc)
{
	uint32_t n = MIN(len, alloc);

	cmd->xfer_len = n;
	cmd->data_in = true;
	if (cmd->buf)
		memcpy(cmd->buf, d, MIN(n, cmd->buf_len));
}

int scsi_alua_rtpg(struct scsi_cmd *cmd)
{
	uint8_t fmt = cmd->cdb[1] >> 5;
	uint32_t alloc = get_be32(cmd->cdb + 6), len;
	uint8_t *d, *p;

	if (!cmd->tpg) {
		scsi_invalid_field(cmd, 1, 4);
		return SCSI_DONE;
	}
	if (fmt > 1) {
		scsi_invalid_field(cmd, 1, 7);
		return SCSI_DONE;
	}
	d = calloc(1, 8 + SCSI_ALUA_MAX_GROUPS * 12);
	if (!d) {
		scsi_errno_sense(cmd, -ENOMEM);
		return SCSI_DONE;
	}
	p = d + (fmt ? 8 : 4);
	pthread_mutex_lock(&alua_lock);
	for (unsigned id = 1; id < 65536; id++) {
		if (!grp_state[id])
			continue;
		p[0] = (uint8_t)(grp_state[id] - 1);
		p[1] = 0x0f;			/* U_SUP S_SUP AN_SUP AO_SUP */
		put_be16(p + 2, (uint16_t)id);
		p[5] = grp_why[id];
		p[7] = 1;			/* one port: this target's, tag id */
		put_be16(p + 10, (uint16_t)id);
		p += 12;
	}
	pthread_mutex_unlock(&alua_lock);
	len = (uint32_t)(p - d);
	put_be32(d, len - 4);
	if (fmt) {
		d[4] = 0x10;			/* format type 1 */
		d[5] = 0;			/* implicit transition time: immediate */
	}
	copy_in(cmd, d, len, alloc);
	free(d);
	return SCSI_DONE;
}

static int stpg(struct scsi_cmd *cmd)
{
	uint32_t plen = get_be32(cmd->cdb + 6);
	const uint8_t *d = cmd->buf;

	if (!cmd->tpg) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
		return SCSI_DONE;
	}
	cmd->xfer_len = plen;
	if (!plen)
		return SCSI_DONE;
	if (plen < 4 || (plen - 4) % 4 || plen > cmd->buf_len) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
		return SCSI_DONE;
	}
	pthread_mutex_lock(&alua_lock);
	/* all or nothing: check every descriptor before changing anything */
	for (uint32_t o = 4; o < plen; o += 4) {
		uint16_t id = get_be16(d + o + 2);

		if (!settable(d[o] & 0x0f) || !id || !grp_state[id]) {
			pthread_mutex_unlock(&alua_lock);
			scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST);
			return SCSI_DONE;
		}
	}
	for (uint32_t o = 4; o < plen; o += 4)
		set_locked(get_be16(d + o + 2), d[o] & 0x0f, WHY_STPG);
	/* the nexus that made the change is not told about it */
	if (cmd->alua_seen)
		*cmd->alua_seen = __atomic_load_n(&alua_gen, __ATOMIC_ACQUIRE) + 1;
	pthread_mutex_unlock(&alua_lock);
	return SCSI_DONE;
}

int scsi_alua_maintenance_out(struct scsi_cmd *cmd)
{
	switch (cmd->cdb[1] & 0x1f) {
	case 0x0a:
		return stpg(cmd);
	default:
		scsi_invalid_field(cmd, 1, 4);
		return SCSI_DONE;
	}
}
