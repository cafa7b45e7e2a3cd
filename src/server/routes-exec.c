/*
 * POST /v1/exec (JSON or Server-Sent Events) and the seed's POST /run-bash/. The request becomes a spec
 * (api/exec-request.c), the spec a call of the exec service (exec-service.h), and its result or its
 * events the response. A client that goes away (the socket hangs up) cancels the command.
 */
#include <string.h>

#include "api/exec-json.h"
#include "api/exec-request.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/utf8.h"
#include "server/exec-service.h"
#include "server/history.h"
#include "server/sandboxes.h"
#include "server/server.h"

struct lms_exec_policy
lms_server_exec_policy(const struct lms_server *s)
{
	struct lms_exec_policy policy = {
	    .defaults = s->cfg->defaults,
	    .ceilings = s->cfg->defaults,
	    .allow_network = s->cfg->allow_network,
	    .net_dns = s->cfg->network_dns,
	    .net_allow_private = s->cfg->network_allow_private,
	    .net_allow = s->cfg->network_allow,
	    .have_bash = s->have_bash,
	    .state_dir = s->cfg->state_dir,
	};
	policy.ceilings.timeout_ms = s->cfg->max_timeout_ms;
	return policy;
}

/* The body as an exec request. NULL once the error reply is queued. */
static struct lms_exec_request *
parse(struct lms_request *req, enum MHD_Result *reply)
{
	struct lms_exec_policy policy = lms_server_exec_policy(req->server);
	_cleanup_error_ struct lms_error *err = NULL;
	struct lms_exec_request *xr = NULL;
	int parsed = lms_exec_request_parse(req->body.data ? req->body.data : "", req->body.len, &policy, &xr, &err);
	lms_request_body_done(req); /* the spec has what it needs: the body's room is free for others */
	if (parsed < 0) {
		*reply = lms_reply_lms_error(req, err);
		return NULL;
	}
	return xr;
}

/* Starts the command where the target says, the job attached to a held sandbox (a DELETE cancels it). */
static int
start(struct lms_request *req, struct lms_exec_request *xr, const struct lms_exec_target *t, struct lms_exec **x,
      struct lms_error **err)
{
	if (t->entry != NULL && lms_sandboxes_claim(t->sbs, t->entry, err) < 0)
		return -1;
	if (lms_exec_start(req->server, t->sandbox, &xr->spec, x, err) < 0) {
		if (t->entry != NULL)
			lms_sandboxes_unclaim(t->sbs, t->entry);
		return -1;
	}
	if (t->entry != NULL)
		lms_sandboxes_attach_job(t->sbs, t->entry, lms_exec_job(*x));
	return 0;
}

/* Ends the call and gives a held sandbox back. */
static void
finish(struct lms_exec *x, const struct lms_exec_target *t)
{
	if (t->entry != NULL)
		lms_sandboxes_release(t->sbs, t->entry, x ? lms_exec_job(x) : NULL);
	lms_exec_end(x);
}

/* A persistent sandbox's command goes into its audit log (a one-shot sandbox has none). */
static void
record(const struct lms_exec_target *t, const struct lms_exec_request *xr, const struct lms_sandbox_result *res,
       double started_s, double started_ms, long long bytes)
{
	if (t->id[0] == '\0')
		return;
	_cleanup_free_ char *command = lms_history_argv(xr->spec.argv);
	struct lms_history_call c = {.via = "http",
				     .tool = "exec",
				     .command = command,
				     .status = res ? lms_history_status(res) : "error",
				     .exit_code = res ? res->exit_code : -1,
				     .started_s = started_s,
				     .duration_ms = lms_monotonic_ms() - started_ms,
				     .bytes = bytes};
	lms_sandboxes_record(t->sbs, t->id, lms_history_entry(&c));
}

/* ---- one JSON response ---- */

static enum MHD_Result
exec_buffered(struct lms_request *req, struct lms_exec_request *xr, const struct lms_exec_target *t, bool seed)
{
	struct lms_job_output out;
	_cleanup_error_ struct lms_error *err = NULL;
	enum MHD_Result reply;
	struct lms_exec *x = NULL;
	double started_s = lms_wall_s(), started_ms = lms_monotonic_ms();
	int r = start(req, xr, t, &x, &err);
	if (r == 0)
		r = lms_exec_collect(x, lms_request_socket(req), &out, &err);
	finish(x, t);
	record(t, xr, r == 0 ? &out.result : NULL, started_s, started_ms,
	       r == 0 ? (long long)(out.out.len + out.err.len) : -1);
	if (r < 0) {
		reply = lms_reply_lms_error(req, err);
	} else {
		json_t *body = lms_exec_result_json(&out.result, out.out.data, out.out.len, out.err.data, out.err.len,
						    xr->encoding);
		if (seed) {
			/* The original sketch's names, beside API.md's. */
			json_object_set(body, "output", json_object_get(body, "stdout"));
			json_object_set(body, "error", json_object_get(body, "stderr"));
		}
		reply = lms_reply_json(req, 200, body);
		lms_job_output_clear(&out);
	}
	lms_exec_request_free(xr);
	return reply;
}

