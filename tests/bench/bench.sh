#!/bin/bash
# The snapfs read benchmark (issue 6).  Not a test: it passes or fails
# nothing, it prints a table.  Run it with tests/bench/run, which boots the
# test VM when this machine has no dm-snapshot; see docs/performance.md.
#
# In one run, interleaved round by round, caches dropped before every read:
#   (a)  the snapshot device that snapfs made, read with O_DIRECT, bs=1M:
#        the limit;
#   snapfs: the guest's whole disk (vda.raw) and a partition (vda1.raw);
#   snapfs': the same with a second binary (SNAPFS_BENCH_BIN2), e.g. a patch;
#   (c)  qemu-storage-daemon's FUSE export of the same snapshot device
#        (the partition through a raw node with offset/size);
#   xmount, where installed (the partition with --offset/--sizelimit).
# Readers: dd bs=1M, dd bs=4k, cp, tar -S, rsync -W to tmpfs; the whole
# disk is read with dd bs=1M only, the partition with every reader (under
# TCG emulation every reader on 2 GiB would take hours).  Then two readers
# at once on two guests, open/release latency against a bare lvcreate /
# lvremove of the same LV, and ls -lR of a tree of many guests.
#
# Knobs (environment; SNAPFS_BENCH_QUICK=1 changes the defaults):
#   SNAPFS_BENCH_QUICK     1: a small run (256 MiB disk, 3 rounds, 20 guests)
#   SNAPFS_BENCH_DISK_MIB  the big guest's disk (2048; quick 256)
#   SNAPFS_BENCH_PART_MIB  its first partition, read by every reader
#                          (128; quick 64); the rest is partition 2
#   SNAPFS_BENCH_ROUNDS    rounds; medians are over them (5; quick 3)
#   SNAPFS_BENCH_GUESTS    guests in the ls -lR tree (200; quick 20)
#   SNAPFS_BENCH_LS_TIMEOUT  seconds after which one ls -lR is cut (180)
#   SNAPFS_BENCH_ONLY      ls: set up, measure ls -lR only, print its raw lines
#   SNAPFS_BENCH_READERS   readers of the partition (dd1M dd4k cp tar rsync)
#   SNAPFS_BENCH_BACKING   brd or loop: the PV (brd in the VM, loop natively)
#   SNAPFS_BENCH_BIN2      a second snapfs binary, measured beside SNAPFS_BIN
#   SNAPFS_BENCH_OPTS      more options for the measured mounts, e.g.
#                          "-o freeze=off" (test-driver guests are running,
#                          so by default snapfs freezes them around lvcreate)
#   SNAPFS_BENCH_NO_QSD / SNAPFS_BENCH_NO_XMOUNT  1: leave that one out
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/lib-native.sh" || exit 99 # timing, CPU, caches
requires_root
requires lvcreate vgcfgbackup vgcfgrestore sfdisk getfattr fusermount3 dd cp tar awk "${CC:-cc}"

bench_dir=$(cd -- "$(dirname -- "$0")" && pwd)
quick=${SNAPFS_BENCH_QUICK:-0}
if [ "$quick" = 1 ]; then
	disk_mib=${SNAPFS_BENCH_DISK_MIB:-256} part_mib=${SNAPFS_BENCH_PART_MIB:-64}
	rounds=${SNAPFS_BENCH_ROUNDS:-3} nguests=${SNAPFS_BENCH_GUESTS:-20}
else
	disk_mib=${SNAPFS_BENCH_DISK_MIB:-2048} part_mib=${SNAPFS_BENCH_PART_MIB:-128}
	rounds=${SNAPFS_BENCH_ROUNDS:-5} nguests=${SNAPFS_BENCH_GUESTS:-200}
fi
readers=(${SNAPFS_BENCH_READERS:-dd1M dd4k cp tar rsync})
bin2=${SNAPFS_BENCH_BIN2:-}
bin2_label="snapfs'"
in_vm=0
[ "$(cat /proc/sys/kernel/hostname)" != snapfs-vm ] || in_vm=1
backing=${SNAPFS_BENCH_BACKING:-}
[ -n "$backing" ] || { [ $in_vm = 1 ] && backing=brd || backing=loop; }
[ "$part_mib" -le $((disk_mib - 8)) ] || fail "SNAPFS_BENCH_PART_MIB must be at least 8 MiB below the disk"

has() { command -v "$1" >/dev/null 2>&1; }
use_qsd=1 use_xmount=1 use_rsync=1
has qemu-storage-daemon && [ "${SNAPFS_BENCH_NO_QSD:-0}" != 1 ] || use_qsd=0
has xmount && [ "${SNAPFS_BENCH_NO_XMOUNT:-0}" != 1 ] || use_xmount=0
has rsync || use_rsync=0

