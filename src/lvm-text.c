/* LVM2's metadata text (its config format), parsed from a guest's disks:
 * hostile input, so every length, depth and number is capped.
 *
 *	vg0 {                        a section: name { ... }
 *	id = "Vb0q3S-..."            a string, with \" and \\ escapes
 *	seqno = 7                    a decimal integer, 0 to INT64_MAX
 *	status = ["READ", "WRITE"]   an array of strings and integers
 *	}                            # a comment to the end of the line
 *
 * What LVM itself never writes into metadata is refused, not guessed at:
 * floats, negative numbers, nested arrays, keys outside LVM's name
 * characters, a NUL byte before the end.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "snapfs.h"

struct parser {
	const char *p, *end;
	unsigned line;
	unsigned depth;
	size_t nodes;
	char *why;
	size_t whylen;
};

static int refuse(struct parser *ps, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int refuse(struct parser *ps, const char *fmt, ...)
{
	char msg[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(ps->why, ps->whylen, "metadata text, line %u: %s", ps->line, msg);
	return -EINVAL;
}

void snapfs_lvmt_free(struct snapfs_lvmt_node *n)
{
	while (n) {
		struct snapfs_lvmt_node *next = n->next;

		snapfs_lvmt_free(n->child); /* depth is capped: so is this recursion */
		free(n->key);
		free(n->str);
		free(n);
		n = next;
	}
}

static void skip_space(struct parser *ps)
{
	while (ps->p < ps->end) {
		char c = *ps->p;

		if (c == '\n') {
			ps->line++;
			ps->p++;
		} else if (c == ' ' || c == '\t' || c == '\r') {
			ps->p++;
		} else if (c == '#') {
			while (ps->p < ps->end && *ps->p != '\n')
				ps->p++;
		} else {
			break;
		}
	}
}

static bool is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '+' || c == '-';
}

static int new_node(struct parser *ps, enum snapfs_lvmt_kind kind,
		    struct snapfs_lvmt_node **out)
{
	if (++ps->nodes > SNAPFS_LVMT_NODES_MAX)
		return refuse(ps, "more than %u values", SNAPFS_LVMT_NODES_MAX);
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	(*out)->kind = kind;
	return 0;
}

static int parse_key(struct parser *ps, char **key)
{
	const char *start = ps->p;
	size_t len;

	while (ps->p < ps->end && is_name_char(*ps->p))
		ps->p++;
	len = (size_t)(ps->p - start);
	if (len == 0)
		return refuse(ps, "a name expected");
	if (len > SNAPFS_LVMT_NAME_MAX)
		return refuse(ps, "a name longer than %u bytes", SNAPFS_LVMT_NAME_MAX);
	*key = strndup(start, len);
	return *key ? 0 : -ENOMEM;
}

static int parse_string(struct parser *ps, struct snapfs_lvmt_node *n)
{
	const char *start = ++ps->p; /* past the quote */
	size_t len = 0;
	char *o;

	/* Measure first: the escapes make the string shorter, never longer. */
	for (const char *q = start;; q++) {
		if (q >= ps->end || *q == '\0' || *q == '\n')
			return refuse(ps, "a string without its closing quote");
		if (*q == '"')
			break;
		if (*q == '\\' && ++q >= ps->end)
			return refuse(ps, "a string without its closing quote");
		if (++len > SNAPFS_LVMT_STRING_MAX)
			return refuse(ps, "a string longer than %u bytes",
				      SNAPFS_LVMT_STRING_MAX);
	}
	n->str = o = malloc(len + 1);
	if (!o)
		return -ENOMEM;
	while (*ps->p != '"') {
		if (*ps->p == '\\')
			ps->p++;
		*o++ = *ps->p++;
	}
	*o = '\0';
	ps->p++;
	return 0;
}

static int parse_number(struct parser *ps, struct snapfs_lvmt_node *n)
{
	uint64_t v = 0;

	if (*ps->p == '-')
		return refuse(ps, "a negative number");
	for (; ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9'; ps->p++) {
		unsigned digit = (unsigned)(*ps->p - '0');

		if (v > ((uint64_t)INT64_MAX - digit) / 10)
			return refuse(ps, "a number past %lld", (long long)INT64_MAX);
		v = v * 10 + digit;
	}
	if (ps->p < ps->end && (is_name_char(*ps->p) || *ps->p == '.'))
		return refuse(ps, "a number that is not a decimal integer");
	n->num = (int64_t)v;
	return 0;
}

/* A string or an integer. */
static int parse_scalar(struct parser *ps, struct snapfs_lvmt_node **out)
{
	char c = ps->p < ps->end ? *ps->p : '\0';
	int r;

	if (c == '"')
		r = new_node(ps, SNAPFS_LVMT_STRING, out);
	else if ((c >= '0' && c <= '9') || c == '-')
		r = new_node(ps, SNAPFS_LVMT_INT, out);
	else
		return refuse(ps, "a string or a number expected");
	if (r)
		return r;
	return c == '"' ? parse_string(ps, *out) : parse_number(ps, *out);
}

