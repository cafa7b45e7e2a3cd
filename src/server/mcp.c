/*
 * POST /mcp: the Model Context Protocol over Streamable HTTP (API.md, "MCP"; docs/API-NOTES.md, "MCP"),
 * dual-era. A request whose params carry the 2026-07-28 `_meta` (or whose MCP-Protocol-Version header
 * names that revision) is served by that revision: header/body cross-checks, server/discover,
 * resultType, cache hints. Anything else is a legacy client (initialize, 2024-11-05 through 2025-11-25),
 * served statelessly: no session is minted, every request stands alone. One JSON-RPC message per POST
 * (no batches). A tools/call from a client that accepts text/event-stream is answered with Server-Sent
 * Events: progress notifications while the command runs (when it asked with a progressToken), then the
 * response; the stream's close cancels the command. The tools themselves are mcp-tools.c.
 *
 * Every answer this file decides is a JSON-RPC message (MCP clients read nothing else); the layers
 * under it (401, 405, 413, 415) keep API.md's one error shape.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "api/exec-json.h"
#include "core/alloc.h"
#include "core/fdio.h"
#include "core/utf8.h"
#include "server/mcp-tools.h"
#include "server/server.h"
#include "server/thread-stream.h"

#define MODERN_VERSION "2026-07-28"
#define LEGACY_LATEST "2025-11-25"
#define META_VERSION "io.modelcontextprotocol/protocolVersion"
#define META_CAPABILITIES "io.modelcontextprotocol/clientCapabilities"
#define META_SERVER_INFO "io.modelcontextprotocol/serverInfo"
/* The tool list changes only with the binary: a client may keep it this long. */
#define TOOLS_TTL_MS 300000
#define NAME_MAX_LEN 256

/* JSON-RPC 2.0 and MCP error codes. */
enum {
	PARSE_ERROR = -32700,
	INVALID_REQUEST = -32600,
	METHOD_NOT_FOUND = -32601,
	INVALID_PARAMS = -32602,
	INTERNAL_ERROR = -32603,
	FORBIDDEN = -32000, /* implementation-defined: Origin or Host refused */
	HEADER_MISMATCH = -32020,
	UNSUPPORTED_VERSION = -32022,
};

static const char *const versions[] = {MODERN_VERSION, "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"};
#define N_VERSIONS (sizeof(versions) / sizeof(versions[0]))

static const char instructions[] =
    "Each tool runs in an isolated Linux sandbox. Call sandbox_create first and pass its sandbox_id to every "
    "other tool: files in /work and background processes stay between calls. bash runs a shell command; "
    "read_file, write_file, edit_file and list_files work on the sandbox's files. Delete the sandbox with "
    "sandbox_delete when done.";

/* One request being answered. */
struct rpc {
	struct lms_request *req;
	json_t *root;
	json_t *id; /* borrowed from root; NULL for a notification or an unreadable request */
	const char *method;
	json_t *params;
	bool modern;
	struct lms_header headers[4]; /* CORS, ending with {NULL, NULL} */
};

static const char *
header(const struct rpc *r, const char *name)
{
	return MHD_lookup_connection_value(r->req->conn, MHD_HEADER_KIND, name);
}

static bool
version_known(const char *v)
{
	for (size_t i = 0; i < N_VERSIONS; i++)
		if (strcmp(v, versions[i]) == 0)
			return true;
	return false;
}

static json_t *
versions_json(void)
{
	json_t *a = json_array();
	for (size_t i = 0; i < N_VERSIONS; i++)
		json_array_append_new(a, json_string(versions[i]));
	return a;
}

static json_t *
server_info(void)
{
	return json_pack("{s:s, s:s, s:s}", "name", "lm-sandbox", "title", "lm-sandbox", "version", LMS_VERSION);
}

/* ---- replies ---- */

static enum MHD_Result
reply(struct rpc *r, unsigned status, json_t *body)
{
	return lms_reply_json_headers(r->req, status, body, r->headers);
}

