/*
 * libFuzzer target: the `--backend NAME=URL,NAME=URL` list (LM_SANDBOX_BACKEND), parsed by
 * lms_backends_init. Whatever the text, it is either refused with a message or gives backends whose
 * names are unique, non-empty and free of '/', ',' and '=', and whose URLs are http(s):// with a host and
 * no trailing '/'.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "llm/backend.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const struct lms_backend *b)
{
	size_t scheme = strncmp(b->url, "https://", 8) == 0 ? 8 : strncmp(b->url, "http://", 7) == 0 ? 7 : 0;
	size_t len = strlen(b->url);
	if (*b->name == '\0' || strpbrk(b->name, "/,=") != NULL || scheme == 0 || len == scheme ||
	    b->url[len - 1] == '/' || b->models != NULL || b->reachable)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A flag or a variable: text up to its first NUL. */
	char *extra = xstrndup((const char *)data, size);
	struct lms_backends bs = {0};
	struct lms_error *err = NULL;
	int rc = lms_backends_init(&bs, "http://127.0.0.1:11434", "http://127.0.0.1:8080/", extra, &err);
	if (rc < 0) {
		if (err == NULL || err->message[0] == '\0' || err->kind != LMS_ERR_INVALID)
			abort();
	} else {
		if (err != NULL || bs.n < 2 || strcmp(bs.v[0].name, "ollama") != 0 ||
		    strcmp(bs.v[1].url, "http://127.0.0.1:8080") != 0)
			abort();
		for (size_t i = 0; i < bs.n; i++) {
			check(&bs.v[i]);
			for (size_t j = 0; j < i; j++)
				if (strcmp(bs.v[i].name, bs.v[j].name) == 0)
					abort();
		}
	}
	lms_error_free(err);
	lms_backends_free(&bs);
	free(extra);
	return 0;
}
