/* Snapshot sets: the first open of any file of a guest snapshots all of its
 * disks at one instant, each by its mechanism (snap-*.c); every file of the
 * guest opened while the set is held reads from it; the last release
 * removes it (after the linger time).
 *
 * Locking: sets_lock protects the list of sets, each set's refs, state and
 * idle time.  It is never held across a mechanism's call (an lvcreate, a
 * libvirt call): a set being made is in state CREATING, and others who
 * want it wait on sets_cond, while listings and other guests' opens go
 * on.  A set's disks are read-only once it is READY, but for what the
 * mechanisms mark atomically (dropped) and what only the watcher touches.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "snapfs.h"

enum set_state { SET_CREATING, SET_READY };

struct snapfs_snapset {
	char dir[SNAPFS_NAME_MAX + 1];
	char *name;                  /* the guest's own name, for logs */
	unsigned refs;
	enum set_state state;
	struct timespec stamp;       /* the snapshots' instant */
	struct timespec shown;       /* what stat shows of its files: the guest's
				      * epoch when it was made */
	struct timespec idle_since;  /* CLOCK_MONOTONIC, when refs fell to 0 */
	struct timespec created;     /* CLOCK_MONOTONIC, for the status view */
	struct snapfs_snapdisk *disk;
	size_t n;
	struct snapfs_glvs *glvs;    /* the guest's own LVs, read from disk; or NULL */
	bool invalid_logged;         /* under sets_lock */
	bool bytes_dropped;          /* a disk dropped and the caller told (watcher) */
	bool frozen;                 /* taken with the guest frozen */
	unsigned watching;           /* the watcher looks at its disks: not removed
				      * until it is done */
	struct snapfs_snapset *next;
};

static pthread_mutex_t sets_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sets_cond; /* on CLOCK_MONOTONIC, made in snapfs_snapset_init */
static struct snapfs_snapset *sets;   /* under sets_lock */
static bool stopping;                 /* under sets_lock */
static pthread_t reaper;
static bool reaper_started;
static pthread_t watcher;
static bool watcher_started;
static struct snapfs_snapset_config config; /* read-only after init */

/* A guest's epoch: the time its files show while it holds no set, and the
 * time the files of its next set show.  It moves on only when a set of the
 * guest is removed, so the size and time a backup tool stat()s before an
 * open are those it finds after, and a disk that may have changed never
 * shows a time it showed before.  Under sets_lock. */
#define EPOCH_BUCKETS 256
struct epoch {
	struct timespec stamp;
	struct epoch *next;
	char dir[];
};
static struct epoch *epochs[EPOCH_BUCKETS]; /* under sets_lock */

/* dir's epoch, made now when it has none.  Under sets_lock. */
static struct timespec epoch_of(const char *dir)
{
	size_t len = strlen(dir), b = (size_t)(snapfs_name_hash(dir, len) % EPOCH_BUCKETS);
	struct epoch *e;

	for (e = epochs[b]; e; e = e->next)
		if (!strcmp(e->dir, dir))
			return e->stamp;
	e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return snapfs_stamp_next(); /* unique, if not stable */
	memcpy(e->dir, dir, len + 1);
	e->stamp = snapfs_stamp_next();
	e->next = epochs[b];
	epochs[b] = e;
	return e->stamp;
}

/* A set of dir is gone: the guest's files show a new time from now on. */
static void epoch_advance(const char *dir)
{
	size_t b = (size_t)(snapfs_name_hash(dir, strlen(dir)) % EPOCH_BUCKETS);

	for (struct epoch *e = epochs[b]; e; e = e->next) {
		if (!strcmp(e->dir, dir)) {
			e->stamp = snapfs_stamp_next();
			return;
		}
	}
	epoch_of(dir);
}

static void epochs_free(void)
{
	for (size_t b = 0; b < EPOCH_BUCKETS; b++) {
		while (epochs[b]) {
			struct epoch *e = epochs[b];

			epochs[b] = e->next;
			free(e);
		}
	}
}

double snapfs_elapsed(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - since->tv_sec) +
	       (double)(now.tv_nsec - since->tv_nsec) / 1e9;
}

static void free_set(struct snapfs_snapset *s)
{
	snapfs_glvs_free(s->glvs);
	for (size_t i = 0; i < s->n; i++) {
		snapfs_partitions_free(&s->disk[i].parts);
		snapfs_thinmap_free(&s->disk[i].map);
		free(s->disk[i].origin_path);
		free(s->disk[i].scratch);
		snapfs_rbd_close(s->disk[i].rbd_img);
		snapfs_rbd_close(s->disk[i].rbd_head);
		snapfs_rbd_close(s->disk[i].rbd_maker);
		if (s->disk[i].rbd) {
			explicit_bzero(s->disk[i].rbd->key, sizeof(s->disk[i].rbd->key));
			free(s->disk[i].rbd);
		}
		if (s->disk[i].chain) {
			snapfs_chain_close(s->disk[i].chain);
			free(s->disk[i].chain);
		}
	}
	free(s->disk);
	free(s->name);
	free(s);
}

