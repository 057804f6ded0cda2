/* mount.snapfs: the mount(8) helper of snapfs.
 *
 * mount(8) runs it for "mount -t snapfs" and for fstab lines of type snapfs,
 * with any setuid privilege already dropped, as
 *
 *	mount.snapfs SOURCE DIR [-sfnv] [-o OPTIONS] [-t TYPE] [-N NAMESPACE]
 *
 * util-linux 2.38 always passes -o, beginning with "rw" (or "ro"), has
 * already removed defaults, auto, noauto, comment= and x-*, turned gid=NAME
 * into a number and "user" into noexec,nosuid,nodev, and passes DIR
 * canonical.  Other callers put the options first: both orders work.
 *
 * This turns that into "snapfs [-o KEPT] SOURCE DIR" and execs it: no shell,
 * a fixed argv, and snapfs's exit status is ours.  snapfs goes to the
 * background only once the mount is ready, so mount(8) returns when the tree
 * can be used, and fails with snapfs's own message when it cannot.
 *
 * SNAPFS_BIN names another snapfs (the tests use it).  mount(8) runs helpers
 * with the caller's own uid, and secure_getenv() ignores SNAPFS_BIN should
 * this program ever be made setuid, so it gives nobody more than they had.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* mount(8)'s exit statuses (mount(8), "RETURN CODES"). */
#define EXIT_USAGE 1
#define EXIT_SYSTEM 2

static const char prog[] = "mount.snapfs";
static bool verbose;

enum fate { KEEP, DROP, REFUSE };

struct rule {
	const char *name; /* a trailing '=' or '-' matches a prefix */
	enum fate fate;
	const char *why;
};

static const char why_mount[] = "for mount(8) or systemd";
static const char why_ro[] = "snapfs is always read-only";
static const char why_flags[] = "snapfs always mounts nosuid,nodev,noatime";

static const struct rule rules[] = {
	/* fstab(5), mount(8) and systemd.mount(5): never for the filesystem */
	{ "defaults", DROP, why_mount },
	{ "auto", DROP, why_mount },
	{ "noauto", DROP, why_mount },
	{ "user", DROP, why_mount },
	{ "users", DROP, why_mount },
	{ "nouser", DROP, why_mount },
	{ "owner", DROP, why_mount },
	{ "group", DROP, why_mount },
	{ "_netdev", DROP, why_mount },
	{ "nofail", DROP, why_mount },
	{ "comment=", DROP, why_mount },
	{ "x-", DROP, why_mount },
	{ "X-", DROP, why_mount },
	{ "uhelper=", DROP, why_mount },
	{ "helper=", DROP, why_mount },
	/* mount(8) adds "rw" to every mount: refusing it would refuse them all */
	{ "rw", DROP, why_ro },
	{ "ro", DROP, why_ro },
	/* What would undo snapfs's own flags, or means nothing read-only.
	 * noexec, nosuid and nodev are kept: FUSE applies them. */
	{ "suid", DROP, why_flags },
	{ "dev", DROP, why_flags },
	{ "exec", DROP, why_flags },
	{ "atime", DROP, why_flags },
	{ "noatime", DROP, why_flags },
	{ "nodiratime", DROP, why_flags },
	{ "relatime", DROP, why_flags },
	{ "norelatime", DROP, why_flags },
	{ "strictatime", DROP, why_flags },
	{ "nostrictatime", DROP, why_flags },
	{ "lazytime", DROP, why_flags },
	{ "nolazytime", DROP, why_flags },
	{ "sync", DROP, why_ro },
	{ "async", DROP, why_ro },
	{ "dirsync", DROP, why_ro },
	/* A second snapfs would be stacked on the first. */
	{ "remount", REFUSE, "remounting is not supported: umount and mount again" },
	{ NULL, KEEP, NULL },
};

