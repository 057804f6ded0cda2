# Helpers for snapfs integration tests; sourced after functions.sh.

SNAPFS_BIN=${SNAPFS_BIN:?SNAPFS_BIN must name the snapfs binary}
# Tests hold files of the mount open on purpose while they run lvs.
export LVM_SUPPRESS_FD_WARNINGS=1

# A bare devtmpfs (the test VM) lacks the links udev's setup usually makes;
# bash's <(...) and /dev/stdout need them.
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr

# snapfs_start SOURCE MOUNTPOINT [OPTIONS...]: run snapfs in the foreground
# (under valgrind when SNAPFS_VALGRIND=1), wait until the mount is ready,
# and make sure it is stopped at the end.  SNAPFS_PID is snapfs's pid; its
# exit status lands in $SNAPFS_LOG.rc, readable from any subshell.  Unless
# OPTIONS name a linger, it is 0: most tests count snapshots right after a
# close; a test of the default sets SNAPFS_DEFAULT_LINGER=1.
snapfs_start() {
	local source=$1 mnt=$2
	shift 2
	case " $* " in
	*linger=*) ;;
	*) [ "${SNAPFS_DEFAULT_LINGER:-0}" = 1 ] || set -- -o linger=0 "$@" ;;
	esac
	mkdir -p "$mnt"
	SNAPFS_LOG=$(mktemp /tmp/snapfs-log.XXXXXX)
	add_cleanup "rm -f '$SNAPFS_LOG' '$SNAPFS_LOG.pid' '$SNAPFS_LOG.rc'"
	# A failing test shows snapfs's log (rc is the exit status being cleaned up after).
	add_cleanup "[ \"\${rc:-0}\" = 0 ] || { echo '--- snapfs log:' >&2; cat '$SNAPFS_LOG' >&2; }"
	local cmd=("$SNAPFS_BIN" -f "$@" "$source" "$mnt")
	if [ "${SNAPFS_VALGRIND:-}" = 1 ]; then
		cmd=(valgrind --quiet --error-exitcode=99 --leak-check=full
		     --errors-for-leak-kinds=definite --show-leak-kinds=definite
		     "${cmd[@]}")
	fi
	(
		"${cmd[@]}" >>"$SNAPFS_LOG" 2>&1 &
		echo $! >"$SNAPFS_LOG.pid"
		rc=0
		wait $! || rc=$?
		echo "$rc" >"$SNAPFS_LOG.rc"
	) &
	add_cleanup "snapfs_stop '$mnt'"
	wait_for -t 60 test -s "$SNAPFS_LOG.pid" || fail "snapfs did not start"
	SNAPFS_PID=$(cat "$SNAPFS_LOG.pid")
	# valgrind under an emulated CPU starts snapfs in minutes, not seconds.
	local patience=120
	[ "${SNAPFS_VALGRIND:-}" != 1 ] || patience=900
	if ! wait_for -t $patience snapfs_mounted_or_gone "$mnt" || ! snapfs_mounted "$mnt"; then
		cat "$SNAPFS_LOG" >&2
		fail "snapfs did not mount $mnt"
	fi
}

snapfs_mounted() {
	# mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE ...
	awk -v m="$1" '$5 == m { for (i = 7; i < NF; i++) if ($i == "-" && $(i + 1) == "fuse.snapfs") f = 1 }
		END { exit !f }' /proc/self/mountinfo
}

snapfs_mounted_or_gone() {
	snapfs_mounted "$1" || [ -e "$SNAPFS_LOG.rc" ]
}

# snapfs_wait_exit: wait (bounded) for snapfs to exit; fail if it, or
# valgrind, reported an error.
snapfs_wait_exit() {
	wait_for -t $([ "${SNAPFS_VALGRIND:-}" = 1 ] && echo 900 || echo 120) test -e "$SNAPFS_LOG.rc" ||
		fail "snapfs did not exit"
	local rc
	rc=$(cat "$SNAPFS_LOG.rc")
	if [ "$rc" != 0 ]; then
		echo "snapfs exited with $rc; its log:" >&2
		cat "$SNAPFS_LOG" >&2
		return 1
	fi
}

