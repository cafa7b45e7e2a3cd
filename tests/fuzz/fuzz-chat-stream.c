/*
 * libFuzzer target: a backend's Server-Sent Events, assembled into one chat.completion (llm/chat.c).
 * Whatever the bytes, the assembly fails with a message or gives a chat.completion, and it gives the same
 * result (the same chunks, the same answer or the same error) whether the bytes come at once or one by one.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llm/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
count(json_t *chunk, void *userdata)
{
	if (!json_is_object(chunk))
		abort();
	++*(size_t *)userdata;
	return 0;
}

/* The answer, or NULL with *err; the chunks seen in *chunks. `step` bytes at a time (0: at once). */
static json_t *
assemble(const char *data, size_t size, size_t step, size_t *chunks, struct lms_error **err)
{
	struct lms_chat_stream *s = lms_chat_stream_new(count, chunks);
	int rc = 0;
	for (size_t off = 0; off < size && rc == 0; off += step ? step : size)
		rc = lms_chat_stream_feed(s, data + off, step && size - off > step ? step : size - off, err);
	json_t *answer = rc == 0 ? lms_chat_stream_finish(s, err) : NULL;
	lms_chat_stream_free(s);
	return answer;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t chunks_whole = 0, chunks_bytes = 0;
	struct lms_error *err_whole = NULL, *err_bytes = NULL;
	json_t *whole = assemble((const char *)data, size, 0, &chunks_whole, &err_whole);
	json_t *bytes = assemble((const char *)data, size, 1, &chunks_bytes, &err_bytes);
	if ((whole == NULL) != (err_whole != NULL) || (bytes == NULL) != (err_bytes != NULL))
		abort();
	if (chunks_whole != chunks_bytes)
		abort();
	if (whole != NULL) {
		if (bytes == NULL || !json_equal(whole, bytes) || !json_is_array(json_object_get(whole, "choices")) ||
		    strcmp(json_string_value(json_object_get(whole, "object")), "chat.completion") != 0)
			abort();
	} else if (err_whole->message[0] == '\0' || err_bytes == NULL || err_whole->kind != err_bytes->kind ||
		   strcmp(err_whole->message, err_bytes->message) != 0) {
		abort();
	}
	json_decref(whole);
	json_decref(bytes);
	lms_error_free(err_whole);
	lms_error_free(err_bytes);
	return 0;
}
