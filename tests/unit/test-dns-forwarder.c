/*
 * The sandbox's DNS forwarder loop (net/dns-forwarder.c) over real UDP sockets on loopback: a glibc
 * query is answered through the upstream, the admitted addresses are handed over before the answer
 * leaves, an answer from another address than the upstream's is not taken (a sandbox cannot answer
 * itself), an upstream that never answers gives SERVFAIL, and a refused name never reaches upstream.
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

struct rig {
	struct lms_dns_forwarder f;
	int client, upstream, spoofer, stop[2];
	struct sockaddr_in resolver; /* where the client sends */
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

/* Answers the query waiting at the upstream, from the socket given, with one A record. */
static void
answer_from(struct rig *r, int from_fd, const char *addr)
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
	size_t len = lms_dns_write_answer(&question, 0, &rec, 1, a, sizeof(a));
	assert_int_equal(sendto(from_fd, a, len, 0, (struct sockaddr *)&forwarder, sizeof(forwarder)), (ssize_t)len);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_answer_through_upstream_admits_first, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_answer_from_another_address_is_not_taken, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refused_name_never_reaches_upstream, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_forbidden_answer_is_refused_and_not_admitted, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
