# shellcheck shell=bash
# A real one-host Ceph cluster for the tests of RBD sources; sourced after
# functions.sh:
#
#	. "$(dirname -- "$0")/../lib-ceph.sh" || exit 99
#	test_tmpdir
#	ceph_start "$TEST_TMPDIR/ceph"
#
# One mon, one mgr and one BlueStore OSD on a sparse file, cephx on, all
# bound to 127.0.0.1.  Everything the cluster has (config, keyrings, data,
# logs, sockets, pid files) is under the directory given to ceph_start:
# nothing goes to /etc/ceph or /var/lib/ceph, and no systemd is involved.
# The daemons run as root in Ceph's daemon mode; a cleanup stops them all.
#
# ceph_start sets and exports:
#   CEPH_CONF            DIR/ceph.conf: its [global] names the mon and the
#                        keyring of every client, DIR/ceph.client.NAME.keyring,
#                        so `--id admin` and `--id snapfs` need nothing else
#   CEPH_MON_ADDR        the mon's address, ip:port, as a client's mon_host
#                        (msgr v2; mon_host in CEPH_CONF lists its v1 port too)
#   CEPH_ADMIN_KEYRING   client.admin's keyring
#   CEPH_SNAPFS_KEYRING  client.snapfs's keyring: caps "mon 'profile rbd'
#                        osd 'profile rbd pool=rbd'"
#   CEPH_SNAPFS_KEY      client.snapfs's key (base64)
#   CEPH_DIR             DIR
# and the cluster has the replicated pool "rbd" (size 1, rbd pool init-ed).
#
# Then: ceph_cli / rbd_cli ARGS... (as client.admin, bounded in time; as
# client.snapfs: `rbd --id snapfs ...`, CEPH_CONF being exported),
# ceph_stop_mon [SIGNAL] / ceph_start_mon, ceph_stop_osd [SIGNAL] /
# ceph_start_osd [nowait], ceph_wait_clean [SECONDS], ceph_stop [DIR].
# Any wait on a client of a stopped cluster must be bounded by the caller:
# librados waits for a mon or an OSD for ever, and rbd ignores SIGTERM
# while it waits (timeout -k).

# Patience, in seconds, of one command and of the cluster's coming up.
CEPH_CMD_TIMEOUT=${CEPH_CMD_TIMEOUT:-60}
CEPH_START_TIMEOUT=${CEPH_START_TIMEOUT:-90}

# ceph_cli ARGS...: the ceph command as client.admin, bounded in time.
ceph_cli() {
	timeout -k 5 "$CEPH_CMD_TIMEOUT" ceph -c "$CEPH_CONF" --id admin --connect-timeout 30 "$@"
}

# rbd_cli ARGS...: the rbd command as client.admin (pass --id snapfs after
# it to act as client.snapfs), bounded in time.
rbd_cli() {
	timeout -k 5 "$CEPH_CMD_TIMEOUT" rbd -c "$CEPH_CONF" --id admin "$@"
}

