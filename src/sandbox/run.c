/*
 * The parent's side of a run: prepare (seccomp program, environment, cgroup, pipes), clone the
 * sandbox's PID 1 into new namespaces, write its uid maps, then watch its output, its time and its
 * exit with poll(2) on the pipes and a pidfd, never by sleeping. Child side: child.c.
 *
 * PID 1 alone holds the write end of the report pipe (close-on-exec for the command), so the pipe
 * becomes readable only when PID 1 reports and exits: where no pidfd can be had, it stands in.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/file.h"
#include "sandbox/cgroup.h"
#include "sandbox/child.h"
#include "sandbox/sandbox.h"
#include "sandbox/seccomp.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

#define NS_FLAGS (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)

static const char *const default_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/work",
    "LANG=C.UTF-8",
    "TERM=dumb",
    NULL,
};

struct pipes {
	int sync[2], report[2], in[2], out[2], err[2];
};

static void
close_pair(int p[2])
{
	for (int i = 0; i < 2; i++)
		if (p[i] >= 0) {
			close(p[i]);
			p[i] = -1;
		}
}

static void
close_pipes(struct pipes *p)
{
	close_pair(p->sync);
	close_pair(p->report);
	close_pair(p->in);
	close_pair(p->out);
	close_pair(p->err);
}

/* All five, stdin's too: a prepared sandbox does not know yet whether its command will read input. */
static int
open_pipes(struct pipes *p, struct lms_error **err)
{
	int *all[] = {p->sync, p->report, p->in, p->out, p->err};
	for (size_t i = 0; i < 5; i++)
		all[i][0] = all[i][1] = -1;
	for (size_t i = 0; i < 5; i++)
		if (pipe2(all[i], O_CLOEXEC) < 0)
			return lms_error_set(err, LMS_ERR_SETUP, errno, "create pipes");
	/* The parent's ends never block: one poll loop serves them all. */
	int parent_ends[] = {p->report[0], p->in[1], p->out[0], p->err[0]};
	for (size_t i = 0; i < 4; i++)
		if (parent_ends[i] >= 0 && fcntl(parent_ends[i], F_SETFL, O_NONBLOCK) < 0)
			return lms_error_set(err, LMS_ERR_SETUP, errno, "make pipes non-blocking");
	return 0;
}

/* The command's whole environment: the defaults, each replaced by a spec entry of the same name. */
static char **
build_env(const struct lms_sandbox_spec *spec)
{
	size_t n_extra = 0, n = 0;
	while (spec->env && spec->env[n_extra])
		n_extra++;
	char **envp = xcalloc(n_extra + 5, sizeof(char *));
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

static int
write_id_maps(pid_t pid, bool privileged, struct lms_error **err)
{
	char path[64], map[64];
	if (privileged) {
		snprintf(map, sizeof(map), "0 %u %u\n", LMS_UID_BASE, LMS_UID_COUNT);
	} else {
		/* Unprivileged: only our own ids may be mapped, and setgroups must be denied first. */
		snprintf(path, sizeof(path), "/proc/%d/setgroups", (int)pid);
		if (lms_file_write(path, "deny", err) < 0)
			return lms_error_prefix(err, "user namespace");
		snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)getuid());
	}
	snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
	if (lms_file_write(path, map, err) < 0)
		return lms_error_prefix(err, "user namespace: write uid map");
	if (!privileged)
		snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)getgid());
	snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
	if (lms_file_write(path, map, err) < 0)
		return lms_error_prefix(err, "user namespace: write gid map");
	return 0;
}

/* clone3 gives a pidfd and CLONE_INTO_CGROUP in one call; older kernels get clone + pidfd_open. */
static pid_t
clone_sandbox(int cgroup_fd, int *pidfd, bool *into_cgroup, struct lms_error **err)
{
	pid_t pid = -1;
	*pidfd = -1;
	*into_cgroup = false;
#if HAVE_SYS_CLONE3
	struct clone_args args = {
	    .flags = NS_FLAGS | CLONE_PIDFD | (cgroup_fd >= 0 ? CLONE_INTO_CGROUP | CLONE_NEWCGROUP : 0),
	    .pidfd = (uint64_t)(uintptr_t)pidfd,
	    .exit_signal = SIGCHLD,
	    .cgroup = cgroup_fd >= 0 ? (uint64_t)cgroup_fd : 0,
	};
	pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
	if (pid >= 0) {
		*into_cgroup = cgroup_fd >= 0;
		return pid;
	}
	if (errno != ENOSYS && errno != E2BIG && errno != EINVAL)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "clone3 into new namespaces%s",
				     errno == EPERM || errno == ENOSPC
					 ? " (user namespaces may be disabled: see sysctl "
					   "kernel.unprivileged_userns_clone and user.max_user_namespaces)"
					 : "");
