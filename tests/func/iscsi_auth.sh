#!/usr/bin/env bash
# CHAP and initiator ACLs of the iSCSI target in the daemon, with real
# initiators (libiscsi's iscsi-ls/iscsi-inq, qemu-io): one-way and mutual
# CHAP, wrong secret/user and no credentials refused, ACL admit/deny,
# discovery filtered by ACL, secrets never in volctl output nor the log,
# the remaining verbs (unexport, target delete, portal remove, sessions),
# and all of it back after a restart.
. "$(dirname "$0")/lib.sh"

for tool in iscsi-ls iscsi-inq qemu-io; do
	if ! command -v $tool >/dev/null; then
		skip "iscsi auth" "$tool not installed"
		t_done
	fi
done
IQN=iqn.2026-11.org.sand:auth
IQN2=iqn.2026-11.org.sand:open
INI1=iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test
INI2=iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2
SECRET=s3cr3t-Xyzzy-2718
MSECRET=m0tu4l-Plugh-3141
DSECRET=d1sc0v-Frotz-1618
port=$(free_port)
P=127.0.0.1:$port

sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
check "setup: disks" sh -c "'$VOLCTL_BIN' --socket '$SAND_SOCK' disk add d0 '$T_TMP/d0.img' --size 16M &&
	'$VOLCTL_BIN' --socket '$SAND_SOCK' disk add d1 --backend mem --size 8M"
check "setup: targets" sh -c "'$VOLCTL_BIN' --socket '$SAND_SOCK' iscsi target create $IQN &&
	'$VOLCTL_BIN' --socket '$SAND_SOCK' iscsi target create $IQN2"
check "setup: portal" volctl iscsi portal add 1 $P
check "setup: exports" sh -c "'$VOLCTL_BIN' --socket '$SAND_SOCK' export iscsi d0 --target $IQN --lun 0 &&
	'$VOLCTL_BIN' --socket '$SAND_SOCK' export iscsi d1 --target $IQN2 --lun 0"

# inq URL [INITIATOR]: a standard INQUIRY through libiscsi
inq() {
	local ini=${2:-$INI1}
	timeout 10 iscsi-inq -i "$ini" "$1" >"$T_TMP/inq" 2>&1
	local rc=$?
	cat "$T_TMP/inq"
	[ $rc -eq 0 ] && grep -q "Peripheral Device Type" "$T_TMP/inq"
}
check "no CHAP configured: a login without credentials works" inq "iscsi://$P/$IQN/0"

# ---- one-way CHAP
check "auth set --chap" volctl iscsi auth set $IQN --chap alice:$SECRET
check_rc "auth set without --chap is a usage error" 2 volctl iscsi auth set $IQN
check_rc "--chap without a colon is a usage error" 2 volctl iscsi auth set $IQN --chap alice
check_rc "auth set on an unknown target is refused" 1 \
	volctl iscsi auth set iqn.2026-11.org.sand:none --chap a:bcdefghijklmn
check "CHAP: the right secret logs in (iscsi-inq)" inq "iscsi://alice%$SECRET@$P/$IQN/0"
check_fail "CHAP: no credentials are refused" inq "iscsi://$P/$IQN/0"
check_grep "... with status 02/01" "Authentication failure\(513\)" "$T_TMP/inq"
check_fail "CHAP: a wrong secret is refused" inq "iscsi://alice%wrong-secret-000@$P/$IQN/0"
check_grep "... with status 02/01 too" "Authentication failure\(513\)" "$T_TMP/inq"
check_fail "CHAP: a wrong user is refused" inq "iscsi://mallory%$SECRET@$P/$IQN/0"
check "CHAP: the other target needs none" inq "iscsi://$P/$IQN2/0"
check_grep "the refusals are logged as authentication failures" \
	"authentication refused for $INI1" "$SAND_LOG"
qio() {
	timeout 60 qemu-io "$@" >"$T_TMP/qio" 2>&1 || { cat "$T_TMP/qio"; return 1; }
	cat "$T_TMP/qio"
	! grep -qiE "error|fail|denied|not permitted" "$T_TMP/qio"
}
check "CHAP: qemu-io with password-secret writes and reads" qio \
	--object secret,id=sec0,data=$SECRET --image-opts \
	"driver=iscsi,transport=tcp,portal=$P,target=$IQN,lun=0,user=alice,password-secret=sec0" \
	-c 'write -P 0x5a 0 1M' -c 'read -P 0x5a 0 1M'
check_fail "CHAP: qemu-io with a wrong secret fails" qio \
	--object secret,id=sec0,data=nope-nope-nope --image-opts \
	"driver=iscsi,transport=tcp,portal=$P,target=$IQN,lun=0,user=alice,password-secret=sec0" \
	-c 'read 0 4k'
check "CHAP: qemu-io with the URL form" qio -f raw "iscsi://alice%$SECRET@$P/$IQN/0" \
	-r -c 'read -P 0x5a 0 1M'

# ---- mutual CHAP
check_rc "a mutual secret equal to the initiator's is refused" 1 \
	volctl iscsi auth set $IQN --chap alice:$SECRET --mutual tgt:$SECRET
