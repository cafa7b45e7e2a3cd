/*
 * Persistent sandboxes over HTTP (API.md, "Persistent sandboxes"): POST/GET/DELETE /v1/sandboxes[/{id}],
 * POST /v1/sandboxes/{id}/fork and POST /v1/sandboxes/{id}/exec. The registry is sandboxes.c; a command runs through
 * the same exec service and reply as POST /v1/exec (routes-exec.c), in the sandbox's worker.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/exec-json.h"
#include "api/exec-request.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "image/store.h"
#include "server/cluster-list.h"
#include "server/cluster.h"
#include "server/history.h"
#include "server/peer-lists.h"
#include "server/sandboxes.h"
#include "server/server.h"

#define ID_PREFIX "/v1/sandboxes/"
#define DEFAULT_TTL_S 3600
#define METADATA_MAX_KEYS 64
#define METADATA_MAX_LEN 512

/* The {id} of the path, copied out (cut to LMS_SANDBOX_ID_SIZE - 1 characters: any real id fits). */
void
lms_sandbox_path_id(const struct lms_request *req, char id[LMS_SANDBOX_ID_SIZE])
{
	const char *p = req->path + strlen(ID_PREFIX);
	size_t n = strcspn(p, "/");
	snprintf(id, LMS_SANDBOX_ID_SIZE, "%.*s", (int)(n < LMS_SANDBOX_ID_SIZE - 1 ? n : LMS_SANDBOX_ID_SIZE - 1), p);
}

enum MHD_Result
lms_reply_sandbox_not_found(struct lms_request *req, const struct lms_error *e, const char *reason)
{
	json_t *body = lms_api_error_json("invalid_request_error", "sandbox_not_found", e->message);
	if (reason != NULL)
		json_object_set_new(json_object_get(body, "error"), "reason", json_string(reason));
	return lms_reply_json(req, 404, body);
}

struct lms_sandbox_entry *
lms_sandbox_hold(struct lms_request *req, enum MHD_Result *reply)
{
	char id[LMS_SANDBOX_ID_SIZE];
	lms_sandbox_path_id(req, id);
	_cleanup_error_ struct lms_error *err = NULL;
	const char *reason = NULL;
	uint64_t key;
	const struct lms_sandbox_settings *base;
	struct lms_sandbox_entry *e = lms_sandboxes_acquire(req->server->sandboxes, id, &key, &base, &reason, &err);
	if (e == NULL)
		*reply = err->kind == LMS_ERR_NOT_FOUND ? lms_reply_sandbox_not_found(req, err, reason)
							: lms_reply_lms_error(req, err);
	return e;
}

static json_t *
body_json(struct lms_request *req, struct lms_error **err)
{
	json_error_t jerr;
	json_t *root = json_loadb(req->body.data ? req->body.data : "{}", req->body.len ? req->body.len : 2, 0, &jerr);
	if (root == NULL)
		lms_error_set(err, LMS_ERR_INVALID, 0, "malformed JSON at line %d, column %d: %s", jerr.line,
			      jerr.column, jerr.text);
	else if (!json_is_object(root)) {
		json_decref(root);
		root = NULL;
		lms_error_set(err, LMS_ERR_INVALID, 0, "the body must be a JSON object");
	}
	return root;
}

/* metadata: an object of short strings (absent: {}). */
static int
parse_metadata(const json_t *root, json_t **out, struct lms_error **err)
{
	json_t *m = json_object_get(root, "metadata");
	if (m == NULL || json_is_null(m)) {
		*out = json_object();
		return 0;
	}
	if (!json_is_object(m) || json_object_size(m) > METADATA_MAX_KEYS)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "metadata must be an object of at most %d strings",
				     METADATA_MAX_KEYS);
	const char *k;
	json_t *v;
	json_object_foreach(m, k, v)
	{
		if (!json_is_string(v) || strlen(k) > METADATA_MAX_LEN || json_string_length(v) > METADATA_MAX_LEN)
			return lms_error_set(err, LMS_ERR_INVALID, 0,
					     "metadata values must be strings, keys and values at most %d bytes",
					     METADATA_MAX_LEN);
	}
	*out = json_incref(m);
	return 0;
}

