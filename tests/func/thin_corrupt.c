/* SPDX-License-Identifier: MIT */
/*
 * thin-corrupt: damage a stopped pool's metadata on purpose, for the
 * functional tests of `volctl check`. The devices are a RAID set's members
 * (assembled from their superblocks) or one bare pool device.
 *
 *   thin-corrupt counts DEV...      through the metadata layer (valid
 *                                   checksums): the first free data chunk
 *                                   counts 1 (a leak), a mapped one counts
 *                                   one more than its references, and a free
 *                                   metadata block counts 2; committed
 *   thin-corrupt tree ID DEV...     one byte of volume ID's mapping root
 *                                   node flipped (its checksum fails)
 *
 * Prints what it did; exit status 0 when it did it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sand/blkdev.h"
#include "sand/log.h"
#include "sand/raid.h"
#include "snapshot/pool.h"

static int die(const char *what, int rc)
{
	fprintf(stderr, "thin-corrupt: %s: %s\n", what, strerror(-rc));
	return 1;
}

static uint32_t count(struct sm *sm, uint64_t e)
{
	uint32_t c = 0;

	sm_get_count(sm, e, &c);
	return c;
}

static int counts(struct tm *tm)
{
	struct sm *d = tm_dsm(tm), *m = tm_msm(tm);
	uint64_t leak = UINT64_MAX, high = UINT64_MAX, mleak = UINT64_MAX;
	int rc;

	for (uint64_t e = 0; e < sm_nentries(d); e++) {
		uint32_t c = count(d, e);

		if (!c && leak == UINT64_MAX)
			leak = e;
		if (c && high == UINT64_MAX)
			high = e;
	}
	for (uint64_t e = sm_nentries(m); e-- > 0 && mleak == UINT64_MAX; )
		if (!count(m, e))
			mleak = e;
	if (leak == UINT64_MAX || high == UINT64_MAX || mleak == UINT64_MAX) {
		fprintf(stderr, "thin-corrupt: the pool needs a free and a used chunk\n");
		return 1;
	}
	rc = sm_set_count(d, leak, 1);
	if (!rc)
		rc = sm_set_count(d, high, count(d, high) + 1);
	if (!rc)
		rc = sm_set_count(m, mleak, 2);
	if (!rc)
		rc = tm_commit(tm);
	if (rc)
		return die("corrupting the counts", rc);
	printf("data chunk %llu leaked, data chunk %llu counted too high, metadata block %llu "
	       "leaked\n", (unsigned long long)leak, (unsigned long long)high,
	       (unsigned long long)mleak);
	return 0;
}

static int tree(struct tm *tm, struct blkdev *dev, uint64_t id)
{
	struct btree_info vinfo = { .tm = tm, .value_size = VREC_SIZE };
	uint8_t rec[VREC_SIZE], *blk;
	uint64_t root;
	int rc;

	rc = btree_lookup(&vinfo, get_le64(tm_user(tm) + U_VROOT), id, rec);
	if (rc)
		return die("looking the volume up", rc);
	root = get_le64(rec + R_ROOT);
	blk = aligned_alloc(4096, 4096);
	if (!blk)
		return die("memory", -ENOMEM);
	rc = blk_sync_io(dev, BIO_READ, 0, root * 4096, blk, 4096);
	blk[300] ^= 0x10;
	if (!rc)
		rc = blk_sync_io(dev, BIO_WRITE, 0, root * 4096, blk, 4096);
	if (!rc)
		rc = blk_sync_io(dev, BIO_FLUSH, 0, 0, NULL, 0);
	free(blk);
	if (rc)
		return die("writing the node", rc);
	printf("volume %llu: mapping root node %llu damaged\n", (unsigned long long)id,
	       (unsigned long long)root);
	return 0;
}

int main(int argc, char **argv)
{
	struct blkdev *m[RAID_MAX_MEMBERS], *raid = NULL, *dev;
	struct blk_file_opts fo = { 0 };
	struct raid_sb sb;
	struct tm *tm;
	int first = 2, n, nsb = 0, rc, ret;
	uint64_t id = 0;

	if (argc < 3 || (strcmp(argv[1], "counts") && strcmp(argv[1], "tree"))) {
		fprintf(stderr, "usage: thin-corrupt counts DEV... | tree ID DEV...\n");
		return 2;
	}
	if (!strcmp(argv[1], "tree")) {
		id = strtoull(argv[2], NULL, 0);
		first = 3;
	}
	n = argc - first;
	if (n < 1 || n > RAID_MAX_MEMBERS)
		return 2;
	log_set_level(LOG_WARN);
	for (int i = 0; i < n; i++) {
		rc = blk_file_open(argv[first + i], argv[first + i], &fo, &m[i]);
		if (rc)
			return die(argv[first + i], rc);
		nsb += raid_sb_read(m[i], &sb) == 0;
	}
	dev = m[0];
	if (nsb) {
		rc = raid_assemble(m, (uint32_t)n, &raid);
		if (rc)
			return die("assembling", rc);
		dev = raid;
	}
	rc = tm_open(dev, 64, &tm);
	if (rc)
		return die("opening the metadata", rc);
	ret = id ? tree(tm, dev, id) : counts(tm);
	tm_close(tm);
	if (raid)
		blkdev_close(raid);
	for (int i = 0; i < n; i++)
		blkdev_close(m[i]);
	return ret;
}
