#!/bin/bash
# Every write attempt answers EROFS; the mount is read-only, nosuid, nodev.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate virsh fusermount3 setfattr truncate

vg=snapfs_erofs
setup_vg $vg 64
make_lv $vg disk 8M
xml=/tmp/erofs-node.xml
one_guest_xml $xml guest /dev/$vg/disk
mnt=/tmp/snapfs-erofs
snapfs_start "test://$xml" $mnt
f=$mnt/guest/vda.raw
sum_before=$(sha_file /dev/$vg/disk)

expect_erofs() {
	local out
	if out=$("$@" 2>&1); then
		fail "'$*' succeeded"
	fi
	case $out in
	*"Read-only file system"*) ;;
	*) fail "'$*' failed without EROFS: $out" ;;
	esac
}
expect_erofs sh -c ": > '$f'"
expect_erofs sh -c "echo x >> '$f'"
expect_erofs dd if=/dev/zero of="$f" bs=512 count=1 conv=notrunc
expect_erofs truncate -s 0 "$f"
expect_erofs touch "$f"
expect_erofs touch "$mnt/guest/new"
expect_erofs rm -f "$f"
expect_erofs mkdir "$mnt/guest/dir"
expect_erofs mv "$f" "$mnt/guest/other"
expect_erofs ln "$f" "$mnt/guest/link"
expect_erofs ln -s x "$mnt/guest/sym"
expect_erofs chmod 666 "$f"
expect_erofs chown 1 "$f"
expect_erofs setfattr -n user.x -v 1 "$f"
expect_erofs setfattr -x user.snapfs.origin "$f"

opts=$(awk -v m=$mnt '$5 == m { print $6 }' /proc/self/mountinfo)
for o in ro nosuid nodev; do
	case ",$opts," in *",$o,"*) ;; *) fail "mount options '$opts' lack $o" ;; esac
done
[ "$(sha_file /dev/$vg/disk)" = "$sum_before" ] || fail "the origin changed"
assert_snapfs_lvs $vg 0
echo "erofs: ok"
