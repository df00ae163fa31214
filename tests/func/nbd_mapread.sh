#!/usr/bin/env bash
# Mapped READs (blk_map_read, the one-copy path): large NBD reads of a file
# disk on tmpfs and of a thin volume on a one-disk pool go from the backing
# file's mapping straight into sendmsg. Checked here:
#  - the bytes: nbdcopy and qemu-io read back exactly what the file holds
#    (and the backing file is mapped by the daemon: the path was taken);
#  - the reply's form (raw client): an OFFSET_DATA chunk and a NONE chunk
#    flagged DONE; under 64 KiB one OFFSET_DATA chunk flagged DONE; a client
#    without structured replies gets the data too; small reads of a thin
#    volume racing trims and rewrites of its chunks are each whole;
#  - holes of a thin volume still go as hole chunks (nbdinfo --map);
#  - the backing file truncated under the export: reads past the new end
#    fail with an I/O error (never SIGBUS), the daemon serves on, and reads
#    within the file are right; a small read past the end closes its
#    connection (its header went: it cannot fail in the protocol), never
#    gives bytes, and turns small mapped reads off for the export: the next
#    connection gets EIO replies; while a reader loops over the whole disk
#    the file is truncated and regrown many times: the daemon survives.
. "$(dirname "$0")/lib.sh"

for tool in qemu-io nbdcopy nbdinfo python3; do
	if ! command -v $tool >/dev/null; then
		skip "mapped reads" "$tool not installed"
		t_done
	fi
done
if ! SHM=$(mktemp -d /dev/shm/sand-nbd_mapread.XXXXXX); then
	skip "mapped reads" "no /dev/shm"
	t_done
fi
trap 't_cleanup; rm -rf "$SHM"' EXIT
port=$(free_port)
URL=nbd://127.0.0.1:$port
RAW=$(dirname "$0")

qio() {
	timeout 60 qemu-io -f raw "$@" >"$T_TMP/qio" 2>&1 || { cat "$T_TMP/qio"; return 1; }
	cat "$T_TMP/qio"
	! grep -qiE "error|fail|pattern" "$T_TMP/qio"
}

raw() {
	PYTHONPATH=$RAW timeout 60 python3 - "$port" "$@"
}

head -c 32M /dev/urandom >"$SHM/f.img"
sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
check "disk add f (tmpfs file)" volctl disk add f "$SHM/f.img"
check "nbd listen" volctl nbd listen 127.0.0.1:$port
check "export nbd f" volctl export nbd f

check "nbdcopy reads the disk" timeout 60 nbdcopy "$URL/f" "$T_TMP/copy.img"
check "... exactly the file" cmp "$SHM/f.img" "$T_TMP/copy.img"
check "the backing file is mapped (the one-copy path ran)" grep -q "$SHM/f.img" /proc/$SAND_PID/maps

check "a raw client: one data chunk, one NONE chunk flagged DONE, the file's bytes" raw "$SHM/f.img" <<'EOF'
import sys
from nbd_raw import *
port, img = int(sys.argv[1]), sys.argv[2]
want = open(img, "rb").read()
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"f")
for off, ln in ((0, 1 << 20), (4096 * 3, 3 << 20), (512, 65536), (31 << 20, 1 << 20)):
    err, d = c.cmd(CMD_READ, off, ln)
    assert err == 0 and d == want[off:off + ln], (off, ln, err)
    assert c.chunk_types == [1, 0], c.chunk_types
# pipelined: many replies in flight, in any order, each right
cookies = {c.send_req(CMD_READ, i << 20, 1 << 20): i for i in range(32)}
for _ in range(32):
    ck, err, d = c.read_reply(1 << 20)
    i = cookies.pop(ck)
    assert err == 0 and d == want[i << 20:(i + 1) << 20], i
# small reads (mapped too): one data chunk flagged DONE, as from a bio
for off, ln in ((8192, 4096), (512, 512), ((32 << 20) - 4096, 4096), (4096 * 7 + 512, 65536 - 512)):
    err, d = c.cmd(CMD_READ, off, ln)
    assert err == 0 and d == want[off:off + ln] and c.chunk_types == [1], (off, ln, c.chunk_types)
cookies = {c.send_req(CMD_READ, i * 4096 * 97, 4096): i for i in range(64)}
for _ in range(64):
    ck, err, d = c.read_reply(4096)
    i = cookies.pop(ck)
    assert err == 0 and d == want[i * 4096 * 97:i * 4096 * 97 + 4096], i
c.close()
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"f", structured=False)
err, d = c.cmd(CMD_READ, 1 << 20, 2 << 20)
assert err == 0 and d == want[1 << 20:3 << 20]
c.close()
EOF

