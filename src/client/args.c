#include "client/args.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/gpu-json.h"
#include "client/http.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "sandbox/sandbox.h"

static const char usage_all[] =
    "usage: lm-sandbox sandbox [--url URL] [--token-file FILE] COMMAND ...\n"
    "\n"
    "Lasting sandboxes of a running lm-sandbox daemon (`lm-sandbox serve`), as `docker` handles containers.\n"
    "\n"
    "commands:\n"
    "  create [OPTIONS]                      make a sandbox; prints its id\n"
    "  ls [-q] [--filter label=K=V]          list them: ID, STATE, CREATED, EXPIRES, LABELS\n"
    "  exec [OPTIONS] ID [--] CMD [ARG...]   run a command in one, its output streamed as it comes\n"
    "  cp SRC DST                            copy files or directories in or out (ID:/path on one side)\n"
    "  rm ID...                              remove sandboxes: their processes killed, their files gone\n"
    "\n"
    "`lm-sandbox sandbox COMMAND --help` says more. Everywhere:\n"
    "  --url URL           the daemon (default: $LM_SANDBOX_URL, else http://127.0.0.1:8000)\n"
    "  --token-file FILE   its token, as the daemon's own --token-file (default: $LM_SANDBOX_API_TOKEN)\n"
    "\n"
    "exit status: 0, 1 when the daemon refused or could not be reached, 2 for a usage error; exec: the\n"
    "command's own (128+N for signal N), 124 on timeout, 125 when it could not be run.\n";

static const char usage_create[] =
    "usage: lm-sandbox sandbox create [OPTIONS]\n"
    "\n"
    "Makes a sandbox that keeps its files and background processes between commands, and prints its id.\n"
    "Limits bound all its processes together; above the daemon's own they are lowered to them.\n"
    "\n"
    "options:\n"
    "  --memory SIZE       memory, e.g. 512m, 2g (a bare number is MiB)\n"
    "  --pids N            processes and threads at once\n"
    "  --disk SIZE         writable space (/work, /tmp), e.g. 1g\n"
    "  --cpus N            CPU bandwidth in cores, e.g. 0.5 or 2\n"
    "  --ttl DURATION      removed after this long without a call, e.g. 600, 30m, 2h (default: the daemon's)\n"
    "  -e, --env K=V       a variable of every command (repeatable; `-e K` takes K from this environment)\n"
    "  -l, --label K=V     metadata, shown by ls and matched by ls --filter (repeatable)\n"
    "  --image NAME        root file system; default: host\n"
    "  --gpu [all|0,1]     pass NVIDIA GPUs through: all (default) or these indices\n";

static const char usage_ls[] =
    "usage: lm-sandbox sandbox ls [-q] [--filter label=K=V]...\n"
    "\n"
    "Lists the daemon's sandboxes: ID, STATE, CREATED (its age), EXPIRES (when it goes if left idle), LABELS.\n"
    "\n"
    "options:\n"
    "  -q, --quiet                ids only, one a line\n"
    "  -f, --filter label=K=V     only those with this label (repeatable: all must match)\n";

static const char usage_exec[] =
    "usage: lm-sandbox sandbox exec [OPTIONS] ID [--] CMD [ARG...]\n"
    "\n"
    "Runs CMD (no shell: `sh -c '...'` for one) in sandbox ID. Its output reaches this terminal's own stdout\n"
    "and stderr as it comes; standard input, when it is not a terminal, is the command's (UTF-8 text). A\n"
    "background process it starts keeps running in the sandbox. Ctrl-C ends the command.\n"
    "\n"
    "options:\n"
    "  -e, --env K=V          a variable (repeatable; `-e K` takes K from this environment)\n"
    "  -w, --workdir DIR      working directory inside (default: /work; created when missing)\n"
    "  --timeout DURATION     killed after this long, e.g. 30, 90s, 5m (default: the daemon's)\n"
    "  -n, --no-stdin         never send standard input (for a loop that reads its own)\n"
    "\n"
    "exit status: the command's (128+N for signal N), 124 timed out, 125 could not be run (the daemon\n"
    "is down, no such sandbox, refused), 126 not executable, 127 not found, 2 usage error.\n";

