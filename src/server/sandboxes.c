#include "server/sandboxes.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "api/gpu-json.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/buf.h"
#include "core/id.h"
#include "core/log.h"
#include "image/store.h"
#include "image/users.h"
#include "net/allowlist.h"
#include "net/ns-socket.h"
#include "server/history.h"
#include "server/cluster.h"
#include "server/processes.h"
#include "server/sandbox-store.h"
#include "server/server.h"

/* How many removed sandboxes are remembered, to say why an id is gone. */
#define TOMBSTONES 1024

struct lms_sandbox_entry {
	char id[LMS_SANDBOX_ID_SIZE];
	uint64_t key; /* the spawner's */
	pid_t pid1;   /* its PID 1, in our PID namespace */
	int pidfd;    /* of pid1, opened while the worker could not have reaped it: pid reuse shows */
	struct lms_sandbox_settings set;
	char *image;
	char **env;
	char **layers;		     /* an imported image's layer directories (resolved again at a restart), or NULL */
	char *cwd;		     /* the image's WorkingDir: its commands' default directory, or NULL */
	char *net_allow;	     /* its network allowlist (spec.net_allow), or NULL */
	char *storage;		     /* its files' host directory (sandbox-store.h), or NULL without a store */
	double created_s, used_s;    /* wall clock, for the API */
	double expires_ms;	     /* monotonic */
	unsigned users;		     /* commands running in it */
	unsigned commands;	     /* foreground commands claimed (lms_sandboxes_claim) */
	unsigned gen;		     /* the spawner generation its PID 1 runs in; 0: none yet (restored) */
	bool reviving;		     /* its PID 1 is being made again */
	bool removing;		     /* deleted: a command that starts now is cancelled at once */
	struct lms_history *history; /* its audit log, from when it is listed */
	struct lms_job **jobs;	     /* theirs, which a DELETE cancels */
	size_t n_jobs;
	struct lms_sandbox_entry *next;
};

struct tombstone {
	char id[LMS_SANDBOX_ID_SIZE];
	const char *reason;
};

struct lms_sandboxes {
	struct lms_server *server;
	struct lms_store *store; /* NULL: sandboxes end with the daemon */
	uint64_t max, max_ttl_s;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct lms_sandbox_entry *list;
	size_t count, pending; /* live, and being made */
	uint64_t next_key;
	struct tombstone gone[TOMBSTONES];
	size_t gone_next;
	pthread_t reaper;
	bool stop, have_reaper;
};

/* API.md's "network": false, true, or {"allow": [...]} (an allowlist, the server's or the request's). */
static json_t *
network_json(const struct lms_sandbox_spec *spec)
{
	if (!spec->network)
		return json_false();
	if (spec->net_allow == NULL)
		return json_true();
	json_t *list = json_array();
	char *copy = xstrdup(spec->net_allow), *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		json_array_append_new(list, json_string(tok));
	free(copy);
	return json_pack("{s:o}", "allow", list);
}

static json_t *
rfc3339(double s)
{
	char text[40];
	lms_rfc3339(s, text);
	return json_string(text);
}

static json_t *
entry_json(const struct lms_sandbox_entry *e)
{
	const struct lms_limits *l = &e->set.spec.limits;
	json_t *limits =
	    json_pack("{s:I, s:I, s:I, s:I}", "memory_mb", (json_int_t)l->memory_mb, "pids", (json_int_t)l->pids,
		      "disk_mb", (json_int_t)l->disk_mb, "output_bytes", (json_int_t)l->output_bytes);
	double left_s = (e->expires_ms - lms_monotonic_ms()) / 1e3;
	return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:I, s:o, s:o, s:o, s:o}", "id", e->id, "image", e->image,
			 "state", "running", "created_at", rfc3339(e->created_s), "last_used_at", rfc3339(e->used_s),
			 "expires_at", rfc3339(lms_wall_s() + (left_s > 0 ? left_s : 0)), "ttl_s",
			 (json_int_t)e->set.ttl_s, "limits", limits, "network", network_json(&e->set.spec), "gpu",
			 lms_gpu_selection_json(e->set.spec.gpus), "metadata",
			 e->set.metadata ? json_incref(e->set.metadata) : json_object());
}

static void
touch(struct lms_sandboxes *sbs, struct lms_sandbox_entry *e)
{
	e->used_s = lms_wall_s();
	e->expires_ms = lms_monotonic_ms() + (double)e->set.ttl_s * 1e3;
	if (sbs->store != NULL)
		lms_store_touch(sbs->store, e->id);
}

