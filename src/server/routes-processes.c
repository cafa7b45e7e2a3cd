/*
 * Background processes of a persistent sandbox over HTTP (API.md, "Persistent sandboxes"): the exec
 * with "background": true (202), GET .../processes, GET .../processes/{pid}[?wait=true],
 * GET .../processes/{pid}/output[?offset=N][&follow=true], POST .../processes/{pid}/signal and
 * POST .../processes/{pid}/stdin. The processes themselves are processes.c's; every call here holds its
 * sandbox like an exec does (it pushes the idle time, and a removed sandbox is the typed 404).
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/exec-json.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/utf8.h"
#include "server/processes.h"
#include "server/history.h"
#include "server/sandboxes.h"
#include "server/server.h"

#define PREFIX "/v1/sandboxes/"
/* The longest a wait=true or a follow stream waits in one call (a client asks again) and between two
 * keep-alive comments of a follow stream (which also finds a client that went away). */
#define WAIT_MAX_MS 600000
#define FOLLOW_TICK_MS 1000
#define KEEPALIVE_MS 15000
#define OUTPUT_MAX (16u << 20)

/* The sandbox id and the process reference of the path, copied out. */
static void
path_parts(const struct lms_request *req, char sandbox[LMS_SANDBOX_ID_SIZE], char ref[48])
{
	const char *p = req->path + strlen(PREFIX);
	lms_sandbox_path_id(req, sandbox);
	ref[0] = '\0';
	const char *procs = strstr(p, "/processes/");
	if (procs != NULL) {
		procs += strlen("/processes/");
		size_t m = strcspn(procs, "/");
		snprintf(ref, 48, "%.*s", (int)(m < 47 ? m : 47), procs);
	}
}

static enum MHD_Result
reply_sandbox_error(struct lms_request *req, const struct lms_error *e, const char *reason)
{
	return e->kind == LMS_ERR_NOT_FOUND ? lms_reply_sandbox_not_found(req, e, reason) : lms_reply_lms_error(req, e);
}

static enum MHD_Result
reply_process_error(struct lms_request *req, const struct lms_error *e)
{
	if (e->kind != LMS_ERR_NOT_FOUND)
		return lms_reply_lms_error(req, e);
	return lms_reply_json(req, 404, lms_api_error_json("invalid_request_error", "process_not_found", e->message));
}

/* Holds the path's sandbox for the call, or replies (and returns NULL). */
static struct lms_sandbox_entry *
hold(struct lms_request *req, const char *sandbox, uint64_t *key, enum MHD_Result *reply)
{
	_cleanup_error_ struct lms_error *err = NULL;
	const char *reason = NULL;
	const struct lms_sandbox_settings *base = NULL;
	struct lms_sandbox_entry *e = lms_sandboxes_acquire(req->server->sandboxes, sandbox, key, &base, &reason, &err);
	if (e == NULL)
		*reply = reply_sandbox_error(req, err, reason);
	return e;
}

