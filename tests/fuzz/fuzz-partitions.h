/* The fuzz target of src/partitions.c and the input format it shares with
 * its plain driver (see fuzz-partitions.c). */
#ifndef SNAPFS_FUZZ_PARTITIONS_H
#define SNAPFS_FUZZ_PARTITIONS_H

#include <stddef.h>
#include <stdint.h>

#define FUZZ_HEADER_SIZE 5

struct fuzz_disk {
	uint64_t size;	       /* bytes */
	unsigned sector_size;  /* 512 to 65536 */
	const uint8_t *chunks; /* what to write where */
	size_t chunks_len;
};

/* The disk an input describes.  0, or -EINVAL when it is too short. */
int fuzz_decode(const uint8_t *in, size_t len, struct fuzz_disk *disk);

/* The input describing the disk image open at fd, size bytes: its sectors
 * in use, not its zeros (holes are skipped, not read).  0 or -errno; the
 * caller frees *out. */
int fuzz_pack(int fd, uint64_t size, unsigned sector_size, uint8_t **out,
	      size_t *out_len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
