/* Unit tests for the guest freeze around the making of a snapshot set
 * (-o freeze=auto|require|off, src/snapset.c), with libvirt and LVM faked
 * at link time.  The Makefile links this program with
 *   -Wl,--wrap=snapfs_lvm_snapshot_create -Wl,--wrap=snapfs_lvm_snapshot_remove
 *   -Wl,--wrap=snapfs_device_open -Wl,--wrap=snapfs_freeze_prepare
 *   -Wl,--wrap=snapfs_freeze -Wl,--wrap=snapfs_thaw -Wl,--wrap=snapfs_freeze_close
 * so every call snapset.c makes across that boundary lands in a __wrap_
 * function below, which appends one line to an event log ("prepare",
 * "freeze", "create vg0/web-root", "thaw", "close", "open vg0/web-root",
 * "remove vg0/web-root").  The tests assert the exact sequence.
 *
 * The fake guest has a state: a freeze that succeeds, or one that times out
 * (libvirt says it failed, yet the agent froze the guest all the same),
 * leaves it frozen until a thaw succeeds.  Freeze handles are malloc'd and
 * counted, so a handle never closed shows up in the tests and in valgrind.
 *
 * A fake never calls cmocka (it may run on snapset's threads): it writes
 * what it finds wrong into fake.anomaly, which the tests check. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapfs.h"

#define UNUSED __attribute__((unused))
#define OWNER "snapfs_owner_0123456789abcdef"
#define COW_SIZE "20%ORIGIN"
#define URI "test:///x"
#define FREEZE_TIMEOUT 10
#define MIB (1024 * 1024ULL)
/* How long a test waits for something that should happen at once. */
#define PROMPT_MS 5000

#define WEB_UUID "6f1c9a52-3b7e-4d0a-9c41-2e8f5d7b0a13"
#define DB_UUID "b2d4e6f8-1a3c-4e5f-8a7b-9c0d1e2f3a4b"
#define AGENT_DOWN "Guest agent is not responding: QEMU guest agent is not connected"
#define AGENT_SLOW "Guest agent is not responding: Guest agent not available for now"
#define THAW_WORDS                                                                       \
	"internal error: unable to execute QEMU agent command 'guest-fsfreeze-thaw'"

int __wrap_snapfs_lvm_snapshot_create(const struct snapfs_lv *origin, const char *snap,
				      const char *cow_size, const char *owner,
				      char **why);
int __wrap_snapfs_lvm_snapshot_remove(const char *vg, const char *lv, const char *owner);
int __wrap_snapfs_device_open(const char *path, uint64_t *size);
int __wrap_snapfs_freeze_prepare(const char *uri, const char *guest, const char *uuid,
				 unsigned timeout, struct snapfs_freeze **out);
int __wrap_snapfs_freeze(struct snapfs_freeze *f, char **why);
int __wrap_snapfs_thaw(struct snapfs_freeze *f, char **why);
void __wrap_snapfs_freeze_close(struct snapfs_freeze *f);

/* ---- the fakes --------------------------------------------------------------- */

#define MAX_EVENTS 64
#define MAX_SNAPS 32

enum freeze_result {
	FREEZE_OK,
	FREEZE_FAILS,	  /* the agent is not there: nothing frozen */
	FREEZE_TIMES_OUT, /* an error, but the guest froze all the same */
};

/* What prepare hands out: snapset.c sees only a struct snapfs_freeze *. */
struct fake_handle {
	unsigned magic;
	struct fake_handle *next;
};
#define HANDLE_MAGIC 0x46525a45u

struct snap_rec {
	char vg[128], lv[128], origin[128];
	unsigned removed;
	int fd; /* the last fd handed out for it, or -1 */
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* broadcast on every call and every change */

	char event[MAX_EVENTS][160];
	size_t nevents;
	char anomaly[512];

	/* libvirt */
	int prepare_rc; /* 0, 1 (not running) or -errno */
	unsigned prepare_calls;
	bool prepare_uri_null;
	char prepare_uri[64], prepare_guest[64], prepare_uuid[64];
	unsigned prepare_timeout;
	enum freeze_result freeze_result;
	bool thaw_fails;
	bool guest_frozen;	     /* the fake guest's filesystems */
	struct fake_handle *handles; /* open ones */
	unsigned handles_open;
	bool block_freeze, freeze_blocked, freeze_release;

	/* LVM */
	struct snap_rec snap[MAX_SNAPS];
	size_t nsnap;
	unsigned create_calls;
	unsigned fail_create_call; /* the Nth create fails (1-based), 0: none */
	int fail_create_err;
	char fail_open_origin[128];
	int fail_open_err;
} fake = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
};

