#!/usr/bin/env bash
# LOGICAL UNIT RESET with real clients: two libiscsi sessions
# (build/tests/iscsi_reset_client) against iscsi_testd with slow writes
# (-L: a write ends 3 s after it lands). Session B's writes are in flight
# when session A resets the LU: they end with TASK ABORTED, the reset is
# answered only after they have ended, each write is on the disk whole or
# not at all, both sessions get BUS DEVICE RESET FUNCTION OCCURRED (29h/03h)
# once and their next command works. The same with TARGET COLD RESET: then
# the target drops both connections (A's after the response), both log in
# again with their ISIDs and get 29h/00h once, a new initiator port none,
# data written before is intact. With TAS 0 (MODE SELECT): B's aborted
# writes get no response at all, then 29h/03h. What qemu does when another
# host resets the LU under its write (TAS 1): the write fails with EIO, the
# unit attention after it is retried (doc/iscsi.md). And the SANITIZE pace
# knob through the daemon: `volctl iscsi sanitize --rate`, kept across a
# restart.
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

# run_cli NAME OUT ARGS...: the reset client on URL, its lines as diagnostics
run_cli() {
	local name=$1 out=$2 rc
	shift 2
	timeout 60 "$CLI" "$URL" "$@" >"$out" 2>&1
	rc=$?
	sed 's/^/# /' "$out"
	if [ $rc = 0 ]; then ok "$name"; else not_ok "$name (exit $rc)"; fi
}

run_cli "the client runs" "$T_TMP/client.out" $N $LAT
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

# TARGET COLD RESET (RFC 7143 11.5.1, 11.6.1)
run_cli "cold: the client runs" "$T_TMP/cold.out" $N $LAT cold
check_grep "cold: the reset is answered (function complete) after the writes ended" \
	"^cold tmf 0 after-writes$" "$T_TMP/cold.out"
check_grep "cold: B's writes in flight end with TASK ABORTED" \
	"^cold writes $N good 0 aborted $N other 0$" "$T_TMP/cold.out"
check_grep "cold: the target drops A's connection after the response, and B's" \
	"^cold dropped a after-response b yes$" "$T_TMP/cold.out"
check_grep "cold: A logs in again, gets 29h/00h once, then its command works" \
	"^cold ua-a 6/29/00, then GOOD$" "$T_TMP/cold.out"
check_grep "cold: B logs in again, gets 29h/00h once, then its command works" \
	"^cold ua-b 6/29/00, then GOOD$" "$T_TMP/cold.out"
check_grep "cold: a new initiator port gets no unit attention" \
	"^cold ua-new GOOD$" "$T_TMP/cold.out"
check_grep "cold: each aborted write is on the disk whole or not at all" \
	"^cold data new [0-9]+ old [0-9]+ torn 0 lost 0$" "$T_TMP/cold.out"
check_grep "cold: data written before the reset is intact" \
	"^cold before intact$" "$T_TMP/cold.out"

# TAS 0: another nexus's aborted tasks end without any response
run_cli "tas 0: the client runs" "$T_TMP/notas.out" $N $LAT notas
check_grep "tas 0: the reset is answered after the writes ended" \
	"^notas tmf 0 after-writes$" "$T_TMP/notas.out"
check_grep "tas 0: B's aborted writes get no response" \
	"^notas writes $N answered 0$" "$T_TMP/notas.out"
check_grep "tas 0: B gets the unit attention once, then its command works" \
	"^notas ua-b 6/29/03, then GOOD$" "$T_TMP/notas.out"

# qemu (TAS 1 again): a LU reset from another initiator while its write is
# doing I/O (LAT ms): qemu does not retry TASK ABORTED, the write fails
# with EIO; the 29h/03h on its next command is retried, the read works.
if command -v qemu-io >/dev/null; then
	QI=iqn.2026-11.org.sand.test:qemu
	t_bg "$T_TMP/qio.out" timeout 60 qemu-io --cache=none --image-opts \
		"driver=iscsi,transport=tcp,portal=127.0.0.1:$tport,target=$IQN,lun=0,initiator-name=$QI" \
		-c "write -P 0x5a 2M 64k" -c "read 2M 64k"
	QIO_PID=$T_BG_PID
	if wait_for grep -q "normal session for $QI" "$T_TMP/testd.out"; then
		# the write goes right after the login; it ends LAT ms later
		timeout 60 "$CLI" "$URL" reset-after $((LAT / 3)) >"$T_TMP/rst.out" 2>&1
		wait "$QIO_PID"
		sed 's/^/# /' "$T_TMP/qio.out"
		if grep -q "^wrote 65536/65536" "$T_TMP/qio.out"; then
			skip "qemu: a write aborted by another host's reset" \
				"the reset did not meet the write in flight (a slow machine)"
		else
			check_grep "qemu: a write aborted by another host's LU reset (TAS 1) fails with EIO" \
				"write failed: Input/output error" "$T_TMP/qio.out"
			check_grep "qemu: its next command meets the unit attention (29h/03h)" \
				"CheckCondition: .*UNIT_ATTENTION.*0x2903" "$T_TMP/qio.out"
			check_grep "qemu: the unit attention is retried, the read works" \
				"^read 65536/65536" "$T_TMP/qio.out"
		fi
	else
		not_ok "qemu-io logs in"
		t_kill "$QIO_PID"
	fi
else
	skip "qemu under another host's reset" "qemu-io not installed"
fi
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
