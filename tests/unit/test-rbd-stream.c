/* Unit tests for src/rbd-stream.c, librbd faked at its boundary: the
 * Makefile links this program with -Wl,--wrap for the four librbd calls the
 * stream makes, so its chunk reads land here.  The fake fills each buffer
 * with bytes that name their offset, and completes each read on a thread of
 * its own after a random delay (out of order, as the OSDs answer), or on
 * the caller's thread inside rbd_aio_read2 (as librbd does when it fails a
 * read at once), or with an error.
 *
 * What must hold: a reader going forward gets the right bytes, each chunk
 * read once; many threads reading forward a little out of order (the
 * kernel's readahead) too; a reader jumping about is not served; a failed
 * chunk fails the reads that need it and is read again by the next one;
 * bytes lent stay put until given back;
 * freeing the stream waits for the chunks still being read. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <rbd/librbd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapfs.h"

#define UNUSED __attribute__((unused))
#define MIB (1024 * 1024)
#define CHUNK SNAPFS_RBD_CHUNK
#define MAX_CHUNKS 64

int __wrap_rbd_aio_create_completion(void *arg, rbd_callback_t cb, rbd_completion_t *c);
int __wrap_rbd_aio_read2(rbd_image_t img, uint64_t off, size_t len, char *buf,
			 rbd_completion_t c, int flags);
ssize_t __wrap_rbd_aio_get_return_value(rbd_completion_t c);
void __wrap_rbd_aio_release(rbd_completion_t c);

struct comp {
	rbd_callback_t cb;
	void *arg;
	ssize_t ret;
	char *buf;           /* filled when the read completes, as librbd does */
	uint64_t off;
	struct comp *next;
};

enum mode { ASYNC, INLINE };

static struct {
	pthread_mutex_t lock;
	pthread_cond_t more;
	enum mode mode;
	unsigned reads[MAX_CHUNKS]; /* chunk reads asked for, by chunk */
	unsigned bytes_wrong;       /* reads not of a whole chunk */
	int fail_chunk;             /* this chunk's next read fails, or -1 */
	int fail_err;
	unsigned pending, comps;    /* queued; completions alive */
	struct comp *queue;
	bool stop;
	int hold_from;              /* complete no read of this chunk or
	                             * later until cleared (-1) */
	pthread_t thread;
} fake = { .lock = PTHREAD_MUTEX_INITIALIZER, .more = PTHREAD_COND_INITIALIZER };

/* No two pages alike, and no period a chunk's offset could hide in. */
static uint8_t byte_at(uint64_t off)
{
	uint32_t page = (uint32_t)(off >> 12) * 2654435761u;

	return (uint8_t)((page >> 24) + (page >> 16) + (off & 0xfff) * 7 + 1);
}

static void fill(char *buf, size_t len, uint64_t off)
{
	for (size_t k = 0; k < len; k++)
		buf[k] = (char)byte_at(off + k);
}

static bool right(const char *buf, size_t len, uint64_t off)
{
	for (size_t k = 0; k < len; k++)
		if ((uint8_t)buf[k] != byte_at(off + k))
			return false;
	return true;
}

/* Completes queued reads, the newest first and each after a short delay:
 * never in the order they were asked for. */
static void *completer(void *arg UNUSED)
{
	pthread_mutex_lock(&fake.lock);
	for (;;) {
		struct comp *c, **at;

		for (;;) {
			for (at = &fake.queue; *at; at = &(*at)->next)
				if (fake.hold_from < 0 || (*at)->off / CHUNK < (uint64_t)fake.hold_from)
					break;
			if (*at || fake.stop)
				break;
			pthread_cond_wait(&fake.more, &fake.lock);
		}
		if (!*at)
			break;
		c = *at;
		*at = c->next;
		pthread_mutex_unlock(&fake.lock);
		usleep((useconds_t)(rand() % 300));
		if (c->ret > 0)
			fill(c->buf, (size_t)c->ret, c->off);
		c->cb(c, c->arg);
		pthread_mutex_lock(&fake.lock);
		fake.pending--;
		pthread_cond_broadcast(&fake.more);
	}
	pthread_mutex_unlock(&fake.lock);
	return NULL;
}

