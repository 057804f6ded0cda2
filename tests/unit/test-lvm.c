/* Unit tests for src/lvm.c (the lvs report parser, device paths, lvcreate's
 * words to errno, and the lvm command lines, run against a fake lvm) and
 * for src/exec.c (run real binaries: output, status, timeout, environment,
 * descriptors). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapfs.h"

#define UNUSED __attribute__((unused))

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;

	if (!f)
		return NULL;
	buf = calloc(1, 1 << 16);
	assert_non_null(buf);
	len = fread(buf, 1, (1 << 16) - 1, f);
	buf[len] = '\0';
	fclose(f);
	return buf;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* ---- snapfs_lvm_parse_lvs ------------------------------------------------ */

/* What `lvs --noheadings --nosuffix --units b --separator '|' -o
 * vg_name,lv_name,lv_size,lv_attr,segtype,origin,pool_lv,lv_kernel_major,
 * lv_kernel_minor,lv_tags` prints: two leading spaces, no padding.  lvs
 * prints -1 for the device numbers of an inactive LV; an empty field is
 * taken the same way. */
static const char lvs_text[] =
	"  vg0|web|10737418240|-wi-ao----|linear|||253|1|\n"
	"  vg0|cold|5368709120|-wi-------|linear|||||\n"
	"  vg0|cold2|5368709120|-wi-------|linear|||-1|-1|\n"
	"  vg0|db|21474836480|owi-aos---|linear|||253|2|\n"
	"  vg0|db_backup|2147483648|swi-a-s---|snapshot|db||253|3|\n"
	"  vg1|pool|107374182400|twi-aotz--|thin-pool|||253|6|\n"
	"  vg1|thinvol|53687091200|Vwi-aotz--|thin||pool|253|8|\n"
	"  vg1|thinsnap|53687091200|Vwi---tz-k|thin|thinvol|pool|-1|-1|\n"
	"  vg0|web_snapfs_6744f1a2_0|10737418240|swi-a-s---|snapshot|web||253|9|"
	"snapfs,snapfs_owner_0123456789abcdef\n"
	"  this line is not lvs output\n"
	"  vg0|short|1\n"
	"  |noname|1|-wi-a-----|linear|||253|20|\n"
	"  vg0||1|-wi-a-----|linear|||253|21|\n"
	"  vg0|toomany|1|-wi-a-----|linear|||253|22|tag|extra\n"
	"\n"
	"  vg-1|lv-a|4194304|rwi-a-r---|raid1|||253|12|backup,other\n"
	"  vg0|merging|1048576|Owi-a-s---|linear|||253|13|\n"
	"  vg0|msnap|1048576|Swi-a-s---|snapshot|merging||253|14|\n"
	"  vg0|cached|1048576|Cwi-a-C---|cache|||253|15|\n"
	"  vg0|mirror|1048576|mwi-a-m---|mirror|||253|16|\n"
	"  vg0|vdopool|1048576|dwi-------|vdo-pool|||-1|-1|\n"
	"  vg0|lvol0_pmspare|1048576|ewi-------|linear|||-1|-1|\n"
	"  vg0|tagged|1048576|-wi-a-----|linear|||253|17|snapfs_owner_feedfeedfeedfeed\n"
	"  vg0|lookalike|1048576|-wi-a-----|linear|||253|18|"
	"snapfsx,my_snapfs,snapfs_other\n";

struct expect_lv {
	const char *vg, *lv;
	uint64_t size;
	const char *attr, *segtype, *origin, *pool;
	int major, minor;
	bool thin, snapfs_owned, is_snapshot, is_ordinary;
	const char *owner;
};

static const struct expect_lv expected_lvs[] = {
	{ "vg0", "web", 10737418240ULL, "-wi-ao----", "linear", "", "", 253, 1, false,
	  false, false, true, "" },
	{ "vg0", "cold", 5368709120ULL, "-wi-------", "linear", "", "", -1, -1, false,
	  false, false, true, "" },
	{ "vg0", "cold2", 5368709120ULL, "-wi-------", "linear", "", "", -1, -1, false,
	  false, false, true, "" },
	{ "vg0", "db", 21474836480ULL, "owi-aos---", "linear", "", "", 253, 2, false,
	  false, false, true, "" },
	{ "vg0", "db_backup", 2147483648ULL, "swi-a-s---", "snapshot", "db", "", 253, 3,
	  false, false, true, false, "" },
	{ "vg1", "pool", 107374182400ULL, "twi-aotz--", "thin-pool", "", "", 253, 6,
	  false, false, false, false, "" },
	{ "vg1", "thinvol", 53687091200ULL, "Vwi-aotz--", "thin", "", "pool", 253, 8,
	  true, false, false, true, "" },
	{ "vg1", "thinsnap", 53687091200ULL, "Vwi---tz-k", "thin", "thinvol", "pool", -1,
	  -1, true, false, true, false, "" },
	{ "vg0", "web_snapfs_6744f1a2_0", 10737418240ULL, "swi-a-s---", "snapshot", "web",
	  "", 253, 9, false, true, true, false, "snapfs_owner_0123456789abcdef" },
	{ "vg-1", "lv-a", 4194304, "rwi-a-r---", "raid1", "", "", 253, 12, false, false,
	  false, true, "" },
	{ "vg0", "merging", 1048576, "Owi-a-s---", "linear", "", "", 253, 13, false,
	  false, false, true, "" },
	{ "vg0", "msnap", 1048576, "Swi-a-s---", "snapshot", "merging", "", 253, 14,
	  false, false, true, false, "" },
	{ "vg0", "cached", 1048576, "Cwi-a-C---", "cache", "", "", 253, 15, false, false,
	  false, true, "" },
	{ "vg0", "mirror", 1048576, "mwi-a-m---", "mirror", "", "", 253, 16, false, false,
	  false, true, "" },
	{ "vg0", "vdopool", 1048576, "dwi-------", "vdo-pool", "", "", -1, -1, false,
	  false, false, false, "" },
	{ "vg0", "lvol0_pmspare", 1048576, "ewi-------", "linear", "", "", -1, -1, false,
	  false, false, false, "" },
	/* An owner tag without the snapfs tag: not snapfs's to remove. */
	{ "vg0", "tagged", 1048576, "-wi-a-----", "linear", "", "", 253, 17, false, false,
	  false, true, "snapfs_owner_feedfeedfeedfeed" },
	{ "vg0", "lookalike", 1048576, "-wi-a-----", "linear", "", "", 253, 18, false,
	  false, false, true, "" },
};

