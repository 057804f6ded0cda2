/* The catalog: which guests exist, their disks and partitions, as one
 * discovery saw them.  Listings are served from it; it is refreshed when
 * older than the cache time so that ls -lR and rsync don't hammer libvirt
 * or LVM, and a guest defined later shows up without a remount.
 *
 * A catalog's age counts from its publication.  Once it is older than
 * the cache time, the next request starts one discovery in a background
 * thread and is served the catalog it has meanwhile, as is everyone else
 * until the new one is published: a lookup waits on a discovery only at
 * the very first one (or with -o cache=0, which asks for a discovery at
 * every request), so ls -lR of a large host never waits on libvirt.
 *
 * Locking: catalog_lock protects `current`, every catalog's refs and
 * published, and the background flags.  refresh_lock serializes
 * discoveries; it is held across the libvirt and lvs calls, but never
 * together with catalog_lock.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "snapfs.h"

static pthread_mutex_t catalog_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t refresh_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t background_done = PTHREAD_COND_INITIALIZER;
static struct snapfs_catalog *current; /* under catalog_lock */
static bool background;                /* a background discovery runs; catalog_lock */
static bool stopping;                  /* no new background discovery; catalog_lock */
static struct snapfs_source source;    /* read-only after init */
static double cache_seconds;           /* read-only after init */

int snapfs_source_parse(const char *text, struct snapfs_source *src)
{
	memset(src, 0, sizeof(*src));
	if (!text || strncmp(text, "lvm:", 4) != 0) {
		src->type = SNAPFS_SRC_LIBVIRT;
		if (text && !(src->uri = strdup(text)))
			return -ENOMEM;
		return 0;
	}
	src->type = SNAPFS_SRC_LVM;
	CLEANUP_FREE char *list = strdup(text + 4);
	size_t n = 0;
	char *save = NULL;

	if (!list)
		return -ENOMEM;
	src->vgs = calloc(strlen(list) / 2 + 2, sizeof(char *));
	if (!src->vgs)
		return -ENOMEM;
	for (char *vg = strtok_r(list, ",", &save); vg; vg = strtok_r(NULL, ",", &save)) {
		/* LVM's own rule for VG names. */
		if (strspn(vg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			       "0123456789+_.-") != strlen(vg) ||
		    vg[0] == '-' || strlen(vg) > 127 || !strcmp(vg, ".") || !strcmp(vg, "..")) {
			snapfs_error("source %s: \"%s\" is not a valid VG name", text, vg);
			snapfs_source_free(src);
			return -EINVAL;
		}
		if (!(src->vgs[n++] = strdup(vg))) {
			snapfs_source_free(src);
			return -ENOMEM;
		}
	}
	if (n == 0) {
		snapfs_error("source %s names no VG", text);
		snapfs_source_free(src);
		return -EINVAL;
	}
	return 0;
}

void snapfs_source_free(struct snapfs_source *src)
{
	free(src->uri);
	for (size_t i = 0; src->vgs && src->vgs[i]; i++)
		free(src->vgs[i]);
	free(src->vgs);
	memset(src, 0, sizeof(*src));
}

/* What a thin LV has data for, from device-mapper's status: one ioctl. */
static void thin_allocated(struct snapfs_disk *d)
{
	struct snapfs_cow cow;
	char path[300];

	if (d->kind != SNAPFS_ORIGIN_LV || !d->lv.thin || d->lv.major < 0 ||
	    snapfs_lvm_dm_path(d->lv.vg, d->lv.lv, path, sizeof(path)) < 0 ||
	    snapfs_dm_status(path + strlen("/dev/mapper/"), &cow) < 0 || !cow.valid)
		return;
	if (cow.mapped * 512 < d->size)
		d->allocated = cow.mapped * 512;
}

static int fd_read(void *fd, void *buf, size_t len, uint64_t off)
{
	ssize_t r = pread(*(int *)fd, buf, len, (off_t)off);

	return r == (ssize_t)len ? 0 : -EIO;
}