check "auth set --mutual" volctl iscsi auth set $IQN --chap alice:$SECRET --mutual tgt:$MSECRET
check "mutual CHAP: the target proves itself" \
	inq "iscsi://alice%$SECRET@$P/$IQN/0?target_user=tgt&target_password=$MSECRET"
check_fail "mutual CHAP: the initiator refuses a target with another secret" \
	inq "iscsi://alice%$SECRET@$P/$IQN/0?target_user=tgt&target_password=other-secret-1"
check "mutual set, one-way login still works" inq "iscsi://alice%$SECRET@$P/$IQN/0"

# ---- discovery CHAP
check "auth set --discovery" volctl iscsi auth set --discovery --chap disco:$DSECRET
check_fail "discovery without credentials is refused" \
	timeout 10 iscsi-ls -i $INI1 "iscsi://$P"
check_grep "logged as a discovery authentication failure" \
	"authentication refused for $INI1 in discovery" "$SAND_LOG"
timeout 10 iscsi-ls -i $INI1 "iscsi://disco%$DSECRET@$P" >"$T_TMP/ls" 2>&1
check_grep "discovery with CHAP lists the targets" "Target:$IQN2 Portal:$P,1" "$T_TMP/ls"
check "auth clear --discovery" volctl iscsi auth clear --discovery
timeout 10 iscsi-ls -i $INI1 "iscsi://$P" >"$T_TMP/ls" 2>&1
check_grep "discovery without CHAP again" "Target:$IQN Portal:$P,1" "$T_TMP/ls"

# ---- ACLs
check "acl add" volctl iscsi acl add $IQN2 $INI1
check_rc "the same initiator twice is refused" 1 volctl iscsi acl add $IQN2 $INI1
check_rc "a bad initiator name is refused" 1 volctl iscsi acl add $IQN2 not-a-name
check "ACL: a listed initiator logs in" inq "iscsi://$P/$IQN2/0" $INI1
check_fail "ACL: an initiator not listed is refused" inq "iscsi://$P/$IQN2/0" $INI2
check_grep "... with status 02/02" "\(514\)" "$T_TMP/inq"
check_grep "the refusal is an authorization failure" \
	"authorization refused for $INI2 to $IQN2" "$SAND_LOG"
timeout 10 iscsi-ls -i $INI2 "iscsi://$P" >"$T_TMP/ls2" 2>&1
check_grep "discovery: the other target is still listed" "Target:$IQN Portal" "$T_TMP/ls2"
check_fail "discovery hides the target from an initiator not listed" \
	grep -q "Target:$IQN2 " "$T_TMP/ls2"
timeout 10 iscsi-ls -i $INI1 "iscsi://$P" >"$T_TMP/ls1" 2>&1
check_grep "discovery shows it to a listed initiator" "Target:$IQN2 Portal:$P,1" "$T_TMP/ls1"

# ---- what volctl shows
volctl iscsi list >"$T_TMP/list" 2>&1
volctl --json iscsi list >"$T_TMP/listj" 2>&1
check_grep "iscsi list shows the CHAP user" "chap user alice, mutual as tgt" "$T_TMP/list"
check_grep "iscsi list shows the ACL" "admits $INI1" "$T_TMP/list"
check_grep "iscsi list --json shows the CHAP user" '"user": "alice"' "$T_TMP/listj"
# a session to look at while the checks run
timeout 30 qemu-io -f raw "iscsi://alice%$SECRET@$P/$IQN/0" -r -c 'sleep 20000' \
	>/dev/null 2>&1 &
QPID=$!
T_PIDS+=("$QPID")
check "a session is up" wait_for sh -c "'$VOLCTL_BIN' --socket '$SAND_SOCK' iscsi sessions | grep -q 'to $IQN'"
volctl iscsi sessions >"$T_TMP/sess" 2>&1
volctl --json iscsi sessions >"$T_TMP/sessj" 2>&1
cat "$T_TMP/sess"
check_grep "iscsi sessions: initiator and target" "session iqn.*normal to $IQN" "$T_TMP/sess"
check_grep "iscsi sessions: the connection and portal" "connection 0 from 127.0.0.1:[0-9]+ to portal $P" "$T_TMP/sess"
check_grep "iscsi sessions: negotiated parameters" "params: digests None/None, mrdsl" "$T_TMP/sess"
check_grep "iscsi sessions --json" '"max_burst":' "$T_TMP/sessj"
check "unexport with a session open works (doc/iscsi.md, LUNs under live sessions)" \
	volctl unexport iscsi $IQN --lun 0
check "... and export again under it" volctl export iscsi d0 --target $IQN --lun 0
t_kill $QPID

check "sand stops cleanly" sand_stop
ls -l "$SAND_DIR" >"$T_TMP/perm"
check_grep "the state file is mode 0600" "^-rw------- .*sand.json" "$T_TMP/perm"

sand_start --reactors 2 || { not_ok "sand starts again"; t_done; }
ok "sand starts again"
check "after restart: CHAP still required, right secret works" \
	inq "iscsi://alice%$SECRET@$P/$IQN/0?target_user=tgt&target_password=$MSECRET"
