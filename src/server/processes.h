#pragma once
/*
 * Background processes of persistent sandboxes as objects (API.md, "Persistent sandboxes"): started by
 * an exec with "background": true, they run under the sandbox's PID 1 while the daemon holds their
 * pipes. One thread reads every process's combined output into a ring of its own (the latest `cap`
 * bytes, at absolute offsets) and its exit from its status pipe, so that a process never waits on a
 * client and its life never depends on a connection. No HTTP here (routes-processes.c).
 *
 * A process is named by its id ("proc_" and 16 hex digits) or by its pid in the sandbox (the newest
 * with that pid). Thread-safe.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/error.h"
#include "sandbox/spawner.h"

struct lms_procs;

/* Processes one sandbox keeps (running or exited); past it, the oldest exited one is forgotten, and a
 * start when all are running is LMS_ERR_BUSY. */
#define LMS_PROCS_PER_SANDBOX 32

int lms_procs_new(struct lms_procs **out, struct lms_error **err);
/* Stops the reader thread and forgets every process (their sandboxes end them). NULL is a no-op. */
void lms_procs_free(struct lms_procs *ps);

/* Starts spec (its stdin_data, when given, is written and the input closed; else the input stays open
 * for lms_procs_write) in the spawner's lasting sandbox `key`, known to clients as `sandbox`; its output
 * is kept up to spec->limits.output_bytes. Returns the process's object (new reference). */
json_t *lms_procs_start(struct lms_procs *ps, struct lms_spawner *sp, const char *sandbox, uint64_t key,
			const struct lms_sandbox_spec *spec, const char *cmd, struct lms_error **err);

/* {"data": [...]}: the sandbox's processes, oldest first. */
json_t *lms_procs_list(struct lms_procs *ps, const char *sandbox);

/* One process's object; with wait_ms > 0, once it has exited or wait_ms have passed. LMS_ERR_NOT_FOUND. */
json_t *lms_procs_get(struct lms_procs *ps, const char *sandbox, const char *ref, int wait_ms, struct lms_error **err);

struct lms_proc_output {
	uint64_t offset;  /* where the bytes start: the asked offset, or the oldest kept when it was dropped */
	uint64_t end;	  /* offset + the bytes returned */
	uint64_t total;	  /* everything it has written so far */
	uint64_t dropped; /* bytes between the asked offset and `offset` that are no longer kept */
	bool exited;	  /* and nothing more will come */
};
/* Appends to out the output from `offset` on (at most max bytes); with wait_ms > 0, first waits until
 * there is some past offset or it has exited (or wait_ms pass). */
int lms_procs_read(struct lms_procs *ps, const char *sandbox, const char *ref, uint64_t offset, size_t max, int wait_ms,
		   struct lms_buf *out, struct lms_proc_output *info, struct lms_error **err);

/* A signal for its session (LMS_ERR_CONFLICT once it has exited). */
int lms_procs_signal(struct lms_procs *ps, const char *sandbox, const char *ref, int sig, struct lms_error **err);

/* Writes to its input (within wait_ms; a process that does not read is LMS_ERR_BUSY), then closes the
 * input when close_after. */
int lms_procs_write(struct lms_procs *ps, const char *sandbox, const char *ref, const char *data, size_t len,
		    bool close_after, int wait_ms, struct lms_error **err);

/* The sandbox is gone: its processes are forgotten (they died with it). */
void lms_procs_drop(struct lms_procs *ps, const char *sandbox);
