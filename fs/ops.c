/* The FUSE operations, on libfuse's low-level API.
 *
 * The loop is multithreaded: any op may run beside any other.  Ops hold no
 * lock of their own; what they share lives in src/ (the catalog and the
 * snapshot sets, each with its own lock), in inodes.c (the inode numbers)
 * and files.c (the open files).  An inode number stands for a path; each op
 * resolves it against the guest list of now, as a path-based file system
 * would.  Reads go from the snapshot into a buffer each worker thread keeps
 * for its life, and the reply is copied from there: no allocation, and no
 * page faults, per request.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "snapfs-fuse.h"

struct snapfs_opts *snapfs_fs_opts;

/* How long the kernel may keep a name and its attributes: a guest list
 * changes only at discovery, and an open file's attributes are its
 * snapshot's.  No negative entries: a guest defined now shows at once. */
#define ENTRY_TIMEOUT 1.0
#define ATTR_TIMEOUT 1.0
/* d_ino of a name listed without a lookup, as libfuse's high-level API
 * gives it. */
#define UNKNOWN_INO 0xffffffffu

static struct snapfs_file *file_of(const struct fuse_file_info *fi)
{
	return (struct snapfs_file *)(uintptr_t)fi->fh;
}

static void apply_readahead(void)
{
	if (snapfs_fs_opts->readahead)
		snapfs_fs_set_readahead(snapfs_fs_opts->mountpoint, snapfs_fs_opts->readahead);
}

/* Called by the ops a mount's first request can be.  The first one widens
 * the mount's readahead: the kernel sends no request but init before it has
 * applied init's reply, which would undo it. */
static void first_request(void)
{
	static pthread_once_t readahead_once = PTHREAD_ONCE_INIT;

	pthread_once(&readahead_once, apply_readahead);
}

/* init: how many reads the kernel keeps in flight.  Readahead's reads are
 * background requests, of which the kernel keeps 12 in flight by default
 * and, past 9 (its congestion threshold), sends no more readahead at all:
 * a reader of a disk over the network then waits on every window.  snapfs
 * serves reads from up to 32 threads; let the kernel send that many. */
static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	conn->max_background = SNAPFS_MAX_BACKGROUND;
	conn->congestion_threshold = SNAPFS_MAX_BACKGROUND * 3 / 4;
}

/* lookup: a name in a directory, counted by the kernel until it forgets
 * it.  Never creates a snapshot. */
static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e = { .attr_timeout = ATTR_TIMEOUT, .entry_timeout = ENTRY_TIMEOUT };
	char dir[SNAPFS_PATH_MAX], path[SNAPFS_PATH_MAX];
	struct snapfs_node n;
	int rc;

	first_request();
	rc = snapfs_inode_path(parent, dir);
	if (rc == 0)
		rc = snapfs_path_join(dir, name, path);
	if (rc == 0)
		rc = snapfs_node_lookup(path, &n);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	snapfs_node_stat(&n, &e.attr);
	snapfs_node_put(&n);
	rc = snapfs_inode_ref(path, &e.ino);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	e.attr.st_ino = e.ino;
	/* A lookup the kernel gave up on counts nothing. */
	if (fuse_reply_entry(req, &e) != 0)
		snapfs_inode_forget(e.ino, 1);
}

/* forget: the kernel drops nlookup references to ino. */
static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	snapfs_inode_forget(ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		snapfs_inode_forget(forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/* getattr: stat(2), and fstat(2) of an open file, whose size and time are
 * its snapshot's.  Never creates a snapshot. */
static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	char path[SNAPFS_PATH_MAX];
	struct snapfs_node n;
	struct stat st;
	int rc;

	first_request();
	if (fi && !file_of(fi)->dir) {
		snapfs_stat_open_file(file_of(fi)->size, file_of(fi)->allocated, file_of(fi)->stamp,
				      &st);
	} else {
		rc = snapfs_inode_path(ino, path);
		if (rc == 0)
			rc = snapfs_node_lookup(path, &n);
		if (rc < 0) {
			fuse_reply_err(req, -rc);
			return;
		}
		snapfs_node_stat(&n, &st);
		snapfs_node_put(&n);
	}
	st.st_ino = ino;
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

/* open and opendir.  The first open of any file of a guest snapshots all
 * its disks; a directory's listing is made at its first readdir and again
 * at every rewind. */
static void reply_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, bool dir)
{
	char path[SNAPFS_PATH_MAX];
	struct snapfs_file *f;
	int rc;

	first_request();
	rc = snapfs_inode_path(ino, path);
	if (rc == 0)
		rc = dir ? snapfs_dir_open(path, &f) : snapfs_file_open(path, fi->flags, &f);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)f;
	if (!dir) {
		fi->keep_cache = 0; /* a new snapshot may hold new bytes */
		fi->noflush = 1;
		fi->direct_io = f->direct_io;
	}
	/* An open cut short (the opener killed while its snapshot was being
	 * made) gets no release: its set must not stay held. */
	if (fuse_reply_open(req, fi) == -ENOENT)
		snapfs_file_release(f);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	reply_open(req, ino, fi, true);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	reply_open(req, ino, fi, false);
}

