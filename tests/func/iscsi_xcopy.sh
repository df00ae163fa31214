#!/usr/bin/env bash
# EXTENDED COPY through the daemon (build/tests/iscsi_xcopy_client on
# libiscsi; sg_xcopy is not available): between two thin volumes of one
# pool, across pools, within one volume (overlapping, both directions), to
# a read-only LU (DATA PROTECT), to a LU reserved by another initiator
# (RESERVATION CONFLICT), out of range (COPY ABORTED); the data checked
# with qemu-io reads of the pattern written, and COPY STATUS after a copy.
. "$(dirname "$0")/lib.sh"

CLI=$BUILD/tests/iscsi_xcopy_client
PR=$BUILD/tests/iscsi_pr_client
[ -x "$CLI" ] || { skip "extended copy" "$CLI not built"; t_done; }
command -v qemu-io >/dev/null || { skip "extended copy" "qemu-io not installed"; t_done; }
IQN=iqn.2026-11.org.sand:xcopy
HA=iqn.2026-11.org.sand.test:host-a
HB=iqn.2026-11.org.sand.test:host-b
port=$(free_port)
P=127.0.0.1:$port
url() { echo "iscsi://$P/$IQN/$1"; }

# xc NAME EXPECTED VIA_LUN SRC_LUN DST_LUN SRC_LBA DST_LBA NBLOCKS: the
# copy, sent to VIA_LUN, prints EXPECTED (lines joined with "; ")
xc() {
	local name=$1 want=$2 got
	shift 2
	got=$(timeout 60 "$CLI" "$(url "$1")" $HA "${@:2}" 2>&1 | paste -sd';' - | sed 's/;/; /g')
	if [ "$got" = "$want" ]; then
		ok "$name"
	else
		not_ok "$name"
		diag "expected: $want"
		diag "got:      $got"
	fi
}
# qio LUN CMDS...: qemu-io on LUN; fails on any error or pattern mismatch
qio() {
	local lun=$1 a=() c
	shift
	for c in "$@"; do
		if [ "$c" = -r ]; then a+=(-r); else a+=(-c "$c"); fi
	done
	timeout 60 qemu-io -f raw "$(url "$lun")" "${a[@]}" >"$T_TMP/qio" 2>&1 || { cat "$T_TMP/qio"; return 1; }
	cat "$T_TMP/qio"
	! grep -qiE "error|fail|denied|not permitted|mismatch" "$T_TMP/qio"
}

sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
check "disk add d1" volctl disk add d1 "$T_TMP/d1.img" --size 64M
check "disk add d2" volctl disk add d2 "$T_TMP/d2.img" --size 64M
check "pool p1" volctl pool create p1 --raid 0 d1
check "pool p2" volctl pool create p2 --raid 0 d2
check "vol v1 (p1)" volctl vol create v1 --pool p1 --size 40M
check "vol v2 (p1)" volctl vol create v2 --pool p1 --size 40M
check "vol v3 (p2)" volctl vol create v3 --pool p2 --size 40M
check "target create" volctl iscsi target create $IQN
check "portal" volctl iscsi portal add 1 $P
check "export v1 lun 0" volctl export iscsi v1 --target $IQN --lun 0
check "export v2 lun 1" volctl export iscsi v2 --target $IQN --lun 1
check "export v3 lun 2" volctl export iscsi v3 --target $IQN --lun 2
check "snapshot v1@s1" volctl snapshot v1 s1
check "export v1@s1 lun 3 (read-only)" volctl export iscsi v1@s1 --target $IQN --lun 3

check "write patterns to v1" qio 0 "write -P 0xa1 0 4M" "write -P 0xa2 4M 4M" "write -P 0xa3 8M 100k"

# data_used of pool $1, in bytes
used() { volctl --json pool show "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data_used"])'; }

# same pool: 4 MiB (8192 blocks) from v1 at 0 to v2 at 1 MiB: whole
# chunks, shared, not copied (the pool's data use does not change)
u0=$(used p1)
xc "copy v1 -> v2 (same pool)" "xcopy: GOOD; status: 1 1 4194304" 0 0 1 0 2048 8192
u1=$(used p1)
if [ -n "$u0" ] && [ "$u0" = "$u1" ]; then
	ok "the same-pool copy allocated no data ($u0 bytes used before and after)"
