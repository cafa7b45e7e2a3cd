#include "core/tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/alloc.h"

static bool
is_dot(const char *name)
{
	return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

/* A directory of dir's entries, read through its own descriptor (dir stays usable). */
static DIR *
open_listing(int dir, const char *what, struct lms_error **err)
{
	int fd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d == NULL) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		lms_error_set(err, LMS_ERR_INTERNAL, e, "list %s", what);
	}
	return d;
}

static int
copy_bytes(int in, int out, const char *name, struct lms_error **err)
{
	for (;;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
		if (n == 0)
			return 0;
		if (n > 0)
			continue;
		if (errno == EINTR)
			continue;
		if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "copy %s", name);
		break; /* no copy_file_range between these file systems: plain reads and writes */
	}
	char buf[65536];
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "read %s", name);
		if (n == 0)
			return 0;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return lms_error_set(err, LMS_ERR_INTERNAL, errno, "write %s", name);
			off += w;
		}
	}
}

/* Whether an extended attribute is copied: the user namespace's (overlayfs in a user namespace keeps an
 * image sandbox's opaque directories and redirects there, user.overlay.*) and overlayfs's own
 * (trusted.overlay.*). Security and ACL attributes stay the copier's. */
static bool
copied_xattr(const char *name)
{
	return strncmp(name, "user.", 5) == 0 || strncmp(name, "trusted.overlay.", 16) == 0;
}

/* The copied extended attributes of in, onto out; a file system without them has none to copy. */
static int
copy_xattrs(int in, int out, const char *name, struct lms_error **err)
{
	char names[65536];
	ssize_t n = flistxattr(in, names, sizeof(names));
	if (n < 0)
		return errno == ENOTSUP
			   ? 0
			   : lms_error_set(err, LMS_ERR_INTERNAL, errno, "list the attributes of %s", name);
	for (char *a = names; a < names + n; a += strlen(a) + 1) {
		if (!copied_xattr(a))
			continue;
		char value[65536];
		ssize_t len = fgetxattr(in, a, value, sizeof(value));
		if (len < 0 && errno == ENODATA)
			continue;
		if (len < 0 || fsetxattr(out, a, value, (size_t)len, 0) < 0)
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "copy the attribute %s of %s", a, name);
	}
	return 0;
}

/* Owner, mode and times, set last: the mode may forbid the writes before it. */
static int
copy_attrs(int fd, const struct stat *st, const char *name, struct lms_error **err)
{
	struct timespec times[2] = {st->st_atim, st->st_mtim};
	if (fchown(fd, st->st_uid, st->st_gid) < 0 || fchmod(fd, st->st_mode & 07777) < 0 || futimens(fd, times) < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "set the owner, mode and times of %s", name);
	return 0;
}

