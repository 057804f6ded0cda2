#!/bin/bash
# A real libvirtd with the qemu driver: defined (shut off) guests appear
# with their LVM disks; a guest defined after the mount appears without a
# remount, and one undefined disappears.  After libvirtd restarts, snapfs
# connects again: guests are listed and opened without a remount.
# libvirtd runs in a private mount namespace with its own configuration, so
# the host's is never touched.
. "$(dirname -- "$0")/../functions.sh" || exit 99
requires libvirtd virsh unshare qemu-system-x86_64 lvcreate sfdisk fusermount3
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
in_private_namespace "$@"

start_private_libvirtd

vg=snapfs_libvirtd
setup_vg $vg 128
make_lv $vg web 16M
make_lv $vg late 8M
fill_random /dev/$vg/web
printf 'label: dos\nstart=2048, size=8192, type=83\n' | sfdisk -q --no-reread /dev/$vg/web

guest_xml() { # NAME DEV
	cat <<X
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='$2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
X
}
guest_xml web /dev/$vg/web >/tmp/web.xml
virsh -q -c qemu:///system define /tmp/web.xml >/dev/null || fail "define web"
add_cleanup "virsh -q -c qemu:///system undefine web >/dev/null 2>&1 || true"

mnt=/tmp/snapfs-libvirtd
snapfs_start qemu:///system $mnt -o cache=0,debug_areas=guests
[ "$(cd $mnt && ls | tr '\n' ' ')" = "web " ] || fail "guests: $(ls $mnt)"
[ "$(cd $mnt/web && ls | tr '\n' ' ')" = "domain.xml vda.raw vda1.raw " ] ||
	fail "web: $(ls $mnt/web)"
grep -q "<name>web</name>" $mnt/web/domain.xml || fail "domain.xml"
cmp -s $mnt/web/vda.raw /dev/$vg/web || fail "vda.raw differs from the origin"
wait_snapfs_lvs $vg 0

guest_xml late /dev/$vg/late >/tmp/late.xml
virsh -q -c qemu:///system define /tmp/late.xml >/dev/null || fail "define late"
add_cleanup "virsh -q -c qemu:///system undefine late >/dev/null 2>&1 || true"
[ -f $mnt/late/vda.raw ] || fail "a guest defined later does not appear: $(ls $mnt)"
virsh -q -c qemu:///system undefine web >/dev/null || fail "undefine web"
wait_for -t 10 test ! -e $mnt/web || fail "an undefined guest is still there"

# snapfs keeps its connection; a restarted daemon is reached anew, and its
# guests are listed and opened.  (Shut-off guests are not frozen: the
# freeze connection is freeze.sh's.)
n0=$(wc -l <$SNAPFS_LOG)
kill "$(cat /run/libvirt/test-libvirtd.pid)" || fail "stopping libvirtd"
# It removes its pid file as it exits.
wait_for -t 60 test ! -e /run/libvirt/test-libvirtd.pid || fail "libvirtd did not stop"
libvirtd --daemon --pid-file=/run/libvirt/test-libvirtd.pid
wait_for -t 60 virsh -c qemu:///system version >/dev/null 2>&1 || fail "libvirtd did not start again"
[ "$(cd $mnt && ls | tr '\n' ' ')" = "late " ] || fail "guests after the restart: $(ls $mnt)"
cmp -s $mnt/late/vda.raw /dev/$vg/late || fail "late/vda.raw after the restart"
grep -q "libvirt connection to qemu:///system closed; connecting again" $SNAPFS_LOG ||
	fail "no reconnection logged"
# Found closed before use, not by a failed listing.
if tail -n +$((n0 + 1)) $SNAPFS_LOG | grep -E "^snapfs: (error|warning):"; then
	fail "errors logged across the restart"
fi
wait_snapfs_lvs $vg 0
echo "libvirtd: ok"
