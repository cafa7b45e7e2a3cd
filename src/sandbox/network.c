#include "sandbox/network.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/fdio.h"
#include "core/fnv.h"
#include "net/cidr.h"
#include "net/forbidden.h"
#include "net/allowlist.h"
#include "net/nft-rules.h"
#include "net/resolver.h"
#include "sandbox/net-dns.h"

/* The interface pasta makes in the namespace: a fixed name, whatever the host's is called. */
#define NS_IFNAME "eth0"
/* What a helper may say on standard error before it fails: enough for the message. */
#define STDERR_MAX 2048

/* Debian's places; the spawner has no PATH (it runs with an empty environment). */
const char *
lms_network_tool(const char *name)
{
	static const char *const dirs[] = {"/usr/bin", "/usr/sbin", "/bin", "/sbin", NULL};
	static char found[2][64];
	int slot = strcmp(name, "pasta") == 0 ? 0 : 1;
	for (const char *const *d = dirs; *d; d++) {
		snprintf(found[slot], sizeof(found[slot]), "%s/%s", *d, name);
		if (access(found[slot], X_OK) == 0)
			return found[slot];
	}
	return NULL;
}

int
lms_network_check(struct lms_error **err)
{
	/* The filter and pasta join the sandbox's network namespace from the host side, which needs
	 * CAP_SYS_ADMIN in the host's user namespace: a user's own sandbox cannot have them. */
	if (geteuid() != 0)
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, 0,
				     "network: a network sandbox needs root (its packet filter and pasta are attached "
				     "from the host side); run as root or through the daemon");
	if (lms_network_tool("pasta") == NULL)
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, 0,
				     "network: pasta is not installed on this host (install Debian's passt package)");
	if (lms_network_tool("nft") == NULL)
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, 0,
				     "network: nft is not installed on this host (install Debian's nftables package)");
	return 0;
}

int
lms_network_parse_private(const char *list, struct lms_cidr **out, size_t *n, struct lms_error **err)
{
	*out = NULL;
	*n = 0;
	if (list == NULL || *list == '\0')
		return 0;
	size_t cap = 1;
	for (const char *p = list; *p; p++)
		cap += *p == ',';
	struct lms_cidr *r = xcalloc(cap, sizeof(*r));
	_cleanup_free_ char *copy = xstrdup(list);
	char *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (lms_cidr_parse(tok, &r[*n], err) < 0) {
			free(r);
			return lms_error_prefix(err, "network: --network-allow-private");
		}
		(*n)++;
	}
	*out = r;
	return 0;
}

