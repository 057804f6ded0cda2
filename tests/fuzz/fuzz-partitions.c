/* Fuzz target for src/partitions.c: snapfs_partitions_read() on a disk
 * whose every byte comes from the fuzzer, as every byte of a guest disk
 * comes from the guest.
 *
 * An input is a small header and the bytes of the disk's two ends, so that
 * a seed holds a GPT's primary and backup headers without the zeros in
 * between, and a disk can be terabytes long (it is a sparse memfd):
 *
 *	byte 0      bits 0-2: sector size 512 << n; bits 3-5: extra 512-byte
 *	            units after the last whole sector (disk sizes that are not
 *	            a multiple of the sector size)
 *	bytes 1-4   disk size in sectors, little-endian; 0: just big enough
 *	bytes 5-6   T, little-endian: the last T bytes of the data go at the
 *	            end of the disk, the rest at its start
 *	bytes 7-    the data
 *
 * fuzz_pack() (tests/fuzz/replay-main.c --pack) makes an input of a disk
 * image.  Built with libFuzzer (tests/fuzz/run-fuzz.sh) or with the plain
 * driver in replay-main.c, which replays the corpus under make check.
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
#include "snapfs.h"

#define SECTOR_UNIT 512u

static uint32_t get_le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = v >> (8 * i);
}

int fuzz_decode(const uint8_t *in, size_t len, struct fuzz_disk *disk)
{
	uint64_t sectors, need;
	unsigned extra;

	if (len < FUZZ_HEADER_SIZE)
		return -EINVAL;
	disk->sector_size = SECTOR_UNIT << (in[0] & 7);
	extra = (in[0] >> 3 & 7) * SECTOR_UNIT;
	sectors = get_le32(in + 1);
	disk->data = in + FUZZ_HEADER_SIZE;
	disk->data_len = len - FUZZ_HEADER_SIZE;
	disk->tail_len = in[5] | in[6] << 8;
	if (disk->tail_len > disk->data_len)
		disk->tail_len = disk->data_len;
	disk->size = sectors * disk->sector_size + extra;
	/* Too small for the data: as big as it needs, in whole sectors. */
	need = (disk->data_len + disk->sector_size - 1) / disk->sector_size * disk->sector_size;
	if (disk->size < need)
		disk->size = need + extra;
	return 0;
}

int fuzz_pack(const uint8_t *image, uint64_t size, unsigned sector_size, uint8_t **out,
	      size_t *out_len)
{
	uint64_t half = size / 2, head = 0, tail = size;
	unsigned shift = 0;
	uint8_t *p;

	while ((SECTOR_UNIT << shift) != sector_size)
		if (++shift > 7)
			return -EINVAL;
	if (size % SECTOR_UNIT || size / sector_size > UINT32_MAX)
		return -EINVAL;
	for (uint64_t i = 0; i < half; i++)
		if (image[i])
			head = i + 1;
	for (uint64_t i = size; i > half; i--)
		if (image[i - 1])
			tail = i - 1;
	if (size - tail > UINT16_MAX)
		return -E2BIG;
	*out_len = FUZZ_HEADER_SIZE + head + (size - tail);
	p = *out = malloc(*out_len);
	if (!p)
		return -ENOMEM;
	p[0] = shift | (size % sector_size / SECTOR_UNIT) << 3;
	put_le32(p + 1, size / sector_size);
	p[5] = (size - tail) & 0xff;
	p[6] = (size - tail) >> 8;
	memcpy(p + FUZZ_HEADER_SIZE, image, head);
	memcpy(p + FUZZ_HEADER_SIZE + head, image + tail, size - tail);
	return 0;
}

/* The disk: one memfd for the whole run, emptied and refilled per input. */
static int disk_fd(const struct fuzz_disk *disk)
{
	static int fd = -1;
	size_t head = disk->data_len - disk->tail_len;

	if (fd < 0)
		fd = memfd_create("fuzz-disk", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)disk->size) < 0 ||
	    pwrite(fd, disk->data, head, 0) != (ssize_t)head ||
	    pwrite(fd, disk->data + head, disk->tail_len,
		   (off_t)(disk->size - disk->tail_len)) != (ssize_t)disk->tail_len) {
		perror("fuzz-partitions: memfd");
		abort();
	}
	return fd;
}

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "fuzz-partitions: %s:%d: broken: %s\n", __FILE__,  \
				__LINE__, #cond);                                        \
			abort();                                                         \
		}                                                                        \
	} while (0)

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

static void check_partition(const struct fuzz_disk *disk, const struct snapfs_partitions *p,
			    size_t i)
{
	const struct snapfs_partition *part = &p->part[i];

	CHECK(part->number >= 1 && part->number <= 255);
	CHECK(i == 0 || part->number > p->part[i - 1].number); /* sorted, unique */
	CHECK(part->size > 0);
	CHECK(part->start >= disk->sector_size); /* never over sector 0 */
	CHECK(part->start <= disk->size && part->size <= disk->size - part->start);
	CHECK(part->start % SECTOR_UNIT == 0 && part->size % SECTOR_UNIT == 0);
	CHECK(terminated(part->table, sizeof(part->table)));
	CHECK(!strcmp(part->table, p->table));
	CHECK(terminated(part->type, sizeof(part->type)));
	if (!strcmp(p->table, "dos"))
		CHECK(strlen(part->type) == 4 && !strncmp(part->type, "0x", 2));
	check_guest_string(part->fstype, sizeof(part->fstype));
	check_guest_string(part->label, sizeof(part->label));
	check_guest_string(part->uuid, sizeof(part->uuid));
}

static void check_result(const struct fuzz_disk *disk, int r, const struct snapfs_partitions *p)
{
	struct snapfs_partitions copy;

	CHECK(r <= 0);
	CHECK(terminated(p->table, sizeof(p->table)));
	if (r < 0) {
		CHECK(p->n == 0 && p->part == NULL && !p->table[0]);
		return;
	}
	CHECK(!strcmp(p->table, "") || !strcmp(p->table, "dos") || !strcmp(p->table, "gpt"));
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
		return -1; /* not an input: libFuzzer leaves it out of the corpus */
	r = snapfs_partitions_read(disk_fd(&disk), disk.size, disk.sector_size, "fuzz", "vda",
				   &p);
	check_result(&disk, r, &p);
	snapfs_partitions_free(&p);
	return 0;
}
