/* Safe, distinct and stable file names for untrusted guest names, and the
 * names of image files. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "snapfs.h"

uint64_t snapfs_name_hash(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

const char *snapfs_owner_mark(const char *owner)
{
	size_t plen = strlen(SNAPFS_OWNER_TAG_PREFIX);

	return strncmp(owner, SNAPFS_OWNER_TAG_PREFIX, plen) ? owner : owner + plen;
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if it is not one.
 * Overlong forms, surrogates and code points past U+10FFFF are invalid. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned c = s[0];
	size_t n;
	unsigned cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static bool needs_escape(unsigned char c, bool first)
{
	return c < 0x20 || c == 0x7f || c == '/' || c == '%' ||
	       (first && (c == '.' || c == '-'));
}

void snapfs_name_escape(const char *name, char out[SNAPFS_NAME_MAX + 1])
{
	const unsigned char *s = (const unsigned char *)name;
	/* Room for the whole escaped name, to know whether it needs cutting. */
	char buf[3 * 4096 + 1];
	size_t o = 0;

	if (!*s) {
		strcpy(out, "%00");
		return;
	}
	for (size_t i = 0; s[i] && o + 4 < sizeof(buf);) {
		size_t n = utf8_len(s + i);

		if (n == 1 && needs_escape(s[i], i == 0))
			n = 0;
		if (n == 0) {
			o += (size_t)sprintf(buf + o, "%%%02X", s[i]);
			i++;
			continue;
		}
		memcpy(buf + o, s + i, n);
		o += n;
		i += n;
	}
	buf[o] = '\0';
	if (o <= SNAPFS_NAME_MAX && strlen(name) < 4096) {
		memcpy(out, buf, o + 1);
		return;
	}
	/* Too long: keep a prefix cut at a character boundary, then a hash of
	 * the whole original name so that two long names stay distinct. */
	size_t keep = SNAPFS_NAME_MAX - 17;

	while (keep > 0 && (((unsigned char)buf[keep] & 0xc0) == 0x80 ||
			    (keep >= 1 && buf[keep - 1] == '%') ||
			    (keep >= 2 && buf[keep - 2] == '%')))
		keep--;
	memcpy(out, buf, keep);
	snprintf(out + keep, SNAPFS_NAME_MAX + 1 - keep, "~%016llx",
		 (unsigned long long)snapfs_name_hash(name, strlen(name)));
}

int snapfs_name_image(const char *target, unsigned partno, const char *ext, char *out,
		      size_t outlen)
{
	size_t tl = strlen(target);
	int n;

	if (partno == 0)
		n = snprintf(out, outlen, "%s.%s", target, ext);
	else
		n = snprintf(out, outlen, "%s%s%u.%s", target,
			     tl && target[tl - 1] >= '0' && target[tl - 1] <= '9' ? "p" : "",
			     partno, ext);
	if (n < 0 || (size_t)n >= outlen || n > SNAPFS_NAME_MAX)
		return -ENAMETOOLONG;
	return 0;
}
