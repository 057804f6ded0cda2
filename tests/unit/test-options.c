/* Unit tests for fs/options.c: the command line and -o options of snapfs,
 * and what is left for FUSE. */
#include "config.h"

#include <errno.h>
#include <grp.h>
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

struct parsed {
	int rc;
	struct snapfs_opts o;
	struct fuse_args rest;
	char **argv;
	int argc;
};

static struct parsed *vparse(const char *first, va_list ap)
{
	struct parsed *p = calloc(1, sizeof(*p));

	assert_non_null(p);
	p->argv = calloc(32, sizeof(char *));
	assert_non_null(p->argv);
	p->argv[p->argc++] = strdup("snapfs");
	for (const char *a = first; a; a = va_arg(ap, const char *)) {
		assert_true(p->argc < 31);
		p->argv[p->argc++] = strdup(a);
	}
	p->rc = snapfs_opts_parse(p->argc, p->argv, &p->o, &p->rest);
	return p;
}

static void parsed_free(struct parsed *p)
{
	/* Both are safe after a failed parse too. */
	snapfs_opts_free(&p->o);
	fuse_opt_free_args(&p->rest);
	for (int i = 0; i < p->argc; i++)
		free(p->argv[i]);
	free(p->argv);
	free(p);
}

/* Parse "snapfs" followed by the NULL-terminated arguments. */
static struct parsed *parse(const char *first, ...)
{
	struct parsed *p;
	va_list ap;

	va_start(ap, first);
	p = vparse(first, ap);
	va_end(ap);
	return p;
}

static void expect_einval(const char *first, ...)
{
	struct parsed *p;
	va_list ap;

	va_start(ap, first);
	p = vparse(first, ap);
	va_end(ap);
	if (p->rc != -EINVAL) {
		char line[512] = "";
		int rc = p->rc;

		for (int i = 0; i < p->argc; i++) {
			strncat(line, p->argv[i], sizeof(line) - strlen(line) - 2);
			strcat(line, " ");
		}
		parsed_free(p);
		fail_msg("\"%s\" gave %d, not -EINVAL", line, rc);
	}
	parsed_free(p);
}

/* Call fn on each -o option left for FUSE, from "-o a,b" and "-oa,b". */
static bool any_option(const struct fuse_args *rest,
		       bool (*fn)(const char *, size_t, const void *), const void *arg)
{
	for (int i = 1; i < rest->argc; i++) {
		const char *list = NULL;

		if (!strcmp(rest->argv[i], "-o") && i + 1 < rest->argc)
			list = rest->argv[++i];
		else if (!strncmp(rest->argv[i], "-o", 2))
			list = rest->argv[i] + 2;
		if (!list)
			continue;
		for (const char *p = list; *p;) {
			size_t len = strcspn(p, ",");

			if (fn(p, len, arg))
				return true;
			p += len;
			if (*p)
				p++;
		}
	}
	return false;
}

static bool option_is(const char *opt, size_t len, const void *name)
{
	return strlen(name) == len && !strncmp(opt, name, len);
}

static bool option_is_ours(const char *opt, size_t len, const void *unused)
{
	static const char *const prefixes[] = {
		"cow_size=", "linger=", "gid=", "cache=", "lvm_timeout=", "debug_areas=",
		"reflink_reserve=", "rbd_reserve=", "host_id="
	};

	for (size_t k = 0; k < sizeof(prefixes) / sizeof(prefixes[0]); k++)
		if (len >= strlen(prefixes[k]) &&
		    !strncmp(opt, prefixes[k], strlen(prefixes[k])))
			return true;
	return len == 5 && !strncmp(opt, "debug", 5);
}

static bool rest_has_option(const struct fuse_args *rest, const char *name)
{
	return any_option(rest, option_is, name);
}

static bool rest_has_arg(const struct fuse_args *rest, const char *arg)
{
	for (int i = 0; i < rest->argc; i++)
		if (!strcmp(rest->argv[i], arg))
			return true;
	return false;
}

/* Nothing of snapfs's own is passed on to FUSE. */
static void assert_rest_clean(const struct fuse_args *rest)
{
	static const char *const flags[] = { "-f",     "-d", "-s",	  "-h",
					     "--help", "-V", "--version", "--cleanup" };

	assert_true(rest->argc >= 1);
	assert_string_equal(rest->argv[0], "snapfs");
	for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++)
		if (rest_has_arg(rest, flags[k]))
			fail_msg("%s was passed on to FUSE", flags[k]);
	if (any_option(rest, option_is_ours, NULL))
		fail_msg("a snapfs -o option was passed on to FUSE");
}

