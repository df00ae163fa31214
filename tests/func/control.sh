#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The control plane: status, disks with persistence across restarts, hostile
# JSON-RPC clients, volctl usage errors, the state file, signals.
. "$(dirname "$0")/lib.sh"

IDLE=2		# --idle-timeout for the hostile client checks
PY=$T_TMP/client.py
cat >"$PY" <<'EOF'
# Small JSON-RPC clients for control.sh: python3 client.py SOCKET CASE
import json, socket, sys, time

path, case = sys.argv[1], sys.argv[2]

def conn():
    for _ in range(200):	# the listen backlog may be full for a moment
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            s.close()
            time.sleep(0.05)
    raise Exception("cannot connect")

bufs = {}
def readline(s):
    buf = bufs.get(s, b"")
    while b"\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise EOFError("closed with %r" % buf)
        buf += d
    line, bufs[s] = buf.split(b"\n", 1)
    return json.loads(line)

def call(s, method, params=None, id=1):
    r = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        r["params"] = params
    s.sendall(json.dumps(r).encode() + b"\n")
    return readline(s)

def status_ok():
    s = conn()
    r = call(s, "status")
    s.close()
    return "result" in r and r["result"]["version"]

def closed_by_server(s, timeout):
    """True when the server closes s within timeout seconds."""
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False

def fail(msg):
    print(msg)
    sys.exit(1)

if case == "notjson":
    s = conn()
    s.sendall(b"this is not json\n")
    r = readline(s)
    if r["error"]["code"] != -32700 or r["id"] is not None: fail(r)
    # the same connection keeps working
    r = call(s, "status", id=5)
    if r["id"] != 5 or "result" not in r: fail(r)
elif case == "types":
    s = conn()
    for params, field in [({"name": 5, "backend": "mem", "size": 4096}, "'name'"),
                          ({"name": "x", "backend": "mem", "size": "lots"}, "'size'"),
                          ({"name": "x", "backend": "mem", "size": 4096, "readonly": "yes"}, "'readonly'"),
                          ({"name": "x", "backend": "floppy", "size": 4096}, "'backend'"),
                          ({"name": "x", "backend": "mem", "size": 4096, "bogus": 1}, "'bogus'"),
                          ({"name": "x", "backend": "mem"}, "'size'")]:
        r = call(s, "disk.add", params)
        if r.get("error", {}).get("code") != -32602 or field not in r["error"]["message"]: fail(r)
    r = call(s, "disk.add", [1, 2])
    if r["error"]["code"] != -32602: fail(r)
    s.sendall(b'{"jsonrpc":"2.0","method":7,"id":1}\n')
    r = readline(s)
    if r["error"]["code"] != -32600: fail(r)
    s.sendall(b'{"jsonrpc":"1.0","method":"status","id":1}\n')
    r = readline(s)
    if r["error"]["code"] != -32600: fail(r)
elif case == "deep":
    # nesting deep enough to exhaust a recursive parser's stack
    s = conn()
    s.sendall(b"[" * 500000 + b"\n")
    r = readline(s)
    if r["error"]["code"] != -32700: fail(r)
    s.sendall(b'{"jsonrpc":"2.0","method":"status","params":' + b'{"a":' * 100000 + b'1' +
              b'}' * 100000 + b',"id":1}\n')
    r = readline(s)
    if r["error"]["code"] != -32700: fail(r)
    if "result" not in call(s, "status"): fail("not served after")
elif case == "unknown":
    s = conn()
    r = call(s, "no.such.method", {}, id="abc")
    if r["error"]["code"] != -32601 or r["id"] != "abc": fail(r)
elif case == "batch":
    s = conn()
    s.sendall(b'[{"jsonrpc":"2.0","method":"status","id":1},{"jsonrpc":"2.0","method":"nope","id":2}]\n')
    r = readline(s)
    if len(r) != 2 or "result" not in r[0] or r[1]["error"]["code"] != -32601: fail(r)
elif case == "pipeline":
    # many requests in one write: answered in order
    s = conn()
    s.sendall(b"".join(b'{"jsonrpc":"2.0","method":"status","id":%d}\n' % i for i in range(100)))
    for i in range(100):
        r = readline(s)
        if r["id"] != i: fail(r)
