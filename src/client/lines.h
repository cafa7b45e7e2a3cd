#pragma once
/*
 * Newline-delimited messages (MCP's stdio transport: one JSON-RPC message a line) read incrementally: bytes go
 * in as a pipe hands them over, in pieces of any size, and each whole line comes out once its LF has arrived
 * (a CR before it is dropped, as a Windows host may send one). A line longer than `max_bytes` is not kept: its
 * bytes are dropped up to its LF and it is reported once as too long, so that a hostile host cannot make the
 * reader allocate without end, and the next line is read as usual.
 */
#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

/* Called once per line: `line` NUL-terminated, `len` bytes, without its line end; or, when `too_long`, with
 * the line's first bytes only (`len` is max_bytes). */
typedef void (*lms_lines_fn)(void *userdata, const char *line, size_t len, bool too_long);

struct lms_lines {
	lms_lines_fn fn;
	void *userdata;
	size_t max_bytes;
	struct lms_buf line;
	bool overflow; /* the line being read passed max_bytes: dropped up to its LF */
};

void lms_lines_init(struct lms_lines *p, size_t max_bytes, lms_lines_fn fn, void *userdata);
void lms_lines_feed(struct lms_lines *p, const char *bytes, size_t len);
/* End of input: a last line without its LF is delivered too. */
void lms_lines_end(struct lms_lines *p);
void lms_lines_free(struct lms_lines *p);
