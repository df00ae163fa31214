#!/usr/bin/env bash
# An export on a file on tmpfs with the io_uring backend, where reads and
# writes up to 64 KiB and flushes are done inline on the reactor (no io-wq):
# fio's nbd engine at QD 32 on 4 connections with verify=crc32c and a flush
# every 16 writes, a read-back pass on new connections, 1 MiB writes (still
# through the ring) read back by checksum, and qemu-io FUA writes and a
# flush on one connection read back on another; writes past a cut under
# the export and to a full tmpfs (their copy into the file's mapping
# faults). The file is compared with what was written, byte for byte,
# after the server is gone.
. "$(dirname "$0")/nbd_common.inc"

SHM=/dev/shm
if [ "$(stat -f -c %T "$SHM" 2>/dev/null)" != tmpfs ] || [ ! -w "$SHM" ]; then
	skip "exports on tmpfs" "no writable tmpfs at $SHM"
	finish
fi
if ! need fio || ! fio --enghelp 2>/dev/null | grep -qw nbd; then
	skip "exports on tmpfs" "fio without the nbd engine"
	finish
fi
IMG=$(mktemp "$SHM/sand-nbd-tmpfs.XXXXXX")
FULL=$TDIR/full	# a 2 MiB tmpfs of its own, mounted below if we may
trap 'umount "$FULL" 2>/dev/null; nbd_cleanup; rm -f "$IMG"' EXIT
start_server main -r 2 -l 127.0.0.1:0 -e "t=file:$IMG,size=192M,backend=uring" ||
	{ not_ok "server start"; finish; }
ok "server started on port $PORT, file on tmpfs"
URI="nbd://127.0.0.1:$PORT/t"

JOB=(--verify_state_save=0 --ioengine=nbd --uri="$URI" --bs=4k --iodepth=32 --numjobs=4
     --size=16M --offset_increment=32M --verify=crc32c --group_reporting)
if TMO=300 T fio --name=rw --rw=randwrite --fsync=16 --do_verify=1 --verify_fatal=1 "${JOB[@]}" \
	>"$TDIR/fio.out" 2>"$TDIR/fio.err"; then
	ok "fio randwrite 4K QD32 x 4 connections, a flush every 16 writes, verify=crc32c"
else
	not_ok "fio randwrite 4K QD32 x 4 connections, a flush every 16 writes, verify=crc32c"
	sed 's/^/# /' "$TDIR/fio.err" | tail -n 20
fi
if TMO=300 T fio --name=rw --rw=randwrite --verify_only --verify_fatal=1 "${JOB[@]}" \
	>"$TDIR/fio2.out" 2>"$TDIR/fio2.err"; then
	ok "fio verify_only pass on new connections"
else
	not_ok "fio verify_only pass on new connections"
	sed 's/^/# /' "$TDIR/fio2.err" | tail -n 20
fi

# 1 MiB writes and mixed 4K-64K reads: larger I/O still goes through the
# ring (io-wq), both kinds in flight on one connection
if TMO=300 T fio --name=big --verify_state_save=0 --ioengine=nbd --uri="$URI" --rw=write \
	--bsrange=4k-1m --iodepth=16 --offset=128M --size=48M --verify=crc32c --verify_fatal=1 \
	--do_verify=1 >"$TDIR/fio3.out" 2>"$TDIR/fio3.err"; then
	ok "fio writes of 4K-1M at QD16, verify=crc32c"
else
	not_ok "fio writes of 4K-1M at QD16, verify=crc32c"
	sed 's/^/# /' "$TDIR/fio3.err" | tail -n 20
fi

if need qemu-io; then
	# FUA writes and a flush on one connection, read back on another
	if TMO=60 T qemu-io -f raw -c "write -f -P 0x5a 180M 64k" -c "write -P 0xa5 181M 4k" \
		-c flush "$URI" >"$TDIR/qio.out" 2>&1 &&
	   TMO=60 T qemu-io -f raw -r -c "read -P 0x5a 180M 64k" -c "read -P 0xa5 181M 4k" \
		"$URI" >"$TDIR/qio2.out" 2>&1 && ! grep -q "Pattern verification failed" "$TDIR/qio2.out"; then
		ok "qemu-io FUA write and flush, read back on a new connection"
	else
		not_ok "qemu-io FUA write and flush, read back on a new connection"
		sed 's/^/# /' "$TDIR/qio.out" "$TDIR/qio2.out" | tail -n 20
	fi