#endif
	pid = (pid_t)syscall(SYS_clone, NS_FLAGS | SIGCHLD, NULL, NULL, NULL, 0);
	if (pid < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "clone into new namespaces");
	if (pid == 0)
		return 0;
#if HAVE_SYS_PIDFD_OPEN
	/* Without it (Linux < 5.3, valgrind) the report pipe's end-of-file tells the exit instead. */
	*pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
	return pid;
}

struct watch {
	const struct lms_sandbox_spec *spec;
	lms_output_fn on_output;
	void *userdata;
	struct lms_sandbox_result *result;
	struct lms_cgroup *cg;
	pid_t pid;
	int exit_fd;   /* the pidfd of PID 1, or the report pipe */
	int out_fd[3]; /* indexed by enum lms_stream; -1 once at EOF */
	uint64_t out_seen[3];
	int in_fd;
	size_t in_off;
	bool exited, killed;
	double deadline, next_cpu_check;
	double cpu_base_ms; /* the group's CPU time at launch: what PID 1's preparation used is not the command's */
};

static void
kill_sandbox(struct watch *w)
{
	/* SIGKILL to PID 1 kills its whole PID namespace. */
	if (!w->killed && !w->exited)
		kill(w->pid, SIGKILL);
	w->killed = true;
}

static void
read_stream(struct watch *w, enum lms_stream s)
{
	char chunk[65536];
	for (;;) {
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
		if (keep > 0 && w->on_output)
			w->on_output(w->userdata, s, chunk, keep);
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
	if (lms_cgroup_cpu_ns(w->cg, &used_ns, NULL) < 0) {
		w->next_cpu_check = -1; /* no accounting: the RLIMIT_CPU backstop remains */
		return;
	}
	double used = (double)used_ns / 1e6 - w->cpu_base_ms, limit = (double)w->spec->limits.cpu_ms;
	if (used >= limit) {
		w->result->cpu_exceeded = true;
		kill_sandbox(w);
		return;
	}
	/* The group cannot burn CPU faster than one ms per ms per core: wake when it first could be over. */
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	w->next_cpu_check = now + (limit - used) / (double)(cores > 0 ? cores : 1) + 1;
}

static int
watch_loop(struct watch *w, struct lms_error **err)
{
	while (w->out_fd[1] >= 0 || w->out_fd[2] >= 0 || !w->exited) {
		struct pollfd fds[5];
		enum { OUT, ERR, IN, PID, CANCEL };
		fds[OUT] = (struct pollfd){.fd = w->out_fd[1], .events = POLLIN};
		fds[ERR] = (struct pollfd){.fd = w->out_fd[2], .events = POLLIN};
		fds[IN] = (struct pollfd){.fd = w->in_fd, .events = POLLOUT};
		fds[PID] = (struct pollfd){.fd = w->exited ? -1 : w->exit_fd, .events = POLLIN};
		fds[CANCEL] = (struct pollfd){.fd = w->killed ? -1 : w->spec->cancel_fd, .events = POLLIN};

		double now = lms_monotonic_ms(), wake = w->killed ? -1 : w->deadline;
		if (!w->killed && w->next_cpu_check > 0 && w->next_cpu_check < wake)
			wake = w->next_cpu_check;
		int timeout = wake < 0 ? -1 : wake <= now ? 0 : (int)(wake - now) + 1;
		int r = poll(fds, 5, timeout);
		if (r < 0 && errno != EINTR) {
			kill_sandbox(w);
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "poll the sandbox");
		}
		now = lms_monotonic_ms();
		if (!w->killed && now >= w->deadline) {
			w->result->timed_out = true;
			kill_sandbox(w);
		}
		if (!w->killed && w->next_cpu_check > 0 && now >= w->next_cpu_check)
			check_cpu(w, now);
		if (r <= 0)
			continue;
		if (fds[OUT].revents)
			read_stream(w, LMS_STREAM_STDOUT);
		if (fds[ERR].revents)
			read_stream(w, LMS_STREAM_STDERR);
		if (fds[IN].revents)
			write_stdin(w);
		if (fds[PID].revents)
			w->exited = true;
		if (fds[CANCEL].revents) {
			w->result->cancelled = true;
			kill_sandbox(w);
		}
	}
	return 0;
}

