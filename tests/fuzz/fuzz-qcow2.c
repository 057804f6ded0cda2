/* Fuzz target for src/qcow2.c: a qcow2 image whose every byte comes from
 * the fuzzer, as every byte of a guest's qcow2 disk comes from its owner.
 *
 * An input describes a sparse device (the image and what holds it, the
 * size of an LV say), in memory: a header, then chunks of bytes placed on
 * it.  A seed holds the sectors an image uses, not the zeros between them,
 * so images with 64 KiB clusters are a few KiB.
 *
 *	byte 0      bits 0-1: the layer below the image: 0 or 3 none, 1 the
 *	            device again read raw, 2 the same image opened again
 *	bytes 1-4   the device's size in 512-byte units; 0 (or too small for
 *	            the chunks): just big enough for them.  At most 64 MiB.
 *	then chunks, to the end of the input:
 *	bytes 0-3   where, in 512-byte units
 *	bytes 4-5   length in bytes (cut to what the input has left)
 *	bytes 6-    the bytes (cut where the device ends; later chunks win)
 *
 * Numbers are little-endian.  replay-qcow2 --pack (fuzz_pack()) makes an
 * input of an image file.  Each input is opened; its first 256 KiB (or two
 * clusters) and its last 64 KiB are read whole, then cluster by cluster
 * (which must agree); its extents are walked (zero ones must read as
 * zeroes); its image end and allocation are computed.  Results must be 0 or
 * the errors the API names.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "snapfs.h"

#define UNIT 512u
#define HEADER_SIZE 5
#define CHUNK_HEADER 6
#define CHUNK_MAX 0xffffu
#define DEVICE_MAX (64ull << 20)
#define READ_RANGE (256u << 10) /* or two clusters when that is more */
#define TAIL_RANGE (64u << 10)
#define EXTENT_CALLS 128

/* ---- the device ------------------------------------------------------------------ */

struct chunk {
	uint64_t off;
	const uint8_t *bytes;
	size_t len;
};

struct device {
	uint64_t size;
	struct chunk *chunk;
	size_t n;
	unsigned below; /* byte 0, bits 0-1 */
};

/* The chunks of an input; false when it is not one. */
static bool decode(const uint8_t *in, size_t len, struct device *d)
{
	uint64_t need = 0;
	size_t pos = HEADER_SIZE;

	if (len < HEADER_SIZE)
		return false;
	d->below = in[0] & 3;
	d->size = (uint64_t)get_le32(in + 1) * UNIT;
	d->n = 0;
	d->chunk = malloc((len / CHUNK_HEADER + 1) * sizeof(*d->chunk));
	CHECK(d->chunk);
	while (len - pos >= CHUNK_HEADER) {
		struct chunk *c = &d->chunk[d->n++];

		c->off = (uint64_t)get_le32(in + pos) * UNIT;
		c->len = in[pos + 4] | in[pos + 5] << 8;
		c->bytes = in + pos + CHUNK_HEADER;
		pos += CHUNK_HEADER;
		if (c->len > len - pos)
			c->len = len - pos;
		pos += c->len;
		if (c->off + c->len > need)
			need = c->off + c->len;
	}
	if (d->size < need)
		d->size = need;
	if (d->size > DEVICE_MAX)
		d->size = DEVICE_MAX;
	return true;
}

static int device_pread(void *opaque, void *buf, size_t len, uint64_t off)
{
	const struct device *d = opaque;

	CHECK(len > 0); /* the decoder asks for bytes, or does not ask */
	if (off > d->size || len > d->size - off)
		return -ENXIO;
	memset(buf, 0, len);
	for (size_t i = 0; i < d->n; i++) {
		const struct chunk *c = &d->chunk[i];

		fuzz_overlay(buf, off, len, c->off, c->bytes, c->len);
	}
	return 0;
}

/* ---- packing an image file into an input ------------------------------------------ */

struct packer {
	uint8_t *out;
	size_t len, cap;
};

