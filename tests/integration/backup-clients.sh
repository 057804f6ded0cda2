#!/bin/bash
# Backup clients against a mount of two guests on LVM, with the default
# linger.  Guest web, an LV with an MBR, is written all along; guest db, a
# mostly unmapped thin LV (a GPT, an ext4 made by mkfs.ext4 -d), is static.
# Each client backs up both guests, the backup is restored, and:
# - the client exits 0 and says nothing on stderr (GNU tar: no "file changed
#   as we read it"; borg: no "file changed while we backed it up");
# - db's restored files are the origin's bytes at the offsets sfdisk --json
#   reports;
# - web's restored partition files are the regions of its restored whole
#   disk (one instant), which is not the previous client's copy;
# - the run made one snapshot set per guest (the log's "set created" lines).
# This file runs rsync -a twice (the second, once the sets are gone, copies
# every disk again), tar -cS | tar -xS and cp --sparse=always;
# backup-clients-borg-restic.sh runs borg and restic with it.  The commands
# are README's recipes ("Back up").
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
# backup-clients-borg-restic.sh names its clients (commands) before it sources this.
clients=${backup_clients:-rsync tar cp}
# shellcheck disable=SC2086 # the clients are words
requires lvcreate sfdisk mkfs.ext4 blkid fstrim env fusermount3 cmp python3 $clients

