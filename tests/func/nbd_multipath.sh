#!/usr/bin/env bash
# One NBD export served on several listeners at once (two TCP addresses
# and a unix socket), as iSCSI serves a LU through several portals: the
# same export and flags (multi-conn) on each, writes through one listener
# read back through the others with no per-connection cache, nbdcopy's
# four connections through one listener while qemu-io writes through
# another, and a listener taken away while the others keep serving.
. "$(dirname "$0")/lib.sh"

for tool in nbdinfo nbdcopy qemu-io; do
	command -v $tool >/dev/null || { skip "nbd multipath" "$tool not installed"; t_done; }
done
sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
P1=$(free_port) P2=$(free_port)
U1="nbd://127.0.0.1:$P1/v" U2="nbd://127.0.0.2:$P2/v" U3="nbd+unix:///v?socket=$T_TMP/nbd.sock"
check "disk add" volctl disk add d0 "$T_TMP/d0.img" --size 64M
check "export nbd" volctl export nbd d0 --name v
check "listen on 127.0.0.1" volctl nbd listen 127.0.0.1:$P1
check "listen on 127.0.0.2" volctl nbd listen 127.0.0.2:$P2
check "listen on a unix socket" volctl nbd listen "unix:$T_TMP/nbd.sock"
for u in "$U1" "$U2" "$U3"; do
	timeout 30 nbdinfo --json "$u" >"$T_TMP/info" 2>&1
	check_grep "multi-conn advertised through $u" '"can_multi_conn": true' "$T_TMP/info"
	check_grep "the same size through $u" '"export-size": 67108864' "$T_TMP/info"
done
qio() { timeout 60 qemu-io -f raw "$@" >"$T_TMP/qio" 2>&1 && ! grep -qiE "error|fail|mismatch" "$T_TMP/qio"; }
check "write through listener 1" qio "$U1" -c 'write -P 0x11 0 4M' -c flush
check "read back through listener 2" qio "$U2" -r -c 'read -P 0x11 0 4M'
check "read back through the unix socket" qio "$U3" -r -c 'read -P 0x11 0 4M'
check "overwrite through listener 2" qio "$U2" -c 'write -P 0x22 1M 1M'
check "listener 1 sees it at once" qio "$U1" -r -c 'read -P 0x11 0 1M' -c 'read -P 0x22 1M 1M' \
	-c 'read -P 0x11 2M 2M'

# nbdcopy (4 connections, multi-conn) through listener 2 while qemu-io
# writes another region through listener 1
head -c 16M /dev/urandom >"$T_TMP/src"
t_bg "$T_TMP/qio-bg" timeout 60 qemu-io -f raw "$U1" -c 'write -P 0x33 48M 8M' -c flush
qpid=$T_BG_PID
check "nbdcopy in through listener 2 (4 connections)" \
	timeout 60 nbdcopy --connections=4 "$T_TMP/src" "nbd://127.0.0.2:$P2/v"
wait "$qpid"
check "qemu-io through listener 1 meanwhile" test $? -eq 0
check "nbdcopy out through the unix socket" timeout 60 nbdcopy "$U3" "$T_TMP/dst"
check "the copy through one listener is what the other wrote" \
	cmp -n $((16 << 20)) "$T_TMP/src" "$T_TMP/dst"
check "listener 1's region too" qio "$U2" -r -c 'read -P 0x33 48M 8M'

check "unlisten 127.0.0.1" volctl nbd unlisten 127.0.0.1:$P1
check_fail "listener 1 is gone" timeout 10 nbdinfo --size "$U1"
check "listener 2 still serves" qio "$U2" -r -c 'read -P 0x33 48M 8M'
check "sand stops" sand_stop
t_done
