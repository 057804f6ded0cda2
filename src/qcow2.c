/* qcow2 images, read-only: the virtual disk a qcow2 file or device holds.
 *
 * The image is the guest owner's: every byte of it is untrusted.  open
 * checks the header as qemu does before it opens an image (field ranges,
 * table sizes and alignment, feature bits) and refuses what snapfs does not
 * decode: encryption, an external data file, unknown incompatible features.
 * Every table entry is checked when it is used: reserved bits zero, offsets
 * aligned and inside the device.  A bad one fails the reads that touch it
 * with EIO and is logged once per image; what it does not touch still reads.
 * Nothing at or past io->size is ever read, and memory is bounded whatever
 * the image claims: the L1 table (at most 32 MiB, as qemu), an L2 cache of
 * at most 4 MiB, and a few cluster-sized buffers per reading thread.
 *
 * Reads: the extents of one request are mapped through the L1 table and the
 * L2 cache into runs of one kind: host-contiguous data (one pread), zeroes,
 * unallocated (the backing layer, cut at its size, or zeroes), or one
 * compressed cluster (inflated by the reading thread).
 *
 * Threads: any number read one image at once.  What open sets is read-only
 * after it (and the backing, set before the first read).  q->lock guards
 * the L2 cache, the idle inflaters and the results of the table scan; it is
 * held to look up, insert or copy out, never across a pread or an inflate.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "snapfs.h"

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */
#define V2_HEADER_LENGTH 72
#define V3_HEADER_LENGTH 104
#define MIN_CLUSTER_BITS 9
#define MAX_CLUSTER_BITS 21
#define EXTENDED_L2_MIN_CLUSTER_BITS 14 /* subclusters of at least 512 bytes */
#define SUBCLUSTER_BITS 5		/* 32 subclusters a cluster */

/* qemu's limits: images past them do not open there either. */
#define L1_MAX_BYTES (32u << 20)
#define REFTABLE_MAX_BYTES (8u << 20)
#define SNAPSHOTS_MAX 65536
#define BACKING_NAME_MAX 1023
#define BACKING_FORMAT_MAX 15

#define INCOMPAT_DIRTY (1ull << 0)
#define INCOMPAT_CORRUPT (1ull << 1)
#define INCOMPAT_DATA_FILE (1ull << 2)
#define INCOMPAT_COMPRESSION (1ull << 3)
#define INCOMPAT_EXTENDED_L2 (1ull << 4)
#define INCOMPAT_KNOWN UINT64_C(0x1f)

#define EXT_BACKING_FORMAT 0xe2792acau

#define L1_OFFSET_MASK 0x00fffffffffffe00ull
#define L1_RESERVED 0x7f000000000001ffull
#define L2_COMPRESSED (1ull << 62)
#define L2_ZERO 1ull
#define L2_OFFSET_MASK 0x00fffffffffffe00ull
#define L2_RESERVED 0x3f000000000001feull
#define REFTABLE_RESERVED 0x1ffull
#define HOST_OFFSET_LIMIT (1ull << 56)

/* The L2 cache: slices of L2 tables (host byte order), LRU in sets of 4. */
#define SLICE_MAX_BYTES (16u << 10)
#define CACHE_BYTES (4u << 20)
#define CACHE_WAYS 4
#define CACHE_SLOTS_MIN 16
#define CACHE_SLOTS_MAX 1024
/* L2 entries copied out of the cache at a time (on the stack). */
#define BATCH 64
/* L2 cache lookups one extent call makes at most: lseek stays cheap. */
#define EXTENT_LOOKUPS_MAX 64
/* Layers below an image at most. */
#define CHAIN_MAX 256
/* Inflaters kept between reads: at most 4, and 8 MiB of buffers. */
#define IDLE_INFLATERS_MAX 4
#define IDLE_INFLATER_BYTES (8u << 20)

struct slice {
	uint64_t key;  /* host offset of the slice; 0: an empty slot */
	uint64_t used; /* the cache clock at the last use */
	uint64_t *entries;
};

/* What one reading thread inflates with; also a one-cluster cache. */
struct inflater {
	struct inflater *next;
	uint64_t entry; /* the L2 entry whose cluster out holds; 0: none */
	uint8_t *in;	/* two clusters: the longest compressed extent */
	uint8_t *out;	/* one cluster */
	z_stream zs;
	bool zs_ready;
	ZSTD_DCtx *zd;
};

enum compression { COMPRESSION_DEFLATE, COMPRESSION_ZSTD };

struct snapfs_qcow2 {
	struct snapfs_qcow2_io io;
	char *guest, *disk;

	/* from the header, read-only after open */
	unsigned version;
	unsigned cluster_bits;
	uint64_t cluster_size;
	bool extended_l2;
	unsigned unit_bits;   /* of a subcluster: cluster_bits - 5, or cluster_bits */
	unsigned entry_words; /* 64-bit words an L2 entry: 1, or 2 with extended L2 */
	unsigned l2_bits;     /* log2 of the entries of an L2 table */
	unsigned l1_shift;    /* guest bytes an L1 entry covers, log2 */
	unsigned csize_shift; /* compressed cluster descriptor */
	uint64_t csize_mask, coffset_mask;
	enum compression compression;
	bool dirty;
	uint64_t size;
	uint64_t *l1; /* host byte order */
	uint32_t l1_size;
	uint64_t l1_offset;
	uint64_t reftable_offset;
	uint32_t reftable_clusters;
	unsigned refcount_order;
	char *backing_name;
	char backing_format[BACKING_FORMAT_MAX + 1];
	uint32_t slice_bytes;
	unsigned slice_entries;
	unsigned idle_max;

	/* set before the first read */
	struct snapfs_qcow2 *backing;
	struct snapfs_qcow2_io raw;
	bool has_raw;

	pthread_mutex_t lock;
	struct slice *slices; /* under lock */
	unsigned nsets;
	uint64_t clock;	       /* under lock */
	struct inflater *idle; /* under lock */
	unsigned nidle;	       /* under lock */
	bool scanned;	       /* under lock: the table scan's results */
	uint64_t scan_data, scan_top;

	int logged; /* atomic: a bad table or cluster was logged */
};

/* What a stretch of the virtual disk is in this image. */
enum kind { K_DATA, K_ZERO, K_UNALLOC, K_COMPRESSED };

struct run {
	enum kind kind;
	uint64_t host; /* K_DATA: where its first byte is; K_COMPRESSED: the L2 entry */
	uint64_t len;
};

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static void be64_to_host(uint64_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		v[i] = get_be64((const uint8_t *)&v[i]);
}

