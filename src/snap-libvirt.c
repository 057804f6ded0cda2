/* The backup-API mechanism: for a running guest whose storage cannot
 * snapshot itself, one libvirt backup job in pull mode covers all of its
 * disks at one instant.  qemu then copies each block the guest overwrites
 * into a scratch file before the write lands, and exports every disk as it
 * was over NBD on a UNIX socket, which snapfs reads through libnbd.
 *
 * What snapfs starts, it can tell apart: a job's socket lives in this
 * mount's own runtime directory (SNAPFS_RUN_BASE/MARK/, MARK the owner
 * mark), its scratch files are named snapfs-MARK-UUID-TARGET.qcow2 in the
 * scratch directory.  A job whose socket is elsewhere is never aborted.
 *
 * Never a failure of the guest's writes: qemu 7.2's copy-before-write
 * filter fails the guest's write when the scratch file cannot grow, unless
 * told to break the snapshot instead (on-cbw-error=break-snapshot), which
 * libvirt 9.0 does not ask for.  So the watcher ends a job as soon as the
 * free space of the scratch filesystem falls under -o scratch_reserve=:
 * qemu then stops copying, its readers get EIO, and the guest never sees
 * an error.  A job that ends by itself (the guest stopped, crashed,
 * migrated, or someone aborted it) drops its disks the same way.
 *
 * Locking: a job's refs are under job_lock; ended and the disks' dropped
 * marks are atomic.  No lock is held across a libvirt or NBD call.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "snapfs.h"

/* Connections to each export: readers of one disk side by side. */
#define NBD_CONNS 4
/* How often a held job is asked whether it still runs. */
#define ALIVE_CHECK_S 1.0

struct snapfs_job {
	unsigned refs;                /* under job_lock: the disks that hold it */
	bool ended;                   /* atomic: aborted, or found gone */
	char guest[SNAPFS_NAME_MAX + 1];
	char uuid[VIR_UUID_STRING_BUFLEN];
	char *name;                   /* the domain's own name */
	char dir[256];                /* its socket's directory */
	char socket[300];
	char **scratch;               /* its disks' scratch files */
	size_t nscratch;
	struct timespec checked;      /* the watcher's last look (CLOCK_MONOTONIC) */
};

static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned job_seq;              /* under job_lock */
/* Read-only after init. */
static const char *uri, *run_dir, *scratch_dir, *reserve_text;
static struct snapfs_reserve reserve;
static char mark[64];

static uint64_t mib(uint64_t bytes)
{
	return bytes >> 20;
}

static void owner_mark(const char *owner, char *out, size_t len)
{
	snprintf(out, len, "%s", snapfs_owner_mark(owner));
}

static void libvirt_init(const struct snapfs_snapset_config *cfg)
{
	uri = cfg->uri;
	run_dir = cfg->run_dir;
	scratch_dir = cfg->scratch_dir ? cfg->scratch_dir : SNAPFS_SCRATCH_DIR_DEFAULT;
	reserve = cfg->scratch_reserve;
	reserve_text = cfg->scratch_reserve_text ? cfg->scratch_reserve_text : "?";
	owner_mark(cfg->owner, mark, sizeof(mark));
}

/* Free bytes of the scratch filesystem and the reserve on it: 0 or -errno. */
static int scratch_space(uint64_t *free_bytes, uint64_t *want)
{
	struct statvfs st;

	if (statvfs(scratch_dir, &st) < 0)
		return -errno;
	*free_bytes = (uint64_t)st.f_bavail * st.f_frsize;
	*want = snapfs_reserve_bytes(&reserve, (uint64_t)st.f_blocks * st.f_frsize);
	return 0;
}

/* The scratch directory, made with its parents at first use. */
static int make_scratch_dir(void)
{
	char path[1024];

	snprintf(path, sizeof(path), "%s", scratch_dir);
	for (char *p = path + 1;; p++) {
		bool end = *p == '\0';

		if (*p != '/' && !end)
			continue;
		*p = '\0';
		if (mkdir(path, 0711) < 0 && errno != EEXIST)
			return -errno;
		if (end)
			return 0;
		*p = '/';
	}
}

