/*
 * lms-spawner-driver: drives the real spawner (sandbox/spawner.h) the way the daemon does, without
 * HTTP, so that the system tests can check the process model itself: one-shot jobs, and lasting
 * sandboxes that keep their files and background processes between commands.
 *
 *   lms-spawner-driver HELPER [POOL_SIZE [LOG_LEVEL]] < requests
 *
 * HELPER is the lm-sandbox binary, as the daemon uses it; POOL_SIZE defaults to the server's 4, LOG_LEVEL
 * (debug, info, warning, error) to info, as `lm-sandbox serve --log-level`.
 *
 * Each line of standard input is one JSON request, answered by one JSON line on standard output:
 *   {"op": "run", "request": {...}}                 a one-shot job (the body of POST /v1/exec)
 *   {"op": "create", "sandbox": N}                  a lasting sandbox, with the default limits
 *   {"op": "exec", "sandbox": N, "request": {...}}  a command in it
 *   {"op": "destroy", "sandbox": N}
 * An answer is {"result": {the exec result}} ({} for create and destroy) or {"error": {...}}.
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/exec-json.h"
#include "api/exec-request.h"
#include "core/log.h"
#include "sandbox/spawner.h"

static const struct lms_exec_policy policy = {
    .defaults = {.timeout_ms = LMS_DEFAULT_TIMEOUT_MS,
		 .memory_mb = LMS_DEFAULT_MEMORY_MB,
		 .pids = LMS_DEFAULT_PIDS,
		 .output_bytes = LMS_DEFAULT_OUTPUT_BYTES,
		 .disk_mb = LMS_DEFAULT_DISK_MB},
    .ceilings = {.timeout_ms = LMS_MAX_TIMEOUT_MS,
		 .memory_mb = LMS_DEFAULT_MEMORY_MB,
		 .pids = LMS_DEFAULT_PIDS,
		 .cpu_ms = LMS_MAX_TIMEOUT_MS,
		 .output_bytes = LMS_DEFAULT_OUTPUT_BYTES,
		 .disk_mb = LMS_DEFAULT_DISK_MB},
    .have_bash = true,
};

static void
answer(json_t *body)
{
	char *text = json_dumps(body, LMS_JSON_FLAGS);
	json_decref(body);
	printf("%s\n", text);
	fflush(stdout);
	free(text);
}

static void
answer_error(const struct lms_error *e)
{
	answer(lms_error_json(e)); /* {"error": {...}}, API.md's one shape */
}

/* The whole output and the result, as POST /v1/exec collects them. */
static void
collect(struct lms_job *job, const struct lms_exec_request *xr)
{
	struct lms_job_output out;
	struct lms_error *e = NULL;
	if (lms_job_collect(job, -1, &out, &e) < 0) {
		answer_error(e);
		lms_error_free(e);
		return;
	}
	answer(json_pack(
	    "{s:o}", "result",
	    lms_exec_result_json(&out.result, out.out.data, out.out.len, out.err.data, out.err.len, xr->encoding)));
	lms_job_output_clear(&out);
}

static void
serve_line(struct lms_spawner *sp, const char *line)
{
	json_error_t jerr;
	json_t *in = json_loads(line, 0, &jerr);
	const char *op = json_string_value(json_object_get(in, "op"));
	uint64_t sandbox = (uint64_t)json_integer_value(json_object_get(in, "sandbox"));
	struct lms_error *e = NULL;
	struct lms_exec_request *xr = NULL;
	struct lms_job *job = NULL;
	json_t *request = json_object_get(in, "request");
	char *body = request ? json_dumps(request, JSON_COMPACT) : NULL;
	if (op == NULL) {
		lms_error_set(&e, LMS_ERR_INVALID, 0, "driver: a line needs \"op\"");
	} else if (strcmp(op, "create") == 0 || strcmp(op, "destroy") == 0) {
		struct lms_sandbox_spec base;
		lms_sandbox_spec_init(&base);
		base.limits = policy.defaults;
		int r = strcmp(op, "create") == 0 ? lms_spawner_create(sp, sandbox, &base, NULL, &e)
						  : lms_spawner_destroy(sp, sandbox, &e);
		if (r == 0)
			answer(json_pack("{s:{}}", "result"));
	} else if (body == NULL) {
		lms_error_set(&e, LMS_ERR_INVALID, 0, "driver: \"%s\" needs \"request\"", op);
	} else if (lms_exec_request_parse(body, strlen(body), &policy, &xr, &e) == 0) {
		int r = strcmp(op, "exec") == 0 ? lms_spawner_exec(sp, sandbox, &xr->spec, &job, &e)
						: lms_spawner_submit(sp, &xr->spec, &job, &e);
		if (r == 0)
			collect(job, xr);
	}
	if (e != NULL)
		answer_error(e);
	lms_error_free(e);
	lms_job_free(job);
	lms_exec_request_free(xr);
	free(body);
	json_decref(in);
}

int
main(int argc, char **argv)
{
	if (argc < 2 || argc > 4 || (argc == 4 && lms_log_level_parse(argv[3]) < 0)) {
		fputs("usage: lms-spawner-driver HELPER [POOL_SIZE [LOG_LEVEL]] < requests\n", stderr);
		return 2;
	}
	if (argc == 4)
		lms_log_set_level((enum lms_log_level)lms_log_level_parse(argv[3]));
	unsigned pool_size = argc == 3 ? (unsigned)strtoul(argv[2], NULL, 10) : 4;
	signal(SIGPIPE, SIG_IGN);
	struct lms_sandbox_spec base;
	lms_sandbox_spec_init(&base);
	base.limits = policy.defaults;
	struct lms_spawner *sp = NULL;
	struct lms_error *e = NULL;
	if (lms_spawner_start(argv[1], &base, pool_size, &sp, &e) < 0) {
		fprintf(stderr, "lms-spawner-driver: %s\n", e->message);
		lms_error_free(e);
		return 1;
	}
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, stdin) > 0)
		serve_line(sp, line);
	free(line);
	lms_spawner_stop(sp);
	return 0;
}
