/*
 * A worker: a single-threaded process forked by the spawner and kept across jobs. It holds at most one
 * sandbox at a time: one prepared for the pool (which the next fitting one-shot job takes), or one
 * lasting sandbox that it owns from CREATE to DESTROY and runs every EXEC of. Its name says what it
 * does: lms-pooled while it prepares or holds a pool sandbox, lms-worker while it runs a job, lms-owner
 * while it holds a lasting sandbox, lms-idle while it waits with none.
 */
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fdio.h"
#include "core/log.h"
#include "sandbox/network.h"
#include "sandbox/spawner-proto.h"

static void
set_name(const char *name)
{
	prctl(PR_SET_NAME, name, 0, 0, 0);
}

/* A job larger than this (its stdin) leaves the heap trimmed after it. */
#define TRIM_AFTER (1u << 20)

static void
tell(int ctl, uint32_t type, const char *what)
{
	struct lms_worker_msg m = {.type = type};
	if (what != NULL)
		snprintf(m.what, sizeof(m.what), "%s", what);
	(void)!send(ctl, &m, sizeof(m), MSG_NOSIGNAL);
}

/* Reads a request's spec from its memfd. NULL with *err. *data and *storage are the caller's to free. */
static int
read_spec(int fd, struct lms_sandbox_spec *spec, char **data, void **storage, size_t *len, struct lms_error **err)
{
	*data = lms_fd_read_whole(fd, LMS_SPAWN_SPEC_MAX, len, "the job", err);
	if (*data == NULL)
		return -1;
	return lms_spec_decode(*data, *len, spec, storage, err);
}

/* What a worker knows of pool sandboxes: the recipe of the one it has prepared, and the last recipe a
 * job of it asked for other than the host image's without a network (an image, a network), which it
 * prepares when the spawner says PREPARE with that recipe's key. */
struct images {
	struct lms_pool_recipe prepared;
	struct lms_pool_recipe recipe;
};

/* Whether a one-shot job can take the pool's prepared sandbox: the same recipe (image, layer paths and
 * directories; network settings, and the host as it was), no GPU, and limits within the base's. */
static bool
fits_pool(const struct lms_pool_config *cfg, const struct images *im, const struct lms_sandbox_spec *spec)
{
	return cfg->base && !spec->gpus && lms_pool_recipe_matches(&im->prepared, spec) &&
	       lms_limits_fit_prepared(&cfg->base->limits, &spec->limits);
}

/* A lasting sandbox's owner serves its socket while it watches a command (the wake callback): a second
 * EXEC then runs in a fork of the worker (lms-exec), a START at once; anything else waits in `held` for
 * the main loop (the daemon sends DESTROY only once no command runs). */
struct owner {
	int ctl;
	const struct lms_pool_config *cfg;
	struct lms_sandbox *owned;
	pid_t *kids; /* the forks watching commands, reaped by the main loop */
	size_t n_kids;
	bool held, gone;	/* a message waits in msg/fds; the spawner's socket has ended */
	struct lms_output *out; /* of the command watched now: its wake goes once the spawner is gone */
	struct lms_spawn_msg msg;
	int fds[LMS_SPAWN_MAX_FDS];
	size_t nfds;
};

static void on_spawner(void *owner);

static void
drop_prepared(struct lms_sandbox **prepared, struct images *im)
{
	lms_sandbox_destroy(steal_pointer(prepared));
	lms_pool_recipe_clear(&im->prepared);
}

/* One command: a one-shot job (in `prepared` when it fits, else in a sandbox made now, which `prepared`
 * is then freed for) or an EXEC in the lasting sandbox `owned`. The events fd gets its frames. An owner
 * (or NULL: a fork watching one command) is served meanwhile. */
