/* Unit tests for src/qcow2.c: qcow2 images from a hostile owner.
 *
 * Every image is built here, in memory, by a small builder: the header
 * (version 2 or 3), the L1 table, L2 tables (standard or extended), data,
 * zero and compressed clusters (deflated with zlib, or zstd, here), the
 * refcount table and block.  The builder keeps what the virtual disk must
 * read as beside it; the decoder reads the image through a callback over
 * the buffer that counts its preads and can fail one.  The log is kept
 * (snapfs_log is wrapped at link time): each refusal and each bad table
 * says one line naming guest and disk.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include <cmocka.h>

#include "snapfs.h"

#define UNUSED __attribute__((unused))
#define KiB 1024ull
#define MiB (1024ull * 1024)

#define L2_COPIED (1ull << 63)
/* The builder keeps what at most this much of a virtual disk reads as. */
#define EXPECT_MAX (64 * MiB)
#define L2_COMPRESSED (1ull << 62)

/* Builder flags. */
#define V2 1u
#define EXT_L2 2u
#define ZSTD 4u

/* ---- the log ------------------------------------------------------------- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[64 * 1024];
static size_t log_len;
static unsigned log_lines;

/* Every line said each time: the tests count them. */
bool __wrap_snapfs_log_first(const char *key, const char *detail);
bool __wrap_snapfs_log_first(const char *key, const char *detail)
{
	(void)key;
	(void)detail;
	return true;
}

void __wrap_snapfs_log(enum snapfs_log_level level, const char *fmt, ...);
void __wrap_snapfs_log(enum snapfs_log_level level, const char *fmt, ...)
{
	static const char *const prefix[] = { "error: ", "warning: ", "", "debug: " };
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	printf("# %s%s\n", prefix[level], line);
	pthread_mutex_lock(&log_lock);
	if (level != SNAPFS_LOG_DEBUG) {
		log_len += snprintf(log_text + log_len, sizeof(log_text) - log_len,
				    "%s%s\n", prefix[level], line);
		if (log_len >= sizeof(log_text))
			log_len = sizeof(log_text) - 1;
		log_lines++;
	}
	pthread_mutex_unlock(&log_lock);
}

static void log_reset(void)
{
	log_len = 0;
	log_text[0] = '\0';
	log_lines = 0;
}

/* Exactly one line, naming guest and disk, saying what. */
static void assert_one_line(const char *what)
{
	if (log_lines != 1 || !strstr(log_text, what))
		fail_msg("expected one line with \"%s\"; the log was:\n%s", what,
			 log_text);
	if (!strstr(log_text, "guest g1, disk vda: "))
		fail_msg("the line names no guest and disk: %s", log_text);
}

static void assert_no_log(void)
{
	if (log_lines)
		fail_msg("unexpected log:\n%s", log_text);
}

/* ---- images ------------------------------------------------------------- */

struct image {
	uint8_t *dev; /* the device's bytes */
	size_t cap;
	uint64_t size; /* what the io says it holds */
	unsigned version, cb, flags;
	uint64_t cs, vsize;
	uint64_t l1_offset;
	uint32_t l1_size;
	uint64_t next;	      /* the next free host cluster */
	uint64_t cpos, cend;  /* where compressed clusters go */
	uint8_t *expect;      /* what the virtual disk reads as, */
	uint64_t expect_size; /* its first bytes (EXPECT_MAX at most) */
	unsigned preads;      /* atomic */
	uint64_t fail_at;     /* a pread over this byte fails (0: none) */
};

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = v >> (24 - 8 * i);
}

static void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, v >> 32);
	put_be32(p + 4, (uint32_t)v);
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* The device is at least size bytes (zeroes added). */
static void grow(struct image *im, uint64_t size)
{
	if (size > im->cap) {
		size_t cap = size * 2;

		im->dev = realloc(im->dev, cap);
		assert_non_null(im->dev);
		memset(im->dev + im->cap, 0, cap - im->cap);
		im->cap = cap;
	}
	if (size > im->size)
		im->size = size;
}

/* The byte a guest offset holds in data of seed: runs of 16, so that it
 * compresses, and different in each 512 bytes. */
static uint8_t pattern(uint64_t guest, uint8_t seed)
{
	return (uint8_t)(seed + (guest >> 4) % 7 + (guest >> 9) * 3);
}

static unsigned l2_bits(const struct image *im)
{
	return im->cb - 3 - (im->flags & EXT_L2 ? 1 : 0);
}

static void write_header(struct image *im)
{
	uint8_t *h = im->dev;

	put_be32(h, 0x514649fb);
	put_be32(h + 4, im->version);
	put_be32(h + 20, im->cb);
	put_be64(h + 24, im->vsize);
	put_be32(h + 36, im->l1_size);
	put_be64(h + 40, im->l1_offset);
	put_be64(h + 48, im->cs); /* refcount table: cluster 1 */
	put_be32(h + 56, 1);
	if (im->version == 2)
		return;
	put_be64(h + 72, (im->flags & EXT_L2 ? 1ull << 4 : 0) |
				 (im->flags & ZSTD ? 1ull << 3 : 0));
	put_be32(h + 96, 4);
	put_be32(h + 100, 112);
	h[104] = im->flags & ZSTD ? 1 : 0;
}

/* A fresh image: header, refcount table and block (clusters 1, 2), L1. */
static void img_init(struct image *im, unsigned cb, uint64_t vsize, unsigned flags)
{
	uint64_t cover;

	memset(im, 0, sizeof(*im));
	im->version = flags & V2 ? 2 : 3;
	im->cb = cb;
	im->cs = 1ull << cb;
	im->flags = flags;
	im->vsize = vsize;
	cover = im->cs << l2_bits(im);
	im->l1_size = (uint32_t)((vsize + cover - 1) / cover);
	im->l1_offset = 3 * im->cs;
	im->next = im->l1_offset + (im->l1_size * 8ull + im->cs - 1) / im->cs * im->cs;
	if (im->next == im->l1_offset)
		im->next += im->cs;
	grow(im, im->next);
	im->expect_size = vsize < EXPECT_MAX ? vsize : EXPECT_MAX;
	im->expect = calloc(1, im->expect_size ? im->expect_size : 1);
	assert_non_null(im->expect);
	write_header(im);
	put_be64(im->dev + im->cs, 2 * im->cs); /* the refcount block */
}

static void img_free(struct image *im)
{
	free(im->dev);
	free(im->expect);
}

static uint64_t img_cluster(struct image *im)
{
	uint64_t off = im->next;

	im->next += im->cs;
	grow(im, im->next);
	return off;
}

/* The L2 table of the guest offset, made when there is none. */
static uint64_t img_l2(struct image *im, uint64_t guest)
{
	uint64_t i = guest >> (im->cb + l2_bits(im));
	uint8_t *e = im->dev + im->l1_offset + 8 * i;
	uint64_t off = get_be64(e) & 0x00fffffffffffe00ull;

	if (!off) {
		off = img_cluster(im);
		put_be64(im->dev + im->l1_offset + 8 * i, off | L2_COPIED);
	}
	return off;
}

static void img_entry(struct image *im, uint64_t guest, uint64_t entry, uint64_t bitmap)
{
	uint64_t l2 = img_l2(im, guest);
	uint64_t i = (guest >> im->cb) & ((1ull << l2_bits(im)) - 1);
	unsigned words = im->flags & EXT_L2 ? 2 : 1;

	put_be64(im->dev + l2 + 8 * words * i, entry);
	if (words == 2)
		put_be64(im->dev + l2 + 16 * i + 8, bitmap);
}