t_start=${EPOCHREALTIME/[.,]/}
phase() { log "[$(awk -v a="$t_start" -v b="$(now_us)" 'BEGIN { printf "%5.0fs", (b - a) / 1e6 }')] $*"; }
# The page cache, KiB: what a read leaves cached (FUSE's pages, and the
# snapshot device's own when the daemon reads through it).
cache_kib() { awk '/^(Buffers|Cached):/ { s += $2 } END { print s }' /proc/meminfo; }
# The files the benchmark holds open (3: g1 in snapfs, 4: in snapfs', 5 and
# 6: g2) are closed before the cleanups run, or no unmount could succeed.
trap 'bench_rc=$?; exec 3<&- 4<&- 5<&- 6<&-; (exit $bench_rc); _run_cleanups' EXIT

test_tmpdir
work=$TEST_TMPDIR
res=$work/results # round region reader method bytes usecs cputicks hwm_kib status cache_kib

phase "building the helper"
"${CC:-cc}" -O2 -o "$work/benchtool" "$bench_dir/benchtool.c" || fail "cannot build benchtool.c"
bt=$work/benchtool
# How much slower this machine runs a CPU-bound loop than the one that
# started the VM (tests/bench/run times the same loop there).
t0=$(now_us)
"$bt" fill $((256 << 20)) 9 >/dev/null
ref_us=$(($(now_us) - t0))

# ---- the volume group ---------------------------------------------------------
vg=snapfs_bench
g2_mib=$((part_mib + 4))
# Data, room for two classic snapshots (20%ORIGIN) of each guest at once,
# the ls -lR guests (one extent each) and slack.
pv_mib=$(((disk_mib + g2_mib) * 3 / 2 + nguests * 4 + 256))
phase "PV of ${pv_mib} MiB on $backing; big disk ${disk_mib} MiB, partition ${part_mib} MiB"
if [ "$backing" = brd ]; then
	[ ! -e /sys/module/brd ] || fail "brd is loaded already; use SNAPFS_BENCH_BACKING=loop"
	modprobe brd rd_nr=1 rd_size=$((pv_mib * 1024)) max_part=0 || fail "modprobe brd"
	add_cleanup "rmmod brd"
	pv=/dev/ram0
	vgs "$vg" >/dev/null 2>&1 && fail "VG $vg exists already"
	vgcreate -q -y "$vg" "$pv" >/dev/null || fail "vgcreate"
	add_cleanup "! vgs '$vg' >/dev/null 2>&1 || vgremove -q -ff -y '$vg' >/dev/null"
else
	setup_vg "$vg" "$pv_mib"
fi

# The ls -lR guests: one LV each, made by editing the VG's metadata (one
# lvcreate per LV costs about a second under TCG emulation).
phase "making $nguests small LVs"
lvcreate -q -y -an -Zn -n placeholder -l "$nguests" "$vg" >/dev/null 2>&1 ||
	fail "lvcreate placeholder"
