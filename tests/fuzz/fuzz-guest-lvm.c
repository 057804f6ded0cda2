/* Fuzz target for the guest LVM2 reader (src/guest-lvm*.c, src/lvm-text.c):
 * up to four devices whose every byte comes from the fuzzer, as every byte
 * of a guest's PVs comes from the guest.
 *
 * An input is a list of chunks, to its end; each places bytes on a sparse
 * device in memory:
 *
 *	byte 0      the device: bits 0-1 (vda1 to vda4)
 *	bytes 1-4   where, in 512-byte units
 *	bytes 5-6   length in bytes (cut to what the input has left); 0 makes
 *	            the device at least that big, without bytes
 *	bytes 7-    the bytes (later chunks win)
 *
 * A device is as big as its chunks reach (at most 64 MiB); devices no chunk
 * names are not there.  Numbers are little-endian.  replay-guest-lvm --pack
 * DEVICE IMAGE OUTPUT (fuzz_pack()) makes the chunks of one PV image for
 * device DEVICE: its size, then its sectors that are not zeros.  The packs
 * of several PVs, concatenated, are one input.
 *
 * Each input is scanned; every LV served is mapped from its start to its
 * end (a bounded number of steps), and at its last byte, and each piece
 * must fall inside its device and read.  FUZZ_DUMP=1 prints what was read
 * (VGs, LVs, segments), to check a corpus against what LVM says.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "snapfs.h"

#define UNIT 512u
#define NDEVS 4
#define CHUNK_HEADER 7
#define CHUNK_MAX 0xffffu
#define DEVICE_MAX (64ull << 20)
#define MAP_STEPS 256

/* ---- the devices ----------------------------------------------------------------- */

struct chunk {
	unsigned dev;
	uint64_t off;
	const uint8_t *bytes;
	size_t len;
};

struct input {
	struct chunk *chunk;
	size_t n;
	uint64_t size[NDEVS];
	bool present[NDEVS];
};

struct device {
	const struct input *in;
	unsigned index;
	uint64_t size;
};

static void decode(const uint8_t *data, size_t len, struct input *in)
{
	size_t pos = 0;

	memset(in, 0, sizeof(*in));
	in->chunk = malloc((len / CHUNK_HEADER + 1) * sizeof(*in->chunk));
	CHECK(in->chunk);
	while (len - pos >= CHUNK_HEADER) {
		struct chunk *c = &in->chunk[in->n++];
		uint64_t end;

		c->dev = data[pos] & (NDEVS - 1);
		c->off = (uint64_t)get_le32(data + pos + 1) * UNIT;
		c->len = data[pos + 5] | data[pos + 6] << 8;
		c->bytes = data + pos + CHUNK_HEADER;
		pos += CHUNK_HEADER;
		if (c->len > len - pos)
			c->len = len - pos;
		pos += c->len;
		end = c->off + c->len;
		in->present[c->dev] = true;
		if (end > in->size[c->dev])
			in->size[c->dev] = end > DEVICE_MAX ? DEVICE_MAX : end;
	}
}

static int device_read(void *ctx, void *buf, size_t len, uint64_t off)
{
	const struct device *d = ctx;

	CHECK(len > 0); /* the reader asks for bytes, or does not ask */
	CHECK(off <= d->size && len <= d->size - off);
	memset(buf, 0, len);
	for (size_t i = 0; i < d->in->n; i++) {
		const struct chunk *c = &d->in->chunk[i];

		if (c->dev != d->index)
			continue;
		fuzz_overlay(buf, off, len, c->off, c->bytes, c->len);
	}
	return 0;
}

/* ---- packing a PV image into chunks ------------------------------------------------ */

struct packer {
	uint8_t *out;
	size_t len, cap;
	unsigned dev;
};

static int emit(struct packer *pk, uint64_t off, const uint8_t *bytes, size_t len)
{
	if (off % UNIT || off / UNIT > UINT32_MAX || len > CHUNK_MAX)
		return -E2BIG;
	if (fuzz_grow(&pk->out, &pk->cap, pk->len + CHUNK_HEADER + len))
		return -ENOMEM;
	pk->out[pk->len] = (uint8_t)pk->dev;
	put_le32(pk->out + pk->len + 1, (uint32_t)(off / UNIT));
	pk->out[pk->len + 5] = len & 0xff;
	pk->out[pk->len + 6] = len >> 8;
	if (len)
		memcpy(pk->out + pk->len + CHUNK_HEADER, bytes, len);
	pk->len += CHUNK_HEADER + len;
	return 0;
}