static void assert_lv(const struct snapfs_lv *got, const struct expect_lv *e)
{
	assert_string_equal(got->vg, e->vg);
	assert_string_equal(got->lv, e->lv);
	assert_true(got->size == e->size);
	assert_string_equal(got->attr, e->attr);
	assert_string_equal(got->segtype, e->segtype);
	assert_string_equal(got->origin, e->origin);
	assert_string_equal(got->pool, e->pool);
	assert_int_equal(got->major, e->major);
	assert_int_equal(got->minor, e->minor);
	assert_int_equal(got->thin, e->thin);
	assert_int_equal(got->snapfs_owned, e->snapfs_owned);
	assert_int_equal(got->is_snapshot, e->is_snapshot);
	assert_int_equal(got->is_ordinary, e->is_ordinary);
	assert_string_equal(got->owner, e->owner);
}

static void test_parse_lvs(void **state UNUSED)
{
	struct snapfs_lv_list l = { 0 };
	size_t n = sizeof(expected_lvs) / sizeof(expected_lvs[0]);

	assert_int_equal(snapfs_lvm_parse_lvs(lvs_text, &l), 0);
	assert_int_equal(l.n, n);
	for (size_t i = 0; i < n; i++)
		assert_lv(&l.lv[i], &expected_lvs[i]);
	snapfs_lvm_list_free(&l);
	assert_null(l.lv);
	assert_int_equal(l.n, 0);
}

static void test_parse_lvs_empty(void **state UNUSED)
{
	struct snapfs_lv_list l;

	memset(&l, 0xaa, sizeof(l));
	assert_int_equal(snapfs_lvm_parse_lvs("", &l), 0);
	assert_int_equal(l.n, 0);
	snapfs_lvm_list_free(&l);

	memset(&l, 0xaa, sizeof(l));
	assert_int_equal(snapfs_lvm_parse_lvs("\n\n  \n  garbage\n", &l), 0);
	assert_int_equal(l.n, 0);
	snapfs_lvm_list_free(&l);
}

/* More lines than the first allocation holds; no newline at the end. */
static void test_parse_lvs_many(void **state UNUSED)
{
	struct snapfs_lv_list l = { 0 };
	char *text = calloc(1, 100 * 64);
	size_t o = 0;

	assert_non_null(text);
	for (int i = 0; i < 100; i++)
		o += (size_t)sprintf(text + o,
				     "%s  vg0|lv%d|%d|-wi-a-----|linear|||253|%d|",
				     i ? "\n" : "", i, 1024 * i, i);
	assert_int_equal(snapfs_lvm_parse_lvs(text, &l), 0);
	assert_int_equal(l.n, 100);
	for (int i = 0; i < 100; i++) {
		char name[16];

		snprintf(name, sizeof(name), "lv%d", i);
		assert_string_equal(l.lv[i].lv, name);
		assert_int_equal(l.lv[i].minor, i);
		assert_true(l.lv[i].size == 1024u * (unsigned)i);
	}
	snapfs_lvm_list_free(&l);
	free(text);
}

static void test_find(void **state UNUSED)
{
	struct snapfs_lv_list l = { 0 };
	const struct snapfs_lv *lv;

	assert_int_equal(snapfs_lvm_parse_lvs(lvs_text, &l), 0);
	lv = snapfs_lvm_find(&l, "vg1", "thinsnap");
	assert_non_null(lv);
	assert_string_equal(lv->origin, "thinvol");
	lv = snapfs_lvm_find(&l, "vg-1", "lv-a");
	assert_non_null(lv);
	assert_int_equal(lv->minor, 12);
	assert_null(snapfs_lvm_find(&l, "vg1", "web")); /* web is in vg0 */
	assert_null(snapfs_lvm_find(&l, "vg0", "we"));
	assert_null(snapfs_lvm_find(&l, "vg0", "web "));
	assert_null(snapfs_lvm_find(&l, "", ""));
	snapfs_lvm_list_free(&l);

	/* An empty list. */
	assert_null(snapfs_lvm_find(&l, "vg0", "web"));
}

/* ---- device-mapper names and paths -------------------------------------- */

static void test_dm_path(void **state UNUSED)
{
	char out[300];

	assert_int_equal(snapfs_lvm_dm_path("vg-1", "lv-a", out, sizeof(out)), 0);
	assert_string_equal(out, "/dev/mapper/vg--1-lv--a");
	assert_int_equal(snapfs_lvm_dm_path("vg0", "root", out, sizeof(out)), 0);
	assert_string_equal(out, "/dev/mapper/vg0-root");
	assert_int_equal(snapfs_lvm_dm_path("a--b", "c-", out, sizeof(out)), 0);
	assert_string_equal(out, "/dev/mapper/a----b-c--");
	assert_int_equal(snapfs_lvm_dm_path("vg0", "root", out, 10), -ENAMETOOLONG);
	assert_int_equal(snapfs_lvm_dm_path("vg0", "root", out, 16), -ENAMETOOLONG);
}

