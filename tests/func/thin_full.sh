#!/usr/bin/env bash
# A full pool over NBD with qemu-io: a 64M volume on a 16M one-disk pool, a
# snapshot that keeps 2M to itself; writes fill the pool until they fail
# with ENOSPC (and the low-space warning is logged); then a write that needs
# a new chunk fails, while reads, overwrites of the volume's own chunks and
# flushes work, the snapshot reads its data, the daemon goes on and the
# pool checks clean; deleting the snapshot gives its 2M back and writes
# resume.
. "$(dirname "$0")/lib.sh"

for tool in qemu-io; do
	if ! command -v $tool >/dev/null; then
		skip "full pool" "$tool not installed"
		t_done
	fi
done
port=$(free_port)
URL=nbd://127.0.0.1:$port

# qio ARGS...: qemu-io, its output in $T_TMP/qio; fails on any error
qio() {
	timeout 60 qemu-io -f raw "$@" >"$T_TMP/qio" 2>&1 || { cat "$T_TMP/qio"; return 1; }
	cat "$T_TMP/qio"
	! grep -qiE "error|fail|read-only|protected|denied|not permitted|pattern|space" "$T_TMP/qio"
}
# enospc ARGS...: qemu-io reports "No space left on device"
enospc() {
	timeout 60 qemu-io -f raw "$@" >"$T_TMP/qio" 2>&1
	cat "$T_TMP/qio"
	grep -q "No space left on device" "$T_TMP/qio"
}
used() { volctl --json pool show p | sed -n 's/^ *"data_used": \([0-9]*\),*$/\1/p'; }
total() { volctl --json pool show p | sed -n 's/^ *"data_total": \([0-9]*\),*$/\1/p'; }

sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
check "disk add d" volctl disk add d "$T_TMP/d.img" --size 16M
check_rc "pool create --low-space 100: refused" 2 volctl pool create p --raid 0 --low-space 100 d
check "pool create p --raid 0 --low-space 20% d" volctl pool create p --raid 0 --low-space 20% d
check "vol create v 64M (overcommitted)" volctl vol create v --pool p --size 64M
volctl pool show p >"$T_TMP/show" 2>&1
check_grep "pool show: data" "^data +0B used of 14M$" "$T_TMP/show"
check_grep "pool show: metadata" "^metadata +[0-9.]+K used of 1M$" "$T_TMP/show"
check_grep "pool show: provisioned" "^provisioned +64M$" "$T_TMP/show"
check_grep "pool show: overcommit" "^overcommit +4.[0-9]+$" "$T_TMP/show"
check_grep "pool show: low space, 20%" "^low space +below 3M free \(20%\)$" "$T_TMP/show"
check "nbd listen" volctl nbd listen 127.0.0.1:$port
check "export nbd v" volctl export nbd v
check "write 4M" qio "$URL/v" -c 'write -P 0x41 0 4M' -c flush
check "snapshot v s" volctl snapshot v s
check "export nbd v@s as snap" volctl export nbd v@s --name snap
check "overwrite 2M (the snapshot keeps the old 2M)" qio "$URL/v" -c 'write -P 0x42 0 2M' -c flush

# fill: 1M writes from 4M on until one fails
off=4
full=0
while [ $off -lt 64 ]; do
	if ! qio "$URL/v" -c "write -P 0x43 ${off}M 1M" -c flush >/dev/null; then
		grep -q "No space left on device" "$T_TMP/qio" && full=1
		break
	fi
	off=$((off + 1))
done
if [ $full = 1 ]; then ok "writes fill the pool, then fail with ENOSPC (at ${off}M)"; else
	not_ok "writes fill the pool, then fail with ENOSPC (stopped at ${off}M)"; sed 's/^/#   /' "$T_TMP/qio"; fi
check "pool show: data used is data total" test "$(used)" = "$(total)"
check_grep "the low-space warning was logged" "pool p is low on space" "$SAND_LOG"
check "pool show says LOW NOW" volctl pool show p
check_grep "... low space" "^low space +below 3M free \(20%\) \(LOW NOW\)$" "$T_TMP/check.out"

check "pool set p --low-space 0: off" volctl pool set p --low-space 0
check_grep "... not low now" "^pool p: low space below 0B free \(0%\)$" "$T_TMP/check.out"
check "pool set p --low-space 5" volctl pool set p --low-space 5
check_grep "... low now" "^pool p: low space below .* free \(5%\): LOW NOW$" "$T_TMP/check.out"
check_rc "pool set without a setting" 2 volctl pool set p
check_rc "pool set of an unknown pool" 1 volctl pool set nope --low-space 5

# full: only what needs a new chunk fails
check "a write to a chunk shared with the snapshot: ENOSPC" enospc "$URL/v" -c 'write -P 0x44 3M 4k'
check "a write to an unmapped chunk: ENOSPC" enospc "$URL/v" -c 'write -P 0x44 60M 4k'
check "reads work" qio "$URL/v" -r -c 'read -P 0x42 0 2M' -c 'read -P 0x41 2M 2M' \
	-c 'read -P 0x43 4M 1M' -c 'read -P 0 63M 1M'
check "an overwrite of an owned chunk works" qio "$URL/v" -c 'write -P 0x45 1M 64k' -c flush
check "... and reads back" qio "$URL/v" -r -c 'read -P 0x45 1M 64k' -c 'read -P 0x42 0 1M'
check "the snapshot reads its data" qio "$URL/snap" -r -c 'read -P 0x41 0 4M'
check "the daemon answers" volctl status
check "check p: clean" volctl check p

# the snapshot goes, its 2M come back
check "unexport the snapshot" volctl unexport nbd snap
check "vol delete v@s" volctl vol delete v@s
check "pool show: 2M free" test $(($(total) - $(used))) -eq $((2 << 20))
check "writes resume" qio "$URL/v" -c "write -P 0x46 ${off}M 1M" -c flush
check "... read back" qio "$URL/v" -r -c "read -P 0x46 ${off}M 1M" -c 'read -P 0x45 1M 64k'
check "check p: clean" volctl check p
check "sand stops" sand_stop
sand_start --reactors 2 || { not_ok "sand starts again"; t_done; }
ok "sand starts again"
check "the low-space setting is remembered" volctl pool show p
check_grep "... 5%" "^low space +below .* free \(5%\)" "$T_TMP/check.out"
check "the data is back" qio "$URL/v" -r -c "read -P 0x46 ${off}M 1M" -c 'read -P 0x45 1M 64k'
check "sand stops" sand_stop
t_done
