/*
 * The DNS forwarder's policy and wire format (net/allowlist.c, net/dns-msg.c, net/dns-filter.c): a
 * query as glibc's resolver writes it (res_mkquery) is read, names outside an allowlist are refused
 * without asking upstream, an answer naming a forbidden address is refused whole, a CNAME chain's
 * records are kept, and hostile messages (pointer loops, lengths past the end, a reply to another
 * question) never become an answer.
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

#include "net/allowlist.h"
#include "net/dns-filter.h"
#include "net/dns-msg.h"

static struct lms_allowlist *
allowlist(const char *const *entries, size_t n)
{
	struct lms_allowlist *list = calloc(1, sizeof(*list));
	for (size_t i = 0; i < n; i++) {
		struct lms_error *err = NULL;
		if (lms_allowlist_add(list, entries[i], &err) < 0)
			fail_msg("%s: %s", entries[i], err->message);
	}
	return list;
}

static void
test_allowlist_names_and_wildcards(void **state)
{
	(void)state;
	const char *entries[] = {"github.com", "*.example.org", "203.0.113.0/24", "2001:db8::/32"};
	struct lms_allowlist *list = allowlist(entries, 4);
	assert_int_equal(list->n_names, 2);
	assert_int_equal(list->n_ranges, 2);
	assert_true(lms_allowlist_admits_name(list, "github.com"));
	assert_true(lms_allowlist_admits_name(list, "GitHub.COM."));
	assert_false(lms_allowlist_admits_name(list, "api.github.com"));
	assert_false(lms_allowlist_admits_name(list, "evilgithub.com"));
	assert_true(lms_allowlist_admits_name(list, "a.example.org"));
	assert_true(lms_allowlist_admits_name(list, "b.a.example.org"));
	assert_false(lms_allowlist_admits_name(list, "example.org"));
	assert_false(lms_allowlist_admits_name(list, "badexample.org"));
	assert_false(lms_allowlist_admits_name(list, "example.org.evil.net"));
	struct lms_net_addr in, out;
	assert_int_equal(lms_net_addr_parse("203.0.113.77", &in, NULL), 0);
	assert_int_equal(lms_net_addr_parse("203.0.114.1", &out, NULL), 0);
	assert_true(lms_allowlist_admits_addr(list, &in));
	assert_false(lms_allowlist_admits_addr(list, &out));
	free(list);
}

static void
test_allowlist_refuses_what_is_neither_name_nor_range(void **state)
{
	(void)state;
	const char *bad[] = {"",
			     "*",
			     "*.",
			     "a..b",
			     "-a.com",
			     "a-.com",
			     "exa mple.com",
			     "1.2.3",
			     "10.0.0.1/8",
			     "*.*.com",
			     "a.*.com",
			     "http://github.com",
			     "github.com:443"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct lms_allowlist list = {0};
		struct lms_error *err = NULL;
		if (lms_allowlist_add(&list, bad[i], &err) == 0)
			fail_msg("'%s' was accepted", bad[i]);
		assert_int_equal(err->kind, LMS_ERR_INVALID);
		lms_error_free(err);
	}
}

/* A query for name/type as glibc writes it. */
static size_t
glibc_query(const char *name, int type, uint8_t *buf, size_t cap)
{
	int n = res_mkquery(ns_o_query, name, ns_c_in, type, NULL, 0, NULL, buf, (int)cap);
	assert_true(n > 0);
	return (size_t)n;
}

static const struct lms_dns_policy open_policy = {0};

static void
test_glibc_query_is_forwarded_with_a_fresh_id(void **state)
{
	(void)state;
	uint8_t q[LMS_DNS_MSG_MAX], out[LMS_DNS_MSG_MAX];
	size_t qlen = glibc_query("Deb.Example.Net", ns_t_a, q, sizeof(q)), olen;
	struct lms_dns_pending p;
	assert_int_equal(
	    lms_dns_filter_query(&open_policy, q, qlen, 0x4242, LMS_DNS_MSG_MAX, &p, out, sizeof(out), &olen),
	    LMS_DNS_FORWARD);
	assert_string_equal(p.q.name, "Deb.Example.Net");
	assert_int_equal(p.q.qtype, LMS_DNS_TYPE_A);
	assert_int_equal(out[0] << 8 | out[1], 0x4242);
	/* The forwarded query is itself a query this module reads back the same. */
	struct lms_dns_question back;
	assert_int_equal(lms_dns_parse_query(out, olen, &back), 0);
	assert_string_equal(back.name, "Deb.Example.Net");
}

