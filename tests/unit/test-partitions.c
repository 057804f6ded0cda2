/* Unit tests for src/partitions.c: partition tables from hostile guest disks.
 *
 * Every disk image is built here, byte by byte, in a memfd (or an unlinked
 * file in $TMPDIR): MBRs, EBR chains, GPT headers and entry arrays with their
 * CRC32s, a minimal ext4 superblock.  No fixture files, no external tools.
 */
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
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapfs.h"

#define UNUSED __attribute__((unused))
#define KiB 1024ull
#define MiB (1024ull * 1024)

#define LINUX_GUID "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
#define ESP_GUID "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
#define SWAP_GUID "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"

/* ---- CRC32 (IEEE, reflected, as GPT uses) -------------------------------- */

static uint32_t crc32_ieee(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t crc = 0xffffffff;

	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320 & -(crc & 1));
	}
	return ~crc;
}

/* ---- little-endian writers ---------------------------------------------- */

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = v >> (8 * i);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = v >> (8 * i);
}

/* ---- disk images -------------------------------------------------------- */

static int disk_new(uint64_t size)
{
	int fd = memfd_create("disk", MFD_CLOEXEC);

	if (fd < 0) {
		const char *dir = getenv("TMPDIR");
		char path[4096];

		snprintf(path, sizeof(path), "%s/test-partitions-XXXXXX",
			 dir ? dir : "/tmp");
		fd = mkstemp(path);
		assert_true(fd >= 0);
		unlink(path);
	}
	assert_int_equal(ftruncate(fd, size), 0);
	return fd;
}

static void disk_write(int fd, uint64_t off, const void *buf, size_t len)
{
	assert_int_equal(pwrite(fd, buf, len, off), (ssize_t)len);
}

static void disk_read(int fd, uint64_t off, void *buf, size_t len)
{
	assert_int_equal(pread(fd, buf, len, off), (ssize_t)len);
}

static void disk_poke(int fd, uint64_t off, uint8_t byte)
{
	disk_write(fd, off, &byte, 1);
}

/* One slot of an MBR or EBR: start and count in the disk's sectors. */
struct slot {
	uint8_t type;
	uint32_t start;
	uint32_t count;
	uint8_t boot;
};

/* Writes slots and the 0x55aa signature into the 512 bytes at off. */
static void write_boot_record(int fd, uint64_t off, const struct slot s[4])
{
	uint8_t sec[512];

	disk_read(fd, off, sec, sizeof(sec));
	memset(sec + 446, 0, 64);
	for (int i = 0; i < 4; i++) {
		uint8_t *e = sec + 446 + 16 * i;

		e[0] = s[i].boot;
		e[4] = s[i].type;
		put_le32(e + 8, s[i].start);
		put_le32(e + 12, s[i].count);
	}
	sec[510] = 0x55;
	sec[511] = 0xaa;
	disk_write(fd, off, sec, sizeof(sec));
}

/* write_mbr(fd, { type, start, count, boot }, ...): up to four slots. */
#define write_mbr(fd, ...) write_boot_record(fd, 0, (const struct slot[4]){ __VA_ARGS__ })

/* An EBR at sector ebr: a data partition at ebr + data_rel, and a link to
 * the next EBR at ext + link_rel (no link when link_count is 0). */
static void write_ebr(int fd, unsigned ss, uint32_t ebr, uint32_t data_rel,
		      uint32_t data_count, uint32_t link_rel, uint32_t link_count)
{
	const struct slot s[4] = {
		{ 0x83, data_rel, data_count, 0 },
		{ link_count ? 0x05 : 0, link_rel, link_count, 0 },
	};

	write_boot_record(fd, (uint64_t)ebr * ss, s);
}

/* "0FC63DAF-8483-..." to GPT's on-disk byte order (first three fields LE). */
static void guid_bytes(const char *s, uint8_t out[16])
{
	static const int at[16] = {
		3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15
	};
	uint8_t raw[16];
	int n = 0;

	for (; *s && n < 16; s++) {
		unsigned v;

		if (*s == '-')
			continue;
		assert_int_equal(sscanf(s, "%2x", &v), 1);
		raw[n++] = v;
		s++;
	}
	assert_int_equal(n, 16);
	for (int i = 0; i < 16; i++)
		out[i] = raw[at[i]];
}

static const char *lower(const char *s)
{
	static char buf[64];
	size_t i;

	for (i = 0; s[i] && i < sizeof(buf) - 1; i++)
		buf[i] = s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i];
	buf[i] = '\0';
	return buf;
}

struct gpt_entry {
	unsigned index; /* slot in the entry array: partition number - 1 */
	const char *type;
	uint64_t first, last; /* LBAs, inclusive */
};

struct gpt {
	unsigned ss;
	uint32_t nents;
	uint64_t last_lba, array_lbas;
};

static struct gpt gpt_layout(uint64_t disk_size, unsigned ss, uint32_t nents)
{
	struct gpt g = { ss, nents, disk_size / ss - 1, (nents * 128 + ss - 1) / ss };

