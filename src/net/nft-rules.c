#include "net/nft-rules.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "core/buf.h"
#include "net/dns-msg.h"
#include "net/forbidden.h"

/* One rule per range, not one set: the ranges may overlap (an allowed range inside a table's), which an
 * nft interval set refuses. A few dozen rules per packet is nothing beside pasta's own work. */
static void
rule(struct lms_buf *b, const struct lms_cidr *c, const char *verdict)
{
	char text[LMS_CIDR_TEXT_MAX];
	lms_cidr_format(c, text, sizeof(text));
	if (c->base.family == AF_INET)
		lms_buf_printf(b, "    ip daddr %s %s\n", text,
			       strcmp(verdict, "accept") == 0 ? "accept" : "reject with icmp type admin-prohibited");
	else
		lms_buf_printf(b, "    ip6 daddr %s %s\n", text,
			       strcmp(verdict, "accept") == 0 ? "accept" : "reject with icmpv6 type admin-prohibited");
}

/* An allowlisted sandbox: its own ranges (forbidden ones were refused above), what its DNS forwarder
 * admitted, the packets of connections already made, and nothing else. */
static void
allowlist_rules(struct lms_buf *b, const struct lms_allowlist *allow)
{
	lms_buf_printf(b, "    ct state established,related accept\n");
	lms_buf_printf(b, "    ip daddr @%s accept\n    ip6 daddr @%s accept\n", LMS_NET_ALLOW4_SET,
		       LMS_NET_ALLOW6_SET);
	for (size_t i = 0; i < allow->n_ranges; i++)
		rule(b, &allow->ranges[i], "accept");
	lms_buf_printf(b, "    reject with icmpx type admin-prohibited\n");
}

void
lms_net_nft_admit(struct lms_buf *b, const struct lms_dns_answer *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char text[INET6_ADDRSTRLEN];
		if (!inet_ntop(a[i].addr.family, a[i].addr.addr, text, sizeof(text)))
			continue;
		lms_buf_printf(b, "add element inet %s %s { %s timeout %us }\n", LMS_NET_NFT_TABLE,
			       a[i].addr.family == AF_INET ? LMS_NET_ALLOW4_SET : LMS_NET_ALLOW6_SET, text,
			       (unsigned)(a[i].ttl > LMS_DNS_TTL_MAX ? LMS_DNS_TTL_MAX : a[i].ttl) +
				   LMS_NET_ADMIT_GRACE_S);
	}
}

void
lms_net_nft_ruleset(struct lms_buf *b, const struct lms_cidr *allowed, size_t n_allowed,
		    const struct lms_net_addr *host, size_t n_host, const struct lms_allowlist *allow)
{
	/* Declared then deleted then made: nft applies the file as one transaction, so there is never a
	 * moment without the rules, and a second run replaces rather than adds. */
	lms_buf_printf(b, "table inet %s\ndelete table inet %s\ntable inet %s {\n", LMS_NET_NFT_TABLE,
		       LMS_NET_NFT_TABLE, LMS_NET_NFT_TABLE);
	if (allow)
		lms_buf_printf(
		    b, "  set %s { type ipv4_addr; flags timeout; }\n  set %s { type ipv6_addr; flags timeout; }\n",
		    LMS_NET_ALLOW4_SET, LMS_NET_ALLOW6_SET);
	lms_buf_printf(b, "  chain out {\n    type filter hook output priority 0; policy accept;\n");
	/* The sandbox's own loopback (its DNS forwarder listens there), and its own interface addresses
	 * (copies of the host's, which the kernel delivers locally over lo): nothing routed to lo leaves
	 * the namespace. */
	lms_buf_printf(b, "    oif lo accept\n");
	/* Neighbour discovery goes to multicast and link-local addresses and never leaves pasta: without
	 * it IPv6 cannot even find its gateway. */
	lms_buf_printf(b, "    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept\n");
	/* IPv4-mapped IPv6 destinations never appear on a real wire; pasta would map them to IPv4 host
	 * sockets, past the ip rules below. */
	lms_buf_printf(b, "    ip6 daddr ::ffff:0.0.0.0/96 reject with icmpv6 type admin-prohibited\n");
	/* The host's own addresses first: nothing lifts them, not even --network-allow-private. */
	for (size_t i = 0; i < n_host; i++) {
		struct lms_cidr c = {.base = lms_net_addr_canonical(&host[i])};
		c.prefix = c.base.family == AF_INET ? 32 : 128;
		rule(b, &c, "reject");
	}
	size_t n;
	const struct lms_cidr *table = lms_net_forbidden_cidrs(&n);
	for (size_t i = 0; i < n; i++)
		if (!lms_net_forbidden_ranges[i].private_range)
			rule(b, &table[i], "reject");
	/* Only now the allowed private ranges: they lift private addresses and nothing above. */
	for (size_t i = 0; i < n_allowed; i++)
		rule(b, &allowed[i], "accept");
	for (size_t i = 0; i < n; i++)
		if (lms_net_forbidden_ranges[i].private_range)
			rule(b, &table[i], "reject");
	if (allow)
		allowlist_rules(b, allow);
	lms_buf_printf(b, "  }\n}\n");
}
