/*
 * The port relay of a persistent sandbox (docs/API-NOTES.md, "The port relay"): GET, HEAD, POST, PUT,
 * PATCH and DELETE /v1/sandboxes/{id}/ports/{port}/{path}?query, behind the token, relayed to the
 * server listening on 127.0.0.1:{port} inside that sandbox's network namespace, and its answer streamed
 * back as it comes. The connection is made while the sandbox is held (a stopped PID 1 is started again
 * first, as for any route), then the hold ends: a long stream does not keep a DELETE waiting, and the
 * sandbox's end ends the stream. The HTTP of the inside is port-relay.c's; here are the request's parts,
 * what is forwarded either way, and the bounds.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "server/port-relay.h"
#include "server/sandboxes.h"
#include "server/server.h"

#define PREFIX "/v1/sandboxes/"
/* How long nothing may accept the connection, take request bytes, or send the answer's head. */
#define CONNECT_TIMEOUT_MS 5000
#define RELAY_TIMEOUT_MS 60000
/* The request's head and body are written on libmicrohttpd's one thread (a body sink): an inside server
 * that stops reading may hold it this long at most, then the relay fails (docs/SECURITY.md). */
#define SINK_WRITE_TIMEOUT_MS 2000
/* How often a silent stream checks the daemon's shutdown (the client's hang-up wakes it at once). */
#define TICK_MS 1000

/* A relay in progress: the request's sink state, then the response's stream. */
struct port_call {
	struct lms_server *server;
	struct lms_port_relay *relay;
	unsigned port;
	bool chunked; /* the body goes to the inside chunk-encoded (the client sent it so) */
	bool head;    /* HEAD: an answer without a body */
	bool upgrade; /* a WebSocket handshake: the connection may switch protocols */
	uint64_t received;
	bool too_large;
	struct lms_error *err; /* sending the body failed: the rest is dropped, the handler says why */
	int client_fd;
	atomic_int refs; /* the request's, and a WebSocket bridge's while it runs */
};

static void
call_free(struct port_call *c)
{
	if (c == NULL || atomic_fetch_sub(&c->refs, 1) > 1)
		return;
	lms_port_relay_free(c->relay);
	lms_error_free(c->err);
	atomic_fetch_sub(&c->server->relays, 1);
	free(c);
}

/* The port of the path, 1..65535 in decimal, and where the sandbox's own path starts; 0 when invalid. */
static unsigned
path_port(const struct lms_request *req, const char **rest)
{
	const char *p = strstr(req->path + strlen(PREFIX), "/ports/");
	if (p == NULL)
		return 0;
	p += strlen("/ports/");
	size_t n = strcspn(p, "/");
	*rest = p + n;
	if (n == 0 || n > 5 || strspn(p, "0123456789") != n || p[0] == '0')
		return 0;
	unsigned long v = strtoul(p, NULL, 10);
	return v <= 65535 ? (unsigned)v : 0;
}

/* Percent-encodes s into b, keeping the bytes of `keep` and the unreserved ones (RFC 3986 2.3); in a
 * query (form) a space is "+", as libmicrohttpd read a "+" as one. */
static void
encode(struct lms_buf *b, const char *s, const char *keep, bool form)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (form && *p == ' ') {
			lms_buf_append(b, "+", 1);
		} else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
			   strchr("-._~", *p) || strchr(keep, *p)) {
			lms_buf_append(b, p, 1);
		} else {
			char hex[4];
			snprintf(hex, sizeof(hex), "%%%02X", *p);
			lms_buf_append(b, hex, 3);
		}
	}
}

struct query {
	struct lms_buf *b;
	unsigned n;
};

static enum MHD_Result
add_query(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	struct query *q = cls;
	lms_buf_append(q->b, q->n++ ? "&" : "?", 1);
	encode(q->b, key, "!$'()*,;:@/", true);
	if (value != NULL) {
		lms_buf_append(q->b, "=", 1);
		encode(q->b, value, "!$'()*,;:@/=", true);
	}
	return MHD_YES;
}

