/*
 * The MCP tools (mcp-tools.h). Each command-running tool becomes an exec body ({"argv", "stdin",
 * "timeout_ms"}) that goes through the persistent sandboxes' own command parser, so the sandbox's
 * limits, environment and image apply exactly as for POST /v1/sandboxes/{id}/exec; the command then
 * runs through the exec service, attached to its sandbox so that a DELETE cancels it.
 */
#include "server/mcp-tools.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>

#include "api/exec-json.h"
#include "api/exec-request.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/id.h"
#include "core/utf8.h"
#include "server/exec-service.h"
#include "server/history.h"
#include "server/sandboxes.h"
#include "server/server.h"

#define SANDBOX_ID_MAX (LMS_SANDBOX_ID_SIZE - 1)
#define PROGRESS_TICK_MS 1000	      /* a silent command still reports this often */
#define PROGRESS_MIN_MS 250	      /* output reports no more often than this */
#define ARG_MAX_VALUE 1000000000000LL /* the largest whole-number argument taken */

/* clang-format off: JSON texts, written as they read */
#define SANDBOX_ID_PROP                                                                                                \
	"\"sandbox_id\": {\"type\": \"string\", \"pattern\": \"^sbx_([a-z0-9-]{1,40}_)?[0-9a-f]{16}$\", "              \
	"\"description\": "                                                                                            \
	"\"The id that sandbox_create returned. Leave it out only on a first call: a new sandbox is then made, and "   \
	"its id is in the result: pass it to every later call.\"}"
#define EXEC_OUTPUT_SCHEMA                                                                                             \
	"{\"type\": \"object\", \"required\": [\"sandbox_id\", \"exit_code\", \"timed_out\", \"oom_killed\", "         \
	"\"stdout\", \"stderr\"], \"properties\": {\"sandbox_id\": {\"type\": \"string\"}, "                           \
	"\"exit_code\": {\"type\": \"integer\"}, \"signal\": {\"type\": [\"string\", \"null\"]}, "                     \
	"\"timed_out\": {\"type\": \"boolean\"}, \"oom_killed\": {\"type\": \"boolean\"}, "                            \
	"\"pids_limit_hit\": {\"type\": \"boolean\"}, "                                                                \
	"\"stdout\": {\"type\": \"string\"}, \"stderr\": {\"type\": \"string\"}, "                                     \
	"\"stdout_truncated\": {\"type\": \"boolean\"}, \"stderr_truncated\": {\"type\": \"boolean\"}, "               \
	"\"duration_ms\": {\"type\": \"number\"}, \"cpu_ms\": {\"type\": \"number\"}, "                                \
	"\"max_rss_kb\": {\"type\": \"integer\"}, \"net_rx_bytes\": {\"type\": \"integer\"}, "                         \
	"\"net_tx_bytes\": {\"type\": \"integer\"}}}"

