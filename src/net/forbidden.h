#pragma once
/*
 * The addresses no sandbox reaches, whatever its network setting (API.md "Network", docs/SECURITY.md
 * "Network"): loopback, link-local (cloud metadata at 169.254.169.254), multicast and reserved ranges,
 * which nothing lifts; the private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7), which the
 * server's --network-allow-private may lift range by range; and every address of the host itself
 * (lms_net_host_addrs), which nothing lifts either.
 *
 * One table, read by every mechanism that enforces it (the packet filter of a sandbox's network
 * namespace, the check of what a name resolves to), so that they cannot disagree.
 */
#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"
#include "net/cidr.h"

struct lms_net_forbidden_range {
	const char *text;   /* "127.0.0.0/8" */
	const char *why;    /* "the host's loopback": for logs and refusals */
	bool private_range; /* --network-allow-private may lift it */
};

/* The built-in table, ended by an entry whose text is NULL. */
extern const struct lms_net_forbidden_range lms_net_forbidden_ranges[];

/* Each range of the table, parsed, in table order (count into *n). Never fails: the table is checked by
 * the unit tests. The array is static; do not free it. */
const struct lms_cidr *lms_net_forbidden_cidrs(size_t *n);

/* Why a is forbidden ("the host's loopback", "a private range", ...), or NULL when it may be reached.
 * allowed_private: the server's --network-allow-private ranges (n_allowed of them), which lift a private
 * range's addresses within them and nothing else; host: the host's own addresses (n_host), always
 * forbidden. An IPv4-mapped IPv6 address is judged as the IPv4 address it carries. */
const char *lms_net_forbidden_why(const struct lms_net_addr *a, const struct lms_cidr *allowed_private,
				  size_t n_allowed, const struct lms_net_addr *host, size_t n_host);

/* Every address of every interface of the host (getifaddrs), loopback included: a sandbox must reach
 * none of them, since a host socket connecting to one reaches the host's own listeners. *out is
 * malloc'd (free it); *n may be 0. */
int lms_net_host_addrs(struct lms_net_addr **out, size_t *n, struct lms_error **err);