static enum MHD_Result reply_error_data(struct rpc *r, unsigned status, int code, json_t *data, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static enum MHD_Result
reply_error_data(struct rpc *r, unsigned status, int code, json_t *data, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *raw = xvasprintf(fmt, ap);
	va_end(ap);
	/* Header values are the client's bytes, and a %.200s may cut a character in two: JSON takes UTF-8. */
	size_t n;
	_cleanup_free_ char *message = lms_utf8_sanitize(raw, strlen(raw), &n);
	json_t *error = json_pack("{s:i, s:s%}", "code", code, "message", message, n);
	if (data)
		json_object_set_new(error, "data", data);
	json_t *body =
	    json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", r->id ? r->id : json_null(), "error", error);
	return reply(r, status, body);
}

#define reply_error(r, status, code, ...) reply_error_data((r), (status), (code), NULL, __VA_ARGS__)

/* The response of a request: the modern revision's results say their type and the server. */
static json_t *
response(const struct rpc *r, json_t *result)
{
	if (r->modern) {
		json_object_set_new(result, "resultType", json_string("complete"));
		json_t *meta = json_object_get(result, "_meta");
		if (!json_is_object(meta)) {
			meta = json_object();
			json_object_set_new(result, "_meta", meta);
		}
		json_object_set_new(meta, META_SERVER_INFO, server_info());
	}
	return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", r->id, "result", result);
}

/* ---- Origin and Host: what a page of another site, or a DNS-rebound name, may not reach ---- */

static bool
loopback_host(const char *host, size_t n)
{
	static const char *const names[] = {"localhost", "127.0.0.1", "[::1]"};
	for (size_t i = 0; i < 3; i++)
		if (n == strlen(names[i]) && strncasecmp(host, names[i], n) == 0)
			return true;
	return n > 4 && strncmp(host, "127.", 4) == 0 && strspn(host, "0123456789.") == n;
}

/* The host part of "host:port" or "[v6]:port" (its length). */
static size_t
host_part(const char *hostport)
{
	if (hostport[0] == '[') {
		const char *end = strchr(hostport, ']');
		return end ? (size_t)(end - hostport) + 1 : strlen(hostport);
	}
	return strcspn(hostport, ":");
}

static bool
listening_on_loopback(const struct lms_server *s)
{
	const char *hp = s->listen_url + strlen("http://");
	return loopback_host(hp, host_part(hp));
}

/* The server's own origins (its address, and on loopback the loopback names with its port) and each
 * --cors-origin; *cors says which (only a --cors-origin gets CORS headers). */
static bool
origin_allowed(const struct lms_server *s, const char *origin, bool *cors)
{
	*cors = false;
	size_t n = strlen(origin);
	while (n > 0 && origin[n - 1] == '/')
		n--;
	const char *own = s->listen_url;
	if (n == strlen(own) && strncasecmp(origin, own, n) == 0)
		return true;
	if (listening_on_loopback(s)) {
		static const char *const names[] = {"localhost", "127.0.0.1", "[::1]"};
		for (size_t i = 0; i < 3; i++) {
			char candidate[64];
			snprintf(candidate, sizeof(candidate), "http://%s%s", names[i], strrchr(own, ':'));
			if (n == strlen(candidate) && strncasecmp(origin, candidate, n) == 0)
				return true;
		}
	}
	const char *list = s->cfg->cors_origins;
	while (list && *list) {
		size_t len = strcspn(list, ","), l = len;
		while (l > 0 && list[l - 1] == '/')
			l--;
		if (l == n && strncasecmp(list, origin, n) == 0) {
			*cors = true;
			return true;
		}
		list += len + (list[len] == ',');
	}
	return false;
}

/* 0 when the request may go on; else the 403 is queued in *out. */
static int
check_origin(struct rpc *r, enum MHD_Result *out)
{
	struct lms_server *s = r->req->server;
	const char *host = header(r, MHD_HTTP_HEADER_HOST);
	if (listening_on_loopback(s) && host != NULL && !loopback_host(host, host_part(host))) {
		*out = reply_error(r, 403, FORBIDDEN,
				   "Host %.200s is not this server's: a server on loopback answers only to localhost, "
				   "127.0.0.1 or [::1] (DNS rebinding protection)",
				   host);
		return -1;
	}
	const char *origin = header(r, "Origin");
	if (origin == NULL)
		return 0; /* not a browser: nothing to protect against here, the token does the rest */
	bool cors = false;
	if (!origin_allowed(s, origin, &cors)) {
		*out = reply_error(r, 403, FORBIDDEN,
				   "Origin %.200s may not call this server: allow it with --cors-origin %.200s", origin,
				   origin);
		return -1;
	}
	if (cors) {
		r->headers[0] = (struct lms_header){"Access-Control-Allow-Origin", origin};
		r->headers[1] = (struct lms_header){"Vary", "Origin"};
		r->headers[2] = (struct lms_header){"Access-Control-Expose-Headers", "X-Request-Id"};
	}
	return 0;
}

/* A response without a body, with the request's CORS headers. */
static struct MHD_Response *
empty_response(const struct rpc *r)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	for (const struct lms_header *h = r->headers; h->name; h++)
		MHD_add_response_header(resp, h->name, h->value);
	return resp;
}