	return g;
}

/* What partitioning tools write: 128 entries. */
static struct gpt gpt_geometry(uint64_t disk_size, unsigned ss)
{
	return gpt_layout(disk_size, ss, 128);
}

static void write_gpt_header(int fd, const struct gpt *g, bool backup, uint32_t array_crc)
{
	uint64_t my = backup ? g->last_lba : 1;
	uint8_t h[512] = { 0 };

	memcpy(h, "EFI PART", 8);
	put_le32(h + 8, 0x00010000);
	put_le32(h + 12, 92);
	put_le64(h + 24, my);
	put_le64(h + 32, backup ? 1 : g->last_lba);
	put_le64(h + 40, 2 + g->array_lbas);
	put_le64(h + 48, g->last_lba - g->array_lbas - 1);
	guid_bytes("DEADBEEF-0000-4000-8000-000000000001", h + 56);
	put_le64(h + 72, backup ? g->last_lba - g->array_lbas : 2);
	put_le32(h + 80, g->nents);
	put_le32(h + 84, 128);
	put_le32(h + 88, array_crc);
	put_le32(h + 16, crc32_ieee(h, 92));
	disk_write(fd, my * g->ss, h, sizeof(h));
}

/* Protective MBR, both headers, both entry arrays. */
static void write_gpt(int fd, const struct gpt *g, const struct gpt_entry *e, size_t n)
{
	size_t len = (size_t)g->nents * 128;
	uint8_t *array = calloc(1, len);
	uint32_t pmbr_count = g->last_lba > UINT32_MAX ? UINT32_MAX : g->last_lba;

	assert_non_null(array);
	write_mbr(fd, { 0xee, 1, pmbr_count, 0 });
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = array + 128 * e[i].index;

		guid_bytes(e[i].type, p);
		guid_bytes("11111111-2222-4333-8444-555555555555", p + 16);
		p[16] = e[i].index;
		put_le64(p + 32, e[i].first);
		put_le64(p + 40, e[i].last);
		put_le16(p + 56, 'p');
	}
	disk_write(fd, 2 * g->ss, array, len);
	disk_write(fd, (g->last_lba - g->array_lbas) * g->ss, array, len);
	write_gpt_header(fd, g, false, crc32_ieee(array, len));
	write_gpt_header(fd, g, true, crc32_ieee(array, len));
	free(array);
}

/* A minimal ext4 superblock at off + 1024: what libblkid checks and no more. */
static void write_ext4(int fd, uint64_t off, const char *label)
{
	uint8_t sb[1024] = { 0 };

	put_le32(sb + 0, 128);	       /* s_inodes_count */
	put_le32(sb + 4, 1024);	       /* s_blocks_count */
	put_le32(sb + 24, 0);	       /* s_log_block_size: 1 KiB */
	put_le32(sb + 32, 8192);       /* s_blocks_per_group */
	put_le32(sb + 40, 128);	       /* s_inodes_per_group */
	put_le16(sb + 56, 0xef53);     /* s_magic */
	put_le16(sb + 58, 1);	       /* s_state: clean */
	put_le32(sb + 76, 1);	       /* s_rev_level: dynamic */
	put_le16(sb + 88, 256);	       /* s_inode_size */
	put_le32(sb + 92, 0x4);	       /* compat: has_journal */
	put_le32(sb + 96, 0x2 | 0x40); /* incompat: filetype, extents */
	for (int i = 0; i < 16; i++)   /* s_uuid */
		sb[104 + i] = 0x01 + 0x11 * i;
	memcpy(sb + 120, label, strnlen(label, 16)); /* s_volume_name */
	disk_write(fd, off + 1024, sb, sizeof(sb));
}

#define EXT4_UUID "01122334-4556-6778-899a-abbccddeef00"

/* ---- running snapfs_partitions_read with stderr captured ----------------- */

struct result {
	int rc;
	struct snapfs_partitions p;
	const char *log; /* what snapfs logged meanwhile, debug lines too */
};

/* The disk read through a callback, as a decoded qcow2 image is. */
static int read_fd(void *opaque, void *buf, size_t len, uint64_t off)
{
	ssize_t n = pread(*(int *)opaque, buf, len, (off_t)off);

	return n == (ssize_t)len ? 0 : -EIO;
}

/* snapfs_partitions_read_from over the same disk must find the same table:
 * every test here checks both paths. */
