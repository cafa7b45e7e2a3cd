/*
 * The LLM gateway: GET /v1/models, POST /v1/chat/completions (relayed, streaming as it arrives) and the
 * seed's POST /ollama/ and /llama-cpp/. Requests go to the backends over libcurl (llm/); a client that
 * goes away aborts the backend request.
 */
#include <string.h>

#include "api/exec-json.h"
#include "core/alloc.h"
#include "llm/backend.h"
#include "llm/chat.h"
#include "server/server.h"

/* A backend's own 4xx/5xx (LMS_ERR_BACKEND): passed on with its status, as it is when it already has
 * the API's error shape, else wrapped in it with the backend's message. */
static enum MHD_Result
reply_backend_failure(struct lms_request *req, const struct lms_chat_result *res, const struct lms_error *e)
{
	unsigned status = (unsigned)res->status;
	json_t *root = json_loadb(res->body.data ? res->body.data : "", res->body.len, 0, NULL);
	json_t *error = json_object_get(root, "error");
	if (json_is_object(error) && json_is_string(json_object_get(error, "message"))) {
		if (!json_is_string(json_object_get(error, "code")))
			json_object_set_new(error, "code", json_string("backend_error"));
		if (!json_is_string(json_object_get(error, "type")))
			json_object_set_new(error, "type", json_string("invalid_request_error"));
		return lms_reply_json(req, status, root);
	}
	json_decref(root);
	return lms_reply_error(req, status, status < 500 ? "invalid_request_error" : "server_error", "backend_error",
			       "%s", e->message);
}

/* The reply to a failed gateway call: nothing for a client that left; 404 model_not_found for a model
 * no backend serves; a backend's own error as it sent it; else the kind's status (lms_error_status). */
static enum MHD_Result
reply_llm_error(struct lms_request *req, const struct lms_chat_result *res, const struct lms_error *e)
{
	if (e->kind == LMS_ERR_CANCELLED)
		return MHD_NO;
	if (e->kind == LMS_ERR_NOT_FOUND)
		return lms_reply_error(req, 404, "invalid_request_error", "model_not_found", "%s", e->message);
	if (e->kind == LMS_ERR_BACKEND && res != NULL && res->status >= 400)
		return reply_backend_failure(req, res, e);
	return lms_reply_lms_error(req, e);
}

/* Counts a backend request in /metrics by the backend's status, or the status its failure maps to; a
 * request that never reached a backend (unknown model, no libcurl) or whose client left is not counted. */
static void
count_backend(struct lms_request *req, const struct lms_backend *b, long status, double seconds,
	      const struct lms_error *e)
{
	bool reached = status > 0 || (e != NULL && (e->kind == LMS_ERR_UNREACHABLE || e->kind == LMS_ERR_TIMEOUT ||
						    e->kind == LMS_ERR_BAD_GATEWAY));
	if (b != NULL && reached)
		lms_metrics_backend(&req->server->metrics, b->name, status > 0 ? (unsigned)status : lms_error_status(e),
				    seconds);
}

enum MHD_Result
lms_route_models(struct lms_request *req)
{
	return lms_reply_json(req, 200, lms_backends_models_json(req->server->backends));
}

/* ---- /v1/chat/completions ---- */

/* The relay itself is the reader's state. */
static ssize_t
stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	ssize_t n = lms_relay_read(cls, buf, max);
	if (n == LMS_RELAY_CLIENT_GONE)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	return n > 0 ? n : MHD_CONTENT_READER_END_OF_STREAM;
}

static void
stream_free(void *cls)
{
	lms_relay_free(cls);
}

enum MHD_Result
lms_route_chat_completions(struct lms_request *req)
{
	enum MHD_Result reply = MHD_NO;
	json_t *body = lms_request_json_object(req, &reply);
	if (body == NULL)
		return reply;
	/* Model resolution and errors are the chat service's; the answer's bytes are relayed as the backend
	 * sends them when it streams, so that clients see its chunks unchanged. */
	struct lms_chat_options opts = {.cancel_fd = lms_request_socket(req)};
	struct lms_chat_result res = {0};
	struct lms_relay *r = NULL;
	_cleanup_error_ struct lms_error *err = NULL;
	int rc = lms_chat_open(req->server->backends, body, &opts, &res, &r, &err);
	json_decref(body);
	count_backend(req, res.backend, res.status, res.seconds, err);
	if (rc < 0)
		reply = reply_llm_error(req, &res, err);
	else if (res.status == 200 && strncmp(res.content_type, "text/event-stream", 17) == 0)
		reply = lms_reply_event_stream(req, stream_read, steal_pointer(&r), stream_free);
	else if (lms_chat_finish(r, &opts, &res, &err) < 0)
		reply = reply_llm_error(req, &res, err);
	else
		reply = lms_reply_json(req, (unsigned)res.status, steal_pointer(&res.answer));
	lms_relay_free(r);
	lms_chat_result_clear(&res);
	return reply;
}

/* ---- the seed's /ollama/ and /llama-cpp/ ---- */

