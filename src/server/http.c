/*
 * The HTTP plumbing of `lm-sandbox serve`: the listening socket, the request context, the body, auth,
 * the one error shape, X-Request-Id, one JSON log line per request, and the daemon's life
 * (start, SIGTERM, shutdown). Routes live in routes-*.c and are listed in router.c.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api/exec-json.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "llm/backend.h"
#include "llm/curl-load.h"
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
	case LMS_ERR_CANCELLED:
		return 499; /* never sent (the client has gone): what nginx logs for a client that closed */
	}
	return 500;
}

enum MHD_Result
lms_reply(struct lms_request *req, unsigned status, struct MHD_Response *resp)
{
	MHD_add_response_header(resp, "X-Request-Id", req->id);
	enum MHD_Result r = MHD_queue_response(req->conn, status, resp);
	MHD_destroy_response(resp);
	req->status = status;
	req->replied = true;
	return r;
}

static enum MHD_Result
reply_text(struct lms_request *req, unsigned status, const char *type, char *text, size_t len)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	return lms_reply(req, status, resp);
}

enum MHD_Result
lms_reply_json(struct lms_request *req, unsigned status, json_t *body)
{
	char *text = json_dumps(body, LMS_JSON_FLAGS);
	json_decref(body);
	if (text == NULL)
		return lms_reply_error(req, 500, "server_error", "internal_error", "could not encode the response");
	size_t len = strlen(text);
	text = xrealloc(text, len + 2);
	text[len++] = '\n';
	return reply_text(req, status, "application/json", text, len);
}

enum MHD_Result
lms_reply_error(struct lms_request *req, unsigned status, const char *type, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *message = xvasprintf(fmt, ap);
	va_end(ap);
	json_t *body = json_pack("{s:{s:s, s:s, s:s}}", "error", "message", message, "type", type, "code", code);
	return lms_reply_json(req, status, body);
}

enum MHD_Result
lms_reply_lms_error(struct lms_request *req, const struct lms_error *e)
{
	return lms_reply_json(req, lms_error_status(e), lms_error_json(e));
}

enum MHD_Result
lms_reply_event_stream(struct lms_request *req, MHD_ContentReaderCallback reader, void *cls,
		       MHD_ContentReaderFreeCallback free_cls)
{
	struct MHD_Response *resp =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, reader, cls, free_cls);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	/* Proxies such as nginx must not hold the events back. */
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	return lms_reply(req, 200, resp);
}

int
lms_request_socket(const struct lms_request *req)
{
	const union MHD_ConnectionInfo *info = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	return info ? info->connect_fd : -1;
}

void
lms_server_track_job(struct lms_server *s, struct lms_job *job)
{
	struct lms_job_node *n = xcalloc(1, sizeof(*n));
	n->job = job;
	pthread_mutex_lock(&s->jobs_lock);
	n->next = s->jobs;
	s->jobs = n;
	if (atomic_load(&s->stopping))
		lms_job_cancel(job);
	pthread_mutex_unlock(&s->jobs_lock);
}

void
lms_server_untrack_job(struct lms_server *s, struct lms_job *job)
{
	pthread_mutex_lock(&s->jobs_lock);
	for (struct lms_job_node **p = &s->jobs; *p; p = &(*p)->next)
		if ((*p)->job == job) {
			struct lms_job_node *dead = *p;
			*p = dead->next;
			free(dead);
			break;
		}
	pthread_mutex_unlock(&s->jobs_lock);
}

/* ---- request ids and logs ---- */

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
log_json(json_t *line)
{
	char *text = json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(6));
	json_decref(line);
	if (text == NULL)
		return;
	size_t len = strlen(text);
	text = xrealloc(text, len + 2);
	text[len++] = '\n';
	/* One write per line, so that lines of concurrent requests never interleave. */
	(void)!write(STDERR_FILENO, text, len);
	free(text);
}

static json_t *
log_base(const char *level, const char *msg)
{
	char stamp[40];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ", ts.tv_nsec / 1000000);
	return json_pack("{s:s, s:s, s:s}", "time", stamp, "level", level, "msg", msg);
}

static void
log_request(const struct lms_request *req)
{
	json_t *line = log_base("info", "request");
	json_object_set_new(line, "request_id", json_string(req->id));
	json_object_set_new(line, "method", json_string(req->method));
	json_object_set_new(line, "path", json_stringn(req->path, strnlen(req->path, 512)));
	json_object_set_new(line, "status", json_integer(req->status));
	json_object_set_new(line, "duration_ms", json_real(lms_monotonic_ms() - req->start_ms));
	log_json(line);
}

/* ---- MHD callbacks ---- */

