/* Unit tests for src/domxml.c: disks from hostile libvirt domain XML. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <libxml/parser.h>

#include "snapfs.h"

#define MAX_SIZE (8u << 20) /* as DOMXML_MAX_SIZE in domxml.c */
#define UNUSED __attribute__((unused))

struct result {
	int rc;
	struct snapfs_xml_disks d;
	char *log; /* what snapfs logged to stderr meanwhile */
};

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	assert_true(len >= 0);
	s = malloc(len + 1);
	assert_non_null(s);
	va_start(ap, fmt);
	vsnprintf(s, len + 1, fmt, ap);
	va_end(ap);
	return s;
}

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* ---- stderr capture: snapfs_log writes there in the foreground ---------- */

struct capture {
	int saved;
	FILE *f;
};

static void capture_start(struct capture *c)
{
	fflush(stderr);
	c->f = tmpfile();
	assert_non_null(c->f);
	c->saved = dup(STDERR_FILENO);
	assert_true(c->saved >= 0);
	assert_true(dup2(fileno(c->f), STDERR_FILENO) >= 0);
}

static char *capture_end(struct capture *c)
{
	long len;
	char *s;

	fflush(stderr);
	assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
	close(c->saved);
	len = ftell(c->f);
	assert_true(len >= 0);
	s = malloc(len + 1);
	assert_non_null(s);
	rewind(c->f);
	assert_int_equal(fread(s, 1, len, c->f), (size_t)len);
	s[len] = '\0';
	fclose(c->f);
	return s;
}

static void run_as(const char *guest, const char *xml, struct result *r)
{
	struct capture c;

	capture_start(&c);
	r->rc = snapfs_domxml_disks(guest, xml, &r->d);
	r->log = capture_end(&c);
}

static void run(const char *xml, struct result *r)
{
	run_as("guest1", xml, r);
}

static void result_free(struct result *r)
{
	snapfs_domxml_disks_free(&r->d);
	free(r->log);
}

static void assert_logged(const struct result *r, const char *line)
{
	if (!strstr(r->log, line))
		fail_msg("log lacks \"%s\"; it was:\n%s", line, r->log);
}

/* Nothing but snapfs's own lines reached stderr: libxml2 stayed quiet. */
static void assert_only_snapfs_lines(const char *log)
{
	const char *p = log;

	while (*p) {
		if (strncmp(p, "snapfs: ", 8))
			fail_msg("stray output on stderr: %s", p);
		p = strchr(p, '\n');
		assert_non_null(p);
		p++;
	}
}

static void assert_error(const char *xml, int rc)
{
	struct result r;

	run(xml, &r);
	assert_int_equal(r.rc, rc);
	assert_null(r.d.disk);
	assert_int_equal(r.d.n, 0);
	assert_only_snapfs_lines(r.log);
	result_free(&r);
}

static void assert_dev_disk(const struct snapfs_xml_disk *d, const char *target,
			    const char *format, const char *dev, unsigned sector_size)
{
	assert_string_equal(d->target, target);
	assert_string_equal(d->format, format);
	assert_int_equal(d->kind, SNAPFS_SOURCE_DEV);
	assert_string_equal(d->dev, dev);
	assert_null(d->pool);
	assert_null(d->volume);
	assert_int_equal(d->sector_size, sector_size);
}

/* Run a domain whose <devices> holds disks_xml. */
static void run_devices(const char *disks_xml, struct result *r)
{
	char *xml =
		xasprintf("<domain type='kvm'><name>guest1</name><devices>%s</devices>"
			  "</domain>",
			  disks_xml);

	run(xml, r);
	free(xml);
}

/* One block disk with the given attributes, for the check tests. */
static char *block_disk(const char *target, const char *dev, const char *format,
			const char *blockio)
{
	char *driver = format ? xasprintf("<driver name='qemu' type='%s'/>", format)
			      : xasprintf("%s", "");
	char *bio = blockio ? xasprintf("<blockio logical_block_size='%s'/>", blockio)
			    : xasprintf("%s", "");
	char *s = xasprintf("<disk type='block' device='disk'>%s<source dev='%s'/>"
			    "<target dev='%s' bus='virtio'/>%s</disk>",
			    driver, dev, target, bio);

	free(driver);
	free(bio);
	return s;
}

/* A disk that fails a check: skipped, with a warning naming guest and why. */
static void assert_skipped_warning(const char *disk_xml, const char *why)
{
	struct result r;

	run_devices(disk_xml, &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.d.n, 0);
	assert_null(r.d.disk);
	assert_logged(&r, "snapfs: warning: guest guest1: disk ");
	assert_logged(&r, why);
	result_free(&r);
}

static void assert_block_skipped(const char *target, const char *dev, const char *format,
				 const char *blockio, const char *why)
{
	char *disk = block_disk(target, dev, format, blockio);

	assert_skipped_warning(disk, why);
	free(disk);
}

static void assert_block_kept(const char *target, const char *dev, const char *format,
			      const char *blockio, unsigned sector_size)
{
	char *disk = block_disk(target, dev, format, blockio);
	struct result r;

	run_devices(disk, &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.d.n, 1);
	assert_dev_disk(&r.d.disk[0], target, format ? format : "raw", dev, sector_size);
	assert_null(strstr(r.log, "warning"));
	result_free(&r);
	free(disk);
}

/* ---- a realistic domain ------------------------------------------------ */

