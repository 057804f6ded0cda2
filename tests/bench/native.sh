#!/bin/bash
# The benchmark of disks in files, natively (no VM, no device-mapper): how
# fast snapfs serves a guest's disk and partition from a reflink clone,
# against each reader on a reflink copy of the same bytes without FUSE,
# against qemu-storage-daemon's FUSE export of that copy and xmount's, and
# against each reader on the copy already in the page cache, the reader's
# own ceiling, which no server can pass.  Not a test:
# it prints a table and a line per target; see docs/performance.md.
#
# A disk of random bytes with an MBR and two partitions, on XFS on a loop
# device over a file in $SNAPFS_BENCH_DIR (/var/tmp: users read from disks;
# /dev/shm for a run where memory is the limit and snapfs's own CPU shows).
# Every read is cold (caches dropped), rounds interleave the subjects in an
# order that rotates, the table gives medians.  Readers of the partition:
# dd bs=1M, dd bs=4k, cp, tar -S | cat, rsync -W (to tmpfs); the whole
# disk: dd bs=1M, and dd iflag=direct on the copy as the limit.  Then two
# readers on two guests at once, open and release against a bare clone,
# ls -lR of many guests, and snapfs's CPU and peak RSS.
#
#   SNAPFS_BENCH_QUICK=1    256 MiB disk, 64 MiB partition, 3 rounds, 20 guests
#   SNAPFS_BENCH_DISK_MIB, SNAPFS_BENCH_PART_MIB, SNAPFS_BENCH_ROUNDS,
#   SNAPFS_BENCH_GUESTS, SNAPFS_BENCH_DIR, SNAPFS_BENCH_NO_QSD=1,
#   SNAPFS_BENCH_NO_XMOUNT=1
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
. "$(dirname -- "$0")/lib-native.sh" || exit 99
requires_root
requires mkfs.xfs losetup sfdisk fusermount3 dd cp tar awk "${CC:-cc}"

if [ "${SNAPFS_BENCH_QUICK:-0}" = 1 ]; then
	disk_mib=${SNAPFS_BENCH_DISK_MIB:-256} part_mib=${SNAPFS_BENCH_PART_MIB:-64}
	rounds=${SNAPFS_BENCH_ROUNDS:-3} nguests=${SNAPFS_BENCH_GUESTS:-20}
else
	disk_mib=${SNAPFS_BENCH_DISK_MIB:-2048} part_mib=${SNAPFS_BENCH_PART_MIB:-1024}
	rounds=${SNAPFS_BENCH_ROUNDS:-5} nguests=${SNAPFS_BENCH_GUESTS:-200}
fi
readers=(dd1M dd4k cp tar)
command -v rsync >/dev/null 2>&1 && readers+=(rsync)
use_qsd=1
{ command -v qemu-storage-daemon >/dev/null 2>&1 && [ "${SNAPFS_BENCH_NO_QSD:-0}" != 1 ]; } ||
	use_qsd=0
use_xmount=1
{ command -v xmount >/dev/null 2>&1 && [ "${SNAPFS_BENCH_NO_XMOUNT:-0}" != 1 ]; } ||
	use_xmount=0

test_tmpdir
work=$TEST_TMPDIR
trap 'rc=$?; exec 3<&- 4<&-; (exit $rc); _run_cleanups' EXIT
out=$(mktemp -d /dev/shm/snapfs-bench-out.XXXXXX) # cp and rsync write here
add_cleanup "rm -rf '$out'"

# ---- two guests' disks, their copies, a mount --------------------------------
bench_xfs $((disk_mib * 4 + part_mib * 2 + 1024))
fs=$FS
build_benchtool
part_off=$((1 << 20)) part_len=$((part_mib << 20))
for g in g1 g2; do
	"$BT" fill $((disk_mib << 20)) "${g#g}" "$fs/$g.img" || fail "benchtool fill"
	printf 'label: dos\nstart=2048, size=%d, type=83\nstart=%d, type=83\n' \
		$((part_mib * 2048)) $((2048 + part_mib * 2048)) | sfdisk -q "$fs/$g.img" ||
		fail "sfdisk"
	# The same bytes, read without snapfs: the disk and its first partition.
	"$BT" clone "$fs/$g.img" "$fs/$g-copy.img" || fail "reflink copy"
	"$BT" clone "$fs/$g.img" "$fs/$g-part1.img" $part_off $part_len || fail "reflink copy of vda1"