# snapfs_stop MOUNTPOINT: unmount and wait for snapfs to exit.
snapfs_stop() {
	local mnt=$1
	[ -n "${SNAPFS_LOG:-}" ] && [ -e "$SNAPFS_LOG.pid" ] || return 0
	if [ ! -e "$SNAPFS_LOG.rc" ]; then
		fusermount3 -u "$mnt" 2>/dev/null || kill -TERM "$(cat "$SNAPFS_LOG.pid")" 2>/dev/null || true
	fi
	snapfs_wait_exit
}

# Number of snapfs's snapshot LVs in VG.
snapfs_lv_count() {
	lvs --noheadings -o lv_name -S 'lv_tags=snapfs' "$1" 2>/dev/null | grep -c . || true
}

assert_snapfs_lvs() {
	local vg=$1 want=$2 got
	got=$(snapfs_lv_count "$vg")
	[ "$got" = "$want" ] || {
		lvs -o lv_name,origin,lv_tags "$vg" >&2
		fail "expected $want snapfs snapshot(s) in $vg, found $got"
	}
}

# make_lv VG NAME SIZE: an LV whose cleanup is the VG's.
make_lv() {
	lvcreate -q -y -n "$2" -L "$3" "$1" >/dev/null || fail "lvcreate $1/$2"
}

# fill_random DEV: fill a block device with random bytes.
fill_random() {
	dd if=/dev/urandom of="$1" bs=1M status=none oflag=direct 2>/dev/null || true
}

# virt_domain NAME DISKS_XML: a domain of a libvirt test-driver node XML,
# on stdout.  The test driver runs every domain of its node file.
virt_domain() {
	local name=$1 disks=$2 uuid
	# A UUID of its own, stable across connections, as real hosts have.
	uuid=$(printf '%s' "$name" | md5sum | sed 's/^\(.\{8\}\)\(.\{4\}\)\(.\{4\}\)\(.\{4\}\)\(.\{12\}\).*/\1-\2-\3-\4-\5/')
	cat <<XML
  <domain type='test'>
    <name>$name</name>
    <uuid>$uuid</uuid>
    <memory>65536</memory>
    <os><type>hvm</type></os>
    <devices>
$disks
    </devices>
  </domain>
XML
}

# disk_block TARGET DEV [FORMAT]
disk_block() {
	printf "      <disk type='block' device='disk'><driver name='qemu' type='%s'/><source dev='%s'/><target dev='%s' bus='virtio'/></disk>\n" \
		"${3:-raw}" "$2" "$1"
}

# sha256 of LEN bytes at OFFSET of FILE (both in bytes).
sha_at() {
	local file=$1 off=$2 len=$3
	dd if="$file" iflag=skip_bytes,count_bytes skip="$off" count="$len" bs=1M status=none |
		sha256sum | cut -d' ' -f1
}

sha_file() {
	sha256sum "$1" | cut -d' ' -f1
}

