#pragma once
/*
 * HTTP/1.1 on one connection to a server inside a sandbox (the port relay, routes-ports.c): the request
 * is written as it comes, and the answer read back within bounds: its head (status line and headers, at
 * most LMS_PORT_HEAD_MAX bytes, within a deadline) parsed, then its body framed by Content-Length, by
 * chunks (decoded here: the daemon frames it again for its own client) or by the end of the connection.
 * Every byte of the answer is the sandbox's, so hostile: a malformed head is refused, never guessed at.
 * No libmicrohttpd in here, so that the unit tests drive it over a socket pair.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/error.h"

/* The largest response head taken from the inside, and the most headers in it. */
#define LMS_PORT_HEAD_MAX (64 * 1024)
#define LMS_PORT_HEADERS_MAX 100
/* lms_port_relay_body: nothing came within wait_ms (the caller checks its client, then asks again). */
#define LMS_PORT_AGAIN (-2)

struct lms_port_relay;

/* A relay on connected socket fd (taken; non-blocking). */
struct lms_port_relay *lms_port_relay_new(int fd);
void lms_port_relay_free(struct lms_port_relay *r);

/* Writes all of data, waiting at most timeout_ms for the inside to take each part of it. */
int lms_port_relay_write(struct lms_port_relay *r, const void *data, size_t len, int timeout_ms,
			 struct lms_error **err);
/* lms_port_relay_read_head's flags: the answer has no body whatever its headers say (the request was
 * HEAD); a 101 Switching Protocols is taken (the request asked for an upgrade), else refused. */
#define LMS_PORT_NO_BODY 1u
#define LMS_PORT_UPGRADE 2u
/* Reads the response head within timeout_ms (interim 1xx answers skipped). LMS_ERR_TIMEOUT when it did
 * not come in time, LMS_ERR_BAD_GATEWAY when it is malformed, too large or the connection closed first. */
int lms_port_relay_read_head(struct lms_port_relay *r, unsigned flags, int timeout_ms, struct lms_error **err);
/* The head's status and headers (valid until freed), in the order sent. */
unsigned lms_port_relay_status(const struct lms_port_relay *r);
size_t lms_port_relay_header_count(const struct lms_port_relay *r);
void lms_port_relay_header(const struct lms_port_relay *r, size_t i, const char **name, const char **value);
/* The body's next bytes into buf (as soon as any come: events are not held back): > 0 bytes, 0 at its
 * end, LMS_PORT_AGAIN when nothing came within wait_ms, -1 on error (LMS_ERR_BAD_GATEWAY: cut short or
 * badly framed; LMS_ERR_CANCELLED: watch_fd, the client's socket, hung up; -1 for none). */
ssize_t lms_port_relay_body(struct lms_port_relay *r, char *buf, size_t max, int watch_fd, int wait_ms,
			    struct lms_error **err);

/* After a 101: the bytes both ways between client (the client's socket, whose extra_len bytes of extra
 * were read already) and the inside (those of its bytes read past the head first), until both ends
 * have closed, a side takes nothing for timeout_ms, or *stop is set (checked every tick_ms). */
void lms_port_relay_bridge(struct lms_port_relay *r, int client, const char *extra, size_t extra_len, int timeout_ms,
			   const atomic_bool *stop, int tick_ms);

/* Whether a header is the connection's own (RFC 9110 7.6.1: Connection, Keep-Alive, TE, Trailer,
 * Transfer-Encoding, Upgrade, Proxy-*), or named by connection, the Connection header's value (or NULL):
 * such headers are never relayed, either way. */
bool lms_http_hop_by_hop(const char *name, const char *connection);
