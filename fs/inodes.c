/* Inode numbers for the low-level FUSE API.
 *
 * The tree is named by paths (tree.c resolves a path against the guest list
 * of now), so an inode is just a path the kernel holds: the kernel counts its
 * lookups of a number (every entry we reply with is one) and forgets them,
 * and the number lives while the count is above zero.  A path's number is
 * a hash of the path, so the same path gets the same number also after the
 * kernel forgot it, and in the next mount: backup tools that track files by
 * inode number (tar --listed-incremental, borg's files cache) see the same
 * files.  Two live paths never share a number: the second takes the next
 * free one.  The root (FUSE_ROOT_ID) is never forgotten.
 *
 * Two hash tables, by path and by number, under one mutex (inodes_lock);
 * no lock is taken inside it.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapfs-fuse.h"

#define BUCKETS 4096 /* a power of two */

struct inode {
	fuse_ino_t ino;
	uint64_t nlookup;
	struct inode *next_by_path, *next_by_ino;
	char path[];
};

static pthread_mutex_t inodes_lock = PTHREAD_MUTEX_INITIALIZER;
static struct inode *by_path[BUCKETS], *by_ino[BUCKETS];
static size_t live;

static size_t path_bucket(const char *path)
{
	return (size_t)snapfs_name_hash(path, strlen(path)) & (BUCKETS - 1);
}

static size_t ino_bucket(fuse_ino_t ino)
{
	return (size_t)(ino ^ (ino >> 12)) & (BUCKETS - 1);
}

static struct inode *find_ino(fuse_ino_t ino)
{
	struct inode *i = by_ino[ino_bucket(ino)];

	while (i && i->ino != ino)
		i = i->next_by_ino;
	return i;
}

int snapfs_inode_path(fuse_ino_t ino, char path[SNAPFS_PATH_MAX])
{
	const struct inode *i;
	int rc = -ESTALE;

	if (ino == FUSE_ROOT_ID) {
		strcpy(path, "/");
		return 0;
	}
	pthread_mutex_lock(&inodes_lock);
	i = find_ino(ino);
	if (i) {
		strcpy(path, i->path);
		rc = 0;
	}
	pthread_mutex_unlock(&inodes_lock);
	return rc;
}

/* The number of a path: its hash, in [2, 2^63), never the 32-bit
 * "unknown" number readdir gives, nor one a live path holds.  Under
 * inodes_lock. */
static fuse_ino_t free_number(const char *path, size_t len)
{
	fuse_ino_t ino = (fuse_ino_t)(snapfs_name_hash(path, len) >> 1);

	for (;; ino = (ino + 1) & (UINT64_MAX >> 1))
		if (ino > FUSE_ROOT_ID && ino != 0xffffffffu && !find_ino(ino))
			return ino;
}

int snapfs_inode_ref(const char *path, fuse_ino_t *ino)
{
	size_t len = strlen(path), pb;
	struct inode *i;

	if (!strcmp(path, "/")) {
		*ino = FUSE_ROOT_ID;
		return 0;
	}
	if (len >= SNAPFS_PATH_MAX)
		return -ENAMETOOLONG;
	pb = path_bucket(path);
	pthread_mutex_lock(&inodes_lock);
	for (i = by_path[pb]; i && strcmp(i->path, path); i = i->next_by_path)
		;
	if (!i) {
		i = malloc(sizeof(*i) + len + 1);
		if (!i) {
			pthread_mutex_unlock(&inodes_lock);
			return -ENOMEM;
		}
		memcpy(i->path, path, len + 1);
		i->ino = free_number(path, len);
		i->nlookup = 0;
		i->next_by_path = by_path[pb];
		by_path[pb] = i;
		i->next_by_ino = by_ino[ino_bucket(i->ino)];
		by_ino[ino_bucket(i->ino)] = i;
		live++;
	}
	i->nlookup++;
	*ino = i->ino;
	pthread_mutex_unlock(&inodes_lock);
	return 0;
}

static void unlink_inode(struct inode *i)
{
	struct inode **p;

	for (p = &by_path[path_bucket(i->path)]; *p != i; p = &(*p)->next_by_path)
		;
	*p = i->next_by_path;
	for (p = &by_ino[ino_bucket(i->ino)]; *p != i; p = &(*p)->next_by_ino)
		;
	*p = i->next_by_ino;
	live--;
	free(i);
}

void snapfs_inode_forget(fuse_ino_t ino, uint64_t n)
{
	struct inode *i;

	if (ino == FUSE_ROOT_ID)
		return;
	pthread_mutex_lock(&inodes_lock);
	i = find_ino(ino);
	if (i) {
		/* More forgets than lookups would be the kernel's bug; the
		 * number goes either way. */
		i->nlookup = n < i->nlookup ? i->nlookup - n : 0;
		if (!i->nlookup)
			unlink_inode(i);
	}
	pthread_mutex_unlock(&inodes_lock);
}

fuse_ino_t *snapfs_inode_under(const char *dir, size_t *n)
{
	size_t len = strlen(dir), cap = 0;
	fuse_ino_t *out = NULL;

	*n = 0;
	pthread_mutex_lock(&inodes_lock);
	for (size_t b = 0; b < BUCKETS; b++) {
		for (const struct inode *i = by_ino[b]; i; i = i->next_by_ino) {
			if (i->path[0] != '/' || strncmp(i->path + 1, dir, len) ||
			    i->path[len + 1] != '/')
				continue;
			if (*n == cap) {
				size_t c = cap ? 2 * cap : 16;
				fuse_ino_t *p = realloc(out, c * sizeof(*out));

				if (!p)
					goto out;
				out = p;
				cap = c;
			}
			out[(*n)++] = i->ino;
		}
	}
out:
	pthread_mutex_unlock(&inodes_lock);
	return out;
}

size_t snapfs_inode_count(void)
{
	size_t n;

	pthread_mutex_lock(&inodes_lock);
	n = live;
	pthread_mutex_unlock(&inodes_lock);
	return n;
}

void snapfs_inode_free_all(void)
{
	pthread_mutex_lock(&inodes_lock);
	for (size_t b = 0; b < BUCKETS; b++) {
		while (by_ino[b]) {
			struct inode *i = by_ino[b];

			by_ino[b] = i->next_by_ino;
			free(i);
		}
		by_path[b] = NULL;
	}
	live = 0;
	pthread_mutex_unlock(&inodes_lock);
}

int snapfs_path_join(const char *dir, const char *name, char path[SNAPFS_PATH_MAX])
{
	int len = snprintf(path, SNAPFS_PATH_MAX, "%s/%s", strcmp(dir, "/") ? dir : "", name);

	return len < 0 || len >= SNAPFS_PATH_MAX ? -ENAMETOOLONG : 0;
}
