#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <string.h>

#include <stdlib.h>

#include "core/buf.h"
#include "sandbox/sandbox.h"

static char *true_argv[] = {"true", NULL};

static struct lms_sandbox_spec
valid_spec(void)
{
	struct lms_sandbox_spec spec;
	lms_sandbox_spec_init(&spec);
	spec.argv = true_argv;
	return spec;
}

static void
expect_invalid(const struct lms_sandbox_spec *spec, const char *needle)
{
	_cleanup_error_ struct lms_error *err = NULL;
	assert_int_equal(lms_sandbox_spec_validate(spec, &err), -1);
	assert_non_null(err);
	if (strstr(err->message, needle) == NULL)
		fail_msg("message '%s' does not mention '%s'", err->message, needle);
}

static void
defaults_are_api_md_defaults(void **state)
{
	(void)state;
	struct lms_sandbox_spec spec = valid_spec();
	assert_int_equal(spec.limits.timeout_ms, 30000);
	assert_int_equal(spec.limits.memory_mb, 512);
	assert_int_equal(spec.limits.pids, 256);
	assert_int_equal(spec.limits.cpu_ms, 0);
	assert_int_equal(spec.limits.output_bytes, 1048576);
	assert_int_equal(spec.limits.disk_mb, 1024);
	assert_int_equal(spec.cancel_fd, -1);
	assert_int_equal(lms_sandbox_spec_validate(&spec, NULL), 0);
}

static void
bad_specs_name_the_field(void **state)
{
	(void)state;
	struct lms_sandbox_spec spec = valid_spec();
	spec.argv = NULL;
	expect_invalid(&spec, "argv");

	char *empty[] = {"", NULL};
	spec = valid_spec();
	spec.argv = empty;
	expect_invalid(&spec, "argv");

	spec = valid_spec();
	spec.limits.timeout_ms = 0;
	expect_invalid(&spec, "timeout_ms");

	spec = valid_spec();
	spec.limits.memory_mb = 1;
	expect_invalid(&spec, "memory_mb");

	spec = valid_spec();
	spec.limits.pids = 0;
	expect_invalid(&spec, "pids");

	spec = valid_spec();
	spec.cwd = "relative/dir";
	expect_invalid(&spec, "cwd");

	char *env[] = {"NOEQUALS", NULL};
	spec = valid_spec();
	spec.env = env;
	expect_invalid(&spec, "NAME=VALUE");

	spec = valid_spec();
	spec.image = "ubuntu";
	expect_invalid(&spec, "ubuntu");
}

static void
signal_names(void **state)
{
	(void)state;
	assert_string_equal(lms_signal_name(SIGKILL), "SIGKILL");
	assert_string_equal(lms_signal_name(SIGSEGV), "SIGSEGV");
	assert_null(lms_signal_name(0));
	assert_null(lms_signal_name(200));
}

/* What a prepared sandbox can take: lower memory and pids (cgroup writes), the very same disk size. */
static void
limits_fit_a_prepared_sandbox(void **state)
{
	(void)state;
	const struct lms_limits base = {.memory_mb = 512, .pids = 256, .disk_mb = 1024, .timeout_ms = 1000};
	struct lms_limits want = base;
	assert_true(lms_limits_fit_prepared(&base, &want));
	want.memory_mb = 64;
	want.pids = 8;
	want.timeout_ms = 5000; /* the clock is the caller's, not the sandbox's */
	assert_true(lms_limits_fit_prepared(&base, &want));
	want = base;
	want.memory_mb = 513;
	assert_false(lms_limits_fit_prepared(&base, &want));
	want = base;
	want.pids = 257;
	assert_false(lms_limits_fit_prepared(&base, &want));
	want = base;
	want.disk_mb = 512;
	assert_false(lms_limits_fit_prepared(&base, &want));
	want.disk_mb = 2048;
	assert_false(lms_limits_fit_prepared(&base, &want));
	/* CPU bandwidth: any under no ceiling; under a ceiling, at most it, and never "none". */
	want = base;
	want.millicpus = 4000;
	assert_true(lms_limits_fit_prepared(&base, &want));
	struct lms_limits capped = base;
	capped.millicpus = 2000;
	assert_false(lms_limits_fit_prepared(&capped, &want));
	want.millicpus = 500;
	assert_true(lms_limits_fit_prepared(&capped, &want));
	want.millicpus = 0;
	assert_false(lms_limits_fit_prepared(&capped, &want));
}

