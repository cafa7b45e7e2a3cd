/* HTTP/1.1 to a server inside a sandbox: the request out, the answer's head and framed body back (port-relay.h). */
#include "server/port-relay.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"

/* Bytes read from the inside at once; a chunk-size line longer than this is refused. */
#define READ_BLOCK (64 * 1024)
#define CHUNK_LINE_MAX 1024

enum framing { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_EOF };
enum chunk_state { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER, CH_DONE };

struct lms_port_relay {
	int fd;
	char *buf; /* bytes read and not yet used: buf[off..len) */
	size_t off, len, cap;
	unsigned status;
	char *head; /* the head's text, its lines cut in place: names and values point into it */
	const char *names[LMS_PORT_HEADERS_MAX], *values[LMS_PORT_HEADERS_MAX];
	size_t n_headers;
	enum framing framing;
	unsigned long long left; /* of the body (BODY_LENGTH) or of the chunk (CH_DATA) */
	enum chunk_state chunk;
	bool eof;
};

struct lms_port_relay *
lms_port_relay_new(int fd)
{
	struct lms_port_relay *r = xcalloc(1, sizeof(*r));
	r->fd = fd;
	r->cap = LMS_PORT_HEAD_MAX + READ_BLOCK;
	r->buf = xmalloc(r->cap);
	return r;
}

void
lms_port_relay_free(struct lms_port_relay *r)
{
	if (r == NULL)
		return;
	if (r->fd >= 0)
		close(r->fd);
	free(r->buf);
	free(r->head);
	free(r);
}

/* Waits for events on the inside's socket (and watch_fd's hang-up): 1 ready, 0 timed out, -1 error. */
static int
wait_fd(struct lms_port_relay *r, short events, int watch_fd, int timeout_ms, struct lms_error **err)
{
	struct pollfd p[2] = {{.fd = r->fd, .events = events}, {.fd = watch_fd, .events = POLLRDHUP}};
	int n;
	while ((n = poll(p, watch_fd >= 0 ? 2 : 1, timeout_ms)) < 0 && errno == EINTR)
		;
	if (n < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "wait for the server inside the sandbox");
	if (watch_fd >= 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
		return lms_error_set(err, LMS_ERR_CANCELLED, 0, "the client went away");
	return n > 0 && p[0].revents != 0 ? 1 : 0;
}

int
lms_port_relay_write(struct lms_port_relay *r, const void *data, size_t len, int timeout_ms, struct lms_error **err)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = send(r->fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return lms_error_set(err, LMS_ERR_BAD_GATEWAY, errno,
					     "send the request to the server inside the sandbox");
		int w = wait_fd(r, POLLOUT, -1, timeout_ms, err);
		if (w < 0)
			return -1;
		if (w == 0)
			return lms_error_set(err, LMS_ERR_TIMEOUT, 0,
					     "the server inside the sandbox took no request bytes for %d ms",
					     timeout_ms);
	}
	return 0;
}

/* Reads what is there into the buffer (after moving the unread bytes to its start): 1 read, 0 end of
 * the connection, -1 error (EAGAIN: nothing yet, no error set). */
static int
fill(struct lms_port_relay *r, struct lms_error **err)
{
	if (r->off > 0) {
		memmove(r->buf, r->buf + r->off, r->len - r->off);
		r->len -= r->off;
		r->off = 0;
	}
	if (r->len == r->cap)
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0,
				     "the server inside the sandbox sent an overlong line");
	for (;;) {
		ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len);
		if (n > 0) {
			r->len += (size_t)n;
			return 1;
		}
		if (n == 0) {
			r->eof = true;
			return 0;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			return -1;
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, errno,
				     "read the answer of the server inside the sandbox");
	}
}

static bool
is_token_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && strchr("\"(),/:;<=>?@[\\]{}", c) == NULL;
}

static bool
is_text(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return false;
	return true;
}

static int
bad_head(struct lms_error **err, const char *what)
{
	return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "the server inside the sandbox answered with %s", what);
}

