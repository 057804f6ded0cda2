/* qcow2 disks in the guest list: the chain below each, of LVs below an LV
 * or of files below a file (every layer is snapshotted with the disk), and
 * what a listing shows of the decoded disk (its size, partitions and
 * holes), read from the live origins.
 *
 * Only the domain XML says a disk is qcow2, and only the layer above says
 * what format a backing file is; nothing is probed.  A disk whose image is
 * refused, or whose chain cannot be followed to LVs of its own VG or to
 * files of its directory or a storage pool's (backing-file.c), is shown as
 * its container only, with one line saying why.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "snapfs.h"

/* Live origins open for one decode. */
struct live {
	int fd[SNAPFS_CHAIN_MAX];
	size_t n;
	struct snapfs_rbd *rbd;       /* an RBD disk's image (its only layer) */
	struct snapfs_chain chain;
};

static void live_close(struct live *l)
{
	snapfs_chain_close(&l->chain);
	for (size_t i = 0; i < l->n; i++)
		close(l->fd[i]);
	l->n = 0;
	snapfs_rbd_close(l->rbd);
	l->rbd = NULL;
}

/* An RBD disk's image, live, as the top layer. */
static int open_rbd_layer(struct live *l, const char *guest, const struct snapfs_disk *d,
			  const char *format)
{
	struct snapfs_qcow2_io io;
	char err[512];
	int rc = snapfs_rbd_open(d->rbd, NULL, false, &l->rbd, err, sizeof(err));

	if (rc < 0) {
		snapfs_debug(SNAPFS_DBG_GUESTS, "guest %s disk %s: open %s: %s", guest,
			     d->target, d->path, err);
		return rc;
	}
	io = (struct snapfs_qcow2_io){ .pread = snapfs_rbd_read_cb, .opaque = l->rbd,
				       .size = snapfs_rbd_size(l->rbd), .guest = guest,
				       .disk = d->target };
	return snapfs_chain_push(&l->chain, &io, format);
}

static void refused(const char *guest, const struct snapfs_disk *d, const char *why)
{
	char key[300];

	snprintf(key, sizeof(key), "qcow2 view %s %s", guest, d->target);
	if (snapfs_log_first(key, why))
		snapfs_warn("guest %s disk %s: %s is shown as its container only, not "
			    "decoded: %s",
			    guest, d->target, d->file, why);
}

/* Open the live device of lv (or the file, which must still be the one
 * of dev and ino) as the next layer. */
static int open_layer(struct live *l, const char *guest, const struct snapfs_disk *d,
		      const struct snapfs_lv *lv, const char *file, dev_t dev, ino_t ino,
		      const char *format)
{
	struct snapfs_qcow2_io io;
	char path[300];
	const char *origin = path;
	struct stat st;
	uint64_t size;
	int fd;

	if (d->kind == SNAPFS_ORIGIN_RBD)
		return open_rbd_layer(l, guest, d, format);
	if (!lv)
		origin = file;
	else if (lv->major < 0)
		return -ENXIO; /* not active: nothing to read */
	else if (snapfs_lvm_dm_path(lv->vg, lv->lv, path, sizeof(path)) < 0)
		return -ENAMETOOLONG;
	fd = snapfs_device_open(origin, &size);
	if (fd < 0)
		return fd;
	if (!lv && (fstat(fd, &st) < 0 || st.st_dev != dev || st.st_ino != ino)) {
		close(fd);
		return -ESTALE;
	}
	l->fd[l->n] = fd;
	snapfs_io_fd(&io, &l->fd[l->n], size, guest, d->target);
	l->n++;
	return snapfs_chain_push(&l->chain, &io, format);
}

/* The VG names of lvs, NULL-terminated (at most 64 kept). */
static void vg_names(const struct snapfs_lv_list *lvs, const char *names[65])
{
	size_t n = 0;

	for (size_t i = 0; i < lvs->n && n < 64; i++) {
		size_t k = 0;

		while (k < n && strcmp(names[k], lvs->lv[i].vg))
			k++;
		if (k == n)
			names[n++] = lvs->lv[i].vg;
	}
	names[n] = NULL;
}

/* The file layer name means below the image at path above, into layer
 * (the disk's first layer when above is its own file).  0, or 1 with *why. */
static int file_layer(const struct snapfs_disk *d, const char *above, const char *name,
		      struct snapfs_layer *layer, const char **why)
{
	struct snapfs_fsinfo fs;
	struct stat st;

	if (snapfs_backing_file(above, name, layer->path, sizeof(layer->path), why) < 0)
		return 1;
	if (stat(layer->path, &st) < 0) {
		*why = "its backing file cannot be read";
		return 1;
	}
	layer->dev = st.st_dev;
	layer->ino = st.st_ino;
	layer->lv.major = layer->lv.minor = -1;
	if (st.st_dev == d->dev && st.st_ino == d->ino) {
		*why = "its backing chain is a loop";
		return 1;
	}
	for (size_t k = 0; k < d->nlayers; k++) {
		if (d->layer[k].dev == st.st_dev && d->layer[k].ino == st.st_ino) {
			*why = "its backing chain is a loop";
			return 1;
		}
	}
	/* Each layer is cloned where its filesystem can; else it is read
	 * directly, which only a shut-off guest allows. */
	layer->direct = snapfs_reflink_probe(layer->path, &fs) < 0;
	if (layer->direct && !d->shut_off) {
		*why = "a backing file is on a filesystem that cannot clone, and the guest "
		       "runs (-o snapshot=libvirt serves it through the backup API)";
		return 1;
	}
	return 0;
}

