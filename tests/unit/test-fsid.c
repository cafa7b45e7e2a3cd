/*
 * Per-thread file identity (core/fsid.c): a thread that takes the sandbox's identity is refused a file only
 * root may read, while every other thread of the process still reads it, and gets its own identity back.
 * Needs root (skipped otherwise: a process that is not root has no other identity to take).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/fsid.h"
#include "core/inroot.h"

#define OTHER_UID 2147352576u /* LMS_UID_BASE: the sandbox's root */

static char secret[] = "/tmp/lms-test-fsid-XXXXXX";
static pthread_barrier_t entered, checked;

static int
can_read(void)
{
	int fd = open(secret, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

static void *
sandboxed(void *arg)
{
	int *result = arg;
	struct lms_fsid saved;
	struct lms_error *err = NULL;
	result[0] = lms_fsid_enter(&saved, OTHER_UID, OTHER_UID, &err);
	lms_error_free(err);
	result[1] = can_read();
	result[2] = (int)syscall(SYS_setfsuid, -1);
	pthread_barrier_wait(&entered);
	pthread_barrier_wait(&checked); /* the main thread looks while this one is still the other user */
	lms_fsid_leave(&saved);
	result[3] = can_read();
	result[4] = (int)syscall(SYS_setfsuid, -1);
	return NULL;
}

static void
other_threads_keep_their_identity(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	int fd = mkstemp(secret);
	assert_true(fd >= 0);
	assert_int_equal(fchmod(fd, 0600), 0);
	close(fd);
	pthread_barrier_init(&entered, NULL, 2);
	pthread_barrier_init(&checked, NULL, 2);
	int result[5];
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, sandboxed, result), 0);
	pthread_barrier_wait(&entered);
	assert_int_equal(result[0], 0);
	assert_int_equal(result[1], -EACCES); /* root's 0600 file: not the sandbox's */
	assert_int_equal((unsigned)result[2], OTHER_UID);
	/* This thread, meanwhile: still root, still reads it. */
	assert_int_equal((int)syscall(SYS_setfsuid, -1), 0);
	assert_int_equal(can_read(), 0);
	pthread_barrier_wait(&checked);
	pthread_join(t, NULL);
	assert_int_equal(result[3], 0);
	assert_int_equal(result[4], 0);
	unlink(secret);
}

static void
nesting_is_refused(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	struct lms_fsid a, b;
	struct lms_error *err = NULL;
	assert_int_equal(lms_fsid_enter(&a, OTHER_UID, OTHER_UID, &err), 0);
	assert_int_equal(lms_fsid_enter(&b, OTHER_UID, OTHER_UID, &err), -1);
	assert_non_null(err);
	lms_error_free(err);
	lms_fsid_leave(&b); /* a no-op */
	lms_fsid_leave(&a);
	assert_int_equal((int)syscall(SYS_setfsuid, -1), 0);
}

/* A daemon that is not root has no other identity to take: enter changes nothing and says so by success
 * (its own uid is the only one its sandboxes map). Checked in a child that drops root for good. */
static void
without_root_it_is_a_no_op(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
			_exit(2);
		struct lms_fsid saved;
		struct lms_error *err = NULL;
		int r = lms_fsid_enter(&saved, OTHER_UID, OTHER_UID, &err);
		bool same = (uid_t)syscall(SYS_setfsuid, -1) == 65534;
		lms_fsid_leave(&saved);
		_exit(r == 0 && err == NULL && same && (uid_t)syscall(SYS_setfsuid, -1) == 65534 ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void
split_paths(void **state)
{
	(void)state;
	const char *cases[][3] = {{"/", "/", ""},	   {"/a", "/", "a"},	  {"//a//b/", "/a", "b"},
				  {"/a/b/c", "/a/b", "c"}, {"/a/..", "/a", ".."}, {"a/b", "a", "b"},
				  {"a", "", "a"}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *parent;
		const char *name;
		assert_int_equal(lms_inroot_split(cases[i][0], 1, &parent, &name), 0);
		assert_string_equal(parent, cases[i][1]);
		assert_string_equal(name, cases[i][2]);
		free(parent);
	}
	char *parent;
	const char *name;
	assert_int_equal(lms_inroot_split("relative", 0, &parent, &name), -EINVAL);
	assert_false(lms_inroot_name_ok(".."));
	assert_false(lms_inroot_name_ok(""));
	assert_true(lms_inroot_name_ok("a..b"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(other_threads_keep_their_identity),
	    cmocka_unit_test(nesting_is_refused),
	    cmocka_unit_test(without_root_it_is_a_no_op),
	    cmocka_unit_test(split_paths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
