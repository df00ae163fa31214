/* SPDX-License-Identifier: MIT */
/*
 * Unit attentions (SAM-5 5.14, SPC-4 5.14) as each I_T nexus sees them.
 * The LU keeps counters of what happened to it (resets, MODE SELECT
 * changes, its size; the target the LUNs it has); the session keeps, per
 * LUN, what it last saw. A command that finds the LU changed since gets
 * one CHECK CONDITION, UNIT ATTENTION for the change and is not run; the
 * next command sees the next change, if any. In order of precedence:
 *
 *   29h/03h BUS DEVICE RESET FUNCTION OCCURRED: a LOGICAL UNIT RESET, or a
 *           TARGET WARM/COLD RESET (a logical unit reset of every LU,
 *           SAM-3 6.6), from any nexus, the issuer's too (SAM-5 6.3.3: every
 *           I_T nexus; libiscsi's MultipathIO.Reset checks every path)
 *   29h/00h POWER ON, RESET, OR BUS DEVICE RESET OCCURRED instead, for an
 *           I_T nexus whose session a TARGET COLD RESET ended, in the
 *           session it logs in again with (tmf.c): two 29h events, the
 *           reset and the I_T nexus loss, in one code (SAM-5 5.14)
 *   2Ah/01h MODE PARAMETERS CHANGED: another nexus's MODE SELECT changed
 *           a shared parameter (SWP, TAS, WCE)
 *   2Ah/09h CAPACITY DATA HAS CHANGED: the volume was resized
 *   3Fh/0Eh REPORTED LUNS DATA HAS CHANGED: LUNs added or removed; REPORT
 *           LUNS clears it without reporting it
 *
 * INQUIRY, REPORT LUNS and REQUEST SENSE never get one (SAM-5 5.14: they
 * neither report nor clear it, but REPORT LUNS clears its own). A new
 * nexus starts with every LU as it is (iscsi_ua_init); so does its first
 * command to a LU added later (which has its REPORTED LUNS DATA HAS
 * CHANGED). ALUA and persistent
 * reservation unit attentions are kept by proto/scsi (alua.c, pr.c).
 * On the session's reactor.
 */
#include "sand/scsi.h"
#include "daemon/iscsi/iscsi_int.h"

static bool ua_exempt(uint8_t op)
{
	return op == 0x12 || op == 0xa0 || op == 0x03;	/* INQUIRY, REPORT LUNS, REQUEST SENSE */
}

/* What each LU is now, for a new session */
void iscsi_ua_init(struct iscsi_session *ss)
{
	for (unsigned i = 0; i < ISCSI_MAX_LUNS; i++) {
		struct iscsi_lun *l = __atomic_load_n(&ss->target->luns[i], __ATOMIC_ACQUIRE);

		if (!l)
			continue;
		ss->ua_seen[i] = __atomic_load_n(&l->lu.reset_gen, __ATOMIC_ACQUIRE) + 1;
		ss->mode_seen[i] = __atomic_load_n(&l->lu.mode_gen, __ATOMIC_ACQUIRE) + 1;
		ss->size_seen[i] = __atomic_load_n(&l->lu.bd->size, __ATOMIC_ACQUIRE);
	}
}

uint16_t iscsi_ua_take(struct iscsi_session *ss, unsigned id, struct scsi_lu *lu, uint8_t op,
		       unsigned luns_gen)
{
	unsigned reset = __atomic_load_n(&lu->reset_gen, __ATOMIC_ACQUIRE) + 1;
	unsigned mode = __atomic_load_n(&lu->mode_gen, __ATOMIC_ACQUIRE) + 1;
	uint64_t size = __atomic_load_n(&lu->bd->size, __ATOMIC_ACQUIRE);
	bool first = !ss->ua_seen[id];

	if (first) {
		ss->ua_seen[id] = reset;
		ss->mode_seen[id] = mode;
		ss->size_seen[id] = size;
	}
	if (ss->ua_seen[id] != reset && !ua_exempt(op)) {
		ss->ua_seen[id] = reset;
		if (ss->cold_ua[id]) {	/* its session ended by a TARGET COLD RESET */
			ss->cold_ua[id] = 0;
			return ASC_POWER_ON_RESET;
		}
		return ASC_BUS_DEVICE_RESET;
	}
	if (ss->mode_seen[id] != mode && !ua_exempt(op)) {
		ss->mode_seen[id] = mode;
		return ASC_MODE_PARAMS_CHANGED;
	}
	if (ss->size_seen[id] != size && !ua_exempt(op)) {
		ss->size_seen[id] = size;
		return ASC_CAPACITY_CHANGED;
	}
	if (ss->luns_seen != luns_gen && op != 0x12 && op != 0x03) {
		ss->luns_seen = luns_gen;
		if (op != 0xa0)
			return ASC_REPORTED_LUNS_CHANGED;
	}
	return 0;
}