static int parse_array(struct parser *ps, struct snapfs_lvmt_node *a)
{
	struct snapfs_lvmt_node **tail = &a->child;
	int r;

	ps->p++; /* past '[' */
	skip_space(ps);
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
		return 0;
	}
	for (;;) {
		skip_space(ps);
		r = parse_scalar(ps, tail);
		if (r)
			return r;
		tail = &(*tail)->next;
		skip_space(ps);
		if (ps->p >= ps->end)
			return refuse(ps, "an array without its closing ']'");
		if (*ps->p == ']') {
			ps->p++;
			return 0;
		}
		if (*ps->p != ',')
			return refuse(ps, "',' or ']' expected in an array");
		ps->p++;
	}
}

static int parse_entries(struct parser *ps, struct snapfs_lvmt_node **tail, bool top);

/* name = value, or name { ... }: *out gets the node. */
static int parse_entry(struct parser *ps, struct snapfs_lvmt_node **out)
{
	CLEANUP_FREE char *key = NULL;
	struct snapfs_lvmt_node *n = NULL;
	int r = parse_key(ps, &key);

	if (r)
		return r;
	skip_space(ps);
	if (ps->p >= ps->end)
		return refuse(ps, "'=' or '{' expected after %s", key);
	if (*ps->p == '{') {
		if (ps->depth >= SNAPFS_LVMT_DEPTH_MAX)
			return refuse(ps, "sections nested deeper than %u",
				      SNAPFS_LVMT_DEPTH_MAX);
		r = new_node(ps, SNAPFS_LVMT_SECTION, out);
		if (r)
			return r;
		ps->p++;
		ps->depth++;
		r = parse_entries(ps, &(*out)->child, false);
		ps->depth--;
	} else if (*ps->p == '=') {
		ps->p++;
		skip_space(ps);
		if (ps->p < ps->end && *ps->p == '[') {
			r = new_node(ps, SNAPFS_LVMT_ARRAY, out);
			if (!r)
				r = parse_array(ps, *out);
		} else {
			r = parse_scalar(ps, out);
		}
	} else {
		return refuse(ps, "'=' or '{' expected after %s", key);
	}
	n = *out;
	if (n) {
		n->key = key;
		key = NULL;
	}
	return r;
}

/* Entries up to the '}' that closes a section, or to the end of the text
 * (top).  Each node is linked in as soon as it exists, so the caller frees
 * what a failure left. */
static int parse_entries(struct parser *ps, struct snapfs_lvmt_node **tail, bool top)
{
	for (;;) {
		int r;

		skip_space(ps);
		if (ps->p >= ps->end) {
			if (top)
				return 0;
			return refuse(ps, "a section without its closing '}'");
		}
		if (*ps->p == '}') {
			if (top)
				return refuse(ps, "a '}' that closes nothing");
			ps->p++;
			return 0;
		}
		r = parse_entry(ps, tail);
		if (*tail)
			tail = &(*tail)->next;
		if (r)
			return r;
	}
}

int snapfs_lvmt_parse(const char *text, size_t len, struct snapfs_lvmt_node **root,
		      char *why, size_t whylen)
{
	struct parser ps = { text, text + len, 1, 0, 0, why, whylen };
	const char *nul;
	int r;

	*root = NULL;
	if (len > SNAPFS_LVMT_TEXT_MAX)
		return refuse(&ps, "longer than %u bytes", SNAPFS_LVMT_TEXT_MAX);
	nul = memchr(text, '\0', len);
	if (nul) {
		for (const char *q = nul; q < ps.end; q++)
			if (*q)
				return refuse(&ps, "a NUL byte inside the text");
		ps.end = nul;
	}
	r = new_node(&ps, SNAPFS_LVMT_SECTION, root);
	if (r)
		return r;
	r = parse_entries(&ps, &(*root)->child, true);
	if (r) {
		snapfs_lvmt_free(*root);
		*root = NULL;
	}
	return r;
}

int snapfs_lvmt_find(const struct snapfs_lvmt_node *section, const char *key,
		     enum snapfs_lvmt_kind kind, const struct snapfs_lvmt_node **out)
{
	const struct snapfs_lvmt_node *found = NULL;

	*out = NULL;
	for (const struct snapfs_lvmt_node *n = section->child; n; n = n->next) {
		if (!n->key || strcmp(n->key, key))
			continue;
		if (found || n->kind != kind)
			return -EINVAL; /* twice, or not what it should be */
		found = n;
	}
	if (!found)
		return -ENOENT;
	*out = found;
	return 0;
}
