#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/blkbench, the tool bench/backend measures with, still runs and
# reports sane numbers on every backend (a smoke test, not a benchmark).
. "$(dirname "$0")/lib.sh"

BB=$BUILD/blkbench
IMG=$(mktemp /var/tmp/sand-blkbench.XXXXXX)
T_CLEAN_FILES=("$IMG")
trap 'rm -f "${T_CLEAN_FILES[@]}"; t_cleanup' EXIT

# field JSON NAME: a numeric field of blkbench's JSON line
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

for be in null mem uring aio psync; do
	for rw in randwrite randread write read; do
		args=(-e "$be" -p "$rw" -n 2000 -q 16 -j)
		case $be in null | mem) args+=(-s 64M) ;; *) args+=(-f "$IMG" -s 64M) ;; esac
		if out=$(timeout 60 "$BB" "${args[@]}" 2>"$T_TMP/err"); then
			ios=$(field "$out" ios); errs=$(field "$out" errors); iops=$(field "$out" iops)
			if [ "$ios" -eq 2000 ] && [ "$errs" -eq 0 ] && python3 -c "import sys; sys.exit(not float('$iops') > 0)"; then
				ok "$be $rw: 2000 I/Os, no errors, $iops IOPS"
			else
				not_ok "$be $rw: ios=$ios errors=$errs iops=$iops"
			fi
		else
			not_ok "$be $rw: blkbench failed"; sed 's/^/#   /' "$T_TMP/err"
		fi
	done
done
check_fail "uring on an epoll loop is refused" "$BB" -e uring -l epoll -f "$IMG" -n 10
check_fail "an I/O size that is not a block multiple is refused" "$BB" -e null -b 1000 -n 10
t_done
