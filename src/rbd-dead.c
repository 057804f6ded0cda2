/* The librados clients of a run, kept so that the next run can end them.
 *
 * A snapfs killed with RBD snapshots held leaves its client's watches on
 * the images' headers, and every snapshot removal notifies the watchers:
 * the sweep after a crash would wait for the OSDs to time the dead watches
 * out (osd_client_watch_timeout, 30 s), and the restart mounts that much
 * later.  So each connection's address (rados_getaddrs) is appended, with
 * its cluster's fsid, to a file in the mount's run directory; the sweep at
 * the next start (or --cleanup of that mount point), which runs only when
 * no snapfs serves that mount, blocklists those addresses on their cluster
 * (as librbd itself does to a dead lock owner, and as client.snapfs's
 * `profile rbd` allows), and the dead watches end at once.  An address
 * names one client instance (its nonce), never a live one of another run.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <rados/librados.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snapfs.h"

#define BLOCKLIST_SECONDS 3600 /* Ceph's own default */

static char record_path[300];

void snapfs_rbd_dead_record_at(const char *path)
{
	snprintf(record_path, sizeof(record_path), "%s", path ? path : "");
}

int snapfs_rbd_dead_path(const char *owner, char *out, size_t len)
{
	int n;

	if (!owner)
		return -EINVAL;
	/* In the run directory fs/main.c makes for that mount. */
	n = snprintf(out, len, "%s/%s/rbd-clients", SNAPFS_RUN_BASE, snapfs_owner_mark(owner));
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* An fsid is a UUID. */
static bool fsid_ok(const char *s)
{
	size_t n = strlen(s);

	return n == 36 && strspn(s, "0123456789abcdef-") == n;
}

/* One client address as Ceph writes it: "127.0.0.1:0/3478931521",
 * "v2:10.0.0.1:0/1234", "v1:[::1]:0/99".  Its nonce names one client
 * instance, and is never 0: an entry of port 0 and nonce 0 would blocklist
 * every client of that IP (qemu's too). */
static bool addr_ok(const char *s)
{
	size_t n = strlen(s);
	const char *slash = strrchr(s, '/');

	return n && n <= 120 && strspn(s, "0123456789abcdefABCDEF:.[]/anvy") == n && slash &&
	       slash[1] && strspn(slash + 1, "0123456789") == strlen(slash + 1) &&
	       strspn(slash + 1, "0") != strlen(slash + 1);
}

/* The address to keep of what rados_getaddrs gives: itself, or of a list
 * "[v2:...,v1:...]" (one client, one nonce) its first, which the OSDs
 * match whatever its type. */
static bool pick_addr(const char *addrs, char *out, size_t len)
{
	size_t n;

	if (!addrs)
		return false;
	if (!strncmp(addrs, "[v", 2) || !strncmp(addrs, "[any:", 5)) {
		addrs++;
		n = strcspn(addrs, ",]");
	} else {
		n = strlen(addrs);
	}
	if (n >= len)
		return false;
	memcpy(out, addrs, n);
	out[n] = '\0';
	return addr_ok(out);
}

void snapfs_rbd_dead_record(void *cluster)
{
	char fsid[64], addr[128], *addrs = NULL;
	int fd, rc;

	if (!record_path[0])
		return;
	rc = rados_cluster_fsid(cluster, fsid, sizeof(fsid));
	fsid[sizeof(fsid) - 1] = '\0';
	if (rc >= 0)
		rc = rados_getaddrs(cluster, &addrs);
	if (rc < 0 || !fsid_ok(fsid) || !pick_addr(addrs, addr, sizeof(addr))) {
		snapfs_warn("the address of this run's Ceph client is not kept (%s%s): a restart "
			    "after a crash may wait 30 s on its watches",
			    rc < 0 ? strerror(-rc) : "not understood: ",
			    rc < 0 ? "" : addrs ? addrs : "none");
		free(addrs);
		return;
	}
	free(addrs);
	fd = open(record_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || dprintf(fd, "%s %s\n", fsid, addr) < 0)
		snapfs_warn("cannot keep this run's Ceph client address in %s: %m", record_path);
	else
		snapfs_debug(SNAPFS_DBG_SNAP, "Ceph client %s of cluster %s kept in %s", addr,
			     fsid, record_path);
	if (fd >= 0)
		close(fd);
}

int snapfs_rbd_dead_blocklist(void *cluster, const char *path)
{
	char fsid[64], line[256];
	int fd, n = 0, rc = rados_cluster_fsid(cluster, fsid, sizeof(fsid));
	bool whole = true;
	FILE *f;

	if (rc < 0)
		return rc;
	fsid[sizeof(fsid) - 1] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	f = fdopen(fd, "r");
	if (!f) {
		rc = -errno;
		close(fd);
		return rc;
	}
	while (fgets(line, sizeof(line), f)) {
		char *addr = strchr(line, ' '), *end = strchr(line, '\n');
		bool starts = whole;

		/* A line longer than any kept is skipped whole, not read as two. */
		whole = end != NULL;
		if (!starts || !end || !addr)
			continue;
		*addr++ = '\0';
		*end = '\0';
		if (strcmp(line, fsid) || !addr_ok(addr))
			continue;
		rc = rados_blocklist_add(cluster, addr, BLOCKLIST_SECONDS);
		if (rc < 0) {
			snapfs_warn("cannot blocklist %s, the Ceph client of a dead run, on cluster "
				    "%s: %s; its snapshots are removed once its watches time out",
				    addr, fsid, strerror(-rc));
			continue;
		}
		snapfs_info("blocklisted %s, the Ceph client of a dead run, on cluster %s for %d s, "
			    "so that its watches end now",
			    addr, fsid, BLOCKLIST_SECONDS);
		n++;
	}
	fclose(f);
	return n;
}
