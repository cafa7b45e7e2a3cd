/*
 * `lm-sandbox run [OPTIONS] -- PROGRAM [ARG...]`: one command in a fresh one-shot sandbox.
 * Exit status: the command's (128+N for signal N); 124 on timeout; 125 when the sandbox could not be
 * set up; 126/127 not executable / not found; 2 for a usage error. With --json: 0 and the result.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "api/exec-json.h"
#include "api/gpu-json.h"
#include "cli/commands.h"
#include "core/alloc.h"
#include "net/forbidden.h"
#include "core/buf.h"
#include "core/fdio.h"
#include "core/stringify.h"
#include "sandbox/sandbox.h"
#include "image/store.h"

#define EXIT_USAGE 2
#define EXIT_TIMEOUT 124
#define EXIT_SETUP 125
#define MAX_STDIN (256u << 20)

/* The defaults are the sandbox's own (sandbox.h), written once. */
#define S(number) LMS_STRINGIFY(number)

static const char help_text[] =
    "usage: lm-sandbox run [OPTIONS] -- PROGRAM [ARG...]\n"
    "\n"
    "Runs PROGRAM in a fresh one-shot sandbox: new user (uid 0 inside, never root outside), PID, mount,\n"
    "network (loopback only), IPC, UTS and cgroup namespaces; the host's /usr, /bin, /lib*, /sbin and /etc\n"
    "read-only; a private writable " LMS_DEFAULT_CWD " (the default directory) and /tmp; seccomp; cgroup limits.\n"
    "\n"
    "options:\n"
    "  --image NAME         the root file system: host (the default) or an imported image\n"
    "  --state-dir DIR      where imported images are (default: " LMS_STATE_DIR_DEFAULT ")\n"
    "  --timeout-ms N       wall-clock limit; the whole tree is killed (default: " S(
	LMS_DEFAULT_TIMEOUT_MS) ")\n"
				"  --memory-mb N        memory of all processes together (default: " S(
				    LMS_DEFAULT_MEMORY_MB) ")\n"
							   "  --pids N             processes and threads at once "
							   "(default: " S(
							       LMS_DEFAULT_PIDS) ")\n"
										 "  --cpu-ms N           CPU time of "
										 "all processes together (default: "
										 "none)\n"
										 "  --cpus N             CPU bandwidth "
										 "in cores, e.g. 0.5 or 2 (default: "
										 "none)\n"
										 "  --output-bytes N     per stream; "
										 "the rest is discarded (default: " S(
										     LMS_DEFAULT_OUTPUT_BYTES) ")\n"
													       "  "
													       "--disk-"
													       "mb N   "
													       "       "
													       "writabl"
													       "e "
													       "space "
													       "of "
													       "/work, "
													       ""
													       "/tmp "
													       "and "
													       "/dev/"
													       "shm "
													       "togethe"
													       "r "
													       "(defaul"
													       "t: " S(
														   LMS_DEFAULT_DISK_MB) ")\n"
																	"  --network            reach the internet through pasta; never the host, other sandboxes,\n"
																	"                       link-local or private addresses (docs/SECURITY.md \"Network\")\n"
																	"  --network-dns ADDR   the resolver the sandbox's DNS goes to (default: the host's)\n"
																	"  --network-allow-private CIDR  a private range the sandbox may reach (repeatable)\n"
																	"  --gpu [all|0,1]      pass NVIDIA GPUs through: all (default) or these indices (device nodes;\n"
																	"                       driver from the host); `lm-sandbox version` lists them\n"
																	"  --env NAME=VALUE     add a variable (repeatable); the caller's environment is never passed\n"
																	"  --cwd DIR            working directory inside (default: " LMS_DEFAULT_CWD
																	"; created if missing)\n"
																	"  -i, --stdin          feed this command's standard input to PROGRAM (default: empty)\n"
																	"  --json               capture the output and print the result as one JSON object\n"
																	"  -h, --help           show this help\n"
																	"\n"
																	"exit status: PROGRAM's (128+N if signal N ended it), 124 timeout, 125 sandbox setup failed,\n"
																	"126 not executable, 127 not found, 2 usage error; with --json, 0 once the sandbox ran.\n";

