/* The boundary to LVM: one lvs report, lvcreate --snapshot, lvremove of
 * what snapfs made.  Every command runs through snapfs_exec. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "snapfs.h"

static const char *lvm_path = LVM_PATH;
static int lvm_timeout_ms = 120 * 1000;

void snapfs_lvm_configure(const char *path, int timeout_ms)
{
	if (path)
		lvm_path = path;
	if (timeout_ms > 0)
		lvm_timeout_ms = timeout_ms;
}

#define LVS_FIELDS                                                                       \
	"vg_name,lv_name,lv_size,lv_attr,segtype,origin,pool_lv,lv_kernel_major,"      \
	"lv_kernel_minor,lv_tags"
enum { F_VG, F_LV, F_SIZE, F_ATTR, F_SEG, F_ORIGIN, F_POOL, F_MAJ, F_MIN, F_TAGS, F_N };

static void copy_field(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src);
}

static void classify(struct snapfs_lv *lv, const char *tags)
{
	char type = lv->attr[0];
	CLEANUP_FREE char *t = strdup(tags);
	char *save = NULL;

	lv->thin = !strcmp(lv->segtype, "thin");
	lv->is_snapshot = type == 's' || type == 'S' || (lv->thin && lv->origin[0]);
	/* Plain, origin, thin, RAID, mirror and cached LVs can hold a guest's
	 * disk; pools, their data and metadata, images, logs and snapshots
	 * cannot. */
	lv->is_ordinary = !lv->is_snapshot && strchr("-oOVrRmMC", type) != NULL && type;
	for (char *tok = t ? strtok_r(t, ",", &save) : NULL; tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, SNAPFS_TAG))
			lv->snapfs_owned = true;
		else if (!strncmp(tok, SNAPFS_OWNER_TAG_PREFIX, strlen(SNAPFS_OWNER_TAG_PREFIX)))
			copy_field(lv->owner, sizeof(lv->owner), tok);
	}
}

static int parse_line(char *line, struct snapfs_lv *lv)
{
	char *f[F_N];
	char *p = line;
	int i;

	while (*p == ' ')
		p++;
	for (i = 0; i < F_N; i++) {
		f[i] = p;
		p = strchr(p, '|');
		if (!p)
			break;
		*p++ = '\0';
	}
	if (i != F_N - 1 || !*f[F_VG] || !*f[F_LV])
		return -EINVAL;
	memset(lv, 0, sizeof(*lv));
	copy_field(lv->vg, sizeof(lv->vg), f[F_VG]);
	copy_field(lv->lv, sizeof(lv->lv), f[F_LV]);
	copy_field(lv->attr, sizeof(lv->attr), f[F_ATTR]);
	copy_field(lv->segtype, sizeof(lv->segtype), f[F_SEG]);
	copy_field(lv->origin, sizeof(lv->origin), f[F_ORIGIN]);
	copy_field(lv->pool, sizeof(lv->pool), f[F_POOL]);
	lv->size = strtoull(f[F_SIZE], NULL, 10);
	lv->major = *f[F_MAJ] ? atoi(f[F_MAJ]) : -1;
	lv->minor = *f[F_MIN] ? atoi(f[F_MIN]) : -1;
	classify(lv, f[F_TAGS]);
	return 0;
}

int snapfs_lvm_parse_lvs(const char *text, struct snapfs_lv_list *out)
{
	CLEANUP_FREE char *copy = strdup(text);
	char *save = NULL;
	size_t cap = 0;

	out->lv = NULL;
	out->n = 0;
	if (!copy)
		return -ENOMEM;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct snapfs_lv lv;

		if (parse_line(line, &lv) < 0) {
			snapfs_debug(SNAPFS_DBG_LVM, "lvs: ignoring line \"%s\"", line);
			continue;
		}
		if (out->n == cap) {
			struct snapfs_lv *n;

			cap = cap ? cap * 2 : 16;
			n = realloc(out->lv, cap * sizeof(*n));
			if (!n) {
				snapfs_lvm_list_free(out);
				return -ENOMEM;
			}
			out->lv = n;
		}
		out->lv[out->n++] = lv;
	}
	return 0;
}

