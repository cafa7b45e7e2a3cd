/*
 * Running one command in a sandbox and watching it: the launch goes to PID 1 with the command's own
 * pipes (init-proto.h), then one poll(2) loop serves its output, its input, PID 1's reports, the
 * deadline, the CPU limit and the caller's cancel descriptor, never by sleeping. The call returns when
 * the command exits, whatever it left running in the background.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/fdio.h"
#include "sandbox/child.h"
#include "sandbox/internal.h"
#include "sandbox/network.h"

static const char *const default_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/work",
    "LANG=C.UTF-8",
    "TERM=dumb",
    NULL,
};

/* The command's whole environment: the defaults, each replaced by a spec entry of the same name. */
static char **
build_env(const struct lms_sandbox_spec *spec)
{
	size_t n_extra = 0, n = 0;
	while (spec->env && spec->env[n_extra])
		n_extra++;
	char **envp = xcalloc(n_extra + 7, sizeof(char *)); /* the defaults, and room for two more (the GPU's) */
	for (const char *const *d = default_env; *d; d++) {
		size_t key = (size_t)(strchr(*d, '=') - *d) + 1;
		bool overridden = false;
		for (size_t i = 0; i < n_extra; i++)
			overridden |= strncmp(spec->env[i], *d, key) == 0;
		if (!overridden)
			envp[n++] = xstrdup(*d);
	}
	for (size_t i = 0; i < n_extra; i++) {
		size_t key = (size_t)(strchr(spec->env[i], '=') - spec->env[i]) + 1;
		bool later = false; /* of repeated names, the last wins */
		for (size_t j = i + 1; j < n_extra; j++)
			later |= strncmp(spec->env[j], spec->env[i], key) == 0;
		if (!later)
			envp[n++] = xstrdup(spec->env[i]);
	}
	return envp;
}

/* The value of name in envp ("NAME="), or NULL. */
static char **
env_slot(char **envp, const char *name)
{
	size_t n = strlen(name);
	for (char **e = envp; *e; e++)
		if (strncmp(*e, name, n) == 0)
			return e;
	return NULL;
}

/* dir first on the list variable name ("PATH=", "LD_LIBRARY_PATH="), unless it is on it already. envp
 * has room for one more entry. */
static void
env_prepend(char **envp, const char *name, const char *dir)
{
	char **slot = env_slot(envp, name);
	if (slot == NULL) {
		while (*envp)
			envp++;
		*envp = xasprintf("%s%s", name, dir);
		return;
	}
	const char *list = *slot + strlen(name);
	size_t n = strlen(dir);
	for (const char *p = list; p; p = strchr(p, ':') ? strchr(p, ':') + 1 : NULL)
		if (strncmp(p, dir, n) == 0 && (p[n] == ':' || p[n] == '\0'))
			return;
	char *joined = list[0] ? xasprintf("%s%s:%s", name, dir, list) : xasprintf("%s%s", name, dir);
	free(*slot);
	*slot = joined;
}

/* The launch spec in a memfd: the command with its whole environment, without its input (that goes
 * down the stdin pipe). */
static int
launch_spec_fd(const struct lms_sandbox *sb, const struct lms_sandbox_spec *spec, struct lms_error **err)
{
	_cleanup_strv_ char **envp = build_env(spec);
	if (sb->gpu_driver) {
		/* The driver's files bound in (mount.c) come first: an image's stub libcuda must not win. */
		env_prepend(envp, "LD_LIBRARY_PATH=", LMS_GPU_DRIVER_LIB_DIR);
		env_prepend(envp, "PATH=", LMS_GPU_DRIVER_BIN_DIR);
	}
	struct lms_sandbox_spec msg = *spec;
	msg.env = envp;
	msg.stdin_data = NULL;
	msg.stdin_len = 0;
	struct lms_buf b = {0};
	lms_spec_encode(&msg, &b);
	int fd = -1;
	if (b.len > LMS_LAUNCH_MAX)
		lms_error_set(err, LMS_ERR_INVALID, 0, "the command and its environment exceed %u bytes",
			      LMS_LAUNCH_MAX);
	else if ((fd = memfd_create("lms-launch", MFD_CLOEXEC)) < 0)
		lms_error_set(err, LMS_ERR_SETUP, errno, "memfd_create for the launch");
	else if (lms_fd_write_all(fd, b.data, b.len) < 0) {
		lms_error_set(err, LMS_ERR_SETUP, errno, "write the launch");
		close(steal_fd(&fd));
	}
	lms_buf_clear(&b);
	return fd;
}

