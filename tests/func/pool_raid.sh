#!/usr/bin/env bash
# RAID operations through the daemon, data checked over NBD with qemu-io:
# a hot spare taken when a member is taken out (under a writer); scrub,
# scrub --repair, scrub cancel; a rate-limited rebuild with progress in
# pool show, stopped by a restart and resumed past 0; restart with the
# members listed in another order; a member file removed: degraded, data
# intact; a member file moved, found by --scan; a stale member copy put
# back: not trusted, rebuilt; a RAID 0 with
# a missing member refuses to start and names it.
. "$(dirname "$0")/lib.sh"

for tool in qemu-io python3; do
	if ! command -v $tool >/dev/null; then
		skip "pool raid operations" "$tool not installed"
		t_done
	fi
done
port=$(free_port)
URL=nbd://127.0.0.1:$port/v

qio() {
	timeout 60 qemu-io -f raw "$@" >"$T_TMP/qio" 2>&1 || { cat "$T_TMP/qio"; return 1; }
	cat "$T_TMP/qio"
	! grep -qiE "error|fail|read-only|protected|denied|not permitted|pattern" "$T_TMP/qio"
}
# show: pool show p (human) into $T_TMP/show; js KEY...: a value from pool show --json
show() { volctl pool show p >"$T_TMP/show" 2>&1; }
js() {
	volctl --json pool show p | python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1:]:
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)' "$@"
}
resumed() { local r; r=$(js job resumed_at); [ -n "$r" ] && [ "$r" -gt 0 ]; }
moved() { local r; r=$(js job done); [ -n "$r" ] && [ "$r" -gt 0 ]; }
bm_clean() { [ "$(js bitmap dirty)" = 0 ]; }
state_is() { [ "$(js state)" = "$1" ]; }
job_is() { [ "$(js job kind)" = "$1" ]; }
last_is() { [ "$(js job last kind)" = "$1" ] && [ "$(js job last result)" = "$2" ]; }
verify_all() {
	qio "$URL" -r -c 'read -P 0x61 0 8M' -c 'read -P 0x62 8M 8M' -c 'read -P 0x63 16M 8M'
}

sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
for d in a b c d e f g h; do
	check "disk add $d" volctl disk add $d "$T_TMP/$d.img" --size 24M
done
check "pool create --raid 5 with a spare" volctl pool create p --raid 5 --strip 16K --spare e a b c d
check_grep "... over 4 disks" "raid5 over 4 disks" "$T_TMP/check.out"
show
check_grep "pool show lists the spare" "^spare +e$" "$T_TMP/show"
check_rc "a spare is in use by the pool" 1 volctl pool create q --raid 1 e f
check_grep "... says so" "in use by pool 'p'" "$T_TMP/check.out"
check_rc "a disk given twice is refused" 1 volctl pool create q --raid 1 f f
check_grep "... says so" "disk 'f' is given twice" "$T_TMP/check.out"
check_rc "a spare given twice is refused" 1 volctl pool create q --raid 1 --spare h --spare h f g
check_grep "... says so" "disk 'h' is given twice" "$T_TMP/check.out"
check_rc "a disk both member and spare is refused" 1 volctl pool create q --raid 1 --spare f f g
check_grep "... says so" "disk 'f' is a member and a spare" "$T_TMP/check.out"
check_fail "... and no pool q was made" volctl pool show q
check "vol create v" volctl vol create v --pool p --size 24M
check "nbd listen" volctl nbd listen 127.0.0.1:$port
check "export nbd v" volctl export nbd v
check "write the data" qio "$URL" -c 'write -P 0x61 0 8M' -c 'write -P 0x62 8M 8M' \
	-c 'write -P 0x63 16M 8M' -c flush

# ---- a member taken out under a writer: the spare takes its place
t_bg "$T_TMP/writer.log" timeout 60 qemu-io -f raw "$URL" -c 'write -P 0x62 8M 8M' -c flush \
	-c 'read -P 0x62 8M 8M'
