#pragma once
/*
 * The packet filter of a network sandbox's own network namespace, as nftables text (for `nft -f -`): every
 * packet the sandbox sends to a forbidden address (forbidden.h: the table, the host's own addresses, minus
 * the server's --network-allow-private ranges) is rejected with "administratively prohibited", whatever
 * its protocol, IPv4 and IPv6; only the DNS forwarder's port 53 and the sandbox's own loopback pass.
 * docs/SECURITY.md "Network" says why each rule is there.
 */
#include <stddef.h>

#include "net/allowlist.h"
#include "net/cidr.h"

/* The address the sandbox's /etc/resolv.conf names: the sandbox's DNS forwarder (sandbox/net-dns.c,
 * net/dns-forwarder.h) listens there on the namespace's own loopback, so that DNS never needs a rule of
 * its own and no packet of it leaves the namespace but the forwarder's, from the host. */
#define LMS_NET_DNS_FORWARD "127.0.0.53"

/* The sets of an allowlisted sandbox's filter: the addresses its DNS forwarder admitted, each for as long
 * as the answer lives plus LMS_NET_ADMIT_GRACE_S (a connection made in that time stays: established
 * connections pass). */
#define LMS_NET_ALLOW4_SET "admitted4"
#define LMS_NET_ALLOW6_SET "admitted6"
#define LMS_NET_ADMIT_GRACE_S 60

/* The nft table's name in the sandbox's namespace. */
#define LMS_NET_NFT_TABLE "lm_sandbox"

struct lms_buf;

/* Appends the whole ruleset (one table, replaced atomically by nft) to out. allow: the sandbox's
 * allowlist, or NULL for every public address; with one, only its ranges and the addresses its DNS
 * forwarder admits (lms_net_nft_admit) are reached, after every forbidden address is refused. */
void lms_net_nft_ruleset(struct lms_buf *out, const struct lms_cidr *allowed_private, size_t n_allowed,
			 const struct lms_net_addr *host, size_t n_host, const struct lms_allowlist *allow);

struct lms_dns_answer;
/* Appends the nft commands that admit these addresses (each for its TTL plus the grace). */
void lms_net_nft_admit(struct lms_buf *out, const struct lms_dns_answer *a, size_t n);
