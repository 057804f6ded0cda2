#!/bin/bash
# A failing disk under part of the origin: reads of a snapfs file that touch
# the failing range end in EIO, and exactly those; the rest reads correctly.
# The PV sits on a device-mapper device whose table gets an error target.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate dmsetup losetup fusermount3

test_tmpdir
# LVM (ours and snapfs's, which passes LVM_SYSTEM_DIR on) must see the PV
# on the device-mapper device only, not on the loop device under it.
export LVM_SYSTEM_DIR=$TEST_TMPDIR/lvm
mkdir -p $LVM_SYSTEM_DIR
cp -a /etc/lvm/. $LVM_SYSTEM_DIR/
printf 'devices {\n\tglobal_filter = [ "a|^/dev/mapper/snapfs_flaky_pv$|", "r|.*|" ]\n}\n' >>$LVM_SYSTEM_DIR/lvmlocal.conf
truncate -s 64M $TEST_TMPDIR/pv.img
add_cleanup "rm -f $TEST_TMPDIR/pv.img"
loop=$(losetup --find --show $TEST_TMPDIR/pv.img) || fail "losetup"
add_cleanup "losetup -d $loop"
sectors=$((64 * 2048))
pv=snapfs_flaky_pv
dmsetup create $pv --table "0 $sectors linear $loop 0" || fail "dmsetup create"
add_cleanup "dmsetup remove $pv"
vg=snapfs_dmerr
vgcreate -q -y $vg /dev/mapper/$pv >/dev/null || fail "vgcreate"
add_cleanup "vgremove -q -ff -y $vg >/dev/null"
make_lv $vg disk 16M
fill_random /dev/$vg/disk
# Where the LV's bytes are on the PV: its first extent, after pe_start.
pe_start=$(pvs --noheadings --units s --nosuffix -o pe_start /dev/mapper/$pv | tr -d ' ')
first_pe=$(lvs --noheadings -o seg_pe_ranges $vg/disk | sed 's/.*:\([0-9]*\)-.*/\1/')
lv_sector0=$((pe_start + first_pe * 8192))
test_tmpdir
good=$TEST_TMPDIR/good.img
dd if=/dev/$vg/disk of=$good bs=1M status=none

xml=$TEST_TMPDIR/node.xml
one_guest_xml $xml guest /dev/$vg/disk
mnt=/tmp/snapfs-dmerr
snapfs_start "test://$xml" $mnt -o freeze=off
exec 3<$mnt/guest/vda.raw

# LV bytes [8 MiB, 9 MiB) now fail, as a dying disk would.
bad0=$((lv_sector0 + 8 * 2048))
bad1=$((bad0 + 2048))
dmsetup suspend $pv
dmsetup load $pv <<T
0 $bad0 linear $loop 0
$bad0 2048 error
$bad1 $((sectors - bad1)) linear $loop $bad1
T
dmsetup resume $pv

# Read 64 KiB blocks with O_DIRECT, so that each read is one request: all
# around the failing MiB (blocks 128-143), and some far from it.
failed=()
for i in 0 1 64 $(seq 120 151) 200 255; do
	if ! dd if=$mnt/guest/vda.raw of=$TEST_TMPDIR/blk bs=64k skip=$i count=1 \
		iflag=direct status=none 2>$TEST_TMPDIR/err; then
		grep -q "Input/output error" $TEST_TMPDIR/err || fail "block $i: $(cat $TEST_TMPDIR/err)"
		failed+=("$i")
		continue
	fi
	cmp -s $TEST_TMPDIR/blk <(dd if=$good bs=64k skip=$i count=1 status=none) ||
		fail "block $i differs from the disk"
done
[ "${failed[*]}" = "$(seq -s ' ' 128 143)" ] || fail "failed blocks: ${failed[*]}"
grep -q "guest guest disk vda.raw: read of snapshot $vg/.* failed: Input/output error" \
	"$SNAPFS_LOG" || fail "the read error was not logged"
exec 3<&-
wait_snapfs_lvs $vg 0
echo "dm-error: ok (EIO for blocks ${failed[0]}-${failed[-1]} only)"
