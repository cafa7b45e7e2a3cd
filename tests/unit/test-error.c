#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "core/error.h"

static void
set_formats_step_target_and_cause(void **state)
{
	(void)state;
	struct lms_error *err = NULL;
	assert_int_equal(lms_error_set(&err, LMS_ERR_SETUP, EPERM, "mount %s", "/proc"), -1);
	assert_non_null(err);
	assert_string_equal(err->message, "mount /proc: Operation not permitted");
	assert_int_equal(err->kind, LMS_ERR_SETUP);
	assert_int_equal(err->errnum, EPERM);
	lms_error_free(err);
}

static void
first_error_wins_and_prefix_adds_context(void **state)
{
	(void)state;
	_cleanup_error_ struct lms_error *err = NULL;
	lms_error_set(&err, LMS_ERR_INVALID, 0, "first");
	lms_error_set(&err, LMS_ERR_INTERNAL, 0, "second");
	lms_error_prefix(&err, "cgroup");
	assert_string_equal(err->message, "cgroup: first");
	assert_int_equal(err->kind, LMS_ERR_INVALID);
	assert_string_equal(lms_error_kind_name(err->kind), "invalid_request");
}

static void
null_err_is_allowed(void **state)
{
	(void)state;
	assert_int_equal(lms_error_set(NULL, LMS_ERR_SETUP, 0, "ignored"), -1);
	assert_int_equal(lms_error_prefix(NULL, "ignored"), -1);
	lms_error_free(NULL);
}

static void
backend_kinds_have_the_api_codes(void **state)
{
	(void)state;
	/* The codes the API has always used for these failures (docs/API-NOTES.md): clients match them. */
	assert_string_equal(lms_error_kind_name(LMS_ERR_UNREACHABLE), "backend_unavailable");
	assert_string_equal(lms_error_kind_name(LMS_ERR_TIMEOUT), "backend_timeout");
	assert_string_equal(lms_error_kind_name(LMS_ERR_BAD_GATEWAY), "bad_backend_response");
	assert_string_equal(lms_error_kind_name(LMS_ERR_BACKEND), "backend_error");
	assert_string_equal(lms_error_kind_name(LMS_ERR_CANCELLED), "cancelled");
	assert_string_equal(lms_error_kind_name(LMS_ERR_BUSY), "too_many_requests");
	assert_string_equal(lms_error_kind_name(LMS_ERR_SETUP), "sandbox_setup_failed");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(set_formats_step_target_and_cause),
	    cmocka_unit_test(first_error_wins_and_prefix_adds_context),
	    cmocka_unit_test(null_err_is_allowed),
	    cmocka_unit_test(backend_kinds_have_the_api_codes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
