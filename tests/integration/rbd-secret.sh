#!/bin/bash
# An RBD disk whose key is a libvirt secret, as libvirt hosts keep Ceph
# keys: a real libvirtd (qemu driver, private namespace) holds a ceph
# secret with client.snapfs's key, and the Ceph configuration the disk
# names has no keyring at all.  Checked: snapfs reads the key from the
# secret (virSecretGetValue, base64 for Ceph) and serves the disk, its bytes
# those of `rbd export` of its snapshot; a disk naming a secret that does not
# exist is left out with a line naming guest, disk and secret.
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-ceph.sh" || exit 99
requires fusermount3 sha256sum python3 libvirtd virsh uuidgen
requires_root
in_private_namespace "$@"
test_tmpdir

ceph_start "$TEST_TMPDIR/ceph"
head -c $((16 << 20)) /dev/urandom >"$TEST_TMPDIR/img.raw"
rbd_cli import --no-progress "$TEST_TMPDIR/img.raw" rbd/sec >/dev/null || fail "rbd import"
# The disk's configuration: the monitors, no keyring.
grep -v 'keyring' "$CEPH_CONF" >"$TEST_TMPDIR/nokeys.conf"
grep -q keyring "$TEST_TMPDIR/nokeys.conf" && fail "nokeys.conf names a keyring"

start_private_libvirtd
v() { virsh -q -c qemu:///system "$@"; }
uuid=$(uuidgen)
cat >"$TEST_TMPDIR/secret.xml" <<XML
<secret ephemeral='no' private='no'><uuid>$uuid</uuid>
  <usage type='ceph'><name>client.snapfs secret</name></usage></secret>
XML
v secret-define "$TEST_TMPDIR/secret.xml" >/dev/null || fail "secret-define"
v secret-set-value "$uuid" "$CEPH_SNAPFS_KEY" >/dev/null 2>&1 || fail "secret-set-value"
guest() { # NAME SECRET_USAGE
	cat <<XML
<domain type='qemu'><name>$1</name><memory>65536</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices><disk type='network' device='disk'><driver name='qemu' type='raw'/>
    <source protocol='rbd' name='rbd/sec'><host name='${CEPH_MON_ADDR%:*}' port='${CEPH_MON_ADDR##*:}'/>
      <config file='$TEST_TMPDIR/nokeys.conf'/>
      <auth username='snapfs'><secret type='ceph' usage='$2'/></auth></source>
    <target dev='vda' bus='virtio'/></disk></devices></domain>
XML
}
guest keyed "client.snapfs secret" >"$TEST_TMPDIR/keyed.xml"
guest unkeyed "no such secret" >"$TEST_TMPDIR/unkeyed.xml"
v define "$TEST_TMPDIR/keyed.xml" >/dev/null || fail "define keyed"
v define "$TEST_TMPDIR/unkeyed.xml" >/dev/null || fail "define unkeyed"

mnt=$TEST_TMPDIR/mnt
snapfs_start qemu:///system "$mnt" -o host_id=secret
wait_for -t 30 test -e "$mnt/keyed/vda.raw" || fail "keyed: $(ls -A "$mnt/keyed" 2>&1)"
[ ! -e "$mnt/unkeyed/vda.raw" ] || fail "a disk with no key was served"
grep -q "guest unkeyed disk vda: its libvirt secret no such secret cannot be read" "$SNAPFS_LOG" ||
	fail "no line for the missing secret: $(grep unkeyed "$SNAPFS_LOG" | tail -n 3)"
! grep -q "guest keyed disk vda: its libvirt secret" "$SNAPFS_LOG" ||
	fail "the secret of keyed was not read: $(grep keyed "$SNAPFS_LOG")"

exec 3<"$mnt/keyed/vda.raw"
snap=$(rbd_cli snap ls --format json rbd/sec | python3 -c '
import json, sys
print(" ".join(s["name"] for s in json.load(sys.stdin) if s["name"].startswith("snapfs.secret.")))')
[ -n "$snap" ] && [ "${snap// /}" = "$snap" ] || fail "one snapshot expected: '$snap'"
rbd_cli export --no-progress "rbd/sec@$snap" "$TEST_TMPDIR/snap.raw" >/dev/null 2>&1 || fail "rbd export"
[ "$(sha_file "$mnt/keyed/vda.raw")" = "$(sha_file "$TEST_TMPDIR/snap.raw")" ] ||
	fail "keyed/vda.raw is not its snapshot's export"
exec 3<&-
log "ok"
