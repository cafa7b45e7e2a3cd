#pragma once
/*
 * A sandbox's DNS forwarder: the loop that serves the resolver address of one sandbox (a UDP socket
 * and a listening TCP socket made inside its network namespace) by way of the upstream resolver (a UDP
 * socket of the host's namespace), deciding each step with net/dns-filter.h. It holds no state a
 * sandbox can grow without bound: at most LMS_DNS_PENDING_MAX queries wait at once (the oldest is
 * answered SERVFAIL to make room), each for LMS_DNS_UPSTREAM_TIMEOUT_MS at most, and only answers from
 * the upstream's own address, with the id and question of a waiting query, are taken.
 *
 * TCP (net/dns-tcp.h): at most LMS_DNS_TCP_CONNS_MAX connections, each read and written without
 * blocking in the same poll loop, so that a slow or hostile client delays nobody else. A query that
 * came over TCP is asked upstream over the same UDP socket, offering LMS_DNS_TCP_MSG_MAX bytes; the
 * answer (TC passed on if even that was cut) goes back over its connection.
 */
#include <stddef.h>
#include <sys/socket.h>

#include "core/error.h"
#include "net/dns-filter.h"

#define LMS_DNS_PENDING_MAX 64
#define LMS_DNS_UPSTREAM_TIMEOUT_MS 3000

/* Called with the addresses an answer admitted (before the sandbox gets the answer, so that its first
 * connection finds them admitted) and their TTL in seconds, already capped. A -1 return refuses the
 * answer: the sandbox gets SERVFAIL. */
typedef int (*lms_dns_admit_fn)(void *ctx, const struct lms_dns_answer *a, size_t n);

struct lms_dns_forwarder {
	int sandbox_fd;	 /* bound to the resolver address inside the sandbox */
	int upstream_fd; /* unbound or bound in the host's namespace */
	struct sockaddr_storage upstream;
	socklen_t upstream_len;
	struct lms_dns_policy policy;
	lms_dns_admit_fn admit; /* may be NULL */
	void *admit_ctx;
	int tcp_fd;	/* listening, non-blocking, at the resolver address; -1 for none */
	int stop_fd;	/* readable (or hung up) when the loop must end; -1 for none */
	int timeout_ms; /* how long a query waits for the upstream; 0: LMS_DNS_UPSTREAM_TIMEOUT_MS */
};

/* Serves until stop_fd is readable or hangs up. Returns 0 then, -1 when a socket fails for good. */
int lms_dns_forwarder_run(const struct lms_dns_forwarder *f, struct lms_error **err);
