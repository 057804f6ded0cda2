/* From a path of the mount to what it names, and what stat shows of it:
 *   /                    NODE_ROOT
 *   /GUEST               NODE_GUEST
 *   /GUEST/domain.xml    NODE_XML (libvirt sources only)
 *   /GUEST/vda.raw       NODE_DISK
 *   /GUEST/vda1.raw      NODE_PART
 *   /GUEST/lvm           NODE_LVM, when the guest has VGs of its own
 *   /GUEST/lvm/VG        NODE_VG
 *   /GUEST/lvm/VG/LV     NODE_LV
 *   /.snapfs-status      NODE_STATUS (not listed)
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "snapfs-fuse.h"

int snapfs_node_disk_parts(const struct snapfs_guest *g, const struct snapfs_disk *d,
			   struct snapfs_partitions *out)
{
	if (snapfs_snapset_held_parts(g->dir, d->file, out) == 0)
		return 0;
	return snapfs_partitions_copy(&d->parts, out);
}

/* A disk image or partition file of n->guest. */
static int find_file(struct snapfs_node *n, const char *file)
{
	const struct snapfs_guest *g = n->guest;
	char name[SNAPFS_NAME_MAX + 1];

	for (size_t i = 0; i < g->ndisks; i++) {
		const struct snapfs_disk *d = &g->disk[i];

		if (!strcmp(d->file, file) || (d->view[0] && !strcmp(d->view, file))) {
			n->kind = NODE_DISK;
			n->disk = d;
			n->container = !strcmp(d->file, file) && snapfs_disk_is_container(d);
			return 0;
		}
	}
	for (size_t i = 0; i < g->ndisks; i++) {
		const struct snapfs_disk *d = &g->disk[i];
		struct snapfs_partitions parts;
		bool found = false;

		if (snapfs_node_disk_parts(g, d, &parts) < 0)
			return -ENOMEM;
		for (size_t p = 0; p < parts.n && !found; p++) {
			if (snapfs_name_image(d->target, parts.part[p].number, "raw", name,
					      sizeof(name)) == 0 &&
			    !strcmp(name, file)) {
				n->kind = NODE_PART;
				n->disk = d;
				n->part = parts.part[p];
				found = true;
			}
		}
		snapfs_partitions_free(&parts);
		if (found)
			return 0;
	}
	return -ENOENT;
}

/* Copy the next component of *path (after its '/') into out; 0, or
 * -ENOENT for none or one too long. */
static int component(const char **path, char out[SNAPFS_NAME_MAX + 1])
{
	const char *p = *path, *end;
	size_t len;

	if (*p != '/')
		return -ENOENT;
	p++;
	end = strchr(p, '/');
	len = end ? (size_t)(end - p) : strlen(p);
	if (!len || len > SNAPFS_NAME_MAX)
		return -ENOENT;
	memcpy(out, p, len);
	out[len] = '\0';
	*path = p + len;
	return 0;
}

bool snapfs_node_has_lvs(const struct snapfs_guest *g)
{
	for (size_t v = 0; g->glvs && v < g->glvs->glvm->nvgs; v++)
		if (g->glvs->glvm->vg[v].served)
			return true;
	return false;
}

/* rest: what follows /GUEST/lvm ("", "/VG" or "/VG/LV"). */
static int find_lv(struct snapfs_node *n, const char *rest)
{
	const struct snapfs_guest *g = n->guest;

	if (!snapfs_node_has_lvs(g) || !g->ndisks)
		return -ENOENT;
	n->disk = &g->disk[0];
	n->kind = NODE_LVM;
	if (!*rest)
		return 0;
	if (component(&rest, n->vg_name) < 0 || !(n->vg = snapfs_glvs_vg(g->glvs, n->vg_name)))
		return -ENOENT;
	n->kind = NODE_VG;
	if (!*rest)
		return 0;
	if (component(&rest, n->lv_name) < 0 || *rest ||
	    !(n->lv = snapfs_glvs_lv(g->glvs, n->vg_name, n->lv_name, &n->lv_id)))
		return -ENOENT;
	n->kind = NODE_LV;
	return 0;
}

