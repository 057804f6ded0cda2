/* Unit tests for the guest LVM2 reader (src/guest-lvm*.c, src/lvm-text.c):
 * PVs as a hostile guest could write them.
 *
 * Each PV is built here, in memory: the label in sector 1, the PV header,
 * one metadata area at 4 KiB (its header, then the text where the test
 * puts it, wrapped round the area's end if it runs past it), data from
 * 64 KiB on, in extents of 4 KiB.  The CRCs are computed by a bitwise
 * CRC-32 of its own, not by the reader's.  The log is kept (snapfs_log is
 * wrapped at link time): each refusal says one line naming what.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "snapfs.h"

#define UNUSED __attribute__((unused))
#define KiB 1024ull
#define MDA_START (4 * KiB)
#define MDA_SIZE (60 * KiB)
#define PE_START_SECTORS 128 /* 64 KiB */
#define EXTENT (4 * KiB)     /* extent_size = 8 */
#define DISK_SIZE (1024 * KiB)
#define PE_COUNT 240 /* (DISK_SIZE - 64 KiB) / EXTENT */

/* ---- the log ------------------------------------------------------------- */

static char log_text[16 * 1024];
static size_t log_len;
static unsigned log_lines;

void __wrap_snapfs_log(enum snapfs_log_level level, const char *fmt, ...);
void __wrap_snapfs_log(enum snapfs_log_level level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	printf("# %s\n", line);
	if (level == SNAPFS_LOG_DEBUG)
		return;
	log_len += snprintf(log_text + log_len, sizeof(log_text) - log_len, "%s\n", line);
	if (log_len >= sizeof(log_text))
		log_len = sizeof(log_text) - 1;
	log_lines++;
}

static void log_reset(void)
{
	log_len = 0;
	log_text[0] = '\0';
	log_lines = 0;
}

/* Exactly one line, saying all of what. */
static void assert_one_line(const char *a, const char *b)
{
	if (log_lines != 1 || !strstr(log_text, a) || (b && !strstr(log_text, b)))
		fail_msg("expected one line with \"%s\" and \"%s\"; the log was:\n%s", a,
			 b ? b : "", log_text);
}

/* ---- disks --------------------------------------------------------------- */

struct disk {
	uint8_t buf[DISK_SIZE];
	uint64_t size;
	unsigned reads_failing; /* not 0: reads fail */
};

static struct disk disks[3];
static const char *const disk_names[] = { "vda2", "vdb1", "vdc" };

static int disk_read(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct disk *d = ctx;

	assert_true(off <= d->size && len <= d->size - off);
	if (d->reads_failing)
		return -EIO;
	memcpy(buf, d->buf + off, len);
	return 0;
}

