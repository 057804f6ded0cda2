#!/bin/bash
# A guest's own LVM volumes as files, natively: LVM2 writes a guest VG's
# metadata onto a partition of a guest disk (a file on XFS, the guest
# running under the test driver: a reflink set) without activating
# anything (no device-mapper needed: --driverloaded n), the test writes
# each LV's bytes where its segments say, and snapfs must show
# GUEST/lvm/VG/LV with those bytes, its attributes, holes where the disk
# has them, and the same instant as the disk files.  The VG is named
# "vda.raw" so that its directory would clash with the disk's file if the
# layout let it.  The guests' VGs built with real device-mapper, compared
# with what LVM itself activates, are tests/integration/guest-lvm.sh's.
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
requires lvm losetup sfdisk fusermount3 getfattr mkfs.xfs mkfs.ext4 python3 debugfs fuse2fs

ls_c() { (cd "$1" && LC_ALL=C ls -A | tr '\n' ' '); }
make_test_fs xfs xfs 300
fs=$TEST_FS_DIR
img=$fs/web-vda.img
truncate -s 96M "$img"
sfdisk -q "$img" <<'P' || fail "sfdisk"
start=2048, size=16384, type=83
start=18432, type=8e
P
# Partition 2 as a loop device of its own (no partition nodes needed).
part_start=$((18432 * 512))
pv_loop() {
	loop=$(losetup -f --show -o "$part_start" "$img") || fail "losetup"
	add_cleanup "losetup -d $loop 2>/dev/null || true"
}
pv_loop

