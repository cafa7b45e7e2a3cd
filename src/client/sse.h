#pragma once
/*
 * An incremental parser of Server-Sent Events (the WHATWG "event stream" grammar) for the client: bytes go
 * in as the network hands them over, in pieces of any size, and each complete event comes out once its
 * blank line has arrived. Lines end in LF, CRLF or CR (a CR at the end of one piece and the LF at the start
 * of the next are one line end); `:` lines are comments; `data:` lines are joined with LF; an event without
 * data is not dispatched. The daemon is trusted no more than any peer: a line or an event's data longer than
 * `max_bytes` is an error, not an allocation without end.
 */
#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/error.h"

/* Called once per event: `event` its name ("message" when none was given), `data` its data (NUL-terminated,
 * `len` bytes). Returns 0 to go on, -1 (with *err set) to stop parsing. */
typedef int (*lms_sse_fn)(void *userdata, const char *event, const char *data, size_t len, struct lms_error **err);

struct lms_sse {
	lms_sse_fn fn;
	void *userdata;
	size_t max_bytes;
	struct lms_buf line;  /* the line being read */
	struct lms_buf event; /* the event field of the event being read */
	struct lms_buf data;  /* its data lines, each followed by LF */
	bool have_data;
	bool after_cr; /* the last byte was a CR: a LF right after it ends no other line */
	bool started;  /* past a leading byte order mark, if any */
};

void lms_sse_init(struct lms_sse *p, size_t max_bytes, lms_sse_fn fn, void *userdata);

/* Parses `len` more bytes. 0, or -1 when a bound was passed or the callback stopped (*err says which). */
int lms_sse_feed(struct lms_sse *p, const char *bytes, size_t len, struct lms_error **err);

/* Whether bytes of an event that never ended are pending (a stream cut short): the grammar drops them. */
bool lms_sse_pending(const struct lms_sse *p);

void lms_sse_free(struct lms_sse *p);

/* An on_data callback of lms_client_call (client/http.h) for an answer that must be an event stream: its bytes
 * fed to the parser given as userdata; an answer of another type fails the call. */
struct lms_client_response;
int lms_sse_on_data(void *userdata, const struct lms_client_response *resp, const char *data, size_t len,
		    struct lms_error **err);