/* The name sysfs shows for a device-mapper device, against an LV. */
static void test_dm_name_is(void **state UNUSED)
{
	struct snapfs_lv lv = { .vg = "my-vg", .lv = "a-b" };

	assert_true(snapfs_lvm_dm_name_is(&lv, "my--vg-a--b\n"));
	assert_true(snapfs_lvm_dm_name_is(&lv, "my--vg-a--b"));
	assert_false(snapfs_lvm_dm_name_is(&lv, "my-vg-a-b\n"));
	assert_false(snapfs_lvm_dm_name_is(&lv, "my--vg-a--b2\n"));
	assert_false(snapfs_lvm_dm_name_is(&lv, "my--vg-a--\n"));
	assert_false(snapfs_lvm_dm_name_is(&lv, "\n"));
	assert_false(snapfs_lvm_dm_name_is(&lv, ""));
	snprintf(lv.vg, sizeof(lv.vg), "vg0");
	snprintf(lv.lv, sizeof(lv.lv), "moved");
	assert_false(snapfs_lvm_dm_name_is(&lv, "vg0-a\n"));
	assert_true(snapfs_lvm_dm_name_is(&lv, "vg0-moved\n"));
}

/* An LV listed inactive, or whose device number names no device, is not
 * there (no lvm command is run to say so). */
static void test_still_there_without_device(void **state UNUSED)
{
	struct snapfs_lv lv = { .vg = "vg0", .lv = "lv", .major = -1, .minor = -1 };

	assert_false(snapfs_lvm_still_there(&lv));
	lv.major = 4095;
	lv.minor = 1048575;
	assert_false(snapfs_lvm_still_there(&lv));
}

/* A path that fits exactly is accepted: "/dev/mapper/vg0-root" (20 bytes)
 * fits in 21. */
/* The longest names it accepts, all dashes, each dash doubled. */
static void test_dm_path_longest_names(void **state UNUSED)
{
	char vg[256], lv[256], out[1100], want[1100];

	memset(vg, '-', 255);
	memset(lv, '-', 255);
	vg[255] = lv[255] = '\0';
	memcpy(want, "/dev/mapper/", 12);
	memset(want + 12, '-', 510);
	want[522] = '-';
	memset(want + 523, '-', 510);
	want[1033] = '\0';
	assert_int_equal(snapfs_lvm_dm_path(vg, lv, out, sizeof(out)), 0);
	assert_string_equal(out, want);
	assert_int_equal(snapfs_lvm_dm_path(vg, lv, out, 1033), -ENAMETOOLONG);
	memset(vg, 'v', 255);
	vg[255] = '\0';
	assert_int_equal(snapfs_lvm_dm_path(vg, "x", out, sizeof(out)), 0);
	assert_int_equal(strlen(out), 12 + 255 + 1 + 1);
	char longer[257];

	memset(longer, 'v', 256);
	longer[256] = '\0';
	assert_int_equal(snapfs_lvm_dm_path(longer, "x", out, sizeof(out)), -ENAMETOOLONG);
}

static void test_dm_path_exact_fit(void **state UNUSED)
{
	char out[300];

	assert_int_equal(snapfs_lvm_dm_path("vg0", "root", out, 21), 0);
	assert_string_equal(out, "/dev/mapper/vg0-root");
	assert_int_equal(snapfs_lvm_dm_path("vg0", "root", out, 20), -ENAMETOOLONG);
}

/* Whatever dashes the names hold, the dm path leads back to the same LV
 * and not to its look-alikes. */
static void test_dm_path_round_trip(void **state UNUSED)
{
	static const char lvs[] = "  a-b|c|1|-wi-a-----|linear|||253|40|\n"
				  "  a|b-c|1|-wi-a-----|linear|||253|41|\n"
				  "  a--b|c|1|-wi-a-----|linear|||253|42|\n"
				  "  a|b--c|1|-wi-a-----|linear|||253|43|\n"
				  "  a-|b|1|-wi-a-----|linear|||253|44|\n"
				  "  vg_0.x+y|lv_0.x+y|1|-wi-a-----|linear|||253|45|\n";
	struct snapfs_lv_list l = { 0 };

	assert_int_equal(snapfs_lvm_parse_lvs(lvs, &l), 0);
	assert_int_equal(l.n, 6);
	for (size_t i = 0; i < l.n; i++) {
		char path[300];
		const struct snapfs_lv *lv;

		assert_int_equal(
			snapfs_lvm_dm_path(l.lv[i].vg, l.lv[i].lv, path, sizeof(path)),
			0);
		lv = snapfs_lvm_resolve_path(&l, path);
		if (lv != &l.lv[i])
			fail_msg("%s resolves to %s/%s, not %s/%s", path,
				 lv ? lv->vg : "-", lv ? lv->lv : "-", l.lv[i].vg,
				 l.lv[i].lv);
	}
	snapfs_lvm_list_free(&l);
}

