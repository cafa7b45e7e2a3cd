/*
 * The sandbox's PID 1 once prepared: a loop that reads one record from its parent, does one thing and
 * answers (init-proto.h). A LAUNCH starts a command in a session of its own with the descriptors that
 * came with it; the exit of that command is reported with its rusage; every other child (orphans
 * re-parented to PID 1) is reaped. A one-shot sandbox is the special case of one LAST launch: PID 1
 * exits after its command, and the kernel kills whatever it left behind.
 *
 * Single-threaded, inside every namespace of the sandbox, with the sandbox's privileges: nothing here
 * trusts anything a command could have written (PID 1 reads only its parent's socket and the spec
 * memfd its parent sent).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fdio.h"
#include "sandbox/child.h"

/* Launches running at once in one sandbox (each one's pid and session). */
#define MAX_RUNNING 1024

struct running {
	uint32_t id;
	pid_t pid;
	bool last;
	int status_fd, control_fd; /* a background command's (LMS_INIT_DETACHED), else -1 */
	int reply_fd;		   /* where its EXITED goes (LMS_INIT_REPLY), else -1: the parent's socket */
};

struct init {
	int ctl, sigfd;
	struct running run[MAX_RUNNING];
	size_t n;
};

/* A launch's own reply socket: a watcher that went away is no concern of PID 1's. */
static void send_reply(struct init *in, int reply, const struct lms_init_msg *msg);

static void
send_or_exit(struct init *in, const struct lms_init_msg *msg)
{
	/* The parent is gone: nobody can reach this sandbox any more, so it ends. */
	if (lms_child_report(in->ctl, msg) < 0)
		_exit(0);
}

static void
send_reply(struct init *in, int reply, const struct lms_init_msg *msg)
{
	if (reply < 0)
		send_or_exit(in, msg);
	else
		(void)lms_child_report(reply, msg);
}

static int
enter_cwd(const char *cwd, struct lms_init_msg *msg)
{
	if (chdir(cwd) == 0)
		return 0;
	if (errno != ENOENT)
		return lms_child_fail(msg, errno, "chdir %s", cwd);
	/* Like `docker run -w`, a missing working directory is created where the file system allows. */
	char path[4096];
	snprintf(path, sizeof(path), "%s", cwd);
	for (char *p = path + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(path, 0755) < 0 && errno != EEXIST)
				return lms_child_fail(msg, errno, "create working directory %s", path);
			*p = c;
			if (c == '\0')
				break;
		}
	}
	if (chdir(cwd) < 0)
		return lms_child_fail(msg, errno, "chdir %s", cwd);
	return 0;
}

/* posix_spawn shares PID 1's memory until the exec (CLONE_VM|CLONE_VFORK): no page tables to copy.
 * The child gets the launch's stdio as 0, 1, 2 and nothing else, a session of its own (no controlling
 * terminal of anyone's to push input into), default signals. The search uses the sandbox's PATH
 * (environ is the command's own environment while it runs). Returns the errno of the failure. */
static int
spawn_command(const struct lms_sandbox_spec *spec, const int stdio[3], pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	int r = posix_spawn_file_actions_init(&fa);
	if (r != 0)
		return r;
	for (int fd = 0; fd < 3 && r == 0; fd++)
		r = posix_spawn_file_actions_adddup2(&fa, stdio[fd], fd);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
	if (r == 0)
		r = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
	if (r == 0 && (r = posix_spawnattr_init(&attr)) == 0) {
		posix_spawnattr_setsigmask(&attr, &none);
		posix_spawnattr_setsigdefault(&attr, &all);
		posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
		char **saved = environ;
		environ = (char **)spec->env;
		r = posix_spawnp(pid, spec->argv[0], &fa, &attr, spec->argv, (char **)spec->env);
		environ = saved;
		posix_spawnattr_destroy(&attr);
	}
	posix_spawn_file_actions_destroy(&fa);
	return r;
}

/* posix_spawn cannot put the child in a cgroup before it execs: a command with a group of its own is
 * forked, joins the group through the descriptors its parent opened (the kernel checks the opener's
 * credentials), and execs; an exec error comes back on a close-on-exec pipe, so that a program that
 * cannot start is reported as with posix_spawn. The child does only async-signal-safe work. */
