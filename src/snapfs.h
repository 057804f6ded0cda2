/* snapfs core: guest discovery, LVM snapshot sets, partition tables.
 * Nothing here knows about FUSE.  Functions return 0 or -errno unless
 * their comment says otherwise.
 */
#ifndef SNAPFS_H
#define SNAPFS_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ---- cleanup.h-style scope cleanup ------------------------------------ */

void snapfs_free_ptr(void *p);
void snapfs_close_fd(int *fd);
#define CLEANUP_FREE __attribute__((cleanup(snapfs_free_ptr)))
#define CLEANUP_CLOSE __attribute__((cleanup(snapfs_close_fd)))
/* mountinfo writes space, tab, newline and backslash as \ooo: undo it in
 * place. */
void snapfs_unescape_octal(char *s);

/* ---- log.c ------------------------------------------------------------- */

enum snapfs_log_level { SNAPFS_LOG_ERROR, SNAPFS_LOG_WARN, SNAPFS_LOG_INFO, SNAPFS_LOG_DEBUG };

/* Debug areas, switched on by -o debug_areas=AREA[:AREA] or SNAPFS_DEBUG=AREA,... */
enum snapfs_debug_area {
	SNAPFS_DBG_LVM = 1 << 0,
	SNAPFS_DBG_GUESTS = 1 << 1,
	SNAPFS_DBG_SNAP = 1 << 2,
	SNAPFS_DBG_PART = 1 << 3,
	SNAPFS_DBG_FUSE = 1 << 4,
	SNAPFS_DBG_ALL = 0xff,
};

