/* Small helpers for tests/bench/bench.sh and native.sh, built by them
 * with $CC:
 *
 *   benchtool fill BYTES SEED [DEV]  BYTES of incompressible bytes, on stdout
 *                                    or written to DEV (a device or a file,
 *                                    made if missing) with O_DIRECT
 *   benchtool dmstatus DM_NAME N     the cost of N DM_TABLE_STATUS ioctls,
 *                                    as snapfs makes them after every read
 *   benchtool clone SRC DST [OFF LEN]  DST (made) a reflink clone of SRC, or
 *                                    of LEN bytes of it at OFF (FICLONERANGE)
 *   benchtool clonetime SRC          what a snapshot of a file-backed disk
 *                                    costs without snapfs: an unnamed file
 *                                    in SRC's directory and FICLONE, then
 *                                    its close; prints "CREATE_US CLOSE_US"
 *   benchtool openclose FILE LOG TEXT [TIMEOUT_S]
 *                                    open(FILE) timed, then close(FILE) and
 *                                    the time until LOG gains a line with
 *                                    TEXT; prints "OPEN_US RELEASE_US"
 *
 * fill uses xoshiro256+ (not cryptographic, just incompressible): under TCG
 * it is about ten times faster than /dev/urandom and a hundred times faster
 * than openssl, whose AES has no hardware help on qemu64.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/dm-ioctl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int fill(uint64_t bytes, uint64_t seed, const char *dev)
{
	enum { CHUNK = 1 << 20 };
	static uint64_t buf[CHUNK / 8] __attribute__((aligned(4096)));
	uint64_t s[4];
	int fd = STDOUT_FILENO;

	/* O_DIRECT: the device's page cache stays empty, which also saves the
	 * VM's memory; a pipe or a file system without it gets plain writes. */
	if (dev && (fd = open(dev, O_WRONLY | O_CREAT | O_DIRECT | O_CLOEXEC, 0644)) < 0 &&
	    (fd = open(dev, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) < 0) {
		perror(dev);
		return 1;
	}

	for (int i = 0; i < 4; i++)
		s[i] = splitmix(&seed);
	while (bytes) {
		size_t len = bytes < CHUNK ? (size_t)bytes : CHUNK;

		for (size_t i = 0; i < CHUNK / 8; i++) {
			uint64_t t = s[1] << 17;

			buf[i] = s[0] + s[3];
			s[2] ^= s[0];
			s[3] ^= s[1];
			s[1] ^= s[2];
			s[0] ^= s[3];
			s[2] ^= t;
			s[3] = rotl(s[3], 45);
		}
		for (size_t done = 0; done < len;) {
			ssize_t n = write(fd, (char *)buf + done, len - done);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				perror("benchtool fill: write");
				return 1;
			}
			done += (size_t)n;
		}
		bytes -= len;
	}
	if (dev && (fsync(fd) < 0 || close(fd) < 0)) {
		perror(dev);
		return 1;
	}
	return 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One status ioctl with a buffer of bufsize bytes, as src/dmstatus.c does. */
static int status_once(int ctl, const char *name, char *buf, size_t bufsize)
{
	struct dm_ioctl *io = (struct dm_ioctl *)buf;

	memset(io, 0, sizeof(*io));
	io->version[0] = DM_VERSION_MAJOR;
	io->data_size = (uint32_t)bufsize;
	io->data_start = sizeof(*io);
	io->flags = DM_NOFLUSH_FLAG;
	snprintf(io->name, sizeof(io->name), "%s", name);
	if (ioctl(ctl, DM_TABLE_STATUS, io) < 0)
		return -errno;
	return (io->flags & DM_BUFFER_FULL_FLAG) ? -ENOSPC : 0;
}

static int dmstatus(const char *name, long n)
{
	static char buf[16384] __attribute__((aligned(8)));
	static const size_t sizes[] = { 16384, 1024 };
	int ctl = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);

	if (ctl < 0) {
		perror("benchtool dmstatus: /dev/mapper/control");
		return 1;
	}
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		double t0 = now();

		for (long i = 0; i < n; i++) {
			int rc = status_once(ctl, name, buf, sizes[s]);

			if (rc < 0) {
				fprintf(stderr, "benchtool dmstatus: %s: %s\n", name, strerror(-rc));
				return 1;
			}
		}
		printf("buffer=%zu us_per_call=%.2f\n", sizes[s], (now() - t0) * 1e6 / (double)n);
	}
	close(ctl);
	return 0;
}

