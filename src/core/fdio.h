#pragma once
/*
 * Whole transfers on descriptors, retried on EINTR and short counts, and descriptors passed over Unix
 * sockets (SCM_RIGHTS). Async-signal-safe apart from lms_fd_read_whole (it allocates): usable in the
 * sandbox's PID 1, the workers and the daemon alike.
 */
#include <stddef.h>
#include <sys/types.h>

#include "core/buf.h"
#include "core/error.h"

/* Writes all of data. 0, or -1 with errno set (EPIPE, EBADF...). */
int lms_fd_write_all(int fd, const void *data, size_t len);

/* Reads exactly len bytes. 1 when read, 0 at end-of-file before the first byte, -1 otherwise (errno set;
 * EPIPE for an end-of-file in the middle). */
int lms_fd_read_full(int fd, void *buf, size_t len);

/* The whole content of a regular file or memfd (from offset 0, as fstat sizes it), NUL-terminated, at
 * most max bytes (larger is LMS_ERR_INVALID). Caller frees. `what` names it in errors ("the job"). */
char *lms_fd_read_whole(int fd, size_t max, size_t *len, const char *what, struct lms_error **err);

/* Appends everything read from fd (a pipe, a terminal, a file) up to its end to `out`: at most max bytes
 * (more is LMS_ERR_INVALID "larger than N MiB", and `out` is cleared). `what` names it in errors. */
int lms_fd_read_to_end(int fd, size_t max, struct lms_buf *out, const char *what, struct lms_error **err);

/* Sends one message with nfds descriptors (at most LMS_FD_PASS_MAX) attached. The sendmsg result; never
 * raises SIGPIPE. */
#define LMS_FD_PASS_MAX 8
ssize_t lms_fd_send(int sock, const void *data, size_t len, const int *fds, size_t nfds);

/* Receives one message into buf and up to maxfds descriptors (close-on-exec) into fds, their count in
 * *nfds. Descriptors beyond maxfds, or of a control message other than SCM_RIGHTS, are closed: a
 * peer cannot make us hold what we did not ask for. The recvmsg result (0 at end-of-file). */
ssize_t lms_fd_recv(int sock, void *buf, size_t len, int *fds, size_t maxfds, size_t *nfds);

/* Closes n descriptors (those < 0 are skipped) and sets them to -1. */
void lms_fd_close_all(int *fds, size_t n);
