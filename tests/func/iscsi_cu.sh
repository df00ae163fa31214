#!/usr/bin/env bash
# libiscsi's conformance suite (iscsi-test-cu) against the target, one
# suite per invocation under `timeout`, with -d (or write tests silently
# skip) and -V (the only way to see [SKIPPED]). Every test's result (PASS,
# SKIP or FAIL) is compared with tests/func/iscsi_expected.txt, so a skip
# is never counted as a pass and a new failure or a new skip is noticed.
# Known failures (FAIL in the list) are reported as skips, not passes.
# MultipathIO runs through a second portal (127.0.0.2) of the same target.
#
#   ISCSI_CU_SUITES="SCSI.Read10 iSCSI.iSCSITMF" tests/func/iscsi_cu.sh
#   ISCSI_CU_UPDATE=1 ...   rewrite the expected list from this run
set -u
BUILD=${BUILD:-build}
TESTD=$BUILD/iscsi_testd
EXPECTED=tests/func/iscsi_expected.txt
IQN=iqn.2026-11.org.sand:cu
CU_ARGS=
n=0

if ! command -v iscsi-test-cu >/dev/null; then
	echo "ok - iscsi-test-cu # SKIP libiscsi-bin not installed"
	exit 0
fi
DIR=$(mktemp -d)
PID=
cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT

# start a target (port 0: the kernel picks a free one, we read it back)
start() {
	# emptied here, not only by the child's redirection: else the loop
	# below may read the previous target's port before the child opens it
	: >"$DIR/out"
	"$TESTD" "$@" >"$DIR/out" 2>"$DIR/err" &
	PID=$!
	PORT= PORT2=
	for _ in $(seq 50); do
		PORT=$(awk '/^port/ {print $2}' "$DIR/out" | sed -n 1p)
		PORT2=$(awk '/^port/ {print $2}' "$DIR/out" | sed -n 2p)
		[ -n "$PORT" ] && return 0
		sleep 0.1
	done
	echo "not ok - target starts"
	cat "$DIR/err"
	exit 1
}
# SIGTERM; it must exit 0 (under ASan: no leaks)
stop() {
	kill -TERM "$PID"
	if timeout 20 tail --pid="$PID" -f /dev/null && wait "$PID"; then
		echo "ok - target shuts down cleanly$1"
	else
		echo "not ok - target shuts down cleanly$1"
		tail -n 30 "$DIR/err"
		n=$((n + 1))
	fi
	PID=
}

# iscsi-test-cu -V output -> "Suite.Test RESULT [# first skip reason]"
parse() {
	awk '
	function flush() { if (cur != "" && !done) print cur, "FAIL"; cur = ""; done = 1 }
	/^Suite: / { flush(); suite = $2; next }
	{
		line = $0
		if (line ~ /^  Test: /) {
			flush()
			name = line; sub(/^  Test: /, "", name); sub(/ \.\.\..*$/, "", name)
			cur = suite "." name; done = 0; skip = ""
			line = substr(line, index(line, "...") + 3)
		}
		if (cur == "" || done) next
		if (line ~ /\[SKIPPED\]/ && skip == "") {
			skip = line; sub(/.*\[SKIPPED\] */, "", skip)
			if (skip == "") skip = "skipped"
		}
		if (line ~ /^ *passed/) {
			if (skip != "") print cur, "SKIP #", skip
			else print cur, "PASS"
			done = 1
		} else if (line ~ /^ *FAILED/) { print cur, "FAIL"; done = 1 }
	}
	END { flush() }'
}

# run suites against $URL; results get the prefix $1
run_suites() {
	local prefix=$1 s rc
	shift
	for s in "$@"; do
		timeout -k 5 120 iscsi-test-cu -d -V $CU_ARGS -t "$s" "$URL" ${URL2:+"$URL2"} \
			>"$DIR/cu.log" 2>&1
		rc=$?
		parse <"$DIR/cu.log" >"$DIR/one"
		if [ $rc -ne 0 ] && [ $rc -ne 1 ] || [ ! -s "$DIR/one" ]; then
			echo "not ok - $s: iscsi-test-cu exited $rc"
			tail -n 20 "$DIR/cu.log"
			n=$((n + 1))
			continue
		fi
		sed "s/^/$prefix/" "$DIR/one" >>"$DIR/results"
	done
}

