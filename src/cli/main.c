/* `lm-sandbox COMMAND ...`: dispatch to the subcommands. */
#include <stdio.h>
#include <string.h>

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

int
main(int argc, char **argv)
{
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