enum MHD_Result
lms_route_mcp_preflight(struct lms_request *req)
{
	struct rpc r = {.req = req};
	enum MHD_Result out;
	if (check_origin(&r, &out) < 0)
		return out;
	struct MHD_Response *resp = empty_response(&r);
	MHD_add_response_header(resp, "Access-Control-Allow-Methods", "POST, OPTIONS");
	MHD_add_response_header(resp, "Access-Control-Allow-Headers",
				"Authorization, Content-Type, Accept, MCP-Protocol-Version, Mcp-Method, Mcp-Name, "
				"Mcp-Session-Id, Last-Event-ID, X-Request-Id");
	MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "POST, OPTIONS");
	return lms_reply(req, 204, resp);
}

/* ---- the 2026-07-28 envelope: _meta and the headers that mirror the body ---- */

static int
b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* A header value as the body has it: "=?base64?...?=" decoded (NULL when that is malformed). */
static char *
header_value(const char *raw)
{
	/* Optional whitespace around a field value is not part of it (RFC 9110, 5.5). */
	while (*raw == ' ' || *raw == '\t')
		raw++;
	size_t n = strlen(raw);
	while (n > 0 && (raw[n - 1] == ' ' || raw[n - 1] == '\t'))
		n--;
	_cleanup_free_ char *v = xstrndup(raw, n);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
			return NULL; /* MHD hands us what came: only visible ASCII is a header value */
	if (n < 11 || strncmp(v, "=?base64?", 9) != 0 || strcmp(v + n - 2, "?=") != 0)
		return steal_pointer(&v);
	char *out = xmalloc(n);
	size_t len = 0;
	unsigned bits = 0, acc = 0;
	for (const char *p = v + 9; p < v + n - 2; p++) {
		if (*p == '=')
			break;
		int d = b64_value(*p);
		if (d < 0) {
			free(out);
			return NULL;
		}
		acc = (acc << 6) | (unsigned)d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[len++] = (char)((acc >> bits) & 0xff);
		}
	}
	out[len] = '\0';
	if (strlen(out) != len) {
		free(out);
		return NULL;
	}
	return out;
}

/* Header `name` against the body's `value`: 0, or the HeaderMismatch reply. */
static int
check_mirror(struct rpc *r, const char *name, const char *value, enum MHD_Result *out)
{
	const char *h = header(r, name);
	if (h == NULL) {
		*out = reply_error(r, 400, HEADER_MISMATCH,
				   "Header mismatch: the %s header is missing (it must be %.200s)", name, value);
		return -1;
	}
	_cleanup_free_ char *decoded = header_value(h);
	if (decoded == NULL || strcmp(decoded, value) != 0) {
		*out = reply_error(r, 400, HEADER_MISMATCH,
				   "Header mismatch: %s header value '%.200s' does not match body value '%.200s'", name,
				   h, value);
		return -1;
	}
	return 0;
}

/* Decides the era and checks the envelope: 0 to go on, else the reply is queued in *out. A request
 * with the modern _meta (or the modern version in its header) is modern, initialize included (which
 * the modern revision does not have: 404); anything else is legacy. */