static const char usage_cp[] =
    "usage: lm-sandbox sandbox cp SRC DST\n"
    "\n"
    "Copies a file or a directory between this machine and a sandbox, as `docker cp` does. One side is\n"
    "ID:PATH (a relative PATH is under /work), the other a local path, or `-`: a tar stream on standard\n"
    "input (unpacked into the directory DST) or output (SRC packed).\n"
    "\n"
    "  a file to an existing directory lands in it under its own name; else it becomes DST\n"
    "  a directory to an existing directory lands in it under its own name (SRC/. : its content does);\n"
    "  else DST is made with SRC's content\n"
    "\n"
    "Modes and times travel; owners do not (what comes out is yours, what goes in the sandbox user's).\n";

static const char usage_rm[] =
    "usage: lm-sandbox sandbox rm ID...\n"
    "\n"
    "Removes each sandbox: every process killed, every file gone. Prints the ids removed; goes on past one\n"
    "that fails and then exits 1.\n";

static const char usage_mcp[] =
    "usage: lm-sandbox mcp [--url URL] [--token-file FILE]\n"
    "\n"
    "An MCP server on standard input and output (one JSON-RPC message a line), for MCP hosts that start\n"
    "their servers themselves: llama-server's --mcp-servers-config, desktop assistants, IDEs. Each message\n"
    "goes to the running daemon's POST /mcp (start it with `lm-sandbox serve`), so the tools are the\n"
    "daemon's: sandbox_create, bash, read_file, write_file, edit_file, list_files, sandbox_delete.\n"
    "Nothing but messages is written to standard output; errors go to standard error. It ends when its\n"
    "standard input does (after answering what was sent).\n"
    "\n"
    "  --url URL           the daemon (default: $LM_SANDBOX_URL, else http://127.0.0.1:8000)\n"
    "  --token-file FILE   its token, as the daemon's own --token-file (default: $LM_SANDBOX_API_TOKEN)\n";

static const char usage_chat[] =
    "usage: lm-sandbox chat [--model M] [--url URL] [--token-file FILE] [--sandbox ID] [--image NAME]\n"
    "                       [--network] [--yes]\n"
    "\n"
    "A local model that uses a sandbox, in this terminal, through a running daemon's POST /v1/agent: type a\n"
    "task; the model's words stream as it writes them, each command it wants is shown and asked about\n"
    "(y: run it, n: tell the model no, a: run this and every later one) unless --yes, and its output streams\n"
    "under it. Ctrl-C stops the running command and gives the prompt back; Ctrl-C at the prompt, or Ctrl-D,\n"
    "leaves. The sandbox is kept and named at the end (`lm-sandbox sandbox exec ID -- ...` looks inside).\n"
    "A task piped in (`echo \"task\" | lm-sandbox chat --yes`) is one turn: all of standard input.\n"
    "\n"
    "  --model M           the model (default: $LM_SANDBOX_MODEL, else the first of GET /v1/models)\n"
    "  --sandbox ID        work in this sandbox (default: a new one)\n"
    "  --image NAME        the new sandbox's root file system; default: host\n"
    "  --network           give the new sandbox network access (when the daemon allows it)\n"
    "  -y, --yes           run the model's commands without asking\n"
    "  --url URL           the daemon (default: $LM_SANDBOX_URL, else http://127.0.0.1:8000)\n"
    "  --token-file FILE   its token, as the daemon's own --token-file (default: $LM_SANDBOX_API_TOKEN)\n";

const char *
lms_client_usage(enum lms_client_cmd cmd)
{
	switch (cmd) {
	case LMS_CLIENT_CREATE:
		return usage_create;
	case LMS_CLIENT_LS:
		return usage_ls;
	case LMS_CLIENT_EXEC:
		return usage_exec;
	case LMS_CLIENT_CP:
		return usage_cp;
	case LMS_CLIENT_RM:
		return usage_rm;
	case LMS_CLIENT_MCP:
		return usage_mcp;
	case LMS_CLIENT_CHAT:
		return usage_chat;
	case LMS_CLIENT_HELP:
		break;
	}
	return usage_all;
}

/* ---- values ---- */

