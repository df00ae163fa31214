#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A short run of every libFuzzer harness (tests/fuzz, built by `make fuzz`
# into build/fuzz with ASan+UBSan) from its committed seed corpus: the NBD
# handshake and request codec, the iSCSI PDU framing and login negotiation,
# and SCSI command execution on a memory LU. A crash, a leak, a hang (10 s
# per input) or a broken invariant fails the test; the input that did it is
# kept in the test's temp dir (kept on failure) and its path printed.
# SAND_FUZZ_SECONDS (default 15) sets the time per harness; a long run by
# hand: build/fuzz/fuzz_X -max_total_time=3600 tests/fuzz/corpus/X
. "$(dirname "$0")/lib.sh"

secs=${SAND_FUZZ_SECONDS:-15}
root=$(cd "$(dirname "$0")/../.." && pwd)
found=0
for src in "$root"/tests/fuzz/fuzz_*.c; do
	name=$(basename "${src%.c}")
	kind=${name#fuzz_}
	bin=$root/build/fuzz/$name
	if [ ! -x "$bin" ]; then
		skip "$name runs" "build/fuzz/$name not built (make fuzz needs clang)"
		continue
	fi
	found=1
	corpus=$T_TMP/corpus-$kind
	mkdir -p "$corpus"
	[ -d "$root/tests/fuzz/corpus/$kind" ] && cp "$root/tests/fuzz/corpus/$kind"/* "$corpus"/
	n_seeds=$(find "$corpus" -type f | wc -l)
	if [ "$n_seeds" -gt 0 ]; then ok "$name has a seed corpus ($n_seeds inputs)"
	else not_ok "$name has a seed corpus"; fi
	log=$T_TMP/$name.log
	if timeout $((secs * 4 + 60)) "$bin" -max_total_time="$secs" -timeout=10 \
		-rss_limit_mb=3072 -artifact_prefix="$T_TMP/$name-" -print_final_stats=1 \
		"$corpus" >"$log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
		ok "$name: ${runs:-?} inputs in ${secs}s, no crash, leak or hang"
		diag "$(grep -m1 ' DONE ' "$log")"
	else
		not_ok "$name: a failing input (see $log)"
		grep -E 'ERROR|SUMMARY|Test unit written|abort' "$log" | head -n 10 | sed 's/^/#   /'
	fi
done
[ "$found" = 1 ] || diag "no harness built"
t_done
