#!/usr/bin/env bash
# GET LBA STATUS on a thin volume through the daemon: libiscsi's
# GetLBAStatus tests pass (none skipped) on a thin volume LUN, and
# iscsi-test-cu's own checks aside, the volume's map as qemu-img sees it
# over iscsi:// (which asks GET LBA STATUS) follows writes and UNMAP:
# deallocated where nothing is mapped, mapped where data was written.
. "$(dirname "$0")/lib.sh"

for tool in iscsi-test-cu qemu-io qemu-img python3; do
	if ! command -v $tool >/dev/null; then
		skip "get lba status" "$tool not installed"
		t_done
	fi
done
IQN=iqn.2026-11.org.sand:lbas
port=$(free_port)
URL=iscsi://127.0.0.1:$port/$IQN/0

sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
check "disk add" volctl disk add d1 "$T_TMP/d1.img" --size 96M
check "pool create" volctl pool create p --raid 0 d1
check "vol create" volctl vol create v --pool p --size 64M
check "iscsi target create" volctl iscsi target create $IQN
check "iscsi portal add" volctl iscsi portal add 1 127.0.0.1:$port
check "export the volume" volctl export iscsi v --target $IQN --lun 0

# qemu-img map over iscsi:// (libiscsi asks GET LBA STATUS when LBPME is set)
qmap_is() {
	local d=$1 want=$2
	if ! timeout 60 qemu-img map --output=json -f raw "$URL" >"$T_TMP/qmap.json" 2>&1; then
		not_ok "$d (qemu-img map failed)"; sed 's/^/#   /' "$T_TMP/qmap.json"; return
	fi
	python3 - "$T_TMP/qmap.json" >"$T_TMP/qmap.got" <<'EOF'
import json, sys
out = []
for e in json.load(open(sys.argv[1])):
    d = "data" if e["data"] else "zero"
    if out and out[-1][2] == d:
        out[-1][1] += e["length"]
    else:
        out.append([e["start"], e["length"], d])
for o in out:
    print(*o)
EOF
	printf '%s\n' "$want" >"$T_TMP/qmap.want"
	if diff -u "$T_TMP/qmap.want" "$T_TMP/qmap.got" >"$T_TMP/qmap.diff"; then ok "$d"; else
		not_ok "$d"; sed 's/^/#   /' "$T_TMP/qmap.diff"; fi
}

qmap_is "a new volume is deallocated" "0 67108864 zero"
check "write 128k at 1M" timeout 60 qemu-io -f raw "$URL" -c 'write -P 7 1M 128k'
qmap_is "the written chunks are mapped" "0 1048576 zero
1048576 131072 data
1179648 65929216 zero"
check "unmap 64k at 1M" timeout 60 qemu-io -f raw "$URL" -c 'discard 1M 64k'
qmap_is "an unmapped chunk is deallocated again" "0 1114112 zero
1114112 65536 data
1179648 65929216 zero"
check "the data left reads back" timeout 60 qemu-io -f raw -r "$URL" -c 'read -P 7 1088k 64k' \
	-c 'read -P 0 1M 64k'

# libiscsi's GetLBAStatus tests on the thin volume: every one PASS, none
# skipped (the per-test verdicts as tests/func/iscsi_cu.sh reads them)
timeout -k 5 120 iscsi-test-cu -d -V -t SCSI.GetLBAStatus "$URL" >"$T_TMP/cu.log" 2>&1
awk '
/^Suite: / { suite = $2; next }
/^  Test: / { name = $0; sub(/^  Test: /, "", name); sub(/ \.\.\..*$/, "", name)
	cur = suite "." name; skip = 0; done = 0 }
cur != "" && !done && /\[SKIPPED\]/ { skip = 1 }
cur != "" && !done && /^ *passed/ { print cur, skip ? "SKIP" : "PASS"; done = 1 }
cur != "" && !done && /^ *FAILED/ { print cur, "FAIL"; done = 1 }
' "$T_TMP/cu.log" >"$T_TMP/cu.res"
for t in Simple BeyondEol UnmapSingle; do
	check_grep "iscsi-test-cu GetLBAStatus.$t passes on a thin volume" \
		"^GetLBAStatus\.$t PASS$" "$T_TMP/cu.res"
done
check_grep "iscsi-test-cu ran 3 tests, 3 passed" "tests +3 +3 +3 +0" "$T_TMP/cu.log"
check "sand stops cleanly" sand_stop
t_done
