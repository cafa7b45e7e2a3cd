/*
 * libFuzzer target: image references as `docker pull` reads them (image/reference.c). Whatever the text:
 * a parse fails with a message or gives a registry, a repository and a reference; a digest reference is
 * "sha256:" and 64 lower-case hex digits; the default name is a non-empty string without a '/'.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/reference.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[600];
	if (size >= sizeof(text))
		size = sizeof(text) - 1;
	memcpy(text, data, size);
	text[size] = '\0';
	struct lms_image_ref ref = {0};
	struct lms_error *err = NULL;
	if (lms_image_ref_parse(text, &ref, &err) < 0) {
		if (err == NULL || err->message == NULL)
			abort();
		lms_error_free(err);
		lms_image_ref_clear(&ref);
		return 0;
	}
	if (!ref.registry || !ref.repository || !ref.reference || !ref.registry[0] || !ref.repository[0])
		abort();
	if (ref.digest) {
		if (strncmp(ref.digest, "sha256:", 7) != 0 || strlen(ref.digest) != 71 ||
		    strspn(ref.digest + 7, "0123456789abcdef") != 64 || strcmp(ref.reference, ref.digest) != 0)
			abort();
	}
	char *name = lms_image_ref_default_name(&ref);
	if (!name || !name[0] || strchr(name, '/'))
		abort();
	free(name);
	lms_image_ref_clear(&ref);
	return 0;
}
