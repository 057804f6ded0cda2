#!/bin/bash
# The benchmark of RBD disks, natively (no VM, no device-mapper): how fast
# snapfs serves a guest's Ceph RBD disk from the snapshot it makes, against
# `rbd export` of that snapshot (the limit of a client of the cluster) and
# qemu-storage-daemon's FUSE export of the same snapshot through qemu's rbd
# driver; what an open (a snapshot made) and a release (removed) cost
# beside the bare librbd calls and the rbd command; and what the sweep at
# each start costs for many images.  Not a test: it prints a table and a
# line per target; see docs/performance.md.
#
# A one-host cluster (tests/lib-ceph.sh: one mon, one mgr, one BlueStore
# OSD on a sparse file of OSD_SIZE in $SNAPFS_BENCH_DIR, /var/tmp: this
# machine's disk) holds an image of DISK_MIB of random bytes with an MBR
# (vda1 of PART_MIB at 1 MiB, vda2 the rest), made with `rbd import`.  A
# libvirt test-driver guest, shut off, has it as its raw disk vda
# (client.snapfs, its key in the cluster's keyring).  snapfs holds the
# guest's set for the rounds, and every subject reads the snapshot that
# set made:
#
# - snapfs: vda.raw, and vda1.raw;
# - qsd: qemu-storage-daemon, one process, --blockdev driver=rbd of the
#   snapshot (read-only, cache.direct=on: rbd_cache off, as snapfs has it)
#   exported over FUSE, and a raw node at vda1's offset and size over it,
#   exported too;
# - export: `rbd export SNAP - >/dev/null`, what librbd's own client gets
#   from the cluster with its default of 10 object reads in flight (its
#   connection to the cluster counted).
#
# Readers of the disk: dd bs=1M (all three), dd bs=4k, cp (to tmpfs),
# tar -S -cf - | cat; of the partition dd bs=1M.  Every read is cold
# (caches dropped; BlueStore reads its file with O_DIRECT), each round
# reads the subjects in an order that rotates, the first subject of each
# reader's turn reads once unmeasured before (as backup-api.sh does), and
# the table gives medians (ratios: medians of each round's ratio).  CPU
# per GiB: snapfs's, qemu-storage-daemon's and the OSD's, from
# /proc/PID/stat.  Then, the set released: open() of vda.raw and the time
# from close() to snapfs's log line of the removal (linger 0), against a
# bare librbd open and snapshot create, and snapshot remove and close
# (python3-rbd, connected beforehand, as snapfs stays connected), and the
# rbd command's `snap create` and `snap rm` (a process and a connection
# each); the OSD map epochs each open and release add.  Then the sweep:
# `snapfs --cleanup` of a host of SWEEP images, of one image and of none,
# and of SWEEP images each with a snapshot a killed snapfs left.  snapfs's
# RSS at the end.  Every raw measurement goes to stderr as a
# "bench: result:" line.
#
#   SNAPFS_BENCH_QUICK=1     256 MiB disk, 128 MiB partition, 3 rounds, 5 images
#   SNAPFS_BENCH_DISK_MIB, SNAPFS_BENCH_PART_MIB, SNAPFS_BENCH_ROUNDS,
#   SNAPFS_BENCH_DIR (where the OSD's file goes), SNAPFS_BENCH_OSD_SIZE (8G),
#   SNAPFS_BENCH_SWEEP (images of the sweep; 0: no sweep), SNAPFS_BENCH_OPTS
#   (more options for the mount, e.g. -o readahead=1024), SNAPFS_BENCH_NO_QSD=1
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-ceph.sh" || exit 99
. "$(dirname -- "$0")/lib-native.sh" || exit 99
requires_root
requires ceph rbd ceph-mon ceph-osd ceph-mgr python3 sfdisk getfattr fusermount3 dd cp tar awk \
	sha256sum "${CC:-cc}"
# The bare librbd calls: Python's bindings (Debian: python3-rbd), which a
# python3 of its own on PATH may lack.
pyrbd=
for p in python3 /usr/bin/python3; do
	! "$p" -c 'import rados, rbd' 2>/dev/null || { pyrbd=$p; break; }
done
[ -n "$pyrbd" ] || log "no python3 with rados and rbd (python3-rbd): no bare librbd figures"

