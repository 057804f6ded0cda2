#!/bin/bash
# kill -9 of snapfs while it holds reflink clones, on XFS and on btrfs: the
# clones were never named, so they die with it.  The origin is rewritten
# while they are held, so that they pin blocks of their own; after the kill
# that space comes back, no file is left anywhere in the filesystem but the
# origins, nor any unnamed inode, and a new snapfs at the same mount point
# serves the guest's new bytes.
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
requires sha256sum fusermount3 python3 mkfs.xfs mkfs.btrfs btrfs find findmnt blockdev

MiB=$((1 << 20))

everything_in() { (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | tr '\n' ' '); }

crash_on() {
	local fstype=$1 size=256
	[ "$fstype" != xfs ] || size=320 # mkfs.xfs's least
	make_test_fs "$fstype" "$fstype" $size
	local fs=$TEST_FS_DIR img=$TEST_FS_DIR/images
	local vda=$img/web-vda.img vdb=$img/web-vdb.img
	mkdir "$img"
	random_file "$vda" 48
	random_file "$vdb" 16
	local xml=$TEST_TMPDIR/node-$fstype.xml mnt=$TEST_TMPDIR/mnt-$fstype
	node_xml "$xml" web "$(disk_file vda "$vda"; disk_file vdb "$vdb")"
	snapfs_start "test://$xml" "$mnt" -o freeze=off

	local free0 inodes0 files0 old
	free0=$(fs_free "$fs")
	inodes0=$(fs_used_inodes "$fs")
	files0=$(everything_in "$fs")
	[ "$files0" = "./images ./images/web-vda.img ./images/web-vdb.img " ] ||
		fail "$fstype: the filesystem holds more than the origins: $files0"
	old=$(sha_file "$vda")

	exec 3<"$mnt/web/vda.raw"
	assert_clones "$fs" 2
	[ "$(fs_used_inodes "$fs")" = $((inodes0 + 2)) ] ||
		fail "$fstype: $(fs_used_inodes "$fs") inodes in use with 2 clones, $inodes0 before"
	# The guest rewrites all of vda: the clone keeps the old blocks.
	dd if=/dev/urandom of="$vda" bs=1M count=48 conv=notrunc,fsync status=none
	local pinned new
	new=$(sha_file "$vda")
	pinned=$((free0 - $(fs_free "$fs")))
	[ "$pinned" -ge $((44 * MiB)) ] || fail "$fstype: 48 MiB rewritten under a clone took only $pinned bytes"
	[ "$(sha_fd_at 3 0 $((48 * MiB)))" = "$old" ] || fail "$fstype: the held vda.raw shows new bytes"

	snapfs_kill9 "$mnt"
	exec 3<&-
	wait_for -t 30 fs_free_near "$fs" "$free0" $((4 * MiB)) ||
		fail "$fstype: free space $(fs_free "$fs") after kill -9, $free0 before the open ($pinned pinned)"
	[ "$(everything_in "$fs")" = "$files0" ] || fail "$fstype: left after kill -9: $(everything_in "$fs")"
	wait_for -t 30 fs_used_inodes_is "$fs" "$inodes0" ||
		fail "$fstype: $(fs_used_inodes "$fs") inodes in use after kill -9, $inodes0 before"
	[ "$(sha_file "$vda")" = "$new" ] || fail "$fstype: the origin changed"

	# Nothing to sweep: a new snapfs at the same mount point serves the
	# guest at once, with the new bytes, and releases as usual.
	snapfs_start "test://$xml" "$mnt" -o freeze=off
	[ "$(sha_file "$mnt/web/vda.raw")" = "$new" ] || fail "$fstype: vda.raw after the restart"
	wait_clones "$fs" 0
	snapfs_stop "$mnt"
	wait_for -t 30 fs_free_near "$fs" "$free0" $((4 * MiB)) ||
		fail "$fstype: free space $(fs_free "$fs") after the restart, $free0 at first"
	[ "$(everything_in "$fs")" = "$files0" ] || fail "$fstype: left after the restart: $(everything_in "$fs")"
	log "$fstype: $((pinned / MiB)) MiB pinned by the clones came back after kill -9"
}

for fstype in xfs btrfs; do
	crash_on $fstype
done
echo "reflink-crash: ok"
