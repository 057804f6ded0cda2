/* Unit tests for src/names.c: escaping untrusted guest names into file
 * names, image file names, and the FNV-1a hash behind stable suffixes. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "snapfs.h"

#define UNUSED __attribute__((unused))
/* What a cut name ends with: '~' and 16 hex digits of the whole name's hash. */
#define SUFFIX_LEN 17

/* ---- helpers: an independent reader of what snapfs_name_escape writes ---- */

/* Length of the well-formed UTF-8 sequence at s, or 0.  Written from the
 * table of well-formed byte sequences in the Unicode standard (3.9, table
 * 3-7), not from names.c's code-point arithmetic. */
static size_t utf8_wellformed(const unsigned char *s)
{
	unsigned char c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return s[1] >= 0x80 && s[1] <= 0xbf ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;

		return s[1] >= lo && s[1] <= hi && s[2] >= 0x80 && s[2] <= 0xbf ? 3 : 0;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;

		if (s[1] < lo || s[1] > hi || s[2] < 0x80 || s[2] > 0xbf)
			return 0;
		return s[3] >= 0x80 && s[3] <= 0xbf ? 4 : 0;
	}
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1; /* lower case is not what escaping writes */
}

/* Decode len bytes of escaped text into out; fail the test on anything that
 * escaping cannot have written (a stray '%', a control byte, a '/', broken
 * UTF-8).  Returns the decoded length. */
static size_t unescape(const char *in, size_t len, char *out)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;

	for (size_t i = 0; i < len;) {
		if (s[i] == '%') {
			if (i + 2 >= len)
				fail_msg("truncated escape at %zu in \"%s\"", i, in);
			int hi = hexval((char)s[i + 1]), lo = hexval((char)s[i + 2]);

			if (hi < 0 || lo < 0)
				fail_msg("bad escape at %zu in \"%s\"", i, in);
			out[o++] = (char)(hi << 4 | lo);
			i += 3;
			continue;
		}
		if (s[i] < 0x20 || s[i] == 0x7f || s[i] == '/')
			fail_msg("unescaped byte 0x%02x at %zu in \"%s\"", s[i], i, in);
		size_t n = utf8_wellformed(s + i);

		if (n == 0 || i + n > len)
			fail_msg("broken UTF-8 at %zu in \"%s\"", i, in);
		memcpy(out + o, s + i, n);
		o += n;
		i += n;
	}
	return o;
}

/* What every result must be: a usable, harmless directory entry. */
static void assert_safe(const char *out)
{
	size_t len = strlen(out);

	assert_true(len >= 1 && len <= SNAPFS_NAME_MAX);
	assert_null(strchr(out, '/'));
	assert_true(out[0] != '.' && out[0] != '-');
	assert_string_not_equal(out, ".");
	assert_string_not_equal(out, "..");
}

static void escape(const char *name, char out[SNAPFS_NAME_MAX + 1])
{
	snapfs_name_escape(name, out);
	assert_safe(out);
}

static void assert_escapes_to(const char *name, const char *expected)
{
	char out[SNAPFS_NAME_MAX + 1];

	escape(name, out);
	assert_string_equal(out, expected);
}

/* A name that fits escapes one-to-one: decoding gives the name back. */
static void assert_round_trip(const char *name)
{
	char out[SNAPFS_NAME_MAX + 1];
	char back[SNAPFS_NAME_MAX + 1];
	size_t n;

	escape(name, out);
	if (!*name) {
		assert_string_equal(out, "%00");
		return;
	}
	n = unescape(out, strlen(out), back);
	assert_int_equal(n, strlen(name));
	assert_memory_equal(back, name, n);
}

static char *repeat(const char *unit, size_t times, const char *prefix)
{
	size_t ul = strlen(unit), pl = strlen(prefix);
	char *s = malloc(pl + ul * times + 1);

	assert_non_null(s);
	memcpy(s, prefix, pl);
	for (size_t i = 0; i < times; i++)
		memcpy(s + pl + i * ul, unit, ul);
	s[pl + ul * times] = '\0';
	return s;
}

/* A name too long for one directory entry: a prefix that decodes to a prefix
 * of the name, cut at a character boundary as late as it can be, then '~'
 * and the hash of the whole name as 16 hex digits. */