if [ "${SNAPFS_BENCH_QUICK:-0}" = 1 ]; then
	disk_mib=${SNAPFS_BENCH_DISK_MIB:-256} part_mib=${SNAPFS_BENCH_PART_MIB:-128}
	rounds=${SNAPFS_BENCH_ROUNDS:-3} nsweep=${SNAPFS_BENCH_SWEEP:-5}
else
	disk_mib=${SNAPFS_BENCH_DISK_MIB:-2048} part_mib=${SNAPFS_BENCH_PART_MIB:-1024}
	rounds=${SNAPFS_BENCH_ROUNDS:-5} nsweep=${SNAPFS_BENCH_SWEEP:-20}
fi
[ $((part_mib + 2)) -le "$disk_mib" ] || fail "a ${part_mib} MiB partition does not fit a ${disk_mib} MiB disk"
osd_size=${SNAPFS_BENCH_OSD_SIZE:-8G}
# shellcheck disable=SC2206 # options, split as given
extra_opts=(${SNAPFS_BENCH_OPTS:-})
use_qsd=1
# Its rbd driver is a module (Debian: qemu-block-extra).
{ command -v qemu-storage-daemon >/dev/null 2>&1 && [ "${SNAPFS_BENCH_NO_QSD:-0}" != 1 ] &&
	compgen -G '/usr/lib/*/qemu/block-rbd.so' >/dev/null; } || use_qsd=0
export CEPH_CMD_TIMEOUT=${CEPH_CMD_TIMEOUT:-600} # an export of the disk is one command

test_tmpdir
work=$TEST_TMPDIR
# Cleanups run on failure too: no ERR trap and no set -e while they start.
trap 'rc=$?; trap - ERR; set +e; exec 3<&-; (exit $rc); _run_cleanups' EXIT
out=$(mktemp -d /dev/shm/snapfs-bench-out.XXXXXX) # cp writes here
add_cleanup "rm -rf '$out'"
store=$(mktemp -d "${SNAPFS_BENCH_DIR:-/var/tmp}/snapfs-bench.XXXXXX")
add_cleanup "rm -rf '$store'"
store_where="a sparse file of $osd_size in ${SNAPFS_BENCH_DIR:-/var/tmp} ($(stat -f -c %T "$store"))"

# ---- the cluster and the image --------------------------------------------------
log "starting a one-host Ceph cluster, its OSD on $store_where"
ceph_start "$store/ceph" "$osd_size"
osd_pid=$(cat "$CEPH_DIR/run/osd.0.pid")
build_benchtool
disk=$store/disk.img
log "filling a ${disk_mib} MiB disk with random bytes, and importing it"
"$BT" fill $((disk_mib << 20)) 13 "$disk" || fail "benchtool fill"
part_off=$((1 << 20)) part_len=$((part_mib << 20))
printf 'label: dos\nstart=2048, size=%d, type=83\nstart=%d, type=83\n' \
	$((part_mib * 2048)) $((2048 + part_mib * 2048)) | sfdisk -q "$disk" || fail "sfdisk"
