#pragma once
/*
 * The exec result as API.md's JSON object. Shared by `lm-sandbox run --json` and the HTTP server, so
 * that both speak exactly the same fields.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "sandbox/sandbox.h"

enum lms_encoding {
	LMS_ENCODING_UTF8,   /* invalid bytes become U+FFFD */
	LMS_ENCODING_BASE64, /* stdout and stderr are base64 */
};

/* Returns a new object with stdout, stderr, exit_code, signal, timed_out, oom_killed,
 * stdout_truncated, stderr_truncated, duration_ms, cpu_ms and max_rss_kb. */
json_t *lms_exec_result_json(const struct lms_sandbox_result *res, const char *out, size_t out_len, const char *err,
			     size_t err_len, enum lms_encoding encoding);

/* API.md's one error shape: {"error": {"message", "type", "code"}}. Every error body is made here. */
json_t *lms_api_error_json(const char *type, const char *code, const char *message);
/* The same for an lms_error: its kind gives the type and the code. */
json_t *lms_error_json(const struct lms_error *e);

/* json_dump flags for API output: compact, and reals at a readable precision (12.346, not 12.3460000001). */
#define LMS_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(12))
