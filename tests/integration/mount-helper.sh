#!/bin/bash
# mount(8) drives snapfs through mount.snapfs: "mount -t snapfs", an fstab
# line, the .mount unit systemd-fstab-generator makes of that line and the
# one README.md shows.  Options for mount(8) and systemd are dropped, mount
# returns once the tree is usable, "umount DIR" ends snapfs and its
# snapshots, a bad source or option fails the mount with snapfs's message.
#
# mount(8) looks for helpers only in /sbin, /sbin/fs.d and /sbin/fs, so the
# test runs in a private mount namespace in which an overlay adds the helper
# under test to /sbin; the host's /sbin is never touched.  LIBMOUNT_UTAB
# keeps libmount's notes on these mounts in the test's scratch directory.
. "$(dirname -- "$0")/../functions.sh" || exit 99
requires lvcreate unshare nsenter mount umount fusermount3 sha256sum
: "${MOUNT_SNAPFS_BIN:?MOUNT_SNAPFS_BIN must name the mount.snapfs binary}"

if [ -z "${SNAPFS_IN_NS:-}" ]; then
	SNAPFS_IN_NS=1 exec unshare --mount --propagation private -- bash "$0" "$@"
fi
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
[ "${SNAPFS_VALGRIND:-}" != 1 ] || log "snapfs runs as mount.snapfs starts it, not under valgrind"

test_tmpdir
export LIBMOUNT_UTAB=$TEST_TMPDIR/utab

# ---- the helper where mount(8) looks for it -----------------------------------

helpers=$TEST_TMPDIR/helpers
mkdir "$helpers"
cp -- "$MOUNT_SNAPFS_BIN" "$helpers/mount.snapfs"
# What /proc/self/mountinfo calls the mounts (a remount asks for this one).
ln -s mount.snapfs "$helpers/mount.fuse.snapfs"
sbin=$(realpath /sbin)
mount -t overlay snapfs-helpers -o "lowerdir=$helpers:$sbin" "$sbin" ||
	unmet "cannot put an overlay on $sbin (no overlayfs?)"
[ -x /sbin/mount.snapfs ] || fail "the overlay does not show mount.snapfs"

# ---- a guest ------------------------------------------------------------------

vg=snapfs_mhelper
setup_vg $vg 64
make_lv $vg disk 8M
fill_random /dev/$vg/disk
disk_sum=$(sha_file /dev/$vg/disk)
xml=$TEST_TMPDIR/node.xml
one_guest_xml "$xml" guest /dev/$vg/disk
src=test://$xml
# Not under /dev/shm: systemd gives mounts there no local-fs.target
# ordering, and the units below must be checked with it.
mnt=/tmp/snapfs-mount-helper
mkdir -p "$mnt"
add_cleanup "rmdir '$mnt'"
group=0
if getent group backup >/dev/null; then group=backup; fi
gid=$(getent group "$group" | cut -d: -f3)

# ---- helpers ------------------------------------------------------------------

# The pid of the snapfs serving MNT (no fork per process: the VM is slow).
snapfs_pid_of() {
	local p args
	for p in /proc/[0-9]*; do
		mapfile -d '' args 2>/dev/null <"$p/cmdline" || continue
		if [ "${args[0]-}" = "$SNAPFS_BIN" ] && [ "${args[-1]}" = "$1" ]; then
			echo "${p#/proc/}"
			return 0
		fi
	done
	return 1
}

# Gone, or a zombie that nobody has reaped yet (a daemon's parent is init).
gone() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	[ "${stat%% *}" = Z ]
}

# mounted_ok MNT: the mount is up, read-only, nosuid, nodev, of type
# fuse.snapfs and source $src, and its snapfs is known as $pid.
mounted_ok() {
	local m=$1 line opts o
	snapfs_mounted "$m" || fail "$m is not a snapfs mount"
	line=$(awk -v m="$m" '$5 == m' /proc/self/mountinfo)
	opts=$(awk '{ print $6 }' <<<"$line")
	for o in ro nosuid nodev; do
		case ",$opts," in *",$o,"*) ;; *) fail "mount options '$opts' lack $o" ;; esac
	done
	case $line in *" - fuse.snapfs $src "*) ;; *) fail "mountinfo: $line" ;; esac
	pid=$(snapfs_pid_of "$m") || fail "no snapfs process serves $m"
}

# unmount_ok MNT [UMOUNT ARGS...]: umount MNT; snapfs exits, and every
# snapshot it made goes (umount returns before snapfs has removed them).
unmount_ok() {
	local m=$1
	shift
	umount "$m" "$@" || fail "umount $m failed"
	! snapfs_mounted "$m" || fail "$m still mounted after umount"
	wait_snapfs_lvs $vg 0
	wait_for -t 60 gone "$pid" || fail "snapfs ($pid) still runs after umount"
	pid=
}

