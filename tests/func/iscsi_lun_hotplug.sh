#!/usr/bin/env bash
# A LUN unexported while initiators write to it and to another LUN of the
# same target (doc/iscsi.md, "LUNs under live sessions"): qemu-io keeps
# writing to LUN 0 and LUN 1 of one target, LUN 1 is unexported without
# --force; LUN 0's writers see no error and their data reads back, LUN 1's
# commands fail from then on (LOGICAL UNIT NOT SUPPORTED), the volume is
# released and can be deleted at once, a LUN added under the live session
# works (and raises the unit attention on a live session), and the daemon
# stops cleanly (no sanitizer report under ASan).
. "$(dirname "$0")/lib.sh"

if ! command -v qemu-io >/dev/null; then
	skip "lun hotplug" "qemu-io not installed"
	t_done
fi
IQN=iqn.2026-11.org.sand:hotplug
port=$(free_port)
URL=iscsi://127.0.0.1:$port/$IQN

# writer LUN PATTERN TAG: qemu-io sessions one after another until
# $T_TMP/stop exists, each writing 64 KiB blocks of PATTERN over the first
# 4 MiB; one line per session in $T_TMP/TAG.runs: "ok" or "fail", with
# qemu-io's output kept in $T_TMP/TAG.N.
writer() {
	local lun=$1 pat=$2 tag=$3 n=0 cmds=() off
	for ((off = 0; off < 4 << 20; off += 65536)); do
		cmds+=(-c "write -P $pat $off 64k" -c "sleep 10")
	done
	while [ ! -e "$T_TMP/stop" ] && [ "$n" -lt 2000 ]; do
		n=$((n + 1))
		if timeout 60 qemu-io -f raw "${cmds[@]}" "$URL/$lun" >"$T_TMP/$tag.$n" 2>&1 &&
		   ! grep -qE "(write|read) failed|Could not|error" "$T_TMP/$tag.$n"; then
			echo ok >>"$T_TMP/$tag.runs"
		else
			echo fail >>"$T_TMP/$tag.runs"
		fi
	done
}

runs() { local n; n=$(grep -c "^$2" "$T_TMP/$1.runs" 2>/dev/null); echo "${n:-0}"; }

sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
check "disk add" volctl disk add d1 "$T_TMP/d1.img" --size 128M
check "pool create" volctl pool create p --raid 0 d1
check "vol create v0" volctl vol create v0 --pool p --size 32M
check "vol create v1" volctl vol create v1 --pool p --size 32M
check "iscsi target create" volctl iscsi target create $IQN
check "iscsi portal add" volctl iscsi portal add 1 127.0.0.1:$port
check "export v0 as lun 0" volctl export iscsi v0 --target $IQN --lun 0
check "export v1 as lun 1" volctl export iscsi v1 --target $IQN --lun 1

# in the background as subshells of ours (each qemu-io is bounded by timeout)
writer 0 0x5a w0 >"$T_TMP/w0.log" 2>&1 &
w0=$!
writer 1 0x6b w1 >"$T_TMP/w1.log" 2>&1 &
w1=$!
T_PIDS+=("$w0" "$w1")
# and one long session on each LUN, under an initiator name of its own: a
# write every 1.5 s for 12 s, so that the unexport falls inside it
long_session() {
	local lun=$1 pat=$2 cmds=() i
	for ((i = 0; i < 8; i++)); do
		cmds+=(-c "write -P $pat $((i * 65536)) 64k" -c "sleep 1500")
	done
	timeout 120 qemu-io --image-opts "${cmds[@]}" "driver=iscsi,transport=tcp,lun=$lun,portal=127.0.0.1:$port,target=$IQN,initiator-name=iqn.2026-11.org.sand:long$lun"
}
long_session 0 0x5a >"$T_TMP/long0" 2>&1 &
l0=$!
long_session 1 0x6b >"$T_TMP/long1" 2>&1 &
l1=$!
T_PIDS+=("$l0" "$l1")
check "both LUNs are being written" wait_for bash -c \
	"[ \$(grep -c ^ok '$T_TMP/w0.runs') -ge 2 ] && [ \$(grep -c ^ok '$T_TMP/w1.runs') -ge 2 ]"
