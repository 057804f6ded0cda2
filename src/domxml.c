/* Disks of a libvirt domain XML that snapfs may serve: LVs and files.
 *
 * The XML describes a guest that someone else defined, so it is treated as
 * hostile:
 *  - at most DOMXML_MAX_SIZE bytes (-E2BIG beyond that);
 *  - read as UTF-8 whatever it declares, with no network, no DTD loading
 *    and no entity substitution; libxml2's own limits (depth, name and
 *    text lengths) stay on, as XML_PARSE_HUGE is not given;
 *  - a document with a DOCTYPE is refused (-EINVAL) as soon as the parser
 *    meets it, before any entity declaration is read: libvirt never writes
 *    one, and without it no entity but the five predefined ones can exist;
 *  - libxml2's messages go to a per-parse handler and end in one debug
 *    line, never on stderr;
 *  - at most DOMXML_MAX_DISKS <disk> elements are looked at, which bounds
 *    the work and the log lines one document can cause;
 *  - every value kept is checked (see invalid_reason()); a disk that fails
 *    a check is skipped with a warning, the rest of the domain still counts.
 *
 * Thread safety: libxml2 is initialised once (pthread_once) and every call
 * has its own parser context and document; no global libxml2 handler is
 * set, so snapfs_domxml_disks() may run in several threads at once.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include "snapfs.h"

/* Twice libvirt's RPC string limit (4 MiB), and under the 10,000,000 bytes
 * that libxml2 parses without XML_PARSE_HUGE. */
#define DOMXML_MAX_SIZE (8u << 20)
#define DOMXML_MAX_DISKS 1024
#define DOMXML_PARSE_OPTIONS                                                             \
	(XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR |                      \
	 XML_PARSE_NOWARNING | XML_PARSE_IGNORE_ENC)

#define TARGET_MAX 32
#define FORMAT_MAX 16
#define DEV_PATH_MAX 4096 /* bytes with the NUL, as PATH_MAX */
#define POOL_NAME_MAX 256 /* bytes with the NUL */
#define SHOW_MAX 80 /* a value in a log line */
#define SHOW_GUEST_MAX 1040 /* a 255-byte guest name, every byte escaped */

/* A disk as found in the tree: pointers into the document, not checked. */
struct disk_view {
	const char *device;
	const char *type;
	const char *target;
	const char *format;
	const char *dev;
	const char *file;
	const char *pool;
	const char *volume;
	const char *protocol; /* type network */
	const char *name;
	const char *block_size;
};

struct walk {
	const char *guest; /* printable */
	struct snapfs_xml_disks disks;
	size_t alloc;
	unsigned seen;
};

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_init(void)
{
	xmlInitParser();
}

/* Copy s for a log line: bytes outside printable ASCII, and '\', become
 * \xNN; a value too long for buf is cut and ends in "...". */
static void show(const char *s, char *buf, size_t size)
{
	size_t o = 0;

	if (!s || !*s) {
		snprintf(buf, size, "%s", s ? "(empty)" : "(none)");
		return;
	}
	for (; *s; s++) {
		unsigned char c = *s;
		bool esc = c < 0x20 || c > 0x7e || c == '\\';

		if (o + (esc ? 4 : 1) + 4 > size) {
			memcpy(buf + o, "...", 4);
			return;
		}
		if (esc)
			o += snprintf(buf + o, 5, "\\x%02x", c);
		else
			buf[o++] = c;
	}
	buf[o] = '\0';
}

/* ---- parsing ----------------------------------------------------------- */

#if LIBXML_VERSION >= 21200
static void keep_error(void *data, const xmlError *err)
#else
static void keep_error(void *data, xmlErrorPtr err)
#endif
{
	/* The context keeps the last error; parse_error() reports it. */
	(void)data;
	(void)err;
}

