#pragma once
/*
 * The sandbox's side of a run: what happens between clone and exec, inside the new namespaces.
 * Everything here runs in the forked child of a single-threaded process and reports failure to the
 * parent as a FAILED message (init-proto.h) on its socket, never on stderr.
 */
#include <linux/filter.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sandbox/gpu-driver.h"
#include "sandbox/init-proto.h"
#include "sandbox/sandbox.h"

/* What the child needs before it knows its command, set up by the parent before clone. */
struct lms_child_ctx {
	uint64_t disk_mb;    /* size of the scratch tmpfs as prepared */
	uint64_t gpu_minors; /* the /dev/nvidiaN passed through (bit N); 0: no NVIDIA device at all */
	bool gpu_only;	     /* a selection of GPUs: the others' /proc/driver/nvidia entries are hidden */
	/* An image's sandbox with a GPU: the host's driver files, bound in at LMS_GPU_DRIVER_DIR; or NULL. */
	const struct lms_gpu_driver *driver;
	const char *storage; /* NULL, or the host directory of work/, tmp/ and shm/ (sandbox.h) */
	char *const *layers; /* NULL (the host image), or an image's layer directories, the lowest first */
	const struct sock_fprog *seccomp;
	int ctl;	       /* PID 1's end of its socket with the parent (init-proto.h) */
	bool privileged;       /* the parent is root: setgroups is allowed */
	bool unshare_cgroupns; /* the cgroup namespace comes after the move into the cgroup (v1) */
	bool network;	       /* /etc/resolv.conf names pasta's DNS forwarder (mount.c) */
};

/* The largest launch spec PID 1 reads (the command, its arguments and its environment). */
#define LMS_LAUNCH_MAX (64u << 20)

/* Runs as the sandbox's PID 1: every hardening step (child.c), READY, then the launches (init.c).
 * Never returns. */
__attribute__((noreturn)) void lms_child_main(const struct lms_child_ctx *ctx);

/* PID 1's message loop once prepared (init.c): starts each launch's command in a session of its own,
 * reports its exit, reaps every orphan. Ends at the parent's end-of-file or after a LAST launch. */
__attribute__((noreturn)) void lms_init_serve(int ctl);

/* Fills a FAILED message (child side) with the step and errno. Returns -1. */
__attribute__((format(printf, 3, 4))) int lms_child_fail(struct lms_init_msg *msg, int errnum, const char *fmt, ...);

/* Sends a message to the parent (one record). 0, or -1 when the parent is gone. */
int lms_child_report(int ctl, const struct lms_init_msg *msg);

/* Builds the sandbox's root file system and makes it the root (mount.c): the `host` image's binds, or
 * (layers != NULL) an overlay of an image's layers. stored: the descriptors lms_mount_open_storage gave,
 * or -1s; layers: lms_mount_open_layers's, -1-terminated, the lowest first. */
int lms_mount_root(const struct lms_child_ctx *ctx, const int stored[5], const int *layers, struct lms_init_msg *msg);

/* O_PATH descriptors of an image's layer directories (-1-terminated, in `fds` of LMS_MAX_LAYERS + 1),
 * opened as the storage's are: before the uid change and before anything covers the host's /tmp. */
int lms_mount_open_layers(char *const *layers, int *fds, struct lms_init_msg *msg);

/* O_PATH descriptors of storage's work/, tmp/ and shm/ (sandbox.h), and for an image its upper/ and
 * ovlwork/ (the overlay's upper layer and work directory, so that what a command changes anywhere in the
 * image's root is kept with the files), opened in the sandbox's mount
 * namespace (a bind's source must be of it) while PID 1 still has the host uid that owns them, and before
 * the scratch tmpfs covers /tmp (where a --state-dir may lie: the magic links reach it all the same). */
int lms_mount_open_storage(const char *storage, bool image, int fds[5], struct lms_init_msg *msg);