static bool
token_ok(const struct lms_server *s, struct MHD_Connection *conn)
{
	if (s->cfg->token == NULL)
		return true;
	const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
		return false;
	const char *given = auth + 7, *want = s->cfg->token;
	size_t gl = strlen(given), wl = strlen(want);
	/* Constant time in the token's content: every byte of the longer one is looked at. */
	unsigned char diff = gl != wl;
	for (size_t i = 0; i < (gl > wl ? gl : wl); i++)
		diff |= (unsigned char)(i < gl ? given[i] : 0) ^ (unsigned char)(i < wl ? want[i] : 0);
	return diff == 0;
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

/* An exact path, or a prefix route ending in "/{path}" (the relay of Ollama's /api/...). */
bool
lms_route_matches(const struct lms_route *r, const char *path)
{
	size_t n = strlen(r->path);
	if (n > 7 && strcmp(r->path + n - 7, "/{path}") == 0)
		return strncmp(path, r->path, n - 6) == 0 && path[n - 6] != '\0' && strstr(path, "..") == NULL;
	return strcmp(r->path, path) == 0;
}

static const struct lms_route *
find_route(const char *method, const char *path, char *allow, size_t allow_size)
{
	const struct lms_route *match = NULL;
	allow[0] = '\0';
	for (size_t i = 0; i < lms_n_routes; i++) {
		if (!lms_route_matches(&lms_routes[i], path))
			continue;
		if (strcmp(lms_routes[i].method, method) == 0)
			match = &lms_routes[i];
		size_t used = strlen(allow);
		snprintf(allow + used, allow_size - used, "%s%s", used ? ", " : "", lms_routes[i].method);
	}
	return match;
}

/* Decides what can be decided from the headers alone: route, method, auth, type, declared size. */
static enum MHD_Result
begin_request(struct lms_request *req)
{
	struct lms_server *s = req->server;
	char allow[64];
	req->route = find_route(req->method, req->path, allow, sizeof(allow));
	if (req->route == NULL && allow[0] == '\0')
		return lms_reply_error(req, 404, "invalid_request_error", "not_found", "no route %s %s: see GET /docs",
				       req->method, req->path);
	if (req->route == NULL) {
		json_t *body = json_pack("{s:{s:s, s:s, s:s}}", "error", "message", "method not allowed here", "type",
					 "invalid_request_error", "code", "method_not_allowed");
		char *text = json_dumps(body, LMS_JSON_FLAGS);
		json_decref(body);
		struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
		return lms_reply(req, 405, resp);
	}
	if (req->route->auth && !token_ok(s, req->conn))
		return lms_reply_error(req, 401, "authentication_error", "invalid_token",
				       "missing or wrong token: send Authorization: Bearer <token>");
	if (atomic_load(&s->stopping))
		return lms_reply_error(req, 503, "server_error", "shutting_down", "the server is shutting down");
	if (req->route->json_body && !content_type_ok(req->route, req->conn))
		return lms_reply_error(req, 415, "invalid_request_error", "unsupported_media_type",
				       "send the body as Content-Type: application/json");
	const char *length = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (length && strtoull(length, NULL, 10) > s->cfg->max_body_bytes)
		return lms_reply_error(req, 413, "invalid_request_error", "body_too_large",
				       "the body is larger than %llu bytes",
				       (unsigned long long)s->cfg->max_body_bytes);
	return MHD_YES;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method, const char *version,
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
		return begin_request(req);
	}
	if (req->replied) {
		*upload_size = 0; /* an early error is queued: the rest of the body is dropped */
		return MHD_YES;
	}
	if (*upload_size > 0) {
		if (req->body.len + *upload_size > req->server->cfg->max_body_bytes)
			req->body_too_large = true;
		else
			lms_buf_append(&req->body, upload_data, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (req->body_too_large)
		return lms_reply_error(req, 413, "invalid_request_error", "body_too_large",
				       "the body is larger than %llu bytes",
				       (unsigned long long)req->server->cfg->max_body_bytes);
	return req->route->handler(req);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	(void)conn, (void)toe;
	struct lms_server *s = cls;
	struct lms_request *req = *con_cls;
	if (req == NULL)
		return;
	lms_metrics_request(&s->metrics, req->route ? req->route->path : "unmatched", req->status);
	log_request(req);
	lms_buf_clear(&req->body);
	free(req->path);
	free(req->method);
	free(req);
	*con_cls = NULL;
}

__attribute__((format(printf, 2, 0))) static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char text[512];
	vsnprintf(text, sizeof(text), fmt, ap);
	text[strcspn(text, "\n")] = '\0';
	json_t *line = log_base("warning", "libmicrohttpd");
	json_object_set_new(line, "detail", json_string(text));
	log_json(line);
}

/* ---- the listening socket ---- */

static bool
is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

static int
open_listener(const struct lms_config *cfg, bool *loopback, char **url, struct lms_error **err)
{
	_cleanup_free_ char *spec = xstrdup(cfg->listen);
	char *host = spec, *port = strrchr(spec, ':');
	if (port == NULL)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "--listen %s: expected HOST:PORT", cfg->listen);
	*port++ = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		host[strlen(host) - 1] = '\0';
		host++;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *ai = NULL;
	int r = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
	if (r != 0)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "--listen %s: %s", cfg->listen, gai_strerror(r));
	*loopback = is_loopback(ai->ai_addr);
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return lms_error_set(err, LMS_ERR_SETUP, e, "listen on %s", cfg->listen);
	}
	freeaddrinfo(ai);
	struct sockaddr_storage bound;
	socklen_t len = sizeof(bound);
	char name[INET6_ADDRSTRLEN] = "?";
	int bound_port = 0;
	if (getsockname(fd, (struct sockaddr *)&bound, &len) == 0) {
		if (bound.ss_family == AF_INET) {
			struct sockaddr_in *in = (struct sockaddr_in *)&bound;
			inet_ntop(AF_INET, &in->sin_addr, name, sizeof(name));
			bound_port = ntohs(in->sin_port);
		} else {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&bound;
			inet_ntop(AF_INET6, &in6->sin6_addr, name, sizeof(name));
			bound_port = ntohs(in6->sin6_port);
		}
	}
	*url = bound.ss_family == AF_INET6 ? xasprintf("http://[%s]:%d", name, bound_port)
					   : xasprintf("http://%s:%d", name, bound_port);
	return fd;
}

