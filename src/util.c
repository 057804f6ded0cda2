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
