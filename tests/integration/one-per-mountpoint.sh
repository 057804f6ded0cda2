#!/bin/bash
# One snapfs per mount point: a second one started on a mount point that a
# snapfs serves refuses at once and sweeps nothing, and so does
# `snapfs --cleanup MOUNTPOINT`; the first one's held set and its reads are
# untouched.  Once the first is unmounted, a new one mounts there.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate fusermount3 cmp

vg=snapfs_onemnt
setup_vg $vg 64
make_lv $vg disk 8M
fill_random /dev/$vg/disk
test_tmpdir
xml=$TEST_TMPDIR/node.xml
one_guest_xml $xml guest /dev/$vg/disk

mnt=/tmp/snapfs-onemnt
snapfs_start "test://$xml" $mnt -o freeze=off
exec 3<$mnt/guest/vda.raw
assert_snapfs_lvs $vg 1
snap=$(getfattr --absolute-names --only-values -n user.snapfs.snapshot $mnt/guest/vda.raw)

# A second snapfs on the same mount point: refused, at once, with a reason.
rc=0
timeout 30 "$SNAPFS_BIN" -f -o freeze=off "test://$xml" $mnt >$TEST_TMPDIR/second.log 2>&1 ||
	rc=$?
[ $rc = 1 ] || fail "a second snapfs on $mnt exited $rc, expected 1: $(cat $TEST_TMPDIR/second.log)"
grep -q "error: another snapfs serves $mnt" $TEST_TMPDIR/second.log ||
	fail "the refusal does not say why: $(cat $TEST_TMPDIR/second.log)"
! grep -q "removed .* snapshot" $TEST_TMPDIR/second.log || fail "the second snapfs swept"
lvs "$snap" >/dev/null 2>&1 || fail "the first snapfs's snapshot $snap is gone"
[ "$(grep -c " $mnt .* - fuse.snapfs " /proc/self/mountinfo)" = 1 ] ||
	fail "expected one snapfs mount on $mnt: $(grep " $mnt " /proc/self/mountinfo)"

# --cleanup of that mount point: refused too.
rc=0
out=$("$SNAPFS_BIN" --cleanup $mnt 2>&1) || rc=$?
[ $rc = 1 ] || fail "--cleanup of a served mount point exited $rc: $out"
case $out in
*"another snapfs serves $mnt"*"nothing removed"*) ;;
*) fail "--cleanup said: $out" ;;
esac
assert_snapfs_lvs $vg 1
cmp -s $mnt/guest/vda.raw /dev/$vg/disk || fail "the held set reads wrong bytes"
cmp -s /proc/self/fd/3 /dev/$vg/disk || fail "the open file reads wrong bytes"

# After the first is gone, the mount point is free again.
exec 3<&-
snapfs_stop $mnt
assert_snapfs_lvs $vg 0
snapfs_start "test://$xml" $mnt -o freeze=off
cmp -s $mnt/guest/vda.raw /dev/$vg/disk || fail "the new mount reads wrong bytes"
wait_snapfs_lvs $vg 0
echo "one-per-mountpoint: ok"
