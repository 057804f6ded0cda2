#!/bin/bash
# LVM's own growth of a classic snapshot keeps working under snapfs: the
# snapshot snapfs makes is monitored by dmeventd, which grows its COW area
# (activation/snapshot_autoextend_threshold and _percent) while a file is
# open and the guest writes, twice; the file still reads as the disk was at
# the open, with no EIO, and the close removes the snapshot.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate lvmconfig dmeventd fusermount3 cmp

# Grow a snapshot by 100% of its size once it is half full.
lvm_test_config 'activation/monitoring = 1' \
	'activation/snapshot_autoextend_threshold = 50' \
	'activation/snapshot_autoextend_percent = 100'

# A dmeventd of the test's own: it reads LVM's configuration from its
# environment.  One that runs already (the host's) would read the host's.
if [ -e /run/dmeventd.pid ] && kill -0 "$(cat /run/dmeventd.pid)" 2>/dev/null; then
	skip "a dmeventd runs already; it would not read this test's LVM configuration"
fi
gone() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	[ "${stat%% *}" = Z ]
}
dmeventd_log=$TEST_TMPDIR/dmeventd.log
dmeventd -f -l >"$dmeventd_log" 2>&1 &
dmeventd_pid=$!
# It exits on TERM once it monitors nothing: the cleanups of the VG and of
# snapfs, added later, run before this one.
add_cleanup "kill -TERM $dmeventd_pid; wait_for -t 30 gone $dmeventd_pid ||
	{ kill -KILL $dmeventd_pid; false; }"
add_cleanup "[ \"\${rc:-0}\" = 0 ] || { echo '--- dmeventd log:' >&2; cat '$dmeventd_log' >&2; }"
wait_for -t 60 grep -q 'ready for processing' "$dmeventd_log" || fail "dmeventd did not start"

vg=snapfs_autoext
setup_vg $vg 128
make_lv $vg disk 32M
fill_random /dev/$vg/disk
old=$(sha_file /dev/$vg/disk)
xml=$TEST_TMPDIR/node.xml
one_guest_xml $xml guest /dev/$vg/disk
mnt=/tmp/snapfs-autoext
snapfs_start "test://$xml" $mnt -o cow_size=8M

exec 3<$mnt/guest/vda.raw
assert_snapfs_lvs $vg 1
snap=$(lvs --noheadings -o lv_name -S lv_tags=snapfs $vg | tr -d ' ')
[ "$(lvs --noheadings -o seg_monitor $vg/$snap | tr -d ' ')" = monitored ] ||
	fail "dmeventd does not monitor $vg/$snap"
cow_size() {
	lvs --noheadings --nosuffix --units b -o lv_size $vg/$snap | tr -d ' '
}
cow_larger_than() {
	[ "$(cow_size)" -gt "$1" ]
}
[ "$(cow_size)" = $((8 << 20)) ] || fail "COW area of $(cow_size) bytes, not 8 MiB"

# 6 MiB of new data: 75% of 8 MiB; dmeventd looks every 10 s.
dd if=/dev/urandom of=/dev/$vg/disk bs=1M count=6 oflag=direct status=none
wait_for -t 120 cow_larger_than $((8 << 20)) || fail "the COW area did not grow past 8 MiB"
# 6 MiB more elsewhere: 12 of 16 MiB.
dd if=/dev/urandom of=/dev/$vg/disk bs=1M seek=12 count=6 oflag=direct status=none
wait_for -t 120 cow_larger_than $((16 << 20)) || fail "the COW area did not grow past 16 MiB"
[ "$(grep -c "Logical volume $vg/$snap successfully resized" "$dmeventd_log")" = 2 ] ||
	fail "dmeventd did not resize $vg/$snap twice"
[ "$(sha_file /dev/$vg/disk)" != "$old" ] || fail "the writes did not change the origin"

# The open file and a second open of the held set read the old disk.
got=$(sha256sum <&3 2>&1) || fail "reading the open vda.raw failed: $got"
[ "${got%% *}" = "$old" ] || fail "vda.raw is not the disk as it was"
got=$(sha256sum $mnt/guest/vda.raw 2>&1) || fail "reading vda.raw again failed: $got"
[ "${got%% *}" = "$old" ] || fail "a second open is not the disk as it was"
exec 3<&-
! grep -q 'is invalid' "$SNAPFS_LOG" || fail "snapfs saw the snapshot invalid"
wait_snapfs_lvs $vg 0
no_snapfs_lvs $vg
echo "autoextend: ok"
