#!/bin/bash
# Disk sources are resolved again when a set is made, not taken from a
# listing: an LV renamed and another renamed into its place between the
# listing and the open never hands out the wrong LV's bytes.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate lvrename fusermount3

vg=snapfs_swap
setup_vg $vg 128
make_lv $vg a 8M
make_lv $vg b 8M
fill_random /dev/$vg/a
fill_random /dev/$vg/b
# The guest names its disk by the LV's stable id, as many hosts do.
id=/dev/disk/by-id/dm-uuid-LVM-$(vgs --noheadings -o vg_uuid $vg | tr -d ' -')$(lvs --noheadings -o lv_uuid $vg/a | tr -d ' -')
wait_for -t 30 test -e "$id" || fail "no $id"
want=$(sha_file /dev/$vg/a)
test_tmpdir
xml=$TEST_TMPDIR/node.xml
one_guest_xml $xml guest "$id"
mnt=/tmp/snapfs-swap
# A listing kept for an hour: only a fresh resolution at open can be right.
snapfs_start "test://$xml" $mnt -o cache=3600,freeze=off,debug_areas=guests
ls -l $mnt/guest >/dev/null
[ "$(getfattr --absolute-names --only-values -n user.snapfs.origin $mnt/guest/vda.raw)" = "$vg/a" ] ||
	fail "origin before the swap"
# Unchanged since the listing: device-mapper vouches for the LV, no lvs.
fast() { grep -c "guest guest: disks resolved again without lvs" "$SNAPFS_LOG" || true; }
[ "$(sha_file $mnt/guest/vda.raw)" = "$want" ] || fail "bytes before the swap"
[ "$(fast)" = 1 ] || fail "an open of an unchanged guest ran lvs"
wait_snapfs_lvs $vg 0
lvrename -q $vg a moved >/dev/null && lvrename -q $vg b a >/dev/null || fail "lvrename"
[ "$(sha_file $mnt/guest/vda.raw)" = "$want" ] || fail "read another LV's bytes after the swap"
[ "$(fast)" = 1 ] || fail "the swapped LV was taken from the listing, not from lvs"
exec 3<$mnt/guest/vda.raw
snap=$(getfattr --absolute-names --only-values -n user.snapfs.snapshot $mnt/guest/vda.raw)
[ "$(lvs --noheadings -o origin "$snap" | tr -d ' ')" = moved ] || fail "snapshot of the wrong LV"
exec 3<&-
wait_snapfs_lvs $vg 0
echo "swap: ok"