/* Follow the backing names from the top image down, opening each layer.
 * 0, 1 with *why when the chain is refused, -ENOENT for an LV lvs does not
 * hold, or -errno. */
static int follow_chain(struct live *l, const char *guest, struct snapfs_disk *d,
			const struct snapfs_lv_list *lvs, const char **why)
{
	const char *vgs[65];

	vg_names(lvs, vgs);
	for (;;) {
		struct snapfs_qcow2 *q = l->chain.q[l->chain.n - 1];
		const char *name = q ? snapfs_qcow2_backing_name(q) : NULL;
		const char *format = q ? snapfs_qcow2_backing_format(q) : NULL;
		const struct snapfs_lv *lv;
		struct snapfs_layer *grown;
		char lvname[128];
		int rc;

		if (!name)
			return 0;
		if (!format || (strcmp(format, "qcow2") && strcmp(format, "raw"))) {
			*why = "its backing file's format is not recorded as qcow2 or raw "
			       "(qemu-img rebase -F), and formats are never probed";
			return 1;
		}
		if (l->chain.n == SNAPFS_CHAIN_MAX) {
			*why = "its backing chain is deeper than snapfs follows";
			return 1;
		}
		if (d->kind == SNAPFS_ORIGIN_RBD) {
			*why = "it has a backing file, and chains of RBD images are not followed";
			return 1;
		}
		if (d->kind == SNAPFS_ORIGIN_FILE) {
			struct snapfs_layer layer = { 0 };
			const char *above = d->nlayers ? d->layer[d->nlayers - 1].path : d->path;

			rc = file_layer(d, above, name, &layer, why);
			if (rc)
				return rc;
			snprintf(layer.format, sizeof(layer.format), "%s", format);
			grown = reallocarray(d->layer, d->nlayers + 1, sizeof(*grown));
			if (!grown)
				return -ENOMEM;
			d->layer = grown;
			d->layer[d->nlayers++] = layer;
			rc = open_layer(l, guest, d, NULL, layer.path, layer.dev, layer.ino, format);
			if (rc == -EINVAL || rc == -EOPNOTSUPP || rc == -ELOOP || rc == -ESTALE) {
				*why = "a layer of its backing chain is refused (said above)";
				return 1;
			}
			if (rc < 0)
				return rc;
			continue;
		}
		if (snapfs_backing_lv(d->lv.vg, name, vgs, lvname, sizeof(lvname), why) < 0)
			return 1;
		lv = snapfs_lvm_find(lvs, d->lv.vg, lvname);
		if (!lv)
			return -ENOENT;
		for (size_t k = 0; k <= d->nlayers; k++) {
			if (!strcmp(k ? d->layer[k - 1].lv.lv : d->lv.lv, lv->lv)) {
				*why = "its backing chain is a loop";
				return 1;
			}
		}
		if (!lv->is_ordinary) {
			*why = "its backing file is no plain LV (a snapshot, a pool)";
			return 1;
		}
		grown = reallocarray(d->layer, d->nlayers + 1, sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		d->layer = grown;
		d->layer[d->nlayers] = (struct snapfs_layer){ .lv = *lv };
		snprintf(d->layer[d->nlayers].format, sizeof(d->layer[0].format), "%s", format);
		d->nlayers++;
		rc = open_layer(l, guest, d, lv, NULL, 0, 0, format);
		if (rc == -EINVAL || rc == -EOPNOTSUPP || rc == -ELOOP) {
			*why = "a layer of its backing chain is refused (said above)";
			return 1;
		}
		if (rc < 0)
			return rc;
	}
}

/* What listings show of the decoded disk. */
static void measure(struct live *l, const char *guest, struct snapfs_disk *d)
{
	struct snapfs_image im = { .kind = SNAPFS_IMAGE_QCOW2, .chain = &l->chain };
	struct snapfs_qcow2 *top = l->chain.q[0];
	uint64_t end;

	d->view_size = im.size = snapfs_qcow2_virtual_size(top);
	d->cluster_size = snapfs_qcow2_cluster_size(top);
	if (snapfs_qcow2_image_end(top, &end) == 0 && end < d->size)
		d->size = end;
	d->view_allocated = snapfs_image_allocated(&im, 0, im.size);
	snapfs_partitions_read_from(snapfs_chain_read, &l->chain, im.size, d->sector_size,
				    guest, d->target, &d->parts);
	d->whole_pv = !d->parts.n && snapfs_glvs_has_label(snapfs_chain_read, &l->chain, im.size);
	for (size_t p = 0; p < d->parts.n; p++) {
		struct snapfs_partition *part = &d->parts.part[p];

		part->allocated = snapfs_image_allocated(&im, part->start,
							 part->start + part->size);
	}
}

int snapfs_disk_decode_live(const char *guest, struct snapfs_disk *d,
			    const struct snapfs_lv_list *lvs, bool all_lvs, bool listing)
{
	struct live l = { 0 };
	const char *why = NULL;
	int rc;

	free(d->layer);
	d->layer = NULL;
	d->nlayers = 0;
	d->view[0] = '\0';
	if (strcmp(d->format, "qcow2"))
		return 1;
	rc = open_layer(&l, guest, d, d->kind == SNAPFS_ORIGIN_LV ? &d->lv : NULL, d->path, d->dev,
			d->ino, "qcow2");
	if (rc == -EINVAL || rc == -EOPNOTSUPP) {
		why = "its image is refused (said above)";
		rc = 1;
	}
	if (rc == 0)
		rc = follow_chain(&l, guest, d, lvs, &why);
	if (rc == -ENOENT && all_lvs) {
		why = "its backing file is no LV of the image's VG";
		rc = 1;
	}
	if (rc == 0)
		rc = snapfs_chain_link(&l.chain);
	if (rc == 0 && snapfs_name_image(d->target, 0, "raw", d->view, sizeof(d->view)) < 0) {
		why = "its name is too long";
		rc = 1;
	}
	if (rc == 0 && listing)
		measure(&l, guest, d);
	live_close(&l);
	if (rc == 1)
		refused(guest, d, why);
	else if (rc < 0 && rc != -ENOENT)
		snapfs_debug(SNAPFS_DBG_GUESTS, "guest %s disk %s: not decoded: %s", guest,
			     d->target, strerror(-rc));
	if (rc) {
		d->view[0] = '\0';
		free(d->layer);
		d->layer = NULL;
		d->nlayers = 0;
	}
	return rc;
}

/* ---- a live disk as the guest sees it, for listings ----------------------- */

struct snapfs_live {
	struct live l;
	int fd;            /* a raw disk's, or -1 */
	uint64_t size;
};

int snapfs_live_open(const char *guest, const struct snapfs_disk *d, struct snapfs_live **out)
{
	struct snapfs_live *lv = calloc(1, sizeof(*lv));
	char path[300];
	const char *origin = d->path;
	int rc = 0;

	*out = NULL;
	if (!lv)
		return -ENOMEM;
	lv->fd = -1;
	if (d->view[0]) {
		/* Decoded: the chain the listing followed, opened again. */
		rc = open_layer(&lv->l, guest, d, d->kind == SNAPFS_ORIGIN_LV ? &d->lv : NULL,
				d->path, d->dev, d->ino, "qcow2");
		for (size_t k = 0; k < d->nlayers && rc == 0; k++) {
			const struct snapfs_layer *y = &d->layer[k];

			rc = open_layer(&lv->l, guest, d, y->path[0] ? NULL : &y->lv, y->path,
					y->dev, y->ino, y->format);
		}
		if (rc == 0)
			rc = snapfs_chain_link(&lv->l.chain);
		lv->size = d->view_size;
	} else if (snapfs_disk_is_container(d) ||
		   (d->kind == SNAPFS_ORIGIN_BACKUP && !d->live_raw)) {
		rc = -ENOTSUP; /* no guest's view to read live */
	} else if (d->kind == SNAPFS_ORIGIN_RBD) {
		char err[512];

		rc = snapfs_rbd_open(d->rbd, NULL, false, &lv->l.rbd, err, sizeof(err));
		if (rc == 0)
			lv->size = snapfs_rbd_size(lv->l.rbd);
	} else {
		if (d->kind == SNAPFS_ORIGIN_LV &&
		    (d->lv.major < 0 ||
		     snapfs_lvm_dm_path(d->lv.vg, d->lv.lv, path, sizeof(path)) < 0))
			rc = -ENXIO;
		else if (d->kind == SNAPFS_ORIGIN_LV)
			origin = path;
		if (rc == 0) {
			lv->fd = snapfs_device_open(origin, &lv->size);
			rc = lv->fd < 0 ? lv->fd : 0;
		}
	}
	if (rc < 0) {
		snapfs_live_close(lv);
		return rc;
	}
	*out = lv;
	return 0;
}

int snapfs_live_read(void *live, void *buf, size_t len, uint64_t off)
{
	struct snapfs_live *lv = live;
	ssize_t r;

	if (lv->fd < 0 && !lv->l.chain.n && lv->l.rbd)
		return snapfs_rbd_read(lv->l.rbd, buf, len, off);
	if (lv->fd < 0)
		return snapfs_chain_read(&lv->l.chain, buf, len, off);
	r = pread(lv->fd, buf, len, (off_t)off);
	if (r < 0)
		return -errno;
	return (size_t)r == len ? 0 : -EIO;
}

uint64_t snapfs_live_size(const struct snapfs_live *lv)
{
	return lv->size;
}

void snapfs_live_close(struct snapfs_live *lv)
{
	if (!lv)
		return;
	live_close(&lv->l);
	if (lv->fd >= 0)
		close(lv->fd);
	free(lv);
}
