/* Which LV a qcow2 image's backing file name means, for an image in an LV.
 *
 * The name is written by whoever made the image, inside the guest owner's
 * bytes: it is a hint, never a path snapfs opens.  Only names that can mean
 * an LV of the image's own VG are followed: a bare LV name (relative to
 * /dev/VG, where the image is), /dev/VG/LV and /dev/mapper/VG-LV, and the
 * ../IMAGE/VOLUME that oVirt writes (its image directories hold links to
 * the VG's LVs).  Nothing here looks at the file system.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "snapfs.h"

/* LVM's rule for VG and LV names. */
static bool lvm_name(const char *s, size_t len)
{
	static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				 "0123456789+_.-";

	if (!len || len > 127 || s[0] == '-')
		return false;
	if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!s[i] || !strchr(ok, s[i]))
			return false;
	return true;
}

static bool is_vg(const char *const *vgs, const char *s, size_t len)
{
	for (size_t i = 0; vgs && vgs[i]; i++)
		if (strlen(vgs[i]) == len && !memcmp(vgs[i], s, len))
			return true;
	return false;
}

static int take(const char *s, size_t len, char *lv, size_t lvlen, const char **why)
{
	if (!lvm_name(s, len) || len >= lvlen) {
		*why = "it is not an LV name";
		return -EPERM;
	}
	memcpy(lv, s, len);
	lv[len] = '\0';
	return 0;
}

/* /dev/mapper/VG-LV: dashes in either name are doubled. */
static int from_dm_name(const char *vg, const char *dm, char *lv, size_t lvlen,
			const char **why)
{
	size_t i = 0, o = 0;

	for (const char *v = vg; *v; v++) {
		if (dm[i] != *v || (*v == '-' && dm[++i] != '-'))
			goto other;
		i++;
	}
	if (dm[i++] != '-' || dm[i] == '-')
		goto other;
	for (; dm[i]; i++) {
		if (o + 1 >= lvlen) {
			*why = "it is not an LV name";
			return -EPERM;
		}
		if (dm[i] == '-' && dm[++i] != '-')
			goto other;
		lv[o++] = dm[i];
	}
	lv[o] = '\0';
	return take(lv, o, lv, lvlen, why);
other:
	*why = "it names a device outside the image's VG";
	return -EPERM;
}

int snapfs_backing_lv(const char *vg, const char *name, const char *const *vgs, char *lv,
		      size_t lvlen, const char **why)
{
	const char *slash = strchr(name, '/'), *colon = strchr(name, ':');
	size_t vglen = strlen(vg);

	if (colon && (!slash || colon < slash)) {
		*why = "it is a protocol or json: name, not an LV";
		return -EPERM;
	}
	if (!strncmp(name, "/dev/mapper/", 12))
		return from_dm_name(vg, name + 12, lv, lvlen, why);
	if (name[0] == '/') {
		if (!strncmp(name, "/dev/", 5) && !strncmp(name + 5, vg, vglen) &&
		    name[5 + vglen] == '/' && !strchr(name + 6 + vglen, '/'))
			return take(name + 6 + vglen, strlen(name + 6 + vglen), lv, lvlen, why);
		*why = "it is a host file, not an LV of the image's VG";
		return -EPERM;
	}
	if (!slash)
		return take(name, strlen(name), lv, lvlen, why);
	if (!strncmp(name, "./", 2) && !strchr(name + 2, '/'))
		return take(name + 2, strlen(name + 2), lv, lvlen, why);
	/* ../DIR/LV: DIR is the VG itself, or an oVirt image directory; another
	 * VG's name would leave the VG. */
	if (!strncmp(name, "../", 3)) {
		const char *dir = name + 3, *end = strchr(dir, '/');

		size_t len = end ? (size_t)(end - dir) : 0;
		bool own = len == vglen && !memcmp(dir, vg, vglen);

		if (end && !strchr(end + 1, '/') && lvm_name(dir, len) &&
		    (own || !is_vg(vgs, dir, len)))
			return take(end + 1, strlen(end + 1), lv, lvlen, why);
	}
	*why = "it leaves the image's VG";
	return -EPERM;
}