/* What the guest cluster at guest holds, in expect, from host bytes. */
static void expect_bytes(struct image *im, uint64_t guest, uint64_t len,
			 const uint8_t *src)
{
	if (guest >= im->expect_size)
		return;
	if (len > im->expect_size - guest)
		len = im->expect_size - guest;
	if (src)
		memcpy(im->expect + guest, src, len);
	else
		memset(im->expect + guest, 0, len);
}

static void fill(struct image *im, uint64_t host, uint64_t guest, uint64_t len,
		 uint8_t seed)
{
	for (uint64_t i = 0; i < len; i++)
		im->dev[host + i] = pattern(guest + i, seed);
	expect_bytes(im, guest, len, im->dev + host);
}

/* A data cluster at host (allocated when 0) for the guest cluster. */
static uint64_t img_data_at(struct image *im, uint64_t guest, uint64_t host, uint8_t seed)
{
	if (!host)
		host = img_cluster(im);
	fill(im, host, guest, im->cs, seed);
	img_entry(im, guest, L2_COPIED | host, im->flags & EXT_L2 ? 0xffffffffull : 0);
	return host;
}

static uint64_t img_data(struct image *im, uint64_t guest, uint8_t seed)
{
	return img_data_at(im, guest, 0, seed);
}

/* A zero cluster; preallocated: with a host cluster of non-zero bytes. */
static void img_zero(struct image *im, uint64_t guest, bool prealloc)
{
	uint64_t host = prealloc ? img_cluster(im) : 0;

	if (host)
		memset(im->dev + host, 0xee, im->cs);
	expect_bytes(im, guest, im->cs, NULL);
	if (im->flags & EXT_L2)
		img_entry(im, guest, host ? L2_COPIED | host : 0, 0xffffffffull << 32);
	else
		img_entry(im, guest, (host ? L2_COPIED | host : 0) | 1, 0);
}

/* The cluster's pattern compressed, as qemu does (raw deflate, or one zstd
 * frame); returns its length in out. */
static size_t compress_cluster(const struct image *im, const uint8_t *src, uint8_t *out,
			       size_t cap)
{
	if (im->flags & ZSTD) {
		size_t n = ZSTD_compress(out, cap, src, im->cs, 3);

		assert_false(ZSTD_isError(n));
		return n;
	}
	z_stream zs = { 0 };
	assert_int_equal(deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
				      Z_DEFAULT_STRATEGY),
			 Z_OK);
	zs.next_in = (uint8_t *)src;
	zs.avail_in = (uInt)im->cs;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	deflateEnd(&zs);
	return cap - zs.avail_out;
}

/* Put len compressed bytes at the next free byte of the compressed area
 * (its first at byte 100 of a cluster: not sector aligned); the L2 entry
 * that points there. */
static uint64_t place_compressed(struct image *im, const uint8_t *bytes, size_t len)
{
	uint64_t sectors;

	if (!im->cpos || im->cpos + len > im->cend) {
		uint64_t n = (len + im->cs - 1) / im->cs + 1;

		im->cpos = img_cluster(im) + 100;
		for (uint64_t i = 1; i < n; i++)
			img_cluster(im);
		im->cend = im->next;
	}
	memcpy(im->dev + im->cpos, bytes, len);
	sectors = ((im->cpos + len - 1) >> 9) - (im->cpos >> 9);
	im->cpos += len;
	return L2_COMPRESSED | (im->cpos - len) | sectors << (62 - (im->cb - 8));
}

static uint64_t img_compressed(struct image *im, uint64_t guest, uint8_t seed)
{
	uint8_t *src = malloc(im->cs), *out = malloc(2 * im->cs + 1024);
	uint64_t entry;

	assert_non_null(src);
	assert_non_null(out);
	for (uint64_t i = 0; i < im->cs; i++)
		src[i] = pattern(guest + i, seed);
	entry = place_compressed(im, out,
				 compress_cluster(im, src, out, 2 * im->cs + 1024));
	expect_bytes(im, guest, im->cs, src);
	img_entry(im, guest, entry, 0);
	free(src);
	free(out);
	return entry;
}

/* Extended L2: subclusters allocated (data), zero, or neither (below). */
static void img_sub(struct image *im, uint64_t guest, uint32_t alloc, uint32_t zero,
		    uint8_t seed)
{
	uint64_t sc = im->cs / 32, host = alloc ? img_cluster(im) : 0;

	for (unsigned i = 0; i < 32; i++) {
		if (alloc >> i & 1)
			fill(im, host + i * sc, guest + i * sc, sc, seed);
		else if (zero >> i & 1)
			expect_bytes(im, guest + i * sc, sc, NULL);
	}
	img_entry(im, guest, host ? L2_COPIED | host : 0, (uint64_t)zero << 32 | alloc);
}

/* Refcount 1 for every cluster made so far (16-bit refcounts, one block). */
static void img_refcounts(struct image *im)
{
	uint64_t clusters = (im->next + im->cs - 1) / im->cs;

	assert_true(clusters <= im->cs / 2);
	for (uint64_t c = 0; c < clusters; c++)
		put_be16(im->dev + 2 * im->cs + 2 * c, 1);
}

static int mem_pread(void *opaque, void *buf, size_t len, uint64_t off)
{
	struct image *im = opaque;

	__atomic_add_fetch(&im->preads, 1, __ATOMIC_RELAXED);
	if (off > im->size || len > im->size - off)
		return -ENXIO;
	if (im->fail_at && im->fail_at >= off && im->fail_at < off + len)
		return -EIO;
	memcpy(buf, im->dev + off, len);
	return 0;
}

static struct snapfs_qcow2_io img_io(struct image *im)
{
	return (struct snapfs_qcow2_io){ mem_pread, im, im->size, "g1", "vda" };
}

static struct snapfs_qcow2 *img_open(struct image *im)
{
	struct snapfs_qcow2_io io = img_io(im);
	struct snapfs_qcow2 *q = NULL;

	assert_int_equal(snapfs_qcow2_open(&io, &q), 0);
	assert_non_null(q);
	return q;
}

static int img_open_err(struct image *im)
{
	struct snapfs_qcow2_io io = img_io(im);
	struct snapfs_qcow2 *q = (void *)1; /* open must set it to NULL */
	int r;

	log_reset();
	r = snapfs_qcow2_open(&io, &q);
	assert_null(q);
	return r;
}

/* The whole disk, then piece by piece (cluster by cluster, and in odd
 * pieces across clusters), reads as expected. */
static void assert_reads(struct snapfs_qcow2 *q, const uint8_t *expect, uint64_t vsize)
{
	uint64_t cs = snapfs_qcow2_cluster_size(q);
	uint8_t *buf = malloc(vsize ? vsize : 1);

	assert_true(vsize <= EXPECT_MAX);
	assert_non_null(buf);
	assert_int_equal(snapfs_qcow2_read(q, buf, vsize, 0), 0);
	assert_memory_equal(buf, expect, vsize);
	for (uint64_t off = 0; off < vsize; off += cs) {
		uint64_t n = vsize - off < cs ? vsize - off : cs;

		memset(buf, 0xaa, n);
		assert_int_equal(snapfs_qcow2_read(q, buf, n, off), 0);
		assert_memory_equal(buf, expect + off, n);
	}
	for (uint64_t off = 7, n = cs + 999; off < vsize; off += n, n = n * 3 / 2 + 1) {
		if (n > vsize - off)
			n = vsize - off;
		memset(buf, 0xaa, n);
		assert_int_equal(snapfs_qcow2_read(q, buf, n, off), 0);
		assert_memory_equal(buf, expect + off, n);
	}
	free(buf);
}

struct extent {
	uint64_t len;
	enum snapfs_extent_kind kind;
};