static int libvirt_plan(const struct snapfs_guest *g, const struct snapfs_disk *o,
			const struct snapfs_lv *lv, struct snapfs_snapdisk *d)
{
	uint64_t free_bytes, want;
	int rc;

	if (!run_dir) {
		snapfs_error("guest %s disk %s: no runtime directory for backup jobs", g->dir,
			     d->target);
		return -EAGAIN;
	}
	if (!(d->origin_path = strdup(o->path)))
		return -ENOMEM;
	rc = scratch_space(&free_bytes, &want);
	if (rc == -ENOENT && (rc = make_scratch_dir()) == 0)
		rc = scratch_space(&free_bytes, &want);
	if (rc < 0) {
		snapfs_error("guest %s disk %s: scratch directory %s: %s", g->dir, d->target,
			     scratch_dir, strerror(-rc));
		return rc;
	}
	if (free_bytes >= want)
		return 0;
	snapfs_error("guest %s disk %s: no backup job started: only %" PRIu64 " MiB free for "
		     "scratch files in %s, under the reserve of %" PRIu64 " MiB "
		     "(-o scratch_reserve=%s)",
		     g->dir, d->target, mib(free_bytes), scratch_dir, mib(want), reserve_text);
	return -ENOSPC;
}

/* The guest g names, by UUID, else by name; NULL when it is gone. */
static virDomainPtr lookup(virConnectPtr conn, const char *uuid, const char *name)
{
	virDomainPtr dom = virDomainLookupByUUIDString(conn, uuid);

	return dom ? dom : virDomainLookupByName(conn, name);
}

/* Is socket (a backup job's, as its XML names it) one of ours?  Of this
 * mount's when mine is set, of any snapfs mount's otherwise. */
static bool ours(const char *socket, const char *mine)
{
	size_t blen = strlen(SNAPFS_RUN_BASE);

	if (!socket || strncmp(socket, SNAPFS_RUN_BASE "/", blen + 1))
		return false;
	if (!mine)
		return true;
	socket += blen + 1;
	return !strncmp(socket, mine, strlen(mine)) && socket[strlen(mine)] == '/';
}