static void
bury(struct lms_sandboxes *sbs, const char *id, const char *reason)
{
	struct tombstone *t = &sbs->gone[sbs->gone_next++ % TOMBSTONES];
	snprintf(t->id, sizeof(t->id), "%s", id);
	t->reason = reason;
}

static const char *
reason_of(const struct lms_sandboxes *sbs, const char *id)
{
	for (size_t i = 0; i < TOMBSTONES; i++)
		if (sbs->gone[i].reason && strcmp(sbs->gone[i].id, id) == 0)
			return sbs->gone[i].reason;
	return NULL;
}

static struct lms_sandbox_entry *
find(struct lms_sandboxes *sbs, const char *id)
{
	for (struct lms_sandbox_entry *e = sbs->list; e; e = e->next)
		if (strcmp(e->id, id) == 0)
			return e;
	return NULL;
}

static void
unlink_entry(struct lms_sandboxes *sbs, struct lms_sandbox_entry *gone)
{
	for (struct lms_sandbox_entry **p = &sbs->list; *p; p = &(*p)->next)
		if (*p == gone) {
			*p = gone->next;
			sbs->count--;
			return;
		}
}

static void
entry_free(struct lms_sandbox_entry *e)
{
	if (e->pidfd >= 0)
		close(e->pidfd);
	json_decref(e->set.metadata);
	free(e->image);
	free(e->storage);
	lms_strv_free(e->env);
	lms_strv_free(e->layers);
	free(e->cwd);
	free(e->net_allow);
	free(e->jobs);
	lms_history_free(e->history);
	free(e);
}

/* Ends a sandbox the registry no longer holds: kills what runs, then destroys it in the spawner. */
static void
end_sandbox(struct lms_sandboxes *sbs, struct lms_sandbox_entry *e, const char *why)
{
	_cleanup_error_ struct lms_error *err = NULL;
	/* A PID 1 of an older spawner died with it. */
	int r = e->gen == lms_spawner_generation(sbs->server->spawner)
		    ? lms_spawner_destroy(sbs->server->spawner, e->key, &err)
		    : 0;
	lms_procs_drop(sbs->server->procs, e->id); /* they died with its PID 1 */
	/* Its files go even when its processes could not be ended cleanly: the record goes first, so that
	 * nothing brings it back. */
	if (sbs->store != NULL && e->storage != NULL && lms_store_remove(sbs->store, e->id, r < 0 ? NULL : &err) < 0)
		r = -1;
	else if (sbs->store != NULL && e->storage != NULL && !lms_image_is_host(e->image))
		lms_image_unuse(sbs->server->cfg->state_dir, e->image, e->id); /* its files are gone */
	if (r < 0)
		lms_log(LMS_LOG_ERROR, NULL, "sandbox: could not remove it", "sandbox", e->id, "error",
			err ? err->message : "(see above)", NULL);
	else
		lms_log(LMS_LOG_INFO, NULL, "sandbox removed", "sandbox", e->id, "reason", why, NULL);
	entry_free(e);
}

/* Expiry: the nearest deadline is waited for on a condition (no polling); idle sandboxes past theirs go. */
static void *
reaper_main(void *arg)
{
	struct lms_sandboxes *sbs = arg;
	pthread_mutex_lock(&sbs->lock);
	while (!sbs->stop) {
		double now = lms_monotonic_ms(), next = -1;
		struct lms_sandbox_entry *expired = NULL;
		for (struct lms_sandbox_entry *e = sbs->list; e; e = e->next) {
			if (e->users > 0)
				continue;
			if (e->expires_ms <= now) {
				expired = e;
				break;
			}
			if (next < 0 || e->expires_ms < next)
				next = e->expires_ms;
		}
		if (expired != NULL) {
			unlink_entry(sbs, expired);
			bury(sbs, expired->id, "expired");
			pthread_mutex_unlock(&sbs->lock);
			end_sandbox(sbs, expired, "expired");
			pthread_mutex_lock(&sbs->lock);
			continue;
		}
		if (next < 0) {
			pthread_cond_wait(&sbs->changed, &sbs->lock);
			continue;
		}
		struct timespec until = lms_monotonic_after_ms(next - now + 1);
		pthread_cond_timedwait(&sbs->changed, &sbs->lock, &until);
	}
	pthread_mutex_unlock(&sbs->lock);
	return NULL;
}

