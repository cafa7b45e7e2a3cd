/*
 * The sandbox's DNS forwarder loop (net/dns-forwarder.c) over real UDP and TCP sockets on loopback: a
 * glibc query is answered through the upstream, the admitted addresses are handed over before the
 * answer leaves, an answer from another address than the upstream's is not taken (a sandbox cannot
 * answer itself), an upstream that never answers gives SERVFAIL, and a refused name never reaches
 * upstream. Over TCP: several queries on one connection, asked upstream offering the TCP size; a UDP
 * client whose answer was cut gets TC and its retry over TCP the answer; a client that stops halfway
 * through a query delays neither UDP nor other TCP clients.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <resolv.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/dns-forwarder.h"
#include "net/dns-tcp.h"

struct rig {
	struct lms_dns_forwarder f;
	int client, upstream, spoofer, stop[2];
	struct sockaddr_in resolver; /* where the client sends (UDP) */
	struct sockaddr_in tcp_resolver;
	pthread_t thread;
	int admitted_calls;
	bool answer_seen_before_admit;
	struct lms_allowlist allow;
};

static int
udp_bound(struct sockaddr_in *addr)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t len = sizeof(a);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	if (addr)
		*addr = a;
	return fd;
}

static int
admit(void *ctx, const struct lms_dns_answer *a, size_t n)
{
	struct rig *r = ctx;
	(void)a;
	assert_true(n > 0);
	/* The client must not have its answer yet: the filter has to know the address first. */
	struct pollfd p = {.fd = r->client, .events = POLLIN};
	r->answer_seen_before_admit |= poll(&p, 1, 0) > 0;
	r->admitted_calls++;
	return 0;
}

static void *
run(void *arg)
{
	struct rig *r = arg;
	assert_int_equal(lms_dns_forwarder_run(&r->f, NULL), 0);
	return NULL;
}

static int
setup(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));
	struct sockaddr_in up;
	r->upstream = udp_bound(&up);
	r->client = udp_bound(NULL);
	r->spoofer = udp_bound(NULL);
	r->f.sandbox_fd = udp_bound(&r->resolver);
	r->f.upstream_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	memcpy(&r->f.upstream, &up, sizeof(up));
	r->f.upstream_len = sizeof(up);
	r->f.admit = admit;
	r->f.admit_ctx = r;
	r->f.timeout_ms = 200;
	r->f.tcp_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(r->f.tcp_fd >= 0);
	r->tcp_resolver = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t tlen = sizeof(r->tcp_resolver);
	assert_int_equal(bind(r->f.tcp_fd, (struct sockaddr *)&r->tcp_resolver, tlen), 0);
	assert_int_equal(listen(r->f.tcp_fd, 64), 0); /* no connect waits on a full backlog */
	assert_int_equal(getsockname(r->f.tcp_fd, (struct sockaddr *)&r->tcp_resolver, &tlen), 0);
	assert_int_equal(pipe(r->stop), 0);
	r->f.stop_fd = r->stop[0];
	assert_int_equal(lms_allowlist_add(&r->allow, "*.example.net", NULL), 0);
	r->f.policy.allow = &r->allow;
	assert_int_equal(pthread_create(&r->thread, NULL, run, r), 0);
	*state = r;
	return 0;
}

static int
teardown(void **state)
{
	struct rig *r = *state;
	close(r->stop[1]);
	pthread_join(r->thread, NULL);
	close(r->stop[0]);
	close(r->client);
	close(r->upstream);
	close(r->spoofer);
	close(r->f.sandbox_fd);
	close(r->f.upstream_fd);
	close(r->f.tcp_fd);
	free(r);
	return 0;
}

static void
ask(struct rig *r, const char *name)
{
	uint8_t q[512];
	int n = res_mkquery(ns_o_query, name, ns_c_in, ns_t_a, NULL, 0, NULL, q, sizeof(q));
	assert_true(n > 0);
	assert_int_equal(sendto(r->client, q, (size_t)n, 0, (struct sockaddr *)&r->resolver, sizeof(r->resolver)), n);
}

/* Receives with a bound: a test that would hang fails instead. */
static ssize_t
recv_within(int fd, uint8_t *buf, size_t cap, int ms, struct sockaddr_in *from)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, ms) != 1)
		return -1;
	socklen_t len = sizeof(*from);
	return recvfrom(fd, buf, cap, 0, (struct sockaddr *)from, &len);
}

/* Answers the query waiting at the upstream, from the socket given, with one A record (or cut: TC).
 * Returns the EDNS0 size the forwarded query offered. */