/* The same for an RBD image, read through librbd. */
static void read_live_rbd_table(struct snapfs_guest *g, struct snapfs_disk *d)
{
	struct snapfs_rbd *r;
	char err[512];
	uint64_t size;

	if (snapfs_rbd_open(d->rbd, NULL, false, &r, err, sizeof(err)) < 0) {
		snapfs_debug(SNAPFS_DBG_GUESTS, "guest %s disk %s: open %s: %s", g->dir,
			     d->target, d->path, err);
		return;
	}
	size = snapfs_rbd_size(r);
	snapfs_partitions_read_from(snapfs_rbd_read_cb, r, size, d->sector_size, g->dir,
				    d->target, &d->parts);
	d->whole_pv = !d->parts.n && snapfs_glvs_has_label(snapfs_rbd_read_cb, r, size);
	snapfs_rbd_close(r);
}

/* The partition table of the live raw origin d, for listings only. */
static void read_live_table(struct snapfs_guest *g, struct snapfs_disk *d)
{
	char path[300];
	const char *origin = path;
	uint64_t size;
	int fd;

	if (d->kind == SNAPFS_ORIGIN_RBD) {
		read_live_rbd_table(g, d);
		return;
	}
	if (d->kind == SNAPFS_ORIGIN_BACKUP && !d->live_raw)
		return; /* shown once a set is held: qemu reads it */
	if (d->kind != SNAPFS_ORIGIN_LV)
		origin = d->path;
	else if (d->lv.major < 0 ||
		 snapfs_lvm_dm_path(d->lv.vg, d->lv.lv, path, sizeof(path)) < 0)
		return;
	fd = snapfs_device_open(origin, &size);
	if (fd < 0) {
		snapfs_debug(SNAPFS_DBG_GUESTS, "guest %s disk %s: open %s: %s", g->dir,
			     d->target, origin, strerror(-fd));
		return;
	}
	snapfs_partitions_read(fd, size, d->sector_size, g->dir, d->target, &d->parts);
	snapfs_partitions_measure(fd, d->kind != SNAPFS_ORIGIN_LV, &d->parts);
	d->whole_pv = !d->parts.n && snapfs_glvs_has_label(fd_read, &fd, size);
	close(fd);
}

/* The guest's own LVs on the live origins, for listings only: their names,
 * sizes and contents; reads come from a set. */
static void read_live_lvs(struct snapfs_guest *g, const struct snapfs_catalog *old)
{
	const struct snapfs_guest *was = old ? snapfs_catalog_guest(old, g->dir) : NULL;
	CLEANUP_FREE struct snapfs_live **live = calloc(g->ndisks + 1, sizeof(*live));
	CLEANUP_FREE struct snapfs_gdisk *gd = calloc(g->ndisks + 1, sizeof(*gd));
	size_t n = 0;

	if (!live || !gd)
		return;
	for (size_t i = 0; i < g->ndisks; i++) {
		const struct snapfs_disk *d = &g->disk[i];

		if (!snapfs_glvs_candidate(d) || snapfs_live_open(g->dir, d, &live[n]) < 0)
			continue;
		gd[n] = (struct snapfs_gdisk){ .read = snapfs_live_read, .ctx = live[n],
					       .size = snapfs_live_size(live[n]),
					       .target = d->target, .parts = &d->parts };
		n++;
	}
	/* What is refused is said when a set reads it. */
	snapfs_log_quiet(true);
	if (n && snapfs_glvs_scan(g->dir, gd, n, true, was ? was->glvs : NULL, &g->glvs) == 0)
		snapfs_glvs_forget_disks(g->glvs);
	snapfs_log_quiet(false);
	for (size_t i = 0; i < n; i++)
		snapfs_live_close(live[i]);
}

/* Partition tables of the live origins, decoded for qcow2 disks, for
 * listings only. */