static struct extent extent_at(struct snapfs_qcow2 *q, uint64_t off)
{
	struct extent x;

	assert_int_equal(snapfs_qcow2_extent(q, off, &x.len, &x.kind), 0);
	return x;
}

static void assert_extent(struct snapfs_qcow2 *q, uint64_t off, uint64_t len,
			  enum snapfs_extent_kind kind)
{
	struct extent x = extent_at(q, off);

	if (x.len != len || x.kind != kind)
		fail_msg("extent at %llu: %llu bytes of kind %d, not %llu of kind %d",
			 (unsigned long long)off, (unsigned long long)x.len, x.kind,
			 (unsigned long long)len, kind);
}

static uint64_t image_end(struct snapfs_qcow2 *q)
{
	uint64_t end;

	assert_int_equal(snapfs_qcow2_image_end(q, &end), 0);
	return end;
}

static uint64_t allocated(struct snapfs_qcow2 *q)
{
	uint64_t bytes;

	assert_int_equal(snapfs_qcow2_allocated(q, &bytes), 0);
	return bytes;
}

/* ---- decoding ------------------------------------------------------------ */

/* Version 3: data, zero, preallocated zero and unallocated clusters, a
 * virtual size that ends inside a cluster. */
static void test_v3_kinds(void **state UNUSED)
{
	struct image im;
	struct snapfs_qcow2 *q;
	uint64_t cs = 64 * KiB, vsize = 10 * cs + 512;

	img_init(&im, 16, vsize, 0);
	img_data(&im, 0, 1);
	img_data(&im, cs, 2);
	img_zero(&im, 2 * cs, false);
	img_zero(&im, 3 * cs, true);
	img_data(&im, 5 * cs, 3);
	img_data(&im, 10 * cs, 4); /* the last cluster: 512 bytes of it shown */
	log_reset();
	q = img_open(&im);
	assert_int_equal(snapfs_qcow2_version(q), 3);
	assert_int_equal(snapfs_qcow2_cluster_size(q), cs);
	assert_int_equal(snapfs_qcow2_virtual_size(q), vsize);
	assert_null(snapfs_qcow2_backing_name(q));
	assert_null(snapfs_qcow2_backing_format(q));
	assert_reads(q, im.expect, vsize);
	assert_extent(q, 0, 2 * cs, SNAPFS_EXTENT_DATA);
	assert_extent(q, 100, 2 * cs - 100, SNAPFS_EXTENT_DATA);
	assert_extent(q, 2 * cs, 2 * cs, SNAPFS_EXTENT_ZERO);
	assert_extent(q, 4 * cs, cs, SNAPFS_EXTENT_ZERO); /* unallocated, nothing below */
	assert_extent(q, 5 * cs, cs, SNAPFS_EXTENT_DATA);
	assert_extent(q, 10 * cs, 512, SNAPFS_EXTENT_DATA);
	assert_no_log();
	snapfs_qcow2_close(q);
	img_free(&im);
}

static void test_v2(void **state UNUSED)
{
	struct image im;
	struct snapfs_qcow2 *q;
	uint64_t cs = 4 * KiB;

	img_init(&im, 12, 100 * cs, V2);
	img_data(&im, 0, 1);
	img_data(&im, 99 * cs, 2);
	img_compressed(&im, 50 * cs, 3);
	log_reset();
	q = img_open(&im);
	assert_int_equal(snapfs_qcow2_version(q), 2);
	assert_reads(q, im.expect, im.vsize);
	assert_no_log();
	snapfs_qcow2_close(q);
	img_free(&im);
}

/* Every cluster size from 512 B to 2 MiB, with more than one L2 table. */
static void test_cluster_sizes(void **state UNUSED)
{
	for (unsigned cb = 9; cb <= 21; cb++) {
		uint64_t cs = 1ull << cb, table = cs << (cb - 3);
		uint64_t vsize = cb < 14 ? table + 5 * cs : 6 * cs;
		struct snapfs_qcow2 *q;
		struct image im;

		img_init(&im, cb, vsize, cb % 2 ? ZSTD : 0);
		img_data(&im, 0, 1);
		img_data(&im, 2 * cs, 2);
		img_compressed(&im, 3 * cs, 3);
		img_zero(&im, 4 * cs, false);
		img_data(&im, vsize - cs, 4);
		if (cb < 14)
			img_compressed(&im, table, 5); /* in the second L2 table */
		q = img_open(&im);
		assert_int_equal(snapfs_qcow2_cluster_size(q), cs);
		assert_reads(q, im.expect, vsize);
		snapfs_qcow2_close(q);
		img_free(&im);
	}
}

/* Compressed clusters packed end to end (sharing sectors), deflate and
 * zstd; the last one's sectors run past the end of the device, which is
 * not read. */
static void test_compressed(void **state UNUSED)
{
	for (unsigned flags = 0; flags <= ZSTD; flags += ZSTD) {
		uint64_t cs = 64 * KiB;
		struct snapfs_qcow2 *q;
		struct image im;
		uint64_t e;

		img_init(&im, 16, 16 * cs, flags);
		img_data(&im, cs,
			 1); /* the L2 table and the data before the compressed */
		for (unsigned i = 0; i < 8; i++)
			img_compressed(&im, i * 2 * cs, (uint8_t)(10 + i));
		e = img_compressed(&im, 15 * cs, 30);
		/* the device ends just after the last compressed byte, which
		 * leaves its last sector cut (and claims one more sector) */
		im.size = im.cpos;
		img_entry(&im, 15 * cs, e + (1ull << (62 - 8)), 0);
		log_reset();
		q = img_open(&im);
		assert_reads(q, im.expect, im.vsize);
		assert_extent(q, 0, 3 * cs, SNAPFS_EXTENT_DATA);
		assert_no_log();
		snapfs_qcow2_close(q);
		img_free(&im);
	}
}

/* Extended L2 entries over a raw layer below: subclusters allocated,
 * zero or unallocated each, in one cluster and across clusters. */
static void test_extended_l2(void **state UNUSED)
{
	uint64_t cs = 64 * KiB, sc = cs / 32, vsize = 8 * cs;
	struct image im, raw;
	struct snapfs_qcow2_io below;
	struct snapfs_qcow2 *q;

	memset(&raw, 0, sizeof(raw));
	grow(&raw, vsize - 3000); /* shorter than the disk: zeroes after it */
	for (uint64_t i = 0; i < raw.size; i++)
		raw.dev[i] = pattern(i, 0x80);
	img_init(&im, 16, vsize, EXT_L2);
	memcpy(im.expect, raw.dev, raw.size);
	img_sub(&im, 0, 0xffffffff, 0, 1);
	img_sub(&im, cs, 0x0000ff0f, 0x00f000f0, 2);
	img_sub(&im, 2 * cs, 0, 0xffff0000, 0); /* zero, no cluster */
	img_sub(&im, 3 * cs, 0x80000001, 0, 3);
	img_entry(&im, 4 * cs, L2_COPIED | img_cluster(&im),
		  0); /* preallocated, all below */
	img_compressed(&im, 5 * cs, 4);
	img_sub(&im, 7 * cs, 0x1, 0x2, 5); /* the last, over the raw layer's end */
	below = img_io(&raw);
	log_reset();
	q = img_open(&im);
	assert_int_equal(snapfs_qcow2_set_backing(q, NULL, &below), 0);
	assert_reads(q, im.expect, vsize);
	assert_extent(q, 0, cs + 4 * sc, SNAPFS_EXTENT_DATA);
	assert_extent(q, cs + 4 * sc, 4 * sc, SNAPFS_EXTENT_ZERO);
	assert_extent(q, cs + 8 * sc, 8 * sc, SNAPFS_EXTENT_DATA);
	assert_extent(q, cs + 16 * sc, 4 * sc, SNAPFS_EXTENT_BACKING);
	assert_extent(q, cs + 20 * sc, 4 * sc, SNAPFS_EXTENT_ZERO);
	assert_extent(q, 2 * cs, 16 * sc, SNAPFS_EXTENT_BACKING);
	assert_extent(q, 2 * cs + 16 * sc, 16 * sc, SNAPFS_EXTENT_ZERO);
	assert_extent(q, 3 * cs, sc, SNAPFS_EXTENT_DATA);
	assert_extent(q, 5 * cs, cs, SNAPFS_EXTENT_DATA);
	assert_extent(q, 7 * cs, sc, SNAPFS_EXTENT_DATA);
	assert_extent(q, 7 * cs + sc, sc, SNAPFS_EXTENT_ZERO);
	assert_extent(q, 7 * cs + 2 * sc, raw.size - 7 * cs - 2 * sc,
		      SNAPFS_EXTENT_BACKING);
	assert_extent(q, raw.size, vsize - raw.size, SNAPFS_EXTENT_ZERO);
	assert_no_log();
	snapfs_qcow2_close(q);
	img_free(&im);
	free(raw.dev);
}