rbd_cli import --no-progress "$disk" rbd/bench >/dev/null 2>&1 || fail "rbd import"
image_info=$(rbd_cli info --format json rbd/bench | python3 -c '
import json, sys
i = json.load(sys.stdin)
print("objects of %d MiB, features %s" % (i["object_size"] >> 20, ",".join(i["features"])))')

# rbd_disk TARGET IMAGE: a network disk as libvirt has it, raw, the key
# that of client.snapfs (the test driver has no secrets: the keyring).
rbd_disk() {
	printf "      <disk type='network' device='disk'><driver name='qemu' type='raw'/>
        <source protocol='rbd' name='%s'><host name='%s' port='%s'/>
          <config file='%s'/><auth username='snapfs'><secret type='ceph' usage='snapfs'/></auth>
        </source><target dev='%s' bus='virtio'/></disk>\n" \
		"$2" "${CEPH_MON_ADDR%:*}" "${CEPH_MON_ADDR##*:}" "$CEPH_CONF" "$1"
}
# node NAME DISKS_XML [NAME DISKS_XML...]: a test-driver node of guests
# shut off, on stdout.
node() {
	echo "<node>"
	while [ $# -gt 0 ]; do
		virt_domain "$1" "$2" |
			sed "s|<domain type='test'>|<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>|; s|</devices>|</devices><test:runstate>5</test:runstate>|"
		shift 2
	done
	echo "</node>"
}
xml=$work/node.xml
node bench "$(rbd_disk vda rbd/bench)" >"$xml"

mnt=$work/mnt
snapfs_start "test://$xml" "$mnt" -o host_id=bench "${extra_opts[@]}"
pid=$SNAPFS_PID
mlog=$SNAPFS_LOG
wait_for -t 30 test -e "$mnt/bench/vda1.raw" || fail "no vda1.raw: $(ls "$mnt/bench")"
[ "$(stat -c %s "$mnt/bench/vda1.raw")" = $part_len ] || fail "vda1.raw is not $part_len bytes"

# Held: the rounds measure reads, not snapshots.  Every subject reads the
# snapshot this set made.
exec 3<"$mnt/bench/vda.raw"
snapshot=$(getfattr --absolute-names --only-values -n user.snapfs.snapshot "$mnt/bench/vda.raw")
snap=${snapshot#rbd/bench@}
case $snap in snapfs.bench.*) ;; *) fail "snapfs's snapshot: '$snapshot'" ;; esac
log "snapfs's snapshot: $snapshot"

if [ $use_qsd = 1 ]; then
	qdisk=$work/qsd-disk.raw qpart=$work/qsd-part.raw
	: >"$qdisk"
	: >"$qpart"
	qemu-storage-daemon \
		--blockdev "driver=rbd,node-name=r,pool=rbd,image=bench,snapshot=$snap,conf=$CEPH_CONF,user=admin,read-only=on,cache.direct=on" \
		--blockdev "driver=raw,node-name=p,file=r,offset=$part_off,size=$part_len,read-only=on" \
		--export "type=fuse,id=e,node-name=r,mountpoint=$qdisk,writable=off" \
		--export "type=fuse,id=e2,node-name=p,mountpoint=$qpart,writable=off" \
		>"$work/qsd.log" 2>&1 &
	qpid=$!
	add_cleanup "kill $qpid 2>/dev/null; while kill -0 $qpid 2>/dev/null; do sleep 0.1; done"
	wait_for -t 30 sh -c "[ \$(stat -c %s '$qpart') = $part_len ]" ||
		fail "qemu-storage-daemon's exports did not come up: $(cat "$work/qsd.log")"
	[ "$(stat -c %s "$qdisk")" = $((disk_mib << 20)) ] || fail "qsd's disk is not the disk's size"
	qsd_blocks=$(stat -c %b "$qdisk")
	[ "$qsd_blocks" != 0 ] || fail "qsd's file has no blocks: tar -S would read nothing of it"
else
	qpid=
	log "qemu-storage-daemon (with qemu-block-extra's rbd driver) not found: its columns stay empty"
fi

# read_with READER FILE: read FILE whole the way READER does.
read_with() {
	local dir base
	dir=$(dirname -- "$2") base=$(basename -- "$2")
	case $1 in
	dd1M) dd if="$2" of=/dev/null bs=1M status=none ;;
	dd4k) dd if="$2" of=/dev/null bs=4k status=none ;;
	cp) cp -- "$2" "$out/x" && rm -f "$out/x" ;;
	# qemu-storage-daemon's export moves its times as it is read: tar's
	# "file changed as we read it" (1) after reading every byte (native.sh).
	tarS) tar -C "$dir" -cSf - -- "$base" | cat >/dev/null || [ $? = 1 ] ;;
	esac
}
# read_subject SUBJECT REGION READER: one read of REGION (disk, part).
read_subject() {
	case $1-$2 in
	snapfs-disk) read_with "$3" "$mnt/bench/vda.raw" ;;
	snapfs-part) read_with "$3" "$mnt/bench/vda1.raw" ;;
	qsd-disk) read_with "$3" "$qdisk" ;;
	qsd-part) read_with "$3" "$qpart" ;;
	export-disk) rbd_cli export --no-progress "rbd/bench@$snap" - >/dev/null 2>"$work/export.err" ;;
	esac
}
ticks() { if [ -n "$1" ]; then cpu_ticks "$1"; else echo 0; fi; }
res=$work/results # round region reader subject bytes usecs snapfs qsd osd (ticks)
# measure ROUND REGION READER SUBJECT...: one cold read each, in turn, the
# first read once before, unmeasured.
measure() {
	local r=$1 region=$2 reader=$3 s bytes s0 q0 o0 t0 t1
	shift 3
	bytes=$([ "$region" = disk ] && echo $((disk_mib << 20)) || echo $part_len)
	drop_caches
	read_subject "$1" "$region" "$reader" || fail "$reader of $1 $region"
	for s in "$@"; do
		drop_caches
		s0=$(ticks "$pid") q0=$(ticks "$qpid") o0=$(ticks "$osd_pid")
		t0=$(now_us)
		read_subject "$s" "$region" "$reader" || fail "$reader of $s $region"
		t1=$(now_us)
		echo "$r $region $reader $s $bytes $((t1 - t0)) $(($(ticks "$pid") - s0))" \
			"$(($(ticks "$qpid") - q0)) $(($(ticks "$osd_pid") - o0))" |
			tee -a "$res" | sed 's/^/bench: result: /' >&2
	done
}