static int
fork_command(const struct lms_sandbox_spec *spec, const int stdio[3], const int *join, size_t njoin, pid_t *pid)
{
	int ep[2];
	if (pipe2(ep, O_CLOEXEC) < 0)
		return errno;
	pid_t child = fork();
	if (child < 0) {
		int e = errno;
		lms_fd_close_all(ep, 2);
		return e;
	}
	if (child == 0) {
		int e = 0;
		for (size_t i = 0; i < njoin && e == 0; i++)
			if (write(join[i], "0", 1) != 1)
				e = errno ? errno : EIO;
		sigset_t none;
		sigemptyset(&none);
		for (int sig = 1; sig < NSIG && e == 0; sig++)
			signal(sig, SIG_DFL);
		if (e == 0 && (setsid() < 0 || sigprocmask(SIG_SETMASK, &none, NULL) < 0))
			e = errno;
		for (int fd = 0; fd < 3 && e == 0; fd++) {
			/* dup2 onto itself would keep close-on-exec: posix_spawn's adddup2 clears it. */
			if (stdio[fd] == fd ? fcntl(fd, F_SETFD, 0) < 0 : dup2(stdio[fd], fd) < 0)
				e = errno;
		}
		if (e == 0) {
			(void)close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
			environ = (char **)spec->env;
			execvpe(spec->argv[0], spec->argv, (char **)spec->env);
			e = errno;
		}
		(void)!write(ep[1], &e, sizeof(e));
		_exit(127);
	}
	close(ep[1]);
	int e = 0;
	ssize_t n;
	while ((n = read(ep[0], &e, sizeof(e))) < 0 && errno == EINTR)
		;
	close(ep[0]);
	if (n != (ssize_t)sizeof(e)) {
		*pid = child; /* end-of-file: it has exec'ed */
		return 0;
	}
	(void)waitpid(child, NULL, 0);
	return e ? e : EIO;
}

/* A per-process backstop for the CPU limit the parent enforces on the whole group. */
static void
set_cpu_limit(pid_t pid, const struct lms_sandbox_spec *spec)
{
	if (spec->limits.cpu_ms > 0) {
		rlim_t s = (rlim_t)((spec->limits.cpu_ms + 999) / 1000) + 1;
		(void)prlimit(pid, RLIMIT_CPU, &(struct rlimit){s, s}, NULL);
	}
}