static const char realistic_xml[] =
	"<domain type='kvm' id='3' "
	"xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n"
	"  <name>guest1</name>\n"
	"  <uuid>0b0b4f5e-7d6b-4bd0-9a52-96b1e4ff9a11</uuid>\n"
	"  <metadata>\n"
	"    <devices><disk type='block' device='disk'><source dev='/dev/vg0/meta'/>"
	"<target dev='vdz'/></disk></devices>\n"
	"  </metadata>\n"
	"  <memory unit='KiB'>2097152</memory>\n"
	"  <vcpu placement='static'>2</vcpu>\n"
	"  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os>\n"
	"  <devices>\n"
	"    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
	"    <disk type='block' device='disk'>\n"
	"      <driver name='qemu' type='raw' cache='none' io='native'/>\n"
	"      <source dev='/dev/vg0/guest1' index='4'/>\n"
	"      <backingStore/>\n"
	"      <target dev='vda' bus='virtio'/>\n"
	"      <alias name='virtio-disk0'/>\n"
	"      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' "
	"function='0x0'/>\n"
	"    </disk>\n"
	"    <disk type='volume' device='disk'>\n"
	"      <driver name='qemu' type='raw'/>\n"
	"      <source pool='vg0' volume='guest1-data' index='3'/>\n"
	"      <target dev='vdb' bus='virtio'/>\n"
	"    </disk>\n"
	"    <disk type='file' device='disk'>\n"
	"      <driver name='qemu' type='qcow2'/>\n"
	"      <source file='/var/lib/libvirt/images/guest1-scratch.qcow2'/>\n"
	"      <target dev='vdc' bus='virtio'/>\n"
	"    </disk>\n"
	"    <disk type='block' device='cdrom'>\n"
	"      <driver name='qemu' type='raw'/>\n"
	"      <source dev='/dev/sr0'/>\n"
	"      <target dev='sda' bus='sata'/>\n"
	"      <readonly/>\n"
	"    </disk>\n"
	"    <disk type='network' device='disk'>\n"
	"      <driver name='qemu' type='raw'/>\n"
	"      <source protocol='rbd' name='pool/image'>\n"
	"        <host name='ceph1' port='6789'/>\n"
	"      </source>\n"
	"      <target dev='vdd' bus='virtio'/>\n"
	"    </disk>\n"
	"    <disk type='block' device='disk'>\n"
	"      <driver name='qemu' type='qcow2'/>\n"
	"      <source dev='/dev/vg0/guest1-qcow'/>\n"
	"      <target dev='vde' bus='virtio'/>\n"
	"    </disk>\n"
	"    <disk type='block' device='disk'>\n"
	"      <driver name='qemu' type='raw'/>\n"
	"      <source dev='/dev/mapper/vg1-big'/>\n"
	"      <target dev='sdb' bus='scsi'/>\n"
	"      <blockio logical_block_size='4096' physical_block_size='4096'/>\n"
	"    </disk>\n"
	"    <controller type='sata' index='0'/>\n"
	"    <interface type='network'><source network='default'/>"
	"<model type='virtio'/></interface>\n"
	"  </devices>\n"
	"  <qemu:commandline><qemu:arg value='-s'/></qemu:commandline>\n"
	"</domain>\n";

static void assert_file_disk(const struct snapfs_xml_disk *d, const char *target,
			     const char *format, const char *file)
{
	assert_string_equal(d->target, target);
	assert_string_equal(d->format, format);
	assert_int_equal(d->kind, SNAPFS_SOURCE_FILE);
	assert_string_equal(d->dev, file);
	assert_null(d->pool);
	assert_null(d->volume);
	assert_int_equal(d->sector_size, 512);
}

static void assert_realistic(const struct snapfs_xml_disks *d)
{
	assert_int_equal(d->n, 6);
	assert_dev_disk(&d->disk[0], "vda", "raw", "/dev/vg0/guest1", 512);
	assert_string_equal(d->disk[1].target, "vdb");
	assert_string_equal(d->disk[1].format, "raw");
	assert_int_equal(d->disk[1].kind, SNAPFS_SOURCE_POOL);
	assert_null(d->disk[1].dev);
	assert_string_equal(d->disk[1].pool, "vg0");
	assert_string_equal(d->disk[1].volume, "guest1-data");
	assert_int_equal(d->disk[1].sector_size, 512);
	assert_file_disk(&d->disk[2], "vdc", "qcow2",
			 "/var/lib/libvirt/images/guest1-scratch.qcow2");
	/* A network disk: only the backup API serves it; its source is shown. */
	assert_string_equal(d->disk[3].target, "vdd");
	assert_int_equal(d->disk[3].kind, SNAPFS_SOURCE_NETWORK);
	assert_string_equal(d->disk[3].dev, "rbd:pool/image");
	assert_dev_disk(&d->disk[4], "vde", "qcow2", "/dev/vg0/guest1-qcow", 512);
	assert_dev_disk(&d->disk[5], "sdb", "raw", "/dev/mapper/vg1-big", 4096);
}

static void test_realistic_domain(void **state UNUSED)
{
	struct result r;

	run(realistic_xml, &r);
	assert_int_equal(r.rc, 0);
	assert_realistic(&r.d);
	assert_null(strstr(r.log, "disk vdc"));
	assert_logged(&r,
		      "snapfs: debug: guest guest1: disk sda (device cdrom, type block) "
		      "skipped: not a disk device\n");
	assert_null(strstr(r.log, "disk vdd"));
	assert_null(strstr(r.log, "vdz"));
	assert_null(strstr(r.log, "warning"));
	assert_only_snapfs_lines(r.log);
	result_free(&r);
}

static void test_skipped_kinds(void **state UNUSED)
{
	static const char *const disks[] = {
		"<disk type='dir' device='disk'><source dir='/srv'/><target "
		"dev='hda'/></disk>",
		"<disk type='nvme' device='disk'><source type='pci' managed='yes' "
		"namespace='1'/><target dev='vda'/></disk>",
		"<disk type='vhostuser' device='disk'><source type='unix' path='/s'/>"
		"<target dev='vda'/></disk>",
		"<disk device='disk'><source dev='/dev/vg0/x'/><target "
		"dev='vda'/></disk>",
		"<disk type='block' device='floppy'><source dev='/dev/fd0'/>"
		"<target dev='fda'/></disk>",
		"<disk type='block' device='lun'><source dev='/dev/sdc'/><target "
		"dev='sdc'/>"
		"</disk>",
		"<disk type='block' device='disk'><target dev='vda'/></disk>",
		"<disk type='block' device='disk'><source dev=''/><target "
		"dev='vda'/></disk>",
		"<disk type='block' device='disk'><source/><target dev='vda'/></disk>",
		"<disk type='volume' device='disk'><source pool='vg0'/><target "
		"dev='vda'/></disk>",
		"<disk type='volume' device='disk'><source volume='v'/><target "
		"dev='vda'/></disk>",
		/* a source nested in backingStore is not the disk's own */
		"<disk type='block' device='disk'><backingStore type='block'>"
		"<source dev='/dev/vg0/base'/></backingStore><target dev='vda'/></disk>",
		/* elements in another namespace are not libvirt's */
		"<x:disk xmlns:x='urn:x' type='block' device='disk'><x:source "
		"dev='/dev/a'/>"
		"<x:target dev='vda'/></x:disk>",
		"<disk type='block' device='disk' xmlns:x='urn:x'><x:source "
		"dev='/dev/a'/>"
		"<target dev='vda'/></disk>",
	};
	size_t i;

	for (i = 0; i < sizeof(disks) / sizeof(disks[0]); i++) {
		struct result r;

		run_devices(disks[i], &r);
		assert_int_equal(r.rc, 0);
		assert_int_equal(r.d.n, 0);
		assert_null(r.d.disk);
		assert_null(strstr(r.log, "warning"));
		if (strncmp(disks[i], "<x:", 3))
			assert_logged(&r, "snapfs: debug: guest guest1: disk ");
		result_free(&r);
	}
}

