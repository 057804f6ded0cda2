/* From a path of the mount to what it names:
 *   /                    NODE_ROOT
 *   /GUEST               NODE_GUEST
 *   /GUEST/domain.xml    NODE_XML (libvirt sources only)
 *   /GUEST/vda.raw       NODE_DISK
 *   /GUEST/vda1.raw      NODE_PART
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "snapfs-fuse.h"

int snapfs_node_lookup(const char *path, struct snapfs_node *n)
{
	char dir[SNAPFS_NAME_MAX + 1];
	const char *slash;
	unsigned partno;
	size_t len;
	int rc;

	memset(n, 0, sizeof(*n));
	if (!path || path[0] != '/')
		return -ENOENT;
	rc = snapfs_catalog_get(&n->cat);
	if (rc < 0)
		return rc;
	path++;
	if (!*path) {
		n->kind = NODE_ROOT;
		return 0;
	}
	slash = strchr(path, '/');
	len = slash ? (size_t)(slash - path) : strlen(path);
	if (len > SNAPFS_NAME_MAX)
		goto noent;
	memcpy(dir, path, len);
	dir[len] = '\0';
	n->guest = snapfs_catalog_guest(n->cat, dir);
	if (!n->guest)
		goto noent;
	if (!slash) {
		n->kind = NODE_GUEST;
		return 0;
	}
	path = slash + 1;
	if (strchr(path, '/'))
		goto noent;
	if (!strcmp(path, "domain.xml") && n->guest->xml) {
		n->kind = NODE_XML;
		return 0;
	}
	n->disk = snapfs_guest_disk(n->guest, path, &partno);
	if (!n->disk)
		goto noent;
	n->kind = partno ? NODE_PART : NODE_DISK;
	for (size_t i = 0; partno && i < n->disk->parts.n; i++)
		if (n->disk->parts.part[i].number == partno)
			n->part = &n->disk->parts.part[i];
	return 0;
noent:
	snapfs_node_put(n);
	return -ENOENT;
}

void snapfs_node_put(struct snapfs_node *n)
{
	snapfs_catalog_put(n->cat);
	n->cat = NULL;
}
