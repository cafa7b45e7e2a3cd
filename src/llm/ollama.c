/* Ollama's own chat API (ollama.h). */
#include "llm/ollama.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

#define SHOW_TIMEOUT_MS 5000
#define MIN_CTX 4096	    /* Ollama's own default today: never ask for less */
#define DEFAULT_ANSWER 2048 /* room for the answer when the request does not bound it */
#define MAX_CACHED 256	    /* models per backend whose limit is remembered */

int64_t
lms_ollama_context_limit(struct lms_backends *bs, struct lms_backend *b, const char *model)
{
	pthread_mutex_lock(&bs->lock);
	json_t *known = json_object_get(b->context_limits, model);
	int64_t cached = known ? (int64_t)json_integer_value(known) : -1;
	pthread_mutex_unlock(&bs->lock);
	if (cached >= 0)
		return cached;
	json_t *req = json_pack("{s:s}", "model", model);
	_cleanup_free_ char *text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	struct lms_relay *r = NULL;
	struct lms_buf body = {0};
	long status = 0;
	int64_t limit = 0;
	_cleanup_error_ struct lms_error *err = NULL;
	if (lms_relay_start(bs, b, "POST", "/api/show", text, strlen(text), -1, &r, &err) == 0) {
		lms_relay_set_timeout(r, bs->timeout_ms < SHOW_TIMEOUT_MS ? bs->timeout_ms : SHOW_TIMEOUT_MS);
		if (lms_relay_body(r, &status, &body, &err) == 0 && status == 200) {
			json_t *root = json_loadb(body.data ? body.data : "", body.len, 0, NULL);
			const char *key;
			json_t *v;
			/* "<architecture>.context_length": llama.context_length, qwen2.context_length, ... */
			json_object_foreach(json_object_get(root, "model_info"), key, v)
			{
				size_t n = strlen(key);
				if (n > 15 && strcmp(key + n - 15, ".context_length") == 0 && json_is_integer(v) &&
				    json_integer_value(v) > 0)
					limit = (int64_t)json_integer_value(v);
			}
			json_decref(root);
		}
	}
	lms_relay_free(r);
	lms_buf_clear(&body);
	pthread_mutex_lock(&bs->lock);
	if (b->context_limits == NULL)
		b->context_limits = json_object();
	if (json_object_size(b->context_limits) < MAX_CACHED)
		json_object_set_new(b->context_limits, model, json_integer(limit));
	pthread_mutex_unlock(&bs->lock);
	return limit;
}

struct lms_ollama_context
lms_ollama_context_for(size_t request_len, int64_t answer_tokens, int64_t limit)
{
	struct lms_ollama_context c = {.limit = limit};
	c.needed = (int64_t)(request_len / 3 + 1) + (answer_tokens > 0 ? answer_tokens : DEFAULT_ANSWER);
	/* Powers of two: Ollama reloads the model whenever num_ctx changes, so it changes rarely. */
	c.num_ctx = MIN_CTX;
	while (c.num_ctx < c.needed && c.num_ctx < ((int64_t)1 << 40))
		c.num_ctx *= 2;
	if (limit > 0 && c.num_ctx > limit) /* past what the model was trained on is no context at all */
		c.num_ctx = limit;
	c.exceeded = limit > 0 && c.needed > limit;
	return c;
}

/* An assistant message's tool calls with their arguments as objects (Ollama's form). */
static json_t *
native_calls(const json_t *calls)
{
	json_t *out = json_array();
	size_t i;
	json_t *c;
	json_array_foreach(calls, i, c)
	{
		json_t *fn = json_object_get(c, "function"), *args = json_object_get(fn, "arguments");
		json_t *obj = json_is_string(args) ? json_loads(json_string_value(args), 0, NULL) : json_incref(args);
		if (!json_is_object(obj)) { /* a model's malformed text: kept as it was sent */
			json_decref(obj);
			obj = json_is_string(args) ? json_incref(args) : json_object();
		}
		json_t *f = json_pack("{s:O?, s:o}", "name", json_object_get(fn, "name"), "arguments", obj);
		json_t *one = json_pack("{s:o}", "function", f);
		if (json_is_string(json_object_get(c, "id")))
			json_object_set(one, "id", json_object_get(c, "id"));
		json_array_append_new(out, one);
	}
	return out;
}