static void assert_same_through_callback(const struct result *r, int fd, uint64_t disk_size,
					 unsigned ss)
{
	struct snapfs_partitions q;
	int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
	int rc;

	fflush(stderr);
	dup2(null, STDERR_FILENO);
	rc = snapfs_partitions_read_from(read_fd, &fd, disk_size, ss, "g1", "vda", &q);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(null);
	/* A disk that is not what it claims fails either way, with its own
	 * errno (libblkid's or the callback's). */
	if (r->rc < 0) {
		assert_true(rc < 0);
		assert_int_equal(q.n, 0);
		return;
	}
	assert_int_equal(rc, r->rc);
	assert_int_equal(q.n, r->p.n);
	assert_string_equal(q.table, r->p.table);
	for (size_t i = 0; i < q.n; i++) {
		const struct snapfs_partition *a = &r->p.part[i], *b = &q.part[i];

		assert_int_equal(a->number, b->number);
		assert_int_equal(a->start, b->start);
		assert_int_equal(a->size, b->size);
		assert_string_equal(a->type, b->type);
		assert_string_equal(a->fstype, b->fstype);
		assert_string_equal(a->label, b->label);
		assert_string_equal(a->uuid, b->uuid);
	}
	snapfs_partitions_free(&q);
}

static int run(struct result *r, int fd, uint64_t disk_size, unsigned ss)
{
	static char log[1 << 20];
	int saved, cap = memfd_create("log", MFD_CLOEXEC);
	ssize_t n;

	assert_true(cap >= 0);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(cap, STDERR_FILENO) >= 0);
	r->rc = snapfs_partitions_read(fd, disk_size, ss, "g1", "vda", &r->p);
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	n = pread(cap, log, sizeof(log) - 1, 0);
	close(cap);
	log[n > 0 ? n : 0] = '\0';
	r->log = log;
	/* shown as comments, for when a test fails */
	for (const char *line = log; *line; line += strcspn(line, "\n") + 1) {
		printf("# %.*s\n", (int)strcspn(line, "\n"), line);
		if (!line[strcspn(line, "\n")])
			break;
	}
	if (fd >= 0)
		assert_same_through_callback(r, fd, disk_size, ss);
	return r->rc;
}

static void assert_sorted(const struct result *r)
{
	for (size_t i = 1; i < r->p.n; i++)
		assert_true(r->p.part[i - 1].number < r->p.part[i].number);
}

/* Every result is sorted by number; free it and the disk. */
static void done(struct result *r, int fd)
{
	assert_sorted(r);
	snapfs_partitions_free(&r->p);
	assert_null(r->p.part);
	assert_int_equal(r->p.n, 0);
	close(fd);
}

static void assert_logged(const struct result *r, const char *what)
{
	if (!strstr(r->log, what))
		fail_msg("log lacks \"%s\"; it was:\n%s", what, r->log);
}

/* Every warning names the guest and the disk. */
static void assert_warnings_named(const struct result *r)
{
	for (const char *p = strstr(r->log, "warning: "); p;
	     p = strstr(p + 1, "warning: "))
		if (strncmp(p + 9, "guest g1, disk vda: ", 20))
			fail_msg("warning without guest and disk: %.80s", p);
}

static void assert_no_warning(const struct result *r)
{
	if (strstr(r->log, "warning"))
		fail_msg("unexpected warning:\n%s", r->log);
}

static void assert_part(const struct result *r, size_t i, unsigned number, uint64_t start,
			uint64_t size, const char *type)
{
	const struct snapfs_partition *p;

	assert_true(i < r->p.n);
	p = &r->p.part[i];
	assert_int_equal(p->number, number);
	assert_int_equal(p->start, start);
	assert_int_equal(p->size, size);
	assert_string_equal(p->type, type);
	assert_string_equal(p->table, r->p.table);
}

/* ---- tests --------------------------------------------------------------- */

static void test_crc32_helper(void **state UNUSED)
{
	/* the check value of CRC-32/ISO-HDLC, the CRC GPT uses */
	assert_int_equal(crc32_ieee("123456789", 9), 0xcbf43926);
}

/* 8 MiB, 512-byte sectors: 1 and 2 primary, 3 extended [6144, 16384) with
 * three logicals linked in order. */
static int mbr_with_logicals(void)
{
	int fd = disk_new(8 * MiB);

	write_mbr(fd, { 0x83, 2048, 2048, 0x80 }, { 0x82, 4096, 2048, 0 },
		  { 0x05, 6144, 10240, 0 });
	write_ebr(fd, 512, 6144, 2048, 1024, 3072, 3072); /* 5 at 8192, next EBR 9216 */
	write_ebr(fd, 512, 9216, 2048, 512, 6144, 4096);  /* 6 at 11264, next EBR 12288 */
	write_ebr(fd, 512, 12288, 2048, 2048, 0, 0);	  /* 7 at 14336, last */
	return fd;
}

static void test_mbr_primaries_and_logicals(void **state UNUSED)
{
	int fd = mbr_with_logicals();
	struct result r;

	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_string_equal(r.p.table, "dos");
	assert_int_equal(r.p.n, 5);
	assert_part(&r, 0, 1, 2048 * 512, 1 * MiB, "0x83");
	assert_part(&r, 1, 2, 4096 * 512, 1 * MiB, "0x82");
	assert_part(&r, 2, 5, 8192 * 512, 512 * KiB, "0x83");
	assert_part(&r, 3, 6, 11264 * 512, 256 * KiB, "0x83");
	assert_part(&r, 4, 7, 14336 * 512, 1 * MiB, "0x83");
	assert_string_equal(r.p.part[0].fstype, "");
	assert_logged(&r, "debug: guest g1, disk vda: partition 3 is the extended container; not exposed");
	assert_warnings_named(&r);
	done(&r, fd);
}

