#include "server/settings.h"

#include <ctype.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/stringify.h"
#include "net/allowlist.h"
#include "net/forbidden.h"

static int check_allowlist(const char *list, struct lms_error **err);

enum setting_type {
	T_STRING,
	T_U64,
	T_BOOL,
	T_LIST,	     /* a string; repeated flags join with ',' */
	T_LOG_LEVEL, /* debug, info, warning or error (core/log.h) */
	T_CPUS,	     /* a number of cores ("0.5"), kept as a uint64_t of thousandths (sandbox.h) */
};

struct setting {
	const char *flag; /* --flag; the variable is LM_SANDBOX_ + FLAG with '-' as '_' */
	enum setting_type type;
	const char *def; /* NULL: unset */
	uint64_t min, max;
	size_t offset;
	const char *help;
};

#define F(field) offsetof(struct lms_config, field)
/* The request defaults are the sandbox's own (sandbox.h), written once. */
#define S(number) LMS_STRINGIFY(number)

static const struct setting settings[] = {
    {"listen", T_STRING, "127.0.0.1:8000", 0, 0, F(listen),
     "address:port to serve on (port 0 picks a free one); any non-loopback address needs a token"},
    {"state-dir", T_STRING, "/var/lib/lm-sandbox", 0, 0, F(state_dir),
     "persistent sandboxes keep their files and records here (tmpfs mounts: a reboot loses them; root only)"},
    {"token-file", T_STRING, NULL, 0, 0, F(token_file),
     "file holding the API token (or set LM_SANDBOX_API_TOKEN); requests then need Authorization: Bearer"},
    {"env-file", T_STRING, NULL, 0, 0, F(env_file), "read LM_SANDBOX_* settings from KEY=VALUE lines"},
    {"log-level", T_LOG_LEVEL, "info", 0, 0, F(log_level),
     "least level logged on standard error: debug, info, warning or error"},
    {"max-concurrent", T_U64, "16", 1, 4096, F(max_concurrent), "executions at once; more get 429 with Retry-After"},
    {"pool-size", T_U64, "4", 0, 64, F(pool_size), "sandboxes kept prepared ahead of demand (0: make each on demand)"},
    {"max-timeout-ms", T_U64, "300000", 1, LMS_MAX_TIMEOUT_MS, F(max_timeout_ms), "ceiling for a request's timeout_ms"},
    {"max-body-bytes", T_U64, "8388608", 1024, 1ull << 30, F(max_body_bytes), "largest request body (413 past it)"},
    {"max-sandboxes", T_U64, "32", 0, 4096, F(max_sandboxes),
     "persistent sandboxes at once (POST /v1/sandboxes past it: 429); each holds a worker and its PID 1"},
    {"max-ttl-s", T_U64, "86400", 1, 30ull * 86400, F(max_ttl_s),
     "ceiling of a persistent sandbox's idle time to live (ttl_s; the default is 3600 or this, if lower)"},
    {"max-upload-bytes", T_U64, "268435456", 1, 1ull << 40, F(max_upload_bytes),
     "largest upload to a sandbox's files (PUT .../files/...; 413 past it); it streams to the file, never held"},
    {"max-body-bytes-in-flight", T_U64, "33554432", 1024, 1ull << 34, F(max_body_bytes_in_flight),
     "request bodies over 64 KiB held at once, all clients together (503 with Retry-After past it)"},
    {"max-connections", T_U64, "1024", 16, 65536, F(max_connections),
     "connections at once, all clients together (more are closed at accept)"},
    {"max-connections-per-ip", T_U64, "128", 0, 65536, F(max_connections_per_ip),
     "connections at once from one address, loopback included (0: no limit; behind a proxy, raise it)"},
    {"header-timeout-ms", T_U64, "10000", 100, 600000, F(header_timeout_ms),
     "time to send a request's headers, from connecting or the previous response (then closed)"},
    {"idle-timeout-ms", T_U64, "120000", 1000, 3600000, F(idle_timeout_ms),
     "a body that stalls, or a client that takes no bytes of a response, this long is closed (whole seconds)"},
    {"allow-network", T_BOOL, "false", 0, 0, F(allow_network), "let requests ask for network: true"},
    {"network-dns", T_STRING, NULL, 0, 0, F(network_dns),
     "the resolver network sandboxes' DNS goes to (ADDR or ADDR:PORT), asked from the host by each sandbox's DNS "
     "forwarder (default: the first nameserver of /etc/resolv.conf)"},
    {"network-allow", T_LIST, NULL, 0, 0, F(network_allow),
     "a name (github.com, *.example.org: its subdomains) or range network sandboxes may reach, and only those: "
     "network: true means this list, a request's own list is refused (repeat or comma-separate)"},
    {"network-allow-private", T_LIST, NULL, 0, 0, F(network_allow_private),
     "a private range (inside 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) network sandboxes may reach "
     "(repeatable)"},
    {"node-id", T_STRING, NULL, 0, 0, F(node_id),
     "this daemon's name in a cluster, in the ids of the sandboxes it makes (default: $HOSTNAME, the pod's name)"},
    {"peers", T_LIST, NULL, 0, 0, F(peers),
     "the cluster's nodes, NAME=http://HOST:PORT (repeatable; the variable takes NAME=URL,NAME=URL): a request "
     "for a sandbox of another node goes there"},
    {"cors-origin", T_LIST, NULL, 0, 0, F(cors_origins),
     "an Origin (scheme://host[:port]) whose pages may call POST /mcp, besides the server's own (repeatable; the "
     "variable takes ORIGIN,ORIGIN)"},
    {"insecure-no-auth", T_BOOL, "false", 0, 0, F(insecure_no_auth),
     "serve a non-loopback address without a token (do not)"},
    {"sandbox-optional", T_BOOL, "false", 0, 0, F(sandbox_optional),
     "serve the gateway even where the start-up check finds that no sandbox can be made here (it is logged)"},
    {"ollama-url", T_STRING, "http://127.0.0.1:11434", 0, 0, F(ollama_url), "the Ollama backend"},
    {"llamacpp-url", T_STRING, "http://127.0.0.1:8080", 0, 0, F(llamacpp_url), "the llama.cpp backend (llama-server)"},
    {"backend", T_LIST, NULL, 0, 0, F(backends),
     "another OpenAI-compatible backend, NAME=URL (repeatable; the variable takes NAME=URL,NAME=URL)"},
    {"ollama-model", T_STRING, NULL, 0, 0, F(ollama_model),
     "model of POST /ollama/ when the request names none (else the backend's first)"},
    {"llamacpp-model", T_STRING, NULL, 0, 0, F(llamacpp_model),
     "model of POST /llama-cpp/ when the request names none (else the backend's first)"},
    {"backend-connect-timeout-ms", T_U64, "2000", 1, 600000, F(backend_connect_timeout_ms),
     "connecting to a backend (503 past it)"},
    {"backend-first-byte-timeout-ms", T_U64, "0", 0, 3600000, F(backend_first_byte_timeout_ms),
     "a backend's time to start answering, 504 past it (0: as --backend-timeout-ms)"},
    {"backend-timeout-ms", T_U64, "300000", 1, 3600000, F(backend_timeout_ms),
     "a backend's silence between two bytes of its answer (504 past it)"},
    {"models-cache-ms", T_U64, "2000", 0, 3600000, F(models_cache_ms), "how long backends' model lists are reused"},
    {"timeout-ms", T_U64, S(LMS_DEFAULT_TIMEOUT_MS), 1, LMS_MAX_TIMEOUT_MS, F(defaults.timeout_ms),
     "default timeout_ms of a request"},
    {"memory-mb", T_U64, S(LMS_DEFAULT_MEMORY_MB), 4, LMS_MAX_MEMORY_MB, F(defaults.memory_mb),
     "default and ceiling of limits.memory_mb"},
    {"pids", T_U64, S(LMS_DEFAULT_PIDS), 1, LMS_MAX_PIDS, F(defaults.pids), "default and ceiling of limits.pids"},
    {"cpu-ms", T_U64, "0", 0, LMS_MAX_TIMEOUT_MS, F(defaults.cpu_ms), "default and ceiling of limits.cpu_ms (0: none)"},
    {"cpus", T_CPUS, "0", 0, 0, F(defaults.millicpus),
     "default and ceiling of limits.cpus, CPU bandwidth in cores such as 0.5 or 2 (0: none)"},
    {"output-bytes", T_U64, S(LMS_DEFAULT_OUTPUT_BYTES), 0, LMS_MAX_OUTPUT_BYTES, F(defaults.output_bytes),
     "default and ceiling of limits.output_bytes, per stream"},
    {"disk-mb", T_U64, S(LMS_DEFAULT_DISK_MB), 1, LMS_MAX_DISK_MB, F(defaults.disk_mb),
     "default and ceiling of limits.disk_mb"},
};

