/* SPDX-License-Identifier: MIT */
/* Private to daemon/iscsi: targets, portals, connections. */
#ifndef SAND_ISCSI_INT_H
#define SAND_ISCSI_INT_H

#include <pthread.h>
#include <sys/socket.h>
#include "sand/blkdev.h"
#include "sand/ev.h"
#include "sand/iscsi.h"
#include "sand/scsi.h"

#define ISCSI_MAX_LUNS		256
#define ISCSI_TPGT		1
#define ISCSI_CMD_WINDOW	128		/* MaxCmdSN = ExpCmdSN + window - 1 */
#define ISCSI_MAX_EDTL		(64u << 20)	/* larger commands are refused */

struct iscsi_lun {
	unsigned	id;
	struct scsi_lu	lu;
};

struct iscsi_target {
	struct list_head link;
	char		iqn[ISCSI_NAME_MAX];
	/* Published once and never removed until shutdown: readers on the
	 * reactors load nluns (acquire) and then read the arrays. */
	struct iscsi_lun *luns[ISCSI_MAX_LUNS];	/* by LUN number */
	uint64_t	lunlist[ISCSI_MAX_LUNS];	/* REPORT LUNS, in order added */
	unsigned	nluns;
};

struct iscsi_portal {
	struct list_head link;
	int		fd;
	struct ev_io	io;
	unsigned	reactor;
	int		port;
};

/* target.c */
struct iscsi_target *iscsi_target_find(const char *iqn);
/* SendTargets: every target as TargetName/TargetAddress pairs, or just
 * `only` when not NULL. */
void iscsi_send_targets(struct iscsi_kvbuf *out, const char *only, const char *addr);
uint16_t iscsi_new_tsih(void);

/* conn.c: start serving an accepted socket (the fd cast to a pointer) on
 * the calling reactor; a reactor_send() message. */
void iscsi_conn_start_msg(void *fd);
/* Close every connection on the calling reactor's loop. */
void iscsi_conn_kill_local(void);
unsigned iscsi_conn_count(void);

#endif
