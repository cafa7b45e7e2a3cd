#include "net/cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static unsigned
addr_bits(int family)
{
	return family == AF_INET ? 32 : 128;
}

int
lms_net_addr_parse(const char *text, struct lms_net_addr *out, struct lms_error **err)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, text, out->addr) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, text, out->addr) == 1) {
		out->family = AF_INET6;
		return 0;
	}
	return lms_error_set(err, LMS_ERR_INVALID, 0, "'%.64s' is not an IPv4 or IPv6 address", text);
}

static int
parse_prefix(const char *text, unsigned max, unsigned *out)
{
	if (text[0] < '0' || text[0] > '9' || strlen(text) > 3)
		return -1;
	char *end;
	unsigned long v = strtoul(text, &end, 10);
	if (*end || v > max || (text[0] == '0' && text[1]))
		return -1;
	*out = (unsigned)v;
	return 0;
}

static bool
host_bits_clear(const struct lms_net_addr *a, unsigned prefix)
{
	unsigned bytes = addr_bits(a->family) / 8;
	for (unsigned i = 0; i < bytes; i++) {
		unsigned first = i * 8;
		uint8_t host_mask = first >= prefix	  ? 0xff
				    : prefix - first >= 8 ? 0
							  : (uint8_t)(0xff >> (prefix - first));
		if (a->addr[i] & host_mask)
			return false;
	}
	return true;
}

int
lms_cidr_parse(const char *text, struct lms_cidr *out, struct lms_error **err)
{
	char buf[LMS_CIDR_TEXT_MAX + 1];
	size_t len = strlen(text);
	if (len == 0 || len >= sizeof(buf))
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "'%.64s' is not an address range (like 10.0.0.0/8 or fc00::/7)", text);
	memcpy(buf, text, len + 1);
	char *slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	if (lms_net_addr_parse(buf, &out->base, NULL) < 0)
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "'%.64s' is not an address range: '%s' is not an IPv4 or IPv6 address", text, buf);
	unsigned max = addr_bits(out->base.family);
	out->prefix = max;
	if (slash && parse_prefix(slash + 1, max, &out->prefix) < 0)
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "'%.64s' is not an address range: the prefix length must be a number from 0 to %u",
				     text, max);
	if (!host_bits_clear(&out->base, out->prefix))
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "'%.64s' has bits set below its /%u prefix: write the range's first address", text,
				     out->prefix);
	return 0;
}

int
lms_net_addr_from_sockaddr(const void *sa, size_t len, struct lms_net_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (len >= sizeof(struct sockaddr_in) && ((const struct sockaddr *)sa)->sa_family == AF_INET) {
		const struct sockaddr_in *in = sa;
		out->family = AF_INET;
		memcpy(out->addr, &in->sin_addr, 4);
		return 0;
	}
	if (len >= sizeof(struct sockaddr_in6) && ((const struct sockaddr *)sa)->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = sa;
		out->family = AF_INET6;
		memcpy(out->addr, &in6->sin6_addr, 16);
		return 0;
	}
	return -1;
}

struct lms_net_addr
lms_net_addr_canonical(const struct lms_net_addr *a)
{
	struct lms_net_addr c = *a;
	if (a->family == AF_INET6 && memcmp(a->addr, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0) {
		memset(&c, 0, sizeof(c));
		c.family = AF_INET;
		memcpy(c.addr, a->addr + 12, 4);
	}
	return c;
}

bool
lms_cidr_contains(const struct lms_cidr *range, const struct lms_net_addr *a)
{
	struct lms_net_addr c = lms_net_addr_canonical(a);
	if (c.family != range->base.family)
		return false;
	unsigned full = range->prefix / 8, rest = range->prefix % 8;
	if (memcmp(c.addr, range->base.addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (c.addr[full] & mask) == range->base.addr[full];
}

void
lms_cidr_format(const struct lms_cidr *range, char *buf, size_t len)
{
	char addr[INET6_ADDRSTRLEN];
	if (!inet_ntop(range->base.family, range->base.addr, addr, sizeof(addr)))
		snprintf(addr, sizeof(addr), "?");
	snprintf(buf, len, "%s/%u", addr, range->prefix);
}
