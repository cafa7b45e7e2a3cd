/* The log (core/log.h): levels filter before formatting, values are escaped, one write(2) per line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

/* A SOCK_SEQPACKET pair keeps the boundaries of writes: each recv() returns exactly one write(2). */
static int sock[2] = {-1, -1};
static int saved_fd;

static int
setup(void **state)
{
	(void)state;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sock) < 0)
		return -1;
	saved_fd = lms_log_set_fd(sock[1]);
	lms_log_set_level(LMS_LOG_INFO);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	lms_log_set_fd(saved_fd);
	lms_log_set_level(LMS_LOG_INFO);
	close(sock[0]);
	close(sock[1]);
	return 0;
}

/* The next write, as a string; "" when there is none. */
static const char *
next_write(void)
{
	static char buf[2 * LMS_LOG_LINE_MAX];
	ssize_t n = recv(sock[0], buf, sizeof(buf) - 1, 0);
	if (n < 0) {
		assert_int_equal(errno, EAGAIN);
		n = 0;
	}
	buf[n] = '\0';
	return buf;
}

/* The next write parsed: one JSON object and one newline, at its end. */
static json_t *
next_line(void)
{
	const char *text = next_write();
	size_t len = strlen(text);
	assert_true(len > 0);
	assert_true(len <= LMS_LOG_LINE_MAX);
	assert_int_equal(text[len - 1], '\n');
	assert_ptr_equal(strchr(text, '\n'), text + len - 1);
	json_error_t jerr;
	json_t *line = json_loads(text, 0, &jerr);
	if (line == NULL)
		fail_msg("not JSON (%s): %s", jerr.text, text);
	assert_true(json_is_object(line));
	return line;
}

static int evaluations;

static const char *
observed(const char *value)
{
	evaluations++;
	return value;
}

static void
below_the_threshold_nothing_is_evaluated_or_written(void **state)
{
	(void)state;
	evaluations = 0;
	lms_log_set_level(LMS_LOG_WARNING);
	lms_log(LMS_LOG_DEBUG, NULL, "debug", "k", observed("v"), NULL);
	lms_log(LMS_LOG_INFO, observed("id"), "info", "k", observed("v"), NULL);
	lms_log_fields(LMS_LOG_INFO, NULL, "info", LMS_LOG_STR("k", observed("v")));
	assert_int_equal(evaluations, 0);
	assert_string_equal(next_write(), "");

	lms_log(LMS_LOG_WARNING, NULL, "warned", "k", observed("v"), NULL);
	lms_log(LMS_LOG_ERROR, NULL, "failed", NULL);
	assert_int_equal(evaluations, 1);
	json_t *line = next_line();
	assert_string_equal(json_string_value(json_object_get(line, "level")), "warning");
	assert_string_equal(json_string_value(json_object_get(line, "msg")), "warned");
	json_decref(line);
	line = next_line();
	assert_string_equal(json_string_value(json_object_get(line, "level")), "error");
	json_decref(line);
	assert_string_equal(next_write(), "");

	lms_log_set_level(LMS_LOG_DEBUG);
	lms_log(LMS_LOG_DEBUG, NULL, "now shown", NULL);
	json_decref(next_line());
}

static void
keys_come_in_order_with_the_request_id(void **state)
{
	(void)state;
	lms_log(LMS_LOG_INFO, "req-1", "listening", "url", "http://127.0.0.1:1", "none", NULL, NULL);
	const char *text = next_write();
	const char *want = "\",\"level\":\"info\",\"msg\":\"listening\",\"request_id\":\"req-1\","
			   "\"url\":\"http://127.0.0.1:1\",\"none\":null}\n";
	assert_true(strncmp(text, "{\"time\":\"", 9) == 0);
	/* 2025-01-31T12:00:00.123Z */
	const char *stamp = text + 9;
	assert_int_equal(strlen(stamp), 24 + strlen(want));
	assert_string_equal(stamp + 24, want);
	assert_int_equal(stamp[4], '-');
	assert_int_equal(stamp[10], 'T');
	assert_int_equal(stamp[19], '.');
	assert_int_equal(stamp[23], 'Z');

	lms_log(LMS_LOG_INFO, NULL, "no id", NULL);
	json_t *line = next_line();
	assert_null(json_object_get(line, "request_id"));
	json_decref(line);
}

static void
the_time_is_utc_now(void **state)
{
	(void)state;
	time_t before = time(NULL);
	lms_log(LMS_LOG_INFO, NULL, "tick", NULL);
	time_t after = time(NULL);
	json_t *line = next_line();
	const char *stamp = json_string_value(json_object_get(line, "time"));
	assert_non_null(stamp);
	char low[32], high[32];
	strftime(low, sizeof(low), "%Y-%m-%dT%H:%M:%S", gmtime(&before));
	strftime(high, sizeof(high), "%Y-%m-%dT%H:%M:%S", gmtime(&after));
	assert_true(strncmp(stamp, low, 19) >= 0 && strncmp(stamp, high, 19) <= 0);
	json_decref(line);
}