elif case == "hugeline":
    s = conn()
    other = conn()
    chunk = b"x" * 65536
    sent = 0
    try:
        for _ in range(160):		# 10 MiB, no newline
            s.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    if sent >= 160 * 65536:
        fail("the server read all 10 MiB of one line")
    # the other client is still served
    if "result" not in call(other, "status"): fail("other client not served")
    # the error (if it arrived before the reset) says why
    try:
        s.settimeout(5)
        data = s.recv(65536)
        if data and b"-32600" not in data: fail(data)
    except (ConnectionResetError, socket.timeout):
        pass
    if not closed_by_server(s, 5): fail("not closed")
    print("closed after %d bytes" % sent)
elif case == "hang":
    # one client sends nothing, one half a line; others are served meanwhile
    idle = float(sys.argv[3])
    a = conn()
    b = conn()
    b.sendall(b'{"jsonrpc":"2.0","meth')
    t0 = time.time()
    for _ in range(3):
        if not status_ok(): fail("not served while two clients hang")
    if not closed_by_server(a, idle * 4 + 5): fail("silent client not dropped")
    if not closed_by_server(b, idle * 4 + 5): fail("half-line client not dropped")
    dt = time.time() - t0
    if dt < idle * 0.8: fail("dropped too early: %.1fs" % dt)
    print("dropped after %.1fs" % dt)
elif case == "noread":
    # sends requests and never reads the responses
    s = conn()
    s.settimeout(30)
    req = b'{"jsonrpc":"2.0","method":"status","id":1}\n' * 1000
    dropped = False
    try:
        for _ in range(200):	# up to 200k requests, ~60 MB of responses
            s.sendall(req)
    except (BrokenPipeError, ConnectionResetError):
        dropped = True
    except socket.timeout:
        fail("server stopped reading instead of dropping")
    if not dropped: fail("never dropped")
    if not status_ok(): fail("others not served")
elif case == "many":
    # 40 clients at once, interleaved requests: each gets its own answers
    socks = [conn() for _ in range(40)]
    for rnd in range(5):
        for i, s in enumerate(socks):
            s.sendall(b'{"jsonrpc":"2.0","method":"log.level","id":%d}\n' % (i * 100 + rnd))
        for i, s in enumerate(socks):
            r = readline(s)
            if r["id"] != i * 100 + rnd or r["result"]["level"] != "info": fail(r)
elif case == "maxclients":
    # beyond 128 clients, new ones are closed at once; the others still work
    time.sleep(0.5)		# earlier clients are gone
    socks = [conn() for _ in range(128)]
    extra = conn()
    if not closed_by_server(extra, 5): fail("client 129 not refused")
    r = call(socks[0], "status")
    if "result" not in r: fail(r)
    for s in socks: s.close()
    time.sleep(0.5)
    if not status_ok(): fail("not served after the others left")
elif case == "rate":
    # requests per second over one connection (cheap method, pipelined)
    s = conn()
    n = 20000
    t0 = time.time()
    s.sendall(b'{"jsonrpc":"2.0","method":"log.level","id":1}\n' * n)
    for _ in range(n):
        readline(s)
    print("%d requests in %.2fs: %.0f/s" % (n, time.time() - t0, n / (time.time() - t0)))
elif case == "status":
    if not status_ok(): fail("no status")
else:
    fail("unknown case " + case)
print("done")
EOF

hostile() {	# hostile DESC CASE [ARGS]
	local d=$1; shift
	if timeout 120 python3 "$PY" "$SAND_SOCK" "$@" >"$T_TMP/py.out" 2>&1; then
		ok "$d"
	else
		not_ok "$d"; sed 's/^/#   /' "$T_TMP/py.out" | tail -n 10
	fi
	check "daemon still serves a new client after: $1" volctl status
}