int
lms_sandboxes_new(struct lms_server *s, struct lms_store *store, uint64_t max, uint64_t max_ttl_s,
		  struct lms_sandboxes **out, struct lms_error **err)
{
	struct lms_sandboxes *sbs = xcalloc(1, sizeof(*sbs));
	sbs->server = s;
	sbs->store = store;
	sbs->max = max;
	sbs->max_ttl_s = max_ttl_s;
	sbs->next_key = 1;
	pthread_mutex_init(&sbs->lock, NULL);
	lms_cond_init_monotonic(&sbs->changed);
	int r = pthread_create(&sbs->reaper, NULL, reaper_main, sbs);
	if (r != 0) {
		lms_sandboxes_free(sbs);
		return lms_error_set(err, LMS_ERR_INTERNAL, r, "start the sandboxes' expiry thread");
	}
	sbs->have_reaper = true;
	*out = sbs;
	return 0;
}

void
lms_sandboxes_free(struct lms_sandboxes *sbs)
{
	if (sbs == NULL)
		return;
	pthread_mutex_lock(&sbs->lock);
	sbs->stop = true;
	pthread_cond_broadcast(&sbs->changed);
	pthread_mutex_unlock(&sbs->lock);
	if (sbs->have_reaper)
		pthread_join(sbs->reaper, NULL);
	/* Their workers and PID 1s end with the spawner, which stops after this. */
	for (struct lms_sandbox_entry *e = sbs->list, *next; e; e = next) {
		next = e->next;
		entry_free(e);
	}
	pthread_cond_destroy(&sbs->changed);
	pthread_mutex_destroy(&sbs->lock);
	free(sbs);
}

static char **
strv_copy(char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	char **out = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		out[i] = xstrdup(v[i]);
	return out;
}

/* A slot under --max-sandboxes and a spawner id, or LMS_ERR_BUSY. */
static int
reserve(struct lms_sandboxes *sbs, uint64_t *key, struct lms_error **err)
{
	pthread_mutex_lock(&sbs->lock);
	if (sbs->count + sbs->pending >= sbs->max) {
		pthread_mutex_unlock(&sbs->lock);
		return lms_error_set(err, LMS_ERR_BUSY, 0,
				     "%llu sandboxes exist already (--max-sandboxes): delete one or let one expire",
				     (unsigned long long)sbs->max);
	}
	sbs->pending++;
	*key = sbs->next_key++;
	pthread_mutex_unlock(&sbs->lock);
	return 0;
}

/* An entry with its own copies of set's strings; not yet made. */
static struct lms_sandbox_entry *
entry_new(const struct lms_sandboxes *sbs, uint64_t key, const struct lms_sandbox_settings *set)
{
	struct lms_sandbox_entry *e = xcalloc(1, sizeof(*e));
	char prefix[LMS_SANDBOX_ID_SIZE];
	lms_cluster_id_prefix(sbs->server->cluster, prefix);
	lms_random_id(e->id, prefix);
	e->key = key;
	e->pidfd = -1;
	e->set = *set;
	json_incref(e->set.metadata);
	e->image = xstrdup(set->spec.image ? set->spec.image : LMS_IMAGE_HOST);
	e->env = strv_copy(set->spec.env);
	e->set.spec.env = e->env;
	e->set.spec.image = e->image;
	e->layers = set->spec.layers ? strv_copy(set->spec.layers) : NULL;
	e->set.spec.layers = e->layers;
	e->cwd = set->spec.cwd ? xstrdup(set->spec.cwd) : NULL;
	e->set.spec.cwd = e->cwd;
	e->net_allow = set->spec.net_allow ? xstrdup(set->spec.net_allow) : NULL;
	e->set.spec.net_allow = e->net_allow;
	e->set.spec.argv = NULL;
	e->set.spec.stdin_data = NULL;
	e->set.spec.stdin_len = 0;
	e->set.spec.storage = NULL;
	e->created_s = lms_wall_s();
	e->used_s = e->created_s;
	e->expires_ms = lms_monotonic_ms() + (double)set->ttl_s * 1e3;
	return e;
}

/* What survives a restart (sandbox-store.h): everything lms_sandboxes_restore needs to make it again. */
static json_t *
entry_record(const struct lms_sandbox_entry *e)
{
	const struct lms_limits *l = &e->set.spec.limits;
	json_t *limits = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "timeout_ms", (json_int_t)l->timeout_ms,
				   "memory_mb", (json_int_t)l->memory_mb, "pids", (json_int_t)l->pids, "cpu_ms",
				   (json_int_t)l->cpu_ms, "output_bytes", (json_int_t)l->output_bytes, "disk_mb",
				   (json_int_t)l->disk_mb, "millicpus", (json_int_t)l->millicpus);
	json_t *env = json_array();
	for (char **v = e->env; v && *v; v++)
		json_array_append_new(env, json_string(*v));
	return json_pack("{s:i, s:s, s:f, s:I, s:s, s:o, s:o, s:o, s:o, s:o}", "version", 1, "id", e->id, "created_at",
			 e->created_s, "ttl_s", (json_int_t)e->set.ttl_s, "image", e->image, "limits", limits, "env",
			 env, "network", network_json(&e->set.spec), "gpu", lms_gpu_selection_json(e->set.spec.gpus),
			 "metadata", e->set.metadata ? json_incref(e->set.metadata) : json_object());
}

