#include "llm/chat.h"

#include <stdbool.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"

#define MAX_LINE (16u << 20)   /* one line of a stream */
#define MAX_STREAM (64u << 20) /* a whole stream, as lms_relay_body's bound */
#define MAX_INDEXED 128	       /* choices, or tool calls of one message */

/* ---- the assembly of a streamed answer ---- */

struct lms_chat_stream {
	lms_chat_chunk_fn on_chunk;
	void *userdata;
	struct lms_buf line; /* the line being read */
	struct lms_buf data; /* the `data:` lines of the event being read, joined by "\n" */
	bool has_data;
	bool done;     /* `data: [DONE]` came */
	bool finished; /* a choice had a finish_reason */
	size_t total;  /* bytes fed */
	size_t events; /* chunks */
	json_t *completion;
};

struct lms_chat_stream *
lms_chat_stream_new(lms_chat_chunk_fn on_chunk, void *userdata)
{
	struct lms_chat_stream *s = xcalloc(1, sizeof(*s));
	s->on_chunk = on_chunk;
	s->userdata = userdata;
	return s;
}

void
lms_chat_stream_free(struct lms_chat_stream *s)
{
	if (s == NULL)
		return;
	lms_buf_clear(&s->line);
	lms_buf_clear(&s->data);
	json_decref(s->completion);
	free(s);
}

static void
buf_reset(struct lms_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

/* Fields that a delta sets rather than extends. */
static bool
replaces(const char *key)
{
	return strcmp(key, "role") == 0 || strcmp(key, "id") == 0 || strcmp(key, "type") == 0 ||
	       strcmp(key, "index") == 0;
}

static json_t *
find_indexed(json_t *array, json_int_t index)
{
	size_t i;
	json_t *v;
	json_array_foreach(array, i, v) if (json_integer_value(json_object_get(v, "index")) == index) return v;
	return NULL;
}

/* An array of objects that each carry an integer "index" (tool_calls): merged element by element. */
static bool
is_indexed(json_t *array)
{
	size_t i;
	json_t *v;
	if (json_array_size(array) == 0)
		return false;
	json_array_foreach(array, i, v) if (!json_is_integer(json_object_get(v, "index"))) return false;
	return true;
}

static int merge_delta(json_t *dst, json_t *delta, struct lms_error **err);

static int
merge_indexed(json_t *dst, json_t *delta, struct lms_error **err)
{
	size_t i;
	json_t *v;
	json_array_foreach(delta, i, v)
	{
		json_t *have = find_indexed(dst, json_integer_value(json_object_get(v, "index")));
		if (have == NULL) {
			if (json_array_size(dst) >= MAX_INDEXED)
				return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0,
						     "a stream has more than %d tool calls", MAX_INDEXED);
			json_array_append_new(dst, have = json_object());
		}
		if (merge_delta(have, v, err) < 0)
			return -1;
	}
	return 0;
}

/* Strings are appended (content, arguments), objects merged, indexed arrays merged by index; anything
 * else, and the fields of replaces(), set. Nulls change nothing. */
static int
merge_delta(json_t *dst, json_t *delta, struct lms_error **err)
{
	const char *key;
	json_t *v;
	json_object_foreach(delta, key, v)
	{
		json_t *have = json_object_get(dst, key);
		if (json_is_null(v))
			continue;
		if (json_is_string(v) && json_is_string(have) && !replaces(key)) {
			size_t a = json_string_length(have), b = json_string_length(v);
			char *joined = xmalloc(a + b + 1);
			memcpy(joined, json_string_value(have), a);
			memcpy(joined + a, json_string_value(v), b);
			json_string_setn_nocheck(have, joined, a + b);
			free(joined);
		} else if (json_is_object(v)) {
			if (!json_is_object(have))
				json_object_set_new(dst, key, have = json_object());
			if (merge_delta(have, v, err) < 0)
				return -1;
		} else if (json_is_array(v) && is_indexed(v)) {
			if (!json_is_array(have))
				json_object_set_new(dst, key, have = json_array());
			if (merge_indexed(have, v, err) < 0)
				return -1;
		} else {
			json_object_set(dst, key, v);
		}
	}
	return 0;
}

