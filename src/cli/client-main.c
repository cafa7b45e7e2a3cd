/*
 * `lm-sandbox-client` (run as `lm-sandbox sandbox ...` and `lm-sandbox mcp`): the commands that drive a running
 * daemon's lasting sandboxes. A binary of its own, dynamic, linking libcurl and libarchive: the static `lm-sandbox`
 * stays small and fast for `lm-sandbox run`, and the daemon never maps what only a client needs.
 */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "client/args.h"
#include "client/commands.h"
#include "client/http.h"

int
main(int argc, char **argv)
{
	/* `lm-sandbox image ...`: the local image store, no daemon. */
	if (argc > 1 && strcmp(argv[1], "image") == 0)
		return lms_client_image_main(argc - 1, argv + 1);
	/* Accept both `lm-sandbox-client COMMAND` and `lm-sandbox-client sandbox COMMAND`. */
	if (argc > 1 && strcmp(argv[1], "sandbox") == 0) {
		argv[1] = argv[0];
		argv++;
		argc--;
	}
	struct lms_client_args a;
	_cleanup_error_ struct lms_error *err = NULL;
	if (lms_client_parse(argc, argv, &a, &err) < 0) {
		lms_client_report(err);
		lms_client_args_free(&a);
		return LMS_CLIENT_EXIT_USAGE;
	}
	if (a.cmd == LMS_CLIENT_HELP || a.help) {
		fputs(lms_client_usage(a.cmd), stdout);
		lms_client_args_free(&a);
		return 0;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fputs("lm-sandbox: curl_global_init failed\n", stderr);
		lms_client_args_free(&a);
		return LMS_CLIENT_EXIT_FAILED;
	}
	struct lms_client c;
	int status;
	if (lms_client_init(&c, a.url, a.token_file, &err) < 0) {
		lms_client_report(err);
		status = LMS_CLIENT_EXIT_USAGE;
	} else {
		switch (a.cmd) {
		case LMS_CLIENT_CREATE:
			status = lms_client_create(&c, &a);
			break;
		case LMS_CLIENT_LS:
			status = lms_client_ls(&c, &a);
			break;
		case LMS_CLIENT_EXEC:
			status = lms_client_exec(&c, &a);
			break;
		case LMS_CLIENT_CP:
			status = lms_client_cp(&c, &a);
			break;
		case LMS_CLIENT_RM:
			status = lms_client_rm(&c, &a);
			break;
		case LMS_CLIENT_MCP:
			status = lms_client_mcp(&c);
			break;
		case LMS_CLIENT_CHAT:
			status = lms_client_chat(&c, &a);
			break;
		case LMS_CLIENT_HELP:
		default:
			status = 0;
			break;
		}
	}
	lms_client_free(&c);
	lms_client_args_free(&a);
	curl_global_cleanup();
	return status;
}
