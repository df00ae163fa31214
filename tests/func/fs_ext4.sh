#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A real filesystem end to end on sand's exports. A 1 GiB sparse file disk
# is exported over NBD and iSCSI at once. Over NBD, through nbdfuse and a loop
# device: mkfs.ext4, mount, write 50 files of random sizes and a 64 MiB file,
# record their sha256sums, unmount. Restart the daemon (SIGTERM, exit 0),
# reconnect the same way: e2fsck -fn is clean and every checksum matches.
# Then qemu-img copies the whole device once over iSCSI and once over NBD:
# the two copies are identical, e2fsck -fn is clean on the copy, and the
# disk's backing file holds the same bytes after the daemon stops.
#
# Needs root, /dev/fuse and loop devices (skips, saying why, without them).
# Every step runs under timeout; the EXIT trap unmounts, detaches and
# unmounts FUSE for exactly what this test set up, then lib.sh kills the
# processes it started (sand and nbdfuse) and no others.
. "$(dirname "$0")/lib.sh" && [ -d "$T_TMP" ] || { echo "not ok - fs_ext4: lib.sh not loaded"; exit 1; }

# ---- can this machine do it at all? ----
for tool in nbdfuse fusermount3 losetup mkfs.ext4 e2fsck mount umount findmnt \
	nbdinfo qemu-img sha256sum debugfs python3; do
	if ! command -v "$tool" >/dev/null; then
		skip "ext4 on sand's exports" "$tool not installed"
		t_done
	fi
done
if [ "$(id -u)" -ne 0 ]; then
	skip "ext4 on sand's exports" "not root: losetup and mount need root"
	t_done
fi
if ! [ -c /dev/fuse ] || ! { exec 9<>/dev/fuse; } 2>/dev/null; then
	skip "ext4 on sand's exports" "/dev/fuse missing or cannot be opened (no FUSE)"
	t_done
fi
exec 9>&-
if ! LOOP_PROBE=$(timeout -k 5 10 losetup --find 2>&1) || ! [ -b "$LOOP_PROBE" ]; then
	skip "ext4 on sand's exports" "no free loop device (losetup --find: ${LOOP_PROBE:-nothing})"
	t_done
fi

# Steps that move data get longer than the control steps.
TD=$((T_TIMEOUT * 3))
DISK=fsd
IQN=iqn.2026-11.org.sand:fs-ext4
IMG=$T_TMP/fsd.img
FUSE_DIR=$T_TMP/fuse		# nbdfuse's mountpoint; the device is $FUSE_DIR/nbd
FUSE_FILE=$FUSE_DIR/nbd
MNT=$T_TMP/mnt
SUMS=$T_TMP/sha256sums
NBD_PORT=$(free_port)
ISCSI_PORT=$(free_port)
while [ "$ISCSI_PORT" = "$NBD_PORT" ]; do ISCSI_PORT=$(free_port); done
NBD_URL=nbd://127.0.0.1:$NBD_PORT/$DISK
ISCSI_URL=iscsi://127.0.0.1:$ISCSI_PORT/$IQN/0
mkdir -p "$FUSE_DIR" "$MNT"

# What we set up, so the cleanup undoes exactly that. Whatever is mounted
# on $MNT or $FUSE_DIR is ours: both are in this test's own temp directory.
NBDFUSE_PID=
LOOP_DEV=
LOOP_SEQ=		# the loop device's diskseq when we attached it
STEP_PID=

# step CMD...: run CMD (a `timeout ...` command) in the background and wait
# for it, so that SIGTERM/SIGINT reach our trap at once instead of after
# CMD; the trap then stops CMD (timeout passes the signal to its group).
step() {
	local rc
	"$@" &
	STEP_PID=$!
	wait "$STEP_PID"; rc=$?
	STEP_PID=
	return $rc
}
vctl() { step timeout -k 5 "$T_TIMEOUT" "$VOLCTL_BIN" --socket "$SAND_SOCK" "$@"; }
is_mounted() { findmnt -rn --mountpoint "$1" >/dev/null 2>&1; }
loop_seq() { cat "/sys/block/${1#/dev/}/diskseq" 2>/dev/null; }

# ---- nbdfuse + loop + mount, and their undoing ----

