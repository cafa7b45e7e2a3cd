#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "api/exec-json.h"
#include "api/exec-request.h"
#include "api/gpu-json.h"
#include "core/alloc.h"
#include "sandbox/gpu.h"
#include "core/buf.h"

/* A server started with defaults below API.md's and a few ceilings above them. */
static const struct lms_exec_policy policy = {
    .defaults =
	{.timeout_ms = 10000, .memory_mb = 256, .pids = 128, .cpu_ms = 0, .output_bytes = 65536, .disk_mb = 512},
    .ceilings =
	{.timeout_ms = 60000, .memory_mb = 1024, .pids = 512, .cpu_ms = 0, .output_bytes = 1048576, .disk_mb = 2048},
    .allow_network = false,
    .have_bash = true,
};

static void
request_freep(struct lms_exec_request **r)
{
	lms_exec_request_free(*r);
}
#define _cleanup_request_ _cleanup_(request_freep)

static struct lms_exec_request *
parse_with(const struct lms_exec_policy *p, const char *body, size_t len)
{
	_cleanup_error_ struct lms_error *err = NULL;
	struct lms_exec_request *req = NULL;
	if (lms_exec_request_parse(body, len, p, &req, &err) < 0)
		fail_msg("'%s' was refused: %s", body, err->message);
	assert_non_null(req);
	return req;
}

static struct lms_exec_request *
parse(const char *body)
{
	return parse_with(&policy, body, strlen(body));
}

/* Parses a body that must fail: checks the kind, that the message mentions `needle`, that *out stays
 * NULL, and that the message can go out as API.md's error object. */
static void
expect_error_n(const char *body, size_t len, enum lms_error_kind kind, const char *needle)
{
	_cleanup_error_ struct lms_error *err = NULL;
	struct lms_exec_request *req = (struct lms_exec_request *)&err; /* any non-NULL value */
	assert_int_equal(lms_exec_request_parse(body, len, &policy, &req, &err), -1);
	assert_null(req);
	assert_non_null(err);
	if (err->kind != kind)
		fail_msg("'%.*s': kind %s, not %s (%s)", (int)len, body, lms_error_kind_name(err->kind),
			 lms_error_kind_name(kind), err->message);
	if (strstr(err->message, needle) == NULL)
		fail_msg("'%.*s': message '%s' does not mention '%s'", (int)len, body, err->message, needle);
	json_t *j = lms_error_json(err);
	assert_non_null(j);
	json_decref(j);
}

static void
expect_error(const char *body, enum lms_error_kind kind, const char *needle)
{
	expect_error_n(body, strlen(body), kind, needle);
}

static void
expect_invalid(const char *body, const char *needle)
{
	expect_error(body, LMS_ERR_INVALID, needle);
}

static void
assert_argv(char *const *argv, const char *const *want)
{
	assert_non_null(argv);
	size_t i = 0;
	for (; want[i]; i++) {
		assert_non_null(argv[i]);
		assert_string_equal(argv[i], want[i]);
	}
	assert_null(argv[i]);
}

static void
cmd_runs_under_bash(void **state)
{
	(void)state;
	_cleanup_request_ struct lms_exec_request *r = parse("{\"cmd\": \"echo hi | wc -c\"}");
	assert_argv(r->spec.argv, (const char *[]){"bash", "-c", "echo hi | wc -c", NULL});
}

static void
cmd_runs_under_sh_without_bash(void **state)
{
	(void)state;
	struct lms_exec_policy p = policy;
	p.have_bash = false;
	const char *body = "{\"cmd\": \"echo $0\"}";
	_cleanup_request_ struct lms_exec_request *r = parse_with(&p, body, strlen(body));
	assert_argv(r->spec.argv, (const char *[]){"sh", "-c", "echo $0", NULL});
}

static void
argv_runs_as_given(void **state)
{
	(void)state;
	_cleanup_request_ struct lms_exec_request *r =
	    parse("{\"argv\": [\"printf\", \"%s|\", \"\", \"a b\", \"$HOME\", \"\\u00e9\"]}");
	assert_argv(r->spec.argv, (const char *[]){"printf", "%s|", "", "a b", "$HOME", "\xc3\xa9", NULL});
}

static void
defaults_come_from_the_policy(void **state)
{
	(void)state;
	_cleanup_request_ struct lms_exec_request *r = parse("{\"cmd\": \"true\"}");
	const struct lms_sandbox_spec *s = &r->spec;
	assert_memory_equal(&s->limits, &policy.defaults, sizeof(s->limits));
	assert_null(s->stdin_data); /* /dev/null */
	assert_int_equal(s->stdin_len, 0);
	assert_null(s->env);
	assert_null(s->cwd); /* /work */
	assert_null(s->image);
	assert_false(s->network);
	assert_int_equal(s->gpus, 0);
	assert_int_equal(s->cancel_fd, -1);
	assert_int_equal(r->encoding, LMS_ENCODING_UTF8);
	assert_false(r->stream);
}

