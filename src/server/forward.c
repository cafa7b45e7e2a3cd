/*
 * A request for another node's sandbox, relayed to that node (docs/deploy.md, "Scaling"). The id names
 * the node ("sbx_NODE_HEX", cluster.h); its peer URL comes from --peers. The request goes on as it comes
 * (headers, then each piece of the body: an upload is never held), and the peer's answer comes back as it
 * comes (an exec's events, a process's followed output, a download), on the connection's own thread.
 * Plain HTTP/1.1 over a socket of its own, one per request (Connection: close): the peer's framing
 * (Content-Length, chunked, or to the close) is read here; nothing else of HTTP is needed.
 *
 * Every byte of the peer's answer is treated as hostile too: its head is bounded, its chunk sizes
 * checked, and it is passed on only as a status, a few known headers and a body.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "server/cluster.h"
#include "server/server.h"

#define HOP_HEADER LMS_FORWARDED_BY_HEADER
#define CONNECT_MS 3000
/* The request's head and body go to the peer from libmicrohttpd's one thread (as a body sink's do): a
 * peer that stops reading holds it this long at most, then the forward fails (docs/ARCHITECTURE.md). */
#define SEND_MS 5000
#define HEAD_MAX (16 * 1024)
#define IN_SIZE (64 * 1024)

enum framing { BY_LENGTH, BY_CHUNKS, BY_CLOSE };

struct lms_forward {
	const struct lms_peer *peer;
	int fd;
	int client_fd;
	bool chunked_up; /* the body goes as chunks (the client sent none of its length) */
	bool send_failed;
	int send_errno;
	struct lms_buf head; /* the request's head, built in begin, sent at once */
	/* The answer. */
	char in[IN_SIZE];
	size_t in_off, in_len;
	enum framing framing;
	uint64_t left;	 /* BY_LENGTH: bytes still to come; BY_CHUNKS: of the current chunk */
	bool chunk_open; /* BY_CHUNKS: inside a chunk (its CRLF still to read at its end) */
	bool eof;	 /* the peer closed */
	int wait_ms;	 /* the silence allowed from the peer (-1: none, an event stream) */
	char node[LMS_NODE_MAX + 1];
};

/* 1: the client closed; 0: it is there (a pipelined next request counts as there). */
static int
client_gone(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Waits for `events` on the peer's socket: 0 ready, -1 timed out or the client left (errno says). */
static int
wait_peer(struct lms_forward *f, short events, int timeout_ms)
{
	for (;;) {
		struct pollfd p[2] = {{.fd = f->fd, .events = events}, {.fd = f->client_fd, .events = POLLIN}};
		int n = poll(p, f->client_fd >= 0 ? 2 : 1, timeout_ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (f->client_fd >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			if (client_gone(f->client_fd)) {
				errno = ECONNABORTED;
				return -1;
			}
			if (!(p[0].revents))
				f->client_fd = -1; /* a pipelined request: its turn comes later; stop watching */
		}
		if (p[0].revents)
			return 0;
	}
}

static int
send_all(struct lms_forward *f, const char *data, size_t len, int timeout_ms)
{
	while (len > 0) {
		ssize_t n = send(f->fd, data, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wait_peer(f, POLLOUT, timeout_ms) < 0)
				return -1;
			continue;
		}
		if (n < 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A non-blocking socket connected to host:port within CONNECT_MS, or -1 with a message in why. */
static int
connect_peer(const struct lms_peer *p, char *why, size_t why_size)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
	int rc = getaddrinfo(p->host, p->port, &hints, &res);
	if (rc != 0) {
		snprintf(why, why_size, "resolve %s: %s", p->host, gai_strerror(rc));
		return -1;
	}
	int fd = -1;
	for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0) {
			snprintf(why, why_size, "socket: %s", strerror(errno));
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
			break;
		int e = errno;
		if (e == EINPROGRESS) {
			struct pollfd pf = {.fd = fd, .events = POLLOUT};
			int n = poll(&pf, 1, CONNECT_MS);
			socklen_t sl = sizeof(e);
			if (n > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) == 0 && e == 0)
				break;
			if (n == 0)
				e = ETIMEDOUT;
		}
		snprintf(why, why_size, "connect: %s", strerror(e));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

void
lms_url_encode(struct lms_buf *out, const char *s, size_t n, const char *keep)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (isalnum(c) || strchr("-._~", c) != NULL || (c != '\0' && strchr(keep, c) != NULL)) {
			lms_buf_append(out, (const char *)&s[i], 1);
		} else {
			char hex[4];
			snprintf(hex, sizeof(hex), "%%%02X", c);
			lms_buf_append(out, hex, 3);
		}
	}
}

struct head_ctx {
	struct lms_buf *out;
	bool first_arg;
	bool has_length;
};

static enum MHD_Result
add_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	struct head_ctx *h = cls;
	lms_buf_append(h->out, h->first_arg ? "?" : "&", 1);
	h->first_arg = false;
	lms_url_encode(h->out, key, strlen(key), "");
	if (value != NULL) {
		lms_buf_append(h->out, "=", 1);
		lms_url_encode(h->out, value, strlen(value), "");
	}
	return MHD_YES;
}