/* ---- Server-Sent Events ---- */

struct stream {
	struct lms_exec_request *xr;
	struct lms_exec_target target;
	struct lms_exec *exec;
	int client_fd;
	bool finished;
	double started_s, started_ms;
	long long bytes; /* of output, for the audit log */
	struct lms_buf pending;
	size_t pending_off;
	char tail[3][4]; /* per stream: an incomplete UTF-8 sequence held for the next chunk */
	size_t tail_len[3];
};

static void
stream_free(struct stream *x)
{
	finish(x->exec, &x->target);
	lms_exec_request_free(x->xr);
	lms_buf_clear(&x->pending);
	free(x);
}

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
sse_output(struct stream *x, int stream, const char *data, size_t len)
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
	lms_sse_event(&x->pending, stream == 1 ? "stdout" : "stderr", json_pack("{s:o}", "data", value));
}

static void
sse_finish(struct stream *x, const struct lms_job_event *ev)
{
	for (int s = 1; s <= 2; s++)
		if (x->tail_len[s] > 0) {
			size_t n = x->tail_len[s];
			x->tail_len[s] = 0;
			char held[4];
			memcpy(held, x->tail[s], n);
			size_t clean_len;
			char *clean = lms_utf8_sanitize(held, n, &clean_len);
			lms_sse_event(&x->pending, s == 1 ? "stdout" : "stderr",
				      json_pack("{s:s%}", "data", clean, clean_len));
			free(clean);
		}
	record(&x->target, x->xr, ev->type == LMS_JOB_ERROR ? NULL : &ev->result, x->started_s, x->started_ms,
	       x->bytes);
	if (ev->type == LMS_JOB_ERROR) {
		lms_sse_event(&x->pending, "error", lms_error_json(ev->error));
		return;
	}
	json_t *result = lms_exec_result_json(&ev->result, NULL, 0, NULL, 0, LMS_ENCODING_UTF8);
	json_object_del(result, "stdout");
	json_object_del(result, "stderr");
	lms_sse_event(&x->pending, "exit", result);
}

static ssize_t
sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct stream *x = cls;
	while (x->pending_off >= x->pending.len) {
		lms_buf_clear(&x->pending);
		x->pending_off = 0;
		if (x->finished)
			return MHD_CONTENT_READER_END_OF_STREAM;
		struct lms_job_event ev;
		_cleanup_error_ struct lms_error *err = NULL;
		int r = lms_exec_next(x->exec, x->client_fd, &ev, &err);
		if (r < 0) {
			x->finished = true;
			lms_sse_event(&x->pending, "error", lms_error_json(err));
			continue;
		}
		if (r == 0) {
			x->finished = true;
			continue;
		}
		if (ev.type == LMS_JOB_STDOUT || ev.type == LMS_JOB_STDERR) {
			x->bytes += (long long)ev.len;
			sse_output(x, ev.type == LMS_JOB_STDOUT ? 1 : 2, ev.data, ev.len);
			free(ev.data);
			continue;
		}
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
	stream_free(cls);
}

/* The command starts now; its events become the response as they come. */
static enum MHD_Result
exec_streamed(struct lms_request *req, struct lms_exec_request *xr, const struct lms_exec_target *t)
{
	_cleanup_error_ struct lms_error *err = NULL;
	struct stream *x = xcalloc(1, sizeof(*x));
	x->xr = xr;
	x->target = *t;
	x->client_fd = lms_request_socket(req);
	x->started_s = lms_wall_s();
	x->started_ms = lms_monotonic_ms();
	if (start(req, xr, t, &x->exec, &err) < 0) {
		stream_free(x);
		return lms_reply_lms_error(req, err);
	}
	return lms_reply_event_stream(req, sse_read, x, sse_free);
}

enum MHD_Result
lms_exec_respond(struct lms_request *req, struct lms_exec_request *xr, const struct lms_exec_target *t)
{
	return xr->stream ? exec_streamed(req, xr, t) : exec_buffered(req, xr, t, false);
}

enum MHD_Result
lms_route_exec(struct lms_request *req)
{
	enum MHD_Result reply = MHD_NO;
	struct lms_exec_request *xr = parse(req, &reply);
	if (xr == NULL)
		return reply;
	return lms_exec_respond(req, xr, &(struct lms_exec_target){0});
}

enum MHD_Result
lms_route_run_bash(struct lms_request *req)
{
	enum MHD_Result reply = MHD_NO;
	struct lms_exec_request *xr = parse(req, &reply);
	if (xr == NULL)
		return reply;
	return exec_buffered(req, xr, &(struct lms_exec_target){0}, true);
}
