/* Ceph RBD images through librados and librbd: connecting to a cluster as
 * a domain XML's disk says qemu would, opening an image or one of its
 * snapshots, reading it, its allocation map, and its snapshots.
 *
 * Clusters: one handle per (conf, monitors, user, key), connected on first
 * use and kept to the end; librados handles are thread-safe.  Each has its
 * own lock, held while it connects (bounded by client_mount_timeout), so a
 * lost cluster never holds up another cluster's callers; one that could
 * not be reached fails at once for SNAPFS_RBD_RETRY seconds.  Every
 * operation has a timeout (rados_osd_op_timeout, rados_mon_op_timeout):
 * nothing here waits forever on a lost cluster.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "snapfs.h"

struct cluster {
	char conf[4096], mon_host[1024], user[64], key[128];
	pthread_mutex_t lock;         /* held while connecting */
	rados_t h;                    /* connected, or NULL */
	struct timespec failed_at;    /* CLOCK_MONOTONIC of the last failure */
	bool failed;
	char why[256];                /* of the last failure */
	/* Its space, looked at by a thread of its own once a second while
	 * asked for, so that no caller waits on a lost cluster for it. */
	pthread_mutex_t space_lock;   /* never held across a call */
	bool space_thread, space_known, nearfull;
	uint64_t free_bytes, total;
	int space_err;
	struct timespec space_wanted;
	/* A read that timed out: reads fail at once for SNAPFS_RBD_RETRY
	 * seconds, rather than each wait out the timeout (atomic). */
	int64_t lost_at;              /* CLOCK_MONOTONIC seconds, 0: never */
	bool dead_ended;              /* a dead run's client blocklisted here */
	struct cluster *next;
};

struct snapfs_rbd {
	struct cluster *c;
	rados_ioctx_t io;
	rbd_image_t img;
	uint64_t size;
};

static pthread_mutex_t clusters_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cluster *clusters;

void snapfs_rbd_name(const struct snapfs_rbd_spec *spec, char *out, size_t len)
{
	snprintf(out, len, "%s%s%s/%s", spec->pool, spec->ns[0] ? "/" : "", spec->ns,
		 spec->image);
}

static struct cluster *find_cluster(const struct snapfs_rbd_spec *s)
{
	struct cluster *c;

	pthread_mutex_lock(&clusters_lock);
	for (c = clusters; c; c = c->next)
		if (!strcmp(c->conf, s->conf) && !strcmp(c->mon_host, s->mon_host) &&
		    !strcmp(c->user, s->user) && !strcmp(c->key, s->key))
			break;
	if (!c && (c = calloc(1, sizeof(*c)))) {
		snprintf(c->conf, sizeof(c->conf), "%s", s->conf);
		snprintf(c->mon_host, sizeof(c->mon_host), "%s", s->mon_host);
		snprintf(c->user, sizeof(c->user), "%s", s->user);
		snprintf(c->key, sizeof(c->key), "%s", s->key);
		pthread_mutex_init(&c->lock, NULL);
		pthread_mutex_init(&c->space_lock, NULL);
		c->next = clusters;
		clusters = c;
	}
	pthread_mutex_unlock(&clusters_lock);
	return c;
}

static int set(rados_t h, const char *opt, const char *val, char *why, size_t len)
{
	int rc = rados_conf_set(h, opt, val);

	if (rc < 0)
		snprintf(why, len, "cannot set %s: %s", opt, strerror(-rc));
	return rc;
}

/* Connect c as qemu would: its conf (or Ceph's search), the monitors the
 * XML names, the user, the key or the conf's keyring; with timeouts. */