hostile_all() {	# hostile_all LOOP
	local l=$1 n0
	n0=$(grep -c "not reading its responses: dropped" "$T_TMP/sand.log")
	volctl --json disk list >"$T_TMP/list-a.json"
	hostile "$l: not JSON: -32700 and the connection keeps working" notjson
	hostile "$l: wrong types: -32602 naming the field; -32600 for bad requests" types
	hostile "$l: unknown method: -32601" unknown
	hostile "$l: 500000 nested brackets: -32700, no crash" deep
	hostile "$l: batch: answered as one array" batch
	hostile "$l: 100 pipelined requests answered in order" pipeline
	hostile "$l: 40 clients at once, each answered in its own order" many
	hostile "$l: beyond 128 clients new ones are refused, the rest served" maxclients
	hostile "$l: 20000 pipelined requests" rate
	diag "$l: $(grep requests "$T_TMP/py.out")"
	hostile "$l: a 10 MiB line: error and closed, others served" hugeline
	hostile "$l: silent and half-line clients do not block others and are dropped when idle" hang "$IDLE"
	hostile "$l: a client that never reads is dropped at its output bound" noread
	check "$l: the log says why it was dropped" \
		test "$(grep -c "not reading its responses: dropped" "$T_TMP/sand.log")" -gt "$n0"
	volctl --json disk list >"$T_TMP/list-b.json"
	check "$l: bad requests changed nothing" cmp -s "$T_TMP/list-a.json" "$T_TMP/list-b.json"
}

# ---------------------------------------------------------------- start
check "sand --version" bash -c "'$SAND_BIN' --version | grep -q '^sand [0-9]'"
check "sand --help lists --state-dir" bash -c "'$SAND_BIN' --help | grep -q -- --state-dir"
check_rc "sand without --state-dir: usage error 2" 2 "$SAND_BIN"
check_rc "sand --loop nonsense: usage error 2" 2 "$SAND_BIN" --state-dir "$SAND_DIR" --loop bogus
check_rc "sand --debug nonsense: usage error 2" 2 "$SAND_BIN" --state-dir "$SAND_DIR" --debug bogus

if ! sand_start --reactors 2 --loop auto --idle-timeout "$IDLE" --log-file "$T_TMP/sand.log"; then
	not_ok "sand starts"
	t_done
fi
ok "sand starts and answers on its socket"
check "socket has mode 0600" test "$(stat -c %a "$SAND_SOCK")" = 600

# ---------------------------------------------------------------- status
volctl status >"$T_TMP/status.txt" 2>&1
check "volctl status" grep -q '^version  *[0-9]' "$T_TMP/status.txt"
check_grep "status shows 2 reactors" '^reactors +2 on (io_uring|epoll)' "$T_TMP/status.txt"
check_grep "status shows the backends" '^backends .*psync mem null' "$T_TMP/status.txt"
volctl --json status >"$T_TMP/status.json"
check "volctl --json status: pid, reactors, backends, state dir" python3 -c "
import json, sys
r = json.load(open('$T_TMP/status.json'))
assert r['pid'] == $SAND_PID, r
assert r['reactors']['count'] == 2, r
assert r['reactors']['loop'] in ('io_uring', 'epoll'), r
assert {'psync', 'mem', 'null'} <= set(r['backends']), r
assert r['state_dir'] == '$(realpath "$SAND_DIR")', r
assert isinstance(r['uptime'], int) and r['uptime'] >= 0, r
"
LOOP1=$(python3 -c "import json; print(json.load(open('$T_TMP/status.json'))['reactors']['loop'])")
hostile_all "$LOOP1"
check "--json after the verb works too" bash -c "'$VOLCTL_BIN' --socket '$SAND_SOCK' status --json | python3 -c 'import json,sys; json.load(sys.stdin)'"

# ---------------------------------------------------------------- disks
check "disk add mem" volctl disk add m0 --backend mem --size 64M
check "disk add null, 4K blocks, read-only" volctl disk add n0 --backend null --size 1G --block-size 4K --readonly
check_rc "disk add of a taken name: daemon error 1" 1 volctl disk add m0 --backend mem --size 1M
volctl disk add m0 --backend mem --size 1M 2>"$T_TMP/err.txt"
check_grep "... and it says so" "exists" "$T_TMP/err.txt"
check_rc "disk add mem with a size not a multiple of the block size: 1" 1 \
	volctl disk add m9 --backend mem --size 1000
