#pragma once
/*
 * The messages between a sandbox's PID 1 (init.c) and its parent, the worker that created it
 * (prepare.c, exec.c). They travel on one SOCK_SEQPACKET socket pair, one fixed-size record per
 * message, descriptors attached with SCM_RIGHTS (core/fdio.h). docs/ARCHITECTURE.md draws the whole.
 *
 * parent -> PID 1, during setup: two one-byte records, 'm' once the uid maps are written and 'c' once
 * the cgroup holds it. After READY, as many LAUNCH and KILL records as the parent likes; end-of-file
 * ends PID 1 and with it every process of the sandbox.
 *
 * PID 1 -> parent: READY (or FAILED with id 0) once prepared; for each LAUNCH, STARTED then EXITED, or
 * FAILED when the command could not be started for a reason of the sandbox's (its working directory).
 *
 * PID 1 runs inside the sandbox, beside the commands it starts: the parent checks every record it
 * reads (type, size, id) as it would any hostile bytes.
 */
#include <stdint.h>

enum lms_init_msg_type {
	LMS_INIT_LAUNCH = 1,   /* id, flags; fds: the launch spec (a memfd), stdout, stderr[, stdin] */
	LMS_INIT_KILL = 2,     /* id: SIGKILL every process of that launch's session */
	LMS_INIT_READY = 10,   /* prepared: launches may come */
	LMS_INIT_FAILED = 11,  /* id (0: the setup), errnum, what */
	LMS_INIT_STARTED = 12, /* id, pid (in the sandbox's PID namespace) */
	LMS_INIT_EXITED = 13,  /* id, status (a wait status), the command's rusage */
};

/* LAUNCH flags. */
#define LMS_INIT_LAST 1u  /* PID 1 exits once this command has: a one-shot sandbox */
#define LMS_INIT_STDIN 2u /* a fourth descriptor is the command's standard input (else /dev/null) */
/* A background command (with STDIN): two more descriptors. PID 1 writes its EXITED record to the status
 * descriptor, not to its parent, and closes it; each byte read from the control descriptor is a signal
 * for the command's session. STARTED still goes to the parent. */
#define LMS_INIT_DETACHED 4u
/* The command runs in a group of its own (its memory and pids limits, below the sandbox's): after the
 * launch's other descriptors come `status` (1 or 2) cgroup.procs files opened for writing by the parent
 * (lms_cgroup_join_fds). PID 1 then forks rather than spawns, and the child writes "0" to each before it
 * execs, so that nothing of the command ever runs outside the group. */
#define LMS_INIT_CGROUP 8u
#define LMS_INIT_MAX_JOIN 2
/* The launch's STARTED, EXITED and FAILED go to a socket of its own, the descriptor after the launch's
 * others (before the join descriptors), rather than to the parent's socket; PID 1 closes it after EXITED.
 * Commands of one sandbox that run at once are each watched by a process of their own (worker.c), and
 * each reads only its own records; a KILL still comes on the parent's socket. */
#define LMS_INIT_REPLY 16u
/* FAILED flags. */
#define LMS_INIT_FAILED_CWD 1u /* the step was the launch's own cwd (not the default): the request's error */

struct lms_init_msg {
	uint32_t type;
	uint32_t id; /* chosen by the parent, echoed by PID 1 */
	uint32_t flags;
	int32_t errnum;
	int32_t status;
	int32_t pid;
	int64_t utime_us, stime_us, maxrss_kb;
	char what[200]; /* FAILED: the step, "chdir /nowhere"; NUL-terminated */
};

/* Descriptors of a LAUNCH, in order. */
enum {
	LMS_INIT_FD_SPEC,
	LMS_INIT_FD_STDOUT,
	LMS_INIT_FD_STDERR,
	LMS_INIT_FD_STDIN,
	LMS_INIT_FD_STATUS,
	LMS_INIT_FD_CONTROL,
	LMS_INIT_NFDS
};
#define LMS_INIT_MAX_FDS (LMS_INIT_NFDS + 1 + LMS_INIT_MAX_JOIN)