/* One entry of a readdirplus reply: the kernel takes a lookup of each but
 * "." and ".." (ino 0: no entry, the name only).  Bytes added, or 0 when
 * it did not fit or failed (*rc). */
static size_t add_plus(fuse_req_t req, char *buf, size_t room, const char *dir,
		       const struct snapfs_dirent *d, off_t next, fuse_ino_t *ino, int *rc)
{
	struct fuse_entry_param e = { .attr = d->st, .attr_timeout = ATTR_TIMEOUT,
				      .entry_timeout = ENTRY_TIMEOUT };
	char path[SNAPFS_PATH_MAX];
	size_t need;

	if (S_ISDIR(d->st.st_mode) && (!strcmp(d->name, ".") || !strcmp(d->name, ".."))) {
		e.attr.st_ino = UNKNOWN_INO;
	} else {
		*rc = snapfs_path_join(dir, d->name, path);
		if (*rc == 0)
			*rc = snapfs_inode_ref(path, &e.ino);
		if (*rc < 0)
			return 0;
		e.attr.st_ino = e.ino;
	}
	need = fuse_add_direntry_plus(req, buf, room, d->name, &e, next);
	if (need > room) {
		if (e.ino)
			snapfs_inode_forget(e.ino, 1);
		return 0;
	}
	*ino = e.ino;
	return need;
}

/* readdir and readdirplus: the entries from off, as many as fit in size.
 * Offsets index the listing made at off 0. */
static void reply_dir(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi,
		      bool plus)
{
	struct snapfs_file *f = file_of(fi);
	fuse_ino_t *refs = NULL;
	size_t used = 0, nrefs = 0;
	char *buf = malloc(size);
	int rc = buf ? 0 : -ENOMEM;

	pthread_mutex_lock(&f->list_lock);
	if (rc == 0 && (off == 0 || !f->list.e))
		rc = snapfs_dir_list(f->data, &f->list);
	if (rc == 0 && plus && (uint64_t)off < f->list.n &&
	    !(refs = calloc(f->list.n - (size_t)off, sizeof(*refs))))
		rc = -ENOMEM;
	for (size_t i = (size_t)off; rc == 0 && off >= 0 && i < f->list.n; i++) {
		const struct snapfs_dirent *d = &f->list.e[i];
		size_t need;

		if (plus) {
			need = add_plus(req, buf + used, size - used, f->data, d, (off_t)i + 1,
					&refs[nrefs], &rc);
			if (need && refs[nrefs])
				nrefs++;
		} else {
			struct stat st = { .st_ino = UNKNOWN_INO, .st_mode = d->st.st_mode };

			need = fuse_add_direntry(req, buf + used, size - used, d->name, &st,
						 (off_t)i + 1);
			if (need > size - used)
				need = 0;
		}
		if (!need)
			break;
		used += need;
	}
	pthread_mutex_unlock(&f->list_lock);
	if (rc < 0 && !used)
		fuse_reply_err(req, -rc);
	else if (fuse_reply_buf(req, buf, used) != 0)
		for (size_t i = 0; i < nrefs; i++) /* the kernel took none of them */
			snapfs_inode_forget(refs[i], 1);
	free(refs);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	reply_dir(req, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	reply_dir(req, size, off, fi, true);
}

/* release and releasedir: the last release of a guest's files removes its
 * snapshots. */
static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	snapfs_file_release(file_of(fi));
	fuse_reply_err(req, 0);
}

