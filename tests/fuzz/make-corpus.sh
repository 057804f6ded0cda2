#!/bin/bash
# Regenerate the seed corpora of the fuzz targets: fuzz-partitions
# (tests/fuzz/corpus/) and fuzz-qcow2 (tests/fuzz/corpus-qcow2/).
#
#	tests/fuzz/make-corpus.sh [REPLAY]
#
# REPLAY is the plain driver, tests/fuzz/replay-partitions of a build tree
# (default: $SNAPFS_BUILDDIR/tests/fuzz/replay-partitions, else ./...); it
# packs each disk image into a fuzz input (the header, the disk's two ends
# without the zeros between; see fuzz-partitions.c).  replay-qcow2 beside it
# packs the qcow2 images (their sectors in use; see fuzz-qcow2.c).
# FUZZ_TARGET=partitions or qcow2 makes one corpus; both by default.
#
# The disk images are sparse files partitioned with sfdisk (no root, no loop
# device), then some are broken on purpose with dd: GPT checksums, EBR
# chains that loop, a table past 2 TiB.  Needs sfdisk and fdisk (fdisk) and
# mkfs.ext4 (e2fsprogs).  Disk and partition ids, filesystem UUIDs and times
# are fixed, so the output is the same from run to run.
#
# The qcow2 images are made by qemu-img and qemu-io (qemu-utils): versions 2
# and 3, clusters of 512 B to 2 MiB, deflate and zstd, extended L2 entries,
# zero and preallocated clusters, an internal snapshot (its times zeroed), a
# dirty image, backing files, then some broken on purpose.  Writes are small
# and packed without their zero sectors, so each input is a few KiB.
set -euo pipefail

here=$(cd -- "$(dirname -- "$0")" && pwd)
replay=${1:-${SNAPFS_BUILDDIR:-.}/tests/fuzz/replay-partitions}
target=${FUZZ_TARGET:-all}
case $target in
partitions | qcow2 | all) ;;
*) echo "make-corpus: FUZZ_TARGET is partitions, qcow2 or all, not $target" >&2; exit 1 ;;
esac
work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT

# ---- byte surgery ---------------------------------------------------------------

le32() { # FILE OFFSET
	od -An -tu4 -j "$2" -N4 -- "$1" | tr -d ' '
}

put_bytes() { # FILE OFFSET BYTE...: write bytes (numbers) at OFFSET
	local file=$1 off=$2 fmt=''
	shift 2
	for b in "$@"; do fmt+=$(printf '\\%03o' "$b"); done
	# shellcheck disable=SC2059 # the format is the data
	printf "$fmt" | dd of="$file" bs=1 seek="$off" conv=notrunc status=none
}

put_le32() { # FILE OFFSET VALUE
	put_bytes "$1" "$2" $(($3 & 255)) $(($3 >> 8 & 255)) $(($3 >> 16 & 255)) $(($3 >> 24 & 255))
}

flip() { # FILE OFFSET: change one byte
	local b
	b=$(od -An -tu1 -j "$2" -N1 -- "$1" | tr -d ' ')
	put_bytes "$1" "$2" $((b ^ 0x5a))
}

# Set the link entry (the second) of the EBR at byte EBR to point at the EBR
# at byte TARGET; EXT is the byte offset of the extended partition.
ebr_link() { # FILE EXT EBR TARGET
	local e=$(($3 + 446 + 16))
	put_bytes "$1" "$e" 0 0 0 0 5 0 0 0
	put_le32 "$1" $((e + 8)) $((($4 - $2) / 512))
	put_le32 "$1" $((e + 12)) 2048
}

# The byte offsets of the EBRs of FILE's extended partition (512-byte sectors).
ebrs() { # FILE
	local file=$1 i ext=0 lba
	for i in 0 1 2 3; do
		case $(od -An -tu1 -j $((446 + 16 * i + 4)) -N1 -- "$file" | tr -d ' ') in
		5 | 15 | 133) ext=$(le32 "$file" $((446 + 16 * i + 8))) ;;
		esac
	done
	lba=$ext
	while [ "$lba" != 0 ]; do
		echo $((lba * 512))
		local next
		next=$(le32 "$file" $((lba * 512 + 446 + 16 + 8)))
		if [ "$next" = 0 ]; then break; fi
		lba=$((ext + next))
	done
}