static void
values_are_escaped_and_invalid_utf8_replaced(void **state)
{
	(void)state;
	const struct {
		const char *in, *out;
	} cases[] = {
	    {"say \"hi\"\\", "say \"hi\"\\"},
	    {"a\nb\rc\td\x01\x1f\x7f", "a\nb\rc\td\x01\x1f\x7f"},
	    {"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"},
	    {"bad \xFF byte", "bad \xEF\xBF\xBD byte"},
	    {"cut \xE2\x82", "cut \xEF\xBF\xBD"},
	    {"overlong \xC0\xAF", "overlong \xEF\xBF\xBD\xEF\xBF\xBD"},
	    {"surrogate \xED\xA0\x80", "surrogate \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		lms_log(LMS_LOG_INFO, "id\"1", cases[i].in, "value", cases[i].in, "key \"q\"\n", "x", NULL);
		json_t *line = next_line();
		assert_string_equal(json_string_value(json_object_get(line, "msg")), cases[i].out);
		assert_string_equal(json_string_value(json_object_get(line, "value")), cases[i].out);
		assert_string_equal(json_string_value(json_object_get(line, "request_id")), "id\"1");
		assert_string_equal(json_string_value(json_object_get(line, "key \"q\"\n")), "x");
		json_decref(line);
	}
	/* Control characters never appear raw in the line. */
	lms_log(LMS_LOG_INFO, NULL, "m", "v", "\x01\x02\x1b[31m", NULL);
	const char *text = next_write();
	for (const char *p = text; *p && p[1]; p++)
		assert_true((unsigned char)*p >= 0x20);
}

static void
typed_fields(void **state)
{
	(void)state;
	lms_log_fields(LMS_LOG_INFO, "r", "request", LMS_LOG_STR("method", "GET"), LMS_LOG_STRN("path", "/abcdef", 4),
		       LMS_LOG_INT("status", 404), LMS_LOG_INT("low", -9223372036854775807LL - 1),
		       LMS_LOG_REAL("duration_ms", 2.4567), LMS_LOG_REAL("neg", -0.5), LMS_LOG_REAL("nan", 0.0 / 0.0),
		       LMS_LOG_STR("null", NULL));
	json_t *line = next_line();
	assert_string_equal(json_string_value(json_object_get(line, "method")), "GET");
	assert_string_equal(json_string_value(json_object_get(line, "path")), "/abc");
	assert_int_equal(json_integer_value(json_object_get(line, "status")), 404);
	assert_true(json_integer_value(json_object_get(line, "low")) == -9223372036854775807LL - 1);
	assert_true(json_is_real(json_object_get(line, "duration_ms")));
	assert_float_equal(json_real_value(json_object_get(line, "duration_ms")), 2.457, 1e-9);
	assert_float_equal(json_real_value(json_object_get(line, "neg")), -0.5, 1e-9);
	assert_true(json_is_null(json_object_get(line, "nan")));
	assert_true(json_is_null(json_object_get(line, "null")));
	json_decref(line);
}

static void
one_write_per_line_even_when_too_long(void **state)
{
	(void)state;
	static char big[3 * LMS_LOG_LINE_MAX];
	memset(big, 'x', sizeof(big) - 1);
	/* A multi-byte character across the cut must not be split. */
	for (size_t i = 0; i + 2 < sizeof(big) - 1; i += 1000)
		memcpy(big + i, "\xE2\x82\xAC", 3);
	for (int i = 0; i < 3; i++)
		lms_log(LMS_LOG_INFO, NULL, "big", "before", "kept", "value", big, "after", "dropped", NULL);
	for (int i = 0; i < 3; i++) {
		json_t *line = next_line();
		assert_string_equal(json_string_value(json_object_get(line, "before")), "kept");
		const char *v = json_string_value(json_object_get(line, "value"));
		assert_non_null(v);
		size_t n = strlen(v);
		assert_true(n > LMS_LOG_LINE_MAX / 2);
		assert_string_equal(v + n - 3, "\xE2\x80\xA6");
		assert_null(json_object_get(line, "after"));
		json_decref(line);
	}
	assert_string_equal(next_write(), "");
}

static void
errno_is_preserved(void **state)
{
	(void)state;
	errno = ENOENT;
	lms_log(LMS_LOG_INFO, NULL, "m", NULL);
	assert_int_equal(errno, ENOENT);
	json_decref(next_line());
}

static void
level_names_parse(void **state)
{
	(void)state;
	assert_int_equal(lms_log_level_parse("debug"), LMS_LOG_DEBUG);
	assert_int_equal(lms_log_level_parse("info"), LMS_LOG_INFO);
	assert_int_equal(lms_log_level_parse("warning"), LMS_LOG_WARNING);
	assert_int_equal(lms_log_level_parse("error"), LMS_LOG_ERROR);
	assert_int_equal(lms_log_level_parse("warn"), -1);
	assert_int_equal(lms_log_level_parse("INFO"), -1);
	assert_int_equal(lms_log_level_parse(""), -1);
	assert_int_equal(lms_log_level_parse(NULL), -1);
	assert_string_equal(lms_log_level_name(LMS_LOG_WARNING), "warning");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(below_the_threshold_nothing_is_evaluated_or_written, setup, teardown),
	    cmocka_unit_test_setup_teardown(keys_come_in_order_with_the_request_id, setup, teardown),
	    cmocka_unit_test_setup_teardown(the_time_is_utc_now, setup, teardown),
	    cmocka_unit_test_setup_teardown(values_are_escaped_and_invalid_utf8_replaced, setup, teardown),
	    cmocka_unit_test_setup_teardown(typed_fields, setup, teardown),
	    cmocka_unit_test_setup_teardown(one_write_per_line_even_when_too_long, setup, teardown),
	    cmocka_unit_test_setup_teardown(errno_is_preserved, setup, teardown),
	    cmocka_unit_test(level_names_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