static const char *
arg(struct lms_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

static bool
arg_true(struct lms_request *req, const char *name)
{
	const char *v = arg(req, name);
	return v != NULL && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

/* A non-negative integer argument (absent: dflt); false with the reply sent when it is not one. */
static bool
arg_uint(struct lms_request *req, const char *name, uint64_t dflt, uint64_t max, uint64_t *out, enum MHD_Result *reply)
{
	const char *v = arg(req, name);
	*out = dflt;
	if (v == NULL)
		return true;
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || n > max) {
		*reply =
		    lms_reply_error(req, 400, "invalid_request_error", "invalid_request",
				    "%s must be an integer 0..%llu, not '%.40s'", name, (unsigned long long)max, v);
		return false;
	}
	*out = n;
	return true;
}

enum MHD_Result
lms_route_sandbox_start(struct lms_request *req, struct lms_sandbox_entry *entry, uint64_t key,
			const struct lms_exec_request *xr)
{
	char sandbox[LMS_SANDBOX_ID_SIZE], ref[48];
	path_parts(req, sandbox, ref);
	_cleanup_free_ char *cmd = lms_history_argv(xr->spec.argv);
	_cleanup_error_ struct lms_error *err = NULL;
	double started_s = lms_wall_s(), started_ms = lms_monotonic_ms();
	json_t *obj = lms_procs_start(req->server->procs, req->server->spawner, sandbox, key, &xr->spec, cmd, &err);
	lms_sandboxes_release(req->server->sandboxes, entry, NULL);
	/* A background process is logged when it starts: its end belongs to no call. */
	struct lms_history_call c = {.via = "http",
				     .tool = "process",
				     .command = cmd,
				     .status = obj ? "started" : "error",
				     .exit_code = -1,
				     .started_s = started_s,
				     .duration_ms = lms_monotonic_ms() - started_ms,
				     .bytes = -1};
	lms_sandboxes_record(req->server->sandboxes, sandbox, lms_history_entry(&c));
	return obj ? lms_reply_json(req, 202, obj) : lms_reply_lms_error(req, err);
}

enum MHD_Result
lms_route_process_list(struct lms_request *req)
{
	char sandbox[LMS_SANDBOX_ID_SIZE], ref[48];
	path_parts(req, sandbox, ref);
	uint64_t key;
	enum MHD_Result reply = MHD_NO;
	struct lms_sandbox_entry *e = hold(req, sandbox, &key, &reply);
	if (e == NULL)
		return reply;
	json_t *list = lms_procs_list(req->server->procs, sandbox);
	lms_sandboxes_release(req->server->sandboxes, e, NULL);
	return lms_reply_json(req, 200, list);
}

enum MHD_Result
lms_route_process_get(struct lms_request *req)
{
	char sandbox[LMS_SANDBOX_ID_SIZE], ref[48];
	path_parts(req, sandbox, ref);
	uint64_t key, wait_ms = 0;
	enum MHD_Result reply = MHD_NO;
	if (arg_true(req, "wait") && !arg_uint(req, "timeout_ms", WAIT_MAX_MS, WAIT_MAX_MS, &wait_ms, &reply))
		return reply;
	struct lms_sandbox_entry *e = hold(req, sandbox, &key, &reply);
	if (e == NULL)
		return reply;
	_cleanup_error_ struct lms_error *err = NULL;
	json_t *obj = lms_procs_get(req->server->procs, sandbox, ref, (int)wait_ms, &err);
	lms_sandboxes_release(req->server->sandboxes, e, NULL);
	return obj ? lms_reply_json(req, 200, obj) : reply_process_error(req, err);
}

static enum MHD_Result
output_once(struct lms_request *req, const char *sandbox, const char *ref, uint64_t offset, uint64_t limit)
{
	struct lms_buf out = {0};
	struct lms_proc_output info;
	_cleanup_error_ struct lms_error *err = NULL;
	if (lms_procs_read(req->server->procs, sandbox, ref, offset, (size_t)limit, 0, &out, &info, &err) < 0) {
		lms_buf_clear(&out);
		return reply_process_error(req, err);
	}
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	    out.len, out.data ? out.data : (void *)"", out.data ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_PERSISTENT);
	lms_buf_clear(&out);
	char num[32];
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
	struct {
		const char *name;
		uint64_t value;
	} headers[] = {{"Lms-Output-Offset", info.offset},
		       {"Lms-Output-Next-Offset", info.end},
		       {"Lms-Output-Total", info.total},
		       {"Lms-Output-Dropped", info.dropped}};
	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		snprintf(num, sizeof(num), "%llu", (unsigned long long)headers[i].value);
		MHD_add_response_header(resp, headers[i].name, num);
	}
	MHD_add_response_header(resp, "Lms-Output-Complete", info.exited ? "true" : "false");
	return lms_reply(req, 200, resp);
}

/* A follow stream: "output" events ({"offset", "data", "dropped"}) as the process writes, then one
 * "exit" (its object) once it has exited and its output is all sent. */
