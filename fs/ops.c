/* The FUSE operations.
 *
 * The loop is multithreaded: any op may run beside any other.  Ops hold no
 * lock of their own; what they share lives in src/ (the catalog and the
 * snapshot sets, each with its own lock).  A handle (fi->fh) belongs to one
 * open file and is read-only between open and release (but for its links in
 * open_handles, under handles_lock); reads pread from the snapshot's fd, so
 * readers, of one file or of many guests, never serialize.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "snapfs-fuse.h"

struct snapfs_opts *snapfs_fs_opts;

#define BLKSIZE (1 << 20) /* st_blksize: cp and friends read 1 MiB at a time */

struct handle {
	struct snapfs_snapset *set; /* NULL for domain.xml */
	const struct snapfs_snapdisk *disk;
	bool read_error_logged;
	int fd;
	uint64_t start, size;
	struct timespec stamp;
	char *data; /* domain.xml; the path of an open directory */
	bool dir;
	struct handle *prev, *next; /* in open_handles */
};

/* Every open file's handle, so that those the kernel never releases (an
 * unmount with files open) are freed at the end.  Under handles_lock. */
static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static struct handle *open_handles;

static void handle_track(struct handle *h)
{
	pthread_mutex_lock(&handles_lock);
	h->next = open_handles;
	if (open_handles)
		open_handles->prev = h;
	open_handles = h;
	pthread_mutex_unlock(&handles_lock);
}

static void handle_untrack(struct handle *h)
{
	pthread_mutex_lock(&handles_lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		open_handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&handles_lock);
}

void snapfs_fs_free_handles(void)
{
	pthread_mutex_lock(&handles_lock);
	while (open_handles) {
		struct handle *h = open_handles;

		open_handles = h->next;
		free(h->data);
		free(h);
	}
	pthread_mutex_unlock(&handles_lock);
}

static void fill_common(struct stat *st, bool dir, struct timespec stamp)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = dir ? S_IFDIR | 0550 : S_IFREG | 0440;
	st->st_nlink = dir ? 2 : 1;
	st->st_uid = 0;
	st->st_gid = snapfs_fs_opts->gid;
	st->st_blksize = BLKSIZE;
	st->st_mtim = st->st_ctim = st->st_atim = stamp;
}

static void fill_size(struct stat *st, uint64_t size)
{
	st->st_size = (off_t)size;
	st->st_blocks = (blkcnt_t)((size + 511) / 512);
}

/* Size and time of a disk or partition: the held snapshot's when there is
 * one, else the live origin's as the catalog saw it. */
static void image_attr(const struct snapfs_node *n, struct stat *st)
{
	unsigned partno = n->kind == NODE_PART ? n->part.number : 0;
	struct snapfs_held held;

	if (snapfs_snapset_held(n->guest->dir, n->disk->file, partno, &held) == 0) {
		fill_common(st, false, held.stamp);
		fill_size(st, held.size);
		return;
	}
	/* An mtime is never reused across sets: a backup tool that saw this
	 * file before the last set was released sees a newer time now. */
	struct timespec stamp = n->cat->stamp, rel = snapfs_snapset_last_release();

	if (rel.tv_sec > stamp.tv_sec || (rel.tv_sec == stamp.tv_sec && rel.tv_nsec > stamp.tv_nsec))
		stamp = rel;
	fill_common(st, false, stamp);
	fill_size(st, n->kind == NODE_PART ? n->part.size : n->disk->lv.size);
}

static void apply_readahead(void)
{
	if (snapfs_fs_opts->readahead)
		snapfs_fs_set_readahead(snapfs_fs_opts->mountpoint, snapfs_fs_opts->readahead);
}

/* getattr: stat(2) and every lookup.  Never creates a snapshot.  The first
 * one also widens the mount's readahead: the kernel sends no request but
 * init before it has applied init's reply, which would undo it. */
static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	static pthread_once_t readahead_once = PTHREAD_ONCE_INIT;
	struct snapfs_node n;
	int rc;

	pthread_once(&readahead_once, apply_readahead);

	const struct handle *h = fi ? (const struct handle *)(uintptr_t)fi->fh : NULL;

	if (h && !h->dir) {
		fill_common(st, false, h->stamp);
		fill_size(st, h->size);
		return 0;
	}
	rc = snapfs_node_lookup(path, &n);
	if (rc < 0)
		return rc;
	switch (n.kind) {
	case NODE_ROOT:
	case NODE_GUEST:
		fill_common(st, true, n.cat->stamp);
		break;
	case NODE_XML:
		fill_common(st, false, n.cat->stamp);
		fill_size(st, strlen(n.guest->xml));
		break;
	case NODE_STATUS:
		/* Its size is known only when read, as in /proc. */
		fill_common(st, false, snapfs_stamp_next());
		break;
	case NODE_DISK:
	case NODE_PART:
		image_attr(&n, st);
		break;
	}
	snapfs_node_put(&n);
	return 0;
}