static void assert_cut_well(const char *name, const char *out)
{
	char back[SNAPFS_NAME_MAX + 1];
	char suffix[SUFFIX_LEN + 1];
	size_t len = strlen(out), keep, n;

	assert_safe(out);
	assert_true(len > SUFFIX_LEN);
	/* At most 3 bytes are given up to stay on a boundary (a 4-byte UTF-8
	 * character; an escape gives up 2). */
	assert_true(len >= SNAPFS_NAME_MAX - 3);
	keep = len - SUFFIX_LEN;
	snprintf(suffix, sizeof(suffix), "~%016llx",
		 (unsigned long long)snapfs_name_hash(name, strlen(name)));
	assert_string_equal(out + keep, suffix);
	n = unescape(out, keep, back);
	assert_true(n <= strlen(name));
	assert_memory_equal(back, name, n);
}

/* ---- snapfs_name_escape: names that need nothing ------------------------- */

static void test_plain_names_unchanged(void **state UNUSED)
{
	static const char *const names[] = {
		"vda",
		"web01",
		"win2k22-dc",
		"a.b-c_d+e",
		"a b",			    /* a space is harmless */
		"g\xc3\xa4st",		    /* "gäst" */
		"\xe6\x97\xa5\xe6\x9c\xac", /* "日本", 3-byte UTF-8 */
		"100 \xe2\x82\xac",	    /* "100 €" */
		"\xf0\x9f\x98\x80",	    /* U+1F600, 4-byte UTF-8 */
		"\xf4\x8f\xbf\xbf",	    /* U+10FFFF, the last code point */
		"\xee\x80\x80",		    /* U+E000, just past the surrogates */
		"\xc2\x80",		    /* U+0080, the first 2-byte one */
		"~tilde",
		"a.",
		"a..",
		"x-",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		assert_escapes_to(names[i], names[i]);
}

/* ---- bytes that are escaped ---------------------------------------------- */

static void test_special_bytes_escaped(void **state UNUSED)
{
	assert_escapes_to("a/b", "a%2Fb");
	assert_escapes_to("/", "%2F");
	assert_escapes_to("../../etc", "%2E.%2F..%2Fetc");
	assert_escapes_to("50%", "50%25");
	assert_escapes_to("%41", "%2541");
	assert_escapes_to("a\nb", "a%0Ab");
	assert_escapes_to("tab\there", "tab%09here");
	assert_escapes_to("\x01", "%01");
	assert_escapes_to("\x1fx", "%1Fx");
	assert_escapes_to("del\x7f", "del%7F");
	assert_escapes_to("\r\n", "%0D%0A");
	assert_escapes_to("\x1b[31mred", "%1B[31mred");
}

static void test_leading_dot_and_dash(void **state UNUSED)
{
	assert_escapes_to(".", "%2E");
	assert_escapes_to("..", "%2E.");
	assert_escapes_to("...", "%2E..");
	assert_escapes_to(".hidden", "%2Ehidden");
	assert_escapes_to("-rf", "%2Drf");
	assert_escapes_to("--help", "%2D-help");
	assert_escapes_to("-", "%2D");
	/* Inner ones stay. */
	assert_escapes_to("a.b", "a.b");
	assert_escapes_to("a-b", "a-b");
	assert_escapes_to("a..b--c", "a..b--c");
}

static void test_invalid_utf8_escaped(void **state UNUSED)
{
	assert_escapes_to("\xff", "%FF");
	assert_escapes_to("a\xfez", "a%FEz");
	assert_escapes_to("\x80", "%80");		       /* lone continuation */
	assert_escapes_to("\xc0\x80", "%C0%80");	       /* overlong NUL */
	assert_escapes_to("\xc1\xbf", "%C1%BF");	       /* overlong 2-byte */
	assert_escapes_to("\xe0\x80\xaf", "%E0%80%AF");	       /* overlong '/' */
	assert_escapes_to("\xf0\x80\x80\xaf", "%F0%80%80%AF"); /* overlong, 4 bytes */
	assert_escapes_to("\xed\xa0\x80", "%ED%A0%80");	       /* surrogate U+D800 */
	assert_escapes_to("\xed\xbf\xbf", "%ED%BF%BF");	       /* surrogate U+DFFF */
	assert_escapes_to("\xf4\x90\x80\x80", "%F4%90%80%80"); /* past U+10FFFF */
	assert_escapes_to("\xf5\x80\x80\x80", "%F5%80%80%80");
	/* Truncated sequences, at the end and before an ASCII byte. */
	assert_escapes_to("\xc3", "%C3");
	assert_escapes_to("\xc3Z", "%C3Z");
	assert_escapes_to("\xe2\x82", "%E2%82");
	assert_escapes_to("\xe2\x82x", "%E2%82x");
	assert_escapes_to("\xf0\x9f\x98", "%F0%9F%98");
	/* A valid character next to a broken one keeps its bytes. */
	assert_escapes_to("g\xc3\xa4\xff", "g\xc3\xa4%FF");
	assert_escapes_to("\xc3\xc3\xa4", "%C3\xc3\xa4");
}

static void test_empty_name(void **state UNUSED)
{
	char out[SNAPFS_NAME_MAX + 1];
	char other[SNAPFS_NAME_MAX + 1];

	escape("", out);
	assert_true(strlen(out) > 0);
	/* And no other name gives the same. */
	escape("%00", other);
	assert_string_not_equal(out, other);
	escape("\x01", other);
	assert_string_not_equal(out, other);
}

/* ---- one-to-one ---------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_escape_is_one_to_one(void **state UNUSED)
{
	/* clang-format off */
	static const char *const names[] = {
		"", "a", "a/", "a%2F", "a%2f", "a%", "%", "%25", "%2525", ".", "..",
		"%2E", "%2E.", ".%2E", "-", "%2D", "a\x01", "a%01", "\xff", "%FF", "%ff",
		"\xc3\xa4", "%C3%A4", "\xc3", "%C3", "g\xc3\xa4st", "g%C3%A4st", "%00",
		" ", "\t", "%09", "x.y", "x%2Ey", "/", "//", "%2F", "%2F%2F", "-a",
		"%2Da", "a-", ".a", "a.", "\xed\xa0\x80", "%ED%A0%80", "\xc0\x80", "~",
		"a~0123456789abcdef",
	};
	/* clang-format on */
	size_t n = sizeof(names) / sizeof(names[0]);
	char **outs = calloc(n, sizeof(*outs));

	assert_non_null(outs);
	for (size_t i = 0; i < n; i++) {
		outs[i] = calloc(1, SNAPFS_NAME_MAX + 1);
		assert_non_null(outs[i]);
		escape(names[i], outs[i]);
		assert_round_trip(names[i]);
	}
	qsort(outs, n, sizeof(*outs), cmp_str);
	for (size_t i = 1; i < n; i++)
		if (!strcmp(outs[i - 1], outs[i]))
			fail_msg("two names escape to \"%s\"", outs[i]);
	for (size_t i = 0; i < n; i++)
		free(outs[i]);
	free(outs);
}

