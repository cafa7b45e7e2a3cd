/*
 * The agent loop (agent.h). A step is one model call; the tool calls it asks for run in order, each a
 * command of the run's sandbox through mcp-tools.c (so the agent, MCP and the HTTP routes share one
 * implementation of every tool and of the output budget). The run's whole budget (timeout_ms) bounds the
 * commands: each gets at most step_timeout_ms and never more than what is left of the run.
 */
#include "server/agent.h"

#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "api/exec-json.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/utf8.h"
#include "llm/chat.h"
#include "server/agent-calls.h"
#include "server/mcp-tools.h"
#include "server/sandboxes.h"
#include "server/server.h"

#define DEFAULT_MAX_STEPS 20
#define MAX_MAX_STEPS 1000
#define DEFAULT_TIMEOUT_MS 600000
#define DEFAULT_STEP_TIMEOUT_MS 120000
#define MAX_TIMEOUT_MS (24LL * 3600 * 1000)

/* The agent's tools: the MCP tools that work inside a sandbox; the run holds the sandbox itself. */
static const char *const agent_tools[] = {"bash", "read_file", "write_file", "edit_file", "list_files"};
#define N_TOOLS (sizeof(agent_tools) / sizeof(agent_tools[0]))

struct lms_agent {
	struct lms_server *s;
	json_t *body; /* the request, kept for model, messages, image, network */
	const char *sandbox_id;
	json_int_t max_steps, timeout_ms, step_timeout_ms;
	bool stream;
	bool confirm; /* stop before running the model's tool calls: the client asks its user */
};

static bool
agent_tool(const char *name)
{
	for (size_t i = 0; i < N_TOOLS; i++)
		if (strcmp(name, agent_tools[i]) == 0)
			return true;
	return false;
}

/* ---- the request ---- */

__attribute__((format(printf, 1, 2))) static json_t *
invalid(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	return lms_api_error_json("invalid_request_error", "invalid_request", msg);
}

/* A whole number field in [1, max], or def when absent; -1 when it is something else. */
static json_int_t
number(const json_t *body, const char *key, json_int_t def, json_int_t max)
{
	json_t *v = json_object_get(body, key);
	if (v == NULL || json_is_null(v))
		return def;
	if (!json_is_integer(v) || json_integer_value(v) < 1)
		return -1;
	return json_integer_value(v) > max ? max : json_integer_value(v);
}

