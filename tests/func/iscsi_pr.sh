#!/usr/bin/env bash
# SCSI-3 persistent reservations through the daemon with two initiators
# (build/tests/iscsi_pr_client on libiscsi, host A through portal group 1,
# host B through portal group 2): registrations seen on every path,
# conflicts per reservation type, ALL_TG_PT, preemption with its unit
# attention, CLEAR, `volctl iscsi reservations`; and APTPL: reservations
# come back after a clean restart and after a kill -9 (and do not without
# APTPL); PREEMPT AND ABORT against a write in flight (iscsi_testd with
# slow writes) completes only after that write has ended.
. "$(dirname "$0")/lib.sh"

CLI=$BUILD/tests/iscsi_pr_client
[ -x "$CLI" ] || { skip "persistent reservations" "$CLI not built"; t_done; }
IQN=iqn.2026-11.org.sand:pr
HA=iqn.2026-11.org.sand.test:host-a
HB=iqn.2026-11.org.sand.test:host-b
HC=iqn.2026-11.org.sand.test:host-c
p1=$(free_port)
p2=$(free_port)
URLA=iscsi://127.0.0.1:$p1/$IQN/0
URLB=iscsi://127.0.0.2:$p2/$IQN/0

# pr NAME EXPECTED URL INITIATOR OPS...: the client's output is EXPECTED
# (its lines joined with "; ")
pr() {
	local name=$1 want=$2 got
	shift 2
	got=$(timeout 30 "$CLI" "$@" 2>&1 | paste -sd';' - | sed 's/;/; /g')
	if [ "$got" = "$want" ]; then
		ok "$name"
	else
		not_ok "$name"
		diag "expected: $want"
		diag "got:      $got"
	fi
}

sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
check "disk add" volctl disk add d0 "$T_TMP/d0.img" --size 16M
check "target create" volctl iscsi target create $IQN
check "portal group 1" volctl iscsi portal add 1 127.0.0.1:$p1
check "portal group 2" volctl iscsi portal add 2 127.0.0.2:$p2
check "export" volctl export iscsi d0 --target $IQN --lun 0

pr "nothing registered" "keys: GOOD keys; resv: GOOD resv none" $URLA $HA keys , resv
pr "A registers through group 1 for all target ports" "register: GOOD" \
	$URLA $HA register 0xa alltg
pr "B registers through group 2" "register: GOOD" $URLB $HB register 0xb
pr "both keys seen through group 2" "keys: GOOD keys 0xa 0xb" $URLB $HC keys
pr "A reserves write exclusive" "reserve: GOOD; resv: GOOD resv we 0xa" \
	$URLA $HA reserve 0xa we , resv
pr "A writes through either group (ALL_TG_PT)" "write: GOOD; write: GOOD" \
	$URLA $HA write 5 0x11 , write 6 0x11
pr "... group 2 too" "write: GOOD" $URLB $HA write 7 0x11
pr "B may read, not write" "read: GOOD read 0x11; write: CONFLICT" \
	$URLB $HB read 5 , write 5 0x22
pr "C (not registered) may read, not write" "read: GOOD read 0x11; write: CONFLICT" \
	$URLA $HC read 5 , write 5 0x33
pr "B cannot reserve or release A's reservation" "reserve: CONFLICT; release: GOOD; resv: GOOD resv we 0xa" \
	$URLB $HB reserve 0xb we , release 0xb we , resv

