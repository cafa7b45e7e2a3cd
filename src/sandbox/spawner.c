/*
 * The daemon's side of the spawner: starting it, and the requests its threads send (one-shot jobs,
 * lasting sandboxes' CREATE, EXEC and DESTROY). Each request is one record on the spawner's socket
 * with its descriptors: the spec in a memfd, the write end of an events pipe the daemon reads frames
 * from (frames.c), and for commands the read end of a cancel pipe. The spawner itself is pool.c, its
 * workers worker.c, a request's events job.c; docs/ARCHITECTURE.md draws the whole.
 */
#include "sandbox/spawner.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/fdio.h"
#include "config.h"
#include "core/log.h"
#include "sandbox/spawner-proto.h"

struct lms_spawner {
	pthread_mutex_t lock; /* sock, pid and generation, which a restart changes */
	int sock;
	pid_t pid;
	unsigned generation;
	/* What a restart needs: the helper binary, the pool's base spec encoded in a memfd, its size. */
	char *helper;
	int base_fd;
	unsigned pool_size;
	/* The watcher thread (lms_spawner_watch), woken by a byte on wake[1] to stop. */
	pthread_t watcher;
	bool watching;
	int wake[2];
};

/* The spawner's process image: `helper` (the static lm-sandbox) when given, so that every worker and
 * sandbox is a fork of a small process rather than of the daemon with all its shared libraries (page
 * tables copied at each fork, torn down at each exit: most of a sandbox's CPU cost). Returns only when
 * that failed, with the socket this fork then serves on itself. */
static int
exec_helper(const char *helper, int sock, const struct lms_sandbox_spec *pool_base, unsigned pool_size)
{
	/* The socket moves above 4 first: it may be 3 or 4 itself, which the helper's arguments name. */
	int high_sock = fcntl(sock, F_DUPFD_CLOEXEC, 5);
	if (high_sock < 0)
		return sock;
	close(sock);
	/* The base too: dup2 onto the number a descriptor already has would keep its close-on-exec. */
	int memfd = memfd_create("lms-pool-base", MFD_CLOEXEC);
	int base_fd = memfd >= 0 ? fcntl(memfd, F_DUPFD_CLOEXEC, 5) : -1;
	if (memfd >= 0)
		close(memfd);
	struct lms_buf b = {0};
	lms_spec_encode(pool_base, &b);
	bool ok = base_fd >= 0 && lms_fd_write_all(base_fd, b.data, b.len) == 0;
	lms_buf_clear(&b);
	if (ok && dup2(high_sock, 3) >= 0 && dup2(base_fd, 4) >= 0) {
		char size[16];
		snprintf(size, sizeof(size), "%u", pool_size);
		/* The daemon's log level travels as an argument: the helper gets no environment. */
		const char *level = lms_log_level_name((enum lms_log_level)lms_log_threshold);
		char *argv[] = {
		    (char *)"lm-sandbox", (char *)"__spawner", (char *)"3", (char *)"4", size, (char *)level, NULL};
		char *envp[] = {NULL};
		execve(helper, argv, envp);
	}
	lms_log(LMS_LOG_WARNING, NULL, "spawner: cannot run the helper binary; a fork of the daemon serves instead",
		"helper", helper, "error", strerror(errno), NULL);
	close(3); /* copies made for the helper, if any */
	close(4);
	if (base_fd >= 0)
		close(base_fd);
	return high_sock;
}

int
lms_spawner_start(const char *helper, const struct lms_sandbox_spec *pool_base, unsigned pool_size,
		  struct lms_spawner **out, struct lms_error **err)
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
		int sock = helper != NULL ? exec_helper(helper, sv[1], pool_base, pool_size) : sv[1];
		lms_spawner_serve(sock, pool_base, pool_size); /* no helper: the fork itself serves */
	}
	close(sv[1]);
	struct lms_spawner *sp = xcalloc(1, sizeof(*sp));
	pthread_mutex_init(&sp->lock, NULL);
	sp->sock = sv[0];
	sp->pid = pid;
	sp->generation = 1;
	sp->helper = helper ? xstrdup(helper) : NULL;
	sp->base_fd = -1;
	sp->pool_size = pool_size;
	sp->wake[0] = sp->wake[1] = -1;
	if (helper != NULL && (sp->base_fd = memfd_create("lms-pool-base", MFD_CLOEXEC)) >= 0) {
		struct lms_buf b = {0};
		lms_spec_encode(pool_base, &b);
		if (lms_fd_write_all(sp->base_fd, b.data, b.len) < 0)
			close(steal_fd(&sp->base_fd));
		lms_buf_clear(&b);
	}
	*out = sp;
	return 0;
}