/* Reads PID 1's report: a setup failure, or the command's wait status. */
static int
read_report(int fd, int *status, struct lms_error **err)
{
	struct lms_child_msg msg;
	bool have_status = false;
	ssize_t n;
	while ((n = read(fd, &msg, sizeof(msg))) == (ssize_t)sizeof(msg)) {
		msg.what[sizeof(msg.what) - 1] = '\0';
		if (msg.type == LMS_CHILD_SETUP_FAILED)
			return lms_error_set(err, LMS_ERR_SETUP, msg.errnum, "%s", msg.what);
		if (msg.type == LMS_CHILD_EXITED) {
			*status = msg.status;
			have_status = true;
		}
	}
	return have_status ? 1 : 0;
}

static void
fill_result(struct watch *w, int init_status, const struct rusage *ru)
{
	struct lms_sandbox_result *res = w->result;
	if (WIFSIGNALED(init_status)) {
		res->signal = WTERMSIG(init_status);
		res->exit_code = 128 + res->signal;
	} else {
		res->exit_code = WEXITSTATUS(init_status);
	}
	uint64_t cpu_ns;
	if (lms_cgroup_cpu_ns(w->cg, &cpu_ns, NULL) == 0)
		res->cpu_ms = (double)cpu_ns / 1e6 - w->cpu_base_ms;
	else
		res->cpu_ms = (double)(ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1e3 +
			      (double)(ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) / 1e3;
	res->max_rss_kb = ru->ru_maxrss;
	/* A command killed with its PID 1 (timeout, CPU limit, cancel) is never reaped by PID 1, so its
	 * rusage is lost: the group's peak is the nearest figure (an upper bound: it counts page cache). */
	if (w->killed) {
		long peak = lms_cgroup_memory_peak_kb(w->cg);
		if (peak > res->max_rss_kb)
			res->max_rss_kb = peak;
	}
	res->oom_killed = lms_cgroup_oom_killed(w->cg);
}

/* What a sandbox of this host can be: checked for a prepared sandbox's base and for every spec. */
static int
check_host_support(const struct lms_sandbox_spec *spec, struct lms_error **err)
{
	if (spec->image != NULL && strcmp(spec->image, "host") != 0)
		return lms_error_set(err, LMS_ERR_NOT_FOUND, 0,
				     "image '%s' does not exist: only 'host' is available (imported images come later)",
				     spec->image);
	if (spec->gpu && access("/dev/nvidiactl", F_OK) < 0)
		return lms_error_set(
		    err, LMS_ERR_UNSUPPORTED, 0,
		    "gpu: this host has no NVIDIA GPU (/dev/nvidiactl does not exist); run without --gpu");
	if (spec->network)
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, 0,
				     "network: sandboxes have loopback only for now; run without --network");
	return 0;
}

struct lms_prepared {
	struct lms_limits base;
	bool gpu;
	struct lms_cgroup *cg;
	struct pipes p;
	pid_t pid;
	int pidfd;
};