volctl iscsi reservations d0 >"$T_TMP/resv" 2>&1
check_grep "reservations: the holder and type" "reservation WE held by $HA isid [0-9a-f]+ \(all target ports\)" "$T_TMP/resv"
check_grep "reservations: A's key" "key 0x000000000000000a $HA .*\(holder\)" "$T_TMP/resv"
check_grep "reservations: B's key and port group" "key 0x000000000000000b $HB isid [0-9a-f]+ tpg 2$" "$T_TMP/resv"
volctl --json iscsi reservations d0 >"$T_TMP/resv.json" 2>&1
check "reservations --json" python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["reservation"]["type"] == "WE", r
assert r["reservation"]["holder"]["initiator"] == sys.argv[2], r
assert [g["key"] for g in r["registrations"]] == ["0x000000000000000a", "0x000000000000000b"], r
assert r["registrations"][1]["tpg"] == 2 and not r["aptpl"], r' "$T_TMP/resv.json" $HA
check_rc "reservations of a volume not exported" 1 volctl iscsi reservations nope

# pr_bg NAME EXPECTED URL INITIATOR OPS...: the same, in the background
# (a session already logged in when another one acts; pr_wait checks it)
pr_bg() {
	PR_BG_NAME=$1 PR_BG_WANT=$2
	shift 2
	rm -f "$T_TMP/go"
	# emptied here: t_bg truncates it in the child, which the wait below
	# could overtake and find the previous run's lines
	: >"$T_TMP/bg.out"
	t_bg "$T_TMP/bg.out" timeout 30 "$CLI" "$@"
	PR_BG_PID=$T_BG_PID
	# logged in once it has answered its first operation
	wait_for grep -q . "$T_TMP/bg.out"
}
pr_wait() {
	local got
	touch "$T_TMP/go"
	wait "$PR_BG_PID"
	got=$(paste -sd';' "$T_TMP/bg.out" | sed 's/;/; /g')
	if [ "$got" = "$PR_BG_WANT" ]; then
		ok "$PR_BG_NAME"
	else
		not_ok "$PR_BG_NAME"
		diag "expected: $PR_BG_WANT"
		diag "got:      $got"
	fi
}

pr_bg "A (logged in meanwhile): REGISTRATIONS PREEMPTED once, then conflicts" \
	"tur: GOOD; pause: GOOD; tur: SENSE 6/2a/05; tur: GOOD; read: CONFLICT; write: CONFLICT" \
	$URLA $HA tur , pause "$T_TMP/go" , tur , tur , read 5 , write 5 0x44
pr "B preempts A, exclusive access" "abort: GOOD; resv: GOOD resv ea 0xb; keys: GOOD keys 0xb" \
	$URLB $HB abort 0xb 0xa ea , resv , keys
pr_wait
check_grep "the abort reached A's connection" "tasks aborted by PREEMPT AND ABORT" "$SAND_LOG"
pr "B writes" "write: GOOD; read: GOOD read 0x22" $URLB $HB write 5 0x22 , read 5
pr_bg "A registers again; after B's CLEAR: RESERVATIONS PREEMPTED" \
	"register: GOOD; clear: CONFLICT; pause: GOOD; tur: SENSE 6/2a/03; write: GOOD" \
	$URLA $HA register 0xa2 , clear 0xa , pause "$T_TMP/go" , tur , write 5 0x55
pr "B clears" "clear: GOOD; keys: GOOD keys" $URLB $HB clear 0xb , keys
pr_wait

# APTPL: a registrants-only reservation that must survive restarts
pr "A registers with APTPL and reserves WE-RO" "register: GOOD; reserve: GOOD" \
	$URLA $HA register 0xa1 aptpl , reserve 0xa1 we-ro
pr "B registers with APTPL" "register: GOOD" $URLB $HB register 0xb1 aptpl
check "a clean restart" sand_stop
sand_start --reactors 2 || { not_ok "sand starts again"; t_done; }
pr "after the restart: the reservation and both keys" "resv: GOOD resv we-ro 0xa1; keys: GOOD keys 0xa1 0xb1" \
	$URLB $HC resv , keys
pr "registrants write, others do not" "write: GOOD" $URLB $HB write 9 0x66
pr "... C does not" "write: CONFLICT; read: GOOD read 0x66" $URLA $HC write 9 0x77 , read 9
volctl iscsi reservations d0 >"$T_TMP/resv" 2>&1
check_grep "reservations says it persists" "persists \(APTPL\)" "$T_TMP/resv"

