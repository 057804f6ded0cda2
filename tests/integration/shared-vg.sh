#!/bin/bash
# A shared VG (lvmlockd with sanlock): a snapshot needs its origin active
# exclusively on this host.  With the origin active in shared mode lvcreate
# refuses: the open fails with EBUSY, the log names the guest and the disk and
# quotes LVM's words, and no LV is left.  With the origin active exclusively
# the same open works and reads the origin's bytes.  (clvmd, the older way
# to share a VG, is gone from LVM 2.03.)
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
requires lvmlockd lvmlockctl sanlock lvcreate lvchange vgchange dmsetup losetup \
	sfdisk fusermount3 cmp python3
requires_root
# One of each daemon per host: one that runs already is not the test's to use.
if lvmlockctl --info >/dev/null 2>&1 || sanlock client status >/dev/null 2>&1; then
	skip "an lvmlockd or sanlock daemon runs here already"
fi

lvm_test_config 'global/use_lvmlockd = 1' 'local/host_id = 1'
test_tmpdir
vg=snapfs_shared
! vgs $vg >/dev/null 2>&1 || fail "VG $vg exists already"

# daemon_start NAME CMD...: run CMD, a daemon that stays in the foreground,
# in the background, its output in $TEST_TMPDIR/NAME.log and its pid in
# NAME.pid.  A subshell waits for it, so that once it exits its pid is gone.
daemon_start() {
	local name=$1
	shift
	(
		"$@" >"$TEST_TMPDIR/$name.log" 2>&1 &
		echo $! >"$TEST_TMPDIR/$name.pid"
		wait $!
	) &
	wait_for test -s "$TEST_TMPDIR/$name.pid" || fail "$name did not start"
}

daemon_gone() {
	! kill -0 "$(cat "$TEST_TMPDIR/$1.pid")" 2>/dev/null
}

# daemon_stop NAME CMD...: ask daemon NAME to quit with CMD and wait
# (bounded) for it; kill it if it does not.  Returns 1 unless CMD did it.
daemon_stop() {
	local name=$1 pid
	shift
	[ -s "$TEST_TMPDIR/$name.pid" ] || return 0
	pid=$(cat "$TEST_TMPDIR/$name.pid")
	"$@" >/dev/null 2>&1
	wait_for -t 20 daemon_gone "$name" && return 0
	log "$name did not quit; killing it"
	kill -TERM "$pid"
	wait_for -t 10 daemon_gone "$name" || kill -KILL "$pid"
	return 1
}

pv=$TEST_TMPDIR/pv.img
# The sanlock leases need an LV of 256 MiB (lvmlock) of their own.
truncate -s 384M "$pv"
dev=$(losetup --find --show -- "$pv") || fail "losetup failed on $pv"
add_cleanup "losetup -d '$dev'"
# A VG that outlived the daemons (something failed on the way): made local
# by force and removed; its lvmlock LV leaves the metadata but stays active.
add_cleanup "! vgs $vg >/dev/null 2>&1 ||
	{ vgchange -y --lock-type none --lock-opt force $vg;
	  vgremove -ff -y --config 'global/use_lvmlockd = 0' $vg;
	  dmsetup remove $vg-lvmlock; false; }"

# The test VM's device nodes are root's alone (0600): sanlock runs as root
# here, not as its own user.  No watchdog (-w 0): nothing is at stake.
daemon_start sanlock sanlock daemon -D -w 0 -U root -G root
add_cleanup "daemon_stop sanlock sanlock client shutdown"
wait_for sanlock client status >/dev/null 2>&1 || fail "sanlock does not answer"
daemon_start lvmlockd lvmlockd -D
add_cleanup "daemon_stop lvmlockd lvmlockctl --quit"
wait_for lvmlockctl --info >/dev/null 2>&1 || fail "lvmlockd does not answer"

# vgremove needs the VG's lockspace and stops it; lvmlockd and sanlock quit
# only when no lockspace is left.
add_cleanup "! vgs $vg >/dev/null 2>&1 ||
	{ vgchange -q -an $vg >/dev/null; vgremove -q -y $vg >/dev/null ||
	  { vgchange --lockstop $vg; false; }; }"
add_cleanup "[ \"\${rc:-0}\" = 0 ] || { lvmlockctl --info >&2;
	echo '--- sanlock:' >&2; tail -n 30 '$TEST_TMPDIR/sanlock.log' >&2;
	echo '--- lvmlockd:' >&2; tail -n 60 '$TEST_TMPDIR/lvmlockd.log' >&2; }"
