#pragma once
/*
 * The packet filter of a network sandbox's own network namespace, as nftables text (for `nft -f -`): every
 * packet the sandbox sends to a forbidden address (forbidden.h: the table, the host's own addresses, minus
 * the server's --network-allow-private ranges) is rejected with "administratively prohibited", whatever
 * its protocol, IPv4 and IPv6; only the DNS forwarder's port 53 and the sandbox's own loopback pass.
 * docs/SECURITY.md "Network" says why each rule is there.
 */
#include <stddef.h>

#include "net/cidr.h"

/* The address the sandbox's /etc/resolv.conf names: pasta's --dns-forward, answered by pasta itself (it
 * relays the query to the upstream resolver from the host). Link-local, so that it is no real host's. */
#define LMS_NET_DNS_FORWARD "169.254.1.1"

/* The nft table's name in the sandbox's namespace. */
#define LMS_NET_NFT_TABLE "lm_sandbox"

struct lms_buf;

/* Appends the whole ruleset (one table, replaced atomically by nft) to out. */
void lms_net_nft_ruleset(struct lms_buf *out, const struct lms_cidr *allowed_private, size_t n_allowed,
			 const struct lms_net_addr *host, size_t n_host);