struct watch {
	const struct lms_sandbox_spec *spec;
	const struct lms_output *out;
	struct lms_sandbox_result *result;
	struct lms_sandbox *sb;
	uint32_t id;
	bool last;
	int out_fd[3]; /* indexed by enum lms_stream; -1 once at EOF */
	uint64_t out_seen[3];
	int in_fd;
	size_t in_off;
	bool exited, killed;
	struct lms_init_msg report; /* EXITED, or FAILED */
	double deadline, next_cpu_check;
	double cpu_base_ms;	/* the group's CPU time at launch: what ran before is not this command's */
	struct lms_cgroup *own; /* the command's own group (its limits below the sandbox's), or NULL */
	int reply;		/* our end of its own report socket (LMS_INIT_REPLY), or -1: the sandbox's */
	uint64_t oom_base;	/* the sandbox's OOM kills before it: those were another command's */
};

/* Our end of each pipe (the parent's never block: one poll loop serves them all), and the ends the
 * launch sends to PID 1 in init-proto.h's order. */
static int
open_pipes(struct watch *w, int child[LMS_INIT_NFDS], size_t *nfds, struct lms_error **err)
{
	int p[2];
	for (int s = 1; s <= 2; s++) {
		if (pipe2(p, O_CLOEXEC) < 0)
			return lms_error_set(err, LMS_ERR_SETUP, errno, "create the output pipes");
		w->out_fd[s] = p[0];
		child[s == 1 ? LMS_INIT_FD_STDOUT : LMS_INIT_FD_STDERR] = p[1];
		*nfds = s == 1 ? 2 : 3;
		if (fcntl(p[0], F_SETFL, O_NONBLOCK) < 0)
			return lms_error_set(err, LMS_ERR_SETUP, errno, "make the output pipes non-blocking");
	}
	if (w->spec->stdin_data == NULL)
		return 0;
	if (pipe2(p, O_CLOEXEC) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "create the input pipe");
	w->in_fd = p[1];
	child[LMS_INIT_FD_STDIN] = p[0];
	*nfds = 4;
	if (fcntl(p[1], F_SETFL, O_NONBLOCK) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "make the input pipe non-blocking");
	return 0;
}

/* A command of a lasting sandbox that asks for less memory or fewer processes than the sandbox has
 * runs in a group of its own below the sandbox's; *own stays NULL otherwise (the common case: no
 * group to make, and PID 1 spawns as before). */
static int
own_group(struct lms_sandbox *sb, const struct lms_limits *want, uint32_t id, struct lms_cgroup **own,
	  struct lms_error **err)
{
	*own = NULL;
	if (want->memory_mb >= sb->base.memory_mb && want->pids >= sb->base.pids)
		return 0;
	char name[16];
	snprintf(name, sizeof(name), "x%u", (unsigned)id);
	return lms_cgroup_child_create(sb->cg, name, want, own, err);
}

/* The launch's join descriptors (init-proto.h, LMS_INIT_CGROUP) at fds[*nfds...], and its flag. */
static int
add_join_fds(const struct lms_cgroup *own, int *fds, size_t *nfds, struct lms_init_msg *msg, struct lms_error **err)
{
	if (own == NULL)
		return 0;
	size_t n = 0;
	if (lms_cgroup_join_fds(own, fds + *nfds, &n, err) < 0)
		return -1;
	*nfds += n;
	msg->flags |= LMS_INIT_CGROUP;
	msg->status = (int32_t)n;
	return 0;
}

