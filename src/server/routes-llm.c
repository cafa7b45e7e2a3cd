/*
 * The LLM gateway: GET /v1/models, POST /v1/chat/completions (relayed, streaming as it arrives) and the
 * seed's POST /ollama/ and /llama-cpp/. Requests go to the backends over libcurl (llm/); a client that
 * goes away aborts the backend request.
 */
#include <string.h>

#include "api/exec-json.h"
#include "core/alloc.h"
#include "llm/backend.h"
#include "server/server.h"

static enum MHD_Result
reply_backend_error(struct lms_request *req, unsigned status, const struct lms_error *e)
{
	const char *code = status == 503   ? "backend_unavailable"
			   : status == 504 ? "backend_timeout"
					   : "bad_backend_response";
	return lms_reply_error(req, status, "server_error", code, "%s", e->message);
}

/* A backend's 4xx/5xx: passed on with its status, in the API's shape when it is not already. */
static enum MHD_Result
reply_backend_failure(struct lms_request *req, const struct lms_backend *b, unsigned status, const char *body,
		      size_t len)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	json_t *error = json_object_get(root, "error");
	if (json_is_object(error) && json_is_string(json_object_get(error, "message"))) {
		if (!json_is_string(json_object_get(error, "code")))
			json_object_set_new(error, "code", json_string("backend_error"));
		if (!json_is_string(json_object_get(error, "type")))
			json_object_set_new(error, "type", json_string("invalid_request_error"));
		return lms_reply_json(req, status, root);
	}
	const char *message = json_is_string(error) ? json_string_value(error) : NULL;
	enum MHD_Result r =
	    lms_reply_error(req, status, status < 500 ? "invalid_request_error" : "server_error", "backend_error",
			    "backend %s (%s) answered %u: %.*s", b->name, b->url, status,
			    message ? (int)strlen(message) : (int)(len > 300 ? 300 : len), message ? message : body);
	json_decref(root);
	return r;
}

/* Waits for a backend's headers, counting the request in /metrics. Returns 0, or < 0 with *reply queued. */
static int
await_headers(struct lms_request *req, struct lms_backend *b, struct lms_relay *r, long *backend_status,
	      const char **ctype, enum MHD_Result *reply)
{
	_cleanup_error_ struct lms_error *err = NULL;
	unsigned status = 0;
	int rc = lms_relay_headers(r, backend_status, ctype, &status, &err);
	if (rc != LMS_RELAY_CLIENT_GONE)
		lms_metrics_backend(&req->server->metrics, b->name, status, lms_relay_seconds(r));
	if (rc < 0)
		*reply = rc == LMS_RELAY_CLIENT_GONE ? MHD_NO : reply_backend_error(req, status, err);
	return rc < 0 ? -1 : 0;
}

/* Reads the rest of a backend's answer as JSON. True with *out (a 2xx answer) and *status; false with
 * *reply queued (the backend's own error, or ours for an answer that is not JSON). */
static bool
json_answer(struct lms_request *req, struct lms_backend *b, struct lms_relay *r, json_t **out, unsigned *status,
	    enum MHD_Result *reply)
{
	struct lms_buf resp = {0};
	_cleanup_error_ struct lms_error *err = NULL;
	int rc = lms_relay_body(r, &resp, status, &err);
	bool ok = false;
	if (rc == LMS_RELAY_CLIENT_GONE) {
		*reply = MHD_NO;
	} else if (rc < 0) {
		*reply = reply_backend_error(req, *status, err);
	} else if (*status >= 400) {
		*reply = reply_backend_failure(req, b, *status, resp.data ? resp.data : "", resp.len);
	} else {
		json_error_t jerr;
		*out = json_loadb(resp.data ? resp.data : "", resp.len, 0, &jerr);
		if (*out == NULL) {
			lms_error_set(&err, LMS_ERR_INTERNAL, 0, "backend %s (%s) answered with invalid JSON: %s",
				      b->name, b->url, jerr.text);
			*reply = reply_backend_error(req, 502, err);
		}
		ok = *out != NULL;
	}
	lms_buf_clear(&resp);
	return ok;
}

/* Posts `body` to the backend and parses its JSON answer into *out. True on success; false with the
 * reply queued. */
