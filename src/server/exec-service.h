#pragma once
/*
 * Running a command to a result, for any caller inside the daemon: the exec routes today, the agent
 * loop and the MCP server next (DESIGN.md: they call the same services, never a route). Admission
 * (--max-concurrent: LMS_ERR_BUSY past it), the spawner, the registry that SIGTERM cancels, the
 * execution metrics. No HTTP in here: a caller passes the descriptor whose hang-up cancels the command
 * (the client's socket), or -1.
 */
#include <stdint.h>

#include "core/error.h"
#include "sandbox/spawner.h"

struct lms_server;
struct lms_exec;

/* Starts spec in a fresh one-shot sandbox (sandbox 0) or in lasting sandbox `sandbox`. */
int lms_exec_start(struct lms_server *s, uint64_t sandbox, const struct lms_sandbox_spec *spec, struct lms_exec **out,
		   struct lms_error **err);

/* The next event (lms_job_next_watching); the last one is counted in the metrics. */
int lms_exec_next(struct lms_exec *x, int hangup_fd, struct lms_job_event *ev, struct lms_error **err);

/* The call's job, for a caller that must be able to cancel it from elsewhere (a DELETE of its sandbox). */
struct lms_job *lms_exec_job(struct lms_exec *x);

/* Ends the call: cancels the command if it still runs, frees x. NULL is a no-op. */
void lms_exec_end(struct lms_exec *x);

/* Every event to the end: the whole output and the result in *out (lms_job_output_clear). */
int lms_exec_collect(struct lms_exec *x, int hangup_fd, struct lms_job_output *out, struct lms_error **err);

/* start, collect, end. */
int lms_exec_run(struct lms_server *s, uint64_t sandbox, const struct lms_sandbox_spec *spec, int hangup_fd,
		 struct lms_job_output *out, struct lms_error **err);
