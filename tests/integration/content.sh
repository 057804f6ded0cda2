#!/bin/bash
# Content: every file equals, byte for byte, what dd reads from the
# snapshot device at the offsets sfdisk reports.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate sfdisk virsh fusermount3 getfattr sha256sum

vg=snapfs_content
setup_vg $vg 256
make_lv $vg mbr 24M
make_lv $vg gpt 24M
fill_random /dev/$vg/mbr
fill_random /dev/$vg/gpt
sfdisk -q --no-reread /dev/$vg/mbr <<'P'
label: dos
start=2048, size=4096, type=83
start=8192, size=2048, type=83
start=12288, size=30720, type=5
start=14336, size=4096, type=83
start=20480, size=4096, type=83
start=26624, size=4000, type=83
P
sfdisk -q --no-reread /dev/$vg/gpt <<'P'
label: gpt
start=2048, size=4096
start=6144, size=8191
start=16384, size=16384
P

xml=/tmp/content-node.xml
add_cleanup "rm -f $xml"
{
	echo "<node>"
	virt_domain guest \
		"$(disk_block vda /dev/$vg/mbr; disk_block vdb /dev/$vg/gpt)"
	echo "</node>"
} >"$xml"

mnt=/tmp/snapfs-content
snapfs_start "test://$xml" $mnt

# Hold the set open while the snapshot devices are read directly.
exec 3<"$mnt/guest/vda.raw"
# The first request widened the mount's readahead window (-o readahead=,
# default 4096 KiB), so sequential readers come as 1 MiB requests.
d=$(stat -c %d $mnt)
ra=$(cat /sys/class/bdi/$((d >> 8)):$((d & 255))/read_ahead_kb)
[ "$ra" = 4096 ] || fail "the mount's read_ahead_kb is $ra, not 4096"
# ... and the kernel may keep 32 of them in flight (init's max_background),
# not its default 12, past 9 of which it sends no more readahead.
fc=/sys/fs/fuse/connections
[ -d "$fc/$((d & 255))" ] || mount -t fusectl none $fc || fail "no $fc"
[ "$(cat "$fc/$((d & 255))/max_background")" = 32 ] ||
	fail "the mount's max_background is $(cat "$fc/$((d & 255))/max_background"), not 32"
[ "$(cat "$fc/$((d & 255))/congestion_threshold")" = 24 ] ||
	fail "the mount's congestion_threshold is $(cat "$fc/$((d & 255))/congestion_threshold")"
checked=0
for disk in vda vdb; do
	snap=$(getfattr --absolute-names --only-values -n user.snapfs.snapshot "$mnt/guest/$disk.raw")
	dev=/dev/$snap
	[ -b "$dev" ] || fail "snapshot device $dev of $disk missing"
	[ "$(sha_file "$mnt/guest/$disk.raw")" = "$(sha_file "$dev")" ] ||
		fail "$disk.raw differs from $dev"
	checked=$((checked + 1))
	# "/dev/x1 : start= 2048, size= 4096, type=83" lines; the extended
	# partition (type 5) is no file of its own.
	while read -r node start size type; do
		n=${node##*[!0-9]}
		[ "$type" = 5 ] && { [ -e "$mnt/guest/$disk$n.raw" ] && fail "extended exposed"; continue; }
		file="$mnt/guest/$disk$n.raw"
		[ -f "$file" ] || fail "no $file"
		[ "$(stat -c %s "$file")" = $((size * 512)) ] || fail "$file size"
		[ "$(sha_file "$file")" = "$(sha_at "$dev" $((start * 512)) $((size * 512)))" ] ||
			fail "$file differs from $dev at $start"
		checked=$((checked + 1))
	done < <(sfdisk -d "$dev" | sed -n 's/^\(\/dev\/[^ ]*\) : start= *\([0-9]*\), size= *\([0-9]*\), type=\([^,]*\).*/\1 \2 \3 \4/p')
done
exec 3<&-
[ "$checked" = 10 ] || fail "checked $checked files, expected 10"
wait_snapfs_lvs $vg 0
echo "content: $checked files match"
