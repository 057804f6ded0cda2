#!/bin/bash
# The benchmark of libvirt's backup API, natively (no VM, no
# device-mapper): how fast snapfs serves a running guest's disk and
# partition from the NBD export of the pull-mode backup job it starts,
# against two other readers of that same export, and what an open and a
# release cost.  Not a test: it prints a table and a line per target; see
# docs/performance.md.
#
# A real libvirtd runs two record-writing test guests (tests/lib-guest.sh,
# qemu under TCG), each paused once it writes, so that no vCPU takes a CPU
# from the reads: "backup" has a raw disk of random bytes with an MBR (vda1
# of PART_MIB at 1 MiB; the guest writes to a small vda2) on ext4 on a loop
# device over a file in $SNAPFS_BENCH_DIR (/var/tmp), a storage that cannot
# snapshot itself; "reflink" has a small raw disk on XFS, for the open and
# release of a reflink clone beside the backup job's.  snapfs holds
# backup's set for the rounds, and the subjects all read the export that
# set's job made (the same qemu, the same export):
#
# - snapfs: vda.raw and vda1.raw;
# - nbdfuse: libnbd's FUSE server of the export (nbd+unix:///vda?socket=),
#   multi-conn as the export allows; the partition is read from its file
#   with dd skip/count (it cannot window), so only dd reads it;
# - nbdcopy of the export to null:, the limit of a client of that export,
#   and to a tmpfs file, the limit of one that keeps the bytes in memory
#   as FUSE's page cache does;
# - the origin file, dd iflag=direct: the storage's limit.
#
# Readers of the disk: dd bs=1M, dd bs=4k, cp (to tmpfs), tar | cat and
# tar -S | cat; of the partition dd bs=1M and bs=4k.  Every read is cold (caches dropped),
# rounds interleave the subjects in an order that rotates, the table gives
# medians (ratios: medians of each round's ratio).  Then, the guests
# running (one at a time, so that an open meets snapfs's attempt to freeze
# it), open and release of each guest's vda.raw against a bare FICLONE and
# a bare virsh backup-begin and domjobabort.  snapfs's CPU and peak RSS,
# nbdfuse's and qemu's CPU.  Every raw measurement goes to stderr as a
# "bench: result:" line.
#
#   SNAPFS_BENCH_QUICK=1    256 MiB disk, 128 MiB partition, 3 rounds
#   SNAPFS_BENCH_DISK_MIB, SNAPFS_BENCH_PART_MIB, SNAPFS_BENCH_ROUNDS,
#   SNAPFS_BENCH_DIR, SNAPFS_BENCH_OPTS (more options for the mount)
. "$(dirname -- "$0")/../functions.sh" || exit 99
requires libvirtd virsh unshare qemu-system-x86_64 nbdfuse nbdcopy nbdinfo mkfs.ext4 \
	mkfs.xfs losetup sfdisk fusermount3 dd cp tar awk "${CC:-cc}"
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
. "$(dirname -- "$0")/../lib-guest.sh" || exit 99
. "$(dirname -- "$0")/lib-native.sh" || exit 99
requires_root
in_private_namespace "$@"

if [ "${SNAPFS_BENCH_QUICK:-0}" = 1 ]; then
	disk_mib=${SNAPFS_BENCH_DISK_MIB:-256} part_mib=${SNAPFS_BENCH_PART_MIB:-128}
	rounds=${SNAPFS_BENCH_ROUNDS:-3}
else
	disk_mib=${SNAPFS_BENCH_DISK_MIB:-2048} part_mib=${SNAPFS_BENCH_PART_MIB:-1024}
	rounds=${SNAPFS_BENCH_ROUNDS:-5}
fi
rec_mib=8 # vda2, where the guest writes its records
[ $((part_mib + rec_mib + 2)) -le "$disk_mib" ] ||
	fail "a ${part_mib} MiB partition and ${rec_mib} MiB for records do not fit a ${disk_mib} MiB disk"