static void anomaly(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void anomaly(const char *fmt, ...)
{
	va_list ap;

	if (fake.anomaly[0])
		return; /* keep the first */
	va_start(ap, fmt);
	vsnprintf(fake.anomaly, sizeof(fake.anomaly), fmt, ap);
	va_end(ap);
}

/* Append to the event log; fake.lock held. */
static void event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void event(const char *fmt, ...)
{
	va_list ap;

	if (fake.nevents == MAX_EVENTS) {
		anomaly("more than %d events", MAX_EVENTS);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(fake.event[fake.nevents++], sizeof(fake.event[0]), fmt, ap);
	va_end(ap);
}

static void deadline_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* fake.lock held: is f a handle prepare gave out and close has not taken? */
static bool handle_live(struct snapfs_freeze *f)
{
	for (struct fake_handle *h = fake.handles; h; h = h->next)
		if ((struct snapfs_freeze *)h == f)
			return h->magic == HANDLE_MAGIC;
	return false;
}

int __wrap_snapfs_freeze_prepare(const char *uri, const char *guest, const char *uuid,
				 unsigned timeout, struct snapfs_freeze **out)
{
	struct fake_handle *h;
	int rc;

	pthread_mutex_lock(&fake.lock);
	event("prepare");
	fake.prepare_calls++;
	fake.prepare_uri_null = !uri;
	snprintf(fake.prepare_uri, sizeof(fake.prepare_uri), "%s", uri ? uri : "");
	snprintf(fake.prepare_guest, sizeof(fake.prepare_guest), "%s", guest);
	snprintf(fake.prepare_uuid, sizeof(fake.prepare_uuid), "%s", uuid);
	fake.prepare_timeout = timeout;
	/* As the real one: *out is NULL unless 0 is returned. */
	*out = NULL;
	rc = fake.prepare_rc;
	if (rc == 0) {
		h = calloc(1, sizeof(*h));
		if (!h)
			abort();
		h->magic = HANDLE_MAGIC;
		h->next = fake.handles;
		fake.handles = h;
		fake.handles_open++;
		*out = (struct snapfs_freeze *)h;
	}
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	return rc;
}

int __wrap_snapfs_freeze(struct snapfs_freeze *f, char **why)
{
	int rc = 0;

	pthread_mutex_lock(&fake.lock);
	event("freeze");
	if (!handle_live(f))
		anomaly("freeze with a handle prepare did not give out (or closed)");
	if (fake.guest_frozen)
		anomaly("freeze of a guest that is frozen already");
	if (fake.block_freeze) {
		struct timespec until;

		deadline_in(&until, 10 * 1000);
		fake.freeze_blocked = true;
		pthread_cond_broadcast(&fake.cond);
		while (!fake.freeze_release)
			if (pthread_cond_timedwait(&fake.cond, &fake.lock, &until) ==
			    ETIMEDOUT)
				break;
		fake.freeze_blocked = false;
	}
	switch (fake.freeze_result) {
	case FREEZE_OK:
		fake.guest_frozen = true;
		break;
	case FREEZE_FAILS:
		*why = strdup(AGENT_DOWN);
		rc = -EIO;
		break;
	case FREEZE_TIMES_OUT:
		fake.guest_frozen = true;
		*why = strdup(AGENT_SLOW);
		rc = -EIO;
		break;
	}
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	return rc;
}

int __wrap_snapfs_thaw(struct snapfs_freeze *f, char **why)
{
	int rc = 0;

	pthread_mutex_lock(&fake.lock);
	event("thaw");
	if (!handle_live(f))
		anomaly("thaw with a handle prepare did not give out (or closed)");
	if (fake.thaw_fails) {
		*why = strdup(THAW_WORDS);
		rc = -EIO;
	} else {
		fake.guest_frozen = false;
	}
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	return rc;
}

void __wrap_snapfs_freeze_close(struct snapfs_freeze *f)
{
	pthread_mutex_lock(&fake.lock);
	if (!f) {
		event("close(NULL)");
		goto out;
	}
	event("close");
	for (struct fake_handle **pp = &fake.handles; *pp; pp = &(*pp)->next) {
		struct fake_handle *h = *pp;

		if ((struct snapfs_freeze *)h == f) {
			*pp = h->next;
			h->magic = 0;
			free(h);
			fake.handles_open--;
			goto out;
		}
	}
	anomaly("close of a handle prepare did not give out (or closed twice)");
out:
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
}

static struct snap_rec *find_rec(const char *vg, const char *lv)
{
	for (size_t i = 0; i < fake.nsnap; i++)
		if (!strcmp(fake.snap[i].vg, vg) && !strcmp(fake.snap[i].lv, lv))
			return &fake.snap[i];
	return NULL;
}

int __wrap_snapfs_lvm_snapshot_create(const struct snapfs_lv *origin, const char *snap,
				      const char *cow_size, const char *owner, char **why)
{
	unsigned call;
	int rc = 0;

	*why = NULL;
	pthread_mutex_lock(&fake.lock);
	call = ++fake.create_calls;
	event("create %s/%s", origin->vg, origin->lv);
	if (strcmp(owner, OWNER))
		anomaly("lvcreate with owner tag \"%s\"", owner);
	if (strcmp(cow_size, COW_SIZE))
		anomaly("lvcreate with cow_size \"%s\"", cow_size);
	if (!snap[0] || strlen(snap) > 127 || strchr(snap, '/'))
		anomaly("lvcreate of a bad LV name \"%s\"", snap);
	if (find_rec(origin->vg, snap))
		anomaly("lvcreate of %s/%s twice", origin->vg, snap);
	if (call == fake.fail_create_call) {
		rc = fake.fail_create_err;
		*why = strdup(
			"  Volume group \"vg0\" has insufficient free space (0 extents): "
			"2560 required.");
	} else if (fake.nsnap == MAX_SNAPS) {
		anomaly("more than %d snapshots", MAX_SNAPS);
		rc = -ENOSPC;
	} else {
		struct snap_rec *r = &fake.snap[fake.nsnap++];

		memset(r, 0, sizeof(*r));
		snprintf(r->vg, sizeof(r->vg), "%s", origin->vg);
		snprintf(r->lv, sizeof(r->lv), "%s", snap);
		snprintf(r->origin, sizeof(r->origin), "%s", origin->lv);
		r->fd = -1;
	}
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	return rc;
}

int __wrap_snapfs_lvm_snapshot_remove(const char *vg, const char *lv, const char *owner)
{
	struct snap_rec *r;
	int rc = 0;

	pthread_mutex_lock(&fake.lock);
	if (strcmp(owner, OWNER))
		anomaly("lvremove with owner tag \"%s\"", owner);
	r = find_rec(vg, lv);
	if (!r) {
		event("remove %s/%s?", vg, lv);
		anomaly("lvremove of %s/%s, which snapfs did not make", vg, lv);
		rc = -EIO;
		goto out;
	}
	/* Named by origin: the snapshots' own names are not predictable. */
	event("remove %s/%s", r->vg, r->origin);
	if (r->removed)
		anomaly("lvremove of %s/%s after it was removed", vg, lv);
	r->removed++;
out:
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	return rc;
}

int __wrap_snapfs_device_open(const char *path, uint64_t *size)
{
	struct snap_rec *r = NULL;
	char want[300];
	int fd;

	pthread_mutex_lock(&fake.lock);
	for (size_t i = 0; i < fake.nsnap && !r; i++)
		if (snapfs_lvm_dm_path(fake.snap[i].vg, fake.snap[i].lv, want,
				       sizeof(want)) == 0 &&
		    !strcmp(want, path))
			r = &fake.snap[i];
	if (!r) {
		event("open %s?", path);
		anomaly("open of %s, which is no snapshot's device-mapper path", path);
		fd = -ENOENT;
		goto out;
	}
	event("open %s/%s", r->vg, r->origin);
	if (r->removed)
		anomaly("open of %s after its removal", path);
	if (fake.fail_open_origin[0] && !strcmp(r->origin, fake.fail_open_origin)) {
		fd = fake.fail_open_err;
		goto out;
	}
	fd = memfd_create("snapfs-test-disk", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)MIB) < 0) {
		anomaly("memfd: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -EIO;
		goto out;
	}
	r->fd = fd;
	*size = MIB;
out:
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	return fd;
}

/* Forget everything; handles a failed test left open are freed here, so
 * that valgrind speaks only of snapfs's own leaks. */
static void fake_reset(void)
{
	pthread_mutex_lock(&fake.lock);
	fake.nevents = 0;
	fake.anomaly[0] = '\0';
	fake.prepare_rc = 0;
	fake.prepare_calls = 0;
	fake.prepare_uri_null = false;
	fake.prepare_uri[0] = fake.prepare_guest[0] = fake.prepare_uuid[0] = '\0';
	fake.prepare_timeout = 0;
	fake.freeze_result = FREEZE_OK;
	fake.thaw_fails = false;
	fake.guest_frozen = false;
	while (fake.handles) {
		struct fake_handle *h = fake.handles;

		fake.handles = h->next;
		free(h);
	}
	fake.handles_open = 0;
	fake.block_freeze = fake.freeze_blocked = fake.freeze_release = false;
	fake.nsnap = 0;
	fake.create_calls = 0;
	fake.fail_create_call = 0;
	fake.fail_create_err = 0;
	fake.fail_open_origin[0] = '\0';
	fake.fail_open_err = 0;
	pthread_mutex_unlock(&fake.lock);
}

/* The event log as one line, "prepare, freeze, create vg0/web-root, ...",
 * so that a failed comparison shows both sequences whole. */
static const char *events(void)
{
	static char line[MAX_EVENTS * 40];
	size_t o = 0;

	line[0] = '\0';
	pthread_mutex_lock(&fake.lock);
	for (size_t i = 0; i < fake.nevents && o < sizeof(line); i++)
		o += (size_t)snprintf(line + o, sizeof(line) - o, "%s%s", i ? ", " : "",
				      fake.event[i]);
	pthread_mutex_unlock(&fake.lock);
	return line;
}

/* Set a fake's knob while snapset's reaper may be running. */
#define fake_set(field, value)                                                           \
	do {                                                                             \
		pthread_mutex_lock(&fake.lock);                                          \
		fake.field = (value);                                                    \
		pthread_mutex_unlock(&fake.lock);                                        \
	} while (0)

static void forget_events(void)
{
	pthread_mutex_lock(&fake.lock);
	fake.nevents = 0;
	pthread_mutex_unlock(&fake.lock);
}

/* Copies, so that cmocka's assertions run without fake.lock held. */
struct tally {
	unsigned prepare_calls, create_calls, handles_open;
	size_t nsnap;
	bool guest_frozen;
	char anomaly[512];
	/* what the last prepare was given */
	bool prepare_uri_null;
	char prepare_uri[64], prepare_guest[64], prepare_uuid[64];
	unsigned prepare_timeout;
};

static struct tally tally(void)
{
	struct tally t;

	pthread_mutex_lock(&fake.lock);
	t.prepare_calls = fake.prepare_calls;
	t.create_calls = fake.create_calls;
	t.handles_open = fake.handles_open;
	t.nsnap = fake.nsnap;
	t.guest_frozen = fake.guest_frozen;
	memcpy(t.anomaly, fake.anomaly, sizeof(t.anomaly));
	t.prepare_uri_null = fake.prepare_uri_null;
	memcpy(t.prepare_uri, fake.prepare_uri, sizeof(t.prepare_uri));
	memcpy(t.prepare_guest, fake.prepare_guest, sizeof(t.prepare_guest));
	memcpy(t.prepare_uuid, fake.prepare_uuid, sizeof(t.prepare_uuid));
	t.prepare_timeout = fake.prepare_timeout;
	pthread_mutex_unlock(&fake.lock);
	return t;
}

/* No fake saw anything wrong, no freeze handle is left open, the guest is
 * not left frozen, and every snapshot made was closed and removed exactly
 * once. */
static void assert_clean(void)
{
	char msg[512] = "";
	struct tally t = tally();

	assert_string_equal(t.anomaly, "");
	assert_int_equal(t.handles_open, 0);
	assert_false(t.guest_frozen);
	pthread_mutex_lock(&fake.lock);
	for (size_t i = 0; i < fake.nsnap && !msg[0]; i++) {
		const struct snap_rec *r = &fake.snap[i];

		if (r->removed != 1)
			snprintf(msg, sizeof(msg), "snapshot %s/%s removed %u times",
				 r->vg, r->lv, r->removed);
		else if (r->fd >= 0 && fcntl(r->fd, F_GETFD) != -1)
			snprintf(msg, sizeof(msg), "snapshot %s/%s still open (fd %d)",
				 r->vg, r->lv, r->fd);
	}
	pthread_mutex_unlock(&fake.lock);
	if (msg[0])
		fail_msg("%s", msg);
}

/* ---- guests ---------------------------------------------------------------- */

static struct snapfs_lv_list lvs;

static int group_setup(void **state UNUSED)
{
	static const char text[] =
		"  vg0|web-root|10737418240|-wi-ao----|linear|||253|1|\n"
		"  vg0|web-data|21474836480|-wi-ao----|linear|||253|2|\n"
		"  vg0|db|1073741824|-wi-ao----|linear|||253|3|\n"
		"  vg0|a|1073741824|-wi-ao----|linear|||253|4|\n";

	return snapfs_lvm_parse_lvs(text, &lvs) == 0 && lvs.n == 4 ? 0 : -1;
}

static int group_teardown(void **state UNUSED)
{
	snapfs_lvm_list_free(&lvs);
	fake_reset();
	return 0;
}

/* The guests a test made, freed by test_teardown should the test fail
 * before it frees them. */
#define MAX_GUESTS 4
static struct snapfs_guest *live_guests[MAX_GUESTS];

/* A guest as the catalog has it: xml non-NULL for a libvirt guest. */
static struct snapfs_guest *guest_new(const char *name, const char *key, bool libvirt,
				      bool running)
{
	struct snapfs_guest *g = calloc(1, sizeof(*g));
	size_t slot = 0;

	assert_non_null(g);
	while (slot < MAX_GUESTS && live_guests[slot])
		slot++;
	if (slot == MAX_GUESTS) {
		free(g);
		fail_msg("more than %d guests in one test", MAX_GUESTS);
	}
	live_guests[slot] = g;
	g->name = strdup(name);
	g->key = strdup(key);
	assert_non_null(g->name);
	assert_non_null(g->key);
	if (libvirt) {
		char xml[256];

		snprintf(xml, sizeof(xml),
			 "<domain type='kvm'><name>%s</name><uuid>%s</uuid></domain>",
			 name, key);
		g->xml = strdup(xml);
		assert_non_null(g->xml);
	}
	g->running = running;
	snapfs_guests_name(g, 1);
	return g;
}

static void guest_add(struct snapfs_guest *g, const char *vg, const char *lv,
		      const char *target)
{
	const struct snapfs_lv *origin = snapfs_lvm_find(&lvs, vg, lv);
	size_t before = g->ndisks;

	assert_non_null(origin);
	assert_int_equal(snapfs_guest_add_disk(g, origin, target, "raw", 512), 0);
	assert_int_equal(g->ndisks, before + 1);
}

/* "web", a running libvirt guest: vda on vg0/web-root, vdb on vg0/web-data. */
static struct snapfs_guest *guest_web_state(bool running)
{
	struct snapfs_guest *g = guest_new("web", WEB_UUID, true, running);

	guest_add(g, "vg0", "web-root", "vda");
	guest_add(g, "vg0", "web-data", "vdb");
	return g;
}

static struct snapfs_guest *guest_web(void)
{
	return guest_web_state(true);
}

static void guest_free(struct snapfs_guest *g)
{
	for (size_t i = 0; i < MAX_GUESTS; i++)
		if (live_guests[i] == g)
			live_guests[i] = NULL;
	snapfs_guests_free(g, 1);
}

/* What snapset.c does with a web set, the freeze aside. */
#define CREATE_WEB "create vg0/web-root, create vg0/web-data"
#define OPEN_WEB "open vg0/web-root, open vg0/web-data"
#define REMOVE_WEB "remove vg0/web-root, remove vg0/web-data"

static bool started; /* snapset initialised and not shut down */

static void start_uri(enum snapfs_freeze_mode mode, const char *uri)
{
	fake_reset();
	snapfs_snapset_init(&(struct snapfs_snapset_config){
		.cow_size = COW_SIZE,
		.owner = OWNER,
		.freeze = mode,
		.freeze_timeout = FREEZE_TIMEOUT,
		.uri = uri,
	});
	started = true;
}

static void start(enum snapfs_freeze_mode mode)
{
	start_uri(mode, URI);
}

static void stop(void)
{
	snapfs_snapset_shutdown();
	started = false;
	assert_int_equal(snapfs_snapset_count(), 0);
}

/* A test that failed half-way leaves no reaper running into the next. */
static int test_teardown(void **state UNUSED)
{
	if (started)
		snapfs_snapset_shutdown();
	started = false;
	for (size_t i = 0; i < MAX_GUESTS; i++)
		if (live_guests[i])
			guest_free(live_guests[i]);
	fake_reset();
	return 0;
}

/* Acquire g's set with stderr captured: *log gets what snapfs logged
 * meanwhile (valid until the next call). */
static int acquire_logged(const struct snapfs_guest *g, struct snapfs_snapset **s,
			  const char **log)
{
	static char text[1 << 16];
	int saved, cap = memfd_create("log", MFD_CLOEXEC);
	ssize_t n;
	int rc;

	assert_true(cap >= 0);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(cap, STDERR_FILENO) >= 0);
	rc = snapfs_snapset_acquire(g, s);
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	n = pread(cap, text, sizeof(text) - 1, 0);
	close(cap);
	text[n > 0 ? n : 0] = '\0';
	*log = text;
	/* shown as comments, for when a test fails */
	for (const char *line = text; *line; line += strcspn(line, "\n") + 1) {
		printf("# %.*s\n", (int)strcspn(line, "\n"), line);
		if (!line[strcspn(line, "\n")])
			break;
	}
	return rc;
}

