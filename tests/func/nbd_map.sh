#!/usr/bin/env bash
# Allocation and changed-block maps over NBD, from a thin volume's mapping:
# `nbdinfo --map` (base:allocation) after writes, trims and snapshots;
# `nbdinfo --map=sand:changed:SNAP` after writes since one snapshot and
# since another; an unknown snapshot refused; qemu-img map over nbd://;
# READ replies with hole chunks (data checked against a reference image
# made by the same writes on a local file, through nbdcopy and a raw
# client), also over TLS; a snapshot export is read-only in `export list` and to clients;
# an incremental backup from the changed map equals the volume.
. "$(dirname "$0")/lib.sh"

for tool in qemu-io qemu-img nbdinfo nbdcopy python3 jq; do
	if ! command -v $tool >/dev/null; then
		skip "nbd maps" "$tool not installed"
		t_done
	fi
done
port=$(free_port)
URL=nbd://127.0.0.1:$port
REF=$T_TMP/ref.raw
SIZE=16777216

# qio ARGS...: the same qemu-io commands on the export and on the reference
qio() {
	timeout 60 qemu-io -f raw "$URL/v" "$@" >"$T_TMP/qio" 2>&1 &&
		timeout 60 qemu-io -f raw "$REF" "$@" >>"$T_TMP/qio" 2>&1 ||
		{ cat "$T_TMP/qio"; return 1; }
	! grep -qiE "error|fail|denied|not permitted" "$T_TMP/qio" || { cat "$T_TMP/qio"; return 1; }
}

# map_is DESC URL CTX EXPECTED: nbdinfo --map=CTX gives "offset length type" lines
map_is() {
	local d=$1 url=$2 ctx=$3 want=$4
	if ! timeout 30 nbdinfo --map="$ctx" "$url" >"$T_TMP/map.raw" 2>&1; then
		not_ok "$d (nbdinfo failed)"; sed 's/^/#   /' "$T_TMP/map.raw"; return
	fi
	awk '{ print $1, $2, $3 }' "$T_TMP/map.raw" >"$T_TMP/map.got"
	printf '%s\n' "$want" >"$T_TMP/map.want"
	if diff -u "$T_TMP/map.want" "$T_TMP/map.got" >"$T_TMP/map.diff"; then ok "$d"; else
		not_ok "$d"; sed 's/^/#   /' "$T_TMP/map.diff"; fi
}

sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
check "disk add a" volctl disk add a "$T_TMP/a.img" --size 64M
check "pool create" volctl pool create m --raid 0 a
check "vol create v" volctl vol create v --pool m --size 16M
check "vol create w" volctl vol create w --pool m --size 16M
check "nbd listen" volctl nbd listen 127.0.0.1:$port
check "export nbd v" volctl export nbd v
truncate -s $SIZE "$REF"

map_is "a new volume is one hole" "$URL/v" base:allocation "0 $SIZE 3"

check "writes" qio -c 'write -P 0x31 0 128k' -c 'write -P 0x32 1M 64k' \
	-c 'write -P 0x33 2052k 4k' -c flush
map_is "the map after writes" "$URL/v" base:allocation "0 131072 0
131072 917504 3
1048576 65536 0
1114112 983040 3
2097152 65536 0
2162688 14614528 3"

check "trims" qio -c 'discard 64k 64k' -c 'discard 2056k 4k' -c flush
map_is "a whole-chunk trim makes a hole, a partial one does not" "$URL/v" base:allocation \
"0 65536 0
65536 983040 3
1048576 65536 0
1114112 983040 3
2097152 65536 0
2162688 14614528 3"
SNAP_S_MAP=$(cat "$T_TMP/map.got")

check "snapshot v s" volctl snapshot v s
map_is "nothing changed since s yet" "$URL/v" sand:changed:s "0 $SIZE 0"
check "writes after s" qio -c 'write -P 0x34 4M 64k' -c 'discard 1M 64k' -c 'write -P 0x35 0 4k'
map_is "the map after s" "$URL/v" base:allocation "0 65536 0
65536 2031616 3
2097152 65536 0
2162688 2031616 3
4194304 65536 0
4259840 12517376 3"
map_is "sand:changed:s: rewritten, trimmed and new chunks" "$URL/v" sand:changed:s "0 65536 1
65536 983040 0
1048576 65536 1
1114112 3080192 0
4194304 65536 1
4259840 12517376 0"

check "snapshot v s2" volctl snapshot v s2
check "writes after s2" qio -c 'write -P 0x36 8M 64k' -c 'discard 8M 64k' -c 'write -P 0x37 9M 4k'
map_is "sand:changed:s2: written then trimmed is no change" "$URL/v" sand:changed:s2 \
"0 9437184 0
9437184 65536 1
9502720 7274496 0"
map_is "sand:changed:s: everything since s" "$URL/v" sand:changed:s "0 65536 1
65536 983040 0
1048576 65536 1
1114112 3080192 0
4194304 65536 1
4259840 5177344 0
9437184 65536 1
9502720 7274496 0"

