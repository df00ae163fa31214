#!/usr/bin/env bash
# The embedded default: sand on sparse files under ./var, served on
# 127.0.0.1 until Ctrl-C. Run again, it reuses the same disks and data.
#
# Four 1 GiB sparse disks (disk0..disk3), a RAID 5 pool "pool0" over them,
# a 2 GiB thin volume "vol1" in it, exported over NBD as "vol1" on
# 127.0.0.1:10809 and over iSCSI as LUN 0 of iqn.2026-11.io.sand:vol1 on
# 127.0.0.1:3260.
# SAND_VAR, SAND_NBD_ADDR and SAND_ISCSI_ADDR move it elsewhere (the tests do).
set -euo pipefail
BUILD=${1:-build}
VAR=${SAND_VAR:-$PWD/var}
NBD_ADDR=${SAND_NBD_ADDR:-127.0.0.1:10809}
ISCSI_ADDR=${SAND_ISCSI_ADDR:-127.0.0.1:3260}
IQN=iqn.2026-11.io.sand:vol1
SOCK=$VAR/sand.sock
mkdir -p "$VAR/disks"

"$BUILD/sand" --state-dir "$VAR" &
pid=$!
stop() {
	trap - INT TERM
	echo
	echo "stopping sand (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" || true
	exit 0
}
trap stop INT TERM

for _ in $(seq 100); do
	[ -S "$SOCK" ] && break
	kill -0 "$pid" 2>/dev/null || { echo "sand exited at start; see the messages above" >&2; exit 1; }
	sleep 0.1
done
volctl() { "$BUILD/volctl" --socket "$SOCK" "$@"; }

disks=$(volctl --json disk list)
for i in 0 1 2 3; do
	case "$disks" in
	*"\"disk$i\""*) ;;
	*) volctl disk add "disk$i" "$VAR/disks/disk$i.img" --size 1G >/dev/null ;;
	esac
done

pools=$(volctl --json pool list)
case "$pools" in
*'"pool0"'*) ;;
*) volctl pool create pool0 --raid 5 disk0 disk1 disk2 disk3 >/dev/null ;;
esac
vols=$(volctl --json vol list)
case "$vols" in
*'"vol1"'*) ;;
*) volctl vol create vol1 --pool pool0 --size 2G >/dev/null ;;
esac

listeners=$(volctl --json nbd list)
case "$listeners" in
*"$NBD_ADDR"*) ;;
*) volctl nbd listen "$NBD_ADDR" >/dev/null ;;
esac
exports=$(volctl --json export list)
case "$exports" in
*'"vol1"'*) ;;
*) volctl export nbd vol1 --name vol1 >/dev/null ;;
esac

iscsi=$(volctl --json iscsi list)
case "$iscsi" in
*"\"$ISCSI_ADDR\""*) ;;
*) volctl iscsi portal add 1 "$ISCSI_ADDR" >/dev/null ;;
esac
case "$iscsi" in
*"\"$IQN\""*) ;;
*) volctl iscsi target create "$IQN" >/dev/null ;;
esac
case "$iscsi" in
*'"disk": "vol1"'*) ;;
*) volctl export iscsi vol1 --target "$IQN" --lun 0 >/dev/null ;;
esac

echo
volctl status
echo
volctl disk list
echo
volctl pool list
echo
volctl vol list
echo
echo "control:  $BUILD/volctl --socket $SOCK status"
echo "nbd:      nbdinfo nbd://$NBD_ADDR/vol1"
echo "          qemu-img info nbd://$NBD_ADDR/vol1"
echo "          qemu-io -f raw -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' nbd://$NBD_ADDR/vol1"
echo "iscsi:    iscsi-inq iscsi://$ISCSI_ADDR/$IQN/0"
echo "          qemu-img info iscsi://$ISCSI_ADDR/$IQN/0"
echo "serving until Ctrl-C"
wait "$pid"
