/*
 * libFuzzer target: path resolution inside a root (core/inroot.c), the files API's one defence against
 * a path that leaves a sandbox. A tree with every kind of trap (absolute and relative links that point
 * up and out, a loop, a link to /proc's magic links) is made once; each input is a path. Whatever it
 * is, a resolution that succeeds names a file under the root (in both modes), RESOLVE_BENEATH never
 * gets out, and lms_inroot_split's parts put back together are the path without its extra slashes.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/inroot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char top[32], root[PATH_MAX];
static int rootfd = -1;

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static void
cleanup(void)
{
	nftw(top, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void
setup(void)
{
	snprintf(top, sizeof(top), "/tmp/lms-fuzz-inroot-XXXXXX");
	if (mkdtemp(top) == NULL)
		abort();
	atexit(cleanup);
	snprintf(root, sizeof(root), "%s/root", top);
	char p[PATH_MAX + 64];
	if (mkdir(root, 0755) < 0)
		abort();
	const char *dirs[] = {"a", "a/b", "etc", NULL};
	for (int i = 0; dirs[i]; i++) {
		snprintf(p, sizeof(p), "%s/%s", root, dirs[i]);
		(void)mkdir(p, 0755);
	}
	const char *links[][2] = {{"abs", "/etc"},  {"up", "../../../../.."}, {"a/b/rel", "../../a"},
				  {"loop", "loop"}, {"a/out", "/../../tmp"},  {"magic", "/proc/self/root"},
				  {"a/b/dot", "."}, {"hostish", "/usr/bin"},  {NULL, NULL}};
	for (int i = 0; links[i][0]; i++) {
		snprintf(p, sizeof(p), "%s/%s", root, links[i][0]);
		if (symlink(links[i][1], p) < 0)
			abort();
	}
	rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		abort();
}

static void
check_under_root(int fd)
{
	char self[64], where[PATH_MAX];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(self, where, sizeof(where) - 1);
	if (n < 0)
		abort();
	where[n] = '\0';
	size_t rl = strlen(root);
	if (strncmp(where, root, rl) != 0 || (where[rl] != '\0' && where[rl] != '/'))
		abort(); /* resolved outside the root */
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (rootfd < 0)
		setup();
	char path[PATH_MAX + 16];
	size_t n = size < PATH_MAX + 8 ? size : PATH_MAX + 8;
	memcpy(path, data, n);
	path[n] = '\0';
	for (int how = LMS_INROOT; how <= LMS_BENEATH; how++) {
		int fd = lms_inroot_open(rootfd, path, O_PATH, 0, (enum lms_inroot_mode)how);
		if (fd >= 0) {
			check_under_root(fd);
			close(fd);
		}
	}
	char *parent;
	const char *name;
	if (lms_inroot_split(path, 1, &parent, &name) == 0) {
		if (strchr(name, '/') != NULL)
			abort();
		if (lms_inroot_name_ok(name) && (strcmp(name, ".") == 0 || strcmp(name, "..") == 0))
			abort();
		free(parent);
	}
	return 0;
}