/* A chain of three: top (v3) <- middle (v2, shorter) <- base (zstd). */
static void three_layers(struct image *base, struct image *mid, struct image *top,
			 uint64_t cs)
{
	img_init(base, 12, 40 * cs, ZSTD);
	for (unsigned i = 0; i < 40; i += 2)
		img_data(base, i * cs, 1);
	img_compressed(base, 5 * cs, 2);
	img_init(mid, 12, 30 * cs + 100, V2);
	memcpy(mid->expect, base->expect, mid->vsize);
	img_data(mid, 0, 3);
	img_data(mid, 7 * cs, 4);
	img_init(top, 12, 64 * cs, 0);
	memcpy(top->expect, mid->expect, mid->vsize);
	img_zero(top, 2 * cs, false);
	img_data(top, 8 * cs, 5);
	img_data(top, 40 * cs, 6);
}

/* A chain of three: top (v3) <- middle (v2, shorter) <- base (zstd). */
static void test_backing_chain(void **state UNUSED)
{
	uint64_t cs = 4 * KiB;
	struct image base, mid, top;
	struct snapfs_qcow2 *qb, *qm, *qt;

	three_layers(&base, &mid, &top, cs);
	qb = img_open(&base);
	qm = img_open(&mid);
	qt = img_open(&top);
	assert_int_equal(snapfs_qcow2_set_backing(qm, qb, NULL), 0);
	assert_int_equal(snapfs_qcow2_set_backing(qt, qm, NULL), 0);
	assert_reads(qm, mid.expect, mid.vsize);
	assert_reads(qt, top.expect, top.vsize);
	assert_extent(qt, 0, 2 * cs, SNAPFS_EXTENT_BACKING);
	assert_extent(qt, 2 * cs, cs, SNAPFS_EXTENT_ZERO);
	assert_extent(qt, 9 * cs, 30 * cs + 100 - 9 * cs, SNAPFS_EXTENT_BACKING);
	assert_extent(qt, 30 * cs + 100, 10 * cs - 100, SNAPFS_EXTENT_ZERO);
	/* a loop, a layer below itself, both kinds of layer at once */
	assert_int_equal(snapfs_qcow2_set_backing(qb, qt, NULL), -ELOOP);
	assert_int_equal(snapfs_qcow2_set_backing(qb, qb, NULL), -ELOOP);
	{
		struct snapfs_qcow2_io io = img_io(&base);

		assert_int_equal(snapfs_qcow2_set_backing(qb, qm, &io), -EINVAL);
	}
	snapfs_qcow2_close(qt);
	snapfs_qcow2_close(qm);
	snapfs_qcow2_close(qb);
	img_free(&top);
	img_free(&mid);
	img_free(&base);
}

/* The same chain through src/image.c, as files read it: layers pushed top
 * first, then linked; holes are what no layer has data for. */
static void test_image_chain(void **state UNUSED)
{
	uint64_t cs = 4 * KiB, at, end;
	struct image base, mid, top;
	struct snapfs_chain c = { 0 };
	struct snapfs_qcow2_io io;
	struct snapfs_image im;
	uint8_t *buf;
	static const uint64_t seeks[][3] = {
		/* whence, from, expected: in units of cs, 1000 + n: 30 cs + 100 + n */
		{ SEEK_DATA, 0, 0 },  { SEEK_HOLE, 0, 1 },  { SEEK_DATA, 1, 4 },
		{ SEEK_HOLE, 4, 9 },  { SEEK_DATA, 9, 10 }, { SEEK_HOLE, 10, 11 },
		{ SEEK_HOLE, 30, 1000 }, { SEEK_DATA, 31, 40 }, { SEEK_HOLE, 40, 41 },
		{ SEEK_DATA, 41, 64 },
	};

	three_layers(&base, &mid, &top, cs);
	io = img_io(&top);
	assert_int_equal(snapfs_chain_push(&c, &io, "qcow2"), 0);
	io = img_io(&mid);
	assert_int_equal(snapfs_chain_push(&c, &io, "qcow2"), 0);
	io = img_io(&base);
	assert_int_equal(snapfs_chain_push(&c, &io, "qcow2"), 0);
	assert_int_equal(snapfs_chain_link(&c), 0);
	im = (struct snapfs_image){ .kind = SNAPFS_IMAGE_QCOW2, .chain = &c,
				    .size = top.vsize };

	buf = malloc(top.vsize);
	assert_non_null(buf);
	assert_int_equal(snapfs_image_read(&im, buf, top.vsize, 0), 0);
	assert_memory_equal(buf, top.expect, top.vsize);
	free(buf);

	end = top.vsize;
	for (size_t i = 0; i < sizeof(seeks) / sizeof(seeks[0]); i++) {
		uint64_t want = seeks[i][2] >= 1000 ? 30 * cs + 100 + (seeks[i][2] - 1000)
						    : seeks[i][2] * cs;

		assert_int_equal(snapfs_image_seek(&im, seeks[i][1] * cs, end, (int)seeks[i][0],
						   &at), 0);
		if (at != want)
			fail_msg("seek %s from cluster %" PRIu64 ": %" PRIu64 ", want %" PRIu64,
				 seeks[i][0] == SEEK_DATA ? "data" : "hole", seeks[i][1], at, want);
	}
	/* Clusters 0, 4-8, the even ones from 10 to 28, 100 bytes of 30, 40. */
	assert_true(snapfs_image_allocated(&im, 0, end) == 17 * cs + 100);
	assert_true(snapfs_image_allocated(&im, 4 * cs + 10, 6 * cs) == 2 * cs - 10);
	snapfs_chain_close(&c);
	/* A raw layer ends a chain: nothing goes below it. */
	assert_int_equal(snapfs_chain_push(&c, &io, "raw"), 0);
	assert_int_equal(snapfs_chain_push(&c, &io, "qcow2"), -ELOOP);
	assert_int_equal(snapfs_chain_link(&c), -EINVAL); /* no qcow2 on top */
	snapfs_chain_close(&c);
	assert_no_log();
	img_free(&top);
	img_free(&mid);
	img_free(&base);
}

/* Host-contiguous clusters are one pread; others one each; the L2 table
 * is read once. */