static int
copy_file(int src, int dst, const char *name, const struct stat *st, struct lms_error **err)
{
	_cleanup_fd_ int in = openat(src, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (in < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "open %s", name);
	_cleanup_fd_ int out = openat(dst, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "create %s", name);
	if (copy_bytes(in, out, name, err) < 0 || copy_xattrs(in, out, name, err) < 0)
		return -1;
	return copy_attrs(out, st, name, err);
}

static int
copy_link(int src, int dst, const char *name, const struct stat *st, struct lms_error **err)
{
	char target[4097];
	ssize_t n = readlinkat(src, name, target, sizeof(target) - 1);
	if (n < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "read the link %s", name);
	target[n] = '\0';
	struct timespec times[2] = {st->st_atim, st->st_mtim};
	if (symlinkat(target, dst, name) < 0 || fchownat(dst, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0 ||
	    utimensat(dst, name, times, AT_SYMLINK_NOFOLLOW) < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "copy the link %s", name);
	return 0;
}

static int copy_level(int src, int dst, int depth, struct lms_error **err);

static int
copy_dir(int src, int dst, const char *name, const struct stat *st, int depth, struct lms_error **err)
{
	if (mkdirat(dst, name, 0700) < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "create the directory %s", name);
	_cleanup_fd_ int in = openat(src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	_cleanup_fd_ int out = openat(dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0 || out < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "open the directory %s", name);
	if (copy_level(in, out, depth + 1, err) < 0)
		return lms_error_prefix(err, "%s", name);
	if (copy_xattrs(in, out, name, err) < 0)
		return -1;
	return copy_attrs(out, st, name, err);
}

static int
copy_entry(int src, int dst, const char *name, int depth, struct lms_error **err)
{
	struct stat st;
	if (fstatat(src, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : lms_error_set(err, LMS_ERR_INTERNAL, errno, "stat %s", name);
	switch (st.st_mode & S_IFMT) {
	case S_IFDIR:
		return copy_dir(src, dst, name, &st, depth, err);
	case S_IFREG:
		return copy_file(src, dst, name, &st, err);
	case S_IFLNK:
		return copy_link(src, dst, name, &st, err);
	case S_IFIFO:
		if (mkfifoat(dst, name, st.st_mode & 07777) < 0 ||
		    fchownat(dst, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0)
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "copy the FIFO %s", name);
		return 0;
	case S_IFCHR:
		/* Device 0/0 is no device: overlayfs's whiteout, a file an image sandbox deleted from its image. */
		if (major(st.st_rdev) != 0 || minor(st.st_rdev) != 0)
			return 0;
		if (mknodat(dst, name, S_IFCHR | (st.st_mode & 0777), 0) < 0 ||
		    fchownat(dst, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0)
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "copy the whiteout %s", name);
		return 0;
	default:
		return 0; /* a socket means nothing without its process; device nodes are not copied */
	}
}

static int
copy_level(int src, int dst, int depth, struct lms_error **err)
{
	if (depth > LMS_TREE_MAX_DEPTH)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "more than %d directories deep", LMS_TREE_MAX_DEPTH);
	DIR *d = open_listing(src, "a directory to copy", err);
	if (d == NULL)
		return -1;
	int r = 0;
	struct dirent *e;
	while (r == 0 && (errno = 0, e = readdir(d)) != NULL)
		if (!is_dot(e->d_name))
			r = copy_entry(src, dst, e->d_name, depth, err);
	if (r == 0 && errno != 0)
		r = lms_error_set(err, LMS_ERR_INTERNAL, errno, "list a directory to copy");
	closedir(d);
	return r;
}

int
lms_tree_copy(int src_dir, int dst_dir, struct lms_error **err)
{
	return copy_level(src_dir, dst_dir, 0, err);
}

static int remove_level(int dir, int depth, struct lms_error **err);

static int
remove_at(int dir, const char *name, int depth, struct lms_error **err)
{
	if (unlinkat(dir, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "remove %s", name);
	_cleanup_fd_ int sub = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sub < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "open %s to remove it", name);
	if (remove_level(sub, depth + 1, err) < 0)
		return lms_error_prefix(err, "%s", name);
	if (unlinkat(dir, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "remove the directory %s", name);
	return 0;
}

static int
remove_level(int dir, int depth, struct lms_error **err)
{
	if (depth > LMS_TREE_MAX_DEPTH)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "more than %d directories deep", LMS_TREE_MAX_DEPTH);
	DIR *d = open_listing(dir, "a directory to remove", err);
	if (d == NULL)
		return -1;
	int r = 0;
	struct dirent *e;
	/* Entries removed while listing: readdir of a shrinking directory still returns every survivor. */
	while (r == 0 && (errno = 0, e = readdir(d)) != NULL)
		if (!is_dot(e->d_name))
			r = remove_at(dir, e->d_name, depth, err);
	if (r == 0 && errno != 0)
		r = lms_error_set(err, LMS_ERR_INTERNAL, errno, "list a directory to remove");
	closedir(d);
	return r;
}

int
lms_tree_remove(int dir, const char *name, struct lms_error **err)
{
	return remove_at(dir, name, 0, err);
}