static void assert_contains(const char *haystack, const char *needle)
{
	if (!strstr(haystack, needle))
		fail_msg("\"%s\" not in:\n%s", needle, haystack);
}

static void assert_lacks(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle))
		fail_msg("\"%s\" unexpectedly in:\n%s", needle, haystack);
}

/* The "consistency:" word of guest's block in the status view, or "". */
static const char *consistency(const char *report, const char *guest)
{
	static char word[32];
	char head[128];
	const char *block, *end, *line;

	word[0] = '\0';
	snprintf(head, sizeof(head), "guest: %s\n", guest);
	for (block = report; (block = strstr(block, head)); block++)
		if (block == report || block[-1] == '\n')
			break;
	if (!block)
		return word;
	end = strstr(block + 1, "\nguest: ");
	line = strstr(block, "\n  consistency: ");
	if (line && (!end || line < end))
		snprintf(word, sizeof(word), "%.*s", (int)strcspn(line + 16, "\n"),
			 line + 16);
	return word;
}

/* Both of web's disks are held, frozen or not, and the status view says so. */
static void assert_web_held(const struct snapfs_guest *g, bool frozen)
{
	struct snapfs_held h;
	char *report;

	memset(&h, 0xff, sizeof(h));
	assert_int_equal(snapfs_snapset_held(g->dir, "vda.raw", 0, &h), 0);
	assert_int_equal(h.frozen, frozen);
	assert_true(!strncmp(h.snap, "vg0/web-root_", 13));
	memset(&h, 0xff, sizeof(h));
	assert_int_equal(snapfs_snapset_held(g->dir, "vdb.raw", 0, &h), 0);
	assert_int_equal(h.frozen, frozen);
	assert_true(!strncmp(h.snap, "vg0/web-data_", 13));

	report = snapfs_snapset_report();
	assert_non_null(report);
	assert_string_equal(consistency(report, "web"), frozen ? "frozen" : "crash");
	free(report);
}

