# shellcheck shell=bash
# Helpers for the tests of file-backed disks (reflink clones); sourced after
# functions.sh and lib-snapfs.sh.
#
# These tests run natively ("# run-test: native" in their head): they need
# no device-mapper, only loop devices, FUSE and the kernel's XFS, btrfs,
# ext4 and tmpfs.  Everything they make lives under the test's scratch
# directory and is undone at exit.

# ---- filesystems ------------------------------------------------------------

# make_test_fs TYPE NAME SIZE_MB [MKFS_OPTION...]: a filesystem of TYPE
# (xfs, btrfs, ext4 or tmpfs) of SIZE_MB MiB, mounted on $TEST_TMPDIR/NAME,
# which is left in TEST_FS_DIR (and its loop device in TEST_FS_DEV, "" for
# tmpfs).  All but tmpfs sit on a loop device over a sparse file in the
# scratch directory.  XFS is made with reflink on unless MKFS_OPTIONs are
# given (mkfs.xfs wants 300 MB at least).  At exit it is unmounted, the loop
# device detached and the file removed; an unmount that fails (something
# still holds a file of it) fails the test.
# shellcheck disable=SC2034 # the results, for the tests
TEST_FS_DIR=
TEST_FS_DEV=
make_test_fs() {
	[ $# -ge 3 ] || fail "usage: make_test_fs TYPE NAME SIZE_MB [MKFS_OPTION...]"
	local type=$1 name=$2 size=$3 img dir
	shift 3
	requires_root
	requires losetup truncate mount umount findmnt
	test_tmpdir
	dir=$TEST_TMPDIR/$name
	mkdir -p "$dir"
	TEST_FS_DIR=$dir
	TEST_FS_DEV=
	if [ "$type" = tmpfs ]; then
		mount -t tmpfs -o "size=${size}m" "snapfs-$TEST_NAME" "$dir" || fail "mounting tmpfs on $dir"
		add_cleanup "umount '$dir'"
		return 0
	fi
	requires "mkfs.$type"
	if [ "$type" = xfs ] && [ $# -eq 0 ]; then
		set -- -m reflink=1
	fi
	img=$TEST_TMPDIR/$name.img
	truncate -s "${size}M" -- "$img"
	add_cleanup "rm -f -- '$img'"
	TEST_FS_DEV=$(losetup --find --show -- "$img") || fail "losetup failed on $img"
	add_cleanup "losetup -d '$TEST_FS_DEV'"
	case $type in
	xfs) mkfs.xfs -q -f "$@" "$TEST_FS_DEV" ;;
	btrfs) mkfs.btrfs -q -f "$@" "$TEST_FS_DEV" >/dev/null ;;
	ext4) mkfs.ext4 -q -F "$@" "$TEST_FS_DEV" ;;
	*) fail "make_test_fs: unknown type $type" ;;
	esac || fail "mkfs.$type $* failed on $TEST_FS_DEV"
	mount -t "$type" "$TEST_FS_DEV" "$dir" || fail "mounting $TEST_FS_DEV ($type) on $dir"
	# Unmount lazily if it is busy, so the loop device still goes, but say so.
	add_cleanup "umount '$dir' || { umount -l '$dir'; false; }"
	[ "$(findmnt -n -o FSTYPE --mountpoint "$dir")" = "$type" ] ||
		fail "$dir is not $type but $(findmnt -n -o FSTYPE --mountpoint "$dir")"
}

# fs_free FS_DIR: the free space of the filesystem at FS_DIR in bytes, as an
# unprivileged writer sees it (f_bavail * f_frsize), after a syncfs, so that
# what was written or freed is accounted (btrfs frees at a commit).
fs_free() {
	sync -f "$1"
	echo $(($(stat -f -c '%a * %S' "$1")))
}

# fs_used_inodes FS_DIR: inodes in use, unnamed ones too: f_files - f_ffree,
# or on btrfs (whose statfs has no inode counts) the inode items of its
# filesystem tree as committed, read from the device.
fs_used_inodes() {
	local dev
	sync -f "$1"
	if [ "$(stat -f -c %T "$1")" != btrfs ]; then
		echo $(($(stat -f -c '%c - %d' "$1")))
		return
	fi
	dev=$(findmnt -n -o SOURCE --mountpoint "$1") || fail "no device mounted on $1"
	blockdev --flushbufs "$dev"
	btrfs inspect-internal dump-tree -t fs "$dev" | grep -c ' INODE_ITEM 0) itemoff '
}

fs_used_inodes_is() { [ "$(fs_used_inodes "$1")" = "$2" ]; }

# fs_free_near FS_DIR BYTES SLACK: true when the free space of FS_DIR is
# within SLACK bytes of BYTES (for wait_for).
fs_free_near() {
	local free
	free=$(fs_free "$1")
	[ "$free" -ge $(($2 - $3)) ] && [ "$free" -le $(($2 + $3)) ]
}

# ---- guests -----------------------------------------------------------------

# disk_file TARGET PATH [FORMAT]: a file-backed disk (raw unless FORMAT).
disk_file() {
	printf "      <disk type='file' device='disk'><driver name='qemu' type='%s'/><source file='%s'/><target dev='%s' bus='virtio'/></disk>\n" \
		"${3:-raw}" "$2" "$1"
}