int snapfs_node_lookup(const char *path, struct snapfs_node *n)
{
	char dir[SNAPFS_NAME_MAX + 1];
	const char *slash;
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
	if (!strcmp(path, SNAPFS_STATUS_FILE)) {
		n->kind = NODE_STATUS;
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
	if (!strncmp(path, SNAPFS_LVM_DIR, strlen(SNAPFS_LVM_DIR)) &&
	    (path[strlen(SNAPFS_LVM_DIR)] == '\0' || path[strlen(SNAPFS_LVM_DIR)] == '/')) {
		if (find_lv(n, path + strlen(SNAPFS_LVM_DIR)) == 0)
			return 0;
		goto noent;
	}
	if (strchr(path, '/'))
		goto noent;
	if (!strcmp(path, "domain.xml") && n->guest->xml) {
		n->kind = NODE_XML;
		return 0;
	}
	if (find_file(n, path) == 0)
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

static void fill_common(struct stat *st, bool dir, struct timespec stamp)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = dir ? S_IFDIR | 0550 : S_IFREG | 0440;
	st->st_nlink = dir ? 2 : 1;
	st->st_uid = 0;
	st->st_gid = snapfs_fs_opts->gid;
	st->st_blksize = SNAPFS_BLKSIZE;
	st->st_mtim = st->st_ctim = st->st_atim = stamp;
}

/* st_blocks counts what holds data, so that du tells the truth and cp and
 * tar look for holes; never 0 for a file that holds data. */
static void fill_size(struct stat *st, uint64_t size, uint64_t allocated)
{
	if (allocated > size)
		allocated = size;
	st->st_size = (off_t)size;
	st->st_blocks = (blkcnt_t)((allocated + 511) / 512);
}

void snapfs_stat_open_file(uint64_t size, uint64_t allocated, struct timespec stamp,
			   struct stat *st)
{
	fill_common(st, false, stamp);
	fill_size(st, size, allocated);
}

/* Size and time of a disk or partition: the held snapshot's when there is
 * one, else the live origin's as the catalog saw it. */
unsigned snapfs_node_partno(const struct snapfs_node *n)
{
	if (n->kind == NODE_PART)
		return n->part.number;
	return n->container ? SNAPFS_CONTAINER : 0;
}

static void image_attr(const struct snapfs_node *n, struct stat *st)
{
	struct snapfs_held held;

	if (snapfs_snapset_held(n->guest->dir, n->disk->file, snapfs_node_partno(n), &held) ==
	    0) {
		snapfs_stat_open_file(held.size, held.allocated, held.stamp, st);
		return;
	}
	/* Stable while no set is held, and the time the next set's files show;
	 * never one an earlier set showed. */
	struct timespec stamp = snapfs_snapset_epoch(n->guest->dir);

	if (n->kind == NODE_PART)
		snapfs_stat_open_file(n->part.size, n->part.allocated, stamp, st);
	else if (snapfs_disk_is_container(n->disk) && !n->container)
		snapfs_stat_open_file(n->disk->view_size, n->disk->view_allocated, stamp, st);
	else
		snapfs_stat_open_file(n->disk->size, n->disk->allocated, stamp, st);
}

/* A guest LV: the held set's size and time, else as listed, at the time
 * its guest's files show. */
static void lv_attr(const struct snapfs_node *n, struct stat *st)
{
	struct snapfs_held held;
	struct snapfs_partition id;
	struct timespec stamp = snapfs_snapset_epoch(n->guest->dir);
	uint64_t size = n->lv->size;

	if (snapfs_snapset_held(n->guest->dir, n->disk->file, SNAPFS_CONTAINER, &held) == 0)
		stamp = held.stamp;
	snapfs_snapset_held_lv(n->guest->dir, n->vg_name, n->lv_name, &size, &id);
	snapfs_stat_open_file(size, SNAPFS_ALL_DATA, stamp, st);
}

void snapfs_node_stat(const struct snapfs_node *n, struct stat *st)
{
	switch (n->kind) {
	case NODE_ROOT:
		fill_common(st, true, n->cat->root_stamp);
		break;
	case NODE_GUEST:
		fill_common(st, true, n->guest->dir_stamp);
		break;
	case NODE_XML:
		snapfs_stat_open_file(strlen(n->guest->xml), SNAPFS_ALL_DATA, n->guest->xml_stamp,
				      st);
		break;
	case NODE_STATUS:
		/* Its size is known only when read, as in /proc. */
		fill_common(st, false, snapfs_stamp_next());
		break;
	case NODE_DISK:
	case NODE_PART:
		image_attr(n, st);
		break;
	case NODE_LVM:
	case NODE_VG:
		fill_common(st, true, n->guest->dir_stamp);
		break;
	case NODE_LV:
		lv_attr(n, st);
		break;
	}
}
