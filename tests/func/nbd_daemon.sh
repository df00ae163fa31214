#!/usr/bin/env bash
# The NBD server driven through the daemon: volctl verbs, state file,
# restore after a restart, SIGTERM with I/O in flight, disk claims.
. "$(dirname "$0")/lib.sh"
FUNC_DIR=$(cd "$(dirname "$0")" && pwd)
export PYTHONDONTWRITEBYTECODE=1

sand_start --reactors 2 || { not_ok "daemon start"; t_done; }
ok "daemon started"
PORT=$(free_port)
IMG=$T_TMP/disk.img
check "disk add (file)" volctl disk add d1 "$IMG" --size 64M
check "disk add (mem)" volctl disk add m1 --backend mem --size 16M
check "nbd listen TCP" volctl nbd listen "127.0.0.1:$PORT"
check "nbd listen unix" volctl nbd listen "unix:$T_TMP/nbd.sock"
check_fail "nbd listen twice" volctl nbd listen "127.0.0.1:$PORT"
check_fail "nbd listen on a bad address" volctl nbd listen "nonsense"
check "export nbd (default name)" volctl export nbd d1
check "export nbd --name --readonly" volctl export nbd m1 --name ro1 --readonly
check_fail "export nbd of an unknown disk" volctl export nbd nope
check_fail "export nbd with a taken name" volctl export nbd m1 --name d1
check_fail "disk remove of an exported disk" volctl disk remove d1
check "export list" volctl export list
check_grep "export list shows d1 and ro1" "ro1 +m1 +16M +yes" "$T_TMP/check.out"
check "nbd list" volctl nbd list
check_grep "nbd list shows the unix socket" "unix:$T_TMP/nbd.sock" "$T_TMP/check.out"
check "nbdinfo over TCP" timeout 30 nbdinfo --json "nbd://127.0.0.1:$PORT/d1"
check_grep "multi-conn advertised" '"can_multi_conn": true' "$T_TMP/check.out"
check "nbdinfo over unix" timeout 30 nbdinfo --size "nbd+unix:///ro1?socket=$T_TMP/nbd.sock"
check "qemu-io write pattern" timeout 30 qemu-io -f raw "nbd://127.0.0.1:$PORT/d1" \
	-c 'write -P 0x5a 1M 1M' -c 'write -P 0xa5 60M 64k' -c flush
check_fail "read-only export refuses writes" timeout 30 qemu-io -f raw "nbd://127.0.0.1:$PORT/ro1" \
	-c 'write -P 1 0 4k'
check "export list counts clients" volctl --json export list

# SIGTERM with I/O in flight, then restart: config and data come back.
cat >"$T_TMP/writer.py" <<PY
import os, struct, sys
sys.path.insert(0, "$FUNC_DIR")
from nbd_raw import *
port, log = int(sys.argv[1]), sys.argv[2]
a = Client("127.0.0.1", port); a.client_flags(); a.go(b"d1")
b = Client("127.0.0.1", port); b.client_flags(); b.go(b"d1")
fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
batch = 0
try:
    while True:
        for k in range(16):
            s = 32 + (batch * 16 + k) % 256          # slots 2M..18M: clear of the patterns
            a.send_req(CMD_WRITE, s * 65536, 65536, data=struct.pack(">QQ", batch, k) * 4096)
        for k in range(16):
            assert a.read_reply()[1] == 0
        assert b.cmd(CMD_FLUSH)[0] == 0
        os.write(fd, b"%d\n" % batch); os.fsync(fd)
        batch += 1
except Exception as e:
    print("writer stopped after batch %d: %r" % (batch, e))
PY
t_bg "$T_TMP/writer.out" timeout 60 python3 "$T_TMP/writer.py" "$PORT" "$T_TMP/flushed.log"
WPID=$T_BG_PID
wait_for bash -c "[ -f '$T_TMP/flushed.log' ] && [ \$(wc -l <'$T_TMP/flushed.log') -ge 50 ]"
check "SIGTERM with writes in flight: exit 0, leak-free" sand_stop
wait "$WPID"
N=$(wc -l <"$T_TMP/flushed.log")
check "writer saw $N flushed batches" test "$N" -ge 20
check_grep "state file keeps the nbd section" '"listeners"' "$SAND_DIR/sand.json"

sand_start --reactors 2 || { not_ok "daemon restart"; t_done; }
ok "daemon restarted"
check "exports restored" volctl export list
check_grep "d1 restored" "d1 +d1 +64M +no +0 +exported" "$T_TMP/check.out"
check "listeners restored" wait_for timeout 10 nbdinfo --size "nbd://127.0.0.1:$PORT/d1"
cat >"$T_TMP/verify.py" <<PY
import struct, sys
sys.path.insert(0, "$FUNC_DIR")
from nbd_raw import *
port, last = int(sys.argv[1]), int(sys.argv[2])
want = {}
for batch in range(last + 1):
    for k in range(16):
        want[32 + (batch * 16 + k) % 256] = batch
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"d1")
bad = [s for s, b in want.items() if struct.unpack(">Q", c.cmd(CMD_READ, s * 65536, 4096)[1][:8])[0] < b]
print("%d slots checked, %d bad" % (len(want), len(bad)))
sys.exit(1 if bad else 0)
PY
check "every flushed write survived the restart" timeout 60 python3 "$T_TMP/verify.py" "$PORT" "$(tail -n 1 "$T_TMP/flushed.log")"
check "earlier patterns survived" timeout 30 qemu-io -f raw "nbd://127.0.0.1:$PORT/d1" \
	-c 'read -P 0x5a 1M 1M' -c 'read -P 0xa5 60M 64k'
check "unexport nbd" volctl unexport nbd d1
check_fail "unexported export is gone" timeout 10 nbdinfo --size "nbd://127.0.0.1:$PORT/d1"
check "disk remove after unexport" volctl disk remove d1
check_fail "unexport of an unknown export" volctl unexport nbd d1
check "nbd unlisten" volctl nbd unlisten "127.0.0.1:$PORT"
check_fail "unlistened port refuses" timeout 10 nbdinfo --size "nbd://127.0.0.1:$PORT/ro1"
check "daemon stops cleanly" sand_stop
sand_start --reactors 2 || { not_ok "daemon second restart"; t_done; }
check "removed export stays removed, ro1 stays" volctl export list
check_grep "only ro1 left" "^nbd +ro1" "$T_TMP/check.out"
check "unlistened address stays unlistened" volctl nbd list
if grep -q "127.0.0.1:$PORT" "$T_TMP/check.out"; then not_ok "unlisten persisted"; else ok "unlisten persisted"; fi
check "daemon stops cleanly again" sand_stop
t_done