/* The creation body's exec-like fields (image, limits, network, gpu, env) go through the one exec
 * parser, as a command `true` would: the same rules, the same messages, the server's ceilings. */
static struct lms_exec_request *
parse_settings(struct lms_server *s, const json_t *root, struct lms_error **err)
{
	json_t *copy = json_deep_copy(root);
	const char *command_only[] = {"cmd", "argv", "stdin", "stream", "cwd", "timeout_ms", "encoding"};
	for (size_t i = 0; i < sizeof(command_only) / sizeof(command_only[0]); i++)
		json_object_del(copy, command_only[i]);
	json_object_set_new(copy, "argv", json_pack("[s]", "true"));
	_cleanup_free_ char *text = json_dumps(copy, JSON_COMPACT);
	json_decref(copy);
	struct lms_exec_policy policy = lms_server_exec_policy(s);
	struct lms_exec_request *xr = NULL;
	if (lms_exec_request_parse(text, strlen(text), &policy, &xr, err) < 0)
		return NULL;
	return xr;
}

json_t *
lms_sandbox_create_json(struct lms_server *s, const json_t *root, struct lms_error **err)
{
	struct lms_sandbox_settings set = {.ttl_s = DEFAULT_TTL_S};
	if (set.ttl_s > s->cfg->max_ttl_s)
		set.ttl_s = s->cfg->max_ttl_s;
	json_t *ttl = json_object_get(root, "ttl_s");
	struct lms_exec_request *xr = NULL;
	if (ttl != NULL && !json_is_null(ttl) && (!json_is_integer(ttl) || json_integer_value(ttl) < 1)) {
		lms_error_set(err, LMS_ERR_INVALID, 0, "ttl_s must be a positive integer (seconds of idle time)");
		return NULL;
	}
	if (json_is_integer(ttl))
		set.ttl_s = (uint64_t)json_integer_value(ttl);
	if (parse_metadata(root, &set.metadata, err) == 0)
		xr = parse_settings(s, root, err);
	json_t *obj = NULL;
	if (xr != NULL) {
		set.spec = xr->spec;
		obj = lms_sandboxes_create(s->sandboxes, &set, err);
	}
	json_decref(set.metadata);
	lms_exec_request_free(xr);
	return obj;
}

enum MHD_Result
lms_route_sandbox_create(struct lms_request *req)
{
	_cleanup_error_ struct lms_error *err = NULL;
	json_t *root = body_json(req, &err);
	if (root == NULL)
		return lms_reply_lms_error(req, err);
	json_t *obj = lms_sandbox_create_json(req->server, root, &err);
	json_decref(root);
	return obj ? lms_reply_json(req, 201, obj) : lms_reply_lms_error(req, err);
}

/* ?metadata.KEY=VALUE pairs as a filter object. */
static enum MHD_Result
add_filter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	if (strncmp(key, "metadata.", 9) == 0 && key[9] != '\0')
		json_object_set_new(cls, key + 9, json_string(value ? value : ""));
	return MHD_YES;
}

/* The same filters again, "&metadata.KEY=VALUE..." encoded, for the peers' lists. */
static enum MHD_Result
add_filter_query(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	struct lms_buf *q = cls;
	if (strncmp(key, "metadata.", 9) != 0 || key[9] == '\0')
		return MHD_YES;
	lms_buf_append(q, "&", 1);
	lms_url_encode(q, key, strlen(key), "");
	lms_buf_append(q, "=", 1);
	lms_url_encode(q, value ? value : "", value ? strlen(value) : 0, "");
	return MHD_YES;
}

