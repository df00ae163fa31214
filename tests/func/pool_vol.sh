#!/usr/bin/env bash
# Pools and volumes through volctl: a one-disk pool (--raid 0), figures in
# pool show, vol create/list/show, snapshots and clones, the delete order
# rules, what is refused (and changes nothing), destroy with and without
# --force, and everything back after a restart.
. "$(dirname "$0")/lib.sh"

sand_start --reactors 2 || { not_ok "sand starts"; t_done; }
ok "sand starts"
check "disk add d0" volctl disk add d0 "$T_TMP/d0.img" --size 64M
check "disk add m1 (mem)" volctl disk add m1 --backend mem --size 32M
check "disk add m2 (mem)" volctl disk add m2 --backend mem --size 32M
check "disk add m3 (mem, 4K blocks)" volctl disk add m3 --backend mem --size 32M --block-size 4096

# ---- pool create: refusals first, nothing may change ----
check_rc "--raid is required" 2 volctl pool create p0 d0
check_rc "--raid 4 is not a level" 2 volctl pool create p0 --raid 4 d0
check_rc "no disks" 2 volctl pool create p0 --raid 0
check_rc "an unknown disk" 1 volctl pool create p0 --raid 0 nope
check_grep "... says which" "no disk named 'nope'" "$T_TMP/check.out"
check_rc "raid 5 over 2 disks" 1 volctl pool create p0 --raid 5 m1 m2
check_grep "... says why" "raid 5 takes 3 to 32 member disks, not 2" "$T_TMP/check.out"
check_rc "raid 10 over 3 disks" 1 volctl pool create p0 --raid 10 m1 m2 m3
check_rc "a disk twice" 1 volctl pool create p0 --raid 1 m1 m1
check_rc "a chunk that is not a power of two" 1 volctl pool create p0 --raid 0 --chunk 96K d0
check_rc "a chunk over 1M" 1 volctl pool create p0 --raid 0 --chunk 2M d0
check_rc "a pool name with @" 1 volctl pool create p@0 --raid 0 d0
volctl pool list >"$T_TMP/pools" 2>&1
check_grep "no pool was made by any of that" "^\(none\)$|^NAME[^\n]*$" "$T_TMP/pools"
check_fail "... none at all" grep -q "^p0" "$T_TMP/pools"

# ---- a one-disk pool ----
check "pool create p0 --raid 0 d0" volctl pool create p0 --raid 0 d0
check_grep "the chunk is the full stripe" "chunk 64K is a multiple of the full stripe \(1 x 64K\)" \
	"$T_TMP/check.out"
check_rc "the same name again" 1 volctl pool create p0 --raid 0 m1
check_rc "a disk in a pool cannot be in another" 1 volctl pool create p1 --raid 0 d0
check_grep "... the owner is named" "disk 'd0' is in use by pool 'p0'" "$T_TMP/check.out"
check_rc "a disk in a pool cannot be removed" 1 volctl disk remove d0
check_grep "... the owner is named" "disk 'd0' is in use by 'p0'" "$T_TMP/check.out"
check "pool create p1 --raid 1 m1 m2 --chunk 128K" volctl pool create p1 --raid 1 --chunk 128K m1 m2
volctl pool show p0 >"$T_TMP/show" 2>&1
check_grep "pool show: level" "^level +raid0$" "$T_TMP/show"
check_grep "pool show: strip" "^strip +64K$" "$T_TMP/show"
check_grep "pool show: data" "^data +0B used of 62M$" "$T_TMP/show"
check_grep "pool show: metadata" "^metadata +[0-9.]+K used of 1M$" "$T_TMP/show"
check_grep "pool show: low space threshold" "^low space +below 6.[0-9]M free$" "$T_TMP/show"
check_grep "pool show: member" "^member +d0 slot 0 active$" "$T_TMP/show"
volctl pool show p1 >"$T_TMP/show1" 2>&1
check_grep "pool show p1: chunk 128K" "^chunk +128K$" "$T_TMP/show1"
check_grep "pool show p1: two members" "^member +m2 slot 1 active$" "$T_TMP/show1"

# ---- volumes ----
check_rc "vol create without --size" 2 volctl vol create v1 --pool p0
check_rc "vol create in an unknown pool" 1 volctl vol create v1 --pool nope --size 1G
check_grep "... says which" "no pool named 'nope'" "$T_TMP/check.out"
check_rc "a size that is not a multiple of the block size" 1 \
	volctl vol create v1 --pool p0 --size 1000
