#pragma once
/* What prepare.c (making and ending a sandbox) and exec.c (running a command in it) share. */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sandbox/cgroup.h"
#include "sandbox/sandbox.h"

struct lms_sandbox {
	struct lms_limits base; /* the ceilings it was made with */
	uint64_t gpus;		/* as the spec's */
	bool network;		/* pasta and the packet filter are attached (network.h) */
	int net_dev;		/* the namespace's /proc/PID/net/dev (network.h), or -1 */
	struct lms_cgroup *cg;
	int ctl;	  /* our end of PID 1's socket (init-proto.h); its end-of-file is PID 1's exit */
	pid_t pid;	  /* PID 1, in our PID namespace; -1 once reaped */
	uint32_t next_id; /* of the next launch */
	bool ready;	  /* PID 1 said READY */
	bool dead;	  /* PID 1 has exited or was killed: no launch can come */
	/* Background commands' own groups (lms_cgroup_child_create), removed once empty (exec.c) */
	struct lms_cgroup **groups;
	size_t n_groups;
	struct watch *watching; /* the command being watched now (exec.c), or NULL */
	bool gpu_driver;	/* the driver's files are bound in (an image with a GPU): on PATH and LD_LIBRARY_PATH */
};

/* Removes the background commands' groups that are empty now; every one when `all`. */
void lms_sandbox_sweep_groups(struct lms_sandbox *sb, bool all);

/* What a sandbox of this host can be: checked for a sandbox's base and for every command. */
int lms_sandbox_check_support(const struct lms_sandbox_spec *spec, struct lms_error **err);

/* Kills PID 1 (and with it the PID namespace) and reaps it; *status and *ru get its own. */
void lms_sandbox_kill_init(struct lms_sandbox *sb, int *status);
