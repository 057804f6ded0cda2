/* What the plain driver, replay-main.c, needs of a fuzz target. */
#ifndef SNAPFS_FUZZ_H
#define SNAPFS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input describing the image open at fd, size bytes long; arg is the
 * target's (fuzz-partitions: the sector size; fuzz-qcow2: the device's size
 * in MiB, 0 for the image's own).  0 or -errno; the caller frees *out. */
int fuzz_pack(int fd, uint64_t size, unsigned arg, uint8_t **out, size_t *out_len);

#endif
