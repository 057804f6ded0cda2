/* Opening and reading the devices snapfs reads: origins for listings,
 * snapshots for data.  Kept apart so that unit tests can put a file in
 * their place. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include "snapfs.h"

int snapfs_device_open(const char *path, uint64_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		goto fail;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size) < 0)
			goto fail;
	} else if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
	} else {
		errno = ENOTBLK;
		goto fail;
	}
	return fd;
fail:;
	int err = errno;

	close(fd);
	return -err;
}

int snapfs_device_open_direct(int fd, unsigned *align)
{
	char path[64];
	struct statfs sf;
	struct stat st;
	int sector = 0, dfd;

	/* The same open device, not whatever the path names by now. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	dfd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_DIRECT);
	if (dfd < 0)
		return -errno;
	/* A file (a reflink clone): its filesystem's block size, which O_DIRECT
	 * accepts on XFS and btrfs; a read it refuses falls back to the
	 * buffered descriptor (snapfs_device_pread). */
	if (fstat(dfd, &st) == 0 && S_ISREG(st.st_mode))
		sector = fstatfs(dfd, &sf) == 0 && sf.f_bsize < SNAPFS_DIRECT_ALIGN
				 ? (int)sf.f_bsize
				 : SNAPFS_DIRECT_ALIGN;
	else if (ioctl(dfd, BLKSSZGET, &sector) < 0)
		sector = 0;
	if (sector < 512 || sector > SNAPFS_DIRECT_ALIGN || (sector & (sector - 1))) {
		close(dfd);
		return -ENOTBLK;
	}
	*align = (unsigned)sector;
	return dfd;
}

ssize_t snapfs_device_pread(const struct snapfs_snapdisk *d, void *buf, size_t len,
			    uint64_t off)
{
	/* A thin snapshot's unmapped blocks are zeroes, and stay so (it is
	 * never written): no I/O for them, so a reader's readahead over a hole
	 * costs nothing on the device.  The rest reads up to the next hole. */
	if (d->has_map && len) {
		uint64_t data = snapfs_thinmap_seek(&d->map, off, off + len, SEEK_DATA);

		if (data > off) {
			memset(buf, 0, (size_t)(data - off));
			return (ssize_t)(data - off);
		}
		len = (size_t)(snapfs_thinmap_seek(&d->map, off, off + len, SEEK_HOLE) - off);
	}
	if (d->kind == SNAPFS_ORIGIN_RBD) {
		int rc = snapfs_rbd_disk_pread(d, buf, len, off);

		if (rc < 0) {
			errno = -rc;
			return -1;
		}
		return (ssize_t)len;
	}
	/* O_DIRECT wants the buffer, the length and the offset aligned to the
	 * device's logical blocks; the kernel's page-cache reads always are,
	 * but for a file's last, short page. */
	if (d->dfd >= 0 && len && (uintptr_t)buf % SNAPFS_DIRECT_ALIGN == 0 &&
	    len % d->dio_align == 0 && off % d->dio_align == 0) {
		ssize_t n = pread(d->dfd, buf, len, (off_t)off);

		if (n >= 0 || errno != EINVAL)
			return n;
	}
	return pread(d->fd, buf, len, (off_t)off);
}

int snapfs_device_seek(const struct snapfs_snapdisk *d, uint64_t off, uint64_t end,
		       int whence, uint64_t *out)
{
	off_t at;

	if (d->has_map) {
		*out = snapfs_thinmap_seek(&d->map, off, end, whence);
		return 0;
	}
	if (d->kind != SNAPFS_ORIGIN_FILE) {
		*out = whence == SEEK_DATA ? off : end;
		return 0;
	}
	/* Only preads use the descriptor otherwise: its offset is free. */
	at = lseek(d->fd, (off_t)off, whence);
	if (at < 0 && errno == ENXIO)
		at = (off_t)end; /* no data after off, or off past the end */
	else if (at < 0)
		return -errno;
	*out = (uint64_t)at < end ? (uint64_t)at : end;
	return 0;
}

/* A walk of a fragmented file stops here: what is left counts as data. */
#define ALLOCATED_MAX_EXTENTS 4096

uint64_t snapfs_file_allocated(int fd, uint64_t start, uint64_t end)
{
	uint64_t total = 0, off = start;

	for (unsigned n = 0; off < end; n++) {
		off_t data = lseek(fd, (off_t)off, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0 || n == ALLOCATED_MAX_EXTENTS)
			return total + (end - off);
		if ((uint64_t)data >= end)
			break;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			return total + (end - (uint64_t)data);
		total += ((uint64_t)hole < end ? (uint64_t)hole : end) - (uint64_t)data;
		off = (uint64_t)hole;
	}
	return total;
}

void snapfs_partitions_measure(int fd, bool is_file, struct snapfs_partitions *parts)
{
	for (size_t i = 0; i < parts->n; i++) {
		struct snapfs_partition *p = &parts->part[i];

		p->allocated = is_file ? snapfs_file_allocated(fd, p->start, p->start + p->size)
				       : SNAPFS_ALL_DATA;
	}
}