static void refuse_doctype(void *ctx, const xmlChar *name, const xmlChar *public_id,
			   const xmlChar *system_id)
{
	(void)name;
	(void)public_id;
	(void)system_id;
	xmlStopParser(ctx);
}

static int parse_error(const char *guest, xmlParserCtxtPtr ctxt)
{
	const xmlError *err = xmlCtxtGetLastError(ctxt);
	char msg[SHOW_MAX * 2];
	size_t len;

	if (ctxt->errNo == XML_ERR_USER_STOP) {
		snapfs_debug(SNAPFS_DBG_GUESTS,
			     "guest %s: domain XML has a DOCTYPE; refused", guest);
		return -EINVAL;
	}
	if (err && err->code == XML_ERR_NO_MEMORY)
		return -ENOMEM;
	show(err && err->message ? err->message : "unknown error", msg, sizeof(msg));
	len = strlen(msg);
	if (len >= 4 && !strcmp(msg + len - 4, "\\x0a"))
		msg[len - 4] = '\0';
	snapfs_debug(SNAPFS_DBG_GUESTS,
		     "guest %s: domain XML does not parse: line %d: %s", guest,
		     err ? err->line : 0, msg);
	return -EINVAL;
}

/* Parse xml (len bytes) into *docp.  Returns 0, -EINVAL or -ENOMEM. */
static int parse(const char *guest, const char *xml, size_t len, xmlDocPtr *docp)
{
	xmlParserCtxtPtr ctxt;
	xmlDocPtr doc;
	int ret = 0;

	pthread_once(&xml_once, xml_init);
	ctxt = xmlNewParserCtxt();
	if (!ctxt)
		return -ENOMEM;
	ctxt->sax->serror = keep_error;
	ctxt->sax->internalSubset = refuse_doctype;
	doc = xmlCtxtReadMemory(ctxt, xml, (int)len, NULL, "UTF-8", DOMXML_PARSE_OPTIONS);
	if (!doc || ctxt->errNo == XML_ERR_USER_STOP) {
		ret = parse_error(guest, ctxt);
		xmlFreeDoc(doc);
		doc = NULL;
	}
	xmlFreeParserCtxt(ctxt);
	*docp = doc;
	return ret;
}

/* parse() of a whole XML text of libvirt's (what names it for log lines),
 * refused past DOMXML_MAX_SIZE.  0 with *docp, or -errno. */
static int parse_text(const char *what, const char *xml, xmlDocPtr *docp)
{
	size_t len;

	if (!xml || (len = strnlen(xml, DOMXML_MAX_SIZE + 1)) > DOMXML_MAX_SIZE)
		return -EINVAL;
	return parse(what, xml, len, docp);
}

/* ---- reading the tree -------------------------------------------------- */

/* libvirt's elements and attributes are in no namespace. */
static bool is_element(const xmlNode *n, const char *name)
{
	return n && n->type == XML_ELEMENT_NODE && !n->ns &&
	       xmlStrEqual(n->name, BAD_CAST name);
}

static const xmlNode *first_child(const xmlNode *parent, const char *name)
{
	const xmlNode *n;

	for (n = parent->children; n; n = n->next)
		if (is_element(n, name))
			return n;
	return NULL;
}

/* The value of an attribute, NULL when absent.  A value that is not one
 * plain text node (it cannot be without a DTD) reads as "", which every
 * check below refuses. */
static const char *attr(const xmlNode *node, const char *name)
{
	const xmlAttr *a;

	if (!node)
		return NULL;
	for (a = node->properties; a; a = a->next) {
		if (a->ns || !xmlStrEqual(a->name, BAD_CAST name))
			continue;
		if (!a->children)
			return "";
		if (a->children->next || a->children->type != XML_TEXT_NODE ||
		    !a->children->content)
			return "";
		return (const char *)a->children->content;
	}
	return NULL;
}

static const char *child_attr(const xmlNode *node, const char *child, const char *name)
{
	return attr(first_child(node, child), name);
}

