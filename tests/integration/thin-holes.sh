#!/bin/bash
# Holes of a thin LV: a 128 MiB thin disk with a GPT and an ext4 that maps
# a few MiB.  Its whole-disk and partition files show the snapshot's own
# mapping (thin_dump of the same snapshot, read by the test) through
# SEEK_DATA/SEEK_HOLE and st_blocks; cp --sparse=auto and tar -S copy the
# bytes exactly and read no more than 1.2 times the mapped bytes from the
# snapshot device; the pool's metadata snapshot is released again; and a
# pool whose metadata snapshot another tool holds means "all data", never
# an error.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate sfdisk thin_dump dmsetup mkfs.ext4 python3 cp tar du getfattr

vg=snapfs_thinholes
setup_vg $vg 256
lvcreate -q -y -T -L 96M $vg/pool >/dev/null || fail "lvcreate of the thin pool failed"
lvcreate -q -y -V 128M -T $vg/pool -n disk >/dev/null || fail "lvcreate of the thin LV failed"
disk=/dev/$vg/disk
printf 'label: gpt\nstart=2048, size=200704\n' | sfdisk -q --no-reread "$disk"
test_tmpdir
tree=$TEST_TMPDIR/tree
mkdir -p "$tree/etc" "$tree/data"
echo "thin guest" >"$tree/etc/hostname"
dd if=/dev/urandom of="$tree/data/blob" bs=1M count=3 status=none
mkfs.ext4 -q -F -d "$tree" -E nodiscard,offset=$((2048 * 512)) "$disk" $((200704 / 2))k ||
	fail "mkfs.ext4 on the partition failed"
sync
disk_sha=$(sha_file "$disk")
part_sha=$(sha_at "$disk" $((2048 * 512)) $((200704 * 512)))

xml=$TEST_TMPDIR/node.xml
one_guest_xml $xml thin "$disk"
mnt=/tmp/snapfs-thinholes
snapfs_start "test://$xml" $mnt -o freeze=off
g=$mnt/thin

# Hold a set; find its snapshot's thin device and pool.
exec 3<"$g/vda.raw"
snap=$(getfattr --absolute-names --only-values -n user.snapfs.snapshot "$g/vda.raw")
[ "$(getfattr --absolute-names --only-values -n user.snapfs.snapshot_kind "$g/vda.raw")" = lvm-thin ] ||
	fail "snapshot_kind is not lvm-thin"
snap_dm=$(dmsetup info -c --noheadings -o name "/dev/$snap") || fail "no dm device for $snap"
read -r _ _ type _ dev_id <<<"$(dmsetup table "$snap_dm")"
[ "$type" = thin ] || fail "$snap is not a thin device: $(dmsetup table "$snap_dm")"
pool_dm=${vg}-pool-tpool
meta_dm=${vg}-pool_tmeta
held_root() { dmsetup status "$pool_dm" | awk '{ print $7 }'; }
[ "$(held_root)" = - ] || fail "snapfs left the pool's metadata snapshot held: $(dmsetup status "$pool_dm")"

# The snapshot's mapping, as the test reads it: byte ranges, merged.
dmsetup message "$pool_dm" 0 reserve_metadata_snap
thin_dump -m --dev-id "$dev_id" "/dev/mapper/$meta_dm" >"$TEST_TMPDIR/dump.xml" || {
	dmsetup message "$pool_dm" 0 release_metadata_snap
	fail "thin_dump failed"
}
dmsetup message "$pool_dm" 0 release_metadata_snap
want=$(python3 - "$TEST_TMPDIR/dump.xml" <<'PY'
import re, sys
x = open(sys.argv[1]).read()
bs = int(re.search(r'data_block_size="(\d+)"', x).group(1)) * 512
out = []
for m in re.finditer(r'<(range|single)_mapping ([^>]*)>', x):
    a = dict(re.findall(r'(\w+)="(\d+)"', m.group(2)))
    b = int(a.get("origin_begin", a.get("origin_block")))
    n = int(a.get("length", 1))
    s, e = b * bs, (b + n) * bs
    if out and out[-1][1] == s:
        out[-1][1] = e
    else:
        out.append([s, e])
for s, e in out:
    print(s, e)
PY
)
mapped=$(awk '{ s += $2 - $1 } END { print s + 0 }' <<<"$want")
log "the snapshot maps $mapped of $((128 << 20)) bytes"
[ "$mapped" -gt 0 ] && [ "$mapped" -lt $((16 << 20)) ] || fail "unexpected mapping: $mapped bytes"

