/* SPDX-License-Identifier: MIT */
/*
 * Member superblocks: encode/decode round trip, checksum, versions, and
 * reading a member whose first or second copy is corrupt.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>
#include "sand/raid.h"

static void sample(struct raid_sb *sb)
{
	memset(sb, 0, sizeof(*sb));
	sb->major = RAID_SB_MAJOR;
	sb->minor = RAID_SB_MINOR;
	uuid_generate(sb->pool_uuid);
	uuid_generate(sb->member_uuid);
	sb->index = 2;
	sb->geom.level = RAID_LEVEL_6;
	sb->geom.nmembers = 5;
	sb->geom.strip = 65536;
	sb->geom.member_size = 64ull << 20;
	sb->block_size = 4096;
	sb->data_offset = RAID_DATA_OFFSET;
	sb->generation = 0x123456789aull;
	sb->flags = RAID_SB_DIRTY;
	strcpy(sb->name, "pool0");
	for (int i = 0; i < 5; i++) {
		uuid_generate(sb->members[i].uuid);
		sb->members[i].state = i == 3 ? RAID_MEMBER_FAILED : RAID_MEMBER_ACTIVE;
	}
	memcpy(sb->members[2].uuid, sb->member_uuid, 16);
}

/* Re-seal a hand-edited copy. */
static void reseal(uint8_t *buf)
{
	uint32_t crc = raid_crc32c(buf, RAID_SB_SIZE - 4);

	buf[RAID_SB_SIZE - 4] = (uint8_t)crc;
	buf[RAID_SB_SIZE - 3] = (uint8_t)(crc >> 8);
	buf[RAID_SB_SIZE - 2] = (uint8_t)(crc >> 16);
	buf[RAID_SB_SIZE - 1] = (uint8_t)(crc >> 24);
}

START_TEST(crc_vector)
{
	ck_assert_uint_eq(raid_crc32c("123456789", 9), 0xe3069283u);
}
END_TEST

START_TEST(round_trip)
{
	struct raid_sb a, b;
	uint8_t buf[RAID_SB_SIZE];

	sample(&a);
	raid_sb_encode(&a, buf);
	ck_assert_mem_eq(buf, "SANDRAID", 8);
	ck_assert_uint_eq(buf[8], RAID_SB_MAJOR);	/* little endian */
	ck_assert_uint_eq(buf[80], 0x9a);		/* generation, LE */
	ck_assert_uint_eq(buf[92], RAID_SB_DIRTY);	/* flags (1.1) */
	ck_assert_int_eq(raid_sb_decode(buf, &b), 0);
	ck_assert_int_eq(memcmp(&a, &b, sizeof(a)), 0);
}
END_TEST

START_TEST(bad_checksum)
{
	struct raid_sb a, b;
	uint8_t buf[RAID_SB_SIZE];

	sample(&a);
	raid_sb_encode(&a, buf);
	buf[100] ^= 1;
	ck_assert_int_eq(raid_sb_decode(buf, &b), -EBADMSG);
	buf[100] ^= 1;
	buf[RAID_SB_SIZE - 1] ^= 0x80;
	ck_assert_int_eq(raid_sb_decode(buf, &b), -EBADMSG);
	buf[RAID_SB_SIZE - 1] ^= 0x80;
	buf[0] = 'X';
	ck_assert_int_eq(raid_sb_decode(buf, &b), -EINVAL);
}
END_TEST

START_TEST(bad_fields)
{
	struct raid_sb a, b;
	uint8_t buf[RAID_SB_SIZE];

	sample(&a);
	a.index = 7;			/* >= nmembers */
	raid_sb_encode(&a, buf);
	ck_assert_int_eq(raid_sb_decode(buf, &b), -EBADMSG);
	sample(&a);
	a.geom.nmembers = 3;		/* RAID 6 needs 4 */
	a.index = 0;
	raid_sb_encode(&a, buf);
	ck_assert_int_eq(raid_sb_decode(buf, &b), -EBADMSG);
}
END_TEST

START_TEST(versions)
{
	struct raid_sb a, b;
	uint8_t buf[RAID_SB_SIZE];

	sample(&a);
	raid_sb_encode(&a, buf);
	buf[8] = RAID_SB_MAJOR + 1;	/* newer major: refused, checksum or not */
	reseal(buf);
	ck_assert_int_eq(raid_sb_decode(buf, &b), -EPROTONOSUPPORT);
	buf[9] = 1;
	ck_assert_int_eq(raid_sb_decode(buf, &b), -EPROTONOSUPPORT);

	raid_sb_encode(&a, buf);
	buf[12] = RAID_SB_MINOR + 3;	/* newer minor: read, with a warning */
	reseal(buf);
	ck_assert_int_eq(raid_sb_decode(buf, &b), 0);
	ck_assert_uint_eq(b.minor, RAID_SB_MINOR + 3);
	ck_assert_uint_eq(b.generation, a.generation);
}
END_TEST