static void assert_nothing_held(const struct snapfs_guest *g)
{
	struct snapfs_held h;
	char *report;

	assert_int_equal(snapfs_snapset_count(), 0);
	assert_int_equal(snapfs_snapset_held(g->dir, "vda.raw", 0, &h), -ENOENT);
	report = snapfs_snapset_report();
	assert_non_null(report);
	assert_string_equal(report, "");
	free(report);
}

/* Release a web set and check its snapshots go, with nothing else done. */
static void release_web(struct snapfs_snapset *s)
{
	forget_events();
	snapfs_snapset_release(s);
	assert_string_equal(events(), REMOVE_WEB);
}

/* ---- freeze=auto --------------------------------------------------------- */

/* The guest is frozen for the lvcreate calls only: thawed before the
 * snapshots are opened, its handle closed right after the thaw. */
static void test_auto_freeze_ok(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	const char *log;
	struct tally t;

	start(SNAPFS_FREEZE_AUTO);
	assert_int_equal(acquire_logged(g, &s, &log), 0);
	assert_non_null(s);
	assert_string_equal(events(),
			    "prepare, freeze, " CREATE_WEB ", thaw, close, " OPEN_WEB);

	/* prepare got what the mount was given and who the guest is. */
	t = tally();
	assert_false(t.prepare_uri_null);
	assert_string_equal(t.prepare_uri, URI);
	assert_string_equal(t.prepare_guest, "web");
	assert_string_equal(t.prepare_uuid, WEB_UUID);
	assert_int_equal(t.prepare_timeout, FREEZE_TIMEOUT);

	assert_web_held(g, true);
	assert_contains(log, "guest web: filesystems thawed after ");
	assert_lacks(log, "warning:");
	assert_lacks(log, "error:");

	release_web(s);
	stop();
	assert_nothing_held(g);
	assert_clean();
	guest_free(g);
}