static int
check_envelope(struct rpc *r, enum MHD_Result *out)
{
	const char *hv = header(r, "MCP-Protocol-Version");
	json_t *meta = json_object_get(r->params, "_meta");
	if (meta != NULL && !json_is_object(meta)) {
		*out = reply_error(r, 400, INVALID_PARAMS, "params._meta must be an object");
		return -1;
	}
	json_t *mv = json_object_get(meta, META_VERSION);
	_cleanup_free_ char *hv_clean = hv ? header_value(hv) : NULL;
	if (mv == NULL && (hv_clean == NULL || strcmp(hv_clean, MODERN_VERSION) != 0)) {
		if (hv != NULL && (hv_clean == NULL || !version_known(hv_clean))) {
			*out = reply_error_data(r, 400, UNSUPPORTED_VERSION,
						json_pack("{s:o, s:s}", "supported", versions_json(), "requested",
							  hv_clean ? hv_clean : "(not visible ASCII)"),
						"Unsupported protocol version %.64s (MCP-Protocol-Version header)", hv);
			return -1;
		}
		return 0; /* legacy: the header, when sent, names a version initialize can give */
	}
	r->modern = true;
	if (mv == NULL || !json_is_string(mv)) {
		*out = reply_error(r, 400, INVALID_PARAMS,
				   "params._meta must carry \"" META_VERSION
				   "\" (a string) in protocol version " MODERN_VERSION);
		return -1;
	}
	const char *v = json_string_value(mv);
	/* The header first: a body and a header that disagree are refused whatever they say. */
	if (check_mirror(r, "MCP-Protocol-Version", v, out) < 0)
		return -1;
	if (strcmp(v, MODERN_VERSION) != 0) {
		*out = reply_error_data(r, 400, UNSUPPORTED_VERSION,
					json_pack("{s:o, s:s}", "supported", versions_json(), "requested", v),
					"Unsupported protocol version %.64s: per-request _meta is %s; earlier versions "
					"open with initialize",
					v, MODERN_VERSION);
		return -1;
	}
	if (check_mirror(r, "Mcp-Method", r->method, out) < 0)
		return -1;
	if (!json_is_object(json_object_get(meta, META_CAPABILITIES))) {
		*out = reply_error(r, 400, INVALID_PARAMS,
				   "params._meta must carry \"" META_CAPABILITIES "\" (an object; {} for none)");
		return -1;
	}
	json_t *name = json_object_get(r->params, "name");
	if (strcmp(r->method, "tools/call") == 0 && json_is_string(name) &&
	    check_mirror(r, "Mcp-Name", json_string_value(name), out) < 0)
		return -1;
	return 0;
}

/* ---- tools/call over Server-Sent Events ---- */

struct sse {
	struct lms_server *s;
	struct rpc rpc; /* root, id and modern: the thread's copy */
	char *name;
	json_t *args;
	json_t *token; /* progressToken, or NULL */
	struct lms_thread_stream *ts;
};

static void
sse_send(struct sse *x, json_t *message)
{
	char *text = json_dumps(message, LMS_JSON_FLAGS);
	json_decref(message);
	if (text == NULL)
		return;
	_cleanup_free_ char *frame = xasprintf("event: message\ndata: %s\n\n", text);
	free(text);
	lms_thread_stream_write(x->ts, frame, strlen(frame));
}

static void
sse_progress(void *cls, double progress, const char *message)
{
	struct sse *x = cls;
	sse_send(x, json_pack("{s:s, s:s, s:{s:O, s:f, s:s}}", "jsonrpc", "2.0", "method", "notifications/progress",
			      "params", "progressToken", x->token, "progress", progress, "message", message));
}

static void
sse_work(struct lms_thread_stream *ts, void *cls)
{
	struct sse *x = cls;
	x->ts = ts;
	struct lms_mcp_progress p = {sse_progress, x, NULL};
	json_t *result =
	    lms_mcp_tool_call(x->s, x->name, x->args, lms_thread_stream_cancel_fd(ts), x->token ? &p : NULL);
	sse_send(x, response(&x->rpc, result));
}

static void
sse_discard(void *cls)
{
	struct sse *x = cls;
	json_decref(x->rpc.root);
	json_decref(x->args);
	json_decref(x->token);
	free(x->name);
	free(x);
}

/* Starts the call on a thread of its own (thread-stream.c) and answers with its events; false when that
 * cannot start. A closed stream cancels the command. */
static bool
call_streamed(struct rpc *r, const char *name, json_t *args, json_t *token, enum MHD_Result *out)
{
	struct sse *x = xcalloc(1, sizeof(*x));
	x->s = r->req->server;
	x->rpc = (struct rpc){.root = json_incref(r->root), .id = r->id, .modern = r->modern};
	x->name = xstrdup(name);
	x->args = json_incref(args);
	x->token = json_incref(token);
	if (!lms_thread_stream_reply(r->req, sse_work, x, sse_discard, r->headers, out)) {
		sse_discard(x);
		return false;
	}
	return true;
}

