#pragma once
/*
 * One cgroup per sandbox, holding memory, pids and CPU accounting for all its processes.
 * cgroup v1 (a directory per controller) and v2 (one unified directory) are chosen at run time by
 * what the host mounts. The sandbox's group is a child of the caller's own group, so an outer limit
 * (a systemd unit, a CI job) still holds; on v2, where the caller's group cannot take children with
 * controllers, a top-level "lm-sandbox" group is used (the layout Docker's cgroupfs driver uses).
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/error.h"
#include "sandbox/sandbox.h"

#define LMS_CGROUP_FS "/sys/fs/cgroup"
#define LMS_CGROUP_SELF "/proc/self/cgroup"

enum { LMS_CG_MEMORY, LMS_CG_PIDS, LMS_CG_CPUACCT, LMS_CG_CPU, LMS_CG_COUNT };

/* The CFS period of a CPU bandwidth limit (cpu.max, cpu.cfs_period_us): the kernel's default. */
#define LMS_CGROUP_CPU_PERIOD_US 100000ull

struct lms_cgroup {
	int version;		  /* 1 or 2 */
	char *path[LMS_CG_COUNT]; /* v1: one directory per controller (NULL if absent); v2: path[0] */
	int dirfd[LMS_CG_COUNT];  /* O_PATH|O_DIRECTORY fds of the same, -1 if absent */
};

/*
 * Creates the group `name` (e.g. "lms-1234-1") with the limits (memory_mb, pids) and returns it.
 * fs_root is normally LMS_CGROUP_FS and self_cgroup LMS_CGROUP_SELF (tests pass a fake tree).
 */
int lms_cgroup_create(const char *fs_root, const char *self_cgroup, const char *name, const struct lms_limits *limits,
		      struct lms_cgroup **out, struct lms_error **err);

/* Changes the memory, pids and CPU bandwidth limits of an existing group (a prepared sandbox meeting its
 * request). */
int lms_cgroup_set_limits(const struct lms_cgroup *cg, const struct lms_limits *limits, struct lms_error **err);

/* v2: the directory fd for clone3's CLONE_INTO_CGROUP; v1: -1 (use lms_cgroup_attach). */
int lms_cgroup_clone_fd(const struct lms_cgroup *cg);

/* Moves a process into the group (every controller). */
int lms_cgroup_attach(const struct lms_cgroup *cg, pid_t pid, struct lms_error **err);

/* CPU time used by the group so far, in nanoseconds. */
int lms_cgroup_cpu_ns(const struct lms_cgroup *cg, uint64_t *ns, struct lms_error **err);

/* The group's peak memory use in KiB (page cache and tmpfs included), 0 where the kernel does not say. */
long lms_cgroup_memory_peak_kb(const struct lms_cgroup *cg);

/* Whether the kernel's OOM killer killed a process of the group. */
bool lms_cgroup_oom_killed(const struct lms_cgroup *cg);

/* Kills every process left in the group, removes it and frees cg. NULL is a no-op. */
int lms_cgroup_destroy(struct lms_cgroup *cg, struct lms_error **err);

/* Version-specific halves (cgroup-v1.c, cgroup-v2.c). */
int lms_cgroup_v1_create(struct lms_cgroup *cg, const char *fs_root, const char *self_cgroup, const char *name,
			 const struct lms_limits *limits, struct lms_error **err);
int lms_cgroup_v2_create(struct lms_cgroup *cg, const char *fs_root, const char *self_cgroup, const char *name,
			 const struct lms_limits *limits, struct lms_error **err);

int lms_cgroup_v1_set_limits(const struct lms_cgroup *cg, const struct lms_limits *limits, struct lms_error **err);
int lms_cgroup_v2_set_limits(const struct lms_cgroup *cg, const struct lms_limits *limits, struct lms_error **err);

/* mkdir of a group, its error saying what to do when permission is the problem. EEXIST is an error. */
int lms_cgroup_mkdir(const char *path, struct lms_error **err);

/* Writes a control file of the group (no-op flags let tests use a plain directory tree). */
int lms_cgroup_write(int dirfd, const char *file, const char *text, struct lms_error **err);
bool lms_cgroup_has(int dirfd, const char *file);

/* Removes groups left in `parent` by a supervisor that was killed before it could clean up. */
void lms_cgroup_reap_stale(const char *parent);

/* Finds the path of `controller` ("memory", or "" for v2) in /proc/self/cgroup-format text. */
char *lms_cgroup_self_path(const char *self_text, const char *controller);
