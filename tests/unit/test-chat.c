/* The chat service without a network: the assembly of a streamed answer (llm/chat.c), and the requests
 * it refuses before anything is sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "llm/chat.h"

struct seen {
	int chunks;
	int stop_at; /* the callback stops the stream at this chunk (0: never) */
};

static int
on_chunk(json_t *chunk, void *userdata)
{
	struct seen *seen = userdata;
	assert_true(json_is_object(chunk));
	seen->chunks++;
	return seen->stop_at && seen->chunks == seen->stop_at ? -1 : 0;
}

/* Feeds `text` `step` bytes at a time (0: all at once); returns the assembled answer or NULL with *err. */
static json_t *
assemble(const char *text, size_t step, struct seen *seen, struct lms_error **err)
{
	struct lms_chat_stream *s = lms_chat_stream_new(on_chunk, seen);
	size_t len = strlen(text);
	json_t *out = NULL;
	int rc = 0;
	for (size_t off = 0; off < len && rc == 0; off += step ? step : len)
		rc = lms_chat_stream_feed(s, text + off, step && len - off > step ? step : len - off, err);
	if (rc == 0)
		out = lms_chat_stream_finish(s, err);
	lms_chat_stream_free(s);
	return out;
}

#define CHUNK(delta, finish)                                                                                           \
	"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"tiny.gguf\","     \
	"\"choices\":[{\"index\":0,\"delta\":" delta ",\"finish_reason\":" finish "}]}\n\n"

static const char content_stream[] = CHUNK("{\"role\":\"assistant\",\"content\":null}", "null")
    CHUNK("{\"content\":\"Hel\"}", "null") CHUNK("{\"content\":\"lo ✓\"}", "null") CHUNK(
	"{}",
	"\"stop\"") "data: "
		    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"tiny.gguf\","
		    "\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n"
		    "data: [DONE]\n\n";

static void
content_is_assembled_whatever_the_reads(void **state)
{
	(void)state;
	for (size_t step = 0; step <= 7; step++) {
		struct seen seen = {0};
		_cleanup_error_ struct lms_error *err = NULL;
		json_t *answer = assemble(content_stream, step, &seen, &err);
		if (answer == NULL)
			fail_msg("step %zu: %s", step, err->message);
		assert_int_equal(seen.chunks, 5); /* [DONE] is not a chunk */
		assert_string_equal(json_string_value(json_object_get(answer, "object")), "chat.completion");
		assert_string_equal(json_string_value(json_object_get(answer, "id")), "chatcmpl-1");
		assert_string_equal(json_string_value(json_object_get(answer, "model")), "tiny.gguf");
		json_t *choice = json_array_get(json_object_get(answer, "choices"), 0);
		assert_int_equal(json_array_size(json_object_get(answer, "choices")), 1);
		assert_string_equal(json_string_value(json_object_get(choice, "finish_reason")), "stop");
		json_t *message = json_object_get(choice, "message");
		assert_string_equal(json_string_value(json_object_get(message, "role")), "assistant");
		assert_string_equal(json_string_value(json_object_get(message, "content")), "Hello ✓");
		assert_int_equal(json_integer_value(json_object_get(json_object_get(answer, "usage"), "total_tokens")),
				 5);
		json_decref(answer);
	}
}

/* llama-server's shape (shared/fixtures/llama-server/chat-with-tools-required-stream.txt, shortened). */
static const char tool_stream[] = CHUNK("{\"role\":\"assistant\",\"content\":null}", "null")
    CHUNK("{\"tool_calls\":[{\"index\":0,\"id\":\"t0\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
	  "\"arguments\":\"{\"}}]}",
	  "null") CHUNK("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"city\\\"\"}}]}", "null")
	CHUNK("{\"tool_calls\":[{\"index\":1,\"id\":\"t1\",\"type\":\"function\",\"function\":{\"name\":\"ls\","
	      "\"arguments\":\"{}\"}}]}",
	      "null") CHUNK("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":\\\"\\\"}\"}}]}", "null")
	    CHUNK("{}", "\"tool_calls\"") "data: [DONE]\n\n";

