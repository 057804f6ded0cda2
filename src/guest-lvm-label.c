/* A guest PV's on-disk headers: its LVM2 label, PV header and metadata
 * areas, and the metadata text each area holds.  Every byte comes from the
 * guest; every offset and size is checked against the device and the area
 * before it is read, and every checksum before what it covers is believed.
 *
 * The layout (LVM2's format_text, little-endian):
 *	one of sectors 0-3: label header "LABELONE", its sector number, a
 *	CRC of the rest of the sector, the offset of the PV header, "LVM2 001"
 *	PV header: PV UUID (32 bytes), device size, data areas then metadata
 *	areas, each a list of (offset, size) ended by (0, 0)
 *	metadata area: a 512-byte header (CRC, " LVM2 x[5A%r0N*>", version 1,
 *	its own offset and size, then raw_locns), then a circular buffer: text
 *	that runs past the area's end goes on just after the header
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "snapfs.h"

#define SECTOR 512u
#define LABEL_SCAN_SECTORS 4
#define LABEL_ID "LABELONE"
#define LABEL_TYPE "LVM2 001"
#define LABEL_CRC_FROM 20 /* the label's CRC covers its sector from offset_xl on */
#define PV_HEADER_MIN (32 + 8)
#define MDA_HEADER_SIZE 512u
#define MDA_MAGIC " LVM2 x[5A%r0N*>"
#define MDA_VERSION 1
#define MDA_RAW_LOCN 40 /* the first raw_locn, in the mda header */
#define RAW_LOCN_IGNORED 1u
#define INITIAL_CRC 0xf597a6cfu

static uint32_t le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* LVM's calc_crc: CRC-32 (the reflected 0xedb88320 polynomial), a nibble
 * at a time, no final inversion; the first call's crc is INITIAL_CRC. */
static uint32_t lvm_crc(uint32_t crc, const uint8_t *buf, size_t len)
{
	static const uint32_t tab[16] = {
		0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4,
		0x4db26158, 0x5005713c, 0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c,
		0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c,
	};

	for (size_t i = 0; i < len; i++) {
		crc ^= buf[i];
		crc = (crc >> 4) ^ tab[crc & 0xf];
		crc = (crc >> 4) ^ tab[crc & 0xf];
	}
	return crc;
}

/* Does a checksum match?  A fuzzing build takes every one as good, so that
 * mutated headers and text get past it. */
static bool sum_ok(uint32_t stored, uint32_t computed)
{
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
	(void)stored;
	(void)computed;
	return true;
#else
	return stored == computed;
#endif
}

/* Read len bytes at off of d, inside it. */
static int dev_read(const struct snapfs_glvm_dev *d, void *buf, size_t len, uint64_t off)
{
	if (off > d->size || len > d->size - off)
		return -ENXIO;
	return d->read(d->ctx, buf, len, off);
}

/* LVM's ID characters, 32 of them. */
bool snapfs_glvm_uuid_ok(const char *s, size_t len)
{
	if (len != 32)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		      (c >= 'A' && c <= 'Z') || c == '!' || c == '#'))
			return false;
	}
	return true;
}

/* The label's sector (*at) and the PV header offset in it, checked. */
static int find_label(const uint8_t *buf, size_t sectors, unsigned *at, unsigned *pvh,
		      const char **why)
{
	for (unsigned s = 0; s < sectors; s++) {
		const uint8_t *l = buf + s * SECTOR;
		uint32_t off;

		if (memcmp(l, LABEL_ID, 8))
			continue;
		if (le64(l + 8) != s) {
			*why = "LVM2 label names another sector";
			return -EINVAL;
		}
		if (!sum_ok(le32(l + 16), lvm_crc(INITIAL_CRC, l + LABEL_CRC_FROM,
						  SECTOR - LABEL_CRC_FROM))) {
			*why = "LVM2 label: bad CRC";
			return -EINVAL;
		}
		if (memcmp(l + 24, LABEL_TYPE, 8)) {
			*why = "label of another type than LVM2 001";
			return -EINVAL;
		}
		off = le32(l + 20);
		if (off < 32 || off > SECTOR - PV_HEADER_MIN) {
			*why = "LVM2 label: PV header outside its sector";
			return -EINVAL;
		}
		*at = s;
		*pvh = off;
		return 0;
	}
	*why = "no LVM2 label";
	return -ENOENT;
}

/* The (offset, size) list at *pos of the sector (end: its end), up to
 * (0, 0); *n gets how many, at most max are kept in locn. */
static int read_locns(const uint8_t *sector, size_t *pos, uint64_t locn[][2],
		      unsigned max, unsigned *n)
{
	*n = 0;
	for (;;) {
		uint64_t off, size;

		if (*pos + 16 > SECTOR)
			return -EINVAL;
		off = le64(sector + *pos);
		size = le64(sector + *pos + 8);
		*pos += 16;
		if (!off && !size)
			return 0;
		if (*n == max)
			return -EINVAL;
		locn[*n][0] = off;
		locn[(*n)++][1] = size;
	}
}

/* The text of the metadata area at [start, start + size) of d: 0 with
 * text (or NULL: the area holds none, or is ignored), -EINVAL with why. */