static void test_resolve_path(void **state UNUSED)
{
	static const char lvs[] = "  vg-1|lv-a|1|-wi-a-----|linear|||253|5|\n"
				  "  vg0|lvx|1|-wi-------|linear|||-1|-1|\n"
				  "  vg0|web|1|-wi-a-----|linear|||253|1|\n";
	struct snapfs_lv_list l = { 0 };
	const struct snapfs_lv *lv;

	assert_int_equal(snapfs_lvm_parse_lvs(lvs, &l), 0);

	lv = snapfs_lvm_resolve_path(&l, "/dev/mapper/vg--1-lv--a");
	assert_ptr_equal(lv, &l.lv[0]);
	/* Inactive: no node, but the /dev/VG/LV name still says which. */
	lv = snapfs_lvm_resolve_path(&l, "/dev/vg0/lvx");
	assert_ptr_equal(lv, &l.lv[1]);

	/* A character device, not a block device, and not /dev/VG/LV. */
	assert_null(snapfs_lvm_resolve_path(&l, "/dev/null"));
	assert_null(snapfs_lvm_resolve_path(&l, "/nonexistent/x/y"));
	assert_null(snapfs_lvm_resolve_path(&l, "/dev/vg0/lvx/more"));
	assert_null(snapfs_lvm_resolve_path(&l, "/dev/vg0/"));
	assert_null(snapfs_lvm_resolve_path(&l, "/dev//lvx"));
	assert_null(snapfs_lvm_resolve_path(&l, "/dev/vg0/nope"));
	assert_null(snapfs_lvm_resolve_path(&l, "/dev/mapper/control"));
	assert_null(snapfs_lvm_resolve_path(&l, "/dev/mapper/vg0-nope"));
	assert_null(snapfs_lvm_resolve_path(&l, "/dev/mapper/vg--1-lv-a"));
	assert_null(snapfs_lvm_resolve_path(&l, "/dev/mapper/-web"));
	assert_null(snapfs_lvm_resolve_path(&l, "/dev/mapper/vg0-"));
	assert_null(snapfs_lvm_resolve_path(&l, ""));
	assert_null(snapfs_lvm_resolve_path(&l, "vg0/web"));
	snapfs_lvm_list_free(&l);
}

/* A block device node is matched by its device number, wherever it is. */
static void test_resolve_path_by_device_number(void **state UNUSED)
{
	static const char lvs[] = "  vg0|web|1|-wi-a-----|linear|||253|77|\n"
				  "  vg0|db|1|-wi-a-----|linear|||253|78|\n";
	struct snapfs_lv_list l = { 0 };
	char dir[] = "/tmp/snapfs-test-lvm-XXXXXX";
	char node[64], other[64], chr[64];

	assert_non_null(mkdtemp(dir));
	snprintf(node, sizeof(node), "%s/dm-77", dir);
	snprintf(other, sizeof(other), "%s/dm-99", dir);
	snprintf(chr, sizeof(chr), "%s/chr", dir);
	if (mknod(node, S_IFBLK | 0600, makedev(253, 77)) < 0) {
		rmdir(dir);
		if (errno == EPERM)
			skip(); /* no CAP_MKNOD here */
		fail_msg("mknod: %s", strerror(errno));
	}
	assert_int_equal(mknod(other, S_IFBLK | 0600, makedev(253, 99)), 0);
	assert_int_equal(mknod(chr, S_IFCHR | 0600, makedev(253, 78)), 0);
	assert_int_equal(snapfs_lvm_parse_lvs(lvs, &l), 0);

	assert_ptr_equal(snapfs_lvm_resolve_path(&l, node), &l.lv[0]);
	assert_null(snapfs_lvm_resolve_path(&l, other));
	/* Same numbers on a character device: not a disk. */
	assert_null(snapfs_lvm_resolve_path(&l, chr));

	snapfs_lvm_list_free(&l);
	unlink(node);
	unlink(other);
	unlink(chr);
	rmdir(dir);
}

/* ---- snapfs_lvm_errno: LVM2's own words --------------------------------- */

struct words {
	const char *text;
	int err;
};

static void assert_words(const struct words *w, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int got = snapfs_lvm_errno(w[i].text);

		if (got != w[i].err)
			fail_msg("\"%s\": got %d (%s), expected %d (%s)", w[i].text, got,
				 strerror(-got), w[i].err, strerror(-w[i].err));
	}
}

