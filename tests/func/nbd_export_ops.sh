#!/usr/bin/env bash
# Exports and listeners changed under live clients: removing an export
# drains its clients (in-flight writes answered, then disconnected) and
# touches no other export; re-adding works; unlisten stops new clients only.
. "$(dirname "$0")/nbd_common.inc"

mkfifo "$TDIR/ctl"
exec 3<>"$TDIR/ctl"
SERVER_STDIN=$TDIR/ctl start_server main -r 2 -l 127.0.0.1:0 -e disk=mem:64M -e keep=mem:16M ||
	{ not_ok "server start"; finish; }
ok "server started on port $PORT"

cat >"$TDIR/ops.py" <<PY
import os, re, struct, sys, threading, time
sys.path.insert(0, "$FUNC_DIR")
from nbd_raw import *
port, ctl, sout = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
fails = 0
def check(what, cond):
    global fails
    print(("ok - " if cond else "not ok - ") + what, flush=True)
    fails += not cond

def cmd(line):
    start = len(open(sout).read())
    os.write(ctl, (line + "\n").encode())
    for _ in range(400):
        out = open(sout).read()[start:]
        res = re.findall(r"^((?:ok|err).*)$", out, re.M)
        if res:
            return res[0], out
        time.sleep(0.025)
    raise TimeoutError(line)

def clients(name):
    _, out = cmd("list")
    m = re.findall(r"^export %s clients (\d+)" % name, out, re.M)
    return int(m[-1]) if m else None

keep = Client("127.0.0.1", port); keep.client_flags(); keep.go(b"keep")
check("keep client works", keep.cmd(CMD_WRITE, 0, 4096, data=b"k" * 4096)[0] == 0)

result = {"acked": 0, "errors": 0, "end": None}
def writer():
    c = Client("127.0.0.1", port, timeout=20); c.client_flags(); c.go(b"disk")
    k = 0
    try:
        while True:
            for i in range(16):
                c.send_req(CMD_WRITE, ((k * 16 + i) % 1024) * 65536, 65536, data=b"w" * 65536)
            for i in range(16):
                _, err, _ = c.read_reply()
                if err: result["errors"] += 1
                else: result["acked"] += 1
            k += 1
    except Exception as e:
        result["end"] = repr(e)
t = threading.Thread(target=writer); t.start()
while result["acked"] < 1000 and t.is_alive():
    time.sleep(0.01)
check("list counts the clients (disk 1, keep 1)", clients("disk") == 1 and clients("keep") == 1)
r, _ = cmd("remove disk")
check("remove disk while a client writes: %s" % r, r.startswith("ok"))
t.join(10)
check("writer was disconnected after its in-flight writes (%d acked, %d errors, end %s)"
      % (result["acked"], result["errors"], result["end"]),
      not t.is_alive() and result["errors"] == 0 and result["end"] and
      re.search("EOF|BrokenPipe|ConnectionReset", result["end"]))
try:
    c = Client("127.0.0.1", port); c.client_flags()
    r2 = c.opt(OPT_GO, struct.pack(">I", 4) + b"disk" + b"\0\0")
    check("removed export is refused (ERR_UNKNOWN)", r2[-1][0] == REP_ERR_UNKNOWN)
    c.close()
except Exception as e:
    check("removed export is refused: %r" % e, False)
check("other export's client untouched", keep.cmd(CMD_READ, 0, 4096) == (0, b"k" * 4096))
check("list no longer shows disk", clients("disk") is None and clients("keep") == 1)
r, _ = cmd("remove disk")
check("removing it again: %s" % r, r.startswith("err"))

# Again and again: a socket must really close every time, even while the
# client keeps sending (a stuck poll once kept it open after close()).
stuck = 0
for it in range(10):
    r, _ = cmd("add disk=mem:64M")
    assert r.startswith("ok"), r
    result = {"acked": 0, "errors": 0, "end": None}
    t = threading.Thread(target=writer); t.start()
    while result["acked"] < 200 and t.is_alive():
        time.sleep(0.005)
    r, _ = cmd("remove disk")
    t.join(10)
    stuck += t.is_alive() or result["errors"] != 0
check("10 more removals under a writing client: every connection ended (%d stuck)" % stuck,
      stuck == 0)
r, _ = cmd("add disk=mem:32M")
check("re-add: %s" % r, r.startswith("ok"))
c = Client("127.0.0.1", port); c.client_flags(); c.go(b"disk")
check("re-added export served with its new size", c.size == 32 << 20 and c.cmd(CMD_READ, 0, 512)[0] == 0)
r, _ = cmd("add disk=mem:1M")
check("adding a taken name fails: %s" % r, r.startswith("err"))
r, _ = cmd("unlisten 127.0.0.1:%d" % port)
check("unlisten: %s" % r, r.startswith("ok"))
try:
    Client("127.0.0.1", port, timeout=2); refused = False
except (ConnectionRefusedError, OSError, EOFError):
    refused = True
check("new connections refused after unlisten", refused)
check("existing clients keep working after unlisten", c.cmd(CMD_FLUSH)[0] == 0 and keep.cmd(CMD_FLUSH)[0] == 0)
r, out = cmd("listen 127.0.0.1:0")
newport = int(re.findall(r"^listening 127\.0\.0\.1:(\d+)$", out, re.M)[-1])
c2 = Client("127.0.0.1", newport); c2.client_flags(); c2.go(b"keep")
check("listen again on a new port %d" % newport, c2.cmd(CMD_READ, 0, 4096) == (0, b"k" * 4096))
r, _ = cmd("listen 127.0.0.1:%d" % newport)
check("listening twice on one address fails: %s" % r, r.startswith("err"))
c.close(); c2.close(); keep.close()
sys.exit(1 if fails else 0)
PY
T python3 "$TDIR/ops.py" "$PORT" 3 "$SOUT" || not_ok "export operations script"
check "server still up" server_alive
check "server exits 0 on SIGTERM, leak-free" stop_server
finish