/* The agent is not there: a crash-consistent set, with a warning that
 * names the guest and libvirt's words.  Thaw is attempted all the same. */
static void test_auto_freeze_fails(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	const char *log;

	start(SNAPFS_FREEZE_AUTO);
	fake_set(freeze_result, FREEZE_FAILS);
	assert_int_equal(acquire_logged(g, &s, &log), 0);
	assert_string_equal(events(),
			    "prepare, freeze, " CREATE_WEB ", thaw, close, " OPEN_WEB);
	assert_web_held(g, false);
	assert_contains(
		log,
		"snapfs: warning: guest web: freezing its filesystems failed (" AGENT_DOWN
		"); taking a crash-consistent snapshot");
	assert_lacks(log, "THAW FAILED");

	release_web(s);
	stop();
	assert_clean();
	guest_free(g);
}

/* A freeze that timed out may have frozen the guest: the thaw that follows
 * the lvcreate calls is what unfreezes it. */
static void test_auto_freeze_times_out(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	const char *log;

	start(SNAPFS_FREEZE_AUTO);
	fake_set(freeze_result, FREEZE_TIMES_OUT);
	assert_int_equal(acquire_logged(g, &s, &log), 0);
	assert_string_equal(events(),
			    "prepare, freeze, " CREATE_WEB ", thaw, close, " OPEN_WEB);
	assert_false(tally().guest_frozen);
	/* Not known to be frozen: said to be crash-consistent. */
	assert_web_held(g, false);
	assert_contains(
		log, "warning: guest web: freezing its filesystems failed (" AGENT_SLOW);

	release_web(s);
	stop();
	assert_clean();
	guest_free(g);
}

