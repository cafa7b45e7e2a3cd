/*
 * What a pool sandbox was prepared with (spawner-proto.h, struct lms_pool_recipe): its image and, for a
 * network sandbox, its network's settings and what its setup read from the host. The key is what the
 * spawner routes by; the recipe is what a worker checks before it hands a prepared sandbox to a command,
 * so that no command ever runs on another image's root, or behind another network policy, than it asked
 * for.
 */
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/fnv.h"
#include "sandbox/network.h"
#include "sandbox/spawner-proto.h"

/* s and its NUL. */
static uint64_t
fnv(uint64_t h, const char *s)
{
	return lms_fnv1a(h, s, strlen(s) + 1);
}

/* A setting that may be absent: NULL and "" hash apart. */
static uint64_t
fnv_opt(uint64_t h, const char *s)
{
	return s != NULL ? fnv(fnv(h, "+"), s) : fnv(h, "-");
}

uint64_t
lms_pool_key(const struct lms_sandbox_spec *spec)
{
	bool host = lms_image_is_host(spec->image);
	if (host && !spec->network)
		return 0;
	/* A routing hint only: a worker compares the recipe itself before it uses a prepared sandbox. */
	uint64_t h = LMS_FNV1A_INIT;
	if (!host) {
		h = fnv(h, spec->image);
		for (size_t i = 0; spec->layers != NULL && spec->layers[i] != NULL; i++)
			h = fnv(h, spec->layers[i]);
	}
	if (spec->network) {
		h = fnv(h, "network");
		h = fnv_opt(h, spec->net_dns);
		h = fnv_opt(h, spec->net_allow_private);
		h = fnv_opt(h, spec->net_allow);
	}
	return h != 0 ? h : 1;
}

static char *
dup_opt(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static bool
same_opt(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

void
lms_pool_recipe_clear(struct lms_pool_recipe *r)
{
	free(r->image);
	lms_strv_free(r->layers);
	free(r->ids);
	free(r->net_dns);
	free(r->net_allow_private);
	free(r->net_allow);
	*r = (struct lms_pool_recipe){0};
}

/* Each layer directory's device and inode now; false when one is gone. */
static bool
layer_ids(char *const *layers, size_t n, struct lms_layer_id *ids)
{
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		if (stat(layers[i], &st) < 0)
			return false;
		ids[i] = (struct lms_layer_id){.dev = st.st_dev, .ino = st.st_ino};
	}
	return true;
}

static bool
set_image(struct lms_pool_recipe *r, const char *image, char *const *layers)
{
	size_t n = 0;
	while (layers[n] != NULL)
		n++;
	r->image = xstrdup(image);
	r->layers = xcalloc(n + 1, sizeof(*r->layers));
	for (size_t i = 0; i < n; i++)
		r->layers[i] = xstrdup(layers[i]);
	r->n = n;
	r->ids = xcalloc(n ? n : 1, sizeof(*r->ids));
	return layer_ids(layers, n, r->ids);
}

bool
lms_pool_recipe_set(struct lms_pool_recipe *r, const struct lms_sandbox_spec *spec)
{
	lms_pool_recipe_clear(r);
	r->key = lms_pool_key(spec);
	if (!lms_image_is_host(spec->image) && !set_image(r, spec->image, spec->layers)) {
		lms_pool_recipe_clear(r);
		return false;
	}
	if (spec->network) {
		r->network = true;
		r->net_dns = dup_opt(spec->net_dns);
		r->net_allow_private = dup_opt(spec->net_allow_private);
		r->net_allow = dup_opt(spec->net_allow);
	}
	return true;
}

static bool
image_matches(const struct lms_pool_recipe *r, const struct lms_sandbox_spec *spec)
{
	if (lms_image_is_host(spec->image))
		return r->image == NULL;
	if (r->image == NULL || strcmp(r->image, spec->image) != 0)
		return false;
	size_t n = 0;
	for (; spec->layers[n] != NULL; n++)
		if (n >= r->n || strcmp(r->layers[n], spec->layers[n]) != 0)
			return false;
	if (n != r->n)
		return false;
	/* The same paths, yet an image removed and imported again has new directories there, which the
	 * prepared overlay does not see: the same inodes, or a sandbox made now. */
	struct lms_layer_id now[LMS_MAX_LAYERS];
	if (n > LMS_MAX_LAYERS || !layer_ids(spec->layers, n, now))
		return false;
	return memcmp(now, r->ids, n * sizeof(*now)) == 0;
}

/* The same policy, and the host as its filter and its DNS forwarder saw it: an address the host gained
 * since (a new interface, a lease) is not in that filter, so such a sandbox is no longer used. */
static bool
network_matches(const struct lms_pool_recipe *r, const struct lms_sandbox_spec *spec)
{
	if (r->network != spec->network)
		return false;
	if (!spec->network)
		return true;
	if (!same_opt(r->net_dns, spec->net_dns) || !same_opt(r->net_allow_private, spec->net_allow_private) ||
	    !same_opt(r->net_allow, spec->net_allow))
		return false;
	uint64_t now = lms_network_host_stamp(spec);
	return now != 0 && now == r->net_stamp;
}

bool
lms_pool_recipe_matches(const struct lms_pool_recipe *r, const struct lms_sandbox_spec *spec)
{
	return r->key == lms_pool_key(spec) && image_matches(r, spec) && network_matches(r, spec);
}

void
lms_pool_recipe_base(const struct lms_pool_recipe *r, const struct lms_sandbox_spec *host_base,
		     struct lms_sandbox_spec *out)
{
	*out = *host_base;
	if (r->image != NULL) {
		out->image = r->image;
		out->layers = r->layers;
	}
	out->network = r->network;
	out->net_dns = r->net_dns;
	out->net_allow_private = r->net_allow_private;
	out->net_allow = r->net_allow;
}
