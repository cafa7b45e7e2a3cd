#include "server/processes.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/id.h"
#include "core/fdio.h"
#include "core/log.h"

struct proc {
	char id[24], sandbox[LMS_SANDBOX_ID_SIZE];
	uint64_t serial; /* the reader's epoll token: a process forgotten meanwhile is not found by it */
	int pid;
	char *cmd;
	double started_s, ended_s;
	bool exited, lost;
	int exit_code, sig;
	/* The latest `cap` bytes of its output, written at total % cap. */
	char *ring;
	size_t cap;
	uint64_t total;
	int out_fd, status_fd, control_fd, stdin_fd;
	unsigned refs; /* callers waiting on it; it is freed when forgotten and none is left */
	bool forgotten;
	struct proc *next;
};

struct lms_procs {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct proc *list;
	uint64_t next_serial;
	int epfd, wake;
	pthread_t reader;
	bool have_reader;
};

enum { TOKEN_OUT = 0, TOKEN_STATUS = 1 };

static json_t *
rfc3339(double s)
{
	char text[40];
	lms_rfc3339(s, text);
	return json_string(text);
}

static json_t *
proc_json(const struct proc *p)
{
	json_t *o = json_pack("{s:s, s:i, s:s, s:s, s:o, s:I}", "process_id", p->id, "pid", p->pid, "cmd", p->cmd,
			      "state", p->exited ? "exited" : "running", "started_at", rfc3339(p->started_s),
			      "output_bytes", (json_int_t)p->total);
	const char *sig = p->sig ? lms_signal_name(p->sig) : NULL;
	json_object_set_new(o, "exit_code", p->exited && !p->lost ? json_integer(p->exit_code) : json_null());
	json_object_set_new(o, "signal", sig ? json_string(sig) : json_null());
	json_object_set_new(o, "ended_at", p->exited ? rfc3339(p->ended_s) : json_null());
	return o;
}

static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(steal_fd(fd));
}

static void
proc_free(struct proc *p)
{
	close_fd(&p->out_fd);
	close_fd(&p->status_fd);
	close_fd(&p->control_fd);
	close_fd(&p->stdin_fd);
	free(p->ring);
	free(p->cmd);
	free(p);
}

/* Caller holds the lock. */
static void
append(struct proc *p, const char *data, size_t len)
{
	if (p->cap == 0)
		return;
	if (p->ring == NULL)
		p->ring = xmalloc(p->cap);
	/* Only the latest cap bytes can stay. */
	if (len > p->cap) {
		p->total += len - p->cap;
		data += len - p->cap;
		len = p->cap;
	}
	size_t at = (size_t)(p->total % p->cap), first = p->cap - at < len ? p->cap - at : len;
	memcpy(p->ring + at, data, first);
	memcpy(p->ring, data + first, len - first);
	p->total += len;
}

static struct proc *
by_serial(struct lms_procs *ps, uint64_t serial)
{
	for (struct proc *p = ps->list; p; p = p->next)
		if (p->serial == serial)
			return p;
	return NULL;
}

static void
finish(struct lms_procs *ps, struct proc *p, const struct lms_sandbox_result *res)
{
	p->exited = true;
	p->ended_s = lms_wall_s();
	if (res != NULL) {
		p->exit_code = res->exit_code;
		p->sig = res->signal;
	} else {
		p->lost = true; /* its sandbox's PID 1 died, and it with it */
	}
	close_fd(&p->control_fd);
	close_fd(&p->stdin_fd);
	pthread_cond_broadcast(&ps->changed);
}

/* The reader thread's work for one ready descriptor, under the lock: the reads never block (the pipes
 * are non-blocking), and a process forgotten meanwhile (its descriptors closed) is not found. */