/* Only the first <target>, <driver>, <source> and <blockio> child counts;
 * those nested deeper (backingStore, mirror) are not the disk's own. */
static void read_view(const xmlNode *disk, struct disk_view *v)
{
	const xmlNode *source = first_child(disk, "source");

	v->device = attr(disk, "device");
	v->type = attr(disk, "type");
	v->target = child_attr(disk, "target", "dev");
	v->format = child_attr(disk, "driver", "type");
	v->dev = attr(source, "dev");
	v->file = attr(source, "file");
	v->pool = attr(source, "pool");
	v->volume = attr(source, "volume");
	v->protocol = attr(source, "protocol");
	v->name = attr(source, "name");
	v->block_size = child_attr(disk, "blockio", "logical_block_size");
}

/* ---- checks ------------------------------------------------------------ */

/* Why a disk is not one snapfs serves (debug only), or NULL. */
static const char *skip_reason(const struct disk_view *v)
{
	if (v->device && strcmp(v->device, "disk"))
		return "not a disk device";
	/* libvirt's default type is file. */
	if (!v->type || !strcmp(v->type, "file")) {
		if (!v->file || !*v->file)
			return "no <source file>";
		return NULL;
	}
	if (!strcmp(v->type, "block")) {
		if (!v->dev || !*v->dev)
			return "no <source dev>";
		return NULL;
	}
	if (!strcmp(v->type, "volume")) {
		if (!v->pool || !v->volume)
			return "no <source pool volume>";
		return NULL;
	}
	/* Served only through libvirt's backup API, which reads it in qemu. */
	if (!strcmp(v->type, "network")) {
		if (!v->protocol || !*v->protocol)
			return "no <source protocol>";
		return NULL;
	}
	return "neither a block, a file, a volume nor a network disk";
}

static bool has_only(const char *s, const char *set)
{
	return s[strspn(s, set)] == '\0';
}

static bool has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

