/* The health of a snapshot, read from device-mapper directly (one ioctl, no
 * command), so that every read can check it: a classic snapshot whose COW
 * area filled is invalid, and a read that raced with its overflow may hold
 * bytes written after the snapshot. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/dm-ioctl.h>
#include <stddef.h>
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
	out->used = out->total = out->mapped = 0;
	if (!strcmp(type, "snapshot")) {
		/* "Invalid", "Overflow", "Merge failed", or "USED/TOTAL META" */
		if (sscanf(status, "%llu/%llu", &used, &total) == 2) {
			out->used = used;
			out->total = total;
		} else {
			out->valid = false;
		}
	} else if (!strcmp(type, "thin")) {
		/* "MAPPED_SECTORS HIGHEST_MAPPED", "Fail", or "-" (suspended) */
		out->valid = strncmp(status, "Fail", 4) != 0;
		if (sscanf(status, "%llu", &used) == 1)
			out->mapped = used;
	} else if (!strcmp(type, "error")) {
		out->valid = false;
	}
}

/* One ioctl on dm_name with msg at its data (or none); io in buf, len bytes. */
static int dm_call(unsigned long cmd, const char *dm_name, uint32_t flags, char *buf,
		   size_t len, const char *msg)
{
	struct dm_ioctl *io = (struct dm_ioctl *)buf;

	if (control_fd < 0)
		return -ENODEV;
	if (strlen(dm_name) >= sizeof(io->name))
		return -ENAMETOOLONG;
	memset(buf, 0, len);
	io->version[0] = DM_VERSION_MAJOR;
	io->data_size = (uint32_t)len;
	io->data_start = sizeof(*io);
	io->flags = flags;
	strcpy(io->name, dm_name);
	if (msg) {
		size_t mlen = strlen(msg) + 1;
		char *at = buf + io->data_start;
		uint64_t sector = 0;

		if (io->data_start + offsetof(struct dm_target_msg, message) + mlen > len)
			return -E2BIG;
		/* struct dm_target_msg: the sector, then the text. */
		memcpy(at + offsetof(struct dm_target_msg, sector), &sector, sizeof(sector));
		memcpy(at + offsetof(struct dm_target_msg, message), msg, mlen);
	}
	if (ioctl(control_fd, cmd, io) < 0)
		return -errno;
	return 0;
}

/* The first target of the DM_TABLE_STATUS reply in buf (len bytes), its
 * text after it NUL-terminated: 0, 1 when the kernel wants a larger
 * buffer, or -EIO. */
static int first_target(char *buf, size_t len, struct dm_target_spec **spec)
{
	struct dm_ioctl *io = (struct dm_ioctl *)buf;

	if (io->flags & DM_BUFFER_FULL_FLAG)
		return 1;
	if (io->target_count < 1 || io->data_start + sizeof(**spec) > io->data_size ||
	    io->data_size > len)
		return -EIO;
	*spec = (struct dm_target_spec *)(buf + io->data_start);
	buf[len - 1] = '\0';
	(*spec)->target_type[sizeof((*spec)->target_type) - 1] = '\0';
	return 0;
}

/* One DM_TABLE_STATUS into buf of len bytes, without flushing (we only
 * read); 1 when the kernel wants a larger buffer. */
static int table_status(const char *dm_name, char *buf, size_t len, struct snapfs_cow *out)
{
	struct dm_target_spec *spec;
	int rc = dm_call(DM_TABLE_STATUS, dm_name, DM_NOFLUSH_FLAG, buf, len, NULL);

	if (rc == 0)
		rc = first_target(buf, len, &spec);
	if (rc == 0)
		parse_status(spec->target_type, (const char *)(spec + 1), out);
	return rc;
}

/* Called after every read: the kernel copies the whole buffer in and out,
 * so a small one (a snapshot's status is one short line) is tried first. */
int snapfs_dm_status(const char *dm_name, struct snapfs_cow *out)
{
	union {
		struct dm_ioctl io;
		char buf[1024];
	} small;
	CLEANUP_FREE char *big = NULL;
	enum { BIG = 16384 };
	int rc;

	if (control_fd < 0)
		return -ENODEV;
	if (strlen(dm_name) >= sizeof(small.io.name))
		return -ENAMETOOLONG;
	rc = table_status(dm_name, small.buf, sizeof(small), out);
	if (rc <= 0)
		return rc;
	big = malloc(BIG);
	if (!big)
		return -ENOMEM;
	rc = table_status(dm_name, big, BIG, out);
	return rc > 0 ? -EIO : rc;
}

int snapfs_dm_table(const char *dm_name, char *type, size_t tlen, char *params, size_t plen)
{
	union {
		struct dm_ioctl io;
		char buf[4096];
	} u;
	struct dm_target_spec *spec;
	int rc = dm_call(DM_TABLE_STATUS, dm_name, DM_STATUS_TABLE_FLAG | DM_NOFLUSH_FLAG,
			 u.buf, sizeof(u), NULL);

	if (rc == 0)
		rc = first_target(u.buf, sizeof(u), &spec);
	if (rc)
		return rc < 0 ? rc : -EIO;
	snprintf(type, tlen, "%s", spec->target_type);
	snprintf(params, plen, "%s", (const char *)(spec + 1));
	return 0;
}

int snapfs_dm_message(const char *dm_name, const char *msg)
{
	union {
		struct dm_ioctl io;
		char buf[1024];
	} u;

	return dm_call(DM_TARGET_MSG, dm_name, 0, u.buf, sizeof(u), msg);
}
