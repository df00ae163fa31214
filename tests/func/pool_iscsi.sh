#!/usr/bin/env bash
# Pools and thin volumes through the daemon, end to end: a RAID 5 pool on 4
# file disks, a thin volume exported over iSCSI, written with qemu-io; a
# snapshot exported read-only as another LUN shows the old data while the
# volume shows the new; a clone of the snapshot shows the old data; after a
# restart pools, volumes, snapshots, exports and data are all back, and
# again, degraded, with a member disk gone, which is then replaced and
# rebuilt; rollback.
. "$(dirname "$0")/lib.sh"

for tool in qemu-io iscsi-ls; do
	if ! command -v $tool >/dev/null; then
		skip "pools over iscsi" "$tool not installed"
		t_done
	fi
done
IQN=iqn.2026-11.org.sand:pools
IQN2=iqn.2026-11.org.sand:clone
port=$(free_port)
URL=iscsi://127.0.0.1:$port/$IQN
URL2=iscsi://127.0.0.1:$port/$IQN2

# qemu-io succeeds: exit 0 and no complaint in its output
qio() {
	timeout 60 qemu-io -f raw "$@" >"$T_TMP/qio" 2>&1 || { cat "$T_TMP/qio"; return 1; }
	cat "$T_TMP/qio"
	! grep -qiE "error|fail|read-only|protected|denied|not permitted|pattern" "$T_TMP/qio"
}

sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
for i in 1 2 3 4; do
	volctl disk add d$i "$T_TMP/d$i.img" --size 48M >/dev/null || not_ok "disk add d$i"
done
check "pool create --raid 5 over 4 disks" volctl pool create p5 --raid 5 d1 d2 d3 d4
check_grep "it says how the chunk relates to the full stripe" "full stripe \(3 x 64K\)" \
	"$T_TMP/check.out"
check "vol create" volctl vol create v1 --pool p5 --size 256M
check "iscsi target create" volctl iscsi target create $IQN
check "iscsi target create (clone)" volctl iscsi target create $IQN2
check "iscsi portal add" volctl iscsi portal add 1 127.0.0.1:$port
check "export the volume" volctl export iscsi v1 --target $IQN --lun 0
timeout 10 iscsi-ls -s "iscsi://127.0.0.1:$port" >"$T_TMP/ls" 2>&1
check_grep "iscsi-ls sees the volume as lun 0 (256M)" "Lun:0 +Type:DIRECT_ACCESS \(Size:255M\)" \
	"$T_TMP/ls"
check "qemu-io writes the old pattern" qio "$URL/0" -c 'write -P 0x11 0 1M' \
	-c 'write -P 0x12 100M 64k' -c flush
check "snapshot v1 s1" volctl snapshot v1 s1
check "overwrite with the new pattern" qio "$URL/0" -c 'write -P 0x22 0 1M' -c flush
check "export the snapshot as lun 1" volctl export iscsi v1@s1 --target $IQN --lun 1
check "the snapshot reads the old pattern" qio "$URL/1" -r -c 'read -P 0x11 0 1M' \
	-c 'read -P 0x12 100M 64k'
check "the volume reads the new pattern" qio "$URL/0" -r -c 'read -P 0x22 0 1M' \
	-c 'read -P 0x12 100M 64k'
check_fail "the snapshot is read-only" qio "$URL/1" -c 'write -P 0x33 0 4k'
check "clone v1@s1 c1" volctl clone v1@s1 c1
check "export the clone" volctl export iscsi c1 --target $IQN2 --lun 0
check "the clone reads the old pattern" qio "$URL2/0" -r -c 'read -P 0x11 0 1M'
check "the clone is writable" qio "$URL2/0" -c 'write -P 0x44 0 64k' -c flush
check "the snapshot is unchanged by the clone's write" qio "$URL/1" -r -c 'read -P 0x11 0 1M'
check_rc "an exported volume cannot be deleted" 1 volctl vol delete c1
check_rc "an exported snapshot cannot be deleted" 1 volctl vol delete v1@s1
check_rc "nor its volume, even recursively" 1 volctl vol delete v1 --recursive
check_rc "nor the pool, even with --force" 1 volctl pool destroy p5 --force
check_rc "an exported volume cannot be rolled back" 1 volctl rollback v1@s1
check_grep "... says why" "in use by 'iscsi': unexport it first" "$T_TMP/check.out"
check_rc "a member disk cannot be removed" 1 volctl disk remove d2
check "disk add x (mem)" volctl disk add x --backend mem --size 16M
check "export x" volctl export iscsi x --target $IQN2 --lun 1
check_rc "an exported disk cannot go into a pool" 1 volctl pool create px --raid 0 x
check_grep "... the exporter is named" "disk 'x' is in use by 'iscsi'" "$T_TMP/check.out"
volctl pool show p5 >"$T_TMP/show" 2>&1
check_grep "pool show: data used" "^data +2\.1M used of 140M" "$T_TMP/show"
check_grep "pool show: provisioned is 3 x 256M" "^provisioned +768M" "$T_TMP/show"
volctl vol list >"$T_TMP/vols" 2>&1
check_grep "vol list: the snapshot's origin" "^v1@s1 +p5 +256M .* yes +v1 " "$T_TMP/vols"
check_grep "vol list: the clone's origin and exporter" "^c1 +p5 +256M .* no +v1@s1 .*iscsi" \
	"$T_TMP/vols"
check "sand stops cleanly" sand_stop