static const char *target_invalid(const char *t)
{
	size_t len;

	if (!t)
		return "no <target dev>";
	len = strlen(t);
	if (len == 0 || len > TARGET_MAX)
		return "target name is empty or longer than 32 bytes";
	if (t[0] == '-')
		return "target name starts with '-'";
	if (!has_only(t,
		      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"))
		return "target name has bytes other than [A-Za-z0-9_-]";
	return NULL;
}

static const char *format_invalid(const char *f)
{
	size_t len = strlen(f);

	if (len == 0 || len > FORMAT_MAX ||
	    !has_only(f, "abcdefghijklmnopqrstuvwxyz0123456789"))
		return "driver type is not 1 to 16 of [a-z0-9]";
	return NULL;
}

/* Only 512, 1024, 2048 and 4096, in plain decimal: partition offsets are
 * counted in these sectors, so a wrong size would serve wrong data. */
static int parse_sector_size(const char *s, unsigned *size)
{
	unsigned v = 0;
	size_t i;

	if (!s) {
		*size = 512;
		return 0;
	}
	if (s[0] < '1' || s[0] > '9' || strlen(s) > 4)
		return -EINVAL;
	for (i = 0; s[i]; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 512 || v > 4096 || (v & (v - 1)))
		return -EINVAL;
	*size = v;
	return 0;
}

static bool has_dotdot_segment(const char *path)
{
	const char *p = path;

	while ((p = strstr(p, "..")) != NULL) {
		if ((p == path || p[-1] == '/') && (p[2] == '/' || p[2] == '\0'))
			return true;
		p += 2;
	}
	return false;
}

/* Why a <source dev> or <source file> path is refused, or NULL; why[] has
 * the reasons for that attribute: not absolute, too long, '..', control. */
static const char *path_invalid(const char *path, const char *const why[4])
{
	if (path[0] != '/')
		return why[0];
	if (strlen(path) >= DEV_PATH_MAX)
		return why[1];
	if (has_dotdot_segment(path))
		return why[2];
	if (has_control(path))
		return why[3];
	return NULL;
}

static const char *const dev_why[4] = {
	"source dev is not an absolute path", "source dev is 4096 bytes or longer",
	"source dev has a '..' component", "source dev has control characters",
};
static const char *const file_why[4] = {
	"source file is not an absolute path", "source file is 4096 bytes or longer",
	"source file has a '..' component", "source file has control characters",
};

/* Also refuse "." and "..", which would climb if joined into a path. */
static bool pool_name_ok(const char *s)
{
	return *s && strlen(s) < POOL_NAME_MAX && !strchr(s, '/') && !has_control(s) &&
	       strcmp(s, ".") && strcmp(s, "..");
}

/* A network source, shown in logs and xattrs only: a protocol of
 * [a-z0-9+], a name (may be absent: nbd) without control bytes. */
static const char *network_invalid(const char *protocol, const char *name)
{
	if (strlen(protocol) > FORMAT_MAX || !has_only(protocol, "abcdefghijklmnopqrstuvwxyz0123456789+"))
		return "source protocol is not 1 to 16 of [a-z0-9+]";
	if (name && (strlen(name) >= DEV_PATH_MAX - FORMAT_MAX - 2 || has_control(name)))
		return "network source name is too long or has control characters";
	return NULL;
}

/* Why a block or volume disk cannot be served (warned), or NULL. */
static const char *invalid_reason(const struct disk_view *v, unsigned *sector_size)
{
	const char *why = target_invalid(v->target);

	if (why)
		return why;
	if (v->format && (why = format_invalid(v->format)))
		return why;
	if (parse_sector_size(v->block_size, sector_size) < 0)
		return "blockio logical_block_size is not 512, 1024, 2048 or 4096";
	if (!v->type || !strcmp(v->type, "file"))
		return path_invalid(v->file, file_why);
	if (!strcmp(v->type, "block"))
		return path_invalid(v->dev, dev_why);
	if (!strcmp(v->type, "network"))
		return network_invalid(v->protocol, v->name);
	if (!pool_name_ok(v->pool) || !pool_name_ok(v->volume))
		return "source pool or volume is empty, too long, or has '/', '.', '..' "
		       "or control characters";
	return NULL;
}

/* ---- the result -------------------------------------------------------- */

static bool has_target(const struct snapfs_xml_disks *d, const char *target)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		if (!strcmp(d->disk[i].target, target))
			return true;
	return false;
}

static void disk_free(struct snapfs_xml_disk *d)
{
	free(d->target);
	free(d->format);
	free(d->dev);
	free(d->pool);
	free(d->volume);
	free(d->rbd);
}

static int append_disk(struct walk *w, const struct disk_view *v, unsigned sector_size)
{
	bool by_file = !v->type || !strcmp(v->type, "file");
	bool by_dev = !by_file && !strcmp(v->type, "block");
	bool by_net = !by_file && !strcmp(v->type, "network");
	bool by_pool = !by_file && !by_dev && !by_net;
	char net[DEV_PATH_MAX];

	if (by_net)
		snprintf(net, sizeof(net), "%s:%s", v->protocol, v->name ? v->name : "");
	struct snapfs_xml_disk d = {
		.target = strdup(v->target),
		.format = strdup(v->format ? v->format : "raw"),
		.kind = by_file	 ? SNAPFS_SOURCE_FILE
			: by_dev ? SNAPFS_SOURCE_DEV
			: by_net ? SNAPFS_SOURCE_NETWORK
				 : SNAPFS_SOURCE_POOL,
		.dev = by_file ? strdup(v->file)
		       : by_dev ? strdup(v->dev)
		       : by_net ? strdup(net)
				: NULL,
		.pool = by_pool ? strdup(v->pool) : NULL,
		.volume = by_pool ? strdup(v->volume) : NULL,
		.sector_size = sector_size,
	};

	if (!d.target || !d.format || (by_pool ? !d.pool || !d.volume : !d.dev))
		goto nomem;
	if (w->disks.n == w->alloc) {
		size_t alloc = w->alloc ? w->alloc * 2 : 4;
		struct snapfs_xml_disk *grown =
			realloc(w->disks.disk, alloc * sizeof(*grown));

		if (!grown)
			goto nomem;
		w->disks.disk = grown;
		w->alloc = alloc;
	}
	w->disks.disk[w->disks.n++] = d;
	return 0;
nomem:
	disk_free(&d);
	return -ENOMEM;
}

/* ---- Ceph RBD sources -------------------------------------------------- */

#define RBD_HOSTS_MAX 8

/* One component of an RBD name: 1 to max-1 bytes, none of '/', '@' (a
 * snapshot), ':' (qemu's old option syntax) or control bytes. */
static bool rbd_component_ok(const char *s, size_t len, size_t max)
{
	if (!len || len >= max)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || strchr("/@:", s[i]))
			return false;
	return true;
}

