/* Ollama's own chat API without a network (llm/ollama.c): the context a request gets, the OpenAI request in
 * Ollama's form, and Ollama's NDJSON lines as OpenAI chunks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "llm/ollama.h"

static void
the_context_is_a_power_of_two_within_the_limit(void **state)
{
	(void)state;
	struct lms_ollama_context c = lms_ollama_context_for(300, 0, 32768);
	assert_int_equal(c.num_ctx, 4096); /* never below Ollama's own default */
	assert_false(c.exceeded);
	c = lms_ollama_context_for(30000, 0, 32768); /* 10001 + 2048 tokens */
	assert_int_equal(c.needed, 10001 + 2048);
	assert_int_equal(c.num_ctx, 16384);
	c = lms_ollama_context_for(300000, 0, 32768);
	assert_int_equal(c.num_ctx, 32768);
	assert_true(c.exceeded);
	c = lms_ollama_context_for(300, 100, 2048); /* a small model: its own limit, not more */
	assert_int_equal(c.num_ctx, 2048);
	assert_false(c.exceeded);
	c = lms_ollama_context_for(300000, 0, 0); /* no limit known: what is needed, never flagged */
	assert_int_equal(c.num_ctx, 131072);
	assert_false(c.exceeded);
}

static void
requests_take_ollamas_form(void **state)
{
	(void)state;
	json_t *openai = json_loads(
	    "{\"model\": \"x\", \"max_tokens\": 50, \"temperature\": 0.5, \"tools\": [{\"type\": \"function\"}],"
	    "\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"hi\"}]},"
	    "{\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\","
	    "\"function\": {\"name\": \"bash\", \"arguments\": \"{\\\"command\\\": \\\"ls\\\"}\"}}]},"
	    "{\"role\": \"tool\", \"tool_call_id\": \"c1\", \"name\": \"bash\", \"content\": \"out\"}]}",
	    0, NULL);
	assert_non_null(openai);
	json_t *n = lms_ollama_request(openai, "m:latest", 8192);
	assert_string_equal(json_string_value(json_object_get(n, "model")), "m:latest");
	assert_true(json_is_true(json_object_get(n, "stream")));
	json_t *opts = json_object_get(n, "options");
	assert_int_equal(json_integer_value(json_object_get(opts, "num_ctx")), 8192);
	assert_int_equal(json_integer_value(json_object_get(opts, "num_predict")), 50);
	assert_true(json_is_real(json_object_get(opts, "temperature")));
	json_t *msgs = json_object_get(n, "messages");
	assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "content")), "hi");
	json_t *call = json_array_get(json_object_get(json_array_get(msgs, 1), "tool_calls"), 0);
	json_t *args = json_object_get(json_object_get(call, "function"), "arguments");
	assert_true(json_is_object(args));
	assert_string_equal(json_string_value(json_object_get(args, "command")), "ls");
	assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "content")), "");
	assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 2), "tool_name")), "bash");
	assert_int_equal(json_array_size(json_object_get(n, "tools")), 1);
	json_decref(n);
	json_decref(openai);
}

static void
lines_become_openai_chunks(void **state)
{
	(void)state;
	unsigned calls = 0;
	json_t *line = json_loads("{\"model\": \"m\", \"message\": {\"role\": \"assistant\", \"content\": \"he\"},"
				  "\"done\": false}",
				  0, NULL);
	json_t *c = lms_ollama_chunk(line, &calls);
	json_t *choice = json_array_get(json_object_get(c, "choices"), 0);
	assert_string_equal(json_string_value(json_object_get(json_object_get(choice, "delta"), "content")), "he");
	assert_true(json_is_null(json_object_get(choice, "finish_reason")));
	json_decref(c);
	json_decref(line);
	line = json_loads("{\"message\": {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"function\":"
			  "{\"name\": \"bash\", \"arguments\": {\"command\": \"ls\"}}}]}, \"done\": false}",
			  0, NULL);
	c = lms_ollama_chunk(line, &calls);
	json_t *tc = json_array_get(
	    json_object_get(json_object_get(json_array_get(json_object_get(c, "choices"), 0), "delta"), "tool_calls"),
	    0);
	assert_int_equal(json_integer_value(json_object_get(tc, "index")), 0);
	assert_string_equal(json_string_value(json_object_get(tc, "id")), "call_0"); /* older servers send none */
	assert_string_equal(json_string_value(json_object_get(json_object_get(tc, "function"), "arguments")),
			    "{\"command\":\"ls\"}");
	assert_int_equal(calls, 1);
	json_decref(c);
	json_decref(line);
	line = json_loads("{\"message\": {\"role\": \"assistant\", \"content\": \"\"}, \"done\": true, \"done_reason\":"
			  "\"stop\", \"prompt_eval_count\": 12, \"eval_count\": 3}",
			  0, NULL);
	c = lms_ollama_chunk(line, &calls);
	choice = json_array_get(json_object_get(c, "choices"), 0);
	assert_string_equal(json_string_value(json_object_get(choice, "finish_reason")), "tool_calls");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(c, "usage"), "total_tokens")), 15);
	json_decref(c);
	json_decref(line);
	line = json_loads("{\"error\": \"model crashed\"}", 0, NULL);
	c = lms_ollama_chunk(line, &calls);
	assert_string_equal(json_string_value(json_object_get(c, "error")), "model crashed");
	json_decref(c);
	json_decref(line);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(the_context_is_a_power_of_two_within_the_limit),
	    cmocka_unit_test(requests_take_ollamas_form),
	    cmocka_unit_test(lines_become_openai_chunks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
