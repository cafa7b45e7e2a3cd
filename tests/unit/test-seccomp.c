/* The compiled filter, loaded in a forked child (no root needed): denied calls fail with the promised
 * errno, and ordinary work still runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/seccomp.h"

/* Runs fn in a child under the filter; returns the errno it reports (0 = the call succeeded). */
static int
under_filter(long (*fn)(void))
{
	const struct sock_fprog *prog = lms_seccomp_program(NULL);
	assert_non_null(prog);
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog) < 0)
			_exit(99);
		errno = 0;
		int e = fn() < 0 ? errno : 0;
		(void)!write(fds[1], &e, sizeof(e));
		_exit(0);
	}
	close(fds[1]);
	int e = -1, status;
	assert_int_equal(read(fds[0], &e, sizeof(e)), (ssize_t)sizeof(e));
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return e;
}

static long
do_unshare_user(void)
{
	return unshare(CLONE_NEWUSER);
}
static long
do_unshare_uts(void)
{
	return unshare(CLONE_NEWUTS);
}
static long
do_clone_user(void)
{
	long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, 0);
	if (r == 0)
		_exit(0);
	return r;
}
static long
do_clone3(void)
{
	struct clone_args args = {.exit_signal = SIGCHLD};
	long r = syscall(SYS_clone3, &args, sizeof(args));
	if (r == 0)
		_exit(0);
	return r;
}
static long
do_mount(void)
{
	return syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, NULL);
}
static long
do_keyctl(void)
{
	return syscall(SYS_keyctl, 0, 0, 0, 0, 0);
}
static long
do_bpf(void)
{
	return syscall(SYS_bpf, 0, NULL, 0);
}
static long
do_io_uring(void)
{
	return syscall(SYS_io_uring_setup, 1, NULL);
}
static long
do_userfaultfd(void)
{
	return syscall(SYS_userfaultfd, 0);
}
static long
do_perf(void)
{
	return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
}
static long
do_tiocsti(void)
{
	char c = 'x';
	return ioctl(0, TIOCSTI | 0x100000000ul, &c) < 0 && errno == EPERM ? -1 : ioctl(0, TIOCSTI, &c);
}
static long
do_io_setup(void)
{
	unsigned long aio_ctx = 0;
	return syscall(SYS_io_setup, 1, &aio_ctx);
}
static long
do_vsock(void)
{
	long fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		close((int)fd);
	return fd;
}
static long
do_vsock_high_bits(void)
{
	/* The domain is an int: garbage in the upper half of the register must not get past the rule. */
	long fd = syscall(SYS_socket, AF_VSOCK | 0x100000000l, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		close((int)fd);
	return fd;
}
static long
do_vsock_pair(void)
{
	int sv[2];
	return socketpair(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
}
static long
do_unix_pair(void)
{
	int sv[2];
	long r = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	if (r == 0) {
		close(sv[0]);
		close(sv[1]);
	}
	return r;
}
/* SO_SNDBUF "succeeds" and changes nothing: the buffer stays the size it had. */
static long
do_sndbuf(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), before = 0, after = 0, want = 4 << 20;
	socklen_t len = sizeof(before);
	if (fd < 0)
		return -1;
	long r = getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &before, &len);
	if (r == 0)
		r = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof(want));
	if (r == 0)
		r = getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &after, &len);
	close(fd);
	if (r == 0 && after != before) {
		errno = EOVERFLOW; /* the size changed */
		return -1;
	}
	return r;
}

static long
do_kcmp(void)
{
	return syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, 0, 0);
}
static long
do_set_mempolicy(void)
{
	return syscall(SYS_set_mempolicy, 0 /* MPOL_DEFAULT */, NULL, 0);
}
static long
do_modify_ldt(void)
{
	char buf[16];
	return syscall(SYS_modify_ldt, 0, buf, sizeof(buf));
}