writer=$T_BG_PID
check "pool fail p b" volctl pool fail p b
wait "$writer"
check "the writer saw no error" test $? -eq 0 -a -z "$(grep -iE 'error|fail' "$T_TMP/writer.log")"
check "the spare is rebuilt" wait_for state_is online
show
check_grep "pool show: e is active in slot 1" "^member +e slot 1 active" "$T_TMP/show"
check_grep "... b left the pool" "^last job +rebuild of slot 1: done" "$T_TMP/show"
check_fail "... b is no member" grep -q "^member +b " "$T_TMP/show"
check "the data reads back" verify_all
check "b is no longer claimed" test "$(volctl --json disk list | python3 -c 'import json, sys
print([d["claimed_by"] for d in json.load(sys.stdin) if d["name"] == "b"][0])')" = None
check_rc "the last redundancy cannot be taken out twice" 1 bash -c \
	"'$VOLCTL_BIN' --socket '$SAND_SOCK' pool fail p a && '$VOLCTL_BIN' --socket '$SAND_SOCK' pool fail p c"
check_grep "... says why" "would lose data" "$T_TMP/check.out"

# ---- replace a with f, slowly; stopped by a restart, resumed past 0
check "pool set --rebuild-rate 1M --low-space 20: both at once" \
	volctl pool set p --rebuild-rate 1M --low-space 20
check_grep "... it says both" "^pool p: rebuild rate 1M/s per disk$" "$T_TMP/check.out"
check_grep "... low space too" "^pool p: low space below .* free \(20%\)" "$T_TMP/check.out"
check_rc "pool set --rebuild-rate 1K is refused" 1 volctl pool set p --rebuild-rate 1K
check "... and changes nothing" test "$(js rebuild_rate)" = 1048576
check "pool replace p a f" volctl pool replace p a f
check "a rebuild runs" wait_for job_is rebuild
sleep 2
show
check_grep "pool show: progress, rate, ETA" "^rebuild +slot 0 on f: [0-9.]+% \(.* of .*\), [0-9.]+[KM]/s, ETA [0-9]+:[0-9]{2}$" "$T_TMP/show"
check_grep "pool show: the rate limit" "^rebuild rate +1M/s per disk" "$T_TMP/show"
check_grep "pool show: f is rebuilding" "^member +f slot 0 rebuilding" "$T_TMP/show"
check_rc "a scrub waits for the rebuild" 1 volctl pool scrub p
check "sand stops mid-rebuild" sand_stop
sand_start --reactors 2 || { not_ok "sand starts mid-rebuild"; t_done; }
ok "sand starts mid-rebuild"
check "b can be removed" volctl disk remove b
check "the rebuild resumed past 0" wait_for resumed
check_grep "... the log says so" "resuming the rebuild of member 0 on f at row [1-9]" "$SAND_LOG"
check "the rate limit survived" test "$(js rebuild_rate)" = 1048576
check "pool set --rebuild-rate 0" volctl pool set p --rebuild-rate 0
check "the rebuild ends" wait_for state_is online
check "the data reads back after the rebuild" verify_all

# ---- scrub: clean; a corrupted parity strip found and repaired; cancel
check "pool scrub p" volctl pool scrub p
check "... ends clean" wait_for last_is scrub done
check "... 0 mismatches" test "$(js job last mismatches)" = 0
check "sand stops for the corruption" sand_stop
# corrupt 4K of member c (slot 2) in row 129, where it holds P (left-symmetric:
# P on slot n-1 - row % n), past the 1M superblock area
python3 - "$T_TMP/c.img" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(1024 * 1024 + 129 * 16384)
    f.write(b"\xee" * 4096)
EOF
sand_start --reactors 2 || { not_ok "sand starts after the corruption"; t_done; }
ok "sand starts after the corruption"
check "pool scrub p finds it" volctl pool scrub p
check "... ends" wait_for last_is scrub done
check "... 1 mismatch" test "$(js job last mismatches)" = 1
check "pool scrub p --repair" volctl pool scrub p --repair
check "... ends" wait_for last_is scrub done
check "pool scrub p: clean again" volctl pool scrub p
check "... ends" wait_for last_is scrub done
check "... 0 mismatches" test "$(js job last mismatches)" = 0
check "pool set --rebuild-rate 64K" volctl pool set p --rebuild-rate 64K
check "pool scrub p (slow)" volctl pool scrub p
check "... runs" wait_for job_is scrub
check "... moves" wait_for moved
check "sand stops mid-scrub" sand_stop
sand_start --reactors 2 || { not_ok "sand starts mid-scrub"; t_done; }
ok "sand starts mid-scrub"
check "the scrub resumed past 0" wait_for resumed
show
check_grep "pool show: resumed" "^scrub +checking, 0 mismatches so far, resumed after a restart" "$T_TMP/show"
check_grep "... the log says so" "scrub resumed at row [1-9]" "$SAND_LOG"
check "pool scrub p --cancel" volctl pool scrub p --cancel
check "... cancelled" wait_for last_is scrub cancelled
check "sand stops after the cancel" sand_stop
sand_start --reactors 2 || { not_ok "sand starts after the cancel"; t_done; }
ok "sand starts after the cancel"
check "a cancelled scrub does not come back" job_is none
check "pool scrub p (slow, again)" volctl pool scrub p
check "... runs" wait_for job_is scrub
check "pool scrub p --cancel" volctl pool scrub p --cancel
check "... cancelled" wait_for last_is scrub cancelled
check_rc "no scrub to cancel" 1 volctl pool scrub p --cancel
check "pool set --rebuild-rate 0" volctl pool set p --rebuild-rate 0
check "the data reads back after the scrubs" verify_all
check "sand stops" sand_stop

