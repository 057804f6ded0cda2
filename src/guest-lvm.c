/* A guest's own LVM2 volumes, read from a snapshot of its disks, so that
 * each of its LVs can be served as a file.  Nothing here trusts the guest:
 * guest-lvm-label.c checks the on-disk headers, lvm-text.c the metadata
 * text, guest-lvm-vg.c the VGs it describes.  Here the copies of each VG's
 * metadata are set against each other:
 *
 *	- the copies (each PV holds up to two) are grouped by VG UUID;
 *	- the highest seqno wins, as in LVM; copies with that seqno must be
 *	  the same text, or the VG is refused ("conflicting copies"): the
 *	  guest could show one reader one VG and another reader another;
 *	- two VGs of one name are both refused, as they would be one file
 *	  tree;
 *
 * and, once built, an LV's bytes are mapped onto the devices.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "snapfs.h"

/* One metadata copy: a text that parsed, from a device. */
struct copy {
	unsigned dev;
	const char *text;
	size_t len;
	char *vg; /* its VG's name */
	char uuid[33];
	uint64_t seqno;
};

static void free_copies(struct copy *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(c[i].vg);
	free(c);
}

/* By VG UUID, then newest first. */
static int cmp_copy(const void *a, const void *b)
{
	const struct copy *x = a, *y = b;
	int c = strcmp(x->uuid, y->uuid);

	if (c)
		return c;
	return x->seqno > y->seqno ? -1 : x->seqno < y->seqno;
}

/* Parse a text and find its VG: 0, -EINVAL with why, -ENOMEM.  The caller
 * frees *root in any case. */
static int parse(const char *text, size_t len, struct snapfs_lvmt_node **root,
		 const struct snapfs_lvmt_node **vgsec, uint64_t *seqno, char uuid[33],
		 char *why, size_t wlen)
{
	const char *what;
	int r = snapfs_lvmt_parse(text, len, root, why, wlen);

	if (r)
		return r;
	r = snapfs_glvm_vg_identify(*root, vgsec, seqno, uuid, &what);
	if (r)
		snprintf(why, wlen, "%s", what);
	return r;
}

/* Parse every text pv holds (of device dev), for what it says of itself,
 * into c[*n...].  The trees are not kept: a hostile guest's copies could
 * be many, and only the newest of each VG is built (parsed again). */
static int add_copies(const char *guest, const struct snapfs_glvm_dev *d, unsigned dev,
		      const struct snapfs_glvm_pv *pv, struct copy *c, size_t *n)
{
	for (unsigned i = 0; i < pv->ntexts; i++) {
		struct copy *cp = &c[*n];
		struct snapfs_lvmt_node *root = NULL;
		const struct snapfs_lvmt_node *vgsec;
		char msg[192];
		int r;

		memset(cp, 0, sizeof(*cp));
		r = parse(pv->text[i], pv->text_len[i], &root, &vgsec, &cp->seqno,
			  cp->uuid, msg, sizeof(msg));
		if (!r) {
			cp->vg = strdup(vgsec->key);
			r = cp->vg ? 0 : -ENOMEM;
		}
		snapfs_lvmt_free(root);
		if (r == -ENOMEM)
			return r;
		if (r) {
			snapfs_warn("guest %s, disk %s: metadata copy %u refused: %s",
				    guest, d->name, i + 1, msg);
			continue;
		}
		cp->dev = dev;
		cp->text = pv->text[i];
		cp->len = pv->text_len[i];
		(*n)++;
	}
	return 0;
}

static int refuse_vg(const char *guest, struct snapfs_glvm_vg *vg, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* fmt NULL: vg->reason says why already. */
static int refuse_vg(const char *guest, struct snapfs_glvm_vg *vg, const char *fmt, ...)
{
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(vg->reason, sizeof(vg->reason), fmt, ap);
		va_end(ap);
	}
	vg->served = false;
	snapfs_warn("guest %s, VG %s: refused: %s", guest, vg->name, vg->reason);
	return 0;
}

/* The VG of the copies c[0..n) (one UUID, newest first). */
static int build_vg(const char *guest, const struct snapfs_glvm_pvs *pvs,
		    const struct copy *c, size_t n, struct snapfs_glvm_vg *vg)
{
	struct snapfs_lvmt_node *root = NULL;
	const struct snapfs_lvmt_node *vgsec;
	char uuid[33];
	uint64_t seqno;
	int r;

	vg->name = strdup(c->vg);
	if (!vg->name)
		return -ENOMEM;
	memcpy(vg->uuid, c->uuid, sizeof(vg->uuid));
	vg->seqno = c->seqno;
	for (size_t i = 1; i < n && c[i].seqno == c->seqno; i++)
		if (c[i].len != c->len || memcmp(c[i].text, c->text, c->len))
			return refuse_vg(guest, vg,
					 "conflicting copies with seqno %" PRIu64
					 " (on %s and %s)",
					 c->seqno, pvs->dev[c->dev].name,
					 pvs->dev[c[i].dev].name);
	/* As parsed before: the same text says the same. */
	r = parse(c->text, c->len, &root, &vgsec, &seqno, uuid, vg->reason,
		  sizeof(vg->reason));
	if (!r)
		r = snapfs_glvm_vg_build(guest, vgsec, pvs, vg);
	snapfs_lvmt_free(root);
	if (r == -EINVAL)
		return refuse_vg(guest, vg, NULL);
	return r;
}

