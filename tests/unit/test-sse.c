#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/sse.h"
#include "core/alloc.h"
#include "core/buf.h"

/* Every event as "name=data|", so that a test compares one string. */
static int
collect(void *userdata, const char *event, const char *data, size_t len, struct lms_error **err)
{
	(void)err;
	struct lms_buf *b = userdata;
	assert_int_equal(data[len], '\0');
	lms_buf_append(b, event, strlen(event));
	lms_buf_append(b, "=", 1);
	lms_buf_append(b, data, len);
	lms_buf_append(b, "|", 1);
	return 0;
}

/* Feeds `text` in pieces of `step` bytes (0: whole) and returns what came out. */
static char *
parse(const char *text, size_t len, size_t step, size_t max, int *status)
{
	struct lms_buf out = {0};
	struct lms_sse p;
	lms_sse_init(&p, max, collect, &out);
	struct lms_error *err = NULL;
	int r = 0;
	for (size_t i = 0; i < len && r == 0; i += step ? step : len)
		r = lms_sse_feed(&p, text + i, step && len - i > step ? step : len - i, &err);
	if (status != NULL)
		*status = r;
	lms_error_free(err);
	lms_sse_free(&p);
	lms_buf_append(&out, "", 0);
	return lms_buf_steal(&out, NULL);
}

static void
expect_events(const char *text, const char *want)
{
	/* The result cannot depend on where the network cut the bytes. */
	for (size_t step = 0; step <= 7; step++) {
		char *got = parse(text, strlen(text), step, 1 << 20, NULL);
		if (strcmp(got, want) != 0)
			fail_msg("pieces of %zu bytes: got '%s', want '%s'", step, got, want);
		free(got);
	}
}

static void
the_daemons_events_come_out_whole(void **state)
{
	(void)state;
	expect_events("event: stdout\ndata: {\"data\": \"aGkK\"}\n\nevent: exit\ndata: {\"exit_code\": 0}\n\n",
		      "stdout={\"data\": \"aGkK\"}|exit={\"exit_code\": 0}|");
}

static void
every_line_end_counts(void **state)
{
	(void)state;
	expect_events("event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\rdata: 3\n\n", "a=1|b=2|message=3|");
}

static void
data_lines_join_and_the_first_space_goes(void **state)
{
	(void)state;
	expect_events("data:one\ndata:  two\ndata\n\n", "message=one\n two\n|");
}

static void
comments_unknown_fields_and_empty_events_are_skipped(void **state)
{
	(void)state;
	expect_events(": keep-alive\n\nid: 7\nretry: 10\nevent: x\n\nevent: y\nbogus: 1\ndata: z\n\n", "y=z|");
}

static void
an_event_without_its_blank_line_is_pending_not_dispatched(void **state)
{
	(void)state;
	struct lms_buf out = {0};
	struct lms_sse p;
	lms_sse_init(&p, 1024, collect, &out);
	assert_int_equal(lms_sse_feed(&p, "event: exit\ndata: {}\n", 21, NULL), 0);
	assert_null(out.data);
	assert_true(lms_sse_pending(&p));
	assert_int_equal(lms_sse_feed(&p, "\n", 1, NULL), 0);
	assert_false(lms_sse_pending(&p));
	assert_string_equal(out.data, "exit={}|");
	lms_sse_free(&p);
	lms_buf_clear(&out);
}

static void
a_leading_byte_order_mark_is_skipped(void **state)
{
	(void)state;
	char *got = parse("\xEF\xBB\xBF"
			  "data: x\n\n",
			  12, 0, 1024, NULL);
	assert_string_equal(got, "message=x|");
	free(got);
}

static void
a_line_or_event_past_the_bound_is_an_error(void **state)
{
	(void)state;
	char line[200];
	memset(line, 'a', sizeof(line));
	memcpy(line, "data: ", 6);
	int r;
	char *got = parse(line, sizeof(line), 0, 100, &r);
	assert_int_equal(r, -1);
	free(got);
	got = parse(line, sizeof(line), 9, 100, &r);
	assert_int_equal(r, -1);
	free(got);
	/* Short lines that add up to too much data. */
	struct lms_buf many = {0};
	for (int i = 0; i < 30; i++)
		lms_buf_append(&many, "data: 0123456789\n", 17);
	got = parse(many.data, many.len, 0, 100, &r);
	assert_int_equal(r, -1);
	assert_string_equal(got, "");
	free(got);
	lms_buf_clear(&many);
}

static int
stop(void *userdata, const char *event, const char *data, size_t len, struct lms_error **err)
{
	(void)data, (void)len;
	int *calls = userdata;
	(*calls)++;
	return strcmp(event, "bad") == 0 ? lms_error_set(err, LMS_ERR_INVALID, 0, "bad event") : 0;
}

static void
a_callback_that_fails_stops_the_parse(void **state)
{
	(void)state;
	int calls = 0;
	struct lms_sse p;
	lms_sse_init(&p, 1024, stop, &calls);
	struct lms_error *err = NULL;
	const char *text = "event: bad\ndata: 1\n\nevent: ok\ndata: 2\n\n";
	assert_int_equal(lms_sse_feed(&p, text, strlen(text), &err), -1);
	assert_int_equal(calls, 1);
	assert_string_equal(err->message, "bad event");
	lms_error_free(err);
	lms_sse_free(&p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(the_daemons_events_come_out_whole),
	    cmocka_unit_test(every_line_end_counts),
	    cmocka_unit_test(data_lines_join_and_the_first_space_goes),
	    cmocka_unit_test(comments_unknown_fields_and_empty_events_are_skipped),
	    cmocka_unit_test(an_event_without_its_blank_line_is_pending_not_dispatched),
	    cmocka_unit_test(a_leading_byte_order_mark_is_skipped),
	    cmocka_unit_test(a_line_or_event_past_the_bound_is_an_error),
	    cmocka_unit_test(a_callback_that_fails_stops_the_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
