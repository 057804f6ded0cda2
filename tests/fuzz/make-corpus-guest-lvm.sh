#!/bin/bash
# Regenerate the seed corpus of fuzz-guest-lvm (tests/fuzz/corpus-guest-lvm/)
# with real LVM2: PVs, VGs and LVs made by pvcreate, vgcreate, lvcreate and
# lvextend on loop devices over sparse files, as a guest would make them.
#
#	tests/fuzz/make-corpus-guest-lvm.sh [REPLAY]
#
# REPLAY is the plain driver, tests/fuzz/replay-guest-lvm of a build tree
# (default: $SNAPFS_BUILDDIR/tests/fuzz/replay-guest-lvm, else ./...); it
# packs each PV image into the chunks of one device (its size, then its
# sectors that are not zeros: the label, the metadata areas), and the packs
# of a VG's PVs together are one input of a few KiB.
#
# Needs root, loop devices, lvm2 and device-mapper (thin pools, snapshots
# and RAID cannot be made without it).  LVM runs with its own configuration:
# only these loop devices, no udev, no backups, no devices file; LVs are
# made inactive (-an).  On a machine without device-mapper the script runs
# itself in the project's throw-away VM (tests/vm/run-test), which prints
# the corpus back as a base64 tar on its stdout; GLVM_CORPUS_NATIVE=1 runs
# here instead, with --driverloaded n, and makes only the inputs that need
# no device-mapper.  LVM makes new UUIDs and times each run, so the inputs
# differ from run to run; what they hold does not.
#
# The inputs: a linear LV; a striped LV over two PVs; an LV extended twice
# (three segments, not contiguous); two VGs; a thin pool and a thin LV; a
# classic snapshot; a RAID1 LV; PVs with two metadata areas and with none;
# a VG with one PV missing; a metadata area whose text wraps round its end.
set -euo pipefail