/* ---- life ---- */

static void
log_event(const char *level, const char *msg, const char *key, const char *value)
{
	json_t *line = log_base(level, msg);
	if (key)
		json_object_set_new(line, key, json_string(value));
	log_json(line);
}

static void
cancel_all(struct lms_server *s)
{
	pthread_mutex_lock(&s->jobs_lock);
	for (struct lms_job_node *n = s->jobs; n; n = n->next)
		lms_job_cancel(n->job);
	pthread_mutex_unlock(&s->jobs_lock);
}

/* A binary installed beside this one, or NULL. */
static char *
sibling_binary(const char *name)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return NULL;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (slash == NULL)
		return NULL;
	*slash = '\0';
	char *path = xasprintf("%s/%s", self, name);
	if (access(path, X_OK) == 0)
		return path;
	free(path);
	return NULL;
}

int
lms_server_run(struct lms_config *cfg, struct lms_error **err)
{
	struct lms_server s = {.cfg = cfg};
	lms_metrics_init(&s.metrics);
	pthread_mutex_init(&s.jobs_lock, NULL);
	s.have_bash = access("/bin/bash", X_OK) == 0;

	bool loopback = false;
	int fd = open_listener(cfg, &loopback, &s.listen_url, err);
	if (fd < 0)
		return -1;
	if (!loopback && cfg->token == NULL && !cfg->insecure_no_auth) {
		close(fd);
		free(s.listen_url);
		return lms_error_set(err, LMS_ERR_FORBIDDEN, 0,
				     "refusing to serve %s without a token: anyone who reaches it could run commands. "
				     "Set --token-file or LM_SANDBOX_API_TOKEN (or, at your own risk, "
				     "--insecure-no-auth)",
				     cfg->listen);
	}

	struct lms_backends backends = {
	    .connect_timeout_ms = cfg->backend_connect_timeout_ms,
	    .timeout_ms = cfg->backend_timeout_ms,
	    .first_byte_timeout_ms =
		cfg->backend_first_byte_timeout_ms ? cfg->backend_first_byte_timeout_ms : cfg->backend_timeout_ms,
	    .cache_ms = cfg->models_cache_ms,
	};
	if (lms_backends_init(&backends, cfg->ollama_url, cfg->llamacpp_url, cfg->backends, err) < 0) {
		lms_backends_free(&backends);
		close(fd);
		free(s.listen_url);
		return -1;
	}
	s.backends = &backends;

	/* Signals are blocked before any thread or the spawner exists, and then read with sigwait. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGHUP);
	sigprocmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* Pooled sandboxes are prepared with the server's limits, the ceilings of every request. */
	static struct lms_sandbox_spec pool_base;
	lms_sandbox_spec_init(&pool_base);
	pool_base.limits = cfg->defaults;
	_cleanup_free_ char *helper = sibling_binary("lm-sandbox");
	if (lms_spawner_start(helper, &pool_base, (unsigned)cfg->pool_size, &s.spawner, err) < 0) {
		close(fd);
		free(s.listen_url);
		return -1;
	}
	s.mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
				     MHD_USE_ERROR_LOG | MHD_USE_POLL,
				 0, NULL, NULL, on_request, &s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, &s,
				 MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, &s,
				 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_CONNECTION_LIMIT,
				 (unsigned)1024, MHD_OPTION_END);
	if (s.mhd == NULL) {
		close(fd);
		lms_spawner_stop(s.spawner);
		free(s.listen_url);
		return lms_error_set(err, LMS_ERR_SETUP, 0, "start the HTTP server on %s", cfg->listen);
	}
	log_event("info", "listening", "url", s.listen_url);

	int sig = 0;
	sigwait(&stop, &sig);
	log_event("info", "shutting down", "signal", strsignal(sig));
	atomic_store(&s.stopping, true);
	atomic_store(&lms_relay_stopping, true);
	MHD_quiesce_daemon(s.mhd);
	cancel_all(&s);
	MHD_stop_daemon(s.mhd);
	close(fd);
	lms_spawner_stop(s.spawner);
	lms_backends_free(&backends);
	lms_curl_cleanup();
	log_event("info", "stopped", NULL, NULL);
	free(s.listen_url);
	return 0;
}