# fuse_up: nbdfuse on $FUSE_DIR, then a loop device on its file.
fuse_up() {
	local i
	rm -f "$T_TMP/nbdfuse.pid"
	t_bg "$T_TMP/nbdfuse.log" nbdfuse -P "$T_TMP/nbdfuse.pid" "$FUSE_DIR" "$NBD_URL"
	NBDFUSE_PID=$T_BG_PID
	for ((i = 0; i < T_TIMEOUT * 10; i++)); do
		[ -s "$T_TMP/nbdfuse.pid" ] && break
		t_alive "$NBDFUSE_PID" || break
		sleep 0.1
	done
	if ! [ -s "$T_TMP/nbdfuse.pid" ] || ! is_mounted "$FUSE_DIR"; then
		diag "nbdfuse did not come up:"; sed 's/^/#   /' "$T_TMP/nbdfuse.log" | tail -n 10
		return 1
	fi
	[ "$(timeout -k 5 "$T_TIMEOUT" stat -c %s "$FUSE_FILE")" = $((1 << 30)) ] ||
		{ diag "$FUSE_FILE is not 1 GiB"; return 1; }
	LOOP_DEV=$(timeout -k 5 "$T_TIMEOUT" losetup --find --show "$FUSE_FILE") ||
		{ LOOP_DEV=; return 1; }
	LOOP_SEQ=$(loop_seq "$LOOP_DEV")
}

ext4_mount() { step timeout -k 5 "$T_TIMEOUT" mount -t ext4 "$LOOP_DEV" "$MNT"; }
ext4_umount() { ! is_mounted "$MNT" || step timeout -k 5 "$TD" umount "$MNT"; }

# loop_down: detach our loop device, unless it is no longer the one we
# attached (its diskseq changes with each attach; without diskseq, its
# backing file must still be ours).
loop_down() {
	[ -n "$LOOP_DEV" ] || return 0
	local seq back i
	seq=$(loop_seq "$LOOP_DEV")
	if [ -n "$LOOP_SEQ" ]; then
		if [ "$seq" != "$LOOP_SEQ" ]; then
			diag "$LOOP_DEV is no longer ours (diskseq $seq, was $LOOP_SEQ)"
			LOOP_DEV=
			return 0
		fi
	else
		back=$(cat "/sys/block/${LOOP_DEV#/dev/}/loop/backing_file" 2>/dev/null)
		if [ "$back" != "$(realpath -m "$FUSE_FILE")" ]; then
			diag "$LOOP_DEV is no longer ours (backing file '$back')"
			LOOP_DEV=
			return 0
		fi
	fi
	step timeout -k 5 "$T_TIMEOUT" losetup -d "$LOOP_DEV" || return 1
	# the kernel lets go of the backing file later (udev's blkid may hold
	# the device open a moment): wait until it has, or fusermount3 -u
	# finds the FUSE file busy
	for ((i = 0; i < T_TIMEOUT * 10; i++)); do
		[ -e "/sys/block/${LOOP_DEV#/dev/}/loop/backing_file" ] || break
		sleep 0.1
	done
	[ ! -e "/sys/block/${LOOP_DEV#/dev/}/loop/backing_file" ] ||
		diag "$LOOP_DEV still holds its backing file"
	LOOP_DEV=
}

# fuse_down: unmount the FUSE filesystem; nbdfuse must then exit 0 by itself.
fuse_down() {
	local i rc
	[ -n "$NBDFUSE_PID" ] || return 0
	# busy for a moment after losetup -d (see loop_down): try again
	i=0
	while is_mounted "$FUSE_DIR" && ((i++ < 50)); do
		timeout -k 5 "$T_TIMEOUT" fusermount3 -u "$FUSE_DIR" 2>"$T_TMP/fusermount.err" && break
		grep -q "busy" "$T_TMP/fusermount.err" || break
		sleep 0.2
	done
	if is_mounted "$FUSE_DIR"; then
		diag "fusermount3 -u: $(cat "$T_TMP/fusermount.err")"
		return 1
	fi
	for ((i = 0; i < T_TIMEOUT * 10; i++)); do
		t_running "$NBDFUSE_PID" || break
		sleep 0.1
	done
	if t_running "$NBDFUSE_PID"; then
		diag "nbdfuse $NBDFUSE_PID still running after fusermount3 -u"
		return 1
	fi
	wait "$NBDFUSE_PID" 2>/dev/null; rc=$?
	NBDFUSE_PID=
	[ "$rc" -eq 0 ] || { diag "nbdfuse exited with $rc"; return 1; }
}

