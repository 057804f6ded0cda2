/* Unit tests for src/snapset.c: the snapshot-set state machine, with the
 * LVM boundary faked at link time.  The Makefile links this program with
 *   -Wl,--wrap=snapfs_lvm_snapshot_create -Wl,--wrap=snapfs_lvm_snapshot_remove
 *   -Wl,--wrap=snapfs_device_open -Wl,--wrap=snapfs_dm_status
 * so snapset.c's calls land in the __wrap_ functions below: they record
 * every snapshot made and removed, fail or block on request, hand out
 * memfds in place of the snapshots' block devices (each holding its
 * snapshot's name at TAG_OFFSET), and answer device-mapper status queries.
 *
 * A fake never calls cmocka (it runs on snapset's threads): it writes what
 * it finds wrong into fake.anomaly, which the tests check. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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
/* Where a fake device holds the name of its snapshot: away from anything a
 * partition-table probe reads. */
#define TAG_OFFSET (256 * 1024)
/* The name of the fake's memfds, as /proc/self/fd shows them. */
#define FAKE_DISK_NAME "snapfs-test-disk"

int __wrap_snapfs_lvm_snapshot_create(const struct snapfs_lv *origin, const char *snap,
				      const char *cow_size, const char *owner,
				      char **why);
int __wrap_snapfs_lvm_snapshot_remove(const char *vg, const char *lv, const char *owner);
int __wrap_snapfs_device_open(const char *path, uint64_t *size);
int __wrap_snapfs_dm_status(const char *dm_name, struct snapfs_cow *out);

/* ---- the fake LVM ---------------------------------------------------------- */

struct snap_rec {
	char vg[128], lv[128], origin[128];
	char path[300];	  /* its /dev/mapper path */
	bool thin;	  /* the origin was a thin LV */
	unsigned removed; /* successful removals */
	unsigned remove_calls;
	bool remove_failed; /* a removal failed by chance (fail_one_in) */
	bool invalid;	    /* its COW area "filled" (invalid_one_in) */
	/* The last fd handed out for it (or -1), and what file that was, to
	 * tell it from a later reuse of its number. */
	int fd;
	dev_t dev;
	ino_t ino;
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

	/* Chance, for the stress tests: every create, open and removal takes
	 * up to delay_us microseconds (slept without the lock); one create in
	 * fail_one_in fails with ENOSPC, one open with ENXIO, and one first
	 * removal of a snapshot with EBUSY; one status query in
	 * invalid_one_in finds its snapshot invalid from then on.  A removal
	 * by a thread other than the stress threads (the reaper) takes
	 * slow_remove_us more, so that opens come while it is under way. */
	unsigned delay_us, fail_one_in, invalid_one_in, slow_remove_us;
	unsigned failed_creates, failed_opens, failed_removes, invalidated;
	unsigned other_removes; /* lvremove calls from no stress thread */
	uint64_t rng;		/* xorshift64 state */
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

/* Newest first: the snapshots in use are the last ones made. */
static struct snap_rec *find_rec(const char *vg, const char *lv)
{
	for (size_t i = fake.nsnap; i-- > 0;)
		if (!strcmp(fake.snap[i].vg, vg) && !strcmp(fake.snap[i].lv, lv))
			return &fake.snap[i];
	return NULL;
}

static struct snap_rec *find_rec_by_path(const char *path)
{
	for (size_t i = fake.nsnap; i-- > 0;)
		if (!strcmp(fake.snap[i].path, path))
			return &fake.snap[i];
	return NULL;
}

/* Is the fd last handed out for r still open?  Under fake.lock. */
static bool rec_fd_open(const struct snap_rec *r)
{
	struct stat st;

	return r->fd >= 0 && fstat(r->fd, &st) == 0 && st.st_dev == r->dev &&
	       st.st_ino == r->ino;
}

/* 0 .. n-1.  Under fake.lock. */
static unsigned fake_random(unsigned n)
{
	fake.rng ^= fake.rng << 13;
	fake.rng ^= fake.rng >> 7;
	fake.rng ^= fake.rng << 17;
	return (unsigned)(fake.rng % n);
}

/* True once in one_in calls (never for 0).  Under fake.lock. */
static bool fake_chance(unsigned one_in)
{
	return one_in && fake_random(one_in) == 0;
}

/* An LVM command takes its time, during which others run. */
static void fake_delay(bool slow)
{
	unsigned us;

	pthread_mutex_lock(&fake.lock);
	us = fake.delay_us ? fake_random(fake.delay_us + 1) : 0;
	if (slow)
		us += fake.slow_remove_us;
	pthread_mutex_unlock(&fake.lock);
	if (us)
		usleep(us);
}

/* What the stress tests' threads hold, for the fake lvremove to check. */
#define STRESS_DISKS 2 /* guest_web's */

static __thread bool is_stresser; /* this thread is a stress test's */

static struct {
	pthread_mutex_t lock; /* never held across a call into snapset.c */
	pthread_cond_t cond;  /* wakes the watchdog when the test is done */
	bool on;
	unsigned holders;	      /* threads holding a set now */
	char held[STRESS_DISKS][128]; /* its snapshots, while holders > 0 */
	unsigned long progress;	      /* cycles done by all threads */
	bool done;
	char error[256];
} stress = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
};