static void corrupt(struct blkdev *bd, uint64_t off)
{
	uint8_t blk[512];

	ck_assert_int_eq(blk_sync_io(bd, BIO_READ, 0, off, blk, 512), 0);
	blk[40] ^= 0xff;
	ck_assert_int_eq(blk_sync_io(bd, BIO_WRITE, 0, off, blk, 512), 0);
}

/* 1.2: the log and bitmap fields round trip; a 1.1 superblock reads with
 * neither (whatever its reserved bytes hold); bad placements are refused. */
START_TEST(ppl_bitmap_fields)
{
	struct raid_sb a, b;
	uint8_t buf[RAID_SB_SIZE];

	sample(&a);
	a.ppl_offset = RAID_PPL_OFFSET;
	a.ppl_size = RAID_DATA_OFFSET - RAID_PPL_OFFSET;
	a.ppl_epoch = 0x0102030405ull;
	a.bitmap_offset = RAID_BITMAP_OFFSET;
	a.bitmap_size = RAID_PPL_OFFSET - RAID_BITMAP_OFFSET;
	a.bitmap_region = 1 << 20;
	raid_sb_encode(&a, buf);
	ck_assert_uint_eq(buf[12], 4);			/* minor 4 */
	ck_assert_uint_eq(buf[128 + 2], RAID_PPL_OFFSET >> 16);	/* LE */
	ck_assert_uint_eq(buf[144], 0x05);		/* epoch, LE */
	ck_assert_int_eq(raid_sb_decode(buf, &b), 0);
	ck_assert_int_eq(memcmp(&a, &b, sizeof(a)), 0);

	buf[12] = 1;					/* as a 1.1 writer left it */
	reseal(buf);
	ck_assert_int_eq(raid_sb_decode(buf, &b), 0);
	ck_assert_uint_eq(b.minor, 1);
	ck_assert_uint_eq(b.ppl_size, 0);
	ck_assert_uint_eq(b.bitmap_size, 0);

	a.ppl_size = RAID_DATA_OFFSET;			/* runs into the data */
	raid_sb_encode(&a, buf);
	ck_assert_int_eq(raid_sb_decode(buf, &b), -EBADMSG);
	a.ppl_size = RAID_DATA_OFFSET - RAID_PPL_OFFSET;
	a.bitmap_offset = 4096;				/* over the second copy */
	raid_sb_encode(&a, buf);
	ck_assert_int_eq(raid_sb_decode(buf, &b), -EBADMSG);
	a.bitmap_offset = RAID_BITMAP_OFFSET;
	a.bitmap_region = 1000;				/* not a multiple of the strip */
	raid_sb_encode(&a, buf);
	ck_assert_int_eq(raid_sb_decode(buf, &b), -EBADMSG);
}
END_TEST

/* 1.4: bitmap_flags round trips at byte 188, the away images at 1536; a
 * 1.3 superblock reads with neither (whatever those bytes hold); the hot
 * image must fit in the area, an away image too, one slot each. */
