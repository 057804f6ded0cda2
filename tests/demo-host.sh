#!/bin/bash
# The demo host: a loop-backed VG, two libvirt guests (libvirt's test
# driver), ext4 filesystems with a few files; snapfs mounted over them.
# Run by tests/demo.sh, natively or inside the throw-away VM.
. "$(dirname -- "$0")/functions.sh" || exit 99
. "$(dirname -- "$0")/lib-snapfs.sh" || exit 99
requires lvcreate sfdisk mkfs.ext4 debugfs fusermount3

say() { printf '\n\033[1m### %s\033[0m\n' "$*"; }
run() {
	local a line='$'
	for a in "$@"; do
		case $a in *[[:space:]\'*]*) line+=" '$a'" ;; *) line+=" $a" ;; esac
	done
	printf '%s\n' "$line"
	"$@"
}

vg=demo
setup_vg $vg 256 >/dev/null
make_lv $vg web-disk 64M
make_lv $vg db-disk 64M

# ext4 images made from directories, written at the partitions' offsets.
work=$(mktemp -d)
add_cleanup "rm -rf $work"
mkdir -p $work/web/etc $work/web/var/www $work/db/data
echo "web1" >$work/web/etc/hostname
echo "<h1>hello from web1</h1>" >$work/web/var/www/index.html
echo "db1" >$work/db/etc-hostname
seq 1 1000 >$work/db/data/table.csv

# web: MBR, a primary and an extended partition holding one logical.
sfdisk -q --no-reread /dev/$vg/web-disk 2>/dev/null <<'P'
label: dos
start=2048, size=32768, type=83
start=36864, size=90112, type=5
start=38912, size=86016, type=83
P
mkfs.ext4 -q -L web-root -d $work/web $work/web.img 40M >/dev/null
dd if=$work/web.img of=/dev/$vg/web-disk bs=1M seek=$((38912 * 512)) oflag=seek_bytes conv=notrunc status=none
# db: GPT with one partition.
sfdisk -q --no-reread /dev/$vg/db-disk 2>/dev/null <<'P'
label: gpt
start=2048, size=120832, name=data
P
mkfs.ext4 -q -L db-data -d $work/db $work/db.img 59M >/dev/null
dd if=$work/db.img of=/dev/$vg/db-disk bs=1M seek=$((2048 * 512)) oflag=seek_bytes conv=notrunc status=none

xml=$work/host.xml
{
	echo "<node>"
	virt_domain web1 "$(disk_block vda /dev/$vg/web-disk)"
	virt_domain db1 "$(disk_block vda /dev/$vg/db-disk)"
	echo "</node>"
} >$xml

mnt=/srv/snapfs
say "snapfs test://$xml $mnt"
snapfs_start "test://$xml" $mnt
say "the tree: one directory per guest, one file per disk and per partition"
run ls -l $mnt $mnt/web1 $mnt/db1
say "what libblkid sees in web1's logical partition"
run getfattr --absolute-names -d -m - $mnt/web1/vda5.raw
say "copy the partition out (this opens it: a snapshot is taken and dropped)"
run cp $mnt/web1/vda5.raw $work/web1-root.img
say "its files, read in userspace with debugfs (no kernel mount)"
run debugfs -R 'ls -l /' $work/web1-root.img
run debugfs -R 'cat /var/www/index.html' $work/web1-root.img
say "while a file is open, its guest's snapshot LV exists"
exec 3<$mnt/db1/vda1.raw
run lvs -o lv_name,origin,lv_attr,lv_tags $vg
exec 3<&-
wait_snapfs_lvs $vg 0
say "after the last close, it is gone"
run lvs -o lv_name,origin,lv_attr $vg
say "unmount"
snapfs_stop $mnt
run lvs -o lv_name,origin $vg
echo
echo "demo: done"