/* The client's headers, less those of this hop (RFC 9110, 7.6.1) and those set here. */
static enum MHD_Result
add_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	static const char *const hop[] = {"Connection", "Keep-Alive",	"Proxy-Connection", "Transfer-Encoding",
					  "TE",		"Trailer",	"Upgrade",	    "Host",
					  "Expect",	"X-Request-Id", HOP_HEADER};
	struct head_ctx *h = cls;
	for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
		if (strcasecmp(key, hop[i]) == 0)
			return MHD_YES;
	if (strchr(value, '\r') || strchr(value, '\n'))
		return MHD_YES; /* cannot be: libmicrohttpd parsed the lines; never split one here */
	if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
		h->has_length = true;
	lms_buf_printf(h->out, "%s: %s\r\n", key, value);
	return MHD_YES;
}

static enum MHD_Result
reply_unreachable(struct lms_request *req, const struct lms_peer *p, const char *why)
{
	const struct lms_header retry[] = {{MHD_HTTP_HEADER_RETRY_AFTER, "1"}, {NULL, NULL}};
	return lms_reply_error_headers(req, 503, retry, "server_error", "peer_unavailable",
				       "node %s (%s), which holds this sandbox, cannot be reached: %s: is it running? "
				       "Retry shortly",
				       p->name, p->url, why);
}

enum MHD_Result
lms_forward_begin(struct lms_request *req, bool *taken)
{
	*taken = false;
	const struct lms_cluster *c = req->server->cluster;
	if (c == NULL || strncmp(req->path, "/v1/sandboxes/", 14) != 0)
		return MHD_YES;
	char id[LMS_SANDBOX_ID_SIZE], node[LMS_NODE_MAX + 1];
	lms_sandbox_path_id(req, id);
	if (!lms_sandbox_id_node(id, node) || strcmp(node, c->node) == 0)
		return MHD_YES;
	*taken = req->forwarded = true;
	const char *via = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, HOP_HEADER);
	if (via != NULL)
		return lms_reply_error(req, 508, "server_error", "forward_loop",
				       "node %.64s forwarded this request here (node %s) for node %s's sandbox %s, "
				       "which this node does not hold: the nodes' --peers disagree",
				       via, c->node, node, id);
	const struct lms_peer *p = lms_cluster_peer(c, node);
	if (p == NULL)
		return lms_reply_error(req, 404, "invalid_request_error", "sandbox_not_found",
				       "no sandbox %s: its node %s is not in this cluster (--peers of node %s)", id,
				       node, c->node);
	char why[256] = "no address";
	int fd = connect_peer(p, why, sizeof(why));
	if (fd < 0)
		return reply_unreachable(req, p, why);
	struct lms_forward *f = xcalloc(1, sizeof(*f));
	f->peer = p;
	f->fd = fd;
	f->client_fd = lms_request_socket(req);
	memcpy(f->node, node, sizeof(node));
	struct head_ctx h = {.out = &f->head, .first_arg = true};
	lms_buf_printf(&f->head, "%s ", req->method);
	lms_url_encode(&f->head, req->path, strlen(req->path), "/!$&'()*+,;=:@");
	MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, add_arg, &h);
	lms_buf_printf(&f->head, " HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\nX-Request-Id: %s\r\n%s: %s\r\n",
		       p->host, p->port, req->id, HOP_HEADER, c->node);
	MHD_get_connection_values(req->conn, MHD_HEADER_KIND, add_header, &h);
	const char *te = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
	f->chunked_up = !h.has_length && te != NULL;
	if (f->chunked_up)
		lms_buf_printf(&f->head, "Transfer-Encoding: chunked\r\n");
	lms_buf_append(&f->head, "\r\n", 2);
	req->forward = f;
	if (send_all(f, f->head.data, f->head.len, SEND_MS) < 0) {
		int e = errno;
		lms_forward_end(req);
		snprintf(why, sizeof(why), "send the request: %s", strerror(e));
		return reply_unreachable(req, p, why);
	}
	lms_buf_clear(&f->head);
	return MHD_YES;
}

