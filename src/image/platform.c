/* The host's manifest in an index (platform.h). */
#include "image/platform.h"

#include <stdbool.h>
#include <string.h>

static bool
eq(const json_t *obj, const char *key, const char *want)
{
	const char *v = json_string_value(json_object_get(obj, key));
	return v != NULL && strcmp(v, want) == 0;
}

const json_t *
lms_image_pick_manifest(const json_t *index)
{
	const json_t *ms = json_object_get(index, "manifests");
	const json_t *m, *best = NULL, *only = json_array_size(ms) == 1 ? json_array_get(ms, 0) : NULL;
	size_t i;
	json_array_foreach(ms, i, m)
	{
		const json_t *p = json_object_get(m, "platform");
		if (p == NULL && only == NULL)
			only = m;
		if (!eq(p, "os", "linux") || !eq(p, "architecture", LMS_IMAGE_HOST_ARCH))
			continue;
		const char *variant = json_string_value(json_object_get(p, "variant"));
		/* The host's own variant (or none) wins over another variant of the same architecture. */
		const char *host_variant = LMS_IMAGE_HOST_VARIANT;
		bool exact = variant == NULL || (host_variant != NULL && strcmp(variant, host_variant) == 0);
		if (exact)
			return m;
		if (best == NULL)
			best = m;
	}
	return best ? best : only;
}
