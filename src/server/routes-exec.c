/*
 * POST /v1/exec (JSON or Server-Sent Events) and the seed's POST /run-bash/. The request becomes a spec
 * (api/exec-request.c), the spec a job for the spawner, and the job's events the response. A client
 * that goes away (the socket hangs up) cancels the job.
 */
#include <poll.h>
#include <string.h>

#include "api/exec-json.h"
#include "api/exec-request.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/utf8.h"
#include "server/server.h"

#ifndef POLLRDHUP
#define POLLRDHUP 0x2000
#endif

struct exec {
	struct lms_request *req;
	struct lms_server *server;
	struct lms_exec_request *xr;
	struct lms_job *job;
	int client_fd; /* -1 once the client has hung up and the job is cancelled */
	double start_ms;
	bool counted;
	bool finished;
	/* streaming */
	struct lms_buf pending;
	size_t pending_off;
	char tail[3][4]; /* per stream: an incomplete UTF-8 sequence held for the next chunk */
	size_t tail_len[3];
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
exec_free(struct exec *x)
{
	if (x == NULL)
		return;
	if (x->job) {
		lms_server_untrack_job(x->server, x->job);
		lms_job_free(x->job);
	}
	if (x->counted)
		atomic_fetch_sub(&x->server->active, 1);
	lms_exec_request_free(x->xr);
	lms_buf_clear(&x->pending);
	free(x);
}

/* Parses, admits (429 past --max-concurrent) and submits. Returns NULL once a reply is queued. */
static struct exec *
start_exec(struct lms_request *req, enum MHD_Result *reply)
{
	struct lms_server *s = req->server;
	struct lms_config *cfg = s->cfg;
	struct lms_exec_policy policy = {
	    .defaults = cfg->defaults,
	    .ceilings = cfg->defaults,
	    .allow_network = cfg->allow_network,
	    .have_bash = s->have_bash,
	};
	policy.ceilings.timeout_ms = cfg->max_timeout_ms;
	_cleanup_error_ struct lms_error *err = NULL;
	struct exec *x = xcalloc(1, sizeof(*x));
	x->req = req;
	x->server = s;
	x->client_fd = lms_request_socket(req);
	x->start_ms = lms_monotonic_ms();
	int parsed = lms_exec_request_parse(req->body.data ? req->body.data : "", req->body.len, &policy, &x->xr, &err);
	lms_request_body_done(req); /* the spec has what it needs: the body's room is free for others */
	if (parsed < 0) {
		exec_free(x);
		*reply = lms_reply_lms_error(req, err);
		return NULL;
	}
	x->counted = true;
	if (atomic_fetch_add(&s->active, 1) >= (int)cfg->max_concurrent) {
		exec_free(x);
		const struct lms_header retry[] = {{MHD_HTTP_HEADER_RETRY_AFTER, "1"}, {NULL, NULL}};
		*reply = lms_reply_error_headers(req, 429, retry, "rate_limit_error", "too_many_requests",
						 "too many executions at once: retry shortly");
		return NULL;
	}
	if (lms_spawner_submit(s->spawner, &x->xr->spec, &x->job, &err) < 0) {
		exec_free(x);
		*reply = lms_reply_lms_error(req, err);
		return NULL;
	}
	lms_server_track_job(s, x->job);
	return x;
}

/* Waits for the job's next event, or for the client to hang up (which cancels the job). */
static int
next_event(struct exec *x, struct lms_job_event *ev, struct lms_error **err)
{
	for (;;) {
		struct pollfd fds[2] = {
		    {.fd = lms_job_fd(x->job), .events = POLLIN},
		    {.fd = x->client_fd, .events = POLLRDHUP},
		};
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "poll the job");
		}
		/* Once: the hang-up stays readable, and a byte each time round would fill the cancel pipe while
		 * the job is still queued, blocking this thread (and SIGTERM's cancel) on a full pipe. */
		if (fds[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
			lms_job_cancel(x->job);
			x->client_fd = -1;
		}
		if (fds[0].revents)
			return lms_job_next(x->job, ev, err);
	}
}

static void
record(struct exec *x, const struct lms_job_event *ev)
{
	enum lms_exec_outcome o = ev->type == LMS_JOB_RESULT ? outcome_of(&ev->result) : LMS_OUTCOME_ERROR;
	lms_metrics_exec(&x->server->metrics, o, (lms_monotonic_ms() - x->start_ms) / 1e3);
}

/* ---- one JSON response ---- */

static enum MHD_Result
exec_buffered(struct lms_request *req, struct exec *x, bool seed)
{
	enum MHD_Result reply;
	struct lms_buf out = {0}, errb = {0};
	struct lms_job_event ev;
	_cleanup_error_ struct lms_error *err = NULL;
	int r;
	while ((r = next_event(x, &ev, &err)) == 1) {
		if (ev.type == LMS_JOB_STDOUT || ev.type == LMS_JOB_STDERR) {
			lms_buf_append(ev.type == LMS_JOB_STDOUT ? &out : &errb, ev.data, ev.len);
			free(ev.data);
			continue;
		}
		break;
	}
	if (r == 1)
		record(x, &ev);
	if (r < 0) {
		reply = lms_reply_lms_error(req, err);
	} else if (ev.type == LMS_JOB_ERROR) {
		reply = lms_reply_lms_error(req, ev.error);
		lms_error_free(ev.error);
	} else {
		json_t *body =
		    lms_exec_result_json(&ev.result, out.data, out.len, errb.data, errb.len, x->xr->encoding);
		if (seed) {
			/* The original sketch's names, beside API.md's. */
			json_object_set(body, "output", json_object_get(body, "stdout"));
			json_object_set(body, "error", json_object_get(body, "stderr"));
		}
		reply = lms_reply_json(req, 200, body);
	}
	lms_buf_clear(&out);
	lms_buf_clear(&errb);
	exec_free(x);
	return reply;
}