static void test_skip_reasons(void **state UNUSED)
{
	struct result r;

	run_devices("<disk type='block' device='floppy'><target dev='fda'/></disk>"
		    "<disk type='block'><source dev=''/><target dev='vdb'/></disk>"
		    "<disk device='disk'><target dev='vdc'/></disk>"
		    "<disk type='file'><source file=''/><target dev='vdd'/></disk>"
		    "<disk type='volume'><source pool='p'/></disk>",
		    &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.d.n, 0);
	assert_logged(&r, "guest guest1: disk fda (device floppy, type block) skipped: "
			  "not a disk device\n");
	assert_logged(&r, "guest guest1: disk vdb (device disk, type block) skipped: "
			  "no <source dev>\n");
	assert_logged(&r, "guest guest1: disk vdc (device disk, type (none)) skipped: "
			  "no <source file>\n");
	assert_logged(&r, "guest guest1: disk vdd (device disk, type file) skipped: "
			  "no <source file>\n");
	assert_logged(&r, "guest guest1: disk (none) (device disk, type volume) skipped: "
			  "no <source pool volume>\n");
	result_free(&r);
}

static void test_device_missing_is_disk(void **state UNUSED)
{
	struct result r;

	run_devices(
		"<disk type='block'><source dev='/dev/vg0/a'/><target dev='vda'/></disk>"
		"<disk type='volume'><source pool='p' volume='v'/><target dev='vdb'/>"
		"</disk>",
		&r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.d.n, 2);
	assert_dev_disk(&r.d.disk[0], "vda", "raw", "/dev/vg0/a", 512);
	assert_int_equal(r.d.disk[1].kind, SNAPFS_SOURCE_POOL);
	assert_string_equal(r.d.disk[1].pool, "p");
	assert_string_equal(r.d.disk[1].volume, "v");
	result_free(&r);
}

static void test_no_disks(void **state UNUSED)
{
	static const char *const docs[] = {
		"<domain type='kvm'><name>g</name></domain>",
		"<domain/>",
		"<domain><devices/></domain>",
		("<domain><disk type='block'><source dev='/dev/a'/><target "
		 "dev='vda'/></disk>"
		 "</domain>"),
	};
	size_t i;

	for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		struct result r;

		run(docs[i], &r);
		assert_int_equal(r.rc, 0);
		assert_int_equal(r.d.n, 0);
		assert_null(r.d.disk);
		result_free(&r);
	}
}

/* ---- checks on the values ---------------------------------------------- */

static void test_qcow2_format(void **state UNUSED)
{
	assert_block_kept("vda", "/dev/vg0/q", "qcow2", NULL, 512);
	assert_block_kept("vda", "/dev/vg0/q", "raw", NULL, 512);
	assert_block_kept("vda", "/dev/vg0/q", "0123456789abcdef", NULL, 512);
}

static void test_bad_format(void **state UNUSED)
{
	static const char *const bad[] = {
		"QCOW2", "raw;x", "qcow 2", "", "0123456789abcdefg", "r&#10;"
	};
	const char *why = "skipped: driver type is not 1 to 16 of [a-z0-9]\n";
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_block_skipped("vda", "/dev/vg0/q", bad[i], NULL, why);
}

static void test_blockio(void **state UNUSED)
{
	assert_block_kept("vda", "/dev/vg0/a", NULL, "512", 512);
	assert_block_kept("vda", "/dev/vg0/a", NULL, "1024", 1024);
	assert_block_kept("vda", "/dev/vg0/a", NULL, "2048", 2048);
	assert_block_kept("vda", "/dev/vg0/a", "raw", "4096", 4096);
	/* blockio without logical_block_size keeps 512 */
	assert_block_kept("vda", "/dev/vg0/a", NULL, NULL, 512);
}

static void test_bad_blockio(void **state UNUSED)
{
	static const char *const bad[] = {
		"4097", "256", "8192", "0", "-512", " 512", "512 ", "0512", "0x200", "",
		"1e3", "768", "4096abc", "99999999999999999999", "+512",
	};
	const char *why =
		"disk vda skipped: blockio logical_block_size is not 512, 1024, "
		"2048 or 4096\n";
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_block_skipped("vda", "/dev/vg0/a", NULL, bad[i], why);
}

static void test_hostile_targets(void **state UNUSED)
{
	char *long_name = repeat('a', 300);
	char *shown =
		xasprintf("disk %.76s... skipped: target name is empty or longer than "
			  "32 bytes\n",
			  long_name);
	const char *chars = "skipped: target name has bytes other than [A-Za-z0-9_-]\n";

	assert_block_skipped("../x", "/dev/vg0/a", NULL, NULL, "disk ../x ");
	assert_block_skipped("../x", "/dev/vg0/a", NULL, NULL, chars);
	assert_block_skipped("a/b", "/dev/vg0/a", NULL, NULL, "disk a/b ");
	assert_block_skipped("a/b", "/dev/vg0/a", NULL, NULL, chars);
	assert_block_skipped(
		"", "/dev/vg0/a", NULL, NULL,
		"disk (empty) skipped: target name is empty or longer than 32 "
		"bytes\n");
	assert_block_skipped(long_name, "/dev/vg0/a", NULL, NULL, shown);
	assert_block_skipped("-rf", "/dev/vg0/a", NULL, NULL,
			     "disk -rf skipped: target name starts with '-'\n");
	/* a character reference keeps the newline; the log line shows it escaped */
	assert_block_skipped("vd&#10;a", "/dev/vg0/a", NULL, NULL, "disk vd\\x0aa ");
	assert_block_skipped("vd&#10;a", "/dev/vg0/a", NULL, NULL, chars);
	/* a literal newline is normalised to a space by XML */
	assert_block_skipped("vd\na", "/dev/vg0/a", NULL, NULL, "disk vd a ");
	assert_block_skipped("vd\xc3\xa9", "/dev/vg0/a", NULL, NULL,
			     "disk vd\\xc3\\xa9 ");
	assert_block_skipped("vd.a", "/dev/vg0/a", NULL, NULL, chars);
	assert_block_skipped("vd a", "/dev/vg0/a", NULL, NULL, chars);
	assert_block_skipped("vd%2e", "/dev/vg0/a", NULL, NULL, chars);
	free(shown);
	free(long_name);
}

