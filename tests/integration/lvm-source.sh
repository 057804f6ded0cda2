#!/bin/bash
# SOURCE lvm:VG: every ordinary LV is a guest with one disk; snapshots, thin
# pools, LVs of other VGs and snapfs's own are not; no libvirt involved.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate sfdisk fusermount3

vg=snapfs_lvmsrc
setup_vg $vg 256
make_lv $vg web 16M
make_lv $vg db 8M
lvcreate -q -y -s -n usersnap -L 8M $vg/db >/dev/null || fail "user snapshot"
lvcreate -q -y -T -L 32M $vg/pool >/dev/null || fail "thin pool"
lvcreate -q -y -V 16M -T $vg/pool -n thinvol >/dev/null || fail "thin volume"
fill_random /dev/$vg/web
printf 'label: dos\nstart=2048, size=4096, type=83\n' | sfdisk -q --no-reread /dev/$vg/web
fill_random /dev/$vg/thinvol

mnt=/tmp/snapfs-lvmsrc
snapfs_start "lvm:$vg" $mnt
[ "$(cd $mnt && ls | tr '\n' ' ')" = "db thinvol web " ] || fail "guests: $(ls $mnt)"
[ "$(cd $mnt/web && ls | tr '\n' ' ')" = "disk.raw disk1.raw " ] || fail "web: $(ls $mnt/web)"
[ ! -e $mnt/web/domain.xml ] || fail "domain.xml without libvirt"

cmp -s $mnt/web/disk.raw /dev/$vg/web || fail "web differs"
# A thin LV gets a thin snapshot, activated although it skips activation.
exec 3<$mnt/thinvol/disk.raw
snap=$(getfattr --absolute-names --only-values -n user.snapfs.snapshot $mnt/thinvol/disk.raw)
[ "$(lvs --noheadings -o segtype "$snap" | tr -d ' ')" = thin ] || fail "not a thin snapshot"
cmp -s /proc/self/fd/3 /dev/$vg/thinvol || fail "thinvol differs"
exec 3<&-
wait_snapfs_lvs $vg 0
# The user's own snapshot is untouched.
lvs $vg/usersnap >/dev/null 2>&1 || fail "user snapshot removed"
echo "lvm-source: ok"
