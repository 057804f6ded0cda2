/* The LVM mechanism: a read-only snapshot LV of each LV disk (classic or
 * thin), tagged with snapfs's tag and the mount's owner tag, removed with
 * lvremove; a removal that fails is retried by the reaper until it works.
 *
 * Locking: name_lock protects the names' sequence, and the queue of failed
 * removals has its own.  The rest is one set's, called by its maker or its
 * remover, or by the watcher alone (cow_warned).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "snapfs.h"

/* A snapshot whose removal failed: retried, never forgotten. */
struct pending {
	struct snapfs_retry link;
	char vg[128], lv[128];
};

static struct snapfs_retries pending = SNAPFS_RETRIES_INIT;
static pthread_mutex_t name_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned name_seq;               /* under name_lock */
static const char *cow_size, *owner;    /* read-only after init */

static void lvm_init(const struct snapfs_snapset_config *cfg)
{
	cow_size = cfg->cow_size;
	owner = cfg->owner;
}

static void add_pending(const char *vg, const char *lv)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (!p) {
		snapfs_error("out of memory: snapshot %s/%s must be removed by hand "
			     "(or by snapfs --cleanup)", vg, lv);
		return;
	}
	snprintf(p->vg, sizeof(p->vg), "%s", vg);
	snprintf(p->lv, sizeof(p->lv), "%s", lv);
	snapfs_retries_add(&pending, &p->link);
}

static void make_snap_name(const char *origin, char *out, size_t outlen)
{
	unsigned seq;

	pthread_mutex_lock(&name_lock);
	seq = name_seq++;
	pthread_mutex_unlock(&name_lock);
	/* LV names stop at 127 bytes; the origin's name is cut to fit.  The
	 * mount's mark keeps two snapfs mounts' names apart. */
	snprintf(out, outlen, "%.80s_snapfs_%.8s_%lx_%u", origin, snapfs_owner_mark(owner),
		 (unsigned long)time(NULL), seq);
}

static int lvm_plan(const struct snapfs_guest *g, const struct snapfs_disk *o,
		    const struct snapfs_lv *lv, struct snapfs_snapdisk *d)
{
	d->lv = *lv;
	snprintf(d->vg, sizeof(d->vg), "%s", lv->vg);
	snprintf(d->origin, sizeof(d->origin), "%s", lv->lv);
	make_snap_name(d->origin, d->path, sizeof(d->path));
	return 0;
}

static int lvm_take(const struct snapfs_guest *g, struct snapfs_snapdisk **ds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct snapfs_snapdisk *d = ds[i];
		CLEANUP_FREE char *why = NULL;
		/* d->path holds the name until the device is opened. */
		int rc = snapfs_lvm_snapshot_create(&d->lv, d->path, cow_size, owner, &why);

		if (rc < 0) {
			snapfs_error("guest %s disk %s: snapshot of %s/%s failed: %s", g->dir,
				     d->target, d->vg, d->origin, why ? why : strerror(-rc));
			return rc;
		}
		snprintf(d->snap, sizeof(d->snap), "%.127s", d->path);
		d->taken = true;
	}
	return 0;
}

/* Where the thin snapshot d has data, for its holes and st_blocks.
 * Without it (another tool holds the pool's metadata snapshot, no
 * thin_dump) the disk counts as all data: never an error to the reader. */
static void read_thin_map(const struct snapfs_guest *g, struct snapfs_snapdisk *d)
{
	char key[300];
	int rc = snapfs_thinmap_read(d->dm_name, &d->map);

	if (rc == 0) {
		d->has_map = true;
		d->allocated = snapfs_thinmap_bytes(&d->map, 0, d->size);
		snapfs_debug(SNAPFS_DBG_SNAP, "guest %s disk %s: %zu mapped extents, %" PRIu64
			     " of %" PRIu64 " bytes",
			     g->dir, d->target, d->map.n, d->allocated, d->size);
		return;
	}
	if (rc == -EBUSY) {
		snapfs_debug(SNAPFS_DBG_SNAP, "guest %s disk %s: the metadata snapshot of its "
			     "thin pool is held by another tool; all of it counts as data",
			     g->dir, d->target);
		return;
	}
	snprintf(key, sizeof(key), "thinmap %s/%s", d->vg, d->origin);
	if (snapfs_log_first(key, strerror(-rc)))
		snapfs_warn("guest %s disk %s: the holes of thin LV %s/%s are not known (%s); "
			    "all of it counts as data",
			    g->dir, d->target, d->vg, d->origin, strerror(-rc));
}

static int lvm_open(const struct snapfs_guest *g, struct snapfs_snapdisk *d)
{
	int fd, rc;

	d->allocated = SNAPFS_ALL_DATA;
	rc = snapfs_lvm_dm_path(d->vg, d->snap, d->path, sizeof(d->path));
	if (rc < 0) {
		snapfs_error("guest %s disk %s: snapshot name %s/%s too long", g->dir, d->target,
			     d->vg, d->snap);
		return rc;
	}
	d->dm_name = d->path + strlen("/dev/mapper/");
	fd = snapfs_device_open(d->path, &d->size);
	if (fd < 0) {
		snapfs_error("guest %s disk %s: cannot open snapshot %s: %s", g->dir, d->target,
			     d->path, strerror(-fd));
		return fd;
	}
	d->fd = fd;
	if (d->lv.thin)
		read_thin_map(g, d);
	return 0;
}

