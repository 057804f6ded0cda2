/* The plain driver of the fuzz targets: no libFuzzer, no clang.
 *
 *	replay-partitions [FILE|DIR]...
 *		run the target over each file (a directory: each file in it);
 *		without arguments, over $srcdir/tests/fuzz/corpus (make check)
 *	replay-partitions --pack SECTOR_SIZE IMAGE OUTPUT
 *		write the input that describes a disk image (make-corpus.sh)
 *
 * replay-qcow2 is the same over tests/fuzz/corpus-qcow2, and packs with
 * --pack DEVICE_MIB IMAGE OUTPUT (the size of the device that holds the
 * image, 0 for the image's own).
 *
 * A broken invariant aborts, so a failing replay is a crash with the
 * file's name just above it.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

/* The corpus make check replays, and what --pack takes (-D in Makefile.am). */
#ifndef FUZZ_CORPUS
#define FUZZ_CORPUS "tests/fuzz/corpus"
#endif
#ifndef FUZZ_PACK_ARG
#define FUZZ_PACK_ARG "SECTOR_SIZE"
#endif

static int read_file(const char *path, uint8_t **data, size_t *len)
{
	FILE *f;
	long size;
	int rc = -1;

	*data = NULL;
	errno = 0;
	f = fopen(path, "rb");
	if (!f)
		goto out;
	if (fseek(f, 0, SEEK_END) < 0 || (size = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) < 0)
		goto out;
	*data = malloc(size ? (size_t)size : 1);
	if (!*data || fread(*data, 1, (size_t)size, f) != (size_t)size)
		goto out;
	*len = (size_t)size;
	rc = 0;
out:
	if (rc < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno ? errno : EIO));
		free(*data);
		*data = NULL;
	}
	if (f)
		fclose(f);
	return rc;
}

static int replay_file(const char *path)
{
	uint8_t *data;
	size_t len;

	if (read_file(path, &data, &len) < 0)
		return -1;
	fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
	LLVMFuzzerTestOneInput(data, len);
	free(data);
	return 0;
}

static int skip_dots(const struct dirent *e)
{
	return e->d_name[0] != '.';
}

/* Returns the number of files replayed, or -1. */
static int replay(const char *path)
{
	struct dirent **names;
	struct stat st;
	int n, done = 0, rc = 0;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return replay_file(path) < 0 ? -1 : 1;
	n = scandir(path, &names, skip_dots, alphasort);
	if (n < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char *file;

		if (!rc && asprintf(&file, "%s/%s", path, names[i]->d_name) >= 0) {
			if (replay_file(file) < 0)
				rc = -1;
			else
				done++;
			free(file);
		}
		free(names[i]);
	}
	free(names);
	return rc < 0 ? -1 : done;
}

static int pack(const char *arg, const char *image_path, const char *out_path)
{
	uint8_t *out = NULL;
	size_t out_len;
	struct stat st;
	FILE *f;
	int fd, r;

	fd = open(image_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "replay: %s: %s\n", image_path, strerror(errno));
		return 1;
	}
	r = fuzz_pack(fd, (uint64_t)st.st_size, (unsigned)strtoul(arg, NULL, 10), &out,
		      &out_len);
	close(fd);
	if (r < 0) {
		fprintf(stderr, "replay: cannot pack %s with %s %s: %s\n", image_path,
			FUZZ_PACK_ARG, arg, strerror(-r));
		return 1;
	}
	f = fopen(out_path, "wb");
	if (!f || fwrite(out, 1, out_len, f) != out_len || fclose(f) != 0) {
		fprintf(stderr, "replay: %s: %s\n", out_path, strerror(errno));
		free(out);
		return 1;
	}
	free(out);
	return 0;
}

int main(int argc, char **argv)
{
	int total = 0;

	if (argc == 5 && !strcmp(argv[1], "--pack"))
		return pack(argv[2], argv[3], argv[4]);
	if (argc > 1 && argv[1][0] == '-') {
		fprintf(stderr,
			"usage: %s [FILE|DIR]...\n"
			"       %s --pack " FUZZ_PACK_ARG " IMAGE OUTPUT\n",
			argv[0], argv[0]);
		return 2;
	}
	if (argc == 1) {
		const char *srcdir = getenv("srcdir");
		char *corpus;
		int n;

		if (asprintf(&corpus, "%s/" FUZZ_CORPUS, srcdir ? srcdir : ".") < 0)
			return 99;
		n = replay(corpus);
		free(corpus);
		if (n <= 0) {
			fprintf(stderr, "replay: no corpus replayed\n");
			return 99; /* automake: a hard error */
		}
		total = n;
	}
	for (int i = 1; i < argc; i++) {
		int n = replay(argv[i]);

		if (n < 0)
			return 1;
		total += n;
	}
	fprintf(stderr, "replay: %d input(s), no invariant broken\n", total);
	return 0;
}
