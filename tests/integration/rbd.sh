#!/bin/bash
# Guests on Ceph RBD, on a real one-host cluster (lib-ceph.sh), shut off
# (the libvirt test driver stands for the host).  Checked:
#  - a raw image with an MBR and a qcow2 image holding a GPT disk: every
#    file against `rbd export` of the snapshot snapfs made (the qcow2 one
#    decoded by qemu-img convert), partitions at sfdisk --json offsets,
#    holes against `rbd diff` (raw) and `qemu-img map` (qcow2), xattrs;
#  - point in time: the image rewritten (rbd bench) while a file is open;
#  - one snapshot per disk, named for this host and mount, removed at
#    release; a user's own snapshot of the image is never touched;
#  - two snapfs standing for two hosts on the same images: kill -9 of one
#    with its snapshots held, its restart (within 12 s: the dead run's
#    client blocklisted) removes its own and none of the
#    other's; snapfs --cleanup of the other's mount point removes its own;
#  - a snapshot removed by someone else: the next read is EIO, the log
#    names guest, disk and Ceph's error.
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
. "$(dirname -- "$0")/../lib-qcow2.sh" || exit 99
. "$(dirname -- "$0")/../lib-ceph.sh" || exit 99
requires fusermount3 getfattr sha256sum sfdisk qemu-img python3
test_tmpdir

ceph_start "$TEST_TMPDIR/ceph"
# The images, made as an admin would: a raw disk with an MBR, and a qcow2
# image of a GPT disk imported as it is (qemu reads it with format qcow2).
raw_with_table "$TEST_TMPDIR/mbr.raw" 48 dos
raw_with_table "$TEST_TMPDIR/gpt.raw" 40 gpt
qemu-img convert -q -f raw -O qcow2 "$TEST_TMPDIR/gpt.raw" "$TEST_TMPDIR/gpt.qcow2"
rbd_cli import --no-progress "$TEST_TMPDIR/mbr.raw" rbd/mbr >/dev/null || fail "rbd import mbr"
rbd_cli import --no-progress "$TEST_TMPDIR/gpt.qcow2" rbd/gptq >/dev/null || fail "rbd import gptq"
# Room for the qcow2 image to grow, as an image of qcow2 on RBD needs.
rbd_cli resize --no-progress --size 64M rbd/gptq >/dev/null || fail "rbd resize gptq"
rbd_cli snap create rbd/mbr@mine >/dev/null || fail "the user's own snapshot"

# rbd_disk TARGET IMAGE FORMAT: a network disk as libvirt has it, the key
# that of client.snapfs (the test driver has no secrets: its keyring).
rbd_disk() {
	printf "      <disk type='network' device='disk'><driver name='qemu' type='%s'/>
        <source protocol='rbd' name='%s'><host name='%s' port='%s'/>
          <config file='%s'/><auth username='snapfs'><secret type='ceph' usage='snapfs'/></auth>
        </source><target dev='%s' bus='virtio'/></disk>\n" \
		"$3" "$2" "${CEPH_MON_ADDR%:*}" "${CEPH_MON_ADDR##*:}" "$CEPH_CONF" "$1"
}
guest_off() { # NAME DISKS_XML
	virt_domain "$1" "$2" | sed "s|<domain type='test'>|<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>|; s|</devices>|</devices><test:runstate>5</test:runstate>|"
}
xml=$TEST_TMPDIR/node.xml
{
	echo "<node>"
	guest_off cold "$(rbd_disk vda rbd/mbr raw; rbd_disk vdb rbd/gptq qcow2)"
	# A running guest on the same image: RBD snapshots serve it as well.
	virt_domain web "$(rbd_disk vda rbd/mbr raw)"
	echo "</node>"
} >"$xml"
ours() { # IMAGE: the snapfs snapshots of IMAGE, one per line
	rbd_cli snap ls --format json "$1" | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    if s["name"].startswith("snapfs."):
        print(s["name"])'
}
count_ours() { ours "$1" | grep -c . || true; }
no_snapshots_of() { [ "$(count_ours rbd/mbr)$(count_ours rbd/gptq)" = 00 ]; }

mnt=$TEST_TMPDIR/mnt
snapfs_start "test://$xml" "$mnt" -o host_id=hosta
ls_c() { (cd "$1" && LC_ALL=C ls -A | tr '\n' ' '); }
wait_for -t 30 test -e "$mnt/cold/vdb2.raw" || fail "cold: $(ls_c "$mnt/cold")"
[ "$(ls_c "$mnt/cold")" = "domain.xml vda.raw vda1.raw vda2.raw vdb.qcow2 vdb.raw vdb1.raw vdb2.raw " ] ||
	fail "cold holds: $(ls_c "$mnt/cold")"
[ "$(xattr_of "$mnt/cold/vda.raw" snapshot_kind)" = rbd ] || fail "vda.raw: snapshot_kind"
[ "$(xattr_of "$mnt/cold/vda.raw" origin)" = rbd/mbr ] || fail "vda.raw: origin"
[ "$(xattr_of "$mnt/cold/vdb.raw" origin)" = rbd/gptq ] || fail "vdb.raw: origin"
no_snapshots_of || fail "a listing made snapshots"

# ---- one set: every file against rbd export of its snapshot ---------------
exec 3<"$mnt/cold/vda.raw"
[ "$(count_ours rbd/mbr)" = 1 ] && [ "$(count_ours rbd/gptq)" = 1 ] ||
	fail "one snapshot per disk: $(ours rbd/mbr) / $(ours rbd/gptq)"
snap_a=$(ours rbd/mbr)
snap_b=$(ours rbd/gptq)
case $snap_a in snapfs.hosta.*.*) ;; *) fail "snapshot name $snap_a" ;; esac
log "snapshots $snap_a, $snap_b"
[ "$(xattr_of "$mnt/cold/vda.raw" snapshot)" = "rbd/mbr@$snap_a" ] ||
	fail "vda.raw: snapshot $(xattr_of "$mnt/cold/vda.raw" snapshot)"