static void
every_field_is_read(void **state)
{
	(void)state;
	struct lms_exec_policy p = policy;
	p.allow_network = true;
	p.ceilings.cpu_ms = 0;
	const char *body = "{\"argv\": [\"cat\"], \"stdin\": \"input\\n\", \"env\": {\"LANG\": \"C.UTF-8\"},"
			   " \"cwd\": \"/tmp/x\", \"timeout_ms\": 1500,"
			   " \"limits\": {\"memory_mb\": 64, \"pids\": 8, \"cpu_ms\": 700, \"output_bytes\": 100,"
			   " \"disk_mb\": 16},"
			   " \"network\": true, \"image\": \"host\", \"gpu\": true, \"encoding\": \"base64\","
			   " \"stream\": true}";
	_cleanup_request_ struct lms_exec_request *r = parse_with(&p, body, strlen(body));
	const struct lms_sandbox_spec *s = &r->spec;
	assert_argv(s->argv, (const char *[]){"cat", NULL});
	assert_int_equal(s->stdin_len, 6);
	assert_memory_equal(s->stdin_data, "input\n", 6);
	assert_argv(s->env, (const char *[]){"LANG=C.UTF-8", NULL});
	assert_string_equal(s->cwd, "/tmp/x");
	assert_int_equal(s->limits.timeout_ms, 1500);
	assert_int_equal(s->limits.memory_mb, 64);
	assert_int_equal(s->limits.pids, 8);
	assert_int_equal(s->limits.cpu_ms, 700);
	assert_int_equal(s->limits.output_bytes, 100);
	assert_int_equal(s->limits.disk_mb, 16);
	assert_true(s->network);
	assert_string_equal(s->image, "host");
	assert_true(s->gpus == LMS_GPU_ALL);
	assert_int_equal(s->cancel_fd, -1);
	assert_int_equal(r->encoding, LMS_ENCODING_BASE64);
	assert_true(r->stream);
	assert_int_equal(lms_sandbox_spec_validate(s, NULL), 0);
}

static void
explicit_false_and_utf8(void **state)
{
	(void)state;
	_cleanup_request_ struct lms_exec_request *r = parse(
	    "{\"cmd\": \"true\", \"network\": false, \"gpu\": false, \"stream\": false, \"encoding\": \"utf-8\"}");
	assert_false(r->spec.network);
	assert_int_equal(r->spec.gpus, 0);
	assert_false(r->stream);
	assert_int_equal(r->encoding, LMS_ENCODING_UTF8);
}

/* gpu: [indices] selects those (a set: repeats are one), and goes back out as the same list. */
static void
gpu_indices(void **state)
{
	(void)state;
	_cleanup_request_ struct lms_exec_request *r = parse("{\"cmd\": \"true\", \"gpu\": [2, 0, 2]}");
	assert_int_equal(r->spec.gpus, 5);
	json_auto_t *j = lms_gpu_selection_json(r->spec.gpus);
	char *text = json_dumps(j, JSON_COMPACT);
	assert_string_equal(text, "[0,2]");
	free(text);
	json_auto_t *all = lms_gpu_selection_json(LMS_GPU_ALL);
	assert_true(json_is_true(all));
}

static void
env_becomes_name_value_entries(void **state)
{
	(void)state;
	_cleanup_request_ struct lms_exec_request *r =
	    parse("{\"cmd\": \"env\", \"env\": {\"A\": \"1\", \"B\": \"x=y\", \"EMPTY\": \"\", \"U\": \"\\u00e9\"}}");
	assert_argv(r->spec.env, (const char *[]){"A=1", "B=x=y", "EMPTY=", "U=\xc3\xa9", NULL});

	_cleanup_request_ struct lms_exec_request *none = parse("{\"cmd\": \"env\", \"env\": {}}");
	assert_true(none->spec.env == NULL || none->spec.env[0] == NULL);
}