/* ---- positionals and defaults --------------------------------------------- */

static void test_defaults(void **state UNUSED)
{
	struct parsed *p = parse("/mnt", NULL);

	assert_int_equal(p->rc, 0);
	assert_string_equal(p->o.cow_size, "20%ORIGIN");
	assert_string_equal(p->o.reserve_text, "5%");
	assert_int_equal(p->o.reserve.percent, 5);
	assert_int_equal(p->o.reserve.bytes, 0);
	assert_int_equal(p->o.linger, 10);
	assert_true(p->o.cache == 2.0);
	assert_int_equal(p->o.lvm_timeout, 120);
	assert_int_equal(p->o.readahead, 4096);
	assert_int_equal(p->o.gid, 0);
	assert_null(p->o.gid_text);
	assert_int_equal(p->o.debug_mask, 0);
	assert_false(p->o.foreground);
	assert_false(p->o.single_thread);
	assert_false(p->o.fuse_debug);
	assert_false(p->o.show_help);
	assert_false(p->o.show_version);
	assert_false(p->o.cleanup);
	/* One positional is the mount point. */
	assert_null(p->o.source);
	assert_string_equal(p->o.mountpoint, "/mnt");
	assert_int_equal(p->rest.argc, 1);
	assert_string_equal(p->rest.argv[0], "snapfs");
	parsed_free(p);
}

static void test_source_and_mountpoint(void **state UNUSED)
{
	struct parsed *p = parse("lvm:vg0", "/mnt", NULL);

	assert_int_equal(p->rc, 0);
	assert_string_equal(p->o.source, "lvm:vg0");
	assert_string_equal(p->o.mountpoint, "/mnt");
	parsed_free(p);

	/* Options may come before, between and after. */
	p = parse("-o", "linger=3", "qemu:///system", "-f", "/srv/snap", "-o",
		  "cache=0.5", NULL);
	assert_int_equal(p->rc, 0);
	assert_string_equal(p->o.source, "qemu:///system");
	assert_string_equal(p->o.mountpoint, "/srv/snap");
	assert_int_equal(p->o.linger, 3);
	assert_true(p->o.cache == 0.5);
	assert_true(p->o.foreground);
	assert_rest_clean(&p->rest);
	parsed_free(p);
}

static void test_positional_count(void **state UNUSED)
{
	expect_einval(NULL);
	expect_einval("a", "b", "c", NULL);
	expect_einval("a", "b", "c", "d", NULL);
	expect_einval("-o", "linger=1", NULL);
}

/* ---- -o options of snapfs -------------------------------------------------- */

static void test_options_parsed(void **state UNUSED)
{
	struct parsed *p = parse("-o", "cow_size=1G,linger=5,gid=0", "/mnt", NULL);

	assert_int_equal(p->rc, 0);
	assert_string_equal(p->o.cow_size, "1G");
	assert_int_equal(p->o.linger, 5);
	assert_int_equal(p->o.gid, 0);
	assert_string_equal(p->o.gid_text, "0");
	assert_string_equal(p->o.mountpoint, "/mnt");
	assert_int_equal(p->rest.argc, 1);
	parsed_free(p);

	p = parse("-ocache=10,lvm_timeout=30", "/mnt", NULL);
	assert_int_equal(p->rc, 0);
	assert_true(p->o.cache == 10.0);
	assert_int_equal(p->o.lvm_timeout, 30);
	parsed_free(p);

	/* Given twice: the last one counts (and the first is not leaked). */
	p = parse("-o", "cow_size=1G", "-o", "cow_size=2G,gid=5", "-o", "gid=7", "/mnt",
		  NULL);
	assert_int_equal(p->rc, 0);
	assert_string_equal(p->o.cow_size, "2G");
	assert_int_equal(p->o.gid, 7);
	parsed_free(p);
}

static void test_cow_size_valid(void **state UNUSED)
{
	/* clang-format off */
	static const char *const ok[] = {
		"20%ORIGIN", "512M", "1.5g", "100", "1G", "100%ORIGIN", "10%VG",
		"50%FREE", "100%PVS", "4096b", "2048s", "1t", "0.5T",
	};
	/* clang-format on */

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char opt[64];
		struct parsed *p;

		snprintf(opt, sizeof(opt), "cow_size=%s", ok[i]);
		p = parse("-o", opt, "/mnt", NULL);
		if (p->rc != 0) {
			parsed_free(p);
			fail_msg("cow_size=%s refused", ok[i]);
		}
		assert_string_equal(p->o.cow_size, ok[i]);
		parsed_free(p);
	}
}

