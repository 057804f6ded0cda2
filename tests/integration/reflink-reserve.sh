#!/bin/bash
# snapfs never makes a guest's write fail for want of space.  A clone is
# held while the guest rewrites its disk in place (every block it
# overwrites takes new space, as the clone shares the old one) and then
# writes another file until the filesystem is nearly full: when the free
# space falls under -o reflink_reserve=, snapfs drops the clone and the
# guest goes on without a single failed write.  The held reader gets EIO
# from then on, the log and the status view say which guest, disk and why;
# while space is short a new open fails with ENOSPC, and once there is room
# again it works.
# The guest writes at 64 MiB/s, 1 MiB at a time with fsync: snapfs looks at
# the free space every 100 ms, so the 32 MiB reserve is half a second of it.
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
requires sha256sum fusermount3 python3 mkfs.xfs

MiB=$((1 << 20))
reserve=32

# guest_write PATH rewrite|fill BYTES: what a guest does, at 64 MiB/s: 1 MiB
# of new random bytes at a time, O_DIRECT, each followed by fsync, from
# offset 0 of PATH (an existing file, or a new one for "fill").  Prints the
# sha256 of all it wrote; a write that fails makes it say so and exit 1.
guest_write() {
	python3 - "$@" <<'PY'
import errno, hashlib, mmap, os, sys, time
path, mode, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
rate = 64  # MiB/s
flags = os.O_WRONLY | os.O_DIRECT
if mode == "fill":
    flags |= os.O_CREAT | os.O_EXCL
fd = os.open(path, flags, 0o600)
buf = mmap.mmap(-1, 1 << 20)  # page-aligned, as O_DIRECT wants
h = hashlib.sha256()
t0 = time.monotonic()
done = 0
while done < total:
    buf.seek(0)
    buf.write(os.urandom(1 << 20))
    try:
        n = os.pwrite(fd, buf, done)
        os.fsync(fd)
    except OSError as e:
        print("guest: %s after %d MiB of %s" % (errno.errorcode[e.errno], done >> 20, path),
              file=sys.stderr)
        sys.exit(1)
    if n != 1 << 20:
        print("guest: short write (%d) after %d MiB of %s" % (n, done >> 20, path), file=sys.stderr)
        sys.exit(1)
    h.update(buf)
    done += n
    ahead = t0 + (done >> 20) / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)
print(h.hexdigest())
PY
}

make_test_fs xfs xfs 320 # mkfs.xfs's least
fs=$TEST_FS_DIR
img=$fs/images
origin=$img/web-vda.img
mkdir "$img"
random_file "$origin" 96
old_mid=$(sha_at "$origin" $((32 * MiB)) $((8 * MiB)))
xml=$TEST_TMPDIR/node.xml
node_xml "$xml" web "$(disk_file vda "$origin")"
mnt=$TEST_TMPDIR/mnt
snapfs_start "test://$xml" "$mnt" -o reflink_reserve=${reserve}M

# The room the guest has with no clone; a rewrite under the clone must
# leave it above the reserve, so that the clone outlives the first phase.
free0=$(fs_free "$fs")
[ $((free0 - 96 * MiB)) -ge $(((reserve + 8) * MiB)) ] ||
	fail "fixture: $((free0 / MiB)) MiB free, too little for a 96 MiB rewrite above a $reserve MiB reserve"

exec 3<"$mnt/web/vda.raw"
assert_clones "$fs" 1
[ "$(sha_fd_at 3 0 $MiB)" = "$(sha_at "$origin" 0 $MiB)" ] || fail "vda.raw's first MiB"
status=$(cat "$mnt/.snapfs-status")
grep -qE "^  disk: vda\.raw origin=$(re_escape "$origin") snapshot=reflink fs=$(re_escape "$fs") \(xfs\) free=[0-9]+MiB reserve=${reserve}MiB clone=held$" <<<"$status" ||
	fail "no status line of a held clone in: $status"

# Phase 1: the guest rewrites all its disk.  The clone pins the old blocks
# and is kept: the free space is still above the reserve.
new=$(guest_write "$origin" rewrite $((96 * MiB))) || fail "the guest's rewrite failed"
[ "$(sha_file "$origin")" = "$new" ] || fail "the origin does not hold what the guest wrote"
free1=$(fs_free "$fs")
[ $((free0 - free1)) -ge $((88 * MiB)) ] ||
	fail "96 MiB rewritten under a clone took only $(((free0 - free1) / MiB)) MiB"