struct lms_agent *
lms_agent_parse(struct lms_server *s, const json_t *body, json_t **error)
{
	struct lms_agent a = {.s = s};
	json_t *model = json_object_get(body, "model"), *prompt = json_object_get(body, "prompt");
	json_t *messages = json_object_get(body, "messages"), *sid = json_object_get(body, "sandbox_id");
	json_t *stream = json_object_get(body, "stream"), *image = json_object_get(body, "image");
	json_t *confirm = json_object_get(body, "confirm");
	if (!json_is_string(model) || json_string_length(model) == 0)
		*error =
		    invalid("%s is required: the model to run, e.g. \"ollama/qwen2.5-coder:7b\" (GET /v1/models lists "
			    "them)",
			    "model");
	else if (!json_is_string(prompt) && !(json_is_array(messages) && json_array_size(messages) > 0))
		*error =
		    invalid("%s: send \"prompt\": \"the task\" or \"messages\": [{\"role\": \"user\", \"content\": "
			    "\"...\"}] (a non-empty array)",
			    "prompt or messages");
	else if (json_is_string(prompt) && messages != NULL && !json_is_null(messages))
		*error = invalid("%s: send one of them, not both", "prompt and messages");
	else if (sid != NULL && !json_is_null(sid) && !json_is_string(sid))
		*error = invalid("%s must be a string (a sandbox's id, sbx_...)", "sandbox_id");
	else if (image != NULL && !json_is_null(image) && !json_is_string(image))
		*error = invalid("%s must be a string (an image's name)", "image");
	else if (stream != NULL && !json_is_null(stream) && !json_is_boolean(stream))
		*error = invalid("%s must be true or false", "stream");
	else if (confirm != NULL && !json_is_null(confirm) && !json_is_boolean(confirm))
		*error = invalid("%s must be true or false", "confirm");
	else if ((a.max_steps = number(body, "max_steps", DEFAULT_MAX_STEPS, MAX_MAX_STEPS)) < 0)
		*error = invalid("%s must be a whole number of at least 1", "max_steps");
	else if ((a.timeout_ms = number(body, "timeout_ms", DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS)) < 0)
		*error = invalid("%s must be a whole number of milliseconds, at least 1", "timeout_ms");
	else if ((a.step_timeout_ms = number(body, "step_timeout_ms", DEFAULT_STEP_TIMEOUT_MS, MAX_TIMEOUT_MS)) < 0)
		*error = invalid("%s must be a whole number of milliseconds, at least 1", "step_timeout_ms");
	else {
		for (size_t i = 0; json_is_array(messages) && i < json_array_size(messages); i++) {
			json_t *m = json_array_get(messages, i);
			if (!json_is_object(m) || !json_is_string(json_object_get(m, "role"))) {
				*error = invalid("%s: each message must be an object with a string role", "messages");
				return NULL;
			}
		}
		struct lms_agent *out = xmalloc(sizeof(*out));
		*out = a;
		out->body = json_deep_copy(body);
		out->sandbox_id = json_string_value(json_object_get(out->body, "sandbox_id"));
		out->stream = json_is_true(stream);
		out->confirm = json_is_true(confirm);
		return out;
	}
	return NULL;
}

int
lms_agent_streamed(const struct lms_agent *a)
{
	return a->stream;
}

void
lms_agent_free(struct lms_agent *a)
{
	if (a == NULL)
		return;
	json_decref(a->body);
	free(a);
}

/* ---- what the model is told ---- */

/* The five tools as OpenAI function tools: the MCP schemas without sandbox_id (the run holds it). */
static json_t *
openai_tools(void)
{
	json_t *mcp = lms_mcp_tools(), *out = json_array();
	size_t i;
	json_t *t;
	json_array_foreach(mcp, i, t)
	{
		const char *name = json_string_value(json_object_get(t, "name"));
		if (name == NULL || !agent_tool(name))
			continue;
		json_t *params = json_deep_copy(json_object_get(t, "inputSchema"));
		json_object_del(json_object_get(params, "properties"), "sandbox_id");
		json_array_append_new(out, json_pack("{s:s, s:{s:s, s:O, s:o}}", "type", "function", "function", "name",
						     name, "description", json_object_get(t, "description"),
						     "parameters", params));
	}
	json_decref(mcp);
	return out;
}

static char *
system_prompt(const struct lms_agent *a, const json_t *sbx)
{
	json_t *limits = json_object_get(sbx, "limits");
	json_int_t mem = json_integer_value(json_object_get(limits, "memory_mb"));
	_cleanup_free_ char *memory = mem > 0 ? xasprintf(", %lld MB of memory", (long long)mem) : xstrdup("");
	return xasprintf(
	    "You are working in an isolated Linux sandbox (image %s; working directory /work; %s). Use the tools to "
	    "run shell commands and to read, write and edit files: files and background processes stay between "
	    "calls. Each command is killed after %lld ms%s; you have at most %lld steps. Look at each result before "
	    "the next step. When the task is done, answer in plain text without calling a tool.",
	    json_string_value(json_object_get(sbx, "image")) ? json_string_value(json_object_get(sbx, "image"))
							     : "host",
	    json_is_true(json_object_get(sbx, "network")) ? "network access" : "no network access",
	    (long long)a->step_timeout_ms, memory, (long long)a->max_steps);
}

