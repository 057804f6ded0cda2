#!/bin/bash
# A guest's own LVM2 volumes as files: GUEST/lvm/VG/LV for every linear or
# striped LV of every VG on the guest's disks and partitions, read from the
# guest's snapshot set through its own metadata, nothing activated on the
# host.  The guests are made by real LVM2 on loop devices, under an LVM
# configuration of their own, then deactivated and detached, so that the
# host's LVM never sees their PVs:
#
#	rhel      MBR: vda1 ext4 /boot, vda2 the PV of VG rhel: root (XFS),
#	          swap
#	ubuntu    GPT: an ESP (FAT), then the PV of ubuntu-vg: ubuntu-lv (ext4)
#	          extended twice around other LVs, in three segments
#	span      VG datavg on vda2 and vdb: a striped LV (-i2), a linear LV
#	          on each PV and one across both
#	halfspan  span's vda alone: the LVs with a PV missing are not served
#	thin      a thin pool, a thin LV, a classic snapshot and its origin:
#	          only the origin is served
#	namesake  a guest VG named as the host's VG
#	rhelq     rhel's disk as a qcow2 image in a host LV: the LVs read
#	          through the decoded image
#	nolvm     no PV, no lvm directory
#
# The judge is LVM itself: each guest's VGs activated from copies of the
# disks snapfs serves, every LV file compared byte for byte with its
# /dev/VG/LV, the LVs left out named in the log.  rhel's root LV is read
# after its host LV was rewritten under the open set: it is as it was at
# the open.  The host's PVs, LVs and device-mapper devices are at the end
# what they were at the start.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-qcow2.sh" || exit 99
requires_root
requires lvm lvmconfig lvcreate dmsetup losetup udevadm sfdisk mkfs.ext4 mkfs.xfs mkswap \
	debugfs xfs_db blkid qemu-img python3 fusermount3 getfattr cmp

# Natively, the host's udev rules would activate the guests' VGs as their
# loop devices appear, and a guest VG may be one of the host's.
[ "$(lvmconfig --type full global/event_activation 2>/dev/null)" = event_activation=0 ] ||
	skip "this host's LVM activates VGs as their PVs appear (global/event_activation=1)"
! dmsetup ls 2>/dev/null | grep -Eq '^(rhel|ubuntu--vg|datavg|thinvg)-' ||
	skip "this host has device-mapper devices of a guest VG's name"

# host_view: the host's PVs and LVs, as its own LVM configuration shows
# them, and its device-mapper devices.
host_view() {
	env -u LVM_SYSTEM_DIR pvs --noheadings -o pv_name,vg_name,pv_uuid 2>/dev/null || true
	env -u LVM_SYSTEM_DIR lvs -a --noheadings -o vg_name,lv_name,lv_uuid,lv_size 2>/dev/null || true
	dmsetup info -c --noheadings -o name,uuid 2>/dev/null || true
}
host_start=$(host_view)
add_cleanup '[ "$(host_view)" = "$host_start" ] ||
	{ log "the host LVM view changed:"; diff <(echo "$host_start") <(host_view) >&2; false; }'

# ---- the guests' own LVM ----------------------------------------------------

# glvm CMD ARGS...: LVM as the guests' machines run it: a configuration of
# its own (no devices file, no hints, its backups in its own directory)
# that sees only the loop devices in GLVM_DEVS and their partitions.
test_tmpdir
GLVM_DIR=$TEST_TMPDIR/guest-lvm
mkdir "$GLVM_DIR"
cat >"$GLVM_DIR/lvm.conf" <<'EOF'
devices {
	use_devicesfile = 0
	scan_lvs = 0
	hints = "none"
	obtain_device_list_from_udev = 0
}
global {
	event_activation = 0
	thin_check_executable = ""
}
activation {
	monitoring = 0
}
EOF
GLVM_DEVS=()
glvm() {
	local d accept=
	for d in "${GLVM_DEVS[@]}"; do accept+="\"a|^$d(p[0-9]+)?\$|\", "; done
	LVM_SYSTEM_DIR=$GLVM_DIR lvm "$@" --config "devices { global_filter = [ $accept\"r|.*|\" ] }"
}

# guest_attach IMAGE...: loop devices for the images, their partitions
# scanned, added to GLVM_DEVS.
guest_attach() {
	local img dev
	for img; do
		dev=$(losetup --find --show --partscan -- "$img") || fail "losetup $img"
		GLVM_DEVS+=("$dev")
	done
	udevadm settle
}