static int
send_launch(struct watch *w, struct lms_error **err)
{
	int fds[LMS_INIT_MAX_FDS] = {-1, -1, -1, -1, -1, -1, -1, -1};
	size_t nfds = 1;
	int r = (fds[LMS_INIT_FD_SPEC] = launch_spec_fd(w->sb, w->spec, err)) < 0 ? -1 : open_pipes(w, fds, &nfds, err);
	struct lms_init_msg msg = {
	    .type = LMS_INIT_LAUNCH,
	    .id = w->id,
	    .flags = (w->last ? LMS_INIT_LAST : 0) | (nfds > LMS_INIT_FD_STDIN ? LMS_INIT_STDIN : 0),
	};
	/* A lasting sandbox's command reports on a socket of its own: another command of the sandbox may be
	 * watched at the same time by another process (lms_sandbox_forked). */
	int pair[2] = {-1, -1};
	if (r == 0 && !w->last) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
			r = lms_error_set(err, LMS_ERR_SETUP, errno, "create the command's report socket");
		else {
			w->reply = pair[0];
			fds[nfds++] = pair[1];
			msg.flags |= LMS_INIT_REPLY;
		}
	}
	if (r == 0)
		r = add_join_fds(w->own, fds, &nfds, &msg, err);
	if (r == 0 && lms_fd_send(w->sb->ctl, &msg, sizeof(msg), fds, nfds) != (ssize_t)sizeof(msg))
		r = lms_error_set(err, LMS_ERR_SETUP, errno, "send the command to the sandbox's init");
	/* PID 1 holds its own copies now: ours would hide the end-of-file of each pipe. */
	lms_fd_close_all(fds, nfds);
	return r;
}

static void
kill_command(struct watch *w)
{
	if (w->killed || w->exited)
		return;
	w->killed = true;
	if (w->last) {
		/* A one-shot sandbox ends with its command: SIGKILL to PID 1 kills its whole namespace. */
		kill(w->sb->pid, SIGKILL);
		return;
	}
	struct lms_init_msg msg = {.type = LMS_INIT_KILL, .id = w->id};
	if (send(w->sb->ctl, &msg, sizeof(msg), MSG_NOSIGNAL) != (ssize_t)sizeof(msg))
		kill(w->sb->pid, SIGKILL); /* PID 1 cannot be told: the sandbox goes with it */
}

/* Reads what the stream has, within the output cap (the rest is read and discarded). At most `rounds`
 * reads: after the command's exit, a process it left behind may keep writing. */
static void
read_stream(struct watch *w, enum lms_stream s, int rounds)
{
	char chunk[65536];
	for (int i = 0; i < rounds && w->out_fd[s] >= 0; i++) {
		ssize_t n = read(w->out_fd[s], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			close(w->out_fd[s]);
			w->out_fd[s] = -1;
			return;
		}
		uint64_t cap = w->spec->limits.output_bytes;
		uint64_t room = w->out_seen[s] < cap ? cap - w->out_seen[s] : 0;
		size_t keep = (uint64_t)n < room ? (size_t)n : (size_t)room;
		w->out_seen[s] += (uint64_t)n;
		if (keep > 0 && w->out && w->out->fn)
			w->out->fn(w->out->userdata, s, chunk, keep);
		if (keep < (size_t)n)
			*(s == LMS_STREAM_STDOUT ? &w->result->stdout_truncated : &w->result->stderr_truncated) = true;
		if ((size_t)n < sizeof(chunk))
			return;
	}
}

static void
write_stdin(struct watch *w)
{
	const char *data = w->spec->stdin_data;
	while (w->in_off < w->spec->stdin_len) {
		ssize_t n = write(w->in_fd, data + w->in_off, w->spec->stdin_len - w->in_off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0)
			break; /* EPIPE: the command does not read its input */
		w->in_off += (size_t)n;
	}
	close(w->in_fd);
	w->in_fd = -1;
}

