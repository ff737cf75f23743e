#!/bin/sh
# Builds the realistic images for `node dist/bench/store.js blocksize` into bench/out/images/
# (git-ignored; an image already there is kept). Needs root, debootstrap, e2fsprogs and Debian's
# package mirror; takes minutes, so it is not part of `npm test`.
#
#   debian-os.img    ext4, 1 GiB: Debian bookworm, debootstrap --variant=minbase (the OS layer)
#   debian-we.img    a copy of debian-os.img with a web stack installed on top (nginx, PHP-FPM,
#                    MariaDB) — the WE layer as H-GMIG builds it: the OS image plus what the
#                    software adds and changes, the OS's files left where they were
#   debian11-os.img  ext4, 1 GiB: Debian bullseye minbase, another OS for a cross-OS pair
#
# Usage: sudo sh bench/debootstrap-images.sh   (MIRROR=... to use another mirror)
set -eu
cd "$(dirname "$0")/.."
MIRROR=${MIRROR:-http://deb.debian.org/debian}
out=bench/out/images
work=bench/out/rootfs
mkdir -p "$out" "$work"

rootfs() { # suite dir
  [ -x "$2/bin/sh" ] || debootstrap --variant=minbase "$1" "$2" "$MIRROR"
}

ext4_from() { # dir image
  rm -f "$2"
  # -d fills the file system from the directory without mounting it; 4 KiB blocks as a VM disk would have.
  mkfs.ext4 -q -F -b 4096 -L rootfs -d "$1" "$2" 1G
}

if [ ! -f "$out/debian-os.img" ]; then
  rootfs bookworm "$work/bookworm"
  ext4_from "$work/bookworm" "$out/debian-os.img"
fi

if [ ! -f "$out/debian-we.img" ]; then
  we="$work/bookworm-we"
  if [ ! -x "$we/usr/sbin/nginx" ]; then
    rm -rf "$we"
    cp -a "$work/bookworm" "$we"
    # No service may start inside the chroot.
    printf '#!/bin/sh\nexit 101\n' > "$we/usr/sbin/policy-rc.d"
    chmod +x "$we/usr/sbin/policy-rc.d"
    mount -t proc proc "$we/proc"
    trap 'umount "$we/proc" 2>/dev/null || true' EXIT
    chroot "$we" apt-get update
    DEBIAN_FRONTEND=noninteractive chroot "$we" apt-get install -y --no-install-recommends nginx php-fpm php-mysql mariadb-server
    chroot "$we" apt-get clean
    umount "$we/proc"
    trap - EXIT
    rm -f "$we/usr/sbin/policy-rc.d"
  fi
  cp "$out/debian-os.img" "$out/debian-we.img.tmp"
  mnt="$work/mnt"
  mkdir -p "$mnt"
  if mount -o loop "$out/debian-we.img.tmp" "$mnt" 2>/dev/null; then
    # Onto the OS image: -u skips files whose copy there is as new (the OS's own, untouched: they
    # keep their blocks); new and changed files land in free space.
    cp -a -u "$we/." "$mnt/"
    umount "$mnt"
  else
    echo "loop mount unavailable: building debian-we.img from scratch with mkfs.ext4 -d (file placement differs from the OS image)" >&2
    ext4_from "$we" "$out/debian-we.img.tmp"
  fi
  mv "$out/debian-we.img.tmp" "$out/debian-we.img"
fi

if [ ! -f "$out/debian11-os.img" ]; then
  rootfs bullseye "$work/bullseye"
  ext4_from "$work/bullseye" "$out/debian11-os.img"
fi

ls -l "$out"
