# shellcheck shell=bash
# What the benchmarks share: timing, the order of a round, a process's CPU
# and peak RSS (bench.sh too); for the native ones (native.sh, qcow2.sh) a
# filesystem that can clone on a loop device over a file on this machine's
# disk, qemu-storage-daemon's exports, the table's medians.  Sourced after
# functions.sh and lib-snapfs.sh.

now_us() { echo "${EPOCHREALTIME/[.,]/}"; }
drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}
# utime + stime of a process (all its threads, dead ones too), in ticks.
cpu_ticks() {
	local s
	s=$(<"/proc/$1/stat")
	s=${s##*) }
	# shellcheck disable=SC2086
	set -- $s
	echo $((${12} + ${13}))
}
# rotated ROUND ITEM...: the items, one per line, starting at the ROUND-th,
# so that no item always goes first.
rotated() {
	local r=$1 i
	shift
	for ((i = 0; i < $#; i++)); do
		echo "${@:(i + r - 1) % $# + 1:1}"
	done
}
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
clk_tck=$(getconf CLK_TCK)
# The machine, for the table's head.
machine() {
	echo "native, $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(($(awk '/MemTotal/ { print $2 }' /proc/meminfo) >> 20)) GiB, kernel $(uname -r)$(page_reporting)"
}

# A VM whose balloon reports free pages to its host (virtio-balloon's free
# page reporting) gets those pages back only by faulting each in again, at
# the host's cost: the first write to memory freed a moment before (the
# page cache that drop_caches emptied) is then several times slower.  Every
# reader that keeps what it reads (a FUSE server's page cache, nbdcopy into
# tmpfs) pays it; nbdcopy to null: does not.  The table's head says whether
# it is on: the smallest free block reported (page_reporting_order).
page_reporting() {
	local order=/sys/module/page_reporting/parameters/page_reporting_order f
	# Feature bit 5 of the balloon: VIRTIO_BALLOON_F_REPORTING.
	for f in /sys/bus/virtio/drivers/virtio_balloon/virtio*/features; do
		if [ -r "$order" ] && [ "$(cut -c6 "$f" 2>/dev/null)" = 1 ]; then
			echo ", free page reporting on (blocks of 2^$(<"$order") pages)"
			return
		fi
	done
}

# bench_xfs SIZE_MIB: XFS (reflink) on a loop device over a file in
# $SNAPFS_BENCH_DIR (default /var/tmp: users read from disks; /dev/shm for
# a run where memory is the limit), mounted on $TEST_TMPDIR/fs; sets FS,
# FS_DEV and FS_WHERE (for the table).  Undone at exit.
bench_xfs() {
	local store
	store=$(mktemp -d "${SNAPFS_BENCH_DIR:-/var/tmp}/snapfs-bench.XXXXXX")
	add_cleanup "rm -rf '$store'"
	truncate -s "$1M" "$store/xfs.img"
	mkfs.xfs -q -m reflink=1 "$store/xfs.img" || fail "mkfs.xfs"
	FS=$TEST_TMPDIR/fs
	mkdir -p "$FS"
	# Direct I/O on the loop file where its filesystem allows, as XFS on a
	# disk reads: else every buffered read goes through two page caches.
	FS_DEV=$(losetup --find --show --direct-io=on "$store/xfs.img" 2>/dev/null ||
		losetup --find --show "$store/xfs.img") || fail "losetup"
	add_cleanup "losetup -d '$FS_DEV'"
	mount "$FS_DEV" "$FS" || fail "mount the XFS image"
	add_cleanup "umount '$FS'"
	FS_DIO=$(cat "/sys/block/${FS_DEV#/dev/}/loop/dio" 2>/dev/null || echo 0)
	FS_WHERE="XFS on $FS_DEV (direct I/O $([ "$FS_DIO" = 1 ] && echo on || echo off)) over a file in ${SNAPFS_BENCH_DIR:-/var/tmp} ($(stat -f -c %T "${SNAPFS_BENCH_DIR:-/var/tmp}"))"
}

# benchtool: tests/bench/benchtool.c, built into $TEST_TMPDIR.
build_benchtool() {
	"${CC:-cc}" -O2 -o "$TEST_TMPDIR/benchtool" "$(dirname -- "${BASH_SOURCE[0]}")/benchtool.c" ||
		fail "cannot build benchtool.c"
	BT=$TEST_TMPDIR/benchtool
}

# qsd_export NAME FILE MOUNTPOINT [OFFSET SIZE] [DRIVER]: qemu-storage-
# daemon's FUSE export of FILE (cache.direct=on, as snapfs reads with
# O_DIRECT), through DRIVER (raw: a window of it at OFFSET, SIZE bytes).
qsd_export() {
	local name=$1 file=$2 mp=$3 off=${4:-} size=${5:-} driver=${6:-raw} node pid
	: >"$mp"
	node="driver=$driver,node-name=n,file=f"
	[ -z "$off" ] || node+=",offset=$off,size=$size"
	qemu-storage-daemon --blockdev driver=file,node-name=f,filename="$file",cache.direct=on \
		--blockdev "$node" --export type=fuse,id=e,node-name=n,mountpoint="$mp" \
		>"$TEST_TMPDIR/qsd-$name.log" 2>&1 &
	pid=$!
	# Gone before its file system is unmounted (the cleanups run in
	# subshells: no wait there).
	add_cleanup "kill $pid 2>/dev/null; while kill -0 $pid 2>/dev/null; do sleep 0.1; done"
	wait_for -t 20 sh -c "[ \$(stat -c %s '$mp') != 0 ]" ||
		fail "qemu-storage-daemon's export of $file did not come up: $(cat "$TEST_TMPDIR/qsd-$name.log")"
}

# xmount_export FILE MOUNTPOINT [OFFSET SIZE]: xmount's raw view of FILE
# (a window of it at OFFSET, SIZE bytes) on MOUNTPOINT, unmounted at exit;
# sets XM_FILE (the view) and XM_PID.
xmount_export() {
	local file=$1 mp=$2
	mkdir -p "$mp"
	xmount --in raw "$file" ${3:+--offset "$3" --sizelimit "$4"} "$mp" \
		>>"$TEST_TMPDIR/xmount.log" 2>&1 || fail "xmount: $(cat "$TEST_TMPDIR/xmount.log")"
	XM_PID=$(pgrep -n -x xmount || true)
	add_cleanup "umount '$mp'; [ -z '$XM_PID' ] || wait_for test ! -e /proc/$XM_PID"
	XM_FILE=$(ls "$mp"/*.dd)
}

# The awk function median(LIST): of space-separated numbers.
AWK_MEDIAN='
function median(list,   a, n, i, j, t) {
	n = split(list, a, " ")
	for (i = 1; i <= n; i++)
		for (j = i + 1; j <= n; j++)
			if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}'

# bench_ext4 SIZE_MIB: ext4 (no reflink: the storage that cannot snapshot
# itself) on a loop device over a file in $SNAPFS_BENCH_DIR (default
# /var/tmp), read with direct I/O where that filesystem allows, as
# bench_xfs does; mounted on $TEST_TMPDIR/ext4; sets EXT4, EXT4_DEV and
# EXT4_WHERE (for the table).  Its inode tables and journal are written at
# mkfs, so that no lazy initialisation runs beside the reads.  Undone at exit.
bench_ext4() {
	local store dio
	store=$(mktemp -d "${SNAPFS_BENCH_DIR:-/var/tmp}/snapfs-bench.XXXXXX")
	add_cleanup "rm -rf '$store'"
	truncate -s "$1M" "$store/ext4.img"
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$store/ext4.img" ||
		fail "mkfs.ext4"
	EXT4=$TEST_TMPDIR/ext4
	mkdir -p "$EXT4"
	EXT4_DEV=$(losetup --find --show --direct-io=on "$store/ext4.img" 2>/dev/null ||
		losetup --find --show "$store/ext4.img") || fail "losetup"
	add_cleanup "losetup -d '$EXT4_DEV'"
	mount -t ext4 "$EXT4_DEV" "$EXT4" || fail "mount the ext4 image"
	add_cleanup "umount '$EXT4'"
	dio=$(cat "/sys/block/${EXT4_DEV#/dev/}/loop/dio" 2>/dev/null || echo 0)
	EXT4_WHERE="ext4 on $EXT4_DEV (direct I/O $([ "$dio" = 1 ] && echo on || echo off)) over a file in ${SNAPFS_BENCH_DIR:-/var/tmp} ($(stat -f -c %T "${SNAPFS_BENCH_DIR:-/var/tmp}"))"
}