static void
run_command(const int fds[3], struct lms_sandbox **prepared, struct lms_sandbox *owned,
	    const struct lms_pool_config *cfg, struct images *im, struct owner *o)
{
	(void)setpriority(PRIO_PROCESS, 0, cfg->nice);
	int events = fds[1];
	struct lms_frame_queue queue;
	lms_frame_queue_init(&queue, events);
	struct lms_output out = {
	    .fn = lms_frame_queue_output,
	    .userdata = &queue,
	    .drain_fd = events,
	    .pending = lms_frame_queue_pending_cb,
	    .drain = lms_frame_queue_drain_cb,
	    .wake_fd = o != NULL && !o->gone ? o->ctl : -1,
	    .wake = o != NULL && !o->gone ? on_spawner : NULL,
	    .wake_data = o,
	};
	if (o != NULL)
		o->out = &out;
	_cleanup_error_ struct lms_error *err = NULL;
	struct lms_sandbox_spec spec;
	struct lms_sandbox_result res;
	void *storage = NULL;
	char *data = NULL;
	size_t len = 0;
	int r = read_spec(fds[0], &spec, &data, &storage, &len, &err);
	struct lms_sandbox *oneshot = NULL;
	if (r == 0) {
		spec.cancel_fd = fds[2];
		if (owned != NULL) {
			r = lms_sandbox_exec(owned, &spec, 0, &out, &res, &err);
		} else {
			if (*prepared != NULL && fits_pool(cfg, im, &spec)) {
				lms_pool_recipe_clear(&im->prepared);
				oneshot = steal_pointer(prepared);
			} else {
				drop_prepared(prepared, im);
				r = lms_sandbox_spec_validate(&spec, &err);
				if (r == 0)
					r = lms_sandbox_create(&spec, &oneshot, &err);
			}
			if (r == 0)
				r = lms_sandbox_exec_last(oneshot, &spec, &out, &res, &err);
		}
		/* The recipe a later PREPARE may name: this job's, learnt once. */
		uint64_t key = lms_pool_key(&spec);
		if (owned == NULL && key != 0 && im->recipe.key != key)
			(void)lms_pool_recipe_set(&im->recipe, &spec);
	}
	if (o != NULL)
		o->out = NULL;
	lms_frame_queue_finish(&queue);
	if (r < 0)
		lms_frame_error(events, err);
	else
		lms_frame_result(events, &res);
	/* The one-shot sandbox goes once its command's result is out: its client does not wait for the
	 * cgroup to empty (the worker is busy until it has). */
	_cleanup_error_ struct lms_error *cleanup_err = NULL;
	if (lms_sandbox_destroy_checked(oneshot, &cleanup_err) < 0)
		lms_log(LMS_LOG_ERROR, NULL, "worker: a one-shot sandbox could not be removed", "error",
			cleanup_err ? cleanup_err->message : "?", NULL);
	free(storage);
	free(data);
	/* A large input would otherwise stay in this long-lived worker's heap (and in the copy its next
	 * sandbox's PID 1 starts with); small jobs skip the trim and the faults after it. */
	if (len > TRIM_AFTER)
		malloc_trim(0);
}

static void start_background(const int fds[6], struct lms_sandbox *owned);

/* A second command of the owned sandbox while one is watched: a fork of this worker watches it (it holds
 * copies of the sandbox's descriptors; its launch reports on a socket of its own), and ends with it. */
static void
fork_exec(struct owner *o, const int fds[3])
{
	uint32_t id = lms_sandbox_take_id(o->owned);
	pid_t pid = fork();
	if (pid < 0) {
		char text[160];
		snprintf(text, sizeof(text), "fork a watcher for a second command of the sandbox: %s", strerror(errno));
		lms_frame_error_text(fds[1], LMS_ERR_SETUP, text);
		return;
	}
	if (pid == 0) {
		close(o->ctl); /* the spawner must see this worker's end, not this fork's */
		set_name("lms-exec");
		lms_sandbox_forked(o->owned, id);
		struct lms_sandbox *none = NULL;
		run_command(fds, &none, o->owned, o->cfg, NULL, NULL);
		_exit(0);
	}
	o->kids = xrealloc(o->kids, (o->n_kids + 1) * sizeof(*o->kids));
	o->kids[o->n_kids++] = pid;
}

