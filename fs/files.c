/* Open files and directories of the mount: what an fh of FUSE points at.
 *
 * A file is read-only between open and release but for its links in
 * open_files (under files_lock) and its listing (a directory's, under its
 * own lock); reads pread from the snapshot's fd, so readers, of one file or
 * of many guests, never serialize.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "snapfs-fuse.h"

/* Every open file, so that those the kernel never releases (an unmount
 * with files open) are freed at the end.  Under files_lock. */
static pthread_mutex_t files_lock = PTHREAD_MUTEX_INITIALIZER;
static struct snapfs_file *open_files;

static void file_track(struct snapfs_file *f)
{
	pthread_mutex_lock(&files_lock);
	f->next = open_files;
	if (open_files)
		open_files->prev = f;
	open_files = f;
	pthread_mutex_unlock(&files_lock);
}

static void file_untrack(struct snapfs_file *f)
{
	pthread_mutex_lock(&files_lock);
	if (f->prev)
		f->prev->next = f->next;
	else
		open_files = f->next;
	if (f->next)
		f->next->prev = f->prev;
	pthread_mutex_unlock(&files_lock);
}

static void file_free(struct snapfs_file *f)
{
	if (f->dir)
		pthread_mutex_destroy(&f->list_lock);
	snapfs_dir_list_free(&f->list);
	free(f->data);
	free(f);
}

void snapfs_files_free_all(void)
{
	pthread_mutex_lock(&files_lock);
	while (open_files) {
		struct snapfs_file *f = open_files;

		open_files = f->next;
		file_free(f);
	}
	pthread_mutex_unlock(&files_lock);
}

int snapfs_dir_open(const char *path, struct snapfs_file **out)
{
	struct snapfs_node n;
	struct snapfs_file *f;
	int rc = snapfs_node_lookup(path, &n);

	if (rc < 0)
		return rc;
	rc = n.kind == NODE_ROOT || n.kind == NODE_GUEST || n.kind == NODE_LVM ||
			     n.kind == NODE_VG
		     ? 0
		     : -ENOTDIR;
	snapfs_node_put(&n);
	if (rc < 0)
		return rc;
	f = calloc(1, sizeof(*f));
	if (!f || !(f->data = strdup(path))) {
		free(f);
		return -ENOMEM;
	}
	f->dir = true;
	pthread_mutex_init(&f->list_lock, NULL);
	file_track(f);
	*out = f;
	return 0;
}

static int open_image(const struct snapfs_node *n, struct snapfs_file *f)
{
	const struct snapfs_snapdisk *sd;
	int rc = snapfs_snapset_acquire(n->guest, &f->set);

	if (rc < 0)
		return rc;
	sd = snapfs_snapset_disk(f->set, n->disk->file);
	if (!sd) {
		/* Hot-plugged after the set was taken. */
		snapfs_warn("guest %s disk %s: not in the snapshot set held now; close the "
			    "guest's files to take a new one",
			    n->guest->dir, n->disk->target);
		rc = -EBUSY;
		goto fail;
	}
	f->disk = sd;
	f->img = n->container ? &sd->container : &sd->view;
	if (f->img->kind == SNAPFS_IMAGE_NONE) {
		snapfs_error("guest %s disk %s: %s is not served from this snapshot set "
			     "(said above): EIO",
			     n->guest->dir, n->disk->target, n->disk->view);
		rc = -EIO;
		goto fail;
	}
	f->stamp = snapfs_snapset_stamp(f->set);
	f->size = f->img->size;
	f->allocated = f->img->allocated;
	if (n->kind == NODE_PART) {
		/* The snapshot's own table, not the live one. */
		const struct snapfs_partition *p = NULL;

		for (size_t i = 0; i < sd->parts.n; i++)
			if (sd->parts.part[i].number == n->part.number)
				p = &sd->parts.part[i];
		if (!p) {
			snapfs_warn("guest %s disk %s: partition %u is not in the snapshot's "
				    "partition table",
				    n->guest->dir, n->disk->target, n->part.number);
			rc = -ENOENT;
			goto fail;
		}
		f->start = p->start;
		f->size = p->size;
		f->allocated = p->allocated;
	}
	return 0;
fail:
	snapfs_snapset_release(f->set);
	f->set = NULL;
	return rc;
}

/* A guest LV: from the set's own reading of the guest's VGs, which must
 * still hold it. */