/* Does another VG (another UUID) than that of c[i] have its name?  Groups
 * of copies begin where the UUID changes; each one's first is its newest. */
static bool namesake(const struct copy *c, size_t n, size_t i)
{
	for (size_t j = 0; j < n; j++) {
		if (j && !strcmp(c[j].uuid, c[j - 1].uuid))
			continue;
		if (strcmp(c[j].uuid, c[i].uuid) && !strcmp(c[j].vg, c[i].vg))
			return true;
	}
	return false;
}

/* The VGs of the copies c (sorted), into g. */
static int build_vgs(const char *guest, const struct snapfs_glvm_pvs *pvs, struct copy *c,
		     size_t nc, struct snapfs_glvm *g)
{
	g->vg = calloc(nc ? nc : 1, sizeof(*g->vg));
	if (!g->vg)
		return -ENOMEM;
	for (size_t i = 0, n; i < nc; i += n) {
		struct snapfs_glvm_vg *vg = &g->vg[g->nvgs++];
		int r;

		for (n = 1; i + n < nc && !strcmp(c[i + n].uuid, c[i].uuid); n++)
			;
		if (!namesake(c, nc, i)) {
			r = build_vg(guest, pvs, c + i, n, vg);
		} else {
			vg->name = strdup(c[i].vg);
			memcpy(vg->uuid, c[i].uuid, sizeof(vg->uuid));
			vg->seqno = c[i].seqno;
			r = vg->name ? refuse_vg(guest, vg, "another VG has its name")
				     : -ENOMEM;
		}
		if (r)
			return r;
	}
	return 0;
}

int snapfs_glvm_scan(const char *guest, const struct snapfs_glvm_dev *dev, size_t ndevs,
		     struct snapfs_glvm **out)
{
	struct snapfs_glvm_pv *pv = NULL;
	struct snapfs_glvm *g = NULL;
	struct copy *c = NULL;
	size_t nc = 0;
	int r = -ENOMEM;

	*out = NULL;
	if (ndevs > SNAPFS_GLVM_DEVS_MAX)
		return -EINVAL;
	g = calloc(1, sizeof(*g));
	pv = calloc(ndevs + 1, sizeof(*pv));
	c = calloc(2 * ndevs + 1, sizeof(*c));
	if (!g || !pv || !c)
		goto out;
	for (size_t i = 0, total = 0; i < ndevs; i++) {
		r = snapfs_glvm_pv_read(guest, &dev[i], &pv[i]);
		if (r == -ENOMEM)
			goto out;
		for (unsigned t = 0; t < pv[i].ntexts; t++)
			total += pv[i].text_len[t];
		if (total > SNAPFS_GLVM_TEXTS_MAX) { /* the PV is one all the same */
			snapfs_warn(
				"guest %s, disk %s: metadata not read: over %u MiB of "
				"metadata in all",
				guest, dev[i].name, SNAPFS_GLVM_TEXTS_MAX >> 20);
			while (pv[i].ntexts)
				free(pv[i].text[--pv[i].ntexts]);
		}
		r = add_copies(guest, &dev[i], (unsigned)i, &pv[i], c, &nc);
		if (r)
			goto out;
	}
	qsort(c, nc, sizeof(*c), cmp_copy);
	r = build_vgs(guest, &(struct snapfs_glvm_pvs){ dev, pv, ndevs }, c, nc, g);
out:
	free_copies(c, nc);
	for (size_t i = 0; pv && i < ndevs; i++)
		snapfs_glvm_pv_free(&pv[i]);
	free(pv);
	if (r) {
		snapfs_glvm_free(g);
		return r;
	}
	*out = g;
	return 0;
}

int snapfs_glvm_map(const struct snapfs_glvm_lv *lv, uint64_t off, unsigned *dev,
		    uint64_t *dev_off, uint64_t *len)
{
	const struct snapfs_glvm_seg *s;
	size_t lo = 0, hi;
	uint64_t in;

	if (!lv->served)
		return -EOPNOTSUPP;
	if (off >= lv->size)
		return -ENXIO;
	hi = lv->nsegs; /* the last segment that starts at or before off */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (lv->seg[mid].start <= off)
			lo = mid;
		else
			hi = mid;
	}
	s = &lv->seg[lo];
	in = off - s->start;
	if (s->nstripes == 1) {
		*dev = s->area[0].dev;
		*dev_off = s->area[0].start + in;
		*len = s->len - in;
	} else {
		uint64_t chunk = in / s->stripe_size, within = in % s->stripe_size;
		const struct snapfs_glvm_area *a = &s->area[chunk % s->nstripes];

		*dev = a->dev;
		*dev_off = a->start + chunk / s->nstripes * s->stripe_size + within;
		*len = s->stripe_size - within;
	}
	return 0;
}

void snapfs_glvm_free(struct snapfs_glvm *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->nvgs; i++)
		snapfs_glvm_vg_free(&g->vg[i]);
	free(g->vg);
	free(g);
}
