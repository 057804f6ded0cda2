/* Unit tests for src/rbd-dead.c: the file in which a run keeps its Ceph
 * clients' addresses, and the next run's blocklisting of them.  librados
 * is faked at link time (-Wl,--wrap for rados_cluster_fsid,
 * rados_getaddrs and rados_blocklist_add), and the log kept.
 *
 * What must hold: a run's address is kept with its cluster's fsid (of a
 * list of addresses, the first: librados refuses a list); the next run
 * blocklists exactly the addresses kept for the cluster it is connected
 * to; a line it does not understand (another cluster, a hostile or
 * overlong address, a nonce of 0, which would blocklist a whole IP, no
 * fsid) is passed on to nothing; no file, nothing done. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapfs.h"

#define UNUSED __attribute__((unused))
#define FSID "0b4a3c4e-8f63-4a4c-9d0e-0123456789ab"
#define OTHER "ffffffff-8f63-4a4c-9d0e-0123456789ab"

int __wrap_rados_cluster_fsid(void *cluster, char *buf, size_t len);
int __wrap_rados_getaddrs(void *cluster, char **addrs);
int __wrap_rados_blocklist_add(void *cluster, char *addr, uint32_t expire);
void __wrap_snapfs_log(int level, const char *fmt, ...);

static struct {
	const char *addrs;     /* what rados_getaddrs gives */
	char listed[8][256];   /* what was blocklisted */
	int n;
	int fail;              /* -errno for rados_blocklist_add */
	char last_log[512];
} fake;

int __wrap_rados_cluster_fsid(void *cluster UNUSED, char *buf, size_t len)
{
	snprintf(buf, len, "%s", FSID);
	return (int)strlen(FSID);
}

int __wrap_rados_getaddrs(void *cluster UNUSED, char **addrs)
{
	*addrs = fake.addrs ? strdup(fake.addrs) : NULL;
	return 0;
}

int __wrap_rados_blocklist_add(void *cluster UNUSED, char *addr, uint32_t expire)
{
	assert_int_equal(expire, 3600);
	if (fake.fail)
		return fake.fail;
	if (addr[0] == '[') /* as Ceph's address parser: one address only */
		return -EINVAL;
	assert_true(fake.n < 8);
	snprintf(fake.listed[fake.n++], sizeof(fake.listed[0]), "%s", addr);
	return 0;
}

void __wrap_snapfs_log(int level UNUSED, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(fake.last_log, sizeof(fake.last_log), fmt, ap);
	va_end(ap);
}

static char path[64];

static int setup(void **state UNUSED)
{
	int fd;

	memset(&fake, 0, sizeof(fake));
	snprintf(path, sizeof(path), "/tmp/test-rbd-dead.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	unlink(path);
	return 0;
}

static int teardown(void **state UNUSED)
{
	unlink(path);
	snapfs_rbd_dead_record_at(NULL);
	return 0;
}

static void write_file(const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Kept by one run, blocklisted by the next: both of its connections, one
 * address as librados gives it for a client, one a list. */
static void test_kept_then_ended(void **state UNUSED)
{
	snapfs_rbd_dead_record_at(path);
	fake.addrs = "127.0.0.1:0/3478931521";
	snapfs_rbd_dead_record(NULL);
	fake.addrs = "[v2:127.0.0.1:0/5678,v1:127.0.0.1:0/5678]";
	snapfs_rbd_dead_record(NULL);
	assert_int_equal(snapfs_rbd_dead_blocklist(NULL, path), 2);
	assert_int_equal(fake.n, 2);
	assert_string_equal(fake.listed[0], "127.0.0.1:0/3478931521");
	assert_string_equal(fake.listed[1], "v2:127.0.0.1:0/5678");
	assert_non_null(strstr(fake.last_log, "the Ceph client of a dead run"));
}

/* Not kept anywhere when no file is named; nothing to end without one. */
static void test_no_file(void **state UNUSED)
{
	fake.addrs = "10.0.0.1:0/1";
	snapfs_rbd_dead_record(NULL);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(snapfs_rbd_dead_blocklist(NULL, path), 0);
	assert_int_equal(fake.n, 0);
}

/* Only this cluster's, and only addresses: the rest is never passed on. */
static void test_hostile_lines(void **state UNUSED)
{
	char longer[255 - 37 + 1]; /* FSID, a space and this fill 255 bytes */
	FILE *f;

	memset(longer, '1', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	write_file(OTHER " 10.0.0.9:0/9\n"
	           FSID " 10.0.0.1:0/1\n"
	           FSID " 10.0.0.2:0/2; ceph osd pool rm\n"
	           FSID " $(reboot)\n"
	           FSID " 10.0.0.5:0/0\n"     /* nonce 0: the whole IP */
	           FSID " 10.0.0.6\n"         /* no nonce */
	           FSID " 10.0.0.7:0/\n"
	           FSID " [v2:10.0.0.8:0/8,v1:10.0.0.8:0/8]\n"
	           FSID "\n"
	           "10.0.0.3:0/3\n"
	           FSID " \n");
	f = fopen(path, "a");
	assert_non_null(f);
	/* A line longer than the reader's 255 bytes, whose rest from there
	 * looks like a record of its own. */
	fprintf(f, FSID " %s" FSID " 10.0.0.66:0/66\n", longer);
	fprintf(f, FSID " v2:[::1]:0/4\n");
	fclose(f);
	assert_int_equal(snapfs_rbd_dead_blocklist(NULL, path), 2);
	assert_int_equal(fake.n, 2);
	assert_string_equal(fake.listed[0], "10.0.0.1:0/1");
	assert_string_equal(fake.listed[1], "v2:[::1]:0/4");
}

/* An address librados gives in a form not understood (or none) is not
 * kept, and the log says what a crash would then cost. */
static void test_odd_address_not_kept(void **state UNUSED)
{
	static const char *odd[] = { "any:x y", "10.0.0.1:0/0", "10.0.0.1", NULL };

	snapfs_rbd_dead_record_at(path);
	for (size_t k = 0; k < sizeof(odd) / sizeof(odd[0]); k++) {
		fake.addrs = odd[k];
		fake.last_log[0] = '\0';
		snapfs_rbd_dead_record(NULL);
		assert_int_equal(access(path, F_OK), -1);
		assert_non_null(strstr(fake.last_log, "may wait 30 s"));
	}
}

/* A refusal (caps without blocklisting) is logged, and counts for none. */
static void test_refused(void **state UNUSED)
{
	write_file(FSID " 10.0.0.1:0/1\n");
	fake.fail = -EACCES;
	assert_int_equal(snapfs_rbd_dead_blocklist(NULL, path), 0);
	assert_non_null(strstr(fake.last_log, "cannot blocklist"));
}

static void test_path(void **state UNUSED)
{
	char out[300];

	assert_int_equal(snapfs_rbd_dead_path(SNAPFS_OWNER_TAG_PREFIX "00ab", out, sizeof(out)), 0);
	assert_string_equal(out, SNAPFS_RUN_BASE "/00ab/rbd-clients");
	assert_int_equal(snapfs_rbd_dead_path(NULL, out, sizeof(out)), -EINVAL);
	assert_int_equal(snapfs_rbd_dead_path(SNAPFS_OWNER_TAG_PREFIX "ff", out, 20), -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_kept_then_ended, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_odd_address_not_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
