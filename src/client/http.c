#include "client/http.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "core/alloc.h"
#include "core/fdio.h"
#include "core/utf8.h"

#define DEFAULT_URL "http://127.0.0.1:8000"
#define MAX_TOKEN (64u << 10)
#define MAX_ERROR_BODY (1u << 20)
#define DEFAULT_MAX_BODY (16u << 20)
#define CONNECT_TIMEOUT_S 10L

static const char start_hint[] =
    "is it running? Start it with `lm-sandbox serve` (or `make run` in its source tree), or point --url or "
    "LM_SANDBOX_URL at it";

static char *
trimmed(const char *s, size_t len)
{
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	while (len > 0 && isspace((unsigned char)*s)) {
		s++;
		len--;
	}
	return xstrndup(s, len);
}

static int
read_token_file(struct lms_client *c, const char *path, struct lms_error **err)
{
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return lms_error_set(err, LMS_ERR_INVALID, errno, "--token-file: open %s", path);
	size_t len;
	_cleanup_free_ char *text = lms_fd_read_whole(fd, MAX_TOKEN, &len, path, err);
	if (text == NULL)
		return lms_error_prefix(err, "--token-file");
	c->token = trimmed(text, len);
	c->token_from = path;
	if (c->token[0] == '\0' || strpbrk(c->token, "\r\n") != NULL)
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "--token-file %s: holds no token (one line, the daemon's own token file)", path);
	return 0;
}

int
lms_client_init(struct lms_client *c, const char *url, const char *token_file, struct lms_error **err)
{
	memset(c, 0, sizeof(*c));
	const char *from = "--url";
	if (url == NULL && (url = getenv("LM_SANDBOX_URL")) != NULL && url[0] != '\0')
		from = "LM_SANDBOX_URL";
	else if (url == NULL || url[0] == '\0')
		url = DEFAULT_URL, from = NULL;
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "%s: '%s' is not an http:// or https:// URL", from, url);
	size_t len = strlen(url);
	while (len > 0 && url[len - 1] == '/')
		len--;
	c->url = xstrndup(url, len);
	if (token_file != NULL)
		return read_token_file(c, token_file, err);
	const char *env = getenv("LM_SANDBOX_API_TOKEN");
	if (env != NULL && env[0] != '\0') {
		c->token = trimmed(env, strlen(env));
		c->token_from = "LM_SANDBOX_API_TOKEN";
	}
	return 0;
}

void
lms_client_free(struct lms_client *c)
{
	if (c->curl != NULL)
		curl_easy_cleanup(c->curl);
	free(c->url);
	if (c->token != NULL) {
		/* Not left for a core dump to show. */
		explicit_bzero(c->token, strlen(c->token));
		free(c->token);
	}
	memset(c, 0, sizeof(*c));
}

void
lms_client_response_clear(struct lms_client_response *resp)
{
	free(resp->content_type);
	lms_buf_clear(&resp->body);
	memset(resp, 0, sizeof(*resp));
}

char *
lms_client_escape(const char *s, bool keep_slash)
{
	struct lms_buf b = {0};
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (isalnum(ch) || strchr("-._~", ch) != NULL || (keep_slash && ch == '/')) {
			lms_buf_append(&b, s, 1);
		} else {
			char hex[4];
			snprintf(hex, sizeof(hex), "%%%02X", ch);
			lms_buf_append(&b, hex, 3);
		}
	}
	lms_buf_append(&b, "", 0);
	return lms_buf_steal(&b, NULL);
}

/* ---- one call ---- */

struct call {
	CURL *curl;
	const struct lms_client_request *rq;
	struct lms_client_response *resp;
	bool have_headers;
	struct lms_error *err; /* a callback's own failure */
};

static bool
success(long status)
{
	return status >= 200 && status < 300;
}

