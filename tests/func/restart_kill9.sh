#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A daemon killed with SIGKILL while clients are connected, started again at
# once: its iSCSI portal and NBD listener come back on the same ports (the
# dead process's io_uring may hold the old listening sockets for a moment;
# the restore retries the bind), and the data written before the kill and
# flushed is there. And a control socket left accepting by a dead daemon
# does not keep the next one from starting.
. "$(dirname "$0")/lib.sh"

IQN=iqn.2026-11.io.sand:kill9
pi=$(free_port)
pn=$(free_port)
rounds=${SAND_KILL9_ROUNDS:-3}

sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
check "disk add" volctl disk add d0 "$T_TMP/d0.img" --size 64M
check "iscsi target and portal" sh -c "$VOLCTL_BIN --socket $SAND_SOCK iscsi target create $IQN &&
	$VOLCTL_BIN --socket $SAND_SOCK iscsi portal add 1 127.0.0.1:$pi &&
	$VOLCTL_BIN --socket $SAND_SOCK export iscsi d0 --target $IQN --lun 0"
check "nbd listen and export" sh -c "$VOLCTL_BIN --socket $SAND_SOCK nbd listen 127.0.0.1:$pn &&
	$VOLCTL_BIN --socket $SAND_SOCK export nbd d0"
qio() { timeout 60 qemu-io -f raw "$@"; }
check "a flushed write over NBD" qio "nbd://127.0.0.1:$pn/d0" -c 'write -P 0x5a 0 1M' -c flush

for r in $(seq "$rounds"); do
	# clients are writing over both protocols when the daemon dies
	t_bg "$T_TMP/nbdw$r.out" timeout 30 qemu-io -f raw "nbd://127.0.0.1:$pn/d0" \
		-c 'aio_write -P 0x11 8M 4M' -c 'aio_write -P 0x12 16M 4M' -c 'sleep 20000'
	w1=$T_BG_PID
	t_bg "$T_TMP/iscsiw$r.out" timeout 30 qemu-io -f raw "iscsi://127.0.0.1:$pi/$IQN/0" \
		-c 'aio_write -P 0x21 24M 4M' -c 'aio_write -P 0x22 32M 4M' -c 'sleep 20000'
	w2=$T_BG_PID
	sleep 0.5
	kill -KILL "$SAND_PID"
	wait "$SAND_PID" 2>/dev/null
	SAND_PID=
	t_kill "$w1" >/dev/null 2>&1
	t_kill "$w2" >/dev/null 2>&1
	# no waiting for the ports: straight back up
	sand_start --reactors 2 || { not_ok "round $r: sand starts again at once"; t_done; }
	ok "round $r: sand starts again at once after kill -9"
	volctl iscsi list >"$T_TMP/list" 2>&1
	check_grep "round $r: the portal is up on the same port" "portal 127.0.0.1:$pi tpg 1 up" "$T_TMP/list"
	check "round $r: iscsi-inq through it" timeout 30 iscsi-inq "iscsi://127.0.0.1:$pi/$IQN/0"
	check "round $r: the flushed data is there over NBD" \
		qio -r "nbd://127.0.0.1:$pn/d0" -c 'read -P 0x5a 0 1M'
	if grep -q "EADDRINUSE\|ddress already in use" "$SAND_LOG"; then
		diag "round $r: a bind found the address in use (retried)"
	fi
done
check "sand stops cleanly" sand_stop

# The retry itself: the portal's port is held by someone else for 1.5 s
# when the daemon restores it; the portal must still come up on it.
t_bg "$T_TMP/holder.out" timeout 20 python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1)
print("held", flush=True); time.sleep(1.5)' "$pi"
holder=$T_BG_PID
wait_for grep -q held "$T_TMP/holder.out"
sand_start --reactors 2 || { not_ok "sand starts while the portal's port is held"; t_done; }
ok "sand starts while the portal's port is held"
volctl iscsi list >"$T_TMP/list" 2>&1
check_grep "the portal came up once the port was free" "portal 127.0.0.1:$pi tpg 1 up" "$T_TMP/list"
check "iscsi-inq through it" timeout 30 iscsi-inq "iscsi://127.0.0.1:$pi/$IQN/0"
t_kill "$holder" >/dev/null 2>&1
check "sand stops cleanly" sand_stop

# The control socket of a daemon that died may still accept for a moment,
# with nobody behind it: a listener that never answers stands for it.
t_bg "$T_TMP/ghost.out" timeout 60 python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8)
print("listening", flush=True); time.sleep(50)' "$SAND_SOCK"
ghost=$T_BG_PID
wait_for test -S "$SAND_SOCK"
# started by hand: sand_start would ask the ghost for status, and wait
(exec "$SAND_BIN" --state-dir "$SAND_DIR" --control "$SAND_SOCK" --reactors 1) >>"$SAND_LOG" 2>&1 &
SAND_PID=$!
T_PIDS+=("$SAND_PID")
if wait_for grep -q "ready: pid $SAND_PID" "$SAND_LOG"; then
	ok "sand starts over a control socket that accepts but never answers"
	check_grep "... and says what it found" "accepts but does not answer" "$SAND_LOG"
	check "... and serves volctl on its own socket" volctl status
	check "sand stops cleanly" sand_stop
else
	not_ok "sand starts over a control socket that accepts but never answers"
fi
t_kill "$ghost" >/dev/null 2>&1
t_done
