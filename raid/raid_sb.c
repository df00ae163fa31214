/* SPDX-License-Identifier: MIT */
/*
 * Member superblocks. Every member carries two identical copies, 4 KiB each,
 * at bytes 0 and 4096; data starts at RAID_DATA_OFFSET (1 MiB). They are
 * written one after the other with a flush after each, so a crash while
 * writing leaves at least one copy whole: a reader takes the valid copy with
 * the higher generation. Layout (little endian) in doc/raid.md.
 *
 * Decoding checks, in order: magic (not ours: -EINVAL), major version (a
 * newer one may move anything, even the checksum: -EPROTONOSUPPORT),
 * CRC32C (-EBADMSG), then every field's range (-EBADMSG). A newer minor
 * version only adds fields in reserved space, so it is read with a warning.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <isa-l/crc.h>
#include "sand/raid.h"
#include "sand/ev.h"
#include "sand/log.h"

struct raid_sb_disk_member {
	uint8_t		uuid[16];
	uint32_t	state;
	uint8_t		rebuilt[8];	/* since 1.2 (zero before): the rebuild cursor */
	uint32_t	flags;		/* since 1.3: RAID_SLOT_* */
};

struct raid_sb_disk {
	uint8_t		magic[8];
	uint32_t	major;
	uint32_t	minor;
	uint8_t		pool_uuid[16];
	uint8_t		member_uuid[16];
	uint32_t	index;
	uint32_t	level;
	uint32_t	strip;
	uint32_t	nmembers;
	uint64_t	data_offset;
	uint64_t	member_size;
	uint64_t	generation;
	uint32_t	block_size;
	uint32_t	flags;		/* since 1.1 */
	char		name[32];
	uint64_t	ppl_offset;	/* since 1.2: the partial parity log */
	uint64_t	ppl_size;
	uint64_t	ppl_epoch;
	uint64_t	bitmap_offset;	/* since 1.2: the write-intent bitmap */
	uint64_t	bitmap_size;
	uint64_t	bitmap_region;
	uint64_t	scrub_cursor;	/* since 1.3: a scrub in progress */
	uint32_t	scrub_flags;
	uint32_t	bitmap_flags;	/* since 1.4 */
	uint8_t		reserved1[64];
	struct raid_sb_disk_member members[RAID_MAX_MEMBERS];
	uint64_t	left_gen[RAID_MAX_MEMBERS];	/* since 1.3 */
	uint8_t		bitmap_away[RAID_MAX_MEMBERS];	/* since 1.4 */
	uint8_t		reserved2[RAID_SB_SIZE - 256 - 41 * RAID_MAX_MEMBERS - 4];
	uint32_t	crc;		/* CRC32C of every byte before it */
};

static_assert(sizeof(struct raid_sb_disk_member) == 32, "sb member entry");
static_assert(sizeof(struct raid_sb_disk) == RAID_SB_SIZE, "sb size");
static_assert(offsetof(struct raid_sb_disk, data_offset) == 64, "sb layout");
static_assert(offsetof(struct raid_sb_disk, name) == 96, "sb layout");
static_assert(offsetof(struct raid_sb_disk, ppl_offset) == 128, "sb layout");
static_assert(offsetof(struct raid_sb_disk, bitmap_region) == 168, "sb layout");
static_assert(offsetof(struct raid_sb_disk, scrub_cursor) == 176, "sb layout");
static_assert(offsetof(struct raid_sb_disk, scrub_flags) == 184, "sb layout");
static_assert(offsetof(struct raid_sb_disk, bitmap_flags) == 188, "sb layout");
static_assert(offsetof(struct raid_sb_disk, members) == 256, "sb layout");
static_assert(offsetof(struct raid_sb_disk, left_gen) == 1280, "sb layout");
static_assert(offsetof(struct raid_sb_disk, bitmap_away) == 1536, "sb layout");
static_assert(offsetof(struct raid_sb_disk, crc) == RAID_SB_SIZE - 4, "sb layout");

