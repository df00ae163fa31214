#!/usr/bin/env bash
# iSCSI target against real clients: iscsi-ls (discovery), iscsi-inq,
# iscsi-readcapacity16, qemu-io patterns through iscsi:// URLs, qemu-img
# bench, and a clean shutdown (under ASan: no leaks) with clients gone.
set -u
BUILD=${BUILD:-build}
TESTD=$BUILD/iscsi_testd
IQN=iqn.2026-11.org.sand:clients
T=5
n=0
ok() { echo "ok - $*"; }
nok() { echo "not ok - $*"; n=$((n + 1)); }
check() { local what=$1; shift; if "$@" >>"$LOG" 2>&1; then ok "$what"; else nok "$what"; fi; }

for tool in iscsi-ls iscsi-inq qemu-io qemu-img; do
	if ! command -v $tool >/dev/null; then
		echo "ok - iscsi clients # SKIP $tool not installed"
		exit 0
	fi
done
DIR=$(mktemp -d)
LOG=$DIR/clients.log
PID=
cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT

# start the target: port 0, the kernel picks a free port; we read it back
start() {
	# empty it here: the background child's own redirection may come after
	# the first read below, which would find the previous server's port
	: >"$DIR/out"
	"$TESTD" "$@" >"$DIR/out" 2>"$DIR/err" &
	PID=$!
	for _ in $(seq 200); do
		PORT=$(awk '/^port/ {print $2}' "$DIR/out")
		[ -n "$PORT" ] && return 0
		kill -0 $PID 2>/dev/null || break
		sleep 0.1
	done
	cat "$DIR/err"
	return 1
}
# stop it: SIGTERM, and it must exit 0 (ASan reports leaks as a failure)
stop() {
	kill -TERM "$PID"
	if timeout 20 tail --pid="$PID" -f /dev/null; then
		wait "$PID"; local rc=$?
		PID=
		return $rc
	fi
	kill -KILL "$PID"; PID=
	return 1
}

if ! start "$IQN" 64M 16M:4096; then
	nok "target starts"
	exit 1
fi
ok "target starts on 127.0.0.1:$PORT"
URL=iscsi://127.0.0.1:$PORT/$IQN

