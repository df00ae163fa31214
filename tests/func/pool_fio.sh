#!/usr/bin/env bash
# A thin volume on a RAID 5 pool under load: fio random writes at QD 16 on
# 2 connections over NBD, verified with crc32c, while snapshots are taken
# and deleted; then the metadata check is clean and the snapshots are
# gone again. Prints the write IOPS.
. "$(dirname "$0")/lib.sh"

if ! command -v fio >/dev/null || ! fio --enghelp 2>/dev/null | grep -qw nbd; then
	skip "pool under fio" "fio without the nbd engine"
	t_done
fi
port=$(free_port)

sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
for i in 1 2 3 4; do
	volctl disk add d$i "$T_TMP/d$i.img" --size 64M >/dev/null || not_ok "disk add d$i"
done
check "pool create --raid 5 --strip 16K --chunk 64K" \
	volctl pool create p --raid 5 --strip 16K --chunk 64K d1 d2 d3 d4
check_grep "... not a multiple: 3 data disks" "not a multiple of the full stripe" "$T_TMP/check.out"
check "vol create v 128M" volctl vol create v --pool p --size 128M
check "nbd listen" volctl nbd listen 127.0.0.1:$port
check "export nbd v" volctl export nbd v

t_bg "$T_TMP/fio.out" timeout 300 fio --name=rw --rw=randwrite --do_verify=1 --verify_fatal=1 \
	--verify_state_save=0 --ioengine=nbd --uri="nbd://127.0.0.1:$port/v" --bs=4k --iodepth=16 \
	--numjobs=2 --size=16M --offset_increment=32M --verify=crc32c --group_reporting \
	--output-format=json
fio_pid=$T_BG_PID
snaps=0
for i in 1 2 3 4 5 6; do
	sleep 0.3
	t_alive "$fio_pid" || break
	volctl snapshot v s$i >/dev/null 2>&1 && snaps=$((snaps + 1))
done
for i in 1 2 3; do volctl vol delete v@s$i >/dev/null 2>&1; done
wait "$fio_pid"
rc=$?
if [ "$rc" -eq 0 ]; then ok "fio randwrite QD16 x 2 with verify=crc32c, $snaps snapshots taken meanwhile"
else not_ok "fio randwrite with verify (exit $rc)"; tail -n 20 "$T_TMP/fio.out" | sed 's/^/#   /'; fi
python3 - "$T_TMP/fio.out" <<'PY' || not_ok "fio report"
import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index("{"):])["jobs"][0]
print("ok - fio wrote %d and verified %d blocks (write %.0f IOPS over NBD, thin on RAID 5)"
      % (j["write"]["total_ios"], j["read"]["total_ios"], j["write"]["iops"]))
PY
check "some snapshots were taken while fio ran" test "$snaps" -ge 1
check "pool check is clean" volctl pool check p
volctl vol list >"$T_TMP/vols" 2>&1
check_fail "the deleted snapshots are gone" grep -qE "^v@s[123] " "$T_TMP/vols"
check "delete v recursively (unexport first)" volctl unexport nbd v
check "vol delete v --recursive" volctl vol delete v --recursive
volctl pool show p >"$T_TMP/show" 2>&1
check_grep "every chunk is free again" "^data +0B used of" "$T_TMP/show"
check "pool check is clean at the end" volctl pool check p
check "sand stops cleanly" sand_stop
t_done
