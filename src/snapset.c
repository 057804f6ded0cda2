/* Snapshot sets: the first open of any file of a guest snapshots all of its
 * disks (LVM snapshots of its LVs, reflink clones of its files); every file
 * of the guest opened while the set is held reads from it; the last release
 * removes it (after the linger time).
 *
 * Locking: sets_lock protects the list of sets, each set's refs, state and
 * idle time, and the pending-removal list.  It is never held across an
 * lvcreate or lvremove: a set being made is in state CREATING, and others
 * who want it wait on sets_cond, while listings and other guests' opens go
 * on.  A set's disks are read-only once it is READY.
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
	bool invalid_logged;         /* under sets_lock */
	bool frozen;                 /* taken with the guest frozen */
	struct snapfs_snapset *next;
};

/* A snapshot whose removal failed: retried by the reaper, never forgotten. */
struct pending {
	char vg[128], lv[128];
	struct pending *next;
};

static pthread_mutex_t sets_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sets_cond; /* on CLOCK_MONOTONIC, made in snapfs_snapset_init */
static struct snapfs_snapset *sets;   /* under sets_lock */
static struct pending *pending;       /* under sets_lock */
static bool stopping;                 /* under sets_lock */
static pthread_t reaper;
static bool reaper_started;
static pthread_t space_watch;
static bool space_watch_started;
static struct snapfs_snapset_config config; /* read-only after init */
static unsigned name_seq;             /* under sets_lock */

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

static double elapsed(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - since->tv_sec) +
	       (double)(now.tv_nsec - since->tv_nsec) / 1e9;
}

static void free_set(struct snapfs_snapset *s)
{
	for (size_t i = 0; i < s->n; i++) {
		snapfs_partitions_free(&s->disk[i].parts);
		snapfs_thinmap_free(&s->disk[i].map);
		free(s->disk[i].origin_path);
		if (s->disk[i].chain) {
			snapfs_chain_close(s->disk[i].chain);
			free(s->disk[i].chain);
		}
	}
	free(s->disk);
	free(s->name);
	free(s);
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
	pthread_mutex_lock(&sets_lock);
	p->next = pending;
	pending = p;
	pthread_cond_broadcast(&sets_cond);
	pthread_mutex_unlock(&sets_lock);
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
		/* A clone has no name: its last descriptor takes it away. */
		if (d->clone_fd >= 0) {
			close(d->clone_fd);
			d->clone_fd = -1;
		}
		if (d->kind != SNAPFS_ORIGIN_LV || !d->snap[0])
			continue;
		if (snapfs_lvm_snapshot_remove(d->vg, d->snap, config.owner) < 0) {
			snapfs_error("guest %s disk %s: snapshot %s/%s could not be removed; "
				     "retrying in the background",
				     s->name, d->file, d->vg, d->snap);
			add_pending(d->vg, d->snap);
		}
	}
}

/* "vda.raw=vg/snap, vdb.raw=reflink:/path" for log lines. */
static void describe_disks(const struct snapfs_snapset *s, char *out, size_t outlen)
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < s->n && o < outlen; i++) {
		const struct snapfs_snapdisk *d = &s->disk[i];

		if (d->kind == SNAPFS_ORIGIN_FILE)
			o += (size_t)snprintf(out + o, outlen - o, "%s%s=reflink:%s", i ? ", " : "",
					      d->file, d->origin_path);
		else
			o += (size_t)snprintf(out + o, outlen - o, "%s%s=%s/%s", i ? ", " : "",
					      d->file, d->vg, d->snap[0] ? d->snap : "(none)");
	}
}

static void destroy_set(struct snapfs_snapset *s)
{
	struct timespec t0;
	char list[1024];

	describe_disks(s, list, sizeof(list));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	remove_disks(s, s->n);
	snapfs_info("guest %s: snapshot set removed in %.2fs: %s", s->name, elapsed(&t0), list);
	free_set(s);
}