static void test_cow_size_invalid(void **state UNUSED)
{
	/* The last one has an escaped comma: the value "1G,2G". */
	/* clang-format off */
	static const char *const bad[] = {
		"cow_size=--size", "cow_size=20%FOO", "cow_size=", "cow_size=-1G",
		"cow_size=1G2", "cow_size=G", "cow_size=1.", "cow_size=.5G",
		"cow_size=1.5.5G", "cow_size=20%", "cow_size=20%ORIGINx",
		"cow_size=1G;rm", "cow_size= 1G", "cow_size=1G\\,2G",
	};
	/* clang-format on */

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_einval("-o", bad[i], "/mnt", NULL);
}

static void test_reflink_reserve(void **state UNUSED)
{
	struct parsed *p = parse("-o", "reflink_reserve=2G", "/mnt", NULL);

	assert_int_equal(p->rc, 0);
	assert_string_equal(p->o.reserve_text, "2G");
	assert_int_equal(p->o.reserve.bytes, 2ULL << 30);
	assert_false(rest_has_option(&p->rest, "reflink_reserve=2G"));
	parsed_free(p);
	p = parse("-o", "reflink_reserve=12%", "/mnt", NULL);
	assert_int_equal(p->rc, 0);
	assert_int_equal(p->o.reserve.percent, 12);
	parsed_free(p);
	expect_einval("-o", "reflink_reserve=12%%", "/mnt", NULL);
	expect_einval("-o", "reflink_reserve=-1G", "/mnt", NULL);
	expect_einval("-o", "reflink_reserve=", "/mnt", NULL);
	expect_einval("-o", "reflink_reserve=101%", "/mnt", NULL);
}

