#!/bin/bash
# The harness for running guests (tests/lib-guest.sh, tests/guest/mkguest,
# tests/guest/records.py) tells a copy of one instant from a torn one.  A
# real qemu guest (TCG) under a private libvirtd writes records without
# pause to partition 1 of a raw disk with an MBR on ext4 and to the whole of
# a qcow2 linked clone there.  Proved:
#  - libvirt's pull-mode backup (backup-begin, NBD exports vda and vdb, each
#    read whole with nbdcopy after the guest has rewritten every slot) is
#    judged consistent over both disks together, its window is the instant
#    of backup-begin, and the MBR and the data of the backing file come
#    through; the job ends with domjobabort;
#  - the judge is strict: the same copies with one block torn at a sector,
#    with one slot a wrap behind, or in the wrong device order are torn;
#  - a copy of the live files taken in two halves while the guest writes
#    (qemu-img convert -U for the qcow2 disk) is torn;
#  - no disk reports an I/O error, the guest still writes at the end, and
#    once it is killed its disks hold one instant's records.
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
requires libvirtd virsh unshare qemu-system-x86_64 qemu-img nbdcopy sfdisk mkfs.ext4 python3
# lib-snapfs.sh wants the name of snapfs; this test runs none.
: "${SNAPFS_BIN:=snapfs}"
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
. "$(dirname -- "$0")/../lib-guest.sh" || exit 99
in_private_namespace "$@"

v() { virsh -q -c qemu:///system "$@"; }

slots=64
ndev=2
wrap=$((slots * ndev))
every=16
mib=$((1 << 20))
part_start=$mib               # partition 1 of vda: sector 2048
vda_offset=$((part_start + mib)) # the records, 1 MiB into vda1

start_private_libvirtd
guest_boot_files
make_test_fs ext4 ext4 160
fs=$TEST_FS_DIR

# vda: raw, an MBR whose partition 1 gets the records.
truncate -s 24M "$fs/vda.img"
sfdisk -q "$fs/vda.img" <<<'start=2048, size=16384, type=83' || fail "sfdisk vda.img"
sha_mbr=$(sha_at "$fs/vda.img" 0 512)
# vdb: a qcow2 linked clone of a template with data outside the record area.
qemu-img create -q -f qcow2 "$fs/base.qcow2" 24M
qemu-io -f qcow2 -c 'write -P 0x5a 8M 1M' "$fs/base.qcow2" >/dev/null || fail "qemu-io base.qcow2"
qemu-img create -q -f qcow2 -b "$fs/base.qcow2" -F qcow2 "$fs/vdb.qcow2"
sha_base=$(head -c "$mib" /dev/zero | tr '\0' '\132' | sha256sum | cut -d' ' -f1)

guest_xml web "$(disk_file vda "$fs/vda.img")
$(disk_file vdb "$fs/vdb.qcow2" qcow2)" \
	"snapfs_rec=vda1,vdb snapfs_slots=$slots snapfs_every=$every" >"$TEST_TMPDIR/web.xml"
usec() { echo "${EPOCHREALTIME/[.,]/}"; }
t0=$(usec)
guest_start web
t1=$(usec)
s1=$(guest_seq web)
# Past a wrap, so that every slot of both disks holds a record.
guest_wait_seq web $((wrap + every))
s2=$(guest_seq web)
t2=$(usec)
log "guest writing $(((t1 - t0) / 1000)) ms after its start, $(((s2 - s1) * 1000000 / (t2 - t1))) records/s"

# ---- a pull-mode backup: one instant of both disks -------------------------
sock=$TEST_TMPDIR/backup.sock
cat >"$TEST_TMPDIR/backup.xml" <<X
<domainbackup mode='pull'>
  <server transport='unix' socket='$sock'/>
  <disks>
    <disk name='vda' backup='yes' type='file'><scratch file='$TEST_TMPDIR/vda.scratch'/></disk>
    <disk name='vdb' backup='yes' type='file'><scratch file='$TEST_TMPDIR/vdb.scratch'/></disk>
  </disks>
</domainbackup>
X
before=$(guest_seq web)
v backup-begin web "$TEST_TMPDIR/backup.xml" >/dev/null || fail "backup-begin web"
add_cleanup "virsh -q -c qemu:///system domjobabort web >/dev/null 2>&1 || true"
after=$(guest_seq web)
[ "$(guest_job web)" = Unbounded ] || fail "web's job: $(v domjobinfo web)"
[ -S "$sock" ] || fail "no NBD socket $sock"
log "backup job: $(v domjobinfo web | tr -s ' ' | tr '\n' ';')"
# Every slot rewritten since the backup's instant: a copy that is not of
# that instant cannot pass for one.
guest_wait_seq web $((after + wrap + every))
for t in vda vdb; do
	nbdcopy "nbd+unix:///$t?socket=$sock" "$TEST_TMPDIR/$t.copy" || fail "nbdcopy of export $t"
done
guest_writes web
v domjobabort web || fail "domjobabort web"
wait_for -t 30 guest_no_job web || fail "web's job outlived domjobabort: $(v domjobinfo web)"
[ ! -e "$TEST_TMPDIR/vda.scratch" ] && [ ! -e "$TEST_TMPDIR/vdb.scratch" ] ||
	log "libvirt left the scratch files: $(ls -l "$TEST_TMPDIR"/*.scratch)"

[ "$(stat -c %s "$TEST_TMPDIR/vda.copy")" = $((24 * mib)) ] || fail "vda.copy's size"
[ "$(stat -c %s "$TEST_TMPDIR/vdb.copy")" = $((24 * mib)) ] || fail "vdb.copy's size"
[ "$(sha_at "$TEST_TMPDIR/vda.copy" 0 512)" = "$sha_mbr" ] || fail "the MBR did not come through"
[ "$(sha_at "$TEST_TMPDIR/vdb.copy" $((8 * mib)) "$mib")" = "$sha_base" ] ||
	fail "the backing file's data did not come through"
copies=("$TEST_TMPDIR/vda.copy" "$TEST_TMPDIR/vdb.copy")
offsets=(--offset "$vda_offset" --offset "$mib")
guest_records_check consistent "${copies[@]}" --slots "$slots" "${offsets[@]}"
read -r first last < <(guest_records_window)
[ "$((last - first + 1))" = "$wrap" ] || fail "the backup's window is $first..$last, not $wrap records"
# The guest reports record S after writing it; the next report is `every` on.
[ "$last" -ge "$before" ] && [ "$last" -lt $((after + every)) ] ||
	fail "the backup holds records up to $last, not of the instant of backup-begin ($before..$((after + every - 1)))"

# ---- the judge is strict -----------------------------------------------------
# overwrite_block FILE OFFSET SRC SRC_OFFSET LEN: LEN bytes of SRC into FILE.
overwrite_block() {
	dd if="$3" of="$1" bs=512 iflag=skip_bytes,count_bytes oflag=seek_bytes conv=notrunc \
		skip="$4" seek="$2" count="$5" status=none || fail "dd into $1"
}
cp "$TEST_TMPDIR/vdb.copy" "$TEST_TMPDIR/bad.copy"
# sector 3 of vdb's slot 5 from slot 6: a block torn between two records
overwrite_block "$TEST_TMPDIR/bad.copy" $((mib + 5 * 4096 + 1536)) \
	"$TEST_TMPDIR/vdb.copy" $((mib + 6 * 4096 + 1536)) 512
guest_records_check torn "$TEST_TMPDIR/vda.copy" "$TEST_TMPDIR/bad.copy" --slots "$slots" "${offsets[@]}"
# vdb's slot 7 as it was a wrap earlier: the record there with its number
# lowered by a wrap, a whole record of its slot, only too old.
python3 - "$TEST_TMPDIR/vdb.copy" "$TEST_TMPDIR/bad.copy" $((mib + 7 * 4096)) "$wrap" <<'PY'
import re, sys
src, dst, off, wrap = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with open(src, "rb") as f:
    f.seek(off)
    block = f.read(4096)
seq = int(re.search(rb"seq=([0-9]{12})", block).group(1))
block = block.replace(b"seq=%012d" % seq, b"seq=%012d" % (seq - wrap))
with open(src, "rb") as f:
    data = bytearray(f.read())
data[off:off + 4096] = block
with open(dst, "wb") as f:
    f.write(data)
PY
guest_records_check torn "$TEST_TMPDIR/vda.copy" "$TEST_TMPDIR/bad.copy" --slots "$slots" "${offsets[@]}"
case $GUEST_RECORDS_OUT in *"slot 7: record"*"older than"*) ;; *) fail "not the stale slot 7: $GUEST_RECORDS_OUT" ;; esac
guest_records_check torn "$TEST_TMPDIR/vdb.copy" "$TEST_TMPDIR/vda.copy" --slots "$slots" \
	--offset "$mib" --offset "$vda_offset"

