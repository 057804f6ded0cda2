/* Guests from libvirt: every domain, running or not, with its disks that
 * are LVM logical volumes or files on a filesystem that can clone them. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "snapfs.h"

static void quiet_errors(void *opaque, virErrorPtr err)
{
	snapfs_debug(SNAPFS_DBG_GUESTS, "libvirt: %s", err && err->message ? err->message : "?");
}

static void setup_errors(void)
{
	virSetErrorFunc(NULL, quiet_errors);
}

static const char *last_error(void)
{
	const char *m = virGetLastErrorMessage();

	return m ? m : "unknown libvirt error";
}

/* Map a pool volume to its path, e.g. /dev/VG/LV. */
static char *volume_path(virConnectPtr conn, const char *guest, const char *pool_name,
			 const char *vol_name)
{
	virStoragePoolPtr pool = virStoragePoolLookupByName(conn, pool_name);
	virStorageVolPtr vol = NULL;
	char *path = NULL;

	if (pool)
		vol = virStorageVolLookupByName(pool, vol_name);
	if (vol)
		path = virStorageVolGetPath(vol);
	if (!path)
		snapfs_warn("guest %s: volume %s of pool %s: %s", guest, vol_name, pool_name,
			    last_error());
	if (vol)
		virStorageVolFree(vol);
	if (pool)
		virStoragePoolFree(pool);
	return path;
}

static void file_missing(const struct snapfs_guest *g, const char *shown, const char *target,
			 const char *path, int err)
{
	char key[SNAPFS_NAME_MAX + 64];

	snprintf(key, sizeof(key), "missing %s %s %d", g->key, target, err);
	if (snapfs_log_first(key, path))
		snapfs_info("guest %s disk %s: %s not served: %s", shown, target, path,
			    strerror(err));
}

static enum snapfs_snapshot_mode snapshot_mode; /* set once at start */

void snapfs_source_libvirt_mode(enum snapfs_snapshot_mode mode)
{
	snapshot_mode = mode;
}

/* The key of spec from the libvirt secret it names, through the
 * read-write connection: libvirt gives no secret's value to a read-only
 * one, which lists the guests. */
static int rbd_key(virConnectPtr ro, struct snapfs_rbd_spec *spec, char *why, size_t len)
{
	virConnectPtr rw;
	char *uri;
	int rc;

	if (!spec->secret_uuid[0] && !spec->secret_usage[0])
		return 0;
	uri = virConnectGetURI(ro);
	rw = uri ? snapfs_libvirt_connect(uri) : NULL;
	free(uri);
	if (!rw) {
		snprintf(why, len, "libvirt cannot be reached read-write to read its secret");
		return -EIO;
	}
	rc = snapfs_rbd_key_from_libvirt(rw, spec, why, len);
	virConnectClose(rw);
	return rc;
}

/* A Ceph RBD image, snapshotted by the cluster: 1 when added, 0 when its
 * cluster or key cannot be had (*why), -ENOMEM. */
static int add_rbd_disk(virConnectPtr conn, struct snapfs_guest *g, const char *shown,
			const struct snapfs_xml_disk *d, char *why, size_t whylen)
{
	struct snapfs_rbd_spec spec = *d->rbd;
	char err[512], name[300], key[SNAPFS_NAME_MAX + 64];
	struct snapfs_rbd *r;
	uint64_t size;
	int rc;

	snapfs_rbd_name(&spec, name, sizeof(name));
	/* A secret that cannot be read (a driver without secrets, a private
	 * one): the keyring Ceph's configuration names for the same user. */
	snprintf(key, sizeof(key), "rbd secret %s %s", g->key, d->target);
	if (rbd_key(conn, &spec, err, sizeof(err)) < 0 && snapfs_log_first(key, err))
		snapfs_info("guest %s disk %s: %s; using the keyring of client.%s that the Ceph "
			    "configuration names", shown, d->target, err,
			    spec.user[0] ? spec.user : "admin");
	rc = snapfs_rbd_open(&spec, NULL, false, &r, err, sizeof(err));
	if (rc < 0) {
		snprintf(why, whylen, "RBD image %.250s not served: %.200s", name, err);
		explicit_bzero(spec.key, sizeof(spec.key));
		return rc == -ENOMEM ? rc : 0;
	}
	size = snapfs_rbd_size(r);
	snapfs_rbd_close(r);
	rc = snapfs_guest_add_rbd_disk(g, &spec, size, d->target, d->format, d->sector_size);
	explicit_bzero(spec.key, sizeof(spec.key));
	return rc < 0 ? rc : 1;
}