static const struct rule *rule_for(const char *opt)
{
	const struct rule *r;

	for (r = rules; r->name; r++) {
		size_t len = strlen(r->name);
		char last = r->name[len - 1];

		if (last == '=' || last == '-' ? !strncmp(opt, r->name, len)
					       : !strcmp(opt, r->name))
			break;
	}
	return r;
}

/* Append opt to out (comma-separated) escaped for FUSE's option parser,
 * which splits at commas and takes a backslash as an escape. */
static void append_escaped(char *out, const char *opt)
{
	size_t o = strlen(out);

	if (o)
		out[o++] = ',';
	for (const char *p = opt; *p; p++) {
		if (*p == ',' || *p == '\\')
			out[o++] = '\\';
		out[o++] = *p;
	}
	out[o] = '\0';
}

/* Sort one option, as written but without its quotes, into out.  Returns 0
 * or EXIT_USAGE (logged). */
static int take_option(const char *opt, char *out)
{
	const struct rule *r;

	if (!*opt)
		return 0;
	r = rule_for(opt);
	switch (r->fate) {
	case KEEP:
		append_escaped(out, opt);
		return 0;
	case DROP:
		if (verbose)
			fprintf(stderr, "%s: ignoring %s (%s)\n", prog, opt, r->why);
		return 0;
	case REFUSE:
		break;
	}
	fprintf(stderr, "%s: %s: %s\n", prog, opt, r->why);
	return EXIT_USAGE;
}

/* Split an option string as libmount does: at commas, except inside double
 * quotes (name="a,b"), which are removed.  What snapfs should see is added
 * to out, which has room for twice in.  Returns 0 or EXIT_USAGE (logged). */
static int filter_options(const char *in, char *out)
{
	char *opt = malloc(strlen(in) + 1);
	bool quoted = false;
	size_t n = 0;
	int rc = 0;

	if (!opt) {
		perror(prog);
		return EXIT_SYSTEM;
	}
	for (const char *p = in;; p++) {
		if (*p == '"') {
			quoted = !quoted;
			continue;
		}
		if (*p && (*p != ',' || quoted)) {
			opt[n++] = *p;
			continue;
		}
		opt[n] = '\0';
		n = 0;
		if (quoted) {
			fprintf(stderr, "%s: -o %s: unbalanced double quote\n", prog, in);
			rc = EXIT_USAGE;
		} else {
			rc = take_option(opt, out);
		}
		if (rc || !*p)
			break;
	}
	free(opt);
	return rc;
}

/* Run in the mount namespace mount(8) --namespace was given. */
static int enter_namespace(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || setns(fd, CLONE_NEWNS) < 0) {
		fprintf(stderr, "%s: cannot enter the mount namespace %s: %s\n", prog,
			path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return EXIT_SYSTEM;
	}
	close(fd);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s SOURCE DIR [-sfnv] [-o OPTIONS] [-t TYPE] [-N NAMESPACE]\n"
		"\n"
		"The mount(8) helper of snapfs: runs \"snapfs -o OPTIONS SOURCE DIR\"\n"
		"without the options that belong to mount(8) or systemd.\n"
		"SOURCE \"none\" stands for libvirt's default URI.\n"
		"\n"
		"    -o OPTIONS    mount options (see snapfs(8) and mount.snapfs(8))\n"
		"    -f            do everything but run snapfs\n"
		"    -v            say what is run and which options are ignored\n"
		"    -s, -n        accepted, ignored\n"
		"    -t TYPE       accepted, ignored\n"
		"    -N NAMESPACE  mount in this mount namespace (a path such as\n"
		"                  /proc/PID/ns/mnt)\n"
		"    -h, --help    this help\n"
		"    -V, --version print the version\n",
		prog);
}

struct request {
	const char *source, *dir;
	const char **opts; /* each -o, in order */
	size_t nopts;
	const char *namespace;
	bool fake;
};

static int add_operand(struct request *rq, const char *arg)
{
	if (!rq->source) {
		rq->source = arg;
	} else if (!rq->dir) {
		rq->dir = arg;
	} else {
		fprintf(stderr, "%s: too many arguments: %s\n", prog, arg);
		return EXIT_USAGE;
	}
	return 0;
}

