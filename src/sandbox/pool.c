/*
 * The spawner process: forked (or exec'd as `lm-sandbox __spawner`) before the daemon's first thread,
 * single-threaded, it keeps the workers (worker.c) and routes every request of the daemon to one:
 * a one-shot job to a worker holding a prepared sandbox (else an idle one, else a new one), a lasting
 * sandbox's CREATE to an idle or new worker that then owns it, and its EXEC and DESTROY to that owner.
 * It keeps pool_size sandboxes of the host image prepared ahead of demand, and a few of each image
 * recently asked for (IMAGES_WARM, IMAGE_WARM), and says why when preparing fails.
 */
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fdio.h"
#include "core/log.h"
#include "sandbox/seccomp.h"
#include "sandbox/spawner-proto.h"

/* Workers left waiting without a sandbox (past this many, one that finishes a job ends instead). */
#define IDLE_MAX 16

/* Preparing failures in a row after which the pool stops refilling until the next job. */
#define FAILURES_MAX 3

/* Imported images kept warm beside the host image (which keeps its pool_size): the IMAGES_WARM most
 * recently asked for by a one-shot job, each with up to IMAGE_WARM prepared sandboxes (no more than
 * pool_size). A sandbox of an image that falls out of that list is ended. Only a worker that ran a job
 * of an image knows its layers, so it is that worker that prepares the next one: an image gets as many
 * warm sandboxes as its jobs ran at once, up to IMAGE_WARM (API-NOTES.md). */
#define IMAGES_WARM 4
#define IMAGE_WARM 2

enum worker_state {
	W_PREPARING,  /* preparing a pool sandbox; says READY or FAILED next */
	W_READY,      /* holds a prepared sandbox and waits for a job */
	W_BUSY,	      /* runs a one-shot job; says DONE next */
	W_IDLE,	      /* waits, holding no sandbox */
	W_CREATING,   /* makes a lasting sandbox; says OWNS or DONE next */
	W_OWNER,      /* holds a lasting sandbox and runs its commands */
	W_DESTROYING, /* ends its lasting sandbox; says DONE next */
};

struct worker {
	pid_t pid;
	int ctl; /* the spawner's end of the worker's socket */
	enum worker_state state;
	uint64_t sandbox; /* W_CREATING, W_OWNER, W_DESTROYING: the daemon's id of it */
	uint64_t image;	  /* W_PREPARING, W_READY: its sandbox's image key (0: the host image) */
	uint64_t knows;	  /* the image key it can prepare (its last image job's), or 0 */
};

struct pool {
	struct lms_pool_config cfg;
	unsigned size;
	struct worker *w;
	unsigned n, cap;
	unsigned failures;	      /* in a row: past FAILURES_MAX, refilling waits for the next job */
	uint64_t recent[IMAGES_WARM]; /* image keys kept warm, the most recently used first */
	unsigned n_recent;
	int sock, sigfd;
};

size_t
lms_spawn_nfds(uint32_t type)
{
	switch ((enum lms_spawn_type)type) {
	case LMS_SPAWN_JOB:
	case LMS_SPAWN_EXEC:
		return 3;
	case LMS_SPAWN_CREATE:
		return 2;
	case LMS_SPAWN_START:
		return 6;
	case LMS_SPAWN_DESTROY:
		return 1;
	case LMS_SPAWN_PREPARE:
	case LMS_SPAWN_RELEASE:
		return 0;
	}
	return SIZE_MAX;
}

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
	pool->cfg.nice = getpriority(PRIO_PROCESS, 0);
	if (errno != 0)
		pool->cfg.nice = 0;
	pool->cfg.low_priority = pool->cfg.nice < LMS_POOL_NICE &&
				 setpriority(PRIO_PROCESS, 0, pool->cfg.nice + 1) == 0 &&
				 setpriority(PRIO_PROCESS, 0, pool->cfg.nice) == 0;
}

static unsigned
pool_count(const struct pool *pool, enum worker_state state)
{
	unsigned n = 0;
	for (unsigned i = 0; i < pool->n; i++)
		n += pool->w[i].state == state;
	return n;
}