static void
stdin_empty_absent_and_binary(void **state)
{
	(void)state;
	/* "" is an empty stdin (the command reads EOF), not /dev/null: a different thing to a program. */
	_cleanup_request_ struct lms_exec_request *empty = parse("{\"cmd\": \"cat\", \"stdin\": \"\"}");
	assert_non_null(empty->spec.stdin_data);
	assert_int_equal(empty->spec.stdin_len, 0);

	/* NUL bytes are data on stdin: kept, and counted. */
	_cleanup_request_ struct lms_exec_request *nul = parse("{\"cmd\": \"cat\", \"stdin\": \"a\\u0000b\\u0000\"}");
	assert_int_equal(nul->spec.stdin_len, 4);
	assert_memory_equal(nul->spec.stdin_data, "a\0b\0", 4);
}

static void
larger_limits_are_clamped_to_the_ceilings(void **state)
{
	(void)state;
	_cleanup_request_ struct lms_exec_request *r =
	    parse("{\"cmd\": \"true\", \"timeout_ms\": 86400000, \"limits\": {\"memory_mb\": 999999, "
		  "\"pids\": 1000000, \"output_bytes\": 4294967296, \"disk_mb\": 1048576}}");
	const struct lms_limits *l = &r->spec.limits;
	assert_int_equal(l->timeout_ms, policy.ceilings.timeout_ms);
	assert_int_equal(l->memory_mb, policy.ceilings.memory_mb);
	assert_int_equal(l->pids, policy.ceilings.pids);
	assert_int_equal(l->output_bytes, policy.ceilings.output_bytes);
	assert_int_equal(l->disk_mb, policy.ceilings.disk_mb);

	/* Past even the engine's bounds: still clamped, never an error. */
	_cleanup_request_ struct lms_exec_request *huge =
	    parse("{\"cmd\": \"true\", \"timeout_ms\": 9223372036854775807, "
		  "\"limits\": {\"output_bytes\": 9223372036854775807}}");
	assert_int_equal(huge->spec.limits.timeout_ms, policy.ceilings.timeout_ms);
	assert_int_equal(huge->spec.limits.output_bytes, policy.ceilings.output_bytes);

	/* Defaults above a ceiling are clamped as well. */
	struct lms_exec_policy p = policy;
	p.defaults.timeout_ms = 90000;
	const char *body = "{\"cmd\": \"true\"}";
	_cleanup_request_ struct lms_exec_request *d = parse_with(&p, body, strlen(body));
	assert_int_equal(d->spec.limits.timeout_ms, p.ceilings.timeout_ms);
}

static void
output_bytes_zero_is_allowed(void **state)
{
	(void)state;
	_cleanup_request_ struct lms_exec_request *r = parse("{\"cmd\": \"true\", \"limits\": {\"output_bytes\": 0}}");
	assert_int_equal(r->spec.limits.output_bytes, 0);
}

/* The limits a request with `limits` (JSON, or NULL for none) gets under policy p. */
static struct lms_limits
limits_under(const struct lms_exec_policy *p, const char *limits)
{
	_cleanup_free_ char *body =
	    limits ? xasprintf("{\"cmd\": \"true\", \"limits\": %s}", limits) : xstrdup("{\"cmd\": \"true\"}");
	_cleanup_request_ struct lms_exec_request *r = parse_with(p, body, strlen(body));
	return r->spec.limits;
}

static void
cpu_ms_zero_means_none(void **state)
{
	(void)state;
	/* A server without a CPU ceiling takes any value, and 0 (none). */
	assert_int_equal(limits_under(&policy, "{\"cpu_ms\": 3600000}").cpu_ms, 3600000);

	/* Under a ceiling, "none" and larger values are the ceiling; smaller ones stay. */
	struct lms_exec_policy p = policy;
	p.ceilings.cpu_ms = 5000;
	assert_int_equal(limits_under(&p, "{\"cpu_ms\": 0}").cpu_ms, 5000);
	assert_int_equal(limits_under(&p, "{\"cpu_ms\": 9000}").cpu_ms, 5000);
	assert_int_equal(limits_under(&p, "{\"cpu_ms\": 200}").cpu_ms, 200);
	assert_int_equal(limits_under(&p, NULL).cpu_ms, 5000);
}

