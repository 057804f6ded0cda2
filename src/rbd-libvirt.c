/* RBD disks as libvirt has them: their keys, from libvirt's secrets as qemu
 * gets them, and the sweep of what a dead snapfs of this host left on the
 * images of the guests. */
#include "config.h"

#include <errno.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <string.h>
#include <unistd.h>

#include "snapfs.h"

static void base64(const unsigned char *in, size_t n, char *out, size_t outlen)
{
	static const char abc[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < n && o + 5 <= outlen; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
			     (i + 2 < n ? in[i + 2] : 0);

		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
		out[o++] = i + 1 < n ? abc[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? abc[v & 63] : '=';
	}
	out[o] = '\0';
}

int snapfs_rbd_key_from_libvirt(struct _virConnect *conn, struct snapfs_rbd_spec *spec,
				char *why, size_t len)
{
	virSecretPtr secret;
	unsigned char *value;
	size_t size = 0;

	if (!spec->secret_uuid[0] && !spec->secret_usage[0])
		return 0;
	secret = spec->secret_uuid[0]
			 ? virSecretLookupByUUIDString(conn, spec->secret_uuid)
			 : virSecretLookupByUsage(conn, VIR_SECRET_USAGE_TYPE_CEPH,
						  spec->secret_usage);
	value = secret ? virSecretGetValue(secret, &size, 0) : NULL;
	if (secret)
		virSecretFree(secret);
	if (!value || !size || (size + 2) / 3 * 4 >= sizeof(spec->key)) {
		const char *m = virGetLastErrorMessage();

		snprintf(why, len, "its libvirt secret %s cannot be read (%s)",
			 spec->secret_uuid[0] ? spec->secret_uuid : spec->secret_usage,
			 value ? "not a Ceph key" : m ? m : "unknown libvirt error");
		if (value)
			explicit_bzero(value, size);
		free(value);
		return -EACCES;
	}
	base64(value, size, spec->key, sizeof(spec->key));
	explicit_bzero(value, size);
	free(value);
	return 0;
}

/* Remove the snapshots named with prefix of the RBD disks of one domain. */
static int sweep_domain(virConnectPtr conn, virDomainPtr dom, const char *prefix,
			const char *dead)
{
	char *xml = virDomainGetXMLDesc(dom, 0);
	const char *name = virDomainGetName(dom);
	struct snapfs_xml_disks disks;
	char shown[SNAPFS_NAME_MAX + 1];
	int removed = 0;

	snapfs_name_escape(name ? name : "?", shown);
	if (!xml || snapfs_domxml_disks(shown, xml, &disks) < 0) {
		free(xml);
		return 0;
	}
	for (size_t i = 0; i < disks.n; i++) {
		struct snapfs_rbd_spec *spec = disks.disk[i].rbd;
		char err[512], image[300];
		struct snapfs_rbd *r;
		int failed, n;

		if (!spec)
			continue;
		snapfs_rbd_name(spec, image, sizeof(image));
		snapfs_rbd_key_from_libvirt(conn, spec, err, sizeof(err)); /* else the keyring */
		if (snapfs_rbd_open(spec, NULL, true, &r, err, sizeof(err)) < 0) {
			snapfs_warn("guest %s disk %s: RBD image %s not swept: %s", shown,
				    disks.disk[i].target, image, err);
			continue;
		}
		/* A dead run's watches would hold each removal up for 30 s. */
		if (dead && (n = snapfs_rbd_end_dead(r, dead)) < 0)
			snapfs_warn("guest %s disk %s: the Ceph clients of the dead run kept in "
				    "%s are not blocklisted (%s): removing its snapshots of %s may "
				    "wait 30 s",
				    shown, disks.disk[i].target, dead, strerror(-n), image);
		n = snapfs_rbd_snap_remove_prefixed(r, prefix, &failed);
		snapfs_rbd_close(r);
		if (n > 0) {
			snapfs_info("guest %s disk %s: removed %d snapshot(s) of %s that a dead "
				    "snapfs left", shown, disks.disk[i].target, n, image);
			removed += n;
		}
		if (n < 0 || failed)
			snapfs_warn("guest %s disk %s: snapshots of %s left behind (%s)", shown,
				    disks.disk[i].target, image,
				    n < 0 ? strerror(-n) : "they could not be removed");
	}
	snapfs_domxml_disks_free(&disks);
	free(xml);
	return removed;
}

int snapfs_rbd_sweep(const char *uri, const char *host_id, const char *owner, bool end_dead)
{
	virConnectPtr conn = snapfs_libvirt_connect(uri);
	virDomainPtr *doms = NULL;
	char prefix[128], host[64], dead[300];
	int count, removed = 0;
	bool ending;

	if (!conn)
		return -EIO;
	/* Only for one mount, whose owner lock the caller holds: no snapfs
	 * serves it now. */
	ending = end_dead && snapfs_rbd_dead_path(owner, dead, sizeof(dead)) == 0;
	if (host_id)
		snprintf(host, sizeof(host), "%s", host_id);
	else
		snapfs_host_id(host, sizeof(host));
	snapfs_rbd_snap_prefix(host, owner, prefix, sizeof(prefix));
	count = virConnectListAllDomains(conn, &doms, 0);
	for (int i = 0; i < count; i++) {
		removed += sweep_domain(conn, doms[i], prefix, ending ? dead : NULL);
		virDomainFree(doms[i]);
	}
	free(doms);
	/* Its clients are ended, or their watches time out soon. */
	if (ending && unlink(dead) < 0 && errno != ENOENT)
		snapfs_warn("cannot remove %s (%m): the next start blocklists those "
			    "clients again",
			    dead);
	virConnectClose(conn);
	return count < 0 ? -EIO : removed;
}