vgcfgbackup -q -f "$work/meta" "$vg" >/dev/null || fail "vgcfgbackup"
awk -v n="$nguests" '
	/^\t\tplaceholder \{/ { skip = 1 }
	skip && /stripes = \[/ { want = 1; next }
	skip && want { split($0, a, ","); first = a[2] + 0; want = 0 }
	skip && /^\t\t\}/ { skip = 0; for (i = 1; i <= n; i++) lv(i); next }
	skip { next }
	{ print }
	function lv(i) {
		printf "\t\tt%03d {\n\t\t\tid = \"bench0-0000-0000-0000-0000-0000-%06d\"\n", i, i
		printf "\t\t\tstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\n\t\t\tflags = []\n"
		printf "\t\t\tsegment_count = 1\n\t\t\tsegment1 {\n\t\t\t\tstart_extent = 0\n"
		printf "\t\t\t\textent_count = 1\n\t\t\t\ttype = \"striped\"\n\t\t\t\tstripe_count = 1\n"
		printf "\t\t\t\tstripes = [\n\t\t\t\t\t\"pv0\", %d\n\t\t\t\t]\n\t\t\t}\n\t\t}\n", first + i - 1
	}' "$work/meta" >"$work/meta.new"
vgcfgrestore -q -f "$work/meta.new" "$vg" >/dev/null || fail "vgcfgrestore"
phase "activating them"
vgchange -q -ay "$vg" >/dev/null || fail "vgchange -ay"
phase "writing their partition tables"
printf 'label: dos\nstart=2048, type=83\n' | sfdisk -q "$work/mbr.img" --no-reread 2>/dev/null ||
	{ truncate -s 4M "$work/mbr.img" && printf 'label: dos\nstart=2048, type=83\n' |
		sfdisk -q --no-reread "$work/mbr.img"; } || fail "sfdisk mbr.img"
small=()
for ((i = 1; i <= nguests; i++)); do small+=("/dev/mapper/$vg-$(printf t%03d "$i")"); done
head -c 512 "$work/mbr.img" | tee "${small[@]}" >/dev/null || fail "writing the small LVs' MBRs"
[ "$(lvs --noheadings -o lv_name -S 'lv_name=~^t[0-9]' "$vg" | grep -c .)" = "$nguests" ] ||
	fail "expected $nguests small LVs"

# The big guest, g1, and a second guest, g2, for two readers at once.
phase "filling g1 (${disk_mib} MiB) and g2 (${g2_mib} MiB) with incompressible bytes"
make_lv "$vg" g1 "${disk_mib}M"
make_lv "$vg" g2 "${g2_mib}M"
t0=$(now_us)
"$bt" fill $((disk_mib << 20)) 1 "/dev/$vg/g1" || fail "fill g1"
"$bt" fill $((g2_mib << 20)) 2 "/dev/$vg/g2" || fail "fill g2"
fill_s=$(awk -v a="$t0" -v b="$(now_us)" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')
part_sectors=$((part_mib * 2048))
sfdisk -q --no-reread "/dev/$vg/g1" <<P 2>/dev/null || true
label: dos
start=2048, size=$part_sectors, type=83
start=$((2048 + part_sectors)), type=83
P
sfdisk -q --no-reread "/dev/$vg/g2" <<P 2>/dev/null || true
label: dos
start=2048, size=$part_sectors, type=83
P
[ "$(sfdisk -d "/dev/$vg/g1" | grep -c 'start=')" = 2 ] || fail "g1's partition table"
part_off=$((2048 * 512))
part_len=$((part_mib << 20))
disk_len=$((disk_mib << 20))

# ---- ls -lR of many guests ------------------------------------------------------
phase "ls -lR of $nguests guests"
xml_many=$work/many.xml
# The same XML as virt_domain and disk_block make, without their processes
# (tens of seconds for 200 guests under TCG).
awk -v n="$nguests" -v vg="$vg" 'BEGIN {
	print "<node>"
	for (i = 1; i <= n; i++)
		printf "  <domain type=\047test\047>\n    <name>guest%03d</name>\n" \
			"    <uuid>5eed0000-0000-4000-8000-%012d</uuid>\n" \
			"    <memory>65536</memory>\n    <os><type>hvm</type></os>\n    <devices>\n" \
			"      <disk type=\047block\047 device=\047disk\047><driver name=\047qemu\047 type=\047raw\047/>" \
			"<source dev=\047/dev/%s/t%03d\047/><target dev=\047vda\047 bus=\047virtio\047/></disk>\n" \
			"    </devices>\n  </domain>\n", i, i, vg, i
	print "</node>"
}' >"$xml_many"
mnt_many=$work/mnt-many
ls_limit=${SNAPFS_BENCH_LS_TIMEOUT:-180}
ls_entries=0
: >"$work/ls"
# ls_rounds KIND N: N cold ls -lR (kernel caches dropped), each bounded by
# ls_limit seconds; "KIND USECS TIMED_OUT" lines in $work/ls.
ls_rounds() {
	local kind=$1 n=$2 r t0 us to
	for ((r = 1; r <= n; r++)); do
		drop_caches
		t0=$(now_us)
		to=0
		timeout "$ls_limit" ls -lR "$mnt_many" >"$work/ls.out" || to=1
		us=$(($(now_us) - t0))
		[ $to = 1 ] || ls_entries=$(grep -c '^-' "$work/ls.out" || true)
		echo "$kind $us $to" >>"$work/ls"
		log "ls -lR, $kind: $(awk -v u="$us" 'BEGIN { printf "%.2f", u / 1e6 }') s$([ $to = 0 ] || echo " (timed out)")"
	done
}
# open_many_rounds KIND N: N times, open guest001's disk in the tree (a
# snapshot is made), close it and wait for the removal; then a bare
# lvcreate --snapshot and lvremove of the same LV.  "KIND USECS 0" and
# "bare_many USECS 0" lines in $work/ls.
no_snapfs_lvs() { [ "$(snapfs_lv_count "$vg")" = 0 ]; }
open_many_rounds() {
	local kind=$1 n=$2 r t0 us
	for ((r = 1; r <= n; r++)); do
		udevadm settle -t 120 2>/dev/null || true
		t0=$(now_us)
		exec 7<"$mnt_many/guest001/vda.raw" || fail "$kind: open of guest001/vda.raw"
		us=$(($(now_us) - t0))
		exec 7<&-
		wait_for -t 120 no_snapfs_lvs || fail "$kind: guest001's snapshot not removed"
		echo "$kind $us 0" >>"$work/ls"
		udevadm settle -t 120 2>/dev/null || true
		t0=$(now_us)
		lvcreate --snapshot --permission r --name benchbare --addtag benchbare \
			--extents 20%ORIGIN "$vg/t001" >/dev/null 2>&1 || fail "bare lvcreate of t001"
		us=$(($(now_us) - t0))
		lvremove --yes --select 'lv_name="benchbare" && lv_tags="benchbare"' "$vg" \
			>/dev/null 2>&1 || fail "bare lvremove of t001's snapshot"
		echo "bare_many $us 0" >>"$work/ls"
		log "open of guest001 of $nguests, $kind: $(awk -v u="$(tail -2 "$work/ls" | head -1 | cut -d' ' -f2)" 'BEGIN { printf "%.2f", u / 1e6 }') s, bare lvcreate $(awk -v u="$us" 'BEGIN { printf "%.2f", u / 1e6 }') s"
	done
}
# As mounted by default: the guest list is reused for 2 s (-o cache=2), so
# a long ls -lR also waits for the discoveries that its lookups start.
phase "mounting the tree of $nguests guests"
t0=$(now_us)
snapfs_start "test://$xml_many" "$mnt_many"
mount_many_s=$(awk -v a="$t0" -v b="$(now_us)" 'BEGIN { printf "%.2f", (b - a) / 1e6 }')
ls_rounds default $((rounds < 2 ? rounds : 2))
ls_snaps=$(snapfs_lv_count "$vg")
snapfs_stop "$mnt_many"
if [ -n "$bin2" ]; then
	phase "ls -lR of $nguests guests with snapfs'"
	SNAPFS_BIN=$bin2 snapfs_start "test://$xml_many" "$mnt_many"
	ls_rounds "default'" "$rounds"
	ls_snaps=$((ls_snaps + $(snapfs_lv_count "$vg")))
	open_many_rounds "open_many'" "$rounds"
	snapfs_stop "$mnt_many"
fi
# With a list that lives an hour: the cost of the listing alone.
phase "ls -lR of $nguests guests with -o cache=3600"
snapfs_start "test://$xml_many" "$mnt_many" -o cache=3600
ls_rounds cached "$rounds"
ls_snaps=$((ls_snaps + $(snapfs_lv_count "$vg")))
# An open on a large host: only the opened guest is resolved again.
open_many_rounds open_many "$rounds"
snapfs_stop "$mnt_many"
[ "$ls_entries" -ge $((nguests * 3)) ] || fail "ls -lR showed $ls_entries files, expected $((nguests * 3))"

if [ "${SNAPFS_BENCH_ONLY:-}" = ls ]; then
	cat "$work/ls"
	exit 0
fi

# ---- the mounts ---------------------------------------------------------------------
xml=$work/guests.xml
{
	echo "<node>"
	virt_domain g1 "$(disk_block vda "/dev/$vg/g1")"
	virt_domain g2 "$(disk_block vda "/dev/$vg/g2")"
	echo "</node>"
} >"$xml"
mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null || true

declare -A mnt pid logf
methods_fs=(snapfs)
mnt[snapfs]=$work/mnt
# shellcheck disable=SC2086 # SNAPFS_BENCH_OPTS is a list of options
snapfs_start "test://$xml" "${mnt[snapfs]}" ${SNAPFS_BENCH_OPTS:-}
pid[snapfs]=$SNAPFS_PID logf[snapfs]=$SNAPFS_LOG
# snapfs_stop knows only the last mount started: unmount each by name.
add_cleanup "fusermount3 -u '${mnt[snapfs]}'; wait_for test ! -e /proc/${pid[snapfs]}"
if [ -n "$bin2" ]; then
	methods_fs+=("snapfs'")
	mnt["snapfs'"]=$work/mnt2
	# shellcheck disable=SC2086
	SNAPFS_BIN=$bin2 snapfs_start "test://$xml" "${mnt["snapfs'"]}" ${SNAPFS_BENCH_OPTS:-}
	pid["snapfs'"]=$SNAPFS_PID logf["snapfs'"]=$SNAPFS_LOG
	add_cleanup "fusermount3 -u '${mnt["snapfs'"]}'; wait_for test ! -e /proc/${pid["snapfs'"]}"
fi

# Hold g1's set for the whole run: every round reads the same snapshot.
exec 3<"${mnt[snapfs]}/g1/vda.raw"
snap1=/dev/$(getfattr --absolute-names --only-values -n user.snapfs.snapshot "${mnt[snapfs]}/g1/vda.raw")
[ -b "$snap1" ] || fail "snapshot device $snap1 of g1 missing"
if [ -n "$bin2" ]; then exec 4<"${mnt["snapfs'"]}/g1/vda.raw"; fi

declare -A file_disk file_part
for m in "${methods_fs[@]}"; do
	file_disk[$m]=${mnt[$m]}/g1/vda.raw
	file_part[$m]=${mnt[$m]}/g1/vda1.raw
done

if [ $use_qsd = 1 ]; then
	phase "qemu-storage-daemon on $snap1"
	qdir=$work/qsd
	mkdir -p "$qdir"
	: >"$qdir/disk.img"
	: >"$qdir/part.img"
	qemu-storage-daemon \
		--blockdev "driver=host_device,node-name=d,filename=$snap1,read-only=on" \
		--blockdev "driver=raw,node-name=p,file=d,offset=$part_off,size=$part_len,read-only=on" \
		--export "type=fuse,id=e1,node-name=d,mountpoint=$qdir/disk.img" \
		--export "type=fuse,id=e2,node-name=p,mountpoint=$qdir/part.img" \
		--daemonize --pidfile "$qdir/pid" || fail "qemu-storage-daemon"
	pid[qsd]=$(cat "$qdir/pid")
	add_cleanup "kill ${pid[qsd]}; wait_for test ! -e /proc/${pid[qsd]}"
	file_disk[qsd]=$qdir/disk.img
	file_part[qsd]=$qdir/part.img
fi
if [ $use_xmount = 1 ]; then
	phase "xmount on $snap1"
	xmount_export "$snap1" "$work/xm-disk"
	pid[xmount/disk]=$XM_PID file_disk[xmount]=$XM_FILE
	xmount_export "$snap1" "$work/xm-part" "$part_off" "$part_len"
	pid[xmount/part]=$XM_PID file_part[xmount]=$XM_FILE
fi
methods=(a "${methods_fs[@]}")
[ $use_qsd = 0 ] || methods+=(qsd)
[ $use_xmount = 0 ] || methods+=(xmount)

phase "checking what each view reads"
# Every view must hold the same bytes: a quick check of the partition's
# first and last MiB, then the sizes.
want_head=$(sha_at "$snap1" "$part_off" 1048576)
want_tail=$(sha_at "$snap1" $((part_off + part_len - 1048576)) 1048576)
for m in "${methods[@]}"; do
	[ "$m" != a ] || continue
	f=${file_part[$m]}
	[ "$(stat -L -c %s "$f")" = "$part_len" ] || fail "$m: $f is not $part_len bytes"
	[ "$(stat -L -c %s "${file_disk[$m]}")" = "$disk_len" ] || fail "$m: whole disk size"
	[ "$(sha_at "$f" 0 1048576)" = "$want_head" ] &&
		[ "$(sha_at "$f" $((part_len - 1048576)) 1048576)" = "$want_tail" ] ||
		fail "$m: $f differs from $snap1 at offset $part_off"
done
# tar -S takes a file with no allocated blocks for a hole and reads none of it.
declare -A no_tar
for m in "${methods[@]}"; do
	[ "$m" != a ] || continue
	[ "$(stat -L -c %b "${file_part[$m]}")" != 0 ] || no_tar[$m]="st_blocks=0: tar -S reads nothing"
done

# ---- measurements ---------------------------------------------------------------------
rsync_dir=$work/rsync
mkdir -p "$rsync_dir"

# read_with READER FILE [OFFSET LENGTH]: the reader, on stdout nothing.
read_with() {
	local reader=$1 f=$2
	case $reader in
	direct) dd if="$f" of=/dev/null bs=1M iflag=direct,skip_bytes,count_bytes \
		skip="$3" count="$4" status=none ;;
	dd1M) dd if="$f" of=/dev/null bs=1M status=none ;;
	dd4k) dd if="$f" of=/dev/null bs=4k status=none ;;
	cp) cp -- "$f" /dev/null ;;
	tar) { tar -S -cf - -C "$(dirname -- "$f")" -- "$(basename -- "$f")" 2>/dev/null ||
		[ $? = 1 ]; } | cat >/dev/null ;; # 1: "file changed as we read it"
	rsync) rsync -W -- "$f" "$rsync_dir/copy" ;;
	*) fail "unknown reader $reader" ;;
	esac
}