# all_down: everything above in order; stops at the first failure.
all_down() {
	ext4_umount && loop_down && fuse_down
}

# On any exit: stop the step in flight, undo what is still set up (forcing
# if need be), then lib.sh's t_cleanup kills sand and nbdfuse.
fs_cleanup() {
	local i
	[ "$BASHPID" = "$T_MAIN_PID" ] || return 0
	if [ -n "$STEP_PID" ] && t_alive "$STEP_PID"; then
		kill -TERM "$STEP_PID" 2>/dev/null
		for ((i = 0; i < 100; i++)); do t_alive "$STEP_PID" || break; sleep 0.1; done
		wait "$STEP_PID" 2>/dev/null
	fi
	STEP_PID=
	if is_mounted "$MNT"; then
		timeout -k 5 "$T_TIMEOUT" umount "$MNT" || timeout -k 5 10 umount -l "$MNT"
	fi
	# losetup may have been stopped after attaching: find it by its file
	[ -n "$LOOP_DEV" ] || LOOP_DEV=$(timeout -k 5 10 losetup -n -O NAME -j "$FUSE_FILE" 2>/dev/null | head -n 1)
	if [ -n "$LOOP_DEV" ]; then
		[ -n "$LOOP_SEQ" ] || LOOP_SEQ=$(loop_seq "$LOOP_DEV")
		loop_down || diag "could not detach $LOOP_DEV"
	fi
	if is_mounted "$FUSE_DIR"; then
		timeout -k 5 "$T_TIMEOUT" fusermount3 -u "$FUSE_DIR" ||
			timeout -k 5 10 fusermount3 -uz "$FUSE_DIR"
	fi
	if is_mounted "$MNT" || is_mounted "$FUSE_DIR"; then
		diag "still mounted: $(findmnt -rn -o TARGET | grep -F "$T_TMP")"
		KEEP=1		# keep t_cleanup's rm -rf out of a mounted filesystem
	fi
	t_cleanup
}
trap fs_cleanup EXIT

