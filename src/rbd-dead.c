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
	size_t plen = strlen(SNAPFS_OWNER_TAG_PREFIX);
	int n;

	if (!owner || strncmp(owner, SNAPFS_OWNER_TAG_PREFIX, plen))
		return -EINVAL;
	n = snprintf(out, len, "%s/%s/rbd-clients", SNAPFS_RUN_BASE, owner + plen);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* An fsid is a UUID; an address list is what rados_getaddrs gives, e.g.
 * "[v2:10.0.0.1:0/1234,v1:10.0.0.1:0/1234]": nothing else is passed on. */
static bool sane(const char *s, const char *allowed, size_t max)
{
	size_t n = strlen(s);

	return n && n <= max && strspn(s, allowed) == n;
}

#define FSID_CHARS "0123456789abcdef-"
#define ADDR_CHARS "0123456789abcdefABCDEF:.,/[]v"

void snapfs_rbd_dead_record(void *cluster)
{
	char fsid[64], *addrs = NULL;
	int fd, rc;

	if (!record_path[0])
		return;
	rc = rados_cluster_fsid(cluster, fsid, sizeof(fsid));
	if (rc >= 0)
		rc = rados_getaddrs(cluster, &addrs);
	if (rc < 0 || !sane(fsid, FSID_CHARS, 36) || !sane(addrs, ADDR_CHARS, 200)) {
		snapfs_warn("the address of this run's Ceph client is not kept (%s): a restart "
			    "after a crash may wait 30 s on its watches",
			    rc < 0 ? strerror(-rc) : "not understood");
		free(addrs);
		return;
	}
	fd = open(record_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || dprintf(fd, "%s %s\n", fsid, addrs) < 0)
		snapfs_warn("cannot keep this run's Ceph client address in %s: %m", record_path);
	if (fd >= 0)
		close(fd);
	free(addrs);
}

int snapfs_rbd_dead_blocklist(void *cluster, const char *path)
{
	char fsid[64], line[320];
	int n = 0, rc = rados_cluster_fsid(cluster, fsid, sizeof(fsid));
	FILE *f;

	if (rc < 0)
		return rc;
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	while (fgets(line, sizeof(line), f)) {
		char *addrs = strchr(line, ' '), *end = strchr(line, '\n');

		if (!addrs || !end)
			continue;
		*addrs++ = '\0';
		*end = '\0';
		if (strcmp(line, fsid) || !sane(addrs, ADDR_CHARS, 200))
			continue;
		rc = rados_blocklist_add(cluster, addrs, BLOCKLIST_SECONDS);
		if (rc < 0) {
			snapfs_warn("cannot blocklist %s, the Ceph client of a dead run, on cluster "
				    "%s: %s; its snapshots are removed once its watches time out",
				    addrs, fsid, strerror(-rc));
			continue;
		}
		snapfs_info("blocklisted %s, the Ceph client of a dead run, on cluster %s for %d s, "
			    "so that its watches end now",
			    addrs, fsid, BLOCKLIST_SECONDS);
		n++;
	}
	fclose(f);
	return n;
}
