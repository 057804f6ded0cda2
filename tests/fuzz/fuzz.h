/* What the plain driver, replay-main.c, needs of a fuzz target, and what
 * the targets share. */
#ifndef SNAPFS_FUZZ_H
#define SNAPFS_FUZZ_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input describing the image open at fd, size bytes long; arg is the
 * target's (fuzz-partitions: the sector size; fuzz-qcow2: the device's size
 * in MiB, 0 for the image's own).  0 or -errno; the caller frees *out. */
int fuzz_pack(int fd, uint64_t size, unsigned arg, uint8_t **out, size_t *out_len);

/* A broken invariant: the file and line, then abort (the fuzzer's crash). */
#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "%s:%d: broken: %s\n", __FILE__, __LINE__,       \
				#cond);                                                  \
			abort();                                                         \
		}                                                                        \
	} while (0)

/* The inputs' numbers are little-endian. */
static inline uint32_t get_le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Are the len bytes at p all zeros (a sector a pack leaves out)? */
static inline bool zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* Copy into buf, the len bytes at off of a device, what a chunk of it
 * (clen bytes at coff) holds of them. */
static inline void fuzz_overlay(uint8_t *buf, uint64_t off, size_t len, uint64_t coff,
				const uint8_t *bytes, size_t clen)
{
	uint64_t from = coff > off ? coff : off;
	uint64_t to = coff + clen < off + len ? coff + clen : off + len;

	if (from < to)
		memcpy(buf + (from - off), bytes + (from - coff), to - from);
}

/* Room for need bytes in *out (*cap of them now): 0 or -ENOMEM. */
static inline int fuzz_grow(uint8_t **out, size_t *cap, size_t need)
{
	uint8_t *p;

	if (need <= *cap)
		return 0;
	p = realloc(*out, need * 2);
	if (!p)
		return -ENOMEM;
	*out = p;
	*cap = need * 2;
	return 0;
}

#endif