else
	not_ok "the same-pool copy allocated no data"; diag "data_used $u0 -> $u1"
fi
check "v2 holds the copy, zeros around it" qio 1 "read -P 0 0 1M" "read -P 0xa1 1M 4M" \
	"read -P 0 5M 1M"
# not chunk-aligned: the ends are copied, the chunks between shared
xc "copy v1 -> v2, unaligned (head and tail copied)" "xcopy: GOOD; status: 1 1 4194304" \
	0 0 1 8292 24676 8192
check "v2 holds it" qio 1 "read -P 0xa2 12338k 4046k" "read -P 0xa3 16384k 50k"
check "a write to a shared chunk through v2 leaves v1 alone" qio 1 "write -P 0x5c 2M 4k"
check "... v1 reads as before" qio 0 "read -P 0xa1 0 4M"
check "... and v2 reads the write" qio 1 "read -P 0xa1 1M 1M" "read -P 0x5c 2M 4k" \
	"read -P 0xa1 2052k 3068k"
# across pools, several segments (70000 blocks: 2 descriptors), sent to
# the source LUN naming a LUN of the same target in another pool
xc "copy v1 -> v3 (another pool, 2 segments)" "xcopy: GOOD; status: 1 2 35840000" \
	0 0 2 0 100 70000
u2=$(used p2)
if [ -n "$u2" ] && [ "$u2" -ge 35840000 ]; then
	ok "the copy to another pool wrote data there ($u2 bytes used)"
else
	not_ok "the copy to another pool wrote data there"; diag "data_used $u2"
fi
check "v3 holds the copy" qio 2 "read -P 0 0 51200" "read -P 0xa1 51200 4M" \
	"read -P 0xa2 4245504 4M" "read -P 0xa3 8439808 100k" \
	"read -P 0 8542208 27349000"
xc "copy v3 -> v1 (across pools, the other way)" "xcopy: GOOD; status: 1 1 1048576" \
	2 2 0 100 24576 2048
check "v1 got it" qio 0 "read -P 0xa1 12M 1M" "read -P 0xa2 4M 4M"
# within one LU, overlapping, destination above and below the source
xc "overlapping copy upwards in v1" "xcopy: GOOD; status: 1 1 4194304" 0 0 0 8192 9216 8192
check "... the source as it was, moved up by 512 KiB" qio 0 \
	"read -P 0xa2 4M 512k" "read -P 0xa2 4608k 4M"
xc "overlapping copy downwards in v1" "xcopy: GOOD; status: 1 1 4194304" 0 0 0 9216 8192 8192
check "... and back" qio 0 "read -P 0xa2 4M 4M"
# refusals
xc "to a read-only snapshot: DATA PROTECT" "xcopy: SENSE 7/27/00" 0 0 3 0 0 8
xc "past the end of the destination: COPY ABORTED" "xcopy: SENSE a/00/00" 0 0 1 0 81912 16
check "the snapshot (taken before the writes) still reads zeros" qio 3 -r "read -P 0 0 4M"
if [ -x "$PR" ]; then
	check "B registers and reserves v2 (write exclusive)" timeout 30 "$PR" "$(url 1)" $HB \
		register 0xb , reserve 0xb we
	xc "to a LU another initiator reserved: RESERVATION CONFLICT" "xcopy: CONFLICT" 0 0 1 0 0 8
	xc "from it, sent to the destination LU (reads are allowed)" "xcopy: GOOD; status: 1 1 4096" 0 1 0 2048 16384 8
	check "B releases" timeout 30 "$PR" "$(url 1)" $HB release 0xb we , register 0
else
	skip "reservation conflict" "$PR not built"
fi
check "volctl check p1 clean" volctl check p1
check "volctl check p2 clean" volctl check p2
check "unexport v2 (no copy holds it)" volctl unexport iscsi $IQN --lun 1
if sand_stop; then ok "sand stops cleanly"; else not_ok "sand stops cleanly"; fi
t_done
