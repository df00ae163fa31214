#!/usr/bin/env bash
# SIGTERM with I/O in flight. A client pipelines writes on one connection
# and flushes on a second one (multi-conn), recording each flush the server
# acknowledged; the server gets SIGTERM mid-stream and must exit 0; after a
# restart every write that a recorded flush covered must be there.
. "$(dirname "$0")/nbd_common.inc"

for BACKEND in uring aio psync; do
echo "# file backend: $BACKEND"
IMG=$TDIR/disk-$BACKEND.img
start_server one-$BACKEND -r 2 -l 127.0.0.1:0 -e "disk=file:$IMG,size=64M,backend=$BACKEND" ||
	{ not_ok "server start ($BACKEND)"; continue; }
ok "server started on port $PORT ($BACKEND)"
rm -f "$TDIR/flushed.log"

cat >"$TDIR/writer.py" <<PY
import os, struct, sys, time
sys.path.insert(0, "$FUNC_DIR")
from nbd_raw import *
port, log = int(sys.argv[1]), sys.argv[2]
SLOT, BATCH = 65536, 16
nslots = (64 << 20) // SLOT
a = Client("127.0.0.1", port); a.client_flags(); a.go(b"disk")
b = Client("127.0.0.1", port); b.client_flags(); b.go(b"disk")
assert a.tflags & (1 << 8), "multi-conn not advertised"
fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
batch = 0
try:
    while True:
        slots = [(batch * BATCH + k) % nslots for k in range(BATCH)]
        for k, s in enumerate(slots):
            a.send_req(CMD_WRITE, s * SLOT, SLOT, data=struct.pack(">QQ", batch, k) * (SLOT // 16))
        for _ in slots:
            assert a.read_reply()[1] == 0
        assert b.cmd(CMD_FLUSH)[0] == 0
        os.write(fd, b"%d\n" % batch); os.fsync(fd)
        batch += 1
except (EOFError, ConnectionError, AssertionError, OSError) as e:
    print("writer stopped after batch %d: %r" % (batch, e))
PY
T python3 "$TDIR/writer.py" "$PORT" "$TDIR/flushed.log" >"$TDIR/writer.out" 2>&1 &
WPID=$!
MY_PIDS+=("$WPID")
# let it run well past one pass over the disk, then pull the plug politely
for _ in $(seq 1 300); do
	[ -f "$TDIR/flushed.log" ] && [ "$(wc -l <"$TDIR/flushed.log")" -ge 100 ] && break
	sleep 0.05
done
check "server exits 0 on SIGTERM with writes in flight ($BACKEND)" stop_server
wait "$WPID"
sed 's/^/# /' "$TDIR/writer.out"
N=$(wc -l <"$TDIR/flushed.log")
check "client saw $N flushed batches before the shutdown" test "$N" -ge 10

start_server two-$BACKEND -r 2 -l 127.0.0.1:0 -e "disk=file:$IMG,backend=$BACKEND" ||
	{ not_ok "server restart ($BACKEND)"; continue; }
ok "server restarted on port $PORT"
cat >"$TDIR/verify.py" <<PY
import struct, sys
sys.path.insert(0, "$FUNC_DIR")
from nbd_raw import *
port, last = int(sys.argv[1]), int(sys.argv[2])
SLOT, BATCH = 65536, 16
nslots = (64 << 20) // SLOT
# the newest flushed batch that wrote each slot
want = {}
for batch in range(last + 1):
    for k in range(BATCH):
        want[(batch * BATCH + k) % nslots] = (batch, k)
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"disk")
bad = 0
for s, (batch, k) in sorted(want.items()):
    err, d = c.cmd(CMD_READ, s * SLOT, SLOT)
    got = struct.unpack(">QQ", d[:16])
    # a later, unflushed batch may also have landed; never an older one
    if err or got[0] < batch or d != d[:16] * (SLOT // 16):
        bad += 1
print("checked %d slots up to batch %d, %d bad" % (len(want), last, bad))
sys.exit(1 if bad else 0)
PY
LAST=$(tail -n 1 "$TDIR/flushed.log")
check "every acknowledged-and-flushed write survived the restart ($BACKEND)" T python3 "$TDIR/verify.py" "$PORT" "$LAST"
check "restarted server exits 0 ($BACKEND)" stop_server
done
finish
