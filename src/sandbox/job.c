/*
 * A request's events, as the daemon reads them: one frame at a time (lms_job_next), or the whole output
 * and the result collected (lms_job_collect: the exec service behind POST /v1/exec, and what the agent
 * and MCP will call). A client that hangs up cancels the job: its command is killed within a poll.
 */
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/alloc.h"
#include "sandbox/spawner-proto.h"

#ifndef POLLRDHUP
#define POLLRDHUP 0x2000
#endif

struct lms_job {
	int events_fd;
	int cancel_fd;
	bool done;
	atomic_bool cancelled; /* the cancel byte is written once, whoever asks (the client's thread, SIGTERM) */
};

struct lms_job *
lms_job_new(int events_fd, int cancel_fd)
{
	struct lms_job *job = xcalloc(1, sizeof(*job));
	job->events_fd = events_fd;
	job->cancel_fd = cancel_fd;
	return job;
}

int
lms_job_fd(const struct lms_job *job)
{
	return job->events_fd;
}

int
lms_job_next(struct lms_job *job, struct lms_job_event *ev, struct lms_error **err)
{
	*ev = (struct lms_job_event){0};
	if (job->done)
		return 0;
	int r = lms_frame_read(job->events_fd, ev, err);
	if (r < 0 || ev->type == LMS_JOB_RESULT || ev->type == LMS_JOB_ERROR)
		job->done = true;
	return r;
}

int
lms_job_next_watching(struct lms_job *job, int hangup_fd, struct lms_job_event *ev, struct lms_error **err)
{
	for (;;) {
		struct pollfd fds[2] = {
		    {.fd = job->done ? -1 : job->events_fd, .events = POLLIN},
		    {.fd = hangup_fd, .events = POLLRDHUP},
		};
		if (job->done)
			return lms_job_next(job, ev, err);
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "poll the job");
		}
		if (fds[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
			lms_job_cancel(job);
			hangup_fd = -1; /* cancelled once; the result follows */
		}
		if (fds[0].revents)
			return lms_job_next(job, ev, err);
	}
}

int
lms_job_collect(struct lms_job *job, int hangup_fd, struct lms_job_output *out, struct lms_error **err)
{
	*out = (struct lms_job_output){0};
	struct lms_job_event ev;
	int r;
	while ((r = lms_job_next_watching(job, hangup_fd, &ev, err)) == 1) {
		if (ev.type == LMS_JOB_RESULT) {
			out->result = ev.result;
			return 0;
		}
		if (ev.type == LMS_JOB_ERROR) {
			if (err != NULL && *err == NULL)
				*err = steal_pointer(&ev.error);
			lms_error_free(ev.error);
			lms_job_output_clear(out);
			return -1;
		}
		lms_buf_append(ev.type == LMS_JOB_STDOUT ? &out->out : &out->err, ev.data, ev.len);
		free(ev.data);
	}
	lms_job_output_clear(out);
	return r == 0 ? lms_error_set(err, LMS_ERR_INTERNAL, 0, "the job ended without a result") : -1;
}

void
lms_job_output_clear(struct lms_job_output *o)
{
	lms_buf_clear(&o->out);
	lms_buf_clear(&o->err);
}

void
lms_job_cancel(struct lms_job *job)
{
	/* A byte rather than a close: safe from another thread while the owner still uses the job. Once: a
	 * hang-up stays readable, and a byte at every look would fill the pipe of a job still queued, and
	 * block the caller on it. */
	if (job->cancel_fd >= 0 && !atomic_exchange(&job->cancelled, true))
		(void)!write(job->cancel_fd, "x", 1);
}

void
lms_job_free(struct lms_job *job)
{
	if (job == NULL)
		return;
	if (job->cancel_fd >= 0)
		close(job->cancel_fd);
	close(job->events_fd);
	free(job);
}