uint32_t raid_crc32c(const void *buf, size_t len)
{
	return ~crc32_iscsi((unsigned char *)buf, (int)len, ~0u);
}

uint64_t raid_bitmap_bytes(const struct raid_sb *sb)
{
	uint64_t nregions;

	if (!sb->bitmap_size || !sb->bitmap_region)
		return 0;
	nregions = (sb->geom.member_size + sb->bitmap_region - 1) / sb->bitmap_region;
	return ((nregions + 7) / 8 + 4095) / 4096 * 4096;
}

void raid_sb_encode(const struct raid_sb *sb, void *buf)
{
	struct raid_sb_disk *d = buf;

	memset(d, 0, sizeof(*d));
	memcpy(d->magic, RAID_SB_MAGIC, 8);
	put_le32(&d->major, sb->major);
	put_le32(&d->minor, sb->minor);
	memcpy(d->pool_uuid, sb->pool_uuid, 16);
	memcpy(d->member_uuid, sb->member_uuid, 16);
	put_le32(&d->index, sb->index);
	put_le32(&d->level, (uint32_t)sb->geom.level);
	put_le32(&d->strip, sb->geom.strip);
	put_le32(&d->nmembers, sb->geom.nmembers);
	put_le64(&d->data_offset, sb->data_offset);
	put_le64(&d->member_size, sb->geom.member_size);
	put_le64(&d->generation, sb->generation);
	put_le32(&d->flags, sb->flags);
	put_le32(&d->block_size, sb->block_size);
	memcpy(d->name, sb->name, sizeof(d->name));
	d->name[sizeof(d->name) - 1] = '\0';
	put_le64(&d->ppl_offset, sb->ppl_offset);
	put_le64(&d->ppl_size, sb->ppl_size);
	put_le64(&d->ppl_epoch, sb->ppl_epoch);
	put_le64(&d->bitmap_offset, sb->bitmap_offset);
	put_le64(&d->bitmap_size, sb->bitmap_size);
	put_le64(&d->bitmap_region, sb->bitmap_region);
	put_le64(&d->scrub_cursor, sb->scrub_cursor);
	put_le32(&d->scrub_flags, sb->scrub_flags);
	put_le32(&d->bitmap_flags, sb->bitmap_flags);
	for (uint32_t i = 0; i < RAID_MAX_MEMBERS; i++) {
		memcpy(d->members[i].uuid, sb->members[i].uuid, 16);
		put_le32(&d->members[i].state, sb->members[i].state);
		put_le64(d->members[i].rebuilt, sb->members[i].rebuilt);
		put_le32(&d->members[i].flags, sb->members[i].flags);
		put_le64(&d->left_gen[i], sb->members[i].left_gen);
		d->bitmap_away[i] = sb->bitmap_away[i];
	}
	put_le32(&d->crc, raid_crc32c(d, offsetof(struct raid_sb_disk, crc)));
}

