/*
 * `lm-sandbox-serve` (run as `lm-sandbox serve`): the HTTP daemon. A binary of its own because it links
 * libmicrohttpd dynamically, while `lm-sandbox` stays static for the start-up time of `lm-sandbox run`.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "server/settings.h"
#include "server/server.h"

extern char **environ;

int
main(int argc, char **argv)
{
	/* Accept both `lm-sandbox-serve [OPTIONS]` and `lm-sandbox-serve serve [OPTIONS]`. */
	int first = argc > 1 && strcmp(argv[1], "serve") == 0 ? 2 : 1;
	struct lms_config cfg;
	_cleanup_error_ struct lms_error *err = NULL;
	int r = lms_config_load(&cfg, argc - first, argv + first, environ, &err);
	if (r == 1) {
		lms_config_help(stdout);
		lms_config_free(&cfg);
		return 0;
	}
	if (r < 0) {
		fprintf(stderr, "lm-sandbox serve: %s\n", err->message);
		lms_config_free(&cfg);
		return 2;
	}
	lms_log_set_level(cfg.log_level);
	r = lms_server_run(&cfg, &err);
	if (r < 0)
		fprintf(stderr, "lm-sandbox serve: %s\n", err->message);
	lms_config_free(&cfg);
	return r < 0 ? (err->kind == LMS_ERR_INVALID || err->kind == LMS_ERR_FORBIDDEN ? 2 : 1) : 0;
}