#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

static void
env_name(const struct setting *s, char *out, size_t size)
{
	int n = snprintf(out, size, "LM_SANDBOX_");
	for (const char *p = s->flag; *p && (size_t)n + 1 < size; p++)
		out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
	out[n] = '\0';
}

static int
assign(struct lms_config *cfg, const struct setting *s, const char *value, const char *source, struct lms_error **err)
{
	void *field = (char *)cfg + s->offset;
	switch (s->type) {
	case T_LIST:
	case T_STRING:
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		return 0;
	case T_BOOL:
		if (!strcmp(value, "true") || !strcmp(value, "1") || !strcmp(value, "yes"))
			*(bool *)field = true;
		else if (!strcmp(value, "false") || !strcmp(value, "0") || !strcmp(value, "no"))
			*(bool *)field = false;
		else
			return lms_error_set(err, LMS_ERR_INVALID, 0, "%s: '%s' is not true or false", source, value);
		return 0;
	case T_LOG_LEVEL: {
		int level = lms_log_level_parse(value);
		if (level < 0)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "%s: '%s' is not debug, info, warning or error",
					     source, value);
		*(enum lms_log_level *)field = (enum lms_log_level)level;
		return 0;
	}
	case T_CPUS:
		if (lms_limits_parse_cpus(source, value, (uint64_t *)field, err) < 0)
			return -1;
		return 0;
	case T_U64: {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(value, &end, 10);
		if (errno || end == value || *end || value[0] == '-' || value[0] == '+')
			return lms_error_set(err, LMS_ERR_INVALID, 0, "%s: '%s' is not a non-negative integer", source,
					     value);
		if (v < s->min || v > s->max)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "%s: %llu is outside %llu..%llu", source, v,
					     (unsigned long long)s->min, (unsigned long long)s->max);
		*(uint64_t *)field = v;
		return 0;
	}
	}
	return lms_error_set(err, LMS_ERR_INTERNAL, 0, "setting %s has an unknown type", s->flag);
}