int
lms_network_loopback_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	struct ifreq ifr = {0};
	memcpy(ifr.ifr_name, "lo", sizeof("lo"));
	int r = ioctl(s, SIOCGIFFLAGS, &ifr);
	if (r == 0 && !(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		r = ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	int e = errno;
	close(s);
	errno = e;
	return r;
}

void
lms_network_close_from(int first)
{
#if HAVE_SYS_CLOSE_RANGE
	if (syscall(SYS_close_range, (unsigned)first, ~0U, 0U) == 0)
		return;
#endif
	long max = sysconf(_SC_OPEN_MAX);
	for (long fd = first; fd < (max > 0 ? max : 65536); fd++)
		close((int)fd);
}

/* How long a helper may take (pasta: until its tap is configured) before it is killed. */
#define HELPER_TIMEOUT_MS 20000

/* Waits for pid, killing it after HELPER_TIMEOUT_MS: a hung pasta must not hang the worker. */
static int
wait_bounded(pid_t pid, bool *killed)
{
	int status = 0;
	*killed = false;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd >= 0) {
		struct pollfd p = {.fd = pidfd, .events = POLLIN};
		int r;
		while ((r = poll(&p, 1, HELPER_TIMEOUT_MS)) < 0 && errno == EINTR)
			;
		close(pidfd);
		if (r == 0) {
			kill(pid, SIGKILL);
			*killed = true;
		}
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

/* A helper started, not yet waited for. */
struct helper {
	pid_t pid;
	int err_fd; /* its standard error */
	const char *what;
};

/* Starts argv (a tool of lms_network_tool) in a child made ready by `enter` and feeds it `input` on its
 * standard input. */
static int
start_helper(char *const argv[], int (*enter)(void *), void *arg, const char *input, const char *what, struct helper *h,
	     struct lms_error **err)
{
	*h = (struct helper){.pid = -1, .err_fd = -1, .what = what};
	int in[2] = {-1, -1}, errp[2] = {-1, -1};
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		int e = errno;
		lms_fd_close_all(in, 2);
		return lms_error_set(err, LMS_ERR_SETUP, e, "network: pipe for %s", what);
	}
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		lms_fd_close_all(in, 2);
		lms_fd_close_all(errp, 2);
		return lms_error_set(err, LMS_ERR_SETUP, e, "network: fork for %s", what);
	}
	if (pid == 0) {
		/* Our callers ignore SIGPIPE, and Debian 12's pasta takes an inherited SIG_IGN for a failure
		 * to set it ("Couldn't install signal handlers"): the tools start with default signals. */
		sigset_t none;
		sigemptyset(&none);
		signal(SIGPIPE, SIG_DFL);
		sigprocmask(SIG_SETMASK, &none, NULL);
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (dup2(in[0], 0) < 0 || dup2(null, 1) < 0 || dup2(errp[1], 2) < 0)
			_exit(126);
		if (enter(arg) < 0) {
			dprintf(2, "%s: %s", what, strerror(errno));
			_exit(126);
		}
		/* pasta's daemon lives as long as the sandbox: it must hold none of the worker's descriptors
		 * (an events pipe it held would never end for the daemon). */
		lms_network_close_from(3);
		char *envp[] = {NULL};
		execve(argv[0], argv, envp);
		dprintf(2, "execute %s: %s", argv[0], strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(errp[1]);
	if (input != NULL)
		(void)lms_fd_write_all(in[1], input, strlen(input));
	close(in[1]);
	h->pid = pid;
	h->err_fd = errp[0];
	return 0;
}

/* Waits for a started helper (killed after HELPER_TIMEOUT_MS); its standard error becomes the error's text
 * when it failed. A helper that was never started (pid -1) is a no-op. */
static int
finish_helper(struct helper *h, struct lms_error **err)
{
	if (h->pid < 0)
		return 0;
	bool killed;
	int status = wait_bounded(h->pid, &killed);
	h->pid = -1;
	if (killed) {
		close(steal_fd(&h->err_fd));
		return lms_error_set(err, LMS_ERR_SETUP, 0, "network: %s did not finish within %d ms", h->what,
				     HELPER_TIMEOUT_MS);
	}
	/* pasta's daemon keeps no copy of the pipe (it reopens its standard streams on /dev/null): what is
	 * in it now is all there is. */
	char text[STDERR_MAX] = "";
	fcntl(h->err_fd, F_SETFL, O_NONBLOCK);
	ssize_t n = read(h->err_fd, text, sizeof(text) - 1);
	close(steal_fd(&h->err_fd));
	if (n > 0) {
		text[n] = '\0';
		for (char *p = text; *p; p++)
			if (*p == '\n' && p[1] != '\0')
				*p = ' ';
		text[strcspn(text, "\n")] = '\0';
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	return lms_error_set(
	    err, LMS_ERR_SETUP, 0, "network: %s failed (%s %d)%s%s", h->what, WIFSIGNALED(status) ? "signal" : "status",
	    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), n > 0 ? ": " : "", n > 0 ? text : "");
}

struct nft_enter {
	pid_t pid1;
};

/* The nft child joins the sandbox's network namespace only: it is host root there (the namespace's
 * owner is a user namespace our root made), which a command of the sandbox never is. */
static int
enter_netns(void *arg)
{
	const struct nft_enter *e = arg;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)e->pid1);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
		return -1;
	close(fd);
	return 0;
}

