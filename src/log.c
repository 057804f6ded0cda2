/* Logging: stderr in the foreground, syslog (ident "snapfs") in the
 * background.  Debug lines are chosen per area, by -o debug_areas=AREAS or the
 * SNAPFS_DEBUG environment variable. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "snapfs.h"

static bool log_to_syslog;
static unsigned log_debug_mask;

static const struct {
	const char *name;
	unsigned mask;
} areas[] = {
	{ "lvm", SNAPFS_DBG_LVM },       { "guests", SNAPFS_DBG_GUESTS },
	{ "snapshot", SNAPFS_DBG_SNAP }, { "partitions", SNAPFS_DBG_PART },
	{ "fuse", SNAPFS_DBG_FUSE },     { "all", SNAPFS_DBG_ALL },
};

int snapfs_log_parse_areas(const char *s, unsigned *mask)
{
	unsigned m = 0;

	while (*s) {
		size_t len = strcspn(s, ":,");
		size_t i;

		for (i = 0; i < sizeof(areas) / sizeof(areas[0]); i++)
			if (strlen(areas[i].name) == len && !strncmp(s, areas[i].name, len))
				break;
		if (i == sizeof(areas) / sizeof(areas[0]))
			return -EINVAL;
		m |= areas[i].mask;
		s += len;
		if (*s)
			s++;
	}
	*mask = m;
	return 0;
}

void snapfs_log_init(bool use_syslog, unsigned debug_mask)
{
	const char *env = getenv("SNAPFS_DEBUG");
	unsigned env_mask = 0;

	if (env && snapfs_log_parse_areas(env, &env_mask) < 0)
		fprintf(stderr, "snapfs: SNAPFS_DEBUG=%s names an unknown area; ignored\n", env);
	log_debug_mask = debug_mask | env_mask;
	log_to_syslog = use_syslog;
	if (use_syslog)
		openlog("snapfs", LOG_PID, LOG_DAEMON);
}

bool snapfs_log_debug_enabled(unsigned area)
{
	return (log_debug_mask & area) != 0;
}

/* Set by a thread whose lines are said again later where they count (a
 * listing's look at what a snapshot set will read and log). */
static __thread bool quiet;

void snapfs_log_quiet(bool on)
{
	quiet = on;
}

void snapfs_log(enum snapfs_log_level level, const char *fmt, ...)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	static const char *const prefix[] = { "error: ", "warning: ", "", "debug: " };
	int saved = errno;
	va_list ap;

	if (quiet && level != SNAPFS_LOG_DEBUG) {
		if (!(log_debug_mask & SNAPFS_DBG_GUESTS))
			return;
		level = SNAPFS_LOG_DEBUG;
	}
	va_start(ap, fmt);
	if (log_to_syslog) {
		vsyslog(prio[level], fmt, ap);
	} else {
		flockfile(stderr);
		fprintf(stderr, "snapfs: %s", prefix[level]);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		funlockfile(stderr);
	}
	va_end(ap);
	errno = saved;
}

/* What snapfs_log_first has seen: hashes of (key, detail), open-addressed.
 * Full, it answers "first" again rather than fall silent. */
#define SEEN_MAX 4096
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t seen[SEEN_MAX]; /* under seen_lock; 0 is an empty slot */
static size_t nseen;            /* under seen_lock */

bool snapfs_log_first(const char *key, const char *detail)
{
	size_t klen = strlen(key), dlen = strlen(detail);
	uint64_t h = snapfs_name_hash(key, klen) ^ (snapfs_name_hash(detail, dlen) * 31);
	bool first = true;

	h = h ? h : 1;
	pthread_mutex_lock(&seen_lock);
	if (nseen < SEEN_MAX * 3 / 4) {
		size_t i = (size_t)(h % SEEN_MAX);

		while (seen[i] && seen[i] != h)
			i = (i + 1) % SEEN_MAX;
		first = seen[i] == 0;
		if (first) {
			seen[i] = h;
			nseen++;
		}
	}
	pthread_mutex_unlock(&seen_lock);
	return first;
}