/* An answer to pending with the given records, built as a resolver would: a CNAME first (its target
 * compressed against the question), then A records under the target. */
static size_t
upstream_answer(const struct lms_dns_pending *p, int rcode, const char *const *addrs, size_t n, uint8_t *out)
{
	struct lms_dns_question q = p->q;
	q.id = p->upstream_id;
	size_t len = lms_dns_write_answer(&q, rcode, NULL, 0, out, LMS_DNS_MSG_MAX);
	/* CNAME: name = pointer to the question, rdata = "cdn" + pointer to the question. */
	static const uint8_t cname[] = {0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, 'c', 'd', 'n', 0xc0, 12};
	memcpy(out + len, cname, sizeof(cname));
	size_t target = len + 12;
	len += sizeof(cname);
	for (size_t i = 0; i < n; i++) {
		uint8_t rr[12 + 16] = {0xc0 | (uint8_t)(target >> 8), (uint8_t)target, 0, 0, 0, 1, 0, 0, 0x0e, 0x10};
		int v6 = strchr(addrs[i], ':') != NULL;
		rr[3] = v6 ? 28 : 1;
		rr[11] = v6 ? 16 : 4;
		assert_int_equal(inet_pton(v6 ? AF_INET6 : AF_INET, addrs[i], rr + 12), 1);
		memcpy(out + len, rr, 12 + (v6 ? 16 : 4));
		len += 12 + (v6 ? 16 : 4);
	}
	out[6] = 0;
	out[7] = (uint8_t)(n + 1);
	return len;
}

static int
filter_answer(const struct lms_dns_policy *policy, const char *name, const char *const *addrs, size_t n,
	      struct lms_dns_answer *admitted, size_t *n_admitted, int *rcode, const char **why)
{
	uint8_t q[LMS_DNS_MSG_MAX], fwd[LMS_DNS_MSG_MAX], up[LMS_DNS_MSG_MAX], out[LMS_DNS_MSG_MAX];
	size_t qlen = glibc_query(name, ns_t_a, q, sizeof(q)), flen, olen;
	struct lms_dns_pending p;
	assert_int_equal(lms_dns_filter_query(policy, q, qlen, 7, LMS_DNS_MSG_MAX, &p, fwd, sizeof(fwd), &flen),
			 LMS_DNS_FORWARD);
	size_t ulen = upstream_answer(&p, 0, addrs, n, up);
	int r = lms_dns_filter_answer(policy, &p, up, ulen, out, sizeof(out), &olen, admitted, n_admitted, why);
	if (r < 0)
		return r;
	/* What the sandbox gets parses with glibc's own parser, under the id and question it asked. */
	ns_msg msg;
	assert_int_equal(ns_initparse(out, (int)olen, &msg), 0);
	assert_int_equal(ns_msg_id(msg), q[0] << 8 | q[1]);
	*rcode = ns_msg_getflag(msg, ns_f_rcode);
	assert_int_equal(ns_msg_count(msg, ns_s_an), *n_admitted);
	return 0;
}

static void
test_cname_chain_answer_is_flattened_and_admitted(void **state)
{
	(void)state;
	const char *addrs[] = {"198.18.0.10", "198.18.0.11"};
	struct lms_dns_answer admitted[LMS_DNS_ANSWERS_MAX];
	size_t n;
	int rcode;
	const char *why;
	assert_int_equal(filter_answer(&open_policy, "www.example.net", addrs, 2, admitted, &n, &rcode, &why), 0);
	assert_int_equal(rcode, 0);
	assert_int_equal(n, 2);
	assert_null(why);
	char text[INET6_ADDRSTRLEN];
	assert_non_null(inet_ntop(AF_INET, admitted[1].addr.addr, text, sizeof(text)));
	assert_string_equal(text, "198.18.0.11");
	assert_int_equal(admitted[0].ttl, 3600); /* the sandbox's copy is capped; the record says 3600 */
}

