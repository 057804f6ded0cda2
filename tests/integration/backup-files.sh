#!/bin/bash
# Backups from the mount, of guests on files: each client's run copies a
# guest from one snapshot set (one instant) with the default linger, while
# the guest writes; GNU tar reports nothing changed as it read, also for
# files whose read outlasts every attribute and listing cache; a
# directory's time moves only with its entries; a second rsync after the set
# is gone copies every disk again (its time moved on).
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
requires sfdisk fusermount3 sha256sum python3 tar rsync cp

make_test_fs xfs bk 700
fs=$TEST_FS_DIR
web=$fs/web.img db=$fs/db.img data=$fs/data.img
truncate -s 40M "$web" "$db"
printf 'label: dos\nstart=2048, size=36864, type=83\nstart=38912, size=40960, type=83\n' |
	sfdisk -q "$web"
printf 'label: gpt\nstart=2048, size=61440\n' | sfdisk -q "$db"
dd if=/dev/urandom of="$web" bs=1M seek=1 count=38 conv=notrunc status=none
dd if=/dev/urandom of="$db" bs=1M seek=1 count=30 conv=notrunc status=none
random_file "$data" 12
db_sha=$(sha_file "$db")

xml=$TEST_TMPDIR/node.xml
node_xml "$xml" web "$(disk_file vda "$web")$(disk_file vdb "$data")" db "$(disk_file vda "$db")"
mnt=$TEST_TMPDIR/mnt
# The default linger; listings and attributes cached for a second only, so
# that every slow read below outlasts them.
SNAPFS_DEFAULT_LINGER=1 snapfs_start "test://$xml" "$mnt" -o freeze=off,cache=1
grep -q "linger" <<<"$(ps -o args= -p "$SNAPFS_PID")" && fail "the test must run with the default linger"

# The guest writes all the time: random MiBs of both partitions of vda.
writer() {
	while :; do
		dd if=/dev/urandom of="$web" bs=1M seek=$((1 + RANDOM % 38)) count=1 conv=notrunc \
			status=none 2>/dev/null || true
		sleep 0.02
	done
}
writer &
writer_pid=$!
add_cleanup "kill $writer_pid 2>/dev/null; wait $writer_pid 2>/dev/null; true"

# slow_sink: stdin to stdout at 12 MiB/s, so that the client reading the
# mount is held back (a 40 MiB file takes over 3 s).
slow_sink() {
	python3 -c '
import sys, time
r, w = sys.stdin.buffer, sys.stdout.buffer
while True:
    b = r.read(1 << 20)
    if not b:
        break
    w.write(b)
    time.sleep(1 / 12)
'
}

# one_instant DIR GUEST: the partition files in DIR/GUEST equal the regions
# of DIR/GUEST/vda.raw that its own partition table names.
one_instant() {
	local dir=$1/$2 n start size
	[ -f "$dir/vda.raw" ] || fail "$dir/vda.raw not copied"
	while read -r n start size _; do
		[ "$(sha_file "$dir/vda$n.raw")" = "$(sha_at "$dir/vda.raw" "$start" "$size")" ] ||
			fail "$dir/vda$n.raw is not the region of $dir/vda.raw at byte $start: not one instant"
	done < <(part_list "$dir/vda.raw")
}

# wait_sets_gone GUEST N: the N-th set of GUEST is removed (after the linger).
wait_sets_gone() {
	wait_for -t 40 sets_removed_is "$1" "$2" || fail "set $2 of $1 not removed after the linger"
}

dir_times() { stat -c '%n %Y %Z %i' "$mnt" "$mnt/web" "$mnt/db" "$mnt/web/domain.xml"; }

# ---- directories keep their times while their entries do -----------------------
before=$(dir_times)
sleep 2.5 # past the cache time; the listing below makes a new discovery
ls -lR "$mnt" >/dev/null
sleep 1.5
ls -lR "$mnt" >/dev/null
[ "$(dir_times)" = "$before" ] || {
	diff <(echo "$before") <(dir_times) >&2 || true
	fail "a directory's (or domain.xml's) time or inode moved while its entries did not"
}

# ---- GNU tar: one set per guest, no warning, slow reads -----------------------
out=$TEST_TMPDIR/out
mkdir -p "$out/tar"
tar_err=$TEST_TMPDIR/tar.err
set +e
tar -C "$mnt" -cSf - web db 2>"$tar_err" | slow_sink >"$TEST_TMPDIR/guests.tar"
tar_rc=${PIPESTATUS[0]}
set -e
[ "$tar_rc" = 0 ] || fail "tar exited $tar_rc: $(cat "$tar_err")"
[ ! -s "$tar_err" ] || fail "tar warned: $(cat "$tar_err")"
[ "$(sets_created web)" = 1 ] || fail "tar of web made $(sets_created web) sets, not 1"
[ "$(sets_created db)" = 1 ] || fail "tar of db made $(sets_created db) sets, not 1"
tar -C "$out/tar" -xSf "$TEST_TMPDIR/guests.tar"
one_instant "$out/tar" web
one_instant "$out/tar" db
[ "$(sha_file "$out/tar/db/vda.raw")" = "$db_sha" ] || fail "tar's db/vda.raw is not the origin"
cmp "$out/tar/web/vdb.raw" "$data" || fail "tar's web/vdb.raw is not the origin"
wait_sets_gone web 1
wait_sets_gone db 1
[ "$(clone_count "$fs")" = 0 ] || fail "clones held after the linger"

# ---- rsync -a, twice: one set each, and the second copies everything again ------
rsync_run() {
	rsync -a --itemize-changes "$mnt/" "$out/rsync/" >"$TEST_TMPDIR/rsync.$1" ||
		fail "rsync run $1 failed"
}
rsync_run 1
[ "$(sets_created web)" = 2 ] || fail "rsync of web made $(($(sets_created web) - 1)) sets, not 1"
one_instant "$out/rsync" web
one_instant "$out/rsync" db
first=$(sha_file "$out/rsync/web/vda.raw")
wait_sets_gone web 2
rsync_run 2
[ "$(sets_created web)" = 3 ] || fail "the second rsync of web made $(($(sets_created web) - 2)) sets, not 1"
for f in web/vda.raw web/vda1.raw web/vda2.raw web/vdb.raw db/vda.raw db/vda1.raw; do
	grep -qE "^>f[^ ]* $f\$" "$TEST_TMPDIR/rsync.2" ||
		fail "the second rsync skipped $f: $(cat "$TEST_TMPDIR/rsync.2")"
done
one_instant "$out/rsync" web
[ "$(sha_file "$out/rsync/web/vda.raw")" != "$first" ] ||
	fail "the guest wrote all along, yet the second copy equals the first"
wait_sets_gone web 3

# ---- cp -r --sparse=always ----------------------------------------------------
cp -r --sparse=always "$mnt/web" "$out/cp"
[ "$(sets_created web)" = 4 ] || fail "cp -r of web made $(($(sets_created web) - 3)) sets, not 1"
one_instant "$out" cp

# ---- -o linger=0 says what it means: one set per file --------------------------
snapfs_stop "$mnt"
snapfs_start "test://$xml" "$mnt" -o freeze=off,linger=0
tar -C "$mnt" -cSf - web | cat >/dev/null
[ "$(sets_created web)" -ge 3 ] || fail "with linger=0 tar made $(sets_created web) sets of web, not one per file"
echo "backup-files: ok"