clone_mib=$((disk_mib < 256 ? disk_mib : 256)) # the reflink guest's disk
# shellcheck disable=SC2206 # options, split as given
extra_opts=(${SNAPFS_BENCH_OPTS:-})

v() { virsh -q -c qemu:///system "$@"; }
job_type() { v domjobinfo "$1" 2>/dev/null | awk -F: '$1 == "Job type" { gsub(/ /, "", $2); print $2 }'; }
no_job() { [ "$(job_type "$1")" = None ]; }
qemu_pid() { cat "/run/libvirt/qemu/$1.pid"; }

start_private_libvirtd
guest_boot_files
work=$TEST_TMPDIR
# Cleanups run on failure too: no ERR trap and no set -e while they start.
trap 'rc=$?; trap - ERR; set +e; exec 3<&-; (exit $rc); _run_cleanups' EXIT
out=$(mktemp -d /dev/shm/snapfs-bench-out.XXXXXX) # cp writes here
add_cleanup "rm -rf '$out'"

# ---- the guests' disks ---------------------------------------------------------
build_benchtool
bench_ext4 $((disk_mib + 512))
ext4=$EXT4
bench_xfs $((clone_mib + 512))
xfs=$FS
disk=$ext4/backup-vda.img
log "filling a ${disk_mib} MiB disk with random bytes"
"$BT" fill $((disk_mib << 20)) 11 "$disk" || fail "benchtool fill"
part_off=$((1 << 20)) part_len=$((part_mib << 20))
printf 'label: dos\nstart=2048, size=%d, type=83\nstart=%d, size=%d, type=83\n' \
	$((part_mib * 2048)) $((2048 + part_mib * 2048)) $((rec_mib * 2048)) |
	sfdisk -q "$disk" || fail "sfdisk"
"$BT" fill $((clone_mib << 20)) 12 "$xfs/reflink-vda.img" || fail "benchtool fill"
sync -f "$ext4"
sync -f "$xfs"
scratch=$ext4/scratch
mkdir -p "$scratch"

# ---- the guests, running, then paused -------------------------------------------
guest_xml backup "$(disk_file vda "$disk")" "snapfs_rec=vda2 snapfs_slots=16" \
	>"$work/backup.xml"
guest_xml reflink "$(disk_file vda "$xfs/reflink-vda.img")" "snapfs_rec=vda snapfs_slots=16" \
	>"$work/reflink.xml"
for g in backup reflink; do
	t0=$(now_us)
	guest_start "$g"
	log "guest $g writes, $((($(now_us) - t0) / 1000)) ms after its start"
	v suspend "$g" >/dev/null || fail "suspend $g"
	# Not an error at exit: the guest may stop before a job of it is aborted.
	add_cleanup "virsh -q -c qemu:///system domjobabort $g >/dev/null 2>&1 || true"
done

mnt=$work/mnt
snapfs_start qemu:///system "$mnt" -o scratch_dir="$scratch" "${extra_opts[@]}"
pid=$SNAPFS_PID
qpid=$(qemu_pid backup)

# Held: the rounds measure reads, not jobs.  The export is the one snapfs's
# job made, as its backup XML names it.
exec 3<"$mnt/backup/vda.raw"
[ "$(job_type backup)" = Unbounded ] || fail "no backup job for the paused guest: $(v domjobinfo backup)"
sock=$(v backup-dumpxml backup | sed -n "s/.*<server transport='unix' socket='\([^']*\)'.*/\1/p")
[ -S "$sock" ] || fail "no socket of snapfs's job: '$sock'"
uri="nbd+unix:///vda?socket=$sock"
multi=$(nbdinfo --can multi-conn "$uri" && echo yes || echo no)
[ "$(stat -c %s "$mnt/backup/vda1.raw")" = $part_len ] || fail "vda1.raw is not $part_len bytes"

nf_dir=$work/nbdfuse
mkdir -p "$nf_dir"
nbdfuse -r -P "$work/nbdfuse.pid" "$nf_dir/vda" "$uri" >"$work/nbdfuse.log" 2>&1 &
add_cleanup "fusermount3 -u '$nf_dir' 2>/dev/null; wait_for test ! -e /proc/$!"
wait_for -t 30 test -s "$work/nbdfuse.pid" || fail "nbdfuse did not start: $(cat "$work/nbdfuse.log")"
nfpid=$(cat "$work/nbdfuse.pid")
nf=$nf_dir/vda
[ "$(stat -c %s "$nf")" = $((disk_mib << 20)) ] || fail "nbdfuse's file is not the disk's size"
# A file that says it has no blocks is one hole to tar -S, which reads none
# of it: nbdfuse's tar -S row then shows its plain tar.
nf_notar=$([ "$(stat -c %b "$nf")" = 0 ] && echo 1 || echo 0)

# read_with READER FILE: read FILE whole the way READER does (native.sh's).
read_with() {
	local dir base
	dir=$(dirname -- "$2") base=$(basename -- "$2")
	case $1 in
	dd1M) dd if="$2" of=/dev/null bs=1M status=none ;;
	dd4k) dd if="$2" of=/dev/null bs=4k status=none ;;
	cp) cp -- "$2" "$out/x" && rm -f "$out/x" ;;
	tar) tar -C "$dir" -cf - -- "$base" | cat >/dev/null ;;
	tarS) tar -C "$dir" -cSf - -- "$base" | cat >/dev/null ;;
	esac
}
# read_subject SUBJECT REGION READER: one read of REGION (disk, part).
read_subject() {
	case $1-$2 in
	snapfs-disk) read_with "$3" "$mnt/backup/vda.raw" ;;
	snapfs-part) read_with "$3" "$mnt/backup/vda1.raw" ;;
	nbdfuse-disk) read_with "$3" "$nf" ;;
	nbdfuse-part)
		dd if="$nf" of=/dev/null bs="$([ "$3" = dd4k ] && echo 4k || echo 1M)" \
			iflag=skip_bytes,count_bytes skip=$part_off count=$part_len status=none
		;;
	nbdcopy-disk) nbdcopy -- "$uri" null: ;;
	nbdkeep-disk) nbdcopy -- "$uri" "$out/x" && rm -f "$out/x" ;;
	origin-disk) dd if="$disk" of=/dev/null bs=1M iflag=direct status=none ;;
	esac
}
res=$work/results # round region reader subject bytes usecs snapfs nbdfuse qemu (ticks)
# measure ROUND REGION READER SUBJECT...: one cold read each, in turn.
# The first subject reads once more before, not measured: on a VM that
# hands freed memory back to its host, the first of a run of like reads
# pays for faulting that memory in again, whichever subject it is.
measure() {
	local r=$1 region=$2 reader=$3 s first bytes s0 n0 q0 t0 t1
	shift 3
	bytes=$([ "$region" = disk ] && echo $((disk_mib << 20)) || echo $part_len)
	first=$1
	[ "$first-$reader" != nbdfuse-tarS ] || [ "$nf_notar" = 0 ] || first=${2:-$1}
	drop_caches
	read_subject "$first" "$region" "$reader" || fail "$reader of $first $region"
	for s in "$@"; do
		[ "$s-$reader" != nbdfuse-tarS ] || [ "$nf_notar" = 0 ] || continue
		drop_caches
		s0=$(cpu_ticks "$pid") n0=$(cpu_ticks "$nfpid") q0=$(cpu_ticks "$qpid")
		t0=$(now_us)
		read_subject "$s" "$region" "$reader" || fail "$reader of $s $region"
		t1=$(now_us)
		echo "$r $region $reader $s $bytes $((t1 - t0)) $(($(cpu_ticks "$pid") - s0))" \
			"$(($(cpu_ticks "$nfpid") - n0)) $(($(cpu_ticks "$qpid") - q0))" |
			tee -a "$res" | sed 's/^/bench: result: /' >&2
	done
}