int raid_sb_decode(const void *buf, struct raid_sb *sb)
{
	const struct raid_sb_disk *d = buf;
	uint32_t crc;

	if (memcmp(d->magic, RAID_SB_MAGIC, 8))
		return -EINVAL;
	memset(sb, 0, sizeof(*sb));
	sb->major = get_le32(&d->major);
	sb->minor = get_le32(&d->minor);
	if (sb->major > RAID_SB_MAJOR) {
		LOG_ERR(LS_RAID, "superblock format %u.%u is newer than %u.%u: refused",
			sb->major, sb->minor, RAID_SB_MAJOR, RAID_SB_MINOR);
		return -EPROTONOSUPPORT;
	}
	crc = raid_crc32c(d, offsetof(struct raid_sb_disk, crc));
	if (crc != get_le32(&d->crc))
		return -EBADMSG;
	if (sb->major == RAID_SB_MAJOR && sb->minor > RAID_SB_MINOR)
		LOG_WARN(LS_RAID, "superblock format %u.%u is newer than %u.%u: "
			 "reading what this version knows", sb->major, sb->minor,
			 RAID_SB_MAJOR, RAID_SB_MINOR);
	memcpy(sb->pool_uuid, d->pool_uuid, 16);
	memcpy(sb->member_uuid, d->member_uuid, 16);
	sb->index = get_le32(&d->index);
	sb->geom.level = (enum raid_level)get_le32(&d->level);
	sb->geom.strip = get_le32(&d->strip);
	sb->geom.nmembers = get_le32(&d->nmembers);
	sb->geom.member_size = get_le64(&d->member_size);
	sb->data_offset = get_le64(&d->data_offset);
	sb->generation = get_le64(&d->generation);
	sb->flags = get_le32(&d->flags);
	sb->block_size = get_le32(&d->block_size);
	memcpy(sb->name, d->name, sizeof(sb->name));
	sb->name[sizeof(sb->name) - 1] = '\0';
	if (sb->major == 1 && sb->minor >= 2) {
		sb->ppl_offset = get_le64(&d->ppl_offset);
		sb->ppl_size = get_le64(&d->ppl_size);
		sb->ppl_epoch = get_le64(&d->ppl_epoch);
		sb->bitmap_offset = get_le64(&d->bitmap_offset);
		sb->bitmap_size = get_le64(&d->bitmap_size);
		sb->bitmap_region = get_le64(&d->bitmap_region);
	}
	for (uint32_t i = 0; i < RAID_MAX_MEMBERS; i++) {
		memcpy(sb->members[i].uuid, d->members[i].uuid, 16);
		sb->members[i].state = get_le32(&d->members[i].state);
		sb->members[i].rebuilt = get_le64(d->members[i].rebuilt);
		if (sb->major == 1 && sb->minor >= 3) {
			sb->members[i].flags = get_le32(&d->members[i].flags);
			sb->members[i].left_gen = get_le64(&d->left_gen[i]);
		}
	}
	if (sb->major == 1 && sb->minor >= 3) {
		sb->scrub_cursor = get_le64(&d->scrub_cursor);
		sb->scrub_flags = get_le32(&d->scrub_flags);
	}
	if (sb->major == 1 && sb->minor >= 4) {
		sb->bitmap_flags = get_le32(&d->bitmap_flags);
		memcpy(sb->bitmap_away, d->bitmap_away, sizeof(sb->bitmap_away));
	}
	if (raid_geom_check(&sb->geom) || sb->index >= sb->geom.nmembers ||
	    !IS_POW2(sb->block_size) || sb->block_size < 512 ||
	    sb->geom.strip < sb->block_size ||
	    sb->data_offset < 2 * RAID_SB_SIZE || sb->data_offset % sb->block_size)
		return -EBADMSG;
	/* the log and the bitmap lie between the superblocks and the data */
	if (sb->ppl_size && (sb->ppl_offset < 2 * RAID_SB_SIZE || sb->ppl_offset % 4096 ||
			     sb->ppl_size % 4096 || sb->ppl_size > sb->data_offset ||
			     sb->ppl_offset > sb->data_offset - sb->ppl_size))
		return -EBADMSG;
	if (sb->bitmap_size && (sb->bitmap_offset < 2 * RAID_SB_SIZE || sb->bitmap_offset % 4096 ||
				sb->bitmap_size % 4096 || sb->bitmap_size > sb->data_offset ||
				sb->bitmap_offset > sb->data_offset - sb->bitmap_size ||
				!sb->bitmap_region || sb->bitmap_region % sb->geom.strip ||
				sb->geom.member_size / sb->bitmap_region >= sb->bitmap_size * 8))
		return -EBADMSG;
	/* the second image fits too */
	if ((sb->bitmap_flags & RAID_BM_HOT) &&
	    (!sb->bitmap_size || 2 * raid_bitmap_bytes(sb) > sb->bitmap_size))
		return -EBADMSG;
	/* away images: with the hot one, inside the area, one slot each */
	for (uint32_t i = 0; i < RAID_MAX_MEMBERS; i++) {
		uint32_t k = sb->bitmap_away[i];

		if (!k)
			continue;
		if (!(sb->bitmap_flags & RAID_BM_HOT) || i >= sb->geom.nmembers ||
		    k > RAID_BM_AWAY_MAX || (2 + k) * raid_bitmap_bytes(sb) > sb->bitmap_size)
			return -EBADMSG;
		for (uint32_t j = 0; j < i; j++)
			if (sb->bitmap_away[j] == k)
				return -EBADMSG;
	}
	return 0;
}

