/* One guest VG, built from its metadata text (lvm-text.c's tree): its PVs
 * matched to the guest's devices by UUID, its visible LVs and their
 * segments, every extent checked against its PV and its device.
 *
 * Units in the text: extent_size, pe_start, stripe_size in 512-byte
 * sectors; start_extent, extent_count and a stripe's first PE in extents.
 * Everything is turned into bytes here, each product checked.
 *
 * Only "striped" segments (stripe_count 1 is linear) are served.  An LV
 * made of anything else, one a snapshot keeps its COW data in, one on a
 * PV the guest lacks, or one whose segments do not tile it from 0, is
 * listed but not served, with the reason; LVs that are not VISIBLE (pool
 * data and metadata, RAID images, snapshotN) are not listed at all.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "snapfs.h"

#define SECTOR 512u
#define EXTENT_SECTORS_MAX (1ull << 32)

struct vg_pv {
	const char *key; /* "pv0", as stripes name it */
	char uuid[33];
	int dev;	     /* -1: no device */
	const char *missing; /* why the PV cannot be read, or NULL */
	uint64_t pe_start;   /* bytes */
	uint64_t pe_count;
};

struct builder {
	const char *guest;
	const struct snapfs_glvm_pvs *pvs;
	struct snapfs_glvm_vg *vg;
	uint64_t extent; /* bytes */
	struct vg_pv *pv;
	size_t npvs;
	const struct snapfs_lvmt_node *lvs; /* the logical_volumes section, or NULL */
	struct cow *cow;		    /* the snapshots, sorted by COW store */
	size_t ncows;
};