check "snapshot w@x of another volume" volctl snapshot w x
check_fail "sand:changed:nope is refused" timeout 30 nbdinfo --map=sand:changed:nope "$URL/v"
check_grep "... as a context the server does not support" "does not support" "$T_TMP/check.out"
check_fail "another volume's snapshot is refused" timeout 30 nbdinfo --map=sand:changed:x "$URL/v"
check "nbdinfo lists the contexts" timeout 30 nbdinfo "$URL/v"
check_grep "... base:allocation" "^[[:space:]]+base:allocation$" "$T_TMP/check.out"
check_grep "... sand:changed:s" "^[[:space:]]+sand:changed:s$" "$T_TMP/check.out"
check_grep "... sand:changed:s2" "^[[:space:]]+sand:changed:s2$" "$T_TMP/check.out"

# qemu-img map over nbd://: data where the map says data
if timeout 30 qemu-img map --output=json -f raw "$URL/v" >"$T_TMP/qmap.json" 2>&1; then
	python3 - "$T_TMP/qmap.json" >"$T_TMP/qmap.got" <<'EOF'
import json, sys
out = []
for e in json.load(open(sys.argv[1])):
    d = 0 if e["data"] else 3
    if out and out[-1][2] == d:
        out[-1][1] += e["length"]
    else:
        out.append([e["start"], e["length"], d])
for o in out:
    print(*o)
EOF
	timeout 30 nbdinfo --map "$URL/v" | awk '{ print $1, $2, $3 }' >"$T_TMP/map.got"
	if diff -u "$T_TMP/map.got" "$T_TMP/qmap.got" >"$T_TMP/qmap.diff"; then
		ok "qemu-img map agrees with the allocation map"
	else
		not_ok "qemu-img map agrees with the allocation map"; sed 's/^/#   /' "$T_TMP/qmap.diff"
	fi
else
	not_ok "qemu-img map over nbd"; sed 's/^/#   /' "$T_TMP/qmap.json"
fi

check "nbdcopy of the volume" timeout 60 nbdcopy "$URL/v" "$T_TMP/copy.raw"
check "... equals the reference" cmp "$T_TMP/copy.raw" "$REF"

# The raw client: hole chunks on READ, both contexts at once, REQ_ONE,
# unaligned BLOCK_STATUS, the context list.
check "raw client: hole chunks, contexts" timeout 60 python3 - 127.0.0.1 $port "$REF" <<'EOF'
import struct, sys
sys.path.insert(0, "tests/func")
from nbd_raw import *
host, port, ref = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], "rb").read()

def meta(c, opt, queries):
    d = struct.pack(">I", 1) + b"v" + struct.pack(">I", len(queries))
    for q in queries:
        d += struct.pack(">I", len(q)) + q
    reps = c.opt(opt, d)
    assert reps[-1][0] == REP_ACK, reps
    return sorted((struct.unpack(">I", r[:4])[0], r[4:]) for t, r in reps if t == 4)

c = Client(host, port)
c.client_flags()
assert c.opt(OPT_STRUCTURED_REPLY)[-1][0] == REP_ACK
got = meta(c, OPT_LIST_META, [b"sand:changed:s", b"sand:changed:nope", b"base:allocation"])
assert got == [(0, b"base:allocation"), (0, b"sand:changed:s")], got
got = meta(c, OPT_LIST_META, [])          # everything: the snapshots of v, not of w
assert got == [(0, b"base:allocation"), (0, b"sand:changed:s"), (0, b"sand:changed:s2")], got
for ns in [b"sand:", b"sand:changed:"]:
    got = meta(c, OPT_LIST_META, [ns])
    assert got == [(0, b"sand:changed:s"), (0, b"sand:changed:s2")], (ns, got)
got = meta(c, OPT_SET_META, [b"sand:"])   # SET wants whole names
assert got == [], got
got = meta(c, OPT_SET_META, [b"sand:changed:nope", b"base:allocation", b"sand:changed:s2"])
assert got == [(1, b"base:allocation"), (2, b"sand:changed:s2")], got
c.go(b"v", structured=False)

# READ over data and holes: hole chunks where nothing is mapped, the right bytes
for off, ln, hole in [(0, 2 << 20, True), (0, 16 << 20, True), (4096, 8192, False),
                      (9 << 20, 1 << 20, True), (2 << 20, 64 << 10, False)]:
    err, d = c.cmd(CMD_READ, off, ln)
    assert err == 0 and d == ref[off:off + ln], (off, ln, err)
    assert (2 in c.chunk_types) == hole, (off, ln, c.chunk_types)
err, d = c.cmd(CMD_READ, 65536, 65536)
assert err == 0 and d == bytes(65536) and c.chunk_types == [2], c.chunk_types
err, d = c.cmd(CMD_READ, 0, 2 << 20, flags=4)      # DF: one content chunk
assert err == 0 and d == ref[0:2 << 20] and c.chunk_types == [1], c.chunk_types
err, d = c.cmd(CMD_READ, 65536, 65536, flags=4)    # DF, all hole: one hole chunk
assert err == 0 and d == bytes(65536) and c.chunk_types == [2], c.chunk_types