static void
test_a_name_resolving_to_a_forbidden_address_is_refused_whole(void **state)
{
	(void)state;
	const char *cases[][2] = {{"198.18.0.10", "127.0.0.1"},
				  {"198.18.0.10", "169.254.169.254"},
				  {"10.1.2.3", "198.18.0.10"},
				  {"198.18.0.10", "192.168.1.1"}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lms_dns_answer admitted[LMS_DNS_ANSWERS_MAX];
		size_t n;
		int rcode;
		const char *why;
		assert_int_equal(
		    filter_answer(&open_policy, "rebind.example.net", cases[i], 2, admitted, &n, &rcode, &why), 0);
		assert_int_equal(rcode, LMS_DNS_REFUSED);
		assert_int_equal(n, 0);
		assert_non_null(why);
	}
	/* --network-allow-private lifts its range, and only it. */
	struct lms_cidr lift;
	assert_int_equal(lms_cidr_parse("10.1.0.0/16", &lift, NULL), 0);
	struct lms_dns_policy p = {.allowed_private = &lift, .n_allowed_private = 1};
	const char *ok[] = {"10.1.2.3"};
	struct lms_dns_answer admitted[LMS_DNS_ANSWERS_MAX];
	size_t n;
	int rcode;
	const char *why;
	assert_int_equal(filter_answer(&p, "db.example.net", ok, 1, admitted, &n, &rcode, &why), 0);
	assert_int_equal(rcode, 0);
	assert_int_equal(n, 1);
	/* The host's own address is refused even inside a lifted range. */
	struct lms_net_addr host;
	assert_int_equal(lms_net_addr_parse("10.1.2.3", &host, NULL), 0);
	p.host = &host;
	p.n_host = 1;
	assert_int_equal(filter_answer(&p, "db.example.net", ok, 1, admitted, &n, &rcode, &why), 0);
	assert_int_equal(rcode, LMS_DNS_REFUSED);
}

static void
test_allowlist_refuses_other_names_without_asking(void **state)
{
	(void)state;
	const char *entries[] = {"*.debian.org"};
	struct lms_allowlist *list = allowlist(entries, 1);
	struct lms_dns_policy p = {.allow = list};
	uint8_t q[LMS_DNS_MSG_MAX], out[LMS_DNS_MSG_MAX];
	struct lms_dns_pending pending;
	size_t olen, qlen = glibc_query("evil.example.com", ns_t_aaaa, q, sizeof(q));
	assert_int_equal(lms_dns_filter_query(&p, q, qlen, 9, LMS_DNS_MSG_MAX, &pending, out, sizeof(out), &olen),
			 LMS_DNS_REPLY);
	ns_msg msg;
	assert_int_equal(ns_initparse(out, (int)olen, &msg), 0);
	assert_int_equal(ns_msg_getflag(msg, ns_f_rcode), LMS_DNS_REFUSED);
	qlen = glibc_query("deb.debian.org", ns_t_aaaa, q, sizeof(q));
	assert_int_equal(lms_dns_filter_query(&p, q, qlen, 9, LMS_DNS_MSG_MAX, &pending, out, sizeof(out), &olen),
			 LMS_DNS_FORWARD);
	free(list);
}

static void
test_an_answer_to_another_question_is_ignored(void **state)
{
	(void)state;
	uint8_t q[LMS_DNS_MSG_MAX], fwd[LMS_DNS_MSG_MAX], up[LMS_DNS_MSG_MAX], out[LMS_DNS_MSG_MAX];
	size_t qlen = glibc_query("a.example.net", ns_t_a, q, sizeof(q)), flen, olen, n;
	struct lms_dns_pending p, other;
	assert_int_equal(lms_dns_filter_query(&open_policy, q, qlen, 77, LMS_DNS_MSG_MAX, &p, fwd, sizeof(fwd), &flen),
			 LMS_DNS_FORWARD);
	other = p;
	snprintf(other.q.name, sizeof(other.q.name), "b.example.net");
	const char *addrs[] = {"198.18.0.1"};
	struct lms_dns_answer admitted[LMS_DNS_ANSWERS_MAX];
	const char *why;
	size_t ulen = upstream_answer(&other, 0, addrs, 1, up);
	assert_int_equal(lms_dns_filter_answer(&open_policy, &p, up, ulen, out, sizeof(out), &olen, admitted, &n, &why),
			 -1);
	ulen = upstream_answer(&p, 0, addrs, 1, up);
	up[1] ^= 1; /* another id */
	assert_int_equal(lms_dns_filter_answer(&open_policy, &p, up, ulen, out, sizeof(out), &olen, admitted, &n, &why),
			 -1);
}

