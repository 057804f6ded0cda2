/* Fuzz target for src/partitions.c: snapfs_partitions_read() on a disk
 * whose every byte comes from the fuzzer, as every byte of a guest disk
 * comes from the guest.
 *
 * An input describes a sparse disk (a memfd, so it can be terabytes long):
 * a header, then chunks of bytes, each placed from the start or from the
 * end of the disk.  A GPT's backup header stays at the end whatever disk
 * size the fuzzer picks, and a seed holds the sectors in use, not the zeros
 * between them.
 *
 *	byte 0      bits 0-2: sector size, 512 << n; bits 3-5: that many more
 *	            512-byte units after the last whole sector
 *	bytes 1-4   the disk size in sectors; 0 (or too small for the chunks
 *	            placed from the start): just big enough for them
 *	then chunks, to the end of the input:
 *	bytes 0-3   where, in 512-byte units: from the start of the disk, or
 *	            with bit 31 set, back from its end
 *	bytes 4-5   length in bytes (cut to what the input has left)
 *	bytes 6-    the bytes (cut where the disk ends; later chunks win)
 *
 * Numbers are little-endian.  replay-partitions --pack (fuzz_pack()) makes
 * an input of a disk image.  Built with libFuzzer by tests/fuzz/run-fuzz.sh,
 * or with the plain driver replay-main.c, which replays the corpus under
 * make check.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz-partitions.h"
#include "fuzz.h"
#include "snapfs.h"

#define UNIT 512u
#define FROM_END 0x80000000u
#define CHUNK_HEADER 6
#define CHUNK_MAX 0xffffu

/* ---- inputs ---------------------------------------------------------------- */

struct chunk {
	uint32_t where;
	const uint8_t *bytes;
	size_t len;
};

/* The next chunk of an input at *pos; false at its end. */
static bool next_chunk(const struct fuzz_disk *disk, size_t *pos, struct chunk *c)
{
	const uint8_t *p = disk->chunks + *pos;
	size_t left = disk->chunks_len - *pos;

	if (left < CHUNK_HEADER)
		return false;
	c->where = get_le32(p);
	c->len = p[4] | p[5] << 8;
	c->bytes = p + CHUNK_HEADER;
	if (c->len > left - CHUNK_HEADER)
		c->len = left - CHUNK_HEADER;
	*pos += CHUNK_HEADER + c->len;
	return true;
}

/* Where a chunk lands on the disk, cut to it; false if it lands outside. */
static bool place(const struct fuzz_disk *disk, const struct chunk *c, uint64_t *off,
		  size_t *len)
{
	uint64_t units = (uint64_t)(c->where & ~FROM_END) * UNIT;

	if (c->where & FROM_END) {
		if (units > disk->size)
			return false;
		*off = disk->size - units;
	} else {
		*off = units;
	}
	if (*off >= disk->size)
		return false;
	*len = c->len < disk->size - *off ? c->len : (size_t)(disk->size - *off);
	return true;
}

int fuzz_decode(const uint8_t *in, size_t len, struct fuzz_disk *disk)
{
	uint64_t need = 0;
	unsigned extra;
	struct chunk c;
	size_t pos = 0;

	if (len < FUZZ_HEADER_SIZE)
		return -EINVAL;
	disk->sector_size = UNIT << (in[0] & 7);
	extra = (in[0] >> 3 & 7) * UNIT;
	disk->size = (uint64_t)get_le32(in + 1) * disk->sector_size + extra;
	disk->chunks = in + FUZZ_HEADER_SIZE;
	disk->chunks_len = len - FUZZ_HEADER_SIZE;
	while (next_chunk(disk, &pos, &c)) {
		uint64_t end = (uint64_t)c.where * UNIT + c.len;

		if (!(c.where & FROM_END) && end > need)
			need = end;
	}
	if (disk->size < need) { /* whole sectors, then the extra units */
		uint64_t sectors = (need + disk->sector_size - 1) / disk->sector_size;

		disk->size = sectors * disk->sector_size + extra;
	}
	return 0;
}

/* ---- packing a disk image into an input ----------------------------------------- */

struct packer {
	int fd;
	uint64_t size;
	uint8_t *out;
	size_t len, cap;
};

static int emit(struct packer *pk, uint64_t off, const uint8_t *bytes, size_t len)
{
	bool from_end = off >= pk->size / 2;
	uint64_t units = from_end ? (pk->size - off) / UNIT : off / UNIT;

	if (off % UNIT || units >= FROM_END || len > CHUNK_MAX)
		return -E2BIG;
	if (fuzz_grow(&pk->out, &pk->cap, pk->len + CHUNK_HEADER + len))
		return -ENOMEM;
	put_le32(pk->out + pk->len, (uint32_t)units | (from_end ? FROM_END : 0));
	pk->out[pk->len + 4] = len & 0xff;
	pk->out[pk->len + 5] = len >> 8;
	memcpy(pk->out + pk->len + CHUNK_HEADER, bytes, len);
	pk->len += CHUNK_HEADER + len;
	return 0;
}

/* Chunks for [off, off + len) of the image, read into buf: one per run of
 * sectors in use (at most CHUNK_MAX bytes), without its trailing zeros; from
 * the end of the disk when it starts in its second half. */
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