/* What one XML disk is to the storage mechanisms: 1 when added (an LV, or
 * a file that can be cloned), 0 when its storage cannot snapshot it (*why
 * says why), or -ENOMEM.  *lv_missing: its source names a block device
 * that is no LV of lvs. */
static int add_storage_disk(virConnectPtr conn, struct snapfs_guest *g, const char *shown,
			    const struct snapfs_xml_disk *d, const struct snapfs_lv_list *lvs,
			    bool quiet, bool *lv_missing, char *why, size_t whylen)
{
	CLEANUP_FREE char *path = NULL;
	const struct snapfs_lv *lv;
	struct snapfs_fsinfo fs;
	struct stat st;
	int rc;

	if (d->kind == SNAPFS_SOURCE_NETWORK && d->rbd)
		return add_rbd_disk(conn, g, shown, d, why, whylen);
	if (d->kind == SNAPFS_SOURCE_NETWORK) {
		snprintf(why, whylen, "%s not served: a network disk", d->dev);
		return 0;
	}
	if (d->kind == SNAPFS_SOURCE_POOL)
		path = volume_path(conn, shown, d->pool, d->volume);
	else
		path = strdup(d->dev);
	if (!path) {
		why[0] = '\0'; /* volume_path said why */
		return 0;
	}
	/* A file, or a volume of a dir or fs pool, which is one; a block
	 * device named so may still be an LV. */
	if (d->kind != SNAPFS_SOURCE_DEV) {
		if (stat(path, &st) < 0) {
			if (!quiet)
				file_missing(g, shown, d->target, path, errno);
			why[0] = '\0';
			return 0;
		}
		if (!S_ISBLK(st.st_mode)) {
			if (!S_ISREG(st.st_mode)) {
				snapfs_debug(SNAPFS_DBG_GUESTS, "guest %s disk %s: %s is not a "
					     "regular file", shown, d->target, path);
				why[0] = '\0';
				return 0;
			}
			/* A shut-off guest's file that cannot be cloned is read
			 * directly, under a guard; a running guest's goes
			 * through the backup API. */
			rc = snapfs_reflink_probe(path, &fs);
			if (rc < 0 && g->running) {
				snprintf(why, whylen, "%s not served: its filesystem (%s) cannot "
					 "make reflink clones (%s)", path, fs.type, strerror(-rc));
				return 0;
			}
			rc = snapfs_guest_add_file_disk(g, path, &st, d->target, d->format,
							d->sector_size, rc < 0);
			return rc < 0 ? rc : 1;
		}
	}
	lv = snapfs_lvm_resolve_path(lvs, path);
	if (!lv)
		*lv_missing = true;
	if (!lv || !lv->is_ordinary || lv->snapfs_owned) {
		snapfs_debug(SNAPFS_DBG_GUESTS, "guest %s disk %s: %s is not an LVM volume", shown,
			     d->target, path);
		why[0] = '\0';
		return 0;
	}
	rc = snapfs_guest_add_disk(g, lv, d->target, d->format, d->sector_size);
	return rc < 0 ? rc : 1;
}

/* qemu 7.2 can abort (an assertion in qcow2_get_specific_info) when
 * query-block, behind virDomainGetBlockInfo, runs while a backup job of
 * the same guest starts or ends: snapfs never does both at once. */