int
lms_client_parse_mib(const char *flag, const char *text, uint64_t *mib, struct lms_error **err)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(text, &end, 10);
	if (errno != 0 || end == text || !isdigit((unsigned char)text[0]))
		goto bad;
	static const struct {
		const char *suffix;
		unsigned shift; /* of bytes */
	} units[] = {
	    {"", 20},	 {"b", 0},  {"k", 10},	{"kb", 10},  {"kib", 10}, {"m", 20},  {"mb", 20},
	    {"mib", 20}, {"g", 30}, {"gb", 30}, {"gib", 30}, {"t", 40},	  {"tb", 40}, {"tib", 40},
	};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(end, units[i].suffix) != 0)
			continue;
		unsigned shift = units[i].shift;
		if (shift >= 20) {
			if (n > (UINT64_MAX >> (shift - 20)))
				goto bad;
			*mib = (uint64_t)n << (shift - 20);
		} else {
			*mib = ((uint64_t)n + ((1ull << (20 - shift)) - 1)) >> (20 - shift);
		}
		return 0;
	}
bad:
	return lms_error_set(err, LMS_ERR_INVALID, 0,
			     "%s needs a size such as 512m or 2g (a bare number is MiB), not '%s'", flag, text);
}

int
lms_client_parse_duration_ms(const char *flag, const char *text, uint64_t *ms, struct lms_error **err)
{
	const char *p = text;
	double total = 0;
	bool first = true;
	if (*p == '\0')
		goto bad;
	while (*p != '\0') {
		if (!isdigit((unsigned char)*p) && *p != '.')
			goto bad;
		char *end;
		errno = 0;
		double v = strtod(p, &end);
		if (errno != 0 || end == p || !isfinite(v) || v < 0)
			goto bad;
		p = end;
		double unit;
		if (strncmp(p, "ms", 2) == 0)
			unit = 1, p += 2;
		else if (*p == 's')
			unit = 1000, p++;
		else if (*p == 'm')
			unit = 60e3, p++;
		else if (*p == 'h')
			unit = 3600e3, p++;
		else if (*p == 'd')
			unit = 86400e3, p++;
		else if (*p == '\0' && first)
			unit = 1000; /* a bare number: seconds */
		else
			goto bad;
		total += v * unit;
		first = false;
	}
	if (total > 1e15)
		goto bad;
	*ms = (uint64_t)ceil(total);
	return 0;
bad:
	return lms_error_set(err, LMS_ERR_INVALID, 0,
			     "%s needs a duration such as 30 (seconds), 500ms, 90s, 10m, 2h or 1h30m, not '%s'", flag,
			     text);
}

/* ---- options ---- */

enum {
	OPT_URL = 256,
	OPT_TOKEN_FILE,
	OPT_MEMORY,
	OPT_PIDS,
	OPT_DISK,
	OPT_CPUS,
	OPT_TTL,
	OPT_IMAGE,
	OPT_GPU,
	OPT_TIMEOUT,
	OPT_MODEL,
	OPT_SANDBOX,
	OPT_NETWORK,
};

#define GLOBAL_OPTIONS                                                                                                 \
	{"url", required_argument, NULL, OPT_URL}, {"token-file", required_argument, NULL, OPT_TOKEN_FILE},            \
	{                                                                                                              \
		"help", no_argument, NULL, 'h'                                                                         \
	}

static const struct option global_options[] = {GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};
static const struct option create_options[] = {
    GLOBAL_OPTIONS,
    {"memory", required_argument, NULL, OPT_MEMORY},
    {"pids", required_argument, NULL, OPT_PIDS},
    {"disk", required_argument, NULL, OPT_DISK},
    {"cpus", required_argument, NULL, OPT_CPUS},
    {"ttl", required_argument, NULL, OPT_TTL},
    {"env", required_argument, NULL, 'e'},
    {"label", required_argument, NULL, 'l'},
    {"image", required_argument, NULL, OPT_IMAGE},
    {"gpu", optional_argument, NULL, OPT_GPU},
    {NULL, 0, NULL, 0},
};
static const struct option ls_options[] = {
    GLOBAL_OPTIONS,
    {"quiet", no_argument, NULL, 'q'},
    {"filter", required_argument, NULL, 'f'},
    {NULL, 0, NULL, 0},
};
static const struct option exec_options[] = {
    GLOBAL_OPTIONS,
    {"env", required_argument, NULL, 'e'},
    {"workdir", required_argument, NULL, 'w'},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"no-stdin", no_argument, NULL, 'n'},
    {NULL, 0, NULL, 0},
};

