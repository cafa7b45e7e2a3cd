/*
 * One request's life in libmicrohttpd's callbacks: its context and X-Request-Id, what can be decided
 * from the headers alone (route, method, token, content type, size), the body, the handler, and the
 * one log line when it completes.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "server/auth.h"
#include "server/server.h"

json_t *
lms_request_json_object(struct lms_request *req, enum MHD_Result *reply)
{
	json_error_t jerr;
	json_t *body = json_loadb(req->body.data ? req->body.data : "", req->body.len, 0, &jerr);
	if (json_is_object(body))
		return body;
	json_decref(body);
	*reply = lms_reply_error(req, 400, "invalid_request_error", "invalid_json",
				 body ? "the body must be a JSON object" : "malformed JSON at line %d, column %d: %s",
				 jerr.line, jerr.column, jerr.text);
	return NULL;
}

int
lms_request_socket(const struct lms_request *req)
{
	const union MHD_ConnectionInfo *info = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	return info ? info->connect_fd : -1;
}

static bool
valid_request_id(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > 63)
		return false;
	for (const char *p = id; *p; p++)
		if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.' || *p == ':'))
			return false;
	return true;
}

static void
set_request_id(struct lms_request *req)
{
	const char *given = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Request-Id");
	if (given && valid_request_id(given)) {
		snprintf(req->id, sizeof(req->id), "%s", given);
		return;
	}
	unsigned char raw[16];
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
		static atomic_ulong counter;
		snprintf(req->id, sizeof(req->id), "req-%lu-%lu", (unsigned long)getpid(),
			 atomic_fetch_add(&counter, 1));
		return;
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(req->id + 2 * i, 3, "%02x", raw[i]);
}

static void
log_request(const struct lms_request *req)
{
	lms_log_fields(LMS_LOG_INFO, req->id, "request", LMS_LOG_STR("method", req->method),
		       LMS_LOG_STRN("path", req->path, 512), LMS_LOG_INT("status", req->status),
		       LMS_LOG_REAL("duration_ms", lms_monotonic_ms() - req->start_ms));
}

/* Bodies up to this size are not counted: their memory is bounded by the connection limit. */
#define BODY_UNCOUNTED (64 * 1024)
/* A body without a Content-Length (chunked) reserves in steps of this much as it grows. */
#define BODY_STEP (1024 * 1024)

/* Reserves room for a body of `len` bytes in --max-body-bytes-in-flight; false when it does not fit. */
static bool
body_reserve(struct lms_request *req, uint64_t len)
{
	struct lms_server *s = req->server;
	if (len <= BODY_UNCOUNTED || len <= req->body_reserved)
		return true;
	uint64_t more = len - req->body_reserved;
	uint64_t cur = atomic_load(&s->body_bytes);
	do {
		if (cur + more > s->cfg->max_body_bytes_in_flight)
			return false;
	} while (!atomic_compare_exchange_weak(&s->body_bytes, &cur, cur + more));
	req->body_reserved = len;
	return true;
}

void
lms_request_body_done(struct lms_request *req)
{
	lms_buf_clear(&req->body);
	atomic_fetch_sub(&req->server->body_bytes, req->body_reserved);
	req->body_reserved = 0;
}

static enum MHD_Result
reply_busy(struct lms_request *req)
{
	const struct lms_header retry[] = {{MHD_HTTP_HEADER_RETRY_AFTER, "1"}, {NULL, NULL}};
	return lms_reply_error_headers(req, 503, retry, "server_error", "server_busy",
				       "the server holds too many request bodies at once (--max-body-bytes-in-flight "
				       "%llu): retry shortly",
				       (unsigned long long)req->server->cfg->max_body_bytes_in_flight);
}

/* Appends a piece of the body, within --max-body-bytes and --max-body-bytes-in-flight. */
static void
body_append(struct lms_request *req, const char *data, size_t n)
{
	if (req->body_too_large || req->body_refused)
		return;
	uint64_t len = req->body.len + n;
	if (len > req->server->cfg->max_body_bytes) {
		req->body_too_large = true;
		lms_request_body_done(req);
		return;
	}
	uint64_t want = len <= req->body_reserved ? len : (len + BODY_STEP - 1) / BODY_STEP * BODY_STEP;
	if (!body_reserve(req, want < req->server->cfg->max_body_bytes ? want : len)) {
		req->body_refused = true;
		lms_request_body_done(req);
		return;
	}
	lms_buf_append(&req->body, data, n);
}

static bool
content_type_ok(const struct lms_route *route, struct MHD_Connection *conn)
{
	const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (ct == NULL)
		return true; /* as FastAPI does, a body without a type is read as JSON */
	size_t n = strcspn(ct, "; \t");
	if (n == 16 && strncasecmp(ct, "application/json", n) == 0)
		return true;
	return route->form_ok && n == 33 && strncasecmp(ct, "application/x-www-form-urlencoded", n) == 0;
}