void
lms_forward_chunk(struct lms_request *req, const char *data, size_t len)
{
	struct lms_forward *f = req->forward;
	if (f->send_failed || len == 0)
		return;
	int t = SEND_MS;
	char size[24];
	int n = snprintf(size, sizeof(size), "%zx\r\n", len);
	if ((f->chunked_up && send_all(f, size, (size_t)n, t) < 0) || send_all(f, data, len, t) < 0 ||
	    (f->chunked_up && send_all(f, "\r\n", 2, t) < 0)) {
		f->send_failed = true;
		f->send_errno = errno;
	}
}

/* More of the answer into f->in: > 0 bytes came, 0 the peer closed, -1 silent too long or the client left. */
static ssize_t
fill(struct lms_forward *f)
{
	if (f->in_off > 0) {
		memmove(f->in, f->in + f->in_off, f->in_len - f->in_off);
		f->in_len -= f->in_off;
		f->in_off = 0;
	}
	if (f->in_len == sizeof(f->in))
		return 1; /* full: the caller takes from it first */
	for (;;) {
		ssize_t n = recv(f->fd, f->in + f->in_len, sizeof(f->in) - f->in_len, 0);
		if (n > 0) {
			f->in_len += (size_t)n;
			return n;
		}
		if (n == 0) {
			f->eof = true;
			return 0;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		if (wait_peer(f, POLLIN, f->wait_ms) < 0)
			return -1;
	}
}

/* The value of header `name` in the head's lines, or NULL. */
static const char *
head_value(char *const *lines, size_t n, const char *name, size_t *len)
{
	size_t k = strlen(name);
	for (size_t i = 0; i < n; i++)
		if (strncasecmp(lines[i], name, k) == 0 && lines[i][k] == ':') {
			const char *v = lines[i] + k + 1;
			v += strspn(v, " \t");
			*len = strcspn(v, "\r");
			while (*len > 0 && (v[*len - 1] == ' ' || v[*len - 1] == '\t'))
				(*len)--;
			return v;
		}
	return NULL;
}

static ssize_t
read_body(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct lms_forward *f = cls;
	for (;;) {
		size_t have = f->in_len - f->in_off;
		if (f->framing == BY_CHUNKS && !f->chunk_open) {
			char *line = have ? memchr(f->in + f->in_off, '\n', have) : NULL;
			if (line == NULL) {
				if (have > 1024 || fill(f) <= 0)
					return MHD_CONTENT_READER_END_WITH_ERROR;
				continue;
			}
			char *start = f->in + f->in_off, *end = NULL;
			if (f->left == UINT64_MAX) { /* the CRLF after a chunk's data */
				f->in_off += (size_t)(line - start) + 1;
				f->left = 0;
				continue;
			}
			errno = 0;
			unsigned long long size = strtoull(start, &end, 16);
			if (end == start || errno != 0 || size > (1ull << 40))
				return MHD_CONTENT_READER_END_WITH_ERROR;
			f->in_off += (size_t)(line - start) + 1;
			if (size == 0)
				return MHD_CONTENT_READER_END_OF_STREAM; /* trailers, if any, are not passed on */
			f->left = size;
			f->chunk_open = true;
			continue;
		}
		if (f->framing != BY_CLOSE && f->left == 0)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (have == 0) {
			ssize_t n = fill(f);
			if (n < 0 || (n == 0 && f->framing != BY_CLOSE))
				return MHD_CONTENT_READER_END_WITH_ERROR; /* cut short: the client must see it */
			if (n == 0)
				return MHD_CONTENT_READER_END_OF_STREAM;
			continue;
		}
		size_t n = have < max ? have : max;
		if (f->framing != BY_CLOSE && n > f->left)
			n = (size_t)f->left;
		memcpy(buf, f->in + f->in_off, n);
		f->in_off += n;
		if (f->framing != BY_CLOSE)
			f->left -= n;
		if (f->framing == BY_CHUNKS && f->left == 0) {
			f->chunk_open = false;
			f->left = UINT64_MAX; /* its CRLF next */
		}
		return (ssize_t)n;
	}
}

static void
free_forward(void *cls)
{
	struct lms_forward *f = cls;
	if (f->fd >= 0)
		close(f->fd);
	lms_buf_clear(&f->head);
	free(f);
}

static enum MHD_Result
reply_bad_answer(struct lms_request *req, const struct lms_forward *f, const char *what)
{
	return lms_reply_error(req, 502, "server_error", "peer_bad_answer",
			       "node %s (%s), which holds this sandbox, %s: retry, or see its log for request %s",
			       f->peer->name, f->peer->url, what, req->id);
}

enum MHD_Result
lms_forward_reply(struct lms_request *req)
{
	struct lms_forward *f = req->forward;
	const struct lms_config *cfg = req->server->cfg;
	char why[160];
	if (f->send_failed) {
		snprintf(why, sizeof(why), "send the request's body: %s", strerror(f->send_errno));
		const struct lms_peer *p = f->peer;
		lms_forward_end(req);
		return reply_unreachable(req, p, why);
	}
	if (f->chunked_up && send_all(f, "0\r\n\r\n", 5, (int)cfg->idle_timeout_ms) < 0) {
		snprintf(why, sizeof(why), "send the request's body: %s", strerror(errno));
		const struct lms_peer *p = f->peer;
		lms_forward_end(req);
		return reply_unreachable(req, p, why);
	}
	/* The head may take as long as the longest command the peer runs before it answers. */
	f->wait_ms = (int)(cfg->max_timeout_ms + cfg->idle_timeout_ms);
	char *end = NULL;
	while ((end = memmem(f->in, f->in_len, "\r\n\r\n", 4)) == NULL) {
		if (f->in_len >= HEAD_MAX)
			return reply_bad_answer(req, f, "answered with a head over 16 KiB");
		ssize_t n = fill(f);
		if (n < 0 && errno == ECONNABORTED)
			return MHD_NO; /* the client left: nobody to answer */
		if (n <= 0)
			return reply_bad_answer(
			    req, f, n == 0 ? "closed the connection before answering" : "did not answer in time");
	}
	*end = '\0';
	f->in_off = (size_t)(end - f->in) + 4;
	char *lines[64];
	size_t n_lines = 0;
	for (char *save = NULL, *l = strtok_r(f->in, "\n", &save); l && n_lines < 64; l = strtok_r(NULL, "\n", &save))
		lines[n_lines++] = l;
	unsigned status = 0;
	if (n_lines == 0 || sscanf(lines[0], "HTTP/1.%*1[01] %3u", &status) != 1 || status < 200 || status > 599)
		return reply_bad_answer(req, f, "answered with no HTTP status");
	size_t vlen = 0;
	const char *te = head_value(lines + 1, n_lines - 1, "Transfer-Encoding", &vlen);
	const char *cl = head_value(lines + 1, n_lines - 1, "Content-Length", &vlen);
	uint64_t size = MHD_SIZE_UNKNOWN;
	if (te != NULL) {
		f->framing = BY_CHUNKS;
	} else if (cl != NULL) {
		char *cend;
		errno = 0;
		unsigned long long v = strtoull(cl, &cend, 10);
		if (cend == cl || errno != 0)
			return reply_bad_answer(req, f, "answered with a bad Content-Length");
		f->framing = BY_LENGTH;
		f->left = size = v;
	} else {
		f->framing = BY_CLOSE;
	}
	const char *ct = head_value(lines + 1, n_lines - 1, "Content-Type", &vlen);
	bool events = ct != NULL && vlen >= 17 && strncasecmp(ct, "text/event-stream", 17) == 0;
	/* An event stream (an exec's, a followed output) may be silent as long as its command is. */
	f->wait_ms = events ? -1 : (int)cfg->idle_timeout_ms;
	struct MHD_Response *resp =
	    status == 204 || status == 304
		? MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT)
		: lms_reply_stream_response_size(req, size, 64 * 1024, read_body, f, free_forward);
	if (resp == NULL)
		return MHD_NO;
	static const char *const passed[] = {
	    "Content-Type", "Content-Disposition", "Cache-Control",   "Retry-After", "Allow",
	    "Location",	    "X-Accel-Buffering",   "WWW-Authenticate"};
	for (size_t i = 0; i < sizeof(passed) / sizeof(passed[0]); i++) {
		const char *v = head_value(lines + 1, n_lines - 1, passed[i], &vlen);
		if (v != NULL) {
			char *copy = xstrndup(v, vlen);
			MHD_add_response_header(resp, passed[i], copy);
			free(copy);
		}
	}
	MHD_add_response_header(resp, "X-LMS-Node", f->node);
	if (status != 204 && status != 304)
		req->forward = NULL; /* the response owns it now */
	return lms_reply(req, status, resp);
}

void
lms_forward_end(struct lms_request *req)
{
	if (req->forward != NULL)
		free_forward(req->forward);
	req->forward = NULL;
}