enum {
	OPT_IMAGE = 256,
	OPT_TIMEOUT,
	OPT_MEMORY,
	OPT_PIDS,
	OPT_CPU,
	OPT_CPUS,
	OPT_OUTPUT,
	OPT_DISK,
	OPT_NETWORK,
	OPT_NETWORK_DNS,
	OPT_NETWORK_ALLOW_PRIVATE,
	OPT_GPU,
	OPT_ENV,
	OPT_CWD,
	OPT_JSON,
	OPT_STATE_DIR,
};

static const struct option options[] = {
    {"image", required_argument, NULL, OPT_IMAGE},
    {"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
    {"memory-mb", required_argument, NULL, OPT_MEMORY},
    {"pids", required_argument, NULL, OPT_PIDS},
    {"cpu-ms", required_argument, NULL, OPT_CPU},
    {"cpus", required_argument, NULL, OPT_CPUS},
    {"output-bytes", required_argument, NULL, OPT_OUTPUT},
    {"disk-mb", required_argument, NULL, OPT_DISK},
    {"network", no_argument, NULL, OPT_NETWORK},
    {"network-dns", required_argument, NULL, OPT_NETWORK_DNS},
    {"network-allow-private", required_argument, NULL, OPT_NETWORK_ALLOW_PRIVATE},
    {"gpu", optional_argument, NULL, OPT_GPU},
    {"env", required_argument, NULL, OPT_ENV},
    {"cwd", required_argument, NULL, OPT_CWD},
    {"stdin", no_argument, NULL, 'i'},
    {"json", no_argument, NULL, OPT_JSON},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int
check_network_setting(const char *flag, const char *value, int (*check)(const char *, struct lms_error **))
{
	_cleanup_error_ struct lms_error *err = NULL;
	if (check(value, &err) == 0)
		return 0;
	fprintf(stderr, "lm-sandbox run: %s: %s\n", flag, err->message);
	return -1;
}

static int
parse_cpus(const char *text, uint64_t *millicpus)
{
	_cleanup_error_ struct lms_error *err = NULL;
	if (lms_limits_parse_cpus("--cpus", text, millicpus, &err) == 0)
		return 0;
	fprintf(stderr, "lm-sandbox run: %s\n", err->message);
	return -1;
}

struct capture {
	bool json;
	struct lms_buf out, err;
};

static int
parse_u64(const char *flag, const char *text, uint64_t *value)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || text[0] == '+') {
		fprintf(stderr, "lm-sandbox run: --%s needs a non-negative integer, not '%s'\n", flag, text);
		return -1;
	}
	*value = v;
	return 0;
}

static void
on_output(void *userdata, enum lms_stream stream, const char *data, size_t len)
{
	struct capture *c = userdata;
	if (c->json)
		lms_buf_append(stream == LMS_STREAM_STDOUT ? &c->out : &c->err, data, len);
	else
		/* A reader that went away is no reason to stop: the sandbox is drained regardless. */
		(void)lms_fd_write_all(stream == LMS_STREAM_STDOUT ? STDOUT_FILENO : STDERR_FILENO, data, len);
}

static int
read_stdin(struct lms_buf *in)
{
	_cleanup_error_ struct lms_error *err = NULL;
	if (lms_fd_read_to_end(STDIN_FILENO, MAX_STDIN, in, "standard input", &err) < 0) {
		fprintf(stderr, "lm-sandbox run: %s\n", err->message);
		return -1;
	}
	if (in->data == NULL)
		lms_buf_append(in, "", 0);
	return 0;
}

/* --gpu, --gpu=0,1 or --gpu 0,1: a following word that reads as a selection is its value (getopt
 * gives an optional value only with '='). */
static int
parse_gpu(int argc, char **argv, struct lms_sandbox_spec *spec)
{
	const char *text = optarg;
	if (text == NULL && optind < argc && lms_gpu_selection_text_like(argv[optind]))
		text = argv[optind++];
	_cleanup_error_ struct lms_error *err = NULL;
	if (lms_gpu_selection_parse_text(text, &spec->gpus, &err) == 0)
		return 0;
	fprintf(stderr, "lm-sandbox run: %s\n", err->message);
	return -1;
}

