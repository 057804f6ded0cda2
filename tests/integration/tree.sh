#!/bin/bash
# The tree: guest directories (escaped names), disk images, one file per
# partition (MBR primaries and logicals, GPT entries), qcow2 kept as is,
# file-backed disks and cdroms left out.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate sfdisk virsh fusermount3 getfattr

vg=snapfs_tree
setup_vg $vg 256
make_lv $vg mbr 32M
make_lv $vg gpt 32M
make_lv $vg plain 16M
make_lv $vg qcow 16M
make_lv $vg pooled 8M
make_lv $vg long 8M
sfdisk -q --no-reread /dev/$vg/mbr <<'P'
label: dos
start=2048, size=8192, type=83
start=10240, size=8192, type=7
start=18432, size=40960, type=5
start=20480, size=8192, type=83
start=30720, size=8192, type=82
start=40960, size=8192, type=83
P
sfdisk -q --no-reread /dev/$vg/gpt <<'P'
label: gpt
start=2048, size=4096, name=one
start=8192, size=8192, name=two
start=20480, size=8192, name=three
P
truncate -s 1M /tmp/file-disk.img
add_cleanup "rm -f /tmp/file-disk.img"

long=$(printf 'x%.0s' $(seq 300))
xml=/tmp/tree-node.xml
add_cleanup "rm -f $xml"
{
	echo "<node>"
	virt_domain alpha \
		"$(disk_block vda /dev/$vg/mbr; disk_block vdb /dev/mapper/$vg-gpt)"
	virt_domain beta \
		"$(disk_block vda "$(readlink -f /dev/$vg/plain)"; disk_block vdb /dev/$vg/qcow qcow2
		  echo "<disk type='file' device='disk'><source file='/tmp/file-disk.img'/><target dev='vdc'/></disk>"
		  echo "<disk type='block' device='cdrom'><source dev='/dev/$vg/plain'/><target dev='hdc'/></disk>"
		  echo "<disk type='volume' device='disk'><source pool='vgpool' volume='pooled'/><target dev='vdd'/></disk>")"
	virt_domain '.hidden' "$(disk_block sdb /dev/$vg/plain)"
	virt_domain '-rf %x&#10;y' ""
	virt_domain "$long" "$(disk_block vda /dev/$vg/long)"
	cat <<POOL
  <pool type='logical'>
    <name>vgpool</name>
    <uuid>35bb2ad9-388a-cdfe-461a-b8907f6e53fe</uuid>
    <source><name>$vg</name></source>
    <target><path>/dev/$vg</path></target>
    <volume type='block'><name>pooled</name><capacity>8388608</capacity></volume>
  </pool>
POOL
	echo "</node>"
} >"$xml"

mnt=/tmp/snapfs-tree
snapfs_start "test://$xml" $mnt -o debug_areas=guests

got=$(cd $mnt && ls -1)
want_long="$(printf 'x%.0s' $(seq 238))~"
[ "$(echo "$got" | grep -c .)" = 5 ] || fail "expected 5 guest directories, got: $got"
for d in alpha beta '%2Ehidden' '%2Drf %25x%0Ay'; do
	[ -d "$mnt/$d" ] || fail "no directory '$d' in: $got"
done
echo "$got" | grep -q "^$want_long[0-9a-f]\{16\}\$" || fail "long name not cut with a hash: $got"

listing() { (cd "$mnt/$1" && ls -1 | tr '\n' ' '); }
[ "$(listing alpha)" = "domain.xml vda.raw vda1.raw vda2.raw vda5.raw vda6.raw vda7.raw vdb.raw vdb1.raw vdb2.raw vdb3.raw " ] ||
	fail "alpha: $(listing alpha)"