/* Close and remove the snapshots of the first n disks of s. */
static void remove_disks(struct snapfs_snapset *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct snapfs_snapdisk *d = &s->disk[i];

		if (d->fd >= 0) {
			close(d->fd);
			d->fd = -1;
		}
		if (d->dfd >= 0) {
			close(d->dfd);
			d->dfd = -1;
		}
		if (d->taken)
			d->mech->remove(d);
		d->taken = false;
	}
}

/* "vda.raw=vg/snap, vdb.raw=reflink clone on /mnt" for log lines. */
static void describe_disks(const struct snapfs_snapset *s, char *out, size_t outlen)
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < s->n && o < outlen; i++) {
		const struct snapfs_snapdisk *d = &s->disk[i];
		char where[400];

		(d->mech->describe ? d->mech->describe : d->mech->where)(d, where, sizeof(where));
		o += (size_t)snprintf(out + o, outlen - o, "%s%s=%s", i ? ", " : "", d->file,
				      where);
	}
}

static void destroy_set(struct snapfs_snapset *s)
{
	struct timespec t0;
	char list[1024];

	describe_disks(s, list, sizeof(list));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	remove_disks(s, s->n);
	snapfs_info("guest %s: snapshot set removed in %.2fs: %s", s->name, snapfs_elapsed(&t0), list);
	free_set(s);
}

/* Freeze a running libvirt guest per the freeze mode: 0 with *fz set (or
 * NULL when no freeze is needed or possible under auto), or -EIO under
 * require.  Everything is looked up before anything is frozen. */
static int freeze_guest(struct snapfs_snapset *s, const struct snapfs_guest *g,
			struct snapfs_freeze **fz)
{
	CLEANUP_FREE char *why = NULL;
	int rc;

	*fz = NULL;
	if (config.freeze == SNAPFS_FREEZE_OFF || !g->xml || !g->running)
		return 0;
	rc = snapfs_freeze_prepare(config.uri, g->name, g->key, config.freeze_timeout, fz);
	if (rc == 1)
		return 0;
	if (rc == 0) {
		rc = snapfs_freeze(*fz, &why);
		if (rc == 0) {
			s->frozen = true;
			return 0;
		}
	}
	if (config.freeze == SNAPFS_FREEZE_REQUIRE) {
		snapfs_error("guest %s: freezing its filesystems failed (%s); freeze=require, "
			     "so no snapshot is taken",
			     g->dir, why ? why : "guest unreachable");
		return -EIO;
	}
	snapfs_warn("guest %s: freezing its filesystems failed (%s); taking a "
		    "crash-consistent snapshot",
		    g->dir, why ? why : "guest unreachable");
	return 0;
}

/* Thaw is always attempted once a freeze was: a freeze that timed out may
 * have frozen the guest all the same. */
static void thaw_guest(const struct snapfs_guest *g, struct snapfs_freeze *fz,
		       const struct timespec *frozen_at)
{
	CLEANUP_FREE char *why = NULL;

	int rc;

	if (!fz)
		return;
	rc = snapfs_thaw(fz, &why);
	if (rc < 0)
		snapfs_error("guest %s: THAW FAILED: %s; its filesystems may still be frozen "
			     "(virsh domfsthaw %s)",
			     g->dir, why ? why : "?", g->dir);
	else if (rc == 0)
		snapfs_info("guest %s: filesystems thawed after %.2fs", g->dir,
			    snapfs_elapsed(frozen_at));
	snapfs_freeze_close(fz);
}

/* The snapshots a set of g holds: each disk's, and the layers below a
 * decoded qcow2 disk's, right after it. */
static size_t count_disks(const struct snapfs_guest *g)
{
	size_t n = 0;

	for (size_t i = 0; i < g->ndisks; i++)
		n += 1 + (g->disk[i].view[0] ? g->disk[i].nlayers : 0);
	return n;
}

/* What d is to snapshot: disk o of g itself (depth 0) or the layer depth
 * below it.  0 or -errno. */
static int plan_disk(struct snapfs_snapset *s, const struct snapfs_guest *g,
		     struct snapfs_snapdisk *d, const struct snapfs_disk *o, unsigned depth)
{
	const struct snapfs_layer *layer = depth ? &o->layer[depth - 1] : NULL;
	const struct snapfs_lv *lv = layer ? &layer->lv : &o->lv;

	d->fd = d->dfd = d->clone_fd = -1;
	d->guest = s->name;
	d->kind = o->kind;
	d->mech = snapfs_mechanism_of(o->kind, layer ? layer->direct : o->direct);
	if (o->kind == SNAPFS_ORIGIN_RBD && !(d->origin_path = strdup(o->path)))
		return -ENOMEM;
	if (o->kind == SNAPFS_ORIGIN_FILE) {
		d->origin_dev = layer ? layer->dev : o->dev;
		d->origin_ino = layer ? layer->ino : o->ino;
		if (!(d->origin_path = strdup(layer ? layer->path : o->path)))
			return -ENOMEM;
	}
	d->depth = depth;
	d->sector_size = o->sector_size;
	snprintf(d->target, sizeof(d->target), "%s", o->target);
	if (depth) {
		snprintf(d->file, sizeof(d->file), "%.200s layer %u", o->file, depth);
		snprintf(d->format, sizeof(d->format), "%s", o->layer[depth - 1].format);
	} else {
		snprintf(d->file, sizeof(d->file), "%s", o->file);
		snprintf(d->format, sizeof(d->format), "%s", o->format);
		d->nlayers = o->view[0] ? o->nlayers : 0;
	}
	if (d->mech->watch && !watcher_started) {
		snapfs_error("guest %s disk %s: not snapshotted: no thread watches what %s "
			     "snapshots take", g->dir, d->target, d->mech->name);
		return -EAGAIN;
	}
	return d->mech->plan(g, o, lv, d);
}

