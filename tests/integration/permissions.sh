#!/bin/bash
# Modes and groups: files 0440 and directories 0550 owned by root and
# gid=GROUP; with allow_other a member of the group reads, anyone else gets
# EACCES, and without allow_other other users cannot enter at all.
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvcreate fusermount3 setpriv

vg=snapfs_perm
setup_vg $vg 64
make_lv $vg disk 8M
fill_random /dev/$vg/disk
xml=/tmp/perm-node.xml
one_guest_xml $xml guest /dev/$vg/disk
mnt=/tmp/snapfs-perm
# FUSE's allow_other for root needs nothing in /etc/fuse.conf.
snapfs_start "test://$xml" $mnt -o allow_other,gid=4242
as() { setpriv --reuid="$1" --regid="$2" --clear-groups -- "${@:3}"; }

[ "$(stat -c '%a %u %g' $mnt/guest/vda.raw)" = "440 0 4242" ] || fail "file mode"
[ "$(stat -c '%a %u %g' $mnt/guest)" = "550 0 4242" ] || fail "dir mode"
member_sha=$(as 1000 4242 sha256sum $mnt/guest/vda.raw | cut -d' ' -f1)
[ "$member_sha" = "$(sha_file /dev/$vg/disk)" ] || fail "a member of gid cannot read"
if out=$(as 1000 1000 cat $mnt/guest/vda.raw 2>&1 >/dev/null); then
	fail "a user outside the group read the disk"
fi
case $out in *"Permission denied"*) ;; *) fail "expected EACCES, got: $out" ;; esac
if out=$(as 1000 1000 ls $mnt/guest 2>&1); then
	fail "a user outside the group listed a guest"
fi
case $out in *"Permission denied"*) ;; *) fail "expected EACCES for ls, got: $out" ;; esac
wait_snapfs_lvs $vg 0
snapfs_stop $mnt

# Without allow_other, FUSE keeps every other user out, even group members.
snapfs_start "test://$xml" $mnt -o gid=4242
if as 1000 4242 ls $mnt >/dev/null 2>&1; then
	fail "another user entered a mount without allow_other"
fi
assert_snapfs_lvs $vg 0
echo "permissions: ok"
