#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Live migration over iSCSI: a qemu guest writes to a sand thin volume (RAID 5
# pool) through iSCSI; two qemu processes stand for two hosts, each with its
# own initiator name and its own portal (127.0.0.2 and 127.0.0.3, two target
# portal groups); the guest migrates from a to b while it writes, goes on on
# b, and afterwards every block it reported durable is read back intact from
# the host side. Prints the migration time and downtime. See doc/migration.md.
T_PROTO=iscsi
MIG_TOOLS=(qemu-img)
MIG_READER="qemu-img convert from iscsi://127.0.0.2"
. "$(dirname "$0")/../migration/migrate.inc"

port=$(free_port)

mig_export() {
	check "iscsi target create" volctl iscsi target create $MIG_IQN
	check "portal 127.0.0.2:$port in group 1 (host a's path)" \
		volctl iscsi portal add 1 127.0.0.2:$port
	check "portal 127.0.0.3:$port in group 2 (host b's path)" \
		volctl iscsi portal add 2 127.0.0.3:$port
	check "export vm as lun 0" volctl export iscsi vm --target $MIG_IQN --lun 0
	if [ -n "${MIG_SABOTAGE:-}" ]; then
		check "sabotage: another volume, vmb, as lun 1 for host b" bash -c \
			"'$VOLCTL_BIN' --socket '$SAND_SOCK' vol create vmb --pool tank --size 32M &&
			'$VOLCTL_BIN' --socket '$SAND_SOCK' export iscsi vmb --target $MIG_IQN --lun 1"
	fi
}

# host a logs in through 127.0.0.2 as host-a, host b through 127.0.0.3 as host-b
mig_drive() {
	local addr=127.0.0.2 init=$MIG_INIT_A lun=0
	[ "$1" = b ] && { addr=127.0.0.3; init=$MIG_INIT_B; }
	[ "$1" = b ] && [ -n "${MIG_SABOTAGE:-}" ] && lun=1
	echo "driver=iscsi,node-name=disk0,transport=tcp,portal=$addr:$port,target=$MIG_IQN,lun=$lun,initiator-name=$init"
}

# before the migration both hosts have the LUN open, each on its own path
mig_both_open() {
	volctl iscsi sessions >"$T_TMP/sessions" 2>&1
	sed 's/^/# sessions: /' "$T_TMP/sessions"
	check_grep "two sessions at once: host a's" "session $MIG_INIT_A .*to $MIG_IQN" "$T_TMP/sessions"
	check_grep "... and host b's" "session $MIG_INIT_B .*to $MIG_IQN" "$T_TMP/sessions"
	check_grep "... through portal 127.0.0.2" "to portal 127.0.0.2:$port" "$T_TMP/sessions"
	check_grep "... and portal 127.0.0.3" "to portal 127.0.0.3:$port" "$T_TMP/sessions"
}

mig_read() {
	timeout 120 qemu-img convert -f raw -O raw "iscsi://127.0.0.2:$port/$MIG_IQN/0" "$1"
}

# the snapshots as LUNs 2, 3 ... (no session is left by then)
snap_lun=2
mig_read_snap() {
	volctl export iscsi "vm@$1" --target $MIG_IQN --lun $snap_lun --readonly &&
		timeout 120 qemu-img convert -f raw -O raw "iscsi://127.0.0.3:$port/$MIG_IQN/$snap_lun" "$2"
	local rc=$?
	snap_lun=$((snap_lun + 1))
	return $rc
}

mig_run
t_done
