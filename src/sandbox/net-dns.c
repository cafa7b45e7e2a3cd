#include "sandbox/net-dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/fdio.h"
#include "net/dns-forwarder.h"
#include "net/dns-tcp.h"
#include "net/forbidden.h"
#include "net/nft-rules.h"
#include "net/resolver.h"
#include "sandbox/network.h"

/* The descriptor the forwarder reports its start on; every other one of the worker's is closed. */
#define REPORT_FD 3

struct report {
	int errnum; /* 0: listening */
	char what[240];
};

struct admit_ctx {
	const char *nft;
};

/* Runs `nft -f -` with the admitting commands: the forwarder is in the sandbox's network namespace and
 * root of its user namespace, which owns that namespace, so nft may change its filter (and nothing else). */
static int
admit(void *arg, const struct lms_dns_answer *a, size_t n)
{
	const struct admit_ctx *ctx = arg;
	struct lms_buf cmds = {0};
	lms_net_nft_admit(&cmds, a, n);
	int in[2];
	if (cmds.len == 0 || pipe2(in, O_CLOEXEC) < 0) {
		lms_buf_clear(&cmds);
		return cmds.len == 0 ? 0 : -1;
	}
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (dup2(in[0], 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
			_exit(126);
		char *argv[] = {(char *)ctx->nft, (char *)"-f", (char *)"-", NULL}, *envp[] = {NULL};
		execve(ctx->nft, argv, envp);
		_exit(127);
	}
	close(in[0]);
	int ok = pid > 0 && lms_fd_write_all(in[1], cmds.data, cmds.len) == 0;
	close(in[1]);
	lms_buf_clear(&cmds);
	int status = 0;
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

__attribute__((format(printf, 2, 3))) static void
report(int errnum, const char *fmt, ...)
{
	struct report r = {.errnum = errnum};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r.what, sizeof(r.what), fmt, ap);
	va_end(ap);
	(void)lms_fd_write_all(REPORT_FD, &r, sizeof(r));
}

static int
enter(pid_t pid1, const char *ns, int type)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid1, ns);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = setns(fd, type);
	int e = errno;
	close(fd);
	errno = e;
	return r;
}

