#!/bin/bash
# Hostile qcow2 images (in the spirit of qemu-iotests 080), in files: a
# header that is not sound, or a feature snapfs does not decode, leaves the
# container only (no vda.raw, no partitions) with a warning naming the
# guest, the disk and the reason; a bad table or cluster fails the reads
# that touch it with EIO, one error line, and the rest of the disk reads.
# Through all of it snapfs serves a sound guest byte for byte.
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
. "$(dirname -- "$0")/../lib-qcow2.sh" || exit 99
requires fusermount3 od dd

make_test_fs xfs hostile 512
fs=$TEST_FS_DIR

# be_write IMAGE OFFSET BYTES VALUE: VALUE big-endian in BYTES bytes at
# OFFSET of IMAGE.
be_write() {
	local hex
	hex=$(printf "%0$(($3 * 2))x" "$4")
	printf "$(sed 's/../\\x&/g' <<<"$hex")" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none || fail "patching $1"
}
be_read() { # IMAGE OFFSET BYTES
	echo $((16#$(od -An -tx1 -j"$2" -N"$3" "$1" | tr -d ' \n')))
}
# l2_of IMAGE: the offset of the L2 table of the image's first 512 MiB.
l2_of() {
	echo $(($(be_read "$1" "$(be_read "$1" 40 8)" 8) & 0x00fffffffffffe00))
}
# A 64 MiB image with 4 MiB of data at its start (-c: compressed).
good_image() {
	rm -f "$TEST_TMPDIR/src.raw"
	truncate -s 64M "$TEST_TMPDIR/src.raw"
	dd if=/dev/urandom of="$TEST_TMPDIR/src.raw" bs=1M count=4 conv=notrunc status=none
	# shellcheck disable=SC2086
	qemu-img convert -q ${2:-} -f raw -O qcow2 "$TEST_TMPDIR/src.raw" "$1" || fail "qemu-img convert"
	cp "$TEST_TMPDIR/src.raw" "$TEST_TMPDIR/$(basename "$1" .qcow2).raw"
}

# name: how it is broken; "refused REASON" or "eio REASON" is what snapfs must say.
declare -A expect=(
	[sound]="sound"
	[magic]="refused no qcow2 magic"
	[l1huge]="refused is too big"
	[l1small]="refused too small"
	[crypt]="refused encrypted"
	[extdata]="refused external data file"
	[incompat]="refused unknown incompatible features"
	[hostfile]="container its backing file is outside the image's directory"
	[json]="container it is a protocol or json: name"
	[l2unaligned]="eio is not aligned"
	[l2past]="eio ends past the device"
	[clpast]="eio is past the device"
	[zpast]="eio past the device"
)
for n in "${!expect[@]}"; do
	case $n in zpast) good_image "$fs/$n.qcow2" -c ;; *) good_image "$fs/$n.qcow2" ;; esac
done
be_write "$fs/magic.qcow2" 0 4 0
be_write "$fs/l1huge.qcow2" 36 4 $((0x7fffffff))
be_write "$fs/l1small.qcow2" 36 4 0
be_write "$fs/crypt.qcow2" 32 4 1
be_write "$fs/extdata.qcow2" 72 8 4
be_write "$fs/incompat.qcow2" 72 8 $((1 << 20))
qemu-img rebase -q -u -f qcow2 -b /etc/passwd -F raw "$fs/hostfile.qcow2" || fail "rebase"
qemu-img rebase -q -u -f qcow2 -b 'json:{"file.filename":"/etc/shadow"}' -F raw "$fs/json.qcow2" ||
	fail "rebase json"
img=$fs/l2unaligned.qcow2
be_write "$img" "$(be_read "$img" 40 8)" 8 $(((1 << 63) | 0x70200))
img=$fs/l2past.qcow2
be_write "$img" "$(be_read "$img" 40 8)" 8 $(((1 << 63) | (1 << 40)))
img=$fs/clpast.qcow2
be_write "$img" "$(l2_of "$img")" 8 $(((1 << 63) | (1 << 40)))
# A compressed cluster (bit 62) at 1 TiB, one sector long.
img=$fs/zpast.qcow2
be_write "$img" "$(l2_of "$img")" 8 $(((1 << 62) | (1 << 40)))
sync -f "$fs"

xml=$TEST_TMPDIR/node.xml
args=()
for n in "${!expect[@]}"; do args+=("$n" "$(disk_file vda "$fs/$n.qcow2" qcow2)"); done
node_xml "$xml" "${args[@]}"
mnt=$TEST_TMPDIR/mnt
snapfs_start "test://$xml" "$mnt" -o freeze=off

sound_ok() {
	[ "$(sha_file "$mnt/sound/vda.raw")" = "$(sha_file "$TEST_TMPDIR/sound.raw")" ] ||
		fail "the sound guest's vda.raw is wrong after $1"
}

for n in "${!expect[@]}"; do
	read -r kind why <<<"${expect[$n]}"
	files=$(ls "$mnt/$n" | tr '\n' ' ')
	case $kind in
	sound)
		check_decoded "$mnt/$n" vda "$fs/$n.qcow2"
		;;
	refused | container)
		[ "$files" = "domain.xml vda.qcow2 " ] || fail "$n: $files"
		grep -q "guest $n, disk vda: qcow2 image .*$why" "$SNAPFS_LOG" ||
			[ "$kind" = container ] || fail "$n: no line saying \"$why\""
		grep -q "guest $n disk vda: vda.qcow2 is shown as its container only, not decoded: .*" \
			"$SNAPFS_LOG" || fail "$n: no line saying why vda.qcow2 is not decoded"
		[ "$kind" = refused ] || grep -q "guest $n disk vda: .*$why" "$SNAPFS_LOG" ||
			fail "$n: no line saying \"$why\""
		cmp "$mnt/$n/vda.qcow2" "$fs/$n.qcow2" || fail "$n: vda.qcow2 is not the image"
		;;
	eio)
		[ "$files" = "domain.xml vda.qcow2 vda.raw " ] || fail "$n: $files"
		err=$(dd if="$mnt/$n/vda.raw" of=/dev/null bs=64K count=1 2>&1) &&
			fail "$n: the damaged cluster read without an error"
		grep -q "Input/output error" <<<"$err" || fail "$n: $err"
		[ "$(grep -c "guest $n, disk vda: qcow2 image damaged: .*$why" "$SNAPFS_LOG")" = 1 ] ||
			fail "$n: not one line saying \"$why\": $(grep "guest $n" "$SNAPFS_LOG")"
		case $n in
		clpast | zpast)
			# Only its first cluster is bad: the rest reads, as qemu-img sees it.
			[ "$(dd if="$mnt/$n/vda.raw" bs=64K skip=1 count=63 status=none | sha_file -)" = \
				"$(dd if="$TEST_TMPDIR/$n.raw" bs=64K skip=1 count=63 status=none | sha_file -)" ] ||
				fail "$n: the clusters after the bad one differ from the image's"
			;;
		esac
		;;
	esac
	sound_ok "$n"
	log "$n: ok"
done
snapfs_mounted "$mnt" || fail "snapfs is gone"
echo "qcow2-hostile: ok"
