#!/usr/bin/env bash
# volctl check: online (through the daemon) and --offline (the daemon
# stopped, the RAID 1 set assembled from its two member files), with and
# without --repair, on metadata damaged on purpose (tests/func/thin_corrupt.c):
# wrong counts are found, named, and repaired (offline and online), the data
# read back intact with qemu-io over NBD; a damaged mapping tree is named
# and rebuilt by --repair from what can be read (online, exported, and
# offline), or dropped (--drop-damaged, offline); a read-only check
# changes no byte; the offline check refuses devices the daemon has open;
# after a SIGKILL the RAID set needs a resync, which only --repair writes.
. "$(dirname "$0")/lib.sh"

for tool in qemu-io; do
	if ! command -v $tool >/dev/null; then
		skip "volctl check" "$tool not installed"
		t_done
	fi
done
CORRUPT=$(realpath -m "$BUILD/tests/thin-corrupt")
port=$(free_port)
URL=nbd://127.0.0.1:$port
A=$T_TMP/a.img
B=$T_TMP/b.img

qio() {
	timeout 60 qemu-io -f raw "$@" >"$T_TMP/qio" 2>&1 || { cat "$T_TMP/qio"; return 1; }
	cat "$T_TMP/qio"
	! grep -qiE "error|fail|read-only|protected|denied|not permitted|pattern" "$T_TMP/qio"
}
offline() { "$VOLCTL_BIN" check --offline "$@"; }
data_intact() {
	qio "$URL/v" -r -c 'read -P 0x31 0 1M' -c 'read -P 0x32 1M 1M' -c 'read -P 0 2M 1M' &&
		qio "$URL/snap" -r -c 'read -P 0x31 0 2M'
}

sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
check "disk add a" volctl disk add a "$A" --size 40M
check "disk add b" volctl disk add b "$B" --size 40M
check "pool create --raid 1" volctl pool create p --raid 1 a b
check "vol create v" volctl vol create v --pool p --size 64M
check "nbd listen" volctl nbd listen 127.0.0.1:$port
check "export nbd v" volctl export nbd v
check "write 2M" qio "$URL/v" -c 'write -P 0x31 0 2M' -c flush
check "snapshot v s" volctl snapshot v s
check "write 1M over it" qio "$URL/v" -c 'write -P 0x32 1M 1M' -c flush
check "export nbd v@s as snap" volctl export nbd v@s --name snap
check "the data reads back" data_intact

check "check p: clean" volctl check p
check_grep "... says so" "^pool p: clean: 2 volumes, [0-9]+ mappings, 0 errors$" "$T_TMP/check.out"
check "pool check p (the old form) too" volctl pool check p
check "check p --repair on a clean pool: nothing to do" volctl check p --repair
check_grep "... says so" "^pool p: clean: " "$T_TMP/check.out"
check "check --json" volctl --json check p
check_grep "... clean, no problems" '"problems": \[\]' "$T_TMP/check.out"
check_rc "check of an unknown pool" 1 volctl check nope
check_rc "check without a pool" 2 volctl check
check_rc "--offline while sand holds the disks: refused" 1 offline "$A" "$B"
check_grep "... says who" "is open in process [0-9]+ \(sand\): stop it first" "$T_TMP/check.out"
check_rc "--offline --repair too" 1 offline --repair "$A" "$B"

check "sand stops" sand_stop
sum0=$(md5sum "$A" "$B")
check "check --offline: clean" offline "$A" "$B"
check_grep "... the RAID set was assembled" "^pool on p \(RAID set\):$" "$T_TMP/check.out"
check_grep "... clean" "^clean: 2 volumes" "$T_TMP/check.out"
check "... the members in the other order" offline "$B" "$A"
check_rc "--offline with one member of two: refused" 1 offline "$A"
check_grep "... says why" "has 2 active members, 1 given: give them all" "$T_TMP/check.out"
check_rc "--offline with a file that is no pool" 1 offline "$T_TMP/none"
: >"$T_TMP/empty.img"; truncate -s 8M "$T_TMP/empty.img"
check_rc "--offline on a device that holds no pool" 1 offline "$T_TMP/empty.img"
check_grep "... says so" "no thin pool can be opened" "$T_TMP/check.out"
check "a read-only check wrote nothing" test "$(md5sum "$A" "$B")" = "$sum0"

