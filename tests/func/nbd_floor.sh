#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/nbd-floor, the yardstick bench/nbd sets sand against, serves what it
# was written (a smoke test, not a benchmark): its figures mean something
# only if it does the I/O real clients ask for.
. "$(dirname "$0")/lib.sh"

FLOOR=$BUILD/bench/nbd-floor
check "nbd-floor is built ($FLOOR)" test -x "$FLOOR"
IMG=$T_TMP/floor.img
truncate -s 64M "$IMG"
PORT=$(free_port)
t_bg "$T_TMP/floor.log" "$FLOOR" "$PORT" "$IMG"
FP=$T_BG_PID
URI=nbd://127.0.0.1:$PORT/
check "it answers nbdinfo" wait_for nbdinfo --size "$URI"
nbdinfo --size "$URI" >"$T_TMP/size" 2>&1
check_grep "it says the file's size" '^67108864$' "$T_TMP/size"
check "qemu-io writes and reads back a pattern, and flushes" \
	qemu-io -f raw -c 'write -P 0x5a 4096 12288' -c 'read -P 0x5a 4096 12288' -c flush "$URI"
check "the bytes are in the file" cmp -n 12288 -i 4096:0 "$IMG" <(head -c 12288 /dev/zero | tr '\0' '\132')
check "fio: 4 KiB random writes at QD 32, verified" \
	timeout 60 fio --name=v --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=32 \
	--offset=32m --size=16m --verify=crc32c --do_verify=1 --verify_state_save=0 --randrepeat=0 --output=/dev/null
check "a client after those reads the pattern back" qemu-io -f raw -c 'read -P 0x5a 4096 12288' "$URI"
t_kill "$FP"
t_done