# a change acknowledged just before a crash is there after it
pr "B preempts A (EA-RO), then the daemon is killed" "preempt: GOOD" \
	$URLB $HB preempt 0xb1 0xa1 ea-ro
kill -KILL "$SAND_PID"
wait "$SAND_PID" 2>/dev/null
SAND_PID=
rm -f "$SAND_SOCK"
# the killed daemon's listening sockets can outlive it for a moment (its
# io_uring is torn down asynchronously): wait until both ports are free
port_free() {
	python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))' "$@"
}
wait_for port_free 127.0.0.1 $p1 && wait_for port_free 127.0.0.2 $p2 ||
	diag "the ports stay busy after kill -9"
sand_start --reactors 2 || { not_ok "sand starts after kill -9"; t_done; }
ok "sand starts after kill -9"
pr "after kill -9: B holds EA-RO, A is gone" "resv: GOOD resv ea-ro 0xb1; keys: GOOD keys 0xb1" \
	$URLB $HB resv , keys
pr "after kill -9: C may not read" "read: CONFLICT" $URLA $HC read 9

# without APTPL nothing survives
pr "B registers without APTPL" "register: GOOD" $URLB $HB register 0xb2
check "a restart without APTPL" sand_stop
sand_start --reactors 2 || { not_ok "sand starts once more"; t_done; }
pr "nothing survived" "keys: GOOD keys; resv: GOOD resv none; write: GOOD" \
	$URLA $HC keys , resv , write 9 0x77
check "sand stops cleanly" sand_stop

# PREEMPT AND ABORT with a write of A in flight (iscsi_testd -L: writes end
# 4 s after they land): B's command completes only after A's write has
# ended, and A gets no answer for it.
IQN2=iqn.2026-11.org.sand:pr-abort
t_bg "$T_TMP/testd.out" "$BUILD/iscsi_testd" -L 4000 -a 127.0.0.1:0 $IQN2 16M
TESTD_PID=$T_BG_PID
wait_for grep -q "^port" "$T_TMP/testd.out" || not_ok "iscsi_testd starts"
tport=$(awk '/^port/ {print $2; exit}' "$T_TMP/testd.out")
URLT=iscsi://127.0.0.1:$tport/$IQN2/0
pr "testd: A reserves, B registers" "register: GOOD; reserve: GOOD" \
	$URLT $HA register 0xa , reserve 0xa we
pr "testd: B registers" "register: GOOD" $URLT $HB register 0xb
t_bg "$T_TMP/a.out" timeout 9 "$CLI" $URLT $HA write 3 0x99
A_PID=$T_BG_PID
wait_for grep -q "write:" "$T_TMP/a.out"
sleep 1		# the write has landed and waits for its end
t0=$(date +%s%N)
pr "B preempts and aborts A" "abort: GOOD" $URLT $HB abort 0xb 0xa we
ms=$((($(date +%s%N) - t0) / 1000000))
if [ $ms -ge 1000 ]; then
	ok "... and that waited for A's write to end (${ms} ms)"
else
	not_ok "... and that waited for A's write to end (${ms} ms, the write ends after 4000)"
fi
wait "$A_PID"
if grep -q "write: GOOD" "$T_TMP/a.out"; then
	not_ok "A's aborted write got no answer"; diag "$(cat "$T_TMP/a.out")"
else
	ok "A's aborted write got no answer"
fi
pr "A is preempted" "write: CONFLICT" $URLT $HA write 3 0x98
t_kill "$TESTD_PID"
if [ "$T_KILL_RC" = 0 ]; then ok "iscsi_testd stops cleanly"; else not_ok "iscsi_testd stops cleanly ($T_KILL_RC)"; tail -5 "$T_TMP/testd.out"; fi
t_done