static void
cpus_are_thousandths_under_the_ceiling(void **state)
{
	(void)state;
	assert_int_equal(limits_under(&policy, "{\"cpus\": 0.5}").millicpus, 500);
	assert_int_equal(limits_under(&policy, "{\"cpus\": 2}").millicpus, 2000);
	assert_int_equal(limits_under(&policy, NULL).millicpus, 0);
	expect_error("{\"cmd\": \"true\", \"limits\": {\"cpus\": -1}}", LMS_ERR_INVALID, "limits.cpus");
	expect_error("{\"cmd\": \"true\", \"limits\": {\"cpus\": \"1\"}}", LMS_ERR_INVALID, "limits.cpus");
	expect_error("{\"cmd\": \"true\", \"limits\": {\"cpus\": 0.001}}", LMS_ERR_INVALID, "0.01");
	expect_error("{\"cmd\": \"true\", \"limits\": {\"cpus\": 5000}}", LMS_ERR_INVALID, "limits.cpus");
	/* As cpu_ms: under a ceiling, "none" and larger values are the ceiling; smaller ones stay. */
	struct lms_exec_policy p = policy;
	p.ceilings.millicpus = p.defaults.millicpus = 1000;
	assert_int_equal(limits_under(&p, "{\"cpus\": 0}").millicpus, 1000);
	assert_int_equal(limits_under(&p, "{\"cpus\": 3.5}").millicpus, 1000);
	assert_int_equal(limits_under(&p, "{\"cpus\": 0.25}").millicpus, 250);
}

static void
null_means_not_given(void **state)
{
	(void)state;
	_cleanup_request_ struct lms_exec_request *r =
	    parse("{\"cmd\": null, \"argv\": [\"true\"], \"stdin\": null, \"env\": null, \"cwd\": null, "
		  "\"timeout_ms\": null, \"limits\": {\"memory_mb\": null, \"pids\": null, \"cpu_ms\": null, "
		  "\"output_bytes\": null, \"disk_mb\": null, \"cpus\": null}, \"network\": null, \"image\": null, "
		  "\"gpu\": null, "
		  "\"encoding\": null, \"stream\": null}");
	assert_argv(r->spec.argv, (const char *[]){"true", NULL});
	assert_memory_equal(&r->spec.limits, &policy.defaults, sizeof(r->spec.limits));
	assert_null(r->spec.stdin_data);
	assert_null(r->spec.env);
	assert_null(r->spec.cwd);
	assert_null(r->spec.image);
	assert_int_equal(r->encoding, LMS_ENCODING_UTF8);

	_cleanup_request_ struct lms_exec_request *l = parse("{\"argv\": null, \"cmd\": \"true\", \"limits\": null}");
	assert_string_equal(l->spec.argv[0], "bash");
	assert_memory_equal(&l->spec.limits, &policy.defaults, sizeof(l->spec.limits));
}

static void
unknown_fields_are_ignored(void **state)
{
	(void)state;
	_cleanup_request_ struct lms_exec_request *r =
	    parse("{\"cmd\": \"true\", \"model\": \"x\", \"timeout\": \"soon\", \"extra\": {\"a\": [1, 2]}, "
		  "\"limits\": {\"memory_mb\": 128, \"swap_mb\": \"lots\", \"timeout_ms\": -1}}");
	assert_int_equal(r->spec.limits.memory_mb, 128);
	assert_int_equal(r->spec.limits.timeout_ms, policy.defaults.timeout_ms);
}

static void
duplicate_names_last_wins(void **state)
{
	(void)state;
	_cleanup_request_ struct lms_exec_request *r =
	    parse("{\"cmd\": \"first\", \"timeout_ms\": 5, \"cmd\": \"second\", \"timeout_ms\": 7}");
	assert_string_equal(r->spec.argv[2], "second");
	assert_int_equal(r->spec.limits.timeout_ms, 7);
}

static void
request_owns_its_strings(void **state)
{
	(void)state;
	const char *text =
	    "{\"argv\": [\"ls\", \"-l\"], \"env\": {\"K\": \"V\"}, \"cwd\": \"/srv\", \"stdin\": \"in\", "
	    "\"image\": \"host\"}";
	char *body = xstrdup(text);
	struct lms_exec_request *r = parse_with(&policy, body, strlen(body));
	memset(body, 'x', strlen(body));
	free(body);
	assert_argv(r->spec.argv, (const char *[]){"ls", "-l", NULL});
	assert_argv(r->spec.env, (const char *[]){"K=V", NULL});
	assert_string_equal(r->spec.cwd, "/srv");
	assert_memory_equal(r->spec.stdin_data, "in", 2);
	assert_string_equal(r->spec.image, "host");
	lms_exec_request_free(r);
}

