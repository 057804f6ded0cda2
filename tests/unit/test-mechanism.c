/* Unit tests of the seam between the snapshot-set lifecycle (snapset.c) and
 * its mechanisms: the mechanisms are faked at that boundary.  The Makefile
 * links this program with -Wl,--wrap=snapfs_mechanism_list and
 * -Wl,--wrap=snapfs_mechanism_of, so the lifecycle sees one fake mechanism
 * that records its calls, serves each disk from a memfd, fails on request
 * and drops its disks when the test asks its watch to.
 *
 * What must hold: all of a set's disks are taken in one call (one instant,
 * one backup job); a take that fails leaves nothing; each disk taken is
 * removed once; a dropped disk fails its reads with one log line; the
 * watcher looks at held disks without holding a set back from removal, and
 * without restarting a lingering set's time. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapfs.h"

#define UNUSED __attribute__((unused))
#define DISK_SIZE (1 << 20)

const struct snapfs_mechanism *const *__wrap_snapfs_mechanism_list(void);
const struct snapfs_mechanism *__wrap_snapfs_mechanism_of(enum snapfs_origin_kind kind, bool direct);

static struct {
	pthread_mutex_t lock;
	unsigned takes, taken, opens, removes, watches;
	size_t last_take_n;
	int fail_take;         /* -errno for the next take */
	bool drop_on_watch;    /* the next watch drops every disk it sees */
	unsigned bytes_dropped; /* calls of the config's bytes_dropped */
	char dropped_dir[64];
} fake = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void on_bytes_dropped(const char *dir)
{
	pthread_mutex_lock(&fake.lock);
	snprintf(fake.dropped_dir, sizeof(fake.dropped_dir), "%s", dir);
	pthread_mutex_unlock(&fake.lock);
	__atomic_add_fetch(&fake.bytes_dropped, 1, __ATOMIC_SEQ_CST);
}

static int fake_plan(const struct snapfs_guest *g, const struct snapfs_disk *o,
		     const struct snapfs_lv *lv, struct snapfs_snapdisk *d)
{
	return (d->origin_path = strdup(o->path)) ? 0 : -ENOMEM;
}

static int fake_take(const struct snapfs_guest *g, struct snapfs_snapdisk **ds, size_t n)
{
	pthread_mutex_lock(&fake.lock);
	fake.takes++;
	fake.last_take_n = n;
	int rc = fake.fail_take;

	fake.fail_take = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		ds[i]->taken = true;
		fake.taken++;
	}
	pthread_mutex_unlock(&fake.lock);
	return rc;
}

static int fake_open(const struct snapfs_guest *g, struct snapfs_snapdisk *d)
{
	int fd = memfd_create("snapfs-test-mech", MFD_CLOEXEC);

	if (fd < 0 || ftruncate(fd, DISK_SIZE) < 0)
		return -errno;
	d->fd = fd;
	d->size = DISK_SIZE;
	d->allocated = SNAPFS_ALL_DATA;
	__atomic_add_fetch(&fake.opens, 1, __ATOMIC_SEQ_CST);
	return 0;
}

static int fake_check(const struct snapfs_snapdisk *d, char *why, size_t len)
{
	if (!snapfs_snapdisk_dropped(d))
		return 0;
	snprintf(why, len, "fake dropped");
	return -EIO;
}

static void fake_remove(struct snapfs_snapdisk *d)
{
	__atomic_add_fetch(&fake.removes, 1, __ATOMIC_SEQ_CST);
}

static void fake_where(const struct snapfs_snapdisk *d, char *out, size_t len)
{
	snprintf(out, len, "fake:%s", d->origin_path);
}

static void fake_report(FILE *f, const struct snapfs_snapdisk *d)
{
	fprintf(f, "  disk: %s fake\n", d->file);
}

static void fake_watch(struct snapfs_snapdisk *const *ds, size_t n)
{
	bool drop = __atomic_exchange_n(&fake.drop_on_watch, false, __ATOMIC_SEQ_CST);

	__atomic_add_fetch(&fake.watches, 1, __ATOMIC_SEQ_CST);
	for (size_t i = 0; drop && i < n; i++)
		snapfs_snapdisk_drop(ds[i]);
}

static const struct snapfs_mechanism fake_mech = {
	.name = "fake",
	.plan = fake_plan,
	.take = fake_take,
	.open = fake_open,
	.check = fake_check,
	.remove = fake_remove,
	.where = fake_where,
	.report = fake_report,
	.watch = fake_watch,
};
static const struct snapfs_mechanism *const fake_list[] = { &fake_mech, NULL };

const struct snapfs_mechanism *const *__wrap_snapfs_mechanism_list(void)
{
	return fake_list;
}

const struct snapfs_mechanism *__wrap_snapfs_mechanism_of(enum snapfs_origin_kind kind, bool direct)
{
	return &fake_mech;
}

/* ---- fixtures ------------------------------------------------------------------ */

static void start(unsigned linger)
{
	struct snapfs_snapset_config cfg = {
		.cow_size = "20%ORIGIN",
		.owner = "snapfs_owner_0123456789abcdef",
		.freeze = SNAPFS_FREEZE_OFF,
		.linger = linger,
		.reserve_text = "5%",
		.bytes_dropped = on_bytes_dropped,
	};

	memset((char *)&fake + sizeof(fake.lock), 0, sizeof(fake) - sizeof(fake.lock));
	snapfs_snapset_init(&cfg);
}

/* A guest of three backup disks. */
static struct snapfs_guest *guest(void)
{
	struct snapfs_guest *g = calloc(1, sizeof(*g));
	const char *t[] = { "vda", "vdb", "vdc" };