/* ---- methods ---- */

static bool
accepts(const struct rpc *r, const char *type)
{
	const char *accept = header(r, MHD_HTTP_HEADER_ACCEPT);
	return accept != NULL && strcasestr(accept, type) != NULL;
}

static enum MHD_Result
tools_call(struct rpc *r)
{
	json_t *name = json_object_get(r->params, "name");
	json_t *args = json_object_get(r->params, "arguments");
	if (!json_is_string(name))
		return reply_error(r, 200, INVALID_PARAMS, "tools/call needs params.name, the tool's name (a string)");
	if (args != NULL && !json_is_null(args) && !json_is_object(args))
		return reply_error(r, 200, INVALID_PARAMS, "params.arguments of tools/call must be an object");
	const char *tool = json_string_value(name);
	if (!lms_mcp_tool_exists(tool))
		return reply_error(r, 200, INVALID_PARAMS,
				   "Unknown tool: %.100s; the tools are sandbox_create, bash, read_file, write_file, "
				   "edit_file, list_files, sandbox_delete",
				   tool);
	json_t *token = json_object_get(json_object_get(r->params, "_meta"), "progressToken");
	if (token != NULL && !json_is_string(token) && !json_is_integer(token))
		return reply_error(r, 200, INVALID_PARAMS, "params._meta.progressToken must be a string or an integer");
	lms_request_body_done(r->req); /* the arguments are parsed: the body's room is free for others */
	enum MHD_Result out;
	if (accepts(r, "text/event-stream") && call_streamed(r, tool, json_is_object(args) ? args : NULL, token, &out))
		return out;
	json_t *result = lms_mcp_tool_call(r->req->server, tool, json_is_object(args) ? args : NULL,
					   lms_request_socket(r->req), NULL);
	return reply(r, 200, response(r, result));
}

static enum MHD_Result
initialize(struct rpc *r)
{
	json_t *v = json_object_get(r->params, "protocolVersion");
	if (!json_is_string(v))
		return reply_error(r, 200, INVALID_PARAMS, "initialize needs params.protocolVersion (a string)");
	/* The client's version when it is a legacy one this server speaks, else the latest legacy one: the
	 * client decides whether it can go on with it. */
	const char *chosen = LEGACY_LATEST;
	for (size_t i = 1; i < N_VERSIONS; i++)
		if (strcmp(json_string_value(v), versions[i]) == 0)
			chosen = versions[i];
	json_t *result = json_pack("{s:s, s:{s:{s:b}}, s:o, s:s}", "protocolVersion", chosen, "capabilities", "tools",
				   "listChanged", 0, "serverInfo", server_info(), "instructions", instructions);
	return reply(r, 200, response(r, result));
}

static enum MHD_Result
dispatch(struct rpc *r)
{
	const char *m = r->method;
	if (!r->modern && strcmp(m, "initialize") == 0)
		return initialize(r);
	if (!r->modern && strcmp(m, "ping") == 0)
		return reply(r, 200, response(r, json_object()));
	if (strcmp(m, "tools/list") == 0) {
		json_t *cursor = json_object_get(r->params, "cursor");
		if (cursor != NULL && !json_is_null(cursor) && !json_is_string(cursor))
			return reply_error(r, 200, INVALID_PARAMS, "params.cursor must be a string");
		if (json_is_string(cursor))
			return reply_error(r, 200, INVALID_PARAMS, "Invalid cursor: the tool list has one page");
		json_t *result = json_pack("{s:o}", "tools", lms_mcp_tools());
		if (r->modern) {
			json_object_set_new(result, "ttlMs", json_integer(TOOLS_TTL_MS));
			json_object_set_new(result, "cacheScope", json_string("public"));
		}
		return reply(r, 200, response(r, result));
	}
	if (strcmp(m, "tools/call") == 0)
		return tools_call(r);
	if (r->modern && strcmp(m, "server/discover") == 0) {
		json_t *result = json_pack("{s:o, s:{s:{s:b}}, s:s, s:i, s:s}", "supportedVersions", versions_json(),
					   "capabilities", "tools", "listChanged", 0, "instructions", instructions,
					   "ttlMs", TOOLS_TTL_MS, "cacheScope", "public");
		return reply(r, 200, response(r, result));
	}
	/* The modern revision answers an unknown method with 404, so that a client can tell it from a
	 * server without this endpoint; a legacy client reads the error in a 200. */
	return reply_error(
	    r, r->modern ? 404 : 200, METHOD_NOT_FOUND, "Method not found: %.100s (this server has tools only: %s)", m,
	    r->modern ? "server/discover, tools/list, tools/call" : "initialize, ping, tools/list, tools/call");
}