static pthread_mutex_t block_query_lock = PTHREAD_MUTEX_INITIALIZER;

void snapfs_libvirt_job_lock(void)
{
	pthread_mutex_lock(&block_query_lock);
}

void snapfs_libvirt_job_unlock(void)
{
	pthread_mutex_unlock(&block_query_lock);
}

/* The capacity of disk target of a running dom, as qemu sees it; 0 when
 * libvirt does not say. */
static uint64_t capacity(virDomainPtr dom, const char *target)
{
	virDomainBlockInfo info;
	int rc;

	snapfs_libvirt_job_lock();
	rc = virDomainGetBlockInfo(dom, target, &info, 0);
	snapfs_libvirt_job_unlock();
	return rc == 0 ? info.capacity : 0;
}

/* Every disk of a running guest, through the backup API. */
static int add_backup_disks(virDomainPtr dom, struct snapfs_guest *g,
			    const struct snapfs_xml_disks *disks)
{
	for (size_t i = 0; i < disks->n; i++) {
		const struct snapfs_xml_disk *d = &disks->disk[i];
		const char *source = d->dev ? d->dev : d->volume;
		struct stat st;
		bool live_raw = d->kind != SNAPFS_SOURCE_NETWORK && d->dev &&
				!strcmp(d->format, "raw") && stat(d->dev, &st) == 0 &&
				S_ISREG(st.st_mode);
		int rc = snapfs_guest_add_backup_disk(g, source ? source : "?",
						      capacity(dom, d->target), live_raw, d->target,
						      d->sector_size);

		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Only libvirt's qemu driver implements the backup API. */
static bool has_backup_api(virConnectPtr conn)
{
	const char *type = virConnectGetType(conn);

	return type && !strcmp(type, "QEMU");
}

/* The disks of g: by their storage's snapshots where every disk has one
 * (or -o snapshot=storage), else, for a running guest, every disk through
 * the backup API (never a mix: one set is one instant).  *unresolved (when
 * not NULL) counts the disks whose source is a block device that is no LV
 * of lvs. */
static int add_disks(virConnectPtr conn, virDomainPtr dom, struct snapfs_guest *g,
		     const char *xml, const struct snapfs_lv_list *lvs, size_t *unresolved)
{
	struct snapfs_xml_disks disks;
	char shown[SNAPFS_NAME_MAX + 1];
	size_t unserved = 0;
	bool backup = g->running && snapshot_mode != SNAPFS_SNAP_STORAGE && has_backup_api(conn);
	int rc = snapfs_domxml_disks(g->name, xml, &disks);

	snapfs_name_escape(g->name, shown); /* guest names are not fit for logs as they are */
	if (rc < 0) {
		snapfs_warn("guest %s: domain XML not understood; no disks shown", shown);
		return 0;
	}
	for (size_t i = 0; i < disks.n && rc >= 0; i++) {
		const struct snapfs_xml_disk *d = &disks.disk[i];
		bool lv_missing = false;
		char why[SNAPFS_NAME_MAX + 256], key[SNAPFS_NAME_MAX + 64];

		rc = add_storage_disk(conn, g, shown, d, lvs, backup, &lv_missing, why,
				      sizeof(why));
		if (lv_missing && unresolved)
			(*unresolved)++;
		if (rc != 0)
			continue;
		unserved++;
		snprintf(key, sizeof(key), "unserved %s %s", g->key, d->target);
		if (!backup && why[0] && snapfs_log_first(key, why))
			snapfs_info("guest %s disk %s: %s%s", shown, d->target, why,
				    g->running || snapshot_mode == SNAPFS_SNAP_STORAGE
					    ? ""
					    : "; it is shut off, and the backup API serves "
					      "running guests only");
	}
	if (rc >= 0 && backup && (unserved || snapshot_mode == SNAPFS_SNAP_LIBVIRT) &&
	    disks.n) {
		for (size_t i = 0; i < g->ndisks; i++) {
			free(g->disk[i].path);
			snapfs_rbd_spec_free(g->disk[i].rbd);
		}
		free(g->disk);
		g->disk = NULL;
		g->ndisks = 0;
		snapfs_debug(SNAPFS_DBG_GUESTS, "guest %s: every disk through libvirt's backup "
			     "API (%zu of %zu without storage snapshots)",
			     shown, unserved, disks.n);
		rc = add_backup_disks(dom, g, &disks);
	}
	snapfs_domxml_disks_free(&disks);
	return rc < 0 ? rc : 0;
}

static int add_domain(virConnectPtr conn, virDomainPtr dom, struct snapfs_guest *g,
		      const struct snapfs_lv_list *lvs, size_t *unresolved)
{
	char uuid[VIR_UUID_STRING_BUFLEN];
	CLEANUP_FREE char *live = NULL;
	const char *name = virDomainGetName(dom);

	if (!name || virDomainGetUUIDString(dom, uuid) < 0)
		return -EIO;
	g->name = strdup(name);
	g->key = strdup(uuid);
	if (!g->name || !g->key)
		return -ENOMEM;
	g->running = virDomainIsActive(dom) == 1;
	/* The disks in use now (hot-plugged ones too) come from the live XML;
	 * domain.xml is the inactive definition, for restores. */
	g->xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE);
	live = g->running ? virDomainGetXMLDesc(dom, 0) : NULL;
	if (!g->xml) {
		char shown[SNAPFS_NAME_MAX + 1];

		snapfs_name_escape(g->name, shown);
		snapfs_warn("guest %s: cannot read its XML: %s", shown, last_error());
		return 0;
	}
	return add_disks(conn, dom, g, live ? live : g->xml, lvs, unresolved);
}

static void free_guest(struct snapfs_guest *g)
{
	free(g->name);
	free(g->key);
	free(g->xml);
	free(g->disk);
	memset(g, 0, sizeof(*g));
}

/* Connections live as long as snapfs does: opening one costs a handshake
 * with libvirtd, and the test driver parses its whole node XML each time.
 * One read-only connection serves the listing and the resolution of an
 * open, a read-write one the freezes; each is made at first use and made
 * anew when it died (libvirtd restarted) or another URI is asked for. */
struct shared_conn {
	pthread_mutex_t lock;
	bool read_only;
	virConnectPtr conn; /* under lock */
	char *uri;          /* under lock; NULL for libvirt's default */
};
static struct shared_conn ro_conn = { PTHREAD_MUTEX_INITIALIZER, true, NULL, NULL };
static struct shared_conn rw_conn = { PTHREAD_MUTEX_INITIALIZER, false, NULL, NULL };

static bool same_uri(const char *a, const char *b)
{
	return a && b ? !strcmp(a, b) : a == b;
}

/* Under s->lock. */
static void forget_conn(struct shared_conn *s)
{
	if (s->conn)
		virConnectClose(s->conn);
	free(s->uri);
	s->conn = NULL;
	s->uri = NULL;
}

/* A reference to the shared connection for uri (virConnectClose when
 * done), or NULL with libvirt's error set.  A kept connection is asked
 * for libvirt's version first: the client learns that the daemon went away
 * only when it next talks to it. */
static virConnectPtr get_conn(struct shared_conn *s, const char *uri)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	unsigned long version;
	virConnectPtr conn;

	pthread_once(&once, setup_errors);
	pthread_mutex_lock(&s->lock);
	if (s->conn && (!same_uri(s->uri, uri) || virConnectGetLibVersion(s->conn, &version) < 0 ||
			virConnectIsAlive(s->conn) != 1)) {
		snapfs_debug(SNAPFS_DBG_GUESTS, "libvirt connection to %s closed; connecting again",
			     s->uri ? s->uri : "(default)");
		forget_conn(s);
	}
	if (!s->conn) {
		s->conn = s->read_only ? virConnectOpenReadOnly(uri) : virConnectOpen(uri);
		if (s->conn && uri && !(s->uri = strdup(uri)))
			forget_conn(s);
	}
	conn = s->conn;
	if (conn)
		virConnectRef(conn);
	pthread_mutex_unlock(&s->lock);
	return conn;
}