int raid_sb_read(struct blkdev *bd, struct raid_sb *sb)
{
	struct raid_sb s[2];
	uint8_t *buf;
	int rc, rcs[2];

	if (bd->size < 2 * RAID_SB_SIZE)
		return -EINVAL;
	buf = aligned_alloc(4096, 2 * RAID_SB_SIZE);
	if (!buf)
		return -ENOMEM;
	rc = blk_sync_io(bd, BIO_READ, 0, 0, buf, 2 * RAID_SB_SIZE);
	if (rc)
		goto free_buf;
	for (int i = 0; i < 2; i++) {
		rcs[i] = raid_sb_decode(buf + RAID_SB_COPY_OFF(i), &s[i]);
		if (rcs[i] && rcs[i] != -EINVAL)
			LOG_WARN(LS_RAID, "%s: superblock copy %d is bad (%d)", bd->name, i, rcs[i]);
	}
	if (!rcs[0] && (rcs[1] || s[0].generation >= s[1].generation))
		*sb = s[0];
	else if (!rcs[1])
		*sb = s[1];
	else
		rc = rcs[0];
free_buf:
	free(buf);
	return rc;
}

/*
 * Synchronous I/O with one private loop and channel for several requests
 * (blk_sync_io sets up both per call, which costs an io_setup/io_destroy
 * pair on libaio devices).
 */
struct sync_sess {
	struct ev_loop	*loop;
	struct blkchan	*ch;
};

struct sync_wait {
	bool	done;
	int	status;
};

static void sess_end(struct bio *bio, int status)
{
	struct sync_wait *w = bio->end_arg;

	w->status = status;
	w->done = true;
}

static void sess_closed(void *arg)
{
	*(bool *)arg = true;
}

static int sess_open(struct blkdev *bd, struct sync_sess *s)
{
	int rc = ev_loop_new(EV_AUTO, 16, &s->loop);

	if (rc)
		return rc;
	rc = blk_chan_open(bd, s->loop, &s->ch);
	if (rc)
		ev_loop_free(s->loop);
	return rc;
}

static int sess_io(struct sync_sess *s, enum bio_op op, uint64_t off, void *buf, uint64_t len)
{
	struct iovec iov = { buf, len };
	struct sync_wait w = { 0 };
	int rc;

	while ((rc = blk_rw(s->ch, op, 0, &iov, buf ? 1 : 0, off, len, sess_end, &w)) == -EAGAIN)
		ev_run_once(s->loop, 10);
	while (!rc && !w.done)
		ev_run_once(s->loop, 100);
	return rc ? rc : w.status;
}

static void sess_close(struct sync_sess *s)
{
	bool closed = false;

	blk_chan_close(s->ch, sess_closed, &closed);
	while (!closed)
		ev_run_once(s->loop, 100);
	ev_loop_free(s->loop);
}

int raid_sb_write(struct blkdev *bd, const struct raid_sb *sb)
{
	uint8_t *buf = aligned_alloc(4096, RAID_SB_SIZE);
	struct sync_sess s;
	int rc;

	if (!buf)
		return -ENOMEM;
	raid_sb_encode(sb, buf);
	rc = sess_open(bd, &s);
	if (rc)
		goto free_buf;
	for (int i = 0; i < 2 && !rc; i++) {
		rc = sess_io(&s, BIO_WRITE, RAID_SB_COPY_OFF(i), buf, RAID_SB_SIZE);
		if (!rc)
			rc = sess_io(&s, BIO_FLUSH, 0, NULL, 0);
	}
	sess_close(&s);
free_buf:
	free(buf);
	return rc;
}