static void assert_one_line(const char *in, const char *want)
{
	char *got = snapfs_lvm_one_line(in);

	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

/* lvcreate's stderr, as it comes, becomes one log line. */
static void test_one_line(void **state)
{
	(void)state;
	assert_one_line("", "");
	assert_one_line("\n\n  \n", "");
	assert_one_line("  Volume group \"vg0\" not found", "Volume group \"vg0\" not found");
	assert_one_line("  LV is already locked with incompatible mode: vg/disk\n"
			"  Failed to lock origin LV vg/disk\n",
			"LV is already locked with incompatible mode: vg/disk; "
			"Failed to lock origin LV vg/disk");
	assert_one_line("a\nb\nc", "a; b; c");
	assert_one_line("\tx \r\n\n  y\t", "x; y");
}

static void test_errno_nospace(void **state UNUSED)
{
	/* lib/metadata/lv_manip.c of LVM2, and what lvcreate prints. */
	static const struct words w[] = {
		{ "  Volume group \"vg\" has insufficient free space (3 extents): 25 "
		  "required.",
		  -ENOSPC },
		{ "  Insufficient free space: 25 extents needed, but only 3 available",
		  -ENOSPC },
		{ "  Insufficient suitable allocatable extents for logical volume "
		  "web_snapfs_1_0: 2560 more required",
		  -ENOSPC },
	};

	assert_words(w, sizeof(w) / sizeof(w[0]));
}

/* lvcreate refuses a thin snapshot in a pool past its threshold with
 * "Cannot create new thin volume, free space in thin pool VG/POOL reached
 * threshold." (LVM2 lv_manip.c): ENOSPC. */
static void test_errno_thin_pool_threshold(void **state UNUSED)
{
	static const struct words w[] = {
		{ "  Cannot create new thin volume, free space in thin pool vg0/pool "
		  "reached threshold.",
		  -ENOSPC },
		{ "  WARNING: Remaining free space in metadata of thin pool vg0/pool is "
		  "too low (76.46% >= 75.00%). Resize is recommended.\n"
		  "  Cannot create new thin volume, free space in thin pool vg0/pool "
		  "reached threshold.",
		  -ENOSPC },
	};

	assert_words(w, sizeof(w) / sizeof(w[0]));
}

static void test_errno_busy(void **state UNUSED)
{
	static const struct words w[] = {
		/* lvmlockd (lib/locking/lvmlockd.c). */
		{ "  LV locked by other host: vg0/web\n  Failed to lock logical volume "
		  "vg0/web.",
		  -EBUSY },
		{ "  VG vg0 lock failed: held by other host.", -EBUSY },
		/* lvmlockd, as LVM 2.03.16 says it: lvcreate --snapshot wants
		 * the origin's lock exclusive, and this host holds it shared
		 * (lvchange -asy). */
		{ "  LV is already locked with incompatible mode: vg0/web\n"
		  "  Failed to lock origin LV vg0/web",
		  -EBUSY },
		/* Clustered VG (lv_manip.c): the origin active on another node. */
		{ "  web must be active exclusively to create snapshot", -EBUSY },
		/* pvmove holds the origin (lv_manip.c). */
		{ "  Snapshots of locked devices are not supported yet", -EBUSY },
		{ "  Logical volume vg0/web_snapfs_1_0 in use.", -EBUSY },
	};

	assert_words(w, sizeof(w) / sizeof(w[0]));
}

static void test_errno_other(void **state UNUSED)
{
	static const struct words w[] = {
		{ "  Volume group \"vg9\" not found\n  Cannot process volume group vg9",
		  -ENOENT },
		{ "  Logical volume \"snap\" already exists in volume group \"vg0\"",
		  -EEXIST },
		{ "  Internal error: something unforeseen.", -EIO },
		{ "", -EIO },
		{ "  Snapshots of snapshots are not supported yet.", -EIO },
	};

	assert_words(w, sizeof(w) / sizeof(w[0]));
}

/* "exceeds the size of thin pool" is LVM2's over-provisioning WARNING,
 * printed on creates that succeed: a warning line must not decide the
 * errno of a failure printed beside it. */
static void test_errno_warning_does_not_decide(void **state UNUSED)
{
	static const struct words w[] = {
		{ "  WARNING: Sum of all thin volume sizes (20.00 GiB) exceeds the size "
		  "of thin pool vg0/pool (10.00 GiB).\n"
		  "  LV locked by other host: vg0/web",
		  -EBUSY },
	};

	assert_words(w, sizeof(w) / sizeof(w[0]));
}

/* ---- the lvm command lines, against a fake lvm ----------------------------
 *
 * snapfs_exec gives the command a clean environment, so the fake lvm has
 * its directory written into it. */

struct fake_lvm {
	char dir[64];
	char bin[96];
};

static struct fake_lvm fake;

static void fake_path(char *out, size_t len, const char *file)
{
	snprintf(out, len, "%s/%s", fake.dir, file);
}

static void fake_reply(const char *out, const char *err, int status)
{
	char p[128], st[16];

	fake_path(p, sizeof(p), "stdout");
	write_file(p, out);
	fake_path(p, sizeof(p), "stderr");
	write_file(p, err);
	fake_path(p, sizeof(p), "status");
	snprintf(st, sizeof(st), "%d\n", status);
	write_file(p, st);
	fake_path(p, sizeof(p), "calls");
	unlink(p);
}

static int fake_calls(void)
{
	char p[128];
	char *s;
	int n = 0;

	fake_path(p, sizeof(p), "calls");
	s = read_file(p);
	if (!s)
		return 0;
	for (char *c = s; *c; c++)
		n += *c == '\n';
	free(s);
	return n;
}

/* The argv the fake lvm got last, one argument a line. */
static void assert_fake_args(const char *const *expected)
{
	char p[128];
	char *got;
	size_t o = 0;
	char want[4096];

	for (; *expected; expected++)
		o += (size_t)snprintf(want + o, sizeof(want) - o, "%s\n", *expected);
	fake_path(p, sizeof(p), "args");
	got = read_file(p);
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static int fake_setup(void **state UNUSED)
{
	FILE *f;

	snprintf(fake.dir, sizeof(fake.dir), "/tmp/snapfs-fake-lvm-XXXXXX");
	if (!mkdtemp(fake.dir))
		return -1;
	fake_path(fake.bin, sizeof(fake.bin), "lvm");
	f = fopen(fake.bin, "w");
	if (!f)
		return -1;
	fprintf(f,
		"#!/bin/sh\n"
		"d='%s'\n"
		"printf '%%s\\n' \"$@\" > \"$d/args\"\n"
		"echo call >> \"$d/calls\"\n"
		"cat \"$d/stdout\"\n"
		"cat \"$d/stderr\" >&2\n"
		"exit \"$(cat \"$d/status\")\"\n",
		fake.dir);
	fclose(f);
	chmod(fake.bin, 0755);
	fake_reply("", "", 0);
	snapfs_lvm_configure(fake.bin, 10000);
	return 0;
}

static int fake_teardown(void **state UNUSED)
{
	static const char *const files[] = { "lvm",    "args",	 "calls",
					     "stdout", "stderr", "status" };

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char p[128];

		fake_path(p, sizeof(p), files[i]);
		unlink(p);
	}
	rmdir(fake.dir);
	snapfs_lvm_configure(LVM_PATH, 120 * 1000);
	return 0;
}

static void test_lvm_list_command(void **state UNUSED)
{
	static const char *const vgs[] = { "vg0", "vg1", NULL };
	static const char *const args[] = {
		"lvs",
		"--noheadings",
		"--nosuffix",
		"--units",
		"b",
		"--separator",
		"|",
		"-o",
		"vg_name,lv_name,lv_size,lv_attr,segtype,origin,pool_lv,lv_kernel_major,"
		"lv_kernel_minor,lv_tags",
		"vg0",
		"vg1",
		NULL,
	};
	struct snapfs_lv_list l = { 0 };

	fake_reply(lvs_text, "", 0);
	assert_int_equal(snapfs_lvm_list(vgs, &l), 0);
	assert_fake_args(args);
	assert_int_equal(l.n, sizeof(expected_lvs) / sizeof(expected_lvs[0]));
	assert_lv(&l.lv[7], &expected_lvs[7]);
	snapfs_lvm_list_free(&l);

	/* lvs failing is an error, not an empty list. */
	fake_reply("", "  Volume group \"vg9\" not found", 5);
	assert_int_equal(snapfs_lvm_list(vgs, &l), -EIO);
	assert_int_equal(l.n, 0);
}

static void test_snapshot_create_classic(void **state UNUSED)
{
	struct snapfs_lv_list l = { 0 };
	char *why = (char *)"untouched";

	assert_int_equal(snapfs_lvm_parse_lvs(lvs_text, &l), 0);
	fake_reply("  Logical volume \"web_snapfs_1_0\" created.\n", "", 0);
	assert_int_equal(
		snapfs_lvm_snapshot_create(&l.lv[0], "web_snapfs_1_0", "20%ORIGIN",
					   "snapfs_owner_0123456789abcdef", &why),
		0);
	assert_null(why);
	{
		static const char *const args[] = {
			"lvcreate",	"--snapshot",
			"--permission", "r",
			"--name",	"web_snapfs_1_0",
			"--addtag",	"snapfs",
			"--addtag",	"snapfs_owner_0123456789abcdef",
			"--extents",	"20%ORIGIN",
			"vg0/web",	NULL,
		};

		assert_fake_args(args);
	}
	assert_int_equal(
		snapfs_lvm_snapshot_create(&l.lv[0], "web_snapfs_1_1", "1G", "o", &why),
		0);
	{
		static const char *const args[] = {
			"lvcreate", "--snapshot", "--permission",
			"r",	    "--name",	  "web_snapfs_1_1",
			"--addtag", "snapfs",	  "--addtag",
			"o",	    "--size",	  "1G",
			"vg0/web",  NULL,
		};

		assert_fake_args(args);
	}
	snapfs_lvm_list_free(&l);
}

static void test_snapshot_create_thin(void **state UNUSED)
{
	static const char *const args[] = {
		"lvcreate",
		"--snapshot",
		"--permission",
		"r",
		"--name",
		"thinvol_snapfs_1_0",
		"--addtag",
		"snapfs",
		"--addtag",
		"o",
		"--setactivationskip",
		"n",
		"--activate",
		"y",
		"vg1/thinvol",
		NULL,
	};
	struct snapfs_lv_list l = { 0 };
	char *why = NULL;

	assert_int_equal(snapfs_lvm_parse_lvs(lvs_text, &l), 0);
	assert_int_equal(snapfs_lvm_snapshot_create(&l.lv[6], "thinvol_snapfs_1_0",
						    "20%ORIGIN", "o", &why),
			 0);
	assert_fake_args(args);
	snapfs_lvm_list_free(&l);
}

static void test_snapshot_create_failures(void **state UNUSED)
{
	static const char nospace[] = "  Volume group \"vg0\" has insufficient free "
				      "space (3 extents): 25 required.";
	struct snapfs_lv_list l = { 0 };
	char *why = NULL;

	assert_int_equal(snapfs_lvm_parse_lvs(lvs_text, &l), 0);
	fake_reply("", nospace, 5);
	assert_int_equal(snapfs_lvm_snapshot_create(&l.lv[0], "s", "1G", "o", &why),
			 -ENOSPC);
	assert_non_null(why);
	assert_string_equal(why, nospace + 2); /* LVM's indent trimmed */
	free(why);

	/* A name that exists or an origin that vanished is snapfs's fault or a
	 * race, not something the caller can act on: -EIO. */
	fake_reply("", "  Logical volume \"s\" already exists in volume group \"vg0\"",
		   5);
	assert_int_equal(snapfs_lvm_snapshot_create(&l.lv[0], "s", "1G", "o", &why),
			 -EIO);
	free(why);
	fake_reply("", "  Failed to find logical volume \"vg0/web\"\n  not found", 5);
	assert_int_equal(snapfs_lvm_snapshot_create(&l.lv[0], "s", "1G", "o", &why),
			 -EIO);
	free(why);

	/* Silent failure. */
	fake_reply("", "", 3);
	assert_int_equal(snapfs_lvm_snapshot_create(&l.lv[0], "s", "1G", "o", &why),
			 -EIO);
	assert_non_null(why);
	assert_true(strlen(why) > 0);
	free(why);
	snapfs_lvm_list_free(&l);
}

static void test_snapshot_remove_command(void **state UNUSED)
{
	static const char *const args[] = {
		"lvremove",
		"--yes",
		"--select",
		"lv_name=\"web_snapfs_1_0\" && lv_tags=\"snapfs\" && "
		"lv_tags=\"snapfs_owner_0123456789abcdef\"",
		"vg0",
		NULL,
	};

	fake_reply("  Logical volume \"web_snapfs_1_0\" successfully removed.\n", "", 0);
	assert_int_equal(snapfs_lvm_snapshot_remove("vg0", "web_snapfs_1_0",
						    "snapfs_owner_0123456789abcdef"),
			 0);
	assert_fake_args(args);
	assert_int_equal(fake_calls(), 1);
}

/* A removal that keeps failing is tried a bounded number of times, with a
 * pause between tries, and its errno comes back. */
static void test_snapshot_remove_retries(void **state UNUSED)
{
	int64_t t0 = now_ms();

	fake_reply("", "  Logical volume vg0/s in use.", 5);
	assert_int_equal(snapfs_lvm_snapshot_remove("vg0", "s", "o"), -EBUSY);
	assert_true(fake_calls() > 1);
	assert_true(fake_calls() <= 10);
	assert_true(now_ms() - t0 < 30 * 1000);

	/* Removed at the first try: one call. */
	fake_reply("", "", 0);
	assert_int_equal(snapfs_lvm_snapshot_remove("vg0", "s", "o"), 0);
	assert_int_equal(fake_calls(), 1);
}

static void test_sweep_command(void **state UNUSED)
{
	static const char *const args_owner[] = {
		"lvremove", "--yes",
		"--select", "lv_tags=\"snapfs\" && lv_tags=\"snapfs_owner_x\"",
		NULL,
	};
	static const char *const args_any[] = {
		"lvremove", "--yes", "--select", "lv_tags=\"snapfs\"", NULL,
	};

	fake_reply("  Logical volume \"a_snapfs_1_0\" successfully removed.\n"
		   "  Logical volume \"b_snapfs_1_1\" successfully removed.\n",
		   "", 0);
	assert_int_equal(snapfs_lvm_sweep("snapfs_owner_x"), 2);
	assert_fake_args(args_owner);

	fake_reply("", "", 0);
	assert_int_equal(snapfs_lvm_sweep(NULL), 0);
	assert_fake_args(args_any);

	fake_reply("", "  LV locked by other host: vg0/a_snapfs_1_0", 5);
	assert_int_equal(snapfs_lvm_sweep(NULL), -EBUSY);
}

/* ---- snapfs_exec ---------------------------------------------------------- */

static void test_exec_stdout(void **state UNUSED)
{
	const char *argv[] = { "/bin/echo", "hello", "world", NULL };
	struct snapfs_exec_result r;

	assert_int_equal(snapfs_exec(argv, 10000, &r), 0);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "hello world\n");
	assert_string_equal(r.err, "");
	snapfs_exec_result_free(&r);
	assert_null(r.out);
	assert_null(r.err);
}

