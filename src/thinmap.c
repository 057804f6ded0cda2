/* Where a thin snapshot has data: the thin pool's own mapping of it, so that
 * SEEK_DATA/SEEK_HOLE and st_blocks of a thin disk and its partitions show
 * what the guest never wrote as holes, and cp --sparse and tar -S skip them.
 *
 * The mapping is read once per snapshot set, from a metadata snapshot of the
 * pool (the live metadata changes under a reader): reserve_metadata_snap,
 * thin_dump -m --dev-id, release_metadata_snap.  A pool holds one metadata
 * snapshot at a time, so snapfs takes them one at a time (map_lock) and
 * releases each on every path; a pool whose metadata snapshot another tool
 * holds (EBUSY) is left alone, and its disks count as all data.
 *
 * thin_dump's XML is parsed by hand, every number checked: only
 * <superblock data_block_size>, <device dev_id> and its <range_mapping>
 * and <single_mapping> elements are read.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "snapfs.h"

/* Bounds: a map this fragmented is not worth its memory (all data then). */
#define THINMAP_MAX 1000000
#define THIN_DUMP_TIMEOUT_MS 60000

static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *thin_dump_path = THIN_DUMP_PATH; /* read-only */

void snapfs_thinmap_free(struct snapfs_thinmap *m)
{
	free(m->ext);
	m->ext = NULL;
	m->n = 0;
}

/* ---- parsing thin_dump's XML -------------------------------------------- */

/* The value of attribute name in the element that starts at tag and ends
 * at its '>': a decimal number that fits in 64 bits.  0 or -EINVAL. */
static int attr_u64(const char *tag, const char *name, uint64_t *out)
{
	const char *end = strchr(tag, '>');
	size_t nlen = strlen(name);
	const char *p = tag;

	if (!end)
		return -EINVAL;
	while ((p = strstr(p, name)) && p < end) {
		if (p[-1] == ' ' && p[nlen] == '=' && p[nlen + 1] == '"') {
			uint64_t v = 0;

			p += nlen + 2;
			if (*p < '0' || *p > '9')
				return -EINVAL;
			for (; *p >= '0' && *p <= '9'; p++) {
				if (v > (UINT64_MAX - 9) / 10)
					return -EINVAL;
				v = v * 10 + (uint64_t)(*p - '0');
			}
			if (*p != '"')
				return -EINVAL;
			*out = v;
			return 0;
		}
		p += nlen;
	}
	return -EINVAL;
}

int snapfs_thinmap_add(struct snapfs_thinmap *m, size_t *cap, uint64_t start, uint64_t end)
{
	if (m->n && start < m->ext[m->n - 1].end)
		return -EINVAL; /* not sorted, or overlapping */
	if (m->n && start == m->ext[m->n - 1].end) {
		m->ext[m->n - 1].end = end;
		return 0;
	}
	if (m->n == THINMAP_MAX)
		return -E2BIG;
	if (m->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct snapfs_extent *e = realloc(m->ext, ncap * sizeof(*e));

		if (!e)
			return -ENOMEM;
		m->ext = e;
		*cap = ncap;
	}
	m->ext[m->n].start = start;
	m->ext[m->n].end = end;
	m->n++;
	return 0;
}

/* blocks * block_bytes, or -EINVAL when it does not fit. */
static int to_bytes(uint64_t blocks, uint64_t block_bytes, uint64_t *out)
{
	if (block_bytes && blocks > UINT64_MAX / block_bytes)
		return -EINVAL;
	*out = blocks * block_bytes;
	return 0;
}

int snapfs_thinmap_parse(const char *xml, uint64_t dev_id, struct snapfs_thinmap *out)
{
	const char *sb = strstr(xml, "<superblock "), *dev = NULL, *p, *stop;
	uint64_t block_sectors, id, bytes;
	size_t cap = 0;
	int rc;

	out->ext = NULL;
	out->n = 0;
	if (!sb || attr_u64(sb, "data_block_size", &block_sectors) < 0 || block_sectors == 0 ||
	    block_sectors > (1u << 21))
		return -EINVAL;
	bytes = block_sectors * 512;
	for (p = sb; (p = strstr(p, "<device ")); p++) {
		if (attr_u64(p, "dev_id", &id) == 0 && id == dev_id) {
			dev = p;
			break;
		}
	}
	if (!dev)
		return -ENOENT;
	stop = strstr(dev, "</device>");
	if (!stop)
		return -EINVAL;
	for (p = strchr(dev, '>'); p && (p = strchr(p, '<')) && p < stop; p++) {
		uint64_t begin, length = 1, start, len;

		if (!strncmp(p, "<range_mapping ", 15)) {
			if (attr_u64(p, "origin_begin", &begin) < 0 ||
			    attr_u64(p, "length", &length) < 0 || length == 0)
				rc = -EINVAL;
			else
				rc = 0;
		} else if (!strncmp(p, "<single_mapping ", 16)) {
			rc = attr_u64(p, "origin_block", &begin);
		} else {
			continue;
		}
		if (rc == 0 && begin > UINT64_MAX - length)
			rc = -EINVAL;
		if (rc == 0)
			rc = to_bytes(begin, bytes, &start);
		if (rc == 0)
			rc = to_bytes(length, bytes, &len);
		if (rc == 0 && start > UINT64_MAX - len)
			rc = -EINVAL;
		if (rc == 0)
			rc = snapfs_thinmap_add(out, &cap, start, start + len);
		if (rc < 0) {
			snapfs_thinmap_free(out);
			return rc;
		}
	}
	return 0;
}

