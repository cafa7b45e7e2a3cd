#pragma once
/*
 * The decisions of a sandbox's DNS forwarder (docs/SECURITY.md "Network"), without its sockets: which
 * queries go on to the upstream resolver, what the sandbox is answered, and which addresses it may then
 * connect to. The caller owns the sockets and the packet filter; this file owns the policy:
 *
 * - a name outside the sandbox's allowlist (when it has one) is answered REFUSED, and never asked upstream;
 * - an A/AAAA answer with any forbidden address (net/forbidden.h: loopback, link-local, the host's own,
 *   private ranges not lifted) is answered REFUSED as a whole: the name is refused, not half-answered;
 * - the other A/AAAA answers reach the sandbox flattened under the name it asked (TTL capped), and are
 *   the addresses an allowlisted sandbox's filter admits (for as long as the answer lives);
 * - other query types of an admitted name are relayed verbatim: whatever addresses they carry (SVCB
 *   hints, MX targets) are not admitted, so they lead nowhere the filter does not allow.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/allowlist.h"
#include "net/cidr.h"
#include "net/dns-msg.h"

struct lms_dns_policy {
	const struct lms_allowlist *allow; /* NULL: every name (network: true) */
	const struct lms_cidr *allowed_private;
	size_t n_allowed_private;
	const struct lms_net_addr *host; /* the host's addresses (lms_net_host_addrs) */
	size_t n_host;
};

/* A query forwarded upstream, waiting for its answer. */
struct lms_dns_pending {
	struct lms_dns_question q;
	uint16_t upstream_id;
};

enum lms_dns_verdict {
	LMS_DNS_DROP,	 /* nothing to send: not a query */
	LMS_DNS_REPLY,	 /* out holds the sandbox's answer */
	LMS_DNS_FORWARD, /* out holds the query for the upstream resolver; *pending is filled */
};

/* A query from the sandbox. upstream_id: a fresh random id for the forwarded query (never the
 * sandbox's own, so that a sandbox cannot predict or collide with another's). edns_size: what the
 * forwarded query offers upstream (LMS_DNS_MSG_MAX for a query that came over UDP, LMS_DNS_TCP_MSG_MAX
 * over TCP). */
enum lms_dns_verdict lms_dns_filter_query(const struct lms_dns_policy *policy, const uint8_t *in, size_t len,
					  uint16_t upstream_id, uint16_t edns_size, struct lms_dns_pending *pending,
					  uint8_t *out, size_t cap, size_t *out_len);

/* The upstream's answer to pending. 0: out holds the sandbox's answer and admitted (up to
 * LMS_DNS_ANSWERS_MAX) the addresses its filter may admit (none from a truncated answer, which reaches
 * the sandbox with TC set and no address record, so that it asks again over TCP); *why says, for a refusal, what was
 * forbidden (NULL otherwise). -1: in is not the answer to pending (ignore it and keep waiting). */
int lms_dns_filter_answer(const struct lms_dns_policy *policy, const struct lms_dns_pending *pending, uint8_t *in,
			  size_t len, uint8_t *out, size_t cap, size_t *out_len, struct lms_dns_answer *admitted,
			  size_t *n_admitted, const char **why);

/* The answer to give when the upstream never answered (a timeout): SERVFAIL. */
size_t lms_dns_filter_timeout(const struct lms_dns_pending *pending, uint8_t *out, size_t cap);