static void
cpus_parse_as_thousandths(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		uint64_t milli;
	} good[] = {{"0", 0},	  {"0.5", 500}, {"2", 2000},  {"1.25", 1250},
		    {"0.01", 10}, {".5", 500},	{"3.", 3000}, {"1024", 1024000}};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		uint64_t v = 1;
		assert_int_equal(lms_limits_parse_cpus("--cpus", good[i].text, &v, NULL), 0);
		assert_int_equal(v, good[i].milli);
	}
	static const char *const bad[] = {"",	   ".",	   "-1",  "+1", "1e3", "0.0001",
					  "0.005", "1025", "1,5", "2 ", "abc", "99999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct lms_error *err = NULL;
		uint64_t v = 7;
		assert_true(lms_limits_parse_cpus("--cpus", bad[i], &v, &err) < 0);
		assert_non_null(strstr(err->message, "--cpus"));
		assert_int_equal(v, 7);
		lms_error_free(err);
	}
}

static void
codec_keeps_cpus(void **state)
{
	(void)state;
	struct lms_sandbox_spec spec, back;
	lms_sandbox_spec_init(&spec);
	char *argv[] = {"true", NULL};
	spec.argv = argv;
	spec.limits.millicpus = 1500;
	struct lms_buf b = {0};
	lms_spec_encode(&spec, &b);
	void *storage = NULL;
	assert_int_equal(lms_spec_decode(b.data, b.len, &back, &storage, NULL), 0);
	assert_int_equal(back.limits.millicpus, 1500);
	assert_int_equal(back.limits.memory_mb, spec.limits.memory_mb);
	free(storage);
	lms_buf_clear(&b);
}

static void
codec_keeps_network_settings(void **state)
{
	(void)state;
	struct lms_sandbox_spec spec, back;
	lms_sandbox_spec_init(&spec);
	char *argv[] = {"true", NULL};
	spec.argv = argv;
	spec.network = true;
	spec.net_dns = "198.18.0.2";
	spec.net_allow_private = "10.1.0.0/16,fd00::/8";
	struct lms_buf b = {0};
	lms_spec_encode(&spec, &b);
	void *storage = NULL;
	assert_int_equal(lms_spec_decode(b.data, b.len, &back, &storage, NULL), 0);
	assert_true(back.network);
	assert_string_equal(back.net_dns, "198.18.0.2");
	assert_string_equal(back.net_allow_private, "10.1.0.0/16,fd00::/8");
	free(storage);
	lms_buf_clear(&b);
	/* Without them: NULL both, not empty strings. */
	spec.network = false;
	spec.net_dns = spec.net_allow_private = NULL;
	lms_spec_encode(&spec, &b);
	assert_int_equal(lms_spec_decode(b.data, b.len, &back, &storage, NULL), 0);
	assert_null(back.net_dns);
	assert_null(back.net_allow_private);
	free(storage);
	lms_buf_clear(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(defaults_are_api_md_defaults),
	    cmocka_unit_test(bad_specs_name_the_field),
	    cmocka_unit_test(signal_names),
	    cmocka_unit_test(limits_fit_a_prepared_sandbox),
	    cmocka_unit_test(cpus_parse_as_thousandths),
	    cmocka_unit_test(codec_keeps_cpus),
	    cmocka_unit_test(codec_keeps_network_settings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
