#include "core/file.h"

#include <fcntl.h>

#include "core/alloc.h"
#include "core/buf.h"

int
lms_file_write_at(int dirfd, const char *name, const char *text, struct lms_error **err)
{
	_cleanup_fd_ int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "open %s", name);
	size_t len = strlen(text);
	ssize_t n = write(fd, text, len);
	if (n < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "write '%s' to %s", text, name);
	if ((size_t)n != len)
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "write '%s' to %s: short write", text, name);
	return 0;
}

int
lms_file_write(const char *path, const char *text, struct lms_error **err)
{
	return lms_file_write_at(AT_FDCWD, path, text, err);
}

char *
lms_file_read_at(int dirfd, const char *name, size_t max, struct lms_error **err)
{
	return lms_file_read_len_at(dirfd, name, max, NULL, err);
}

char *
lms_file_read_len_at(int dirfd, const char *name, size_t max, size_t *len, struct lms_error **err)
{
	_cleanup_fd_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		lms_error_set(err, LMS_ERR_INTERNAL, errno, "open %s", name);
		return NULL;
	}
	return lms_file_read_fd(fd, name, max, len, err);
}

char *
lms_file_read_fd(int fd, const char *name, size_t max, size_t *len, struct lms_error **err)
{
	struct lms_buf b = {0};
	char chunk[4096];
	while (b.len < max) {
		size_t want = max - b.len < sizeof(chunk) ? max - b.len : sizeof(chunk);
		ssize_t n = read(fd, chunk, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			lms_error_set(err, LMS_ERR_INTERNAL, errno, "read %s", name);
			lms_buf_clear(&b);
			return NULL;
		}
		if (n == 0)
			break;
		lms_buf_append(&b, chunk, (size_t)n);
	}
	return lms_buf_steal(&b, len);
}