static json_t *
native_message(const json_t *m)
{
	json_t *out = json_pack("{s:O}", "role", json_object_get(m, "role"));
	json_t *content = json_object_get(m, "content");
	if (json_is_string(content)) {
		json_object_set(out, "content", content);
	} else if (json_is_array(content)) { /* OpenAI parts: Ollama takes a plain string */
		struct lms_buf b = {0};
		size_t i;
		json_t *p;
		json_array_foreach(content, i, p)
		{
			const char *t = json_string_value(json_object_get(p, "text"));
			if (t != NULL)
				lms_buf_append(&b, t, strlen(t));
		}
		json_object_set_new(out, "content", json_stringn(b.data ? b.data : "", b.len));
		lms_buf_clear(&b);
	} else {
		json_object_set_new(out, "content", json_string(""));
	}
	if (json_is_array(json_object_get(m, "tool_calls")))
		json_object_set_new(out, "tool_calls", native_calls(json_object_get(m, "tool_calls")));
	if (json_is_string(json_object_get(m, "name")))
		json_object_set(out, "tool_name", json_object_get(m, "name"));
	if (json_is_string(json_object_get(m, "tool_call_id")))
		json_object_set(out, "tool_call_id", json_object_get(m, "tool_call_id"));
	return out;
}

json_t *
lms_ollama_request(const json_t *openai, const char *model, int64_t num_ctx)
{
	json_t *msgs = json_array();
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(openai, "messages"), i, m) if (json_is_object(m))
	    json_array_append_new(msgs, native_message(m));
	json_t *options = json_pack("{s:I}", "num_ctx", (json_int_t)num_ctx);
	/* The sampling fields that OpenAI and Ollama share, under Ollama's names. */
	static const char *const same[][2] = {{"temperature", "temperature"},
					      {"top_p", "top_p"},
					      {"seed", "seed"},
					      {"stop", "stop"},
					      {"max_tokens", "num_predict"},
					      {"max_completion_tokens", "num_predict"}};
	for (size_t k = 0; k < sizeof(same) / sizeof(same[0]); k++) {
		json_t *v = json_object_get(openai, same[k][0]);
		if (v != NULL && !json_is_null(v))
			json_object_set(options, same[k][1], v);
	}
	json_t *out =
	    json_pack("{s:s, s:o, s:b, s:o}", "model", model, "messages", msgs, "stream", 1, "options", options);
	json_t *tools = json_object_get(openai, "tools");
	if (json_is_array(tools))
		json_object_set(out, "tools", tools);
	return out;
}

json_t *
lms_ollama_chunk(const json_t *line, unsigned *calls)
{
	if (json_object_get(line, "error") != NULL)
		return json_pack("{s:O}", "error", json_object_get(line, "error"));
	json_t *msg = json_object_get(line, "message");
	json_t *delta = json_object();
	json_t *content = json_object_get(msg, "content");
	if (json_is_string(content) && json_string_length(content) > 0)
		json_object_set(delta, "content", content);
	json_t *tc = json_object_get(msg, "tool_calls");
	if (json_is_array(tc) && json_array_size(tc) > 0) {
		json_t *out = json_array();
		size_t i;
		json_t *c;
		json_array_foreach(tc, i, c)
		{
			json_t *fn = json_object_get(c, "function"), *args = json_object_get(fn, "arguments");
			char *text = json_is_string(args) ? xstrdup(json_string_value(args))
							  : json_dumps(args ? args : json_object(), JSON_COMPACT);
			char id[32];
			snprintf(id, sizeof(id), "call_%u", *calls);
			json_t *cid = json_object_get(c, "id");
			json_array_append_new(out, json_pack("{s:I, s:s, s:s, s:{s:s, s:s}}", "index",
							     (json_int_t)(*calls)++, "id",
							     json_is_string(cid) ? json_string_value(cid) : id, "type",
							     "function", "function", "name",
							     json_is_string(json_object_get(fn, "name"))
								 ? json_string_value(json_object_get(fn, "name"))
								 : "",
							     "arguments", text ? text : "{}"));
			free(text);
		}
		json_object_set_new(delta, "tool_calls", out);
	}
	json_t *choice = json_pack("{s:i, s:o, s:n}", "index", 0, "delta", delta, "finish_reason");
	json_t *chunk = json_pack("{s:s, s:O?, s:[o]}", "object", "chat.completion.chunk", "model",
				  json_object_get(line, "model"), "choices", choice);
	if (json_is_true(json_object_get(line, "done"))) {
		const char *why = json_string_value(json_object_get(line, "done_reason"));
		const char *reason = *calls > 0 && (why == NULL || strcmp(why, "stop") == 0) ? "tool_calls"
				     : why && strcmp(why, "length") == 0		     ? "length"
											     : "stop";
		json_object_set_new(choice, "finish_reason", json_string(reason));
		json_int_t p = json_integer_value(json_object_get(line, "prompt_eval_count"));
		json_int_t n = json_integer_value(json_object_get(line, "eval_count"));
		json_object_set_new(
		    chunk, "usage",
		    json_pack("{s:I, s:I, s:I}", "prompt_tokens", p, "completion_tokens", n, "total_tokens", p + n));
	}
	return chunk;
}
