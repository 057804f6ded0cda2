#!/bin/bash
# Holes of a sparse disk in a file: the whole disk and each partition show
# the origin's holes through SEEK_DATA/SEEK_HOLE, st_blocks counts what
# holds data (du), and cp --sparse=auto and tar -S copy the bytes exactly
# while keeping the holes.  The other files are all data, and lseek never
# fails with ENOSYS.
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
requires sfdisk fusermount3 sha256sum python3 cp tar du

# region_map IMAGE START SIZE: the data extents of SIZE bytes at START of
# IMAGE, as offsets into that region (what a partition file must show).
region_map() {
	seek_map "$1" | awk -v s="$2" -v e=$(($2 + $3)) '$2 > s && $1 < e {
		a = $1 < s ? s : $1; b = $2 > e ? e : $2; print a - s, b - s }'
}

make_test_fs xfs holes 512
fs=$TEST_FS_DIR
img=$fs/sparse.img
truncate -s 256M "$img"
printf 'label: dos\nstart=2048, size=204800, type=83\nstart=206848, size=262144, type=83\n' |
	sfdisk -q "$img"
# Data here and there, holes between: in partition 1, across its end, and
# in partition 2.
dd if=/dev/urandom of="$img" bs=1M seek=8 count=3 conv=notrunc status=none
dd if=/dev/urandom of="$img" bs=1M seek=99 count=2 conv=notrunc status=none
dd if=/dev/urandom of="$img" bs=1M seek=200 count=1 conv=notrunc status=none
sync -f "$img"
mapfile -t parts < <(part_list "$img")
[ ${#parts[@]} = 2 ] || fail "expected 2 partitions, sfdisk shows ${#parts[@]}"

xml=$TEST_TMPDIR/node.xml
node_xml "$xml" sparse "$(disk_file vda "$img")"
mnt=$TEST_TMPDIR/mnt
snapfs_start "test://$xml" "$mnt" -o freeze=off
g=$mnt/sparse

# Listed (no set held): st_blocks of the origin, and none of the clones yet.
want_kib=$(du -k "$img" | cut -f1)
got_kib=$(du -k "$g/vda.raw" | cut -f1)
[ "$got_kib" = "$want_kib" ] || fail "du of vda.raw: $got_kib KiB, the origin holds $want_kib KiB"
[ "$got_kib" -lt $((256 * 1024 / 4)) ] || fail "du of vda.raw shows no holes ($got_kib KiB)"
assert_clones "$fs" 0

# Held: the same map through the clone, for the disk and each partition.
exec 3<"$g/vda.raw"
[ "$(seek_map "$g/vda.raw")" = "$(seek_map "$img")" ] || {
	diff <(seek_map "$img") <(seek_map "$g/vda.raw") >&2 || true
	fail "the SEEK_DATA/SEEK_HOLE map of vda.raw is not the origin's"
}
for p in "${parts[@]}"; do
	read -r n start size _ <<<"$p"
	want=$(region_map "$img" "$start" "$size")
	got=$(seek_map "$g/vda$n.raw")
	[ "$got" = "$want" ] || {
		diff <(echo "$want") <(echo "$got") >&2 || true
		fail "the map of vda$n.raw is not the origin's region at byte $start"
	}
	# st_blocks of the partition: its data, not its size.
	data=$(echo "$want" | awk '{ s += $2 - $1 } END { print s + 0 }')
	blocks=$(stat -c %b "$g/vda$n.raw")
	[ "$blocks" = $(((data + 511) / 512)) ] ||
		fail "vda$n.raw: st_blocks $blocks, its data is $data bytes"
done
[ "$(seek_map "$g/domain.xml")" = "0 $(stat -c %s "$g/domain.xml")" ] ||
	fail "domain.xml is not all data: $(seek_map "$g/domain.xml")"

# Copies keep the bytes and the holes.
out=$TEST_TMPDIR/out
mkdir -p "$out"
cp --sparse=auto "$g/vda.raw" "$out/vda.raw"
cmp "$out/vda.raw" "$img" || fail "cp --sparse=auto of vda.raw differs from the origin"
[ "$(du -k "$out/vda.raw" | cut -f1)" -le $((want_kib + 64)) ] ||
	fail "cp --sparse=auto wrote $(du -k "$out/vda.raw" | cut -f1) KiB for $want_kib KiB of data"
tar -C "$mnt" -cSf "$TEST_TMPDIR/sparse.tar" sparse/vda1.raw sparse/vda2.raw
tar -C "$out" -xSf "$TEST_TMPDIR/sparse.tar"
for p in "${parts[@]}"; do
	read -r n start size _ <<<"$p"
	[ "$(sha_file "$out/sparse/vda$n.raw")" = "$(sha_at "$img" "$start" "$size")" ] ||
		fail "tar -S of vda$n.raw differs from the origin's region"
done
[ "$(du -k "$out/sparse/vda1.raw" | cut -f1)" -lt $((100 * 1024 / 2)) ] ||
	fail "tar -S kept no holes of vda1.raw"
exec 3<&-
wait_clones "$fs" 0
echo "reflink-holes: ok"