assert_clones "$fs" 1
[ "$(sha_fd_at 3 $((32 * MiB)) $((8 * MiB)))" = "$old_mid" ] || fail "the held vda.raw shows the guest's new bytes"
grep -q "reflink clone of" "$SNAPFS_LOG" && fail "a clone dropped above the reserve"

# Phase 2: the guest writes a new file until the filesystem is all but
# full: all the room it had with no clone, but 8 MiB.  It crosses the
# reserve on the way; snapfs gives the clone's 96 MiB back in time.
fill=$((free0 / MiB - 8))
sum=$(guest_write "$img/fill.bin" fill $((fill * MiB))) ||
	fail "the guest's writes failed (ENOSPC with a clone held?)"
[ "$(sha_file "$img/fill.bin")" = "$sum" ] || fail "the new file does not hold what the guest wrote"
[ "$(sha_file "$origin")" = "$new" ] || fail "the origin changed after the guest's rewrite"
# The clone is kept (unnamed, empty) until the set is released.
assert_clones "$fs" 1
[ "$(clone_blocks "$fs")" = 0 ] || fail "the dropped clone still has $(clone_blocks "$fs") blocks"
line=$(grep -E "^snapfs: error: guest web disk vda\.raw: reflink clone of $(re_escape "$origin") dropped: [0-9]+ MiB free on $(re_escape "$fs"), under the reserve of $reserve MiB \(-o reflink_reserve=[^)]*\); reads of this snapshot set fail with EIO until it is released$" "$SNAPFS_LOG") ||
	fail "no error line saying which clone was dropped and why"
[ "$(grep -c "reflink clone of" <<<"$line")" = 1 ] || fail "the drop logged more than once: $line"
at=${line#* dropped: }
at=${at%% MiB free *}
[ "$at" -lt $reserve ] || fail "dropped at $at MiB free, the reserve is $reserve MiB"
grep -qE "^  disk: vda\.raw origin=$(re_escape "$origin") snapshot=reflink fs=$(re_escape "$fs") \(xfs\) free=[0-9]+MiB reserve=${reserve}MiB clone=dropped$" \
	<(cat "$mnt/.snapfs-status") || fail "the status view does not say dropped: $(cat "$mnt/.snapfs-status")"

# The held reader, at an offset it never read (nothing cached), and a new
# open that joins the dropped set: EIO, not old nor new bytes.
[ "$(read_errno 3 $((64 * MiB)) $MiB)" = EIO ] || fail "the held reader got $(read_errno 3 $((64 * MiB)) $MiB), not EIO"
if out=$(dd if="$mnt/web/vda.raw" of=/dev/null bs=1M skip=80 count=1 status=none 2>&1); then
	fail "a read of the dropped set succeeded"
fi
case $out in *"Input/output error"*) ;; *) fail "a read of the dropped set: $out" ;; esac

# Released.  With the filesystem still nearly full, an open fails with
# ENOSPC and says why; no clone is made.
exec 3<&-
wait_for -t 10 sets_removed_is web 1 || fail "the dropped set was not removed"
[ "$(sets_created web)" = 1 ] || fail "$(sets_created web) sets made"
[ "$(open_errno "$mnt/web/vda.raw")" = ENOSPC ] || fail "an open under the reserve: $(open_errno "$mnt/web/vda.raw")"
grep -qE "^snapfs: (error: |warning: )?guest web disk vda: not cloned: only [0-9]+ MiB free on $(re_escape "$fs"), under the reserve of $reserve MiB" "$SNAPFS_LOG" ||
	fail "no line saying why the open failed"
[ "$(sets_created web)" = 1 ] || fail "a set made under the reserve"
assert_clones "$fs" 0

# Room again: the open works, with the guest's new bytes.
rm -f "$img/fill.bin"
wait_for -t 30 fs_free_near "$fs" "$free0" $((4 * MiB)) ||
	fail "$(($(fs_free "$fs") / MiB)) MiB free with the fill removed, $((free0 / MiB)) MiB at first"
[ "$(sha_file "$mnt/web/vda.raw")" = "$new" ] || fail "vda.raw after the space came back"
[ "$(sets_created web)" = 2 ] || fail "$(sets_created web) sets made, not 2"
wait_clones "$fs" 0
echo "reflink-reserve: ok (dropped at $at MiB free)"
