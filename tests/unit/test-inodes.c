/* Unit tests for fs/inodes.c: the inode numbers the kernel holds for the
 * paths of the mount, counted by lookups and dropped by forgets. */
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

#include <cmocka.h>

#include "../../fs/snapfs-fuse.h"

#define UNUSED __attribute__((unused))

static int teardown(void **state UNUSED)
{
	snapfs_inode_free_all();
	return 0;
}

static fuse_ino_t ref(const char *path)
{
	fuse_ino_t ino = 0;

	assert_int_equal(snapfs_inode_ref(path, &ino), 0);
	assert_true(ino > FUSE_ROOT_ID);
	return ino;
}

static void assert_path(fuse_ino_t ino, const char *want)
{
	char path[SNAPFS_PATH_MAX];

	assert_int_equal(snapfs_inode_path(ino, path), 0);
	assert_string_equal(path, want);
}

static void assert_stale(fuse_ino_t ino)
{
	char path[SNAPFS_PATH_MAX];

	assert_int_equal(snapfs_inode_path(ino, path), -ESTALE);
}

static void test_root(void **state UNUSED)
{
	fuse_ino_t ino = 0;

	assert_int_equal(snapfs_inode_ref("/", &ino), 0);
	assert_int_equal(ino, FUSE_ROOT_ID);
	assert_path(FUSE_ROOT_ID, "/");
	snapfs_inode_forget(FUSE_ROOT_ID, 1000);
	assert_path(FUSE_ROOT_ID, "/");
	assert_int_equal(snapfs_inode_count(), 0);
}

/* The same number while the kernel holds one lookup, gone at the last
 * forget. */
static void test_counted(void **state UNUSED)
{
	fuse_ino_t a = ref("/g1"), b = ref("/g1/vda.raw");

	assert_int_not_equal(a, b);
	assert_int_equal(ref("/g1"), a);
	assert_int_equal(ref("/g1"), a);
	assert_int_equal(snapfs_inode_count(), 2);
	assert_path(a, "/g1");
	assert_path(b, "/g1/vda.raw");
	snapfs_inode_forget(a, 2);
	assert_path(a, "/g1");
	snapfs_inode_forget(a, 1);
	assert_stale(a);
	assert_path(b, "/g1/vda.raw");
	assert_int_equal(snapfs_inode_count(), 1);
	/* More forgets than lookups drop it too, and never touch another. */
	snapfs_inode_forget(b, 5);
	assert_stale(b);
	snapfs_inode_forget(b, 1);
	snapfs_inode_forget(12345, 1);
	assert_int_equal(snapfs_inode_count(), 0);
}

/* A number is never given to another path, even after it is forgotten:
 * the kernel may still send it in a request that raced the forget. */
/* A path keeps its number after the kernel forgot it (and in a later
 * mount: the number is the path's hash); a forgotten number is stale until
 * its path is looked up again; two paths have two numbers. */
static void test_stable(void **state UNUSED)
{
	fuse_ino_t a = ref("/g1"), b;

	snapfs_inode_forget(a, 1);
	assert_stale(a);
	b = ref("/g2");
	assert_true(b != a);
	assert_true(b > FUSE_ROOT_ID && b != 0xffffffffu);
	snapfs_inode_forget(b, 1);
	assert_int_equal(ref("/g1"), a);
	assert_path(a, "/g1");
	assert_int_equal(ref("/g2"), b);
	snapfs_inode_free_all();
	assert_int_equal(ref("/g2"), b);
}