static int image_read_cb(void *im, void *buf, size_t len, uint64_t off)
{
	return snapfs_image_read(im, buf, len, off);
}

/* The partitions of disk d's view, and what of them holds data. */
static int read_partitions(const struct snapfs_guest *g, struct snapfs_snapdisk *d)
{
	int rc;

	if (d->view.kind == SNAPFS_IMAGE_QCOW2)
		rc = snapfs_partitions_read_from(snapfs_chain_read, d->chain, d->view.size,
						 d->sector_size, g->dir, d->target, &d->parts);
	else if (d->view.kind != SNAPFS_IMAGE_DEVICE || d->fd < 0)
		rc = snapfs_partitions_read_from(image_read_cb, &d->view, d->view.size,
						 d->sector_size, g->dir, d->target, &d->parts);
	else
		rc = snapfs_partitions_read(d->fd, d->size, d->sector_size, g->dir, d->target,
					    &d->parts);
	if (rc < 0 && d->view.kind == SNAPFS_IMAGE_QCOW2) {
		/* A damaged table where the partition table is (said by the
		 * decoder): the disk is still served, its reads there fail. */
		char key[SNAPFS_NAME_MAX + 64];

		snprintf(key, sizeof(key), "qcow2 parts %s %s", g->dir, d->target);
		if (snapfs_log_first(key, strerror(-rc)))
			snapfs_error("guest %s disk %s: the decoded disk's partition table "
				     "cannot be read (%s); it has no partition files",
				     g->dir, d->target, strerror(-rc));
		return 0;
	}
	if (rc < 0) {
		snapfs_error("guest %s disk %s: reading the snapshot's partition table failed: "
			     "%s",
			     g->dir, d->target, strerror(-rc));
		return rc;
	}
	for (size_t p = 0; p < d->parts.n; p++) {
		struct snapfs_partition *part = &d->parts.part[p];

		part->allocated = snapfs_image_allocated(&d->view, part->start,
							 part->start + part->size);
	}
	return 0;
}

/* Does the backing name in the snapshot of d still mean the origin of
 * below, the next layer's? */
static bool names_layer(const struct snapfs_snapdisk *d, const char *name,
			const struct snapfs_snapdisk *below)
{
	char found[4096];
	const char *why;

	if (!name)
		return false;
	if (d->kind == SNAPFS_ORIGIN_FILE)
		return snapfs_backing_file(d->origin_path, name, found, sizeof(found), &why) == 0 &&
		       !strcmp(found, below->origin_path);
	return snapfs_backing_lv(d->vg, name, NULL, found, sizeof(found), &why) == 0 &&
	       !strcmp(found, below->origin);
}

/* Decode qcow2 disk d (with its layers after it) from the snapshots, as
 * the listing followed its chain: each image must still name the layer
 * below that was snapshotted.  0, or 1 with *why. */
static int decode(struct snapfs_snapdisk *d, const char **why)
{
	struct snapfs_chain *c = calloc(1, sizeof(*c));
	uint64_t end;
	int rc = 0;

	if (!c) {
		*why = strerror(ENOMEM);
		return 1;
	}
	d->chain = c;
	for (size_t k = 0; k <= d->nlayers && rc == 0; k++) {
		struct snapfs_qcow2_io io;

		snapfs_io_snapdisk(&io, &d[k], d->guest, d->target);
		rc = snapfs_chain_push(c, &io, d[k].format);
		if (rc < 0) {
			*why = "its image is refused (said above)";
			return 1;
		}
		const char *name = c->q[k] ? snapfs_qcow2_backing_name(c->q[k]) : NULL;

		if (k == d->nlayers ? name != NULL : !names_layer(&d[k], name, &d[k + 1])) {
			*why = "its backing chain changed since it was listed";
			return 1;
		}
	}
	if (snapfs_chain_link(c) < 0) {
		*why = "its backing chain cannot be linked";
		return 1;
	}
	d->view = (struct snapfs_image){ .kind = SNAPFS_IMAGE_QCOW2, .chain = c,
					 .size = snapfs_qcow2_virtual_size(c->q[0]) };
	d->view.allocated = snapfs_image_allocated(&d->view, 0, d->view.size);
	if (snapfs_qcow2_image_end(c->q[0], &end) == 0 && end < d->container.size)
		d->container.size = end;
	return 0;
}

