#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the migration test's guest into DIR (default build/guest), from
# Debian packages only, and keeps it there (a rerun that finds it is a no-op):
#
#   DIR/vmlinuz	the Debian kernel (linux-image-amd64's image, fetched with
#		`apt-get download` and unpacked with dpkg-deb)
#   DIR/initrd.gz	busybox (busybox-static), the virtio modules from the same
#		package, /init and the writer
#   DIR/mwriter	the writer and verifier (tests/migration/mwriter.c, gcc -static);
#		the same binary runs in the guest and on the host
#
# Set SAND_GUEST_KERNEL=/path/to/linux-image-*.deb to use a package at hand.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${1:-build/guest}
SRC=tests/migration
MODS="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk"
mkdir -p "$DIR"
DIR=$(realpath "$DIR")

# the writer: rebuilt when its source changes
if [ ! -x "$DIR/mwriter" ] || [ "$SRC/mwriter.c" -nt "$DIR/mwriter" ]; then
	echo "build-guest: mwriter"
	gcc -static -pthread -O2 -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wformat=2 \
		-o "$DIR/mwriter.tmp" "$SRC/mwriter.c"
	mv "$DIR/mwriter.tmp" "$DIR/mwriter"
	rm -f "$DIR/initrd.gz"
fi

# the kernel and its virtio modules
if [ ! -f "$DIR/vmlinuz" ] || [ ! -d "$DIR/modules" ]; then
	rm -rf "$DIR/kernel" "$DIR/modules" "$DIR/initrd.gz"
	mkdir -p "$DIR/kernel"
	deb=${SAND_GUEST_KERNEL:-}
	if [ -z "$deb" ]; then
		# linux-image-amd64 is a metapackage: fetch the image it depends on
		pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
			awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
		if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
			apt-get update -qq
			pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
				awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
		fi
		[ -n "$pkg" ] || { echo "build-guest: apt knows no linux-image-amd64" >&2; exit 1; }
		echo "build-guest: apt-get download $pkg"
		# (as root apt warns that it downloads unsandboxed: its stderr is
		# shown only when it fails)
		if ! (cd "$DIR/kernel" && apt-get download -q "$pkg" 2>apt.err); then
			cat "$DIR/kernel/apt.err" >&2
			[ "$(id -u)" -eq 0 ] || exit 1
			echo "build-guest: apt-get update, then again"
			apt-get update -qq
			(cd "$DIR/kernel" && apt-get download -q "$pkg")
		fi
		deb=$(ls "$DIR"/kernel/*.deb | head -n 1)
	fi
	echo "build-guest: unpacking $(basename "$deb")"
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$DIR/kernel" --wildcards \
		'./boot/vmlinuz-*' './lib/modules/*/kernel/drivers/virtio/*' \
		'./lib/modules/*/kernel/drivers/block/virtio_blk.ko*'
	mkdir -p "$DIR/modules"
	for m in $MODS; do
		f=$(find "$DIR/kernel/lib/modules" -name "$m.ko*" | head -n 1)
		[ -n "$f" ] || { echo "build-guest: no $m.ko in $deb" >&2; exit 1; }
		case "$f" in
		*.xz) xz -dc "$f" >"$DIR/modules/$m.ko" ;;
		*.zst) zstd -qdc "$f" >"$DIR/modules/$m.ko" ;;
		*) cp "$f" "$DIR/modules/$m.ko" ;;
		esac
	done
	cp "$DIR"/kernel/boot/vmlinuz-* "$DIR/vmlinuz"
	basename "$DIR"/kernel/boot/vmlinuz-* >"$DIR/kernel-version"
	# the .deb (70 MB) and the rest of the unpacked tree are not needed again
	rm -rf "$DIR/kernel"
fi

# the initramfs: busybox, the modules, /init and the writer
if [ ! -f "$DIR/initrd.gz" ] || [ "$SRC/build-guest.sh" -nt "$DIR/initrd.gz" ]; then
	bb=$(command -v busybox || true)
	linkage=$( [ -z "$bb" ] || ldd "$bb" 2>&1 || true)
	if [ -z "$bb" ] || ! grep -qE 'not a dynamic executable|statically linked' <<<"$linkage"; then
		echo "build-guest: a static busybox is needed (apt-get install busybox-static)" >&2
		exit 1
	fi
	echo "build-guest: initrd.gz"
	root=$DIR/root
	rm -rf "$root"
	mkdir -p "$root/bin" "$root/lib/modules" "$root/dev" "$root/proc" "$root/sys"
	cp "$bb" "$root/bin/busybox"
	cp "$DIR/mwriter" "$root/bin/mwriter"
	cp "$DIR"/modules/*.ko "$root/lib/modules/"
	cat >"$root/init" <<EOF
#!/bin/busybox sh
# the migration test's guest: load virtio, wait for the disk, write to it
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for pass in 1 2 3; do
	for m in $MODS; do
		[ -d /sys/module/\$m ] || insmod /lib/modules/\$m.ko 2>/dev/null
	done
done
i=0
while [ ! -b /dev/vda ] && [ \$i -lt 100 ]; do sleep 0.1; i=\$((i + 1)); done
if [ -b /dev/vda ]; then
	echo "MW guest up: \$(cat /proc/cmdline)"
	mwriter write /dev/vda \${mw_batch:-16} \${mw_writers:-4}
	echo "MW writer exited with \$?"
else
	echo "MW error no /dev/vda"
fi
poweroff -f
EOF
	chmod 755 "$root/init"
	# a newc archive written here, so that /dev/console needs no mknod
	python3 - "$root" "$DIR/initrd.tmp" <<'EOF'
import os, stat, sys, gzip
root, out = sys.argv[1], sys.argv[2]
ino = [1000]
def entry(f, name, mode, data=b"", rdev=(0, 0), nlink=1):
    ino[0] += 1
    hdr = "070701" + "".join("%08X" % v for v in (
        ino[0], mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
        len(name) + 1, 0))
    f.write(hdr.encode() + name.encode() + b"\0")
    f.write(b"\0" * (-(110 + len(name) + 1) % 4))
    f.write(data)
    f.write(b"\0" * (-len(data) % 4))
with gzip.open(out, "wb", compresslevel=6) as f:
    for d, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(d, root)
        if rel != ".":
            entry(f, rel, stat.S_IFDIR | 0o755, nlink=2)
        for n in sorted(files):
            p = os.path.join(d, n)
            name = os.path.normpath(os.path.join(rel, n))
            entry(f, name, stat.S_IFREG | (os.stat(p).st_mode & 0o777),
                  open(p, "rb").read())
    entry(f, "dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    entry(f, "TRAILER!!!", 0)
EOF
	mv "$DIR/initrd.tmp" "$DIR/initrd.gz"
	rm -rf "$root"
fi
echo "build-guest: $DIR: $(cat "$DIR/kernel-version"), initrd $(du -k "$DIR/initrd.gz" | cut -f1) KiB"
