/* Unit tests for src/backing.c: which backing names of a qcow2 image in an
 * LV are followed to an LV of its VG, and every other name refused with a
 * reason. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "snapfs.h"

#define UNUSED __attribute__((unused))

static const char *const vgs[] = { "vg0", "other", "my-vg", NULL };

/* The LV name means in vg, or "" when refused (with a reason). */
static const char *lv_of(const char *vg, const char *name)
{
	static char lv[128];
	const char *why = NULL;

	if (snapfs_backing_lv(vg, name, vgs, lv, sizeof(lv), &why) < 0) {
		assert_non_null(why);
		return "";
	}
	return lv;
}

static void test_followed(void **state UNUSED)
{
	assert_string_equal(lv_of("vg0", "base"), "base");
	assert_string_equal(lv_of("vg0", "./base"), "base");
	assert_string_equal(lv_of("vg0", "/dev/vg0/base"), "base");
	assert_string_equal(lv_of("vg0", "/dev/mapper/vg0-base"), "base");
	assert_string_equal(lv_of("my-vg", "/dev/mapper/my--vg-a--b"), "a-b");
	/* oVirt: ../IMAGE/VOLUME, IMAGE an image directory, not a VG. */
	assert_string_equal(lv_of("vg0", "../1b2c3d4e-0000-4000-8000-000000000001/"
					 "9f8e7d6c-0000-4000-8000-000000000002"),
			    "9f8e7d6c-0000-4000-8000-000000000002");
	assert_string_equal(lv_of("vg0", "../vg0/base"), "base");
	assert_string_equal(lv_of("vg0", "base.qcow2+1_x"), "base.qcow2+1_x");
}

static void test_refused(void **state UNUSED)
{
	static const char *const bad[] = {
		"/var/lib/libvirt/images/base.qcow2", /* a host file */
		"/dev/other/base",                  /* another VG */
		"/dev/mapper/other-base",
		"/dev/mapper/vg0--base",            /* vg0-base is no VG of vg0 */
		"/dev/vg0/sub/base",
		"/dev/sda",
		"../other/base",                    /* leaves the VG */
		"../../etc/passwd",
		"../../vg0/base",
		"../x/y/base",
		"../base",
		"sub/base",
		"json:{\"file.filename\":\"/etc/shadow\"}",
		"nbd://host/export",
		"file:base",
		"-base",                            /* no LV name */
		".",
		"..",
		"",
		"a b",
		"/dev/vg0/",
		"../img/",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (strcmp(lv_of("vg0", bad[i]), ""))
			fail_msg("followed %s", bad[i]);
	}
}

static void test_long_names(void **state UNUSED)
{
	char name[300], lv[128];
	const char *why;

	memset(name, 'a', 127);
	name[127] = '\0';
	assert_int_equal(snapfs_backing_lv("vg0", name, vgs, lv, sizeof(lv), &why), 0);
	memset(name, 'a', 128);
	name[128] = '\0';
	assert_int_equal(snapfs_backing_lv("vg0", name, vgs, lv, sizeof(lv), &why), -EPERM);
	/* Too long for the caller's buffer: refused, never cut. */
	assert_int_equal(snapfs_backing_lv("vg0", "abcdef", vgs, lv, 4, &why), -EPERM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_followed),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_long_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