static int connect_cluster(struct cluster *c, char *why, size_t len)
{
	char timeout[16], name[80];
	rados_t h;
	int rc;

	snprintf(timeout, sizeof(timeout), "%d", SNAPFS_RBD_TIMEOUT);
	snprintf(name, sizeof(name), "client.%s", c->user[0] ? c->user : "admin");
	rc = rados_create2(&h, "ceph", name, 0);
	if (rc < 0) {
		snprintf(why, len, "rados_create2: %s", strerror(-rc));
		return rc;
	}
	/* Without a conf of its own named, Ceph's own search; none at all is
	 * fine when the XML names the monitors. */
	rc = rados_conf_read_file(h, c->conf[0] ? c->conf : NULL);
	if (rc < 0 && (c->conf[0] || !c->mon_host[0])) {
		snprintf(why, len, "cannot read the Ceph configuration %s: %s",
			 c->conf[0] ? c->conf : "(Ceph's default search)", strerror(-rc));
		goto fail;
	}
	if ((c->mon_host[0] && (rc = set(h, "mon_host", c->mon_host, why, len)) < 0) ||
	    (c->key[0] && (rc = set(h, "key", c->key, why, len)) < 0) ||
	    (rc = set(h, "client_mount_timeout", timeout, why, len)) < 0 ||
	    (rc = set(h, "rados_mon_op_timeout", timeout, why, len)) < 0 ||
	    (rc = set(h, "rados_osd_op_timeout", timeout, why, len)) < 0 ||
	    /* Snapshots are read once, sequentially: the page cache keeps
	     * what is read again. */
	    (rc = set(h, "rbd_cache", "false", why, len)) < 0 ||
	    (rc = set(h, "log_to_stderr", "false", why, len)) < 0 ||
	    (rc = set(h, "err_to_stderr", "false", why, len)) < 0)
		goto fail;
	rc = rados_connect(h);
	if (rc < 0) {
		snprintf(why, len, "cannot connect to the cluster%s%s as %s: %s",
			 c->mon_host[0] ? " at " : "", c->mon_host, name, strerror(-rc));
		goto fail;
	}
	c->h = h;
	snapfs_rbd_dead_record(h);
	return 0;
fail:
	rados_shutdown(h);
	return rc;
}

/* c, connected; or -errno with why. */
static int cluster_get(struct cluster *c, char *why, size_t len)
{
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	if (c->h)
		goto out;
	if (c->failed && snapfs_elapsed(&c->failed_at) < SNAPFS_RBD_RETRY) {
		snprintf(why, len, "%s", c->why);
		rc = -EHOSTUNREACH;
		goto out;
	}
	rc = connect_cluster(c, why, len);
	c->failed = rc < 0;
	if (rc < 0) {
		snprintf(c->why, sizeof(c->why), "%s", why);
		clock_gettime(CLOCK_MONOTONIC, &c->failed_at);
	}
out:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int snapfs_rbd_open(const struct snapfs_rbd_spec *spec, const char *snap, bool for_snapshots,
		    struct snapfs_rbd **out, char *err, size_t errlen)
{
	struct snapfs_rbd *r = calloc(1, sizeof(*r));
	int rc;

	*out = NULL;
	if (!r || !(r->c = find_cluster(spec))) {
		free(r);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = cluster_get(r->c, err, errlen);
	if (rc < 0)
		goto fail;
	rc = rados_ioctx_create(r->c->h, spec->pool, &r->io);
	if (rc < 0) {
		snprintf(err, errlen, "pool %s: %s", spec->pool, strerror(-rc));
		goto fail;
	}
	rados_ioctx_set_namespace(r->io, spec->ns[0] ? spec->ns : NULL);
	/* Snapshots are made and removed through an image opened for it: a
	 * writer elsewhere holding its exclusive lock is asked by librbd to
	 * make them, and never loses the lock. */
	rc = for_snapshots && !snap ? rbd_open(r->io, spec->image, &r->img, NULL)
				    : rbd_open_read_only(r->io, spec->image, &r->img, snap);
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", snap ? "cannot open its snapshot" : "cannot open it",
			 strerror(-rc));
		goto fail_io;
	}
	rc = rbd_get_size(r->img, &r->size);
	if (rc < 0) {
		snprintf(err, errlen, "cannot read its size: %s", strerror(-rc));
		rbd_close(r->img);
		goto fail_io;
	}
	*out = r;
	return 0;
fail_io:
	rados_ioctx_destroy(r->io);
fail:
	free(r);
	return rc;
}

static int64_t now_seconds(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec;
}

uint64_t snapfs_rbd_size(const struct snapfs_rbd *r)
{
	return r->size;
}

