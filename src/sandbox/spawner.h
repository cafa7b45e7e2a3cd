#pragma once
/*
 * Running sandboxes from a threaded process. lms_sandbox_run() must not be called after fork() in a
 * threaded process (STYLE.md, "Threads and namespaces"), so the daemon forks a spawner before its first
 * thread. Each request goes to the spawner with its spec in a memfd; the spawner hands it to a worker
 * (single-threaded, forked by the spawner and kept across jobs) that runs the sandbox and streams frames
 * back on a pipe: output chunks as they are read, then the result or the error. A byte on the job's
 * cancel pipe kills its command. Lasting sandboxes are named by a 64-bit id the daemon chooses: the
 * spawner routes each one's commands to the one worker that holds it. docs/ARCHITECTURE.md.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "core/error.h"
#include "sandbox/sandbox.h"

struct lms_spawner;
struct lms_job;

enum lms_job_event_type {
	LMS_JOB_STDOUT = 1,
	LMS_JOB_STDERR = 2,
	LMS_JOB_RESULT = 3, /* last: result is filled */
	LMS_JOB_ERROR = 4,  /* last: error is filled */
};

struct lms_job_event {
	enum lms_job_event_type type;
	char *data; /* output chunk (caller frees), NULL for RESULT and ERROR */
	size_t len;
	struct lms_sandbox_result result;
	struct lms_error *error; /* caller frees */
};

#define LMS_POOL_MAX 64

/* Forks the spawner. Call before any thread exists. It keeps pool_size sandboxes prepared with
 * pool_base (sandbox.h, lms_sandbox_prepare) and hands each job to one of them when it fits (the same
 * image, limits within the base's), refilling in the background; other jobs, and jobs that find the
 * pool empty, get a sandbox made on demand. pool_base must stay valid (it is read after fork). */
int lms_spawner_start(const char *helper, const struct lms_sandbox_spec *pool_base, unsigned pool_size,
		      struct lms_spawner **out, struct lms_error **err);

/* The spawner in a process of its own image (`lm-sandbox __spawner SOCK BASE_FD POOL_SIZE [LOG_LEVEL]`):
 * `helper` above names that binary; NULL forks the caller instead. Never returns but on a bad start. */
int lms_spawner_helper_main(int sock, int base_fd, unsigned pool_size, const char *log_level);

/* The spawner's loop on its socket (pool.c). Never returns. */
__attribute__((noreturn)) void lms_spawner_serve(int sock, const struct lms_sandbox_spec *pool_base,
						 unsigned pool_size);

/* From a thread of the caller that lives until lms_spawner_stop: watches the spawner and, when it dies
 * (a crash, kill -9), starts a new one from the helper binary and counts a new generation. Lasting
 * sandboxes of an older generation are gone from the spawner: their owner makes them again. */
int lms_spawner_watch(struct lms_spawner *sp, struct lms_error **err);
/* 1 for the first spawner, then one more for each that replaced a dead one. */
unsigned lms_spawner_generation(struct lms_spawner *sp);

/* Stops the spawner (running workers keep their sandboxes until their jobs are cancelled or end). */
void lms_spawner_stop(struct lms_spawner *sp);

/* Sends a job. Thread-safe. The spec is copied; the caller keeps it. */
int lms_spawner_submit(struct lms_spawner *sp, const struct lms_sandbox_spec *spec, struct lms_job **out,
		       struct lms_error **err);

/* A lasting sandbox (sandbox.h, lms_sandbox_create) under the daemon's id `sandbox`, made with base's
 * limits: blocks until it is ready (a few ms), or fails (an id in use is LMS_ERR_INVALID). *pid1 (when
 * not NULL) gets its PID 1's pid in the caller's PID namespace (-1 if the worker did not say). */
int lms_spawner_create(struct lms_spawner *sp, uint64_t sandbox, const struct lms_sandbox_spec *base, pid_t *pid1,
		       struct lms_error **err);

/* A command in lasting sandbox `sandbox`, as lms_spawner_submit (an unknown id is an ERROR event,
 * LMS_ERR_NOT_FOUND). Commands of one sandbox run one after the other, in the order sent. */
int lms_spawner_exec(struct lms_spawner *sp, uint64_t sandbox, const struct lms_sandbox_spec *spec,
		     struct lms_job **out, struct lms_error **err);

/* A background command in lasting sandbox `sandbox` (sandbox.h, lms_sandbox_start): blocks until it has
 * started (*pid, in the sandbox) or could not (*pid 0, *exit_code the shell's). io's descriptors stay the
 * caller's (the spawner gets copies). */
int lms_spawner_start_background(struct lms_spawner *sp, uint64_t sandbox, const struct lms_sandbox_spec *spec,
				 const struct lms_background_io *io, int *pid, int *exit_code, struct lms_error **err);

/* Ends lasting sandbox `sandbox`: every process killed, its cgroup and mounts gone when it returns. */
int lms_spawner_destroy(struct lms_spawner *sp, uint64_t sandbox, struct lms_error **err);

/* The descriptor that becomes readable when the job has an event: poll it, then lms_job_next. */
int lms_job_fd(const struct lms_job *job);

/* Reads the next event (blocks until one is complete). Returns 1 with *ev filled, 0 after the last
 * event, -1 on error (the worker died without a result: LMS_ERR_INTERNAL). */
int lms_job_next(struct lms_job *job, struct lms_job_event *ev, struct lms_error **err);

/* lms_job_next, watching hangup_fd (a client's socket, or -1) meanwhile: when it hangs up, the job is
 * cancelled (once), and its last event, the result of a killed command, follows. */
int lms_job_next_watching(struct lms_job *job, int hangup_fd, struct lms_job_event *ev, struct lms_error **err);

/* A job's whole output and its result. */
struct lms_job_output {
	struct lms_buf out, err; /* within the command's output cap */
	struct lms_sandbox_result result;
};

/* Collects a job to its end, watching hangup_fd as lms_job_next_watching. 0 with *out filled (free with
 * lms_job_output_clear), or -1 with the job's own error (a setup failure, the worker's death). */
int lms_job_collect(struct lms_job *job, int hangup_fd, struct lms_job_output *out, struct lms_error **err);
void lms_job_output_clear(struct lms_job_output *o);

/* Kills the job's sandbox (idempotent). */
void lms_job_cancel(struct lms_job *job);

/* Cancels the job if it is still running and frees it. NULL is a no-op. */
void lms_job_free(struct lms_job *job);
