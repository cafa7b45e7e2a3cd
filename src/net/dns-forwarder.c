#include "net/dns-forwarder.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

struct waiting {
	bool used;
	struct lms_dns_pending p;
	struct sockaddr_storage client;
	socklen_t client_len;
	double deadline; /* monotonic seconds */
};

struct loop {
	const struct lms_dns_forwarder *f;
	struct waiting slots[LMS_DNS_PENDING_MAX];
	uint16_t counter;
};

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
send_to_client(const struct waiting *w, int fd, const uint8_t *msg, size_t len)
{
	/* A full socket buffer or a vanished client loses one answer; the resolver inside retries. */
	(void)sendto(fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)&w->client, w->client_len);
}

static void
give_up(struct loop *l, struct waiting *w)
{
	uint8_t out[LMS_DNS_MSG_MAX];
	size_t len = lms_dns_filter_timeout(&w->p, out, sizeof(out));
	if (len)
		send_to_client(w, l->f->sandbox_fd, out, len);
	w->used = false;
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

static void
on_query(struct loop *l)
{
	uint8_t in[LMS_DNS_MSG_MAX], out[LMS_DNS_MSG_MAX];
	struct waiting w = {.client_len = sizeof(w.client)};
	ssize_t n = recvfrom(l->f->sandbox_fd, in, sizeof(in), MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&w.client,
			     &w.client_len);
	if (n < 0 || (size_t)n > sizeof(in))
		return; /* nothing, or more than any query: dropped */
	size_t len;
	uint16_t id = fresh_id(l);
	enum lms_dns_verdict v = lms_dns_filter_query(&l->f->policy, in, (size_t)n, id, &w.p, out, sizeof(out), &len);
	if (v == LMS_DNS_REPLY)
		send_to_client(&w, l->f->sandbox_fd, out, len);
	if (v != LMS_DNS_FORWARD)
		return;
	if (sendto(l->f->upstream_fd, out, len, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)&l->f->upstream,
		   l->f->upstream_len) != (ssize_t)len) {
		give_up(l, &w);
		return;
	}
	struct waiting *slot = free_slot(l);
	*slot = w;
	slot->used = true;
	slot->deadline = now_s() + (l->f->timeout_ms ? l->f->timeout_ms : LMS_DNS_UPSTREAM_TIMEOUT_MS) / 1000.0;
}

static bool
from_upstream(const struct lms_dns_forwarder *f, const struct sockaddr_storage *from, socklen_t len)
{
	return len == f->upstream_len && memcmp(from, &f->upstream, len) == 0;
}

static void
on_answer(struct loop *l)
{
	uint8_t in[LMS_DNS_MSG_MAX], out[LMS_DNS_MSG_MAX];
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
		send_to_client(w, l->f->sandbox_fd, out, len);
		w->used = false;
		return;
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
	return soonest < 0 ? -1 : (int)((soonest - now) * 1000) + 1;
}

int
lms_dns_forwarder_run(const struct lms_dns_forwarder *f, struct lms_error **err)
{
	struct loop l = {.f = f};
	for (;;) {
		struct pollfd fds[3] = {{.fd = f->sandbox_fd, .events = POLLIN},
					{.fd = f->upstream_fd, .events = POLLIN},
					{.fd = f->stop_fd, .events = POLLIN}};
		int r = poll(fds, f->stop_fd >= 0 ? 3 : 2, next_timeout_ms(&l));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "DNS forwarder: poll");
		if (f->stop_fd >= 0 && fds[2].revents)
			return 0;
		if ((fds[0].revents | fds[1].revents) & POLLNVAL)
			return lms_error_set(err, LMS_ERR_INTERNAL, 0, "DNS forwarder: a socket was closed under it");
		/* POLLERR on a UDP socket is a queued ICMP error (an upstream that refused): the read takes it. */
		if (fds[0].revents & (POLLIN | POLLERR))
			on_query(&l);
		if (fds[1].revents & (POLLIN | POLLERR))
			on_answer(&l);
	}
}
