/*
 * The sandbox's PID 1, before its first command: every hardening step, in order, reads top to bottom
 * in contain() (as nsjail's containProc() does). Then PID 1 says READY and serves launches (init.c).
 * When PID 1 exits, the kernel kills every process left in the PID namespace: nothing survives the
 * sandbox, however it daemonised.
 */
#include "sandbox/child.h"
#include "sandbox/network.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "config.h"
#include "core/stringify.h"

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
lms_child_fail(struct lms_init_msg *msg, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg->what, sizeof(msg->what), fmt, ap);
	va_end(ap);
	msg->type = LMS_INIT_FAILED;
	msg->errnum = errnum;
	return -1;
}

int
lms_child_report(int ctl, const struct lms_init_msg *msg)
{
	ssize_t n;
	while ((n = send(ctl, msg, sizeof(*msg), MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	return n == (ssize_t)sizeof(*msg) ? 0 : -1;
}

/* The parent sends one record once the uid maps are written, and a second once the cgroup holds us:
 * the mounts are built in between, while the parent does the (slow) cgroup move. */
static int
wait_for_parent(const struct lms_child_ctx *ctx, const char *what, struct lms_init_msg *msg)
{
	char byte;
	ssize_t n;
	while ((n = recv(ctx->ctl, &byte, 1, 0)) < 0 && errno == EINTR)
		;
	if (n != 1)
		return lms_child_fail(msg, n < 0 ? errno : EPIPE, "wait for the parent to %s", what);
	return 0;
}

static int
become_root(const struct lms_child_ctx *ctx, struct lms_init_msg *msg)
{
	if (ctx->privileged && setgroups(0, NULL) < 0)
		return lms_child_fail(msg, errno, "setgroups");
	if (setresgid(0, 0, 0) < 0)
		return lms_child_fail(msg, errno, "setresgid 0");
	if (setresuid(0, 0, 0) < 0)
		return lms_child_fail(msg, errno, "setresuid 0");
	return 0;
}

/* Per-process limits every command inherits from PID 1. Host root created the user namespace, so the
 * sandbox's signal queue and POSIX message queue bytes also count against host root's own per-user
 * totals (kernel/ucount.c charges every level up to the initial namespace): each sandbox gets a small
 * share. Files: a bound of its own, whatever the daemon's is (often 524288 under systemd). A hard limit
 * cannot be raised again without CAP_SYS_RESOURCE in the initial namespace. */
static const struct {
	int resource;
	const char *name;
	rlim_t soft, hard;
} bounded_rlimits[] = {
    {RLIMIT_CORE, "RLIMIT_CORE", 0, 0}, /* no core files: they would fill the disk and carry memory out */
    {RLIMIT_NOFILE, "RLIMIT_NOFILE", LMS_SANDBOX_NOFILE_SOFT, LMS_SANDBOX_NOFILE_HARD},
    {RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING", LMS_SANDBOX_SIGPENDING, LMS_SANDBOX_SIGPENDING},
    {RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE", LMS_SANDBOX_MSGQUEUE_BYTES, LMS_SANDBOX_MSGQUEUE_BYTES},
};

static int
bound_rlimits(struct lms_init_msg *msg)
{
	for (size_t i = 0; i < sizeof(bounded_rlimits) / sizeof(bounded_rlimits[0]); i++) {
		struct rlimit cur;
		if (getrlimit(bounded_rlimits[i].resource, &cur) < 0)
			return lms_child_fail(msg, errno, "getrlimit %s", bounded_rlimits[i].name);
		/* Only ever lowered: a caller's tighter limit stays. */
		rlim_t hard = bounded_rlimits[i].hard < cur.rlim_max ? bounded_rlimits[i].hard : cur.rlim_max;
		rlim_t soft = bounded_rlimits[i].soft < hard ? bounded_rlimits[i].soft : hard;
		if (cur.rlim_cur < soft)
			soft = cur.rlim_cur;
		if (setrlimit(bounded_rlimits[i].resource, &(struct rlimit){soft, hard}) == 0)
			continue;
		/* Lowering a limit never fails on Linux; valgrind, which keeps descriptors of its own above the
		 * program's, refuses any change of RLIMIT_NOFILE's hard limit. The soft limit still holds there
		 * (the tests that check the hard one run without valgrind). */
		if (errno != EPERM || bounded_rlimits[i].resource != RLIMIT_NOFILE ||
		    setrlimit(RLIMIT_NOFILE, &(struct rlimit){soft, cur.rlim_max}) < 0)
			return lms_child_fail(msg, errno, "setrlimit %s to %llu/%llu", bounded_rlimits[i].name,
					      (unsigned long long)soft, (unsigned long long)hard);
	}
	return 0;
}

/* Knobs the sandbox's own namespaces have (docs/SECURITY.md). The user namespace's counters
 * (/proc/sys/user/) bound what also counts up to host root's totals (inotify: fs.inotify.max_user_*).
 * The network namespace's TCP buffer sizes: cgroup v1 lets each socket exceed the group's TCP limit by
 * about one buffer, so smaller starting buffers keep many idle connections from holding much.
 * Written while PID 1 still holds CAP_SYS_RESOURCE and CAP_NET_ADMIN in its namespaces; a command
 * cannot change them back (no such capability, and /proc/sys is read-only after the mounts). The
 * host's /proc still serves: these files answer for the caller's own namespaces. */
static int
bound_namespace_knobs(struct lms_init_msg *msg)
{
	static const struct {
		const char *path, *value;
	} counts[] = {
	    {"/proc/sys/user/max_inotify_instances", LMS_STRINGIFY(LMS_SANDBOX_INOTIFY_INSTANCES)},
	    {"/proc/sys/user/max_inotify_watches", LMS_STRINGIFY(LMS_SANDBOX_INOTIFY_WATCHES)},
	    {"/proc/sys/net/ipv4/tcp_rmem", LMS_SANDBOX_TCP_MEM},
	    {"/proc/sys/net/ipv4/tcp_wmem", LMS_SANDBOX_TCP_MEM},
	};
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		int fd = open(counts[i].path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
		if (fd < 0)
			return lms_child_fail(msg, errno, "open %s", counts[i].path);
		size_t len = strlen(counts[i].value);
		ssize_t n = write(fd, counts[i].value, len);
		int e = n < 0 ? errno : EIO;
		close(fd);
		if (n != (ssize_t)len)
			return lms_child_fail(msg, e, "write %s to %s", counts[i].value, counts[i].path);
	}
	return 0;
}

static int
loopback_up(struct lms_init_msg *msg)
{
	return lms_network_loopback_up() < 0 ? lms_child_fail(msg, errno, "bring up loopback") : 0;
}

/* PID 1's own 0, 1 and 2 become the sandbox's /dev/null (nothing of the caller's stays open in here),
 * its socket 3, and every other descriptor it inherited is closed. */
static int
own_descriptors(struct lms_child_ctx *ctx, struct lms_init_msg *msg)
{
	if (ctx->ctl != 3) {
		if (dup3(ctx->ctl, 3, O_CLOEXEC) < 0)
			return lms_child_fail(msg, errno, "dup3 the parent's socket");
		ctx->ctl = 3;
	}
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0)
		return lms_child_fail(msg, errno, "open /dev/null");
	for (int fd = 0; fd < 3; fd++)
		if (dup2(null, fd) < 0)
			return lms_child_fail(msg, errno, "dup2 /dev/null to %d", fd);
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
drop_capabilities(struct lms_init_msg *msg)
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
load_seccomp(const struct lms_child_ctx *ctx, struct lms_init_msg *msg)
{
	/* no_new_privs first: setuid binaries then cannot gain what the filter and bounding set took. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return lms_child_fail(msg, errno, "prctl PR_SET_NO_NEW_PRIVS");
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctx->seccomp, 0, 0) < 0)
		return lms_child_fail(msg, errno, "load the seccomp filter");
	return 0;
}

/* Every step, in order: what any command needs. What depends on the command (its working directory,
 * stdio, session, CPU limit) is done per launch (init.c). Returns -1 with *msg filled on the first
 * failure. */
static int
contain(struct lms_child_ctx *ctx, struct lms_init_msg *msg)
{
	int stored[5] = {-1, -1, -1, -1, -1};
	int layers[LMS_MAX_LAYERS + 1] = {-1};
	if (ctx->storage != NULL && lms_mount_open_storage(ctx->storage, ctx->layers != NULL, stored, msg) < 0)
		return -1;
	if (ctx->layers != NULL && lms_mount_open_layers(ctx->layers, layers, msg) < 0)
		return -1;
	if (wait_for_parent(ctx, "write the uid maps", msg) < 0 || become_root(ctx, msg) < 0)
		return -1;
	/* Die with the parent: a killed supervisor must not leave a sandbox running. Set after the uid
	 * change, which clears it; a parent that died before this point is seen at the next sync read. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		return lms_child_fail(msg, errno, "prctl PR_SET_PDEATHSIG");
	if (bound_namespace_knobs(msg) < 0)
		return -1;
	int r = lms_mount_root(ctx, stored, ctx->layers != NULL ? layers : NULL, msg);
	for (int i = 0; i < 5; i++)
		if (stored[i] >= 0)
			close(stored[i]);
	for (int i = 0; layers[i] >= 0; i++)
		close(layers[i]);
	if (r < 0)
		return -1;
	if (sethostname("sandbox", 7) < 0)
		return lms_child_fail(msg, errno, "sethostname");
	if (loopback_up(msg) < 0 || wait_for_parent(ctx, "move the sandbox into its cgroup", msg) < 0)
		return -1;
	/* After the move, so that the namespace's root is the sandbox's own group. */
	if (ctx->unshare_cgroupns && unshare(CLONE_NEWCGROUP) < 0)
		return lms_child_fail(msg, errno, "unshare the cgroup namespace");
	if (own_descriptors(ctx, msg) < 0)
		return -1;
	/* The privileges go before any command is known: what a launch costs is only what depends on it
	 * (the scratch file system's size is set above, which is why a prepared sandbox takes only
	 * commands with that disk limit). */
	if (bound_rlimits(msg) < 0 || drop_capabilities(msg) < 0)
		return -1;
	/* Not dumpable: no command can ptrace PID 1 to forge its reports or start processes through it. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return lms_child_fail(msg, errno, "prctl PR_SET_DUMPABLE");
	return load_seccomp(ctx, msg);
}

void
lms_child_main(const struct lms_child_ctx *ctx)
{
	struct lms_init_msg msg = {0};
	struct lms_child_ctx own = *ctx;
	prctl(PR_SET_NAME, "lms-init", 0, 0, 0);
	if (contain(&own, &msg) < 0) {
		(void)lms_child_report(own.ctl, &msg);
		_exit(125);
	}
	msg = (struct lms_init_msg){.type = LMS_INIT_READY};
	if (lms_child_report(own.ctl, &msg) < 0)
		_exit(125);
	lms_init_serve(own.ctl);
}
