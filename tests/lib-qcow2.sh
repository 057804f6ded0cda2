# shellcheck shell=bash
# Helpers for the tests of qcow2 disks served decoded; sourced after
# functions.sh and lib-snapfs.sh.  qemu-img is the judge of every answer.

requires qemu-img qemu-io python3 sfdisk

# qio IMAGE COMMAND...: qemu-io commands on the qcow2 IMAGE (a file or an LV).
qio() {
	local img=$1 c args=()
	shift
	for c in "$@"; do args+=(-c "$c"); done
	qemu-io -f qcow2 "${args[@]}" "$img" >/dev/null || fail "qemu-io $* on $img"
}

# image_end IMAGE: where the image ends, as qemu-img check reports it.
image_end() {
	local out
	out=$(qemu-img check --output=json "$1" 2>/dev/null || true)
	sed -n 's/.*"image-end-offset": *\([0-9]*\).*/\1/p' <<<"$out"
}

# qemu_data_map IMAGE [FORMAT]: the ranges qemu-img map says hold data (not
# zero), merged, as "START END" lines: what SEEK_DATA/SEEK_HOLE of the
# decoded disk must show.  FORMAT: the image's (probed when not given).
qemu_data_map() {
	qemu-img map --output=json ${2:+-f "$2"} "$1" | python3 -c '
import json, sys
out = []
for e in json.load(sys.stdin):
    if e["data"] and not e["zero"]:
        s, t = e["start"], e["start"] + e["length"]
        if out and out[-1][1] == s:
            out[-1][1] = t
        else:
            out.append([s, t])
for s, t in out:
    print(s, t)
' || fail "qemu-img map $1"
}