# measure ROUND REGION READER METHOD FILE BYTES [OFFSET]: one cold read,
# appended to $res with the daemon's CPU ticks and peak RSS.
measure() {
	local round=$1 region=$2 reader=$3 m=$4 f=$5 bytes=$6 off=${7:-0}
	local p=${pid[$m/$region]:-${pid[$m]:-}} c0=0 c1=0 hwm=0 t0 t1 st=0 k0
	drop_caches
	k0=$(cache_kib)
	if [ -n "$p" ]; then
		c0=$(cpu_ticks "$p")
		echo 5 >"/proc/$p/clear_refs" # VmHWM from now
	fi
	t0=$(now_us)
	if [ "$m" = a ]; then
		read_with direct "$f" "$off" "$bytes" || st=$?
	elif [ "$region" = pair ]; then
		read_with dd1M "$f" || st=$?
	else
		read_with "$reader" "$f" || st=$?
	fi
	t1=$(now_us)
	if [ -n "$p" ]; then
		c1=$(cpu_ticks "$p")
		hwm=$(hwm_kib "$p")
	fi
	[ "$st" = 0 ] || log "round $round: $reader of $m ($f) failed with status $st"
	echo "$round $region $reader $m $bytes $((t1 - t0)) $((c1 - c0)) $hwm $st $(($(cache_kib) - k0))" |
		tee -a "$res" | sed 's/^/bench: result: /' >&2
	rm -f -- "$rsync_dir/copy"
}