static void test_too_long(void **state UNUSED)
{
	char path[SNAPFS_PATH_MAX + 10];
	fuse_ino_t ino = 0;

	memset(path, 'x', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	assert_int_equal(snapfs_inode_ref(path, &ino), -ENAMETOOLONG);
	path[SNAPFS_PATH_MAX - 1] = '\0';
	assert_int_equal(snapfs_inode_ref(path, &ino), 0);
	assert_path(ino, path);
	assert_int_equal(snapfs_inode_count(), 1);
}

/* The longest path that tree.c can resolve fits; one byte more does not. */
static void test_join(void **state UNUSED)
{
	char dir[SNAPFS_PATH_MAX], path[SNAPFS_PATH_MAX], name[SNAPFS_NAME_MAX + 2];

	assert_int_equal(snapfs_path_join("/", "g1", path), 0);
	assert_string_equal(path, "/g1");
	assert_int_equal(snapfs_path_join("/g1", "vda1.raw", path), 0);
	assert_string_equal(path, "/g1/vda1.raw");
	memset(name, 'n', SNAPFS_NAME_MAX);
	name[SNAPFS_NAME_MAX] = '\0';
	/* /GUEST/lvm/VG/LV, each name as long as names go. */
	assert_int_equal(snapfs_path_join("/", name, dir), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(snapfs_path_join(dir, name, path), 0);
		memcpy(dir, path, sizeof(dir));
	}
	assert_int_equal(strlen(path), SNAPFS_PATH_MAX - 1);
	name[1] = '\0';
	assert_int_equal(snapfs_path_join(dir, name, path), -ENAMETOOLONG);
}

/* Thousands of paths, every bucket shared: each keeps its own number. */
static void test_many(void **state UNUSED)
{
	enum { N = 20000 };
	fuse_ino_t *ino = calloc(N, sizeof(*ino));
	char path[64];

	assert_non_null(ino);
	for (int i = 0; i < N; i++) {
		snprintf(path, sizeof(path), "/guest%d/vd%c.raw", i / 3, 'a' + i % 3);
		ino[i] = ref(path);
	}
	assert_int_equal(snapfs_inode_count(), N);
	for (int i = 0; i < N; i++) {
		snprintf(path, sizeof(path), "/guest%d/vd%c.raw", i / 3, 'a' + i % 3);
		assert_path(ino[i], path);
		if (i % 2)
			snapfs_inode_forget(ino[i], 1);
	}
	assert_int_equal(snapfs_inode_count(), N / 2);
	for (int i = 0; i < N; i += 2) {
		snprintf(path, sizeof(path), "/guest%d/vd%c.raw", i / 3, 'a' + i % 3);
		assert_path(ino[i], path);
		assert_stale(ino[i + 1]);
		snapfs_inode_forget(ino[i], 1);
	}
	assert_int_equal(snapfs_inode_count(), 0);
	free(ino);
}

/* Lookups and forgets from several threads, as the kernel sends them to
 * the worker threads: a number held by a thread always names its path, and
 * nothing is left once every lookup is forgotten. */
#define THREADS 8
#define PATHS 64
#define ROUNDS 20000

static int bad_path;

static void *churn(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	char path[32], got[SNAPFS_PATH_MAX];

	for (int r = 0; r < ROUNDS; r++) {
		fuse_ino_t ino;
		int k = (int)(rand_r(&seed) % PATHS);

		snprintf(path, sizeof(path), "/g%d", k);
		if (snapfs_inode_ref(path, &ino) < 0 || snapfs_inode_path(ino, got) < 0 ||
		    strcmp(got, path))
			__atomic_store_n(&bad_path, 1, __ATOMIC_RELAXED);
		snapfs_inode_forget(ino, 1);
	}
	return NULL;
}

/* The files of one guest directory: not its neighbours, not the directory. */
static void test_under(void **state UNUSED)
{
	fuse_ino_t a = ref("/web/vda.raw"), b = ref("/web/vda1.raw"), *got;
	size_t n;

	ref("/web");
	ref("/webserver/vda.raw");
	ref("/we/vda.raw");
	ref("/db/vda.raw");
	for (int i = 0; i < 40; i++) { /* past the first allocation */
		char path[64];

		snprintf(path, sizeof(path), "/many/vd%d.raw", i);
		ref(path);
	}
	got = snapfs_inode_under("web", &n);
	assert_int_equal(n, 2);
	assert_true((got[0] == a && got[1] == b) || (got[0] == b && got[1] == a));
	free(got);
	got = snapfs_inode_under("many", &n);
	assert_int_equal(n, 40);
	free(got);
	snapfs_inode_forget(a, 1);
	got = snapfs_inode_under("web", &n);
	assert_int_equal(n, 1);
	assert_true(got[0] == b);
	free(got);
	got = snapfs_inode_under("none", &n);
	assert_int_equal(n, 0);
	assert_null(got);
}

static void test_threads(void **state UNUSED)
{
	pthread_t t[THREADS];

	for (uintptr_t i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, churn, (void *)(i + 1)), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(bad_path, 0);
	assert_int_equal(snapfs_inode_count(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_root, teardown),
		cmocka_unit_test_teardown(test_counted, teardown),
		cmocka_unit_test_teardown(test_stable, teardown),
		cmocka_unit_test_teardown(test_too_long, teardown),
		cmocka_unit_test_teardown(test_join, teardown),
		cmocka_unit_test_teardown(test_many, teardown),
		cmocka_unit_test_teardown(test_under, teardown),
		cmocka_unit_test_teardown(test_threads, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
