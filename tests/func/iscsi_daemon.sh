#!/usr/bin/env bash
# The iSCSI target inside the daemon, driven by volctl: a target, a portal,
# a file disk exported as LUN 0; real clients read and write through it;
# refusals (unknown disk, double export, a claimed disk removed); after a
# restart everything is back, data included.
. "$(dirname "$0")/lib.sh"

for tool in iscsi-ls iscsi-inq qemu-io; do
	if ! command -v $tool >/dev/null; then
		skip "iscsi through the daemon" "$tool not installed"
		t_done
	fi
done
IQN=iqn.2026-11.org.sand:daemon
port=$(free_port)
URL=iscsi://127.0.0.1:$port/$IQN

sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
check "disk add" volctl disk add d0 "$T_TMP/d0.img" --size 64M
check "disk add (mem)" volctl disk add m0 --backend mem --size 16M
check "iscsi target create" volctl iscsi target create $IQN
check_rc "a bad name is a usage error of the daemon" 1 volctl iscsi target create not-an-iqn
check_rc "a target twice is refused" 1 volctl iscsi target create $IQN
check "iscsi portal add" volctl iscsi portal add 1 127.0.0.1:$port
check_rc "the same portal twice is refused" 1 volctl iscsi portal add 1 127.0.0.1:$port
check_rc "portal add without add" 2 volctl iscsi portal 1 127.0.0.1:$port
check "export iscsi" volctl export iscsi d0 --target $IQN --lun 0
check "export iscsi, lun chosen" volctl export iscsi m0 --target $IQN --readonly
check_rc "exporting a disk twice is refused" 1 volctl export iscsi d0 --target $IQN --lun 5
check_rc "exporting an unknown disk is refused" 1 volctl export iscsi nope --target $IQN
check_rc "exporting to an unknown target is refused" 1 \
	volctl export iscsi d0 --target iqn.2026-11.org.sand:none
check_rc "export without --target" 2 volctl export iscsi d0
check_rc "an exported disk cannot be removed" 1 volctl disk remove d0
volctl iscsi list >"$T_TMP/list" 2>&1
check_grep "iscsi list shows the portal" "portal 127.0.0.1:$port tpg 1 up" "$T_TMP/list"
check_grep "iscsi list shows lun 0" "lun 0 disk d0 up" "$T_TMP/list"
check_grep "iscsi list shows lun 1 read-only" "lun 1 disk m0 read-only up" "$T_TMP/list"

timeout 10 iscsi-ls -s "iscsi://127.0.0.1:$port" >"$T_TMP/ls" 2>&1
check_grep "iscsi-ls finds the target" "Target:$IQN Portal:127.0.0.1:$port,1" "$T_TMP/ls"
check_grep "iscsi-ls sees lun 0" "Lun:0 +Type:DIRECT_ACCESS \(Size:63M\)" "$T_TMP/ls"
check_grep "iscsi-ls sees lun 1" "Lun:1 +Type:DIRECT_ACCESS \(Size:15M\)" "$T_TMP/ls"
# qemu-io succeeds: exit 0 and no complaint in its output
qio() {
	timeout 60 qemu-io -f raw "$@" >"$T_TMP/qio" 2>&1 || { cat "$T_TMP/qio"; return 1; }
	cat "$T_TMP/qio"
	! grep -qiE "error|fail|read-only|protected|denied|not permitted" "$T_TMP/qio"
}
check "qemu-io writes and reads lun 0" qio "$URL/0" -c 'write -P 0x6e 1M 4M' \
	-c 'read -P 0x6e 1M 4M' -c flush
check_fail "lun 1 is read-only" qio "$URL/1" -c 'write -P 1 0 4k'
check "sand stops cleanly" sand_stop

sand_start --reactors 2 || { not_ok "sand starts again"; t_done; }
ok "sand starts again"
volctl iscsi list >"$T_TMP/list" 2>&1
check_grep "the portal is back" "portal 127.0.0.1:$port tpg 1 up" "$T_TMP/list"
check_grep "lun 0 is back" "lun 0 disk d0 up" "$T_TMP/list"
check "the data is still there" qio "$URL/0" -r -c 'read -P 0x6e 1M 4M' -c 'read -P 0 0 1M'
check "sand stops cleanly again" sand_stop
t_done