static const char tools_json[] =
    "["
    "{\"name\": \"sandbox_create\", \"title\": \"Create a sandbox\", \"description\": \"Creates an isolated Linux "
    "sandbox that keeps its files and background processes between calls. Call it first and pass the sandbox_id "
    "it returns to every other tool. Commands run as root inside it, but it cannot touch the host. The working "
    "directory is /work.\", "
    "\"inputSchema\": {\"type\": \"object\", \"properties\": {"
    "\"image\": {\"type\": \"string\", \"description\": \"Root file system: host (the default: the host's /usr, "
    "read-only) or an imported image's name.\"}, "
    "\"ttl_s\": {\"type\": \"integer\", \"minimum\": 1, \"description\": \"Seconds of idle time before it is "
    "removed (default 3600).\"}, "
    "\"network\": {\"type\": \"boolean\", \"description\": \"Internet access (only when the server allows it; "
    "default false: loopback only).\"}}}, "
    "\"outputSchema\": {\"type\": \"object\", \"required\": [\"sandbox_id\"], \"properties\": {"
    "\"sandbox_id\": {\"type\": \"string\"}, \"image\": {\"type\": \"string\"}, \"expires_at\": {\"type\": "
    "\"string\"}, \"network\": {}}}, "
    "\"annotations\": {\"readOnlyHint\": false, \"destructiveHint\": false, \"openWorldHint\": false}},"

    "{\"name\": \"bash\", \"title\": \"Run a shell command\", \"description\": \"Runs a command with bash -c in the "
    "sandbox, in /work, and returns its exit code, then its standard output and error. Files and background "
    "processes stay for later calls. A command that fails returns isError with its output. Long output keeps its "
    "beginning and its end.\", "
    "\"inputSchema\": {\"type\": \"object\", \"required\": [\"command\"], \"properties\": {" SANDBOX_ID_PROP ", "
    "\"command\": {\"type\": \"string\", \"description\": \"The shell command, e.g. ls -la or python3 x.py\"}, "
    "\"timeout_ms\": {\"type\": \"integer\", \"minimum\": 1, \"description\": \"Kill the command after this many "
    "milliseconds (default 30000).\"}}}, "
    "\"outputSchema\": " EXEC_OUTPUT_SCHEMA ", "
    "\"annotations\": {\"readOnlyHint\": false, \"destructiveHint\": true, \"openWorldHint\": false}},"

    "{\"name\": \"read_file\", \"title\": \"Read a file\", \"description\": \"Returns the text of a file in the "
    "sandbox. offset and limit pick lines (the first line is 1).\", "
    "\"inputSchema\": {\"type\": \"object\", \"required\": [\"path\"], \"properties\": {" SANDBOX_ID_PROP ", "
    "\"path\": {\"type\": \"string\", \"description\": \"Absolute, or relative to /work\"}, "
    "\"offset\": {\"type\": \"integer\", \"minimum\": 1, \"description\": \"First line to return (default 1)\"}, "
    "\"limit\": {\"type\": \"integer\", \"minimum\": 1, \"description\": \"How many lines (default: all)\"}}}, "
    "\"outputSchema\": " EXEC_OUTPUT_SCHEMA ", "
    "\"annotations\": {\"readOnlyHint\": true, \"openWorldHint\": false}},"

    "{\"name\": \"write_file\", \"title\": \"Write a file\", \"description\": \"Writes content to a file in the "
    "sandbox, replacing it if it exists; missing parent directories are created.\", "
    "\"inputSchema\": {\"type\": \"object\", \"required\": [\"path\", \"content\"], \"properties\": {" SANDBOX_ID_PROP
    ", "
    "\"path\": {\"type\": \"string\", \"description\": \"Absolute, or relative to /work\"}, "
    "\"content\": {\"type\": \"string\", \"description\": \"The whole new text of the file\"}}}, "
    "\"outputSchema\": " EXEC_OUTPUT_SCHEMA ", "
    "\"annotations\": {\"readOnlyHint\": false, \"destructiveHint\": true, \"idempotentHint\": true, "
    "\"openWorldHint\": false}},"

    "{\"name\": \"edit_file\", \"title\": \"Edit a file\", \"description\": \"Replaces the one place where old "
    "occurs in a file with new. old must match exactly once, whitespace included: if it matches more often, "
    "include more of the surrounding lines.\", "
    "\"inputSchema\": {\"type\": \"object\", \"required\": [\"path\", \"old\", \"new\"], \"properties\": "
    "{" SANDBOX_ID_PROP ", "
    "\"path\": {\"type\": \"string\", \"description\": \"Absolute, or relative to /work\"}, "
    "\"old\": {\"type\": \"string\", \"minLength\": 1, \"description\": \"The exact text to replace\"}, "
    "\"new\": {\"type\": \"string\", \"description\": \"The text to put in its place\"}}}, "
    "\"outputSchema\": " EXEC_OUTPUT_SCHEMA ", "
    "\"annotations\": {\"readOnlyHint\": false, \"destructiveHint\": true, \"openWorldHint\": false}},"

    "{\"name\": \"list_files\", \"title\": \"List a directory\", \"description\": \"Lists a directory of the "
    "sandbox (ls -la): names, types, sizes, permissions.\", "
    "\"inputSchema\": {\"type\": \"object\", \"required\": [\"path\"], \"properties\": {" SANDBOX_ID_PROP ", "
    "\"path\": {\"type\": \"string\", \"description\": \"Absolute, or relative to /work, e.g. /work\"}}}, "
    "\"outputSchema\": " EXEC_OUTPUT_SCHEMA ", "
    "\"annotations\": {\"readOnlyHint\": true, \"openWorldHint\": false}},"

    "{\"name\": \"sandbox_delete\", \"title\": \"Delete a sandbox\", \"description\": \"Ends a sandbox: its "
    "processes are killed and its files removed.\", "
    "\"inputSchema\": {\"type\": \"object\", \"required\": [\"sandbox_id\"], \"properties\": {" SANDBOX_ID_PROP "}}, "
    "\"outputSchema\": {\"type\": \"object\", \"required\": [\"sandbox_id\", \"deleted\"], \"properties\": {"
    "\"sandbox_id\": {\"type\": \"string\"}, \"deleted\": {\"type\": \"boolean\"}}}, "
    "\"annotations\": {\"readOnlyHint\": false, \"destructiveHint\": true, \"idempotentHint\": false, "
    "\"openWorldHint\": false}}"
    "]";
