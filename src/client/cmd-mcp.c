/*
 * `lm-sandbox mcp [--url URL] [--token-file F]`: an MCP server on standard input and output (the stdio
 * transport: one JSON-RPC message a line) for hosts that spawn their servers (llama-server's
 * --mcp-servers-config, desktop assistants, IDEs). It keeps no state and serves no tool itself: each message
 * is POSTed to the running daemon's /mcp over one kept-alive connection, and what comes back (the JSON answer,
 * or each Server-Sent Event of a streamed tools/call: progress notifications as they come, then the answer)
 * is written out a line each. So stdio and HTTP clients get exactly the same server (docs/API-NOTES.md, "MCP
 * over stdio").
 *
 * Messages are answered one at a time, in order. While one is forwarded, standard input is still read, so a
 * `notifications/cancelled` for it closes its connection at once (which kills the command, as a closed
 * stream does for an HTTP client), and one for a message still waiting drops that message. End of standard
 * input: the messages already read are answered, then it exits 0. A host gone (our standard output closed)
 * cancels the message in flight. Nothing but messages is written to standard output; what goes wrong is
 * said on standard error and, for a request, in its JSON-RPC error.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "client/commands.h"
#include "client/lines.h"
#include "client/sse.h"
#include "core/alloc.h"
#include "core/base64.h"
#include "core/fdio.h"

/* As the daemon's default --max-body-bytes: a longer message would only be refused there. */
#define MAX_MESSAGE (8u << 20)
/* Read ahead while one message is forwarded, at most this much (then the host waits on its pipe). */
#define MAX_QUEUED (16u << 20)
#define MAX_ANSWER (16u << 20)
#define READ_CHUNK (64u << 10)
#define META_VERSION "io.modelcontextprotocol/protocolVersion"

/* JSON-RPC error codes this bridge answers with itself. */
enum {
	INVALID_REQUEST = -32600,
	SERVER_ERROR = -32000, /* implementation-defined: the daemon could not be asked, or refused the call */
};

struct message {
	char *raw; /* as the host sent it: forwarded unchanged, so that the daemon's parse errors point into it */
	size_t len;
	json_t *msg; /* parsed, or NULL when it is not JSON */
	struct message *next;
};

struct bridge {
	struct lms_client *c;
	struct lms_lines in;
	struct message *head, *tail;
	size_t queued;	  /* bytes in the queue */
	bool eof;	  /* standard input ended */
	bool gone;	  /* standard output is closed: the host is gone */
	json_t *inflight; /* the id of the request being forwarded (NULL: none, or a notification) */
	bool cancel;	  /* it was cancelled */
	/* The answer being received. */
	struct lms_sse sse;
	struct lms_buf body;
	bool answered;
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *text = xvasprintf(fmt, ap);
	va_end(ap);
	fprintf(stderr, "lm-sandbox mcp: %s\n", text);
}

/* One message out, on one line. Re-encoded compactly: whatever the daemon sent, no raw line end can be in it. */
static void
emit(struct bridge *b, json_t *msg)
{
	if (b->gone)
		return;
	size_t len = json_dumpb(msg, NULL, 0, JSON_COMPACT);
	_cleanup_free_ char *text = xmalloc(len + 1);
	if (json_dumpb(msg, text, len, JSON_COMPACT) != len) {
		say("cannot encode a message for standard output");
		return;
	}
	text[len] = '\n';
	if (lms_fd_write_all(STDOUT_FILENO, text, len + 1) < 0) {
		say("writing to standard output failed (%s): the host is gone, stopping", strerror(errno));
		b->gone = true;
	}
}

static void
emit_error(struct bridge *b, json_t *id, int code, const char *message)
{
	json_t *e = json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(), "error",
			      "code", code, "message", message);
	emit(b, e);
	json_decref(e);
}

/* ---- standard input ---- */

static json_t *
request_id(json_t *msg)
{
	return json_is_object(msg) && json_is_string(json_object_get(msg, "method")) ? json_object_get(msg, "id")
										     : NULL;
}

static void
drop_queued(struct bridge *b, json_t *id)
{
	for (struct message **p = &b->head, *prev = NULL; *p != NULL; prev = *p, p = &(*p)->next) {
		struct message *m = *p;
		json_t *mid = request_id(m->msg);
		if (mid == NULL || !json_equal(mid, id))
			continue;
		*p = m->next;
		if (b->tail == m)
			b->tail = prev;
		b->queued -= m->len;
		json_decref(m->msg);
		free(m->raw);
		free(m);
		return;
	}
}

/* A cancellation is acted on here, as it is read: the daemon has nothing to do with it (over HTTP, a closed
 * stream is what cancels). */
