#!/bin/bash
# qcow2 disks in files, served decoded: for images made with qemu-img and
# qemu-io in many shapes (versions 2 and 3, clusters of 512 B to 2 MiB,
# deflate and zstd compression, extended L2 entries, zero and discarded
# ranges, an internal snapshot, MBR and GPT), vda.raw is what qemu-img
# convert makes of the image, byte for byte, with qemu-img map's holes;
# each partition is the converted disk's region at sfdisk's offsets;
# vda.qcow2 is the image cut where it ends.  The decoded disk is a point in
# time: the image rewritten while it is open does not show.
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
. "$(dirname -- "$0")/../lib-qcow2.sh" || exit 99
requires fusermount3 getfattr sha256sum

make_test_fs xfs qcow2 1024
fs=$TEST_FS_DIR
raw=$TEST_TMPDIR/src.raw

# make_image NAME TABLE OPTIONS [CONVERT_FLAG]: $fs/NAME.qcow2 from a raw
# disk with a TABLE (dos or gpt), qemu-img create OPTIONS.
make_image() {
	local name=$1 table=$2 opts=$3 flag=${4:-}
	rm -f "$raw"
	raw_with_table "$raw" 64 "$table"
	# shellcheck disable=SC2086 # flag: one word or none
	qemu-img convert -q $flag -f raw -O qcow2 -o "$opts" "$raw" "$fs/$name.qcow2" ||
		fail "qemu-img convert -o $opts"
}

make_image v2-512 dos compat=0.10,cluster_size=512
qio "$fs/v2-512.qcow2" "write -P 0x41 40M 1M" "write -z 20M 512K"
make_image v3-4k-zlib gpt cluster_size=4096 -c
qio "$fs/v3-4k-zlib.qcow2" "write -P 0x42 30M 300K" "discard 1216K 64K"
make_image v3-64k-zstd dos cluster_size=65536,compression_type=zstd -c
qio "$fs/v3-64k-zstd.qcow2" "write -c -P 0x43 48M 256K" "write -z 1280K 128K"
make_image v3-64k-l2ext gpt cluster_size=65536,extended_l2=on
qio "$fs/v3-64k-l2ext.qcow2" "write -P 0x44 50M 3K" "write -z 1300K 4K" "discard 1400K 64K"
make_image v3-2m-snap dos cluster_size=2097152,lazy_refcounts=on
qemu-img snapshot -c before "$fs/v3-2m-snap.qcow2" || fail "qemu-img snapshot"
qio "$fs/v3-2m-snap.qcow2" "write -P 0x45 2M 4M" "write -z 40M 2M"
images=(v2-512 v3-4k-zlib v3-64k-zstd v3-64k-l2ext v3-2m-snap)
sync -f "$fs"

xml=$TEST_TMPDIR/node.xml
args=()
for i in "${images[@]}"; do args+=("$i" "$(disk_file vda "$fs/$i.qcow2" qcow2)"); done
node_xml "$xml" "${args[@]}"
mnt=$TEST_TMPDIR/mnt
snapfs_start "test://$xml" "$mnt" -o freeze=off

for i in "${images[@]}"; do
	[ "$(ls "$mnt/$i" | tr '\n' ' ')" = "domain.xml vda.qcow2 vda.raw vda1.raw vda2.raw " ] ||
		fail "$i: $(ls "$mnt/$i" | tr '\n' ' ')"
	# Held, so that every file comes from one clone.
	exec 3<"$mnt/$i/vda.raw"
	check_decoded "$mnt/$i" vda "$fs/$i.qcow2"
	[ "$(xattr_of "$mnt/$i/vda.raw" backing)" = "" ] || fail "$i: a backing xattr"
	# st_blocks: what holds data, never 0 for a disk with data.
	data=$(qemu_data_map "$fs/$i.qcow2" | awk '{ s += $2 - $1 } END { print s + 0 }')
	blocks=$(stat -c %b "$mnt/$i/vda.raw")
	[ "$blocks" -gt 0 ] && [ "$((blocks * 512))" -ge "$data" ] &&
		[ "$((blocks * 512))" -le $((data + 64 * 2097152)) ] ||
		fail "$i: st_blocks $blocks for $data bytes of data"
	exec 3<&-
	log "$i: ok"
done
log "$CHECKED files match qemu-img"

# Point in time: the image rewritten while the decoded disk is open.
img=$fs/v3-64k-zstd.qcow2
qemu-img convert -O raw "$img" "$TEST_TMPDIR/before.raw"
exec 3<"$mnt/v3-64k-zstd/vda.raw"
qio "$img" "write -P 0x99 0 64M"
[ "$(sha_file "$mnt/v3-64k-zstd/vda.raw")" = "$(sha_file "$TEST_TMPDIR/before.raw")" ] ||
	fail "the decoded disk shows writes made after its snapshot"
exec 3<&-
wait_clones "$fs" 0
# The next open: the new bytes.
[ "$(cmp -n 1M "$mnt/v3-64k-zstd/vda.raw" <(head -c 1M /dev/zero | tr '\0' '\231') && echo same)" = same ] ||
	fail "a new open does not show the rewritten image"
echo "qcow2-files: ok"
