/* Unit tests for src/catalog.c: when a guest discovery runs, on which
 * thread, and which catalog a lookup is served meanwhile.  The Makefile
 * links this program with
 *   -Wl,--wrap=snapfs_lvm_list -Wl,--wrap=snapfs_lvm_list_free
 *   -Wl,--wrap=snapfs_source_libvirt_list -Wl,--wrap=snapfs_source_libvirt_guest
 *   -Wl,--wrap=snapfs_lvm_still_there -Wl,--wrap=snapfs_device_open
 *   -Wl,--wrap=snapfs_log
 *   -Wl,--wrap=pthread_create
 * so a discovery lands in the fakes below.  Discovery N (counted from 1 in
 * each test) lists one LV, "lv-N", and one guest, "gen-N", with a raw disk
 * on it: a catalog tells which discovery made it.  A discovery can be held
 * in snapfs_lvm_list until the test lets it go, or made to fail in the
 * libvirt listing; the fakes count their calls and note the thread and the
 * time of each discovery.  The one-guest resolution of an open lands in
 * the same fakes: its lvs is discovery N too, and its guest "gen-N" (or,
 * when device-mapper is made to say its LVs are still there, no lvs and
 * the guest of the listing's LV).
 * pthread_create counts the threads catalog.c
 * starts (the tests start theirs with __real_pthread_create), and
 * snapfs_log counts the warnings.
 *
 * A fake never calls cmocka (it runs on catalog's threads): it writes what
 * it finds wrong into fake.anomaly, which the tests check.  Every wait is
 * bounded, and a watchdog ends the program if a test hangs all the same.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapfs.h"

#define UNUSED __attribute__((unused))
#define URI "test:///snapfs"
/* The cache time of the tests that wait for a catalog to go stale, and of
 * those that never let it go stale. */
#define CACHE_MS 200
#define FOREVER_MS (3600 * 1000)
/* How long a test waits for something that should happen at once. */
#define PROMPT_MS 5000
/* A held discovery gives up after this, and says so. */
#define HOLD_MS 5000
/* A get that waited for a held discovery would take HOLD_MS. */
#define GET_MS (HOLD_MS / 2)
#define WATCHDOG_S 30
#define MAX_DISCOVERIES 64
#define MAX_THREADS 64

int __wrap_snapfs_lvm_list(const char *const *vgs, struct snapfs_lv_list *out);
void __wrap_snapfs_lvm_list_free(struct snapfs_lv_list *l);
int __wrap_snapfs_source_libvirt_list(const char *uri, const struct snapfs_lv_list *lvs,
				      struct snapfs_guest **out, size_t *n);
int __wrap_snapfs_source_libvirt_guest(const char *uri, const char *uuid, const char *name,
					const struct snapfs_lv_list *lvs, struct snapfs_guest *out,
					size_t *unresolved);
bool __wrap_snapfs_lvm_still_there(const struct snapfs_lv *lv);
int __wrap_snapfs_device_open(const char *path, uint64_t *size);
void __wrap_snapfs_log(enum snapfs_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
			  void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
			  void *arg);

/* ---- the fakes --------------------------------------------------------------- */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* broadcast on every call and every change */

	unsigned lists; /* snapfs_lvm_list calls: discoveries begun */
	unsigned list_frees;
	unsigned guest_lists; /* snapfs_source_libvirt_list calls: discoveries ended */
	unsigned guest_resolves; /* snapfs_source_libvirt_guest calls */
	char resolved_uuid[32], resolved_name[32]; /* what the last one asked for */
	unsigned failed;      /* discoveries failed on request */
	unsigned opens;	      /* snapfs_device_open calls */
	unsigned threads;     /* pthread_create calls from catalog.c */
	unsigned discovery_warnings; /* "guest discovery failed ..." */
	unsigned thread_warnings;    /* "no thread for guest discovery ..." */
	unsigned in_flight, max_in_flight;
	pthread_t thread[MAX_DISCOVERIES + 1]; /* who ran discovery N */
	int64_t begun_us[MAX_DISCOVERIES + 1]; /* when it began (CLOCK_MONOTONIC) */
	int64_t ended_us[MAX_DISCOVERIES + 1]; /* when its libvirt listing returned */
	int64_t thread_us[MAX_THREADS + 1];    /* when catalog.c started thread N */
	char anomaly[512];

	/* On request. */
	unsigned hold; /* discovery N waits in snapfs_lvm_list; 0: none */
	bool held, release, hold_timed_out;
	unsigned fail;	    /* discovery N fails; 0: none */
	int thread_error;   /* pthread_create fails with it; 0: no */
	bool gone;	    /* the resolved guest is not defined */
	bool still_there;   /* device-mapper confirms every listed LV */
	unsigned extra_disks; /* the resolved guest has disks on no LV listed */
	unsigned still_asked; /* snapfs_lvm_still_there calls */
	bool lvm_source;    /* lvs of chosen VGs is right */
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

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
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