static void make_snap_name(const char *origin, char *out, size_t outlen)
{
	unsigned seq;

	pthread_mutex_lock(&sets_lock);
	seq = name_seq++;
	pthread_mutex_unlock(&sets_lock);
	/* LV names stop at 127 bytes; the origin's name is cut to fit.  The
	 * mount's mark keeps two snapfs mounts' names apart. */
	size_t plen = strlen(SNAPFS_OWNER_TAG_PREFIX);
	const char *mark = strncmp(config.owner, SNAPFS_OWNER_TAG_PREFIX, plen) ? config.owner
									      : config.owner + plen;

	snprintf(out, outlen, "%.80s_snapfs_%.8s_%lx_%u", origin, mark,
		 (unsigned long)time(NULL), seq);
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

	if (!fz)
		return;
	if (snapfs_thaw(fz, &why) < 0)
		snapfs_error("guest %s: THAW FAILED: %s; its filesystems may still be frozen "
			     "(virsh domfsthaw %s)",
			     g->dir, why ? why : "?", g->dir);
	else
		snapfs_info("guest %s: filesystems thawed after %.2fs", g->dir,
			    elapsed(frozen_at));
	snapfs_freeze_close(fz);
}

static uint64_t mib(uint64_t bytes)
{
	return bytes >> 20;
}

/* Before a guest is frozen: is there room for a clone of the file disk
 * d at all?  0, or -ENOSPC (logged) when free space is already under the
 * reserve, or -errno. */
static int check_room(const struct snapfs_guest *g, const struct snapfs_disk *d)
{
	CLEANUP_CLOSE int fd = open(d->path, O_PATH | O_CLOEXEC);
	struct snapfs_fsinfo fs;
	uint64_t free_bytes, total, reserve;
	int rc;

	if (!space_watch_started) {
		snapfs_error("guest %s disk %s: not cloned: nothing watches the space clones "
			     "take", g->dir, d->target);
		return -EAGAIN;
	}
	if (fd < 0) {
		rc = -errno;
		snapfs_error("guest %s disk %s: cannot open %s: %s", g->dir, d->target, d->path,
			     strerror(-rc));
		return rc;
	}
	rc = snapfs_reflink_space(fd, &free_bytes, &total);
	if (rc < 0)
		return rc;
	reserve = snapfs_reserve_bytes(&config.reserve, total);
	if (free_bytes >= reserve)
		return 0;
	snapfs_reflink_fsinfo(fd, d->path, &fs);
	snapfs_error("guest %s disk %s: not cloned: only %" PRIu64 " MiB free on %s, under the "
		     "reserve of %" PRIu64 " MiB (-o reflink_reserve=%s)",
		     g->dir, d->target, mib(free_bytes), fs.mount, mib(reserve),
		     config.reserve_text);
	return -ENOSPC;
}

/* Take the snapshot of d, with the guest frozen: lvcreate, or a reflink
 * clone (opened here: it has no name to open later). */
static int snapshot_disk(const struct snapfs_guest *g, struct snapfs_snapdisk *d)
{
	CLEANUP_FREE char *why = NULL;
	int rc;

	if (d->kind == SNAPFS_ORIGIN_FILE) {
		rc = snapfs_reflink_clone(d->origin_path, d->origin_dev, d->origin_ino,
					  &d->clone_fd, &d->fd, &d->size);
		if (rc < 0)
			snapfs_error("guest %s disk %s: reflink clone of %s failed: %s", g->dir,
				     d->target, d->origin_path,
				     rc == -ESTALE ? "another file has its name since it was listed"
						   : strerror(-rc));
		return rc;
	}
	/* d->path holds the name until the device is opened. */
	rc = snapfs_lvm_snapshot_create(&d->lv, d->path, config.cow_size, config.owner, &why);
	if (rc < 0) {
		snapfs_error("guest %s disk %s: snapshot of %s/%s failed: %s", g->dir, d->target,
			     d->vg, d->origin, why ? why : strerror(-rc));
		return rc;
	}
	snprintf(d->snap, sizeof(d->snap), "%.127s", d->path);
	return 0;
}

/* After the thaw: open an LV's snapshot (a clone is open already). */
static int open_snapshot(const struct snapfs_guest *g, struct snapfs_snapdisk *d)
{
	struct stat st;
	int fd, rc;

	d->allocated = SNAPFS_ALL_DATA;
	if (d->kind == SNAPFS_ORIGIN_FILE) {
		snapfs_reflink_fsinfo(d->fd, d->origin_path, &d->fs);
		d->fs_dev = fstat(d->fd, &st) == 0 ? st.st_dev : 0;
		if (d->fs_dev && (uint64_t)st.st_blocks * 512 < d->size)
			d->allocated = (uint64_t)st.st_blocks * 512;
		return 0;
	}
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
	return 0;
}

