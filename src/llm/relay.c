/*
 * One HTTP exchange with a backend over libcurl, read as it arrives. The calling thread drives the
 * transfer (curl_multi_poll) and watches the HTTP client's socket at the same time, so a client that
 * goes away aborts the backend request at once.
 */
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "llm/backend.h"
#include "llm/curl-load.h"

#define MAX_BODY (64u << 20)

atomic_bool lms_relay_stopping;

struct lms_relay {
	const struct lms_curl_api *curl;
	CURLM *multi;
	CURL *easy;
	struct curl_slist *headers;
	char *url;
	char *body; /* the request's, copied: libcurl reads it while the transfer runs */
	const struct lms_backend *backend;
	struct lms_buf buf;
	size_t off;
	bool headers_done, done, client_gone, timed_out, too_large;
	CURLcode result;
	long status;
	char *content_type;
	int client_fd;
	double last_activity, idle_ms, first_byte_ms;
	double started_ms, headers_ms;
	char error[CURL_ERROR_SIZE];
};

static size_t
on_header(char *data, size_t size, size_t n, void *userdata)
{
	struct lms_relay *r = userdata;
	r->last_activity = lms_monotonic_ms();
	/* The blank line ends a header block; a 1xx block is followed by another. */
	if (size * n <= 2 && (data[0] == '\r' || data[0] == '\n')) {
		long status = 0;
		r->curl->easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
		if (status >= 200) {
			r->status = status;
			r->headers_done = true;
			r->headers_ms = lms_monotonic_ms();
		}
	}
	return size * n;
}

static size_t
on_body(char *data, size_t size, size_t n, void *userdata)
{
	struct lms_relay *r = userdata;
	r->last_activity = lms_monotonic_ms();
	r->headers_done = true;
	if (r->buf.len - r->off + size * n > MAX_BODY) {
		r->too_large = true;
		return 0; /* aborts: a backend may not flood us */
	}
	lms_buf_append(&r->buf, data, size * n);
	return size * n;
}

int
lms_relay_start(struct lms_backends *bs, struct lms_backend *b, const char *method, const char *path, const char *body,
		size_t len, int client_fd, struct lms_relay **out, struct lms_error **err)
{
	const struct lms_curl_api *curl = lms_curl(err);
	if (curl == NULL)
		return lms_error_prefix(err, "backend %s", b->name);
	struct lms_relay *r = xcalloc(1, sizeof(*r));
	r->curl = curl;
	r->backend = b;
	r->client_fd = client_fd;
	r->idle_ms = (double)bs->timeout_ms;
	r->first_byte_ms = (double)bs->first_byte_timeout_ms;
	r->url = xasprintf("%s%s", b->url, path);
	r->multi = r->curl->multi_init();
	r->easy = r->curl->easy_init();
	if (r->multi == NULL || r->easy == NULL) {
		lms_relay_free(r);
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "backend %s: cannot start a libcurl transfer", b->name);
	}
	r->headers = r->curl->slist_append(r->headers, "Content-Type: application/json");
	r->headers = r->curl->slist_append(r->headers, "Expect:");
	CURL *e = r->easy;
	CURLcode c = CURLE_OK;
	const char *failed = NULL; /* the option that libcurl refused */
#define SET(opt, val)                                                                                                  \
	do {                                                                                                           \
		if (c == CURLE_OK && (c = curl->easy_setopt(e, opt, val)) != CURLE_OK)                                 \
			failed = #opt;                                                                                 \
	} while (0)
	SET(CURLOPT_URL, r->url);
	SET(CURLOPT_CUSTOMREQUEST, method);
	SET(CURLOPT_HTTPHEADER, r->headers);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, r);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, r);
	SET(CURLOPT_ERRORBUFFER, r->error);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)bs->connect_timeout_ms);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_ACCEPT_ENCODING, NULL);
	if (body != NULL) {
		r->body = xmalloc(len ? len : 1);
		memcpy(r->body, body, len);
		SET(CURLOPT_POSTFIELDS, r->body);
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
#undef SET
	if (c != CURLE_OK) {
		/* The message first: it reads curl's table, and lms_relay_free frees r. */
		lms_error_set(err, LMS_ERR_INTERNAL, 0, "backend %s: set %s: %s", b->name, failed,
			      curl->easy_strerror(c));
		lms_relay_free(r);
		return -1;
	}
	CURLMcode mc = curl->multi_add_handle(r->multi, e);
	if (mc != CURLM_OK) {
		lms_relay_free(r);
		return lms_error_set(err, LMS_ERR_INTERNAL, 0,
				     "backend %s: add the transfer to libcurl's multi handle: CURLMcode %d", b->name,
				     (int)mc);
	}
	r->last_activity = r->started_ms = lms_monotonic_ms();
	*out = r;
	return 0;
}

/* 1: the client closed; 0: nothing to say; -1: it sent more (a pipelined request), which only its
 * next turn will read: stop watching, or every poll would wake at once. */
static int
client_state(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0)
		return -1;
	return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ? 1 : 0;
}

