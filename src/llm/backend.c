#include "llm/backend.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/clock.h"

#define MODELS_TIMEOUT_MS 5000

static int
add(struct lms_backends *bs, const char *name, enum lms_backend_kind kind, const char *url, struct lms_error **err)
{
	size_t scheme = strncmp(url, "http://", 7) == 0 ? 7 : strncmp(url, "https://", 8) == 0 ? 8 : 0;
	if (scheme == 0)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "backend %s: '%s' is not an http:// or https:// URL",
				     name, url);
	if (url[scheme] == '\0' || url[scheme] == '/')
		return lms_error_set(err, LMS_ERR_INVALID, 0, "backend %s: '%s' has no host: give http://HOST:PORT",
				     name, url);
	for (size_t i = 0; i < bs->n; i++)
		if (strcmp(bs->v[i].name, name) == 0)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "backend %s is configured twice", name);
	bs->v = xrealloc(bs->v, (bs->n + 1) * sizeof(*bs->v));
	struct lms_backend *b = &bs->v[bs->n++];
	*b = (struct lms_backend){.name = xstrdup(name), .kind = kind, .url = xstrdup(url)};
	size_t len = strlen(b->url);
	while (len > 0 && b->url[len - 1] == '/')
		b->url[--len] = '\0';
	return 0;
}

int
lms_backends_init(struct lms_backends *bs, const char *ollama_url, const char *llamacpp_url, const char *extra,
		  struct lms_error **err)
{
	pthread_mutex_init(&bs->lock, NULL);
	if (add(bs, "ollama", LMS_BACKEND_OLLAMA, ollama_url, err) < 0 ||
	    add(bs, "llamacpp", LMS_BACKEND_LLAMACPP, llamacpp_url, err) < 0)
		return -1;
	if (extra == NULL || *extra == '\0')
		return 0;
	_cleanup_free_ char *list = xstrdup(extra);
	char *save = NULL;
	for (char *item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');
		if (eq == NULL || eq == item)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "--backend '%s': expected NAME=URL", item);
		*eq = '\0';
		if (strchr(item, '/') != NULL)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "--backend name '%s' may not contain '/'", item);
		if (add(bs, item, LMS_BACKEND_OPENAI, eq + 1, err) < 0)
			return -1;
	}
	return 0;
}

void
lms_backends_free(struct lms_backends *bs)
{
	for (size_t i = 0; i < bs->n; i++) {
		free(bs->v[i].name);
		free(bs->v[i].url);
		free(bs->v[i].error);
		lms_strv_free(bs->v[i].models);
		json_decref(bs->v[i].context_limits);
	}
	free(bs->v);
	pthread_mutex_destroy(&bs->lock);
}

/* GET /v1/models of one backend; returns the ids, or NULL with *err when it cannot be reached or answers
 * badly. */
static char **
fetch_models(struct lms_backends *bs, struct lms_backend *b, struct lms_error **err)
{
	struct lms_relay *r = NULL;
	struct lms_buf body = {0};
	long status = 0;
	char **ids = NULL;
	int started = lms_relay_start(bs, b, "GET", "/v1/models", NULL, 0, -1, &r, err);
	/* A model list is a probe: a backend that says nothing for a few seconds counts as down. */
	if (started == 0)
		lms_relay_set_timeout(r, bs->timeout_ms < MODELS_TIMEOUT_MS ? bs->timeout_ms : MODELS_TIMEOUT_MS);
	int got = started == 0 ? lms_relay_body(r, &status, &body, err) : -1;
	if (got == 0 && status != 200)
		lms_error_set(err, LMS_ERR_BACKEND, 0, "backend %s (%s): GET /v1/models answered %ld", b->name, b->url,
			      status);
	if (got == 0 && status == 200) {
		json_t *root = json_loadb(body.data ? body.data : "", body.len, 0, NULL);
		json_t *data = json_object_get(root, "data");
		size_t n = json_array_size(data), k = 0;
		ids = xcalloc(n + 1, sizeof(char *));
		for (size_t i = 0; i < n; i++) {
			const char *id = json_string_value(json_object_get(json_array_get(data, i), "id"));
			if (id != NULL)
				ids[k++] = xstrdup(id);
		}
		if (root == NULL) {
			lms_strv_free(ids);
			ids = NULL;
			lms_error_set(err, LMS_ERR_BAD_GATEWAY, 0, "backend %s (%s): GET /v1/models is not JSON",
				      b->name, b->url);
		}
		json_decref(root);
	}
	lms_buf_clear(&body);
	lms_relay_free(r);
	return ids;
}