def bs(off, ln, flags=0):
    cookie = c.send_req(CMD_BS, off, ln, flags)
    out = {}
    while True:
        assert struct.unpack(">I", recvall(c.s, 4))[0] == STRUCT_MAGIC
        fl, typ, ck, n = struct.unpack(">HHQI", recvall(c.s, 16))
        p = recvall(c.s, n)
        assert typ == 5 and ck == cookie, (typ, p)
        ctx = struct.unpack(">I", p[:4])[0]
        assert ctx not in out
        out[ctx] = [struct.unpack(">II", p[i:i + 8]) for i in range(4, n, 8)]
        if fl & 1:
            return out

r = bs(0, 16 << 20)
assert r[1][:2] == [(65536, 0), (2031616, 3)], r[1]
assert r[2] == [(9437184, 0), (65536, 1), (7274496, 0)], r[2]
r = bs(0, 16 << 20, flags=8)                        # REQ_ONE
assert r[1] == [(65536, 0)] and r[2] == [(9437184, 0)], r
r = bs(100, 1000)                                   # unaligned
assert r[1] == [(1000, 0)] and r[2] == [(1000, 0)], r
r = bs(65536 - 100, 200)
assert r[1] == [(100, 0), (100, 3)], r
c.send_req(CMD_DISC)
c.close()
print("raw checks passed")
EOF

check "export nbd v@s as snap" volctl export nbd v@s --name snap
check "export list" volctl export list
check_grep "... shows the snapshot export read-only" "^nbd +snap +v@s +16M +yes" "$T_TMP/check.out"
check_grep "... and the volume writable" "^nbd +v +v +16M +no" "$T_TMP/check.out"
check "export list --json: snap is readonly" \
	sh -c "'$VOLCTL_BIN' --socket '$SAND_SOCK' --json export list |
		jq -e '[.. | objects | select(.name? == \"snap\") | .readonly] == [true]'"
check "nbdinfo of the snapshot export" timeout 30 nbdinfo "$URL/snap"
check_grep "... says read-only" "is_read_only: true" "$T_TMP/check.out"
map_is "the snapshot's map is the volume's when it was taken" "$URL/snap" base:allocation \
	"$SNAP_S_MAP"

# The same over TLS (PSK): hole chunks and block status go through the
# record path too.
if command -v psktool >/dev/null && psktool -u alice -p "$T_TMP/keys.psk" >/dev/null 2>&1; then
	tport=$(free_port)
	TURL="nbds://alice@127.0.0.1:$tport/v?tls-psk-file=$T_TMP/keys.psk"
	check "nbd listen --tls require --tls-psk" \
		volctl nbd listen "127.0.0.1:$tport" --tls require --tls-psk "$T_TMP/keys.psk"
	check "nbdinfo --map over TLS" timeout 30 nbdinfo --map "$TURL"
	awk '{ print $1, $2, $3 }' "$T_TMP/check.out" >"$T_TMP/tmap.got"
	timeout 30 nbdinfo --map "$URL/v" | awk '{ print $1, $2, $3 }' >"$T_TMP/map.got"
	check "... the same map as in clear" cmp "$T_TMP/tmap.got" "$T_TMP/map.got"
	check "nbdcopy over TLS" timeout 60 nbdcopy "$TURL" "$T_TMP/tcopy.raw"
	check "... equals the reference" cmp "$T_TMP/tcopy.raw" "$REF"
else
	skip "nbd maps over TLS" "psktool not installed"
fi

# An incremental backup as doc/nbd.md shows it: the image of s, plus the
# ranges sand:changed:s names, copied from a later snapshot, is that snapshot.
check "snapshot v now" volctl snapshot v now
check "export nbd v@now as now" volctl export nbd v@now --name now
check "full backup of s" timeout 60 nbdcopy "$URL/snap" "$T_TMP/backup.raw"
map_is "a snapshot's changes since its sibling" "$URL/now" sand:changed:s "0 65536 1
65536 983040 0
1048576 65536 1
1114112 3080192 0
4194304 65536 1
4259840 5177344 0
9437184 65536 1
9502720 7274496 0"
timeout 30 nbdinfo --map=sand:changed:s --json "$URL/now" |
	jq -r '.[] | select(.type == 1) | "\(.offset) \(.length)"' >"$T_TMP/ranges"
bad=0
while read -r off len; do
	timeout 60 qemu-img convert -n \
		--image-opts "driver=raw,offset=$off,size=$len,file.driver=nbd,file.server.type=inet,file.server.host=127.0.0.1,file.server.port=$port,file.export=now" \
		--target-image-opts "driver=raw,offset=$off,size=$len,file.driver=file,file.filename=$T_TMP/backup.raw" \
		>>"$T_TMP/convert.log" 2>&1 || bad=$((bad + 1))
done <"$T_TMP/ranges"
check "the 4 changed ranges are copied" test "$(wc -l <"$T_TMP/ranges")" -eq 4 -a $bad -eq 0
check "the backup equals the volume now" cmp "$T_TMP/backup.raw" "$REF"
check "sand stops cleanly" sand_stop
t_done
