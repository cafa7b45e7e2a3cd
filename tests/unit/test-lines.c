#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/lines.h"
#include "core/buf.h"

/* Every line as "line|", a too-long one as "!first-bytes|", so that a test compares one string. */
static void
collect(void *userdata, const char *line, size_t len, bool too_long)
{
	struct lms_buf *b = userdata;
	assert_int_equal(line[len], '\0');
	if (too_long)
		lms_buf_append(b, "!", 1);
	lms_buf_append(b, line, len);
	lms_buf_append(b, "|", 1);
}

/* Feeds `text` in pieces of `step` bytes (0: whole), then the end of input, and returns what came out. */
static char *
split(const char *text, size_t step, size_t max)
{
	struct lms_buf out = {0};
	struct lms_lines p;
	lms_lines_init(&p, max, collect, &out);
	size_t len = strlen(text);
	for (size_t i = 0; i < len; i += step ? step : len)
		lms_lines_feed(&p, text + i, step && len - i > step ? step : len - i);
	lms_lines_end(&p);
	lms_lines_free(&p);
	lms_buf_append(&out, "", 0);
	return lms_buf_steal(&out, NULL);
}

static void
check(const char *text, size_t max, const char *want)
{
	for (size_t step = 0; step <= 7; step++) {
		char *got = split(text, step, max);
		if (strcmp(got, want) != 0)
			fail_msg("step %zu: '%s' gave '%s', not '%s'", step, text, got, want);
		free(got);
	}
}

static void
test_lines_in_any_pieces(void **state)
{
	(void)state;
	check("a\nbc\n\nd", 100, "a|bc||d|");
	check("{\"x\":1}\r\n{}\n", 100, "{\"x\":1}|{}|");
	check("", 100, "");
	check("\n", 100, "|");
}

static void
test_a_line_past_the_bound_is_reported_once_and_the_next_is_read(void **state)
{
	(void)state;
	check("12345\n123456\nok\n", 5, "12345|!12345|ok|");
	/* Exactly the bound, with a CRLF: not too long. */
	check("12345\r\nok", 5, "12345|ok|");
	check("1234567890123", 5, "!12345|");
	check("123456\r\n", 5, "!12345|");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lines_in_any_pieces),
	    cmocka_unit_test(test_a_line_past_the_bound_is_reported_once_and_the_next_is_read),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