static bool
take_cancel(struct bridge *b, json_t *msg)
{
	const char *method = json_string_value(json_object_get(msg, "method"));
	if (json_object_get(msg, "id") != NULL || method == NULL || strcmp(method, "notifications/cancelled") != 0)
		return false;
	json_t *id = json_object_get(json_object_get(msg, "params"), "requestId");
	if (id == NULL)
		return true;
	if (b->inflight != NULL && json_equal(id, b->inflight))
		b->cancel = true;
	else
		drop_queued(b, id);
	return true;
}

static void
on_line(void *userdata, const char *line, size_t len, bool too_long)
{
	struct bridge *b = userdata;
	if (too_long) {
		say("a message longer than %u bytes was refused", MAX_MESSAGE);
		_cleanup_free_ char *text = xasprintf("message longer than %u bytes: refused (send less)", MAX_MESSAGE);
		emit_error(b, NULL, INVALID_REQUEST, text);
		return;
	}
	if (strspn(line, " \t\r") == len)
		return; /* a blank line is no message */
	json_t *msg = json_loadb(line, len, 0, NULL);
	if (take_cancel(b, msg)) {
		json_decref(msg);
		return;
	}
	struct message *m = xmalloc(sizeof(*m));
	*m = (struct message){.raw = xstrndup(line, len), .len = len, .msg = msg};
	if (b->tail != NULL)
		b->tail->next = m;
	else
		b->head = m;
	b->tail = m;
	b->queued += len;
}

/* Reads what standard input has, waiting up to timeout_ms (-1: until something happens). Also notices a
 * closed standard output, which is how a host that went away shows. */
static void
pump(struct bridge *b, int timeout_ms)
{
	bool want_input = !b->eof && b->queued < MAX_QUEUED;
	struct pollfd fds[2] = {{.fd = want_input ? STDIN_FILENO : -1, .events = POLLIN},
				{.fd = STDOUT_FILENO, .events = 0}};
	int n = poll(fds, 2, timeout_ms);
	if (n < 0) {
		if (errno != EINTR) {
			say("poll on standard input failed (%s): stopping", strerror(errno));
			b->eof = b->gone = true;
		}
		return;
	}
	if (fds[1].revents & (POLLERR | POLLHUP | POLLNVAL)) {
		if (!b->gone)
			say("standard output was closed: the host is gone, stopping");
		b->gone = true;
	}
	if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)))
		return;
	char buf[READ_CHUNK];
	ssize_t r = read(STDIN_FILENO, buf, sizeof(buf));
	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (r < 0)
		say("reading standard input failed (%s): answering what was read, then stopping", strerror(errno));
	if (r <= 0) {
		b->eof = true;
		lms_lines_end(&b->in);
		return;
	}
	lms_lines_feed(&b->in, buf, (size_t)r);
}

/* ---- forwarding ---- */

static bool
should_cancel(void *userdata)
{
	struct bridge *b = userdata;
	pump(b, 0);
	return b->cancel || b->gone;
}

/* One message from the daemon (an SSE event's data, or a JSON body). */
static void
relay(struct bridge *b, const char *data, size_t len)
{
	json_error_t jerr;
	json_t *msg = json_loadb(data, len, 0, &jerr);
	if (!json_is_object(msg)) {
		say("the daemon sent something that is not a JSON-RPC message (%s): dropped", jerr.text);
	} else {
		if (json_object_get(msg, "id") != NULL)
			b->answered = true;
		emit(b, msg);
	}
	json_decref(msg);
}

static int
on_event(void *userdata, const char *event, const char *data, size_t len, struct lms_error **err)
{
	(void)err;
	if (strcmp(event, "message") == 0)
		relay(userdata, data, len);
	return 0;
}

static int
on_data(void *userdata, const struct lms_client_response *resp, const char *data, size_t len, struct lms_error **err)
{
	struct bridge *b = userdata;
	if (resp->content_type != NULL && strcmp(resp->content_type, "text/event-stream") == 0)
		return lms_sse_feed(&b->sse, data, len, err);
	if (b->body.len + len > MAX_ANSWER)
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "the daemon's answer is larger than %u bytes",
				     MAX_ANSWER);
	lms_buf_append(&b->body, data, len);
	return 0;
}

/* A header value the daemon reads back exactly: visible ASCII as it is, anything else in the "=?base64?...?="
 * form the 2026-07-28 transport defines. */
static char *
header_line(const char *name, const char *value)
{
	bool plain = value[0] != ' ' && value[0] != '\0';
	for (const char *p = value; *p && plain; p++)
		plain = (unsigned char)*p >= 0x20 && (unsigned char)*p <= 0x7e;
	if (plain && value[strlen(value) - 1] != ' ')
		return xasprintf("%s: %s", name, value);
	_cleanup_free_ char *b64 = lms_base64_encode(value, strlen(value), NULL);
	return xasprintf("%s: =?base64?%s?=", name, b64);
}

