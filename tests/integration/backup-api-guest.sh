#!/bin/bash
# Running guests that write without pause, served through libvirt's backup
# API: a real qemu guest (TCG) under a private libvirtd writes numbered
# records to partition 1 of a raw disk on ext4 and to the whole of a qcow2
# linked clone there (tests/guest/mkguest).  Checked through snapfs:
#  - the files of one set, read while the guest rewrites every slot, hold
#    one instant of both disks together (tests/guest/records.py), the
#    instant of the open; the partition file is its disk's region at
#    sfdisk's offsets; one backup job; after release no job, scratch file or
#    socket; the guest never sees an I/O error;
#  - a scratch filesystem too small for what a second guest overwrites:
#    snapfs ends the job when its free space falls under scratch_reserve=,
#    the reader gets EIO, the log says why, and the guest goes on writing
#    with no I/O error (qemu 7.2 would fail the guest's writes once the
#    scratch file could not grow).
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
requires libvirtd virsh unshare qemu-system-x86_64 qemu-img sfdisk fusermount3 mkfs.ext4 python3
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
. "$(dirname -- "$0")/../lib-guest.sh" || exit 99
in_private_namespace "$@"

v() { virsh -q -c qemu:///system "$@"; }
scratch_files() { find "$scratch" -name 'snapfs-*' | wc -l; }
no_scratch_files() { [ "$(scratch_files)" = 0 ]; }

slots=64
ndev=2
wrap=$((slots * ndev))
every=16
mib=$((1 << 20))

start_private_libvirtd
guest_boot_files
make_test_fs ext4 ext4 200
fs=$TEST_FS_DIR
# Scratch space for the copies qemu makes: 24 MiB, 12 of them the reserve.
make_test_fs tmpfs scratch 24
scratch=$TEST_FS_DIR

# web: vda raw with an MBR (records in vda1), vdb a qcow2 linked clone.
truncate -s 24M "$fs/web-vda.img"
sfdisk -q "$fs/web-vda.img" <<<'start=2048, size=16384, type=83' || fail "sfdisk"
qemu-img create -q -f qcow2 "$fs/base.qcow2" 24M
qemu-io -f qcow2 -c 'write -P 0x5a 8M 1M' "$fs/base.qcow2" >/dev/null || fail "qemu-io"
qemu-img create -q -f qcow2 -b "$fs/base.qcow2" -F qcow2 "$fs/web-vdb.qcow2"
guest_xml web "$(disk_file vda "$fs/web-vda.img")
$(disk_file vdb "$fs/web-vdb.qcow2" qcow2)" \
	"snapfs_rec=vda1,vdb snapfs_slots=$slots snapfs_every=$every" >"$TEST_TMPDIR/web.xml"
guest_start web
guest_wait_seq web $((wrap + every))

mnt=$TEST_TMPDIR/mnt
snapfs_start qemu:///system "$mnt" -o scratch_dir="$scratch",scratch_reserve=12M,linger=0

# ---- one instant of both disks, while the guest writes ------------------------
before=$(guest_seq web)
exec 3<"$mnt/web/vda1.raw"
after=$(guest_seq web)
[ "$(guest_job web)" = Unbounded ] || fail "no backup job for web: $(v domjobinfo web)"
[ "$(v domjobinfo web | grep -c 'Job type')" = 1 ] || fail "web has more than one job"
[ "$(getfattr --absolute-names --only-values -n user.snapfs.snapshot_kind "$mnt/web/vdb.raw")" = \
	libvirt-backup ] || fail "vdb.raw is not served through the backup API"
# Every slot rewritten since the open: a copy of any later instant is torn.
guest_wait_seq web $((after + wrap + every))
for f in vda vda1 vdb; do
	cp --sparse=never "$mnt/web/$f.raw" "$TEST_TMPDIR/$f.copy" || fail "cp $f.raw"
done
guest_records_check consistent "$TEST_TMPDIR/vda1.copy" "$TEST_TMPDIR/vdb.copy" \
	--slots "$slots" --offset "$mib" --offset "$mib"
read -r first last < <(guest_records_window)
[ "$((last - first + 1))" = "$wrap" ] || fail "the window is $first..$last, not $wrap records"
# The guest reports record S after writing it; the next report is `every` on.
[ "$last" -ge "$before" ] && [ "$last" -lt $((after + every)) ] ||
	fail "the set holds records up to $last, not of the instant of the open ($before..$((after + every - 1)))"
# The same disk and instant through the whole-disk file.
read -r n start len _ < <(part_list "$fs/web-vda.img")
[ "$(sha_at "$TEST_TMPDIR/vda.copy" "$start" "$len")" = "$(sha_file "$TEST_TMPDIR/vda1.copy")" ] ||
	fail "vda$n.raw differs from vda.raw at $start"
[ "$(sha_at "$TEST_TMPDIR/vda.copy" 0 512)" = "$(sha_at "$fs/web-vda.img" 0 512)" ] ||
	fail "vda.raw's MBR differs"
guest_writes web
guest_blk_clean web
exec 3<&-
wait_for -t 30 guest_no_job web || fail "web's job outlived its set: $(v domjobinfo web)"
[ "$(scratch_files)" = 0 ] || fail "scratch files left: $(ls -l "$scratch")"
sock=$(sed -n 's/^snapfs: guest web: backup job started, exported at //p' "$SNAPFS_LOG")
[ -n "$sock" ] && [ ! -e "$sock" ] && [ ! -e "$(dirname "$sock")" ] || fail "socket left: $sock"
v destroy web >/dev/null

# ---- the scratch filesystem fills: the job ends, never the guest's writes ---------
# fill writes records over 32 MiB of data (qemu copies no holes), more than
# the 24 MiB of scratch space.
random_file "$fs/fill-vda.img" 40
guest_xml fill "$(disk_file vda "$fs/fill-vda.img")" \
	"snapfs_rec=vda snapfs_slots=8192 snapfs_every=256" >"$TEST_TMPDIR/fill.xml"
guest_start fill
# Listed as running once the catalog is older than the cache time.
wait_for -t 30 test -e "$mnt/fill/vda.raw" || fail "fill's disk is not listed: $(ls "$mnt/fill")"
exec 3<"$mnt/fill/vda.raw"
[ "$(guest_job fill)" = Unbounded ] || fail "no backup job for fill"
[ "$(read_errno 3 0 65536)" = ok ] || fail "a read before the scratch space ran short"
wait_for -t 240 grep -qE "guest fill disk vda.raw: its backup job ended: only [0-9]* MiB free for scratch files in $(re_escape "$scratch")" "$SNAPFS_LOG" ||
	fail "the job was not ended when the scratch space ran short ($(df -h "$scratch" | tail -n 1))"
[ "$(read_errno 3 $((8 * mib)) 65536)" = EIO ] || fail "a read after the job ended did not fail"
wait_for -t 30 guest_no_job fill || fail "fill's job is still there: $(v domjobinfo fill)"
# The guest goes on; qemu never failed one of its writes.
guest_writes fill
guest_blk_clean fill
! grep -q '^snapfs-guest: error' "$(guest_console fill)" || fail "the guest saw an error"
grep -q "scratch_used=.*export=ended" "$mnt/.snapfs-status" ||
	fail "status: $(cat "$mnt/.snapfs-status")"
exec 3<&-
wait_for -t 30 no_scratch_files || fail "scratch files left: $(ls -l "$scratch")"
log "ok: records $first..$last at the open ($before..$after), the full scratch ended the job"