else
	skip "qemu-io FUA write and flush" "no qemu-io"
fi
# The file cut under the export (184 of its 192 MiB left): a write past the
# cut faults in the copy into the mapping (SIGBUS, caught), is done again
# with pwritev2, which grows the file back as it always did, and says so
# once in the log; every later write takes pwritev2, the server serves on.
if need qemu-io; then
	truncate -s 184M "$IMG"
	if TMO=60 T qemu-io -f raw -c "write -P 0x3c 188M 64k" -c "write -P 0x3d 176M 4k" "$URI" \
		>"$TDIR/qcut.out" 2>&1 &&
	   TMO=60 T qemu-io -f raw -r -c "read -P 0x3c 188M 64k" -c "read -P 0x3d 176M 4k" "$URI" \
		>"$TDIR/qcut2.out" 2>&1; then
		ok "writes past a cut under the export land (the file grows back), read back"
	else
		not_ok "writes past a cut under the export land (the file grows back), read back"
		sed 's/^/# /' "$TDIR/qcut.out" "$TDIR/qcut2.out" | tail -n 20
	fi
	check "the file grew back to the end of that write" \
		test "$(stat -c %s "$IMG")" -eq $(( (188 << 20) + 65536 ))
	check "the log says the mapping faulted, once" \
		test "$(grep -c 'into the mapping of .* faulted' "$SERR")" -eq 1
else
	skip "writes past a cut under the export" "no qemu-io"
fi
check "server still up" server_alive
check "server exits 0 on SIGTERM, leak-free" stop_server
# the file itself holds what the clients wrote
if ! need qemu-io; then
	:
elif python3 - "$IMG" <<'PY'; then
import sys
with open(sys.argv[1], "rb") as f:
    f.seek(180 << 20)
    a = f.read(64 << 10)
    f.seek(181 << 20)
    b = f.read(4096)
sys.exit(0 if a == b"\x5a" * (64 << 10) and b == b"\xa5" * 4096 else 1)
PY
	ok "the tmpfs file holds the qemu-io patterns"
else
	not_ok "the tmpfs file holds the qemu-io patterns"
fi

# A full tmpfs: 64 KiB writes into an 8 MiB sparse file on a 2 MiB tmpfs.
# The copy into the mapping faults once the tmpfs is full (SIGBUS, caught);
# pwritev2 then gives the client ENOSPC, as it always did; what was
# written before reads back, and the server serves on.
mkdir -p "$FULL"
if ! need qemu-io; then
	skip "writes to a full tmpfs" "no qemu-io"
elif ! mount -t tmpfs -o size=2M sand-test "$FULL" 2>/dev/null; then
	skip "writes to a full tmpfs" "cannot mount a tmpfs here"
else
	truncate -s 8M "$FULL/d.img"
	start_server full -l 127.0.0.1:0 -e "f=file:$FULL/d.img,size=8M,backend=uring" ||
		not_ok "server start on the small tmpfs"
	WR=()
	for i in $(seq 0 47); do WR+=(-c "write -P 0x33 $((i * 65536)) 64k"); done
	TMO=60 T qemu-io -f raw "${WR[@]}" "nbd://127.0.0.1:$PORT/f" >"$TDIR/qfull.out" 2>&1
	check "writes past the full tmpfs fail with ENOSPC" grep -q "No space left on device" "$TDIR/qfull.out"
	check "the log says the mapping faulted" grep -q "into the mapping of .* faulted" "$SERR"
	T qemu-io -f raw -r -c "read -P 0x33 0 1M" "nbd://127.0.0.1:$PORT/f" >"$TDIR/qfull2.out" 2>&1
	check "what fit reads back" test $? -eq 0
	check "server still up" server_alive
	check "server exits 0 on SIGTERM, leak-free" stop_server
	umount "$FULL"
fi
finish
