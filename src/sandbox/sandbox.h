#pragma once
/*
 * The isolation engine: a plain C spec in, output through a callback and a result struct out.
 * It knows nothing of HTTP or JSON (DESIGN.md). Security model and mechanism: docs/SECURITY.md.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/error.h"

/* Defaults of API.md's exec request. */
#define LMS_DEFAULT_TIMEOUT_MS 30000
#define LMS_DEFAULT_MEMORY_MB 512
#define LMS_DEFAULT_PIDS 256
#define LMS_DEFAULT_OUTPUT_BYTES 1048576
#define LMS_DEFAULT_DISK_MB 1024
#define LMS_DEFAULT_CWD "/work"

/* Per-sandbox bounds on what the kernel counts per process or per user (docs/SECURITY.md): open files
 * per process (soft, hard), queued signals, POSIX message queue bytes, inotify instances and watches. */
#define LMS_SANDBOX_NOFILE_SOFT 1024
#define LMS_SANDBOX_NOFILE_HARD 4096
#define LMS_SANDBOX_SIGPENDING 1024
#define LMS_SANDBOX_MSGQUEUE_BYTES 65536
#define LMS_SANDBOX_INOTIFY_INSTANCES 8
#define LMS_SANDBOX_INOTIFY_WATCHES 8192
/* The sandbox's net.ipv4.tcp_rmem and tcp_wmem (min, start, max bytes per socket). */
#define LMS_SANDBOX_TCP_MEM "4096 16384 1048576"
/* Terminals a sandbox may open at once (its devpts instance's max=; the host has kernel.pty.max). */
#define LMS_SANDBOX_PTYS 64

/* In-sandbox uids and gids 0..LMS_UID_COUNT-1 map to host ids starting here when the daemon runs as
 * root: far from the ranges that useradd (1000..), /etc/subuid (100000..) and systemd-nspawn
 * (524288..0x6FFFFFFF) hand out, so no host account ever owns what a sandbox creates. */
#define LMS_UID_BASE 2147352576u
#define LMS_UID_COUNT 65536u

/* Upper bounds of what a spec may ask (validation). */
#define LMS_MAX_TIMEOUT_MS (24ull * 3600 * 1000)
#define LMS_MAX_MEMORY_MB (1024ull * 1024)
#define LMS_MAX_PIDS 1000000ull
#define LMS_MAX_OUTPUT_BYTES (1ull << 32)
#define LMS_MAX_DISK_MB (1024ull * 1024)
#define LMS_MAX_MILLICPUS 1024000ull /* 1024 cores */
#define LMS_MIN_MILLICPUS 10ull	     /* 0.01 core: a 1 ms quota per 100 ms period, the kernel's least */
#define LMS_MAX_ARGS 4096
#define LMS_MAX_ENV 4096

struct lms_limits {
	uint64_t timeout_ms;   /* wall clock; the whole tree is killed */
	uint64_t memory_mb;    /* all processes together (cgroup) */
	uint64_t pids;	       /* processes and threads at once (cgroup) */
	uint64_t cpu_ms;       /* CPU time of all processes together; 0 = none */
	uint64_t output_bytes; /* per stream; the rest is read and discarded */
	uint64_t disk_mb;      /* the writable /work, /tmp and /dev/shm together (tmpfs size) */
	uint64_t millicpus;    /* CPU bandwidth of all processes together, in thousandths of a core
				* (cgroup cpu.max / cfs_quota_us); 0 = none */
};

