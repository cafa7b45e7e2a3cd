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

/* Workers left waiting without a sandbox (past this many, one that finishes a job ends instead). */
#define IDLE_MAX 16

/*
 * Workers live across jobs. Each talks with the spawner on a SOCK_SEQPACKET socket of its own:
 *   worker -> spawner: "R" a sandbox is prepared, "F" preparing failed (the worker ends), "D" job done;
 *   spawner -> worker: a job (three descriptors), "p" prepare a sandbox, end-of-file: end.
 * Reusing a worker spares each call a fork and an exit: the copied page tables, the copy-on-write faults
 * and the teardown were most of a worker's cost.
 */
enum worker_state {
	W_PREPARING, /* preparing a sandbox; says "R" or "F" next */
	W_READY,     /* holds a prepared sandbox and waits for a job */
	W_BUSY,	     /* runs a job; says "D" next */
	W_IDLE,	     /* waits for a job or for "p", holding no sandbox */
};

struct worker {
	pid_t pid;
	int ctl; /* the spawner's end of the worker's socket */
	enum worker_state state;
};

struct pool {
	const struct lms_sandbox_spec *base;
	unsigned size;
	struct worker *w;
	unsigned n, cap;
	unsigned failures; /* in a row: past a few, refilling waits for the next job */
	int nice;	   /* the spawner's, which every job runs at */
	bool low_priority; /* whether workers may prepare at POOL_NICE (they can come back) */
};

/* One job, in `prepared` when it can hold the spec (same image and disk size, other limits within its
 * own), else in a sandbox made now. Frees `prepared` and closes the job's descriptors. */
static void
run_job(const int job[3], struct lms_prepared *prepared, const struct pool *pool)
{
	(void)setpriority(PRIO_PROCESS, 0, pool->nice);
	const struct lms_sandbox_spec *base = pool->base;
	int events_fd = job[1];
	struct lms_error *err = NULL;
	struct lms_sandbox_spec spec;
	struct lms_sandbox_result res;
	void *storage = NULL;
	size_t len = 0;
	char *data = read_fd(job[0], &len, &err);
	int r = data ? lms_spec_decode(data, len, &spec, &storage, &err) : -1;
	if (r == 0) {
		spec.cancel_fd = job[2];
		bool fits = prepared && base && !spec.network && !spec.gpu &&
			    lms_limits_fit_prepared(&base->limits, &spec.limits) &&
			    (spec.image == NULL || strcmp(spec.image, "host") == 0);
		if (fits) {
			r = lms_sandbox_launch(steal_pointer(&prepared), &spec, emit_output, &events_fd, &res, &err);
		} else {
			lms_prepared_free(steal_pointer(&prepared));
			r = lms_sandbox_run(&spec, emit_output, &events_fd, &res, &err);
		}
	}
	lms_prepared_free(prepared);
	if (r < 0)
		send_error(events_fd, err);
	else
		send_frame(events_fd, LMS_JOB_RESULT, &res, sizeof(res));
	lms_error_free(err);
	free(storage);
	free(data);
	for (int i = 0; i < 3; i++)
		close(job[i]);
	/* A large input would otherwise stay in this long-lived worker's heap (and in the copy its next
	 * prepared sandbox's PID 1 starts with); small jobs skip the trim and the faults after it. */
	if (len > (1u << 20))
		malloc_trim(0);
}

/* One message of the spawner's protocols: 1 with three descriptors in fds (a job), 0 with only a byte
 * (in *byte), -1 at end-of-file or on error. */
