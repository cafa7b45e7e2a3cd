#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <string.h>

#include "api/exec-json.h"

static void
result_has_exactly_the_api_fields(void **state)
{
	(void)state;
	struct lms_sandbox_result res = {.exit_code = 137,
					 .signal = SIGKILL,
					 .timed_out = true,
					 .duration_ms = 12.3456789,
					 .cpu_ms = 1.5,
					 .max_rss_kb = 3120};
	json_t *obj = lms_exec_result_json(&res, "hi\n", 3, "\xff", 1, LMS_ENCODING_UTF8);
	assert_non_null(obj);
	const char *keys[] = {"stdout",	    "stderr",		"exit_code",	    "signal",	   "timed_out",
			      "oom_killed", "stdout_truncated", "stderr_truncated", "duration_ms", "cpu_ms",
			      "max_rss_kb", "pids_limit_hit",	"net_rx_bytes",	    "net_tx_bytes"};
	assert_int_equal(json_object_size(obj), sizeof(keys) / sizeof(keys[0]));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		assert_non_null(json_object_get(obj, keys[i]));
	assert_string_equal(json_string_value(json_object_get(obj, "stdout")), "hi\n");
	assert_string_equal(json_string_value(json_object_get(obj, "stderr")), "\xEF\xBF\xBD");
	assert_string_equal(json_string_value(json_object_get(obj, "signal")), "SIGKILL");
	assert_int_equal(json_integer_value(json_object_get(obj, "exit_code")), 137);
	assert_true(json_is_true(json_object_get(obj, "timed_out")));
	assert_true(json_is_false(json_object_get(obj, "oom_killed")));
	assert_float_equal(json_real_value(json_object_get(obj, "duration_ms")), 12.346, 1e-9);
	json_decref(obj);
}

static void
exit_without_signal_has_null_signal(void **state)
{
	(void)state;
	struct lms_sandbox_result res = {.exit_code = 0};
	json_t *obj = lms_exec_result_json(&res, NULL, 0, NULL, 0, LMS_ENCODING_UTF8);
	assert_true(json_is_null(json_object_get(obj, "signal")));
	assert_string_equal(json_string_value(json_object_get(obj, "stdout")), "");
	json_decref(obj);
}

static void
base64_encoding(void **state)
{
	(void)state;
	struct lms_sandbox_result res = {0};
	json_t *obj = lms_exec_result_json(&res, "\x00\xff\x10hi", 5, "a", 1, LMS_ENCODING_BASE64);
	assert_string_equal(json_string_value(json_object_get(obj, "stdout")), "AP8QaGk=");
	assert_string_equal(json_string_value(json_object_get(obj, "stderr")), "YQ==");
	json_decref(obj);
}

static void
error_shape(void **state)
{
	(void)state;
	struct lms_error e = {.kind = LMS_ERR_SETUP, .message = "mount /proc: Operation not permitted"};
	json_t *obj = lms_error_json(&e);
	json_t *inner = json_object_get(obj, "error");
	assert_string_equal(json_string_value(json_object_get(inner, "message")), e.message);
	assert_string_equal(json_string_value(json_object_get(inner, "type")), "server_error");
	assert_string_equal(json_string_value(json_object_get(inner, "code")), "sandbox_setup_failed");
	json_decref(obj);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(result_has_exactly_the_api_fields),
	    cmocka_unit_test(exit_without_signal_has_null_signal),
	    cmocka_unit_test(base64_encoding),
	    cmocka_unit_test(error_shape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