/* libvirt cannot be reached: nothing was frozen, so nothing is thawed. */
static void test_auto_prepare_fails(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	const char *log;

	start(SNAPFS_FREEZE_AUTO);
	fake_set(prepare_rc, -EIO);
	assert_int_equal(acquire_logged(g, &s, &log), 0);
	assert_string_equal(events(), "prepare, " CREATE_WEB ", " OPEN_WEB);
	assert_web_held(g, false);
	assert_contains(log, "warning: guest web: freezing its filesystems failed "
			     "(guest unreachable); taking a crash-consistent snapshot");

	release_web(s);
	stop();
	assert_clean();
	guest_free(g);
}

/* The thaw fails: the set was taken frozen and is kept, but the operator
 * is told loudly, with the guest's name and the command that helps. */
static void test_thaw_fails(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	const char *log;

	start(SNAPFS_FREEZE_AUTO);
	fake_set(thaw_fails, true);
	assert_int_equal(acquire_logged(g, &s, &log), 0);
	assert_string_equal(events(),
			    "prepare, freeze, " CREATE_WEB ", thaw, close, " OPEN_WEB);
	assert_web_held(g, true);
	assert_contains(log, "snapfs: error: guest web: THAW FAILED: " THAW_WORDS);
	assert_contains(log, "virsh domfsthaw web");
	assert_lacks(log, "filesystems thawed");
	assert_true(tally().guest_frozen);

	release_web(s);
	stop();
	/* Left frozen by the fake's failed thaw, as it would be for real. */
	fake_set(guest_frozen, false);
	assert_clean();
	guest_free(g);
}

/* ---- guests that need no freeze --------------------------------------------- */

/* prepare finds the guest paused or shut off (1): it closed its own handle,
 * nothing is frozen or thawed, and even require takes the set. */
static void test_prepare_not_running(void **state UNUSED)
{
	static const enum snapfs_freeze_mode modes[] = { SNAPFS_FREEZE_AUTO,
							 SNAPFS_FREEZE_REQUIRE };

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		struct snapfs_guest *g = guest_web();
		struct snapfs_snapset *s = NULL;
		const char *log;

		start(modes[i]);
		fake_set(prepare_rc, 1);
		assert_int_equal(acquire_logged(g, &s, &log), 0);
		assert_string_equal(events(), "prepare, " CREATE_WEB ", " OPEN_WEB);
		assert_web_held(g, false);
		assert_lacks(log, "warning:");
		assert_lacks(log, "error:");
		release_web(s);
		stop();
		assert_clean();
		guest_free(g);
	}
}

/* freeze=off: libvirt is not asked at all. */
static void test_off_never_prepares(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	const char *log;

	start(SNAPFS_FREEZE_OFF);
	assert_int_equal(acquire_logged(g, &s, &log), 0);
	assert_string_equal(events(), CREATE_WEB ", " OPEN_WEB);
	assert_int_equal(tally().prepare_calls, 0);
	assert_web_held(g, false);
	assert_lacks(log, "warning:");
	release_web(s);
	stop();
	assert_clean();
	guest_free(g);
}

/* The catalog saw the guest shut off: no freeze, not even under require. */
static void test_shut_off_guest_never_prepared(void **state UNUSED)
{
	static const enum snapfs_freeze_mode modes[] = { SNAPFS_FREEZE_AUTO,
							 SNAPFS_FREEZE_REQUIRE };

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		struct snapfs_guest *g = guest_web_state(false);
		struct snapfs_snapset *s = NULL;
		const char *log;

		start(modes[i]);
		assert_int_equal(acquire_logged(g, &s, &log), 0);
		assert_string_equal(events(), CREATE_WEB ", " OPEN_WEB);
		assert_int_equal(tally().prepare_calls, 0);
		assert_web_held(g, false);
		assert_lacks(log, "warning:");
		release_web(s);
		stop();
		assert_clean();
		guest_free(g);
	}
}

/* A guest of the lvm: source (no domain XML) has no agent to ask. */
static void test_lvm_guest_never_prepared(void **state UNUSED)
{
	static const enum snapfs_freeze_mode modes[] = { SNAPFS_FREEZE_AUTO,
							 SNAPFS_FREEZE_REQUIRE };

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		struct snapfs_guest *g = guest_new("db", "vg0/db", false, true);
		struct snapfs_snapset *s = NULL;
		struct snapfs_held h;
		const char *log;
		char *report;

		guest_add(g, "vg0", "db", "disk");
		start(modes[i]);
		assert_int_equal(acquire_logged(g, &s, &log), 0);
		assert_string_equal(events(), "create vg0/db, open vg0/db");
		assert_int_equal(tally().prepare_calls, 0);
		assert_int_equal(snapfs_snapset_held(g->dir, "disk.raw", 0, &h), 0);
		assert_false(h.frozen);
		report = snapfs_snapset_report();
		assert_non_null(report);
		assert_string_equal(consistency(report, "db"), "crash");
		free(report);
		assert_lacks(log, "warning:");
		snapfs_snapset_release(s);
		stop();
		assert_clean();
		guest_free(g);
	}
}

/* ---- freeze=require -------------------------------------------------------- */

