/* Scope-cleanup helpers used by CLEANUP_FREE and CLEANUP_CLOSE. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "snapfs.h"

void snapfs_free_ptr(void *p)
{
	free(*(void **)p);
}

void snapfs_close_fd(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

void snapfs_unescape_octal(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}
