/*
 * libFuzzer target: the spec codec (the spawner's jobs, a prepared sandbox's launch message). Whatever
 * the bytes, decoding never reads out of bounds; what decodes re-encodes to the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "sandbox/sandbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lms_sandbox_spec spec;
	void *storage = NULL;
	struct lms_error *err = NULL;
	if (lms_spec_decode((const char *)data, size, &spec, &storage, &err) < 0) {
		if (err == NULL || err->message[0] == '\0')
			abort();
		lms_error_free(err);
		return 0;
	}
	struct lms_buf again = {0};
	lms_spec_encode(&spec, &again);
	if (again.len != size || memcmp(again.data, data, size) != 0)
		abort();
	lms_buf_clear(&again);
	free(storage);
	return 0;
}
