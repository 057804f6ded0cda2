/* snapfs: mount the guests' disks of a libvirt host (or of LVM volume
 * groups) as read-only image files on lazy LVM snapshots. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapfs-fuse.h"

/* The owner mark of a mount: the same mount point gives the same mark, so a
 * restart sweeps what a crashed run of this mount left, and nothing of a
 * second snapfs mounted elsewhere. */
static void owner_tag(const char *mountpoint, char *out, size_t outlen)
{
	snprintf(out, outlen, SNAPFS_OWNER_TAG_PREFIX "%016llx",
		 (unsigned long long)snapfs_name_hash(mountpoint, strlen(mountpoint)));
}

static int cleanup_only(const char *mountpoint, const char *uri, const char *scratch,
			const char *host_id)
{
	char owner[64];
	char real[PATH_MAX];
	bool failed = false;
	int n, lock = -1;

	if (mountpoint) {
		if (!realpath(mountpoint, real)) {
			fprintf(stderr, "snapfs: %s: %s\n", mountpoint, strerror(errno));
			return 1;
		}
		owner_tag(real, owner, sizeof(owner));
		/* Never the snapshots of a snapfs that serves it now. */
		lock = snapfs_fs_owner_lock(owner, real, 0, false);
		if (lock == -EBUSY) {
			fprintf(stderr, "snapfs: nothing removed\n");
			return 1;
		}
	}
	/* One failure (no LVM on a host of files) stops neither sweep. */
	n = snapfs_lvm_sweep(mountpoint ? owner : NULL);
	if (n >= 0)
		printf("snapfs: removed %d leftover snapshot(s)%s%s\n", n,
		       mountpoint ? " of " : "", mountpoint ? real : "");
	else
		failed = true;
	/* Backup jobs are libvirt's; an lvm: source has none. */
	n = uri && !strncmp(uri, "lvm:", 4) ? 0
					   : snapfs_libvirt_sweep(uri, mountpoint ? owner : NULL,
								  scratch);
	if (n > 0)
		printf("snapfs: aborted %d leftover backup job(s)%s%s\n", n,
		       mountpoint ? " of " : "", mountpoint ? real : "");
	else if (n < 0)
		/* No libvirt to ask (a host of LVs only, libvirtd not yet up):
		 * no job of snapfs's can be aborted now, and none is lost. */
		fprintf(stderr, "snapfs: backup jobs not swept: libvirt cannot be reached (said "
				"above)\n");
	if (!uri || strncmp(uri, "lvm:", 4)) {
		/* A dead run's Ceph clients are blocklisted only under its lock:
		 * never those of a run that may still be serving. */
		n = snapfs_rbd_sweep(uri, host_id, mountpoint ? owner : NULL, lock >= 0);
		snapfs_rbd_shutdown();
		if (n > 0)
			printf("snapfs: removed %d leftover RBD snapshot(s)%s%s\n", n,
			       mountpoint ? " of " : "", mountpoint ? real : "");
	}
	return failed ? 1 : 0;
}

/* This mount's runtime directory, SNAPFS_RUN_BASE/MARK, for the sockets of
 * its backup jobs: made anew (what is there is a dead run's), 0711 so that
 * qemu reaches the 0700 directory of each job within, which it owns. */
static int make_run_dir(const char *owner, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", SNAPFS_RUN_BASE, snapfs_owner_mark(owner));
	if ((mkdir(SNAPFS_RUN_BASE, 0711) < 0 && errno != EEXIST) ||
	    (mkdir(out, 0711) < 0 && errno != EEXIST) || chmod(out, 0711) < 0) {
		snapfs_warn("cannot make %s (%m): guests that need libvirt's backup API are not "
			    "served", out);
		return -1;
	}
	return 0;
}

/* "fsname=SOURCE" with the commas and backslashes of SOURCE escaped. */
static int add_fsname(struct fuse_args *args, const char *source)
{
	char opt[600] = "-ofsname=";
	size_t o = strlen(opt);

	for (const char *p = source ? source : "snapfs"; *p && o < sizeof(opt) - 3; p++) {
		if (*p == ',' || *p == '\\')
			opt[o++] = '\\';
		opt[o++] = *p;
	}
	opt[o] = '\0';
	return fuse_opt_add_arg(args, opt);
}

static struct fuse_session *session;

