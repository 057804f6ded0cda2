#!/bin/bash
# The qcow2 decoder's benchmark, natively (no VM, no device-mapper): how
# fast snapfs serves a qcow2 disk decoded, against its own raw view of the
# same bytes and against qemu-storage-daemon's FUSE export of the same
# image through qemu's qcow2 driver.  Not a test: it prints a table and a
# line per target; see docs/performance.md.
#
# A fully allocated, uncompressed qcow2 image (64 KiB clusters) of random
# bytes and the raw image it was made from sit side by side on XFS, on a
# loop device over a file on this machine's disk (/var/tmp, not tmpfs).
# One libvirt test-driver host has two guests on them; snapfs serves both
# (an open clones each file), qemu-storage-daemon exports a reflink copy of
# the qcow2 image (cache.direct=on, as snapfs reads with O_DIRECT).  Each
# round reads each of the three with dd bs=1M, caches dropped before every
# read, in an order that rotates from round to round; medians are printed.
#
#   SNAPFS_BENCH_QUICK=1    256 MiB, 3 rounds (else 2048 MiB, 5 rounds)
#   SNAPFS_BENCH_DISK_MIB   the disk's size
#   SNAPFS_BENCH_ROUNDS     rounds
#   SNAPFS_BENCH_DIR        where the XFS image file goes (/var/tmp)
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
. "$(dirname -- "$0")/lib-native.sh" || exit 99
requires_root
requires mkfs.xfs losetup qemu-img fusermount3 dd awk "${CC:-cc}"

if [ "${SNAPFS_BENCH_QUICK:-0}" = 1 ]; then
	disk_mib=${SNAPFS_BENCH_DISK_MIB:-256} rounds=${SNAPFS_BENCH_ROUNDS:-3}
else
	disk_mib=${SNAPFS_BENCH_DISK_MIB:-2048} rounds=${SNAPFS_BENCH_ROUNDS:-5}
fi
use_qsd=1
command -v qemu-storage-daemon >/dev/null 2>&1 || use_qsd=0

test_tmpdir
work=$TEST_TMPDIR
trap 'rc=$?; exec 3<&- 4<&-; (exit $rc); _run_cleanups' EXIT

bench_xfs $((disk_mib * 3 + 512))
fs=$FS

log "making a ${disk_mib} MiB disk of random bytes, and its qcow2 image (64 KiB clusters)"
build_benchtool
"$BT" fill $((disk_mib << 20)) 7 "$fs/raw.img" || fail "benchtool fill"
qemu-img convert -q -f raw -O qcow2 -o cluster_size=65536 "$fs/raw.img" "$fs/disk.qcow2" ||
	fail "qemu-img convert"
cp --reflink=always "$fs/disk.qcow2" "$fs/qsd.qcow2" || fail "reflink copy for qemu-storage-daemon"
sync -f "$fs"

xml=$work/node.xml
node_xml "$xml" raw "$(disk_file vda "$fs/raw.img")" q "$(disk_file vda "$fs/disk.qcow2" qcow2)"
mnt=$work/mnt
snapfs_start "test://$xml" "$mnt" -o freeze=off
pid=$SNAPFS_PID
# Hold both sets: the rounds measure reads, not clones.
exec 3<"$mnt/raw/vda.raw" 4<"$mnt/q/vda.raw"

qsd_file=$work/qsd.raw
[ $use_qsd = 0 ] || qsd_export qcow2 "$fs/qsd.qcow2" "$qsd_file" "" "" qcow2

# ---- rounds -----------------------------------------------------------------
res=$work/results # round what usecs cputicks
readers=(raw qcow2)
[ $use_qsd = 0 ] || readers+=(qsd)
for ((r = 1; r <= rounds; r++)); do
	for ((i = 0; i < ${#readers[@]}; i++)); do
		what=${readers[(i + r) % ${#readers[@]}]}
		case $what in
		raw) f=$mnt/raw/vda.raw ;;
		qcow2) f=$mnt/q/vda.raw ;;
		qsd) f=$qsd_file ;;
		esac
		drop_caches
		c0=$(cpu_ticks "$pid")
		t0=$(now_us)
		dd if="$f" of=/dev/null bs=1M status=none || fail "dd of $f"
		t1=$(now_us)
		echo "$r $what $((t1 - t0)) $(($(cpu_ticks "$pid") - c0))" >>"$res"
	done
	log "round $r of $rounds done"
done
# The decoded disk is what the guest sees: the raw image, byte for byte.
cmp "$mnt/raw/vda.raw" "$mnt/q/vda.raw" || fail "the decoded disk differs from the raw image"
hwm=$(hwm_kib "$pid")

# ---- the table --------------------------------------------------------------
echo "snapfs qcow2 benchmark: $(date -u +%Y-%m-%dT%H:%MZ), $(machine)"
echo "disk ${disk_mib} MiB, qcow2 64 KiB clusters fully allocated, on $FS_WHERE; $rounds rounds, dd bs=1M, cold"
awk -v mib="$disk_mib" -v tck="$clk_tck" -v hwm="$hwm" -v qsd=$use_qsd "$AWK_MEDIAN"'
{ us[$2] = us[$2] " " $3; cpu[$2] = cpu[$2] " " $4 }
END {
	gib = mib / 1024
	for (w in us) {
		mbs[w] = mib * 1048576 / 1e6 / (median(us[w]) / 1e6)
		cs[w] = median(cpu[w]) / tck / gib
	}
	printf "%-34s %10s %12s\n", "reader", "MB/s", "CPU s/GiB"
	printf "%-34s %10.0f %12.3f\n", "snapfs raw view (vda.raw of raw)", mbs["raw"], cs["raw"]
	printf "%-34s %10.0f %12.3f\n", "snapfs decoded qcow2 (vda.raw)", mbs["qcow2"], cs["qcow2"]
	if (qsd)
		printf "%-34s %10.0f %12s\n", "qemu-storage-daemon FUSE, qcow2", mbs["qsd"], "-"
	printf "snapfs peak RSS: %d KiB\n", hwm
	r1 = mbs["qcow2"] / mbs["raw"]
	printf "target: decoded >= 0.8x the raw view: %.2fx %s\n", r1, (r1 >= 0.8 ? "met" : "NOT met")
	if (qsd) {
		r2 = mbs["qcow2"] / mbs["qsd"]
		printf "target: decoded >= 2x qemu-storage-daemon: %.2fx %s\n", r2,
			(r2 >= 2 ? "met" : "NOT met")
	}
	printf "target: RSS < 64 MiB: %.1f MiB %s\n", hwm / 1024, (hwm < 65536 ? "met" : "NOT met")
}' "$res"