/* ---- Server-Sent Events ---- */

static size_t
incomplete_utf8_tail(const char *s, size_t len)
{
	/* Length of a trailing sequence that is a valid UTF-8 prefix waiting for more bytes. */
	for (size_t back = 1; back <= 3 && back <= len; back++) {
		unsigned char c = (unsigned char)s[len - back];
		if ((c & 0xC0) == 0x80)
			continue;
		size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 1;
		return need > back ? back : 0;
	}
	return 0;
}

static void
sse_event(struct lms_buf *out, const char *event, json_t *data)
{
	char *text = json_dumps(data, LMS_JSON_FLAGS);
	json_decref(data);
	lms_buf_append(out, "event: ", 7);
	lms_buf_append(out, event, strlen(event));
	lms_buf_append(out, "\ndata: ", 7);
	if (text)
		lms_buf_append(out, text, strlen(text));
	lms_buf_append(out, "\n\n", 2);
	free(text);
}

static void
sse_output(struct exec *x, int stream, const char *data, size_t len)
{
	struct lms_buf chunk = {0};
	json_t *value;
	if (x->xr->encoding == LMS_ENCODING_BASE64) {
		struct lms_sandbox_result none = {0};
		json_t *tmp = lms_exec_result_json(&none, data, len, NULL, 0, LMS_ENCODING_BASE64);
		value = json_incref(json_object_get(tmp, "stdout"));
		json_decref(tmp);
	} else {
		/* A character split between two reads is held back, not turned into U+FFFD. */
		lms_buf_append(&chunk, x->tail[stream], x->tail_len[stream]);
		lms_buf_append(&chunk, data, len);
		size_t keep = incomplete_utf8_tail(chunk.data, chunk.len);
		x->tail_len[stream] = keep;
		memcpy(x->tail[stream], chunk.data + chunk.len - keep, keep);
		size_t clean_len;
		char *clean = lms_utf8_sanitize(chunk.data, chunk.len - keep, &clean_len);
		value = json_stringn(clean, clean_len);
		free(clean);
	}
	lms_buf_clear(&chunk);
	sse_event(&x->pending, stream == 1 ? "stdout" : "stderr", json_pack("{s:o}", "data", value));
}

static void
sse_finish(struct exec *x, const struct lms_job_event *ev)
{
	for (int s = 1; s <= 2; s++)
		if (x->tail_len[s] > 0) {
			size_t n = x->tail_len[s];
			x->tail_len[s] = 0;
			char held[4];
			memcpy(held, x->tail[s], n);
			size_t clean_len;
			char *clean = lms_utf8_sanitize(held, n, &clean_len);
			sse_event(&x->pending, s == 1 ? "stdout" : "stderr",
				  json_pack("{s:s%}", "data", clean, clean_len));
			free(clean);
		}
	if (ev->type == LMS_JOB_ERROR) {
		sse_event(&x->pending, "error", lms_error_json(ev->error));
		return;
	}
	json_t *result = lms_exec_result_json(&ev->result, NULL, 0, NULL, 0, LMS_ENCODING_UTF8);
	json_object_del(result, "stdout");
	json_object_del(result, "stderr");
	sse_event(&x->pending, "exit", result);
}

static ssize_t
sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct exec *x = cls;
	while (x->pending_off >= x->pending.len) {
		lms_buf_clear(&x->pending);
		x->pending_off = 0;
		if (x->finished)
			return MHD_CONTENT_READER_END_OF_STREAM;
		struct lms_job_event ev;
		_cleanup_error_ struct lms_error *err = NULL;
		int r = next_event(x, &ev, &err);
		if (r < 0) {
			x->finished = true;
			sse_event(&x->pending, "error", lms_error_json(err));
			continue;
		}
		if (r == 0) {
			x->finished = true;
			continue;
		}
		if (ev.type == LMS_JOB_STDOUT || ev.type == LMS_JOB_STDERR) {
			sse_output(x, ev.type == LMS_JOB_STDOUT ? 1 : 2, ev.data, ev.len);
			free(ev.data);
			continue;
		}
		record(x, &ev);
		sse_finish(x, &ev);
		lms_error_free(ev.error);
		x->finished = true;
		if (ev.type == LMS_JOB_RESULT && ev.result.cancelled)
			return MHD_CONTENT_READER_END_WITH_ERROR; /* nobody is listening any more */
	}
	size_t n = x->pending.len - x->pending_off;
	if (n > max)
		n = max;
	memcpy(buf, x->pending.data + x->pending_off, n);
	x->pending_off += n;
	return (ssize_t)n;
}

static void
sse_free(void *cls)
{
	exec_free(cls);
}

static enum MHD_Result
exec_streamed(struct lms_request *req, struct exec *x)
{
	return lms_reply_event_stream(req, sse_read, x, sse_free);
}

enum MHD_Result
lms_route_exec(struct lms_request *req)
{
	enum MHD_Result reply = MHD_NO;
	struct exec *x = start_exec(req, &reply);
	if (x == NULL)
		return reply;
	return x->xr->stream ? exec_streamed(req, x) : exec_buffered(req, x, false);
}

enum MHD_Result
lms_route_run_bash(struct lms_request *req)
{
	enum MHD_Result reply = MHD_NO;
	struct exec *x = start_exec(req, &reply);
	if (x == NULL)
		return reply;
	return exec_buffered(req, x, true);
}