char *snapfs_lvm_one_line(const char *text)
{
	char *out = malloc(2 * strlen(text) + 1), *o = out;

	if (!out)
		return NULL;
	while (*text) {
		const char *end = strchr(text, '\n');
		size_t len = end ? (size_t)(end - text) : strlen(text);
		const char *next = text + len + (end ? 1 : 0);

		while (len && isspace((unsigned char)*text)) {
			text++;
			len--;
		}
		while (len && isspace((unsigned char)text[len - 1]))
			len--;
		if (len) {
			if (o != out) {
				*o++ = ';';
				*o++ = ' ';
			}
			memcpy(o, text, len);
			o += len;
		}
		text = next;
	}
	*o = '\0';
	return out;
}

/* Run "lvm SUBCOMMAND ..." and log its words on failure. */
static int run_lvm(const char *const *args, struct snapfs_exec_result *res)
{
	const char *argv[48];
	size_t n = 0;
	int rc;

	argv[n++] = lvm_path;
	while (*args && n < sizeof(argv) / sizeof(argv[0]) - 1)
		argv[n++] = *args++;
	argv[n] = NULL;
	rc = snapfs_exec(argv, lvm_timeout_ms, res);
	/* LVM's messages come one per line, indented: a log line is one line. */
	if (rc == 0) {
		char *err = snapfs_lvm_one_line(res->err);

		if (!err) {
			snapfs_exec_result_free(res);
			return -ENOMEM;
		}
		free(res->err);
		res->err = err;
	}
	if (rc == 0 && snapfs_log_debug_enabled(SNAPFS_DBG_LVM)) {
		snapfs_debug(SNAPFS_DBG_LVM, "lvm %s %s: exit %d%s%s", argv[1],
			     n > 2 ? argv[n - 1] : "", res->status, res->err[0] ? ": " : "",
			     res->err);
	}
	if (rc < 0)
		snapfs_error("lvm %s: %s", argv[1],
			     rc == -ETIMEDOUT ? "timed out and was killed" : strerror(-rc));
	return rc;
}

int snapfs_lvm_list(const char *const *vgs, struct snapfs_lv_list *out)
{
	const char *args[40] = { "lvs",	      "--noheadings", "--nosuffix", "--units",
				 "b",	      "--separator",  "|",	    "-o",
				 LVS_FIELDS };
	struct snapfs_exec_result res;
	size_t n = 9;
	int rc;

	for (; vgs && *vgs && n < 39; vgs++)
		args[n++] = *vgs;
	args[n] = NULL;
	rc = run_lvm(args, &res);
	if (rc < 0)
		return rc;
	if (res.status != 0) {
		snapfs_error("lvs failed: %s", res.err);
		snapfs_exec_result_free(&res);
		return -EIO;
	}
	rc = snapfs_lvm_parse_lvs(res.out, out);
	snapfs_exec_result_free(&res);
	return rc;
}

void snapfs_lvm_list_free(struct snapfs_lv_list *l)
{
	free(l->lv);
	l->lv = NULL;
	l->n = 0;
}

const struct snapfs_lv *snapfs_lvm_find(const struct snapfs_lv_list *l, const char *vg,
					const char *lv)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->lv[i].vg, vg) && !strcmp(l->lv[i].lv, lv))
			return &l->lv[i];
	return NULL;
}

/* Split a device-mapper name "vg-lv" (dashes inside names doubled). */
static int split_dm_name(const char *name, char *vg, size_t vglen, char *lv, size_t lvlen)
{
	size_t o = 0;
	const char *p = name;

	for (; *p; p++) {
		if (*p == '-' && p[1] == '-') {
			p++;
		} else if (*p == '-') {
			break;
		}
		if (o + 1 >= vglen)
			return -ENAMETOOLONG;
		vg[o++] = *p;
	}
	vg[o] = '\0';
	if (*p != '-' || !o)
		return -EINVAL;
	o = 0;
	for (p++; *p; p++) {
		if (*p == '-' && p[1] == '-')
			p++;
		else if (*p == '-')
			return -EINVAL;
		if (o + 1 >= lvlen)
			return -ENAMETOOLONG;
		lv[o++] = *p;
	}
	lv[o] = '\0';
	return o ? 0 : -EINVAL;
}