/* Its PID 1, on its stored files when there is a store. */
static int
start_init(struct lms_sandboxes *sbs, struct lms_sandbox_entry *e, struct lms_error **err)
{
	e->set.spec.storage = e->storage;
	unsigned gen = lms_spawner_generation(sbs->server->spawner);
	pid_t pid1 = -1;
	int r = lms_spawner_create(sbs->server->spawner, e->key, &e->set.spec, &pid1, err);
	if (r < 0)
		return -1;
	/* The worker reaps PID 1 only when told to (DESTROY, or a command that finds it dead), and neither
	 * can happen while the entry is being made or held: this pidfd is of the sandbox's PID 1. */
	int pidfd = pid1 > 0 ? (int)syscall(SYS_pidfd_open, pid1, 0) : -1;
	pthread_mutex_lock(&sbs->lock);
	if (e->pidfd >= 0)
		close(e->pidfd);
	e->pidfd = pidfd;
	e->pid1 = pid1;
	e->gen = gen;
	pthread_mutex_unlock(&sbs->lock);
	return 0;
}

/* A sandbox held by its caller has a PID 1 in the current spawner: one is made on its files when it has
 * none (restored at start) or when its spawner died. One caller makes it; the others wait for it. */
static int
ensure_init(struct lms_sandboxes *sbs, struct lms_sandbox_entry *e, struct lms_error **err)
{
	unsigned gen = lms_spawner_generation(sbs->server->spawner);
	pthread_mutex_lock(&sbs->lock);
	while (e->reviving)
		pthread_cond_wait(&sbs->changed, &sbs->lock);
	if (e->gen == gen) {
		pthread_mutex_unlock(&sbs->lock);
		return 0;
	}
	e->reviving = true;
	pthread_mutex_unlock(&sbs->lock);
	int r = start_init(sbs, e, err);
	if (r < 0)
		lms_error_prefix(err, "start sandbox %s again", e->id);
	else if (e->storage == NULL)
		lms_log(LMS_LOG_WARNING, NULL, "sandbox: started again without its files (no state directory)",
			"sandbox", e->id, NULL);
	pthread_mutex_lock(&sbs->lock);
	e->reviving = false;
	pthread_cond_broadcast(&sbs->changed);
	pthread_mutex_unlock(&sbs->lock);
	return r;
}

/* Makes e: its storage (a copy of from's files when from is not NULL), its PID 1, its record. */
static int
make_entry(struct lms_sandboxes *sbs, struct lms_sandbox_entry *e, const char *from, struct lms_error **err)
{
	if (sbs->store == NULL) {
		if (from != NULL)
			return lms_error_set(err, LMS_ERR_UNSUPPORTED, 0,
					     "fork needs stored sandboxes, which only a daemon run as root keeps");
		return start_init(sbs, e, err);
	}
	/* Recorded as a user of its image first: from then on no `image rm` takes its layers away. */
	const char *state_dir = sbs->server->cfg->state_dir;
	bool image = !lms_image_is_host(e->image);
	if (image && lms_image_use(state_dir, e->image, e->id, err) < 0)
		return -1;
	if (lms_store_make(sbs->store, e->id, e->set.spec.limits.disk_mb, &e->storage, err) < 0) {
		if (image)
			lms_image_unuse(state_dir, e->image, e->id);
		return -1;
	}
	int r = from != NULL ? lms_store_copy(sbs->store, from, e->id, err) : 0;
	bool started = r == 0 && (r = start_init(sbs, e, err)) == 0;
	if (r == 0) {
		json_t *record = entry_record(e);
		r = lms_store_commit(sbs->store, e->id, record, err);
		json_decref(record);
	}
	if (r < 0) {
		if (started)
			(void)lms_spawner_destroy(sbs->server->spawner, e->key, NULL);
		(void)lms_store_remove(sbs->store, e->id, NULL);
		if (image)
			lms_image_unuse(state_dir, e->image, e->id);
	}
	return r;
}

