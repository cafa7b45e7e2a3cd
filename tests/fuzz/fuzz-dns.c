/*
 * libFuzzer target: the sandbox DNS forwarder's parsers (net/dns-msg.c, net/dns-filter.c). Each input
 * is tried as a sandbox's query (under an open policy and an allowlist) and as an upstream's answer to
 * a fixed question. Whatever it is: what is written fits its buffer, a forwarded query reads back as
 * the same question, a refused name is never forwarded, and no admitted address is a forbidden one.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/dns-filter.h"
#include "net/forbidden.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
as_query(const struct lms_dns_policy *policy, const uint8_t *data, size_t size)
{
	uint8_t out[LMS_DNS_MSG_MAX];
	size_t len;
	struct lms_dns_pending p;
	enum lms_dns_verdict v = lms_dns_filter_query(policy, data, size, 0x1234, &p, out, sizeof(out), &len);
	if (len > sizeof(out) || (v == LMS_DNS_DROP && len != 0))
		abort();
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
	return 0;
}
