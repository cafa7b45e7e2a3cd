/*
 * Making a sandbox and ending it: the cgroup, PID 1 cloned into new namespaces, its uid maps, its
 * move into the cgroup. PID 1 then builds its root and drops its privileges (child.c) while the caller
 * goes on: its READY is awaited by the first exec (or lms_sandbox_wait_ready), so that a pool sandbox is
 * offered while it finishes. What runs in it afterwards is exec.c's.
 */
#include <errno.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "core/alloc.h"
#include "core/file.h"
#include "sandbox/child.h"
#include "sandbox/gpu-driver.h"
#include "sandbox/gpu.h"
#include "sandbox/internal.h"
#include "sandbox/network.h"
#include "sandbox/seccomp.h"

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

#define NS_FLAGS (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)

/* How long PID 1 may take to build its root and drop its privileges (milliseconds, a few at most). */
#define SETUP_TIMEOUT_MS 30000

/* The device minors of a GPU selection, as this host has them now. */
static int
gpu_minors(uint64_t gpus, uint64_t *minors, struct lms_error **err)
{
	struct lms_gpus found;
	if (lms_gpu_discover("/", &found, err) < 0)
		return -1;
	return lms_gpu_select(&found, gpus, minors, err);
}

int
lms_sandbox_check_support(const struct lms_sandbox_spec *spec, struct lms_error **err)
{
	if (lms_image_check(spec->image, spec->layers, err) < 0)
		return -1;
	uint64_t minors;
	if (spec->gpus && gpu_minors(spec->gpus, &minors, err) < 0)
		return -1;
	/* An image has no driver of its own: the host's must be there to be bound in (mount.c). */
	if (spec->gpus && spec->layers != NULL) {
		struct lms_gpu_driver drv;
		if (lms_gpu_driver_find(NULL, &drv, err) < 0)
			return -1;
		lms_gpu_driver_free(&drv);
	}
	if (spec->network && lms_network_check(err) < 0)
		return -1;
	return 0;
}

static int
write_id_maps(pid_t pid, bool privileged, struct lms_error **err)
{
	char path[64], map[64];
	if (privileged) {
		snprintf(map, sizeof(map), "0 %u %u\n", LMS_UID_BASE, LMS_UID_COUNT);
	} else {
		/* Unprivileged: only our own ids may be mapped, and setgroups must be denied first. */
		snprintf(path, sizeof(path), "/proc/%d/setgroups", (int)pid);
		if (lms_file_write(path, "deny", err) < 0)
			return lms_error_prefix(err, "user namespace");
		snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)getuid());
	}
	snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
	if (lms_file_write(path, map, err) < 0)
		return lms_error_prefix(err, "user namespace: write uid map");
	if (!privileged)
		snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)getgid());
	snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
	if (lms_file_write(path, map, err) < 0)
		return lms_error_prefix(err, "user namespace: write gid map");
	return 0;
}

/* clone3 puts PID 1 straight into its cgroup (CLONE_INTO_CGROUP); older kernels get clone and a move. */
static pid_t
clone_sandbox(int cgroup_fd, bool *into_cgroup, struct lms_error **err)
{
	pid_t pid = -1;
	*into_cgroup = false;
#if HAVE_SYS_CLONE3
	struct clone_args args = {
	    .flags = NS_FLAGS | (cgroup_fd >= 0 ? CLONE_INTO_CGROUP | CLONE_NEWCGROUP : 0),
	    .exit_signal = SIGCHLD,
	    .cgroup = cgroup_fd >= 0 ? (uint64_t)cgroup_fd : 0,
	};
	pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
	if (pid >= 0) {
		*into_cgroup = cgroup_fd >= 0;
		return pid;
	}
	if (errno != ENOSYS && errno != E2BIG && errno != EINVAL)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "clone3 into new namespaces%s",
				     errno == EPERM || errno == ENOSPC
					 ? " (user namespaces may be disabled: see sysctl "
					   "kernel.unprivileged_userns_clone and user.max_user_namespaces)"
					 : "");
