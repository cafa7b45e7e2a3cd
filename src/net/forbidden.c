#include "net/forbidden.h"

#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/alloc.h"

const struct lms_net_forbidden_range lms_net_forbidden_ranges[] = {
    {"0.0.0.0/8", "'this network' (0.0.0.0/8), which reaches the host", false},
    {"127.0.0.0/8", "the host's loopback", false},
    {"169.254.0.0/16", "link-local (cloud metadata services live at 169.254.169.254)", false},
    {"192.0.0.0/24", "IETF protocol assignments", false},
    {"224.0.0.0/4", "multicast", false},
    {"240.0.0.0/4", "reserved (and the broadcast address)", false},
    {"10.0.0.0/8", "a private range (10/8)", true},
    {"172.16.0.0/12", "a private range (172.16/12; Docker's bridges live here)", true},
    {"192.168.0.0/16", "a private range (192.168/16)", true},
    {"100.64.0.0/10", "a shared address range (100.64/10, carrier-grade NAT)", true},
    {"::/96", "the unspecified, loopback or IPv4-compatible IPv6 addresses", false},
    {"fe80::/10", "IPv6 link-local", false},
    {"fec0::/10", "IPv6 site-local", false},
    {"ff00::/8", "IPv6 multicast", false},
    {"fc00::/7", "an IPv6 unique local range (fc00::/7)", true},
    {NULL, NULL, false},
};

static struct lms_cidr parsed[sizeof(lms_net_forbidden_ranges) / sizeof(lms_net_forbidden_ranges[0])];
static size_t n_parsed;
static pthread_once_t parse_once = PTHREAD_ONCE_INIT;

static void
parse_table(void)
{
	for (size_t i = 0; lms_net_forbidden_ranges[i].text; i++) {
		if (lms_cidr_parse(lms_net_forbidden_ranges[i].text, &parsed[i], NULL) < 0)
			abort(); /* a typo in the table above; tests/unit/test-net.c parses it */
		n_parsed = i + 1;
	}
}

const struct lms_cidr *
lms_net_forbidden_cidrs(size_t *n)
{
	pthread_once(&parse_once, parse_table);
	*n = n_parsed;
	return parsed;
}

static bool
same_addr(const struct lms_net_addr *a, const struct lms_net_addr *b)
{
	struct lms_net_addr ca = lms_net_addr_canonical(a), cb = lms_net_addr_canonical(b);
	size_t len = ca.family == AF_INET ? 4 : 16;
	return ca.family == cb.family && memcmp(ca.addr, cb.addr, len) == 0;
}

static bool
lifted(const struct lms_net_addr *a, const struct lms_cidr *allowed, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (lms_cidr_contains(&allowed[i], a))
			return true;
	return false;
}

const char *
lms_net_forbidden_why(const struct lms_net_addr *a, const struct lms_cidr *allowed_private, size_t n_allowed,
		      const struct lms_net_addr *host, size_t n_host)
{
	for (size_t i = 0; i < n_host; i++)
		if (same_addr(a, &host[i]))
			return "an address of the host itself";
	size_t n;
	const struct lms_cidr *table = lms_net_forbidden_cidrs(&n);
	for (size_t i = 0; i < n; i++) {
		if (!lms_cidr_contains(&table[i], a))
			continue;
		if (lms_net_forbidden_ranges[i].private_range && lifted(a, allowed_private, n_allowed))
			continue;
		return lms_net_forbidden_ranges[i].why;
	}
	return NULL;
}

int
lms_net_host_addrs(struct lms_net_addr **out, size_t *n, struct lms_error **err)
{
	struct ifaddrs *list;
	*out = NULL;
	*n = 0;
	if (getifaddrs(&list) < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "list the host's addresses (getifaddrs)");
	size_t count = 0;
	for (struct ifaddrs *i = list; i; i = i->ifa_next)
		count += i->ifa_addr != NULL;
	struct lms_net_addr *addrs = xcalloc(count ? count : 1, sizeof(*addrs));
	for (struct ifaddrs *i = list; i; i = i->ifa_next) {
		if (!i->ifa_addr)
			continue;
		size_t len =
		    i->ifa_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
		if (lms_net_addr_from_sockaddr(i->ifa_addr, len, &addrs[*n]) == 0)
			(*n)++;
	}
	freeifaddrs(list);
	*out = addrs;
	return 0;
}
