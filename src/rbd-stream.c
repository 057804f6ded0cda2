/* Sequential reads of an RBD snapshot, a whole chunk at a time.
 *
 * The kernel reads a FUSE file in requests of at most 1 MiB; read one by
 * one from the snapshot they would cost the OSD four reads per 4 MiB
 * object and snapfs a wake-up per request.  A reader going forward is
 * served from chunks of SNAPFS_RBD_CHUNK bytes (whole objects of Ceph's
 * default size), read ahead of it, SNAPFS_RBD_AHEAD at once, into buffers
 * the stream keeps: `rbd export` reads the same way.  A snapshot never
 * changes, so a chunk read once is good until the stream is freed.
 *
 * Reads elsewhere (a partition table, a qcow2 table, a reader jumping
 * about) are not served here and go to librbd directly.  Nothing here is
 * waited on under a lock but the stream's own, and every chunk read ends,
 * in time, with the cluster's op timeout.
 */
#include "config.h"

#include <errno.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "snapfs.h"

#define SLOTS (SNAPFS_RBD_AHEAD + 2)

enum slot_state { SLOT_EMPTY, SLOT_LOADING, SLOT_READY, SLOT_FAILED };

struct slot {
	struct snapfs_rbd_stream *s;
	uint64_t chunk;
	enum slot_state state;
	int users;           /* readers copying out of buf */
	int err;             /* SLOT_FAILED: -errno */
	size_t len;          /* bytes of the chunk (the last may be short) */
	uint64_t used;       /* when last wanted, in the stream's ticks */
	char *buf;           /* SNAPFS_RBD_CHUNK bytes, mapped and kept, or NULL */
};

struct snapfs_rbd_stream {
	pthread_mutex_t lock;
	pthread_cond_t done; /* a chunk has been read */
	rbd_image_t img;
	uint64_t size;
	uint64_t last;       /* the last chunk a read wanted */
	bool started;        /* last is set */
	uint64_t tick;
	int loading;         /* chunks being read */
	struct slot slot[SLOTS];
};

struct snapfs_rbd_stream *snapfs_rbd_stream_new(void *img, uint64_t size)
{
	struct snapfs_rbd_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->done, NULL);
	s->img = img;
	s->size = size;
	for (size_t k = 0; k < SLOTS; k++)
		s->slot[k].s = s;
	return s;
}