be64() { # FILE OFFSET: a big-endian number (qcow2's)
	echo $((16#$(od -An -tx1 -j "$2" -N8 -- "$1" | tr -d ' \n')))
}

put_be64() { # FILE OFFSET VALUE
	local i bytes=()
	for i in 56 48 40 32 24 16 8 0; do bytes+=($(($3 >> i & 255))); done
	put_bytes "$1" "$2" "${bytes[@]}"
}

# ---- the qcow2 images -------------------------------------------------------------

qdir=$work/qcow2
qout=$here/corpus-qcow2

qimg() { # NAME SIZE OPTIONS
	qemu-img create -q -f qcow2 -o "$3" "$qdir/$1" "$2"
}

qio() { # NAME COMMAND...
	local name=$1 c args=()
	shift
	for c in "$@"; do args+=(-c "$c"); done
	qemu-io -f qcow2 "${args[@]}" "$qdir/$name" >/dev/null
}

# Pack an image on a device of DEVICE_MIB (0: its own size); BELOW 1 reads
# the device raw below it, 2 the image again (fuzz-qcow2.c, byte 0).
qpack() { # NAME [DEVICE_MIB [BELOW]]
	"$qreplay" --pack "${2:-0}" "$qdir/$1" "$qout/$1"
	[ "${3:-0}" = 0 ] || put_bytes "$qout/$1" 0 "$3"
}

# The L2 entry of guest cluster INDEX (the first L2 table's).
l2_entry_at() { # NAME INDEX
	local f=$qdir/$1 l1 l2
	l1=$(be64 "$f" 40)
	l2=$(($(be64 "$f" "$l1") & 0x00fffffffffffe00))
	echo $((l2 + 8 * $2))
}

qcow2_corpus() {
	qreplay=${replay%/*}/replay-qcow2
	[ -x "$qreplay" ] || { echo "make-corpus: no $qreplay (build it: make tests/fuzz/replay-qcow2)" >&2; exit 1; }
	for cmd in qemu-img qemu-io dd od; do
		command -v "$cmd" >/dev/null || { echo "make-corpus: needs $cmd" >&2; exit 1; }
	done
	mkdir -p "$qdir" "$qout"
	rm -f -- "$qout"/*

	qimg v2-512 256K compat=0.10,cluster_size=512
	qio v2-512 "write -P 0x11 0 1k" "write -P 0x22 100k 1536" "write -c -P 0x33 64k 512" \
		"write -z 200k 512" "discard 1k 512" "write -P 0x44 255k 1k"
	qpack v2-512

	qimg v3-512 1M cluster_size=512
	qio v3-512 "write -P 0x11 0 1k" "write -P 0x22 300k 1536" "write -c -P 0x33 64k 512" \
		"write -z 200k 512" "discard 512 512" "write -P 0x44 1023k 1k"
	qpack v3-512

	qimg v3-4k 4M cluster_size=4096
	qio v3-4k "write -P 0x11 0 512" "write -P 0x22 2M 512" "write -c -P 0x33 64k 4k" \
		"write -z 1M 8k" "write -P 0x44 4092k 512"
	qpack v3-4k 0 1

	# 64 KiB clusters, as in an LV of 32 MiB
	qimg v3-64k 16M cluster_size=65536
	qio v3-64k "write -P 0x11 0 512" "write -P 0x22 1M 512" "write -c -P 0x33 3M 64k" \
		"write -z 2M 64k" "write -P 0x44 $((16 * 1024 * 1024 - 512)) 512" "discard 1M 64k"
	qpack v3-64k 32

	qimg zstd-64k 4M cluster_size=65536,compression_type=zstd
	qio zstd-64k "write -c -P 0x11 0 64k" "write -c -P 0x22 128k 64k" "write -P 0x33 1M 512"
	qpack zstd-64k

	qimg zstd-4k 1M cluster_size=4096,compression_type=zstd
	qio zstd-4k "write -c -P 0x11 0 8k" "write -P 0x22 64k 512"
	qpack zstd-4k 0 2

	# subclusters of 512 bytes, and of 2 KiB
	qimg ext-l2-16k 4M cluster_size=16384,extended_l2=on
	qio ext-l2-16k "write -P 0x11 0 512" "write -P 0x22 1536 1k" "write -z 4k 1k" \
		"write -c -P 0x33 16k 16k" "write -z 64k 16k" "write -P 0x44 100k 512"
	qpack ext-l2-16k 0 1
	qimg ext-l2-64k 4M extended_l2=on
	qio ext-l2-64k "write -P 0x11 2k 512" "write -z 8k 4k" "discard 0 2k" "write -P 0x22 1M 512"
	qpack ext-l2-64k

	qimg prealloc 512K cluster_size=4096,preallocation=metadata
	qio prealloc "write -P 0x11 0 512" "write -z 64k 8k" "write -P 0x22 300k 512"
	qpack prealloc

	qimg 2m 8M cluster_size=2M
	qio 2m "write -P 0x11 0 512" "write -c -P 0x22 2M 2M" "write -P 0x33 $((6 * 1024 * 1024 + 512)) 512"
	qpack 2m

	# an internal snapshot, then changes; the snapshot's times zeroed
	qimg snapshot 1M cluster_size=4096
	qio snapshot "write -P 0x11 0 1k" "write -P 0x22 512k 512"
	qemu-img snapshot -c before "$qdir/snapshot"
	qio snapshot "write -P 0x33 4k 512" "write -z 512k 4k"
	put_bytes "$qdir/snapshot" $(($(be64 "$qdir/snapshot" 64) + 16)) 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
	qpack snapshot

	# left dirty with lazy refcounts
	qimg dirty 1M cluster_size=4096,lazy_refcounts=on
	(ulimit -c 0; qemu-io -f qcow2 -c "write -P 0x11 0 4k" -c "write -P 0x22 512k 512" -c abort \
		"$qdir/dirty" >/dev/null) 2>/dev/null || true
	qpack dirty

	# backing files: a qcow2 one, a raw one (the layer below is the device
	# again: see qpack)
	qimg base 1M cluster_size=4096
	qemu-img create -q -f qcow2 -o cluster_size=4096 -b base -F qcow2 "$qdir/overlay" 2M
	qio overlay "write -P 0x11 4k 512" "write -z 8k 4k" "write -P 0x22 1536k 512"
	qpack overlay 0 2
	truncate -s 1M "$qdir/base.raw"
	qemu-img create -q -f qcow2 -o cluster_size=4096 -b base.raw -F raw "$qdir/over-raw" 1M
	qio over-raw "write -P 0x11 4k 512"
	qpack over-raw 0 1

	# a size of 2051 sectors, written to its end
	qimg odd $((1024 * 1024 + 1536)) cluster_size=4096
	qio odd "write -P 0x11 $((1024 * 1024)) 1536"
	qpack odd

	# compressed by qemu-img convert, ending in a compressed cluster
	for i in 0 1 2 3 4 5 6 7; do printf 'cluster %d of snapfs ' "$i"; done >"$qdir/small.raw"
	truncate -s 32K "$qdir/small.raw"
	qemu-img convert -c -O qcow2 -o cluster_size=4096 "$qdir/small.raw" "$qdir/converted"
	qpack converted

	# broken on purpose: an unknown incompatible feature, a bad L1 entry,
	# an L2 entry with a reserved bit, compressed bytes that do not
	# inflate, a header extension past the cluster
	cp "$qdir/v3-64k" "$qdir/unknown-feature"
	put_bytes "$qdir/unknown-feature" 79 32
	qpack unknown-feature
	cp "$qdir/v3-4k" "$qdir/bad-l1"
	put_bytes "$qdir/bad-l1" "$(be64 "$qdir/bad-l1" 40)" 0x7f
	qpack bad-l1
	cp "$qdir/v3-4k" "$qdir/bad-l2"
	put_bytes "$qdir/bad-l2" $(($(l2_entry_at bad-l2 0) + 7)) 2
	qpack bad-l2
	cp "$qdir/v3-4k" "$qdir/bad-compressed"
	put_bytes "$qdir/bad-compressed" \
		$(($(be64 "$qdir/bad-compressed" "$(l2_entry_at bad-compressed 16)") & ((1 << 58) - 1))) 0xff 0xff
	qpack bad-compressed
	cp "$qdir/v3-512" "$qdir/bad-extension"
	put_bytes "$qdir/bad-extension" 112 0x12 0x34 0x56 0x78 0x7f 0xff 0xff 0xff
	qpack bad-extension

	ls -l -- "$qout" >&2
}

[ "$target" = partitions ] || qcow2_corpus
[ "$target" != qcow2 ] || exit 0

# ---- the partitioned images -----------------------------------------------------

[ -x "$replay" ] || { echo "make-corpus: no $replay (build it: make tests/fuzz/replay-partitions)" >&2; exit 1; }
for cmd in sfdisk fdisk mkfs.ext4 truncate dd od; do
	command -v "$cmd" >/dev/null || { echo "make-corpus: needs $cmd" >&2; exit 1; }
done
out=$here/corpus
mkdir -p "$out"
rm -f -- "$out"/*


# sfdisk 2.38 knows only 512-byte sectors in an image file; fdisk -b loads
# the same script for other sector sizes.
image() { # NAME SIZE [SECTOR_SIZE] < SFDISK_SCRIPT
	local name=$1 size=$2 ss=${3:-512}
	truncate -s "$size" "$work/$name"
	if [ "$ss" = 512 ]; then
		sfdisk -q --no-reread --no-tell-kernel "$work/$name" >/dev/null
	else
		cat >"$work/$name.sfdisk"
		printf 'I\n%s\nw\n' "$work/$name.sfdisk" |
			fdisk -b "$ss" "$work/$name" >/dev/null
	fi
}

pack() { # NAME SECTOR_SIZE
	"$replay" --pack "$2" "$work/$1" "$out/$1"
}

image mbr-primaries 16M <<'S'
label: dos
label-id: 0x5eed0001
start=2048, size=8192, type=83, bootable
start=10240, type=82
S
pack mbr-primaries 512

image mbr-logicals 32M <<'S'
label: dos
label-id: 0x5eed0001
start=2048, size=4096, type=83
start=8192, size=24576, type=5
start=10240, size=4096, type=83
start=16384, size=4096, type=7
start=22528, type=8e
S
pack mbr-logicals 512

image mbr-4k 64M 4096 <<'S'
label: dos
label-id: 0x5eed0001
start=256, size=2048, type=83
start=4096, type=f
start=4352, size=1024, type=83
S
pack mbr-4k 4096

image gpt 16M <<'S'
label: gpt
label-id: 5EED0000-0000-4000-8000-000000000001
start=2048, size=4096, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=5EED0000-0000-4000-8000-000000000101, name="EFI system"
start=6144, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=5EED0000-0000-4000-8000-000000000102, name="root"
start=14336, size=8192, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, uuid=5EED0000-0000-4000-8000-000000000103
S
pack gpt 512

image gpt-4k 64M 4096 <<'S'
label: gpt
label-id: 5EED0000-0000-4000-8000-000000000001
start=256, size=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=5EED0000-0000-4000-8000-000000000104
start=2304, size=4096, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=5EED0000-0000-4000-8000-000000000105
S
pack gpt-4k 4096

image gpt-short-table 8M <<'S'
label: gpt
label-id: 5EED0000-0000-4000-8000-000000000001
table-length: 4
first-lba: 34
start=40, size=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=5EED0000-0000-4000-8000-000000000106
S
pack gpt-short-table 512

# GPT with its primary header's CRC broken: the backup header serves.
cp "$work/gpt" "$work/gpt-primary-damaged"
flip "$work/gpt-primary-damaged" $((512 + 16))
pack gpt-primary-damaged 512

# The primary entry array's CRC broken.
cp "$work/gpt" "$work/gpt-entries-damaged"
flip "$work/gpt-entries-damaged" $((1024 + 56))
pack gpt-entries-damaged 512

# Both headers broken: a protective MBR and nothing behind it.
cp "$work/gpt" "$work/gpt-both-damaged"
flip "$work/gpt-both-damaged" $((512 + 16))
flip "$work/gpt-both-damaged" $((16 * 1024 * 1024 - 512 + 16))
pack gpt-both-damaged 512

# The third EBR links back to the second: a loop.
cp "$work/mbr-logicals" "$work/ebr-loop"
mapfile -t ebr < <(ebrs "$work/ebr-loop")
[ ${#ebr[@]} = 3 ] || { echo "make-corpus: expected 3 EBRs, found ${ebr[*]}" >&2; exit 1; }
ebr_link "$work/ebr-loop" "${ebr[0]}" "${ebr[2]}" "${ebr[1]}"
pack ebr-loop 512

# The second EBR links to itself.
cp "$work/mbr-logicals" "$work/ebr-self"
ebr_link "$work/ebr-self" "${ebr[0]}" "${ebr[1]}" "${ebr[1]}"
pack ebr-self 512

# A logical partition whose EBR puts it after the extended partition (which
# ends at sector 32768), still on the disk.
cp "$work/mbr-logicals" "$work/ebr-outside"
put_le32 "$work/ebr-outside" $((ebr[1] + 446 + 8)) $((40000 - ebr[1] / 512))
pack ebr-outside 512

# 4K sectors, 3 TiB: a primary past 2 TiB in 512-byte units, which libblkid
# would count in 32 bits.
image mbr-past-2tib 3T 4096 <<'S'
label: dos
label-id: 0x5eed0001
start=256, size=2048, type=83
start=671088640, size=2048, type=83
S
pack mbr-past-2tib 4096

# A FreeBSD slice (0xa5) holding a disklabel with two partitions, which
# libblkid lists in a table nested in the slice.
image mbr-bsd-label 8M <<'S'
label: dos
label-id: 0x5eed0001
start=2048, size=2048, type=83
start=4096, size=8192, type=a5
S
label=$((4096 * 512 + 512))
put_le32 "$work/mbr-bsd-label" "$label" $((0x82564557))         # d_magic
put_le32 "$work/mbr-bsd-label" $((label + 132)) $((0x82564557)) # d_magic2
put_bytes "$work/mbr-bsd-label" $((label + 138)) 2 0            # d_npartitions
put_le32 "$work/mbr-bsd-label" $((label + 148)) 1024            # a: size, offset, fstype
put_le32 "$work/mbr-bsd-label" $((label + 152)) $((4096 + 16))
put_bytes "$work/mbr-bsd-label" $((label + 160)) 7
put_le32 "$work/mbr-bsd-label" $((label + 164)) 1024            # b
put_le32 "$work/mbr-bsd-label" $((label + 168)) $((4096 + 16 + 1024))
put_bytes "$work/mbr-bsd-label" $((label + 176)) 1
pack mbr-bsd-label 512

# An ext4 superblock in a partition, its label with a control byte and a
# byte that is not UTF-8 (only the first 2 KiB of the filesystem are kept:
# what libblkid reads).
image ext4-label 4M <<'S'
label: dos
label-id: 0x5eed0001
start=2048, size=4096, type=83
S
truncate -s 1M "$work/fs"
E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -L $'lab\x01el\xff' -b 1024 -N 16 \
	-O ^has_journal,^resize_inode -U 5eed0000-0000-4000-8000-000000000002 \
	-E hash_seed=5eed0000-0000-4000-8000-000000000001 "$work/fs"
dd if="$work/fs" of="$work/ext4-label" bs=1024 count=2 seek=1024 conv=notrunc status=none
pack ext4-label 512

ls -l -- "$out" >&2