static int
merge_chunk(struct lms_chat_stream *s, json_t *chunk, struct lms_error **err)
{
	if (s->completion == NULL)
		s->completion = json_pack("{s:s, s:[]}", "object", "chat.completion", "choices");
	/* id, created, model, usage, timings...: the last one sent wins. */
	const char *key;
	json_t *v;
	json_object_foreach(chunk, key, v) if (!json_is_null(v) && strcmp(key, "choices") != 0 &&
					       strcmp(key, "object") != 0) json_object_set(s->completion, key, v);
	json_t *mine = json_object_get(s->completion, "choices");
	size_t i;
	json_array_foreach(json_object_get(chunk, "choices"), i, v)
	{
		if (!json_is_object(v))
			continue;
		json_int_t index = json_integer_value(json_object_get(v, "index"));
		json_t *choice = find_indexed(mine, index);
		if (choice == NULL) {
			if (json_array_size(mine) >= MAX_INDEXED)
				return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "a stream has more than %d choices",
						     MAX_INDEXED);
			choice = json_pack("{s:I, s:{s:s}, s:n}", "index", index, "message", "role", "assistant",
					   "finish_reason");
			json_array_append_new(mine, choice);
		}
		json_t *delta = json_object_get(v, "delta");
		if (json_is_object(delta) && merge_delta(json_object_get(choice, "message"), delta, err) < 0)
			return -1;
		json_t *reason = json_object_get(v, "finish_reason");
		if (json_is_string(reason)) {
			json_object_set(choice, "finish_reason", reason);
			s->finished = true;
		}
	}
	return 0;
}

static int
dispatch(struct lms_chat_stream *s, struct lms_error **err)
{
	s->has_data = false;
	if (s->data.len == 6 && memcmp(s->data.data, "[DONE]", 6) == 0) {
		s->done = true;
		return 0;
	}
	json_error_t jerr;
	json_t *chunk = json_loadb(s->data.data, s->data.len, 0, &jerr);
	buf_reset(&s->data);
	if (!json_is_object(chunk)) {
		json_decref(chunk);
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "stream event %zu is not a JSON object%s%s",
				     s->events + 1, chunk ? "" : ": ", chunk ? "" : jerr.text);
	}
	s->events++;
	json_t *error = json_object_get(chunk, "error");
	if (error != NULL) {
		const char *message = json_is_string(error) ? json_string_value(error)
							    : json_string_value(json_object_get(error, "message"));
		lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "reported an error in its stream: %s",
			      message ? message : "(no message)");
		json_decref(chunk);
		return -1;
	}
	int rc = 0;
	if (s->on_chunk != NULL && s->on_chunk(chunk, s->userdata) < 0)
		rc = lms_error_set(err, LMS_ERR_CANCELLED, 0, "the stream was stopped by its reader");
	else
		rc = merge_chunk(s, chunk, err);
	json_decref(chunk);
	return rc;
}

/* One line of the event stream (https://html.spec.whatwg.org/multipage/server-sent-events.html): only
 * `data:` matters; a blank line ends an event; comments and other fields are skipped. */
static int
handle_line(struct lms_chat_stream *s, const char *line, size_t n, struct lms_error **err)
{
	if (n > 0 && line[n - 1] == '\r')
		n--;
	if (n == 0)
		return s->has_data ? dispatch(s, err) : 0;
	if (n < 5 || memcmp(line, "data:", 5) != 0)
		return 0;
	const char *value = line + 5;
	size_t len = n - 5;
	if (len > 0 && *value == ' ') {
		value++;
		len--;
	}
	if (s->has_data)
		lms_buf_append(&s->data, "\n", 1);
	lms_buf_append(&s->data, value, len);
	s->has_data = true;
	return 0;
}

int
lms_chat_stream_feed(struct lms_chat_stream *s, const char *data, size_t len, struct lms_error **err)
{
	if (s->done)
		return 0; /* what follows [DONE] is not part of the answer */
	s->total += len;
	if (s->total > MAX_STREAM)
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "the stream is longer than %u MiB", MAX_STREAM >> 20);
	while (len > 0 && !s->done) {
		const char *nl = memchr(data, '\n', len);
		size_t take = nl ? (size_t)(nl - data) : len;
		if (s->line.len + take > MAX_LINE)
			return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "a line of the stream is longer than %u MiB",
					     MAX_LINE >> 20);
		lms_buf_append(&s->line, data, take);
		data += take;
		len -= take;
		if (nl == NULL)
			break;
		data++;
		len--;
		int rc = handle_line(s, s->line.data, s->line.len, err);
		buf_reset(&s->line);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* The streamed shape's leftovers that a chat.completion does not have. */
static void
tidy(json_t *completion)
{
	size_t i, j;
	json_t *choice, *call;
	json_array_foreach(json_object_get(completion, "choices"), i, choice)
	{
		json_t *message = json_object_get(choice, "message");
		if (json_object_get(message, "content") == NULL)
			json_object_set_new(message, "content", json_null());
		json_array_foreach(json_object_get(message, "tool_calls"), j, call) json_object_del(call, "index");
	}
}