# Whatever happens, nothing stays mounted or running.
pid=
cleanup_mount() {
	if snapfs_mounted "$mnt"; then
		umount "$mnt" 2>/dev/null || fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt"
	fi
	if [ -n "$pid" ] && ! wait_for -t 60 gone "$pid"; then
		# still mounted in another namespace (mount -N), or stuck
		nsenter -t "$pid" -m umount "$mnt" 2>/dev/null || kill -TERM "$pid"
		wait_for -t 60 gone "$pid"
		return 1
	fi
}
add_cleanup cleanup_mount

# not_mounted_ok: nothing was mounted and no snapfs was left running.
not_mounted_ok() {
	! snapfs_mounted "$mnt" || fail "$mnt got mounted"
	! snapfs_pid_of "$mnt" >/dev/null || fail "a snapfs process was left running"
}

# ---- mount -t snapfs, and umount ------------------------------------------------

# mount(8) adds rw; systemd's and fstab's options come through too.
mount -t snapfs "$src" "$mnt" \
	-o allow_other,gid=$group,linger=60,nofail,_netdev,x-systemd.automount,defaults ||
	fail "mount -t snapfs failed"
# No waiting: snapfs goes to the background only once the mount is ready.
mounted_ok "$mnt"
case ",$(awk -v m="$mnt" '$5 == m { print $NF }' /proc/self/mountinfo)," in
*,allow_other,*) ;;
*) fail "allow_other did not reach FUSE" ;;
esac
[ "$(stat -c %g "$mnt/guest/vda.raw")" = "$gid" ] || fail "gid=$group did not reach snapfs"
[ "$(sha_file "$mnt/guest/vda.raw")" = "$disk_sum" ] || fail "vda.raw differs from the LV"
# Closed but lingering: umount must remove it.
assert_snapfs_lvs $vg 1
unmount_ok "$mnt"
log "mount -t snapfs, umount: ok"

# ---- failures -------------------------------------------------------------------

if out=$(mount -t snapfs lvm:snapfs_no_such_vg "$mnt" 2>&1); then
	fail "mounting a missing VG succeeded"
fi
case $out in
*lvm:snapfs_no_such_vg*) ;;
*) fail "the message does not name the source: $out" ;;
esac
not_mounted_ok

if out=$(mount -t snapfs "$src" "$mnt" -o allow_other,snapfs_no_such_option=1 2>&1); then
	fail "an unknown option was accepted"
fi
case $out in
*snapfs_no_such_option*) ;;
*) fail "the message does not name the option: $out" ;;
esac
not_mounted_ok
log "bad source, bad option: mount fails with the reason: ok"

# -f: everything but the mount; -v says what would be run.
out=$(mount -f -v -t snapfs "$src" "$mnt" -o allow_other,nofail 2>&1) || fail "mount -f -v: $out"
case $out in
*"would run $SNAPFS_BIN -o allow_other $src $mnt"*) ;;
*) fail "mount -f -v printed: $out" ;;
esac
not_mounted_ok
log "mount -f -v: ok"

# ---- an fstab line ----------------------------------------------------------------

opts=allow_other,gid=$group,nofail,x-systemd.after=libvirtd.service
# The issue's example asks for freeze=, which older snapfs do not know.
case $("$SNAPFS_BIN" --help) in *freeze=*) opts=freeze=auto,$opts ;; esac
fstab=$TEST_TMPDIR/fstab
printf '# <source> <dir> <type> <options> <dump> <pass>\n%s %s snapfs %s 0 0\n' \
	"$src" "$mnt" "$opts" >"$fstab"
mount -T "$fstab" "$mnt" || fail "mount -T $fstab $mnt failed"
mounted_ok "$mnt"
[ "$(stat -c %g "$mnt/guest")" = "$gid" ] || fail "gid=$group from fstab did not reach snapfs"
# A remount would stack a second snapfs: refused, the first stays.
if out=$(mount -o remount,ro "$mnt" 2>&1); then fail "remount succeeded"; fi
case $out in *"remount"*) ;; *) fail "remount refused without a reason: $out" ;; esac
mounted_ok "$mnt"
exec 3<"$mnt/guest/vda.raw"
assert_snapfs_lvs $vg 1
exec 3<&-
unmount_ok "$mnt"
log "fstab line, remount refused: ok"

# ---- mount --namespace ------------------------------------------------------------

unshare --mount --propagation unchanged sleep 600 &
holder=$!
add_cleanup "kill $holder 2>/dev/null || true"
in_other_ns() { [ "$(readlink "/proc/$1/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ]; }
wait_for in_other_ns "$holder" || fail "unshare did not make a mount namespace"
mount -N "$holder" -t snapfs "$src" "$mnt" || fail "mount -N failed"
! snapfs_mounted "$mnt" || fail "mount -N mounted in our namespace"
grep -q " $mnt .* - fuse.snapfs " "/proc/$holder/mountinfo" ||
	fail "mount -N did not mount in the other namespace"