static void test_require_freeze_ok(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	const char *log;

	start(SNAPFS_FREEZE_REQUIRE);
	assert_int_equal(acquire_logged(g, &s, &log), 0);
	assert_string_equal(events(),
			    "prepare, freeze, " CREATE_WEB ", thaw, close, " OPEN_WEB);
	assert_web_held(g, true);
	assert_lacks(log, "warning:");
	assert_lacks(log, "error:");
	release_web(s);
	stop();
	assert_clean();
	guest_free(g);
}

/* The freeze fails under require: the open fails with EIO, no snapshot is
 * made, and the attempted freeze is still followed by a thaw and a close.
 */
static void test_require_freeze_fails(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	const char *log;

	start(SNAPFS_FREEZE_REQUIRE);
	fake_set(freeze_result, FREEZE_FAILS);
	assert_int_equal(acquire_logged(g, &s, &log), -EIO);
	assert_int_equal(tally().create_calls, 0);
	assert_contains(
		log,
		"snapfs: error: guest web: freezing its filesystems failed (" AGENT_DOWN
		"); freeze=require, so no snapshot is taken");
	assert_nothing_held(g);
	assert_string_equal(events(), "prepare, freeze, thaw, close");
	stop();
	assert_clean();
	guest_free(g);
}

/* As above, with a freeze that timed out but froze the guest: without the
 * thaw the guest stays frozen after the open failed.
 */
static void test_require_freeze_times_out(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	const char *log;

	start(SNAPFS_FREEZE_REQUIRE);
	fake_set(freeze_result, FREEZE_TIMES_OUT);
	assert_int_equal(acquire_logged(g, &s, &log), -EIO);
	assert_int_equal(tally().create_calls, 0);
	assert_nothing_held(g);
	assert_string_equal(events(), "prepare, freeze, thaw, close");
	assert_false(tally().guest_frozen);
	stop();
	assert_clean();
	guest_free(g);
}

/* The guest cannot be reached under require: EIO, nothing made, and
 * nothing to thaw (prepare closed what it had opened). */
static void test_require_prepare_fails(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	const char *log;

	start(SNAPFS_FREEZE_REQUIRE);
	fake_set(prepare_rc, -EIO);
	assert_int_equal(acquire_logged(g, &s, &log), -EIO);
	assert_string_equal(events(), "prepare");
	assert_int_equal(tally().create_calls, 0);
	assert_contains(log,
			"snapfs: error: guest web: freezing its filesystems failed "
			"(guest unreachable); freeze=require, so no snapshot is taken");
	assert_nothing_held(g);

	/* The next open tries again, and succeeds once the guest answers. */
	fake_set(prepare_rc, 0);
	forget_events();
	assert_int_equal(acquire_logged(g, &s, &log), 0);
	assert_string_equal(events(),
			    "prepare, freeze, " CREATE_WEB ", thaw, close, " OPEN_WEB);
	assert_web_held(g, true);
	release_web(s);
	stop();
	assert_clean();
	guest_free(g);
}

/* ---- failures while frozen ----------------------------------------------- */

/* The second lvcreate fails: the guest is thawed at once, before the first
 * snapshot is removed, and the open fails with lvcreate's errno. */
static void test_create_fails_while_frozen(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	const char *log;

	start(SNAPFS_FREEZE_AUTO);
	fake_set(fail_create_call, 2);
	fake_set(fail_create_err, -ENOSPC);
	assert_int_equal(acquire_logged(g, &s, &log), -ENOSPC);
	assert_string_equal(events(), "prepare, freeze, " CREATE_WEB ", thaw, close, "
				      "remove vg0/web-root");
	assert_int_equal(tally().nsnap, 1);
	assert_contains(log, "guest web disk vdb: snapshot of vg0/web-data failed: ");
	assert_nothing_held(g);
	stop();
	assert_clean();
	guest_free(g);
}

/* The first lvcreate fails: thaw, then nothing to remove. */
static void test_first_create_fails_while_frozen(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	const char *log;

	start(SNAPFS_FREEZE_REQUIRE);
	fake_set(fail_create_call, 1);
	fake_set(fail_create_err, -ENOSPC);
	assert_int_equal(acquire_logged(g, &s, &log), -ENOSPC);
	assert_string_equal(events(),
			    "prepare, freeze, create vg0/web-root, thaw, close");
	assert_int_equal(tally().nsnap, 0);
	assert_nothing_held(g);
	stop();
	assert_clean();
	guest_free(g);
}

/* A snapshot cannot be opened: that happens after the thaw, and undoes the
 * whole set. */
static void test_open_fails_after_thaw(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;
	const char *log;

	start(SNAPFS_FREEZE_AUTO);
	pthread_mutex_lock(&fake.lock);
	snprintf(fake.fail_open_origin, sizeof(fake.fail_open_origin), "web-data");
	pthread_mutex_unlock(&fake.lock);
	fake_set(fail_open_err, -ENXIO);
	assert_int_equal(acquire_logged(g, &s, &log), -ENXIO);
	assert_string_equal(events(), "prepare, freeze, " CREATE_WEB
				      ", thaw, close, " OPEN_WEB ", " REMOVE_WEB);
	assert_nothing_held(g);
	stop();
	assert_clean();
	guest_free(g);
}

/* ---- the set once made --------------------------------------------------- */