rbd_cli export --no-progress "rbd/mbr@$snap_a" "$TEST_TMPDIR/a.raw" >/dev/null 2>&1 ||
	fail "rbd export a"
rbd_cli export --no-progress "rbd/gptq@$snap_b" "$TEST_TMPDIR/b.qcow2" >/dev/null 2>&1 ||
	fail "rbd export b"
[ "$(sha_file "$mnt/cold/vda.raw")" = "$(sha_file "$TEST_TMPDIR/a.raw")" ] ||
	fail "vda.raw is not rbd export of its snapshot"
while read -r n start size type; do
	is_extended "$type" && continue
	[ "$(sha_file "$mnt/cold/vda$n.raw")" = "$(sha_at "$TEST_TMPDIR/a.raw" "$start" "$size")" ] ||
		fail "vda$n.raw is not the region at $start"
done < <(part_list "$TEST_TMPDIR/a.raw")
# Holes: rbd diff of the snapshot, merged, is SEEK_DATA/SEEK_HOLE's map.
rbd_cli diff --format json "rbd/mbr@$snap_a" | python3 -c '
import json, sys
out = []
for e in sorted(json.load(sys.stdin), key=lambda e: e["offset"]):
    if e["exists"] != "true":
        continue
    s, t = e["offset"], e["offset"] + e["length"]
    if out and out[-1][1] >= s:
        out[-1][1] = max(out[-1][1], t)
    else:
        out.append([s, t])
for s, t in out:
    print(s, t)' >"$TEST_TMPDIR/diff.map" || fail "rbd diff"
[ -s "$TEST_TMPDIR/diff.map" ] || fail "rbd diff found no data"
seek_map "$mnt/cold/vda.raw" >"$TEST_TMPDIR/seek.map"
cmp -s "$TEST_TMPDIR/seek.map" "$TEST_TMPDIR/diff.map" ||
	fail "vda.raw's holes are not rbd diff's: $(diff "$TEST_TMPDIR/seek.map" "$TEST_TMPDIR/diff.map" | head -5)"
[ "$(stat -c %b "$mnt/cold/vda.raw")" -lt $((48 * 2048)) ] || fail "vda.raw: st_blocks counts holes"
CHECKED=0
check_decoded "$mnt/cold" vdb "$TEST_TMPDIR/b.qcow2"
log "vda.raw, its partitions and holes, and $CHECKED files of vdb match the exports"

# ---- point in time: the images rewritten while the set is held -------------
before=$(sha_fd_at 3 0 $((48 << 20)))
rbd_cli bench --io-type write --io-size 64K --io-total 16M --io-pattern rand rbd/mbr \
	>/dev/null 2>&1 || fail "rbd bench"