/* A new spawner from the helper binary, from a threaded process: posix_spawn, nothing but async-signal-
 * safe work between its fork and its exec. */
static int
respawn(struct lms_spawner *sp, struct lms_error **err)
{
	if (sp->helper == NULL || sp->base_fd < 0)
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, 0,
				     "no helper binary to start a spawner from (a fork of the daemon served): "
				     "restart the daemon");
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "spawner: socketpair");
	if (lseek(sp->base_fd, 0, SEEK_SET) < 0) {
		lms_fd_close_all(sv, 2);
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "spawner: rewind the pool's base spec");
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
	posix_spawn_file_actions_adddup2(&fa, sp->base_fd, 4);
	char size[16];
	snprintf(size, sizeof(size), "%u", sp->pool_size);
	const char *level = lms_log_level_name((enum lms_log_level)lms_log_threshold);
	char *argv[] = {(char *)"lm-sandbox", (char *)"__spawner", (char *)"3", (char *)"4", size, (char *)level, NULL};
	char *envp[] = {NULL};
	pid_t pid;
	int r = posix_spawn(&pid, sp->helper, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	close(sv[1]);
	if (r != 0) {
		close(sv[0]);
		return lms_error_set(err, LMS_ERR_INTERNAL, r, "spawner: start %s", sp->helper);
	}
	pthread_mutex_lock(&sp->lock);
	close(sp->sock);
	sp->sock = sv[0];
	sp->pid = pid;
	sp->generation++;
	pthread_mutex_unlock(&sp->lock);
	return 0;
}

unsigned
lms_spawner_generation(struct lms_spawner *sp)
{
	pthread_mutex_lock(&sp->lock);
	unsigned g = sp->generation;
	pthread_mutex_unlock(&sp->lock);
	return g;
}

static void
log_death(pid_t pid, int status)
{
	char how[32];
	if (WIFSIGNALED(status))
		snprintf(how, sizeof(how), "signal %d", WTERMSIG(status));
	else
		snprintf(how, sizeof(how), "status %d", WEXITSTATUS(status));
	char pid_text[16];
	snprintf(pid_text, sizeof(pid_text), "%d", (int)pid);
	lms_log(LMS_LOG_ERROR, NULL,
		"spawner: it died; starting a new one (persistent sandboxes keep their files and get a new PID 1 at "
		"their next use; their processes are gone)",
		"pid", pid_text, "how", how, NULL);
}

/* Waits for the spawner's death (its pidfd) or the stop byte; a dead spawner is replaced at once. This
 * thread is the new spawner's parent, and the spawner dies with its parent thread (PR_SET_PDEATHSIG):
 * it lives until lms_spawner_stop. */
static void *
watch_main(void *arg)
{
	struct lms_spawner *sp = arg;
	for (;;) {
		pthread_mutex_lock(&sp->lock);
		pid_t pid = sp->pid;
		pthread_mutex_unlock(&sp->lock);
		int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (pidfd < 0) {
			lms_log(LMS_LOG_WARNING, NULL,
				"spawner: cannot watch it (pidfd_open): a dead spawner is not replaced", "error",
				strerror(errno), NULL);
			return NULL;
		}
		struct pollfd p[2] = {{.fd = pidfd, .events = POLLIN}, {.fd = sp->wake[0], .events = POLLIN}};
		int n;
		while ((n = poll(p, 2, -1)) < 0 && errno == EINTR)
			;
		close(pidfd);
		if (n < 0 || p[1].revents)
			return NULL;
		int status = 0;
		if (waitpid(pid, &status, 0) < 0)
			status = 0;
		log_death(pid, status);
		_cleanup_error_ struct lms_error *err = NULL;
		if (respawn(sp, &err) < 0) {
			lms_log(LMS_LOG_ERROR, NULL, "spawner: could not start a new one: no sandbox can run", "error",
				err->message, NULL);
			return NULL;
		}
	}
}

