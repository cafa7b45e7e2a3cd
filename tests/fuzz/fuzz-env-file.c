/*
 * libFuzzer target: the env-file parser (lms_config_parse_env, server/settings.c), which reads what an
 * operator's --env-file holds, Compose .env files included. Whatever the bytes, it accepts them or
 * fails with an LMS_ERR_INVALID message that names the line; it never reads out of bounds or leaks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/settings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lms_config cfg = {0};
	struct lms_error *err = NULL;
	int r = lms_config_parse_env(&cfg, (const char *)data, size, "fuzz.env", &err);
	if (r < 0 && (err == NULL || err->kind != LMS_ERR_INVALID || strncmp(err->message, "fuzz.env:", 9) != 0))
		abort();
	if (r == 0 && err != NULL)
		abort();
	lms_error_free(err);
	lms_config_free(&cfg);
	return 0;
}