# ---- wrong counts, repaired offline ----
check "damage the counts" "$CORRUPT" counts "$A" "$B"
read -r _ _ leak _ _ _ high _ _ _ _ _ mleak _ <"$T_TMP/check.out"
diag "$(cat "$T_TMP/check.out")"
check_rc "check --offline: damaged" 1 offline "$A" "$B"
check_grep "... the leaked chunk" "data chunk $leak: count 1, 0 references found \(leaked" \
	"$T_TMP/check.out"
check_grep "... the chunk counted too high" "data chunk $high: count [0-9]+, [0-9]+ references found \(too high" \
	"$T_TMP/check.out"
check_grep "... the leaked metadata block" "metadata block $mleak: count 2, 0 references" \
	"$T_TMP/check.out"
check_grep "... a summary" "^DAMAGED: 2 volumes, [0-9]+ mappings, 3 errors \(--repair can fix them\)$" \
	"$T_TMP/check.out"
sum1=$(md5sum "$A" "$B")
check "check --offline --repair" offline --repair "$A" "$B"
check_grep "... says what it did" "repaired: 3 counts rewritten from the trees; 1 leaked metadata blocks and 1 leaked data chunks returned" \
	"$T_TMP/check.out"
check_grep "... clean now" "^repaired: 3 counts rewritten; clean now" "$T_TMP/check.out"
check "... it wrote" test "$(md5sum "$A" "$B")" != "$sum1"
check "check --offline: clean again" offline "$A" "$B"

sand_start --reactors 2 || { not_ok "sand starts after the repair"; t_done; }
ok "sand starts after the repair"
check "the data is intact" data_intact
check "check p: clean" volctl check p
check "sand stops" sand_stop

# ---- wrong counts, repaired online ----
check "damage the counts again" "$CORRUPT" counts "$A" "$B"
sand_start --reactors 2 || { not_ok "sand starts on damaged counts"; t_done; }
ok "sand starts on damaged counts"
check_rc "check p: damaged" 1 volctl check p
check_grep "... named" "data chunk [0-9]+: count 1, 0 references found \(leaked" "$T_TMP/check.out"
check "check p --repair" volctl check p --repair
check_grep "... says what it did" "^pool p: repaired: 3 counts rewritten; clean now" "$T_TMP/check.out"
check "check p: clean" volctl check p
check "the data is intact" data_intact
check "write more after the repair" qio "$URL/v" -c 'write -P 0x33 4M 4M' -c flush
check "... reads back" qio "$URL/v" -r -c 'read -P 0x33 4M 4M'
check "the data is intact" data_intact
check "vol show v@s" volctl --json vol show v@s
sid=$(sed -n 's/^ *"id": \([0-9]*\),*$/\1/p' "$T_TMP/check.out")
check "sand stops" sand_stop

# ---- a daemon killed while writing: the RAID set needs a resync ----
sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
# a write first: the RAID set is marked dirty until it is closed cleanly
check "write after the start" qio "$URL/v" -c 'write -P 0x33 4M 64k' -c flush
t_bg "$T_TMP/writer.log" timeout 60 qemu-io -f raw "$URL/v" -c 'write -P 0x35 16M 8M'
writer=$T_BG_PID
sleep 0.5
{ kill -KILL "$SAND_PID"; wait "$SAND_PID"; } 2>/dev/null	# (no "Killed" line)
SAND_PID=
wait "$writer" 2>/dev/null
ok "sand killed (SIGKILL) while qemu-io writes"
# its listening sockets may outlive it a moment (held by I/O the kernel is
# still cancelling): a new sand would take them for another one running
gone() {
	python3 - "$SAND_SOCK" "$port" <<'PY'
import socket, sys
u = socket.socket(socket.AF_UNIX)
try:
    u.connect(sys.argv[1])
    sys.exit(1)
except OSError:
    pass
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", int(sys.argv[2])))
PY
}
check "its sockets are gone" wait_for gone
check_rc "check --offline after the kill: refused read-only" 1 offline "$A" "$B"
check_grep "... the set needs a resync" "needs a resync, a write: run with --repair" \
	"$T_TMP/check.out"
