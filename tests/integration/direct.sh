#!/bin/bash
# Shut-off guests whose disk files are on a filesystem that cannot clone
# (ext4), read from the origins themselves under a guard.  A real libvirtd;
# the guest, once started, is a real qemu (TCG) that writes records to its
# first partition.  Checked:
#  - every file against qemu-img convert, partitions at sfdisk's offsets,
#    holes against qemu-img map, snapshot_kind "direct", nothing written;
#  - while a file is open, a qemu-io write, a dd conv=notrunc by another
#    process and an mv of another file over the disk each make the next read
#    EIO, with the line naming guest, disk and cause;
#  - a chain of three layers made by virsh snapshot-create-as --disk-only,
#    decoded as qemu-img convert decodes it;
#  - virsh start of the guest while its file is open: the guest starts and
#    writes; reads fail with EIO from then on, the log says why, and no byte
#    read while it started differs from the disk before it.
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
requires libvirtd virsh unshare qemu-system-x86_64 qemu-img qemu-io sfdisk fusermount3 \
	mkfs.ext4 getfattr python3
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
. "$(dirname -- "$0")/../lib-qcow2.sh" || exit 99
. "$(dirname -- "$0")/../lib-guest.sh" || exit 99
in_private_namespace "$@"

v() { virsh -q -c qemu:///system "$@"; }
ls_c() { (cd "$1" && LC_ALL=C ls -A | tr '\n' ' '); }
set_gone() { grep -q "guest cold: snapshot set removed" "$SNAPFS_LOG"; }
removed_more() { [ "$(grep -c "guest cold: snapshot set removed" "$SNAPFS_LOG")" -gt "$1" ]; }

start_private_libvirtd
guest_boot_files
make_test_fs ext4 ext4 200
fs=$TEST_FS_DIR

# vda: raw, an MBR with two partitions, data with holes between.
truncate -s 32M "$fs/vda.img"
sfdisk -q "$fs/vda.img" <<'P' || fail "sfdisk"
start=2048, size=20480, type=83
start=22528, size=40960, type=83
P
for off in 1 3 12 20 30; do
	dd if=/dev/urandom of="$fs/vda.img" bs=1M seek=$off count=1 conv=notrunc status=none
done
# vdb: qcow2 with an MBR, data, a zeroed range and holes.
raw_with_table "$TEST_TMPDIR/vdb.src" 48 dos
qemu-img convert -q -f raw -O qcow2 "$TEST_TMPDIR/vdb.src" "$fs/vdb.qcow2" || fail "convert"
qio "$fs/vdb.qcow2" "write -P 0x61 30M 1M" "write -z 2M 256K"
sync -f "$fs"
guest_xml cold "$(disk_file vda "$fs/vda.img")
$(disk_file vdb "$fs/vdb.qcow2" qcow2)" \
	"snapfs_rec=vda1 snapfs_slots=256 snapfs_every=16" >"$TEST_TMPDIR/cold.xml"
v define "$TEST_TMPDIR/cold.xml" >/dev/null || fail "define cold"
add_cleanup "virsh -q -c qemu:///system destroy cold >/dev/null 2>&1 || true; virsh -q -c qemu:///system undefine cold >/dev/null 2>&1 || true"
sha_vda=$(sha_file "$fs/vda.img")
sha_vdb=$(sha_file "$fs/vdb.qcow2")
ctime_vda=$(stat -c %Z.%z "$fs/vda.img")

mnt=$TEST_TMPDIR/mnt
snapfs_start qemu:///system "$mnt" -o linger=0,cache=0
[ "$(ls_c "$mnt/cold")" = "domain.xml vda.raw vda1.raw vda2.raw vdb.qcow2 vdb.raw vdb1.raw vdb2.raw " ] ||
	fail "cold: $(ls_c "$mnt/cold")"
for f in vda.raw vda1.raw vdb.raw vdb.qcow2; do
	[ "$(xattr_of "$mnt/cold/$f" snapshot_kind)" = direct ] ||
		fail "$f: snapshot_kind $(xattr_of "$mnt/cold/$f" snapshot_kind)"
done

# ---- every byte, every hole ------------------------------------------------
exec 3<"$mnt/cold/vda.raw"
[ "$(sha_file "$mnt/cold/vda.raw")" = "$sha_vda" ] || fail "vda.raw differs"
while read -r n start len _; do
	[ "$(sha_file "$mnt/cold/vda$n.raw")" = "$(sha_at "$fs/vda.img" "$start" "$len")" ] ||
		fail "vda$n.raw differs from the disk at $start"
done < <(part_list "$fs/vda.img")
maps_agree <(seek_map "$mnt/cold/vda.raw") <(qemu_data_map "$fs/vda.img" raw) "$fs/vda.img" 4096 ||
	fail "vda.raw's holes are not qemu-img map's"
check_decoded "$mnt/cold" vdb "$fs/vdb.qcow2"
grep -q "snapshot=direct guard=held" "$mnt/.snapfs-status" || fail "status: $(cat "$mnt/.snapfs-status")"
exec 3<&-
wait_for -t 10 set_gone || fail "the set outlived its last file"
[ "$(sha_file "$fs/vda.img")" = "$sha_vda" ] && [ "$(sha_file "$fs/vdb.qcow2")" = "$sha_vdb" ] &&
	[ "$(stat -c %Z.%z "$fs/vda.img")" = "$ctime_vda" ] || fail "an origin was written"

# ---- whatever changes the file ends the set -----------------------------------
# changed CAUSE_RE COMMAND...: with vda.raw open and read once, COMMAND
# changes the file; the next read is EIO and the log says CAUSE_RE.
changed() {
	local cause=$1 before
	shift
	before=$(grep -c "guest cold: snapshot set removed" "$SNAPFS_LOG")
	wait_for -t 10 test -r "$mnt/cold/vda.raw" || fail "vda.raw is gone"
	exec 3<"$mnt/cold/vda.raw"
	[ "$(read_errno 3 $((1 << 20)) 65536)" = ok ] || fail "a read before: $*"
	"$@" || fail "$*"
	[ "$(read_errno 3 $((3 << 20)) 65536)" = EIO ] || fail "a read after $* did not fail"
	[ "$(read_errno 3 0 512)" = EIO ] || fail "a second read after $* did not fail"
	grep -qE "guest cold disk vda\.raw: .*vda\.img $cause" "$SNAPFS_LOG" ||
		fail "no line for $*: $(tail -n 3 "$SNAPFS_LOG")"
	exec 3<&-
	wait_for -t 10 removed_more "$before" ||
		fail "the set outlived its file after $*"
}
# qemu_io_held: a qemu-io that writes and keeps the image open (its lock
# held) for a few seconds more, in the background.
qemu_io_held() {
	local ino
	ino=$(stat -c %i "$fs/vda.img")
	qemu-io -f raw -c "write -P 0x33 8M 4k" -c "sleep 5000" "$fs/vda.img" >/dev/null &
	add_cleanup "kill $! 2>/dev/null || true"
	wait_for -t 10 grep -q "OFDLCK.*:$ino 100 101" /proc/locks
}
changed "is open for writing in a qemu" qemu_io_held
changed "changed while it was read" \
	dd if=/dev/urandom of="$fs/vda.img" bs=4k seek=1000 count=1 conv=notrunc status=none
cp "$fs/vda.img" "$fs/vda.new"
changed "was replaced or removed" mv "$fs/vda.new" "$fs/vda.img"

# ---- a chain of three from virsh snapshot-create-as --disk-only ----------------
qemu-img convert -q -f raw -O qcow2 "$TEST_TMPDIR/vdb.src" "$fs/snap.qcow2"
guest_xml snap "$(disk_file vda "$fs/snap.qcow2" qcow2)" "" >"$TEST_TMPDIR/snap.xml"
v define "$TEST_TMPDIR/snap.xml" >/dev/null || fail "define snap"
add_cleanup "virsh -q -c qemu:///system undefine snap --snapshots-metadata >/dev/null 2>&1 || true"
for s in s1 s2; do
	v snapshot-create-as snap "$s" --disk-only --diskspec "vda,file=$fs/snap-$s.qcow2" \
		>/dev/null || fail "snapshot-create-as snap $s"
	qio "$fs/snap-$s.qcow2" "write -P 0x4$((${s#s} + 1)) $((${s#s} * 3))M 1M"
done
wait_for -t 10 test -e "$mnt/snap/vda.raw" || fail "snap: $(ls_c "$mnt/snap")"
[ "$(xattr_of "$mnt/snap/vda.raw" backing)" = "$fs/snap-s1.qcow2 $fs/snap.qcow2" ] ||
	fail "snap's layers: $(xattr_of "$mnt/snap/vda.raw" backing)"
exec 3<"$mnt/snap/vda.raw"
check_decoded "$mnt/snap" vda "$fs/snap-s2.qcow2"
exec 3<&-

# ---- the guest started while its file is open --------------------------------
wait_for -t 10 test -r "$mnt/cold/vda.raw" || fail "vda.raw is gone"
cp "$fs/vda.img" "$TEST_TMPDIR/before.img"
exec 3<"$mnt/cold/vda.raw"
# Read the records' region over and over while the guest starts: every
# read answered equals the disk before the start, and the reads fail.
python3 - "$TEST_TMPDIR/before.img" $((2 << 20)) $((1 << 20)) "$TEST_TMPDIR/ready" \
	>"$TEST_TMPDIR/reads" <<'PY' &
import errno, os, sys, time
before = open(sys.argv[1], "rb").read()
start, length = int(sys.argv[2]), int(sys.argv[3])
ok = failed = 0
deadline = time.time() + 120
while time.time() < deadline:
    for off in range(start, start + length, 65536):
        try:
            b = os.pread(3, 65536, off)
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            failed += 1
            continue
        # Pages the kernel cached before the start may still be
        # answered after a read failed: they are the disk before it.
        if b != before[off:off + len(b)]:
            at = next(i for i in range(len(b)) if b[i] != before[off + i])
            print("a read at %d differs from the disk before the start at +%d: %r, not %r"
                  % (off, at, b[at:at + 60], before[off + at:off + at + 60]))
            sys.exit(1)
        if len(b) < 65536:
            # A read cut short: its pages up to the first that failed.
            failed += 1
            continue
        ok += 1
        if ok == 32:
            open(sys.argv[4], "w").close()
    if failed >= 8:
        print("ok %d reads, then EIO" % ok); sys.exit(0)
print("no read failed"); sys.exit(1)
PY
reader=$!
wait_for -t 30 test -e "$TEST_TMPDIR/ready" || fail "the reader did not start reading"
v start cold >/dev/null || fail "virsh start cold"
wait $reader || fail "reads while the guest started: $(cat "$TEST_TMPDIR/reads")"
log "$(cat "$TEST_TMPDIR/reads")"
guest_wait_seq cold 64
guest_writes cold
guest_blk_clean cold
grep -qE "guest cold disk vda\.raw: (the guest was started|.*is open for writing in a qemu)" "$SNAPFS_LOG" ||
	fail "no line for the start: $(tail -n 3 "$SNAPFS_LOG")"
[ "$(read_errno 3 0 512)" = EIO ] || fail "a read after the start did not fail"
# The records' region was read over and over: its pages were cached, and
# they must have been forgotten, not answered from the cache.
[ "$(read_errno 3 $((2 << 20)) 65536)" = EIO ] ||
	fail "a read of pages cached before the start did not fail"
exec 3<&-
log "ok"