const struct snapfs_lv *snapfs_lvm_resolve_path(const struct snapfs_lv_list *l,
						const char *path)
{
	char vg[128], lv[128];
	struct stat st;

	if (!strncmp(path, "/dev/mapper/", 12)) {
		if (split_dm_name(path + 12, vg, sizeof(vg), lv, sizeof(lv)) == 0)
			return snapfs_lvm_find(l, vg, lv);
		return NULL;
	}
	/* /dev/dm-N, /dev/disk/by-*, or an active /dev/VG/LV: by device number. */
	if (stat(path, &st) == 0 && S_ISBLK(st.st_mode)) {
		for (size_t i = 0; i < l->n; i++)
			if (l->lv[i].major == (int)major(st.st_rdev) &&
			    l->lv[i].minor == (int)minor(st.st_rdev))
				return &l->lv[i];
		return NULL;
	}
	/* An inactive LV has no node; /dev/VG/LV still names it. */
	if (sscanf(path, "/dev/%127[^/]/%127[^/]", vg, lv) == 2 &&
	    strlen(path) == 6 + strlen(vg) + strlen(lv))
		return snapfs_lvm_find(l, vg, lv);
	return NULL;
}

int snapfs_lvm_dm_path(const char *vg, const char *lv, char *out, size_t outlen)
{
	/* Both names at their longest, every byte a dash, doubled. */
	char buf[sizeof("/dev/mapper/") + 2 * 255 + 1 + 2 * 255];
	const char *parts[2] = { vg, lv };
	size_t o = (size_t)snprintf(buf, sizeof(buf), "/dev/mapper/");

	if (strlen(vg) > 255 || strlen(lv) > 255)
		return -ENAMETOOLONG;
	for (int i = 0; i < 2; i++) {
		for (const char *p = parts[i]; *p; p++) {
			buf[o++] = *p;
			if (*p == '-')
				buf[o++] = '-';
		}
		if (i == 0)
			buf[o++] = '-';
	}
	buf[o] = '\0';
	if (o >= outlen)
		return -ENAMETOOLONG;
	memcpy(out, buf, o + 1);
	return 0;
}

bool snapfs_lvm_dm_name_is(const struct snapfs_lv *lv, const char *dm_name)
{
	static const char prefix[] = "/dev/mapper/";
	char path[sizeof(prefix) + 2 * (sizeof(lv->vg) + sizeof(lv->lv))];
	const char *name = path + strlen(prefix);
	size_t len = strlen(dm_name);

	/* sysfs ends the name with a newline. */
	if (len && dm_name[len - 1] == '\n')
		len--;
	return snapfs_lvm_dm_path(lv->vg, lv->lv, path, sizeof(path)) == 0 &&
	       strlen(name) == len && !strncmp(name, dm_name, len);
}

bool snapfs_lvm_still_there(const struct snapfs_lv *lv)
{
	char path[64], name[2 * 256 + 4];
	ssize_t n;
	int fd;

	if (lv->major < 0 || lv->minor < 0)
		return false;
	snprintf(path, sizeof(path), "/sys/dev/block/%d:%d/dm/name", lv->major, lv->minor);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, name, sizeof(name) - 1);
	close(fd);
	if (n <= 0)
		return false;
	name[n] = '\0';
	return snapfs_lvm_dm_name_is(lv, name);
}

int snapfs_lvm_errno(const char *text)
{
	static const struct {
		const char *words;
		int err;
	} map[] = {
		/* Only words of failures: lvcreate also prints warnings (such
		 * as thin over-provisioning) on success. */
		{ "Insufficient free space", ENOSPC },
		{ "insufficient free space", ENOSPC },
		{ "Insufficient suitable allocatable extents", ENOSPC },
		{ "reached threshold", ENOSPC },
		{ "LV locked by other host", EBUSY },
		{ "must be active exclusively", EBUSY },
		{ "Snapshots of locked devices are not supported", EBUSY },
		{ "exclusive", EBUSY },
		{ "locked", EBUSY },
		{ "lock failed", EBUSY },
		{ "held by other host", EBUSY },
		{ "in use", EBUSY },
		{ "already exists", EEXIST },
		{ "not found", ENOENT },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strstr(text, map[i].words))
			return -map[i].err;
	return -EIO;
}