static void test_gpt_several(void **state UNUSED)
{
	struct gpt g = gpt_geometry(8 * MiB, 512);
	const struct gpt_entry e[] = {
		{ 0, ESP_GUID, 2048, 4095 },
		{ 1, LINUX_GUID, 4096, 8191 },
		{ 4, SWAP_GUID, 8192, 10239 },
	};
	int fd = disk_new(8 * MiB);
	struct result r;

	write_gpt(fd, &g, e, 3);
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_string_equal(r.p.table, "gpt");
	assert_int_equal(r.p.n, 3);
	assert_part(&r, 0, 1, 1 * MiB, 1 * MiB, lower(ESP_GUID));
	assert_part(&r, 1, 2, 2 * MiB, 2 * MiB, lower(LINUX_GUID));
	assert_part(&r, 2, 5, 4 * MiB, 1 * MiB, lower(SWAP_GUID));
	assert_no_warning(&r);
	done(&r, fd);
}

static int gpt_two_partitions(uint64_t size)
{
	struct gpt g = gpt_geometry(size, 512);
	const struct gpt_entry e[] = {
		{ 0, LINUX_GUID, 2048, 4095 },
		{ 2, LINUX_GUID, 4096, 6143 },
	};
	int fd = disk_new(size);

	write_gpt(fd, &g, e, 2);
	return fd;
}

static void assert_gpt_two_partitions(const struct result *r)
{
	assert_int_equal(r->rc, 0);
	assert_string_equal(r->p.table, "gpt");
	assert_int_equal(r->p.n, 2);
	assert_part(r, 0, 1, 1 * MiB, 1 * MiB, lower(LINUX_GUID));
	assert_part(r, 1, 3, 2 * MiB, 1 * MiB, lower(LINUX_GUID));
}

/* libblkid drops entries outside the usable area itself, silently. */
static void test_gpt_entry_outside_usable_area(void **state UNUSED)
{
	struct gpt g = gpt_geometry(8 * MiB, 512);
	const struct gpt_entry e[] = {
		{ 0, LINUX_GUID, 10, 100 }, /* over the entry array */
		{ 1, LINUX_GUID, 2048, 4095 },
		{ 2, LINUX_GUID, 16000, 16383 }, /* over the backup header */
	};
	int fd = disk_new(8 * MiB);
	struct result r;

	write_gpt(fd, &g, e, 3);
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_int_equal(r.p.n, 1);
	assert_part(&r, 0, 2, 1 * MiB, 1 * MiB, lower(LINUX_GUID));
	done(&r, fd);
}

/* 300 entries: Linux shows 1 to 255, and so does snapfs. */
static void test_gpt_many_partitions(void **state UNUSED)
{
	struct gpt g = gpt_layout(8 * MiB, 512, 300);
	struct gpt_entry e[300];
	int fd = disk_new(8 * MiB);
	struct result r;

	for (unsigned i = 0; i < 300; i++)
		e[i] = (struct gpt_entry){ i, LINUX_GUID, 2048 + 16 * i,
					   2048 + 16 * i + 15 };
	write_gpt(fd, &g, e, 300);
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_int_equal(r.p.n, 255);
	assert_part(&r, 254, 255, (2048 + 16 * 254) * 512, 16 * 512, lower(LINUX_GUID));
	assert_logged(&r, "45 partitions numbered above 255; left out");
	done(&r, fd);
}

static void test_gpt_primary_header_corrupt(void **state UNUSED)
{
	int fd = gpt_two_partitions(8 * MiB);
	struct result r;

	disk_poke(fd, 512 + 40, 0x77); /* first usable LBA: header CRC fails */
	run(&r, fd, 8 * MiB, 512);
	assert_gpt_two_partitions(&r);
	assert_logged(&r, "using the backup header at byte 8388096");
	assert_warnings_named(&r);
	done(&r, fd);
}

static void test_gpt_primary_entries_corrupt(void **state UNUSED)
{
	int fd = gpt_two_partitions(8 * MiB);
	struct result r;

	disk_poke(fd, 2 * 512 + 32, 0x01); /* entry 1's first LBA: array CRC fails */
	run(&r, fd, 8 * MiB, 512);
	assert_gpt_two_partitions(&r);
	assert_logged(&r, "using the backup header");
	done(&r, fd);
}

static void test_gpt_both_headers_corrupt(void **state UNUSED)
{
	int fd = gpt_two_partitions(8 * MiB);
	struct result r;

	disk_poke(fd, 512 + 16, 0x00); /* primary header CRC */
	disk_poke(fd, 512 + 17, 0x00);
	disk_poke(fd, 8 * MiB - 512 + 40, 0x55); /* backup: first usable LBA */
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_int_equal(r.p.n, 0);
	assert_null(r.p.part);
	assert_string_equal(r.p.table, "");
	assert_logged(&r, "protective MBR but no valid GPT header");
	assert_warnings_named(&r);
	done(&r, fd);
}

