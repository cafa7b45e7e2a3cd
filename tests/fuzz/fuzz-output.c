/*
 * libFuzzer target: a sandboxed process's output, the one stream of hostile bytes this engine parses
 * today, through the UTF-8 repair and the JSON encoding of the exec result. Invariants: the repaired
 * text is valid (repairing it again changes nothing), valid input passes unchanged, and the result
 * always encodes.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/exec-json.h"
#include "core/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t len, again_len;
	char *clean = lms_utf8_sanitize((const char *)data, size, &len);
	char *again = lms_utf8_sanitize(clean, len, &again_len);
	if (again_len != len || memcmp(clean, again, len) != 0)
		abort();
	/* jansson's own validator agrees that the repaired text is UTF-8. */
	json_t *s = json_stringn(clean, len);
	if (s == NULL)
		abort();
	json_decref(s);

	struct lms_sandbox_result res = {.exit_code = size % 256};
	for (int enc = LMS_ENCODING_UTF8; enc <= LMS_ENCODING_BASE64; enc++) {
		json_t *obj = lms_exec_result_json(&res, (const char *)data, size, clean, len, enc);
		char *text = obj ? json_dumps(obj, LMS_JSON_FLAGS) : NULL;
		if (text == NULL)
			abort();
		free(text);
		json_decref(obj);
	}
	free(again);
	free(clean);
	return 0;
}