static void
take_headers(struct call *x)
{
	if (x->have_headers)
		return;
	x->have_headers = true;
	curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &x->resp->status);
	char *type = NULL;
	if (curl_easy_getinfo(x->curl, CURLINFO_CONTENT_TYPE, &type) == CURLE_OK && type != NULL) {
		size_t n = strcspn(type, "; \t");
		x->resp->content_type = xstrndup(type, n);
		for (char *p = x->resp->content_type; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	}
	curl_off_t length = -1;
	if (curl_easy_getinfo(x->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) != CURLE_OK)
		length = -1;
	x->resp->content_length = length;
}

static size_t
on_write(char *data, size_t size, size_t n, void *userdata)
{
	struct call *x = userdata;
	size_t len = size * n;
	take_headers(x);
	struct lms_client_response *resp = x->resp;
	if (success(resp->status) && x->rq->on_data != NULL) {
		int r = x->rq->on_data(x->rq->userdata, resp, data, len, &x->err);
		if (r == 0)
			return len;
		if (r > 0)
			resp->stopped = true;
		else if (x->err == NULL)
			lms_error_set(&x->err, LMS_ERR_INTERNAL, 0, "receiving the answer failed");
		return 0; /* curl stops the transfer */
	}
	if (!success(resp->status)) {
		/* An error's body is only read for its message: the rest is dropped. */
		size_t room = MAX_ERROR_BODY - resp->body.len;
		lms_buf_append(&resp->body, data, len < room ? len : room);
		return len;
	}
	size_t max = x->rq->max_body ? x->rq->max_body : DEFAULT_MAX_BODY;
	if (resp->body.len + len > max) {
		lms_error_set(&x->err, LMS_ERR_INTERNAL, 0, "the daemon's answer is larger than %zu bytes", max);
		return 0;
	}
	lms_buf_append(&resp->body, data, len);
	return len;
}

static size_t
on_read(char *buf, size_t size, size_t n, void *userdata)
{
	struct call *x = userdata;
	for (;;) {
		ssize_t r = read(x->rq->body_fd, buf, size * n);
		if (r >= 0)
			return (size_t)r;
		if (errno == EINTR)
			continue;
		lms_error_set(&x->err, LMS_ERR_INTERNAL, errno, "reading what to send");
		return CURL_READFUNC_ABORT;
	}
}

static int
on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	struct call *x = userdata;
	if (!x->rq->cancel(x->rq->cancel_data))
		return 0;
	if (x->err == NULL)
		lms_error_set(&x->err, LMS_ERR_CANCELLED, 0, "the call to %s was cancelled", x->rq->path);
	return 1; /* curl stops the transfer and closes its connection */
}

static int
transport_error(const struct lms_client *c, CURLcode code, const char *detail, struct lms_error **err)
{
	const char *why = detail[0] ? detail : curl_easy_strerror(code);
	if (code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_OPERATION_TIMEDOUT)
		return lms_error_set(err, LMS_ERR_UNREACHABLE, 0, "cannot reach the lm-sandbox daemon at %s (%s): %s",
				     c->url, why, start_hint);
	if (code == CURLE_GOT_NOTHING || code == CURLE_RECV_ERROR || code == CURLE_SEND_ERROR ||
	    code == CURLE_PARTIAL_FILE)
		return lms_error_set(
		    err, LMS_ERR_UNREACHABLE, 0,
		    "the lm-sandbox daemon at %s closed the connection before its answer was whole (%s)", c->url, why);
	return lms_error_set(err, LMS_ERR_INTERNAL, 0, "talking to the lm-sandbox daemon at %s: %s", c->url, why);
}

static struct curl_slist *
add_header(struct curl_slist *list, const char *name, const char *value)
{
	_cleanup_free_ char *line = xasprintf("%s: %s", name, value);
	struct curl_slist *more = curl_slist_append(list, line);
	if (more == NULL)
		abort(); /* out of memory, as xmalloc */
	return more;
}

