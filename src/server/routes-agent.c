/*
 * POST /v1/agent (API.md, "Agent"): the request checked here (400 before anything runs), the loop in
 * agent.c. JSON: the run's result once it ends. stream: true: its events as Server-Sent Events, written
 * by the run's own thread (thread-stream.c), ending with done (or error). A client that goes away ends
 * the run and its running command, either way.
 */
#include <string.h>

#include "api/exec-json.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "server/agent.h"
#include "server/server.h"
#include "server/thread-stream.h"

struct streamed {
	struct lms_agent *agent;
	struct lms_thread_stream *ts;
};

static void
send_event(void *cls, const char *name, json_t *data)
{
	struct streamed *x = cls;
	struct lms_buf b = {0};
	lms_sse_event(&b, name, data);
	lms_thread_stream_write(x->ts, b.data, b.len);
	lms_buf_clear(&b);
}

static void
run_streamed(struct lms_thread_stream *ts, void *cls)
{
	struct streamed *x = cls;
	x->ts = ts;
	struct lms_agent_sink sink = {send_event, x};
	unsigned status = 0;
	json_t *error = NULL;
	json_t *done = lms_agent_run(x->agent, lms_thread_stream_cancel_fd(ts), &sink, &status, &error);
	if (done != NULL)
		send_event(x, "done", done);
	else if (status != 499) /* a client that left reads nothing more */
		send_event(x, "error", error);
	else
		json_decref(error);
}

static void
free_streamed(void *cls)
{
	struct streamed *x = cls;
	lms_agent_free(x->agent);
	free(x);
}

enum MHD_Result
lms_route_agent(struct lms_request *req)
{
	enum MHD_Result reply = MHD_NO;
	json_t *body = lms_request_json_object(req, &reply);
	if (body == NULL)
		return reply;
	json_t *error = NULL;
	struct lms_agent *a = lms_agent_parse(req->server, body, &error);
	json_decref(body);
	if (a == NULL)
		return lms_reply_json(req, 400, error);
	lms_request_body_done(req);
	if (lms_agent_streamed(a)) {
		struct streamed *x = xcalloc(1, sizeof(*x));
		x->agent = a;
		enum MHD_Result out;
		if (lms_thread_stream_reply(req, run_streamed, x, free_streamed, NULL, &out))
			return out;
		free(x);
		lms_agent_free(a);
		return lms_reply_error(req, 500, "server_error", "internal_error",
				       "the agent's thread could not start: try again");
	}
	unsigned status = 0;
	json_t *done = lms_agent_run(a, lms_request_socket(req), NULL, &status, &error);
	lms_agent_free(a);
	if (done != NULL)
		return lms_reply_json(req, 200, done);
	if (status == 499) {
		json_decref(error);
		return MHD_NO; /* the client has gone */
	}
	return lms_reply_json(req, status, error);
}