static void read_live_partitions(struct snapfs_guest *g, const struct snapfs_lv_list *lvs)
{
	for (size_t i = 0; i < g->ndisks; i++) {
		struct snapfs_disk *d = &g->disk[i];
		unsigned viewno;

		thin_allocated(d);
		if (!snapfs_disk_is_container(d))
			read_live_table(g, d);
		else if (snapfs_disk_decode_live(g->dir, d, lvs, true, true) == 0 &&
			 snapfs_guest_disk(g, d->view, &viewno) != d) {
			snapfs_warn("guest %s: disk file %s clashes; left out", g->dir, d->view);
			d->view[0] = '\0';
			snapfs_partitions_free(&d->parts);
		}
		/* A partition file whose name a disk already has is left out. */
		for (size_t p = 0; p < d->parts.n;) {
			char name[SNAPFS_NAME_MAX + 1];
			unsigned partno;
			const struct snapfs_disk *other;

			snapfs_name_image(d->target, d->parts.part[p].number, "raw", name,
					  sizeof(name));
			other = snapfs_guest_disk(g, name, &partno);
			if (other != d || partno != d->parts.part[p].number) {
				snapfs_warn("guest %s: partition file %s clashes; left out",
					    g->dir, name);
				memmove(&d->parts.part[p], &d->parts.part[p + 1],
					(d->parts.n - p - 1) * sizeof(d->parts.part[0]));
				d->parts.n--;
				continue;
			}
			p++;
		}
	}
}

/* The LVs of the source.  A host with no LVM at all can still have guests
 * on files: for a libvirt source, no lvm program is an empty list. */
static int list_lvs(struct snapfs_lv_list *lvs)
{
	int rc = snapfs_lvm_list(source.type == SNAPFS_SRC_LVM ? (const char *const *)source.vgs
							       : NULL,
				 lvs);

	if (rc == -ENOENT && source.type == SNAPFS_SRC_LIBVIRT) {
		snapfs_debug(SNAPFS_DBG_LVM, "no lvm program: only file-backed disks are served");
		lvs->lv = NULL;
		lvs->n = 0;
		return 0;
	}
	return rc;
}

static struct snapfs_catalog *take_current(bool only_fresh);

/* A hash of the names a guest's directory lists. */
static uint64_t guest_entries(const struct snapfs_guest *g)
{
	char name[SNAPFS_NAME_MAX + 2];
	uint64_t h = g->xml ? snapfs_name_hash("domain.xml", 10) : 0;

	for (size_t i = 0; i < g->ndisks; i++) {
		const struct snapfs_disk *d = &g->disk[i];

		h = h * 31 + snapfs_name_hash(d->file, strlen(d->file));
		h = h * 31 + snapfs_name_hash(d->view, strlen(d->view));
		for (size_t p = 0; p < d->parts.n; p++) {
			if (snapfs_name_image(d->target, d->parts.part[p].number, "raw", name,
					      sizeof(name)) == 0)
				h = h * 31 + snapfs_name_hash(name, strlen(name));
		}
	}
	/* The lvm directory and those below take the guest directory's time. */
	for (size_t v = 0; g->glvs && v < g->glvs->glvm->nvgs; v++) {
		const struct snapfs_glvm_vg *vg = &g->glvs->glvm->vg[v];

		if (!vg->served)
			continue;
		h = h * 31 + snapfs_name_hash(vg->name, strlen(vg->name));
		for (size_t l = 0; l < vg->nlvs; l++)
			if (vg->lv[l].served)
				h = h * 31 + snapfs_name_hash(vg->lv[l].name, strlen(vg->lv[l].name));
	}
	return h;
}

/* Times that stay while what they stand for does: the root's and a guest
 * directory's while their names are the same, domain.xml's while its text
 * is (GNU tar says "file changed as we read it" for less).  From the
 * catalog before c, or c's own stamp for what is new or changed. */
static void carry_stamps(struct snapfs_catalog *c, const struct snapfs_catalog *old)
{
	c->entries = 0;
	for (size_t i = 0; i < c->n; i++) {
		struct snapfs_guest *g = &c->guest[i];
		const struct snapfs_guest *was = old ? snapfs_catalog_guest(old, g->dir) : NULL;

		c->entries = c->entries * 31 + snapfs_name_hash(g->dir, strlen(g->dir));
		g->entries = guest_entries(g);
		g->dir_stamp = g->xml_stamp = c->stamp;
		if (!was || strcmp(was->key, g->key))
			continue;
		if (was->entries == g->entries)
			g->dir_stamp = was->dir_stamp;
		if (was->xml && g->xml && !strcmp(was->xml, g->xml))
			g->xml_stamp = was->xml_stamp;
	}
	c->root_stamp = old && old->entries == c->entries ? old->root_stamp : c->stamp;
}