static void test_no_table(void **state UNUSED)
{
	int fd = disk_new(8 * MiB);
	struct result r;

	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_int_equal(r.p.n, 0);
	assert_null(r.p.part);
	assert_string_equal(r.p.table, "");
	assert_logged(&r, "debug: guest g1, disk vda: no partition table");
	assert_no_warning(&r);
	done(&r, fd);
}

/* A signed MBR with a boot flag of 0x12 is no partition table to libblkid. */
static void test_bad_boot_flag_is_no_table(void **state UNUSED)
{
	int fd = disk_new(8 * MiB);
	struct result r;

	write_mbr(fd, { 0x83, 2048, 2048, 0x12 });
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_int_equal(r.p.n, 0);
	assert_string_equal(r.p.table, "");
	assert_no_warning(&r);
	done(&r, fd);
}

static void test_partition_beyond_end(void **state UNUSED)
{
	int fd = disk_new(8 * MiB);
	struct result r;

	write_mbr(fd, { 0x83, 2048, 2048, 0 },
		  { 0x83, 4096, 12289, 0 }, /* one sector too long */
		  { 0x83, 20000, 100, 0 },  /* starts past the end */
		  { 0x83, 8192, 8192, 0 }); /* ends at the end */
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_string_equal(r.p.table, "dos");
	assert_int_equal(r.p.n, 2);
	assert_part(&r, 0, 1, 1 * MiB, 1 * MiB, "0x83");
	assert_part(&r, 1, 4, 4 * MiB, 4 * MiB, "0x83");
	assert_logged(&r, "partition 2 (512-byte sectors 4096+12289) ends past the end");
	assert_logged(&r, "partition 3 (512-byte sectors 20000+100) ends past the end");
	assert_warnings_named(&r);
	done(&r, fd);
}

static void test_partition_at_sector_zero(void **state UNUSED)
{
	int fd = disk_new(8 * MiB);
	struct result r;

	write_mbr(fd, { 0x83, 0, 2048, 0 }, { 0x83, 2048, 2048, 0 });
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_int_equal(r.p.n, 1);
	assert_part(&r, 0, 2, 1 * MiB, 1 * MiB, "0x83");
	assert_logged(&r, "partition 1 starts in sector 0");
	done(&r, fd);
}

/* An MBR slot of size zero is empty to libblkid (silently, numbering kept);
 * a GPT entry ending before or where it starts reaches snapfs. */
static void test_zero_size(void **state UNUSED)
{
	struct gpt g = gpt_geometry(8 * MiB, 512);
	const struct gpt_entry e[] = {
		{ 0, LINUX_GUID, 2048, 2047 }, /* zero size */
		{ 1, LINUX_GUID, 4096, 6143 },
		{ 2, LINUX_GUID, 8192, 8000 }, /* ends before it starts */
	};
	int fd = disk_new(8 * MiB);
	struct result r;

	write_mbr(fd, { 0x83, 2048, 0, 0 }, { 0x83, 4096, 2048, 0 });
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_int_equal(r.p.n, 1);
	assert_part(&r, 0, 2, 2 * MiB, 1 * MiB, "0x83");
	done(&r, fd);

	fd = disk_new(8 * MiB);
	write_gpt(fd, &g, e, 3);
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_int_equal(r.p.n, 1);
	assert_part(&r, 0, 2, 2 * MiB, 1 * MiB, lower(LINUX_GUID));
	assert_logged(&r, "partition 1 has zero size");
	assert_logged(&r, "partition 3 has a negative size");
	assert_warnings_named(&r);
	done(&r, fd);
}

/* 5 -> 6 -> 7 -> 6 -> ...: libblkid stops; 5, 6 and 7 are kept. */
static void test_ebr_loop(void **state UNUSED)
{
	int fd = mbr_with_logicals();
	struct result r;

	write_ebr(fd, 512, 12288, 2048, 2048, 3072, 3072); /* 7 links back to 6's EBR */
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_int_equal(r.p.n, 5);
	assert_part(&r, 2, 5, 8192 * 512, 512 * KiB, "0x83");
	assert_part(&r, 3, 6, 11264 * 512, 256 * KiB, "0x83");
	assert_part(&r, 4, 7, 14336 * 512, 1 * MiB, "0x83");
	assert_logged(&r, "EBR chain loops back to byte 4718592");
	assert_warnings_named(&r);
	done(&r, fd);
}

/* An EBR that links to itself, and one that links to the first EBR (a zero
 * offset, which libblkid skips). */