check "check --offline --repair: resynchronizes the set, then checks" offline --repair "$A" "$B"
check_grep "... clean" "^clean: 2 volumes" "$T_TMP/check.out"
check "check --offline: clean, read-only again" offline "$A" "$B"
sand_start --reactors 2 || { not_ok "sand starts after the kill"; t_done; }
ok "sand starts after the kill"
check "the flushed data is intact" data_intact
check "... and what was written after the repair" qio "$URL/v" -r -c 'read -P 0x33 4M 4M'
check "sand stops" sand_stop

# ---- a damaged tree: named; --repair rebuilds it (online, exported) ----
check "damage the snapshot's mapping tree (id $sid)" "$CORRUPT" tree "$sid" "$A" "$B"
check_rc "check --offline: damaged" 1 offline "$A" "$B"
check_grep "... names the volume" "volume 'v@s' \(id $sid\): its mapping tree is damaged" \
	"$T_TMP/check.out"
sand_start --reactors 2 || { not_ok "sand starts with a damaged tree"; t_done; }
ok "sand starts with a damaged tree"
check "v is intact" qio "$URL/v" -r -c 'read -P 0x31 0 1M' -c 'read -P 0x32 1M 1M'
check_rc "check p: damaged, online too" 1 volctl check p
check_grep "... names the volume" "volume 'v@s' \(id $sid\): its mapping tree is damaged" \
	"$T_TMP/check.out"
check_rc "--drop-damaged needs --offline" 2 volctl check p --repair --drop-damaged
check "check p --repair: rebuilds the tree, v@s exported" volctl check p --repair
check_grep "... says what was lost" "volume 'v@s': chunks 0-1023: node [0-9]+ cannot be read" \
	"$T_TMP/check.out"
check_grep "... and what it rebuilt" "volume 'v@s' \(id $sid\): its mapping tree rebuilt: 0 mappings salvaged" \
	"$T_TMP/check.out"
check_grep "... clean now" "^pool p: repaired: [0-9]+ counts rewritten; clean now" "$T_TMP/check.out"
check "check p: clean" volctl check p
check "v is intact" qio "$URL/v" -r -c 'read -P 0x31 0 1M' -c 'read -P 0x32 1M 1M' \
	-c 'read -P 0x33 4M 4M'
check "the snapshot's lost chunks read as zeros" qio "$URL/snap" -r -c 'read -P 0 0 2M'
check "sand stops" sand_stop

# ---- offline: --repair rebuilds it too ----
check "damage the snapshot's mapping tree again" "$CORRUPT" tree "$sid" "$A" "$B"
check "check --offline --repair: rebuilds the tree" offline --repair "$A" "$B"
check_grep "... says what was lost" "volume 'v@s': chunks 0-1023: node [0-9]+ cannot be read" \
	"$T_TMP/check.out"
check_grep "... clean now" "^repaired: [0-9]+ counts rewritten, 1 damaged tree\(s\) rebuilt \(0 mappings salvaged, 0 lost, 1 chunk range\(s\) unreadable\); clean now \(2 volumes" \
	"$T_TMP/check.out"
check "check --offline: clean" offline "$A" "$B"
check "damage the snapshot's mapping tree once more" "$CORRUPT" tree "$sid" "$A" "$B"

# ---- ... unless the damaged volume is dropped (offline) ----
check_rc "--drop-damaged needs --repair" 2 offline --drop-damaged "$A" "$B"
check "check --offline --repair --drop-damaged" offline --repair --drop-damaged "$A" "$B"
check_grep "... says what it dropped" "dropped volume 'v@s' \(id $sid\): its mapping tree was damaged; its data is lost" \
	"$T_TMP/check.out"
check_grep "... clean now" "^repaired: [0-9]+ counts rewritten, 1 damaged volume\(s\) dropped; clean now \(1 volumes" \
	"$T_TMP/check.out"
check "check --offline: clean" offline "$A" "$B"
sand_start --reactors 2 || { not_ok "sand starts without the dropped snapshot"; t_done; }
ok "sand starts without the dropped snapshot"
check "v is intact" qio "$URL/v" -r -c 'read -P 0x31 0 1M' -c 'read -P 0x32 1M 1M' \
	-c 'read -P 0x33 4M 4M'
check "vol list" volctl vol list
check_fail "... v@s is gone" grep -q "^v@s " "$T_TMP/check.out"
check "check p: clean" volctl check p
check "a new snapshot" volctl snapshot v s2
check "write after it" qio "$URL/v" -c 'write -P 0x36 0 1M' -c flush
check "check p: clean" volctl check p
check "sand stops" sand_stop
t_done
