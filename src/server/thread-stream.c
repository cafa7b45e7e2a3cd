/* Server-Sent Events written by a thread of their own (thread-stream.h). */
#include "server/thread-stream.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fdio.h"

struct lms_thread_stream {
	lms_thread_stream_fn fn;
	void *cls;
	void (*free_cls)(void *);
	int frames[2]; /* the thread writes events to [1]; the response reads [0] */
	int cancel[2]; /* closing [1] hangs up [0], the work's hang-up descriptor */
	int client_fd;
	pthread_t thread;
};

static void *
work(void *arg)
{
	struct lms_thread_stream *ts = arg;
	ts->fn(ts, ts->cls);
	close(ts->frames[1]); /* the end of the stream */
	ts->frames[1] = -1;
	return NULL;
}

void
lms_thread_stream_write(struct lms_thread_stream *ts, const char *data, size_t len)
{
	/* A reader gone (EPIPE) is fine: the work is being cancelled. */
	(void)lms_fd_write_all(ts->frames[1], data, len);
}

int
lms_thread_stream_cancel_fd(const struct lms_thread_stream *ts)
{
	return ts->cancel[0];
}

static ssize_t
stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct lms_thread_stream *ts = cls;
	for (;;) {
		struct pollfd p[2] = {{.fd = ts->frames[0], .events = POLLIN},
				      {.fd = ts->client_fd, .events = POLLRDHUP}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		if (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR))
			return MHD_CONTENT_READER_END_WITH_ERROR; /* the stream is closed: stream_free cancels */
		if (p[0].revents == 0)
			continue;
		ssize_t n = read(ts->frames[0], buf, max);
		if (n > 0)
			return n;
		if (n == 0)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (errno != EINTR && errno != EAGAIN)
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
}

static void
close_pipes(struct lms_thread_stream *ts)
{
	for (int i = 0; i < 2; i++) {
		if (ts->frames[i] >= 0)
			close(ts->frames[i]);
		if (ts->cancel[i] >= 0)
			close(ts->cancel[i]);
	}
}

static void
stream_free(void *cls)
{
	struct lms_thread_stream *ts = cls;
	close(ts->cancel[1]); /* work still running is cancelled */
	ts->cancel[1] = -1;
	close(ts->frames[0]); /* what the thread still writes fails */
	ts->frames[0] = -1;
	pthread_join(ts->thread, NULL);
	close_pipes(ts);
	ts->free_cls(ts->cls);
	free(ts);
}

bool
lms_thread_stream_reply(struct lms_request *req, lms_thread_stream_fn fn, void *cls, void (*free_cls)(void *),
			const struct lms_header *headers, enum MHD_Result *out)
{
	struct lms_thread_stream *ts = xcalloc(1, sizeof(*ts));
	*ts = (struct lms_thread_stream){
	    .fn = fn, .cls = cls, .free_cls = free_cls, .client_fd = lms_request_socket(req)};
	ts->frames[0] = ts->frames[1] = ts->cancel[0] = ts->cancel[1] = -1;
	if (pipe2(ts->frames, O_CLOEXEC) < 0 || pipe2(ts->cancel, O_CLOEXEC) < 0 ||
	    pthread_create(&ts->thread, NULL, work, ts) != 0) {
		close_pipes(ts);
		free(ts);
		return false;
	}
	*out = lms_reply_event_stream_headers(req, stream_read, ts, stream_free, headers);
	return true;
}