/* clang-format on */

static json_t *tools_parsed;

static void
load_tools(void)
{
	json_error_t jerr;
	tools_parsed = json_loads(tools_json, 0, &jerr);
	if (tools_parsed == NULL) /* a typo in the text above: every test of tools/list shows it */
		tools_parsed = json_array();
}

json_t *
lms_mcp_tools(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, load_tools);
	return json_deep_copy(tools_parsed);
}

/* ---- the output budget ---- */

static bool
continuation(unsigned char c)
{
	return (c & 0xC0) == 0x80;
}

char *
lms_mcp_budget(const char *text, size_t len, size_t budget, size_t *out_len)
{
	if (len <= budget) {
		char *copy = xmalloc(len + 1);
		memcpy(copy, text, len);
		copy[len] = '\0';
		*out_len = len;
		return copy;
	}
	size_t head = budget / 2, tail = len - budget / 2;
	while (head > 0 && continuation((unsigned char)text[head]))
		head--;
	while (tail < len && continuation((unsigned char)text[tail]))
		tail++;
	_cleanup_free_ char *marker = xasprintf("\n[… %zu bytes omitted …]\n", tail - head);
	size_t m = strlen(marker);
	char *out = xmalloc(head + m + (len - tail) + 1);
	memcpy(out, text, head);
	memcpy(out + head, marker, m);
	memcpy(out + head + m, text + tail, len - tail);
	*out_len = head + m + (len - tail);
	out[*out_len] = '\0';
	return out;
}

/* ---- results ---- */

__attribute__((format(printf, 1, 2))) static json_t *
error_result(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *raw = xvasprintf(fmt, ap);
	va_end(ap);
	size_t n; /* a %.40s may cut a character in two: JSON takes UTF-8 only */
	_cleanup_free_ char *text = lms_utf8_sanitize(raw, strlen(raw), &n);
	return json_pack("{s:[{s:s, s:s%}], s:b}", "content", "type", "text", "text", text, n, "isError", 1);
}

static json_t *
text_result(const char *text, json_t *structured, bool is_error)
{
	json_t *r = json_pack("{s:[{s:s, s:s}], s:b}", "content", "type", "text", "text", text, "isError", is_error);
	if (structured)
		json_object_set_new(r, "structuredContent", structured);
	return r;
}

/* ---- arguments: a model's mistakes become an error result that says what to change ---- */

struct call {
	struct lms_server *s;
	const char *tool;
	const json_t *args;
	int hangup_fd;
	const struct lms_mcp_progress *progress;
	char sandbox_id[SANDBOX_ID_MAX + 1];
	bool created;  /* the call made its sandbox */
	char *problem; /* what was wrong with the arguments */
};

/* A string argument; NULL (and c->problem when required, or of the wrong type) when absent. */
static const char *
arg_string(struct call *c, const char *key, bool required)
{
	json_t *v = c->args ? json_object_get(c->args, key) : NULL;
	if ((v == NULL || json_is_null(v)) && !required)
		return NULL;
	if (!json_is_string(v)) {
		if (c->problem == NULL)
			c->problem = xasprintf("%s: argument %s must be a string%s", c->tool, key,
					       v == NULL ? ", and it is missing" : "");
		return NULL;
	}
	if (strlen(json_string_value(v)) != json_string_length(v) && c->problem == NULL)
		c->problem = xasprintf("%s: argument %s has a NUL character", c->tool, key);
	return json_string_value(v);
}

/* A positive integer argument, or `def` when absent. */
static json_int_t
arg_positive(struct call *c, const char *key, json_int_t def)
{
	json_t *v = c->args ? json_object_get(c->args, key) : NULL;
	if (v == NULL || json_is_null(v))
		return def;
	/* Models often send 10.0 or "10": a whole number in either form is taken. */
	json_int_t n = 0;
	if (json_is_integer(v))
		n = json_integer_value(v);
	else if (json_is_real(v)) {
		double d = json_real_value(v); /* range first: a cast of what does not fit is undefined */
		if (d > (double)ARG_MAX_VALUE)
			n = ARG_MAX_VALUE; /* every double that large is whole */
		else if (d >= 1 && d == (double)(json_int_t)d)
			n = (json_int_t)d;
	} else if (json_is_string(v)) {
		char *end = NULL;
		errno = 0;
		long long parsed = strtoll(json_string_value(v), &end, 10);
		n = errno == 0 && end && *end == '\0' && end != json_string_value(v) ? parsed : 0;
	}
	if (n < 1) {
		if (c->problem == NULL)
			c->problem = xasprintf("%s: argument %s must be a positive whole number", c->tool, key);
		return def;
	}
	/* Past this, every use (a line number, milliseconds) is clamped anyway; below it, offset + limit
	 * cannot overflow. */
	return n > ARG_MAX_VALUE ? ARG_MAX_VALUE : n;
}

