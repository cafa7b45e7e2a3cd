/*
 * libFuzzer target: the body of POST /v1/exec, which every client may send, through the one parser of
 * exec-like routes. Invariants: a parsed request is a spec the engine accepts (argv NULL-terminated
 * with a program, limits within the server's ceilings), and a refusal has a message that can go back
 * to the client as API.md's error object. Leaks are ASan's to find.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/exec-json.h"
#include "api/exec-request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct lms_exec_policy policy = {
    .defaults =
	{.timeout_ms = 30000, .memory_mb = 512, .pids = 256, .cpu_ms = 0, .output_bytes = 1048576, .disk_mb = 1024},
    .ceilings = {.timeout_ms = 600000,
		 .memory_mb = 512,
		 .pids = 256,
		 .cpu_ms = 60000,
		 .output_bytes = 1048576,
		 .disk_mb = 1024},
    .allow_network = false,
    .have_bash = true,
};

static void
check_strv(char *const *v, size_t max)
{
	size_t n = 0;
	while (v[n] != NULL)
		if (++n > max)
			abort();
}

static void
check_request(const struct lms_exec_request *r)
{
	const struct lms_sandbox_spec *s = &r->spec;
	const struct lms_limits *l = &s->limits, *c = &policy.ceilings;
	if (s->argv == NULL || s->argv[0] == NULL || s->argv[0][0] == '\0')
		abort();
	check_strv(s->argv, LMS_MAX_ARGS);
	if (s->env != NULL)
		check_strv(s->env, LMS_MAX_ENV);
	if (l->timeout_ms > c->timeout_ms || l->memory_mb > c->memory_mb || l->pids > c->pids ||
	    l->cpu_ms > c->cpu_ms || l->cpu_ms == 0 || l->output_bytes > c->output_bytes || l->disk_mb > c->disk_mb)
		abort();
	if (s->network || s->cancel_fd != -1)
		abort();
	if (s->stdin_data == NULL && s->stdin_len != 0)
		abort();
	if (!lms_image_is_host(s->image))
		abort();
	if (r->encoding != LMS_ENCODING_UTF8 && r->encoding != LMS_ENCODING_BASE64)
		abort();
	if (lms_sandbox_spec_validate(s, NULL) < 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lms_exec_request *req = NULL;
	struct lms_error *err = NULL;
	if (lms_exec_request_parse((const char *)data, size, &policy, &req, &err) == 0) {
		if (err != NULL)
			abort();
		check_request(req);
		lms_exec_request_free(req);
		return 0;
	}
	if (req != NULL || err == NULL || err->message == NULL || err->message[0] == '\0')
		abort();
	/* The message is valid UTF-8 (json_pack refuses anything else), so the server can always reply. */
	json_t *j = lms_error_json(err);
	if (j == NULL)
		abort();
	json_decref(j);
	lms_error_free(err);
	return 0;
}