static void
on_spawner(void *arg)
{
	struct owner *o = arg;
	struct lms_spawn_msg msg;
	int fds[LMS_SPAWN_MAX_FDS] = {-1, -1, -1, -1, -1, -1};
	size_t nfds = 0;
	if (o->held) /* one message waits already: the next is read once the main loop has taken it */
		return;
	ssize_t n = lms_fd_recv(o->ctl, &msg, sizeof(msg), fds, LMS_SPAWN_MAX_FDS, &nfds);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* The spawner is gone: the command watched now finishes, then the main loop ends it all. */
		o->gone = true;
		if (o->out != NULL)
			o->out->wake = NULL;
		return;
	}
	if (n == (ssize_t)sizeof(msg) && nfds == lms_spawn_nfds(msg.type) && msg.type == LMS_SPAWN_EXEC) {
		fork_exec(o, fds);
	} else if (n == (ssize_t)sizeof(msg) && nfds == lms_spawn_nfds(msg.type) && msg.type == LMS_SPAWN_START) {
		start_background(fds, o->owned);
	} else {
		o->held = true;
		o->msg = msg;
		memcpy(o->fds, fds, sizeof(fds));
		o->nfds = nfds;
		if (o->out != NULL)
			o->out->wake = NULL; /* the socket is not read again until the main loop took this one */
		return;
	}
	lms_fd_close_all(fds, nfds);
}

/* The forks that have finished watching their command. */
static void
reap_kids(struct owner *o)
{
	for (size_t i = 0; i < o->n_kids;) {
		if (waitpid(o->kids[i], NULL, WNOHANG) != 0)
			o->kids[i] = o->kids[--o->n_kids];
		else
			i++;
	}
}

/* CREATE: the lasting sandbox, with the request's base spec: the pool's prepared sandbox when it fits
 * (its limits lowered to the request's), else one made now. 0 when the worker now owns it. */
static int
create_owned(const int fds[2], struct lms_sandbox **prepared, struct lms_sandbox **owned,
	     const struct lms_pool_config *cfg, struct images *im)
{
	_cleanup_error_ struct lms_error *err = NULL;
	struct lms_sandbox_spec base;
	void *storage = NULL;
	char *data = NULL;
	size_t len = 0;
	(void)setpriority(PRIO_PROCESS, 0, cfg->nice);
	int r = read_spec(fds[0], &base, &data, &storage, &len, &err);
	/* Stored files cover a prepared sandbox's own scratch, whatever its size was. */
	struct lms_limits want = base.limits;
	if (r == 0 && base.storage != NULL && cfg->base != NULL)
		want.disk_mb = cfg->base->limits.disk_mb;
	struct lms_sandbox_spec fit = base;
	fit.limits = want;
	/* A prepared image sandbox has its upper layer on its scratch tmpfs: a stored one cannot take it. */
	bool movable = base.storage == NULL || lms_image_is_host(base.image);
	if (r == 0 && *prepared != NULL && movable && fits_pool(cfg, im, &fit)) {
		lms_pool_recipe_clear(&im->prepared);
		*owned = steal_pointer(prepared);
		if ((r = lms_sandbox_limit(*owned, &want, &err)) == 0 && base.storage != NULL)
			r = lms_sandbox_attach_storage(*owned, base.storage, base.limits.disk_mb, &err);
		if (r < 0)
			lms_sandbox_destroy(steal_pointer(owned));
	} else if (r == 0) {
		drop_prepared(prepared, im);
		r = lms_sandbox_create(&base, owned, &err);
	}
	/* CREATE answers once the sandbox can take a command, or with the step that failed. */
	if (r == 0 && (r = lms_sandbox_wait_ready(*owned, &err)) < 0)
		lms_sandbox_destroy(steal_pointer(owned));
	struct lms_sandbox_result none = {0};
	if (r < 0) {
		lms_frame_error(fds[1], err);
	} else {
		lms_frame_pid(fds[1], lms_sandbox_pid(*owned));
		lms_frame_result(fds[1], &none);
	}
	free(storage);
	free(data);
	return r;
}