/* The next line of text at *p (CRLF or LF ended), cut in place; NULL at the end. */
static char *
next_line(char **p)
{
	char *line = *p;
	char *nl = strchr(line, '\n');
	if (nl == NULL)
		return NULL;
	*nl = '\0';
	if (nl > line && nl[-1] == '\r')
		nl[-1] = '\0';
	*p = nl + 1;
	return line;
}

static bool
digits(const char *s, size_t n)
{
	return n > 0 && strspn(s, "0123456789") == n;
}

/* Parses the head's text (owned by r->head, lines ended by the empty one). */
static int
parse_head(struct lms_port_relay *r, unsigned flags, struct lms_error **err)
{
	char *p = r->head;
	char *line = next_line(&p);
	/* "HTTP/1.1 200 OK": the version, three digits, an optional reason. */
	if (line == NULL || strncmp(line, "HTTP/1.", 7) != 0 || (line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
	    !digits(line + 9, 3) || (line[12] != ' ' && line[12] != '\0') || !is_text(line))
		return bad_head(err, "no HTTP/1.x status line");
	r->status = (unsigned)strtoul(line + 9, NULL, 10);
	if (r->status < 100 || r->status > 599)
		return bad_head(err, "a status outside 100..599");
	r->n_headers = 0;
	const char *length = NULL;
	bool chunked = false, te = false;
	while ((line = next_line(&p)) != NULL && line[0] != '\0') {
		char *colon = strchr(line, ':');
		if (colon == NULL || colon == line)
			return bad_head(err, "a header line without a name");
		for (char *c = line; c < colon; c++)
			if (!is_token_char((unsigned char)*c))
				return bad_head(err, "a header name that is not a token (or a folded line)");
		*colon = '\0';
		char *value = colon + 1;
		value += strspn(value, " \t");
		for (size_t n = strlen(value); n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'); n--)
			value[n - 1] = '\0';
		if (!is_text(value))
			return bad_head(err, "control characters in a header");
		if (r->n_headers == LMS_PORT_HEADERS_MAX)
			return bad_head(err, "more than 100 headers");
		r->names[r->n_headers] = line;
		r->values[r->n_headers++] = value;
		if (strcasecmp(line, "Content-Length") == 0) {
			/* Two different lengths would let the inside smuggle a second answer: refused. */
			if (!digits(value, strlen(value)) || strlen(value) > 18 ||
			    (length && strcmp(length, value) != 0))
				return bad_head(err, "an invalid Content-Length");
			length = value;
		} else if (strcasecmp(line, "Transfer-Encoding") == 0) {
			te = true;
			size_t n = strlen(value);
			chunked = n >= 7 && strcasecmp(value + n - 7, "chunked") == 0;
		}
	}
	if ((flags & LMS_PORT_NO_BODY) || r->status < 200 || r->status == 204 || r->status == 304)
		r->framing = BODY_NONE;
	else if (te && !chunked)
		r->framing = BODY_EOF; /* RFC 9112 6.3: a coding other than chunked last ends with the connection */
	else if (te)
		r->framing = BODY_CHUNKED, r->chunk = CH_SIZE;
	else if (length)
		r->framing = BODY_LENGTH, r->left = strtoull(length, NULL, 10);
	else
		r->framing = BODY_EOF;
	return 0;
}

/* Where the head ends in the unread bytes (past its empty line), or 0. */
static size_t
head_end(const struct lms_port_relay *r)
{
	const char *s = r->buf + r->off;
	size_t n = r->len - r->off;
	for (size_t i = 0; i + 1 < n; i++)
		if (s[i] == '\n' && (s[i + 1] == '\n' || (s[i + 1] == '\r' && i + 2 < n && s[i + 2] == '\n')))
			return i + (s[i + 1] == '\n' ? 2 : 3);
	return 0;
}

int
lms_port_relay_read_head(struct lms_port_relay *r, unsigned flags, int timeout_ms, struct lms_error **err)
{
	double deadline = lms_monotonic_ms() + timeout_ms;
	for (;;) {
		size_t end = head_end(r);
		if (end == 0 && r->len - r->off > LMS_PORT_HEAD_MAX)
			return bad_head(err, "a head larger than 64 KiB");
		if (end > LMS_PORT_HEAD_MAX)
			return bad_head(err, "a head larger than 64 KiB");
		if (end > 0) {
			free(r->head);
			r->head = xmalloc(end + 1);
			memcpy(r->head, r->buf + r->off, end);
			r->head[end] = '\0';
			r->off += end;
			if (memchr(r->head, '\0', end) != NULL)
				return bad_head(err, "a NUL byte in its head");
			if (parse_head(r, flags, err) < 0)
				return -1;
			if (r->status >= 100 && r->status < 200 && r->status != 101)
				continue; /* an interim answer (103 Early Hints): the real one follows */
			if (r->status == 101 && !(flags & LMS_PORT_UPGRADE))
				return bad_head(err, "101 Switching Protocols, which was not asked for");
			return 0;
		}
		if (r->eof)
			return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0,
					     "the server inside the sandbox closed the connection without an answer");
		int f = fill(r, err);
		if (f >= 0)
			continue;
		if (errno != EAGAIN)
			return -1;
		double left = deadline - lms_monotonic_ms();
		int w = left > 0 ? wait_fd(r, POLLIN, -1, (int)left + 1, err) : 0;
		if (w < 0)
			return -1;
		if (w == 0 && lms_monotonic_ms() >= deadline)
			return lms_error_set(err, LMS_ERR_TIMEOUT, 0,
					     "the server inside the sandbox sent no answer's headers within %d ms",
					     timeout_ms);
	}
}

unsigned
lms_port_relay_status(const struct lms_port_relay *r)
{
	return r->status;
}

size_t
lms_port_relay_header_count(const struct lms_port_relay *r)
{
	return r->n_headers;
}

void
lms_port_relay_header(const struct lms_port_relay *r, size_t i, const char **name, const char **value)
{
	*name = r->names[i];
	*value = r->values[i];
}

static size_t
take(struct lms_port_relay *r, char *buf, size_t max, unsigned long long limit)
{
	size_t n = r->len - r->off;
	if (n > max)
		n = max;
	if (n > limit)
		n = (size_t)limit;
	memcpy(buf, r->buf + r->off, n);
	r->off += n;
	return n;
}

/* One line of the chunked framing in the unread bytes: its length past the LF, 0 when not all here. */
static size_t
line_len(const struct lms_port_relay *r)
{
	const char *nl = memchr(r->buf + r->off, '\n', r->len - r->off);
	return nl ? (size_t)(nl - (r->buf + r->off)) + 1 : 0;
}

/* Decodes what the unread bytes hold of the chunked body: bytes of data into buf, or 0 (more needed,
 * or the end: r->chunk == CH_DONE); -1 on a framing error. */
static ssize_t
dechunk(struct lms_port_relay *r, char *buf, size_t max, struct lms_error **err)
{
	while (r->off < r->len) {
		size_t n = 0;
		switch (r->chunk) {
		case CH_SIZE:
			if ((n = line_len(r)) == 0) {
				if (r->len - r->off > CHUNK_LINE_MAX)
					return bad_head(err, "an overlong chunk size line");
				return 0;
			}
			{
				const char *s = r->buf + r->off;
				size_t hex = strspn(s, "0123456789abcdefABCDEF");
				if (hex == 0 || hex > 15 || (s[hex] != ';' && s[hex] != '\r' && s[hex] != '\n'))
					return bad_head(err, "a malformed chunk size");
				r->left = strtoull(s, NULL, 16);
			}
			r->off += n;
			r->chunk = r->left ? CH_DATA : CH_TRAILER;
			break;
		case CH_DATA:
			n = take(r, buf, max, r->left);
			r->left -= n;
			if (r->left == 0)
				r->chunk = CH_DATA_END;
			return (ssize_t)n;
		case CH_DATA_END:
			if ((n = line_len(r)) == 0)
				return r->len - r->off > 2 ? bad_head(err, "a chunk longer than its size") : 0;
			if (n > 2 || (n == 2 && r->buf[r->off] != '\r'))
				return bad_head(err, "a chunk longer than its size");
			r->off += n;
			r->chunk = CH_SIZE;
			break;
		case CH_TRAILER:
			/* Trailer fields are dropped (they are the connection's): lines until the empty one. */
			if ((n = line_len(r)) == 0)
				return r->len - r->off > CHUNK_LINE_MAX ? bad_head(err, "an overlong trailer line") : 0;
			if (n == 1 || (n == 2 && r->buf[r->off] == '\r'))
				r->chunk = CH_DONE;
			r->off += n;
			if (r->chunk == CH_DONE)
				return 0;
			break;
		case CH_DONE:
			return 0;
		}
	}
	return 0;
}

ssize_t
lms_port_relay_body(struct lms_port_relay *r, char *buf, size_t max, int watch_fd, int wait_ms, struct lms_error **err)
{
	for (;;) {
		ssize_t n = 0;
		switch (r->framing) {
		case BODY_NONE:
			return 0;
		case BODY_LENGTH:
			if (r->left == 0)
				return 0;
			n = (ssize_t)take(r, buf, max, r->left);
			r->left -= (unsigned long long)n;
			break;
		case BODY_EOF:
			n = (ssize_t)take(r, buf, max, (unsigned long long)-1);
			if (n == 0 && r->eof)
				return 0;
			break;
		case BODY_CHUNKED:
			n = dechunk(r, buf, max, err);
			if (n < 0)
				return -1;
			if (n == 0 && r->chunk == CH_DONE)
				return 0;
			break;
		}
		if (n > 0)
			return n;
		if (r->eof)
			return lms_error_set(
			    err, LMS_ERR_BAD_GATEWAY, 0,
			    "the server inside the sandbox closed the connection before the end of its "
			    "answer");
		int f = fill(r, err);
		if (f >= 0)
			continue;
		if (errno != EAGAIN)
			return -1;
		int w = wait_fd(r, POLLIN, watch_fd, wait_ms, err);
		if (w < 0)
			return -1;
		if (w == 0)
			return LMS_PORT_AGAIN;
	}
}

/* Sends all of data on fd (non-blocking or not), waiting at most timeout_ms for each part: false when
 * it cannot (closed, or it took nothing in time). */
static bool
send_all(int fd, const char *data, size_t len, int timeout_ms)
{
	while (len > 0) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return false;
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int w;
		while ((w = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
			;
		if (w <= 0)
			return false;
	}
	return true;
}

void
lms_port_relay_bridge(struct lms_port_relay *r, int client, const char *extra, size_t extra_len, int timeout_ms,
		      const atomic_bool *stop, int tick_ms)
{
	/* What each side sent before the switch goes first. */
	if (!send_all(r->fd, extra, extra_len, timeout_ms) ||
	    !send_all(client, r->buf + r->off, r->len - r->off, timeout_ms))
		return;
	r->off = r->len = 0;
	int fds[2] = {client, r->fd};
	bool open[2] = {true, true}; /* each side still sends */
	while ((open[0] || open[1]) && !atomic_load(stop)) {
		struct pollfd p[2] = {{.fd = open[0] ? client : -1, .events = POLLIN},
				      {.fd = open[1] ? r->fd : -1, .events = POLLIN}};
		int n = poll(p, 2, tick_ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return;
		for (int i = 0; i < 2; i++) {
			if (!open[i] || p[i].revents == 0)
				continue;
			ssize_t got = recv(fds[i], r->buf, r->cap, MSG_DONTWAIT);
			if (got < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (got <= 0) {
				/* One side is done sending: the other hears it, and may still answer. */
				open[i] = false;
				if (shutdown(fds[1 - i], SHUT_WR) < 0 && errno != ENOTCONN)
					return;
				continue;
			}
			if (!send_all(fds[1 - i], r->buf, (size_t)got, timeout_ms))
				return;
		}
	}
}

bool
lms_http_hop_by_hop(const char *name, const char *connection)
{
	static const char *const own[] = {"Connection",		 "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
					  "Proxy-Authorization", "TE",	       "Trailer",	   "Trailers",
					  "Transfer-Encoding",	 "Upgrade"};
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (strcasecmp(name, own[i]) == 0)
			return true;
	size_t len = strlen(name);
	for (const char *p = connection; p && *p;) {
		p += strspn(p, " \t,");
		size_t n = strcspn(p, " \t,");
		if (n == len && strncasecmp(p, name, n) == 0)
			return true;
		p += n;
	}
	return false;
}