/* Returns 0, EXIT_USAGE (logged), or -1 when --help or --version was
 * answered. */
static int parse_args(int argc, char **argv, struct request *rq)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c, rc = 0;

	/* The leading '-': operands come back in order as option 1, wherever
	 * they are, whatever POSIXLY_CORRECT says. */
	while (!rc &&
	       (c = getopt_long(argc, argv, "-hVsfnvo:t:N:", longopts, NULL)) != -1) {
		switch (c) {
		case 1:
			rc = add_operand(rq, optarg);
			break;
		case 'o':
			rq->opts[rq->nopts++] = optarg;
			break;
		case 'f':
			rq->fake = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 's': /* sloppy: snapfs knows no options to be sloppy about */
		case 'n': /* no mtab: there is none */
		case 't': /* the subtype mount(8) passes for "snapfs.X" */
			break;
		case 'N':
			rq->namespace = optarg;
			break;
		case 'h':
			usage(stdout);
			return -1;
		case 'V':
			printf("%s %s\n", prog, PACKAGE_VERSION);
			return -1;
		default:
			return EXIT_USAGE;
		}
	}
	for (; !rc && optind < argc; optind++) /* after "--" */
		rc = add_operand(rq, argv[optind]);
	if (rc)
		return rc;
	if (!rq->dir) {
		usage(stderr);
		return EXIT_USAGE;
	}
	/* snapfs would take either for an option. */
	if (rq->source[0] == '-' || rq->dir[0] == '-') {
		fprintf(stderr, "%s: neither SOURCE nor DIR may begin with '-'\n", prog);
		return EXIT_USAGE;
	}
	return 0;
}

/* The snapfs command line; opts has room for it. */
static int build_command(const struct request *rq, const char *snapfs, char *opts,
			 const char **args)
{
	size_t n = 0;
	int rc = 0;

	/* Several -o add up, as they do for mount(8). */
	for (size_t i = 0; !rc && i < rq->nopts; i++)
		rc = filter_options(rq->opts[i], opts);
	if (rc)
		return rc;
	args[n++] = snapfs;
	if (*opts) {
		args[n++] = "-o";
		args[n++] = opts;
	}
	if (strcmp(rq->source, "none"))
		args[n++] = rq->source;
	args[n++] = rq->dir;
	args[n] = NULL;
	return 0;
}

int main(int argc, char **argv)
{
	const char *snapfs = secure_getenv("SNAPFS_BIN");
	struct request rq = { .opts = calloc(argc, sizeof(*rq.opts)) };
	const char *args[6];
	size_t optlen = 1;
	char *opts;
	int rc;

	if (!snapfs || !*snapfs)
		snapfs = BINDIR "/snapfs";
	/* Room for all the -o options, each escaped, in one string. */
	for (int i = 1; i < argc; i++)
		optlen += 2 * strlen(argv[i]) + 1;
	opts = calloc(1, optlen);
	if (!opts || !rq.opts) {
		perror(prog);
		rc = EXIT_SYSTEM;
		goto out;
	}
	rc = parse_args(argc, argv, &rq);
	if (!rc)
		rc = build_command(&rq, snapfs, opts, args);
	if (rc)
		goto out;
	if (verbose) {
		fprintf(stderr, "%s: %s", prog, rq.fake ? "would run" : "running");
		for (size_t i = 0; args[i]; i++)
			fprintf(stderr, " %s", args[i]);
		fputc('\n', stderr);
	}
	if (rq.fake)
		goto out;
	if (rq.namespace && (rc = enter_namespace(rq.namespace)))
		goto out;
	fflush(NULL);
	execv(snapfs, (char *const *)args);
	fprintf(stderr, "%s: cannot run %s: %s\n", prog, snapfs, strerror(errno));
	rc = EXIT_SYSTEM;
out:
	free(opts);
	free(rq.opts);
	return rc < 0 ? 0 : rc;
}
