/* The RBD mechanism: one Ceph snapshot per disk, read through librbd.
 *
 * Names: "snapfs.HOST.MARK.NONCE", HOST this host's identity (-o host_id=,
 * /etc/machine-id by default), MARK the mount's owner mark: many hosts
 * share one cluster, and each snapfs removes only what its own mount made;
 * a user's snapshots and other hosts' are never touched.
 *
 * A snapshot pins every object the guest overwrites, and a full cluster
 * blocks the guest's writes: when the cluster of a held snapshot reports
 * near full, or its free space falls under -o rbd_reserve=, every snapshot
 * of snapfs there is removed and its readers get EIO, as those of an
 * overflowed LVM snapshot do.  Checked once a second while held.
 *
 * Snapshots are made and removed through an image opened for it (never
 * read-write in any other sense): when a running qemu holds the image's
 * exclusive lock, librbd asks that qemu to make the snapshot, and the lock
 * is never broken.  When nobody holds it, librbd takes it to make the
 * snapshot and keeps it until that image is closed: so that a guest that
 * starts writing never waits on snapfs for it (nor, after a crash of
 * snapfs, on the dead client's watch to time out), that image is closed
 * once the snapshot is made, and a removal opens one of its own.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "snapfs.h"

/* Read-only after init. */
static char prefix[128];
static struct snapfs_reserve reserve;
static const char *reserve_text = "?";

/* A snapshot whose removal failed: retried, never forgotten. */
struct pending {
	struct snapfs_retry link;
	struct snapfs_rbd_spec spec;
	char snap[128];
};
static struct snapfs_retries pending = SNAPFS_RETRIES_INIT;

static uint64_t mib(uint64_t bytes)
{
	return bytes >> 20;
}

void snapfs_rbd_snap_prefix(const char *host_id, const char *owner, char *out, size_t len)
{
	if (!owner)
		snprintf(out, len, "snapfs.%.32s.", host_id);
	else
		snprintf(out, len, "snapfs.%.32s.%.32s.", host_id, snapfs_owner_mark(owner));
}

void snapfs_host_id(char *out, size_t len)
{
	char raw[256] = "";
	FILE *f = fopen("/etc/machine-id", "re");
	size_t o = 0;

	if (!f || !fgets(raw, sizeof(raw), f))
		gethostname(raw, sizeof(raw) - 1);
	if (f)
		fclose(f);
	for (const char *p = raw; *p && o + 1 < len && o < 32; p++) {
		char c = *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : *p;

		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')
			out[o++] = c;
	}
	if (!o && len > 4)
		memcpy(out, "host", o = 4);
	out[o] = '\0';
}

static void rbd_init(const struct snapfs_snapset_config *cfg)
{
	char host[64];

	if (cfg->host_id)
		snprintf(host, sizeof(host), "%s", cfg->host_id);
	else
		snapfs_host_id(host, sizeof(host));
	snapfs_rbd_snap_prefix(host, cfg->owner, prefix, sizeof(prefix));
	reserve = cfg->rbd_reserve;
	reserve_text = cfg->rbd_reserve_text ? cfg->rbd_reserve_text : "?";
}

static void add_pending(const struct snapfs_rbd_spec *spec, const char *snap)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (!p) {
		snapfs_error("snapshot %s of %s/%s is left behind: out of memory; snapfs "
			     "--cleanup or the next start removes it",
			     snap, spec->pool, spec->image);
		return;
	}
	p->spec = *spec;
	snprintf(p->snap, sizeof(p->snap), "%s", snap);
	snapfs_retries_add(&pending, &p->link);
}

/* Room on the cluster of r for a snapshot: 0, or -ENOSPC with why; now:
 * asked of the cluster, else what its space thread saw last. */