int __wrap_rbd_aio_create_completion(void *arg, rbd_callback_t cb, rbd_completion_t *out)
{
	struct comp *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	c->cb = cb;
	c->arg = arg;
	pthread_mutex_lock(&fake.lock);
	fake.comps++;
	pthread_mutex_unlock(&fake.lock);
	*out = c;
	return 0;
}

int __wrap_rbd_aio_read2(rbd_image_t img, uint64_t off, size_t len, char *buf,
			 rbd_completion_t comp, int flags UNUSED)
{
	uint64_t size = *(uint64_t *)img, chunk = off / CHUNK;
	struct comp *c = comp;

	pthread_mutex_lock(&fake.lock);
	if (off % CHUNK || chunk >= MAX_CHUNKS ||
	    len != (size - off < CHUNK ? size - off : CHUNK))
		fake.bytes_wrong++;
	else
		fake.reads[chunk]++;
	if ((int)chunk == fake.fail_chunk) {
		fake.fail_chunk = -1;
		c->ret = fake.fail_err;
	} else {
		c->ret = (ssize_t)len;
	}
	c->buf = buf;
	c->off = off;
	if (fake.mode == INLINE) {
		pthread_mutex_unlock(&fake.lock);
		if (c->ret > 0)
			fill(buf, len, off);
		c->cb(c, c->arg);
		return 0;
	}
	c->next = fake.queue;
	fake.queue = c;
	fake.pending++;
	pthread_cond_broadcast(&fake.more);
	pthread_mutex_unlock(&fake.lock);
	return 0;
}

ssize_t __wrap_rbd_aio_get_return_value(rbd_completion_t c)
{
	return ((struct comp *)c)->ret;
}

void __wrap_rbd_aio_release(rbd_completion_t c)
{
	pthread_mutex_lock(&fake.lock);
	fake.comps--;
	pthread_mutex_unlock(&fake.lock);
	free(c);
}

static int setup(void **state UNUSED)
{
	memset(fake.reads, 0, sizeof(fake.reads));
	fake.bytes_wrong = 0;
	fake.fail_chunk = -1;
	fake.mode = ASYNC;
	fake.stop = false;
	fake.hold_from = -1;
	assert_int_equal(pthread_create(&fake.thread, NULL, completer, NULL), 0);
	return 0;
}

static int teardown(void **state UNUSED)
{
	pthread_mutex_lock(&fake.lock);
	fake.stop = true;
	pthread_cond_broadcast(&fake.more);
	pthread_mutex_unlock(&fake.lock);
	pthread_join(fake.thread, NULL);
	assert_int_equal(fake.pending, 0);
	assert_int_equal(fake.comps, 0); /* every completion released */
	assert_int_equal(fake.bytes_wrong, 0);
	return 0;
}

/* Read [off, off + len) as snapfs_rbd_read does: through the stream, or,
 * when it does not serve the read, directly (the fake's bytes). */
static int read_as_snapfs(struct snapfs_rbd_stream *s, char *buf, size_t len, uint64_t off,
			  unsigned *direct)
{
	int rc = snapfs_rbd_stream_read(s, buf, len, off);

	if (rc == 0) {
		fill(buf, len, off);
		__atomic_add_fetch(direct, 1, __ATOMIC_RELAXED);
	}
	return rc < 0 ? rc : 0;
}

/* Forward in 1 MiB requests, the last short: each chunk read once. */
static void forward(enum mode mode)
{
	uint64_t size = 40 * MIB + 12345;
	struct snapfs_rbd_stream *s = snapfs_rbd_stream_new(&size, size);
	char *buf = malloc(MIB);
	unsigned direct = 0, chunks = (unsigned)((size + CHUNK - 1) / CHUNK);

	fake.mode = mode;
	assert_non_null(s);
	for (uint64_t off = 0; off < size; off += MIB) {
		size_t len = size - off < MIB ? (size_t)(size - off) : MIB;

		assert_int_equal(read_as_snapfs(s, buf, len, off, &direct), 0);
		assert_true(right(buf, len, off));
	}
	snapfs_rbd_stream_free(s);
	/* The first read, alone, is not yet a stream's. */
	assert_int_equal(direct, 1);
	for (unsigned k = 0; k < MAX_CHUNKS; k++)
		assert_int_equal(fake.reads[k], k < chunks ? 1 : 0);
	free(buf);
}

static void test_forward(void **state UNUSED)
{
	forward(ASYNC);
}