static void test_target_limits(void **state UNUSED)
{
	char *t32 = repeat('b', 32);
	char *t33 = repeat('b', 33);

	assert_block_kept(t32, "/dev/vg0/a", NULL, NULL, 512);
	assert_block_skipped(t33, "/dev/vg0/a", NULL, NULL,
			     "target name is empty or longer than 32 bytes\n");
	assert_block_kept("a", "/dev/vg0/a", NULL, NULL, 512);
	assert_block_kept("Disk_0-x", "/dev/vg0/a", NULL, NULL, 512);
	assert_block_kept("_x", "/dev/vg0/a", NULL, NULL, 512);
	free(t32);
	free(t33);
}

static void test_missing_target(void **state UNUSED)
{
	const char *why = "disk (none) skipped: no <target dev>\n";

	assert_skipped_warning(
		"<disk type='block' device='disk'><source dev='/dev/vg0/a'/>"
		"</disk>",
		why);
	assert_skipped_warning(
		"<disk type='block' device='disk'><source dev='/dev/vg0/a'/>"
		"<target bus='virtio'/></disk>",
		why);
	assert_skipped_warning("<disk type='volume' device='disk'><source pool='p' "
			       "volume='v'/></disk>",
			       why);
}

static void test_duplicate_targets(void **state UNUSED)
{
	struct result r;

	run_devices(
		"<disk type='block'><source dev='/dev/vg0/first'/><target dev='vda'/>"
		"</disk>"
		"<disk type='block'><source dev='/dev/vg0/other'/><target dev='vdb'/>"
		"</disk>"
		"<disk type='volume'><source pool='p' volume='v'/><target dev='vda'/>"
		"</disk>"
		"<disk type='block'><source dev='/dev/vg0/second'/><target dev='vda'/>"
		"</disk>",
		&r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.d.n, 2);
	assert_dev_disk(&r.d.disk[0], "vda", "raw", "/dev/vg0/first", 512);
	assert_dev_disk(&r.d.disk[1], "vdb", "raw", "/dev/vg0/other", 512);
	assert_logged(&r,
		      "snapfs: warning: guest guest1: disk vda skipped: another disk has "
		      "this target\nsnapfs: warning: guest guest1: disk vda skipped: "
		      "another disk has this target\n");
	result_free(&r);
}

static void test_bad_source_dev(void **state UNUSED)
{
	static const struct {
		const char *dev, *why;
	} bad[] = {
		{ "dev/vg0/a", "source dev is not an absolute path\n" },
		{ "vg0/a", "source dev is not an absolute path\n" },
		{ " /dev/vg0/a", "source dev is not an absolute path\n" },
		{ "/dev/vg0/../../etc/shadow", "source dev has a '..' component\n" },
		{ "/dev/..", "source dev has a '..' component\n" },
		{ "/../dev/vg0/a", "source dev has a '..' component\n" },
		{ "/dev/vg0/a&#10;", "source dev has control characters\n" },
		{ "/dev/vg0/a&#9;b", "source dev has control characters\n" },
	};
	char *tail = repeat('x', 4096 - 10);
	char *long_dev = xasprintf("/dev/vg0/%s", tail);
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_block_skipped("vda", bad[i].dev, NULL, NULL, bad[i].why);
	/* 4095 bytes is the longest kept */
	assert_int_equal(strlen(long_dev), 4095);
	assert_block_kept("vda", long_dev, NULL, NULL, 512);
	free(long_dev);
	long_dev = xasprintf("/dev/vg0/%sy", tail);
	assert_block_skipped("vda", long_dev, NULL, NULL,
			     "source dev is 4096 bytes or longer\n");
	free(long_dev);
	free(tail);
}

/* <source file>: the same checks as <source dev>, with their own words. */
static void test_source_file(void **state UNUSED)
{
	static const struct {
		const char *file, *why;
	} bad[] = {
		{ "images/a.img", "source file is not an absolute path\n" },
		{ "/var/lib/libvirt/images/../../../etc/shadow",
		  "source file has a '..' component\n" },
		{ "/srv/a&#10;.img", "source file has control characters\n" },
	};
	char *tail = repeat('x', 4096 - 5);
	char *long_file = xasprintf("/srv/%s", tail);
	struct result r;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *disk = xasprintf("<disk type='file' device='disk'><source file='%s'/>"
				       "<target dev='vda'/></disk>",
				       bad[i].file);

		run_devices(disk, &r);
		assert_int_equal(r.rc, 0);
		assert_int_equal(r.d.n, 0);
		assert_logged(&r, "snapfs: warning: guest guest1: disk vda skipped: ");
		assert_logged(&r, bad[i].why);
		result_free(&r);
		free(disk);
	}
	/* 4096 bytes with the NUL is too long, as for a dev. */
	char *disk = xasprintf("<disk type='file'><source file='%s'/><target dev='vda'/></disk>",
			       long_file);

	run_devices(disk, &r);
	assert_int_equal(r.d.n, 0);
	assert_logged(&r, "source file is 4096 bytes or longer\n");
	result_free(&r);
	free(disk);
	free(long_file);
	free(tail);
	/* type absent is libvirt's default, file; the format is the driver's. */
	run_devices("<disk device='disk'><driver type='qcow2'/><source file='/srv/a b.qcow2'/>"
		    "<target dev='vda'/></disk>"
		    "<disk type='file' device='disk'><source file='/srv/b.img'/>"
		    "<target dev='vdb'/></disk>",
		    &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.d.n, 2);
	assert_file_disk(&r.d.disk[0], "vda", "qcow2", "/srv/a b.qcow2");
	assert_file_disk(&r.d.disk[1], "vdb", "raw", "/srv/b.img");
	result_free(&r);
}

static void test_good_source_dev(void **state UNUSED)
{
	assert_block_kept("vda", "/dev/vg0/..x", NULL, NULL, 512);
	assert_block_kept("vda", "/dev/vg0/x..", NULL, NULL, 512);
	assert_block_kept("vda", "/dev/./vg0/x", NULL, NULL, 512);
	assert_block_kept("vda", "/", NULL, NULL, 512);
}

static void test_predefined_entities_in_values(void **state UNUSED)
{
	struct result r;

	run_devices("<disk type='block'><source dev='/dev/vg0/a&amp;b&#x41;&apos;'/>"
		    "<target dev='vda'/></disk>",
		    &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.d.n, 1);
	assert_dev_disk(&r.d.disk[0], "vda", "raw", "/dev/vg0/a&bA'", 512);
	result_free(&r);
}

