#pragma once
/*
 * The DNS wire format (RFC 1035), as much as a filtering forwarder needs: read a sandbox's query, write
 * the query sent on to the upstream resolver, read the upstream's answer for its A/AAAA records, and
 * write the answer the sandbox receives: its question, those records, or an error code.
 *
 * Every byte is hostile: a query comes from a sandboxed process, an answer from the network. Names are
 * bounded (255 octets on the wire, 63 a label), compression pointers must point strictly backwards (no
 * loops), every length is checked against the message, and a query's name must be a plain host name
 * (net/allowlist.h lms_dns_name_valid) or it is refused.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/allowlist.h"
#include "net/cidr.h"

#define LMS_DNS_HEADER 12
/* The largest message read or written: the EDNS0 size this forwarder offers upstream (RFC 9715's 1232)
 * rounded up, and more than any UDP query a resolver library sends. */
#define LMS_DNS_MSG_MAX 1280
/* The EDNS0 size offered upstream for a query that came over TCP (RFC 7766), and so the largest answer
 * relayed over TCP: the forwarder asks upstream over UDP only (it has left the host's namespace and can
 * open no new connection there), and 4096 is what resolvers answer over UDP at most. */
#define LMS_DNS_TCP_MSG_MAX 4096
/* What a UDP client gets at most without EDNS0 (RFC 1035 4.2.1). */
#define LMS_DNS_UDP_PLAIN 512
/* Answers handed to the sandbox live at most this long, so that the filter's admitted addresses (which
 * last as long as the answer) do not outlive a change of the name for long. */
#define LMS_DNS_TTL_MAX 300
/* A/AAAA records kept from one answer; the rest are dropped from what the sandbox gets. */
#define LMS_DNS_ANSWERS_MAX 16

enum {
	LMS_DNS_TYPE_A = 1,
	LMS_DNS_TYPE_AAAA = 28,
	LMS_DNS_CLASS_IN = 1,
};

enum lms_dns_rcode {
	LMS_DNS_NOERROR = 0,
	LMS_DNS_FORMERR = 1,
	LMS_DNS_SERVFAIL = 2,
	LMS_DNS_NXDOMAIN = 3,
	LMS_DNS_NOTIMP = 4,
	LMS_DNS_REFUSED = 5,
};

struct lms_dns_question {
	uint16_t id;
	bool rd;	   /* recursion desired, echoed */
	bool has_question; /* false when the query was refused before its question was read */
	char name[LMS_DNS_NAME_TEXT_MAX + 1];
	uint16_t qtype, qclass;
	uint16_t edns_size; /* the UDP payload size of the query's EDNS0 OPT record; 0: it had none */
};

struct lms_dns_answer {
	struct lms_net_addr addr;
	uint32_t ttl;
};

/* A query: 0 with q filled; an rcode > 0 to answer with (q->id, q->rd and, where it was read,
 * the question are filled); -1 when the message deserves no answer at all (shorter than a header, or an
 * answer rather than a query). */
int lms_dns_parse_query(const uint8_t *msg, size_t len, struct lms_dns_question *q);

/* Writes the query for q's name and type with the given id (recursion desired, an EDNS0 OPT record
 * offering edns_size: the forwarder's own, never the client's, whose options are not passed on). Returns
 * its length, 0 if cap is too small. */
size_t lms_dns_write_query(const struct lms_dns_question *q, uint16_t id, uint16_t edns_size, uint8_t *out, size_t cap);

/* Reads an answer to (id, q): its rcode into *rcode and up to max A/AAAA records of q's type and class
 * IN from its answer section into out (*n), owner names not compared (a CNAME chain's records belong to
 * its target). A truncated answer (TC) sets *tc and yields no record (what it holds is cut short). -1
 * when msg is not an answer to that question (other id, other question, malformed): the caller keeps
 * waiting or gives up. */
int lms_dns_parse_answer(const uint8_t *msg, size_t len, uint16_t id, const struct lms_dns_question *q, int *rcode,
			 bool *tc, struct lms_dns_answer *out, size_t max, size_t *n);

/* Writes the sandbox's answer to q: rcode and, when it is NOERROR, the records (each TTL capped at
 * LMS_DNS_TTL_MAX), all under q's name. Returns its length, 0 if cap is too small. */
size_t lms_dns_write_answer(const struct lms_dns_question *q, int rcode, const struct lms_dns_answer *a, size_t n,
			    uint8_t *out, size_t cap);

/* Sets the TC bit of a message in place: the client asks again over TCP. */
void lms_dns_set_tc(uint8_t *msg, size_t len);

/* The most a UDP client of q takes (its EDNS0 size, at least 512, at most LMS_DNS_MSG_MAX). */
size_t lms_dns_udp_max(const struct lms_dns_question *q);

/* An answer written for the sandbox (header, then at most one question) cut to max bytes when it is
 * longer: only its header and question remain, with TC set and no record (RFC 2181 9: a client does not
 * use a truncated answer's records, it asks over TCP). Returns the new length (len when it fits). */
size_t lms_dns_truncate(uint8_t *msg, size_t len, size_t max);

/* Puts id into a message in place (the upstream's answer relayed verbatim to the sandbox, under the
 * sandbox's own id). */
void lms_dns_set_id(uint8_t *msg, size_t len, uint16_t id);
