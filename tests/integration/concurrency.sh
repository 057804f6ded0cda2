#!/bin/bash
# Many at once: 20 guests opened together, open/close cycles of one file
# from 8 readers, and a reader killed while its open waits on lvcreate.  No
# leaked snapshot or fd, no deadlock, and listings go on meanwhile.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate fusermount3

vg=snapfs_many
setup_vg $vg 512
test_tmpdir
xml=$TEST_TMPDIR/node.xml
{
	echo "<node>"
	for i in $(seq -w 1 20); do
		lvcreate -q -y -n g$i -L 4M $vg >/dev/null || fail "lvcreate g$i"
		virt_domain g$i "$(disk_block vda /dev/$vg/g$i)"
	done
	echo "</node>"
} >$xml
mnt=/tmp/snapfs-many
# 20 lvcreates queue on one VG lock: under emulation on a busy machine the
# last waits minutes, which is not what this test is about.
snapfs_start "test://$xml" $mnt -o freeze=off,cow_size=4M,lvm_timeout=900
fds() { ls /proc/$SNAPFS_PID/fd | wc -l; }
fds_before=$(fds)

# 20 guests opened at once, each held by its own reader.
pids=()
for i in $(seq -w 1 20); do
	(exec 3<$mnt/g$i/vda.raw && head -c 4096 <&3 >/dev/null && exec sleep 600) &
	pids+=($!)
done
add_cleanup "kill ${pids[*]} 2>/dev/null || true"
# Listing is not held up by the lvcreate calls under way.
[ "$(ls $mnt | wc -l)" = 20 ] || fail "listing during creation"
stat $mnt/g07/vda.raw >/dev/null || fail "stat during creation"
SNAPFS_WAIT_TIMEOUT=300 wait_snapfs_lvs $vg 20
kill "${pids[@]}"
wait "${pids[@]}" 2>/dev/null || true
wait_snapfs_lvs $vg 0

# 8 readers opening and closing one file, overlapping (scaled to the VM:
# every cycle that finds the set released makes a new one).
for r in $(seq 8); do
	(for c in $(seq 3); do
		head -c 65536 $mnt/g01/vda.raw >/dev/null || exit 1
	done) &
	pids+=($!)
done
for p in "${pids[@]: -8}"; do
	wait "$p" || fail "a reader failed"
done
wait_snapfs_lvs $vg 0

# A reader killed while its open waits for lvcreate.
cat $mnt/g02/vda.raw >/dev/null &
victim=$!
sleep 0.3
kill -KILL $victim
wait $victim 2>/dev/null || true
wait_snapfs_lvs $vg 0
cmp -s $mnt/g02/vda.raw /dev/$vg/g02 || fail "g02 after the killed open"
wait_snapfs_lvs $vg 0

# A discovery under way holds the pipes of its lvs for a moment.
fds_now() { [ "$(fds)" = "$fds_before" ]; }
wait_for -t 300 fds_now || fail "snapfs holds $(fds) fds, $fds_before at start"
grep -q "error" "$SNAPFS_LOG" && { cat "$SNAPFS_LOG" >&2; fail "errors logged"; }
echo "concurrency: ok"