int __wrap_snapfs_lvm_list(const char *const *vgs, struct snapfs_lv_list *out)
{
	struct snapfs_lv *lv;
	unsigned n;

	pthread_mutex_lock(&fake.lock);
	n = ++fake.lists;
	if (!vgs != !fake.lvm_source)
		anomaly("lvs of %s VGs for %s source", vgs ? "chosen" : "all",
			fake.lvm_source ? "an LVM" : "a libvirt");
	if (n > MAX_DISCOVERIES) {
		anomaly("more than %d discoveries", MAX_DISCOVERIES);
		n = MAX_DISCOVERIES;
	}
	fake.thread[n] = pthread_self();
	fake.begun_us[n] = now_us();
	if (++fake.in_flight > fake.max_in_flight)
		fake.max_in_flight = fake.in_flight;
	if (n == fake.hold) {
		struct timespec until;

		deadline_in(&until, HOLD_MS);
		fake.held = true;
		pthread_cond_broadcast(&fake.cond);
		while (!fake.release)
			if (pthread_cond_timedwait(&fake.cond, &fake.lock, &until) ==
			    ETIMEDOUT)
				break;
		if (!fake.release)
			fake.hold_timed_out = true;
		fake.held = false;
	}
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);

	lv = calloc(1, sizeof(*lv));
	if (!lv)
		abort();
	snprintf(lv->vg, sizeof(lv->vg), "vg0");
	snprintf(lv->lv, sizeof(lv->lv), "lv-%u", n);
	lv->size = 1024 * 1024 * 1024ULL;
	snprintf(lv->attr, sizeof(lv->attr), "-wi-ao----");
	snprintf(lv->segtype, sizeof(lv->segtype), "linear");
	lv->major = 253;
	lv->minor = (int)n;
	lv->is_ordinary = true;
	out->lv = lv;
	out->n = 1;
	return 0;
}

void __wrap_snapfs_lvm_list_free(struct snapfs_lv_list *l)
{
	pthread_mutex_lock(&fake.lock);
	fake.list_frees++;
	pthread_mutex_unlock(&fake.lock);
	free(l->lv);
	l->lv = NULL;
	l->n = 0;
}

int __wrap_snapfs_source_libvirt_list(const char *uri, const struct snapfs_lv_list *lvs,
				      struct snapfs_guest **out, size_t *n)
{
	struct snapfs_guest *g;
	char name[32], key[32];
	unsigned d = 0;
	int rc = 0;

	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&fake.lock);
	fake.guest_lists++;
	if (!uri || strcmp(uri, URI))
		anomaly("libvirt listing of URI %s", uri ? uri : "(default)");
	if (lvs->n != 1 || sscanf(lvs->lv[0].lv, "lv-%u", &d) != 1)
		anomaly("libvirt listing given LVs that snapfs_lvm_list did not make");
	fake.in_flight--;
	if (d && d <= MAX_DISCOVERIES)
		fake.ended_us[d] = now_us();
	if (d && d == fake.fail) {
		fake.failed++;
		rc = -ECONNREFUSED;
	}
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	if (rc < 0)
		return rc;

	snprintf(name, sizeof(name), "gen-%u", d);
	snprintf(key, sizeof(key), "uuid-%u", d);
	g = calloc(1, sizeof(*g));
	if (!g || !(g->name = strdup(name)) || !(g->key = strdup(key)) ||
	    snapfs_guest_add_disk(g, &lvs->lv[0], "vda", "raw", 512) < 0)
		abort();
	*out = g;
	*n = 1;
	return 0;
}

/* Whether device-mapper still shows a listed LV under its name: as the
 * test says (fake.still_there). */
bool __wrap_snapfs_lvm_still_there(const struct snapfs_lv *lv)
{
	bool yes;

	pthread_mutex_lock(&fake.lock);
	fake.still_asked++;
	yes = fake.still_there;
	pthread_mutex_unlock(&fake.lock);
	return yes;
}

/* One guest, as discovery N (the lvs before it) sees it: "gen-N". */
int __wrap_snapfs_source_libvirt_guest(const char *uri, const char *uuid, const char *name,
				       const struct snapfs_lv_list *lvs, struct snapfs_guest *out,
				       size_t *unresolved)
{
	unsigned d = 0;
	int rc = 0;
	char text[32];

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&fake.lock);
	fake.guest_resolves++;
	snprintf(fake.resolved_uuid, sizeof(fake.resolved_uuid), "%s", uuid);
	snprintf(fake.resolved_name, sizeof(fake.resolved_name), "%s", name);
	if (!uri || strcmp(uri, URI))
		anomaly("libvirt lookup at URI %s", uri ? uri : "(default)");
	if (lvs->n != 1 || sscanf(lvs->lv[0].lv, "lv-%u", &d) != 1)
		anomaly("libvirt lookup given LVs that snapfs_lvm_list did not make");
	/* Without an lvs first (device-mapper vouched for the LVs), nothing
	 * is in flight. */
	if (fake.in_flight)
		fake.in_flight--;
	if (d && d <= MAX_DISCOVERIES)
		fake.ended_us[d] = now_us();
	if (d && d == fake.fail) {
		fake.failed++;
		rc = -ECONNREFUSED;
	} else if (fake.gone) {
		rc = -ENOENT;
	}
	/* Disks on LVs that lvs lists, not the listing's LV alone. */
	*unresolved = d == 1 ? fake.extra_disks : 0;
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	if (rc < 0)
		return rc;
	snprintf(text, sizeof(text), "gen-%u", d);
	out->name = strdup(text);
	snprintf(text, sizeof(text), "uuid-%u", d);
	out->key = strdup(text);
	if (!out->name || !out->key || snapfs_guest_add_disk(out, &lvs->lv[0], "vda", "raw", 512))
		abort();
	return 0;
}

