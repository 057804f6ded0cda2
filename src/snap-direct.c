/* The direct mechanism: a disk file of a guest that is shut off, on a
 * filesystem that cannot clone (ext4, NFS, tmpfs), read from the origin
 * itself, read-only, never written.  Nothing holds the file still, so a
 * guard stands in for a snapshot: whatever could change the file ends the
 * set, and the check runs after every read and before its bytes are
 * returned, so that no read that raced a change is ever answered.
 *
 * What ends it, each cheap enough to ask after every read:
 *  - a writer's lock: a qemu that opens the image for writing (the guest
 *    being started, qemu-io, qemu-img) takes its OFD locks before it writes
 *    a byte, and any other process may test them (F_OFD_GETLK) without
 *    taking them;
 *  - the file's ctime or size moving (any other writer, a truncate);
 *  - its name no longer leading to it (replaced or removed).
 * The watcher also asks libvirt, once a second, whether the guest runs, so
 * that the log can say the guest was started.  Starting the guest is never
 * held up: it starts, and the set fails loudly.
 *
 * Locking: a guard is written at take only; its tripped mark is atomic.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libvirt/libvirt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "snapfs.h"

/* qemu's file-posix locks a byte per permission it holds (base 100) and
 * per permission it denies others (base 200); 101 write, 102 write
 * unchanged, 103 resize: any of them is a writer. */
#define QEMU_LOCK_WRITE_START 101
#define QEMU_LOCK_WRITE_LEN 3
/* How often the watcher asks libvirt whether the guest still is shut off. */
#define STATE_CHECK_S 1.0
/* A file whose ctime is this recent may still be written within the same
 * tick of the coarse clock, unseen: the take waits until it is older. */
#define SETTLE_NS (50 * 1000000L)
#define SETTLE_TRIES 20

struct snapfs_guard {
	char uuid[VIR_UUID_STRING_BUFLEN];
	char *name;                   /* the domain's own name */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec ctime;
	struct timespec checked;      /* the watcher's last look (CLOCK_MONOTONIC) */
};

static const char *uri; /* read-only after init */

static void direct_init(const struct snapfs_snapset_config *cfg)
{
	uri = cfg->uri;
}

static int direct_plan(const struct snapfs_guest *g, const struct snapfs_disk *o,
		       const struct snapfs_lv *lv, struct snapfs_snapdisk *d)
{
	return 0;
}

static bool same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* A process holds fd's file open for writing through qemu's locks: 1, or
 * 0, or -errno. */
static int writer_locked(int fd)
{
	struct flock fl = {
		.l_type = F_WRLCK,
		.l_whence = SEEK_SET,
		.l_start = QEMU_LOCK_WRITE_START,
		.l_len = QEMU_LOCK_WRITE_LEN,
	};

	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		return -errno;
	return fl.l_type != F_UNLCK;
}

/* The file of d as its guard knows it, or why not (0 or -EIO). */
static int guard_test(const struct snapfs_snapdisk *d, char *why, size_t len)
{
	const struct snapfs_guard *gd = d->guard;
	struct stat st;
	int rc = writer_locked(d->fd);

	if (rc != 0) {
		snprintf(why, len, "%s %s", d->origin_path,
			 rc > 0 ? "is open for writing in a qemu (its image lock is held: the "
				  "guest was started, or qemu-io or qemu-img writes it)"
				: "cannot be tested for qemu's image locks");
		return -EIO;
	}
	/* The name first: a file renamed over it or removed also moves its
	 * ctime. */
	if (stat(d->origin_path, &st) < 0 || st.st_dev != gd->dev || st.st_ino != gd->ino) {
		snprintf(why, len, "%s was replaced or removed while it was read",
			 d->origin_path);
		return -EIO;
	}
	if (fstat(d->fd, &st) < 0 || st.st_size != gd->size || !same_time(&st.st_ctim, &gd->ctime)) {
		snprintf(why, len, "%s changed while it was read (another process wrote or "
			 "truncated it)", d->origin_path);
		return -EIO;
	}
	return 0;
}

/* Open d's origin and note what must stay as it is (d is taken, to be
 * removed, once its guard is made). */
