#!/bin/bash
# No room for the COW area: the open fails with ENOSPC, the log names the
# guest, the disk and lvcreate's words, and no LV is left behind, also when
# the first disk of the set was snapshotted before the second failed.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate virsh fusermount3

vg=snapfs_nospc
setup_vg $vg 64
make_lv $vg d1 16M
make_lv $vg d2 16M
# 64M VG, 32M used: room for one 20M COW area, not two.
xml=/tmp/nospc-node.xml
one_guest_xml $xml guest /dev/$vg/d1 /dev/$vg/d2
mnt=/tmp/snapfs-nospc
snapfs_start "test://$xml" $mnt -o cow_size=20M

lvs_before=$(lvs --noheadings -o lv_name $vg | sort)
for f in vda.raw vdb.raw; do
	if out=$(cat "$mnt/guest/$f" 2>&1 >/dev/null); then
		fail "open of $f succeeded without room for its snapshot"
	fi
	case $out in
	*"No space left on device"*) ;;
	*) fail "open of $f: expected ENOSPC, got: $out" ;;
	esac
done
assert_snapfs_lvs $vg 0
[ "$(lvs --noheadings -o lv_name $vg | sort)" = "$lvs_before" ] || fail "LVs changed"
grep -q "guest guest disk vdb: snapshot of $vg/d2 failed: .*insufficient free space" "$SNAPFS_LOG" ||
	{ cat "$SNAPFS_LOG" >&2; fail "log does not name guest, disk and lvcreate's words"; }

# With room for both the same open works.
snapfs_stop $mnt
snapfs_start "test://$xml" $mnt -o cow_size=8M
cmp -s "$mnt/guest/vda.raw" /dev/$vg/d1 || fail "vda.raw differs from the origin"
wait_snapfs_lvs $vg 0
echo "enospc: ok"
