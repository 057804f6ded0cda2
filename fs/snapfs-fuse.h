/* The FUSE adapter of snapfs: options, path to node, the ops table. */
#ifndef SNAPFS_FUSE_H
#define SNAPFS_FUSE_H

#define FUSE_USE_VERSION 312
#include <fuse.h>
#include <fuse_opt.h>

#include "snapfs.h"

/* ---- options.c --------------------------------------------------------- */

struct snapfs_opts {
	char *source;          /* SOURCE, NULL for libvirt's default URI */
	char *mountpoint;
	char *cow_size;        /* -o cow_size=, "20%ORIGIN" */
	unsigned linger;       /* -o linger=SECONDS */
	double cache;          /* -o cache=SECONDS, guest discovery cache */
	unsigned lvm_timeout;  /* -o lvm_timeout=SECONDS */
	enum snapfs_freeze_mode freeze; /* -o freeze=auto|require|off */
	unsigned freeze_timeout; /* -o freeze_timeout=SECONDS */
	unsigned readahead;    /* -o readahead=KIB, 0: the kernel's */
	char *gid_text;        /* -o gid=GROUP */
	gid_t gid;
	unsigned debug_mask;   /* -o debug_areas=, -d */
	bool foreground;       /* -f, -d */
	bool single_thread;    /* -s */
	bool fuse_debug;       /* -d */
	bool show_help;
	bool show_version;
	bool cleanup;          /* --cleanup: sweep and exit */
};

/* Parse argv into o; what FUSE itself handles (-o allow_other, ...) is left
 * in rest.  Returns 0 or -EINVAL with a message on stderr. */
int snapfs_opts_parse(int argc, char **argv, struct snapfs_opts *o, struct fuse_args *rest);
void snapfs_opts_free(struct snapfs_opts *o);
void snapfs_opts_usage(const char *prog);

/* ---- readahead.c ------------------------------------------------------- */

/* Default of -o readahead=KIB: 1 MiB requests (the most FUSE sends) with a
 * few in flight. */
#define SNAPFS_READAHEAD_KB 4096
/* Set the readahead window of the snapfs mount on mountpoint to kib; call
 * once the kernel has applied init's reply.  0 or -errno, logged. */
int snapfs_fs_set_readahead(const char *mountpoint, unsigned kib);
/* 0 when a snapfs mount is on mountpoint now (the newest one's device
 * number in *major, *minor, either may be NULL), else -ENOENT or -errno. */
int snapfs_fs_find_mount(const char *mountpoint, unsigned *major, unsigned *minor);

/* ---- owner-lock.c ------------------------------------------------------ */

/* Lock the owner mark of a mount point for the life of the process.  If
 * another snapfs holds it: -EBUSY at once when wait is false or that one is
 * still mounted, else after waiting up to wait_s seconds for it to finish
 * removing its snapshots.  The fd to keep open, -EBUSY, or -1 when no lock
 * could be made at all (logged; the caller goes on without one). */
int snapfs_fs_owner_lock(const char *owner, const char *mountpoint, unsigned wait_s,
			 bool wait);

/* ---- tree.c ------------------------------------------------------------ */

enum snapfs_node_kind { NODE_ROOT, NODE_GUEST, NODE_XML, NODE_DISK, NODE_PART, NODE_STATUS };

/* The status view: in the root, never listed, so rsync -a never copies it;
 * no guest directory can have this name (a leading '.' is escaped). */
#define SNAPFS_STATUS_FILE ".snapfs-status"

struct snapfs_node {
	enum snapfs_node_kind kind;
	struct snapfs_catalog *cat;         /* holds a reference */
	const struct snapfs_guest *guest;
	const struct snapfs_disk *disk;
	struct snapfs_partition part;       /* NODE_PART */
};

/* Resolve a path of the mount; 0 or -ENOENT.  Drop with snapfs_node_put. */
int snapfs_node_lookup(const char *path, struct snapfs_node *n);
void snapfs_node_put(struct snapfs_node *n);
/* The partitions a guest's directory shows for disk d: the held set's
 * while there is one, else the live origin's.  Free with
 * snapfs_partitions_free. */
int snapfs_node_disk_parts(const struct snapfs_guest *g, const struct snapfs_disk *d,
			   struct snapfs_partitions *out);

/* ---- ops.c ------------------------------------------------------------- */

extern const struct fuse_operations snapfs_ops;
/* After unmount: free the handles of files the kernel never released (their
 * sets are gone with snapfs_snapset_shutdown). */
void snapfs_fs_free_handles(void);
/* Settings the ops read; set before the mount, read-only after. */
extern struct snapfs_opts *snapfs_fs_opts;

#endif
