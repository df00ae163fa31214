#!/usr/bin/env bash
# fio's nbd engine: random writes at QD 32 on 4 jobs (one connection each),
# verified with crc32c; then a read-back verify pass on fresh connections.
. "$(dirname "$0")/nbd_common.inc"

if ! need fio || ! fio --enghelp 2>/dev/null | grep -qw nbd; then
	skip "fio nbd engine" "fio without the nbd engine"
	finish
fi
start_server main -r 2 -l 127.0.0.1:0 -e disk=mem:256M -e file=file:$TDIR/f.img,size=256M \
	-e flaky=flaky:256M ||
	{ not_ok "server start"; finish; }
ok "server started on port $PORT"

for EXP in disk file flaky; do
echo "# export $EXP"
JOB=(--verify_state_save=0 --ioengine=nbd --uri="nbd://127.0.0.1:$PORT/$EXP" --bs=4k --iodepth=32 --numjobs=4
     --size=32M --offset_increment=64M --verify=crc32c --group_reporting
     --output-format=json)
T0=$(awk '{print $14 + $15}' /proc/$SPID/stat)
if TMO=300 T fio --name=randwrite --rw=randwrite --do_verify=1 --verify_fatal=1 "${JOB[@]}" \
	>"$TDIR/fio.json" 2>"$TDIR/fio.err"; then
	ok "fio randwrite QD32 x 4 jobs, verify=crc32c ($EXP)"
else
	not_ok "fio randwrite QD32 x 4 jobs, verify=crc32c ($EXP)"
	sed 's/^/# /' "$TDIR/fio.err" | tail -n 20
fi
T1=$(awk '{print $14 + $15}' /proc/$SPID/stat)
python3 - "$TDIR/fio.json" "$((T1 - T0))" "$(getconf CLK_TCK)" "$EXP" <<'PY' || not_ok "fio report"
import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index("{"):])["jobs"][0]   # the engine may print before the JSON
w, r = j["write"], j["read"]
ios = w["total_ios"] + r["total_ios"]
assert j["error"] == 0 and w["total_ios"] == 4 * 8192, (j["error"], w["total_ios"])
assert r["total_ios"] == 4 * 8192, r["total_ios"]
cpu = int(sys.argv[2]) / int(sys.argv[3])
print("ok - fio wrote %d and verified %d blocks on %s (write %.0f IOPS, server cpu %.1f us/io)"
      % (w["total_ios"], r["total_ios"], sys.argv[4], w["iops"], cpu * 1e6 / ios))
PY
# A separate pass: read back what the first pass wrote, on new connections.
if TMO=300 T fio --name=randwrite --rw=randwrite --verify_only --verify_fatal=1 "${JOB[@]}" \
	>"$TDIR/fio2.json" 2>"$TDIR/fio2.err"; then
	ok "fio verify_only pass on new connections ($EXP)"
else
	not_ok "fio verify_only pass on new connections ($EXP)"
	sed 's/^/# /' "$TDIR/fio2.err" | tail -n 20
fi
done
check "server still up" server_alive
check "server exits 0 on SIGTERM, leak-free" stop_server
check "the flaky device refused some I/O (retry queue exercised)" \
	grep -qE 'flaky flaky: [1-9][0-9]* of [0-9]+ submissions refused' "$SERR"
grep flaky "$SERR" | sed 's/^/# /'
finish
