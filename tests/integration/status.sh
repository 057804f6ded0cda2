#!/bin/bash
# The status view: /.snapfs-status, readable with cat, never listed (so
# rsync -a and find never copy it), makes no snapshot, and shows each held
# set: guest, disks, snapshot LVs, age, COW use, open files, consistency.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate fusermount3

vg=snapfs_status
setup_vg $vg 128
make_lv $vg web 16M
make_lv $vg db 8M
test_tmpdir
xml=$TEST_TMPDIR/node.xml
{
	echo "<node>"
	virt_domain web "$(disk_block vda /dev/$vg/web)"
	virt_domain db "$(disk_block vda /dev/$vg/db)"
	echo "</node>"
} >$xml
mnt=/tmp/snapfs-status
snapfs_start "test://$xml" $mnt -o cow_size=8M

[ -z "$(cat $mnt/.snapfs-status)" ] || fail "status shows a set before any open"
ls -A $mnt | grep -q "^\.snapfs-status" && fail "the status view is listed"
find $mnt | grep -q "/\.snapfs-status" && fail "find sees the status view"
assert_snapfs_lvs $vg 0

exec 3<$mnt/web/vda.raw 4<$mnt/web/vda.raw
# The guest writes 2 MiB: a quarter of the 8 MiB COW area, and some more.
dd if=/dev/urandom of=/dev/$vg/web bs=1M count=2 oflag=direct status=none
status=$(cat $mnt/.snapfs-status)
echo "$status"
snap=$(getfattr --absolute-names --only-values -n user.snapfs.snapshot $mnt/web/vda.raw)
grep -q "^guest: web$" <<<"$status" || fail "no guest line"
grep -q "^  open files: 2$" <<<"$status" || fail "open files"
grep -q "^  consistency: frozen$" <<<"$status" || fail "consistency"
grep -q "^  age: [0-9]*s$" <<<"$status" || fail "age"
grep -q "^  disk: vda.raw origin=$vg/web snapshot=$snap cow=[0-9]*%$" <<<"$status" || fail "disk line"
pct=$(sed -n 's/.* cow=\([0-9]*\)%$/\1/p' <<<"$status")
[ "$pct" -ge 25 ] && [ "$pct" -le 40 ] || fail "COW use $pct% for 2 MiB of 8 MiB"
grep -q "^guest: db" <<<"$status" && fail "db shown without a set"
assert_snapfs_lvs $vg 1

# Past 80%: a warning names guest, disk and the use.
dd if=/dev/urandom of=/dev/$vg/web bs=1M count=5 seek=2 oflag=direct status=none
wait_for -t 30 grep -q "guest web disk vda.raw: snapshot $snap COW area [0-9]*% full" "$SNAPFS_LOG" ||
	fail "no warning past 80%"
exec 3<&- 4<&-
wait_snapfs_lvs $vg 0
[ -z "$(cat $mnt/.snapfs-status)" ] || fail "status shows a released set"
echo "status: ok"