static int room(struct snapfs_rbd *r, bool now, char *why, size_t len)
{
	uint64_t free_bytes, total, want;
	bool nearfull;
	int rc = now ? snapfs_rbd_space_now(r, &free_bytes, &total, &nearfull)
		     : snapfs_rbd_space(r, &free_bytes, &total, &nearfull);

	if (rc < 0) {
		snprintf(why, len, "its cluster's free space cannot be read: %s", strerror(-rc));
		return rc;
	}
	want = snapfs_reserve_bytes(&reserve, total);
	if (nearfull)
		snprintf(why, len, "its cluster reports being near full (ceph health)");
	else if (free_bytes < want)
		snprintf(why, len, "only %" PRIu64 " MiB free on its cluster, under the reserve "
			 "of %" PRIu64 " MiB (-o rbd_reserve=%s)",
			 mib(free_bytes), mib(want), reserve_text);
	else
		return 0;
	return -ENOSPC;
}

/* Before the freeze: the image, opened for snapshots, and room for one. */
static int rbd_plan(const struct snapfs_guest *g, const struct snapfs_disk *o,
		    const struct snapfs_lv *lv, struct snapfs_snapdisk *d)
{
	char err[512], name[300];
	int rc;

	if (!o->rbd)
		return -EINVAL;
	d->rbd = malloc(sizeof(*d->rbd));
	if (!d->rbd)
		return -ENOMEM;
	*d->rbd = *o->rbd;
	snapfs_rbd_name(d->rbd, name, sizeof(name));
	rc = snapfs_rbd_open(d->rbd, NULL, true, &d->rbd_head, err, sizeof(err));
	if (rc == 0)
		rc = snapfs_rbd_open(d->rbd, NULL, true, &d->rbd_maker, err, sizeof(err));
	if (rc == 0)
		rc = room(d->rbd_head, true, err, sizeof(err));
	if (rc < 0) {
		snapfs_rbd_close(d->rbd_maker);
		snapfs_rbd_close(d->rbd_head);
		d->rbd_maker = d->rbd_head = NULL;
	}
	if (rc < 0)
		snapfs_error("guest %s disk %s: RBD image %s not snapshotted: %s", g->dir,
			     d->target, name, err);
	return rc;
}

static void new_name(char *out, size_t len)
{
	uint32_t nonce;

	if (getrandom(&nonce, sizeof(nonce), 0) != sizeof(nonce))
		nonce = (uint32_t)time(NULL) ^ (uint32_t)getpid();
	snprintf(out, len, "%.100s%08" PRIx32, prefix, nonce);
}

/* Inside the freeze: one snapshot per disk, back to back. */
static int rbd_take(const struct snapfs_guest *g, struct snapfs_snapdisk **ds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct snapfs_snapdisk *d = ds[i];
		char name[300];
		int rc;

		new_name(d->rbd_snap, sizeof(d->rbd_snap));
		rc = snapfs_rbd_snap_create(d->rbd_maker, d->rbd_snap);
		if (rc < 0) {
			snapfs_rbd_name(d->rbd, name, sizeof(name));
			snapfs_error("guest %s disk %s: cannot snapshot RBD image %s: %s", g->dir,
				     d->target, name, strerror(-rc));
			return rc;
		}
		d->taken = true;
	}
	return 0;
}

/* After the thaw: the snapshot, opened for reads, and where it has data
 * (without it, all of the disk counts as data). */
static int rbd_open_snap(const struct snapfs_guest *g, struct snapfs_snapdisk *d)
{
	char err[512], name[300];
	int rc;

	/* It may hold the image's exclusive lock: give it back. */
	snapfs_rbd_close(d->rbd_maker);
	d->rbd_maker = NULL;
	rc = snapfs_rbd_open(d->rbd, d->rbd_snap, false, &d->rbd_img, err, sizeof(err));
	snapfs_rbd_name(d->rbd, name, sizeof(name));
	if (rc < 0) {
		snapfs_error("guest %s disk %s: snapshot %s@%s: %s", g->dir, d->target, name,
			     d->rbd_snap, err);
		return rc;
	}
	d->size = snapfs_rbd_size(d->rbd_img);
	d->allocated = SNAPFS_ALL_DATA;
	rc = snapfs_rbd_map(d->rbd_img, &d->map);
	if (rc == 0) {
		d->has_map = true;
		d->allocated = snapfs_thinmap_bytes(&d->map, 0, d->size);
	} else {
		snapfs_warn("guest %s disk %s: the allocation of %s@%s is not known (%s); all "
			    "of it counts as data",
			    g->dir, d->target, name, d->rbd_snap, strerror(-rc));
	}
	return 0;
}