/* The live origin's partition table is not read here. */
int __wrap_snapfs_device_open(const char *path, uint64_t *size)
{
	pthread_mutex_lock(&fake.lock);
	fake.opens++;
	if (strncmp(path, "/dev/mapper/vg0-lv-", 19))
		anomaly("open of %s", path);
	pthread_mutex_unlock(&fake.lock);
	return -ENOENT;
}

void __wrap_snapfs_log(enum snapfs_log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "snapfs %s: %s\n", names[level], line);
	pthread_mutex_lock(&fake.lock);
	if (level == SNAPFS_LOG_WARN && strstr(line, "guest discovery failed"))
		fake.discovery_warnings++;
	if (level == SNAPFS_LOG_WARN && strstr(line, "no thread for guest discovery"))
		fake.thread_warnings++;
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
			  void *arg)
{
	int err;

	pthread_mutex_lock(&fake.lock);
	if (++fake.threads <= MAX_THREADS)
		fake.thread_us[fake.threads] = now_us();
	err = fake.thread_error;
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	if (err)
		return err;
	return __real_pthread_create(t, attr, fn, arg);
}

static void fake_reset(void)
{
	pthread_mutex_lock(&fake.lock);
	fake.lists = fake.list_frees = fake.guest_lists = fake.failed = 0;
	fake.opens = fake.threads = 0;
	fake.discovery_warnings = fake.thread_warnings = 0;
	fake.in_flight = fake.max_in_flight = 0;
	memset(fake.begun_us, 0, sizeof(fake.begun_us));
	memset(fake.ended_us, 0, sizeof(fake.ended_us));
	memset(fake.thread_us, 0, sizeof(fake.thread_us));
	fake.anomaly[0] = '\0';
	fake.hold = 0;
	fake.held = fake.release = fake.hold_timed_out = false;
	fake.fail = 0;
	fake.thread_error = 0;
	fake.guest_resolves = 0;
	fake.resolved_uuid[0] = fake.resolved_name[0] = '\0';
	fake.gone = fake.lvm_source = false;
	fake.still_there = false;
	fake.extra_disks = fake.still_asked = 0;
	pthread_mutex_unlock(&fake.lock);
}

static void hold(unsigned discovery)
{
	pthread_mutex_lock(&fake.lock);
	fake.hold = discovery;
	fake.release = false;
	pthread_mutex_unlock(&fake.lock);
}

static void release(void)
{
	pthread_mutex_lock(&fake.lock);
	fake.release = true;
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
}

static void fail_discovery(unsigned discovery)
{
	pthread_mutex_lock(&fake.lock);
	fake.fail = discovery;
	pthread_mutex_unlock(&fake.lock);
}

/* Copies, so that cmocka's assertions run without fake.lock held. */
struct tally {
	unsigned lists, list_frees, guest_lists, failed, opens, threads;
	unsigned discovery_warnings, thread_warnings, max_in_flight;
	bool held, hold_timed_out;
	char anomaly[512];
};

static struct tally tally(void)
{
	struct tally t;

	pthread_mutex_lock(&fake.lock);
	t.lists = fake.lists;
	t.list_frees = fake.list_frees;
	t.guest_lists = fake.guest_lists;
	t.failed = fake.failed;
	t.opens = fake.opens;
	t.threads = fake.threads;
	t.discovery_warnings = fake.discovery_warnings;
	t.thread_warnings = fake.thread_warnings;
	t.max_in_flight = fake.max_in_flight;
	t.held = fake.held;
	t.hold_timed_out = fake.hold_timed_out;
	memcpy(t.anomaly, fake.anomaly, sizeof(t.anomaly));
	pthread_mutex_unlock(&fake.lock);
	return t;
}

/* Discovery N ran on thread t. */
static bool ran_on(unsigned n, pthread_t t)
{
	bool on;

	pthread_mutex_lock(&fake.lock);
	on = n <= fake.lists && pthread_equal(fake.thread[n], t);
	pthread_mutex_unlock(&fake.lock);
	return on;
}

/* Threads catalog.c started before discovery n ended (all, if it did
 * not). */
static unsigned threads_before_end(unsigned n)
{
	unsigned count = 0;

	pthread_mutex_lock(&fake.lock);
	for (unsigned i = 1; i <= fake.threads && i <= MAX_THREADS; i++)
		if (!fake.ended_us[n] || fake.thread_us[i] < fake.ended_us[n])
			count++;
	pthread_mutex_unlock(&fake.lock);
	return count;
}