int snapfs_rbd_read(struct snapfs_rbd *r, void *buf, size_t len, uint64_t off)
{
	int64_t lost = __atomic_load_n(&r->c->lost_at, __ATOMIC_RELAXED);
	char *p = buf;

	if (off > r->size || len > r->size - off)
		return -EIO;
	if (lost && now_seconds() - lost < SNAPFS_RBD_RETRY)
		return -ETIMEDOUT;
	while (len) {
		ssize_t n = rbd_read2(r->img, off, len, p, LIBRADOS_OP_FLAG_FADVISE_NOCACHE);

		if (n == -ETIMEDOUT)
			__atomic_store_n(&r->c->lost_at, now_seconds(), __ATOMIC_RELAXED);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int snapfs_rbd_end_dead(struct snapfs_rbd *r, const char *path)
{
	bool first;

	pthread_mutex_lock(&r->c->lock);
	first = !r->c->dead_ended;
	r->c->dead_ended = true;
	pthread_mutex_unlock(&r->c->lock);
	return first ? snapfs_rbd_dead_blocklist(r->c->h, path) : 0;
}

int snapfs_rbd_snap_gone(struct snapfs_rbd *r, const char *name)
{
	int64_t lost = __atomic_load_n(&r->c->lost_at, __ATOMIC_RELAXED);
	bool exists = false;
	int rc;

	/* Its answer may wait on the cluster (a header refreshed): not while
	 * the cluster is known lost. */
	if (lost && now_seconds() - lost < SNAPFS_RBD_RETRY)
		return -ETIMEDOUT;
	rc = rbd_snap_exists(r->img, name, &exists);

	return rc < 0 ? rc : !exists;
}

int snapfs_rbd_read_cb(void *r, void *buf, size_t len, uint64_t off)
{
	return snapfs_rbd_read(r, buf, len, off);
}

struct map_walk {
	struct snapfs_thinmap *map;
	size_t alloc;
	int err;
};

static int extent_cb(uint64_t off, size_t len, int exists, void *opaque)
{
	struct map_walk *w = opaque;

	if (!exists || !len)
		return 0;
	w->err = snapfs_thinmap_add(w->map, &w->alloc, off, off + len);
	return w->err;
}

int snapfs_rbd_map(struct snapfs_rbd *r, struct snapfs_thinmap *out)
{
	struct map_walk w = { .map = out };
	int rc;

	memset(out, 0, sizeof(*out));
	/* From the image's creation, its parent's data included. */
	rc = rbd_diff_iterate2(r->img, NULL, 0, r->size, 1, 0, extent_cb, &w);
	if (rc == 0)
		rc = w.err; /* out of order or overlapping: not trusted */
	if (rc == 0 && out->n && out->ext[out->n - 1].end > r->size)
		out->ext[out->n - 1].end = r->size;
	if (rc < 0)
		snapfs_thinmap_free(out);
	return rc;
}

int snapfs_rbd_snap_create(struct snapfs_rbd *r, const char *name)
{
	/* snapfs freezes the guest itself, through its agent. */
	return rbd_snap_create2(r->img, name, RBD_SNAP_CREATE_SKIP_QUIESCE, NULL, NULL);
}

int snapfs_rbd_snap_remove(struct snapfs_rbd *r, const char *name)
{
	int rc = rbd_snap_remove(r->img, name);

	return rc == -ENOENT ? 0 : rc;
}

int snapfs_rbd_snap_remove_prefixed(struct snapfs_rbd *r, const char *prefix, int *failed)
{
	rbd_snap_info_t *snaps = NULL;
	int max = 16, n, removed = 0;

	*failed = 0;
	for (;;) {
		rbd_snap_info_t *grown = reallocarray(snaps, (size_t)max, sizeof(*snaps));

		if (!grown) {
			free(snaps);
			return -ENOMEM;
		}
		snaps = grown;
		n = rbd_snap_list(r->img, snaps, &max);
		if (n != -ERANGE)
			break;
	}
	if (n < 0) {
		free(snaps);
		return n;
	}
	for (int i = 0; i < n; i++) {
		if (strncmp(snaps[i].name, prefix, strlen(prefix)))
			continue;
		if (snapfs_rbd_snap_remove(r, snaps[i].name) == 0)
			removed++;
		else
			(*failed)++;
	}
	rbd_snap_list_end(snaps);
	free(snaps);
	return removed;
}

static int read_space(struct cluster *c, uint64_t *free_bytes, uint64_t *total, bool *nearfull)
{
	static const char *const full_checks[] = {
		"\"OSD_NEARFULL\"", "\"OSD_BACKFILLFULL\"", "\"OSD_FULL\"",
		"\"POOL_NEARFULL\"", "\"POOL_BACKFILLFULL\"", "\"POOL_FULL\"", NULL,
	};
	const char *cmd[] = { "{\"prefix\": \"health\", \"format\": \"json\"}", NULL };
	struct rados_cluster_stat_t st;
	char *outbuf = NULL, *outs = NULL;
	size_t outlen = 0, outslen = 0;
	int rc = rados_cluster_stat(c->h, &st);

	if (rc < 0)
		return rc;
	*free_bytes = st.kb_avail * 1024;
	*total = st.kb * 1024;
	rc = rados_mon_command(c->h, cmd, 1, "", 0, &outbuf, &outlen, &outs, &outslen);
	*nearfull = false;
	if (rc == 0 && outbuf) {
		char *text = strndup(outbuf, outlen);

		for (size_t i = 0; text && full_checks[i]; i++)
			if (strstr(text, full_checks[i]))
				*nearfull = true;
		free(text);
	}
	rados_buffer_free(outbuf);
	rados_buffer_free(outs);
	return rc;
}

static void *space_main(void *arg)
{
	struct cluster *c = arg;

	for (;;) {
		uint64_t free_bytes = 0, total = 0;
		bool nearfull = false, wanted;
		int rc;

		pthread_mutex_lock(&c->space_lock);
		wanted = snapfs_elapsed(&c->space_wanted) < 5;
		if (!wanted)
			c->space_thread = false;
		pthread_mutex_unlock(&c->space_lock);
		if (!wanted)
			return NULL;
		rc = read_space(c, &free_bytes, &total, &nearfull);
		pthread_mutex_lock(&c->space_lock);
		c->space_err = rc;
		if (rc == 0) {
			c->free_bytes = free_bytes;
			c->total = total;
			c->nearfull = nearfull;
			c->space_known = true;
		}
		pthread_mutex_unlock(&c->space_lock);
		sleep(1);
	}
}

int snapfs_rbd_space(struct snapfs_rbd *r, uint64_t *free_bytes, uint64_t *total,
		     bool *nearfull)
{
	struct cluster *c = r->c;
	bool start = false;
	int rc;

	pthread_mutex_lock(&c->space_lock);
	clock_gettime(CLOCK_MONOTONIC, &c->space_wanted);
	if (!c->space_thread)
		start = c->space_thread = true;
	pthread_mutex_unlock(&c->space_lock);
	if (start) {
		pthread_attr_t attr;
		pthread_t t;
		sigset_t all, old;

		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, space_main, c) != 0) {
			pthread_mutex_lock(&c->space_lock);
			c->space_thread = false;
			pthread_mutex_unlock(&c->space_lock);
		}
		pthread_attr_destroy(&attr);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	pthread_mutex_lock(&c->space_lock);
	if (!c->space_known) {
		rc = c->space_err ? c->space_err : -EAGAIN;
	} else {
		*free_bytes = c->free_bytes;
		*total = c->total;
		*nearfull = c->nearfull;
		rc = 0;
	}
	pthread_mutex_unlock(&c->space_lock);
	return rc;
}

int snapfs_rbd_space_now(struct snapfs_rbd *r, uint64_t *free_bytes, uint64_t *total,
			 bool *nearfull)
{
	return read_space(r->c, free_bytes, total, nearfull);
}

void snapfs_rbd_close(struct snapfs_rbd *r)
{
	if (!r)
		return;
	rbd_close(r->img);
	rados_ioctx_destroy(r->io);
	free(r);
}

void snapfs_rbd_shutdown(void)
{
	pthread_mutex_lock(&clusters_lock);
	while (clusters) {
		struct cluster *c = clusters;

		clusters = c->next;
		/* Its space thread ends at its next look, within the timeouts. */
		pthread_mutex_lock(&c->space_lock);
		memset(&c->space_wanted, 0, sizeof(c->space_wanted));
		while (c->space_thread) {
			pthread_mutex_unlock(&c->space_lock);
			usleep(100000);
			pthread_mutex_lock(&c->space_lock);
		}
		pthread_mutex_unlock(&c->space_lock);
		if (c->h)
			rados_shutdown(c->h);
		pthread_mutex_destroy(&c->lock);
		explicit_bzero(c->key, sizeof(c->key));
		free(c);
	}
	pthread_mutex_unlock(&clusters_lock);
}
