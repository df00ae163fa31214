#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Live migration over NBD: as migrate_iscsi.sh, with the volume exported over
# NBD on two listeners (127.0.0.2 and 127.0.0.3, one per host) and read back
# with nbdcopy. See doc/migration.md.
T_PROTO=nbd
MIG_TOOLS=(nbdcopy)
MIG_READER="nbdcopy from nbd://127.0.0.3"
. "$(dirname "$0")/../migration/migrate.inc"

port=$(free_port)

mig_export() {
	check "nbd listen 127.0.0.2:$port (host a's)" volctl nbd listen 127.0.0.2:$port
	check "nbd listen 127.0.0.3:$port (host b's)" volctl nbd listen 127.0.0.3:$port
	check "export nbd vm" volctl export nbd vm
	if [ -n "${MIG_SABOTAGE:-}" ]; then
		check "sabotage: another volume, vmb, exported for host b" bash -c \
			"'$VOLCTL_BIN' --socket '$SAND_SOCK' vol create vmb --pool tank --size 32M &&
			'$VOLCTL_BIN' --socket '$SAND_SOCK' export nbd vmb"
	fi
}

mig_drive() {
	local addr=127.0.0.2 export=vm
	[ "$1" = b ] && addr=127.0.0.3
	[ "$1" = b ] && [ -n "${MIG_SABOTAGE:-}" ] && export=vmb
	echo "driver=nbd,node-name=disk0,server.type=inet,server.host=$addr,server.port=$port,export=$export"
}

# before the migration both hosts are connected, each through its listener
mig_both_open() {
	volctl export list >"$T_TMP/exports" 2>&1
	sed 's/^/# exports: /' "$T_TMP/exports"
	[ -n "${MIG_SABOTAGE:-}" ] ||
		check_grep "two clients on the export at once" "^nbd +vm +vm +32M +no +2 " "$T_TMP/exports"
	ss -tn state established "( dport = :$port )" >"$T_TMP/ss" 2>&1
	check_grep "... host a's through 127.0.0.2" "127.0.0.2:$port" "$T_TMP/ss"
	check_grep "... host b's through 127.0.0.3" "127.0.0.3:$port" "$T_TMP/ss"
}

mig_read() {
	timeout 120 nbdcopy "nbd://127.0.0.3:$port/vm" "$1"
}

mig_read_snap() {
	volctl export nbd "vm@$1" --name "$1" --readonly &&
		timeout 120 nbdcopy "nbd://127.0.0.2:$port/$1" "$2"
}

mig_run
t_done
