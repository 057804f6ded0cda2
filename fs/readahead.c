/* The readahead window of the mount.  The kernel gives a FUSE mount's
 * backing device the default window (128 KiB) whatever init asks for, so
 * every sequential reader, cp or dd bs=1M alike, would become 128 KiB
 * requests, each a round trip through snapfs.  Root can widen it in sysfs,
 * as blockdev --setra does for a disk, once the kernel has applied init's
 * reply (which keeps the smaller of the window and max_readahead): the
 * ops do it at the first request after init. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "snapfs-fuse.h"

int snapfs_fs_find_mount(const char *mountpoint, unsigned *major, unsigned *minor)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int rc = -ENOENT;

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		char *save = NULL, *dev, *mnt, *tok, *fstype = NULL;
		unsigned ma, mi;

		if (!strtok_r(line, " ", &save) || !strtok_r(NULL, " ", &save) ||
		    !(dev = strtok_r(NULL, " ", &save)) || !strtok_r(NULL, " ", &save) ||
		    !(mnt = strtok_r(NULL, " ", &save)))
			continue;
		/* Optional fields end with "-"; the file system type follows. */
		while ((tok = strtok_r(NULL, " ", &save)))
			if (!strcmp(tok, "-")) {
				fstype = strtok_r(NULL, " ", &save);
				break;
			}
		snapfs_unescape_octal(mnt);
		if (!fstype || strcmp(fstype, "fuse.snapfs") || strcmp(mnt, mountpoint) ||
		    sscanf(dev, "%u:%u", &ma, &mi) != 2)
			continue;
		if (major)
			*major = ma;
		if (minor)
			*minor = mi;
		rc = 0;
	}
	free(line);
	fclose(f);
	return rc;
}

int snapfs_fs_set_readahead(const char *mountpoint, unsigned kib)
{
	unsigned major = 0, minor = 0;
	char path[64], text[16];
	int fd, len, rc = snapfs_fs_find_mount(mountpoint, &major, &minor);

	if (rc < 0) {
		snapfs_warn("readahead of %s unchanged: mount not found in mountinfo (%s)",
			    mountpoint, strerror(-rc));
		return rc;
	}
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major, minor);
	len = snprintf(text, sizeof(text), "%u\n", kib);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, text, (size_t)len) != len) {
		rc = -errno;
		snapfs_warn("readahead of %s unchanged: %s: %s", mountpoint, path, strerror(-rc));
	} else {
		snapfs_debug(SNAPFS_DBG_FUSE, "readahead of %s (%u:%u): %u KiB", mountpoint, major,
			     minor, kib);
	}
	if (fd >= 0)
		close(fd);
	return rc;
}