static void test_ebr_self_links(void **state UNUSED)
{
	int fd = mbr_with_logicals();
	struct result r;

	write_ebr(fd, 512, 9216, 2048, 512, 3072, 1024); /* 6's EBR links to itself */
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_int_equal(r.p.n, 4);
	assert_part(&r, 3, 6, 11264 * 512, 256 * KiB, "0x83");
	assert_logged(&r, "EBR chain loops back to byte 4718592");
	done(&r, fd);

	fd = mbr_with_logicals();
	write_ebr(fd, 512, 9216, 2048, 512, 0, 1024); /* 6's EBR links to offset 0 */
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_int_equal(r.p.n, 4);
	assert_part(&r, 3, 6, 11264 * 512, 256 * KiB, "0x83");
	assert_logged(&r, "EBR at byte 4718592 links to the first EBR; skipped");
	done(&r, fd);
}

/* Extended [6144, 10240); the second EBR links to 12144, outside it. */
static void test_ebr_outside_extended(void **state UNUSED)
{
	int fd = disk_new(8 * MiB);
	struct result r;

	write_mbr(fd, { 0x83, 2048, 2048, 0 }, { 0x05, 6144, 4096, 0 });
	write_ebr(fd, 512, 6144, 2048, 1024, 3072, 1024); /* 5 at 8192, next EBR 9216 */
	write_ebr(fd, 512, 9216, 1, 512, 6000, 2048);	  /* 6 at 9217, next EBR 12144 */
	write_ebr(fd, 512, 12144, 1, 1000, 0, 0);	  /* 7 at 12145: outside */
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_string_equal(r.p.table, "dos");
	assert_int_equal(r.p.n, 3);
	assert_part(&r, 0, 1, 1 * MiB, 1 * MiB, "0x83");
	assert_part(&r, 1, 5, 8192 * 512, 512 * KiB, "0x83");
	assert_part(&r, 2, 6, 9217 * 512, 256 * KiB, "0x83");
	assert_logged(&r, "EBR chain leaves the extended partition for byte 6217728");
	assert_logged(&r, "partition 7 is outside its extended partition");
	assert_warnings_named(&r);
	done(&r, fd);
}

/* A logical inside the disk but past the end of its extended partition. */
static void test_logical_overruns_extended(void **state UNUSED)
{
	int fd = disk_new(8 * MiB);
	struct result r;

	write_mbr(fd, { 0x05, 2048, 4096, 0 });
	write_ebr(fd, 512, 2048, 2048, 4096, 0, 0); /* [4096, 8192) in [2048, 6144) */
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_string_equal(r.p.table, "dos");
	assert_int_equal(r.p.n, 0);
	assert_null(r.p.part);
	assert_logged(&r, "partition 5 is outside its extended partition");
	done(&r, fd);
}

/* A 300-link chain: libblkid's walk is quadratic; snapfs refuses it. */
static void test_ebr_chain_too_long(void **state UNUSED)
{
	int fd = disk_new(8 * MiB);
	struct result r;

	write_mbr(fd, { 0x83, 1024, 1024, 0 }, { 0x05, 2048, 14336, 0 });
	for (uint32_t i = 0; i < 300; i++)
		write_ebr(fd, 512, 2048 + 2 * i, 1, 1, 2 * (i + 1), i < 299 ? 2 : 0);
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_int_equal(r.p.n, 0);
	assert_string_equal(r.p.table, "");
	assert_logged(&r, "EBR chain longer than 256; partition table ignored");
	done(&r, fd);
}

/* libblkid computes EBR positions as uint32_t in 512-byte units: from the
 * extended partition at 2048, a link of 2^32 - 1024 sectors wraps round to
 * sector 1024, whose EBR puts a partition at 8192, inside the extended
 * partition. */
static void test_ebr_link_wraps(void **state UNUSED)
{
	int fd = disk_new(8 * MiB);
	struct result r;

	write_mbr(fd, { 0x05, 2048, 14336, 0 });
	write_ebr(fd, 512, 2048, 2048, 100, (uint32_t)(0x100000000ull - 2048 + 1024),
		  100);
	write_ebr(fd, 512, 1024, 7168, 100, 0, 0);
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_int_equal(r.p.n, 0);
	assert_string_equal(r.p.table, "");
	assert_logged(&r, "EBR chain goes past 2 TiB in 512-byte units");
	done(&r, fd);
}

static void test_gpt_4k_sectors(void **state UNUSED)
{
	struct gpt g = gpt_geometry(8 * MiB, 4096);
	const struct gpt_entry e[] = {
		{ 0, LINUX_GUID, 256, 511 },
		{ 2, SWAP_GUID, 512, 1023 },
	};
	int fd = disk_new(8 * MiB);
	struct result r;

	write_gpt(fd, &g, e, 2);
	assert_int_equal(run(&r, fd, 8 * MiB, 4096), 0);
	assert_string_equal(r.p.table, "gpt");
	assert_int_equal(r.p.n, 2);
	assert_part(&r, 0, 1, 1 * MiB, 1 * MiB, lower(LINUX_GUID));
	assert_part(&r, 1, 3, 2 * MiB, 2 * MiB, lower(SWAP_GUID));
	assert_no_warning(&r);
	done(&r, fd);

	/* the same disk read with 512-byte sectors has no valid GPT header */
	fd = disk_new(8 * MiB);
	write_gpt(fd, &g, e, 2);
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_int_equal(r.p.n, 0);
	assert_logged(&r,
		      "no valid GPT header (bad CRC or damaged) with 512-byte sectors");
	done(&r, fd);
}