int
lms_spawner_watch(struct lms_spawner *sp, struct lms_error **err)
{
	if (pipe2(sp->wake, O_CLOEXEC) < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "spawner: pipe");
	int r = pthread_create(&sp->watcher, NULL, watch_main, sp);
	if (r != 0) {
		lms_fd_close_all(sp->wake, 2);
		sp->wake[0] = sp->wake[1] = -1;
		return lms_error_set(err, LMS_ERR_INTERNAL, r, "spawner: start its watcher thread");
	}
	sp->watching = true;
	return 0;
}

int
lms_spawner_helper_main(int sock, int base_fd, unsigned pool_size, const char *log_level)
{
	int level = log_level ? lms_log_level_parse(log_level) : -1;
	if (level >= 0)
		lms_log_set_level((enum lms_log_level)level);
	static struct lms_sandbox_spec base;
	_cleanup_error_ struct lms_error *err = NULL;
	size_t len = 0;
	char *data = lms_fd_read_whole(base_fd, LMS_SPAWN_SPEC_MAX, &len, "the pool's base spec", &err);
	void *storage = NULL;
	if (data == NULL || lms_spec_decode(data, len, &base, &storage, &err) < 0) {
		fprintf(stderr, "lm-sandbox __spawner: %s\n", err->message);
		return 125;
	}
	close(base_fd);
	fcntl(sock, F_SETFD, FD_CLOEXEC);
	lms_spawner_serve(sock, &base, pool_size);
}

void
lms_spawner_stop(struct lms_spawner *sp)
{
	if (sp == NULL)
		return;
	if (sp->watching) {
		(void)!write(sp->wake[1], "x", 1);
		pthread_join(sp->watcher, NULL);
	}
	if (sp->wake[0] >= 0)
		lms_fd_close_all(sp->wake, 2);
	close(sp->sock); /* the spawner reads end-of-file and exits */
	waitpid(sp->pid, NULL, 0);
	if (sp->base_fd >= 0)
		close(sp->base_fd);
	free(sp->helper);
	pthread_mutex_destroy(&sp->lock);
	free(sp);
}

static int
spec_fd(const struct lms_sandbox_spec *spec, struct lms_error **err)
{
	int fd = memfd_create("lms-job", MFD_CLOEXEC);
	if (fd < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "spawner: memfd_create");
	struct lms_buf encoded = {0};
	lms_spec_encode(spec, &encoded);
	int wr = lms_fd_write_all(fd, encoded.data, encoded.len);
	lms_buf_clear(&encoded);
	if (wr < 0) {
		int e = errno;
		close(fd);
		return lms_error_set(err, LMS_ERR_INTERNAL, e, "spawner: write the job");
	}
	return fd;
}

/* Sends one request: its spec (when given), an events pipe and, for commands, a cancel pipe. The
 * daemon's ends go to *job. */
static int
send_request_with(struct lms_spawner *sp, uint32_t type, uint64_t sandbox, const struct lms_sandbox_spec *spec,
		  const int *extra, size_t n_extra, struct lms_job **out, struct lms_error **err)
{
	int fds[LMS_SPAWN_MAX_FDS] = {-1, -1, -1, -1, -1, -1}, events[2] = {-1, -1}, cancel[2] = {-1, -1};
	size_t nfds = 0;
	if (spec != NULL && (fds[nfds++] = spec_fd(spec, err)) < 0)
		return -1;
	int r = 0;
	if (pipe2(events, O_CLOEXEC) < 0)
		r = lms_error_set(err, LMS_ERR_INTERNAL, errno, "spawner: pipe");
	fds[nfds++] = events[1];
	if (r == 0 && lms_spawn_nfds(type) == 3) {
		if (pipe2(cancel, O_CLOEXEC) < 0)
			r = lms_error_set(err, LMS_ERR_INTERNAL, errno, "spawner: pipe");
		fds[nfds++] = cancel[0];
	}
	for (size_t i = 0; i < n_extra; i++)
		fds[nfds++] = extra[i];
	struct lms_spawn_msg msg = {.type = type, .sandbox = sandbox, .image = spec ? lms_pool_key(spec) : 0};
	if (r == 0) {
		pthread_mutex_lock(&sp->lock);
		ssize_t sent = lms_fd_send(sp->sock, &msg, sizeof(msg), fds, nfds);
		int e = errno;
		pthread_mutex_unlock(&sp->lock);
		if (sent != (ssize_t)sizeof(msg))
			r = lms_error_set(err, LMS_ERR_INTERNAL, e,
					  "spawner: send the request (the spawner process is gone; a new one is "
					  "being started: try again)");
	}
	lms_fd_close_all(fds, nfds - n_extra); /* the caller's own stay the caller's */
	if (r < 0) {
		lms_fd_close_all(events, 1);
		lms_fd_close_all(cancel + 1, 1);
		return -1;
	}
	*out = lms_job_new(events[0], cancel[1]);
	return 0;
}