/* A guest's set is gone and its files show a new time: the kernel must ask
 * for their attributes again rather than show the old set's for up to
 * ATTR_TIMEOUT, or a backup tool that stat()s a file, then opens it (a new
 * set), would see its time move as it read it (tar: "file changed as we
 * read it").  Attributes only: nothing waits on the page cache. */
static void forget_attrs(const char *dir)
{
	size_t n;
	fuse_ino_t *ino = snapfs_inode_under(dir, &n);

	/* ENOENT: the kernel has forgotten it already; after unmount, all. */
	for (size_t i = 0; i < n; i++)
		fuse_lowlevel_notify_inval_inode(session, ino[i], -1, 0);
	free(ino);
}

/* A snapshot of the guest's held set stopped answering: drop the pages the
 * kernel cached of its files, so that their next reads reach us and fail. */
static void forget_bytes(const char *dir)
{
	size_t n;
	fuse_ino_t *ino = snapfs_inode_under(dir, &n);

	for (size_t i = 0; i < n; i++)
		fuse_lowlevel_notify_inval_inode(session, ino[i], 0, 0);
	free(ino);
}

static int serve(struct snapfs_opts *o, struct fuse_args *args, const char *owner)
{
	struct fuse_loop_config *loop_cfg = NULL;
	struct snapfs_snapset_config set_cfg = {
		.cow_size = o->cow_size,
		.owner = owner,
		.linger = o->linger,
		.freeze = o->freeze,
		.freeze_timeout = o->freeze_timeout,
		.uri = o->source,
		.reserve = o->reserve,
		.reserve_text = o->reserve_text,
		.scratch_dir = o->scratch_dir,
		.scratch_reserve = o->scratch_reserve,
		.scratch_reserve_text = o->scratch_reserve_text,
		.run_dir = o->run_dir,
		.host_id = o->host_id,
		.rbd_reserve = o->rbd_reserve,
		.rbd_reserve_text = o->rbd_reserve_text,
		.epoch_moved = forget_attrs,
		.bytes_dropped = forget_bytes,
	};
	struct fuse_session *se;
	int rc = 1;

	if (fuse_opt_add_arg(args, "-oro,nosuid,nodev,default_permissions,subtype=snapfs,"
				   "noatime") < 0 ||
	    add_fsname(args, o->source) < 0 || (o->fuse_debug && fuse_opt_add_arg(args, "-odebug") < 0))
		return 1;
	se = fuse_session_new(args, &snapfs_ops, sizeof(snapfs_ops), NULL);
	if (!se)
		return 1;
	session = se;
	if (fuse_session_mount(se, o->mountpoint) < 0)
		goto out_destroy;
	/* The parent returns only now that the mount is ready. */
	if (fuse_daemonize(o->foreground) < 0)
		goto out_unmount;
	if (!o->foreground)
		snapfs_log_init(true, o->debug_mask);
	if (fuse_set_signal_handlers(se) < 0)
		goto out_unmount;
	snapfs_snapset_init(&set_cfg);
	snapfs_info("serving %s on %s", o->source ? o->source : "libvirt's default URI",
		    o->mountpoint);
	if (o->single_thread) {
		rc = fuse_session_loop(se);
	} else {
		loop_cfg = fuse_loop_cfg_create();
		if (loop_cfg)
			fuse_loop_cfg_set_max_threads(loop_cfg, SNAPFS_MAX_BACKGROUND);
		rc = fuse_session_loop_mt(se, loop_cfg);
		fuse_loop_cfg_destroy(loop_cfg);
	}
	rc = rc < 0 ? 1 : 0;
	fuse_remove_signal_handlers(se);
	/* A second ^C or SIGTERM must not cut the removal of the snapshots. */
	sigset_t block;

	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, NULL);
out_unmount:
	fuse_session_unmount(se);
	/* Every snapshot goes, open files or not, before we exit. */
	snapfs_snapset_shutdown();
	snapfs_files_free_all();
	snapfs_inode_free_all();
	snapfs_info("unmounted %s", o->mountpoint);
out_destroy:
	fuse_session_destroy(se);
	return rc;
}

