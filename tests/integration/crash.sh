#!/bin/bash
# After kill -9 with a set held, the next start at the same mount point
# removes what the dead run left, and `snapfs --cleanup` does so on demand;
# neither touches a user's own snapshot of the same origin nor the set of a
# second snapfs mounted elsewhere.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate fusermount3

vg=snapfs_crash
setup_vg $vg 128
make_lv $vg disk 16M
lvcreate -q -y -s -n usersnap -L 8M $vg/disk >/dev/null || fail "user snapshot"
test_tmpdir
xml=$TEST_TMPDIR/node.xml
one_guest_xml $xml guest /dev/$vg/disk

# A second snapfs, elsewhere, holding a set of the same guest.
other=/tmp/snapfs-crash-other
mkdir -p $other
"$SNAPFS_BIN" -f -o freeze=off "test://$xml" $other >$TEST_TMPDIR/other.log 2>&1 &
other_pid=$!
add_cleanup "fusermount3 -u $other 2>/dev/null; wait $other_pid 2>/dev/null || true"
wait_for -t 60 snapfs_mounted $other || fail "second snapfs did not mount"
exec 5<$other/guest/vda.raw
assert_snapfs_lvs $vg 1

mnt=/tmp/snapfs-crash
snapfs_start "test://$xml" $mnt -o freeze=off
exec 3<$mnt/guest/vda.raw
assert_snapfs_lvs $vg 2
stale=$(getfattr --absolute-names --only-values -n user.snapfs.snapshot $mnt/guest/vda.raw)
snapfs_kill9 $mnt
exec 3<&-
lvs "$stale" >/dev/null 2>&1 || fail "the killed run's snapshot vanished by itself"

# Restart at the same mount point: the leftover goes, nothing else does.
snapfs_start "test://$xml" $mnt -o freeze=off
! lvs "$stale" >/dev/null 2>&1 || fail "leftover $stale not swept at start"
grep -q "removed 1 snapshot(s) left behind by an earlier run on $mnt" "$SNAPFS_LOG" ||
	fail "the sweep was not logged"
assert_snapfs_lvs $vg 1
lvs $vg/usersnap >/dev/null 2>&1 || fail "the user's snapshot was removed"
cmp -s $other/guest/vda.raw /proc/self/fd/5 || fail "the other mount's set is broken"

# kill -9 again; snapfs --cleanup removes it, and says so.
exec 3<$mnt/guest/vda.raw
assert_snapfs_lvs $vg 2
snapfs_kill9 $mnt
exec 3<&-
out=$("$SNAPFS_BIN" --cleanup $mnt) || fail "--cleanup failed"
[ "$out" = "snapfs: removed 1 leftover snapshot(s) of $mnt" ] || fail "--cleanup said: $out"
assert_snapfs_lvs $vg 1
lvs $vg/usersnap >/dev/null 2>&1 || fail "--cleanup removed the user's snapshot"

exec 5<&-
wait_snapfs_lvs $vg 0
lvs $vg/usersnap >/dev/null 2>&1 || fail "the user's snapshot is gone"
echo "crash: ok"
