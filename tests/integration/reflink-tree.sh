#!/bin/bash
# File-backed disks on XFS and on btrfs, served from reflink clones: the
# tree, every file's bytes against the origin file at the offsets sfdisk
# reports, point in time, one set (one clone per disk) per guest, EROFS, and
# after the last close no clone left, the space back, the origins untouched
# and nothing ever named in the origins' directory.
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
requires sfdisk qemu-img getfattr sha256sum fusermount3 python3 mkfs.xfs mkfs.btrfs

MiB=$((1 << 20))

ls_c() { (cd "$1" && LC_ALL=C ls -A | tr '\n' ' '); }
xattr() { getfattr --absolute-names --only-values -n "user.snapfs.$1" "$2"; }
fingerprint() { echo "$(sha_file "$1") $(stat -c '%s %y' "$1")"; }

tree_on() {
	local fstype=$1 size=256
	[ "$fstype" != xfs ] || size=320 # mkfs.xfs's least
	make_test_fs "$fstype" "$fstype" $size
	local fs=$TEST_FS_DIR img=$TEST_FS_DIR/images
	local mbr=$img/alpha-vda.img gpt=$img/alpha-vdb.img qcow=$img/beta-vda.qcow2
	mkdir "$img"

	random_file "$mbr" 32
	sfdisk -q "$mbr" <<'P'
label: dos
start=2048, size=16384, type=83
start=18432, size=8192, type=7
start=28672, size=36864, type=5
start=30720, size=16384, type=83
P
	random_file "$gpt" 24
	sfdisk -q "$gpt" <<'P'
label: gpt
start=2048, size=4096, name=one
start=8192, size=8191, name=two
start=20480, size=16384, name=three
P
	random_file "$img/beta.raw" 16
	qemu-img convert -q -f raw -O qcow2 "$img/beta.raw" "$qcow" || fail "qemu-img convert"
	local beta_sha qcow_end
	beta_sha=$(sha_file "$img/beta.raw")
	rm -f "$img/beta.raw"
	qcow_end=$(qemu-img check --output=json "$qcow" | sed -n 's/.*"image-end-offset": *\([0-9]*\).*/\1/p')
	[ -n "$qcow_end" ] || fail "qemu-img check gave no image end"
	sync -f "$fs"
	local fp_gpt fp_qcow f o checked=0 t n start len type
	fp_gpt=$(fingerprint "$gpt")
	fp_qcow=$(fingerprint "$qcow")

	local xml=$TEST_TMPDIR/node-$fstype.xml mnt=$TEST_TMPDIR/mnt-$fstype
	node_xml "$xml" \
		alpha "$(disk_file vda "$mbr"; disk_file vdb "$gpt")" \
		beta "$(disk_file vda "$qcow" qcow2)"
	snapfs_start "test://$xml" "$mnt"

	# The tree, without a snapshot.
	[ "$(ls_c "$mnt")" = "alpha beta " ] || fail "$fstype: guests: $(ls_c "$mnt")"
	[ "$(ls_c "$mnt/alpha")" = "domain.xml vda.raw vda1.raw vda2.raw vda5.raw vdb.raw vdb1.raw vdb2.raw vdb3.raw " ] ||
		fail "$fstype: alpha: $(ls_c "$mnt/alpha")"
	[ "$(ls_c "$mnt/beta")" = "domain.xml vda.qcow2 vda.raw " ] || fail "$fstype: beta: $(ls_c "$mnt/beta")"
	[ "$(stat -c %s "$mnt/beta/vda.qcow2")" = "$qcow_end" ] || fail "$fstype: vda.qcow2 size"
	[ "$(stat -c %s "$mnt/beta/vda.raw")" = $((16 << 20)) ] || fail "$fstype: beta's vda.raw size"
	for f in alpha/vda.raw alpha/vda5.raw alpha/vdb.raw alpha/vdb2.raw; do
		case $f in alpha/vda*) o=$mbr ;; *) o=$gpt ;; esac
		[ "$(xattr origin "$mnt/$f")" = "$o" ] || fail "$fstype: $f origin: $(xattr origin "$mnt/$f")"
		[ "$(xattr snapshot_kind "$mnt/$f")" = reflink ] ||
			fail "$fstype: $f snapshot_kind: $(xattr snapshot_kind "$mnt/$f")"
	done
	[ "$(xattr origin "$mnt/beta/vda.qcow2")" = "$qcow" ] || fail "$fstype: vda.qcow2 origin"
	[ "$(xattr format "$mnt/beta/vda.qcow2")" = qcow2 ] || fail "$fstype: vda.qcow2 format"
	xattr snapshot "$mnt/alpha/vda.raw" 2>/dev/null && fail "$fstype: snapshot xattr without a set"
	[ "$(sets_created alpha)$(sets_created beta)" = 00 ] || fail "$fstype: a listing made a set"
	assert_clones "$fs" 0

	local free_before names_before
	free_before=$(fs_free "$fs")
	names_before=$(ls_c "$img")

	# One open: one set for alpha, one clone of each of its two disks, none
	# of them named anywhere.
	exec 3<"$mnt/alpha/vda.raw"
	head -c $MiB <&3 >/dev/null
	[ "$(sets_created alpha)" = 1 ] || fail "$fstype: $(sets_created alpha) sets for one open"
	assert_clones "$fs" 2
	grep -F "guest alpha: snapshot set created in " "$SNAPFS_LOG" | grep -qF "vda.raw=reflink:$mbr" ||
		fail "$fstype: the set's log line does not name vda's clone of $mbr"
	[ "$(ls_c "$img")" = "$names_before" ] || fail "$fstype: the origins' directory changed: $(ls_c "$img")"
	[ -n "$(xattr snapshot "$mnt/alpha/vdb.raw")" ] || fail "$fstype: no snapshot xattr while held"
	# The test driver's guests run and answer a freeze: the clones were
	# made inside it, as LVM snapshots are.
	[ "$(xattr consistency "$mnt/alpha/vdb.raw")" = frozen ] ||
		fail "$fstype: the clones were not made with the guest frozen"
	grep -q "guest alpha: filesystems thawed after" "$SNAPFS_LOG" ||
		fail "$fstype: no thaw logged for alpha"
	local status
	status=$(cat "$mnt/.snapfs-status")
	grep -qE "^  disk: vda\.raw origin=$(re_escape "$mbr") snapshot=reflink fs=$(re_escape "$fs") \($fstype\) free=[0-9]+MiB reserve=[0-9]+MiB clone=held$" <<<"$status" ||
		fail "$fstype: no status line of vda.raw in: $status"

	# Every file of alpha against the origin files, read by dd at the
	# offsets sfdisk reports; all from the one set.
	declare -A want=()
	for t in vda vdb; do
		case $t in vda) o=$mbr ;; vdb) o=$gpt ;; esac
		[ "$(stat -c %s "$mnt/alpha/$t.raw")" = "$(stat -c %s "$o")" ] || fail "$fstype: $t.raw size"
		want[$t]=$(sha_file "$o")
		[ "$(sha_file "$mnt/alpha/$t.raw")" = "${want[$t]}" ] || fail "$fstype: $t.raw differs from $o"
		checked=$((checked + 1))
		while read -r n start len type; do
			f=$mnt/alpha/$t$n.raw
			if is_extended "$type"; then
				[ ! -e "$f" ] || fail "$fstype: extended partition shown as $f"
				continue
			fi
			[ "$(stat -c %s "$f")" = "$len" ] || fail "$fstype: $t$n.raw size"
			want[$t$n]=$(sha_at "$o" "$start" "$len")
			[ "$(sha_file "$f")" = "${want[$t$n]}" ] || fail "$fstype: $t$n.raw differs from $o at $start"
			checked=$((checked + 1))
		done < <(part_list "$o")
	done
	[ "$checked" = 8 ] || fail "$fstype: checked $checked files of alpha, not 8"
	[ "$(sets_created alpha)" = 1 ] || fail "$fstype: $(sets_created alpha) sets for alpha while one was held"
	assert_clones "$fs" 2

	# Point in time: the guest rewrites partitions 1 and 5 in place; the
	# open file, a new open of the disk and a partition opened only now
	# still give the old bytes, and the clone pins the old blocks.
	local p1 p5
	read -r _ p1 _ < <(part_list "$mbr" | awk '$1 == 1')
	read -r _ p5 _ < <(part_list "$mbr" | awk '$1 == 5')
	dd if=/dev/urandom of="$mbr" bs=1M count=8 seek="$p1" oflag=seek_bytes conv=notrunc,fsync status=none
	dd if=/dev/urandom of="$mbr" bs=1M count=8 seek="$p5" oflag=seek_bytes conv=notrunc,fsync status=none
	local new_disk new_p1 fp_mbr pinned
	new_disk=$(sha_file "$mbr")
	new_p1=$(sha_at "$mbr" "$p1" $((8 * MiB)))
	fp_mbr=$(fingerprint "$mbr")
	[ "$new_disk" != "${want[vda]}" ] || fail "$fstype: the origin did not change"
	[ "$(sha_fd_at 3 0 $((32 * MiB)))" = "${want[vda]}" ] || fail "$fstype: the open vda.raw shows new bytes"
	[ "$(sha_file "$mnt/alpha/vda.raw")" = "${want[vda]}" ] || fail "$fstype: a new open of vda.raw shows new bytes"
	[ "$(sha_file "$mnt/alpha/vda5.raw")" = "${want[vda5]}" ] || fail "$fstype: vda5.raw opened later shows new bytes"
	[ "$(sets_created alpha)" = 1 ] || fail "$fstype: a second set for alpha while one was held"
	pinned=$((free_before - $(fs_free "$fs")))
	[ "$pinned" -ge $((12 * MiB)) ] || fail "$fstype: 16 MiB rewritten under a clone took only $pinned bytes"

	# Writes: EROFS, on a held file and on one of a guest without a set;
	# a refused open makes no set.
	expect_erofs sh -c ": >>'$mnt/alpha/vda.raw'"
	expect_erofs dd if=/dev/zero of="$mnt/alpha/vda1.raw" bs=512 count=1 conv=notrunc status=none
	expect_erofs sh -c ": >>'$mnt/beta/vda.qcow2'"
	expect_erofs truncate -s 0 "$mnt/beta/vda.qcow2"
	[ "$(sets_created beta)" = 0 ] || fail "$fstype: an open for writing made a set"
	assert_clones "$fs" 2

	# beta's set is its own: one more set, one more clone, the container's
	# bytes as they are.
	exec 4<"$mnt/beta/vda.qcow2"
	[ "$(sets_created beta)" = 1 ] || fail "$fstype: $(sets_created beta) sets for beta"
	assert_clones "$fs" 3
	[ "$(sha_file "$mnt/beta/vda.qcow2")" = "$(head -c "$qcow_end" "$qcow" | sha_file -)" ] ||
		fail "$fstype: vda.qcow2 differs from $qcow"
	[ "$(sha_file "$mnt/beta/vda.raw")" = "$beta_sha" ] || fail "$fstype: beta's vda.raw is not its disk"
	exec 4<&-
	wait_clones "$fs" 2
	wait_for -t 10 sets_removed_is beta 1 || fail "$fstype: beta's set was not removed"

	# The last close: no clone, the space back, nothing named; a new open
	# is a new set with the new bytes.
	exec 3<&-
	wait_clones "$fs" 0
	wait_for -t 10 sets_removed_is alpha 1 || fail "$fstype: alpha's set was not removed"
	wait_for -t 30 fs_free_near "$fs" "$free_before" $((4 * MiB)) ||
		fail "$fstype: free space $(fs_free "$fs") after the release, $free_before before the open"
	[ "$(ls_c "$img")" = "$names_before" ] || fail "$fstype: the origins' directory changed: $(ls_c "$img")"
	exec 3<"$mnt/alpha/vda.raw"
	[ "$(sha_fd_at 3 0 $((32 * MiB)))" = "$new_disk" ] || fail "$fstype: a new open shows old bytes"
	[ "$(sha_file "$mnt/alpha/vda1.raw")" = "$new_p1" ] || fail "$fstype: a new open of vda1.raw shows old bytes"
	[ "$(sets_created alpha)" = 2 ] || fail "$fstype: $(sets_created alpha) sets for alpha, not 2"
	exec 3<&-
	wait_clones "$fs" 0

	snapfs_stop "$mnt"
	[ "$(fingerprint "$mbr")" = "$fp_mbr" ] || fail "$fstype: $mbr changed"
	[ "$(fingerprint "$gpt")" = "$fp_gpt" ] || fail "$fstype: $gpt changed"
	[ "$(fingerprint "$qcow")" = "$fp_qcow" ] || fail "$fstype: $qcow changed"
	[ "$(ls_c "$img")" = "$names_before" ] || fail "$fstype: the origins' directory changed: $(ls_c "$img")"
	log "$fstype: $checked files of alpha and beta's container match; point in time, release ok"
}

for fstype in xfs btrfs; do
	tree_on $fstype
done
echo "reflink-tree: ok"