check "disk add file: created sparse (auto backend)" volctl disk add f0 "$T_TMP/f0.img" --size 32M
check "the file was created with its size" test "$(stat -c %s "$T_TMP/f0.img")" -eq $((32 << 20))
check "disk add file with psync" volctl disk add f1 "$T_TMP/f1.img" --size 8M --backend psync
truncate -s 4M "$T_TMP/f2.img"
check "disk add an existing file with aio, read-only" volctl disk add f2 "$T_TMP/f2.img" --backend aio --readonly
check "disk add a relative path" bash -c "cd '$T_TMP' && '$VOLCTL_BIN' --socket '$SAND_SOCK' disk add r0 r0.img --size 1M --backend psync"
check_rc "disk add a file in a missing directory: 1" 1 volctl disk add f9 "$T_TMP/no/such/dir/f9.img" --size 1M
check_rc "disk add the same file twice: 1" 1 volctl disk add f8 "$T_TMP/f1.img"
check_rc "disk add without a size on a missing file: 1" 1 volctl disk add f7 "$T_TMP/f7.img"
check "... and no file was left behind" test ! -e "$T_TMP/f7.img"
volctl --json disk list >"$T_TMP/files.json"
check "file disks listed with backend, path, size, direct and read-only" python3 -c "
import json
l = {d['name']: d for d in json.load(open('$T_TMP/files.json'))}
assert l['f0']['backend'] in ('uring', 'aio') and l['f0']['path'] == '$T_TMP/f0.img', l['f0']
assert l['f0']['size'] == 32 << 20 and l['f0']['readonly'] is False, l['f0']
assert l['f1']['backend'] == 'psync' and l['f1']['size'] == 8 << 20, l['f1']
assert l['f2']['backend'] == 'aio' and l['f2']['readonly'] is True and l['f2']['size'] == 4 << 20, l['f2']
assert l['r0']['path'] == '$T_TMP/r0.img', l['r0']
assert isinstance(l['f0']['direct'], bool), l['f0']
assert 'f9' not in l and 'f8' not in l and 'f7' not in l, l
"
check "disk remove r0" volctl disk remove r0
volctl disk list >"$T_TMP/list.txt"
check_grep "disk list shows m0" '^m0 +mem +64M +512 +no' "$T_TMP/list.txt"
check_grep "disk list shows n0" '^n0 +null +1G +4096 +yes' "$T_TMP/list.txt"
volctl --json disk list >"$T_TMP/list.json"
check "disk list --json" python3 -c "
import json
l = {d['name']: d for d in json.load(open('$T_TMP/list.json'))}
assert l['m0']['size'] == 64 << 20 and l['m0']['backend'] == 'mem' and l['m0']['claimed_by'] is None, l
assert l['n0']['readonly'] is True and l['n0']['block_size'] == 4096, l
assert len(l) == 5, l
"
check "disk remove" volctl disk remove m0
check_rc "disk remove again: 1" 1 volctl disk remove m0
check "disk add m0 again" volctl disk add m0 --backend mem --size 64M
check "disk add m1" volctl disk add m1 --backend mem --size 8M
check "disk remove m1" volctl disk remove m1

# ---------------------------------------------------------------- restart
cp "$SAND_DIR/sand.json" "$T_TMP/before.json"
check "SIGTERM: exits 0, removes the socket, no sanitizer report" sand_stop
check "the state file is valid JSON" python3 -c "import json; json.load(open('$SAND_DIR/sand.json'))"
if sand_start --reactors 1 --loop epoll --idle-timeout "$IDLE" --log-file "$T_TMP/sand.log"; then
	ok "restarts on the same state dir (epoll loops this time)"
else
	not_ok "restarts on the same state dir"; t_done
fi
volctl --json disk list >"$T_TMP/list2.json"
check "after a restart the disks are back as they were" python3 -c "
import json
l = {d['name']: d for d in json.load(open('$T_TMP/list2.json'))}
assert set(l) == {'m0', 'n0', 'f0', 'f1', 'f2'}, l
assert l['f0']['backend'] == 'aio', l['f0']		# auto on epoll reactors
assert l['f1']['backend'] == 'psync' and l['f2']['backend'] == 'aio' and l['f2']['readonly'], l
assert all(d['state'] == 'open' for d in l.values()), l
assert l['m0']['size'] == 64 << 20 and l['m0']['state'] == 'open', l
assert l['n0']['readonly'] is True and l['n0']['block_size'] == 4096 and l['n0']['backend'] == 'null', l
"
check "nothing was rewritten by the restart" cmp -s "$SAND_DIR/sand.json" "$T_TMP/before.json"
check "status says epoll" bash -c "'$VOLCTL_BIN' --socket '$SAND_SOCK' status | grep -q '^reactors *1 on epoll'"
[ "$LOOP1" = epoll ] || hostile_all epoll