# node_xml FILE NAME DISKS_XML [NAME DISKS_XML...]: a test-driver node with
# one guest per NAME, each with the disks given (disk_file, disk_block).
node_xml() {
	local file=$1
	shift
	[ $(($# % 2)) = 0 ] || fail "usage: node_xml FILE NAME DISKS_XML [NAME DISKS_XML...]"
	{
		echo "<node>"
		while [ $# -gt 0 ]; do
			virt_domain "$1" "$2"
			shift 2
		done
		echo "</node>"
	} >"$file"
	add_cleanup "rm -f '$file'"
}

# random_file PATH SIZE_MB: a file of random bytes, on disk, written 1 MiB
# at a time with O_DSYNC: btrfs then keeps each MiB an extent of its own, so
# a whole MiB the guest rewrites later frees a whole extent once no clone
# shares it (btrfs frees an extent only when all of it is unused).
random_file() {
	dd if=/dev/urandom of="$1" bs=1M count="$2" oflag=dsync status=none ||
		fail "writing $1"
}

# ---- what snapfs holds and logs ---------------------------------------------

# clone_count FS_DIR: how many clones snapfs holds on the filesystem mounted
# at FS_DIR: the unnamed files there ("DIR/#INODE (deleted)") it has
# descriptors of, each counted once however many descriptors it has.
clone_count() {
	local fd target
	declare -A seen=()
	for fd in /proc/"$SNAPFS_PID"/fd/*; do
		target=$(readlink "$fd" 2>/dev/null) || continue
		[[ $target =~ ^"$1"/(.*/)?#[0-9]+' (deleted)'$ ]] && seen[$target]=1
	done
	echo "${#seen[@]}"
}

# clone_blocks FS_DIR: the 512-byte blocks the clones snapfs holds on FS_DIR
# have allocated, summed (a dropped clone has none).
clone_blocks() {
	local fd target n=0
	declare -A seen=()
	for fd in /proc/"$SNAPFS_PID"/fd/*; do
		target=$(readlink "$fd" 2>/dev/null) || continue
		[[ $target =~ ^"$1"/(.*/)?#[0-9]+' (deleted)'$ ]] || continue
		[ -z "${seen[$target]-}" ] || continue
		seen[$target]=1
		n=$((n + $(stat -L -c %b "$fd")))
	done
	echo "$n"
}

clone_count_is() { [ "$(clone_count "$1")" = "$2" ]; }

# assert_clones FS_DIR N: snapfs holds N clones on FS_DIR right now.
assert_clones() {
	local got
	got=$(clone_count "$1")
	[ "$got" = "$2" ] || {
		ls -l /proc/"$SNAPFS_PID"/fd >&2 || true
		fail "expected $2 clone(s) held on $1, found $got"
	}
}

# wait_clones FS_DIR N: a release reaches snapfs asynchronously; wait
# (bounded) for the count of clones on FS_DIR to settle at N.
wait_clones() {
	local patience=30
	[ "${SNAPFS_VALGRIND:-}" != 1 ] || patience=300
	wait_for -t $patience clone_count_is "$1" "$2" || assert_clones "$1" "$2"
}

# sets_created GUEST: how many snapshot sets snapfs has made for GUEST.
sets_created() {
	grep -cF "guest $1: snapshot set created in " "$SNAPFS_LOG" || true
}

# sets_removed GUEST: how many of them it has removed.
sets_removed() {
	grep -cF "guest $1: snapshot set removed in " "$SNAPFS_LOG" || true
}

sets_removed_is() { [ "$(sets_removed "$1")" = "$2" ]; }

# re_escape STRING: STRING as a literal in an extended regular expression.
re_escape() {
	printf '%s' "$1" | sed 's/[][\.*^$+?(){}|/]/\\&/g'
}

# ---- partition tables -------------------------------------------------------

# part_list IMAGE: one line per entry of IMAGE's partition table, as sfdisk
# --json reports it: "NUMBER START_BYTES SIZE_BYTES TYPE" (TYPE as sfdisk
# says it: 83, 5, or a GPT type GUID).
part_list() {
	sfdisk --json -- "$1" | python3 -c '
import json, re, sys
t = json.load(sys.stdin)["partitiontable"]
ss = t.get("sectorsize", 512)
for p in t.get("partitions", []):
    n = re.search(r"([0-9]+)$", p["node"]).group(1)
    print(n, p["start"] * ss, p["size"] * ss, p["type"])
' || fail "sfdisk --json $1"
}

# is_extended TYPE: an MBR extended partition (a container, no file of its own).
is_extended() {
	case ${1,,} in 5 | f | 85) return 0 ;; *) return 1 ;; esac
}

# ---- reads ------------------------------------------------------------------

# read_errno FD OFFSET LENGTH: pread LENGTH bytes at OFFSET of the calling
# shell's descriptor FD; prints "ok" or the errno's name (EIO).
read_errno() {
	python3 - "$1" "$2" "$3" <<'PY'
import errno, os, sys
try:
    os.pread(int(sys.argv[1]), int(sys.argv[3]), int(sys.argv[2]))
except OSError as e:
    print(errno.errorcode[e.errno])
else:
    print("ok")
PY
}

# sha_fd_at FD OFFSET LENGTH: sha256 of LENGTH bytes at OFFSET of the calling
# shell's descriptor FD (pread: the descriptor's position is left alone).
sha_fd_at() {
	python3 - "$1" "$2" "$3" <<'PY'
import hashlib, os, sys
fd, off, left = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
h = hashlib.sha256()
while left > 0:
    b = os.pread(fd, min(left, 1 << 20), off)
    if not b:
        break
    h.update(b)
    off += len(b)
    left -= len(b)
print(h.hexdigest())
PY
}

# expect_erofs CMD...: CMD fails, and with EROFS.
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