# ---- rounds ---------------------------------------------------------------------
# Whatever else runs on this machine shares its CPUs: the table says how much.
load0=$(cut -d' ' -f1 /proc/loadavg)
t_rounds=$(now_us)
for ((r = 1; r <= rounds; r++)); do
	log "round $r of $rounds"
	mapfile -t all < <(rotated "$r" snapfs nbdfuse nbdcopy nbdkeep origin)
	mapfile -t two < <(rotated "$r" snapfs nbdfuse)
	measure "$r" disk dd1M "${all[@]}"
	for reader in $(rotated "$r" dd4k cp tar tarS); do
		measure "$r" disk "$reader" "${two[@]}"
	done
	for reader in $(rotated "$r" dd1M dd4k); do
		measure "$r" part "$reader" "${two[@]}"
	done
done
load1=$(cut -d' ' -f1 /proc/loadavg)
t_rounds=$((($(now_us) - t_rounds) / 1000000))
hwm=$(hwm_kib "$pid")
log "checking what was read against the origin"
cmp "$mnt/backup/vda.raw" "$disk" || fail "vda.raw differs from the origin"
cmp "$nf" "$disk" || fail "nbdfuse's file differs from the origin"
[ "$(sha_file "$mnt/backup/vda1.raw")" = "$(sha_at "$disk" $part_off $part_len)" ] ||
	fail "vda1.raw differs from the origin at $part_off"
