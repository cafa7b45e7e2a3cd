/*
 * DNS over TCP and EDNS0 in the sandbox's forwarder (net/dns-tcp.c, net/dns-msg.c, net/dns-filter.c):
 * a connection's framing reads one length-prefixed message at a time and never past it, takes a next
 * query only while its answers are sure to fit, and refuses to queue what does not; a query's EDNS0
 * size is read, the forwarded query offers the size asked for, an answer longer than a UDP client takes
 * becomes a TC answer it parses with glibc's ns_initparse, and an upstream's TC answer reaches the
 * sandbox as TC with no address admitted.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <resolv.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/dns-filter.h"
#include "net/dns-msg.h"
#include "net/dns-tcp.h"

static size_t
glibc_query(const char *name, int type, uint8_t *buf, size_t cap)
{
	int n = res_mkquery(ns_o_query, name, ns_c_in, type, NULL, 0, NULL, buf, (int)cap);
	assert_true(n > 0);
	return (size_t)n;
}

/* glibc's query with an EDNS0 OPT record offering size appended (as `options edns0` makes it). */
static size_t
edns_query(const char *name, uint16_t size, uint8_t *buf, size_t cap)
{
	size_t n = glibc_query(name, ns_t_a, buf, cap);
	const uint8_t opt[] = {0, 0, 41, (uint8_t)(size >> 8), (uint8_t)size, 0, 0, 0, 0, 0, 0};
	memcpy(buf + n, opt, sizeof(opt));
	buf[11] = 1;
	return n + sizeof(opt);
}

static void
feed(struct lms_dns_tcp_conn *c, const uint8_t *bytes, size_t n)
{
	assert_true(n <= lms_dns_tcp_need(c));
	memcpy(c->in + c->in_len, bytes, n);
	c->in_len += n;
}

static void
test_framing_reads_one_whole_message_and_never_past_it(void **state)
{
	(void)state;
	struct lms_dns_tcp_conn *c = calloc(1, sizeof(*c));
	uint8_t q[512];
	size_t qlen = glibc_query("a.example.net", ns_t_a, q, sizeof(q)), len;
	uint8_t prefix[2] = {(uint8_t)(qlen >> 8), (uint8_t)qlen};
	assert_true(lms_dns_tcp_may_read(c));
	assert_int_equal(lms_dns_tcp_need(c), 2);
	feed(c, prefix, 1); /* the length itself may come a byte at a time */
	assert_int_equal(lms_dns_tcp_need(c), 1);
	assert_null(lms_dns_tcp_message(c, &len));
	feed(c, prefix + 1, 1);
	assert_int_equal(lms_dns_tcp_need(c), qlen);
	feed(c, q, qlen - 1);
	assert_null(lms_dns_tcp_message(c, &len)); /* read whole before acted on */
	assert_true(lms_dns_tcp_may_read(c));
	feed(c, q + qlen - 1, 1);
	assert_int_equal(lms_dns_tcp_need(c), 0); /* not a byte of the next one */
	assert_false(lms_dns_tcp_may_read(c));
	const uint8_t *msg = lms_dns_tcp_message(c, &len);
	assert_non_null(msg);
	assert_int_equal(len, qlen);
	assert_memory_equal(msg, q, qlen);
	struct lms_dns_question back;
	assert_int_equal(lms_dns_parse_query(msg, len, &back), 0);
	assert_string_equal(back.name, "a.example.net");
	/* The largest length there is; and zero, which is complete and empty (the caller closes). */
	c->in_len = 0;
	feed(c, (const uint8_t[]){0xff, 0xff}, 2);
	assert_int_equal(lms_dns_tcp_need(c), 65535);
	c->in_len = 0;
	feed(c, (const uint8_t[]){0, 0}, 2);
	assert_non_null(lms_dns_tcp_message(c, &len));
	assert_int_equal(len, 0);
	free(c);
}