static void assert_pool_skipped(const char *pool, const char *volume)
{
	char *disk = xasprintf("<disk type='volume' device='disk'><source pool='%s' "
			       "volume='%s'/><target dev='vdb'/></disk>",
			       pool, volume);

	assert_skipped_warning(disk,
			       "disk vdb skipped: source pool or volume is empty, too "
			       "long, or has '/', '.', '..' or control characters\n");
	free(disk);
}

static void test_bad_pool_volume(void **state UNUSED)
{
	char *n255 = repeat('p', 255);
	char *n256 = repeat('p', 256);
	struct result r;
	char *disk;

	assert_pool_skipped("vg0", "a/b");
	assert_pool_skipped("a/b", "v");
	assert_pool_skipped("", "v");
	assert_pool_skipped("vg0", "");
	assert_pool_skipped("vg0", "..");
	assert_pool_skipped(".", "v");
	assert_pool_skipped("vg0", "a&#9;b");
	assert_pool_skipped("vg0", "a&#10;b");
	assert_pool_skipped(n256, "v");
	assert_pool_skipped("vg0", n256);

	disk = xasprintf("<disk type='volume'><source pool='%s' volume='%s'/>"
			 "<target dev='vdb'/></disk>",
			 n255, n255);
	run_devices(disk, &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.d.n, 1);
	assert_string_equal(r.d.disk[0].pool, n255);
	assert_string_equal(r.d.disk[0].volume, n255);
	result_free(&r);
	free(disk);
	free(n255);
	free(n256);
}

static void test_one_bad_disk_keeps_the_rest(void **state UNUSED)
{
	struct result r;

	run_devices(
		"<disk type='block'><source dev='/dev/vg0/a'/><target dev='vda'/></disk>"
		"<disk type='block'><source dev='rel'/><target dev='vdb'/></disk>"
		"<disk type='block'><source dev='/dev/vg0/c'/><target dev='vdc'/>"
		"<blockio logical_block_size='2048'/></disk>",
		&r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.d.n, 2);
	assert_dev_disk(&r.d.disk[0], "vda", "raw", "/dev/vg0/a", 512);
	assert_dev_disk(&r.d.disk[1], "vdc", "raw", "/dev/vg0/c", 2048);
	assert_logged(&r, "warning: guest guest1: disk vdb skipped: source dev is not an "
			  "absolute path\n");
	result_free(&r);
}

static void test_guest_name_escaped(void **state UNUSED)
{
	struct result r;

	run_as("evil\nsnapfs: error: forged",
	       "<domain><devices><disk type='block'><source dev='x'/><target dev='vda'/>"
	       "</disk></devices></domain>",
	       &r);
	assert_int_equal(r.rc, 0);
	assert_logged(&r,
		      "warning: guest evil\\x0asnapfs: error: forged: disk vda skipped");
	assert_null(strstr(r.log, "\nsnapfs: error"));
	result_free(&r);
}

/* 1100 disks, the last 100 in a second <devices>. */
static void test_too_many_disks(void **state UNUSED)
{
	size_t len = 0, cap = 1100 * 100 + 100, i;
	char *xml = malloc(cap);
	struct result r;

	assert_non_null(xml);
	len += snprintf(xml + len, cap - len, "<domain><devices>");
	for (i = 0; i < 1100; i++)
		len += snprintf(xml + len, cap - len,
				"%s<disk type='block'><source dev='/dev/vg/l%zu'/>"
				"<target dev='d%zu'/></disk>",
				i == 1000 ? "</devices><devices>" : "", i, i);
	snprintf(xml + len, cap - len, "</devices></domain>");
	run(xml, &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.d.n, 1024);
	assert_string_equal(r.d.disk[1023].target, "d1023");
	assert_string_equal(r.d.disk[1023].dev, "/dev/vg/l1023");
	assert_logged(&r, "warning: guest guest1: more than 1024 disks; the rest are "
			  "ignored\n");
	result_free(&r);
	free(xml);
}

/* ---- documents refused as a whole -------------------------------------- */

static void test_malformed(void **state UNUSED)
{
	struct result r;

	assert_error("<domain><devices></domain>", -EINVAL);
	assert_error("<domain></domian>", -EINVAL);
	assert_error("hello", -EINVAL);
	assert_error("<domain><devices><disk type='block'></devices></domain>", -EINVAL);
	assert_error("<domain a='1' a='2'/>", -EINVAL);
	assert_error("<domain/><domain/>", -EINVAL);
	assert_error("<domain>&#0;</domain>", -EINVAL);
	assert_error("<domain><devices><disk type='block'><source dev='/dev/&undef;'/>"
		     "<target dev='vda'/></disk></devices></domain>",
		     -EINVAL);
	/* not UTF-8, whatever the declaration says */
	assert_error(
		"<?xml version='1.0' encoding='ISO-8859-1'?><domain><name>\xe9</name>"
		"</domain>",
		-EINVAL);

	run("<domain><devices></domain>", &r);
	assert_logged(&r,
		      "snapfs: debug: guest guest1: domain XML does not parse: line 1: ");
	result_free(&r);
}

static void test_declared_encoding_ignored(void **state UNUSED)
{
	struct result r;

	run("<?xml version='1.0' encoding='ISO-8859-1'?><domain><devices>"
	    "<disk type='volume'><source pool='p' volume='v\xc3\xa9'/><target dev='vda'/>"
	    "</disk></devices></domain>",
	    &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.d.n, 1);
	assert_string_equal(r.d.disk[0].volume, "v\xc3\xa9");
	result_free(&r);
}

static void test_not_domain(void **state UNUSED)
{
	struct result r;

	assert_error("<network><name>default</name></network>", -EINVAL);
	assert_error("<domainx/>", -EINVAL);
	assert_error("<x:domain xmlns:x='urn:x'><devices/></x:domain>", -EINVAL);
	assert_error("<domain xmlns='http://example.org/'><devices/></domain>", -EINVAL);
	assert_error("<!-- only a comment -->", -EINVAL);

	run("<network/>", &r);
	assert_logged(&r, "snapfs: debug: guest guest1: XML root is not <domain>\n");
	result_free(&r);
}

static void test_empty(void **state UNUSED)
{
	struct result r;

	assert_error("", -EINVAL);
	assert_error(" ", -EINVAL);
	assert_error(NULL, -EINVAL);
	run("", &r);
	assert_logged(&r, "debug: guest guest1: domain XML is empty\n");
	result_free(&r);
}

static void test_error_leaves_out_empty(void **state UNUSED)
{
	struct snapfs_xml_disk junk;
	struct snapfs_xml_disks d = { .disk = &junk, .n = 7 };
	struct capture c;

	capture_start(&c);
	assert_int_equal(snapfs_domxml_disks("guest1", "<domain>", &d), -EINVAL);
	free(capture_end(&c));
	assert_null(d.disk);
	assert_int_equal(d.n, 0);
	snapfs_domxml_disks_free(&d);
	snapfs_domxml_disks_free(NULL);
}