/* After the snapshots are open: what the files of disk d show. */
static int set_images(const struct snapfs_guest *g, struct snapfs_snapdisk *d)
{
	const char *why = NULL;

	d->container = (struct snapfs_image){ .kind = d->nbd ? SNAPFS_IMAGE_NBD
								: SNAPFS_IMAGE_DEVICE,
					      .dev = d, .size = d->size,
					      .allocated = d->allocated };
	if (strcmp(d->format, "raw") == 0) {
		d->view = d->container;
		return read_partitions(g, d);
	}
	if (strcmp(d->format, "qcow2") || !d->decodable)
		return 0;
	if (decode(d, &why) == 0)
		return read_partitions(g, d);
	snapfs_error("guest %s disk %s: the snapshot of %s cannot be decoded: %s; its "
		     "decoded disk and partitions fail with EIO in this set",
		     g->dir, d->target, d->file, why);
	d->view.kind = SNAPFS_IMAGE_NONE;
	return 0;
}

/* Inside the freeze: each mechanism takes its disks of s, all at once
 * (ds: room for s->n pointers). */
static int take_all(const struct snapfs_guest *g, struct snapfs_snapset *s,
		    struct snapfs_snapdisk **ds)
{
	const struct snapfs_mechanism *const *mechs = snapfs_mechanism_list();

	for (size_t m = 0; mechs[m]; m++) {
		size_t n = 0;
		int rc;

		for (size_t i = 0; i < s->n; i++)
			if (s->disk[i].mech == mechs[m])
				ds[n++] = &s->disk[i];
		if (n && (rc = mechs[m]->take(g, ds, n)) < 0)
			return rc;
	}
	return 0;
}

/* The guest's own LVs, from the PVs on its disks in the set.  Their
 * refusals are logged; only a failure to allocate fails the set. */
static int scan_guest_lvs(const struct snapfs_guest *g, struct snapfs_snapset *s)
{
	CLEANUP_FREE struct snapfs_gdisk *gd = calloc(s->n ? s->n : 1, sizeof(*gd));
	size_t n = 0;
	int rc;

	if (!gd)
		return -ENOMEM;
	for (size_t i = 0; i < s->n; i++) {
		struct snapfs_snapdisk *d = &s->disk[i];

		if (d->depth || d->view.kind == SNAPFS_IMAGE_NONE)
			continue;
		gd[n++] = (struct snapfs_gdisk){ .read = image_read_cb, .ctx = &d->view,
						 .im = &d->view, .size = d->view.size,
						 .target = d->target, .parts = &d->parts };
	}
	rc = snapfs_glvs_scan(g->dir, gd, n, true, NULL, &s->glvs);
	return rc == -ENOMEM ? rc : 0;
}

/* Snapshot every disk (the guest frozen only while the mechanisms take
 * them), then open the snapshots.  All or nothing. */
static int create_set(struct snapfs_snapset *s, const struct snapfs_guest *g)
{
	struct snapfs_freeze *fz = NULL;
	struct timespec frozen_at;
	size_t n = count_disks(g);
	CLEANUP_FREE struct snapfs_snapdisk **ds = calloc(n ? n : 1, sizeof(*ds));
	int rc = 0;

	s->disk = calloc(n ? n : 1, sizeof(*s->disk));
	if (!s->disk || !ds)
		return -ENOMEM;
	s->n = n;
	for (size_t i = 0, j = 0; i < g->ndisks; i++) {
		size_t layers = g->disk[i].view[0] ? g->disk[i].nlayers : 0;

		for (unsigned k = 0; k <= layers; k++, j++) {
			rc = plan_disk(s, g, &s->disk[j], &g->disk[i], k);
			if (rc < 0)
				return rc;
		}
		s->disk[j - layers - 1].decodable = g->disk[i].view[0] != '\0';
	}
	clock_gettime(CLOCK_MONOTONIC, &frozen_at);
	rc = freeze_guest(s, g, &fz);
	if (rc < 0) {
		/* A freeze that failed or timed out may have frozen it anyway. */
		thaw_guest(g, fz, &frozen_at);
		return rc;
	}
	s->stamp = snapfs_stamp_next();
	rc = take_all(g, s, ds);
	thaw_guest(g, fz, &frozen_at);
	if (rc < 0)
		goto undo;
	for (size_t i = 0; i < s->n; i++) {
		struct snapfs_snapdisk *d = &s->disk[i];

		rc = d->mech->open(g, d);
		if (rc < 0)
			goto undo;
		if (d->fd < 0)
			continue; /* read through its image, not a descriptor */
		d->dfd = snapfs_device_open_direct(d->fd, &d->dio_align);
		if (d->dfd < 0)
			snapfs_debug(SNAPFS_DBG_SNAP,
				     "guest %s disk %s: no O_DIRECT on its %s snapshot (%s); reads "
				     "are cached",
				     g->dir, d->target, d->mech->name, strerror(-d->dfd));
	}
	/* Every snapshot open: a disk's view reads its layers'. */
	for (size_t i = 0; i < s->n; i++) {
		if (s->disk[i].depth)
			continue;
		rc = set_images(g, &s->disk[i]);
		if (rc < 0)
			goto undo;
	}
	rc = scan_guest_lvs(g, s);
	if (rc == 0)
		return 0;
undo:
	remove_disks(s, s->n);
	return rc;
}

static struct snapfs_snapset *find_set(const char *dir)
{
	for (struct snapfs_snapset *s = sets; s; s = s->next)
		if (!strcmp(s->dir, dir))
			return s;
	return NULL;
}