static void
test_a_connection_that_does_not_read_stops_being_read(void **state)
{
	(void)state;
	struct lms_dns_tcp_conn *c = calloc(1, sizeof(*c));
	static uint8_t answer[LMS_DNS_TCP_MSG_MAX];
	/* Each query waiting keeps room for its answer; the pipeline's worth is all it may have. */
	for (unsigned i = 0; i < LMS_DNS_TCP_PIPELINE; i++) {
		assert_true(lms_dns_tcp_may_read(c));
		c->waiting++;
	}
	assert_false(lms_dns_tcp_may_read(c));
	for (unsigned i = 0; i < LMS_DNS_TCP_PIPELINE; i++) {
		assert_int_equal(lms_dns_tcp_queue(c, answer, sizeof(answer)), 0);
		c->waiting--;
	}
	/* All answered, none read by the client: still nothing more is read, and nothing more fits. */
	assert_false(lms_dns_tcp_may_read(c));
	assert_int_equal(lms_dns_tcp_queue(c, answer, 1), -1);
	assert_int_equal(c->out[0] << 8 | c->out[1], LMS_DNS_TCP_MSG_MAX);
	lms_dns_tcp_written(c, 2 + LMS_DNS_TCP_MSG_MAX);
	assert_true(lms_dns_tcp_may_read(c));
	assert_int_equal(c->out_len, (LMS_DNS_TCP_PIPELINE - 1) * (2 + LMS_DNS_TCP_MSG_MAX));
	/* Longer than any answer relayed over TCP: refused whatever the room. */
	c->out_len = 0;
	static uint8_t big[LMS_DNS_TCP_MSG_MAX + 1];
	assert_int_equal(lms_dns_tcp_queue(c, big, sizeof(big)), -1);
	assert_int_equal(c->out_len, 0);
	c->eof = true;
	assert_false(lms_dns_tcp_may_read(c));
	free(c);
}

static void
test_edns_size_is_read_and_the_forwarded_query_offers_its_own(void **state)
{
	(void)state;
	uint8_t q[512], out[LMS_DNS_MSG_MAX];
	struct lms_dns_question back;
	size_t qlen = glibc_query("plain.example", ns_t_a, q, sizeof(q)), olen;
	assert_int_equal(lms_dns_parse_query(q, qlen, &back), 0);
	assert_int_equal(back.edns_size, 0);
	assert_int_equal(lms_dns_udp_max(&back), LMS_DNS_UDP_PLAIN);
	qlen = edns_query("big.example", 65000, q, sizeof(q));
	assert_int_equal(lms_dns_parse_query(q, qlen, &back), 0);
	assert_int_equal(back.edns_size, 65000);
	assert_int_equal(lms_dns_udp_max(&back), LMS_DNS_MSG_MAX); /* no more than it ever reads upstream */
	qlen = edns_query("small.example", 100, q, sizeof(q));
	assert_int_equal(lms_dns_parse_query(q, qlen, &back), 0);
	assert_int_equal(lms_dns_udp_max(&back), LMS_DNS_UDP_PLAIN); /* RFC 6891: below 512 counts as 512 */
	/* A TCP client's query goes upstream offering LMS_DNS_TCP_MSG_MAX, whatever the client offered. */
	static const struct lms_dns_policy open = {0};
	struct lms_dns_pending p;
	assert_int_equal(lms_dns_filter_query(&open, q, qlen, 5, LMS_DNS_TCP_MSG_MAX, &p, out, sizeof(out), &olen),
			 LMS_DNS_FORWARD);
	assert_int_equal(lms_dns_parse_query(out, olen, &back), 0);
	assert_int_equal(back.edns_size, LMS_DNS_TCP_MSG_MAX);
	ns_msg m;
	assert_int_equal(ns_initparse(out, (int)olen, &m), 0);
	assert_int_equal(ns_msg_count(m, ns_s_ar), 1);
}