# Open latency: open g2's disk (a snapshot is made), release: close it and
# wait for snapfs's log line that the removal is done, then ask lvs.
# Bare: the same lvcreate --snapshot and lvremove --select, by hand.
snaps_of() { lvs --noheadings -o lv_name -S "origin=$1 && lv_tags=snapfs" "$vg" 2>/dev/null | grep -c . || true; }
# "snapshot set removed in", or "snapshot set of N disk(s) removed" (older)
removed_count() { grep -cE "guest g2: snapshot set (of .* )?removed" "${logf[$1]}" || true; }
removed_more_than() { [ "$(removed_count "$1")" -gt "$2" ]; }
no_g2_snaps() { [ "$(snaps_of g2)" = 0 ]; }
latency_round() {
	local round=$1 t0 t1 t2 m before
	# Each alone, as the bare commands are: no other snapshot of g2 exists
	# meanwhile (a second one makes lvcreate and lvremove slower).  udev
	# settles first (under TCG it stays busy with the devices of the last
	# removal for seconds), and the order rotates from round to round.
	local -a order
	mapfile -t order < <(rotated "$round" "${methods_fs[@]}" bare)
	for m in "${order[@]}"; do
		udevadm settle -t 120 2>/dev/null || true
		if [ "$m" = bare ]; then
			t0=$(now_us)
			lvcreate --snapshot --permission r --name benchbare --addtag benchbare \
				--extents 20%ORIGIN "$vg/g2" >/dev/null 2>&1 || fail "bare lvcreate"
			t1=$(now_us)
			lvremove --yes --select 'lv_name="benchbare" && lv_tags="benchbare"' "$vg" \
				>/dev/null 2>&1 || fail "bare lvremove"
			t2=$(now_us)
		else
			before=$(removed_count "$m")
			t0=$(now_us)
			exec 5<"${mnt[$m]}/g2/vda.raw"
			t1=$(now_us)
			exec 5<&-
			wait_for -t 120 removed_more_than "$m" "$before" ||
				fail "$m: g2's snapshot set not removed"
			t2=$(now_us)
		fi
		echo "$round open - $m 0 $((t1 - t0)) 0 0 0" >>"$res"
		echo "$round release - $m 0 $((t2 - t1)) 0 0 0" >>"$res"
	done
	# Two readers need g2's set held by each mount.
	exec 5<"${mnt[snapfs]}/g2/vda.raw"
	if [ -n "$bin2" ]; then exec 6<"${mnt["snapfs'"]}/g2/vda.raw"; fi
	pair_round "$round"
	exec 5<&- 6<&-
	wait_for -t 120 no_g2_snaps || fail "g2's snapshots not removed after two readers"
}