/* Lists e (made), or frees it (r < 0); returns its object. */
static json_t *
enlist(struct lms_sandboxes *sbs, struct lms_sandbox_entry *e, int r)
{
	if (r == 0) {
		_cleanup_free_ char *path = sbs->store ? lms_store_history_path(sbs->store, e->id) : NULL;
		e->history = lms_history_open(path);
	}
	pthread_mutex_lock(&sbs->lock);
	sbs->pending--;
	if (r == 0) {
		e->next = sbs->list;
		sbs->list = e;
		sbs->count++;
		pthread_cond_broadcast(&sbs->changed);
	}
	json_t *obj = r == 0 ? entry_json(e) : NULL;
	pthread_mutex_unlock(&sbs->lock);
	if (r < 0)
		entry_free(e);
	return obj;
}

static bool
ttl_ok(const struct lms_sandboxes *sbs, uint64_t ttl_s, struct lms_error **err)
{
	if (ttl_s >= 1 && ttl_s <= sbs->max_ttl_s)
		return true;
	lms_error_set(err, LMS_ERR_INVALID, 0, "ttl_s must be 1..%llu (the server's --max-ttl-s), not %llu",
		      (unsigned long long)sbs->max_ttl_s, (unsigned long long)ttl_s);
	return false;
}

json_t *
lms_sandboxes_create(struct lms_sandboxes *sbs, const struct lms_sandbox_settings *set, struct lms_error **err)
{
	uint64_t key = 0;
	if (!ttl_ok(sbs, set->ttl_s, err) || reserve(sbs, &key, err) < 0)
		return NULL;
	struct lms_sandbox_entry *e = entry_new(sbs, key, set);
	json_t *obj = enlist(sbs, e, make_entry(sbs, e, NULL, err));
	if (obj != NULL)
		lms_log(LMS_LOG_INFO, NULL, "sandbox created", "sandbox", json_string_value(json_object_get(obj, "id")),
			NULL);
	return obj;
}

json_t *
lms_sandboxes_fork(struct lms_sandboxes *sbs, const char *id, const uint64_t *ttl_s, const json_t *metadata,
		   const char **reason, struct lms_error **err)
{
	uint64_t key = 0, src_key = 0;
	const struct lms_sandbox_settings *base;
	struct lms_sandbox_entry *src = lms_sandboxes_acquire(sbs, id, &src_key, &base, reason, err);
	if (src == NULL)
		return NULL;
	struct lms_sandbox_settings set = *base;
	if (ttl_s != NULL)
		set.ttl_s = *ttl_s;
	if (metadata != NULL)
		set.metadata = (json_t *)metadata;
	json_t *obj = NULL;
	if (ttl_ok(sbs, set.ttl_s, err) && reserve(sbs, &key, err) == 0) {
		struct lms_sandbox_entry *e = entry_new(sbs, key, &set);
		obj = enlist(sbs, e, make_entry(sbs, e, src->id, err));
	}
	lms_sandboxes_release(sbs, src, NULL);
	if (obj != NULL)
		lms_log(LMS_LOG_INFO, NULL, "sandbox forked", "sandbox", json_string_value(json_object_get(obj, "id")),
			"from", id, NULL);
	return obj;
}

/* A record's {"allow": [...]} into spec->net_allow (malloc'd, comma-separated), each entry checked. */
static int
record_allowlist(const json_t *list, struct lms_sandbox_spec *spec)
{
	if (!json_is_array(list))
		return -1;
	struct lms_buf joined = {0};
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v)
	{
		if (!json_is_string(v) || strchr(json_string_value(v), ',')) {
			lms_buf_clear(&joined);
			return -1;
		}
		if (joined.len)
			lms_buf_append(&joined, ",", 1);
		lms_buf_append(&joined, json_string_value(v), strlen(json_string_value(v)));
	}
	char *text = joined.data ? joined.data : xstrdup("");
	struct lms_allowlist *check = xcalloc(1, sizeof(*check));
	int r = lms_allowlist_add_list(check, text, NULL);
	free(check);
	if (r < 0) {
		free(text);
		return -1;
	}
	spec->net_allow = text;
	return 0;
}