check_fail "after restart: no credentials refused" inq "iscsi://$P/$IQN/0"
check_fail "after restart: ACL still denies" inq "iscsi://$P/$IQN2/0" $INI2
check "after restart: ACL still admits" inq "iscsi://$P/$IQN2/0" $INI1
check "after restart: the data is there" qio -f raw "iscsi://alice%$SECRET@$P/$IQN/0" \
	-r -c 'read -P 0x5a 0 1M'

# ---- a state file whose CHAP settings are damaged: the target stays down
check "sand stops (to damage the state)" sand_stop
python3 - "$SAND_DIR/sand.json" <<'PY' && ok "state damaged: the target's secret removed" || not_ok "state damaged"
import json, sys
p = sys.argv[1]
s = json.load(open(p))
for t in s["iscsi"]["targets"]:
    if "auth" in t:
        del t["auth"]["secret"]
json.dump(s, open(p, "w"))
PY
sand_start --reactors 2 || { not_ok "sand starts with damaged state"; t_done; }
ok "sand starts with damaged state"
volctl iscsi list >"$T_TMP/listd" 2>&1
check_grep "the target is listed as failed" "^target $IQN failed" "$T_TMP/listd"
check_grep "so is its LUN" "lun 0 disk d0 failed" "$T_TMP/listd"
check_fail "and it does not open without CHAP" inq "iscsi://$P/$IQN/0"
check "the other target is up" inq "iscsi://$P/$IQN2/0" $INI1
check "auth set repairs the state file" volctl iscsi auth set $IQN --chap alice:$SECRET \
	--mutual tgt:$MSECRET
check "repaired: the target is up at once" inq "iscsi://alice%$SECRET@$P/$IQN/0"
volctl iscsi list >"$T_TMP/listr" 2>&1
check_grep "repaired: its LUN is up" "lun 0 disk d0 up" "$T_TMP/listr"
check "sand stops (repaired)" sand_stop
sand_start --reactors 2 || { not_ok "sand starts repaired"; t_done; }
ok "sand starts repaired"
check "repaired: CHAP required and working again" inq "iscsi://alice%$SECRET@$P/$IQN/0"
check_fail "repaired: no credentials refused" inq "iscsi://$P/$IQN/0"

# ---- removal verbs
check "acl remove" volctl iscsi acl remove $IQN2 $INI1
check_rc "acl remove of one not listed" 1 volctl iscsi acl remove $IQN2 $INI1
check "no ACL: every initiator again" inq "iscsi://$P/$IQN2/0" $INI2
check "auth clear" volctl iscsi auth clear $IQN
check "no CHAP: a login without credentials works" inq "iscsi://$P/$IQN/0"
check_rc "target delete with LUNs is refused" 1 volctl iscsi target delete $IQN
check_rc "unexport without --lun is a usage error" 2 volctl unexport iscsi $IQN
check "unexport iscsi" volctl unexport iscsi $IQN --lun 0
check_rc "unexport twice is refused" 1 volctl unexport iscsi $IQN --lun 0
check "the disk is free again" volctl disk remove d0
check "target delete (no LUNs)" volctl iscsi target delete $IQN
timeout 30 qemu-io -f raw "iscsi://$P/$IQN2/0" -r -c 'sleep 20000' >/dev/null 2>&1 &
QPID=$!
T_PIDS+=("$QPID")
check "a session to the other target is up" wait_for sh -c \
	"'$VOLCTL_BIN' --socket '$SAND_SOCK' iscsi sessions | grep -q 'to $IQN2'"
check "unexport with a session works" volctl unexport iscsi $IQN2 --lun 0
check "... export again under it" volctl export iscsi d1 --target $IQN2 --lun 0
check "target delete --force (a LUN and a session)" volctl iscsi target delete $IQN2 --force
volctl iscsi sessions >"$T_TMP/sess2" 2>&1
check_grep "its session is gone" "no sessions" "$T_TMP/sess2"
t_kill $QPID
check "portal remove" volctl iscsi portal remove $P
check_rc "portal remove twice is refused" 1 volctl iscsi portal remove $P
check_fail "nothing listens after portal remove" timeout 5 iscsi-ls "iscsi://$P"
volctl iscsi list >"$T_TMP/list2" 2>&1
check_fail "iscsi list is empty of targets" grep -q "^target" "$T_TMP/list2"
check "sand stops cleanly again" sand_stop
sand_start --reactors 2 || { not_ok "sand starts a third time"; t_done; }
volctl iscsi list >"$T_TMP/list3" 2>&1
check_fail "the removals persisted" grep -qE "^(target|portal)" "$T_TMP/list3"
check "sand stops cleanly a third time" sand_stop

# ---- secrets never shown
for f in "$T_TMP"/list "$T_TMP"/listj "$T_TMP"/listd "$T_TMP"/listr "$T_TMP"/sess \
	"$T_TMP"/sessj "$SAND_LOG"; do
	check_fail "no secret in $(basename "$f")" grep -qE "$SECRET|$MSECRET|$DSECRET" "$f"
done
t_done
