/* Partition tables of a guest disk, read with libblkid.
 *
 * The disk comes from the guest, so every byte of it is untrusted.  libblkid
 * parses the MBR, the EBR chain and GPT (falling back to the backup GPT
 * header when the primary one or its entry array fails its CRC); this file
 * puts checks around it:
 *
 *  - Before libblkid runs, precheck() reads the few sectors libblkid is about
 *    to read anyway (sector 0, the EBR chain, the two GPT headers) and refuses
 *    tables that would make libblkid do unbounded work or wrap its 32-bit
 *    arithmetic.  libblkid 2.38 walks an EBR chain of any length, at a cost
 *    quadratic in its length; reads whatever entry array a GPT header
 *    announces (up to 4 GiB) before checking its CRC; and computes MBR and
 *    EBR positions as uint32_t counts of 512-byte units.
 *  - Each partition libblkid reports is checked against the disk and its
 *    extended container before it is kept (keep_partition()).
 *  - Only top-level entries are exposed: MBR primaries, MBR logicals found in
 *    the EBR chain, GPT entries.  Labels libblkid finds nested inside an MBR
 *    primary (BSD, Solaris, UnixWare, Minix) are left out; the primary that
 *    holds one is exposed whole.
 *
 * Both libblkid probes are given the extent to read (the disk, then each
 * partition), so libblkid never reads past disk_size.  libblkid reads with
 * lseek and read: the fd's file offset moves, so callers use pread on it.
 *
 * A disk that has no descriptor (a qcow2 image, decoded in snapfs) is read
 * through a callback into a sparse memfd of its size, which libblkid is
 * given: precheck() copies what it reads there, and the GPT entry arrays,
 * the first and last MiB of the disk and of each partition are copied
 * before libblkid looks.  What libblkid would read elsewhere reads as
 * zeroes: at worst a table or a filesystem is not found, never a partition
 * at a wrong place (every extent is checked against what precheck read).
 */
#include "config.h"

#include <blkid/blkid.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "snapfs.h"

#define MBR_TABLE_OFFSET 446
#define MBR_TYPE_GPT 0xee
/* Linux shows partitions 1 to 255 of a disk; no real EBR chain is longer. */
#define PART_NUMBER_MAX 255
#define EBR_CHAIN_MAX 256
/* 8192 entries of 128 bytes: 64 times what partitioning tools write. */
#define GPT_ARRAY_MAX (1024 * 1024)

/* libblkid would count it in 32 bits and get it wrong. */
#define PAST_2TIB "goes past 2 TiB in 512-byte units; partition table ignored"

/* precheck(): libblkid must not be let loose on this table (logged). */
#define TABLE_REFUSED 1

struct disk {
	int fd;
	uint64_t size;
	unsigned sector_size;
	const char *guest;
	const char *name;
	/* A disk read through a callback: fd is then a memfd filled on demand. */
	int (*src)(void *opaque, void *buf, size_t len, uint64_t off);
	void *opaque;
};

/* What libblkid may read of a region is copied into the memfd first. */
#define POPULATE_EDGE (1u << 20)

/* Bytes [start, end). */
struct extent {
	uint64_t start;
	uint64_t end;
};

/* What the partitions libblkid reports are checked against. */
struct listing {
	const struct disk *d;
	struct extent ext[4]; /* the extended containers */
	size_t n_ext;
	unsigned over_max; /* partitions numbered above PART_NUMBER_MAX */
	struct snapfs_partitions *out;
};