/* Does a stress thread hold the set of snapshot lv now? */
static bool stress_holds(const char *lv)
{
	bool held = false;

	pthread_mutex_lock(&stress.lock);
	for (size_t i = 0; i < STRESS_DISKS && stress.on && stress.holders; i++)
		if (!strcmp(stress.held[i], lv))
			held = true;
	pthread_mutex_unlock(&stress.lock);
	return held;
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
	fake_delay(false);
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
	} else if (fake_chance(fake.fail_one_in)) {
		rc = -ENOSPC;
		fake.failed_creates++;
	}
	if (rc < 0) {
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
		if (snapfs_lvm_dm_path(r->vg, r->lv, r->path, sizeof(r->path)) < 0)
			anomaly("lvcreate of %s/%s: no device-mapper path", r->vg, r->lv);
		r->thin = origin->thin;
		r->fd = -1;
	}
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	return rc;
}

int __wrap_snapfs_lvm_snapshot_remove(const char *vg, const char *lv, const char *owner)
{
	bool held = stress_holds(lv);
	struct snap_rec *r;
	int rc = 0;

	fake_delay(!is_stresser);
	pthread_mutex_lock(&fake.lock);
	fake.remove_calls++;
	fake.other_removes += !is_stresser;
	if (strcmp(owner, OWNER))
		anomaly("lvremove with owner tag \"%s\"", owner);
	if (held)
		anomaly("lvremove of %s/%s while a thread holds its set", vg, lv);
	r = find_rec(vg, lv);
	if (!r) {
		anomaly("lvremove of %s/%s, which snapfs did not make", vg, lv);
		rc = -EIO;
		goto out;
	}
	r->remove_calls++;
	if (r->removed)
		anomaly("lvremove of %s/%s after it was removed", vg, lv);
	/* lvremove of an open LV fails: snapfs closes first. */
	if (rec_fd_open(r))
		anomaly("lvremove of %s/%s while its device is open", vg, lv);
	if (!r->remove_failed && fake_chance(fake.fail_one_in)) {
		r->remove_failed = true;
		fake.failed_removes++;
		rc = -EBUSY;
		goto out;
	}
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

/* The snapshot's name at TAG_OFFSET, if the disk is that large. */
static int write_tag(int fd, const struct snap_rec *r)
{
	char tag[128] = "";

	if (fake.disk_size < TAG_OFFSET + sizeof(tag))
		return 0;
	snprintf(tag, sizeof(tag), "%s", r->lv);
	return pwrite(fd, tag, sizeof(tag), TAG_OFFSET) == sizeof(tag) ? 0 : -EIO;
}

int __wrap_snapfs_device_open(const char *path, uint64_t *size)
{
	struct snap_rec *r;
	struct stat st;
	int fd;

	fake_delay(false);
	pthread_mutex_lock(&fake.lock);
	fake.opens++;
	r = find_rec_by_path(path);
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
	if (fake_chance(fake.fail_one_in)) {
		fake.failed_opens++;
		fd = -ENXIO;
		goto out;
	}
	fd = memfd_create(FAKE_DISK_NAME, MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)fake.disk_size) < 0 ||
	    (!strcmp(r->origin, fake.mbr_origin) && write_mbr(fd) < 0) ||
	    write_tag(fd, r) < 0 || fstat(fd, &st) < 0) {
		anomaly("memfd: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -EIO;
		goto out;
	}
	r->fd = fd;
	r->dev = st.st_dev;
	r->ino = st.st_ino;
	*size = fake.disk_size;
out:
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	return fd;
}