/* An absolute path: a relative one is taken from /work (so that no path can read as an option). */
static char *
arg_path(struct call *c)
{
	const char *p = arg_string(c, "path", true);
	if (p == NULL)
		return NULL;
	if (*p == '\0') {
		if (c->problem == NULL)
			c->problem =
			    xasprintf("%s: argument path is empty: give a file's path, e.g. /work/main.py", c->tool);
		return NULL;
	}
	return *p == '/' ? xstrdup(p) : xasprintf("/work/%s", p);
}

/* The call's sandbox: sandbox_id, or a new one made now (its id is said in the result). */
static json_t *
resolve_sandbox(struct call *c)
{
	const char *id = arg_string(c, "sandbox_id", false);
	if (c->problem)
		return NULL;
	if (id != NULL) {
		if (strlen(id) > SANDBOX_ID_MAX)
			return error_result("%s: sandbox_id %.40s… is not a sandbox id: use the one sandbox_create "
					    "returned (sbx_ and 16 hex digits)",
					    c->tool, id);
		snprintf(c->sandbox_id, sizeof(c->sandbox_id), "%s", id);
		return NULL;
	}
	_cleanup_error_ struct lms_error *err = NULL;
	json_t *empty = json_object();
	json_t *sbx = lms_sandbox_create_json(c->s, empty, &err);
	json_decref(empty);
	if (sbx == NULL)
		return error_result("%s: no sandbox_id was given and a new sandbox could not be made: %s", c->tool,
				    err->message);
	snprintf(c->sandbox_id, sizeof(c->sandbox_id), "%s", json_string_value(json_object_get(sbx, "id")));
	json_decref(sbx);
	c->created = true;
	return NULL;
}

/* ---- running a command in the call's sandbox ---- */

struct outcome {
	struct lms_buf out, err;
	struct lms_sandbox_result result;
};

static void
outcome_clear(struct outcome *o)
{
	lms_buf_clear(&o->out);
	lms_buf_clear(&o->err);
}

static void
report(struct call *c, double start_ms, size_t bytes, double *last_ms)
{
	double now = lms_monotonic_ms();
	*last_ms = now;
	if (c->progress->fn == NULL)
		return;
	_cleanup_free_ char *msg =
	    xasprintf("%s running for %.1f s, %zu bytes of output so far", c->tool, (now - start_ms) / 1e3, bytes);
	c->progress->fn(c->progress->cls, now - start_ms, msg);
}

/* The events of a started command to its end, reporting progress meanwhile when asked. */
static int
follow(struct call *c, struct lms_exec *x, struct outcome *o, struct lms_error **err)
{
	double start = lms_monotonic_ms(), last = 0;
	for (;;) {
		if (c->progress != NULL) {
			struct pollfd p[2] = {{.fd = lms_job_fd(lms_exec_job(x)), .events = POLLIN},
					      {.fd = c->hangup_fd, .events = POLLRDHUP}};
			int n = poll(p, 2, PROGRESS_TICK_MS);
			if (n < 0 && errno != EINTR)
				return lms_error_set(err, LMS_ERR_INTERNAL, errno, "poll the command's events");
			if (n == 0) {
				report(c, start, o->out.len + o->err.len, &last);
				continue;
			}
		}
		struct lms_job_event ev;
		int r = lms_exec_next(x, c->hangup_fd, &ev, err);
		if (r < 0)
			return -1;
		if (r == 0)
			return lms_error_set(err, LMS_ERR_INTERNAL, 0, "the command ended without a result");
		if (ev.type == LMS_JOB_RESULT) {
			o->result = ev.result;
			return 0;
		}
		if (ev.type == LMS_JOB_ERROR) {
			*err = ev.error;
			return -1;
		}
		lms_buf_append(ev.type == LMS_JOB_STDOUT ? &o->out : &o->err, ev.data, ev.len);
		if (c->progress != NULL && c->progress->output != NULL)
			c->progress->output(c->progress->cls, ev.type == LMS_JOB_STDOUT ? 1 : 2, ev.data, ev.len);
		free(ev.data);
		if (c->progress != NULL && lms_monotonic_ms() - last >= PROGRESS_MIN_MS)
			report(c, start, o->out.len + o->err.len, &last);
	}
}

