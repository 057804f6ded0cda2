/* One snapfs per mount point.  Its snapshots carry an owner mark made from
 * the mount point, and a start sweeps what that mark left behind: a second
 * snapfs on the same mount point, or one started while the last is still
 * removing its sets after the unmount, must not sweep the first's.  A lock
 * file per mark, held for the life of the process (the descriptor survives
 * fuse_daemonize's fork), keeps them apart. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "snapfs-fuse.h"

#ifndef SNAPFS_RUNDIR
#define SNAPFS_RUNDIR "/run/snapfs"
#endif

int snapfs_fs_owner_lock(const char *owner, const char *mountpoint, unsigned wait_s,
			 bool wait)
{
	char path[256];
	int fd;

	if (mkdir(SNAPFS_RUNDIR, 0700) < 0 && errno != EEXIST) {
		snapfs_warn("cannot make %s (%m): nothing keeps a second snapfs off %s",
			    SNAPFS_RUNDIR, mountpoint);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s.lock", SNAPFS_RUNDIR, owner);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0) {
		snapfs_warn("cannot open %s (%m): nothing keeps a second snapfs off %s", path,
			    mountpoint);
		return -1;
	}
	for (unsigned tenths = 0; flock(fd, LOCK_EX | LOCK_NB) < 0; tenths++) {
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK) {
			snapfs_warn("cannot lock %s (%m): nothing keeps a second snapfs off %s",
				    path, mountpoint);
			close(fd);
			return -1;
		}
		/* Still mounted: it serves; gone: it is removing its snapshots. */
		if (!wait || snapfs_fs_find_mount(mountpoint, NULL, NULL) == 0) {
			snapfs_error("another snapfs serves %s (lock %s held)", mountpoint, path);
			close(fd);
			return -EBUSY;
		}
		if (tenths == 0)
			snapfs_info("waiting for the snapfs that served %s to remove its snapshots",
				    mountpoint);
		if (tenths >= wait_s * 10) {
			snapfs_error("the snapfs that served %s still holds %s after %u s",
				     mountpoint, path, wait_s);
			close(fd);
			return -EBUSY;
		}
		usleep(100000);
	}
	return fd;
}
