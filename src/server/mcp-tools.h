#pragma once
/*
 * The sandbox's tools as MCP serves them (API.md, "MCP"): sandbox_create, bash, read_file, write_file,
 * edit_file, list_files, sandbox_delete, their JSON schemas, and a call of one to a CallToolResult. The
 * file tools run as commands of the sandbox itself (cat, sed, ls, with the content as a command's
 * standard input), so that they have exactly the permissions of the sandbox's user. No HTTP and no
 * JSON-RPC in here: mcp.c is the protocol.
 */
#include <jansson.h>
#include <stdbool.h>

struct lms_server;

/* A long command's progress, reported while it runs (on the calling thread): progress grows at each
 * call (milliseconds since the start), message says what happens. output, when not NULL, gets each piece
 * of the command's output as it is read (stream 1 stdout, 2 stderr; the agent's tool_output events).
 * Either may be NULL. */
struct lms_mcp_progress {
	void (*fn)(void *cls, double progress, const char *message);
	void *cls;
	void (*output)(void *cls, int stream, const char *data, size_t len);
	const char *via; /* who calls, for the sandbox's audit log: NULL is "mcp" (the agent says "agent") */
};

/* The tool budget: output past it keeps its head and its tail around a "[… N bytes omitted …]" marker. */
#define LMS_MCP_OUTPUT_BUDGET (16 * 1024)

/* tools/list's "tools" array (a new reference). */
json_t *lms_mcp_tools(void);

bool lms_mcp_tool_exists(const char *name);

/* Calls tool `name` (lms_mcp_tool_exists) with `args` (an object, or NULL for none) and returns its
 * CallToolResult (a new reference): {content: [{type: "text", text}], structuredContent?, isError}. A
 * failing command, bad arguments, or a sandbox that is gone are results with isError: true, worded for a
 * model. When hangup_fd (or -1) hangs up, a running command is cancelled. progress may be NULL. Each call
 * made in a sandbox goes into its audit log (history.h). */
json_t *lms_mcp_tool_call(struct lms_server *s, const char *name, const json_t *args, int hangup_fd,
			  const struct lms_mcp_progress *progress);

/* text cut to `budget` bytes as its head, a "[… N bytes omitted …]" line and its tail, at UTF-8
 * character boundaries (a new string; *out_len its length). */
char *lms_mcp_budget(const char *text, size_t len, size_t budget, size_t *out_len);
