#!/usr/bin/env bash
# Portal groups as ALUA target port groups, through sand and volctl: named
# groups A and B beside the default group 1, the same LU identity through
# each with its own port and group designators, REPORT TARGET PORT GROUPS
# before and after `volctl iscsi tpg set` and SET TARGET PORT GROUPS, NOT
# READY through standby and unavailable groups, a portal disabled (its
# session asked to log out) and enabled again, the liveness timeouts, and
# everything after a restart.
. "$(dirname "$0")/lib.sh"

MPATH=$(realpath -m "$BUILD/tests/iscsi-mpath")
[ -x "$MPATH" ] || { skip "alua" "$MPATH not built"; t_done; }
IQN=iqn.2026-11.org.sand:alua
port=$(free_port)
P1=127.0.0.1:$port P2=127.0.0.2:$port P3=127.0.0.3:$port
U1=iscsi://$P1/$IQN/0 U2=iscsi://$P2/$IQN/0 U3=iscsi://$P3/$IQN/0
mp() { timeout 30 "$MPATH" "$@"; }

sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
check "disk add" volctl disk add d0 --backend mem --size 16M
check "target create" volctl iscsi target create $IQN
check "export" volctl export iscsi d0 --target $IQN --lun 0
check "portal add 1 (the default group)" volctl iscsi portal add 1 $P1
check "portal add A" volctl iscsi portal add A $P2
check "portal add B" volctl iscsi portal add B $P3
check_rc "a group named 0 is refused" 2 volctl iscsi portal add 0 127.0.0.4:$port
check_rc "a group name with a bad character is refused" 1 volctl iscsi portal add 'A/B' 127.0.0.4:$port
volctl iscsi tpg list >"$T_TMP/tpg" 2>&1
check_grep "tpg list: group 1" "^group 1 tpg 1 active-optimized" "$T_TMP/tpg"
check_grep "tpg list: group A got tag 2" "^group A tpg 2 active-optimized" "$T_TMP/tpg"
check_grep "tpg list: group B got tag 3" "^group B tpg 3 active-optimized" "$T_TMP/tpg"
check_grep "tpg list: A's portal" "^  portal $P2 enabled" "$T_TMP/tpg"

# identity: the same NAA, each path its own port and group
for u in 1 2 3; do
	eval "mp ids \$U$u" >"$T_TMP/ids$u" 2>&1
done
check_grep "INQUIRY: TPGS implicit and explicit" "^tpgs 3$" "$T_TMP/ids2"
check "the same NAA through group 1 and A" \
	test "$(grep ^naa "$T_TMP/ids1")" = "$(grep ^naa "$T_TMP/ids2")" -a -n "$(grep ^naa "$T_TMP/ids1")"
check "the same NAA through A and B" test "$(grep ^naa "$T_TMP/ids2")" = "$(grep ^naa "$T_TMP/ids3")"
check_grep "VPD 83 through A: port group 2" "^tpg 2$" "$T_TMP/ids2"
check_grep "VPD 83 through A: relative port 2" "^relport 2$" "$T_TMP/ids2"
check_grep "VPD 83 through B: port group 3" "^tpg 3$" "$T_TMP/ids3"

mp rtpg "$U2" >"$T_TMP/rtpg" 2>&1
check_grep "RTPG lists group 1" "^group 1 active-optimized ports 1" "$T_TMP/rtpg"
check_grep "RTPG lists group 2" "^group 2 active-optimized" "$T_TMP/rtpg"
check_grep "RTPG lists group 3" "^group 3 active-optimized" "$T_TMP/rtpg"

# administrator's changes (implicit ALUA)
check "tpg set A standby" volctl iscsi tpg set A --alua standby
check "tpg set B active-nonoptimized" volctl iscsi tpg set B --alua active-nonoptimized
check_rc "tpg set without --alua" 2 volctl iscsi tpg set A
check_rc "tpg set with a bad state" 1 volctl iscsi tpg set A --alua sleepy
check_rc "tpg set on an unknown group" 1 volctl iscsi tpg set C --alua standby
mp rtpg "$U3" >"$T_TMP/rtpg" 2>&1
check_grep "RTPG through B: A standby" "^group 2 standby" "$T_TMP/rtpg"
check_grep "RTPG through B: B non-optimized" "^group 3 active-nonoptimized" "$T_TMP/rtpg"
mp tur "$U2" >"$T_TMP/tur" 2>&1
check_grep "through standby A: TEST UNIT READY is NOT READY, standby (04h/0Bh)" "^tur sense 2/040b" "$T_TMP/tur"
check_grep "through standby A: READ is NOT READY, standby" "^read sense 2/040b" "$T_TMP/tur"
mp tur "$U3" >"$T_TMP/tur" 2>&1
check_grep "through non-optimized B: READ works" "^read good" "$T_TMP/tur"
check "tpg set A unavailable" volctl iscsi tpg set A --alua unavailable
mp tur "$U2" >"$T_TMP/tur" 2>&1
check_grep "through unavailable A: NOT READY, unavailable (04h/0Ch)" "^read sense 2/040c" "$T_TMP/tur"