void snapfs_source_libvirt_disconnect(void)
{
	struct shared_conn *all[] = { &ro_conn, &rw_conn };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		pthread_mutex_lock(&all[i]->lock);
		forget_conn(all[i]);
		pthread_mutex_unlock(&all[i]->lock);
	}
}

virConnectPtr snapfs_libvirt_connect(const char *uri)
{
	virConnectPtr conn = get_conn(&rw_conn, uri);

	if (!conn)
		snapfs_error("cannot connect to libvirt at %s: %s", uri ? uri : "(default)",
			     last_error());
	return conn;
}

const char *snapfs_libvirt_error(void)
{
	return last_error();
}

static virConnectPtr connect_read_only(const char *uri)
{
	virConnectPtr conn = get_conn(&ro_conn, uri);

	if (!conn)
		snapfs_error("cannot connect to libvirt at %s: %s", uri ? uri : "(default)",
			     last_error());
	return conn;
}

int snapfs_source_libvirt_guest(const char *uri, const char *uuid, const char *name,
				const struct snapfs_lv_list *lvs, struct snapfs_guest *out,
				size_t *unresolved)
{
	virConnectPtr conn = connect_read_only(uri);
	virDomainPtr dom;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!conn)
		return -EIO;
	/* By UUID; by name where a UUID is not stable (the test driver makes
	 * one per connection for a domain defined without). */
	dom = virDomainLookupByUUIDString(conn, uuid);
	if (!dom)
		dom = virDomainLookupByName(conn, name);
	if (!dom) {
		virConnectClose(conn);
		return -ENOENT;
	}
	*unresolved = 0;
	rc = add_domain(conn, dom, out, lvs, unresolved);
	if (rc < 0)
		free_guest(out);
	virDomainFree(dom);
	virConnectClose(conn);
	/* Undefined while we looked: gone. */
	return rc == -EIO ? -ENOENT : rc;
}

