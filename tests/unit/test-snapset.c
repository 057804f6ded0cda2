/* Unit tests for src/snapset.c: the snapshot-set state machine, with the
 * LVM boundary faked at link time.  The Makefile links this program with
 *   -Wl,--wrap=snapfs_lvm_snapshot_create -Wl,--wrap=snapfs_lvm_snapshot_remove
 *   -Wl,--wrap=snapfs_device_open
 * so snapset.c's calls land in the __wrap_ functions below: they record
 * every snapshot made and removed, fail or block on request, and hand out
 * memfds in place of the snapshots' block devices.
 *
 * A fake never calls cmocka (it runs on snapset's threads): it writes what
 * it finds wrong into fake.anomaly, which the tests check. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapfs.h"

#define UNUSED __attribute__((unused))
#define OWNER "snapfs_owner_0123456789abcdef"
#define COW_SIZE "20%ORIGIN"
#define MIB (1024 * 1024ULL)
/* How long a test waits for something that should happen at once. */
#define PROMPT_MS 5000

int __wrap_snapfs_lvm_snapshot_create(const struct snapfs_lv *origin, const char *snap,
				      const char *cow_size, const char *owner,
				      char **why);
int __wrap_snapfs_lvm_snapshot_remove(const char *vg, const char *lv, const char *owner);
int __wrap_snapfs_device_open(const char *path, uint64_t *size);

/* ---- the fake LVM ---------------------------------------------------------- */

struct snap_rec {
	char vg[128], lv[128], origin[128];
	bool thin;	  /* the origin was a thin LV */
	unsigned removed; /* successful removals */
	unsigned remove_calls;
	int fd; /* the last fd handed out for it, or -1 */
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* broadcast on every call and every change */

	struct snap_rec *snap; /* snapshots made */
	size_t nsnap, cap;
	unsigned create_calls, remove_calls, removes_ok, opens;
	char anomaly[512];

	/* Failures on request. */
	unsigned fail_create_call; /* the Nth create fails (1-based), 0: none */
	int fail_create_err;
	char fail_open_origin[128];
	int fail_open_err;
	char fail_remove_origin[128];
	int fail_remove_err;
	int fail_remove_times; /* -1: always */

	/* Blocking on request. */
	char block_create_origin[128];
	bool create_blocked, create_release, create_timed_out;
	char block_open_origin[128];
	bool open_blocked, open_release, open_exit;

	/* The "devices". */
	uint64_t disk_size;
	char mbr_origin[128]; /* this origin's snapshots get an MBR table */
} fake = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
};