static int discover(struct snapfs_catalog **out)
{
	struct snapfs_lv_list lvs = { 0 };
	struct snapfs_catalog *c;
	int rc;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->refs = 1;
	clock_gettime(CLOCK_MONOTONIC, &c->begun);
	c->stamp = snapfs_stamp_next();
	rc = list_lvs(&lvs);
	if (rc < 0)
		goto fail;
	if (source.type == SNAPFS_SRC_LVM)
		rc = snapfs_source_lvm_list(source.vgs, &lvs, &c->guest, &c->n);
	else
		rc = snapfs_source_libvirt_list(source.uri, &lvs, &c->guest, &c->n);
	if (rc < 0) {
		snapfs_lvm_list_free(&lvs);
		goto fail;
	}
	snapfs_guests_name(c->guest, c->n);
	struct snapfs_catalog *old = take_current(false);

	for (size_t i = 0; i < c->n; i++) {
		read_live_partitions(&c->guest[i], &lvs);
		read_live_lvs(&c->guest[i], old);
	}
	snapfs_lvm_list_free(&lvs);

	carry_stamps(c, old);
	snapfs_catalog_put(old);
	*out = c;
	return 0;
fail:
	free(c);
	return rc;
}

int snapfs_catalog_init(const struct snapfs_source *src, double seconds)
{
	source = *src;
	cache_seconds = seconds;
	/* A start after snapfs_catalog_shutdown (the unit tests make one per
	 * test) may start background discoveries again. */
	pthread_mutex_lock(&catalog_lock);
	stopping = false;
	pthread_mutex_unlock(&catalog_lock);
	return 0;
}

static struct timespec monotonic_now(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now;
}

/* Called with catalog_lock held. */
static bool fresh(const struct snapfs_catalog *c)
{
	struct timespec now = monotonic_now();
	double age;

	if (!c)
		return false;
	age = (double)(now.tv_sec - c->published.tv_sec) +
	      (double)(now.tv_nsec - c->published.tv_nsec) / 1e9;
	return age >= 0 && age < cache_seconds;
}

static struct snapfs_catalog *take_current(bool only_fresh)
{
	struct snapfs_catalog *c = NULL;

	pthread_mutex_lock(&catalog_lock);
	if (current && (!only_fresh || fresh(current))) {
		c = current;
		c->refs++;
	}
	pthread_mutex_unlock(&catalog_lock);
	return c;
}

/* Discover and publish a new catalog; called with refresh_lock held.
 * Returns it with a reference for the caller. */
static int refresh_locked(struct snapfs_catalog **out)
{
	struct snapfs_catalog *c, *old;
	int rc = discover(&c);

	if (rc < 0)
		return rc;
	pthread_mutex_lock(&catalog_lock);
	c->published = monotonic_now();
	old = current;
	current = c;
	c->refs++;
	pthread_mutex_unlock(&catalog_lock);
	if (old)
		snapfs_catalog_put(old);
	*out = c;
	return 0;
}

/* The background discovery: publishes a new catalog, or keeps the old one
 * another cache time when the discovery fails, so that a failing libvirt
 * is not asked again at every request. */
static void *refresh_thread(void *arg)
{
	struct snapfs_catalog *c = NULL;
	int rc;

	pthread_mutex_lock(&refresh_lock);
	/* A synchronous discovery may have published a new catalog while
	 * this thread waited: one more would only hold the VG locks again. */
	c = take_current(true);
	rc = c ? 0 : refresh_locked(&c);
	pthread_mutex_unlock(&refresh_lock);
	snapfs_catalog_put(c);
	if (rc < 0)
		snapfs_warn("guest discovery failed (%s); serving the previous list",
			    strerror(-rc));
	pthread_mutex_lock(&catalog_lock);
	if (rc < 0 && current)
		current->published = monotonic_now();
	background = false;
	pthread_cond_broadcast(&background_done);
	pthread_mutex_unlock(&catalog_lock);
	return NULL;
}