done
sync -f "$fs"
xml=$work/node.xml
node_xml "$xml" g1 "$(disk_file vda "$fs/g1.img")" g2 "$(disk_file vda "$fs/g2.img")"
mnt=$work/mnt
snapfs_start "test://$xml" "$mnt" -o freeze=off
pid=$SNAPFS_PID
[ "$(stat -c %s "$mnt/g1/vda1.raw")" = $part_len ] || fail "vda1.raw is not $part_len bytes"
if [ $use_qsd = 1 ]; then
	qsd_export disk "$fs/g1-copy.img" "$work/qsd-disk.raw"
	qsd_export part "$fs/g1-copy.img" "$work/qsd-part.raw" $part_off $part_len
	qsd_export part2 "$fs/g2-copy.img" "$work/qsd-part2.raw" $part_off $part_len
fi
if [ $use_xmount = 1 ]; then
	xmount_export "$fs/g1-copy.img" "$work/xm-disk"
	xm_disk=$XM_FILE
	xmount_export "$fs/g1-copy.img" "$work/xm-part" $part_off $part_len
	xm_part=$XM_FILE
	# xmount says st_blocks = 0: tar -S takes the file for one hole.
	xm_notar=$([ "$(stat -c %b "$xm_part")" = 0 ] && echo 1 || echo 0)
fi

# read_with READER FILE: read FILE whole the way READER does.
read_with() {
	local f=$1 dir base
	dir=$(dirname -- "$2") base=$(basename -- "$2")
	case $f in
	dd1M) dd if="$2" of=/dev/null bs=1M status=none ;;
	ddD) dd if="$2" of=/dev/null bs=1M iflag=direct status=none ;;
	dd4k) dd if="$2" of=/dev/null bs=4k status=none ;;
	cp) cp -- "$2" "$out/x" && rm -f "$out/x" ;;
	# qemu-storage-daemon's export moves its times as it is read: tar's
	# "file changed as we read it" (1) after reading every byte.
	tar) tar -C "$dir" -cSf - -- "$base" | cat >/dev/null || [ $? = 1 ] ;;
	rsync) rsync -W -- "$2" "$out/x" && rm -f "$out/x" ;;
	esac
}
# path SUBJECT REGION GUEST: the file a subject reads.
path() {
	case $1-$2 in
	direct-disk | cached-disk) echo "$fs/$3-copy.img" ;;
	direct-part | cached-part) echo "$fs/$3-part1.img" ;;
	snapfs-disk) echo "$mnt/$3/vda.raw" ;;
	snapfs-part) echo "$mnt/$3/vda1.raw" ;;
	qsd-disk) echo "$work/qsd-disk.raw" ;;
	qsd-part) [ "$3" = g1 ] && echo "$work/qsd-part.raw" || echo "$work/qsd-part2.raw" ;;
	xmount-disk) echo "$xm_disk" ;;
	xmount-part) echo "$xm_part" ;;
	esac
}
res=$work/results # round region reader subject bytes usecs cputicks
# measure ROUND REGION READER SUBJECT...: one cold read each, in turn.
measure() {
	local r=$1 region=$2 reader=$3 s c0 t0 t1 bytes
	shift 3
	for s in "$@"; do
		[ "$s-$reader" != xmount-tar ] || [ "$xm_notar" = 0 ] || continue
		bytes=$([ "$region" = disk ] && echo $((disk_mib << 20)) || echo $part_len)
		drop_caches
		# The reader's ceiling: the same file, its pages already cached.
		[ "$s" != cached ] || cat -- "$(path "$s" "$region" g1)" >/dev/null
		c0=$(cpu_ticks "$pid")
		t0=$(now_us)
		read_with "$reader" "$(path "$s" "$region" g1)" || fail "$reader of $s $region"
		t1=$(now_us)
		echo "$r $region $reader $s $bytes $((t1 - t0)) $(($(cpu_ticks "$pid") - c0))" >>"$res"
	done
}
subjects=(direct snapfs)
[ $use_qsd = 0 ] || subjects+=(qsd)
[ $use_xmount = 0 ] || subjects+=(xmount)
subjects+=(cached)
two=(direct snapfs) # two readers on two guests: those with a copy of g2
[ $use_qsd = 0 ] || two+=(qsd)

