#include "net/resolver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define DNS_PORT 53

static int
parse_port(const char *text, uint16_t *port)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (errno || *end || text[0] < '0' || text[0] > '9' || v == 0 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

int
lms_net_resolver_parse(const char *text, struct sockaddr_storage *out, socklen_t *len, struct lms_error **err)
{
	char host[INET6_ADDRSTRLEN + 1];
	uint16_t port = DNS_PORT;
	const char *colon = strrchr(text, ':');
	size_t n = strlen(text);
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close || (close[1] != '\0' && (close[1] != ':' || parse_port(close + 2, &port) < 0)))
			goto bad;
		n = (size_t)(close - text - 1);
		text++;
	} else if (colon && strchr(text, ':') == colon) { /* one colon: IPv4 with a port */
		if (parse_port(colon + 1, &port) < 0)
			goto bad;
		n = (size_t)(colon - text);
	}
	if (n == 0 || n >= sizeof(host))
		goto bad;
	memcpy(host, text, n);
	host[n] = '\0';
	memset(out, 0, sizeof(*out));
	struct sockaddr_in *in = (struct sockaddr_in *)out;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
	if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		*len = sizeof(*in);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*len = sizeof(*in6);
		return 0;
	}
bad:
	return lms_error_set(
	    err, LMS_ERR_INVALID, 0,
	    "'%.80s' is not a resolver address (like 192.0.2.53, 192.0.2.53:5353 or [2001:db8::53]:53)", text);
}

int
lms_net_resolver_from_conf(const char *path, struct sockaddr_storage *out, socklen_t *len, struct lms_error **err)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return lms_error_set(
		    err, LMS_ERR_UNSUPPORTED, errno,
		    "network: read %s for the host's resolver (or start the server with --network-dns ADDR)", path);
	char line[512];
	int r = -1;
	while (r < 0 && fgets(line, sizeof(line), f)) {
		char word[16], addr[128];
		if (sscanf(line, " %15s %127s", word, addr) != 2 || strcmp(word, "nameserver") != 0 ||
		    strchr(addr, '%'))
			continue;
		if (strchr(addr, ':')) { /* a bare IPv6 address: no port in resolv.conf */
			char *bracketed = xasprintf("[%s]", addr);
			r = lms_net_resolver_parse(bracketed, out, len, NULL);
			free(bracketed);
		} else {
			r = lms_net_resolver_parse(addr, out, len, NULL);
		}
	}
	fclose(f);
	if (r < 0)
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, 0,
				     "network: %s names no nameserver: start the server with --network-dns ADDR", path);
	return 0;
}