/* Forks a worker: preparing a pool sandbox, or idle. Returns its index, or -1. */
static int
pool_spawn(struct pool *pool, bool prepare)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		lms_log(LMS_LOG_ERROR, NULL, "spawner: cannot make a worker's socket", "error", strerror(errno), NULL);
		return -1;
	}
	pid_t pid = fork();
	if (pid == 0) {
		close(pool->sock);
		close(pool->sigfd);
		close(sv[0]);
		for (unsigned i = 0; i < pool->n; i++)
			close(pool->w[i].ctl);
		sigset_t chld;
		sigemptyset(&chld);
		sigaddset(&chld, SIGCHLD);
		sigprocmask(SIG_UNBLOCK, &chld, NULL);
		lms_worker_main(sv[1], &pool->cfg, prepare);
	}
	close(sv[1]);
	if (pid < 0) {
		lms_log(LMS_LOG_ERROR, NULL, "spawner: cannot fork a worker", "error", strerror(errno), NULL);
		close(sv[0]);
		return -1;
	}
	if (pool->n == pool->cap) {
		pool->cap = pool->cap ? 2 * pool->cap : 16;
		pool->w = xrealloc(pool->w, pool->cap * sizeof(*pool->w));
	}
	pool->w[pool->n] = (struct worker){.pid = pid, .ctl = sv[0], .state = prepare ? W_PREPARING : W_IDLE};
	return (int)pool->n++;
}

/* Sandboxes of image `key` prepared or being prepared. */
static unsigned
pool_prepared(const struct pool *pool, uint64_t key)
{
	unsigned n = 0;
	for (unsigned i = 0; i < pool->n; i++)
		n += (pool->w[i].state == W_PREPARING || pool->w[i].state == W_READY) && pool->w[i].image == key;
	return n;
}

static bool
is_recent(const struct pool *pool, uint64_t key)
{
	for (unsigned k = 0; k < pool->n_recent; k++)
		if (pool->recent[k] == key)
			return true;
	return false;
}

/* An image a job asked for goes first in the list; the least recently used one falls out. */
static void
note_recent(struct pool *pool, uint64_t key)
{
	unsigned k = 0;
	while (k < pool->n_recent && pool->recent[k] != key)
		k++;
	if (k == pool->n_recent && pool->n_recent < IMAGES_WARM)
		pool->n_recent++;
	if (k == IMAGES_WARM)
		k--;
	memmove(pool->recent + 1, pool->recent, k * sizeof(*pool->recent));
	pool->recent[0] = key;
}

/* An image whose preparing failed (its layers removed, most often) is no longer kept warm. */
static void
forget_image(struct pool *pool, uint64_t key)
{
	for (unsigned k = 0; k < pool->n_recent; k++)
		if (pool->recent[k] == key) {
			memmove(pool->recent + k, pool->recent + k + 1,
				(pool->n_recent - k - 1) * sizeof(*pool->recent));
			pool->n_recent--;
			break;
		}
	for (unsigned i = 0; i < pool->n; i++)
		if (pool->w[i].knows == key)
			pool->w[i].knows = 0;
}

static bool
send_prepare(struct pool *pool, unsigned i, uint64_t key)
{
	struct lms_spawn_msg prepare = {.type = LMS_SPAWN_PREPARE, .image = key};
	if (lms_fd_send(pool->w[i].ctl, &prepare, sizeof(prepare), NULL, 0) <= 0)
		return false;
	pool->w[i].state = W_PREPARING;
	pool->w[i].image = key;
	return true;
}

/* Tops the pool up: each recent image to its share, from idle workers that know it; then the host image
 * to `size` sandboxes prepared or being prepared, idle workers first, then new ones. Prepared sandboxes
 * of images no longer recent are ended first. */