/* Runs argv (with stdin_data, when not NULL) in the call's sandbox. -1 with an error result in *fail:
 * the sandbox is gone, the server is busy, the command could not start. */
static int
run(struct call *c, const char *const *argv, const char *stdin_data, size_t stdin_len, json_int_t timeout_ms,
    struct outcome *o, json_t **fail)
{
	*o = (struct outcome){0};
	json_t *body = json_object();
	json_t *av = json_array();
	for (size_t i = 0; argv[i]; i++)
		json_array_append_new(av, json_string(argv[i]));
	json_object_set_new(body, "argv", av);
	if (stdin_data != NULL)
		json_object_set_new(body, "stdin", json_stringn(stdin_data, stdin_len));
	if (timeout_ms > 0)
		json_object_set_new(body, "timeout_ms", json_integer(timeout_ms));
	_cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);

	struct lms_sandboxes *sbs = c->s->sandboxes;
	_cleanup_error_ struct lms_error *err = NULL;
	const char *reason = NULL;
	const struct lms_sandbox_settings *base = NULL;
	uint64_t key = 0;
	struct lms_sandbox_entry *entry = lms_sandboxes_acquire(sbs, c->sandbox_id, &key, &base, &reason, &err);
	if (entry == NULL) {
		*fail =
		    error_result("%s: sandbox %s does not exist%s%s%s: make one with sandbox_create, or leave "
				 "sandbox_id out to get a new one",
				 c->tool, c->sandbox_id, reason ? " (" : "", reason ? reason : "", reason ? ")" : "");
		return -1;
	}
	struct lms_exec_request *xr = text ? lms_sandbox_command_parse(c->s, base, text, strlen(text), &err) : NULL;
	struct lms_exec *x = NULL;
	int r = -1;
	if (xr != NULL && lms_sandboxes_claim(sbs, entry, &err) == 0) {
		if (lms_exec_start(c->s, key, &xr->spec, &x, &err) == 0) {
			lms_sandboxes_attach_job(sbs, entry, lms_exec_job(x));
			r = follow(c, x, o, &err);
		} else {
			lms_sandboxes_unclaim(sbs, entry);
		}
	}
	lms_sandboxes_release(sbs, entry, x ? lms_exec_job(x) : NULL);
	lms_exec_end(x);
	lms_exec_request_free(xr);
	if (r < 0) {
		outcome_clear(o);
		*fail =
		    error_result("%s: the command could not run: %s", c->tool, err ? err->message : "unknown error");
	}
	return r;
}

/* The exec result fields, the streams within the budget (split between them when both are long). */
static json_t *
structured(struct call *c, const struct outcome *o)
{
	size_t lo = o->out.len, le = o->err.len, half = LMS_MCP_OUTPUT_BUDGET / 2;
	size_t bo = lo, be = le;
	if (lo + le > LMS_MCP_OUTPUT_BUDGET) {
		if (le <= half)
			bo = LMS_MCP_OUTPUT_BUDGET - le;
		else if (lo <= half)
			be = LMS_MCP_OUTPUT_BUDGET - lo;
		else
			bo = be = half;
	}
	json_t *full = lms_exec_result_json(&o->result, o->out.data ? o->out.data : "", lo,
					    o->err.data ? o->err.data : "", le, LMS_ENCODING_UTF8);
	const char *streams[] = {"stdout", "stderr"};
	size_t budgets[] = {bo, be};
	for (int i = 0; i < 2; i++) {
		json_t *v = json_object_get(full, streams[i]);
		size_t n;
		char *cut = lms_mcp_budget(json_string_value(v), json_string_length(v), budgets[i], &n);
		json_object_set_new(full, streams[i], json_stringn(cut, n));
		free(cut);
	}
	json_object_set_new(full, "sandbox_id", json_string(c->sandbox_id));
	return full;
}

static bool
failed(const struct outcome *o)
{
	return o->result.exit_code != 0 || o->result.timed_out || o->result.oom_killed || o->result.cancelled;
}