static void test_gpt_4k_backup(void **state UNUSED)
{
	struct gpt g = gpt_geometry(8 * MiB, 4096);
	const struct gpt_entry e[] = { { 0, LINUX_GUID, 256, 511 } };
	int fd = disk_new(8 * MiB);
	struct result r;

	write_gpt(fd, &g, e, 1);
	disk_poke(fd, 4096 + 40, 0x99);
	assert_int_equal(run(&r, fd, 8 * MiB, 4096), 0);
	assert_int_equal(r.p.n, 1);
	assert_part(&r, 0, 1, 1 * MiB, 1 * MiB, lower(LINUX_GUID));
	assert_logged(&r, "using the backup header at byte 8384512");
	done(&r, fd);
}

/* MBR and EBR sector numbers count 4096-byte sectors. */
static void test_mbr_4k_sectors(void **state UNUSED)
{
	int fd = disk_new(16 * MiB);
	struct result r;

	write_mbr(fd, { 0x83, 256, 256, 0 }, { 0x05, 1024, 1024, 0 });
	write_ebr(fd, 4096, 1024, 256, 128, 512, 512); /* 5 at 1280, next EBR 1536 */
	write_ebr(fd, 4096, 1536, 256, 256, 0, 0);     /* 6 at 1792 */
	assert_int_equal(run(&r, fd, 16 * MiB, 4096), 0);
	assert_string_equal(r.p.table, "dos");
	assert_int_equal(r.p.n, 3);
	assert_part(&r, 0, 1, 1 * MiB, 1 * MiB, "0x83");
	assert_part(&r, 1, 5, 5 * MiB, 512 * KiB, "0x83");
	assert_part(&r, 2, 6, 7 * MiB, 1 * MiB, "0x83");
	done(&r, fd);
}

/* A primary at 4096-byte sector 2^29 + 256: libblkid's start * 8 would wrap
 * in 32 bits to 2048 and point inside this 8 MiB disk. */
static void test_mbr_4k_wraps(void **state UNUSED)
{
	int fd = disk_new(8 * MiB);
	struct result r;

	write_mbr(fd, { 0x83, (1u << 29) + 256, 256, 0 });
	assert_int_equal(run(&r, fd, 8 * MiB, 4096), 0);
	assert_int_equal(r.p.n, 0);
	assert_string_equal(r.p.table, "");
	assert_logged(&r, "MBR partition goes past 2 TiB in 512-byte units");
	done(&r, fd);
}

static void test_filesystem_identified(void **state UNUSED)
{
	int fd = disk_new(8 * MiB);
	struct result r;

	write_mbr(fd, { 0x83, 2048, 2048, 0 }, { 0x83, 4096, 2048, 0 },
		  { 0x83, 6144, 2, 0 }, { 0x83, 6146, 2046, 0 });
	write_ext4(fd, 2048 * 512, "rootfs");
	write_ext4(fd, 4096 * 512, "a\nb\177c");
	/* 3 is 1 KiB: a superblock at its byte 1024 lies in 4, beyond its end */
	write_ext4(fd, 6144 * 512, "neighbour");
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_int_equal(r.p.n, 4);
	assert_string_equal(r.p.part[0].fstype, "ext4");
	assert_string_equal(r.p.part[0].label, "rootfs");
	assert_string_equal(r.p.part[0].uuid, EXT4_UUID);
	assert_string_equal(r.p.part[1].fstype, "ext4");
	assert_string_equal(r.p.part[1].label, "a?b?c");
	assert_part(&r, 2, 3, 6144 * 512, 1024, "0x83");
	assert_string_equal(r.p.part[2].fstype, "");
	assert_string_equal(r.p.part[2].label, "");
	assert_string_equal(r.p.part[2].uuid, "");
	assert_string_equal(r.p.part[3].fstype, "");
	done(&r, fd);
}

/* The image is 16 MiB but the disk is said to be 8 MiB: the backup GPT
 * header in the last sector of the image must stay out of reach. */
static void test_probe_bounded_by_disk_size(void **state UNUSED)
{
	int fd = gpt_two_partitions(16 * MiB);
	struct result r;

	disk_poke(fd, 512 + 40, 0x77);
	run(&r, fd, 16 * MiB, 512);
	assert_gpt_two_partitions(&r);
	done(&r, fd);

	fd = gpt_two_partitions(16 * MiB);
	disk_poke(fd, 512 + 40, 0x77);
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_int_equal(r.p.n, 0);
	assert_logged(&r, "protective MBR but no valid GPT header");
	done(&r, fd);
}

/* A primary header announcing 9000 entries (1152000 bytes): libblkid would
 * read the array before checking it, then use the backup. */
