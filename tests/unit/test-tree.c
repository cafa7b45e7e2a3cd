/* lms_tree_copy and lms_tree_remove (core/tree.h): a tree a sandbox wrote is copied and removed without
 * following any of its links out of it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/tree.h"

struct dirs {
	char top[64];
	int src, dst, outside;
};

static void
write_file(int dir, const char *name, const char *text, mode_t mode)
{
	int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static char *
read_file(int dir, const char *name)
{
	static char buf[256];
	int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}

static int
setup(void **state)
{
	struct dirs *d = xcalloc(1, sizeof(*d));
	snprintf(d->top, sizeof(d->top), "/tmp/lms-test-tree-XXXXXX");
	assert_non_null(mkdtemp(d->top));
	int top = open(d->top, O_RDONLY | O_DIRECTORY);
	assert_int_equal(mkdirat(top, "src", 0755), 0);
	assert_int_equal(mkdirat(top, "dst", 0755), 0);
	assert_int_equal(mkdirat(top, "outside", 0755), 0);
	d->src = openat(top, "src", O_RDONLY | O_DIRECTORY);
	d->dst = openat(top, "dst", O_RDONLY | O_DIRECTORY);
	d->outside = openat(top, "outside", O_RDONLY | O_DIRECTORY);
	close(top);
	write_file(d->outside, "secret", "host file\n", 0600);
	/* The hostile tree: links out of it by absolute and relative paths, to a file and to a directory. */
	_cleanup_free_ char *abs_secret = xasprintf("%s/outside/secret", d->top);
	_cleanup_free_ char *abs_outside = xasprintf("%s/outside", d->top);
	assert_int_equal(mkdirat(d->src, "a", 0700), 0);
	assert_int_equal(mkdirat(d->src, "a/b", 0755), 0);
	write_file(d->src, "a/b/f", "data\n", 0640);
	assert_int_equal(symlinkat(abs_secret, d->src, "abs-link"), 0);
	assert_int_equal(symlinkat("../outside/secret", d->src, "rel-link"), 0);
	assert_int_equal(symlinkat(abs_outside, d->src, "dir-link"), 0);
	assert_int_equal(mkfifoat(d->src, "fifo", 0600), 0);
	*state = d;
	return 0;
}

static int
teardown(void **state)
{
	struct dirs *d = *state;
	close(d->src);
	close(d->dst);
	close(d->outside);
	_cleanup_free_ char *cmd = xasprintf("rm -rf %s", d->top);
	assert_int_equal(system(cmd), 0);
	free(d);
	return 0;
}

static void
a_copy_keeps_links_as_links_and_files_with_their_modes(void **state)
{
	struct dirs *d = *state;
	assert_int_equal(lms_tree_copy(d->src, d->dst, NULL), 0);
	assert_string_equal(read_file(d->dst, "a/b/f"), "data\n");
	struct stat st;
	assert_int_equal(fstatat(d->dst, "a/b/f", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(fstatat(d->dst, "a", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	char target[256];
	ssize_t n = readlinkat(d->dst, "rel-link", target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = '\0';
	assert_string_equal(target, "../outside/secret");
	assert_int_equal(fstatat(d->dst, "abs-link", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(fstatat(d->dst, "dir-link", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(fstatat(d->dst, "fifo", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISFIFO(st.st_mode));
	/* Nothing was written through a link: the outside has its one file, unchanged. */
	assert_string_equal(read_file(d->outside, "secret"), "host file\n");
}

static void
removing_never_follows_a_link_out(void **state)
{
	struct dirs *d = *state;
	assert_int_equal(lms_tree_copy(d->src, d->dst, NULL), 0);
	int top = openat(d->src, "..", O_RDONLY | O_DIRECTORY);
	assert_int_equal(lms_tree_remove(top, "dst", NULL), 0);
	assert_int_equal(lms_tree_remove(top, "src", NULL), 0);
	assert_int_equal(faccessat(top, "dst", F_OK, AT_SYMLINK_NOFOLLOW), -1);
	assert_int_equal(faccessat(top, "src", F_OK, AT_SYMLINK_NOFOLLOW), -1);
	assert_string_equal(read_file(d->outside, "secret"), "host file\n");
	/* A name that is not there is no error. */
	assert_int_equal(lms_tree_remove(top, "src", NULL), 0);
	close(top);
}

static void
a_tree_too_deep_is_refused_with_its_depth(void **state)
{
	struct dirs *d = *state;
	int fd = dup(d->src);
	for (int i = 0; i <= LMS_TREE_MAX_DEPTH + 1; i++) {
		assert_int_equal(mkdirat(fd, "d", 0755), 0);
		int next = openat(fd, "d", O_RDONLY | O_DIRECTORY);
		close(fd);
		fd = next;
	}
	close(fd);
	struct lms_error *err = NULL;
	assert_int_equal(lms_tree_copy(d->src, d->dst, &err), -1);
	assert_non_null(strstr(err->message, "directories deep"));
	lms_error_free(err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(a_copy_keeps_links_as_links_and_files_with_their_modes, setup, teardown),
	    cmocka_unit_test_setup_teardown(removing_never_follows_a_link_out, setup, teardown),
	    cmocka_unit_test_setup_teardown(a_tree_too_deep_is_refused_with_its_depth, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