typedef bool (*fake_pred)(unsigned arg);

/* Wait up to ms for pred, checked under fake.lock on every fake event. */
static bool wait_fake(fake_pred pred, unsigned arg, int ms)
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

static bool is_held(unsigned unused UNUSED)
{
	return fake.held;
}

static bool discovery_warnings_reach(unsigned n)
{
	return fake.discovery_warnings >= n;
}

/* ---- catalogs -------------------------------------------------------------- */

static const double cache_short = CACHE_MS / 1000.0;
static const double cache_forever = FOREVER_MS / 1000.0;
static const double cache_none = 0;
static double cache_ms; /* of the running test */

/* Which discovery made c: N of its one guest "gen-N", or 0. */
static unsigned gen(const struct snapfs_catalog *c)
{
	unsigned n;
	char dir[32];

	if (!c || c->n != 1 || sscanf(c->guest[0].name, "gen-%u", &n) != 1)
		return 0;
	snprintf(dir, sizeof(dir), "gen-%u", n);
	if (snapfs_catalog_guest(c, dir) != &c->guest[0])
		return 0;
	return n;
}

/* The discovery whose catalog a get is served now; 0 on error. */
static unsigned served(void)
{
	struct snapfs_catalog *c = NULL;
	unsigned n;

	if (snapfs_catalog_get(&c) < 0)
		return 0;
	n = gen(c);
	snapfs_catalog_put(c);
	return n;
}

/* Wait up to ms for gets to be served discovery n. */
static bool wait_served(unsigned n, int ms)
{
	int64_t until = now_us() + (int64_t)ms * 1000;

	do {
		if (served() == n)
			return true;
		sleep_ms(1);
	} while (now_us() < until);
	return false;
}

/* Long enough for a catalog published before this call to be stale. */
static void wait_stale(void)
{
	sleep_ms((int)cache_ms + 50);
}

static void assert_no_anomaly(void)
{
	struct tally t = tally();

	if (t.anomaly[0])
		fail_msg("%s", t.anomaly);
	assert_false(t.hold_timed_out);
	assert_true(t.max_in_flight <= 1);
	assert_int_equal(t.list_frees, t.lists - (t.held ? 1 : 0));
}

/* No discovery began within a cache time of the end of discovery n: its
 * catalog (or, when it failed, the one kept) was fresh.  A check that holds
 * however slow the machine: one that is late may see a new discovery
 * rightly begun. */
static void assert_quiet_after(unsigned n)
{
	int64_t ended, next = 0;

	pthread_mutex_lock(&fake.lock);
	ended = fake.ended_us[n];
	if (n < fake.lists && n < MAX_DISCOVERIES)
		next = fake.begun_us[n + 1];
	pthread_mutex_unlock(&fake.lock);
	assert_true(ended > 0);
	if (next)
		assert_true(next - ended >= (int64_t)cache_ms * 1000);
}

/* Gets go on a while after discovery n was served; then shutdown waits for
 * any discovery they started, and none may have begun within a cache time
 * of the end of discovery n. */
static void assert_served_quietly(unsigned n)
{
	for (int i = 0; i < 10; i++) {
		served();
		sleep_ms(5);
	}
	snapfs_catalog_shutdown();
	assert_quiet_after(n);
}

static void watchdog(int sig UNUSED)
{
	static const char msg[] = "test-catalog: watchdog: a test hung\n";
	ssize_t r = write(STDERR_FILENO, msg, sizeof(msg) - 1);

	(void)r;
	_exit(1);
}

static int setup(void **state)
{
	const double *cache = *state;
	static char uri[] = URI;
	struct snapfs_source src = { .type = SNAPFS_SRC_LIBVIRT, .uri = uri };

	fake_reset();
	alarm(WATCHDOG_S);
	cache_ms = *cache * 1000;
	return snapfs_catalog_init(&src, *cache);
}

/* Lets a held discovery go and drops the catalog: the next test starts
 * with none. */
static int teardown(void **state UNUSED)
{
	release();
	snapfs_catalog_shutdown();
	alarm(0);
	return 0;
}

/* Threads of the tests, with the real pthread_create. */
static void spawn(pthread_t *t, void *(*fn)(void *), void *arg)
{
	if (__real_pthread_create(t, NULL, fn, arg) != 0)
		abort();
}

/* ---- the first discovery ---------------------------------------------------- */

