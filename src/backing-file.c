/* Which file a qcow2 image's backing name means, for an image in a file.
 *
 * The name is written by whoever made the image, and an image can come
 * from anyone (a guest's upload, a template from elsewhere): images whose
 * backing names point at host files have leaked them before (CVE-2024-32498,
 * CVE-2024-40767).  So a name is followed only when it resolves, relative to
 * the image's own directory as qemu resolves it, to a regular file in that
 * same directory or in the directory of one of the host's libvirt storage
 * pools (dir, fs, netfs), with no symlink leading out of them.  Protocol
 * and json: names are never followed.  The path is resolved with
 * realpath(3), which reads links but opens nothing: no file outside those
 * directories is ever opened.
 *
 * Locking: the pool directories are replaced whole at each discovery,
 * under pools_lock.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "snapfs.h"

static pthread_mutex_t pools_lock = PTHREAD_MUTEX_INITIALIZER;
static char **pools;         /* under pools_lock: resolved, NULL-terminated */

void snapfs_backing_pools_set(char **dirs)
{
	char **old;

	pthread_mutex_lock(&pools_lock);
	old = pools;
	pools = dirs;
	pthread_mutex_unlock(&pools_lock);
	snapfs_backing_pools_free(old);
}

void snapfs_backing_pools_free(char **dirs)
{
	for (size_t i = 0; dirs && dirs[i]; i++)
		free(dirs[i]);
	free(dirs);
}

/* The directory part of path (without its last '/'), into out. */
static int dir_part(const char *path, char *out, size_t len)
{
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;

	if (!slash)
		return snprintf(out, len, ".") < (int)len ? 0 : -ENAMETOOLONG;
	if (n == 0)
		n = 1; /* "/" */
	if (n >= len)
		return -ENAMETOOLONG;
	memcpy(out, path, n);
	out[n] = '\0';
	return 0;
}

static bool in_dir(const char *dir, const char *real_dir)
{
	return !strcmp(dir, real_dir);
}

int snapfs_backing_file_in(const char *image, const char *name, const char *const *dirs,
			   char *out, size_t outlen, const char **why)
{
	char dir[PATH_MAX], joined[PATH_MAX * 2], real[PATH_MAX], real_dir[PATH_MAX];
	char image_dir[PATH_MAX];
	const char *slash = strchr(name, '/'), *colon = strchr(name, ':');
	struct stat st;
	bool allowed;

	if (!name[0]) {
		*why = "its backing name is empty";
		return -EPERM;
	}
	if (colon && (!slash || colon < slash)) {
		*why = "it is a protocol or json: name, not a file";
		return -EPERM;
	}
	if (dir_part(image, dir, sizeof(dir)) < 0 ||
	    (size_t)snprintf(joined, sizeof(joined), "%s%s%s", name[0] == '/' ? "" : dir,
			     name[0] == '/' ? "" : "/", name) >= sizeof(joined)) {
		*why = "its backing name is too long";
		return -EPERM;
	}
	/* Links are read, nothing is opened. */
	if (!realpath(joined, real)) {
		*why = errno == ENOENT ? "its backing file does not exist"
		       : errno == ELOOP ? "its backing name is a loop of symlinks"
					 : "its backing name cannot be resolved";
		return -EPERM;
	}
	if (dir_part(real, real_dir, sizeof(real_dir)) < 0 || !realpath(dir, image_dir)) {
		*why = "its backing name cannot be resolved";
		return -EPERM;
	}
	allowed = in_dir(image_dir, real_dir);
	for (size_t i = 0; !allowed && dirs && dirs[i]; i++)
		allowed = in_dir(dirs[i], real_dir);
	if (!allowed) {
		*why = "its backing file is outside the image's directory and the storage pools' "
		       "directories";
		return -EPERM;
	}
	if (stat(real, &st) < 0 || !S_ISREG(st.st_mode)) {
		*why = "its backing file is not a regular file";
		return -EPERM;
	}
	if (strlen(real) >= outlen) {
		*why = "its backing name is too long";
		return -EPERM;
	}
	memcpy(out, real, strlen(real) + 1);
	return 0;
}

int snapfs_backing_file(const char *image, const char *name, char *out, size_t outlen,
			const char **why)
{
	int rc;

	pthread_mutex_lock(&pools_lock);
	rc = snapfs_backing_file_in(image, name, (const char *const *)pools, out, outlen, why);
	pthread_mutex_unlock(&pools_lock);
	return rc;
}