/* START: a background command in the owned sandbox; RESULT carries its pid. What it does later is
 * between PID 1 and the holder of its pipes (the daemon): this worker is free at once. */
static void
start_background(const int fds[6], struct lms_sandbox *owned)
{
	_cleanup_error_ struct lms_error *err = NULL;
	struct lms_sandbox_spec spec;
	void *storage = NULL;
	char *data = NULL;
	size_t len = 0;
	struct lms_sandbox_result res = {0};
	struct lms_background_io io = {.output = fds[2], .input = fds[3], .status = fds[4], .control = fds[5]};
	int r = read_spec(fds[0], &spec, &data, &storage, &len, &err);
	if (r == 0)
		r = lms_sandbox_start(owned, &spec, &io, &res, &err);
	if (r < 0)
		lms_frame_error(fds[1], err);
	else
		lms_frame_result(fds[1], &res);
	free(storage);
	free(data);
}

static void
destroy_owned(int events, struct lms_sandbox **owned)
{
	_cleanup_error_ struct lms_error *err = NULL;
	struct lms_sandbox_result none = {0};
	if (lms_sandbox_destroy_checked(steal_pointer(owned), &err) < 0)
		lms_frame_error(events, err);
	else
		lms_frame_result(events, &none);
}

/* A pool sandbox is offered (READY) while its PID 1 still builds its root, so that a job can take it at
 * once; its own READY or failure is read here while the worker waits. Returns when the spawner speaks;
 * a sandbox that failed is dropped, and the spawner told why. */
static void
await_spawner(int ctl, struct lms_sandbox **prepared, struct images *im)
{
	while (*prepared != NULL && !lms_sandbox_is_ready(*prepared)) {
		struct pollfd fds[2] = {{.fd = ctl, .events = POLLIN},
					{.fd = lms_sandbox_fd(*prepared), .events = POLLIN}};
		if (poll(fds, 2, -1) < 0 && errno != EINTR)
			return;
		if (fds[0].revents)
			return;
		if (fds[1].revents) {
			_cleanup_error_ struct lms_error *err = NULL;
			if (lms_sandbox_wait_ready(*prepared, &err) < 0) {
				drop_prepared(prepared, im);
				tell(ctl, LMS_WORKER_FAILED, err->message);
			}
		}
	}
}

/* PREPARE: a pool sandbox of the host image (key 0) or of the recipe of this worker's last job that had
 * one (an image, a network). A worker that failed stays, idle: a job the spawner sent meanwhile is still
 * served. */
static void
prepare_pooled(int ctl, const struct lms_pool_config *cfg, struct images *im, uint64_t key,
	       struct lms_sandbox **prepared)
{
	set_name("lms-pooled");
	_cleanup_error_ struct lms_error *err = NULL;
	if (key != 0 && key != im->recipe.key) {
		tell(ctl, LMS_WORKER_FAILED, "this worker ran no job of that image or network");
		return;
	}
	struct lms_sandbox_spec base;
	lms_pool_recipe_base(&im->recipe, cfg->base, &base);
	if (key == 0)
		base = *cfg->base;
	/* A network's pasta and DNS forwarder live as long as the sandbox at the priority they start with,
	 * which only PID 1's is raised from at launch (exec.c): they are prepared at the commands' own. */
	if (cfg->low_priority)
		(void)setpriority(PRIO_PROCESS, 0, base.network ? cfg->nice : LMS_POOL_NICE);
	/* The layers' inodes are taken before the overlay is made of them: a later check sees any change. */
	if (!lms_pool_recipe_set(&im->prepared, &base)) {
		lms_pool_recipe_clear(&im->recipe);
		tell(ctl, LMS_WORKER_FAILED, "a layer directory of the image is gone (the image was removed)");
		return;
	}
	/* Read before the sandbox's filter reads the host's addresses: a change in between shows. */
	if (base.network)
		im->prepared.net_stamp = lms_network_host_stamp(&base);
	if (lms_sandbox_create(&base, prepared, &err) < 0) {
		lms_pool_recipe_clear(&im->prepared);
		if (key != 0)
			lms_pool_recipe_clear(&im->recipe);
		tell(ctl, LMS_WORKER_FAILED, err->message);
	} else {
		tell(ctl, LMS_WORKER_READY, NULL);
	}
}