static void
body_errors(void **state)
{
	(void)state;
	expect_error_n(NULL, 0, LMS_ERR_INVALID, "the body is empty: send a JSON object");
	expect_error_n("{}", 0, LMS_ERR_INVALID, "the body is empty");
	expect_invalid("{\"cmd\": ", "malformed JSON at line 1, column 8");
	expect_invalid("{\n  \"cmd\": \"true\",\n}", "malformed JSON at line 3, column 1");
	expect_invalid("{\"cmd\": \"true\"} trailing", "malformed JSON at line 1");
	expect_invalid("   ", "malformed JSON at line 1");
	expect_invalid("{'cmd': 'true'}", "malformed JSON at line 1, column 2");
	expect_invalid("{\"cmd\": \"true\", \"timeout_ms\": 99999999999999999999}", "malformed JSON at line 1");
	/* Invalid UTF-8: the message itself stays valid UTF-8 (expect_error encodes it as JSON). */
	expect_invalid("{\"cmd\": \"\xff\xfe\"}", "malformed JSON at line 1");
	expect_invalid("{\"cmd\": \"\xc3\"}", "malformed JSON at line 1");
	/* jansson cannot hold a NUL byte in a name. */
	expect_invalid("{\"env\\u0000\": 1, \"cmd\": \"true\"}", "malformed JSON at line 1");
	expect_invalid("[\"true\"]", "the body must be a JSON object, not an array");
	expect_invalid("\"true\"", "the body must be a JSON object, not a string");
	expect_invalid("42", "the body must be a JSON object");
	expect_invalid("null", "the body must be a JSON object");
}

static void
command_errors(void **state)
{
	(void)state;
	expect_invalid("{}", "send exactly one of \"cmd\"");
	expect_invalid("{\"cmd\": null, \"argv\": null}", "exactly one");
	expect_invalid("{\"cmd\": \"ls\", \"argv\": [\"ls\"]}", "exactly one");
	expect_invalid("{\"cmd\": [\"ls\"]}", "cmd must be a string, not an array");
	expect_invalid("{\"cmd\": \"echo a\\u0000b\"}", "cmd must not contain a NUL byte");
	expect_invalid("{\"argv\": \"ls -l\"}", "argv must be an array of strings, not a string");
	expect_invalid("{\"argv\": []}", "argv must not be empty");
	expect_invalid("{\"argv\": [\"ls\", 1]}", "argv[1] must be a string, not an integer");
	expect_invalid("{\"argv\": [\"ls\", null]}", "argv[1] must be a string, not null");
	expect_invalid("{\"argv\": [\"\"]}", "argv[0]");
	expect_invalid("{\"argv\": [\"ls\", \"a\\u0000b\"]}", "argv[1] must not contain a NUL byte");
}

static void
too_many_entries(void **state)
{
	(void)state;
	struct lms_buf b = {0};
	lms_buf_append(&b, "{\"argv\": [\"true\"", strlen("{\"argv\": [\"true\""));
	for (int i = 0; i < LMS_MAX_ARGS; i++)
		lms_buf_append(&b, ",\"a\"", 4);
	lms_buf_append(&b, "]}", 2);
	expect_error_n(b.data, b.len, LMS_ERR_INVALID, "argv has 4097 entries, more than 4096");
	lms_buf_clear(&b);

	lms_buf_append(&b, "{\"cmd\": \"env\", \"env\": {", strlen("{\"cmd\": \"env\", \"env\": {"));
	for (int i = 0; i <= LMS_MAX_ENV; i++) {
		char entry[32];
		int n = snprintf(entry, sizeof(entry), "%s\"V%d\": \"\"", i ? "," : "", i);
		lms_buf_append(&b, entry, (size_t)n);
	}
	lms_buf_append(&b, "}}", 2);
	expect_error_n(b.data, b.len, LMS_ERR_INVALID, "env has 4097 entries, more than 4096");
	lms_buf_clear(&b);
}

static void
env_errors(void **state)
{
	(void)state;
	expect_invalid("{\"cmd\": \"env\", \"env\": [\"A=1\"]}", "env must be an object of strings, not an array");
	expect_invalid("{\"cmd\": \"env\", \"env\": \"A=1\"}", "env must be an object");
	expect_invalid("{\"cmd\": \"env\", \"env\": {\"A\": 1}}", "env value of 'A' must be a string, not an integer");
	expect_invalid("{\"cmd\": \"env\", \"env\": {\"A\": null}}", "env value of 'A' must be a string, not null");
	expect_invalid("{\"cmd\": \"env\", \"env\": {\"\": \"x\"}}", "env names must not be empty");
	expect_invalid("{\"cmd\": \"env\", \"env\": {\"A=B\": \"x\"}}", "env name 'A=B' must not contain '='");
	expect_invalid("{\"cmd\": \"env\", \"env\": {\"A\": \"x\\u0000y\"}}",
		       "env value of 'A' must not contain a NUL");
}

