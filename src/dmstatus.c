/* The health of a snapshot, read from device-mapper directly (one ioctl, no
 * command), so that every read can check it: a classic snapshot whose COW
 * area filled is invalid, and a read that raced with its overflow may hold
 * bytes written after the snapshot. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/dm-ioctl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "snapfs.h"

static int control_fd = -1; /* set once by snapfs_dm_init, read-only after */

int snapfs_dm_init(void)
{
	if (control_fd >= 0)
		return 0;
	control_fd = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
	return control_fd < 0 ? -errno : 0;
}

/* Parse one target's status line into *out. */
static void parse_status(const char *type, const char *status, struct snapfs_cow *out)
{
	unsigned long long used, total;

	out->valid = true;
	out->used = out->total = 0;
	if (!strcmp(type, "snapshot")) {
		/* "Invalid", "Overflow", "Merge failed", or "USED/TOTAL META" */
		if (sscanf(status, "%llu/%llu", &used, &total) == 2) {
			out->used = used;
			out->total = total;
		} else {
			out->valid = false;
		}
	} else if (!strcmp(type, "thin")) {
		out->valid = strncmp(status, "Fail", 4) != 0;
	} else if (!strcmp(type, "error")) {
		out->valid = false;
	}
}

int snapfs_dm_status(const char *dm_name, struct snapfs_cow *out)
{
	union {
		struct dm_ioctl io;
		char buf[4096]; /* one target's status line fits easily */
	} u;
	struct dm_target_spec *spec;

	if (control_fd < 0)
		return -ENODEV;
	/* All of it: the kernel fills what it writes, but nothing says which. */
	memset(&u, 0, sizeof(u));
	u.io.version[0] = DM_VERSION_MAJOR;
	u.io.version[1] = 0;
	u.io.version[2] = 0;
	u.io.data_size = sizeof(u);
	u.io.data_start = sizeof(u.io);
	/* Status without flushing: we only read it. */
	u.io.flags = DM_NOFLUSH_FLAG;
	if (strlen(dm_name) >= sizeof(u.io.name))
		return -ENAMETOOLONG;
	strcpy(u.io.name, dm_name);
	if (ioctl(control_fd, DM_TABLE_STATUS, &u.io) < 0)
		return -errno;
	if ((u.io.flags & DM_BUFFER_FULL_FLAG) || u.io.target_count < 1 ||
	    u.io.data_start + sizeof(*spec) > u.io.data_size)
		return -EIO;
	spec = (struct dm_target_spec *)(u.buf + u.io.data_start);
	/* The status text follows the spec, NUL-terminated inside data_size. */
	u.buf[sizeof(u) - 1] = '\0';
	spec->target_type[sizeof(spec->target_type) - 1] = '\0';
	parse_status(spec->target_type, (const char *)(spec + 1), out);
	return 0;
}
