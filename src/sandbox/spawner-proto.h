#pragma once
/*
 * The spawner's protocols (docs/ARCHITECTURE.md draws them), private to sandbox/:
 *
 *   daemon -> spawner, on the spawner's socket, and spawner -> worker, on each worker's own socket:
 *     one `struct lms_spawn_msg` record per message (SOCK_SEQPACKET), its descriptors attached;
 *   worker -> spawner: one `struct lms_worker_msg` record (READY, FAILED with the cause, DONE, OWNS);
 *   worker (or spawner) -> daemon, on the events pipe of one request: frames (frames.c), a header
 *     {type, len} and len bytes: output chunks, then one RESULT or ERROR.
 *
 * Every message that names a lasting sandbox carries the daemon's 64-bit id for it, so the spawner
 * routes it to the one worker that holds that sandbox.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "core/error.h"
#include "sandbox/sandbox.h"
#include "sandbox/spawner.h"

enum lms_spawn_type {
	LMS_SPAWN_JOB = 1,     /* a one-shot command; fds: spec, events, cancel */
	LMS_SPAWN_CREATE = 2,  /* make lasting sandbox `sandbox`; fds: base spec, events (ERROR, or a STDOUT
				* frame of PID 1's pid, lms_frame_pid, then RESULT) */
	LMS_SPAWN_EXEC = 3,    /* a command in `sandbox`; fds as JOB */
	LMS_SPAWN_DESTROY = 4, /* end `sandbox`; fds: events (RESULT once it is gone, or ERROR) */
	LMS_SPAWN_PREPARE = 5, /* spawner -> idle worker: prepare a sandbox for the pool; no fds */
	LMS_SPAWN_START = 6,   /* a background command in `sandbox`; fds: spec, events (RESULT with its pid,
				* or ERROR), then its output, input, status and control (sandbox.h,
				* struct lms_background_io) */
	LMS_SPAWN_RELEASE = 7, /* spawner -> worker: end the prepared sandbox (its image left the pool); no fds */
};

struct lms_spawn_msg {
	uint32_t type;
	uint32_t reserved;
	uint64_t sandbox; /* CREATE, EXEC, DESTROY: the daemon's id; else 0 */
	uint64_t image;	  /* JOB, CREATE: the spec's lms_pool_key; PREPARE: the recipe to prepare; else 0 */
};

/* The largest spec a request may carry (its stdin included). */
#define LMS_SPAWN_SPEC_MAX (1ull << 31)

/* How many descriptors each type carries, in the order above. */
#define LMS_SPAWN_MAX_FDS 6
size_t lms_spawn_nfds(uint32_t type);

enum lms_worker_say {
	LMS_WORKER_READY = 1,  /* a pool sandbox is prepared */
	LMS_WORKER_FAILED = 2, /* preparing it failed (what: the cause); the worker ends */
	LMS_WORKER_DONE = 3,   /* a job (or a DESTROY) is done: the worker is idle */
	LMS_WORKER_OWNS = 4,   /* a CREATE succeeded: the worker holds that sandbox */
};

struct lms_worker_msg {
	uint32_t type;
	char what[1024]; /* FAILED: NUL-terminated */
};

/* The events pipe (frames.c). Writers ignore a reader that went away: its cancel pipe ends the job. */
void lms_frame_result(int fd, const struct lms_sandbox_result *res);
void lms_frame_error(int fd, const struct lms_error *e);
/* CREATE's answer before its RESULT: PID 1's pid (an int32_t), in the worker's PID namespace, which is
 * the daemon's (the spawner and its workers are forked from it). */
void lms_frame_pid(int fd, pid_t pid);
void lms_frame_error_text(int fd, enum lms_error_kind kind, const char *message);
/* A command's frames, queued rather than waited for (frames.c). lms_frame_queue_output, _pending_cb and
 * _drain_cb are a struct lms_output's callbacks (userdata: the queue); _finish writes the rest, blocking. */
struct lms_frame_queue {
	int fd;
	struct lms_buf q;
	size_t off;
	bool broken;
};
void lms_frame_queue_init(struct lms_frame_queue *q, int fd);
bool lms_frame_queue_pending(const struct lms_frame_queue *q);
void lms_frame_queue_drain(struct lms_frame_queue *q);
void lms_frame_queue_output(void *queue, enum lms_stream stream, const char *data, size_t len);
bool lms_frame_queue_pending_cb(void *queue);
void lms_frame_queue_drain_cb(void *queue);
void lms_frame_queue_finish(struct lms_frame_queue *q);

/* Reads one frame into *ev (lms_job_next's contract). */
int lms_frame_read(int fd, struct lms_job_event *ev, struct lms_error **err);

/* A job reading frames from events_fd; cancel_fd (or -1) is the write end of its cancel pipe (job.c). */
struct lms_job *lms_job_new(int events_fd, int cancel_fd);

/* What a pool sandbox is made of (pool-recipe.c). The key is 0 for the host image without a network,
 * else a hash of the image's name and layer paths and of the network's settings (never 0): the spawner
 * routes by it; a worker uses a prepared sandbox only when lms_pool_recipe_matches (the same image, layer
 * paths and layer directories' inodes; the same network settings, and the host's addresses and upstream
 * resolver as they were when it was prepared). */
uint64_t lms_pool_key(const struct lms_sandbox_spec *spec);
struct lms_layer_id {
	dev_t dev;
	ino_t ino;
};
struct lms_pool_recipe {
	uint64_t key;
	char *image; /* NULL for the host image */
	char **layers;
	struct lms_layer_id *ids; /* of each layer directory when the recipe was set */
	size_t n;
	bool network;
	char *net_dns, *net_allow_private, *net_allow;
	uint64_t net_stamp; /* of a prepared sandbox: lms_network_host_stamp before it was made */
};
/* False (the recipe cleared) when a layer directory is gone. */
bool lms_pool_recipe_set(struct lms_pool_recipe *r, const struct lms_sandbox_spec *spec);
bool lms_pool_recipe_matches(const struct lms_pool_recipe *r, const struct lms_sandbox_spec *spec);
void lms_pool_recipe_clear(struct lms_pool_recipe *r);
/* host_base with the recipe's image, layers and network: what a pool sandbox of it is made from. */
void lms_pool_recipe_base(const struct lms_pool_recipe *r, const struct lms_sandbox_spec *host_base,
			  struct lms_sandbox_spec *out);

/* The worker process (worker.c): serves its socket until end-of-file. Never returns. */
struct lms_pool_config {
	const struct lms_sandbox_spec *base; /* of pool sandboxes */
	int nice;			     /* every command runs at the spawner's priority */
	bool low_priority;		     /* workers may prepare at LMS_POOL_NICE (they can come back) */
};
#define LMS_POOL_NICE 19
__attribute__((noreturn)) void lms_worker_main(int ctl, const struct lms_pool_config *cfg, bool prepare);