check_grep "... says so" "not a positive multiple of the block size 512" "$T_TMP/check.out"
check_rc "a volume named like a snapshot" 1 volctl vol create v@1 --pool p0 --size 1M
check_rc "a volume named like a disk" 1 volctl vol create m3 --pool p0 --size 1M
check "vol create v1 100M" volctl vol create v1 --pool p0 --size 100M
check "vol create v2 1G (overcommit)" volctl vol create v2 --pool p0 --size 1G
check_rc "a duplicate volume" 1 volctl vol create v1 --pool p1 --size 1M
check_grep "... says so" "exists already" "$T_TMP/check.out"
check "snapshot v1 s1" volctl snapshot v1 s1
check "snapshot v1 (default name)" volctl snapshot v1
check_rc "a snapshot of a snapshot" 1 volctl snapshot v1@s1 x
check_rc "a snapshot of an unknown volume" 1 volctl snapshot nope
check_rc "a duplicate snapshot" 1 volctl snapshot v1 s1
check "clone v1@s1 c1" volctl clone v1@s1 c1
check_rc "a clone named like a snapshot" 1 volctl clone v1@s1 c@2
check_rc "a snapshot cannot be resized" 1 volctl vol resize v1@s1 200M
check_grep "... and says so" "'v1@s1' is a snapshot" "$T_TMP/check.out"
check_rc "rollback to a volume, not a snapshot" 1 volctl rollback v1
check_rc "rollback to an unknown snapshot" 1 volctl rollback v1@nope
check "rollback v1@s1" volctl rollback v1@s1
check_grep "... says so" "rolled back to v1@s1" "$T_TMP/check.out"
check "v1 is still there" volctl vol show v1
check_grep "... writable" "^readonly +no$" "$T_TMP/check.out"
check "v1@s1 is still there" volctl vol show v1@s1
volctl vol list >"$T_TMP/vols" 2>&1
check_grep "vol list: v1" "^v1 +p0 +100M +0B +no +- +20[0-9]{6}T[0-9]{6}Z" "$T_TMP/vols"
check_grep "vol list: v1@s1" "^v1@s1 +p0 +100M +0B +yes +v1 " "$T_TMP/vols"
check_grep "vol list: the timestamped snapshot" "^v1@20[0-9]{6}T[0-9]{6}Z +p0 +100M .* yes +v1 " \
	"$T_TMP/vols"
check_grep "vol list: c1" "^c1 +p0 +100M +0B +no +v1@s1 " "$T_TMP/vols"
check "vol show v1@s1" volctl vol show v1@s1
check_grep "vol show: read-only" "^readonly +yes$" "$T_TMP/check.out"
check_grep "vol show: origin" "^origin +v1$" "$T_TMP/check.out"
check_rc "vol show of an unknown volume" 1 volctl vol show nope
volctl pool show p0 >"$T_TMP/show" 2>&1
check_grep "pool show: provisioned 100M x 4 + 1G = 1424M" "^provisioned +1\.4G$" "$T_TMP/show"
check_grep "pool show: overcommit" "^overcommit +22\.9[0-9]$" "$T_TMP/show"
check_grep "pool show: volumes" "^volumes +5$" "$T_TMP/show"

# ---- delete order ----
check_rc "a volume with snapshots needs --recursive" 1 volctl vol delete v1
check_grep "... says so" "has 2 snapshots" "$T_TMP/check.out"
check_rc "a pool with volumes is not destroyed" 1 volctl pool destroy p0
check_grep "... says so" "pool 'p0' has 5 volumes" "$T_TMP/check.out"
check "delete a snapshot" volctl vol delete v1@s1
check "the clone outlives its snapshot" volctl vol show c1
check "delete v1 --recursive" volctl vol delete v1 --recursive
check_grep "... its snapshot went with it" "^v1@20[0-9]{6}T[0-9]{6}Z deleted" "$T_TMP/check.out"
check_rc "v1 is gone" 1 volctl vol show v1
check_rc "deleting it again" 1 volctl vol delete v1
check "snapshot v2 keep" volctl snapshot v2 keep
check "pool check p0" volctl pool check p0
check_grep "... clean" "^pool p0: clean: 3 volumes" "$T_TMP/check.out"
check_rc "pool check of an unknown pool" 1 volctl pool check nope
check "sand stops cleanly" sand_stop

# ---- restart ----
sand_start --reactors 2 || { not_ok "sand starts again"; t_done; }
ok "sand starts again"
volctl pool list >"$T_TMP/pools" 2>&1
check_grep "p0 is back" "^p0 +raid0 +1 +64K +62M +0B +3 +online" "$T_TMP/pools"
check_grep "p1 (memory disks) did not come back, and says why" "^p1 +raid1 .* failed: assembling" \
	"$T_TMP/pools"
volctl vol list >"$T_TMP/vols" 2>&1
check_grep "c1 is back with its origin" "^c1 +p0 +100M +0B +no +v1@s1 " "$T_TMP/vols"
check_grep "v2 is back" "^v2 +p0 +1G " "$T_TMP/vols"
check_grep "v2@keep is back" "^v2@keep +p0 +1G +0B +yes +v2 " "$T_TMP/vols"
check_rc "the failed pool keeps its disks (another pool on them is refused)" 1 \
	volctl pool create p2 --raid 0 m1
check "the failed pool can be destroyed" volctl pool destroy p1
check "pool destroy --force" volctl pool destroy p0 --force
check_rc "its volumes are gone" 1 volctl vol show v2
check "its disk is free again" volctl disk remove d0
check "disk add m4 (mem)" volctl disk add m4 --backend mem --size 32M
check_rc "a strip under 4K is refused" 1 \
	volctl pool create p2 --raid 6 --strip 2K m1 m2 m3 m4
check_rc "... and changes nothing" 1 volctl pool show p2
check "a raid 6 pool on the memory disks" volctl pool create p2 --raid 6 m1 m2 m3 m4
check_grep "... the chunk is the full stripe" "chunk 128K is a multiple of the full stripe \(2 x 64K\)" \
	"$T_TMP/check.out"
volctl pool show p2 >"$T_TMP/show2" 2>&1
check_grep "pool show p2: chunk 128K" "^chunk +128K$" "$T_TMP/show2"
check_grep "pool show p2: raid6" "^level +raid6$" "$T_TMP/show2"
check_grep "pool show p2: m4 in slot 3" "^member +m4 slot 3 active$" "$T_TMP/show2"
check_rc "a volume size that is not a multiple of 4K" 1 volctl vol create w --pool p2 --size 6K
check "a volume of 8K" volctl vol create w --pool p2 --size 8K
check "vol show w" volctl vol show w
check_grep "... 4K blocks" "^block_size +4096$" "$T_TMP/check.out"
check "sand stops cleanly again" sand_stop
t_done
