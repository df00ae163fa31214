#!/usr/bin/env bash
# Hostile and broken clients: each one may lose its own connection, none
# may hurt the server or another client.
. "$(dirname "$0")/nbd_common.inc"

for LOOP in uring epoll; do
echo "# event loop: $LOOP"
start_server main-$LOOP -r 2 -E $LOOP -l 127.0.0.1:0 -e disk=mem:16M -e ro=mem:1M,ro ||
	{ not_ok "server start ($LOOP)"; continue; }
ok "server started on port $PORT ($LOOP)"

hostile() {	# hostile "what" python-snippet
	local what=$1 code=$2
	if T python3 - "$PORT" >"$TDIR/py.log" 2>&1 <<PY
import sys, socket, struct, time
sys.path.insert(0, "$FUNC_DIR")
from nbd_raw import *
port = int(sys.argv[1])
$code
PY
	then ok "$what"; else not_ok "$what"; sed 's/^/# /' "$TDIR/py.log"; fi
}

# A good client, run after each group of bad ones.
good() {
	hostile "good client still served after $1" '
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"disk")
pat = bytes(range(256)) * 16
assert c.cmd(CMD_WRITE, 8192, 4096, data=pat)[0] == 0
assert c.cmd(CMD_READ, 8192, 4096) == (0, pat)
c.send_req(CMD_DISC); c.close()'
}

hostile "truncated greeting read: client leaves at once" '
for i in range(50):
    s = connect("127.0.0.1", port); s.recv(5); s.close()'
hostile "truncated client flags and option header" '
for cut in (1, 3):
    c = Client("127.0.0.1", port); c.s.sendall(b"\0" * cut); c.close()
c = Client("127.0.0.1", port); c.client_flags(); c.s.sendall(struct.pack(">QI", IHAVEOPT, 7)); c.close()'
hostile "client without fixed newstyle is dropped" '
c = Client("127.0.0.1", port); c.client_flags(0)
assert c.s.recv(1) == b""'
hostile "unknown client flags drop the session" '
c = Client("127.0.0.1", port); c.client_flags(1 | 0x100)
assert c.s.recv(1) == b""'
hostile "bad option magic drops the session" '
c = Client("127.0.0.1", port); c.client_flags()
c.s.sendall(struct.pack(">QII", 0x1122334455667788, OPT_GO, 0))
assert c.s.recv(1) == b""'
hostile "unknown option gets ERR_UNSUP and the session goes on" '
c = Client("127.0.0.1", port); c.client_flags()
assert c.opt(4242, b"xyz")[-1][0] == REP_ERR_UNSUP
assert c.opt(OPT_STARTTLS)[-1][0] in (REP_ERR_UNSUP, REP_ERR_POLICY)
assert c.opt(OPT_LIST, b"x")[-1][0] == REP_ERR_INVALID
assert c.opt(OPT_GO, b"\0\0")[-1][0] == REP_ERR_INVALID
assert c.opt(OPT_GO, struct.pack(">I", 4) + b"nope" + b"\0\0")[-1][0] == REP_ERR_UNKNOWN
assert c.opt(OPT_SET_META, b"\0" * 8)[-1][0] == REP_ERR_INVALID   # no structured replies yet
r = c.opt(OPT_LIST)
assert [d[4:] for t, d in r if t == 2] == [b"disk", b"ro"], r
c.go(b"disk"); assert c.cmd(CMD_FLUSH)[0] == 0
c.send_req(CMD_DISC); c.close()'
hostile "oversized option is skipped with ERR_TOO_BIG" '
c = Client("127.0.0.1", port); c.client_flags()
assert c.opt(OPT_INFO, b"\0" * (1 << 20))[-1][0] == REP_ERR_TOO_BIG
c.go(b"disk"); c.close()'
hostile "abort gets an ack and a close" '
c = Client("127.0.0.1", port); c.client_flags()
assert c.opt(OPT_ABORT)[-1][0] == REP_ACK
assert c.s.recv(1) == b""'
hostile "export_name of a missing export closes" '
c = Client("127.0.0.1", port); c.client_flags(3); c.send_opt(OPT_EXPORT_NAME, b"missing")
assert c.s.recv(1) == b""'
hostile "export_name (old way in) works, no zeroes" '
c = Client("127.0.0.1", port); c.client_flags(3); c.send_opt(OPT_EXPORT_NAME, b"disk")
size, fl = struct.unpack(">QH", recvall(c.s, 10)); assert size == 16 << 20 and fl & 1
assert c.cmd(CMD_READ, 0, 512)[0] == 0; c.close()'
good "handshake abuse"