/* Decides what can be decided from the headers alone: route, method, auth, type, declared size. */
static enum MHD_Result
begin_request(struct lms_request *req)
{
	struct lms_server *s = req->server;
	char allow[64];
	req->route = lms_router_find(req->method, req->path, allow, sizeof(allow));
	if (req->route == NULL && allow[0] == '\0')
		return lms_reply_error(req, 404, "invalid_request_error", "not_found", "no route %s %s: see GET /docs",
				       req->method, req->path);
	if (req->route == NULL) {
		const struct lms_header allow_header[] = {{MHD_HTTP_HEADER_ALLOW, allow}, {NULL, NULL}};
		return lms_reply_error_headers(req, 405, allow_header, "invalid_request_error", "method_not_allowed",
					       "method not allowed here");
	}
	if (req->route->auth && !lms_auth_ok(s->cfg->token, MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
											MHD_HTTP_HEADER_AUTHORIZATION)))
		return lms_reply_error(req, 401, "authentication_error", "invalid_token",
				       "missing or wrong token: send Authorization: Bearer <token>");
	if (atomic_load(&s->stopping))
		return lms_reply_error(req, 503, "server_error", "shutting_down", "the server is shutting down");
	bool forwarded; /* another node's sandbox: the request goes there as it is (forward.c) */
	enum MHD_Result r = lms_forward_begin(req, &forwarded);
	if (forwarded)
		return r;
	if (req->route->sink != NULL)
		return req->route->sink->begin(req);
	if (req->route->json_body && !content_type_ok(req->route, req->conn))
		return lms_reply_error(req, 415, "invalid_request_error", "unsupported_media_type",
				       "send the body as Content-Type: application/json");
	const char *length = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (length && strtoull(length, NULL, 10) > s->cfg->max_body_bytes)
		return lms_reply_error(req, 413, "invalid_request_error", "body_too_large",
				       "the body is larger than %llu bytes",
				       (unsigned long long)s->cfg->max_body_bytes);
	/* Admission before the body is read: its room is reserved now, or it is not read at all. */
	if (length && !body_reserve(req, strtoull(length, NULL, 10)))
		return reply_busy(req);
	return MHD_YES;
}

enum MHD_Result
lms_request_on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method, const char *version,
		       const char *upload_data, size_t *upload_size, void **con_cls)
{
	(void)version;
	struct lms_server *s = cls;
	struct lms_request *req = *con_cls;
	if (req == NULL) {
		req = xcalloc(1, sizeof(*req));
		req->server = s;
		req->conn = conn;
		req->method = xstrdup(method); /* MHD's copy is gone by the time the request is logged */
		req->path = xstrdup(url);
		req->start_ms = lms_monotonic_ms();
		set_request_id(req);
		*con_cls = req;
		lms_conns_headers_done(conn);
		return begin_request(req);
	}
	if (req->dispatched) /* its handler's thread has resumed the connection with the answer */
		return lms_workers_dispatch(s->workers, req);
	if (req->replied) {
		*upload_size = 0; /* an early error is queued: the rest of the body is dropped */
		return MHD_YES;
	}
	if (req->forward != NULL) {
		if (*upload_size == 0) /* the peer's answer is awaited on a thread of its own (workers.c) */
			return lms_workers_dispatch(s->workers, req);
		lms_forward_chunk(req, upload_data, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (*upload_size > 0) {
		if (req->route->sink != NULL)
			req->route->sink->chunk(req, upload_data, *upload_size);
		else
			body_append(req, upload_data, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (req->body_too_large)
		return lms_reply_error(req, 413, "invalid_request_error", "body_too_large",
				       "the body is larger than %llu bytes",
				       (unsigned long long)req->server->cfg->max_body_bytes);
	if (req->body_refused)
		return reply_busy(req);
	/* The handler blocks (commands, backends): it runs on a thread of its own (workers.c). */
	return lms_workers_dispatch(s->workers, req);
}

void
lms_request_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	(void)conn, (void)toe;
	struct lms_server *s = cls;
	struct lms_request *req = *con_cls;
	if (req == NULL)
		return;
	lms_conns_request_done(s->conns, conn);
	if (!req->replied) /* the client left before any answer (a replied request was counted by lms_reply) */
		lms_metrics_request(&s->metrics, req->route ? req->route->path : "unmatched", req->status);
	log_request(req);
	/* An answer its thread made for a client that left meanwhile: libmicrohttpd closed the connection
	 * at its resume instead of calling the access handler again (a stream's producer then ends). */
	if (req->pending != NULL)
		MHD_destroy_response(req->pending);
	lms_forward_end(req);
	if (req->route != NULL && req->route->sink != NULL && !req->forwarded)
		req->route->sink->end(req);
	lms_request_body_done(req);
	free(req->path);
	free(req->method);
	free(req);
	*con_cls = NULL;
}
