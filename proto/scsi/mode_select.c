/* SPDX-License-Identifier: MIT */
/*
 * MODE SELECT(6) and (10): the mode pages MODE SENSE reports (caching 08h,
 * control 0Ah), page format only (PF 1), nothing saved (SP 1: INVALID
 * FIELD IN CDB). The changeable fields:
 * - the control page's SWP (software write protect, SPC-4 7.5.8): with it
 *   set the LU is write protected as a read-only LU is (writes, UNMAP,
 *   WRITE SAME, SANITIZE, EXTENDED COPY to it get DATA PROTECT, WRITE
 *   PROTECTED; MODE SENSE sets WP), until a MODE SELECT clears it;
 * - the control page's TAS (default 1): tasks a reset from another I_T
 *   nexus aborts end with TASK ABORTED status, or (0) without a response;
 * - the caching page's WCE (default 1): with it clear every write is FUA.
 * They are the LU's, for every I_T nexus, and last until the LU is
 * exported again (not kept across restarts). A MODE SELECT that changes
 * one gives every other I_T nexus a MODE PARAMETERS CHANGED unit attention
 * (lu->mode_gen; the nexus that made the change has seen it). Other fields
 * of the pages are not checked against their current values.
 *
 * The whole parameter list is checked before anything changes: a list
 * shorter than its header, block descriptors or pages say: PARAMETER LIST
 * LENGTH ERROR; a block descriptor with another block length, LONGLBA, a
 * subpage, an unknown page or one of the wrong length: INVALID FIELD IN
 * PARAMETER LIST.
 */
#include "sand/scsi.h"
#include "proto/scsi/mode_select.h"

static int bad_param(struct scsi_cmd *cmd)
{
	scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	return SCSI_DONE;
}

static int short_list(struct scsi_cmd *cmd)
{
	scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
	return SCSI_DONE;
}

/* true if *b was not v */
static bool set_bool(bool *b, int v)
{
	return __atomic_exchange_n(b, (bool)v, __ATOMIC_ACQ_REL) != (bool)v;
}

/* A parameter changed: every other nexus gets MODE PARAMETERS CHANGED. This
 * one has seen the change, unless it had not seen an earlier one yet. */
static void params_changed(struct scsi_cmd *cmd)
{
	unsigned gen = __atomic_add_fetch(&cmd->lu->mode_gen, 1, __ATOMIC_ACQ_REL);

	if (cmd->mode_seen && *cmd->mode_seen == gen)	/* had seen gen - 1 */
		*cmd->mode_seen = gen + 1;
}

int scsi_mode_select(struct scsi_cmd *cmd, bool ten)
{
	const uint8_t *cdb = cmd->cdb, *p = cmd->buf;
	uint32_t plen = ten ? get_be16(cdb + 7) : cdb[4];
	uint32_t hdr = ten ? 8 : 4, bdl, off, bs = cmd->lu->bd->block_size;
	int swp = -1, tas = -1, wce = -1;
	bool changed = false;

	if (cdb[1] & 0x01) {		/* SP: nothing is saved */
		scsi_invalid_field(cmd, 1, 0);
		return SCSI_DONE;
	}
	if (cdb[1] & 0xee) {		/* reserved */
		scsi_invalid_field(cmd, 1, -1);
		return SCSI_DONE;
	}
	cmd->xfer_len = plen;
	if (!plen)
		return SCSI_DONE;
	if (!(cdb[1] & 0x10)) {		/* PF 0: vendor-specific pages */
		scsi_invalid_field(cmd, 1, 4);
		return SCSI_DONE;
	}
	if (plen < hdr || cmd->buf_len < plen)
		return short_list(cmd);
	if (ten && (p[4] & 0x01))	/* LONGLBA */
		return bad_param(cmd);
	bdl = ten ? get_be16(p + 6) : p[3];
	if (bdl % 8 || hdr + bdl > plen)
		return short_list(cmd);
	for (off = hdr; off < hdr + bdl; off += 8)
		if ((get_be32(p + off + 4) & 0xffffff) != bs)
			return bad_param(cmd);
	while (off < plen) {
		uint8_t code = p[off] & 0x3f, len;

		if (off + 2 > plen)
			return short_list(cmd);
		len = p[off + 1];
		if (off + 2 + len > plen)
			return short_list(cmd);
		if (p[off] & 0x40)		/* SPF: no subpages here */
			return bad_param(cmd);
		switch (code) {
		case 0x08:			/* caching */
			if (len != 18)
				return bad_param(cmd);
			wce = !!(p[off + 2] & 0x04);
			break;
		case 0x0a:			/* control */
			if (len != 10)
				return bad_param(cmd);
			swp = !!(p[off + 4] & 0x08);
			tas = !!(p[off + 5] & 0x40);
			break;
		default:
			return bad_param(cmd);
		}
		off += 2 + len;
	}
	if (swp >= 0)
		changed |= set_bool(&cmd->lu->swp, swp);
	if (tas >= 0)
		changed |= set_bool(&cmd->lu->tas, tas);
	if (wce >= 0)
		changed |= set_bool(&cmd->lu->wce, wce);
	if (changed)
		params_changed(cmd);
	return SCSI_DONE;
}