static void
launch(struct init *in, const struct lms_init_msg *req, int fds[LMS_INIT_MAX_FDS], size_t nfds)
{
	struct lms_init_msg msg = {.id = req->id};
	bool last = req->flags & LMS_INIT_LAST;
	bool detached = (req->flags & (LMS_INIT_DETACHED | LMS_INIT_STDIN)) == (LMS_INIT_DETACHED | LMS_INIT_STDIN);
	bool has_stdin = req->flags & LMS_INIT_STDIN;
	size_t own = detached ? LMS_INIT_NFDS : has_stdin ? LMS_INIT_FD_STDIN + 1 : LMS_INIT_FD_STDIN;
	size_t njoin = req->flags & LMS_INIT_CGROUP ? (size_t)req->status : 0;
	size_t nreply = req->flags & LMS_INIT_REPLY ? 1 : 0;
	size_t want = own + nreply + njoin;
	/* Ours from here on: kept for EXITED once the command runs, else closed after the answer. */
	int reply = nreply && nfds == want && njoin <= LMS_INIT_MAX_JOIN ? steal_fd(&fds[own]) : -1;
	struct lms_sandbox_spec spec;
	void *storage = NULL;
	char *data = NULL;
	size_t len = 0;
	if (nfds != want || njoin > LMS_INIT_MAX_JOIN) {
		lms_child_fail(&msg, EBADMSG, "read the launch: %zu descriptors instead of %zu", nfds, want);
	} else if (in->n == MAX_RUNNING) {
		lms_child_fail(&msg, EAGAIN, "start a command: %d already run in this sandbox", MAX_RUNNING);
	} else if ((data = lms_fd_read_whole(fds[LMS_INIT_FD_SPEC], LMS_LAUNCH_MAX, &len, "the launch", NULL)) ==
		       NULL ||
		   lms_spec_decode(data, len, &spec, &storage, NULL) < 0) {
		lms_child_fail(&msg, EBADMSG, "read the launch message");
	} else if (enter_cwd(spec.cwd ? spec.cwd : LMS_DEFAULT_CWD, &msg) < 0) {
		if (spec.cwd != NULL)
			msg.flags = LMS_INIT_FAILED_CWD; /* the request's own cwd: the client's error */
	} else {
		int null = -1;
		if (!has_stdin)
			null = open("/dev/null", O_RDONLY | O_CLOEXEC);
		int stdio[3] = {has_stdin ? fds[LMS_INIT_FD_STDIN] : null, fds[LMS_INIT_FD_STDOUT],
				fds[LMS_INIT_FD_STDERR]};
		pid_t pid = -1;
		int r = stdio[0] < 0 ? errno
			: njoin > 0  ? fork_command(&spec, stdio, fds + own + nreply, njoin, &pid)
				     : spawn_command(&spec, stdio, &pid);
		if (r == 0) {
			set_cpu_limit(pid, &spec);
			struct running *run = &in->run[in->n++];
			*run = (struct running){
			    .id = req->id, .pid = pid, .last = last, .status_fd = -1, .control_fd = -1, .reply_fd = -1};
			run->reply_fd = reply;
			if (detached) {
				/* Kept: they outlive this call (closed below for every other launch). */
				run->status_fd = steal_fd(&fds[LMS_INIT_FD_STATUS]);
				run->control_fd = steal_fd(&fds[LMS_INIT_FD_CONTROL]);
				(void)fcntl(run->control_fd, F_SETFL, O_NONBLOCK);
			}
			msg = (struct lms_init_msg){.type = LMS_INIT_STARTED, .id = req->id, .pid = pid};
		} else {
			/* As a shell says it, on the command's own stderr; the status is the shell's. */
			dprintf(stdio[2], "lm-sandbox: %s: %s\n", spec.argv[0], strerror(r));
			msg = (struct lms_init_msg){.type = LMS_INIT_EXITED,
						    .id = req->id,
						    .status = W_EXITCODE(r == ENOENT || r == ENOTDIR ? 127 : 126, 0)};
		}
		if (null >= 0)
			close(null);
	}
	free(storage);
	free(data);
	lms_fd_close_all(fds, nfds);
	/* Back to "/": PID 1 must not pin a directory of the command's (an `rm -rf` of it would not free
	 * its space). The root cannot go away. */
	if (chdir("/") < 0)
		_exit(125);
	send_reply(in, reply, &msg);
	if (reply >= 0 && msg.type != LMS_INIT_STARTED)
		close(reply);
	if (last && msg.type != LMS_INIT_STARTED)
		_exit(0);
}

/* The session id of a process of this PID namespace, or -1. */
static pid_t
session_of(const char *pid)
{
	char path[300], buf[512];
	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* "pid (comm) state ppid pgrp session ...": comm may hold anything, so parse after its last ')'. */
	char *p = strrchr(buf, ')');
	int ppid, pgrp, sid;
	char state;
	if (p == NULL || sscanf(p + 1, " %c %d %d %d", &state, &ppid, &pgrp, &sid) != 4)
		return -1;
	return sid;
}

/* SIGKILL to every process of a session: the command's own group at once, then whatever moved to
 * another group of it (bash's job control does), found in /proc until a pass finds none. */
static void
kill_session(pid_t sid)
{
	kill(-sid, SIGKILL);
	for (int pass = 0; pass < 64; pass++) {
		DIR *d = opendir("/proc");
		if (d == NULL)
			return;
		bool found = false;
		for (struct dirent *e; (e = readdir(d)) != NULL;) {
			if (e->d_name[0] < '1' || e->d_name[0] > '9')
				continue;
			pid_t pid = (pid_t)atoi(e->d_name);
			if (pid != 1 && session_of(e->d_name) == sid) {
				kill(pid, SIGKILL);
				found = true;
			}
		}
		closedir(d);
		if (!found)
			return;
	}
}

static void
kill_launch(struct init *in, uint32_t id)
{
	for (size_t i = 0; i < in->n; i++)
		if (in->run[i].id == id)
			kill_session(in->run[i].pid);
}