static int list_guest(const struct snapfs_guest *g, void *buf, fuse_fill_dir_t filler)
{
	char name[SNAPFS_NAME_MAX + 1];

	if (g->xml && filler(buf, "domain.xml", NULL, 0, 0))
		return 0;
	for (size_t i = 0; i < g->ndisks; i++) {
		const struct snapfs_disk *d = &g->disk[i];

		if (filler(buf, d->file, NULL, 0, 0))
			return 0;
		struct snapfs_partitions parts;
		bool full = false;

		if (snapfs_node_disk_parts(g, d, &parts) < 0)
			return -ENOMEM;
		for (size_t p = 0; p < parts.n && !full; p++)
			full = snapfs_name_image(d->target, parts.part[p].number, d->ext, name,
						 sizeof(name)) == 0 &&
			       filler(buf, name, NULL, 0, 0);
		snapfs_partitions_free(&parts);
		if (full)
			return 0;
	}
	return 0;
}

/* opendir: keep the path; with nullpath_ok readdir may get none. */
static int op_opendir(const char *path, struct fuse_file_info *fi)
{
	struct snapfs_node n;
	struct handle *h;
	int rc = snapfs_node_lookup(path, &n);

	if (rc < 0)
		return rc;
	rc = n.kind == NODE_ROOT || n.kind == NODE_GUEST ? 0 : -ENOTDIR;
	snapfs_node_put(&n);
	if (rc < 0)
		return rc;
	h = calloc(1, sizeof(*h));
	if (!h || !(h->data = strdup(path))) {
		free(h);
		return -ENOMEM;
	}
	h->dir = true;
	h->fd = -1;
	handle_track(h);
	fi->fh = (uint64_t)(uintptr_t)h;
	return 0;
}

static int op_releasedir(const char *path, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;

	handle_untrack(h);
	free(h->data);
	free(h);
	return 0;
}

/* readdir: the guests, or one guest's files, as the catalog sees them now.
 * Never creates a snapshot. */
static int op_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct snapfs_node n;
	const struct handle *h = (const struct handle *)(uintptr_t)fi->fh;
	int rc = snapfs_node_lookup(h->data, &n);

	if (rc < 0)
		return rc;
	if (n.kind != NODE_ROOT && n.kind != NODE_GUEST) {
		snapfs_node_put(&n);
		return -ENOTDIR;
	}
	filler(buf, ".", NULL, 0, 0);
	filler(buf, "..", NULL, 0, 0);
	if (n.kind == NODE_ROOT) {
		for (size_t i = 0; i < n.cat->n; i++)
			if (filler(buf, n.cat->guest[i].dir, NULL, 0, 0))
				break;
	} else {
		rc = list_guest(n.guest, buf, filler);
	}
	snapfs_node_put(&n);
	return rc;
}

static int open_image(const struct snapfs_node *n, struct handle *h)
{
	const struct snapfs_snapdisk *sd;
	int rc = snapfs_snapset_acquire(n->guest, &h->set);

	if (rc < 0)
		return rc;
	sd = snapfs_snapset_disk(h->set, n->disk->file);
	if (!sd) {
		/* Hot-plugged after the set was taken. */
		snapfs_warn("guest %s disk %s: not in the snapshot set held now; close the "
			    "guest's files to take a new one",
			    n->guest->name, n->disk->target);
		rc = -EBUSY;
		goto fail;
	}
	h->fd = sd->fd;
	h->disk = sd;
	h->stamp = snapfs_snapset_stamp(h->set);
	h->size = sd->size;
	if (n->kind == NODE_PART) {
		/* The snapshot's own table, not the live one. */
		const struct snapfs_partition *p = NULL;

		for (size_t i = 0; i < sd->parts.n; i++)
			if (sd->parts.part[i].number == n->part.number)
				p = &sd->parts.part[i];
		if (!p) {
			snapfs_warn("guest %s disk %s: partition %u is not in the snapshot's "
				    "partition table",
				    n->guest->name, n->disk->target, n->part.number);
			rc = -ENOENT;
			goto fail;
		}
		h->start = p->start;
		h->size = p->size;
	}
	return 0;
fail:
	snapfs_snapset_release(h->set);
	h->set = NULL;
	return rc;
}

/* Does the guest of n hold a set now? */
static bool guest_held(const struct snapfs_node *n)
{
	struct snapfs_held held;

	return snapfs_snapset_held(n->guest->dir, n->disk->file, 0, &held) == 0;
}