# LVM sees only that partition, writes only metadata, activates nothing.
lvmdir=$TEST_TMPDIR/lvm
mkdir -p "$lvmdir/etc" "$lvmdir/lock"
cat >"$lvmdir/etc/lvm.conf" <<EOF
devices { filter = [ "a|^$loop\$|", "r|.*|" ] global_filter = [ "a|^$loop\$|", "r|.*|" ]
	use_devicesfile = 0 obtain_device_list_from_udev = 0 scan_lvs = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
global { locking_dir = "$lvmdir/lock" event_activation = 0 use_lvmlockd = 0 }
backup { backup = 0 archive = 0 }
EOF
glvm() { LVM_SYSTEM_DIR=$lvmdir/etc LVM_SUPPRESS_FD_WARNINGS=1 lvm "$@" --driverloaded n 2>>"$lvmdir/lvm.log"; }
glvm pvcreate -q "$loop" >/dev/null || fail "pvcreate"
glvm vgcreate -q -s 1M vda.raw "$loop" >/dev/null || fail "vgcreate"
glvm lvcreate -q -an -Zn -L 8M -n root vda.raw >/dev/null || fail "lvcreate root"
glvm lvcreate -q -an -Zn -L 4M -n swap vda.raw >/dev/null || fail "lvcreate swap"
glvm lvextend -q -L +6M vda.raw/root >/dev/null || fail "lvextend root"
glvm lvcreate -q -an -Zn -L 2M -n home vda.raw >/dev/null || fail "lvcreate home"
glvm lvextend -q -L +3M vda.raw/root >/dev/null || fail "lvextend root again"

# Each LV's bytes: random where the test writes, at the offsets its
# segments give (partition start + pe_start + PE * extent size).
pe_start=$(glvm pvs --noheadings --units b --nosuffix -o pe_start "$loop" | tr -d ' ')
[ -n "$pe_start" ] || fail "no pe_start"
# segments LV: "FIRST_PE LAST_PE" per segment, in the LV's order.
segments() {
	glvm lvs --noheadings --segments -o seg_pe_ranges "vda.raw/$1" | tr -d ' ' |
		sed 's/^[^:]*:\([0-9]*\)-\([0-9]*\)$/\1 \2/'
}
want_lv() { # LV OUT: the LV's bytes as its segments map them, from the image
	local first last
	: >"$2"
	while read -r first last; do
		dd if="$img" bs=1M skip=$(((part_start + pe_start) / 1048576 + first)) \
			count=$((last - first + 1)) status=none >>"$2"
	done < <(segments "$1")
}
write_lv() { # LV SRC: SRC's bytes into the LV, where its segments are
	local first last at=0
	while read -r first last; do
		dd if="$2" of="$img" bs=1M skip="$at" seek=$(((part_start + pe_start) / 1048576 + first)) \
			count=$((last - first + 1)) conv=notrunc status=none
		at=$((at + last - first + 1))
	done < <(segments "$1")
}
[ $(((part_start + pe_start) % 1048576)) = 0 ] || fail "pe_start is not MiB-aligned"
dd if=/dev/urandom of="$img" bs=1M seek=$(((part_start + pe_start) >> 20)) count=30 \
	conv=notrunc status=none
# root holds ext4 with files, as a guest's root LV does.
mkdir -p "$TEST_TMPDIR/rootfs/etc"
echo "guest-lvm-files" >"$TEST_TMPDIR/rootfs/etc/hostname"
mkfs.ext4 -q -F -L groot -d "$TEST_TMPDIR/rootfs" "$TEST_TMPDIR/root.fs" 17M || fail "mkfs.ext4"
write_lv root "$TEST_TMPDIR/root.fs"
# A hole inside swap's first segment: the disk's hole shows through.
swap_pe=$(segments swap | head -n 1 | cut -d' ' -f1)
fallocate -p -o $((part_start + pe_start + ((swap_pe + 1) << 20))) -l $((1 << 20)) "$img"
for lv in root swap home; do want_lv "$lv" "$TEST_TMPDIR/$lv.want"; done
nsegs=$(glvm lvs --noheadings --segments -o seg_start "vda.raw/root" | wc -l)
[ "$nsegs" = 3 ] || fail "root has $nsegs segments, not 3"
losetup -d "$loop"
sync -f "$fs"

xml=$TEST_TMPDIR/node.xml
node_xml "$xml" web "$(disk_file vda "$img")"
mnt=$TEST_TMPDIR/mnt
snapfs_start "test://$xml" "$mnt" -o freeze=off,linger=0
[ "$(ls_c "$mnt/web")" = "domain.xml lvm vda.raw vda1.raw vda2.raw " ] || fail "web: $(ls_c "$mnt/web")"
[ "$(ls_c "$mnt/web/lvm")" = "vda.raw " ] || fail "lvm: $(ls_c "$mnt/web/lvm")"
[ "$(ls_c "$mnt/web/lvm/vda.raw")" = "home root swap " ] || fail "VG: $(ls_c "$mnt/web/lvm/vda.raw")"
[ "$(stat -c %s "$mnt/web/lvm/vda.raw/root")" = $((17 << 20)) ] || fail "root's size"
[ "$(getfattr --absolute-names --only-values -n user.snapfs.segtype "$mnt/web/lvm/vda.raw/root")" = linear ] ||
	fail "root's segtype"
[ "$(getfattr --absolute-names --only-values -n user.snapfs.vg "$mnt/web/lvm/vda.raw/root")" = vda.raw ] ||
	fail "root's VG"

exec 3<"$mnt/web/vda.raw"
for lv in root swap home; do
	cmp "$mnt/web/lvm/vda.raw/$lv" "$TEST_TMPDIR/$lv.want" || fail "$lv differs from its segments"
done
# Holes follow the disk beneath: swap's second MiB is one.
seek_map "$mnt/web/lvm/vda.raw/swap" >"$TEST_TMPDIR/map"
[ "$(head -n 1 "$TEST_TMPDIR/map")" = "0 $((1 << 20))" ] || fail "swap's map: $(cat "$TEST_TMPDIR/map")"
[ "$(getfattr --absolute-names --only-values -n user.snapfs.fstype "$mnt/web/lvm/vda.raw/root")" = ext4 ] ||
	fail "root's fstype"
[ "$(getfattr --absolute-names --only-values -n user.snapfs.label "$mnt/web/lvm/vda.raw/root")" = groot ] ||
	fail "root's label"
# Its files, by userspace tools, never a kernel mount (README's recipe).
debugfs -R 'cat /etc/hostname' "$mnt/web/lvm/vda.raw/root" 2>/dev/null | grep -qx guest-lvm-files ||
	fail "debugfs cannot read /etc/hostname from root"
mkdir -p "$TEST_TMPDIR/groot"
fuse2fs -o ro,fakeroot "$mnt/web/lvm/vda.raw/root" "$TEST_TMPDIR/groot" >/dev/null ||
	fail "fuse2fs -o ro"
add_cleanup "fusermount3 -u '$TEST_TMPDIR/groot' 2>/dev/null || true"
[ "$(cat "$TEST_TMPDIR/groot/etc/hostname")" = guest-lvm-files ] || fail "fuse2fs: hostname"
fusermount3 -u "$TEST_TMPDIR/groot"
# The same instant: a write to the disk now does not show.
dd if=/dev/zero of="$img" bs=1M seek=$(((part_start + pe_start) >> 20)) count=1 conv=notrunc \
	status=none
cmp "$mnt/web/lvm/vda.raw/root" "$TEST_TMPDIR/root.want" || fail "root changed while held"
exec 3<&-
# Refused while no set is held: nothing of it written.
expect_erofs sh -c ": >'$mnt/web/lvm/vda.raw/root'"
log "ok"
