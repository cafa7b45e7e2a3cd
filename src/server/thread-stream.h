#pragma once
/*
 * A response of Server-Sent Events written by a thread of its own: the work (an agent run, an MCP tool
 * call) blocks on commands and backends while libmicrohttpd's connection thread reads what it writes
 * from a pipe and watches the client. A client that closes the stream hangs up the work's cancel
 * descriptor, which the commands and backend requests it runs watch.
 */
#include <stdbool.h>
#include <stddef.h>

#include "server/server.h"

struct lms_thread_stream;
typedef void (*lms_thread_stream_fn)(struct lms_thread_stream *ts, void *cls);

/* Starts fn(ts, cls) on its own thread and sets *out to the 200 event-stream reply (with headers, an
 * array ending with {NULL, NULL}, or NULL). free_cls(cls) runs once the thread has ended. false when the
 * thread cannot start: nothing is replied and cls is the caller's. */
bool lms_thread_stream_reply(struct lms_request *req, lms_thread_stream_fn fn, void *cls, void (*free_cls)(void *),
			     const struct lms_header *headers, enum MHD_Result *out);
/* Bytes of events for the client (from fn's thread); dropped once the client has gone. */
void lms_thread_stream_write(struct lms_thread_stream *ts, const char *data, size_t len);
/* Hangs up when the client closes the stream: the hang-up descriptor for what fn runs. */
int lms_thread_stream_cancel_fd(const struct lms_thread_stream *ts);
