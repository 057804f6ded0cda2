#!/bin/bash
# Laziness: listing, stat and xattrs make no snapshot; any number of open
# files of a guest hold exactly one snapshot per disk; the last close removes
# them; unmounting with files open removes them too.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate sfdisk virsh fusermount3 getfattr

vg=snapfs_lazy
setup_vg $vg 256
for lv in a1 a2 b1; do make_lv $vg $lv 16M; done
printf 'label: dos\nstart=2048, size=8192, type=83\nstart=10240, size=8192, type=83\n' |
	sfdisk -q --no-reread /dev/$vg/a1
xml=/tmp/lazy-node.xml
{
	echo "<node>"
	virt_domain alpha "$(disk_block vda /dev/$vg/a1; disk_block vdb /dev/$vg/a2)"
	virt_domain beta "$(disk_block vda /dev/$vg/b1)"
	echo "</node>"
} >$xml
add_cleanup "rm -f $xml"
mnt=/tmp/snapfs-lazy
snapfs_start "test://$xml" $mnt

ls -lR $mnt >/dev/null
stat $mnt/alpha/vda1.raw >/dev/null
getfattr --absolute-names -d -m - $mnt/alpha/*.raw >/dev/null 2>&1
find $mnt -type f -size +0 >/dev/null
du -s $mnt >/dev/null
assert_snapfs_lvs $vg 0

exec 3<$mnt/alpha/vda.raw 4<$mnt/alpha/vda1.raw 5<$mnt/alpha/vdb.raw 6<$mnt/alpha/vda2.raw
assert_snapfs_lvs $vg 2
# while held, stat shows the snapshot's instant and xattrs name it
getfattr --absolute-names -n user.snapfs.snapshot $mnt/alpha/vda.raw >/dev/null || fail "no snapshot xattr"
getfattr --absolute-names -n user.snapfs.time $mnt/alpha/vda.raw >/dev/null || fail "no time xattr"
exec 7<$mnt/beta/vda.raw
assert_snapfs_lvs $vg 3
exec 3<&- 4<&- 5<&-
sleep 0.5
assert_snapfs_lvs $vg 3   # fd 6 still holds alpha's set
exec 6<&-
wait_snapfs_lvs $vg 1
exec 7<&-
wait_snapfs_lvs $vg 0

# The mtime a listing shows is the one the next set's files show (a stat
# before an open agrees with an fstat after); after the set is removed the
# listing shows a new one, and two successive sets never share one.
m1=$(stat -c %y $mnt/alpha/vda.raw)
exec 3<$mnt/alpha/vda.raw; s1=$(stat -c %y $mnt/alpha/vda.raw); exec 3<&-
wait_snapfs_lvs $vg 0
m2=$(stat -c %y $mnt/alpha/vda.raw)
exec 3<$mnt/alpha/vda.raw; s2=$(stat -c %y $mnt/alpha/vda.raw); exec 3<&-
[ "$m1" = "$s1" ] || fail "the listing showed $m1, the set that followed $s1"
[ "$m2" != "$s1" ] || fail "after the set was removed the listing still shows its mtime"
[ "$s1" != "$s2" ] || fail "two snapshots share an mtime ($s1)"
wait_snapfs_lvs $vg 0

# Unmount (SIGTERM) with files still open: every snapshot goes.
exec 3<$mnt/alpha/vda.raw 4<$mnt/beta/vda.raw
assert_snapfs_lvs $vg 3
kill -TERM "$SNAPFS_PID"
snapfs_wait_exit || fail "snapfs failed on SIGTERM"
exec 3<&- 4<&-
assert_snapfs_lvs $vg 0
echo "laziness: ok"