/* librbd may call the completion on the caller's thread, inside
 * rbd_aio_read2: no deadlock, the same bytes. */
static void test_forward_inline(void **state UNUSED)
{
	forward(INLINE);
}

/* A reader jumping about (a partition table, a qcow2 table, tar's
 * headers): never served, nothing read ahead. */
static void test_random(void **state UNUSED)
{
	uint64_t size = 200 * MIB;
	struct snapfs_rbd_stream *s = snapfs_rbd_stream_new(&size, size);
	static const uint64_t at[] = { 0, 100 * MIB, 4096, 37 * MIB, 150 * MIB + 512, 12 * MIB };
	char buf[65536];

	assert_non_null(s);
	for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++)
		assert_int_equal(snapfs_rbd_stream_read(s, buf, sizeof(buf), at[k]), 0);
	/* Past the end, or nothing: not the stream's either. */
	assert_int_equal(snapfs_rbd_stream_read(s, buf, 2, size - 1), 0);
	assert_int_equal(snapfs_rbd_stream_read(s, buf, 0, 0), 0);
	snapfs_rbd_stream_free(s);
	for (unsigned k = 0; k < MAX_CHUNKS; k++)
		assert_int_equal(fake.reads[k], 0);
}

struct many {
	struct snapfs_rbd_stream *s;
	uint64_t size, next;
	unsigned direct, wrong, failed;
};

static void *many_reader(void *arg)
{
	struct many *m = arg;
	char *buf = malloc(MIB);

	assert_non_null(buf);
	for (;;) {
		uint64_t off = __atomic_fetch_add(&m->next, MIB, __ATOMIC_RELAXED);
		size_t len;

		if (off >= m->size)
			break;
		len = m->size - off < MIB ? (size_t)(m->size - off) : MIB;
		if (read_as_snapfs(m->s, buf, len, off, &m->direct) < 0)
			__atomic_add_fetch(&m->failed, 1, __ATOMIC_RELAXED);
		else if (!right(buf, len, off))
			__atomic_add_fetch(&m->wrong, 1, __ATOMIC_RELAXED);
	}
	free(buf);
	return NULL;
}

/* Eight threads taking 1 MiB requests in turn, as FUSE's workers take
 * the kernel's readahead: the right bytes, and whole chunks read ahead. */
static void test_many_threads(void **state UNUSED)
{
	struct many m = { .size = 200 * MIB };
	pthread_t t[8];
	unsigned total = 0;

	m.s = snapfs_rbd_stream_new(&m.size, m.size);
	assert_non_null(m.s);
	for (size_t k = 0; k < 8; k++)
		assert_int_equal(pthread_create(&t[k], NULL, many_reader, &m), 0);
	for (size_t k = 0; k < 8; k++)
		pthread_join(t[k], NULL);
	snapfs_rbd_stream_free(m.s);
	assert_int_equal(m.wrong, 0);
	assert_int_equal(m.failed, 0);
	for (unsigned k = 0; k < 50; k++)
		total += fake.reads[k];
	/* Most requests are the stream's; no chunk read more than twice. */
	assert_true(m.direct < 50);
	assert_true(total >= 40);
	for (unsigned k = 0; k < 50; k++)
		assert_true(fake.reads[k] <= 2);
}

/* A chunk whose read fails fails the read waiting for it, with librbd's
 * error; the next read of it reads it again and gets its bytes. */
static void test_failed_chunk(void **state UNUSED)
{
	uint64_t size = 64 * MIB;
	struct snapfs_rbd_stream *s = snapfs_rbd_stream_new(&size, size);
	char *buf = malloc(MIB);
	unsigned direct = 0;

	assert_non_null(s);
	assert_int_equal(read_as_snapfs(s, buf, MIB, 0, &direct), 0);
	fake.fail_chunk = 0;
	fake.fail_err = -ETIMEDOUT;
	assert_int_equal(read_as_snapfs(s, buf, MIB, MIB, &direct), -ETIMEDOUT);
	assert_int_equal(read_as_snapfs(s, buf, MIB, MIB, &direct), 0);
	assert_true(right(buf, MIB, MIB));
	assert_int_equal(fake.reads[0], 2);
	assert_int_equal(direct, 1);
	snapfs_rbd_stream_free(s);
	free(buf);
}