# ---- a copy of the live files while the guest writes: torn -------------------
half=$((slots / 2 * 4096))
truncate -s 24M "$TEST_TMPDIR/vda.torn"
overwrite_block "$TEST_TMPDIR/vda.torn" $((vda_offset + half)) "$fs/vda.img" $((vda_offset + half)) "$half"
s=$(guest_seq web)
guest_wait_seq web $((s + wrap + every))
overwrite_block "$TEST_TMPDIR/vda.torn" "$vda_offset" "$fs/vda.img" "$vda_offset" "$half"
qemu-img convert -U -f qcow2 -O raw "$fs/vdb.qcow2" "$TEST_TMPDIR/vdb.torn" ||
	fail "qemu-img convert -U of the live vdb.qcow2"
guest_records_check torn "$TEST_TMPDIR/vda.torn" "$TEST_TMPDIR/vdb.torn" --slots "$slots" "${offsets[@]}"

# ---- the guest is unharmed ---------------------------------------------------
guest_blk_clean web
guest_writes web
# Killed, it leaves its disks as they were at one instant.
v destroy web >/dev/null || fail "destroy web"
qemu-img convert -f qcow2 -O raw "$fs/vdb.qcow2" "$TEST_TMPDIR/vdb.final"
guest_records_check consistent "$fs/vda.img" "$TEST_TMPDIR/vdb.final" --slots "$slots" "${offsets[@]}"
echo "guest-harness: backup $first..$last consistent, live copy torn, final ${GUEST_RECORDS_OUT#consistent: }"
