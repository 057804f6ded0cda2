#!/bin/bash
# The test machine (natively or tests/vm/run-test's VM) has what snapfs
# needs: loop devices, LVM with udev, device-mapper snapshots that keep the
# old data, and FUSE with a working kernel <-> daemon round trip.

# shellcheck source=tests/functions.sh
. "$(dirname -- "$0")/../functions.sh"

requires_root
requires losetup lvcreate lvremove lvs lvchange dmsetup dd cmp sha256sum perl mount umount

vg=snapfs_smoke_$$
setup_vg "$vg" 52 3
[ ${#SETUP_VG_PVS[@]} -eq 3 ] || fail "setup_vg made ${#SETUP_VG_PVS[@]} PVs, not 3"
[ "$(vgs --noheadings -o pv_count -- "$vg" | tr -d ' ')" = 3 ] || fail "VG $vg has not 3 PVs"

# ---- an LV with a known pattern, spanning two PVs ---------------------------
lvcreate -q -y -L 64M -n origin -- "$vg" >/dev/null
origin=/dev/$vg/origin
wait_for test -b "$origin"
[ "$(blockdev --getsize64 "$origin")" = $((64 << 20)) ] || fail "$origin is not 64 MiB"
[ "$(lvs --noheadings -o seg_count -- "$vg/origin" | tr -d ' ')" -ge 2 ] ||
	fail "$vg/origin does not span PVs"

# 64 MiB files whose 32-bit words are all different, in a pattern and from
# one pattern to the other: the word at index w of pattern p is p << 24 | w.
test_tmpdir
for p in 1 2; do
	perl -e 'my $w = pack("N*", 0 .. 262143);
	         print $w | pack("N", $ARGV[0] << 24 | $_ << 18) x 262144 for 0 .. 63' -- "$p" \
		>"$TEST_TMPDIR/pattern$p"
done
cmp -s "$TEST_TMPDIR/pattern1" "$TEST_TMPDIR/pattern2" && fail "the two patterns are the same"
same() { cmp -s -- "$1" "$TEST_TMPDIR/pattern$2"; } # DEV N: DEV holds pattern N

dd if="$TEST_TMPDIR/pattern1" of="$origin" bs=1M oflag=direct status=none
same "$origin" 1 || fail "the origin does not read back what was written"

# ---- a read-only snapshot keeps it ------------------------------------------
# (room for every chunk of the origin: it is all overwritten)
lvcreate -q -y --snapshot --permission r -L 72M -n snap -- "$vg/origin" >/dev/null
snap=/dev/$vg/snap
wait_for test -b "$snap"
attr=$(lvs --noheadings -o lv_attr -- "$vg/snap" | tr -d ' ')
case $attr in
sr*) ;;
*) fail "$vg/snap has attributes '$attr', not a read-only snapshot (sr...)" ;;
esac
dmsetup table "$vg-snap" | grep -qw snapshot || fail "no dm snapshot target under $vg/snap"

dd if="$TEST_TMPDIR/pattern2" of="$origin" bs=1M oflag=direct status=none
same "$origin" 2 || fail "the origin was not overwritten"
same "$snap" 1 || fail "the snapshot lost the old data"
[ "$(sha256sum <"$snap")" = "$(sha256sum <"$TEST_TMPDIR/pattern1")" ] ||
	fail "the snapshot's sha256 is not the old data's"
if dd if=/dev/zero of="$snap" bs=4k count=1 oflag=direct status=none 2>/dev/null; then
	fail "writing to the read-only snapshot succeeded"
fi

# ---- the helpers see tags; lvremove cleans up -------------------------------
no_snapfs_lvs "$vg"
lvchange -q --addtag snapfs -- "$vg/snap" >/dev/null
if (no_snapfs_lvs "$vg") 2>/dev/null; then
	fail "no_snapfs_lvs missed an LV tagged snapfs"
fi
lvremove -q -y -- "$vg/snap" >/dev/null
wait_for test ! -e "$snap"
lvs -- "$vg/snap" >/dev/null 2>&1 && fail "$vg/snap still listed after lvremove"
no_snapfs_lvs "$vg"
same "$origin" 2 || fail "the origin changed on lvremove"