static void test_contiguous_reads(void **state UNUSED)
{
	uint64_t cs = 64 * KiB, host;
	struct snapfs_qcow2 *q;
	struct image im;
	uint8_t *buf = malloc(16 * cs);

	assert_non_null(buf);
	img_init(&im, 16, 32 * cs, 0);
	img_l2(&im, 0);
	for (unsigned i = 0; i < 16; i++)
		img_data(&im, i * cs, (uint8_t)i);
	host = img_cluster(&im); /* host clusters out of order */
	img_data_at(&im, 17 * cs, host, 2);
	img_data_at(&im, 16 * cs, img_cluster(&im), 1);
	q = img_open(&im);
	im.preads = 0;
	assert_int_equal(snapfs_qcow2_read(q, buf, 16 * cs, 0), 0);
	assert_memory_equal(buf, im.expect, 16 * cs);
	assert_int_equal(im.preads, 2); /* the L2 slice, then the data */
	im.preads = 0;
	assert_int_equal(snapfs_qcow2_read(q, buf, 16 * cs - 1000, 500), 0);
	assert_int_equal(im.preads, 1);
	im.preads = 0;
	assert_int_equal(snapfs_qcow2_read(q, buf, 3 * cs, 15 * cs), 0);
	assert_memory_equal(buf, im.expect + 15 * cs, 3 * cs);
	assert_int_equal(im.preads, 3);
	snapfs_qcow2_close(q);
	img_free(&im);
	free(buf);
}

static void test_read_bounds(void **state UNUSED)
{
	uint64_t cs = 4 * KiB, n;
	enum snapfs_extent_kind kind;
	struct snapfs_qcow2 *q;
	struct image im;
	uint8_t buf[16];

	img_init(&im, 12, 10 * cs, 0);
	q = img_open(&im);
	assert_int_equal(snapfs_qcow2_read(q, buf, 1, 10 * cs), -EINVAL);
	assert_int_equal(snapfs_qcow2_read(q, buf, 16, 10 * cs - 8), -EINVAL);
	assert_int_equal(snapfs_qcow2_read(q, buf, 8, UINT64_MAX - 4), -EINVAL);
	assert_int_equal(snapfs_qcow2_read(q, buf, 0, 10 * cs), 0);
	assert_int_equal(snapfs_qcow2_extent(q, 10 * cs, &n, &kind), -ENXIO);
	assert_int_equal(snapfs_qcow2_extent(q, UINT64_MAX, &n, &kind), -ENXIO);
	snapfs_qcow2_close(q);
	img_free(&im);

	/* an empty disk */
	img_init(&im, 16, 0, 0);
	q = img_open(&im);
	assert_int_equal(snapfs_qcow2_read(q, buf, 0, 0), 0);
	assert_int_equal(snapfs_qcow2_read(q, buf, 1, 0), -EINVAL);
	assert_int_equal(snapfs_qcow2_extent(q, 0, &n, &kind), -ENXIO);
	snapfs_qcow2_close(q);
	img_free(&im);
}

/* A huge disk: L1 entries far apart, extents cross unallocated L1 ranges
 * at once, and the L2 lookups of one extent call are bounded. */
static void test_huge_disk(void **state UNUSED)
{
	uint64_t cs = 64 * KiB, table = cs << 13, vsize = 1ull << 48;
	struct snapfs_qcow2 *q;
	struct image im;
	struct extent x;
	uint8_t buf[512];

	img_init(&im, 16, vsize, 0);
	img_data(&im, 0, 1);
	img_data(&im, vsize - cs, 2);
	for (uint64_t i = 0; i < 100; i++) /* 100 L2 tables, one cluster each */
		img_data(&im, table * (1000 + i), 3);
	q = img_open(&im);
	assert_int_equal(snapfs_qcow2_read(q, buf, sizeof(buf), vsize - cs + 512), 0);
	for (unsigned i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], pattern(vsize - cs + 512 + i, 2));
	assert_extent(q, table, 999 * table, SNAPFS_EXTENT_ZERO);
	assert_extent(q, 1000 * table, cs, SNAPFS_EXTENT_DATA);
	x = extent_at(q, 1000 * table + cs);
	assert_int_equal(x.kind, SNAPFS_EXTENT_ZERO);
	if (x.len < 32 * 64 * cs || x.len >= table) /* 64 lookups of up to 64 entries */
		fail_msg("extent of %llu bytes", (unsigned long long)x.len);
	assert_extent(q, vsize - cs, cs, SNAPFS_EXTENT_DATA);
	assert_int_equal(allocated(q), 102 * cs);
	snapfs_qcow2_close(q);
	img_free(&im);
}

/* ---- what the image uses ------------------------------------------------- */

static void test_image_end(void **state UNUSED)
{
	uint64_t cs = 4 * KiB, end;
	struct snapfs_qcow2 *q;
	struct image im;

	/* with refcounts for every cluster: one past the last */
	img_init(&im, 12, 64 * cs, 0);
	img_data(&im, 0, 1);
	img_data(&im, 9 * cs, 2);
	img_refcounts(&im);
	end = im.next;
	grow(&im, im.next + 10 * cs); /* a device bigger than the image */
	q = img_open(&im);
	assert_int_equal(image_end(q), end);
	snapfs_qcow2_close(q);

	/* a leaked cluster counts; refcounts past the device do not */
	put_be16(im.dev + 2 * cs + 2 * (end / cs + 3), 1);
	put_be16(im.dev + 2 * cs + 2 * (im.size / cs + 1), 1);
	q = img_open(&im);
	assert_int_equal(image_end(q), end + 4 * cs);
	snapfs_qcow2_close(q);

	/* a data cluster with no refcount: in a clean image refcounts tell,
	 * in a dirty one (lazy refcounts) its L2 tables too */
	img_data_at(&im, 20 * cs, end + 8 * cs, 3);
	q = img_open(&im);
	assert_int_equal(image_end(q), end + 4 * cs);
	snapfs_qcow2_close(q);
	im.dev[79] |= 1; /* dirty */
	q = img_open(&im);
	assert_int_equal(image_end(q), end + 9 * cs);
	snapfs_qcow2_close(q);
	img_free(&im);

	/* ending in a compressed cluster: the device ends inside a cluster,
	 * the image at its end (refcounts past the device do not count) */
	img_init(&im, 16, 4 * 64 * KiB, 0);
	img_l2(&im, 0);
	img_compressed(&im, 0, 1);
	img_refcounts(&im);
	im.size = im.cpos;
	q = img_open(&im);
	assert_int_equal(image_end(q), (im.size + im.cs - 1) / im.cs * im.cs);
	assert_true(image_end(q) > im.size);
	snapfs_qcow2_close(q);
	img_free(&im);

	/* no refcount table on the device: the tables count, and in a dirty
	 * image the clusters they use */
	img_init(&im, 12, 64 * cs, 0);
	img_l2(&im, 0);
	img_data(&im, 0, 1);
	put_be64(im.dev + 48, 1ull << 40);
	q = img_open(&im);
	assert_int_equal(image_end(q), im.next - cs);
	snapfs_qcow2_close(q);
	im.dev[79] |= 1;
	q = img_open(&im);
	assert_int_equal(image_end(q), im.next);
	snapfs_qcow2_close(q);
	img_free(&im);
}

