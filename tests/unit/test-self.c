/* lms_self_sibling (core/self.h): how lm-sandbox finds lm-sandbox-serve, and the daemon its spawner. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/self.h"

static void
finds_an_executable_beside_this_one(void **state)
{
	(void)state;
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	assert_true(n > 0);
	self[n] = '\0';
	char *path = lms_self_sibling(strrchr(self, '/') + 1);
	assert_non_null(path);
	assert_string_equal(path, self);
	free(path);
}

static void
none_is_null_with_errno(void **state)
{
	(void)state;
	errno = 0;
	assert_null(lms_self_sibling("lms-no-such-program"));
	assert_int_equal(errno, ENOENT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(finds_an_executable_beside_this_one),
	    cmocka_unit_test(none_is_null_with_errno),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