static int read_mda(const struct snapfs_glvm_dev *d, uint64_t start, uint64_t size,
		    char **text, size_t *len, const char **why)
{
	uint8_t h[MDA_HEADER_SIZE];
	uint64_t off, tsize, first;
	uint32_t sum;
	char *buf;
	int r;

	*text = NULL;
	if (size < 2 * MDA_HEADER_SIZE || start > d->size || size > d->size - start) {
		*why = "metadata area outside the device";
		return -EINVAL;
	}
	r = dev_read(d, h, sizeof(h), start);
	if (r) {
		*why = "metadata area header unreadable";
		return r;
	}
	if (!sum_ok(le32(h), lvm_crc(INITIAL_CRC, h + 4, sizeof(h) - 4))) {
		*why = "metadata area header: bad CRC";
		return -EINVAL;
	}
	if (memcmp(h + 4, MDA_MAGIC, 16) || le32(h + 20) != MDA_VERSION) {
		*why = "metadata area header: unknown magic or version";
		return -EINVAL;
	}
	if (le64(h + 24) != start || le64(h + 32) != size) {
		*why = "metadata area header: another place than the PV header says";
		return -EINVAL;
	}
	off = le64(h + MDA_RAW_LOCN);
	tsize = le64(h + MDA_RAW_LOCN + 8);
	sum = le32(h + MDA_RAW_LOCN + 16);
	if (le32(h + MDA_RAW_LOCN + 20) & RAW_LOCN_IGNORED || (!off && !tsize))
		return 0;
	if (off < MDA_HEADER_SIZE || off >= size || tsize > size - MDA_HEADER_SIZE) {
		*why = "metadata text outside its area";
		return -EINVAL;
	}
	if (tsize == 0 || tsize > SNAPFS_LVMT_TEXT_MAX) {
		*why = "metadata text empty or over 1 MiB";
		return -EINVAL;
	}
	first = size - off < tsize ? size - off : tsize;
	/* What wraps goes on after the header, and must end before it starts. */
	if (tsize - first > off - MDA_HEADER_SIZE) {
		*why = "metadata text wraps onto itself";
		return -EINVAL;
	}
	buf = malloc(tsize + 1);
	if (!buf)
		return -ENOMEM;
	r = dev_read(d, buf, first, start + off);
	if (!r && tsize > first)
		r = dev_read(d, buf + first, tsize - first, start + MDA_HEADER_SIZE);
	if (r) {
		free(buf);
		*why = "metadata text unreadable";
		return r;
	}
	if (!sum_ok(sum, lvm_crc(INITIAL_CRC, (uint8_t *)buf, tsize))) {
		free(buf);
		*why = "metadata text: bad checksum";
		return -EINVAL;
	}
	buf[tsize] = '\0';
	*text = buf;
	*len = tsize;
	return 0;
}

void snapfs_glvm_pv_free(struct snapfs_glvm_pv *pv)
{
	for (unsigned i = 0; i < pv->ntexts; i++)
		free(pv->text[i]);
	memset(pv, 0, sizeof(*pv));
}

int snapfs_glvm_pv_read(const char *guest, const struct snapfs_glvm_dev *d,
			struct snapfs_glvm_pv *pv)
{
	uint8_t buf[LABEL_SCAN_SECTORS * SECTOR];
	uint64_t da[1][2], mda[2][2];
	unsigned at, pvh, nda, nmda;
	size_t sectors = d->size / SECTOR, pos;
	const char *why = NULL;
	const uint8_t *l;
	int r;

	memset(pv, 0, sizeof(*pv));
	if (sectors > LABEL_SCAN_SECTORS)
		sectors = LABEL_SCAN_SECTORS;
	r = sectors ? dev_read(d, buf, sectors * SECTOR, 0) : -ENOENT;
	if (r) {
		why = "LVM2 label unreadable";
		goto refused;
	}
	r = find_label(buf, sectors, &at, &pvh, &why);
	if (r)
		goto refused;
	l = buf + at * SECTOR;
	if (!snapfs_glvm_uuid_ok((const char *)l + pvh, 32)) {
		why = "PV header: bad PV UUID";
		r = -EINVAL;
		goto refused;
	}
	memcpy(pv->uuid, l + pvh, 32);
	pv->dev_size = le64(l + pvh + 32);
	pos = pvh + PV_HEADER_MIN;
	if (read_locns(l, &pos, da, 1, &nda) || read_locns(l, &pos, mda, 2, &nmda)) {
		why = "PV header: area lists malformed or too long";
		r = -EINVAL;
		goto refused;
	}
	for (unsigned i = 0; i < nmda; i++) {
		char *text;
		size_t len;

		r = read_mda(d, mda[i][0], mda[i][1], &text, &len, &why);
		if (r == -ENOMEM)
			return r;
		if (r) /* the other area may do; the PV is one all the same */
			snapfs_warn("guest %s, disk %s: metadata area %u not read: %s",
				    guest, d->name, i + 1, why);
		else if (text) {
			pv->text[pv->ntexts] = text;
			pv->text_len[pv->ntexts++] = len;
		}
	}
	return 0;

refused:
	snapfs_warn("guest %s, disk %s: not an LVM2 PV: %s", guest, d->name, why);
	return r == -ENOMEM ? r : -EINVAL;
}