static int open_lv(const struct snapfs_node *n, struct snapfs_file *f)
{
	const struct snapfs_glvm_lv *lv;
	int rc = snapfs_snapset_acquire(n->guest, &f->set);

	if (rc < 0)
		return rc;
	lv = snapfs_glvs_lv(snapfs_snapset_glvs(f->set), n->vg_name, n->lv_name, NULL);
	if (!lv) {
		snapfs_warn("guest %s: LV %s/%s is not in the snapshot set held now (said above, "
			    "or made since)",
			    n->guest->dir, n->vg_name, n->lv_name);
		snapfs_snapset_release(f->set);
		f->set = NULL;
		return -ENOENT;
	}
	f->lv_img = (struct snapfs_image){ .kind = SNAPFS_IMAGE_GUEST_LV,
					   .glvs = snapfs_snapset_glvs(f->set), .glv = lv,
					   .size = lv->size, .allocated = SNAPFS_ALL_DATA };
	f->img = &f->lv_img;
	f->whole_set = true;
	f->disk = snapfs_snapset_disk(f->set, n->disk->file);
	f->stamp = snapfs_snapset_stamp(f->set);
	f->size = lv->size;
	f->allocated = SNAPFS_ALL_DATA;
	return 0;
}

/* Does the guest of n hold a set now? */
static bool guest_held(const struct snapfs_node *n)
{
	struct snapfs_held held;

	/* Every disk of a set has its container, also a raw one. */
	return snapfs_snapset_held(n->guest->dir, n->disk->file, SNAPFS_CONTAINER, &held) == 0;
}

/* Point n at its guest as discovered again now: a new set is made from the
 * guest's disks of now, not from a listing that may be seconds old (an LV
 * swapped meanwhile).  Only this guest is resolved, whatever the host's
 * size.  0, -ENOENT when the guest or the disk is gone, or -errno. */
static int resolve_again(struct snapfs_node *n)
{
	struct snapfs_catalog *fresh;
	const struct snapfs_guest *g;
	int rc = snapfs_catalog_resolve(n->guest, &fresh);

	if (rc < 0)
		return rc;
	g = &fresh->guest[0];
	for (size_t i = 0; i < g->ndisks; i++) {
		if (!strcmp(g->disk[i].file, n->disk->file)) {
			snapfs_node_put(n);
			n->cat = fresh;
			n->guest = g;
			n->disk = &g->disk[i];
			return 0; /* n->part.number: checked against the snapshot's table */
		}
	}
	snapfs_warn("guest %s disk %s: no longer a disk of the guest", n->guest->dir,
		    n->disk->target);
	snapfs_catalog_put(fresh);
	return -ENOENT;
}

int snapfs_file_open(const char *path, int flags, struct snapfs_file **out)
{
	struct snapfs_node n;
	struct snapfs_file *f;
	int rc;

	if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC))
		return -EROFS;
	rc = snapfs_node_lookup(path, &n);
	if (rc < 0)
		return rc;
	if ((n.kind == NODE_DISK || n.kind == NODE_PART || n.kind == NODE_LV) &&
	    !guest_held(&n)) {
		rc = resolve_again(&n);
		if (rc < 0)
			goto out;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		rc = -ENOMEM;
		goto out;
	}
	f->allocated = SNAPFS_ALL_DATA;
	switch (n.kind) {
	case NODE_ROOT:
	case NODE_GUEST:
	case NODE_LVM:
	case NODE_VG:
		rc = -EISDIR;
		break;
	case NODE_LV:
		rc = open_lv(&n, f);
		break;
	case NODE_XML:
		f->data = strdup(n.guest->xml);
		f->size = f->data ? strlen(f->data) : 0;
		f->stamp = n.guest->xml_stamp;
		rc = f->data ? 0 : -ENOMEM;
		break;
	case NODE_DISK:
	case NODE_PART:
		rc = open_image(&n, f);
		break;
	case NODE_STATUS:
		f->data = snapfs_snapset_report();
		f->size = f->data ? strlen(f->data) : 0;
		f->stamp = snapfs_stamp_next();
		f->direct_io = true;
		rc = f->data ? 0 : -ENOMEM;
		break;
	}
	if (rc < 0) {
		free(f->data);
		free(f);
		goto out;
	}
	file_track(f);
	*out = f;
out:
	snapfs_node_put(&n);
	return rc;
}