/* Fills spec from the flags. Returns 0, or the exit status for --help (0) and usage errors (2) + 1000. */
static int
parse_args(int argc, char **argv, struct lms_sandbox_spec *spec, char ***env, bool *json, bool *feed_stdin,
	   const char **state_dir)
{
	size_t n_env = 0;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+ih", options, NULL)) != -1) {
		int r = 0;
		switch (c) {
		case OPT_IMAGE:
			spec->image = optarg;
			break;
		case OPT_TIMEOUT:
			r = parse_u64("timeout-ms", optarg, &spec->limits.timeout_ms);
			break;
		case OPT_MEMORY:
			r = parse_u64("memory-mb", optarg, &spec->limits.memory_mb);
			break;
		case OPT_PIDS:
			r = parse_u64("pids", optarg, &spec->limits.pids);
			break;
		case OPT_CPU:
			r = parse_u64("cpu-ms", optarg, &spec->limits.cpu_ms);
			break;
		case OPT_CPUS:
			r = parse_cpus(optarg, &spec->limits.millicpus);
			break;
		case OPT_OUTPUT:
			r = parse_u64("output-bytes", optarg, &spec->limits.output_bytes);
			break;
		case OPT_DISK:
			r = parse_u64("disk-mb", optarg, &spec->limits.disk_mb);
			break;
		case OPT_NETWORK:
			spec->network = true;
			break;
		case OPT_NETWORK_DNS:
			spec->net_dns = optarg;
			r = check_network_setting("--network-dns", optarg, lms_net_check_dns);
			break;
		case OPT_NETWORK_ALLOW_PRIVATE: {
			/* Repeated flags join with ',' (the daemon's list settings do the same). */
			char *joined = spec->net_allow_private ? xasprintf("%s,%s", spec->net_allow_private, optarg)
							       : xstrdup(optarg);
			free((char *)spec->net_allow_private);
			spec->net_allow_private = joined;
			r = check_network_setting("--network-allow-private", optarg, lms_net_check_allow_private);
			break;
		}
		case OPT_GPU:
			r = parse_gpu(argc, argv, spec);
			break;
		case OPT_ENV:
			*env = xrealloc(*env, (n_env + 2) * sizeof(char *));
			(*env)[n_env++] = xstrdup(optarg);
			(*env)[n_env] = NULL;
			break;
		case OPT_CWD:
			spec->cwd = optarg;
			break;
		case 'i':
			*feed_stdin = true;
			break;
		case OPT_JSON:
			*json = true;
			break;
		case OPT_STATE_DIR:
			*state_dir = optarg;
			break;
		case 'h':
			fputs(help_text, stdout);
			return 1000;
		default:
			r = -1;
			break;
		}
		if (r < 0)
			return 1000 + EXIT_USAGE;
	}
	if (optind >= argc) {
		fputs("lm-sandbox run: no program given: lm-sandbox run [OPTIONS] -- PROGRAM [ARG...]\n", stderr);
		return 1000 + EXIT_USAGE;
	}
	spec->argv = argv + optind;
	spec->env = *env;
	return 0;
}

static int
report_error(const struct lms_error *e, bool json)
{
	fprintf(stderr, "lm-sandbox: %s\n", e->message);
	if (e->kind == LMS_ERR_INVALID)
		return EXIT_USAGE;
	if (json) {
		json_t *obj = lms_error_json(e);
		json_dumpf(obj, stdout, LMS_JSON_FLAGS);
		fputc('\n', stdout);
		json_decref(obj);
	}
	return EXIT_SETUP;
}

/* SIGINT, SIGTERM and SIGHUP become readable on a signalfd that the engine watches as its cancel_fd:
 * the sandbox is killed and cleaned up, then we exit as the signal would have ended us. */
static int
cancel_on_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, set, NULL) < 0)
		return -1;
	return signalfd(-1, set, SFD_CLOEXEC | SFD_NONBLOCK);
}