static void test_first_get_discovers_in_caller(void **state UNUSED)
{
	struct snapfs_catalog *c1 = NULL, *c2 = NULL;
	const struct snapfs_guest *g;
	unsigned partno;
	struct tally t;

	assert_int_equal(snapfs_catalog_get(&c1), 0);
	t = tally();
	assert_int_equal(t.lists, 1);
	assert_int_equal(t.guest_lists, 1);
	assert_int_equal(t.threads, 0);
	assert_true(ran_on(1, pthread_self()));
	assert_int_equal(gen(c1), 1);
	g = snapfs_catalog_guest(c1, "gen-1");
	assert_non_null(g);
	assert_string_equal(g->key, "uuid-1");
	assert_int_equal(g->ndisks, 1);
	assert_non_null(snapfs_guest_disk(g, "vda.raw", &partno));
	assert_string_equal(g->disk[0].lv.lv, "lv-1");
	/* The live origin's table was asked for (and is not there). */
	assert_int_equal(t.opens, 1);
	assert_int_equal(g->disk[0].parts.n, 0);

	/* Within the cache time: the same catalog, nothing discovered. */
	assert_int_equal(snapfs_catalog_get(&c2), 0);
	assert_ptr_equal(c1, c2);
	assert_int_equal(tally().lists, 1);
	assert_int_equal(tally().threads, 0);
	snapfs_catalog_put(c2);
	snapfs_catalog_put(c1);
	assert_no_anomaly();
}

/* A source that cannot be read fails the first get (and the mount). */
static void test_first_get_failure_is_returned(void **state UNUSED)
{
	struct snapfs_catalog *c = NULL;

	fail_discovery(1);
	assert_int_equal(snapfs_catalog_get(&c), -ECONNREFUSED);
	assert_null(c);
	assert_int_equal(tally().threads, 0);
	assert_int_equal(snapfs_catalog_get(&c), 0);
	assert_int_equal(gen(c), 2);
	assert_true(ran_on(2, pthread_self()));
	snapfs_catalog_put(c);
	assert_no_anomaly();
}

/* ---- a stale catalog --------------------------------------------------------- */

static void test_stale_get_serves_previous_while_discovery_held(void **state UNUSED)
{
	struct snapfs_catalog *c1 = NULL, *c = NULL;
	int64_t t0, slowest = 0;
	struct tally t;

	assert_int_equal(snapfs_catalog_get(&c1), 0);
	wait_stale();
	hold(2);
	/* The stale catalog at once; the next one is made on another thread. */
	t0 = now_us();
	assert_int_equal(snapfs_catalog_get(&c), 0);
	slowest = now_us() - t0;
	assert_ptr_equal(c, c1);
	snapfs_catalog_put(c);
	assert_true(wait_fake(is_held, 0, PROMPT_MS));
	assert_false(ran_on(2, pthread_self()));

	/* While it is held, every get is served the previous catalog. */
	for (int i = 0; i < 20; i++) {
		t0 = now_us();
		assert_int_equal(snapfs_catalog_get(&c), 0);
		if (now_us() - t0 > slowest)
			slowest = now_us() - t0;
		assert_ptr_equal(c, c1);
		snapfs_catalog_put(c);
	}
	t = tally();
	assert_true(t.held); /* so no get waited for it */
	assert_int_equal(t.lists, 2);
	assert_int_equal(t.threads, 1);
	assert_true(slowest < GET_MS * 1000);

	/* Once published, the new catalog is served, for a cache time. */
	release();
	assert_true(wait_served(2, PROMPT_MS));
	assert_int_equal(threads_before_end(2), 1);
	snapfs_catalog_put(c1);
	assert_served_quietly(2);
	assert_no_anomaly();
}

struct getter {
	pthread_t thread;
	pthread_barrier_t *go;
	const struct snapfs_catalog *want;
	int gets;
	int wrong;	 /* gets that failed or gave another catalog */
	int64_t slowest; /* us */
};

static void *getter_main(void *arg)
{
	struct getter *g = arg;

	pthread_barrier_wait(g->go);
	for (int i = 0; i < g->gets; i++) {
		struct snapfs_catalog *c = NULL;
		int64_t t0 = now_us();
		int rc = snapfs_catalog_get(&c);

		if (now_us() - t0 > g->slowest)
			g->slowest = now_us() - t0;
		if (rc < 0 || c != g->want)
			g->wrong++;
		snapfs_catalog_put(c);
	}
	return NULL;
}

#define GETTERS 4

static void test_one_discovery_for_many_stale_gets(void **state UNUSED)
{
	struct getter g[GETTERS];
	struct snapfs_catalog *c1 = NULL;
	pthread_barrier_t go;
	struct tally t;

	assert_int_equal(snapfs_catalog_get(&c1), 0);
	wait_stale();
	hold(2);
	/* Many lookups of a stale catalog at once. */
	pthread_barrier_init(&go, NULL, GETTERS);
	for (int i = 0; i < GETTERS; i++) {
		g[i] = (struct getter){ .go = &go, .want = c1, .gets = 200 };
		spawn(&g[i].thread, getter_main, &g[i]);
	}
	for (int i = 0; i < GETTERS; i++)
		pthread_join(g[i].thread, NULL);
	pthread_barrier_destroy(&go);
	for (int i = 0; i < GETTERS; i++) {
		if (g[i].wrong)
			fail_msg("getter %d: %d gets not served the previous catalog", i,
				 g[i].wrong);
		assert_true(g[i].slowest < GET_MS * 1000);
	}
	assert_true(wait_fake(is_held, 0, PROMPT_MS));
	t = tally();
	/* One thread, one discovery, held all along. */
	assert_int_equal(t.threads, 1);
	assert_int_equal(t.lists, 2);
	assert_true(t.held);

	release();
	assert_true(wait_served(2, PROMPT_MS));
	assert_int_equal(threads_before_end(2), 1);
	snapfs_catalog_put(c1);
	assert_served_quietly(2);
	assert_int_equal(tally().max_in_flight, 1);
	assert_no_anomaly();
}

