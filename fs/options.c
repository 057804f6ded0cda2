/* Command line and mount options. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "snapfs-fuse.h"

enum { KEY_HELP, KEY_VERSION, KEY_FOREGROUND, KEY_DEBUG, KEY_SINGLE, KEY_CLEANUP };

struct parse_state {
	struct snapfs_opts *o;
	char *linger, *cache, *lvm_timeout, *debug_areas, *freeze, *freeze_timeout, *readahead;
	char *snapshot;
	char *positional[3];
	int npositional;
};

#define OPT(t, m) { t, offsetof(struct parse_state, m), 0 }
static const struct fuse_opt spec[] = {
	OPT("linger=%s", linger),
	OPT("cache=%s", cache),
	OPT("lvm_timeout=%s", lvm_timeout),
	OPT("debug_areas=%s", debug_areas),
	OPT("freeze=%s", freeze),
	OPT("freeze_timeout=%s", freeze_timeout),
	OPT("readahead=%s", readahead),
	OPT("snapshot=%s", snapshot),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_KEY("-f", KEY_FOREGROUND),
	FUSE_OPT_KEY("-d", KEY_DEBUG),
	FUSE_OPT_KEY("debug", KEY_DEBUG),
	FUSE_OPT_KEY("-s", KEY_SINGLE),
	FUSE_OPT_KEY("--cleanup", KEY_CLEANUP),
	FUSE_OPT_END,
};

/* cow_size, reflink_reserve and gid are kept in snapfs_opts directly. */
static const struct fuse_opt spec_direct[] = {
	{ "cow_size=%s", offsetof(struct snapfs_opts, cow_size), 0 },
	{ "reflink_reserve=%s", offsetof(struct snapfs_opts, reserve_text), 0 },
	{ "scratch_dir=%s", offsetof(struct snapfs_opts, scratch_dir), 0 },
	{ "scratch_reserve=%s", offsetof(struct snapfs_opts, scratch_reserve_text), 0 },
	{ "gid=%s", offsetof(struct snapfs_opts, gid_text), 0 },
	{ "host_id=%s", offsetof(struct snapfs_opts, host_id), 0 },
	{ "rbd_reserve=%s", offsetof(struct snapfs_opts, rbd_reserve_text), 0 },
	FUSE_OPT_END,
};

static int on_arg(void *data, const char *arg, int key, struct fuse_args *out)
{
	struct parse_state *st = data;

	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		if (st->npositional == 3)
			return -1;
		st->positional[st->npositional++] = strdup(arg);
		return 0;
	case KEY_HELP:
		st->o->show_help = true;
		return 0;
	case KEY_VERSION:
		st->o->show_version = true;
		return 0;
	case KEY_FOREGROUND:
		st->o->foreground = true;
		return 0;
	case KEY_DEBUG:
		st->o->foreground = true;
		st->o->fuse_debug = true;
		st->o->debug_mask = SNAPFS_DBG_ALL;
		return 0;
	case KEY_SINGLE:
		st->o->single_thread = true;
		return 0;
	case KEY_CLEANUP:
		st->o->cleanup = true;
		return 0;
	}
	return 1; /* keep it for FUSE */
}