static enum MHD_Result
seed_chat(struct lms_request *req, enum lms_backend_kind kind)
{
	struct lms_server *s = req->server;
	json_error_t jerr;
	json_t *in = json_loadb(req->body.data ? req->body.data : "", req->body.len, 0, &jerr);
	const char *cmd = json_string_value(json_object_get(in, "cmd"));
	json_t *model_field = json_object_get(in, "model");
	if (!json_is_object(in) || cmd == NULL ||
	    (model_field && !json_is_null(model_field) && !json_is_string(model_field))) {
		json_decref(in);
		return lms_reply_error(req, 400, "invalid_request_error", "invalid_request",
				       "send {\"cmd\": \"your prompt\", \"model\": \"optional\"}");
	}
	struct lms_backend *b = lms_backends_of_kind(s->backends, kind);
	const char *configured = kind == LMS_BACKEND_OLLAMA ? s->cfg->ollama_model : s->cfg->llamacpp_model;
	_cleanup_free_ char *model = json_is_string(model_field) ? xstrdup(json_string_value(model_field))
				     : configured && *configured ? xstrdup(configured)
								 : lms_backend_first_model(s->backends, b);
	_cleanup_error_ struct lms_error *err = NULL;
	if (model == NULL) {
		json_decref(in);
		lms_backends_refresh(s->backends);
		if (b->reachable)
			lms_error_set(&err, LMS_ERR_NOT_FOUND, 0, "backend %s (%s) has no model: pull or load one",
				      b->name, b->url);
		else
			lms_error_set(&err, LMS_ERR_UNREACHABLE, 0, "backend %s (%s) is unreachable: is it running?",
				      b->name, b->url);
		return reply_llm_error(req, NULL, err);
	}
	/* The model is this backend's: named as backend/model, the chat service sends it there. The prompt
	 * is data in a JSON body, never shell text. */
	_cleanup_free_ char *named = xasprintf("%s/%s", b->name, model);
	json_t *chat = json_pack("{s:s, s:[{s:s, s:s}], s:b}", "model", named, "messages", "role", "user", "content",
				 cmd, "stream", 0);
	json_decref(in);
	struct lms_chat_options opts = {.cancel_fd = lms_request_socket(req)};
	struct lms_chat_result res = {0};
	int rc = lms_chat(s->backends, chat, &opts, &res, &err);
	json_decref(chat);
	count_backend(req, res.backend, res.status, res.seconds, err);
	enum MHD_Result reply;
	if (rc < 0) {
		reply = reply_llm_error(req, &res, err);
	} else if (kind == LMS_BACKEND_OLLAMA) {
		reply = lms_reply_json(req, 200, steal_pointer(&res.answer));
	} else {
		json_t *answer = res.answer;
		json_t *message = json_object_get(json_array_get(json_object_get(answer, "choices"), 0), "message");
		const char *content = json_string_value(json_object_get(message, "content"));
		const char *answered = json_string_value(json_object_get(answer, "model"));
		json_t *usage = json_object_get(answer, "usage");
		reply = lms_reply_json(req, 200,
				       json_pack("{s:s, s:s, s:s, s:O}", "output", content ? content : "", "error", "",
						 "model", answered ? answered : res.model, "usage",
						 usage ? usage : json_null()));
	}
	lms_chat_result_clear(&res);
	return reply;
}

enum MHD_Result
lms_route_ollama(struct lms_request *req)
{
	return seed_chat(req, LMS_BACKEND_OLLAMA);
}

enum MHD_Result
lms_route_llamacpp(struct lms_request *req)
{
	return seed_chat(req, LMS_BACKEND_LLAMACPP);
}

/* ---- /api/...: Ollama's own API, relayed unchanged behind our token ---- */

enum MHD_Result
lms_route_ollama_api(struct lms_request *req)
{
	struct lms_server *s = req->server;
	struct lms_backend *b = lms_backends_of_kind(s->backends, LMS_BACKEND_OLLAMA);
	struct lms_relay *r = NULL;
	_cleanup_error_ struct lms_error *err = NULL;
	long backend_status = 0;
	const char *ctype = NULL;
	bool has_body = req->body.len > 0;
	if (lms_relay_start(s->backends, b, req->method, req->path, has_body ? req->body.data : NULL, req->body.len,
			    lms_request_socket(req), &r, &err) < 0)
		return lms_reply_lms_error(req, err);
	int rc = lms_relay_headers(r, &backend_status, &ctype, &err);
	count_backend(req, b, rc == 0 ? backend_status : 0, lms_relay_seconds(r), err);
	if (rc < 0) {
		lms_relay_free(r);
		return reply_llm_error(req, NULL, err);
	}
	/* Status, type and bytes as Ollama sends them: its clients must see no difference. */
	struct MHD_Response *resp = lms_reply_stream_response(req, 16 * 1024, stream_read, r, stream_free);
	if (ctype && *ctype)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	return lms_reply(req, (unsigned)backend_status, resp);
}