# guest_detach: every VG of the attached images deactivated, the loop
# devices detached.
guest_detach() {
	local dev rc=0
	[ ${#GLVM_DEVS[@]} -gt 0 ] || return 0
	glvm vgchange -q -an >/dev/null || rc=1
	for dev in "${GLVM_DEVS[@]}"; do losetup -d "$dev" || rc=1; done
	GLVM_DEVS=()
	udevadm settle
	return $rc
}
add_cleanup guest_detach

# ---- making the guests' disks -----------------------------------------------

files=$TEST_TMPDIR/files
mkdir -p "$files"/boot/grub2 "$files"/root/etc "$files"/ubuntu/etc "$files"/data
head -c 1M /dev/urandom >"$files/boot/vmlinuz-5.14.0-guest"
echo 'set default=0' >"$files/boot/grub2/grub.cfg"
echo rhel-guest >"$files/root/etc/hostname"
head -c 2M /dev/urandom >"$files/root/blob"
echo ubuntu-guest >"$files/ubuntu/etc/hostname"
head -c 6M /dev/urandom >"$files/ubuntu/blob"
head -c 1M /dev/urandom >"$files/data/records"

# make_xfs DEV LABEL: XFS with /etc/hostname and /blob of files/root.
# mkfs.xfs makes one under 300 MiB only for fstests, known by its variables.
make_xfs() {
	cat >"$TEST_TMPDIR/proto" <<EOF
guest-root
0 0
d--755 0 0
etc d--755 0 0
hostname ---644 0 0 $files/root/etc/hostname
\$
blob ---600 0 0 $files/root/blob
\$
\$
EOF
	TEST_DIR=/ TEST_DEV=$1 QA_CHECK_FS=1 mkfs.xfs -q -K -L "$2" -p "$TEST_TMPDIR/proto" "$1" ||
		fail "mkfs.xfs on $1"
}

# make_esp DEV START SECTORS: a FAT16 file system labelled ESP on the
# partition DEV, which starts at sector START (no mkfs.fat needed).
make_esp() {
	python3 - "$@" <<'PY'
import struct, sys
dev, start, sectors = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
spc, reserved, nfats, rootents = 1, 1, 2, 512
spf = ((sectors // spc + 2) * 2 + 511) // 512
bs = bytearray(512)
bs[0:11] = b"\xeb\x3c\x90mkfs.fat"
struct.pack_into("<HBHBHHBHHHII", bs, 11, 512, spc, reserved, nfats, rootents,
                 sectors if sectors < 65536 else 0, 0xF8, spf, 32, 64, start,
                 sectors if sectors >= 65536 else 0)
struct.pack_into("<BBBI11s8s", bs, 36, 0x80, 0, 0x29, 0x5E5A0001, b"ESP        ", b"FAT16   ")
bs[510:512] = b"\x55\xaa"
with open(dev, "r+b") as f:
    f.write(bs)
    for i in range(nfats):
        f.seek((reserved + i * spf) * 512)
        f.write(b"\xf8\xff\xff\xff")
    f.seek((reserved + nfats * spf) * 512)
    f.write(b"ESP        \x08" + bytes(20))
PY
}

# image FILE MIB [TABLE]: an empty disk image, partitioned by sfdisk's TABLE.
image() {
	truncate -s "$2M" "$1"
	[ -z "${3-}" ] || sfdisk -q "$1" <<<"$3" || fail "sfdisk on $1"
}

# The disks, all attached at once: rhel, ubuntu, span-a, span-b, thin,
# namesake.
dos=$'label: dos\nstart=2048, size=8192, type=83\nstart=10240, type=8e'
image "$TEST_TMPDIR/rhel.img" 64 $'label: dos\nstart=2048, size=16384, type=83, bootable\nstart=18432, type=8e'
image "$TEST_TMPDIR/ubuntu.img" 48 $'label: gpt\nstart=2048, size=8192, type=U\nstart=10240, type=V'
image "$TEST_TMPDIR/span-a.img" 32 "$dos"
image "$TEST_TMPDIR/span-b.img" 24
image "$TEST_TMPDIR/thin.img" 32 $'label: dos\nstart=2048, type=8e'
image "$TEST_TMPDIR/namesake.img" 24 $'label: dos\nstart=2048, type=8e'
guest_attach "$TEST_TMPDIR"/{rhel,ubuntu,span-a,span-b,thin,namesake}.img
d=("${GLVM_DEVS[@]}")

# rhel: vda1 /boot (ext4), vda2 the PV of rhel: root (XFS) and swap.
mkfs.ext4 -q -E nodiscard -L boot -d "$files/boot" "${d[0]}p1"
glvm vgcreate -q -s 1M rhel "${d[0]}p2" >/dev/null
glvm lvcreate -q -y -n root -L 32M rhel >/dev/null
glvm lvcreate -q -y -n swap -L 8M rhel >/dev/null
fill_random /dev/rhel/root
fill_random /dev/rhel/swap
make_xfs /dev/rhel/root root
mkswap -L swap /dev/rhel/swap >/dev/null

# ubuntu: an ESP, then the PV of ubuntu-vg, whose ubuntu-lv was extended
# twice, each time after another LV took the extents after it.
make_esp "${d[1]}p1" 2048 8192
glvm vgcreate -q -s 1M ubuntu-vg "${d[1]}p2" >/dev/null
glvm lvcreate -q -y -n ubuntu-lv -L 8M ubuntu-vg >/dev/null
glvm lvcreate -q -y -n gap1 -L 2M ubuntu-vg >/dev/null
glvm lvextend -q -L +8M ubuntu-vg/ubuntu-lv >/dev/null
glvm lvcreate -q -y -n gap2 -L 2M ubuntu-vg >/dev/null
glvm lvextend -q -L +4M ubuntu-vg/ubuntu-lv >/dev/null
for lv in ubuntu-lv gap1 gap2; do fill_random /dev/ubuntu-vg/$lv; done
mkfs.ext4 -q -E nodiscard -L ubuntu-root -d "$files/ubuntu" /dev/ubuntu-vg/ubuntu-lv

# span: datavg on span-a's second partition and on the whole of span-b:
# stripes (-i2), onlya on span-a, both across the two.
glvm vgcreate -q -s 1M datavg "${d[2]}p2" "${d[3]}" >/dev/null
glvm lvcreate -q -y -n stripes -i 2 -I 64k -L 16M datavg >/dev/null
glvm lvcreate -q -y -n onlya -L 4M datavg "${d[2]}p2" >/dev/null
glvm lvcreate -q -y -n both -l 100%FREE datavg >/dev/null
for lv in stripes onlya both; do fill_random /dev/datavg/$lv; done

# thin: a thin pool and its thin LV, an LV and a classic snapshot of it.
glvm vgcreate -q -s 1M thinvg "${d[4]}p1" >/dev/null
glvm lvcreate -q -y -n thin -V 8M -L 8M -T thinvg/pool >/dev/null
glvm lvcreate -q -y -n plain -L 4M thinvg >/dev/null
fill_random /dev/thinvg/plain
dd if=/dev/urandom of=/dev/thinvg/thin bs=1M count=2 oflag=direct status=none
glvm lvcreate -q -y -s -n plainsnap -L 2M thinvg/plain >/dev/null

# namesake: a VG of the host VG's name (made below), LV data (ext4).
vg=snapfs_glvm
glvm vgcreate -q -s 1M $vg "${d[5]}p1" >/dev/null
glvm lvcreate -q -y -n data -L 12M $vg >/dev/null
fill_random /dev/$vg/data
mkfs.ext4 -q -E nodiscard -L data -d "$files/data" /dev/$vg/data

segs=$(glvm lvs --noheadings --separator '|' -o lv_name,seg_count,devices ubuntu-vg/ubuntu-lv datavg/both |
	tr -d ' ' | sed 's/([0-9]*)//' | LC_ALL=C sort)
[ "$segs" = "$(printf '%s\n' "both|2|${d[2]}p2" "both|2|${d[3]}" "ubuntu-lv|3|${d[1]}p2" \
	"ubuntu-lv|3|${d[1]}p2" "ubuntu-lv|3|${d[1]}p2" | LC_ALL=C sort)" ] ||
	fail "ubuntu-lv is not in three segments, or datavg/both not on two PVs: $segs"
guest_detach

# ---- the host: its VG, an LV for each disk ----------------------------------

[ "$(host_view)" = "$host_start" ] || fail "making the guests left something the host sees"
setup_vg $vg 480
# From here on this test's LVM and snapfs see only the host VG's PV.
lvm_test_config "devices/global_filter = [ \"a|^${SETUP_VG_PVS[0]}\$|\", \"r|.*|\" ]"
for disk in rhel ubuntu span-a span-b thin namesake; do
	make_lv $vg $disk "$(($(stat -c %s "$TEST_TMPDIR/$disk.img") >> 20))M"
	dd if="$TEST_TMPDIR/$disk.img" of=/dev/$vg/$disk bs=1M conv=sparse,fsync status=none
	[ $disk = rhel ] || rm -f "$TEST_TMPDIR/$disk.img"
done
make_lv $vg rhelq 72M
qemu-img create -q -f qcow2 /dev/$vg/rhelq 64M || fail "qemu-img create on /dev/$vg/rhelq"
qemu-img convert -q -n -f raw -O qcow2 "$TEST_TMPDIR/rhel.img" /dev/$vg/rhelq ||
	fail "qemu-img convert onto /dev/$vg/rhelq"
make_lv $vg nolvm 4M
host_made=$(host_view)

xml=/tmp/guest-lvm-node.xml
add_cleanup "rm -f $xml"
{
	echo "<node>"
	virt_domain rhel "$(disk_block vda /dev/$vg/rhel)"
	virt_domain ubuntu "$(disk_block vda /dev/$vg/ubuntu)"
	virt_domain span "$(disk_block vda /dev/$vg/span-a; disk_block vdb /dev/$vg/span-b)"
	virt_domain halfspan "$(disk_block vda /dev/$vg/span-a)"
	virt_domain thin "$(disk_block vda /dev/$vg/thin)"
	virt_domain namesake "$(disk_block vda /dev/$vg/namesake)"
	virt_domain rhelq "$(disk_block vda /dev/$vg/rhelq qcow2)"
	virt_domain nolvm "$(disk_block vda /dev/$vg/nolvm)"
	echo "</node>"
} >"$xml"
mnt=/tmp/snapfs-guest-lvm
snapfs_start "test://$xml" $mnt -o cow_size=100%ORIGIN

# ls_c DIR: its names, one line, in C's order.
ls_c() { (cd "$1" && LC_ALL=C ls | tr '\n' ' '); }

# ---- the judge ---------------------------------------------------------------

# judge GUEST TARGET...: the guest's VGs activated by LVM from copies of
# the disks TARGET.raw that snapfs serves (read in one set: hold one open).
# GUEST/lvm lists exactly the VGs, each VG directory exactly the linear and
# striped LVs (not snapshots' COW stores); each is its /dev/VG/LV, byte for
# byte, with its attributes; each LV left out has its line in the log.
JUDGED=0
judge() {
	local g=$1 t imgs=() lvs vgname lv layout role kind served why
	local dir=$mnt/$1/lvm
	shift
	kind=$(xattr_of "$mnt/$g/$1.raw" snapshot_kind)
	[ -n "$kind" ] || fail "$g/$1.raw has no snapshot_kind"
	for t; do
		cp --sparse=always "$mnt/$g/$t.raw" "$TEST_TMPDIR/judge-$t.img"
		imgs+=("$TEST_TMPDIR/judge-$t.img")
	done
	guest_attach "${imgs[@]}"
	glvm vgchange -q -ay >/dev/null || fail "$g: LVM cannot activate the guest's VGs"
	lvs=$(glvm lvs --noheadings --separator '|' -o vg_name,lv_name,lv_layout,lv_role | tr -d ' ')
	[ "$(ls -1 "$dir" | LC_ALL=C sort)" = "$(cut -d'|' -f1 <<<"$lvs" | LC_ALL=C sort -u)" ] ||
		fail "$g/lvm lists $(ls "$dir" | tr '\n' ' '), LVM finds $(cut -d'|' -f1 <<<"$lvs" | sort -u | tr '\n' ' ')"
	for vgname in $(cut -d'|' -f1 <<<"$lvs" | sort -u); do
		served=
		while IFS='|' read -r lv layout role; do
			case "$layout/,$role," in
			*,snapshot,*) ;;
			linear/* | striped/*)
				served+="$lv"$'\n'
				check_lv "$g" "$vgname" "$lv" "$layout" "$kind"
				continue
				;;
			esac
			[ ! -e "$dir/$vgname/$lv" ] || fail "$g: $vgname/$lv ($layout, $role) is listed"
			case "$layout/,$role," in
			*,snapshot,*) why=snapshot ;;
			thin,pool/*) why=thin-pool ;;
			*) why=${layout%%,*} ;;
			esac
			not_served "$g" "$vgname" "$lv" "$why"
		done < <(awk -F'|' -v vg="$vgname" '$1 == vg { print $2 "|" $3 "|" $4 }' <<<"$lvs")
		[ "$(ls -1 "$dir/$vgname" | LC_ALL=C sort)" = "$(printf %s "$served" | LC_ALL=C sort)" ] ||
			fail "$g/lvm/$vgname lists $(ls "$dir/$vgname" | tr '\n' ' '), LVM serves ${served//$'\n'/ }"
	done
	guest_detach
	rm -f "${imgs[@]}"
}

# check_lv GUEST VG LV SEGTYPE KIND: GUEST/lvm/VG/LV is /dev/VG/LV.
check_lv() {
	local f=$mnt/$1/lvm/$2/$3 dev=/dev/$2/$3 x
	[ -f "$f" ] || fail "$1: no file for $2/$3"
	cmp "$f" "$dev" || fail "$1/lvm/$2/$3 is not $dev"
	[ "$(stat -c %s "$f")" = "$(blockdev --getsize64 "$dev")" ] || fail "$1/lvm/$2/$3: size"
	[ "$(xattr_of "$f" vg)" = "$2" ] || fail "$f: user.snapfs.vg is '$(xattr_of "$f" vg)'"
	[ "$(xattr_of "$f" lv)" = "$3" ] || fail "$f: user.snapfs.lv is '$(xattr_of "$f" lv)'"
	[ "$(xattr_of "$f" segtype)" = "$4" ] || fail "$f: user.snapfs.segtype is '$(xattr_of "$f" segtype)'"
	[ "$(xattr_of "$f" snapshot_kind)" = "$5" ] || fail "$f: user.snapfs.snapshot_kind is '$(xattr_of "$f" snapshot_kind)'"
	for x in TYPE:fstype LABEL:label UUID:uuid; do
		[ "$(xattr_of "$f" ${x#*:})" = "$(blkid -p -o value -s ${x%:*} "$dev" || true)" ] ||
			fail "$f: user.snapfs.${x#*:} is '$(xattr_of "$f" ${x#*:})', blkid says '$(blkid -p -o value -s ${x%:*} "$dev" || true)'"
	done
	JUDGED=$((JUDGED + 1))
}

# not_served GUEST VG LV WHY: one line of the log says so, and why.
not_served() {
	local line
	line=$(grep -F "guest $1, VG $2, LV $3: not served: " "$SNAPFS_LOG" || true)
	[ -n "$line" ] || fail "no line in the log for $1's $2/$3, not served"
	[ "$(wc -l <<<"$line")" = 1 ] || fail "more than one line for $1's $2/$3: $line"
	[[ $line == *"$4"* ]] || fail "the line for $1's $2/$3 does not say '$4': $line"
}

# ---- rhel: the LV file is the LV at the open ----------------------------------

[ "$(ls_c $mnt/rhel)" = "domain.xml lvm vda.raw vda1.raw vda2.raw " ] ||
	fail "rhel: $(ls_c $mnt/rhel)"
[ "$(ls_c $mnt/rhel/lvm/rhel)" = "root swap " ] || fail "rhel's VG: $(ls_c $mnt/rhel/lvm/rhel)"
assert_snapfs_lvs $vg 0
exec 3<$mnt/rhel/lvm/rhel/root
assert_snapfs_lvs $vg 1
exec 4<$mnt/rhel/vda.raw
assert_snapfs_lvs $vg 1
cmp $mnt/rhel/vda.raw "$TEST_TMPDIR/rhel.img" || fail "rhel's vda.raw is not the disk as it was made"
judge rhel vda
debugfs -R 'ls -l /' $mnt/rhel/vda1.raw 2>/dev/null | grep -q 'vmlinuz-5.14.0-guest' ||
	fail "rhel's /boot has not its files"
# root's extents (vda2 starts 9 MiB in, its extents 1 MiB later; root has
# the first 32) rewritten on the host LV under the open set: the LV file
# stays what the disk held at the open, and so do its fstype, label and
# uuid: the held set's.
root_sha=$(sha_at "$TEST_TMPDIR/rhel.img" $((10 << 20)) $((32 << 20)))
dd if=/dev/urandom of=/dev/$vg/rhel bs=1M seek=10 count=32 oflag=direct conv=notrunc status=none
[ "$(sha_at /dev/$vg/rhel $((10 << 20)) $((32 << 20)))" != "$root_sha" ] ||
	fail "the rewrite did not reach /dev/$vg/rhel"
[ "$(sha_file $mnt/rhel/lvm/rhel/root)" = "$root_sha" ] || fail "rhel's root changed under the open set"
[ "$(xattr_of $mnt/rhel/lvm/rhel/root fstype)" = xfs ] ||
	fail "rhel's root: fstype '$(xattr_of $mnt/rhel/lvm/rhel/root fstype)' while the set holds XFS"
xfs_db -r -c 'ls /' -c 'ls /etc' $mnt/rhel/lvm/rhel/root >"$TEST_TMPDIR/xfs-ls" ||
	fail "xfs_db cannot read rhel/lvm/rhel/root"
for name in etc blob hostname; do
	grep -q " $name (good)\$" "$TEST_TMPDIR/xfs-ls" || fail "$name is not in the XFS of rhel/root"
done
exec 3<&- 4<&-
wait_snapfs_lvs $vg 0

# ---- ubuntu: three segments, ext4 read through them -----------------------------

[ "$(ls_c $mnt/ubuntu/lvm)" = "ubuntu-vg " ] || fail "ubuntu: $(ls_c $mnt/ubuntu/lvm)"
exec 3<$mnt/ubuntu/vda.raw
judge ubuntu vda
f=$mnt/ubuntu/lvm/ubuntu-vg/ubuntu-lv
debugfs -R 'ls -l /' "$f" 2>/dev/null | grep -q ' blob *$' || fail "no /blob in ubuntu-lv's ext4"
debugfs -R 'cat /blob' "$f" 2>/dev/null | cmp - "$files/ubuntu/blob" ||
	fail "ubuntu-lv's /blob is not what was put there"
[ "$(debugfs -R 'cat /etc/hostname' "$f" 2>/dev/null)" = ubuntu-guest ] || fail "ubuntu-lv's /etc/hostname"
exec 3<&-

# ---- span and halfspan: two disks, striped; a PV missing --------------------------

exec 3<$mnt/span/vda.raw
judge span vda vdb
[ "$(xattr_of $mnt/span/lvm/datavg/stripes segtype)" = striped ] || fail "stripes is not striped"
onlya=$(sha_file $mnt/span/lvm/datavg/onlya)
exec 3<&-
[ "$(ls_c $mnt/halfspan/lvm/datavg)" = "onlya " ] ||
	fail "halfspan's datavg: $(ls_c $mnt/halfspan/lvm/datavg)"
[ "$(sha_file $mnt/halfspan/lvm/datavg/onlya)" = "$onlya" ] || fail "halfspan's onlya is not span's"
not_served halfspan datavg stripes PV
not_served halfspan datavg both PV

# ---- thin, namesake, rhelq, nolvm ------------------------------------------------

exec 3<$mnt/thin/vda.raw
judge thin vda
[ "$(ls_c $mnt/thin/lvm/thinvg)" = "plain " ] || fail "thinvg: $(ls_c $mnt/thin/lvm/thinvg)"
exec 3<&-

exec 3<$mnt/namesake/vda.raw
judge namesake vda
debugfs -R 'cat /records' $mnt/namesake/lvm/$vg/data 2>/dev/null | cmp - "$files/data/records" ||
	fail "namesake's data LV has not its file"
exec 3<&-

exec 3<$mnt/rhelq/vda.raw
[ "$(xattr_of $mnt/rhelq/vda.raw format)" = qcow2 ] || fail "rhelq's vda is not decoded"
cmp $mnt/rhelq/vda.raw "$TEST_TMPDIR/rhel.img" || fail "rhelq's vda.raw is not the image converted"
judge rhelq vda
exec 3<&-

[ ! -e $mnt/nolvm/lvm ] || fail "nolvm has an lvm directory"
[ "$(ls_c $mnt/nolvm)" = "domain.xml vda.raw " ] || fail "nolvm: $(ls_c $mnt/nolvm)"

[ "$JUDGED" = 12 ] || fail "$JUDGED LV files judged, not 12"
wait_snapfs_lvs $vg 0
[ "$(host_view)" = "$host_made" ] || fail "the host's LVM view changed while snapfs ran"
echo "guest-lvm: $JUDGED LV files are LVM's own LVs"