/* The flags first, then the output: what a model must see before it reads on. */
static char *
summary(struct call *c, const struct outcome *o, json_int_t timeout_ms)
{
	struct lms_buf b = {0};
	char *line;
	if (o->result.timed_out)
		line = xasprintf("timed out: killed after %lld ms (pass a larger timeout_ms, or run it in the "
				 "background with nohup ... &)\n",
				 (long long)(timeout_ms > 0 ? timeout_ms : (json_int_t)o->result.duration_ms));
	else if (o->result.oom_killed)
		line = xasprintf("killed: out of memory (exit code %d)\n", o->result.exit_code);
	else if (o->result.cancelled)
		line = xasprintf("cancelled\n");
	else
		line =
		    xasprintf("exit code %d%s\n", o->result.exit_code, o->result.signal ? " (killed by a signal)" : "");
	lms_buf_append(&b, line, strlen(line));
	free(line);
	json_t *st = structured(c, o);
	const char *streams[] = {"stdout", "stderr"};
	for (int i = 0; i < 2; i++) {
		json_t *v = json_object_get(st, streams[i]);
		if (json_string_length(v) == 0)
			continue;
		line = xasprintf("--- %s ---\n", streams[i]);
		lms_buf_append(&b, line, strlen(line));
		free(line);
		lms_buf_append(&b, json_string_value(v), json_string_length(v));
		if (json_string_value(v)[json_string_length(v) - 1] != '\n')
			lms_buf_append(&b, "\n", 1);
	}
	json_decref(st);
	if (c->created) {
		line = xasprintf("(this call made sandbox %s: pass \"sandbox_id\": \"%s\" to later calls to use it "
				 "again)\n",
				 c->sandbox_id, c->sandbox_id);
		lms_buf_append(&b, line, strlen(line));
		free(line);
	}
	size_t n;
	return lms_buf_steal(&b, &n);
}

/* A result whose text is `ok_text` when the command succeeded, its summary otherwise. */
static json_t *
command_result(struct call *c, const struct outcome *o, const char *ok_text, json_int_t timeout_ms)
{
	bool bad = failed(o);
	_cleanup_free_ char *text = NULL;
	if (bad || ok_text == NULL)
		text = summary(c, o, timeout_ms);
	else if (c->created)
		text = xasprintf("%s\n(this call made sandbox %s: pass \"sandbox_id\": \"%s\" to later calls to use it "
				 "again)",
				 ok_text, c->sandbox_id, c->sandbox_id);
	else
		text = xstrdup(ok_text);
	return text_result(text, structured(c, o), bad);
}

/* ---- the tools ---- */

static json_t *
tool_sandbox_create(struct call *c)
{
	json_t *body = json_object();
	const char *keys[] = {"image", "ttl_s", "network"};
	for (size_t i = 0; i < 3; i++) {
		json_t *v = c->args ? json_object_get(c->args, keys[i]) : NULL;
		if (v != NULL && !json_is_null(v))
			json_object_set(body, keys[i], v);
	}
	_cleanup_error_ struct lms_error *err = NULL;
	json_t *sbx = lms_sandbox_create_json(c->s, body, &err);
	json_decref(body);
	if (sbx == NULL)
		return error_result("sandbox_create: %s", err->message);
	const char *id = json_string_value(json_object_get(sbx, "id"));
	json_object_set_new(sbx, "sandbox_id", json_string(id));
	_cleanup_free_ char *text =
	    xasprintf("Created sandbox %s (image %s, expires after %lld s idle). Pass \"sandbox_id\": \"%s\" to "
		      "bash, read_file, write_file, edit_file and list_files.",
		      id, json_string_value(json_object_get(sbx, "image")),
		      (long long)json_integer_value(json_object_get(sbx, "ttl_s")), id);
	return text_result(text, sbx, false);
}

static json_t *
tool_sandbox_delete(struct call *c)
{
	const char *id = arg_string(c, "sandbox_id", true);
	if (c->problem)
		return NULL;
	_cleanup_error_ struct lms_error *err = NULL;
	const char *reason = NULL;
	if (lms_sandboxes_delete(c->s->sandboxes, id, &reason, &err) < 0)
		return error_result("sandbox_delete: %s%s%s%s", err->message, reason ? " (" : "", reason ? reason : "",
				    reason ? ")" : "");
	_cleanup_free_ char *text = xasprintf("Deleted sandbox %s.", id);
	return text_result(text, json_pack("{s:s, s:b}", "sandbox_id", id, "deleted", 1), false);
}

static json_t *
tool_bash(struct call *c)
{
	const char *command = arg_string(c, "command", true);
	json_int_t timeout_ms = arg_positive(c, "timeout_ms", 0);
	json_t *fail = c->problem ? NULL : resolve_sandbox(c);
	if (c->problem || fail)
		return fail;
	/* bash -c where the image has bash, as API.md's "cmd" does; sh -c otherwise. */
	const char *argv[] = {c->s->have_bash ? "bash" : "sh", "-c", command, NULL};
	struct outcome o;
	if (run(c, argv, NULL, 0, timeout_ms, &o, &fail) < 0)
		return fail;
	json_t *r = command_result(c, &o, NULL, timeout_ms);
	outcome_clear(&o);
	return r;
}