struct pasta_enter {
	const struct lms_cgroup *cg;
	pid_t pid1;
};

/* Where pasta's child finds the sandbox's namespace: /proc/PID/ns/net bound onto a file of a tmpfs of its
 * own mount namespace. pasta drops CAP_SYS_PTRACE before it opens the namespace, and the proc link of a
 * process of another uid (PID 1 is the sandbox's root) needs it; a bound nsfs file needs only its mode. */
#define PASTA_NETNS "/tmp/netns"

/* pasta's child: into the sandbox's cgroup (its daemon is forked from it and stays there, counted and
 * killed with the sandbox), into a mount namespace of its own with the namespace's file. pasta does no
 * DNS: the sandbox's own forwarder (sandbox/net-dns.c) does. */
static int
enter_pasta(void *arg)
{
	const struct pasta_enter *e = arg;
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/%d/ns/net", (int)e->pid1);
	if (lms_cgroup_attach(e->cg, getpid(), NULL) < 0 || unshare(CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=16k,mode=0755") < 0)
		return -1;
	int fd = open(PASTA_NETNS, O_CREAT | O_WRONLY | O_CLOEXEC, 0444);
	if (fd < 0)
		return -1;
	close(fd);
	if (mount(proc, PASTA_NETNS, NULL, MS_BIND, NULL) < 0)
		return -1;
	return 0;
}

/* The sandbox's allowlist, comma-separated (the server validated it; a bad entry here is refused). */
static int
parse_allowlist(const char *list, struct lms_allowlist **out, struct lms_error **err)
{
	struct lms_allowlist *a = xcalloc(1, sizeof(*a));
	if (lms_allowlist_add_list(a, list, err) < 0) {
		free(a);
		return lms_error_prefix(err, "network");
	}
	*out = a;
	return 0;
}

static int
start_filter(pid_t pid1, const struct lms_sandbox_spec *spec, struct helper *h, struct lms_error **err)
{
	struct lms_cidr *allowed = NULL;
	size_t n_allowed = 0, n_host = 0;
	struct lms_net_addr *host = NULL;
	if (lms_network_parse_private(spec->net_allow_private, &allowed, &n_allowed, err) < 0)
		return -1;
	if (lms_net_host_addrs(&host, &n_host, err) < 0) {
		free(allowed);
		return lms_error_prefix(err, "network");
	}
	struct lms_allowlist *allow = NULL;
	if (spec->net_allow && parse_allowlist(spec->net_allow, &allow, err) < 0) {
		free(allowed);
		free(host);
		return -1;
	}
	struct lms_buf rules = {0};
	lms_net_nft_ruleset(&rules, allowed, n_allowed, host, n_host, allow);
	free(allow);
	free(allowed);
	free(host);
	char *argv[] = {(char *)lms_network_tool("nft"), (char *)"-f", (char *)"-", NULL};
	struct nft_enter e = {.pid1 = pid1};
	int r = start_helper(argv, enter_netns, &e, rules.data, "install the packet filter (nft -f -)", h, err);
	lms_buf_clear(&rules);
	return r;
}

int
lms_network_up(pid_t pid1, const struct lms_cgroup *cg, const struct lms_sandbox_spec *spec, struct lms_error **err)
{
	if (lms_network_check(err) < 0)
		return -1;
	/* -t/-u/-T/-U none: pasta's default `auto` would forward the sandbox's loopback ports to the host's and
	 * publish its ports on the host. --no-map-gw: else the gateway's address is the host. --runas 0: Debian
	 * 12's pasta joins the namespace after it changes uid, and only host root may join a sandbox's
	 * (docs/SECURITY.md "Network" says what confines it). Started in the background: its first process exits
	 * once the interface is configured, which is our readiness. */
	char *argv[] = {(char *)lms_network_tool("pasta"),
			(char *)"--netns",
			(char *)PASTA_NETNS,
			(char *)"--runas",
			(char *)"0",
			(char *)"--config-net",
			(char *)"-I",
			(char *)NS_IFNAME,
			(char *)"-t",
			(char *)"none",
			(char *)"-u",
			(char *)"none",
			(char *)"-T",
			(char *)"none",
			(char *)"-U",
			(char *)"none",
			(char *)"--no-map-gw",
			(char *)"-q",
			(char *)"-l",
			(char *)"/dev/null",
			NULL};
	struct pasta_enter e = {.cg = cg, .pid1 = pid1};
	/* The three side by side: nothing of the sandbox runs before all are in place (PID 1 waits for this
	 * worker's word), so the order among them does not matter, and a failure of any ends the sandbox. */
	struct helper filter = {.pid = -1, .err_fd = -1}, pasta = {.pid = -1, .err_fd = -1};
	int r = start_filter(pid1, spec, &filter, err);
	if (r == 0)
		r = start_helper(argv, enter_pasta, &e, NULL, "start pasta", &pasta, err);
	if (r == 0)
		r = lms_network_dns_start(pid1, cg, spec, err);
	/* Both are waited for, whatever failed: no helper is left unreaped (the first error stands). */
	if (finish_helper(&filter, err) < 0)
		r = -1;
	if (finish_helper(&pasta, err) < 0)
		r = -1;
	return r;
}

uint64_t
lms_network_host_stamp(const struct lms_sandbox_spec *spec)
{
	struct lms_net_addr *host = NULL;
	size_t n = 0;
	if (lms_net_host_addrs(&host, &n, NULL) < 0)
		return 0;
	uint64_t h = LMS_FNV1A_INIT;
	for (size_t i = 0; i < n; i++) {
		h = lms_fnv1a(h, &host[i].family, sizeof(host[i].family));
		h = lms_fnv1a(h, host[i].addr, host[i].family == AF_INET6 ? 16 : 4);
	}
	free(host);
	struct sockaddr_storage up;
	socklen_t up_len = 0;
	if ((spec->net_dns ? lms_net_resolver_parse(spec->net_dns, &up, &up_len, NULL)
			   : lms_net_resolver_from_conf("/etc/resolv.conf", &up, &up_len, NULL)) < 0)
		return 0;
	if (up.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&up;
		h = lms_fnv1a(h, &a->sin6_port, sizeof(a->sin6_port));
		h = lms_fnv1a(h, &a->sin6_addr, sizeof(a->sin6_addr));
		h = lms_fnv1a(h, &a->sin6_scope_id, sizeof(a->sin6_scope_id));
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&up;
		h = lms_fnv1a(h, &a->sin_port, sizeof(a->sin_port));
		h = lms_fnv1a(h, &a->sin_addr, sizeof(a->sin_addr));
	}
	return h != 0 ? h : 1;
}

int
lms_network_counters_open(pid_t pid1)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/net/dev", (int)pid1);
	return open(path, O_RDONLY | O_CLOEXEC);
}

void
lms_network_counters(int fd, uint64_t *rx, uint64_t *tx)
{
	*rx = *tx = 0;
	char text[8192];
	ssize_t len = fd >= 0 ? pread(fd, text, sizeof(text) - 1, 0) : -1;
	if (len <= 0)
		return;
	text[len] = '\0';
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *colon = strchr(line, ':');
		if (colon == NULL)
			continue;
		*colon = '\0';
		const char *name = line + strspn(line, " ");
		if (strcmp(name, "lo") == 0)
			continue;
		unsigned long long v[9];
		if (sscanf(colon + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
			   &v[5], &v[6], &v[7], &v[8]) == 9) {
			*rx += v[0];
			*tx += v[8];
		}
	}
}
