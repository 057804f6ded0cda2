/* Unit tests for src/thinmap.c: thin_dump's XML to a map of mapped bytes,
 * every malformed case refused, and the questions a map answers (where the
 * next data or hole is, how much is mapped). */
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
#define KIB 1024ULL
#define BLOCK (64 * KIB) /* data_block_size="128" sectors */

/* As thin_dump 0.9 writes it: two devices, ranges and singles. */
static const char dump[] =
	"<superblock uuid=\"\" time=\"1\" transaction=\"2\" flags=\"0\" version=\"2\" "
	"data_block_size=\"128\" nr_data_blocks=\"512\">\n"
	"  <device dev_id=\"1\" mapped_blocks=\"3\" transaction=\"0\" creation_time=\"0\" "
	"snap_time=\"1\">\n"
	"    <range_mapping origin_begin=\"0\" data_begin=\"0\" length=\"3\" time=\"0\"/>\n"
	"  </device>\n"
	"  <device dev_id=\"2\" mapped_blocks=\"7\" transaction=\"1\" creation_time=\"1\" "
	"snap_time=\"1\">\n"
	"    <range_mapping origin_begin=\"0\" data_begin=\"0\" length=\"2\" time=\"0\"/>\n"
	"    <single_mapping origin_block=\"2\" data_block=\"40\" time=\"1\"/>\n"
	"    <single_mapping origin_block=\"10\" data_block=\"3\" time=\"0\"/>\n"
	"    <range_mapping origin_begin=\"100\" data_begin=\"9\" length=\"3\" time=\"1\"/>\n"
	"  </device>\n"
	"</superblock>\n";

static void test_parse(void **state UNUSED)
{
	struct snapfs_thinmap m;

	assert_int_equal(snapfs_thinmap_parse(dump, 2, &m), 0);
	/* 0-2 (a range and a single that touch, merged), 10, 100-102. */
	assert_int_equal(m.n, 3);
	assert_int_equal(m.ext[0].start, 0);
	assert_int_equal(m.ext[0].end, 3 * BLOCK);
	assert_int_equal(m.ext[1].start, 10 * BLOCK);
	assert_int_equal(m.ext[1].end, 11 * BLOCK);
	assert_int_equal(m.ext[2].start, 100 * BLOCK);
	assert_int_equal(m.ext[2].end, 103 * BLOCK);
	snapfs_thinmap_free(&m);
	assert_null(m.ext);
	assert_int_equal(snapfs_thinmap_parse(dump, 1, &m), 0);
	assert_int_equal(m.n, 1);
	assert_int_equal(m.ext[0].end, 3 * BLOCK);
	snapfs_thinmap_free(&m);
	/* No such device. */
	assert_int_equal(snapfs_thinmap_parse(dump, 3, &m), -ENOENT);
	assert_null(m.ext);
	/* A device with no mapping at all: an empty map, all holes. */
	assert_int_equal(snapfs_thinmap_parse("<superblock data_block_size=\"128\">"
					      "<device dev_id=\"4\" mapped_blocks=\"0\">"
					      "</device></superblock>",
					      4, &m),
			 0);
	assert_int_equal(m.n, 0);
	snapfs_thinmap_free(&m);
}

static void test_parse_refuses(void **state UNUSED)
{
	static const char *const bad[] = {
		"",
		"<superblock>",
		/* no block size, zero, too large, not a number, overflowing */
		"<superblock x=\"1\"><device dev_id=\"1\"></device></superblock>",
		"<superblock data_block_size=\"0\"><device dev_id=\"1\"></device></superblock>",
		"<superblock data_block_size=\"4194304\"><device dev_id=\"1\"></device>",
		"<superblock data_block_size=\"12x\"><device dev_id=\"1\"></device>",
		"<superblock data_block_size=\"-1\"><device dev_id=\"1\"></device>",
		/* the device never ends */
		"<superblock data_block_size=\"128\"><device dev_id=\"1\">"
		"<single_mapping origin_block=\"1\" data_block=\"1\"/>",
		/* a range of no length, a bad number, one that overflows bytes */
		"<superblock data_block_size=\"128\"><device dev_id=\"1\">"
		"<range_mapping origin_begin=\"1\" data_begin=\"1\" length=\"0\"/></device>",
		"<superblock data_block_size=\"128\"><device dev_id=\"1\">"
		"<range_mapping origin_begin=\"x\" data_begin=\"1\" length=\"1\"/></device>",
		"<superblock data_block_size=\"128\"><device dev_id=\"1\">"
		"<single_mapping origin_block=\"99999999999999999999\"/></device>",
		"<superblock data_block_size=\"128\"><device dev_id=\"1\">"
		"<single_mapping origin_block=\"288230376151711744\"/></device>",
		"<superblock data_block_size=\"128\"><device dev_id=\"1\">"
		"<range_mapping origin_begin=\"18446744073709551615\" length=\"2\"/></device>",
		/* out of order, overlapping */
		"<superblock data_block_size=\"128\"><device dev_id=\"1\">"
		"<single_mapping origin_block=\"5\"/><single_mapping origin_block=\"4\"/>"
		"</device>",
		"<superblock data_block_size=\"128\"><device dev_id=\"1\">"
		"<range_mapping origin_begin=\"0\" length=\"5\"/>"
		"<single_mapping origin_block=\"3\"/></device>",
	};
	struct snapfs_thinmap m;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = snapfs_thinmap_parse(bad[i], 1, &m);

		if (rc != -EINVAL)
			fail_msg("case %zu parsed with %d: %s", i, rc, bad[i]);
		assert_null(m.ext);
		assert_int_equal(m.n, 0);
	}
}