/* Opens while the set is held share it: no second freeze. */
static void test_held_set_not_frozen_again(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s1 = NULL, *s2 = NULL;

	start(SNAPFS_FREEZE_AUTO);
	assert_int_equal(snapfs_snapset_acquire(g, &s1), 0);
	forget_events();
	assert_int_equal(snapfs_snapset_acquire(g, &s2), 0);
	assert_ptr_equal(s1, s2);
	assert_string_equal(events(), "");
	assert_int_equal(tally().prepare_calls, 1);
	snapfs_snapset_release(s2);
	assert_web_held(g, true);
	release_web(s1);

	/* A new set after the last release is frozen anew. */
	forget_events();
	assert_int_equal(snapfs_snapset_acquire(g, &s1), 0);
	assert_string_equal(events(),
			    "prepare, freeze, " CREATE_WEB ", thaw, close, " OPEN_WEB);
	release_web(s1);
	stop();
	assert_clean();
	guest_free(g);
}

/* No URI given: prepare gets NULL, libvirt's default. */
static void test_default_uri(void **state UNUSED)
{
	struct snapfs_guest *g = guest_web();
	struct snapfs_snapset *s = NULL;

	start_uri(SNAPFS_FREEZE_AUTO, NULL);
	assert_int_equal(snapfs_snapset_acquire(g, &s), 0);
	assert_true(tally().prepare_uri_null);
	release_web(s);
	stop();
	assert_clean();
	guest_free(g);
}

/* ---- a slow agent holds up only its own guest --------------------------------- */

struct acquirer {
	pthread_t thread;
	const struct snapfs_guest *g;
	struct snapfs_snapset *s;
	int rc;
	bool done;
};

static void *acquire_main(void *arg)
{
	struct acquirer *a = arg;
	int rc = snapfs_snapset_acquire(a->g, &a->s);

	pthread_mutex_lock(&fake.lock);
	a->rc = rc;
	a->done = true;
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	return NULL;
}

static bool freeze_is_blocked(int ms)
{
	struct timespec until;
	bool blocked;

	deadline_in(&until, ms);
	pthread_mutex_lock(&fake.lock);
	while (!fake.freeze_blocked)
		if (pthread_cond_timedwait(&fake.cond, &fake.lock, &until) == ETIMEDOUT)
			break;
	blocked = fake.freeze_blocked;
	pthread_mutex_unlock(&fake.lock);
	return blocked;
}

static bool freeze_still_blocked(void)
{
	bool blocked;

	pthread_mutex_lock(&fake.lock);
	blocked = fake.freeze_blocked;
	pthread_mutex_unlock(&fake.lock);
	return blocked;
}

/* While web's agent takes its time to freeze, another guest's open, the
 * status view and stat of web's files go on: no lock is held across the
 * libvirt call. */
static void test_slow_freeze_blocks_no_one_else(void **state UNUSED)
{
	struct snapfs_guest *web = guest_web();
	struct snapfs_guest *db = guest_new("db", DB_UUID, true, false);
	struct acquirer a = { .g = web };
	struct snapfs_snapset *s = NULL;
	struct snapfs_held h;
	bool others_waited;
	char *report;
	int rc;

	guest_add(db, "vg0", "db", "vda");
	start(SNAPFS_FREEZE_AUTO);
	fake_set(block_freeze, true);
	assert_int_equal(pthread_create(&a.thread, NULL, acquire_main, &a), 0);
	if (!freeze_is_blocked(PROMPT_MS)) {
		pthread_join(a.thread, NULL);
		fail_msg("web's freeze never started");
	}

	rc = snapfs_snapset_acquire(db, &s);
	assert_int_equal(snapfs_snapset_held(web->dir, "vda.raw", 0, &h), -ENOENT);
	report = snapfs_snapset_report();
	/* The fake gives up blocking after 10 s: still blocked means none of
	 * the above waited for it. */
	others_waited = !freeze_still_blocked();

	pthread_mutex_lock(&fake.lock);
	fake.freeze_release = true;
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
	pthread_join(a.thread, NULL);

	assert_false(others_waited);
	assert_int_equal(rc, 0);
	assert_non_null(report);
	assert_string_equal(consistency(report, "db"), "crash");
	assert_string_equal(consistency(report, "web"), "");
	free(report);
	assert_int_equal(a.rc, 0);
	assert_web_held(web, true);
	snapfs_snapset_release(s);
	snapfs_snapset_release(a.s);
	stop();
	assert_clean();
	guest_free(web);
	guest_free(db);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_auto_freeze_ok, test_teardown),
		cmocka_unit_test_teardown(test_auto_freeze_fails, test_teardown),
		cmocka_unit_test_teardown(test_auto_freeze_times_out, test_teardown),
		cmocka_unit_test_teardown(test_auto_prepare_fails, test_teardown),
		cmocka_unit_test_teardown(test_thaw_fails, test_teardown),
		cmocka_unit_test_teardown(test_prepare_not_running, test_teardown),
		cmocka_unit_test_teardown(test_off_never_prepares, test_teardown),
		cmocka_unit_test_teardown(test_shut_off_guest_never_prepared,
					  test_teardown),
		cmocka_unit_test_teardown(test_lvm_guest_never_prepared, test_teardown),
		cmocka_unit_test_teardown(test_require_freeze_ok, test_teardown),
		cmocka_unit_test_teardown(test_require_freeze_fails, test_teardown),
		cmocka_unit_test_teardown(test_require_freeze_times_out, test_teardown),
		cmocka_unit_test_teardown(test_require_prepare_fails, test_teardown),
		cmocka_unit_test_teardown(test_create_fails_while_frozen, test_teardown),
		cmocka_unit_test_teardown(test_first_create_fails_while_frozen,
					  test_teardown),
		cmocka_unit_test_teardown(test_open_fails_after_thaw, test_teardown),
		cmocka_unit_test_teardown(test_held_set_not_frozen_again, test_teardown),
		cmocka_unit_test_teardown(test_default_uri, test_teardown),
		cmocka_unit_test_teardown(test_slow_freeze_blocks_no_one_else,
					  test_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