/* Random names over the bytes that matter: each escapes to a safe name that
 * decodes back to it, which makes escaping one-to-one on them. */
static void test_escape_round_trips_random_names(void **state UNUSED)
{
	static const unsigned char alphabet[] = {
		'a',  'Z',  '0',  '.',	'-',  '/',  '%',  '~',	' ',  0x01, 0x1f,
		0x7f, 0x80, 0xbf, 0xc2, 0xc3, 0xa4, 0xe2, 0x82, 0xac, 0xed, 0xa0,
		0xf0, 0x9f, 0x98, 0xf4, 0x90, 0x8f, 0xff, 0xc0, 0xe0,
	};
	unsigned seed = 12345;

	for (int iter = 0; iter < 5000; iter++) {
		char name[64];
		size_t len;

		seed = seed * 1103515245u + 12345u;
		len = (seed >> 16) % 40;
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			name[i] = (char)alphabet[(seed >> 16) % sizeof(alphabet)];
		}
		name[len] = '\0';
		assert_round_trip(name);
	}
}

/* ---- names too long for a directory entry -------------------------------- */

static void test_long_name_cut_with_hash(void **state UNUSED)
{
	char out[SNAPFS_NAME_MAX + 1];
	char *name = repeat("a", 300, "");

	escape(name, out);
	assert_true(strlen(out) <= SNAPFS_NAME_MAX);
	assert_cut_well(name, out);
	assert_int_equal(out[strlen(out) - SUFFIX_LEN], '~');
	for (size_t i = strlen(out) - 16; i < strlen(out); i++)
		assert_non_null(strchr("0123456789abcdef", out[i]));
	/* Stable: the same name gives the same result. */
	{
		char again[SNAPFS_NAME_MAX + 1];

		escape(name, again);
		assert_string_equal(out, again);
	}
	free(name);
}

