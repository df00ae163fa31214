/* SPDX-License-Identifier: MIT */
/*
 * volctl check --offline DEV... [--repair]: check (and repair) a pool's
 * metadata with the daemon stopped, opening the pool's devices directly.
 * Given the members of a RAID set (any order), it assembles the set from
 * their superblocks (raid_assemble); one device without a RAID superblock
 * is taken as a bare pool device. Read-only unless --repair (the devices are
 * opened read-only: nothing can be written). Refused when another process
 * has one of the devices open (the daemon, say): two writers would corrupt
 * the pool, and a check of metadata that changes under it means nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "sand/blkdev.h"
#include "sand/log.h"
#include "sand/raid.h"
#include "sand/thin.h"
#include "tools/volctl/offline.h"

/* Another process holding path open: its pid (and name), or 0. */
static pid_t held_by(const char *path, char *comm, size_t len)
{
	struct stat want, st;
	struct dirent *de, *fe;
	char dpath[64], fpath[320];
	DIR *proc, *fds;
	pid_t found = 0;

	if (stat(path, &want) < 0)
		return 0;
	proc = opendir("/proc");
	if (!proc)
		return 0;
	while (!found && (de = readdir(proc))) {
		pid_t pid = (pid_t)atoi(de->d_name);

		if (pid <= 0 || pid == getpid())
			continue;
		snprintf(dpath, sizeof(dpath), "/proc/%d/fd", pid);
		fds = opendir(dpath);
		if (!fds)
			continue;	/* gone, or not ours to see */
		while ((fe = readdir(fds))) {
			if (fe->d_name[0] == '.')
				continue;
			snprintf(fpath, sizeof(fpath), "%s/%s", dpath, fe->d_name);
			if (stat(fpath, &st) < 0)
				continue;
			if (S_ISBLK(want.st_mode) ? S_ISBLK(st.st_mode) && st.st_rdev == want.st_rdev :
			    st.st_dev == want.st_dev && st.st_ino == want.st_ino) {
				found = pid;
				break;
			}
		}
		closedir(fds);
	}
	closedir(proc);
	if (found) {
		FILE *f;

		snprintf(dpath, sizeof(dpath), "/proc/%d/comm", found);
		f = fopen(dpath, "r");
		if (!f || !fgets(comm, (int)len, f))
			snprintf(comm, len, "?");
		comm[strcspn(comm, "\n")] = '\0';
		if (f)
			fclose(f);
	}
	return found;
}

static bool json_out;

static void line_out(void *arg, const char *line)
{
	if (json_out)
		json_array_append_new(arg, json_string(line));
	else
		printf("  %s\n", line);
}