[ "$(listing beta)" = "domain.xml vda.raw vdb.qcow2 vdd.raw " ] || fail "beta: $(listing beta)"
[ "$(listing '%2Ehidden')" = "domain.xml sdb.raw " ] || fail "hidden: $(listing '%2Ehidden')"
[ "$(listing '%2Drf %25x%0Ay')" = "domain.xml " ] || fail "dash: $(listing '%2Drf %25x%0Ay')"

# Sizes are exact, blocks agree, 1 MiB blksize, modes and owner.
[ "$(stat -c %s $mnt/alpha/vda.raw)" = $((32 << 20)) ] || fail "vda.raw size"
[ "$(stat -c %s $mnt/alpha/vda5.raw)" = $((8192 * 512)) ] || fail "vda5.raw size"
[ "$(stat -c %s $mnt/alpha/vdb1.raw)" = $((4096 * 512)) ] || fail "vdb1.raw size"
[ "$(stat -c '%b %B' $mnt/alpha/vda1.raw)" = "8192 512" ] || fail "st_blocks"
[ "$(stat -c %o $mnt/alpha/vda.raw)" = 1048576 ] || fail "st_blksize $(stat -c %o $mnt/alpha/vda.raw)"
[ "$(stat -c '%a %u %g' $mnt/alpha/vda.raw)" = "440 0 0" ] || fail "file mode/owner"
[ "$(stat -c '%a %u' $mnt/alpha)" = "550 0" ] || fail "dir mode"

# A cold listing (readdirplus: names with their attributes) shows the same
# sizes as stat; a file keeps its inode number while it is known.
sync
echo 3 >/proc/sys/vm/drop_caches
[ "$(ls -ln $mnt/alpha | awk '$NF == "vda5.raw" { print $5 }')" = $((8192 * 512)) ] ||
	fail "vda5.raw size in a listing: $(ls -ln $mnt/alpha)"
[ "$(ls -ln $mnt | awk '$NF == "alpha" { print $1 }')" = dr-xr-x--- ] || fail "alpha in a listing"
ino=$(stat -c %i $mnt/alpha/vda.raw)
[ "$(stat -c %i $mnt/alpha/vda.raw)" = "$ino" ] || fail "inode number changed"
[ "$(stat -c %i $mnt/alpha/vda1.raw)" != "$ino" ] || fail "two files share an inode number"
# Only user.* attributes: the others are not supported, not just absent.
out=$(getfattr --absolute-names -n security.selinux $mnt/alpha/vda.raw 2>&1) &&
	fail "security.selinux answered: $out"
case $out in *"Operation not supported"*) ;; *) fail "security.selinux: $out" ;; esac

# domain.xml is the guest's inactive definition.
grep -q "<name>alpha</name>" $mnt/alpha/domain.xml || fail "domain.xml content"

# Attributes from the partition table and libblkid; no snapshot yet.
[ "$(getfattr --absolute-names --only-values -n user.snapfs.origin $mnt/alpha/vda.raw)" = "$vg/mbr" ] ||
	fail "origin xattr"
[ "$(getfattr --absolute-names --only-values -n user.snapfs.start $mnt/alpha/vda6.raw)" = $((30720 * 512)) ] ||
	fail "start xattr"
[ "$(getfattr --absolute-names --only-values -n user.snapfs.type $mnt/alpha/vda6.raw)" = 0x82 ] ||
	fail "type xattr: $(getfattr --absolute-names --only-values -n user.snapfs.type $mnt/alpha/vda6.raw)"
[ "$(getfattr --absolute-names --only-values -n user.snapfs.format $mnt/beta/vdb.qcow2)" = qcow2 ] ||
	fail "format xattr"
getfattr --absolute-names -n user.snapfs.snapshot $mnt/alpha/vda.raw 2>/dev/null && fail "snapshot xattr without a set"
assert_snapfs_lvs $vg 0

# The log names what was left out and why (debug areas on).
snapfs_stop $mnt
grep -q "vdc" "$SNAPFS_LOG" || fail "file-backed disk not logged"
echo "tree: ok"