static const struct setting *
find_flag(const char *name, size_t len)
{
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (strlen(settings[i].flag) == len && strncmp(settings[i].flag, name, len) == 0)
			return &settings[i];
	return NULL;
}

static const struct setting *
find_env(const char *key)
{
	char name[64];
	for (size_t i = 0; i < N_SETTINGS; i++) {
		env_name(&settings[i], name, sizeof(name));
		if (strcmp(name, key) == 0)
			return &settings[i];
	}
	return NULL;
}

/* An environment-style entry: the settings' variables, and the token. */
static int
apply_env_entry(struct lms_config *cfg, const char *key, const char *value, const char *source, bool strict,
		struct lms_error **err)
{
	if (strcmp(key, "LM_SANDBOX_API_TOKEN") == 0) {
		free(cfg->token);
		cfg->token = xstrdup(value);
		return 0;
	}
	const struct setting *s = find_env(key);
	if (s != NULL) {
		_cleanup_free_ char *where = xasprintf("%s %s", source, key);
		return assign(cfg, s, value, where, err);
	}
	if (strict && strncmp(key, "LM_SANDBOX_", 11) == 0)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "%s: unknown setting %s (see lm-sandbox serve --help)",
				     source, key);
	return 0;
}

static char *
trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

int
lms_config_parse_env(struct lms_config *cfg, const char *text, size_t len, const char *name, struct lms_error **err)
{
	int lineno = 0;
	for (size_t pos = 0; pos < len;) {
		const char *start = text + pos, *nl = memchr(start, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - start) : len - pos;
		pos += n + (nl != NULL);
		lineno++;
		if (memchr(start, '\0', n) != NULL)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "%s:%d: a NUL byte in the line", name, lineno);
		_cleanup_free_ char *line = xstrndup(start, n);
		char *l = trim(line);
		if (*l == '\0' || *l == '#')
			continue;
		if (strncmp(l, "export ", 7) == 0)
			l = trim(l + 7);
		char *eq = strchr(l, '=');
		if (eq == NULL)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "%s:%d: not a KEY=VALUE line", name, lineno);
		*eq = '\0';
		char *key = trim(l), *value = trim(eq + 1);
		size_t vlen = strlen(value);
		if (vlen >= 2 && (value[0] == '"' || value[0] == '\'') && value[vlen - 1] == value[0]) {
			value[vlen - 1] = '\0';
			value++;
		}
		_cleanup_free_ char *source = xasprintf("%s:%d:", name, lineno);
		if (apply_env_entry(cfg, key, value, source, true, err) < 0)
			return -1;
	}
	return 0;
}