static json_t *
tool_read_file(struct call *c)
{
	_cleanup_free_ char *path = arg_path(c);
	json_int_t offset = arg_positive(c, "offset", 1), limit = arg_positive(c, "limit", 0);
	json_t *fail = c->problem ? NULL : resolve_sandbox(c);
	if (c->problem || fail)
		return fail;
	_cleanup_free_ char *range = limit > 0
					 ? xasprintf("%lld,%lldp", (long long)offset, (long long)(offset + limit - 1))
					 : xasprintf("%lld,$p", (long long)offset);
	const char *cat[] = {"cat", "--", path, NULL};
	const char *sed[] = {"sed", "-n", "-e", range, "--", path, NULL};
	struct outcome o;
	if (run(c, offset == 1 && limit == 0 ? cat : sed, NULL, 0, 0, &o, &fail) < 0)
		return fail;
	json_t *r;
	if (failed(&o)) {
		r = command_result(c, &o, NULL, 0);
	} else {
		json_t *st = structured(c, &o);
		const char *content = json_string_value(json_object_get(st, "stdout"));
		r = command_result(c, &o, *content ? content : "(the file is empty here)", 0);
		json_decref(st);
	}
	outcome_clear(&o);
	return r;
}

/* Writes content to path in the sandbox as its user: parents made, the file truncated in place (its
 * mode and owner stay). */
static int
write_content(struct call *c, const char *path, const char *content, size_t len, struct outcome *o, json_t **fail)
{
	const char *argv[] = {"sh", "-c", "mkdir -p -- \"$(dirname -- \"$1\")\" && cat > \"$1\"", "sh", path, NULL};
	return run(c, argv, content, len, 0, o, fail);
}

static json_t *
tool_write_file(struct call *c)
{
	_cleanup_free_ char *path = arg_path(c);
	const char *content = arg_string(c, "content", true);
	json_t *fail = c->problem ? NULL : resolve_sandbox(c);
	if (c->problem || fail)
		return fail;
	size_t len = json_string_length(json_object_get(c->args, "content"));
	struct outcome o;
	if (write_content(c, path, content, len, &o, &fail) < 0)
		return fail;
	_cleanup_free_ char *ok = xasprintf("Wrote %zu bytes to %s.", len, path);
	json_t *r = command_result(c, &o, ok, 0);
	outcome_clear(&o);
	return r;
}

static size_t
count_matches(const char *hay, size_t hay_len, const char *needle, size_t n, const char **first)
{
	size_t count = 0;
	*first = NULL;
	for (const char *p = hay; n > 0 && (size_t)(hay + hay_len - p) >= n;) {
		const char *m = memmem(p, (size_t)(hay + hay_len - p), needle, n);
		if (m == NULL)
			break;
		if (count++ == 0)
			*first = m;
		p = m + n;
	}
	return count;
}

static json_t *
tool_edit_file(struct call *c)
{
	_cleanup_free_ char *path = arg_path(c);
	const char *old = arg_string(c, "old", true);
	const char *new = arg_string(c, "new", true);
	if (old != NULL && *old == '\0' && c->problem == NULL)
		c->problem = xasprintf("edit_file: old is empty: give the exact text to replace");
	json_t *fail = c->problem ? NULL : resolve_sandbox(c);
	if (c->problem || fail)
		return fail;
	size_t old_len = json_string_length(json_object_get(c->args, "old"));
	size_t new_len = json_string_length(json_object_get(c->args, "new"));
	const char *cat[] = {"cat", "--", path, NULL};
	struct outcome o;
	if (run(c, cat, NULL, 0, 0, &o, &fail) < 0)
		return fail;
	json_t *r = NULL;
	const char *text = o.out.data ? o.out.data : "";
	const char *first = NULL;
	size_t count = 0;
	if (failed(&o)) {
		r = command_result(c, &o, NULL, 0);
	} else if (o.result.stdout_truncated) {
		r = error_result("edit_file: %s is larger than the output limit of a command: edit it with bash "
				 "(sed, python) instead",
				 path);
	} else {
		size_t ignored;
		_cleanup_free_ char *clean = lms_utf8_sanitize(text, o.out.len, &ignored);
		if (ignored != o.out.len || memcmp(clean, text, o.out.len) != 0)
			r = error_result("edit_file: %s is not UTF-8 text: edit it with bash instead", path);
		else if ((count = count_matches(text, o.out.len, old, old_len, &first)) != 1)
			r = error_result(
			    "edit_file: old matched %zu times in %s; it must match exactly once%s", count, path,
			    count == 0 ? ": read the file (read_file) and copy the text exactly, whitespace "
					 "included"
				       : ": include more of the lines around it to make it unique");
	}
	if (r != NULL) {
		outcome_clear(&o);
		return r;
	}
	size_t head = (size_t)(first - text), len = o.out.len - old_len + new_len;
	char *edited = xmalloc(len + 1);
	memcpy(edited, text, head);
	memcpy(edited + head, new, new_len);
	memcpy(edited + head + new_len, first + old_len, o.out.len - head - old_len);
	edited[len] = '\0';
	outcome_clear(&o);
	int w = write_content(c, path, edited, len, &o, &fail);
	free(edited);
	if (w < 0)
		return fail;
	_cleanup_free_ char *ok = xasprintf("Replaced 1 occurrence in %s (now %zu bytes).", path, len);
	r = command_result(c, &o, ok, 0);
	outcome_clear(&o);
	return r;
}

