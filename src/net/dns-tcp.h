#pragma once
/*
 * DNS over TCP (RFC 1035 4.2.2, RFC 7766) for a sandbox's forwarder: the framing of one connection
 * (each message after its two-byte length), without the sockets. A connection holds at most one query
 * being read (at most 65535 bytes, read whole before it is acted on, never a byte of the next one) and
 * the answers not yet written; it takes a further query only while its answers, those it waits for
 * included, are sure to fit, so that a client that does not read stops being read instead of growing
 * anything.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/dns-msg.h"

/* Connections served at once; a further one takes the place of the one idle longest. */
#define LMS_DNS_TCP_CONNS_MAX 16
/* A connection with no complete query and no answer written for this long is closed (RFC 7766 6.2.3). */
#define LMS_DNS_TCP_IDLE_MS 10000
/* Queries of one connection waiting for the upstream, or for the client to read their answers. */
#define LMS_DNS_TCP_PIPELINE 4
#define LMS_DNS_TCP_FRAME_MAX (2 + 65535)

struct lms_dns_tcp_conn {
	int fd;		  /* -1: a free place */
	uint32_t gen;	  /* changes at each close, so that a late answer never reaches the next connection */
	unsigned waiting; /* its queries sent upstream, not yet answered */
	bool eof;	  /* the client sent all it will: closed once its answers are written */
	double deadline;  /* monotonic seconds */
	size_t in_len, out_len;
	uint8_t in[LMS_DNS_TCP_FRAME_MAX];
	uint8_t out[LMS_DNS_TCP_PIPELINE * (2 + LMS_DNS_TCP_MSG_MAX)];
};

/* Bytes to read next: what completes the length, then the message; 0 when a message is complete. */
size_t lms_dns_tcp_need(const struct lms_dns_tcp_conn *c);

/* The complete message read (its length without the prefix), or NULL while it is incomplete. A zero
 * length is complete with *len 0: no DNS message, the caller closes. */
const uint8_t *lms_dns_tcp_message(const struct lms_dns_tcp_conn *c, size_t *len);

/* Whether the connection is to be read: the rest of a query begun, or a next one while the answers of
 * all its queries, that one's included, are sure to fit in out. */
bool lms_dns_tcp_may_read(const struct lms_dns_tcp_conn *c);

/* Appends msg, after its length, to what the connection writes. -1 (nothing appended) when it does not
 * fit or is longer than LMS_DNS_TCP_MSG_MAX. */
int lms_dns_tcp_queue(struct lms_dns_tcp_conn *c, const uint8_t *msg, size_t len);

/* Takes n written bytes off the front of out. */
void lms_dns_tcp_written(struct lms_dns_tcp_conn *c, size_t n);