# ---- rounds ---------------------------------------------------------------------
others=()
[ $use_qsd = 0 ] || others+=(qsd)
load0=$(cut -d' ' -f1 /proc/loadavg)
t_rounds=$(now_us)
for ((r = 1; r <= rounds; r++)); do
	log "round $r of $rounds"
	mapfile -t all < <(rotated "$r" snapfs "${others[@]}" export)
	mapfile -t two < <(rotated "$r" snapfs "${others[@]}")
	measure "$r" disk dd1M "${all[@]}"
	for reader in $(rotated "$r" dd4k cp tarS); do
		measure "$r" disk "$reader" "${two[@]}"
	done
	measure "$r" part dd1M "${two[@]}"
done
load1=$(cut -d' ' -f1 /proc/loadavg)
t_rounds=$((($(now_us) - t_rounds) / 1000000))
hwm_reads=$(hwm_kib "$pid")
log "checking what was read against the imported file"
cmp "$mnt/bench/vda.raw" "$disk" || fail "vda.raw differs from the image"
[ "$(sha_file "$mnt/bench/vda1.raw")" = "$(sha_at "$disk" $part_off $part_len)" ] ||
	fail "vda1.raw differs from the image at $part_off"
if [ $use_qsd = 1 ]; then
	cmp "$qdisk" "$disk" || fail "qsd's disk differs from the image"
	kill "$qpid"
	wait "$qpid" 2>/dev/null || true
fi
[ "$(rbd_cli export --no-progress "rbd/bench@$snap" - 2>/dev/null | sha_file -)" = "$(sha_file "$disk")" ] ||
	fail "rbd export of the snapshot differs from the image"

# ---- open and release -----------------------------------------------------------
ours() { rbd_cli snap ls --format json rbd/bench | python3 -c '
import json, sys
print(sum(1 for s in json.load(sys.stdin) if s["name"].startswith("snapfs.")))'; }
no_snapshot() { [ "$(ours)" = 0 ]; }
exec 3<&-
wait_for -t 30 no_snapshot || fail "the set's snapshot outlived its release"
epoch() { ceph_cli osd dump --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["epoch"])'; }
# bare_librbd NAME: open rbd/bench, create snapshot NAME (timed), remove it
# and close (timed), connected as client.snapfs before either.
bare_librbd() {
	"$pyrbd" - "$CEPH_CONF" "$1" <<'PY'
import rados, rbd, sys, time
c = rados.Rados(conffile=sys.argv[1], rados_id="snapfs")
c.connect()
io = c.open_ioctx("rbd")
t0 = time.monotonic()
img = rbd.Image(io, "bench")
img.create_snap(sys.argv[2])
t1 = time.monotonic()
img.remove_snap(sys.argv[2])
img.close()
t2 = time.monotonic()
print(round((t1 - t0) * 1e6), round((t2 - t1) * 1e6))
io.close()
c.shutdown()
PY
}
lat=$work/latency # KIND OPEN_US RELEASE_US
nlat=$((rounds * 2))
log "open and release, $nlat of each"
e0=$(epoch)
for ((r = 1; r <= nlat; r++)); do
	for k in $(rotated "$r" snapfs cli ${pyrbd:+librbd}); do
		case $k in
		snapfs)
			echo "$k $("$BT" openclose "$mnt/bench/vda.raw" "$mlog" \
				"guest bench: snapshot set removed" 60)"
			;;
		librbd) echo "$k $(bare_librbd "bare.$r")" ;;
		cli)
			t0=$(now_us)
			rbd_cli snap create "rbd/bench@bare.$r" >/dev/null 2>&1 || fail "rbd snap create"
			t1=$(now_us)
			rbd_cli snap rm "rbd/bench@bare.$r" >/dev/null 2>&1 || fail "rbd snap rm"
			echo "$k $((t1 - t0)) $(($(now_us) - t1))"
			;;
		esac | tee -a "$lat" | sed 's/^/bench: result: latency /' >&2
		[ "$k" != snapfs ] || no_snapshot || fail "snapfs's snapshot outlived the log line of its removal"
	done
