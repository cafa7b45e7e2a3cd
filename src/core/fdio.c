#include "core/fdio.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"

int
lms_fd_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
lms_fd_read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			if (got == 0)
				return 0;
			errno = EPIPE;
			return -1;
		}
		got += (size_t)n;
	}
	return 1;
}

int
lms_fd_read_to_end(int fd, size_t max, struct lms_buf *out, const char *what, struct lms_error **err)
{
	char chunk[65536];
	size_t start = out->len;
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			lms_buf_clear(out);
			return lms_error_set(err, LMS_ERR_INTERNAL, e, "read %s", what);
		}
		if (n == 0)
			return 0;
		if (out->len - start + (size_t)n > max) {
			lms_buf_clear(out);
			return lms_error_set(err, LMS_ERR_INVALID, 0, "%s is larger than %zu MiB", what, max >> 20);
		}
		lms_buf_append(out, chunk, (size_t)n);
	}
}

char *
lms_fd_read_whole(int fd, size_t max, size_t *len, const char *what, struct lms_error **err)
{
	struct stat st;
	if (fstat(fd, &st) < 0) {
		lms_error_set(err, LMS_ERR_INTERNAL, errno, "stat %s", what);
		return NULL;
	}
	if (st.st_size < 0 || (uint64_t)st.st_size > max) {
		lms_error_set(err, LMS_ERR_INVALID, 0, "%s has %lld bytes, more than the %zu allowed", what,
			      (long long)st.st_size, max);
		return NULL;
	}
	size_t size = (size_t)st.st_size;
	char *data = xmalloc(size + 1);
	size_t got = 0;
	while (got < size) {
		ssize_t n = pread(fd, data + got, size - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			lms_error_set(err, LMS_ERR_INTERNAL, n < 0 ? errno : 0, "read %s%s", what,
				      n == 0 ? ": it shrank while being read" : "");
			free(data);
			return NULL;
		}
		got += (size_t)n;
	}
	data[size] = '\0';
	*len = size;
	return data;
}

ssize_t
lms_fd_send(int sock, const void *data, size_t len, const int *fds, size_t nfds)
{
	union {
		char buf[CMSG_SPACE(LMS_FD_PASS_MAX * sizeof(int))];
		struct cmsghdr align;
	} u;
	if (nfds > LMS_FD_PASS_MAX) {
		errno = EINVAL;
		return -1;
	}
	memset(&u, 0, sizeof(u));
	struct iovec iov = {(void *)data, len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds > 0) {
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	ssize_t n;
	while ((n = sendmsg(sock, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	return n;
}

ssize_t
lms_fd_recv(int sock, void *buf, size_t len, int *fds, size_t maxfds, size_t *nfds)
{
	union {
		char buf[CMSG_SPACE(LMS_FD_PASS_MAX * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {buf, len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	*nfds = 0;
	ssize_t n;
	while ((n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	if (n < 0)
		return n;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0))
			continue;
		size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int got[LMS_FD_PASS_MAX];
		if (count > LMS_FD_PASS_MAX)
			count = LMS_FD_PASS_MAX; /* the kernel cannot have put more in a buffer this size */
		memcpy(got, CMSG_DATA(c), count * sizeof(int));
		for (size_t i = 0; i < count; i++) {
			if (*nfds < maxfds)
				fds[(*nfds)++] = got[i];
			else
				close(got[i]);
		}
	}
	return n;
}

void
lms_fd_close_all(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}