static void unlink_set(struct snapfs_snapset *s)
{
	for (struct snapfs_snapset **pp = &sets; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			return;
		}
	}
}

/* Take a set that served files out of the list, to be destroyed: from now
 * on its guest's files show a new time.  Under sets_lock. */
static void retire_set(struct snapfs_snapset *s)
{
	unlink_set(s);
	epoch_advance(s->dir);
	if (config.epoch_moved)
		config.epoch_moved(s->dir);
	/* The watcher may still look at its disks: it lets go within one look. */
	while (s->watching)
		pthread_cond_wait(&sets_cond, &sets_lock);
}

static bool same_origin(const struct snapfs_snapdisk *d, const struct snapfs_disk *o)
{
	if (d->kind != o->kind || strcmp(d->file, o->file))
		return false;
	if (d->mech != snapfs_mechanism_of(o->kind, o->direct))
		return false;
	if (d->kind != SNAPFS_ORIGIN_LV)
		return !strcmp(d->origin_path, o->path);
	return !strcmp(d->vg, o->lv.vg) && !strcmp(d->origin, o->lv.lv);
}

static bool same_layer(const struct snapfs_snapdisk *d, const struct snapfs_layer *l)
{
	if (d->kind == SNAPFS_ORIGIN_FILE)
		return d->mech == snapfs_mechanism_of(d->kind, l->direct) &&
		       !strcmp(d->origin_path, l->path);
	return !strcmp(d->vg, l->lv.vg) && !strcmp(d->origin, l->lv.lv);
}

/* Does set s hold the disks guest g has now (same files, same origins)? */
static bool set_matches(const struct snapfs_snapset *s, const struct snapfs_guest *g)
{
	if (s->n != count_disks(g))
		return false;
	for (size_t i = 0, j = 0; i < g->ndisks; i++) {
		const struct snapfs_snapdisk *d = &s->disk[j];
		const struct snapfs_disk *o = &g->disk[i];

		if (!same_origin(d, o) || d->nlayers != (o->view[0] ? o->nlayers : 0))
			return false;
		for (size_t k = 1; k <= d->nlayers; k++)
			if (!same_layer(&d[k], &o->layer[k - 1]))
				return false;
		j += 1 + d->nlayers;
	}
	return true;
}

bool snapfs_snapdisk_dropped(const struct snapfs_snapdisk *d)
{
	return __atomic_load_n(&d->dropped, __ATOMIC_SEQ_CST);
}

bool snapfs_snapdisk_drop(struct snapfs_snapdisk *d)
{
	return !__atomic_exchange_n(&d->dropped, true, __ATOMIC_SEQ_CST);
}

static bool set_invalid(const struct snapfs_snapset *s)
{
	char why[512];

	if (s->invalid_logged)
		return true;
	for (size_t i = 0; i < s->n; i++)
		if (s->disk[i].mech->check(&s->disk[i], why, sizeof(why)) < 0)
			return true;
	return false;
}

int snapfs_snapset_acquire(const struct snapfs_guest *g, struct snapfs_snapset **out)
{
	struct snapfs_snapset *s;
	struct timespec t0;
	int rc;

	pthread_mutex_lock(&sets_lock);
	for (;;) {
		if (stopping) {
			pthread_mutex_unlock(&sets_lock);
			return -ESHUTDOWN;
		}
		s = find_set(g->dir);
		if (!s)
			break;
		if (s->state != SET_READY) {
			pthread_cond_wait(&sets_cond, &sets_lock);
			continue;
		}
		if (set_matches(s, g) && !(s->refs == 0 && set_invalid(s))) {
			s->refs++;
			pthread_mutex_unlock(&sets_lock);
			*out = s;
			return 0;
		}
		/* A lingering set that went invalid, or one of another guest of
		 * this name (undefined and defined anew): never serve it. */
		if (s->refs) {
			pthread_mutex_unlock(&sets_lock);
			snapfs_error("guest %s: its disks changed while files of its snapshot "
				     "set are open; close them first",
				     g->dir);
			return -EBUSY;
		}
		retire_set(s);
		pthread_mutex_unlock(&sets_lock);
		destroy_set(s);
		pthread_mutex_lock(&sets_lock);
	}
	s = calloc(1, sizeof(*s));
	if (!s || !(s->name = strdup(g->dir))) {
		free(s);
		pthread_mutex_unlock(&sets_lock);
		return -ENOMEM;
	}
	snprintf(s->dir, sizeof(s->dir), "%s", g->dir);
	s->shown = epoch_of(g->dir);
	s->refs = 1;
	s->state = SET_CREATING;
	s->next = sets;
	sets = s;
	pthread_mutex_unlock(&sets_lock);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = g->ndisks ? create_set(s, g) : -ENOENT;

	/* Unmounting meanwhile: shutdown waits for sets being made, so undo
	 * this one before saying it is done. */
	pthread_mutex_lock(&sets_lock);
	bool shut = rc == 0 && stopping;
	pthread_mutex_unlock(&sets_lock);
	if (shut) {
		remove_disks(s, s->n);
		rc = -ESHUTDOWN;
	}
	pthread_mutex_lock(&sets_lock);
	if (rc < 0) {
		unlink_set(s);
		pthread_cond_broadcast(&sets_cond);
		pthread_mutex_unlock(&sets_lock);
		free_set(s);
		return rc;
	}
	s->state = SET_READY;
	clock_gettime(CLOCK_MONOTONIC, &s->created);
	pthread_cond_broadcast(&sets_cond);
	pthread_mutex_unlock(&sets_lock);

	char list[1024];

	describe_disks(s, list, sizeof(list));
	snapfs_info("guest %s: snapshot set created in %.2fs: %s", s->name, snapfs_elapsed(&t0), list);
	*out = s;
	return 0;
}

