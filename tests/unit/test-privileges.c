/* The start-up privilege check's messages (server/privileges.c): each failed step names the privilege and
 * the flag that grants it, on one line; and the check itself passes where the tests run as root. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include <string.h>
#include <unistd.h>

#include "server/privileges.h"

static char *
explain(enum lms_priv_step step, int errnum, const struct lms_priv_context *ctx)
{
	struct lms_error *err = NULL;
	assert_int_equal(lms_privileges_explain(step, errnum, ctx, &err), -1);
	assert_non_null(err);
	assert_int_equal(err->kind, LMS_ERR_FORBIDDEN);
	assert_null(strchr(err->message, '\n'));
	char *text = strdup(err->message);
	lms_error_free(err);
	return text;
}

static void
test_seccomp_named_when_filtered(void **state)
{
	(void)state;
	struct lms_priv_context ctx = {.seccomp_filtered = true, .container = true};
	char *m = explain(LMS_PRIV_USERNS, EPERM, &ctx);
	assert_non_null(strstr(m, "missing privilege: seccomp"));
	assert_non_null(strstr(m, "--security-opt seccomp=unconfined"));
	free(m);
	/* Without a filter the kernel is the one refusing: the sysctl, not seccomp. */
	ctx.seccomp_filtered = false;
	m = explain(LMS_PRIV_USERNS, ENOSPC, &ctx);
	assert_non_null(strstr(m, "user namespaces"));
	assert_non_null(strstr(m, "user.max_user_namespaces"));
	assert_null(strstr(m, "seccomp"));
	free(m);
}

static void
test_apparmor_before_seccomp_for_mounts(void **state)
{
	(void)state;
	struct lms_priv_context ctx = {.seccomp_filtered = true, .container = true};
	strcpy(ctx.apparmor, "docker-default");
	char *m = explain(LMS_PRIV_MOUNT, EACCES, &ctx);
	assert_non_null(strstr(m, "AppArmor: the profile 'docker-default'"));
	assert_non_null(strstr(m, "apparmor=unconfined"));
	free(m);
	ctx.apparmor[0] = '\0';
	m = explain(LMS_PRIV_MOUNT, EPERM, &ctx);
	assert_non_null(strstr(m, "seccomp=unconfined"));
	free(m);
}

static void
test_id_maps_name_the_capabilities(void **state)
{
	(void)state;
	struct lms_priv_context ctx = {.container = true};
	char *m = explain(LMS_PRIV_IDMAP, EPERM, &ctx);
	assert_non_null(strstr(m, "--cap-add SETFCAP"));
	free(m);
}

static void
test_masked_proc(void **state)
{
	(void)state;
	struct lms_priv_context ctx = {.container = true};
	char *m = explain(LMS_PRIV_PROC, EPERM, &ctx);
	assert_non_null(strstr(m, "unmasked /proc"));
	assert_non_null(strstr(m, "systempaths=unconfined"));
	assert_non_null(strstr(m, "procMount: Unmasked"));
	free(m);
}

static void
test_nothing_missing(void **state)
{
	(void)state;
	struct lms_priv_context ctx = {0};
	struct lms_error *err = NULL;
	assert_int_equal(lms_privileges_explain(LMS_PRIV_OK, 0, &ctx, &err), 0);
	assert_null(err);
}

static void
test_check_passes_as_root(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	struct lms_limits limits = {.timeout_ms = 1000, .memory_mb = 64, .pids = 16, .disk_mb = 16};
	struct lms_error *err = NULL;
	int r = lms_privileges_check(&limits, &err);
	if (r < 0)
		fail_msg("%s", err->message);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_seccomp_named_when_filtered),
	    cmocka_unit_test(test_apparmor_before_seccomp_for_mounts),
	    cmocka_unit_test(test_id_maps_name_the_capabilities),
	    cmocka_unit_test(test_masked_proc),
	    cmocka_unit_test(test_nothing_missing),
	    cmocka_unit_test(test_check_passes_as_root),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
