/* mount.snapfs: called by mount(8) as
 *   mount.snapfs SOURCE DIR [-sfnv] [-o OPTIONS]
 * turns that into "snapfs [-o OPTIONS] SOURCE DIR" and execs it.  Options
 * that belong to mount(8) or systemd are dropped here. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool dropped(const char *opt)
{
	static const char *const drop[] = { "defaults", "rw",	  "ro",	     "auto",
					    "noauto",	"user",	  "nouser",  "users",
					    "_netdev",	"nofail", "owner",   "group",
					    "comment=", "x-",	  "nosuid",  "nodev",
					    "noexec",	"exec",	  "suid",    "dev",
					    "async",	"sync",	  "relatime", "noatime",
					    NULL };

	for (size_t i = 0; drop[i]; i++) {
		size_t len = strlen(drop[i]);

		if (drop[i][len - 1] == '=' || drop[i][len - 1] == '-') {
			if (!strncmp(opt, drop[i], len))
				return true;
		} else if (!strcmp(opt, drop[i])) {
			return true;
		}
	}
	return false;
}

/* Keep the options snapfs should see, comma-joined. */
static char *filter_options(const char *in)
{
	char *copy = strdup(in), *out = calloc(1, strlen(in) + 1), *save = NULL;

	if (!copy || !out) {
		free(copy);
		free(out);
		return NULL;
	}
	for (char *o = strtok_r(copy, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		if (dropped(o))
			continue;
		if (*out)
			strcat(out, ",");
		strcat(out, o);
	}
	free(copy);
	return out;
}

int main(int argc, char **argv)
{
	const char *snapfs = getenv("SNAPFS_BIN") ? getenv("SNAPFS_BIN") : BINDIR "/snapfs";
	char *opts = NULL;
	bool verbose = false, fake = false;
	const char *args[8];
	size_t n = 0;
	int c;

	if (argc < 3) {
		fprintf(stderr, "usage: mount.snapfs SOURCE DIR [-sfnv] [-o OPTIONS]\n");
		return 1;
	}
	optind = 3;
	while ((c = getopt(argc, argv, "sfnvo:")) != -1) {
		switch (c) {
		case 'o':
			free(opts);
			opts = filter_options(optarg);
			if (!opts)
				return 1;
			break;
		case 'v':
			verbose = true;
			break;
		case 'f':
			fake = true;
			break;
		case 's':
		case 'n':
			break;
		default:
			return 1;
		}
	}
	args[n++] = snapfs;
	if (opts && *opts) {
		args[n++] = "-o";
		args[n++] = opts;
	}
	args[n++] = argv[1];
	args[n++] = argv[2];
	args[n] = NULL;
	if (verbose) {
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, "%s%s", i ? " " : "", args[i]);
		fputc('\n', stderr);
	}
	if (fake)
		return 0;
	execv(snapfs, (char *const *)args);
	fprintf(stderr, "mount.snapfs: cannot run %s: %s\n", snapfs, strerror(errno));
	return 1;
}
