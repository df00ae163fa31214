/* SPDX-License-Identifier: MIT */
/*
 * READ data as a mapped read (include/sand/blkdev.h, blk_map_read; the
 * transport's side is daemon/iscsi/conn.c). Only where the same range maps
 * again, piece for piece, when the transport sends it later: every piece
 * must map without a pin (a file disk, a one-disk pool's set). A thin
 * volume's pieces pin chunks, and a chunk may be remapped between now and
 * the send, so its READs keep the bio path here.
 */
#include <stdbool.h>
#include <stdint.h>
#include "sand/blkdev.h"
#include "sand/scsi.h"

bool scsi_read_mapped(struct scsi_cmd *cmd, uint64_t off, uint32_t len)
{
	struct blkdev *bd = cmd->lu ? cmd->lu->bd : NULL;
	uint64_t pos = off, end = off + len;
	struct blk_map m;

	if (!cmd->may_map || !bd || len < SCSI_MAP_MIN || !bd->ops->map_read)
		return false;
	while (pos < end) {
		bool pinned;

		if (blk_map_read(bd, pos, end - pos, &m))
			return false;
		pos += m.len;
		pinned = m.npins != 0;
		blk_map_put(&m);
		if (pinned)
			return false;
	}
	cmd->map_off = off;
	cmd->map_len = len;
	return true;
}