# maps_agree OURS QEMU RAW CLUSTER: two "START END" data maps agree: every
# byte qemu calls data is data in ours; ours may call more data only inside
# the clusters that hold qemu's data, and only where the converted disk RAW
# reads zeroes (qemu also looks for holes inside an allocated cluster, in
# the file under the image).
maps_agree() {
	python3 - "$@" <<'PY'
import sys
def ranges(path):
    return [tuple(map(int, l.split())) for l in open(path) if l.strip()]
ours, qemu = ranges(sys.argv[1]), ranges(sys.argv[2])
def covered(s, e, rs):
    for a, b in rs:
        if a <= s and e <= b:
            return True
    return False
cs = int(sys.argv[4])
grown = [(a // cs * cs, (b + cs - 1) // cs * cs) for a, b in qemu]
ok = True
for s, e in ours:
    # more than qemu only inside the clusters where qemu sees data
    pos = s
    for a, b in sorted(grown):
        if a <= pos < b:
            pos = b
    if pos < e:
        print("ours calls [%d, %d) data, outside qemu's data clusters" % (s, e),
              file=sys.stderr)
        ok = False
for s, e in qemu:
    if not covered(s, e, ours):
        print("qemu's data [%d, %d) is a hole in ours" % (s, e), file=sys.stderr)
        ok = False
raw = open(sys.argv[3], "rb")
for s, e in ours:
    # the parts of [s, e) that qemu calls holes must read as zeroes
    cuts = sorted([(a, b) for a, b in qemu if b > s and a < e])
    pos = s
    for a, b in cuts + [(e, e)]:
        if a > pos:
            raw.seek(pos)
            n = a - pos
            while n:
                chunk = raw.read(min(n, 1 << 20))
                if chunk.count(0) != len(chunk):
                    print("ours calls [%d, %d) data, qemu a hole, and it is not zero"
                          % (pos, a), file=sys.stderr)
                    ok = False
                    break
                n -= len(chunk)
        pos = max(pos, b)
sys.exit(0 if ok else 1)
PY
}

# check_decoded DIR TARGET IMAGE: the files snapfs shows of the qcow2 disk
# TARGET in guest directory DIR are what qemu-img says of IMAGE (its chain
# resolved by qemu-img): the decoded disk's bytes and holes, each partition
# at the offsets sfdisk reports on the converted disk, the container cut at
# the image's end, the attributes.  Counts the files checked in CHECKED.
CHECKED=0
check_decoded() {
	local dir=$1 t=$2 img=$3 raw=$TEST_TMPDIR/converted.raw n start size type end cs
	qemu-img convert -O raw "$img" "$raw" || fail "qemu-img convert $img"
	[ "$(sha_file "$dir/$t.raw")" = "$(sha_file "$raw")" ] ||
		fail "$dir/$t.raw is not qemu-img convert of $img"
	[ "$(stat -c %s "$dir/$t.raw")" = "$(stat -c %s "$raw")" ] || fail "$dir/$t.raw: size"
	cs=$(qemu-img info --output=json "$img" | sed -n 's/.*"cluster-size": *\([0-9]*\).*/\1/p')
	maps_agree <(seek_map "$dir/$t.raw") <(qemu_data_map "$img") "$raw" "$cs" ||
		fail "$dir/$t.raw: its SEEK_DATA/SEEK_HOLE map is not qemu-img map's"
	CHECKED=$((CHECKED + 1))
	while read -r n start size type; do
		case $type in 5 | f | 85) continue ;; esac
		[ "$(sha_file "$dir/$t$n.raw")" = "$(sha_at "$raw" "$start" "$size")" ] ||
			fail "$dir/$t$n.raw is not the region at $start of the converted disk"
		CHECKED=$((CHECKED + 1))
	done < <(sfdisk --json "$raw" 2>/dev/null | python3 -c '
import json, re, sys
try:
    t = json.load(sys.stdin)["partitiontable"]
except ValueError:
    sys.exit(0)
ss = t.get("sectorsize", 512)
for p in t.get("partitions", []):
    n = re.search(r"([0-9]+)$", p["node"]).group(1)
    print(n, p["start"] * ss, p["size"] * ss, p["type"])
')
	end=$(image_end "$img")
	[ -n "$end" ] || fail "qemu-img check gave no image end for $img"
	# An image that ends in a compressed cluster ends within that cluster:
	# the file or LV is shorter than qemu's answer, and is cut at its end.
	[ "$end" -le "$(blockdev_or_file_size "$img")" ] || end=$(blockdev_or_file_size "$img")
	[ "$(stat -c %s "$dir/$t.qcow2")" = "$end" ] ||
		fail "$dir/$t.qcow2: size $(stat -c %s "$dir/$t.qcow2"), the image ends at $end"
	[ "$(sha_file "$dir/$t.qcow2")" = "$(head -c "$end" "$img" | sha_file -)" ] ||
		fail "$dir/$t.qcow2 is not the image's first $end bytes"
	CHECKED=$((CHECKED + 1))
	[ "$(xattr_of "$dir/$t.raw" format)" = qcow2 ] || fail "$dir/$t.raw: format"
	[ "$(xattr_of "$dir/$t.raw" virtual_size)" = "$(stat -c %s "$raw")" ] ||
		fail "$dir/$t.raw: virtual_size"
	[ "$(xattr_of "$dir/$t.raw" cluster_size)" = "$cs" ] ||
		fail "$dir/$t.raw: cluster_size $(xattr_of "$dir/$t.raw" cluster_size)"
	rm -f "$raw"
}

# blockdev_or_file_size PATH: bytes.
blockdev_or_file_size() {
	if [ -b "$1" ]; then blockdev --getsize64 "$1"; else stat -c %s "$1"; fi
}

# xattr_of FILE NAME: user.snapfs.NAME of FILE, "" when it has none.
xattr_of() {
	getfattr --absolute-names --only-values -n "user.snapfs.$2" "$1" 2>/dev/null || true
}

# raw_with_table FILE MIB dos|gpt: a raw disk of random data in a few places
# and holes elsewhere, with a partition table of two partitions.
raw_with_table() {
	local f=$1 mib=$2 label=$3
	truncate -s "${mib}M" "$f"
	printf 'label: %s\nstart=2048, size=%d\nstart=%d\n' "$label" $((mib * 512)) \
		$((2048 + mib * 512)) | sfdisk -q "$f" || fail "sfdisk on $f"
	dd if=/dev/urandom of="$f" bs=64K seek=20 count=40 conv=notrunc status=none
	dd if=/dev/urandom of="$f" bs=64K seek=$((mib * 8 + 50)) count=7 conv=notrunc status=none
}
