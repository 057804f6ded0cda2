#!/bin/bash
# Running guests whose storage cannot snapshot itself, through libvirt's
# backup API: a real libvirtd runs real qemu guests (under TCG; they sit in
# their firmware, so their disks hold still and can be compared byte for
# byte).  One guest has a raw disk on ext4 with an MBR, a qcow2 linked clone
# of a template on ext4 and a raw disk on tmpfs; another's disk is a network
# disk, qemu's NBD client to a qemu-nbd export.  Checked: every file against
# the origin (qemu-img convert for qcow2), partitions at sfdisk's offsets,
# the hole map against nbdinfo --map of the export, one job per set, nothing
# left after release, EBUSY beside a job snapfs did not start (never
# aborted), kill -9 then a restart aborts exactly snapfs's job, and a guest
# destroyed while its file is open gives EIO.
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
requires libvirtd virsh unshare qemu-system-x86_64 qemu-img qemu-nbd nbdinfo sfdisk \
	fusermount3 mkfs.ext4 getfattr python3
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
in_private_namespace "$@"

ls_c() { (cd "$1" && LC_ALL=C ls -A | tr '\n' ' '); }
v() { virsh -q -c qemu:///system "$@"; }
xattr() { getfattr --absolute-names --only-values -n "user.snapfs.$1" "$2"; }
no_job() { [ -z "$(jobs_of "$1" | grep -v None)" ]; }
jobs_of() { v domjobinfo "$1" 2>/dev/null | awk -F: '$1 == "Job type" { gsub(/ /, "", $2); print $2 }'; }

start_private_libvirtd
make_test_fs ext4 ext4 200
ext4=$TEST_FS_DIR
make_test_fs tmpfs tmpfs 64
tmp=$TEST_FS_DIR
scratch=$TEST_TMPDIR/scratch
mkdir -p "$scratch"

# web: a raw disk with an MBR, a qcow2 linked clone, a raw disk on tmpfs.
random_file "$ext4/web-vda.img" 24
sfdisk -q "$ext4/web-vda.img" <<'P'
start=2048, size=16384, type=83
start=18432, size=20480, type=83
P
qemu-img create -q -f qcow2 "$ext4/template.qcow2" 32M
qemu-io -f qcow2 -c 'write -P 0x5a 0 4M' -c 'write -P 0x11 20M 2M' "$ext4/template.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b "$ext4/template.qcow2" -F qcow2 "$ext4/web-vdb.qcow2"
qemu-io -f qcow2 -c 'write -P 0x77 1M 1M' "$ext4/web-vdb.qcow2" >/dev/null
random_file "$tmp/web-vdc.img" 8

domain() { # NAME DISKS_XML
	cat <<X
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64'>hvm</type><boot dev='network'/></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
$2
  </devices>
</domain>
X
}
domain web "$(disk_file vda "$ext4/web-vda.img")
$(disk_file vdb "$ext4/web-vdb.qcow2" qcow2)
$(disk_file vdc "$tmp/web-vdc.img")" >"$TEST_TMPDIR/web.xml"

# net: a network disk, qemu's NBD client to an export of a raw file.
random_file "$ext4/net.img" 8
sfdisk -q "$ext4/net.img" <<<'start=2048, size=8192, type=83'
qemu-nbd -f raw -t -k "$TEST_TMPDIR/net.sock" "$ext4/net.img" &
add_cleanup "kill $! 2>/dev/null || true"
wait_for -t 30 test -S "$TEST_TMPDIR/net.sock" || fail "qemu-nbd did not start"
domain net "    <disk type='network' device='disk'><driver name='qemu' type='raw'/>
      <source protocol='nbd'><host transport='unix' socket='$TEST_TMPDIR/net.sock'/></source>
      <target dev='vda' bus='virtio'/></disk>" >"$TEST_TMPDIR/net.xml"

# other: a guest whose backup job the test starts by hand.
random_file "$ext4/other.img" 4
domain other "$(disk_file vda "$ext4/other.img")" >"$TEST_TMPDIR/other.xml"

for g in web net other; do
	v define "$TEST_TMPDIR/$g.xml" >/dev/null || fail "define $g"
	add_cleanup "virsh -q -c qemu:///system destroy $g >/dev/null 2>&1 || true; virsh -q -c qemu:///system undefine $g >/dev/null 2>&1 || true"
	v start "$g" >/dev/null || fail "start $g"
done
cat >"$TEST_TMPDIR/other-backup.xml" <<X
<domainbackup mode='pull'><server transport='unix' socket='$TEST_TMPDIR/other-backup.sock'/>
<disks><disk name='vda' backup='yes' type='file'><scratch file='$TEST_TMPDIR/other-scratch.qcow2'/></disk></disks>
</domainbackup>
X
v backup-begin other "$TEST_TMPDIR/other-backup.xml" >/dev/null || fail "backup-begin other"
add_cleanup "virsh -q -c qemu:///system domjobabort other >/dev/null 2>&1 || true"
[ "$(jobs_of other)" = Unbounded ] || fail "other's job: $(v domjobinfo other)"

mnt=$TEST_TMPDIR/mnt
snapfs_start qemu:///system "$mnt" -o scratch_dir="$scratch"
[ "$(ls_c "$mnt")" = "net other web " ] || fail "guests: $(ls_c "$mnt")"
# Listed before any set: raw files' tables are read live; qemu's views later.
[ "$(ls_c "$mnt/web")" = "domain.xml vda.raw vda1.raw vda2.raw vdb.raw vdc.raw " ] ||
	fail "web: $(ls_c "$mnt/web")"
[ "$(xattr snapshot_kind "$mnt/web/vdb.raw")" = libvirt-backup ] || fail "vdb.raw kind"
[ "$(xattr origin "$mnt/net/vda.raw")" = nbd: ] || fail "net origin: $(xattr origin "$mnt/net/vda.raw")"
[ "$(stat -c %s "$mnt/web/vdb.raw")" = $((32 << 20)) ] || fail "vdb.raw size before a set"

# ---- one set, one job, every byte --------------------------------------------
exec 3<"$mnt/web/vda.raw"
[ "$(jobs_of web)" = Unbounded ] || fail "no backup job for web: $(v domjobinfo web)"
[ "$(v domjobinfo web | grep -c 'Job type')" = 1 ] || fail "web has more than one job"
sock=$(sed -n 's/^snapfs: guest web: backup job started, exported at //p' "$SNAPFS_LOG")
[ -S "$sock" ] || fail "no socket of snapfs's job: $sock"
[ "$(stat -c %a "$(dirname "$sock")")" = 700 ] || fail "the job's directory is not 0700"
[ "$(ls "$scratch" | grep -c '^snapfs-.*\.qcow2$')" = 3 ] || fail "scratch files: $(ls "$scratch")"
[ "$(sha_file "$mnt/web/vda.raw")" = "$(sha_file "$ext4/web-vda.img")" ] || fail "vda.raw differs"
qemu-img convert -U -O raw "$ext4/web-vdb.qcow2" "$TEST_TMPDIR/vdb.want"
[ "$(sha_file "$mnt/web/vdb.raw")" = "$(sha_file "$TEST_TMPDIR/vdb.want")" ] ||
	fail "vdb.raw differs from qemu-img convert of the linked clone"
[ "$(sha_file "$mnt/web/vdc.raw")" = "$(sha_file "$tmp/web-vdc.img")" ] || fail "vdc.raw differs"
while read -r n start len type; do
	[ "$(sha_file "$mnt/web/vda$n.raw")" = "$(sha_at "$ext4/web-vda.img" "$start" "$len")" ] ||
		fail "vda$n.raw differs from the disk at $start"
done < <(part_list "$ext4/web-vda.img")
# The holes: ours against the export's own map.
nbdinfo --map "nbd+unix:///vdb?socket=$sock" |
	awk '$3 !~ /^(1|3)$/ { print $1, $1 + $2 }' |
	awk 'NR > 1 && $1 == e { e = $2; next } { if (NR > 1) print s, e; s = $1; e = $2 } END { print s, e }' \
		>"$TEST_TMPDIR/map.want"
seek_map "$mnt/web/vdb.raw" >"$TEST_TMPDIR/map.got"
cmp -s "$TEST_TMPDIR/map.want" "$TEST_TMPDIR/map.got" ||
	fail "vdb.raw's holes: $(cat "$TEST_TMPDIR/map.got") against the export's $(cat "$TEST_TMPDIR/map.want")"
grep -q 'snapshot=libvirt-backup' "$mnt/.snapfs-status" || fail "status: $(cat "$mnt/.snapfs-status")"
exec 3<&-
wait_for -t 30 no_job web || fail "web's job outlived its set"
[ -z "$(ls "$scratch")" ] || fail "scratch files left: $(ls "$scratch")"
[ ! -e "$sock" ] || fail "socket left: $sock"

# A network disk, read through qemu's NBD client: partitions after a set.
exec 3<"$mnt/net/vda.raw"
[ "$(ls_c "$mnt/net")" = "domain.xml vda.raw vda1.raw " ] || fail "net: $(ls_c "$mnt/net")"
[ "$(sha_file "$mnt/net/vda.raw")" = "$(sha_file "$ext4/net.img")" ] || fail "net vda.raw differs"
[ "$(sha_file "$mnt/net/vda1.raw")" = "$(sha_at "$ext4/net.img" $((2048 * 512)) $((8192 * 512)))" ] ||
	fail "net vda1.raw differs"
exec 3<&-

# ---- beside a job snapfs did not start -----------------------------------------
[ "$(open_errno "$mnt/other/vda.raw")" = EBUSY ] || fail "other's open did not give EBUSY"
grep -q "guest other: it is in a backup job snapfs did not start" "$SNAPFS_LOG" || fail "no EBUSY line"
[ "$(jobs_of other)" = Unbounded ] || fail "other's job was touched"

# ---- kill -9, then a restart: exactly snapfs's job goes --------------------------
exec 3<"$mnt/web/vda.raw"
[ "$(jobs_of web)" = Unbounded ] || fail "no job for web"
snapfs_kill9 "$mnt" # the file still open: no linger runs out before the kill
exec 3<&-
[ "$(jobs_of web)" = Unbounded ] || fail "the dead run's job is not there to sweep"
snapfs_start qemu:///system "$mnt" -o scratch_dir="$scratch"
[ -z "$(jobs_of web | grep -v None)" ] || fail "the restart left the dead run's job"
grep -q "aborted 1 backup job(s) left behind" "$SNAPFS_LOG" || fail "no sweep line"
[ -z "$(ls "$scratch")" ] || fail "scratch files left after the sweep: $(ls "$scratch")"
[ "$(jobs_of other)" = Unbounded ] || fail "the sweep touched other's job"

# ---- kill -9, then snapfs --cleanup MOUNTPOINT: the same -------------------------
exec 3<"$mnt/web/vda.raw"
snapfs_kill9 "$mnt"
exec 3<&-
[ "$(jobs_of web)" = Unbounded ] || fail "the dead run's job is not there for --cleanup"
out=$("$SNAPFS_BIN" --cleanup -o scratch_dir="$scratch" "$mnt" 2>&1) || fail "--cleanup: $out"
case $out in *"aborted 1 leftover backup job(s) of $mnt"*) ;; *) fail "--cleanup said: $out" ;; esac
[ -z "$(jobs_of web | grep -v None)" ] || fail "--cleanup left the dead run's job"
[ -z "$(ls "$scratch")" ] || fail "scratch files left after --cleanup: $(ls "$scratch")"
[ "$(jobs_of other)" = Unbounded ] || fail "--cleanup touched other's job"
snapfs_start qemu:///system "$mnt" -o scratch_dir="$scratch"

# ---- the guest destroyed while its file is open ------------------------------------
exec 3<"$mnt/web/vdc.raw"
[ "$(read_errno 3 0 65536)" = ok ] || fail "read before destroy"
v destroy web >/dev/null
wait_for -t 30 grep -q "guest web disk vd.\.raw: its backup job ended: the guest stopped" "$SNAPFS_LOG" ||
	fail "no line for the stopped guest"
[ "$(read_errno 3 $((1 << 20)) 65536)" = EIO ] || fail "a read after destroy did not fail"
exec 3<&-
[ -z "$(ls "$scratch")" ] || fail "scratch files left after destroy: $(ls "$scratch")"

# ---- -o snapshot=storage: never the backup API ----------------------------------------
snapfs_stop "$mnt"
snapfs_start qemu:///system "$mnt" -o snapshot=storage
[ "$(ls_c "$mnt/net")" = "domain.xml " ] || fail "snapshot=storage served net: $(ls_c "$mnt/net")"
grep -q "guest net disk vda: .*not served" "$SNAPFS_LOG" || fail "no line for net's disk under snapshot=storage"
log "ok"
