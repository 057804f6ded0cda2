# shellcheck shell=bash
# Shared helpers for the integration tests (tests/integration/*.sh).
#
# A test starts with
#
#	. "$(dirname -- "$0")/../functions.sh"
#
# and runs under tests/vm/run-test, as root, with bash, natively or in the
# test VM (see tests/vm/README).  Sourcing this turns on `set -euo pipefail`.
#
# Exit statuses (automake's): 0 pass, 1 fail, 77 skip, 99 hard error.

set -euo pipefail

TEST_NAME=$(basename -- "$0" .sh)

# ---- messages and results -------------------------------------------------

# log MSG...: a line on stderr (it ends in the test's .log file).
log() { printf '%s: %s\n' "$TEST_NAME" "$*" >&2; }

# fail MSG...: the test fails.
fail() {
	printf '%s: FAIL: %s\n' "$TEST_NAME" "$*" >&2
	exit 1
}

# skip MSG...: the test does not apply here.
skip() {
	printf '%s: SKIP: %s\n' "$TEST_NAME" "$*" >&2
	exit 77
}

# unmet MSG...: something the test needs is missing: a skip, but under
# CI=true a hard error, since CI must be able to run every test.
unmet() {
	if [ "${CI-}" = true ]; then
		printf '%s: ERROR: missing under CI: %s\n' "$TEST_NAME" "$*" >&2
		exit 99
	fi
	skip "$@"
}