struct lms_sandbox_spec {
	char *const *argv; /* NULL-terminated, argv[0] looked up in the sandbox's PATH */
	char *const *env;  /* "K=V" added to the minimal environment; NULL-terminated or NULL */
	const char *cwd;   /* inside the sandbox; NULL = /work; created when missing and possible */
	const char *image; /* NULL or LMS_IMAGE_HOST, or an imported image's name (with its layers) */
	/* An imported image's layers: its unpacked trees on the host, absolute paths, the lowest first,
	 * NULL-terminated (the caller resolved the name: the engine reads no image store). The root is then an
	 * overlay of them with a private upper layer on the scratch file system; NULL for the host image. */
	char *const *layers;
	/* NULL: /work, /tmp and /dev/shm are a fresh tmpfs of disk_mb in the sandbox's own mount namespace,
	 * gone with it. Else a host directory holding work/, tmp/ and shm/ (a tmpfs the caller mounted and
	 * sized: its size is then the disk limit), bound in, so that the files outlive the sandbox's
	 * processes (a persistent sandbox across restarts). Only a sandbox's base spec looks at it. */
	const char *storage;
	const void *stdin_data; /* fed to the command then closed; NULL = /dev/null */
	size_t stdin_len;
	struct lms_limits limits;
	/* The internet through pasta, behind the sandbox's own packet filter (sandbox/network.h); false: its
	 * own network namespace with loopback only. Only a sandbox's base spec (or a one-shot's) looks at it
	 * and at the two below. */
	bool network;
	const char *net_dns;	       /* the upstream resolver's address; NULL: the host's /etc/resolv.conf */
	const char *net_allow_private; /* "CIDR,CIDR": private ranges the sandbox may reach; NULL: none */
	const char *net_allow; /* "name,*.name,CIDR": its allowlist (net/allowlist.h); NULL: every public address */
	/* NVIDIA passthrough: 0 none; bit N the GPU of index N; LMS_GPU_ALL (gpu.h) every GPU the host has */
	uint64_t gpus;
	int cancel_fd; /* when readable (or hung up), the sandbox is killed; -1 = none */
};

enum lms_stream {
	LMS_STREAM_STDOUT = 1,
	LMS_STREAM_STDERR = 2,
};

struct lms_sandbox_result {
	int exit_code; /* the command's, or 128+N when signal N ended it */
	int signal;    /* 0 when it exited */
	bool timed_out;
	bool oom_killed;
	bool cpu_exceeded;
	bool pids_limit_hit; /* the command's own pids limit refused a fork (a lasting sandbox's command) */
	bool cancelled;
	bool stdout_truncated;
	bool stderr_truncated;
	double duration_ms;
	double cpu_ms;
	long max_rss_kb;
	uint64_t net_rx_bytes; /* a network sandbox's interface during the command (all of it: background */
	uint64_t net_tx_bytes; /* processes' traffic meanwhile counts too); 0 without network */
	int pid; /* lms_sandbox_start: the started command's, in the sandbox's PID namespace; 0 if it did not start */
};

/* Called with each chunk of output as soon as it is read, within the output cap. */
typedef void (*lms_output_fn)(void *userdata, enum lms_stream stream, const char *data, size_t len);

/* Where a command's output goes. fn must not block: a caller whose reader may be slow (a streaming HTTP
 * client) keeps output back instead, says so through pending, and is called at drain when drain_fd can
 * be written, so that no reader can stop the command's limits (docs/SECURITY.md). */
struct lms_output {
	lms_output_fn fn; /* NULL: output is read and discarded */
	void *userdata;
	int drain_fd;			 /* -1: fn never keeps output back */
	bool (*pending)(void *userdata); /* output is kept back: poll drain_fd for writing */
	void (*drain)(void *userdata);	 /* drain_fd is writable */
	/* Another descriptor the caller serves while the command runs (the worker's socket: a second command
	 * of the same sandbox may come meanwhile): wake(wake_data) when wake_fd is readable; NULL: none. It
	 * may set wake to NULL (through a pointer of its own to this struct) to stop. */
	int wake_fd;
	void (*wake)(void *wake_data);
	void *wake_data;
};

/* Fills in the defaults above; argv stays NULL. */
void lms_sandbox_spec_init(struct lms_sandbox_spec *spec);

/* Reads a number of cores ("0.5", "2", "1.25": at most three decimals) as thousandths of a core; "0"
 * is 0 (no limit). LMS_ERR_INVALID names `what` and the bounds. */
int lms_limits_parse_cpus(const char *what, const char *text, uint64_t *millicpus, struct lms_error **err);

/* Checks that a spec is complete and within bounds. LMS_ERR_INVALID names the field. */
int lms_sandbox_spec_validate(const struct lms_sandbox_spec *spec, struct lms_error **err);