#define ENV_FILE_MAX (1 << 20)

/* A file that holds the token must be readable by its owner alone, as ssh wants of a private key: with
 * the usual umask a file is 0644, and the host image shows /etc to every sandbox (SECURITY.md). */
static int
check_private(int fd, const char *what, const char *path, struct lms_error **err)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return lms_error_set(err, LMS_ERR_INVALID, errno, "%s %s: fstat", what, path);
	if ((st.st_mode & 077) == 0)
		return 0;
	return lms_error_set(
	    err, LMS_ERR_INVALID, 0,
	    "%s %s holds the API token and is open to others than its owner (mode %04o): run chmod 600 "
	    "%s, and keep it out of /etc, which every sandbox sees (/var/lib/lm-sandbox, or a systemd "
	    "credential)",
	    what, path, (unsigned)(st.st_mode & 07777), path);
}

/* Reads a settings file of at most max bytes into *text; the descriptor stays open for check_private. */
static int
open_and_read(const char *what, const char *path, size_t max, char **text, size_t *len, struct lms_error **err)
{
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return lms_error_set(err, LMS_ERR_INVALID, errno, "%s %s", what, path);
	*text = lms_file_read_fd(fd, path, max, len, err);
	if (*text == NULL)
		return lms_error_prefix(err, "%s", what);
	return steal_fd(&fd);
}

static int
load_env_file(struct lms_config *cfg, const char *path, struct lms_error **err)
{
	size_t len = 0;
	_cleanup_free_ char *text = NULL;
	_cleanup_fd_ int fd = open_and_read("--env-file", path, ENV_FILE_MAX + 1, &text, &len, err);
	if (fd < 0)
		return -1;
	if (len > ENV_FILE_MAX)
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "--env-file %s: larger than %d bytes: is it the right file?", path, ENV_FILE_MAX);
	if (lms_config_parse_env(cfg, text, len, path, err) < 0)
		return -1;
	/* Settings may be world-readable; the token may not. The env file is read first: a token now is its. */
	return cfg->token ? check_private(fd, "--env-file", path, err) : 0;
}

static int
load_token_file(struct lms_config *cfg, struct lms_error **err)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	_cleanup_fd_ int fd = open_and_read("--token-file", cfg->token_file, 4096, &text, &len, err);
	if (fd < 0 || check_private(fd, "--token-file", cfg->token_file, err) < 0)
		return -1;
	char *t = trim(text);
	if (*t == '\0')
		return lms_error_set(err, LMS_ERR_INVALID, 0, "--token-file %s is empty", cfg->token_file);
	free(cfg->token);
	cfg->token = xstrdup(t);
	return 0;
}

/* Flags as (setting, value) pairs, so they can be applied after the env file they may name. */
struct flag_value {
	const struct setting *s;
	const char *value;
};

static int
parse_flags(int argc, char **argv, struct flag_value *out, size_t *n_out, struct lms_error **err)
{
	size_t n = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
			return 1;
		if (strncmp(a, "--", 2) != 0)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "unexpected argument '%s'", a);
		const char *name = a + 2, *eq = strchr(name, '=');
		const struct setting *s = find_flag(name, eq ? (size_t)(eq - name) : strlen(name));
		if (s == NULL)
			return lms_error_set(err, LMS_ERR_INVALID, 0,
					     "unknown option '%s' (see lm-sandbox serve --help)", a);
		const char *value = eq ? eq + 1 : NULL;
		if (value == NULL && s->type == T_BOOL)
			value = "true";
		else if (value == NULL && i + 1 < argc)
			value = argv[++i];
		else if (value == NULL)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "option --%s needs a value", s->flag);
		out[n++] = (struct flag_value){s, value};
	}
	*n_out = n;
	return 0;
}