#endif
	pid = (pid_t)syscall(SYS_clone, NS_FLAGS | SIGCHLD, NULL, NULL, NULL, 0);
	if (pid < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "clone into new namespaces");
	return pid;
}

int
lms_sandbox_wait_ready(struct lms_sandbox *sb, struct lms_error **err)
{
	if (sb->ready)
		return 0;
	if (sb->dead)
		return lms_error_set(err, LMS_ERR_SETUP, 0, "the sandbox has ended: its init is gone");
	struct pollfd pfd = {.fd = sb->ctl, .events = POLLIN};
	int r;
	while ((r = poll(&pfd, 1, SETUP_TIMEOUT_MS)) < 0 && errno == EINTR)
		;
	if (r < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "wait for the sandbox's init");
	if (r == 0)
		return lms_error_set(err, LMS_ERR_SETUP, 0, "the sandbox's init did not finish its setup within %d ms",
				     SETUP_TIMEOUT_MS);
	struct lms_init_msg msg;
	ssize_t n;
	while ((n = recv(sb->ctl, &msg, sizeof(msg), 0)) < 0 && errno == EINTR)
		;
	if (n == (ssize_t)sizeof(msg) && msg.type == LMS_INIT_READY) {
		sb->ready = true;
		return 0;
	}
	if (n == (ssize_t)sizeof(msg) && msg.type == LMS_INIT_FAILED) {
		msg.what[sizeof(msg.what) - 1] = '\0';
		sb->dead = true; /* PID 1 exits after a failed setup */
		return lms_error_set(err, LMS_ERR_SETUP, msg.errnum, "%s", msg.what);
	}
	int status = 0;
	lms_sandbox_kill_init(sb, &status);
	if (n == 0)
		return lms_error_set(err, LMS_ERR_SETUP, 0, "the sandbox's init exited during its setup (%s %d)",
				     WIFSIGNALED(status) ? "signal" : "status",
				     WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	return lms_error_set(err, LMS_ERR_SETUP, n < 0 ? errno : 0, "read the sandbox's init%s",
			     n < 0 ? "" : ": a message of the wrong size");
}

/* Replaces *err by the FAILED message PID 1 left before it exited, when there is one. */
static void
failed_setup_cause(struct lms_sandbox *sb, struct lms_error **err)
{
	struct lms_init_msg msg;
	ssize_t n = recv(sb->ctl, &msg, sizeof(msg), MSG_DONTWAIT);
	if (n != (ssize_t)sizeof(msg) || msg.type != LMS_INIT_FAILED || err == NULL)
		return;
	msg.what[sizeof(msg.what) - 1] = '\0';
	lms_error_free(*err);
	*err = NULL;
	lms_error_set(err, LMS_ERR_SETUP, msg.errnum, "%s", msg.what);
}

int
lms_sandbox_create(const struct lms_sandbox_spec *base, struct lms_sandbox **out, struct lms_error **err)
{
	static unsigned sequence;
	if (lms_sandbox_check_support(base, err) < 0)
		return -1;
	const struct sock_fprog *prog = lms_seccomp_program(err);
	if (prog == NULL)
		return -1;
	struct lms_sandbox *sb = xcalloc(1, sizeof(*sb));
	sb->base = base->limits;
	sb->gpus = base->gpus;
	sb->network = base->network;
	sb->net_dev = -1;
	sb->pid = -1;
	sb->next_id = 1;
	char name[64];
	snprintf(name, sizeof(name), "lms-%d-%u", (int)getpid(), ++sequence);
	int sv[2] = {-1, -1};
	int r = 0;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		r = lms_error_set(err, LMS_ERR_SETUP, errno, "create the sandbox's socket");
	sb->ctl = sv[0];
	uint64_t minors = 0;
	if (r == 0 && sb->gpus)
		r = gpu_minors(sb->gpus, &minors, err);
	struct lms_gpu_driver drv = {0};
	if (r == 0 && sb->gpus && base->layers != NULL) {
		r = lms_gpu_driver_find(NULL, &drv, err);
		sb->gpu_driver = r == 0;
	}
	if (r == 0)
		r = lms_cgroup_create(LMS_CGROUP_FS, LMS_CGROUP_SELF, name, &sb->base, &sb->cg, err);
	bool privileged = geteuid() == 0, into_cgroup = false;
	if (r == 0)
		r = sb->pid = clone_sandbox(lms_cgroup_clone_fd(sb->cg), &into_cgroup, err);
	if (r == 0) {
		struct lms_child_ctx ctx = {
		    .disk_mb = sb->base.disk_mb,
		    .gpu_minors = minors,
		    .gpu_only = sb->gpus != LMS_GPU_ALL,
		    .driver = sb->gpu_driver ? &drv : NULL,
		    .storage = base->storage,
		    .layers = base->layers,
		    .seccomp = prog,
		    .ctl = sv[1],
		    .privileged = privileged,
		    .unshare_cgroupns = !into_cgroup,
		    .network = base->network,
		};
		lms_child_main(&ctx);
	}
	lms_gpu_driver_free(&drv); /* PID 1 has its own copy */
	if (sv[1] >= 0)
		close(sv[1]); /* PID 1's end: ours would hide its end-of-file */
	if (r < 0) {
		sb->pid = -1;
		lms_sandbox_destroy(sb);
		return -1;
	}
	/* The child builds its root while the parent moves it into the cgroup (child.c, wait_for_parent). */
	r = write_id_maps(sb->pid, privileged, err);
	if (r == 0 && send(sb->ctl, "m", 1, MSG_NOSIGNAL) != 1)
		r = lms_error_set(err, LMS_ERR_SETUP, errno, "release the sandbox after the uid maps");
	if (r == 0 && !into_cgroup)
		r = lms_cgroup_attach(sb->cg, sb->pid, err);
	if (r == 0 && send(sb->ctl, "c", 1, MSG_NOSIGNAL) != 1)
		r = lms_error_set(err, LMS_ERR_SETUP, errno, "release the sandbox after the cgroup move");
	/* The filter and pasta while PID 1 finishes its root: both are in place before READY is even read,
	 * so before any command runs. */
	if (r == 0 && sb->network)
		r = lms_network_up(sb->pid, sb->cg, base, err);
	if (r == 0 && sb->network && (sb->net_dev = lms_network_counters_open(sb->pid)) < 0)
		r = lms_error_set(err, LMS_ERR_SETUP, errno, "network: open the sandbox's /proc/%d/net/dev",
				  (int)sb->pid);
	if (r < 0 && errno == EPIPE)
		failed_setup_cause(sb, err); /* PID 1 ended its setup early: its own message says why */
	if (r < 0) {
		lms_sandbox_destroy(sb);
		return -1;
	}
	*out = sb;
	return 0;
}

void
lms_sandbox_kill_init(struct lms_sandbox *sb, int *status)
{
	sb->dead = true;
	if (sb->pid <= 0)
		return;
	/* SIGKILL to PID 1 kills its whole PID namespace. It is our child and not yet reaped: the pid
	 * cannot have been reused. */
	kill(sb->pid, SIGKILL);
	while (waitpid(sb->pid, status, __WALL) < 0 && errno == EINTR)
		;
	sb->pid = -1;
}

bool
lms_sandbox_is_ready(const struct lms_sandbox *sb)
{
	return sb->ready;
}

pid_t
lms_sandbox_pid(const struct lms_sandbox *sb)
{
	return sb->pid;
}

int
lms_sandbox_fd(const struct lms_sandbox *sb)
{
	return sb->ctl;
}

int
lms_sandbox_destroy_checked(struct lms_sandbox *sb, struct lms_error **err)
{
	if (sb == NULL)
		return 0;
	int status = 0;
	lms_sandbox_kill_init(sb, &status);
	if (sb->ctl >= 0)
		close(steal_fd(&sb->ctl));
	lms_sandbox_sweep_groups(sb, true);
	if (sb->net_dev >= 0)
		close(steal_fd(&sb->net_dev));
	int r = lms_cgroup_destroy(sb->cg, err);
	free(sb);
	return r;
}

void
lms_sandbox_destroy(struct lms_sandbox *sb)
{
	(void)lms_sandbox_destroy_checked(sb, NULL);
}