/* open: the first open of any file of a guest snapshots all its disks. */
static int op_open(const char *path, struct fuse_file_info *fi)
{
	struct snapfs_node n;
	struct handle *h;
	int rc;

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
		return -EROFS;
	rc = snapfs_node_lookup(path, &n);
	if (rc < 0)
		return rc;
	if ((n.kind == NODE_DISK || n.kind == NODE_PART) && !guest_held(&n)) {
		/* A new set: resolve the guest's disks again now, not from a
		 * listing that may be seconds old (an LV swapped meanwhile). */
		struct snapfs_catalog *fresh;

		snapfs_node_put(&n);
		rc = snapfs_catalog_get_fresh(&fresh);
		if (rc < 0)
			return rc;
		snapfs_catalog_put(fresh);
		rc = snapfs_node_lookup(path, &n);
		if (rc < 0)
			return rc;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		rc = -ENOMEM;
		goto out;
	}
	h->fd = -1;
	switch (n.kind) {
	case NODE_ROOT:
	case NODE_GUEST:
		rc = -EISDIR;
		break;
	case NODE_XML:
		h->data = strdup(n.guest->xml);
		h->size = h->data ? strlen(h->data) : 0;
		h->stamp = n.cat->stamp;
		rc = h->data ? 0 : -ENOMEM;
		break;
	case NODE_DISK:
	case NODE_PART:
		rc = open_image(&n, h);
		break;
	case NODE_STATUS:
		h->data = snapfs_snapset_report();
		h->size = h->data ? strlen(h->data) : 0;
		h->stamp = snapfs_stamp_next();
		fi->direct_io = 1;
		rc = h->data ? 0 : -ENOMEM;
		break;
	}
	if (rc < 0) {
		free(h->data);
		free(h);
		goto out;
	}
	handle_track(h);
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->keep_cache = 0; /* a new snapshot may hold new bytes */
	fi->noflush = 1;
out:
	snapfs_node_put(&n);
	return rc;
}

/* A failed read of the device: logged once per open file. */
static void read_error(struct handle *h, uint64_t off, int err)
{
	if (__atomic_exchange_n(&h->read_error_logged, true, __ATOMIC_RELAXED))
		return;
	snapfs_error("guest %s disk %s: read of snapshot %s/%s at byte %llu failed: %s",
		     h->disk->guest, h->disk->file, h->disk->vg, h->disk->snap,
		     (unsigned long long)off,
		     err ? strerror(err) : "unexpected end of device");
}

/* The bytes of a file at off: from the snapshot device at the file's
 * offset, EOF at the file's end.  The snapshot's health is checked after
 * the bytes are read, so a read that raced with a COW overflow fails
 * instead of returning bytes written after the snapshot.  Bytes read, or
 * -errno. */
static int read_into(struct handle *h, char *buf, size_t size, off_t off)
{
	size_t done = 0;

	if (off < 0)
		return -EINVAL;
	if ((uint64_t)off >= h->size)
		return 0;
	if (size > h->size - (uint64_t)off)
		size = (size_t)(h->size - (uint64_t)off);
	if (h->data) {
		memcpy(buf, h->data + off, size);
		return (int)size;
	}
	while (done < size) {
		ssize_t n = snapfs_device_pread(h->disk, buf + done, size - done,
						h->start + (uint64_t)off + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? errno : 0;

			/* An invalidated snapshot fails its reads: say that, once. */
			if (snapfs_snapset_check(h->set, h->disk) == 0)
				read_error(h, (uint64_t)off + done, err);
			return -EIO;
		}
		done += (size_t)n;
	}
	if (snapfs_snapset_check(h->set, h->disk) < 0)
		return -EIO;
	return (int)done;
}

/* read_buf: every read.  Into a buffer of our own, aligned so that the
 * snapshot can be read with O_DIRECT (its bytes are then cached once, by
 * FUSE, not also under the snapshot device); libfuse copies it into the
 * reply and frees it.  Not an fd buffer for libfuse to splice: the bytes
 * must be read before the health check, not after. */
static int op_read_buf(const char *path, struct fuse_bufvec **bufp, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	struct fuse_bufvec *bv = malloc(sizeof(*bv));
	void *mem = NULL;
	int n;

	if (!bv || posix_memalign(&mem, SNAPFS_DIRECT_ALIGN, size ? size : 1)) {
		free(bv);
		return -ENOMEM;
	}
	n = read_into(h, mem, size, off);
	if (n < 0) {
		free(mem);
		free(bv);
		return n;
	}
	*bv = (struct fuse_bufvec)FUSE_BUFVEC_INIT((size_t)n);
	bv->buf[0].mem = mem;
	*bufp = bv;
	return 0;
}

/* release: the last release of a guest's files removes its snapshots. */
static int op_release(const char *path, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;

	handle_untrack(h);
	if (h->set)
		snapfs_snapset_release(h->set);
	free(h->data);
	free(h);
	return 0;
}

