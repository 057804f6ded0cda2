#!/bin/bash
# qcow2 backing chains of files, and which backing names are followed.
# The libvirt test driver stands for the host: running guests (their files
# cloned, every layer in one set) and shut-off ones (read directly, every
# layer guarded), and a storage pool of templates.  Checked:
#  - a linked clone of a template in the pool, on XFS, running: vda.raw is
#    qemu-img convert of the chain, user.snapfs.backing lists the layers,
#    and it is a point in time (base and top rewritten while it is open);
#  - the same on ext4 with the guest shut off, read directly;
#  - hostile backing names in the spirit of qemu-iotests: /etc/passwd,
#    ../../etc/shadow, a symlink in the pool leading out of it, a json:
#    name, a name with no recorded format, a loop, nine layers: each shows
#    the container only, with its line, and no file outside the image's and
#    the pool's directories is ever opened (strace of snapfs).
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
. "$(dirname -- "$0")/../lib-qcow2.sh" || exit 99
requires fusermount3 getfattr sha256sum strace mkfs.xfs mkfs.ext4

ls_c() { (cd "$1" && LC_ALL=C ls -A | tr '\n' ' '); }
# guest NAME STATE DISKS_XML: a test-driver guest, running or shut off.
guest() {
	virt_domain "$1" "$3" | sed "s|<domain type='test'>|<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>|; s|</devices>|</devices>$([ "$2" = off ] && echo '<test:runstate>5</test:runstate>')|"
}
# chain DIR NAME BASE: DIR/NAME.qcow2, a linked clone of BASE, with data of
# its own.
clone_of() {
	qemu-img create -q -f qcow2 -b "$3" -F qcow2 "$1/$2.qcow2" || fail "qemu-img create $2"
	qio "$1/$2.qcow2" "write -P 0x7$((RANDOM % 10)) $((RANDOM % 16 + 8))M 1M"
}

make_test_fs xfs xfs 400
xfs=$TEST_FS_DIR
make_test_fs ext4 ext4 300
ext4=$TEST_FS_DIR
# The pool of templates: a directory of its own on each filesystem.
mkdir -p "$xfs/templates" "$xfs/images" "$ext4/templates" "$ext4/images" "$TEST_TMPDIR/outside"
for fs in "$xfs" "$ext4"; do
	raw_with_table "$TEST_TMPDIR/tpl.raw" 32 gpt
	qemu-img convert -q -f raw -O qcow2 "$TEST_TMPDIR/tpl.raw" "$fs/templates/base.qcow2"
	qio "$fs/templates/base.qcow2" "write -P 0x5b 4M 2M" "write -P 0x5c 28M 1M"
	qemu-img create -q -f qcow2 -b ../templates/base.qcow2 -F qcow2 "$fs/images/web.qcow2"
	qio "$fs/images/web.qcow2" "write -P 0x77 5M 1M"
done

# ---- hostile backing names, all on ext4, shut off ---------------------------------
h=$ext4/images
echo secret >"$TEST_TMPDIR/outside/secret.qcow2"
qemu-img create -q -f qcow2 "$TEST_TMPDIR/outside/real.qcow2" 32M
hostile() { # NAME BACKING [FORMAT]: an image whose header names BACKING
	qemu-img create -q -f qcow2 "$h/$1.qcow2" 32M
	qemu-img rebase -q -u -f qcow2 -b "$2" ${3:+-F "$3"} "$h/$1.qcow2" ||
		fail "qemu-img rebase -u $1"
}
hostile passwd /etc/passwd raw
hostile shadow ../../../../../../../../../../etc/shadow raw
ln -s "$TEST_TMPDIR/outside/real.qcow2" "$ext4/templates/link.qcow2"
hostile symlink ../templates/link.qcow2 qcow2
hostile json 'json:{"file.driver":"file","file.filename":"/etc/passwd"}' raw
# noformat: the backing-format extension renamed to one qemu ignores.
hostile noformat ../templates/base.qcow2 qcow2
python3 - "$h/noformat.qcow2" <<'PY' || fail "noformat.qcow2"
import sys
with open(sys.argv[1], "r+b") as f:
    head = f.read(4096)
    at = head.find(bytes.fromhex("e2792aca"))
    assert at > 0
    f.seek(at)
    f.write(bytes.fromhex("5a5a5a5a"))
PY
hostile loop-a loop-b.qcow2 qcow2
hostile loop-b loop-a.qcow2 qcow2
qemu-img create -q -f qcow2 "$h/deep0.qcow2" 32M
for i in 1 2 3 4 5 6 7 8; do
	qemu-img create -q -f qcow2 -b "deep$((i - 1)).qcow2" -F qcow2 "$h/deep$i.qcow2"
done
hostile_names=(passwd shadow symlink json noformat loop-a deep8)
targets=(vdb vdc vdd vde vdf vdg vdh)
hostile_why=(
	"outside the image's directory and the storage pools' directories"
	"outside the image's directory and the storage pools' directories"
	"outside the image's directory and the storage pools' directories"
	"a protocol or json: name"
	"not recorded as qcow2 or raw"
	"a loop"
	"deeper than snapfs follows"
)
sync -f "$xfs"
sync -f "$ext4"

