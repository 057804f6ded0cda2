/* SOURCE lvm:VG[,VG...]: every ordinary LV of those VGs is a guest with one
 * disk, no libvirt needed. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "snapfs.h"

static bool in_vgs(char *const *vgs, const char *vg)
{
	for (; *vgs; vgs++)
		if (!strcmp(*vgs, vg))
			return true;
	return false;
}

int snapfs_source_lvm_list(char *const *vgs, const struct snapfs_lv_list *lvs,
			   struct snapfs_guest **out, size_t *n)
{
	struct snapfs_guest *g = calloc(lvs->n ? lvs->n : 1, sizeof(*g));
	size_t count = 0;

	if (!g)
		return -ENOMEM;
	for (size_t i = 0; i < lvs->n; i++) {
		const struct snapfs_lv *lv = &lvs->lv[i];
		struct snapfs_guest *cur = &g[count];

		if (!in_vgs(vgs, lv->vg) || !lv->is_ordinary || lv->snapfs_owned) {
			snapfs_debug(SNAPFS_DBG_GUESTS, "lvm: %s/%s is not a guest disk", lv->vg,
				     lv->lv);
			continue;
		}
		cur->name = strdup(lv->lv);
		if (!cur->name || asprintf(&cur->key, "%s/%s", lv->vg, lv->lv) < 0 ||
		    snapfs_guest_add_disk(cur, lv, "disk", "raw", 512) < 0) {
			snapfs_guests_free(g, count + 1);
			return -ENOMEM;
		}
		cur->running = false;
		count++;
	}
	*out = g;
	*n = count;
	return 0;
}
