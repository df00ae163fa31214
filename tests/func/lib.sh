# shellcheck shell=bash
# SPDX-License-Identifier: MIT
# Helpers for functional tests. Source it first thing:
#
#	. "$(dirname "$0")/lib.sh"
#	sand_start --reactors 2		# daemon on a fresh state dir, waits for its socket
#	check "status answers" volctl status
#	sand_stop			# SIGTERM, must exit 0 and remove its socket
#	t_done				# exit 1 if anything failed
#
# Output is TAP-like for tests/run-tests.sh: "ok - what", "not ok - what",
# "ok - what # SKIP why". Processes are started only through t_bg or
# sand_start; the EXIT trap kills those PIDs (and no others) and removes the
# temp directory (kept when KEEP=1 or when something failed, for the logs).
#
# Variables: BUILD (default build), T_TMP (this test's temp dir), SAND_DIR,
# SAND_SOCK, SAND_LOG, SAND_PID (the current daemon), SAND_RC (its exit
# status after sand_stop), T_TIMEOUT (seconds to wait for things, default 20).
# This file is not a test itself: it prints nothing when run alone.

[ -n "${SAND_LIB_SH:-}" ] && return 0
SAND_LIB_SH=1

BUILD=${BUILD:-build}
SAND_BIN=$(realpath -m "${SAND_BIN:-$BUILD/sand}")
VOLCTL_BIN=$(realpath -m "${VOLCTL_BIN:-$BUILD/volctl}")
T_TIMEOUT=${T_TIMEOUT:-20}
[ -n "${SANITIZE:-}" ] && T_TIMEOUT=$((T_TIMEOUT * 3))
T_NAME=$(basename "${0%.sh}")
T_FAILED=0
T_COUNT=0
T_PIDS=()
T_MAIN_PID=$BASHPID
T_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sand-$T_NAME.XXXXXX") || { echo "not ok - mktemp"; exit 1; }
SAND_DIR=$T_TMP/state
SAND_SOCK=$SAND_DIR/sand.sock
SAND_LOG=$T_TMP/sand.out
SAND_PID=
SAND_RC=

# ---- TAP ----
ok() { T_COUNT=$((T_COUNT + 1)); echo "ok - $*"; }
not_ok() { T_COUNT=$((T_COUNT + 1)); T_FAILED=1; echo "not ok - $*"; }
skip() { T_COUNT=$((T_COUNT + 1)); echo "ok - $1 # SKIP ${2:-no reason given}"; }
diag() { echo "# $*"; }
# The checks below keep CMD's output in $T_TMP/check.out and show it on failure.
t_show() { sed 's/^/#   /' "$T_TMP/check.out" | tail -n 15; }
# check DESC CMD...: ok when CMD succeeds
check() {
	local d=$1; shift
	if "$@" >"$T_TMP/check.out" 2>&1; then ok "$d"; else not_ok "$d"; t_show; fi
}
# check_fail DESC CMD...: ok when CMD fails
check_fail() {
	local d=$1; shift
	if "$@" >"$T_TMP/check.out" 2>&1; then not_ok "$d"; t_show; else ok "$d"; fi
}
# check_rc DESC RC CMD...: ok when CMD exits with RC
check_rc() {
	local d=$1 want=$2 rc; shift 2
	"$@" >"$T_TMP/check.out" 2>&1; rc=$?
	if [ "$rc" -eq "$want" ]; then ok "$d"; else not_ok "$d (exit $rc, wanted $want)"; t_show; fi
}
# check_grep DESC PATTERN FILE: ok when the extended regex is in FILE
check_grep() {
	if grep -Eq -- "$2" "$3" 2>/dev/null; then ok "$1"; else
		not_ok "$1"; diag "'$2' not in $3:"; tail -n 5 "$3" 2>/dev/null | sed 's/^/#   /'; fi
}

# ---- processes ----
t_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# t_running PID: the process exists and is not a zombie. One look at ps, not
# kill -0 and then ps: bash may reap an exited child between the two (when it
# forks the $(...)), and an empty ps line must read as gone, not as running.
t_running() {
	local st
	[ -n "${1:-}" ] || return 1
	st=$(ps -o stat= -p "$1" 2>/dev/null)
	[ -n "$st" ] && [ "${st:0:1}" != Z ]
}

# t_bg LOG CMD...: start CMD in the background with stdout+stderr to LOG;
# sets T_BG_PID and remembers it for cleanup.
t_bg() {
	local log=$1; shift
	(exec "$@") >"$log" 2>&1 &
	T_BG_PID=$!
	T_PIDS+=("$T_BG_PID")
}

# t_kill PID [TIMEOUT]: SIGTERM, wait, then SIGKILL (and fail). Sets T_KILL_RC.
t_kill() {
	local pid=$1 t=${2:-$T_TIMEOUT} i
	T_KILL_RC=
	t_alive "$pid" || { wait "$pid" 2>/dev/null; T_KILL_RC=$?; return 0; }
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < t * 10; i++)); do
		t_running "$pid" || break
		sleep 0.1
	done
	if t_running "$pid"; then
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		T_KILL_RC=137
		not_ok "pid $pid did not exit within ${t}s of SIGTERM: killed"
		return 1
	fi
	wait "$pid" 2>/dev/null
	T_KILL_RC=$?
	return 0
}