/* The settings a record asks for, within what this daemon allows; NULL names what is wrong. */
static const char *
settings_of(const struct lms_sandboxes *sbs, json_t *rec, struct lms_sandbox_settings *set, char ***env)
{
	json_t *l = json_object_get(rec, "limits"), *envj = json_object_get(rec, "env");
	json_t *meta = json_object_get(rec, "metadata");
	const char *image = json_string_value(json_object_get(rec, "image"));
	if (!json_is_object(l) || !json_is_array(envj) || !json_is_object(meta) || image == NULL ||
	    json_array_size(envj) > LMS_MAX_ENV)
		return "its record lacks limits, env, metadata or image";
	lms_sandbox_spec_init(&set->spec);
	struct {
		const char *name;
		uint64_t *field, max;
	} nums[] = {
	    {"timeout_ms", &set->spec.limits.timeout_ms, LMS_MAX_TIMEOUT_MS},
	    {"memory_mb", &set->spec.limits.memory_mb, LMS_MAX_MEMORY_MB},
	    {"pids", &set->spec.limits.pids, LMS_MAX_PIDS},
	    {"cpu_ms", &set->spec.limits.cpu_ms, LMS_MAX_TIMEOUT_MS},
	    {"output_bytes", &set->spec.limits.output_bytes, LMS_MAX_OUTPUT_BYTES},
	    {"disk_mb", &set->spec.limits.disk_mb, LMS_MAX_DISK_MB},
	    {"millicpus", &set->spec.limits.millicpus, LMS_MAX_MILLICPUS},
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		json_t *v = json_object_get(l, nums[i].name);
		if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > nums[i].max)
			return "its record has a limit out of bounds";
		*nums[i].field = (uint64_t)json_integer_value(v);
	}
	*env = xcalloc(json_array_size(envj) + 1, sizeof(char *));
	size_t i;
	json_t *v;
	json_array_foreach(envj, i, v)
	{
		if (!json_is_string(v) || strchr(json_string_value(v), '=') == NULL)
			return "its record has an environment entry that is not K=V";
		(*env)[i] = xstrdup(json_string_value(v));
	}
	json_int_t ttl = json_integer_value(json_object_get(rec, "ttl_s"));
	set->ttl_s = ttl < 1 ? 1 : (uint64_t)ttl > sbs->max_ttl_s ? sbs->max_ttl_s : (uint64_t)ttl;
	set->spec.env = *env;
	set->spec.image = image;
	json_t *net = json_object_get(rec, "network");
	set->spec.network = json_is_true(net) || json_is_object(net);
	if (set->spec.network) {
		/* Revived with a new pasta, filter and DNS forwarder, under this run's settings. */
		set->spec.net_dns = sbs->server->cfg->network_dns;
		set->spec.net_allow_private = sbs->server->cfg->network_allow_private;
		if (json_is_object(net) ? record_allowlist(json_object_get(net, "allow"), &set->spec) < 0
					: sbs->server->cfg->network_allow &&
					      (set->spec.net_allow = xstrdup(sbs->server->cfg->network_allow)) == NULL)
			return "its record has a network allowlist that is not a list of names and ranges";
	}
	if (lms_gpu_selection_parse(json_object_get(rec, "gpu"), &set->spec.gpus, NULL) < 0)
		return "its record has a gpu that is not true, false or a list of indices";
	set->metadata = meta;
	return NULL;
}

/* lms_store_load's callback: one stored sandbox made again, with a new PID 1 on its files. */
static int
restore_one(void *userdata, const char *id, json_t *rec, double used_s)
{
	struct lms_sandboxes *sbs = userdata;
	struct lms_sandbox_settings set = {0};
	char **env = NULL;
	const char *bad = settings_of(sbs, rec, &set, &env);
	/* An imported image is found again by its name: its layers and WorkingDir as the store has them now. */
	_cleanup_image_ struct lms_image *img = NULL;
	if (bad == NULL && !lms_image_is_host(set.spec.image)) {
		/* Its use recorded again (a sandbox stored before users were recorded has none). */
		if (lms_image_load(sbs->server->cfg->state_dir, set.spec.image, &img, NULL) < 0 ||
		    lms_image_use(sbs->server->cfg->state_dir, set.spec.image, id, NULL) < 0) {
			bad = "its image no longer exists";
		} else {
			set.spec.layers = img->paths;
			set.spec.cwd = img->working_dir;
		}
	}
	if (bad == NULL && lms_image_check(set.spec.image, set.spec.layers, NULL) < 0)
		bad = "its image no longer exists";
	uint64_t key = 0;
	_cleanup_error_ struct lms_error *err = NULL;
	if (bad == NULL && reserve(sbs, &key, &err) < 0)
		bad = "--max-sandboxes is lower than the number of stored sandboxes";
	if (bad != NULL) {
		lms_strv_free(env);
		free((char *)set.spec.net_allow);
		lms_log(LMS_LOG_WARNING, NULL, "sandbox: not restored", "sandbox", id, "why", bad, NULL);
		return -1;
	}
	struct lms_sandbox_entry *e = entry_new(sbs, key, &set);
	lms_strv_free(env);
	free((char *)set.spec.net_allow);
	snprintf(e->id, sizeof(e->id), "%s", id);
	e->created_s = json_number_value(json_object_get(rec, "created_at"));
	e->used_s = used_s;
	e->expires_ms = lms_monotonic_ms() + (used_s + (double)e->set.ttl_s - lms_wall_s()) * 1e3;
	e->storage = lms_store_path(sbs->store, id);
	/* Its PID 1 comes at its first use (ensure_init): a restart does not start every sandbox at once. */
	json_decref(enlist(sbs, e, 0));
	return 0;
}