static void
test_hostile_messages(void **state)
{
	(void)state;
	struct lms_dns_question q;
	/* A query whose name is a pointer (none are allowed in a query), to itself. */
	static const uint8_t loop[] = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1};
	assert_int_equal(lms_dns_parse_query(loop, sizeof(loop), &q), LMS_DNS_FORMERR);
	/* A label longer than the message. */
	static const uint8_t past[] = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 60, 'a', 'b'};
	assert_int_equal(lms_dns_parse_query(past, sizeof(past), &q), LMS_DNS_FORMERR);
	/* A label with a dot or a NUL in it is not a host name. */
	static const uint8_t dot[] = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'a', '.', 'b', 0, 0, 1, 0, 1};
	assert_int_equal(lms_dns_parse_query(dot, sizeof(dot), &q), LMS_DNS_FORMERR);
	/* Two questions; an answer instead of a query; less than a header. */
	static const uint8_t two[] = {0, 1, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 'a', 0, 0, 1, 0, 1};
	assert_int_equal(lms_dns_parse_query(two, sizeof(two), &q), LMS_DNS_FORMERR);
	static const uint8_t answer[] = {0, 1, 0x81, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0, 0, 1, 0, 1};
	assert_int_equal(lms_dns_parse_query(answer, sizeof(answer), &q), -1);
	assert_int_equal(lms_dns_parse_query(answer, 5, &q), -1);
	/* An upstream answer whose record points forward into itself, and one whose rdata runs past the end. */
	struct lms_dns_question a = {.id = 1, .has_question = true, .qtype = 1, .qclass = 1};
	snprintf(a.name, sizeof(a.name), "a");
	static const uint8_t fwd_ptr[] = {0, 1,	   0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 1, 'a', 0, 0, 1, 0,
					  1, 0xc0, 30,	 0,    1, 0, 1, 0, 0, 0, 0, 0, 4, 1,   2, 3, 4};
	int rcode;
	bool tc;
	struct lms_dns_answer out[4];
	size_t n;
	assert_int_equal(lms_dns_parse_answer(fwd_ptr, sizeof(fwd_ptr), 1, &a, &rcode, &tc, out, 4, &n), -1);
	static const uint8_t short_rdata[] = {0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 1, 'a', 0, 0, 1,
					      0, 1, 0xc0, 12,	0, 1, 0, 1, 0, 0, 0, 0, 0, 4,	1, 2};
	assert_int_equal(lms_dns_parse_answer(short_rdata, sizeof(short_rdata), 1, &a, &rcode, &tc, out, 4, &n), -1);
	/* Truncated (TC), with a record cut short: taken as the answer, TC said, no record read. */
	static const uint8_t cut[] = {0, 1, 0x83, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 1, 'a', 0, 0, 1, 0, 1, 0xc0, 12, 0};
	assert_int_equal(lms_dns_parse_answer(cut, sizeof(cut), 1, &a, &rcode, &tc, out, 4, &n), 0);
	assert_true(tc);
	assert_int_equal(n, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_allowlist_names_and_wildcards),
	    cmocka_unit_test(test_allowlist_refuses_what_is_neither_name_nor_range),
	    cmocka_unit_test(test_glibc_query_is_forwarded_with_a_fresh_id),
	    cmocka_unit_test(test_cname_chain_answer_is_flattened_and_admitted),
	    cmocka_unit_test(test_a_name_resolving_to_a_forbidden_address_is_refused_whole),
	    cmocka_unit_test(test_allowlist_refuses_other_names_without_asking),
	    cmocka_unit_test(test_an_answer_to_another_question_is_ignored),
	    cmocka_unit_test(test_hostile_messages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