/* The conversation so far: our system prompt first (a client's own system message joined to it). */
static json_t *
first_messages(const struct lms_agent *a, const json_t *sbx)
{
	_cleanup_free_ char *sys = system_prompt(a, sbx);
	json_t *msgs = json_array();
	json_t *given = json_object_get(a->body, "messages");
	json_t *first = json_array_get(given, 0);
	size_t from = 0;
	if (json_is_object(first) && strcmp(json_string_value(json_object_get(first, "role")), "system") == 0 &&
	    json_is_string(json_object_get(first, "content"))) {
		char *joined = xasprintf("%s\n\n%s", sys, json_string_value(json_object_get(first, "content")));
		free(sys);
		sys = joined;
		from = 1;
	}
	json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", sys));
	if (json_is_string(json_object_get(a->body, "prompt")))
		json_array_append_new(
		    msgs, json_pack("{s:s, s:O}", "role", "user", "content", json_object_get(a->body, "prompt")));
	for (size_t i = from; i < json_array_size(given); i++)
		json_array_append_new(msgs, json_deep_copy(json_array_get(given, i)));
	return msgs;
}

/* ---- one run ---- */

struct run {
	struct lms_agent *a;
	const struct lms_agent_sink *sink;
	int hangup_fd;
	const char *tool_id;	   /* the call whose output is being streamed */
	json_int_t step;	   /* model calls made so far: a tool_call event says which step asked for it */
	double model_ms, tools_ms; /* the run's time waiting on the model, and in its tool calls */
	unsigned next_id;	   /* for calls that came without an id */
};

static void
emit(struct run *r, const char *name, json_t *data)
{
	if (r->sink != NULL && r->sink->event != NULL)
		r->sink->event(r->sink->cls, name, data);
	else
		json_decref(data);
}