/* The socket of dom's backup job (caller frees), or NULL when it has none. */
static char *job_socket(virDomainPtr dom, char ***scratch, size_t *nscratch)
{
	CLEANUP_FREE char *xml = virDomainBackupGetXMLDesc(dom, 0);
	char *socket = NULL, **files = NULL;
	size_t n = 0;

	if (!xml || snapfs_domxml_backup(xml, &socket, &files, &n) < 0)
		return NULL;
	if (scratch) {
		*scratch = files;
		*nscratch = n;
	} else {
		for (size_t i = 0; i < n; i++)
			free(files[i]);
		free(files);
	}
	return socket;
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Remove a job's socket and directory, and the scratch files named, when
 * each is ours by its name. */
static void remove_files(const char *socket, char **scratch, size_t n, const char *mine)
{
	char prefix[128];
	size_t plen;

	for (size_t i = 0; i < n; i++) {
		const char *base = strrchr(scratch[i], '/');

		base = base ? base + 1 : scratch[i];
		snprintf(prefix, sizeof(prefix), "snapfs-%s-", mine ? mine : "");
		plen = strlen(prefix);
		if (!strncmp(base, prefix, mine ? plen : strlen("snapfs-")) &&
		    unlink(scratch[i]) < 0 && errno != ENOENT)
			snapfs_warn("scratch file %s: %m", scratch[i]);
	}
	if (socket && ours(socket, mine)) {
		char dir[300];
		char *slash;

		unlink(socket);
		snprintf(dir, sizeof(dir), "%s", socket);
		slash = strrchr(dir, '/');
		if (slash && slash > dir + strlen(SNAPFS_RUN_BASE)) {
			*slash = '\0';
			rmdir(dir);
		}
	}
}

/* Abort dom's backup job if, as asked now, it is still the one at socket:
 * a job someone else started since is never touched.  0, -ENOENT when it
 * is not there, -EIO. */
static int abort_if_ours(virDomainPtr dom, const char *socket)
{
	CLEANUP_FREE char *now = job_socket(dom, NULL, NULL);

	int rc;

	if (!now || strcmp(now, socket))
		return -ENOENT;
	snapfs_libvirt_job_lock();
	rc = virDomainAbortJob(dom) < 0 ? -EIO : 0;
	snapfs_libvirt_job_unlock();
	return rc;
}

/* XML-escape s into out (paths snapfs made or the admin gave). */
static int xml_text(const char *s, char *out, size_t len)
{
	size_t o = 0;

	for (; *s; s++) {
		const char *e = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;"
			      : *s == '\'' ? "&apos;" : *s == '"' ? "&quot;" : NULL;
		size_t n = e ? strlen(e) : 1;

		if (o + n >= len)
			return -ENAMETOOLONG;
		memcpy(out + o, e ? e : s, n);
		o += n;
	}
	out[o] = '\0';
	return 0;
}

static char *backup_xml(const struct snapfs_job *job, struct snapfs_snapdisk **ds, size_t n)
{
	char *text = NULL, esc[1024];
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int rc = 0;

	if (!f)
		return NULL;
	rc |= xml_text(job->socket, esc, sizeof(esc));
	fprintf(f, "<domainbackup mode='pull'>\n  <server transport='unix' socket='%s'/>\n"
		   "  <disks>\n", esc);
	for (size_t i = 0; i < n; i++) {
		rc |= xml_text(ds[i]->scratch, esc, sizeof(esc));
		/* Targets are checked to be [A-Za-z0-9_-] (domxml.c). */
		fprintf(f, "    <disk name='%s' backup='yes' type='file'>\n"
			   "      <driver type='qcow2'/>\n      <scratch file='%s'/>\n"
			   "    </disk>\n", ds[i]->target, esc);
	}
	fprintf(f, "  </disks>\n</domainbackup>\n");
	if (fclose(f) != 0 || rc) {
		free(text);
		return NULL;
	}
	return text;
}

/* The directory for job's socket, owned by the user the guest's qemu runs
 * as (it makes the socket), closed to everyone else. */
static int make_job_dir(virDomainPtr dom, const struct snapfs_guest *g, struct snapfs_job *job)
{
	CLEANUP_FREE char *live = virDomainGetXMLDesc(dom, 0);
	unsigned uid, gid;

	if (mkdir(job->dir, 0700) < 0) {
		snapfs_error("guest %s: cannot make %s: %m", g->dir, job->dir);
		return -errno;
	}
	if (live && snapfs_domxml_dac_label(live, &uid, &gid) == 0 &&
	    chown(job->dir, (uid_t)uid, (gid_t)gid) < 0) {
		snapfs_error("guest %s: cannot give %s to qemu's user %u: %m", g->dir, job->dir,
			     uid);
		rmdir(job->dir);
		return -EACCES;
	}
	return 0;
}

/* A backup job that is not ours: the open fails, and it is left alone. */
static int foreign_job(const struct snapfs_guest *g, virDomainPtr dom)
{
	char **scratch = NULL;
	size_t n = 0;
	CLEANUP_FREE char *socket = job_socket(dom, &scratch, &n);

	if (!socket && !scratch) {
		/* No job, or one whose XML does not say: Begin will tell. */
		return 0;
	}
	if (ours(socket, mark)) {
		/* A dead run's, at this mount: the sweep at start missed it. */
		snapfs_warn("guest %s: aborting a backup job a dead snapfs of this mount left "
			    "(%s)", g->dir, socket);
		abort_if_ours(dom, socket);
		remove_files(socket, scratch, n, mark);
		free_list(scratch, n);
		return 0;
	}
	snapfs_error("guest %s: it is in a backup job snapfs did not start (%s); its files "
		     "cannot be opened until that job ends, and it is left alone",
		     g->dir, socket ? socket : "not exported over a socket");
	free_list(scratch, n);
	return -EBUSY;
}

static int begin(const struct snapfs_guest *g, virDomainPtr dom, struct snapfs_job *job,
		 struct snapfs_snapdisk **ds, size_t n)
{
	CLEANUP_FREE char *xml = NULL;
	virErrorPtr err;
	int rc;

	for (size_t i = 0; i < n; i++) {
		char path[1024];

		snprintf(path, sizeof(path), "%s/snapfs-%s-%s-%s.qcow2", scratch_dir, mark,
			 job->uuid, ds[i]->target);
		/* A file of that name is a leftover of this mount's. */
		if (unlink(path) < 0 && errno != ENOENT)
			return -errno;
		free(ds[i]->scratch);
		if (!(ds[i]->scratch = strdup(path)) ||
		    !(job->scratch[job->nscratch] = strdup(path)))
			return -ENOMEM;
		job->nscratch++;
	}
	xml = backup_xml(job, ds, n);
	if (!xml) {
		snapfs_error("guest %s: paths too long for a backup job", g->dir);
		return -ENAMETOOLONG;
	}
	snapfs_libvirt_job_lock();
	rc = virDomainBackupBegin(dom, xml, NULL, 0);
	snapfs_libvirt_job_unlock();
	if (rc == 0)
		return 0;
	err = virGetLastError();
	rc = err && (err->code == VIR_ERR_OPERATION_INVALID ||
		     err->code == VIR_ERR_OPERATION_TIMEOUT)
		     ? -EBUSY
		     : -EIO;
	snapfs_error("guest %s: libvirt refused its backup job: %s", g->dir,
		     snapfs_libvirt_error());
	return rc;
}

static int libvirt_take(const struct snapfs_guest *g, struct snapfs_snapdisk **ds, size_t n)
{
	virConnectPtr conn = snapfs_libvirt_connect(uri);
	virDomainPtr dom = conn ? lookup(conn, g->key, g->name) : NULL;
	struct snapfs_job *job = NULL;
	int rc;

	if (!dom) {
		if (conn)
			snapfs_error("guest %s: not found through libvirt: %s", g->dir,
				     snapfs_libvirt_error());
		rc = conn ? -ENOENT : -EIO;
		goto out;
	}
	if (virDomainIsActive(dom) != 1) {
		snapfs_error("guest %s: not running, and its storage cannot snapshot itself: "
			     "no backup job can be started",
			     g->dir);
		rc = -EIO;
		goto out;
	}
	rc = foreign_job(g, dom);
	if (rc < 0)
		goto out;
	rc = -ENOMEM;
	if (!(job = calloc(1, sizeof(*job))) || !(job->name = strdup(g->name)) ||
	    !(job->scratch = calloc(n, sizeof(*job->scratch))))
		goto out;
	snprintf(job->guest, sizeof(job->guest), "%s", g->dir);
	if (virDomainGetUUIDString(dom, job->uuid) < 0)
		snprintf(job->uuid, sizeof(job->uuid), "%s", g->key);
	pthread_mutex_lock(&job_lock);
	unsigned seq = job_seq++;
	pthread_mutex_unlock(&job_lock);
	snprintf(job->dir, sizeof(job->dir), "%s/%.36s.%u", run_dir, job->uuid, seq);
	snprintf(job->socket, sizeof(job->socket), "%s/nbd.sock", job->dir);
	rc = make_job_dir(dom, g, job);
	if (rc < 0)
		goto out;
	rc = begin(g, dom, job, ds, n);
	if (rc < 0) {
		rmdir(job->dir);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		ds[i]->job = job;
		ds[i]->taken = true;
	}
	job->refs = (unsigned)n;
	clock_gettime(CLOCK_MONOTONIC, &job->checked);
	snapfs_info("guest %s: backup job started, exported at %s", g->dir, job->socket);
	job = NULL;
	rc = 0;
out:
	if (job) {
		free(job->name);
		free_list(job->scratch, job->nscratch);
	}
	free(job);
	if (dom)
		virDomainFree(dom);
	if (conn)
		virConnectClose(conn);
	return rc;
}

static int libvirt_open(const struct snapfs_guest *g, struct snapfs_snapdisk *d)
{
	int rc = snapfs_nbd_open(d->job->socket, d->target, NBD_CONNS, g->dir, d->target,
				 &d->nbd, &d->size);

	d->allocated = SNAPFS_ALL_DATA;
	if (rc < 0)
		return rc;
	rc = snapfs_nbd_map(d->nbd, d->size, &d->map);
	if (rc == 0) {
		d->has_map = true;
		d->allocated = snapfs_thinmap_bytes(&d->map, 0, d->size);
	} else {
		snapfs_debug(SNAPFS_DBG_SNAP, "guest %s disk %s: the export's holes are not "
			     "known (%s); all of it counts as data",
			     g->dir, d->target, strerror(-rc));
	}
	return 0;
}

static int libvirt_check(const struct snapfs_snapdisk *d, char *why, size_t len)
{
	if (!snapfs_snapdisk_dropped(d))
		return 0;
	why[0] = '\0'; /* said when it was dropped */
	return -EIO;
}

/* End job: abort it if it is still ours.  The first call only. */
static void end_job(struct snapfs_job *job)
{
	virConnectPtr conn;
	virDomainPtr dom;

	if (__atomic_exchange_n(&job->ended, true, __ATOMIC_SEQ_CST))
		return;
	conn = snapfs_libvirt_connect(uri);
	dom = conn ? lookup(conn, job->uuid, job->name) : NULL;
	if (dom && abort_if_ours(dom, job->socket) == -EIO)
		snapfs_error("guest %s: its backup job could not be aborted: %s; abort it with "
			     "virsh domjobabort %s",
			     job->guest, snapfs_libvirt_error(), job->guest);
	if (dom)
		virDomainFree(dom);
	if (conn)
		virConnectClose(conn);
}

static void libvirt_remove(struct snapfs_snapdisk *d)
{
	struct snapfs_job *job = d->job;
	bool last;

	snapfs_nbd_close(d->nbd, job && !__atomic_load_n(&job->ended, __ATOMIC_SEQ_CST) &&
					 !snapfs_snapdisk_dropped(d));
	d->nbd = NULL;
	d->job = NULL;
	if (!job)
		return;
	pthread_mutex_lock(&job_lock);
	last = --job->refs == 0;
	pthread_mutex_unlock(&job_lock);
	if (!last)
		return;
	/* The scratch files go with the job: libvirt removes those it made,
	 * and whatever is left is ours by its name. */
	end_job(job);
	remove_files(job->socket, job->scratch, job->nscratch, mark);
	free_list(job->scratch, job->nscratch);
	free(job->name);
	free(job);
}

static void libvirt_where(const struct snapfs_snapdisk *d, char *out, size_t len)
{
	snprintf(out, len, "libvirt backup job, export %s at %s%s", d->target,
		 d->job ? d->job->socket : "?", snapfs_snapdisk_dropped(d) ? " (ended)" : "");
}

static void libvirt_report(FILE *f, const struct snapfs_snapdisk *d)
{
	uint64_t free_bytes = 0, want = 0;
	struct stat st;
	uint64_t used = d->scratch && stat(d->scratch, &st) == 0 ? (uint64_t)st.st_blocks * 512
								 : 0;

	scratch_space(&free_bytes, &want);
	fprintf(f, "  disk: %s origin=%s snapshot=libvirt-backup job=%s scratch=%s "
		   "scratch_used=%" PRIu64 "MiB free=%" PRIu64 "MiB reserve=%" PRIu64 "MiB "
		   "export=%s\n",
		d->file, d->origin_path, d->job ? d->job->socket : "?",
		d->scratch ? d->scratch : "?", mib(used), mib(free_bytes), mib(want),
		snapfs_snapdisk_dropped(d) ? "ended" : "held");
}

/* Drop the disks of ds[0..n) that belong to job, each with one line. */
static void drop_job(struct snapfs_snapdisk *const *ds, size_t n, struct snapfs_job *job,
		     const char *why)
{
	end_job(job);
	for (size_t i = 0; i < n; i++)
		if (ds[i]->job == job && snapfs_snapdisk_drop(ds[i]))
			snapfs_error("guest %s disk %s: its backup job ended: %s; reads of this "
				     "snapshot set fail with EIO until it is released",
				     ds[i]->guest, ds[i]->file, why);
}

/* Is dom on its way down?  A guest being destroyed ends its jobs before
 * libvirt calls it inactive: asked a few times over a moment. */
static bool stopping(virDomainPtr dom)
{
	for (int i = 0; i < 10; i++) {
		int state = 0, reason = 0;

		if (virDomainGetState(dom, &state, &reason, 0) < 0 ||
		    (state != VIR_DOMAIN_RUNNING && state != VIR_DOMAIN_PAUSED &&
		     state != VIR_DOMAIN_BLOCKED))
			return true;
		usleep(100 * 1000);
	}
	return false;
}

/* Does job still run, as ours?  False only when libvirt says it does not. */
static bool job_alive(struct snapfs_job *job, char *why, size_t len)
{
	virConnectPtr conn = snapfs_libvirt_connect(uri);
	virDomainPtr dom = conn ? lookup(conn, job->uuid, job->name) : NULL;
	bool alive = true;

	if (!conn)
		return true; /* libvirtd away: reads tell, the export is qemu's */
	if (!dom) {
		snprintf(why, len, "the guest is no longer defined");
		alive = false;
	} else if (virDomainIsActive(dom) != 1) {
		snprintf(why, len, "the guest stopped");
		alive = false;
	} else {
		CLEANUP_FREE char *now = job_socket(dom, NULL, NULL);

		if (!now || strcmp(now, job->socket)) {
			snprintf(why, len, "%s", stopping(dom)
						     ? "the guest stopped"
						     : "the job is gone (aborted by someone "
						       "else, or the guest migrated)");
			alive = false;
		}
	}
	if (dom)
		virDomainFree(dom);
	virConnectClose(conn);
	return alive;
}

static void libvirt_watch(struct snapfs_snapdisk *const *ds, size_t n)
{
	uint64_t free_bytes, want;
	bool short_space = scratch_space(&free_bytes, &want) == 0 && free_bytes < want;

	for (size_t i = 0; i < n; i++) {
		struct snapfs_job *job = ds[i]->job;
		char why[512];
		bool seen = false;

		for (size_t j = 0; j < i && !seen; j++)
			seen = ds[j]->job == job;
		if (seen || !job || snapfs_snapdisk_dropped(ds[i]))
			continue;
		if (short_space) {
			snprintf(why, sizeof(why), "only %" PRIu64 " MiB free for scratch files in "
				 "%s, under the reserve of %" PRIu64 " MiB (-o "
				 "scratch_reserve=%s); the job was aborted so that the guest's "
				 "writes never fail",
				 mib(free_bytes), scratch_dir, mib(want), reserve_text);
			drop_job(ds + i, n - i, job, why);
			continue;
		}
		if (snapfs_elapsed(&job->checked) < ALIVE_CHECK_S)
			continue;
		clock_gettime(CLOCK_MONOTONIC, &job->checked);
		if (!job_alive(job, why, sizeof(why)))
			drop_job(ds + i, n - i, job, why);
	}
}

/* What a dead run of this mount left with no job: scratch files named for
 * its mark, its jobs' socket directories. */
static void remove_leftovers(const char *scratch, const char *mine)
{
	char prefix[128], dir[300];
	DIR *dp;
	struct dirent *e;

	snprintf(prefix, sizeof(prefix), "snapfs-%s-", mine);
	if (scratch && (dp = opendir(scratch))) {
		while ((e = readdir(dp)))
			if (!strncmp(e->d_name, prefix, strlen(prefix)))
				unlinkat(dirfd(dp), e->d_name, 0);
		closedir(dp);
	}
	snprintf(dir, sizeof(dir), "%s/%s", SNAPFS_RUN_BASE, mine);
	if ((dp = opendir(dir))) {
		while ((e = readdir(dp))) {
			char sock[600];

			if (e->d_name[0] == '.')
				continue;
			snprintf(sock, sizeof(sock), "%s/%s/nbd.sock", dir, e->d_name);
			unlink(sock);
			unlinkat(dirfd(dp), e->d_name, AT_REMOVEDIR);
		}
		closedir(dp);
	}
}

/* libvirt answers an abort before qemu has ended the job.  A sweep (at
 * start, or --cleanup) returns with the dead run's jobs gone and only then
 * removes their scratch files: up to SWEEP_WAIT_MS for each job, then a
 * warning. */
#define SWEEP_WAIT_MS 10000

static void wait_job_gone(virDomainPtr dom, const char *socket)
{
	for (int waited = 0; waited < SWEEP_WAIT_MS; waited += 50) {
		CLEANUP_FREE char *now = job_socket(dom, NULL, NULL);

		if (!now || strcmp(now, socket))
			return;
		usleep(50 * 1000);
	}
	snapfs_warn("guest %s: the backup job at %s was aborted but has not ended after %d s",
		    virDomainGetName(dom), socket, SWEEP_WAIT_MS / 1000);
}

int snapfs_libvirt_sweep(const char *uri_, const char *owner, const char *scratch)
{
	virConnectPtr conn;
	virDomainPtr *doms = NULL;
	char mine[64] = "";
	int count, removed = 0;

	if (owner)
		owner_mark(owner, mine, sizeof(mine));
	conn = snapfs_libvirt_connect(uri_);
	if (!conn)
		return -EIO;
	count = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
	for (int i = 0; i < count; i++) {
		char **files = NULL;
		size_t nfiles = 0;
		char *socket = job_socket(doms[i], &files, &nfiles);

		if (ours(socket, owner ? mine : NULL)) {
			if (abort_if_ours(doms[i], socket) == 0) {
				wait_job_gone(doms[i], socket);
				snapfs_info("aborted the backup job of guest %s that a dead snapfs "
					    "left (%s)",
					    virDomainGetName(doms[i]), socket);
				removed++;
			}
			remove_files(socket, files, nfiles, owner ? mine : NULL);
		}
		free(socket);
		free_list(files, nfiles);
		virDomainFree(doms[i]);
	}
	free(doms);
	virConnectClose(conn);
	if (owner)
		remove_leftovers(scratch, mine);
	return count < 0 ? -EIO : removed;
}

const struct snapfs_mechanism snapfs_mech_libvirt = {
	.name = "libvirt-backup",
	.init = libvirt_init,
	.plan = libvirt_plan,
	.take = libvirt_take,
	.open = libvirt_open,
	.check = libvirt_check,
	.remove = libvirt_remove,
	.where = libvirt_where,
	.report = libvirt_report,
	.watch = libvirt_watch,
};