pid=$(snapfs_pid_of "$mnt") || fail "no snapfs serves $mnt in the other namespace"
nsenter -t "$holder" -m umount "$mnt" || fail "umount in the other namespace failed"
wait_snapfs_lvs $vg 0
wait_for -t 60 gone "$pid" || fail "snapfs ($pid) still runs after umount"
pid=
kill $holder
log "mount --namespace: ok"

# ---- systemd .mount units ------------------------------------------------------------
# Without systemd as PID 1, a unit is checked as systemd would load it
# (systemd-analyze verify: settings, the name matching Where=, ordering
# cycles), then mounted and unmounted with the very commands systemd runs
# for it: "mount WHAT WHERE -t TYPE -o OPTIONS" without nofail, auto and
# noauto, and "umount WHERE -c" (src/core/mount.c, systemd 252).

# mount_unit_ok FILE: verify the unit, mount and unmount as systemd would.
mount_unit_ok() {
	local unit=$1 dir what where type options out bad
	dir=$(dirname -- "$unit")
	# At boot the unit starts along with libvirtd, which Debian orders after
	# local-fs.target and remote-fs.target: the unit, ordered after
	# libvirtd, must not be ordered before them (nofail sees to that).
	# Without libvirtd.service here, a stand-in with its ordering.
	if [ ! -e /lib/systemd/system/libvirtd.service ] &&
		[ ! -e /usr/lib/systemd/system/libvirtd.service ]; then
		printf '%s\n' '[Unit]' 'Description=stand-in for libvirtd.service (its ordering)' \
			'After=network.target local-fs.target remote-fs.target' \
			'[Service]' 'ExecStart=/bin/true' >"$dir/libvirtd.service"
	fi
	printf '%s\n' '[Unit]' 'Description=what boot starts' \
		"Wants=$(basename -- "$unit") libvirtd.service" >"$dir/snapfs-test-boot.target"
	out=$(SYSTEMD_LOG_LEVEL=debug systemd-analyze verify --man=no "$unit" \
		"$dir/snapfs-test-boot.target" 2>&1) ||
		fail "systemd-analyze verify $unit: $(grep -v '^[[:space:]]' <<<"$out" | tail -n 20)"
	bad=$(grep -E 'ordering cycle|Unknown (key|section)|bad unit file|Refusing' <<<"$out") &&
		fail "systemd-analyze verify $unit: $bad"
	what=$(sed -n 's/^What=//p' "$unit")
	where=$(sed -n 's/^Where=//p' "$unit")
	type=$(sed -n 's/^Type=//p' "$unit")
	options=$(sed -n 's/^Options=//p' "$unit" | tr ',' '\n' | grep -vxE 'nofail|auto|noauto' |
		paste -sd,)
	[ "$what" = "$src" ] && [ "$where" = "$mnt" ] && [ "$type" = snapfs ] ||
		fail "$unit: What=$what Where=$where Type=$type"
	mount "$what" "$where" -t "$type" -o "$options" || fail "ExecMount of $unit failed"
	mounted_ok "$mnt"
	[ "$(sha_file "$mnt/guest/vda.raw")" = "$disk_sum" ] || fail "vda.raw differs"
	unmount_ok "$where" -c
}

if command -v systemd-analyze >/dev/null && [ -x /lib/systemd/system-generators/systemd-fstab-generator ]; then
	# The unit systemd makes of the fstab line above, at boot.
	gen=$TEST_TMPDIR/generator
	mkdir "$gen"
	SYSTEMD_FSTAB=$fstab SYSTEMD_LOG_LEVEL=warning \
		/lib/systemd/system-generators/systemd-fstab-generator "$gen" "$gen" "$gen" ||
		fail "systemd-fstab-generator failed on $fstab"
	unit_name=$(systemd-escape --path --suffix=mount "$mnt")
	[ -f "$gen/$unit_name" ] || fail "no $unit_name from the generator: $(ls "$gen")"
	grep -qx 'After=libvirtd.service' "$gen/$unit_name" || fail "x-systemd.after= was lost"
	mount_unit_ok "$gen/$unit_name"
	log "the unit made of the fstab line: ok"

	# The unit README.md shows, with this test's What= and Where=.
	own=$TEST_TMPDIR/units
	mkdir "$own"
	cat >"$own/$unit_name" <<UNIT
[Unit]
Description=KVM guests' disks as image files (snapfs)
Documentation=man:snapfs(8) man:mount.snapfs(8)
After=libvirtd.service virtqemud.service

[Mount]
What=$src
Where=$mnt
Type=snapfs
Options=allow_other,gid=$group,nofail
TimeoutSec=180

[Install]
WantedBy=multi-user.target
UNIT
	mount_unit_ok "$own/$unit_name"
	log "the unit of README.md: ok"
else
	log "no systemd-analyze or systemd-fstab-generator: .mount units not checked"
fi

no_snapfs_lvs $vg
echo "mount-helper: ok"