# Every suite on a scratch LUN; MultipathIO through a second portal (in
# target port group 2: two ALUA groups, one LU).
suites=${ISCSI_CU_SUITES:-$(iscsi-test-cu -l 2>/dev/null |
	grep -E '^(SCSI|iSCSI)\.[A-Za-z0-9]+$' | grep -v -e MultipathIO -e Sanitize)}
: >"$DIR/results"
start -a 127.0.0.1:0 -a 127.0.0.2:0 "$IQN" 128M
URL=iscsi://127.0.0.1:$PORT/$IQN/0
URL2=
run_suites "" $suites
if [ -z "${ISCSI_CU_SUITES:-}" ]; then
	URL2=iscsi://127.0.0.2:$PORT2/$IQN/0
	run_suites "" SCSI.MultipathIO
	URL2=
fi
stop ""
# The families with tests that need LOGICAL BLOCKS PER PHYSICAL BLOCK > 1
# ("pb:"): 512-byte logical blocks on 4 KiB physical blocks. Not
# GetLBAStatus: its UnmapSingle asks for LBA i + 1 and wants a descriptor
# at i + LBPPB, which no conforming target returns when LBPPB > 1.
if [ -z "${ISCSI_CU_SUITES:-}" ]; then
	start "$IQN" 128M:512:4K
	URL=iscsi://127.0.0.1:$PORT/$IQN/0
	run_suites "pb:" SCSI.CompareAndWrite SCSI.WriteSame10 SCSI.WriteSame16 SCSI.Unmap \
		SCSI.WriteAtomic16
	stop " (4 KiB physical blocks)"
fi
# Sanitize wipes the LUN: with --allow-sanitize, on a scratch LUN of its
# own. Sanitize.Reset wants the sanitize still running after its 3 s sleep,
# five task management functions, a logout and a new login (about 5 s), and
# then waits 60 s before it looks again: on a LUN of its own, 16 MiB written
# at 1 MiB/s (-S 1024), so the sanitize takes about 16 s.
if [ -z "${ISCSI_CU_SUITES:-}" ]; then
	start "$IQN" 8M
	URL=iscsi://127.0.0.1:$PORT/$IQN/0
	CU_ARGS=--allow-sanitize
	run_suites "" $(iscsi-test-cu -l 2>/dev/null | grep -E '^SCSI\.Sanitize\.' |
		grep -v '\.Reset$')
	stop " (sanitize)"
	start -S 1024 "$IQN" 16M
	URL=iscsi://127.0.0.1:$PORT/$IQN/0
	run_suites "" SCSI.Sanitize.Reset
	CU_ARGS=
	stop " (sanitize at 1 MiB/s)"
fi
# ReadOnly on a write-protected LUN ("ro:" in the expected list)
if [ -z "${ISCSI_CU_SUITES:-}" ]; then
	start -R "$IQN" 16M
	URL=iscsi://127.0.0.1:$PORT/$IQN/0
	run_suites "ro:" SCSI.ReadOnly
	stop " (read-only)"
fi

if [ -n "${ISCSI_CU_UPDATE:-}" ]; then
	{
		echo "# iscsi-test-cu results expected from tests/func/iscsi_cu.sh"
		echo "# (test RESULT [# first skip reason]); regenerate with ISCSI_CU_UPDATE=1"
		sort "$DIR/results"
	} >"$EXPECTED"
fi

pass=0 skip=0 fail=0
while read -r test result rest; do
	want=$(awk -v t="$test" '$1 == t {print $2}' "$EXPECTED")
	case $result in
	PASS) pass=$((pass + 1)) ;;
	SKIP) skip=$((skip + 1)) ;;
	*) fail=$((fail + 1)) ;;
	esac
	if [ -z "$want" ]; then
		echo "not ok - $test: $result, not in $EXPECTED"
		n=$((n + 1))
	elif [ "$want" != "$result" ]; then
		echo "not ok - $test: $result, expected $want"
		n=$((n + 1))
	elif [ "$result" = PASS ]; then
		echo "ok - $test"
	elif [ "$result" = FAIL ]; then
		echo "ok - $test # SKIP known failure (listed in $EXPECTED)"
	else
		echo "ok - $test # SKIP ${rest#\# }"
	fi
done <"$DIR/results"
echo "# iscsi-test-cu: $pass passed, $skip skipped, $fail failed"
exit $((n > 0))
