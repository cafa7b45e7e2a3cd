#include "core/self.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"

char *
lms_self_sibling(const char *name)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self));
	if (n < 0)
		return NULL;
	if ((size_t)n >= sizeof(self)) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (slash == NULL) {
		errno = ENOENT; /* not a path: /proc is not what it should be */
		return NULL;
	}
	*slash = '\0';
	_cleanup_free_ char *path = xasprintf("%s/%s", self, name);
	if (access(path, X_OK) < 0)
		return NULL;
	return steal_pointer(&path);
}
