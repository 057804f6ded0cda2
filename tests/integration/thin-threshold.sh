#!/bin/bash
# A guest's disk is a thin LV whose pool is past LVM's threshold
# (activation/thin_pool_autoextend_threshold): lvcreate refuses the thin
# snapshot, the open fails with ENOSPC, the log names the guest and the disk
# and quotes lvcreate's words, and no LV is left.  Once the pool is below the
# threshold again the same open works.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate lvextend lvmconfig fusermount3 cmp python3

# No monitoring: no dmeventd may grow the pool behind the test's back.
lvm_test_config 'activation/monitoring = 0' \
	'activation/thin_pool_autoextend_threshold = 70' \
	'activation/thin_pool_autoextend_percent = 20'
vg=snapfs_thin
setup_vg $vg 128
lvcreate -q -y -T -L 32M $vg/pool >/dev/null || fail "lvcreate of the thin pool failed"
lvcreate -q -y -V 64M -T $vg/pool -n disk >/dev/null || fail "lvcreate of the thin LV failed"
# 28 of the pool's 32 MiB: 87.5%, past the 70% threshold.
dd if=/dev/urandom of=/dev/$vg/disk bs=1M count=28 oflag=direct status=none
pool_percent() {
	lvs --noheadings -o data_percent $vg/pool | tr -d ' ' | cut -d. -f1
}
[ "$(pool_percent)" -gt 70 ] || fail "pool at $(pool_percent)%, not past the threshold"

test_tmpdir
xml=$TEST_TMPDIR/node.xml
one_guest_xml $xml guest /dev/$vg/disk
mnt=/tmp/snapfs-thin
snapfs_start "test://$xml" $mnt

lvs_before=$(lvs --noheadings -o lv_name $vg | sort)
got=$(open_errno $mnt/guest/vda.raw)
[ "$got" = ENOSPC ] || fail "open past the pool's threshold: expected ENOSPC, got $got"
assert_snapfs_lvs $vg 0
[ "$(lvs --noheadings -o lv_name $vg | sort)" = "$lvs_before" ] || fail "LVs changed"
no_snapfs_lvs $vg
words="Cannot create new thin volume, free space in thin pool $vg/pool reached threshold."
grep -qxF "snapfs: error: guest guest disk vda: snapshot of $vg/disk failed: $words" \
	"$SNAPFS_LOG" || fail "log lacks guest, disk and lvcreate's words: $words"

# Below the threshold (96 MiB: 29%) the same open takes a thin snapshot.
lvextend -q -L 96M $vg/pool >/dev/null || fail "lvextend of the pool failed"
[ "$(pool_percent)" -lt 70 ] || fail "pool still at $(pool_percent)%"
exec 3<$mnt/guest/vda.raw
assert_snapfs_lvs $vg 1
cmp -s - /dev/$vg/disk <&3 || fail "vda.raw differs from the origin"
exec 3<&-
wait_snapfs_lvs $vg 0
no_snapfs_lvs $vg
echo "thin-threshold: ok"