int
lms_config_load(struct lms_config *cfg, int argc, char **argv, char **envp, struct lms_error **err)
{
	*cfg = (struct lms_config){0};
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (settings[i].def && assign(cfg, &settings[i], settings[i].def, "default", err) < 0)
			return -1;

	_cleanup_free_ struct flag_value *flags = xcalloc((size_t)argc + 1, sizeof(*flags));
	size_t n_flags = 0;
	int r = parse_flags(argc, argv, flags, &n_flags, err);
	if (r != 0)
		return r;

	/* The env file comes from a flag or the environment, and is read before either is applied. */
	const char *env_file = NULL;
	for (char **e = envp; e && *e; e++)
		if (strncmp(*e, "LM_SANDBOX_ENV_FILE=", 20) == 0)
			env_file = *e + 20;
	for (size_t i = 0; i < n_flags; i++)
		if (flags[i].s->offset == F(env_file))
			env_file = flags[i].value;
	if (env_file && load_env_file(cfg, env_file, err) < 0)
		return -1;

	for (char **e = envp; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		if (eq == NULL || strncmp(*e, "LM_SANDBOX_", 11) != 0)
			continue;
		_cleanup_free_ char *key = xstrndup(*e, (size_t)(eq - *e));
		if (apply_env_entry(cfg, key, eq + 1, "environment variable", true, err) < 0)
			return -1;
	}
	for (size_t i = 0; i < n_flags; i++) {
		if (flags[i].s->type == T_LIST)
			continue;
		_cleanup_free_ char *where = xasprintf("--%s", flags[i].s->flag);
		if (assign(cfg, flags[i].s, flags[i].value, where, err) < 0)
			return -1;
	}
	/* Repeated list flags join, and replace what the environment or the file said. */
	for (size_t k = 0; k < N_SETTINGS; k++) {
		if (settings[k].type != T_LIST)
			continue;
		struct lms_buf joined = {0};
		for (size_t i = 0; i < n_flags; i++)
			if (flags[i].s == &settings[k]) {
				if (joined.len > 0)
					lms_buf_append(&joined, ",", 1);
				lms_buf_append(&joined, flags[i].value, strlen(flags[i].value));
			}
		if (joined.data != NULL)
			assign(cfg, &settings[k], joined.data, "flag", NULL);
		lms_buf_clear(&joined);
	}
	if (cfg->token_file && load_token_file(cfg, err) < 0)
		return -1;
	if (cfg->network_dns && lms_net_check_dns(cfg->network_dns, err) < 0)
		return lms_error_prefix(err, "--network-dns");
	if (cfg->network_allow_private && lms_net_check_allow_private(cfg->network_allow_private, err) < 0)
		return lms_error_prefix(err, "--network-allow-private");
	if (cfg->network_allow && check_allowlist(cfg->network_allow, err) < 0)
		return lms_error_prefix(err, "--network-allow");
	if (cfg->defaults.timeout_ms > cfg->max_timeout_ms)
		cfg->defaults.timeout_ms = cfg->max_timeout_ms;
	return 0;
}

static int
check_allowlist(const char *list, struct lms_error **err)
{
	struct lms_allowlist *a = xcalloc(1, sizeof(*a));
	int r = lms_allowlist_add_list(a, list, err);
	free(a);
	return r;
}

void
lms_config_help(FILE *f)
{
	fputs("usage: lm-sandbox serve [OPTIONS]\n\n"
	      "Serves the HTTP API (API.md) with one-shot sandboxes. Every option can also be set as an\n"
	      "environment variable (shown) or in --env-file; precedence: option > variable > file > default.\n\n",
	      f);
	char name[64];
	for (size_t i = 0; i < N_SETTINGS; i++) {
		const struct setting *s = &settings[i];
		env_name(s, name, sizeof(name));
		fprintf(f, "  --%-18s %s\n  %-20s %s%s%s\n", s->flag, s->help, "", name, s->def ? "  default: " : "",
			s->def ? s->def : "");
	}
	fputs("\n  LM_SANDBOX_API_TOKEN  the API token itself (instead of --token-file)\n", f);
}

void
lms_config_free(struct lms_config *cfg)
{
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (settings[i].type == T_STRING || settings[i].type == T_LIST) {
			char **field = (char **)((char *)cfg + settings[i].offset);
			free(*field);
			*field = NULL;
		}
	if (cfg->token) {
		explicit_bzero(cfg->token, strlen(cfg->token));
		free(cfg->token);
		cfg->token = NULL;
	}
}