static const struct option chat_options[] = {
    GLOBAL_OPTIONS,
    {"model", required_argument, NULL, OPT_MODEL},
    {"sandbox", required_argument, NULL, OPT_SANDBOX},
    {"image", required_argument, NULL, OPT_IMAGE},
    {"network", no_argument, NULL, OPT_NETWORK},
    {"yes", no_argument, NULL, 'y'},
    {NULL, 0, NULL, 0},
};

static const struct {
	const char *name;
	enum lms_client_cmd cmd;
	const char *shortopts; /* "+": options stop at the first operand (exec: the rest is the command) */
	const struct option *options;
} commands[] = {
    {"create", LMS_CLIENT_CREATE, "he:l:", create_options},
    {"ls", LMS_CLIENT_LS, "hqf:", ls_options},
    {"list", LMS_CLIENT_LS, "hqf:", ls_options},
    {"exec", LMS_CLIENT_EXEC, "+he:w:n", exec_options},
    {"cp", LMS_CLIENT_CP, "h", global_options},
    {"rm", LMS_CLIENT_RM, "h", global_options},
    {"mcp", LMS_CLIENT_MCP, "h", global_options},
    {"chat", LMS_CLIENT_CHAT, "hy", chat_options},
};

__attribute__((format(printf, 3, 4))) static int
usage_error(struct lms_error **err, enum lms_client_cmd cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *what = xvasprintf(fmt, ap);
	va_end(ap);
	const char *name = "";
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].cmd == cmd) {
			name = commands[i].name;
			break;
		}
	return lms_error_set(err, LMS_ERR_INVALID, 0, "%s (lm-sandbox %s%s%s--help)", what,
			     cmd == LMS_CLIENT_MCP || cmd == LMS_CLIENT_CHAT ? "" : "sandbox ", name,
			     name[0] ? " " : "");
}

/* K=V into obj; `-e K` alone (env_fallback) takes K's value from this process's environment, or nothing. */
static int
add_pair(json_t *obj, const char *flag, const char *text, bool env_fallback, struct lms_error **err)
{
	const char *eq = strchr(text, '=');
	if (eq == NULL && env_fallback && text[0] != '\0') {
		const char *v = getenv(text);
		if (v != NULL)
			json_object_set_new(obj, text, json_string(v));
		return 0;
	}
	if (eq == NULL || eq == text)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "%s needs KEY=VALUE, not '%s'", flag, text);
	_cleanup_free_ char *key = xstrndup(text, (size_t)(eq - text));
	json_t *value = json_string(eq + 1);
	if (value == NULL)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "%s %s: the value is not UTF-8 text", flag, key);
	if (json_object_set_new(obj, key, value) < 0)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "%s: '%s' is not UTF-8 text", flag, key);
	return 0;
}

static json_t *
object_at(json_t *body, const char *key)
{
	json_t *o = json_object_get(body, key);
	if (o == NULL) {
		o = json_object();
		json_object_set_new(body, key, o);
	}
	return o;
}

static int
add_filter(struct lms_buf *query, const char *text, struct lms_error **err)
{
	const char *kv = strncmp(text, "label=", 6) == 0 ? text + 6 : NULL;
	const char *eq = kv ? strchr(kv, '=') : NULL;
	if (eq == NULL || eq == kv)
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "--filter takes label=KEY=VALUE (metadata given with create --label), not '%s'",
				     text);
	_cleanup_free_ char *key = xstrndup(kv, (size_t)(eq - kv));
	_cleanup_free_ char *k = lms_client_escape(key, false);
	_cleanup_free_ char *v = lms_client_escape(eq + 1, false);
	_cleanup_free_ char *part = xasprintf("%smetadata.%s=%s", query->len ? "&" : "?", k, v);
	lms_buf_append(query, part, strlen(part));
	return 0;
}