/* The directories of the storage pools of files, for backing-file.c: their
 * real paths, NULL-terminated, or NULL. */
static char **pool_dirs(virConnectPtr conn)
{
	virStoragePoolPtr *pools = NULL;
	int count = virConnectListAllStoragePools(conn, &pools, 0);
	char **dirs = calloc(count > 0 ? (size_t)count + 1 : 1, sizeof(*dirs));
	size_t n = 0;

	for (int i = 0; i < count; i++) {
		CLEANUP_FREE char *xml = virStoragePoolGetXMLDesc(pools[i], 0);
		CLEANUP_FREE char *dir = NULL;
		char real[PATH_MAX];

		if (dirs && xml && snapfs_domxml_pool_dir(xml, &dir) == 0 && realpath(dir, real))
			dirs[n] = strdup(real);
		if (dirs && dirs[n])
			n++;
		virStoragePoolFree(pools[i]);
	}
	free(pools);
	if (count < 0)
		snapfs_debug(SNAPFS_DBG_GUESTS, "no storage pools listed: %s", last_error());
	return dirs;
}

int snapfs_source_libvirt_list(const char *uri, const struct snapfs_lv_list *lvs,
			       struct snapfs_guest **out, size_t *n)
{
	virDomainPtr *doms = NULL;
	struct snapfs_guest *g = NULL;
	virConnectPtr conn = connect_read_only(uri);
	int count, rc = 0;

	if (!conn)
		return -EIO;
	count = virConnectListAllDomains(conn, &doms, 0);
	if (count < 0) {
		snapfs_error("listing guests at %s: %s", uri ? uri : "(default)", last_error());
		virConnectClose(conn);
		return -EIO;
	}
	snapfs_backing_pools_set(pool_dirs(conn));
	g = calloc((size_t)count + 1, sizeof(*g));
	if (!g)
		rc = -ENOMEM;
	size_t kept = 0;

