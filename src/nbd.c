/* Reading an NBD export through libnbd: a few connections to one export,
 * each used by one reader at a time, so that readers of one disk run side
 * by side instead of queueing on one socket.
 *
 * Locking: each connection has its own mutex, held across its round trip;
 * nothing else is shared but the round-robin counter (atomic).  No lock of
 * the snapshot sets is ever held here.
 */
#include "config.h"

#include <errno.h>
#include <libnbd.h>
#include <stdio.h>
#include <string.h>

#include "snapfs.h"

/* qemu's server takes requests of up to 32 MiB, but allocates a buffer for
 * each: at 1 MiB (what FUSE asks for) glibc maps it fresh and qemu faults
 * in every page, at 256 KiB (nbdcopy's size) the buffers are reused; in
 * the same rounds 256 KiB read 1.2-1.7x faster for 0.6-0.9x of qemu's CPU
 * (docs/performance.md). */
#define NBD_REQUEST_MAX (256u << 10)
#define NBD_CONNS_MAX 16
#define NBD_BATCH 16

struct conn {
	pthread_mutex_t lock;
	struct nbd_handle *h;       /* under lock */
};

struct snapfs_nbd {
	struct conn conn[NBD_CONNS_MAX];
	unsigned n;
	unsigned next;              /* atomic: where the next reader starts looking */
	bool error_logged;          /* atomic */
	char guest[SNAPFS_NAME_MAX + 1], disk[SNAPFS_NAME_MAX + 1];
};

static struct nbd_handle *connect_one(const char *socket, const char *name, bool map)
{
	struct nbd_handle *h = nbd_create();

	if (!h)
		return NULL;
	/* libnbd fails a read that the server's reply does not cover whole,
	 * and no failed read's buffer reaches a reader, so zeroing every
	 * buffer before each read (libnbd's default) buys nothing. */
	if (nbd_set_pread_initialize(h, false) < 0 || nbd_set_export_name(h, name) < 0 ||
	    (map && nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0) ||
	    nbd_connect_unix(h, socket) < 0) {
		nbd_close(h);
		return NULL;
	}
	return h;
}

int snapfs_nbd_open(const char *socket, const char *name, unsigned conns, const char *guest,
		    const char *disk, struct snapfs_nbd **out, uint64_t *size)
{
	struct snapfs_nbd *n = calloc(1, sizeof(*n));
	int64_t sz;

	if (!n)
		return -ENOMEM;
	snprintf(n->guest, sizeof(n->guest), "%s", guest);
	snprintf(n->disk, sizeof(n->disk), "%s", disk);
	if (conns < 1)
		conns = 1;
	if (conns > NBD_CONNS_MAX)
		conns = NBD_CONNS_MAX;
	for (unsigned i = 0; i < conns; i++) {
		/* The first connection asks for the map; the others only read. */
		struct nbd_handle *h = connect_one(socket, name, i == 0);

		if (!h) {
			if (i == 0) {
				snapfs_error("guest %s disk %s: cannot connect to the backup export %s "
					     "at %s: %s",
					     guest, disk, name, socket, nbd_get_error());
				snapfs_nbd_close(n, true);
				return -EIO;
			}
			snapfs_debug(SNAPFS_DBG_SNAP, "guest %s disk %s: connection %u of %u to %s "
				     "refused (%s); reading with %u",
				     guest, disk, i + 1, conns, socket, nbd_get_error(), i);
			break;
		}
		pthread_mutex_init(&n->conn[i].lock, NULL);
		n->conn[i].h = h;
		n->n++;
	}
	sz = nbd_get_size(n->conn[0].h);
	if (sz < 0) {
		snapfs_error("guest %s disk %s: the backup export %s has no size: %s", guest, disk,
			     name, nbd_get_error());
		snapfs_nbd_close(n, true);
		return -EIO;
	}
	*size = (uint64_t)sz;
	*out = n;
	return 0;
}

/* A connection for this reader: a free one if any, else the next in turn.
 * Returned locked. */
static struct conn *take_conn(struct snapfs_nbd *n)
{
	unsigned start = __atomic_fetch_add(&n->next, 1, __ATOMIC_RELAXED);

	for (unsigned k = 0; k < n->n; k++) {
		struct conn *c = &n->conn[(start + k) % n->n];

		if (pthread_mutex_trylock(&c->lock) == 0)
			return c;
	}
	struct conn *c = &n->conn[start % n->n];

	pthread_mutex_lock(&c->lock);
	return c;
}

static void log_read_error(struct snapfs_nbd *n, uint64_t off, const char *why, int err)
{
	if (!__atomic_exchange_n(&n->error_logged, true, __ATOMIC_RELAXED))
		snapfs_error("guest %s disk %s: read of the backup export at byte %llu failed: %s",
			     n->guest, n->disk, (unsigned long long)off,
			     why ? why : strerror(err ? err : EIO));
}