hostile "bad request magic closes only that connection" '
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"disk")
c.send_req(CMD_READ, 0, 512, magic=0xdeadbeef)
assert c.s.recv(1) == b""'
hostile "out-of-range, misaligned, oversized, unknown: EINVAL/ENOSPC/EPERM" '
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"disk", meta=True)
assert c.cmd(CMD_READ, 16 << 20, 512)[0] == EINVAL
assert c.cmd(CMD_READ, (16 << 20) - 512, 1024)[0] == EINVAL
assert c.cmd(CMD_READ, 2**64 - 512, 1024)[0] == EINVAL
assert c.cmd(CMD_WRITE, 16 << 20, 512, data=b"x" * 512)[0] == ENOSPC
assert c.cmd(CMD_WZ, (16 << 20) - 512, 4096)[0] == ENOSPC
assert c.cmd(CMD_TRIM, 16 << 20, 512)[0] == EINVAL
assert c.cmd(CMD_READ, 1, 512)[0] == EINVAL
assert c.cmd(CMD_WRITE, 0, 100, data=b"y" * 100)[0] == EINVAL
assert c.cmd(CMD_READ, 0, 64 << 20)[0] == EINVAL
assert c.cmd(CMD_READ, 0, 0)[0] == EINVAL
assert c.cmd(99, 0, 512)[0] == EINVAL
assert c.cmd(CMD_READ, 0, 512, flags=0x100)[0] == EINVAL
assert c.cmd(CMD_READ, 0, 512, flags=2)[0] == EINVAL        # NO_HOLE on READ
assert c.cmd(CMD_FLUSH, 4096, 0)[0] == EINVAL
assert c.cmd(CMD_WZ, 0, 4096, flags=2 | 16)[0] == 0         # NO_HOLE + FAST_ZERO
assert c.cmd(CMD_CACHE, 0, 4096)[0] == 0
err, d = c.cmd(CMD_BS, 4096, 1 << 20)
# the zeroed block allocated the first 64 KiB page of the memory disk: data up
# to its end, then a hole
assert err == 0 and struct.unpack(">IIIII", d) == (1, 61440, 0, (1 << 20) - 61440, 3), d
assert c.cmd(CMD_READ, 0, 512, flags=4)[0] == 0             # DF
assert c.cmd(CMD_READ, 0, 512)[0] == 0
c.send_req(CMD_DISC); c.close()
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"ro")
assert c.cmd(CMD_WRITE, 0, 512, data=b"z" * 512)[0] == EPERM
assert c.cmd(CMD_BS, 0, 512)[0] == EINVAL                   # no context selected
assert c.cmd(CMD_READ, 0, 512)[0] == 0
c.close()
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"disk", structured=False)
assert c.cmd(CMD_READ, 0, 512, flags=4)[0] == EINVAL        # DF needs structured
err, d = c.cmd(CMD_READ, 0, 512); assert err == 0 and len(d) == 512
c.close()'
hostile "oversized write payload is consumed and refused" '
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"disk")
c.send_req(CMD_WRITE, 0, 40 << 20, data=b"\xee" * (40 << 20))
assert c.read_reply()[1] == EINVAL
assert c.cmd(CMD_READ, 0, 512)[0] == 0
c.close()'
hostile "huge length then hang up" '
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"disk")
c.send_req(CMD_WRITE, 0, 0xffffffff, data=b"a" * 1000); c.close()'
hostile "disconnect mid-write, many times, with writes in flight" '
for i in range(200):
    c = Client("127.0.0.1", port); c.client_flags(); c.go(b"disk")
    for k in range(8):
        c.send_req(CMD_WRITE, k * 65536, 65536, data=bytes([k]) * 65536)
    c.send_req(CMD_WRITE, 0, 1 << 20, data=b"p" * 4000)
    c.close()'
hostile "pipelined: 64 requests before reading any reply" '
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"disk")
want = {}
for k in range(64):
    want[c.send_req(CMD_WRITE, k * 4096, 4096, data=bytes([k]) * 4096)] = 0
got = set()
for k in range(64):
    ck, err, _ = c.read_reply(); assert err == 0; got.add(ck)
assert got == set(want)
cookies = {c.send_req(CMD_READ, k * 4096, 4096): k for k in range(64)}
for k in range(64):
    ck, err, d = c.read_reply(4096); assert err == 0 and d == bytes([cookies[ck]]) * 4096
c.close()'
hostile "a client that never reads its replies stalls nobody" '
slow = Client("127.0.0.1", port); slow.client_flags(); slow.go(b"disk")
slow.s.setblocking(False)
sent = 0
try:
    for k in range(4000):
        slow.s.send(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, k, 0, 1 << 20)); sent += 1
except BlockingIOError:
    pass
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"disk")
t = time.time()
for k in range(100):
    assert c.cmd(CMD_READ, 0, 4096)[0] == 0
assert time.time() - t < 5, time.time() - t
c.close(); slow.close()'
good "request abuse"

hostile "3000 connections opened and closed" '
socks = []
for i in range(3000):
    s = connect("127.0.0.1", port)
    socks.append(s)
    if len(socks) >= 200:
        for x in socks: x.close()
        socks = []
for x in socks: x.close()
for i in range(300):
    c = Client("127.0.0.1", port); c.client_flags(); c.go(b"disk"); c.send_req(CMD_DISC); c.close()'
good "connection storm"

check "server still up ($LOOP)" server_alive
check "server exits 0 on SIGTERM, leak-free ($LOOP)" stop_server
done
finish