void
lms_worker_main(int ctl, const struct lms_pool_config *cfg, bool prepare)
{
	signal(SIGPIPE, SIG_IGN);
	struct lms_sandbox *prepared = NULL, *owned = NULL;
	static struct owner o;
	o = (struct owner){.ctl = ctl, .cfg = cfg};
	struct images im = {0};
	uint64_t prepare_key = 0;
	for (;;) {
		if (prepare && prepared == NULL && owned == NULL)
			prepare_pooled(ctl, cfg, &im, prepare_key, &prepared);
		prepare = false;
		set_name(owned ? "lms-owner" : prepared ? "lms-pooled" : "lms-idle");
		reap_kids(&o);
		struct lms_spawn_msg msg;
		int fds[LMS_SPAWN_MAX_FDS] = {-1, -1, -1, -1, -1, -1};
		size_t nfds = 0;
		ssize_t n;
		if (o.held) {
			/* Read while a command was watched (on_spawner). */
			msg = o.msg;
			memcpy(fds, o.fds, sizeof(fds));
			nfds = o.nfds;
			n = sizeof(msg);
			o.held = false;
		} else if (o.gone) {
			n = 0;
		} else {
			await_spawner(ctl, &prepared, &im);
			n = lms_fd_recv(ctl, &msg, sizeof(msg), fds, LMS_SPAWN_MAX_FDS, &nfds);
		}
		if (n <= 0) {
			/* The spawner is gone or stopping: nothing of ours may outlive it. */
			lms_sandbox_destroy(prepared);
			lms_sandbox_destroy(owned);
			_exit(0);
		}
		if (n != (ssize_t)sizeof(msg) || nfds != lms_spawn_nfds(msg.type)) {
			lms_fd_close_all(fds, nfds);
			continue;
		}
		switch ((enum lms_spawn_type)msg.type) {
		case LMS_SPAWN_PREPARE:
			/* A sandbox of another image than the one asked for is no use to the pool. */
			if (prepared != NULL && im.prepared.key != msg.image)
				drop_prepared(&prepared, &im);
			prepare = true;
			prepare_key = msg.image;
			break;
		case LMS_SPAWN_RELEASE:
			drop_prepared(&prepared, &im);
			break;
		case LMS_SPAWN_JOB:
			set_name("lms-worker");
			run_command(fds, &prepared, NULL, cfg, &im, NULL);
			tell(ctl, LMS_WORKER_DONE, NULL);
			break;
		case LMS_SPAWN_EXEC:
			/* The spawner routes a sandbox's EXEC only to its owner. */
			if (owned != NULL) {
				o.owned = owned;
				run_command(fds, &prepared, owned, cfg, &im, &o);
			} else
				lms_frame_error_text(fds[1], LMS_ERR_NOT_FOUND, "this worker holds no sandbox");
			break;
		case LMS_SPAWN_START:
			if (owned != NULL)
				start_background(fds, owned);
			else
				lms_frame_error_text(fds[1], LMS_ERR_NOT_FOUND, "this worker holds no sandbox");
			break;
		case LMS_SPAWN_CREATE:
			tell(ctl,
			     create_owned(fds, &prepared, &owned, cfg, &im) == 0 ? LMS_WORKER_OWNS : LMS_WORKER_DONE,
			     NULL);
			break;
		case LMS_SPAWN_DESTROY:
			destroy_owned(fds[0], &owned);
			o.owned = NULL;
			tell(ctl, LMS_WORKER_DONE, NULL);
			break;
		}
		lms_fd_close_all(fds, nfds);
	}
}
