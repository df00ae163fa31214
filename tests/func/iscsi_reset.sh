#!/usr/bin/env bash
# LOGICAL UNIT RESET with real clients: two libiscsi sessions
# (build/tests/iscsi_reset_client) against iscsi_testd with slow writes
# (-L: a write ends 3 s after it lands). Session B's writes are in flight
# when session A resets the LU: they end with TASK ABORTED, the reset is
# answered only after they have ended, each write is on the disk whole or
# not at all, both sessions get BUS DEVICE RESET FUNCTION OCCURRED (29h/03h)
# once and their next command works. And the SANITIZE pace knob through
# the daemon: `volctl iscsi sanitize --rate`, kept across a restart.
. "$(dirname "$0")/lib.sh"

CLI=$BUILD/tests/iscsi_reset_client
TESTD=$BUILD/iscsi_testd
[ -x "$CLI" ] || { skip "resets" "$CLI not built"; t_done; }
[ -x "$TESTD" ] || { skip "resets" "$TESTD not built"; t_done; }
IQN=iqn.2026-11.org.sand:reset
LAT=3000
N=8

t_bg "$T_TMP/testd.out" "$TESTD" -L $LAT -a 127.0.0.1:0 $IQN 16M
TESTD_PID=$T_BG_PID
wait_for grep -q "^port" "$T_TMP/testd.out" || { not_ok "iscsi_testd starts"; t_done; }
ok "iscsi_testd starts"
tport=$(awk '/^port/ {print $2; exit}' "$T_TMP/testd.out")
URL=iscsi://127.0.0.1:$tport/$IQN/0

timeout 60 "$CLI" "$URL" $N $LAT >"$T_TMP/client.out" 2>&1
rc=$?
sed 's/^/# /' "$T_TMP/client.out"
if [ $rc = 0 ]; then ok "the client runs"; else not_ok "the client runs (exit $rc)"; fi
check_grep "the reset is answered (function complete) after the writes ended" \
	"^tmf 0 after-writes$" "$T_TMP/client.out"
check_grep "B's writes in flight end with TASK ABORTED" \
	"^writes $N good 0 aborted $N other 0$" "$T_TMP/client.out"
check_grep "A gets the unit attention once, then its command works" \
	"^ua-a 6/29/03, then GOOD$" "$T_TMP/client.out"
check_grep "B gets the unit attention once, then its command works" \
	"^ua-b 6/29/03, then GOOD$" "$T_TMP/client.out"
# an aborted write that was doing I/O cannot be recalled: it is whole
check_grep "every write is whole on the disk, none torn, none lost" \
	"^data whole $N zero 0 torn 0 lost 0$" "$T_TMP/client.out"
t_kill "$TESTD_PID"
if [ "$T_KILL_RC" = 0 ]; then ok "iscsi_testd stops cleanly"; else not_ok "iscsi_testd stops cleanly ($T_KILL_RC)"; tail -5 "$T_TMP/testd.out"; fi

# the daemon: the sanitize pace, kept across a restart
sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
volctl iscsi sanitize >"$T_TMP/san" 2>&1
check_grep "no sanitize limit by default" "^sanitize rate not limited$" "$T_TMP/san"
check "iscsi sanitize --rate 64M" volctl iscsi sanitize --rate 64M
check_rc "a rate that is not a size is a usage error" 2 volctl iscsi sanitize --rate fast
check_rc "an unexpected argument is a usage error" 2 volctl iscsi sanitize 5
volctl --json iscsi sanitize >"$T_TMP/san" 2>&1
check_grep "the rate is shown (json)" '"rate": 67108864' "$T_TMP/san"
check "sand stops cleanly" sand_stop
sand_start --reactors 2 || { not_ok "sand starts again"; t_done; }
ok "sand starts again"
volctl iscsi sanitize >"$T_TMP/san" 2>&1
check_grep "the rate is back after a restart" "^sanitize rate 64(\.0)? ?M" "$T_TMP/san"
check "iscsi sanitize --rate 0" volctl iscsi sanitize --rate 0
volctl iscsi sanitize >"$T_TMP/san" 2>&1
check_grep "0: no limit again" "^sanitize rate not limited$" "$T_TMP/san"
check "sand stops cleanly again" sand_stop
t_done
