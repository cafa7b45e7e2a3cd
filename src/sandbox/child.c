/*
 * The sandbox's PID 1. Every hardening step, in order, reads top to bottom in contain() (as nsjail's
 * containProc() does); the command is then forked and exec'd, and PID 1 reaps until it exits. When
 * PID 1 exits, the kernel kills every process left in the PID namespace: nothing survives the call,
 * however it daemonised.
 */
#include "sandbox/child.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* The capabilities a command keeps inside its user namespace: Docker's default set less MKNOD,
 * NET_RAW and AUDIT_WRITE. They act on the sandbox's own files and processes only. */
static const int kept_caps[] = {
    CAP_CHOWN,	CAP_DAC_OVERRIDE, CAP_FOWNER,  CAP_FSETID,	     CAP_KILL,	     CAP_SETGID,
    CAP_SETUID, CAP_SETPCAP,	  CAP_SETFCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT,
};

int
lms_child_fail(struct lms_child_msg *msg, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg->what, sizeof(msg->what), fmt, ap);
	va_end(ap);
	msg->type = LMS_CHILD_SETUP_FAILED;
	msg->errnum = errnum;
	return -1;
}

static void
report(int fd, const struct lms_child_msg *msg)
{
	/* One write of less than PIPE_BUF bytes is atomic. */
	while (write(fd, msg, sizeof(*msg)) < 0 && errno == EINTR)
		;
}

/* The parent sends one byte once the uid maps are written, and a second once the cgroup holds us:
 * the mounts are built in between, while the parent does the (slow) cgroup move. */
static int
wait_for_parent(const struct lms_child_ctx *ctx, const char *what, struct lms_child_msg *msg)
{
	char byte;
	ssize_t n;
	while ((n = read(ctx->sync_fd, &byte, 1)) < 0 && errno == EINTR)
		;
	if (n != 1)
		return lms_child_fail(msg, n < 0 ? errno : EPIPE, "wait for the parent to %s", what);
	return 0;
}

static int
become_root(const struct lms_child_ctx *ctx, struct lms_child_msg *msg)
{
	if (ctx->privileged && setgroups(0, NULL) < 0)
		return lms_child_fail(msg, errno, "setgroups");
	if (setresgid(0, 0, 0) < 0)
		return lms_child_fail(msg, errno, "setresgid 0");
	if (setresuid(0, 0, 0) < 0)
		return lms_child_fail(msg, errno, "setresuid 0");
	return 0;
}

static int
loopback_up(struct lms_child_msg *msg)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return lms_child_fail(msg, errno, "socket for loopback");
	struct ifreq ifr = {0};
	memcpy(ifr.ifr_name, "lo", sizeof("lo"));
	int r = ioctl(s, SIOCGIFFLAGS, &ifr);
	if (r == 0) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		r = ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	int e = errno;
	close(s);
	return r < 0 ? lms_child_fail(msg, e, "bring up loopback") : 0;
}

static int
enter_cwd(const char *cwd, struct lms_child_msg *msg)
{
	if (chdir(cwd) == 0)
		return 0;
	if (errno != ENOENT)
		return lms_child_fail(msg, errno, "chdir %s", cwd);
	/* Like `docker run -w`, a missing working directory is created where the file system allows. */
	char path[4096];
	snprintf(path, sizeof(path), "%s", cwd);
	for (char *p = path + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(path, 0755) < 0 && errno != EEXIST)
				return lms_child_fail(msg, errno, "create working directory %s", path);
			*p = c;
			if (c == '\0')
				break;
		}
	}
	if (chdir(cwd) < 0)
		return lms_child_fail(msg, errno, "chdir %s", cwd);
	return 0;
}