/* A chunk read ahead that fails, with nobody waiting for it yet, is read
 * again when a reader gets there: the reader never sees the error. */
static void test_failed_ahead(void **state UNUSED)
{
	uint64_t size = 64 * MIB;
	struct snapfs_rbd_stream *s = snapfs_rbd_stream_new(&size, size);
	char *buf = malloc(MIB);
	unsigned direct = 0;

	assert_non_null(s);
	fake.fail_chunk = 3;
	fake.fail_err = -EIO;
	for (uint64_t off = 0; off < size; off += MIB) {
		assert_int_equal(read_as_snapfs(s, buf, MIB, off, &direct), 0);
		assert_true(right(buf, MIB, off));
	}
	assert_int_equal(fake.reads[3], 2);
	assert_int_equal(fake.reads[4], 1);
	snapfs_rbd_stream_free(s);
	free(buf);
}

/* Bytes lent rather than copied: the right ones, never refilled while
 * lent however far the reader goes on, and not lent across two chunks. */
static void test_borrow(void **state UNUSED)
{
	uint64_t size = 64 * MIB;
	struct snapfs_rbd_stream *s = snapfs_rbd_stream_new(&size, size);
	const char *data, *kept;
	void *token, *kept_token;
	char *buf = malloc(MIB);
	unsigned direct = 0;

	assert_non_null(s);
	/* The first read is nobody's stream yet. */
	assert_int_equal(snapfs_rbd_stream_borrow(s, MIB, 0, &data, &token), 0);
	assert_int_equal(snapfs_rbd_stream_borrow(s, MIB, MIB, &kept, &kept_token), 1);
	assert_true(right(kept, MIB, MIB));
	for (uint64_t off = 2 * MIB; off < size; off += MIB) {
		assert_int_equal(snapfs_rbd_stream_borrow(s, MIB, off, &data, &token), 1);
		assert_true(right(data, MIB, off));
		snapfs_rbd_stream_return(token);
	}
	assert_true(right(kept, MIB, MIB));
	snapfs_rbd_stream_return(kept_token);
	/* Across chunks 0 and 1: read, with the same bytes. */
	assert_int_equal(snapfs_rbd_stream_borrow(s, MIB, CHUNK - 4096, &data, &token), 0);
	assert_int_equal(read_as_snapfs(s, buf, MIB, CHUNK - 4096, &direct), 0);
	assert_true(right(buf, MIB, CHUNK - 4096));
	snapfs_rbd_stream_free(s);
	free(buf);
}

static void *free_stream(void *s)
{
	snapfs_rbd_stream_free(s);
	return NULL;
}

/* Freed with chunks still being read: it waits until librbd has written
 * the last of them (their buffers go with the stream). */
static void test_free_waits(void **state UNUSED)
{
	uint64_t size = 64 * MIB;
	struct snapfs_rbd_stream *s = snapfs_rbd_stream_new(&size, size);
	char buf[4096];
	unsigned direct = 0, pending;
	pthread_t t;
	bool freed;

	assert_non_null(s);
	assert_int_equal(read_as_snapfs(s, buf, sizeof(buf), 0, &direct), 0);
	/* Chunk 0 is read; 1-4, read ahead, are held on their way. */
	fake.hold_from = 1;
	assert_int_equal(read_as_snapfs(s, buf, sizeof(buf), 4096, &direct), 0);
	assert_true(right(buf, sizeof(buf), 4096));
	assert_int_equal(pthread_create(&t, NULL, free_stream, s), 0);
	usleep(100000);
	freed = pthread_tryjoin_np(t, NULL) == 0;
	pthread_mutex_lock(&fake.lock);
	pending = fake.pending;
	fake.hold_from = -1;
	pthread_cond_broadcast(&fake.more);
	pthread_mutex_unlock(&fake.lock);
	if (!freed)
		pthread_join(t, NULL);
	assert_int_equal(pending, 4);
	assert_false(freed);
	pthread_mutex_lock(&fake.lock);
	assert_int_equal(fake.pending, 0);
	pthread_mutex_unlock(&fake.lock);
	assert_int_equal(fake.reads[4], 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_forward, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forward_inline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_chunk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_ahead, setup, teardown),
		cmocka_unit_test_setup_teardown(test_borrow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_waits, setup, teardown),
	};

	srand((unsigned)time(NULL));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