# Two readers at once, g1's and g2's first partitions (dd bs=1M), against
# one alone; the same for (a) on the two snapshot devices.
pair_round() {
	local round=$1 m snap2 t0 d1 d2 s1 s2
	snap2=/dev/$(getfattr --absolute-names --only-values -n user.snapfs.snapshot \
		"${mnt[snapfs]}/g2/vda.raw")
	# The snapshots just made and removed keep udev busy for seconds under
	# TCG, which slowed whatever read came first, (a) too.
	udevadm settle -t 120 2>/dev/null || true
	# A different order in each round, as for the other readers.
	local -a order
	mapfile -t order < <(rotated "$round" a "${methods_fs[@]}")
	for m in "${order[@]}"; do
		drop_caches
		local p=${pid[$m]:-} c0=0
		[ -z "$p" ] || c0=$(cpu_ticks "$p")
		t0=$(now_us)
		if [ "$m" = a ]; then
			read_with direct "$snap1" "$part_off" "$part_len" & d1=$!
			read_with direct "$snap2" "$part_off" "$part_len" & d2=$!
		else
			read_with dd1M "${mnt[$m]}/g1/vda1.raw" & d1=$!
			read_with dd1M "${mnt[$m]}/g2/vda1.raw" & d2=$!
		fi
		s1=0 s2=0
		wait "$d1" || s1=$?
		wait "$d2" || s2=$?
		[ $s1 = 0 ] && [ $s2 = 0 ] || fail "two readers on $m failed"
		echo "$round pair two $m $((2 * part_len)) $(($(now_us) - t0)) $([ -z "$p" ] && echo 0 || echo $(($(cpu_ticks "$p") - c0))) 0 0" >>"$res"
		if [ "$m" = a ]; then
			measure "$round" pair one a "$snap1" "$part_len" "$part_off"
		else
			measure "$round" pair one "$m" "${mnt[$m]}/g1/vda1.raw" "$part_len"
		fi
	done
}