static void
check_cpu(struct watch *w, double now)
{
	uint64_t used_ns = 0;
	if (lms_cgroup_cpu_ns(w->sb->cg, &used_ns, NULL) < 0) {
		w->next_cpu_check = -1; /* no accounting: the RLIMIT_CPU backstop remains */
		return;
	}
	double used = (double)used_ns / 1e6 - w->cpu_base_ms, limit = (double)w->spec->limits.cpu_ms;
	if (used >= limit) {
		w->result->cpu_exceeded = true;
		kill_command(w);
		return;
	}
	/* The group cannot burn CPU faster than one ms per ms per core: wake when it first could be over. */
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	w->next_cpu_check = now + (limit - used) / (double)(cores > 0 ? cores : 1) + 1;
}

/* One record from PID 1. Records of other launches, of the wrong size or type, are ignored: PID 1
 * shares the sandbox with the commands, so what it says is checked, not trusted. */
static void
read_report(struct watch *w)
{
	struct lms_init_msg msg;
	ssize_t n = recv(w->reply >= 0 ? w->reply : w->sb->ctl, &msg, sizeof(msg), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* PID 1 has gone, and with it every process of the sandbox. */
		w->sb->dead = true;
		w->exited = true;
		w->report = (struct lms_init_msg){.type = 0};
		return;
	}
	if (n != (ssize_t)sizeof(msg) || msg.id != w->id)
		return;
	if (msg.type == LMS_INIT_EXITED || msg.type == LMS_INIT_FAILED) {
		msg.what[sizeof(msg.what) - 1] = '\0';
		w->report = msg;
		w->exited = true;
	}
}

/* Whether the output's reader is behind: then its descriptor is watched too, and drained as it can. */
static bool
output_pending(const struct watch *w)
{
	const struct lms_output *o = w->out;
	return o && o->drain_fd >= 0 && o->pending && o->drain && o->pending(o->userdata);
}

static int
watch_loop(struct watch *w, struct lms_error **err)
{
	while (!w->exited) {
		struct pollfd fds[7];
		enum { OUT, ERR, IN, CTL, CANCEL, DRAIN, WAKE };
		fds[OUT] = (struct pollfd){.fd = w->out_fd[1], .events = POLLIN};
		fds[ERR] = (struct pollfd){.fd = w->out_fd[2], .events = POLLIN};
		fds[IN] = (struct pollfd){.fd = w->in_fd, .events = POLLOUT};
		fds[CTL] = (struct pollfd){.fd = w->reply >= 0 ? w->reply : w->sb->ctl, .events = POLLIN};
		fds[CANCEL] = (struct pollfd){.fd = w->killed ? -1 : w->spec->cancel_fd, .events = POLLIN};
		fds[DRAIN] = (struct pollfd){.fd = output_pending(w) ? w->out->drain_fd : -1, .events = POLLOUT};
		fds[WAKE] = (struct pollfd){.fd = w->out && w->out->wake ? w->out->wake_fd : -1, .events = POLLIN};

		double now = lms_monotonic_ms(), wake = w->killed ? -1 : w->deadline;
		if (!w->killed && w->next_cpu_check > 0 && w->next_cpu_check < wake)
			wake = w->next_cpu_check;
		int timeout = wake < 0 ? -1 : wake <= now ? 0 : (int)(wake - now) + 1;
		int r = poll(fds, 7, timeout);
		if (r < 0 && errno != EINTR) {
			kill_command(w);
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "poll the sandbox");
		}
		now = lms_monotonic_ms();
		if (!w->killed && now >= w->deadline) {
			w->result->timed_out = true;
			kill_command(w);
		}
		if (!w->killed && w->next_cpu_check > 0 && now >= w->next_cpu_check)
			check_cpu(w, now);
		if (r <= 0)
			continue;
		if (fds[OUT].revents)
			read_stream(w, LMS_STREAM_STDOUT, 16);
		if (fds[ERR].revents)
			read_stream(w, LMS_STREAM_STDERR, 16);
		if (fds[IN].revents)
			write_stdin(w);
		if (fds[CANCEL].revents) {
			w->result->cancelled = true;
			kill_command(w);
		}
		if (fds[CTL].revents)
			read_report(w);
		if (fds[DRAIN].revents)
			w->out->drain(w->out->userdata);
		if (fds[WAKE].revents && w->out->wake)
			w->out->wake(w->out->wake_data);
	}
	/* Everything the command wrote before it exited is in the pipes now. */
	read_stream(w, LMS_STREAM_STDOUT, 64);
	read_stream(w, LMS_STREAM_STDERR, 64);
	return 0;
}