# ---------------------------------------------------------------- volctl usage
cp "$SAND_DIR/sand.json" "$T_TMP/before.json"
check_rc "volctl with no verb: 2" 2 "$VOLCTL_BIN"
check_rc "volctl bogus: 2" 2 volctl bogus
check_rc "volctl disk bogus: 2" 2 volctl disk bogus
check_rc "volctl disk add without NAME: 2" 2 volctl disk add
check_rc "volctl disk add without PATH: 2" 2 volctl disk add z9
check_rc "volctl disk add bad --size: 2" 2 volctl disk add z9 --backend mem --size 12X
check_rc "volctl disk add bad --backend: 2" 2 volctl disk add z9 --backend floppy --size 1M
check_rc "volctl disk add mem without --size: 2" 2 volctl disk add z9 --backend mem
check_rc "volctl disk add unknown option: 2" 2 volctl disk add z9 --backend mem --size 1M --colour red
check_rc "volctl disk remove with two names: 2" 2 volctl disk remove m0 n0
check_rc "volctl status extra: 2" 2 volctl status now
volctl disk add 2>"$T_TMP/err.txt"
check_grep "a usage error says what was wrong" "missing NAME" "$T_TMP/err.txt"
check "volctl --help lists the verbs" bash -c "'$VOLCTL_BIN' --help | grep -q 'disk remove'"
check "volctl disk add --help" bash -c "'$VOLCTL_BIN' disk add --help | grep -q -- '--block-size'"
check "usage errors changed nothing" cmp -s "$SAND_DIR/sand.json" "$T_TMP/before.json"
check_rc "daemon not running: 1" 1 "$VOLCTL_BIN" --socket "$T_TMP/nope.sock" status
"$VOLCTL_BIN" --socket "$T_TMP/nope.sock" status 2>"$T_TMP/err.txt"
check_grep "... with a message naming the socket" "$T_TMP/nope.sock" "$T_TMP/err.txt"
check "SAND_SOCKET is honoured" env SAND_SOCKET="$SAND_SOCK" "$VOLCTL_BIN" status

# ---------------------------------------------------------------- debug
check "volctl debug nbd,raid" volctl debug nbd,raid
check "status shows the debug list" bash -c "'$VOLCTL_BIN' --socket '$SAND_SOCK' --json status | grep -q '\"debug\": \"nbd,raid\"'"
check_rc "volctl debug bogus: 1" 1 volctl debug nbd,bogus
check "debug list unchanged by the bad call" bash -c "'$VOLCTL_BIN' --socket '$SAND_SOCK' debug | grep -q 'nbd,raid'"
check "volctl debug none" bash -c "'$VOLCTL_BIN' --socket '$SAND_SOCK' debug none | grep -q 'debug: none'"
check "volctl log-level warn" bash -c "'$VOLCTL_BIN' --socket '$SAND_SOCK' log-level warn | grep -q '^level  warn$'"
check "volctl log-level shows it" bash -c "'$VOLCTL_BIN' --socket '$SAND_SOCK' log-level | grep -q '^level  warn$'"
check_rc "volctl log-level bogus: 1" 1 volctl log-level bogus
check_rc "volctl log-level a b: 2" 2 volctl log-level info debug
check "volctl log-level info" volctl log-level info

# ---------------------------------------------------------------- one daemon per dir
check_rc "a second sand on the same state dir is refused" 1 \
	bash -c "timeout 30 '$SAND_BIN' --state-dir '$SAND_DIR' --control '$T_TMP/x.sock' 2>'$T_TMP/second.out'"
check_grep "... saying so" "in use by another sand" "$T_TMP/second.out"
mkdir -p "$T_TMP/other"
check_rc "a second sand on the same socket is refused" 1 \
	bash -c "timeout 30 '$SAND_BIN' --state-dir '$T_TMP/other' --control '$SAND_SOCK' 2>'$T_TMP/third.out'"
