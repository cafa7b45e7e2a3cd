#include "api/exec-request.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "api/gpu-json.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/utf8.h"
#include "image/store.h"
#include "net/allowlist.h"

/* An error message quotes at most this many bytes of a string from the request: the body may be
 * megabytes long, and the message goes back to the client and into the log. */
#define QUOTE_MAX 64

/* The longest path the kernel takes (PATH_MAX, counting the NUL), as lms_sandbox_spec_validate checks. */
#define CWD_MAX 4096

static void
exec_request_freep(struct lms_exec_request **req)
{
	lms_exec_request_free(*req);
}

/* "a string", "an array"...: what a value is, for "x must be ..., not <what>". */
static const char *
type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a real number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "a value";
}

/* A copy of at most QUOTE_MAX bytes of s, cut at a NUL or before a character that does not fit, with
 * "..." when shortened. The request's strings are valid UTF-8 (jansson checks), and so is the quote. */
static char *
quote(const char *s, size_t len)
{
	const char *nul = memchr(s, '\0', len);
	size_t n = nul ? (size_t)(nul - s) : len;
	bool cut = n < len;
	if (n > QUOTE_MAX) {
		n = QUOTE_MAX;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
		cut = true;
	}
	char *q = xmalloc(n + 4);
	memcpy(q, s, n);
	memcpy(q + n, cut ? "..." : "", cut ? 4 : 1);
	return q;
}

static int
malformed(const json_error_t *jerr, struct lms_error **err)
{
	/* jansson quotes the offending token, cut to fit its buffer: possibly in the middle of a character. */
	size_t len;
	_cleanup_free_ char *text = lms_utf8_sanitize(jerr->text, strnlen(jerr->text, sizeof(jerr->text)), &len);
	return lms_error_set(err, LMS_ERR_INVALID, 0, "malformed JSON at line %d, column %d: %s", jerr->line,
			     jerr->column, text);
}

/* The member `key` of obj, or NULL when absent or null: null means "not given". */
static json_t *
field(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_null(v) ? NULL : v;
}

static bool
has_nul(const json_t *s)
{
	return memchr(json_string_value(s), '\0', json_string_length(s)) != NULL;
}

/* Returns 1 with *out set when `key` is a string, 0 when it is not given, -1 when it is no string or
 * (unless nul_ok) holds a NUL byte, which the kernel cannot take. */
static int
get_string(const json_t *obj, const char *key, bool nul_ok, const json_t **out, struct lms_error **err)
{
	const json_t *v = field(obj, key);
	if (v == NULL)
		return 0;
	if (!json_is_string(v))
		return lms_error_set(err, LMS_ERR_INVALID, 0, "%s must be a string, not %s", key, type_name(v));
	if (!nul_ok && has_nul(v))
		return lms_error_set(err, LMS_ERR_INVALID, 0, "%s must not contain a NUL byte (\\u0000)", key);
	*out = v;
	return 1;
}

static int
get_bool(const json_t *obj, const char *key, bool *out, struct lms_error **err)
{
	const json_t *v = field(obj, key);
	if (v == NULL)
		return 0;
	if (!json_is_boolean(v))
		return lms_error_set(err, LMS_ERR_INVALID, 0, "%s must be true or false, not %s", key, type_name(v));
	*out = json_is_true(v);
	return 0;
}

/* A request's allowlist, each entry checked as the engine reads it (net/allowlist.h), kept comma-separated
 * for the spec. */
static int
parse_allowlist(const json_t *allow, char **out, struct lms_error **err)
{
	if (!json_is_array(allow))
		return lms_error_set(err, LMS_ERR_INVALID, 0, "network.allow must be an array of names and ranges");
	if (json_array_size(allow) > LMS_ALLOWLIST_MAX_ENTRIES)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "network.allow has %zu entries: at most %d",
				     json_array_size(allow), LMS_ALLOWLIST_MAX_ENTRIES);
	_cleanup_free_ struct lms_allowlist *list = xcalloc(1, sizeof(*list));
	struct lms_buf joined = {0};
	size_t i;
	const json_t *e;
	json_array_foreach(allow, i, e)
	{
		const char *text = json_is_string(e) ? json_string_value(e) : NULL;
		if (text == NULL || strlen(text) != json_string_length(e) || lms_allowlist_add(list, text, err) < 0) {
			lms_buf_clear(&joined);
			if (text == NULL)
				return lms_error_set(err, LMS_ERR_INVALID, 0, "network.allow[%zu] must be a string", i);
			return lms_error_prefix(err, "network.allow[%zu]", i);
		}
		if (joined.len)
			lms_buf_append(&joined, ",", 1);
		lms_buf_append(&joined, text, strlen(text));
	}
	/* An empty list is a sandbox that reaches nothing but its own loopback, and says so. */
	*out = joined.data ? joined.data : xstrdup("");
	return 0;
}

