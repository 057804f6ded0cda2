#!/bin/bash
# Guest consistency: a running guest's filesystems are frozen for the
# lvcreate calls of its set and thawed after, also when an lvcreate fails;
# a guest whose freeze fails gets a crash-consistent set under freeze=auto
# and an EIO under freeze=require.  The test driver freezes and thaws; a
# real libvirtd guest running without a guest agent cannot be frozen.
. "$(dirname -- "$0")/../functions.sh" || exit 99
requires lvcreate fusermount3 getfattr libvirtd virsh unshare qemu-system-x86_64
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
in_private_namespace "$@"

vg=snapfs_freeze
setup_vg $vg 128
make_lv $vg disk 16M
make_lv $vg big 48M
test_tmpdir
xml=$TEST_TMPDIR/node.xml
one_guest_xml $xml guest /dev/$vg/disk
mnt=/tmp/snapfs-freeze
attr() { getfattr --absolute-names --only-values -n "user.snapfs.$2" "$1"; }

# 1. The test driver's running guest is frozen, snapshotted, thawed.
snapfs_start "test://$xml" $mnt
exec 3<$mnt/guest/vda.raw
[ "$(attr $mnt/guest/vda.raw consistency)" = frozen ] || fail "not frozen"
grep -q "^  consistency: frozen$" $mnt/.snapfs-status || fail "status: not frozen"
exec 3<&-
wait_snapfs_lvs $vg 0
grep -q "guest guest: filesystems thawed after" "$SNAPFS_LOG" || fail "no thaw logged"
snapfs_stop $mnt

# 2. Thaw follows a failed lvcreate: a filler leaves no room for the COW
# area (lvcreate caps a classic COW area near the origin's size, so a large
# cow_size alone would not do).
make_lv $vg filler 48M
snapfs_start "test://$xml" $mnt -o cow_size=16M
cat $mnt/guest/vda.raw >/dev/null 2>&1 && fail "open succeeded without room"
sed -n '/snapshot of .* failed/,$p' "$SNAPFS_LOG" | grep -q "filesystems thawed" ||
	{ cat "$SNAPFS_LOG" >&2; fail "no thaw after the failed lvcreate"; }
assert_snapfs_lvs $vg 0
snapfs_stop $mnt
lvremove -q -y $vg/filler >/dev/null

# 3. A running qemu guest without a guest agent cannot be frozen.
start_private_libvirtd
cat >$TEST_TMPDIR/vm.xml <<X
<domain type='qemu'>
  <name>noagent</name>
  <memory unit='MiB'>32</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/$vg/big'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <video><model type='none'/></video>
  </devices>
</domain>
X
virsh -q -c qemu:///system define $TEST_TMPDIR/vm.xml >/dev/null || fail "define"
add_cleanup "virsh -q -c qemu:///system undefine noagent >/dev/null 2>&1 || true"
virsh -q -c qemu:///system start noagent >/dev/null || fail "start"
add_cleanup "virsh -q -c qemu:///system destroy noagent >/dev/null 2>&1 || true"

snapfs_start qemu:///system $mnt -o freeze=auto,cow_size=8M
sum=$(sha_file $mnt/noagent/vda.raw) || fail "freeze=auto: read failed"
wait_snapfs_lvs $vg 0
grep -q "guest noagent: freezing its filesystems failed (.*); taking a crash-consistent snapshot" \
	"$SNAPFS_LOG" || fail "no warning under auto"
exec 3<$mnt/noagent/vda.raw
[ "$(attr $mnt/noagent/vda.raw consistency)" = crash ] || fail "auto: consistency not crash"
exec 3<&-
wait_snapfs_lvs $vg 0
snapfs_stop $mnt

snapfs_start qemu:///system $mnt -o freeze=require,cow_size=8M
if out=$(cat $mnt/noagent/vda.raw 2>&1 >/dev/null); then
	fail "freeze=require read a guest that cannot be frozen"
fi
case $out in *"Input/output error"*) ;; *) fail "require: expected EIO, got: $out" ;; esac
grep -q "guest noagent: freezing its filesystems failed .*freeze=require" "$SNAPFS_LOG" ||
	fail "no error under require"
assert_snapfs_lvs $vg 0
echo "freeze: ok"