static void
pool_fill(struct pool *pool)
{
	struct lms_spawn_msg release = {.type = LMS_SPAWN_RELEASE};
	for (unsigned i = 0; i < pool->n; i++)
		if (pool->w[i].state == W_READY && pool->w[i].image != 0 && !is_recent(pool, pool->w[i].image) &&
		    lms_fd_send(pool->w[i].ctl, &release, sizeof(release), NULL, 0) > 0) {
			pool->w[i].state = W_IDLE;
			pool->w[i].image = 0;
		}
	unsigned per_image = pool->size < IMAGE_WARM ? pool->size : IMAGE_WARM;
	for (unsigned k = 0; k < pool->n_recent; k++) {
		uint64_t key = pool->recent[k];
		unsigned have = pool_prepared(pool, key);
		for (unsigned i = 0; i < pool->n && have < per_image; i++)
			if (pool->w[i].state == W_IDLE && pool->w[i].knows == key && send_prepare(pool, i, key))
				have++;
	}
	unsigned have = pool_prepared(pool, 0);
	for (unsigned i = 0; i < pool->n && have < pool->size && pool->failures < FAILURES_MAX; i++)
		if (pool->w[i].state == W_IDLE && send_prepare(pool, i, 0))
			have++;
	for (; have < pool->size && pool->failures < FAILURES_MAX; have++)
		if (pool_spawn(pool, true) < 0)
			return;
}

static void
pool_drop(struct pool *pool, unsigned i)
{
	close(pool->w[i].ctl);
	pool->w[i] = pool->w[--pool->n];
}

static void
preparing_failed(struct pool *pool, uint64_t image, const char *why)
{
	if (image != 0) {
		lms_log(LMS_LOG_WARNING, NULL,
			"pool: preparing a sandbox of an image or a network failed; it is no longer kept warm", "error",
			why, NULL);
		forget_image(pool, image);
		return;
	}
	pool->failures++;
	lms_log(LMS_LOG_WARNING, NULL, "pool: preparing a sandbox failed", "error", why, NULL);
	if (pool->failures == FAILURES_MAX)
		lms_log(LMS_LOG_ERROR, NULL,
			"pool: stopped refilling after 3 failures in a row; each command now makes its own sandbox "
			"and the pool tries again after the next one",
			"error", why, NULL);
}