struct headers {
	struct lms_buf *b;
	const char *connection;
};

/* The client's headers that go on: not the connection's own, not the daemon's credentials (its token in
 * Authorization; Cookie, since a browser sends every localhost port's cookies to the daemon's), and not
 * those the relay sets itself. */
static enum MHD_Result
add_header(void *cls, enum MHD_ValueKind kind, const char *name, const char *value)
{
	(void)kind;
	struct headers *h = cls;
	static const char *const replaced[] = {"Authorization",
					       "Cookie",
					       "Host",
					       "Content-Length",
					       "Expect",
					       "X-Forwarded-For",
					       "X-Forwarded-Host",
					       "X-Forwarded-Proto",
					       "X-Forwarded-Prefix",
					       "X-Request-Id",
					       "Forwarded"};
	for (size_t i = 0; i < sizeof(replaced) / sizeof(replaced[0]); i++)
		if (strcasecmp(name, replaced[i]) == 0)
			return MHD_YES;
	if (value == NULL || lms_http_hop_by_hop(name, h->connection) || strpbrk(name, "\r\n:") ||
	    strpbrk(value, "\r\n"))
		return MHD_YES;
	lms_buf_append(h->b, name, strlen(name));
	lms_buf_append(h->b, ": ", 2);
	lms_buf_append(h->b, value, strlen(value));
	lms_buf_append(h->b, "\r\n", 2);
	return MHD_YES;
}

static void
append_header(struct lms_buf *b, const char *name, const char *value)
{
	lms_buf_append(b, name, strlen(name));
	lms_buf_append(b, ": ", 2);
	lms_buf_append(b, value, strlen(value));
	lms_buf_append(b, "\r\n", 2);
}

/* The request's head for the inside: the method, the sandbox's path (from the daemon's decoded one,
 * encoded again) and query, Host 127.0.0.1:PORT, the client's headers that go on, X-Forwarded-*, and one
 * connection per request (Connection: close: the answer may end with it). */
