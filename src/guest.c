/* The guests and their disks, as the sources fill them and the catalog
 * and the snapshot sets read them: naming, adding disks, finding a file. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "snapfs.h"

void snapfs_guests_free(struct snapfs_guest *g, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t d = 0; d < g[i].ndisks; d++) {
			snapfs_partitions_free(&g[i].disk[d].parts);
			free(g[i].disk[d].path);
			free(g[i].disk[d].layer);
			snapfs_rbd_spec_free(g[i].disk[d].rbd);
		}
		free(g[i].disk);
		snapfs_glvs_free(g[i].glvs);
		free(g[i].name);
		free(g[i].key);
		free(g[i].xml);
	}
	free(g);
}

static int cmp_dir(const void *a, const void *b)
{
	const struct snapfs_guest *x = a, *y = b;
	int c = strcmp(x->dir, y->dir);

	return c ? c : strcmp(x->key, y->key);
}

void snapfs_guests_name(struct snapfs_guest *g, size_t n)
{
	for (size_t i = 0; i < n; i++)
		snapfs_name_escape(g[i].name, g[i].dir);
	qsort(g, n, sizeof(*g), cmp_dir);
	/* Escaping is one-to-one; names can still meet when cut for length or
	 * when two VGs hold LVs of one name.  Every member of a clash gets a
	 * suffix from its stable identity. */
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;

		while (j < n && !strcmp(g[i].dir, g[j].dir))
			j++;
		if (j - i > 1) {
			for (size_t k = i; k < j; k++) {
				uint64_t h = snapfs_name_hash(g[k].key, strlen(g[k].key));
				size_t len = strlen(g[k].dir);

				if (len > SNAPFS_NAME_MAX - 9)
					len = SNAPFS_NAME_MAX - 9;
				snprintf(g[k].dir + len, SNAPFS_NAME_MAX + 1 - len, "~%08x",
					 (unsigned)(h >> 32));
			}
			snapfs_warn("%zu guests share the directory name %.*s; each got a suffix",
				    j - i, (int)strcspn(g[i].dir, "~"), g[i].dir);
		}
		i = j;
	}
	qsort(g, n, sizeof(*g), cmp_dir);
}

static bool file_taken(const struct snapfs_guest *g, const char *file)
{
	unsigned partno;

	return !strcmp(file, "domain.xml") || snapfs_guest_disk(g, file, &partno) != NULL;
}

/* Named and appended to g: 0, or -ENOMEM (d is then g's no more than
 * before: the caller frees what d holds). */
static int add_disk(struct snapfs_guest *g, struct snapfs_disk *d, const char *target,
		    const char *format, unsigned sector_size)
{
	struct snapfs_disk *nd;

	snprintf(d->target, sizeof(d->target), "%s", target);
	snprintf(d->format, sizeof(d->format), "%s", format);
	snprintf(d->ext, sizeof(d->ext), "%s", format);
	d->sector_size = sector_size;
	if (snapfs_name_image(target, 0, d->ext, d->file, sizeof(d->file)) < 0 ||
	    file_taken(g, d->file)) {
		char shown[SNAPFS_NAME_MAX + 1];

		snapfs_name_escape(g->name, shown);
		snapfs_warn("guest %s: disk %s clashes with another file name; left out",
			    shown, target);
		free(d->path);
		snapfs_rbd_spec_free(d->rbd);
		return 0;
	}
	nd = realloc(g->disk, (g->ndisks + 1) * sizeof(*nd));
	if (!nd) {
		free(d->path);
		snapfs_rbd_spec_free(d->rbd);
		return -ENOMEM;
	}
	g->disk = nd;
	g->disk[g->ndisks++] = *d;
	return 0;
}

int snapfs_guest_add_disk(struct snapfs_guest *g, const struct snapfs_lv *lv,
			  const char *target, const char *format, unsigned sector_size)
{
	struct snapfs_disk d;

	memset(&d, 0, sizeof(d));
	d.kind = SNAPFS_ORIGIN_LV;
	d.lv = *lv;
	d.size = lv->size;
	d.allocated = SNAPFS_ALL_DATA;
	return add_disk(g, &d, target, format, sector_size);
}