static void test_exec_stderr_and_status(void **state UNUSED)
{
	const char *argv[] = { "/bin/sh", "-c", "echo err >&2; exit 3", NULL };
	const char *argv2[] = { "/bin/sh", "-c",
				"printf 'x\\n\\n'; printf 'a b\\n\\n\\n' >&2", NULL };
	struct snapfs_exec_result r;

	assert_int_equal(snapfs_exec(argv, 10000, &r), 0);
	assert_int_equal(r.status, 3);
	assert_string_equal(r.err, "err");
	assert_string_equal(r.out, "");
	snapfs_exec_result_free(&r);

	/* stderr loses its trailing newlines; stdout is kept as it is. */
	assert_int_equal(snapfs_exec(argv2, 10000, &r), 0);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "x\n\n");
	assert_string_equal(r.err, "a b");
	snapfs_exec_result_free(&r);
}

static void test_exec_killed_by_signal(void **state UNUSED)
{
	const char *argv[] = { "/bin/sh", "-c", "echo before; kill -9 $$", NULL };
	struct snapfs_exec_result r;

	assert_int_equal(snapfs_exec(argv, 10000, &r), 0);
	assert_int_equal(r.status, -1);
	assert_string_equal(r.out, "before\n");
	snapfs_exec_result_free(&r);
}

