/* Image references (reference.h), with the rules of the distribution project's reference grammar. */
#include "image/reference.h"

#include <string.h>

#include "core/alloc.h"
#include "image/digest.h"
#include "image/store.h"

#define REF_MAX 512
#define TAG_MAX 128
#define REPO_MAX 255
#define DOCKER_HUB "registry-1.docker.io"

static bool
is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* Path components: [a-z0-9]+ joined by ".", "_", "__" or "-"s; "/" between components. */
static bool
repository_ok(const char *r)
{
	size_t n = strlen(r);
	if (n == 0 || n > REPO_MAX)
		return false;
	for (const char *comp = r; *comp;) {
		size_t len = strcspn(comp, "/");
		if (len == 0 || !is_lower_alnum(comp[0]) || !is_lower_alnum(comp[len - 1]))
			return false;
		for (size_t i = 0; i < len; i++)
			if (!is_lower_alnum(comp[i]) && strchr("._-", comp[i]) == NULL)
				return false;
		comp += len;
		if (*comp == '/' && *++comp == '\0')
			return false;
	}
	return true;
}

static bool
tag_ok(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > TAG_MAX || t[0] == '.' || t[0] == '-')
		return false;
	return strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

/* A host name or address, with an optional port: [A-Za-z0-9.-]+ or [IPv6], then :DIGITS. */
static bool
registry_ok(const char *h)
{
	size_t n = strlen(h);
	if (n == 0 || n > 255)
		return false;
	const char *port = NULL;
	if (h[0] == '[') {
		const char *end = strchr(h, ']');
		if (end == NULL || end == h + 1 || strspn(h + 1, "0123456789abcdefABCDEF:") != (size_t)(end - h - 1))
			return false;
		port = end[1] == ':' ? end + 2 : (end[1] == '\0' ? NULL : "");
	} else {
		size_t host = strcspn(h, ":");
		if (host == 0 || strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != host)
			return false;
		port = h[host] == ':' ? h + host + 1 : NULL;
	}
	if (port == NULL)
		return true;
	size_t p = strlen(port);
	return p >= 1 && p <= 5 && strspn(port, "0123456789") == p;
}

static bool
is_loopback(const char *registry)
{
	size_t host = registry[0] == '[' ? strcspn(registry, "]") + 1 : strcspn(registry, ":");
	return (host == 9 && strncmp(registry, "localhost", 9) == 0) || strncmp(registry, "127.", 4) == 0 ||
	       (host == 5 && strncmp(registry, "[::1]", 5) == 0);
}

int
lms_image_ref_parse(const char *text, struct lms_image_ref *out, struct lms_error **err)
{
	*out = (struct lms_image_ref){0};
	if (text == NULL || text[0] == '\0' || strlen(text) > REF_MAX)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "an image reference is 1 to %d characters", REF_MAX);
	_cleanup_free_ char *copy = xstrdup(text);
	char *digest = strchr(copy, '@');
	if (digest != NULL) {
		*digest++ = '\0';
		if (!lms_digest_ok(digest))
			return lms_error_set(
			    err, LMS_ERR_INVALID, 0,
			    "'%.512s': the digest after @ must be sha256: and 64 lower-case hex digits", text);
	}
	/* The first component names a registry when it has a "." or a ":", or is localhost (docker's rule). */
	char *rest = copy, *registry = NULL;
	char *slash = strchr(copy, '/');
	if (slash != NULL && (memchr(copy, '.', (size_t)(slash - copy)) || memchr(copy, ':', (size_t)(slash - copy)) ||
			      strncmp(copy, "localhost/", 10) == 0 || copy[0] == '[')) {
		*slash = '\0';
		registry = copy;
		rest = slash + 1;
	}
	char *tag = NULL, *colon = strrchr(rest, ':');
	if (colon != NULL) {
		*colon = '\0';
		tag = colon + 1;
		if (!tag_ok(tag))
			return lms_error_set(
			    err, LMS_ERR_INVALID, 0,
			    "'%.512s': a tag is 1 to %d of A-Z a-z 0-9 _ . - (not starting with . or -)", text,
			    TAG_MAX);
	}
	if (registry != NULL && !registry_ok(registry))
		return lms_error_set(err, LMS_ERR_INVALID, 0, "'%.512s': '%s' is not a registry host[:port]", text,
				     registry);
	if (!repository_ok(rest))
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "'%.512s': the repository must be lower-case components of a-z 0-9 . _ - "
				     "between slashes",
				     text);
	bool hub = registry == NULL || strcmp(registry, "docker.io") == 0 || strcmp(registry, "index.docker.io") == 0;
	out->registry = xstrdup(hub ? DOCKER_HUB : registry);
	out->repository = hub && strchr(rest, '/') == NULL ? xasprintf("library/%s", rest) : xstrdup(rest);
	out->tag = tag ? xstrdup(tag) : NULL;
	out->digest = digest ? xstrdup(digest) : NULL;
	out->reference = xstrdup(digest ? digest : tag ? tag : "latest");
	out->loopback = !hub && is_loopback(out->registry);
	return 0;
}

char *
lms_image_ref_default_name(const struct lms_image_ref *ref)
{
	const char *last = strrchr(ref->repository, '/');
	last = last ? last + 1 : ref->repository;
	char *name = ref->tag ? xasprintf("%s:%s", last, ref->tag) : xstrdup(last);
	/* A store name is at most LMS_IMAGE_NAME_MAX (128); a repository's component may be 255. */
	if (strlen(name) > LMS_IMAGE_NAME_MAX)
		name[LMS_IMAGE_NAME_MAX] = '\0';
	return name;
}

void
lms_image_ref_clear(struct lms_image_ref *ref)
{
	free(ref->registry);
	free(ref->repository);
	free(ref->reference);
	free(ref->digest);
	free(ref->tag);
	*ref = (struct lms_image_ref){0};
}
