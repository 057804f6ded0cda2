/* File-backed disks: a reflink clone is to a file what an LVM snapshot is
 * to an LV.  FICLONE shares every block of the origin with a new file until
 * the guest writes; the new file is made with O_TMPFILE in the origin's
 * directory (a clone cannot cross filesystems), so it never has a name:
 * nothing appears in the admin's directories, and the clone is gone with
 * snapfs's last descriptor of it, after kill -9 or a host crash too.
 *
 * Nothing here writes to an origin: it is opened read-only, and FICLONE
 * reads it.  The clone's read-write descriptor is used for one thing only,
 * to give its blocks back (ftruncate) when the filesystem runs short.
 *
 * Locking: probe_lock guards the cache of directories known to clone.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>

#include "snapfs.h"

#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int)
#endif

/* ---- the filesystem of a file ----------------------------------------- */

static void fs_type_name(long type, char *out, size_t outlen)
{
	static const struct {
		long magic;
		const char *name;
	} known[] = {
		{ XFS_SUPER_MAGIC, "xfs" },     { BTRFS_SUPER_MAGIC, "btrfs" },
		{ EXT4_SUPER_MAGIC, "ext4" },   { TMPFS_MAGIC, "tmpfs" },
		{ NFS_SUPER_MAGIC, "nfs" },     { 0xff534d42, "cifs" },
		{ 0xca451a4e, "bcachefs" },     { 0x7461636f, "ocfs2" },
		{ OVERLAYFS_SUPER_MAGIC, "overlay" }, { FUSE_SUPER_MAGIC, "fuse" },
		{ 0x2fc12fc1, "zfs" },          { SQUASHFS_MAGIC, "squashfs" },
	};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if ((unsigned long)known[i].magic == (unsigned long)type) {
			snprintf(out, outlen, "%s", known[i].name);
			return;
		}
	}
	snprintf(out, outlen, "0x%lx", (unsigned long)type);
}

/* The mount a descriptor is on, from /proc/self/fdinfo ("mnt_id:"): unlike
 * st_dev, it is what mountinfo lists also for a btrfs subvolume.  -1 when
 * not known. */
static long mount_id_of(int fd)
{
	char path[64], line[128];
	long id = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "mnt_id: %ld", &id) == 1)
			break;
	fclose(f);
	return id;
}

/* The mount point of mount mnt_id in mountinfo, or "" when not there. */
static void mount_point(long mnt_id, char *out, size_t outlen)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;

	out[0] = '\0';
	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		char mnt[4096];
		long id;

		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... */
		if (sscanf(line, "%ld %*u %*u:%*u %*s %4095s", &id, mnt) != 2 || id != mnt_id)
			continue;
		snapfs_unescape_octal(mnt);
		snprintf(out, outlen, "%.*s", (int)outlen - 1, mnt);
		break;
	}
	free(line);
	fclose(f);
}

/* The directory part of path ("/" for "/x"), in out. */
static int dir_of(const char *path, char *out, size_t outlen)
{
	const char *slash = strrchr(path, '/');
	size_t len;

	if (!slash)
		return -EINVAL;
	len = slash == path ? 1 : (size_t)(slash - path);
	if (len >= outlen)
		return -ENAMETOOLONG;
	memcpy(out, path, len);
	out[len] = '\0';
	return 0;
}

void snapfs_reflink_fsinfo(int fd, const char *origin, struct snapfs_fsinfo *fs)
{
	struct statfs sf;
	long mnt_id = mount_id_of(fd);

	snprintf(fs->type, sizeof(fs->type), "?");
	fs->mount[0] = '\0';
	if (fstatfs(fd, &sf) == 0)
		fs_type_name((long)sf.f_type, fs->type, sizeof(fs->type));
	if (mnt_id >= 0)
		mount_point(mnt_id, fs->mount, sizeof(fs->mount));
	if (!fs->mount[0] && dir_of(origin, fs->mount, sizeof(fs->mount)) < 0)
		snprintf(fs->mount, sizeof(fs->mount), "?");
}

int snapfs_reflink_space(int fd, uint64_t *free_bytes, uint64_t *total_bytes)
{
	struct statvfs sv;

	if (fstatvfs(fd, &sv) < 0)
		return -errno;
	*free_bytes = (uint64_t)sv.f_bavail * sv.f_frsize;
	*total_bytes = (uint64_t)sv.f_blocks * sv.f_frsize;
	return 0;
}

/* ---- the directory a clone is made in --------------------------------- */

/* An unnamed read-write file in dir, or -errno. */
static int unnamed_file(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	return fd < 0 ? -errno : fd;
}

/* Directories known to clone, by (st_dev, st_ino): a filesystem does not
 * lose reflink while mounted.  A bounded, overwritten ring: a miss costs
 * only another probe. */