#define XATTR_MAX 12
struct xattrs {
	size_t n;
	const char *name[XATTR_MAX];
	char value[XATTR_MAX][300];
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
	if (n.kind == NODE_DISK || n.kind == NODE_PART) {
		const struct snapfs_partition *p = n.kind == NODE_PART ? &n.part : NULL;

		xattr_add(x, "user.snapfs.origin", "%s/%s", n.disk->lv.vg, n.disk->lv.lv);
		xattr_add(x, "user.snapfs.format", "%s", n.disk->format);
		if (p) {
			xattr_add(x, "user.snapfs.start", "%" PRIu64, p->start);
			xattr_add(x, "user.snapfs.type", "%s", p->type);
			xattr_add(x, "user.snapfs.fstype", "%s", p->fstype);
			xattr_add(x, "user.snapfs.label", "%s", p->label);
			xattr_add(x, "user.snapfs.uuid", "%s", p->uuid);
		}
		if (snapfs_snapset_held(n.guest->dir, n.disk->file, p ? p->number : 0,
					&held) == 0) {
			char when[64];

			snapfs_stamp_format(held.stamp, when, sizeof(when));
			xattr_add(x, "user.snapfs.snapshot", "%s", held.snap);
			xattr_add(x, "user.snapfs.time", "%s", when);
			xattr_add(x, "user.snapfs.consistency", "%s",
				  held.frozen ? "frozen" : "crash");
		}
	}
	snapfs_node_put(&n);
	return 0;
}

/* getxattr: user.snapfs.*, see snapfs(8).  Never creates a snapshot. */
static int op_getxattr(const char *path, const char *name, char *value, size_t size)
{
	struct xattrs x;
	int rc = collect_xattrs(path, &x);

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

/* listxattr: the names getxattr answers for this file. */
static int op_listxattr(const char *path, char *list, size_t size)
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

/* statfs: a read-only tree with no free space. */
static int op_statfs(const char *path, struct statvfs *st)
{
	memset(st, 0, sizeof(*st));
	st->f_bsize = BLKSIZE;
	st->f_frsize = 512;
	st->f_namemax = SNAPFS_NAME_MAX;
	st->f_flag = ST_RDONLY | ST_NOSUID | ST_NODEV;
	return 0;
}

/* The mount is read-only; these answer EROFS should a request get here. */
static int op_erofs_path(const char *path)
{
	return -EROFS;
}
static int op_erofs_mode(const char *path, mode_t mode)
{
	return -EROFS;
}
static int op_erofs_mknod(const char *path, mode_t mode, dev_t dev)
{
	return -EROFS;
}
static int op_erofs_2path(const char *from, const char *to)
{
	return -EROFS;
}
static int op_erofs_rename(const char *from, const char *to, unsigned flags)
{
	return -EROFS;
}
static int op_erofs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	return -EROFS;
}
static int op_erofs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	return -EROFS;
}
static int op_erofs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	return -EROFS;
}
static int op_erofs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	return -EROFS;
}
static int op_erofs_setxattr(const char *path, const char *name, const char *value,
			     size_t size, int flags)
{
	return -EROFS;
}
static int op_erofs_removexattr(const char *path, const char *name)
{
	return -EROFS;
}
static int op_erofs_utimens(const char *path, const struct timespec tv[2],
			    struct fuse_file_info *fi)
{
	return -EROFS;
}
static int op_erofs_write(const char *path, const char *buf, size_t size, off_t off,
			  struct fuse_file_info *fi)
{
	return -EROFS;
}

/* init: large reads, page cache kept within one open, no path needed for
 * reads of an open file. */
static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	cfg->nullpath_ok = 1;
	cfg->kernel_cache = 0;
	cfg->auto_cache = 0;
	cfg->direct_io = 0;
	cfg->entry_timeout = 1;
	cfg->attr_timeout = 1;
	cfg->negative_timeout = 0;
	/* No max_readahead: the kernel takes none larger than the 128 KiB it
	 * proposes; the window is widened in sysfs instead (op_getattr). */
	return NULL;
}

const struct fuse_operations snapfs_ops = {
	.init = op_init,
	.getattr = op_getattr,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.open = op_open,
	.read_buf = op_read_buf,
	.release = op_release,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.statfs = op_statfs,
	.mkdir = op_erofs_mode,
	.mknod = op_erofs_mknod,
	.unlink = op_erofs_path,
	.rmdir = op_erofs_path,
	.symlink = op_erofs_2path,
	.link = op_erofs_2path,
	.rename = op_erofs_rename,
	.chmod = op_erofs_chmod,
	.chown = op_erofs_chown,
	.truncate = op_erofs_truncate,
	.create = op_erofs_create,
	.write = op_erofs_write,
	.setxattr = op_erofs_setxattr,
	.removexattr = op_erofs_removexattr,
	.utimens = op_erofs_utimens,
};