/*
 * Runs spec->argv in a fresh one-shot sandbox and waits for it. Returns 0 when the command ran (whatever
 * it did: see *result), < 0 when the sandbox could not be set up (LMS_ERR_SETUP names the step and the
 * cause, e.g. "mount /proc: Operation not permitted"). When it returns, no process, mount, cgroup or
 * scratch file of the sandbox is left.
 *
 * Must be called from a single-threaded process (the CLI, or the daemon's spawner): it forks, and the
 * child does more than async-signal-safe work before exec. The caller ignores SIGPIPE.
 */
int lms_sandbox_run(const struct lms_sandbox_spec *spec, const struct lms_output *out,
		    struct lms_sandbox_result *result, struct lms_error **err);

/* A spec as bytes (spec-codec.c), for the spawner's jobs and a prepared sandbox's launch message.
 * lms_spec_decode returns a spec whose strings live in *storage (free with free()); stdin_data points
 * into `data`, which must outlive the spec. */
struct lms_buf;
void lms_spec_encode(const struct lms_sandbox_spec *spec, struct lms_buf *out);
int lms_spec_decode(const char *data, size_t len, struct lms_sandbox_spec *spec, void **storage,
		    struct lms_error **err);

/*
 * A sandbox that lasts: lms_sandbox_create does everything that does not depend on a command (cgroup,
 * namespaces, root file system, uid maps, privileges dropped, seccomp) with base's limits as ceilings
 * (base's argv is not looked at); it then takes any number of
 * commands, one lms_sandbox_exec at a time, each in a session of its own, with its own pipes, limits
 * and report. Files and background processes stay between commands. lms_sandbox_destroy kills every
 * process of it and removes its cgroup. Same threading rules as lms_sandbox_run.
 *
 * A one-shot sandbox is the special case of one exec with LMS_EXEC_LAST: PID 1 ends with the command,
 * and everything the command left behind dies with it. A pool does the slow half (create) ahead of
 * demand; lms_sandbox_launch is that LAST exec followed by destroy.
 *
 * A command's limits may be at most base's (disk_mb exactly: the scratch file system is sized at
 * create). A one-shot command's memory and pids limits become the sandbox's; in a lasting sandbox the
 * sandbox's own stay (its commands share them). The sandbox runs at the caller's scheduling priority
 * at each exec, whatever it was created at (a pool creates at a low one).
 */
struct lms_sandbox;
#define LMS_EXEC_LAST 1u /* the sandbox's last command: it ends with it */
/* lms_sandbox_exec's rule for limits, for callers choosing between a prepared sandbox and a new one. */
bool lms_limits_fit_prepared(const struct lms_limits *base, const struct lms_limits *want);
int lms_sandbox_create(const struct lms_sandbox_spec *base, struct lms_sandbox **out, struct lms_error **err);
/* Runs spec in sb and waits for it (not for what it leaves in the background). Returns as
 * lms_sandbox_run. After a LAST exec, or once the sandbox has died, only lms_sandbox_destroy remains. */
int lms_sandbox_exec(struct lms_sandbox *sb, const struct lms_sandbox_spec *spec, unsigned flags,
		     const struct lms_output *out, struct lms_sandbox_result *result, struct lms_error **err);
/* Commands of one lasting sandbox at once: a caller that runs one in a fork of itself (while it watches
 * another, from its wake callback) takes the launch id in the parent before the fork, and the child calls
 * lms_sandbox_forked with it first: the child closes what belongs to the command the parent watches and
 * forgets what the parent keeps (background commands' groups), then may lms_sandbox_exec once. */
uint32_t lms_sandbox_take_id(struct lms_sandbox *sb);
void lms_sandbox_forked(struct lms_sandbox *sb, uint32_t id);
/* lms_sandbox_create returns while PID 1 still builds its root: the first exec waits for it to be ready.
 * lms_sandbox_wait_ready waits now (0, or the step that failed, LMS_ERR_SETUP); lms_sandbox_fd becomes
 * readable when PID 1 has something to say (ready, or failed) for a caller that waits on other things
 * meanwhile. */