#define PROBE_CACHE 64
static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	dev_t dev;
	ino_t ino;
	struct snapfs_fsinfo fs;
} probed[PROBE_CACHE];          /* under probe_lock */
static unsigned nprobed;        /* under probe_lock */

static bool probe_cached(const struct stat *dir, struct snapfs_fsinfo *fs)
{
	bool hit = false;

	pthread_mutex_lock(&probe_lock);
	for (unsigned i = 0; i < nprobed && i < PROBE_CACHE && !hit; i++) {
		if (probed[i].dev == dir->st_dev && probed[i].ino == dir->st_ino) {
			*fs = probed[i].fs;
			hit = true;
		}
	}
	pthread_mutex_unlock(&probe_lock);
	return hit;
}

static void probe_remember(const struct stat *dir, const struct snapfs_fsinfo *fs)
{
	pthread_mutex_lock(&probe_lock);
	unsigned i = nprobed++ % PROBE_CACHE;

	probed[i].dev = dir->st_dev;
	probed[i].ino = dir->st_ino;
	probed[i].fs = *fs;
	pthread_mutex_unlock(&probe_lock);
}

int snapfs_reflink_probe(const char *path, struct snapfs_fsinfo *fs)
{
	char dir[4096];
	struct stat st;
	int rc = dir_of(path, dir, sizeof(dir));
	int a, b;

	snprintf(fs->type, sizeof(fs->type), "?");
	snprintf(fs->mount, sizeof(fs->mount), "%.*s", (int)sizeof(fs->mount) - 1,
		 rc == 0 ? dir : "?");
	if (rc < 0)
		return rc;
	CLEANUP_CLOSE int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd < 0 || fstat(dfd, &st) < 0)
		return -errno;
	if (probe_cached(&st, fs))
		return 0;
	snapfs_reflink_fsinfo(dfd, path, fs);
	/* Two empty unnamed files: a filesystem that cannot clone refuses at
	 * once (XFS without reflink says so before it looks at the length),
	 * and nothing is left behind whatever happens. */
	a = unnamed_file(dir);
	if (a < 0)
		return a;
	b = unnamed_file(dir);
	if (b < 0) {
		close(a);
		return b;
	}
	rc = ioctl(b, FICLONE, a) < 0 ? -errno : 0;
	close(a);
	close(b);
	/* ENOTTY, EINVAL: no FICLONE at all on this filesystem. */
	if (rc == -ENOTTY || rc == -EINVAL || rc == -EXDEV)
		rc = -EOPNOTSUPP;
	if (rc == 0)
		probe_remember(&st, fs);
	return rc;
}

int snapfs_reflink_clone(const char *path, dev_t dev, ino_t ino, int *clone_fd, int *fd,
			 uint64_t *size)
{
	char dir[4096], self[64];
	struct stat st, cst;
	int rc = dir_of(path, dir, sizeof(dir));

	*clone_fd = *fd = -1;
	if (rc < 0)
		return rc;
	/* Read-only; a file put in its place since the listing is refused. */
	CLEANUP_CLOSE int origin = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (origin < 0)
		return -errno;
	if (fstat(origin, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || st.st_dev != dev || st.st_ino != ino)
		return -ESTALE;
	CLEANUP_CLOSE int clone = unnamed_file(dir);

	if (clone < 0)
		return clone;
	if (ioctl(clone, FICLONE, origin) < 0)
		return -errno;
	if (fstat(clone, &cst) < 0)
		return -errno;
	/* Reads go through a read-only descriptor of the same file. */
	snprintf(self, sizeof(self), "/proc/self/fd/%d", clone);
	*fd = open(self, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (*fd < 0)
		return -errno;
	*size = (uint64_t)cst.st_size;
	*clone_fd = clone;
	clone = -1;
	return 0;
}

int snapfs_reflink_drop(int clone_fd)
{
	return ftruncate(clone_fd, 0) < 0 ? -errno : 0;
}

/* ---- -o reflink_reserve= ---------------------------------------------- */

int snapfs_reserve_parse(const char *text, struct snapfs_reserve *out)
{
	unsigned long long v = 0;
	const char *p = text;
	unsigned shift = 0;

	memset(out, 0, sizeof(*out));
	if (!text || *p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (unsigned)(*p - '0');
	}
	if (!strcmp(p, "%")) {
		if (v > 100)
			return -EINVAL;
		out->percent = (unsigned)v;
		return 0;
	}
	switch (*p) {
	case '\0': shift = 0; break;
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	default: return -EINVAL;
	}
	if (*p && p[1] && strcmp(p + 1, "iB") && strcmp(p + 1, "B"))
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -EINVAL;
	out->bytes = (uint64_t)v << shift;
	/* "0" and "0%" alike: no reserve. */
	return 0;
}

uint64_t snapfs_reserve_bytes(const struct snapfs_reserve *r, uint64_t total)
{
	if (r->bytes)
		return r->bytes;
	return total / 100 * r->percent + total % 100 * r->percent / 100;
}
