/* A guest's own LVs as files: which of its disks and partitions are PVs,
 * the VGs guest-lvm.c reads from them, and the bytes of each served LV,
 * read through the disks beneath (a snapshot set's images, or, for a
 * listing, the live origins).
 *
 * A PV candidate is a partition libblkid calls LVM2_member, or a whole
 * disk with no partition table that it calls so.  Names are shown as
 * snapfs_name_escape makes them, so that no VG or LV name, whatever the
 * guest wrote, can leave its directory.
 *
 * Read-only once made: any thread may read an LV of it.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "snapfs.h"

#define PV_FSTYPE "LVM2_member"

struct place {
	const struct snapfs_gdisk *disk; /* NULL once its readers are gone */
	int (*read)(void *ctx, void *buf, size_t len, uint64_t off);
	void *ctx;
	const struct snapfs_image *im;
	uint64_t start, size;
	char name[SNAPFS_NAME_MAX + 1];
};

/* A read of [off, off + len) of one place, as a glvm device. */
static int place_read(void *ctx, void *buf, size_t len, uint64_t off)
{
	const struct place *p = ctx;

	if (!p->read || off > p->size || len > p->size - off)
		return -EIO;
	return p->read(p->ctx, buf, len, p->start + off);
}

static int add_place(struct place **pl, size_t *n, const struct snapfs_gdisk *d,
		     uint64_t start, uint64_t size, unsigned partno)
{
	struct place *grown;

	if (*n == SNAPFS_GLVM_DEVS_MAX)
		return 0;
	grown = realloc(*pl, (*n + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	*pl = grown;
	grown[*n] = (struct place){ .disk = d, .read = d->read, .ctx = d->ctx, .im = d->im,
				    .start = start, .size = size };
	/* "vda2.raw", as the guest's files are named, for log lines */
	snapfs_name_image(d->target, partno, "raw", grown[*n].name, sizeof(grown[*n].name));
	(*n)++;
	return 0;
}

bool snapfs_glvs_has_label(int (*read)(void *ctx, void *buf, size_t len, uint64_t off),
			   void *ctx, uint64_t size)
{
	unsigned char head[2048];

	if (size < sizeof(head) || read(ctx, head, sizeof(head), 0) < 0)
		return false;
	for (size_t s = 0; s < sizeof(head); s += 512)
		if (!memcmp(head + s, "LABELONE", 8) && !memcmp(head + s + 24, "LVM2 001", 8))
			return true;
	return false;
}

static bool has_lvm_label(const struct snapfs_gdisk *d)
{
	return snapfs_glvs_has_label(d->read, d->ctx, d->size);
}

bool snapfs_glvs_candidate(const struct snapfs_disk *d)
{
	for (size_t p = 0; p < d->parts.n; p++)
		if (!strcmp(d->parts.part[p].fstype, PV_FSTYPE))
			return true;
	return d->whole_pv;
}

/* The PV candidates of disks. */
static int find_pvs(const char *guest, const struct snapfs_gdisk *disks, size_t n,
		    struct place **pl, size_t *np)
{
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		const struct snapfs_gdisk *d = &disks[i];

		if (d->parts && d->parts->n) {
			for (size_t p = 0; p < d->parts->n && rc == 0; p++) {
				const struct snapfs_partition *part = &d->parts->part[p];

				if (!strcmp(part->fstype, PV_FSTYPE))
					rc = add_place(pl, np, d, part->start, part->size,
						       part->number);
			}
		} else if (d->read && has_lvm_label(d)) {
			rc = add_place(pl, np, d, 0, d->size, 0);
		}
	}
	return rc;
}

struct lv_read {
	const struct snapfs_glvs *g;
	const struct snapfs_glvm_lv *lv;
};

static int lv_read_cb(void *ctx, void *buf, size_t len, uint64_t off)
{
	const struct lv_read *r = ctx;

	return snapfs_glvs_read(r->g, r->lv, buf, len, off);
}

/* The ids of the LVs of the VG of uuid and seqno in prev (the same
 * metadata: the same LVs, in the same order), or NULL. */
static const struct snapfs_partition *known_ids(const struct snapfs_glvs *prev,
						const struct snapfs_glvm_vg *vg)
{
	size_t k = 0;

	for (size_t v = 0; prev && v < prev->glvm->nvgs; k += prev->glvm->vg[v].nlvs, v++) {
		const struct snapfs_glvm_vg *p = &prev->glvm->vg[v];

		if (!strcmp(p->uuid, vg->uuid) && p->seqno == vg->seqno && p->nlvs == vg->nlvs)
			return &prev->id[k];
	}
	return NULL;
}

/* What each served LV holds, for its attributes: libblkid reads its edges,
 * so what prev (an earlier reading) knew of the same metadata is kept. */
static void identify_lvs(const char *guest, struct snapfs_glvs *g,
			 const struct snapfs_glvs *prev)
{
	size_t k = 0;

	for (size_t v = 0; v < g->glvm->nvgs; v++) {
		const struct snapfs_glvm_vg *vg = &g->glvm->vg[v];
		const struct snapfs_partition *known = known_ids(prev, vg);

		if (known) {
			memcpy(&g->id[k], known, vg->nlvs * sizeof(*known));
			k += vg->nlvs;
			continue;
		}
		for (size_t l = 0; l < vg->nlvs; l++, k++) {
			struct lv_read r = { g, &vg->lv[l] };
			char what[300];

			if (!vg->lv[l].served)
				continue;
			snprintf(what, sizeof(what), "LV %s/%s", vg->name, vg->lv[l].name);
			snapfs_identify_from(lv_read_cb, &r, vg->lv[l].size, guest, what, &g->id[k]);
		}
	}
}

int snapfs_glvs_scan(const char *guest, const struct snapfs_gdisk *disks, size_t n,
		     bool identify, const struct snapfs_glvs *prev, struct snapfs_glvs **out)
{
	struct place *pl = NULL;
	struct snapfs_glvm_dev *devs = NULL;
	struct snapfs_glvs *g = NULL;
	size_t np = 0, nlvs = 0;
	int rc;

	*out = NULL;
	rc = find_pvs(guest, disks, n, &pl, &np);
	if (rc < 0 || np == 0)
		goto out;
	rc = -ENOMEM;
	devs = calloc(np, sizeof(*devs));
	g = calloc(1, sizeof(*g));
	if (!devs || !g)
		goto out;
	for (size_t i = 0; i < np; i++)
		devs[i] = (struct snapfs_glvm_dev){ .read = place_read, .ctx = &pl[i],
						    .size = pl[i].size, .name = pl[i].name };
	rc = snapfs_glvm_scan(guest, devs, np, &g->glvm);
	if (rc < 0)
		goto out;
	for (size_t v = 0; v < g->glvm->nvgs; v++)
		nlvs += g->glvm->vg[v].nlvs;
	rc = -ENOMEM;
	g->id = calloc(nlvs ? nlvs : 1, sizeof(*g->id));
	if (!g->id)
		goto out;
	g->place = pl;
	g->nplaces = np;
	pl = NULL;
	if (identify)
		identify_lvs(guest, g, prev);
	*out = g;
	g = NULL;
	rc = 0;
out:
	free(devs);
	free(pl);
	snapfs_glvs_free(g);
	return rc;
}

void snapfs_glvs_forget_disks(struct snapfs_glvs *g)
{
	for (size_t i = 0; g && i < g->nplaces; i++) {
		struct place *p = &((struct place *)g->place)[i];

		p->read = NULL;
		p->ctx = NULL;
		p->im = NULL;
	}
}

void snapfs_glvs_free(struct snapfs_glvs *g)
{
	if (!g)
		return;
	snapfs_glvm_free(g->glvm);
	free(g->place);
	free(g->id);
	free(g);
}

/* The byte runs of lv at [off, off + len): calls each for every piece, in
 * order.  0, or what a piece returned. */
static int each_piece(const struct snapfs_glvs *g, const struct snapfs_glvm_lv *lv,
		      uint64_t off, uint64_t len,
		      int (*piece)(const struct place *p, uint64_t at, uint64_t n, void *arg),
		      void *arg)
{
	const struct place *pl = g->place;

	while (len) {
		unsigned dev;
		uint64_t at, run;
		int rc = snapfs_glvm_map(lv, off, &dev, &at, &run);

		if (rc < 0)
			return rc == -ENXIO ? -EIO : rc;
		if (dev >= g->nplaces)
			return -EIO;
		if (run > len)
			run = len;
		rc = piece(&pl[dev], at, run, arg);
		if (rc)
			return rc;
		off += run;
		len -= run;
	}
	return 0;
}

static int read_piece(const struct place *p, uint64_t at, uint64_t n, void *arg)
{
	char **buf = arg;
	int rc;

	if (!p->read || at > p->size || n > p->size - at)
		return -EIO;
	rc = p->read(p->ctx, *buf, (size_t)n, p->start + at);
	*buf += n;
	return rc;
}

int snapfs_glvs_read(const struct snapfs_glvs *g, const struct snapfs_glvm_lv *lv, void *buf,
		     size_t len, uint64_t off)
{
	char *at = buf;

	if (off > lv->size || len > lv->size - off)
		return -EIO;
	return each_piece(g, lv, off, len, read_piece, &at);
}

struct seek {
	int whence;
	uint64_t lv_off;   /* the LV offset of the piece's start */
	uint64_t found;    /* LV offset found, or UINT64_MAX */
};

static int seek_piece(const struct place *p, uint64_t at, uint64_t n, void *arg)
{
	struct seek *s = arg;
	uint64_t where;

	if (!p->im)
		where = s->whence == SEEK_DATA ? p->start + at : p->start + at + n;
	else if (snapfs_image_seek(p->im, p->start + at, p->start + at + n, s->whence, &where) < 0)
		return -EIO;
	if (where < p->start + at + n) {
		s->found = s->lv_off + (where - p->start - at);
		return 1; /* stop: found */
	}
	s->lv_off += n;
	return 0;
}

int snapfs_glvs_seek(const struct snapfs_glvs *g, const struct snapfs_glvm_lv *lv,
		     uint64_t off, int whence, uint64_t *out)
{
	struct seek s = { whence, off, UINT64_MAX };
	int rc;

	if (off >= lv->size) {
		*out = lv->size;
		return 0;
	}
	rc = each_piece(g, lv, off, lv->size - off, seek_piece, &s);
	if (rc < 0)
		return rc;
	*out = s.found == UINT64_MAX ? lv->size : s.found;
	return 0;
}

/* The VG of g whose shown name is vg, or NULL. */
const struct snapfs_glvm_vg *snapfs_glvs_vg(const struct snapfs_glvs *g, const char *vg)
{
	char shown[SNAPFS_NAME_MAX + 1];

	for (size_t v = 0; g && g->glvm && v < g->glvm->nvgs; v++) {
		snapfs_name_escape(g->glvm->vg[v].name, shown);
		if (g->glvm->vg[v].served && !strcmp(shown, vg))
			return &g->glvm->vg[v];
	}
	return NULL;
}

const struct snapfs_glvm_lv *snapfs_glvs_lv(const struct snapfs_glvs *g, const char *vg,
					    const char *lv, const struct snapfs_partition **id)
{
	const struct snapfs_glvm_vg *v = snapfs_glvs_vg(g, vg);
	char shown[SNAPFS_NAME_MAX + 1];
	size_t k = 0;

	if (!v)
		return NULL;
	for (const struct snapfs_glvm_vg *w = g->glvm->vg; w < v; w++)
		k += w->nlvs;
	for (size_t l = 0; l < v->nlvs; l++, k++) {
		snapfs_name_escape(v->lv[l].name, shown);
		if (v->lv[l].served && !strcmp(shown, lv)) {
			if (id)
				*id = &g->id[k];
			return &v->lv[l];
		}
	}
	return NULL;
}