# ---- members listed in another order in the state file
python3 - "$SAND_DIR/sand.json" <<'EOF'
import json, sys
p = sys.argv[1]
s = json.load(open(p))
for pool in s["pools"]:
    pool["members"].reverse()
json.dump(s, open(p, "w"), indent=1)
EOF
check "the state file lists the members reversed" python3 -c 'import json, sys
m = [p for p in json.load(open(sys.argv[1]))["pools"] if p["name"] == "p"][0]["members"]
sys.exit(m != ["d", "c", "e", "f"])' "$SAND_DIR/sand.json"
sand_start --reactors 2 || { not_ok "sand starts, members reversed"; t_done; }
ok "sand starts, members reversed"
check "the pool is online" state_is online
check "the data reads back" verify_all

# ---- a member file moved: found with --scan, the pool whole
check "sand stops to move e" sand_stop
mkdir -p "$T_TMP/moved" "$T_TMP/other"
mv "$T_TMP/e.img" "$T_TMP/moved/e-renamed.img"
cp "$T_TMP/c.img" "$T_TMP/other/c-copy.img"	# a member of the pool, already present
sand_start --reactors 2 --scan "$T_TMP/other" --scan "$T_TMP/moved" || { not_ok "sand starts with --scan"; t_done; }
ok "sand starts with --scan"
check_grep "the log says e moved" "disk e moved: found at .*/moved/e-renamed.img" "$SAND_LOG"
check "the pool is online, not degraded" state_is online
check "disk e has its new path" bash -c "'$VOLCTL_BIN' --socket '$SAND_SOCK' disk list | grep -E '^e .*/moved/e-renamed.img'"
check "the data reads back" verify_all
rm -f "$T_TMP/other/c-copy.img"

# ---- a stale copy of a member comes back: rebuilt, never trusted
check "sand stops for a copy" sand_stop
cp "$T_TMP/c.img" "$T_TMP/c.old"
sand_start --reactors 2 || { not_ok "sand starts again"; t_done; }
check "new data on 16M..24M" qio "$URL" -c 'write -P 0x64 16M 8M' -c flush
check "sand stops, c will be stale" sand_stop
mv "$T_TMP/c.old" "$T_TMP/c.img"
sand_start --reactors 2 || { not_ok "sand starts with a stale c"; t_done; }
ok "sand starts with a stale c"
check_grep "the log says c is stale" "disk c is stale" "$SAND_LOG"
check "c is rebuilt" wait_for state_is online
check "the new data reads back, not the stale" qio "$URL" -r -c 'read -P 0x61 0 8M' \
	-c 'read -P 0x62 8M 8M' -c 'read -P 0x64 16M 8M'

# ---- a member file removed: degraded, data intact
check "sand stops to remove d" sand_stop
rm -f "$T_TMP/d.img"
sand_start --reactors 2 || { not_ok "sand starts without d"; t_done; }
ok "sand starts without d"
check "the pool is degraded" state_is degraded
show
check_grep "pool show: d is missing" "^member +d slot -?[0-9]+ missing" "$T_TMP/show"
check "the data reads back degraded" qio "$URL" -r -c 'read -P 0x61 0 8M' \
	-c 'read -P 0x62 8M 8M' -c 'read -P 0x64 16M 8M'
check "pool replace p d g" volctl pool replace p d g
check "the rebuild ends" wait_for state_is online
check "the data reads back rebuilt" qio "$URL" -r -c 'read -P 0x61 0 8M' \
	-c 'read -P 0x62 8M 8M' -c 'read -P 0x64 16M 8M'