/* The cluster-wide list: this node's (unless only a peer's is asked for) and the peers' to ask, merged. */
static enum MHD_Result
reply_cluster_list(struct lms_request *req, json_t *local, const struct lms_peer *const *peers, size_t n)
{
	const struct lms_cluster *c = req->server->cluster;
	lms_cluster_list_name_node(json_object_get(local, "data"), c->node);
	struct lms_buf query = {0};
	MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, add_filter_query, &query);
	lms_buf_append(&query, "", 0);
	struct lms_peer_list_request rq = {
	    .query = query.data,
	    .authorization = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
	    .request_id = req->id,
	    .self = c->node};
	struct lms_peer_answer *answers = xcalloc(n + 1, sizeof(*answers));
	lms_peer_lists_fetch(peers, n, &rq, answers);
	json_t *list = lms_cluster_list_merge(local, answers, n);
	for (size_t i = 0; i < n; i++)
		lms_peer_answer_clear(&answers[i]);
	free(answers);
	lms_buf_clear(&query);
	/* A partial list is still a list (200), but never a silent one: the header says so too. */
	struct lms_buf missing = {0};
	size_t i;
	json_t *name;
	json_array_foreach(json_object_get(list, "unreachable_nodes"), i, name)
	{
		if (i > 0)
			lms_buf_append(&missing, ", ", 2);
		lms_buf_append(&missing, json_string_value(name), json_string_length(name));
	}
	lms_buf_append(&missing, "", 0);
	const struct lms_header headers[] = {{"X-LMS-Unreachable-Nodes", missing.data}, {NULL, NULL}};
	enum MHD_Result r = lms_reply_json_headers(req, 200, list, missing.len > 1 ? headers : NULL);
	lms_buf_clear(&missing);
	return r;
}

enum MHD_Result
lms_route_sandbox_list(struct lms_request *req)
{
	const struct lms_cluster *c = req->server->cluster;
	const char *node = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "node");
	/* A request a peer passed on is answered with this node's own list only: never a second fan-out. */
	bool via_peer = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, LMS_FORWARDED_BY_HEADER) != NULL;
	bool local_only = node == NULL ? via_peer : strcmp(node, "local") == 0 || (c && strcmp(node, c->node) == 0);
	const struct lms_peer *one = node != NULL && !local_only && c ? lms_cluster_peer(c, node) : NULL;
	if (node != NULL && !local_only && (one == NULL || via_peer))
		return lms_reply_error(req, 400, "invalid_request_error", "invalid_request",
				       "node=%.64s: no such node in this cluster (node %s, --peers): give node=local "
				       "or the name of a peer",
				       node, c ? c->node : "local");
	json_t *filter = json_object();
	MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, add_filter, filter);
	json_t *list = one != NULL
			   ? json_pack("{s:[]}", "data")
			   : lms_sandboxes_list(req->server->sandboxes, json_object_size(filter) ? filter : NULL);
	json_decref(filter);
	if (!lms_cluster_enabled(c))
		return lms_reply_json(req, 200, list); /* a daemon alone: the list as it always was */
	if (one != NULL)
		return reply_cluster_list(req, list, &one, 1);
	const struct lms_peer **peers = xcalloc(c->n_peers + 1, sizeof(*peers));
	size_t n = 0;
	for (size_t i = 0; !local_only && i < c->n_peers; i++)
		peers[n++] = &c->peers[i];
	enum MHD_Result r = reply_cluster_list(req, list, peers, n);
	free(peers);
	return r;
}

enum MHD_Result
lms_route_sandbox_get(struct lms_request *req)
{
	char id[LMS_SANDBOX_ID_SIZE];
	lms_sandbox_path_id(req, id);
	_cleanup_error_ struct lms_error *err = NULL;
	const char *reason = NULL;
	json_t *obj = lms_sandboxes_get(req->server->sandboxes, id, &reason, &err);
	return obj ? lms_reply_json(req, 200, obj) : lms_reply_sandbox_not_found(req, err, reason);
}