static int clone_file(const char *src, const char *dst, const char *off, const char *len)
{
	int in = open(src, O_RDONLY | O_CLOEXEC);
	int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int rc;

	if (in < 0 || out < 0) {
		perror(in < 0 ? src : dst);
		return 1;
	}
	if (off) {
		struct file_clone_range r = {
			.src_fd = in,
			.src_offset = strtoull(off, NULL, 0),
			.src_length = strtoull(len, NULL, 0),
		};

		rc = ioctl(out, FICLONERANGE, &r);
	} else {
		rc = ioctl(out, FICLONE, in);
	}
	if (rc < 0) {
		perror("benchtool clone: FICLONE");
		return 1;
	}
	close(in);
	return close(out) < 0;
}

/* As snapfs makes a clone: the origin read-only, an O_TMPFILE beside it. */
static int clonetime(const char *src)
{
	char dir[4096];
	const char *slash = strrchr(src, '/');
	double t0, t1, t2;
	int in, out;

	if (!slash || (size_t)(slash - src) >= sizeof(dir))
		return 2;
	memcpy(dir, src, (size_t)(slash - src));
	dir[slash == src ? 1 : slash - src] = '\0';
	t0 = now();
	in = open(src, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	out = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (in < 0 || out < 0 || ioctl(out, FICLONE, in) < 0) {
		perror("benchtool clonetime");
		return 1;
	}
	close(in);
	t1 = now();
	close(out);
	t2 = now();
	printf("%.0f %.0f\n", (t1 - t0) * 1e6, (t2 - t1) * 1e6);
	return 0;
}

/* Lines of LOG from byte off on that hold text. */
static int log_has(const char *log, off_t off, const char *text)
{
	static char buf[1 << 16];
	int fd = open(log, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = pread(fd, buf, sizeof(buf) - 1, off);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strstr(buf, text) != NULL;
}

static int openclose(const char *file, const char *log, const char *text, double timeout)
{
	struct stat st;
	double t0, t1, t2;
	int fd;

	t0 = now();
	fd = open(file, O_RDONLY | O_CLOEXEC);
	t1 = now();
	if (fd < 0) {
		perror(file);
		return 1;
	}
	if (stat(log, &st) < 0) {
		perror(log);
		return 1;
	}
	t2 = now();
	close(fd);
	while (!log_has(log, st.st_size, text)) {
		if (now() - t2 > timeout) {
			fprintf(stderr, "benchtool openclose: no \"%s\" in %s after %.0f s\n", text,
				log, timeout);
			return 1;
		}
		usleep(500);
	}
	printf("%.0f %.0f\n", (t1 - t0) * 1e6, (now() - t2) * 1e6);
	return 0;
}

int main(int argc, char **argv)
{
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "fill"))
		return fill(strtoull(argv[2], NULL, 0), strtoull(argv[3], NULL, 0),
			    argc == 5 ? argv[4] : NULL);
	if (argc == 4 && !strcmp(argv[1], "dmstatus"))
		return dmstatus(argv[2], strtol(argv[3], NULL, 0));
	if ((argc == 4 || argc == 6) && !strcmp(argv[1], "clone"))
		return clone_file(argv[2], argv[3], argc == 6 ? argv[4] : NULL, argc == 6 ? argv[5] : NULL);
	if (argc == 3 && !strcmp(argv[1], "clonetime"))
		return clonetime(argv[2]);
	if ((argc == 5 || argc == 6) && !strcmp(argv[1], "openclose"))
		return openclose(argv[2], argv[3], argv[4], argc == 6 ? atof(argv[5]) : 60);
	fprintf(stderr,
		"usage: %s fill BYTES SEED [DEV] | dmstatus DM_NAME N | clone SRC DST [OFF LEN]\n"
		"       | clonetime SRC | openclose FILE LOG TEXT [TIMEOUT_S]\n",
		argv[0]);
	return 2;
}
