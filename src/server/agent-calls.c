/*
 * Tool calls written into a message's text (agent-calls.h). The shapes models write, seen in the field:
 * {"name": N, "arguments": {...}} (Hermes, Qwen), {"name": N, "parameters": {...}} (Llama 3.x),
 * {"function": {"name", "arguments"}} and {"tool": N, "arguments"} (rarer); arguments as an object or
 * as a JSON text. The text is bounded by the backend's answer (the chat service bounds it).
 */
#include "server/agent-calls.h"

#include <stdio.h>
#include <string.h>

#include "api/exec-json.h"
#include "core/alloc.h"

#define MAX_CALLS 16 /* in one message: more is not a model asking for tools */

/* The call that `obj` describes (name and arguments text, new references), or false. */
static bool
call_of(json_t *obj, bool (*known)(const char *name), const char **name, json_t **args)
{
	if (!json_is_object(obj))
		return false;
	json_t *fn = json_object_get(obj, "function");
	if (json_is_object(fn))
		obj = fn;
	json_t *n = json_object_get(obj, "name");
	if (n == NULL)
		n = json_object_get(obj, "tool");
	if (!json_is_string(n) || !known(json_string_value(n)))
		return false;
	json_t *a = json_object_get(obj, "arguments");
	if (a == NULL)
		a = json_object_get(obj, "parameters");
	if (a == NULL)
		a = json_object_get(obj, "args");
	*name = json_string_value(n);
	*args = a;
	return true;
}

static void
append_call(json_t *calls, const char *name, json_t *args, unsigned id)
{
	char *text = json_is_string(args) ? xstrdup(json_string_value(args))
		     : args != NULL	  ? json_dumps(args, LMS_JSON_FLAGS)
					  : xstrdup("{}");
	char cid[32];
	snprintf(cid, sizeof(cid), "call_%u", id);
	json_array_append_new(calls, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", cid, "type", "function", "function",
					       "name", name, "arguments", text ? text : "{}"));
	free(text);
}

/* Appends the call(s) in the JSON text [p, p + n): an object, or an array of objects. */
static void
from_json(json_t *calls, const char *p, size_t n, bool (*known)(const char *name), unsigned first_id)
{
	json_t *v = json_loadb(p, n, 0, NULL);
	json_t *one = json_is_array(v) ? NULL : v;
	size_t count = json_is_array(v) ? json_array_size(v) : 1;
	for (size_t i = 0; i < count && json_array_size(calls) < MAX_CALLS; i++) {
		const char *name;
		json_t *args;
		if (call_of(one ? one : json_array_get(v, i), known, &name, &args))
			append_call(calls, name, args, first_id + (unsigned)json_array_size(calls));
	}
	json_decref(v);
}

static const char *
skip_space(const char *p, const char *end)
{
	while (p < end && strchr(" \t\r\n", *p) != NULL)
		p++;
	return p;
}

json_t *
lms_agent_content_calls(const char *content, bool (*known)(const char *name), unsigned first_id)
{
	if (content == NULL)
		return NULL;
	json_t *calls = json_array();
	size_t len = strlen(content);
	const char *end = content + len;
	/* <tool_call>{...}</tool_call>, as many as there are. */
	for (const char *p = content; (p = strstr(p, "<tool_call>")) != NULL;) {
		p += strlen("<tool_call>");
		const char *q = strstr(p, "</tool_call>");
		const char *stop = q ? q : end; /* a model may stop before the closing tag */
		from_json(calls, p, (size_t)(stop - p), known, first_id);
		p = stop;
	}
	/* ```json ... ``` (or a bare ``` fence). */
	if (json_array_size(calls) == 0)
		for (const char *p = content; (p = strstr(p, "```")) != NULL;) {
			p += 3;
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			if (nl == NULL)
				break;
			const char *q = strstr(nl, "```");
			if (q == NULL)
				break;
			from_json(calls, nl + 1, (size_t)(q - nl - 1), known, first_id);
			p = q + 3;
		}
	/* The whole text one JSON object (or array), whitespace around it allowed. */
	if (json_array_size(calls) == 0) {
		const char *p = skip_space(content, end), *e = end;
		while (e > p && strchr(" \t\r\n", e[-1]) != NULL)
			e--;
		if (p < e && (*p == '{' || *p == '['))
			from_json(calls, p, (size_t)(e - p), known, first_id);
	}
	if (json_array_size(calls) == 0) {
		json_decref(calls);
		return NULL;
	}
	return calls;
}
