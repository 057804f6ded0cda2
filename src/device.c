/* Opening and reading the devices snapfs reads: origins for listings,
 * snapshots for data.  Kept apart so that unit tests can put a file in
 * their place. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
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