static void test_gpt_huge_entry_array(void **state UNUSED)
{
	int fd = gpt_two_partitions(8 * MiB);
	uint8_t h[512];
	struct result r;

	disk_read(fd, 512, h, sizeof(h));
	put_le32(h + 80, 9000);
	put_le32(h + 16, 0);
	put_le32(h + 16, crc32_ieee(h, 92));
	disk_write(fd, 512, h, sizeof(h));
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_int_equal(r.p.n, 0);
	assert_string_equal(r.p.table, "");
	assert_logged(&r, "GPT header at byte 512 has 9000 entries of 128 bytes");
	done(&r, fd);
}

/* A FreeBSD slice with a disklabel: libblkid lists the label's partitions as
 * 5 and 6 in a nested table; snapfs exposes only the slice. */
static void test_nested_bsd_label(void **state UNUSED)
{
	int fd = disk_new(8 * MiB);
	uint8_t l[512] = { 0 };
	struct result r;

	write_mbr(fd, { 0x83, 2048, 2048, 0 }, { 0xa5, 4096, 8192, 0 });
	put_le32(l, 0x82564557);       /* d_magic */
	put_le32(l + 132, 0x82564557); /* d_magic2 */
	put_le16(l + 138, 2);	       /* d_npartitions */
	put_le32(l + 148, 1024);       /* a: size, offset (absolute), fstype */
	put_le32(l + 152, 4096 + 16);
	l[160] = 7;
	put_le32(l + 164, 1024); /* b */
	put_le32(l + 168, 4096 + 16 + 1024);
	l[176] = 1;
	disk_write(fd, 4096 * 512 + 512, l, sizeof(l));
	assert_int_equal(run(&r, fd, 8 * MiB, 512), 0);
	assert_string_equal(r.p.table, "dos");
	assert_int_equal(r.p.n, 2);
	assert_part(&r, 0, 1, 1 * MiB, 1 * MiB, "0x83");
	assert_part(&r, 1, 2, 2 * MiB, 4 * MiB, "0xa5");
	assert_logged(&r, "partition 5 is in a freebsd label nested in partition 2");
	assert_logged(&r, "partition 6 is in a freebsd label nested in partition 2");
	assert_warnings_named(&r);
	done(&r, fd);
}

static void test_bad_arguments(void **state UNUSED)
{
	int fd = mbr_with_logicals();
	struct result r;

	assert_int_equal(run(&r, fd, 8 * MiB, 1000), -EINVAL);
	assert_int_equal(r.p.n, 0);
	assert_int_equal(run(&r, -1, 8 * MiB, 512), -EINVAL);
	assert_int_equal(run(&r, fd, UINT64_MAX, 512), -EINVAL);
	assert_null(r.p.part);
	/* larger than the image: libblkid refuses the device */
	assert_true(run(&r, fd, 16 * MiB, 512) < 0);
	assert_null(r.p.part);
	/* smaller than a sector: no table, no error */
	assert_int_equal(run(&r, fd, 100, 512), 0);
	assert_int_equal(r.p.n, 0);
	done(&r, fd);
}

static void test_free_twice(void **state UNUSED)
{
	int fd = mbr_with_logicals();
	struct result r;

	run(&r, fd, 8 * MiB, 512);
	assert_int_equal(r.p.n, 5);
	snapfs_partitions_free(&r.p);
	assert_string_equal(r.p.table, "");
	snapfs_partitions_free(&r.p);
	done(&r, fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32_helper),
		cmocka_unit_test(test_mbr_primaries_and_logicals),
		cmocka_unit_test(test_gpt_several),
		cmocka_unit_test(test_gpt_entry_outside_usable_area),
		cmocka_unit_test(test_gpt_many_partitions),
		cmocka_unit_test(test_gpt_primary_header_corrupt),
		cmocka_unit_test(test_gpt_primary_entries_corrupt),
		cmocka_unit_test(test_gpt_both_headers_corrupt),
		cmocka_unit_test(test_no_table),
		cmocka_unit_test(test_bad_boot_flag_is_no_table),
		cmocka_unit_test(test_partition_beyond_end),
		cmocka_unit_test(test_partition_at_sector_zero),
		cmocka_unit_test(test_zero_size),
		cmocka_unit_test(test_ebr_loop),
		cmocka_unit_test(test_ebr_self_links),
		cmocka_unit_test(test_ebr_outside_extended),
		cmocka_unit_test(test_logical_overruns_extended),
		cmocka_unit_test(test_ebr_chain_too_long),
		cmocka_unit_test(test_ebr_link_wraps),
		cmocka_unit_test(test_gpt_4k_sectors),
		cmocka_unit_test(test_gpt_4k_backup),
		cmocka_unit_test(test_mbr_4k_sectors),
		cmocka_unit_test(test_mbr_4k_wraps),
		cmocka_unit_test(test_filesystem_identified),
		cmocka_unit_test(test_probe_bounded_by_disk_size),
		cmocka_unit_test(test_gpt_huge_entry_array),
		cmocka_unit_test(test_nested_bsd_label),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_free_twice),
	};

	snapfs_log_init(false, SNAPFS_DBG_PART);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
