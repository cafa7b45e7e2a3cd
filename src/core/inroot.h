#pragma once
/*
 * Paths resolved inside a directory that stands for a root: every component, `..` and every symbolic
 * link (absolute or relative) included, by the kernel (openat2), so that no path can name a file
 * outside it, even while another process swaps links in. The files API uses RESOLVE_IN_ROOT (the
 * directory is "/", as a chroot sees it); the tar unpacker RESOLVE_BENEATH (leaving it is an error,
 * EXDEV). Magic links (/proc/PID/fd/N, /proc/PID/root) are never followed.
 *
 * Functions return a descriptor or 0, or -errno: callers map the errno to their own message.
 */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum lms_inroot_mode {
	LMS_INROOT = 1,	 /* `..` stops at the directory, an absolute link starts from it */
	LMS_BENEATH = 2, /* any way out is EXDEV */
};

/* openat2(dirfd, path, flags | O_CLOEXEC, mode) with the mode's resolution; EAGAIN (a rename raced
 * the lookup) is retried a few times. */
int lms_inroot_open(int dirfd, const char *path, int flags, mode_t mode, enum lms_inroot_mode how);

/* Every directory of path, made (with `mode`) where missing, one component at a time, each found
 * again from dirfd; an O_PATH descriptor of the last. "" or "/" is dirfd's own directory. */
int lms_inroot_mkdirs(int dirfd, const char *path, mode_t mode, enum lms_inroot_mode how);

/* A request path, checked and cut in two: `path` must be absolute (or, with relative_ok, relative), at
 * most PATH_MAX bytes; repeated and trailing slashes are dropped. *parent gets the directory part
 * ("/" or "" at the top, caller frees), *name the last component (pointing into *parent's buffer, after
 * its NUL; "" for the top itself). -EINVAL for a path that is not absolute, -ENAMETOOLONG. */
int lms_inroot_split(const char *path, int relative_ok, char **parent, const char **name);

/* A name the last component may be to be made or removed: not "", ".", "..". */
int lms_inroot_name_ok(const char *name);