int
lms_sandboxes_restore(struct lms_sandboxes *sbs)
{
	if (sbs->store == NULL)
		return 0;
	int kept = lms_store_load(sbs->store, restore_one, sbs);
	lms_log_fields(LMS_LOG_INFO, NULL, "sandboxes restored from the state directory", LMS_LOG_INT("count", kept));
	return kept;
}

static bool
metadata_matches(const json_t *metadata, const json_t *filter)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)filter, k, v)
	{
		const json_t *have = json_object_get(metadata, k);
		if (!json_is_string(have) || !json_equal(have, v))
			return false;
	}
	return true;
}

bool
lms_sandboxes_use_image(struct lms_sandboxes *sbs, const char *image)
{
	bool used = false;
	pthread_mutex_lock(&sbs->lock);
	for (struct lms_sandbox_entry *e = sbs->list; e && !used; e = e->next)
		used = strcmp(e->image, image) == 0;
	pthread_mutex_unlock(&sbs->lock);
	return used;
}

json_t *
lms_sandboxes_list(struct lms_sandboxes *sbs, const json_t *filter)
{
	json_t *data = json_array();
	pthread_mutex_lock(&sbs->lock);
	for (struct lms_sandbox_entry *e = sbs->list; e; e = e->next)
		if (filter == NULL || metadata_matches(e->set.metadata, filter))
			json_array_append_new(data, entry_json(e));
	pthread_mutex_unlock(&sbs->lock);
	return json_pack("{s:o}", "data", data);
}

static int
not_found(struct lms_sandboxes *sbs, const char *id, const char **reason, struct lms_error **err)
{
	*reason = reason_of(sbs, id);
	return lms_error_set(err, LMS_ERR_NOT_FOUND, 0, "sandbox %.40s does not exist%s%s", id,
			     *reason ? ": it was " : "", *reason ? *reason : "");
}

json_t *
lms_sandboxes_get(struct lms_sandboxes *sbs, const char *id, const char **reason, struct lms_error **err)
{
	pthread_mutex_lock(&sbs->lock);
	struct lms_sandbox_entry *e = find(sbs, id);
	json_t *obj = e ? entry_json(e) : NULL;
	if (e == NULL)
		not_found(sbs, id, reason, err);
	pthread_mutex_unlock(&sbs->lock);
	return obj;
}

void
lms_sandboxes_record(struct lms_sandboxes *sbs, const char *id, json_t *entry)
{
	pthread_mutex_lock(&sbs->lock);
	struct lms_sandbox_entry *e = find(sbs, id);
	/* Under the registry's lock: a DELETE cannot free the log (or remove its file) meanwhile. */
	if (e != NULL && e->history != NULL)
		lms_history_add(e->history, entry);
	else
		json_decref(entry);
	pthread_mutex_unlock(&sbs->lock);
}

json_t *
lms_sandboxes_history(struct lms_sandboxes *sbs, const char *id, size_t limit, const char **reason,
		      struct lms_error **err)
{
	pthread_mutex_lock(&sbs->lock);
	struct lms_sandbox_entry *e = find(sbs, id);
	json_t *data = e && e->history ? lms_history_json(e->history, limit) : NULL;
	if (e == NULL)
		not_found(sbs, id, reason, err);
	pthread_mutex_unlock(&sbs->lock);
	return e ? json_pack("{s:o}", "data", data ? data : json_array()) : NULL;
}

int
lms_sandboxes_delete(struct lms_sandboxes *sbs, const char *id, const char **reason, struct lms_error **err)
{
	pthread_mutex_lock(&sbs->lock);
	struct lms_sandbox_entry *e = find(sbs, id);
	if (e == NULL) {
		not_found(sbs, id, reason, err);
		pthread_mutex_unlock(&sbs->lock);
		return -1;
	}
	unlink_entry(sbs, e);
	bury(sbs, e->id, "deleted");
	e->removing = true;
	/* Its commands are killed first: the worker runs one thing at a time, and the DESTROY waits behind
	 * them. Their callers still hold their jobs; the entry's memory waits for the last of them. */
	for (size_t i = 0; i < e->n_jobs; i++)
		lms_job_cancel(e->jobs[i]);
	while (e->users > 0)
		pthread_cond_wait(&sbs->changed, &sbs->lock);
	pthread_mutex_unlock(&sbs->lock);
	end_sandbox(sbs, e, "deleted");
	return 0;
}

