/* A loopback connection inside another network namespace (ns-socket.h). */
#include "net/ns-socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

struct ns_socket {
	int pidfd;
	int fd;		  /* the socket made in the namespace, or -1 */
	int errnum;	  /* of the step that failed */
	const char *step; /* which */
};

/* The thread's whole life: enter, make the socket, end. A thread that ends cannot be left behind in the
 * sandbox's namespace, whatever fails. */
static void *
make_socket(void *arg)
{
	struct ns_socket *s = arg;
	if (setns(s->pidfd, CLONE_NEWNET) < 0) {
		s->errnum = errno;
		s->step = "enter the sandbox's network namespace";
		return NULL;
	}
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		s->errnum = errno;
		s->step = "make a socket in the sandbox's network namespace";
	}
	return NULL;
}

static int
wait_connected(int fd, uint16_t port, int timeout_ms, struct lms_error **err)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	int n;
	while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
		;
	if (n < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "wait for the connection to port %u", port);
	if (n == 0)
		return lms_error_set(err, LMS_ERR_UNREACHABLE, 0,
				     "nothing accepted a connection on port %u inside the sandbox within %d ms", port,
				     timeout_ms);
	int soerr = 0;
	socklen_t len = sizeof(soerr);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "read the connection's state (port %u)", port);
	if (soerr != 0)
		return lms_error_set(err, LMS_ERR_UNREACHABLE, soerr,
				     "nothing listens on 127.0.0.1:%u inside the sandbox (start a server there first)",
				     port);
	return 0;
}

int
lms_netns_connect_loopback(int pidfd, uint16_t port, int timeout_ms, struct lms_error **err)
{
	struct ns_socket s = {.pidfd = pidfd, .fd = -1};
	pthread_t t;
	int r = pthread_create(&t, NULL, make_socket, &s);
	if (r != 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, r, "start the thread that enters the sandbox's network");
	pthread_join(t, NULL);
	/* Entering a network namespace takes CAP_SYS_ADMIN in the daemon's own user namespace: a daemon run
	 * without root cannot (the sandbox's commands and files still work there). */
	if (s.fd < 0 && s.errnum == EPERM)
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, s.errnum,
				     "%s (the port relay needs a daemon run as root, or with CAP_SYS_ADMIN)", s.step);
	if (s.fd < 0)
		return lms_error_set(err, s.errnum == ESRCH ? LMS_ERR_UNREACHABLE : LMS_ERR_INTERNAL, s.errnum, "%s",
				     s.step);
	struct sockaddr_in to = {
	    .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(s.fd, (const struct sockaddr *)&to, sizeof(to)) < 0 && errno != EINPROGRESS) {
		int saved = errno;
		close(s.fd);
		return lms_error_set(err, saved == ECONNREFUSED ? LMS_ERR_UNREACHABLE : LMS_ERR_INTERNAL, saved,
				     "connect to 127.0.0.1:%u inside the sandbox%s", port,
				     saved == ECONNREFUSED ? " (nothing listens there: start a server first)" : "");
	}
	if (wait_connected(s.fd, port, timeout_ms, err) < 0) {
		close(s.fd);
		return -1;
	}
	/* Events of a stream go out as soon as they are written; without it they only wait a little (Nagle),
	 * so a failure is no reason to refuse the connection. */
	int one = 1;
	(void)setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return s.fd;
}
