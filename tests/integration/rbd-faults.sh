#!/bin/bash
# Guests on Ceph RBD when the cluster is in trouble, on a real one-host
# cluster (lib-ceph.sh) with the libvirt test driver.  Checked:
#  - a writer elsewhere holds the image's exclusive lock (rbd bench, as a
#    running qemu would): the snapshot is taken through it, and it writes
#    on to the end without an error;
#  - free space on the cluster falls under -o rbd_reserve= while the guest
#    rewrites its disk: the snapshot is dropped and removed, its reader gets
#    EIO, the writer goes on, the log says which guest, disk and why;
#  - the cluster reports near full (ceph osd set-nearfull-ratio): the same;
#  - the cluster stopped (its mon and OSD) while a file is open: reads fail
#    with EIO within the timeouts, listings and another guest's files are
#    served meanwhile, and once the cluster is back the snapshot left over
#    is removed and a new open serves the disk again.
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
. "$(dirname -- "$0")/../lib-qcow2.sh" || exit 99
. "$(dirname -- "$0")/../lib-ceph.sh" || exit 99
requires fusermount3 getfattr sha256sum python3
test_tmpdir

ceph_start "$TEST_TMPDIR/ceph" 3G
MiB=$((1 << 20))
head -c $((128 * MiB)) /dev/urandom >"$TEST_TMPDIR/img.raw"
rbd_cli import --no-progress "$TEST_TMPDIR/img.raw" rbd/web >/dev/null || fail "rbd import"
# Another guest on a local file: it must be served whatever the cluster does.
head -c $((16 * MiB)) /dev/urandom >"$TEST_TMPDIR/local.raw"

rbd_disk() { # TARGET IMAGE
	printf "      <disk type='network' device='disk'><driver name='qemu' type='raw'/>
        <source protocol='rbd' name='%s'><host name='%s' port='%s'/>
          <config file='%s'/><auth username='snapfs'><secret type='ceph' usage='snapfs'/></auth>
        </source><target dev='%s' bus='virtio'/></disk>\n" \
		"$2" "${CEPH_MON_ADDR%:*}" "${CEPH_MON_ADDR##*:}" "$CEPH_CONF" "$1"
}
guest_off() { # NAME DISKS_XML
	virt_domain "$1" "$2" | sed "s|<domain type='test'>|<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>|; s|</devices>|</devices><test:runstate>5</test:runstate>|"
}
xml=$TEST_TMPDIR/node.xml
{
	echo "<node>"
	guest_off web "$(rbd_disk vda rbd/web)"
	guest_off local "$(disk_file vda "$TEST_TMPDIR/local.raw")"
	echo "</node>"
} >"$xml"
ours() { # the snapfs snapshots of rbd/web
	rbd_cli snap ls --format json rbd/web | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    if s["name"].startswith("snapfs."):
        print(s["name"])'
}
none_left() { [ -z "$(ours)" ]; }
avail() { # raw bytes free on the cluster, as snapfs reads them
	ceph_cli df --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["stats"]["total_avail_bytes"])'
}
# reads_fail FD OFFSET: read 1 MiB at OFFSET and on until EIO, at most 60 s.
reads_fail() {
	python3 - "$1" "$2" <<'PY'
import errno, os, sys, time
fd, off = int(sys.argv[1]), int(sys.argv[2])
end = time.time() + 60
while time.time() < end:
    try:
        os.pread(fd, 1 << 20, off)
    except OSError as e:
        print("EIO" if e.errno == errno.EIO else errno.errorcode[e.errno])
        sys.exit(0)
    off = (off + (1 << 20)) % (128 << 20)
    time.sleep(0.05)
print("no EIO")
PY
}

# ---- a writer holds the exclusive lock while the snapshot is taken ---------
free0=$(avail)
reserve=$((free0 - 200 * MiB))
mnt=$TEST_TMPDIR/mnt
snapfs_start "test://$xml" "$mnt" -o host_id=faults,rbd_reserve=$reserve
wait_for -t 30 test -e "$mnt/web/vda.raw" || fail "web has no vda.raw"
rbd_cli bench --io-type write --io-size 64K --io-threads 4 --io-total 48M --io-pattern rand \
	rbd/web >"$TEST_TMPDIR/bench.out" 2>&1 &
bench=$!
wait_for -t 20 test -s "$TEST_TMPDIR/bench.out" || fail "rbd bench did not start"
exec 3<"$mnt/web/vda.raw"
[ "$(ours | wc -l)" = 1 ] || fail "no snapshot while the lock was held: $(ours)"
wait $bench || fail "the writer failed while snapfs took its snapshot: $(tail -n 3 "$TEST_TMPDIR/bench.out")"
rbd_cli export --no-progress "rbd/web@$(ours)" "$TEST_TMPDIR/snap.raw" >/dev/null 2>&1 || fail "rbd export"
[ "$(sha_fd_at 3 0 $((128 * MiB)))" = "$(sha_file "$TEST_TMPDIR/snap.raw")" ] ||
	fail "vda.raw is not its snapshot taken under a writer"
log "snapshot taken while rbd bench held the exclusive lock; the writer went on"

# ---- free space under the reserve ------------------------------------------
# The guest rewrites all of its disk: the snapshot keeps the old objects, and
# the cluster's free space falls 128 MiB and more, under the reserve.
rbd_cli bench --io-type write --io-size 4M --io-total 128M --io-pattern seq rbd/web \
	>"$TEST_TMPDIR/bench.out" 2>&1 || fail "the writer failed: $(tail -n 3 "$TEST_TMPDIR/bench.out")"