	for (int i = 0; i < count; i++) {
		if (rc == 0) {
			rc = add_domain(conn, doms[i], &g[kept], lvs, NULL);
			/* A domain undefined while we looked is simply gone. */
			if (rc == -EIO) {
				free_guest(&g[kept]);
				rc = 0;
			} else {
				kept++;
			}
		}
		virDomainFree(doms[i]);
	}
	free(doms);
	virConnectClose(conn);
	if (rc < 0) {
		snapfs_guests_free(g, g ? kept + 1 : 0);
		return rc;
	}
	*out = g;
	*n = kept;
	return 0;
}

/* ---- guest filesystem freeze, around the creation of a snapshot set ---- */

struct snapfs_freeze {
	virConnectPtr conn;
	virDomainPtr dom;
	bool attempted;
};

int snapfs_freeze_prepare(const char *uri, const char *guest, const char *uuid,
			  unsigned timeout, struct snapfs_freeze **out)
{
	struct snapfs_freeze *f;
	int state = 0, reason = 0;

	*out = NULL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->conn = get_conn(&rw_conn, uri);
	if (f->conn)
		f->dom = virDomainLookupByUUIDString(f->conn, uuid);
	/* Drivers that make up UUIDs per connection (the test driver) still
	 * know the guest by its name. */
	if (f->conn && !f->dom)
		f->dom = virDomainLookupByName(f->conn, guest);
	if (!f->dom || virDomainGetState(f->dom, &state, &reason, 0) < 0) {
		char shown[SNAPFS_NAME_MAX + 1];

		snapfs_name_escape(guest, shown);
		snapfs_warn("guest %s: cannot reach it through libvirt to freeze it: %s", shown,
			    last_error());
		snapfs_freeze_close(f);
		return -EIO;
	}
	if (state != VIR_DOMAIN_RUNNING) {
		/* Paused or shut off: nothing writes, nothing to freeze. */
		snapfs_freeze_close(f);
		return 1;
	}
	/* Bound the agent's answer; older libvirt or drivers without it keep
	 * their own timeout. */
	if (virDomainAgentSetResponseTimeout(f->dom, (int)timeout, 0) < 0)
		snapfs_debug(SNAPFS_DBG_SNAP, "agent timeout not set: %s", last_error());
	*out = f;
	return 0;
}

/* A freeze refused before anything reached the guest: no agent configured,
 * or none connected.  Any other failure (a time-out above all) may have
 * frozen it all the same, so it is thawed. */
static bool nothing_sent(void)
{
	virErrorPtr err = virGetLastError();

	return err && (err->code == VIR_ERR_ARGUMENT_UNSUPPORTED ||
		       err->code == VIR_ERR_NO_SUPPORT ||
		       err->code == VIR_ERR_OPERATION_UNSUPPORTED ||
		       (err->code == VIR_ERR_AGENT_UNRESPONSIVE && err->message &&
			strstr(err->message, "not connected")));
}

int snapfs_freeze(struct snapfs_freeze *f, char **why)
{
	if (virDomainFSFreeze(f->dom, NULL, 0, 0) >= 0) {
		f->attempted = true;
		return 0;
	}
	f->attempted = !nothing_sent();
	*why = strdup(last_error());
	return -EIO;
}

int snapfs_thaw(struct snapfs_freeze *f, char **why)
{
	if (!f || !f->attempted)
		return 1;
	if (virDomainFSThaw(f->dom, NULL, 0, 0) >= 0)
		return 0;
	*why = strdup(last_error());
	return -EIO;
}

void snapfs_freeze_close(struct snapfs_freeze *f)
{
	if (!f)
		return;
	if (f->dom)
		virDomainFree(f->dom);
	if (f->conn)
		virConnectClose(f->conn);
	free(f);
}