/* libxml2 caps one text or comment node at 10 MB, so the filler is blanks. */
static void test_size_limit(void **state UNUSED)
{
	static const char head[] = "<domain><devices><disk type='block'>"
				   "<source dev='/dev/vg0/a'/><target dev='vda'/></disk>"
				   "</devices></domain>";
	char *xml = malloc(MAX_SIZE + 2);
	struct result r;

	assert_non_null(xml);
	memcpy(xml, head, strlen(head));
	memset(xml + strlen(head), ' ', MAX_SIZE - strlen(head));
	xml[MAX_SIZE] = '\0';
	run(xml, &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.d.n, 1);
	assert_dev_disk(&r.d.disk[0], "vda", "raw", "/dev/vg0/a", 512);
	result_free(&r);

	memcpy(xml + MAX_SIZE, " ", 2);
	assert_error(xml, -E2BIG);
	run(xml, &r);
	assert_logged(&r, "debug: guest guest1: domain XML is over 8388608 bytes\n");
	result_free(&r);
	free(xml);
}

/* ---- entities and DTDs ------------------------------------------------- */

static void test_billion_laughs(void **state UNUSED)
{
	static const char xml[] =
		"<?xml version='1.0'?>\n"
		"<!DOCTYPE domain [\n"
		" <!ENTITY lol 'lol'>\n"
		" <!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>\n"
		" <!ENTITY lol2 "
		"'&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>\n"
		" <!ENTITY lol3 "
		"'&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>\n"
		" <!ENTITY lol4 "
		"'&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;'>\n"
		" <!ENTITY lol5 "
		"'&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;'>\n"
		" <!ENTITY lol6 "
		"'&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;'>\n"
		" <!ENTITY lol7 "
		"'&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;'>\n"
		" <!ENTITY lol8 "
		"'&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;'>\n"
		" <!ENTITY lol9 "
		"'&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;'>\n"
		"]>\n"
		"<domain><name>&lol9;</name><devices><disk type='block'>"
		"<source dev='/dev/&lol9;'/><target "
		"dev='vda'/></disk></devices></domain>\n";
	struct result r;

	run(xml, &r);
	assert_int_equal(r.rc, -EINVAL);
	assert_int_equal(r.d.n, 0);
	assert_logged(&r,
		      "snapfs: debug: guest guest1: domain XML has a DOCTYPE; refused\n");
	assert_only_snapfs_lines(r.log);
	result_free(&r);
}

static void test_internal_entity(void **state UNUSED)
{
	assert_error("<!DOCTYPE domain [<!ENTITY d '/dev/vg0/a'>]><domain><devices>"
		     "<disk type='block'><source dev='&d;'/><target dev='vda'/></disk>"
		     "</devices></domain>",
		     -EINVAL);
	assert_error("<!DOCTYPE domain><domain/>", -EINVAL);
	assert_error(
		"<!DOCTYPE domain [<!ATTLIST target dev CDATA 'vda'>]><domain><devices>"
		"<disk type='block'><source dev='/dev/a'/><target/></disk></devices>"
		"</domain>",
		-EINVAL);
}

static void test_external_file_entity(void **state UNUSED)
{
	char path[] = "/tmp/test-domxml-XXXXXX";
	int fd = mkstemp(path);
	struct result r;
	char *xml;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "/dev/SECRET-MARKER", 18), 18);
	close(fd);
	xml = xasprintf(
		"<?xml version='1.0'?>\n"
		"<!DOCTYPE domain [<!ENTITY xxe SYSTEM 'file://%s'>]>\n"
		"<domain><name>&xxe;</name><devices><disk type='block'>"
		"<source dev='&xxe;'/><target dev='vda'/></disk></devices></domain>",
		path);
	run(xml, &r);
	assert_int_equal(r.rc, -EINVAL);
	assert_int_equal(r.d.n, 0);
	assert_null(strstr(r.log, "SECRET-MARKER"));
	assert_only_snapfs_lines(r.log);
	result_free(&r);
	free(xml);
	unlink(path);
}