int fuzz_pack(int fd, uint64_t size, unsigned dev, uint8_t **out, size_t *out_len)
{
	struct packer pk = { NULL, 0, 0, dev };
	uint8_t *img;
	int r;

	*out = NULL;
	if (dev >= NDEVS || size % UNIT || size > DEVICE_MAX)
		return -EINVAL;
	img = malloc(size ? size : 1);
	if (!img)
		return -ENOMEM;
	r = pread(fd, img, size, 0) == (ssize_t)size ? emit(&pk, size, NULL, 0) : -EIO;
	for (uint64_t pos = 0, start; !r && pos < size;) {
		if (zero(img + pos, UNIT)) {
			pos += UNIT;
			continue;
		}
		start = pos;
		while (pos < size && pos - start + UNIT <= CHUNK_MAX &&
		       !zero(img + pos, UNIT))
			pos += UNIT;
		r = emit(&pk, start, img + start, pos - start);
	}
	free(img);
	if (r) {
		free(pk.out);
		return r;
	}
	*out = pk.out;
	*out_len = pk.len;
	return 0;
}

/* ---- the target ------------------------------------------------------------------ */

static void check_text(const char *s, size_t max)
{
	CHECK(s);
	CHECK(strlen(s) < max);
}

/* Map lv from 0 on, piece by piece, and at its last byte. */
static void check_lv(const struct snapfs_glvm_lv *lv, const struct snapfs_glvm_dev *dev,
		     size_t ndevs)
{
	uint64_t off = 0, dev_off, len;
	unsigned d;
	uint8_t byte;
	int r;

	CHECK(lv->name && lv->name[0]);
	check_text(lv->segtype, sizeof(lv->segtype));
	if (!lv->served) {
		CHECK(lv->reason[0]);
		CHECK(snapfs_glvm_map(lv, 0, &d, &dev_off, &len) == -EOPNOTSUPP);
		return;
	}
	CHECK(!lv->reason[0] && lv->nsegs > 0 && lv->size > 0 && lv->size <= INT64_MAX);
	for (int step = 0; step <= MAP_STEPS; step++) {
		if (step == MAP_STEPS)
			off = lv->size - 1;
		else if (off >= lv->size)
			break;
		r = snapfs_glvm_map(lv, off, &d, &dev_off, &len);
		CHECK(r == 0);
		CHECK(d < ndevs && len > 0 && len <= lv->size - off);
		CHECK(dev_off <= dev[d].size && len <= dev[d].size - dev_off);
		CHECK(dev[d].read(dev[d].ctx, &byte, 1, dev_off) == 0);
		CHECK(dev[d].read(dev[d].ctx, &byte, 1, dev_off + len - 1) == 0);
		off += len;
	}
	CHECK(snapfs_glvm_map(lv, lv->size, &d, &dev_off, &len) == -ENXIO);
}

static void dump(const struct snapfs_glvm *g)
{
	for (size_t i = 0; i < g->nvgs; i++) {
		const struct snapfs_glvm_vg *vg = &g->vg[i];

		printf("VG %s %s seqno %" PRIu64 " extent %" PRIu64 " %s\n", vg->name,
		       vg->uuid, vg->seqno, vg->extent_size,
		       vg->served ? "served" : vg->reason);
		for (size_t j = 0; j < vg->nlvs; j++) {
			const struct snapfs_glvm_lv *lv = &vg->lv[j];

			printf("  LV %s %s %" PRIu64 " %s\n", lv->name, lv->segtype,
			       lv->size, lv->served ? "served" : lv->reason);
			for (size_t k = 0; k < lv->nsegs; k++) {
				const struct snapfs_glvm_seg *s = &lv->seg[k];

				printf("    at %" PRIu64 " len %" PRIu64
				       " stripe %" PRIu64 ":",
				       s->start, s->len, s->stripe_size);
				for (unsigned a = 0; a < s->nstripes; a++)
					printf(" dev%u@%" PRIu64, s->area[a].dev,
					       s->area[a].start);
				printf("\n");
			}
		}
	}
}

static void run(const struct input *in)
{
	static const char *const names[NDEVS] = { "vda1", "vda2", "vda3", "vda4" };
	struct snapfs_glvm_dev dev[NDEVS];
	struct device ctx[NDEVS];
	struct snapfs_glvm *g;
	size_t n = 0;
	int r;

	for (unsigned i = 0; i < NDEVS; i++) {
		if (!in->present[i])
			continue;
		ctx[n] = (struct device){ in, i, in->size[i] };
		dev[n] = (struct snapfs_glvm_dev){ device_read, &ctx[n], in->size[i],
						   names[i] };
		n++;
	}
	r = snapfs_glvm_scan("fuzz", dev, n, &g);
	CHECK(r == 0 || r == -ENOMEM);
	if (r)
		return;
	if (getenv("FUZZ_DUMP"))
		dump(g);
	for (size_t i = 0; i < g->nvgs; i++) {
		const struct snapfs_glvm_vg *vg = &g->vg[i];

		CHECK(vg->name && vg->name[0] && strlen(vg->uuid) == 32);
		CHECK(vg->served ? !vg->reason[0] : vg->reason[0] && !vg->nlvs);
		for (size_t j = 0; j < vg->nlvs; j++) {
			CHECK(vg->lv[j].vg == vg->name);
			check_lv(&vg->lv[j], dev, n);
		}
	}
	snapfs_glvm_free(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in;

	decode(data, size, &in);
	run(&in);
	free(in.chunk);
	return 0;
}
