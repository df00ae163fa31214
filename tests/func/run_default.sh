#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# README's first command serves the embedded default: scripts/run-default.sh
# (what `make run` runs) on a scratch directory and free ports. It must come
# up with its disks and exports, answer real clients, stop cleanly, and on a
# second run reuse the same disks and data.
. "$(dirname "$0")/lib.sh"

VAR=$T_TMP/var
ISCSI_PORT=$(free_port)
NBD_PORT=$(free_port)
IQN=iqn.2026-11.io.sand:vol1
ISCSI_URL=iscsi://127.0.0.1:$ISCSI_PORT/$IQN/0
NBD_URL=nbd://127.0.0.1:$NBD_PORT/vol1
SAND_SOCK=$VAR/sand.sock

run_default() {
	local log=$1
	t_bg "$log" env SAND_VAR="$VAR" SAND_ISCSI_ADDR="127.0.0.1:$ISCSI_PORT" \
		SAND_NBD_ADDR="127.0.0.1:$NBD_PORT" scripts/run-default.sh "$BUILD"
	RUN_PID=$T_BG_PID
	wait_for grep -q "serving until Ctrl-C" "$log"
}

stop_default() {
	t_kill "$RUN_PID" && [ "$T_KILL_RC" -eq 0 ]
}

check "first run comes up" run_default "$T_TMP/run1.log"
check_grep "it prints how to connect over iSCSI" "iscsi-inq $ISCSI_URL" "$T_TMP/run1.log"
check "four sparse disks" test "$(volctl --json disk list | grep -c '"name": "disk[0-3]"')" -eq 4
check "a RAID 5 pool over them" sh -c "\"$VOLCTL_BIN\" --socket \"$SAND_SOCK\" --json pool show pool0 | grep -q '\"level\": \"raid5\"'"
check "a thin volume vol1 in it" sh -c "\"$VOLCTL_BIN\" --socket \"$SAND_SOCK\" --json vol show vol1 | grep -q '\"pool\": \"pool0\"'"
check_rc "a pool member disk cannot be removed (the daemon refuses it)" 1 volctl disk remove disk1
check_grep "... because the pool claims it" "in use by .pool0" "$T_TMP/check.out"
check "iscsi-inq answers" timeout 20 iscsi-inq "$ISCSI_URL"
check "qemu-io writes a pattern over iSCSI" timeout 30 qemu-io -f raw \
	-c 'write -P 0x5a 1M 1M' "$ISCSI_URL"
check_grep "it prints how to connect over NBD" "nbdinfo $NBD_URL" "$T_TMP/run1.log"
check "nbdinfo answers" timeout 20 nbdinfo "$NBD_URL"
check "the NBD export sees the iSCSI write" timeout 30 qemu-io -f raw \
	-c 'read -P 0x5a 1M 1M' "$NBD_URL"
check "stops on SIGTERM with status 0" stop_default
check_grep "sand stopped cleanly" "info core: stopped" "$T_TMP/run1.log"
check_fail "no sanitizer report" grep -q Sanitizer "$T_TMP/run1.log"

check "second run comes up" run_default "$T_TMP/run2.log"
check "the data written before is still there" timeout 30 qemu-io -f raw \
	-c 'read -P 0x5a 1M 1M' "$ISCSI_URL"
check "unwritten blocks read as zeros" timeout 30 qemu-io -f raw \
	-c 'read -P 0 0 1M' "$ISCSI_URL"
check "still four disks, no duplicates" test "$(volctl --json disk list | grep -c '"name": "disk')" -eq 4
check "still one pool and one volume" test "$(volctl --json vol list | grep -c '"name": "vol')" -eq 1
check "stops again" stop_default
t_done
