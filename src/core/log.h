#pragma once
/*
 * The log: one JSON object per line on standard error (STYLE.md, "Logging"), as
 *
 *     {"time": "2025-01-31T12:00:00.123Z", "level": "warning", "msg": "pool worker failed",
 *      "request_id": "…", "error": "…"}
 *
 * "request_id" is there when the caller has one; the fields follow in the order given.
 *
 *     lms_log(LMS_LOG_WARNING, req_id_or_NULL, "pool worker failed", "error", msg, NULL);
 *     lms_log_fields(LMS_LOG_INFO, req->id, "request", LMS_LOG_STR("method", m), LMS_LOG_INT("status", 200),
 *                    LMS_LOG_REAL("duration_ms", 2.5));
 *
 * Both macros test the level first: below the threshold no argument is evaluated and nothing is
 * formatted. Each line is built on the stack and leaves in one write(2), so the lines of concurrent
 * threads and processes never interleave (a line is at most LMS_LOG_LINE_MAX bytes, PIPE_BUF: a pipe
 * takes it whole; longer values are cut and end in "…").
 *
 * Safe in any process and at any moment: no allocation, no lock, no stdio, no locale or time-zone
 * code (which locks) — only clock_gettime(2) and write(2), both async-signal-safe. So it may be used
 * in the single-threaded spawner and workers forked from the daemon, in the static `lm-sandbox`, in a
 * child between fork and exec, and in a signal handler. errno is preserved.
 *
 * Never log tokens; log command output only at debug level, truncated.
 */
#include <stddef.h>

enum lms_log_level {
	LMS_LOG_DEBUG,
	LMS_LOG_INFO,
	LMS_LOG_WARNING,
	LMS_LOG_ERROR,
};

#define LMS_LOG_LINE_MAX 4096

enum lms_log_type {
	LMS_LOG_T_STR,
	LMS_LOG_T_INT,
	LMS_LOG_T_REAL,
};

/* One field of lms_log_fields(). A string may be NULL (written as null); max_len, when not 0, cuts it. */
struct lms_log_field {
	const char *key;
	enum lms_log_type type;
	const char *str;
	size_t max_len;
	long long num;
	double real; /* written with 3 decimals; NaN and infinities as null */
};

#define LMS_LOG_STR(k, v) ((struct lms_log_field){.key = (k), .type = LMS_LOG_T_STR, .str = (v)})
#define LMS_LOG_STRN(k, v, n) ((struct lms_log_field){.key = (k), .type = LMS_LOG_T_STR, .str = (v), .max_len = (n)})
#define LMS_LOG_INT(k, v) ((struct lms_log_field){.key = (k), .type = LMS_LOG_T_INT, .num = (v)})
#define LMS_LOG_REAL(k, v) ((struct lms_log_field){.key = (k), .type = LMS_LOG_T_REAL, .real = (v)})

/* The threshold: messages below it are dropped before they are formatted. Read through lms_log_enabled(). */
extern int lms_log_threshold;

#define lms_log_enabled(level) ((int)(level) >= __atomic_load_n(&lms_log_threshold, __ATOMIC_RELAXED))

/* Logs msg with key/value string pairs ending with NULL (a NULL value is written as null). */
#define lms_log(level, request_id, msg, ...)                                                                           \
	do {                                                                                                           \
		if (lms_log_enabled(level))                                                                            \
			lms_log_emit((level), (request_id), (msg), __VA_ARGS__);                                       \
	} while (0)

/* Logs msg with typed fields (LMS_LOG_STR, LMS_LOG_STRN, LMS_LOG_INT, LMS_LOG_REAL), at least one. */
#define lms_log_fields(level, request_id, msg, ...)                                                                    \
	do {                                                                                                           \
		if (lms_log_enabled(level)) {                                                                          \
			const struct lms_log_field lms_log_f_[] = {__VA_ARGS__};                                       \
			lms_log_emit_fields((level), (request_id), (msg), lms_log_f_,                                  \
					    sizeof(lms_log_f_) / sizeof(lms_log_f_[0]));                               \
		}                                                                                                      \
	} while (0)

/* The emitters behind the macros: they do not test the level (call the macros instead). */
void lms_log_emit(enum lms_log_level level, const char *request_id, const char *msg, ...) __attribute__((sentinel));
void lms_log_emit_fields(enum lms_log_level level, const char *request_id, const char *msg,
			 const struct lms_log_field *fields, size_t n);

/* Sets the threshold (default LMS_LOG_INFO). Safe to call at any time, from any thread. */
void lms_log_set_level(enum lms_log_level level);

/* "debug", "info", "warning" or "error" to its level; -1 for anything else. */
int lms_log_level_parse(const char *name);

/* The name of a level ("warning"), as written in the "level" field. */
const char *lms_log_level_name(enum lms_log_level level);

/* Points the log at fd (default STDERR_FILENO; the caller keeps it open) and returns the previous one.
 * For tests, which read the lines back from a pipe. */
int lms_log_set_fd(int fd);