/* Up to NBD_BATCH requests of one read in flight at once on its connection
 * (qemu serves up to 16 of a client's requests side by side), so that a
 * read of 1 MiB costs one round trip, not four.  A request that could not
 * be sent still waits for those that were, since they write into buf. */
static int read_batch(struct snapfs_nbd *n, struct conn *c, char *buf, size_t len,
		      uint64_t off)
{
	int64_t cookie[NBD_BATCH];
	unsigned sent = 0, done = 0;
	int rc = 0;

	for (size_t at = 0; at < len; at += NBD_REQUEST_MAX) {
		size_t chunk = len - at < NBD_REQUEST_MAX ? len - at : NBD_REQUEST_MAX;
		int64_t k = nbd_aio_pread(c->h, buf + at, chunk, off + at, NBD_NULL_COMPLETION, 0);

		if (k < 0) {
			log_read_error(n, off + at, nbd_get_error(), nbd_get_errno());
			rc = -EIO;
			break;
		}
		cookie[sent++] = k;
	}
	while (done < sent) {
		int r = nbd_aio_command_completed(c->h, (uint64_t)cookie[done]);

		if (r == 0 && (nbd_poll(c->h, -1) >= 0 || nbd_get_errno() == EINTR))
			continue;
		if (r != 1 && rc == 0) {
			log_read_error(n, off + (uint64_t)done * NBD_REQUEST_MAX, nbd_get_error(),
				       nbd_get_errno());
			rc = -EIO;
		}
		if (r == 0) {
			/* No more waiting on this connection, but requests still
			 * in flight on it would write into buf once another
			 * reader polls it: it goes, and reads of it fail. */
			if (!nbd_aio_is_dead(c->h) && !nbd_aio_is_closed(c->h)) {
				nbd_close(c->h);
				c->h = NULL;
			}
			break;
		}
		done++;
	}
	return rc;
}

int snapfs_nbd_read(struct snapfs_nbd *n, void *buf, size_t len, uint64_t off)
{
	const size_t batch = (size_t)NBD_BATCH * NBD_REQUEST_MAX;
	char *p = buf;
	int rc = 0;

	while (len && rc == 0) {
		size_t part = len < batch ? len : batch;
		struct conn *c = take_conn(n);

		rc = c->h ? read_batch(n, c, p, part, off) : -EIO;
		pthread_mutex_unlock(&c->lock);
		p += part;
		off += part;
		len -= part;
	}
	return rc;
}

struct map_walk {
	struct snapfs_thinmap *map;
	size_t alloc;
	uint64_t next;              /* where the next extent starts */
	int err;
};

static int extent_cb(void *opaque, const char *context, uint64_t offset, uint32_t *entries,
		     size_t nr, int *error)
{
	struct map_walk *w = opaque;
	uint64_t at = offset;

	if (strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION))
		return 0;
	for (size_t i = 0; i + 1 < nr && w->err == 0; i += 2) {
		uint64_t len = entries[i];

		if (!len)
			break; /* a server that makes no progress: stop */
		if (!(entries[i + 1] & LIBNBD_STATE_HOLE))
			w->err = snapfs_thinmap_add(w->map, &w->alloc, at, at + len);
		at += len;
	}
	if (at > w->next)
		w->next = at;
	return 0;
}

int snapfs_nbd_map(struct snapfs_nbd *n, uint64_t size, struct snapfs_thinmap *out)
{
	struct map_walk w = { .map = out };
	struct conn *c = &n->conn[0];
	int rc = 0;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&c->lock);
	if (!c->h)
		rc = -EIO;
	else if (nbd_can_meta_context(c->h, LIBNBD_CONTEXT_BASE_ALLOCATION) != 1)
		rc = -ENOTSUP;
	while (rc == 0 && w.err == 0 && w.next < size) {
		uint64_t at = w.next, left = size - at;
		uint64_t count = left < (1u << 30) ? left : (1u << 30);

		if (nbd_block_status(c->h, count, at,
				     (nbd_extent_callback){ .callback = extent_cb, .user_data = &w },
				     0) < 0) {
			rc = -EIO;
			break;
		}
		if (w.next <= at)
			rc = -EIO; /* no progress: not trusted */
	}
	pthread_mutex_unlock(&c->lock);
	if (rc == 0)
		rc = w.err;
	if (rc == 0 && out->n && out->ext[out->n - 1].end > size)
		out->ext[out->n - 1].end = size;
	if (rc < 0)
		snapfs_thinmap_free(out);
	return rc;
}

void snapfs_nbd_close(struct snapfs_nbd *n, bool goodbye)
{
	if (!n)
		return;
	for (unsigned i = 0; i < n->n; i++) {
		/* A polite goodbye only to a server still there: libnbd 1.14
		 * reads freed memory shutting down a connection whose server
		 * went away unseen. */
		if (goodbye && n->conn[i].h && nbd_aio_is_ready(n->conn[i].h) == 1)
			nbd_shutdown(n->conn[i].h, 0);
		nbd_close(n->conn[i].h);
		pthread_mutex_destroy(&n->conn[i].lock);
	}
	free(n);
}
