/* Unit tests for src/backing-file.c: which backing names of a qcow2 image
 * in a file are followed, on a real directory tree made for each run: only
 * regular files in the image's own directory or a storage pool's, reached
 * by no symlink leading out; everything else refused with a reason. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapfs.h"

#define UNUSED __attribute__((unused))

static char root[PATH_MAX];    /* real path of the tree */
static char image[PATH_MAX + 32];   /* root/images/top.qcow2 */
static char pool[PATH_MAX + 32];    /* root/pool */

static void touch(const char *rel)
{
	char p[PATH_MAX + 64];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	f = fopen(p, "w");
	assert_non_null(f);
	fclose(f);
}

static void link_to(const char *target, const char *rel)
{
	char p[PATH_MAX + 64];

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	assert_int_equal(symlink(target, p), 0);
}

static void sub(const char *rel)
{
	char p[PATH_MAX + 64];

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	assert_int_equal(mkdir(p, 0755), 0);
}

static int setup(void **state UNUSED)
{
	char tmpl[] = "/tmp/snapfs-test-backing-file.XXXXXX";

	assert_non_null(mkdtemp(tmpl));
	assert_non_null(realpath(tmpl, root));
	sub("images");
	sub("pool");
	sub("outside");
	sub("images/dir.qcow2");
	touch("images/top.qcow2");
	touch("images/base.qcow2");
	touch("pool/tpl.qcow2");
	touch("outside/secret.qcow2");
	link_to("../outside/secret.qcow2", "images/out.qcow2");
	link_to("../pool/tpl.qcow2", "images/in.qcow2");
	link_to("base.qcow2", "images/same.qcow2");
	link_to("loop-b", "images/loop-a");
	link_to("loop-a", "images/loop-b");
	link_to("/dev/null", "images/null.qcow2");
	snprintf(image, sizeof(image), "%s/images/top.qcow2", root);
	snprintf(pool, sizeof(pool), "%s/pool", root);
	return 0;
}

static int teardown(void **state UNUSED)
{
	static const char *const files[] = {
		"images/top.qcow2", "images/base.qcow2", "pool/tpl.qcow2", "outside/secret.qcow2",
		"images/out.qcow2", "images/in.qcow2",   "images/same.qcow2", "images/loop-a",
		"images/loop-b",    "images/null.qcow2", NULL,
	};
	static const char *const dirs[] = { "images/dir.qcow2", "images", "pool", "outside", "",
					    NULL };
	char p[PATH_MAX + 64];

	for (size_t i = 0; files[i]; i++) {
		snprintf(p, sizeof(p), "%s/%s", root, files[i]);
		unlink(p);
	}
	for (size_t i = 0; dirs[i]; i++) {
		snprintf(p, sizeof(p), "%s/%s", root, dirs[i]);
		rmdir(p);
	}
	return 0;
}

/* What name means below image with the pool allowed (or not), relative to
 * root; "" when refused, and then why is checked to hold want_why. */
static const char *resolve(const char *name, bool with_pool, const char *want_why)
{
	static char out[PATH_MAX];
	const char *const dirs[] = { pool, NULL };
	const char *why = NULL;
	size_t rlen = strlen(root);

	if (snapfs_backing_file_in(image, name, with_pool ? dirs : NULL, out, sizeof(out),
				   &why) < 0) {
		assert_non_null(why);
		if (want_why && !strstr(why, want_why))
			fail_msg("%s: refused for \"%s\", not \"%s\"", name, why, want_why);
		return "";
	}
	assert_true(!strncmp(out, root, rlen));
	return out + rlen;
}

static void test_followed(void **state UNUSED)
{
	char abs[PATH_MAX + 64];

	assert_string_equal(resolve("base.qcow2", false, NULL), "/images/base.qcow2");
	assert_string_equal(resolve("./base.qcow2", false, NULL), "/images/base.qcow2");
	assert_string_equal(resolve("../images/base.qcow2", false, NULL), "/images/base.qcow2");
	/* A symlink within the directory: its target is what is read. */
	assert_string_equal(resolve("same.qcow2", false, NULL), "/images/base.qcow2");
	/* The pool's directory, by a relative, an absolute or a linked name. */
	assert_string_equal(resolve("../pool/tpl.qcow2", true, NULL), "/pool/tpl.qcow2");
	snprintf(abs, sizeof(abs), "%s/pool/tpl.qcow2", root);
	assert_string_equal(resolve(abs, true, NULL), "/pool/tpl.qcow2");
	assert_string_equal(resolve("in.qcow2", true, NULL), "/pool/tpl.qcow2");
	assert_string_equal(resolve("../outside/../pool/tpl.qcow2", true, NULL), "/pool/tpl.qcow2");
}

static void test_refused(void **state UNUSED)
{
	static const char *const outside = "outside the image's directory";

	assert_string_equal(resolve("/etc/passwd", true, outside), "");
	assert_string_equal(resolve("../../../../../../../../../etc/shadow", true, outside), "");
	assert_string_equal(resolve("../outside/secret.qcow2", true, outside), "");
	assert_string_equal(resolve("out.qcow2", true, outside), "");
	/* Not a pool: the pool's files are not the image's. */
	assert_string_equal(resolve("../pool/tpl.qcow2", false, outside), "");
	assert_string_equal(resolve("in.qcow2", false, outside), "");
	assert_string_equal(resolve("null.qcow2", true, outside), "");
	assert_string_equal(resolve("json:{\"file.filename\":\"/etc/passwd\"}", true, "json:"), "");
	assert_string_equal(resolve("nbd://host/export", true, "protocol"), "");
	assert_string_equal(resolve("file:base.qcow2", true, "protocol"), "");
	assert_string_equal(resolve("", true, "empty"), "");
	assert_string_equal(resolve("missing.qcow2", true, "does not exist"), "");
	assert_string_equal(resolve("loop-a", true, "loop of symlinks"), "");
	assert_string_equal(resolve("dir.qcow2", true, "not a regular file"), "");
	/* A colon after a slash is part of a file name. */
	assert_string_equal(resolve("./a:b", true, "does not exist"), "");
}

static void test_long_names(void **state UNUSED)
{
	char name[PATH_MAX * 2 + 2], out[8];
	const char *why;

	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	assert_int_equal(snapfs_backing_file_in(image, name, NULL, out, 8, &why), -EPERM);
	/* Too long for the caller's buffer: refused, never cut. */
	assert_int_equal(snapfs_backing_file_in(image, "base.qcow2", NULL, out, sizeof(out), &why),
			 -EPERM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_followed),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_long_names),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