# ---- diagnostics: mount settings, request sizes, the status ioctl ---------------------
phase "diagnostics"
diag=$work/diag
{
	for m in "${methods_fs[@]}" qsd xmount; do
		case $m in
		qsd) [ $use_qsd = 1 ] || continue; f=${file_disk[qsd]} ;;
		xmount) [ $use_xmount = 1 ] || continue; f=${file_disk[xmount]} ;;
		*) f=${file_disk[$m]} ;;
		esac
		d=$(stat -L -c %d "$f")
		dev="$((d >> 8)):$((d & 255))"
		printf '%-8s bdi %-6s read_ahead_kb %-5s max_background %-3s st_blksize %s\n' "$m" "$dev" \
			"$(cat "/sys/class/bdi/$dev/read_ahead_kb" 2>/dev/null || echo '?')" \
			"$(cat "/sys/fs/fuse/connections/$((d & 255))/max_background" 2>/dev/null || echo '?')" \
			"$(stat -L -c %o "$f")"
	done
} >"$diag"

# The read sizes snapfs gets from FUSE: the pread64 syscalls traced by
# ftrace (cheap, unlike strace, which slows TCG to a crawl) during a 32 MiB
# dd bs=1M; nothing else calls pread64 meanwhile.
request_sizes() {
	local f=$1 tr=/sys/kernel/tracing
	[ -d "$tr/events" ] || mount -t tracefs nodev "$tr" 2>/dev/null || true
	local ev=$tr/events/syscalls/sys_enter_pread64
	[ -e "$ev/enable" ] || { echo "(no syscall trace events)"; return 0; }
	drop_caches
	echo 0 >"$tr/tracing_on"
	: >"$tr/trace"
	echo 1 >"$ev/enable"
	echo 1 >"$tr/tracing_on"
	dd if="$f" of=/dev/null bs=1M count=32 status=none
	echo 0 >"$tr/tracing_on"
	echo 0 >"$ev/enable"
	# "sys_pread64(fd: 7, buf: ..., count: 20000, pos: ...)": hex, maybe 0x
	grep -o 'count: [0-9a-fx]*' "$tr/trace" | awk '{ n[$2]++; t++ } END {
		if (!t) { print "(none seen)"; exit }
		for (s in n) printf "%d KiB x%d  ", strtonum_(s) / 1024, n[s]; print "" }
		function strtonum_(h,    i, c, v) {
			v = 0; h = tolower(h); sub(/^0x/, "", h)
			for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1
			return v }'
	: >"$tr/trace"
}
for m in "${methods_fs[@]}"; do
	printf '%-8s pread sizes during a 32 MiB dd bs=1M: %s\n' "$m" \
		"$(request_sizes "${file_disk[$m]}")" >>"$diag"
done
# What one libvirt connection costs: the test driver parses its whole node
# XML at every connection (snapfs keeps its connections; virsh makes one).
virsh_s() {
	local t0=$(now_us)
	virsh -r -c "test://$1" domstate "$2" >/dev/null 2>&1 || return 0
	awk -v a="$t0" -v b="$(now_us)" 'BEGIN { printf "%.3f", (b - a) / 1e6 }'
}
if command -v virsh >/dev/null; then
	printf 'virsh -r domstate (a test-driver connection and a lookup): %s s with 2 guests, %s s with %s\n' \
		"$(virsh_s "$xml" g2)" "$(virsh_s "$xml_many" guest001)" "$nguests" >>"$diag"
fi
dm1=$(dmsetup info -c --noheadings -o name "$snap1" 2>/dev/null || basename "$(readlink -f "$snap1")")
"$bt" dmstatus "$dm1" 5000 >"$work/dmstatus" 2>&1 || echo "dmstatus failed" >"$work/dmstatus"

