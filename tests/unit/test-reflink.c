/* Unit tests for file-backed disks: -o reflink_reserve= parsing, and the
 * snapshot sets of guests on files (src/snapset.c) with the clone faked at
 * link time.  The Makefile links this program with
 *   -Wl,--wrap=snapfs_reflink_clone -Wl,--wrap=snapfs_reflink_space
 *   -Wl,--wrap=snapfs_log
 * so a "clone" is a memfd holding a copy of the origin's bytes, the free
 * space of its filesystem is what the test says, and log lines are kept
 * for the tests to read. */
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapfs.h"

#define UNUSED __attribute__((unused))
#define MIB (1024 * 1024ULL)
#define PROMPT_MS 5000

int __wrap_snapfs_reflink_clone(const char *path, dev_t dev, ino_t ino, int *clone_fd,
				int *fd, uint64_t *size);
int __wrap_snapfs_reflink_space(int fd, uint64_t *free_bytes, uint64_t *total_bytes);
void __wrap_snapfs_log(enum snapfs_log_level level, const char *fmt, ...);

/* ---- the fakes ---------------------------------------------------------- */

static struct {
	pthread_mutex_t lock;
	unsigned clones;            /* calls of snapfs_reflink_clone */
	int clone_err;              /* its answer, 0: a memfd */
	int last_clone_fd;          /* a dup of the last clone's read-write fd */
	char last_path[4096];
	uint64_t free_bytes, total; /* what every filesystem has */
	char log[16384];
} fake = { .lock = PTHREAD_MUTEX_INITIALIZER, .last_clone_fd = -1 };

int __wrap_snapfs_reflink_clone(const char *path, dev_t dev, ino_t ino, int *clone_fd,
				int *fd, uint64_t *size)
{
	struct stat st;
	char buf[4096];
	ssize_t n;
	int origin, mfd;

	pthread_mutex_lock(&fake.lock);
	fake.clones++;
	snprintf(fake.last_path, sizeof(fake.last_path), "%s", path);
	pthread_mutex_unlock(&fake.lock);
	*clone_fd = *fd = -1;
	if (fake.clone_err)
		return fake.clone_err;
	origin = open(path, O_RDONLY | O_CLOEXEC);
	if (origin < 0 || fstat(origin, &st) < 0)
		return -errno;
	if (st.st_dev != dev || st.st_ino != ino) {
		close(origin);
		return -ESTALE;
	}
	mfd = memfd_create("snapfs-test-clone", MFD_CLOEXEC);
	while ((n = read(origin, buf, sizeof(buf))) > 0)
		if (write(mfd, buf, (size_t)n) != n)
			abort();
	close(origin);
	*clone_fd = mfd;
	*fd = dup(mfd);
	*size = (uint64_t)st.st_size;
	pthread_mutex_lock(&fake.lock);
	if (fake.last_clone_fd >= 0)
		close(fake.last_clone_fd);
	fake.last_clone_fd = dup(mfd);
	pthread_mutex_unlock(&fake.lock);
	return 0;
}

int __wrap_snapfs_reflink_space(int fd UNUSED, uint64_t *free_bytes, uint64_t *total_bytes)
{
	pthread_mutex_lock(&fake.lock);
	*free_bytes = fake.free_bytes;
	*total_bytes = fake.total;
	pthread_mutex_unlock(&fake.lock);
	return 0;
}

void __wrap_snapfs_log(enum snapfs_log_level level UNUSED, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&fake.lock);
	size_t len = strlen(fake.log);

	va_start(ap, fmt);
	vsnprintf(fake.log + len, sizeof(fake.log) - len, fmt, ap);
	va_end(ap);
	len = strlen(fake.log);
	if (len + 1 < sizeof(fake.log))
		strcpy(fake.log + len, "\n");
	pthread_mutex_unlock(&fake.lock);
}

static bool logged(const char *words)
{
	pthread_mutex_lock(&fake.lock);
	bool found = strstr(fake.log, words) != NULL;

	pthread_mutex_unlock(&fake.lock);
	return found;
}