fusermount3 -u "$nf_dir" || fail "unmount nbdfuse"
exec 3<&-
wait_for -t 30 no_job backup || fail "backup's job outlived its set: $(v domjobinfo backup)"

# ---- open and release, each guest running ---------------------------------------
# A pull-mode backup job begun by hand, as snapfs begins it, for the bare
# figure: virsh's own cost is a trivial call's (domstate).
cat >"$work/bare.xml" <<X
<domainbackup mode='pull'><server transport='unix' socket='$work/bare.sock'/>
<disks><disk name='vda' backup='yes' type='file'><driver type='qcow2'/><scratch file='$scratch/bare.qcow2'/></disk></disks>
</domainbackup>
X
lat=$work/latency # KIND A_US B_US
# latency KIND: one open and release of KIND's, its guest running.
latency() {
	local g t0 t1 t2
	g=$([ "$1" = bare-clone ] || [ "$1" = reflink ] && echo reflink || echo backup)
	v resume "$g" >/dev/null || fail "resume $g"
	case $1 in
	bare-clone) echo "$1 $("$BT" clonetime "$xfs/reflink-vda.img")" ;;
	reflink | backup)
		echo "$1 $("$BT" openclose "$mnt/$g/vda.raw" "$SNAPFS_LOG" \
			"guest $g: snapshot set removed" 30)"
		;;
	bare-backup)
		t0=$(now_us)
		v backup-begin backup "$work/bare.xml" >/dev/null || fail "backup-begin"
		t1=$(now_us)
		v domjobabort backup || fail "domjobabort"
		t2=$(now_us)
		wait_for -t 30 no_job backup || fail "the bare job outlived domjobabort"
		rm -f "$scratch/bare.qcow2"
		echo "$1 $((t1 - t0)) $((t2 - t1))"
		;;
	virsh)
		t0=$(now_us)
		v domstate backup >/dev/null
		echo "$1 $(($(now_us) - t0)) 0"
		;;
	esac | tee -a "$lat" | sed 's/^/bench: result: latency /' >&2
	v suspend "$g" >/dev/null || fail "suspend $g"
}
log "open and release, $((rounds * 2)) of each"
for ((r = 1; r <= rounds * 2; r++)); do
	for k in $(rotated "$r" bare-clone reflink backup bare-backup virsh); do
		latency "$k"
	done