static int
setup(struct lms_client *c, const struct lms_client_request *rq, struct call *x, const char *json_body,
      struct curl_slist **headers, char *errbuf)
{
	CURL *h = c->curl;
	_cleanup_free_ char *url = xasprintf("%s%s", c->url, rq->path);
	struct curl_slist *l = add_header(NULL, "Expect", ""); /* no 100-continue round trip before a body */
	if (c->token != NULL) {
		_cleanup_free_ char *bearer = xasprintf("Bearer %s", c->token);
		l = add_header(l, "Authorization", bearer);
		explicit_bzero(bearer, strlen(bearer));
	}
	const char *type = json_body != NULL ? "application/json" : rq->content_type;
	if (type != NULL)
		l = add_header(l, "Content-Type", type);
	if (rq->accept != NULL)
		l = add_header(l, "Accept", rq->accept);
	for (const char *const *more = rq->headers; more != NULL && *more != NULL; more++)
		if ((l = curl_slist_append(l, *more)) == NULL)
			abort(); /* out of memory, as xmalloc */
	*headers = l;

	bool ok = curl_easy_setopt(h, CURLOPT_URL, url) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_HTTPHEADER, l) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S) == CURLE_OK &&
		  /* Never through a proxy of the environment: it would see the token, and loopback needs none. */
		  curl_easy_setopt(h, CURLOPT_PROXY, "") == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_WRITEDATA, x) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_USERAGENT, "lm-sandbox-client") == CURLE_OK;
	if (rq->cancel != NULL)
		ok = ok && curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress) == CURLE_OK &&
		     curl_easy_setopt(h, CURLOPT_XFERINFODATA, x) == CURLE_OK &&
		     curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L) == CURLE_OK;
	const char *body = json_body != NULL ? json_body : rq->body;
	size_t body_len = json_body != NULL ? strlen(json_body) : rq->body_len;
	if (strcmp(rq->method, "PUT") == 0 || (strcmp(rq->method, "POST") == 0 && rq->body_fd >= 0)) {
		ok = ok && curl_easy_setopt(h, CURLOPT_UPLOAD, 1L) == CURLE_OK &&
		     curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read) == CURLE_OK &&
		     curl_easy_setopt(h, CURLOPT_READDATA, x) == CURLE_OK &&
		     curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body_size) == CURLE_OK;
		if (strcmp(rq->method, "POST") == 0)
			ok = ok && curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "POST") == CURLE_OK;
	} else if (strcmp(rq->method, "POST") == 0) {
		ok = ok && curl_easy_setopt(h, CURLOPT_POST, 1L) == CURLE_OK &&
		     curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len) == CURLE_OK &&
		     curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "") == CURLE_OK;
	} else if (strcmp(rq->method, "GET") != 0) {
		ok = ok && curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method) == CURLE_OK;
	}
	return ok ? 0 : -1;
}

int
lms_client_call(struct lms_client *c, const struct lms_client_request *rq, struct lms_client_response *resp,
		struct lms_error **err)
{
	memset(resp, 0, sizeof(*resp));
	resp->content_length = -1;
	if (c->curl == NULL && (c->curl = curl_easy_init()) == NULL)
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "curl_easy_init failed (out of memory?)");
	curl_easy_reset(c->curl); /* the options of the last call go, its kept-alive connection stays */
	struct call x = {.curl = c->curl, .rq = rq, .resp = resp};
	_cleanup_free_ char *json_body = rq->json != NULL ? json_dumps(rq->json, JSON_COMPACT) : NULL;
	if (rq->json != NULL && json_body == NULL)
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "cannot encode the request's JSON");
	struct curl_slist *headers = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	int r = setup(c, rq, &x, json_body, &headers, errbuf);
	CURLcode code = r == 0 ? curl_easy_perform(c->curl) : CURLE_FAILED_INIT;
	curl_slist_free_all(headers);
	/* The header list is freed: the handle must not point at it. */
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
	if (code == CURLE_OK || (code == CURLE_WRITE_ERROR && resp->stopped)) {
		take_headers(&x); /* an answer without a body never reached on_write */
		return 0;
	}
	if (x.err != NULL) {
		if (err != NULL && *err == NULL)
			*err = x.err;
		else
			lms_error_free(x.err);
		return -1;
	}
	if (r < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "setting up the request to %s failed", c->url);
	return transport_error(c, code, errbuf, err);
}