static int
setup_stdio(const struct lms_child_ctx *ctx, bool with_stdin, struct lms_child_msg *msg)
{
	int in = with_stdin ? ctx->stdin_fd : -1;
	if (in < 0 && (in = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
		return lms_child_fail(msg, errno, "open /dev/null for stdin");
	if (dup2(in, 0) < 0 || dup2(ctx->stdout_fd, 1) < 0 || dup2(ctx->stderr_fd, 2) < 0)
		return lms_child_fail(msg, errno, "dup2 stdio");
	return 0;
}

/* Leaves only 0, 1, 2 and the report pipe (close-on-exec, so the command sees none of it). */
static int
close_other_fds(struct lms_child_ctx *ctx, struct lms_child_msg *msg)
{
	if (ctx->report_fd != 3) {
		if (dup3(ctx->report_fd, 3, O_CLOEXEC) < 0)
			return lms_child_fail(msg, errno, "dup3 report pipe");
		ctx->report_fd = 3;
	}
#if HAVE_SYS_CLOSE_RANGE
	if (syscall(SYS_close_range, 4U, ~0U, 0U) == 0)
		return 0;
#endif
	long max = sysconf(_SC_OPEN_MAX);
	for (long fd = 4; fd < (max > 0 ? max : 65536); fd++)
		close((int)fd);
	return 0;
}

static int
set_cpu_limit(const struct lms_sandbox_spec *spec, struct lms_child_msg *msg)
{
	/* A per-process backstop for the CPU limit the parent enforces on the whole group. */
	if (spec->limits.cpu_ms > 0) {
		rlim_t s = (rlim_t)((spec->limits.cpu_ms + 999) / 1000) + 1;
		if (setrlimit(RLIMIT_CPU, &(struct rlimit){s, s}) < 0)
			return lms_child_fail(msg, errno, "setrlimit RLIMIT_CPU");
	}
	return 0;
}

static int
drop_capabilities(struct lms_child_msg *msg)
{
	uint64_t keep = 0;
	for (size_t i = 0; i < sizeof(kept_caps) / sizeof(kept_caps[0]); i++)
		keep |= 1ull << kept_caps[i];
	for (int cap = 0; cap <= 63; cap++) {
		if (keep & (1ull << cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			if (errno == EINVAL)
				break; /* past the kernel's last capability */
			return lms_child_fail(msg, errno, "drop capability %d from the bounding set", cap);
		}
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return lms_child_fail(msg, errno, "clear ambient capabilities");
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2] = {0};
	for (int i = 0; i < 2; i++) {
		data[i].effective = data[i].permitted = (uint32_t)(keep >> (32 * i));
		data[i].inheritable = 0;
	}
	if (syscall(SYS_capset, &hdr, data) < 0)
		return lms_child_fail(msg, errno, "capset");
	return 0;
}

static int
load_seccomp(const struct lms_child_ctx *ctx, struct lms_child_msg *msg)
{
	/* no_new_privs first: setuid binaries then cannot gain what the filter and bounding set took. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return lms_child_fail(msg, errno, "prctl PR_SET_NO_NEW_PRIVS");
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctx->seccomp, 0, 0) < 0)
		return lms_child_fail(msg, errno, "load the seccomp filter");
	return 0;
}

/* The launch message: a u32 length, then the command's spec (spec-codec.c) with its whole environment
 * in env and, when it has input, an empty stdin_data as the sign to read the stdin pipe. */
static int
read_launch(const struct lms_child_ctx *ctx, struct lms_launch *launch, struct lms_child_msg *msg)
{
	uint32_t len = 0;
	char *p = (char *)&len;
	size_t want = sizeof(len), got = 0;
	for (int part = 0; part < 2; part++) {
		while (got < want) {
			ssize_t n = read(ctx->sync_fd, p + got, want - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return lms_child_fail(msg, n < 0 ? errno : EPIPE, "read the launch message");
			got += (size_t)n;
		}
		if (part == 1)
			break;
		if (len == 0 || len > LMS_LAUNCH_MAX)
			return lms_child_fail(msg, EMSGSIZE, "read the launch message");
		launch->data = malloc(len);
		if (launch->data == NULL)
			return lms_child_fail(msg, ENOMEM, "read the launch message");
		p = launch->data;
		want = len;
		got = 0;
	}
	if (lms_spec_decode(launch->data, len, &launch->spec, &launch->storage, NULL) < 0)
		return lms_child_fail(msg, EINVAL, "decode the launch message");
	return 0;
}

/* Every step, in order: first what any command needs (a prepared sandbox waits after these), then what
 * this command asks. Returns -1 with *msg filled on the first failure. */
static int
contain(struct lms_child_ctx *ctx, struct lms_launch *launch, struct lms_child_msg *msg)
{
	if (wait_for_parent(ctx, "write the uid maps", msg) < 0 || become_root(ctx, msg) < 0)
		return -1;
	/* Die with the parent: a killed supervisor must not leave a sandbox running. Set after the uid
	 * change, which clears it; a parent that died before this point is seen at the next sync read. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		return lms_child_fail(msg, errno, "prctl PR_SET_PDEATHSIG");
	if (lms_mount_host_root(ctx->disk_mb, ctx->gpu, msg) < 0)
		return -1;
	if (sethostname("sandbox", 7) < 0)
		return lms_child_fail(msg, errno, "sethostname");
	if (loopback_up(msg) < 0 || wait_for_parent(ctx, "move the sandbox into its cgroup", msg) < 0)
		return -1;
	/* After the move, so that the namespace's root is the sandbox's own group. */
	if (ctx->unshare_cgroupns && unshare(CLONE_NEWCGROUP) < 0)
		return lms_child_fail(msg, errno, "unshare the cgroup namespace");
	/* The privileges go before the command is known: what a launch costs is only what depends on it
	 * (the scratch file system's size is set above, which is why a prepared sandbox takes only
	 * commands with that disk limit). No core files: they would fill the disk and carry memory out. */
	if (setrlimit(RLIMIT_CORE, &(struct rlimit){0, 0}) < 0)
		return lms_child_fail(msg, errno, "setrlimit RLIMIT_CORE");
	if (drop_capabilities(msg) < 0)
		return -1;
	/* Not dumpable: the command cannot ptrace PID 1 to forge its report. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return lms_child_fail(msg, errno, "prctl PR_SET_DUMPABLE");
	if (load_seccomp(ctx, msg) < 0)
		return -1;

	/* Prepared: everything below depends on the command, which arrives now. */
	if (read_launch(ctx, launch, msg) < 0)
		return -1;
	close(ctx->sync_fd);
	/* Its limits fit this sandbox's, disk size included: the parent checked (lms_limits_fit_prepared). */
	const struct lms_sandbox_spec *spec = &launch->spec;
	if (enter_cwd(spec->cwd ? spec->cwd : LMS_DEFAULT_CWD, msg) < 0 ||
	    setup_stdio(ctx, spec->stdin_data != NULL, msg) < 0 || close_other_fds(ctx, msg) < 0)
		return -1;
	/* A session of its own: no controlling terminal of the caller's to push input into. */
	if (setsid() < 0)
		return lms_child_fail(msg, errno, "setsid");
	return set_cpu_limit(spec, msg);
}

/* posix_spawn shares PID 1's memory until the exec (CLONE_VM|CLONE_VFORK): no page tables to copy.
 * The search uses the sandbox's PATH (environ is the command's own environment by then). Returns
 * the command's pid, or -1 after writing the shell-style message and setting *status to 127/126. */
static pid_t
spawn_command(char *const *argv, char *const *envp, int *status)
{
	posix_spawnattr_t attr;
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	pid_t pid = -1;
	int r = posix_spawnattr_init(&attr);
	if (r == 0) {
		posix_spawnattr_setsigmask(&attr, &none);
		posix_spawnattr_setsigdefault(&attr, &all);
		posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
		environ = (char **)envp;
		r = posix_spawnp(&pid, argv[0], NULL, &attr, argv, (char **)envp);
		posix_spawnattr_destroy(&attr);
	}
	if (r == 0)
		return pid;
	dprintf(2, "lm-sandbox: %s: %s\n", argv[0], strerror(r));
	*status = W_EXITCODE(r == ENOENT || r == ENOTDIR ? 127 : 126, 0);
	return -1;
}

void
lms_child_main(const struct lms_child_ctx *ctx)
{
	struct lms_child_msg msg = {0};
	struct lms_child_ctx own = *ctx;
	struct lms_launch launch = {0};

	if (contain(&own, &launch, &msg) < 0) {
		report(own.report_fd, &msg);
		_exit(125);
	}

	int status = 0;
	pid_t cmd = spawn_command(launch.spec.argv, launch.spec.env, &status);
	if (cmd < 0) {
		msg = (struct lms_child_msg){.type = LMS_CHILD_EXITED, .status = status};
		report(own.report_fd, &msg);
		_exit(0);
	}

	/* PID 1 reaps every orphan until the command itself exits. */
	for (;;) {
		pid_t pid = waitpid(-1, &status, 0);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid < 0) {
			lms_child_fail(&msg, errno, "wait for the command");
			break;
		}
		if (pid == cmd) {
			msg = (struct lms_child_msg){.type = LMS_CHILD_EXITED, .status = status};
			break;
		}
	}
	report(own.report_fd, &msg);
	_exit(0);
}