/* Reaps every child that has exited; reports those that were launched. */
static void
reap(struct init *in)
{
	struct signalfd_siginfo si;
	while (read(in->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		;
	for (;;) {
		int status;
		struct rusage ru;
		pid_t pid = wait4(-1, &status, WNOHANG, &ru);
		if (pid <= 0)
			return;
		for (size_t i = 0; i < in->n; i++) {
			if (in->run[i].pid != pid)
				continue;
			struct lms_init_msg msg = {
			    .type = LMS_INIT_EXITED,
			    .id = in->run[i].id,
			    .status = status,
			    .pid = pid,
			    .utime_us = (int64_t)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
			    .stime_us = (int64_t)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec,
			    .maxrss_kb = ru.ru_maxrss,
			};
			bool last = in->run[i].last;
			int status_fd = in->run[i].status_fd, reply_fd = in->run[i].reply_fd;
			if (in->run[i].control_fd >= 0)
				close(in->run[i].control_fd);
			in->run[i] = in->run[--in->n];
			if (status_fd >= 0) {
				/* A background command's exit goes to whoever holds its status pipe (the daemon): its
				 * write of one record never blocks on an empty pipe, and a reader that went away is
				 * no concern of PID 1's. */
				(void)!write(status_fd, &msg, sizeof(msg));
				close(status_fd);
				break;
			}
			if (reply_fd >= 0) {
				send_reply(in, reply_fd, &msg);
				close(reply_fd);
				break;
			}
			send_or_exit(in, &msg);
			if (last)
				_exit(0);
			break;
		}
	}
}

/* Signals for a background command's session, a byte each (its control pipe). End-of-file: nobody can
 * signal it any more, which changes nothing else. */
static void
serve_control(struct running *run)
{
	unsigned char sigs[16];
	ssize_t n = read(run->control_fd, sigs, sizeof(sigs));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		close(run->control_fd);
		run->control_fd = -1;
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (sigs[i] == SIGKILL)
			kill_session(run->pid);
		else if (sigs[i] > 0 && sigs[i] < NSIG)
			kill(-run->pid, sigs[i]); /* its group: setsid made it the leader of both */
	}
}

static void
serve_message(struct init *in)
{
	struct lms_init_msg req;
	int fds[LMS_INIT_MAX_FDS];
	size_t nfds = 0;
	ssize_t n = lms_fd_recv(in->ctl, &req, sizeof(req), fds, LMS_INIT_MAX_FDS, &nfds);
	if (n == 0 || (n < 0 && errno != EAGAIN))
		_exit(0); /* the parent is gone */
	if (n == (ssize_t)sizeof(req) && req.type == LMS_INIT_LAUNCH) {
		launch(in, &req, fds, nfds);
		return;
	}
	lms_fd_close_all(fds, nfds);
	if (n == (ssize_t)sizeof(req) && req.type == LMS_INIT_KILL)
		kill_launch(in, req.id);
}

void
lms_init_serve(int ctl)
{
	static struct init in;
	in.ctl = ctl;
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &chld, NULL) < 0 ||
	    (in.sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
		struct lms_init_msg msg = {0};
		lms_child_fail(&msg, errno, "signalfd for SIGCHLD");
		(void)lms_child_report(ctl, &msg);
		_exit(125);
	}
	static struct pollfd fds[2 + MAX_RUNNING];
	static size_t owner[MAX_RUNNING];
	for (;;) {
		fds[0] = (struct pollfd){.fd = in.ctl, .events = POLLIN};
		fds[1] = (struct pollfd){.fd = in.sigfd, .events = POLLIN};
		nfds_t n = 2;
		for (size_t i = 0; i < in.n; i++)
			if (in.run[i].control_fd >= 0) {
				owner[n - 2] = i;
				fds[n++] = (struct pollfd){.fd = in.run[i].control_fd, .events = POLLIN};
			}
		if (poll(fds, n, -1) < 0)
			continue; /* EINTR */
		/* Signals before reaping: a reap reorders the table the owners index. */
		for (nfds_t i = 2; i < n; i++)
			if (fds[i].revents)
				serve_control(&in.run[owner[i - 2]]);
		if (fds[1].revents)
			reap(&in);
		if (fds[0].revents)
			serve_message(&in);
	}
}