/* A decimal number of seconds in [0, max]. */
static int parse_seconds(const char *name, const char *text, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	if (!*text || *end || errno || v < 0 || v > max || v != v) {
		fprintf(stderr, "snapfs: %s=%s: expected seconds from 0 to %.0f\n", name, text,
			max);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

/* lvcreate's --size (1G, 512M, 100) or --extents (20%ORIGIN) syntax. */
static bool valid_cow_size(const char *s)
{
	size_t digits = strspn(s, "0123456789");
	const char *rest = s + digits;

	if (!digits)
		return false;
	/* lvcreate takes a fraction in a size, not in extents. */
	if (*rest == '%')
		return !strcmp(rest, "%ORIGIN") || !strcmp(rest, "%VG") ||
		       !strcmp(rest, "%FREE") || !strcmp(rest, "%PVS");
	if (*rest == '.') {
		size_t frac = strspn(rest + 1, "0123456789");

		if (!frac)
			return false;
		rest += 1 + frac;
	}
	return !*rest || (strchr("bBsSkKmMgGtTpPeE", *rest) && !rest[1]);
}

static int parse_gid(const char *text, gid_t *gid)
{
	char *end;
	unsigned long v;
	struct group gr, *res = NULL;
	char buf[4096];

	errno = 0;
	v = strtoul(text, &end, 10);
	if (*text && !*end && !errno && v < (gid_t)-1) {
		*gid = (gid_t)v;
		return 0;
	}
	if (getgrnam_r(text, &gr, buf, sizeof(buf), &res) == 0 && res) {
		*gid = res->gr_gid;
		return 0;
	}
	fprintf(stderr, "snapfs: gid=%s: no such group\n", text);
	return -EINVAL;
}

static int finish(struct parse_state *st)
{
	struct snapfs_opts *o = st->o;
	double v;

	if (st->linger) {
		if (parse_seconds("linger", st->linger, 86400, &v) < 0)
			return -EINVAL;
		o->linger = (unsigned)v;
	}
	if (st->cache && parse_seconds("cache", st->cache, 3600, &o->cache) < 0)
		return -EINVAL;
	if (st->lvm_timeout) {
		if (parse_seconds("lvm_timeout", st->lvm_timeout, 3600, &v) < 0 || v < 1) {
			fprintf(stderr, "snapfs: lvm_timeout must be at least 1 second\n");
			return -EINVAL;
		}
		o->lvm_timeout = (unsigned)v;
	}
	if (st->freeze) {
		if (!strcmp(st->freeze, "auto")) {
			o->freeze = SNAPFS_FREEZE_AUTO;
		} else if (!strcmp(st->freeze, "require")) {
			o->freeze = SNAPFS_FREEZE_REQUIRE;
		} else if (!strcmp(st->freeze, "off")) {
			o->freeze = SNAPFS_FREEZE_OFF;
		} else {
			fprintf(stderr, "snapfs: freeze=%s: expected auto, require or off\n",
				st->freeze);
			return -EINVAL;
		}
	}
	if (st->snapshot) {
		if (!strcmp(st->snapshot, "auto")) {
			o->snapshot = SNAPFS_SNAP_AUTO;
		} else if (!strcmp(st->snapshot, "storage")) {
			o->snapshot = SNAPFS_SNAP_STORAGE;
		} else if (!strcmp(st->snapshot, "libvirt")) {
			o->snapshot = SNAPFS_SNAP_LIBVIRT;
		} else {
			fprintf(stderr, "snapfs: snapshot=%s: expected auto, storage or libvirt\n",
				st->snapshot);
			return -EINVAL;
		}
	}
	if (st->freeze_timeout) {
		if (parse_seconds("freeze_timeout", st->freeze_timeout, 3600, &v) < 0 || v < 1) {
			fprintf(stderr, "snapfs: freeze_timeout must be at least 1 second\n");
			return -EINVAL;
		}
		o->freeze_timeout = (unsigned)v;
	}
	if (st->readahead) {
		char *end;
		unsigned long kib;

		errno = 0;
		kib = strtoul(st->readahead, &end, 10);
		if (!isdigit((unsigned char)st->readahead[0]) || *end || errno || kib > 65536) {
			fprintf(stderr, "snapfs: readahead=%s: expected KiB from 0 to 65536\n",
				st->readahead);
			return -EINVAL;
		}
		o->readahead = (unsigned)kib;
	}
	unsigned areas = 0;

	if (st->debug_areas && snapfs_log_parse_areas(st->debug_areas, &areas) < 0) {
		fprintf(stderr, "snapfs: debug_areas=%s: known areas are lvm, guests, "
				"snapshot, partitions, fuse, all\n",
			st->debug_areas);
		return -EINVAL;
	}
	o->debug_mask |= areas; /* -d already asked for all */
	if (!o->cow_size && !(o->cow_size = strdup("20%ORIGIN")))
		return -ENOMEM;
	if (!valid_cow_size(o->cow_size)) {
		fprintf(stderr, "snapfs: cow_size=%s: expected a size such as 1G or 512M, "
				"or extents such as 20%%ORIGIN\n",
			o->cow_size);
		return -EINVAL;
	}
	if (!o->reserve_text && !(o->reserve_text = strdup(SNAPFS_RESERVE_DEFAULT)))
		return -ENOMEM;
	if (snapfs_reserve_parse(o->reserve_text, &o->reserve) < 0) {
		fprintf(stderr, "snapfs: reflink_reserve=%s: expected a size such as 2G or "
				"512M, or a share of the filesystem such as 5%%\n",
			o->reserve_text);
		return -EINVAL;
	}
	if (!o->scratch_reserve_text &&
	    !(o->scratch_reserve_text = strdup(SNAPFS_RESERVE_DEFAULT)))
		return -ENOMEM;
	if (snapfs_reserve_parse(o->scratch_reserve_text, &o->scratch_reserve) < 0) {
		fprintf(stderr, "snapfs: scratch_reserve=%s: expected a size such as 2G or "
				"512M, or a share of the filesystem such as 5%%\n",
			o->scratch_reserve_text);
		return -EINVAL;
	}
	if (!o->rbd_reserve_text && !(o->rbd_reserve_text = strdup(SNAPFS_RESERVE_DEFAULT)))
		return -ENOMEM;
	if (snapfs_reserve_parse(o->rbd_reserve_text, &o->rbd_reserve) < 0) {
		fprintf(stderr, "snapfs: rbd_reserve=%s: expected a size such as 2G or "
				"512M, or a share of the cluster such as 5%%\n",
			o->rbd_reserve_text);
		return -EINVAL;
	}
	if (o->host_id && (!*o->host_id || strlen(o->host_id) > 32 ||
			   o->host_id[strspn(o->host_id, "abcdefghijklmnopqrstuvwxyz0123456789-")])) {
		fprintf(stderr, "snapfs: host_id=%s: expected 1 to 32 of [a-z0-9-]\n",
			o->host_id);
		return -EINVAL;
	}
	if (!o->scratch_dir && !(o->scratch_dir = strdup(SNAPFS_SCRATCH_DIR_DEFAULT)))
		return -ENOMEM;
	if (o->scratch_dir[0] != '/' || strlen(o->scratch_dir) > 900) {
		fprintf(stderr, "snapfs: scratch_dir=%s: expected an absolute path\n",
			o->scratch_dir);
		return -EINVAL;
	}
	if (o->gid_text && parse_gid(o->gid_text, &o->gid) < 0)
		return -EINVAL;
	if (o->show_help || o->show_version)
		return 0;
	if (st->npositional == 3 || (st->npositional == 0 && !o->cleanup)) {
		fprintf(stderr, "snapfs: usage: snapfs [OPTIONS] [SOURCE] MOUNTPOINT\n");
		return -EINVAL;
	}
	if (st->npositional == 2) {
		o->source = st->positional[0];
		o->mountpoint = st->positional[1];
	} else if (st->npositional == 1) {
		o->mountpoint = st->positional[0];
	}
	st->positional[0] = st->positional[1] = NULL;
	return 0;
}

int snapfs_opts_parse(int argc, char **argv, struct snapfs_opts *o, struct fuse_args *rest)
{
	struct parse_state st = { .o = o };
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	int rc;

	memset(o, 0, sizeof(*o));
	o->cache = 2;
	o->linger = SNAPFS_LINGER_DEFAULT;
	o->lvm_timeout = 120;
	o->freeze = SNAPFS_FREEZE_AUTO;
	o->freeze_timeout = 10;
	o->readahead = SNAPFS_READAHEAD_KB;
	*rest = (struct fuse_args)FUSE_ARGS_INIT(0, NULL);
	if (fuse_opt_parse(&args, o, spec_direct, NULL) < 0 ||
	    fuse_opt_parse(&args, &st, spec, on_arg) < 0) {
		fprintf(stderr, "snapfs: cannot parse the command line "
				"(more than two SOURCE/MOUNTPOINT arguments?)\n");
		rc = -EINVAL;
	} else {
		rc = finish(&st);
	}
	for (int i = 0; i < 3; i++)
		free(st.positional[i]);
	free(st.linger);
	free(st.cache);
	free(st.lvm_timeout);
	free(st.debug_areas);
	free(st.freeze);
	free(st.freeze_timeout);
	free(st.readahead);
	free(st.snapshot);
	if (rc < 0) {
		fuse_opt_free_args(&args);
		return rc;
	}
	*rest = args;
	return 0;
}

void snapfs_opts_free(struct snapfs_opts *o)
{
	free(o->source);
	free(o->mountpoint);
	free(o->cow_size);
	free(o->reserve_text);
	free(o->scratch_reserve_text);
	free(o->scratch_dir);
	free(o->gid_text);
	free(o->host_id);
	free(o->rbd_reserve_text);
	memset(o, 0, sizeof(*o));
}

void snapfs_opts_usage(const char *prog)
{
	printf("usage: %s [OPTIONS] [SOURCE] MOUNTPOINT\n"
	       "       %s --cleanup [MOUNTPOINT]\n"
	       "\n"
	       "Serve the disks of KVM guests (LVM volumes, files, and every disk of a\n"
	       "running guest), their partitions and the guests' own LVs as read-only\n"
	       "files, each opened file reading from a point-in-time snapshot (an LVM\n"
	       "snapshot, a reflink clone of a file, a libvirt backup job, or a shut-off\n"
	       "guest's file read in place under a guard).\n"
	       "\n"
	       "SOURCE is a libvirt URI (default: libvirt's default URI) or lvm:VG[,VG...]\n"
	       "\n"
	       "options:\n"
	       "    -h, --help             this help\n"
	       "    -V, --version          print the version\n"
	       "    -f                     stay in the foreground, log to stderr\n"
	       "    -d                     debug: foreground, every debug line, FUSE's trace\n"
	       "    -s                     single-threaded\n"
	       "    -o cow_size=SIZE       COW area of each classic snapshot: lvcreate's\n"
	       "                           --size (1G) or --extents (20%%ORIGIN, the default)\n"
	       "    -o reflink_reserve=SIZE  free space left to the guests on a filesystem\n"
	       "                           holding reflink clones: under it they are dropped\n"
	       "                           (2G, 512M, or 5%% of the filesystem: the default)\n"
	       "    -o snapshot=MODE       what snapshots a guest: auto (default: its storage\n"
	       "                           where every disk's can, else libvirt's backup API\n"
	       "                           for a running guest), storage, or libvirt\n"
	       "    -o scratch_dir=DIR     where backup jobs keep their scratch files\n"
	       "                           (default " SNAPFS_SCRATCH_DIR_DEFAULT ")\n"
	       "    -o scratch_reserve=SIZE  free space kept there: under it a backup job\n"
	       "                           is ended (2G, 512M, or 5%% of it: the default)\n"
	       "    -o rbd_reserve=SIZE    free space left to the guests on a Ceph cluster\n"
	       "                           holding RBD snapshots: under it, or when the\n"
	       "                           cluster is near full, they are dropped (2G, 512M,\n"
	       "                           or 5%%, the default)\n"
	       "    -o host_id=ID          this host in RBD snapshots' names, [a-z0-9-]\n"
	       "                           (default: /etc/machine-id)\n"
	       "    -o linger=SECONDS      keep a snapshot set this long after its last\n"
	       "                           file is closed, so that a backup tool that copies\n"
	       "                           a guest's files one after the other gets them all\n"
	       "                           from one set (default 10; 0: removed at once)\n"
	       "    -o gid=GROUP           group owning the tree (name or number)\n"
	       "    -o cache=SECONDS       how long a guest listing is reused (default 2)\n"
	       "    -o lvm_timeout=SECONDS bound on each lvm command (default 120)\n"
	       "    -o freeze=MODE         freeze a running guest's filesystems (guest agent)\n"
	       "                           while its snapshots are made: auto (default; if\n"
	       "                           the agent fails, crash-consistent), require, off\n"
	       "    -o freeze_timeout=SECONDS  how long the agent may take (default 10)\n"
	       "    -o readahead=KIB       the mount's readahead window (default 4096;\n"
	       "                           0: the kernel's, 128)\n"
	       "    -o debug_areas=AREAS   debug lines for lvm:guests:snapshot:partitions:fuse\n"
	       "                           or all (also SNAPFS_DEBUG=AREAS)\n"
	       "    -o allow_other         let other users in (with default_permissions)\n"
	       "    --cleanup              remove the snapshots an earlier run at MOUNTPOINT\n"
	       "                           left behind (all of snapfs's without one), exit\n"
	       "\n"
	       "FUSE mount options such as allow_other also apply; see snapfs(8).\n",
	       prog, prog);
}