/* A failing source is asked again a cache time later, not at every get. */
static void test_failed_discovery_keeps_previous_a_cache_time(void **state UNUSED)
{
	struct snapfs_catalog *c1 = NULL;
	unsigned n, wrong = 0;
	int64_t until;
	struct tally t;

	assert_int_equal(snapfs_catalog_get(&c1), 0);
	wait_stale();
	fail_discovery(2);
	assert_int_equal(served(), 1);
	assert_true(wait_fake(discovery_warnings_reach, 1, PROMPT_MS));
	t = tally();
	assert_int_equal(t.failed, 1);
	assert_int_equal(t.threads, 1);

	/* Gets all along, until the retry is published. */
	until = now_us() + (int64_t)(PROMPT_MS + cache_ms) * 1000;
	while ((n = served()) != 3 && now_us() < until) {
		if (n != 1)
			wrong++;
		sleep_ms(2);
	}
	assert_int_equal(n, 3);
	assert_int_equal(wrong, 0);
	/* The retry came no sooner than a cache time after the failure. */
	assert_quiet_after(2);
	assert_int_equal(threads_before_end(3), 2);
	assert_int_equal(tally().discovery_warnings, 1);
	snapfs_catalog_put(c1);
	assert_no_anomaly();
}

/* No thread: the previous catalog, a warning, and another try at the next
 * get. */
static void test_no_thread_serves_previous(void **state UNUSED)
{
	struct tally t;

	assert_int_equal(served(), 1);
	wait_stale();
	pthread_mutex_lock(&fake.lock);
	fake.thread_error = EAGAIN;
	pthread_mutex_unlock(&fake.lock);
	assert_int_equal(served(), 1);
	assert_int_equal(served(), 1);
	t = tally();
	assert_int_equal(t.threads, 2);
	assert_int_equal(t.thread_warnings, 2);
	assert_int_equal(t.lists, 1);

	pthread_mutex_lock(&fake.lock);
	fake.thread_error = 0;
	pthread_mutex_unlock(&fake.lock);
	assert_true(wait_served(2, PROMPT_MS));
	assert_int_equal(threads_before_end(2), 3);
	assert_served_quietly(2);
	assert_no_anomaly();
}

/* ---- -o cache=0 ------------------------------------------------------------ */

static void test_cache_zero_discovers_at_every_get(void **state UNUSED)
{
	struct snapfs_catalog *c = NULL;
	struct tally t;

	for (unsigned i = 1; i <= 5; i++) {
		assert_int_equal(snapfs_catalog_get(&c), 0);
		assert_int_equal(gen(c), i);
		assert_int_equal(tally().lists, i);
		assert_true(ran_on(i, pthread_self()));
		snapfs_catalog_put(c);
	}
	/* A failure: the previous catalog, with a warning; the next get asks
	 * again. */
	fail_discovery(6);
	assert_int_equal(snapfs_catalog_get(&c), 0);
	assert_int_equal(gen(c), 5);
	snapfs_catalog_put(c);
	assert_int_equal(tally().discovery_warnings, 1);
	assert_int_equal(served(), 7);
	t = tally();
	assert_int_equal(t.lists, 7);
	assert_int_equal(t.threads, 0);
	assert_no_anomaly();
}

/* ---- resolve: the one guest an open makes a set of ------------------------- */

/* The open's guest is discovered again, alone: one lvs and one libvirt
 * lookup by its UUID and name, no listing of the host and no live
 * partition table; the result keeps the directory name it was listed by,
 * and the shared catalog stays as it was. */
static void test_resolve_one_guest(void **state UNUSED)
{
	struct snapfs_catalog *listed = NULL, *c = NULL;
	struct tally t;
	unsigned opens;

	assert_int_equal(snapfs_catalog_get(&listed), 0);
	assert_int_equal(gen(listed), 1);
	opens = tally().opens;
	assert_int_equal(snapfs_catalog_resolve(&listed->guest[0], &c), 0);
	assert_int_equal(c->n, 1);
	assert_string_equal(c->guest[0].dir, "gen-1");
	assert_string_equal(c->guest[0].name, "gen-2");
	assert_int_equal(c->guest[0].ndisks, 1);
	assert_string_equal(c->guest[0].disk[0].lv.lv, "lv-2");
	assert_int_equal(c->guest[0].disk[0].parts.n, 0);
	t = tally();
	assert_int_equal(t.lists, 2);
	assert_int_equal(t.guest_lists, 1);
	assert_int_equal(t.opens, opens);
	assert_int_equal(t.threads, 0);
	pthread_mutex_lock(&fake.lock);
	assert_int_equal(fake.guest_resolves, 1);
	assert_string_equal(fake.resolved_uuid, "uuid-1");
	assert_string_equal(fake.resolved_name, "gen-1");
	pthread_mutex_unlock(&fake.lock);
	assert_int_equal(served(), 1);
	snapfs_catalog_put(c);
	snapfs_catalog_put(listed);
	assert_no_anomaly();
}