static void test_allocated(void **state UNUSED)
{
	uint64_t cs = 64 * KiB, table = cs << 12, l2; /* 16-byte entries */
	struct snapfs_qcow2 *q;
	struct image im;
	unsigned preads;

	img_init(&im, 16, 3 * table + 5 * cs + 100, EXT_L2);
	img_sub(&im, 0, 0xffffffff, 0, 1);     /* a cluster */
	img_sub(&im, cs, 0x0000000f, 0xf0, 2); /* 4 subclusters */
	img_zero(&im, 2 * cs, true);	       /* none */
	img_compressed(&im, 3 * cs, 3);	       /* a cluster */
	l2 = img_l2(&im, 0);
	/* the second L1 entry shares the first's table: counted twice, read once */
	put_be64(im.dev + im.l1_offset + 8, L2_COPIED | l2);
	/* the last table's entries past the end of the disk are not counted */
	img_sub(&im, 3 * table + 5 * cs, 0xffffffff, 0, 4);
	img_sub(&im, 3 * table + 6 * cs, 0xffffffff, 0, 5);
	q = img_open(&im);
	im.preads = 0;
	assert_int_equal(allocated(q), 2 * (cs + 4 * cs / 32 + cs) + 100);
	preads = im.preads;
	assert_int_equal(preads, 2 + 1); /* two tables, then the last one again */
	assert_int_equal(allocated(q), 2 * (cs + 4 * cs / 32 + cs) + 100);
	assert_int_equal(im.preads, preads); /* kept */
	snapfs_qcow2_close(q);
	img_free(&im);
}

/* ---- malformed images: refused at open ----------------------------------- */

struct poke {
	const char *name;
	unsigned off, len; /* bytes at off, big-endian */
	uint64_t value;
	int err;
	const char *says;
};

static void poke(struct image *im, unsigned off, unsigned len, uint64_t v)
{
	for (unsigned i = 0; i < len; i++)
		im->dev[off + i] = (uint8_t)(v >> (8 * (len - 1 - i)));
}

static void test_header_refused(void **state UNUSED)
{
	static const struct poke pokes[] = {
		{ "magic", 0, 4, 0x514649fa, -EINVAL, "no qcow2 magic" },
		{ "version 1", 4, 4, 1, -EOPNOTSUPP, "version 1" },
		{ "version 4", 4, 4, 4, -EOPNOTSUPP, "version 4" },
		{ "cluster_bits 8", 20, 4, 8, -EINVAL, "cluster_bits 8" },
		{ "cluster_bits 22", 20, 4, 22, -EINVAL, "cluster_bits 22" },
		{ "cluster_bits huge", 20, 4, 0xffffffff, -EINVAL, "cluster_bits" },
		{ "virtual size", 24, 8, 1ull << 63, -EINVAL, "virtual size" },
		{ "encryption AES", 32, 4, 1, -EOPNOTSUPP, "encrypted" },
		{ "encryption LUKS", 32, 4, 2, -EOPNOTSUPP, "encrypted" },
		{ "L1 too big", 36, 4, 4 * 1024 * 1024 + 1, -EINVAL, "too big" },
		{ "L1 too small", 36, 4, 0, -EINVAL, "too small" },
		{ "L1 unaligned", 40, 8, 3 * 65536 + 512, -EINVAL, "not aligned" },
		{ "L1 past the device", 40, 8, 1ull << 40, -EINVAL, "past the device" },
		{ "L1 wrapping", 40, 8, 0xffffffffffff0000ull, -EINVAL,
		  "past the device" },
		{ "refcount table unaligned", 48, 8, 65536 + 8, -EINVAL, "not aligned" },
		{ "refcount table too big", 56, 4, 129, -EINVAL, "refcount table" },
		{ "refcount table huge", 56, 4, 0xffffffff, -EINVAL, "refcount table" },
		{ "snapshots too many", 60, 4, 65537, -EINVAL, "snapshots" },
		{ "snapshot table unaligned", 64, 8, 4096, -EINVAL, "not aligned" },
		{ "external data file", 79, 1, 1 << 2, -EOPNOTSUPP,
		  "external data file" },
		{ "unknown incompatible bit", 79, 1, 1 << 5, -EOPNOTSUPP,
		  "unknown incompatible features 0x20" },
		{ "incompatible bit 63", 72, 1, 0x80, -EOPNOTSUPP,
		  "unknown incompatible features 0x8000000000000000" },
		{ "compression bit, deflate", 79, 1, 1 << 3, -EINVAL, "compression" },
		{ "refcount order 7", 96, 4, 7, -EINVAL, "refcount order 7" },
		{ "header length 100", 100, 4, 100, -EINVAL, "header length 100" },
		{ "header length 108", 100, 4, 108, -EINVAL, "header length 108" },
		{ "header length huge", 100, 4, 0xffffffff, -EINVAL, "header length" },
		{ "header length past the cluster", 100, 4, 65536 + 8, -EINVAL,
		  "header length" },
		{ "zstd without its bit", 104, 1, 1, -EINVAL, "compression type 1" },
		{ "backing name too long", 16, 4, 1024, -EINVAL, "backing file name" },
		{ "backing name past the cluster", 8, 8, 65536 - 2, -EINVAL,
		  "backing file name" },
		{ "backing name offset huge", 8, 8, 1ull << 40, -EINVAL,
		  "backing file name" },
	};

	for (size_t i = 0; i < sizeof(pokes) / sizeof(pokes[0]); i++) {
		const struct poke *p = &pokes[i];
		struct image im;
		int r;

		printf("# %s\n", p->name);
		img_init(&im, 16, 4 * MiB, 0);
		put_be32(im.dev + 16, 4); /* a backing name, "base", at 1024 */
		put_be64(im.dev + 8, 1024);
		memcpy(im.dev + 1024, "base", 4);
		if (!strcmp(p->name, "snapshot table unaligned")) /* one snapshot */
			put_be32(im.dev + 60, 1);
		poke(&im, p->off, p->len, p->value);
		r = img_open_err(&im);
		if (r != p->err)
			fail_msg("%s: %d, not %d", p->name, r, p->err);
		assert_one_line(p->says);
		img_free(&im);
	}
}

/* Refusals that need more than a poke. */
static void test_header_refused_more(void **state UNUSED)
{
	struct image im;

	img_init(&im, 16, 4 * MiB, 0);
	im.size = 71;
	assert_int_equal(img_open_err(&im), -EINVAL);
	assert_one_line("too short");
	im.size = 100;
	assert_int_equal(img_open_err(&im), -EINVAL);
	assert_one_line("too short for a version 3 header");
	im.size = 4096; /* the L1 table is not on it */
	assert_int_equal(img_open_err(&im), -EINVAL);
	assert_one_line("past the device");
	img_free(&im);

	/* compression type 2, with its bit */
	img_init(&im, 16, 4 * MiB, ZSTD);
	im.dev[104] = 2;
	assert_int_equal(img_open_err(&im), -EOPNOTSUPP);
	assert_one_line("unknown compression type 2");
	img_free(&im);

	/* extended L2 entries need 16 KiB clusters */
	img_init(&im, 13, 4 * MiB, EXT_L2);
	assert_int_equal(img_open_err(&im), -EINVAL);
	assert_one_line("extended L2 entries with 8192-byte clusters");
	img_free(&im);

	/* backing names: a control byte, a NUL; one past the device */
	for (int i = 0; i < 2; i++) {
		img_init(&im, 16, 4 * MiB, 0);
		put_be64(im.dev + 8, 1024);
		put_be32(im.dev + 16, 8);
		memcpy(im.dev + 1024, i == 0 ? "ba\nse.qc" : "base.qc\0", 8);
		assert_int_equal(img_open_err(&im), -EINVAL);
		assert_one_line("control byte");
		img_free(&im);
	}
	img_init(&im, 9, 0, 0); /* 512-byte clusters, an empty disk: no L1 */
	put_be64(im.dev + 8, 500);
	put_be32(im.dev + 16, 12);
	memcpy(im.dev + 500, "base.qcow2..", 12);
	im.size = 505;
	assert_int_equal(img_open_err(&im), -EINVAL);
	assert_one_line("backing file name ends past the device");
	img_free(&im);

	/* header extensions: one past the header, a long backing format */
	img_init(&im, 16, 4 * MiB, 0);
	put_be32(im.dev + 112, 0x12345678);
	put_be32(im.dev + 116, 0x7fffffff);
	assert_int_equal(img_open_err(&im), -EINVAL);
	assert_one_line("header extension 0x12345678");
	put_be32(im.dev + 112, 0xe2792aca);
	put_be32(im.dev + 116, 16);
	memcpy(im.dev + 120, "qcow2qcow2qcow2q", 16);
	assert_int_equal(img_open_err(&im), -EINVAL);
	assert_one_line("backing format");
	img_free(&im);
}