static json_t *
tool_list_files(struct call *c)
{
	_cleanup_free_ char *path = arg_path(c);
	json_t *fail = c->problem ? NULL : resolve_sandbox(c);
	if (c->problem || fail)
		return fail;
	const char *argv[] = {"ls", "-la", "--", path, NULL};
	struct outcome o;
	if (run(c, argv, NULL, 0, 0, &o, &fail) < 0)
		return fail;
	json_t *r = command_result(c, &o, NULL, 0);
	outcome_clear(&o);
	return r;
}

/* The call into its sandbox's audit log: the command or the path, the outcome, the output's bytes. */
static void
record(const struct call *c, const json_t *result, double started_s, double started_ms)
{
	const json_t *sc = json_object_get(result, "structuredContent");
	json_t *exit_code = json_object_get(sc, "exit_code");
	const char *status = json_is_true(json_object_get(sc, "timed_out"))	? "timed_out"
			     : json_is_true(json_object_get(sc, "oom_killed"))	? "oom_killed"
			     : json_is_true(json_object_get(result, "isError")) ? "error"
										: "ok";
	long long bytes = -1;
	if (json_is_string(json_object_get(sc, "stdout")))
		bytes = (long long)(json_string_length(json_object_get(sc, "stdout")) +
				    json_string_length(json_object_get(sc, "stderr")));
	else if (json_is_string(json_object_get(c->args, "content")))
		bytes = (long long)json_string_length(json_object_get(c->args, "content"));
	struct lms_history_call h = {.via = c->progress && c->progress->via ? c->progress->via : "mcp",
				     .tool = c->tool,
				     .command = json_string_value(json_object_get(c->args, "command")),
				     .path = json_string_value(json_object_get(c->args, "path")),
				     .status = status,
				     .exit_code = json_is_integer(exit_code) ? (int)json_integer_value(exit_code) : -1,
				     .started_s = started_s,
				     .duration_ms = lms_monotonic_ms() - started_ms,
				     .bytes = bytes};
	lms_sandboxes_record(c->s->sandboxes, c->sandbox_id, lms_history_entry(&h));
}

static const struct tool {
	const char *name;
	json_t *(*fn)(struct call *c);
} tools[] = {
    {"sandbox_create", tool_sandbox_create}, {"bash", tool_bash},	    {"read_file", tool_read_file},
    {"write_file", tool_write_file},	     {"edit_file", tool_edit_file}, {"list_files", tool_list_files},
    {"sandbox_delete", tool_sandbox_delete},
};

bool
lms_mcp_tool_exists(const char *name)
{
	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
		if (strcmp(name, tools[i].name) == 0)
			return true;
	return false;
}

json_t *
lms_mcp_tool_call(struct lms_server *s, const char *name, const json_t *args, int hangup_fd,
		  const struct lms_mcp_progress *progress)
{
	struct call c = {.s = s, .tool = name, .args = args, .hangup_fd = hangup_fd, .progress = progress};
	json_t *r = NULL;
	double started_s = lms_wall_s(), started_ms = lms_monotonic_ms();
	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
		if (strcmp(name, tools[i].name) == 0)
			r = tools[i].fn(&c);
	if (r == NULL)
		r = error_result("%s (see the tool's inputSchema in tools/list)",
				 c.problem ? c.problem : "unknown tool");
	free(c.problem);
	if (c.sandbox_id[0] != '\0')
		record(&c, r, started_s, started_ms);
	return r;
}