done
epochs=$(($(epoch) - e0))
nsnaps=$((nlat * $([ -n "$pyrbd" ] && echo 3 || echo 2))) # made and removed in that loop
# snapfs's own figures: the log lines of each set's creation and removal.
sed -n 's/.*guest bench: snapshot set created in \([0-9.]*\)s.*/created \1/p;
	s/.*guest bench: snapshot set removed in \([0-9.]*\)s.*/removed \1/p' "$mlog" >"$work/setlog"
rss_end=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
rss_anon=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status")
rss_file=$(awk '/^RssFile:/ { print $2 }' "/proc/$pid/status")
hwm=$(hwm_kib "$pid")
threads=$(awk '/^Threads:/ { print $2 }' "/proc/$pid/status")
snapfs_stop "$mnt"

# ---- the sweep ------------------------------------------------------------------
# snapfs --cleanup of a host's URI runs the sweep of every start: the
# snapshots of every RBD image of every guest of the host listed (one image
# opened, one snap list each), those named for this host and mount
# removed; the LVM and libvirt sweeps run too, which a host with no RBD
# disk times alone.
sweep=$work/sweep # KIND USECS
if [ "$nsweep" -gt 0 ]; then
	log "the sweep: $nsweep images"
	args=()
	for ((i = 1; i <= nsweep; i++)); do
		n=$(printf 's%03d' "$i")
		rbd_cli create --size 1G "rbd/$n" >/dev/null 2>&1 || fail "rbd create $n"
		# A snapshot of someone else's on each, as images have.
		rbd_cli snap create "rbd/$n@theirs" >/dev/null 2>&1 || fail "rbd snap create $n"
		args+=("$n" "$(rbd_disk vda "rbd/$n")")
	done
	node "${args[@]}" >"$work/many.xml"
	node "${args[@]:0:2}" >"$work/one.xml"
	node none "" >"$work/none.xml"
	smnt=$work/smnt
	mkdir -p "$smnt"
	cleanup_once() { # KIND XML
		local t0 t1
		t0=$(now_us)
		"$SNAPFS_BIN" --cleanup -o host_id=sweep "test://$2" "$smnt" >"$work/cleanup.out" 2>&1 ||
			fail "snapfs --cleanup ($1): $(cat "$work/cleanup.out")"
		t1=$(now_us)
		echo "$1 $((t1 - t0))" | tee -a "$sweep" | sed 's/^/bench: result: sweep /' >&2
	}
	for ((r = 1; r <= rounds; r++)); do
		for k in $(rotated "$r" none one many); do
			cleanup_once "$k" "$work/$k.xml"
		done
	done
	# Left behind: snapfs of this host and mount point, each guest's disk
	# held, killed; swept at once, as a restart does, and again with the
	# dead client's watches timed out (osd_client_watch_timeout, 30 s).
	leftovers() { # KIND WAIT_S
		local i fd fds=() left=0
		snapfs_start "test://$work/many.xml" "$smnt" -o host_id=sweep
		for ((i = 1; i <= nsweep; i++)); do
			exec {fd}<"$smnt/$(printf 's%03d' "$i")/vda.raw"
			fds+=("$fd")
		done
		kill -KILL "$SNAPFS_PID"
		wait_for -t 60 test -e "$SNAPFS_LOG.rc" || fail "snapfs survived kill -9"
		rm -f "$SNAPFS_LOG.pid"
		fusermount3 -u -z "$smnt" 2>/dev/null || umount -l "$smnt"
		for fd in "${fds[@]}"; do exec {fd}<&-; done
		for ((i = 1; i <= nsweep; i++)); do
			left=$((left + $(rbd_cli snap ls --format json "rbd/$(printf 's%03d' "$i")" |
				python3 -c 'import json, sys; print(sum(1 for s in json.load(sys.stdin) if s["name"].startswith("snapfs.sweep.")))')))
		done
		[ "$left" = "$nsweep" ] || fail "the killed snapfs left $left snapshots, not $nsweep"
		sleep "$2"
		cleanup_once "$1" "$work/many.xml"
		grep -q "removed $nsweep leftover RBD snapshot(s)" "$work/cleanup.out" ||
			fail "--cleanup said: $(cat "$work/cleanup.out")"
	}
	leftovers leftover 0
	leftovers leftover-late 40