/* A guest undefined since the listing, or a libvirt that fails: the
 * open's error, and listings keep what they had. */
static void test_resolve_gone_or_failing(void **state UNUSED)
{
	struct snapfs_catalog *listed = NULL, *c = NULL;

	assert_int_equal(snapfs_catalog_get(&listed), 0);
	pthread_mutex_lock(&fake.lock);
	fake.gone = true;
	pthread_mutex_unlock(&fake.lock);
	assert_int_equal(snapfs_catalog_resolve(&listed->guest[0], &c), -ENOENT);
	assert_null(c);
	pthread_mutex_lock(&fake.lock);
	fake.gone = false;
	pthread_mutex_unlock(&fake.lock);
	fail_discovery(3);
	assert_int_equal(snapfs_catalog_resolve(&listed->guest[0], &c), -ECONNREFUSED);
	assert_null(c);
	assert_int_equal(served(), 1);
	assert_int_equal(tally().lists, 3);
	snapfs_catalog_put(listed);
	assert_no_anomaly();
}

/* An open does not wait for a background discovery of the whole host. */
struct resolver {
	pthread_t thread;
	const struct snapfs_guest *seen;
	struct snapfs_catalog *c;
	int rc;
	bool done; /* under fake.lock */
};

static void *resolve_main(void *arg)
{
	struct resolver *r = arg;
	struct snapfs_catalog *c = NULL;
	int rc = snapfs_catalog_resolve(r->seen, &c);

	pthread_mutex_lock(&fake.lock);
	r->c = c;
	r->rc = rc;
	r->done = true;
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	return NULL;
}

static struct resolver resolver;

static bool resolved(unsigned unused UNUSED)
{
	return resolver.done;
}

static void test_resolve_beside_a_held_discovery(void **state UNUSED)
{
	struct resolver *r = &resolver; /* static: a thread may outlive a failed assertion */
	struct snapfs_catalog *listed = NULL;
	bool early;

	memset(r, 0, sizeof(*r));
	assert_int_equal(snapfs_catalog_get(&listed), 0);
	wait_stale();
	hold(2);
	assert_int_equal(served(), 1); /* starts discovery 2, held */
	assert_true(wait_fake(is_held, 0, PROMPT_MS));
	r->seen = &listed->guest[0];
	spawn(&r->thread, resolve_main, r);
	early = wait_fake(resolved, 0, PROMPT_MS);
	release();
	pthread_join(r->thread, NULL);
	assert_true(early);
	assert_int_equal(r->rc, 0);
	assert_string_equal(r->c->guest[0].name, "gen-3");
	snapfs_catalog_put(r->c);
	assert_true(wait_served(2, PROMPT_MS));
	snapfs_catalog_put(listed);
	assert_string_equal(tally().anomaly, "");
	assert_false(tally().hold_timed_out);
}

/* Make device-mapper vouch (or not) for the listed LVs, and give the guest
 * extra_disks disks on LVs the listing does not hold. */
static void set_still_there(bool yes, unsigned extra_disks)
{
	pthread_mutex_lock(&fake.lock);
	fake.still_there = yes;
	fake.extra_disks = extra_disks;
	pthread_mutex_unlock(&fake.lock);
}

/* Resolve seen again with device-mapper vouching (still) or not and with
 * extra_disks disks on LVs the listing does not hold: its first disk must
 * get lv, after lists lvs reports in all.  The guest resolutions so far. */
static unsigned resolve_as(const struct snapfs_guest *seen, bool still, unsigned extra_disks,
			   const char *lv, unsigned lists)
{
	struct snapfs_catalog *c = NULL;
	unsigned resolves;

	set_still_there(still, extra_disks);
	assert_int_equal(snapfs_catalog_resolve(seen, &c), 0);
	assert_string_equal(c->guest[0].dir, seen->dir);
	assert_string_equal(c->guest[0].disk[0].lv.lv, lv);
	assert_int_equal(tally().lists, lists);
	snapfs_catalog_put(c);
	pthread_mutex_lock(&fake.lock);
	resolves = fake.guest_resolves;
	pthread_mutex_unlock(&fake.lock);
	return resolves;
}

static void test_resolve_without_lvs(void **state UNUSED)
{
	struct snapfs_catalog *listed = NULL;

	assert_int_equal(snapfs_catalog_get(&listed), 0);
	assert_string_equal(listed->guest[0].dir, "gen-1");
	/* Device-mapper vouches for the listed LV: no lvs, one resolution. */
	assert_int_equal(resolve_as(&listed->guest[0], true, 0, "lv-1", 1), 1);
	pthread_mutex_lock(&fake.lock);
	assert_int_equal(fake.still_asked, 1);
	pthread_mutex_unlock(&fake.lock);
	/* A disk now on an LV the listing does not hold: LVM is asked, and the
	 * guest resolved again against its report. */
	assert_int_equal(resolve_as(&listed->guest[0], true, 1, "lv-2", 2), 3);
	/* Renamed, removed or swapped: device-mapper says no, LVM is asked. */
	resolve_as(&listed->guest[0], false, 0, "lv-3", 3);
	snapfs_catalog_put(listed);
	assert_string_equal(tally().anomaly, "");
}

