/*
 * A prepared (pool) sandbox takes stored files: its /work, /tmp and /dev/shm are covered by the storage's
 * work/, tmp/ and shm/ (sandbox.h, spec->storage), so that a persistent sandbox costs a pool sandbox,
 * not a new one. The binds are cloned in our mount namespace as detached trees (open_tree) and attached
 * in the sandbox's (move_mount) by a short-lived child that joins it: PID 1 has no privilege left to
 * mount anything, and this process keeps its own namespace.
 */
#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fdio.h"
#include "sandbox/internal.h"

static const char *const parts[3] = {"work", "tmp", "shm"};
static const char *const targets[3] = {"/work", "/tmp", "/dev/shm"};

struct attach_failure {
	int step; /* 0: setns; 1..3: the part */
	int errnum;
};

__attribute__((noreturn)) static void
attach_in_child(int ns, const int trees[3], int report)
{
	struct attach_failure f = {0};
	if (setns(ns, CLONE_NEWNS) < 0) {
		f.errnum = errno;
	} else {
		for (int i = 0; i < 3 && f.errnum == 0; i++)
			if (syscall(SYS_move_mount, trees[i], "", AT_FDCWD, targets[i], MOVE_MOUNT_F_EMPTY_PATH) < 0)
				f = (struct attach_failure){.step = i + 1, .errnum = errno};
	}
	if (f.errnum != 0)
		(void)!write(report, &f, sizeof(f));
	_exit(f.errnum != 0);
}

static int
attach(struct lms_sandbox *sb, const int trees[3], struct lms_error **err)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)sb->pid);
	_cleanup_fd_ int ns = open(path, O_RDONLY | O_CLOEXEC);
	if (ns < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "storage: open the sandbox's mount namespace");
	int report[2];
	if (pipe2(report, O_CLOEXEC) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "storage: pipe");
	pid_t child = fork();
	if (child == 0)
		attach_in_child(ns, trees, report[1]);
	close(report[1]);
	int status = 0;
	struct attach_failure f = {0};
	bool said = child > 0 && read(report[0], &f, sizeof(f)) == (ssize_t)sizeof(f);
	close(report[0]);
	if (child < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "storage: fork");
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	if (said)
		return lms_error_set(err, LMS_ERR_SETUP, f.errnum, "storage: %s %s",
				     f.step == 0 ? "join the sandbox's mount namespace" : "mount it on",
				     f.step == 0 ? "" : targets[f.step - 1]);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return lms_error_set(err, LMS_ERR_SETUP, 0, "storage: the helper that mounts it failed");
	return 0;
}

int
lms_sandbox_attach_storage(struct lms_sandbox *sb, const char *storage, uint64_t disk_mb, struct lms_error **err)
{
	/* PID 1 must be done with its root before anything is mounted on it. */
	if (lms_sandbox_wait_ready(sb, err) < 0)
		return -1;
	int trees[3] = {-1, -1, -1};
	int r = 0;
	for (int i = 0; i < 3 && r == 0; i++) {
		_cleanup_free_ char *path = xasprintf("%s/%s", storage, parts[i]);
		trees[i] = (int)syscall(SYS_open_tree, AT_FDCWD, path,
					OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
		if (trees[i] < 0)
			r = lms_error_set(err, LMS_ERR_SETUP, errno, "storage: clone a mount of %s", path);
	}
	if (r == 0)
		r = attach(sb, trees, err);
	for (int i = 0; i < 3; i++)
		if (trees[i] >= 0)
			close(trees[i]);
	if (r == 0)
		sb->base.disk_mb = disk_mb; /* the storage's size is the limit from now on */
	return r;
}
