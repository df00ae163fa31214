#!/usr/bin/env bash
# Thin volumes and snapshots over NBD: a RAID 1 pool, a volume exported and
# written with qemu-io, a snapshot exported read-only shows the old data,
# the volume unexported and rolled back to the snapshot, exported again; a
# restart brings pools, volumes, exports and data back; SIGTERM while a
# writer runs commits every acknowledged write.
. "$(dirname "$0")/lib.sh"

for tool in qemu-io nbdinfo; do
	if ! command -v $tool >/dev/null; then
		skip "pools over nbd" "$tool not installed"
		t_done
	fi
done
port=$(free_port)
URL=nbd://127.0.0.1:$port

qio() {
	timeout 60 qemu-io -f raw "$@" >"$T_TMP/qio" 2>&1 || { cat "$T_TMP/qio"; return 1; }
	cat "$T_TMP/qio"
	! grep -qiE "error|fail|read-only|protected|denied|not permitted|pattern" "$T_TMP/qio"
}

sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
check "disk add a" volctl disk add a "$T_TMP/a.img" --size 40M
check "disk add b" volctl disk add b "$T_TMP/b.img" --size 40M
check "pool create --raid 1" volctl pool create m --raid 1 a b
check "vol create v" volctl vol create v --pool m --size 64M
check "nbd listen" volctl nbd listen 127.0.0.1:$port
check "export nbd v" volctl export nbd v
check "nbdinfo sees 64M" timeout 30 nbdinfo --size "$URL/v"
check_grep "... exactly" "^67108864$" "$T_TMP/check.out"
check "write the old pattern" qio "$URL/v" -c 'write -P 0x31 0 2M' -c flush
check "snapshot v s" volctl snapshot v s
check "write the new pattern" qio "$URL/v" -c 'write -P 0x32 0 1M' -c flush
check "export nbd v@s as snap" volctl export nbd v@s --name snap
check "the snapshot reads the old pattern" qio "$URL/snap" -r -c 'read -P 0x31 0 2M'
check_fail "the snapshot export is read-only" qio "$URL/snap" -c 'write -P 1 0 4k'
check "the volume reads the new and the old" qio "$URL/v" -r -c 'read -P 0x32 0 1M' \
	-c 'read -P 0x31 1M 1M'
check_rc "an exported volume cannot be rolled back" 1 volctl rollback v@s
check_rc "an exported volume cannot be deleted" 1 volctl vol delete v --recursive
check "unexport nbd v" volctl unexport nbd v
check "rollback v@s" volctl rollback v@s
check "export nbd v again" volctl export nbd v
check "v reads the old pattern again" qio "$URL/v" -r -c 'read -P 0x31 0 2M'
check "sand stops cleanly" sand_stop

sand_start --reactors 2 || { not_ok "sand starts again"; t_done; }
ok "sand starts again"
check "both exports are back" volctl export list
check_grep "... v" "v +v +64M" "$T_TMP/check.out"
check_grep "... snap" "snap +v@s +64M" "$T_TMP/check.out"
check "v's data is back" qio "$URL/v" -r -c 'read -P 0x31 0 2M'
check "the snapshot's data is back" qio "$URL/snap" -r -c 'read -P 0x31 0 2M'

# SIGTERM while qemu-io writes: what was acknowledged (and flushed) before
# the daemon stopped is there after it starts again.
t_bg "$T_TMP/writer.log" timeout 60 qemu-io -f raw "$URL/v" -c 'write -P 0x41 4M 8M' -c flush \
	-c 'write -P 0x42 16M 32M'
writer=$T_BG_PID
wait_for grep -q "wrote 8388608/8388608" "$T_TMP/writer.log" || diag "the writer did not get far"
sleep 0.2
check "sand stops cleanly with a writer" sand_stop
wait "$writer" 2>/dev/null
sand_start --reactors 2 || { not_ok "sand starts after the writer"; t_done; }
ok "sand starts after the writer"
check "the flushed write is there" qio "$URL/v" -r -c 'read -P 0x41 4M 8M'
check "pool check" volctl pool check m
check "sand stops cleanly at the end" sand_stop
t_done
