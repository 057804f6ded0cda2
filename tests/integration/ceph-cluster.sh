#!/bin/bash
# tests/lib-ceph.sh itself: a one-host Ceph cluster comes up, serves RBD
# images to client.snapfs, survives a restart of its mon and goes away.
# Checked:
#  - rbd create, import, snap create and export as client.snapfs: the
#    snapshot exported is the bytes imported, not those written after it;
#  - rbd bench writes to an image;
#  - with the mon stopped no command answers; started again on its data,
#    the cluster answers, still has the image, and the OSD serves it;
#  - client.snapfs has the key CEPH_SNAPFS_KEY and works with only
#    CEPH_MON_ADDR and that key, no conf file; it cannot create a pool;
#  - a stopped OSD is down for the mon; started again, it serves the
#    snapshot;
#  - ceph_stop leaves no process of the cluster.
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-ceph.sh" || exit 99

test_tmpdir
t0=${EPOCHREALTIME/[.,]/}
ceph_start "$TEST_TMPDIR/ceph"
log "cluster up in $(((${EPOCHREALTIME/[.,]/} - t0) / 1000)) ms"
ceph_cli health detail >&2 || true

# rbd as client.snapfs, with only the conf.
snap() { timeout -k 5 60 rbd --id snapfs "$@"; }

snap create --size 64M rbd/img || fail "rbd create as client.snapfs"
[ "$(snap ls rbd)" = img ] || fail "rbd ls: $(snap ls rbd)"
snap bench --io-type write --io-size 64K --io-total 16M --io-pattern rand rbd/img >/dev/null ||
	fail "rbd bench --io-type write"

head -c 64M /dev/urandom >"$TEST_TMPDIR/data"
snap import --no-progress "$TEST_TMPDIR/data" rbd/imported || fail "rbd import"
snap snap create --no-progress rbd/imported@s1 || fail "rbd snap create"
# Writes after the snapshot must not show in it.
snap bench --io-type write --io-size 4K --io-total 1M rbd/imported >/dev/null || fail "rbd bench on imported"
snap export --no-progress rbd/imported@s1 "$TEST_TMPDIR/s1" || fail "rbd export of the snapshot"
want=$(sha256sum <"$TEST_TMPDIR/data")
[ "$(sha256sum <"$TEST_TMPDIR/s1")" = "$want" ] || fail "the snapshot exported is not what was imported"
snap export --no-progress rbd/imported "$TEST_TMPDIR/head" || fail "rbd export of the image"
[ "$(sha256sum <"$TEST_TMPDIR/head")" != "$want" ] || fail "the writes after the snapshot are not in the image"
rm -f -- "$TEST_TMPDIR/s1" "$TEST_TMPDIR/head"

# client.snapfs with no conf: the mon's address and the key.
[ "$(CEPH_CONF=/dev/null timeout -k 5 60 rbd -m "$CEPH_MON_ADDR" --id snapfs --key "$CEPH_SNAPFS_KEY" ls rbd |
	tr '\n' ' ')" = "img imported " ] || fail "rbd ls with -m $CEPH_MON_ADDR and the key"
# client.snapfs may not touch the cluster beyond its pool.
! ceph --id snapfs --connect-timeout 10 osd pool create other 1 >/dev/null 2>&1 ||
	fail "client.snapfs could create a pool"

# The mon goes away: nothing answers.  It comes back on its data.
ceph_stop_mon KILL
! CEPH_CMD_TIMEOUT=5 ceph_cli mon stat >/dev/null 2>&1 || fail "the cluster answered without its mon"
t0=${EPOCHREALTIME/[.,]/}
ceph_start_mon
log "mon back in $(((${EPOCHREALTIME/[.,]/} - t0) / 1000)) ms"
[ "$(snap ls rbd | tr '\n' ' ')" = "img imported " ] || fail "rbd ls after the mon's restart"
snap export --no-progress rbd/imported@s1 - | sha256sum >"$TEST_TMPDIR/sum" || fail "rbd export after the mon's restart"
[ "$(cat "$TEST_TMPDIR/sum")" = "$want" ] || fail "the snapshot differs after the mon's restart"

# The OSD stops (and tells the mon) and starts again; every PG
# active+clean after.
ceph_stop_osd
ceph_cli osd stat -f json | grep -q '"num_up_osds":0,' || fail "osd.0 is up after it stopped: $(ceph_cli osd stat)"
t0=${EPOCHREALTIME/[.,]/}
ceph_start_osd
log "OSD back in $(((${EPOCHREALTIME/[.,]/} - t0) / 1000)) ms"
snap export --no-progress rbd/imported@s1 - | sha256sum >"$TEST_TMPDIR/sum" || fail "rbd export after the OSD's restart"
[ "$(cat "$TEST_TMPDIR/sum")" = "$want" ] || fail "the snapshot differs after the OSD's restart"

log "RSS: $(ps -o rss=,comm= -p "$(cat "$CEPH_DIR"/run/*.pid | paste -sd,)" | awk '{printf "%s %d MiB; ", $2, $1 / 1024}')"
ceph_stop || fail "ceph_stop"
! pgrep -f -- "$CEPH_CONF" >&2 || fail "a daemon outlived ceph_stop"
log "ok"