# a thin volume on a one-disk pool (RAID 0, one member) on tmpfs
check "disk add p (tmpfs file)" volctl disk add p "$SHM/p.img" --size 64M
check "pool create --raid 0 (one disk)" volctl pool create tp --raid 0 p
check "vol create v" volctl vol create v --pool tp --size 16M
check "export nbd v" volctl export nbd v
check "write patterns" qio "$URL/v" -c 'write -P 0x31 0 4M' -c 'write -P 0x32 8M 2M' -c flush
check "read them back (and the hole between)" qio "$URL/v" -r -c 'read -P 0x31 0 4M' \
	-c 'read -P 0x32 8M 2M' -c 'read -P 0 4M 4M' -c 'read -P 0 10M 6M'
check "a read across data and a hole" qio "$URL/v" -r -c 'read -P 0x31 3M 1M' -c 'read -P 0 4M 1M' \
	-c 'read -v 3M 2M'
check "the pool's disk is mapped" grep -q "$SHM/p.img" /proc/$SAND_PID/maps
check "nbdinfo --map: the holes are holes" timeout 30 nbdinfo --map "$URL/v"
check_grep "... data at 0" "^ *0 +4194304 +0 +data" "$T_TMP/check.out"
check_grep "... hole at 4M" "^ *4194304 +4194304 +3 +hole,zero" "$T_TMP/check.out"
check "nbdcopy of the volume" timeout 60 nbdcopy "$URL/v" "$T_TMP/v.img"
check "... the right bytes" python3 -c "
d = open('$T_TMP/v.img', 'rb').read()
M = 1 << 20
assert d[:4*M] == b'1' * 4*M and d[4*M:8*M] == bytes(4*M)
assert d[8*M:10*M] == b'2' * 2*M and d[10*M:] == bytes(6*M)"

# A reply the client does not read for a while: the rest of its data is
# mapped again at each send; trimmed meanwhile, it is read (refilled) by a
# bio, and the reply ends without an error, old bytes then zeros.
check "vol create w, exported" volctl vol create w --pool tp --size 32M
check "... and exported" volctl export nbd w
check "write w" qio "$URL/w" -c 'write -P 0x33 0 32M' -c flush
check "a stalled 32M read, its range trimmed under it, ends well (old bytes, then zeros)" raw <<'EOF'
import socket, sys, time
from nbd_raw import *
port = int(sys.argv[1])
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"w")
c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
ck = c.send_req(CMD_READ, 0, 32 << 20)
time.sleep(0.5)                      # the server fills the socket and waits
t = Client("127.0.0.1", port); t.client_flags(); t.go(b"w")
assert t.cmd(CMD_TRIM, 0, 32 << 20)[0] == 0
t.close()
cookie, err, d = c.read_reply(32 << 20)
assert cookie == ck and err == 0 and len(d) == 32 << 20, (err, len(d))
n = len(d) - len(d.lstrip(b"3"))
# some went before the trim (the socket buffers: ~4 MiB here), the rest after
assert 0 < n < 32 << 20, n
assert d[n:] == bytes(len(d) - n), "old bytes after zeros"
c.close()
EOF

# Small mapped reads of a thin volume while its chunks are trimmed and
# written again from another connection (maps pin chunks only around each
# send; a chunk remapped in between is read again by a bio): every 4 KiB
# read is one chunk's old bytes, zeros or new bytes, whole, never a mix.
check "vol create x" volctl vol create x --pool tp --size 8M
check "... and exported" volctl export nbd x
check "pipelined 4 KiB reads racing trims and rewrites: each old, zeros or new, whole" raw <<'EOF'
import random, sys, threading
from nbd_raw import *
port = int(sys.argv[1])
CH = 64 << 10
w = Client("127.0.0.1", port); w.client_flags(); w.go(b"x")
assert w.cmd(CMD_WRITE, 0, 8 << 20, data=b"\x41" * (8 << 20))[0] == 0
stop, errors, rounds = [], [], [0]
def writer():
    rnd = random.Random(1)
    try:
        while not stop:
            ch = rnd.randrange(128) * CH
            assert w.cmd(CMD_TRIM, ch, CH)[0] == 0
            assert w.cmd(CMD_WRITE, ch, CH, data=b"\x42" * CH)[0] == 0
            rounds[0] += 1
    except Exception as e:
        errors.append(repr(e))