# The first shared VG holds the global lock.  vgcreate starts the VG's
# lockspace (sanlock takes 20 s or more to join it); vgchange --lockstart,
# which a host runs at boot, then finds it started.
vgcreate -q -y --shared --locktype sanlock $vg "$dev" >/dev/null ||
	fail "vgcreate --shared failed"
vgchange --lockstart $vg >/dev/null || fail "vgchange --lockstart failed"
[ "$(vgs --noheadings -o lock_type $vg | tr -d ' ')" = sanlock ] || fail "$vg is not shared"

# A partitioned disk; lvcreate activates it exclusively.
lvcreate -q -y -n disk -L 32M $vg >/dev/null || fail "lvcreate $vg/disk failed"
fill_random /dev/$vg/disk
sfdisk -q --no-reread /dev/$vg/disk <<'P' || fail "sfdisk failed"
label: dos
start=2048, size=24576, type=83
start=26624, type=83
P
read -r p1_start p1_size < <(sfdisk --json /dev/$vg/disk | python3 -c '
import json, sys
p = json.load(sys.stdin)["partitiontable"]["partitions"][0]
print(p["start"] * 512, p["size"] * 512)') || fail "sfdisk --json failed"

# The mode of this host's lock on the disk LV, as lvmlockd holds it (lvs
# tells "active exclusively" for an LV active in shared mode too).
uuid=$(lvs --noheadings -o lv_uuid $vg/disk | tr -d ' ')
lv_lock() {
	lvmlockctl --info | awk -v u="$uuid" '$1 == "LK" && $2 == "LV" && $4 == u { print $3 }'
}
lvchange -an $vg/disk || fail "lvchange -an failed"
lvchange -asy $vg/disk || fail "lvchange -asy failed"
[ "$(lv_lock)" = sh ] || fail "disk LV lock: expected sh, got '$(lv_lock)'"

xml=$TEST_TMPDIR/node.xml
one_guest_xml "$xml" web /dev/$vg/disk
mnt=/tmp/snapfs-shared-vg
snapfs_start "test://$xml" $mnt

lvs_before=$(lvs -a --noheadings -o lv_name $vg | sort)
got=$(open_errno $mnt/web/vda.raw)
[ "$got" = EBUSY ] || fail "open with the origin active shared: expected EBUSY, got $got"
# LVM's two lines, as one log line.
words="LV is already locked with incompatible mode: $vg/disk; Failed to lock origin LV $vg/disk"
[ "$(grep -c 'guest web disk vda' "$SNAPFS_LOG")" = 1 ] ||
	fail "expected one log line about guest web disk vda"
grep -qxF "snapfs: error: guest web disk vda: snapshot of $vg/disk failed: $words" \
	"$SNAPFS_LOG" || fail "log lacks guest, disk and LVM's words: $words"
got=$(open_errno $mnt/web/vda1.raw)
[ "$got" = EBUSY ] || fail "open of a partition with the origin active shared: got $got"
[ "$(lvs -a --noheadings -o lv_name $vg | sort)" = "$lvs_before" ] || fail "LVs changed"
assert_snapfs_lvs $vg 0
no_snapfs_lvs $vg
[ "$(lv_lock)" = sh ] || fail "disk LV lock after the refusal: expected sh, got '$(lv_lock)'"

# Active exclusively the same open takes the snapshot.
lvchange -an $vg/disk || fail "lvchange -an failed"
lvchange -aey $vg/disk || fail "lvchange -aey failed"
[ "$(lv_lock)" = ex ] || fail "disk LV lock: expected ex, got '$(lv_lock)'"
exec 3<$mnt/web/vda.raw
assert_snapfs_lvs $vg 1
cmp -s - /dev/$vg/disk <&3 || fail "vda.raw differs from the origin"
[ "$(sha_file $mnt/web/vda1.raw)" = "$(sha_at /dev/$vg/disk "$p1_start" "$p1_size")" ] ||
	fail "vda1.raw differs from the origin's first partition"
exec 3<&-
wait_snapfs_lvs $vg 0
no_snapfs_lvs $vg
[ "$(lvs -a --noheadings -o lv_name $vg | sort)" = "$lvs_before" ] || fail "LVs left behind"
echo "shared-vg: ok"