static void start_background(void)
{
	pthread_attr_t attr;
	pthread_t t;
	sigset_t all, old;
	int rc;

	/* Signals stay with the FUSE loop's threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, refresh_thread, NULL);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0)
		return;
	snapfs_warn("no thread for guest discovery (%s); serving the previous list",
		    strerror(rc));
	pthread_mutex_lock(&catalog_lock);
	background = false;
	pthread_cond_broadcast(&background_done);
	pthread_mutex_unlock(&catalog_lock);
}

/* The first discovery, and every one with -o cache=0: in the caller. */
static int get_sync(struct snapfs_catalog **out)
{
	int rc;

	/* A discovery is under way (it may wait on libvirt or on a VG lock that
	 * another guest's lvcreate holds): serve what we saw last meanwhile. */
	if (pthread_mutex_trylock(&refresh_lock) != 0) {
		if ((*out = take_current(false)))
			return 0;
		pthread_mutex_lock(&refresh_lock);
	}
	/* Someone else may have refreshed while we waited. */
	if ((*out = take_current(true))) {
		pthread_mutex_unlock(&refresh_lock);
		return 0;
	}
	rc = refresh_locked(out);
	pthread_mutex_unlock(&refresh_lock);
	if (rc < 0 && (*out = take_current(false))) {
		/* Keep serving what we saw last rather than failing a listing. */
		snapfs_warn("guest discovery failed (%s); serving the previous list",
			    strerror(-rc));
		return 0;
	}
	return rc;
}

int snapfs_catalog_get(struct snapfs_catalog **out)
{
	bool start = false;

	*out = NULL;
	if (cache_seconds > 0) {
		pthread_mutex_lock(&catalog_lock);
		if (current) {
			*out = current;
			current->refs++;
			if (!fresh(current) && !background && !stopping)
				start = background = true;
		}
		pthread_mutex_unlock(&catalog_lock);
	}
	if (start)
		start_background();
	if (*out)
		return 0;
	return get_sync(out);
}

/* One guest of the LVM source again: its LV, if still a guest disk. */
static int resolve_lvm(const struct snapfs_guest *seen, const struct snapfs_lv_list *lvs,
		       struct snapfs_guest *out)
{
	struct snapfs_guest *all = NULL;
	size_t n = 0;
	int rc = snapfs_source_lvm_list(source.vgs, lvs, &all, &n);

	if (rc < 0)
		return rc;
	rc = -ENOENT;
	for (size_t i = 0; i < n && rc < 0; i++) {
		if (!strcmp(all[i].key, seen->key)) {
			*out = all[i];
			memset(&all[i], 0, sizeof(all[i]));
			rc = 0;
		}
	}
	snapfs_guests_free(all, n);
	return rc;
}

/* Resolve seen against lvs into *g: 0, or -errno; unless last, 1 when a
 * disk's source is no LV of lvs (*g is then emptied: ask LVM). */
static int resolve_with(const struct snapfs_guest *seen, const struct snapfs_lv_list *lvs,
			struct snapfs_guest **g, bool last)
{
	size_t unresolved = 0;
	int rc;

	if (source.type == SNAPFS_SRC_LVM) {
		rc = resolve_lvm(seen, lvs, *g);
		unresolved = rc == -ENOENT;
	} else {
		rc = snapfs_source_libvirt_guest(source.uri, seen->key, seen->name, lvs, *g,
						 &unresolved);
	}
	/* The chains below qcow2 disks, as their images name them now. */
	for (size_t i = 0; rc == 0 && i < (*g)->ndisks; i++) {
		struct snapfs_disk *d = &(*g)->disk[i];

		if (snapfs_disk_is_container(d) &&
		    snapfs_disk_decode_live(seen->dir, d, lvs, last, false) == -ENOENT)
			unresolved++;
	}
	if (last || !unresolved)
		return rc;
	snapfs_guests_free(*g, 1);
	*g = calloc(1, sizeof(**g));
	return *g ? 1 : -ENOMEM;
}

/* The LVs of seen's disks whose devices still carry their names: what lvs
 * said of them then still holds.  *all: every LV disk of seen is there. */
static int still_there(const struct snapfs_guest *seen, struct snapfs_lv_list *out,
		       bool *all)
{
	size_t max = 1;

	for (size_t i = 0; i < seen->ndisks; i++)
		max += 1 + seen->disk[i].nlayers;
	out->n = 0;
	out->lv = calloc(max, sizeof(*out->lv));
	if (!out->lv)
		return -ENOMEM;
	*all = true;
	for (size_t i = 0; i < seen->ndisks; i++) {
		const struct snapfs_disk *d = &seen->disk[i];

		if (d->kind != SNAPFS_ORIGIN_LV)
			continue;
		for (size_t k = 0; k <= d->nlayers; k++) {
			const struct snapfs_lv *lv = k ? &d->layer[k - 1].lv : &d->lv;

			if (snapfs_lvm_still_there(lv))
				out->lv[out->n++] = *lv;
			else
				*all = false;
		}
	}
	return 0;
}

/* The disks of seen as the domain XML (or the VG) has them now.  Their
 * LVs are taken from seen's listing when device-mapper shows the same
 * devices under the same names (a guest on files only needs none); any
 * other source costs an lvs. */
static int resolve(const struct snapfs_guest *seen, struct snapfs_guest **g)
{
	struct snapfs_lv_list lvs = { 0 };
	bool all;
	int rc = still_there(seen, &lvs, &all);

	if (rc == 0 && all && (lvs.n || source.type == SNAPFS_SRC_LIBVIRT))
		rc = resolve_with(seen, &lvs, g, false);
	else if (rc == 0)
		rc = 1;
	free(lvs.lv);
	if (rc == 0)
		snapfs_debug(SNAPFS_DBG_GUESTS, "guest %s: disks resolved again without lvs",
			     seen->dir);
	if (rc <= 0)
		return rc;
	rc = list_lvs(&lvs);
	if (rc == 0)
		rc = resolve_with(seen, &lvs, g, true);
	snapfs_lvm_list_free(&lvs);
	return rc;
}

int snapfs_catalog_resolve(const struct snapfs_guest *seen, struct snapfs_catalog **out)
{
	struct snapfs_catalog *c = calloc(1, sizeof(*c));
	int rc;

	if (!c || !(c->guest = calloc(1, sizeof(*c->guest)))) {
		free(c);
		return -ENOMEM;
	}
	c->refs = 1;
	c->n = 1;
	clock_gettime(CLOCK_MONOTONIC, &c->begun);
	c->published = c->begun;
	c->stamp = snapfs_stamp_next();
	rc = resolve(seen, &c->guest);
	if (rc < 0) {
		if (rc == -ENOENT)
			snapfs_warn("guest %s: gone since it was listed", seen->dir);
		else
			snapfs_error("guest %s: cannot resolve its disks (%s): no snapshot is "
				     "taken from a list that may be out of date",
				     seen->dir, strerror(-rc));
		snapfs_catalog_put(c);
		return rc;
	}
	/* Named as it was listed: the name of a clash depends on the others. */
	snprintf(c->guest->dir, sizeof(c->guest->dir), "%s", seen->dir);
	*out = c;
	return 0;
}

void snapfs_catalog_put(struct snapfs_catalog *c)
{
	bool last;

	if (!c)
		return;
	pthread_mutex_lock(&catalog_lock);
	last = --c->refs == 0;
	pthread_mutex_unlock(&catalog_lock);
	if (last) {
		snapfs_guests_free(c->guest, c->n);
		free(c);
	}
}

void snapfs_catalog_shutdown(void)
{
	struct snapfs_catalog *c;

	pthread_mutex_lock(&catalog_lock);
	stopping = true;
	while (background)
		pthread_cond_wait(&background_done, &catalog_lock);
	c = current;
	current = NULL;
	pthread_mutex_unlock(&catalog_lock);
	snapfs_catalog_put(c);
}

const struct snapfs_guest *snapfs_catalog_guest(const struct snapfs_catalog *c,
						const char *dir)
{
	size_t lo = 0, hi = c->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int r = strcmp(dir, c->guest[mid].dir);

		if (r == 0) {
			/* Names are distinct after snapfs_guests_name. */
			return &c->guest[mid];
		}
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}
