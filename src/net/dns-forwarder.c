#include "net/dns-forwarder.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "net/dns-tcp.h"

struct waiting {
	bool used;
	struct lms_dns_pending p;
	struct sockaddr_storage client; /* a UDP client's address */
	socklen_t client_len;
	int conn;	 /* a TCP client's connection (its index), -1 for UDP */
	uint32_t gen;	 /* that connection's generation when it asked */
	double deadline; /* monotonic seconds */
};

struct loop {
	const struct lms_dns_forwarder *f;
	struct waiting slots[LMS_DNS_PENDING_MAX];
	struct lms_dns_tcp_conn *conns; /* LMS_DNS_TCP_CONNS_MAX of them */
	uint16_t counter;
};

/* The poll set: the UDP socket, the upstream, the stop descriptor, the TCP listener, the connections. */
enum { P_UDP, P_UPSTREAM, P_STOP, P_LISTEN, P_CONNS, P_COUNT = P_CONNS + LMS_DNS_TCP_CONNS_MAX };

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* An id a sandbox cannot predict: random where getrandom works, never one already waiting. */
static uint16_t
fresh_id(struct loop *l)
{
	for (;;) {
		uint16_t id;
		if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != (ssize_t)sizeof(id))
			id = (uint16_t)(++l->counter * 40503u);
		bool taken = false;
		for (size_t i = 0; i < LMS_DNS_PENDING_MAX; i++)
			taken |= l->slots[i].used && l->slots[i].p.upstream_id == id;
		if (!taken)
			return id;
	}
}

static void
close_conn(struct lms_dns_tcp_conn *c)
{
	close(c->fd);
	c->fd = -1;
	c->gen++;
	c->waiting = 0;
	c->eof = false;
	c->in_len = c->out_len = 0;
}

/* The connection a waiting query's answer goes to: NULL for UDP, or when it has closed since. */
static struct lms_dns_tcp_conn *
conn_of(struct loop *l, const struct waiting *w)
{
	if (w->conn < 0)
		return NULL;
	struct lms_dns_tcp_conn *c = &l->conns[w->conn];
	return c->fd >= 0 && c->gen == w->gen ? c : NULL;
}

static void
send_to_client(struct loop *l, const struct waiting *w, uint8_t *msg, size_t len)
{
	if (w->conn >= 0) {
		struct lms_dns_tcp_conn *c = conn_of(l, w);
		/* Room was kept for it when the query was read (lms_dns_tcp_may_read). */
		if (c)
			(void)lms_dns_tcp_queue(c, msg, len);
		return;
	}
	/* More than the client takes over UDP: TC, and it asks again over TCP. */
	len = lms_dns_truncate(msg, len, lms_dns_udp_max(&w->p.q));
	/* A full socket buffer or a vanished client loses one answer; the resolver inside retries. */
	(void)sendto(l->f->sandbox_fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)&w->client,
		     w->client_len);
}

/* A waiting query is done (answered or given up): its connection waits for one fewer. */
static void
release(struct loop *l, struct waiting *w)
{
	struct lms_dns_tcp_conn *c = conn_of(l, w);
	if (c && c->waiting)
		c->waiting--;
	w->used = false;
}

static void
servfail(struct loop *l, const struct waiting *w)
{
	uint8_t out[LMS_DNS_MSG_MAX];
	size_t len = lms_dns_filter_timeout(&w->p, out, sizeof(out));
	if (len)
		send_to_client(l, w, out, len);
}

static void
give_up(struct loop *l, struct waiting *w)
{
	servfail(l, w);
	release(l, w);
}

static struct waiting *
free_slot(struct loop *l)
{
	struct waiting *oldest = &l->slots[0];
	for (size_t i = 0; i < LMS_DNS_PENDING_MAX; i++) {
		if (!l->slots[i].used)
			return &l->slots[i];
		if (l->slots[i].deadline < oldest->deadline)
			oldest = &l->slots[i];
	}
	give_up(l, oldest);
	return oldest;
}

/* One query, from UDP (w->conn -1) or TCP: answered at once, or sent upstream to wait. */
static void
on_query(struct loop *l, struct waiting *w, const uint8_t *in, size_t n)
{
	uint8_t out[LMS_DNS_MSG_MAX];
	size_t len;
	uint16_t edns = w->conn < 0 ? LMS_DNS_MSG_MAX : LMS_DNS_TCP_MSG_MAX;
	enum lms_dns_verdict v =
	    lms_dns_filter_query(&l->f->policy, in, n, fresh_id(l), edns, &w->p, out, sizeof(out), &len);
	if (v == LMS_DNS_REPLY)
		send_to_client(l, w, out, len);
	if (v != LMS_DNS_FORWARD)
		return;
	if (sendto(l->f->upstream_fd, out, len, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)&l->f->upstream,
		   l->f->upstream_len) != (ssize_t)len) {
		servfail(l, w);
		return;
	}
	struct waiting *slot = free_slot(l);
	*slot = *w;
	slot->used = true;
	slot->deadline = now_s() + (l->f->timeout_ms ? l->f->timeout_ms : LMS_DNS_UPSTREAM_TIMEOUT_MS) / 1000.0;
	struct lms_dns_tcp_conn *c = conn_of(l, slot);
	if (c)
		c->waiting++;
}