/* One option of a command. 0, or -1 with *err. */
static int
option(struct lms_client_args *a, int c, const char *arg, struct lms_buf *query, struct lms_error **err)
{
	uint64_t n;
	switch (c) {
	case OPT_URL:
		a->url = arg;
		return 0;
	case OPT_TOKEN_FILE:
		a->token_file = arg;
		return 0;
	case 'h':
		a->help = true;
		return 0;
	case OPT_MEMORY:
	case OPT_DISK:
		if (lms_client_parse_mib(c == OPT_MEMORY ? "--memory" : "--disk", arg, &n, err) < 0)
			return -1;
		json_object_set_new(object_at(a->body, "limits"), c == OPT_MEMORY ? "memory_mb" : "disk_mb",
				    json_integer((json_int_t)n));
		return 0;
	case OPT_PIDS: {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(arg, &end, 10);
		if (errno != 0 || end == arg || *end != '\0' || !isdigit((unsigned char)arg[0]) || v > INT64_MAX)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "--pids needs a whole number, not '%s'", arg);
		json_object_set_new(object_at(a->body, "limits"), "pids", json_integer((json_int_t)v));
		return 0;
	}
	case OPT_CPUS: {
		uint64_t milli;
		if (lms_limits_parse_cpus("--cpus", arg, &milli, err) < 0)
			return -1;
		json_object_set_new(object_at(a->body, "limits"), "cpus", json_real((double)milli / 1000.0));
		return 0;
	}
	case OPT_TTL:
		if (lms_client_parse_duration_ms("--ttl", arg, &n, err) < 0)
			return -1;
		json_object_set_new(a->body, "ttl_s", json_integer((json_int_t)((n + 999) / 1000)));
		return 0;
	case OPT_TIMEOUT:
		if (lms_client_parse_duration_ms("--timeout", arg, &n, err) < 0)
			return -1;
		if (n == 0)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "--timeout must be more than 0");
		json_object_set_new(a->body, "timeout_ms", json_integer((json_int_t)n));
		return 0;
	case OPT_IMAGE:
		json_object_set_new(a->body, "image", json_string(arg));
		return 0;
	case OPT_GPU: {
		uint64_t gpus;
		if (lms_gpu_selection_parse_text(arg, &gpus, err) < 0)
			return -1;
		json_object_set_new(a->body, "gpu", lms_gpu_selection_json(gpus));
		return 0;
	}
	case 'e':
		return add_pair(object_at(a->body, "env"), "--env", arg, true, err);
	case 'l':
		return add_pair(object_at(a->body, "metadata"), "--label", arg, false, err);
	case 'q':
		a->quiet = true;
		return 0;
	case 'f':
		return add_filter(query, arg, err);
	case 'w':
		if (arg[0] == '\0')
			return lms_error_set(err, LMS_ERR_INVALID, 0, "--workdir needs a directory");
		json_object_set_new(a->body, "cwd", json_string(arg));
		return 0;
	case 'n':
		a->no_stdin = true;
		return 0;
	case OPT_MODEL:
		if (arg[0] == '\0')
			return lms_error_set(err, LMS_ERR_INVALID, 0, "--model needs a model's name (GET /v1/models)");
		json_object_set_new(a->body, "model", json_string(arg));
		return 0;
	case OPT_SANDBOX:
		a->id = arg;
		return 0;
	case OPT_NETWORK:
		json_object_set_new(a->body, "network", json_true());
		return 0;
	case 'y':
		a->yes = true;
		return 0;
	default:
		return lms_error_set(err, LMS_ERR_INVALID, 0, "unknown option");
	}
}

/* getopt's own message says which option was wrong; ours adds where to read about it. */
static int
run_getopt(struct lms_client_args *a, int argc, char **argv, const char *shortopts, const struct option *options,
	   struct lms_buf *query, struct lms_error **err)
{
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, shortopts, options, NULL)) != -1) {
		if (c == '?' || c == ':') {
			const char *bad = argv[optind - 1];
			if (optopt != 0 && optopt < 256) {
				char one[3] = {'-', (char)optopt, '\0'};
				bool known = c == ':' || strchr(shortopts, optopt) != NULL;
				return usage_error(err, a->cmd, known ? "option %s needs a value" : "unknown option %s",
						   one);
			}
			/* A long option: getopt does not say whether it was unknown or lacked its value. */
			bool known = false;
			for (const struct option *o = options; o->name != NULL && bad != NULL; o++)
				if (strncmp(bad, "--", 2) == 0 && strncmp(bad + 2, o->name, strlen(o->name)) == 0)
					known = true;
			return usage_error(err, a->cmd, known ? "option %s needs a value" : "unknown option %s", bad);
		}
		const char *arg = optarg;
		/* --gpu's value is optional: getopt takes it only after '=', so a following word that reads
		 * as a selection (all, 0,1) is taken here. */
		if (c == OPT_GPU && arg == NULL && optind < argc && lms_gpu_selection_text_like(argv[optind]))
			arg = argv[optind++];
		if (option(a, c, arg, query, err) < 0)
			return -1;
	}
	return 0;
}