struct follow {
	struct lms_server *server;
	char sandbox[LMS_SANDBOX_ID_SIZE], ref[48];
	uint64_t offset;
	int client_fd;
	struct lms_buf pending;
	size_t pending_off;
	double quiet_ms; /* since the last bytes sent */
	bool done;
	char tail[4]; /* an incomplete UTF-8 sequence held for the next chunk */
	size_t tail_len;
};

static bool
client_gone(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};
	return fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Fills f->pending with the next events, or marks the stream done. */
static void
follow_step(struct follow *f)
{
	struct lms_buf out = {0};
	struct lms_proc_output info;
	if (lms_procs_read(f->server->procs, f->sandbox, f->ref, f->offset, 1 << 16, FOLLOW_TICK_MS, &out, &info,
			   NULL) < 0) {
		lms_sse_event(&f->pending, "error",
			      lms_api_error_json("invalid_request_error", "process_not_found",
						 "the process is gone with its sandbox"));
		f->done = true;
		return;
	}
	if (out.len > 0 || info.dropped > 0) {
		struct lms_buf chunk = {0};
		lms_buf_append(&chunk, f->tail, f->tail_len);
		lms_buf_append(&chunk, out.data, out.len);
		size_t keep = 0;
		/* A character split between two reads is held back, unless it is the last of the output. */
		for (size_t back = 1; !info.exited && back <= 3 && back <= chunk.len; back++) {
			unsigned char c = (unsigned char)chunk.data[chunk.len - back];
			if ((c & 0xC0) == 0x80)
				continue;
			size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 1;
			keep = need > back ? back : 0;
			break;
		}
		f->tail_len = keep;
		memcpy(f->tail, chunk.data + chunk.len - keep, keep);
		size_t clean_len;
		char *clean = lms_utf8_sanitize(chunk.data, chunk.len - keep, &clean_len);
		lms_sse_event(&f->pending, "output",
			      json_pack("{s:I, s:s%, s:I}", "offset", (json_int_t)info.offset, "data", clean, clean_len,
					"dropped", (json_int_t)info.dropped));
		free(clean);
		lms_buf_clear(&chunk);
		f->offset = info.end;
		f->quiet_ms = 0;
	} else {
		f->quiet_ms += FOLLOW_TICK_MS;
	}
	lms_buf_clear(&out);
	if (info.exited) {
		json_t *obj = lms_procs_get(f->server->procs, f->sandbox, f->ref, 0, NULL);
		lms_sse_event(&f->pending, "exit", obj ? obj : json_object());
		f->done = true;
	} else if (f->quiet_ms >= KEEPALIVE_MS) {
		lms_buf_append(&f->pending, ": keep-alive\n\n", 14);
		f->quiet_ms = 0;
	}
}

static ssize_t
follow_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct follow *f = cls;
	while (f->pending_off >= f->pending.len) {
		lms_buf_clear(&f->pending);
		f->pending_off = 0;
		if (f->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (atomic_load(&f->server->stopping) || client_gone(f->client_fd))
			return MHD_CONTENT_READER_END_WITH_ERROR;
		follow_step(f);
	}
	size_t n = f->pending.len - f->pending_off;
	n = n < max ? n : max;
	memcpy(buf, f->pending.data + f->pending_off, n);
	f->pending_off += n;
	return (ssize_t)n;
}

static void
follow_free(void *cls)
{
	struct follow *f = cls;
	lms_buf_clear(&f->pending);
	free(f);
}

