#!/bin/bash
# A running guest's disk on a filesystem that cannot make reflink clones
# (ext4, tmpfs, XFS made with -m reflink=0), where no backup API can stand
# in (the test driver has none), is not served: it is left out of the tree, and
# the log says once, at info level, which guest and disk and why, however
# often the guest is listed.  A guest with one disk that can be cloned and
# one that cannot shows, and clones, only the first.
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
requires sha256sum fusermount3 mkfs.xfs mkfs.ext4

ls_c() { (cd "$1" && LC_ALL=C ls -A | tr '\n' ' '); }

declare -A dir=()
make_test_fs ext4 ext4 64
dir[ext4]=$TEST_FS_DIR
make_test_fs tmpfs tmpfs 64
dir[tmpfs]=$TEST_FS_DIR
make_test_fs xfs noreflink 320 -m reflink=0
dir[noreflink]=$TEST_FS_DIR
make_test_fs xfs xfs 320
dir[xfs]=$TEST_FS_DIR
for k in "${!dir[@]}"; do
	random_file "${dir[$k]}/disk.img" 8
done
sfdisk -q "${dir[xfs]}/disk.img" <<<'start=2048, size=4096, type=83' || fail "sfdisk"

xml=$TEST_TMPDIR/node.xml
node_xml "$xml" \
	on-ext4 "$(disk_file vda "${dir[ext4]}/disk.img")" \
	on-tmpfs "$(disk_file vda "${dir[tmpfs]}/disk.img")" \
	on-noreflink "$(disk_file vdb "${dir[noreflink]}/disk.img")" \
	mixed "$(disk_file vda "${dir[xfs]}/disk.img"; disk_file vdb "${dir[ext4]}/disk.img")"
mnt=$TEST_TMPDIR/mnt
snapfs_start "test://$xml" "$mnt" -o cache=0

# Listed twice (no listing cache), and looked up by name.
for _ in 1 2; do
	[ "$(ls_c "$mnt")" = "mixed on-ext4 on-noreflink on-tmpfs " ] || fail "guests: $(ls_c "$mnt")"
	for g in on-ext4 on-tmpfs on-noreflink; do
		[ "$(ls_c "$mnt/$g")" = "domain.xml " ] || fail "$g: $(ls_c "$mnt/$g")"
	done
	[ "$(ls_c "$mnt/mixed")" = "domain.xml vda.raw vda1.raw " ] || fail "mixed: $(ls_c "$mnt/mixed")"
	for f in on-ext4/vda.raw on-tmpfs/vda.raw on-noreflink/vdb.raw mixed/vdb.raw; do
		[ ! -e "$mnt/$f" ] || fail "$f is served"
	done
done

# not_served GUEST DISK PATH FSTYPE: the info line (no level word), once.
not_served() {
	local n
	n=$(grep -cE "^snapfs: guest $1 disk $2: $(re_escape "$3") not served: its filesystem \($4\) cannot make reflink clones \([^)]+\)" "$SNAPFS_LOG") || true
	[ "$n" = 1 ] || fail "guest $1 disk $2 on $4: $n info lines, not 1"
}
not_served on-ext4 vda "${dir[ext4]}/disk.img" ext4
not_served on-tmpfs vda "${dir[tmpfs]}/disk.img" tmpfs
not_served on-noreflink vdb "${dir[noreflink]}/disk.img" xfs
not_served mixed vdb "${dir[ext4]}/disk.img" ext4
[ "$(grep -c "not served" "$SNAPFS_LOG")" = 4 ] || fail "$(grep -c "not served" "$SNAPFS_LOG") lines say not served, not 4"

# The mixed guest's set clones its served disk only, and gives its bytes.
exec 3<"$mnt/mixed/vda.raw"
assert_clones "${dir[xfs]}" 1
for k in ext4 tmpfs noreflink; do
	assert_clones "${dir[$k]}" 0
done
[ "$(sets_created mixed)" = 1 ] || fail "$(sets_created mixed) sets for mixed"
grep -F "guest mixed: snapshot set created in " "$SNAPFS_LOG" | grep -qF "vdb" &&
	fail "the set names the disk that is not served"
[ "$(sha_file "$mnt/mixed/vda.raw")" = "$(sha_file "${dir[xfs]}/disk.img")" ] || fail "mixed/vda.raw"
[ "$(sha_file "$mnt/mixed/vda1.raw")" = "$(sha_at "${dir[xfs]}/disk.img" $((2048 * 512)) $((4096 * 512)))" ] ||
	fail "mixed/vda1.raw"
exec 3<&-
wait_clones "${dir[xfs]}" 0

# Nothing was made beside the origins, and still one line each.
for k in "${!dir[@]}"; do
	[ "$(ls_c "${dir[$k]}")" = "disk.img " ] || [ "$(ls_c "${dir[$k]}")" = "disk.img lost+found " ] ||
		fail "$k holds: $(ls_c "${dir[$k]}")"
done
[ "$(grep -c "not served" "$SNAPFS_LOG")" = 4 ] || fail "the not-served lines were repeated"
echo "reflink-unsupported: ok"