t = threading.Thread(target=writer)
t.start()
r = Client("127.0.0.1", port); r.client_flags(); r.go(b"x")
rnd = random.Random(2)
try:
    for _ in range(200):
        cookies = {r.send_req(CMD_READ, rnd.randrange(2048) * 4096, 4096) for _ in range(32)}
        for _ in range(32):
            ck, err, d = r.read_reply(4096)
            cookies.remove(ck)
            assert err == 0 and len(d) == 4096, err
            assert d.count(d[:1]) == 4096 and d[0] in (0, 0x41, 0x42), d[:8]
finally:
    stop.append(1)
    t.join()
assert not errors, errors
assert rounds[0] > 0
print("writer rounds", rounds[0])
EOF
check "4 KiB replies held behind a full socket, their chunks trimmed meanwhile: whole zeros" raw <<'EOF'
import socket, sys, time
from nbd_raw import *
port = int(sys.argv[1])
CH = 64 << 10
w = Client("127.0.0.1", port); w.client_flags(); w.go(b"x")
assert w.cmd(CMD_WRITE, 0, 8 << 20, data=b"\x43" * (8 << 20))[0] == 0
r = Client("127.0.0.1", port); r.client_flags(); r.go(b"x")
r.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
# 16 MiB ahead of them fill the socket buffers (~4 MiB here) and more
big = [r.send_req(CMD_READ, 0, 8 << 20) for _ in range(2)]
small = {r.send_req(CMD_READ, (64 + i) * CH + 4096 * (i % 16), 4096): i for i in range(64)}
time.sleep(0.5)                                 # the server waits on the socket
assert w.cmd(CMD_TRIM, 64 * CH, 64 * CH)[0] == 0
for b in big:
    ck, err, d = r.read_reply(8 << 20)
    assert ck == b and err == 0 and len(d) == 8 << 20
zeros = 0
for _ in range(64):
    ck, err, d = r.read_reply(4096)
    small.pop(ck)
    assert err == 0 and len(d) == 4096 and d.count(d[:1]) == 4096 and d[0] in (0, 0x43), d[:8]
    zeros += d[0] == 0
assert zeros > 0, "every reply went before the trim"
EOF

# The backing file truncated under the export: the mapping's pages past the
# new end fault in sendmsg (EFAULT), which must be a read error.
check "truncate the file to 16M" truncate -s 16M "$SHM/f.img"
check "a read past the new end fails with an error reply; reads before it are right" raw "$SHM/f.img" <<'EOF'
import sys
from nbd_raw import *
port = int(sys.argv[1])
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"f")
for off in (20 << 20, (16 << 20) - 65536, 31 << 20):
    err, d = c.cmd(CMD_READ, off, 1 << 20)
    assert err == 5, (off, err)                 # NBD_EIO
    assert c.chunk_types[-1] & 0x8000, c.chunk_types
want = open(sys.argv[2], "rb").read()
assert len(want) == 16 << 20
for off in range(0, 16 << 20, 1 << 20):         # the connection goes on
    err, d = c.cmd(CMD_READ, off, 1 << 20)
    assert err == 0 and d == want[off:off + (1 << 20)], off
c.close()
EOF
check_fail "qemu-io sees an I/O error past the end" qio "$URL/f" -r -c 'read 24M 1M'
check "a 4 KiB read past the end: no bytes, the connection closes; the next gets EIO" raw "$SHM/f.img" <<'EOF'
import sys
from nbd_raw import *
port = int(sys.argv[1])
want = open(sys.argv[2], "rb").read()
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"f")
assert c.cmd(CMD_READ, 4096, 4096) == (0, want[4096:8192])
try:
    err, d = c.cmd(CMD_READ, 20 << 20, 4096)
    assert err == 5, err                        # failed before its header went
except (EOFError, ConnectionError):
    pass                                        # the header went: closed
c.close()
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"f")
for off in (20 << 20, (16 << 20) - 4096 + 512, 31 << 20):
    err, d = c.cmd(CMD_READ, off, 4096)
    assert err == 5 and c.chunk_types[-1] & 0x8000, (off, err, c.chunk_types)
for off in range(0, 16 << 20, 1 << 20):
    err, d = c.cmd(CMD_READ, off, 4096)
    assert err == 0 and d == want[off:off + 4096], off
c.close()
EOF
check_grep "... the daemon said small reads go through bios now" "READs under 65536 bytes go through bios" "$SAND_LOG"
check "the daemon is alive" t_alive "$SAND_PID"
check "grow the file back to 32M" truncate -s 32M "$SHM/f.img"
check "past the old end reads zeros now" qio "$URL/f" -r -c 'read -P 0 16M 16M'

# A reader over the whole disk while the file is cut and regrown.
cut_under_reads "$URL/f" "$SHM/f.img"
check "still serving" qio "$URL/f" -r -c 'read 0 32M'
check "sand stops cleanly" sand_stop
t_done