/* "network": false, true, or {"allow": [names and ranges]} (API.md "Network"). Anything but false needs
 * --allow-network (403, before its shape is even looked at: a server without network says so first). On a
 * server with its own allowlist (--network-allow), true means that list and a request's own is refused. */
static int
parse_network(const json_t *root, const struct lms_exec_policy *policy, struct lms_exec_request *req, bool *network,
	      struct lms_error **err)
{
	const json_t *v = field(root, "network");
	*network = false;
	if (v == NULL || json_is_false(v))
		return 0;
	if (!json_is_true(v) && !json_is_object(v))
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "network must be true, false or {\"allow\": [...]}, not %s", type_name(v));
	if (!policy->allow_network)
		return lms_error_set(err, LMS_ERR_FORBIDDEN, 0,
				     "network access is disabled on this server: start it with --allow-network");
	*network = true;
	if (json_is_true(v)) {
		if (policy->net_allow)
			req->net_allow = xstrdup(policy->net_allow);
		return 0;
	}
	if (policy->net_allow)
		return lms_error_set(err, LMS_ERR_FORBIDDEN, 0,
				     "this server sets the allowlist itself (--network-allow): ask for network: true");
	return parse_allowlist(json_object_get(v, "allow"), &req->net_allow, err);
}

/* Reads a non-negative integer `key` of obj into *out when given; `name` is how the message calls it
 * ("limits.pids"), `min` the least value the engine can work with. */
static int
get_u64(const json_t *obj, const char *key, const char *name, uint64_t min, uint64_t *out, struct lms_error **err)
{
	const json_t *v = field(obj, key);
	if (v == NULL)
		return 0;
	if (!json_is_integer(v))
		return lms_error_set(err, LMS_ERR_INVALID, 0, "%s must be a non-negative integer, not %s", name,
				     type_name(v));
	json_int_t n = json_integer_value(v);
	if (n < 0)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "%s must be a non-negative integer, not %lld", name,
				     (long long)n);
	if ((uint64_t)n < min)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "%s must be at least %llu, not %lld", name,
				     (unsigned long long)min, (long long)n);
	*out = (uint64_t)n;
	return 0;
}

/* limits.cpus: a number of cores (0.5, 2), kept in thousandths; 0 is "no limit". */
static int
get_cpus(const json_t *obj, uint64_t *millicpus, struct lms_error **err)
{
	const json_t *v = field(obj, "cpus");
	if (v == NULL)
		return 0;
	if (!json_is_number(v))
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "limits.cpus must be a number of cores such as 0.5, not %s", type_name(v));
	double cores = json_number_value(v);
	if (!(cores >= 0) || cores > (double)LMS_MAX_MILLICPUS / 1000)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "limits.cpus must be between 0 and %llu, not %g",
				     LMS_MAX_MILLICPUS / 1000, cores);
	uint64_t milli = (uint64_t)(cores * 1000 + 0.5);
	if (milli != 0 && milli < LMS_MIN_MILLICPUS)
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "limits.cpus must be 0 (no limit) or at least 0.01, not %g", cores);
	*millicpus = milli;
	return 0;
}

static char *
dup_string(const json_t *s)
{
	return xstrndup(json_string_value(s), json_string_length(s));
}