void snapfs_log_init(bool use_syslog, unsigned debug_mask);
/* Parse "all" or "lvm:guests" (':' or ',' separated); returns mask or -EINVAL. */
int snapfs_log_parse_areas(const char *s, unsigned *mask);
bool snapfs_log_debug_enabled(unsigned area);
void snapfs_log(enum snapfs_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* While on, this thread's error, warning and info lines are debug lines of
 * the guests area. */
void snapfs_log_quiet(bool on);
/* True the first time this process asks for (key, detail): for the lines
 * said once per guest and disk, not at every listing. */
bool snapfs_log_first(const char *key, const char *detail);
#define snapfs_error(...) snapfs_log(SNAPFS_LOG_ERROR, __VA_ARGS__)
#define snapfs_warn(...) snapfs_log(SNAPFS_LOG_WARN, __VA_ARGS__)
#define snapfs_info(...) snapfs_log(SNAPFS_LOG_INFO, __VA_ARGS__)
#define snapfs_debug(area, ...)                                                          \
	do {                                                                             \
		if (snapfs_log_debug_enabled(area))                                      \
			snapfs_log(SNAPFS_LOG_DEBUG, __VA_ARGS__);                      \
	} while (0)

/* ---- names.c ----------------------------------------------------------- */

#define SNAPFS_NAME_MAX 255

/* Turn an untrusted guest name into a safe, distinct file name: bytes that
 * are '/', '%', control bytes, invalid UTF-8 or a leading '.' or '-' are
 * written as %XX; a result over 255 bytes is cut and given a hash suffix.
 * Writes at most SNAPFS_NAME_MAX+1 bytes to out. */
void snapfs_name_escape(const char *name, char out[SNAPFS_NAME_MAX + 1]);
/* 64-bit FNV-1a, for stable suffixes and owner marks. */
uint64_t snapfs_name_hash(const char *s, size_t len);
/* The mark of owner tag owner ("snapfs_owner_MARK"), as snapshot names and
 * the mount's run directory carry it: owner itself if not such a tag. */
const char *snapfs_owner_mark(const char *owner);
/* The file name of a disk image and its partitions: "vda.raw", "vda1.raw",
 * "nvme0n1p1.raw".  partno 0 means the whole disk.  -ENAMETOOLONG if it
 * does not fit. */
int snapfs_name_image(const char *target, unsigned partno, const char *ext, char *out,
		      size_t outlen);

/* ---- domxml.c ---------------------------------------------------------- */

enum snapfs_source_kind {
	SNAPFS_SOURCE_DEV,
	SNAPFS_SOURCE_POOL,
	SNAPFS_SOURCE_FILE,
	SNAPFS_SOURCE_NETWORK, /* dev is "PROTOCOL:NAME", for log lines and xattrs */
};

/* Where a Ceph RBD image is, as a domain XML's network disk says (and how
 * qemu would reach it): checked, fit for log lines. */
struct snapfs_rbd_spec {
	char pool[128];
	char ns[128];          /* its RADOS namespace, "" for none */
	char image[128];
	char user[64];         /* <auth username>, "" for Ceph's default (admin) */
	char mon_host[1024];   /* from <host name port>: "a:p,b:p"; "" from the conf */
	char conf[4096];       /* <config file>, "" for Ceph's own search */
	char secret_uuid[40];  /* <secret type='ceph' uuid>, or */
	char secret_usage[256]; /* usage; both "" for the keyring the conf names */
	char key[128];         /* the key, read from that libvirt secret; "" */
};

struct snapfs_xml_disk {
	char *target;   /* <target dev=...>, checked to be a plain name */
	char *format;   /* <driver type=...>, "raw" when absent */
	enum snapfs_source_kind kind;
	char *dev;      /* SNAPFS_SOURCE_DEV: <source dev=...>; SNAPFS_SOURCE_FILE:
			 * <source file=...> */
	char *pool;     /* SNAPFS_SOURCE_POOL: <source pool=... volume=...> */
	char *volume;
	unsigned sector_size; /* <blockio logical_block_size>, 512 when absent */
	struct snapfs_rbd_spec *rbd; /* a network disk of protocol rbd, or NULL */
};

struct snapfs_xml_disks {
	struct snapfs_xml_disk *disk;
	size_t n;
};

/* Extract every disk of a domain XML that snapfs may serve: device='disk'
 * with type='block' and a source dev, type='file' (libvirt's default) with a
 * source file, or type='volume' with pool and volume.
 * Others are skipped with a debug line naming guest and target.  Returns 0,
 * or -EINVAL for XML that does not parse. */
int snapfs_domxml_disks(const char *guest, const char *xml, struct snapfs_xml_disks *out);
void snapfs_domxml_disks_free(struct snapfs_xml_disks *d);
/* What a backup job's XML (virDomainBackupGetXMLDesc) names: its NBD
 * socket (NULL when none) and its disks' scratch files (*n of them).  The
 * caller frees all.  0, -EINVAL for XML that is not a <domainbackup>, or
 * -ENOMEM. */
int snapfs_domxml_backup(const char *xml, char **socket, char ***scratch, size_t *n);
/* The user and group a running guest's qemu runs as, from its live XML's
 * DAC seclabel ("+64055:+64055"): 0, -ENOENT when it has none, -EINVAL. */
int snapfs_domxml_dac_label(const char *xml, unsigned *uid, unsigned *gid);
/* The directory of a storage pool of files (type dir, fs or netfs) from its
 * XML: 0 with *dir (the caller frees), -ENOENT for other pools, -EINVAL. */
int snapfs_domxml_pool_dir(const char *xml, char **dir);

/* ---- exec.c ------------------------------------------------------------ */

struct snapfs_exec_result {
	int status;     /* exit status, or -1 when killed / timed out */
	char *out;      /* NUL-terminated stdout */
	char *err;      /* NUL-terminated stderr, trailing newlines trimmed */
};

/* Run argv[0] (an absolute path) with a fixed argv, a clean environment,
 * stdin from /dev/null, for at most timeout_ms.  Returns 0 when the
 * command ran (check res->status), -errno when it could not be run,
 * -ETIMEDOUT when it was killed for taking too long. */
int snapfs_exec(const char *const argv[], int timeout_ms, struct snapfs_exec_result *res);
void snapfs_exec_result_free(struct snapfs_exec_result *res);

/* ---- lvm.c ------------------------------------------------------------- */

#define SNAPFS_TAG "snapfs"
/* Where each mount keeps its private runtime files (backup jobs' sockets),
 * in a directory named for its owner mark. */
#define SNAPFS_RUN_BASE "/run/snapfs"
#define SNAPFS_SCRATCH_DIR_DEFAULT "/var/lib/snapfs/scratch"
#define SNAPFS_OWNER_TAG_PREFIX "snapfs_owner_"

struct snapfs_lv {
	char vg[128];
	char lv[128];
	uint64_t size;
	char attr[16];
	char segtype[32];
	char origin[128];
	char pool[128];
	int major, minor;     /* -1 when not active */
	bool thin;            /* segtype thin */
	bool snapfs_owned;    /* carries SNAPFS_TAG */
	char owner[64];       /* the owner tag, "" if none */
	bool is_snapshot;     /* classic or thin snapshot of another LV */
	bool is_ordinary;     /* a plain LV: not a snapshot, pool, metadata, etc. */
};

struct snapfs_lv_list {
	struct snapfs_lv *lv;
	size_t n;
};

/* Path of the lvm binary and timeouts, set once at start. */
void snapfs_lvm_configure(const char *lvm_path, int timeout_ms);
/* Parse the output of the lvs report snapfs_lvm_list runs. */
int snapfs_lvm_parse_lvs(const char *text, struct snapfs_lv_list *out);
/* List the LVs of the given VGs (NULL: all). */
int snapfs_lvm_list(const char *const *vgs, struct snapfs_lv_list *out);
void snapfs_lvm_list_free(struct snapfs_lv_list *l);
const struct snapfs_lv *snapfs_lvm_find(const struct snapfs_lv_list *l, const char *vg,
					const char *lv);
/* Map a path from domain XML to an LV of the list, or NULL. */
const struct snapfs_lv *snapfs_lvm_resolve_path(const struct snapfs_lv_list *l,
						const char *path);
/* /dev/mapper name of VG/LV (dashes doubled). */
int snapfs_lvm_dm_path(const char *vg, const char *lv, char *out, size_t outlen);
/* Is dm_name (as sysfs gives it) the device-mapper name of lv? */
bool snapfs_lvm_dm_name_is(const struct snapfs_lv *lv, const char *dm_name);
/* Is lv's device number still the device of that VG/LV, as when lvs listed
 * it?  A renamed, removed or swapped LV fails; no lvm command is run. */
bool snapfs_lvm_still_there(const struct snapfs_lv *lv);
/* Map lvcreate's words to an errno: ENOSPC, EBUSY or EIO. */
int snapfs_lvm_errno(const char *stderr_text);
/* Create a read-only snapshot named snap of vg/lv, tagged SNAPFS_TAG and
 * owner.  cow_size is lvcreate's --size (e.g. "1G") or --extents (with
 * '%') for classic LVs; ignored for thin ones.  On failure *why gets
 * lvcreate's words (caller frees). */
int snapfs_lvm_snapshot_create(const struct snapfs_lv *origin, const char *snap,
			       const char *cow_size, const char *owner, char **why);
/* Remove vg/lv if it carries SNAPFS_TAG and owner; retried with backoff
 * while busy. */
int snapfs_lvm_snapshot_remove(const char *vg, const char *lv, const char *owner);
/* Remove every LV tagged with owner (NULL: any snapfs owner).  Returns the
 * number removed or -errno. */
int snapfs_lvm_sweep(const char *owner);
/* LVM's stderr as one line: each line trimmed, empty ones dropped, the rest
 * joined with "; ".  Caller frees; NULL when out of memory. */
char *snapfs_lvm_one_line(const char *text);

/* ---- partitions.c ------------------------------------------------------ */

struct snapfs_partition {
	unsigned number;     /* Linux numbering: 1-4 primary, 5.. logical, GPT index */
	uint64_t start;      /* bytes from the start of the disk */
	uint64_t size;       /* bytes */
	char type[40];       /* MBR type as "0x83", or GPT type GUID */
	char table[8];       /* "dos" or "gpt" */
	char fstype[32];     /* what the partition holds, "" if unknown */
	char label[64];
	char uuid[64];
	uint64_t allocated;  /* bytes of it that hold data, SNAPFS_ALL_DATA if not known */
};

/* What st_blocks shows of an image whose holes are not known: all of it. */
#define SNAPFS_ALL_DATA UINT64_MAX

struct snapfs_partitions {
	struct snapfs_partition *part;
	size_t n;
	char table[8];       /* "dos", "gpt" or "" for none */
};

/* Read the partition table of the disk open at fd, disk_size bytes long,
 * with the given logical sector size.  Partitions that are not sound
 * (outside the disk, overlapping the table, extended containers) are left
 * out with a warning naming guest and disk.  A disk with no table gives
 * n == 0.  Returns 0 or -errno. */
int snapfs_partitions_read(int fd, uint64_t disk_size, unsigned sector_size,
			   const char *guest, const char *disk,
			   struct snapfs_partitions *out);
/* What the size bytes read through src hold, as a partition's fstype,
 * label and uuid (all "" when nothing is recognised): for a guest's own LV
 * or a whole disk.  0 or -errno. */
int snapfs_identify_from(int (*src)(void *opaque, void *buf, size_t len, uint64_t off),
			 void *opaque, uint64_t size, const char *guest, const char *name,
			 struct snapfs_partition *out);
/* The same for a disk read through src (a decoded qcow2 image): what
 * libblkid reads comes from src, copied into a sparse memfd first. */
int snapfs_partitions_read_from(int (*src)(void *opaque, void *buf, size_t len,
					   uint64_t off),
				void *opaque, uint64_t disk_size, unsigned sector_size,
				const char *guest, const char *disk,
				struct snapfs_partitions *out);
void snapfs_partitions_free(struct snapfs_partitions *p);
int snapfs_partitions_copy(const struct snapfs_partitions *from, struct snapfs_partitions *to);

/* ---- device.c ---------------------------------------------------------- */

/* Open a block device (or, in tests, a regular file) read-only; *size gets
 * its size in bytes.  Returns the fd or -errno. */
int snapfs_device_open(const char *path, uint64_t *size);
/* Buffers for snapfs_device_pread are aligned to this to use O_DIRECT. */
#define SNAPFS_DIRECT_ALIGN 4096
/* A second, O_DIRECT descriptor of the block device or regular file open
 * as fd, so that its bytes are not cached twice (in the device's page cache
 * and in FUSE's); *align gets the alignment O_DIRECT wants.  The fd, or
 * -errno (no O_DIRECT there). */
int snapfs_device_open_direct(int fd, unsigned *align);
struct snapfs_snapdisk;
/* pread of a snapshot: through its O_DIRECT descriptor when buf, len and
 * off allow, else through the buffered one; a thin snapshot's holes are
 * zeroes without I/O.  As pread(2): it may return fewer bytes. */
ssize_t snapfs_device_pread(const struct snapfs_snapdisk *d, void *buf, size_t len,
			    uint64_t off);
/* SEEK_DATA or SEEK_HOLE (whence) in [off, end) of a snapshot: where the
 * next data or hole at or after off begins, end when none does before it.
 * A clone of a sparse file has the origin's holes; a device is all data.
 * 0 or -errno. */
int snapfs_device_seek(const struct snapfs_snapdisk *d, uint64_t off, uint64_t end,
		       int whence, uint64_t *out);
/* How much of the file open as fd holds data, between start and end, by
 * its holes (SEEK_DATA/SEEK_HOLE, a bounded number of extents: past that,
 * the rest counts as data). */
uint64_t snapfs_file_allocated(int fd, uint64_t start, uint64_t end);
/* Set what st_blocks shows of the partitions of a disk open as fd: by the
 * holes of a file (a clone, or a live origin file), all data otherwise. */
void snapfs_partitions_measure(int fd, bool is_file, struct snapfs_partitions *parts);

/* ---- dmstatus.c -------------------------------------------------------- */

struct snapfs_cow {
	bool valid;          /* false once the kernel invalidated the snapshot */
	uint64_t used;       /* COW sectors in use (classic snapshots) */
	uint64_t total;      /* COW sectors in all, 0 for thin snapshots */
	uint64_t mapped;     /* thin: sectors the pool has data for */
};

/* Open /dev/mapper/control once, at start. */
int snapfs_dm_init(void);
/* Status of the device-mapper device dm_name ("vg-lv_snap"): 0 or -errno. */
int snapfs_dm_status(const char *dm_name, struct snapfs_cow *out);
/* The table of dm_name's (first) target: its type ("thin") and parameters. */
int snapfs_dm_table(const char *dm_name, char *type, size_t tlen, char *params, size_t plen);
/* Send msg to dm_name's target (a thin pool's reserve_metadata_snap). */
int snapfs_dm_message(const char *dm_name, const char *msg);

/* ---- thinmap.c: where a thin snapshot has data --------------------------- */

struct snapfs_extent {
	uint64_t start, end;  /* bytes, end excluded */
};

/* Mapped byte ranges, sorted, merged. */
struct snapfs_thinmap {
	struct snapfs_extent *ext;
	size_t n;
};

/* The mapping of the thin device dm_name (a thin snapshot), read from a
 * metadata snapshot of its pool (reserved and released here, one at a time
 * for the whole process).  0, -EBUSY when another tool holds the pool's
 * metadata snapshot, or -errno. */
int snapfs_thinmap_read(const char *dm_name, struct snapfs_thinmap *out);
/* Parse thin_dump's XML for dev_id: 0, -ENOENT (no such device), -EINVAL,
 * -E2BIG (too fragmented to keep), -ENOMEM. */
int snapfs_thinmap_parse(const char *xml, uint64_t dev_id, struct snapfs_thinmap *out);
/* Append [start, end) to a map being built (*cap: its allocated length,
 * 0 at first), merged with the last extent when they touch: 0, -EINVAL
 * when not after the last extent (a map out of order is not trusted),
 * -E2BIG past a million extents, -ENOMEM. */
int snapfs_thinmap_add(struct snapfs_thinmap *m, size_t *cap, uint64_t start, uint64_t end);
void snapfs_thinmap_free(struct snapfs_thinmap *m);
/* As lseek's SEEK_DATA or SEEK_HOLE (whence) in [off, end): end when none. */
uint64_t snapfs_thinmap_seek(const struct snapfs_thinmap *m, uint64_t off, uint64_t end,
			     int whence);
/* Mapped bytes in [start, end). */
uint64_t snapfs_thinmap_bytes(const struct snapfs_thinmap *m, uint64_t start, uint64_t end);

/* ---- reflink.c: file-backed disks, cloned -------------------------------- */

/* What snapfs keeps of a filesystem that holds a clone. */
struct snapfs_fsinfo {
	char type[16];        /* "xfs", "btrfs", "ext4", ... or "0x..." */
	char mount[256];      /* its mount point, or the origin's directory */
};

/* Can the file at path be cloned where it is (FICLONE into an unnamed file
 * in its directory)?  0, or -errno: -EOPNOTSUPP for a filesystem that
 * cannot clone (ext4, tmpfs, XFS without reflink), -EACCES, -EROFS, ...
 * fs gets the filesystem's type in any case.  Positive answers are kept
 * per directory for the life of the process. */
int snapfs_reflink_probe(const char *path, struct snapfs_fsinfo *fs);
/* Clone the regular file at path, whose identity (st_dev, st_ino) must be
 * dev and ino, into an unnamed file of its directory: it has no name, so
 * it is gone with the last descriptor, after a crash too.  *clone_fd gets
 * a read-write descriptor kept only to give the clone's blocks back
 * (snapfs_reflink_drop), *fd a read-only one for reads, *size its size.
 * 0 or -errno (-ESTALE: path is another file by now). */
int snapfs_reflink_clone(const char *path, dev_t dev, ino_t ino, int *clone_fd, int *fd,
			 uint64_t *size);
/* Give a clone's blocks back at once (its readers then get EIO). */
int snapfs_reflink_drop(int clone_fd);
/* Free and total bytes of the filesystem of fd (for an unprivileged user:
 * f_bavail). */
int snapfs_reflink_space(int fd, uint64_t *free_bytes, uint64_t *total_bytes);
/* The filesystem of fd, a file at origin or its directory: type and mount
 * point (origin's directory when mountinfo does not name it). */
void snapfs_reflink_fsinfo(int fd, const char *origin, struct snapfs_fsinfo *fs);

/* -o reflink_reserve=: free space snapfs leaves to the guests. */
struct snapfs_reserve {
	uint64_t bytes;       /* a size, or */
	unsigned percent;     /* a share of the filesystem's size, when bytes is 0 */
};
#define SNAPFS_RESERVE_DEFAULT "5%"
/* "5%", "2G", "512M", "1048576": 0 or -EINVAL. */
int snapfs_reserve_parse(const char *text, struct snapfs_reserve *out);
/* The reserve in bytes on a filesystem of total bytes. */
uint64_t snapfs_reserve_bytes(const struct snapfs_reserve *r, uint64_t total);

/* ---- stamp.c ----------------------------------------------------------- */

/* A wall-clock time strictly later than any this process returned before:
 * mtimes never repeat across two snapshots. */
struct timespec snapfs_stamp_next(void);
/* ISO 8601 UTC, "2026-11-25T17:35:34.123456789Z". */
void snapfs_stamp_format(struct timespec ts, char *out, size_t outlen);

/* ---- catalog.c: the source ------------------------------------------------ */

enum snapfs_source_type { SNAPFS_SRC_LIBVIRT, SNAPFS_SRC_LVM };

struct snapfs_source {
	enum snapfs_source_type type;
	char *uri;      /* libvirt URI, NULL for libvirt's default */
	char **vgs;     /* lvm: the VGs, NULL-terminated */
};

/* Parse SOURCE: "lvm:VG[,VG...]" or a libvirt URI (NULL: the default). */
int snapfs_source_parse(const char *text, struct snapfs_source *src);
void snapfs_source_free(struct snapfs_source *src);

/* ---- guest.c: the guests and their disks, as the sources fill them ------- */

/* Where a disk's bytes live, and so what snapshots it: an LV (LVM), a
 * regular file on XFS or btrfs (a reflink clone), or any disk of a running
 * guest whose storage cannot snapshot itself (libvirt's backup API: qemu
 * keeps the point-in-time view and exports it over NBD). */
enum snapfs_origin_kind { SNAPFS_ORIGIN_LV, SNAPFS_ORIGIN_FILE, SNAPFS_ORIGIN_BACKUP,
			  SNAPFS_ORIGIN_RBD };

/* -o snapshot=: which mechanism a guest's set uses.  AUTO: its storage's,
 * where every disk of the guest has one, else the backup API for a running
 * guest; STORAGE: never the backup API; LIBVIRT: the backup API for every
 * running guest.  A set never mixes the backup API with the others. */
enum snapfs_snapshot_mode { SNAPFS_SNAP_AUTO, SNAPFS_SNAP_STORAGE, SNAPFS_SNAP_LIBVIRT };

/* Layers of a qcow2 backing chain snapfs follows, the top one counted:
 * a deeper chain is not decoded. */
#define SNAPFS_CHAIN_MAX 8

/* A layer below a qcow2 disk: an LV of the same VG, or, below a file, a
 * file of the image's directory or of a storage pool's. */
struct snapfs_layer {
	struct snapfs_lv lv;              /* an LV's */
	char path[4096];                  /* a file's, resolved; "" for an LV */
	dev_t dev;                        /* a file's, as listed */
	ino_t ino;
	bool direct;                      /* a file's, read directly (see snapfs_disk) */
	char format[8];                   /* "qcow2" or "raw", as the layer above says */
};

struct snapfs_disk {
	char file[SNAPFS_NAME_MAX + 1];   /* "vda.raw" */
	char target[33];                  /* "vda" */
	char format[17];                  /* "raw", "qcow2" */
	char ext[17];                     /* file extension: format, "raw" */
	unsigned sector_size;
	enum snapfs_origin_kind kind;
	struct snapfs_lv lv;              /* SNAPFS_ORIGIN_LV: the origin */
	char *path;                       /* SNAPFS_ORIGIN_FILE: the origin file;
					   * BACKUP: the source as the XML names it
					   * (a path, or PROTOCOL:NAME) */
	bool live_raw;                    /* BACKUP: path is a local raw file whose
					   * partition table a listing may read */
	bool direct;                      /* FILE: read from the origin itself, under a
					   * guard: the guest is shut off and the file's
					   * filesystem cannot clone */
	bool shut_off;                    /* FILE: its guest is shut off, so layers that
					   * cannot be cloned may be read directly */
	struct snapfs_rbd_spec *rbd;      /* SNAPFS_ORIGIN_RBD: the image (path is
					   * "POOL/IMAGE") */
	uint64_t size;                    /* the origin's size when listed */
	uint64_t allocated;               /* bytes holding data, or SNAPFS_ALL_DATA */
	dev_t dev;                        /* its st_dev and st_ino when listed */
	ino_t ino;
	struct snapfs_partitions parts;   /* of what the guest sees, from the live origin */
	bool whole_pv;                    /* the whole of what the guest sees carries
					   * an LVM2 label (it has no table) */
	/* A qcow2 disk: file is the container ("vda.qcow2"), size where its
	 * image ends; view the decoded disk ("vda.raw"), "" when it is not
	 * decoded (refused, logged). */
	char view[SNAPFS_NAME_MAX + 1];
	uint64_t view_size;               /* the virtual size */
	uint64_t view_allocated;          /* bytes of it holding data, or SNAPFS_ALL_DATA */
	unsigned cluster_size;
	struct snapfs_layer *layer;       /* the chain below, nearest first */
	size_t nlayers;
};

/* The partno of a qcow2 disk's container file, in snapfs_guest_disk and
 * snapfs_snapset_held. */
#define SNAPFS_CONTAINER UINT32_MAX
/* Is d served as the bytes of its container (any format but raw)? */
bool snapfs_disk_is_container(const struct snapfs_disk *d);
/* For a qcow2 disk d of guest (qcow2-disk.c): follow its backing chain
 * through lvs (all_lvs: every LV there is) into d->layer, and set d->view;
 * listing: also what a listing shows of the decoded disk (its size,
 * partitions, holes, and the container's end), read from the live origins.
 * 0 when decoded; 1 when not (a raw disk, or refused: logged once);
 * -ENOENT when a layer is no LV of lvs and !all_lvs (ask LVM); -errno. */
int snapfs_disk_decode_live(const char *guest, struct snapfs_disk *d,
			    const struct snapfs_lv_list *lvs, bool all_lvs, bool listing);
/* A listed disk d's live origin, as the guest sees it (a raw origin, or a
 * qcow2 chain as the listing followed it), for listings: 0 with *out,
 * -ENOTSUP when there is no such view to read (a container only, a disk
 * only qemu reads), -errno.  snapfs_live_read has the shape of a reader
 * callback. */
struct snapfs_live;
int snapfs_live_open(const char *guest, const struct snapfs_disk *d, struct snapfs_live **out);
int snapfs_live_read(void *live, void *buf, size_t len, uint64_t off);
uint64_t snapfs_live_size(const struct snapfs_live *lv);
void snapfs_live_close(struct snapfs_live *lv);

struct snapfs_guest {
	char dir[SNAPFS_NAME_MAX + 1];    /* escaped, distinct directory name */
	char *name;                       /* the guest's own name */
	char *key;                        /* stable identity: UUID or VG/LV */
	char *xml;                        /* inactive domain XML, or NULL */
	bool running;
	struct snapfs_disk *disk;
	size_t ndisks;
	struct snapfs_glvs *glvs;         /* its own LVs, read live for listings; or
					   * NULL (no PV, or none readable live) */
	/* What stat shows: a directory's time moves only when its entries
	 * change, domain.xml's only when its text does. */
	uint64_t entries;                 /* a hash of the directory's names */
	struct timespec dir_stamp, xml_stamp;
};

/* The disk whose file, decoded view (partno 0) or partition is file; the
 * container of a qcow2 disk gives SNAPFS_CONTAINER. */
const struct snapfs_disk *snapfs_guest_disk(const struct snapfs_guest *g, const char *file,
					    unsigned *partno);
/* Fill g->disk from XML disks, resolving sources against lvs (used by the
 * libvirt source; exposed for tests). */
int snapfs_guest_add_disk(struct snapfs_guest *g, const struct snapfs_lv *lv,
			  const char *target, const char *format, unsigned sector_size);
/* A disk of a running guest served through libvirt's backup API: source
 * as the XML names it, size its capacity (0 when not known), live_raw as
 * in struct snapfs_disk. */
int snapfs_guest_add_backup_disk(struct snapfs_guest *g, const char *source, uint64_t size,
				 bool live_raw, const char *target, unsigned sector_size);
/* The same for a Ceph RBD image (spec is copied), of size bytes. */
int snapfs_guest_add_rbd_disk(struct snapfs_guest *g, const struct snapfs_rbd_spec *spec,
			      uint64_t size, const char *target, const char *format,
			      unsigned sector_size);
void snapfs_rbd_spec_free(struct snapfs_rbd_spec *spec);
/* The same for a regular file (path, and what stat said of it); direct:
 * read from the origin itself (see snapfs_disk). */
int snapfs_guest_add_file_disk(struct snapfs_guest *g, const char *path,
			       const struct stat *st, const char *target, const char *format,
			       unsigned sector_size, bool direct);
void snapfs_guests_free(struct snapfs_guest *g, size_t n);
/* Give each guest a distinct directory name; sorts by it. */
void snapfs_guests_name(struct snapfs_guest *g, size_t n);

/* ---- catalog.c: what one discovery saw ------------------------------------ */

/* What one discovery saw.  Immutable once published; shared by reference. */
struct snapfs_catalog {
	unsigned refs;                    /* under the catalog lock in catalog.c */
	struct timespec stamp;            /* when it was taken */
	struct timespec begun;            /* CLOCK_MONOTONIC: when its discovery
					   * began (the wall clock may be set
					   * back; stamps then run ahead of it) */
	struct timespec published;        /* CLOCK_MONOTONIC: when published, or
					   * kept after a failed discovery; under
					   * the catalog lock */
	struct snapfs_guest *guest;       /* sorted by dir */
	size_t n;
	uint64_t entries;                 /* a hash of the root's names */
	struct timespec root_stamp;       /* moves only when they change */
};

/* Set by the program at start; again after snapfs_catalog_shutdown, for a
 * new start. */
int snapfs_catalog_init(const struct snapfs_source *src, double cache_seconds);
void snapfs_catalog_shutdown(void);
/* The current catalog; one older than the cache time is still served
 * while a background discovery makes the next.  Never NULL on success;
 * drop it with snapfs_catalog_put. */
int snapfs_catalog_get(struct snapfs_catalog **out);
void snapfs_catalog_put(struct snapfs_catalog *c);
/* The guest that seen names, discovered again now: its disks as the
 * domain XML and LVM have them now, for a new snapshot set (an LV swapped
 * since the listing is not snapshotted).  A catalog of that one guest, under
 * the directory name it was listed by, with no live partition tables; the
 * shared catalog is left as it is.  0, -ENOENT when the guest is gone, or
 * -errno (logged). */
int snapfs_catalog_resolve(const struct snapfs_guest *seen, struct snapfs_catalog **out);
const struct snapfs_guest *snapfs_catalog_guest(const struct snapfs_catalog *c,
						const char *dir);

/* ---- source-libvirt.c, source-lvm.c ------------------------------------- */

/* One guest of a libvirt host, by UUID or else by name: 0, -ENOENT when
 * it is not defined, -EIO when libvirt cannot be reached.  *unresolved:
 * how many of its disks have a source that is neither an LV of lvs nor a
 * regular file. */
int snapfs_source_libvirt_guest(const char *uri, const char *uuid, const char *name,
				const struct snapfs_lv_list *lvs, struct snapfs_guest *out,
				size_t *unresolved);
/* Discover every guest with its disks.  *out is an array of *n guests. */
int snapfs_source_libvirt_list(const char *uri, const struct snapfs_lv_list *lvs,
			       struct snapfs_guest **out, size_t *n);
/* Close the libvirt connections kept between calls (before a fork, and at
 * exit); the next call connects again. */
void snapfs_source_libvirt_disconnect(void);
/* -o snapshot=: set once at start, before the first discovery. */
void snapfs_source_libvirt_mode(enum snapfs_snapshot_mode mode);
int snapfs_source_lvm_list(char *const *vgs, const struct snapfs_lv_list *lvs,
			   struct snapfs_guest **out, size_t *n);

/* The read-write libvirt connection for uri, shared (virConnectClose
 * when done), or NULL (logged); and libvirt's last error message. */
struct _virConnect *snapfs_libvirt_connect(const char *uri);
/* Held around snapfs's own block queries (virDomainGetBlockInfo) and its
 * backup jobs' begin and abort, which qemu 7.2 must not see at once. */
void snapfs_libvirt_job_lock(void);
void snapfs_libvirt_job_unlock(void);
const char *snapfs_libvirt_error(void);

/* Freezing a guest's filesystems through its agent (source-libvirt.c).
 * prepare connects and looks the guest up before anything is frozen:
 * 0 with *out set, 1 when the guest is not running (no freeze needed), or
 * -errno.  freeze and thaw: 0 or -EIO with libvirt's words in *why; thaw
 * 1 when nothing was frozen (the freeze was refused before it reached the
 * guest: no agent configured or connected). */
struct snapfs_freeze;
int snapfs_freeze_prepare(const char *uri, const char *guest, const char *uuid,
			  unsigned timeout, struct snapfs_freeze **out);
int snapfs_freeze(struct snapfs_freeze *f, char **why);
int snapfs_thaw(struct snapfs_freeze *f, char **why);
void snapfs_freeze_close(struct snapfs_freeze *f);

/* ---- snapset.c: point-in-time snapshot sets ----------------------------- */

enum snapfs_freeze_mode { SNAPFS_FREEZE_OFF, SNAPFS_FREEZE_AUTO, SNAPFS_FREEZE_REQUIRE };

struct snapfs_snapset_config {
	const char *cow_size;   /* lvcreate --size/--extents, "20%ORIGIN" */
	const char *owner;      /* owner tag of this mount */
	unsigned linger;        /* seconds to keep an unused set */
	enum snapfs_freeze_mode freeze;
	unsigned freeze_timeout; /* seconds for the guest agent to answer */
	const char *uri;        /* libvirt URI for freezing, NULL: default */
	struct snapfs_reserve reserve; /* -o reflink_reserve= */
	const char *reserve_text; /* as given, for log lines */
	const char *scratch_dir; /* -o scratch_dir=: the backup API's scratch files */
	struct snapfs_reserve scratch_reserve; /* -o scratch_reserve= */
	const char *scratch_reserve_text;
	const char *run_dir;    /* this mount's private runtime directory (sockets) */
	const char *host_id;    /* -o host_id=: this host, in RBD snapshots' names */
	struct snapfs_reserve rbd_reserve; /* -o rbd_reserve= */
	const char *rbd_reserve_text;
	/* Called when a guest's files start showing a new time (a set of it
	 * is removed), with the guest's directory name, under the sets' lock:
	 * what caches their attributes must forget them.  May be NULL. */
	void (*epoch_moved)(const char *dir);
	/* Called when a snapshot of the guest's held set stops answering
	 * reads (a guard tripped, a job ended, a clone dropped), from the
	 * watcher with no lock held: what caches the files' bytes must forget
	 * them, so that the next read fails rather than answer from a cache.
	 * May be NULL. */
	void (*bytes_dropped)(const char *dir);
};

/* The bytes a file shows (image.c): a snapshot's own, or the disk a qcow2
 * chain of snapshots decodes to.  Partitions, holes and reads go through
 * it, whatever is behind. */
enum snapfs_image_kind {
	SNAPFS_IMAGE_NONE,            /* not served: reads fail with EIO */
	SNAPFS_IMAGE_DEVICE,          /* the snapshot's bytes, from byte 0 */
	SNAPFS_IMAGE_QCOW2,           /* decoded */
	SNAPFS_IMAGE_NBD,             /* an NBD export's bytes (dev->nbd) */
	SNAPFS_IMAGE_GUEST_LV,        /* a guest's own LV over its disks' images */
};

struct snapfs_image {
	enum snapfs_image_kind kind;
	const struct snapfs_snapdisk *dev; /* DEVICE, NBD */
	struct snapfs_chain *chain;   /* QCOW2 */
	const struct snapfs_glvs *glvs; /* GUEST_LV: its VGs, and the LV */
	const struct snapfs_glvm_lv *glv;
	uint64_t size;
	uint64_t allocated;           /* bytes holding data, or SNAPFS_ALL_DATA */
};

struct snapfs_mechanism;
struct snapfs_nbd;
struct snapfs_job;
struct snapfs_guard;

struct snapfs_snapdisk {
	const char *guest;            /* the guest's name, for log lines */
	const struct snapfs_mechanism *mech; /* what takes and removes it */
	bool taken;                   /* its snapshot exists: remove it */
	char file[SNAPFS_NAME_MAX + 1]; /* "" for a layer below a qcow2 disk */
	char target[33];
	char format[17];
	unsigned sector_size;
	enum snapfs_origin_kind kind;
	size_t nlayers;               /* the layers of its chain: the disks after it */
	unsigned depth;               /* 0, or n for the n-th layer below a disk */
	bool decodable;               /* a qcow2 disk the listing could decode */
	struct snapfs_lv lv;          /* SNAPFS_ORIGIN_LV: the origin as listed */
	dev_t origin_dev;             /* SNAPFS_ORIGIN_FILE: as listed */
	ino_t origin_ino;
	/* SNAPFS_ORIGIN_LV */
	char vg[128], origin[128], snap[128];
	char path[300];               /* /dev/mapper/... of the snapshot */
	const char *dm_name;          /* path without /dev/mapper/ */
	unsigned cow_warned;          /* 0, 80 or 95: COW use warned about */
	bool has_map;                 /* a thin snapshot whose mapping is known */
	struct snapfs_thinmap map;    /* where it has data */
	/* SNAPFS_ORIGIN_FILE */
	char *origin_path;            /* the origin file */
	int clone_fd;                 /* read-write, only to drop the clone; or -1 */
	struct snapfs_fsinfo fs;      /* where the clone lives */
	dev_t fs_dev;                 /* its st_dev */
	bool dropped;                 /* reads fail from now on (atomic): a clone's
				       * blocks given back, a backup job ended */
	/* SNAPFS_ORIGIN_BACKUP */
	struct snapfs_job *job;       /* the set's one backup job */
	struct snapfs_guard *guard;   /* DIRECT: what must not change */
	struct snapfs_nbd *nbd;       /* its export of this disk */
	/* SNAPFS_ORIGIN_RBD */
	struct snapfs_rbd_spec *rbd;  /* the image (copied) */
	struct snapfs_rbd *rbd_head;  /* the image, read-write but never written:
				       * it watches the image's header */
	struct snapfs_rbd *rbd_maker; /* the image, opened to make the snapshot
				       * and closed once it is made */
	struct snapfs_rbd *rbd_img;   /* open at the snapshot */
	char rbd_snap[128];           /* the snapshot's name */
	char *scratch;                /* the scratch file of this disk */
	int fd;
	int dfd;                      /* O_DIRECT on the same device, or -1 */
	unsigned dio_align;           /* its logical block size */
	uint64_t size;
	uint64_t allocated;           /* bytes holding data, or SNAPFS_ALL_DATA */
	/* What the guest sees (its partitions are parts), and for a qcow2
	 * disk the container, cut where its image ends. */
	struct snapfs_image view, container;
	struct snapfs_chain *chain;   /* a qcow2 disk's, decoded; or NULL */
	struct snapfs_partitions parts;   /* read from the snapshot */
};

struct snapfs_snapset;

/* ---- snap-*.c: snapshot mechanisms ----------------------------------------
 *
 * What snapshots the disks of a set.  snapset.c runs the lifecycle and
 * calls these; a disk's mechanism is that of its origin kind.  Each is
 * called without the sets' lock, on one set's disks, by one thread at a
 * time but for check (any reader) and watch (the watcher). */
struct snapfs_mechanism {
	const char *name;             /* "lvm", "reflink", "libvirt-backup" */
	/* At snapfs_snapset_init: the mount's configuration (kept). */
	void (*init)(const struct snapfs_snapset_config *cfg);
	/* Before the freeze: what d is to snapshot, from disk o of g (lv: o's
	 * LV or a layer's).  0 or -errno, logged. */
	int (*plan)(const struct snapfs_guest *g, const struct snapfs_disk *o,
		    const struct snapfs_lv *lv, struct snapfs_snapdisk *d);
	/* Inside the freeze: snapshot the n disks ds (all of this mechanism)
	 * at one instant, setting taken on each made.  0 or -errno, logged. */
	int (*take)(const struct snapfs_guest *g, struct snapfs_snapdisk **ds, size_t n);
	/* After the thaw: open d for reads (fd or image, size, allocated). */
	int (*open)(const struct snapfs_guest *g, struct snapfs_snapdisk *d);
	/* After a read: 0 while d is sound, else -EIO, with why (for the one
	 * line the set logs; "" when the cause was logged already). */
	int (*check)(const struct snapfs_snapdisk *d, char *why, size_t len);
	/* Remove what take made (d->taken); a failure is retried here. */
	void (*remove)(struct snapfs_snapdisk *d);
	/* Where d's snapshot is (user.snapfs.snapshot): "vg/snap", "unnamed
	 * reflink clone on /mnt"; and, when not the same, d for log lines. */
	void (*where)(const struct snapfs_snapdisk *d, char *out, size_t len);
	void (*describe)(const struct snapfs_snapdisk *d, char *out, size_t len);
	/* The status view's line of d. */
	void (*report)(FILE *f, const struct snapfs_snapdisk *d);
	/* Every SNAPFS_WATCH_MS, with the disks of this mechanism in sets
	 * that are READY (each set referenced meanwhile): drop what must go. */
	void (*watch)(struct snapfs_snapdisk *const *ds, size_t n);
	/* About once a second, from the reaper: retries. */
	void (*tick)(void);
	/* At shutdown, once every set is gone: last retries. */
	void (*shutdown)(void);
};
#define SNAPFS_WATCH_MS 100

/* retry.c: what a mechanism could not remove, retried from its tick.  An
 * item embeds struct snapfs_retry as its first member. */
#define SNAPFS_RETRY_SECONDS 5
struct snapfs_retry {
	struct snapfs_retry *next;
};
struct snapfs_retries {
	pthread_mutex_t lock;
	struct snapfs_retry *head;   /* under lock */
	struct timespec last;        /* under lock: the last item handed out */
	bool tried;
};
#define SNAPFS_RETRIES_INIT { PTHREAD_MUTEX_INITIALIZER, NULL, { 0, 0 }, false }
void snapfs_retries_add(struct snapfs_retries *q, struct snapfs_retry *r);
/* One item to retry now (taken off the queue; add it back if it fails
 * again), or NULL: none, or one was handed out under SNAPFS_RETRY_SECONDS
 * ago. */
struct snapfs_retry *snapfs_retries_due(struct snapfs_retries *q);
/* Every item, for a last try at shutdown. */
struct snapfs_retry *snapfs_retries_take_all(struct snapfs_retries *q);

extern const struct snapfs_mechanism snapfs_mech_lvm, snapfs_mech_reflink,
	snapfs_mech_direct, snapfs_mech_libvirt, snapfs_mech_rbd;
/* The mechanisms, NULL-terminated (guest.c), and that of an origin kind
 * (direct: a file read from the origin itself). */
extern const struct snapfs_mechanism *const snapfs_mechanisms[];
const struct snapfs_mechanism *snapfs_mechanism_of(enum snapfs_origin_kind kind, bool direct);
/* snapfs_mechanisms, through a call the tests can fake. */
const struct snapfs_mechanism *const *snapfs_mechanism_list(void);

/* Abort the backup jobs a dead snapfs left at uri: those of the mount of
 * owner (its sockets in its runtime directory), or of any snapfs mount when
 * owner is NULL, and remove their sockets and scratch files (for owner, also
 * the files in scratch named for it).  Jobs of others are never touched.
 * The number of jobs aborted, or -EIO when libvirt cannot be reached. */
int snapfs_libvirt_sweep(const char *uri, const char *owner, const char *scratch);

/* What mechanisms share with the lifecycle (snapset.c). */
double snapfs_elapsed(const struct timespec *since);
bool snapfs_snapdisk_dropped(const struct snapfs_snapdisk *d);
/* Mark d dropped: its reads fail from now on.  True the first time. */
bool snapfs_snapdisk_drop(struct snapfs_snapdisk *d);

void snapfs_snapset_init(const struct snapfs_snapset_config *cfg);
/* Remove every set, open files or not (unmount). */
void snapfs_snapset_shutdown(void);
/* Take a reference on the guest's set, creating it (all disks at one
 * instant) when none is held.  Called by open.  0 or -errno. */
int snapfs_snapset_acquire(const struct snapfs_guest *g, struct snapfs_snapset **out);
/* Drop a reference; the last one removes the set (after linger). */
void snapfs_snapset_release(struct snapfs_snapset *s);
const struct snapfs_snapdisk *snapfs_snapset_disk(const struct snapfs_snapset *s,
						  const char *file);
/* The time the files of s show (its guest's epoch when it was made). */
struct timespec snapfs_snapset_stamp(const struct snapfs_snapset *s);
/* After a read of d: 0 while the snapshot is valid, -EIO once the kernel
 * invalidated it (its COW area filled), logged once per set. */
int snapfs_snapset_check(struct snapfs_snapset *s, const struct snapfs_snapdisk *d);
/* The same for every disk of s: after a read of a guest LV, which may lie
 * on any of them. */
int snapfs_snapset_check_all(struct snapfs_snapset *s);
/* For the LV vg/lv (names as shown) of the set guest dir holds: its size,
 * and what it holds (fstype, label, uuid).  0, or -ENOENT when no set or
 * no such LV is held. */
int snapfs_snapset_held_lv(const char *dir, const char *vg, const char *lv, uint64_t *size,
			   struct snapfs_partition *id);
/* The guest's own LVs as s read them from its disks, or NULL. */
const struct snapfs_glvs *snapfs_snapset_glvs(const struct snapfs_snapset *s);
/* Copy what stat and getxattr show of a held set without creating one:
 * 0, or -ENOENT when the guest holds no set. */
struct snapfs_held {
	struct timespec stamp;        /* what stat shows (snapfs_snapset_stamp) */
	struct timespec instant;      /* when the snapshots were taken */
	uint64_t size;                /* of the disk or partition */
	uint64_t allocated;           /* of it, bytes holding data, or SNAPFS_ALL_DATA */
	char snap[300];               /* VG/LV of the snapshot, or where a clone is */
	bool frozen;                  /* taken with the guest's filesystems frozen */
};
int snapfs_snapset_held(const char *dir, const char *file, unsigned partno,
			struct snapfs_held *out);
/* A copy of the partition table of a held set's disk (file names the disk
 * image): while a set is held, the guest's directory shows what reads see.
 * 0, or -ENOENT when the guest holds no set. */
int snapfs_snapset_held_parts(const char *dir, const char *file,
			      struct snapfs_partitions *out);
/* The status view: one block per held set (guest, disks, snapshot LVs,
 * age, COW use, open files, consistency).  Caller frees. */
char *snapfs_snapset_report(void);
/* The time the files of the guest of dir show while it holds no set: it
 * moves on only when a set of the guest is removed, and the files of its
 * next set show it too (so a tool's stat before an open and its fstat after
 * agree), and it is never one that files of an earlier set showed. */
struct timespec snapfs_snapset_epoch(const char *dir);
/* Number of sets held (for tests and the status view). */
size_t snapfs_snapset_count(void);

/* ---- qcow2.c: qcow2 images, read-only ------------------------------------ */

/* One layer's bytes: a snapshot device, a file, or a buffer in tests. */
struct snapfs_qcow2_io {
	/* 0 when all len bytes were read, or -errno (-EIO; -ENXIO past the
	 * end).  Called from many threads at once. */
	int (*pread)(void *opaque, void *buf, size_t len, uint64_t off);
	void *opaque;
	uint64_t size;              /* the device's or file's: nothing past it is read */
	const char *guest, *disk;   /* for log lines (copied) */
};

enum snapfs_extent_kind {
	SNAPFS_EXTENT_DATA,         /* data here (compressed or not) */
	SNAPFS_EXTENT_ZERO,         /* zero clusters, or unallocated with nothing below */
	SNAPFS_EXTENT_BACKING,      /* unallocated here: the layer below decides */
};

struct snapfs_qcow2;

/* Open the qcow2 image io holds, when a snapshot set with a qcow2 disk is
 * made: header checked, active L1 table read (io is copied; its opaque
 * must outlive the image).  0; -EINVAL for a header that is not sound,
 * -EOPNOTSUPP for what is not decoded (encryption, an external data file,
 * an unknown incompatible feature, version or compression type), each
 * logged with the reason; -ENOMEM; or io's -errno. */
int snapfs_qcow2_open(const struct snapfs_qcow2_io *io, struct snapfs_qcow2 **out);
/* Free the image; no read of it may be running.  NULL is ignored. */
void snapfs_qcow2_close(struct snapfs_qcow2 *q);
/* The backing file the image names, as written (relative to the image's
 * directory unless absolute): 1 to 1023 bytes, no control bytes; or NULL. */
const char *snapfs_qcow2_backing_name(const struct snapfs_qcow2 *q);
/* The backing file's format as the image records it ("qcow2", "raw"), or
 * NULL when it does not say. */
const char *snapfs_qcow2_backing_format(const struct snapfs_qcow2 *q);
/* Before the first read: the layer below, another qcow2 image or a raw one
 * (neither: unallocated clusters read as zeroes), read only up to its size.
 * It must outlive q.  0, -EINVAL with both, -ELOOP when backing is q or has
 * q below it, or the chain below would be over 256 layers deep. */
int snapfs_qcow2_set_backing(struct snapfs_qcow2 *q, struct snapfs_qcow2 *backing,
			     const struct snapfs_qcow2_io *raw);
/* What the header says: the disk's size in bytes, 512 to 2 MiB, 2 or 3. */
uint64_t snapfs_qcow2_virtual_size(const struct snapfs_qcow2 *q);
unsigned snapfs_qcow2_cluster_size(const struct snapfs_qcow2 *q);
unsigned snapfs_qcow2_version(const struct snapfs_qcow2 *q);
/* Read the virtual disk, from any thread.  0; -EINVAL past the virtual
 * size; -EIO where a table or cluster is bad (logged once per image);
 * -ENOMEM; or an io's -errno. */
int snapfs_qcow2_read(struct snapfs_qcow2 *q, void *buf, size_t len, uint64_t off);
/* For lseek and st_blocks: the extent at off, *len (> 0) bytes of one kind
 * (it may stop short of the next kind: ask again).  0, -ENXIO at or past
 * the virtual size, -EIO as for a read. */
int snapfs_qcow2_extent(struct snapfs_qcow2 *q, uint64_t off, uint64_t *len,
			enum snapfs_extent_kind *kind);
/* Bytes of the virtual disk this image (not the layers below) holds data
 * for, compressed clusters whole.  Reads each L2 table once (at most the
 * device's size in all); the answer is kept.  0 or -errno. */
int snapfs_qcow2_allocated(struct snapfs_qcow2 *q, uint64_t *bytes);
/* Where the container ends, as qemu-img check's "Image end offset": a
 * whole cluster past the last one in use, so up to a cluster past io's
 * size when the image ends in a compressed cluster (cut it there).  0 or
 * -errno (a bad table here is skipped, not an error). */
int snapfs_qcow2_image_end(struct snapfs_qcow2 *q, uint64_t *end);

/* ---- image.c: reading what a file shows ------------------------------------ */

/* A qcow2 disk decoded: its layers, the top one first, each a qcow2 image
 * but for a raw last one. */
struct snapfs_chain {
	size_t n;
	struct snapfs_qcow2 *q[SNAPFS_CHAIN_MAX];   /* NULL: a raw layer */
	struct snapfs_qcow2_io io[SNAPFS_CHAIN_MAX];
};

/* Add the layer io holds below the others (format "qcow2" or "raw"; a raw
 * one ends the chain).  0, -ELOOP past SNAPFS_CHAIN_MAX, or what
 * snapfs_qcow2_open says. */
int snapfs_chain_push(struct snapfs_chain *c, const struct snapfs_qcow2_io *io,
		      const char *format);
/* Once every layer is pushed: link them.  0 or -errno. */
int snapfs_chain_link(struct snapfs_chain *c);
void snapfs_chain_close(struct snapfs_chain *c);
/* The chain's disk, as snapfs_qcow2_read. */
int snapfs_chain_read(void *chain, void *buf, size_t len, uint64_t off);
/* The io of a snapshot, and of a descriptor (for the live origins of
 * listings). */
void snapfs_io_snapdisk(struct snapfs_qcow2_io *io, const struct snapfs_snapdisk *d,
			const char *guest, const char *disk);
void snapfs_io_fd(struct snapfs_qcow2_io *io, int *fd, uint64_t size, const char *guest,
		  const char *disk);

/* All len bytes at off: 0, -ENODATA for a device that ends short, or
 * -errno (-EIO).  DEVICE images read with O_DIRECT when buf is aligned
 * to SNAPFS_DIRECT_ALIGN. */
int snapfs_image_read(const struct snapfs_image *im, void *buf, size_t len, uint64_t off);
/* SEEK_DATA or SEEK_HOLE (whence) in [off, end): as snapfs_device_seek.
 * A decoded disk's holes are its zero and unallocated clusters. */
int snapfs_image_seek(const struct snapfs_image *im, uint64_t off, uint64_t end, int whence,
		      uint64_t *out);
/* Bytes of [start, end) holding data; all of it when that is not known. */
uint64_t snapfs_image_allocated(const struct snapfs_image *im, uint64_t start, uint64_t end);

/* ---- backing-file.c: which file a qcow2 image's backing name means ------- */

/* The file the backing name of the image at path image means: resolved as
 * qemu does, relative to image's directory, into out (its real path); only
 * a regular file in image's directory or in one of dirs (real paths,
 * NULL-terminated; may be NULL), reached by no symlink leading out of them.
 * Refused, with *why: a protocol or json: name, a file elsewhere, a device,
 * a missing file.  0, or -EPERM. */
int snapfs_backing_file_in(const char *image, const char *name, const char *const *dirs,
			   char *out, size_t outlen, const char **why);
/* The same with the storage pools' directories the last discovery saw. */
int snapfs_backing_file(const char *image, const char *name, char *out, size_t outlen,
			const char **why);
/* Replace the pools' directories (real paths, NULL-terminated, malloc'd;
 * taken over); free such a list. */
void snapfs_backing_pools_set(char **dirs);
void snapfs_backing_pools_free(char **dirs);

/* ---- backing.c: which LV a qcow2 image's backing name means --------------- */

/* The LV of VG vg (the image's own) that the backing name means: a bare
 * name, /dev/VG/LV, /dev/mapper/VG-LV, or oVirt's ../IMAGE/LV (IMAGE no VG
 * of vgs, a NULL-terminated list, or NULL when not known).  Refused, with
 * *why: a host file, a json: or protocol name, a name leaving the VG.
 * 0 with lv filled, or -EPERM. */
int snapfs_backing_lv(const char *vg, const char *name, const char *const *vgs, char *lv,
		      size_t lvlen, const char **why);

/* ---- nbd.c: reading an NBD export (libnbd) --------------------------------- */

/* Connect to export name at the UNIX socket path: up to conns connections,
 * read-only, so that readers of one export run side by side.  *size gets
 * the export's size.  guest and disk name log lines (copied).  0 or
 * -errno (logged). */
int snapfs_nbd_open(const char *socket, const char *name, unsigned conns, const char *guest,
		    const char *disk, struct snapfs_nbd **out, uint64_t *size);
/* All len bytes at off, from any thread: 0 or -EIO (logged once). */
int snapfs_nbd_read(struct snapfs_nbd *n, void *buf, size_t len, uint64_t off);
/* Where the export has data, by its base:allocation block status: 0 with
 * out filled, -ENOTSUP when the server offers none, or -errno. */
int snapfs_nbd_map(struct snapfs_nbd *n, uint64_t size, struct snapfs_thinmap *out);
/* Close every connection, saying goodbye to the server when it is still
 * there (goodbye); no read may be running.  NULL is ignored. */
void snapfs_nbd_close(struct snapfs_nbd *n, bool goodbye);

/* ---- rbd.c: Ceph RBD images (librados, librbd) ------------------------------
 *
 * One cluster handle per (configuration, monitors, user, key), connected
 * on first use and kept; every call into the cluster is bounded by
 * SNAPFS_RBD_TIMEOUT seconds, and a cluster that could not be reached is
 * not tried again for SNAPFS_RBD_RETRY seconds (calls fail at once). */
#define SNAPFS_RBD_TIMEOUT 10
#define SNAPFS_RBD_RETRY 10

struct snapfs_rbd;
/* Open spec's image at snapshot snap (NULL: the image itself, read-only
 * unless for_snapshots, which may create and remove snapshots).  0, or
 * -errno with err saying what failed (Ceph's words). */
int snapfs_rbd_open(const struct snapfs_rbd_spec *spec, const char *snap, bool for_snapshots,
		    struct snapfs_rbd **out, char *err, size_t errlen);
uint64_t snapfs_rbd_size(const struct snapfs_rbd *r);
/* All len bytes at off, from any thread: 0 or -errno (past the end: -EIO;
 * -ETIMEDOUT at once for SNAPFS_RBD_RETRY seconds after a read of the same
 * cluster timed out). */
int snapfs_rbd_read(struct snapfs_rbd *r, void *buf, size_t len, uint64_t off);
/* Blocklist on r's cluster the clients of a dead run kept in the file
 * path (rbd-dead.c), once per cluster: how many, or -errno. */
int snapfs_rbd_end_dead(struct snapfs_rbd *r, const char *path);
/* Is snapshot name of r's image gone (removed by someone, as the image's
 * header said to every reader)?  1, 0, or -errno. */
int snapfs_rbd_snap_gone(struct snapfs_rbd *r, const char *name);
/* For snapfs_partitions_read_from and the like. */
int snapfs_rbd_read_cb(void *r, void *buf, size_t len, uint64_t off);
/* Where the open snapshot (or image) has data, since the image was made. */
int snapfs_rbd_map(struct snapfs_rbd *r, struct snapfs_thinmap *out);
/* Snapshots of an image opened for_snapshots: 0 or -errno. */
int snapfs_rbd_snap_create(struct snapfs_rbd *r, const char *name);
int snapfs_rbd_snap_remove(struct snapfs_rbd *r, const char *name);
/* Remove every snapshot of the image whose name starts with prefix: the
 * number removed, or -errno.  *failed counts those that stayed. */
int snapfs_rbd_snap_remove_prefixed(struct snapfs_rbd *r, const char *prefix, int *failed);
/* The cluster of r: raw bytes free and in all, and whether it reports
 * being near full (OSD_NEARFULL, POOL_NEARFULL and worse).  0 or -errno.
 * _now asks the cluster (bounded by the timeouts); the other answers at
 * once what a thread of the cluster's own saw last (at most a second or
 * two ago; -EAGAIN before its first look), and keeps it looking. */
int snapfs_rbd_space_now(struct snapfs_rbd *r, uint64_t *free_bytes, uint64_t *total,
			 bool *nearfull);
int snapfs_rbd_space(struct snapfs_rbd *r, uint64_t *free_bytes, uint64_t *total,
		     bool *nearfull);
void snapfs_rbd_close(struct snapfs_rbd *r);
/* At exit: disconnect from every cluster. */
void snapfs_rbd_shutdown(void);
/* "POOL/IMAGE" or "POOL/NS/IMAGE", for log lines and xattrs. */
void snapfs_rbd_name(const struct snapfs_rbd_spec *spec, char *out, size_t len);

/* ---- rbd-dead.c: the librados clients of a run, ended by the next ----------
 *
 * Each connection of a run appends its cluster's fsid and its address to
 * the file named by snapfs_rbd_dead_record_at (the mount's run directory);
 * the sweep of a later run of that mount blocklists them, so that a dead
 * run's watches do not hold up the removal of its snapshots for 30 s. */
void snapfs_rbd_dead_record_at(const char *path);
/* That file for the mount of owner tag owner: 0 or -errno. */
int snapfs_rbd_dead_path(const char *owner, char *out, size_t len);
/* After rados_connect of cluster (a rados_t). */
void snapfs_rbd_dead_record(void *cluster);
/* Blocklist on cluster (a rados_t) the addresses path keeps for its fsid:
 * how many, or -errno. */
int snapfs_rbd_dead_blocklist(void *cluster, const char *path);

/* rbd-libvirt.c: the key of spec from the libvirt secret it names, if any
 * (base64, as Ceph wants it): 0, or -EACCES with why. */
int snapfs_rbd_key_from_libvirt(struct _virConnect *conn, struct snapfs_rbd_spec *spec,
				char *why, size_t len);

/* snap-rbd.c: the prefix of the snapshots of this host (host_id) and mount
 * (owner; NULL: every mount of the host): "snapfs.HOST.MARK." */
void snapfs_rbd_snap_prefix(const char *host_id, const char *owner, char *out, size_t len);
/* Remove the snapshots a dead snapfs of this host left on the RBD disks of
 * the guests at uri: those of the mount of owner, or of any mount of the
 * host when owner is NULL.  With owner and end_dead (the caller holds the
 * mount's owner lock), the dead run's Ceph clients are blocklisted first
 * (rbd-dead.c).  The number removed, or -EIO when libvirt cannot be
 * reached. */
int snapfs_rbd_sweep(const char *uri, const char *host_id, const char *owner, bool end_dead);
/* All len bytes at off of RBD disk d's snapshot: 0, or -EIO (logged). */
int snapfs_rbd_disk_pread(const struct snapfs_snapdisk *d, void *buf, size_t len, uint64_t off);
/* This host's identity for snapshot names: /etc/machine-id, else the host
 * name, as [a-z0-9-], at most 32 bytes. */
void snapfs_host_id(char *out, size_t len);

/* ---- lvm-text.c: LVM2's metadata text, parsed with caps ------------------- */

#define SNAPFS_LVMT_TEXT_MAX (1u << 20)   /* bytes of text */
#define SNAPFS_LVMT_DEPTH_MAX 16          /* sections inside sections */
#define SNAPFS_LVMT_NAME_MAX 128          /* bytes of a key (LVM's NAME_LEN) */
#define SNAPFS_LVMT_STRING_MAX 16384      /* bytes of a string value */
#define SNAPFS_LVMT_NODES_MAX 262144      /* values and sections in all */

enum snapfs_lvmt_kind {
	SNAPFS_LVMT_SECTION,              /* name { ... }: child, its entries */
	SNAPFS_LVMT_ARRAY,                /* name = [ ... ]: child, its elements */
	SNAPFS_LVMT_STRING,               /* str */
	SNAPFS_LVMT_INT,                  /* num, 0 to INT64_MAX */
};

struct snapfs_lvmt_node {
	enum snapfs_lvmt_kind kind;
	char *key;                        /* NULL for array elements and the root */
	char *str;
	int64_t num;
	struct snapfs_lvmt_node *child;   /* in the order of the text */
	struct snapfs_lvmt_node *next;
};

/* Parse len bytes of metadata text (a NUL ends it early; only NULs may
 * follow) into *root, a section holding the top-level entries.  0; -EINVAL
 * with why (line and cause) for text that is malformed or past a cap;
 * -ENOMEM.  The caller frees *root with snapfs_lvmt_free. */
int snapfs_lvmt_parse(const char *text, size_t len, struct snapfs_lvmt_node **root,
		      char *why, size_t whylen);
void snapfs_lvmt_free(struct snapfs_lvmt_node *n);
/* The entry key of section, of the given kind: 0, -ENOENT when absent,
 * -EINVAL when there twice or of another kind. */
int snapfs_lvmt_find(const struct snapfs_lvmt_node *section, const char *key,
		     enum snapfs_lvmt_kind kind, const struct snapfs_lvmt_node **out);

/* ---- guest-lvm.c: a guest's own LVM2 volumes, read from its disks ---------
 *
 * The guest's PVs (partitions or whole disks libblkid calls LVM2_member)
 * are read from a snapshot: labels, metadata areas and metadata text, all
 * guest-controlled and checked before use.  Each visible LV of each VG is
 * listed, with the extents that make it up mapped onto those devices;
 * what is not plain linear or striped data is listed but not served. */

/* A device that may be a PV of the guest. */
struct snapfs_glvm_dev {
	/* Read all len bytes at off: 0 or -errno. */
	int (*read)(void *ctx, void *buf, size_t len, uint64_t off);
	void *ctx;
	uint64_t size;                    /* bytes: nothing past it is read */
	const char *name;                 /* "vda2", for log lines (copied) */
};

#define SNAPFS_GLVM_DEVS_MAX 256          /* devices scanned */
#define SNAPFS_GLVM_TEXTS_MAX (32u << 20) /* bytes of metadata text read in all */
#define SNAPFS_GLVM_PVS_MAX 256           /* PVs of one VG */
#define SNAPFS_GLVM_LVS_MAX 4096          /* LVs of one VG */
#define SNAPFS_GLVM_SEGS_MAX 1024         /* segments of one LV */
#define SNAPFS_GLVM_STRIPES_MAX 128       /* stripes of one segment (LVM's) */

/* A run of an LV: len bytes from start, in stripes of stripe_size bytes
 * (0 when nstripes is 1) over nstripes areas, each of len / nstripes bytes
 * at start on device dev. */
struct snapfs_glvm_area {
	unsigned dev;                     /* index into the devices scanned */
	uint64_t start;                   /* bytes from the device's start */
};

struct snapfs_glvm_seg {
	uint64_t start, len;              /* bytes of the LV */
	uint64_t stripe_size;
	unsigned nstripes;
	struct snapfs_glvm_area *area;
};

struct snapfs_glvm_lv {
	char *name;
	const char *vg;                   /* its VG's name */
	char segtype[32];                 /* "linear", "striped", or the first
					   * other type ("thin", "raid1") */
	uint64_t size;                    /* bytes */
	bool served;
	char reason[160];                 /* why not, "" when served */
	struct snapfs_glvm_seg *seg;      /* sorted, contiguous from 0 */
	size_t nsegs;
};

struct snapfs_glvm_vg {
	char *name;
	char uuid[33];                    /* without dashes */
	uint64_t seqno;                   /* of the copy read */
	uint64_t extent_size;             /* bytes */
	bool served;
	char reason[160];                 /* why not, "" when served; no LVs then */
	struct snapfs_glvm_lv *lv;        /* the visible LVs, in the text's order */
	size_t nlvs;
};

struct snapfs_glvm {
	struct snapfs_glvm_vg *vg;
	size_t nvgs;
};

/* Read the guest's LVM2 volumes from ndevs devices (the PVs, and maybe
 * others: those with no LVM2 label are skipped with a warning).  Each
 * refusal (a device, a metadata copy, a VG, an LV) logs one line naming
 * guest and what.  0 with *out (maybe with no VG), -EINVAL for more than
 * SNAPFS_GLVM_DEVS_MAX devices, -ENOMEM.  A device's read error makes
 * that device count as no PV. */
int snapfs_glvm_scan(const char *guest, const struct snapfs_glvm_dev *dev, size_t ndevs,
		     struct snapfs_glvm **out);
void snapfs_glvm_free(struct snapfs_glvm *g);
/* For a read of a served lv at off: the device (*dev) and the byte there
 * (*dev_off) that hold it, and how many bytes from there (*len, > 0) go on
 * being the LV's next bytes.  0, -ENXIO at or past the LV's size,
 * -EOPNOTSUPP for an LV not served. */
int snapfs_glvm_map(const struct snapfs_glvm_lv *lv, uint64_t off, unsigned *dev,
		    uint64_t *dev_off, uint64_t *len);

/* ---- guest-lvm-label.c: a guest PV's label and metadata areas ------------- */

/* What a device's LVM2 label says, and the metadata texts its areas hold
 * (checksums checked, each NUL-terminated). */
struct snapfs_glvm_pv {
	char uuid[33];
	uint64_t dev_size;                /* bytes, as the PV header says */
	char *text[2];
	size_t text_len[2];
	unsigned ntexts;
};

/* Read d's label, PV header and metadata areas into pv.  0 (an area that is
 * not sound is logged and left out); -EINVAL when d is no PV (logged);
 * -ENOMEM.  Free pv with snapfs_glvm_pv_free in any case. */
int snapfs_glvm_pv_read(const char *guest, const struct snapfs_glvm_dev *d,
			struct snapfs_glvm_pv *pv);
void snapfs_glvm_pv_free(struct snapfs_glvm_pv *pv);
/* Are the len bytes at s an LVM ID (32 of [0-9a-zA-Z!#])? */
bool snapfs_glvm_uuid_ok(const char *s, size_t len);

/* ---- guest-lvm-vg.c: one VG, from its metadata ----------------------------- */

/* Where the PVs are: the device of each PV UUID among the scanned ones. */
struct snapfs_glvm_pvs {
	const struct snapfs_glvm_dev *dev;
	const struct snapfs_glvm_pv *pv;  /* ndevs, uuid "" for no PV */
	size_t ndevs;
};

/* What a metadata copy says of itself: its VG's section, name, UUID and
 * seqno.  0, or -EINVAL with why. */
int snapfs_glvm_vg_identify(const struct snapfs_lvmt_node *root,
			    const struct snapfs_lvmt_node **vgsec, uint64_t *seqno,
			    char uuid[33], const char **why);
/* Fill vg (name, uuid, seqno already set) from its section: PVs, LVs,
 * segments, every extent checked; each LV not served is logged.  0, or
 * -EINVAL with vg->reason (the caller logs it), or -ENOMEM. */
int snapfs_glvm_vg_build(const char *guest, const struct snapfs_lvmt_node *vgsec,
			 const struct snapfs_glvm_pvs *pvs, struct snapfs_glvm_vg *vg);
void snapfs_glvm_vg_free(struct snapfs_glvm_vg *vg);


/* ---- guest-lvs.c: a guest's own LVs as files -------------------------------- */

/* A disk of a guest as the guest sees it, for finding its PVs. */
struct snapfs_gdisk {
	int (*read)(void *ctx, void *buf, size_t len, uint64_t off);
	void *ctx;
	const struct snapfs_image *im;    /* the same bytes as an image (holes), or NULL */
	uint64_t size;
	const char *target;               /* "vda" */
	const struct snapfs_partitions *parts;
};

/* The guest VGs found on some disks, and how to read each served LV. */
struct snapfs_glvs {
	struct snapfs_glvm *glvm;
	void *place;                      /* guest-lvs.c's: the PVs' places */
	size_t nplaces;
	struct snapfs_partition *id;      /* per LV (every VG's, in order): what
					   * libblkid says it holds */
};

/* Find the PVs among disks (partitions that libblkid calls LVM2_member, or
 * whole disks with no table that it calls so) and read their VGs: 0 with
 * *out, NULL when there is no PV; -errno.  identify: also what each LV
 * holds (id), kept from prev for a VG whose metadata is the same there.
 * The disks' readers must stay valid while *out is read, or be forgotten
 * (snapfs_glvs_forget_disks: the names and sizes stay, reads fail). */
int snapfs_glvs_scan(const char *guest, const struct snapfs_gdisk *disks, size_t n,
		     bool identify, const struct snapfs_glvs *prev, struct snapfs_glvs **out);
void snapfs_glvs_forget_disks(struct snapfs_glvs *g);
/* Does a whole disk, read through read, carry an LVM2 label?  One read of
 * its first 2 KiB. */
bool snapfs_glvs_has_label(int (*read)(void *ctx, void *buf, size_t len, uint64_t off),
			   void *ctx, uint64_t size);
/* May listed disk d hold a PV of the guest (a partition, or the whole)? */
bool snapfs_glvs_candidate(const struct snapfs_disk *d);
void snapfs_glvs_free(struct snapfs_glvs *g);
/* All len bytes at off of served lv of g: 0 or -errno. */
int snapfs_glvs_read(const struct snapfs_glvs *g, const struct snapfs_glvm_lv *lv, void *buf,
		     size_t len, uint64_t off);
/* SEEK_DATA or SEEK_HOLE (whence) from off in lv, as the disks beneath have
 * them: the offset found, lv's size when none.  0 or -errno. */
int snapfs_glvs_seek(const struct snapfs_glvs *g, const struct snapfs_glvm_lv *lv,
		     uint64_t off, int whence, uint64_t *out);
/* The served VG or LV of g by the name shown (escaped), or NULL; id: what
 * the LV holds. */
const struct snapfs_glvm_vg *snapfs_glvs_vg(const struct snapfs_glvs *g, const char *vg);
const struct snapfs_glvm_lv *snapfs_glvs_lv(const struct snapfs_glvs *g, const char *vg,
					    const char *lv, const struct snapfs_partition **id);

#endif