/* "POOL/IMAGE" or "POOL/NAMESPACE/IMAGE" into out. */
static const char *rbd_name(const char *name, struct snapfs_rbd_spec *out)
{
	const char *a = name ? strchr(name, '/') : NULL;
	const char *b = a ? strchr(a + 1, '/') : NULL;
	const char *image = b ? b + 1 : a ? a + 1 : NULL;

	if (!a || (b && strchr(b + 1, '/')) || !rbd_component_ok(name, (size_t)(a - name), 128) ||
	    (b && !rbd_component_ok(a + 1, (size_t)(b - a - 1), 128)) ||
	    !rbd_component_ok(image, strlen(image), 96))
		return "rbd source name is not POOL/IMAGE or POOL/NAMESPACE/IMAGE of plain names";
	snprintf(out->pool, sizeof(out->pool), "%.*s", (int)(a - name), name);
	if (b)
		snprintf(out->ns, sizeof(out->ns), "%.*s", (int)(b - a - 1), a + 1);
	snprintf(out->image, sizeof(out->image), "%s", image);
	return NULL;
}

/* The monitors of <host name port> elements, as Ceph's mon_host. */
static const char *rbd_hosts(const xmlNode *source, struct snapfs_rbd_spec *out)
{
	size_t o = 0, n = 0;

	for (const xmlNode *h = source->children; h; h = h->next) {
		const char *name = attr(h, "name"), *port = attr(h, "port");
		bool v6;

		if (!is_element(h, "host"))
			continue;
		if (++n > RBD_HOSTS_MAX)
			return "more than 8 <host> elements";
		if (!name || !*name || strlen(name) > 255 ||
		    !has_only(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "0123456789.-:"))
			return "an rbd <host name> is not a host name or address";
		if (port && (!*port || strlen(port) > 5 || !has_only(port, "0123456789") ||
			     atoi(port) > 65535))
			return "an rbd <host port> is not a port number";
		v6 = strchr(name, ':') != NULL;
		o += (size_t)snprintf(out->mon_host + o, sizeof(out->mon_host) - o, "%s%s%s%s%s%s",
				      o ? "," : "", v6 ? "[" : "", name, v6 ? "]" : "",
				      port ? ":" : "", port ? port : "");
		if (o >= sizeof(out->mon_host))
			return "the rbd <host> elements are too long";
	}
	return NULL;
}

/* <auth username> and its <secret type='ceph' uuid|usage>, under the
 * source or, as older XML has it, the disk. */
static const char *rbd_auth(const xmlNode *disk, const xmlNode *source,
			    struct snapfs_rbd_spec *out)
{
	const xmlNode *auth = first_child(source, "auth");
	const xmlNode *secret;
	const char *user, *uuid, *usage;