here=$(cd -- "$(dirname -- "$0")" && pwd)
replay=${1:-${SNAPFS_BUILDDIR:-.}/tests/fuzz/replay-guest-lvm}
out=$here/corpus-guest-lvm
say() { printf 'make-corpus-guest-lvm: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { say "needs root (loop devices)"; exit 77; }
command -v lvm >/dev/null || { say "needs lvm2"; exit 77; }
[ -x "$replay" ] || { say "no $replay: build it first"; exit 1; }
replay=$(cd -- "$(dirname -- "$replay")" && pwd)/$(basename -- "$replay")

# Without device-mapper: into the VM, and the corpus back from its stdout.
dm=y
[ -d /sys/module/dm_mod ] || modprobe -q dm_mod 2>/dev/null || true
dmsetup version >/dev/null 2>&1 || dm=''
if [ -z "$dm" ] && [ "${GLVM_CORPUS_NATIVE-}" != 1 ] && [ "${GLVM_CORPUS_IN_VM-}" != 1 ]; then
	say "no device-mapper here: making the corpus in the VM"
	tmp=$(mktemp -d)
	trap 'rm -rf -- "$tmp"' EXIT
	GLVM_CORPUS_IN_VM=1 SNAPFS_VM_PASSENV="GLVM_CORPUS_IN_VM ${SNAPFS_VM_PASSENV-}" \
		"$here/../vm/run-test" "$here/make-corpus-guest-lvm.sh" "$replay" >"$tmp/out"
	sed -n '/^BEGIN-CORPUS$/,/^END-CORPUS$/p' "$tmp/out" | sed '1d;$d' | base64 -d |
		tar -xz -C "$tmp"
	mkdir -p "$out"
	cp -- "$tmp"/corpus/* "$out/"
	ls -l -- "$out" >&2
	exit 0
fi
drv=()
[ -n "$dm" ] || drv=(--driverloaded n)

work=$(mktemp -d)
loops=()
cleanup() {
	local l
	for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
	rm -rf -- "$work"
}
trap cleanup EXIT

# Eight PVs of 16 MiB each, on loop devices; LVM sees only these.
for i in 0 1 2 3 4 5 6 7; do
	truncate -s 16M "$work/pv$i.img"
	loops+=("$(losetup -f --show -- "$work/pv$i.img")")
done
filter=''
for l in "${loops[@]}"; do filter+="\"a|^$l\$|\", "; done
mkdir -p "$work/etc" "$work/lock"
cat >"$work/etc/lvm.conf" <<EOF
devices { filter = [ $filter"r|.*|" ] global_filter = [ $filter"r|.*|" ]
	use_devicesfile = 0 obtain_device_list_from_udev = 0 scan_lvs = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
global { locking_dir = "$work/lock" event_activation = 0 use_lvmlockd = 0 }
backup { backup = 0 archive = 0 }
EOF
export LVM_SYSTEM_DIR=$work/etc LVM_SUPPRESS_FD_WARNINGS=1

run() { # lvm COMMAND ARGS...
	local cmd=$1
	shift
	lvm "$cmd" "${drv[@]}" "$@" >>"$work/lvm.log" 2>&1 ||
		{ say "lvm $cmd $* failed:"; tail -n 5 "$work/lvm.log" >&2; exit 1; }
}
pv() { echo "${loops[$1]}"; }

# pack NAME PV...: the input NAME, of the listed PVs (devices 0, 1, ...).
pack() {
	local name=$1 i=0 p
	shift
	: >"$work/$name"
	for p in "$@"; do
		"$replay" --pack "$i" "$work/pv$p.img" "$work/part"
		cat -- "$work/part" >>"$work/$name"
		i=$((i + 1))
	done
	mkdir -p "$work/corpus"
	cp -- "$work/$name" "$work/corpus/$name"
	say "$name: $(stat -c %s -- "$work/$name") bytes"
}

# Wipe every PV for the next VG.
reset() {
	local i
	for i in "${!loops[@]}"; do dd if=/dev/zero of="${loops[i]}" bs=1M count=16 status=none; done
}

run pvcreate "$(pv 0)"
run vgcreate -s 1M vglin "$(pv 0)"
run lvcreate -an -Zn -L 4M -n lin vglin
pack linear 0

reset
run pvcreate "$(pv 0)" "$(pv 1)"
run vgcreate -s 1M vgstr "$(pv 0)" "$(pv 1)"
run lvcreate -an -Zn -i 2 -I 64k -L 4M -n str vgstr
run lvcreate -an -Zn -L 2M -n lin vgstr "$(pv 1)"
pack striped 0 1

reset
run pvcreate "$(pv 0)"
run vgcreate -s 1M vgext "$(pv 0)"
run lvcreate -an -Zn -L 2M -n grown vgext
run lvcreate -an -Zn -L 1M -n a vgext
run lvextend -L +2M vgext/grown
run lvcreate -an -Zn -L 1M -n b vgext
run lvextend -L +3M vgext/grown
pack extended 0

reset
run pvcreate "$(pv 0)" "$(pv 1)"
run vgcreate -s 1M vgone "$(pv 0)"
run vgcreate -s 4M vgtwo "$(pv 1)"
run lvcreate -an -Zn -L 3M -n first vgone
run lvcreate -an -Zn -L 8M -n second vgtwo
pack two-vgs 0 1

if [ -n "$dm" ]; then
reset
run pvcreate "$(pv 0)"
run vgcreate -s 1M vgthin "$(pv 0)"
run lvcreate -an -Zn -L 4M -T vgthin/pool
run lvcreate -an -V 8M -T vgthin/pool -n thin
run lvcreate -an -Zn -L 2M -n plain vgthin
pack thin 0

reset
run pvcreate "$(pv 0)"
run vgcreate -s 1M vgsnap "$(pv 0)"
run lvcreate -an -Zn -L 4M -n origin vgsnap
run lvcreate -an -s -L 2M -n snap vgsnap/origin
pack snapshot 0

reset
run pvcreate "$(pv 0)" "$(pv 1)"
run vgcreate -s 1M vgraid "$(pv 0)" "$(pv 1)"
run lvcreate -an -Zn --type raid1 -m 1 -L 4M -n mirror vgraid
run lvcreate -an -Zn -L 2M -n plain vgraid
pack raid1 0 1
fi

reset
run pvcreate --pvmetadatacopies 2 "$(pv 0)"
run pvcreate --pvmetadatacopies 0 "$(pv 1)"
run vgcreate -s 1M vgmda "$(pv 0)" "$(pv 1)"
run lvcreate -an -Zn -L 20M -n wide vgmda
pack two-mdas-and-none 0 1
pack pv-missing 0

# A small metadata area, written until the newest text runs past its end
# and goes on after the area's header.
reset
run pvcreate --dataalignment 64k --metadatasize 8k "$(pv 0)"
run vgcreate -s 1M vgwrap "$(pv 0)"
wrapped=''
for i in $(seq 1 200); do
	run lvcreate -an -Zn -L 1M -n "lv$i" vgwrap
	[ "$i" -le 4 ] || run lvremove -y vgwrap/"lv$((i - 4))"
	# The mda header at 4096: raw_locn 0 is at 40 (offset, size).
	set -- $(od -An -tu8 -j $((4096 + 32)) -N 24 -- "$work/pv0.img")
	if [ $(($2 + $3)) -gt "$1" ]; then wrapped=$i; break; fi
done
[ -n "$wrapped" ] || { say "the metadata never wrapped"; exit 1; }
pack wrapped 0

if [ "${GLVM_CORPUS_IN_VM-}" = 1 ]; then
	echo BEGIN-CORPUS
	tar -cz -C "$work" corpus | base64
	echo END-CORPUS
else
	mkdir -p "$out"
	cp -- "$work"/corpus/* "$out/"
	say "done: $out"
fi