rbd_cli bench --io-type write --io-size 4M --io-total 128M --io-pattern seq rbd/web \
	>"$TEST_TMPDIR/bench.out" 2>&1 || fail "the writer failed: $(tail -n 3 "$TEST_TMPDIR/bench.out")"
wait_for -t 60 grep -q "guest web disk vda.raw: snapshot rbd/web@.* dropped: only .* MiB free on its cluster, under the reserve" "$SNAPFS_LOG" ||
	fail "no drop under the reserve (free $(avail), reserve $reserve): $(tail -n 3 "$SNAPFS_LOG")"
[ "$(reads_fail 3 0)" = EIO ] || fail "a read of the dropped snapshot did not fail"
wait_for -t 20 none_left || fail "the dropped snapshot is still there: $(ours)"
exec 3<&-
log "under the reserve: dropped, EIO, removed at once; the writer went on"
snapfs_stop "$mnt"

# ---- the cluster reports near full --------------------------------------------
snapfs_start "test://$xml" "$mnt" -o host_id=faults,rbd_reserve=1M
exec 3<"$mnt/web/vda.raw"
[ "$(ours | wc -l)" = 1 ] || fail "no snapshot: $(ours)"
ceph_cli osd set-nearfull-ratio 0.01 >/dev/null 2>&1 || fail "set-nearfull-ratio"
add_cleanup "ceph_cli osd set-nearfull-ratio 0.7 >/dev/null 2>&1 || true"
wait_for -t 90 grep -q "guest web disk vda.raw: snapshot rbd/web@.* dropped: its cluster reports being near full" "$SNAPFS_LOG" ||
	fail "no drop at near full: $(ceph_cli health 2>&1 | head -n 2); $(tail -n 3 "$SNAPFS_LOG")"
[ "$(reads_fail 3 $((64 * MiB)))" = EIO ] || fail "a read after near full did not fail"
wait_for -t 20 none_left || fail "the dropped snapshot is still there: $(ours)"
exec 3<&-
# A new open is refused while the cluster is near full, with its line.
if cat "$mnt/web/vda.raw" >/dev/null 2>&1; then fail "an open succeeded on a near full cluster"; fi
grep -q "guest web disk vda: RBD image rbd/web not snapshotted: its cluster reports being near full" "$SNAPFS_LOG" ||
	fail "no line for the refused open: $(tail -n 3 "$SNAPFS_LOG")"
ceph_cli osd set-nearfull-ratio 0.7 >/dev/null 2>&1 || fail "set-nearfull-ratio back"
wait_for -t 90 cat "$mnt/web/vda.raw" >/dev/null 2>&1 || fail "no open once the cluster had room again"
log "near full: dropped, EIO, new opens refused until the cluster had room"

# ---- the cluster stopped while a file is open -----------------------------------
exec 3<"$mnt/web/vda.raw"
[ "$(ours | wc -l)" = 1 ] || fail "no snapshot: $(ours)"
held=$(ours)
ceph_stop_osd KILL
ceph_stop_mon KILL
t0=$(date +%s)
reads_fail 3 $((32 * MiB)) >"$TEST_TMPDIR/lost" &
reader=$!
# Meanwhile the mount answers, and the other guest's disk reads.
sleep 2
timeout 5 ls "$mnt" "$mnt/local" >/dev/null || fail "a listing hung on the lost cluster"
[ "$(timeout 10 sha256sum <"$mnt/local/vda.raw" | cut -d' ' -f1)" = "$(sha_file "$TEST_TMPDIR/local.raw")" ] ||
	fail "the other guest's disk was not served while the cluster was lost"
wait $reader
took=$(($(date +%s) - t0))
[ "$(cat "$TEST_TMPDIR/lost")" = EIO ] || fail "reads of the lost cluster: $(cat "$TEST_TMPDIR/lost")"
[ "$took" -le 30 ] || fail "the first failed read took ${took}s"
grep -q "guest web disk vda.raw: reading snapshot rbd/web@$held failed" "$SNAPFS_LOG" ||
	fail "no line for the lost cluster: $(tail -n 3 "$SNAPFS_LOG")"
exec 3<&-
log "cluster lost: EIO after ${took}s, the mount and the other guest served meanwhile"
ceph_start_mon
ceph_start_osd
# The snapshot of the set released meanwhile is removed once it can be.
wait_for -t 90 none_left || fail "the snapshot of the lost set is left: $(ours)"
# The listing lost the disk while its image could not be opened.
wait_for -t 60 test -e "$mnt/web/vda.raw" || fail "vda.raw did not come back"
exec 3<"$mnt/web/vda.raw"
new=$(ours)
[ -n "$new" ] && [ "$new" != "$held" ] || fail "no new snapshot after the cluster came back: $(ours)"
rm -f "$TEST_TMPDIR/snap.raw"
rbd_cli export --no-progress "rbd/web@$new" "$TEST_TMPDIR/snap.raw" >"$TEST_TMPDIR/export.out" 2>&1 ||
	fail "rbd export of $new: $(tail -n 3 "$TEST_TMPDIR/export.out")"
[ "$(sha_fd_at 3 0 $((128 * MiB)))" = "$(sha_file "$TEST_TMPDIR/snap.raw")" ] ||
	fail "vda.raw after the cluster came back is not its snapshot"
exec 3<&-
wait_for -t 20 none_left || fail "left: $(ours)"
log "ok"