# The qcow2 image rewritten as its guest would, through qemu's rbd driver.
qemu-io -f qcow2 -c "write -P 0x6c 1M 2M" -c "write -P 0x6d 20M 1M" \
	"rbd:rbd/gptq:id=admin:conf=$CEPH_CONF" >/dev/null || fail "qemu-io on rbd/gptq"
[ "$(sha_file "$TEST_TMPDIR/mbr.raw")" != "$(rbd_cli export --no-progress rbd/mbr - 2>/dev/null | sha_file -)" ] ||
	fail "rbd bench did not change the image"
[ "$(sha_file "$mnt/cold/vda.raw")" = "$before" ] || fail "vda.raw moved with the image"
[ "$(sha_file "$mnt/cold/vda.raw")" = "$(sha_file "$TEST_TMPDIR/a.raw")" ] ||
	fail "vda.raw is no longer its snapshot's export"
qemu-img convert -O raw "$TEST_TMPDIR/b.qcow2" "$TEST_TMPDIR/b.raw"
[ "$(sha_file "$mnt/cold/vdb.raw")" = "$(sha_file "$TEST_TMPDIR/b.raw")" ] ||
	fail "vdb.raw moved with the image"
exec 3<&-
wait_for -t 20 no_snapshots_of || fail "snapshots left after release: $(ours rbd/mbr) $(ours rbd/gptq)"
[ "$(rbd_cli snap ls rbd/mbr | grep -c ' mine ')" = 1 ] || fail "the user's snapshot is gone"

# ---- a running guest: its storage snapshots it, not the backup API ----------
[ "$(xattr_of "$mnt/web/vda.raw" snapshot_kind)" = rbd ] ||
	fail "web/vda.raw: snapshot_kind $(xattr_of "$mnt/web/vda.raw" snapshot_kind)"
exec 3<"$mnt/web/vda.raw"
[ "$(count_ours rbd/mbr)" = 1 ] || fail "web: $(ours rbd/mbr)"
rbd_cli export --no-progress "rbd/mbr@$(ours rbd/mbr)" "$TEST_TMPDIR/web.raw" >/dev/null 2>&1 ||
	fail "rbd export web"
[ "$(sha_fd_at 3 0 $((48 << 20)))" = "$(sha_file "$TEST_TMPDIR/web.raw")" ] ||
	fail "web/vda.raw is not its snapshot's export"
exec 3<&-
wait_for -t 20 no_snapshots_of || fail "web's snapshot left: $(ours rbd/mbr)"

# ---- a snapshot removed by someone else --------------------------------------
exec 3<"$mnt/cold/vda.raw"
snap_a=$(ours rbd/mbr)
rbd_cli snap rm "rbd/mbr@$snap_a" >/dev/null 2>&1 || fail "rbd snap rm by hand"
[ "$(read_errno 3 $((30 << 20)) 65536)" = EIO ] || fail "a read of a removed snapshot did not fail"
grep -q "guest cold disk vda.raw: snapshot rbd/mbr@$snap_a was removed by someone else" "$SNAPFS_LOG" ||
	fail "no line for the removed snapshot: $(tail -n 3 "$SNAPFS_LOG")"
exec 3<&-
wait_for -t 20 no_snapshots_of || fail "snapshots left: $(ours rbd/mbr) $(ours rbd/gptq)"

