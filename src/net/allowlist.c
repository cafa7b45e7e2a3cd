#include "net/allowlist.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool
label_char(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '_';
}

bool
lms_dns_name_valid(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > LMS_DNS_NAME_TEXT_MAX)
		return false;
	bool all_numeric = true;
	const char *label = name;
	for (const char *p = name;; p++) {
		if (*p == '.' || *p == '\0') {
			size_t n = (size_t)(p - label);
			if (n == 0 || n > 63 || label[0] == '-' || label[n - 1] == '-')
				return false;
			if (*p == '\0')
				break;
			label = p + 1;
			continue;
		}
		if (!label_char(*p))
			return false;
		if (!isdigit((unsigned char)*p))
			all_numeric = false;
	}
	return !all_numeric;
}

/* The name in lower case without a final dot, into out (LMS_DNS_NAME_TEXT_MAX + 1 bytes); false if it
 * does not fit. */
static bool
normalise(const char *name, char *out)
{
	size_t len = strlen(name);
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len > LMS_DNS_NAME_TEXT_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		out[i] = (char)tolower((unsigned char)name[i]);
	out[len] = '\0';
	return true;
}

static bool
looks_like_address(const char *entry)
{
	return strchr(entry, ':') || strchr(entry, '/') || strspn(entry, "0123456789.") == strlen(entry);
}

int
lms_allowlist_add(struct lms_allowlist *list, const char *entry, struct lms_error **err)
{
	if (list->n_names + list->n_ranges >= LMS_ALLOWLIST_MAX_ENTRIES)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "network allowlist: more than %d entries",
				     LMS_ALLOWLIST_MAX_ENTRIES);
	if (looks_like_address(entry)) {
		struct lms_cidr range;
		if (lms_cidr_parse(entry, &range, err) < 0)
			return lms_error_prefix(err, "network allowlist");
		list->ranges[list->n_ranges++] = range;
		return 0;
	}
	struct lms_allow_name *n = &list->names[list->n_names];
	n->subdomains = strncmp(entry, "*.", 2) == 0;
	if (!normalise(entry + (n->subdomains ? 2 : 0), n->name) || !lms_dns_name_valid(n->name))
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "network allowlist: '%.80s' is neither a host name (like github.com or "
				     "*.example.org) nor an address range (like 203.0.113.0/24)",
				     entry);
	list->n_names++;
	return 0;
}

int
lms_allowlist_add_list(struct lms_allowlist *list, const char *entries, struct lms_error **err)
{
	char *copy = strdup(entries);
	if (copy == NULL)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "network allowlist: copy");
	char *save = NULL;
	int r = 0;
	for (char *tok = strtok_r(copy, ",", &save); r == 0 && tok; tok = strtok_r(NULL, ",", &save))
		r = lms_allowlist_add(list, tok, err);
	free(copy);
	return r;
}

static bool
below(const char *name, size_t len, const char *parent)
{
	size_t plen = strlen(parent);
	return len > plen + 1 && name[len - plen - 1] == '.' && memcmp(name + len - plen, parent, plen) == 0;
}

bool
lms_allowlist_admits_name(const struct lms_allowlist *list, const char *name)
{
	char norm[LMS_DNS_NAME_TEXT_MAX + 1];
	if (!normalise(name, norm) || !lms_dns_name_valid(norm))
		return false;
	size_t len = strlen(norm);
	for (size_t i = 0; i < list->n_names; i++) {
		const struct lms_allow_name *n = &list->names[i];
		if (n->subdomains ? below(norm, len, n->name) : strcmp(norm, n->name) == 0)
			return true;
	}
	return false;
}

bool
lms_allowlist_admits_addr(const struct lms_allowlist *list, const struct lms_net_addr *a)
{
	for (size_t i = 0; i < list->n_ranges; i++)
		if (lms_cidr_contains(&list->ranges[i], a))
			return true;
	return false;
}