static int guard_open(const struct snapfs_guest *g, struct snapfs_snapdisk *d)
{
	struct snapfs_guard *gd = calloc(1, sizeof(*gd));
	struct timespec now;
	struct stat st;
	char why[600];
	int fd;

	if (!gd || !(gd->name = strdup(g->name))) {
		free(gd);
		return -ENOMEM;
	}
	snprintf(gd->uuid, sizeof(gd->uuid), "%s", g->key);
	d->guard = gd;
	d->taken = true;
	fd = open(d->origin_path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
	if (fd < 0) {
		int rc = -errno;

		snapfs_error("guest %s disk %s: cannot open %s: %s", g->dir, d->target,
			     d->origin_path, strerror(-rc));
		return rc;
	}
	d->fd = fd;
	for (int tries = 0;; tries++) {
		if (fstat(fd, &st) < 0)
			return -errno;
		if (!S_ISREG(st.st_mode) || st.st_dev != d->origin_dev ||
		    st.st_ino != d->origin_ino) {
			snapfs_error("guest %s disk %s: %s is another file since it was listed",
				     g->dir, d->target, d->origin_path);
			return -ESTALE;
		}
		clock_gettime(CLOCK_REALTIME, &now);
		if ((now.tv_sec - st.st_ctim.tv_sec) * 1000000000L +
			    (now.tv_nsec - st.st_ctim.tv_nsec) >= SETTLE_NS)
			break;
		if (tries == SETTLE_TRIES) {
			snapfs_error("guest %s disk %s: %s is being written; not read", g->dir,
				     d->target, d->origin_path);
			return -EBUSY;
		}
		nanosleep(&(struct timespec){ .tv_nsec = SETTLE_NS }, NULL);
	}
	gd->dev = st.st_dev;
	gd->ino = st.st_ino;
	gd->size = st.st_size;
	gd->ctime = st.st_ctim;
	d->size = (uint64_t)st.st_size;
	d->allocated = (uint64_t)st.st_blocks * 512 < d->size ? (uint64_t)st.st_blocks * 512
							      : SNAPFS_ALL_DATA;
	if (guard_test(d, why, sizeof(why)) < 0) {
		snapfs_error("guest %s disk %s: not read: %s", g->dir, d->target, why);
		return -EBUSY;
	}
	return 0;
}

/* Nothing to take: the origin is opened and its guard set, all disks in
 * one go, and each is tested once more after the last is open. */
static int direct_take(const struct snapfs_guest *g, struct snapfs_snapdisk **ds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc = guard_open(g, ds[i]);

		if (rc < 0)
			return rc;
	}
	for (size_t i = 0; i < n; i++) {
		char why[600];

		if (guard_test(ds[i], why, sizeof(why)) < 0) {
			snapfs_error("guest %s disk %s: not read: %s", g->dir, ds[i]->target, why);
			return -EBUSY;
		}
	}
	return 0;
}

static int direct_open(const struct snapfs_guest *g, struct snapfs_snapdisk *d)
{
	return 0;
}

/* After every read: a tripped guard stays tripped, whatever the file does
 * later (a writer that went away has still written). */
static int direct_check(const struct snapfs_snapdisk *d, char *why, size_t len)
{
	if (snapfs_snapdisk_dropped(d)) {
		why[0] = '\0'; /* said when it tripped */
		return -EIO;
	}
	if (guard_test(d, why, len) == 0)
		return 0;
	/* The one mutable mark of a disk, as the watcher sets it. */
	if (!snapfs_snapdisk_drop((struct snapfs_snapdisk *)d))
		why[0] = '\0';
	return -EIO;
}

static void direct_remove(struct snapfs_snapdisk *d)
{
	struct snapfs_guard *gd = d->guard;

	d->guard = NULL;
	if (gd)
		free(gd->name);
	free(gd);
}

static void direct_where(const struct snapfs_snapdisk *d, char *out, size_t len)
{
	snprintf(out, len, "%s, read directly%s", d->origin_path,
		 snapfs_snapdisk_dropped(d) ? " (changed: no longer read)" : "");
}

static void direct_describe(const struct snapfs_snapdisk *d, char *out, size_t len)
{
	snprintf(out, len, "direct:%s", d->origin_path);
}

static void direct_report(FILE *f, const struct snapfs_snapdisk *d)
{
	fprintf(f, "  disk: %s origin=%s snapshot=direct guard=%s\n", d->file, d->origin_path,
		snapfs_snapdisk_dropped(d) ? "tripped" : "held");
}

/* Is the guest of gd running (or gone)?  Then why says so. */
static bool guest_started(const struct snapfs_guard *gd, char *why, size_t len)
{
	virConnectPtr conn = snapfs_libvirt_connect(uri);
	virDomainPtr dom = NULL;
	bool started = false;

	if (!conn)
		return false; /* libvirtd away: the locks still tell */
	dom = virDomainLookupByUUIDString(conn, gd->uuid);
	if (!dom)
		dom = virDomainLookupByName(conn, gd->name);
	if (dom && virDomainIsActive(dom) == 1) {
		snprintf(why, len, "the guest was started");
		started = true;
	}
	if (dom)
		virDomainFree(dom);
	virConnectClose(conn);
	return started;
}

/* Once a second: trip the guards of a guest that was started, and of any
 * file that changed while nobody read it. */
static void direct_watch(struct snapfs_snapdisk *const *ds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct snapfs_guard *gd = ds[i]->guard;
		char why[600];
		bool seen = false;

		if (!gd)
			continue;
		for (size_t j = 0; j < i && !seen; j++)
			seen = ds[j]->guard && !strcmp(ds[j]->guard->uuid, gd->uuid);
		if (seen || snapfs_snapdisk_dropped(ds[i]) ||
		    snapfs_elapsed(&gd->checked) < STATE_CHECK_S)
			continue;
		clock_gettime(CLOCK_MONOTONIC, &gd->checked);
		if (!guest_started(gd, why, sizeof(why)) && guard_test(ds[i], why, sizeof(why)) == 0)
			continue;
		for (size_t j = i; j < n; j++)
			if (ds[j]->guard && !strcmp(ds[j]->guard->uuid, gd->uuid) &&
			    snapfs_snapdisk_drop(ds[j]))
				snapfs_error("guest %s disk %s: %s; reads of this snapshot set fail "
					     "with EIO until it is released",
					     ds[j]->guest, ds[j]->file, why);
	}
}

const struct snapfs_mechanism snapfs_mech_direct = {
	.name = "direct",
	.init = direct_init,
	.plan = direct_plan,
	.take = direct_take,
	.open = direct_open,
	.check = direct_check,
	.remove = direct_remove,
	.where = direct_where,
	.describe = direct_describe,
	.report = direct_report,
	.watch = direct_watch,
};