# ---- two hosts, one cluster: a crash of one, its restart, --cleanup --------
# kill9_of LOG MOUNTPOINT: kill -9 the snapfs of LOG, and lift its mount.
kill9_of() {
	kill -KILL "$(cat "$1.pid")"
	wait_for -t 60 test -e "$1.rc" || fail "snapfs survived kill -9"
	rm -f "$1.pid"
	fusermount3 -u -z "$2" 2>/dev/null || umount -l "$2"
}
mnt_b=$TEST_TMPDIR/mnt-b
log_a=$SNAPFS_LOG
snapfs_start "test://$xml" "$mnt_b" -o host_id=hostb
log_b=$SNAPFS_LOG
add_cleanup "kill -9 \$(cat '$log_b.pid' 2>/dev/null) 2>/dev/null; fusermount3 -u -z '$mnt_b' 2>/dev/null; true"
wait_for -t 30 test -e "$mnt_b/cold/vda.raw" || fail "host b: $(ls_c "$mnt_b/cold")"
exec 4<"$mnt_b/cold/vda.raw"
held_b=$(sha_fd_at 4 0 $((48 << 20)))
exec 3<"$mnt/cold/vdb.raw"
[ "$(count_ours rbd/mbr)" = 2 ] || fail "two hosts, two snapshots: $(ours rbd/mbr)"
kill9_of "$log_a" "$mnt"
exec 3<&-
[ "$(count_ours rbd/mbr)" = 2 ] || fail "the crash removed snapshots: $(ours rbd/mbr)"
t0=$(date +%s)
snapfs_start "test://$xml" "$mnt" -o host_id=hosta
# The sweep before the mount blocklists the dead run's client, whose
# watches of the images' headers would otherwise hold every snapshot
# removal up until Ceph times them out (30 s; it took 20-21 s here).
log "the restart after kill -9 mounted in $(($(date +%s) - t0)) s"
[ $(($(date +%s) - t0)) -le 12 ] || fail "the restart took $(($(date +%s) - t0)) s"
grep -q "blocklisted .*, the Ceph client of a dead run, on cluster " "$SNAPFS_LOG" ||
	fail "the restart did not end the dead run's client: $(grep -i ceph "$SNAPFS_LOG" | tail -n 3)"
wait_for -t 30 test -e "$mnt/cold/vda.raw" || fail "host a restarted: $(ls_c "$mnt/cold")"
[ "$(ours rbd/mbr)" = "$(ours rbd/mbr | grep '^snapfs\.hostb\.')" ] && [ "$(count_ours rbd/mbr)" = 1 ] ||
	fail "the restart of host a left or took: $(ours rbd/mbr)"
grep -q "removed 2 RBD snapshot(s) left behind" "$SNAPFS_LOG" ||
	fail "the restart did not say what it removed: $(grep -i rbd "$SNAPFS_LOG" | tail -n 3)"
[ "$(sha_fd_at 4 0 $((48 << 20)))" = "$held_b" ] ||
	fail "host b's open file changed when host a restarted"
# Host a reads (its daemon connects to the cluster), then stops cleanly;
# host b dies too; --cleanup of its mount point, as host b, removes its own.
exec 5<"$mnt/cold/vda.raw"
head -c 65536 <&5 >/dev/null || fail "host a restarted: vda.raw cannot be read"
exec 5<&-
kill9_of "$log_b" "$mnt_b"
exec 4<&-
snapfs_stop "$mnt"
[ "$(count_ours rbd/mbr)" = 1 ] || fail "host b's snapshot: $(ours rbd/mbr)"
"$SNAPFS_BIN" --cleanup -o host_id=hosta "test://$xml" "$mnt" >"$TEST_TMPDIR/cleanup-a" 2>&1 ||
	fail "--cleanup as host a: $(cat "$TEST_TMPDIR/cleanup-a")"
[ "$(count_ours rbd/mbr)" = 1 ] || fail "--cleanup as host a took host b's: $(ours rbd/mbr)"
# Host a stopped cleanly: no client of its to end.
! grep -q "blocklisted" "$TEST_TMPDIR/cleanup-a" ||
	fail "--cleanup after a clean stop blocklisted: $(cat "$TEST_TMPDIR/cleanup-a")"
"$SNAPFS_BIN" --cleanup -o host_id=hostb "test://$xml" "$mnt_b" >"$TEST_TMPDIR/cleanup-b" 2>&1 ||
	fail "--cleanup as host b: $(cat "$TEST_TMPDIR/cleanup-b")"
grep -q "removed 2 leftover RBD snapshot(s) of $mnt_b" "$TEST_TMPDIR/cleanup-b" ||
	fail "--cleanup said: $(cat "$TEST_TMPDIR/cleanup-b")"
grep -q "blocklisted .*, the Ceph client of a dead run" "$TEST_TMPDIR/cleanup-b" ||
	fail "--cleanup did not end host b's dead client: $(cat "$TEST_TMPDIR/cleanup-b")"
no_snapshots_of || fail "left after --cleanup: $(ours rbd/mbr)"
[ "$(rbd_cli snap ls rbd/mbr | grep -c ' mine ')" = 1 ] || fail "the user's snapshot is gone"
log "ok"
