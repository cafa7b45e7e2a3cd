#include "sandbox/spawner.h"

#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "sandbox/seccomp.h"

#define MAX_SPEC_BYTES (1ull << 31)
#define MAX_FRAME (1u << 20)

struct lms_spawner {
	int sock;
	pid_t pid;
};

struct lms_job {
	int events_fd;
	int cancel_fd;
	bool done;
};

struct frame {
	uint32_t type;
	uint32_t len;
};

static int
write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- the worker: one sandbox, frames out ---- */

static void
send_frame(int fd, uint32_t type, const void *data, size_t len)
{
	struct frame f = {type, (uint32_t)len};
	/* A reader that went away is not an error here: its cancel pipe kills the sandbox. */
	if (write_all(fd, &f, sizeof(f)) == 0 && len > 0)
		write_all(fd, data, len);
}

static void
emit_output(void *userdata, enum lms_stream stream, const char *data, size_t len)
{
	int fd = *(int *)userdata;
	send_frame(fd, stream == LMS_STREAM_STDOUT ? LMS_JOB_STDOUT : LMS_JOB_STDERR, data, len);
}

static void
send_error(int fd, const struct lms_error *e)
{
	struct lms_buf b = {0};
	int32_t kind = (int32_t)e->kind;
	lms_buf_append(&b, &kind, sizeof(kind));
	lms_buf_append(&b, e->message, strlen(e->message));
	send_frame(fd, LMS_JOB_ERROR, b.data, b.len);
	lms_buf_clear(&b);
}

static char *
read_fd(int fd, size_t *len, struct lms_error **err)
{
	struct stat st;
	if (fstat(fd, &st) < 0) {
		lms_error_set(err, LMS_ERR_INTERNAL, errno, "stat the job");
		return NULL;
	}
	if ((uint64_t)st.st_size > MAX_SPEC_BYTES) {
		lms_error_set(err, LMS_ERR_INTERNAL, 0, "the job is too large");
		return NULL;
	}
	char *data = xmalloc((size_t)st.st_size + 1);
	if (pread(fd, data, (size_t)st.st_size, 0) != st.st_size) {
		free(data);
		lms_error_set(err, LMS_ERR_INTERNAL, errno, "read the job");
		return NULL;
	}
	*len = (size_t)st.st_size;
	return data;
}

/* Pool workers prepare at the lowest priority, so that refilling the pool takes only CPU time that
 * running commands leave idle; a worker given a job comes back to the spawner's priority first. */
#define POOL_NICE 19

/* Runs one job: in `prepared` when it can hold the spec (same image and disk size, other limits within
 * its own), else in a sandbox made now. */
__attribute__((noreturn)) static void
worker_main(int spec_fd, int events_fd, int cancel_fd, struct lms_prepared *prepared,
	    const struct lms_sandbox_spec *base, int nice)
{
	signal(SIGPIPE, SIG_IGN);
	(void)setpriority(PRIO_PROCESS, 0, nice);
	struct lms_error *err = NULL;
	struct lms_sandbox_spec spec;
	struct lms_sandbox_result res;
	void *storage = NULL;
	size_t len = 0;
	char *data = read_fd(spec_fd, &len, &err);
	close(spec_fd);
	int r = data ? lms_spec_decode(data, len, &spec, &storage, &err) : -1;
	if (r == 0) {
		spec.cancel_fd = cancel_fd;
		bool fits = prepared && base && !spec.network && !spec.gpu &&
			    lms_limits_fit_prepared(&base->limits, &spec.limits) &&
			    (spec.image == NULL || strcmp(spec.image, "host") == 0);
		if (fits) {
			r = lms_sandbox_launch(prepared, &spec, emit_output, &events_fd, &res, &err);
		} else {
			lms_prepared_free(prepared);
			r = lms_sandbox_run(&spec, emit_output, &events_fd, &res, &err);
		}
	}
	if (r < 0)
		send_error(events_fd, err);
	else
		send_frame(events_fd, LMS_JOB_RESULT, &res, sizeof(res));
	_exit(0);
}

