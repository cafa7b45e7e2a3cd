/*
 * The frames of a request's events pipe: {type, len} then len bytes. Output chunks as they are read,
 * then one RESULT (a struct lms_sandbox_result) or one ERROR (the kind, then the message). The reader
 * is the daemon, which checks every header: a worker that died mid-frame is an error, not a hang.
 *
 * A worker writes a command's output through a queue that never blocks (lms_frame_queue): a daemon
 * whose client stopped reading a stream stops reading the pipe, and a blocked write would stop the
 * command's deadline, CPU limit and cancel with it. What the reader has not taken waits in the queue,
 * which the output cap bounds (only output within it is framed).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/fdio.h"
#include "sandbox/spawner-proto.h"

#define MAX_FRAME (1u << 20)

struct frame {
	uint32_t type;
	uint32_t len;
};

static void
send_frame(int fd, uint32_t type, const void *data, size_t len)
{
	struct frame f = {type, (uint32_t)len};
	if (lms_fd_write_all(fd, &f, sizeof(f)) == 0 && len > 0)
		(void)lms_fd_write_all(fd, data, len);
}

void
lms_frame_result(int fd, const struct lms_sandbox_result *res)
{
	send_frame(fd, LMS_JOB_RESULT, res, sizeof(*res));
}

void
lms_frame_pid(int fd, pid_t pid)
{
	int32_t v = (int32_t)pid;
	send_frame(fd, LMS_JOB_STDOUT, &v, sizeof(v));
}

void
lms_frame_error_text(int fd, enum lms_error_kind kind, const char *message)
{
	struct lms_buf b = {0};
	int32_t k = (int32_t)kind;
	lms_buf_append(&b, &k, sizeof(k));
	lms_buf_append(&b, message, strlen(message));
	send_frame(fd, LMS_JOB_ERROR, b.data, b.len);
	lms_buf_clear(&b);
}

void
lms_frame_error(int fd, const struct lms_error *e)
{
	lms_frame_error_text(fd, e->kind, e->message);
}

int
lms_frame_read(int fd, struct lms_job_event *ev, struct lms_error **err)
{
	*ev = (struct lms_job_event){0};
	struct frame f;
	int r = lms_fd_read_full(fd, &f, sizeof(f));
	if (r <= 0 || f.len > MAX_FRAME || f.type < LMS_JOB_STDOUT || f.type > LMS_JOB_ERROR)
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "the sandbox's worker process died without a result");
	char *payload = xmalloc(f.len + 1);
	if (f.len > 0 && lms_fd_read_full(fd, payload, f.len) != 1) {
		free(payload);
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "the sandbox's worker process died mid-frame");
	}
	payload[f.len] = '\0';
	ev->type = (enum lms_job_event_type)f.type;
	if (f.type == LMS_JOB_RESULT) {
		if (f.len == sizeof(ev->result))
			memcpy(&ev->result, payload, sizeof(ev->result));
		free(payload);
		return 1;
	}
	if (f.type == LMS_JOB_ERROR) {
		int32_t kind = LMS_ERR_INTERNAL;
		if (f.len >= sizeof(kind))
			memcpy(&kind, payload, sizeof(kind));
		if (kind < LMS_ERR_INTERNAL || kind > LMS_ERR_KIND_MAX)
			kind = LMS_ERR_INTERNAL;
		lms_error_set(&ev->error, (enum lms_error_kind)kind, 0, "%s",
			      f.len >= sizeof(kind) ? payload + sizeof(kind) : "unknown error");
		free(payload);
		return 1;
	}
	ev->data = payload;
	ev->len = f.len;
	return 1;
}

void
lms_frame_queue_init(struct lms_frame_queue *q, int fd)
{
	*q = (struct lms_frame_queue){.fd = fd};
	int flags = fcntl(fd, F_GETFL);
	/* Blocking writes still work, just as before, if the descriptor cannot be made non-blocking. */
	if (flags >= 0)
		(void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

bool
lms_frame_queue_pending(const struct lms_frame_queue *q)
{
	return !q->broken && q->off < q->q.len;
}

void
lms_frame_queue_drain(struct lms_frame_queue *q)
{
	while (lms_frame_queue_pending(q)) {
		ssize_t n = write(q->fd, q->q.data + q->off, q->q.len - q->off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			q->broken = true; /* the reader went away: its cancel pipe ends the job */
			return;
		}
		q->off += (size_t)n;
	}
	lms_buf_clear(&q->q);
	q->off = 0;
}

static void
queue_frame(struct lms_frame_queue *q, uint32_t type, const void *data, size_t len)
{
	struct frame f = {type, (uint32_t)len};
	lms_buf_append(&q->q, &f, sizeof(f));
	lms_buf_append(&q->q, data, len);
	lms_frame_queue_drain(q);
}

void
lms_frame_queue_output(void *queue, enum lms_stream stream, const char *data, size_t len)
{
	queue_frame(queue, stream == LMS_STREAM_STDOUT ? LMS_JOB_STDOUT : LMS_JOB_STDERR, data, len);
}

bool
lms_frame_queue_pending_cb(void *queue)
{
	return lms_frame_queue_pending(queue);
}

void
lms_frame_queue_drain_cb(void *queue)
{
	lms_frame_queue_drain(queue);
}

void
lms_frame_queue_finish(struct lms_frame_queue *q)
{
	/* The command is over: the rest is waited for (a reader that never reads is closed by the daemon,
	 * whose end going away ends this write with EPIPE). */
	int flags = fcntl(q->fd, F_GETFL);
	if (flags >= 0)
		(void)fcntl(q->fd, F_SETFL, flags & ~O_NONBLOCK);
	if (!q->broken && q->off < q->q.len)
		(void)lms_fd_write_all(q->fd, q->q.data + q->off, q->q.len - q->off);
	lms_buf_clear(&q->q);
	q->off = 0;
}