xml=$TEST_TMPDIR/node.xml
{
	echo "<node>"
	guest hot on "$(disk_file vda "$xfs/images/web.qcow2" qcow2)"
	guest cold off "$(disk_file vda "$ext4/images/web.qcow2" qcow2)"
	disks=
	for i in "${!hostile_names[@]}"; do
		disks+="$(disk_file "${targets[$i]}" "$h/${hostile_names[$i]}.qcow2" qcow2)"
	done
	guest bad off "$disks"
	echo "<pool type='dir'><name>tpl-xfs</name><uuid>$(cat /proc/sys/kernel/random/uuid)</uuid><target><path>$xfs/templates</path></target></pool>"
	echo "<pool type='dir'><name>tpl-ext4</name><uuid>$(cat /proc/sys/kernel/random/uuid)</uuid><target><path>$ext4/templates</path></target></pool>"
	echo "</node>"
} >"$xml"
mnt=$TEST_TMPDIR/mnt
snapfs_start "test://$xml" "$mnt" -o freeze=off,linger=0
strace -f -qq -e trace=open,openat,openat2 -o "$TEST_TMPDIR/strace" -p "$SNAPFS_PID" &
tracer=$!
add_cleanup "kill $tracer 2>/dev/null || true"
traced() { ! grep -q '^TracerPid:[[:space:]]*0$' "/proc/$SNAPFS_PID/status"; }
wait_for -t 10 traced || fail "strace did not attach to snapfs"

# ---- the linked clones -------------------------------------------------------------
for g in hot cold; do
	[ "$(ls_c "$mnt/$g")" = "domain.xml vda.qcow2 vda.raw vda1.raw vda2.raw " ] ||
		fail "$g: $(ls_c "$mnt/$g")"
done
[ "$(xattr_of "$mnt/hot/vda.raw" snapshot_kind)" = reflink ] || fail "hot: not cloned"
[ "$(xattr_of "$mnt/cold/vda.raw" snapshot_kind)" = direct ] || fail "cold: not read directly"
[ "$(xattr_of "$mnt/hot/vda.raw" backing)" = "$xfs/templates/base.qcow2" ] ||
	fail "hot's backing: $(xattr_of "$mnt/hot/vda.raw" backing)"
exec 3<"$mnt/cold/vda.raw"
check_decoded "$mnt/cold" vda "$ext4/images/web.qcow2"
exec 3<&-
# Point in time: the chain as it was at the open, whatever is written since.
qemu-img convert -O raw "$xfs/images/web.qcow2" "$TEST_TMPDIR/hot.want"
exec 3<"$mnt/hot/vda.raw"
qio "$xfs/templates/base.qcow2" "write -P 0x99 4M 1M" "write -P 0x98 12M 1M"
qio "$xfs/images/web.qcow2" "write -P 0x97 5M 512K" "write -P 0x96 20M 1M"
[ "$(sha_file "$mnt/hot/vda.raw")" = "$(sha_file "$TEST_TMPDIR/hot.want")" ] ||
	fail "hot's vda.raw is not the chain as it was at the open"
qemu-img convert -O raw "$xfs/images/web.qcow2" "$TEST_TMPDIR/hot.now"
[ "$(sha_file "$TEST_TMPDIR/hot.now")" != "$(sha_file "$TEST_TMPDIR/hot.want")" ] ||
	fail "the rewrite changed nothing: the test proves nothing"
exec 3<&-

# ---- hostile names: the container only, with the line ------------------------------------
for i in "${!hostile_names[@]}"; do
	n=${hostile_names[$i]} t=${targets[$i]}
	[ -e "$mnt/bad/$t.qcow2" ] || fail "$n: no container $t.qcow2"
	[ ! -e "$mnt/bad/$t.raw" ] || fail "$n: $t.raw is served"
	grep -F "guest bad disk $t: $t.qcow2 is shown as its container only, not decoded: " \
		"$SNAPFS_LOG" | grep -qF "${hostile_why[$i]}" || fail "$n: no line saying ${hostile_why[$i]}"
done
# The containers are served all the same.
exec 3<"$mnt/bad/vdb.qcow2"
[ "$(sha_file "$mnt/bad/vdb.qcow2")" = "$(head -c "$(image_end "$h/passwd.qcow2")" "$h/passwd.qcow2" | sha_file -)" ] ||
	fail "passwd's container differs"
exec 3<&-
kill "$tracer"
wait "$tracer" 2>/dev/null || true
# No file the hostile names point at was opened: nothing outside, never
# /etc/shadow, and /etc/passwd never as snapfs opens an image (O_NOCTTY;
# the C library may read it for user names).
bad=$(grep -E "open.*(\"$(re_escape "$TEST_TMPDIR/outside")|\"/etc/shadow\"|\"/etc/passwd\".*O_NOCTTY)" \
	"$TEST_TMPDIR/strace" || true)
[ -z "$bad" ] || fail "snapfs opened files outside the allowed directories: $bad"
grep -q "$ext4/images/passwd.qcow2" "$TEST_TMPDIR/strace" || fail "strace saw nothing of snapfs's opens"
log "ok"
