#pragma once
/*
 * A sandbox's audit log (GET /v1/sandboxes/{id}/history): every tool call made in it, through any route,
 * as JSON objects, newest last. Bounded by entries: the last LMS_HISTORY_MAX are kept. With a file (the
 * sandbox's directory under --state-dir) it survives a restart: records are appended, one JSON line each,
 * with one write(2); a crash can leave only the last line torn, and a torn or unreadable line is skipped
 * when the file is read back. The file is rewritten (a temporary file, then rename) with the kept entries
 * once it holds twice as many. Without a file (a daemon that keeps no state) it lives in memory.
 * Thread-safe.
 */
#include <jansson.h>
#include <stddef.h>

#define LMS_HISTORY_MAX 1000

struct lms_history;

/* A log kept in `path` (read back now when it exists; NULL: memory only). Failures to read are logged. */
struct lms_history *lms_history_open(const char *path);
void lms_history_free(struct lms_history *h);

/* Appends an entry (taken). A failed write is logged: the call it records already happened. */
void lms_history_add(struct lms_history *h, json_t *entry);

/* One tool call, as an entry: {"at", "via", "tool", "arguments": {"command" | "path"}, "exit_code" (null
 * when no command ran), "status", "duration_ms", "bytes"}. Strings are cut at LMS_HISTORY_TEXT bytes. */
#define LMS_HISTORY_TEXT 4096
struct lms_history_call {
	const char *via;     /* "http", "mcp", "agent" */
	const char *tool;    /* "exec", "process", "write_file", "delete_file", "fork", "bash", ... */
	const char *command; /* or NULL */
	const char *path;    /* or NULL */
	const char *status;  /* "ok", "error", "timed_out", "oom_killed", "cancelled" */
	int exit_code;	     /* < 0: none */
	double started_s;    /* wall clock */
	double duration_ms;
	long long bytes; /* of output, or written; < 0: not counted */
};
json_t *lms_history_entry(const struct lms_history_call *c);

/* A command's status word: "timed_out", "oom_killed", "cancelled", "ok" (exit code 0) or "error". */
struct lms_sandbox_result;
const char *lms_history_status(const struct lms_sandbox_result *r);
/* What a person reads as the command: a shell's script (bash -c SCRIPT), else argv's words joined by
 * spaces (caller frees). */
char *lms_history_argv(char *const *argv);

/* The last `limit` entries (0: all kept), oldest first: a new array. */
json_t *lms_history_json(struct lms_history *h, size_t limit);