static void test_long_names_sharing_prefix_stay_distinct(void **state UNUSED)
{
	char out1[SNAPFS_NAME_MAX + 1], out2[SNAPFS_NAME_MAX + 1];
	char *prefix = repeat("p", 250, "");
	char *n1 = repeat("1", 50, prefix);
	char *n2 = repeat("2", 50, prefix);

	escape(n1, out1);
	escape(n2, out2);
	assert_cut_well(n1, out1);
	assert_cut_well(n2, out2);
	assert_string_not_equal(out1, out2);
	free(n1);
	free(n2);

	/* Differing only in the last byte of 5000. */
	n1 = repeat("/", 4999, "");
	n2 = repeat("/", 4999, "");
	n1 = realloc(n1, 5001);
	n2 = realloc(n2, 5001);
	assert_non_null(n1);
	assert_non_null(n2);
	strcat(n1, "x");
	strcat(n2, "y");
	escape(n1, out1);
	escape(n2, out2);
	assert_cut_well(n1, out1);
	assert_cut_well(n2, out2);
	assert_string_not_equal(out1, out2);
	free(n1);
	free(n2);
	free(prefix);
}

static void test_length_boundary(void **state UNUSED)
{
	char out[SNAPFS_NAME_MAX + 1];
	char *name = repeat("b", SNAPFS_NAME_MAX, "");

	/* Exactly 255 bytes: kept whole. */
	escape(name, out);
	assert_string_equal(out, name);
	free(name);

	/* 256: cut. */
	name = repeat("b", SNAPFS_NAME_MAX + 1, "");
	escape(name, out);
	assert_cut_well(name, out);
	free(name);

	/* Short, but over 255 once escaped: cut. */
	name = repeat("/", 100, "");
	escape(name, out);
	assert_cut_well(name, out);
	free(name);

	/* 85 escapes are exactly 255 bytes: kept whole. */
	name = repeat("%", 85, "");
	escape(name, out);
	assert_int_equal(strlen(out), 255);
	assert_round_trip(name);
	free(name);
}

/* The cut lands on every offset inside an escape and inside a multibyte
 * character: the prefix still decodes. */
static void test_cut_never_splits_a_character(void **state UNUSED)
{
	static const char *const units[] = {
		"/",		    /* %2F */
		"\xff",		    /* %FF */
		"\x01",		    /* %01 */
		"\xc3\xa4",	    /* ä, 2 bytes */
		"\xe2\x82\xac",	    /* €, 3 bytes */
		"\xf0\x9f\x98\x80", /* 4 bytes */
		"\xc3\xa4/",	    /* mixed */
		"\xf0\x9f\x98\x80%",
	};

	for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
		for (size_t shift = 0; shift < 5; shift++) {
			char out[SNAPFS_NAME_MAX + 1];
			char prefix[8];
			char *name;

			memset(prefix, 'a', shift);
			prefix[shift] = '\0';
			name = repeat(units[u], 300 / strlen(units[u]) + 1, prefix);
			escape(name, out);
			assert_cut_well(name, out);
			free(name);
		}
	}
}

/* At most SNAPFS_NAME_MAX + 1 bytes are written, whatever the name. */
static void test_writes_at_most_256_bytes(void **state UNUSED)
{
	static const char *const units[] = { "a", "/", "\xe2\x82\xac", "\xff" };

	for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
		char buf[SNAPFS_NAME_MAX + 1 + 64];
		char *name = repeat(units[u], 2000, "");

		memset(buf, 'Z', sizeof(buf));
		snapfs_name_escape(name, buf);
		for (size_t i = SNAPFS_NAME_MAX + 1; i < sizeof(buf); i++)
			assert_int_equal(buf[i], 'Z');
		/* One NUL, at the end: none in the middle. */
		assert_true(memchr(buf, '\0', SNAPFS_NAME_MAX + 1) != NULL);
		assert_true(strlen(buf) <= SNAPFS_NAME_MAX);
		assert_cut_well(name, buf);
		free(name);
	}
}

/* ---- snapfs_name_image --------------------------------------------------- */

