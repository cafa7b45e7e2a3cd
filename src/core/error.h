#pragma once
/*
 * Error values (docs/CONVENTIONS.md, "Errors": each kind's HTTP status, API code and CLI exit status).
 *
 * A function that can fail takes `struct lms_error **err` last and returns < 0 (or NULL). It fills *err
 * with lms_error_set(), which returns -1 so that failing fits on one line:
 *
 *     return lms_error_set(err, LMS_ERR_SETUP, errno, "mount /proc");
 *
 * A caller adds context on the way up with lms_error_prefix(). Library code never logs; the top
 * (main, an HTTP handler) reports once. `err` may be NULL when the caller does not want details.
 */
#include <stdarg.h>

enum lms_error_kind {
	LMS_ERR_INTERNAL,    /* a bug or an unexpected system failure */
	LMS_ERR_INVALID,     /* the request or the arguments are wrong: the user must change them */
	LMS_ERR_NOT_FOUND,   /* an image, file or program does not exist */
	LMS_ERR_FORBIDDEN,   /* asks for something this server or host does not allow */
	LMS_ERR_UNSUPPORTED, /* the host lacks something (a GPU, a kernel feature) */
	LMS_ERR_SETUP,	     /* the sandbox could not be set up: the message names the step */
	/* An LLM backend (llm/): */
	LMS_ERR_UNREACHABLE, /* cannot be reached: connection refused, unknown host, connect timeout */
	LMS_ERR_TIMEOUT,     /* reached, but did not answer in time (first byte, or silence between two bytes) */
	LMS_ERR_BAD_GATEWAY, /* answered with nothing usable: dropped the connection, not JSON, cut short */
	LMS_ERR_BACKEND,     /* answered with an error status of its own (the caller has its status and body) */
	LMS_ERR_CANCELLED,   /* the caller went away (its cancel descriptor fired) or the server is stopping */
	LMS_ERR_BUSY,	     /* too many at once (--max-concurrent): the same call may succeed shortly */
	LMS_ERR_CONFLICT,    /* the object is not in a state that allows it (a process that has exited) */
};
/* The last kind: a kind read from another process is checked against it. */
#define LMS_ERR_KIND_MAX LMS_ERR_CONFLICT

struct lms_error {
	enum lms_error_kind kind;
	int errnum;    /* errno of the failing call, 0 if none */
	char *message; /* "step target: strerror(errnum)", never NULL */
};

/* Sets *err (when err is not NULL and *err is NULL) and returns -1. Appends ": strerror(errnum)" if errnum. */
__attribute__((format(printf, 4, 5))) int lms_error_set(struct lms_error **err, enum lms_error_kind kind, int errnum,
							const char *fmt, ...);

/* Prefixes the message of *err with "context: ". Returns -1. No-op when err or *err is NULL. */
__attribute__((format(printf, 2, 3))) int lms_error_prefix(struct lms_error **err, const char *fmt, ...);

void lms_error_free(struct lms_error *e);

/* A stable lower-case name of the kind, used in logs and the API's error "code". */
const char *lms_error_kind_name(enum lms_error_kind kind);

static inline void
lms_error_freep(struct lms_error **e)
{
	lms_error_free(*e);
}
#define _cleanup_error_ __attribute__((cleanup(lms_error_freep)))
