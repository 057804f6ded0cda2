/* qcow2-cat: a qcow2 image's virtual disk as src/qcow2.c decodes it, for
 * decode.test to hold against qemu-img.
 *
 *	qcow2-cat [-b BELOW]... IMAGE            the disk, raw, to stdout
 *	qcow2-cat --map [-b BELOW]... IMAGE      its extents, as JSON lines
 *	qcow2-cat --image-end IMAGE              where the image ends
 *	qcow2-cat --info IMAGE                   what its header says
 *
 * Each -b names the layer below the one before (IMAGE's first): a qcow2
 * image (by its magic) or else a raw one.  --map resolves the chain, as
 * qemu-img map does: one line per extent,
 *	{"start": S, "length": L, "depth": D, "zero": Z, "data": D}
 * depth being the layer that decides (0: IMAGE).  Exit status 0, or 1 with
 * a message.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapfs.h"

#define LAYERS_MAX 16
#define CHUNK (1u << 20)

struct layer {
	const char *path;
	int fd;
	struct snapfs_qcow2_io io;
	struct snapfs_qcow2 *q; /* NULL: a raw layer */
};

static struct layer layer[LAYERS_MAX];
static int nlayers;

static int file_pread(void *opaque, void *buf, size_t len, uint64_t off)
{
	const struct layer *l = opaque;
	char *p = buf;

	while (len) {
		ssize_t n = pread(l->fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENXIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int fail(const char *what, const char *path, int err)
{
	fprintf(stderr, "qcow2-cat: %s %s: %s\n", what, path, strerror(err));
	return 1;
}

static int open_layer(struct layer *l, const char *path, bool qcow2_only)
{
	unsigned char magic[4] = { 0 };
	struct stat st;
	int r;

	l->path = path;
	l->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (l->fd < 0 || fstat(l->fd, &st) < 0)
		return fail("cannot open", path, errno);
	l->io = (struct snapfs_qcow2_io){ file_pread, l, (uint64_t)st.st_size, "test",
					  path };
	if (pread(l->fd, magic, sizeof(magic), 0) < 0)
		return fail("cannot read", path, errno);
	if (!qcow2_only && memcmp(magic, "QFI\xfb", 4))
		return 0;
	r = snapfs_qcow2_open(&l->io, &l->q);
	return r ? fail("cannot decode", path, -r) : 0;
}

static int cat(void)
{
	struct snapfs_qcow2 *q = layer[0].q;
	uint64_t size = snapfs_qcow2_virtual_size(q);
	char *buf = malloc(CHUNK);

	if (!buf)
		return fail("out of memory for", layer[0].path, ENOMEM);
	for (uint64_t off = 0; off < size; off += CHUNK) {
		size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
		int r = snapfs_qcow2_read(q, buf, n, off);

		if (r) {
			free(buf);
			return fail("cannot read", layer[0].path, -r);
		}
		if (fwrite(buf, 1, n, stdout) != n) {
			free(buf);
			return fail("cannot write", "stdout", errno);
		}
	}
	free(buf);
	return fflush(stdout) ? fail("cannot write", "stdout", errno) : 0;
}

/* One line per run of the same depth, zero and data. */
struct line {
	uint64_t start, length;
	int depth;
	bool zero, data;
};

static void flush(struct line *l)
{
	if (l->length)
		printf("{\"start\": %" PRIu64 ", \"length\": %" PRIu64
		       ", \"depth\": %d, \"zero\": %s, \"data\": %s}\n",
		       l->start, l->length, l->depth, l->zero ? "true" : "false",
		       l->data ? "true" : "false");
	l->length = 0;
}

static void emit(struct line *l, uint64_t start, uint64_t length, int depth, bool zero,
		 bool data)
{
	if (l->length && l->start + l->length == start && l->depth == depth &&
	    l->zero == zero && l->data == data) {
		l->length += length;
		return;
	}
	flush(l);
	*l = (struct line){ start, length, depth, zero, data };
}

/* The extents of [off, off + len) as layer i and those below decide. */
static int map(struct line *l, int i, uint64_t off, uint64_t len)
{
	while (len) {
		enum snapfs_extent_kind kind;
		uint64_t n;
		int r;

		if (!layer[i].q) { /* raw: data, as far as it goes */
			emit(l, off, len, i, false, true);
			return 0;
		}
		r = snapfs_qcow2_extent(layer[i].q, off, &n, &kind);
		if (r)
			return fail("cannot map", layer[i].path, -r);
		if (n > len)
			n = len;
		if (kind == SNAPFS_EXTENT_BACKING)
			r = map(l, i + 1, off, n);
		else
			emit(l, off, n, i, kind == SNAPFS_EXTENT_ZERO,
			     kind == SNAPFS_EXTENT_DATA);
		if (r)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

static int image_end(void)
{
	uint64_t end;
	int r = snapfs_qcow2_image_end(layer[0].q, &end);

	if (r)
		return fail("cannot find the end of", layer[0].path, -r);
	printf("%" PRIu64 "\n", end);
	return 0;
}

static int info(void)
{
	struct snapfs_qcow2 *q = layer[0].q;
	const char *name = snapfs_qcow2_backing_name(q);
	const char *format = snapfs_qcow2_backing_format(q);
	uint64_t allocated;
	int r = snapfs_qcow2_allocated(q, &allocated);

	if (r)
		return fail("cannot scan", layer[0].path, -r);
	printf("version %u\ncluster_size %u\nvirtual_size %" PRIu64
	       "\nbacking %s\nbacking_format %s\nallocated %" PRIu64 "\n",
	       snapfs_qcow2_version(q), snapfs_qcow2_cluster_size(q),
	       snapfs_qcow2_virtual_size(q), name ? name : "", format ? format : "",
	       allocated);
	return 0;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: qcow2-cat [--map|--image-end|--info] [-b BELOW]... IMAGE\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *mode = "cat", *below[LAYERS_MAX];
	int nbelow = 0, r = 0, i;

	for (i = 1; i < argc - 1; i++) {
		if (!strcmp(argv[i], "--map") || !strcmp(argv[i], "--image-end") ||
		    !strcmp(argv[i], "--info"))
			mode = argv[i] + 2;
		else if (!strcmp(argv[i], "-b") && i + 1 < argc - 1 &&
			 nbelow < LAYERS_MAX - 1)
			below[nbelow++] = argv[++i];
		else
			return usage();
	}
	if (i != argc - 1 || argv[i][0] == '-')
		return usage();
	snapfs_log_init(false, 0);
	r = open_layer(&layer[nlayers++], argv[i], true);
	for (int b = 0; !r && b < nbelow; b++)
		r = open_layer(&layer[nlayers++], below[b], false);
	for (int l = 0; !r && l + 1 < nlayers; l++) {
		if (!layer[l].q)
			r = fail("a raw layer has nothing below it:", layer[l + 1].path,
				 EINVAL);
		else if (layer[l + 1].q)
			r = -snapfs_qcow2_set_backing(layer[l].q, layer[l + 1].q, NULL);
		else
			r = -snapfs_qcow2_set_backing(layer[l].q, NULL, &layer[l + 1].io);
		if (r > 1)
			r = fail("cannot stack", layer[l + 1].path, r);
	}
	if (!r && !strcmp(mode, "cat"))
		r = cat();
	else if (!r && !strcmp(mode, "map")) {
		struct line l = { 0 };

		r = map(&l, 0, 0, snapfs_qcow2_virtual_size(layer[0].q));
		flush(&l);
	} else if (!r && !strcmp(mode, "image-end"))
		r = image_end();
	else if (!r)
		r = info();
	for (int l = nlayers; l-- > 0;) {
		snapfs_qcow2_close(layer[l].q);
		if (layer[l].fd >= 0)
			close(layer[l].fd);
	}
	return r ? 1 : 0;
}