static void
on_udp_query(struct loop *l)
{
	uint8_t in[LMS_DNS_MSG_MAX];
	struct waiting w = {.client_len = sizeof(w.client), .conn = -1};
	ssize_t n = recvfrom(l->f->sandbox_fd, in, sizeof(in), MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&w.client,
			     &w.client_len);
	if (n < 0 || (size_t)n > sizeof(in))
		return; /* nothing, or more than any query: dropped */
	on_query(l, &w, in, (size_t)n);
}

static bool
from_upstream(const struct lms_dns_forwarder *f, const struct sockaddr_storage *from, socklen_t len)
{
	return len == f->upstream_len && memcmp(from, &f->upstream, len) == 0;
}

static void
on_answer(struct loop *l)
{
	/* As large as a TCP client's query offers upstream; a UDP client's answer is cut to its size. */
	uint8_t in[LMS_DNS_TCP_MSG_MAX], out[LMS_DNS_TCP_MSG_MAX];
	struct sockaddr_storage from;
	socklen_t from_len = sizeof(from);
	ssize_t n =
	    recvfrom(l->f->upstream_fd, in, sizeof(in), MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&from, &from_len);
	if (n < 0 || (size_t)n > sizeof(in) || !from_upstream(l->f, &from, from_len))
		return;
	for (size_t i = 0; i < LMS_DNS_PENDING_MAX; i++) {
		struct waiting *w = &l->slots[i];
		struct lms_dns_answer admitted[LMS_DNS_ANSWERS_MAX];
		size_t len, n_admitted;
		const char *why;
		if (!w->used || lms_dns_filter_answer(&l->f->policy, &w->p, in, (size_t)n, out, sizeof(out), &len,
						      admitted, &n_admitted, &why) < 0)
			continue;
		if (n_admitted && l->f->admit && l->f->admit(l->f->admit_ctx, admitted, n_admitted) < 0) {
			give_up(l, w);
			return;
		}
		send_to_client(l, w, out, len);
		release(l, w);
		return;
	}
}

static double
idle_deadline(void)
{
	return now_s() + LMS_DNS_TCP_IDLE_MS / 1000.0;
}