int snapfs_lvm_snapshot_create(const struct snapfs_lv *origin, const char *snap,
			       const char *cow_size, const char *owner, char **why)
{
	CLEANUP_FREE char *target = NULL;
	struct snapfs_exec_result res;
	const char *args[24];
	size_t n = 0;
	int rc;

	*why = NULL;
	if (asprintf(&target, "%s/%s", origin->vg, origin->lv) < 0)
		return -ENOMEM;
	args[n++] = "lvcreate";
	args[n++] = "--snapshot";
	args[n++] = "--permission";
	args[n++] = "r";
	args[n++] = "--name";
	args[n++] = snap;
	args[n++] = "--addtag";
	args[n++] = SNAPFS_TAG;
	args[n++] = "--addtag";
	args[n++] = owner;
	if (origin->thin) {
		/* Thin snapshots skip activation unless told otherwise. */
		args[n++] = "--setactivationskip";
		args[n++] = "n";
		args[n++] = "--activate";
		args[n++] = "y";
	} else {
		args[n++] = strchr(cow_size, '%') ? "--extents" : "--size";
		args[n++] = cow_size;
	}
	args[n++] = target;
	args[n] = NULL;
	rc = run_lvm(args, &res);
	if (rc < 0 || res.status < 0) {
		/* Stopped half way: the snapshot may exist; it carries our tags. */
		*why = strdup(rc == -ETIMEDOUT ? "lvcreate timed out"
			      : rc < 0	     ? strerror(-rc)
					     : "lvcreate was killed");
		if (rc == 0)
			snapfs_exec_result_free(&res);
		snapfs_lvm_snapshot_remove(origin->vg, snap, owner);
		return -EIO;
	}
	if (res.status != 0) {
		rc = snapfs_lvm_errno(res.err);
		if (rc == -EEXIST || rc == -ENOENT)
			rc = -EIO;
		*why = strdup(res.err[0] ? res.err : "lvcreate failed without a message");
		snapfs_exec_result_free(&res);
		return rc;
	}
	snapfs_exec_result_free(&res);
	return 0;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* lvremove --select, so that the check of snapfs's tags and the removal
 * happen under one VG lock: snapfs never removes an LV it did not make. */
static int remove_selected(const char *vg, const char *select, int *removed, char **why)
{
	struct snapfs_exec_result res;
	const char *args[] = { "lvremove", "--yes", "--select", select, vg, NULL };
	int rc;

	if (!vg)
		args[4] = NULL;
	rc = run_lvm(args, &res);
	if (rc < 0)
		return rc;
	if (removed)
		for (const char *p = res.out; (p = strstr(p, "successfully removed")); p++)
			(*removed)++;
	if (res.status != 0) {
		rc = snapfs_lvm_errno(res.err);
		if (why)
			*why = strdup(res.err);
	}
	snapfs_exec_result_free(&res);
	return rc;
}

int snapfs_lvm_snapshot_remove(const char *vg, const char *lv, const char *owner)
{
	CLEANUP_FREE char *select = NULL;
	int delay = 100;
	int rc = -EIO;

	if (asprintf(&select, "lv_name=\"%s\" && lv_tags=\"%s\" && lv_tags=\"%s\"", lv,
		     SNAPFS_TAG, owner) < 0)
		return -ENOMEM;
	for (int attempt = 0; attempt < 6; attempt++) {
		CLEANUP_FREE char *why = NULL;
		int removed = 0;

		rc = remove_selected(vg, select, &removed, &why);
		if (rc == 0)
			return 0;
		snapfs_warn("lvremove %s/%s (attempt %d): %s", vg, lv, attempt + 1,
			    why ? why : strerror(-rc));
		sleep_ms(delay);
		delay *= 2;
	}
	return rc;
}

int snapfs_lvm_sweep(const char *owner)
{
	CLEANUP_FREE char *select = NULL;
	CLEANUP_FREE char *why = NULL;
	int removed = 0;
	int rc;

	if (owner)
		rc = asprintf(&select, "lv_tags=\"%s\" && lv_tags=\"%s\"", SNAPFS_TAG, owner);
	else
		rc = asprintf(&select, "lv_tags=\"%s\"", SNAPFS_TAG);
	if (rc < 0)
		return -ENOMEM;
	rc = remove_selected(NULL, select, &removed, &why);
	if (rc < 0) {
		snapfs_error("removing leftover snapshots failed: %s", why ? why : strerror(-rc));
		return rc;
	}
	return removed;
}
