#!/bin/bash
# A classic snapshot whose COW area fills while a file is open: from then on
# every read of the set fails with EIO (never zeroes, never the new bytes);
# it is logged once with guest, disk and advice; release removes it and the
# next open takes a fresh set.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate fusermount3 cmp

vg=snapfs_cow
setup_vg $vg 128
make_lv $vg disk 32M
fill_random /dev/$vg/disk
test_tmpdir
old=$TEST_TMPDIR/old.img
dd if=/dev/$vg/disk of=$old bs=1M status=none
xml=$TEST_TMPDIR/node.xml
one_guest_xml $xml guest /dev/$vg/disk
mnt=/tmp/snapfs-cow
snapfs_start "test://$xml" $mnt -o cow_size=4M

exec 3<$mnt/guest/vda.raw
dd bs=1M count=1 iflag=fullblock status=none <&3 | cmp -s - <(head -c 1M $old) || fail "first MiB differs"
# The guest rewrites 24 MiB: far more than the 4 MiB COW area holds.
dd if=/dev/urandom of=/dev/$vg/disk bs=1M count=24 oflag=direct status=none
lvs --noheadings -o lv_attr -S 'lv_tags=snapfs' $vg | grep -q '^ *s.*I' ||
	lvs -o lv_name,lv_attr,snap_percent $vg >&2

# Reads through the open file and through a new open of the same set fail;
# whatever came before the error is the old disk's.
partial=$TEST_TMPDIR/partial
if out=$(cat <&3 2>&1 >$partial); then
	fail "reading an overflowed snapshot succeeded"
fi
case $out in *"Input/output error"*) ;; *) fail "expected EIO, got: $out" ;; esac
if [ -s $partial ]; then
	cmp -s -n "$(stat -c %s $partial)" $partial <(tail -c +$((1024 * 1024 + 1)) $old) ||
		fail "bytes read before the error are not the snapshot's"
fi
if out=$(dd if=$mnt/guest/vda.raw of=/dev/null bs=1M skip=20 count=1 2>&1); then
	fail "a second open read an overflowed snapshot"
fi
case $out in *"Input/output error"*) ;; *) fail "expected EIO on second open, got: $out" ;; esac
exec 3<&-
wait_snapfs_lvs $vg 0
[ "$(grep -c 'is invalid (its COW area filled up)' "$SNAPFS_LOG")" = 1 ] ||
	fail "overflow not logged exactly once"
grep -q "guest guest disk vda.raw: snapshot $vg/" "$SNAPFS_LOG" || fail "log lacks guest and disk"

# A fresh set has the new bytes.
cmp -s $mnt/guest/vda.raw /dev/$vg/disk || fail "the next set differs from the origin"
wait_snapfs_lvs $vg 0
echo "cow-overflow: ok"
