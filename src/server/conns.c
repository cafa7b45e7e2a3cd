/*
 * The header deadline: a connection has --header-timeout-ms to send a request's headers, counted from
 * its accept or from the end of its previous request. libmicrohttpd's own timeout counts idle time
 * only (a byte every few seconds keeps a connection forever), so a reaper thread shuts down a
 * connection whose deadline has passed; libmicrohttpd then reads end-of-file and closes it. While a
 * request is read past its headers and handled, no deadline runs: a long execution or a stream is
 * never cut by it.
 *
 * libmicrohttpd calls MHD_CONNECTION_NOTIFY_CLOSED before it closes the socket, and the reaper looks
 * the socket up under the lock that CLOSED takes, so it never shuts down a descriptor that another
 * connection has since been given.
 */
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "server/server.h"

struct conn {
	struct MHD_Connection *mhd;
	_Atomic double deadline_ms; /* 0: none (a request is being read past its headers or handled) */
	struct conn *prev, *next;
};

struct lms_conns {
	double timeout_ms;
	pthread_mutex_t lock; /* guards the list and stopping */
	pthread_cond_t wake;
	struct conn *head;
	bool stopping;
	pthread_t reaper;
};

static void
shut_expired(struct lms_conns *c, double now, double *next)
{
	for (struct conn *e = c->head; e; e = e->next) {
		double d = atomic_load(&e->deadline_ms);
		if (d == 0)
			continue;
		if (d > now) {
			if (*next == 0 || d < *next)
				*next = d;
			continue;
		}
		atomic_store(&e->deadline_ms, 0);
		const union MHD_ConnectionInfo *info =
		    MHD_get_connection_info(e->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
		if (info && shutdown(info->connect_fd, SHUT_RDWR) < 0)
			lms_log(LMS_LOG_WARNING, NULL, "shut down a connection past its header timeout", "error",
				strerror(errno), NULL);
		else
			lms_log(LMS_LOG_DEBUG, NULL, "connection closed: no request headers within the header timeout",
				NULL);
	}
}

static void *
reaper_main(void *arg)
{
	struct lms_conns *c = arg;
	pthread_mutex_lock(&c->lock);
	while (!c->stopping) {
		double next = 0;
		shut_expired(c, lms_monotonic_ms(), &next);
		/* A new deadline is never earlier than those already listed: now + the same timeout. */
		double wait_ms = next ? next - lms_monotonic_ms() + 1 : c->timeout_ms;
		struct timespec until = lms_monotonic_after_ms(wait_ms);
		pthread_cond_timedwait(&c->wake, &c->lock, &until);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

struct lms_conns *
lms_conns_new(uint64_t header_timeout_ms, struct lms_error **err)
{
	struct lms_conns *c = xcalloc(1, sizeof(*c));
	c->timeout_ms = (double)header_timeout_ms;
	pthread_mutex_init(&c->lock, NULL);
	lms_cond_init_monotonic(&c->wake);
	int r = pthread_create(&c->reaper, NULL, reaper_main, c);
	if (r != 0) {
		pthread_cond_destroy(&c->wake);
		pthread_mutex_destroy(&c->lock);
		free(c);
		lms_error_set(err, LMS_ERR_SETUP, r, "start the thread that enforces the header timeout");
		return NULL;
	}
	return c;
}

void
lms_conns_free(struct lms_conns *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->reaper, NULL);
	pthread_cond_destroy(&c->wake);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void
lms_conns_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			enum MHD_ConnectionNotificationCode code)
{
	struct lms_conns *c = cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		struct conn *e = xcalloc(1, sizeof(*e));
		e->mhd = conn;
		atomic_store(&e->deadline_ms, lms_monotonic_ms() + c->timeout_ms);
		pthread_mutex_lock(&c->lock);
		e->next = c->head;
		if (c->head)
			c->head->prev = e;
		c->head = e;
		pthread_mutex_unlock(&c->lock);
		*socket_context = e;
		return;
	}
	struct conn *e = *socket_context;
	if (e == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	pthread_mutex_unlock(&c->lock);
	free(e);
	*socket_context = NULL;
}

static struct conn *
conn_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return info ? info->socket_context : NULL;
}

void
lms_conns_headers_done(struct MHD_Connection *conn)
{
	struct conn *e = conn_of(conn);
	if (e)
		atomic_store(&e->deadline_ms, 0);
}

void
lms_conns_request_done(struct lms_conns *c, struct MHD_Connection *conn)
{
	struct conn *e = conn_of(conn);
	if (e)
		atomic_store(&e->deadline_ms, lms_monotonic_ms() + c->timeout_ms);
}
