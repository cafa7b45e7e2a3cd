/*
 * The threads that serve requests off libmicrohttpd's thread (ARCHITECTURE.md, "The server model").
 * libmicrohttpd's one epoll thread reads headers and bodies and writes answers, so an idle or slow
 * connection costs no thread. When a request is complete, its connection is suspended and its handler
 * runs on a thread of its own, in the blocking style every route has; lms_reply() on that thread keeps
 * the answer (request.c), and the thread resumes the connection, whose access handler is then called
 * again and queues it. A streamed answer's producer (pump.c) then runs on the same thread: one thread per
 * request being served, at most one per connection (--max-connections, --max-connections-per-ip).
 *
 * The registry is for the daemon's stop: libmicrohttpd must not be stopped with a suspended connection,
 * and a handler or a stream that waits on its client is ended, as thread-per-connection's stop did, by
 * a shutdown of its socket.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>

#include "core/alloc.h"
#include "core/log.h"
#include "server/server.h"

struct task {
	struct lms_workers *w;
	struct lms_request *req; /* until the connection is resumed */
	int fd;			 /* the client's socket while the connection is suspended for the handler; else -1 */
	struct lms_pump *pump;	 /* the stream it produces, after */
	struct task *prev, *next;
};

struct lms_workers {
	pthread_mutex_t lock; /* guards the list, count and stopping */
	pthread_cond_t idle;
	struct task *head;
	unsigned count;
	bool stopping;
	pthread_attr_t attr;
};

struct lms_workers *
lms_workers_new(void)
{
	struct lms_workers *w = xcalloc(1, sizeof(*w));
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->idle, NULL);
	pthread_attr_init(&w->attr);
	pthread_attr_setdetachstate(&w->attr, PTHREAD_CREATE_DETACHED);
	return w;
}

void
lms_workers_free(struct lms_workers *w)
{
	if (w == NULL)
		return;
	pthread_attr_destroy(&w->attr);
	pthread_cond_destroy(&w->idle);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

static void
unlink_task(struct lms_workers *w, struct task *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		w->head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	if (--w->count == 0)
		pthread_cond_broadcast(&w->idle);
}

static void *
task_main(void *arg)
{
	struct task *t = arg;
	struct lms_workers *w = t->w;
	struct lms_request *req = t->req;
	/* The dispatcher suspended the connection while holding the lock: no resume can come before it. */
	pthread_mutex_lock(&w->lock);
	pthread_mutex_unlock(&w->lock);

	req->result = req->forward != NULL ? lms_forward_reply(req) : req->route->handler(req);
	lms_request_body_done(req);
	struct lms_pump *pump = req->pending != NULL && req->pending == req->pump_response ? req->pump : NULL;
	if (pump)
		lms_pump_hold(pump); /* once resumed, libmicrohttpd may let the response go at once */
	struct MHD_Connection *conn = req->conn;

	pthread_mutex_lock(&w->lock);
	t->fd = -1;
	t->req = NULL;
	t->pump = pump;
	if (pump && w->stopping)
		lms_pump_stop(pump);
	pthread_mutex_unlock(&w->lock);
	MHD_resume_connection(conn); /* the last touch of req: it may be freed from now on */

	if (pump)
		lms_pump_run(pump);
	pthread_mutex_lock(&w->lock);
	unlink_task(w, t);
	pthread_mutex_unlock(&w->lock);
	free(t);
	return NULL;
}

enum MHD_Result
lms_workers_dispatch(struct lms_workers *w, struct lms_request *req)
{
	if (req->dispatched) { /* called again once its thread resumed the connection */
		if (req->pending == NULL)
			return req->result;
		enum MHD_Result r = MHD_queue_response(req->conn, req->status, req->pending);
		MHD_destroy_response(req->pending);
		req->pending = NULL;
		return r;
	}
	struct task *t = xcalloc(1, sizeof(*t));
	t->w = w;
	t->req = req;
	t->fd = lms_request_socket(req);
	pthread_mutex_lock(&w->lock);
	if (w->stopping) {
		pthread_mutex_unlock(&w->lock);
		free(t);
		return lms_reply_error(req, 503, "server_error", "shutting_down", "the server is shutting down");
	}
	req->dispatched = true;
	req->on_worker = true;
	pthread_t thread;
	int r = pthread_create(&thread, &w->attr, task_main, t);
	if (r != 0) {
		pthread_mutex_unlock(&w->lock);
		req->dispatched = false;
		req->on_worker = false;
		free(t);
		lms_log(LMS_LOG_WARNING, req->id, "start a thread for a request", "error", strerror(r), NULL);
		const struct lms_header retry[] = {{MHD_HTTP_HEADER_RETRY_AFTER, "1"}, {NULL, NULL}};
		return lms_reply_error_headers(req, 503, retry, "server_error", "server_busy",
					       "the server cannot start a thread for this request (%s): retry shortly",
					       strerror(r));
	}
	t->next = w->head;
	if (w->head)
		w->head->prev = t;
	w->head = t;
	w->count++;
	MHD_suspend_connection(req->conn);
	pthread_mutex_unlock(&w->lock);
	return MHD_YES;
}

void
lms_workers_stop(struct lms_workers *w)
{
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	for (struct task *t = w->head; t; t = t->next) {
		if (t->fd >= 0 && shutdown(t->fd, SHUT_RDWR) < 0 && errno != ENOTCONN)
			lms_log(LMS_LOG_WARNING, NULL, "shut down a served connection at stop", "error",
				strerror(errno), NULL);
		if (t->pump)
			lms_pump_stop(t->pump);
	}
	while (w->count > 0)
		pthread_cond_wait(&w->idle, &w->lock);
	pthread_mutex_unlock(&w->lock);
}