/* "cmd" (a shell command) or "argv" (run directly): exactly one. */
static int
parse_command(const json_t *root, const struct lms_exec_policy *policy, struct lms_exec_request *req,
	      struct lms_error **err)
{
	const json_t *cmd = NULL, *argv = field(root, "argv");
	int have_cmd = get_string(root, "cmd", false, &cmd, err);
	if (have_cmd < 0)
		return -1;
	if (have_cmd && argv)
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "both \"cmd\" and \"argv\" are given: send exactly one of them");
	if (!have_cmd && !argv)
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "no command: send exactly one of \"cmd\" (a shell command string) or \"argv\" "
				     "(an array of strings)");
	if (have_cmd) {
		req->argv = xcalloc(4, sizeof(char *));
		req->argv[0] = xstrdup(policy->have_bash ? "bash" : "sh");
		req->argv[1] = xstrdup("-c");
		req->argv[2] = dup_string(cmd);
		return 0;
	}

	if (!json_is_array(argv))
		return lms_error_set(err, LMS_ERR_INVALID, 0, "argv must be an array of strings, not %s",
				     type_name(argv));
	size_t n = json_array_size(argv);
	if (n == 0)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "argv must not be empty: give at least the program");
	if (n > LMS_MAX_ARGS)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "argv has %zu entries, more than %d", n, LMS_MAX_ARGS);
	req->argv = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		const json_t *a = json_array_get(argv, i);
		if (!json_is_string(a))
			return lms_error_set(err, LMS_ERR_INVALID, 0, "argv[%zu] must be a string, not %s", i,
					     type_name(a));
		if (has_nul(a))
			return lms_error_set(err, LMS_ERR_INVALID, 0, "argv[%zu] must not contain a NUL byte (\\u0000)",
					     i);
		req->argv[i] = dup_string(a);
	}
	if (req->argv[0][0] == '\0')
		return lms_error_set(err, LMS_ERR_INVALID, 0, "argv[0] must name a program, not be empty");
	return 0;
}

/* {"NAME": "value"} becomes "NAME=value". */
static int
parse_env(const json_t *root, struct lms_exec_request *req, struct lms_error **err)
{
	const json_t *env = field(root, "env");
	if (env == NULL)
		return 0;
	if (!json_is_object(env))
		return lms_error_set(err, LMS_ERR_INVALID, 0, "env must be an object of strings, not %s",
				     type_name(env));
	size_t n = json_object_size(env);
	if (n > LMS_MAX_ENV)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "env has %zu entries, more than %d", n, LMS_MAX_ENV);
	req->env = xcalloc(n + 1, sizeof(char *));
	size_t i = 0;
	const char *key;
	size_t key_len;
	json_t *value;
	/* json_object_keylen_foreach takes a non-const object; it does not change it. */
	json_object_keylen_foreach((json_t *)env, key, key_len, value)
	{
		_cleanup_free_ char *name = quote(key, key_len);
		if (key_len == 0)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "env names must not be empty");
		if (memchr(key, '=', key_len) != NULL)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "env name '%s' must not contain '='", name);
		if (memchr(key, '\0', key_len) != NULL)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "env name '%s' must not contain a NUL byte",
					     name);
		if (!json_is_string(value))
			return lms_error_set(err, LMS_ERR_INVALID, 0, "env value of '%s' must be a string, not %s",
					     name, type_name(value));
		if (has_nul(value))
			return lms_error_set(err, LMS_ERR_INVALID, 0,
					     "env value of '%s' must not contain a NUL byte (\\u0000)", name);
		size_t value_len = json_string_length(value);
		char *entry = xmalloc(key_len + 1 + value_len + 1);
		memcpy(entry, key, key_len);
		entry[key_len] = '=';
		memcpy(entry + key_len + 1, json_string_value(value), value_len + 1);
		req->env[i++] = entry;
	}
	return 0;
}

static int
parse_cwd(const json_t *root, struct lms_exec_request *req, struct lms_error **err)
{
	const json_t *cwd = NULL;
	int r = get_string(root, "cwd", false, &cwd, err);
	if (r <= 0)
		return r;
	size_t len = json_string_length(cwd);
	if (len >= CWD_MAX)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "cwd must be shorter than %d bytes, not %zu", CWD_MAX,
				     len);
	if (json_string_value(cwd)[0] != '/') {
		_cleanup_free_ char *q = quote(json_string_value(cwd), len);
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "cwd must be an absolute path (starting with '/'), not '%s'", q);
	}
	req->cwd = dup_string(cwd);
	return 0;
}