# ---- FUSE: a one-file file system served by a tiny Perl daemon --------------
[ -c /dev/fuse ] || fail "no /dev/fuse"
exec 3<>/dev/fuse || fail "cannot open /dev/fuse"
exec 3>&-

mnt=$TEST_TMPDIR/fuse
mkdir "$mnt"
# It speaks the kernel's FUSE protocol (linux/fuse.h) on /dev/fuse: INIT,
# LOOKUP, GETATTR, OPEN, READ, FLUSH, RELEASE; ENOSYS for the rest.  It
# mounts with mount(8) -i (no helper) and ends when the file system is
# unmounted.
# shellcheck disable=SC2016 # Perl, not shell
fuse_daemon='
use strict; use warnings; use Fcntl;
my ($dir, $text) = @ARGV;
open(my $fh, "+<", "/dev/fuse") or die "open /dev/fuse: $!";
fcntl($fh, F_SETFD, 0) or die "fcntl: $!";
my $fd = fileno($fh);
system("mount", "-i", "-t", "fuse", "-o",
       "fd=$fd,rootmode=40000,user_id=0,group_id=0", "snapfs-smoke", $dir) == 0
	or die "mount failed\n";
sub attr { my ($ino) = @_;
	my ($mode, $size, $nlink) = $ino == 1 ? (040755, 0, 2) : (0100444, length $text, 1);
	pack("Q<6 V10", $ino, $size, 1, 0, 0, 0, 0, 0, 0, $mode, $nlink, 0, 0, 0, 4096, 0) }
while (1) {
	my $n = sysread($fh, my $req, 1 << 18);
	last unless $n;    # ENODEV once unmounted
	my ($len, $op, $unique, $node) = unpack("V V Q< Q<", $req);
	my $arg = substr($req, 40);
	my ($err, $out) = (0, "");
	if    ($op == 26) { $out = pack("V4 v2 V2 v2 V", 7, 31, 65536, 0, 16, 12, 65536, 1, 0, 0, 0) . "\0" x 28 }
	elsif ($op == 1)  { if (unpack("Z*", $arg) eq "hello") { $out = pack("Q<4 V2", 2, 0, 1, 1, 0, 0) . attr(2) } else { $err = -2 } }
	elsif ($op == 3)  { $out = pack("Q< V2", 1, 0, 0) . attr($node) }
	elsif ($op == 14) { $out = pack("Q< V2", 0, 0, 0) }
	elsif ($op == 15) { my ($fh_, $off, $size) = unpack("Q< Q< V", $arg);
	                    $out = $off < length $text ? substr($text, $off, $size) : "" }
	elsif ($op == 18 || $op == 25) { }
	elsif ($op == 2 || $op == 36 || $op == 42) { next }    # FORGET, INTERRUPT, BATCH_FORGET: no reply
	else { $err = -38 }
	syswrite($fh, pack("V l< Q<", 16 + length $out, $err, $unique) . $out) or die "reply: $!";
}
'
text="hello from FUSE in $(uname -r)"
timeout 120 perl -e "$fuse_daemon" "$mnt" "$text" &
daemon=$!
add_cleanup "! grep -q ' $mnt fuse ' /proc/mounts || umount -l '$mnt'; kill $daemon 2>/dev/null || true"
wait_for grep -q " $mnt fuse " /proc/mounts
[ "$(stat -c %F "$mnt/hello")" = "regular file" ] || fail "stat over FUSE is wrong"
[ "$(cat "$mnt/hello")" = "$text" ] || fail "read over FUSE returned the wrong data"
[ ! -e "$mnt/nothing" ] || fail "FUSE lookup of a missing file succeeded"
umount "$mnt"
wait "$daemon" || fail "the FUSE daemon failed (status $?)"
grep -q " $mnt fuse " /proc/mounts && fail "the FUSE mount is still there"

log "ok: kernel $(uname -r), LVM snapshot and FUSE work"