# ceph_start DIR [OSD_SIZE]: make and start the cluster in DIR (made; it
# should be empty and on a file system with O_DIRECT, as tmpfs has it since
# Linux 6.6), its OSD's device a sparse file of OSD_SIZE (truncate's sizes;
# default 4G), and wait until the OSD is up and in and every PG
# active+clean.  Only one cluster per test.
ceph_start() {
	[ $# -ge 1 ] && [ $# -le 2 ] || fail "usage: ceph_start DIR [OSD_SIZE]"
	local dir size=${2:-4G} bytes fsid osd_uuid secret i
	requires_root
	requires ceph ceph-mon ceph-mgr ceph-osd ceph-authtool monmaptool rbd uuidgen \
		python3 timeout truncate numfmt
	[ -z "${CEPH_DIR:-}" ] || fail "ceph_start: a cluster runs already in $CEPH_DIR"
	mkdir -p -- "$1"
	dir=$(cd -- "$1" && pwd)
	[ -z "$(ls -A -- "$dir")" ] || fail "ceph_start: $dir is not empty"
	bytes=$(numfmt --from=iec -- "$size") || fail "ceph_start: bad OSD size $size"
	mkdir -m 700 "$dir/run" "$dir/log" "$dir/crash" "$dir/mon.a" "$dir/mgr.x" "$dir/osd.0"
	CEPH_DIR=$dir
	# ceph-authtool reads CEPH_CONF too: an empty one until _ceph_mon_mkfs.
	export CEPH_CONF=$dir/ceph.conf
	: >"$CEPH_CONF"
	export CEPH_ADMIN_KEYRING=$dir/ceph.client.admin.keyring
	export CEPH_SNAPFS_KEYRING=$dir/ceph.client.snapfs.keyring
	add_cleanup "ceph_stop '$dir'"
	# A failing test (a failing ceph_* too) shows the end of every daemon's log.
	add_cleanup "[ \"\${rc:-0}\" = 0 ] || _ceph_log_tails '$dir'"
	fsid=$(uuidgen)

	# The mon's key, and client.admin's, which the mon learns at its mkfs.
	_ceph_q ceph-authtool -C "$dir/mon.keyring" -g -n mon. --cap mon 'allow *' &&
		_ceph_q ceph-authtool -C "$CEPH_ADMIN_KEYRING" -g -n client.admin --cap mon 'allow *' \
			--cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' &&
		_ceph_q ceph-authtool "$dir/mon.keyring" --import-keyring "$CEPH_ADMIN_KEYRING" ||
		fail "ceph_start: ceph-authtool failed"

	# The mon's ports are in the monmap made at its mkfs: if another test
	# takes one between our probe and the mon's bind, try other ports.
	for i in 1 2 3; do
		_ceph_mon_mkfs "$dir" "$fsid" && break
		[ "$i" != 3 ] || fail "ceph_start: the mon did not start"
		log "ceph_start: the mon did not start on $CEPH_MON_ADDR; other ports"
	done
	wait_for -t 30 _ceph_answers || fail "ceph_start: the mon does not answer"

	# The mgr: it collects the PGs' states.
	_ceph_q ceph_cli auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
		-o "$dir/mgr.x/keyring" || fail "ceph_start: the mgr's key"
	_ceph_daemon mgr x || fail "ceph_start: ceph-mgr did not start"

	# The OSD: registered with a key of ours, then its BlueStore made on
	# the file DIR/osd.0/block.
	osd_uuid=$(uuidgen)
	secret=$(ceph-authtool --gen-print-key) || fail "ceph_start: ceph-authtool --gen-print-key"
	printf '{"cephx_secret": "%s"}\n' "$secret" >"$dir/osd.0/new.json"
	[ "$(ceph_cli osd new "$osd_uuid" 0 -i "$dir/osd.0/new.json")" = 0 ] ||
		fail "ceph_start: ceph osd new did not make osd.0"
	rm -f -- "$dir/osd.0/new.json"
	_ceph_q ceph-authtool -C "$dir/osd.0/keyring" -n osd.0 --add-key "$secret" &&
		_ceph_q ceph_cli mon getmap -o "$dir/osd.0/monmap" &&
		truncate -s "$bytes" -- "$dir/osd.0/block" || fail "ceph_start: the OSD's keyring, monmap or file"
	ceph-osd -c "$CEPH_CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" --monmap "$dir/osd.0/monmap" \
		>"$dir/log/osd.0.mkfs" 2>&1 || { cat "$dir/log/osd.0.mkfs" >&2; fail "ceph_start: ceph-osd --mkfs"; }
	ceph_start_osd nowait

	# The pool for RBD images, one copy, and the client snapfs is.
	_ceph_q ceph_cli osd pool create rbd 8 8 replicated &&
		_ceph_q ceph_cli osd pool set rbd size 1 --yes-i-really-mean-it &&
		_ceph_q ceph_cli osd pool set rbd min_size 1 &&
		_ceph_q rbd_cli pool init rbd || fail "ceph_start: the pool rbd"
	_ceph_q ceph_cli auth get-or-create client.snapfs mon 'profile rbd' osd 'profile rbd pool=rbd' \
		-o "$CEPH_SNAPFS_KEYRING" || fail "ceph_start: client.snapfs's key"
	export CEPH_SNAPFS_KEY
	CEPH_SNAPFS_KEY=$(ceph_cli auth print-key client.snapfs) && [ -n "$CEPH_SNAPFS_KEY" ] ||
		fail "ceph_start: client.snapfs's key"
	ceph_wait_clean "$CEPH_START_TIMEOUT"
}

# ceph_wait_clean [SECONDS]: wait until the OSD is up and in and every PG
# is active+clean; fail after SECONDS (default CEPH_START_TIMEOUT) with the
# cluster's status.
ceph_wait_clean() {
	wait_for -t "${1:-$CEPH_START_TIMEOUT}" _ceph_clean && return 0
	ceph_cli status >&2 || true
	fail "the Ceph cluster in $CEPH_DIR did not become active+clean"
}

# ceph_stop_mon [SIGNAL] / ceph_start_mon: stop the mon (SIGTERM, or e.g.
# KILL) and wait for it to exit, so clients find no cluster; start it again
# on the same data and wait until it answers.
ceph_stop_mon() { _ceph_kill "${1:-TERM}" "$CEPH_DIR" mon.a; }
ceph_start_mon() {
	_ceph_daemon mon a || fail "ceph-mon did not start"
	wait_for -t 30 _ceph_answers || fail "the mon does not answer"
}

# ceph_stop_osd [SIGNAL] / ceph_start_osd [nowait]: the same for the OSD;
# ceph_start_osd waits until every PG is active+clean again, unless nowait.
# A killed (-KILL) OSD stays "up" for the mon: one OSD has no peers to
# report it.
ceph_stop_osd() { _ceph_kill "${1:-TERM}" "$CEPH_DIR" osd.0; }
ceph_start_osd() {
	_ceph_daemon osd 0 || fail "ceph-osd did not start"
	[ "${1-}" = nowait ] || ceph_wait_clean "$CEPH_START_TIMEOUT"
}

# ceph_stop [DIR]: stop every daemon of the cluster in DIR (default
# CEPH_DIR) and wait for each to exit (SIGKILL after 20 s); the cleanup
# ceph_start registers.
ceph_stop() {
	# The mon last: an OSD that stops waits for the mon to hear it.
	local dir=${1:-$CEPH_DIR} ok=0
	_ceph_kill TERM "$dir" osd.0 mgr.x || ok=1
	_ceph_kill TERM "$dir" mon.a || ok=1
	return $ok
}

# ---- internals ----------------------------------------------------------------

# _ceph_mon_mkfs DIR FSID: pick two free ports, write ceph.conf for them,
# make the mon's store and start it.  Sets CEPH_MON_ADDR.
_ceph_mon_mkfs() {
	local dir=$1 fsid=$2 port addrs
	# Ports outside the kernel's ephemeral range if it can, so that no
	# client's connection takes one while the mon is down.
	port=$(python3 - <<'PY'
import random, socket
lo, hi = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
for i in range(2000):
    p = random.randrange(20000, 32000, 2) if i < 1000 else random.randrange(1024, 65534, 2)
    if i < 1000 and lo <= p + 1 and p <= hi:
        continue
    try:
        for q in (p, p + 1):
            with socket.socket() as s:
                s.bind(("127.0.0.1", q))
    except OSError:
        continue
    print(p)
    break
PY
	) && [ -n "$port" ] || fail "ceph_start: no free port"
	addrs="[v2:127.0.0.1:$port,v1:127.0.0.1:$((port + 1))]"
	export CEPH_MON_ADDR=127.0.0.1:$port
	_ceph_conf "$dir" "$fsid" "$addrs" >"$CEPH_CONF"
	rm -rf -- "$dir/mon.a" "$dir/monmap"
	mkdir -m 700 "$dir/mon.a"
	monmaptool --create --fsid "$fsid" --addv a "$addrs" "$dir/monmap" >/dev/null ||
		fail "ceph_start: monmaptool"
	ceph-mon -c "$CEPH_CONF" -i a --mkfs --monmap "$dir/monmap" --keyring "$dir/mon.keyring" \
		>"$dir/log/mon.a.mkfs" 2>&1 || { cat "$dir/log/mon.a.mkfs" >&2; fail "ceph_start: ceph-mon --mkfs"; }
	_ceph_daemon mon a
}

# _ceph_conf DIR FSID MON_ADDRS: the cluster's ceph.conf, on stdout.
_ceph_conf() {
	local dir=$1 fsid=$2 addrs=$3
	cat <<EOF
# A one-host test cluster made by tests/lib-ceph.sh.
[global]
fsid = $fsid
mon_host = $addrs
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
keyring = $dir/ceph.\$name.keyring
run_dir = $dir/run
crash_dir = $dir/crash
# One host, one OSD, one copy.
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_crush_chooseleaf_type = 0
osd_pool_default_pg_autoscale_mode = off
mon_warn_on_pool_no_redundancy = false
# BlueStore aborts the OSD on ENOSPC, and the OSD learns how full it is only
# now and then: it is full earlier and learns it every second.  A test that
# fills a small OSD must still write at a modest rate (rbd bench --io-threads
# 1 --io-size 64K does): writes at tmpfs's speed (rbd import) fill the file
# before the OSD sees itself full.  A full OSD drops writes; clients wait.
mon_osd_nearfull_ratio = 0.7
mon_osd_backfillfull_ratio = 0.75
mon_osd_full_ratio = 0.8
osd_failsafe_full_ratio = 0.85
osd_heartbeat_interval = 1
# PG states reach the mgr and the mon within a second, not five.
mgr_stats_period = 1
mgr_tick_period = 1
mon_mgr_digest_period = 1

[mon]
mon_data = $dir/\$name
keyring = $dir/\$name/keyring
log_file = $dir/log/\$name.log
pid_file = $dir/run/\$name.pid
admin_socket = $dir/run/\$name.asok
mon_cluster_log_file = $dir/log/ceph.\$channel.log
mon_data_avail_warn = 2
mon_data_avail_crit = 1
mon_allow_pool_delete = true
mon_memory_target = 268435456
# Changes to the maps commit within 0.1 s, not 1 s: each step of ceph_start
# waits for one.
paxos_propose_interval = 0.1

[mgr]
mgr_data = $dir/\$name
keyring = $dir/\$name/keyring
log_file = $dir/log/\$name.log
pid_file = $dir/run/\$name.pid
admin_socket = $dir/run/\$name.asok
# Only the modules a mgr always runs (rbd_support among them), for memory.
mgr_initial_modules =
mgr_disabled_modules = alerts,diskprediction_local,influx,insights,iostat,localpool,mirroring,nfs,osd_perf_query,osd_support,prometheus,restful,selftest,snap_schedule,stats,telegraf,test_orchestrator,zabbix

[osd]
osd_data = $dir/\$name
keyring = $dir/\$name/keyring
log_file = $dir/log/\$name.log
pid_file = $dir/run/\$name.pid
admin_socket = $dir/run/\$name.asok
osd_objectstore = bluestore
# BlueStore's block device is the file DIR/osd.0/block, made before --mkfs.
bluestore_block_create = false
osd_memory_target = 1073741824
bluestore_cache_autotune = false
bluestore_cache_size = 134217728
EOF
}

# _ceph_q CMD...: CMD, its output shown only if it fails.
_ceph_q() {
	local out
	out=$("$@" 2>&1) && return 0
	printf '%s\n' "$out" >&2
	return 1
}

# _ceph_daemon TYPE ID: start ceph-TYPE -i ID in Ceph's daemon mode: it
# returns once the daemon is up (the mgr's a little before), with the
# daemon's status if it failed to start.  What it prints before it logs to
# its log file goes to DIR/log/TYPE.ID.out.
_ceph_daemon() {
	"ceph-$1" -c "$CEPH_CONF" -i "$2" >>"$CEPH_DIR/log/$1.$2.out" 2>&1
}

# _ceph_answers: the mon answers client.admin.
_ceph_answers() {
	CEPH_CMD_TIMEOUT=10 ceph_cli mon stat >/dev/null 2>&1
}

# _ceph_clean: osd.0 is up and in, and every PG (there are some) active+clean.
_ceph_clean() {
	local st
	st=$(CEPH_CMD_TIMEOUT=10 ceph_cli status --format json 2>/dev/null) || return 1
	python3 -c '
import json, sys
s = json.loads(sys.argv[1])
o, p = s["osdmap"], s["pgmap"]
if "osdmap" in o:
    o = o["osdmap"]
clean = sum(x["count"] for x in p.get("pgs_by_state", []) if x["state_name"] == "active+clean")
sys.exit(not (o["num_up_osds"] == 1 and o["num_in_osds"] == 1 and
              p["num_pgs"] > 0 and clean == p["num_pgs"]))' "$st"
}

# _ceph_pid DIR NAME: the pid of daemon NAME (mon.a, mgr.x, osd.0) of the
# cluster in DIR, if it runs: its pid file names a process whose command
# line has that cluster's ceph.conf.
_ceph_pid() {
	local pid
	pid=$(cat -- "$1/run/$2.pid" 2>/dev/null) && [ -n "$pid" ] || return 1
	tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$1/ceph.conf" || return 1
	echo "$pid"
}

# _ceph_kill SIGNAL DIR NAME...: send SIGNAL to the daemons NAME... of the
# cluster in DIR that run, and wait for them to exit; SIGKILL after 20 s.
# Their pids are read first: a daemon removes its pid file as it exits.
_ceph_kill() {
	local sig=$1 dir=$2 name pid pids=()
	shift 2
	for name in "$@"; do
		pid=$(_ceph_pid "$dir" "$name") && pids+=("$pid")
	done
	[ ${#pids[@]} -gt 0 ] || return 0
	kill -s "$sig" "${pids[@]}" 2>/dev/null || true
	if ! wait_for -t 20 _ceph_gone "${pids[@]}"; then
		log "ceph: $* (${pids[*]}) outlived SIG$sig; SIGKILL"
		kill -s KILL "${pids[@]}" 2>/dev/null || true
		wait_for -t 10 _ceph_gone "${pids[@]}" || { log "ceph: $* outlived SIGKILL"; return 1; }
	fi
	for name in "$@"; do
		rm -f -- "$dir/run/$name.pid"
	done
}

# _ceph_gone PID...: every PID has exited (a zombie has).
_ceph_gone() {
	local pid stat
	for pid in "$@"; do
		stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
		stat=${stat##*) }
		[ "${stat%% *}" = Z ] || return 1
	done
}

# _ceph_log_tails DIR: the last lines of every daemon's log, on stderr.
_ceph_log_tails() {
	local f
	for f in "$1"/log/*.log "$1"/log/*.out "$1"/log/*.mkfs; do
		[ -f "$f" ] || continue
		printf -- '--- %s (end):\n' "${f##*/}" >&2
		tail -n 25 -- "$f" >&2
	done
}