/* The buffer a worker thread reads into, kept for the thread's life and
 * aligned for O_DIRECT. */
struct read_buf {
	char *mem;
	size_t size;
};

static pthread_key_t read_buf_key;
static pthread_once_t read_buf_once = PTHREAD_ONCE_INIT;

static void read_buf_free(void *p)
{
	struct read_buf *b = p;

	free(b->mem);
	free(b);
}

static void read_buf_key_make(void)
{
	if (pthread_key_create(&read_buf_key, read_buf_free))
		abort();
}

static char *thread_buf(size_t size)
{
	struct read_buf *b;
	void *mem;

	pthread_once(&read_buf_once, read_buf_key_make);
	b = pthread_getspecific(read_buf_key);
	if (b && b->size >= size)
		return b->mem;
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b || pthread_setspecific(read_buf_key, b)) {
			free(b);
			return NULL;
		}
	}
	/* At least as large as the largest read FUSE sends, so that it is
	 * made once; only the pages a read touches take memory. */
	if (size < SNAPFS_BLKSIZE)
		size = SNAPFS_BLKSIZE;
	if (posix_memalign(&mem, SNAPFS_DIRECT_ALIGN, size))
		return NULL;
	free(b->mem);
	b->mem = mem;
	b->size = size;
	return mem;
}

/* read: every read of a file. */
static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct snapfs_file *f = file_of(fi);
	const char *bytes = snapfs_file_bytes(f, &size, off);
	char *buf;
	int n;

	if (bytes) {
		fuse_reply_buf(req, bytes, size);
		return;
	}
	buf = thread_buf(size);
	n = buf ? snapfs_file_read(f, buf, size, off) : -ENOMEM;
	if (n < 0)
		fuse_reply_err(req, -n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

/* lseek: SEEK_DATA and SEEK_HOLE only (the kernel does the others).  Never
 * ENOSYS, which would turn lseek off for the whole mount. */
static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	off_t at = 0;
	int rc = snapfs_file_seek(file_of(fi), off, whence, &at);

	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_lseek(req, at);
}

/* getxattr and listxattr: user.snapfs.*, see snapfs(8).  Never create a
 * snapshot.  size 0 asks for the length. */
static void reply_xattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char path[SNAPFS_PATH_MAX];
	char *value = NULL;
	int rc;

	first_request();
	rc = snapfs_inode_path(ino, path);
	if (rc == 0 && size && !(value = malloc(size)))
		rc = -ENOMEM;
	if (rc == 0)
		rc = name ? snapfs_xattr_get(path, name, value, size)
			  : snapfs_xattr_list(path, value, size);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else if (!size)
		fuse_reply_xattr(req, (size_t)rc);
	else
		fuse_reply_buf(req, value, (size_t)rc);
	free(value);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	reply_xattr(req, ino, name, size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	reply_xattr(req, ino, NULL, size);
}

/* statfs: a read-only tree with no free space. */
static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st = {
		.f_bsize = SNAPFS_BLKSIZE,
		.f_frsize = 512,
		.f_namemax = SNAPFS_NAME_MAX,
		.f_flag = ST_RDONLY | ST_NOSUID | ST_NODEV,
	};

	first_request();
	fuse_reply_statfs(req, &st);
}

/* The mount is read-only (the kernel refuses writes first); these answer
 * EROFS should a request get here. */
static void erofs(fuse_req_t req)
{
	fuse_reply_err(req, EROFS);
}
static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	erofs(req);
}
static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	erofs(req);
}
static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	erofs(req);
}
static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	erofs(req);
}
static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	erofs(req);
}
static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	erofs(req);
}
static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	erofs(req);
}
static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	erofs(req);
}
static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	erofs(req);
}
static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	erofs(req);
}
static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	erofs(req);
}

const struct fuse_lowlevel_ops snapfs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_release,
	.open = op_open,
	.read = op_read,
	.lseek = op_lseek,
	.release = op_release,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.statfs = op_statfs,
	.setattr = op_setattr,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_unlink,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.write = op_write,
	.setxattr = op_setxattr,
	.removexattr = op_removexattr,
	.create = op_create,
};