fi

# ---- the table ------------------------------------------------------------------
echo "snapfs native benchmark of RBD disks: $(date -u +%Y-%m-%dT%H:%MZ), $(machine)"
echo "Ceph $(ceph --version | awk '{ print $3 }'), one host: one mon, one mgr, one BlueStore OSD on $store_where; pool rbd of size 1"
echo "image rbd/bench: ${disk_mib} MiB of random bytes, vda1 ${part_mib} MiB, $image_info; $rounds rounds, cold, medians"
[ $use_qsd = 0 ] || echo "qemu-storage-daemon $(qemu-storage-daemon --version | sed -n '1s/.*version \([^ ]*\).*/\1/p'): --blockdev driver=rbd of the snapshot, cache.direct=on, --export type=fuse"
echo "rounds: ${t_rounds} s; load average $load0 before them, $load1 after"
awk -v tck="$clk_tck" -v hwm="$hwm" -v hwm_reads="$hwm_reads" -v rss_end="$rss_end" -v rss_anon="$rss_anon" -v rss_file="$rss_file" \
	-v threads="$threads" -v lat="$lat" -v setlog="$work/setlog" -v sweep="$sweep" \
	-v nsweep="$nsweep" -v epochs="$epochs" -v nsnaps="$nsnaps" -v nlat="$nlat" -v qsd="$use_qsd" "$AWK_MEDIAN"'
{
	k = $2 " " $3 " " $4
	mbs[k] = mbs[k] " " $5 / $6
	gib = $5 / 1073741824
	cpu_s[k] = cpu_s[k] " " ($7 / tck) / gib
	cpu_q[k] = cpu_q[k] " " ($8 / tck) / gib
	cpu_o[k] = cpu_o[k] " " ($9 / tck) / gib
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
function line(label, region, reader,   k, s, q, e, rq, re) {
	k = region " " reader " "
	s = rate(k "snapfs"); q = rate(k "qsd"); e = rate(k "export")
	rq = ratio(region, reader, "qsd", reader)
	re = ratio(region, reader, "export", reader)
	printf "%-24s %7.0f %7s %7s %8s %8s   %6.3f %6s   %6.3f %6s %6s\n", label, s, cell(q, "%.0f"),
		cell(e, "%.0f"), cell(rq, "%.2fx"), cell(re, "%.2fx"), median(cpu_s[k "snapfs"]),
		q ? sprintf("%.3f", median(cpu_q[k "qsd"])) : "-", median(cpu_o[k "snapfs"]),
		q ? sprintf("%.3f", median(cpu_o[k "qsd"])) : "-",
		e ? sprintf("%.3f", median(cpu_o[k "export"])) : "-"
	got[reader " " region " qsd"] = rq
	got[reader " " region " export"] = re
}
function target(what, v, want) {
	if (!v) {
		printf "target: %s >= %.2fx: not measured\n", what, want
		return
	}
	printf "target: %s >= %.2fx: %.3fx %s\n", what, want, v, (v >= want ? "met" : "NOT met")
}
function ms(list) { return list == "" ? "-" : sprintf("%.1f ms", median(list) / 1000) }
END {
	printf "%-24s %7s %7s %7s %8s %8s   %-13s   %-20s\n", "", "", "", "", "snapfs/", "snapfs/",
		"CPU s/GiB", "OSD CPU s/GiB"
	printf "%-24s %7s %7s %7s %8s %8s   %6s %6s   %6s %6s %6s\n", "reader (MB/s)", "snapfs",
		"qsd", "export", "qsd", "export", "snapfs", "qsd", "snapfs", "qsd", "export"
	line("disk dd bs=1M", "disk", "dd1M")
	line("disk dd bs=4k", "disk", "dd4k")
	line("disk cp (to tmpfs)", "disk", "cp")
	line("disk tar -S -cf - | cat", "disk", "tarS")
	line("vda1 dd bs=1M", "part", "dd1M")
	print "export: rbd export of the same snapshot to stdout (/dev/null), its connection included"
	while ((getline l < lat) > 0) {
		split(l, f, " ")
		a[f[1]] = a[f[1]] " " f[2]; b[f[1]] = b[f[1]] " " f[3]
	}
	while ((getline l < setlog) > 0) {
		split(l, f, " ")
		inlog[f[1]] = inlog[f[1]] " " f[2] * 1e6
	}
	printf "open, snapshot made (median of %d): snapfs open() %s (its log: set created in %s); bare librbd open + snap_create %s; rbd snap create %s\n",
		nlat, ms(a["snapfs"]), ms(inlog["created"]), ms(a["librbd"]), ms(a["cli"])
	printf "release, snapshot removed: snapfs close to removal %s (its log: set removed in %s); bare librbd snap_remove + close %s; rbd snap rm %s\n",
		ms(b["snapfs"]), ms(inlog["removed"]), ms(b["librbd"]), ms(b["cli"])
	printf "OSD map epochs: %d for the %d snapshots made and removed there (%.1f each)\n", epochs,
		nsnaps, epochs / nsnaps
	if (nsweep > 0) {
		while ((getline l < sweep) > 0) {
			split(l, f, " ")
			sw[f[1]] = sw[f[1]] " " f[2]
		}
		n0 = median(sw["none"]); n1 = median(sw["one"]); nn = median(sw["many"])
		printf "sweep, snapfs --cleanup (median of %d): no RBD disk %.0f ms, 1 image %.0f ms, %d images %.0f ms: %.1f ms per image after the first\n",
			split(sw["many"], tmp, " "), n0 / 1000, n1 / 1000, nsweep, nn / 1000,
			(nsweep > 1 ? (nn - n1) / (nsweep - 1) / 1000 : 0)
		printf "sweep of %d images each with a snapshot a killed snapfs left: %.0f ms at once (as a restart), %.0f ms after 40 s (the dead client watches timed out)\n",
			nsweep, median(sw["leftover"]) / 1000, median(sw["leftover-late"]) / 1000
	}
	printf "snapfs RSS at the end: %.1f MiB (anonymous %.1f, files mapped %.1f: its libraries); peak (VmHWM) %.1f MiB, %.1f MiB after the reads; %d threads\n",
		rss_end / 1024, rss_anon / 1024, rss_file / 1024, hwm / 1024, hwm_reads / 1024, threads
	target("snapfs against rbd export, disk dd bs=1M", got["dd1M disk export"], 0.8)
	if (qsd) {
		target("snapfs against qemu-storage-daemon, disk dd bs=1M", got["dd1M disk qsd"], 2)
		target("snapfs against qemu-storage-daemon, disk dd bs=4k", got["dd4k disk qsd"], 2)
		target("snapfs against qemu-storage-daemon, disk cp", got["cp disk qsd"], 2)
		target("snapfs against qemu-storage-daemon, disk tar -S | cat", got["tarS disk qsd"], 2)
		target("snapfs against qemu-storage-daemon, vda1 dd bs=1M", got["dd1M part qsd"], 2)
	}
	printf "target: RSS < 64 MiB: %.1f MiB %s\n", hwm / 1024, (hwm < 65536 ? "met" : "NOT met")
}' "$res"
