#!/bin/bash
# A file's time right after its guest's set is removed: a stat() then shows
# the new time at once (the time the next set will show), not the removed
# set's from the kernel's attribute cache, so that a backup tool that
# stat()s a file and then opens it (a new set) finds the same time after
# reading: GNU tar run right after another reader reports no "file changed
# as we read it".
# run-test: native
. "$(dirname -- "$0")/../functions.sh" || exit 99
. "$(dirname -- "$0")/../lib-snapfs.sh" || exit 99
. "$(dirname -- "$0")/../lib-reflink.sh" || exit 99
requires sfdisk fusermount3 python3 tar mkfs.xfs

make_test_fs xfs st 320
img=$TEST_FS_DIR/g.img
random_file "$img" 16
printf 'label: dos\nstart=2048, type=83\n' | sfdisk -q "$img"
xml=$TEST_TMPDIR/node.xml
node_xml "$xml" g "$(disk_file vda "$img")"
mnt=$TEST_TMPDIR/mnt
snapfs_start "test://$xml" "$mnt" -o freeze=off # and linger=0: removed at close

# For each file: stat (caching its attributes for a second), a whole read
# (a set made and, at close, removed), stat again within that second, then
# open (a new set) and fstat.  The second stat must show a new time, and
# the one the open file shows.
python3 - "$mnt/g" "$SNAPFS_LOG" <<'EOF' || fail "a stat after a removal showed the removed set's time"
import os, sys, time
d, log = sys.argv[1], sys.argv[2]
def removed():
    with open(log) as f:
        return f.read().count("guest g: snapshot set removed in ")
bad = 0
for name in ("vda.raw", "vda1.raw"):
    p = os.path.join(d, name)
    for attempt in range(5):
        t0 = time.monotonic()
        before = os.stat(p).st_ctime_ns
        n = removed()
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass
        while removed() == n:
            if time.monotonic() - t0 > 30:
                sys.exit("set not removed after the read")
            time.sleep(0.005)
        after = os.stat(p).st_ctime_ns
        if time.monotonic() - t0 > 0.8:
            continue  # the first stat's attributes may have expired: again
        fd = os.open(p, os.O_RDONLY)
        opened = os.fstat(fd).st_ctime_ns
        os.close(fd)
        print(f"{name}: {before} then {after}, open {opened}")
        if after == before or after != opened:
            bad += 1
        break
    else:
        sys.exit(f"{name}: no try within the attribute timeout")
sys.exit(1 if bad else 0)
EOF

# GNU tar right after another reader of the same file, three times.
for i in 1 2 3; do
	cat "$mnt/g/vda1.raw" >/dev/null || fail "read"
	# Through cat: tar reads nothing when its archive is /dev/null.
	err=$({ tar -C "$mnt/g" -cf - vda1.raw | cat >/dev/null; exit "${PIPESTATUS[0]}"; } 2>&1) ||
		fail "tar after a reader exited $?: $err"
	[ -z "$err" ] || fail "tar after a reader: $err"
done
snapfs_stop "$mnt"
echo "stamps-release: ok"