void snapfs_snapset_release(struct snapfs_snapset *s)
{
	bool destroy = false;

	pthread_mutex_lock(&sets_lock);
	if (--s->refs == 0) {
		if (config.linger == 0 || stopping) {
			retire_set(s);
			destroy = true;
		} else {
			clock_gettime(CLOCK_MONOTONIC, &s->idle_since);
			pthread_cond_broadcast(&sets_cond);
		}
	}
	pthread_mutex_unlock(&sets_lock);
	if (destroy)
		destroy_set(s);
}

const struct snapfs_snapdisk *snapfs_snapset_disk(const struct snapfs_snapset *s,
						  const char *file)
{
	for (size_t i = 0; i < s->n; i++)
		if (!s->disk[i].depth && !strcmp(s->disk[i].file, file))
			return &s->disk[i];
	return NULL;
}

struct timespec snapfs_snapset_stamp(const struct snapfs_snapset *s)
{
	return s->shown;
}

/* After a read of d: the first failure of a set is logged, once. */
static int check_one(struct snapfs_snapset *s, const struct snapfs_snapdisk *d)
{
	char why[512] = "";
	bool first;

	if (d->mech->check(d, why, sizeof(why)) == 0)
		return 0;
	pthread_mutex_lock(&sets_lock);
	first = !s->invalid_logged;
	s->invalid_logged = true;
	pthread_mutex_unlock(&sets_lock);
	if (first && why[0])
		snapfs_error("guest %s disk %s: %s", s->name, d->file, why);
	return -EIO;
}

int snapfs_snapset_check_all(struct snapfs_snapset *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (check_one(s, &s->disk[i]) < 0)
			return -EIO;
	return 0;
}

const struct snapfs_glvs *snapfs_snapset_glvs(const struct snapfs_snapset *s)
{
	return s->glvs;
}

int snapfs_snapset_check(struct snapfs_snapset *s, const struct snapfs_snapdisk *d)
{
	for (size_t k = 0; k <= d->nlayers; k++)
		if (check_one(s, &d[k]) < 0)
			return -EIO;
	return 0;
}

/* The disk of a set that is READY, or NULL.  Under sets_lock. */
static const struct snapfs_snapdisk *ready_disk(const struct snapfs_snapset *s,
						const char *file)
{
	return s && s->state == SET_READY ? snapfs_snapset_disk(s, file) : NULL;
}

int snapfs_snapset_held_lv(const char *dir, const char *vg, const char *lv, uint64_t *size,
			   struct snapfs_partition *id)
{
	const struct snapfs_partition *found = NULL;
	const struct snapfs_glvm_lv *l = NULL;
	int rc = -ENOENT;

	pthread_mutex_lock(&sets_lock);
	struct snapfs_snapset *s = find_set(dir);

	if (s && s->state == SET_READY)
		l = snapfs_glvs_lv(s->glvs, vg, lv, &found);
	if (l) {
		*size = l->size;
		*id = *found;
		rc = 0;
	}
	pthread_mutex_unlock(&sets_lock);
	return rc;
}

int snapfs_snapset_held(const char *dir, const char *file, unsigned partno,
			struct snapfs_held *out)
{
	int rc = -ENOENT;

	pthread_mutex_lock(&sets_lock);
	struct snapfs_snapset *s = find_set(dir);
	const struct snapfs_snapdisk *d = ready_disk(s, file);

	if (d) {
		out->stamp = s->shown;
		out->instant = s->stamp;
		out->frozen = s->frozen;
		const struct snapfs_image *im = partno == SNAPFS_CONTAINER ? &d->container
									   : &d->view;

		out->size = im->size;
		out->allocated = im->allocated;
		d->mech->where(d, out->snap, sizeof(out->snap));
		rc = im->kind == SNAPFS_IMAGE_NONE ? -ENOENT : 0;
		if (partno && partno != SNAPFS_CONTAINER) {
			rc = -ENOENT;
			for (size_t i = 0; i < d->parts.n; i++) {
				if (d->parts.part[i].number == partno) {
					out->size = d->parts.part[i].size;
					out->allocated = d->parts.part[i].allocated;
					rc = 0;
				}
			}
		}
	}
	pthread_mutex_unlock(&sets_lock);
	return rc;
}

int snapfs_snapset_held_parts(const char *dir, const char *file,
			      struct snapfs_partitions *out)
{
	int rc = -ENOENT;

	pthread_mutex_lock(&sets_lock);
	const struct snapfs_snapdisk *d = ready_disk(find_set(dir), file);

	if (d)
		rc = snapfs_partitions_copy(&d->parts, out);
	pthread_mutex_unlock(&sets_lock);
	return rc;
}

