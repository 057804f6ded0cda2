/* Run a command with a fixed argv, never through a shell, with a clean
 * environment and a bounded time. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "snapfs.h"

struct outbuf {
	char *data;
	size_t len, cap;
};

static int outbuf_append(struct outbuf *b, const char *p, size_t n)
{
	/* Bound what a misbehaving command can make us hold. */
	if (b->len + n > 16 << 20)
		return -E2BIG;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *d;

		while (cap < b->len + n + 1)
			cap *= 2;
		d = realloc(b->data, cap);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* In the child: only async-signal-safe calls until execve. */
static void child(const char *const argv[], char *const envp[], int outfd, int errfd)
{
	int devnull = open("/dev/null", O_RDONLY);
	sigset_t all;

	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(outfd, 1) < 0 || dup2(errfd, 2) < 0)
		_exit(127);
	if (close_range(3, ~0U, 0) < 0)
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	execve(argv[0], (char *const *)argv, envp);
	_exit(127);
}

int snapfs_exec(const char *const argv[], int timeout_ms, struct snapfs_exec_result *res)
{
	struct outbuf out = { 0 }, err = { 0 };
	int po[2] = { -1, -1 }, pe[2] = { -1, -1 };
	int64_t deadline = now_ms() + timeout_ms;
	int status = 0, rc = 0;
	bool timed_out = false;
	pid_t pid;

	/* A fixed environment; LVM_SYSTEM_DIR is the one variable passed on, so
	 * that an admin (or a test) can point LVM at its own configuration. */
	CLEANUP_FREE char *lvm_dir = NULL;
	const char *sysdir = getenv("LVM_SYSTEM_DIR");
	char *envp[] = {
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"LC_ALL=C",
		"LVM_SUPPRESS_FD_WARNINGS=1",
		NULL,
		NULL,
	};

	memset(res, 0, sizeof(*res));
	if (sysdir && asprintf(&lvm_dir, "LVM_SYSTEM_DIR=%s", sysdir) > 0)
		envp[3] = lvm_dir;
	if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
		rc = -errno;
		goto out_close;
	}
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		goto out_close;
	}
	if (pid == 0)
		child(argv, envp, po[1], pe[1]);
	close(po[1]);
	close(pe[1]);
	po[1] = pe[1] = -1;

	struct pollfd pfd[2] = { { po[0], POLLIN, 0 }, { pe[0], POLLIN, 0 } };
	int open_fds = 2;

	while (open_fds > 0) {
		int64_t left = deadline - now_ms();
		char buf[8192];

		if (left <= 0 && !timed_out) {
			/* lvm finishes or backs out of what it is doing on SIGINT
			 * (a suspended origin must be resumed): ask first, and
			 * kill only if it does not end within a grace period. */
			timed_out = true;
			kill(pid, SIGINT);
			deadline = now_ms() + (timeout_ms < 30000 ? timeout_ms : 30000);
			continue;
		}
		if (left <= 0) {
			kill(pid, SIGKILL);
			break;
		}
		if (poll(pfd, 2, (int)left) < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			kill(pid, SIGKILL);
			break;
		}
		for (int i = 0; i < 2; i++) {
			ssize_t n;

			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			n = read(pfd[i].fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				close(pfd[i].fd);
				pfd[i].fd = -1;
				open_fds--;
				continue;
			}
			if (outbuf_append(i ? &err : &out, buf, (size_t)n) < 0 && !rc) {
				rc = -E2BIG;
				kill(pid, SIGKILL);
			}
		}
	}
	for (int i = 0; i < 2; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	po[0] = pe[0] = -1;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (timed_out)
		rc = -ETIMEDOUT;
	res->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	if (res->status == 127 && !out.len && !err.len)
		rc = rc ? rc : -ENOENT;
	if (!out.data)
		outbuf_append(&out, "", 0);
	if (!err.data)
		outbuf_append(&err, "", 0);
	while (err.len && (err.data[err.len - 1] == '\n' || err.data[err.len - 1] == ' '))
		err.data[--err.len] = '\0';
	res->out = out.data;
	res->err = err.data;
	if (!res->out || !res->err)
		rc = rc ? rc : -ENOMEM;
	/* On failure the caller has nothing to free. */
	if (rc < 0)
		snapfs_exec_result_free(res);
	return rc;

out_close:
	for (int i = 0; i < 2; i++) {
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
	}
	return rc;
}

void snapfs_exec_result_free(struct snapfs_exec_result *res)
{
	free(res->out);
	free(res->err);
	res->out = res->err = NULL;
}
