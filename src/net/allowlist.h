#pragma once
/*
 * A network allowlist (API.md "Network": `{"allow": ["github.com", "*.example.org", "203.0.113.0/24"]}`):
 * the names a sandbox may resolve and the address ranges it may reach directly. `*.x` admits every
 * name below x, not x itself (list both for both). Names are compared without case and without a
 * final dot. What a name resolves to is still judged by net/forbidden.h: an allowlist never opens the
 * host, loopback, link-local or an unlifted private range.
 */
#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"
#include "net/cidr.h"

#define LMS_ALLOWLIST_MAX_ENTRIES 256
/* The longest name in text, without the final dot (RFC 1035: 255 octets on the wire). */
#define LMS_DNS_NAME_TEXT_MAX 253

struct lms_allow_name {
	char name[LMS_DNS_NAME_TEXT_MAX + 1]; /* lower case, no final dot, no "*." */
	bool subdomains;		      /* written as "*.name" */
};

struct lms_allowlist {
	size_t n_names, n_ranges;
	struct lms_allow_name names[LMS_ALLOWLIST_MAX_ENTRIES];
	struct lms_cidr ranges[LMS_ALLOWLIST_MAX_ENTRIES];
};

/* Adds one entry: a host name, "*." and a name, an address or a range. The message names the entry
 * and says what is wrong with it. */
int lms_allowlist_add(struct lms_allowlist *list, const char *entry, struct lms_error **err);

/* Adds each entry of a comma-separated list ("github.com,*.example.org,203.0.113.0/24"), as the engine's
 * spec and the server's --network-allow carry it. */
int lms_allowlist_add_list(struct lms_allowlist *list, const char *entries, struct lms_error **err);

/* Whether a name (as a resolver asks it: any case, final dot or not) is admitted. */
bool lms_allowlist_admits_name(const struct lms_allowlist *list, const char *name);

/* Whether an address lies in one of the list's ranges. */
bool lms_allowlist_admits_addr(const struct lms_allowlist *list, const struct lms_net_addr *a);

/* Whether text is a host name as the allowlist and the DNS filter accept it: labels of letters, digits,
 * '-' and '_', 1 to 63 bytes each, not starting or ending with '-', 253 bytes at most, not all-numeric
 * (so that "1.2.3" is not taken for a name). */
bool lms_dns_name_valid(const char *name);