/* personality(p) under the filter, then back to PER_LINUX where it changed anything. */
static unsigned long persona;
static long
do_personality(void)
{
	long r = syscall(SYS_personality, persona);
	if (r >= 0 && persona != 0xffffffff)
		(void)syscall(SYS_personality, 0ul);
	return r;
}

static long
do_getpid(void)
{
	return getpid() > 0 ? 0 : -1;
}
static long
do_fork(void)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	return pid < 0 ? -1 : waitpid(pid, NULL, 0);
}

static void
denied_calls_fail_with_eperm(void **state)
{
	(void)state;
	assert_int_equal(under_filter(do_unshare_user), EPERM);
	assert_int_equal(under_filter(do_clone_user), EPERM);
	assert_int_equal(under_filter(do_mount), EPERM);
	assert_int_equal(under_filter(do_keyctl), EPERM);
	assert_int_equal(under_filter(do_bpf), EPERM);
	assert_int_equal(under_filter(do_io_uring), EPERM);
	assert_int_equal(under_filter(do_userfaultfd), EPERM);
	assert_int_equal(under_filter(do_perf), EPERM);
	assert_int_equal(under_filter(do_tiocsti), EPERM);
	assert_int_equal(under_filter(do_vsock), EPERM);
	assert_int_equal(under_filter(do_vsock_high_bits), EPERM);
	assert_int_equal(under_filter(do_vsock_pair), EPERM);
	assert_int_equal(under_filter(do_kcmp), EPERM);
	assert_int_equal(under_filter(do_set_mempolicy), EPERM);
	assert_int_equal(under_filter(do_modify_ldt), EPERM);
}

/* Docker's set passes; every other value, and anything in the upper half, is refused. */
static void
personality_only_dockers_values(void **state)
{
	(void)state;
	static const unsigned long ok[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};
	static const unsigned long bad[] = {0x1,	0x7,	    0x9,	  0x0040000 /* ADDR_NO_RANDOMIZE */,
					    0x0400000,	0x20001,    0x20009,	  0x1ffff,
					    0xfffffffe, 0x80000000, 0x100000000ul};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		persona = ok[i];
		assert_int_equal(under_filter(do_personality), 0);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		persona = bad[i];
		assert_int_equal(under_filter(do_personality), EPERM);
	}
}

static void
clone3_says_enosys_so_libc_falls_back(void **state)
{
	(void)state;
	assert_int_equal(under_filter(do_clone3), ENOSYS);
	/* Linux AIO says ENOSYS too, as a kernel without CONFIG_AIO: libaio users fall back. */
	assert_int_equal(under_filter(do_io_setup), ENOSYS);
}

static void
ordinary_calls_still_work(void **state)
{
	(void)state;
	assert_int_equal(under_filter(do_getpid), 0);
	assert_int_equal(under_filter(do_fork), 0);
	assert_int_equal(under_filter(do_unix_pair), 0);
	assert_int_equal(under_filter(do_sndbuf), 0);
	/* unshare without CLONE_NEWUSER reaches the kernel: EPERM there only for lack of a capability. */
	int e = under_filter(do_unshare_uts);
	assert_true(e == 0 || e == EPERM);
	if (getuid() == 0)
		assert_int_equal(e, 0);
}

static void
denied_list_is_terminated_and_named(void **state)
{
	(void)state;
	size_t n = 0;
	bool has_mount = false;
	for (; lms_seccomp_denied[n]; n++)
		has_mount |= strcmp(lms_seccomp_denied[n], "mount") == 0;
	assert_true(n > 30);
	assert_true(has_mount);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(denied_calls_fail_with_eperm),
	    cmocka_unit_test(clone3_says_enosys_so_libc_falls_back),
	    cmocka_unit_test(personality_only_dockers_values),
	    cmocka_unit_test(ordinary_calls_still_work),
	    cmocka_unit_test(denied_list_is_terminated_and_named),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