struct timespec snapfs_snapset_epoch(const char *dir)
{
	struct timespec t;

	pthread_mutex_lock(&sets_lock);
	t = epoch_of(dir);
	pthread_mutex_unlock(&sets_lock);
	return t;
}

size_t snapfs_snapset_count(void)
{
	size_t n = 0;

	pthread_mutex_lock(&sets_lock);
	for (struct snapfs_snapset *s = sets; s; s = s->next)
		n++;
	pthread_mutex_unlock(&sets_lock);
	return n;
}

char *snapfs_snapset_report(void)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return NULL;
	pthread_mutex_lock(&sets_lock);
	for (struct snapfs_snapset *s = sets; s; s = s->next) {
		char when[64];

		if (s->state != SET_READY)
			continue;
		snapfs_stamp_format(s->stamp, when, sizeof(when));
		fprintf(f, "guest: %s\n  taken: %s\n  age: %.0fs\n  open files: %u\n"
			   "  consistency: %s\n",
			s->name, when, snapfs_elapsed(&s->created), s->refs,
			s->frozen ? "frozen" : "crash");
		for (size_t i = 0; i < s->n; i++)
			s->disk[i].mech->report(f, &s->disk[i]);
	}
	pthread_mutex_unlock(&sets_lock);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

static void init_cond(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&sets_cond, &attr);
	pthread_condattr_destroy(&attr);
}

static void tick_mechanisms(void)
{
	const struct snapfs_mechanism *const *mechs = snapfs_mechanism_list();

	for (size_t m = 0; mechs[m]; m++)
		if (mechs[m]->tick)
			mechs[m]->tick();
}

/* Removes sets idle past the linger time; the mechanisms retry what
 * failed. */
static void *reaper_main(void *arg)
{
	struct timespec ticked = { 0, 0 };

	pthread_mutex_lock(&sets_lock);
	while (!stopping) {
		struct snapfs_snapset *victim = NULL;
		struct timespec until;

		for (struct snapfs_snapset *s = sets; s && !victim; s = s->next)
			if (s->state == SET_READY && s->refs == 0 &&
			    snapfs_elapsed(&s->idle_since) >= config.linger)
				victim = s;
		if (victim) {
			retire_set(victim);
			pthread_mutex_unlock(&sets_lock);
			destroy_set(victim);
			pthread_mutex_lock(&sets_lock);
			continue;
		}
		if (snapfs_elapsed(&ticked) >= 1) {
			pthread_mutex_unlock(&sets_lock);
			tick_mechanisms();
			clock_gettime(CLOCK_MONOTONIC, &ticked);
			pthread_mutex_lock(&sets_lock);
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&sets_cond, &sets_lock, &until);
	}
	pthread_mutex_unlock(&sets_lock);
	return NULL;
}

/* ---- the watcher ---------------------------------------------------------
 *
 * Ten times a second while sets are held, each mechanism looks at its disks
 * (the space clones and scratch files take, COW use, whether a backup job
 * still runs) and drops what must go.  The disks are collected under
 * sets_lock, each set referenced, and looked at without it. */

struct watched {
	struct snapfs_snapdisk **disk, **sub;
	struct snapfs_snapset **set;   /* each set once */
	size_t ndisks, nsets;
};

static void watched_free(struct watched *w)
{
	free(w->disk);
	free(w->sub);
	free(w->set);
	*w = (struct watched){ 0 };
}

/* The disks of READY sets whose mechanism watches.  Under sets_lock. */
static int collect_watched(struct watched *w)
{
	size_t n = 0, m = 0;

	for (struct snapfs_snapset *s = sets; s; s = s->next)
		if (s->state == SET_READY)
			n += s->n, m++;
	w->ndisks = w->nsets = 0;
	w->disk = calloc(n ? n : 1, sizeof(*w->disk));
	w->sub = calloc(n ? n : 1, sizeof(*w->sub));
	w->set = calloc(m ? m : 1, sizeof(*w->set));
	if (!w->disk || !w->sub || !w->set)
		return -ENOMEM;
	for (struct snapfs_snapset *s = sets; s; s = s->next) {
		size_t before = w->ndisks;

		if (s->state != SET_READY)
			continue;
		for (size_t i = 0; i < s->n; i++)
			if (s->disk[i].mech->watch && !snapfs_snapdisk_dropped(&s->disk[i]))
				w->disk[w->ndisks++] = &s->disk[i];
		if (w->ndisks > before) {
			s->watching++;
			w->set[w->nsets++] = s;
		}
	}
	return 0;
}

static void watch_all(struct watched *w)
{
	const struct snapfs_mechanism *const *mechs = snapfs_mechanism_list();

	for (size_t m = 0; mechs[m]; m++) {
		const struct snapfs_mechanism *mech = mechs[m];
		size_t n = 0;

		for (size_t i = 0; i < w->ndisks; i++)
			if (w->disk[i]->mech == mech)
				w->sub[n++] = w->disk[i];
		if (n)
			mech->watch(w->sub, n);
	}
}

/* The watcher is done with the sets of w: who waits to remove one goes on. */
static void unwatch(struct watched *w)
{
	pthread_mutex_lock(&sets_lock);
	for (size_t i = 0; i < w->nsets; i++)
		w->set[i]->watching--;
	pthread_cond_broadcast(&sets_cond);
	pthread_mutex_unlock(&sets_lock);
}