void snapfs_file_release(struct snapfs_file *f)
{
	file_untrack(f);
	if (f->set)
		snapfs_snapset_release(f->set);
	file_free(f);
}

/* A failed read of the device: logged once per open file. */
static void read_error(struct snapfs_file *f, uint64_t off, int err)
{
	/* A qcow2 table or cluster that is bad: the decoder said which. */
	if (f->img->kind == SNAPFS_IMAGE_QCOW2 && err == EIO)
		return;
	if (__atomic_exchange_n(&f->read_error_logged, true, __ATOMIC_RELAXED))
		return;
	if (f->img->kind == SNAPFS_IMAGE_GUEST_LV)
		snapfs_error("guest %s: read of LV %s/%s at byte %llu failed: %s",
			     f->disk ? f->disk->guest : "?", f->img->glv->vg, f->img->glv->name,
			     (unsigned long long)off, strerror(err));
	else if (f->img->kind == SNAPFS_IMAGE_QCOW2)
		snapfs_error("guest %s disk %s: read of the decoded qcow2 disk at byte %llu "
			     "failed: %s",
			     f->disk->guest, f->disk->file, (unsigned long long)off,
			     err == ENODATA ? "unexpected end of device" : strerror(err));
	else if (f->disk->kind == SNAPFS_ORIGIN_FILE)
		snapfs_error("guest %s disk %s: read of %s%s at byte %llu failed: %s",
			     f->disk->guest, f->disk->file,
			     f->disk->mech == &snapfs_mech_reflink ? "the reflink clone of " : "",
			     f->disk->origin_path,
			     (unsigned long long)off,
			     err == ENODATA ? "unexpected end of file" : strerror(err));
	else if (f->img->kind == SNAPFS_IMAGE_NBD || f->disk->kind == SNAPFS_ORIGIN_RBD)
		return; /* nbd.c or snap-rbd.c said why, once */
	else
		snapfs_error("guest %s disk %s: read of snapshot %s/%s at byte %llu failed: %s",
			     f->disk->guest, f->disk->file, f->disk->vg, f->disk->snap,
			     (unsigned long long)off,
			     err == ENODATA ? "unexpected end of device" : strerror(err));
}

const char *snapfs_file_bytes(const struct snapfs_file *f, size_t *size, off_t off)
{
	if (!f->data)
		return NULL;
	if (off < 0 || (uint64_t)off >= f->size)
		*size = 0;
	else if (*size > f->size - (uint64_t)off)
		*size = (size_t)(f->size - (uint64_t)off);
	return *size ? f->data + off : f->data;
}

int snapfs_file_read(struct snapfs_file *f, char *buf, size_t size, off_t off)
{
	int rc;

	if (off < 0 || f->data)
		return -EINVAL;
	if ((uint64_t)off >= f->size)
		return 0;
	if (size > f->size - (uint64_t)off)
		size = (size_t)(f->size - (uint64_t)off);
	rc = snapfs_image_read(f->img, buf, size, f->start + (uint64_t)off);
	/* An invalidated snapshot fails its reads: say that, once. */
	if ((f->whole_set ? snapfs_snapset_check_all(f->set)
			  : snapfs_snapset_check(f->set, f->disk)) < 0)
		return -EIO;
	if (rc < 0) {
		read_error(f, (uint64_t)off, -rc);
		return -EIO;
	}
	return (int)size;
}

int snapfs_file_seek(struct snapfs_file *f, off_t off, int whence, off_t *out)
{
	uint64_t at;
	int rc;

	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL;
	if (off < 0)
		return -EINVAL;
	if ((uint64_t)off >= f->size)
		return -ENXIO;
	if (f->data) {
		*out = whence == SEEK_DATA ? off : (off_t)f->size;
		return 0;
	}
	rc = snapfs_image_seek(f->img, f->start + (uint64_t)off, f->start + f->size, whence,
			       &at);
	/* A clone dropped meanwhile has no holes left to trust. */
	if ((f->whole_set ? snapfs_snapset_check_all(f->set)
			  : snapfs_snapset_check(f->set, f->disk)) < 0)
		return -EIO;
	if (rc < 0) {
		read_error(f, (uint64_t)off, -rc);
		return -EIO;
	}
	at -= f->start;
	if (whence == SEEK_DATA && at >= f->size)
		return -ENXIO;
	*out = (off_t)at;
	return 0;
}