static int emit(struct packer *pk, uint64_t off, const uint8_t *bytes, size_t len)
{
	if (off % UNIT || off / UNIT > UINT32_MAX || len > CHUNK_MAX)
		return -E2BIG;
	if (fuzz_grow(&pk->out, &pk->cap, pk->len + CHUNK_HEADER + len))
		return -ENOMEM;
	put_le32(pk->out + pk->len, (uint32_t)(off / UNIT));
	pk->out[pk->len + 4] = len & 0xff;
	pk->out[pk->len + 5] = len >> 8;
	memcpy(pk->out + pk->len + CHUNK_HEADER, bytes, len);
	pk->len += CHUNK_HEADER + len;
	return 0;
}

/* One chunk per run of sectors in use, without its trailing zeros. */
static int emit_sectors(struct packer *pk, uint64_t off, const uint8_t *buf, size_t len)
{
	size_t i = 0;

	while (i < len) {
		size_t start, end;
		int r;

		while (i < len && zero(buf + i, UNIT < len - i ? UNIT : len - i))
			i += UNIT;
		if (i >= len)
			break;
		start = end = i;
		while (end < len && end - start < CHUNK_MAX / UNIT * UNIT &&
		       !zero(buf + end, UNIT < len - end ? UNIT : len - end))
			end += UNIT;
		if (end > len)
			end = len;
		i = end;
		while (end > start && !buf[end - 1])
			end--;
		r = emit(pk, off + start, buf + start, end - start);
		if (r)
			return r;
	}
	return 0;
}

int fuzz_pack(int fd, uint64_t size, unsigned device_mib, uint8_t **out, size_t *out_len)
{
	static uint8_t buf[1 << 20];
	uint64_t device =
		device_mib ? (uint64_t)device_mib << 20 : (size + UNIT - 1) / UNIT * UNIT;
	struct packer pk = { 0 };
	int r = 0;

	*out = NULL;
	if (device < size || device > DEVICE_MAX)
		return -EINVAL;
	pk.cap = 4096;
	pk.out = malloc(pk.cap);
	if (!pk.out)
		return -ENOMEM;
	pk.out[0] = 0;
	put_le32(pk.out + 1, (uint32_t)(device / UNIT));
	pk.len = HEADER_SIZE;
	for (uint64_t pos = 0; !r && pos < size;) {
		ssize_t n = pread(fd, buf,
				  size - pos < sizeof(buf) ? size - pos : sizeof(buf),
				  (off_t)pos);

		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		r = emit_sectors(&pk, pos, buf, (size_t)n);
		pos += (uint64_t)n;
	}
	if (r) {
		free(pk.out);
		return r;
	}
	*out = pk.out;
	*out_len = pk.len;
	return 0;
}

/* ---- the target ------------------------------------------------------------------ */

static bool is_error(int r, bool may_fail_io)
{
	return r == -ENOMEM || (may_fail_io && r == -EIO);
}

static void check_name(const char *s, size_t max)
{
	size_t len;

	if (!s)
		return;
	len = strlen(s);
	CHECK(len >= 1 && len <= max);
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		CHECK(*c >= 0x20 && *c != 0x7f);
}

static void check_image(const struct snapfs_qcow2 *q)
{
	unsigned cs = snapfs_qcow2_cluster_size(q);

	CHECK(cs >= 512 && cs <= 2u << 20 && !(cs & (cs - 1)));
	CHECK(snapfs_qcow2_version(q) == 2 || snapfs_qcow2_version(q) == 3);
	CHECK(snapfs_qcow2_virtual_size(q) <= INT64_MAX);
	check_name(snapfs_qcow2_backing_name(q), 1023);
	check_name(snapfs_qcow2_backing_format(q), 15);
}

/* [off, off + len) read whole, then cluster by cluster: when the whole read
 * works, each piece must too, with the same bytes.  Returns the whole
 * read's result; buf gets its bytes. */
static int check_reads(struct snapfs_qcow2 *q, uint8_t *buf, uint8_t *piece, uint64_t off,
		       uint64_t len)
{
	unsigned cs = snapfs_qcow2_cluster_size(q);
	int whole = snapfs_qcow2_read(q, buf, len, off);

	CHECK(whole == 0 || is_error(whole, true));
	for (uint64_t pos = off; pos < off + len;) {
		uint64_t next = (pos / cs + 1) * cs;
		uint64_t n = (next < off + len ? next : off + len) - pos;
		int r = snapfs_qcow2_read(q, piece, n, pos);

		CHECK(r == 0 || is_error(r, true));
		if (!whole) {
			CHECK(r == 0 || r == -ENOMEM);
			CHECK(r || !memcmp(piece, buf + (pos - off), n));
		}
		pos += n;
	}
	return whole;
}