struct lms_sandbox_entry *
lms_sandboxes_acquire(struct lms_sandboxes *sbs, const char *id, uint64_t *key,
		      const struct lms_sandbox_settings **base, const char **reason, struct lms_error **err)
{
	pthread_mutex_lock(&sbs->lock);
	struct lms_sandbox_entry *e = find(sbs, id);
	if (e == NULL) {
		not_found(sbs, id, reason, err);
	} else {
		e->users++;
		touch(sbs, e);
		*key = e->key;
		*base = &e->set;
	}
	pthread_mutex_unlock(&sbs->lock);
	if (e != NULL && ensure_init(sbs, e, err) < 0) {
		lms_sandboxes_release(sbs, e, NULL);
		*reason = NULL;
		return NULL;
	}
	return e;
}

int
lms_sandboxes_claim(struct lms_sandboxes *sbs, struct lms_sandbox_entry *e, struct lms_error **err)
{
	pthread_mutex_lock(&sbs->lock);
	bool full = e->commands >= LMS_SANDBOX_MAX_COMMANDS;
	if (!full)
		e->commands++;
	pthread_mutex_unlock(&sbs->lock);
	if (full)
		return lms_error_set(err, LMS_ERR_BUSY, 0,
				     "sandbox %s runs %d commands already, the most at once: wait for one to end, or "
				     "start long ones with \"background\": true",
				     e->id, LMS_SANDBOX_MAX_COMMANDS);
	return 0;
}

void
lms_sandboxes_unclaim(struct lms_sandboxes *sbs, struct lms_sandbox_entry *e)
{
	pthread_mutex_lock(&sbs->lock);
	if (e->commands > 0)
		e->commands--;
	pthread_mutex_unlock(&sbs->lock);
}

void
lms_sandboxes_attach_job(struct lms_sandboxes *sbs, struct lms_sandbox_entry *e, struct lms_job *job)
{
	pthread_mutex_lock(&sbs->lock);
	if (e->removing)
		lms_job_cancel(job);
	e->jobs = xrealloc(e->jobs, (e->n_jobs + 1) * sizeof(*e->jobs));
	e->jobs[e->n_jobs++] = job;
	pthread_mutex_unlock(&sbs->lock);
}

void
lms_sandboxes_release(struct lms_sandboxes *sbs, struct lms_sandbox_entry *e, struct lms_job *job)
{
	pthread_mutex_lock(&sbs->lock);
	for (size_t i = 0; i < e->n_jobs; i++)
		if (e->jobs[i] == job) {
			e->jobs[i] = e->jobs[--e->n_jobs];
			break;
		}
	if (job != NULL && e->commands > 0)
		e->commands--;
	e->users--;
	touch(sbs, e);
	pthread_cond_broadcast(&sbs->changed);
	pthread_mutex_unlock(&sbs->lock);
}

int
lms_sandboxes_open_root(const struct lms_sandbox_entry *e, struct lms_error **err)
{
	if (e->pidfd < 0)
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, 0,
				     "sandbox %s: its PID 1 cannot be reached (pidfd_open failed when it was made)",
				     e->id);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/root", (int)e->pid1);
	int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "sandbox %s: open its root %s", e->id, path);
	/* Opened first, checked after: if the pidfd's process is still alive now, the pid was its all along. */
	if (syscall(SYS_pidfd_send_signal, e->pidfd, 0, NULL, 0) < 0) {
		int saved = errno;
		close(fd);
		return lms_error_set(err, LMS_ERR_INTERNAL, saved, "sandbox %s: its PID 1 is gone", e->id);
	}
	return fd;
}

int
lms_sandboxes_connect_port(const struct lms_sandbox_entry *e, uint16_t port, int timeout_ms, struct lms_error **err)
{
	if (e->pidfd < 0)
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, 0,
				     "sandbox %s: its PID 1 cannot be reached (pidfd_open failed when it was made)",
				     e->id);
	int fd = lms_netns_connect_loopback(e->pidfd, port, timeout_ms, err);
	if (fd < 0)
		lms_error_prefix(err, "sandbox %s", e->id);
	return fd;
}
