#!/usr/bin/env bash
# Runs tests and prints one closing line: "N passed, N failed, N skipped".
#
# Arguments: test binaries (Check suites) and scripts (tests/func/*.sh); with
# none, every unit test in $BUILD/tests and every tests/func/*.sh.
#
# A Check suite counts its checks ("Checks: N, Failures: F, Errors: E").
# A script prints TAP-like lines: "ok - what", "not ok - what",
# "ok - what # SKIP why"; a script that exits non-zero without a
# "not ok" line counts as one failure, one that prints nothing and exits 0
# as one pass. Each test runs under a timeout; logs go to $BUILD/test-logs.
set -u
BUILD=${BUILD:-build}
export BUILD
LOGDIR=$BUILD/test-logs
mkdir -p "$LOGDIR"
TIMEOUT=${TEST_TIMEOUT:-600}
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-120}
export CK_FORK=yes
if [ -n "${SANITIZE:-}" ]; then
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
	export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-3}
fi

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
	for t in "$BUILD"/tests/test_*; do [ -x "$t" ] && tests+=("$t"); done
	for t in tests/func/*.sh; do [ -f "$t" ] && tests+=("$t"); done
fi

passed=0 failed=0 skipped=0
failures=()
for t in "${tests[@]}"; do
	name=$(basename "$t")
	log=$LOGDIR/$name.log
	start=$(date +%s)
	case "$t" in
	*.sh) timeout -k 10 "$TIMEOUT" bash "$t" >"$log" 2>&1; rc=$? ;;
	*) timeout -k 10 "$TIMEOUT" "$t" >"$log" 2>&1; rc=$? ;;
	esac
	secs=$(( $(date +%s) - start ))
	p=0 f=0 s=0
	if checks=$(grep -Eo 'Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" | tail -n 1) && [ -n "$checks" ]; then
		read -r n fl er < <(echo "$checks" | tr -dc '0-9 ' | tr -s ' ')
		p=$((n - fl - er)); f=$((fl + er))
		[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
	else
		p=$(grep -E '^ok( |$)' "$log" | grep -vc '# SKIP' || true)
		s=$(grep -E '^ok( |$)' "$log" | grep -c '# SKIP' || true)
		f=$(grep -cE '^not ok( |$)' "$log" || true)
		if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
		if [ "$rc" -eq 0 ] && [ $((p + f + s)) -eq 0 ]; then p=1; fi
	fi
	passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
	status=ok
	[ "$f" -gt 0 ] && { status=FAIL; failures+=("$name"); }
	[ "$rc" -eq 124 ] && status="$status (timeout)"
	printf '%-40s %-6s %4d passed %3d failed %3d skipped %4ds\n' "$name" "$status" "$p" "$f" "$s" "$secs"
	if [ "$f" -gt 0 ]; then
		echo "---- last lines of $log"
		grep -E '^not ok|:F:|:E:|ERROR|Sanitizer|runtime error' "$log" | head -n 20
		tail -n 15 "$log"
		echo "----"
	fi
done
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