static void
fill_result(struct watch *w, int status)
{
	struct lms_sandbox_result *res = w->result;
	if (WIFSIGNALED(status)) {
		res->signal = WTERMSIG(status);
		res->exit_code = 128 + res->signal;
	} else {
		res->exit_code = WEXITSTATUS(status);
	}
	uint64_t cpu_ns;
	if (lms_cgroup_cpu_ns(w->sb->cg, &cpu_ns, NULL) == 0)
		res->cpu_ms = (double)cpu_ns / 1e6 - w->cpu_base_ms;
	else
		res->cpu_ms = (double)(w->report.utime_us + w->report.stime_us) / 1e3;
	res->max_rss_kb = (long)w->report.maxrss_kb;
	/* A command killed with its PID 1 (timeout, CPU limit, cancel) is never reaped by PID 1, so its
	 * rusage is lost: the group's peak is the nearest figure (an upper bound: it counts page cache). */
	if (w->killed) {
		long peak = lms_cgroup_memory_peak_kb(w->own ? w->own : w->sb->cg);
		if (peak > res->max_rss_kb)
			res->max_rss_kb = peak;
	}
	/* Its own limit, or the sandbox's since it started (v1 counts a kill in the group that hit its limit
	 * only; earlier kills were other commands'). */
	res->oom_killed = (w->own && lms_cgroup_oom_killed(w->own)) || lms_cgroup_oom_kills(w->sb->cg) > w->oom_base;
	res->pids_limit_hit = w->own && lms_cgroup_pids_hit(w->own);
}

/* Gives a sandbox prepared at low priority the caller's. Coming down needs CAP_SYS_NICE (or RLIMIT_NICE),
 * which the pool checks before it prepares at a low priority; elsewhere the values already match. */
static void
match_priority(pid_t pid)
{
	errno = 0;
	int nice = getpriority(PRIO_PROCESS, 0);
	if (errno == 0 && getpriority(PRIO_PROCESS, (id_t)pid) != nice)
		(void)setpriority(PRIO_PROCESS, (id_t)pid, nice);
}

static int
fit_limits(struct lms_sandbox *sb, const struct lms_sandbox_spec *spec, bool last, struct lms_error **err)
{
	const struct lms_limits *want = &spec->limits, *base = &sb->base;
	if (spec->gpus != sb->gpus)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "the sandbox was prepared %s GPUs",
				     sb->gpus ? "with other" : "without");
	if (!lms_limits_fit_prepared(base, want))
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "limits exceed those the sandbox was prepared with (memory %llu MiB, pids %llu, "
				     "disk exactly %llu MiB, cpus %.3f, 0 = none)",
				     (unsigned long long)base->memory_mb, (unsigned long long)base->pids,
				     (unsigned long long)base->disk_mb, (double)base->millicpus / 1000);
	/* The sandbox's own cgroup takes a one-shot command's limits. A lasting sandbox keeps its own:
	 * several commands share it. */
	if (!last ||
	    (want->memory_mb == base->memory_mb && want->pids == base->pids && want->millicpus == base->millicpus))
		return 0;
	return lms_cgroup_set_limits(sb->cg, want, err);
}

int
lms_sandbox_limit(struct lms_sandbox *sb, const struct lms_limits *want, struct lms_error **err)
{
	struct lms_sandbox_spec spec = {.limits = *want, .gpus = sb->gpus};
	if (fit_limits(sb, &spec, true, err) < 0)
		return -1;
	uint64_t timeout = sb->base.timeout_ms;
	sb->base = *want;
	sb->base.timeout_ms = timeout;
	return 0;
}