static void assert_image(const char *target, unsigned partno, const char *ext,
			 const char *expected)
{
	char out[SNAPFS_NAME_MAX + 1];

	memset(out, 'Z', sizeof(out));
	assert_int_equal(snapfs_name_image(target, partno, ext, out, sizeof(out)), 0);
	assert_string_equal(out, expected);
}

static void test_image_names(void **state UNUSED)
{
	assert_image("vda", 0, "raw", "vda.raw");
	assert_image("vda", 1, "raw", "vda1.raw");
	assert_image("sda", 12, "raw", "sda12.raw");
	assert_image("nvme0n1", 1, "raw", "nvme0n1p1.raw");
	assert_image("nvme0n1", 0, "raw", "nvme0n1.raw");
	assert_image("mmcblk0", 3, "raw", "mmcblk0p3.raw");
	assert_image("vdb", 0, "qcow2", "vdb.qcow2");
	assert_image("hdc", 5, "raw", "hdc5.raw");
}

static void test_image_name_too_long(void **state UNUSED)
{
	char out[SNAPFS_NAME_MAX + 1];
	char big[600];
	char *t;

	/* 251 + ".raw" = 255: fits. */
	t = repeat("t", 251, "");
	assert_int_equal(snapfs_name_image(t, 0, "raw", out, sizeof(out)), 0);
	assert_int_equal(strlen(out), 255);
	free(t);

	/* 252 + ".raw" = 256: does not. */
	t = repeat("t", 252, "");
	assert_int_equal(snapfs_name_image(t, 0, "raw", out, sizeof(out)), -ENAMETOOLONG);
	/* Not even with a bigger buffer: a directory entry is 255 bytes. */
	assert_int_equal(snapfs_name_image(t, 0, "raw", big, sizeof(big)), -ENAMETOOLONG);
	free(t);

	/* Partition names too. */
	t = repeat("t", 250, "");
	assert_int_equal(snapfs_name_image(t, 1, "raw", out, sizeof(out)),
			 0); /* t…t1.raw */
	assert_int_equal(snapfs_name_image(t, 10, "raw", out, sizeof(out)),
			 -ENAMETOOLONG);
	free(t);

	/* A small buffer. */
	assert_int_equal(snapfs_name_image("vda", 0, "raw", out, 8), 0);
	assert_string_equal(out, "vda.raw");
	assert_int_equal(snapfs_name_image("vda", 0, "raw", out, 7), -ENAMETOOLONG);
	assert_int_equal(snapfs_name_image("vda", 1, "raw", out, 8), -ENAMETOOLONG);
}

/* ---- snapfs_name_hash ---------------------------------------------------- */

static void test_hash_known_values(void **state UNUSED)
{
	/* FNV-1a 64: the offset basis, and the reference test vectors. */
	assert_true(snapfs_name_hash("", 0) == 0xcbf29ce484222325ULL);
	assert_true(snapfs_name_hash("a", 1) == 0xaf63dc4c8601ec8cULL);
	assert_true(snapfs_name_hash("foobar", 6) == 0x85944171f73967e8ULL);
	/* Only len bytes count, NULs included. */
	assert_true(snapfs_name_hash("ab", 1) == snapfs_name_hash("a", 1));
	assert_true(snapfs_name_hash("a\0b", 3) != snapfs_name_hash("a", 1));
	/* Bytes are taken unsigned. */
	assert_true(snapfs_name_hash("\xff", 1) ==
		    ((0xcbf29ce484222325ULL ^ 0xffULL) * 0x100000001b3ULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_names_unchanged),
		cmocka_unit_test(test_special_bytes_escaped),
		cmocka_unit_test(test_leading_dot_and_dash),
		cmocka_unit_test(test_invalid_utf8_escaped),
		cmocka_unit_test(test_empty_name),
		cmocka_unit_test(test_escape_is_one_to_one),
		cmocka_unit_test(test_escape_round_trips_random_names),
		cmocka_unit_test(test_long_name_cut_with_hash),
		cmocka_unit_test(test_long_names_sharing_prefix_stay_distinct),
		cmocka_unit_test(test_length_boundary),
		cmocka_unit_test(test_cut_never_splits_a_character),
		cmocka_unit_test(test_writes_at_most_256_bytes),
		cmocka_unit_test(test_image_names),
		cmocka_unit_test(test_image_name_too_long),
		cmocka_unit_test(test_hash_known_values),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
