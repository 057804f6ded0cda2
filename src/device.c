/* Opening the devices snapfs reads: origins for listings, snapshots for
 * data.  Kept apart so that unit tests can put a file in their place. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

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