START_TEST(bitmap_flags_field)
{
	struct raid_sb a, b;
	uint8_t buf[RAID_SB_SIZE];

	sample(&a);
	a.bitmap_offset = RAID_BITMAP_OFFSET;
	a.bitmap_size = RAID_PPL_OFFSET - RAID_BITMAP_OFFSET;
	a.bitmap_region = 1 << 20;
	a.bitmap_flags = RAID_BM_HOT;
	ck_assert_uint_eq(raid_bitmap_bytes(&a), 4096);
	raid_sb_encode(&a, buf);
	ck_assert_uint_eq(buf[188], RAID_BM_HOT);
	ck_assert_int_eq(raid_sb_decode(buf, &b), 0);
	ck_assert_int_eq(memcmp(&a, &b, sizeof(a)), 0);

	/* away images: byte 1536 + slot */
	a.bitmap_away[2] = 1;
	a.bitmap_away[0] = RAID_BM_AWAY_MAX;
	raid_sb_encode(&a, buf);
	ck_assert_uint_eq(buf[1536 + 2], 1);
	ck_assert_int_eq(raid_sb_decode(buf, &b), 0);
	ck_assert_int_eq(memcmp(&a, &b, sizeof(a)), 0);

	buf[12] = 3;					/* as a 1.3 writer left it */
	reseal(buf);
	ck_assert_int_eq(raid_sb_decode(buf, &b), 0);
	ck_assert_uint_eq(b.bitmap_flags, 0);
	ck_assert_uint_eq(b.bitmap_away[2], 0);
	ck_assert_uint_eq(b.bitmap_size, a.bitmap_size);

	a.bitmap_away[0] = 1;				/* two slots, one image */
	raid_sb_encode(&a, buf);
	ck_assert_int_eq(raid_sb_decode(buf, &b), -EBADMSG);
	a.bitmap_away[0] = RAID_BM_AWAY_MAX + 1;	/* beyond the images */
	raid_sb_encode(&a, buf);
	ck_assert_int_eq(raid_sb_decode(buf, &b), -EBADMSG);
	a.bitmap_away[0] = 0;
	a.bitmap_away[a.geom.nmembers] = 3;		/* no such slot */
	raid_sb_encode(&a, buf);
	ck_assert_int_eq(raid_sb_decode(buf, &b), -EBADMSG);
	a.bitmap_away[a.geom.nmembers] = 0;
	a.bitmap_flags = 0;				/* no hot image, no away one */
	raid_sb_encode(&a, buf);
	ck_assert_int_eq(raid_sb_decode(buf, &b), -EBADMSG);
	a.bitmap_flags = RAID_BM_HOT;
	a.bitmap_away[2] = 0;

	/* two images of 8 KiB do not fit in 12 KiB */
	a.bitmap_size = 12 * 1024;
	a.geom.member_size = 1ull << 40;
	a.bitmap_region = 400 * 65536;			/* 41944 regions */
	ck_assert_uint_eq(raid_bitmap_bytes(&a), 8192);
	raid_sb_encode(&a, buf);
	ck_assert_int_eq(raid_sb_decode(buf, &b), -EBADMSG);
	a.bitmap_flags = 0;				/* one does */
	raid_sb_encode(&a, buf);
	ck_assert_int_eq(raid_sb_decode(buf, &b), 0);
}
END_TEST

START_TEST(one_copy_corrupt)
{
	struct blkdev *bd;
	struct raid_sb a, b;

	ck_assert_int_eq(blk_mem_create("m", 4 << 20, 512, &bd), 0);
	ck_assert_int_eq(raid_sb_read(bd, &b), -EINVAL);	/* blank */
	sample(&a);
	ck_assert_int_eq(raid_sb_write(bd, &a), 0);
	ck_assert_int_eq(raid_sb_read(bd, &b), 0);
	ck_assert_int_eq(memcmp(&a, &b, sizeof(a)), 0);

	corrupt(bd, RAID_SB_COPY_OFF(0));
	memset(&b, 0, sizeof(b));
	ck_assert_int_eq(raid_sb_read(bd, &b), 0);
	ck_assert_int_eq(memcmp(&a, &b, sizeof(a)), 0);

	/* rewrite both, then corrupt the second */
	ck_assert_int_eq(raid_sb_write(bd, &a), 0);
	corrupt(bd, RAID_SB_COPY_OFF(1));
	memset(&b, 0, sizeof(b));
	ck_assert_int_eq(raid_sb_read(bd, &b), 0);
	ck_assert_int_eq(memcmp(&a, &b, sizeof(a)), 0);

	/* both bad */
	corrupt(bd, RAID_SB_COPY_OFF(0));
	ck_assert_int_eq(raid_sb_read(bd, &b), -EBADMSG);
	ck_assert_int_eq(blkdev_close(bd), 0);
}
END_TEST

START_TEST(newer_generation_wins)
{
	struct blkdev *bd;
	struct raid_sb a, b;
	uint8_t buf[RAID_SB_SIZE];

	ck_assert_int_eq(blk_mem_create("m", 4 << 20, 512, &bd), 0);
	sample(&a);
	ck_assert_int_eq(raid_sb_write(bd, &a), 0);
	/* a crash between the copies: copy 0 new, copy 1 old */
	a.generation++;
	raid_sb_encode(&a, buf);
	ck_assert_int_eq(blk_sync_io(bd, BIO_WRITE, 0, 0, buf, RAID_SB_SIZE), 0);
	ck_assert_int_eq(raid_sb_read(bd, &b), 0);
	ck_assert_uint_eq(b.generation, a.generation);
	ck_assert_int_eq(blkdev_close(bd), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("raid_sb");
	TCase *tc = tcase_create("sb");

	tcase_add_test(tc, crc_vector);
	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, bad_checksum);
	tcase_add_test(tc, bad_fields);
	tcase_add_test(tc, versions);
	tcase_add_test(tc, ppl_bitmap_fields);
	tcase_add_test(tc, bitmap_flags_field);
	tcase_add_test(tc, one_copy_corrupt);
	tcase_add_test(tc, newer_generation_wins);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int nf;

	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? 1 : 0;
}