check "the long sessions are logged in" wait_for bash -c "[ \$('$VOLCTL_BIN' --socket \
	'$SAND_SOCK' iscsi sessions | grep -c 'session iqn.2026-11.org.sand:long') -eq 2 ]"
check "sessions are listed" bash -c "'$VOLCTL_BIN' --socket '$SAND_SOCK' iscsi sessions | grep -q $IQN"
check "unexport lun 1 under live sessions (no --force)" volctl unexport iscsi $IQN --lun 1
w0_at=$(runs w0 ok)
check "the volume is released: vol delete v1" volctl vol delete v1
volctl iscsi list >"$T_TMP/list" 2>&1
check_fail "lun 1 is no longer listed" grep -q "lun 1 " "$T_TMP/list"
# LUN 0 goes on; LUN 1's writers now fail
check "lun 0 keeps being written after the unexport" wait_for bash -c \
	"[ \$(grep -c ^ok '$T_TMP/w0.runs') -ge $((w0_at + 3)) ]"
check "lun 1's writes fail after the unexport" wait_for bash -c \
	"[ \$(grep -c ^fail '$T_TMP/w1.runs') -ge 1 ]"
wait "$l0"
check "the long session on lun 0 saw no error" test $? -eq 0
check_grep "... it was told REPORTED LUNS DATA HAS CHANGED (and went on)" \
	"UNIT_ATTENTION.*0x3f0e" "$T_TMP/long0"
check_fail "... none of its writes failed" grep -qE "failed|error" "$T_TMP/long0"
wait "$l1"
check_grep "the long session on lun 1 had its later writes refused" \
	"WRITE10/16 failed.*LOGICAL_UNIT_NOT_SUPPORTED" "$T_TMP/long1"
touch "$T_TMP/stop"
t_kill "$w0" 120 && t_kill "$w1" 120
diag "lun 0: $(runs w0 ok) sessions ok, $(runs w0 fail) failed;" \
	"lun 1: $(runs w1 ok) ok, $(runs w1 fail) failed"
check "no write to lun 0 ever failed" test "$(runs w0 fail)" -eq 0
if [ "$(runs w0 fail)" -ne 0 ]; then
	f=$(grep -n fail "$T_TMP/w0.runs" | head -1 | cut -d: -f1)
	sed 's/^/#   /' "$T_TMP/w0.$f" | tail -5
fi
check "lun 0 reads back its pattern" \
	bash -c "timeout 60 qemu-io -f raw -r -c 'read -P 0x5a 0 4M' '$URL/0' >'$T_TMP/r0' 2>&1 &&
		! grep -qE 'failed|Pattern verification|error' '$T_TMP/r0'"
# the writers have stopped: a new LUN 1 under a live session on LUN 0
long_session 0 0x5a >"$T_TMP/long0b" 2>&1 &
l0=$!
T_PIDS+=("$l0")
check "vol create v2" volctl vol create v2 --pool p --size 16M
check "a long session on lun 0 is logged in" wait_for bash -c "[ \$('$VOLCTL_BIN' --socket \
	'$SAND_SOCK' iscsi sessions | grep -c 'session iqn.2026-11.org.sand:long0') -eq 1 ]"
check "a new lun 1 under the live session" volctl export iscsi v2 --target $IQN --lun 1
check "the new lun 1 is written and read back" \
	bash -c "timeout 60 qemu-io -f raw -c 'write -P 0x7c 0 1M' -c 'read -P 0x7c 0 1M' \
		'$URL/1' >'$T_TMP/r1' 2>&1 && ! grep -qE 'failed|Pattern verification|error' '$T_TMP/r1'"
wait "$l0"
check "the live session on lun 0 saw no error" test $? -eq 0
check_grep "... it was told REPORTED LUNS DATA HAS CHANGED for the added LUN" \
	"UNIT_ATTENTION.*0x3f0e" "$T_TMP/long0b"
check "unexport the new lun 1" volctl unexport iscsi $IQN --lun 1
check "vol delete v2" volctl vol delete v2
check "sand stops cleanly" sand_stop
t_done
