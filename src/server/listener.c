/* The listening socket of `lm-sandbox serve`: --listen HOST:PORT, and whether that is a loopback address. */
#include "server/listener.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"

bool
lms_listener_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

int
lms_listener_open(const char *listen_spec, bool *loopback, char **url, struct lms_error **err)
{
	_cleanup_free_ char *spec = xstrdup(listen_spec);
	char *host = spec, *port = strrchr(spec, ':');
	if (port == NULL)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "--listen %s: expected HOST:PORT", listen_spec);
	*port++ = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		host[strlen(host) - 1] = '\0';
		host++;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *ai = NULL;
	int r = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
	if (r != 0)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "--listen %s: %s", listen_spec, gai_strerror(r));
	*loopback = lms_listener_is_loopback(ai->ai_addr);
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return lms_error_set(err, LMS_ERR_SETUP, e, "listen on %s", listen_spec);
	}
	freeaddrinfo(ai);
	struct sockaddr_storage bound;
	socklen_t len = sizeof(bound);
	if (getsockname(fd, (struct sockaddr *)&bound, &len) < 0) {
		int e = errno;
		close(fd);
		return lms_error_set(err, LMS_ERR_SETUP, e, "getsockname of the socket on %s", listen_spec);
	}
	char name[INET6_ADDRSTRLEN] = "?";
	int bound_port;
	if (bound.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&bound;
		inet_ntop(AF_INET, &in->sin_addr, name, sizeof(name));
		bound_port = ntohs(in->sin_port);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&bound;
		inet_ntop(AF_INET6, &in6->sin6_addr, name, sizeof(name));
		bound_port = ntohs(in6->sin6_port);
	}
	*url = bound.ss_family == AF_INET6 ? xasprintf("http://[%s]:%d", name, bound_port)
					   : xasprintf("http://%s:%d", name, bound_port);
	return fd;
}