int main(int argc, char **argv)
{
	struct snapfs_opts o;
	struct fuse_args args;
	struct snapfs_source src;
	struct snapfs_catalog *cat = NULL;
	char real[PATH_MAX], run_dir[128], dead[300] = "";
	char owner[64];
	int rc, n, lock;

	if (snapfs_opts_parse(argc, argv, &o, &args) < 0)
		return 1;
	if (o.show_help || o.show_version) {
		if (o.show_help)
			snapfs_opts_usage(argv[0]);
		else
			printf("snapfs %s (libfuse %s)\n", PACKAGE_VERSION, fuse_pkgversion());
		rc = 0;
		goto out;
	}
	snapfs_log_init(false, o.debug_mask);
	snapfs_lvm_configure(NULL, (int)o.lvm_timeout * 1000);
	if (o.cleanup) {
		rc = cleanup_only(o.mountpoint, o.source, o.scratch_dir, o.host_id);
		goto out;
	}
	rc = 1;
	if (!realpath(o.mountpoint, real)) {
		snapfs_error("mount point %s: %s", o.mountpoint, strerror(errno));
		goto out;
	}
	owner_tag(real, owner, sizeof(owner));
	/* Held until we exit; a restart waits for the last run's removals. */
	lock = snapfs_fs_owner_lock(owner, real, o.lvm_timeout, true);
	if (lock == -EBUSY)
		goto out;
	if (snapfs_dm_init() < 0)
		snapfs_warn("cannot open /dev/mapper/control (%m): LVM snapshots cannot be "
			    "checked, so their reads will fail (disks on files are not affected)");
	if (snapfs_source_parse(o.source, &src) < 0)
		goto out;
	if (src.type == SNAPFS_SRC_LVM && o.freeze == SNAPFS_FREEZE_REQUIRE) {
		snapfs_error("freeze=require needs a libvirt source: LVM volumes alone have "
			     "no guest agent to freeze");
		goto out_source;
	}
	/* What a crashed run of this mount left behind goes first. */
	n = snapfs_lvm_sweep(owner);
	if (n > 0)
		snapfs_info("removed %d snapshot(s) left behind by an earlier run on %s", n, real);
	if (src.type == SNAPFS_SRC_LIBVIRT) {
		n = snapfs_libvirt_sweep(o.source, owner, o.scratch_dir);
		if (n > 0)
			snapfs_info("aborted %d backup job(s) left behind by an earlier run on %s",
				    n, real);
		n = snapfs_rbd_sweep(o.source, o.host_id, owner, lock >= 0);
		if (n > 0)
			snapfs_info("removed %d RBD snapshot(s) left behind by an earlier run on %s",
				    n, real);
		if (make_run_dir(owner, run_dir, sizeof(run_dir)) == 0)
			o.run_dir = run_dir;
	}
	snapfs_source_libvirt_mode(o.snapshot);
	snapfs_catalog_init(&src, o.cache);
	/* A source that cannot be read fails the mount, with the reason. */
	if (snapfs_catalog_get(&cat) < 0) {
		snapfs_error("cannot list the guests of %s; not mounting",
			     o.source ? o.source : "libvirt's default URI");
		goto out_source;
	}
	snapfs_catalog_put(cat);
	/* Not carried across the fork into the background: librados's
	 * threads would not be there in the child. */
	snapfs_source_libvirt_disconnect();
	snapfs_rbd_shutdown();
	/* The Ceph clients of the daemon are kept, so that the next run can
	 * end them if it dies (the ones before, shut down, left no watch). */
	if (o.run_dir && lock >= 0 && snapfs_rbd_dead_path(owner, dead, sizeof(dead)) == 0)
		snapfs_rbd_dead_record_at(dead);
	snapfs_fs_opts = &o;
	/* Mount on the absolute path: the daemon's cwd becomes / and fuse_unmount
	 * must find the same mount. */
	free(o.mountpoint);
	o.mountpoint = strdup(real);
	if (!o.mountpoint)
		goto out_source;
	rc = serve(&o, &args, owner);
	snapfs_catalog_shutdown();
	snapfs_source_libvirt_disconnect();
	/* A clean exit: its clients closed their images, and no watch is
	 * left for a next run to end. */
	if (dead[0] && unlink(dead) < 0 && errno != ENOENT)
		snapfs_warn("cannot remove %s (%m): the next start blocklists this run's "
			    "Ceph clients, which are gone",
			    dead);
out_source:
	snapfs_source_free(&src);
out:
	fuse_opt_free_args(&args);
	snapfs_opts_free(&o);
	return rc;
}