/* The directories of READY sets with a disk dropped since the last look
 * (*n of them; NULL when none or out of memory: the next look retries).
 * Under sets_lock. */
static char (*collect_dropped(size_t *n))[SNAPFS_NAME_MAX + 1]
{
	char (*dirs)[SNAPFS_NAME_MAX + 1] = NULL;
	size_t m = 0;

	*n = 0;
	for (struct snapfs_snapset *s = sets; s; s = s->next)
		if (s->state == SET_READY && !s->bytes_dropped)
			m++;
	if (!m || !(dirs = calloc(m, sizeof(*dirs))))
		return NULL;
	for (struct snapfs_snapset *s = sets; s; s = s->next) {
		if (s->state != SET_READY || s->bytes_dropped)
			continue;
		for (size_t i = 0; i < s->n; i++) {
			if (snapfs_snapdisk_dropped(&s->disk[i])) {
				s->bytes_dropped = true;
				memcpy(dirs[(*n)++], s->dir, sizeof(s->dir));
				break;
			}
		}
	}
	return dirs;
}

/* Cached bytes of a dropped snapshot would still answer reads (the old,
 * right bytes, but from a set that no longer holds): have them forgotten,
 * with no lock held, as the kernel may wait on reads in flight. */
static void forget_dropped(void)
{
	char (*dirs)[SNAPFS_NAME_MAX + 1];
	size_t n;

	if (!config.bytes_dropped)
		return;
	pthread_mutex_lock(&sets_lock);
	dirs = collect_dropped(&n);
	pthread_mutex_unlock(&sets_lock);
	for (size_t i = 0; i < n; i++)
		config.bytes_dropped(dirs[i]);
	free(dirs);
}

static void *watcher_main(void *arg)
{
	pthread_mutex_lock(&sets_lock);
	while (!stopping) {
		struct watched w = { 0 };
		struct timespec until;
		bool any;

		if (collect_watched(&w) < 0)
			watched_free(&w); /* nothing taken yet */
		any = w.ndisks > 0;
		pthread_mutex_unlock(&sets_lock);
		if (any)
			watch_all(&w);
		unwatch(&w);
		watched_free(&w);
		forget_dropped();
		pthread_mutex_lock(&sets_lock);
		clock_gettime(CLOCK_MONOTONIC, &until);
		if (any) {
			until.tv_nsec += SNAPFS_WATCH_MS * 1000000L;
			until.tv_sec += until.tv_nsec / 1000000000L;
			until.tv_nsec %= 1000000000L;
		} else {
			until.tv_sec += 1; /* a new set broadcasts sets_cond */
		}
		if (!stopping)
			pthread_cond_timedwait(&sets_cond, &sets_lock, &until);
	}
	pthread_mutex_unlock(&sets_lock);
	return NULL;
}

void snapfs_snapset_init(const struct snapfs_snapset_config *cfg)
{
	const struct snapfs_mechanism *const *mechs = snapfs_mechanism_list();

	static pthread_once_t once = PTHREAD_ONCE_INIT;
	sigset_t all, old;

	pthread_once(&once, init_cond);
	config = *cfg;
	stopping = false;
	for (size_t m = 0; mechs[m]; m++)
		if (mechs[m]->init)
			mechs[m]->init(cfg);
	/* Signals are for the FUSE loop's thread, never the reaper. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	reaper_started = pthread_create(&reaper, NULL, reaper_main, NULL) == 0;
	watcher_started = pthread_create(&watcher, NULL, watcher_main, NULL) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!reaper_started)
		snapfs_warn("no reaper thread: linger and removal retries are off");
	if (!watcher_started)
		snapfs_warn("no thread to watch the space that snapshots take: reflink clones "
			    "and backup jobs are refused");
}

static bool any_creating(void)
{
	for (struct snapfs_snapset *s = sets; s; s = s->next)
		if (s->state == SET_CREATING)
			return true;
	return false;
}

void snapfs_snapset_shutdown(void)
{
	const struct snapfs_mechanism *const *mechs = snapfs_mechanism_list();

	struct snapfs_snapset *all;

	pthread_mutex_lock(&sets_lock);
	stopping = true;
	pthread_cond_broadcast(&sets_cond);
	pthread_mutex_unlock(&sets_lock);
	if (reaper_started)
		pthread_join(reaper, NULL);
	reaper_started = false;
	if (watcher_started)
		pthread_join(watcher, NULL);
	watcher_started = false;

	pthread_mutex_lock(&sets_lock);
	while (any_creating())
		pthread_cond_wait(&sets_cond, &sets_lock);
	all = sets;
	sets = NULL;
	epochs_free();
	pthread_mutex_unlock(&sets_lock);
	while (all) {
		struct snapfs_snapset *next = all->next;

		if (all->refs)
			snapfs_info("guest %s: removing its snapshot set with %u file(s) open",
				    all->name, all->refs);
		destroy_set(all);
		all = next;
	}
	for (size_t m = 0; mechs[m]; m++)
		if (mechs[m]->shutdown)
			mechs[m]->shutdown();
}