static int
receive_fds(int sock, int fds[3], char *byte)
{
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {byte, 1};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	ssize_t n;
	while ((n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	if (n <= 0)
		return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (c == NULL || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(3 * sizeof(int)))
		return 0;
	memcpy(fds, CMSG_DATA(c), 3 * sizeof(int));
	return 1;
}

/* Sends three descriptors with the byte "j": the sendmsg result. */
static ssize_t
send_fds(int sock, const int fds[3])
{
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct iovec iov = {"j", 1};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(3 * sizeof(int));
	memcpy(CMSG_DATA(c), fds, 3 * sizeof(int));
	ssize_t n;
	while ((n = sendmsg(sock, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	return n;
}

static void
tell(int ctl, char what)
{
	(void)!send(ctl, &what, 1, MSG_NOSIGNAL);
}

/* A worker: prepares a sandbox when told (or when `prepare`), runs jobs (`first`, when given, at once),
 * and ends at the spawner's end-of-file. Its name says what it does: lms-pooled while it prepares or
 * holds a prepared sandbox, lms-worker while it runs a job, lms-idle while it waits without one. */
__attribute__((noreturn)) static void
worker_main(int ctl, const struct pool *pool, const int *first, bool prepare)
{
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		struct lms_prepared *sp = NULL;
		if (prepare) {
			prctl(PR_SET_NAME, "lms-pooled", 0, 0, 0);
			if (pool->low_priority)
				(void)setpriority(PRIO_PROCESS, 0, POOL_NICE);
			if (lms_sandbox_prepare(pool->base, &sp, NULL) < 0) {
				tell(ctl, 'F');
				_exit(1);
			}
			tell(ctl, 'R');
		}
		int job[3];
		char byte = 0;
		int r = 1;
		if (first != NULL)
			memcpy(job, first, sizeof(job));
		else
			while ((r = receive_fds(ctl, job, &byte)) == 0 && !(byte == 'p' && sp == NULL))
				;
		first = NULL;
		if (r < 0) {
			lms_prepared_free(sp);
			_exit(0);
		}
		prepare = r == 0; /* "p" */
		if (prepare)
			continue;
		prctl(PR_SET_NAME, "lms-worker", 0, 0, 0);
		run_job(job, sp, pool);
		prctl(PR_SET_NAME, "lms-idle", 0, 0, 0);
		tell(ctl, 'D');
	}
}

/* ---- the spawner process ---- */

/* Reaps every exited child (workers that ended; their sandboxes are their own children). */
static void
reap(int sigfd)
{
	struct signalfd_siginfo si;
	while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
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

static unsigned
pool_count(const struct pool *pool, enum worker_state state)
{
	unsigned n = 0;
	for (unsigned i = 0; i < pool->n; i++)
		n += pool->w[i].state == state;
	return n;
}

/* Forks a worker in `state`: W_PREPARING, or W_BUSY with `job`. Returns 0, or -1. */
static int
pool_spawn(struct pool *pool, int sock, int sigfd, enum worker_state state, const int *job)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		close(sock);
		close(sigfd);
		close(sv[0]);
		for (unsigned i = 0; i < pool->n; i++)
			close(pool->w[i].ctl);
		sigset_t chld;
		sigemptyset(&chld);
		sigaddset(&chld, SIGCHLD);
		sigprocmask(SIG_UNBLOCK, &chld, NULL);
		worker_main(sv[1], pool, job, state == W_PREPARING);
	}
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return -1;
	}
	if (pool->n == pool->cap) {
		pool->cap = pool->cap ? 2 * pool->cap : 16;
		pool->w = xrealloc(pool->w, pool->cap * sizeof(*pool->w));
	}
	pool->w[pool->n++] = (struct worker){.pid = pid, .ctl = sv[0], .state = state};
	return 0;
}

/* Tops the pool up to `size` sandboxes prepared or being prepared: idle workers first, then new ones. */
static void
pool_fill(struct pool *pool, int sock, int sigfd)
{
	unsigned have = pool_count(pool, W_PREPARING) + pool_count(pool, W_READY);
	for (unsigned i = 0; i < pool->n && have < pool->size && pool->failures < 3; i++)
		if (pool->w[i].state == W_IDLE && send(pool->w[i].ctl, "p", 1, MSG_NOSIGNAL) == 1) {
			pool->w[i].state = W_PREPARING;
			have++;
		}
	for (; have < pool->size && pool->failures < 3; have++)
		if (pool_spawn(pool, sock, sigfd, W_PREPARING, NULL) < 0)
			return;
}

static void
pool_drop(struct pool *pool, unsigned i)
{
	close(pool->w[i].ctl);
	pool->w[i] = pool->w[--pool->n];
}

/* A worker's socket spoke: "R" ready, "D" done, "F" or end-of-file failed. True when a job ended. */
static bool
pool_event(struct pool *pool, unsigned i)
{
	char c = 0;
	ssize_t n = recv(pool->w[i].ctl, &c, 1, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return false;
	bool was_busy = pool->w[i].state == W_BUSY;
	if (n == 1 && c == 'R' && pool->w[i].state == W_PREPARING) {
		pool->w[i].state = W_READY;
		pool->failures = 0;
		return false;
	}
	if (n == 1 && c == 'D' && was_busy) {
		pool->w[i].state = W_IDLE;
		if (pool_count(pool, W_IDLE) > IDLE_MAX)
			pool_drop(pool, i); /* it reads end-of-file and ends */
		return true;
	}
	if (!was_busy)
		pool->failures++;
	pool_drop(pool, i);
	return was_busy;
}

/* Hands the job to a worker with a prepared sandbox, else to an idle one (which makes a sandbox for it),
 * else to a new worker. */
static void
pool_take(struct pool *pool, int sock, int sigfd, const int job[3])
{
	for (enum worker_state want = W_READY;; want = W_IDLE) {
		for (unsigned i = 0; i < pool->n; i++) {
			if (pool->w[i].state != want)
				continue;
			if (send_fds(pool->w[i].ctl, job) == 1) {
				pool->w[i].state = W_BUSY;
				return;
			}
			pool_drop(pool, i--); /* that worker is gone: try the next */
		}
		if (want == W_IDLE)
			break;
	}
	pool_spawn(pool, sock, sigfd, W_BUSY, job);
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
	struct pollfd *fds = NULL;
	unsigned fds_cap = 0;
	for (;;) {
		unsigned n_workers = pool->n;
		if (fds_cap < 2 + n_workers) {
			fds_cap = 2 * (2 + n_workers);
			fds = xrealloc(fds, fds_cap * sizeof(*fds));
		}
		fds[0] = (struct pollfd){.fd = sock, .events = POLLIN};
		fds[1] = (struct pollfd){.fd = sigfd, .events = POLLIN};
		for (unsigned i = 0; i < n_workers; i++)
			fds[2 + i] = (struct pollfd){.fd = pool->w[i].ctl, .events = POLLIN};
		if (poll(fds, 2 + n_workers, -1) < 0)
			continue;
		if (fds[1].revents)
			reap(sigfd);
		bool job_ended = false;
		/* From the last: pool_drop moves the last worker into the slot it frees. */
		for (unsigned i = n_workers; i-- > 0;)
			if (fds[2 + i].revents)
				job_ended |= pool_event(pool, i);
		if (fds[0].revents) {
			int job[3];
			char byte;
			int r = receive_fds(sock, job, &byte);
			if (r < 0) {
				/* The daemon is stopping (or gone): workers read end-of-file and clean up, and the
				 * spawner exits only once every worker has, so that nothing outlives it. */
				for (unsigned i = 0; i < pool->n; i++)
					close(pool->w[i].ctl);
				while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
					;
				_exit(0);
			}
			if (r > 0) {
				pool_take(pool, sock, sigfd, job);
				for (int i = 0; i < 3; i++)
					close(job[i]);
				pool->failures = 0;
			}
		}
		/* Preparing a sandbox beside a command that is starting slows it down by more than the CPU
		 * it takes (both take the same kernel locks: mounts, namespaces, cgroups), so a sandbox is
		 * replaced when a command ends, or when none runs, rather than when one is taken. */
		if (pool_count(pool, W_BUSY) == 0 || job_ended)
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
	ssize_t n = send_fds(sp->sock, fds);
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