static int
received_signal(int fd)
{
	struct signalfd_siginfo si;
	return read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si) ? (int)si.ssi_signo : 0;
}

int
lms_cmd_run(int argc, char **argv)
{
	struct lms_sandbox_spec spec;
	_cleanup_strv_ char **env = NULL;
	bool json = false, feed_stdin = false;
	lms_sandbox_spec_init(&spec);
	const char *state_dir = LMS_STATE_DIR_DEFAULT;
	int r = parse_args(argc, argv, &spec, &env, &json, &feed_stdin, &state_dir);
	if (r != 0)
		return r - 1000;
	/* An imported image: its layers, its Env under --env's, its WorkingDir unless --cwd. */
	_cleanup_image_ struct lms_image *img = NULL;
	_cleanup_strv_ char **image_env = NULL;
	if (!lms_image_is_host(spec.image)) {
		_cleanup_error_ struct lms_error *ierr = NULL;
		if (lms_image_load(state_dir, spec.image, &img, &ierr) < 0)
			return report_error(ierr, json);
		spec.layers = img->paths;
		spec.env = image_env = lms_image_env(img, env);
		if (spec.cwd == NULL)
			spec.cwd = img->working_dir;
	}

	struct lms_buf in = {0};
	if (feed_stdin) {
		if (read_stdin(&in) < 0)
			return EXIT_USAGE;
		spec.stdin_data = in.data;
		spec.stdin_len = in.len;
	}
	/* A reader of our output that goes away must not kill us before the sandbox is cleaned up. */
	signal(SIGPIPE, SIG_IGN);

	sigset_t cancel_set;
	int sigfd = cancel_on_signals(&cancel_set);
	if (sigfd < 0) {
		fprintf(stderr, "lm-sandbox run: signalfd: %s\n", strerror(errno));
		return EXIT_SETUP;
	}
	spec.cancel_fd = sigfd;

	struct capture cap = {.json = json};
	struct lms_sandbox_result res;
	_cleanup_error_ struct lms_error *err = NULL;
	/* The CLI writes to its own stdout and stderr and may block on them: that reader is the user's. */
	struct lms_output out = {.fn = on_output, .userdata = &cap, .drain_fd = -1};
	r = lms_sandbox_run(&spec, &out, &res, &err);
	lms_buf_clear(&in);
	free((char *)spec.net_allow_private);
	int sig = res.cancelled ? received_signal(sigfd) : 0;
	close(sigfd);
	if (sig > 0) {
		lms_buf_clear(&cap.out);
		lms_buf_clear(&cap.err);
		signal(sig, SIG_DFL);
		sigprocmask(SIG_UNBLOCK, &cancel_set, NULL);
		raise(sig);
		return 128 + sig;
	}
	if (r < 0) {
		lms_buf_clear(&cap.out);
		lms_buf_clear(&cap.err);
		return report_error(err, json);
	}
	if (json) {
		json_t *obj =
		    lms_exec_result_json(&res, cap.out.data, cap.out.len, cap.err.data, cap.err.len, LMS_ENCODING_UTF8);
		lms_buf_clear(&cap.out);
		lms_buf_clear(&cap.err);
		int dumped = json_dumpf(obj, stdout, LMS_JSON_FLAGS);
		json_decref(obj);
		fputc('\n', stdout);
		return dumped == 0 && fflush(stdout) == 0 ? 0 : EXIT_SETUP;
	}
	if (res.timed_out) {
		fprintf(stderr, "lm-sandbox: timed out after %llu ms\n", (unsigned long long)spec.limits.timeout_ms);
		return EXIT_TIMEOUT;
	}
	if (res.oom_killed)
		fprintf(stderr, "lm-sandbox: out of memory (limit %llu MiB)\n",
			(unsigned long long)spec.limits.memory_mb);
	if (res.cpu_exceeded)
		fprintf(stderr, "lm-sandbox: CPU time limit of %llu ms exceeded\n",
			(unsigned long long)spec.limits.cpu_ms);
	return res.exit_code;
}