int snapfs_rbd_disk_pread(const struct snapfs_snapdisk *d, void *buf, size_t len, uint64_t off)
{
	int rc = snapfs_snapdisk_dropped(d) ? -EIO : snapfs_rbd_read(d->rbd_img, buf, len, off);
	char key[400], name[300];

	if (rc == 0 || snapfs_snapdisk_dropped(d))
		return rc < 0 ? -EIO : 0;
	snapfs_rbd_name(d->rbd, name, sizeof(name));
	snprintf(key, sizeof(key), "rbd read %s %s %s", d->guest, d->file, d->rbd_snap);
	if (snapfs_log_first(key, strerror(-rc)))
		snapfs_error("guest %s disk %s: reading snapshot %s@%s failed: %s; the read "
			     "fails with EIO",
			     d->guest, d->file, name, d->rbd_snap, strerror(-rc));
	return -EIO;
}

/* After each read: a snapshot removed by someone else may have lost the
 * objects that read went to (librbd reads a missing one as zeroes), so a
 * read that ends after its removal is failed.  librbd knows of a removal
 * from the image header's notification, which the remover waits for. */
static int rbd_check(const struct snapfs_snapdisk *d, char *why, size_t len)
{
	char name[300];
	int gone;

	if (snapfs_snapdisk_dropped(d)) {
		why[0] = '\0'; /* said when it was dropped */
		return -EIO;
	}
	/* The image opened for snapshots watches its header. */
	gone = snapfs_rbd_snap_gone(d->rbd_head, d->rbd_snap);
	if (gone == 0)
		return 0;
	snapfs_rbd_name(d->rbd, name, sizeof(name));
	if (gone > 0 && !snapfs_snapdisk_drop((struct snapfs_snapdisk *)d))
		why[0] = '\0'; /* said already */
	else if (gone > 0)
		snprintf(why, len, "snapshot %s@%s was removed by someone else; every read of "
			 "this set fails with EIO until it is released", name, d->rbd_snap);
	else
		snprintf(why, len, "snapshot %s@%s cannot be checked: %s; failing reads", name,
			 d->rbd_snap, strerror(-gone));
	return -EIO;
}

/* Remove snapshot snap of spec's image through an image opened for it
 * alone, closed at once (with the exclusive lock it may have taken). */
static int remove_snap(const struct snapfs_rbd_spec *spec, const char *snap)
{
	struct snapfs_rbd *r;
	char err[512];
	int rc = snapfs_rbd_open(spec, NULL, true, &r, err, sizeof(err));

	if (rc < 0)
		return rc == -ENOENT ? 0 : rc; /* the image is gone, and its snapshots */
	rc = snapfs_rbd_snap_remove(r, snap);
	snapfs_rbd_close(r);
	return rc;
}

static void rbd_remove(struct snapfs_snapdisk *d)
{
	char name[300];
	int rc;

	snapfs_rbd_close(d->rbd_img);
	snapfs_rbd_close(d->rbd_maker);
	d->rbd_img = d->rbd_maker = NULL;
	rc = remove_snap(d->rbd, d->rbd_snap);
	snapfs_rbd_close(d->rbd_head);
	d->rbd_head = NULL;
	if (rc < 0) {
		snapfs_rbd_name(d->rbd, name, sizeof(name));
		snapfs_error("guest %s disk %s: snapshot %s@%s could not be removed (%s); "
			     "retrying in the background",
			     d->guest, d->file, name, d->rbd_snap, strerror(-rc));
		add_pending(d->rbd, d->rbd_snap);
	}
}

static void rbd_where(const struct snapfs_snapdisk *d, char *out, size_t len)
{
	char name[300];

	snapfs_rbd_name(d->rbd, name, sizeof(name));
	snprintf(out, len, "%.250s@%.100s%s", name, d->rbd_snap,
		 snapfs_snapdisk_dropped(d) ? " (dropped)" : "");
}

