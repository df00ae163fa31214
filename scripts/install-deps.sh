#!/bin/sh
# Installs the Debian 12 packages sand needs to build, run and test.
# Used by README's first command and by .ci/run.
set -eu
PKGS="build-essential pkg-config clang libclang-rt-14-dev \
 liburing-dev libaio-dev libisal-dev libiscsi-dev libiscsi-bin check \
 libjansson-dev libgnutls28-dev gnutls-bin uuid-dev \
 qemu-utils qemu-block-extra libnbd-bin fio tgt nbdkit \
 iproute2 iptables e2fsprogs fuse3 python3"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