/* What device-mapper says of a snapshot.  snapset asks only about the
 * sets it holds, so a query about any other is a use after removal. */
int __wrap_snapfs_dm_status(const char *dm_name, struct snapfs_cow *out)
{
	char path[300];
	struct snap_rec *r;
	int rc = 0;

	snprintf(path, sizeof(path), "/dev/mapper/%s", dm_name);
	pthread_mutex_lock(&fake.lock);
	r = find_rec_by_path(path);
	if (!r) {
		anomaly("device-mapper status of %s, which is no snapshot", dm_name);
		rc = -ENXIO;
		goto out;
	}
	if (r->removed)
		anomaly("device-mapper status of %s after its removal", dm_name);
	if (!r->invalid && fake_chance(fake.invalid_one_in)) {
		r->invalid = true;
		fake.invalidated++;
	}
	out->valid = !r->invalid;
	out->used = 1;
	out->total = r->thin ? 0 : 100;
out:
	pthread_mutex_unlock(&fake.lock);
	return rc;
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
	fake.delay_us = fake.fail_one_in = fake.invalid_one_in = fake.slow_remove_us = 0;
	fake.failed_creates = fake.failed_opens = fake.failed_removes = 0;
	fake.invalidated = fake.other_removes = 0;
	fake.rng = 0x9e3779b97f4a7c15ULL;
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

	/* A qcow2 disk the listing did not decode: its container only, and
	 * no partitions. */
	assert_int_equal(snapfs_snapset_held(g->dir, "vdb.qcow2", SNAPFS_CONTAINER, &h), 0);
	assert_true(h.size == 8 * MIB);
	assert_int_equal(snapfs_snapset_held(g->dir, "vdb.qcow2", 0, &h), -ENOENT);
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

/* A guest's epoch: what its files show without a set; the next set's
 * files show the same (a stat before an open agrees with an fstat after);
 * it moves on only when a set is removed, and never back to a time an
 * earlier set showed.  Other guests' sets do not move it. */
static void test_epoch(void **state UNUSED)
{
	struct snapfs_guest *g = guest_one("db", "db"), *other = guest_web();
	struct snapfs_snapset *s = NULL, *o = NULL;
	struct timespec e0, e1;

	start(0);
	e0 = snapfs_snapset_epoch(g->dir);
	assert_int_equal(cmp_ts(snapfs_snapset_epoch(g->dir), e0), 0);
	assert_int_equal(snapfs_snapset_acquire(g, &s), 0);
	assert_int_equal(cmp_ts(snapfs_snapset_stamp(s), e0), 0);
	/* Another guest's set, made and removed, leaves this one alone. */
	assert_int_equal(snapfs_snapset_acquire(other, &o), 0);
	snapfs_snapset_release(o);
	assert_int_equal(cmp_ts(snapfs_snapset_epoch(g->dir), e0), 0);
	snapfs_snapset_release(s);
	e1 = snapfs_snapset_epoch(g->dir);
	assert_true(cmp_ts(e1, e0) > 0);
	assert_int_equal(snapfs_snapset_acquire(g, &s), 0);
	assert_int_equal(cmp_ts(snapfs_snapset_stamp(s), e1), 0);
	snapfs_snapset_release(s);
	assert_true(cmp_ts(snapfs_snapset_epoch(g->dir), e1) > 0);
	stop();
	assert_clean();
	guest_free(g);
	guest_free(other);
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

/* ---- stress: thousands of opens and releases of one guest ------------------ */

/* What FUSE open, read and release do to a guest's snapshot set, from
 * STRESS_THREADS threads at once, STRESS_CYCLES times each.  The fake LVM
 * takes its time (so releases, removals and new acquires interleave) and
 * now and then fails; the fake lvremove checks that no thread holds the
 * snapshot it removes, and the threads check that the set they hold is
 * the only one and alive.  A stall is a deadlock: the watchdog aborts.
 * A few seconds; under helgrind (libtool --mode=execute valgrind
 * --tool=helgrind tests/unit/test-snapset) about a minute. */
#define STRESS_THREADS 8
#define STRESS_CYCLES 1000
#define STRESS_STALL_S 30
/* Up to this long closed between cycles: the set's last release comes
 * often, and the next open races its removal. */
#define STRESS_IDLE_US 1000

static const char *const stress_files[STRESS_DISKS] = { "vda.raw", "vdb.raw" };
/* Where stderr was, while snapfs's log goes to a memfd. */
static int real_stderr = STDERR_FILENO;

static void stress_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void stress_error(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&stress.lock);
	if (!stress.error[0]) {
		va_start(ap, fmt);
		vsnprintf(stress.error, sizeof(stress.error), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&stress.lock);
}

static void stress_progress(void)
{
	pthread_mutex_lock(&stress.lock);
	stress.progress++;
	pthread_mutex_unlock(&stress.lock);
}

/* Is vg/lv made and not removed?  Is it invalid? */
static bool snap_live(const char *vg, const char *lv, bool *invalid)
{
	struct snap_rec *r;
	bool live;

	pthread_mutex_lock(&fake.lock);
	r = find_rec(vg, lv);
	live = r && !r->removed;
	*invalid = r && r->invalid;
	pthread_mutex_unlock(&fake.lock);
	return live;
}

/* A thread took a set: while any thread holds one, every thread holds
 * that one. */
static void stress_hold(const struct snapfs_snapdisk *const d[STRESS_DISKS])
{
	char msg[300] = "";

	pthread_mutex_lock(&stress.lock);
	for (size_t i = 0; i < STRESS_DISKS; i++) {
		if (!stress.holders)
			snprintf(stress.held[i], sizeof(stress.held[i]), "%s",
				 d[i]->snap);
		else if (strcmp(stress.held[i], d[i]->snap) && !msg[0])
			snprintf(msg, sizeof(msg), "two sets at once: %.120s and %.120s",
				 stress.held[i], d[i]->snap);
	}
	stress.holders++;
	pthread_mutex_unlock(&stress.lock);
	if (msg[0])
		stress_error("%s", msg);
}

static void stress_let_go(void)
{
	pthread_mutex_lock(&stress.lock);
	stress.holders--;
	pthread_mutex_unlock(&stress.lock);
}

struct stresser {
	pthread_t thread;
	const struct snapfs_guest *g;
	unsigned seed;		    /* rand_r's */
	pthread_barrier_t *halfway; /* the pause past the linger time, or NULL */
	unsigned ok, enospc, enxio; /* acquires */
	unsigned eio;		    /* reads of an invalidated snapshot */
};

/* A read as op_read makes it: snapfs_device_pread (the fake wrote the
 * snapshot's name at TAG_OFFSET), then a check of the set. */
static void stress_read(struct stresser *c, struct snapfs_snapset *s,
			const struct snapfs_snapdisk *d)
{
	char tag[128];
	bool invalid;

	if (snapfs_device_pread(d, tag, sizeof(tag), TAG_OFFSET) != sizeof(tag) ||
	    strncmp(tag, d->snap, sizeof(tag)))
		stress_error("disk %s: fd %d does not read snapshot %s", d->file, d->fd,
			     d->snap);
	if (snapfs_snapset_check(s, d) == 0)
		return;
	c->eio++;
	if (!snap_live(d->vg, d->snap, &invalid) || !invalid)
		stress_error("a read of snapshot %s failed, which is valid", d->snap);
}

/* What a thread does with a set between open and release. */
static void stress_use(struct stresser *c, struct snapfs_snapset *s)
{
	const struct snapfs_snapdisk *d[STRESS_DISKS];
	struct snapfs_held h;
	char want[260];
	bool invalid;

	for (size_t i = 0; i < STRESS_DISKS; i++) {
		d[i] = snapfs_snapset_disk(s, stress_files[i]);
		if (!d[i] || d[i]->fd < 0 || d[i]->size != 1 * MIB || !d[i]->snap[0]) {
			stress_error("a set without its disk %s", stress_files[i]);
			return;
		}
		if (!snap_live(d[i]->vg, d[i]->snap, &invalid))
			stress_error("acquire gave snapshot %s, which is removed",
				     d[i]->snap);
	}
	stress_hold(d);
	for (size_t i = 0; i < STRESS_DISKS; i++)
		stress_read(c, s, d[i]);
	/* stat, meanwhile, sees this set. */
	snprintf(want, sizeof(want), "%s/%s", d[0]->vg, d[0]->snap);
	if (snapfs_snapset_held(c->g->dir, d[0]->file, 0, &h) < 0 ||
	    strcmp(h.snap, want) || cmp_ts(h.stamp, snapfs_snapset_stamp(s)))
		stress_error("stat saw another set than %s, which is held", want);
	if (rand_r(&c->seed) % 4 == 0)
		usleep(rand_r(&c->seed) % 50);
	for (size_t i = 0; i < STRESS_DISKS; i++)
		if (!snap_live(d[i]->vg, d[i]->snap, &invalid))
			stress_error("snapshot %s removed while held", d[i]->snap);
	stress_let_go();
}

/* Half-way, every thread lets go and waits the linger time and a little:
 * they come back while the reaper removes the set (slowly). */
static void stress_pause(struct stresser *c)
{
	pthread_barrier_wait(c->halfway);
	usleep(1000 * 1000 + rand_r(&c->seed) % (100 * 1000));
}

static void *stress_main(void *arg)
{
	struct stresser *c = arg;

	is_stresser = true;
	for (int i = 0; i < STRESS_CYCLES; i++) {
		struct snapfs_snapset *s = NULL;
		int rc;

		if (c->halfway && i == STRESS_CYCLES / 2)
			stress_pause(c);
		rc = snapfs_snapset_acquire(c->g, &s);
		if (rc == 0) {
			c->ok++;
			stress_use(c, s);
			snapfs_snapset_release(s);
		} else if (rc == -ENOSPC) {
			c->enospc++; /* the fake's lvcreate failed */
		} else if (rc == -ENXIO) {
			c->enxio++; /* the fake's open failed */
		} else {
			stress_error("acquire: %s", strerror(-rc));
		}
		stress_progress();
		usleep(rand_r(&c->seed) % STRESS_IDLE_US);
	}
	return NULL;
}

static bool stress_done(void)
{
	bool done;

	pthread_mutex_lock(&stress.lock);
	done = stress.done;
	pthread_mutex_unlock(&stress.lock);
	return done;
}

/* The status view and stat, read while sets come and go. */
static void *observe_main(void *arg)
{
	const struct snapfs_guest *g = arg;

	while (!stress_done()) {
		struct snapfs_held h;
		char *report = snapfs_snapset_report();

		if (!report)
			stress_error("no status report");
		free(report);
		snapfs_snapset_held(g->dir, "vdb.raw", 0, &h);
		usleep(200);
	}
	return NULL;
}

static void *watchdog_main(void *arg)
{
	unsigned long seen;
	int64_t since = now_ms();

	pthread_mutex_lock(&stress.lock);
	seen = stress.progress;
	while (!stress.done) {
		struct timespec until;

		deadline_in(&until, 1000);
		pthread_cond_timedwait(&stress.cond, &stress.lock, &until);
		if (stress.progress != seen) {
			seen = stress.progress;
			since = now_ms();
		} else if (!stress.done && now_ms() - since > STRESS_STALL_S * 1000) {
			dprintf(real_stderr,
				"stress: deadlock: no cycle ended for %d s (%lu done, "
				"%u thread(s) holding a set)\n",
				STRESS_STALL_S, stress.progress, stress.holders);
			abort();
		}
	}
	pthread_mutex_unlock(&stress.lock);
	return NULL;
}

static void stress_end(void)
{
	pthread_mutex_lock(&stress.lock);
	stress.done = true;
	stress.on = false;
	pthread_cond_broadcast(&stress.cond);
	pthread_mutex_unlock(&stress.lock);
}

/* fds of this process open on a fake disk, or -1 if /proc cannot tell. */
static int fake_disks_open(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!dir)
		return -1;
	while ((e = readdir(dir))) {
		char link[256];
		ssize_t len = readlinkat(dirfd(dir), e->d_name, link, sizeof(link) - 1);

		if (len < 0)
			continue;
		link[len] = '\0';
		if (strstr(link, "memfd:" FAKE_DISK_NAME))
			n++;
	}
	closedir(dir);
	return n;
}

static const int crash_signals[] = { SIGABRT, SIGBUS, SIGSEGV };
static struct sigaction crash_saved[sizeof(crash_signals) / sizeof(crash_signals[0])];

/* The end of snapfs's log, from the memfd at fd 2 to the real stderr.
 * Async-signal-safe. */
static void show_log_end(void)
{
	char buf[4096];
	off_t end = lseek(STDERR_FILENO, 0, SEEK_END);
	off_t from = end > (off_t)sizeof(buf) ? end - (off_t)sizeof(buf) : 0;
	ssize_t n = end > 0 ? pread(STDERR_FILENO, buf, sizeof(buf), from) : 0;
	static const char head[] = "---- the end of snapfs's log ----\n";
	const char *line = buf;

	/* From the first whole line. */
	while (from > 0 && line < buf + n && *line++ != '\n')
		;
	if (line == buf + n || write(real_stderr, head, sizeof(head) - 1) < 0)
		return;
	if (write(real_stderr, line, (size_t)(buf + n - line)) < 0)
		return;
}

/* A crash (or the watchdog's abort) shows what snapfs logged last. */
static void crash_handler(int sig)
{
	show_log_end();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* snapfs logs every set made and removed, thousands of lines: they go to a
 * memfd, and only their end is shown, when something went wrong. */
static void stderr_to_memfd(void)
{
	int log = memfd_create("snapfs-test-log", MFD_CLOEXEC);
	struct sigaction sa = { .sa_handler = crash_handler };

	assert_true(log >= 0);
	fflush(stderr);
	real_stderr = dup(STDERR_FILENO);
	assert_true(real_stderr >= 0);
	assert_true(dup2(log, STDERR_FILENO) >= 0);
	close(log);
	for (size_t i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++)
		sigaction(crash_signals[i], &sa, &crash_saved[i]);
}

static void stderr_back(bool show_end)
{
	for (size_t i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++)
		sigaction(crash_signals[i], &crash_saved[i], NULL);
	fflush(stderr);
	if (show_end)
		show_log_end();
	dup2(real_stderr, STDERR_FILENO);
	close(real_stderr);
	real_stderr = STDERR_FILENO;
}

struct stress_outcome {
	unsigned ok, enospc, enxio, eio;
	size_t sets_left; /* before shutdown */
	char error[256];
	struct tally t;
	unsigned failed_creates, failed_opens, failed_removes, invalidated;
	unsigned other_removes;
	size_t not_removed, fds_open;
	int fds_proc;
	int64_t ms;
};

static void stress_collect(struct stress_outcome *o)
{
	pthread_mutex_lock(&stress.lock);
	memcpy(o->error, stress.error, sizeof(o->error));
	pthread_mutex_unlock(&stress.lock);
	o->t = tally();
	pthread_mutex_lock(&fake.lock);
	o->failed_creates = fake.failed_creates;
	o->failed_opens = fake.failed_opens;
	o->failed_removes = fake.failed_removes;
	o->invalidated = fake.invalidated;
	o->other_removes = fake.other_removes;
	for (size_t i = 0; i < fake.nsnap; i++) {
		o->not_removed += !fake.snap[i].removed;
		o->fds_open += rec_fd_open(&fake.snap[i]);
	}
	pthread_mutex_unlock(&fake.lock);
	o->fds_proc = fake_disks_open();
}

static void stress_run(unsigned linger, struct stress_outcome *o)
{
	struct snapfs_guest *g = guest_web();
	struct stresser c[STRESS_THREADS];
	pthread_barrier_t halfway;
	pthread_t watchdog, observer;
	int64_t t0 = now_ms();

	memset(o, 0, sizeof(*o));
	start(linger);
	pthread_mutex_lock(&fake.lock);
	fake.delay_us = 100;
	fake.fail_one_in = 50;
	fake.invalid_one_in = linger ? 500 : 0;
	fake.slow_remove_us = linger ? 20 * 1000 : 0;
	pthread_mutex_unlock(&fake.lock);
	stderr_to_memfd();
	pthread_mutex_lock(&stress.lock);
	stress.on = true;
	stress.done = false;
	stress.holders = 0;
	stress.progress = 0;
	stress.error[0] = '\0';
	pthread_mutex_unlock(&stress.lock);

	assert_int_equal(pthread_create(&watchdog, NULL, watchdog_main, NULL), 0);
	assert_int_equal(pthread_create(&observer, NULL, observe_main, g), 0);
	if (linger)
		pthread_barrier_init(&halfway, NULL, STRESS_THREADS);
	for (int i = 0; i < STRESS_THREADS; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		c[i].g = g;
		c[i].seed = (unsigned)i + 1;
		c[i].halfway = linger ? &halfway : NULL;
		assert_int_equal(pthread_create(&c[i].thread, NULL, stress_main, &c[i]),
				 0);
	}
	for (int i = 0; i < STRESS_THREADS; i++) {
		pthread_join(c[i].thread, NULL);
		o->ok += c[i].ok;
		o->enospc += c[i].enospc;
		o->enxio += c[i].enxio;
		o->eio += c[i].eio;
	}
	o->sets_left = snapfs_snapset_count();
	/* Unmount, still under the watchdog. */
	snapfs_snapset_shutdown();
	started = false;
	stress_end();
	pthread_join(observer, NULL);
	pthread_join(watchdog, NULL);
	if (linger)
		pthread_barrier_destroy(&halfway);
	o->ms = now_ms() - t0;
	stress_collect(o);
	stderr_back(o->error[0] || o->t.anomaly[0]);
	guest_free(g);
}

static void stress_check(unsigned linger, const struct stress_outcome *o)
{
	print_message("linger %u: %d cycles in %.1f s: %zu snapshots made, %u opens, %u "
		      "lvremove calls from the reaper or unmount, %u reads of an invalid "
		      "snapshot; failed by chance: %u lvcreate, %u open, %u lvremove\n",
		      linger, STRESS_THREADS * STRESS_CYCLES, (double)o->ms / 1000,
		      o->t.nsnap, o->t.opens, o->other_removes, o->eio, o->failed_creates,
		      o->failed_opens, o->failed_removes);
	if (o->error[0])
		fail_msg("%s", o->error);
	assert_string_equal(o->t.anomaly, "");
	/* Every snapshot made was removed exactly once, and no other. */
	assert_clean();
	/* Every acquire succeeded, or failed because the fake failed it. */
	assert_int_equal(o->ok + o->enospc + o->enxio, STRESS_THREADS * STRESS_CYCLES);
	assert_int_equal(o->enospc, o->failed_creates);
	assert_int_equal(o->enxio, o->failed_opens);
	assert_true(o->ok > 0);
	if (!o->invalidated)
		assert_int_equal(o->eio, 0);
	/* Without linger, the last release removed the set. */
	assert_true(o->sets_left <= (linger ? 1 : 0));
	assert_int_equal(o->t.nsnap + o->failed_creates, o->t.create_calls);
	assert_int_equal(o->not_removed, 0);
	assert_int_equal(o->t.removes_ok, o->t.nsnap);
	assert_int_equal(o->t.remove_calls, o->t.nsnap + o->failed_removes);
	/* And every device the fake opened is closed. */
	assert_int_equal(o->fds_open, 0);
	if (o->fds_proc >= 0)
		assert_int_equal(o->fds_proc, 0);
	assert_int_equal(snapfs_snapset_count(), 0);
}

static void test_stress_cycles(void **state UNUSED)
{
	struct stress_outcome o;

	stress_run(0, &o);
	stress_check(0, &o);
}

/* With linger, sets outlive their last release: reacquired, replaced when
 * invalid, and removed by the reaper. */
static void test_stress_cycles_linger(void **state UNUSED)
{
	struct stress_outcome o;

	stress_run(1, &o);
	stress_check(1, &o);
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
		cmocka_unit_test_teardown(test_epoch, test_teardown),
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
		cmocka_unit_test_teardown(test_stress_cycles, test_teardown),
		cmocka_unit_test_teardown(test_stress_cycles_linger, test_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