/* A modern request (2026-07-28) must say over HTTP what its body says: the daemon checks that they agree. */
static size_t
modern_headers(json_t *msg, char *lines[4])
{
	json_t *params = json_object_get(msg, "params");
	const char *version = json_string_value(json_object_get(json_object_get(params, "_meta"), META_VERSION));
	const char *method = json_string_value(json_object_get(msg, "method"));
	if (version == NULL || method == NULL)
		return 0;
	size_t n = 0;
	lines[n++] = header_line("MCP-Protocol-Version", version);
	lines[n++] = header_line("Mcp-Method", method);
	const char *name = json_string_value(json_object_get(params, "name"));
	if (strcmp(method, "tools/call") == 0 && name != NULL)
		lines[n++] = header_line("Mcp-Name", name);
	lines[n] = NULL;
	return n;
}

/* A non-2xx answer: the daemon's own JSON-RPC error when it is one (400 parse error, 404 method not found),
 * else the API's error shape (401, 413, 415) said as a JSON-RPC error. */
static void
relay_refusal(struct bridge *b, json_t *id, const struct lms_client_response *resp)
{
	json_t *body = json_loadb(resp->body.data ? resp->body.data : "", resp->body.len, 0, NULL);
	if (json_is_object(body) && json_object_get(body, "jsonrpc") != NULL) {
		emit(b, body);
		json_decref(body);
		return;
	}
	json_decref(body);
	_cleanup_error_ struct lms_error *err = NULL;
	lms_client_api_error(b->c, resp, "POST /mcp", &err);
	say("%s", err->message);
	if (id != NULL)
		emit_error(b, id, SERVER_ERROR, err->message);
}

static void
forward(struct bridge *b, struct message *m)
{
	json_t *id = request_id(m->msg);
	b->inflight = id;
	b->cancel = false;
	b->answered = false;
	lms_sse_init(&b->sse, MAX_ANSWER, on_event, b);
	char *headers[4] = {NULL};
	size_t n_headers = json_is_object(m->msg) ? modern_headers(m->msg, headers) : 0;
	struct lms_client_request rq = {.method = "POST",
					.path = "/mcp",
					.content_type = "application/json",
					.accept = "application/json, text/event-stream",
					.body = m->raw,
					.body_len = m->len,
					.body_fd = -1,
					.on_data = on_data,
					.userdata = b,
					.headers = (const char *const *)headers,
					.cancel = should_cancel,
					.cancel_data = b};
	struct lms_client_response resp;
	_cleanup_error_ struct lms_error *err = NULL;
	int r = lms_client_call(b->c, &rq, &resp, &err);
	if (r < 0 && err != NULL && err->kind == LMS_ERR_CANCELLED) {
		/* A cancelled request gets no answer (the specification's "SHOULD NOT respond"). */
	} else if (r < 0) {
		say("%s", err ? err->message : "the call to the daemon failed");
		if (id != NULL && !b->answered)
			emit_error(b, id, SERVER_ERROR, err ? err->message : "the call to the daemon failed");
	} else if (resp.status < 200 || resp.status > 299) {
		relay_refusal(b, id, &resp);
	} else if (b->body.len > 0) {
		relay(b, b->body.data, b->body.len);
	}
	if (r == 0 && id != NULL && !b->answered && resp.status >= 200 && resp.status <= 299) {
		say("the daemon's answer to a %s ended without a response",
		    json_string_value(json_object_get(m->msg, "method")));
		emit_error(b, id, SERVER_ERROR, "the lm-sandbox daemon's answer ended before its response came");
	}
	for (size_t i = 0; i < n_headers; i++)
		free(headers[i]);
	lms_client_response_clear(&resp);
	lms_sse_free(&b->sse);
	lms_buf_clear(&b->body);
	b->inflight = NULL;
}

static struct message *
dequeue(struct bridge *b)
{
	struct message *m = b->head;
	if (m != NULL) {
		b->head = m->next;
		if (b->head == NULL)
			b->tail = NULL;
		b->queued -= m->len;
	}
	return m;
}

int
lms_client_mcp(struct lms_client *c)
{
	/* A host that closes its end of our standard output is noticed as EPIPE, not killed by it. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		say("cannot ignore SIGPIPE (%s)", strerror(errno));
	struct bridge b = {.c = c};
	lms_lines_init(&b.in, MAX_MESSAGE, on_line, &b);
	say("serving MCP on standard input and output for the daemon at %s/mcp", c->url);
	while (!b.gone) {
		struct message *m = dequeue(&b);
		if (m == NULL) {
			if (b.eof)
				break;
			pump(&b, -1);
			continue;
		}
		forward(&b, m);
		json_decref(m->msg);
		free(m->raw);
		free(m);
	}
	for (struct message *m; (m = dequeue(&b)) != NULL;) {
		json_decref(m->msg);
		free(m->raw);
		free(m);
	}
	lms_lines_free(&b.in);
	return b.gone ? LMS_CLIENT_EXIT_FAILED : 0;
}