static int lvm_check(const struct snapfs_snapdisk *d, char *why, size_t len)
{
	struct snapfs_cow cow;
	int rc = snapfs_dm_status(d->dm_name, &cow);

	if (rc == 0 && cow.valid)
		return 0;
	if (rc == 0)
		snprintf(why, len, "snapshot %s/%s is invalid (its COW area filled up); every "
				   "read of this set fails with EIO until it is released. Raise -o "
				   "cow_size= (now %s) or let LVM extend snapshots "
				   "(snapshot_autoextend_threshold)",
			 d->vg, d->snap, cow_size);
	else
		snprintf(why, len, "cannot check snapshot %s/%s: %s; failing reads", d->vg,
			 d->snap, strerror(-rc));
	return -EIO;
}

static void lvm_remove(struct snapfs_snapdisk *d)
{
	if (snapfs_lvm_snapshot_remove(d->vg, d->snap, owner) < 0) {
		snapfs_error("guest %s disk %s: snapshot %s/%s could not be removed; "
			     "retrying in the background",
			     d->guest, d->file, d->vg, d->snap);
		add_pending(d->vg, d->snap);
	}
}

static void lvm_where(const struct snapfs_snapdisk *d, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", d->vg, d->snap[0] ? d->snap : "(none)");
}

/* COW use of a classic snapshot in percent, or -1 (thin, or unknown). */
static int cow_percent(const struct snapfs_snapdisk *d, bool *valid)
{
	struct snapfs_cow cow;

	*valid = true;
	if (snapfs_dm_status(d->dm_name, &cow) < 0)
		return -1;
	*valid = cow.valid;
	if (!cow.valid)
		return 100;
	return cow.total ? (int)(cow.used * 100 / cow.total) : -1;
}

static void lvm_report(FILE *f, const struct snapfs_snapdisk *d)
{
	bool valid;
	int pct = cow_percent(d, &valid);

	fprintf(f, "  disk: %s origin=%s/%s snapshot=%s/%s", d->file, d->vg, d->origin, d->vg,
		d->snap);
	if (!valid)
		fprintf(f, " cow=invalid\n");
	else if (pct >= 0)
		fprintf(f, " cow=%d%%\n", pct);
	else
		fprintf(f, " cow=thin\n");
}

/* Warn when a held snapshot's COW area passes 80% and again at 95%. */
static void lvm_watch(struct snapfs_snapdisk *const *ds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct snapfs_snapdisk *d = ds[i];
		bool valid;
		int pct = cow_percent(d, &valid);
		unsigned level = pct >= 95 ? 95 : pct >= 80 ? 80 : 0;

		if (!valid)
			continue;
		/* Below a level again: LVM extended the snapshot
		 * (snapshot_autoextend_threshold); warn anew if it fills. */
		if (level < d->cow_warned)
			d->cow_warned = level;
		if (level <= d->cow_warned)
			continue;
		d->cow_warned = level;
		snapfs_warn("guest %s disk %s: snapshot %s/%s COW area %d%% full; at 100%% "
			    "its reads fail (raise -o cow_size=, now %s, or let LVM "
			    "extend snapshots: snapshot_autoextend_threshold)",
			    d->guest, d->file, d->vg, d->snap, pct, cow_size);
	}
}

/* Retries of failed removals, one every 5 seconds at most. */
static void lvm_tick(void)
{
	struct pending *retry = (struct pending *)snapfs_retries_due(&pending);

	if (!retry)
		return;
	if (snapfs_lvm_snapshot_remove(retry->vg, retry->lv, owner) == 0)
		snapfs_info("snapshot %s/%s removed at last", retry->vg, retry->lv);
	else
		add_pending(retry->vg, retry->lv);
	free(retry);
}

/* One last try for what could not be removed before. */
static void lvm_shutdown(void)
{
	struct pending *left = (struct pending *)snapfs_retries_take_all(&pending);

	while (left) {
		struct pending *next = (struct pending *)left->link.next;

		if (snapfs_lvm_snapshot_remove(left->vg, left->lv, owner) < 0)
			snapfs_error("snapshot %s/%s is left behind; snapfs --cleanup "
				     "or the next start removes it", left->vg, left->lv);
		free(left);
		left = next;
	}
}

const struct snapfs_mechanism snapfs_mech_lvm = {
	.name = "lvm",
	.init = lvm_init,
	.plan = lvm_plan,
	.take = lvm_take,
	.open = lvm_open,
	.check = lvm_check,
	.remove = lvm_remove,
	.where = lvm_where,
	.report = lvm_report,
	.watch = lvm_watch,
	.tick = lvm_tick,
	.shutdown = lvm_shutdown,
};
