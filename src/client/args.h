#pragma once
/*
 * The command line of `lm-sandbox sandbox ...` (create, ls, exec, cp, rm) turned into what each command
 * sends: the JSON body of create and exec, the query of ls, the operands of rm and cp. No I/O here but
 * reading the environment for `-e NAME` (docker's "take it from my environment"), so that every rule of
 * the syntax is unit-tested (tests/unit/test-client-args.c).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/error.h"

enum lms_client_cmd {
	LMS_CLIENT_HELP, /* `lm-sandbox sandbox`, `--help`, `help` */
	LMS_CLIENT_CREATE,
	LMS_CLIENT_LS,
	LMS_CLIENT_EXEC,
	LMS_CLIENT_CP,
	LMS_CLIENT_RM,
	LMS_CLIENT_MCP,	 /* `lm-sandbox mcp`: the MCP server on stdio (cmd-mcp.c) */
	LMS_CLIENT_CHAT, /* `lm-sandbox chat`: the agent loop in a terminal (cmd-chat.c) */
};

struct lms_client_args {
	enum lms_client_cmd cmd;
	bool help;		/* --help of a command: print its usage */
	const char *url;	/* --url, NULL when not given */
	const char *token_file; /* --token-file */
	json_t *body;	 /* create and exec: the request body (exec: without stdin); chat: model, image, network */
	char *query;	 /* ls: "" or "?metadata.K=V&..." */
	bool quiet;	 /* ls -q */
	bool no_stdin;	 /* exec -n: never forward standard input */
	bool yes;	 /* chat --yes: run the model's commands without asking */
	const char *id;	 /* exec; chat --sandbox */
	char **operands; /* rm: the ids; cp: SRC and DST (pointers into argv) */
	size_t n_operands;
};

/* argv[0] is the program; then global options, the command and its own options (the global ones may come
 * there too). 0, or -1 with LMS_ERR_INVALID and a message that says what to type. */
int lms_client_parse(int argc, char **argv, struct lms_client_args *a, struct lms_error **err);
void lms_client_args_free(struct lms_client_args *a);

/* The usage of one command (LMS_CLIENT_HELP: of them all). */
const char *lms_client_usage(enum lms_client_cmd cmd);

/* A size as docker takes it: "512m", "2g", "1GiB", "300k"; a bare number is MiB (lm-sandbox's own unit).
 * Rounded up to whole MiB. */
int lms_client_parse_mib(const char *flag, const char *text, uint64_t *mib, struct lms_error **err);

/* A duration: "90" (seconds), "500ms", "30s", "10m", "2h", "1d", "1h30m", "1.5s". In milliseconds, rounded
 * up. */
int lms_client_parse_duration_ms(const char *flag, const char *text, uint64_t *ms, struct lms_error **err);
