#!/usr/bin/env bash
# volctl vol resize: what is refused (snapshots, sizes not a multiple of
# the block size, a shrink without --force) changes nothing; growing works
# while the volume is exported over NBD and iSCSI (NBD clients see the new
# size when they reconnect, iSCSI through READ CAPACITY), the data stays
# and the new part reads zeros; a shrink with --force gives chunks back to
# the pool; the new size survives a restart; the pool checks clean.
. "$(dirname "$0")/lib.sh"

for tool in qemu-io nbdinfo iscsi-ls; do
	if ! command -v $tool >/dev/null; then
		skip "vol resize" "$tool not installed"
		t_done
	fi
done
port=$(free_port)
iport=$(free_port)
while [ "$iport" = "$port" ]; do iport=$(free_port); done
URL=nbd://127.0.0.1:$port
IQN=iqn.2026-11.org.sand:resize

qio() {
	timeout 60 qemu-io -f raw "$@" >"$T_TMP/qio" 2>&1 || { cat "$T_TMP/qio"; return 1; }
	cat "$T_TMP/qio"
	! grep -qiE "error|fail|read-only|protected|denied|not permitted|pattern" "$T_TMP/qio"
}

sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
check "disk add d0" volctl disk add d0 "$T_TMP/d0.img" --size 64M
check "pool create p0 --raid 0 d0" volctl pool create p0 --raid 0 d0
check "vol create v 16M" volctl vol create v --pool p0 --size 16M
check "nbd listen" volctl nbd listen 127.0.0.1:$port
check "export nbd v" volctl export nbd v
check "iscsi target create" volctl iscsi target create $IQN
check "iscsi portal add" volctl iscsi portal add 1 127.0.0.1:$iport
check "export iscsi v" volctl export iscsi v --target $IQN --lun 0
check "write a pattern over NBD" qio "$URL/v" -c 'write -P 0x51 0 16M' -c flush
check "snapshot v s" volctl snapshot v s

# ---- refusals ----
check_rc "resize of an unknown volume" 1 volctl vol resize nope 32M
check_grep "... says which" "no volume named 'nope'" "$T_TMP/check.out"
check_rc "resize of a snapshot" 1 volctl vol resize v@s 32M
check_grep "... says why" "'v@s' is a snapshot" "$T_TMP/check.out"
check_rc "a size not a multiple of the block size" 1 volctl vol resize v 1000
check_grep "... says why" "not a positive multiple of the block size 512" "$T_TMP/check.out"
check_rc "a shrink without --force" 1 volctl vol resize v 8M
check_grep "... says what --force would do" "discards the data past the new end: pass force" \
	"$T_TMP/check.out"
check_rc "a size that does not parse" 2 volctl vol resize v 12Q
check "nothing changed" volctl vol show v
check_grep "... 16M" "^size +16777216$" "$T_TMP/check.out"

# ---- grow, exported ----
check "vol resize v 32M (exported)" volctl vol resize v 32M
check_grep "... the answer has the new size" "^size +33554432$" "$T_TMP/check.out"
check "nbdinfo on a new connection sees 32M" timeout 30 nbdinfo --size "$URL/v"
check_grep "... exactly" "^33554432$" "$T_TMP/check.out"
timeout 10 iscsi-ls -s "iscsi://127.0.0.1:$iport" >"$T_TMP/ls" 2>&1
check_grep "iscsi-ls sees 32M" "Lun:0 +Type:DIRECT_ACCESS \(Size:3[12]M\)" "$T_TMP/ls"
check "the data is there, the new part reads zeros" qio "$URL/v" -r \
	-c 'read -P 0x51 0 16M' -c 'read -P 0 16M 16M'
check "the new part is writable" qio "$URL/v" -c 'write -P 0x52 30M 2M' -c flush
check "the snapshot kept its size" volctl vol show v@s
check_grep "... 16M" "^size +16777216$" "$T_TMP/check.out"

# ---- shrink ----
volctl vol show v >"$T_TMP/before" 2>&1
check "vol resize v 4M --force" volctl vol resize v 4M --force
check_grep "... 4M" "^size +4194304$" "$T_TMP/check.out"
check_grep "... 64 chunks mapped, not 256" "^mapped_chunks +64$" "$T_TMP/check.out"
check "nbdinfo sees 4M" timeout 30 nbdinfo --size "$URL/v"
check_grep "... exactly" "^4194304$" "$T_TMP/check.out"
check "what is left reads as before" qio "$URL/v" -r -c 'read -P 0x51 0 4M'
check "grow again" volctl vol resize v 32M
check "what was cut reads zeros" qio "$URL/v" -r -c 'read -P 0x51 0 4M' -c 'read -P 0 4M 28M'
check "export nbd v@s as snap" volctl export nbd v@s --name snap
check "the snapshot still reads the pattern, all 16M" qio "$URL/snap" -r -c 'read -P 0x51 0 16M'
check "pool check p0" volctl pool check p0
check_grep "... clean" "^pool p0: clean" "$T_TMP/check.out"
check "sand stops cleanly" sand_stop

sand_start --reactors 2 || { not_ok "sand starts again"; t_done; }
ok "sand starts again"
check "the size is kept" volctl vol show v
check_grep "... 32M" "^size +33554432$" "$T_TMP/check.out"
check "the data too" qio "$URL/v" -r -c 'read -P 0x51 0 4M' -c 'read -P 0 4M 28M'
check "sand stops cleanly again" sand_stop
t_done