int
lms_sandbox_exec(struct lms_sandbox *sb, const struct lms_sandbox_spec *spec, unsigned flags,
		 const struct lms_output *out, struct lms_sandbox_result *result, struct lms_error **err)
{
	*result = (struct lms_sandbox_result){0};
	struct watch w = {
	    .spec = spec,
	    .out = out,
	    .result = result,
	    .sb = sb,
	    .id = sb->next_id++,
	    .last = flags & LMS_EXEC_LAST,
	    .out_fd = {-1, -1, -1},
	    .in_fd = -1,
	    .reply = -1,
	};
	if (sb->dead)
		return lms_error_set(err, LMS_ERR_SETUP, 0, "the sandbox has ended: its init is gone");
	if (lms_sandbox_spec_validate(spec, err) < 0 || lms_sandbox_check_support(spec, err) < 0 ||
	    fit_limits(sb, spec, w.last, err) < 0 || lms_sandbox_wait_ready(sb, err) < 0)
		return -1;
	if (!w.last) {
		lms_sandbox_sweep_groups(sb, false);
		if (own_group(sb, &spec->limits, w.id, &w.own, err) < 0)
			return -1;
		w.oom_base = lms_cgroup_oom_kills(sb->cg);
	}
	match_priority(sb->pid);
	uint64_t cpu_ns = 0;
	if (lms_cgroup_cpu_ns(sb->cg, &cpu_ns, NULL) == 0)
		w.cpu_base_ms = (double)cpu_ns / 1e6;
	uint64_t rx0 = 0, tx0 = 0;
	if (sb->network)
		lms_network_counters(sb->net_dev, &rx0, &tx0);
	double start = lms_monotonic_ms();
	w.deadline = start + (double)spec->limits.timeout_ms;
	w.next_cpu_check = spec->limits.cpu_ms > 0 ? start : -1;
	sb->watching = &w;
	int r = send_launch(&w, err);
	if (r == 0)
		r = watch_loop(&w, err);
	sb->watching = NULL;
	for (int s = 1; s <= 2; s++)
		if (w.out_fd[s] >= 0)
			close(w.out_fd[s]);
	if (w.in_fd >= 0)
		close(w.in_fd);
	if (w.reply >= 0)
		close(w.reply);
	result->duration_ms = lms_monotonic_ms() - start;
	if (r == 0 && w.report.type == LMS_INIT_EXITED)
		fill_result(&w, w.report.status);
	else if (r == 0 && w.report.type != LMS_INIT_FAILED && w.killed)
		fill_result(&w, W_EXITCODE(0, SIGKILL)); /* PID 1 went without a word: killed by us */
	/* The command's group ends with it, and so does whatever it left running in it: its limits bound
	 * everything it started (a server meant to outlive it is started in the background). */
	if (lms_cgroup_destroy(steal_pointer(&w.own), r < 0 ? NULL : err) < 0 && r == 0)
		return lms_error_prefix(err, "remove the command's own group");
	if (r < 0)
		return -1;
	if (sb->network) {
		uint64_t rx = 0, tx = 0;
		lms_network_counters(sb->net_dev, &rx, &tx);
		result->net_rx_bytes = rx >= rx0 ? rx - rx0 : 0;
		result->net_tx_bytes = tx >= tx0 ? tx - tx0 : 0;
	}
	if (w.report.type == LMS_INIT_FAILED && (w.report.flags & LMS_INIT_FAILED_CWD))
		return lms_error_set(err, LMS_ERR_INVALID, w.report.errnum, "cwd cannot be entered: %s", w.report.what);
	if (w.report.type == LMS_INIT_FAILED)
		return lms_error_set(err, LMS_ERR_SETUP, w.report.errnum, "%s", w.report.what);
	/* PID 1 went without a word: killed by us (timeout, cancel) or by something else. */
	if (w.report.type != LMS_INIT_EXITED && !w.killed)
		return lms_error_set(err, LMS_ERR_SETUP, 0, "the sandbox's init exited before the command did");
	return 0;
}

int
lms_sandbox_exec_last(struct lms_sandbox *sb, const struct lms_sandbox_spec *spec, const struct lms_output *out,
		      struct lms_sandbox_result *result, struct lms_error **err)
{
	/* A one-shot command runs behind the network it asked for, or none: never a pool sandbox's other. */
	if (spec->network != sb->network)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "the sandbox was prepared %s a network",
				     sb->network ? "with" : "without");
	int r = lms_sandbox_exec(sb, spec, LMS_EXEC_LAST, out, result, err);
	/* Everything of the command's PID namespace ends here; what lives outside it ends at destroy. */
	int status;
	lms_sandbox_kill_init(sb, &status);
	return r;
}