static bool
hung_up(int fd)
{
	if (fd < 0)
		return false;
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static int
on_chunk(json_t *chunk, void *cls)
{
	struct run *r = cls;
	json_t *delta = json_object_get(json_array_get(json_object_get(chunk, "choices"), 0), "delta");
	json_t *content = json_object_get(delta, "content");
	if (json_is_string(content) && json_string_length(content) > 0)
		emit(r, "assistant", json_pack("{s:O}", "delta", content));
	return 0;
}

static void
on_output(void *cls, int stream, const char *data, size_t len)
{
	struct run *r = cls;
	size_t n;
	char *clean = lms_utf8_sanitize(data, len, &n);
	emit(r, "tool_output",
	     json_pack("{s:s, s:s, s:s%}", "id", r->tool_id, "stream", stream == 1 ? "stdout" : "stderr", "data", clean,
		       n));
	free(clean);
}

/* The assistant's tool calls in OpenAI form (each with an id and its arguments as text), from tool_calls
 * or, failing that, from its text; NULL when there are none. *from_content says which. */
static json_t *
calls_of(struct run *r, const json_t *message, bool *from_content)
{
	json_t *given = json_object_get(message, "tool_calls");
	*from_content = false;
	if (json_is_array(given) && json_array_size(given) > 0) {
		json_t *out = json_array();
		size_t i;
		json_t *c;
		json_array_foreach(given, i, c)
		{
			json_t *fn = json_object_get(c, "function");
			json_t *name = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
			json_t *id = json_object_get(c, "id");
			char cid[32];
			snprintf(cid, sizeof(cid), "call_%u", r->next_id++);
			char *text = json_is_string(args)	   ? xstrdup(json_string_value(args))
				     : args && !json_is_null(args) ? json_dumps(args, LMS_JSON_FLAGS)
								   : xstrdup("");
			json_array_append_new(
			    out,
			    json_pack("{s:s, s:s, s:{s:s, s:s}}", "id",
				      json_is_string(id) && json_string_length(id) > 0 ? json_string_value(id) : cid,
				      "type", "function", "function", "name",
				      json_is_string(name) ? json_string_value(name) : "", "arguments",
				      text ? text : ""));
			free(text);
		}
		return out;
	}
	json_t *found =
	    lms_agent_content_calls(json_string_value(json_object_get(message, "content")), agent_tool, r->next_id);
	if (found != NULL) {
		r->next_id += (unsigned)json_array_size(found);
		*from_content = true;
	}
	return found;
}

/* The result text of one call for the model, with the fields of its tool_result event in *event. */
static char *
run_call(struct run *r, const char *sandbox_id, const char *name, const char *arguments, double deadline,
	 json_t **event)
{
	*event = json_pack("{s:s, s:n, s:b, s:b}", "name", name, "exit_code", "timed_out", 0, "oom_killed", 0);
	if (!agent_tool(name)) {
		json_object_set_new(*event, "is_error", json_true());
		return xasprintf("error: there is no tool named \"%.100s\". The tools are bash, read_file, write_file, "
				 "edit_file and list_files: call one of them.",
				 name);
	}
	json_error_t jerr;
	json_t *args = *arguments ? json_loads(arguments, JSON_REJECT_DUPLICATES, &jerr) : json_object();
	if (!json_is_object(args)) {
		json_decref(args);
		json_object_set_new(*event, "is_error", json_true());
		if (*arguments == '\0' || args != NULL)
			return xasprintf(
			    "error: the arguments of %s must be one JSON object, e.g. %s. Call it again.", name,
			    strcmp(name, "bash") == 0 ? "{\"command\": \"ls -la\"}" : "{\"path\": \"/work/x\"}");
		return xasprintf("error: the arguments of %s are not valid JSON (%s, at character %d). Send one JSON "
				 "object, with the quotes and newlines inside strings escaped, and call it again.",
				 name, jerr.text, jerr.position);
	}
	json_object_set_new(args, "sandbox_id", json_string(sandbox_id));
	if (strcmp(name, "bash") == 0) {
		/* The step's budget, and never past the run's. */
		json_int_t left = (json_int_t)(deadline - lms_monotonic_ms());
		json_int_t cap = r->a->step_timeout_ms < left ? r->a->step_timeout_ms : left;
		json_t *t = json_object_get(args, "timeout_ms");
		if (cap < 1)
			cap = 1;
		if (t == NULL || json_is_null(t) || (json_is_integer(t) && json_integer_value(t) > cap))
			json_object_set_new(args, "timeout_ms", json_integer(cap));
	}
	struct lms_mcp_progress progress = {.cls = r, .output = on_output, .via = "agent"};
	double t = lms_monotonic_ms();
	json_t *res = lms_mcp_tool_call(r->a->s, name, args, r->hangup_fd, &progress);
	r->tools_ms += lms_monotonic_ms() - t;
	json_decref(args);
	json_t *sc = json_object_get(res, "structuredContent");
	const char *keys[] = {"exit_code", "timed_out", "oom_killed", "duration_ms"};
	for (size_t i = 0; i < 4; i++)
		if (json_object_get(sc, keys[i]) != NULL)
			json_object_set(*event, keys[i], json_object_get(sc, keys[i]));
	json_object_set(*event, "is_error", json_object_get(res, "isError"));
	const char *text =
	    json_string_value(json_object_get(json_array_get(json_object_get(res, "content"), 0), "text"));
	char *out = xstrdup(text ? text : "");
	json_decref(res);
	return out;
}

/* An Ollama model's context: the largest asked for so far, and a warning event the first time the
 * conversation outgrows the model (Ollama then drops its oldest part: the model may forget its task). */
static void
note_context(struct run *r, const struct lms_ollama_context *c, json_t **context)
{
	if (*context == NULL)
		*context = json_pack("{s:I, s:I, s:I, s:b}", "num_ctx", (json_int_t)0, "limit", (json_int_t)c->limit,
				     "needed", (json_int_t)0, "exceeded", 0);
	if (c->num_ctx > json_integer_value(json_object_get(*context, "num_ctx")))
		json_object_set_new(*context, "num_ctx", json_integer(c->num_ctx));
	if (c->needed > json_integer_value(json_object_get(*context, "needed")))
		json_object_set_new(*context, "needed", json_integer(c->needed));
	if (c->exceeded && !json_is_true(json_object_get(*context, "exceeded"))) {
		json_object_set_new(*context, "exceeded", json_true());
		_cleanup_free_ char *msg = xasprintf(
		    "the conversation (about %lld tokens with room for the answer) is longer than the model's context "
		    "(%lld tokens): Ollama drops its oldest part, so the model may lose the task. Use a model with "
		    "a longer context, or start a new run with a shorter conversation.",
		    (long long)c->needed, (long long)c->limit);
		emit(r, "warning", json_pack("{s:s, s:s}", "code", "context_exceeded", "message", msg));
	}
}

static void
add_usage(json_t *sum, const json_t *usage)
{
	const char *keys[] = {"prompt_tokens", "completion_tokens", "total_tokens"};
	for (size_t i = 0; i < 3; i++) {
		json_t *v = json_object_get(usage, keys[i]);
		if (json_is_integer(v))
			json_object_set_new(
			    sum, keys[i],
			    json_integer(json_integer_value(json_object_get(sum, keys[i])) + json_integer_value(v)));
	}
}

/* A failed model call as the API's error object and status. */
static json_t *
model_error(const struct lms_chat_result *res, const struct lms_error *e, unsigned *status)
{
	if (e->kind == LMS_ERR_NOT_FOUND) {
		*status = 404;
		return lms_api_error_json("invalid_request_error", "model_not_found", e->message);
	}
	*status = e->kind == LMS_ERR_BACKEND && res->status >= 400 ? (unsigned)res->status : lms_error_status(e);
	_cleanup_free_ char *msg =
	    e->kind == LMS_ERR_BACKEND && res->body.len > 0
		? xasprintf("%s: %.*s", e->message, (int)(res->body.len > 500 ? 500 : res->body.len), res->body.data)
		: xstrdup(e->message);
	size_t n;
	_cleanup_free_ char *clean = lms_utf8_sanitize(msg, strlen(msg), &n);
	return lms_api_error_json(*status < 500 ? "invalid_request_error" : "server_error", "backend_error", clean);
}

/* Runs the calls in order, each result a tool message appended to `messages`; stops when the client left. */
static void
run_calls(struct run *r, const char *sandbox_id, const json_t *calls, double deadline, json_t *messages)
{
	size_t i;
	json_t *c;
	json_array_foreach(calls, i, c)
	{
		const char *id = json_string_value(json_object_get(c, "id"));
		json_t *fn = json_object_get(c, "function");
		const char *name = json_string_value(json_object_get(fn, "name"));
		const char *arguments = json_string_value(json_object_get(fn, "arguments"));
		if (id == NULL || name == NULL || arguments == NULL)
			continue; /* a resumed conversation's call that is not one (pending_calls keeps only whole ones)
				   */
		emit(
		    r, "tool_call",
		    json_pack("{s:s, s:s, s:s, s:I}", "id", id, "name", name, "arguments", arguments, "step", r->step));
		r->tool_id = id;
		json_t *ev;
		_cleanup_free_ char *raw = run_call(r, sandbox_id, name, arguments, deadline, &ev);
		size_t n; /* a %.100s may cut a character in two: JSON takes UTF-8 only */
		char *text = lms_utf8_sanitize(raw, strlen(raw), &n);
		json_object_set_new(ev, "id", json_string(id));
		json_object_set_new(ev, "content", json_string(text));
		emit(r, "tool_result", ev);
		json_array_append_new(messages, json_pack("{s:s, s:s, s:s, s:s}", "role", "tool", "tool_call_id", id,
							  "name", name, "content", text));
		free(text);
		if (hung_up(r->hangup_fd))
			break;
	}
}

/* A conversation given back after a stop at tool calls (confirm): the last assistant message's calls that no
 * tool message after it answers (the client answered those its user declined). NULL when there are none. */
static json_t *
pending_calls(const json_t *messages)
{
	size_t n = json_array_size(messages), at = n;
	while (at > 0 &&
	       strcmp(json_string_value(json_object_get(json_array_get(messages, at - 1), "role")), "tool") == 0)
		at--;
	if (at == 0)
		return NULL;
	const json_t *last = json_array_get(messages, at - 1);
	json_t *calls = json_object_get(last, "tool_calls");
	if (strcmp(json_string_value(json_object_get(last, "role")), "assistant") != 0 || !json_is_array(calls))
		return NULL;
	json_t *out = json_array();
	size_t i;
	json_t *c;
	json_array_foreach(calls, i, c)
	{
		const char *id = json_string_value(json_object_get(c, "id"));
		json_t *fn = json_object_get(c, "function");
		if (id == NULL || !json_is_string(json_object_get(fn, "name")) ||
		    !json_is_string(json_object_get(fn, "arguments")))
			continue;
		bool answered = false;
		for (size_t k = at; k < n && !answered; k++) {
			const char *to =
			    json_string_value(json_object_get(json_array_get(messages, k), "tool_call_id"));
			answered = to != NULL && strcmp(to, id) == 0;
		}
		if (!answered)
			json_array_append(out, c);
	}
	if (json_array_size(out) == 0) {
		json_decref(out);
		return NULL;
	}
	return out;
}

/* The run's sandbox: the client's, or a new persistent one (image and network as asked). */
static json_t *
sandbox_of(struct lms_agent *a, unsigned *status, json_t **error)
{
	_cleanup_error_ struct lms_error *err = NULL;
	json_t *sbx;
	if (a->sandbox_id != NULL) {
		const char *reason = NULL;
		sbx = lms_sandboxes_get(a->s->sandboxes, a->sandbox_id, &reason, &err);
		if (sbx == NULL) {
			*status = lms_error_status(err);
			*error = err->kind == LMS_ERR_NOT_FOUND
				     ? lms_api_error_json("invalid_request_error", "sandbox_not_found", err->message)
				     : lms_error_json(err);
		}
		return sbx;
	}
	json_t *body = json_object();
	const char *keys[] = {"image", "network"};
	for (size_t i = 0; i < 2; i++) {
		json_t *v = json_object_get(a->body, keys[i]);
		if (v != NULL && !json_is_null(v))
			json_object_set(body, keys[i], v);
	}
	sbx = lms_sandbox_create_json(a->s, body, &err);
	json_decref(body);
	if (sbx == NULL) {
		*status = lms_error_status(err);
		*error = lms_error_json(err);
	}
	return sbx;
}

json_t *
lms_agent_run(struct lms_agent *a, int hangup_fd, const struct lms_agent_sink *sink, unsigned *status, json_t **error)
{
	struct run r = {.a = a, .sink = sink, .hangup_fd = hangup_fd};
	double started_ms = lms_monotonic_ms(), deadline = started_ms + (double)a->timeout_ms;
	json_t *sbx = sandbox_of(a, status, error);
	if (sbx == NULL)
		return NULL;
	_cleanup_free_ char *sandbox_id = xstrdup(json_string_value(json_object_get(sbx, "id")));
	json_t *messages = first_messages(a, sbx);
	json_decref(sbx);
	json_t *tools = openai_tools();
	json_t *usage = json_pack("{s:i, s:i, s:i}", "prompt_tokens", 0, "completion_tokens", 0, "total_tokens", 0);
	const char *finish = NULL;
	_cleanup_free_ char *content = xstrdup("");
	json_int_t steps = 0;
	json_t *result = NULL, *context = NULL;
	/* Calls the client's user allowed (confirm) run first, as if the model had just asked for them. */
	json_t *pending = pending_calls(messages);
	if (pending != NULL) {
		run_calls(&r, sandbox_id, pending, deadline, messages);
		json_decref(pending);
		if (hung_up(hangup_fd)) {
			*status = 499;
			*error = lms_api_error_json("invalid_request_error", "cancelled", "the client went away");
			goto out;
		}
	}
	while (finish == NULL) {
		if (steps >= a->max_steps) {
			finish = "max_steps";
			break;
		}
		if (lms_monotonic_ms() >= deadline) {
			finish = "timeout";
			break;
		}
		json_t *req =
		    json_pack("{s:O, s:O, s:O, s:b, s:{s:b}}", "model", json_object_get(a->body, "model"), "messages",
			      messages, "tools", tools, "stream", 1, "stream_options", "include_usage", 1);
		struct lms_chat_options opts = {
		    .on_chunk = on_chunk, .userdata = &r, .cancel_fd = hangup_fd, .ollama_context = true};
		struct lms_chat_result res = {0};
		_cleanup_error_ struct lms_error *err = NULL;
		int rc = lms_chat(a->s->backends, req, &opts, &res, &err);
		r.model_ms += res.backend_ms;
		json_decref(req);
		if (res.native)
			note_context(&r, &res.context, &context);
		if (rc < 0) {
			if (err->kind == LMS_ERR_CANCELLED) {
				*status = 499;
				*error = lms_error_json(err);
			} else {
				*error = model_error(&res, err, status);
			}
			lms_chat_result_clear(&res);
			if (a->sandbox_id == NULL && steps == 0) { /* nothing ran: the sandbox made for the run goes */
				const char *reason = NULL;
				_cleanup_error_ struct lms_error *derr = NULL;
				(void)lms_sandboxes_delete(a->s->sandboxes, sandbox_id, &reason, &derr);
			}
			goto out;
		}
		r.step = ++steps;
		add_usage(usage, json_object_get(res.answer, "usage"));
		json_t *message = json_object_get(json_array_get(json_object_get(res.answer, "choices"), 0), "message");
		bool from_content;
		json_t *calls = calls_of(&r, message, &from_content);
		json_t *said = json_object_get(message, "content");
		free(content);
		content = xstrdup(json_is_string(said) && !from_content ? json_string_value(said) : "");
		json_t *recorded = json_pack("{s:s, s:s}", "role", "assistant", "content", content);
		if (calls != NULL)
			json_object_set(recorded, "tool_calls", calls);
		json_array_append_new(messages, recorded);
		lms_chat_result_clear(&res);
		if (calls == NULL) {
			finish = "stop";
			break;
		}
		if (a->confirm) { /* the client asks its user, then sends the conversation back to run them */
			json_decref(calls);
			finish = "tool_calls";
			break;
		}
		run_calls(&r, sandbox_id, calls, deadline, messages);
		json_decref(calls);
		if (hung_up(hangup_fd)) {
			*status = 499;
			*error = lms_api_error_json("invalid_request_error", "cancelled", "the client went away");
			goto out;
		}
	}
	result = json_pack("{s:s, s:I, s:s, s:s, s:O, s:O}", "sandbox_id", sandbox_id, "steps", (json_int_t)steps,
			   "finish_reason", finish, "content", content, "messages", messages, "usage", usage);
	/* The agent's own cost is what is neither the model's nor the tools' (bench/bench_agent.py). */
	double total_ms = lms_monotonic_ms() - started_ms;
	json_object_set_new(result, "timings",
			    json_pack("{s:f, s:f, s:f, s:f}", "total_ms", total_ms, "model_ms", r.model_ms, "tools_ms",
				      r.tools_ms, "agent_ms", total_ms - r.model_ms - r.tools_ms));
	if (context != NULL) {
		json_object_set(result, "context", context);
		json_object_set(result, "context_exceeded", json_object_get(context, "exceeded"));
	}
out:
	json_decref(context);
	json_decref(messages);
	json_decref(tools);
	json_decref(usage);
	return result;
}