# wait_snapfs_lvs VG N: the release of a closed file reaches snapfs
# asynchronously; wait (bounded) for the count to settle at N.
wait_snapfs_lvs() {
	local i
	for i in $(seq $([ "${SNAPFS_VALGRIND:-}" = 1 ] && echo 3000 || echo 300)); do
		[ "$(snapfs_lv_count "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	assert_snapfs_lvs "$1" "$2"
}

# open_errno FILE: the errno of open(2) on FILE, by name (ENOSPC, EBUSY),
# or "opened".
open_errno() {
	python3 - "$1" <<'PY'
import errno, os, sys
try:
    os.close(os.open(sys.argv[1], os.O_RDONLY))
except OSError as e:
    print(errno.errorcode[e.errno])
else:
    print("opened")
PY
}

# one_guest_xml FILE NAME DEV...: a test-driver node with one guest whose
# disks vda, vdb, ... are the given devices.
one_guest_xml() {
	local file=$1 name=$2 disks="" t=a
	shift 2
	for dev in "$@"; do
		disks+=$(disk_block "vd$t" "$dev")$'\n'
		t=$(echo "$t" | tr a-y b-z)
	done
	{
		echo "<node>"
		virt_domain "$name" "$disks"
		echo "</node>"
	} >"$file"
	add_cleanup "rm -f '$file'"
}

# in_private_namespace "$@": re-run the calling test in a private mount
# namespace (once), so that what it mounts over the host's files stays there.
in_private_namespace() {
	if [ -z "${SNAPFS_IN_NS:-}" ]; then
		SNAPFS_IN_NS=1 exec unshare --mount --propagation private -- bash "$0" "$@"
	fi
}

# start_private_libvirtd: a libvirtd with the qemu driver whose state and
# configuration live on tmpfs in this (private) mount namespace.
start_private_libvirtd() {
	[ -n "${SNAPFS_IN_NS:-}" ] || fail "start_private_libvirtd outside a private namespace"
	local conf f d
	conf=$(mktemp -d)
	cp -a /etc/libvirt/. "$conf/" 2>/dev/null || true
	printf '%s\n' 'unix_sock_group = "root"' 'unix_sock_ro_perms = "0777"' \
		'auth_unix_ro = "none"' 'auth_unix_rw = "none"' >"$conf/libvirtd.conf"
	# Guests run without the helpers a full host has (virtlogd, cgroups).
	printf '%s\n' 'user = "root"' 'group = "root"' 'security_driver = "none"' \
		'stdio_handler = "file"' 'namespaces = [ ]' 'cgroup_controllers = [ ]' \
		'remember_owner = 0' >"$conf/qemu.conf"
	mount --bind "$conf" /etc/libvirt
	# The qemu driver wants its default user to exist even when qemu.conf names
	# another (libvirt-daemon-system makes it on a real host).
	for f in passwd group; do
		cp /etc/$f "$conf/$f"
		mount --bind "$conf/$f" /etc/$f
	done
	getent passwd libvirt-qemu >/dev/null ||
		echo 'libvirt-qemu:x:64055:64055:libvirt:/var/lib/libvirt:/usr/sbin/nologin' >>/etc/passwd
	getent group libvirt-qemu >/dev/null || echo 'libvirt-qemu:x:64055:' >>/etc/group
	getent group kvm >/dev/null || echo 'kvm:x:64056:' >>/etc/group
	for d in /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
		mkdir -p "$d"
		mount -t tmpfs tmpfs "$d"
	done
	libvirtd --daemon --pid-file=/run/libvirt/test-libvirtd.pid
	add_cleanup 'kill "$(cat /run/libvirt/test-libvirtd.pid)" 2>/dev/null || true'
	wait_for -t 60 virsh -c qemu:///system version >/dev/null 2>&1 || fail "libvirtd did not start"
}

# snapfs_kill9 MOUNTPOINT: kill snapfs as a crash would (no cleanup of its
# own), then detach its dead mount.
snapfs_kill9() {
	kill -KILL "$SNAPFS_PID"
	wait_for -t 60 test -e "$SNAPFS_LOG.rc" || fail "snapfs survived kill -9"
	rm -f "$SNAPFS_LOG.pid"
	fusermount3 -u -z "$1" 2>/dev/null || umount -l "$1"
}

# seek_map FILE: the data extents of FILE as SEEK_DATA and SEEK_HOLE give
# them, one "START END" line each (bytes, END excluded).
seek_map() {
	python3 - "$1" <<'PY'
import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
off = 0
while off < size:
    try:
        data = os.lseek(fd, off, os.SEEK_DATA)
    except OSError as e:
        if e.errno != errno.ENXIO:
            raise
        break
    hole = os.lseek(fd, data, os.SEEK_HOLE)
    print(data, hole)
    off = hole
PY
}