# Held: the rounds measure reads, not clones.
exec 3<"$mnt/g1/vda.raw" 4<"$mnt/g2/vda.raw"
for ((r = 1; r <= rounds; r++)); do
	log "round $r of $rounds"
	mapfile -t order < <(rotated "$r" "${subjects[@]}")
	measure "$r" disk ddD direct
	measure "$r" disk dd1M "${order[@]}"
	for reader in $(rotated "$r" "${readers[@]}"); do
		measure "$r" part "$reader" "${order[@]}"
	done
	# Two readers on two guests at once, against one.
	for s in $(rotated "$r" "${two[@]}"); do
		drop_caches
		c0=$(cpu_ticks "$pid")
		t0=$(now_us)
		read_with dd1M "$(path "$s" part g1)" &
		p1=$!
		read_with dd1M "$(path "$s" part g2)" &
		# Not a bare wait: snapfs and qemu-storage-daemon are jobs too.
		wait $p1 $! || fail "two readers of $s"
		t1=$(now_us)
		echo "$r part two $s $((2 * part_len)) $((t1 - t0)) $(($(cpu_ticks "$pid") - c0))" >>"$res"
	done
done
cmp "$mnt/g1/vda1.raw" "$fs/g1-part1.img" || fail "vda1.raw differs from its copy"
exec 3<&- 4<&-
hwm=$(hwm_kib "$pid")

# ---- open and release, against a bare clone ------------------------------------
lat=$work/latency # "snapfs OPEN_US RELEASE_US" or "bare CREATE_US CLOSE_US"
for ((r = 1; r <= rounds * 2; r++)); do
	echo "bare $("$BT" clonetime "$fs/g1.img")" >>"$lat"
	echo "snapfs $("$BT" openclose "$mnt/g1/vda.raw" "$SNAPFS_LOG" "guest g1: snapshot set removed" 30)" >>"$lat"
done
snapfs_stop "$mnt"

# ---- ls -lR of many guests ------------------------------------------------------
mkdir -p "$fs/many"
args=()
for ((i = 0; i < nguests; i++)); do
	truncate -s 64M "$fs/many/m$i.img"
	args+=("m$i" "$(disk_file vda "$fs/many/m$i.img")")
done
node_xml "$work/many.xml" "${args[@]}"
snapfs_start "test://$work/many.xml" "$work/many"
lsr=$work/ls # "cold|warm USECS"
t0=$(now_us)
ls -lR "$work/many" >/dev/null || fail "ls -lR"
echo "cold $(($(now_us) - t0))" >>"$lsr"
for ((r = 1; r <= rounds; r++)); do
	t0=$(now_us)
	ls -lR "$work/many" >/dev/null || fail "ls -lR"
	echo "warm $(($(now_us) - t0))" >>"$lsr"
done