static uint16_t
answer_as(struct rig *r, int from_fd, const char *addr, bool tc)
{
	uint8_t q[LMS_DNS_MSG_MAX], a[LMS_DNS_MSG_MAX];
	struct sockaddr_in forwarder;
	ssize_t n = recv_within(r->upstream, q, sizeof(q), 2000, &forwarder);
	assert_true(n > 0);
	struct lms_dns_question question;
	assert_int_equal(lms_dns_parse_query(q, (size_t)n, &question), 0);
	struct lms_dns_answer rec = {.ttl = 60};
	rec.addr.family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, addr, rec.addr.addr), 1);
	size_t len = lms_dns_write_answer(&question, 0, &rec, tc ? 0 : 1, a, sizeof(a));
	if (tc)
		lms_dns_set_tc(a, len);
	assert_int_equal(sendto(from_fd, a, len, 0, (struct sockaddr *)&forwarder, sizeof(forwarder)), (ssize_t)len);
	return question.edns_size;
}

static void
answer_from(struct rig *r, int from_fd, const char *addr)
{
	(void)answer_as(r, from_fd, addr, false);
}

static int
tcp_connect(struct rig *r)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&r->tcp_resolver, sizeof(r->tcp_resolver)), 0);
	return fd;
}

/* Writes the query for name, after its length, to a TCP connection; returns the query's id. */
static uint16_t
tcp_ask(int fd, const char *name)
{
	uint8_t q[2 + 512];
	int n = res_mkquery(ns_o_query, name, ns_c_in, ns_t_a, NULL, 0, NULL, q + 2, 512);
	assert_true(n > 0);
	q[0] = (uint8_t)(n >> 8);
	q[1] = (uint8_t)n;
	assert_int_equal(write(fd, q, (size_t)n + 2), n + 2);
	return (uint16_t)(q[2] << 8 | q[3]);
}

/* Reads one length-prefixed answer from a TCP connection, within 2 s. */
static ssize_t
tcp_answer(int fd, uint8_t *buf, size_t cap)
{
	size_t have = 0, want = 2;
	uint8_t len[2];
	while (have < want) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 2000) != 1)
			return -1;
		uint8_t *to = have < 2 ? len + have : buf + have - 2;
		ssize_t n = read(fd, to, have < 2 ? 2 - have : want - have);
		if (n <= 0)
			return -1;
		have += (size_t)n;
		if (have == 2) {
			want = 2 + (size_t)(len[0] << 8 | len[1]);
			assert_true(want - 2 <= cap);
		}
	}
	return (ssize_t)(want - 2);
}

static int
rcode_of(const uint8_t *msg, ssize_t n, int *answers)
{
	ns_msg m;
	assert_int_equal(ns_initparse(msg, (int)n, &m), 0);
	*answers = ns_msg_count(m, ns_s_an);
	return ns_msg_getflag(m, ns_f_rcode);
}

static void
test_answer_through_upstream_admits_first(void **state)
{
	struct rig *r = *state;
	ask(r, "pkg.example.net");
	answer_from(r, r->upstream, "198.18.0.5");
	uint8_t buf[LMS_DNS_MSG_MAX];
	struct sockaddr_in from;
	ssize_t n = recv_within(r->client, buf, sizeof(buf), 2000, &from);
	assert_true(n > 0);
	int answers;
	assert_int_equal(rcode_of(buf, n, &answers), 0);
	assert_int_equal(answers, 1);
	assert_int_equal(r->admitted_calls, 1);
	assert_false(r->answer_seen_before_admit);
	assert_int_equal(from.sin_port, r->resolver.sin_port); /* from the resolver address it asked */
}

static void
test_answer_from_another_address_is_not_taken(void **state)
{
	struct rig *r = *state;
	ask(r, "pkg.example.net");
	answer_from(r, r->spoofer, "198.18.0.6");
	uint8_t buf[LMS_DNS_MSG_MAX];
	struct sockaddr_in from;
	ssize_t n = recv_within(r->client, buf, sizeof(buf), 2000, &from);
	/* The spoofed answer was dropped; the query timed out into SERVFAIL. */
	assert_true(n > 0);
	int answers;
	assert_int_equal(rcode_of(buf, n, &answers), LMS_DNS_SERVFAIL);
	assert_int_equal(r->admitted_calls, 0);
}

static void
test_refused_name_never_reaches_upstream(void **state)
{
	struct rig *r = *state;
	ask(r, "evil.example.com");
	uint8_t buf[LMS_DNS_MSG_MAX];
	struct sockaddr_in from;
	ssize_t n = recv_within(r->client, buf, sizeof(buf), 2000, &from);
	assert_true(n > 0);
	int answers;
	assert_int_equal(rcode_of(buf, n, &answers), LMS_DNS_REFUSED);
	assert_int_equal(recv_within(r->upstream, buf, sizeof(buf), 0, &from), -1);
}