/* A worker's socket spoke. True when a one-shot job ended. */
static bool
pool_event(struct pool *pool, unsigned i)
{
	struct lms_worker_msg m;
	ssize_t n = recv(pool->w[i].ctl, &m, sizeof(m), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return false;
	struct worker *w = &pool->w[i];
	bool was_busy = w->state == W_BUSY;
	uint32_t type = n == (ssize_t)sizeof(m) ? m.type : 0;
	if (type == LMS_WORKER_READY && (w->state == W_PREPARING || w->state == W_BUSY || w->state == W_CREATING)) {
		/* Busy or creating: a request was given to it while it prepared, and takes that sandbox. */
		if (w->state == W_PREPARING)
			w->state = W_READY;
		pool->failures = 0;
		return false;
	}
	if (type == LMS_WORKER_OWNS && w->state == W_CREATING) {
		w->state = W_OWNER;
		return false;
	}
	if (type == LMS_WORKER_DONE && (was_busy || w->state == W_CREATING || w->state == W_DESTROYING)) {
		w->state = W_IDLE;
		w->sandbox = 0;
		if (pool_count(pool, W_IDLE) > IDLE_MAX)
			pool_drop(pool, i); /* it reads end-of-file and ends */
		return was_busy;
	}
	if (type == LMS_WORKER_FAILED) {
		/* A pool sandbox that failed, while preparing or after it was offered: the worker stays, idle
		 * (or busy with a job it was given meanwhile, which it serves with a sandbox of its own). */
		m.what[sizeof(m.what) - 1] = '\0';
		preparing_failed(pool, w->image, m.what);
		if (w->state == W_PREPARING || w->state == W_READY)
			w->state = W_IDLE;
		return false;
	}
	/* End-of-file, or a message that does not fit its state: the worker is gone or lost. */
	if (w->state == W_PREPARING || w->state == W_READY) {
		preparing_failed(pool, w->image, "the worker died while preparing");
	} else if (w->state == W_OWNER || w->state == W_CREATING || w->state == W_DESTROYING) {
		char id[24];
		snprintf(id, sizeof(id), "%llu", (unsigned long long)w->sandbox);
		lms_log(LMS_LOG_ERROR, NULL, "spawner: the worker of a lasting sandbox died; the sandbox is gone",
			"sandbox", id, NULL);
	}
	pool_drop(pool, i);
	return was_busy;
}

static int
find_owner(const struct pool *pool, uint64_t sandbox)
{
	for (unsigned i = 0; i < pool->n; i++)
		if (pool->w[i].sandbox == sandbox && (pool->w[i].state == W_OWNER || pool->w[i].state == W_CREATING))
			return (int)i;
	return -1;
}

/* A worker to take a new request: one holding a prepared sandbox of recipe `key` when `prepared`, else one
 * preparing it (the rest of a sandbox's making takes less than all of it: a network's setup is tens of
 * milliseconds), else an idle one, else a new idle one. */
static int
take_worker(struct pool *pool, uint64_t key, bool prepared)
{
	for (unsigned i = 0; i < pool->n && prepared; i++)
		if (pool->w[i].state == W_READY && pool->w[i].image == key)
			return (int)i;
	for (unsigned i = 0; i < pool->n && prepared; i++)
		if (pool->w[i].state == W_PREPARING && pool->w[i].image == key)
			return (int)i;
	for (unsigned i = 0; i < pool->n; i++)
		if (pool->w[i].state == W_IDLE)
			return (int)i;
	return pool_spawn(pool, false);
}

/* Forwards a request to worker i. False when that worker is gone (it is dropped). */
static bool
forward(struct pool *pool, unsigned i, const struct lms_spawn_msg *msg, const int *fds, size_t nfds)
{
	if (lms_fd_send(pool->w[i].ctl, msg, sizeof(*msg), fds, nfds) == (ssize_t)sizeof(*msg))
		return true;
	pool_drop(pool, i);
	return false;
}

/* The events descriptor of a request, where the spawner answers when no worker can. */
static int
events_fd(const struct lms_spawn_msg *msg, const int *fds)
{
	return msg->type == LMS_SPAWN_DESTROY ? fds[0] : fds[1];
}

static void
route(struct pool *pool, const struct lms_spawn_msg *msg, const int *fds, size_t nfds)
{
	char why[96];
	int i = -1;
	switch ((enum lms_spawn_type)msg->type) {
	case LMS_SPAWN_JOB:
		/* A worker with a prepared sandbox of the job's image, else an idle one (which makes a sandbox
		 * for it, and learns the image to prepare the next one). */
		do
			i = take_worker(pool, msg->image, true);
		while (i >= 0 && !forward(pool, (unsigned)i, msg, fds, nfds));
		if (i >= 0) {
			pool->w[i].state = W_BUSY;
			pool->w[i].image = 0;
			if (msg->image != 0)
				pool->w[i].knows = msg->image;
		}
		if (msg->image != 0)
			note_recent(pool, msg->image);
		pool->failures = 0;
		break;
	case LMS_SPAWN_CREATE:
		if (find_owner(pool, msg->sandbox) >= 0) {
			snprintf(why, sizeof(why), "sandbox %llu exists already", (unsigned long long)msg->sandbox);
			lms_frame_error_text(events_fd(msg, fds), LMS_ERR_INVALID, why);
			return;
		}
		/* A worker with a prepared sandbox of the host image first: it becomes the lasting one when its
		 * limits fit. An image's prepared one has its upper layer on its scratch file system, which a
		 * stored sandbox cannot keep: those are made anew. */
		do
			i = take_worker(pool, 0, msg->image == 0);
		while (i >= 0 && !forward(pool, (unsigned)i, msg, fds, nfds));
		if (i >= 0) {
			pool->w[i].state = W_CREATING;
			pool->w[i].sandbox = msg->sandbox;
			pool->w[i].image = 0;
		}
		break;
	case LMS_SPAWN_EXEC:
	case LMS_SPAWN_START:
	case LMS_SPAWN_DESTROY:
		i = find_owner(pool, msg->sandbox);
		if (i >= 0 && forward(pool, (unsigned)i, msg, fds, nfds)) {
			if (msg->type == LMS_SPAWN_DESTROY)
				pool->w[i].state = W_DESTROYING;
			return;
		}
		snprintf(why, sizeof(why), "sandbox %llu does not exist (or its worker died)",
			 (unsigned long long)msg->sandbox);
		lms_frame_error_text(events_fd(msg, fds), LMS_ERR_NOT_FOUND, why);
		return;
	case LMS_SPAWN_PREPARE:
	case LMS_SPAWN_RELEASE:
		return;
	}
	if (i < 0)
		lms_frame_error_text(events_fd(msg, fds), LMS_ERR_INTERNAL,
				     "the spawner could not start a worker (see the daemon's log)");
}

/* The daemon's end-of-file: workers read end-of-file and clean up, and the spawner exits only once
 * every worker has, so that nothing outlives it. */
__attribute__((noreturn)) static void
shut_down(struct pool *pool)
{
	for (unsigned i = 0; i < pool->n; i++)
		close(pool->w[i].ctl);
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	_exit(0);
}

static void
serve_daemon(struct pool *pool)
{
	struct lms_spawn_msg msg;
	int fds[LMS_SPAWN_MAX_FDS] = {-1, -1, -1};
	size_t nfds = 0;
	ssize_t n = lms_fd_recv(pool->sock, &msg, sizeof(msg), fds, LMS_SPAWN_MAX_FDS, &nfds);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		shut_down(pool);
	if (n == (ssize_t)sizeof(msg) && nfds == lms_spawn_nfds(msg.type) && msg.type != LMS_SPAWN_PREPARE &&
	    msg.type != LMS_SPAWN_RELEASE)
		route(pool, &msg, fds, nfds);
	lms_fd_close_all(fds, nfds);
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
	pool->sock = sock;
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	pool->sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (pool->sigfd < 0)
		lms_log(LMS_LOG_ERROR, NULL, "spawner: signalfd: ended workers stay zombies", "error", strerror(errno),
			NULL);
	pool_fill(pool);
	struct pollfd *fds = NULL;
	unsigned fds_cap = 0;
	for (;;) {
		unsigned n_workers = pool->n;
		if (fds_cap < 2 + n_workers) {
			fds_cap = 2 * (2 + n_workers);
			fds = xrealloc(fds, fds_cap * sizeof(*fds));
		}
		fds[0] = (struct pollfd){.fd = sock, .events = POLLIN};
		fds[1] = (struct pollfd){.fd = pool->sigfd, .events = POLLIN};
		for (unsigned i = 0; i < n_workers; i++)
			fds[2 + i] = (struct pollfd){.fd = pool->w[i].ctl, .events = POLLIN};
		if (poll(fds, 2 + n_workers, -1) < 0)
			continue;
		if (fds[1].revents)
			reap(pool->sigfd);
		bool job_ended = false;
		/* From the last: pool_drop moves the last worker into the slot it frees. */
		for (unsigned i = n_workers; i-- > 0;)
			if (fds[2 + i].revents)
				job_ended |= pool_event(pool, i);
		if (fds[0].revents)
			serve_daemon(pool);
		/* Preparing a sandbox beside a command that is starting slows it down by more than the CPU
		 * it takes (both take the same kernel locks: mounts, namespaces, cgroups), so a sandbox is
		 * replaced when a command ends, or when none runs, rather than when one is taken. */
		if (pool_count(pool, W_BUSY) == 0 || job_ended)
			pool_fill(pool);
	}
}

void
lms_spawner_serve(int sock, const struct lms_sandbox_spec *pool_base, unsigned pool_size)
{
	static struct pool pool;
	pool.cfg.base = pool_base;
	pool.size = pool_size < LMS_POOL_MAX ? pool_size : LMS_POOL_MAX;
	spawner_main(sock, &pool);
}