int
lms_sandbox_launch(struct lms_sandbox *sb, const struct lms_sandbox_spec *spec, const struct lms_output *out,
		   struct lms_sandbox_result *result, struct lms_error **err)
{
	int r = lms_sandbox_exec_last(sb, spec, out, result, err);
	struct lms_error *cleanup_err = NULL;
	if (lms_sandbox_destroy_checked(sb, &cleanup_err) < 0 && r == 0) {
		if (err != NULL)
			*err = steal_pointer(&cleanup_err);
		r = -1;
	}
	lms_error_free(cleanup_err);
	return r;
}

int
lms_sandbox_run(const struct lms_sandbox_spec *spec, const struct lms_output *out, struct lms_sandbox_result *result,
		struct lms_error **err)
{
	*result = (struct lms_sandbox_result){0};
	if (lms_sandbox_spec_validate(spec, err) < 0)
		return -1;
	struct lms_sandbox *sb;
	if (lms_sandbox_create(spec, &sb, err) < 0)
		return -1;
	return lms_sandbox_launch(sb, spec, out, result, err);
}

/* PID 1's answer to a background launch: STARTED, FAILED, or EXITED at once (it could not be spawned).
 * Nothing else can come meanwhile: no other launch of this sandbox runs while its worker waits here. */
static int
await_start(struct lms_sandbox *sb, uint32_t id, struct lms_init_msg *msg, struct lms_error **err)
{
	for (;;) {
		struct pollfd p = {.fd = sb->ctl, .events = POLLIN};
		int r = poll(&p, 1, 10000);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return lms_error_set(err, LMS_ERR_SETUP, r < 0 ? errno : ETIMEDOUT,
					     "wait for the sandbox's init to start the command");
		ssize_t n = recv(sb->ctl, msg, sizeof(*msg), 0);
		if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
			sb->dead = true;
			return lms_error_set(err, LMS_ERR_SETUP, 0, "the sandbox's init is gone");
		}
		if (n == (ssize_t)sizeof(*msg) && msg->id == id &&
		    (msg->type == LMS_INIT_STARTED || msg->type == LMS_INIT_FAILED || msg->type == LMS_INIT_EXITED)) {
			msg->what[sizeof(msg->what) - 1] = '\0';
			return 0;
		}
	}
}