static void test_rbd_options(void **state UNUSED)
{
	struct parsed *p = parse("/mnt", NULL);

	assert_int_equal(p->rc, 0);
	assert_string_equal(p->o.rbd_reserve_text, "5%");
	assert_int_equal(p->o.rbd_reserve.percent, 5);
	assert_null(p->o.host_id); /* /etc/machine-id, read at mount */
	parsed_free(p);
	p = parse("-o", "rbd_reserve=200G,host_id=kvm-07", "/mnt", NULL);
	assert_int_equal(p->rc, 0);
	assert_int_equal(p->o.rbd_reserve.bytes, 200ULL << 30);
	assert_string_equal(p->o.host_id, "kvm-07");
	assert_rest_clean(&p->rest);
	parsed_free(p);
	expect_einval("-o", "rbd_reserve=x", "/mnt", NULL);
	expect_einval("-o", "rbd_reserve=101%", "/mnt", NULL);
	/* A host identity is part of snapshot names: [a-z0-9-], 1 to 32. */
	expect_einval("-o", "host_id=", "/mnt", NULL);
	expect_einval("-o", "host_id=Kvm", "/mnt", NULL);
	expect_einval("-o", "host_id=a.b", "/mnt", NULL);
	expect_einval("-o", "host_id=a/b", "/mnt", NULL);
	expect_einval("-o", "host_id=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "/mnt", NULL);
}

/* "-o cow_size=1G,2G" is two options to FUSE's parser: cow_size=1G, and
 * "2G", which is not snapfs's and is left for FUSE (which refuses it at
 * mount).  It must never become a cow_size of "1G,2G". */
static void test_cow_size_comma_is_two_options(void **state UNUSED)
{
	struct parsed *p = parse("-o", "cow_size=1G,2G", "/mnt", NULL);

	if (p->rc == 0) {
		assert_string_equal(p->o.cow_size, "1G");
		assert_true(rest_has_option(&p->rest, "2G"));
	} else {
		assert_int_equal(p->rc, -EINVAL);
	}
	parsed_free(p);
}

/* lvcreate's --extents takes a whole number before '%' (LVM2
 * tools/lvmcmdline.c, _extents_arg), so "1.5%ORIGIN" is refused at parse
 * time rather than at every first open. */
static void test_cow_size_fraction_of_extents(void **state UNUSED)
{
	expect_einval("-o", "cow_size=1.5%ORIGIN", "/mnt", NULL);
	expect_einval("-o", "cow_size=0.5%VG", "/mnt", NULL);
}

static void test_seconds_options(void **state UNUSED)
{
	struct parsed *p;

	expect_einval("-o", "linger=abc", "/mnt", NULL);
	expect_einval("-o", "linger=-1", "/mnt", NULL);
	expect_einval("-o", "linger=", "/mnt", NULL);
	expect_einval("-o", "linger=5s", "/mnt", NULL);
	expect_einval("-o", "linger=86401", "/mnt", NULL);
	expect_einval("-o", "linger=nan", "/mnt", NULL);
	expect_einval("-o", "linger=inf", "/mnt", NULL);
	expect_einval("-o", "cache=abc", "/mnt", NULL);
	expect_einval("-o", "cache=-0.5", "/mnt", NULL);
	expect_einval("-o", "cache=3601", "/mnt", NULL);
	expect_einval("-o", "lvm_timeout=0", "/mnt", NULL);
	expect_einval("-o", "lvm_timeout=0.5", "/mnt", NULL);
	expect_einval("-o", "lvm_timeout=3601", "/mnt", NULL);
	expect_einval("-o", "lvm_timeout=x", "/mnt", NULL);

	p = parse("-o", "linger=86400,cache=0,lvm_timeout=1", "/mnt", NULL);
	assert_int_equal(p->rc, 0);
	assert_int_equal(p->o.linger, 86400);
	assert_true(p->o.cache == 0.0);
	assert_int_equal(p->o.lvm_timeout, 1);
	parsed_free(p);
}

static void test_readahead(void **state UNUSED)
{
	struct parsed *p;

	expect_einval("-o", "readahead=", "/mnt", NULL);
	expect_einval("-o", "readahead=-1", "/mnt", NULL);
	expect_einval("-o", "readahead=+5", "/mnt", NULL);
	expect_einval("-o", "readahead= 5", "/mnt", NULL);
	expect_einval("-o", "readahead=1k", "/mnt", NULL);
	expect_einval("-o", "readahead=1.5", "/mnt", NULL);
	expect_einval("-o", "readahead=65537", "/mnt", NULL);
	expect_einval("-o", "readahead=99999999999999999999", "/mnt", NULL);

	p = parse("-o", "readahead=0", "/mnt", NULL);
	assert_int_equal(p->rc, 0);
	assert_int_equal(p->o.readahead, 0);
	parsed_free(p);
	p = parse("-o", "readahead=65536", "/mnt", NULL);
	assert_int_equal(p->rc, 0);
	assert_int_equal(p->o.readahead, 65536);
	parsed_free(p);
}

static void test_gid(void **state UNUSED)
{
	struct parsed *p = parse("-o", "gid=root", "/mnt", NULL);
	struct group *gr;

	assert_int_equal(p->rc, 0);
	assert_int_equal(p->o.gid, 0);
	parsed_free(p);

	p = parse("-o", "gid=1234", "/mnt", NULL);
	assert_int_equal(p->rc, 0);
	assert_int_equal(p->o.gid, 1234);
	parsed_free(p);

	gr = getgrnam("daemon");
	if (gr) {
		gid_t want = gr->gr_gid;

		p = parse("-o", "gid=daemon", "/mnt", NULL);
		assert_int_equal(p->rc, 0);
		assert_int_equal(p->o.gid, want);
		parsed_free(p);
	}

	expect_einval("-o", "gid=nosuchgroup", "/mnt", NULL);
	expect_einval("-o", "gid=", "/mnt", NULL);
	expect_einval("-o", "gid=4294967295", "/mnt", NULL);
	expect_einval("-o", "gid=99999999999999999999", "/mnt", NULL);
}

static void test_debug_areas(void **state UNUSED)
{
	struct parsed *p = parse("-o", "debug_areas=lvm:guests", "/mnt", NULL);

	assert_int_equal(p->rc, 0);
	assert_int_equal(p->o.debug_mask, SNAPFS_DBG_LVM | SNAPFS_DBG_GUESTS);
	assert_false(p->o.foreground); /* debug lines alone do not keep it in front */
	parsed_free(p);

	p = parse("-o", "debug_areas=snapshot:partitions:fuse", "/mnt", NULL);
	assert_int_equal(p->rc, 0);
	assert_int_equal(p->o.debug_mask,
			 SNAPFS_DBG_SNAP | SNAPFS_DBG_PART | SNAPFS_DBG_FUSE);
	parsed_free(p);

	p = parse("-o", "debug_areas=all", "/mnt", NULL);
	assert_int_equal(p->rc, 0);
	assert_int_equal(p->o.debug_mask, SNAPFS_DBG_ALL);
	parsed_free(p);

	expect_einval("-o", "debug_areas=bogus", "/mnt", NULL);
	expect_einval("-o", "debug_areas=lvm:bogus", "/mnt", NULL);
	expect_einval("-o", "debug_areas=LVM", "/mnt", NULL);
}

/* ---- flags -------------------------------------------------------------- */

static void test_flags(void **state UNUSED)
{
	struct parsed *p = parse("-f", "/mnt", NULL);

	assert_int_equal(p->rc, 0);
	assert_true(p->o.foreground);
	assert_false(p->o.fuse_debug);
	assert_int_equal(p->o.debug_mask, 0);
	assert_rest_clean(&p->rest);
	parsed_free(p);

	p = parse("-d", "/mnt", NULL);
	assert_int_equal(p->rc, 0);
	assert_true(p->o.foreground);
	assert_true(p->o.fuse_debug);
	assert_int_equal(p->o.debug_mask, SNAPFS_DBG_ALL);
	assert_rest_clean(&p->rest);
	parsed_free(p);

	p = parse("-o", "debug", "/mnt", NULL);
	assert_int_equal(p->rc, 0);
	assert_true(p->o.foreground);
	assert_true(p->o.fuse_debug);
	assert_int_equal(p->o.debug_mask, SNAPFS_DBG_ALL);
	assert_rest_clean(&p->rest);
	parsed_free(p);

	p = parse("-s", "/mnt", NULL);
	assert_int_equal(p->rc, 0);
	assert_true(p->o.single_thread);
	assert_rest_clean(&p->rest);
	parsed_free(p);
}

static void test_cleanup(void **state UNUSED)
{
	struct parsed *p = parse("--cleanup", NULL);

	assert_int_equal(p->rc, 0);
	assert_true(p->o.cleanup);
	assert_null(p->o.mountpoint);
	assert_null(p->o.source);
	assert_rest_clean(&p->rest);
	parsed_free(p);

	p = parse("--cleanup", "/mnt", NULL);
	assert_int_equal(p->rc, 0);
	assert_true(p->o.cleanup);
	assert_string_equal(p->o.mountpoint, "/mnt");
	parsed_free(p);
}

static void test_help_and_version(void **state UNUSED)
{
	struct parsed *p = parse("-h", NULL);

	assert_int_equal(p->rc, 0);
	assert_true(p->o.show_help);
	parsed_free(p);

	p = parse("--help", "a", "b", NULL);
	assert_int_equal(p->rc, 0);
	assert_true(p->o.show_help);
	parsed_free(p);

	p = parse("-V", NULL);
	assert_int_equal(p->rc, 0);
	assert_true(p->o.show_version);
	parsed_free(p);

	p = parse("--version", NULL);
	assert_int_equal(p->rc, 0);
	assert_true(p->o.show_version);
	parsed_free(p);

	/* A bad value is still an error, help or not. */
	expect_einval("-h", "-o", "linger=x", NULL);
}

/* ---- what FUSE gets ------------------------------------------------------ */

static void test_unknown_options_left_for_fuse(void **state UNUSED)
{
	struct parsed *p = parse("-o", "allow_other,linger=2,bogus,max_threads=4", "/mnt",
				 "--bogus-flag", NULL);

	assert_int_equal(p->rc, 0);
	assert_int_equal(p->o.linger, 2);
	assert_string_equal(p->o.mountpoint, "/mnt");
	assert_true(rest_has_option(&p->rest, "allow_other"));
	assert_true(rest_has_option(&p->rest, "bogus"));
	assert_true(rest_has_option(&p->rest, "max_threads=4"));
	assert_false(rest_has_option(&p->rest, "linger=2"));
	assert_true(rest_has_arg(&p->rest, "--bogus-flag"));
	assert_false(rest_has_arg(&p->rest, "/mnt"));
	assert_rest_clean(&p->rest);
	parsed_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_reflink_reserve),
		cmocka_unit_test(test_rbd_options),
		cmocka_unit_test(test_source_and_mountpoint),
		cmocka_unit_test(test_positional_count),
		cmocka_unit_test(test_options_parsed),
		cmocka_unit_test(test_cow_size_valid),
		cmocka_unit_test(test_cow_size_invalid),
		cmocka_unit_test(test_cow_size_comma_is_two_options),
		cmocka_unit_test(test_cow_size_fraction_of_extents),
		cmocka_unit_test(test_seconds_options),
		cmocka_unit_test(test_readahead),
		cmocka_unit_test(test_gid),
		cmocka_unit_test(test_debug_areas),
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_cleanup),
		cmocka_unit_test(test_help_and_version),
		cmocka_unit_test(test_unknown_options_left_for_fuse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
