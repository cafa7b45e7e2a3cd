#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"

static void
expect_clean(const char *in, size_t len, const char *want, size_t want_len)
{
	size_t out_len;
	char *out = lms_utf8_sanitize(in, len, &out_len);
	assert_int_equal(out_len, want_len);
	assert_memory_equal(out, want, want_len);
	assert_int_equal(out[out_len], '\0');
	free(out);
}

#define CLEAN(in, want) expect_clean(in, sizeof(in) - 1, want, sizeof(want) - 1)
#define FFFD "\xEF\xBF\xBD"

static void
valid_text_is_unchanged(void **state)
{
	(void)state;
	CLEAN("", "");
	CLEAN("hello\n", "hello\n");
	CLEAN("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
	CLEAN("a\0b", "a\0b");
}

static void
invalid_bytes_become_replacement_characters(void **state)
{
	(void)state;
	CLEAN("\xFF", FFFD);
	CLEAN("a\x80z", "a" FFFD "z");
	CLEAN("\xC0\xAF", FFFD FFFD);			/* overlong '/' */
	CLEAN("\xED\xA0\x80", FFFD FFFD FFFD);		/* surrogate U+D800 */
	CLEAN("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD); /* past U+10FFFF */
	CLEAN("\xE2\x82", FFFD);			/* truncated at the end: one maximal subpart */
	CLEAN("\xE2\x82x", FFFD "x");
	CLEAN("\xF0\x9F\x98", FFFD);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(valid_text_is_unchanged),
	    cmocka_unit_test(invalid_bytes_become_replacement_characters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
