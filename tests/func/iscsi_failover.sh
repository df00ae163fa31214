#!/usr/bin/env bash
# Path failover without lost or ghost writes. sand runs in its own network
# namespace with two portals (groups A and B, two addresses on one veth);
# the initiator (tests/func/iscsi_mpath.c, libiscsi) runs in a second
# namespace, logs in through both paths and behaves as dm-multipath: path A
# is cut three ways with iptables inside the target's namespace (packets
# dropped, responses dropped, connection reset), the writes sent through A
# are given up after 6 s and retried through B, newer data is written over
# the same blocks through B, A comes back (what its socket still held
# arrives, or is refused), and every block must hold its newest data. The
# target's pings (1 s, 2 misses) must have closed the dead connection
# before the host retried, which is what makes the stale writes harmless.
# Prints the stall and recovery times ("# timing" lines).
. "$(dirname "$0")/lib.sh"

MPATH=$(realpath -m "$BUILD/tests/iscsi-mpath")
[ -x "$MPATH" ] || { skip "failover" "$MPATH not built"; t_done; }
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null || ! command -v iptables >/dev/null; then
	skip "failover" "needs root, ip and iptables (scripts/install-deps.sh)"
	t_done
fi
NS_T=sand-fo-t-$$
NS_I=sand-fo-i-$$
ns_cleanup() {
	ip netns del "$NS_T" 2>/dev/null
	ip netns del "$NS_I" 2>/dev/null
}
trap 't_cleanup; ns_cleanup' EXIT
if ! ip netns add "$NS_T" 2>"$T_TMP/netns.err"; then
	skip "failover" "network namespaces unavailable: $(cat "$T_TMP/netns.err")"
	t_done
fi
ip netns add "$NS_I" || { not_ok "second namespace"; t_done; }
NET=10.213.7
check "veth pair between the namespaces" \
	ip -n "$NS_T" link add fo-t type veth peer name fo-i netns "$NS_I"
check "addresses: initiator .1, portals .2 (A) and .3 (B)" bash -c "
	ip -n $NS_T addr add $NET.2/24 dev fo-t && ip -n $NS_T addr add $NET.3/24 dev fo-t &&
	ip -n $NS_I addr add $NET.1/24 dev fo-i &&
	ip -n $NS_T link set fo-t up && ip -n $NS_T link set lo up &&
	ip -n $NS_I link set fo-i up && ip -n $NS_I link set lo up"
check "iptables works inside the namespace" ip netns exec "$NS_T" iptables -L -n
wait_for ip netns exec "$NS_I" ping -c1 -W1 $NET.3 || diag "no ping answer yet"

# the daemon inside the target's namespace (ip netns exec keeps the pid)
printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$NS_T" "$SAND_BIN" >"$T_TMP/sand-ns"
chmod +x "$T_TMP/sand-ns"
SAND_BIN=$T_TMP/sand-ns
IQN=iqn.2026-11.org.sand:failover
A=$NET.2:3260 B=$NET.3:3260

sand_start --reactors 2 || { not_ok "sand starts in its namespace"; t_done; }
ok "sand starts in its namespace"
check "timeouts: ping after 1 s, closed after 2 misses" \
	volctl iscsi timeouts --nop-interval 1000 --nop-misses 2
check "disk add" volctl disk add d0 "$T_TMP/d0.img" --size 64M
check "target create" volctl iscsi target create $IQN
check "export" volctl export iscsi d0 --target $IQN --lun 0
check "portal add A" volctl iscsi portal add A $A
check "portal add B" volctl iscsi portal add B $B
check "B active/non-optimized" volctl iscsi tpg set B --alua active-nonoptimized

T="ip netns exec $NS_T iptables"
DROP="$T -A INPUT -d $NET.2 -j DROP && $T -A OUTPUT -s $NET.2 -j DROP"
RESP="$T -A OUTPUT -s $NET.2 -j DROP"
RESET="$T -A INPUT -d $NET.2 -p tcp -j REJECT --reject-with tcp-reset"
RESTORE="$T -F INPUT && $T -F OUTPUT"
timeout 400 ip netns exec "$NS_I" "$MPATH" failover -t 6 -H 10 \
	"iscsi://$A/$IQN/0" "iscsi://$B/$IQN/0" \
	"packets-dropped:$DROP:$RESTORE" "responses-dropped:$RESP:$RESTORE" \
	"connection-reset+stpg:$RESET:$RESTORE" >"$T_TMP/fo" 2>"$T_TMP/fo.err"
rc=$?
# the client's own checks, as ours
while IFS= read -r line; do
	case $line in
	"ok - "*) ok "${line#ok - }" ;;
	"not ok - "*) not_ok "${line#not ok - }" ;;
	"# "*) echo "$line" ;;
	esac
done <"$T_TMP/fo"
check "the failover client exits 0 (status $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || sed 's/^/#   /' "$T_TMP/fo.err" | tail -n 20
for m in packets-dropped responses-dropped connection-reset+stpg; do
	check_grep "$m: timings measured" "^# timing ${m/+/\\+} stall_ms [0-9]+" "$T_TMP/fo"
done
n=$(grep -c "no answer to 2 pings, closing" "$SAND_LOG")
check "the target closed the dead connections itself after 2 unanswered pings ($n times)" \
	test "$n" -ge 2

# The control: with the target's pings off, the same cut lets the stale
# write through when the path comes back (the hazard the pings prevent;
# A stays active, as with dm-multipath's default alua handling).
check "timeouts: no pings" volctl iscsi timeouts --nop-interval 0
timeout 200 ip netns exec "$NS_I" "$MPATH" failover -G -t 6 -H 10 \
	"iscsi://$A/$IQN/0" "iscsi://$B/$IQN/0" "no-pings:$DROP:$RESTORE" \
	>"$T_TMP/ctl" 2>"$T_TMP/ctl.err"
while IFS= read -r line; do
	case $line in
	"ok - "*"(control"*) ok "${line#ok - }" ;;
	"not ok - "*"(control"*) not_ok "${line#not ok - }" ;;
	"# timing"*) echo "$line" ;;
	esac
done <"$T_TMP/ctl"
check_grep "the control ran" "control, the target's pings off" "$T_TMP/ctl"
check "sand stops" sand_stop
t_done
