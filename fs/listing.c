/* Directory listings: the guests, one guest's files, or its own VGs and
 * LVs, each with what stat shows of it, as the guest list has them now.  A
 * listing never creates a snapshot. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "snapfs-fuse.h"

static int add(struct snapfs_dir_list *l, const char *name, const struct snapfs_node *n)
{
	struct snapfs_dirent *e;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct snapfs_dirent *grown = reallocarray(l->e, cap, sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		l->e = grown;
		l->cap = cap;
	}
	e = &l->e[l->n++];
	snprintf(e->name, sizeof(e->name), "%s", name);
	if (n) {
		snapfs_node_stat(n, &e->st);
	} else {
		memset(&e->st, 0, sizeof(e->st));
		e->st.st_mode = S_IFDIR;
	}
	return 0;
}

static int list_guest(struct snapfs_node *dir, struct snapfs_dir_list *l)
{
	const struct snapfs_guest *g = dir->guest;
	struct snapfs_node n = *dir;
	char name[SNAPFS_NAME_MAX + 1];
	int rc = 0;

	n.kind = NODE_XML;
	if (g->xml && (rc = add(l, "domain.xml", &n)) < 0)
		return rc;
	for (size_t i = 0; i < g->ndisks && rc == 0; i++) {
		struct snapfs_partitions parts;

		n.kind = NODE_DISK;
		n.disk = &g->disk[i];
		n.container = snapfs_disk_is_container(n.disk);
		rc = add(l, n.disk->file, &n);
		n.container = false;
		if (rc == 0 && n.disk->view[0])
			rc = add(l, n.disk->view, &n);
		if (rc < 0)
			break;
		if (snapfs_node_disk_parts(g, n.disk, &parts) < 0)
			return -ENOMEM;
		n.kind = NODE_PART;
		for (size_t p = 0; p < parts.n && rc == 0; p++) {
			n.part = parts.part[p];
			if (snapfs_name_image(n.disk->target, n.part.number, "raw", name,
					      sizeof(name)) == 0)
				rc = add(l, name, &n);
		}
		snapfs_partitions_free(&parts);
	}
	if (rc == 0 && snapfs_node_has_lvs(g)) {
		n.kind = NODE_LVM;
		n.disk = &g->disk[0];
		rc = add(l, SNAPFS_LVM_DIR, &n);
	}
	return rc;
}

/* /GUEST/lvm: the guest's VGs; /GUEST/lvm/VG: its served LVs. */
static int list_lvm(struct snapfs_node *dir, struct snapfs_dir_list *l)
{
	const struct snapfs_glvm *glvm = dir->guest->glvs->glvm;
	struct snapfs_node n = *dir;
	char name[SNAPFS_NAME_MAX + 1];
	int rc = 0;

	for (size_t v = 0; v < glvm->nvgs && rc == 0; v++) {
		const struct snapfs_glvm_vg *vg = &glvm->vg[v];

		if (!vg->served)
			continue;
		if (dir->kind == NODE_LVM) {
			n.kind = NODE_VG;
			snapfs_name_escape(vg->name, name);
			rc = add(l, name, &n);
			continue;
		}
		if (vg != dir->vg)
			continue;
		for (size_t i = 0; i < vg->nlvs && rc == 0; i++) {
			if (!vg->lv[i].served)
				continue;
			n.kind = NODE_LV;
			n.lv = &vg->lv[i];
			snapfs_name_escape(n.lv->name, n.lv_name);
			rc = add(l, n.lv_name, &n);
		}
	}
	return rc;
}

int snapfs_dir_list(const char *path, struct snapfs_dir_list *l)
{
	struct snapfs_node dir;
	int rc = snapfs_node_lookup(path, &dir);

	snapfs_dir_list_free(l);
	if (rc < 0)
		return rc;
	if (dir.kind != NODE_ROOT && dir.kind != NODE_GUEST && dir.kind != NODE_LVM &&
	    dir.kind != NODE_VG) {
		snapfs_node_put(&dir);
		return -ENOTDIR;
	}
	rc = add(l, ".", NULL);
	if (rc == 0)
		rc = add(l, "..", NULL);
	if (rc == 0 && dir.kind == NODE_GUEST) {
		rc = list_guest(&dir, l);
	} else if (rc == 0 && (dir.kind == NODE_LVM || dir.kind == NODE_VG)) {
		rc = list_lvm(&dir, l);
	} else if (rc == 0) {
		struct snapfs_node n = dir;

		n.kind = NODE_GUEST;
		for (size_t i = 0; i < dir.cat->n && rc == 0; i++) {
			n.guest = &dir.cat->guest[i];
			rc = add(l, n.guest->dir, &n);
		}
	}
	snapfs_node_put(&dir);
	if (rc < 0)
		snapfs_dir_list_free(l);
	return rc;
}

void snapfs_dir_list_free(struct snapfs_dir_list *l)
{
	free(l->e);
	*l = (struct snapfs_dir_list){ 0 };
}