static void
request_head(struct lms_request *req, struct port_call *c, const char *rest, struct lms_buf *b)
{
	lms_buf_append(b, req->method, strlen(req->method));
	lms_buf_append(b, " ", 1);
	if (rest[0] == '\0')
		lms_buf_append(b, "/", 1);
	encode(b, rest, "/!$&'()*+,;=:@", false);
	struct query q = {b, 0};
	MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, add_query, &q);
	lms_buf_append(b, " HTTP/1.1\r\n", 11);
	char text[160];
	snprintf(text, sizeof(text), "127.0.0.1:%u", c->port);
	append_header(b, "Host", text);
	if (c->upgrade) {
		append_header(b, "Connection", "Upgrade");
		append_header(b, "Upgrade", MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Upgrade"));
	} else {
		append_header(b, "Connection", "close");
	}
	const char *host = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
	if (host != NULL && strpbrk(host, "\r\n") == NULL)
		append_header(b, "X-Forwarded-Host", host);
	append_header(b, "X-Forwarded-Proto", "http");
	snprintf(text, sizeof(text), "%.*s/ports/%u", (int)(strstr(req->path + strlen(PREFIX), "/ports/") - req->path),
		 req->path, c->port);
	append_header(b, "X-Forwarded-Prefix", text);
	append_header(b, "X-Request-Id", req->id);
	const char *length = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (c->chunked)
		append_header(b, "Transfer-Encoding", "chunked");
	else if (length != NULL) {
		snprintf(text, sizeof(text), "%llu", strtoull(length, NULL, 10)); /* as libmicrohttpd read it */
		append_header(b, "Content-Length", text);
	} else if (strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0 ||
		   strcmp(req->method, "PATCH") == 0)
		append_header(b, "Content-Length", "0");
	struct headers h = {b, MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Connection")};
	MHD_get_connection_values(req->conn, MHD_HEADER_KIND, add_header, &h);
	lms_buf_append(b, "\r\n", 2);
}

static enum MHD_Result
reply_too_large(struct lms_request *req)
{
	return lms_reply_error(req, 413, "invalid_request_error", "body_too_large",
			       "the body is larger than %llu bytes (the server's --max-upload-bytes)",
			       (unsigned long long)req->server->cfg->max_upload_bytes);
}

/* A failure of the relay in the API's shape: nothing listens (502 port_unreachable), the inside was too
 * slow (504 port_timeout), or its answer is unusable (502 port_bad_response). */
static enum MHD_Result
reply_relay_error(struct lms_request *req, const struct lms_error *e)
{
	if (e->kind == LMS_ERR_UNREACHABLE)
		return lms_reply_error(req, 502, "server_error", "port_unreachable", "%s", e->message);
	if (e->kind == LMS_ERR_TIMEOUT)
		return lms_reply_error(req, 504, "server_error", "port_timeout", "%s", e->message);
	if (e->kind == LMS_ERR_BAD_GATEWAY)
		return lms_reply_error(req, 502, "server_error", "port_bad_response", "%s", e->message);
	return lms_reply_lms_error(req, e);
}

/* Connects to the port while the sandbox is held (the hold then ends): the relay, or NULL with the reply
 * queued. */
static struct lms_port_relay *
connect_inside(struct lms_request *req, unsigned port, enum MHD_Result *reply)
{
	struct lms_sandbox_entry *e = lms_sandbox_hold(req, reply);
	if (e == NULL)
		return NULL;
	_cleanup_error_ struct lms_error *err = NULL;
	int fd = lms_sandboxes_connect_port(e, (uint16_t)port, CONNECT_TIMEOUT_MS, &err);
	lms_sandboxes_release(req->server->sandboxes, e, NULL);
	if (fd < 0) {
		*reply = reply_relay_error(req, err);
		return NULL;
	}
	return lms_port_relay_new(fd);
}

/* A GET with Upgrade: websocket and Connection: upgrade (RFC 6455 4.1); other upgrades are not relayed. */
static bool
asks_upgrade(struct lms_request *req)
{
	const char *up = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Upgrade");
	const char *conn = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Connection");
	return strcmp(req->method, "GET") == 0 && up != NULL && strcasecmp(up, "websocket") == 0 && conn != NULL &&
	       strcasestr(conn, "upgrade") != NULL;
}

static enum MHD_Result
ports_begin(struct lms_request *req)
{
	struct lms_server *s = req->server;
	const char *rest = "";
	unsigned port = path_port(req, &rest);
	if (port == 0)
		return lms_reply_error(req, 400, "invalid_request_error", "invalid_port",
				       "the port must be a number 1..65535, as in /v1/sandboxes/{id}/ports/8000/");
	const char *length = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (length && strtoull(length, NULL, 10) > s->cfg->max_upload_bytes)
		return reply_too_large(req);
	/* Relays are connections, not executions: their own count, within the same --max-concurrent. */
	if (atomic_fetch_add(&s->relays, 1) >= (int)s->cfg->max_concurrent) {
		atomic_fetch_sub(&s->relays, 1);
		const struct lms_header retry[] = {{MHD_HTTP_HEADER_RETRY_AFTER, "1"}, {NULL, NULL}};
		return lms_reply_error_headers(req, 429, retry, "server_error", "too_many_relays",
					       "%llu port relays are open (the server's --max-concurrent): retry "
					       "shortly",
					       (unsigned long long)s->cfg->max_concurrent);
	}
	struct port_call *c = xcalloc(1, sizeof(*c));
	atomic_init(&c->refs, 1);
	c->server = s;
	c->port = port;
	c->head = strcmp(req->method, "HEAD") == 0;
	c->client_fd = lms_request_socket(req);
	const char *te = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
	/* A chunked body is read as chunks whatever Content-Length says (RFC 9112 6.3), so it goes on as
	 * chunks: a length that disagreed would let the client smuggle a second request to the inside. */
	c->chunked = te != NULL;
	c->upgrade = asks_upgrade(req);
	enum MHD_Result reply = MHD_NO;
	if ((c->relay = connect_inside(req, port, &reply)) == NULL) {
		call_free(c);
		return reply;
	}
	struct lms_buf head = {0};
	request_head(req, c, rest, &head);
	_cleanup_error_ struct lms_error *err = NULL;
	int r = lms_port_relay_write(c->relay, head.data, head.len, SINK_WRITE_TIMEOUT_MS, &err);
	lms_buf_clear(&head);
	if (r < 0) {
		call_free(c);
		return reply_relay_error(req, err);
	}
	req->sink_state = c;
	return MHD_YES;
}

static void
ports_chunk(struct lms_request *req, const char *data, size_t len)
{
	struct port_call *c = req->sink_state;
	if (c == NULL || c->too_large || c->err != NULL)
		return;
	c->received += len;
	if (c->received > req->server->cfg->max_upload_bytes) {
		c->too_large = true;
		return;
	}
	if (c->chunked) {
		char size[24];
		int n = snprintf(size, sizeof(size), "%zx\r\n", len);
		if (lms_port_relay_write(c->relay, size, (size_t)n, SINK_WRITE_TIMEOUT_MS, &c->err) < 0)
			return;
	}
	if (lms_port_relay_write(c->relay, data, len, SINK_WRITE_TIMEOUT_MS, &c->err) == 0 && c->chunked)
		(void)lms_port_relay_write(c->relay, "\r\n", 2, SINK_WRITE_TIMEOUT_MS, &c->err);
}

static void
ports_end(struct lms_request *req)
{
	call_free(req->sink_state);
	req->sink_state = NULL;
}

const struct lms_body_sink lms_ports_sink = {ports_begin, ports_chunk, ports_end};

/* The answer's body as it comes; a silent one waits, watching the client and the daemon's shutdown. */
static ssize_t
body_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct port_call *c = cls;
	for (;;) {
		if (atomic_load(&c->server->stopping))
			return MHD_CONTENT_READER_END_WITH_ERROR;
		_cleanup_error_ struct lms_error *err = NULL;
		ssize_t n = lms_port_relay_body(c->relay, buf, max, c->client_fd, TICK_MS, &err);
		if (n > 0)
			return n;
		if (n == 0)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (n == LMS_PORT_AGAIN)
			continue;
		/* The status is sent already: the stream is cut, so the client cannot take it as whole. */
		if (err->kind != LMS_ERR_CANCELLED)
			lms_log(LMS_LOG_WARNING, NULL, "ports: a relayed answer was cut", "error", err->message, NULL);
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
}

static void
body_free(void *cls)
{
	call_free(cls);
}

/* The bridges running: the daemon's stop waits for them (lms_ports_wait_bridges), since libmicrohttpd frees
 * an upgraded connection's handle when it stops, and a bridge's last act is to close it. */
static pthread_mutex_t bridges_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bridges_done = PTHREAD_COND_INITIALIZER;
static unsigned bridges;

static void
bridge_ended(void)
{
	pthread_mutex_lock(&bridges_lock);
	if (--bridges == 0)
		pthread_cond_broadcast(&bridges_done);
	pthread_mutex_unlock(&bridges_lock);
}

void
lms_ports_wait_bridges(void)
{
	pthread_mutex_lock(&bridges_lock);
	while (bridges > 0)
		pthread_cond_wait(&bridges_done, &bridges_lock);
	pthread_mutex_unlock(&bridges_lock);
}

struct bridge {
	struct port_call *c;
	MHD_socket sock;
	struct MHD_UpgradeResponseHandle *urh;
	char *extra;
	size_t extra_len;
};

static void *
bridge_main(void *arg)
{
	struct bridge *b = arg;
	lms_port_relay_bridge(b->c->relay, b->sock, b->extra, b->extra_len, RELAY_TIMEOUT_MS, &b->c->server->stopping,
			      TICK_MS);
	(void)MHD_upgrade_action(b->urh, MHD_UPGRADE_ACTION_CLOSE); /* the client's socket is libmicrohttpd's */
	call_free(b->c);
	free(b->extra);
	free(b);
	bridge_ended();
	return NULL;
}

/* After the inside's 101 reached the client: the bytes both ways until both ends close, on a thread of
 * their own (this callback runs on libmicrohttpd's one thread, which serves every other connection). */
static void
upgraded(void *cls, struct MHD_Connection *conn, void *con_cls, const char *extra_in, size_t extra_in_size,
	 MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
	(void)conn, (void)con_cls;
	struct bridge *b = xcalloc(1, sizeof(*b));
	*b = (struct bridge){.c = cls, .sock = sock, .urh = urh, .extra_len = extra_in_size};
	atomic_fetch_add(&b->c->refs, 1); /* the request may complete while the bridge still runs */
	if (extra_in_size) {
		b->extra = xmalloc(extra_in_size);
		memcpy(b->extra, extra_in, extra_in_size);
	}
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&bridges_lock);
	bridges++;
	pthread_mutex_unlock(&bridges_lock);
	if (pthread_create(&t, &attr, bridge_main, b) != 0) {
		lms_log(LMS_LOG_WARNING, NULL, "ports: no thread for a WebSocket relay", NULL);
		(void)MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		call_free(b->c);
		free(b->extra);
		free(b);
		bridge_ended();
	}
	pthread_attr_destroy(&attr);
}

