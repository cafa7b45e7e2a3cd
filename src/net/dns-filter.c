#include "net/dns-filter.h"

#include <string.h>

#include "net/forbidden.h"

static bool
address_query(uint16_t qtype)
{
	return qtype == LMS_DNS_TYPE_A || qtype == LMS_DNS_TYPE_AAAA;
}

static enum lms_dns_verdict
reply(const struct lms_dns_question *q, int rcode, uint8_t *out, size_t cap, size_t *out_len)
{
	*out_len = lms_dns_write_answer(q, rcode, NULL, 0, out, cap);
	return *out_len ? LMS_DNS_REPLY : LMS_DNS_DROP;
}

enum lms_dns_verdict
lms_dns_filter_query(const struct lms_dns_policy *policy, const uint8_t *in, size_t len, uint16_t upstream_id,
		     uint16_t edns_size, struct lms_dns_pending *pending, uint8_t *out, size_t cap, size_t *out_len)
{
	struct lms_dns_question q;
	*out_len = 0;
	int r = lms_dns_parse_query(in, len, &q);
	if (r < 0)
		return LMS_DNS_DROP;
	if (r > 0)
		return reply(&q, r, out, cap, out_len);
	if (policy->allow && !lms_allowlist_admits_name(policy->allow, q.name))
		return reply(&q, LMS_DNS_REFUSED, out, cap, out_len);
	pending->q = q;
	pending->upstream_id = upstream_id;
	*out_len = lms_dns_write_query(&q, upstream_id, edns_size, out, cap);
	return *out_len ? LMS_DNS_FORWARD : reply(&q, LMS_DNS_SERVFAIL, out, cap, out_len);
}

int
lms_dns_filter_answer(const struct lms_dns_policy *policy, const struct lms_dns_pending *pending, uint8_t *in,
		      size_t len, uint8_t *out, size_t cap, size_t *out_len, struct lms_dns_answer *admitted,
		      size_t *n_admitted, const char **why)
{
	const struct lms_dns_question *q = &pending->q;
	int rcode;
	bool tc;
	*n_admitted = 0;
	*why = NULL;
	if (lms_dns_parse_answer(in, len, pending->upstream_id, q, &rcode, &tc, admitted, LMS_DNS_ANSWERS_MAX,
				 n_admitted) < 0)
		return -1;
	if (!address_query(q->qtype)) {
		*n_admitted = 0;
		if (len > cap)
			return reply(q, LMS_DNS_SERVFAIL, out, cap, out_len) == LMS_DNS_REPLY ? 0 : -1;
		memcpy(out, in, len);
		lms_dns_set_id(out, len, q->id);
		*out_len = len;
		return 0;
	}
	if (tc) {
		/* Nothing of a cut answer is checked or admitted: the client asks again over TCP, where the
		 * forwarder offers upstream more room; if even that is cut, TC is what it gets there too. */
		*out_len = lms_dns_write_answer(q, LMS_DNS_NOERROR, NULL, 0, out, cap);
		lms_dns_set_tc(out, *out_len);
		return *out_len ? 0 : -1;
	}
	if (rcode != LMS_DNS_NOERROR && rcode != LMS_DNS_NXDOMAIN)
		rcode = LMS_DNS_SERVFAIL;
	for (size_t i = 0; rcode == LMS_DNS_NOERROR && i < *n_admitted; i++) {
		*why = lms_net_forbidden_why(&admitted[i].addr, policy->allowed_private, policy->n_allowed_private,
					     policy->host, policy->n_host);
		if (*why)
			rcode = LMS_DNS_REFUSED;
	}
	if (rcode != LMS_DNS_NOERROR)
		*n_admitted = 0;
	*out_len = lms_dns_write_answer(q, rcode, admitted, *n_admitted, out, cap);
	return *out_len ? 0 : -1;
}

size_t
lms_dns_filter_timeout(const struct lms_dns_pending *pending, uint8_t *out, size_t cap)
{
	return lms_dns_write_answer(&pending->q, LMS_DNS_SERVFAIL, NULL, 0, out, cap);
}