/* A new connection, in a free place or in that of the connection idle longest. */
static void
on_accept(struct loop *l)
{
	int fd = accept4(l->f->tcp_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return; /* gone already, or out of descriptors: the client retries or falls back */
	struct lms_dns_tcp_conn *place = &l->conns[0];
	for (size_t i = 0; i < LMS_DNS_TCP_CONNS_MAX; i++) {
		struct lms_dns_tcp_conn *c = &l->conns[i];
		if (c->fd < 0) {
			place = c;
			break;
		}
		if (c->deadline < place->deadline)
			place = c;
	}
	if (place->fd >= 0)
		close_conn(place);
	place->fd = fd;
	place->deadline = idle_deadline();
}

static void
on_conn_readable(struct loop *l, size_t i)
{
	struct lms_dns_tcp_conn *c = &l->conns[i];
	ssize_t n = recv(c->fd, c->in + c->in_len, lms_dns_tcp_need(c), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* The client is done sending: its answers still go out, unless it stopped mid-query. */
		if (n < 0 || c->in_len > 0 || (c->waiting == 0 && c->out_len == 0))
			close_conn(c);
		else
			c->eof = true;
		return;
	}
	c->in_len += (size_t)n;
	size_t len;
	const uint8_t *msg = lms_dns_tcp_message(c, &len);
	if (!msg)
		return;
	if (len == 0) {
		close_conn(c);
		return;
	}
	struct waiting w = {.conn = (int)i, .gen = c->gen};
	c->deadline = idle_deadline();
	on_query(l, &w, msg, len);
	c->in_len = 0;
}

static void
on_conn_writable(struct lms_dns_tcp_conn *c)
{
	ssize_t n = send(c->fd, c->out, c->out_len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		close_conn(c);
		return;
	}
	lms_dns_tcp_written(c, (size_t)n);
	if (c->out_len == 0) {
		c->deadline = idle_deadline();
		if (c->eof && c->waiting == 0)
			close_conn(c);
	}
}

static int
next_timeout_ms(struct loop *l)
{
	double now = now_s(), soonest = -1;
	for (size_t i = 0; i < LMS_DNS_PENDING_MAX; i++) {
		struct waiting *w = &l->slots[i];
		if (!w->used)
			continue;
		if (w->deadline <= now) {
			give_up(l, w);
			continue;
		}
		if (soonest < 0 || w->deadline < soonest)
			soonest = w->deadline;
	}
	for (size_t i = 0; l->f->tcp_fd >= 0 && i < LMS_DNS_TCP_CONNS_MAX; i++) {
		struct lms_dns_tcp_conn *c = &l->conns[i];
		if (c->fd < 0)
			continue;
		if (c->deadline <= now) {
			close_conn(c);
			continue;
		}
		if (soonest < 0 || c->deadline < soonest)
			soonest = c->deadline;
	}
	return soonest < 0 ? -1 : (int)((soonest - now) * 1000) + 1;
}

static void
poll_set(const struct loop *l, struct pollfd *fds)
{
	const struct lms_dns_forwarder *f = l->f;
	fds[P_UDP] = (struct pollfd){.fd = f->sandbox_fd, .events = POLLIN};
	fds[P_UPSTREAM] = (struct pollfd){.fd = f->upstream_fd, .events = POLLIN};
	fds[P_STOP] = (struct pollfd){.fd = f->stop_fd, .events = POLLIN};
	fds[P_LISTEN] = (struct pollfd){.fd = f->tcp_fd, .events = POLLIN};
	for (size_t i = 0; i < LMS_DNS_TCP_CONNS_MAX; i++) {
		const struct lms_dns_tcp_conn *c = &l->conns[i];
		short events = (short)((lms_dns_tcp_may_read(c) ? POLLIN : 0) | (c->out_len ? POLLOUT : 0));
		/* A negative descriptor is skipped by poll: a free place, or one with nothing to do now. */
		fds[P_CONNS + i] = (struct pollfd){.fd = c->fd >= 0 && events ? c->fd : -1, .events = events};
	}
}

static int
serve(struct loop *l, struct lms_error **err)
{
	const struct lms_dns_forwarder *f = l->f;
	for (;;) {
		struct pollfd fds[P_COUNT];
		int timeout = next_timeout_ms(l);
		poll_set(l, fds);
		int r = poll(fds, P_COUNT, timeout);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "DNS forwarder: poll");
		if (f->stop_fd >= 0 && fds[P_STOP].revents)
			return 0;
		if ((fds[P_UDP].revents | fds[P_UPSTREAM].revents | fds[P_LISTEN].revents) & POLLNVAL)
			return lms_error_set(err, LMS_ERR_INTERNAL, 0, "DNS forwarder: a socket was closed under it");
		/* POLLERR on a UDP socket is a queued ICMP error (an upstream that refused): the read takes it. */
		if (fds[P_UDP].revents & (POLLIN | POLLERR))
			on_udp_query(l);
		if (fds[P_UPSTREAM].revents & (POLLIN | POLLERR))
			on_answer(l);
		if (fds[P_LISTEN].revents & POLLIN)
			on_accept(l);
		for (size_t i = 0; i < LMS_DNS_TCP_CONNS_MAX; i++) {
			short ev = fds[P_CONNS + i].revents;
			struct lms_dns_tcp_conn *c = &l->conns[i];
			/* The place may have been taken by a newer connection since the poll: its events were
			 * for the one before. */
			if (!ev || c->fd != fds[P_CONNS + i].fd)
				continue;
			/* Read only where room was kept for the answer; a hang-up shows at the next write. */
			if (ev & POLLERR)
				close_conn(c);
			else if ((ev & (POLLIN | POLLHUP)) && lms_dns_tcp_may_read(c))
				on_conn_readable(l, i);
			if (c->fd >= 0 && (ev & POLLOUT) && c->out_len)
				on_conn_writable(c);
		}
	}
}

int
lms_dns_forwarder_run(const struct lms_dns_forwarder *f, struct lms_error **err)
{
	struct loop l = {.f = f, .conns = calloc(LMS_DNS_TCP_CONNS_MAX, sizeof(*l.conns))};
	if (!l.conns)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "DNS forwarder: memory for its TCP connections");
	for (size_t i = 0; i < LMS_DNS_TCP_CONNS_MAX; i++)
		l.conns[i].fd = -1;
	int r = serve(&l, err);
	for (size_t i = 0; i < LMS_DNS_TCP_CONNS_MAX; i++)
		if (l.conns[i].fd >= 0)
			close(l.conns[i].fd);
	free(l.conns);
	return r;
}
