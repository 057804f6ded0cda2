/* Timestamps that never repeat, so that a backup tool comparing size and
 * mtime never mistakes one snapshot for another. */
#include "config.h"

#include <stdio.h>

#include "snapfs.h"

static pthread_mutex_t stamp_lock = PTHREAD_MUTEX_INITIALIZER;
static struct timespec stamp_last; /* under stamp_lock */

struct timespec snapfs_stamp_next(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&stamp_lock);
	if (now.tv_sec < stamp_last.tv_sec ||
	    (now.tv_sec == stamp_last.tv_sec && now.tv_nsec <= stamp_last.tv_nsec)) {
		now = stamp_last;
		if (++now.tv_nsec == 1000000000L) {
			now.tv_sec++;
			now.tv_nsec = 0;
		}
	}
	stamp_last = now;
	pthread_mutex_unlock(&stamp_lock);
	return now;
}

void snapfs_stamp_format(struct timespec ts, char *out, size_t outlen)
{
	struct tm tm;
	char buf[32];

	gmtime_r(&ts.tv_sec, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, outlen, "%s.%09ldZ", buf, ts.tv_nsec);
}
