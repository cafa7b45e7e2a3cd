/*
 * A streamed response between a producer thread and libmicrohttpd's thread (server.h, "pump"). The
 * route's reader blocks (it waits for a command, a backend, a tar thread), so it never runs on
 * libmicrohttpd's thread: the producer (the worker that ran the handler, workers.c) calls it and puts
 * what it returns into a buffer of two blocks; libmicrohttpd's content reader takes from that buffer and,
 * when it is empty, suspends the connection until the producer has more (never a busy loop, never a wait
 * on libmicrohttpd's thread). A client that stops reading fills the buffer, and then the producer waits
 * for room, as the reader waited for a writable socket before: the limits of a command do not depend on
 * it (issue 10, item 8: the engine keeps undelivered output up to the output cap).
 *
 * Two owners: libmicrohttpd's response (pump_free) and the producer; the last one frees it. The
 * route's cls is freed by the producer when it is done with the reader (or with the pump, when no
 * producer ever ran: a response made and not sent). The connection is resumed only by whoever saw it
 * suspended, under the lock, so a resume always follows its suspend (libmicrohttpd: a resume of a
 * connection not suspended is undefined).
 */
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>

#include "core/alloc.h"
#include "server/server.h"

struct lms_pump {
	pthread_mutex_t lock;
	pthread_cond_t room; /* the producer waits here for the buffer to drain */
	MHD_ContentReaderCallback reader;
	void *cls;
	MHD_ContentReaderFreeCallback free_cls;
	struct MHD_Connection *conn;
	int fd; /* the client's socket, valid while the response is (libmicrohttpd frees it before closing) */
	char *buf, *scratch;
	size_t block, len; /* buf holds 2 * block */
	uint64_t pos;
	ssize_t end;	/* 0 while the producer runs; then END_OF_STREAM or END_WITH_ERROR */
	bool suspended; /* by pump_read, waiting for the producer */
	bool freed;	/* libmicrohttpd let the response go */
	bool stopping;	/* the daemon stops: no more waiting for room */
	bool in_reader; /* the producer is inside the route's reader */
	int refs;
};

static void
destroy(struct lms_pump *p)
{
	if (p->free_cls)
		p->free_cls(p->cls);
	pthread_cond_destroy(&p->room);
	pthread_mutex_destroy(&p->lock);
	free(p->buf);
	free(p->scratch);
	free(p);
}

static void
release(struct lms_pump *p)
{
	pthread_mutex_lock(&p->lock);
	bool last = --p->refs == 0;
	pthread_mutex_unlock(&p->lock);
	if (last)
		destroy(p);
}

/* Under the lock: the consumer has something to do (bytes or the end). */
static void
wake_consumer(struct lms_pump *p)
{
	if (p->suspended && !p->freed) {
		p->suspended = false;
		MHD_resume_connection(p->conn);
	}
}

/* libmicrohttpd's content reader, on its thread: never waits. */
static ssize_t
pump_read(void *cls, uint64_t pos, char *out, size_t max)
{
	(void)pos;
	struct lms_pump *p = cls;
	pthread_mutex_lock(&p->lock);
	if (p->len > 0) {
		size_t n = p->len < max ? p->len : max;
		memcpy(out, p->buf, n);
		memmove(p->buf, p->buf + n, p->len - n);
		p->len -= n;
		pthread_cond_signal(&p->room);
		pthread_mutex_unlock(&p->lock);
		return (ssize_t)n;
	}
	ssize_t end = p->end;
	if (end == 0) {
		p->suspended = true;
		MHD_suspend_connection(p->conn);
	}
	pthread_mutex_unlock(&p->lock);
	return end;
}

/* The response is destroyed (sent, or its connection closing). A producer inside the route's reader is
 * woken through the socket its reader watches for a hang-up: the connection ends anyway. */
static void
pump_free(void *cls)
{
	struct lms_pump *p = cls;
	pthread_mutex_lock(&p->lock);
	p->freed = true;
	pthread_cond_signal(&p->room);
	if (p->in_reader && p->end == 0 && p->fd >= 0)
		(void)shutdown(p->fd, SHUT_RDWR); /* ENOTCONN when the client is gone: nothing to wake then */
	pthread_mutex_unlock(&p->lock);
	release(p);
}

struct MHD_Response *
lms_pump_response(struct MHD_Connection *conn, int client_fd, uint64_t size, size_t block_size,
		  MHD_ContentReaderCallback reader, void *cls, MHD_ContentReaderFreeCallback free_cls,
		  struct lms_pump **out)
{
	struct lms_pump *p = xcalloc(1, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->room, NULL);
	p->reader = reader;
	p->cls = cls;
	p->free_cls = free_cls;
	p->conn = conn;
	p->fd = client_fd;
	p->block = block_size;
	p->buf = xmalloc(2 * block_size);
	p->scratch = xmalloc(block_size);
	p->refs = 1;
	*out = p;
	return MHD_create_response_from_callback(size, block_size, pump_read, p, pump_free);
}

void
lms_pump_hold(struct lms_pump *p)
{
	pthread_mutex_lock(&p->lock);
	p->refs++;
	pthread_mutex_unlock(&p->lock);
}

void
lms_pump_run(struct lms_pump *p)
{
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->freed && !p->stopping && 2 * p->block - p->len < p->block)
			pthread_cond_wait(&p->room, &p->lock);
		if (p->freed || p->stopping) {
			p->end = MHD_CONTENT_READER_END_WITH_ERROR;
			break;
		}
		p->in_reader = true;
		pthread_mutex_unlock(&p->lock);
		ssize_t n = p->reader(p->cls, p->pos, p->scratch, p->block);
		pthread_mutex_lock(&p->lock);
		p->in_reader = false;
		if (n < 0) {
			p->end = n;
			break;
		}
		/* 0 (nothing yet) is not something our readers answer: they wait instead. */
		memcpy(p->buf + p->len, p->scratch, (size_t)n);
		p->len += (size_t)n;
		p->pos += (uint64_t)n;
		wake_consumer(p);
	}
	wake_consumer(p);
	pthread_mutex_unlock(&p->lock);
	/* The route's cls is freed here, on the producer's thread, not by the last owner: its free may wait
	 * (thread-stream.c joins a thread that is cancelling a command), and libmicrohttpd's thread never
	 * waits. The reader is never called again. */
	if (p->free_cls)
		p->free_cls(p->cls);
	p->free_cls = NULL;
	release(p);
}

void
lms_pump_stop(struct lms_pump *p)
{
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_signal(&p->room);
	if (p->in_reader && !p->freed && p->fd >= 0)
		(void)shutdown(p->fd, SHUT_RDWR);
	pthread_mutex_unlock(&p->lock);
}