# ---- a member taken out, written around, put back (replace with itself):
# rebuilt only where it missed writes
check "the bitmap is swept clean (the set is whole)" wait_for bm_clean
check "pool fail p c" volctl pool fail p c
check "new data while c is out" qio "$URL" -c 'write -P 0x65 0 1M' -c flush
check "pool replace p c c: c comes back" volctl pool replace p c c
check "... rebuilt" wait_for state_is online
show
check_grep "pool show: a partial rebuild" "^last job +rebuild of slot [0-9] \(partial\): done" "$T_TMP/show"
check_grep "... the log says so" "member [0-9] \(c\) is back: only the regions written since it left" "$SAND_LOG"
check "... only the regions written: a few MiB of 23" python3 -c 'import sys; sys.exit(not 0 < int(sys.argv[1]) < 8 << 20)' "$(js job last walked)"
check "pool fail p g: c serves its blocks" volctl pool fail p g
check "the data reads back without g" qio "$URL" -r -c 'read -P 0x65 0 1M' \
	-c 'read -P 0x61 1M 7M' -c 'read -P 0x62 8M 8M' -c 'read -P 0x64 16M 8M'
check "pool replace p g g" volctl pool replace p g g
check "... rebuilt" wait_for state_is online
check "the data reads back" qio "$URL" -r -c 'read -P 0x65 0 1M' \
	-c 'read -P 0x61 1M 7M' -c 'read -P 0x62 8M 8M' -c 'read -P 0x64 16M 8M'

# ---- RAID 0 with a missing member refuses to start, naming it
check "disk add r1" volctl disk add r1 "$T_TMP/r1.img" --size 24M
check "disk add r2" volctl disk add r2 "$T_TMP/r2.img" --size 24M
check "pool create --raid 0" volctl pool create z --raid 0 r1 r2
check_rc "no spare on raid 0" 1 volctl pool add-spare z a
check "sand stops to remove r2" sand_stop
rm -f "$T_TMP/r2.img"
sand_start --reactors 2 || { not_ok "sand starts without r2"; t_done; }
volctl pool list >"$T_TMP/pools" 2>&1
check_grep "z is failed and names r2" "^z +raid0 .*failed: raid 0 cannot start: too many members missing: r2 \(not available\)" "$T_TMP/pools"
check_grep "p is online" "^p +raid5 .* online$" "$T_TMP/pools"
check "pool check p" volctl pool check p

# ---- a spare took a slot, the daemon stopped before saving it (state file
# edited back): at start the replaced disk leaves the pool, the spare stays
for d in s1 s2 s3; do
	check "disk add $d" volctl disk add $d "$T_TMP/$d.img" --size 24M
done
check "pool create q --raid 1 --spare s3 s1 s2" volctl pool create q --raid 1 --spare s3 s1 s2
check "pool fail q s1" volctl pool fail q s1
check "the spare is rebuilt" wait_for bash -c "'$VOLCTL_BIN' --socket '$SAND_SOCK' pool show q | grep -q '^member *s3 slot 0 active'"
check "sand stops" sand_stop
python3 - "$SAND_DIR/sand.json" <<'EOF2'
import json, sys
p = sys.argv[1]
s = json.load(open(p))
q = [x for x in s["pools"] if x["name"] == "q"][0]
q["members"] = ["s1", "s2"]
q["spares"] = ["s3"]
json.dump(s, open(p, "w"), indent=1)
EOF2
sand_start --reactors 2 || { not_ok "sand starts with the old member list"; t_done; }
ok "sand starts with the old member list"
volctl pool show q >"$T_TMP/show" 2>&1
check_grep "q: s3 is the member in slot 0" "^member +s3 slot 0 active" "$T_TMP/show"
check_fail "q: s1 is no member" grep -q "s1" "$T_TMP/show"
check_grep "the log says s1 left" "disk s1 was replaced in the set: it leaves the pool" "$SAND_LOG"
check "the state file is fixed" python3 -c 'import json, sys
q = [p for p in json.load(open(sys.argv[1]))["pools"] if p["name"] == "q"][0]
sys.exit(sorted(q["members"]) != ["s2", "s3"] or q["spares"] != [])' "$SAND_DIR/sand.json"
check "the state file still has pool p" python3 -c 'import json, sys
sys.exit("p" not in [p["name"] for p in json.load(open(sys.argv[1]))["pools"]])' "$SAND_DIR/sand.json"
check "s1 can be removed" volctl disk remove s1
check "sand stops cleanly at the end" sand_stop
t_done