static void
cwd_errors(void **state)
{
	(void)state;
	expect_invalid("{\"cmd\": \"pwd\", \"cwd\": \"work\"}",
		       "cwd must be an absolute path (starting with '/'), not 'work'");
	expect_invalid("{\"cmd\": \"pwd\", \"cwd\": \"\"}", "cwd must be an absolute path");
	expect_invalid("{\"cmd\": \"pwd\", \"cwd\": 7}", "cwd must be a string, not an integer");
	expect_invalid("{\"cmd\": \"pwd\", \"cwd\": \"/a\\u0000b\"}", "cwd must not contain a NUL byte");

	struct lms_buf b = {0};
	lms_buf_append(&b, "{\"cmd\": \"pwd\", \"cwd\": \"/", strlen("{\"cmd\": \"pwd\", \"cwd\": \"/"));
	for (int i = 0; i < 4095; i++)
		lms_buf_append(&b, "a", 1);
	lms_buf_append(&b, "\"}", 2);
	expect_error_n(b.data, b.len, LMS_ERR_INVALID, "cwd must be shorter than 4096 bytes, not 4096");
	lms_buf_clear(&b);

	/* 4095 bytes is the longest path the kernel takes. */
	char *ok = xasprintf("{\"cmd\": \"pwd\", \"cwd\": \"/%04094d\"}", 0);
	_cleanup_request_ struct lms_exec_request *r = parse(ok);
	assert_int_equal(strlen(r->spec.cwd), 4095);
	free(ok);
}

static void
integer_errors_name_the_field(void **state)
{
	(void)state;
	expect_invalid("{\"cmd\": \"true\", \"timeout_ms\": 1.5}",
		       "timeout_ms must be a non-negative integer, not a real number");
	expect_invalid("{\"cmd\": \"true\", \"timeout_ms\": 1000.0}", "timeout_ms must be a non-negative integer");
	expect_invalid("{\"cmd\": \"true\", \"timeout_ms\": -1}", "timeout_ms must be a non-negative integer, not -1");
	expect_invalid("{\"cmd\": \"true\", \"timeout_ms\": \"100\"}",
		       "timeout_ms must be a non-negative integer, not a string");
	expect_invalid("{\"cmd\": \"true\", \"timeout_ms\": true}",
		       "timeout_ms must be a non-negative integer, not a boolean");
	expect_invalid("{\"cmd\": \"true\", \"limits\": {\"memory_mb\": true}}",
		       "limits.memory_mb must be a non-negative integer");
	expect_invalid("{\"cmd\": \"true\", \"limits\": {\"pids\": -5}}", "limits.pids must be a non-negative integer");
	expect_invalid("{\"cmd\": \"true\", \"limits\": {\"cpu_ms\": 2.5}}",
		       "limits.cpu_ms must be a non-negative integer");
	expect_invalid("{\"cmd\": \"true\", \"limits\": {\"output_bytes\": [1]}}",
		       "limits.output_bytes must be a non-negative integer, not an array");
	expect_invalid("{\"cmd\": \"true\", \"limits\": {\"disk_mb\": {}}}",
		       "limits.disk_mb must be a non-negative integer, not an object");
	expect_invalid("{\"cmd\": \"true\", \"limits\": 512}", "limits must be an object, not an integer");
	expect_invalid("{\"cmd\": \"true\", \"limits\": [512]}", "limits must be an object, not an array");
}

static void
zero_where_the_engine_needs_one(void **state)
{
	(void)state;
	expect_invalid("{\"cmd\": \"true\", \"timeout_ms\": 0}", "timeout_ms must be at least 1, not 0");
	expect_invalid("{\"cmd\": \"true\", \"limits\": {\"pids\": 0}}", "limits.pids must be at least 1, not 0");
	expect_invalid("{\"cmd\": \"true\", \"limits\": {\"memory_mb\": 3}}",
		       "limits.memory_mb must be at least 4, not 3");
	expect_invalid("{\"cmd\": \"true\", \"limits\": {\"disk_mb\": 0}}", "limits.disk_mb must be at least 1, not 0");

	/* The smallest accepted values. */
	_cleanup_request_ struct lms_exec_request *r =
	    parse("{\"cmd\": \"true\", \"timeout_ms\": 1, \"limits\": {\"memory_mb\": 4, \"pids\": 1, "
		  "\"cpu_ms\": 0, \"output_bytes\": 0, \"disk_mb\": 1}}");
	assert_int_equal(r->spec.limits.timeout_ms, 1);
	assert_int_equal(r->spec.limits.memory_mb, 4);
	assert_int_equal(r->spec.limits.pids, 1);
	assert_int_equal(r->spec.limits.disk_mb, 1);
}