int
lms_sandbox_prepare(const struct lms_sandbox_spec *base, struct lms_prepared **out, struct lms_error **err)
{
	static unsigned sequence;
	if (check_host_support(base, err) < 0)
		return -1;
	const struct sock_fprog *prog = lms_seccomp_program(err);
	if (prog == NULL)
		return -1;
	struct lms_prepared *sp = xcalloc(1, sizeof(*sp));
	sp->base = base->limits;
	sp->gpu = base->gpu;
	sp->pid = -1;
	sp->pidfd = -1;
	char name[64];
	snprintf(name, sizeof(name), "lms-%d-%u", (int)getpid(), ++sequence);
	int r = open_pipes(&sp->p, err);
	if (r == 0)
		r = lms_cgroup_create(LMS_CGROUP_FS, LMS_CGROUP_SELF, name, &sp->base, &sp->cg, err);
	if (r < 0) {
		lms_prepared_free(sp);
		return -1;
	}
	bool privileged = geteuid() == 0, into_cgroup;
	struct lms_child_ctx ctx = {
	    .disk_mb = sp->base.disk_mb,
	    .gpu = sp->gpu,
	    .seccomp = prog,
	    .sync_fd = sp->p.sync[0],
	    .report_fd = sp->p.report[1],
	    .stdin_fd = sp->p.in[0],
	    .stdout_fd = sp->p.out[1],
	    .stderr_fd = sp->p.err[1],
	    .privileged = privileged,
	};
	sp->pid = clone_sandbox(lms_cgroup_clone_fd(sp->cg), &sp->pidfd, &into_cgroup, err);
	if (sp->pid < 0) {
		lms_prepared_free(sp);
		return -1;
	}
	if (sp->pid == 0) {
		ctx.unshare_cgroupns = !into_cgroup;
		lms_child_main(&ctx);
	}
	/* The child's ends: the parent must not hold them, or it would never see end-of-file. */
	int *child_ends[] = {&sp->p.sync[0], &sp->p.report[1], &sp->p.in[0], &sp->p.out[1], &sp->p.err[1]};
	for (size_t i = 0; i < 5; i++)
		close(steal_fd(child_ends[i]));

	/* The child builds its root while the parent moves it into the cgroup (child.c, wait_for_parent). */
	r = write_id_maps(sp->pid, privileged, err);
	if (r == 0 && write(sp->p.sync[1], "m", 1) != 1)
		r = lms_error_set(err, LMS_ERR_SETUP, errno, "release the sandbox after the uid maps");
	if (r == 0 && !into_cgroup)
		r = lms_cgroup_attach(sp->cg, sp->pid, err);
	if (r == 0 && write(sp->p.sync[1], "c", 1) != 1)
		r = lms_error_set(err, LMS_ERR_SETUP, errno, "release the sandbox after the cgroup move");
	if (r < 0) {
		lms_prepared_free(sp);
		return -1;
	}
	*out = sp;
	return 0;
}

/* Ends PID 1 (and with it the PID namespace), reaps it, removes the cgroup. */
static int
teardown(struct lms_prepared *sp, int *status, struct rusage *ru, struct lms_error **err)
{
	int r = 0;
	if (sp->pid > 0) {
		kill(sp->pid, SIGKILL);
		while (wait4(sp->pid, status, __WALL, ru) < 0 && errno == EINTR)
			;
		sp->pid = -1;
	}
	if (sp->pidfd >= 0)
		close(steal_fd(&sp->pidfd));
	close_pipes(&sp->p);
	if (lms_cgroup_destroy(sp->cg, err) < 0)
		r = -1;
	sp->cg = NULL;
	return r;
}

void
lms_prepared_free(struct lms_prepared *sp)
{
	if (sp == NULL)
		return;
	int status;
	struct rusage ru;
	teardown(sp, &status, &ru, NULL);
	free(sp);
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

/* The launch message of child.c's read_launch: a u32 length and the spec with its whole environment. */
static int
send_launch(struct lms_prepared *sp, const struct lms_sandbox_spec *spec, struct lms_error **err)
{
	_cleanup_strv_ char **envp = build_env(spec);
	struct lms_sandbox_spec msg = *spec;
	msg.env = envp;
	msg.stdin_data = spec->stdin_data ? "" : NULL; /* the data itself goes down the stdin pipe */
	msg.stdin_len = 0;
	struct lms_buf b = {0};
	uint32_t len = 0;
	lms_buf_append(&b, &len, sizeof(len));
	lms_spec_encode(&msg, &b);
	if (b.len - sizeof(len) > LMS_LAUNCH_MAX) {
		lms_buf_clear(&b);
		return lms_error_set(err, LMS_ERR_INVALID, 0, "the command and its environment exceed %u bytes",
				     LMS_LAUNCH_MAX);
	}
	len = (uint32_t)(b.len - sizeof(len));
	memcpy(b.data, &len, sizeof(len));
	/* The child reads it whole while we write: a blocking write of any size is fine. */
	int r = 0;
	for (size_t off = 0; off < b.len;) {
		ssize_t n = write(sp->p.sync[1], b.data + off, b.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = lms_error_set(err, LMS_ERR_SETUP, errno, "send the command to the sandbox");
			break;
		}
		off += (size_t)n;
	}
	lms_buf_clear(&b);
	close(steal_fd(&sp->p.sync[1]));
	return r;
}

static int
fit_limits(struct lms_prepared *sp, const struct lms_sandbox_spec *spec, struct lms_error **err)
{
	const struct lms_limits *want = &spec->limits, *base = &sp->base;
	if (spec->gpu != sp->gpu)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "the sandbox was prepared %s GPUs",
				     sp->gpu ? "with" : "without");
	if (!lms_limits_fit_prepared(base, want))
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "limits exceed those the sandbox was prepared with (memory %llu MiB, pids %llu, "
				     "disk exactly %llu MiB)",
				     (unsigned long long)base->memory_mb, (unsigned long long)base->pids,
				     (unsigned long long)base->disk_mb);
	if (want->memory_mb == base->memory_mb && want->pids == base->pids)
		return 0;
	return lms_cgroup_set_limits(sp->cg, want, err);
}