/* Extents from 0: of one kind, in order, inside the disk; zero ones read
 * as zeroes where the first read (buf, of [0, len)) worked. */
static void check_extents(struct snapfs_qcow2 *q, bool has_below, const uint8_t *buf,
			  uint64_t len, bool read_ok)
{
	uint64_t size = snapfs_qcow2_virtual_size(q), off = 0, n;
	enum snapfs_extent_kind kind;
	int r;

	for (int i = 0; i < EXTENT_CALLS && off < size; i++) {
		r = snapfs_qcow2_extent(q, off, &n, &kind);
		CHECK(r == 0 || is_error(r, true));
		if (r)
			return;
		CHECK(n > 0 && n <= size - off);
		CHECK(kind == SNAPFS_EXTENT_DATA || kind == SNAPFS_EXTENT_ZERO ||
		      kind == SNAPFS_EXTENT_BACKING);
		CHECK(kind != SNAPFS_EXTENT_BACKING || has_below);
		if (kind == SNAPFS_EXTENT_ZERO && read_ok && off < len)
			for (uint64_t b = off; b < off + n && b < len; b++)
				CHECK(buf[b] == 0);
		off += n;
	}
	if (off >= size)
		CHECK(snapfs_qcow2_extent(q, size, &n, &kind) == -ENXIO);
}

static void check_end(struct snapfs_qcow2 *q, uint64_t device_size)
{
	uint64_t cs = snapfs_qcow2_cluster_size(q), end, bytes;
	int r = snapfs_qcow2_image_end(q, &end);

	CHECK(r == 0 || is_error(r, false));
	if (!r)
		CHECK(end >= cs && end % cs == 0 && end <= device_size + 2 * cs);
	r = snapfs_qcow2_allocated(q, &bytes);
	CHECK(r == 0 || is_error(r, false));
	if (!r)
		CHECK(bytes <= snapfs_qcow2_virtual_size(q));
}

static void run(struct device *d)
{
	static uint8_t buf[4u << 20], piece[2u << 20];
	const struct snapfs_qcow2_io io = { device_pread, d, d->size, "fuzz", "vda" };
	struct snapfs_qcow2 *q, *again = NULL;
	uint64_t size, len;
	int r, whole;

	r = snapfs_qcow2_open(&io, &q);
	CHECK(r == 0 || r == -EINVAL || r == -EOPNOTSUPP || r == -ENOMEM);
	CHECK(!r == !!q);
	if (r)
		return;
	check_image(q);
	if (d->below == 1)
		CHECK(snapfs_qcow2_set_backing(q, NULL, &io) == 0);
	if (d->below == 2 && snapfs_qcow2_open(&io, &again) == 0) {
		CHECK(snapfs_qcow2_set_backing(q, again, NULL) == 0);
		CHECK(snapfs_qcow2_set_backing(again, q, NULL) == -ELOOP);
	}
	size = snapfs_qcow2_virtual_size(q);
	len = 2ull * snapfs_qcow2_cluster_size(q);
	if (len < READ_RANGE)
		len = READ_RANGE;
	if (len > size)
		len = size;
	whole = check_reads(q, buf, piece, 0, len);
	check_extents(q, d->below == 1 || again, buf, len, whole == 0);
	if (size > len) { /* the end of the disk too; buf is done with */
		uint64_t tail = size - len < TAIL_RANGE ? size - len : TAIL_RANGE;

		check_reads(q, buf, piece, size - tail, tail);
	}
	CHECK(snapfs_qcow2_read(q, buf, 1, size) == -EINVAL);
	check_end(q, d->size);
	snapfs_qcow2_close(q);
	snapfs_qcow2_close(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct device d;

	if (!decode(data, size, &d))
		return -1; /* not an input: libFuzzer keeps it out of the corpus */
	run(&d);
	free(d.chunk);
	return 0;
}
