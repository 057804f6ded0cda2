#!/bin/bash
# Install what snapfs needs to build, test and run on Debian 12 (as root);
# `install-deps.sh bench` adds what tests/bench/run uses (its comparisons, and
# XFS for the native benchmark).
# Safe to run again: apt-get skips what is there.
set -euo pipefail

packages=(
	# build
	build-essential autoconf automake libtool pkg-config
	libfuse3-dev libvirt-dev libblkid-dev libxml2-dev libcmocka-dev zlib1g-dev libzstd-dev libnbd-dev librbd-dev librados-dev
	# run
	fuse3 lvm2 libvirt-clients
	# tests: disk tools, a real libvirtd, valgrind
	fdisk gdisk e2fsprogs attr valgrind libvirt-daemon libvirt-daemon-driver-qemu python3
	# tests: disks in files on XFS and btrfs, qcow2 images (reflink-*.sh)
	xfsprogs btrfs-progs qemu-utils
	rsync borgbackup restic # tests: backup clients (backup-clients*.sh)
	fuse2fs # tests: a guest LV's ext4 browsed in userspace (guest-lvm-files.sh)
	# tests: running guests through libvirt's backup API (backup-api-*.sh)
	libnbd-bin qemu-block-extra
	# tests: the holes of thin LVs (thin-holes.sh), and snapfs's own use
	thin-provisioning-tools
	ceph-mon ceph-mgr ceph-osd ceph-common # tests: a one-host Ceph cluster (lib-ceph.sh, rbd*.sh)
	# tests: systemd-analyze and systemd-fstab-generator (mount-helper.sh)
	systemd
	# tests: lvmlockd with sanlock for a shared VG (shared-vg.sh)
	lvm2-lockd sanlock
	# the throw-away VM that gives the tests a kernel with device-mapper
	qemu-system-x86 linux-image-amd64 busybox-static udev cpio kmod xz-utils
)

# "bench": also what the benchmark compares with and reads through.
if [ "${1:-}" = bench ]; then
	packages+=(rsync xmount qemu-system-common xfsprogs)
fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: run as root to install: ${missing[*]}" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
