#pragma once
/*
 * Address ranges (CIDR) of IPv4 and IPv6: parsed from the command line or a request, and matched
 * against an address a sandbox resolved or connects to. An IPv4-mapped IPv6 address (::ffff:a.b.c.d)
 * is matched as the IPv4 address it carries: a range check must not be sidestepped by spelling.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Longest text lms_cidr_format writes: an IPv6 address, "/128" and the terminator. */
#define LMS_CIDR_TEXT_MAX 50

struct lms_net_addr {
	int family;	  /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* network byte order; 4 bytes used for AF_INET */
};

struct lms_cidr {
	struct lms_net_addr base; /* host bits cleared */
	unsigned prefix;	  /* 0..32 or 0..128 */
};

/* "10.0.0.0/8", "fc00::/7", or a bare address (a /32 or /128). Host bits set below the prefix are an
 * error (as in "10.0.0.1/8"): such a range almost always says something other than what was meant. */
int lms_cidr_parse(const char *text, struct lms_cidr *out, struct lms_error **err);

/* An address from text, IPv4 or IPv6 (no prefix, no port). */
int lms_net_addr_parse(const char *text, struct lms_net_addr *out, struct lms_error **err);

/* From a sockaddr_in or sockaddr_in6 (port ignored); -1 for another family. */
int lms_net_addr_from_sockaddr(const void *sa, size_t len, struct lms_net_addr *out);

/* An IPv4-mapped IPv6 address becomes the IPv4 address; every other address is copied. */
struct lms_net_addr lms_net_addr_canonical(const struct lms_net_addr *a);

bool lms_cidr_contains(const struct lms_cidr *range, const struct lms_net_addr *a);

/* "a.b.c.d/n" or "x::/n" into buf (at least LMS_CIDR_TEXT_MAX bytes). */
void lms_cidr_format(const struct lms_cidr *range, char *buf, size_t len);