/* ---- questions a map answers ------------------------------------------- */

/* The first extent that ends after off. */
static size_t first_after(const struct snapfs_thinmap *m, uint64_t off)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->ext[mid].end <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint64_t snapfs_thinmap_seek(const struct snapfs_thinmap *m, uint64_t off, uint64_t end,
			     int whence)
{
	size_t i = first_after(m, off);
	uint64_t at;

	if (whence == SEEK_DATA)
		at = i == m->n ? end : m->ext[i].start > off ? m->ext[i].start : off;
	else
		at = i == m->n || m->ext[i].start > off ? off : m->ext[i].end;
	return at < end ? at : end;
}

uint64_t snapfs_thinmap_bytes(const struct snapfs_thinmap *m, uint64_t start, uint64_t end)
{
	uint64_t total = 0;

	for (size_t i = first_after(m, start); i < m->n && m->ext[i].start < end; i++) {
		uint64_t s = m->ext[i].start > start ? m->ext[i].start : start;
		uint64_t e = m->ext[i].end < end ? m->ext[i].end : end;

		total += e - s;
	}
	return total;
}

/* ---- reading it from the pool ------------------------------------------- */

/* The device-mapper name of MAJ:MIN, from sysfs. */
static int dm_name_of(const char *majmin, char *out, size_t outlen)
{
	char path[64];
	unsigned maj, min;
	FILE *f;

	if (sscanf(majmin, "%u:%u", &maj, &min) != 2)
		return -EINVAL;
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/dm/name", maj, min);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	if (!fgets(out, (int)outlen, f)) {
		fclose(f);
		return -EIO;
	}
	fclose(f);
	out[strcspn(out, "\n")] = '\0';
	return out[0] && !strchr(out, '/') ? 0 : -EINVAL;
}

/* Held with map_lock: the dump between reserve and release. */
static int dump_locked(const char *meta, uint64_t dev_id, struct snapfs_thinmap *out)
{
	char metapath[300], id[24];
	struct snapfs_exec_result res;
	int rc;

	snprintf(metapath, sizeof(metapath), "/dev/mapper/%s", meta);
	snprintf(id, sizeof(id), "%" PRIu64, dev_id);
	const char *argv[] = { thin_dump_path, "--metadata-snap", "--dev-id", id,
			       "--format", "xml", metapath, NULL };

	rc = snapfs_exec(argv, THIN_DUMP_TIMEOUT_MS, &res);
	if (rc < 0)
		return rc;
	if (res.status != 0) {
		snapfs_debug(SNAPFS_DBG_SNAP, "thin_dump of %s failed: %s", metapath, res.err);
		rc = -EIO;
	} else {
		rc = snapfs_thinmap_parse(res.out, dev_id, out);
	}
	snapfs_exec_result_free(&res);
	return rc;
}

int snapfs_thinmap_read(const char *dm_name, struct snapfs_thinmap *out)
{
	char type[32], params[512], pool[128], meta[128], pool_dev[32], meta_dev[32];
	uint64_t dev_id;
	int rc, rel;

	out->ext = NULL;
	out->n = 0;
	/* The snapshot: "thin POOL_MAJ:MIN DEV_ID [EXTERNAL_ORIGIN]". */
	rc = snapfs_dm_table(dm_name, type, sizeof(type), params, sizeof(params));
	if (rc < 0)
		return rc;
	if (strcmp(type, "thin") || sscanf(params, "%31s %" SCNu64, pool_dev, &dev_id) != 2)
		return -EINVAL;
	rc = dm_name_of(pool_dev, pool, sizeof(pool));
	if (rc < 0)
		return rc;
	/* The pool: "thin-pool META_MAJ:MIN DATA_MAJ:MIN BLOCK_SECTORS ...". */
	rc = snapfs_dm_table(pool, type, sizeof(type), params, sizeof(params));
	if (rc < 0)
		return rc;
	if (strcmp(type, "thin-pool") || sscanf(params, "%31s", meta_dev) != 1)
		return -EINVAL;
	rc = dm_name_of(meta_dev, meta, sizeof(meta));
	if (rc < 0)
		return rc;

	pthread_mutex_lock(&map_lock);
	/* No signal may leave the pool's metadata snapshot held: they are
	 * handled by the FUSE loop's thread, which only asks this one to end. */
	rc = snapfs_dm_message(pool, "reserve_metadata_snap");
	if (rc == 0) {
		rc = dump_locked(meta, dev_id, out);
		rel = snapfs_dm_message(pool, "release_metadata_snap");
		if (rel < 0)
			snapfs_error("thin pool %s: releasing its metadata snapshot failed (%s); "
				     "release it by hand: dmsetup message %s 0 "
				     "release_metadata_snap",
				     pool, strerror(-rel), pool);
	}
	pthread_mutex_unlock(&map_lock);
	if (rc < 0)
		snapfs_thinmap_free(out);
	return rc;
}