/* A listener the parser would connect to if it fetched anything. */
static int listen_local(unsigned *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static void test_no_network(void **state UNUSED)
{
	unsigned port;
	int fd = listen_local(&port);
	char *docs[3];
	size_t i;

	docs[0] = xasprintf("<!DOCTYPE domain SYSTEM 'http://127.0.0.1:%u/domain.dtd'>"
			    "<domain/>",
			    port);
	docs[1] =
		xasprintf("<!DOCTYPE domain [<!ENTITY e SYSTEM 'http://127.0.0.1:%u/e'>]>"
			  "<domain><name>&e;</name></domain>",
			  port);
	docs[2] = xasprintf("<!DOCTYPE domain [<!ENTITY %% p SYSTEM "
			    "'http://127.0.0.1:%u/p'> %%p;]><domain/>",
			    port);
	for (i = 0; i < 3; i++) {
		assert_error(docs[i], -EINVAL);
		free(docs[i]);
	}
	/* a connection would be queued by now: the parse is synchronous */
	assert_int_equal(accept(fd, NULL, NULL), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	close(fd);
}

static void test_xinclude_not_processed(void **state UNUSED)
{
	struct result r;

	run("<domain xmlns:xi='http://www.w3.org/2001/XInclude'><devices>"
	    "<xi:include href='/etc/passwd' parse='text'/>"
	    "<disk type='block'><source dev='/dev/vg0/a'/><target dev='vda'/></disk>"
	    "</devices></domain>",
	    &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.d.n, 1);
	assert_dev_disk(&r.d.disk[0], "vda", "raw", "/dev/vg0/a", 512);
	result_free(&r);
}

/* ---- threads ----------------------------------------------------------- */

static void *parse_many(void *arg UNUSED)
{
	unsigned i;

	for (i = 0; i < 40; i++) {
		struct snapfs_xml_disks d;

		if (i % 4 == 3) {
			if (snapfs_domxml_disks("t", "<domain><oops></domain>", &d) !=
			    -EINVAL)
				return "malformed XML parsed";
			continue;
		}
		if (snapfs_domxml_disks("t", realistic_xml, &d) != 0)
			return "realistic XML failed";
		if (d.n != 6 || strcmp(d.disk[5].target, "sdb") ||
		    d.disk[5].sector_size != 4096)
			return "realistic XML gave other disks";
		snapfs_domxml_disks_free(&d);
	}
	return NULL;
}

/* A backup job's XML: its socket and its scratch files, nothing else. */
static void test_backup_xml(void **state UNUSED)
{
	char *socket, **scratch;
	size_t n;

	assert_int_equal(snapfs_domxml_backup(
				 "<domainbackup mode='pull'>"
				 "<server transport='unix' socket='/run/snapfs/ab/j.1/nbd.sock'/>"
				 "<disks><disk name='vda' backup='yes' type='file'>"
				 "<scratch file='/var/lib/snapfs/scratch/snapfs-ab-u-vda.qcow2'/>"
				 "</disk><disk name='vdb' backup='no'/>"
				 "<disk name='vdc' backup='yes' type='file'>"
				 "<scratch file='/s/c.qcow2'/></disk></disks></domainbackup>",
				 &socket, &scratch, &n),
			 0);
	assert_string_equal(socket, "/run/snapfs/ab/j.1/nbd.sock");
	assert_int_equal(n, 2);
	assert_string_equal(scratch[0], "/var/lib/snapfs/scratch/snapfs-ab-u-vda.qcow2");
	assert_string_equal(scratch[1], "/s/c.qcow2");
	free(socket);
	free(scratch[0]);
	free(scratch[1]);
	free(scratch);
	/* A push job over TCP has no socket; a domain is no backup job. */
	assert_int_equal(snapfs_domxml_backup("<domainbackup mode='pull'><server name='h' "
					      "port='10809'/></domainbackup>",
					      &socket, &scratch, &n),
			 0);
	assert_null(socket);
	assert_int_equal(n, 0);
	free(scratch);
	assert_int_equal(snapfs_domxml_backup("<domain/>", &socket, &scratch, &n), -EINVAL);
	assert_int_equal(snapfs_domxml_backup("<domainbackup", &socket, &scratch, &n), -EINVAL);
	assert_int_equal(snapfs_domxml_backup("<!DOCTYPE x [<!ENTITY e 'a'>]><domainbackup/>",
					      &socket, &scratch, &n),
			 -EINVAL);
}

/* The user qemu runs as, from the live XML's DAC label. */
/* Pools of files give their directory; the others, and a relative or
 * missing path, none. */
static void test_pool_dir(void **state UNUSED)
{
	static const struct {
		const char *xml, *want;
	} cases[] = {
		{ "<pool type='dir'><name>d</name><target><path>/var/lib/libvirt/images</path>"
		  "</target></pool>", "/var/lib/libvirt/images" },
		{ "<pool type='fs'><target><path>/srv/fs</path></target></pool>", "/srv/fs" },
		{ "<pool type='netfs'><target><path>/mnt/nfs</path></target></pool>", "/mnt/nfs" },
		{ "<pool type='logical'><target><path>/dev/vg0</path></target></pool>", NULL },
		{ "<pool type='iscsi'><target><path>/dev/disk/by-path</path></target></pool>", NULL },
		{ "<pool type='dir'><target><path>relative/dir</path></target></pool>", NULL },
		{ "<pool type='dir'><target/></pool>", NULL },
		{ "<domain type='dir'><target><path>/x</path></target></domain>", NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *dir = NULL;
		int rc = snapfs_domxml_pool_dir(cases[i].xml, &dir);

		if (cases[i].want) {
			assert_int_equal(rc, 0);
			assert_string_equal(dir, cases[i].want);
		} else {
			assert_int_equal(rc, -ENOENT);
			assert_null(dir);
		}
		free(dir);
	}
	assert_int_equal(snapfs_domxml_pool_dir("<pool", &(char *){ NULL }), -EINVAL);
}

static void test_dac_label(void **state UNUSED)
{
	unsigned uid = 0, gid = 0;

	assert_int_equal(snapfs_domxml_dac_label(
				 "<domain><seclabel type='dynamic' model='apparmor'><label>x</label>"
				 "</seclabel><seclabel type='dynamic' model='dac' relabel='yes'>"
				 "<label>+64055:+108</label></seclabel></domain>",
				 &uid, &gid),
			 0);
	assert_int_equal(uid, 64055);
	assert_int_equal(gid, 108);
	assert_int_equal(snapfs_domxml_dac_label("<domain><name>x</name></domain>", &uid, &gid),
			 -ENOENT);
	assert_int_equal(snapfs_domxml_dac_label("<domain><seclabel model='dac'><label>qemu:kvm"
						 "</label></seclabel></domain>",
						 &uid, &gid),
			 -EINVAL);
	assert_int_equal(snapfs_domxml_dac_label("<domain><seclabel model='dac'><label>+1:+"
						 "99999999999</label></seclabel></domain>",
						 &uid, &gid),
			 -EINVAL);
}

/* A network disk's source is kept as PROTOCOL:NAME; a hostile one is not. */
static void test_network_disk(void **state UNUSED)
{
	struct result r;

	run("<domain><name>n</name><devices><disk type='network' device='disk'>"
	    "<source protocol='nbd'><host transport='unix' socket='/s'/></source>"
	    "<target dev='vda'/></disk><disk type='network' device='disk'>"
	    "<source protocol='RBD;x' name='p/i'/><target dev='vdb'/></disk>"
	    "</devices></domain>",
	    &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.d.n, 1);
	assert_int_equal(r.d.disk[0].kind, SNAPFS_SOURCE_NETWORK);
	assert_string_equal(r.d.disk[0].dev, "nbd:");
	assert_string_equal(r.d.disk[0].format, "raw");
	assert_non_null(strstr(r.log, "disk vdb skipped: source protocol is not"));
	result_free(&r);
}

/* One rbd disk's XML: source inner is what <source> holds. */
static void run_rbd(const char *name, const char *inner, const char *disk_inner,
		    struct result *r)
{
	char *xml = xasprintf("<domain><name>n</name><devices><disk type='network' "
			      "device='disk'><driver type='qcow2'/><source protocol='rbd' "
			      "name='%s'>%s</source>%s<target dev='vda'/></disk></devices>"
			      "</domain>",
			      name, inner, disk_inner);

	run(xml, r);
	free(xml);
}

static void test_rbd_disk(void **state UNUSED)
{
	struct result r;
	const struct snapfs_rbd_spec *s;

	run_rbd("rbd/vm1-disk0",
		"<host name='10.0.0.1' port='6789'/><host name='mon2'/>"
		"<host name='fe80::1' port='3300'/>"
		"<auth username='libvirt'><secret type='ceph' uuid="
		"'2a1b9d3e-7c4f-4e55-9a11-0123456789ab'/></auth>"
		"<config file='/etc/ceph/other.conf'/>",
		"", &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.d.n, 1);
	assert_int_equal(r.d.disk[0].kind, SNAPFS_SOURCE_NETWORK);
	assert_string_equal(r.d.disk[0].dev, "rbd:rbd/vm1-disk0");
	assert_string_equal(r.d.disk[0].format, "qcow2");
	s = r.d.disk[0].rbd;
	assert_non_null(s);
	assert_string_equal(s->pool, "rbd");
	assert_string_equal(s->ns, "");
	assert_string_equal(s->image, "vm1-disk0");
	assert_string_equal(s->mon_host, "10.0.0.1:6789,mon2,[fe80::1]:3300");
	assert_string_equal(s->user, "libvirt");
	assert_string_equal(s->secret_uuid, "2a1b9d3e-7c4f-4e55-9a11-0123456789ab");
	assert_string_equal(s->secret_usage, "");
	assert_string_equal(s->conf, "/etc/ceph/other.conf");
	assert_string_equal(s->key, "");
	result_free(&r);

	/* A namespace; <auth> under the disk, as older XML has it. */
	run_rbd("pool/ns1/img", "",
		"<auth username='admin'><secret type='ceph' usage='client.admin secret'/></auth>",
		&r);
	s = r.d.disk[0].rbd;
	assert_non_null(s);
	assert_string_equal(s->pool, "pool");
	assert_string_equal(s->ns, "ns1");
	assert_string_equal(s->image, "img");
	assert_string_equal(s->user, "admin");
	assert_string_equal(s->secret_usage, "client.admin secret");
	assert_string_equal(s->mon_host, "");
	assert_string_equal(s->conf, "");
	result_free(&r);

	/* A snapshot named in the XML is not snapshotted again. */
	run_rbd("rbd/img", "<snapshot name='s1'/>", "", &r);
	assert_int_equal(r.d.n, 1);
	assert_null(r.d.disk[0].rbd);
	result_free(&r);
}

static void test_rbd_refused(void **state UNUSED)
{
	static const struct {
		const char *name, *inner, *why;
	} cases[] = {
		{ "img", "", "is not POOL/IMAGE" },
		{ "rbd/", "", "is not POOL/IMAGE" },
		{ "/img", "", "is not POOL/IMAGE" },
		{ "a/b/c/d", "", "is not POOL/IMAGE" },
		{ "rbd/img@snap", "", "is not POOL/IMAGE" },
		{ "rbd/img:conf=/etc/passwd", "", "is not POOL/IMAGE" },
		{ "rbd/img", "<host name='a;b'/>", "<host name> is not" },
		{ "rbd/img", "<host name='a' port='70000'/>", "<host port> is not" },
		{ "rbd/img", "<host name='a' port='x'/>", "<host port> is not" },
		{ "rbd/img", "<auth username='a b'/>", "<auth username> is not" },
		{ "rbd/img", "<auth username='a'><secret type='ceph' uuid='zz'/></auth>",
		  "<secret uuid> is not" },
		{ "rbd/img", "<config file='ceph.conf'/>", "<config file> is not" },
		{ "rbd/img",
		  "<host name='a'/><host name='a'/><host name='a'/><host name='a'/><host name='a'/>"
		  "<host name='a'/><host name='a'/><host name='a'/><host name='a'/>",
		  "more than 8" },
	};
	char *long_image = repeat('i', 96), *name = xasprintf("rbd/%s", long_image);
	struct result r;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		run_rbd(cases[i].name, cases[i].inner, "", &r);
		/* The disk stays (the backup API may serve it), unsnapshotted. */
		assert_int_equal(r.d.n, 1);
		assert_null(r.d.disk[0].rbd);
		assert_logged(&r, "no RBD image snapfs can snapshot");
		assert_logged(&r, cases[i].why);
		result_free(&r);
	}
	run_rbd(name, "", "", &r);
	assert_null(r.d.disk[0].rbd);
	result_free(&r);
	/* A control byte refuses the disk outright. */
	run_rbd("rbd/im&#10;g", "", "", &r);
	assert_int_equal(r.d.n, 0);
	assert_logged(&r, "control characters");
	result_free(&r);
	free(name);
	free(long_image);
}

static void test_threads(void **state UNUSED)
{
	pthread_t t[8];
	struct capture c;
	void *ret;
	size_t i;

	capture_start(&c);
	for (i = 0; i < 8; i++)
		assert_int_equal(pthread_create(&t[i], NULL, parse_many, NULL), 0);
	for (i = 0; i < 8; i++) {
		assert_int_equal(pthread_join(t[i], &ret), 0);
		if (ret)
			fail_msg("thread %zu: %s", i, (const char *)ret);
	}
	free(capture_end(&c));
}

static int setup(void **state UNUSED)
{
	snapfs_log_init(false, SNAPFS_DBG_GUESTS);
	return 0;
}

static int teardown(void **state UNUSED)
{
	xmlCleanupParser();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_realistic_domain),
		cmocka_unit_test(test_skipped_kinds),
		cmocka_unit_test(test_rbd_disk),
		cmocka_unit_test(test_rbd_refused),
		cmocka_unit_test(test_skip_reasons),
		cmocka_unit_test(test_source_file),
		cmocka_unit_test(test_device_missing_is_disk),
		cmocka_unit_test(test_no_disks),
		cmocka_unit_test(test_qcow2_format),
		cmocka_unit_test(test_bad_format),
		cmocka_unit_test(test_blockio),
		cmocka_unit_test(test_bad_blockio),
		cmocka_unit_test(test_hostile_targets),
		cmocka_unit_test(test_target_limits),
		cmocka_unit_test(test_missing_target),
		cmocka_unit_test(test_duplicate_targets),
		cmocka_unit_test(test_bad_source_dev),
		cmocka_unit_test(test_good_source_dev),
		cmocka_unit_test(test_predefined_entities_in_values),
		cmocka_unit_test(test_bad_pool_volume),
		cmocka_unit_test(test_one_bad_disk_keeps_the_rest),
		cmocka_unit_test(test_guest_name_escaped),
		cmocka_unit_test(test_too_many_disks),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_declared_encoding_ignored),
		cmocka_unit_test(test_not_domain),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_error_leaves_out_empty),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_billion_laughs),
		cmocka_unit_test(test_internal_entity),
		cmocka_unit_test(test_external_file_entity),
		cmocka_unit_test(test_no_network),
		cmocka_unit_test(test_backup_xml),
		cmocka_unit_test(test_dac_label),
		cmocka_unit_test(test_network_disk),
		cmocka_unit_test(test_xinclude_not_processed),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_pool_dir),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
