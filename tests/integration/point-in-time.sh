#!/bin/bash
# Point in time: an open file keeps returning the snapshot's bytes while the
# origin is overwritten, and so does a second file of the guest opened later;
# after the last close a new open sees the new bytes.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate sfdisk virsh fusermount3 sha256sum

vg=snapfs_pit
setup_vg $vg 128
make_lv $vg disk 16M
fill_random /dev/$vg/disk
printf 'label: dos\nstart=2048, size=8192, type=83\n' | sfdisk -q --no-reread /dev/$vg/disk
old_disk=$(sha_file /dev/$vg/disk)
old_part=$(sha_at /dev/$vg/disk $((2048 * 512)) $((8192 * 512)))

xml=/tmp/pit-node.xml
one_guest_xml $xml guest /dev/$vg/disk
mnt=/tmp/snapfs-pit
snapfs_start "test://$xml" $mnt -o cow_size=32M

exec 3<"$mnt/guest/vda.raw"
head -c 1M <&3 >/dev/null      # part of the file read before the change
fill_random /dev/$vg/disk      # the guest writes everything, table included
new_disk=$(sha_file /dev/$vg/disk)
[ "$new_disk" != "$old_disk" ] || fail "origin did not change"

# The rest of the open file, then the whole of it again through a new open
# of the same file and of a partition file while the set is held.
[ "$(sha_file "$mnt/guest/vda.raw")" = "$old_disk" ] || fail "held disk shows new bytes"
[ "$(sha_file "$mnt/guest/vda1.raw")" = "$old_part" ] || fail "held partition shows new bytes"
rest_sha=$( (head -c 1M "$mnt/guest/vda.raw"; cat <&3) | sha256sum | cut -d' ' -f1)
[ "$rest_sha" = "$old_disk" ] || fail "the open fd shows new bytes"
assert_snapfs_lvs $vg 1
exec 3<&-
wait_snapfs_lvs $vg 0

# A fresh set has the new bytes; stat's mtime moved on.
[ "$(sha_file "$mnt/guest/vda.raw")" = "$new_disk" ] || fail "new open shows old bytes"
wait_snapfs_lvs $vg 0
echo "point-in-time: ok"