static void
flag_and_enum_errors(void **state)
{
	(void)state;
	expect_invalid("{\"cmd\": \"true\", \"network\": \"no\"}",
		       "network must be true, false or {\"allow\": [...]}, not a string");
	expect_invalid("{\"cmd\": \"true\", \"gpu\": 1}",
		       "gpu must be true, false or a list of GPU indices such as [0, 1]");
	expect_invalid("{\"cmd\": \"true\", \"gpu\": []}", "gpu: an empty list selects no GPU: send false");
	expect_invalid("{\"cmd\": \"true\", \"gpu\": [0, -1]}", "gpu[1] must be a GPU index, an integer from 0 to 63");
	expect_invalid("{\"cmd\": \"true\", \"gpu\": [64]}", "gpu[0] must be a GPU index");
	expect_invalid("{\"cmd\": \"true\", \"gpu\": [\"0\"]}", "gpu[0] must be a GPU index");
	expect_invalid("{\"cmd\": \"true\", \"stream\": \"true\"}", "stream must be true or false");
	expect_invalid("{\"cmd\": \"true\", \"encoding\": \"latin-1\"}",
		       "encoding must be \"utf-8\" or \"base64\", not \"latin-1\"");
	expect_invalid("{\"cmd\": \"true\", \"encoding\": \"UTF-8\"}", "encoding must be");
	expect_invalid("{\"cmd\": \"true\", \"encoding\": \"base64\\u0000x\"}", "encoding must be");
	expect_invalid("{\"cmd\": \"true\", \"encoding\": 64}",
		       "encoding must be \"utf-8\" or \"base64\", not an integer");
	expect_invalid("{\"cmd\": \"true\", \"image\": 1}", "image must be a string, not an integer");
	expect_invalid("{\"cmd\": \"true\", \"stdin\": [\"a\"]}", "stdin must be a string, not an array");
}

static void
network_needs_allow_network(void **state)
{
	(void)state;
	expect_error("{\"cmd\": \"true\", \"network\": true}", LMS_ERR_FORBIDDEN,
		     "network access is disabled on this server: start it with --allow-network");

	struct lms_exec_policy p = policy;
	p.allow_network = true;
	const char *body = "{\"cmd\": \"true\", \"network\": true}";
	_cleanup_request_ struct lms_exec_request *r = parse_with(&p, body, strlen(body));
	assert_true(r->spec.network);
	assert_null(r->spec.net_dns);
	/* An allowlist: 403 first without the switch, then each entry checked, kept comma-separated. */
	expect_error("{\"cmd\": \"true\", \"network\": {\"allow\": [\"x.org\"]}}", LMS_ERR_FORBIDDEN,
		     "--allow-network");
	const char *list =
	    "{\"cmd\": \"true\", \"network\": {\"allow\": [\"x.org\", \"*.y.net\", \"203.0.113.0/24\"]}}";
	_cleanup_request_ struct lms_exec_request *rl = parse_with(&p, list, strlen(list));
	assert_true(rl->spec.network);
	assert_string_equal(rl->spec.net_allow, "x.org,*.y.net,203.0.113.0/24");
	assert_null(r->spec.net_allow);
	const char *bads[] = {"{\"cmd\": \"true\", \"network\": {\"allow\": [1]}}",
			      "{\"cmd\": \"true\", \"network\": {\"allow\": [\"a,b.org\"]}}",
			      "{\"cmd\": \"true\", \"network\": {\"allow\": [\"10.0.0.1/8\"]}}",
			      "{\"cmd\": \"true\", \"network\": {\"allow\": \"x.org\"}}"};
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		struct lms_error *err = NULL;
		assert_int_equal(
		    lms_exec_request_parse(bads[i], strlen(bads[i]), &p, &(struct lms_exec_request *){NULL}, &err), -1);
		assert_int_equal(err->kind, LMS_ERR_INVALID);
		lms_error_free(err);
	}
	/* A server with its own list: true means it, and a request's own list is refused. */
	struct lms_exec_policy own = p;
	own.net_allow = "x.org";
	_cleanup_request_ struct lms_exec_request *ro = parse_with(&own, body, strlen(body));
	assert_string_equal(ro->spec.net_allow, "x.org");
	struct lms_error *err = NULL;
	assert_int_equal(lms_exec_request_parse(list, strlen(list), &own, &(struct lms_exec_request *){NULL}, &err),
			 -1);
	assert_int_equal(err->kind, LMS_ERR_FORBIDDEN);
	assert_non_null(strstr(err->message, "--network-allow"));
	lms_error_free(err);
	/* The server's DNS and private ranges travel with a network spec. */
	p.net_dns = "198.18.0.2";
	p.net_allow_private = "10.1.0.0/16";
	_cleanup_request_ struct lms_exec_request *r2 = parse_with(&p, body, strlen(body));
	assert_string_equal(r2->spec.net_dns, "198.18.0.2");
	assert_string_equal(r2->spec.net_allow_private, "10.1.0.0/16");
}