# SEEK_DATA/SEEK_HOLE and du of the whole disk, and of the partition.
got=$(seek_map "$g/vda.raw")
[ "$got" = "$want" ] || {
	diff <(echo "$want") <(echo "$got") >&2 || true
	fail "the SEEK map of vda.raw is not the snapshot's mapping"
}
[ "$(stat -c %b "$g/vda.raw")" = $((mapped / 512)) ] ||
	fail "st_blocks of vda.raw: $(stat -c %b "$g/vda.raw"), mapped: $((mapped / 512)) sectors"
pstart=$((2048 * 512)) pend=$(((2048 + 200704) * 512))
want_part=$(awk -v s=$pstart -v e=$pend '$2 > s && $1 < e {
	a = $1 < s ? s : $1; b = $2 > e ? e : $2; print a - s, b - s }' <<<"$want")
[ "$(seek_map "$g/vda1.raw")" = "$want_part" ] || {
	diff <(echo "$want_part") <(seek_map "$g/vda1.raw") >&2 || true
	fail "the SEEK map of vda1.raw is not the snapshot's mapping of its region"
}
part_mapped=$(awk '{ s += $2 - $1 } END { print s + 0 }' <<<"$want_part")
[ "$(stat -c %b "$g/vda1.raw")" = $(((part_mapped + 511) / 512)) ] ||
	fail "st_blocks of vda1.raw: $(stat -c %b "$g/vda1.raw"), mapped: $part_mapped bytes"
[ "$(du -k "$g/vda.raw" | cut -f1)" -lt 16384 ] || fail "du of vda.raw shows no holes"

# Copies: exact bytes, and what they read from the snapshot device.
dm_node=$(basename "$(readlink -f "/dev/$snap")")
sectors_read() { awk '{ print $3 }' "/sys/block/$dm_node/stat"; }
out=$TEST_TMPDIR/out
mkdir -p "$out"
copy_reads() {
	local before
	sync
	echo 3 >/proc/sys/vm/drop_caches
	before=$(sectors_read)
	"$@"
	echo $((($(sectors_read) - before) * 512))
}
read_cp=$(copy_reads cp --sparse=auto "$g/vda.raw" "$out/vda.raw")
[ "$(sha_file "$out/vda.raw")" = "$disk_sha" ] || fail "cp --sparse=auto of vda.raw differs from the origin"
read_tar=$(copy_reads tar -C "$mnt" -cSf "$TEST_TMPDIR/thin.tar" thin/vda.raw thin/vda1.raw)
tar -C "$out" -xSf "$TEST_TMPDIR/thin.tar"
[ "$(sha_file "$out/thin/vda.raw")" = "$disk_sha" ] || fail "tar -S of vda.raw differs"
[ "$(sha_file "$out/thin/vda1.raw")" = "$part_sha" ] || fail "tar -S of vda1.raw differs"
log "mapped $mapped bytes; cp --sparse=auto read $read_cp, tar -S (disk and partition) read $read_tar"
[ "$read_cp" -le $((mapped * 12 / 10)) ] || fail "cp read $read_cp bytes for $mapped mapped"
[ "$read_tar" -le $(((mapped + part_mapped) * 12 / 10)) ] ||
	fail "tar read $read_tar bytes for $((mapped + part_mapped)) mapped"
[ "$(du -k "$out/vda.raw" | cut -f1)" -lt 16384 ] || fail "the copy of vda.raw kept no holes"
exec 3<&-
wait_snapfs_lvs $vg 0
[ "$(held_root)" = - ] || fail "the pool's metadata snapshot is held after the release"

# Another tool holds the pool's metadata snapshot: all data, no error.
dmsetup message "$pool_dm" 0 reserve_metadata_snap
add_cleanup "dmsetup message '$pool_dm' 0 release_metadata_snap 2>/dev/null || true"
exec 3<"$g/vda.raw"
[ "$(seek_map "$g/vda.raw")" = "0 $((128 << 20))" ] || fail "with the metadata snapshot taken, vda.raw is not all data"
[ "$(sha_file "$g/vda.raw")" = "$disk_sha" ] || fail "vda.raw differs with the metadata snapshot taken"
exec 3<&-
wait_snapfs_lvs $vg 0
[ "$(held_root)" != - ] || fail "snapfs released another tool's metadata snapshot"
dmsetup message "$pool_dm" 0 release_metadata_snap
! grep -E "error|warning" "$SNAPFS_LOG" || fail "snapfs logged an error or warning"
echo "thin-holes: ok"