int lms_sandbox_wait_ready(struct lms_sandbox *sb, struct lms_error **err);
bool lms_sandbox_is_ready(const struct lms_sandbox *sb);
/* PID 1, in the caller's PID namespace (-1 once it is reaped): the files API reaches the sandbox's root
 * through /proc/PID/root. */
pid_t lms_sandbox_pid(const struct lms_sandbox *sb);
int lms_sandbox_fd(const struct lms_sandbox *sb);
/* Lowers a sandbox's limits for good (a pool sandbox that becomes a lasting one with the request's
 * limits): they must fit lms_limits_fit_prepared. */
int lms_sandbox_limit(struct lms_sandbox *sb, const struct lms_limits *want, struct lms_error **err);
/* A prepared sandbox (no storage of its own) takes `storage` (spec->storage) as its /work, /tmp and
 * /dev/shm, and disk_mb (its size) as its disk limit: a pool sandbox becomes a persistent one. Waits for
 * it to be ready first. */
int lms_sandbox_attach_storage(struct lms_sandbox *sb, const char *storage, uint64_t disk_mb, struct lms_error **err);
/* A background command's descriptors, the caller's to close after the call: its combined output (write
 * end), its input (read end), the status pipe that gets its EXITED record (init-proto.h; write end) and
 * the control pipe whose bytes are signals for its session (read end). */
struct lms_background_io {
	int output, input, status, control;
};
/* Starts spec in sb in the background and returns at once: result->pid, or, when the program could not
 * start at all, pid 0 and the shell's exit code (127, 126). Its end is told on io->status, never to the
 * caller; nothing of it is watched here (no timeout: io->control ends it). */
int lms_sandbox_start(struct lms_sandbox *sb, const struct lms_sandbox_spec *spec, const struct lms_background_io *io,
		      struct lms_sandbox_result *result, struct lms_error **err);
/* Reads the read end of a background command's status pipe: 1 with res's exit_code, signal, cpu_ms and
 * max_rss_kb; 0 when it ended without a record (PID 1 died, and the command with it); -1 with errno
 * (EAGAIN: nothing yet). */
int lms_background_status(int fd, struct lms_sandbox_result *res);
/* A LAST exec that leaves sb to be destroyed: when it returns, PID 1 and everything in its PID namespace
 * are gone; a network's helpers, which live outside it, end at lms_sandbox_destroy. A caller that reports
 * the result first spares its client the wait for the cgroup to empty (a network sandbox's tap device is
 * unregistered as its pasta exits: tens of milliseconds). */
int lms_sandbox_exec_last(struct lms_sandbox *sb, const struct lms_sandbox_spec *spec, const struct lms_output *out,
			  struct lms_sandbox_result *result, struct lms_error **err);
/* lms_sandbox_exec_last, then destroy: consumes sb. */
int lms_sandbox_launch(struct lms_sandbox *sb, const struct lms_sandbox_spec *spec, const struct lms_output *out,
		       struct lms_sandbox_result *result, struct lms_error **err);
/* Ends sb (NULL is a no-op); the checked variant says when its cgroup could not be removed. */
void lms_sandbox_destroy(struct lms_sandbox *sb);
int lms_sandbox_destroy_checked(struct lms_sandbox *sb, struct lms_error **err);

/* The root file systems a sandbox can have: the host's (NULL means it too), or an imported image, given by
 * its name and its layers' directories (spec->layers). */
#define LMS_IMAGE_HOST "host"
#define LMS_MAX_LAYERS 128
bool lms_image_is_host(const char *image);
/* 0 for the host image, or an image given with 1 to LMS_MAX_LAYERS absolute layer paths; else
 * LMS_ERR_NOT_FOUND naming it (a name nothing resolved) or LMS_ERR_INVALID (layers with the host image). */
int lms_image_check(const char *image, char *const *layers, struct lms_error **err);

/* "SIGKILL" for SIGKILL; NULL for 0 or an unknown number. */
const char *lms_signal_name(int sig);
