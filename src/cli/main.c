/* `lm-sandbox COMMAND ...`: dispatch to the subcommands. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "config.h"

static void
usage(FILE *f)
{
	fputs("usage: lm-sandbox COMMAND [ARGS...]\n"
	      "\n"
	      "commands:\n"
	      "  run       run a program in a fresh one-shot sandbox (lm-sandbox run --help)\n"
	      "  version   print the version\n"
	      "  help      show this help\n",
	      f);
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
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("lm-sandbox %s\n", LMS_VERSION);
		return 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "lm-sandbox: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
