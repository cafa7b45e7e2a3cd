/* `lm-sandbox COMMAND ...`: dispatch to the subcommands. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/self.h"
#include "sandbox/gpu.h"
#include "sandbox/spawner.h"
#include "config.h"

static void
usage(FILE *f)
{
	fputs(
	    "usage: lm-sandbox COMMAND [ARGS...]\n"
	    "\n"
	    "commands:\n"
	    "  run       run a program in a fresh one-shot sandbox (lm-sandbox run --help)\n"
	    "  serve     serve the HTTP API (lm-sandbox serve --help)\n"
	    "  sandbox   lasting sandboxes of a running daemon: create, ls, exec, cp, rm (lm-sandbox sandbox --help)\n"
	    "  mcp       an MCP server on stdin/stdout for MCP hosts, through a running daemon (lm-sandbox mcp "
	    "--help)\n"
	    "  image     root file systems for sandboxes: import, ls, rm (lm-sandbox image --help)\n"
	    "  version   print the version\n"
	    "  help      show this help\n",
	    f);
}

/* `serve`, `sandbox` and `mcp` live in binaries of their own beside this one (they link libmicrohttpd, libcurl and
 * libarchive; this one stays static). */
static int
exec_sibling(const char *name, char **argv)
{
	_cleanup_free_ char *path = lms_self_sibling(name);
	if (path != NULL) {
		argv[0] = path;
		execv(path, argv);
	}
	argv[0] = (char *)name;
	execvp(name, argv);
	fprintf(stderr, "lm-sandbox: cannot run %s (looked beside this program and in PATH): %s\n", name,
		strerror(errno));
	return 125;
}

/* Started with 0, 1 or 2 closed, the next pipe would take its number and be mistaken for it. */
static int
ensure_std_fds(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		int null = open("/dev/null", O_RDWR);
		if (null < 0) {
			perror("lm-sandbox: open /dev/null");
			return -1;
		}
		if (null != fd) {
			close(null);
			return -1;
		}
	}
	return 0;
}

/* The GPUs a sandbox can be given (`--gpu`), one line each, or "gpus: none". */
static int
print_gpus(void)
{
	struct lms_gpus gpus;
	_cleanup_error_ struct lms_error *err = NULL;
	if (lms_gpu_discover("/", &gpus, &err) < 0) {
		fprintf(stderr, "lm-sandbox: %s\n", err->message);
		return 1;
	}
	if (gpus.count == 0 || !gpus.control)
		printf("gpus: none%s\n", gpus.count ? " (/dev/nvidiactl does not exist)" : "");
	for (size_t i = 0; gpus.control && i < gpus.count; i++) {
		const struct lms_gpu *g = &gpus.gpu[i];
		char memory[32] = "memory unknown";
		if (g->memory_mb)
			snprintf(memory, sizeof(memory), "%llu MiB", (unsigned long long)g->memory_mb);
		printf("gpu %u: %s, %s%s%s\n", g->index, g->name[0] ? g->name : "NVIDIA GPU (no driver information)",
		       memory, g->uuid[0] ? ", " : "", g->uuid);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	if (ensure_std_fds() < 0)
		return 125;
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "run") == 0)
		return lms_cmd_run(argc - 1, argv + 1);
	/* Internal: the daemon's spawner (sandbox/spawner.h), not for people. */
	if (strcmp(cmd, "__spawner") == 0 && (argc == 5 || argc == 6))
		return lms_spawner_helper_main(atoi(argv[2]), atoi(argv[3]), (unsigned)atoi(argv[4]),
					       argc == 6 ? argv[5] : NULL);
	if (strcmp(cmd, "serve") == 0)
		return exec_sibling("lm-sandbox-serve", argv + 1);
	if (strcmp(cmd, "sandbox") == 0)
		return exec_sibling("lm-sandbox-client", argv + 1);
	/* The client takes `mcp` and `image` (importing needs libarchive) as commands of its own: argv keeps
	 * the name for it to dispatch on. */
	if (strcmp(cmd, "mcp") == 0 || strcmp(cmd, "image") == 0)
		return exec_sibling("lm-sandbox-client", argv);
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("lm-sandbox %s\n", LMS_VERSION);
		return print_gpus();
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "lm-sandbox: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