check_grep "... saying so" "another sand is running on" "$T_TMP/third.out"
check "the first one still serves" volctl status

# ---------------------------------------------------------------- SIGHUP
mv "$T_TMP/sand.log" "$T_TMP/sand.log.1"
kill -HUP "$SAND_PID"
check "after SIGHUP the log file is reopened" wait_for test -s "$T_TMP/sand.log"
volctl disk add h0 --backend mem --size 1M >/dev/null
check_grep "new lines go to the new file" "disk h0 added" "$T_TMP/sand.log"
check_fail "and not to the rotated one" grep -q "disk h0 added" "$T_TMP/sand.log.1"
check "disk remove h0" volctl disk remove h0

# ---------------------------------------------------------------- stale socket, corrupt state
check "SIGTERM: exits 0, removes the socket" sand_stop
rm "$T_TMP/f1.img"
python3 -c "import socket; s = socket.socket(socket.AF_UNIX); s.bind('$SAND_SOCK')"
check "a stale socket is left behind (set-up)" test -S "$SAND_SOCK"
if sand_start --log-file "$T_TMP/sand.log"; then ok "starts over a stale socket"; else not_ok "starts over a stale socket"; fi
check_grep "... and says it removed it" "removing stale socket" "$T_TMP/sand.log"
volctl --json disk list >"$T_TMP/list4.json"
check "a disk whose file vanished comes back as failed, with the reason" python3 -c "
import json
l = {d['name']: d for d in json.load(open('$T_TMP/list4.json'))}
assert l['f1']['state'] == 'failed' and 'No such file' in l['f1']['error'], l['f1']
assert l['f0']['state'] == 'open' and l['m0']['state'] == 'open', l
"
check "... and is not recreated" test ! -e "$T_TMP/f1.img"
check "... and shows in the table" bash -c "'$VOLCTL_BIN' --socket '$SAND_SOCK' disk list | grep -q '^f1 .*failed: No such file'"
check "... and can be removed" volctl disk remove f1
check "... from the state file too" python3 -c "
import json
assert 'f1' not in [d['name'] for d in json.load(open('$SAND_DIR/sand.json'))['disks']]
"
check "SIGINT: exits 0 too" bash -c "kill -INT $SAND_PID; for i in \$(seq 200); do kill -0 $SAND_PID 2>/dev/null || exit 0; sleep 0.1; done; exit 1"
wait "$SAND_PID" 2>/dev/null
check "... with status 0" test $? -eq 0
check "... and no socket" test ! -e "$SAND_SOCK"
SAND_PID=

printf '{"version": 1, "disks": [' >"$SAND_DIR/sand.json"
cp "$SAND_DIR/sand.json" "$T_TMP/corrupt.json"
timeout 30 "$SAND_BIN" --state-dir "$SAND_DIR" >"$T_TMP/corrupt.out" 2>&1
check "a corrupt state file is refused (exit 1)" test $? -eq 1
check_grep "... with a clear message" "state file .*sand.json is corrupt" "$T_TMP/corrupt.out"
check "... and left as it was" cmp -s "$SAND_DIR/sand.json" "$T_TMP/corrupt.json"
check "... and no socket left" test ! -e "$SAND_SOCK"

# ---------------------------------------------------------------- man pages
DOC=$(dirname "$0")/../../doc
for page in sand.8 volctl.8; do
	if command -v groff >/dev/null; then
		check "doc/$page renders without groff warnings" \
			bash -c "LC_ALL=C.UTF-8 groff -man -ww -z '$DOC/$page' 2>&1 | { ! grep .; }"
	else
		skip "doc/$page renders without groff warnings" "groff not installed"
	fi
done
"$VOLCTL_BIN" --help | sed -n '/^Verbs:/,/^$/p' | grep '^  [a-z]' | cut -c3-18 | sed 's/ *$//' >"$T_TMP/verbs.txt"
check "volctl --help lists verbs" test -s "$T_TMP/verbs.txt"
while read -r verb; do
	check "volctl.8 documents '$verb'" grep -q "$(echo "$verb" | sed 's/-/\\\\-/g')" "$DOC/volctl.8"
done <"$T_TMP/verbs.txt"

t_done