out=$(timeout $T iscsi-ls -s iscsi://127.0.0.1:$PORT 2>&1)
echo "$out" >>"$LOG"
if echo "$out" | grep -q "Target:$IQN Portal:127.0.0.1:$PORT,1" &&
   echo "$out" | grep -q "Lun:0 *Type:DIRECT_ACCESS (Size:63M)" &&
   echo "$out" | grep -q "Lun:1 *Type:DIRECT_ACCESS (Size:15M)"; then
	ok "iscsi-ls discovers the target and its two luns"
else
	nok "iscsi-ls discovers the target and its two luns: $out"
fi

out=$(timeout $T iscsi-inq "$URL/0" 2>&1)
echo "$out" >>"$LOG"
if echo "$out" | grep -q "Vendor:SAND" && echo "$out" | grep -q "CmdQue:1"; then
	ok "iscsi-inq standard inquiry"
else
	nok "iscsi-inq standard inquiry: $out"
fi
out=$(timeout $T iscsi-inq -e 1 -c 128 "$URL/0" 2>&1)
serial0=$(echo "$out" | awk -F: '/Unit Serial Number/ {print $2}' | tr -d '[]')
out=$(timeout $T iscsi-inq -e 1 -c 128 "$URL/1" 2>&1)
serial1=$(echo "$out" | awk -F: '/Unit Serial Number/ {print $2}' | tr -d '[]')
if [ -n "$serial0" ] && [ -n "$serial1" ] && [ "$serial0" != "$serial1" ]; then
	ok "each lun has its own serial ($serial0, $serial1)"
else
	nok "each lun has its own serial ('$serial0', '$serial1')"
fi
out=$(timeout $T iscsi-inq -e 1 -c 131 "$URL/0" 2>&1)
echo "$out" >>"$LOG"
if echo "$out" | grep -q "Designator Type:(3) NAA" &&
   echo "$out" | grep -q "Designator:\[SAND    $serial0\]"; then
	ok "device identification page has an NAA designator"
else
	nok "device identification page has an NAA designator: $out"
fi
out=$(timeout $T iscsi-readcapacity16 "$URL/1" 2>&1)
echo "$out" >>"$LOG"
if echo "$out" | grep -q "LOGICAL BLOCK LENGTH IN BYTES:4096" &&
   echo "$out" | grep -q "RETURNED LOGICAL BLOCK ADDRESS:4095" &&
   echo "$out" | grep -q "LBPME:1 LBPRZ:1"; then
	ok "read capacity 16 on a 4096-byte-block lun"
else
	nok "read capacity 16 on a 4096-byte-block lun: $out"
fi
if timeout $T iscsi-inq "iscsi://127.0.0.1:$PORT/iqn.2026-11.org.sand:nope/0" >>"$LOG" 2>&1; then
	nok "login to an unknown target fails"
else
	ok "login to an unknown target fails"
fi

qio() {
	local fmt=(-f raw)
	[ "$1" = --image-opts ] && fmt=()
	timeout 60 qemu-io "${fmt[@]}" "$@" >"$DIR/qio" 2>&1; local rc=$?
	cat "$DIR/qio" >>"$LOG"
	[ $rc -eq 0 ] && ! grep -qiE "error|fail|mismatch" "$DIR/qio"
}
check "qemu-io writes and reads back patterns (512-byte blocks)" qio "$URL/0" \
	-c 'write -P 0xab 0 1M' -c 'write -P 0xcd 1M 4M' -c 'write -P 0x11 512 512' \
	-c 'read -P 0xab 0 512' -c 'read -P 0x11 512 512' -c 'read -P 0xab 1024 1047552' \
	-c 'read -P 0xcd 1M 4M' -c 'write -P 0x5a 63M 1M' -c 'read -P 0x5a 63M 1M' \
	-c 'aio_write -P 0x21 8M 256k' -c 'aio_write -P 0x22 9M 256k' -c 'aio_flush' \
	-c 'read -P 0x21 8M 256k' -c 'read -P 0x22 9M 256k' -c flush
check "qemu-io zeroes and discards read back as zeros" qio "$URL/0" \
	-c 'write -z 0 64k' -c 'read -P 0 0 64k' -c 'read -P 0xab 64k 64k' \
	-c 'discard 1M 1M' -c 'read -P 0 1M 1M' -c 'read -P 0xcd 2M 1M'
check "data survives reconnection" qio "$URL/0" -c 'read -P 0xab 64k 64k' -c 'read -P 0xcd 3M 1M'
check "qemu-io on a 4096-byte-block lun" qio "$URL/1" \
	-c 'write -P 0x42 4k 12M' -c 'read -P 0x42 4k 12M' -c 'read -P 0 0 4k'
OPTS="driver=iscsi,transport=tcp,portal=127.0.0.1:$PORT,target=$IQN,lun=0"
check "qemu-io with header digests" qio --image-opts "$OPTS,header-digest=crc32c" \
	-c 'write -P 0x3c 20M 2M' -c 'read -P 0x3c 20M 2M' -c 'read -P 0xcd 3M 1M'
if grep -q "header digest" "$DIR/err"; then
	ok "header digest negotiated"
else
	nok "header digest negotiated"
fi
if timeout 60 qemu-io -f raw "$URL/0" -c 'write -P 1 64M 4k' >"$DIR/qio" 2>&1 &&
   ! grep -qiE "error|fail" "$DIR/qio"; then
	nok "a write beyond the end fails"
else
	ok "a write beyond the end fails"
fi
check "qemu-img bench writes (64k, qd 16)" timeout 60 qemu-img bench -f raw -t none -d 16 -s 65536 -c 2000 -w "$URL/0"
check "qemu-img bench reads (4k, qd 16)" timeout 60 qemu-img bench -f raw -t none -d 16 -s 4096 -c 5000 "$URL/0"

# a client that vanishes in the middle of a login, and one that sends junk:
# the target stays up for everyone else
exec 3<>/dev/tcp/127.0.0.1/$PORT && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && exec 3>&-
head -c 48 /dev/zero > /dev/tcp/127.0.0.1/$PORT 2>/dev/null
check "target still serves after junk connections" qio "$URL/0" -c 'write -P 0x99 0 4k' \
	-c 'read -P 0x99 0 4k'

# an epoll target with short NOP-In pings: qemu (libiscsi) answers them and
# stays connected while idle
if stop; then ok "target shuts down cleanly"; else nok "target shuts down cleanly"; cat "$DIR/err"; fi
if start -e -n 100 "$IQN" 16M; then
	URL=iscsi://127.0.0.1:$PORT/$IQN
	check "idle qemu-io answers NOP-In pings (epoll loops)" qio "$URL/0" \
		-c 'write -P 0x17 0 64k' -c 'sleep 1000' -c 'read -P 0x17 0 64k'
	if grep -q "no answer to" "$DIR/err"; then
		nok "no connection dropped for missed pings"
	else
		ok "no connection dropped for missed pings"
	fi
else
	nok "epoll target starts"
fi

# a read-only export refuses writes
if stop; then ok "target shuts down cleanly"; else nok "target shuts down cleanly"; cat "$DIR/err"; fi
if start -R "$IQN" 16M; then
	URL=iscsi://127.0.0.1:$PORT/$IQN
	if timeout 60 qemu-io -f raw "$URL/0" -c 'write -P 1 0 4k' >"$DIR/qio" 2>&1 &&
	   ! grep -qiE "error|fail|denied|read-only" "$DIR/qio"; then
		nok "a read-only lun refuses writes"
	else
		ok "a read-only lun refuses writes"
	fi
	check "a read-only lun reads" qio "$URL/0" -r -c 'read -P 0 0 64k'
	if stop; then ok "read-only target shuts down cleanly"; else nok "read-only target shuts down cleanly"; fi
else
	nok "read-only target starts"
fi
[ $n -eq 0 ] || { echo "---- log"; tail -n 40 "$LOG"; tail -n 20 "$DIR/err"; }
exit $((n > 0))
