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
	/* v2: the leaf "init" below path[0] that PID 1 (and every command without limits of its own) sits
	 * in, so that the sandbox's group may hand controllers to its commands' groups (cgroup v2 allows no
	 * process in a group whose children have controllers); -1 on v1 and for a command's group. */
	int init_fd;
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

/*
 * A group below `parent` for one command of a lasting sandbox (name: "x12"), with that command's memory
 * and pids limits, which count against the sandbox's too (the hierarchy): v1 a directory in the memory
 * and pids hierarchies, v2 a leaf beside "init". Its CPU time is counted in the sandbox's group only.
 */
int lms_cgroup_child_create(const struct lms_cgroup *parent, const char *name, const struct lms_limits *limits,
			    struct lms_cgroup **out, struct lms_error **err);

/* The group's cgroup.procs files opened for writing (one per hierarchy: *n of them, at most 2). A process
 * that writes "0" to each joins the group: the kernel checks the credentials of whoever opened the file
 * (Linux 5.16 and later), so a process of the sandbox, which could not open them, may use them. */
int lms_cgroup_join_fds(const struct lms_cgroup *cg, int fds[2], size_t *n, struct lms_error **err);

/* Whether no process is left in the group. */
bool lms_cgroup_empty(const struct lms_cgroup *cg);

/* Whether the group's pids limit has refused a fork or a clone (pids.events "max"). */
bool lms_cgroup_pids_hit(const struct lms_cgroup *cg);

/* CPU time used by the group so far, in nanoseconds. */
int lms_cgroup_cpu_ns(const struct lms_cgroup *cg, uint64_t *ns, struct lms_error **err);

/* The group's peak memory use in KiB (page cache and tmpfs included), 0 where the kernel does not say. */
long lms_cgroup_memory_peak_kb(const struct lms_cgroup *cg);

/* Whether the kernel's OOM killer killed a process of the group; how many times, so far. */
bool lms_cgroup_oom_killed(const struct lms_cgroup *cg);
uint64_t lms_cgroup_oom_kills(const struct lms_cgroup *cg);

/* Kills every process left in the group and in the groups below it (its commands'), removes them all
 * and frees cg. NULL is a no-op. */
int lms_cgroup_destroy(struct lms_cgroup *cg, struct lms_error **err);

/* Version-specific halves (cgroup-v1.c, cgroup-v2.c). */
int lms_cgroup_v1_create(struct lms_cgroup *cg, const char *fs_root, const char *self_cgroup, const char *name,
			 const struct lms_limits *limits, struct lms_error **err);
int lms_cgroup_v2_create(struct lms_cgroup *cg, const char *fs_root, const char *self_cgroup, const char *name,
			 const struct lms_limits *limits, struct lms_error **err);

int lms_cgroup_v1_set_limits(const struct lms_cgroup *cg, const struct lms_limits *limits, struct lms_error **err);
int lms_cgroup_v2_set_limits(const struct lms_cgroup *cg, const struct lms_limits *limits, struct lms_error **err);
/* v2: the sandbox's group hands memory and pids to its commands' groups (its PID 1 sits in "init"); a
 * command's group gets the sandbox's rules (no swap, one OOM kill takes the whole group). */
int lms_cgroup_v2_delegate(const struct lms_cgroup *parent, struct lms_error **err);
int lms_cgroup_v2_child_setup(const struct lms_cgroup *cg, struct lms_error **err);

/* mkdir of a group, its error saying what to do when permission is the problem. EEXIST is an error. */
int lms_cgroup_mkdir(const char *path, struct lms_error **err);

/* Writes a control file of the group (no-op flags let tests use a plain directory tree). */
int lms_cgroup_write(int dirfd, const char *file, const char *text, struct lms_error **err);
bool lms_cgroup_has(int dirfd, const char *file);

/* Removes groups left in `parent` by a supervisor that was killed before it could clean up. */
void lms_cgroup_reap_stale(const char *parent);

/* Finds the path of `controller` ("memory", or "" for v2) in /proc/self/cgroup-format text. */
char *lms_cgroup_self_path(const char *self_text, const char *controller);