static void
test_forbidden_answer_is_refused_and_not_admitted(void **state)
{
	struct rig *r = *state;
	ask(r, "meta.example.net");
	answer_from(r, r->upstream, "169.254.169.254");
	uint8_t buf[LMS_DNS_MSG_MAX];
	struct sockaddr_in from;
	ssize_t n = recv_within(r->client, buf, sizeof(buf), 2000, &from);
	assert_true(n > 0);
	int answers;
	assert_int_equal(rcode_of(buf, n, &answers), LMS_DNS_REFUSED);
	assert_int_equal(r->admitted_calls, 0);
}

static void
test_tcp_several_queries_on_one_connection(void **state)
{
	struct rig *r = *state;
	int fd = tcp_connect(r);
	uint16_t first = tcp_ask(fd, "one.example.net");
	uint16_t second = tcp_ask(fd, "two.example.net");
	/* Asked upstream over UDP, offering what a TCP answer may hold. */
	assert_int_equal(answer_as(r, r->upstream, "198.18.0.7", false), LMS_DNS_TCP_MSG_MAX);
	assert_int_equal(answer_as(r, r->upstream, "198.18.0.8", false), LMS_DNS_TCP_MSG_MAX);
	uint8_t buf[LMS_DNS_TCP_MSG_MAX];
	uint16_t ids[2];
	for (int i = 0; i < 2; i++) {
		ssize_t n = tcp_answer(fd, buf, sizeof(buf));
		assert_true(n > 0);
		int answers;
		assert_int_equal(rcode_of(buf, n, &answers), 0);
		assert_int_equal(answers, 1);
		ids[i] = (uint16_t)(buf[0] << 8 | buf[1]);
	}
	assert_true((ids[0] == first && ids[1] == second) || (ids[0] == second && ids[1] == first));
	assert_int_equal(r->admitted_calls, 2);
	/* A refused name is answered over the connection too, without asking upstream. */
	tcp_ask(fd, "evil.example.com");
	ssize_t n = tcp_answer(fd, buf, sizeof(buf));
	int answers;
	assert_int_equal(rcode_of(buf, n, &answers), LMS_DNS_REFUSED);
	close(fd);
}

static void
test_a_cut_udp_answer_is_tc_and_the_tcp_retry_gets_it(void **state)
{
	struct rig *r = *state;
	ask(r, "big.example.net");
	assert_int_equal(answer_as(r, r->upstream, "198.18.0.9", true), LMS_DNS_MSG_MAX);
	uint8_t buf[LMS_DNS_TCP_MSG_MAX];
	struct sockaddr_in from;
	ssize_t n = recv_within(r->client, buf, sizeof(buf), 2000, &from);
	assert_true(n > 0);
	ns_msg m;
	assert_int_equal(ns_initparse(buf, (int)n, &m), 0);
	assert_int_equal(ns_msg_getflag(m, ns_f_tc), 1);
	assert_int_equal(r->admitted_calls, 0); /* nothing of a cut answer is admitted */
	int fd = tcp_connect(r);
	tcp_ask(fd, "big.example.net");
	answer_from(r, r->upstream, "198.18.0.9");
	n = tcp_answer(fd, buf, sizeof(buf));
	assert_true(n > 0);
	int answers;
	assert_int_equal(rcode_of(buf, n, &answers), 0);
	assert_int_equal(answers, 1);
	assert_int_equal(r->admitted_calls, 1);
	close(fd);
}

static void
test_a_stalled_tcp_client_delays_nobody(void **state)
{
	struct rig *r = *state;
	int stalled[LMS_DNS_TCP_CONNS_MAX];
	/* Every place taken by a client that sent one byte of a length and stopped. */
	for (int i = 0; i < LMS_DNS_TCP_CONNS_MAX; i++) {
		stalled[i] = tcp_connect(r);
		assert_int_equal(write(stalled[i], "\0", 1), 1);
	}
	/* A UDP client is answered... */
	ask(r, "udp.example.net");
	answer_from(r, r->upstream, "198.18.0.10");
	uint8_t buf[LMS_DNS_TCP_MSG_MAX];
	struct sockaddr_in from;
	ssize_t n = recv_within(r->client, buf, sizeof(buf), 2000, &from);
	int answers;
	assert_true(n > 0);
	assert_int_equal(rcode_of(buf, n, &answers), 0);
	/* ...and so is a further TCP client, which takes the place of the one idle longest. */
	int fd = tcp_connect(r);
	tcp_ask(fd, "tcp.example.net");
	answer_from(r, r->upstream, "198.18.0.11");
	n = tcp_answer(fd, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(rcode_of(buf, n, &answers), 0);
	close(fd);
	for (int i = 0; i < LMS_DNS_TCP_CONNS_MAX; i++)
		close(stalled[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_answer_through_upstream_admits_first, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_answer_from_another_address_is_not_taken, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refused_name_never_reaches_upstream, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_forbidden_answer_is_refused_and_not_admitted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tcp_several_queries_on_one_connection, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_cut_udp_answer_is_tc_and_the_tcp_retry_gets_it, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_stalled_tcp_client_delays_nobody, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
