/* Extended attributes of the image files: user.snapfs.*, see snapfs(8).
 * Reading them never creates a snapshot. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "snapfs-fuse.h"

#define XATTR_MAX 16
struct xattrs {
	size_t n;
	const char *name[XATTR_MAX];
	char value[XATTR_MAX][4200]; /* an origin file's path, up to PATH_MAX */
};

static void xattr_add(struct xattrs *x, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void xattr_add(struct xattrs *x, const char *name, const char *fmt, ...)
{
	va_list ap;

	if (x->n == XATTR_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(x->value[x->n], sizeof(x->value[0]), fmt, ap);
	va_end(ap);
	if (x->value[x->n][0])
		x->name[x->n++] = name;
}

static int collect_xattrs(const char *path, struct xattrs *x)
{
	struct snapfs_node n;
	struct snapfs_held held;
	int rc = snapfs_node_lookup(path, &n);

	x->n = 0;
	if (rc < 0)
		return rc;
	if (n.kind == NODE_LV) {
		/* What it holds: in the held set's snapshot, else live. */
		struct snapfs_partition id = *n.lv_id;
		uint64_t size;

		snapfs_snapset_held_lv(n.guest->dir, n.vg_name, n.lv_name, &size, &id);
		xattr_add(x, "user.snapfs.vg", "%s", n.lv->vg);
		xattr_add(x, "user.snapfs.lv", "%s", n.lv->name);
		xattr_add(x, "user.snapfs.segtype", "%s", n.lv->segtype);
		xattr_add(x, "user.snapfs.fstype", "%s", id.fstype);
		xattr_add(x, "user.snapfs.label", "%s", id.label);
		xattr_add(x, "user.snapfs.uuid", "%s", id.uuid);
		xattr_add(x, "user.snapfs.snapshot_kind", "%s",
			  n.disk->kind == SNAPFS_ORIGIN_LV
				  ? (n.disk->lv.thin ? "lvm-thin" : "lvm")
				  : snapfs_mechanism_of(n.disk->kind, n.disk->direct)->name);
	}
	if (n.kind == NODE_DISK || n.kind == NODE_PART) {
		const struct snapfs_partition *p = n.kind == NODE_PART ? &n.part : NULL;

		if (n.disk->kind != SNAPFS_ORIGIN_LV) {
			xattr_add(x, "user.snapfs.origin", "%s", n.disk->path);
			xattr_add(x, "user.snapfs.snapshot_kind", "%s",
				  snapfs_mechanism_of(n.disk->kind, n.disk->direct)->name);
		} else {
			xattr_add(x, "user.snapfs.origin", "%s/%s", n.disk->lv.vg, n.disk->lv.lv);
			xattr_add(x, "user.snapfs.snapshot_kind", "%s",
				  n.disk->lv.thin ? "lvm-thin" : "lvm");
		}
		xattr_add(x, "user.snapfs.format", "%s", n.disk->format);
		if (n.disk->view[0]) {
			char chain[4096] = "";
			size_t o = 0;

			/* Nearest first; a path with a space is one a reader can
			 * still tell apart: every layer is absolute. */
			for (size_t k = 0; k < n.disk->nlayers && o < sizeof(chain); k++) {
				const struct snapfs_layer *l = &n.disk->layer[k];

				if (l->path[0])
					o += (size_t)snprintf(chain + o, sizeof(chain) - o, "%s%s",
							      k ? " " : "", l->path);
				else
					o += (size_t)snprintf(chain + o, sizeof(chain) - o,
							      "%s%s/%s", k ? " " : "", l->lv.vg,
							      l->lv.lv);
			}
			xattr_add(x, "user.snapfs.virtual_size", "%" PRIu64, n.disk->view_size);
			xattr_add(x, "user.snapfs.cluster_size", "%u", n.disk->cluster_size);
			xattr_add(x, "user.snapfs.backing", "%s", chain);
		}
		if (p) {
			xattr_add(x, "user.snapfs.start", "%" PRIu64, p->start);
			xattr_add(x, "user.snapfs.type", "%s", p->type);
			xattr_add(x, "user.snapfs.fstype", "%s", p->fstype);
			xattr_add(x, "user.snapfs.label", "%s", p->label);
			xattr_add(x, "user.snapfs.uuid", "%s", p->uuid);
		}
		if (snapfs_snapset_held(n.guest->dir, n.disk->file, snapfs_node_partno(&n),
					&held) == 0) {
			char when[64];

			snapfs_stamp_format(held.instant, when, sizeof(when));
			xattr_add(x, "user.snapfs.snapshot", "%s", held.snap);
			xattr_add(x, "user.snapfs.time", "%s", when);
			xattr_add(x, "user.snapfs.consistency", "%s",
				  held.frozen ? "frozen" : "crash");
		}
	}
	snapfs_node_put(&n);
	return 0;
}

int snapfs_xattr_get(const char *path, const char *name, char *value, size_t size)
{
	struct xattrs x;
	int rc;

	/* Only the user namespace is served.  Not supported, rather than
	 * absent, for the others: ls -l asks every file for security.selinux
	 * until one answer says the file system has no such attributes. */
	if (strncmp(name, "user.", 5))
		return -EOPNOTSUPP;
	rc = collect_xattrs(path, &x);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < x.n; i++) {
		size_t len = strlen(x.value[i]);

		if (strcmp(x.name[i], name))
			continue;
		if (size == 0)
			return (int)len;
		if (size < len)
			return -ERANGE;
		memcpy(value, x.value[i], len);
		return (int)len;
	}
	return -ENODATA;
}

int snapfs_xattr_list(const char *path, char *list, size_t size)
{
	struct xattrs x;
	size_t total = 0;
	int rc = collect_xattrs(path, &x);

	if (rc < 0)
		return rc;
	for (size_t i = 0; i < x.n; i++)
		total += strlen(x.name[i]) + 1;
	if (size == 0)
		return (int)total;
	if (size < total)
		return -ERANGE;
	for (size_t i = 0; i < x.n; i++) {
		size_t len = strlen(x.name[i]) + 1;

		memcpy(list, x.name[i], len);
		list += len;
	}
	return (int)total;
}