static void
tool_calls_are_merged_by_index(void **state)
{
	(void)state;
	struct seen seen = {0};
	_cleanup_error_ struct lms_error *err = NULL;
	json_t *answer = assemble(tool_stream, 3, &seen, &err);
	if (answer == NULL)
		fail_msg("%s", err->message);
	json_t *choice = json_array_get(json_object_get(answer, "choices"), 0);
	assert_string_equal(json_string_value(json_object_get(choice, "finish_reason")), "tool_calls");
	json_t *message = json_object_get(choice, "message");
	assert_true(json_is_null(json_object_get(message, "content")));
	json_t *calls = json_object_get(message, "tool_calls");
	assert_int_equal(json_array_size(calls), 2);
	json_t *expected = json_loads("[{\"id\":\"t0\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
				      "\"arguments\":\"{\\\"city\\\":\\\"\\\"}\"}},"
				      "{\"id\":\"t1\",\"type\":\"function\",\"function\":{\"name\":\"ls\","
				      "\"arguments\":\"{}\"}}]",
				      0, NULL);
	assert_non_null(expected);
	if (!json_equal(calls, expected)) {
		char *got = json_dumps(calls, 0);
		fail_msg("tool_calls: %s", got);
	}
	json_decref(expected);
	json_decref(answer);
}

static void
sse_framing_is_read_as_the_specification_says(void **state)
{
	(void)state;
	/* CRLF, comments, other fields, no space after "data:", one event over two data lines, no final
	 * newline after a finish_reason (no [DONE]). */
	const char *text = ": keep-alive\r\n"
			   "event: message\r\nid: 1\r\n"
			   "data:{\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\n"
			   "data: {\"choices\":[{\"delta\":\r\n"
			   "data: {\"content\":\"b\"}}]}\r\n\r\n"
			   "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}";
	struct seen seen = {0};
	_cleanup_error_ struct lms_error *err = NULL;
	json_t *answer = assemble(text, 1, &seen, &err);
	if (answer == NULL)
		fail_msg("%s", err->message);
	assert_int_equal(seen.chunks, 3);
	json_t *choice = json_array_get(json_object_get(answer, "choices"), 0);
	assert_string_equal(json_string_value(json_object_get(json_object_get(choice, "message"), "content")), "ab");
	assert_string_equal(json_string_value(json_object_get(choice, "finish_reason")), "length");
	json_decref(answer);
}

static void
fails_with(const char *text, int stop_at, enum lms_error_kind kind, const char *words)
{
	struct seen seen = {.stop_at = stop_at};
	_cleanup_error_ struct lms_error *err = NULL;
	json_t *answer = assemble(text, 0, &seen, &err);
	assert_null(answer);
	assert_non_null(err);
	assert_int_equal(err->kind, kind);
	if (strstr(err->message, words) == NULL)
		fail_msg("\"%s\" does not say \"%s\"", err->message, words);
}

static void
broken_streams_are_bad_answers(void **state)
{
	(void)state;
	/* Cut short: neither [DONE] nor a finish_reason. */
	fails_with(CHUNK("{\"content\":\"a\"}", "null") CHUNK("{\"content\":\"b\"}", "null"), 0, LMS_ERR_BAD_GATEWAY,
		   "before data: [DONE]");
	fails_with(CHUNK("{\"content\":\"a\"}", "null") "data: <html>oops</html>\n\n", 0, LMS_ERR_BAD_GATEWAY,
		   "stream event 2 is not a JSON object");
	fails_with("data: [1, 2]\n\n", 0, LMS_ERR_BAD_GATEWAY, "stream event 1 is not a JSON object");
	fails_with("data: {\"error\":{\"message\":\"context is too long\"}}\n\n", 0, LMS_ERR_BAD_GATEWAY,
		   "context is too long");
	fails_with("", 0, LMS_ERR_BAD_GATEWAY, "without a chunk");
	fails_with(": only a comment\n\n", 0, LMS_ERR_BAD_GATEWAY, "without a chunk");
}

static void
the_callback_can_stop_the_stream(void **state)
{
	(void)state;
	fails_with(content_stream, 2, LMS_ERR_CANCELLED, "stopped");
}

static void
requests_without_a_model_are_refused_before_sending(void **state)
{
	(void)state;
	struct lms_backends bs = {0};
	const char *bodies[] = {"[]", "{}", "{\"model\": 7}", "{\"model\": null}", "{\"model\": [\"a\"]}"};
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		json_t *request = json_loads(bodies[i], 0, NULL);
		struct lms_chat_result res = {0};
		_cleanup_error_ struct lms_error *err = NULL;
		assert_int_equal(lms_chat(&bs, request, NULL, &res, &err), -1);
		assert_int_equal(err->kind, LMS_ERR_INVALID);
		assert_null(res.backend);
		lms_chat_result_clear(&res);
		json_decref(request);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(content_is_assembled_whatever_the_reads),
	    cmocka_unit_test(tool_calls_are_merged_by_index),
	    cmocka_unit_test(sse_framing_is_read_as_the_specification_says),
	    cmocka_unit_test(broken_streams_are_bad_answers),
	    cmocka_unit_test(the_callback_can_stop_the_stream),
	    cmocka_unit_test(requests_without_a_model_are_refused_before_sending),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