# write_files DIR: 50 files of random sizes (1 byte .. 3 MiB, most not
# block-aligned) in a subdirectory, and one 64 MiB file.
write_files() {
	local d=$1 i size
	mkdir -p "$d/many" || return 1
	for ((i = 1; i <= 50; i++)); do
		size=$(( (RANDOM * 32768 + RANDOM) % (3 << 20) + 1 ))
		head -c "$size" /dev/urandom >"$d/many/f$i" || return 1
	done
	head -c $((64 << 20)) /dev/urandom >"$d/big" || return 1
	(cd "$d" && sha256sum big many/*) >"$SUMS" || return 1
	[ "$(wc -l <"$SUMS")" -eq 51 ]
}
export -f write_files

# same_bytes A B: the two files hold the same bytes (cmp is slow here: its
# small reads take ~5 s per GiB; 4 MiB reads well under 1 s).
same_bytes() {
	python3 - "$1" "$2" <<'PY'
import sys
with open(sys.argv[1], "rb") as a, open(sys.argv[2], "rb") as b:
    off = 0
    while True:
        x, y = a.read(4 << 20), b.read(4 << 20)
        if x != y:
            n = next((i for i in range(min(len(x), len(y))) if x[i] != y[i]), min(len(x), len(y)))
            sys.exit("%s and %s differ at byte %d" % (sys.argv[1], sys.argv[2], off + n))
        if not x:
            break
        off += len(x)
PY
}
export -f same_bytes
export SUMS

# ---- 1. the daemon, the disk, both exports ----
sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
check "1 GiB sparse file disk" vctl disk add "$DISK" "$IMG" --size 1G
check "nbd listen on 127.0.0.1:$NBD_PORT" vctl nbd listen "127.0.0.1:$NBD_PORT"
check "export nbd" vctl export nbd "$DISK"
check "iscsi portal on 127.0.0.1:$ISCSI_PORT" vctl iscsi portal add 1 "127.0.0.1:$ISCSI_PORT"
check "iscsi target" vctl iscsi target create "$IQN"
check "the same disk exported over iSCSI too" vctl export iscsi "$DISK" --target "$IQN" --lun 0

# ---- 2. mkfs, mount, write over NBD ----
SECONDS=0
check "nbdfuse + losetup on the NBD export" fuse_up
[ -n "$LOOP_DEV" ] || { not_ok "no loop device: cannot go on"; t_done; }
diag "nbdfuse pid $NBDFUSE_PID on $FUSE_DIR, loop device $LOOP_DEV"
check "mkfs.ext4" step timeout -k 5 "$TD" mkfs.ext4 -q -F "$LOOP_DEV"
check "mount" ext4_mount
is_mounted "$MNT" || { not_ok "not mounted: cannot go on"; t_done; }
check "write 50 random files and a 64 MiB file, checksums recorded" \
	step timeout -k 5 "$TD" bash -c 'write_files "$1"' _ "$MNT"
check "sync" step timeout -k 5 "$TD" sync
check "umount, losetup -d, fusermount3 -u (nbdfuse exits 0)" all_down
diag "nbd write pass: ${SECONDS}s"
# 64 MiB + 50 files of 1.5 MiB on average went through to the sparse file
check "the backing file holds over 80 MiB of data" \
	test "$(du -k "$IMG" | cut -f1)" -gt $((80 << 10))

# ---- 3. restart, reconnect, fsck, compare ----
check "SIGTERM: sand exits 0, no sanitizer report" sand_stop
sand_start --reactors 2 || { not_ok "sand starts again"; t_done; }
ok "sand starts again"
check "the NBD listener is back" step timeout -k 5 "$T_TIMEOUT" \
	bash -c 'until timeout 5 nbdinfo --size "$1"; do sleep 0.1; done' _ "$NBD_URL"
SECONDS=0
check "nbdfuse + losetup again" fuse_up
[ -n "$LOOP_DEV" ] || { not_ok "no loop device: cannot go on"; t_done; }
diag "nbdfuse pid $NBDFUSE_PID on $FUSE_DIR, loop device $LOOP_DEV"
check "e2fsck -fn is clean" step timeout -k 5 "$TD" e2fsck -fn "$LOOP_DEV"
check "mount again" ext4_mount
if is_mounted "$MNT"; then
	check "all 51 checksums match" step timeout -k 5 "$TD" bash -c 'cd "$1" && sha256sum --quiet -c "$2"' \
		_ "$MNT" "$SUMS"
	check "50 files in many/" test "$(find "$MNT/many" -type f | wc -l)" -eq 50
else
	not_ok "checksums not compared: not mounted"
fi
check "umount, losetup -d, fusermount3 -u again" all_down
diag "nbd verify pass: ${SECONDS}s"

# ---- 4. the same bytes over iSCSI and NBD ----
SECONDS=0
check "qemu-img reads the whole device over iSCSI" \
	step timeout -k 5 "$TD" qemu-img convert -f raw -O raw "$ISCSI_URL" "$T_TMP/via-iscsi.img"
diag "iSCSI copy: ${SECONDS}s"
SECONDS=0
check "qemu-img reads the whole device over NBD" \
	step timeout -k 5 "$TD" qemu-img convert -f raw -O raw "$NBD_URL" "$T_TMP/via-nbd.img"
diag "NBD copy: ${SECONDS}s"
SECONDS=0
check "both copies are 1 GiB" test "$(stat -c %s "$T_TMP/via-iscsi.img")" -eq $((1 << 30)) \
	-a "$(stat -c %s "$T_TMP/via-nbd.img")" -eq $((1 << 30))
check "iSCSI and NBD see the same bytes" step timeout -k 5 "$TD" \
	bash -c 'same_bytes "$1" "$2"' _ "$T_TMP/via-iscsi.img" "$T_TMP/via-nbd.img"
check "e2fsck -fn is clean on the iSCSI copy" step timeout -k 5 "$TD" e2fsck -fn "$T_TMP/via-iscsi.img"
check "the iSCSI copy holds the 64 MiB file (debugfs cat, sha256)" step timeout -k 5 "$TD" \
	bash -c 'test "$(debugfs -R "cat /big" "$1" 2>/dev/null | sha256sum | cut -d" " -f1)" = \
		"$(grep " big$" "$2" | cut -d" " -f1)"' _ "$T_TMP/via-iscsi.img" "$SUMS"
diag "compare and e2fsck: ${SECONDS}s"
check "sand stops cleanly" sand_stop
check "the backing file holds the same bytes" step timeout -k 5 "$TD" \
	bash -c 'same_bytes "$1" "$2"' _ "$IMG" "$T_TMP/via-nbd.img"
rm -f "$T_TMP/via-iscsi.img" "$T_TMP/via-nbd.img"
t_done