static bool
exchange(struct lms_request *req, struct lms_backend *b, const char *path, json_t *body, json_t **out,
	 enum MHD_Result *reply)
{
	_cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
	_cleanup_error_ struct lms_error *err = NULL;
	struct lms_relay *r = NULL;
	long backend_status;
	const char *ctype;
	unsigned status;
	if (lms_relay_start(req->server->backends, b, "POST", path, text, strlen(text), lms_request_socket(req), &r,
			    &err) < 0) {
		*reply = lms_reply_lms_error(req, err);
		return false;
	}
	bool ok = await_headers(req, b, r, &backend_status, &ctype, reply) == 0 &&
		  json_answer(req, b, r, out, &status, reply);
	lms_relay_free(r);
	return ok;
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
	struct lms_server *s = req->server;
	json_error_t jerr;
	json_t *body = json_loadb(req->body.data ? req->body.data : "", req->body.len, 0, &jerr);
	if (!json_is_object(body)) {
		json_decref(body);
		return lms_reply_error(req, 400, "invalid_request_error", "invalid_json",
				       body ? "the body must be a JSON object"
					    : "malformed JSON at line %d, column %d: %s",
				       jerr.line, jerr.column, jerr.text);
	}
	const char *model = json_string_value(json_object_get(body, "model"));
	if (model == NULL) {
		json_decref(body);
		return lms_reply_error(req, 400, "invalid_request_error", "missing_field",
				       "\"model\" must be a string: see GET /v1/models");
	}
	_cleanup_free_ char *bare = NULL;
	_cleanup_error_ struct lms_error *err = NULL;
	struct lms_backend *b = lms_backends_resolve(s->backends, model, &bare, &err);
	if (b == NULL) {
		json_decref(body);
		return lms_reply_error(req, 404, "invalid_request_error", "model_not_found", "%s", err->message);
	}
	/* Only the model changes: tools and every other field pass through untouched. */
	json_object_set_new(body, "model", json_string(bare));
	_cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);

	struct lms_relay *r = NULL;
	unsigned status = 0;
	long backend_status = 0;
	const char *ctype = NULL;
	enum MHD_Result reply = MHD_NO;
	if (lms_relay_start(s->backends, b, "POST", "/v1/chat/completions", text, strlen(text), lms_request_socket(req),
			    &r, &err) < 0)
		return lms_reply_lms_error(req, err);
	if (await_headers(req, b, r, &backend_status, &ctype, &reply) < 0) {
		lms_relay_free(r);
		return reply;
	}
	if (backend_status == 200 && strncmp(ctype, "text/event-stream", 17) == 0) {
		return lms_reply_event_stream(req, stream_read, r, stream_free);
	}
	json_t *answer = NULL;
	if (json_answer(req, b, r, &answer, &status, &reply))
		reply = lms_reply_json(req, status, answer);
	lms_relay_free(r);
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
	if (model == NULL) {
		json_decref(in);
		lms_backends_refresh(s->backends);
		return lms_reply_error(req, b->reachable ? 404 : 503, "server_error",
				       b->reachable ? "model_not_found" : "backend_unavailable",
				       b->reachable ? "backend %s (%s) has no model: pull or load one"
						    : "backend %s (%s) is unreachable",
				       b->name, b->url);
	}
	/* The prompt is data in a JSON body, never shell text. */
	json_t *chat = json_pack("{s:s, s:[{s:s, s:s}], s:b}", "model", model, "messages", "role", "user", "content",
				 cmd, "stream", 0);
	json_decref(in);
	json_t *answer = NULL;
	enum MHD_Result reply = MHD_NO;
	bool ok = exchange(req, b, "/v1/chat/completions", chat, &answer, &reply);
	json_decref(chat);
	if (!ok)
		return reply;
	if (kind == LMS_BACKEND_OLLAMA)
		return lms_reply_json(req, 200, answer);
	json_t *message = json_object_get(json_array_get(json_object_get(answer, "choices"), 0), "message");
	const char *content = json_string_value(json_object_get(message, "content"));
	json_t *out = json_pack(
	    "{s:s, s:s, s:s, s:O}", "output", content ? content : "", "error", "", "model",
	    json_string_value(json_object_get(answer, "model")) ? json_string_value(json_object_get(answer, "model"))
								: model,
	    "usage", json_object_get(answer, "usage") ? json_object_get(answer, "usage") : json_null());
	json_decref(answer);
	return lms_reply_json(req, 200, out);
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
	enum MHD_Result reply = MHD_NO;
	if (await_headers(req, b, r, &backend_status, &ctype, &reply) < 0) {
		lms_relay_free(r);
		return reply;
	}
	/* Status, type and bytes as Ollama sends them: its clients must see no difference. */
	struct MHD_Response *resp =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, r, stream_free);
	if (ctype && *ctype)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	return lms_reply(req, (unsigned)backend_status, resp);
}