/* Where the thin snapshot of disk i has data, for its holes and st_blocks.
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
	const struct snapfs_lv *lv = depth ? &o->layer[depth - 1].lv : &o->lv;

	d->fd = d->dfd = d->clone_fd = -1;
	d->guest = s->name;
	d->kind = o->kind;
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
	if (d->kind == SNAPFS_ORIGIN_FILE) {
		d->origin_dev = o->dev;
		d->origin_ino = o->ino;
		if (!(d->origin_path = strdup(o->path)))
			return -ENOMEM;
		return check_room(g, o);
	}
	d->lv = *lv;
	snprintf(d->vg, sizeof(d->vg), "%s", lv->vg);
	snprintf(d->origin, sizeof(d->origin), "%s", lv->lv);
	make_snap_name(d->origin, d->path, sizeof(d->path));
	return 0;
}

/* The partitions of disk d's view, and what of them holds data. */
static int read_partitions(const struct snapfs_guest *g, struct snapfs_snapdisk *d)
{
	int rc;

	if (d->view.kind == SNAPFS_IMAGE_QCOW2)
		rc = snapfs_partitions_read_from(snapfs_chain_read, d->chain, d->view.size,
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
		char lv[128];

		if (k == d->nlayers ? name != NULL
				    : !name || snapfs_backing_lv(d->vg, name, NULL, lv, sizeof(lv),
								why) < 0 ||
					      strcmp(lv, d[k + 1].origin)) {
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

	d->container = (struct snapfs_image){ .kind = SNAPFS_IMAGE_DEVICE, .dev = d,
					      .size = d->size, .allocated = d->allocated };
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

/* Snapshot every disk (the guest frozen only for the lvcreate calls and
 * the clones), then open the snapshots.  All or nothing. */
static int create_set(struct snapfs_snapset *s, const struct snapfs_guest *g)
{
	struct snapfs_freeze *fz = NULL;
	struct timespec frozen_at;
	size_t made, n = count_disks(g);
	int rc = 0;

	s->disk = calloc(n ? n : 1, sizeof(*s->disk));
	if (!s->disk)
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
	for (made = 0; made < s->n; made++) {
		rc = snapshot_disk(g, &s->disk[made]);
		if (rc < 0)
			break;
	}
	thaw_guest(g, fz, &frozen_at);
	if (rc < 0)
		goto undo;
	for (size_t i = 0; i < s->n; i++) {
		struct snapfs_snapdisk *d = &s->disk[i];

		rc = open_snapshot(g, d);
		if (rc < 0)
			goto undo;
		if (d->kind == SNAPFS_ORIGIN_LV && d->lv.thin)
			read_thin_map(g, d);
		d->dfd = snapfs_device_open_direct(d->fd, &d->dio_align);
		if (d->dfd < 0)
			snapfs_debug(SNAPFS_DBG_SNAP,
				     "guest %s disk %s: no O_DIRECT on %s (%s); reads are cached",
				     g->dir, d->target,
				     d->kind == SNAPFS_ORIGIN_FILE ? "its clone" : d->path,
				     strerror(-d->dfd));
	}
	/* Every snapshot open: a disk's view reads its layers'. */
	for (size_t i = 0; i < s->n; i++) {
		if (s->disk[i].depth)
			continue;
		rc = set_images(g, &s->disk[i]);
		if (rc < 0)
			goto undo;
	}
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
}

static bool same_origin(const struct snapfs_snapdisk *d, const struct snapfs_disk *o)
{
	if (d->kind != o->kind || strcmp(d->file, o->file))
		return false;
	if (d->kind == SNAPFS_ORIGIN_FILE)
		return !strcmp(d->origin_path, o->path);
	return !strcmp(d->vg, o->lv.vg) && !strcmp(d->origin, o->lv.lv);
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
			if (strcmp(d[k].vg, o->layer[k - 1].lv.vg) ||
			    strcmp(d[k].origin, o->layer[k - 1].lv.lv))
				return false;
		j += 1 + d->nlayers;
	}
	return true;
}

static bool dropped(const struct snapfs_snapdisk *d)
{
	return __atomic_load_n(&d->dropped, __ATOMIC_SEQ_CST);
}

static bool set_invalid(const struct snapfs_snapset *s)
{
	struct snapfs_cow cow;

	if (s->invalid_logged)
		return true;
	for (size_t i = 0; i < s->n; i++) {
		if (s->disk[i].kind == SNAPFS_ORIGIN_FILE) {
			if (dropped(&s->disk[i]))
				return true;
		} else if (snapfs_dm_status(s->disk[i].dm_name, &cow) == 0 && !cow.valid) {
			return true;
		}
	}
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
	snapfs_info("guest %s: snapshot set created in %.2fs: %s", s->name, elapsed(&t0), list);
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

static int check_one(struct snapfs_snapset *s, const struct snapfs_snapdisk *d);

int snapfs_snapset_check(struct snapfs_snapset *s, const struct snapfs_snapdisk *d)
{
	for (size_t k = 0; k <= d->nlayers; k++)
		if (check_one(s, &d[k]) < 0)
			return -EIO;
	return 0;
}

static int check_one(struct snapfs_snapset *s, const struct snapfs_snapdisk *d)
{
	struct snapfs_cow cow;
	int rc;
	bool first;

	/* A dropped clone: the drop was logged, with the reason. */
	if (d->kind == SNAPFS_ORIGIN_FILE)
		return dropped(d) ? -EIO : 0;
	rc = snapfs_dm_status(d->dm_name, &cow);
	if (rc == 0 && cow.valid)
		return 0;
	pthread_mutex_lock(&sets_lock);
	first = !s->invalid_logged;
	s->invalid_logged = true;
	pthread_mutex_unlock(&sets_lock);
	if (first && rc == 0)
		snapfs_error("guest %s disk %s: snapshot %s/%s is invalid (its COW area filled "
			     "up); every read of this set fails with EIO until it is released. "
			     "Raise -o cow_size= (now %s) or let LVM extend snapshots "
			     "(snapshot_autoextend_threshold)",
			     s->name, d->file, d->vg, d->snap, config.cow_size);
	else if (first)
		snapfs_error("guest %s disk %s: cannot check snapshot %s/%s: %s; failing reads",
			     s->name, d->file, d->vg, d->snap, strerror(-rc));
	return -EIO;
}

/* The disk of a set that is READY, or NULL.  Under sets_lock. */
static const struct snapfs_snapdisk *ready_disk(const struct snapfs_snapset *s,
						const char *file)
{
	return s && s->state == SET_READY ? snapfs_snapset_disk(s, file) : NULL;
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
		if (d->kind == SNAPFS_ORIGIN_FILE)
			snprintf(out->snap, sizeof(out->snap), "unnamed reflink clone on %s%s",
				 d->fs.mount, dropped(d) ? " (dropped)" : "");
		else
			snprintf(out->snap, sizeof(out->snap), "%s/%s", d->vg, d->snap);
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

/* COW use of a classic snapshot in percent, or -1 (thin, or unknown). */
static int cow_percent(const struct snapfs_snapdisk *d, bool *valid)
{
	struct snapfs_cow cow;

	*valid = true;
	if (d->kind != SNAPFS_ORIGIN_LV || snapfs_dm_status(d->dm_name, &cow) < 0)
		return -1;
	*valid = cow.valid;
	if (!cow.valid)
		return 100;
	return cow.total ? (int)(cow.used * 100 / cow.total) : -1;
}

/* Warn when a held snapshot's COW area passes 80% and again at 95%. */
static void watch_cow(void)
{
	for (struct snapfs_snapset *s = sets; s; s = s->next) {
		if (s->state != SET_READY)
			continue;
		for (size_t i = 0; i < s->n; i++) {
			struct snapfs_snapdisk *d = &s->disk[i];
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
				    s->name, d->file, d->vg, d->snap, pct, config.cow_size);
		}
	}
}

/* The status view's line of a clone: where it lives, and the room left. */
static void report_clone(FILE *f, const struct snapfs_snapdisk *d)
{
	uint64_t free_bytes = 0, total = 0;

	snapfs_reflink_space(d->fd, &free_bytes, &total);
	fprintf(f, "  disk: %s origin=%s snapshot=reflink fs=%s (%s) free=%" PRIu64 "MiB "
		   "reserve=%" PRIu64 "MiB clone=%s\n",
		d->file, d->origin_path, d->fs.mount, d->fs.type, mib(free_bytes),
		mib(snapfs_reserve_bytes(&config.reserve, total)),
		dropped(d) ? "dropped" : "held");
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
			s->name, when, elapsed(&s->created), s->refs,
			s->frozen ? "frozen" : "crash");
		for (size_t i = 0; i < s->n; i++) {
			const struct snapfs_snapdisk *d = &s->disk[i];
			bool valid;
			int pct;

			if (d->kind == SNAPFS_ORIGIN_FILE) {
				report_clone(f, d);
				continue;
			}
			pct = cow_percent(d, &valid);
			fprintf(f, "  disk: %s origin=%s/%s snapshot=%s/%s", d->file, d->vg,
				d->origin, d->vg, d->snap);
			if (!valid)
				fprintf(f, " cow=invalid\n");
			else if (pct >= 0)
				fprintf(f, " cow=%d%%\n", pct);
			else
				fprintf(f, " cow=thin\n");
		}
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

/* Removes sets idle past the linger time, and retries failed removals. */
static void *reaper_main(void *arg)
{
	pthread_mutex_lock(&sets_lock);
	while (!stopping) {
		struct snapfs_snapset *victim = NULL;
		struct pending *retry = NULL;

		for (struct snapfs_snapset *s = sets; s && !victim; s = s->next)
			if (s->state == SET_READY && s->refs == 0 &&
			    elapsed(&s->idle_since) >= config.linger)
				victim = s;
		if (victim)
			retire_set(victim);
		if (!victim && pending) {
			retry = pending;
			pending = retry->next;
		}
		if (victim || retry) {
			pthread_mutex_unlock(&sets_lock);
			if (victim)
				destroy_set(victim);
			if (retry) {
				if (snapfs_lvm_snapshot_remove(retry->vg, retry->lv,
							       config.owner) == 0)
					snapfs_info("snapshot %s/%s removed at last", retry->vg,
						    retry->lv);
				else
					add_pending(retry->vg, retry->lv);
				free(retry);
			}
			pthread_mutex_lock(&sets_lock);
			if (retry)
				goto wait;
			continue;
		}
wait:
		watch_cow();
		struct timespec until;

		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += pending ? 5 : 1;
		pthread_cond_timedwait(&sets_cond, &sets_lock, &until);
	}
	pthread_mutex_unlock(&sets_lock);
	return NULL;
}

/* ---- the space of the filesystems that hold clones ----------------------
 *
 * A clone pins every block the guest overwrites after it was made.  The
 * guest's writes must never fail for it: when a filesystem's free space
 * falls under the reserve, every clone on it is dropped (its blocks given
 * back at once) and its readers get EIO from then on, as those of an
 * overflowed LVM snapshot do.  Checked ten times a second while clones are
 * held: a statvfs is cheap, and a guest writes fast. */
#define SPACE_WATCH_MS 100

/* A filesystem under its reserve: the st_dev of one of its clones, or 0.
 * Under sets_lock. */
static dev_t short_filesystem(uint64_t *free_out, uint64_t *reserve_out)
{
	for (struct snapfs_snapset *s = sets; s; s = s->next) {
		if (s->state != SET_READY)
			continue;
		for (size_t i = 0; i < s->n; i++) {
			const struct snapfs_snapdisk *d = &s->disk[i];
			uint64_t free_bytes, total;

			if (d->kind != SNAPFS_ORIGIN_FILE || dropped(d) ||
			    snapfs_reflink_space(d->fd, &free_bytes, &total) < 0)
				continue;
			*reserve_out = snapfs_reserve_bytes(&config.reserve, total);
			if (free_bytes < *reserve_out) {
				*free_out = free_bytes;
				return d->fs_dev ? d->fs_dev : (dev_t)-1;
			}
		}
	}
	return 0;
}

/* A clone on the filesystem dev not dropped yet, marked dropped; its set
 * gets a reference, so that it outlives the ftruncate.  Under sets_lock. */
static struct snapfs_snapdisk *next_on(dev_t dev, struct snapfs_snapset **set)
{
	for (struct snapfs_snapset *s = sets; s; s = s->next) {
		if (s->state != SET_READY)
			continue;
		for (size_t i = 0; i < s->n; i++) {
			struct snapfs_snapdisk *d = &s->disk[i];

			if (d->kind != SNAPFS_ORIGIN_FILE || dropped(d) ||
			    (d->fs_dev ? d->fs_dev : (dev_t)-1) != dev)
				continue;
			/* Readers check the mark after each read: a read that
			 * ends after the blocks went fails. */
			__atomic_store_n(&d->dropped, true, __ATOMIC_SEQ_CST);
			s->refs++;
			*set = s;
			return d;
		}
	}
	return NULL;
}

static void drop_clones(dev_t dev, uint64_t free_bytes, uint64_t reserve)
{
	struct snapfs_snapset *s;
	struct snapfs_snapdisk *d;

	pthread_mutex_lock(&sets_lock);
	while ((d = next_on(dev, &s))) {
		pthread_mutex_unlock(&sets_lock);
		int rc = snapfs_reflink_drop(d->clone_fd);

		snapfs_error("guest %s disk %s: reflink clone of %s dropped: %" PRIu64 " MiB free "
			     "on %s, under the reserve of %" PRIu64 " MiB (-o reflink_reserve=%s); "
			     "reads of this snapshot set fail with EIO until it is released%s%s",
			     s->name, d->file, d->origin_path, mib(free_bytes), d->fs.mount,
			     mib(reserve), config.reserve_text,
			     rc < 0 ? "; giving its blocks back failed: " : "",
			     rc < 0 ? strerror(-rc) : "");
		snapfs_snapset_release(s);
		pthread_mutex_lock(&sets_lock);
	}
	pthread_mutex_unlock(&sets_lock);
}

/* Under sets_lock.  A set being made is not looked at: its disks are its
 * maker's until it is READY. */
static bool any_clone(void)
{
	for (struct snapfs_snapset *s = sets; s; s = s->next)
		for (size_t i = 0; s->state == SET_READY && i < s->n; i++)
			if (s->disk[i].kind == SNAPFS_ORIGIN_FILE && !dropped(&s->disk[i]))
				return true;
	return false;
}

static void *space_watch_main(void *arg)
{
	pthread_mutex_lock(&sets_lock);
	while (!stopping) {
		uint64_t free_bytes = 0, reserve = 0;
		dev_t dev = short_filesystem(&free_bytes, &reserve);
		struct timespec until;

		if (dev) {
			pthread_mutex_unlock(&sets_lock);
			drop_clones(dev, free_bytes, reserve);
			pthread_mutex_lock(&sets_lock);
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &until);
		if (any_clone()) {
			until.tv_nsec += SPACE_WATCH_MS * 1000000L;
			until.tv_sec += until.tv_nsec / 1000000000L;
			until.tv_nsec %= 1000000000L;
		} else {
			until.tv_sec += 1; /* a new set broadcasts sets_cond */
		}
		pthread_cond_timedwait(&sets_cond, &sets_lock, &until);
	}
	pthread_mutex_unlock(&sets_lock);
	return NULL;
}

void snapfs_snapset_init(const struct snapfs_snapset_config *cfg)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	sigset_t all, old;

	pthread_once(&once, init_cond);
	config = *cfg;
	stopping = false;
	/* Signals are for the FUSE loop's thread, never the reaper. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	reaper_started = pthread_create(&reaper, NULL, reaper_main, NULL) == 0;
	space_watch_started = pthread_create(&space_watch, NULL, space_watch_main, NULL) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!reaper_started)
		snapfs_warn("no reaper thread: linger and removal retries are off");
	if (!space_watch_started)
		snapfs_warn("no thread to watch the space of reflink clones: -o "
			    "reflink_reserve= is not enforced");
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
	struct snapfs_snapset *all;
	struct pending *left;

	pthread_mutex_lock(&sets_lock);
	stopping = true;
	pthread_cond_broadcast(&sets_cond);
	pthread_mutex_unlock(&sets_lock);
	if (reaper_started)
		pthread_join(reaper, NULL);
	reaper_started = false;
	if (space_watch_started)
		pthread_join(space_watch, NULL);
	space_watch_started = false;

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
	/* One last try for what could not be removed before. */
	pthread_mutex_lock(&sets_lock);
	left = pending;
	pending = NULL;
	pthread_mutex_unlock(&sets_lock);
	while (left) {
		struct pending *next = left->next;

		if (snapfs_lvm_snapshot_remove(left->vg, left->lv, config.owner) < 0)
			snapfs_error("snapshot %s/%s is left behind; snapfs --cleanup "
				     "or the next start removes it", left->vg, left->lv);
		free(left);
		left = next;
	}
}
