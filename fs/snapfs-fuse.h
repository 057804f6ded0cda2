/* The FUSE adapter of snapfs: options, inode numbers, path to node, the
 * low-level ops table. */
#ifndef SNAPFS_FUSE_H
#define SNAPFS_FUSE_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <fuse_opt.h>
#include <pthread.h>
#include <sys/stat.h>

#include "snapfs.h"

/* ---- options.c --------------------------------------------------------- */

struct snapfs_opts {
	char *source;          /* SOURCE, NULL for libvirt's default URI */
	char *mountpoint;
	char *cow_size;        /* -o cow_size=, "20%ORIGIN" */
	char *reserve_text;    /* -o reflink_reserve=, SNAPFS_RESERVE_DEFAULT */
	struct snapfs_reserve reserve;
	enum snapfs_snapshot_mode snapshot; /* -o snapshot=auto|storage|libvirt */
	char *scratch_dir;     /* -o scratch_dir=, SNAPFS_SCRATCH_DIR_DEFAULT */
	char *scratch_reserve_text; /* -o scratch_reserve=, SNAPFS_RESERVE_DEFAULT */
	struct snapfs_reserve scratch_reserve;
	const char *run_dir;   /* this mount's runtime directory, or NULL */
	char *host_id;         /* -o host_id=, this host in RBD snapshots' names */
	char *rbd_reserve_text; /* -o rbd_reserve=, SNAPFS_RESERVE_DEFAULT */
	struct snapfs_reserve rbd_reserve;
	unsigned linger;       /* -o linger=SECONDS, SNAPFS_LINGER_DEFAULT */
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

/* Seconds a snapshot set is kept after its last file is closed: a backup
 * tool opens a guest's next file within milliseconds of closing the last. */
#define SNAPFS_LINGER_DEFAULT 10

/* Parse argv into o; what FUSE itself handles (-o allow_other, ...) is left
 * in rest.  Returns 0 or -EINVAL with a message on stderr. */
int snapfs_opts_parse(int argc, char **argv, struct snapfs_opts *o, struct fuse_args *rest);
void snapfs_opts_free(struct snapfs_opts *o);
void snapfs_opts_usage(const char *prog);

/* ---- readahead.c ------------------------------------------------------- */

/* Default of -o readahead=KIB: 1 MiB requests (the most FUSE sends) with a
 * few in flight. */
#define SNAPFS_READAHEAD_KB 4096
/* Background requests (readahead) the kernel keeps in flight; also the
 * most worker threads the loop starts. */
#define SNAPFS_MAX_BACKGROUND 32
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

/* ---- inodes.c ---------------------------------------------------------- */

/* "/GUEST/lvm/VG/LV" and its NUL. */
#define SNAPFS_PATH_MAX (4 * (SNAPFS_NAME_MAX + 1) + 1)

/* The inode number of path, with one more lookup counted by the kernel:
 * the same number for the same path until the kernel forgets it.  0,
 * -ENAMETOOLONG or -ENOMEM. */
int snapfs_inode_ref(const char *path, fuse_ino_t *ino);
/* The kernel forgets n lookups of ino (FUSE_FORGET); at none left the
 * number is gone. */
void snapfs_inode_forget(fuse_ino_t ino, uint64_t n);
/* Copy the path of ino into path; 0, or -ESTALE for a number not held. */
int snapfs_inode_path(fuse_ino_t ino, char path[SNAPFS_PATH_MAX]);
/* Numbers held now, the root not counted. */
size_t snapfs_inode_count(void);
/* The numbers of the live paths in the guest directory dir, *n of them
 * (malloc'd; NULL and *n 0 when none, or on ENOMEM after what it found). */
fuse_ino_t *snapfs_inode_under(const char *dir, size_t *n);
/* After unmount: drop every number. */
void snapfs_inode_free_all(void);
/* The path of name in the directory at dir; 0 or -ENAMETOOLONG. */
int snapfs_path_join(const char *dir, const char *name, char path[SNAPFS_PATH_MAX]);

/* ---- tree.c ------------------------------------------------------------ */

enum snapfs_node_kind {
	NODE_ROOT,
	NODE_GUEST,
	NODE_XML,
	NODE_DISK,
	NODE_PART,
	NODE_STATUS,
	NODE_LVM,     /* /GUEST/lvm: the guest's own VGs */
	NODE_VG,      /* /GUEST/lvm/VG */
	NODE_LV,      /* /GUEST/lvm/VG/LV: a guest LV */
};

/* The directory of a guest's own VGs: no disk or partition file can have
 * this name (theirs end in .raw or .qcow2). */
#define SNAPFS_LVM_DIR "lvm"

/* The status view: in the root, never listed, so rsync -a never copies it;
 * no guest directory can have this name (a leading '.' is escaped). */
#define SNAPFS_STATUS_FILE ".snapfs-status"
/* st_blksize and f_bsize: cp and friends read 1 MiB at a time. */
#define SNAPFS_BLKSIZE (1 << 20)

struct snapfs_node {
	enum snapfs_node_kind kind;
	struct snapfs_catalog *cat;         /* holds a reference */
	const struct snapfs_guest *guest;
	const struct snapfs_disk *disk;
	bool container;                     /* NODE_DISK: a qcow2 disk's container */
	struct snapfs_partition part;       /* NODE_PART */
	/* NODE_VG, NODE_LV: as the listing saw them (disk: the guest's first,
	 * whose set the LV's file takes); their names as shown. */
	const struct snapfs_glvm_vg *vg;
	const struct snapfs_glvm_lv *lv;
	const struct snapfs_partition *lv_id; /* what the LV holds */
	char vg_name[SNAPFS_NAME_MAX + 1], lv_name[SNAPFS_NAME_MAX + 1];
};
/* The partno of n for snapfs_snapset_held: 0, a partition's, or
 * SNAPFS_CONTAINER. */
unsigned snapfs_node_partno(const struct snapfs_node *n);

/* Does guest g show the lvm directory (a VG of its own is served)? */
bool snapfs_node_has_lvs(const struct snapfs_guest *g);
/* Resolve a path of the mount; 0 or -ENOENT.  Drop with snapfs_node_put. */
int snapfs_node_lookup(const char *path, struct snapfs_node *n);
void snapfs_node_put(struct snapfs_node *n);
/* What stat(2) shows of n: modes, the gid of -o gid=, size and time of the
 * held snapshot or else of the live origin.  st_ino is left 0. */
void snapfs_node_stat(const struct snapfs_node *n, struct stat *st);
/* The same for an open disk or partition file: its snapshot's size and
 * instant, which stay while it is open. */
void snapfs_stat_open_file(uint64_t size, uint64_t allocated, struct timespec stamp,
			   struct stat *st);
/* The partitions a guest's directory shows for disk d: the held set's
 * while there is one, else the live origin's.  Free with
 * snapfs_partitions_free. */
int snapfs_node_disk_parts(const struct snapfs_guest *g, const struct snapfs_disk *d,
			   struct snapfs_partitions *out);

/* ---- listing.c --------------------------------------------------------- */

struct snapfs_dirent {
	struct stat st; /* st_ino 0 */
	char name[SNAPFS_NAME_MAX + 1];
};

struct snapfs_dir_list {
	struct snapfs_dirent *e;
	size_t n, cap;
};

/* The entries of the directory at path, "." and ".." first, replacing what
 * l held; 0, -ENOENT, -ENOTDIR or -ENOMEM.  Never creates a snapshot. */
int snapfs_dir_list(const char *path, struct snapfs_dir_list *l);
void snapfs_dir_list_free(struct snapfs_dir_list *l);

/* ---- xattrs.c ---------------------------------------------------------- */

/* getxattr(2) and listxattr(2) of path: the length of the value (or of the
 * list of names), -ENODATA, -ERANGE when size is too small, -ENOENT, or
 * -EOPNOTSUPP for a name outside the user namespace.  size 0 asks for the
 * length only. */
int snapfs_xattr_get(const char *path, const char *name, char *value, size_t size);
int snapfs_xattr_list(const char *path, char *list, size_t size);

/* ---- files.c ----------------------------------------------------------- */

/* What an open file or directory of the mount holds (FUSE's fh). */
struct snapfs_file {
	struct snapfs_snapset *set; /* disks and partitions: the held set */
	const struct snapfs_snapdisk *disk;
	const struct snapfs_image *img; /* what it reads: disk's view or container */
	struct snapfs_image lv_img; /* a guest LV's, img points here */
	uint64_t start, size;       /* the file's bytes in img */
	uint64_t allocated;         /* of them, what holds data (SNAPFS_ALL_DATA) */
	struct timespec stamp;
	char *data;                 /* domain.xml, the status view; a directory's path */
	bool direct_io;             /* no page cache: the status view */
	bool whole_set;             /* a guest LV: every disk of the set is checked */
	bool read_error_logged;
	bool dir;
	pthread_mutex_t list_lock;  /* directories: guards list */
	struct snapfs_dir_list list;
	struct snapfs_file *prev, *next; /* in the list of open files */
};

/* open(2) of path: a disk or partition takes (or shares) its guest's
 * snapshot set, resolving the guest's disks afresh when it takes a new one.
 * 0, -EROFS for any write access, -EISDIR, -ENOENT, or what the set's
 * creation failed with. */
int snapfs_file_open(const char *path, int flags, struct snapfs_file **out);
/* opendir(2) of path: 0, -ENOENT or -ENOTDIR. */
int snapfs_dir_open(const char *path, struct snapfs_file **out);
/* The last close of an open file or directory; may remove its set. */
void snapfs_file_release(struct snapfs_file *f);
/* Up to size bytes at off of a disk or partition file (the others are
 * read with snapfs_file_bytes) into buf: from the snapshot device, its health
 * checked after the read, so a read that raced a COW overflow fails instead
 * of returning bytes written after the snapshot.  Bytes read (0 at the
 * end), -EIO or -EINVAL.  buf aligned to SNAPFS_DIRECT_ALIGN reads with
 * O_DIRECT. */
int snapfs_file_read(struct snapfs_file *f, char *buf, size_t size, off_t off);
/* lseek(2) with SEEK_DATA (whence) or SEEK_HOLE at off: the offset of the
 * next data or hole in the file (its size when no hole comes before), or
 * -ENXIO (off at or past the end, or no data after it), -EIO (a dropped or
 * invalid snapshot), -EINVAL.  Whole disks and partitions follow the
 * snapshot's holes; the other files are all data. */
int snapfs_file_seek(struct snapfs_file *f, off_t off, int whence, off_t *out);
/* For a file whose bytes are in memory (domain.xml, the status view): the
 * bytes at off, *size cut to what is there; NULL for any other file. */
const char *snapfs_file_bytes(const struct snapfs_file *f, size_t *size, off_t off);
/* After unmount: free the files the kernel never released (their sets are
 * gone with snapfs_snapset_shutdown). */
void snapfs_files_free_all(void);

/* ---- ops.c ------------------------------------------------------------- */

extern const struct fuse_lowlevel_ops snapfs_ops;
/* Settings the ops read; set before the mount, read-only after. */
extern struct snapfs_opts *snapfs_fs_opts;

#endif