/* Both pipes well past their kernel buffers, at once: no deadlock, nothing
 * lost. */
static void test_exec_large_output(void **state UNUSED)
{
	const char *argv[] = { "/bin/sh", "-c", "seq 1 100000 >&2 & seq 1 200000; wait",
			       NULL };
	struct snapfs_exec_result r;

	assert_int_equal(snapfs_exec(argv, 60000, &r), 0);
	assert_int_equal(r.status, 0);
	/* 9*2 + 90*3 + 900*4 + 9000*5 + 90000*6 + 100001*7 bytes. */
	assert_int_equal(strlen(r.out), 1288895);
	assert_string_equal(r.out + strlen(r.out) - 7, "200000\n");
	assert_int_equal(strlen(r.err), 588895 - 1); /* last newline trimmed */
	assert_string_equal(r.err + strlen(r.err) - 6, "100000");
	snapfs_exec_result_free(&r);
}

static void test_exec_output_bound(void **state UNUSED)
{
	const char *argv[] = { "/usr/bin/head", "-c", "17000000", "/dev/zero", NULL };
	struct snapfs_exec_result r;

	assert_int_equal(snapfs_exec(argv, 60000, &r), -E2BIG);
	snapfs_exec_result_free(&r);
}

static void assert_no_child_left(void)
{
	errno = 0;
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

static void test_exec_timeout(void **state UNUSED)
{
	const char *argv[] = { "/bin/sleep", "10", NULL };
	/* The shell dies; a grandchild keeps the pipes open. */
	const char *argv2[] = { "/bin/sh", "-c", "/bin/sleep 3 & /bin/sleep 3", NULL };
	struct snapfs_exec_result r;
	int64_t t0;

	t0 = now_ms();
	assert_int_equal(snapfs_exec(argv, 300, &r), -ETIMEDOUT);
	assert_true(now_ms() - t0 >= 300);
	assert_true(now_ms() - t0 < 2 * 300 + 200);
	assert_int_equal(r.status, -1);
	snapfs_exec_result_free(&r);
	/* Killed and reaped: no zombie. */
	assert_no_child_left();

	t0 = now_ms();
	assert_int_equal(snapfs_exec(argv2, 300, &r), -ETIMEDOUT);
	assert_true(now_ms() - t0 < 2 * 300 + 200);
	snapfs_exec_result_free(&r);
	assert_no_child_left();
}

static void test_exec_clean_environment(void **state UNUSED)
{
	const char *argv[] = { "/usr/bin/env", NULL };
	struct snapfs_exec_result r;
	char *saved = getenv("LVM_SYSTEM_DIR") ? strdup(getenv("LVM_SYSTEM_DIR")) : NULL;

	setenv("SNAPFS_TEST_SECRET", "leak", 1);
	setenv("LD_PRELOAD", "", 1);
	unsetenv("LVM_SYSTEM_DIR");
	assert_int_equal(snapfs_exec(argv, 10000, &r), 0);
	assert_string_equal(r.out, "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
				   "LC_ALL=C\n"
				   "LVM_SUPPRESS_FD_WARNINGS=1\n");
	snapfs_exec_result_free(&r);

	setenv("LVM_SYSTEM_DIR", "/tmp/snapfs-lvm-conf", 1);
	assert_int_equal(snapfs_exec(argv, 10000, &r), 0);
	assert_string_equal(r.out, "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
				   "LC_ALL=C\n"
				   "LVM_SUPPRESS_FD_WARNINGS=1\n"
				   "LVM_SYSTEM_DIR=/tmp/snapfs-lvm-conf\n");
	snapfs_exec_result_free(&r);

	unsetenv("SNAPFS_TEST_SECRET");
	unsetenv("LD_PRELOAD");
	if (saved)
		setenv("LVM_SYSTEM_DIR", saved, 1);
	else
		unsetenv("LVM_SYSTEM_DIR");
	free(saved);
}

static void test_exec_descriptors(void **state UNUSED)
{
	const char *ls[] = { "/bin/ls", "/proc/self/fd", NULL };
	const char *stdin_is[] = { "/usr/bin/readlink", "/proc/self/fd/0", NULL };
	const char *cat[] = { "/bin/cat", NULL };
	struct snapfs_exec_result r;
	int fd = open("/dev/null", O_RDONLY); /* no O_CLOEXEC, on purpose */
	int high = 57;

	assert_true(fd >= 0);
	assert_int_equal(dup2(fd, high), high);
	assert_int_equal(snapfs_exec(ls, 10000, &r), 0);
	/* 0-2, and 3 which ls itself opens to list the directory. */
	for (char *save = NULL, *tok = strtok_r(r.out, "\n", &save); tok;
	     tok = strtok_r(NULL, "\n", &save)) {
		int n = atoi(tok);

		if (n > 3)
			fail_msg("fd %d was inherited", n);
	}
	snapfs_exec_result_free(&r);
	close(fd);
	close(high);

	assert_int_equal(snapfs_exec(stdin_is, 10000, &r), 0);
	assert_string_equal(r.out, "/dev/null\n");
	snapfs_exec_result_free(&r);
	/* Reads end at once: stdin is not ours. */
	assert_int_equal(snapfs_exec(cat, 5000, &r), 0);
	assert_string_equal(r.out, "");
	snapfs_exec_result_free(&r);
}

static void test_exec_missing_binary(void **state UNUSED)
{
	const char *argv[] = { "/nonexistent/bin/lvm", "lvs", NULL };
	const char *relative[] = { "echo", "hi", NULL }; /* no PATH search */
	struct snapfs_exec_result r;

	assert_int_equal(snapfs_exec(argv, 5000, &r), -ENOENT);
	snapfs_exec_result_free(&r);
	assert_int_equal(snapfs_exec(relative, 5000, &r), -ENOENT);
	snapfs_exec_result_free(&r);
	assert_no_child_left();
}

/* After an error return of snapfs_exec (-ETIMEDOUT, -ENOENT, -E2BIG) there
 * is nothing for the caller to free: the lvm.c callers return at once. */
static void test_exec_error_leaves_nothing_to_free(void **state UNUSED)
{
	const char *missing[] = { "/nonexistent/bin/lvm", NULL };
	const char *slow[] = { "/bin/sh", "-c", "echo partial; exec /bin/sleep 10",
			       NULL };
	const char *big[] = { "/usr/bin/head", "-c", "17000000", "/dev/zero", NULL };
	const char *const *cases[] = { missing, slow, big };
	const int expect[] = { -ENOENT, -ETIMEDOUT, -E2BIG };
	bool left[3];

	for (int i = 0; i < 3; i++) {
		struct snapfs_exec_result r;

		assert_int_equal(snapfs_exec((const char *const *)cases[i],
					     i == 1 ? 300 : 60000, &r),
				 expect[i]);
		left[i] = r.out || r.err;
		snapfs_exec_result_free(&r); /* so that valgrind stays quiet either way */
	}
	for (int i = 0; i < 3; i++)
		if (left[i])
			fail_msg("snapfs_exec returned %d with output still allocated",
				 expect[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_lvs),
		cmocka_unit_test(test_parse_lvs_empty),
		cmocka_unit_test(test_parse_lvs_many),
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_dm_path),
		cmocka_unit_test(test_dm_name_is),
		cmocka_unit_test(test_still_there_without_device),
		cmocka_unit_test(test_dm_path_exact_fit),
		cmocka_unit_test(test_dm_path_longest_names),
		cmocka_unit_test(test_dm_path_round_trip),
		cmocka_unit_test(test_resolve_path),
		cmocka_unit_test(test_resolve_path_by_device_number),
		cmocka_unit_test(test_one_line),
		cmocka_unit_test(test_errno_nospace),
		cmocka_unit_test(test_errno_thin_pool_threshold),
		cmocka_unit_test(test_errno_busy),
		cmocka_unit_test(test_errno_other),
		cmocka_unit_test(test_errno_warning_does_not_decide),
		cmocka_unit_test_setup_teardown(test_lvm_list_command, fake_setup,
						fake_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_create_classic, fake_setup,
						fake_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_create_thin, fake_setup,
						fake_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_create_failures, fake_setup,
						fake_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_remove_command, fake_setup,
						fake_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_remove_retries, fake_setup,
						fake_teardown),
		cmocka_unit_test_setup_teardown(test_sweep_command, fake_setup,
						fake_teardown),
		cmocka_unit_test(test_exec_stdout),
		cmocka_unit_test(test_exec_stderr_and_status),
		cmocka_unit_test(test_exec_killed_by_signal),
		cmocka_unit_test(test_exec_large_output),
		cmocka_unit_test(test_exec_output_bound),
		cmocka_unit_test(test_exec_timeout),
		cmocka_unit_test(test_exec_clean_environment),
		cmocka_unit_test(test_exec_descriptors),
		cmocka_unit_test(test_exec_missing_binary),
		cmocka_unit_test(test_exec_error_leaves_nothing_to_free),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