/* An answer with n A records under name, for the sandbox as the forwarder writes it. */
static size_t
many_records(const char *name, size_t n, uint8_t *out, size_t cap)
{
	struct lms_dns_question q = {.id = 3, .rd = true, .has_question = true, .qtype = 1, .qclass = 1};
	size_t name_len = strlen(name);
	assert_true(name_len < sizeof(q.name));
	memcpy(q.name, name, name_len + 1);
	struct lms_dns_answer a[LMS_DNS_ANSWERS_MAX] = {0};
	for (size_t i = 0; i < n; i++) {
		a[i].addr.family = AF_INET;
		a[i].addr.addr[0] = 198;
		a[i].addr.addr[1] = 18;
		a[i].addr.addr[3] = (uint8_t)i;
		a[i].ttl = 60;
	}
	size_t len = lms_dns_write_answer(&q, 0, a, n, out, cap);
	assert_true(len > 0);
	return len;
}

static void
test_an_answer_longer_than_a_udp_client_takes_is_cut_to_tc(void **state)
{
	(void)state;
	uint8_t out[LMS_DNS_MSG_MAX];
	char label[61], name[256];
	memset(label, 'x', 60);
	label[60] = '\0';
	snprintf(name, sizeof(name), "%s.%s.%s.%s.example", label, label, label, label);
	size_t len = many_records(name, LMS_DNS_ANSWERS_MAX, out, sizeof(out));
	assert_true(len > LMS_DNS_UDP_PLAIN);
	assert_int_equal(lms_dns_truncate(out, len, LMS_DNS_MSG_MAX), len); /* fits: untouched */
	size_t cut = lms_dns_truncate(out, len, LMS_DNS_UDP_PLAIN);
	assert_true(cut <= LMS_DNS_UDP_PLAIN);
	ns_msg m;
	assert_int_equal(ns_initparse(out, (int)cut, &m), 0);
	assert_int_equal(ns_msg_getflag(m, ns_f_tc), 1);
	assert_int_equal(ns_msg_count(m, ns_s_qd), 1);
	assert_int_equal(ns_msg_count(m, ns_s_an), 0);
	assert_int_equal(ns_msg_id(m), 3);
}

static void
test_an_upstream_tc_answer_reaches_the_sandbox_as_tc_admitting_nothing(void **state)
{
	(void)state;
	static const struct lms_dns_policy open = {0};
	uint8_t q[512], fwd[LMS_DNS_MSG_MAX], up[LMS_DNS_MSG_MAX], out[LMS_DNS_MSG_MAX];
	size_t qlen = glibc_query("many.example", ns_t_a, q, sizeof(q)), flen, olen;
	struct lms_dns_pending p;
	assert_int_equal(lms_dns_filter_query(&open, q, qlen, 77, LMS_DNS_MSG_MAX, &p, fwd, sizeof(fwd), &flen),
			 LMS_DNS_FORWARD);
	/* The upstream's answer under its id, cut after a forbidden address: TC, and nothing of it used. */
	size_t ulen = many_records("many.example", 3, up, sizeof(up));
	lms_dns_set_id(up, ulen, 77);
	lms_dns_set_tc(up, ulen);
	up[ulen - 4] = 127;
	ulen -= 2;
	struct lms_dns_answer admitted[LMS_DNS_ANSWERS_MAX];
	size_t n;
	const char *why;
	assert_int_equal(lms_dns_filter_answer(&open, &p, up, ulen, out, sizeof(out), &olen, admitted, &n, &why), 0);
	assert_int_equal(n, 0);
	ns_msg m;
	assert_int_equal(ns_initparse(out, (int)olen, &m), 0);
	assert_int_equal(ns_msg_getflag(m, ns_f_tc), 1);
	assert_int_equal(ns_msg_count(m, ns_s_an), 0);
	assert_int_equal(ns_msg_id(m), p.q.id);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_framing_reads_one_whole_message_and_never_past_it),
	    cmocka_unit_test(test_a_connection_that_does_not_read_stops_being_read),
	    cmocka_unit_test(test_edns_size_is_read_and_the_forwarded_query_offers_its_own),
	    cmocka_unit_test(test_an_answer_longer_than_a_udp_client_takes_is_cut_to_tc),
	    cmocka_unit_test(test_an_upstream_tc_answer_reaches_the_sandbox_as_tc_admitting_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
