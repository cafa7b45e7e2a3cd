/*
 * Path resolution confined to a directory (inroot.h), on openat2(2). glibc has no wrapper: the raw
 * system call. RESOLVE_NO_MAGICLINKS everywhere: a sandbox's /proc/N/root would lead to another root.
 */
#include "core/inroot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/alloc.h"

/* How often a lookup that raced a rename (EAGAIN) is tried again before the caller hears of it. */
#define RACE_TRIES 16

int
lms_inroot_open(int dirfd, const char *path, int flags, mode_t mode, enum lms_inroot_mode how)
{
	struct open_how oh = {
	    .flags = (uint64_t)(flags | O_CLOEXEC),
	    .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
	    .resolve = RESOLVE_NO_MAGICLINKS | (how == LMS_BENEATH ? RESOLVE_BENEATH : RESOLVE_IN_ROOT),
	};
	if (path[0] == '\0')
		path = ".";
	for (int i = 0; i < RACE_TRIES; i++) {
		long fd = syscall(SYS_openat2, dirfd, path, &oh, sizeof(oh));
		if (fd >= 0)
			return (int)fd;
		if (errno != EAGAIN && errno != EINTR)
			break;
	}
	return -errno;
}

int
lms_inroot_mkdirs(int dirfd, const char *path, mode_t mode, enum lms_inroot_mode how)
{
	size_t len = strlen(path);
	if (len >= PATH_MAX)
		return -ENAMETOOLONG;
	char *prefix = xmalloc(len + 2);
	int cur = lms_inroot_open(dirfd, "", O_PATH | O_DIRECTORY, 0, how);
	size_t i = 0;
	while (cur >= 0) {
		while (path[i] == '/')
			i++;
		if (path[i] == '\0')
			break;
		size_t end = i + strcspn(path + i, "/");
		memcpy(prefix, path, end);
		prefix[end] = '\0';
		int next = lms_inroot_open(dirfd, prefix, O_PATH | O_DIRECTORY, 0, how);
		if (next == -ENOENT) {
			/* Made under the directory found so far, by name (never by the path string), then
			 * found again: a link swapped in between leads where any lookup of it would. */
			char name[NAME_MAX + 1];
			size_t n = end - i;
			if (n > NAME_MAX) {
				next = -ENAMETOOLONG;
			} else {
				memcpy(name, path + i, n);
				name[n] = '\0';
				if (mkdirat(cur, name, mode) < 0 && errno != EEXIST)
					next = -errno;
				else
					next = lms_inroot_open(dirfd, prefix, O_PATH | O_DIRECTORY, 0, how);
			}
		}
		close(cur);
		cur = next;
		i = end;
	}
	free(prefix);
	return cur;
}

int
lms_inroot_split(const char *path, int relative_ok, char **parent, const char **name)
{
	*parent = NULL;
	*name = NULL;
	size_t len = strlen(path);
	if (len > PATH_MAX)
		return -ENAMETOOLONG;
	if (path[0] != '/' && !relative_ok)
		return -EINVAL;
	/* Normalised: one slash between components, none at the end (but for "/" itself). */
	char *norm = xmalloc(len + 2);
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		if (path[i] != '/' || (n > 0 && norm[n - 1] != '/') || (n == 0 && path[0] == '/'))
			norm[n++] = path[i];
	while (n > 1 && norm[n - 1] == '/')
		n--;
	if (n == 1 && norm[0] == '/' && path[0] != '/')
		n = 0;
	norm[n] = '\0';
	/* The buffer holds the parent, a NUL, then the name. */
	char *out = xmalloc(2 * n + 4);
	char *slash = strrchr(norm, '/');
	if (slash == NULL) {
		out[0] = '\0';
		memcpy(out + 1, norm, n + 1);
		*name = out + 1;
	} else if (slash == norm) {
		memcpy(out, "/", 2);
		memcpy(out + 2, slash + 1, strlen(slash + 1) + 1);
		*name = out + 2;
	} else {
		size_t plen = (size_t)(slash - norm);
		memcpy(out, norm, plen);
		out[plen] = '\0';
		memcpy(out + plen + 1, slash + 1, strlen(slash + 1) + 1);
		*name = out + plen + 1;
	}
	free(norm);
	*parent = out;
	return 0;
}

int
lms_inroot_name_ok(const char *name)
{
	return name[0] != '\0' && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 && strchr(name, '/') == NULL &&
	       strlen(name) <= NAME_MAX;
}
