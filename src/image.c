/* What a disk or partition file shows, read: a snapshot's bytes, or the
 * disk a chain of qcow2 layers decodes to.  Files, partition tables, holes
 * and st_blocks go through here and do not care which. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "snapfs.h"

/* ---- the bytes of one layer ------------------------------------------------ */

/* Every one of len bytes, from a pread that may return fewer. */
static int read_all(ssize_t (*rd)(const void *src, void *buf, size_t len, uint64_t off),
		    const void *src, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	while (len) {
		ssize_t n = rd(src, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ENODATA;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static ssize_t snapdisk_read_some(const void *d, void *buf, size_t len, uint64_t off)
{
	return snapfs_device_pread(d, buf, len, off);
}

static ssize_t fd_read_some(const void *fd, void *buf, size_t len, uint64_t off)
{
	return pread(*(const int *)fd, buf, len, (off_t)off);
}

static int snapdisk_pread(void *opaque, void *buf, size_t len, uint64_t off)
{
	return read_all(snapdisk_read_some, opaque, buf, len, off);
}

static int fd_pread(void *opaque, void *buf, size_t len, uint64_t off)
{
	return read_all(fd_read_some, opaque, buf, len, off);
}

void snapfs_io_snapdisk(struct snapfs_qcow2_io *io, const struct snapfs_snapdisk *d,
			const char *guest, const char *disk)
{
	*io = (struct snapfs_qcow2_io){ .pread = snapdisk_pread, .opaque = (void *)d,
					.size = d->size, .guest = guest, .disk = disk };
}

void snapfs_io_fd(struct snapfs_qcow2_io *io, int *fd, uint64_t size, const char *guest,
		  const char *disk)
{
	*io = (struct snapfs_qcow2_io){ .pread = fd_pread, .opaque = fd, .size = size,
					.guest = guest, .disk = disk };
}

/* ---- chains ------------------------------------------------------------------ */

int snapfs_chain_push(struct snapfs_chain *c, const struct snapfs_qcow2_io *io,
		      const char *format)
{
	int rc;

	if (c->n == SNAPFS_CHAIN_MAX || (c->n && !c->q[c->n - 1]))
		return -ELOOP;
	c->io[c->n] = *io;
	c->q[c->n] = NULL;
	if (strcmp(format, "raw")) {
		rc = snapfs_qcow2_open(io, &c->q[c->n]);
		if (rc < 0)
			return rc;
	}
	c->n++;
	return 0;
}

int snapfs_chain_link(struct snapfs_chain *c)
{
	if (!c->n || !c->q[0])
		return -EINVAL;
	for (size_t k = c->n - 1; k-- > 0;) {
		bool raw_below = !c->q[k + 1];
		int rc = snapfs_qcow2_set_backing(c->q[k], raw_below ? NULL : c->q[k + 1],
						  raw_below ? &c->io[k + 1] : NULL);

		if (rc < 0)
			return rc;
	}
	return 0;
}

void snapfs_chain_close(struct snapfs_chain *c)
{
	for (size_t k = 0; k < c->n; k++)
		snapfs_qcow2_close(c->q[k]);
	c->n = 0;
}

int snapfs_chain_read(void *chain, void *buf, size_t len, uint64_t off)
{
	struct snapfs_chain *c = chain;

	return snapfs_qcow2_read(c->q[0], buf, len, off);
}

/* At off of the chain's disk: *len bytes that are all data or all holes
 * (*data).  A layer that leaves a range to the one below is asked in turn;
 * a raw layer is data up to its end, zeroes past it. */
static int chain_extent(const struct snapfs_chain *c, uint64_t off, uint64_t *len, bool *data)
{
	uint64_t limit = UINT64_MAX;

	for (size_t k = 0; k < c->n; k++) {
		enum snapfs_extent_kind kind;
		uint64_t n;
		int rc;

		if (!c->q[k]) {
			n = c->io[k].size > off ? c->io[k].size - off : 0;
			*data = n > 0;
			*len = n ? (n < limit ? n : limit) : limit;
			return 0;
		}
		rc = snapfs_qcow2_extent(c->q[k], off, &n, &kind);
		if (rc == -ENXIO && k) { /* past a lower layer's end: zeroes */
			*data = false;
			*len = limit;
			return 0;
		}
		if (rc < 0)
			return rc;
		if (n < limit)
			limit = n;
		if (kind != SNAPFS_EXTENT_BACKING) {
			*data = kind == SNAPFS_EXTENT_DATA;
			*len = limit;
			return 0;
		}
	}
	*data = false; /* a chain whose last layer leaves a range below: none */
	*len = limit;
	return 0;
}

/* ---- images ------------------------------------------------------------------ */

int snapfs_image_read(const struct snapfs_image *im, void *buf, size_t len, uint64_t off)
{
	switch (im->kind) {
	case SNAPFS_IMAGE_DEVICE:
		return snapdisk_pread((void *)im->dev, buf, len, off);
	case SNAPFS_IMAGE_QCOW2:
		return snapfs_chain_read(im->chain, buf, len, off);
	case SNAPFS_IMAGE_NBD:
		return snapfs_nbd_read(im->dev->nbd, buf, len, off);
	case SNAPFS_IMAGE_GUEST_LV:
		return snapfs_glvs_read(im->glvs, im->glv, buf, len, off);
	case SNAPFS_IMAGE_NONE:
		break;
	}
	return -EIO;
}

int snapfs_image_seek(const struct snapfs_image *im, uint64_t off, uint64_t end, int whence,
		      uint64_t *out)
{
	/* An export's holes are the map its block status gave, if any. */
	if (im->kind == SNAPFS_IMAGE_DEVICE || im->kind == SNAPFS_IMAGE_NBD)
		return snapfs_device_seek(im->dev, off, end, whence, out);
	if (im->kind == SNAPFS_IMAGE_GUEST_LV) {
		int rc = snapfs_glvs_seek(im->glvs, im->glv, off, whence, out);

		if (rc == 0 && *out > end)
			*out = end;
		return rc;
	}
	if (im->kind != SNAPFS_IMAGE_QCOW2)
		return -EIO;
	while (off < end) {
		uint64_t len;
		bool data;
		int rc = chain_extent(im->chain, off, &len, &data);

		if (rc < 0)
			return rc;
		if (data == (whence == SEEK_DATA))
			break;
		off = len < end - off ? off + len : end;
	}
	*out = off < end ? off : end;
	return 0;
}

/* A walk over this many extents stops: what is left counts as data. */
#define ALLOCATED_MAX_STEPS (1u << 20)

uint64_t snapfs_image_allocated(const struct snapfs_image *im, uint64_t start, uint64_t end)
{
	uint64_t total = 0, off = start;

	if ((im->kind == SNAPFS_IMAGE_DEVICE || im->kind == SNAPFS_IMAGE_NBD) && im->dev->has_map)
		return snapfs_thinmap_bytes(&im->dev->map, start, end);
	if (im->kind == SNAPFS_IMAGE_DEVICE && im->dev->kind == SNAPFS_ORIGIN_FILE)
		return snapfs_file_allocated(im->dev->fd, start, end);
	if (im->kind != SNAPFS_IMAGE_QCOW2)
		return SNAPFS_ALL_DATA;
	for (unsigned steps = 0; off < end; steps++) {
		uint64_t len;
		bool data;

		if (steps == ALLOCATED_MAX_STEPS || chain_extent(im->chain, off, &len, &data) < 0)
			return total + (end - off);
		if (len > end - off)
			len = end - off;
		if (data)
			total += len;
		off += len;
	}
	return total;
}