/* ---- the spawner process ---- */

static int
receive_job(int sock, int fds[3])
{
	char byte;
	struct iovec iov = {&byte, 1};
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	ssize_t n;
	while ((n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	if (n <= 0)
		return -1; /* the daemon is gone */
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (c == NULL || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(3 * sizeof(int)))
		return 0; /* not a job: ignore it */
	memcpy(fds, CMSG_DATA(c), 3 * sizeof(int));
	return 1;
}

struct pool {
	const struct lms_sandbox_spec *base;
	unsigned size;
	struct {
		pid_t pid;
		int ctl;
		bool ready;
	} w[LMS_POOL_MAX];
	unsigned n;
	unsigned failures; /* in a row: past a few, refilling waits for the next job */
	int nice;	   /* the spawner's, which every job runs at */
	bool low_priority; /* whether workers may prepare at POOL_NICE (they can come back) */
	pid_t *jobs;	   /* workers running a job */
	size_t n_jobs, jobs_cap;
};

static void
jobs_add(struct pool *pool, pid_t pid)
{
	if (pool->n_jobs == pool->jobs_cap) {
		pool->jobs_cap = pool->jobs_cap ? 2 * pool->jobs_cap : 16;
		pool->jobs = xrealloc(pool->jobs, pool->jobs_cap * sizeof(*pool->jobs));
	}
	pool->jobs[pool->n_jobs++] = pid;
}

/* Reaps every exited child; true when one of them had run a job. */
static bool
reap(struct pool *pool, int sigfd)
{
	struct signalfd_siginfo si;
	while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		;
	bool job_ended = false;
	pid_t pid;
	while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
		for (size_t i = 0; i < pool->n_jobs; i++)
			if (pool->jobs[i] == pid) {
				pool->jobs[i] = pool->jobs[--pool->n_jobs];
				job_ended = true;
				break;
			}
	return job_ended;
}

/* A pool worker: prepares a sandbox with the pool's base spec, says "R" (ready) on its control socket,
 * then waits for one job there. End-of-file instead of a job: the pool is closing. */
__attribute__((noreturn)) static void
pool_worker_main(int ctl, const struct pool *pool)
{
	const struct lms_sandbox_spec *base = pool->base;
	prctl(PR_SET_NAME, "lms-pooled", 0, 0, 0);
	if (pool->low_priority)
		(void)setpriority(PRIO_PROCESS, 0, POOL_NICE);
	struct lms_prepared *sp = NULL;
	if (lms_sandbox_prepare(base, &sp, NULL) < 0) {
		(void)!write(ctl, "F", 1);
		_exit(1);
	}
	(void)!write(ctl, "R", 1);
	int job[3];
	if (receive_job(ctl, job) <= 0) {
		lms_prepared_free(sp);
		_exit(0);
	}
	close(ctl);
	worker_main(job[0], job[1], job[2], sp, base, pool->nice);
}

/* Whether this process may lower its nice value again (CAP_SYS_NICE or RLIMIT_NICE), tried on itself. */
static void
pool_priority_init(struct pool *pool)
{
	errno = 0;
	pool->nice = getpriority(PRIO_PROCESS, 0);
	if (errno != 0)
		pool->nice = 0;
	pool->low_priority = pool->nice < POOL_NICE && setpriority(PRIO_PROCESS, 0, pool->nice + 1) == 0 &&
			     setpriority(PRIO_PROCESS, 0, pool->nice) == 0;
}

static void
pool_fill(struct pool *pool, int sock, int sigfd)
{
	while (pool->n < pool->size && pool->failures < 3) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
			return;
		pid_t pid = fork();
		if (pid == 0) {
			close(sock);
			close(sigfd);
			close(sv[0]);
			for (unsigned i = 0; i < pool->n; i++)
				close(pool->w[i].ctl);
			sigset_t all;
			sigemptyset(&all);
			sigaddset(&all, SIGCHLD);
			sigprocmask(SIG_UNBLOCK, &all, NULL);
			pool_worker_main(sv[1], pool);
		}
		close(sv[1]);
		if (pid < 0) {
			close(sv[0]);
			return;
		}
		pool->w[pool->n].pid = pid;
		pool->w[pool->n].ctl = sv[0];
		pool->w[pool->n].ready = false;
		pool->n++;
	}
}

static void
pool_drop(struct pool *pool, unsigned i)
{
	close(pool->w[i].ctl);
	pool->w[i] = pool->w[--pool->n];
}

/* A pool worker's control socket spoke: "R" ready, "F" or end-of-file failed. */
static void
pool_event(struct pool *pool, unsigned i)
{
	char c = 0;
	ssize_t n = recv(pool->w[i].ctl, &c, 1, MSG_DONTWAIT);
	if (n == 1 && c == 'R') {
		pool->w[i].ready = true;
		pool->failures = 0;
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	pool->failures++;
	pool_drop(pool, i);
}

/* Hands the job to a ready pool worker; false when none is ready. */
static bool
pool_take(struct pool *pool, int job[3])
{
	for (unsigned i = 0; i < pool->n; i++) {
		if (!pool->w[i].ready)
			continue;
		union {
			char buf[CMSG_SPACE(3 * sizeof(int))];
			struct cmsghdr align;
		} u;
		memset(&u, 0, sizeof(u));
		struct iovec iov = {"j", 1};
		struct msghdr msg = {
		    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(3 * sizeof(int));
		memcpy(CMSG_DATA(c), job, 3 * sizeof(int));
		ssize_t n = sendmsg(pool->w[i].ctl, &msg, MSG_NOSIGNAL);
		pid_t pid = pool->w[i].pid;
		pool_drop(pool, i);
		if (n == 1) {
			jobs_add(pool, pid);
			return true;
		}
		i--; /* that worker is gone: try the next */
	}
	return false;
}

__attribute__((noreturn)) static void
spawner_main(int sock, struct pool *pool)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	prctl(PR_SET_NAME, "lms-spawner", 0, 0, 0);
	/* Compiled once here, inherited by every worker. libseccomp leaves the heap strewn with free
	 * chunks, which each forked worker's first malloc would consolidate, writing to pages it shares
	 * copy-on-write with the spawner: a fault and a TLB flush each (about 5% of the sustained rate on
	 * the development VM). Trimmed once here, the children find a tidy heap. */
	lms_seccomp_program(NULL);
	malloc_trim(0);
	pool_priority_init(pool);
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	int sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	pool_fill(pool, sock, sigfd);
	for (;;) {
		struct pollfd fds[2 + LMS_POOL_MAX];
		fds[0] = (struct pollfd){.fd = sock, .events = POLLIN};
		fds[1] = (struct pollfd){.fd = sigfd, .events = POLLIN};
		unsigned n_pool = pool->n;
		for (unsigned i = 0; i < n_pool; i++)
			fds[2 + i] = (struct pollfd){.fd = pool->w[i].ctl, .events = POLLIN};
		if (poll(fds, 2 + n_pool, -1) < 0)
			continue;
		bool job_ended = fds[1].revents && reap(pool, sigfd);
		for (unsigned i = n_pool; i-- > 0;)
			if (fds[2 + i].revents)
				pool_event(pool, i);
		if (fds[0].revents) {
			int job[3];
			int r = receive_job(sock, job);
			if (r < 0) {
				/* The daemon is stopping (or gone): pool workers read end-of-file and clean up,
				 * and the spawner exits only once every worker has, so that nothing outlives it. */
				for (unsigned i = 0; i < pool->n; i++)
					close(pool->w[i].ctl);
				while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
					;
				_exit(0);
			}
			if (r > 0 && !pool_take(pool, job)) {
				pid_t pid = fork();
				if (pid == 0) {
					close(sock);
					close(sigfd);
					for (unsigned i = 0; i < pool->n; i++)
						close(pool->w[i].ctl);
					sigprocmask(SIG_UNBLOCK, &chld, NULL);
					worker_main(job[0], job[1], job[2], NULL, NULL, pool->nice);
				}
				if (pid > 0)
					jobs_add(pool, pid);
			}
			if (r > 0) {
				for (int i = 0; i < 3; i++)
					close(job[i]);
				pool->failures = 0;
			}
		}
		/* Preparing a sandbox beside a command that is starting slows it down by more than the CPU
		 * it takes (both take the same kernel locks: mounts, namespaces, cgroups), so a sandbox is
		 * replaced when a command ends, or when none runs, rather than when one is taken. */
		if (pool->n_jobs == 0 || job_ended)
			pool_fill(pool, sock, sigfd);
	}
}

/* The spawner's process image: `helper` (the static lm-sandbox) when given, so that every worker and
 * sandbox is a fork of a small process rather than of the daemon with all its shared libraries (page
 * tables copied at each fork, torn down at each exit: most of a sandbox's CPU cost). */
static void
exec_helper(const char *helper, int sock, const struct lms_sandbox_spec *pool_base, unsigned pool_size)
{
	int base_fd = memfd_create("lms-pool-base", 0);
	struct lms_buf b = {0};
	lms_spec_encode(pool_base, &b);
	bool ok = base_fd >= 0 && write_all(base_fd, b.data, b.len) == 0;
	lms_buf_clear(&b);
	if (!ok || dup2(sock, 3) < 0 || dup2(base_fd, 4) < 0)
		return;
	char size[16];
	snprintf(size, sizeof(size), "%u", pool_size);
	char *argv[] = {(char *)"lm-sandbox", (char *)"__spawner", (char *)"3", (char *)"4", size, NULL};
	char *envp[] = {NULL};
	execve(helper, argv, envp);
}

int
lms_spawner_start(const char *helper, const struct lms_sandbox_spec *pool_base, unsigned pool_size,
		  struct lms_spawner **out, struct lms_error **err)
{
	static struct pool pool;
	pool.base = pool_base;
	pool.size = pool_size < LMS_POOL_MAX ? pool_size : LMS_POOL_MAX;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "spawner: socketpair");
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		return lms_error_set(err, LMS_ERR_INTERNAL, e, "spawner: fork");
	}
	if (pid == 0) {
		close(sv[0]);
		if (helper != NULL)
			exec_helper(helper, sv[1], pool_base, pool.size);
		spawner_main(sv[1], &pool); /* no helper: the fork itself serves */
	}
	close(sv[1]);
	struct lms_spawner *sp = xcalloc(1, sizeof(*sp));
	sp->sock = sv[0];
	sp->pid = pid;
	*out = sp;
	return 0;
}