vg=snapfs_${TEST_NAME//-/_}
setup_vg $vg 384
test_tmpdir
# Clients keep their caches, keys and configuration under the scratch dir.
export HOME=$TEST_TMPDIR/home
export XDG_CACHE_HOME=$HOME/.cache XDG_CONFIG_HOME=$HOME/.config
export BORG_BASE_DIR=$HOME RESTIC_CACHE_DIR=$HOME/.cache/restic
mkdir -p "$HOME"

# ---- guest web: an LV with an MBR, random bytes ------------------------------
make_lv $vg web 48M
web=/dev/$vg/web
fill_random $web
printf 'label: dos\nstart=2048, size=40960, type=83\nstart=43008, size=55296, type=83\n' |
	sfdisk -q --no-reread $web
web_size=$((48 << 20))
web_parts=$(part_list $web)
[ "$(wc -l <<<"$web_parts")" = 2 ] || fail "web's table: $web_parts"

# ---- guest db: a thin LV, a GPT, an ext4 of a small tree ----------------------
lvcreate -q -y -T -L 16M $vg/pool >/dev/null || fail "lvcreate of the thin pool failed"
lvcreate -q -y -V 128M -T $vg/pool -n db >/dev/null || fail "lvcreate of the thin LV failed"
db=/dev/$vg/db
db_size=$((128 << 20))
tree=$TEST_TMPDIR/tree
mkdir -p "$tree/etc" "$tree/var/lib/db" "$tree/empty"
printf 'listen_addresses = %s\n' "'*'" >"$tree/etc/db.conf"
seq 1 20000 >"$tree/var/lib/db/numbers"
head -c 300K /dev/urandom >"$tree/var/lib/db/table"
ln -s ../etc/db.conf "$tree/var/lib/db/conf"
printf 'label: gpt\nstart=2048, name=data\n' | sfdisk -q --no-reread $db
db_parts=$(part_list $db)
read -r _ fs_start fs_size _ <<<"$db_parts"
# Made in a sparse file and copied without its zeros, so that the thin LV
# maps only what the filesystem wrote.
truncate -s "$fs_size" "$TEST_TMPDIR/fs.img"
mkfs.ext4 -q -F -d "$tree" "$TEST_TMPDIR/fs.img" || fail "mkfs.ext4 -d failed"
dd if="$TEST_TMPDIR/fs.img" of=$db bs=64K seek=$((fs_start >> 16)) conv=sparse,notrunc \
	oflag=direct status=none
rm -f "$TEST_TMPDIR/fs.img"
mapped=$(lvs --noheadings -o data_percent $vg/db | tr -d ' ' | cut -d. -f1)
[ "$mapped" -lt 25 ] || fail "db is $mapped% mapped, not mostly unmapped"
[ "$(blkid -p -O "$fs_start" -s TYPE -o value $db)" = ext4 ] || fail "no ext4 in db's partition"

# ---- the mount -----------------------------------------------------------------
xml=$TEST_TMPDIR/node.xml
node_xml "$xml" web "$(disk_block vda $web)" db "$(disk_block vda $db)"
mnt=$TEST_TMPDIR/mnt
# COW room for all of web: the guest writes on while a set lingers.
SNAPFS_DEFAULT_LINGER=1 snapfs_start "test://$xml" "$mnt" -o freeze=off,cow_size=52M
grep -q "linger" <<<"$(ps -o args= -p "$SNAPFS_PID")" && fail "the test must run with the default linger"

# The guest writes all the time: random MiBs past the first (its table).
writer() {
	while :; do
		dd if=/dev/urandom of=$web bs=1M seek=$((1 + RANDOM % 47)) count=1 oflag=direct \
			conv=notrunc status=none 2>/dev/null || true
		sleep 0.5
	done
}
writer &
writer_pid=$!
add_cleanup "kill $writer_pid 2>/dev/null; wait $writer_pid 2>/dev/null; true"

# ---- checks of a restored tree ---------------------------------------------------
# same_region FILE IMAGE START SIZE: FILE is SIZE bytes, those of IMAGE at START.
same_region() {
	[ "$(stat -c %s -- "$1")" = "$4" ] && cmp -s -n "$4" -i "0:$3" -- "$1" "$2"
}

want_files=$(printf '%s\n' db/domain.xml db/vda.raw db/vda1.raw \
	web/domain.xml web/vda.raw web/vda1.raw web/vda2.raw)
prev_web=$TEST_TMPDIR/prev-web.raw

# check_restored CLIENT DIR: DIR holds web/ and db/ as CLIENT restored them.
check_restored() {
	local client=$1 dir=$2 n start size
	log "[${SECONDS}s] $client copied"
	[ "$(cd "$dir" && find . -type f -printf '%P\n' | sort)" = "$want_files" ] ||
		fail "$client restored: $(cd "$dir" && find . -printf '%P ')"
	# db is static: every file is the origin, at sfdisk's offsets.
	same_region "$dir/db/vda.raw" $db 0 $db_size || fail "$client: db/vda.raw is not the origin"
	while read -r n start size _; do
		same_region "$dir/db/vda$n.raw" $db "$start" "$size" ||
			fail "$client: db/vda$n.raw is not the origin's bytes at $start"
	done <<<"$db_parts"
	# web changes: its table (the first MiB) is the origin's, and each partition
	# file is the region of the whole disk restored with it.
	[ "$(stat -c %s "$dir/web/vda.raw")" = $web_size ] || fail "$client: web/vda.raw's size"
	cmp -s -n $((1 << 20)) "$dir/web/vda.raw" $web ||
		fail "$client: web/vda.raw's first MiB is not the origin's"
	[ "$(part_list "$dir/web/vda.raw")" = "$web_parts" ] || fail "$client: web's table"
	while read -r n start size _; do
		same_region "$dir/web/vda$n.raw" "$dir/web/vda.raw" "$start" "$size" ||
			fail "$client: web/vda$n.raw is not the region at $start of web/vda.raw: not one instant"
	done <<<"$web_parts"
	# The guest wrote between two runs: a stale copy would pass the above.
	if [ -e "$prev_web" ]; then
		cmp -s "$prev_web" "$dir/web/vda.raw" && fail "$client copied the same web as the run before"
	fi
	cp "$dir/web/vda.raw" "$prev_web"
	kill -0 $writer_pid 2>/dev/null || fail "the writer died"
}

# one_set_each CLIENT: the client's run made one set per guest; wait
# (bounded) for their removal after the linger.
runs=0
one_set_each() {
	local client=$1 n=$((runs + 1)) g
	runs=$n
	log "[${SECONDS}s] $client checked"
	for g in web db; do
		[ "$(sets_created $g)" = "$n" ] ||
			fail "$client made $(($(sets_created $g) - n + 1)) sets of $g, not 1"
	done
	for g in web db; do
		wait_for -t 90 sets_removed_is $g "$n" || fail "set $n of $g not removed after the linger"
	done
	log "[${SECONDS}s] $client's sets removed"
}

# Restores go to ext4, which takes the user.* attributes borg restores (the
# tmpfs of a kernel before 6.6 does not); fstrim hands back what a copy took.
make_test_fs ext4 restore 640
out=$TEST_FS_DIR/out
err=$TEST_TMPDIR/err
clean_out() {
	rm -rf "$out"
	fstrim "$TEST_FS_DIR"
}
log "[${SECONDS}s] set up"

# ---- the clients ----------------------------------------------------------------
# Each runs README's recipe, restores into $out and checks it there.

# quietly WHAT CMD...: CMD exits 0 and says nothing on stderr (no warning).
quietly() {
	local what=$1 rc=0
	shift
	"$@" 2>"$err" || rc=$?
	[ "$rc" = 0 ] || fail "$what exited $rc: $(cat "$err")"
	[ ! -s "$err" ] || fail "$what exited 0 but said: $(cat "$err")"
}

# rsync -a, twice: the second, after the sets are gone, copies all again (the
# disks' times moved on).
client_rsync() {
	local f
	quietly rsync rsync -a --inplace --itemize-changes "$mnt/" "$out/" >"$TEST_TMPDIR/rsync.1"
	check_restored rsync "$out"
	one_set_each rsync
	quietly "the second rsync" \
		rsync -a --inplace --itemize-changes "$mnt/" "$out/" >"$TEST_TMPDIR/rsync.2"
	for f in web/vda.raw web/vda1.raw web/vda2.raw db/vda.raw db/vda1.raw; do
		grep -qE "^>f[^ ]* $f\$" "$TEST_TMPDIR/rsync.2" ||
			fail "the second rsync skipped $f: $(cat "$TEST_TMPDIR/rsync.2")"
	done
	check_restored "the second rsync" "$out"
	one_set_each "the second rsync"
}

# tar -cS | tar -xS: GNU tar finds no file "changed as we read it".
client_tar() {
	local rcs
	set +e
	tar -C "$mnt" -cSf - web db 2>"$err.c" | tar -C "$out" -xSf - 2>"$err.x"
	rcs="${PIPESTATUS[*]}"
	set -e
	[ "$rcs" = "0 0" ] || fail "tar -c | tar -x exited $rcs: $(cat "$err.c" "$err.x")"
	[ ! -s "$err.c" ] && [ ! -s "$err.x" ] || fail "tar said: $(cat "$err.c" "$err.x")"
	check_restored tar "$out"
	one_set_each tar
}

client_cp() {
	quietly cp cp -r --sparse=always "$mnt/web" "$mnt/db" "$out/"
	check_restored cp "$out"
	one_set_each cp
}

# borg 1.2: create --sparse with fixed 4 MiB chunks, extract --sparse.  It
# warns (exit 1) of a file whose ctime moved while it read it.
client_borg() {
	export BORG_REPO=$TEST_TMPDIR/borg
	quietly "borg init" borg init -e none
	quietly "borg create" env -C "$mnt" \
		borg create --sparse --chunker-params fixed,4194304 '::{now}' web db
	quietly "borg extract" env -C "$out" borg extract --sparse ::"$(borg list --short --last 1)"
	check_restored borg "$out"
	one_set_each borg
	rm -rf "$BORG_REPO"
}

client_restic() {
	export RESTIC_REPOSITORY=$TEST_TMPDIR/restic RESTIC_PASSWORD_FILE=$TEST_TMPDIR/restic.pass
	echo x >"$RESTIC_PASSWORD_FILE"
	quietly "restic init" restic init >/dev/null
	quietly "restic backup" env -C "$mnt" restic backup web db
	quietly "restic restore" restic restore latest --target "$out"
	check_restored restic "$out"
	one_set_each restic
	rm -rf "$RESTIC_REPOSITORY"
}

for client in $clients; do
	log "[${SECONDS}s] $client"
	mkdir -p "$out"
	"client_$client"
	clean_out
done

# ---- and nothing went wrong on snapfs's side ---------------------------------------------
if grep -E "^snapfs: (error|warning):" "$SNAPFS_LOG"; then
	fail "snapfs logged errors or warnings"
fi
no_snapfs_lvs $vg
echo "$TEST_NAME: ok"
