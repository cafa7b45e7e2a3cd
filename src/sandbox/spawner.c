#include "sandbox/spawner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "sandbox/seccomp.h"

#define SPEC_MAGIC 0x314d534cu /* "LSM1" */
#define NONE32 0xffffffffu
#define NONE64 UINT64_MAX
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

/* ---- spec serialization ---- */

static void
put(struct lms_buf *b, const void *p, size_t n)
{
	lms_buf_append(b, p, n);
}

static void
put_u32(struct lms_buf *b, uint32_t v)
{
	put(b, &v, sizeof(v));
}

static void
put_u64(struct lms_buf *b, uint64_t v)
{
	put(b, &v, sizeof(v));
}

static void
put_str(struct lms_buf *b, const char *s)
{
	if (s == NULL) {
		put_u32(b, NONE32);
		return;
	}
	size_t n = strlen(s);
	put_u32(b, (uint32_t)n);
	put(b, s, n);
}

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

int
lms_spec_encode(const struct lms_sandbox_spec *spec, int fd, struct lms_error **err)
{
	struct lms_buf b = {0};
	const struct lms_limits *l = &spec->limits;
	put_u32(&b, SPEC_MAGIC);
	uint64_t nums[] = {l->timeout_ms, l->memory_mb, l->pids, l->cpu_ms, l->output_bytes, l->disk_mb,
			   spec->network, spec->gpu};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		put_u64(&b, nums[i]);
	char *const *lists[] = {spec->argv, spec->env};
	for (int k = 0; k < 2; k++) {
		uint32_t n = 0;
		while (lists[k] && lists[k][n])
			n++;
		put_u32(&b, n);
		for (uint32_t i = 0; i < n; i++)
			put_str(&b, lists[k][i]);
	}
	put_str(&b, spec->cwd);
	put_str(&b, spec->image);
	put_u64(&b, spec->stdin_data ? spec->stdin_len : NONE64);
	if (spec->stdin_data)
		put(&b, spec->stdin_data, spec->stdin_len);
	int r = write_all(fd, b.data, b.len);
	int e = errno;
	lms_buf_clear(&b);
	if (r < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, e, "write the job");
	return 0;
}

struct reader {
	const char *p, *end;
	char *out; /* where the next copied string goes */
};

static bool
take(struct reader *r, void *dst, size_t n)
{
	if ((size_t)(r->end - r->p) < n)
		return false;
	memcpy(dst, r->p, n);
	r->p += n;
	return true;
}

static bool
take_str(struct reader *r, char **s)
{
	uint32_t n;
	if (!take(r, &n, sizeof(n)))
		return false;
	if (n == NONE32) {
		*s = NULL;
		return true;
	}
	if ((size_t)(r->end - r->p) < n || memchr(r->p, '\0', n) != NULL)
		return false;
	memcpy(r->out, r->p, n);
	r->out[n] = '\0';
	*s = r->out;
	r->out += n + 1;
	r->p += n;
	return true;
}

static bool
take_list(struct reader *r, char ***list, char ***slots, size_t *free_slots)
{
	uint32_t n;
	if (!take(r, &n, sizeof(n)) || n > LMS_MAX_ARGS || (size_t)n + 1 > *free_slots)
		return false;
	*list = *slots;
	for (uint32_t i = 0; i < n; i++)
		if (!take_str(r, &(*list)[i]) || (*list)[i] == NULL)
			return false;
	(*list)[n] = NULL;
	*slots += n + 1;
	*free_slots -= n + 1;
	return true;
}

int
lms_spec_decode(const char *data, size_t len, struct lms_sandbox_spec *spec, void **storage,
		struct lms_error **err)
{
	/* One block: pointer slots for argv and env, then every string copied with its NUL. */
	size_t slots = 2 * (LMS_MAX_ARGS + 1);
	char *block = xmalloc(slots * sizeof(char *) + len + 2 * LMS_MAX_ARGS + 8);
	char **slot = (char **)block;
	struct reader r = {.p = data, .end = data + len, .out = block + slots * sizeof(char *)};
	uint32_t magic;
	uint64_t nums[8], stdin_len;
	char **argv = NULL, **env = NULL, *cwd, *image;
	lms_sandbox_spec_init(spec);
	bool ok = take(&r, &magic, sizeof(magic)) && magic == SPEC_MAGIC && take(&r, nums, sizeof(nums)) &&
		  take_list(&r, &argv, &slot, &slots) && take_list(&r, &env, &slot, &slots) &&
		  take_str(&r, &cwd) && take_str(&r, &image) && take(&r, &stdin_len, sizeof(stdin_len));
	if (ok && stdin_len != NONE64) {
		ok = stdin_len <= (uint64_t)(r.end - r.p);
		if (ok) {
			spec->stdin_data = r.p;
			spec->stdin_len = (size_t)stdin_len;
			r.p += stdin_len;
		}
	}
	if (!ok || r.p != r.end) {
		free(block);
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "decode a job: malformed or truncated spec");
	}
	spec->limits = (struct lms_limits){nums[0], nums[1], nums[2], nums[3], nums[4], nums[5]};
	spec->network = nums[6] != 0;
	spec->gpu = nums[7] != 0;
	spec->argv = argv;
	spec->env = env;
	spec->cwd = cwd;
	spec->image = image;
	*storage = block;
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

__attribute__((noreturn)) static void
worker_main(int spec_fd, int events_fd, int cancel_fd)
{
	signal(SIGPIPE, SIG_IGN);
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
		r = lms_sandbox_run(&spec, emit_output, &events_fd, &res, &err);
	}
	if (r < 0)
		send_error(events_fd, err);
	else
		send_frame(events_fd, LMS_JOB_RESULT, &res, sizeof(res));
	_exit(0);
}

/* ---- the spawner process ---- */

static void
reap(int sigfd)
{
	struct signalfd_siginfo si;
	while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

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

__attribute__((noreturn)) static void
spawner_main(int sock)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	prctl(PR_SET_NAME, "lms-spawner", 0, 0, 0);
	/* Compiled once here, inherited by every worker. */
	lms_seccomp_program(NULL);
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	int sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	for (;;) {
		struct pollfd fds[2] = {{.fd = sock, .events = POLLIN}, {.fd = sigfd, .events = POLLIN}};
		if (poll(fds, 2, -1) < 0)
			continue;
		if (fds[1].revents)
			reap(sigfd);
		if (!fds[0].revents)
			continue;
		int job[3];
		int r = receive_job(sock, job);
		if (r < 0)
			_exit(0);
		if (r == 0)
			continue;
		pid_t pid = fork();
		if (pid == 0) {
			close(sock);
			close(sigfd);
			sigprocmask(SIG_UNBLOCK, &chld, NULL);
			worker_main(job[0], job[1], job[2]);
		}
		for (int i = 0; i < 3; i++)
			close(job[i]);
		if (pid < 0)
			continue; /* the daemon sees the closed events pipe: "worker died" */
	}
}

int
lms_spawner_start(struct lms_spawner **out, struct lms_error **err)
{
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
		spawner_main(sv[1]);
	}
	close(sv[1]);
	struct lms_spawner *sp = xcalloc(1, sizeof(*sp));
	sp->sock = sv[0];
	sp->pid = pid;
	*out = sp;
	return 0;
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
	if (lms_spec_encode(spec, spec_fd, err) < 0)
		return -1;
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