enum MHD_Result
lms_route_process_output(struct lms_request *req)
{
	char sandbox[LMS_SANDBOX_ID_SIZE], ref[48];
	path_parts(req, sandbox, ref);
	uint64_t key, offset, limit;
	enum MHD_Result reply = MHD_NO;
	if (!arg_uint(req, "offset", 0, UINT64_MAX >> 1, &offset, &reply) ||
	    !arg_uint(req, "limit", OUTPUT_MAX, OUTPUT_MAX, &limit, &reply))
		return reply;
	struct lms_sandbox_entry *e = hold(req, sandbox, &key, &reply);
	if (e == NULL)
		return reply;
	/* The process must exist now, for the 404; a follow stream then lives on its own. */
	_cleanup_error_ struct lms_error *err = NULL;
	json_t *obj = lms_procs_get(req->server->procs, sandbox, ref, 0, &err);
	lms_sandboxes_release(req->server->sandboxes, e, NULL);
	if (obj == NULL)
		return reply_process_error(req, err);
	json_decref(obj);
	if (!arg_true(req, "follow"))
		return output_once(req, sandbox, ref, offset, limit);
	struct follow *f = xcalloc(1, sizeof(*f));
	f->server = req->server;
	memcpy(f->sandbox, sandbox, sizeof(f->sandbox));
	memcpy(f->ref, ref, sizeof(f->ref));
	f->offset = offset;
	f->client_fd = lms_request_socket(req);
	return lms_reply_event_stream(req, follow_read, f, follow_free);
}

/* "SIGTERM", "TERM", or a number 1..64. */
static int
parse_signal(const json_t *v)
{
	if (json_is_integer(v))
		return json_integer_value(v) >= 1 && json_integer_value(v) <= 64 ? (int)json_integer_value(v) : -1;
	const char *name = json_string_value(v);
	if (name == NULL)
		return -1;
	if (strncmp(name, "SIG", 3) == 0)
		name += 3;
	for (int sig = 1; sig < 65; sig++) {
		const char *known = lms_signal_name(sig);
		if (known != NULL && strcmp(known + 3, name) == 0)
			return sig;
	}
	return -1;
}

enum MHD_Result
lms_route_process_signal(struct lms_request *req)
{
	char sandbox[LMS_SANDBOX_ID_SIZE], ref[48];
	path_parts(req, sandbox, ref);
	json_error_t jerr;
	json_t *root = json_loadb(req->body.data ? req->body.data : "{}", req->body.len ? req->body.len : 2, 0, &jerr);
	json_t *v = json_object_get(root, "signal");
	int sig = v == NULL ? SIGTERM : parse_signal(v);
	json_decref(root);
	if (root == NULL || sig < 0)
		return lms_reply_error(
		    req, 400, "invalid_request_error", "invalid_request",
		    "the body must be {\"signal\": \"SIGTERM\"} (a name such as SIGINT or KILL, or a "
		    "number 1..64)");
	uint64_t key;
	enum MHD_Result reply = MHD_NO;
	struct lms_sandbox_entry *e = hold(req, sandbox, &key, &reply);
	if (e == NULL)
		return reply;
	_cleanup_error_ struct lms_error *err = NULL;
	int r = lms_procs_signal(req->server->procs, sandbox, ref, sig, &err);
	json_t *obj = r == 0 ? lms_procs_get(req->server->procs, sandbox, ref, 0, NULL) : NULL;
	lms_sandboxes_release(req->server->sandboxes, e, NULL);
	if (r < 0)
		return reply_process_error(req, err);
	return lms_reply_json(req, 202, obj ? obj : json_object());
}

enum MHD_Result
lms_route_process_stdin(struct lms_request *req)
{
	char sandbox[LMS_SANDBOX_ID_SIZE], ref[48];
	path_parts(req, sandbox, ref);
	uint64_t key;
	enum MHD_Result reply = MHD_NO;
	struct lms_sandbox_entry *e = hold(req, sandbox, &key, &reply);
	if (e == NULL)
		return reply;
	_cleanup_error_ struct lms_error *err = NULL;
	int r = lms_procs_write(req->server->procs, sandbox, ref, req->body.data, req->body.len, arg_true(req, "close"),
				10000, &err);
	lms_sandboxes_release(req->server->sandboxes, e, NULL);
	if (r < 0)
		return reply_process_error(req, err);
	struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	return lms_reply(req, 204, resp);
}