#define disk_warn(d, fmt, ...)                                                           \
	snapfs_warn("guest %s, disk %s: " fmt, (d)->guest, (d)->name, ##__VA_ARGS__)
#define disk_debug(d, fmt, ...)                                                          \
	snapfs_debug(SNAPFS_DBG_PART, "guest %s, disk %s: " fmt, (d)->guest, (d)->name,  \
		     ##__VA_ARGS__)

static void free_probe(blkid_probe *pr)
{
	if (*pr)
		blkid_free_probe(*pr);
}
#define CLEANUP_PROBE __attribute__((cleanup(free_probe)))

static uint32_t get_le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static int read_at(const struct disk *d, uint64_t off, void *buf, size_t len)
{
	ssize_t r;

	if (d->src) {
		if (off > d->size || len > d->size - off)
			return -EIO;
		r = d->src(d->opaque, buf, len, off);
		if (r < 0)
			return (int)r;
		return pwrite(d->fd, buf, len, (off_t)off) == (ssize_t)len ? 0 : -EIO;
	}
	r = pread(d->fd, buf, len, off);
	if (r < 0)
		return -errno;
	return (size_t)r == len ? 0 : -EIO;
}

/* For a disk read through a callback: copy [off, off + len) into the memfd,
 * cut at the disk's end.  A no-op for a disk with a descriptor of its own. */
static int populate(const struct disk *d, uint64_t off, uint64_t len)
{
	char buf[65536];

	if (!d->src || off >= d->size)
		return 0;
	if (len > d->size - off)
		len = d->size - off;
	while (len) {
		size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);
		int r = read_at(d, off, buf, n);

		if (r < 0)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

/* The first and last POPULATE_EDGE bytes of [start, start + size). */
static int populate_edges(const struct disk *d, uint64_t start, uint64_t size)
{
	int r = populate(d, start, size < POPULATE_EDGE ? size : POPULATE_EDGE);

	if (!r && size > POPULATE_EDGE)
		r = populate(d, start + size - POPULATE_EDGE, POPULATE_EDGE);
	return r;
}

/* ---- MBR and EBR chain, before libblkid ----------------------------------- */

struct mbr_entry {
	uint8_t boot;
	uint8_t type;
	uint32_t start;
	uint32_t count;
};

static struct mbr_entry mbr_entry(const uint8_t *sector, int i)
{
	const uint8_t *e = sector + MBR_TABLE_OFFSET + 16 * i;

	return (struct mbr_entry){ e[0], e[4], get_le32(e + 8), get_le32(e + 12) };
}

static bool mbr_signed(const uint8_t *sector)
{
	return sector[510] == 0x55 && sector[511] == 0xaa;
}

static bool is_extended(struct mbr_entry e)
{
	return e.type == 0x05 || e.type == 0x0f || e.type == 0x85;
}

/* What libblkid takes for a dos table: signed, boot flags 0 or 0x80, no
 * protective (0xee) entry. */
static bool mbr_is_dos(const uint8_t *sector)
{
	if (!mbr_signed(sector))
		return false;
	for (int i = 0; i < 4; i++) {
		struct mbr_entry e = mbr_entry(sector, i);

		if ((e.boot & 0x7f) || e.type == MBR_TYPE_GPT)
			return false;
	}
	return true;
}

static bool mbr_is_protective(const uint8_t *sector)
{
	for (int i = 0; i < 4 && mbr_signed(sector); i++)
		if (mbr_entry(sector, i).type == MBR_TYPE_GPT)
			return true;
	return false;
}

/* libblkid computes in uint32_t counts of 512-byte units: start and count
 * times sector_size / 512, plus what the start is relative to (the EBR for
 * data entries, the extended partition for links, 0 in the MBR). */
static bool mbr_fits_32bit(const uint8_t *sector, unsigned ssf, uint64_t data_base,
			   uint64_t link_base)
{
	for (int i = 0; i < 4; i++) {
		struct mbr_entry e = mbr_entry(sector, i);
		uint64_t base = is_extended(e) ? link_base : data_base;

		if (e.count && (base + (uint64_t)e.start * ssf > UINT32_MAX ||
				(uint64_t)e.count * ssf > UINT32_MAX))
			return false;
	}
	return true;
}

/* The offset of the link libblkid follows, 0 for none: the first extended
 * entry with a size and a start (a zero start, which libblkid skips, would
 * lead back to the first EBR). */
static uint32_t ebr_link(const struct disk *d, const uint8_t *sector, uint64_t lba)
{
	for (int i = 0; i < 4; i++) {
		struct mbr_entry e = mbr_entry(sector, i);

		if (!is_extended(e) || !e.count)
			continue;
		if (e.start)
			return e.start;
		disk_warn(d, "EBR at byte %" PRIu64 " links to the first EBR; skipped",
			  lba * 512);
	}
	return 0;
}

/* Read the EBR at lba and set *next to the EBR it links to, 0 for none.
 * Returns 0, TABLE_REFUSED or -errno. */
static int ebr_next(const struct disk *d, uint64_t ext_start, uint64_t lba,
		    uint64_t *next)
{
	unsigned ssf = d->sector_size / 512;
	uint8_t sector[512];
	uint32_t link;
	int r;

	*next = 0;
	if ((lba + 1) * 512 > d->size) {
		disk_warn(d, "EBR chain leads past the end of the disk");
		return 0;
	}
	r = read_at(d, lba * 512, sector, sizeof(sector));
	if (r < 0)
		return r;
	if (!mbr_signed(sector)) {
		if (lba != ext_start)
			disk_warn(d, "EBR chain leads to a non-EBR at byte %" PRIu64,
				  lba * 512);
		return 0;
	}
	if (!mbr_fits_32bit(sector, ssf, lba, ext_start)) {
		disk_warn(d, "EBR chain " PAST_2TIB);
		return TABLE_REFUSED;
	}
	link = ebr_link(d, sector, lba);
	if (link)
		*next = ext_start + (uint64_t)link * ssf;
	return 0;
}

static bool seen_before(const uint64_t *seen, unsigned n, uint64_t lba)
{
	for (unsigned i = 0; i < n; i++)
		if (seen[i] == lba)
			return true;
	return false;
}

static bool warn_outside(const struct disk *d, uint64_t lba)
{
	disk_warn(d, "EBR chain leaves the extended partition for byte %" PRIu64,
		  lba * 512);
	return true;
}

/* Follow the EBR chain of the extended partition [ext_start, ext_end)
 * (512-byte units) as libblkid will, warning about loops and about links
 * that leave the partition.  libblkid ends a loop by itself a hundred steps
 * after it closes, so a loop is only reported. */
static int ebr_chain_check(const struct disk *d, uint64_t ext_start, uint64_t ext_end)
{
	uint64_t seen[EBR_CHAIN_MAX];
	bool warned = false;
	unsigned n = 0;

	for (uint64_t lba = ext_start, next; lba; lba = next) {
		int r;

		if (seen_before(seen, n, lba)) {
			disk_warn(d, "EBR chain loops back to byte %" PRIu64, lba * 512);
			return 0;
		}
		if (n == EBR_CHAIN_MAX) {
			disk_warn(d, "EBR chain longer than %d; partition table ignored",
				  EBR_CHAIN_MAX);
			return TABLE_REFUSED;
		}
		seen[n++] = lba;
		r = ebr_next(d, ext_start, lba, &next);
		if (r)
			return r;
		if (next >= ext_end && !warned)
			warned = warn_outside(d, next);
	}
	return 0;
}

static int dos_precheck(const struct disk *d, const uint8_t *mbr)
{
	unsigned ssf = d->sector_size / 512;

	if (!mbr_fits_32bit(mbr, ssf, 0, 0)) {
		disk_warn(d, "MBR partition " PAST_2TIB);
		return TABLE_REFUSED;
	}
	for (int i = 0; i < 4; i++) {
		struct mbr_entry e = mbr_entry(mbr, i);
		uint64_t start = (uint64_t)e.start * ssf;
		int r;

		if (!is_extended(e) || !e.count)
			continue;
		r = ebr_chain_check(d, start, start + (uint64_t)e.count * ssf);
		if (r)
			return r;
	}
	return 0;
}

/* ---- GPT, before libblkid -------------------------------------------------- */

/* libblkid reads the whole entry array a header announces before checking
 * its CRC: refuse arrays no partitioning tool writes. */
static int gpt_header_check(const struct disk *d, uint64_t lba)
{
	uint8_t h[92];
	uint32_t count, size;
	int r;

	r = read_at(d, lba * d->sector_size, h, sizeof(h));
	if (r < 0 || memcmp(h, "EFI PART", 8))
		return r;
	count = get_le32(h + 80);
	size = get_le32(h + 84);
	if ((uint64_t)count * size <= GPT_ARRAY_MAX) {
		uint64_t entries = (uint64_t)get_le32(h + 72) | (uint64_t)get_le32(h + 76) << 32;

		/* The entry array libblkid reads next (a bad LBA reads nothing). */
		if (entries < d->size / d->sector_size)
			return populate(d, entries * d->sector_size, (uint64_t)count * size);
		return 0;
	}
	disk_warn(d,
		  "GPT header at byte %" PRIu64 " has %" PRIu32 " entries of %" PRIu32
		  " bytes; partition table ignored",
		  lba * d->sector_size, count, size);
	return TABLE_REFUSED;
}

static int gpt_precheck(const struct disk *d)
{
	uint64_t last = d->size / d->sector_size - 1;
	int r;

	if (last < 1)
		return 0;
	r = gpt_header_check(d, 1);
	if (r)
		return r;
	return gpt_header_check(d, last);
}

/* Returns 0 when libblkid may parse the disk, TABLE_REFUSED (logged) when it
 * must not, or -errno. */
static int precheck(const struct disk *d)
{
	uint8_t mbr[512];
	int r;

	if (d->size < sizeof(mbr))
		return 0;
	r = read_at(d, 0, mbr, sizeof(mbr));
	if (r < 0)
		return r;
	if (mbr_is_dos(mbr))
		return dos_precheck(d, mbr);
	if (mbr_is_protective(mbr))
		return gpt_precheck(d);
	return 0;
}

/* ---- the table, with libblkid ---------------------------------------------- */

static int new_probe(const struct disk *d, uint64_t off, uint64_t size, blkid_probe *pr)
{
	*pr = blkid_new_probe();
	if (!*pr)
		return -ENOMEM;
	errno = 0;
	if (blkid_probe_set_device(*pr, d->fd, off, size))
		return errno > 0 ? -errno : -EINVAL;
	if (blkid_probe_set_sectorsize(*pr, d->sector_size))
		return -EINVAL;
	return 0;
}

static int new_table_probe(const struct disk *d, blkid_probe *pr)
{
	/* No other table types: snapfs exposes none, and each is more parser
	 * code run on guest data.  "PMBR" is a protective MBR whose GPT
	 * headers are both invalid. */
	static char *types[] = { "dos", "gpt", "PMBR", NULL };
	int r;

	r = new_probe(d, 0, d->size, pr);
	if (r)
		return r;
	if (blkid_probe_enable_superblocks(*pr, 0) ||
	    blkid_probe_enable_partitions(*pr, 1) ||
	    blkid_probe_filter_partitions_type(*pr, BLKID_FLTR_ONLYIN, types))
		return -ENOMEM;
	return 0;
}

/* 0 when libblkid finds a table to list, 1 (logged) when there is none to
 * list, or -errno. */
static int table_found(const struct disk *d, blkid_probe pr)
{
	const char *type = NULL;
	int r;

	errno = 0;
	r = blkid_do_safeprobe(pr);
	if (r == -1)
		return errno > 0 ? -errno : -EIO;
	if (r == 1) {
		disk_debug(d, "no partition table");
		return 1;
	}
	if (r) {
		disk_warn(d, "conflicting partition tables; no partitions");
		return 1;
	}
	blkid_probe_lookup_value(pr, "PTTYPE", &type, NULL);
	if (type && !strcmp(type, "PMBR")) {
		disk_warn(d,
			  "protective MBR but no valid GPT header (bad CRC or damaged) "
			  "with %u-byte sectors; no partitions",
			  d->sector_size);
		return 1;
	}
	return 0;
}

static bool is_nested(const struct disk *d, blkid_partition par)
{
	blkid_parttable tab = blkid_partition_get_table(par);
	blkid_partition parent = blkid_parttable_get_parent(tab);

	if (!parent)
		return false;
	disk_warn(d, "partition %d is in a %s label nested in partition %d; not exposed",
		  blkid_partition_get_partno(par), blkid_parttable_get_type(tab),
		  blkid_partition_get_partno(parent));
	return true;
}

/* libblkid counts starts and sizes in 512-byte units, whatever the sector
 * size.  Returns false (logged) when the extent is not sound. */
static bool sound_extent(const struct disk *d, blkid_partition par, struct extent *x)
{
	int64_t start = blkid_partition_get_start(par);
	int64_t size = blkid_partition_get_size(par);
	int num = blkid_partition_get_partno(par);
	uint64_t sectors = d->size / 512;

	if (size <= 0) {
		disk_warn(d, "partition %d has %s size; left out", num,
			  size ? "a negative" : "zero");
		return false;
	}
	if (start < 0 || (uint64_t)start > sectors || (uint64_t)size > sectors - start) {
		disk_warn(d,
			  "partition %d (512-byte sectors %" PRId64 "+%" PRId64
			  ") ends past the end of the disk; left out",
			  num, start, size);
		return false;
	}
	x->start = (uint64_t)start * 512;
	x->end = x->start + (uint64_t)size * 512;
	if (x->start < d->sector_size) {
		disk_warn(d, "partition %d starts in sector 0; left out", num);
		return false;
	}
	return true;
}

/* A logical partition lies after the first EBR of its container. */
static bool inside_extended(const struct listing *l, const struct extent *x)
{
	for (size_t i = 0; i < l->n_ext; i++)
		if (x->start >= l->ext[i].start + l->d->sector_size &&
		    x->end <= l->ext[i].end)
			return true;
	return false;
}

static bool number_taken(const struct snapfs_partitions *out, int num)
{
	for (size_t i = 0; i < out->n; i++)
		if (out->part[i].number == (unsigned)num)
			return true;
	return false;
}

static bool keep_partition(struct listing *l, blkid_partition par, struct extent *x)
{
	int num = blkid_partition_get_partno(par);
	const struct disk *d = l->d;

	if (is_nested(d, par))
		return false;
	if (num > PART_NUMBER_MAX) {
		l->over_max++;
		return false;
	}
	if (blkid_partition_is_extended(par)) {
		/* Every MBR with logicals has one: not worth a warning. */
		disk_debug(d, "partition %d is the extended container; not exposed", num);
		return false;
	}
	if (!sound_extent(d, par, x))
		return false;
	if (num <= 0 || number_taken(l->out, num)) {
		disk_warn(d, "partition number %d is bad or used twice; left out", num);
		return false;
	}
	if (!strcmp(l->out->table, "dos") && num > 4 && !inside_extended(l, x)) {
		disk_warn(d, "partition %d is outside its extended partition; left out",
			  num);
		return false;
	}
	return true;
}

static void find_extended(struct listing *l, blkid_partlist ls, int n)
{
	for (int i = 0; i < n && l->n_ext < 4; i++) {
		blkid_partition par = blkid_partlist_get_partition(ls, i);
		int64_t start = blkid_partition_get_start(par);
		int64_t size = blkid_partition_get_size(par);
		struct extent *x = &l->ext[l->n_ext];

		if (!blkid_partition_is_extended(par) || start < 0 || size <= 0 ||
		    blkid_parttable_get_parent(blkid_partition_get_table(par)))
			continue;
		x->start = (uint64_t)start * 512;
		x->end = x->start + (uint64_t)size * 512;
		l->n_ext++;
	}
}

static void fill_partition(const struct listing *l, blkid_partition par,
			   const struct extent *x, struct snapfs_partition *p)
{
	const char *table = l->out->table;
	const char *guid = blkid_partition_get_type_string(par);

	memset(p, 0, sizeof(*p));
	p->number = blkid_partition_get_partno(par);
	p->start = x->start;
	p->size = x->end - x->start;
	snprintf(p->table, sizeof(p->table), "%s", table);
	if (!strcmp(table, "gpt"))
		snprintf(p->type, sizeof(p->type), "%s", guid ? guid : "");
	else
		snprintf(p->type, sizeof(p->type), "0x%02x",
			 blkid_partition_get_type(par) & 0xff);
	disk_debug(l->d, "partition %u: type %s, bytes %" PRIu64 "+%" PRIu64, p->number,
		   p->type, p->start, p->size);
}

static int collect(const struct disk *d, blkid_partlist ls, struct snapfs_partitions *out)
{
	struct listing l = { .d = d, .out = out };
	int n = blkid_partlist_numof_partitions(ls);

	if (n <= 0)
		return 0;
	out->part = calloc(n, sizeof(*out->part));
	if (!out->part)
		return -ENOMEM;
	find_extended(&l, ls, n);
	for (int i = 0; i < n; i++) {
		blkid_partition par = blkid_partlist_get_partition(ls, i);
		struct extent x;

		if (par && keep_partition(&l, par, &x))
			fill_partition(&l, par, &x, &out->part[out->n++]);
	}
	if (l.over_max)
		disk_warn(d, "%u partitions numbered above %d; left out", l.over_max,
			  PART_NUMBER_MAX);
	return 0;
}

static int read_table(const struct disk *d, struct snapfs_partitions *out)
{
	blkid_probe pr CLEANUP_PROBE = NULL;
	blkid_partlist ls;
	blkid_parttable tab;
	const char *type;
	int r;

	r = new_table_probe(d, &pr);
	if (!r)
		r = table_found(d, pr);
	if (r)
		return r < 0 ? r : 0;
	ls = blkid_probe_get_partitions(pr);
	tab = ls ? blkid_partlist_get_table(ls) : NULL;
	if (!tab)
		return -EIO;
	type = blkid_parttable_get_type(tab);
	if (strcmp(type, "dos") && strcmp(type, "gpt")) {
		disk_warn(d, "%s partition table not supported; no partitions", type);
		return 0;
	}
	if (!strcmp(type, "gpt") && blkid_parttable_get_offset(tab) != d->sector_size)
		disk_warn(d,
			  "primary GPT damaged; using the backup header at byte %" PRId64,
			  (int64_t)blkid_parttable_get_offset(tab));
	snprintf(out->table, sizeof(out->table), "%s", type);
	return collect(d, ls, out);
}

/* ---- what each partition holds --------------------------------------------- */

/* Guest-made strings: control bytes become '?', and a cut never splits a
 * UTF-8 sequence.  Other bytes, valid UTF-8 or not, are kept. */
static void copy_guest_string(char *dst, size_t dstlen, const char *src)
{
	size_t len = strlen(src);

	if (len >= dstlen) {
		len = dstlen - 1;
		while (len > 0 && ((unsigned char)src[len] & 0xc0) == 0x80)
			len--;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = src[i];

		dst[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	dst[len] = '\0';
}

static void lookup(blkid_probe pr, const char *name, char *dst, size_t dstlen)
{
	const char *v = NULL;

	if (!blkid_probe_lookup_value(pr, name, &v, NULL) && v)
		copy_guest_string(dst, dstlen, v);
}

/* Fill in fstype, label and uuid; any failure leaves them empty. */
static void identify(const struct disk *d, struct snapfs_partition *p)
{
	const int flags = BLKID_SUBLKS_TYPE | BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID;
	blkid_probe pr CLEANUP_PROBE = NULL;
	int r;

	r = populate_edges(d, p->start, p->size);
	if (!r)
		r = new_probe(d, p->start, p->size, &pr);
	if (!r && (blkid_probe_enable_superblocks(pr, 1) ||
		   blkid_probe_set_superblocks_flags(pr, flags)))
		r = -ENOMEM;
	if (!r)
		r = blkid_do_safeprobe(pr);
	if (r) {
		disk_debug(d, "partition %u: nothing identified (%d)", p->number, r);
		return;
	}
	lookup(pr, "TYPE", p->fstype, sizeof(p->fstype));
	lookup(pr, "LABEL", p->label, sizeof(p->label));
	lookup(pr, "UUID", p->uuid, sizeof(p->uuid));
	disk_debug(d, "partition %u holds %s", p->number, p->fstype);
}

static int by_number(const void *a, const void *b)
{
	const struct snapfs_partition *x = a, *y = b;

	return (x->number > y->number) - (x->number < y->number);
}

static bool sector_size_ok(unsigned s)
{
	return s >= 512 && s <= 65536 && !(s & (s - 1));
}

static int read_disk(struct disk *d, struct snapfs_partitions *out);

/* Called when a disk's snapshot is opened, to list the partitions exposed as
 * files, sorted by number.  out is always set; snapfs_partitions_free() it. */
int snapfs_partitions_read(int fd, uint64_t disk_size, unsigned sector_size,
			   const char *guest, const char *disk,
			   struct snapfs_partitions *out)
{
	struct disk d = { fd, disk_size, sector_size, guest, disk, NULL, NULL };

	memset(out, 0, sizeof(*out));
	if (fd < 0)
		return -EINVAL;
	return read_disk(&d, out);
}

int snapfs_partitions_read_from(int (*src)(void *opaque, void *buf, size_t len,
					   uint64_t off),
				void *opaque, uint64_t disk_size, unsigned sector_size,
				const char *guest, const char *disk,
				struct snapfs_partitions *out)
{
	struct disk d = { -1, disk_size, sector_size, guest, disk, src, opaque };
	int r;

	memset(out, 0, sizeof(*out));
	if (!sector_size_ok(sector_size) || disk_size > INT64_MAX)
		return -EINVAL;
	d.fd = memfd_create("snapfs-partitions", MFD_CLOEXEC);
	if (d.fd < 0)
		return -errno;
	r = ftruncate(d.fd, (off_t)disk_size) < 0 ? -errno : 0;
	if (!r)
		r = populate_edges(&d, 0, disk_size);
	if (!r)
		r = read_disk(&d, out);
	close(d.fd);
	return r;
}

int snapfs_identify_from(int (*src)(void *opaque, void *buf, size_t len, uint64_t off),
			 void *opaque, uint64_t size, const char *guest, const char *name,
			 struct snapfs_partition *out)
{
	struct disk d = { -1, size, 512, guest, name, src, opaque };

	memset(out, 0, sizeof(*out));
	out->size = size;
	if (size > INT64_MAX)
		return -EINVAL;
	d.fd = memfd_create("snapfs-identify", MFD_CLOEXEC);
	if (d.fd < 0)
		return -errno;
	if (ftruncate(d.fd, (off_t)size) == 0)
		identify(&d, out);
	close(d.fd);
	return 0;
}

static int read_disk(struct disk *d, struct snapfs_partitions *out)
{
	uint64_t disk_size = d->size;
	unsigned sector_size = d->sector_size;
	int r;

	if (!sector_size_ok(sector_size) || disk_size > INT64_MAX)
		return -EINVAL;
	if (disk_size < sector_size) {
		disk_debug(d, "%" PRIu64 " bytes: no room for a table", disk_size);
		return 0;
	}
	r = precheck(d);
	if (!r)
		r = read_table(d, out);
	if (r < 0) {
		snapfs_partitions_free(out);
		return r;
	}
	if (!out->n) {
		free(out->part);
		out->part = NULL;
		return 0;
	}
	for (size_t i = 0; i < out->n; i++)
		identify(d, &out->part[i]);
	/* libblkid lists them in order already; the contract should not rest
	 * on that. */
	qsort(out->part, out->n, sizeof(*out->part), by_number);
	return 0;
}

void snapfs_partitions_free(struct snapfs_partitions *p)
{
	free(p->part);
	p->part = NULL;
	p->n = 0;
	p->table[0] = '\0';
}

int snapfs_partitions_copy(const struct snapfs_partitions *from, struct snapfs_partitions *to)
{
	*to = *from;
	to->part = NULL;
	if (!from->n)
		return 0;
	to->part = malloc(from->n * sizeof(*to->part));
	if (!to->part) {
		to->n = 0;
		return -ENOMEM;
	}
	memcpy(to->part, from->part, from->n * sizeof(*to->part));
	return 0;
}