# ---- the rounds -------------------------------------------------------------------------
for ((r = 1; r <= rounds; r++)); do
	phase "round $r of $rounds: open/release, two readers"
	latency_round "$r"
	# A different order in each round, so that no method always goes first.
	mapfile -t order < <(rotated "$r" "${methods[@]}")
	phase "round $r: whole disk"
	for m in "${order[@]}"; do
		if [ "$m" = a ]; then
			measure "$r" disk dd1M a "$snap1" "$disk_len" 0
		else
			measure "$r" disk dd1M "$m" "${file_disk[$m]}" "$disk_len"
		fi
	done
	for reader in "${readers[@]}"; do
		[ "$reader" != rsync ] || [ $use_rsync = 1 ] || continue
		phase "round $r: partition, $reader"
		for m in "${order[@]}"; do
			if [ "$m" = a ]; then
				[ "$reader" = dd1M ] || continue # (a) is one reader: dd iflag=direct
				measure "$r" part dd1M a "$snap1" "$part_len" "$part_off"
			elif [ "$reader" = tar ] && [ -n "${no_tar[$m]:-}" ]; then
				continue
			else
				measure "$r" part "$reader" "$m" "${file_part[$m]}" "$part_len"
			fi
		done
	done
done
threads=$(awk '/^Threads:/ { print $2 }' "/proc/${pid[snapfs]}/status")
phase "done measuring"

# ---- the table -----------------------------------------------------------------------------
total_s=$(awk -v a="$t_start" -v b="$(now_us)" 'BEGIN { printf "%.0f", (b - a) / 1e6 }')
{
	echo "snapfs read benchmark: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "machine: $([ $in_vm = 1 ] && echo "test VM (qemu TCG, $(nproc) vCPU, $(($(awk '/MemTotal/ { print $2 }' /proc/meminfo) / 1024)) MiB)" || echo "native, $(nproc) CPUs"), kernel $(uname -r), PV on $backing"
	if [ $in_vm = 1 ] && [ -n "${SNAPFS_BENCH_HOST_LOOP_US:-}" ]; then
		echo "TCG slowdown: a CPU-bound loop (benchtool fill 256 MiB) ran $(awk -v a="$ref_us" -v b="$SNAPFS_BENCH_HOST_LOOP_US" 'BEGIN { printf "%.1f", a / b }')x slower here than on the host; syscalls, page faults and context switches cost more still"
	fi
	echo "guest g1: ${disk_mib} MiB disk, MBR, vda1 ${part_mib} MiB + vda2; incompressible data (filled in ${fill_s}s)"
	echo "rounds: $rounds (medians; ratios are medians of per-round ratios); snapfs: $SNAPFS_BIN${bin2:+; $bin2_label: $bin2}${SNAPFS_BENCH_OPTS:+; options: $SNAPFS_BENCH_OPTS}"
	echo "snapshot: $snap1 ($(lvs --noheadings -o chunk_size "$snap1" 2>/dev/null | tr -d ' ') chunks)"
	echo
} >"$work/head"
awk -v tck="$clk_tck" -v rounds="$rounds" -v nguests="$nguests" -v ls_snaps="$ls_snaps" \
	-v ls_entries="$ls_entries" -v mount_many="$mount_many_s" -v threads="$threads" \
	-v use_xmount="$use_xmount" -v use_rsync="$use_rsync" -v use_qsd="$use_qsd" \
	-v readers="${readers[*]}" -v methods="${methods[*]}" \
	-v notar_xmount="${no_tar[xmount]:-}" -v notar_qsd="${no_tar[qsd]:-}" \
	-v lsfile="$work/ls" -v ls_limit="$ls_limit" -f "$bench_dir/table.awk" "$res" >"$work/table" ||
	{ cat "$res"; fail "table.awk failed on the results above"; }
cat "$work/head" "$work/table"
echo
echo "mount settings and request sizes:"
sed 's/^/  /' "$diag"
echo "DM_TABLE_STATUS ioctl (snapfs checks the snapshot after every read), per call:"
sed 's/^/  /' "$work/dmstatus"
echo
echo "benchmark wall time: ${total_s}s"
[ "${SNAPFS_BENCH_RAW:-0}" != 1 ] || { echo "raw results:"; cat "$res"; }
for m in "${methods_fs[@]}"; do
	grep -i 'warn\|error\|attempt\|fail\|thawed' "${logf[$m]}" | sed "s/^/bench: $m log: /" | tail -n 20 >&2 || true
done
exec 3<&-
[ -z "$bin2" ] || exec 4<&-