/* Maps from NBD block status and rbd diff are built extent by extent:
 * touching extents merge, and one that is not after the last is refused,
 * so that a map out of order is never trusted (it would hide data). */
static void test_add(void **state UNUSED)
{
	struct snapfs_thinmap m = { 0 };
	size_t cap = 0;

	assert_int_equal(snapfs_thinmap_add(&m, &cap, 4096, 8192), 0);
	assert_int_equal(snapfs_thinmap_add(&m, &cap, 8192, 12288), 0);
	assert_int_equal(snapfs_thinmap_add(&m, &cap, 65536, 69632), 0);
	assert_int_equal(m.n, 2);
	assert_int_equal(m.ext[0].start, 4096);
	assert_int_equal(m.ext[0].end, 12288);
	assert_int_equal(snapfs_thinmap_bytes(&m, 0, 1 << 20), 12288);
	assert_int_equal(snapfs_thinmap_add(&m, &cap, 0, 4096), -EINVAL);
	assert_int_equal(snapfs_thinmap_add(&m, &cap, 66000, 70000), -EINVAL);
	assert_int_equal(m.n, 2);
	for (unsigned i = 0; i < 200; i++)
		assert_int_equal(snapfs_thinmap_add(&m, &cap, (i + 100) << 20,
						    ((i + 100) << 20) + 512), 0);
	assert_int_equal(m.n, 202);
	snapfs_thinmap_free(&m);
}

static void test_seek_and_bytes(void **state UNUSED)
{
	struct snapfs_extent ext[] = { { 100, 200 }, { 300, 350 }, { 1000, 1100 } };
	struct snapfs_thinmap m = { ext, 3 };
	const uint64_t end = 2000;

	/* SEEK_DATA: in data, before data, between, after the last. */
	assert_int_equal(snapfs_thinmap_seek(&m, 150, end, SEEK_DATA), 150);
	assert_int_equal(snapfs_thinmap_seek(&m, 0, end, SEEK_DATA), 100);
	assert_int_equal(snapfs_thinmap_seek(&m, 200, end, SEEK_DATA), 300);
	assert_int_equal(snapfs_thinmap_seek(&m, 1100, end, SEEK_DATA), end);
	assert_int_equal(snapfs_thinmap_seek(&m, 1500, end, SEEK_DATA), end);
	/* SEEK_HOLE: in a hole, in data, at the end of data. */
	assert_int_equal(snapfs_thinmap_seek(&m, 0, end, SEEK_HOLE), 0);
	assert_int_equal(snapfs_thinmap_seek(&m, 120, end, SEEK_HOLE), 200);
	assert_int_equal(snapfs_thinmap_seek(&m, 349, end, SEEK_HOLE), 350);
	assert_int_equal(snapfs_thinmap_seek(&m, 200, end, SEEK_HOLE), 200);
	/* Cut at end (a partition that ends inside an extent). */
	assert_int_equal(snapfs_thinmap_seek(&m, 1050, 1080, SEEK_HOLE), 1080);
	assert_int_equal(snapfs_thinmap_seek(&m, 250, 280, SEEK_DATA), 280);

	assert_int_equal(snapfs_thinmap_bytes(&m, 0, end), 250);
	assert_int_equal(snapfs_thinmap_bytes(&m, 150, 320), 70);
	assert_int_equal(snapfs_thinmap_bytes(&m, 200, 300), 0);
	assert_int_equal(snapfs_thinmap_bytes(&m, 1050, 1060), 10);

	struct snapfs_thinmap empty = { NULL, 0 };

	assert_int_equal(snapfs_thinmap_seek(&empty, 5, end, SEEK_DATA), end);
	assert_int_equal(snapfs_thinmap_seek(&empty, 5, end, SEEK_HOLE), 5);
	assert_int_equal(snapfs_thinmap_bytes(&empty, 0, end), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_refuses),
		cmocka_unit_test(test_add),
		cmocka_unit_test(test_seek_and_bytes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