int snapfs_guest_add_backup_disk(struct snapfs_guest *g, const char *source, uint64_t size,
				 bool live_raw, const char *target, unsigned sector_size)
{
	struct snapfs_disk d;

	memset(&d, 0, sizeof(d));
	d.kind = SNAPFS_ORIGIN_BACKUP;
	d.lv.major = d.lv.minor = -1;
	d.size = size;
	d.allocated = SNAPFS_ALL_DATA;
	d.live_raw = live_raw;
	if (!(d.path = strdup(source)))
		return -ENOMEM;
	/* qemu reads the image: the file is the disk as the guest sees it. */
	return add_disk(g, &d, target, "raw", sector_size);
}

int snapfs_guest_add_rbd_disk(struct snapfs_guest *g, const struct snapfs_rbd_spec *spec,
			      uint64_t size, const char *target, const char *format,
			      unsigned sector_size)
{
	char name[300];
	struct snapfs_disk d;

	memset(&d, 0, sizeof(d));
	d.kind = SNAPFS_ORIGIN_RBD;
	d.lv.major = d.lv.minor = -1;
	d.size = size;
	d.allocated = SNAPFS_ALL_DATA;
	snapfs_rbd_name(spec, name, sizeof(name));
	d.rbd = malloc(sizeof(*d.rbd));
	d.path = strdup(name);
	if (!d.rbd || !d.path) {
		free(d.rbd);
		free(d.path);
		return -ENOMEM;
	}
	*d.rbd = *spec;
	return add_disk(g, &d, target, format, sector_size);
}

void snapfs_rbd_spec_free(struct snapfs_rbd_spec *spec)
{
	if (!spec)
		return;
	explicit_bzero(spec->key, sizeof(spec->key));
	free(spec);
}

int snapfs_guest_add_file_disk(struct snapfs_guest *g, const char *path,
			       const struct stat *st, const char *target, const char *format,
			       unsigned sector_size, bool direct)
{
	struct snapfs_disk d;

	memset(&d, 0, sizeof(d));
	d.kind = SNAPFS_ORIGIN_FILE;
	d.direct = direct;
	d.shut_off = !g->running;
	d.lv.major = d.lv.minor = -1;
	d.dev = st->st_dev;
	d.ino = st->st_ino;
	d.size = (uint64_t)st->st_size;
	d.allocated = (uint64_t)st->st_blocks * 512 < d.size ? (uint64_t)st->st_blocks * 512
							     : d.size;
	if (!(d.path = strdup(path)))
		return -ENOMEM;
	return add_disk(g, &d, target, format, sector_size);
}

const struct snapfs_disk *snapfs_guest_disk(const struct snapfs_guest *g, const char *file,
					    unsigned *partno)
{
	char name[SNAPFS_NAME_MAX + 1];

	for (size_t i = 0; i < g->ndisks; i++) {
		const struct snapfs_disk *d = &g->disk[i];

		if (!strcmp(d->file, file)) {
			*partno = snapfs_disk_is_container(d) ? SNAPFS_CONTAINER : 0;
			return d;
		}
		if (d->view[0] && !strcmp(d->view, file)) {
			*partno = 0;
			return d;
		}
		for (size_t p = 0; p < d->parts.n; p++) {
			if (snapfs_name_image(d->target, d->parts.part[p].number, "raw", name,
					      sizeof(name)) == 0 &&
			    !strcmp(name, file)) {
				*partno = d->parts.part[p].number;
				return d;
			}
		}
	}
	return NULL;
}

bool snapfs_disk_is_container(const struct snapfs_disk *d)
{
	return strcmp(d->format, "raw") != 0;
}

/* The mechanisms, in the order a set takes its disks. */
const struct snapfs_mechanism *const snapfs_mechanisms[] = {
	&snapfs_mech_lvm,
	&snapfs_mech_reflink,
	&snapfs_mech_direct,
	&snapfs_mech_libvirt,
	&snapfs_mech_rbd,
	NULL,
};

const struct snapfs_mechanism *const *snapfs_mechanism_list(void)
{
	return snapfs_mechanisms;
}

const struct snapfs_mechanism *snapfs_mechanism_of(enum snapfs_origin_kind kind, bool direct)
{
	switch (kind) {
	case SNAPFS_ORIGIN_LV:
		return &snapfs_mech_lvm;
	case SNAPFS_ORIGIN_FILE:
		return direct ? &snapfs_mech_direct : &snapfs_mech_reflink;
	case SNAPFS_ORIGIN_RBD:
		return &snapfs_mech_rbd;
	case SNAPFS_ORIGIN_BACKUP:
		break;
	}
	return &snapfs_mech_libvirt;
}