/* What opens: names and features that are read or ignored. */
static void test_header_accepted(void **state UNUSED)
{
	struct snapfs_qcow2 *q;
	struct image im;

	img_init(&im, 16, 4 * MiB, 0);
	put_be64(im.dev + 8, 4096);
	put_be32(im.dev + 16, 23);
	memcpy(im.dev + 4096, "../images/base disk.img", 23);
	put_be32(im.dev + 112, 0xe2792aca); /* backing format */
	put_be32(im.dev + 116, 3);
	memcpy(im.dev + 120, "raw", 3);
	put_be32(im.dev + 128, 0x6803f857); /* a feature name table, ignored */
	put_be32(im.dev + 132, 48);
	put_be64(im.dev + 80, 1 | 1ull << 40); /* lazy refcounts, an unknown one */
	put_be64(im.dev + 88, 1ull << 63);     /* an unknown autoclear bit */
	im.dev[79] |= 1;		       /* dirty */
	log_reset();
	q = img_open(&im);
	assert_string_equal(snapfs_qcow2_backing_name(q), "../images/base disk.img");
	assert_string_equal(snapfs_qcow2_backing_format(q), "raw");
	assert_no_log();
	snapfs_qcow2_close(q);

	/* marked corrupt by qemu: decoded, with a warning */
	im.dev[79] |= 2;
	log_reset();
	q = img_open(&im);
	assert_one_line("marked corrupt");
	snapfs_qcow2_close(q);
	img_free(&im);
}

/* ---- malformed images: bad tables and clusters at read time ---------------- */

struct damage {
	const char *name;
	unsigned flags;
	void (*make)(struct image *im); /* damages the cluster at 2 * cs */
	const char *says;
	bool data; /* the extent map still says data: bad compressed bytes */
};

static void l2_set(struct image *im, uint64_t entry)
{
	img_entry(im, 2 * im->cs, entry, 0);
}

static void l1_reserved(struct image *im)
{
	im->dev[im->l1_offset + 8 + 7] |= 1; /* the second L1 entry */
}

static void l1_unaligned(struct image *im)
{
	put_be64(im->dev + im->l1_offset + 8, img_cluster(im) + 512);
}

static void l1_past_device(struct image *im)
{
	put_be64(im->dev + im->l1_offset + 8, 1ull << 40);
}

static void l1_table_cut(struct image *im)
{
	put_be64(im->dev + im->l1_offset + 8, img_cluster(im));
	im->size -= 512; /* the table's last sector is not on the device */
}

static void l2_reserved_low(struct image *im)
{
	l2_set(im, L2_COPIED | img_cluster(im) | 2);
}

static void l2_reserved_high(struct image *im)
{
	l2_set(im, L2_COPIED | img_cluster(im) | 1ull << 56);
}

static void l2_unaligned(struct image *im)
{
	l2_set(im, L2_COPIED | (img_cluster(im) + 512));
}

static void l2_past_device(struct image *im)
{
	l2_set(im, L2_COPIED | 1ull << 40);
}

static void l2_cut(struct image *im)
{
	l2_set(im, L2_COPIED | img_cluster(im));
	im->size -= 512;
}

static void v2_zero_flag(struct image *im)
{
	l2_set(im, 1);
}

static void compressed_past_device(struct image *im)
{
	l2_set(im, L2_COMPRESSED | 1ull << 40);
}