/* stdin keeps NUL bytes: it is data, not a C string. Not given: /dev/null; "": an empty stdin. */
static int
parse_stdin(const json_t *root, struct lms_exec_request *req, struct lms_error **err)
{
	const json_t *in = NULL;
	int r = get_string(root, "stdin", true, &in, err);
	if (r <= 0)
		return r;
	size_t len = json_string_length(in);
	req->stdin_data = xmalloc(len + 1); /* never NULL, even for "" */
	memcpy(req->stdin_data, json_string_value(in), len + 1);
	req->spec.stdin_len = len;
	return 0;
}

static int
parse_limits(const json_t *root, struct lms_limits *l, struct lms_error **err)
{
	/* The minimums are lms_sandbox_spec_validate's, checked here to name the field as the request does. */
	if (get_u64(root, "timeout_ms", "timeout_ms", 1, &l->timeout_ms, err) < 0)
		return -1;
	const json_t *limits = field(root, "limits");
	if (limits == NULL)
		return 0;
	if (!json_is_object(limits))
		return lms_error_set(err, LMS_ERR_INVALID, 0, "limits must be an object, not %s", type_name(limits));
	if (get_u64(limits, "memory_mb", "limits.memory_mb", 4, &l->memory_mb, err) < 0 ||
	    get_u64(limits, "pids", "limits.pids", 1, &l->pids, err) < 0 ||
	    get_u64(limits, "cpu_ms", "limits.cpu_ms", 0, &l->cpu_ms, err) < 0 ||
	    get_u64(limits, "output_bytes", "limits.output_bytes", 0, &l->output_bytes, err) < 0 ||
	    get_u64(limits, "disk_mb", "limits.disk_mb", 1, &l->disk_mb, err) < 0 ||
	    get_cpus(limits, &l->millicpus, err) < 0)
		return -1;
	return 0;
}

static uint64_t
cap(uint64_t value, uint64_t ceiling)
{
	return value > ceiling ? ceiling : value;
}

/* For limits where 0 is "no limit": a ceiling of 0 lets any value through, and under a real ceiling
 * "no limit" would be the loosest value of all. */
static uint64_t
cap_nonzero(uint64_t value, uint64_t ceiling)
{
	return ceiling > 0 && (value == 0 || value > ceiling) ? ceiling : value;
}

/* A request may tighten the server's limits, never loosen them: larger values become the ceiling. */
static void
clamp_limits(struct lms_limits *l, const struct lms_limits *c)
{
	l->timeout_ms = cap(l->timeout_ms, c->timeout_ms);
	l->memory_mb = cap(l->memory_mb, c->memory_mb);
	l->pids = cap(l->pids, c->pids);
	l->output_bytes = cap(l->output_bytes, c->output_bytes);
	l->disk_mb = cap(l->disk_mb, c->disk_mb);
	l->cpu_ms = cap_nonzero(l->cpu_ms, c->cpu_ms);
	l->millicpus = cap_nonzero(l->millicpus, c->millicpus);
}

static int
parse_encoding(const json_t *root, enum lms_encoding *out, struct lms_error **err)
{
	const json_t *v = field(root, "encoding");
	if (v == NULL)
		return 0;
	const char *s = json_string_value(v);
	size_t len = json_string_length(v);
	if (s && len == strlen("utf-8") && strcmp(s, "utf-8") == 0)
		*out = LMS_ENCODING_UTF8;
	else if (s && len == strlen("base64") && strcmp(s, "base64") == 0)
		*out = LMS_ENCODING_BASE64;
	else if (s) {
		_cleanup_free_ char *q = quote(s, len);
		return lms_error_set(err, LMS_ERR_INVALID, 0, "encoding must be \"utf-8\" or \"base64\", not \"%s\"",
				     q);
	} else
		return lms_error_set(err, LMS_ERR_INVALID, 0, "encoding must be \"utf-8\" or \"base64\", not %s",
				     type_name(v));
	return 0;
}

/* An imported image's part of the spec: its layers, its Env under the request's (a name in both: the
 * request's wins, as the last of repeated names does), its WorkingDir where the request gives no cwd,
 * and bash or sh for "cmd" as the image has them. */