json_t *
lms_chat_stream_finish(struct lms_chat_stream *s, struct lms_error **err)
{
	if (!s->done && s->line.len > 0) {
		int rc = handle_line(s, s->line.data, s->line.len, err);
		buf_reset(&s->line);
		if (rc < 0)
			return NULL;
	}
	if (!s->done && s->has_data && dispatch(s, err) < 0)
		return NULL;
	if (s->completion == NULL) {
		lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "the stream ended without a chunk");
		return NULL;
	}
	if (!s->done && !s->finished) {
		lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0,
			      "the stream ended after %zu chunks, before data: [DONE] or a finish_reason: the backend "
			      "stopped midway",
			      s->events);
		return NULL;
	}
	tidy(s->completion);
	return json_incref(s->completion);
}

/* ---- one call ---- */

void
lms_chat_result_clear(struct lms_chat_result *res)
{
	free(res->model);
	free(res->content_type);
	json_decref(res->answer);
	lms_buf_clear(&res->body);
	*res = (struct lms_chat_result){0};
}

int
lms_chat_open(struct lms_backends *bs, json_t *request, const struct lms_chat_options *opts,
	      struct lms_chat_result *res, struct lms_relay **relay, struct lms_error **err)
{
	if (!json_is_object(request))
		return lms_error_set(err, LMS_ERR_INVALID, 0, "a chat request must be a JSON object");
	const char *model = json_string_value(json_object_get(request, "model"));
	if (model == NULL)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "\"model\" must be a string: see GET /v1/models");
	res->backend = lms_backends_resolve(bs, model, &res->model, err);
	if (res->backend == NULL)
		return -1;
	/* Only the model changes: tools and every other field pass through untouched. */
	json_t *sent = json_copy(request);
	json_object_set_new(sent, "model", json_string(res->model));
	_cleanup_free_ char *text = json_dumps(sent, JSON_COMPACT);
	json_decref(sent);
	const char *path = "/v1/chat/completions";
	res->native = opts && opts->ollama_context && res->backend->kind == LMS_BACKEND_OLLAMA;
	if (res->native) {
		json_t *max = json_object_get(request, "max_tokens");
		int64_t limit = lms_ollama_context_limit(bs, res->backend, res->model);
		res->context =
		    lms_ollama_context_for(strlen(text), json_is_integer(max) ? json_integer_value(max) : 0, limit);
		json_t *native = lms_ollama_request(request, res->model, res->context.num_ctx);
		free(text);
		text = json_dumps(native, JSON_COMPACT);
		json_decref(native);
		path = "/api/chat";
	}
	struct lms_relay *r = NULL;
	res->backend_ms = -lms_monotonic_ms(); /* made whole by lms_chat_finish */
	if (lms_relay_start(bs, res->backend, "POST", path, text, strlen(text), opts ? opts->cancel_fd : -1, &r, err) <
	    0)
		return -1;
	const char *ctype = NULL;
	int rc = lms_relay_headers(r, &res->status, &ctype, err);
	res->seconds = lms_relay_seconds(r);
	if (rc < 0) {
		lms_relay_free(r);
		return -1;
	}
	res->content_type = xstrdup(ctype);
	*relay = r;
	return 0;
}

/* LMS_ERR_BACKEND for the backend's own error answer, in res->body: the message is the backend's. */
static int
backend_refused(struct lms_chat_result *res, struct lms_error **err)
{
	const struct lms_backend *b = res->backend;
	const char *body = res->body.data ? res->body.data : "";
	json_t *root = json_loadb(body, res->body.len, 0, NULL);
	json_t *error = json_object_get(root, "error");
	const char *message =
	    json_is_string(error) ? json_string_value(error) : json_string_value(json_object_get(error, "message"));
	lms_error_set(err, LMS_ERR_BACKEND, 0, "backend %s (%s) answered %ld: %.*s", b->name, b->url, res->status,
		      message ? (int)strlen(message) : (int)(res->body.len > 300 ? 300 : res->body.len),
		      message ? message : body);
	json_decref(root);
	return -1;
}

static int
read_stream(struct lms_relay *relay, const struct lms_chat_options *opts, struct lms_chat_result *res,
	    struct lms_error **err)
{
	struct lms_chat_stream *s = lms_chat_stream_new(opts ? opts->on_chunk : NULL, opts ? opts->userdata : NULL);
	char buf[16 * 1024];
	const struct lms_backend *b = res->backend;
	int rc = 0;
	ssize_t n;
	while (rc == 0 && (n = lms_relay_read(relay, buf, sizeof(buf))) > 0) {
		double t = lms_monotonic_ms();
		if (lms_chat_stream_feed(s, buf, (size_t)n, err) < 0)
			rc = lms_error_prefix(err, "backend %s (%s) answered badly", b->name, b->url);
		res->backend_ms -= lms_monotonic_ms() - t;
	}
	/* The relay's own errors (cut short, timed out, cancelled) name the backend already. */
	if (rc == 0)
		rc = lms_relay_end(relay, err);
	if (rc == 0 && (res->answer = lms_chat_stream_finish(s, err)) == NULL)
		rc = lms_error_prefix(err, "backend %s (%s) answered badly", b->name, b->url);
	lms_chat_stream_free(s);
	return rc;
}

