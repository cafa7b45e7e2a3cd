#include "server/exec-service.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "server/server.h"

struct lms_exec {
	struct lms_server *server;
	struct lms_job *job;
	double start_ms;
	bool recorded;
};

static enum lms_exec_outcome
outcome_of(const struct lms_sandbox_result *r)
{
	if (r->cancelled)
		return LMS_OUTCOME_CANCELLED;
	if (r->timed_out)
		return LMS_OUTCOME_TIMEOUT;
	if (r->oom_killed)
		return LMS_OUTCOME_OOM;
	return r->exit_code == 0 ? LMS_OUTCOME_OK : LMS_OUTCOME_NONZERO;
}

static void
record(struct lms_exec *x, const struct lms_sandbox_result *result)
{
	if (x->recorded)
		return;
	x->recorded = true;
	lms_metrics_exec(&x->server->metrics, result ? outcome_of(result) : LMS_OUTCOME_ERROR,
			 (lms_monotonic_ms() - x->start_ms) / 1e3);
	if (result != NULL && (result->net_rx_bytes || result->net_tx_bytes))
		lms_metrics_net(&x->server->metrics, result->net_rx_bytes, result->net_tx_bytes);
}

int
lms_exec_start(struct lms_server *s, uint64_t sandbox, const struct lms_sandbox_spec *spec, struct lms_exec **out,
	       struct lms_error **err)
{
	if (atomic_fetch_add(&s->active, 1) >= (int)s->cfg->max_concurrent) {
		atomic_fetch_sub(&s->active, 1);
		return lms_error_set(err, LMS_ERR_BUSY, 0, "too many executions at once: retry shortly");
	}
	struct lms_job *job = NULL;
	int r = sandbox == 0 ? lms_spawner_submit(s->spawner, spec, &job, err)
			     : lms_spawner_exec(s->spawner, sandbox, spec, &job, err);
	if (r < 0) {
		atomic_fetch_sub(&s->active, 1);
		return -1;
	}
	struct lms_exec *x = xcalloc(1, sizeof(*x));
	x->server = s;
	x->job = job;
	x->start_ms = lms_monotonic_ms();
	lms_server_track_job(s, job);
	*out = x;
	return 0;
}

int
lms_exec_next(struct lms_exec *x, int hangup_fd, struct lms_job_event *ev, struct lms_error **err)
{
	int r = lms_job_next_watching(x->job, hangup_fd, ev, err);
	if (r < 0 || (r == 1 && ev->type == LMS_JOB_ERROR))
		record(x, NULL);
	else if (r == 1 && ev->type == LMS_JOB_RESULT)
		record(x, &ev->result);
	return r;
}

struct lms_job *
lms_exec_job(struct lms_exec *x)
{
	return x->job;
}

void
lms_exec_end(struct lms_exec *x)
{
	if (x == NULL)
		return;
	lms_server_untrack_job(x->server, x->job);
	lms_job_free(x->job); /* closing its cancel pipe kills a command still running */
	atomic_fetch_sub(&x->server->active, 1);
	free(x);
}

int
lms_exec_collect(struct lms_exec *x, int hangup_fd, struct lms_job_output *out, struct lms_error **err)
{
	int r = lms_job_collect(x->job, hangup_fd, out, err);
	record(x, r == 0 ? &out->result : NULL);
	return r;
}

int
lms_exec_run(struct lms_server *s, uint64_t sandbox, const struct lms_sandbox_spec *spec, int hangup_fd,
	     struct lms_job_output *out, struct lms_error **err)
{
	*out = (struct lms_job_output){0};
	struct lms_exec *x = NULL;
	if (lms_exec_start(s, sandbox, spec, &x, err) < 0)
		return -1;
	int r = lms_exec_collect(x, hangup_fd, out, err);
	lms_exec_end(x);
	return r;
}