int
lms_spawner_helper_main(int sock, int base_fd, unsigned pool_size)
{
	static struct pool pool;
	static struct lms_sandbox_spec base;
	size_t len = 0;
	char *data = read_fd(base_fd, &len, NULL);
	void *storage = NULL;
	if (data == NULL || lms_spec_decode(data, len, &base, &storage, NULL) < 0) {
		fputs("lm-sandbox __spawner: cannot read the pool's base spec\n", stderr);
		return 125;
	}
	close(base_fd);
	fcntl(sock, F_SETFD, FD_CLOEXEC);
	pool.base = &base;
	pool.size = pool_size < LMS_POOL_MAX ? pool_size : LMS_POOL_MAX;
	spawner_main(sock, &pool);
}

void
lms_spawner_stop(struct lms_spawner *sp)
{
	if (sp == NULL)
		return;
	close(sp->sock); /* the spawner reads end-of-file and exits */
	waitpid(sp->pid, NULL, 0);
	free(sp);
}

int
lms_spawner_submit(struct lms_spawner *sp, const struct lms_sandbox_spec *spec, struct lms_job **out,
		   struct lms_error **err)
{
	_cleanup_fd_ int spec_fd = memfd_create("lms-job", MFD_CLOEXEC);
	if (spec_fd < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "spawner: memfd_create");
	struct lms_buf encoded = {0};
	lms_spec_encode(spec, &encoded);
	int wr = write_all(spec_fd, encoded.data, encoded.len);
	lms_buf_clear(&encoded);
	if (wr < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "spawner: write the job");
	int events[2], cancel[2];
	if (pipe2(events, O_CLOEXEC) < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "spawner: pipe");
	if (pipe2(cancel, O_CLOEXEC) < 0) {
		int e = errno;
		close(events[0]);
		close(events[1]);
		return lms_error_set(err, LMS_ERR_INTERNAL, e, "spawner: pipe");
	}
	int fds[3] = {spec_fd, events[1], cancel[0]};
	union {
		char buf[CMSG_SPACE(sizeof(fds))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct iovec iov = {"j", 1};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(c), fds, sizeof(fds));
	ssize_t n;
	while ((n = sendmsg(sp->sock, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	int e = errno;
	close(events[1]);
	close(cancel[0]);
	if (n < 0) {
		close(events[0]);
		close(cancel[1]);
		return lms_error_set(err, LMS_ERR_INTERNAL, e, "spawner: send the job (the spawner process is gone)");
	}
	struct lms_job *job = xcalloc(1, sizeof(*job));
	job->events_fd = events[0];
	job->cancel_fd = cancel[1];
	*out = job;
	return 0;
}

int
lms_job_fd(const struct lms_job *job)
{
	return job->events_fd;
}

static int
read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return got == 0 && n == 0 ? 0 : -1;
		got += (size_t)n;
	}
	return 1;
}

int
lms_job_next(struct lms_job *job, struct lms_job_event *ev, struct lms_error **err)
{
	*ev = (struct lms_job_event){0};
	if (job->done)
		return 0;
	struct frame f;
	int r = read_full(job->events_fd, &f, sizeof(f));
	if (r <= 0 || f.len > MAX_FRAME || f.type < LMS_JOB_STDOUT || f.type > LMS_JOB_ERROR) {
		job->done = true;
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "the sandbox's worker process died without a result");
	}
	char *payload = xmalloc(f.len + 1);
	if (f.len > 0 && read_full(job->events_fd, payload, f.len) != 1) {
		free(payload);
		job->done = true;
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "the sandbox's worker process died mid-frame");
	}
	payload[f.len] = '\0';
	ev->type = (enum lms_job_event_type)f.type;
	if (f.type == LMS_JOB_RESULT) {
		job->done = true;
		if (f.len == sizeof(ev->result))
			memcpy(&ev->result, payload, sizeof(ev->result));
		free(payload);
		return 1;
	}
	if (f.type == LMS_JOB_ERROR) {
		job->done = true;
		int32_t kind = LMS_ERR_INTERNAL;
		if (f.len >= sizeof(kind))
			memcpy(&kind, payload, sizeof(kind));
		if (kind < LMS_ERR_INTERNAL || kind > LMS_ERR_SETUP)
			kind = LMS_ERR_INTERNAL;
		lms_error_set(&ev->error, (enum lms_error_kind)kind, 0, "%s",
			      f.len >= sizeof(kind) ? payload + sizeof(kind) : "unknown error");
		free(payload);
		return 1;
	}
	ev->data = payload;
	ev->len = f.len;
	return 1;
}

void
lms_job_cancel(struct lms_job *job)
{
	/* A byte rather than a close: safe from another thread while the owner still uses the job. */
	if (job->cancel_fd >= 0)
		(void)!write(job->cancel_fd, "x", 1);
}

void
lms_job_free(struct lms_job *job)
{
	if (job == NULL)
		return;
	if (job->cancel_fd >= 0)
		close(job->cancel_fd);
	close(job->events_fd);
	free(job);
}