/* Drives the transfer until `ready` holds, it ends, the client goes or the backend falls silent. */
static void
pump(struct lms_relay *r, bool (*ready)(const struct lms_relay *))
{
	while (!r->done && !ready(r)) {
		int running = 0;
		r->curl->multi_perform(r->multi, &running);
		CURLMsg *m;
		int left;
		while ((m = r->curl->multi_info_read(r->multi, &left)) != NULL)
			if (m->msg == CURLMSG_DONE) {
				r->done = true;
				r->result = m->data.result;
			}
		if (r->done || ready(r))
			break;
		if (atomic_load(&lms_relay_stopping)) {
			r->client_gone = true; /* the server is stopping: end like a client that left */
			r->done = true;
			break;
		}
		/* Until the headers, the first-byte limit; then the silence allowed between two bytes. */
		double limit = r->headers_done ? r->idle_ms : r->first_byte_ms;
		double idle = lms_monotonic_ms() - r->last_activity;
		if (idle >= limit) {
			r->timed_out = true;
			r->done = true;
			break;
		}
		int wait = (int)(limit - idle) + 1;
		struct curl_waitfd extra = {.fd = r->client_fd, .events = CURL_WAIT_POLLIN};
		r->curl->multi_poll(r->multi, r->client_fd >= 0 ? &extra : NULL, r->client_fd >= 0 ? 1 : 0,
				    wait < 1000 ? wait : 1000, NULL);
		if (r->client_fd >= 0 && (extra.revents & CURL_WAIT_POLLIN)) {
			int state = client_state(r->client_fd);
			if (state < 0)
				r->client_fd = -1;
			else if (state > 0) {
				r->client_gone = true;
				r->done = true;
			}
		}
	}
}

static bool
have_headers(const struct lms_relay *r)
{
	return r->headers_done;
}

static bool
have_data(const struct lms_relay *r)
{
	return r->buf.len > r->off;
}

/* The error of a transfer that gave nothing usable, by kind: cancelled, timed out, unreachable, bad. */
static int
transfer_error(struct lms_relay *r, struct lms_error **err)
{
	const struct lms_backend *b = r->backend;
	if (r->client_gone)
		return lms_error_set(err, LMS_ERR_CANCELLED, 0, "backend %s (%s): the request was cancelled", b->name,
				     b->url);
	if (r->timed_out)
		return lms_error_set(err, LMS_ERR_TIMEOUT, 0,
				     "backend %s (%s) did not answer within %.0f ms: is the model loading or stuck? "
				     "(--backend-first-byte-timeout-ms, --backend-timeout-ms)",
				     b->name, b->url, r->headers_done ? r->idle_ms : r->first_byte_ms);
	if (r->too_large)
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "backend %s (%s) answered badly: more than %u MiB",
				     b->name, b->url, MAX_BODY >> 20);
	curl_off_t connected_us = 0;
	r->curl->easy_getinfo(r->easy, CURLINFO_CONNECT_TIME_T, &connected_us);
	bool unreachable = r->result == CURLE_COULDNT_CONNECT || r->result == CURLE_COULDNT_RESOLVE_HOST ||
			   (r->result == CURLE_OPERATION_TIMEDOUT && connected_us == 0);
	return lms_error_set(err, unreachable ? LMS_ERR_UNREACHABLE : LMS_ERR_BAD_GATEWAY, 0, "backend %s (%s) %s: %s",
			     b->name, b->url, unreachable ? "is unreachable: is it running?" : "answered badly",
			     r->error[0] ? r->error : r->curl->easy_strerror(r->result));
}

int
lms_relay_headers(struct lms_relay *r, long *status, const char **content_type, struct lms_error **err)
{
	pump(r, have_headers);
	if (!r->headers_done || r->client_gone || r->timed_out)
		return transfer_error(r, err);
	char *ct = NULL;
	r->curl->easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &ct);
	free(r->content_type);
	r->content_type = xstrdup(ct ? ct : "");
	*status = r->status;
	*content_type = r->content_type;
	return 0;
}

ssize_t
lms_relay_read(struct lms_relay *r, char *buf, size_t max)
{
	pump(r, have_data);
	if (r->client_gone)
		return LMS_RELAY_CLIENT_GONE;
	size_t n = r->buf.len - r->off;
	if (n > max)
		n = max;
	memcpy(buf, r->buf.data + r->off, n);
	r->off += n;
	if (r->off == r->buf.len) {
		lms_buf_clear(&r->buf);
		r->off = 0;
	}
	return (ssize_t)n;
}

static bool
never(const struct lms_relay *r)
{
	(void)r;
	return false;
}

int
lms_relay_body(struct lms_relay *r, long *status, struct lms_buf *out, struct lms_error **err)
{
	pump(r, never);
	if (!r->headers_done || r->client_gone || r->timed_out || r->result != CURLE_OK)
		return transfer_error(r, err);
	*status = r->status;
	lms_buf_append(out, r->buf.data ? r->buf.data + r->off : "", r->buf.len - r->off);
	return 0;
}

int
lms_relay_end(struct lms_relay *r, struct lms_error **err)
{
	if (r->client_gone || r->timed_out || (r->done && r->result != CURLE_OK))
		return transfer_error(r, err);
	if (!r->done || r->buf.len > r->off)
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "backend %s: the answer was not read to its end",
				     r->backend->name);
	return 0;
}

double
lms_relay_seconds(const struct lms_relay *r)
{
	return ((r->headers_ms > 0 ? r->headers_ms : lms_monotonic_ms()) - r->started_ms) / 1e3;
}

void
lms_relay_set_timeout(struct lms_relay *r, uint64_t ms)
{
	r->idle_ms = r->first_byte_ms = (double)ms;
}

void
lms_relay_free(struct lms_relay *r)
{
	if (r == NULL)
		return;
	if (r->multi && r->easy)
		r->curl->multi_remove_handle(r->multi, r->easy);
	if (r->easy)
		r->curl->easy_cleanup(r->easy); /* closes the connection: the backend sees its client leave */
	if (r->multi)
		r->curl->multi_cleanup(r->multi);
	r->curl->slist_free_all(r->headers);
	lms_buf_clear(&r->buf);
	free(r->content_type);
	free(r->url);
	free(r->body);
	free(r);
}