t_cleanup() {
	local pid
	# only the test's own shell cleans up, never a subshell
	[ "$BASHPID" = "$T_MAIN_PID" ] || return 0
	for pid in "${T_PIDS[@]}"; do
		if t_alive "$pid"; then
			kill -KILL "$pid" 2>/dev/null
			wait "$pid" 2>/dev/null
		fi
	done
	if [ "$T_FAILED" -eq 0 ] && [ -z "${KEEP:-}" ]; then
		rm -rf "$T_TMP"
	else
		echo "# logs kept in $T_TMP"
	fi
}
trap t_cleanup EXIT
trap 'exit 130' INT TERM

# free_port: print a TCP port on 127.0.0.1 that is free right now.
free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# ---- the daemon ----
volctl() { "$VOLCTL_BIN" --socket "$SAND_SOCK" "$@"; }

# wait_for CMD...: retry for T_TIMEOUT seconds
wait_for() {
	local i
	for ((i = 0; i < T_TIMEOUT * 10; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# sand_start [ARGS...]: start the daemon on $SAND_DIR with its output in
# $SAND_LOG (appended), wait until it answers on $SAND_SOCK. Returns 1 (and
# prints the log's tail) if it exits or does not answer in time.
sand_start() {
	local i
	mkdir -p "$SAND_DIR"
	echo "---- sand_start $*" >>"$SAND_LOG"
	(exec "$SAND_BIN" --state-dir "$SAND_DIR" --control "$SAND_SOCK" "$@") >>"$SAND_LOG" 2>&1 &
	SAND_PID=$!
	T_PIDS+=("$SAND_PID")
	for ((i = 0; i < T_TIMEOUT * 10; i++)); do
		if ! t_alive "$SAND_PID"; then
			wait "$SAND_PID" 2>/dev/null
			SAND_RC=$?
			diag "sand exited with $SAND_RC at start:"
			tail -n 10 "$SAND_LOG" | sed 's/^/#   /'
			SAND_PID=
			return 1
		fi
		if [ -S "$SAND_SOCK" ] && volctl status >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	diag "sand did not answer on $SAND_SOCK within ${T_TIMEOUT}s"
	tail -n 10 "$SAND_LOG" | sed 's/^/#   /'
	return 1
}

# sand_stop: SIGTERM the daemon; 0 when it exited 0 within T_TIMEOUT, removed
# its socket and left no sanitizer report. SAND_RC is its exit status.
sand_stop() {
	local pid=$SAND_PID
	[ -n "$pid" ] || return 1
	t_kill "$pid" || { SAND_PID=; SAND_RC=$T_KILL_RC; return 1; }
	SAND_RC=$T_KILL_RC
	SAND_PID=
	if [ "$SAND_RC" -ne 0 ]; then
		diag "sand exited with $SAND_RC:"; tail -n 20 "$SAND_LOG" | sed 's/^/#   /'
		return 1
	fi
	if [ -e "$SAND_SOCK" ]; then diag "sand left its socket $SAND_SOCK"; return 1; fi
	if grep -q 'Sanitizer' "$SAND_LOG"; then
		diag "sanitizer report in $SAND_LOG:"; grep -A 20 Sanitizer "$SAND_LOG" | head -40 | sed 's/^/#   /'
		return 1
	fi
	return 0
}

# cut_under_reads URL FILE: a qemu-io reader over the first 32 MiB of the
# export URL while FILE, its 32 MiB backing file, is cut (to 0, 8, 16 or 24
# MiB) and regrown 60 times; then checks that the daemon survived.
cut_under_reads() {
	local url=$1 file=$2 reader i
	rm -f "$T_TMP/stop"
	t_bg "$T_TMP/reader.log" bash -c "n=0; while [ ! -e '$T_TMP/stop' ] && [ \$n -lt 500 ]; do
		timeout 30 qemu-io -f raw -r '$url' -c 'read 0 32M' >/dev/null 2>&1
		n=\$((n + 1))
	done; echo reads \$n"
	reader=$T_BG_PID
	for i in $(seq 60); do
		truncate -s $(( (i % 4) * 8 ))M "$file"
		sleep 0.02
		truncate -s 32M "$file"
		t_alive "$SAND_PID" || break
	done
	touch "$T_TMP/stop"
	wait "$reader"
	check "the daemon survived truncations under reads" t_alive "$SAND_PID"
	diag "$(cat "$T_TMP/reader.log")"
}

# t_done: end of the test; exit status 1 if anything failed.
t_done() {
	[ "$T_COUNT" -gt 0 ] || not_ok "$T_NAME ran no checks"
	[ "$T_FAILED" -eq 0 ]
	exit $?
}

# Run directly (tests/run-tests.sh runs every tests/func/*.sh), this file
# tests its own helpers.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	p=$(free_port)
	check "free_port gives a port number ($p)" test "$p" -ge 1024 -a "$p" -le 65535
	check "free_port's port can be bound" python3 -c "import socket; socket.socket().bind(('127.0.0.1', $p))"
	t_bg "$T_TMP/sleep.log" sleep 300
	check "t_bg started a process" t_alive "$T_BG_PID"
	t_kill "$T_BG_PID" 5
	check "t_kill stopped it with SIGTERM (status $T_KILL_RC)" test "$T_KILL_RC" -eq 143
	check_fail "it is gone" t_alive "$T_BG_PID"
	check_rc "check_rc sees exit status 3" 3 bash -c 'exit 3'
	echo hello >"$T_TMP/g"
	check_grep "check_grep finds a line" '^hel+o$' "$T_TMP/g"
	check "lib.sh knows where sand is ($SAND_BIN)" test -x "$SAND_BIN"
	t_done
fi