int volctl_check_offline(char **paths, int n, bool repair, bool drop, bool json)
{
	struct blkdev **m = calloc((size_t)n, sizeof(*m)), *raid = NULL, *dev;
	int *excl = calloc((size_t)n, sizeof(*excl));
	struct blk_file_opts fo = { .readonly = !repair };
	struct thin_check_report rep = { 0 };
	struct thin_check_opts co = { .repair = repair, .drop_damaged = drop,
				      .salvage = repair && !drop, .report = line_out };
	struct thin_pool *p = NULL;
	struct raid_sb sb;
	int i, nsb = 0, rc, ret = 1;
	json_t *lines = json_array();
	char comm[64];

	json_out = json;
	co.arg = lines;
	if (!m || !excl || !lines) {
		fprintf(stderr, "volctl: out of memory\n");
		goto out;
	}
	log_set_level(LOG_WARN);
	for (i = 0; i < n; i++)
		excl[i] = -1;
	for (i = 0; i < n; i++) {
		struct stat st;
		pid_t pid = held_by(paths[i], comm, sizeof(comm));

		if (pid) {
			fprintf(stderr, "volctl: %s is open in process %d (%s): stop it first "
				"(a running sand holds its disks)\n", paths[i], (int)pid, comm);
			goto close_members;
		}
		/* a block device: hold it exclusively while we work */
		if (stat(paths[i], &st) == 0 && S_ISBLK(st.st_mode)) {
			excl[i] = open(paths[i], O_RDONLY | O_EXCL | O_CLOEXEC);
			if (excl[i] < 0) {
				fprintf(stderr, "volctl: %s: %s%s\n", paths[i], strerror(errno),
					errno == EBUSY ? " (in use: mounted, or held by sand)" : "");
				goto close_members;
			}
		}
		rc = blk_file_open(paths[i], paths[i], &fo, &m[i]);
		if (rc) {
			m[i] = NULL;
			fprintf(stderr, "volctl: cannot open %s: %s\n", paths[i], strerror(-rc));
			goto close_members;
		}
		nsb += raid_sb_read(m[i], &sb) == 0;
	}
	if (nsb == n) {
		uint32_t active = 0;

		/* a degraded start writes the members' superblocks (the missing
		 * ones become failed): a check must not change the set */
		for (uint32_t k = 0; k < sb.geom.nmembers && k < RAID_MAX_MEMBERS; k++)
			active += sb.members[k].state == RAID_MEMBER_ACTIVE;
		if ((uint32_t)n < active) {
			fprintf(stderr, "volctl: the RAID set '%.32s' has %u active members, %d given: "
				"give them all (assembling it without them would mark them failed)\n",
				sb.name, active, n);
			goto close_members;
		}
		rc = raid_assemble(m, (uint32_t)n, &raid);
		if (rc) {
			raid = NULL;
			fprintf(stderr, "volctl: cannot assemble the RAID set from %d device(s): %s%s\n",
				n, strerror(-rc), !repair && rc == -EROFS ?
				" (it was not stopped cleanly and needs a resync, a write: run with "
				"--repair)" : "");
			goto close_members;
		}
		dev = raid;
	} else if (n == 1 && nsb == 0) {
		dev = m[0];		/* a bare pool device */
	} else {
		fprintf(stderr, "volctl: %d of the %d devices have a RAID superblock: give all the "
			"members of one pool, or one bare pool device\n", nsb, n);
		goto close_members;
	}
	rc = thin_pool_open(dev, &(struct thin_open_opts){ .commit_ms = 3600 * 1000 }, &p);
	if (rc) {
		p = NULL;
		fprintf(stderr, "volctl: no thin pool can be opened on %s: %s%s\n", dev->name,
			strerror(-rc), rc == -EUCLEAN ? " (neither superblock is valid, or its "
			"volume table cannot be read: not repairable by check)" : "");
		goto close_members;
	}
	if (!json)
		printf("pool on %s%s:\n", dev->name, raid ? " (RAID set)" : "");
	rc = thin_pool_check_ex(p, &co, &rep);
	if (rc && rc != -EUCLEAN) {
		fprintf(stderr, "volctl: checking: %s\n", strerror(-rc));
		goto close_pool;
	}
	ret = rc ? 1 : 0;
	if (json) {
		json_t *o = json_pack("{s:s,s:b,s:b,s:i,s:I,s:I,s:I,s:i,s:I,s:I,s:I,s:i,s:O}",
				      "device", dev->name, "raid", raid != NULL, "clean", !rc,
				      "volumes", rep.volumes, "node_refs", (json_int_t)rep.node_refs,
				      "mappings", (json_int_t)rep.mappings,
				      "errors", (json_int_t)rep.errors, "bad_trees", rep.bad_trees,
				      "leaked_blocks", (json_int_t)rep.leaked_blocks,
				      "leaked_chunks", (json_int_t)rep.leaked_chunks,
				      "repaired", (json_int_t)rep.fixed, "dropped", rep.dropped,
				      "problems", lines);
		char *s = json_dumps(o, JSON_INDENT(2));

		printf("%s\n", s ? s : "{}");
		free(s);
		json_decref(o);
	} else if ((rep.fixed || rep.dropped || rep.rebuilt) && !rc) {
		if (rep.rebuilt)
			printf("repaired: %llu counts rewritten, %u damaged tree(s) rebuilt (%llu "
			       "mappings salvaged, %llu lost, %llu chunk range(s) unreadable); clean "
			       "now (%u volumes, %llu mappings)\n", (unsigned long long)rep.fixed,
			       rep.rebuilt, (unsigned long long)rep.salvaged,
			       (unsigned long long)rep.lost_mappings,
			       (unsigned long long)rep.lost_ranges, rep.volumes,
			       (unsigned long long)rep.mappings);
		else if (rep.dropped)
			printf("repaired: %llu counts rewritten, %u damaged volume(s) dropped; clean "
			       "now (%u volumes, %llu mappings)\n", (unsigned long long)rep.fixed,
			       rep.dropped, rep.volumes, (unsigned long long)rep.mappings);
		else
			printf("repaired: %llu counts rewritten; clean now (%u volumes, %llu "
			       "mappings)\n", (unsigned long long)rep.fixed, rep.volumes,
			       (unsigned long long)rep.mappings);
	} else {
		printf("%s: %u volumes, %llu mappings, %llu errors%s\n", rc ? "DAMAGED" : "clean",
		       rep.volumes, (unsigned long long)rep.mappings, (unsigned long long)rep.errors,
		       rc && !repair && !rep.bad_trees ? " (--repair can fix them)" : "");
	}
close_pool:
	rc = thin_pool_close(p);
	if (rc) {
		fprintf(stderr, "volctl: closing the pool: %s\n", strerror(-rc));
		ret = 1;
	}
close_members:
	if (raid)
		blkdev_close(raid);
	for (i = 0; i < n; i++) {
		if (m[i])
			blkdev_close(m[i]);
		if (excl[i] >= 0)
			close(excl[i]);
	}
out:
	json_decref(lines);
	free(m);
	free(excl);
	return ret;
}
