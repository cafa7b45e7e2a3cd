/*
 * Address ranges (net/cidr.c) and the addresses no sandbox reaches (net/forbidden.c): what a range
 * admits at its edges, what spelling cannot sidestep (IPv4-mapped IPv6), what --network-allow-private
 * lifts and what it cannot.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/cidr.h"
#include "net/forbidden.h"

static struct lms_net_addr
addr(const char *text)
{
	struct lms_net_addr a;
	assert_int_equal(lms_net_addr_parse(text, &a, NULL), 0);
	return a;
}

static struct lms_cidr
range(const char *text)
{
	struct lms_cidr c;
	struct lms_error *err = NULL;
	int r = lms_cidr_parse(text, &c, &err);
	if (r < 0)
		fail_msg("%s: %s", text, err->message);
	return c;
}

static bool
in(const char *cidr, const char *a)
{
	struct lms_cidr c = range(cidr);
	struct lms_net_addr x = addr(a);
	return lms_cidr_contains(&c, &x);
}

static void
test_range_edges(void **state)
{
	(void)state;
	assert_true(in("172.16.0.0/12", "172.16.0.0"));
	assert_true(in("172.16.0.0/12", "172.31.255.255"));
	assert_false(in("172.16.0.0/12", "172.32.0.0"));
	assert_false(in("172.16.0.0/12", "172.15.255.255"));
	assert_true(in("0.0.0.0/0", "203.0.113.9"));
	assert_false(in("0.0.0.0/0", "2001:db8::1"));
	assert_true(in("203.0.113.7", "203.0.113.7"));
	assert_false(in("203.0.113.7", "203.0.113.8"));
	assert_true(in("fc00::/7", "fdab::1"));
	assert_false(in("fc00::/7", "fe00::1"));
	assert_true(in("2001:db8::/32", "2001:db8:ffff::1"));
}

static void
test_mapped_ipv6_is_judged_as_ipv4(void **state)
{
	(void)state;
	assert_true(in("127.0.0.0/8", "::ffff:127.0.0.1"));
	assert_true(in("10.0.0.0/8", "::ffff:10.1.2.3"));
	assert_false(in("10.0.0.0/8", "::ffff:11.1.2.3"));
}

static void
test_bad_ranges_are_refused_with_a_reason(void **state)
{
	(void)state;
	const char *bad[] = {"",
			     "10.0.0.0/33",
			     "10.0.0.1/8",
			     "fc00::/129",
			     "10.0.0.0/",
			     "10.0.0.0/08",
			     "10.0.0.0/-1",
			     "example.com/8",
			     "10.0.0.0/8/8",
			     "1.2.3.4:80"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct lms_cidr c;
		struct lms_error *err = NULL;
		assert_int_equal(lms_cidr_parse(bad[i], &c, &err), -1);
		assert_non_null(err);
		assert_int_equal(err->kind, LMS_ERR_INVALID);
		lms_error_free(err);
	}
}

static void
test_format_round_trips(void **state)
{
	(void)state;
	const char *texts[] = {"10.0.0.0/8", "fc00::/7", "203.0.113.7/32", "::/0"};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct lms_cidr c = range(texts[i]);
		char buf[LMS_CIDR_TEXT_MAX];
		lms_cidr_format(&c, buf, sizeof(buf));
		assert_string_equal(buf, texts[i]);
	}
}

static const char *
why(const char *a, const char *lift)
{
	struct lms_net_addr x = addr(a);
	struct lms_cidr allowed;
	if (lift)
		allowed = range(lift);
	return lms_net_forbidden_why(&x, lift ? &allowed : NULL, lift ? 1 : 0, NULL, 0);
}

static void
test_forbidden_table(void **state)
{
	(void)state;
	size_t n;
	lms_net_forbidden_cidrs(&n);
	assert_true(n >= 10);
	const char *forbidden[] = {"127.0.0.1",
				   "127.255.255.254",
				   "0.0.0.0",
				   "169.254.169.254",
				   "10.0.0.1",
				   "172.17.0.1",
				   "192.168.1.1",
				   "100.64.0.1",
				   "224.0.0.251",
				   "255.255.255.255",
				   "::1",
				   "::",
				   "fe80::1",
				   "fd00::1",
				   "ff02::1",
				   "::ffff:127.0.0.1",
				   "::ffff:169.254.169.254"};
	for (size_t i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++)
		assert_non_null(why(forbidden[i], NULL));
	/* The test internet of the system tests (198.18.0.0/15) and ordinary public addresses are not. */
	const char *open[] = {"198.18.0.1", "203.0.113.5", "8.8.8.8", "2001:db8::1", "172.32.0.1"};
	for (size_t i = 0; i < sizeof(open) / sizeof(open[0]); i++)
		assert_null(why(open[i], NULL));
}

static void
test_allow_private_lifts_only_private_ranges(void **state)
{
	(void)state;
	assert_null(why("10.1.2.3", "10.1.0.0/16"));
	assert_non_null(why("10.2.0.1", "10.1.0.0/16"));
	assert_null(why("fd00::5", "fd00::/8"));
	/* A range that covers loopback or link-local lifts nothing there. */
	assert_non_null(why("127.0.0.1", "0.0.0.0/0"));
	assert_non_null(why("169.254.169.254", "0.0.0.0/0"));
	assert_non_null(why("::1", "::/0"));
}

static void
test_host_addresses_are_forbidden_whatever_is_lifted(void **state)
{
	(void)state;
	struct lms_net_addr host[] = {addr("203.0.113.5"), addr("10.1.2.3")};
	struct lms_cidr all = range("10.0.0.0/8");
	struct lms_net_addr a = addr("203.0.113.5"), b = addr("10.1.2.3"), c = addr("::ffff:203.0.113.5");
	assert_non_null(lms_net_forbidden_why(&a, &all, 1, host, 2));
	assert_non_null(lms_net_forbidden_why(&b, &all, 1, host, 2));
	assert_non_null(lms_net_forbidden_why(&c, &all, 1, host, 2));
	struct lms_net_addr *mine;
	size_t n;
	assert_int_equal(lms_net_host_addrs(&mine, &n, NULL), 0);
	bool loopback = false;
	for (size_t i = 0; i < n; i++) {
		struct lms_net_addr lo = addr("127.0.0.1");
		loopback |= mine[i].family == lo.family && memcmp(mine[i].addr, lo.addr, 4) == 0;
	}
	assert_true(loopback); /* every Linux host has lo up with 127.0.0.1 */
	free(mine);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_range_edges),
	    cmocka_unit_test(test_mapped_ipv6_is_judged_as_ipv4),
	    cmocka_unit_test(test_bad_ranges_are_refused_with_a_reason),
	    cmocka_unit_test(test_format_round_trips),
	    cmocka_unit_test(test_forbidden_table),
	    cmocka_unit_test(test_allow_private_lifts_only_private_ranges),
	    cmocka_unit_test(test_host_addresses_are_forbidden_whatever_is_lifted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