/* An LVM source: the guest is its LV, found again by VG/LV. */
static void test_resolve_lvm_source(void **state UNUSED)
{
	static char vg0[] = "vg0";
	static char *vgs[] = { vg0, NULL };
	struct snapfs_source src = { .type = SNAPFS_SRC_LVM, .vgs = vgs };
	struct snapfs_catalog *listed = NULL, *c = NULL;
	struct snapfs_guest seen;

	snapfs_catalog_shutdown();
	pthread_mutex_lock(&fake.lock);
	fake.lvm_source = true;
	pthread_mutex_unlock(&fake.lock);
	assert_int_equal(snapfs_catalog_init(&src, FOREVER_MS / 1000.0), 0);
	assert_int_equal(snapfs_catalog_get(&listed), 0);
	assert_int_equal(listed->n, 1);
	assert_string_equal(listed->guest[0].key, "vg0/lv-1");
	/* Its device still named so: no lvs. */
	set_still_there(true, 0);
	assert_int_equal(snapfs_catalog_resolve(&listed->guest[0], &c), 0);
	assert_string_equal(c->guest[0].disk[0].lv.lv, "lv-1");
	assert_int_equal(tally().lists, 1);
	snapfs_catalog_put(c);
	set_still_there(false, 0);
	/* Discovery 2 lists lv-2 only: lv-1 is gone. */
	assert_int_equal(snapfs_catalog_resolve(&listed->guest[0], &c), -ENOENT);
	/* A guest whose LV is listed. */
	seen = listed->guest[0];
	seen.key = (char *)"vg0/lv-3";
	assert_int_equal(snapfs_catalog_resolve(&seen, &c), 0);
	assert_string_equal(c->guest[0].dir, listed->guest[0].dir);
	assert_string_equal(c->guest[0].disk[0].lv.lv, "lv-3");
	snapfs_catalog_put(c);
	snapfs_catalog_put(listed);
	pthread_mutex_lock(&fake.lock);
	assert_int_equal(fake.guest_lists, 0);
	assert_int_equal(fake.guest_resolves, 0);
	assert_int_equal(fake.list_frees, fake.lists);
	pthread_mutex_unlock(&fake.lock);
	/* Not assert_no_anomaly: no libvirt fake ends these discoveries. */
	assert_string_equal(tally().anomaly, "");
}

/* ---- shutdown --------------------------------------------------------------- */

/* Static in the test: a thread may outlive a failed assertion. */
struct releaser {
	pthread_t thread;
	int64_t released_us; /* under fake.lock */
};

static void *release_main(void *arg)
{
	struct releaser *r = arg;

	sleep_ms(300);
	pthread_mutex_lock(&fake.lock);
	r->released_us = now_us();
	fake.release = true;
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	return NULL;
}

static void test_shutdown_waits_for_background_discovery(void **state UNUSED)
{
	static struct releaser r;
	int64_t returned_us;
	struct tally t;

	memset(&r, 0, sizeof(r));

	assert_int_equal(served(), 1);
	wait_stale();
	hold(2);
	assert_int_equal(served(), 1);
	assert_true(wait_fake(is_held, 0, PROMPT_MS));
	spawn(&r.thread, release_main, &r);
	snapfs_catalog_shutdown();
	returned_us = now_us();
	pthread_join(r.thread, NULL);
	assert_true(r.released_us > 0);
	assert_true(returned_us >= r.released_us);
	t = tally();
	assert_int_equal(t.guest_lists, 2); /* the held discovery ended */
	assert_int_equal(t.threads, 1);
	assert_no_anomaly();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define TEST(f, cache)                                                                   \
	cmocka_unit_test_prestate_setup_teardown(f, setup, teardown, (void *)&(cache))
		TEST(test_first_get_discovers_in_caller, cache_forever),
		TEST(test_first_get_failure_is_returned, cache_forever),
		TEST(test_stale_get_serves_previous_while_discovery_held, cache_short),
		TEST(test_one_discovery_for_many_stale_gets, cache_short),
		TEST(test_failed_discovery_keeps_previous_a_cache_time, cache_short),
		TEST(test_no_thread_serves_previous, cache_short),
		TEST(test_cache_zero_discovers_at_every_get, cache_none),
		TEST(test_resolve_one_guest, cache_forever),
		TEST(test_resolve_gone_or_failing, cache_forever),
		TEST(test_resolve_beside_a_held_discovery, cache_short),
		TEST(test_resolve_without_lvs, cache_forever),
		TEST(test_resolve_lvm_source, cache_forever),
		TEST(test_shutdown_waits_for_background_discovery, cache_short),
#undef TEST
	};
	struct sigaction sa = { .sa_handler = watchdog };

	sigaction(SIGALRM, &sa, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