	if (!auth)
		auth = first_child(disk, "auth");
	if (!auth)
		return NULL;
	user = attr(auth, "username");
	if (!user || !*user || strlen(user) >= sizeof(out->user) ||
	    !has_only(user, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"))
		return "rbd <auth username> is not a plain Ceph user name";
	snprintf(out->user, sizeof(out->user), "%s", user);
	secret = first_child(auth, "secret");
	uuid = attr(secret, "uuid");
	usage = attr(secret, "usage");
	if (uuid && (strlen(uuid) != 36 || !has_only(uuid, "0123456789abcdefABCDEF-")))
		return "rbd <secret uuid> is not a UUID";
	if (usage && (!*usage || strlen(usage) >= sizeof(out->secret_usage) || has_control(usage)))
		return "rbd <secret usage> is empty, too long or has control characters";
	snprintf(out->secret_uuid, sizeof(out->secret_uuid), "%s", uuid ? uuid : "");
	snprintf(out->secret_usage, sizeof(out->secret_usage), "%s",
		 !uuid && usage ? usage : "");
	return NULL;
}

/* The RBD image of network disk node, into *out (NULL when it is none that
 * snapfs snapshots itself: a snapshot named in the XML, or refused with a
 * warning, which leaves it to the backup API). */
static int read_rbd(struct walk *w, const xmlNode *disk, const char *target,
		    struct snapfs_rbd_spec **out)
{
	const xmlNode *source = first_child(disk, "source");
	const char *conf = child_attr(source, "config", "file");
	struct snapfs_rbd_spec *spec;
	const char *why;

	*out = NULL;
	if (first_child(source, "snapshot")) {
		snapfs_debug(SNAPFS_DBG_GUESTS, "guest %s: disk %s names an RBD snapshot: not "
			     "snapshotted again", w->guest, target);
		return 0;
	}
	spec = calloc(1, sizeof(*spec));
	if (!spec)
		return -ENOMEM;
	why = rbd_name(attr(source, "name"), spec);
	if (!why)
		why = rbd_hosts(source, spec);
	if (!why)
		why = rbd_auth(disk, source, spec);
	if (!why && conf) {
		if (conf[0] != '/' || strlen(conf) >= sizeof(spec->conf) || has_control(conf))
			why = "rbd <config file> is not an absolute path";
		else
			snprintf(spec->conf, sizeof(spec->conf), "%s", conf);
	}
	if (why) {
		snapfs_warn("guest %s: disk %s is no RBD image snapfs can snapshot: %s", w->guest,
			    target, why);
		free(spec);
		return 0;
	}
	*out = spec;
	return 0;
}

/* ---- the walk ---------------------------------------------------------- */

static int read_disk(struct walk *w, const xmlNode *node)
{
	char target[SHOW_MAX], device[SHOW_MAX], type[SHOW_MAX];
	unsigned sector_size = 512;
	struct disk_view v;
	const char *why;

	read_view(node, &v);
	show(v.target, target, sizeof(target));
	why = skip_reason(&v);
	if (why) {
		show(v.device ? v.device : "disk", device, sizeof(device));
		show(v.type, type, sizeof(type));
		snapfs_debug(SNAPFS_DBG_GUESTS,
			     "guest %s: disk %s (device %s, type %s) skipped: %s",
			     w->guest, target, device, type, why);
		return 0;
	}
	why = invalid_reason(&v, &sector_size);
	if (why) {
		snapfs_warn("guest %s: disk %s skipped: %s", w->guest, target, why);
		return 0;
	}
	if (has_target(&w->disks, v.target)) {
		snapfs_warn("guest %s: disk %s skipped: another disk has this target",
			    w->guest, target);
		return 0;
	}
	if (!strcmp(v.type ? v.type : "file", "network") && !strcmp(v.protocol, "rbd")) {
		struct snapfs_rbd_spec *rbd;
		int rc = read_rbd(w, node, target, &rbd);

		if (rc == 0)
			rc = append_disk(w, &v, sector_size);
		if (rc == 0 && rbd)
			w->disks.disk[w->disks.n - 1].rbd = rbd;
		else
			free(rbd);
		return rc;
	}
	return append_disk(w, &v, sector_size);
}

/* Counts one more <disk>; past DOMXML_MAX_DISKS, warns and says stop. */
static bool too_many_disks(struct walk *w)
{
	if (w->seen++ < DOMXML_MAX_DISKS)
		return false;
	snapfs_warn("guest %s: more than %d disks; the rest are ignored", w->guest,
		    DOMXML_MAX_DISKS);
	return true;
}

static int walk_domain(struct walk *w, const xmlNode *domain)
{
	const xmlNode *devices, *n;
	int ret;

	for (devices = domain->children; devices; devices = devices->next) {
		if (!is_element(devices, "devices"))
			continue;
		for (n = devices->children; n; n = n->next) {
			if (!is_element(n, "disk"))
				continue;
			if (too_many_disks(w))
				return 0;
			ret = read_disk(w, n);
			if (ret < 0)
				return ret;
		}
	}
	return 0;
}

/* Called by guest discovery with the XML libvirt gave for guest.  Fills out
 * with the block, file and volume disks that pass every check, in document order;
 * n may be 0.  Returns 0, -E2BIG for XML over DOMXML_MAX_SIZE, -EINVAL for
 * XML that does not parse, has a DOCTYPE or is not a <domain>, -ENOMEM.  On
 * error out is empty. */
int snapfs_domxml_disks(const char *guest, const char *xml, struct snapfs_xml_disks *out)
{
	char shown[SHOW_GUEST_MAX];
	struct walk w = { .guest = shown };
	xmlDocPtr doc = NULL;
	const xmlNode *root;
	size_t len;
	int ret;

	out->disk = NULL;
	out->n = 0;
	show(guest, shown, sizeof(shown));
	if (!xml || !*xml) {
		snapfs_debug(SNAPFS_DBG_GUESTS, "guest %s: domain XML is empty", shown);
		return -EINVAL;
	}
	len = strnlen(xml, DOMXML_MAX_SIZE + 1);
	if (len > DOMXML_MAX_SIZE) {
		snapfs_debug(SNAPFS_DBG_GUESTS, "guest %s: domain XML is over %u bytes",
			     shown, DOMXML_MAX_SIZE);
		return -E2BIG;
	}
	ret = parse(shown, xml, len, &doc);
	if (ret < 0)
		return ret;
	root = xmlDocGetRootElement(doc);
	if (!is_element(root, "domain")) {
		snapfs_debug(SNAPFS_DBG_GUESTS, "guest %s: XML root is not <domain>",
			     shown);
		ret = -EINVAL;
	} else {
		ret = walk_domain(&w, root);
	}
	xmlFreeDoc(doc);
	if (ret < 0) {
		snapfs_domxml_disks_free(&w.disks);
		return ret;
	}
	*out = w.disks;
	return 0;
}

/* Frees what snapfs_domxml_disks gave and leaves d empty; d may be empty. */
void snapfs_domxml_disks_free(struct snapfs_xml_disks *d)
{
	size_t i;

	if (!d)
		return;
	for (i = 0; i < d->n; i++)
		disk_free(&d->disk[i]);
	free(d->disk);
	d->disk = NULL;
	d->n = 0;
}

/* ---- a backup job's XML --------------------------------------------------- */

int snapfs_domxml_backup(const char *xml, char **socket, char ***scratch, size_t *n)
{
	xmlDocPtr doc = NULL;
	const xmlNode *root, *c, *disk;
	size_t count = 0;
	char **files = NULL;
	int ret;

	*socket = NULL;
	*scratch = NULL;
	*n = 0;
	ret = parse_text("(backup job)", xml, &doc);
	if (ret < 0)
		return ret;
	root = xmlDocGetRootElement(doc);
	ret = is_element(root, "domainbackup") ? 0 : -EINVAL;
	for (c = ret ? NULL : root->children; c && ret == 0; c = c->next) {
		if (is_element(c, "server") && !*socket && attr(c, "socket")) {
			if (!(*socket = strdup(attr(c, "socket"))))
				ret = -ENOMEM;
			continue;
		}
		if (!is_element(c, "disks"))
			continue;
		for (disk = c->children; disk && ret == 0; disk = disk->next) {
			const char *file = is_element(disk, "disk")
						   ? child_attr(disk, "scratch", "file")
						   : NULL;
			char **grown;

			if (!file || count == DOMXML_MAX_DISKS)
				continue;
			grown = realloc(files, (count + 1) * sizeof(*grown));
			if (!grown || !(grown[count] = strdup(file))) {
				files = grown ? grown : files;
				ret = -ENOMEM;
				break;
			}
			files = grown;
			count++;
		}
	}
	xmlFreeDoc(doc);
	if (ret < 0) {
		for (size_t i = 0; i < count; i++)
			free(files[i]);
		free(files);
		free(*socket);
		*socket = NULL;
		return ret;
	}
	*scratch = files;
	*n = count;
	return 0;
}

/* "+UID:+GID" or "UID:GID", numbers only. */
static int parse_dac_label(const char *s, unsigned *uid, unsigned *gid)
{
	char *end;
	unsigned long u, g;

	if (*s == '+')
		s++;
	errno = 0;
	u = strtoul(s, &end, 10);
	if (end == s || *end != ':' || errno || u > 0x7fffffffUL)
		return -EINVAL;
	s = end + 1;
	if (*s == '+')
		s++;
	g = strtoul(s, &end, 10);
	if (end == s || *end || errno || g > 0x7fffffffUL)
		return -EINVAL;
	*uid = (unsigned)u;
	*gid = (unsigned)g;
	return 0;
}

int snapfs_domxml_dac_label(const char *xml, unsigned *uid, unsigned *gid)
{
	xmlDocPtr doc = NULL;
	const xmlNode *root, *c;
	int ret;

	ret = parse_text("(live domain)", xml, &doc);
	if (ret < 0)
		return ret;
	root = xmlDocGetRootElement(doc);
	ret = -ENOENT;
	for (c = is_element(root, "domain") ? root->children : NULL; c && ret; c = c->next) {
		const char *model = attr(c, "model");
		const xmlNode *label;

		if (!is_element(c, "seclabel") || !model || strcmp(model, "dac"))
			continue;
		label = first_child(c, "label");
		if (label && label->children && label->children->type == XML_TEXT_NODE &&
		    label->children->content)
			ret = parse_dac_label((const char *)label->children->content, uid, gid);
		else
			ret = -EINVAL;
	}
	xmlFreeDoc(doc);
	return ret;
}

/* ---- a storage pool's XML -------------------------------------------------- */

int snapfs_domxml_pool_dir(const char *xml, char **dir)
{
	xmlDocPtr doc = NULL;
	const xmlNode *root, *target, *path;
	const char *type;
	int ret;

	*dir = NULL;
	ret = parse_text("(storage pool)", xml, &doc);
	if (ret < 0)
		return ret;
	root = xmlDocGetRootElement(doc);
	type = is_element(root, "pool") ? attr(root, "type") : NULL;
	target = type ? first_child(root, "target") : NULL;
	path = target ? first_child(target, "path") : NULL;
	ret = -ENOENT;
	if (type && (!strcmp(type, "dir") || !strcmp(type, "fs") || !strcmp(type, "netfs")) &&
	    path && path->children && path->children->type == XML_TEXT_NODE &&
	    path->children->content && path->children->content[0] == '/')
		ret = (*dir = strdup((const char *)path->children->content)) ? 0 : -ENOMEM;
	xmlFreeDoc(doc);
	return ret;
}