	assert_non_null(g);
	g->name = strdup("web");
	g->key = strdup("uuid-web");
	snprintf(g->dir, sizeof(g->dir), "web");
	g->running = true;
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(snapfs_guest_add_backup_disk(g, "/images/web.img", DISK_SIZE,
							      false, t[i], 512),
				 0);
	return g;
}

static bool wait_until(unsigned *counter, unsigned at_least)
{
	for (int i = 0; i < 500; i++) {
		if (__atomic_load_n(counter, __ATOMIC_SEQ_CST) >= at_least)
			return true;
		usleep(10000);
	}
	return false;
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_one_take_for_all_disks(void **state UNUSED)
{
	struct snapfs_guest *g = guest();
	struct snapfs_snapset *s, *s2;

	start(0);
	assert_int_equal(snapfs_snapset_acquire(g, &s), 0);
	assert_int_equal(snapfs_snapset_acquire(g, &s2), 0);
	assert_ptr_equal(s, s2);
	assert_int_equal(fake.takes, 1);
	assert_int_equal(fake.last_take_n, 3);
	assert_int_equal(fake.opens, 3);
	const struct snapfs_snapdisk *d = snapfs_snapset_disk(s, "vdb.raw");

	assert_non_null(d);
	assert_ptr_equal(d->mech, &fake_mech);
	assert_int_equal(d->view.kind, SNAPFS_IMAGE_DEVICE);
	assert_int_equal(snapfs_snapset_check(s, d), 0);
	snapfs_snapset_release(s2);
	assert_int_equal(fake.removes, 0);
	snapfs_snapset_release(s);
	/* linger=0: gone at the last release, whatever the watcher does. */
	assert_int_equal(snapfs_snapset_count(), 0);
	assert_int_equal(fake.removes, 3);
	snapfs_snapset_shutdown();
	snapfs_guests_free(g, 1);
}

static void test_failed_take_leaves_nothing(void **state UNUSED)
{
	struct snapfs_guest *g = guest();
	struct snapfs_snapset *s;

	start(0);
	fake.fail_take = -EBUSY;
	assert_int_equal(snapfs_snapset_acquire(g, &s), -EBUSY);
	assert_int_equal(snapfs_snapset_count(), 0);
	assert_int_equal(fake.opens, 0);
	assert_int_equal(fake.removes, 0);
	/* The next open tries again. */
	assert_int_equal(snapfs_snapset_acquire(g, &s), 0);
	assert_int_equal(fake.takes, 2);
	snapfs_snapset_release(s);
	assert_int_equal(fake.removes, 3);
	snapfs_snapset_shutdown();
	snapfs_guests_free(g, 1);
}

static void test_watch_drops_then_reads_fail(void **state UNUSED)
{
	struct snapfs_guest *g = guest();
	struct snapfs_snapset *s, *s2;

	start(60);
	assert_int_equal(snapfs_snapset_acquire(g, &s), 0);
	const struct snapfs_snapdisk *d = snapfs_snapset_disk(s, "vdc.raw");

	assert_true(wait_until(&fake.watches, 1));
	__atomic_store_n(&fake.drop_on_watch, true, __ATOMIC_SEQ_CST);
	unsigned seen = __atomic_load_n(&fake.watches, __ATOMIC_SEQ_CST);

	assert_true(wait_until(&fake.watches, seen + 1));
	assert_int_equal(snapfs_snapset_check(s, d), -EIO);
	/* The files' cached pages are dropped, once, for the guest's directory,
	 * so that reads reach the set and fail. */
	assert_true(wait_until(&fake.bytes_dropped, 1));
	pthread_mutex_lock(&fake.lock);
	assert_string_equal(fake.dropped_dir, g->dir);
	pthread_mutex_unlock(&fake.lock);
	/* The watcher no longer looks at dropped disks. */
	seen = __atomic_load_n(&fake.watches, __ATOMIC_SEQ_CST);
	usleep(300 * 1000);
	assert_int_equal(__atomic_load_n(&fake.watches, __ATOMIC_SEQ_CST), seen);
	assert_int_equal(__atomic_load_n(&fake.bytes_dropped, __ATOMIC_SEQ_CST), 1);
	/* A lingering set with a dropped disk is never handed out again. */
	snapfs_snapset_release(s);
	assert_int_equal(snapfs_snapset_acquire(g, &s2), 0);
	assert_int_equal(fake.takes, 2);
	assert_int_equal(fake.removes, 3);
	assert_int_equal(snapfs_snapset_check(s2, snapfs_snapset_disk(s2, "vdc.raw")), 0);
	snapfs_snapset_release(s2);
	snapfs_snapset_shutdown();
	assert_int_equal(fake.removes, 6);
	snapfs_guests_free(g, 1);
}

/* The watcher's looks do not restart a lingering set's time. */
static void test_linger_runs_out_while_watched(void **state UNUSED)
{
	struct snapfs_guest *g = guest();
	struct snapfs_snapset *s;

	start(1);
	assert_int_equal(snapfs_snapset_acquire(g, &s), 0);
	snapfs_snapset_release(s);
	assert_true(wait_until(&fake.removes, 3));
	assert_int_equal(snapfs_snapset_count(), 0);
	assert_true(fake.watches >= 1);
	snapfs_snapset_shutdown();
	snapfs_guests_free(g, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_take_for_all_disks),
		cmocka_unit_test(test_failed_take_leaves_nothing),
		cmocka_unit_test(test_watch_drops_then_reads_fail),
		cmocka_unit_test(test_linger_runs_out_while_watched),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