static void
apply_image(const struct lms_image *img, const json_t *root, struct lms_exec_request *req)
{
	size_t n = 0;
	while (img->paths[n])
		n++;
	req->layers = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		req->layers[i] = xstrdup(img->paths[i]);
	char **env = lms_image_env(img, req->env);
	lms_strv_free(req->env);
	req->env = env;
	if (req->cwd == NULL && img->working_dir != NULL)
		req->cwd = xstrdup(img->working_dir);
	if (field(root, "cmd") != NULL && req->argv != NULL) {
		free(req->argv[0]);
		req->argv[0] = xstrdup(img->has_bash ? "bash" : "sh");
	}
}

/* What the server allows: checked after the request's shape, so that a 400 comes first. */
static int
parse_image(const json_t *root, const struct lms_exec_policy *policy, struct lms_exec_request *req,
	    struct lms_error **err)
{
	const json_t *image = NULL;
	int r = get_string(root, "image", true, &image, err);
	if (r <= 0)
		return r;
	const char *s = json_string_value(image);
	size_t len = json_string_length(image);
	/* The name is shown quoted (cut at a NUL or past QUOTE_MAX), never cut silently. */
	if (memchr(s, '\0', len) != NULL || (!lms_image_is_host(s) && policy->state_dir == NULL)) {
		_cleanup_free_ char *q = quote(s, len);
		return lms_image_check(q, NULL, err);
	}
	if (!lms_image_is_host(s)) {
		struct lms_image *img;
		if (lms_image_load(policy->state_dir, s, &img, err) < 0)
			return -1;
		apply_image(img, root, req);
		lms_image_free(img);
	}
	req->image = xstrdup(s);
	return 0;
}

int
lms_exec_request_parse(const char *body, size_t len, const struct lms_exec_policy *policy,
		       struct lms_exec_request **out, struct lms_error **err)
{
	*out = NULL;
	if (len == 0)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "the body is empty: send a JSON object");
	/* Duplicate names are allowed (the last wins, as in most parsers); NUL bytes are let through to be
	 * rejected field by field, with a message that names the field. */
	json_error_t jerr;
	json_auto_t *root = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	if (root == NULL)
		return malformed(&jerr, err);
	if (!json_is_object(root))
		return lms_error_set(err, LMS_ERR_INVALID, 0, "the body must be a JSON object, not %s",
				     type_name(root));

	_cleanup_(exec_request_freep) struct lms_exec_request *req = xcalloc(1, sizeof(*req));
	struct lms_sandbox_spec *spec = &req->spec;
	lms_sandbox_spec_init(spec);
	spec->limits = policy->defaults;
	req->encoding = LMS_ENCODING_UTF8;
	bool network = false;
	if (parse_command(root, policy, req, err) < 0 || parse_stdin(root, req, err) < 0 ||
	    parse_env(root, req, err) < 0 || parse_cwd(root, req, err) < 0 ||
	    parse_limits(root, &spec->limits, err) < 0 || parse_network(root, policy, req, &network, err) < 0 ||
	    lms_gpu_selection_parse(field(root, "gpu"), &spec->gpus, err) < 0 ||
	    get_bool(root, "stream", &req->stream, err) < 0 || parse_encoding(root, &req->encoding, err) < 0 ||
	    parse_image(root, policy, req, err) < 0 || get_bool(root, "background", &req->background, err) < 0)
		return -1;
	if (req->background && req->stream)
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "background and stream exclude each other: follow a background process's output "
				     "with GET .../processes/{pid}/output?follow=true");
	spec->network = network;
	if (network) {
		spec->net_dns = policy->net_dns;
		spec->net_allow_private = policy->net_allow_private;
		spec->net_allow = req->net_allow;
	}
	clamp_limits(&spec->limits, &policy->ceilings);

	spec->argv = req->argv;
	spec->env = req->env;
	spec->cwd = req->cwd;
	spec->image = req->image;
	spec->layers = req->layers;
	spec->stdin_data = req->stdin_data;
	if (lms_sandbox_spec_validate(spec, err) < 0)
		return -1;
	*out = steal_pointer(&req);
	return 0;
}

void
lms_exec_request_free(struct lms_exec_request *req)
{
	if (req == NULL)
		return;
	lms_strv_free(req->argv);
	lms_strv_free(req->env);
	free(req->cwd);
	free(req->image);
	lms_strv_free(req->layers);
	free(req->stdin_data);
	free(req->net_allow);
	free(req);
}