int fuzz_pack(int fd, uint64_t size, unsigned sector_size, uint8_t **out, size_t *out_len)
{
	static uint8_t buf[1 << 20];
	struct packer pk = { .fd = fd, .size = size };
	unsigned shift = 0;
	int r = 0;

	*out = NULL;
	while ((UNIT << shift) != sector_size)
		if (++shift > 7)
			return -EINVAL;
	if (size % UNIT || size / sector_size > UINT32_MAX ||
	    size % sector_size / UNIT > 7)
		return -EINVAL;
	pk.cap = 4096;
	pk.out = malloc(pk.cap);
	if (!pk.out)
		return -ENOMEM;
	pk.out[0] = shift | (size % sector_size / UNIT) << 3;
	put_le32(pk.out + 1, size / sector_size);
	pk.len = FUZZ_HEADER_SIZE;
	/* Only the data, not the holes, of a sparse image is read. */
	for (uint64_t pos = 0; !r && pos < size;) {
		off_t data = lseek(fd, (off_t)pos, SEEK_DATA), hole;
		ssize_t n;

		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0)
			data = (off_t)pos; /* no SEEK_DATA: all of it is data */
		data -= data % UNIT;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > size)
			hole = (off_t)size;
		if (hole - data > (off_t)sizeof(buf))
			hole = data + (off_t)sizeof(buf);
		n = pread(fd, buf, (size_t)(hole - data), data);
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		r = emit_sectors(&pk, (uint64_t)data, buf, (size_t)n);
		pos = (uint64_t)data + (uint64_t)n;
	}
	if (r) {
		free(pk.out);
		return r;
	}
	*out = pk.out;
	*out_len = pk.len;
	return 0;
}

/* ---- the target ---------------------------------------------------------------- */

/* The disk: one memfd for the whole run, emptied and refilled per input. */
static int disk_fd(const struct fuzz_disk *disk)
{
	static int fd = -1;
	struct chunk c;
	size_t pos = 0;

	if (fd < 0)
		fd = memfd_create("fuzz-disk", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)disk->size) < 0)
		goto fail;
	while (next_chunk(disk, &pos, &c)) {
		uint64_t off;
		size_t len;

		if (place(disk, &c, &off, &len) &&
		    pwrite(fd, c.bytes, len, (off_t)off) != (ssize_t)len)
			goto fail;
	}
	return fd;
fail:
	perror("fuzz-partitions: memfd");
	abort();
}

static bool terminated(const char *s, size_t size)
{
	return memchr(s, '\0', size) != NULL;
}

/* A string made from guest bytes: NUL-terminated, no control bytes. */
static void check_guest_string(const char *s, size_t size)
{
	CHECK(terminated(s, size));
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		CHECK(*c >= 0x20 && *c != 0x7f);
}

static void check_partition(const struct fuzz_disk *disk,
			    const struct snapfs_partitions *p, size_t i)
{
	const struct snapfs_partition *part = &p->part[i];

	CHECK(part->number >= 1 && part->number <= 255);
	CHECK(i == 0 || part->number > p->part[i - 1].number); /* sorted, unique */
	CHECK(part->size > 0);
	CHECK(part->start >= disk->sector_size); /* never over sector 0 */
	CHECK(part->start <= disk->size && part->size <= disk->size - part->start);
	CHECK(part->start % UNIT == 0 && part->size % UNIT == 0);
	CHECK(terminated(part->table, sizeof(part->table)));
	CHECK(!strcmp(part->table, p->table));
	CHECK(terminated(part->type, sizeof(part->type)));
	if (!strcmp(p->table, "dos"))
		CHECK(strlen(part->type) == 4 && !strncmp(part->type, "0x", 2));
	check_guest_string(part->fstype, sizeof(part->fstype));
	check_guest_string(part->label, sizeof(part->label));
	check_guest_string(part->uuid, sizeof(part->uuid));
}

static void check_result(const struct fuzz_disk *disk, int r,
			 const struct snapfs_partitions *p)
{
	struct snapfs_partitions copy;

	CHECK(r <= 0);
	CHECK(terminated(p->table, sizeof(p->table)));
	if (r < 0) {
		CHECK(p->n == 0 && p->part == NULL && !p->table[0]);
		return;
	}
	CHECK(!strcmp(p->table, "") || !strcmp(p->table, "dos") ||
	      !strcmp(p->table, "gpt"));
	CHECK((p->n == 0) == (p->part == NULL));
	CHECK(p->n <= 255);
	for (size_t i = 0; i < p->n; i++)
		check_partition(disk, p, i);
	CHECK(snapfs_partitions_copy(p, &copy) == 0);
	CHECK(copy.n == p->n && !strcmp(copy.table, p->table));
	CHECK(!p->n || !memcmp(copy.part, p->part, p->n * sizeof(*p->part)));
	snapfs_partitions_free(&copy);
	CHECK(copy.n == 0 && copy.part == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snapfs_partitions p;
	struct fuzz_disk disk;
	int r;

	if (fuzz_decode(data, size, &disk) < 0)
		return -1; /* not an input: libFuzzer keeps it out of the corpus */
	r = snapfs_partitions_read(disk_fd(&disk), disk.size, disk.sector_size, "fuzz",
				   "vda", &p);
	check_result(&disk, r, &p);
	snapfs_partitions_free(&p);
	return 0;
}