done
freeze_tries=$(grep -c "freezing its filesystems failed\|filesystems thawed" "$SNAPFS_LOG" || true)
freeze_why=$(sed -n 's/.*guest backup: freezing its filesystems failed (\(.*\)); .*/\1/p' \
	"$SNAPFS_LOG" | head -n 1)
snapfs_stop "$mnt"

# ---- the table ------------------------------------------------------------------
echo "snapfs native benchmark of libvirt's backup API: $(date -u +%Y-%m-%dT%H:%MZ), $(machine)"
echo "guest backup (qemu $(qemu-system-x86_64 --version | sed -n '1s/.*version \([^ ]*\).*/\1/p'), TCG, paused): disk ${disk_mib} MiB, vda1 ${part_mib} MiB, on $EXT4_WHERE; export multi-conn: $multi; $rounds rounds, cold, medians"
echo "rounds: ${t_rounds} s; load average $load0 before them, $load1 after (the subjects themselves keep about 1 busy)"
awk -v tck="$clk_tck" -v hwm="$hwm" -v lat="$lat" -v notar="$nf_notar" \
	-v freeze_tries="$freeze_tries" -v freeze_why="$freeze_why" \
	-v opens="$((rounds * 4))" "$AWK_MEDIAN"'
{
	k = $2 " " $3 " " $4
	mbs[k] = mbs[k] " " $5 / $6
	gib = $5 / 1073741824
	cpu_s[k] = cpu_s[k] " " ($7 / tck) / gib
	cpu_n[k] = cpu_n[k] " " ($8 / tck) / gib
	cpu_q[k] = cpu_q[k] " " ($9 / tck) / gib
	one[$1 " " k] = $5 / $6
}
function rate(k) { return k in mbs ? median(mbs[k]) : 0 }
function cell(v, f) { return v ? sprintf(f, v) : "-" }
# ratio(REGION, READER, SUBJECT, SREADER): the median over rounds of the
# rate of snapfs with READER over that of SUBJECT with SREADER, same round.
function ratio(region, reader, subject, sreader,   r, s, o, list) {
	for (r = 1; (r " " region " " reader " snapfs") in one; r++) {
		s = r " " region " " reader " snapfs"
		o = r " " region " " sreader " " subject
		if (o in one)
			list = list " " one[s] / one[o]
	}
	return list == "" ? 0 : median(list)
}
# line(LABEL, REGION, READER, NREADER): a row; nbdfuse read with NREADER.
function line(label, region, reader, nreader,   k, n, s, nb, cp, rn, rc) {
	k = region " " reader " "
	n = region " " nreader " nbdfuse"
	s = rate(k "snapfs"); nb = rate(n); cp = rate(k "nbdcopy")
	rn = ratio(region, reader, "nbdfuse", nreader)
	rc = ratio(region, reader, "nbdcopy", reader)
	printf "%-24s %7.0f %8s %8s %9s %9s   %6.3f %7s   %6.3f %7s\n", label, s, cell(nb, "%.0f"),
		cell(cp, "%.0f"), cell(rn, "%.2fx"), cell(rc, "%.2fx"), median(cpu_s[k "snapfs"]),
		nb ? sprintf("%.3f", median(cpu_n[n])) : "-", median(cpu_q[k "snapfs"]),
		nb ? sprintf("%.3f", median(cpu_q[n])) : "-"
	got[reader " " region " nbdfuse"] = rn
	got[reader " " region " nbdcopy"] = rc
}
function target(what, v, want) {
	if (!v) {
		printf "target: %s >= %.2fx: not measured\n", what, want
		return
	}
	printf "target: %s >= %.2fx: %.2fx %s\n", what, want, v, (v >= want ? "met" : "NOT met")
}
END {
	printf "%-24s %7s %8s %8s %9s %9s   %-14s   %-14s\n", "", "", "", "", "snapfs/", "snapfs/",
		"CPU s/GiB", "qemu CPU s/GiB"
	printf "%-24s %7s %8s %8s %9s %9s   %6s %7s   %6s %7s\n", "reader (MB/s)", "snapfs",
		"nbdfuse", "nbdcopy", "nbdfuse", "nbdcopy", "snapfs", "nbdfuse", "snapfs", "nbdfuse"
	printf "%-24s %7s %8s %8.0f  (the origin file, dd iflag=direct: the storage)\n",
		"disk dd bs=1M", "", "", rate("disk dd1M origin")
	printf "%-24s %7s %8s %8.0f  (nbdcopy to a tmpfs file: a client that keeps the bytes)\n",
		"disk nbdcopy", "", "", rate("disk dd1M nbdkeep")
	line("disk dd bs=1M", "disk", "dd1M", "dd1M")
	line("disk dd bs=4k", "disk", "dd4k", "dd4k")
	line("disk cp", "disk", "cp", "cp")
	line("disk tar | cat", "disk", "tar", "tar")
	line("disk tar -S | cat" (notar ? " *" : ""), "disk", "tarS", notar ? "tar" : "tarS")
	line("vda1 dd bs=1M (window)", "part", "dd1M", "dd1M")
	line("vda1 dd bs=4k (window)", "part", "dd4k", "dd4k")
	if (notar)
		print "* nbdfuse says its file has no blocks, so tar -S takes it for one hole and reads nothing: its column is tar without -S"
	print "vda1 (window): the file of nbdfuse read with dd iflag=skip_bytes,count_bytes at the offset of vda1"
	while ((getline l < lat) > 0) {
		split(l, f, " ")
		a[f[1]] = a[f[1]] " " f[2]; b[f[1]] = b[f[1]] " " f[3]
	}
	printf "open, guest running: backup job %.1f ms, reflink clone %.1f ms; bare: virsh backup-begin %.1f ms, FICLONE %.1f ms, virsh domstate %.1f ms\n",
		median(a["backup"]) / 1000, median(a["reflink"]) / 1000,
		median(a["bare-backup"]) / 1000, median(a["bare-clone"]) / 1000,
		median(a["virsh"]) / 1000
	printf "release: backup job %.1f ms, reflink clone %.1f ms; bare: virsh domjobabort %.1f ms, close %.1f ms\n",
		median(b["backup"]) / 1000, median(b["reflink"]) / 1000,
		median(b["bare-backup"]) / 1000, median(b["bare-clone"]) / 1000
	printf "freeze attempted at %d of %d opens%s\n", freeze_tries, opens,
		freeze_why != "" ? " (refused: " freeze_why ")" : ""
	printf "snapfs peak RSS: %.1f MiB\n", hwm / 1024
	target("snapfs against nbdfuse, disk dd bs=1M", got["dd1M disk nbdfuse"], 1.0)
	target("snapfs against nbdfuse, disk dd bs=4k", got["dd4k disk nbdfuse"], 1.0)
	target("snapfs against nbdfuse, disk cp", got["cp disk nbdfuse"], 1.0)
	target("snapfs against nbdfuse, disk tar | cat", got["tar disk nbdfuse"], 1.0)
	target("snapfs against nbdfuse, disk tar -S | cat" (notar ? " (nbdfuse: tar | cat)" : ""),
		got["tarS disk nbdfuse"], 1.0)
	target("snapfs against nbdcopy, disk dd bs=1M", got["dd1M disk nbdcopy"], 0.7)
	keep = ratio("disk", "dd1M", "nbdkeep", "dd1M")
	copy = rate("disk dd1M nbdcopy") ? rate("disk dd1M nbdkeep") / rate("disk dd1M nbdcopy") : 0
	if (copy && copy < 0.7)
		printf "  out of reach here: nbdcopy itself, keeping the bytes (in tmpfs), runs at %.2fx its rate to null:, and snapfs at %.2fx it\n",
			copy, keep
	printf "target: RSS < 64 MiB: %.1f MiB %s\n", hwm / 1024, (hwm < 65536 ? "met" : "NOT met")
}' "$res"