int
lms_sandbox_launch(struct lms_prepared *sp, const struct lms_sandbox_spec *spec, lms_output_fn on_output,
		   void *userdata, struct lms_sandbox_result *result, struct lms_error **err)
{
	*result = (struct lms_sandbox_result){0};
	struct watch w = {
	    .spec = spec,
	    .on_output = on_output,
	    .userdata = userdata,
	    .result = result,
	    .cg = sp->cg,
	    .pid = sp->pid,
	    .out_fd = {-1, -1, -1},
	    .in_fd = -1,
	};
	if (lms_sandbox_spec_validate(spec, err) < 0 || check_host_support(spec, err) < 0 ||
	    fit_limits(sp, spec, err) < 0) {
		lms_prepared_free(sp);
		return -1;
	}
	match_priority(sp->pid);
	uint64_t cpu_ns = 0;
	if (lms_cgroup_cpu_ns(sp->cg, &cpu_ns, NULL) == 0)
		w.cpu_base_ms = (double)cpu_ns / 1e6;
	double start = lms_monotonic_ms();
	int r = send_launch(sp, spec, err);

	w.exit_fd = sp->pidfd >= 0 ? sp->pidfd : sp->p.report[0];
	w.out_fd[1] = steal_fd(&sp->p.out[0]);
	w.out_fd[2] = steal_fd(&sp->p.err[0]);
	w.in_fd = steal_fd(&sp->p.in[1]);
	if (spec->stdin_data == NULL && w.in_fd >= 0)
		close(steal_fd(&w.in_fd));
	w.deadline = start + (double)spec->limits.timeout_ms;
	w.next_cpu_check = spec->limits.cpu_ms > 0 ? start : -1;
	if (r < 0)
		kill_sandbox(&w);
	else if (watch_loop(&w, err) < 0)
		r = -1;
	for (int s = 1; s <= 2; s++)
		if (w.out_fd[s] >= 0)
			close(w.out_fd[s]);
	if (w.in_fd >= 0)
		close(w.in_fd);

	int init_status = 0;
	struct rusage ru = {0};
	while (wait4(sp->pid, &init_status, __WALL, &ru) < 0 && errno == EINTR)
		;
	sp->pid = -1;
	result->duration_ms = lms_monotonic_ms() - start;
	int status = 0, have = 0;
	if (r == 0) {
		have = read_report(sp->p.report[0], &status, err);
		if (have < 0)
			r = -1;
		else if (have == 0 && !w.killed && !WIFSIGNALED(init_status))
			r = lms_error_set(err, LMS_ERR_SETUP, 0,
					  "the sandbox's init exited with status %d before the command",
					  WEXITSTATUS(init_status));
		else
			fill_result(&w, have ? status : init_status, &ru);
	}
	struct lms_error *cleanup_err = NULL;
	if (teardown(sp, &init_status, &ru, &cleanup_err) < 0 && r == 0) {
		if (err != NULL)
			*err = steal_pointer(&cleanup_err);
		r = -1;
	}
	lms_error_free(cleanup_err);
	free(sp);
	return r;
}

int
lms_sandbox_run(const struct lms_sandbox_spec *spec, lms_output_fn on_output, void *userdata,
		struct lms_sandbox_result *result, struct lms_error **err)
{
	*result = (struct lms_sandbox_result){0};
	if (lms_sandbox_spec_validate(spec, err) < 0)
		return -1;
	struct lms_prepared *sp;
	if (lms_sandbox_prepare(spec, &sp, err) < 0)
		return -1;
	return lms_sandbox_launch(sp, spec, on_output, userdata, result, err);
}
