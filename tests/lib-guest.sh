# shellcheck shell=bash
# Helpers for tests with RUNNING guests: a real qemu guest (under the private
# libvirtd of start_private_libvirtd, TCG is enough) whose /init writes
# numbered records to its disks without pause, one block at a time, so that
# a copy of its disks is judged by what it holds: one instant's records, or
# a torn mix (tests/guest/mkguest describes the guest and the records,
# tests/guest/records.py the judge).  Sourced after functions.sh and
# lib-snapfs.sh:
#
#	guest_boot_files
#	guest_xml web "$(disk_file vda "$fs/vda.img")" \
#		"snapfs_rec=vda1 snapfs_slots=64" >"$TEST_TMPDIR/web.xml"
#	guest_start web
#	... copy the disks ...
#	guest_records_check consistent --slots 64 vda1.copy

_guest_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)/guest

# Seconds a guest may take from `virsh start` to its first records: a boot
# under TCG takes a few, a loaded machine more.
GUEST_BOOT_TIMEOUT=${GUEST_BOOT_TIMEOUT:-120}

_guest_virsh() { virsh -q -c qemu:///system "$@"; }

# guest_boot_files: build (once; tests/guest/mkguest skips what is up to
# date) the guest's kernel and initramfs into $SNAPFS_GUEST_CACHE, else
# $SNAPFS_BUILDDIR/tests/guest/cache, else the test's scratch directory, and
# set GUEST_KERNEL and GUEST_INITRD to them (the kernel is the uncompressed
# one when it boots through PVH: faster under TCG).  Also makes TEST_TMPDIR.
# Not in $(...): it sets variables of the test's shell.  Unmet without a
# kernel in /boot or a static busybox.
# shellcheck disable=SC2034 # the results, for the tests
GUEST_KERNEL=
GUEST_INITRD=
guest_boot_files() {
	local dir k
	requires busybox cpio modprobe
	test_tmpdir
	for k in /boot/vmlinuz-*; do
		[ -e "$k" ] || unmet "no kernel in /boot (install linux-image-amd64)"
	done
	if ldd "$(command -v busybox)" >/dev/null 2>&1; then
		unmet "busybox is dynamically linked (install busybox-static)"
	fi
	if [ -n "${SNAPFS_GUEST_CACHE:-}" ]; then
		dir=$SNAPFS_GUEST_CACHE
	elif [ -n "${SNAPFS_BUILDDIR:-}" ]; then
		dir=$SNAPFS_BUILDDIR/tests/guest/cache
	else
		dir=$TEST_TMPDIR/guest
	fi
	"$_guest_dir/mkguest" "$dir" || fail "tests/guest/mkguest $dir failed"
	GUEST_KERNEL=$dir/vmlinuz
	[ ! -s "$dir/vmlinux" ] || GUEST_KERNEL=$dir/vmlinux
	GUEST_INITRD=$dir/initramfs.cpio
}

# guest_console NAME: the file guest NAME's serial console (its kernel's
# messages and its /init's) is written to, on stdout.
guest_console() {
	[ -n "$TEST_TMPDIR" ] || fail "guest_console: no TEST_TMPDIR (call guest_boot_files first)"
	printf '%s\n' "$TEST_TMPDIR/$1.console"
}

# guest_xml NAME DISKS_XML CMDLINE: the domain XML of a record-writing guest
# NAME, on stdout: type qemu (TCG), 1 vCPU, 256 MiB, the kernel and
# initramfs of guest_boot_files booted directly, with CMDLINE (snapfs_rec=,
# snapfs_slots=... as tests/guest/mkguest says) after its own options, the
# disks DISKS_XML (disk_file, disk_block), the serial console to the file
# guest_console names; no network, no graphics.  Powering off, rebooting or
# crashing ends the guest (a panic reboots: panic=-1).
guest_xml() {
	[ $# -eq 3 ] || fail "usage: guest_xml NAME DISKS_XML CMDLINE"
	local name=$1 disks=$2 cmdline=$3 console
	[ -n "$GUEST_KERNEL" ] || fail "guest_xml: call guest_boot_files first"
	console=$(guest_console "$name")
	cat <<X
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>$GUEST_KERNEL</kernel>
    <initrd>$GUEST_INITRD</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet $cmdline</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
$disks
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='$console'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
X
}

# guest_start NAME [XML_FILE]: define guest NAME from XML_FILE (default
# $TEST_TMPDIR/NAME.xml, as guest_xml wrote it) with the private libvirtd,
# start it, and wait until its console says it writes records and has
# written a few (its first "seq" line).  At exit it is destroyed and
# undefined; when the test failed, the end of its console and of qemu's log
# are shown.  Fails if the guest stops or says "error" before that.
guest_start() {
	[ $# -ge 1 ] && [ $# -le 2 ] || fail "usage: guest_start NAME [XML_FILE]"
	local name=$1 xml=${2:-$TEST_TMPDIR/$1.xml} console
	console=$(guest_console "$name")
	rm -f -- "$console"
	_guest_virsh define "$xml" >/dev/null || fail "virsh define $xml"
	add_cleanup "virsh -q -c qemu:///system destroy '$name' >/dev/null 2>&1 || true; virsh -q -c qemu:///system undefine '$name' >/dev/null"
	add_cleanup "[ \"\${rc:-0}\" = 0 ] || guest_show_logs '$name'"
	_guest_virsh start "$name" >/dev/null || fail "virsh start $name"
	if ! wait_for -t "$GUEST_BOOT_TIMEOUT" _guest_started_or_gone "$name" ||
		! _guest_has_seq "$name"; then
		guest_show_logs "$name"
		fail "guest $name did not start writing records"
	fi
}

_guest_has_seq() { [ "$(guest_seq "$1")" -gt 0 ]; }

_guest_started_or_gone() {
	local console
	console=$(guest_console "$1")
	_guest_has_seq "$1" && return 0
	grep -q '^snapfs-guest: error' "$console" 2>/dev/null && return 0
	[ "$(_guest_virsh domstate "$1" 2>/dev/null)" = running ] || return 0
	return 1
}

# guest_show_logs NAME: the end of guest NAME's console and of qemu's log
# for it, on stderr.
guest_show_logs() {
	local console
	console=$(guest_console "$1")
	echo "--- console of guest $1 (last lines):" >&2
	tail -n 20 -- "$console" >&2 2>/dev/null || true
	echo "--- qemu's log of guest $1 (last lines):" >&2
	tail -n 20 -- "/var/log/libvirt/qemu/$1.log" >&2 2>/dev/null || true
}

# guest_seq NAME: the last sequence number guest NAME's console reported
# (it reports every snapfs_every records, after writing them), 0 if none yet.
guest_seq() {
	local console s
	console=$(guest_console "$1")
	s=$(sed -n 's/^snapfs-guest: seq \([0-9][0-9]*\)\r\{0,1\}$/\1/p' -- "$console" 2>/dev/null | tail -n 1)
	echo "${s:-0}"
}

_guest_seq_at_least() { [ "$(guest_seq "$1")" -ge "$2" ]; }

# guest_wait_seq NAME N [SECONDS]: wait (default 60 s) until guest NAME has
# reported record N or a later one; fail if it does not.
guest_wait_seq() {
	wait_for -t "${3:-60}" _guest_seq_at_least "$1" "$2" || {
		guest_show_logs "$1"
		fail "guest $1 did not reach record $2 (at $(guest_seq "$1"))"
	}
}

# guest_writes NAME: fail unless guest NAME is running and goes on writing:
# it reports a record at least 32 past the one it reported last.
guest_writes() {
	local s
	[ "$(_guest_virsh domstate "$1")" = running ] ||
		fail "guest $1 is $(_guest_virsh domstate "$1"), not running"
	s=$(guest_seq "$1")
	guest_wait_seq "$1" $((s + 32))
}

# guest_job NAME: the type of guest NAME's job (Unbounded for a backup
# job, None), as virsh domjobinfo says it; guest_no_job NAME: it has none.
guest_job() {
	_guest_virsh domjobinfo "$1" 2>/dev/null | awk -F: '$1 == "Job type" { gsub(/ /, "", $2); print $2 }'
}
guest_no_job() { [ "$(guest_job "$1")" = None ]; }

# guest_blk_clean NAME: fail unless `virsh domblkerror NAME` reports no I/O
# error on any of guest NAME's disks.
guest_blk_clean() {
	local out
	out=$(_guest_virsh domblkerror "$1") || fail "virsh domblkerror $1"
	[ "$out" = "No errors found" ] || fail "guest $1's disks have errors: $out"
}

# guest_records_check WANT [RECORDS_ARG...]: run tests/guest/records.py with
# the RECORDS_ARGs (COPY... --slots N [--offset BYTES]...) and fail unless
# its verdict is WANT: "consistent" (exit 0) or "torn" (exit 1).  Its output
# is logged and left in GUEST_RECORDS_OUT (first line "consistent: records
# A..B" or "torn: ..."); a judge that cannot judge (exit 2) fails the test.
# shellcheck disable=SC2034 # the result, for the tests
GUEST_RECORDS_OUT=
guest_records_check() {
	[ $# -ge 2 ] || fail "usage: guest_records_check consistent|torn COPY... --slots N [--offset BYTES]..."
	local want=$1 st=0
	shift
	case $want in
	consistent | torn) ;;
	*) fail "guest_records_check: WANT is consistent or torn, not $want" ;;
	esac
	GUEST_RECORDS_OUT=$(python3 "$_guest_dir/records.py" "$@" 2>&1) || st=$?
	log "records.py $*: $GUEST_RECORDS_OUT"
	case $want:$st in
	consistent:0 | torn:1) ;;
	*:0 | *:1) fail "the copies are ${GUEST_RECORDS_OUT%%:*}, not $want" ;;
	*) fail "records.py could not judge (status $st): $GUEST_RECORDS_OUT" ;;
	esac
}

# guest_records_window: the A and B of "consistent: records A..B" in
# GUEST_RECORDS_OUT, as "A B" on stdout.
guest_records_window() {
	local w=${GUEST_RECORDS_OUT%%$'\n'*}
	[[ $w =~ ^consistent:\ records\ ([0-9]+)\.\.([0-9]+)$ ]] ||
		fail "guest_records_window: no window in: $w"
	echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
}