void snapfs_rbd_stream_free(struct snapfs_rbd_stream *s)
{
	if (!s)
		return;
	/* librbd still writes into the buffers of chunks being read. */
	pthread_mutex_lock(&s->lock);
	while (s->loading)
		pthread_cond_wait(&s->done, &s->lock);
	pthread_mutex_unlock(&s->lock);
	for (size_t k = 0; k < SLOTS; k++)
		if (s->slot[k].buf)
			munmap(s->slot[k].buf, SNAPFS_RBD_CHUNK);
	pthread_cond_destroy(&s->done);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* A slot is free when it holds nothing, or a chunk whose read failed and
 * whose readers have had the error: the next reader of it tries again. */
static bool is_free(const struct slot *sl)
{
	return sl->state == SLOT_EMPTY || (sl->state == SLOT_FAILED && !sl->users);
}

static struct slot *find(struct snapfs_rbd_stream *s, uint64_t chunk)
{
	for (size_t k = 0; k < SLOTS; k++)
		if (!is_free(&s->slot[k]) && s->slot[k].chunk == chunk)
			return &s->slot[k];
	return NULL;
}

/* librbd's completion, on one of its threads. */
static void chunk_read(rbd_completion_t comp, void *arg)
{
	struct slot *sl = arg;
	struct snapfs_rbd_stream *s = sl->s;
	ssize_t n = rbd_aio_get_return_value(comp);

	rbd_aio_release(comp);
	pthread_mutex_lock(&s->lock);
	if (n >= 0 && (size_t)n == sl->len) {
		sl->state = SLOT_READY;
	} else {
		sl->state = SLOT_FAILED;
		sl->err = n < 0 ? (int)n : -EIO;
	}
	s->loading--;
	pthread_cond_broadcast(&s->done);
	pthread_mutex_unlock(&s->lock);
}

/* Claim a slot for chunk, to be read by submit() once the lock is let go
 * (librbd may call the completion on the caller's thread): a slot no
 * reader needs, the one wanted longest ago, but never one holding a chunk
 * of [keep_from, keep_to].  The slot, or NULL (none free). */
static struct slot *claim(struct snapfs_rbd_stream *s, uint64_t chunk, uint64_t keep_from,
			  uint64_t keep_to)
{
	struct slot *sl = NULL;
	uint64_t off = chunk * SNAPFS_RBD_CHUNK;

	if (off >= s->size)
		return NULL;
	for (size_t k = 0; k < SLOTS; k++) {
		struct slot *c = &s->slot[k];

		if (c->state == SLOT_LOADING || c->users ||
		    (!is_free(c) && c->chunk >= keep_from && c->chunk <= keep_to))
			continue;
		if (!sl || (is_free(c) && !is_free(sl)) ||
		    (is_free(c) == is_free(sl) && c->used < sl->used))
			sl = c;
	}
	if (!sl)
		return NULL;
	/* Mapped, not malloc'd: given back whole when the stream is freed,
	 * rather than kept in an arena of whichever thread freed it. */
	if (!sl->buf) {
		void *mem = mmap(NULL, SNAPFS_RBD_CHUNK, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (mem == MAP_FAILED)
			return NULL;
		sl->buf = mem;
	}
	sl->chunk = chunk;
	sl->len = s->size - off < SNAPFS_RBD_CHUNK ? (size_t)(s->size - off) : SNAPFS_RBD_CHUNK;
	sl->used = s->tick;
	sl->state = SLOT_LOADING;
	s->loading++;
	return sl;
}

/* Without the lock: start reading the claimed slots. */
static void submit(struct snapfs_rbd_stream *s, struct slot **todo, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		struct slot *sl = todo[k];
		rbd_completion_t comp;
		int rc = rbd_aio_create_completion(sl, chunk_read, &comp);

		if (rc == 0) {
			rc = rbd_aio_read2(s->img, sl->chunk * SNAPFS_RBD_CHUNK, sl->len, sl->buf,
					   comp, LIBRADOS_OP_FLAG_FADVISE_NOCACHE |
							 LIBRADOS_OP_FLAG_FADVISE_SEQUENTIAL);
			if (rc == 0)
				continue;
			rbd_aio_release(comp);
		}
		pthread_mutex_lock(&s->lock);
		sl->state = SLOT_FAILED;
		sl->err = rc < 0 ? rc : -EIO;
		s->loading--;
		pthread_cond_broadcast(&s->done);
		pthread_mutex_unlock(&s->lock);
	}
}

static void put(struct slot **need, size_t n)
{
	for (size_t k = 0; k < n; k++)
		need[k]->users--;
}

/* The slots of the chunks [off, off + len) needs, read and held in need
 * (*n of them): 1; 0 when the read is not a stream's; or -errno (librbd's)
 * when one of them failed, nothing held. */
static int acquire(struct snapfs_rbd_stream *s, size_t len, uint64_t off, struct slot **need,
		   size_t *n)
{
	struct slot *todo[2 + SNAPFS_RBD_AHEAD];
	uint64_t first, lastc, c;
	size_t ntodo = 0;
	int rc = 1;

	*n = 0;
	if (!len || off > s->size || len > s->size - off)
		return 0;
	first = off / SNAPFS_RBD_CHUNK;
	lastc = (off + len - 1) / SNAPFS_RBD_CHUNK;
	if (lastc - first >= 2)
		return 0; /* more than any FUSE request: not a stream's */
	pthread_mutex_lock(&s->lock);
	s->tick++;
	/* Forward from the last read, or into a chunk already read ahead:
	 * the kernel's readahead requests come on several threads, a little
	 * out of order. */
	if (!find(s, first) &&
	    !(s->started && (first == s->last || first == s->last + 1))) {
		s->last = lastc;
		s->started = true;
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	if (lastc > s->last)
		s->last = lastc;
	for (c = first; c <= lastc; c++) {
		struct slot *sl = find(s, c);

		if (!sl) {
			if (!(sl = claim(s, c, first, lastc)))
				break;
			todo[ntodo++] = sl;
		}
		sl->users++;
		sl->used = s->tick;
		need[(*n)++] = sl;
	}
	if (c <= lastc) { /* no slot free: this read goes to librbd directly */
		put(need, *n);
		*n = 0;
		pthread_mutex_unlock(&s->lock);
		submit(s, todo, ntodo);
		return 0;
	}
	for (c = lastc + 1; c <= lastc + SNAPFS_RBD_AHEAD; c++) {
		struct slot *sl;

		if (find(s, c))
			continue;
		if (!(sl = claim(s, c, first, lastc + SNAPFS_RBD_AHEAD)))
			break;
		todo[ntodo++] = sl;
	}
	pthread_mutex_unlock(&s->lock);
	submit(s, todo, ntodo);
	pthread_mutex_lock(&s->lock);
	for (size_t k = 0; k < *n; k++)
		while (need[k]->state == SLOT_LOADING)
			pthread_cond_wait(&s->done, &s->lock);
	for (size_t k = 0; k < *n; k++)
		if (need[k]->state == SLOT_FAILED)
			rc = need[k]->err;
	if (rc < 0) {
		put(need, *n);
		*n = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int snapfs_rbd_stream_read(struct snapfs_rbd_stream *s, void *buf, size_t len, uint64_t off)
{
	struct slot *need[2];
	size_t n;
	char *p = buf;
	int rc = acquire(s, len, off, need, &n);

	if (rc <= 0)
		return rc;
	/* The slots are the reader's until put: none is refilled under it. */
	for (size_t k = 0; k < n; k++) {
		uint64_t base = need[k]->chunk * SNAPFS_RBD_CHUNK;
		uint64_t from = off > base ? off - base : 0;
		size_t take = need[k]->len - (size_t)from;

		if (take > len)
			take = len;
		memcpy(p, need[k]->buf + from, take);
		p += take;
		len -= take;
		off += take;
	}
	pthread_mutex_lock(&s->lock);
	put(need, n);
	pthread_mutex_unlock(&s->lock);
	return 1;
}

int snapfs_rbd_stream_borrow(struct snapfs_rbd_stream *s, size_t len, uint64_t off,
			     const char **data, void **token)
{
	struct slot *need[2];
	size_t n;
	int rc;

	if (len && off / SNAPFS_RBD_CHUNK != (off + len - 1) / SNAPFS_RBD_CHUNK)
		return 0; /* across two chunks: read, not borrowed */
	rc = acquire(s, len, off, need, &n);
	if (rc <= 0)
		return rc;
	*data = need[0]->buf + (off - need[0]->chunk * SNAPFS_RBD_CHUNK);
	*token = need[0];
	return 1;
}

void snapfs_rbd_stream_return(void *token)
{
	struct slot *sl = token;
	struct snapfs_rbd_stream *s = sl->s;

	pthread_mutex_lock(&s->lock);
	put(&sl, 1);
	pthread_mutex_unlock(&s->lock);
}