static void anomaly(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void anomaly(const char *fmt, ...)
{
	va_list ap;

	if (fake.anomaly[0])
		return; /* keep the first */
	va_start(ap, fmt);
	vsnprintf(fake.anomaly, sizeof(fake.anomaly), fmt, ap);
	va_end(ap);
}

static void deadline_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct snap_rec *find_rec(const char *vg, const char *lv)
{
	for (size_t i = 0; i < fake.nsnap; i++)
		if (!strcmp(fake.snap[i].vg, vg) && !strcmp(fake.snap[i].lv, lv))
			return &fake.snap[i];
	return NULL;
}

/* An LV name lvcreate takes: [A-Za-z0-9+_.-], 1-127 bytes, no leading '-'. */
static bool valid_lv_name(const char *s)
{
	static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "abcdefghijklmnopqrstuvwxyz"
				    "0123456789+_.-";
	size_t len = strlen(s);

	return len >= 1 && len <= 127 && s[0] != '-' && strcmp(s, ".") &&
	       strcmp(s, "..") && strspn(s, chars) == len;
}

int __wrap_snapfs_lvm_snapshot_create(const struct snapfs_lv *origin, const char *snap,
				      const char *cow_size, const char *owner, char **why)
{
	unsigned call;
	int rc = 0;

	*why = NULL;
	pthread_mutex_lock(&fake.lock);
	call = ++fake.create_calls;
	if (strcmp(owner, OWNER))
		anomaly("lvcreate with owner tag \"%s\"", owner);
	if (strcmp(cow_size, COW_SIZE))
		anomaly("lvcreate with cow_size \"%s\"", cow_size);
	if (!valid_lv_name(snap))
		anomaly("lvcreate of a bad LV name \"%s\"", snap);
	if (find_rec(origin->vg, snap))
		anomaly("lvcreate of %s/%s twice", origin->vg, snap);
	if (fake.block_create_origin[0] &&
	    !strcmp(origin->lv, fake.block_create_origin)) {
		struct timespec until;

		deadline_in(&until, 10 * 1000);
		fake.create_blocked = true;
		pthread_cond_broadcast(&fake.cond);
		while (!fake.create_release)
			if (pthread_cond_timedwait(&fake.cond, &fake.lock, &until) ==
			    ETIMEDOUT)
				break;
		if (!fake.create_release)
			fake.create_timed_out = true;
		fake.create_blocked = false;
	}
	if (call == fake.fail_create_call) {
		rc = fake.fail_create_err;
		*why = strdup(
			"  Volume group \"vg0\" has insufficient free space (0 extents): "
			"2560 required.");
	} else {
		if (fake.nsnap == fake.cap) {
			fake.cap = fake.cap ? fake.cap * 2 : 64;
			fake.snap = realloc(fake.snap, fake.cap * sizeof(*fake.snap));
			if (!fake.snap)
				abort();
		}
		struct snap_rec *r = &fake.snap[fake.nsnap++];

		memset(r, 0, sizeof(*r));
		snprintf(r->vg, sizeof(r->vg), "%s", origin->vg);
		snprintf(r->lv, sizeof(r->lv), "%s", snap);
		snprintf(r->origin, sizeof(r->origin), "%s", origin->lv);
		r->thin = origin->thin;
		r->fd = -1;
	}
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	return rc;
}

int __wrap_snapfs_lvm_snapshot_remove(const char *vg, const char *lv, const char *owner)
{
	struct snap_rec *r;
	int rc = 0;

	pthread_mutex_lock(&fake.lock);
	fake.remove_calls++;
	if (strcmp(owner, OWNER))
		anomaly("lvremove with owner tag \"%s\"", owner);
	r = find_rec(vg, lv);
	if (!r) {
		anomaly("lvremove of %s/%s, which snapfs did not make", vg, lv);
		rc = -EIO;
		goto out;
	}
	r->remove_calls++;
	if (r->removed)
		anomaly("lvremove of %s/%s after it was removed", vg, lv);
	if (fake.fail_remove_times && !strcmp(r->origin, fake.fail_remove_origin)) {
		if (fake.fail_remove_times > 0)
			fake.fail_remove_times--;
		rc = fake.fail_remove_err;
		goto out;
	}
	r->removed++;
	fake.removes_ok++;
out:
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	return rc;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* One Linux partition: 512-byte sectors 2048-6143, bytes 1 MiB + 2 MiB. */
static int write_mbr(int fd)
{
	uint8_t s[512] = { 0 };
	uint8_t *e = s + 446;

	e[4] = 0x83;
	put_le32(e + 8, 2048);
	put_le32(e + 12, 4096);
	s[510] = 0x55;
	s[511] = 0xaa;
	return pwrite(fd, s, sizeof(s), 0) == sizeof(s) ? 0 : -EIO;
}

int __wrap_snapfs_device_open(const char *path, uint64_t *size)
{
	struct snap_rec *r = NULL;
	char want[300];
	int fd;

	pthread_mutex_lock(&fake.lock);
	fake.opens++;
	for (size_t i = 0; i < fake.nsnap && !r; i++)
		if (snapfs_lvm_dm_path(fake.snap[i].vg, fake.snap[i].lv, want,
				       sizeof(want)) == 0 &&
		    !strcmp(want, path))
			r = &fake.snap[i];
	if (!r) {
		anomaly("open of %s, which is no snapshot's device-mapper path", path);
		fd = -ENOENT;
		goto out;
	}
	if (r->removed)
		anomaly("open of %s after its removal", path);
	if (fake.block_open_origin[0] && !strcmp(r->origin, fake.block_open_origin)) {
		struct timespec until;

		/* path and size point into the set: not touched after this. */
		deadline_in(&until, 10 * 1000);
		fake.open_blocked = true;
		pthread_cond_broadcast(&fake.cond);
		while (!fake.open_release && !fake.open_exit)
			if (pthread_cond_timedwait(&fake.cond, &fake.lock, &until) ==
			    ETIMEDOUT)
				break;
		fake.open_blocked = false;
		if (fake.open_exit) {
			/* The set was freed under us: end this thread here rather
			 * than return into snapset.c and its freed memory. */
			pthread_cond_broadcast(&fake.cond);
			pthread_mutex_unlock(&fake.lock);
			pthread_exit(NULL);
		}
		r = find_rec(r->vg, r->lv); /* the array may have moved */
	}
	if (fake.fail_open_origin[0] && !strcmp(r->origin, fake.fail_open_origin)) {
		fd = fake.fail_open_err;
		goto out;
	}
	fd = memfd_create("snapfs-test-disk", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)fake.disk_size) < 0 ||
	    (!strcmp(r->origin, fake.mbr_origin) && write_mbr(fd) < 0)) {
		anomaly("memfd: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -EIO;
		goto out;
	}
	r->fd = fd;
	*size = fake.disk_size;
out:
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	return fd;
}

static void fake_reset(void)
{
	pthread_mutex_lock(&fake.lock);
	free(fake.snap);
	fake.snap = NULL;
	fake.nsnap = fake.cap = 0;
	fake.create_calls = fake.remove_calls = fake.removes_ok = fake.opens = 0;
	fake.anomaly[0] = '\0';
	fake.fail_create_call = 0;
	fake.fail_create_err = 0;
	fake.fail_open_origin[0] = '\0';
	fake.fail_open_err = 0;
	fake.fail_remove_origin[0] = '\0';
	fake.fail_remove_err = 0;
	fake.fail_remove_times = 0;
	fake.block_create_origin[0] = '\0';
	fake.create_blocked = fake.create_release = fake.create_timed_out = false;
	fake.block_open_origin[0] = '\0';
	fake.open_blocked = fake.open_release = fake.open_exit = false;
	fake.disk_size = 1 * MIB;
	fake.mbr_origin[0] = '\0';
	pthread_mutex_unlock(&fake.lock);
}

/* Copies, so that cmocka's assertions run without fake.lock held. */
struct tally {
	unsigned create_calls, remove_calls, removes_ok, opens;
	size_t nsnap;
	char anomaly[512];
};

static struct tally tally(void)
{
	struct tally t;

	pthread_mutex_lock(&fake.lock);
	t.create_calls = fake.create_calls;
	t.remove_calls = fake.remove_calls;
	t.removes_ok = fake.removes_ok;
	t.opens = fake.opens;
	t.nsnap = fake.nsnap;
	memcpy(t.anomaly, fake.anomaly, sizeof(t.anomaly));
	pthread_mutex_unlock(&fake.lock);
	return t;
}

static struct snap_rec rec(size_t i)
{
	struct snap_rec r;

	pthread_mutex_lock(&fake.lock);
	if (i >= fake.nsnap) {
		pthread_mutex_unlock(&fake.lock);
		fail_msg("no snapshot #%zu", i);
	}
	r = fake.snap[i];
	pthread_mutex_unlock(&fake.lock);
	return r;
}

/* Every snapshot made was removed exactly once (but skip_origin's), and no
 * fake saw anything wrong. */
static void assert_clean_except(const char *skip_origin)
{
	char msg[512] = "";

	pthread_mutex_lock(&fake.lock);
	if (fake.anomaly[0])
		snprintf(msg, sizeof(msg), "%s", fake.anomaly);
	for (size_t i = 0; i < fake.nsnap && !msg[0]; i++) {
		const struct snap_rec *r = &fake.snap[i];

		if (skip_origin && !strcmp(r->origin, skip_origin))
			continue;
		if (r->removed != 1)
			snprintf(msg, sizeof(msg), "snapshot %s/%s removed %u times",
				 r->vg, r->lv, r->removed);
	}
	pthread_mutex_unlock(&fake.lock);
	if (msg[0])
		fail_msg("%s", msg);
}

static void assert_clean(void)
{
	assert_clean_except(NULL);
}

struct wait_arg {
	const char *origin; /* for the per-snapshot conditions */
	unsigned n;
};

typedef bool (*fake_pred)(const struct wait_arg *);

/* Wait up to ms for pred, checked under fake.lock on every fake event. */
static bool wait_fake(fake_pred pred, const struct wait_arg *arg, int ms)
{
	struct timespec until;
	bool ok;

	deadline_in(&until, ms);
	pthread_mutex_lock(&fake.lock);
	while (!(ok = pred(arg)))
		if (pthread_cond_timedwait(&fake.cond, &fake.lock, &until) == ETIMEDOUT)
			break;
	ok = pred(arg);
	pthread_mutex_unlock(&fake.lock);
	return ok;
}

static bool removes_ok_reach(const struct wait_arg *a)
{
	return fake.removes_ok >= a->n;
}

static bool origin_remove_calls_reach(const struct wait_arg *a)
{
	for (size_t i = 0; i < fake.nsnap; i++)
		if (!strcmp(fake.snap[i].origin, a->origin) &&
		    fake.snap[i].remove_calls >= a->n)
			return true;
	return false;
}

static bool origin_removed(const struct wait_arg *a)
{
	for (size_t i = 0; i < fake.nsnap; i++)
		if (!strcmp(fake.snap[i].origin, a->origin) && fake.snap[i].removed)
			return true;
	return false;
}

static bool create_is_blocked(const struct wait_arg *a)
{
	return fake.create_blocked;
}

static bool open_is_blocked(const struct wait_arg *a)
{
	return fake.open_blocked;
}

/* ---- guests ---------------------------------------------------------------- */

static struct snapfs_lv_list lvs;

static int group_setup(void **state UNUSED)
{
	char text[2048];
	char longname[121];

	memset(longname, 'x', 120);
	longname[120] = '\0';
	snprintf(text, sizeof(text),
		 "  vg0|web-root|10737418240|-wi-ao----|linear|||253|1|\n"
		 "  vg0|web-data|21474836480|-wi-ao----|linear|||253|2|\n"
		 "  vg0|db|1073741824|-wi-ao----|linear|||253|3|\n"
		 "  vg0|a|1073741824|-wi-ao----|linear|||253|4|\n"
		 "  vg0|b|1073741824|-wi-ao----|linear|||253|5|\n"
		 "  vg0|c|1073741824|-wi-ao----|linear|||253|6|\n"
		 "  vg-x|%s|1073741824|-wi-ao----|linear|||253|7|\n"
		 "  vg1|pool|107374182400|twi-aotz--|thin-pool|||253|10|\n"
		 "  vg1|thinvol|53687091200|Vwi-aotz--|thin||pool|253|11|\n",
		 longname);
	return snapfs_lvm_parse_lvs(text, &lvs) == 0 && lvs.n == 9 ? 0 : -1;
}

static int group_teardown(void **state UNUSED)
{
	snapfs_lvm_list_free(&lvs);
	pthread_mutex_lock(&fake.lock);
	free(fake.snap);
	fake.snap = NULL;
	fake.nsnap = fake.cap = 0;
	pthread_mutex_unlock(&fake.lock);
	return 0;
}

static struct snapfs_guest *guest_new(const char *name)
{
	struct snapfs_guest *g = calloc(1, sizeof(*g));

	assert_non_null(g);
	g->name = strdup(name);
	g->key = strdup(name);
	assert_non_null(g->name);
	assert_non_null(g->key);
	snapfs_guests_name(g, 1);
	return g;
}

static void guest_add(struct snapfs_guest *g, const char *vg, const char *lv,
		      const char *target, const char *format)
{
	const struct snapfs_lv *origin = snapfs_lvm_find(&lvs, vg, lv);
	size_t before = g->ndisks;

	assert_non_null(origin);
	assert_int_equal(snapfs_guest_add_disk(g, origin, target, format, 512), 0);
	assert_int_equal(g->ndisks, before + 1);
}

static void guest_free(struct snapfs_guest *g)
{
	snapfs_guests_free(g, 1);
}

/* "web": vda on vg0/web-root, vdb on vg0/web-data. */
static struct snapfs_guest *guest_web(void)
{
	struct snapfs_guest *g = guest_new("web");

	guest_add(g, "vg0", "web-root", "vda", "raw");
	guest_add(g, "vg0", "web-data", "vdb", "raw");
	return g;
}

static struct snapfs_guest *guest_one(const char *name, const char *lv)
{
	struct snapfs_guest *g = guest_new(name);

	guest_add(g, "vg0", lv, "vda", "raw");
	return g;
}

static bool started; /* snapset initialised and not shut down */

static void start(unsigned linger)
{
	static const struct snapfs_snapset_config cfg0 = { .cow_size = COW_SIZE, .owner = OWNER };
	struct snapfs_snapset_config cfg = cfg0;

	fake_reset();
	cfg.linger = linger;
	snapfs_snapset_init(&cfg);
	started = true;
}

static void stop(void)
{
	snapfs_snapset_shutdown();
	started = false;
	assert_int_equal(snapfs_snapset_count(), 0);
}

/* A test that failed half-way leaves no reaper running into the next. */
static int test_teardown(void **state UNUSED)
{
	if (started)
		snapfs_snapset_shutdown();
	started = false;
	return 0;
}

static bool fd_open(int fd)
{
	return fd >= 0 && fcntl(fd, F_GETFD) != -1;
}

static int cmp_ts(struct timespec a, struct timespec b)
{
	if (a.tv_sec != b.tv_sec)
		return a.tv_sec < b.tv_sec ? -1 : 1;
	return (a.tv_nsec > b.tv_nsec) - (a.tv_nsec < b.tv_nsec);
}

/* ---- one acquire, one release -------------------------------------------- */

static void assert_snapdisk(const struct snapfs_snapdisk *d, const struct snap_rec *r,
			    const char *file)
{
	char path[300];

	assert_non_null(d);
	assert_string_equal(d->file, file);
	assert_string_equal(d->vg, r->vg);
	assert_string_equal(d->origin, r->origin);
	assert_string_equal(d->snap, r->lv);
	assert_int_equal(snapfs_lvm_dm_path(r->vg, r->lv, path, sizeof(path)), 0);
	assert_string_equal(d->path, path);
	assert_int_equal(d->fd, r->fd);
	assert_true(fd_open(d->fd));
	assert_true(d->size == 1 * MIB);
}

static void test_first_acquire_creates_one_per_disk(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	struct snap_rec r0, r1;
	struct tally t;

	start(0);
	assert_int_equal(snapfs_snapset_acquire(g, &s), 0);
	assert_non_null(s);
	t = tally();
	assert_string_equal(t.anomaly, "");
	assert_int_equal(t.create_calls, 2);
	assert_int_equal(t.nsnap, 2);
	assert_int_equal(t.opens, 2);
	assert_int_equal(t.remove_calls, 0);
	r0 = rec(0);
	r1 = rec(1);
	assert_string_equal(r0.vg, "vg0");
	assert_string_equal(r0.origin, "web-root");
	assert_string_equal(r1.origin, "web-data");
	/* Named after the origin, distinct. */
	assert_true(!strncmp(r0.lv, "web-root_", 9));
	assert_true(!strncmp(r1.lv, "web-data_", 9));
	assert_string_not_equal(r0.lv, r1.lv);
	assert_int_equal(snapfs_snapset_count(), 1);

	assert_snapdisk(snapfs_snapset_disk(s, "vda.raw"), &r0, "vda.raw");
	assert_snapdisk(snapfs_snapset_disk(s, "vdb.raw"), &r1, "vdb.raw");
	assert_null(snapfs_snapset_disk(s, "vdc.raw"));
	assert_null(snapfs_snapset_disk(s, "vda1.raw"));

	snapfs_snapset_release(s);
	t = tally();
	assert_int_equal(t.removes_ok, 2);
	assert_int_equal(snapfs_snapset_count(), 0);
	/* Closed before lvremove (an open snapshot cannot be removed). */
	assert_false(fd_open(r0.fd));
	assert_false(fd_open(r1.fd));
	stop();
	assert_clean();
	guest_free(g);
}

static void test_second_acquire_reuses_set(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s1 = NULL, *s2 = NULL;
	struct snapfs_held h;

	start(0);
	assert_int_equal(snapfs_snapset_acquire(g, &s1), 0);
	assert_int_equal(snapfs_snapset_acquire(g, &s2), 0);
	assert_ptr_equal(s1, s2);
	assert_int_equal(tally().create_calls, 2);
	assert_int_equal(tally().opens, 2);

	/* One of two references dropped: nothing goes. */
	snapfs_snapset_release(s2);
	assert_int_equal(tally().remove_calls, 0);
	assert_int_equal(snapfs_snapset_count(), 1);
	assert_int_equal(snapfs_snapset_held(g->dir, "vda.raw", 0, &h), 0);

	/* The last one: every snapshot, once. */
	snapfs_snapset_release(s1);
	assert_int_equal(tally().removes_ok, 2);
	assert_int_equal(tally().remove_calls, 2);
	assert_int_equal(snapfs_snapset_count(), 0);
	assert_int_equal(snapfs_snapset_held(g->dir, "vda.raw", 0, &h), -ENOENT);
	stop();
	assert_clean();
	guest_free(g);
}

static void test_guest_without_disks(void **state UNUSED)
{
	struct snapfs_guest *g = guest_new("empty");
	struct snapfs_snapset *s = NULL;

	start(0);
	assert_int_equal(snapfs_snapset_acquire(g, &s), -ENOENT);
	assert_int_equal(snapfs_snapset_count(), 0);
	assert_int_equal(tally().create_calls, 0);
	stop();
	guest_free(g);
}

/* ---- failures are all or nothing ------------------------------------------ */

static void test_create_failure_undoes_the_set(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	struct snapfs_held h;
	struct snap_rec first;
	struct tally t;

	start(0);
	pthread_mutex_lock(&fake.lock);
	fake.fail_create_call = 2;
	fake.fail_create_err = -ENOSPC;
	pthread_mutex_unlock(&fake.lock);

	assert_int_equal(snapfs_snapset_acquire(g, &s), -ENOSPC);
	t = tally();
	assert_int_equal(t.create_calls, 2);
	assert_int_equal(t.nsnap, 1);
	assert_int_equal(t.opens, 0);
	first = rec(0);
	assert_string_equal(first.origin, "web-root");
	assert_int_equal(first.removed, 1);
	assert_int_equal(first.remove_calls, 1);
	assert_int_equal(snapfs_snapset_count(), 0);
	assert_int_equal(snapfs_snapset_held(g->dir, "vda.raw", 0, &h), -ENOENT);

	/* A retry starts afresh. */
	pthread_mutex_lock(&fake.lock);
	fake.fail_create_call = 0;
	pthread_mutex_unlock(&fake.lock);
	assert_int_equal(snapfs_snapset_acquire(g, &s), 0);
	t = tally();
	assert_int_equal(t.create_calls, 4);
	assert_int_equal(t.nsnap, 3);
	assert_string_not_equal(rec(1).lv, first.lv);
	assert_string_equal(snapfs_snapset_disk(s, "vda.raw")->snap, rec(1).lv);
	assert_string_equal(snapfs_snapset_disk(s, "vdb.raw")->snap, rec(2).lv);
	snapfs_snapset_release(s);
	stop();
	assert_clean();
	guest_free(g);
}

static void test_open_failure_undoes_the_set(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	struct tally t;
	int fd0;

	start(0);
	pthread_mutex_lock(&fake.lock);
	fake.fail_open_origin[0] = '\0';
	snprintf(fake.fail_open_origin, sizeof(fake.fail_open_origin), "web-data");
	fake.fail_open_err = -ENXIO;
	/* The first disk has a table: its partitions are read, then freed. */
	snprintf(fake.mbr_origin, sizeof(fake.mbr_origin), "web-root");
	fake.disk_size = 8 * MIB;
	pthread_mutex_unlock(&fake.lock);

	assert_int_equal(snapfs_snapset_acquire(g, &s), -ENXIO);
	t = tally();
	assert_string_equal(t.anomaly, "");
	assert_int_equal(t.nsnap, 2);
	assert_int_equal(t.opens, 2);
	assert_int_equal(t.removes_ok, 2);
	fd0 = rec(0).fd;
	assert_true(fd0 >= 0);
	assert_false(fd_open(fd0));
	assert_int_equal(snapfs_snapset_count(), 0);
	stop();
	assert_clean();
	guest_free(g);
}

/* ---- what stat sees without taking a set ---------------------------------- */

static void test_held(void **state UNUSED)
{
	struct snapfs_guest *g = guest_new("web");
	struct snapfs_snapset *s = NULL;
	const struct snapfs_snapdisk *d;
	struct snapfs_held h;
	char want[260];

	guest_add(g, "vg0", "web-root", "vda", "raw");
	guest_add(g, "vg0", "web-data", "vdb", "qcow2");
	start(0);
	pthread_mutex_lock(&fake.lock);
	snprintf(fake.mbr_origin, sizeof(fake.mbr_origin), "web-root");
	fake.disk_size = 8 * MIB;
	pthread_mutex_unlock(&fake.lock);

	assert_int_equal(snapfs_snapset_held(g->dir, "vda.raw", 0, &h), -ENOENT);
	assert_int_equal(tally().create_calls, 0); /* held never creates */

	assert_int_equal(snapfs_snapset_acquire(g, &s), 0);
	memset(&h, 0, sizeof(h));
	assert_int_equal(snapfs_snapset_held(g->dir, "vda.raw", 0, &h), 0);
	assert_true(h.size == 8 * MIB);
	snprintf(want, sizeof(want), "vg0/%s", rec(0).lv);
	assert_string_equal(h.snap, want);
	assert_int_equal(cmp_ts(h.stamp, snapfs_snapset_stamp(s)), 0);

	/* The partition, read from the snapshot. */
	d = snapfs_snapset_disk(s, "vda.raw");
	assert_non_null(d);
	assert_int_equal(d->parts.n, 1);
	assert_int_equal(d->parts.part[0].number, 1);
	assert_true(d->parts.part[0].start == 1 * MIB);
	assert_int_equal(snapfs_snapset_held(g->dir, "vda.raw", 1, &h), 0);
	assert_true(h.size == 2 * MIB);
	assert_string_equal(h.snap, want);
	assert_int_equal(snapfs_snapset_held(g->dir, "vda.raw", 2, &h), -ENOENT);

	/* A qcow2 disk has no partitions of its own. */
	assert_int_equal(snapfs_snapset_held(g->dir, "vdb.qcow2", 0, &h), 0);
	assert_true(h.size == 8 * MIB);
	assert_int_equal(snapfs_snapset_disk(s, "vdb.qcow2")->parts.n, 0);
	assert_int_equal(snapfs_snapset_held(g->dir, "vdb.qcow2", 1, &h), -ENOENT);

	assert_int_equal(snapfs_snapset_held(g->dir, "nope.raw", 0, &h), -ENOENT);
	assert_int_equal(snapfs_snapset_held("other", "vda.raw", 0, &h), -ENOENT);

	snapfs_snapset_release(s);
	assert_int_equal(snapfs_snapset_held(g->dir, "vda.raw", 0, &h), -ENOENT);
	stop();
	assert_clean();
	guest_free(g);
}

static void test_stamps_increase(void **state UNUSED)
{
	struct snapfs_guest *g = guest_one("db", "db");
	struct timespec prev = { 0, 0 };

	start(0);
	for (int i = 0; i < 5; i++) {
		struct snapfs_snapset *s = NULL;
		struct timespec st;

		assert_int_equal(snapfs_snapset_acquire(g, &s), 0);
		st = snapfs_snapset_stamp(s);
		assert_true(cmp_ts(st, prev) > 0);
		prev = st;
		snapfs_snapset_release(s);
	}
	assert_int_equal(tally().nsnap, 5);
	stop();
	assert_clean();
	guest_free(g);
}

/* ---- linger ------------------------------------------------------------------ */

static void test_linger_keeps_set_then_reaper_removes(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	struct wait_arg all = { NULL, 2 };
	struct snapfs_held h;
	int64_t released, removed;

	start(1);
	assert_int_equal(snapfs_snapset_acquire(g, &s), 0);
	snapfs_snapset_release(s);
	released = now_ms();
	assert_int_equal(tally().remove_calls, 0);
	assert_int_equal(snapfs_snapset_count(), 1);
	assert_int_equal(snapfs_snapset_held(g->dir, "vda.raw", 0, &h), 0);

	assert_true(wait_fake(removes_ok_reach, &all, PROMPT_MS));
	removed = now_ms();
	/* Not before the linger time; not long after. */
	assert_true(removed - released >= 950);
	assert_true(removed - released < 4000);
	assert_int_equal(snapfs_snapset_count(), 0);
	assert_int_equal(snapfs_snapset_held(g->dir, "vda.raw", 0, &h), -ENOENT);
	stop();
	assert_clean();
	guest_free(g);
}

static void test_linger_reacquire_reuses_set(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s1 = NULL, *s2 = NULL;
	struct wait_arg all = { NULL, 2 };
	struct timespec stamp;

	start(1);
	assert_int_equal(snapfs_snapset_acquire(g, &s1), 0);
	stamp = snapfs_snapset_stamp(s1);
	snapfs_snapset_release(s1);
	assert_int_equal(snapfs_snapset_acquire(g, &s2), 0);
	assert_ptr_equal(s1, s2);
	assert_int_equal(tally().create_calls, 2);
	assert_int_equal(cmp_ts(snapfs_snapset_stamp(s2), stamp), 0);
	snapfs_snapset_release(s2);

	assert_true(wait_fake(removes_ok_reach, &all, PROMPT_MS));
	assert_int_equal(tally().remove_calls, 2);
	stop();
	assert_clean();
	guest_free(g);
}

/* ---- unmount ----------------------------------------------------------------- */

static void test_shutdown_removes_held_sets(void **state UNUSED)
{
	struct snapfs_guest *g1 = guest_web(), *g2 = guest_one("db", "db");
	struct snapfs_snapset *s1 = NULL, *s1b = NULL, *s2 = NULL;
	int fds[3];

	start(0);
	assert_int_equal(snapfs_snapset_acquire(g1, &s1), 0);
	assert_int_equal(snapfs_snapset_acquire(g1, &s1b), 0);
	assert_int_equal(snapfs_snapset_acquire(g2, &s2), 0);
	assert_int_equal(snapfs_snapset_count(), 2);
	for (int i = 0; i < 3; i++)
		fds[i] = rec((size_t)i).fd;

	/* Files still open: everything goes all the same.  (The sets are freed:
	 * no release may follow.) */
	stop();
	assert_int_equal(tally().removes_ok, 3);
	for (int i = 0; i < 3; i++)
		assert_false(fd_open(fds[i]));
	assert_clean();
	/* And nothing new after shutdown. */
	assert_int_equal(snapfs_snapset_acquire(g2, &s2), -ESHUTDOWN);
	assert_int_equal(tally().create_calls, 3);

	/* A lingering, unused set goes too. */
	start(60);
	assert_int_equal(snapfs_snapset_acquire(g2, &s2), 0);
	snapfs_snapset_release(s2);
	assert_int_equal(tally().remove_calls, 0);
	stop();
	assert_int_equal(tally().removes_ok, 1);
	assert_clean();
	guest_free(g1);
	guest_free(g2);
}

/* ---- removals that fail ------------------------------------------------------- */

static void test_failed_removal_retried_by_reaper(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	struct wait_arg root = { "web-root", 0 };

	start(0);
	pthread_mutex_lock(&fake.lock);
	snprintf(fake.fail_remove_origin, sizeof(fake.fail_remove_origin), "web-root");
	fake.fail_remove_err = -EBUSY;
	fake.fail_remove_times = 1;
	pthread_mutex_unlock(&fake.lock);

	assert_int_equal(snapfs_snapset_acquire(g, &s), 0);
	snapfs_snapset_release(s);
	assert_int_equal(snapfs_snapset_count(), 0);
	/* The reaper tries again, and this time it goes. */
	assert_true(wait_fake(origin_removed, &root, 10 * 1000));
	assert_int_equal(rec(0).remove_calls, 2);
	assert_int_equal(rec(0).removed, 1);
	assert_int_equal(rec(1).remove_calls, 1);
	stop();
	assert_int_equal(rec(0).remove_calls, 2); /* nothing left to retry */
	assert_clean();
	guest_free(g);
}

static void test_failed_removal_retried_at_shutdown(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	struct wait_arg root = { "web-root", 2 };
	unsigned before;

	start(0);
	pthread_mutex_lock(&fake.lock);
	snprintf(fake.fail_remove_origin, sizeof(fake.fail_remove_origin), "web-root");
	fake.fail_remove_err = -EBUSY;
	fake.fail_remove_times = -1;
	pthread_mutex_unlock(&fake.lock);

	assert_int_equal(snapfs_snapset_acquire(g, &s), 0);
	snapfs_snapset_release(s);
	/* Removal at release failed; the reaper tried again, and failed. */
	assert_true(wait_fake(origin_remove_calls_reach, &root, 10 * 1000));
	before = rec(0).remove_calls;

	/* Unmount: one last try, then it is left (and logged), and the list of
	 * pending removals is freed (valgrind). */
	stop();
	assert_int_equal(rec(0).remove_calls, before + 1);
	assert_int_equal(rec(0).removed, 0);
	assert_int_equal(rec(1).removed, 1);
	assert_clean_except("web-root");
	guest_free(g);
}

/* ---- concurrency --------------------------------------------------------- */

struct cycler {
	pthread_t thread;
	const struct snapfs_guest *g;
	int cycles;
	char error[256];
};

static void *cycle_main(void *arg)
{
	struct cycler *c = arg;

	for (int i = 0; i < c->cycles && !c->error[0]; i++) {
		struct snapfs_snapset *s = NULL;
		const struct snapfs_snapdisk *d;
		int rc = snapfs_snapset_acquire(c->g, &s);

		if (rc < 0) {
			snprintf(c->error, sizeof(c->error), "acquire: %s",
				 strerror(-rc));
			break;
		}
		d = snapfs_snapset_disk(s, "vda.raw");
		if (!d || d->fd < 0 || !d->snap[0] || d->size != 1 * MIB)
			snprintf(c->error, sizeof(c->error), "a set without its disk");
		snapfs_snapset_release(s);
	}
	return NULL;
}

struct watcher {
	pthread_t thread;
	const char *dir;
	pthread_mutex_t lock;
	bool stop; /* under lock */
	char error[256];
};

static bool watcher_stopped(struct watcher *w)
{
	bool stop;

	pthread_mutex_lock(&w->lock);
	stop = w->stop;
	pthread_mutex_unlock(&w->lock);
	return stop;
}

/* stat's view, taken while sets come and go. */
static void *watch_main(void *arg)
{
	struct watcher *w = arg;

	while (!watcher_stopped(w)) {
		struct snapfs_held h;
		int rc = snapfs_snapset_held(w->dir, "vda.raw", 0, &h);

		if (rc != 0 && rc != -ENOENT)
			snprintf(w->error, sizeof(w->error), "held: %d", rc);
		if (rc == 0 && (h.size != 1 * MIB || strncmp(h.snap, "vg0/db_", 7)))
			snprintf(w->error, sizeof(w->error), "held gave %.200s", h.snap);
		snapfs_snapset_count();
	}
	return NULL;
}

static void test_concurrent_cycles_one_guest(void **state UNUSED)
{
	struct snapfs_guest *g = guest_one("db", "db");
	struct cycler c[8];
	struct watcher w = { .dir = g->dir, .lock = PTHREAD_MUTEX_INITIALIZER };
	struct tally t;

	start(0);
	assert_int_equal(pthread_create(&w.thread, NULL, watch_main, &w), 0);
	for (int i = 0; i < 8; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		c[i].g = g;
		c[i].cycles = 200;
		assert_int_equal(pthread_create(&c[i].thread, NULL, cycle_main, &c[i]),
				 0);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(c[i].thread, NULL);
	pthread_mutex_lock(&w.lock);
	w.stop = true;
	pthread_mutex_unlock(&w.lock);
	pthread_join(w.thread, NULL);
	for (int i = 0; i < 8; i++)
		if (c[i].error[0])
			fail_msg("thread %d: %s", i, c[i].error);
	if (w.error[0])
		fail_msg("watcher: %s", w.error);

	assert_int_equal(snapfs_snapset_count(), 0);
	t = tally();
	assert_string_equal(t.anomaly, "");
	assert_true(t.nsnap >= 1 && t.nsnap <= 8 * 200);
	assert_int_equal(t.create_calls, t.nsnap);
	assert_int_equal(t.removes_ok, t.nsnap);
	assert_int_equal(t.remove_calls, t.nsnap);
	assert_int_equal(t.opens, t.nsnap);
	assert_clean();
	stop();
	assert_int_equal(tally().remove_calls, t.nsnap);
	guest_free(g);
}

struct acquirer {
	pthread_t thread;
	const struct snapfs_guest *g;
	struct snapfs_snapset *s;
	int rc;
	bool done;
	bool other_blocked_at_done; /* was A's lvcreate still blocked? */
};

static void *acquire_main(void *arg)
{
	struct acquirer *a = arg;
	int rc = snapfs_snapset_acquire(a->g, &a->s);

	pthread_mutex_lock(&fake.lock);
	a->rc = rc;
	a->done = true;
	a->other_blocked_at_done = fake.create_blocked;
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	return NULL;
}

static bool acquirer_done(struct acquirer *a, int ms)
{
	struct timespec until;
	bool done;

	deadline_in(&until, ms);
	pthread_mutex_lock(&fake.lock);
	while (!a->done)
		if (pthread_cond_timedwait(&fake.cond, &fake.lock, &until) == ETIMEDOUT)
			break;
	done = a->done;
	pthread_mutex_unlock(&fake.lock);
	return done;
}

static void release_blocked_create(void)
{
	pthread_mutex_lock(&fake.lock);
	fake.create_release = true;
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
}

/* Guest A's lvcreate hangs (say, on a VG lock); guest B is opened all the
 * same, and a second open of A waits for A's set instead of making one. */
static void test_one_guest_does_not_block_another(void **state UNUSED)
{
	struct snapfs_guest *ga = guest_one("a", "a"), *gb = guest_one("b", "b");
	struct acquirer a = { .g = ga }, a2 = { .g = ga }, b = { .g = gb };
	struct snapfs_held h;
	bool b_done, a2_early;

	start(0);
	pthread_mutex_lock(&fake.lock);
	snprintf(fake.block_create_origin, sizeof(fake.block_create_origin), "a");
	pthread_mutex_unlock(&fake.lock);

	assert_int_equal(pthread_create(&a.thread, NULL, acquire_main, &a), 0);
	if (!wait_fake(create_is_blocked, NULL, PROMPT_MS)) {
		release_blocked_create();
		pthread_join(a.thread, NULL);
		fail_msg("guest a's lvcreate never started");
	}
	assert_int_equal(pthread_create(&a2.thread, NULL, acquire_main, &a2), 0);
	assert_int_equal(pthread_create(&b.thread, NULL, acquire_main, &b), 0);

	/* Bounded: a regression fails here instead of hanging. */
	b_done = acquirer_done(&b, PROMPT_MS);
	a2_early = acquirer_done(&a2, 0);
	/* While A is being made, stat sees no set for it. */
	assert_int_equal(snapfs_snapset_held(ga->dir, "vda.raw", 0, &h), -ENOENT);
	release_blocked_create();
	pthread_join(a.thread, NULL);
	pthread_join(a2.thread, NULL);
	pthread_join(b.thread, NULL);

	if (!b_done)
		fail_msg("guest b's open waited for guest a's lvcreate");
	assert_true(b.other_blocked_at_done);
	assert_int_equal(b.rc, 0);
	assert_false(a2_early);
	assert_int_equal(a.rc, 0);
	assert_int_equal(a2.rc, 0);
	assert_ptr_equal(a.s, a2.s);
	pthread_mutex_lock(&fake.lock);
	bool timed_out = fake.create_timed_out;
	pthread_mutex_unlock(&fake.lock);
	assert_false(timed_out);
	assert_int_equal(tally().create_calls, 2); /* one for a, one for b */
	assert_int_equal(snapfs_snapset_count(), 2);

	snapfs_snapset_release(a.s);
	snapfs_snapset_release(a2.s);
	snapfs_snapset_release(b.s);
	stop();
	assert_clean();
	guest_free(ga);
	guest_free(gb);
}

/* ---- names --------------------------------------------------------------- */

static void test_snapshot_names(void **state UNUSED)
{
	struct snapfs_guest *g = guest_new("long");
	struct snapfs_snapset *s = NULL;
	char longname[121];
	struct snap_rec r0, r1;

	memset(longname, 'x', 120);
	longname[120] = '\0';
	guest_add(g, "vg-x", longname, "vda", "raw");
	guest_add(g, "vg1", "thinvol", "vdb", "raw");
	start(0);
	assert_int_equal(snapfs_snapset_acquire(g, &s), 0);
	r0 = rec(0);
	r1 = rec(1);
	/* Within LVM's 127 bytes, however long the origin (valid_lv_name in
	 * the fake checked the rest). */
	assert_true(strlen(r0.lv) <= 127);
	assert_true(!strncmp(r0.lv, longname, 64));
	assert_string_equal(r0.vg, "vg-x");
	/* The origin's own description goes to lvcreate: a thin one. */
	assert_false(r0.thin);
	assert_true(r1.thin);
	assert_string_equal(r1.vg, "vg1");
	assert_string_equal(tally().anomaly, "");
	snapfs_snapset_release(s);
	stop();
	assert_clean();
	guest_free(g);
}

/* ---- shutdown while a set is being made ---------------------------------- */

struct stopper {
	pthread_t thread;
	bool done;
};

static void *stop_main(void *arg)
{
	struct stopper *st = arg;

	snapfs_snapset_shutdown();
	pthread_mutex_lock(&fake.lock);
	st->done = true;
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	return NULL;
}

/* Shutdown while a set is being made: shutdown leaves a CREATING set to its
 * creator and waits for it; the creator removes its snapshots once and
 * returns -ESHUTDOWN.  The fake lvremove catches a removal made while the
 * open is still under way; the test then ends the acquiring thread inside
 * the fake (pthread_exit) rather than let it touch freed memory. */
static void test_shutdown_while_a_set_is_made(void **state UNUSED)
{
	struct snapfs_guest *g = guest_one("c", "c");
	struct acquirer a = { .g = g };
	struct stopper st = { 0 };
	bool removed_under_creator;

	start(0);
	pthread_mutex_lock(&fake.lock);
	snprintf(fake.block_open_origin, sizeof(fake.block_open_origin), "c");
	pthread_mutex_unlock(&fake.lock);

	assert_int_equal(pthread_create(&a.thread, NULL, acquire_main, &a), 0);
	if (!wait_fake(open_is_blocked, NULL, PROMPT_MS))
		fail_msg("the open of c's snapshot never started");
	assert_int_equal(pthread_create(&st.thread, NULL, stop_main, &st), 0);

	/* Give shutdown its chance to do the wrong thing, boundedly. */
	{
		struct timespec until;

		deadline_in(&until, 2000);
		pthread_mutex_lock(&fake.lock);
		while (!st.done && fake.remove_calls == 0)
			if (pthread_cond_timedwait(&fake.cond, &fake.lock, &until) ==
			    ETIMEDOUT)
				break;
		removed_under_creator = fake.remove_calls > 0 && fake.open_blocked;
		if (removed_under_creator)
			fake.open_exit = true; /* never let it touch the freed set */
		else
			fake.open_release = true;
		pthread_cond_broadcast(&fake.cond);
		pthread_mutex_unlock(&fake.lock);
	}
	if (removed_under_creator) {
		pthread_join(a.thread, NULL);
		pthread_join(st.thread, NULL);
		guest_free(g);
		fail_msg("shutdown removed c's snapshot while its set was still being "
			 "made");
	}
	pthread_join(a.thread, NULL);
	pthread_join(st.thread, NULL);
	assert_int_equal(a.rc, -ESHUTDOWN);
	assert_int_equal(tally().removes_ok, 1);
	assert_int_equal(tally().remove_calls, 1);
	assert_clean();
	guest_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_first_acquire_creates_one_per_disk,
					  test_teardown),
		cmocka_unit_test_teardown(test_second_acquire_reuses_set, test_teardown),
		cmocka_unit_test_teardown(test_guest_without_disks, test_teardown),
		cmocka_unit_test_teardown(test_create_failure_undoes_the_set,
					  test_teardown),
		cmocka_unit_test_teardown(test_open_failure_undoes_the_set,
					  test_teardown),
		cmocka_unit_test_teardown(test_held, test_teardown),
		cmocka_unit_test_teardown(test_stamps_increase, test_teardown),
		cmocka_unit_test_teardown(test_linger_keeps_set_then_reaper_removes,
					  test_teardown),
		cmocka_unit_test_teardown(test_linger_reacquire_reuses_set,
					  test_teardown),
		cmocka_unit_test_teardown(test_shutdown_removes_held_sets, test_teardown),
		cmocka_unit_test_teardown(test_failed_removal_retried_by_reaper,
					  test_teardown),
		cmocka_unit_test_teardown(test_failed_removal_retried_at_shutdown,
					  test_teardown),
		cmocka_unit_test_teardown(test_concurrent_cycles_one_guest,
					  test_teardown),
		cmocka_unit_test_teardown(test_one_guest_does_not_block_another,
					  test_teardown),
		cmocka_unit_test_teardown(test_snapshot_names, test_teardown),
		cmocka_unit_test_teardown(test_shutdown_while_a_set_is_made,
					  test_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
