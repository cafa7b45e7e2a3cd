/*
 * A prepared (pool) sandbox takes stored files: its /work, /tmp and /dev/shm are covered by the storage's
 * work/, tmp/ and shm/ (sandbox.h, spec->storage), so that a persistent sandbox costs a pool sandbox,
 * not a new one. The binds are cloned in our mount namespace as detached trees (open_tree) and attached
 * in the sandbox's (move_mount) by this process (a pool worker), which joins that namespace for the three
 * calls and goes back to its own: PID 1 has no privilege left to mount anything.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fdio.h"
#include "core/log.h"
#include "sandbox/internal.h"

static const char *const parts[3] = {"work", "tmp", "shm"};
static const char *const targets[3] = {"/work", "/tmp", "/dev/shm"};

/* Joins the sandbox's mount namespace for the three calls and comes back: a fork and its wait would cost
 * more than the mounts themselves (bench/RESULTS.md, "Create + first command"). setns refuses a process
 * with threads (EINVAL); a pool worker has one. The way back cannot fail but for a kernel's refusal this
 * process could not go on from: it aborts then, rather than work on inside a sandbox's namespace. setns
 * leaves the root and the working directory at the namespace's root: the working directory is put back
 * (a worker's root is its namespace's). */
static int
attach(struct lms_sandbox *sb, const int trees[3], struct lms_error **err)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)sb->pid);
	_cleanup_fd_ int ns = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_fd_ int self = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	_cleanup_fd_ int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (ns < 0 || self < 0 || cwd < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "storage: open the sandbox's mount namespace and ours");
	if (setns(ns, CLONE_NEWNS) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "storage: join the sandbox's mount namespace");
	int step = 0, errnum = 0;
	for (; step < 3 && errnum == 0; step++)
		if (syscall(SYS_move_mount, trees[step], "", AT_FDCWD, targets[step], MOVE_MOUNT_F_EMPTY_PATH) < 0)
			errnum = errno;
	if (setns(self, CLONE_NEWNS) < 0 || fchdir(cwd) < 0) {
		lms_log(LMS_LOG_ERROR, NULL, "storage: cannot return to this process's mount namespace", "error",
			strerror(errno), NULL);
		abort();
	}
	if (errnum != 0)
		return lms_error_set(err, LMS_ERR_SETUP, errnum, "storage: mount it on %s", targets[step - 1]);
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