json_t *
lms_client_json(const struct lms_client_response *resp, struct lms_error **err)
{
	json_error_t jerr;
	json_t *v = json_loadb(resp->body.data ? resp->body.data : "", resp->body.len, JSON_ALLOW_NUL, &jerr);
	if (v == NULL)
		lms_error_set(err, LMS_ERR_INTERNAL, 0, "the daemon's answer (HTTP %ld) is not JSON: %s", resp->status,
			      jerr.text);
	return v;
}

static const char *
error_field(json_t *body, const char *name)
{
	const char *s = json_string_value(json_object_get(json_object_get(body, "error"), name));
	return s != NULL ? s : "";
}

const char *
lms_client_error_code(const struct lms_client_response *resp, char *buf, size_t size)
{
	json_t *body = json_loadb(resp->body.data ? resp->body.data : "", resp->body.len, 0, NULL);
	snprintf(buf, size, "%s", error_field(body, "code"));
	json_decref(body);
	return buf;
}

static enum lms_error_kind
kind_of(long status)
{
	switch (status) {
	case 400:
	case 413:
	case 415:
		return LMS_ERR_INVALID;
	case 401:
	case 403:
		return LMS_ERR_FORBIDDEN;
	case 404:
		return LMS_ERR_NOT_FOUND;
	case 429:
		return LMS_ERR_BUSY;
	default:
		return LMS_ERR_INTERNAL;
	}
}

int
lms_client_api_error(const struct lms_client *c, const struct lms_client_response *resp, const char *what,
		     struct lms_error **err)
{
	json_t *body = json_loadb(resp->body.data ? resp->body.data : "", resp->body.len, 0, NULL);
	const char *message = error_field(body, "message");
	const char *code = error_field(body, "code");
	const char *reason = error_field(body, "reason");
	enum lms_error_kind kind = kind_of(resp->status);
	int r;
	if (resp->status == 401 && c->token == NULL)
		r = lms_error_set(
		    err, kind, 0,
		    "%s: the daemon at %s wants a token: set LM_SANDBOX_API_TOKEN or pass --token-file FILE "
		    "(the token it was started with)",
		    what, c->url);
	else if (resp->status == 401)
		r = lms_error_set(err, kind, 0,
				  "%s: the daemon at %s refused the token from %s: it is not the one the daemon was "
				  "started with (its --token-file or LM_SANDBOX_API_TOKEN)",
				  what, c->url, c->token_from);
	else if (strcmp(code, "sandbox_not_found") == 0)
		r = lms_error_set(err, kind, 0, "%s: no such sandbox%s", what,
				  strcmp(reason, "deleted") == 0 ? " (it was removed)"
				  : strcmp(reason, "expired") == 0
				      ? " (it expired: no call within its ttl; give the next "
					"one a longer --ttl)"
				  : strcmp(reason, "failed") == 0 ? " (it failed and was removed)"
								  : "; `lm-sandbox sandbox ls` lists those there are");
	else if (message[0] != '\0')
		r = lms_error_set(err, kind, 0, "%s: %s (HTTP %ld%s%s)", what, message, resp->status,
				  code[0] ? ", " : "", code);
	else {
		/* Not the API's error shape: a proxy or another server answered. Show its first bytes, cleaned. */
		size_t n = resp->body.len < 200 ? resp->body.len : 200, clean_len;
		_cleanup_free_ char *clean = lms_utf8_sanitize(resp->body.data ? resp->body.data : "", n, &clean_len);
		for (char *p = clean; *p; p++)
			if ((unsigned char)*p < 0x20)
				*p = ' ';
		r = lms_error_set(err, kind, 0, "%s: %s answered HTTP %ld, not as lm-sandbox does: '%s'", what, c->url,
				  resp->status, clean);
	}
	json_decref(body);
	return r;
}