/* The body as one JSON-RPC message: 0, or the error reply queued in *out. */
static int
parse(struct rpc *r, enum MHD_Result *out)
{
	struct lms_request *req = r->req;
	json_error_t jerr;
	r->root = json_loadb(req->body.data ? req->body.data : "", req->body.len,
			     JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (r->root == NULL) {
		*out = reply_error(r, 400, PARSE_ERROR, "Parse error: malformed JSON at line %d, column %d: %s",
				   jerr.line, jerr.column, jerr.text);
		return -1;
	}
	if (json_is_array(r->root)) {
		*out = reply_error(r, 400, INVALID_REQUEST,
				   "Invalid Request: batches are not supported (MCP removed them in 2025-06-18): send "
				   "one message per POST");
		return -1;
	}
	if (!json_is_object(r->root)) {
		*out = reply_error(r, 400, INVALID_REQUEST, "Invalid Request: the body must be a JSON-RPC object");
		return -1;
	}
	json_t *id = json_object_get(r->root, "id");
	if (json_is_string(id) || json_is_integer(id))
		r->id = id;
	json_t *version = json_object_get(r->root, "jsonrpc");
	if (!json_is_string(version) || strcmp(json_string_value(version), "2.0") != 0) {
		*out = reply_error(r, 400, INVALID_REQUEST, "Invalid Request: \"jsonrpc\" must be \"2.0\"");
		return -1;
	}
	if (id != NULL && r->id == NULL) {
		*out = reply_error(r, 400, INVALID_REQUEST, "Invalid Request: \"id\" must be a string or an integer");
		return -1;
	}
	json_t *method = json_object_get(r->root, "method");
	if (method == NULL && (json_object_get(r->root, "result") || json_object_get(r->root, "error"))) {
		*out = reply_error(r, 400, INVALID_REQUEST,
				   "Invalid Request: this server sends no requests, so it takes no responses");
		return -1;
	}
	if (!json_is_string(method) || json_string_length(method) == 0 || json_string_length(method) > NAME_MAX_LEN) {
		*out = reply_error(r, 400, INVALID_REQUEST,
				   "Invalid Request: \"method\" must be a string of 1 to %d bytes", NAME_MAX_LEN);
		return -1;
	}
	r->method = json_string_value(method);
	r->params = json_object_get(r->root, "params");
	if (r->params != NULL && !json_is_object(r->params)) {
		*out = reply_error(r, 400, json_is_array(r->params) ? INVALID_PARAMS : INVALID_REQUEST,
				   "\"params\" must be an object");
		return -1;
	}
	return 0;
}

enum MHD_Result
lms_route_mcp(struct lms_request *req)
{
	struct rpc r = {.req = req};
	enum MHD_Result out;
	if (check_origin(&r, &out) < 0)
		return out;
	const char *accept = header(&r, MHD_HTTP_HEADER_ACCEPT);
	if (accept != NULL && !strcasestr(accept, "application/json") && !strcasestr(accept, "text/event-stream") &&
	    !strstr(accept, "*/*") && !strcasestr(accept, "application/*")) {
		out = reply_error(&r, 406, INVALID_REQUEST,
				  "Not Acceptable: send Accept: application/json, text/event-stream");
		json_decref(r.root);
		return out;
	}
	if (parse(&r, &out) < 0) {
		json_decref(r.root);
		return out;
	}
	if (r.id == NULL) {
		/* A notification (notifications/initialized, notifications/cancelled, ...): nothing to answer.
		 * A cancellation has nothing to do either: over HTTP, a closed stream is what cancels. */
		json_decref(r.root);
		return lms_reply(req, 202, empty_response(&r));
	}
	if (check_envelope(&r, &out) == 0)
		out = dispatch(&r);
	json_decref(r.root);
	return out;
}