static int say(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int say(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int get_int(const struct snapfs_lvmt_node *sec, const char *key, uint64_t min,
		   uint64_t max, uint64_t *out)
{
	const struct snapfs_lvmt_node *n;
	int r = snapfs_lvmt_find(sec, key, SNAPFS_LVMT_INT, &n);

	if (r)
		return r;
	if ((uint64_t)n->num < min || (uint64_t)n->num > max)
		return -ERANGE;
	*out = (uint64_t)n->num;
	return 0;
}

static const char *get_str(const struct snapfs_lvmt_node *sec, const char *key)
{
	const struct snapfs_lvmt_node *n;

	return snapfs_lvmt_find(sec, key, SNAPFS_LVMT_STRING, &n) ? NULL : n->str;
}

/* An LVM ID as the text writes it (dashes between groups): 0 with the 32
 * characters in out. */
static int get_uuid(const struct snapfs_lvmt_node *sec, char out[33])
{
	const char *s = get_str(sec, "id");
	size_t n = 0;

	if (!s || strlen(s) > 38)
		return -EINVAL;
	for (; *s; s++)
		if (*s != '-')
			out[n++] = *s;
	out[n] = '\0';
	return snapfs_glvm_uuid_ok(out, n) ? 0 : -EINVAL;
}

/* Is every string of the array sec.key one of known (NULL-terminated)?
 * *bad gets the first that is not; an absent array is empty. */
static bool flags_known(const struct snapfs_lvmt_node *sec, const char *key,
			const char *const *known, const char **bad)
{
	const struct snapfs_lvmt_node *a;
	int r = snapfs_lvmt_find(sec, key, SNAPFS_LVMT_ARRAY, &a);

	*bad = "(not an array of strings)";
	if (r)
		return r == -ENOENT;
	for (const struct snapfs_lvmt_node *e = a->child; e; e = e->next) {
		const char *const *k = known;

		if (e->kind != SNAPFS_LVMT_STRING)
			return false;
		while (*k && strcmp(*k, e->str))
			k++;
		if (!*k) {
			*bad = e->str;
			return false;
		}
	}
	return true;
}

static bool has_flag(const struct snapfs_lvmt_node *sec, const char *key,
		     const char *flag)
{
	const struct snapfs_lvmt_node *a;

	if (snapfs_lvmt_find(sec, key, SNAPFS_LVMT_ARRAY, &a))
		return false;
	for (const struct snapfs_lvmt_node *e = a->child; e; e = e->next)
		if (e->kind == SNAPFS_LVMT_STRING && !strcmp(e->str, flag))
			return true;
	return false;
}

/* A VG or LV name as LVM allows it (the text's keys have its characters). */
static bool name_ok(const char *s)
{
	return s && *s && *s != '-' && strcmp(s, ".") && strcmp(s, "..");
}

int snapfs_glvm_vg_identify(const struct snapfs_lvmt_node *root,
			    const struct snapfs_lvmt_node **vgsec, uint64_t *seqno,
			    char uuid[33], const char **why)
{
	const char *contents = get_str(root, "contents");
	const struct snapfs_lvmt_node *format;
	uint64_t version;

	*vgsec = NULL;
	if (!contents || strcmp(contents, "Text Format Volume Group") ||
	    get_int(root, "version", 1, 1, &version)) {
		*why = "not LVM2 text format version 1";
		return -EINVAL;
	}
	for (const struct snapfs_lvmt_node *n = root->child; n; n = n->next) {
		if (n->kind != SNAPFS_LVMT_SECTION)
			continue;
		if (*vgsec) {
			*why = "more than one VG in one metadata copy";
			return -EINVAL;
		}
		*vgsec = n;
	}
	if (!*vgsec || !name_ok((*vgsec)->key)) {
		*why = "no VG, or a VG name LVM does not allow";
		return -EINVAL;
	}
	if (get_uuid(*vgsec, uuid) || get_int(*vgsec, "seqno", 0, INT64_MAX, seqno)) {
		*why = "VG id or seqno missing or malformed";
		return -EINVAL;
	}
	if (!snapfs_lvmt_find(*vgsec, "format", SNAPFS_LVMT_STRING, &format) &&
	    strcmp(format->str, "lvm2")) {
		*why = "VG of another format than lvm2";
		return -EINVAL;
	}
	return 0;
}

/* ---- PVs ------------------------------------------------------------------ */

/* The device holding the PV of uuid: its index, -1 when none, -2 when more
 * than one does. */
static int device_of(const struct snapfs_glvm_pvs *pvs, const char *uuid)
{
	int found = -1;

	for (size_t i = 0; i < pvs->ndevs; i++) {
		if (strcmp(pvs->pv[i].uuid, uuid))
			continue;
		if (found >= 0)
			return -2;
		found = (int)i;
	}
	return found;
}

static int read_pv(struct builder *b, const struct snapfs_lvmt_node *sec,
		   struct vg_pv *pv)
{
	static const char *const status[] = { "ALLOCATABLE", "EXPORTED", NULL };
	char *reason = b->vg->reason;
	size_t rlen = sizeof(b->vg->reason);
	uint64_t start, end;
	const char *bad;

	pv->key = sec->key;
	if (get_uuid(sec, pv->uuid) ||
	    get_int(sec, "pe_start", 0, INT64_MAX, &pv->pe_start) ||
	    get_int(sec, "pe_count", 0, INT64_MAX, &pv->pe_count))
		return say(reason, rlen, "PV %s: id, pe_start or pe_count malformed",
			   sec->key);
	if (!flags_known(sec, "status", status, &bad))
		return say(reason, rlen, "PV %s: unknown status %s", sec->key, bad);
	if (__builtin_mul_overflow(pv->pe_start, SECTOR, &start) ||
	    __builtin_mul_overflow(pv->pe_count, b->extent, &end) ||
	    __builtin_add_overflow(start, end, &end) || end > INT64_MAX)
		return say(reason, rlen, "PV %s: extents past 2^63 bytes", sec->key);
	pv->pe_start = start;
	pv->dev = device_of(b->pvs, pv->uuid);
	if (has_flag(sec, "flags", "MISSING"))
		pv->missing = "marked missing by the guest";
	else if (pv->dev == -1)
		pv->missing = "on no disk of the guest";
	else if (pv->dev == -2)
		pv->missing = "on two disks of the guest";
	else if (end > b->pvs->dev[pv->dev].size)
		pv->missing = "its extents run past the end of its disk";
	if (pv->dev < 0)
		pv->dev = -1;
	return 0;
}

static int read_pvs(struct builder *b, const struct snapfs_lvmt_node *vgsec)
{
	const struct snapfs_lvmt_node *sec, *n;
	char *reason = b->vg->reason;
	size_t rlen = sizeof(b->vg->reason);
	int r;

	if (snapfs_lvmt_find(vgsec, "physical_volumes", SNAPFS_LVMT_SECTION, &sec))
		return say(reason, rlen, "no physical_volumes section");
	for (n = sec->child; n; n = n->next)
		if (n->kind != SNAPFS_LVMT_SECTION || ++b->npvs > SNAPFS_GLVM_PVS_MAX)
			return say(reason, rlen,
				   "physical_volumes: more than %u PVs, "
				   "or a value among them",
				   SNAPFS_GLVM_PVS_MAX);
	b->pv = calloc(b->npvs ? b->npvs : 1, sizeof(*b->pv));
	if (!b->pv)
		return -ENOMEM;
	n = sec->child;
	for (size_t i = 0; i < b->npvs; i++, n = n->next) {
		r = read_pv(b, n, &b->pv[i]);
		if (r)
			return r;
		for (size_t j = 0; j < i; j++)
			if (!strcmp(b->pv[j].key, n->key) ||
			    !strcmp(b->pv[j].uuid, b->pv[i].uuid))
				return say(reason, rlen, "PV %s listed twice", n->key);
	}
	return 0;
}

static const struct vg_pv *find_pv(const struct builder *b, const char *key)
{
	for (size_t i = 0; i < b->npvs; i++)
		if (!strcmp(b->pv[i].key, key))
			return &b->pv[i];
	return NULL;
}

/* ---- LVs ------------------------------------------------------------------ */

/* A classic snapshot, as the text has it: the LV users know by the
 * snapshot's name holds its COW store, and a snapshotN LV of one
 * "snapshot" segment names it (cow_store) and its origin. */
struct cow {
	const char *lv, *origin;
	const struct snapfs_lvmt_node *seg; /* its extents: the snapshot's size */
};

static int cmp_cow(const void *a, const void *b)
{
	return strcmp(((const struct cow *)a)->lv, ((const struct cow *)b)->lv);
}

/* The segment of type type that section l holds, or NULL. */
static const struct snapfs_lvmt_node *segment_of(const struct snapfs_lvmt_node *l,
						 const char *type)
{
	for (const struct snapfs_lvmt_node *s = l->child; s; s = s->next) {
		const char *t;

		if (s->kind == SNAPFS_LVMT_SECTION && (t = get_str(s, "type")) &&
		    !strcmp(t, type))
			return s;
	}
	return NULL;
}

/* The snapshots' COW stores, sorted. */
static int find_cows(struct builder *b)
{
	size_t cap = 0;

	for (const struct snapfs_lvmt_node *l = b->lvs->child; l; l = l->next) {
		const struct snapfs_lvmt_node *s = segment_of(l, "snapshot");
		struct cow c = { s ? get_str(s, "cow_store") : NULL,
				 s ? get_str(s, "origin") : NULL, s };

		if (!c.lv || !c.origin)
			continue;
		if (b->ncows == cap) {
			struct cow *p;

			cap = cap ? 2 * cap : 8;
			p = realloc(b->cow, cap * sizeof(*p));
			if (!p)
				return -ENOMEM;
			b->cow = p;
		}
		b->cow[b->ncows++] = c;
	}
	if (b->ncows)
		qsort(b->cow, b->ncows, sizeof(*b->cow), cmp_cow);
	return 0;
}

/* The snapshot whose COW store lv is, or NULL. */
static const struct cow *snapshot_of(const struct builder *b, const char *lv)
{
	struct cow key = { lv, NULL, NULL };

	return b->ncows ? bsearch(&key, b->cow, b->ncows, sizeof(*b->cow), cmp_cow)
			: NULL;
}

/* The stripes of a striped segment: nstripes (PV key, first PE) pairs, each
 * area len extents long. */
static int read_stripes(const struct builder *b, const struct snapfs_lvmt_node *sec,
			struct snapfs_glvm_seg *seg, uint64_t len, char *why, size_t wlen)
{
	const struct snapfs_lvmt_node *a, *e;
	unsigned i = 0;

	if (snapfs_lvmt_find(sec, "stripes", SNAPFS_LVMT_ARRAY, &a))
		return say(why, wlen, "%s: no stripes", sec->key);
	seg->area = calloc(seg->nstripes, sizeof(*seg->area));
	if (!seg->area)
		return -ENOMEM;
	for (e = a->child; e && i < seg->nstripes; e = e->next->next, i++) {
		const struct vg_pv *pv;
		uint64_t pe, off;

		if (e->kind != SNAPFS_LVMT_STRING || !e->next ||
		    e->next->kind != SNAPFS_LVMT_INT)
			return say(why, wlen, "%s: stripes malformed", sec->key);
		pv = find_pv(b, e->str);
		pe = (uint64_t)e->next->num;
		if (!pv)
			return say(why, wlen,
				   "%s: extents on %s, which is no PV of the VG",
				   sec->key, e->str);
		if (pv->missing)
			return say(why, wlen, "PV %s is %s", pv->key, pv->missing);
		if (pe > pv->pe_count || len > pv->pe_count - pe)
			return say(why, wlen, "%s: extents past the end of PV %s",
				   sec->key, pv->key);
		off = pv->pe_start + pe * b->extent; /* inside the PV's checked end */
		seg->area[i].dev = (unsigned)pv->dev;
		seg->area[i].start = off;
	}
	if (i != seg->nstripes || e)
		return say(why, wlen, "%s: %u stripes said, another number given",
			   sec->key, seg->nstripes);
	return 0;
}

/* A segment's extents (start, count) and type; the caller checks them. */
static int read_extents(const struct snapfs_lvmt_node *sec, uint64_t *start,
			uint64_t *count, const char **type, char *why, size_t wlen)
{
	*type = get_str(sec, "type");
	if (get_int(sec, "start_extent", 0, UINT32_MAX, start) ||
	    get_int(sec, "extent_count", 1, UINT32_MAX, count) || !*type)
		return say(why, wlen, "%s: start_extent, extent_count or type malformed",
			   sec->key);
	return 0;
}

static int read_striped(const struct builder *b, const struct snapfs_lvmt_node *sec,
			struct snapfs_glvm_seg *seg, uint64_t count, char *why,
			size_t wlen)
{
	uint64_t n, ssize = 0, area;

	if (get_int(sec, "stripe_count", 1, SNAPFS_GLVM_STRIPES_MAX, &n))
		return say(why, wlen, "%s: stripe_count malformed or over %u", sec->key,
			   SNAPFS_GLVM_STRIPES_MAX);
	seg->nstripes = (unsigned)n;
	if (count % n)
		return say(why, wlen, "%s: %" PRIu64 " extents in %" PRIu64 " stripes",
			   sec->key, count, n);
	area = count / n;
	if (n > 1) {
		if (get_int(sec, "stripe_size", 1, EXTENT_SECTORS_MAX, &ssize) ||
		    (ssize & (ssize - 1)))
			return say(why, wlen, "%s: stripe_size malformed", sec->key);
		seg->stripe_size = ssize * SECTOR;
		if (area * b->extent % seg->stripe_size)
			return say(why, wlen,
				   "%s: stripes not a whole number of stripe_size",
				   sec->key);
	}
	return read_stripes(b, sec, seg, area, why, wlen);
}

/* The segments of lv from its section, in the order of the text, which
 * must tile the LV from extent 0 (as LVM itself checks): lv->size, then
 * what each one maps.  0 when the LV is served, -EINVAL with lv->reason
 * when not, -ENOMEM. */
static int read_segments(const struct builder *b, const struct snapfs_lvmt_node *sec,
			 struct snapfs_glvm_lv *lv)
{
	char *why = lv->reason;
	size_t wlen = sizeof(lv->reason);
	uint64_t nsegs, start, count, end = 0;
	const struct snapfs_lvmt_node *s;
	const char *type;
	bool striped = false;
	int r;

	if (get_int(sec, "segment_count", 1, SNAPFS_GLVM_SEGS_MAX, &nsegs))
		return say(why, wlen, "segment_count malformed or over %u",
			   SNAPFS_GLVM_SEGS_MAX);
	lv->seg = calloc(nsegs, sizeof(*lv->seg));
	if (!lv->seg)
		return -ENOMEM;
	for (s = sec->child; s; s = s->next) {
		struct snapfs_glvm_seg *seg = &lv->seg[lv->nsegs];

		if (s->kind != SNAPFS_LVMT_SECTION)
			continue;
		if (strncmp(s->key, "segment", 7) || lv->nsegs == nsegs)
			return say(why, wlen,
				   "more sections than its %" PRIu64 " segments", nsegs);
		lv->nsegs++;
		r = read_extents(s, &start, &count, &type, why, wlen);
		if (r)
			return r;
		seg->start = start * b->extent; /* extents < 2^32, extent <= 2^41 bytes */
		seg->len = count * b->extent;
		if (seg->start != end)
			return say(why, wlen, "%s %s at %" PRIu64 " bytes", s->key,
				   seg->start < end ? "overlaps another" : "leaves a gap",
				   end);
		if (__builtin_add_overflow(end, seg->len, &end) || end > INT64_MAX)
			return say(why, wlen, "larger than 2^63 bytes");
	}
	if (lv->nsegs != nsegs)
		return say(why, wlen, "%" PRIu64 " segments said, %zu given", nsegs,
			   lv->nsegs);
	lv->size = end;
	s = sec->child;
	for (size_t i = 0; i < lv->nsegs; i++, s = s->next) {
		while (s->kind != SNAPFS_LVMT_SECTION)
			s = s->next;
		read_extents(s, &start, &count, &type, why, wlen); /* read above */
		if (strcmp(type, "striped") && strcmp(type, "linear")) {
			snprintf(lv->segtype, sizeof(lv->segtype), "%s", type);
			return say(why, wlen, "segment type %s is not served", type);
		}
		r = read_striped(b, s, &lv->seg[i], count, why, wlen);
		striped |= lv->seg[i].nstripes > 1;
		snprintf(lv->segtype, sizeof(lv->segtype),
			 striped ? "striped" : "linear");
		if (r)
			return r;
	}
	return 0;
}

static void free_segs(struct snapfs_glvm_lv *lv)
{
	for (size_t i = 0; i < lv->nsegs; i++)
		free(lv->seg[i].area);
	free(lv->seg);
	lv->seg = NULL;
	lv->nsegs = 0;
}

static int read_lv(const struct builder *b, const struct snapfs_lvmt_node *sec,
		   struct snapfs_glvm_lv *lv)
{
	static const char *const status[] = { "READ",	 "WRITE",	"WRITE_LOCKED",
					      "VISIBLE", "FIXED_MINOR", "ACTIVATION_SKIP",
					      NULL };
	const struct cow *snap = snapshot_of(b, sec->key);
	uint64_t start, count;
	const char *bad;
	int r;

	lv->name = strdup(sec->key);
	lv->vg = b->vg->name;
	if (!lv->name)
		return -ENOMEM;
	if (!name_ok(sec->key))
		r = say(lv->reason, sizeof(lv->reason), "a name LVM does not allow");
	else if (!flags_known(sec, "status", status, &bad))
		r = say(lv->reason, sizeof(lv->reason), "status %s is not served", bad);
	else if (snap) {
		snprintf(lv->segtype, sizeof(lv->segtype), "snapshot");
		if (!read_extents(snap->seg, &start, &count, &bad, lv->reason,
				  sizeof(lv->reason)))
			lv->size = count * b->extent;
		r = say(lv->reason, sizeof(lv->reason),
			"a snapshot of %s: its COW store is not served", snap->origin);
	} else
		r = read_segments(b, sec, lv);
	if (r == -ENOMEM)
		return r;
	lv->served = !r;
	if (r) {
		free_segs(lv);
		snapfs_warn("guest %s, VG %s, LV %s: not served: %s", b->guest,
			    b->vg->name, lv->name, lv->reason);
	}
	return 0;
}

static int read_lvs(struct builder *b, const struct snapfs_lvmt_node *vgsec)
{
	char *reason = b->vg->reason;
	size_t rlen = sizeof(b->vg->reason), n = 0;
	const struct snapfs_lvmt_node *l;
	int r = snapfs_lvmt_find(vgsec, "logical_volumes", SNAPFS_LVMT_SECTION, &b->lvs);

	if (r == -ENOENT)
		return 0;
	if (r)
		return say(reason, rlen, "logical_volumes malformed");
	for (l = b->lvs->child; l; l = l->next)
		if (l->kind != SNAPFS_LVMT_SECTION || ++n > SNAPFS_GLVM_LVS_MAX)
			return say(reason, rlen,
				   "logical_volumes: more than %u LVs, "
				   "or a value among them",
				   SNAPFS_GLVM_LVS_MAX);
	b->vg->lv = calloc(n ? n : 1, sizeof(*b->vg->lv));
	if (!b->vg->lv || find_cows(b))
		return -ENOMEM;
	for (l = b->lvs->child; l; l = l->next) {
		struct snapfs_glvm_lv *lv = &b->vg->lv[b->vg->nlvs];

		for (size_t i = 0; i < b->vg->nlvs; i++)
			if (!strcmp(b->vg->lv[i].name, l->key))
				return say(reason, rlen, "LV %s listed twice", l->key);
		/* What lvs shows: a snapshot by the name of its COW store (which
		 * is not VISIBLE), not the snapshotN that ties it to its origin. */
		if (segment_of(l, "snapshot") ||
		    (!has_flag(l, "status", "VISIBLE") && !snapshot_of(b, l->key))) {
			snapfs_debug(SNAPFS_DBG_GUESTS,
				     "guest %s, VG %s, LV %s: hidden, not "
				     "listed",
				     b->guest, b->vg->name, l->key);
			continue;
		}
		b->vg->nlvs++;
		r = read_lv(b, l, lv);
		if (r)
			return r;
	}
	return 0;
}

static void free_lvs(struct snapfs_glvm_vg *vg)
{
	for (size_t i = 0; i < vg->nlvs; i++) {
		free_segs(&vg->lv[i]);
		free(vg->lv[i].name);
	}
	free(vg->lv);
	vg->lv = NULL;
	vg->nlvs = 0;
}

void snapfs_glvm_vg_free(struct snapfs_glvm_vg *vg)
{
	free_lvs(vg);
	free(vg->name);
	memset(vg, 0, sizeof(*vg));
}

int snapfs_glvm_vg_build(const char *guest, const struct snapfs_lvmt_node *vgsec,
			 const struct snapfs_glvm_pvs *pvs, struct snapfs_glvm_vg *vg)
{
	static const char *const status[] = { "READ",	    "WRITE",	"WRITE_LOCKED",
					      "RESIZEABLE", "EXPORTED", "CLUSTERED",
					      "SHARED",	    NULL };
	struct builder b = { guest, pvs, vg, 0, NULL, 0, NULL, NULL, 0 };
	uint64_t sectors;
	const char *bad;
	int r;

	if (get_int(vgsec, "extent_size", 1, EXTENT_SECTORS_MAX, &sectors))
		r = say(vg->reason, sizeof(vg->reason), "extent_size malformed");
	else if (!flags_known(vgsec, "status", status, &bad))
		r = say(vg->reason, sizeof(vg->reason), "unknown VG status %s", bad);
	else {
		b.extent = vg->extent_size = sectors * SECTOR;
		r = read_pvs(&b, vgsec);
		if (!r)
			r = read_lvs(&b, vgsec);
	}
	free(b.pv);
	free(b.cow);
	vg->served = !r;
	if (r)
		free_lvs(vg);
	return r;
}