enum MHD_Result
lms_route_sandbox_history(struct lms_request *req)
{
	char id[LMS_SANDBOX_ID_SIZE];
	lms_sandbox_path_id(req, id);
	const char *v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "limit");
	unsigned long long limit = 0;
	if (v != NULL) {
		char *end;
		errno = 0;
		limit = strtoull(v, &end, 10);
		if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || limit < 1 || limit > LMS_HISTORY_MAX)
			return lms_reply_error(req, 400, "invalid_request_error", "invalid_request",
					       "limit must be a whole number 1..%d (the entries kept), not '%.40s'",
					       LMS_HISTORY_MAX, v);
	}
	_cleanup_error_ struct lms_error *err = NULL;
	const char *reason = NULL;
	json_t *obj = lms_sandboxes_history(req->server->sandboxes, id, (size_t)limit, &reason, &err);
	return obj ? lms_reply_json(req, 200, obj) : lms_reply_sandbox_not_found(req, err, reason);
}

enum MHD_Result
lms_route_sandbox_delete(struct lms_request *req)
{
	char id[LMS_SANDBOX_ID_SIZE];
	lms_sandbox_path_id(req, id);
	_cleanup_error_ struct lms_error *err = NULL;
	const char *reason = NULL;
	if (lms_sandboxes_delete(req->server->sandboxes, id, &reason, &err) < 0)
		return err->kind == LMS_ERR_NOT_FOUND ? lms_reply_sandbox_not_found(req, err, reason)
						      : lms_reply_lms_error(req, err);
	struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	return lms_reply(req, 204, resp);
}

enum MHD_Result
lms_route_sandbox_fork(struct lms_request *req)
{
	char id[LMS_SANDBOX_ID_SIZE];
	lms_sandbox_path_id(req, id);
	_cleanup_error_ struct lms_error *err = NULL;
	json_t *root = body_json(req, &err);
	if (root == NULL)
		return lms_reply_lms_error(req, err);
	json_t *ttl = json_object_get(root, "ttl_s"), *metadata = NULL;
	uint64_t ttl_s = 0;
	bool has_metadata = json_object_get(root, "metadata") != NULL;
	if (ttl != NULL && !json_is_null(ttl) && (!json_is_integer(ttl) || json_integer_value(ttl) < 1))
		lms_error_set(&err, LMS_ERR_INVALID, 0, "ttl_s must be a positive integer (seconds of idle time)");
	else if (json_is_integer(ttl))
		ttl_s = (uint64_t)json_integer_value(ttl);
	if (err == NULL && has_metadata)
		parse_metadata(root, &metadata, &err);
	json_decref(root);
	const char *reason = NULL;
	double started_s = lms_wall_s(), started_ms = lms_monotonic_ms();
	json_t *obj =
	    err ? NULL : lms_sandboxes_fork(req->server->sandboxes, id, ttl_s ? &ttl_s : NULL, metadata, &reason, &err);
	json_decref(metadata);
	if (obj != NULL) { /* in the source's log: the new sandbox's id as the "path" of the call */
		struct lms_history_call c = {.via = "http",
					     .tool = "fork",
					     .path = json_string_value(json_object_get(obj, "id")),
					     .status = "ok",
					     .exit_code = -1,
					     .started_s = started_s,
					     .duration_ms = lms_monotonic_ms() - started_ms,
					     .bytes = -1};
		lms_sandboxes_record(req->server->sandboxes, id, lms_history_entry(&c));
	}
	if (obj != NULL)
		return lms_reply_json(req, 201, obj);
	return err->kind == LMS_ERR_NOT_FOUND ? lms_reply_sandbox_not_found(req, err, reason)
					      : lms_reply_lms_error(req, err);
}

/* A command's request in the sandbox: its limits within the sandbox's, its environment added to the
 * sandbox's, the sandbox's network, GPUs and image. */
