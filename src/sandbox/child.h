#pragma once
/*
 * The sandbox's side of a run: what happens between clone and exec, inside the new namespaces.
 * Everything here runs in the forked child of a single-threaded process and reports failure to the
 * parent as a `struct lms_child_msg` on the report pipe, never on stderr.
 */
#include <linux/filter.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sandbox/sandbox.h"

enum lms_child_msg_type {
	LMS_CHILD_SETUP_FAILED = 1, /* what + errnum: a step of the setup failed */
	LMS_CHILD_EXITED = 2,	    /* status: the command's wait status */
};

struct lms_child_msg {
	int type;
	int errnum;
	int status;
	char what[244]; /* "mount /proc", NUL-terminated */
};

/* What the child needs before it knows its command, set up by the parent before clone. */
struct lms_child_ctx {
	uint64_t disk_mb; /* size of the scratch tmpfs as prepared */
	bool gpu;	  /* NVIDIA devices in /dev */
	const struct sock_fprog *seccomp;
	int sync_fd;   /* read end: a byte after the uid maps, a byte after the cgroup move,
			* then the launch message */
	int report_fd; /* write end of the report pipe */
	int stdin_fd, stdout_fd, stderr_fd;
	bool privileged;       /* the parent is root: setgroups is allowed */
	bool unshare_cgroupns; /* the cgroup namespace comes after the move into the cgroup (v1) */
};

#define LMS_LAUNCH_MAX (64u << 20)

/* The command, as PID 1 receives it (read_launch in child.c). */
struct lms_launch {
	struct lms_sandbox_spec spec; /* env is the whole environment */
	char *data;
	void *storage;
};

/* Runs as the sandbox's PID 1: sets everything up, starts the command and reaps. Never returns. */
__attribute__((noreturn)) void lms_child_main(const struct lms_child_ctx *ctx);

/* Fills a setup-failure message (child side). Returns -1. */
__attribute__((format(printf, 3, 4))) int lms_child_fail(struct lms_child_msg *msg, int errnum, const char *fmt, ...);

/* Builds the `host` image's root file system and makes it the root (mount.c). */
int lms_mount_host_root(uint64_t disk_mb, bool gpu, struct lms_child_msg *msg);
