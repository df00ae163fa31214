/* SPDX-License-Identifier: MIT */
/*
 * Persistent reservations seen from the control plane:
 * - iscsi.reservations {volume}: the registrations (initiator, ISID, target
 *   portal group, key) and the reservation (type, holder) of the LU that
 *   exports a volume, for `volctl iscsi reservations VOL`;
 * - where a LU keeps its APTPL state: DIR/pr.<disk> beside the state file
 *   (characters outside [A-Za-z0-9._-] written as %XX), so reservations
 *   made with APTPL come back with the export after a restart or a crash.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "sand/daemon.h"
#include "sand/rpc.h"
#include "daemon/iscsi/iscsi_int.h"

const char *iscsi_pr_file(const char *disk, char *buf, size_t len)
{
	const char *dir = daemon_state_dir();
	size_t n;

	if (!dir || !*dir)
		return NULL;
	n = (size_t)snprintf(buf, len, "%s/pr.", dir);
	for (const char *p = disk; *p && n + 4 < len; p++) {
		unsigned char ch = (unsigned char)*p;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-')
			buf[n++] = (char)ch;
		else
			n += (size_t)snprintf(buf + n, len - n, "%%%02X", ch);
	}
	if (n + 4 >= len)
		return NULL;
	buf[n] = 0;
	return buf;
}

/* "IQN,i,0xISID" -> IQN and ISID */
static json_t *reg_json(const struct pr_snapshot *s, unsigned i)
{
	const struct pr_reg *r = &s->regs[i];
	const char *sep = strstr(r->n.iport, ",i,0x");
	char key[24];
	bool holder = s->reserved && (s->holder < 0 || s->holder == (int)i);

	snprintf(key, sizeof(key), "0x%016llx", (unsigned long long)r->key);
	return json_pack("{s:s%,s:s,s:o,s:s,s:b,s:b}",
			 "initiator", r->n.iport, sep ? (size_t)(sep - r->n.iport) : strlen(r->n.iport),
			 "isid", sep ? sep + 5 : "",
			 "tpg", r->n.all_tg_pt ? json_null() : json_integer(r->n.rtpi),
			 "key", key, "all_tg_pt", r->n.all_tg_pt, "holder", holder);
}

static json_t *reservations(json_t *params, void *arg, struct rpc_err *err)
{
	struct pr_snapshot *s;
	char iqn[ISCSI_NAME_MAX];
	const char *vol;
	json_t *regs, *res, *r;
	unsigned lun;
	int rc;

	if (rpc_params_only(params, err, "volume", NULL) ||
	    rpc_param_str(params, "volume", RPC_REQUIRED, &vol, err))
		return NULL;
	s = malloc(sizeof(*s));
	if (!s)
		return rpc_error_errno(err, -ENOMEM, "reservations");
	rc = iscsi_lun_pr_find(vol, iqn, sizeof(iqn), &lun, s);
	if (rc) {
		free(s);
		return rpc_error_errno(err, rc, "volume %s is not exported over iSCSI", vol);
	}
	regs = json_array();
	for (unsigned i = 0; i < s->nregs; i++)
		json_array_append_new(regs, reg_json(s, i));
	if (!s->reserved)
		res = json_null();
	else if (s->holder < 0)		/* all registrants hold it */
		res = json_pack("{s:s,s:n}", "type", scsi_pr_type_name(s->type), "holder");
	else
		res = json_pack("{s:s,s:o}", "type", scsi_pr_type_name(s->type), "holder",
				reg_json(s, (unsigned)s->holder));
	r = json_pack("{s:s,s:s,s:i,s:i,s:b,s:o,s:o}", "volume", vol, "target", iqn,
		      "lun", (json_int_t)lun, "generation", (json_int_t)s->generation,
		      "aptpl", s->aptpl, "registrations", regs, "reservation", res);
	free(s);
	return r;
}

void iscsi_pr_rpc_init(void)
{
	rpc_register("iscsi.reservations", reservations, NULL);
}
