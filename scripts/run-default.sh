#!/usr/bin/env bash
# The embedded default: sand on sparse files under ./var, served on
# 127.0.0.1 until Ctrl-C. Run again, it reuses the same disks and data.
#
# Today: four 1 GiB sparse disks (disk0..disk3), and disk0 exported over
# NBD as "vol1" on 127.0.0.1:10809. Pools (RAID 5 over the four disks), the
# thin volume vol1 and the iSCSI export on 127.0.0.1:3260 join this script
# as those features land.
set -euo pipefail
BUILD=${1:-build}
VAR=${SAND_VAR:-$PWD/var}
NBD_ADDR=${SAND_NBD_ADDR:-127.0.0.1:10809}
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

has_nbd=0
if volctl nbd --help >/dev/null 2>&1; then
	has_nbd=1
	listeners=$(volctl --json nbd list 2>/dev/null || true)
	case "$listeners" in
	*"$NBD_ADDR"*) ;;
	*) volctl nbd listen "$NBD_ADDR" >/dev/null ;;
	esac
	exports=$(volctl --json export list 2>/dev/null || true)
	case "$exports" in
	*'"vol1"'*) ;;
	*) volctl export nbd disk0 --name vol1 >/dev/null ;;
	esac
fi

echo
volctl status
echo
volctl disk list
echo
echo "control:  $BUILD/volctl --socket $SOCK status"
if [ "$has_nbd" = 1 ]; then
	echo "nbd:      nbdinfo nbd://$NBD_ADDR/vol1"
	echo "          qemu-img info nbd://$NBD_ADDR/vol1"
	echo "          qemu-io -f raw -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' nbd://$NBD_ADDR/vol1"
fi
echo "serving until Ctrl-C"
wait "$pid"