# ---- the table ------------------------------------------------------------------
echo "snapfs native benchmark of disks in files: $(date -u +%Y-%m-%dT%H:%MZ), $(machine)"
echo "disk ${disk_mib} MiB, partition vda1 ${part_mib} MiB, on $FS_WHERE; $rounds rounds, cold, medians"
awk -v tck="$clk_tck" -v hwm="$hwm" -v qsd=$use_qsd -v lat="$lat" -v lsr="$lsr" \
	-v nguests="$nguests" -v readers="${readers[*]}" "$AWK_MEDIAN"'
{
	k = $2 " " $3 " " $4
	us[k] = us[k] " " $6
	mbs[k] = mbs[k] " " $5 / $6
	cpu[k] = cpu[k] " " ($7 / tck) / ($5 / 1073741824)
}
function rate(k) { return k in mbs ? median(mbs[k]) : 0 }
function cell(v) { return v ? sprintf("%.0f", v) : "-" }
function line(label, region, reader,   d, s, q, x, c, k) {
	k = region " " reader " "
	d = rate(k "direct"); s = rate(k "snapfs"); q = rate(k "qsd"); x = rate(k "xmount")
	c = rate(k "cached")
	printf "%-24s %7.0f %7.0f %7s %7s %7s %8.2fx %6s %9.3f\n", label, d, s, cell(q), cell(x),
		cell(c), s / d, q ? sprintf("%.2fx", s / q) : "-", median(cpu[k "snapfs"])
	ratio_d[reader " " region] = s / d
	if (q)
		ratio_q[reader " " region] = s / q
	if (q && c)
		ceil_q[reader " " region] = c / q
}
function target(what, got, want,   ok) {
	ok = got >= want
	printf "target: %s >= %.2fx: %.2fx %s\n", what, want, got, ok ? "met" : "NOT met"
}
END {
	printf "%-24s %7s %7s %7s %7s %7s %9s %6s %9s\n", "reader (MB/s)", "direct", "snapfs",
		"qsd", "xmount", "cached", "s/direct", "s/qsd", "CPU s/GiB"
	printf "%-24s %7.0f\n", "disk dd iflag=direct", rate("disk ddD direct")
	line("disk dd bs=1M", "disk", "dd1M")
	n = split(readers, rd, " ")
	for (i = 1; i <= n; i++)
		line("vda1 " rd[i], "part", rd[i])
	line("vda1 two guests, dd 1M", "part", "two")
	two_d = rate("part two direct") / rate("part dd1M direct")
	two_s = rate("part two snapfs") / rate("part dd1M snapfs")
	printf "two readers over one: direct %.2fx, snapfs %.2fx\n", two_d, two_s
	while ((getline l < lat) > 0) {
		split(l, f, " ")
		if (f[1] == "bare") { bo = bo " " f[2]; bc = bc " " f[3] }
		else { so = so " " f[2]; sr = sr " " f[3] }
	}
	o_s = median(so) / 1000; o_b = median(bo) / 1000
	printf "open (clone) %.1f ms, bare clone %.1f ms; release %.1f ms, bare close %.1f ms\n",
		o_s, o_b, median(sr) / 1000, median(bc) / 1000
	while ((getline l < lsr) > 0) {
		split(l, f, " ")
		if (f[1] == "cold") cold = f[2]; else warm = warm " " f[2]
	}
	printf "ls -lR of %d guests: %.0f ms first, %.0f ms after\n", nguests, cold / 1000,
		median(warm) / 1000
	printf "snapfs peak RSS: %.1f MiB\n", hwm / 1024
	target("dd bs=1M of vda1 against the file directly", ratio_d["dd1M part"], 0.9)
	target("cp against the file directly", ratio_d["cp part"], 0.9)
	target("dd bs=4k against the file directly", ratio_d["dd4k part"], 0.75)
	target("tar against the file directly", ratio_d["tar part"], 0.75)
	if ("rsync part" in ratio_d)
		target("rsync against the file directly", ratio_d["rsync part"], 0.75)
	# A reader that, from the page cache, does not reach twice its speed
	# through qemu-storage-daemon cannot through any server: say so.
	order[1] = "dd1M disk"
	for (i = 1; i <= n; i++)
		order[i + 1] = rd[i] " part"
	order[n + 2] = "two part"
	for (i = 1; i <= n + 2; i++) {
		k = order[i]
		if (!(k in ratio_q))
			continue
		target(k " against qemu-storage-daemon", ratio_q[k], 2)
		if (ratio_q[k] < 2 && (k in ceil_q) && ceil_q[k] < 2)
			printf "  out of reach here: %s itself, on the file in the page cache, reads at %.2fx qemu-storage-daemon\n",
				substr(k, 1, index(k, " ") - 1), ceil_q[k]
	}
	if (two_d >= 1.6)
		target("two readers over one", two_s, 1.6)
	else
		printf "target: two readers over one >= 1.6x: n/a (directly %.2fx)\n", two_d
	printf "target: open within 20 ms of a bare clone: %+.1f ms %s\n", o_s - o_b,
		(o_s - o_b <= 20 ? "met" : "NOT met")
	printf "target: RSS < 64 MiB: %.1f MiB %s\n", hwm / 1024, (hwm < 65536 ? "met" : "NOT met")
}' "$res"