/* One NDJSON line of Ollama's /api/chat, fed to the assembly as the OpenAI chunk it stands for. */
static int
feed_native(struct lms_chat_stream *s, const char *line, size_t len, unsigned *calls, bool *done,
	    struct lms_error **err)
{
	json_error_t jerr;
	json_t *obj = json_loadb(line, len, 0, &jerr);
	if (!json_is_object(obj)) {
		json_decref(obj);
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "a line of /api/chat is not a JSON object: %s",
				     jerr.text);
	}
	*done = json_is_true(json_object_get(obj, "done"));
	json_t *chunk = lms_ollama_chunk(obj, calls);
	json_decref(obj);
	_cleanup_free_ char *text = json_dumps(chunk, JSON_COMPACT);
	json_decref(chunk);
	_cleanup_free_ char *event = xasprintf("data: %s\n\n%s", text, *done ? "data: [DONE]\n\n" : "");
	return lms_chat_stream_feed(s, event, strlen(event), err);
}

static int
read_native(struct lms_relay *relay, const struct lms_chat_options *opts, struct lms_chat_result *res,
	    struct lms_error **err)
{
	struct lms_chat_stream *s = lms_chat_stream_new(opts ? opts->on_chunk : NULL, opts ? opts->userdata : NULL);
	struct lms_buf line = {0};
	char buf[16 * 1024];
	const struct lms_backend *b = res->backend;
	unsigned calls = 0;
	bool done = false;
	int rc = 0;
	ssize_t n;
	while (rc == 0 && !done && (n = lms_relay_read(relay, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; rc == 0 && !done && i < n; i++) {
			if (buf[i] != '\n') {
				if (line.len >= MAX_LINE)
					rc = lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "a line is over %u bytes",
							   MAX_LINE);
				else
					lms_buf_append(&line, &buf[i], 1);
				continue;
			}
			double t = lms_monotonic_ms();
			if (line.len > 0)
				rc = feed_native(s, line.data, line.len, &calls, &done, err);
			res->backend_ms -= lms_monotonic_ms() - t;
			line.len = 0;
		}
	if (rc == 0 && !done && line.len > 0)
		rc = feed_native(s, line.data, line.len, &calls, &done, err);
	if (rc < 0)
		rc = lms_error_prefix(err, "backend %s (%s) answered badly", b->name, b->url);
	if (rc == 0 && !done)
		rc = lms_relay_end(relay, err);
	if (rc == 0 && (res->answer = lms_chat_stream_finish(s, err)) == NULL)
		rc = lms_error_prefix(err, "backend %s (%s) answered badly", b->name, b->url);
	lms_buf_clear(&line);
	lms_chat_stream_free(s);
	return rc;
}

int
lms_chat_finish(struct lms_relay *relay, const struct lms_chat_options *opts, struct lms_chat_result *res,
		struct lms_error **err)
{
	const struct lms_backend *b = res->backend;
	bool ok = res->status >= 200 && res->status < 300;
	if (ok && strncmp(res->content_type ? res->content_type : "", "text/event-stream", 17) == 0)
		return read_stream(relay, opts, res, err);
	if (ok && res->native && strncmp(res->content_type ? res->content_type : "", "application/x-ndjson", 20) == 0)
		return read_native(relay, opts, res, err);
	if (lms_relay_body(relay, &res->status, &res->body, err) < 0)
		return -1;
	if (!ok)
		return backend_refused(res, err);
	json_error_t jerr;
	res->answer = json_loadb(res->body.data ? res->body.data : "", res->body.len, 0, &jerr);
	lms_buf_clear(&res->body);
	if (!json_is_object(res->answer))
		return lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "backend %s (%s) answered with %s: %s", b->name,
				     b->url, res->answer ? "JSON that is not an object" : "invalid JSON",
				     res->answer ? "expected a chat.completion" : jerr.text);
	return 0;
}

int
lms_chat(struct lms_backends *bs, json_t *request, const struct lms_chat_options *opts, struct lms_chat_result *res,
	 struct lms_error **err)
{
	struct lms_relay *relay = NULL;
	int rc = lms_chat_open(bs, request, opts, res, &relay, err);
	if (rc == 0)
		rc = lms_chat_finish(relay, opts, res, err);
	lms_relay_free(relay);
	if (res->backend_ms < 0)
		res->backend_ms += lms_monotonic_ms();
	return rc;
}