static void compressed_garbage(struct image *im)
{
	uint8_t junk[300];

	for (unsigned i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	l2_set(im, place_compressed(im, junk, sizeof(junk)));
}

/* A valid stream of half a cluster. */
static void compressed_short(struct image *im)
{
	uint8_t *src = calloc(1, im->cs), *out = malloc(2 * im->cs);
	uint64_t cs = im->cs;
	size_t n;

	im->cs = cs / 2; /* compress_cluster takes the cluster size from here */
	n = compress_cluster(im, src, out, 2 * cs);
	im->cs = cs;
	l2_set(im, place_compressed(im, out, n));
	free(src);
	free(out);
}

/* A valid stream of a cluster and a half: one cluster would do for qemu
 * with deflate (it stops there); zstd's frame says its size. */
static void compressed_long(struct image *im)
{
	uint8_t *src = calloc(1, 2 * im->cs), *out = malloc(4 * im->cs);
	uint64_t cs = im->cs;
	size_t n;

	im->cs = cs + cs / 2;
	n = compress_cluster(im, src, out, 4 * cs);
	im->cs = cs;
	l2_set(im, place_compressed(im, out, n));
	free(src);
	free(out);
}

static void compressed_truncated(struct image *im)
{
	img_compressed(im, 2 * im->cs, 9);
	im->size = im->cpos - 20; /* its stream's last bytes are not on the device */
}

static void compressed_high_offset(struct image *im)
{
	l2_set(im, L2_COMPRESSED | 1ull << 57); /* 512-byte clusters: 61 offset bits */
}

static void ext_zero_flag(struct image *im)
{
	img_entry(im, 2 * im->cs, L2_COPIED | img_cluster(im) | 1, 1);
}

static void ext_alloc_and_zero(struct image *im)
{
	img_entry(im, 2 * im->cs, L2_COPIED | img_cluster(im), 0x0000000100000001ull);
}

static void ext_alloc_no_cluster(struct image *im)
{
	img_entry(im, 2 * im->cs, 0, 0x10);
}

static void ext_compressed_bitmap(struct image *im)
{
	uint64_t e = img_compressed(im, 2 * im->cs, 9);

	img_entry(im, 2 * im->cs, e, 1ull << 40);
}

static void test_bad_tables(void **state UNUSED)
{
	static const struct damage damages[] = {
		{ "L1 reserved bit", 0, l1_reserved, "L1 entry 1 (0x", false },
		{ "L1 unaligned", 0, l1_unaligned, "is not aligned", false },
		{ "L1 past the device", 0, l1_past_device, "ends past the device",
		  false },
		{ "L2 table cut by the device's end", 0, l1_table_cut,
		  "ends past the device", false },
		{ "L2 reserved bit 1", 0, l2_reserved_low, "has reserved bits set",
		  false },
		{ "L2 reserved bit 56", 0, l2_reserved_high, "has reserved bits set",
		  false },
		{ "L2 unaligned", 0, l2_unaligned, "is not aligned", false },
		{ "data past the device", 0, l2_past_device, "is past the device",
		  false },
		{ "data cut by the device's end", 0, l2_cut, "ends past the device",
		  false },
		{ "zero flag in version 2", V2, v2_zero_flag, "zero flag in a version 2",
		  false },
		{ "compressed past the device", 0, compressed_past_device,
		  "is past the device", false },
		{ "deflate garbage", 0, compressed_garbage, "does not inflate", true },
		{ "zstd garbage", ZSTD, compressed_garbage, "does not inflate", true },
		{ "deflate half a cluster", 0, compressed_short, "does not inflate",
		  true },
		{ "zstd half a cluster", ZSTD, compressed_short, "does not inflate",
		  true },
		{ "zstd a cluster and a half", ZSTD, compressed_long, "does not inflate",
		  true },
		{ "deflate cut by the device's end", 0, compressed_truncated,
		  "does not inflate", true },
		{ "zstd cut by the device's end", ZSTD, compressed_truncated,
		  "does not inflate", true },
		{ "compressed offset past 2^56", 0, compressed_high_offset, "past 2^56",
		  false },
		{ "extended: zero flag", EXT_L2, ext_zero_flag, "has reserved bits set",
		  false },
		{ "extended: allocated and zero", EXT_L2, ext_alloc_and_zero,
		  "both allocated and zero", false },
		{ "extended: allocated, no cluster", EXT_L2, ext_alloc_no_cluster,
		  "allocated with no cluster", false },
		{ "extended: compressed with a bitmap", EXT_L2, ext_compressed_bitmap,
		  "subcluster bitmap", false },
	};

	for (size_t i = 0; i < sizeof(damages) / sizeof(damages[0]); i++) {
		const struct damage *d = &damages[i];
		unsigned cb = d->make == compressed_high_offset ? 9 : 16;
		uint64_t cs = 1ull << cb,
			 vsize = cs << (cb - 3 - (d->flags & EXT_L2 ? 1 : 0));
		struct snapfs_qcow2 *q;
		uint8_t *buf = malloc(3 * cs);
		struct image im;

		printf("# %s\n", d->name);
		assert_non_null(buf);
		vsize *= 2; /* two L2 tables: the L1 damage is in the second */
		img_init(&im, cb, vsize, d->flags);
		img_data(&im, 0, 1);
		img_data(&im, 3 * cs, 2);
		d->make(&im);
		log_reset();
		q = img_open(&im);
		if (d->make == l1_reserved || d->make == l1_unaligned ||
		    d->make == l1_past_device || d->make == l1_table_cut) {
			uint64_t second = vsize / 2;

			assert_int_equal(snapfs_qcow2_read(q, buf, 512, second), -EIO);
			assert_one_line(d->says);
			assert_int_equal(snapfs_qcow2_read(q, buf, cs, second + cs),
					 -EIO);
		} else {
			assert_int_equal(snapfs_qcow2_read(q, buf, 3 * cs, cs), -EIO);
			assert_one_line(d->says);
			assert_int_equal(snapfs_qcow2_read(q, buf, 1, 2 * cs + cs - 1),
					 -EIO);
			if (d->data) {
				assert_int_equal(extent_at(q, 2 * cs).kind,
						 SNAPFS_EXTENT_DATA);
			} else {
				uint64_t n;
				enum snapfs_extent_kind kind;

				assert_int_equal(
					snapfs_qcow2_extent(q, 2 * cs, &n, &kind), -EIO);
			}
		}
		assert_int_equal(log_lines, 1); /* said once */
		/* what the damage does not touch still reads */
		assert_int_equal(snapfs_qcow2_read(q, buf, 2 * cs, 0), 0);
		assert_memory_equal(buf, im.expect, 2 * cs);
		assert_int_equal(snapfs_qcow2_read(q, buf, cs, 3 * cs), 0);
		assert_memory_equal(buf, im.expect + 3 * cs, cs);
		snapfs_qcow2_close(q);
		img_free(&im);
		free(buf);
	}
}

/* Device errors go through as they are, unlogged. */
static void test_io_errors(void **state UNUSED)
{
	uint64_t cs = 4 * KiB, host;
	struct snapfs_qcow2 *q;
	struct image im;
	uint8_t buf[4096];

	img_init(&im, 12, 64 * cs, 0);
	host = img_data(&im, 0, 1);
	img_compressed(&im, cs, 2);
	im.fail_at = 10;
	assert_int_equal(img_open_err(&im), -EIO);
	im.fail_at = im.l1_offset;
	assert_int_equal(img_open_err(&im), -EIO);
	assert_no_log();
	im.fail_at = 0;
	q = img_open(&im);
	im.fail_at = host + 100;
	log_reset();
	assert_int_equal(snapfs_qcow2_read(q, buf, sizeof(buf), 0), -EIO);
	im.fail_at = im.cpos - 1; /* the compressed stream's last byte */
	assert_int_equal(snapfs_qcow2_read(q, buf, sizeof(buf), cs), -EIO);
	assert_no_log();
	im.fail_at = 0;
	assert_int_equal(snapfs_qcow2_read(q, buf, sizeof(buf), 0), 0);
	assert_int_equal(snapfs_qcow2_read(q, buf, sizeof(buf), cs), 0);
	snapfs_qcow2_close(q);
	img_free(&im);
}

/* ---- threads ------------------------------------------------------------- */

struct reader {
	struct snapfs_qcow2 *q;
	const struct image *im;
	unsigned seed;
	int failed;
};

static void *reader(void *arg)
{
	struct reader *r = arg;
	uint64_t vsize = r->im->vsize;
	uint8_t *buf = malloc(64 * KiB);

	for (unsigned i = 0; i < 200 && buf && !r->failed; i++) {
		uint64_t off = (uint64_t)rand_r(&r->seed) * 4099 % vsize;
		uint64_t len = 1 + (uint64_t)rand_r(&r->seed) % (64 * KiB);

		if (len > vsize - off)
			len = vsize - off;
		if (snapfs_qcow2_read(r->q, buf, len, off) ||
		    memcmp(buf, r->im->expect + off, len))
			r->failed = 1;
	}
	free(buf);
	return NULL;
}

/* Eight threads read an image of 512-byte clusters with more L2 tables
 * than the cache holds, and compressed clusters: the cache evicts while
 * others read, the inflaters are shared out. */
static void test_threads(void **state UNUSED)
{
	enum { THREADS = 8 };
	uint64_t cs = 512, table = cs << 6;
	struct reader r[THREADS];
	pthread_t t[THREADS];
	struct snapfs_qcow2 *q;
	struct image im;

	for (unsigned flags = 0; flags <= ZSTD; flags += ZSTD) {
		img_init(&im, 9, 1100 * table, flags);
		for (uint64_t i = 0; i < 1100; i++) {
			img_data(&im, i * table + (i % 64) * cs, (uint8_t)i);
			img_data(&im, i * table + ((i + 1) % 64) * cs, (uint8_t)(i + 1));
			if (i % 4 == 0)
				img_compressed(&im, i * table + ((i + 7) % 64) * cs,
					       (uint8_t)i);
			if (i % 4 == 1)
				img_zero(&im, i * table + ((i + 9) % 64) * cs, true);
		}
		q = img_open(&im);
		for (unsigned i = 0; i < THREADS; i++) {
			r[i] = (struct reader){ q, &im, 1234 + i, 0 };
			assert_int_equal(pthread_create(&t[i], NULL, reader, &r[i]), 0);
		}
		for (unsigned i = 0; i < THREADS; i++) {
			assert_int_equal(pthread_join(t[i], NULL), 0);
			assert_int_equal(r[i].failed, 0);
		}
		snapfs_qcow2_close(q);
		img_free(&im);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v3_kinds),
		cmocka_unit_test(test_v2),
		cmocka_unit_test(test_cluster_sizes),
		cmocka_unit_test(test_compressed),
		cmocka_unit_test(test_extended_l2),
		cmocka_unit_test(test_backing_chain),
		cmocka_unit_test(test_image_chain),
		cmocka_unit_test(test_contiguous_reads),
		cmocka_unit_test(test_read_bounds),
		cmocka_unit_test(test_huge_disk),
		cmocka_unit_test(test_image_end),
		cmocka_unit_test(test_allocated),
		cmocka_unit_test(test_header_refused),
		cmocka_unit_test(test_header_refused_more),
		cmocka_unit_test(test_header_accepted),
		cmocka_unit_test(test_bad_tables),
		cmocka_unit_test(test_io_errors),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