static void
serve_ready(struct lms_procs *ps, uint64_t token)
{
	static char buf[65536];
	pthread_mutex_lock(&ps->lock);
	struct proc *p = by_serial(ps, token >> 1);
	if (p != NULL && (token & 1) == TOKEN_STATUS && p->status_fd >= 0) {
		struct lms_sandbox_result res;
		int r = lms_background_status(p->status_fd, &res);
		if (r >= 0) {
			epoll_ctl(ps->epfd, EPOLL_CTL_DEL, p->status_fd, NULL);
			close_fd(&p->status_fd);
			finish(ps, p, r == 1 ? &res : NULL);
		}
	} else if (p != NULL && (token & 1) == TOKEN_OUT && p->out_fd >= 0) {
		for (int round = 0; round < 16; round++) {
			ssize_t n = read(p->out_fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				break; /* EAGAIN: all read */
			if (n == 0) {
				/* End of its output: it and everything it left behind have closed it. */
				epoll_ctl(ps->epfd, EPOLL_CTL_DEL, p->out_fd, NULL);
				close_fd(&p->out_fd);
				break;
			}
			append(p, buf, (size_t)n);
		}
		pthread_cond_broadcast(&ps->changed);
	}
	pthread_mutex_unlock(&ps->lock);
}

static void *
reader_main(void *arg)
{
	struct lms_procs *ps = arg;
	struct epoll_event evs[64];
	for (;;) {
		int n = epoll_wait(ps->epfd, evs, 64, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			lms_log(LMS_LOG_ERROR, NULL,
				"processes: epoll_wait failed: background output is no longer read", "error",
				strerror(errno), NULL);
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u64 == UINT64_MAX)
				return NULL; /* lms_procs_free */
			serve_ready(ps, evs[i].data.u64);
		}
	}
}

int
lms_procs_new(struct lms_procs **out, struct lms_error **err)
{
	struct lms_procs *ps = xcalloc(1, sizeof(*ps));
	pthread_mutex_init(&ps->lock, NULL);
	lms_cond_init_monotonic(&ps->changed);
	ps->next_serial = 1;
	ps->epfd = epoll_create1(EPOLL_CLOEXEC);
	ps->wake = eventfd(0, EFD_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
	int r = ps->epfd < 0 || ps->wake < 0 || epoll_ctl(ps->epfd, EPOLL_CTL_ADD, ps->wake, &ev) < 0 ? errno : 0;
	if (r == 0)
		r = pthread_create(&ps->reader, NULL, reader_main, ps);
	if (r != 0) {
		lms_procs_free(ps);
		return lms_error_set(err, LMS_ERR_INTERNAL, r, "start the background processes' reader");
	}
	ps->have_reader = true;
	*out = ps;
	return 0;
}

void
lms_procs_free(struct lms_procs *ps)
{
	if (ps == NULL)
		return;
	if (ps->have_reader) {
		uint64_t one = 1;
		(void)!write(ps->wake, &one, sizeof(one));
		pthread_join(ps->reader, NULL);
	}
	for (struct proc *p = ps->list, *next; p; p = next) {
		next = p->next;
		proc_free(p);
	}
	if (ps->epfd >= 0)
		close(ps->epfd);
	if (ps->wake >= 0)
		close(ps->wake);
	pthread_cond_destroy(&ps->changed);
	pthread_mutex_destroy(&ps->lock);
	free(ps);
}

/* Caller holds the lock. Room for one more in the sandbox: the oldest exited one may go. */
static int
make_room(struct lms_procs *ps, const char *sandbox, struct lms_error **err)
{
	unsigned n = 0;
	struct proc **oldest_exited = NULL;
	for (struct proc **pp = &ps->list; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->sandbox, sandbox) != 0)
			continue;
		n++;
		if ((*pp)->exited && (*pp)->out_fd < 0)
			oldest_exited = pp; /* the list is newest first: the last one seen is the oldest */
	}
	if (n < LMS_PROCS_PER_SANDBOX)
		return 0;
	if (oldest_exited == NULL)
		return lms_error_set(err, LMS_ERR_BUSY, 0,
				     "%d background processes run in this sandbox already: signal one or wait for one",
				     LMS_PROCS_PER_SANDBOX);
	struct proc *gone = *oldest_exited;
	*oldest_exited = gone->next;
	gone->forgotten = true;
	if (gone->refs == 0)
		proc_free(gone);
	return 0;
}

struct pipes {
	int out[2], in[2], status[2], control[2];
};

static int
open_pipes(struct pipes *pp, struct lms_error **err)
{
	int *all[4] = {pp->out, pp->in, pp->status, pp->control};
	for (int i = 0; i < 4; i++) {
		all[i][0] = all[i][1] = -1;
	}
	for (int i = 0; i < 4; i++)
		if (pipe2(all[i], O_CLOEXEC) < 0)
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "background process: pipe");
	/* Our ends never block: the reader thread, a signal, a write to its input. */
	if (fcntl(pp->out[0], F_SETFL, O_NONBLOCK) < 0 || fcntl(pp->status[0], F_SETFL, O_NONBLOCK) < 0 ||
	    fcntl(pp->in[1], F_SETFL, O_NONBLOCK) < 0 || fcntl(pp->control[1], F_SETFL, O_NONBLOCK) < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "background process: fcntl");
	return 0;
}