static void
unknown_image_is_not_found(void **state)
{
	(void)state;
	expect_error("{\"cmd\": \"true\", \"image\": \"ubuntu:24.04\"}", LMS_ERR_NOT_FOUND, "image 'ubuntu:24.04'");
	expect_error("{\"cmd\": \"true\", \"image\": \"\"}", LMS_ERR_NOT_FOUND, "image ''");
	expect_error("{\"cmd\": \"true\", \"image\": \"host\\u0000x\"}", LMS_ERR_NOT_FOUND, "image 'host...'");
}

static void
messages_quote_little_of_the_request(void **state)
{
	(void)state;
	/* A 100 KB image name: the message quotes its beginning, not all of it. */
	struct lms_buf b = {0};
	lms_buf_append(&b, "{\"cmd\": \"true\", \"image\": \"x", strlen("{\"cmd\": \"true\", \"image\": \"x"));
	for (int i = 0; i < 50000; i++)
		lms_buf_append(&b, "\xc3\xa9", 2); /* two bytes after one: the cut must not split one */
	lms_buf_append(&b, "\"}", 2);
	_cleanup_error_ struct lms_error *err = NULL;
	struct lms_exec_request *req = NULL;
	assert_int_equal(lms_exec_request_parse(b.data, b.len, &policy, &req, &err), -1);
	lms_buf_clear(&b);
	assert_int_equal(err->kind, LMS_ERR_NOT_FOUND);
	assert_true(strlen(err->message) < 200);
	assert_non_null(strstr(err->message, "\xc3\xa9...'"));
	json_t *j = lms_error_json(err);
	assert_non_null(j);
	json_decref(j);
}

static void
a_failed_parse_leaves_nothing(void **state)
{
	(void)state;
	/* The error comes after argv, env and cwd were copied: they are freed (ASan checks), and *out is NULL. */
	expect_error("{\"argv\": [\"ls\"], \"env\": {\"A\": \"1\"}, \"cwd\": \"/x\", \"stdin\": \"s\", "
		     "\"image\": \"nope\"}",
		     LMS_ERR_NOT_FOUND, "nope");
	expect_error("{\"argv\": [\"ls\"], \"env\": {\"A\": \"1\"}, \"network\": true}", LMS_ERR_FORBIDDEN,
		     "--allow-network");

	/* A caller that does not want the details still gets -1. */
	struct lms_exec_request *req = NULL;
	assert_int_equal(lms_exec_request_parse("{}", 2, &policy, &req, NULL), -1);
	assert_null(req);
}

static void
free_null_is_a_no_op(void **state)
{
	(void)state;
	lms_exec_request_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(cmd_runs_under_bash),
	    cmocka_unit_test(cmd_runs_under_sh_without_bash),
	    cmocka_unit_test(argv_runs_as_given),
	    cmocka_unit_test(defaults_come_from_the_policy),
	    cmocka_unit_test(every_field_is_read),
	    cmocka_unit_test(explicit_false_and_utf8),
	    cmocka_unit_test(gpu_indices),
	    cmocka_unit_test(env_becomes_name_value_entries),
	    cmocka_unit_test(stdin_empty_absent_and_binary),
	    cmocka_unit_test(larger_limits_are_clamped_to_the_ceilings),
	    cmocka_unit_test(output_bytes_zero_is_allowed),
	    cmocka_unit_test(cpus_are_thousandths_under_the_ceiling),
	    cmocka_unit_test(cpu_ms_zero_means_none),
	    cmocka_unit_test(null_means_not_given),
	    cmocka_unit_test(unknown_fields_are_ignored),
	    cmocka_unit_test(duplicate_names_last_wins),
	    cmocka_unit_test(request_owns_its_strings),
	    cmocka_unit_test(body_errors),
	    cmocka_unit_test(command_errors),
	    cmocka_unit_test(too_many_entries),
	    cmocka_unit_test(env_errors),
	    cmocka_unit_test(cwd_errors),
	    cmocka_unit_test(integer_errors_name_the_field),
	    cmocka_unit_test(zero_where_the_engine_needs_one),
	    cmocka_unit_test(flag_and_enum_errors),
	    cmocka_unit_test(network_needs_allow_network),
	    cmocka_unit_test(unknown_image_is_not_found),
	    cmocka_unit_test(messages_quote_little_of_the_request),
	    cmocka_unit_test(a_failed_parse_leaves_nothing),
	    cmocka_unit_test(free_null_is_a_no_op),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
