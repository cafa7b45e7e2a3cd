/*
 * Which image a pool sandbox was prepared with (spawner-proto.h, struct lms_image_ref): the key the
 * spawner routes by, and what a worker checks before it hands that sandbox to a command, so that no
 * command ever runs on the root of another image than the one it asked for.
 */
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "sandbox/spawner-proto.h"

uint64_t
lms_image_key(const char *image, char *const *layers)
{
	if (lms_image_is_host(image))
		return 0;
	/* FNV-1a over the name and each layer path, each with its NUL: a routing hint only (a worker
	 * compares the strings and the layers' inodes before it uses a prepared sandbox). */
	uint64_t h = 14695981039346656037ull;
	for (const char *s = image;; s++) {
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
		if (*s == '\0')
			break;
	}
	for (size_t i = 0; layers != NULL && layers[i] != NULL; i++)
		for (const char *s = layers[i];; s++) {
			h = (h ^ (unsigned char)*s) * 1099511628211ull;
			if (*s == '\0')
				break;
		}
	return h != 0 ? h : 1;
}

void
lms_image_ref_clear(struct lms_image_ref *ref)
{
	free(ref->image);
	lms_strv_free(ref->layers);
	free(ref->ids);
	*ref = (struct lms_image_ref){0};
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

bool
lms_image_ref_set(struct lms_image_ref *ref, const char *image, char *const *layers)
{
	lms_image_ref_clear(ref);
	ref->key = lms_image_key(image, layers);
	if (ref->key == 0)
		return true;
	size_t n = 0;
	while (layers[n] != NULL)
		n++;
	ref->image = xstrdup(image);
	ref->layers = xcalloc(n + 1, sizeof(*ref->layers));
	for (size_t i = 0; i < n; i++)
		ref->layers[i] = xstrdup(layers[i]);
	ref->n = n;
	ref->ids = xcalloc(n ? n : 1, sizeof(*ref->ids));
	if (!layer_ids(layers, n, ref->ids)) {
		lms_image_ref_clear(ref);
		return false;
	}
	return true;
}

bool
lms_image_ref_matches(const struct lms_image_ref *ref, const char *image, char *const *layers)
{
	if (ref->key != lms_image_key(image, layers))
		return false;
	if (ref->key == 0)
		return true;
	if (strcmp(ref->image, image) != 0)
		return false;
	size_t n = 0;
	for (; layers[n] != NULL; n++)
		if (n >= ref->n || strcmp(ref->layers[n], layers[n]) != 0)
			return false;
	if (n != ref->n)
		return false;
	/* The same paths, yet an image removed and imported again has new directories there, which the
	 * prepared overlay does not see: the same inodes, or a sandbox made now. */
	struct lms_layer_id now[LMS_MAX_LAYERS];
	if (n > LMS_MAX_LAYERS || !layer_ids(layers, n, now))
		return false;
	return memcmp(now, ref->ids, n * sizeof(*now)) == 0;
}

void
lms_image_ref_base(const struct lms_image_ref *ref, const struct lms_sandbox_spec *host_base,
		   struct lms_sandbox_spec *out)
{
	*out = *host_base;
	if (ref->key != 0) {
		out->image = ref->image;
		out->layers = ref->layers;
	}
}