static int
send_request(struct lms_spawner *sp, uint32_t type, uint64_t sandbox, const struct lms_sandbox_spec *spec,
	     struct lms_job **out, struct lms_error **err)
{
	return send_request_with(sp, type, sandbox, spec, NULL, 0, out, err);
}

int
lms_spawner_submit(struct lms_spawner *sp, const struct lms_sandbox_spec *spec, struct lms_job **out,
		   struct lms_error **err)
{
	return send_request(sp, LMS_SPAWN_JOB, 0, spec, out, err);
}

int
lms_spawner_exec(struct lms_spawner *sp, uint64_t sandbox, const struct lms_sandbox_spec *spec, struct lms_job **out,
		 struct lms_error **err)
{
	return send_request(sp, LMS_SPAWN_EXEC, sandbox, spec, out, err);
}

/* A request answered by one RESULT (into *result when not NULL) or ERROR frame, after which CREATE's
 * STDOUT frame of PID 1's pid (lms_frame_pid; *pid1 stays -1 without one). extra: descriptors the request
 * carries after its own (the caller keeps them). */
static int
request_answer(struct lms_spawner *sp, uint32_t type, uint64_t sandbox, const struct lms_sandbox_spec *spec,
	       const int *extra, size_t n_extra, pid_t *pid1, struct lms_sandbox_result *result, struct lms_error **err)
{
	struct lms_job *job = NULL;
	if (send_request_with(sp, type, sandbox, spec, extra, n_extra, &job, err) < 0)
		return -1;
	struct lms_job_event ev = {0};
	int r;
	if (pid1 != NULL)
		*pid1 = -1;
	while ((r = lms_job_next(job, &ev, err)) == 1 && ev.type == LMS_JOB_STDOUT) {
		int32_t v;
		if (pid1 != NULL && ev.len == sizeof(v)) {
			memcpy(&v, ev.data, sizeof(v));
			*pid1 = v;
		}
		free(ev.data);
	}
	lms_job_free(job);
	if (r < 0)
		return -1;
	if (r == 1 && ev.type == LMS_JOB_ERROR) {
		if (err != NULL && *err == NULL)
			*err = steal_pointer(&ev.error);
		lms_error_free(ev.error);
		return -1;
	}
	free(ev.data);
	if (result != NULL && (r != 1 || ev.type != LMS_JOB_RESULT))
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "spawner: a request ended without its answer");
	if (result != NULL)
		*result = ev.result;
	return 0;
}

int
lms_spawner_create(struct lms_spawner *sp, uint64_t sandbox, const struct lms_sandbox_spec *base, pid_t *pid1,
		   struct lms_error **err)
{
	return request_answer(sp, LMS_SPAWN_CREATE, sandbox, base, NULL, 0, pid1, NULL, err);
}

int
lms_spawner_start_background(struct lms_spawner *sp, uint64_t sandbox, const struct lms_sandbox_spec *spec,
			     const struct lms_background_io *io, int *pid, int *exit_code, struct lms_error **err)
{
	int extra[4] = {io->output, io->input, io->status, io->control};
	struct lms_sandbox_result res = {0};
	if (request_answer(sp, LMS_SPAWN_START, sandbox, spec, extra, 4, NULL, &res, err) < 0)
		return -1;
	*pid = res.pid;
	*exit_code = res.exit_code;
	return 0;
}

int
lms_spawner_destroy(struct lms_spawner *sp, uint64_t sandbox, struct lms_error **err)
{
	return request_answer(sp, LMS_SPAWN_DESTROY, sandbox, NULL, NULL, 0, NULL, NULL, err);
}