# a session running meanwhile gets ASYMMETRIC ACCESS STATE CHANGED
t_bg "$T_TMP/hold" timeout 30 "$MPATH" hold "$U3" 3
wait_for grep -q "logged in" "$T_TMP/hold"
check "tpg set 1 active-nonoptimized, a session running" volctl iscsi tpg set 1 --alua active-nonoptimized
wait "$T_BG_PID" 2>/dev/null
check_grep "that session's next command: UNIT ATTENTION, asymmetric access state changed" \
	"still logged in, tur sense 6/2a06" "$T_TMP/hold"
mp tur "$U1" >"$T_TMP/tur" 2>&1
check_grep "through group 1 (now non-optimized) READ works" "^read good" "$T_TMP/tur"

# explicit ALUA: SET TARGET PORT GROUPS through B makes A optimized again
check "set target port groups through B (A active/optimized)" mp stpg "$U3" 2=0
mp rtpg "$U1" >"$T_TMP/rtpg" 2>&1
check_grep "RTPG shows A active/optimized after SET TARGET PORT GROUPS" "^group 2 active-optimized" "$T_TMP/rtpg"
volctl iscsi tpg list >"$T_TMP/tpg" 2>&1
check_grep "tpg list shows it too" "^group A tpg 2 active-optimized" "$T_TMP/tpg"
check "back to standby from volctl" volctl iscsi tpg set A --alua standby

# portal disable: its sessions are asked to log out
# (a file of its own: t_bg truncates it in the background, and the first
# hold's "logged in" must not be read as this one's)
t_bg "$T_TMP/hold2" timeout 30 "$MPATH" hold "$U3" 15
hold_pid=$T_BG_PID
check "a session through B logs in" wait_for grep -q "logged in" "$T_TMP/hold2"
check "portal disable B" volctl iscsi portal disable $P3
check_rc "disable twice is refused" 1 volctl iscsi portal disable $P3
check_rc "disable an unknown portal is refused" 1 volctl iscsi portal disable 127.0.0.9:$port
check "the session through B ended within 5 s" wait_for grep -q "connection ended" "$T_TMP/hold2"
check_grep "the target asked it to log out (Async Message)" "portal disabled, asking for a logout" "$SAND_LOG"
t_kill "$hold_pid" 5 >/dev/null
check_fail "nobody listens on B" mp ids "$U3"
volctl iscsi list >"$T_TMP/list" 2>&1
check_grep "iscsi list: B disabled" "portal $P3 tpg 3 disabled" "$T_TMP/list"
volctl iscsi tpg list >"$T_TMP/tpg" 2>&1
check_grep "tpg list: B's portal disabled" "^  portal $P3 disabled" "$T_TMP/tpg"

# timeouts
check "timeouts set" volctl iscsi timeouts --nop-interval 2000 --nop-misses 4
check_rc "timeouts: a bad interval" 1 volctl iscsi timeouts --nop-interval 50
check_rc "timeouts: zero misses" 1 volctl iscsi timeouts --nop-misses 0
volctl iscsi timeouts >"$T_TMP/tmo" 2>&1
check_grep "timeouts shown" "nop-interval 2000 ms, nop-misses 4, login 15000 ms" "$T_TMP/tmo"
check "sand stops" sand_stop

sand_start --reactors 2 || { not_ok "sand starts again"; t_done; }
ok "sand starts again"
volctl iscsi tpg list >"$T_TMP/tpg" 2>&1
check_grep "after a restart: A standby, tag 2" "^group A tpg 2 standby" "$T_TMP/tpg"
check_grep "after a restart: B non-optimized, tag 3" "^group B tpg 3 active-nonoptimized" "$T_TMP/tpg"
check_grep "after a restart: 1 non-optimized" "^group 1 tpg 1 active-nonoptimized" "$T_TMP/tpg"
check_grep "after a restart: B's portal still disabled" "^  portal $P3 disabled" "$T_TMP/tpg"
check_fail "nobody listens on B after the restart" mp ids "$U3"
mp rtpg "$U2" >"$T_TMP/rtpg" 2>&1
check_grep "RTPG after the restart: A standby" "^group 2 standby" "$T_TMP/rtpg"
volctl iscsi timeouts >"$T_TMP/tmo" 2>&1
check_grep "timeouts after the restart" "nop-interval 2000 ms, nop-misses 4" "$T_TMP/tmo"
check "portal enable B" volctl iscsi portal enable $P3
check_rc "enable twice is refused" 1 volctl iscsi portal enable $P3
mp tur "$U3" >"$T_TMP/tur" 2>&1
check_grep "B answers again" "^read good" "$T_TMP/tur"
check "disable B again" volctl iscsi portal disable $P3
check "a disabled portal can be removed" volctl iscsi portal remove $P3
check "and added again, enabled" volctl iscsi portal add B $P3
mp tur "$U3" >"$T_TMP/tur" 2>&1
check_grep "B answers after remove and add" "^read good" "$T_TMP/tur"
volctl iscsi tpg list >"$T_TMP/tpg" 2>&1
check_grep "B keeps its tag" "^group B tpg 3 " "$T_TMP/tpg"
check "sand stops again" sand_stop
t_done