sand_start --reactors 2 || { not_ok "sand starts again"; t_done; }
ok "sand starts again"
volctl pool list >"$T_TMP/pools" 2>&1
check_grep "the pool is back online" "^p5 +raid5 +4 +64K +140M +2\.1M +3 +online" "$T_TMP/pools"
volctl vol list >"$T_TMP/vols" 2>&1
check_grep "the volume is back" "^v1 +p5 +256M" "$T_TMP/vols"
check_grep "the snapshot is back" "^v1@s1 +p5 +256M .* yes +v1 " "$T_TMP/vols"
check_grep "the clone is back" "^c1 +p5 +256M .* no +v1@s1 " "$T_TMP/vols"
volctl iscsi list >"$T_TMP/list" 2>&1
check_grep "lun 0 (the volume) is back" "lun 0 disk v1 up" "$T_TMP/list"
check_grep "lun 1 (the snapshot) is back" "lun 1 disk v1@s1 up" "$T_TMP/list"
check "the volume's data is back" qio "$URL/0" -r -c 'read -P 0x22 0 1M' -c 'read -P 0x12 100M 64k'
check "the snapshot's data is back" qio "$URL/1" -r -c 'read -P 0x11 0 1M'
check "the clone's data is back" qio "$URL2/0" -r -c 'read -P 0x44 0 64k' -c 'read -P 0x11 64k 960k'
check "sand stops cleanly again" sand_stop

# A member disk lost while the daemon is down: the RAID 5 pool comes back
# degraded, with every volume and its data.
rm -f "$T_TMP/d3.img"
sand_start --reactors 2 || { not_ok "sand starts without d3"; t_done; }
ok "sand starts without d3"
volctl pool list >"$T_TMP/pools" 2>&1
check_grep "the pool is back degraded" "^p5 +raid5 +4 .* 3 +degraded" "$T_TMP/pools"
volctl pool show p5 >"$T_TMP/show" 2>&1
check_grep "pool show: d3 is missing" "^member +d3 slot -1 missing" "$T_TMP/show"
check_grep "pool show: d4 is active" "^member +d4 slot 3 active" "$T_TMP/show"
check "the volume's data reads back degraded" qio "$URL/0" -r -c 'read -P 0x22 0 1M' \
	-c 'read -P 0x12 100M 64k'
check "the snapshot's data reads back degraded" qio "$URL/1" -r -c 'read -P 0x11 0 1M'
check "writes go on degraded" qio "$URL2/0" -c 'write -P 0x55 1M 1M' -c 'read -P 0x55 1M 1M' \
	-c flush
check "disk add d5" volctl disk add d5 "$T_TMP/d5.img" --size 48M
check_rc "an active member is not replaced" 1 volctl pool replace p5 d2 d5
check_rc "a disk that is not a member is not replaced" 1 volctl pool replace p5 x d5
check "disk add small (mem, 4M)" volctl disk add small --backend mem --size 4M
check_rc "pool replace p5 d3 small is refused (too small)" 1 volctl pool replace p5 d3 small
check "... the pool is still degraded" wait_for bash -c \
	"'$VOLCTL_BIN' --socket '$SAND_SOCK' pool list | grep -qE '^p5 .* degraded$'"
volctl pool show p5 >"$T_TMP/show" 2>&1
check_grep "... d3 is the member again" "^member +d3 slot 2 " "$T_TMP/show"
check "... small is free" volctl disk remove small
check "pool replace p5 d3 d5" volctl pool replace p5 d3 d5
check "the rebuild ends" wait_for bash -c "'$VOLCTL_BIN' --socket '$SAND_SOCK' pool list | grep -qE '^p5 .* online$'"
volctl pool show p5 >"$T_TMP/show" 2>&1
check_grep "pool show: d5 is active in slot 2" "^member +d5 slot 2 active" "$T_TMP/show"
check "the rebuilt pool checks clean" volctl pool check p5
check "the data reads back after the rebuild" qio "$URL/0" -r -c 'read -P 0x22 0 1M' \
	-c 'read -P 0x12 100M 64k'
check "d3 (gone) can be removed now" volctl disk remove d3
check "sand stops cleanly, rebuilt" sand_stop

# Rollback, after the restart: unexport, roll back, export again.
sand_start --reactors 2 || { not_ok "sand starts for the rollback"; t_done; }
ok "sand starts for the rollback"
volctl pool list >"$T_TMP/pools" 2>&1
check_grep "the pool is online with d5" "^p5 +raid5 +4 .* online" "$T_TMP/pools"
volctl pool show p5 >"$T_TMP/show" 2>&1
check_grep "pool show: d5 in slot 2 after the restart" "^member +d5 slot 2 active" "$T_TMP/show"
check "unexport lun 0 (v1)" volctl unexport iscsi $IQN --lun 0
check "rollback v1@s1" volctl rollback v1@s1
check "export v1 again" volctl export iscsi v1 --target $IQN --lun 0
check "v1 reads the old pattern again" qio "$URL/0" -r -c 'read -P 0x11 0 1M' \
	-c 'read -P 0x12 100M 64k' -c 'read -P 0 1M 1M'
check "v1 is writable" qio "$URL/0" -c 'write -P 0x66 0 64k' -c 'read -P 0x66 0 64k' -c flush
check "the snapshot is unchanged" qio "$URL/1" -r -c 'read -P 0x11 0 1M'
check "the clone is unchanged" qio "$URL2/0" -r -c 'read -P 0x44 0 64k' -c 'read -P 0x55 1M 1M'
check "pool check after all that" volctl pool check p5
check_grep "... clean" "^pool p5: clean: 3 volumes, [0-9]+ mappings, 0 errors" "$T_TMP/check.out"
check "sand stops cleanly after the rollback" sand_stop
t_done