void
lms_backends_refresh(struct lms_backends *bs)
{
	/* The fetches happen outside the lock: a slow backend must not hold up every other request. */
	bool *stale = xcalloc(bs->n ? bs->n : 1, sizeof(bool));
	pthread_mutex_lock(&bs->lock);
	double now = lms_monotonic_ms();
	for (size_t i = 0; i < bs->n; i++)
		stale[i] = bs->v[i].fetched_ms <= 0 || now - bs->v[i].fetched_ms >= (double)bs->cache_ms;
	pthread_mutex_unlock(&bs->lock);
	for (size_t i = 0; i < bs->n; i++) {
		if (!stale[i])
			continue;
		_cleanup_error_ struct lms_error *err = NULL;
		char **models = fetch_models(bs, &bs->v[i], &err);
		pthread_mutex_lock(&bs->lock);
		bool was = bs->v[i].reachable, first = bs->v[i].fetched_ms <= 0;
		lms_strv_free(bs->v[i].models);
		bs->v[i].models = models;
		bs->v[i].reachable = models != NULL;
		free(bs->v[i].error);
		bs->v[i].error = models == NULL && err != NULL ? xstrdup(err->message) : NULL;
		bs->v[i].fetched_ms = lms_monotonic_ms();
		pthread_mutex_unlock(&bs->lock);
		/* Nobody above asked for this list's failure: the daemon's log says when a backend goes, and
		 * why, and when it is back (once per change, not per request). */
		if (models == NULL && (was || first))
			lms_log(LMS_LOG_WARNING, NULL, "backend unreachable", "backend", bs->v[i].name, "error",
				err ? err->message : "no answer", NULL);
		else if (models != NULL && !was && !first)
			lms_log(LMS_LOG_INFO, NULL, "backend reachable again", "backend", bs->v[i].name, NULL);
	}
	free(stale);
}

json_t *
lms_backends_models_json(struct lms_backends *bs)
{
	lms_backends_refresh(bs);
	json_t *data = json_array();
	pthread_mutex_lock(&bs->lock);
	for (size_t i = 0; i < bs->n; i++)
		for (char **m = bs->v[i].models; m && *m; m++) {
			char id[1024];
			snprintf(id, sizeof(id), "%s/%s", bs->v[i].name, *m);
			json_array_append_new(
			    data, json_pack("{s:s, s:s, s:s}", "id", id, "object", "model", "owned_by", bs->v[i].name));
		}
	pthread_mutex_unlock(&bs->lock);
	return json_pack("{s:s, s:o}", "object", "list", "data", data);
}

json_t *
lms_backends_health_json(struct lms_backends *bs)
{
	lms_backends_refresh(bs);
	json_t *out = json_object();
	pthread_mutex_lock(&bs->lock);
	for (size_t i = 0; i < bs->n; i++) {
		json_t *b = json_pack("{s:s, s:b}", "url", bs->v[i].url, "reachable", bs->v[i].reachable);
		if (bs->v[i].error != NULL)
			json_object_set_new(b, "error", json_string(bs->v[i].error));
		json_object_set_new(out, bs->v[i].name, b);
	}
	pthread_mutex_unlock(&bs->lock);
	return out;
}

/* Ollama's own rule for a name without a tag (none after its last '/'): it means NAME:latest. Returns
 * that name (caller frees), or NULL when the name has a tag or is empty. */
static char *
ollama_latest(const char *name)
{
	const char *last = strrchr(name, '/');
	if (*name == '\0' || strchr(last ? last + 1 : name, ':') != NULL)
		return NULL;
	return xasprintf("%s:latest", name);
}

static bool
lists(const struct lms_backend *b, const char *model)
{
	for (char **m = b->models; m && *m; m++)
		if (strcmp(*m, model) == 0)
			return true;
	return false;
}

struct lms_backend *
lms_backends_resolve(struct lms_backends *bs, const char *model, char **bare, struct lms_error **err)
{
	const char *slash = strchr(model, '/');
	if (slash != NULL)
		for (size_t i = 0; i < bs->n; i++)
			if (strlen(bs->v[i].name) == (size_t)(slash - model) &&
			    strncmp(bs->v[i].name, model, (size_t)(slash - model)) == 0) {
				/* Named with its backend: no model list is needed (nor waited for). */
				char *latest = bs->v[i].kind == LMS_BACKEND_OLLAMA ? ollama_latest(slash + 1) : NULL;
				*bare = latest ? latest : xstrdup(slash + 1);
				return &bs->v[i];
			}
	lms_backends_refresh(bs);
	struct lms_backend *found = NULL;
	_cleanup_free_ char *latest = ollama_latest(model);
	pthread_mutex_lock(&bs->lock);
	for (size_t i = 0; i < bs->n && !found; i++) {
		struct lms_backend *b = &bs->v[i];
		if (lists(b, model)) {
			found = b;
			*bare = xstrdup(model);
		} else if (b->kind == LMS_BACKEND_OLLAMA && latest && lists(b, latest)) {
			found = b;
			*bare = steal_pointer(&latest);
		}
	}
	pthread_mutex_unlock(&bs->lock);
	if (found == NULL)
		lms_error_set(err, LMS_ERR_NOT_FOUND, 0,
			      "model '%s' is not served by any reachable backend: see GET /v1/models, or name it as "
			      "backend/model",
			      model);
	return found;
}

struct lms_backend *
lms_backends_of_kind(struct lms_backends *bs, enum lms_backend_kind kind)
{
	for (size_t i = 0; i < bs->n; i++)
		if (bs->v[i].kind == kind)
			return &bs->v[i];
	return NULL;
}

char *
lms_backend_first_model(struct lms_backends *bs, struct lms_backend *b)
{
	lms_backends_refresh(bs);
	pthread_mutex_lock(&bs->lock);
	char *first = b->models && b->models[0] ? xstrdup(b->models[0]) : NULL;
	pthread_mutex_unlock(&bs->lock);
	return first;
}