/* Headers of the inside's answer that the daemon's own framing or identity replaces. */
static bool
answer_header_dropped(const char *name, const char *connection)
{
	return lms_http_hop_by_hop(name, connection) || strcasecmp(name, "Content-Length") == 0 ||
	       strcasecmp(name, "X-Request-Id") == 0;
}

enum MHD_Result
lms_route_ports(struct lms_request *req)
{
	struct port_call *c = req->sink_state;
	if (c->too_large)
		return reply_too_large(req);
	if (c->err != NULL)
		return reply_relay_error(req, c->err);
	_cleanup_error_ struct lms_error *err = NULL;
	if (c->chunked && lms_port_relay_write(c->relay, "0\r\n\r\n", 5, RELAY_TIMEOUT_MS, &err) < 0)
		return reply_relay_error(req, err);
	unsigned flags = (c->head ? LMS_PORT_NO_BODY : 0) | (c->upgrade ? LMS_PORT_UPGRADE : 0);
	if (lms_port_relay_read_head(c->relay, flags, RELAY_TIMEOUT_MS, &err) < 0)
		return reply_relay_error(req, err);
	struct MHD_Response *resp = NULL;
	if (lms_port_relay_status(c->relay) == 101) {
		/* The call stays the request's (freed when it completes); the bridge holds a reference of its own. */
		resp = MHD_create_response_for_upgrade(upgraded, c);
	} else {
		req->sink_state = NULL; /* the stream owns the call now */
		resp = lms_reply_stream_response(req, 64 * 1024, body_read, c, body_free);
	}
	if (resp == NULL)
		return lms_reply_error(req, 500, "server_error", "internal_error", "could not make the response");
	const char *connection = NULL;
	for (size_t i = 0; i < lms_port_relay_header_count(c->relay); i++) {
		const char *name, *value;
		lms_port_relay_header(c->relay, i, &name, &value);
		if (strcasecmp(name, "Connection") == 0)
			connection = value;
	}
	for (size_t i = 0; i < lms_port_relay_header_count(c->relay); i++) {
		const char *name, *value;
		lms_port_relay_header(c->relay, i, &name, &value);
		/* One libmicrohttpd refuses (a name it frames itself) is left out, not the answer. */
		if (!answer_header_dropped(name, connection))
			(void)MHD_add_response_header(resp, name, value);
		else if (c->upgrade && strcasecmp(name, "Upgrade") == 0)
			(void)MHD_add_response_header(resp, name, value); /* the protocol switched to */
	}
	/* Proxies such as nginx must not hold events back. */
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	return lms_reply(req, lms_port_relay_status(c->relay), resp);
}