static void
close_pipes(struct pipes *pp)
{
	lms_fd_close_all(pp->out, 2);
	lms_fd_close_all(pp->in, 2);
	lms_fd_close_all(pp->status, 2);
	lms_fd_close_all(pp->control, 2);
}

static struct proc *
proc_new(struct lms_procs *ps, const char *sandbox, const char *cmd, uint64_t cap, struct pipes *pp)
{
	struct proc *p = xcalloc(1, sizeof(*p));
	lms_random_id(p->id, "proc_");
	snprintf(p->sandbox, sizeof(p->sandbox), "%s", sandbox);
	p->cmd = xstrdup(cmd);
	p->cap = cap;
	p->started_s = lms_wall_s();
	p->out_fd = steal_fd(&pp->out[0]);
	p->status_fd = steal_fd(&pp->status[0]);
	p->control_fd = steal_fd(&pp->control[1]);
	p->stdin_fd = steal_fd(&pp->in[1]);
	p->serial = ps->next_serial++;
	return p;
}

json_t *
lms_procs_start(struct lms_procs *ps, struct lms_spawner *sp, const char *sandbox, uint64_t key,
		const struct lms_sandbox_spec *spec, const char *cmd, struct lms_error **err)
{
	pthread_mutex_lock(&ps->lock);
	int room = make_room(ps, sandbox, err);
	pthread_mutex_unlock(&ps->lock);
	if (room < 0)
		return NULL;
	struct pipes pp;
	if (open_pipes(&pp, err) < 0) {
		close_pipes(&pp);
		return NULL;
	}
	struct lms_sandbox_spec run = *spec;
	run.stdin_data = NULL; /* it goes down the pipe: the command's input stays a pipe we hold */
	run.stdin_len = 0;
	struct lms_background_io io = {
	    .output = pp.out[1], .input = pp.in[0], .status = pp.status[1], .control = pp.control[0]};
	int pid = 0, exit_code = 0;
	int r = lms_spawner_start_background(sp, key, &run, &io, &pid, &exit_code, err);
	/* PID 1 holds its own copies of the command's ends now (or the command did not start). */
	lms_fd_close_all(&pp.out[1], 1);
	lms_fd_close_all(&pp.in[0], 1);
	lms_fd_close_all(&pp.status[1], 1);
	lms_fd_close_all(&pp.control[0], 1);
	if (r < 0) {
		close_pipes(&pp);
		return NULL;
	}
	pthread_mutex_lock(&ps->lock);
	struct proc *p = proc_new(ps, sandbox, cmd, spec->limits.output_bytes, &pp);
	p->pid = pid;
	struct epoll_event out_ev = {.events = EPOLLIN, .data.u64 = p->serial << 1 | TOKEN_OUT};
	struct epoll_event st_ev = {.events = EPOLLIN, .data.u64 = p->serial << 1 | TOKEN_STATUS};
	if (pid == 0) {
		/* It could not start: what PID 1 said is in the output pipe already, and nothing else will be. */
		char buf[4096];
		ssize_t n;
		while ((n = read(p->out_fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
			if (n > 0)
				append(p, buf, (size_t)n);
		close_fd(&p->out_fd);
		struct lms_sandbox_result res = {.exit_code = exit_code};
		close_fd(&p->status_fd);
		finish(ps, p, &res);
	} else if (epoll_ctl(ps->epfd, EPOLL_CTL_ADD, p->status_fd, &st_ev) < 0) {
		lms_log(LMS_LOG_ERROR, NULL, "processes: epoll_ctl: its exit will not be seen", "error",
			strerror(errno), NULL);
	}
	if (p->out_fd >= 0 && epoll_ctl(ps->epfd, EPOLL_CTL_ADD, p->out_fd, &out_ev) < 0)
		lms_log(LMS_LOG_ERROR, NULL, "processes: epoll_ctl: its output will not be read", "error",
			strerror(errno), NULL);
	p->next = ps->list;
	ps->list = p;
	bool feed = !p->exited && spec->stdin_data != NULL;
	char id[24];
	memcpy(id, p->id, sizeof(id));
	json_t *obj = proc_json(p);
	pthread_mutex_unlock(&ps->lock);
	/* The request's input, then end-of-file (as an exec's), without the lock: the process may be slow
	 * to read it. One that does not read it at all gets what fitted in the pipe. */
	if (feed)
		(void)lms_procs_write(ps, sandbox, id, spec->stdin_data, spec->stdin_len, true, 10000, NULL);
	return obj;
}

static bool
is_pid(const char *ref, int *pid)
{
	char *end;
	errno = 0;
	long n = strtol(ref, &end, 10);
	if (errno != 0 || end == ref || *end != '\0' || n <= 0 || n > 4194304)
		return false;
	*pid = (int)n;
	return true;
}

/* Caller holds the lock. The newest process of the sandbox with that id or pid. */
static struct proc *
find(struct lms_procs *ps, const char *sandbox, const char *ref, struct lms_error **err)
{
	int pid = 0;
	bool numeric = is_pid(ref, &pid);
	for (struct proc *p = ps->list; p; p = p->next)
		if (strcmp(p->sandbox, sandbox) == 0 && (numeric ? p->pid == pid : strcmp(p->id, ref) == 0))
			return p;
	lms_error_set(err, LMS_ERR_NOT_FOUND, 0, "no background process %.40s in sandbox %s (see GET .../processes)",
		      ref, sandbox);
	return NULL;
}

json_t *
lms_procs_list(struct lms_procs *ps, const char *sandbox)
{
	json_t *data = json_array();
	pthread_mutex_lock(&ps->lock);
	for (struct proc *p = ps->list; p; p = p->next)
		if (strcmp(p->sandbox, sandbox) == 0)
			json_array_insert_new(data, 0, proc_json(p)); /* the list is newest first */
	pthread_mutex_unlock(&ps->lock);
	return json_pack("{s:o}", "data", data);
}

/* Caller holds the lock and a reference on p. Waits until done(p) or wait_ms pass; false if p was
 * forgotten meanwhile. */
static bool
wait_for(struct lms_procs *ps, struct proc *p, bool (*done)(const struct proc *, uint64_t), uint64_t arg, int wait_ms)
{
	struct timespec until = lms_monotonic_after_ms(wait_ms);
	while (!p->forgotten && !done(p, arg))
		if (pthread_cond_timedwait(&ps->changed, &ps->lock, &until) != 0)
			break;
	return !p->forgotten;
}

static void
unref(struct proc *p)
{
	if (--p->refs == 0 && p->forgotten)
		proc_free(p);
}

static bool
has_exited(const struct proc *p, uint64_t arg)
{
	(void)arg;
	return p->exited;
}

json_t *
lms_procs_get(struct lms_procs *ps, const char *sandbox, const char *ref, int wait_ms, struct lms_error **err)
{
	pthread_mutex_lock(&ps->lock);
	struct proc *p = find(ps, sandbox, ref, err);
	json_t *obj = NULL;
	if (p != NULL) {
		p->refs++;
		if (wait_ms <= 0 || wait_for(ps, p, has_exited, 0, wait_ms))
			obj = proc_json(p);
		else
			lms_error_set(err, LMS_ERR_NOT_FOUND, 0, "background process %.40s is gone with its sandbox",
				      ref);
		unref(p);
	}
	pthread_mutex_unlock(&ps->lock);
	return obj;
}

/* More output past `offset`, or nothing more to come. */
static bool
has_output(const struct proc *p, uint64_t offset)
{
	return p->total > offset || (p->exited && p->out_fd < 0);
}

int
lms_procs_read(struct lms_procs *ps, const char *sandbox, const char *ref, uint64_t offset, size_t max, int wait_ms,
	       struct lms_buf *out, struct lms_proc_output *info, struct lms_error **err)
{
	pthread_mutex_lock(&ps->lock);
	struct proc *p = find(ps, sandbox, ref, err);
	if (p == NULL) {
		pthread_mutex_unlock(&ps->lock);
		return -1;
	}
	p->refs++;
	bool alive = wait_ms <= 0 || wait_for(ps, p, has_output, offset, wait_ms);
	if (alive) {
		uint64_t kept = p->total < p->cap ? p->total : p->cap, first = p->total - kept;
		uint64_t from = offset < first ? first : offset > p->total ? p->total : offset;
		size_t n = (size_t)(p->total - from) < max ? (size_t)(p->total - from) : max;
		for (size_t done = 0; done < n;) {
			size_t at = (size_t)((from + done) % p->cap),
			       run = p->cap - at < n - done ? p->cap - at : n - done;
			lms_buf_append(out, p->ring + at, run);
			done += run;
		}
		*info = (struct lms_proc_output){.offset = from,
						 .end = from + n,
						 .total = p->total,
						 .dropped = offset < first ? first - offset : 0,
						 .exited = p->exited && p->out_fd < 0 && from + n == p->total};
	} else {
		lms_error_set(err, LMS_ERR_NOT_FOUND, 0, "background process %.40s is gone with its sandbox", ref);
	}
	unref(p);
	pthread_mutex_unlock(&ps->lock);
	return alive ? 0 : -1;
}

int
lms_procs_signal(struct lms_procs *ps, const char *sandbox, const char *ref, int sig, struct lms_error **err)
{
	pthread_mutex_lock(&ps->lock);
	struct proc *p = find(ps, sandbox, ref, err);
	int r = p == NULL ? -1 : 0;
	if (p != NULL && (p->exited || p->control_fd < 0))
		r = lms_error_set(err, LMS_ERR_CONFLICT, 0, "background process %s has exited", p->id);
	unsigned char byte = (unsigned char)sig;
	if (r == 0 && write(p->control_fd, &byte, 1) != 1)
		r = lms_error_set(err, LMS_ERR_INTERNAL, errno, "signal background process %s", p->id);
	pthread_mutex_unlock(&ps->lock);
	return r;
}

int
lms_procs_write(struct lms_procs *ps, const char *sandbox, const char *ref, const char *data, size_t len,
		bool close_after, int wait_ms, struct lms_error **err)
{
	pthread_mutex_lock(&ps->lock);
	struct proc *p = find(ps, sandbox, ref, err);
	if (p == NULL) {
		pthread_mutex_unlock(&ps->lock);
		return -1;
	}
	if (p->stdin_fd < 0) {
		pthread_mutex_unlock(&ps->lock);
		return lms_error_set(err, LMS_ERR_CONFLICT, 0, "the input of background process %s is closed%s", p->id,
				     p->exited ? ": it has exited" : "");
	}
	/* The descriptor is ours to write while we hold a duplicate: a drop meanwhile closes only its copy. */
	int fd = fcntl(p->stdin_fd, F_DUPFD_CLOEXEC, 0);
	pthread_mutex_unlock(&ps->lock);
	if (fd < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "background process: dup its input");
	double deadline = lms_monotonic_ms() + wait_ms;
	size_t off = 0;
	int r = 0;
	while (r == 0 && off < len) {
		ssize_t n = write(fd, data + off, len - off);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN) {
			r = lms_error_set(err, LMS_ERR_CONFLICT, errno, "write to the input of background process %s",
					  ref);
			break;
		}
		double left = deadline - lms_monotonic_ms();
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};
		if (left <= 0 || poll(&pfd, 1, (int)left + 1) == 0)
			r = lms_error_set(err, LMS_ERR_BUSY, 0,
					  "background process %s does not read its input (%zu of %zu bytes written)",
					  ref, off, len);
	}
	close(fd);
	if (r == 0 && close_after) {
		pthread_mutex_lock(&ps->lock);
		if ((p = find(ps, sandbox, ref, NULL)) != NULL)
			close_fd(&p->stdin_fd);
		pthread_mutex_unlock(&ps->lock);
	}
	return r;
}

void
lms_procs_drop(struct lms_procs *ps, const char *sandbox)
{
	if (ps == NULL)
		return;
	pthread_mutex_lock(&ps->lock);
	for (struct proc **pp = &ps->list; *pp;) {
		struct proc *p = *pp;
		if (strcmp(p->sandbox, sandbox) != 0) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		if (p->out_fd >= 0)
			epoll_ctl(ps->epfd, EPOLL_CTL_DEL, p->out_fd, NULL);
		if (p->status_fd >= 0)
			epoll_ctl(ps->epfd, EPOLL_CTL_DEL, p->status_fd, NULL);
		close_fd(&p->out_fd);
		close_fd(&p->status_fd);
		p->forgotten = true;
		if (p->refs == 0)
			proc_free(p);
	}
	pthread_cond_broadcast(&ps->changed);
	pthread_mutex_unlock(&ps->lock);
}
