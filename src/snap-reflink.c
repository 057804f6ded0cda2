/* The reflink mechanism: a clone (FICLONE) of each file disk into an
 * unnamed file of its directory, gone with its last descriptor.
 *
 * A clone pins every block the guest overwrites after it was made.  The
 * guest's writes must never fail for it: when a filesystem's free space
 * falls under the reserve, every clone on it is dropped (its blocks given
 * back at once) and its readers get EIO from then on, as those of an
 * overflowed LVM snapshot do.  The watcher checks ten times a second while
 * clones are held: a statvfs is cheap, and a guest writes fast.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "snapfs.h"

static struct snapfs_reserve reserve;   /* read-only after init */
static const char *reserve_text;

static void reflink_init(const struct snapfs_snapset_config *cfg)
{
	reserve = cfg->reserve;
	reserve_text = cfg->reserve_text;
}

static uint64_t mib(uint64_t bytes)
{
	return bytes >> 20;
}

/* Before a guest is frozen: is there room for a clone of o's origin at
 * all?  0, or -ENOSPC (logged) when free space is already under the
 * reserve, or -errno. */
static int check_room(const struct snapfs_guest *g, const struct snapfs_snapdisk *o)
{
	CLEANUP_CLOSE int fd = open(o->origin_path, O_PATH | O_CLOEXEC);
	struct snapfs_fsinfo fs;
	uint64_t free_bytes, total, want;
	int rc;

	if (fd < 0) {
		rc = -errno;
		snapfs_error("guest %s disk %s: cannot open %s: %s", g->dir, o->target,
			     o->origin_path, strerror(-rc));
		return rc;
	}
	rc = snapfs_reflink_space(fd, &free_bytes, &total);
	if (rc < 0)
		return rc;
	want = snapfs_reserve_bytes(&reserve, total);
	if (free_bytes >= want)
		return 0;
	snapfs_reflink_fsinfo(fd, o->origin_path, &fs);
	snapfs_error("guest %s disk %s: not cloned: only %" PRIu64 " MiB free on %s, under the "
		     "reserve of %" PRIu64 " MiB (-o reflink_reserve=%s)",
		     g->dir, o->target, mib(free_bytes), fs.mount, mib(want), reserve_text);
	return -ENOSPC;
}

/* d's origin (the disk's file, or a layer's) is set by the caller. */
static int reflink_plan(const struct snapfs_guest *g, const struct snapfs_disk *o,
			const struct snapfs_lv *lv, struct snapfs_snapdisk *d)
{
	return check_room(g, d);
}

/* The clone is opened here: it has no name to open later. */
static int reflink_take(const struct snapfs_guest *g, struct snapfs_snapdisk **ds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct snapfs_snapdisk *d = ds[i];
		int rc = snapfs_reflink_clone(d->origin_path, d->origin_dev, d->origin_ino,
					      &d->clone_fd, &d->fd, &d->size);

		if (rc < 0) {
			snapfs_error("guest %s disk %s: reflink clone of %s failed: %s", g->dir,
				     d->target, d->origin_path,
				     rc == -ESTALE ? "another file has its name since it was listed"
						   : strerror(-rc));
			return rc;
		}
		d->taken = true;
	}
	return 0;
}

static int reflink_open(const struct snapfs_guest *g, struct snapfs_snapdisk *d)
{
	struct stat st;

	d->allocated = SNAPFS_ALL_DATA;
	snapfs_reflink_fsinfo(d->fd, d->origin_path, &d->fs);
	d->fs_dev = fstat(d->fd, &st) == 0 ? st.st_dev : 0;
	if (d->fs_dev && (uint64_t)st.st_blocks * 512 < d->size)
		d->allocated = (uint64_t)st.st_blocks * 512;
	return 0;
}

/* A dropped clone: the drop was logged, with the reason. */
static int reflink_check(const struct snapfs_snapdisk *d, char *why, size_t len)
{
	if (!snapfs_snapdisk_dropped(d))
		return 0;
	why[0] = '\0';
	return -EIO;
}

/* A clone has no name: its last descriptor takes it away. */
static void reflink_remove(struct snapfs_snapdisk *d)
{
	if (d->clone_fd >= 0) {
		close(d->clone_fd);
		d->clone_fd = -1;
	}
}

static void reflink_where(const struct snapfs_snapdisk *d, char *out, size_t len)
{
	snprintf(out, len, "unnamed reflink clone on %s%s", d->fs.mount,
		 snapfs_snapdisk_dropped(d) ? " (dropped)" : "");
}

static void reflink_describe(const struct snapfs_snapdisk *d, char *out, size_t len)
{
	snprintf(out, len, "reflink:%s", d->origin_path);
}

static void reflink_report(FILE *f, const struct snapfs_snapdisk *d)
{
	uint64_t free_bytes = 0, total = 0;

	snapfs_reflink_space(d->fd, &free_bytes, &total);
	fprintf(f, "  disk: %s origin=%s snapshot=reflink fs=%s (%s) free=%" PRIu64 "MiB "
		   "reserve=%" PRIu64 "MiB clone=%s\n",
		d->file, d->origin_path, d->fs.mount, d->fs.type, mib(free_bytes),
		mib(snapfs_reserve_bytes(&reserve, total)),
		snapfs_snapdisk_dropped(d) ? "dropped" : "held");
}

static dev_t fs_of(const struct snapfs_snapdisk *d)
{
	return d->fs_dev ? d->fs_dev : (dev_t)-1;
}

/* Drop every clone on a filesystem under its reserve. */
static void reflink_watch(struct snapfs_snapdisk *const *ds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t free_bytes, total, want;

		if (snapfs_snapdisk_dropped(ds[i]) ||
		    snapfs_reflink_space(ds[i]->fd, &free_bytes, &total) < 0)
			continue;
		want = snapfs_reserve_bytes(&reserve, total);
		if (free_bytes >= want)
			continue;
		for (size_t j = i; j < n; j++) {
			struct snapfs_snapdisk *d = ds[j];
			int rc;

			/* Readers check the mark after each read: a read that
			 * ends after the blocks went fails. */
			if (fs_of(d) != fs_of(ds[i]) || !snapfs_snapdisk_drop(d))
				continue;
			rc = snapfs_reflink_drop(d->clone_fd);
			snapfs_error("guest %s disk %s: reflink clone of %s dropped: %" PRIu64
				     " MiB free on %s, under the reserve of %" PRIu64
				     " MiB (-o reflink_reserve=%s); reads of this snapshot set "
				     "fail with EIO until it is released%s%s",
				     d->guest, d->file, d->origin_path, mib(free_bytes),
				     d->fs.mount, mib(want), reserve_text,
				     rc < 0 ? "; giving its blocks back failed: " : "",
				     rc < 0 ? strerror(-rc) : "");
		}
	}
}

const struct snapfs_mechanism snapfs_mech_reflink = {
	.name = "reflink",
	.init = reflink_init,
	.plan = reflink_plan,
	.take = reflink_take,
	.open = reflink_open,
	.check = reflink_check,
	.remove = reflink_remove,
	.where = reflink_where,
	.describe = reflink_describe,
	.report = reflink_report,
	.watch = reflink_watch,
};