struct lms_exec_request *
lms_sandbox_command_parse(struct lms_server *s, const struct lms_sandbox_settings *base, const char *body, size_t len,
			  struct lms_error **err)
{
	struct lms_exec_policy policy = lms_server_exec_policy(s);
	policy.ceilings = base->spec.limits;
	policy.ceilings.timeout_ms = s->cfg->max_timeout_ms;
	policy.defaults = base->spec.limits;
	policy.defaults.timeout_ms = s->cfg->defaults.timeout_ms;
	/* "cmd" runs as bash -c where the sandbox's image has bash, as in POST /v1/exec. */
	if (!lms_image_is_host(base->spec.image)) {
		struct lms_image *img = NULL;
		policy.have_bash =
		    lms_image_load(s->cfg->state_dir, base->spec.image, &img, NULL) == 0 && img->has_bash;
		lms_image_free(img);
	}
	struct lms_exec_request *xr = NULL;
	if (lms_exec_request_parse(body, len, &policy, &xr, err) < 0)
		return NULL;
	if (xr->spec.image != NULL && strcmp(xr->spec.image, base->spec.image) != 0) {
		lms_exec_request_free(xr);
		lms_error_set(err, LMS_ERR_INVALID, 0, "image is the sandbox's (%s), chosen when it was created",
			      base->spec.image);
		return NULL;
	}
	/* The disk is sized when the sandbox is made: every command shares it. */
	xr->spec.limits.disk_mb = base->spec.limits.disk_mb;
	xr->spec.image = base->spec.image;
	xr->spec.layers = base->spec.layers; /* the sandbox's, which outlives the command */
	if (xr->cwd == NULL && base->spec.cwd != NULL)
		xr->cwd = xstrdup(base->spec.cwd); /* the image's WorkingDir */
	xr->spec.cwd = xr->cwd;
	xr->spec.network = base->spec.network;
	xr->spec.gpus = base->spec.gpus;
	size_t n_base = 0, n_own = 0;
	while (base->spec.env && base->spec.env[n_base])
		n_base++;
	while (xr->env && xr->env[n_own])
		n_own++;
	char **env = xcalloc(n_base + n_own + 1, sizeof(char *));
	for (size_t i = 0; i < n_base; i++)
		env[i] = xstrdup(base->spec.env[i]);
	for (size_t i = 0; i < n_own; i++)
		env[n_base + i] = xstrdup(xr->env[i]); /* later names win: the command's own */
	lms_strv_free(xr->env);
	xr->env = env;
	xr->spec.env = env;
	return xr;
}

enum MHD_Result
lms_route_sandbox_exec(struct lms_request *req)
{
	char id[LMS_SANDBOX_ID_SIZE];
	lms_sandbox_path_id(req, id);
	struct lms_sandboxes *sbs = req->server->sandboxes;
	_cleanup_error_ struct lms_error *err = NULL;
	const char *reason = NULL;
	struct lms_exec_target t = {.sbs = sbs};
	snprintf(t.id, sizeof(t.id), "%s", id);
	const struct lms_sandbox_settings *base = NULL;
	t.entry = lms_sandboxes_acquire(sbs, id, &t.sandbox, &base, &reason, &err);
	if (t.entry == NULL)
		return err->kind == LMS_ERR_NOT_FOUND ? lms_reply_sandbox_not_found(req, err, reason)
						      : lms_reply_lms_error(req, err);
	struct lms_exec_request *xr =
	    lms_sandbox_command_parse(req->server, base, req->body.data ? req->body.data : "", req->body.len, &err);
	if (xr == NULL) {
		lms_sandboxes_release(sbs, t.entry, NULL);
		return lms_reply_lms_error(req, err);
	}
	if (xr->background) {
		enum MHD_Result r = lms_route_sandbox_start(req, t.entry, t.sandbox, xr);
		lms_exec_request_free(xr);
		return r;
	}
	return lms_exec_respond(req, xr, &t);
}