/* The forwarder itself (a grandchild of the worker: nobody waits for it; the sandbox's cgroup ends it). */
static _Noreturn void
forwarder_main(pid_t pid1, const struct lms_sandbox_spec *spec, const struct sockaddr_storage *up, socklen_t up_len)
{
	struct lms_dns_forwarder f = {.upstream_len = up_len, .tcp_fd = -1, .stop_fd = -1};
	memcpy(&f.upstream, up, up_len);
	struct lms_allowlist *allow = spec->net_allow ? xcalloc(1, sizeof(*allow)) : NULL;
	struct admit_ctx ctx = {.nft = lms_network_tool("nft")};
	/* What the policy needs from the host, read while still in the host's namespaces. */
	struct lms_net_addr *host = NULL;
	size_t n_host = 0, n_private = 0;
	struct lms_cidr *private_ranges = NULL;
	if (lms_net_host_addrs(&host, &n_host, NULL) < 0 ||
	    lms_network_parse_private(spec->net_allow_private, &private_ranges, &n_private, NULL) < 0 ||
	    (allow && lms_allowlist_add_list(allow, spec->net_allow, NULL) < 0)) {
		report(EINVAL, "read the host's addresses and the sandbox's allowlist");
		_exit(1);
	}
	f.policy = (struct lms_dns_policy){.allow = allow,
					   .allowed_private = private_ranges,
					   .n_allowed_private = n_private,
					   .host = host,
					   .n_host = n_host};
	f.upstream_fd = socket(up->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (f.upstream_fd < 0 || connect(f.upstream_fd, (const struct sockaddr *)up, up_len) < 0) {
		report(errno, "open a socket to the upstream resolver");
		_exit(1);
	}
	/* Then the ids of the sandbox's root: host root's are not mapped there, and an unmapped uid would lose
	 * the namespace's capabilities at the exec of nft. */
	if (enter(pid1, "net", CLONE_NEWNET) < 0 || enter(pid1, "user", CLONE_NEWUSER) < 0 || setresgid(0, 0, 0) < 0 ||
	    setresuid(0, 0, 0) < 0) {
		report(errno, "enter the sandbox's network and user namespaces");
		_exit(1);
	}
	/* Loopback up before the bind: PID 1 brings it up too, but maybe not yet, and a socket bound to
	 * 127.0.0.53 while it is down answers from 127.0.0.1, which a resolver's connected socket drops. */
	if (lms_network_loopback_up() < 0) {
		report(errno, "bring up the sandbox's loopback");
		_exit(1);
	}
	struct sockaddr_in at = {.sin_family = AF_INET, .sin_port = htons(53)};
	inet_pton(AF_INET, LMS_NET_DNS_FORWARD, &at.sin_addr);
	f.sandbox_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (f.sandbox_fd < 0 || bind(f.sandbox_fd, (struct sockaddr *)&at, sizeof(at)) < 0) {
		report(errno, "listen on %s:53 (UDP) in the sandbox", LMS_NET_DNS_FORWARD);
		_exit(1);
	}
	/* TCP at the same address: a resolver's retry after a truncated answer, and tools that ask over TCP. */
	f.tcp_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (f.tcp_fd < 0 || bind(f.tcp_fd, (struct sockaddr *)&at, sizeof(at)) < 0 ||
	    listen(f.tcp_fd, LMS_DNS_TCP_CONNS_MAX) < 0) {
		report(errno, "listen on %s:53 (TCP) in the sandbox", LMS_NET_DNS_FORWARD);
		_exit(1);
	}
	/* No core dump, no ptrace by the sandbox's processes (which cannot even name it: it is outside
	 * their PID namespace). */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	prctl(PR_SET_NAME, "lms-dns", 0, 0, 0);
	report(0, "listening");
	close(REPORT_FD);
	if (allow) {
		f.admit = admit;
		f.admit_ctx = &ctx;
	}
	_exit(lms_dns_forwarder_run(&f, NULL) < 0 ? 1 : 0);
}

/* The worker's child: sets up a clean process (default signals, only the report pipe open), forks the
 * forwarder and exits, so the worker has nothing to wait for later. */
static _Noreturn void
launcher(int report_w, pid_t pid1, const struct lms_cgroup *cg, const struct lms_sandbox_spec *spec,
	 const struct sockaddr_storage *up, socklen_t up_len)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 || dup2(report_w, REPORT_FD) < 0)
		_exit(126);
	/* Into the sandbox's cgroup first (the forwarder forked below inherits it), then nothing of the
	 * worker (its sockets to PID 1 and to the spawner, the cgroup's descriptors) lives on in a
	 * long-lived process. */
	if (lms_cgroup_attach(cg, getpid(), NULL) < 0) {
		report(errno ? errno : EIO, "join the sandbox's cgroup");
		_exit(1);
	}
	lms_network_close_from(REPORT_FD + 1);
	pid_t pid = fork();
	if (pid < 0) {
		report(errno, "fork the DNS forwarder");
		_exit(1);
	}
	if (pid > 0)
		_exit(0);
	setsid();
	forwarder_main(pid1, spec, up, up_len);
}

int
lms_network_dns_start(pid_t pid1, const struct lms_cgroup *cg, const struct lms_sandbox_spec *spec,
		      struct lms_error **err)
{
	struct sockaddr_storage up;
	socklen_t up_len;
	if ((spec->net_dns ? lms_net_resolver_parse(spec->net_dns, &up, &up_len, err)
			   : lms_net_resolver_from_conf("/etc/resolv.conf", &up, &up_len, err)) < 0)
		return -1;
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "network: pipe for the DNS forwarder");
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		lms_fd_close_all(p, 2);
		return lms_error_set(err, LMS_ERR_SETUP, e, "network: fork for the DNS forwarder");
	}
	if (pid == 0)
		launcher(p[1], pid1, cg, spec, &up, up_len);
	close(p[1]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	struct report r;
	int n = lms_fd_read_full(p[0], &r, sizeof(r));
	close(p[0]);
	if (n != 1)
		return lms_error_set(err, LMS_ERR_SETUP, 0, "network: the DNS forwarder ended before it listened");
	r.what[sizeof(r.what) - 1] = '\0';
	if (r.errnum != 0)
		return lms_error_set(err, LMS_ERR_SETUP, r.errnum, "network: DNS forwarder: %s", r.what);
	return 0;
}