int
lms_sandbox_start(struct lms_sandbox *sb, const struct lms_sandbox_spec *spec, const struct lms_background_io *io,
		  struct lms_sandbox_result *result, struct lms_error **err)
{
	*result = (struct lms_sandbox_result){0};
	if (sb->dead)
		return lms_error_set(err, LMS_ERR_SETUP, 0, "the sandbox has ended: its init is gone");
	if (lms_sandbox_spec_validate(spec, err) < 0 || lms_sandbox_check_support(spec, err) < 0 ||
	    fit_limits(sb, spec, false, err) < 0 || lms_sandbox_wait_ready(sb, err) < 0)
		return -1;
	match_priority(sb->pid);
	lms_sandbox_sweep_groups(sb, false);
	uint32_t id = sb->next_id++;
	struct lms_cgroup *own = NULL;
	if (own_group(sb, &spec->limits, id, &own, err) < 0)
		return -1;
	int fds[LMS_INIT_MAX_FDS] = {-1, io->output, io->output, io->input, io->status, io->control, -1, -1};
	size_t nfds = LMS_INIT_NFDS;
	struct lms_init_msg msg = {.type = LMS_INIT_LAUNCH, .id = id, .flags = LMS_INIT_STDIN | LMS_INIT_DETACHED};
	int r =
	    (fds[LMS_INIT_FD_SPEC] = launch_spec_fd(sb, spec, err)) < 0 ? -1 : add_join_fds(own, fds, &nfds, &msg, err);
	if (r == 0 && lms_fd_send(sb->ctl, &msg, sizeof(msg), fds, nfds) != (ssize_t)sizeof(msg))
		r = lms_error_set(err, LMS_ERR_SETUP, errno, "send the command to the sandbox's init");
	if (fds[LMS_INIT_FD_SPEC] >= 0)
		close(fds[LMS_INIT_FD_SPEC]);
	lms_fd_close_all(fds + LMS_INIT_NFDS, nfds - LMS_INIT_NFDS);
	if (r == 0)
		r = await_start(sb, id, &msg, err);
	if (r == 0 && msg.type == LMS_INIT_STARTED && own != NULL) {
		/* It outlives this call: removed once empty (lms_sandbox_sweep_groups), or with the sandbox. */
		sb->groups = xrealloc(sb->groups, (sb->n_groups + 1) * sizeof(*sb->groups));
		sb->groups[sb->n_groups++] = steal_pointer(&own);
	}
	lms_cgroup_destroy(own, NULL);
	if (r < 0)
		return -1;
	if (msg.type == LMS_INIT_FAILED && (msg.flags & LMS_INIT_FAILED_CWD))
		return lms_error_set(err, LMS_ERR_INVALID, msg.errnum, "cwd cannot be entered: %s", msg.what);
	if (msg.type == LMS_INIT_FAILED)
		return lms_error_set(err, LMS_ERR_SETUP, msg.errnum, "%s", msg.what);
	if (msg.type == LMS_INIT_STARTED) {
		result->pid = msg.pid;
		return 0;
	}
	/* Not started (no such program): its status is the shell's, and PID 1 said why on its output. */
	result->exit_code = WIFEXITED(msg.status) ? WEXITSTATUS(msg.status) : 126;
	return 0;
}

int
lms_background_status(int fd, struct lms_sandbox_result *res)
{
	struct lms_init_msg msg;
	ssize_t n;
	while ((n = read(fd, &msg, sizeof(msg))) < 0 && errno == EINTR)
		;
	if (n < 0)
		return -1;
	/* Only PID 1 holds the write end; still, a record of any other size or type is no exit. */
	if (n != (ssize_t)sizeof(msg) || msg.type != LMS_INIT_EXITED)
		return 0;
	*res = (struct lms_sandbox_result){0};
	if (WIFSIGNALED(msg.status)) {
		res->signal = WTERMSIG(msg.status);
		res->exit_code = 128 + res->signal;
	} else {
		res->exit_code = WEXITSTATUS(msg.status);
	}
	res->cpu_ms = (double)(msg.utime_us + msg.stime_us) / 1e3;
	res->max_rss_kb = (long)msg.maxrss_kb;
	return 1;
}

void
lms_sandbox_sweep_groups(struct lms_sandbox *sb, bool all)
{
	for (size_t i = 0; i < sb->n_groups;) {
		if (all || lms_cgroup_empty(sb->groups[i])) {
			lms_cgroup_destroy(sb->groups[i], NULL);
			sb->groups[i] = sb->groups[--sb->n_groups];
		} else {
			i++;
		}
	}
	if (all) {
		free(sb->groups);
		sb->groups = NULL;
	}
}

uint32_t
lms_sandbox_take_id(struct lms_sandbox *sb)
{
	return sb->next_id++;
}

void
lms_sandbox_forked(struct lms_sandbox *sb, uint32_t id)
{
	struct watch *w = sb->watching;
	if (w != NULL) {
		/* The parent's command: a copy of its input's write end here would keep its end-of-file from
		 * it, and a copy of its events pipe would hide the parent's death from the daemon. */
		int mine[] = {w->out_fd[1], w->out_fd[2],	w->in_fd,
			      w->reply,	    w->spec->cancel_fd, w->out ? w->out->drain_fd : -1};
		for (size_t i = 0; i < sizeof(mine) / sizeof(mine[0]); i++)
			if (mine[i] >= 0)
				close(mine[i]);
		sb->watching = NULL;
	}
	sb->next_id = id;
	sb->groups = NULL; /* the parent's to sweep */
	sb->n_groups = 0;
}