static void rbd_describe(const struct snapfs_snapdisk *d, char *out, size_t len)
{
	char where[400];

	rbd_where(d, where, sizeof(where));
	snprintf(out, len, "rbd:%.390s", where);
}

static void rbd_report(FILE *f, const struct snapfs_snapdisk *d)
{
	char name[300];

	snapfs_rbd_name(d->rbd, name, sizeof(name));
	fprintf(f, "  disk: %s origin=%s snapshot=%s@%s reserve=%s snap=%s\n", d->file, name,
		name, d->rbd_snap, reserve_text, snapfs_snapdisk_dropped(d) ? "dropped" : "held");
}

static bool same_cluster(const struct snapfs_rbd_spec *a, const struct snapfs_rbd_spec *b)
{
	return !strcmp(a->conf, b->conf) && !strcmp(a->mon_host, b->mon_host) &&
	       !strcmp(a->user, b->user) && !strcmp(a->key, b->key);
}

/* Once a second: drop every snapshot on a cluster near full or under the
 * reserve, removing it at once so that its objects are given back. */
static void rbd_watch(struct snapfs_snapdisk *const *ds, size_t n)
{
	static struct timespec looked;
	char why[512];

	if (snapfs_elapsed(&looked) < 1)
		return;
	clock_gettime(CLOCK_MONOTONIC, &looked);
	for (size_t i = 0; i < n; i++) {
		if (snapfs_snapdisk_dropped(ds[i]) || !ds[i]->rbd_head)
			continue;
		if (room(ds[i]->rbd_head, false, why, sizeof(why)) != -ENOSPC)
			continue;
		for (size_t j = i; j < n; j++) {
			struct snapfs_snapdisk *d = ds[j];
			char name[300];
			int rc;

			if (!d->rbd_head || !same_cluster(d->rbd, ds[i]->rbd) ||
			    !snapfs_snapdisk_drop(d))
				continue;
			rc = remove_snap(d->rbd, d->rbd_snap);
			snapfs_rbd_name(d->rbd, name, sizeof(name));
			snapfs_error("guest %s disk %s: snapshot %s@%s dropped: %s; reads of this "
				     "snapshot set fail with EIO until it is released%s%s",
				     d->guest, d->file, name, d->rbd_snap, why,
				     rc < 0 ? "; removing it failed: " : "",
				     rc < 0 ? strerror(-rc) : "");
		}
	}
}


/* Retries of failed removals, one every 5 seconds at most. */
static void rbd_tick(void)
{
	struct pending *retry = (struct pending *)snapfs_retries_due(&pending);

	if (!retry)
		return;
	if (remove_snap(&retry->spec, retry->snap) == 0)
		snapfs_info("snapshot %s@%s removed at last", retry->spec.image, retry->snap);
	else
		add_pending(&retry->spec, retry->snap);
	explicit_bzero(retry->spec.key, sizeof(retry->spec.key));
	free(retry);
}

static void rbd_shutdown(void)
{
	struct pending *left = (struct pending *)snapfs_retries_take_all(&pending);

	while (left) {
		struct pending *next = (struct pending *)left->link.next;

		if (remove_snap(&left->spec, left->snap) < 0)
			snapfs_error("snapshot %s/%s@%s is left behind; snapfs --cleanup or the "
				     "next start removes it",
				     left->spec.pool, left->spec.image, left->snap);
		explicit_bzero(left->spec.key, sizeof(left->spec.key));
		free(left);
		left = next;
	}
	snapfs_rbd_shutdown();
}

const struct snapfs_mechanism snapfs_mech_rbd = {
	.name = "rbd",
	.init = rbd_init,
	.plan = rbd_plan,
	.take = rbd_take,
	.open = rbd_open_snap,
	.check = rbd_check,
	.remove = rbd_remove,
	.where = rbd_where,
	.describe = rbd_describe,
	.report = rbd_report,
	.watch = rbd_watch,
	.tick = rbd_tick,
	.shutdown = rbd_shutdown,
};
