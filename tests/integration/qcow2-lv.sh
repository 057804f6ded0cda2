#!/bin/bash
# qcow2 images inside LVs, the setup snapfs was born from (virt-install onto
# a VG, oVirt/RHV block storage): vda.raw is the disk qemu-img makes of the
# image and its chain, each partition its region, vda.qcow2 the LV cut where
# the image ends.  Backing chains of two and three LVs (backing names bare,
# /dev/VG/LV and oVirt's ../IMAGE/LV) are snapshotted in one set, at one
# instant: a layer rewritten while the disk is open does not show.  A
# backing name out of the VG, and a loop, leave the container only, with a
# line saying why.  Every snapshot goes with the set.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-qcow2.sh" || exit 99
requires lvcreate fusermount3 getfattr

vg=snapfs_qcow2
other=snapfs_qother
setup_vg $vg 900
setup_vg $other 16
make_lv $other elsewhere 8M
for lv in single base mid top base2 ovtop outside loopa loopb; do make_lv $vg $lv 40M; done

# single: an MBR with two partitions, 64 KiB clusters, zero and data ranges.
raw_with_table "$TEST_TMPDIR/single.raw" 32 dos
qemu-img convert -q -f raw -O qcow2 -o cluster_size=65536 -n "$TEST_TMPDIR/single.raw" \
	/dev/$vg/single 2>/dev/null ||
	{ qemu-img create -q -f qcow2 /dev/$vg/single 32M &&
		qemu-img convert -q -f raw -O qcow2 -n "$TEST_TMPDIR/single.raw" /dev/$vg/single; } ||
	fail "qcow2 into /dev/$vg/single"
qio /dev/$vg/single "write -z 20M 1M"

# A chain of three: top -> mid (/dev/VG/mid) -> base (bare name).
raw_with_table "$TEST_TMPDIR/base.raw" 32 gpt
qemu-img create -q -f qcow2 /dev/$vg/base 32M || fail "create base"
qemu-img convert -q -f raw -O qcow2 -n "$TEST_TMPDIR/base.raw" /dev/$vg/base || fail "fill base"
qemu-img create -q -f qcow2 -b base -F qcow2 /dev/$vg/mid 32M || fail "create mid"
qio /dev/$vg/mid "write -P 0x61 4M 2M" "write -z 8M 1M"
qemu-img create -q -f qcow2 -b /dev/$vg/mid -F qcow2 /dev/$vg/top 32M || fail "create top"
qio /dev/$vg/top "write -P 0x62 5M 64K" "write -c -P 0x63 12M 1M"
# oVirt's name for a layer: ../IMAGE-UUID/VOLUME, over a two-layer chain.
qemu-img create -q -f qcow2 /dev/$vg/base2 32M && qio /dev/$vg/base2 "write -P 0x71 0 6M" ||
	fail "create base2"
qemu-img create -q -f qcow2 -b base2 -F qcow2 /dev/$vg/ovtop 32M || fail "create ovtop"
qio /dev/$vg/ovtop "write -P 0x72 1M 1M"
qemu-img rebase -q -u -f qcow2 -b ../5e1c8a3b-0000-4000-8000-00000000abcd/base2 -F qcow2 \
	/dev/$vg/ovtop || fail "rebase ovtop"
# Refused: a layer in another VG, and a loop.
qemu-img create -q -f qcow2 -b ../$other/elsewhere -F raw -u /dev/$vg/outside 32M
qemu-img create -q -f qcow2 -b loopb -F qcow2 -u /dev/$vg/loopa 32M
qemu-img create -q -f qcow2 -b loopa -F qcow2 -u /dev/$vg/loopb 32M

xml=/tmp/qcow2-lv-node.xml
add_cleanup "rm -f $xml"
{
	echo "<node>"
	virt_domain one "$(disk_block vda /dev/$vg/single qcow2)"
	virt_domain chain "$(disk_block vda /dev/$vg/top qcow2; disk_block vdb /dev/$vg/ovtop qcow2)"
	virt_domain bad "$(disk_block vda /dev/$vg/outside qcow2; disk_block vdb /dev/$vg/loopa qcow2)"
	echo "</node>"
} >"$xml"
mnt=/tmp/snapfs-qcow2-lv
snapfs_start "test://$xml" $mnt -o cow_size=100%ORIGIN

exec 3<"$mnt/one/vda.raw"
check_decoded "$mnt/one" vda /dev/$vg/single
[ "$(ls $mnt/one | tr '\n' ' ')" = "domain.xml vda.qcow2 vda.raw vda1.raw vda2.raw " ] ||
	fail "one: $(ls $mnt/one | tr '\n' ' ')"
exec 3<&-

# The chains: one set, every layer snapshotted.
exec 3<"$mnt/chain/vda.raw"
[ "$(snapfs_lv_count $vg)" = 5 ] || fail "$(snapfs_lv_count $vg) snapshots for 5 layers: $(lvs --noheadings -o lv_name $vg)"
for l in top mid base ovtop base2; do
	grep -q "origin=$vg/$l snapshot=" "$mnt/.snapfs-status" || fail "no snapshot of $l in the status"
done
check_decoded "$mnt/chain" vda /dev/$vg/top
[ "$(xattr_of "$mnt/chain/vda.raw" backing)" = "$vg/mid $vg/base" ] ||
	fail "chain's backing xattr: $(xattr_of "$mnt/chain/vda.raw" backing)"
# Layers rewritten while the disk is open: not seen.
before=$(sha_file "$mnt/chain/vda.raw")
qio /dev/$vg/base "write -P 0x99 0 32M"
qio /dev/$vg/mid "write -P 0x98 0 16M"
[ "$(sha_file "$mnt/chain/vda.raw")" = "$before" ] || fail "the chain shows writes made after its snapshot"
ov='json:{"driver":"qcow2","file":{"driver":"host_device","filename":"/dev/'$vg'/ovtop"},'
ov+='"backing":{"driver":"qcow2","file":{"driver":"host_device","filename":"/dev/'$vg'/base2"}}}'
qemu-img convert -O raw "$ov" "$TEST_TMPDIR/ov.raw" || fail "qemu-img convert of the oVirt chain"
[ "$(sha_file "$mnt/chain/vdb.raw")" = "$(sha_file "$TEST_TMPDIR/ov.raw")" ] ||
	fail "vdb.raw (oVirt chain) is not what qemu-img makes of it"
[ "$(xattr_of "$mnt/chain/vdb.raw" backing)" = "$vg/base2" ] || fail "vdb's backing xattr"
exec 3<&-
wait_snapfs_lvs $vg 0

# Refused chains: the container, and why.
[ "$(ls $mnt/bad | tr '\n' ' ')" = "domain.xml vda.qcow2 vdb.qcow2 " ] || fail "bad: $(ls $mnt/bad | tr '\n' ' ')"
grep -q "guest bad disk vda: .*not decoded: it leaves the image's VG" "$SNAPFS_LOG" ||
	fail "no line for the backing file in another VG"
grep -q "guest bad disk vdb: .*not decoded: its backing chain is a loop" "$SNAPFS_LOG" ||
	fail "no line for the loop"
cmp "$mnt/bad/vda.qcow2" /dev/$vg/outside || fail "bad's vda.qcow2 is not its LV"
wait_snapfs_lvs $vg 0
[ "$(snapfs_lv_count $other)" = 0 ] || fail "a snapshot was taken in $other"
echo "qcow2-lv: ok"