static uint32_t crc(uint32_t c, const uint8_t *p, size_t len)
{
	while (len--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
	}
	return c;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

#define INITIAL_CRC 0xf597a6cfu

/* The label sector and PV header of a PV of uuid, one metadata area. */
static void make_pv(struct disk *d, const char *uuid)
{
	uint8_t *l = d->buf + 512, *h = d->buf + MDA_START;

	memset(d->buf, 0, sizeof(d->buf));
	d->size = DISK_SIZE;
	d->reads_failing = 0;
	memcpy(l, "LABELONE", 8);
	put64(l + 8, 1);
	put32(l + 20, 32);
	memcpy(l + 24, "LVM2 001", 8);
	memcpy(l + 32, uuid, 32);
	put64(l + 64, DISK_SIZE);
	put64(l + 72, PE_START_SECTORS * 512); /* data area, then (0, 0) */
	put64(l + 104, MDA_START);
	put64(l + 112, MDA_SIZE); /* then (0, 0) */
	put32(l + 16, crc(INITIAL_CRC, l + 20, 512 - 20));
	memcpy(h + 4, " LVM2 x[5A%r0N*>", 16);
	put32(h + 20, 1);
	put64(h + 24, MDA_START);
	put64(h + 32, MDA_SIZE);
	put32(h, crc(INITIAL_CRC, h + 4, 512 - 4)); /* no text yet */
}

/* Put text (and its NUL) at off in d's metadata area, wrapping past the
 * area's end, and point raw_locn 0 at it. */
static void put_text_at(struct disk *d, const char *text, uint64_t off)
{
	uint8_t *h = d->buf + MDA_START;
	size_t len = strlen(text) + 1, first = len;

	if (off + len > MDA_SIZE)
		first = MDA_SIZE - off;
	memcpy(h + off, text, first);
	memcpy(h + 512, text + first, len - first);
	put64(h + 40, off);
	put64(h + 48, len);
	put32(h + 56, crc(crc(INITIAL_CRC, h + off, first), h + 512, len - first));
	put32(h, crc(INITIAL_CRC, h + 4, 512 - 4));
}

static void put_text(struct disk *d, const char *text)
{
	put_text_at(d, text, 512);
}

/* ---- metadata text --------------------------------------------------------- */

#define UUID_PV0 "PV0aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define UUID_PV1 "PV1bbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define UUID_PV2 "PV2ccccccccccccccccccccccccccccc"
#define UUID_VG0 "VG0xxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define UUID_VG1 "VG1yyyyyyyyyyyyyyyyyyyyyyyyyyyyy"

/* Each test's texts, freed after it (free_texts). */
static char *texts[256];
static size_t ntexts;

static char *text_of(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *text_of(const char *fmt, ...)
{
	char *s;
	va_list ap;

	va_start(ap, fmt);
	assert_true(vasprintf(&s, fmt, ap) >= 0);
	va_end(ap);
	assert_true(ntexts < sizeof(texts) / sizeof(*texts));
	texts[ntexts++] = s;
	return s;
}

static int free_texts(void **state UNUSED)
{
	while (ntexts)
		free(texts[--ntexts]);
	return 0;
}

/* An LVM ID with its dashes, as the text writes it (6-4-4-4-4-4-6). */
static const char *dashed(const char *u)
{
	static char out[4][40];
	static unsigned n;
	char *o = out[n++ % 4];

	snprintf(o, 40, "%.6s-%.4s-%.4s-%.4s-%.4s-%.4s-%.6s", u, u + 6, u + 10, u + 14,
		 u + 18, u + 22, u + 26);
	return o;
}

static char *pv_section(const char *key, const char *uuid, uint64_t pe_count)
{
	return text_of("%s {\nid = \"%s\"\ndevice = \"/dev/vda2\"\t# Hint only\n"
		       "status = [\"ALLOCATABLE\"]\nflags = []\ndev_size = 2048\n"
		       "pe_start = %u\npe_count = %llu\n}\n",
		       key, dashed(uuid), PE_START_SECTORS, (unsigned long long)pe_count);
}

/* A segment of one stripe: count extents from LV extent start, at pe of pv. */
static char *linear_seg(unsigned n, unsigned start, unsigned count, const char *pv,
			unsigned pe)
{
	return text_of("segment%u {\nstart_extent = %u\nextent_count = %u\n\n"
		       "type = \"striped\"\nstripe_count = 1\t# linear\n\n"
		       "stripes = [\n\"%s\", %u\n]\n}\n",
		       n, start, count, pv, pe);
}

static char *lv_section(const char *name, const char *status, unsigned nsegs,
			const char *segs)
{
	return text_of("%s {\nid = \"LV0000-aaaa-bbbb-cccc-dddd-eeee-ffffff\"\n"
		       "status = [%s]\nflags = []\ncreation_time = 1700000000\t# 2023\n"
		       "creation_host = \"guest\"\nsegment_count = %u\n\n%s}\n",
		       name, status, nsegs, segs);
}

#define VISIBLE "\"READ\", \"WRITE\", \"VISIBLE\""
#define HIDDEN "\"READ\", \"WRITE\""

static char *vg_text(const char *name, const char *uuid, unsigned seqno, const char *pvs,
		     const char *lvs)
{
	return text_of(
		"%s {\nid = \"%s\"\nseqno = %u\nformat = \"lvm2\"\n"
		"status = [\"RESIZEABLE\", \"READ\", \"WRITE\"]\nflags = []\n"
		"extent_size = 8\nmax_lv = 0\nmax_pv = 0\nmetadata_copies = 0\n\n"
		"physical_volumes {\n\n%s}\n\nlogical_volumes {\n\n%s}\n\n}\n"
		"# Generated by LVM2 version 2.03.16(2) (2022-05-18)\n\n"
		"contents = \"Text Format Volume Group\"\nversion = 1\n\n"
		"description = \"Created *after* executing 'lvcreate -L 40k vg0'\"\n\n"
		"creation_host = \"guest\"\t# Linux guest 6.1.0\n"
		"creation_time = 1700000000\t# Tue Nov 14 22:13:20 2023\n\n",
		name, dashed(uuid), seqno, pvs, lvs);
}

/* pv0 and pv1, a VG's physical_volumes on disks 0 and 1. */
static char *two_pvs(void)
{
	return text_of("%s%s", pv_section("pv0", UUID_PV0, PE_COUNT),
		       pv_section("pv1", UUID_PV1, PE_COUNT));
}

/* Disks 0 and 1, PVs pv0 and pv1, their metadata areas holding t0 and t1. */
static void two_disks(const char *t0, const char *t1)
{
	make_pv(&disks[0], UUID_PV0);
	make_pv(&disks[1], UUID_PV1);
	put_text(&disks[0], t0);
	put_text(&disks[1], t1);
}

/* One PV (disk 0), one VG holding lvs. */
static void one_pv_vg(unsigned seqno, const char *lvs)
{
	char *pv = pv_section("pv0", UUID_PV0, PE_COUNT);
	char *text = vg_text("vg0", UUID_VG0, seqno, pv, lvs);

	make_pv(&disks[0], UUID_PV0);
	put_text(&disks[0], text);
}

/* A VG with one LV of the given segments on disk 0. */
static void one_lv(const char *name, unsigned nsegs, const char *segs)
{
	char *lv = lv_section(name, VISIBLE, nsegs, segs);

	one_pv_vg(1, lv);
}

static struct snapfs_glvm *scan(size_t ndisks)
{
	struct snapfs_glvm_dev dev[3];
	struct snapfs_glvm *g = NULL;

	for (size_t i = 0; i < ndisks; i++)
		dev[i] = (struct snapfs_glvm_dev){ disk_read, &disks[i], disks[i].size,
						   disk_names[i] };
	log_reset();
	assert_int_equal(snapfs_glvm_scan("g1", dev, ndisks, &g), 0);
	assert_non_null(g);
	return g;
}

static const struct snapfs_glvm_lv *find_lv(const struct snapfs_glvm *g, const char *vg,
					    const char *lv)
{
	for (size_t i = 0; i < g->nvgs; i++)
		for (size_t j = 0; strcmp(g->vg[i].name, vg) == 0 && j < g->vg[i].nlvs;
		     j++)
			if (!strcmp(g->vg[i].lv[j].name, lv))
				return &g->vg[i].lv[j];
	fail_msg("no LV %s/%s", vg, lv);
	return NULL;
}

static void assert_map(const struct snapfs_glvm_lv *lv, uint64_t off, unsigned dev,
		       uint64_t dev_off, uint64_t len)
{
	unsigned d;
	uint64_t o, l;

	assert_int_equal(snapfs_glvm_map(lv, off, &d, &o, &l), 0);
	assert_int_equal(d, dev);
	assert_int_equal(o, dev_off);
	assert_int_equal(l, len);
}

/* An LV that is listed, not served, for a reason saying why (one line). */
static void assert_refused_lv(const struct snapfs_glvm *g, const char *lv,
			      const char *why)
{
	const struct snapfs_glvm_lv *l = find_lv(g, "vg0", lv);
	unsigned d;
	uint64_t o, n;

	assert_false(l->served);
	if (!strstr(l->reason, why))
		fail_msg("reason \"%s\" does not say \"%s\"", l->reason, why);
	assert_int_equal(snapfs_glvm_map(l, 0, &d, &o, &n), -EOPNOTSUPP);
	assert_one_line("guest g1, VG vg0, LV ", why);
}

#define DATA(pe) (PE_START_SECTORS * 512 + (uint64_t)(pe)*EXTENT)

/* ---- happy cases ------------------------------------------------------------ */

static void test_linear(void **state UNUSED)
{
	char *seg = linear_seg(1, 0, 10, "pv0", 5);
	struct snapfs_glvm *g;
	const struct snapfs_glvm_lv *lv;
	unsigned d;
	uint64_t o, l;

	one_lv("root", 1, seg);
	g = scan(1);
	assert_int_equal(log_lines, 0);
	assert_int_equal(g->nvgs, 1);
	assert_string_equal(g->vg[0].name, "vg0");
	assert_string_equal(g->vg[0].uuid, UUID_VG0);
	assert_true(g->vg[0].served);
	assert_int_equal(g->vg[0].seqno, 1);
	assert_int_equal(g->vg[0].extent_size, EXTENT);
	assert_int_equal(g->vg[0].nlvs, 1);
	lv = find_lv(g, "vg0", "root");
	assert_true(lv->served);
	assert_string_equal(lv->vg, "vg0");
	assert_string_equal(lv->segtype, "linear");
	assert_string_equal(lv->reason, "");
	assert_int_equal(lv->size, 10 * EXTENT);
	assert_map(lv, 0, 0, DATA(5), 10 * EXTENT);
	assert_map(lv, 3 * EXTENT + 7, 0, DATA(8) + 7, 7 * EXTENT - 7);
	assert_map(lv, 10 * EXTENT - 1, 0, DATA(15) - 1, 1);
	assert_int_equal(snapfs_glvm_map(lv, 10 * EXTENT, &d, &o, &l), -ENXIO);
	snapfs_glvm_free(g);
}

/* Two PVs on two disks, 8 extents in 2 stripes of 8 KiB. */
static void test_striped(void **state UNUSED)
{
	char *pvs = two_pvs();
	char *seg = text_of("segment1 {\nstart_extent = 0\nextent_count = 8\n"
			    "type = \"striped\"\nstripe_count = 2\nstripe_size = 16\n"
			    "stripes = [\n\"pv0\", 2,\n\"pv1\", 0\n]\n}\n");
	char *lvs = lv_section("data", VISIBLE, 1, seg);
	char *text = vg_text("vg0", UUID_VG0, 3, pvs, lvs);
	const struct snapfs_glvm_lv *lv;
	struct snapfs_glvm *g;

	two_disks(text, text);
	g = scan(2);
	assert_int_equal(log_lines, 0);
	lv = find_lv(g, "vg0", "data");
	assert_true(lv->served);
	assert_string_equal(lv->segtype, "striped");
	assert_int_equal(lv->size, 8 * EXTENT);
	/* Chunks of 8 KiB go pv0, pv1, pv0, pv1... */
	assert_map(lv, 0, 0, DATA(2), 8 * KiB);
	assert_map(lv, 8 * KiB + 100, 1, DATA(0) + 100, 8 * KiB - 100);
	assert_map(lv, 16 * KiB, 0, DATA(2) + 8 * KiB, 8 * KiB);
	assert_map(lv, 24 * KiB, 1, DATA(0) + 8 * KiB, 8 * KiB);
	assert_map(lv, 32 * KiB - 1, 1, DATA(0) + 16 * KiB - 1, 1);
	snapfs_glvm_free(g);
}

/* An LV extended twice, with another LV between: three segments. */
static void test_extended_twice(void **state UNUSED)
{
	char *s1 = linear_seg(1, 0, 2, "pv0", 0);
	char *s2 = linear_seg(2, 2, 3, "pv0", 4);
	char *s3 = linear_seg(3, 5, 1, "pv0", 9);
	char *segs = text_of("%s%s%s", s1, s2, s3);
	char *other_seg = linear_seg(1, 0, 2, "pv0", 2);
	char *a = lv_section("grown", VISIBLE, 3, segs);
	char *b = lv_section("other", VISIBLE, 1, other_seg);
	char *lvs = text_of("%s%s", a, b);
	const struct snapfs_glvm_lv *lv;
	struct snapfs_glvm *g;

	one_pv_vg(4, lvs);
	g = scan(1);
	assert_int_equal(log_lines, 0);
	assert_int_equal(g->vg[0].nlvs, 2);
	lv = find_lv(g, "vg0", "grown");
	assert_true(lv->served);
	assert_string_equal(lv->segtype, "linear");
	assert_int_equal(lv->nsegs, 3);
	assert_int_equal(lv->size, 6 * EXTENT);
	assert_map(lv, 0, 0, DATA(0), 2 * EXTENT);
	assert_map(lv, 2 * EXTENT - 1, 0, DATA(2) - 1, 1);
	assert_map(lv, 2 * EXTENT, 0, DATA(4), 3 * EXTENT);
	assert_map(lv, 4 * EXTENT + 1, 0, DATA(6) + 1, EXTENT - 1);
	assert_map(lv, 5 * EXTENT, 0, DATA(9), EXTENT);
	assert_map(find_lv(g, "vg0", "other"), EXTENT, 0, DATA(3), EXTENT);
	snapfs_glvm_free(g);
}

static void test_two_vgs(void **state UNUSED)
{
	char *pv0 = pv_section("pv0", UUID_PV0, PE_COUNT);
	char *pv1 = pv_section("pv0", UUID_PV1, PE_COUNT);
	char *seg = linear_seg(1, 0, 1, "pv0", 0);
	char *lv_a = lv_section("a", VISIBLE, 1, seg);
	char *lv_b = lv_section("b", VISIBLE, 1, seg);
	char *t0 = vg_text("vg0", UUID_VG0, 1, pv0, lv_a);
	char *t1 = vg_text("other", UUID_VG1, 9, pv1, lv_b);
	struct snapfs_glvm *g;

	two_disks(t0, t1);
	g = scan(2);
	assert_int_equal(log_lines, 0);
	assert_int_equal(g->nvgs, 2);
	assert_map(find_lv(g, "vg0", "a"), 0, 0, DATA(0), EXTENT);
	assert_map(find_lv(g, "other", "b"), 0, 1, DATA(0), EXTENT);
	snapfs_glvm_free(g);
}

/* A VG on two PVs; the second one's copy is older (its PV was written
 * before the last change): the newest wins. */
static void test_newest_seqno_wins(void **state UNUSED)
{
	char *pvs = two_pvs();
	char *seg_old = linear_seg(1, 0, 1, "pv0", 0);
	char *seg_new = linear_seg(1, 0, 3, "pv1", 7);
	char *lv_old = lv_section("old", VISIBLE, 1, seg_old);
	char *lv_new = lv_section("new", VISIBLE, 1, seg_new);
	char *t_old = vg_text("vg0", UUID_VG0, 6, pvs, lv_old);
	char *t_new = vg_text("vg0", UUID_VG0, 7, pvs, lv_new);
	struct snapfs_glvm *g;

	two_disks(t_old, t_new);
	make_pv(&disks[2], UUID_PV2); /* a PV of no VG */
	g = scan(3);
	assert_int_equal(log_lines, 0);
	assert_int_equal(g->nvgs, 1);
	assert_int_equal(g->vg[0].seqno, 7);
	assert_int_equal(g->vg[0].nlvs, 1);
	assert_map(find_lv(g, "vg0", "new"), 0, 1, DATA(7), 3 * EXTENT);
	snapfs_glvm_free(g);
}

/* Text that wraps round the end of the metadata area, as LVM writes it
 * once the area has filled: accepted, and read right. */
static void test_wrapped_text(void **state UNUSED)
{
	char *seg = linear_seg(1, 0, 4, "pv0", 1);
	char *lv = lv_section("wrapped", VISIBLE, 1, seg);
	char *pv = pv_section("pv0", UUID_PV0, PE_COUNT);
	char *text = vg_text("vg0", UUID_VG0, 40, pv, lv);
	struct snapfs_glvm *g;

	make_pv(&disks[0], UUID_PV0);
	put_text_at(&disks[0], text, MDA_SIZE - 512);
	assert_true(strlen(text) > 512);
	g = scan(1);
	assert_int_equal(log_lines, 0);
	assert_map(find_lv(g, "vg0", "wrapped"), 0, 0, DATA(1), 4 * EXTENT);
	snapfs_glvm_free(g);
}

/* ---- refusals: on-disk headers ------------------------------------------------ */

/* Disk 0 holding one linear LV, then broken by the caller. */
static void linear_disk(void)
{
	char *seg = linear_seg(1, 0, 1, "pv0", 0);

	one_lv("lv", 1, seg);
}

static void assert_no_vg(const char *why)
{
	struct snapfs_glvm *g = scan(1);

	assert_int_equal(g->nvgs, 0);
	assert_one_line("guest g1, disk vda2: ", why);
	snapfs_glvm_free(g);
}

static void test_bad_label_crc(void **state UNUSED)
{
	linear_disk();
	disks[0].buf[512 + 100] ^= 1; /* inside what the label's CRC covers */
	assert_no_vg("not an LVM2 PV: LVM2 label: bad CRC");
}

static void test_bad_mda_crc(void **state UNUSED)
{
	linear_disk();
	disks[0].buf[MDA_START + 100] ^= 1;
	assert_no_vg("metadata area 1 not read: metadata area header: bad CRC");
}

static void test_bad_text_checksum(void **state UNUSED)
{
	linear_disk();
	disks[0].buf[MDA_START + 512 + 10] ^= 1; /* in the text */
	assert_no_vg("metadata text: bad checksum");
}

static void test_unreadable_disk(void **state UNUSED)
{
	linear_disk();
	disks[0].reads_failing = 1;
	assert_no_vg("LVM2 label unreadable");
}

static void test_text_outside_area(void **state UNUSED)
{
	uint8_t *h = disks[0].buf + MDA_START;

	linear_disk();
	put64(h + 48, MDA_SIZE); /* the text's size: more than the area holds */
	put32(h, crc(INITIAL_CRC, h + 4, 512 - 4));
	assert_no_vg("metadata text outside its area");
}

static void test_no_label(void **state UNUSED)
{
	memset(&disks[0], 0, sizeof(disks[0]));
	disks[0].size = DISK_SIZE;
	assert_no_vg("no LVM2 label");
}

/* ---- refusals: the text ------------------------------------------------------ */

static void assert_text_refused(const char *text, const char *why)
{
	struct snapfs_lvmt_node *root = (void *)1;
	char msg[256] = "";

	assert_int_equal(snapfs_lvmt_parse(text, strlen(text), &root, msg, sizeof(msg)),
			 -EINVAL);
	assert_null(root);
	if (!strstr(msg, why))
		fail_msg("\"%s\" does not say \"%s\"", msg, why);
	/* And as a guest's metadata: the copy is refused, one line. */
	make_pv(&disks[0], UUID_PV0);
	put_text(&disks[0], text);
	assert_no_vg(why);
}

static void test_nesting_past_cap(void **state UNUSED)
{
	char text[1024] = "";

	for (int i = 0; i < SNAPFS_LVMT_DEPTH_MAX + 1; i++)
		strcat(text, "a {\n");
	for (int i = 0; i < SNAPFS_LVMT_DEPTH_MAX + 1; i++)
		strcat(text, "}\n");
	assert_text_refused(text, "sections nested deeper than 16");
}

static void test_string_past_cap(void **state UNUSED)
{
	size_t n = SNAPFS_LVMT_STRING_MAX + 1;
	char *text = malloc(n + 32);

	strcpy(text, "description = \"");
	memset(text + strlen(text), 'x', n);
	strcpy(text + 15 + n, "\"\n");
	assert_text_refused(text, "a string longer than 16384 bytes");
	free(text);
}

static void test_number_overflow(void **state UNUSED)
{
	assert_text_refused("seqno = 9223372036854775808\n", "a number past");
	assert_text_refused("seqno = 99999999999999999999999\n", "a number past");
	assert_text_refused("seqno = -1\n", "a negative number");
	assert_text_refused("x = 1.5\n", "not a decimal integer");
}

static void test_malformed_text(void **state UNUSED)
{
	assert_text_refused("a = \"open\n", "without its closing quote");
	assert_text_refused("a {\nb = 1\n", "without its closing '}'");
	assert_text_refused("}\n", "closes nothing");
	assert_text_refused("a = [1, [2]]\n", "a string or a number expected");
	assert_text_refused("a = [1 2]\n", "',' or ']' expected");
	assert_text_refused("a/b = 1\n", "'=' or '{' expected");
	assert_text_refused("= 1\n", "a name expected");
}

static void test_text_parsed(void **state UNUSED)
{
	static const char text[] =
		"# comment\nvg { id = \"a\\\"b\\\\c\" # more\n"
		"n = 42\nempty = []\nlist = [\"x\", 7]\n}\nv = 1\n\0\0";
	const struct snapfs_lvmt_node *vg, *n;
	struct snapfs_lvmt_node *root;
	char why[128];

	assert_int_equal(snapfs_lvmt_parse(text, sizeof(text), &root, why, sizeof(why)),
			 0);
	assert_int_equal(snapfs_lvmt_find(root, "vg", SNAPFS_LVMT_SECTION, &vg), 0);
	assert_int_equal(snapfs_lvmt_find(vg, "id", SNAPFS_LVMT_STRING, &n), 0);
	assert_string_equal(n->str, "a\"b\\c");
	assert_int_equal(snapfs_lvmt_find(vg, "n", SNAPFS_LVMT_INT, &n), 0);
	assert_int_equal(n->num, 42);
	assert_int_equal(snapfs_lvmt_find(vg, "empty", SNAPFS_LVMT_ARRAY, &n), 0);
	assert_null(n->child);
	assert_int_equal(snapfs_lvmt_find(vg, "list", SNAPFS_LVMT_ARRAY, &n), 0);
	assert_string_equal(n->child->str, "x");
	assert_int_equal(n->child->next->num, 7);
	assert_int_equal(snapfs_lvmt_find(vg, "n", SNAPFS_LVMT_STRING, &n), -EINVAL);
	assert_int_equal(snapfs_lvmt_find(vg, "none", SNAPFS_LVMT_INT, &n), -ENOENT);
	snapfs_lvmt_free(root);

	/* A key twice is no answer; a NUL inside the text is refused. */
	assert_int_equal(snapfs_lvmt_parse("a = 1\na = 2\n", 12, &root, why, sizeof(why)),
			 0);
	assert_int_equal(snapfs_lvmt_find(root, "a", SNAPFS_LVMT_INT, &n), -EINVAL);
	snapfs_lvmt_free(root);
	assert_int_equal(snapfs_lvmt_parse("a = 1\0b", 7, &root, why, sizeof(why)),
			 -EINVAL);
}

/* ---- refusals: extents and segments ------------------------------------------ */

static void test_segment_past_pv_end(void **state UNUSED)
{
	char *seg = linear_seg(1, 0, 10, "pv0", PE_COUNT - 9);
	struct snapfs_glvm *g;

	one_lv("lv", 1, seg);
	g = scan(1);
	assert_refused_lv(g, "lv", "extents past the end of PV pv0");
	snapfs_glvm_free(g);
}

/* A PV whose extents run past its disk's end: what is on it is not served. */
static void test_pv_past_disk_end(void **state UNUSED)
{
	char *seg = linear_seg(1, 0, 1, "pv0", 0);
	char *lv = lv_section("lv", VISIBLE, 1, seg);
	char *pv = pv_section("pv0", UUID_PV0, PE_COUNT + 1);
	char *text = vg_text("vg0", UUID_VG0, 1, pv, lv);
	struct snapfs_glvm *g;

	make_pv(&disks[0], UUID_PV0);
	put_text(&disks[0], text);
	g = scan(1);
	assert_refused_lv(g, "lv", "run past the end of its disk");
	snapfs_glvm_free(g);
}

static void test_overlapping_segments(void **state UNUSED)
{
	char *s1 = linear_seg(1, 0, 4, "pv0", 0);
	char *s2 = linear_seg(2, 3, 2, "pv0", 10);
	char *segs = text_of("%s%s", s1, s2);
	struct snapfs_glvm *g;

	one_lv("lv", 2, segs);
	g = scan(1);
	assert_refused_lv(g, "lv", "segment2 overlaps another");
	snapfs_glvm_free(g);
	s2 = linear_seg(2, 5, 2, "pv0", 10);
	segs = text_of("%s%s", s1, s2);
	one_lv("lv", 2, segs);
	g = scan(1);
	assert_refused_lv(g, "lv", "segment2 leaves a gap");
	snapfs_glvm_free(g);
}

static void test_huge_extent_count(void **state UNUSED)
{
	char *seg = text_of(
		"segment1 {\nstart_extent = 0\nextent_count = 4294967296\n"
		"type = \"striped\"\nstripe_count = 1\nstripes = [\"pv0\", 0]\n}\n");
	char *lv = lv_section("lv", VISIBLE, 1, seg);
	char *pv = pv_section("pv0", UUID_PV0, 1ull << 61);
	char *text = vg_text("vg0", UUID_VG0, 1, pv, lv);
	struct snapfs_glvm *g;

	one_lv("lv", 1, seg);
	g = scan(1);
	assert_refused_lv(g, "lv", "extent_count");
	snapfs_glvm_free(g);

	/* A PV of 2^61 extents of 4 KiB: past 2^63 bytes, the VG is refused. */
	make_pv(&disks[0], UUID_PV0);
	put_text(&disks[0], text);
	g = scan(1);
	assert_int_equal(g->nvgs, 1);
	assert_false(g->vg[0].served);
	assert_int_equal(g->vg[0].nlvs, 0);
	assert_one_line("guest g1, VG vg0: refused: ", "PV pv0: extents past 2^63 bytes");
	snapfs_glvm_free(g);
}

static void test_missing_pv(void **state UNUSED)
{
	char *pvs = two_pvs();
	char *seg_here = linear_seg(1, 0, 1, "pv0", 0);
	char *seg_gone = linear_seg(1, 0, 1, "pv1", 0);
	char *seg_none = linear_seg(1, 0, 1, "pvmove0", 0);
	char *a = lv_section("here", VISIBLE, 1, seg_here);
	char *b = lv_section("gone", VISIBLE, 1, seg_gone);
	char *c = lv_section("moving", VISIBLE, 1, seg_none);
	char *lvs = text_of("%s%s", a, b);
	char *text = vg_text("vg0", UUID_VG0, 1, pvs, lvs);
	struct snapfs_glvm *g;

	make_pv(&disks[0], UUID_PV0);
	put_text(&disks[0], text);
	g = scan(1);
	assert_true(find_lv(g, "vg0", "here")->served);
	assert_refused_lv(g, "gone", "PV pv1 is on no disk of the guest");
	snapfs_glvm_free(g);
	text = vg_text("vg0", UUID_VG0, 1, pvs, c);
	put_text(&disks[0], text);
	g = scan(1);
	assert_refused_lv(g, "moving", "extents on pvmove0, which is no PV of the VG");
	snapfs_glvm_free(g);
}

static void test_conflicting_copies(void **state UNUSED)
{
	char *pvs = two_pvs();
	char *seg_a = linear_seg(1, 0, 1, "pv0", 0);
	char *seg_b = linear_seg(1, 0, 1, "pv1", 0);
	char *lv_a = lv_section("lv", VISIBLE, 1, seg_a);
	char *lv_b = lv_section("lv", VISIBLE, 1, seg_b);
	char *t_a = vg_text("vg0", UUID_VG0, 5, pvs, lv_a);
	char *t_b = vg_text("vg0", UUID_VG0, 5, pvs, lv_b);
	struct snapfs_glvm *g;

	two_disks(t_a, t_b);
	g = scan(2);
	assert_int_equal(g->nvgs, 1);
	assert_false(g->vg[0].served);
	assert_int_equal(g->vg[0].nlvs, 0);
	assert_one_line("guest g1, VG vg0: refused: conflicting copies with seqno 5",
			"vda2 and vdb1");
	snapfs_glvm_free(g);
}

/* Two VGs (two UUIDs) of one name: both refused. */
static void test_vg_namesakes(void **state UNUSED)
{
	char *pv0 = pv_section("pv0", UUID_PV0, PE_COUNT);
	char *pv1 = pv_section("pv0", UUID_PV1, PE_COUNT);
	char *t0 = vg_text("vg0", UUID_VG0, 1, pv0, "");
	char *t1 = vg_text("vg0", UUID_VG1, 1, pv1, "");
	struct snapfs_glvm *g;

	two_disks(t0, t1);
	g = scan(2);
	assert_int_equal(g->nvgs, 2);
	assert_false(g->vg[0].served);
	assert_false(g->vg[1].served);
	assert_int_equal(log_lines, 2);
	assert_non_null(strstr(log_text, "refused: another VG has its name"));
	snapfs_glvm_free(g);
}

/* ---- refusals: what is not plain data -------------------------------------------- */

static char *typed_seg(const char *type, const char *more)
{
	return text_of(
		"segment1 {\nstart_extent = 0\nextent_count = 2\ntype = \"%s\"\n%s}\n",
		type, more);
}

static void test_unknown_segment_types(void **state UNUSED)
{
	static const char *const types[] = { "raid1",	   "mirror", "cache",
					     "writecache", "vdo",    "integrity",
					     "error",	   "zero",   "frob" };

	for (size_t i = 0; i < sizeof(types) / sizeof(*types); i++) {
		char *seg = typed_seg(types[i], "");
		char why[64];
		struct snapfs_glvm *g;

		one_lv("lv", 1, seg);
		g = scan(1);
		snprintf(why, sizeof(why), "segment type %s is not served", types[i]);
		assert_refused_lv(g, "lv", why);
		assert_string_equal(find_lv(g, "vg0", "lv")->segtype, types[i]);
		assert_int_equal(find_lv(g, "vg0", "lv")->size, 2 * EXTENT);
		snapfs_glvm_free(g);
	}
}

/* A thin pool (its hidden _tmeta and _tdata) and a thin LV: the two
 * visible ones listed, not served; a linear LV beside them served. */
static void test_thin(void **state UNUSED)
{
	char *pool_seg = typed_seg("thin-pool", "metadata = \"pool_tmeta\"\n"
						"pool = \"pool_tdata\"\n"
						"transaction_id = 1\nchunk_size = 128\n");
	char *thin_seg = typed_seg("thin", "thin_pool = \"pool\"\ntransaction_id = 0\n"
					   "device_id = 1\n");
	char *data_seg = linear_seg(1, 0, 2, "pv0", 0);
	char *meta_seg = linear_seg(1, 0, 1, "pv0", 2);
	char *plain_seg = linear_seg(1, 0, 1, "pv0", 3);
	char *pool = lv_section("pool", VISIBLE, 1, pool_seg);
	char *thin = lv_section("thin", VISIBLE, 1, thin_seg);
	char *tdata = lv_section("pool_tdata", HIDDEN, 1, data_seg);
	char *tmeta = lv_section("pool_tmeta", HIDDEN, 1, meta_seg);
	char *plain = lv_section("plain", VISIBLE, 1, plain_seg);
	char *lvs = text_of("%s%s%s%s%s", pool, thin, tdata, tmeta, plain);
	struct snapfs_glvm *g;

	one_pv_vg(9, lvs);
	g = scan(1);
	assert_int_equal(g->vg[0].nlvs, 3);
	assert_true(find_lv(g, "vg0", "plain")->served);
	assert_false(find_lv(g, "vg0", "pool")->served);
	assert_string_equal(find_lv(g, "vg0", "pool")->segtype, "thin-pool");
	assert_false(find_lv(g, "vg0", "thin")->served);
	assert_string_equal(find_lv(g, "vg0", "thin")->segtype, "thin");
	assert_int_equal(log_lines, 2);
	assert_non_null(strstr(log_text, "LV thin: not served: segment type thin is"));
	snapfs_glvm_free(g);
}

/* A classic snapshot, as LVM writes it: the origin is served; the snapshot,
 * listed by the name of its COW store (not VISIBLE), is not; snapshot0
 * that ties them (VISIBLE) is not listed. */
static void test_snapshot_cow(void **state UNUSED)
{
	char *origin_seg = linear_seg(1, 0, 4, "pv0", 0);
	char *cow_seg = linear_seg(1, 0, 2, "pv0", 4);
	char *snap_seg = text_of("segment1 {\nstart_extent = 0\nextent_count = 4\n"
				 "type = \"snapshot\"\nchunk_size = 8\n"
				 "origin = \"origin\"\ncow_store = \"snap\"\n}\n");
	char *origin = lv_section("origin", VISIBLE, 1, origin_seg);
	char *snap = lv_section("snap", HIDDEN, 1, cow_seg);
	char *snapshot0 = lv_section("snapshot0", VISIBLE, 1, snap_seg);
	char *lvs = text_of("%s%s%s", origin, snap, snapshot0);
	struct snapfs_glvm *g;

	one_pv_vg(3, lvs);
	g = scan(1);
	assert_int_equal(g->vg[0].nlvs, 2);
	assert_true(find_lv(g, "vg0", "origin")->served);
	assert_refused_lv(g, "snap", "a snapshot of origin: its COW store is not served");
	assert_string_equal(find_lv(g, "vg0", "snap")->segtype, "snapshot");
	assert_int_equal(find_lv(g, "vg0", "snap")->size, 4 * EXTENT);
	snapfs_glvm_free(g);
}

/* An LV being moved (pvmove locks it), or with a status not known. */
static void test_unknown_status(void **state UNUSED)
{
	char *seg = linear_seg(1, 0, 1, "pv0", 0);
	char *lv = lv_section("lv", VISIBLE ", \"LOCKED\"", 1, seg);
	struct snapfs_glvm *g;

	one_pv_vg(1, lv);
	g = scan(1);
	assert_refused_lv(g, "lv", "status LOCKED is not served");
	snapfs_glvm_free(g);
}

static void test_bad_stripes(void **state UNUSED)
{
	static const struct {
		const char *more, *why;
	} cases[] = {
		{ "stripe_count = 3\nstripe_size = 16\nstripes = [\"pv0\", 0, \"pv0\", 8,"
		  " \"pv0\", 16]\n",
		  "2 extents in 3 stripes" },
		{ "stripe_count = 2\nstripe_size = 12\nstripes = [\"pv0\", 0, \"pv0\", "
		  "8]\n",
		  "stripe_size malformed" },
		{ "stripe_count = 2\nstripe_size = 16\nstripes = [\"pv0\", 0, \"pv0\", "
		  "8]\n",
		  "not a whole number of stripe_size" },
		{ "stripe_count = 2\nstripe_size = 8\nstripes = [\"pv0\", 0]\n",
		  "2 stripes said" },
		{ "stripe_count = 1\nstripes = [\"pv0\", 0, \"pv0\", 8]\n",
		  "1 stripes said" },
		{ "stripe_count = 1\nstripes = [0, \"pv0\"]\n", "stripes malformed" },
		{ "stripe_count = 200\nstripes = []\n", "stripe_count malformed" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		char *seg = typed_seg("striped", cases[i].more);
		struct snapfs_glvm *g;

		one_lv("lv", 1, seg);
		g = scan(1);
		assert_refused_lv(g, "lv", cases[i].why);
		snapfs_glvm_free(g);
	}
}

#define TEST(f) cmocka_unit_test_teardown(f, free_texts)

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_linear),
		TEST(test_striped),
		TEST(test_extended_twice),
		TEST(test_two_vgs),
		TEST(test_newest_seqno_wins),
		TEST(test_wrapped_text),
		TEST(test_bad_label_crc),
		TEST(test_bad_mda_crc),
		TEST(test_bad_text_checksum),
		TEST(test_unreadable_disk),
		TEST(test_text_outside_area),
		TEST(test_no_label),
		TEST(test_nesting_past_cap),
		TEST(test_string_past_cap),
		TEST(test_number_overflow),
		TEST(test_malformed_text),
		TEST(test_text_parsed),
		TEST(test_segment_past_pv_end),
		TEST(test_pv_past_disk_end),
		TEST(test_overlapping_segments),
		TEST(test_huge_extent_count),
		TEST(test_missing_pv),
		TEST(test_conflicting_copies),
		TEST(test_vg_namesakes),
		TEST(test_unknown_segment_types),
		TEST(test_thin),
		TEST(test_snapshot_cow),
		TEST(test_unknown_status),
		TEST(test_bad_stripes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