/* len bytes at off of the device, which must hold them. */
static int io_read(const struct snapfs_qcow2_io *io, void *buf, size_t len, uint64_t off)
{
	int r;

	if (off > io->size || len > io->size - off)
		return -ENXIO;
	if (!len)
		return 0;
	r = io->pread(io->opaque, buf, len, off);
	/* The device shrank under us, or the callback broke its contract. */
	return r == -ENXIO || r > 0 ? -EIO : r;
}

/* Refuse an image at open: one line with the reason; returns err. */
__attribute__((format(printf, 3, 4))) static int refuse(const struct snapfs_qcow2 *q,
							int err, const char *fmt, ...)
{
	char why[300], key[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	/* Listings open the live image again and again: said once. */
	snprintf(key, sizeof(key), "qcow2 open %s %s", q->guest, q->disk);
	if (snapfs_log_first(key, why))
		snapfs_warn("guest %s, disk %s: qcow2 image %s: %s", q->guest, q->disk,
			    err == -EOPNOTSUPP ? "not supported" : "refused", why);
	return err;
}

/* A bad table or cluster: -EIO, said once per image. */
__attribute__((format(printf, 2, 3))) static int bad(struct snapfs_qcow2 *q,
						     const char *fmt, ...)
{
	char why[300], key[300];
	va_list ap;

	if (__atomic_exchange_n(&q->logged, 1, __ATOMIC_RELAXED))
		return -EIO;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(key, sizeof(key), "qcow2 damage %s %s", q->guest, q->disk);
	if (snapfs_log_first(key, why))
		snapfs_error("guest %s, disk %s: qcow2 image damaged: %s; reads there fail "
			     "with EIO (said once)",
			     q->guest, q->disk, why);
	return -EIO;
}

/* ---- the header -------------------------------------------------------------- */

/* Guest-written names: printable, no NUL, no control bytes. */
static bool clean_name(const uint8_t *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static int check_compression(struct snapfs_qcow2 *q, uint64_t incompat, unsigned type)
{
	if (type > COMPRESSION_ZSTD)
		return refuse(q, -EOPNOTSUPP, "unknown compression type %u", type);
	if (type && !(incompat & INCOMPAT_COMPRESSION))
		return refuse(q, -EINVAL,
			      "compression type %u without its incompatible feature bit",
			      type);
	if (!type && (incompat & INCOMPAT_COMPRESSION))
		return refuse(q, -EINVAL,
			      "compression type feature bit set for deflate compression");
	q->compression = type;
	return 0;
}

/* The version 3 fields (h holds 112 bytes). */
static int parse_v3(struct snapfs_qcow2 *q, const uint8_t *h, uint32_t *header_length)
{
	uint64_t incompat = get_be64(h + 72);
	int r;

	q->refcount_order = get_be32(h + 96);
	*header_length = get_be32(h + 100);
	if (*header_length < V3_HEADER_LENGTH || *header_length % 8 ||
	    *header_length > q->cluster_size)
		return refuse(q, -EINVAL, "header length %" PRIu32 " is not valid",
			      *header_length);
	if (incompat & ~INCOMPAT_KNOWN)
		return refuse(q, -EOPNOTSUPP, "unknown incompatible features %#" PRIx64,
			      incompat & ~INCOMPAT_KNOWN);
	if (incompat & INCOMPAT_DATA_FILE)
		return refuse(q, -EOPNOTSUPP,
			      "its clusters are in an external data file");
	r = check_compression(q, incompat,
			      *header_length > V3_HEADER_LENGTH ? h[104] : 0);
	if (r)
		return r;
	q->extended_l2 = incompat & INCOMPAT_EXTENDED_L2;
	if (q->extended_l2 && q->cluster_bits < EXTENDED_L2_MIN_CLUSTER_BITS)
		return refuse(q, -EINVAL,
			      "extended L2 entries with %" PRIu64 "-byte clusters",
			      q->cluster_size);
	q->dirty = incompat & INCOMPAT_DIRTY;
	if (incompat & INCOMPAT_CORRUPT)
		snapfs_warn("guest %s, disk %s: qcow2 image marked corrupt by qemu; "
			    "decoded as it is",
			    q->guest, q->disk);
	return 0;
}

static void set_geometry(struct snapfs_qcow2 *q)
{
	unsigned cb = q->cluster_bits;

	q->entry_words = q->extended_l2 ? 2 : 1;
	q->unit_bits = q->extended_l2 ? cb - SUBCLUSTER_BITS : cb;
	q->l2_bits = cb - 3 - (q->extended_l2 ? 1 : 0);
	q->l1_shift = cb + q->l2_bits;
	q->csize_shift = 62 - (cb - 8);
	q->csize_mask = (1ull << (cb - 8)) - 1;
	q->coffset_mask = (1ull << q->csize_shift) - 1;
}

/* Table sizes and places (h holds the first 72 bytes). */
static int check_tables(struct snapfs_qcow2 *q, const uint8_t *h)
{
	uint32_t nb_snapshots = get_be32(h + 60);
	uint64_t snapshots_offset = get_be64(h + 64);
	uint64_t cmask = q->cluster_size - 1, needed;

	q->l1_size = get_be32(h + 36);
	q->l1_offset = get_be64(h + 40);
	q->reftable_offset = get_be64(h + 48);
	q->reftable_clusters = get_be32(h + 56);
	if (q->refcount_order > 6)
		return refuse(q, -EINVAL, "refcount order %u is over 6",
			      q->refcount_order);
	if (q->reftable_clusters > REFTABLE_MAX_BYTES >> q->cluster_bits)
		return refuse(q, -EINVAL,
			      "refcount table of %" PRIu32 " clusters is too big",
			      q->reftable_clusters);
	if (q->reftable_offset & cmask)
		return refuse(q, -EINVAL,
			      "refcount table offset %#" PRIx64 " is not aligned",
			      q->reftable_offset);
	if (nb_snapshots > SNAPSHOTS_MAX)
		return refuse(q, -EINVAL, "%" PRIu32 " snapshots is too many",
			      nb_snapshots);
	if (nb_snapshots && (snapshots_offset & cmask))
		return refuse(q, -EINVAL,
			      "snapshot table offset %#" PRIx64 " is not aligned",
			      snapshots_offset);
	if (q->l1_size > L1_MAX_BYTES / 8)
		return refuse(q, -EINVAL, "L1 table of %" PRIu32 " entries is too big",
			      q->l1_size);
	needed = (q->size + (1ull << q->l1_shift) - 1) >> q->l1_shift;
	if (q->l1_size < needed)
		return refuse(q, -EINVAL,
			      "L1 table of %" PRIu32 " entries is too small for %" PRIu64
			      " bytes (%" PRIu64 " needed)",
			      q->l1_size, q->size, needed);
	if (!q->l1_size)
		return 0;
	if (q->l1_offset & cmask)
		return refuse(q, -EINVAL, "L1 table offset %#" PRIx64 " is not aligned",
			      q->l1_offset);
	if (q->l1_offset > q->io.size || q->l1_size * 8ull > q->io.size - q->l1_offset)
		return refuse(q, -EINVAL, "L1 table at %#" PRIx64 " ends past the device",
			      q->l1_offset);
	return 0;
}

/* Header extensions in [start, end) of the first cluster, c. */
static int parse_extensions(struct snapfs_qcow2 *q, const uint8_t *c, size_t start,
			    size_t end)
{
	size_t pos = start;

	while (end >= 8 && pos <= end - 8) {
		uint32_t type = get_be32(c + pos), len = get_be32(c + pos + 4);

		pos += 8;
		if (!type)
			break;
		if (len > end - pos)
			return refuse(q, -EINVAL,
				      "header extension %#" PRIx32 " of %" PRIu32
				      " bytes runs past the header",
				      type, len);
		if (type == EXT_BACKING_FORMAT) {
			if (len > BACKING_FORMAT_MAX || !clean_name(c + pos, len))
				return refuse(q, -EINVAL,
					      "backing format name is not valid");
			memcpy(q->backing_format, c + pos, len);
			q->backing_format[len] = '\0';
		}
		pos += (len + 7) & ~7u;
	}
	return 0;
}

static int read_backing_name(struct snapfs_qcow2 *q, const uint8_t *c, size_t have,
			     uint64_t offset, uint32_t len)
{
	if (offset > q->cluster_size || len > BACKING_NAME_MAX ||
	    len > q->cluster_size - offset)
		return refuse(q, -EINVAL,
			      "backing file name (%" PRIu32 " bytes at %" PRIu64
			      ") is not in the first cluster or too long",
			      len, offset);
	if (offset + len > have)
		return refuse(q, -EINVAL, "backing file name ends past the device");
	if (!clean_name(c + offset, len))
		return refuse(q, -EINVAL, "backing file name has a control byte");
	if (!len)
		return 0;
	q->backing_name = strndup((const char *)c + offset, len);
	return q->backing_name ? 0 : -ENOMEM;
}

static int read_header(struct snapfs_qcow2 *q)
{
	uint8_t h[V3_HEADER_LENGTH + 8] = { 0 };
	CLEANUP_FREE uint8_t *c = NULL;
	uint32_t header_length = V2_HEADER_LENGTH;
	uint64_t backing_offset;
	size_t have;
	int r;

	if (q->io.size < V2_HEADER_LENGTH)
		return refuse(q, -EINVAL, "%" PRIu64 " bytes is too short for a header",
			      q->io.size);
	r = io_read(&q->io, h, min_u64(q->io.size, sizeof(h)), 0);
	if (r)
		return r;
	if (get_be32(h) != QCOW2_MAGIC)
		return refuse(q, -EINVAL, "no qcow2 magic");
	q->version = get_be32(h + 4);
	if (q->version != 2 && q->version != 3)
		return refuse(q, -EOPNOTSUPP, "version %u", q->version);
	q->cluster_bits = get_be32(h + 20);
	if (q->cluster_bits < MIN_CLUSTER_BITS || q->cluster_bits > MAX_CLUSTER_BITS)
		return refuse(q, -EINVAL, "cluster_bits %u is not in 9 to 21",
			      q->cluster_bits);
	q->cluster_size = 1ull << q->cluster_bits;
	q->size = get_be64(h + 24);
	if (q->size > INT64_MAX)
		return refuse(q, -EINVAL, "virtual size %" PRIu64 " is too big", q->size);
	if (get_be32(h + 32))
		return refuse(q, -EOPNOTSUPP, "encrypted (method %" PRIu32 ")",
			      get_be32(h + 32));
	q->refcount_order = 4;
	if (q->version == 3) {
		if (q->io.size < V3_HEADER_LENGTH)
			return refuse(q, -EINVAL, "too short for a version 3 header");
		r = parse_v3(q, h, &header_length);
		if (r)
			return r;
	}
	set_geometry(q);
	r = check_tables(q, h);
	if (r)
		return r;
	/* The rest of the first cluster: extensions, the backing file name. */
	have = min_u64(q->io.size, q->cluster_size);
	if (header_length > have)
		return refuse(q, -EINVAL, "header ends past the device");
	c = malloc(have);
	if (!c)
		return -ENOMEM;
	r = io_read(&q->io, c, have, 0);
	if (r)
		return r;
	backing_offset = get_be64(c + 8);
	r = parse_extensions(q, c, header_length,
			     backing_offset ? min_u64(backing_offset, have) : have);
	if (r || !backing_offset)
		return r;
	return read_backing_name(q, c, have, backing_offset, get_be32(c + 16));
}

static int read_l1(struct snapfs_qcow2 *q)
{
	int r;

	if (!q->l1_size)
		return 0;
	q->l1 = malloc(q->l1_size * sizeof(*q->l1));
	if (!q->l1)
		return -ENOMEM;
	r = io_read(&q->io, q->l1, q->l1_size * sizeof(*q->l1), q->l1_offset);
	if (r)
		return r;
	be64_to_host(q->l1, q->l1_size);
	return 0;
}

static int cache_init(struct snapfs_qcow2 *q)
{
	unsigned slots;

	q->slice_bytes = min_u64(q->cluster_size, SLICE_MAX_BYTES);
	q->slice_entries = q->slice_bytes / (8 * q->entry_words);
	slots = CACHE_BYTES / q->slice_bytes;
	if (slots > CACHE_SLOTS_MAX)
		slots = CACHE_SLOTS_MAX;
	if (slots < CACHE_SLOTS_MIN)
		slots = CACHE_SLOTS_MIN;
	q->nsets = slots / CACHE_WAYS;
	q->slices = calloc(q->nsets * CACHE_WAYS, sizeof(*q->slices));
	if (!q->slices)
		return -ENOMEM;
	q->idle_max = IDLE_INFLATER_BYTES / (3 * q->cluster_size);
	if (q->idle_max > IDLE_INFLATERS_MAX)
		q->idle_max = IDLE_INFLATERS_MAX;
	if (q->idle_max < 1)
		q->idle_max = 1;
	return 0;
}

/* Called when a disk's snapshot is opened with format qcow2. */
int snapfs_qcow2_open(const struct snapfs_qcow2_io *io, struct snapfs_qcow2 **out)
{
	struct snapfs_qcow2 *q;
	int r;

	*out = NULL;
	if (!io || !io->pread)
		return -EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	pthread_mutex_init(&q->lock, NULL);
	q->io = *io;
	q->guest = strdup(io->guest ? io->guest : "?");
	q->disk = strdup(io->disk ? io->disk : "?");
	q->io.guest = q->guest;
	q->io.disk = q->disk;
	r = q->guest && q->disk ? read_header(q) : -ENOMEM;
	if (!r)
		r = read_l1(q);
	if (!r)
		r = cache_init(q);
	if (r) {
		snapfs_qcow2_close(q);
		return r;
	}
	*out = q;
	return 0;
}

static void inflater_free(struct inflater *inf)
{
	if (!inf)
		return;
	if (inf->zs_ready)
		inflateEnd(&inf->zs);
	ZSTD_freeDCtx(inf->zd);
	free(inf->in);
	free(inf->out);
	free(inf);
}

/* When the disk's snapshot set goes: no read may be running. */
void snapfs_qcow2_close(struct snapfs_qcow2 *q)
{
	if (!q)
		return;
	if (q->slices)
		for (unsigned i = 0; i < q->nsets * CACHE_WAYS; i++)
			free(q->slices[i].entries);
	free(q->slices);
	while (q->idle) {
		struct inflater *next = q->idle->next;

		inflater_free(q->idle);
		q->idle = next;
	}
	pthread_mutex_destroy(&q->lock);
	free(q->l1);
	free(q->backing_name);
	free(q->guest);
	free(q->disk);
	free(q);
}

/* What the header said, for the wiring to find and open the layer below. */
const char *snapfs_qcow2_backing_name(const struct snapfs_qcow2 *q)
{
	return q->backing_name;
}

const char *snapfs_qcow2_backing_format(const struct snapfs_qcow2 *q)
{
	return q->backing_format[0] ? q->backing_format : NULL;
}

/* Called by the wiring once it opened the layer below, before any read. */
int snapfs_qcow2_set_backing(struct snapfs_qcow2 *q, struct snapfs_qcow2 *backing,
			     const struct snapfs_qcow2_io *raw)
{
	unsigned depth = 1;

	if (backing && raw)
		return -EINVAL;
	if (raw && !raw->pread)
		return -EINVAL;
	for (const struct snapfs_qcow2 *b = backing; b; b = b->backing, depth++)
		if (b == q || depth > CHAIN_MAX)
			return -ELOOP;
	q->backing = backing;
	q->has_raw = raw != NULL;
	if (raw)
		q->raw = *raw;
	return 0;
}

/* For stat and the extent map: what the header said. */
uint64_t snapfs_qcow2_virtual_size(const struct snapfs_qcow2 *q)
{
	return q->size;
}

unsigned snapfs_qcow2_cluster_size(const struct snapfs_qcow2 *q)
{
	return (unsigned)q->cluster_size;
}

unsigned snapfs_qcow2_version(const struct snapfs_qcow2 *q)
{
	return q->version;
}

/* ---- the L2 cache ------------------------------------------------------------ */

static struct slice *cache_set(struct snapfs_qcow2 *q, uint64_t key)
{
	uint64_t h = (key >> 9) * 0x9e3779b97f4a7c15ull;

	return &q->slices[(h >> 32) % q->nsets * CACHE_WAYS];
}

static struct slice *cache_find(struct snapfs_qcow2 *q, uint64_t key)
{
	struct slice *set = cache_set(q, key);

	for (unsigned w = 0; w < CACHE_WAYS; w++)
		if (set[w].key == key)
			return &set[w];
	return NULL;
}

/* Put a slice in the cache; returns what it evicted, for the caller to free
 * outside the lock. */
static uint64_t *cache_insert(struct snapfs_qcow2 *q, uint64_t key, uint64_t *entries)
{
	struct slice *set = cache_set(q, key), *victim = &set[0];
	uint64_t *old;

	for (unsigned w = 1; w < CACHE_WAYS; w++)
		if (set[w].used < victim->used)
			victim = &set[w];
	old = victim->entries;
	victim->key = key;
	victim->entries = entries;
	victim->used = ++q->clock;
	return old;
}

/* Copy n entries from index idx of the L2 slice at host offset key into out
 * (n * entry_words words).  The slice lies inside the device (its table was
 * checked). */
static int cache_get(struct snapfs_qcow2 *q, uint64_t key, unsigned idx, unsigned n,
		     uint64_t *out)
{
	size_t words = (size_t)n * q->entry_words, first = (size_t)idx * q->entry_words;
	uint64_t *entries, *evicted = NULL;
	struct slice *s;
	int r;

	pthread_mutex_lock(&q->lock);
	s = cache_find(q, key);
	if (s) {
		memcpy(out, s->entries + first, words * sizeof(*out));
		s->used = ++q->clock;
	}
	pthread_mutex_unlock(&q->lock);
	if (s)
		return 0;

	entries = malloc(q->slice_bytes);
	if (!entries)
		return -ENOMEM;
	r = io_read(&q->io, entries, q->slice_bytes, key);
	if (r) {
		free(entries);
		return r;
	}
	be64_to_host(entries, q->slice_bytes / 8);
	memcpy(out, entries + first, words * sizeof(*out));
	pthread_mutex_lock(&q->lock);
	if (!cache_find(q, key)) { /* else another reader put it there meanwhile */
		evicted = cache_insert(q, key, entries);
		entries = NULL;
	}
	pthread_mutex_unlock(&q->lock);
	free(evicted);
	free(entries);
	return 0;
}

/* ---- mapping the virtual disk --------------------------------------------------- */

/* The L2 table of L1 entry i: *l2 gets its offset, 0 when unallocated. */
static int l1_entry(struct snapfs_qcow2 *q, uint64_t i, uint64_t *l2)
{
	uint64_t e = q->l1[i], off = e & L1_OFFSET_MASK;

	*l2 = off;
	if (e & L1_RESERVED)
		return bad(q, "L1 entry %" PRIu64 " (%#" PRIx64 ") has reserved bits set",
			   i, e);
	if (!off)
		return 0;
	if (off & (q->cluster_size - 1))
		return bad(q,
			   "L2 table offset %#" PRIx64 " (L1 entry %" PRIu64
			   ") is not aligned",
			   off, i);
	if (off > q->io.size || q->cluster_size > q->io.size - off)
		return bad(q,
			   "L2 table at %#" PRIx64 " (L1 entry %" PRIu64
			   ") ends past the device",
			   off, i);
	return 0;
}

static int compressed_kind(struct snapfs_qcow2 *q, uint64_t guest, uint64_t e,
			   uint64_t bitmap)
{
	uint64_t coff = e & q->coffset_mask;

	if (coff >= HOST_OFFSET_LIMIT)
		return bad(q,
			   "compressed cluster for guest offset %#" PRIx64
			   " has an offset past 2^56 (%#" PRIx64 ")",
			   guest, e);
	if (q->extended_l2 && bitmap)
		return bad(q,
			   "compressed cluster for guest offset %#" PRIx64
			   " has a subcluster bitmap (%#" PRIx64 ")",
			   guest, bitmap);
	if (coff >= q->io.size)
		return bad(q,
			   "compressed cluster for guest offset %#" PRIx64 " at %#" PRIx64
			   " is past the device",
			   guest, coff);
	return 0;
}

/* What subcluster sc (0 without extended L2) of the guest cluster at guest
 * is, by its L2 entry e (and bitmap): *host gets the device offset of a
 * K_DATA unit, or the entry of a K_COMPRESSED cluster. */
static int unit_kind(struct snapfs_qcow2 *q, uint64_t guest, uint64_t e, uint64_t bitmap,
		     unsigned sc, enum kind *kind, uint64_t *host)
{
	uint64_t off = e & L2_OFFSET_MASK, unit, seen;
	uint32_t alloc = (uint32_t)bitmap, zero = (uint32_t)(bitmap >> 32);

	if (e & L2_COMPRESSED) {
		*kind = K_COMPRESSED;
		*host = e;
		return compressed_kind(q, guest, e, bitmap);
	}
	if ((e & L2_RESERVED) || ((e & L2_ZERO) && q->extended_l2))
		return bad(q,
			   "L2 entry for guest offset %#" PRIx64 " (%#" PRIx64
			   ") has reserved bits set",
			   guest, e);
	if ((e & L2_ZERO) && q->version < 3)
		return bad(q,
			   "L2 entry for guest offset %#" PRIx64
			   " has the zero flag in a version 2 image",
			   guest);
	if (off & (q->cluster_size - 1))
		return bad(q,
			   "cluster offset %#" PRIx64 " for guest offset %#" PRIx64
			   " is not aligned",
			   off, guest);
	if (q->extended_l2 && (alloc & zero))
		return bad(q,
			   "subclusters of guest offset %#" PRIx64
			   " both allocated and zero (%#" PRIx64 ")",
			   guest, bitmap);
	if (q->extended_l2 && alloc && !off)
		return bad(q,
			   "subclusters of guest offset %#" PRIx64
			   " allocated with no cluster",
			   guest);
	if (q->extended_l2) {
		bool is_zero = zero >> sc & 1, is_alloc = alloc >> sc & 1;

		*kind = is_zero ? K_ZERO : is_alloc ? K_DATA : K_UNALLOC;
	} else {
		*kind = (e & L2_ZERO) ? K_ZERO : off ? K_DATA : K_UNALLOC;
	}
	if (*kind != K_DATA)
		return 0;
	if (off >= q->io.size)
		return bad(q,
			   "cluster for guest offset %#" PRIx64 " at %#" PRIx64
			   " is past the device",
			   guest, off);
	/* What the guest sees of the unit must be on the device (the last
	 * cluster of a disk may be cut after the disk's end). */
	unit = guest + ((uint64_t)sc << q->unit_bits);
	*host = off + ((uint64_t)sc << q->unit_bits);
	seen = min_u64(1ull << q->unit_bits, q->size - unit);
	if (*host > q->io.size || seen > q->io.size - *host)
		return bad(q,
			   "cluster for guest offset %#" PRIx64 " at %#" PRIx64
			   " ends past the device",
			   guest, off);
	return 0;
}

/* Add n bytes of kind to run; false when they do not belong to it.  A read
 * takes host-contiguous data and one compressed cluster at a time; an
 * extent takes data of any kind. */
static bool extend(struct run *run, enum kind kind, uint64_t host, uint64_t n,
		   bool reading)
{
	if (!reading && kind == K_COMPRESSED)
		kind = K_DATA;
	if (!run->len) {
		*run = (struct run){ kind, host, n };
		return true;
	}
	if (kind != run->kind)
		return false;
	if (reading &&
	    (kind == K_COMPRESSED || (kind == K_DATA && host != run->host + run->len)))
		return false;
	run->len += n;
	return true;
}

/* The units of the L2 entries in e (n of them, from guest offset *pos)
 * added to run, up to end; false once one does not belong. */
static int map_entries(struct snapfs_qcow2 *q, const uint64_t *e, unsigned n,
		       uint64_t *pos, uint64_t end, bool reading, struct run *run,
		       bool *more)
{
	uint64_t cmask = q->cluster_size - 1;

	for (unsigned i = 0; i < n && *pos < end; i++) {
		uint64_t cstart = *pos & ~cmask;
		uint64_t entry = e[i * q->entry_words];
		uint64_t bitmap = q->extended_l2 ? e[i * 2 + 1] : 0;

		do {
			unsigned sc = (unsigned)((*pos - cstart) >> q->unit_bits);
			uint64_t unit = cstart + ((uint64_t)sc << q->unit_bits);
			uint64_t unit_end = unit + (1ull << q->unit_bits), host = 0;
			enum kind kind = K_UNALLOC;
			int r = unit_kind(q, cstart, entry, bitmap, sc, &kind, &host);

			if (r)
				return r;
			if (kind == K_COMPRESSED)
				unit_end = cstart + q->cluster_size;
			else if (kind == K_DATA)
				host += *pos - unit;
			unit_end = min_u64(unit_end, end);
			if (!extend(run, kind, host, unit_end - *pos, reading)) {
				*more = false;
				return 0;
			}
			*pos = unit_end;
		} while (*pos < end && (*pos & cmask));
	}
	*more = true;
	return 0;
}

/* The run of one kind that starts at guest offset off, at most max bytes
 * long (off + max within the virtual size). */
static int map_run(struct snapfs_qcow2 *q, uint64_t off, uint64_t max, bool reading,
		   struct run *run)
{
	uint64_t e[BATCH * 2], pos = off, end = off + max;
	uint64_t l2_mask = (1ull << q->l2_bits) - 1;
	unsigned lookups = 0;

	run->len = 0;
	while (pos < end) {
		uint64_t l1i = pos >> q->l1_shift, l2, ci, last;
		uint64_t table_end = min_u64(end, (l1i + 1) << q->l1_shift);
		unsigned idx, n;
		bool more;
		int r = l1_entry(q, l1i, &l2);

		if (r)
			return r;
		if (!l2) {
			if (!extend(run, K_UNALLOC, 0, table_end - pos, reading))
				return 0;
			pos = table_end;
			continue;
		}
		if (!reading && lookups++ == EXTENT_LOOKUPS_MAX)
			return 0;
		ci = (pos >> q->cluster_bits) & l2_mask;
		last = ((table_end - 1) >> q->cluster_bits) & l2_mask;
		idx = (unsigned)(ci % q->slice_entries);
		n = q->slice_entries - idx;
		if (n > BATCH)
			n = BATCH;
		if (n > last - ci + 1)
			n = (unsigned)(last - ci + 1);
		r = cache_get(q, l2 + ci / q->slice_entries * q->slice_bytes, idx, n, e);
		if (!r)
			r = map_entries(q, e, n, &pos, table_end, reading, run, &more);
		if (r || !more)
			return r;
	}
	return 0;
}

/* ---- reading -------------------------------------------------------------------- */

/* The size of the layer below, whose bytes unallocated clusters show. */
static uint64_t below_size(const struct snapfs_qcow2 *q)
{
	if (q->backing)
		return q->backing->size;
	return q->has_raw ? q->raw.size : 0;
}

static int read_below(struct snapfs_qcow2 *q, uint8_t *buf, uint64_t len, uint64_t off)
{
	uint64_t size = below_size(q), n = off < size ? min_u64(len, size - off) : 0;
	int r = 0;

	if (n && q->backing)
		r = snapfs_qcow2_read(q->backing, buf, n, off);
	else if (n)
		r = io_read(&q->raw, buf, n, off);
	memset(buf + n, 0, len - n);
	return r;
}

static int read_data(struct snapfs_qcow2 *q, uint8_t *buf, uint64_t len, uint64_t host,
		     uint64_t guest)
{
	if (host > q->io.size || len > q->io.size - host)
		return bad(q,
			   "cluster for guest offset %#" PRIx64 " at %#" PRIx64
			   " ends past the device",
			   guest, host);
	return io_read(&q->io, buf, len, host);
}

/* An inflater for the cluster of entry: one that holds it already, or
 * else the least recently used idle one, or a new one. */
static struct inflater *inflater_get(struct snapfs_qcow2 *q, uint64_t entry)
{
	struct inflater **p, **pick = NULL, *inf;

	pthread_mutex_lock(&q->lock);
	for (p = &q->idle; *p; p = &(*p)->next) {
		pick = p;
		if ((*p)->entry == entry)
			break;
	}
	inf = pick ? *pick : NULL;
	if (inf) {
		*pick = inf->next;
		q->nidle--;
	}
	pthread_mutex_unlock(&q->lock);
	if (inf)
		return inf;
	inf = calloc(1, sizeof(*inf));
	if (!inf)
		return NULL;
	inf->in = malloc(2 * q->cluster_size);
	inf->out = malloc(q->cluster_size);
	if (!inf->in || !inf->out) {
		inflater_free(inf);
		return NULL;
	}
	return inf;
}

static void inflater_put(struct snapfs_qcow2 *q, struct inflater *inf)
{
	pthread_mutex_lock(&q->lock);
	if (q->nidle < q->idle_max) {
		inf->next = q->idle;
		q->idle = inf;
		q->nidle++;
		inf = NULL;
	}
	pthread_mutex_unlock(&q->lock);
	inflater_free(inf);
}

/* Raw deflate, as qemu writes it: it must fill the cluster.  What follows
 * in the last sector is another cluster's or padding. */
static int inflate_deflate(struct snapfs_qcow2 *q, struct inflater *inf, size_t len)
{
	int zr;

	if (!inf->zs_ready) {
		if (inflateInit2(&inf->zs, -15) != Z_OK)
			return -ENOMEM;
		inf->zs_ready = true;
	} else if (inflateReset(&inf->zs) != Z_OK) {
		return -EIO;
	}
	inf->zs.next_in = inf->in;
	inf->zs.avail_in = (uInt)len;
	inf->zs.next_out = inf->out;
	inf->zs.avail_out = (uInt)q->cluster_size;
	zr = inflate(&inf->zs, Z_FINISH);
	if (zr == Z_MEM_ERROR)
		return -ENOMEM;
	return inf->zs.avail_out == 0 &&
			       (zr == Z_STREAM_END || zr == Z_OK || zr == Z_BUF_ERROR)
		       ? 0
		       : 1;
}

/* One zstd frame, as qemu writes it, of exactly one cluster. */
static int inflate_zstd(struct snapfs_qcow2 *q, struct inflater *inf, size_t len)
{
	size_t frame, n;

	if (!inf->zd) {
		inf->zd = ZSTD_createDCtx();
		if (!inf->zd)
			return -ENOMEM;
	}
	frame = ZSTD_findFrameCompressedSize(inf->in, len);
	if (ZSTD_isError(frame))
		return 1;
	n = ZSTD_decompressDCtx(inf->zd, inf->out, q->cluster_size, inf->in, frame);
	return !ZSTD_isError(n) && n == q->cluster_size ? 0 : 1;
}

/* Fill inf->out with the cluster of compressed L2 entry (checked). */
static int decompress(struct snapfs_qcow2 *q, struct inflater *inf, uint64_t entry,
		      uint64_t guest)
{
	uint64_t coff = entry & q->coffset_mask;
	uint64_t sectors = ((entry >> q->csize_shift) & q->csize_mask) + 1;
	uint64_t csize = sectors * 512 - (coff & 511);
	size_t len = (size_t)min_u64(csize, q->io.size - coff);
	int r;

	if (inf->entry == entry)
		return 0;
	inf->entry = 0;
	r = io_read(&q->io, inf->in, len, coff);
	if (r)
		return r;
	if (q->compression == COMPRESSION_ZSTD)
		r = inflate_zstd(q, inf, len);
	else
		r = inflate_deflate(q, inf, len);
	if (r > 0)
		return bad(q,
			   "compressed cluster for guest offset %#" PRIx64 " (%" PRIu64
			   " bytes at %#" PRIx64 ") does not inflate to one cluster",
			   guest, csize, coff);
	if (!r)
		inf->entry = entry;
	return r;
}

static int read_compressed(struct snapfs_qcow2 *q, struct inflater **inf, uint8_t *buf,
			   uint64_t len, uint64_t off, uint64_t entry)
{
	uint64_t cstart = off & ~(q->cluster_size - 1);
	int r;

	if (*inf && (*inf)->entry != entry) {
		inflater_put(q, *inf);
		*inf = NULL;
	}
	if (!*inf) {
		*inf = inflater_get(q, entry);
		if (!*inf)
			return -ENOMEM;
	}
	r = decompress(q, *inf, entry, cstart);
	if (!r)
		memcpy(buf, (*inf)->out + (off - cstart), len);
	return r;
}

/* Called for each read of the decoded disk. */
int snapfs_qcow2_read(struct snapfs_qcow2 *q, void *buf, size_t len, uint64_t off)
{
	struct inflater *inf = NULL;
	uint8_t *p = buf;
	int r = 0;

	if (off > q->size || len > q->size - off)
		return -EINVAL;
	while (len && !r) {
		struct run run;

		r = map_run(q, off, len, true, &run);
		if (r)
			break;
		switch (run.kind) {
		case K_DATA:
			r = read_data(q, p, run.len, run.host, off);
			break;
		case K_ZERO:
			memset(p, 0, run.len);
			break;
		case K_UNALLOC:
			r = read_below(q, p, run.len, off);
			break;
		case K_COMPRESSED:
			r = read_compressed(q, &inf, p, run.len, off, run.host);
			break;
		}
		p += run.len;
		off += run.len;
		len -= run.len;
	}
	if (inf)
		inflater_put(q, inf);
	return r;
}

/* For lseek(SEEK_DATA, SEEK_HOLE) and the extent map. */
int snapfs_qcow2_extent(struct snapfs_qcow2 *q, uint64_t off, uint64_t *len,
			enum snapfs_extent_kind *kind)
{
	struct run run;
	uint64_t below;
	int r;

	if (off >= q->size)
		return -ENXIO;
	r = map_run(q, off, q->size - off, false, &run);
	if (r)
		return r;
	*len = run.len;
	switch (run.kind) {
	case K_DATA:
	case K_COMPRESSED:
		*kind = SNAPFS_EXTENT_DATA;
		break;
	case K_ZERO:
		*kind = SNAPFS_EXTENT_ZERO;
		break;
	case K_UNALLOC:
		below = below_size(q);
		*kind = off < below ? SNAPFS_EXTENT_BACKING : SNAPFS_EXTENT_ZERO;
		if (off < below)
			*len = min_u64(run.len, below - off);
		break;
	}
	return 0;
}

/* ---- what the image uses ------------------------------------------------------- */

/* A reference to [off, off + len) of the device, as qemu-img check counts
 * it: kept when it ends less than a cluster past the device. */
static void reference(const struct snapfs_qcow2 *q, uint64_t off, uint64_t len,
		      uint64_t *top)
{
	uint64_t last;

	if (!len || off >= HOST_OFFSET_LIMIT || len > HOST_OFFSET_LIMIT ||
	    off + len >= q->io.size + q->cluster_size)
		return;
	last = (off + len - 1) >> q->cluster_bits;
	if (last > *top)
		*top = last;
}

/* Data bytes of the guest range [0, limit) of the L2 table t (host order),
 * and (top non-NULL) the last host cluster its entries use.  Bad entries
 * are skipped: reads report them. */
static uint64_t table_data(const struct snapfs_qcow2 *q, const uint64_t *t,
			   uint64_t limit, uint64_t *top)
{
	uint64_t data = 0, cs = q->cluster_size;

	for (uint64_t i = 0; i < 1ull << q->l2_bits; i++) {
		uint64_t e = t[i * q->entry_words], off = e & L2_OFFSET_MASK;
		uint64_t bitmap = q->extended_l2 ? t[i * 2 + 1] : 0;
		uint64_t guest = i << q->cluster_bits;
		uint32_t alloc = (uint32_t)bitmap, zero = (uint32_t)(bitmap >> 32);

		if (!e) /* most entries of most tables */
			continue;
		if (e & L2_COMPRESSED) {
			uint64_t coff = e & q->coffset_mask;
			uint64_t sectors = ((e >> q->csize_shift) & q->csize_mask) + 1;

			if (top)
				reference(q, coff & ~511ull, sectors * 512, top);
			if (guest < limit && !(q->extended_l2 && bitmap))
				data += min_u64(cs, limit - guest);
			continue;
		}
		if ((e & L2_RESERVED) || (off & (cs - 1)) ||
		    ((e & L2_ZERO) && (q->extended_l2 || q->version < 3)) ||
		    (alloc & zero) || (alloc && !off))
			continue;
		if (top && off)
			reference(q, off, cs, top);
		if (!off || guest >= limit)
			continue;
		if (!q->extended_l2) {
			if (!(e & L2_ZERO))
				data += min_u64(cs, limit - guest);
			continue;
		}
		for (unsigned sc = 0; sc < 1u << SUBCLUSTER_BITS; sc++) {
			uint64_t unit = guest + ((uint64_t)sc << q->unit_bits);

			if ((alloc >> sc & 1) && unit < limit)
				data += min_u64(1ull << q->unit_bits, limit - unit);
		}
	}
	return data;
}

static int by_value(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* The valid L2 table offsets of the L1 table, sorted; bit 0 set on those
 * whose whole range is inside the virtual disk. */
static int l2_tables(const struct snapfs_qcow2 *q, uint64_t **out, size_t *n)
{
	uint64_t whole = q->size >> q->l1_shift;

	*n = 0;
	*out = malloc((q->l1_size ? q->l1_size : 1) * sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (uint32_t i = 0; i < q->l1_size; i++) {
		uint64_t e = q->l1[i], off = e & L1_OFFSET_MASK;

		if (!e || (e & L1_RESERVED) || !off || (off & (q->cluster_size - 1)) ||
		    off > q->io.size || q->cluster_size > q->io.size - off)
			continue;
		(*out)[(*n)++] = off | (i < whole);
	}
	qsort(*out, *n, sizeof(**out), by_value);
	return 0;
}

/* Data bytes of the L1 entry that straddles the end of the virtual disk. */
static int straddling_data(const struct snapfs_qcow2 *q, uint64_t *t, uint64_t *data)
{
	uint64_t i = q->size >> q->l1_shift, e, off;
	uint64_t tail = q->size & ((1ull << q->l1_shift) - 1);
	int r;

	if (!tail || i >= q->l1_size)
		return 0;
	e = q->l1[i];
	off = e & L1_OFFSET_MASK;
	if ((e & L1_RESERVED) || !off || (off & (q->cluster_size - 1)) ||
	    off > q->io.size || q->cluster_size > q->io.size - off)
		return 0;
	r = io_read(&q->io, t, q->cluster_size, off);
	if (r)
		return r;
	be64_to_host(t, q->cluster_size / 8);
	*data += table_data(q, t, tail, NULL);
	return 0;
}

/* Walk every L2 table once (each distinct one is read once, so at most
 * the device is read, however many L1 entries share a table): the data
 * bytes of the virtual disk and the last cluster the tables use. */
static int scan_tables(const struct snapfs_qcow2 *q, uint64_t *data, uint64_t *top)
{
	CLEANUP_FREE uint64_t *tables = NULL;
	CLEANUP_FREE uint64_t *t = NULL;
	size_t n;
	int r;

	*data = *top = 0;
	r = l2_tables(q, &tables, &n);
	if (r)
		return r;
	t = malloc(q->cluster_size);
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < n;) {
		uint64_t off = tables[i] & ~1ull, whole = 0;

		for (; i < n && (tables[i] & ~1ull) == off; i++)
			whole += tables[i] & 1;
		r = io_read(&q->io, t, q->cluster_size, off);
		if (r)
			return r;
		be64_to_host(t, q->cluster_size / 8);
		reference(q, off, q->cluster_size, top);
		*data += whole * table_data(q, t, 1ull << q->l1_shift, top);
	}
	return straddling_data(q, t, data);
}

static int scan(struct snapfs_qcow2 *q)
{
	uint64_t data, top;
	bool done;
	int r;

	pthread_mutex_lock(&q->lock);
	done = q->scanned;
	pthread_mutex_unlock(&q->lock);
	if (done)
		return 0;
	r = scan_tables(q, &data, &top);
	if (r)
		return r;
	pthread_mutex_lock(&q->lock);
	q->scan_data = data;
	q->scan_top = top;
	q->scanned = true;
	pthread_mutex_unlock(&q->lock);
	return 0;
}

/* For st_blocks: bytes of the virtual disk this image (not the layers
 * below) holds data for; compressed clusters count whole. */
int snapfs_qcow2_allocated(struct snapfs_qcow2 *q, uint64_t *bytes)
{
	int r = scan(q);

	if (!r) {
		pthread_mutex_lock(&q->lock);
		*bytes = q->scan_data;
		pthread_mutex_unlock(&q->lock);
	}
	return r;
}

static bool refcount_nonzero(const uint8_t *rb, uint64_t j, unsigned order)
{
	unsigned bits = 1u << order;

	if (bits < 8)
		return rb[j * bits / 8] >> (j * bits % 8) & ((1u << bits) - 1);
	for (unsigned k = 0; k < bits / 8; k++)
		if (rb[j * (bits / 8) + k])
			return true;
	return false;
}

/* The last cluster with a refcount above 0 in the refcount block rb, whose
 * first entry is cluster base, among the device's first limit clusters. */
static bool last_refcount(const struct snapfs_qcow2 *q, const uint8_t *rb, uint64_t base,
			  uint64_t limit, uint64_t *top)
{
	unsigned bits = 1u << q->refcount_order;
	uint64_t n = min_u64(limit - base, q->cluster_size * 8 >> q->refcount_order);
	uint64_t bytes = (n * bits + 7) / 8;

	while (bytes && !rb[bytes - 1]) /* most of a block is zeroes: skip them */
		bytes--;
	for (uint64_t j = min_u64(n, (bytes * 8 + bits - 1) / bits); j-- > 0;)
		if (refcount_nonzero(rb, j, q->refcount_order)) {
			*top = base + j;
			return true;
		}
	return false;
}

/* What the refcount structure uses, and the last cluster it counts. */
static int refcounts_top(const struct snapfs_qcow2 *q, uint64_t *top)
{
	uint64_t bytes = (uint64_t)q->reftable_clusters << q->cluster_bits;
	uint64_t per_block = q->cluster_size * 8 >> q->refcount_order;
	uint64_t clusters = (q->io.size + q->cluster_size - 1) >> q->cluster_bits;
	CLEANUP_FREE uint64_t *rt = NULL;
	CLEANUP_FREE uint8_t *rb = NULL;
	uint64_t n, used;
	int r;

	if (!bytes || q->reftable_offset > q->io.size ||
	    bytes > q->io.size - q->reftable_offset)
		return 0; /* no refcounts to go by */
	reference(q, q->reftable_offset, bytes, top);
	rt = malloc(bytes);
	rb = malloc(q->cluster_size);
	if (!rt || !rb)
		return -ENOMEM;
	r = io_read(&q->io, rt, bytes, q->reftable_offset);
	if (r)
		return r;
	n = bytes / 8;
	be64_to_host(rt, n);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t off = rt[i] & ~REFTABLE_RESERVED;

		if (rt[i] && !(rt[i] & REFTABLE_RESERVED) && off &&
		    !(off & (q->cluster_size - 1)))
			reference(q, off, q->cluster_size, top);
	}
	/* From the last refcount block that covers the device down. */
	used = (clusters + per_block - 1) / per_block;
	for (uint64_t i = min_u64(n, used); i-- > 0;) {
		uint64_t off = rt[i] & ~REFTABLE_RESERVED, found;

		if ((rt[i] & REFTABLE_RESERVED) || !off ||
		    (off & (q->cluster_size - 1)) || off > q->io.size ||
		    q->cluster_size > q->io.size - off)
			continue;
		r = io_read(&q->io, rb, q->cluster_size, off);
		if (r)
			return r;
		if (last_refcount(q, rb, i * per_block, clusters, &found)) {
			if (found > *top)
				*top = found;
			break;
		}
	}
	return 0;
}

/* Where the container ends, for the file that shows it as it is: qemu-img
 * check's "Image end offset".  The last cluster in use by the header, the
 * L1, L2 and refcount tables, or with a refcount above 0; for an image left
 * dirty (lazy refcounts), also the data clusters of the L2 tables. */
int snapfs_qcow2_image_end(struct snapfs_qcow2 *q, uint64_t *end)
{
	uint64_t top = 0;
	int r;

	if (q->l1_size)
		reference(q, q->l1_offset, q->l1_size * 8ull, &top);
	for (uint32_t i = 0; i < q->l1_size; i++) {
		uint64_t off = q->l1[i] & L1_OFFSET_MASK;

		if (q->l1[i] && !(q->l1[i] & L1_RESERVED) && off &&
		    !(off & (q->cluster_size - 1)))
			reference(q, off, q->cluster_size, &top);
	}
	r = refcounts_top(q, &top);
	if (!r && q->dirty) {
		r = scan(q);
		pthread_mutex_lock(&q->lock);
		if (!r && q->scan_top > top)
			top = q->scan_top;
		pthread_mutex_unlock(&q->lock);
	}
	if (!r)
		*end = (top + 1) << q->cluster_bits;
	return r;
}
