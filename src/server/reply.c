/*
 * Replies: every response leaves through lms_reply() (which adds X-Request-Id), every error through
 * lms_reply_error_headers() in API.md's one shape, and the error kinds map to statuses here.
 */
#include <stdarg.h>
#include <string.h>

#include "api/exec-json.h"
#include "core/alloc.h"
#include "server/server.h"

unsigned
lms_error_status(const struct lms_error *e)
{
	switch (e->kind) {
	case LMS_ERR_INVALID:
		return 400;
	case LMS_ERR_FORBIDDEN:
		return 403;
	case LMS_ERR_NOT_FOUND:
		return 404;
	case LMS_ERR_UNSUPPORTED:
		return 422;
	case LMS_ERR_SETUP:
	case LMS_ERR_INTERNAL:
		return 500;
	case LMS_ERR_BAD_GATEWAY:
	case LMS_ERR_BACKEND: /* the backend's own status, when the caller has it, is better */
		return 502;
	case LMS_ERR_UNREACHABLE:
		return 503;
	case LMS_ERR_TIMEOUT:
		return 504;
	case LMS_ERR_BUSY:
		return 429;
	case LMS_ERR_CONFLICT:
		return 409;
	case LMS_ERR_CANCELLED:
		return 499; /* never sent (the client has gone): what nginx logs for a client that closed */
	}
	return 500;
}

enum MHD_Result
lms_reply(struct lms_request *req, unsigned status, struct MHD_Response *resp)
{
	MHD_add_response_header(resp, "X-Request-Id", req->id);
	/* Counted before it leaves: a client that has its answer finds it in /metrics. */
	lms_metrics_request(&req->server->metrics, req->route ? req->route->path : "unmatched", status);
	req->status = status;
	req->replied = true;
	if (req->on_worker) { /* a handler's thread: libmicrohttpd's thread queues it (workers.c) */
		if (req->pending)
			MHD_destroy_response(req->pending);
		req->pending = resp;
		return MHD_YES;
	}
	enum MHD_Result r = MHD_queue_response(req->conn, status, resp);
	MHD_destroy_response(resp);
	return r;
}

static enum MHD_Result
reply_json(struct lms_request *req, unsigned status, json_t *body, const struct lms_header *headers)
{
	char *text = json_dumps(body, LMS_JSON_FLAGS);
	json_decref(body);
	if (text == NULL)
		return lms_reply_error_headers(req, 500, NULL, "server_error", "internal_error",
					       "could not encode the response");
	size_t len = strlen(text);
	text = xrealloc(text, len + 2);
	text[len++] = '\n';
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	for (const struct lms_header *h = headers; h && h->name; h++)
		MHD_add_response_header(resp, h->name, h->value);
	return lms_reply(req, status, resp);
}

enum MHD_Result
lms_reply_json(struct lms_request *req, unsigned status, json_t *body)
{
	return reply_json(req, status, body, NULL);
}

enum MHD_Result
lms_reply_json_headers(struct lms_request *req, unsigned status, json_t *body, const struct lms_header *headers)
{
	return reply_json(req, status, body, headers);
}

enum MHD_Result
lms_reply_error_headers(struct lms_request *req, unsigned status, const struct lms_header *headers, const char *type,
			const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *message = xvasprintf(fmt, ap);
	va_end(ap);
	return reply_json(req, status, lms_api_error_json(type, code, message), headers);
}

enum MHD_Result
lms_reply_lms_error(struct lms_request *req, const struct lms_error *e)
{
	/* A busy server says when to come back, as API.md's 429 does. */
	static const struct lms_header retry[] = {{MHD_HTTP_HEADER_RETRY_AFTER, "1"}, {NULL, NULL}};
	return reply_json(req, lms_error_status(e), lms_error_json(e), e->kind == LMS_ERR_BUSY ? retry : NULL);
}

/* The handler's thread produces it after the handler, libmicrohttpd's thread sends it (pump.c). */
struct MHD_Response *
lms_reply_stream_response_size(struct lms_request *req, uint64_t size, size_t block_size,
			       MHD_ContentReaderCallback reader, void *cls, MHD_ContentReaderFreeCallback free_cls)
{
	struct MHD_Response *resp =
	    lms_pump_response(req->conn, lms_request_socket(req), size, block_size, reader, cls, free_cls, &req->pump);
	req->pump_response = resp;
	return resp;
}

struct MHD_Response *
lms_reply_stream_response(struct lms_request *req, size_t block_size, MHD_ContentReaderCallback reader, void *cls,
			  MHD_ContentReaderFreeCallback free_cls)
{
	return lms_reply_stream_response_size(req, MHD_SIZE_UNKNOWN, block_size, reader, cls, free_cls);
}

enum MHD_Result
lms_reply_event_stream(struct lms_request *req, MHD_ContentReaderCallback reader, void *cls,
		       MHD_ContentReaderFreeCallback free_cls)
{
	return lms_reply_event_stream_headers(req, reader, cls, free_cls, NULL);
}

enum MHD_Result
lms_reply_event_stream_headers(struct lms_request *req, MHD_ContentReaderCallback reader, void *cls,
			       MHD_ContentReaderFreeCallback free_cls, const struct lms_header *headers)
{
	struct MHD_Response *resp = lms_reply_stream_response(req, 64 * 1024, reader, cls, free_cls);
	for (const struct lms_header *h = headers; h && h->name; h++)
		MHD_add_response_header(resp, h->name, h->value);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	/* Proxies such as nginx must not hold the events back. */
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	return lms_reply(req, 200, resp);
}

void
lms_sse_event(struct lms_buf *out, const char *event, json_t *data)
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
