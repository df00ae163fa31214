/* SPDX-License-Identifier: MIT */
/*
 * Asymmetric logical unit access (SPC-4 5.15): target port groups and
 * their access states, for every LU of the daemon at once.
 *
 * A transport that knows the path a command came through sets cmd->tpg
 * (the target port group, which is also the relative target port id: an
 * iSCSI target port is a target name plus a portal group tag, so each
 * group holds one port of each target) and cmd->alua_seen (its memory, per
 * I_T_L nexus, of the last state change reported). cmd->tpg 0: the
 * transport does not do ALUA (NBD, unit tests) and nothing here applies.
 *
 * States are changed by the administrator (implicit ALUA) or by SET
 * TARGET PORT GROUPS (explicit ALUA); every change leaves an ASYMMETRIC
 * ACCESS STATE CHANGED unit attention for every I_T_L nexus, except the
 * one whose SET TARGET PORT GROUPS made it. Readers on the reactors take
 * no lock.
 */
#ifndef SAND_ALUA_H
#define SAND_ALUA_H

#include <stdbool.h>
#include <stdint.h>
#include "sand/scsi.h"

enum scsi_alua_state {
	SCSI_ALUA_OPTIMIZED	= 0x0,	/* active/optimized */
	SCSI_ALUA_NONOPTIMIZED	= 0x1,	/* active/non-optimized */
	SCSI_ALUA_STANDBY	= 0x2,
	SCSI_ALUA_UNAVAILABLE	= 0x3,
	SCSI_ALUA_TRANSITIONING	= 0xf,
};

#define ASC_LU_NOT_ACCESSIBLE_TRANSITION	0x040a
#define ASC_LU_NOT_ACCESSIBLE_STANDBY		0x040b
#define ASC_LU_NOT_ACCESSIBLE_UNAVAILABLE	0x040c
#define ASC_ASYMMETRIC_ACCESS_CHANGED		0x2a06
#define ASC_INVALID_FIELD_IN_PARAM_LIST		0x2600

#define SCSI_ALUA_MAX_GROUPS	64

/* "active-optimized", "active-nonoptimized", "standby", "unavailable",
 * "transitioning"; parse returns -EINVAL for anything else (and for
 * "transitioning", which is not a state one sets). */
const char *scsi_alua_state_name(enum scsi_alua_state s);
int scsi_alua_state_parse(const char *name);

/* Declare group id (1-65535) in state s (one of the four settable ones).
 * An existing group keeps its state. -EINVAL, -ENOSPC. */
int scsi_alua_group_add(uint16_t id, enum scsi_alua_state s);
/* Forget a group (RTPG no longer lists it). -ENOENT. */
int scsi_alua_group_remove(uint16_t id);
/* Change a group's state (a unit attention for every nexus when it
 * changes). -ENOENT, -EINVAL. */
int scsi_alua_group_set(uint16_t id, enum scsi_alua_state s);
/* A group's state, or -ENOENT. */
int scsi_alua_group_get(uint16_t id);
/* What a new I_T nexus starts from in its alua_seen (so that a change
 * after its login, before its first command, is reported to it). */
unsigned scsi_alua_seen_now(void);
/* Forget every group (tests, shutdown). */
void scsi_alua_reset(void);

/* ---- for proto/scsi/exec.c ---- */
/* TPGS field of the standard INQUIRY data, already shifted (byte 5). */
uint8_t scsi_alua_tpgs(const struct scsi_cmd *cmd);
/* Append the relative target port and target port group designators to a
 * VPD 0x83 page at p; returns the bytes written (0 without ALUA). */
uint32_t scsi_alua_vpd83(const struct scsi_cmd *cmd, uint8_t *p);
/* Before a command runs: the unit attention of a state change, or NOT
 * READY for a command the group's state does not allow. Returns true when
 * the command is answered already. */
bool scsi_alua_check(struct scsi_cmd *cmd);
/* REPORT TARGET PORT GROUPS (MAINTENANCE IN, service action 0x0a). */
int scsi_alua_rtpg(struct scsi_cmd *cmd);
/* MAINTENANCE OUT (0xa4): SET TARGET PORT GROUPS (service action 0x0a). */
int scsi_alua_maintenance_out(struct scsi_cmd *cmd);

#endif
