#pragma once
/* The commands of `lm-sandbox sandbox`, each one call (or a few) to the daemon. Each returns the exit status
 * and has said on stderr what went wrong. */
#include "client/args.h"
#include "client/http.h"

#define LMS_CLIENT_EXIT_FAILED 1 /* the daemon refused, or could not be reached */
#define LMS_CLIENT_EXIT_USAGE 2

int lms_client_create(struct lms_client *c, const struct lms_client_args *a);
int lms_client_ls(struct lms_client *c, const struct lms_client_args *a);
int lms_client_rm(struct lms_client *c, const struct lms_client_args *a);
int lms_client_exec(struct lms_client *c, const struct lms_client_args *a);
int lms_client_cp(struct lms_client *c, const struct lms_client_args *a);
/* `lm-sandbox mcp`: serves MCP on standard input and output until standard input ends. */
int lms_client_mcp(struct lms_client *c);

/* `lm-sandbox chat`: the agent loop in this terminal (cmd-chat.c). */
int lms_client_chat(struct lms_client *c, const struct lms_client_args *a);
/* `lm-sandbox image ...` (cmd-image.c): argv[0] is "image"; no daemon involved. */
int lms_client_image_main(int argc, char **argv);

/* Prints "lm-sandbox: MESSAGE" on stderr. */
void lms_client_report(const struct lms_error *e);