# requires CMD...: unmet unless every CMD is on PATH.
requires() {
	local cmd missing=()
	for cmd in "$@"; do
		command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
	done
	[ ${#missing[@]} -eq 0 ] || unmet "missing command(s): ${missing[*]}"
}

# requires_root: unmet unless we are root.
requires_root() {
	[ "$(id -u)" = 0 ] || unmet "needs root"
}

# ---- cleanup ----------------------------------------------------------------

# add_cleanup "CMD": run CMD (a string, eval'ed in a subshell) when the test
# exits, however it exits.  Cleanups run last-added first and can read $rc,
# the test's exit status so far.  A cleanup that fails is logged and turns a
# passing test into a failing one: it means the test left something behind.
_cleanups=()
add_cleanup() { _cleanups+=("$*"); }

_run_cleanups() {
	local rc=$? i
	set +e
	for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do
		if ! (eval "${_cleanups[i]}"); then
			log "cleanup failed: ${_cleanups[i]}"
			[ "$rc" != 0 ] || rc=1
		fi
	done
	_cleanups=()
	exit "$rc"
}
trap _run_cleanups EXIT
# With set -e a failing command ends the test silently; say which one it was.
_on_err() { log "line $2: status $1 from: $3"; }
trap '_on_err $? $LINENO "$BASH_COMMAND"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# ---- waiting ----------------------------------------------------------------

# wait_for [-t SECONDS] CMD...: run CMD every 0.1 s until it succeeds; fail
# after SECONDS (default $SNAPFS_WAIT_TIMEOUT, else 30; the test VM is slow).
# Returns CMD's success, or 1 after the timeout, with a message.
wait_for() {
	local timeout=${SNAPFS_WAIT_TIMEOUT:-30}
	if [ "${1-}" = -t ]; then
		timeout=$2
		shift 2
	fi
	local now=${EPOCHREALTIME/[.,]/}
	local deadline=$((now + timeout * 1000000))
	until "$@"; do
		now=${EPOCHREALTIME/[.,]/}
		if [ "$now" -ge "$deadline" ]; then
			log "wait_for: gave up after ${timeout}s: $*"
			return 1
		fi
		sleep 0.1
	done
}

# ---- scratch space ----------------------------------------------------------

# test_tmpdir: make this test's scratch directory on tmpfs (once) and set
# TEST_TMPDIR to it; it is removed at exit.  Not in $(...): the directory and
# its cleanup must be made in the test's own shell.
TEST_TMPDIR=
test_tmpdir() {
	[ -z "$TEST_TMPDIR" ] || return 0
	local base=${SNAPFS_TEST_TMPDIR:-}
	if [ -z "$base" ]; then
		base=/tmp
		[ "$(stat -f -c %T /dev/shm 2>/dev/null)" != tmpfs ] || base=/dev/shm
	fi
	TEST_TMPDIR=$(mktemp -d "$base/snapfs-$TEST_NAME.XXXXXX")
	add_cleanup "rm -rf -- '$TEST_TMPDIR'"
}

# ---- LVM --------------------------------------------------------------------

# setup_vg VG PV_SIZE_MB [NPVS]: make volume group VG on NPVS (default 1)
# loop devices, each backed by a sparse PV_SIZE_MB file on tmpfs.  The PVs'
# devices are left in the array SETUP_VG_PVS.  At exit the VG (with all its
# LVs) is removed, the loop devices detached and the files deleted.
# Use names unique to the test: a native run shares the host's LVM.
SETUP_VG_PVS=()
setup_vg() {
	[ $# -ge 2 ] || fail "usage: setup_vg VG PV_SIZE_MB [NPVS]"
	local vg=$1 size=$2 npvs=${3:-1} i file dev
	requires_root
	requires losetup truncate vgcreate vgremove
	vgs "$vg" >/dev/null 2>&1 && fail "setup_vg: VG $vg exists already"
	test_tmpdir
	SETUP_VG_PVS=()
	for ((i = 0; i < npvs; i++)); do
		file=$TEST_TMPDIR/$vg-pv$i.img
		truncate -s "${size}M" -- "$file"
		add_cleanup "rm -f -- '$file'"
		dev=$(losetup --find --show -- "$file") || fail "losetup failed on $file"
		add_cleanup "losetup -d '$dev'"
		SETUP_VG_PVS+=("$dev")
	done
	vgcreate -q -y "$vg" "${SETUP_VG_PVS[@]}" >/dev/null || fail "vgcreate $vg failed"
	add_cleanup "! vgs '$vg' >/dev/null 2>&1 || vgremove -q -ff -y '$vg' >/dev/null"
}

# lvm_test_config SETTING...: from here on, this test's LVM commands and the
# snapfs and dmeventd it starts read a configuration of the test's own: the
# settings in which the host's differs from LVM's defaults, with each SETTING
# ("section/key = value") over them.  It is a copy that LVM_SYSTEM_DIR names
# (snapfs passes that variable on to lvm), so the host's /etc/lvm is left
# alone, also in a native run.  Call it before setup_vg.
lvm_test_config() {
	local dir s key want got
	requires lvmconfig
	test_tmpdir
	dir=$TEST_TMPDIR/lvm
	mkdir -p "$dir"
	lvmconfig --type diff >"$dir/lvm.conf" || fail "lvmconfig --type diff failed"
	# A host that uses a devices file lists there the PVs LVM may use.
	if [ -d "${LVM_SYSTEM_DIR:-/etc/lvm}/devices" ]; then
		cp -a "${LVM_SYSTEM_DIR:-/etc/lvm}/devices" "$dir/"
	fi
	printf '%s\n' "$@" >"$dir/lvmlocal.conf"
	export LVM_SYSTEM_DIR=$dir
	for s in "$@"; do
		key=${s%%=*}
		key=${key//[[:space:]]/}
		want=${s#*=}
		want=${key##*/}=${want//[[:space:]]/}
		got=$(lvmconfig "$key") || fail "lvm_test_config: lvmconfig $key failed"
		[ "$got" = "$want" ] || fail "lvm_test_config: LVM reads $got, not $want"
	done
}

# no_snapfs_lvs VG: fail if any LV of VG carries a tag starting with
# "snapfs" (the tag snapfs puts on the snapshots it makes): none may be left.
no_snapfs_lvs() {
	local vg=$1 out name tags
	out=$(lvs --noheadings --separator '|' -o lv_name,lv_tags -- "$vg") ||
		fail "no_snapfs_lvs: lvs $vg failed"
	while IFS='|' read -r name tags; do
		name=${name//[[:space:]]/}
		case ",$tags," in
		*,snapfs*) fail "LV $vg/$name left behind (tags: $tags)" ;;
		esac
	done <<<"$out"
}

# ---- snapfs -----------------------------------------------------------------
# Helpers for mounting and checking snapfs itself go here.  The binaries
# under test are in $SNAPFS_BIN and $MOUNT_SNAPFS_BIN; the trees are
# $SNAPFS_SRCDIR and $SNAPFS_BUILDDIR; SNAPFS_VALGRIND=1 asks for snapfs
# under valgrind memcheck.
