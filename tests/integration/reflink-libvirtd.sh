#!/bin/bash
# A real libvirtd: a guest with a disk that is a volume of a `dir` storage
# pool on XFS and a disk that is a plain file there.  snapfs qemu:///system
# serves both, with their partitions, byte for byte, from one set of
# clones.  libvirtd runs in a private mount namespace with its own
# configuration, so the host's is never touched.
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
requires libvirtd virsh unshare qemu-system-x86_64 sfdisk fusermount3 mkfs.xfs getfattr python3
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
in_private_namespace "$@"

ls_c() { (cd "$1" && LC_ALL=C ls -A | tr '\n' ' '); }
v() { virsh -q -c qemu:///system "$@"; }

start_private_libvirtd
make_test_fs xfs xfs 320
fs=$TEST_FS_DIR
mkdir "$fs/pool" "$fs/files"

pool=snapfs-reflink-libvirtd
v pool-create-as "$pool" dir --target "$fs/pool" >/dev/null || fail "pool-create-as $pool"
add_cleanup "virsh -q -c qemu:///system pool-destroy '$pool' >/dev/null 2>&1 || true"
v vol-create-as "$pool" web-vda.img 32M --format raw >/dev/null || fail "vol-create-as"
vol=$(v vol-path --pool "$pool" web-vda.img) || fail "vol-path"
[ "$vol" = "$fs/pool/web-vda.img" ] || fail "the volume is at $vol"
dd if=/dev/urandom of="$vol" bs=1M count=32 oflag=dsync conv=notrunc status=none
sfdisk -q "$vol" <<'P'
label: gpt
start=2048, size=16384, name=root
start=18432, size=40960, name=data
P
file=$fs/files/web-vdb.img
random_file "$file" 16
sfdisk -q "$file" <<<'start=2048, size=20480, type=83' || fail "sfdisk $file"

cat >"$TEST_TMPDIR/web.xml" <<X
<domain type='qemu'>
  <name>web</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='raw'/>
      <source pool='$pool' volume='web-vda.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
$(disk_file vdb "$file")
  </devices>
</domain>
X
v define "$TEST_TMPDIR/web.xml" >/dev/null || fail "define web"
add_cleanup "virsh -q -c qemu:///system undefine web >/dev/null 2>&1 || true"

mnt=$TEST_TMPDIR/mnt
snapfs_start qemu:///system "$mnt"
[ "$(ls_c "$mnt")" = "web " ] || fail "guests: $(ls_c "$mnt")"
[ "$(ls_c "$mnt/web")" = "domain.xml vda.raw vda1.raw vda2.raw vdb.raw vdb1.raw " ] ||
	fail "web: $(ls_c "$mnt/web")"
for t in vda vdb; do
	case $t in vda) o=$vol ;; vdb) o=$file ;; esac
	[ "$(getfattr --absolute-names --only-values -n user.snapfs.origin "$mnt/web/$t.raw")" = "$o" ] ||
		fail "$t.raw origin"
	[ "$(getfattr --absolute-names --only-values -n user.snapfs.snapshot_kind "$mnt/web/$t.raw")" = reflink ] ||
		fail "$t.raw snapshot kind"
done
assert_clones "$fs" 0

exec 3<"$mnt/web/vda.raw"
assert_clones "$fs" 2
checked=0
for t in vda vdb; do
	case $t in vda) o=$vol ;; vdb) o=$file ;; esac
	[ "$(sha_file "$mnt/web/$t.raw")" = "$(sha_file "$o")" ] || fail "$t.raw differs from $o"
	checked=$((checked + 1))
	while read -r n start len type; do
		is_extended "$type" && continue
		f=$mnt/web/$t$n.raw
		[ "$(stat -c %s "$f")" = "$len" ] || fail "$t$n.raw size"
		[ "$(sha_file "$f")" = "$(sha_at "$o" "$start" "$len")" ] || fail "$t$n.raw differs from $o at $start"
		checked=$((checked + 1))
	done < <(part_list "$o")
done
[ "$checked" = 5 ] || fail "checked $checked files, not 5"
[ "$(sets_created web)" = 1 ] || fail "$(sets_created web) sets for web"
[ "$(ls_c "$fs/pool")" = "web-vda.img " ] || fail "the pool's directory holds: $(ls_c "$fs/pool")"
exec 3<&-
wait_clones "$fs" 0
echo "reflink-libvirtd: $checked files match"
