/*
 * libFuzzer target: the sandbox DNS forwarder's parsers (net/dns-msg.c, net/dns-filter.c). Each input
 * is tried as a sandbox's query (under an open policy and an allowlist) and as an upstream's answer to
 * a fixed question, and as a TCP stream (net/dns-tcp.c: length-prefixed messages, each read whole, in
 * chunks whose sizes the input's first byte sets). Whatever it is: what is written fits its buffer, a
 * forwarded query reads back as the same question, a refused name is never forwarded, no admitted
 * address is a forbidden one, the framing never reads past a message and each message is as long as its
 * prefix said, and an answer cut for a UDP client fits what it takes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/dns-filter.h"
#include "net/dns-tcp.h"
#include "net/forbidden.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
as_query(const struct lms_dns_policy *policy, const uint8_t *data, size_t size)
{
	uint8_t out[LMS_DNS_MSG_MAX];
	size_t len;
	struct lms_dns_pending p;
	enum lms_dns_verdict v =
	    lms_dns_filter_query(policy, data, size, 0x1234, LMS_DNS_MSG_MAX, &p, out, sizeof(out), &len);
	if (len > sizeof(out) || (v == LMS_DNS_DROP && len != 0))
		abort();
	if (v == LMS_DNS_REPLY) {
		size_t max = lms_dns_udp_max(&p.q), cut = lms_dns_truncate(out, len, max);
		if (cut > max || cut > len)
			abort();
	}
	if (v != LMS_DNS_FORWARD)
		return;
	struct lms_dns_question back;
	if (lms_dns_parse_query(out, len, &back) != 0 || strcasecmp(back.name, p.q.name) != 0 ||
	    back.qtype != p.q.qtype)
		abort();
	if (policy->allow && !lms_allowlist_admits_name(policy->allow, p.q.name))
		abort();
}

static void
as_answer(const uint8_t *data, size_t size)
{
	static const struct lms_dns_policy policy = {0};
	struct lms_dns_pending p = {.q = {.id = 9, .rd = true, .has_question = true, .qclass = 1}, .upstream_id = 0};
	strcpy(p.q.name, "a.example");
	uint8_t in[LMS_DNS_MSG_MAX], out[LMS_DNS_MSG_MAX];
	if (size > sizeof(in))
		size = sizeof(in);
	for (uint16_t type = 1; type <= 28; type += 27) {
		memcpy(in, data, size);
		p.q.qtype = type;
		/* The id and question of the input's own header decide whether it is taken as the answer. */
		p.upstream_id = size >= 2 ? (uint16_t)(data[0] << 8 | data[1]) : 0;
		struct lms_dns_answer admitted[LMS_DNS_ANSWERS_MAX];
		size_t n, len;
		const char *why;
		if (lms_dns_filter_answer(&policy, &p, in, size, out, sizeof(out), &len, admitted, &n, &why) < 0)
			continue;
		if (len > sizeof(out) || n > LMS_DNS_ANSWERS_MAX)
			abort();
		for (size_t i = 0; i < n; i++)
			if (lms_net_forbidden_why(&admitted[i].addr, NULL, 0, NULL, 0))
				abort();
	}
}

static void
as_tcp_stream(const struct lms_dns_policy *policy, const uint8_t *data, size_t size)
{
	static struct lms_dns_tcp_conn c;
	if (size == 0)
		return;
	size_t chunk = 1 + data[0] % 64, off = 1;
	c.in_len = c.out_len = 0;
	c.waiting = 0;
	c.eof = false;
	while (off < size) {
		size_t need = lms_dns_tcp_need(&c), n = size - off;
		if (need == 0 || need > LMS_DNS_TCP_FRAME_MAX - c.in_len)
			abort();
		n = n < need ? n : need;
		n = n < chunk ? n : chunk;
		memcpy(c.in + c.in_len, data + off, n);
		c.in_len += n;
		off += n;
		size_t len;
		const uint8_t *msg = lms_dns_tcp_message(&c, &len);
		if (!msg)
			continue;
		if (len != (size_t)(c.in[0] << 8 | c.in[1]))
			abort();
		uint8_t out[LMS_DNS_MSG_MAX];
		size_t olen;
		struct lms_dns_pending p;
		if (lms_dns_filter_query(policy, msg, len, 0x4321, LMS_DNS_TCP_MSG_MAX, &p, out, sizeof(out), &olen) ==
		    LMS_DNS_REPLY) {
			if (lms_dns_tcp_queue(&c, out, olen) < 0)
				c.out_len = 0; /* the client read it all */
		}
		c.in_len = 0;
		if (len == 0)
			return; /* the forwarder closes the connection */
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct lms_allowlist list;
	static bool ready;
	if (!ready) {
		lms_allowlist_add(&list, "*.example", NULL);
		lms_allowlist_add(&list, "github.com", NULL);
		ready = true;
	}
	const struct lms_dns_policy open = {0}, allow = {.allow = &list};
	as_query(&open, data, size);
	as_query(&allow, data, size);
	as_answer(data, size);
	as_tcp_stream(&allow, data, size);
	return 0;
}
