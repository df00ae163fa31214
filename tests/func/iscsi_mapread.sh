#!/usr/bin/env bash
# Mapped READs over iSCSI (blk_map_read; proto/scsi/map_read.c and the
# Data-In path of daemon/iscsi/conn.c): large reads of a file disk on tmpfs
# and of a one-disk pool go from the backing file's mapping into sendmsg.
#  - the bytes: qemu-img convert reads back exactly the file (and the daemon
#    maps it: the path was taken), with and without a header digest (a
#    data digest turns mapped reads off: the digest would read the mapping);
#  - the backing file truncated under the LUN: reads past the new end get
#    CHECK CONDITION (qemu-io: an I/O error), never SIGBUS; the daemon
#    serves on; a reader looping while the file is cut and regrown: the
#    daemon survives.
. "$(dirname "$0")/lib.sh"

for tool in qemu-io qemu-img; do
	if ! command -v $tool >/dev/null; then
		skip "iscsi mapped reads" "$tool not installed"
		t_done
	fi
done
if ! SHM=$(mktemp -d /dev/shm/sand-iscsi_mapread.XXXXXX); then
	skip "iscsi mapped reads" "no /dev/shm"
	t_done
fi
trap 't_cleanup; rm -rf "$SHM"' EXIT
port=$(free_port)
IQN=iqn.2026-11.org.sand:mapread
URL=iscsi://127.0.0.1:$port/$IQN

qio() {
	timeout 60 qemu-io -f raw "$@" >"$T_TMP/qio" 2>&1 || { cat "$T_TMP/qio"; return 1; }
	cat "$T_TMP/qio"
	! grep -qiE "error|fail|pattern" "$T_TMP/qio"
}

head -c 32M /dev/urandom >"$SHM/f.img"
sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
check "disk add f (tmpfs file)" volctl disk add f "$SHM/f.img"
check "iscsi target create" volctl iscsi target create $IQN
check "iscsi portal add" volctl iscsi portal add 1 127.0.0.1:$port
check "export f as lun 0" volctl export iscsi f --target $IQN --lun 0
check "qemu-img convert reads the LUN" timeout 60 qemu-img convert -f raw -O raw "$URL/0" "$T_TMP/copy.img"
check "... exactly the file" cmp "$SHM/f.img" "$T_TMP/copy.img"
check "the backing file is mapped (the one-copy path ran)" grep -q "$SHM/f.img" /proc/$SAND_PID/maps
check "a header digest" timeout 60 qemu-img convert -O raw \
	--image-opts "driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=127.0.0.1:$port,file.target=$IQN,file.lun=0,file.header-digest=crc32c" \
	"$T_TMP/copy2.img"
check "... the same bytes" cmp "$SHM/f.img" "$T_TMP/copy2.img"

# a one-disk pool (RAID 0, one member) and a thin volume on it (thin
# volumes keep the bio path over iSCSI, their maps pin chunks)
check "disk add p (tmpfs file)" volctl disk add p "$SHM/p.img" --size 64M
check "pool create --raid 0 (one disk)" volctl pool create tp --raid 0 p
check "vol create v" volctl vol create v --pool tp --size 16M
check "export v as lun 1" volctl export iscsi v --target $IQN --lun 1
check "write patterns" qio "$URL/1" -c 'write -P 0x31 0 4M' -c 'write -P 0x32 8M 2M' -c flush
check "read them back (and the hole between)" qio "$URL/1" -r -c 'read -P 0x31 0 4M' \
	-c 'read -P 0x32 8M 2M' -c 'read -P 0 4M 4M' -c 'read -P 0 10M 6M'

# The backing file truncated under the LUN: past the new end the kernel
# cannot read the mapping (EFAULT from sendmsg): CHECK CONDITION.
check "truncate the file to 16M" truncate -s 16M "$SHM/f.img"
check_fail "a read past the new end fails" qio "$URL/0" -r -c 'read 20M 1M'
check_grep "... with an I/O error" "Input/output error" "$T_TMP/check.out"
check_fail "a read across the new end fails" qio "$URL/0" -r -c 'read 15M 2M'
check "reads within the file go on" timeout 60 qemu-img dd -f raw -O raw if="$URL/0" \
	of="$T_TMP/part.img" bs=1M count=16
check "... and are right" cmp "$SHM/f.img" "$T_TMP/part.img"
check "the daemon is alive" t_alive "$SAND_PID"
check "grow the file back to 32M" truncate -s 32M "$SHM/f.img"
check "past the old end reads zeros now" qio "$URL/0" -r -c 'read -P 0 16M 16M'
check "the first 16M read right" qio "$URL/0" -r -c 'read 0 16M'

cut_under_reads "$URL/0" "$SHM/f.img"
check "still serving" qio "$URL/0" -r -c 'read 0 32M'
check "sand stops cleanly" sand_stop
t_done
