#!/usr/bin/env bash
# NBD server against real clients: nbdinfo, qemu-io, qemu-img, nbdcopy.
. "$(dirname "$0")/nbd_common.inc"

for t in nbdinfo qemu-io qemu-img nbdcopy; do
	need $t || { skip "$t tests" "$t not installed"; }
done

SOCK=$TDIR/nbd.sock
start_server main -r 2 -l 127.0.0.1:0 -l "[::1]:0" -l "unix:$SOCK" \
	-e disk=mem:64M,desc=test-disk -e ro=mem:8M,ro -e big=mem:1G || { not_ok "server start"; finish; }
ok "server started on port $PORT"
URI=nbd://127.0.0.1:$PORT

# ---- nbdinfo
J=$TDIR/info.json
if T nbdinfo --json "$URI/disk" >"$J"; then
	python3 - "$J" <<'PY' && ok "nbdinfo --json flags and sizes" || not_ok "nbdinfo --json flags and sizes"
import json, sys
j = json.load(open(sys.argv[1]))
e = j["exports"][0]
want = {"export-name": "disk", "description": "test-disk", "export-size": 64 << 20,
        "is_read_only": False, "can_flush": True, "can_fua": True, "can_trim": True,
        "can_zero": True, "can_fast_zero": True, "can_df": True, "can_cache": True,
        "can_multi_conn": True, "block_size_minimum": 512, "block_size_maximum": 32 << 20}
bad = {k: (e.get(k), v) for k, v in want.items() if e.get(k) != v}
assert j["protocol"] == "newstyle-fixed" and j["structured"], j
assert "base:allocation" in e["contexts"], e
assert not bad, bad
PY
else
	not_ok "nbdinfo --json"
fi
T nbdinfo --json "$URI/ro" >"$J" && python3 -c '
import json,sys; e=json.load(open(sys.argv[1]))["exports"][0]
assert e["is_read_only"] and not e["can_trim"] and not e["can_zero"], e' "$J" &&
	ok "read-only export advertised read-only" || not_ok "read-only export advertised read-only"

L=$(T nbdinfo --list --json "$URI" | python3 -c 'import json,sys; print(" ".join(sorted(e["export-name"] for e in json.load(sys.stdin)["exports"])))')
check "nbdinfo --list shows every export ($L)" test "$L" = "big disk ro"
M=$(T nbdinfo --map "$URI/disk")
# a memory disk nobody wrote is one hole (its pages are allocated on write)
check "nbdinfo --map: one hole" test "$(echo "$M" | awk '{print $1, $2, $4}')" = "0 67108864 hole,zero"
check "default export (no name) is served" bash -c "T() { timeout 30 \"\$@\"; }; T nbdinfo --size '$URI' | grep -qx 67108864"
check "unix socket listener" bash -c "timeout 30 nbdinfo --size 'nbd+unix:///disk?socket=$SOCK' | grep -qx 67108864"
V6PORT=$(awk '/^listening \[::1\]/ { n = split($2, a, ":"); print a[n] }' "$SOUT")
check "IPv6 listener" bash -c "timeout 30 nbdinfo --size 'nbd://[::1]:$V6PORT/disk' | grep -qx 67108864"
check "unknown export refused" bash -c "! timeout 30 nbdinfo --size '$URI/nope' 2>/dev/null"

# ---- qemu-io patterns at several offsets
QIO=(-c 'write -P 0x11 0 4k' -c 'write -P 0x22 4k 60k' -c 'write -P 0x33 1M 1M'
     -c 'write -P 0x44 63M 1M' -c 'write -P 0x55 40M 512' -c 'write -z 2M 64k'
     -c 'write -P 0x66 3M 32M')
check "qemu-io writes at several offsets" T qemu-io -f raw "$URI/disk" "${QIO[@]}"
RIO=(-c 'read -P 0x11 0 4k' -c 'read -P 0x22 4k 60k' -c 'read -P 0x33 1M 1M'
     -c 'read -P 0x44 63M 1M' -c 'read -P 0x55 40M 512' -c 'read -P 0 2M 64k'
     -c 'read -P 0x66 3M 32M' -c 'read -P 0 64k 64k')
OUT=$(T qemu-io -f raw "$URI/disk" "${RIO[@]}" 2>&1)
echo "$OUT" | grep -iE "mismatch|fail|error" | sed "s/^/# /"
check "qemu-io reads the patterns back" bash -c "! grep -qiE 'mismatch|fail|error' <<<\"\$1\" && [ \$(grep -c '^read ' <<<\"\$1\") -eq 8 ]" _ "$OUT"
OUT=$(T qemu-io -f raw "$URI/disk" -c 'write -P 0x77 0 4k' -c 'aio_write -P 0x78 8k 4k' -c 'aio_flush' -c 'write -f -P 0x79 16k 4k' -c 'discard 32k 32k' -c 'read -P 0 32k 32k' -c 'flush' 2>&1)
check "qemu-io fua write, discard, flush" bash -c "! grep -qiE 'mismatch|fail|error' <<<\"\$1\"" _ "$OUT"
OUT=$(T qemu-io -f raw -r "$URI/ro" -c 'write -P 1 0 4k' 2>&1)
check "write to read-only export fails" bash -c "grep -qiE 'operation not permitted|read-only|failed' <<<\"\$1\"" _ "$OUT"

# ---- qemu-img convert in and out
head -c $((48 << 20)) /dev/urandom >"$TDIR/src.raw"
truncate -s 64M "$TDIR/src.raw"
check "qemu-img convert into the export" T qemu-img convert -n -f raw -O raw "$TDIR/src.raw" "$URI/disk"
check "qemu-img convert out of the export" T qemu-img convert -f raw -O raw "$URI/disk" "$TDIR/out.raw"
check "qemu-img round trip checksums match" test "$(sha256sum <"$TDIR/src.raw")" = "$(sha256sum <"$TDIR/out.raw")"
check "qemu-img compare" T qemu-img compare -f raw -F raw "$TDIR/src.raw" "$URI/disk"

# ---- nbdcopy round trip (multi-conn: 4 connections)
head -c $((256 << 20)) /dev/urandom >"$TDIR/big.raw"
truncate -s 1G "$TDIR/big.raw"
dd if=/dev/urandom of="$TDIR/big.raw" bs=1M count=16 seek=1000 conv=notrunc status=none
check "nbdcopy file -> export" T nbdcopy "$TDIR/big.raw" "$URI/big"
check "nbdcopy export -> file" T nbdcopy "$URI/big" "$TDIR/big.out"
check "nbdcopy round trip checksums match" test "$(sha256sum <"$TDIR/big.raw")" = "$(sha256sum <"$TDIR/big.out")"
rm -f "$TDIR/big.raw" "$TDIR/big.out"

check "server still up" server_alive
check "server exits 0 on SIGTERM, leak-free" stop_server
finish