void
lms_client_args_free(struct lms_client_args *a)
{
	json_decref(a->body);
	free(a->query);
	memset(a, 0, sizeof(*a));
}

static int
operands(struct lms_client_args *a, int argc, char **argv, struct lms_error **err)
{
	a->operands = argv + optind;
	a->n_operands = (size_t)(argc - optind);
	switch (a->cmd) {
	case LMS_CLIENT_CREATE:
	case LMS_CLIENT_LS:
	case LMS_CLIENT_MCP:
	case LMS_CLIENT_CHAT:
		if (a->n_operands > 0)
			return usage_error(err, a->cmd, "unexpected argument '%s'", a->operands[0]);
		return 0;
	case LMS_CLIENT_RM:
		if (a->n_operands == 0)
			return usage_error(err, a->cmd, "no sandbox id given");
		return 0;
	case LMS_CLIENT_CP:
		if (a->n_operands != 2)
			return usage_error(err, a->cmd, "cp takes SRC and DST, one of them ID:PATH");
		return 0;
	case LMS_CLIENT_EXEC: {
		if (a->n_operands == 0)
			return usage_error(err, a->cmd, "no sandbox id given");
		a->id = a->operands[0];
		size_t first = 1;
		if (first < a->n_operands && strcmp(a->operands[first], "--") == 0)
			first++;
		if (first >= a->n_operands)
			return usage_error(err, a->cmd, "no command given: lm-sandbox sandbox exec %s -- CMD [ARG...]",
					   a->id);
		json_t *cmd = json_array();
		for (size_t i = first; i < a->n_operands; i++) {
			json_t *s = json_string(a->operands[i]);
			if (s == NULL) {
				json_decref(cmd);
				return lms_error_set(err, LMS_ERR_INVALID, 0,
						     "argument %zu of the command is not UTF-8", i - first + 1);
			}
			json_array_append_new(cmd, s);
		}
		json_object_set_new(a->body, "argv", cmd);
		/* Output comes back as base64: bytes that are not UTF-8 pass unchanged. */
		json_object_set_new(a->body, "stream", json_true());
		json_object_set_new(a->body, "encoding", json_string("base64"));
		return 0;
	}
	case LMS_CLIENT_HELP:
		break;
	}
	return 0;
}

int
lms_client_parse(int argc, char **argv, struct lms_client_args *a, struct lms_error **err)
{
	memset(a, 0, sizeof(*a));
	a->body = json_object();
	struct lms_buf query = {0};
	optind = 0; /* a full reset of getopt, for the next parse in the same process (the tests) */
	int r = run_getopt(a, argc, argv, "+h", global_options, &query, err);
	if (r < 0 || a->help || optind >= argc) {
		lms_buf_clear(&query);
		a->cmd = LMS_CLIENT_HELP;
		return r;
	}
	const char *name = argv[optind];
	if (strcmp(name, "help") == 0) {
		a->cmd = LMS_CLIENT_HELP;
		return 0;
	}
	size_t i = 0;
	while (i < sizeof(commands) / sizeof(commands[0]) && strcmp(commands[i].name, name) != 0)
		i++;
	if (i == sizeof(commands) / sizeof(commands[0]))
		return usage_error(err, LMS_CLIENT_HELP, "unknown command '%s'", name);
	a->cmd = commands[i].cmd;
	/* The command's options, its name as argv[0]. */
	int sub_argc = argc - optind;
	char **sub_argv = argv + optind;
	optind = 0;
	r = run_getopt(a, sub_argc, sub_argv, commands[i].shortopts, commands[i].options, &query, err);
	if (r == 0 && !a->help)
		r = operands(a, sub_argc, sub_argv, err);
	lms_buf_append(&query, "", 0);
	a->query = lms_buf_steal(&query, NULL);
	return r;
}