static void set_space(uint64_t free_bytes, uint64_t total)
{
	pthread_mutex_lock(&fake.lock);
	fake.free_bytes = free_bytes;
	fake.total = total;
	pthread_mutex_unlock(&fake.lock);
}

/* ---- a guest on one file --------------------------------------------------- */

struct fixture {
	char path[64];
	struct snapfs_guest g;
};

static void make_guest(struct fixture *fx, const char *reserve)
{
	struct snapfs_snapset_config cfg = {
		.cow_size = "20%ORIGIN",
		.owner = "snapfs_owner_0123456789abcdef",
		.freeze = SNAPFS_FREEZE_OFF,
		.reserve_text = reserve,
	};
	struct stat st;
	int fd;

	assert_int_equal(snapfs_reserve_parse(reserve, &cfg.reserve), 0);
	snprintf(fx->path, sizeof(fx->path), "/tmp/snapfs-test-reflink.XXXXXX");
	fd = mkstemp(fx->path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	assert_int_equal(pwrite(fd, "origin", 6, 4096), 6);
	assert_int_equal(fstat(fd, &st), 0);
	close(fd);
	memset(&fx->g, 0, sizeof(fx->g));
	fx->g.name = strdup("web");
	fx->g.key = strdup("web");
	snprintf(fx->g.dir, sizeof(fx->g.dir), "web");
	assert_int_equal(snapfs_guest_add_file_disk(&fx->g, fx->path, &st, "vda", "raw", 512, false),
			 0);
	assert_int_equal(fx->g.ndisks, 1);
	assert_int_equal(fx->g.disk[0].kind, SNAPFS_ORIGIN_FILE);
	assert_int_equal(fx->g.disk[0].size, 1 << 20);
	pthread_mutex_lock(&fake.lock);
	fake.clones = 0;
	fake.clone_err = 0;
	fake.log[0] = '\0';
	pthread_mutex_unlock(&fake.lock);
	set_space(800 * MIB, 1000 * MIB);
	snapfs_snapset_init(&cfg);
}

static void drop_guest(struct fixture *fx)
{
	snapfs_snapset_shutdown();
	assert_int_equal(snapfs_snapset_count(), 0);
	unlink(fx->path);
	free(fx->g.disk[0].path);
	free(fx->g.disk);
	free(fx->g.name);
	free(fx->g.key);
}

/* Wait (bounded) until d's reads fail. */
static bool wait_dropped(struct snapfs_snapset *s, const struct snapfs_snapdisk *d)
{
	for (int i = 0; i < PROMPT_MS / 10; i++) {
		if (snapfs_snapset_check(s, d) == -EIO)
			return true;
		usleep(10000);
	}
	return false;
}

static uint64_t size_of_fd(int fd)
{
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	return (uint64_t)st.st_size;
}

/* ---- the tests ------------------------------------------------------------- */

static void test_reserve_parse(void **state UNUSED)
{
	static const struct {
		const char *text;
		uint64_t bytes;
		unsigned percent;
	} good[] = {
		{ "5%", 0, 5 },       { "0%", 0, 0 },        { "100%", 0, 100 },
		{ "0", 0, 0 },        { "1048576", 1 << 20, 0 }, { "512M", 512 * MIB, 0 },
		{ "2G", 2048 * MIB, 0 }, { "2g", 2048 * MIB, 0 }, { "1T", 1ULL << 40, 0 },
		{ "64k", 64 << 10, 0 }, { "2GiB", 2048 * MIB, 0 }, { "3MB", 3 * MIB, 0 },
	};
	static const char *const bad[] = {
		"", "%", "-1", "101%", "5%%", "1.5G", "G", "2X", "2GB2", " 5%", "5 %",
		"99999999999999999999", "20000000000T", "5%x", "0x10",
	};
	struct snapfs_reserve r;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(snapfs_reserve_parse(good[i].text, &r), 0);
		assert_int_equal(r.bytes, good[i].bytes);
		assert_int_equal(r.percent, good[i].percent);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (snapfs_reserve_parse(bad[i], &r) != -EINVAL)
			fail_msg("reflink_reserve=\"%s\" accepted", bad[i]);
	assert_int_equal(snapfs_reserve_parse(NULL, &r), -EINVAL);
}

static void test_reserve_bytes(void **state UNUSED)
{
	struct snapfs_reserve r = { .percent = 5 };

	assert_int_equal(snapfs_reserve_bytes(&r, 1000 * MIB), 50 * MIB);
	assert_int_equal(snapfs_reserve_bytes(&r, 0), 0);
	assert_int_equal(snapfs_reserve_bytes(&r, 99), 4);
	/* No overflow at the top of the range. */
	r.percent = 100;
	assert_int_equal(snapfs_reserve_bytes(&r, UINT64_MAX), UINT64_MAX);
	r.percent = 0;
	r.bytes = 3 * MIB;
	assert_int_equal(snapfs_reserve_bytes(&r, 1000 * MIB), 3 * MIB);
}

/* One clone per disk per set, read from; the last release closes it. */
static void test_clone_lifecycle(void **state UNUSED)
{
	struct fixture fx;
	struct snapfs_snapset *s, *s2;
	const struct snapfs_snapdisk *d;
	char buf[6];

	make_guest(&fx, "5%");
	assert_int_equal(snapfs_snapset_acquire(&fx.g, &s), 0);
	assert_int_equal(snapfs_snapset_acquire(&fx.g, &s2), 0);
	assert_ptr_equal(s, s2);
	assert_int_equal(fake.clones, 1);
	assert_string_equal(fake.last_path, fx.path);
	d = snapfs_snapset_disk(s, "vda.raw");
	assert_non_null(d);
	assert_int_equal(d->kind, SNAPFS_ORIGIN_FILE);
	assert_int_equal(d->size, 1 << 20);
	assert_int_equal(pread(d->fd, buf, 6, 4096), 6);
	assert_memory_equal(buf, "origin", 6);
	assert_int_equal(snapfs_snapset_check(s, d), 0);
	assert_true(logged("guest web: snapshot set created in "));
	assert_true(logged("vda.raw=reflink:"));

	struct snapfs_held held;

	assert_int_equal(snapfs_snapset_held("web", "vda.raw", 0, &held), 0);
	assert_non_null(strstr(held.snap, "unnamed reflink clone on "));
	char *report = snapfs_snapset_report();

	assert_non_null(strstr(report, "snapshot=reflink"));
	assert_non_null(strstr(report, "free=800MiB reserve=50MiB clone=held"));
	free(report);

	/* The origin changes: the held set does not. */
	int fd = open(fx.path, O_WRONLY);

	assert_int_equal(pwrite(fd, "CHANGE", 6, 4096), 6);
	close(fd);
	assert_int_equal(pread(d->fd, buf, 6, 4096), 6);
	assert_memory_equal(buf, "origin", 6);
	snapfs_snapset_release(s2);
	snapfs_snapset_release(s);
	assert_int_equal(snapfs_snapset_count(), 0);
	assert_true(logged("guest web: snapshot set removed in "));
	drop_guest(&fx);
}

/* Free space under the reserve: the clone is dropped (its blocks given
 * back), reads fail from then on, the log says who and why; after the
 * release, a new open with room again clones again. */
static void test_drop_under_reserve(void **state UNUSED)
{
	struct fixture fx;
	struct snapfs_snapset *s;
	const struct snapfs_snapdisk *d;

	make_guest(&fx, "100M");
	assert_int_equal(snapfs_snapset_acquire(&fx.g, &s), 0);
	d = snapfs_snapset_disk(s, "vda.raw");
	assert_int_equal(size_of_fd(fake.last_clone_fd), 1 << 20);
	set_space(101 * MIB, 1000 * MIB);
	usleep(300 * 1000);
	assert_int_equal(snapfs_snapset_check(s, d), 0);
	set_space(99 * MIB, 1000 * MIB);
	assert_true(wait_dropped(s, d));
	/* Given back at once, not when the reader lets go. */
	assert_int_equal(size_of_fd(fake.last_clone_fd), 0);
	for (int i = 0; i < 100 && !logged("dropped"); i++)
		usleep(10000);
	assert_true(logged("guest web disk vda.raw: reflink clone of "));
	assert_true(logged("dropped: 99 MiB free on "));
	assert_true(logged("under the reserve of 100 MiB (-o reflink_reserve=100M)"));
	char *report = snapfs_snapset_report();

	assert_non_null(strstr(report, "clone=dropped"));
	free(report);

	/* Still short: a new open is refused before anything is cloned. */
	snapfs_snapset_release(s);
	assert_int_equal(snapfs_snapset_count(), 0);
	unsigned clones = fake.clones;

	assert_int_equal(snapfs_snapset_acquire(&fx.g, &s), -ENOSPC);
	assert_int_equal(fake.clones, clones);
	assert_true(logged("guest web disk vda: not cloned: only 99 MiB free on "));
	/* Room again. */
	set_space(500 * MIB, 1000 * MIB);
	assert_int_equal(snapfs_snapset_acquire(&fx.g, &s), 0);
	assert_int_equal(fake.clones, clones + 1);
	d = snapfs_snapset_disk(s, "vda.raw");
	assert_int_equal(snapfs_snapset_check(s, d), 0);
	snapfs_snapset_release(s);
	drop_guest(&fx);
}

/* A lingering set whose clone was dropped is never handed out again. */
static void test_dropped_lingering_set_replaced(void **state UNUSED)
{
	struct snapfs_snapset_config cfg = {
		.cow_size = "20%ORIGIN",
		.owner = "snapfs_owner_0123456789abcdef",
		.freeze = SNAPFS_FREEZE_OFF,
		.linger = 60,
		.reserve_text = "10%",
	};
	struct fixture fx;
	struct snapfs_snapset *s, *s2;
	const struct snapfs_snapdisk *d;

	make_guest(&fx, "10%");
	snapfs_snapset_shutdown();
	assert_int_equal(snapfs_reserve_parse("10%", &cfg.reserve), 0);
	snapfs_snapset_init(&cfg);
	assert_int_equal(snapfs_snapset_acquire(&fx.g, &s), 0);
	snapfs_snapset_release(s);
	assert_int_equal(snapfs_snapset_count(), 1);
	d = snapfs_snapset_disk(s, "vda.raw");
	set_space(10 * MIB, 1000 * MIB);
	assert_true(wait_dropped(s, d));
	set_space(900 * MIB, 1000 * MIB);
	assert_int_equal(snapfs_snapset_acquire(&fx.g, &s2), 0);
	d = snapfs_snapset_disk(s2, "vda.raw");
	assert_int_equal(snapfs_snapset_check(s2, d), 0);
	assert_int_equal(fake.clones, 2);
	snapfs_snapset_release(s2);
	drop_guest(&fx);
}

/* A clone that fails, or a file swapped since the listing: no set, and
 * the log names guest, disk and why. */
static void test_clone_fails(void **state UNUSED)
{
	struct fixture fx;
	struct snapfs_snapset *s;

	make_guest(&fx, "5%");
	fake.clone_err = -EOPNOTSUPP;
	assert_int_equal(snapfs_snapset_acquire(&fx.g, &s), -EOPNOTSUPP);
	assert_true(logged("guest web disk vda: reflink clone of "));
	assert_true(logged("failed: Operation not supported"));
	assert_int_equal(snapfs_snapset_count(), 0);
	fake.clone_err = 0;
	/* Another file put in its place (the first kept, so that its inode
	 * number is not reused). */
	char aside[80];

	snprintf(aside, sizeof(aside), "%s.aside", fx.path);
	assert_int_equal(rename(fx.path, aside), 0);
	int fd = open(fx.path, O_CREAT | O_WRONLY | O_EXCL, 0600);

	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(snapfs_snapset_acquire(&fx.g, &s), -ESTALE);
	assert_true(logged("another file has its name since it was listed"));
	unlink(aside);
	drop_guest(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reserve_parse),
		cmocka_unit_test(test_reserve_bytes),
		cmocka_unit_test(test_clone_lifecycle),
		cmocka_unit_test(test_drop_under_reserve),
		cmocka_unit_test(test_dropped_lingering_set_replaced),
		cmocka_unit_test(test_clone_fails),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
